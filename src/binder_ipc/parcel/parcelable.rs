//! The framing of AIDL structured parcelables and nullable values: a parcelable is an `i32`
//! size (counting itself) and its fields in order; a reader stops at the size (fields it does
//! not know are skipped, fields the writer did not send keep their defaults). A value typed
//! as a parcelable is preceded by `1` (present) or `0` (null).

use super::{Parcel, ParcelError};

impl Parcel {
    /// Writes a structured parcelable: a size placeholder, the fields `write` writes, then the
    /// size (bytes from the start of the size field to the end of the fields) put in place.
    pub fn write_sized<E: From<ParcelError>>(
        &mut self,
        write: impl FnOnce(&mut Parcel) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.data_position();
        self.write_i32(0)?;
        write(self)?;
        let end = self.data_position();
        let size = end
            .checked_sub(start)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or(ParcelError::TooLarge {
                max: super::MAX_DATA_SIZE,
            })?;
        self.set_data_position(start);
        self.write_i32(size)?;
        self.set_data_position(end);
        Ok(())
    }

    /// Reads a structured parcelable: its size, then `read(parcel, end)`, which reads fields
    /// while `parcel.data_position() < end`. Afterwards the position is `end`, whatever the
    /// fields read. A size below 4, past the data, or overrun by the fields is an error, and
    /// the position goes back to where it was.
    pub fn read_sized<T, E: From<ParcelError>>(
        &mut self,
        read: impl FnOnce(&mut Parcel, usize) -> Result<T, E>,
    ) -> Result<T, E> {
        let start = self.data_position();
        let result = self.read_sized_inner(start, read);
        if result.is_err() {
            self.set_data_position(start);
        }
        result
    }

    fn read_sized_inner<T, E: From<ParcelError>>(
        &mut self,
        start: usize,
        read: impl FnOnce(&mut Parcel, usize) -> Result<T, E>,
    ) -> Result<T, E> {
        let what = "parcelable size";
        let size = self.read_i32()?;
        if size < 4 {
            return Err(ParcelError::BadFlag {
                what,
                pos: start,
                value: size,
                allowed: "at least 4 (the size counts itself)",
            }
            .into());
        }
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= self.data_size());
        let Some(end) = end else {
            return Err(ParcelError::LengthTooLarge {
                what,
                pos: start,
                len: size,
                available: self.data_size().saturating_sub(start),
            }
            .into());
        };
        let value = read(self, end)?;
        if self.data_position() > end {
            return Err(ParcelError::BadFlag {
                what: "parcelable size (its fields run past it)",
                pos: start,
                value: size,
                allowed: "the size of the fields that follow",
            }
            .into());
        }
        self.set_data_position(end);
        Ok(value)
    }

    /// Reads the `1`/`0` that precedes a value typed as a parcelable: `true` when one follows.
    /// Anything else is [`ParcelError::BadFlag`].
    pub fn read_present(&mut self) -> Result<bool, ParcelError> {
        let pos = self.data_position();
        match self.read_i32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => {
                self.set_data_position(pos);
                Err(ParcelError::BadFlag {
                    what: "parcelable presence",
                    pos,
                    value,
                    allowed: "0 (null) or 1 (present)",
                })
            }
        }
    }
}
