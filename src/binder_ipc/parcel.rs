//! Parcel: libbinder-compatible data bytes plus the offsets of the objects among them.
//!
//! The wire format is libbinder's (`Parcel.cpp`):
//!
//! - every value starts at a 4-byte boundary and is padded with zeros to the next one;
//! - `bool`, `char` (a UTF-16 unit) and `byte` travel as `i32`; `i64`, `u64` and `f64` take
//!   8 bytes at 4-aligned positions; all numbers are native-endian (little-endian here);
//! - a String16 is an `i32` length in UTF-16 units (`-1` = null), the units, a `u16` NUL, and
//!   padding; UTF-8 strings are written as String16 (libbinder's `writeUtf8AsUtf16`);
//! - a byte array is an `i32` length (`-1` = null) and the bytes, padded;
//! - an interface token is `i32` strict-mode policy `| 0x8000_0000`, `i32` work-source uid
//!   (`-1` = unset), `i32` `'SYST'` (0x53595354) and the descriptor as String16;
//! - a binder is a 24-byte `flat_binder_object` followed by an `i32` stability (a declared
//!   level for a binder, 0 for null); a null binder is a `BINDER_TYPE_BINDER` object with
//!   pointer and cookie 0 that is *not* listed in the offsets, and so is a handle-0 object
//!   (libbinder lists an object only when its pointer/handle word is non-zero). Weak binders
//!   (`WEAK_BINDER` / `WEAK_HANDLE`) use the same layout; today's libbinder no longer writes
//!   them, so their trailing stability is this crate's choice;
//! - a file descriptor is a 24-byte `binder_fd_object` (`BINDER_TYPE_FD`, cookie 1: the
//!   parcel owns the fd);
//! - a ParcelFileDescriptor is an `i32` "has comm channel" flag (0 when written here) and the
//!   fd object, followed by a second fd object when the flag is set.
//!
//! Every object written records its offset in the offsets list, which the runtime hands to
//! the driver (`data_offsets`). As in libbinder, an object can only be read at a position the
//! offsets list names, and plain reads of an object's bytes are refused.
//!
//! # Ownership
//!
//! A parcel owns every fd it holds: fds moved in ([`Parcel::write_fd`]), fds duplicated in
//! ([`Parcel::write_dup_fd`]), and, for a parcel built with [`Parcel::from_received`], the fds
//! the driver installed for the transaction. [`Parcel::read_fd`] moves an fd out (a second
//! read of the same object is [`ParcelError::FdAlreadyTaken`]; [`Parcel::read_dup_fd`] gives
//! a duplicate instead and may be repeated). Dropping the parcel closes every fd still in it,
//! then runs the release callback of a received parcel (where the runtime frees the driver's
//! buffer with `BC_FREE_BUFFER`), exactly once.
//!
//! Binder objects are plain values ([`BinderObject`]): the runtime does the reference counting.

mod error;
mod object;
mod parcelable;
mod received;
mod status;

pub use error::ParcelError;
pub use object::{BinderObject, Stability, DEFAULT_SCHED_FLAGS, LOCAL_BINDER_FLAGS};
pub use received::{offsets_from_bytes, received_fds};
pub use status::{
    exception_name, AidlException, EX_BAD_PARCELABLE, EX_HAS_NOTED_APPOPS_REPLY_HEADER,
    EX_HAS_REPLY_HEADER, EX_ILLEGAL_ARGUMENT, EX_ILLEGAL_STATE, EX_NETWORK_MAIN_THREAD, EX_NONE,
    EX_NULL_POINTER, EX_PARCELABLE, EX_SECURITY, EX_SERVICE_SPECIFIC, EX_TRANSACTION_FAILED,
    EX_UNSUPPORTED_OPERATION,
};

use crate::binder_ipc::uapi::{BinderFdObject, FlatBinderObject, BINDER_TYPE_FD};
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Size of a `flat_binder_object` / `binder_fd_object` in the data.
pub const OBJECT_SIZE: usize = std::mem::size_of::<FlatBinderObject>();

/// The largest data a parcel holds (libbinder refuses sizes above `INT32_MAX`).
pub const MAX_DATA_SIZE: usize = i32::MAX as usize;

/// The strict-mode bit libbinder always sets in an interface token (`PENALTY_GATHER`).
pub const STRICT_MODE_PENALTY_GATHER: i32 = i32::MIN; // 1 << 31

/// The work-source uid of an interface token when none is propagated.
pub const UNSET_WORK_SOURCE: i32 = -1;

/// The header word of an interface token written by system libbinder: `'SYST'`.
pub const INTERFACE_HEADER_SYST: u32 = crate::binder_ipc::uapi::pack_chars(b'S', b'Y', b'S', b'T');

/// The status word a reader of a ParcelFileDescriptor with a comm channel writes to that
/// channel: `DETACHED` (2), big-endian.
pub const PFD_STATUS_DETACHED: i32 = 2;

const DECLARED_STABILITIES: &str = "3 (vendor), 12 (system) or 63 (vintf)";

/// What [`Parcel::enforce_interface`] read before the descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceHeader {
    /// The caller's strict-mode policy (with [`STRICT_MODE_PENALTY_GATHER`]).
    pub strict_mode_policy: i32,
    /// The work-source uid ([`UNSET_WORK_SOURCE`] when none).
    pub work_source_uid: i32,
}

/// Run once when a received parcel is dropped (the runtime frees the driver buffer there).
pub type ReleaseFn = Box<dyn FnOnce() + Send>;

/// Data bytes, object offsets and the fds the parcel owns. See the [module docs](self).
#[derive(Default)]
pub struct Parcel {
    data: Vec<u8>,
    /// Offsets of the objects in `data`, ascending, non-overlapping.
    objects: Vec<u64>,
    /// The fd of each fd object, by the object's offset; `None` once taken by `read_fd`.
    fds: BTreeMap<u64, Option<OwnedFd>>,
    pos: usize,
    release: Option<ReleaseFn>,
    /// Kept alive with the parcel ([`Parcel::hold`]): the binders it carries.
    held: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for Parcel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parcel")
            .field("data_size", &self.data.len())
            .field("data_position", &self.pos)
            .field("objects", &self.objects)
            .field(
                "fds",
                &self
                    .fds
                    .values()
                    .map(|fd| fd.as_ref().map(|fd| fd.as_raw_fd()))
                    .collect::<Vec<_>>(),
            )
            .field("received", &self.release.is_some())
            .finish()
    }
}

impl Drop for Parcel {
    fn drop(&mut self) {
        // Close the fds before the buffer goes back to the driver, as libbinder does.
        self.fds.clear();
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

fn pad4(len: usize) -> Option<usize> {
    len.checked_add(3).map(|l| l & !3)
}

impl Parcel {
    /// An empty parcel.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty parcel with room for `capacity` bytes of data.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut parcel = Self::default();
        parcel.data.reserve(capacity);
        parcel
    }

    // -----------------------------------------------------------------------------------------
    // Shape

    /// The data bytes (what `binder_transaction_data.data.ptr.buffer` points to).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of data.
    pub fn data_size(&self) -> usize {
        self.data.len()
    }

    /// The read/write position.
    pub fn data_position(&self) -> usize {
        self.pos
    }

    /// Moves the read/write position (libbinder's `setDataPosition`). Any position is
    /// accepted; reads past the end fail, writes past the end pad the gap with zeros.
    pub fn set_data_position(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Bytes between the position and the end of the data.
    pub fn data_avail(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The offsets of the objects in the data, ascending (what
    /// `binder_transaction_data.data.ptr.offsets` points to; `offsets_size` is
    /// `8 * offsets().len()`).
    pub fn offsets(&self) -> &[u64] {
        &self.objects
    }

    /// The binder objects the offsets list names, with their offsets, in order (fd objects
    /// are skipped). The runtime walks these to take or drop references for a whole parcel,
    /// as libbinder's `acquireObjects` / `releaseObjects` do.
    pub fn binder_objects(&self) -> impl Iterator<Item = (u64, BinderObject)> + '_ {
        self.objects.iter().filter_map(|&offset| {
            let start = usize::try_from(offset).ok()?;
            let bytes = self.data.get(start..start.checked_add(OBJECT_SIZE)?)?;
            let flat: FlatBinderObject = bytemuck::pod_read_unaligned(bytes);
            BinderObject::from_flat(&flat)
                .ok()
                .flatten()
                .map(|obj| (offset, obj))
        })
    }

    /// The fds the parcel still owns, in the order of their objects.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> + '_ {
        self.fds
            .values()
            .filter_map(|fd| fd.as_ref().map(|fd| fd.as_fd()))
    }

    /// True when the parcel holds file descriptor objects (taken or not).
    pub fn has_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// True for a parcel built by [`Parcel::from_received`] with a release callback that has
    /// not run yet.
    pub fn is_received(&self) -> bool {
        self.release.is_some()
    }

    // -----------------------------------------------------------------------------------------
    // Low-level write and read

    /// The first object whose bytes intersect `[start, start + len)`.
    fn object_in(&self, start: usize, len: usize) -> Option<u64> {
        let start = start as u64;
        let end = start.saturating_add(len as u64);
        let i = self
            .objects
            .partition_point(|&o| o + OBJECT_SIZE as u64 <= start);
        self.objects.get(i).copied().filter(|&o| o < end)
    }

    /// Makes room for `len` bytes at the position (zero-filling any gap before it), checks no
    /// object is in the way, and returns the start.
    fn reserve(&mut self, len: usize) -> Result<usize, ParcelError> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= MAX_DATA_SIZE)
            .ok_or(ParcelError::TooLarge { max: MAX_DATA_SIZE })?;
        if let Some(object) = self.object_in(start, len) {
            return Err(ParcelError::WriteOverObject {
                pos: start,
                len,
                object,
            });
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        Ok(start)
    }

    /// Writes `bytes` at the position, zero-padded to a multiple of 4.
    fn write_padded(&mut self, bytes: &[u8]) -> Result<(), ParcelError> {
        let padded = pad4(bytes.len()).ok_or(ParcelError::TooLarge { max: MAX_DATA_SIZE })?;
        let start = self.reserve(padded)?;
        self.data[start..start + bytes.len()].copy_from_slice(bytes);
        self.data[start + bytes.len()..start + padded].fill(0);
        self.pos = start + padded;
        Ok(())
    }

    /// Checks that `len` bytes (plus padding) can be read at `pos` as plain data and returns
    /// the end of the padded read.
    fn check_read(&self, pos: usize, len: usize) -> Result<usize, ParcelError> {
        let size = self.data.len();
        let end = pad4(len).and_then(|padded| pos.checked_add(padded));
        match end {
            Some(end) if end <= size => {
                if let Some(object) = self.object_in(pos, end - pos) {
                    return Err(ParcelError::ReadOverObject {
                        pos,
                        len: end - pos,
                        object,
                    });
                }
                Ok(end)
            }
            _ => Err(ParcelError::UnexpectedEnd {
                pos,
                needed: pad4(len).unwrap_or(len),
                size,
            }),
        }
    }

    /// Reads `len` bytes at the position and skips their padding.
    fn read_padded(&mut self, len: usize) -> Result<&[u8], ParcelError> {
        let start = self.pos;
        let end = self.check_read(start, len)?;
        self.pos = end;
        Ok(&self.data[start..start + len])
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], ParcelError> {
        let bytes = self.read_padded(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Writes raw bytes at the position, zero-padded to 4 (libbinder's `write`).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ParcelError> {
        self.write_padded(bytes)
    }

    /// Reads `len` raw bytes at the position and skips their padding (libbinder's `read`).
    pub fn read_bytes(&mut self, len: usize) -> Result<&[u8], ParcelError> {
        self.read_padded(len)
    }

    // -----------------------------------------------------------------------------------------
    // Primitives

    /// Writes an `i32`.
    pub fn write_i32(&mut self, v: i32) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes a `u32`.
    pub fn write_u32(&mut self, v: u32) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes an `i64` (8 bytes at a 4-aligned position).
    pub fn write_i64(&mut self, v: i64) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes a `u64`.
    pub fn write_u64(&mut self, v: u64) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes an `f32`.
    pub fn write_f32(&mut self, v: f32) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes an `f64`.
    pub fn write_f64(&mut self, v: f64) -> Result<(), ParcelError> {
        self.write_padded(&v.to_ne_bytes())
    }

    /// Writes a `bool` as an `i32` 0 or 1.
    pub fn write_bool(&mut self, v: bool) -> Result<(), ParcelError> {
        self.write_i32(i32::from(v))
    }

    /// Writes a byte as an `i32` (sign-extended, as libbinder's `writeByte`).
    pub fn write_byte(&mut self, v: i8) -> Result<(), ParcelError> {
        self.write_i32(i32::from(v))
    }

    /// Writes a UTF-16 unit (`char16_t`) as an `i32`.
    pub fn write_char(&mut self, v: u16) -> Result<(), ParcelError> {
        self.write_i32(i32::from(v))
    }

    /// Reads an `i32`.
    pub fn read_i32(&mut self) -> Result<i32, ParcelError> {
        self.read_array().map(i32::from_ne_bytes)
    }

    /// Reads a `u32`.
    pub fn read_u32(&mut self) -> Result<u32, ParcelError> {
        self.read_array().map(u32::from_ne_bytes)
    }

    /// Reads an `i64`.
    pub fn read_i64(&mut self) -> Result<i64, ParcelError> {
        self.read_array().map(i64::from_ne_bytes)
    }

    /// Reads a `u64`.
    pub fn read_u64(&mut self) -> Result<u64, ParcelError> {
        self.read_array().map(u64::from_ne_bytes)
    }

    /// Reads an `f32`.
    pub fn read_f32(&mut self) -> Result<f32, ParcelError> {
        self.read_array().map(f32::from_ne_bytes)
    }

    /// Reads an `f64`.
    pub fn read_f64(&mut self) -> Result<f64, ParcelError> {
        self.read_array().map(f64::from_ne_bytes)
    }

    /// Reads a `bool` (any non-zero `i32` is true, as in libbinder).
    pub fn read_bool(&mut self) -> Result<bool, ParcelError> {
        self.read_i32().map(|v| v != 0)
    }

    /// Reads a byte written as an `i32` (truncated, as libbinder's `readByte`).
    pub fn read_byte(&mut self) -> Result<i8, ParcelError> {
        self.read_i32().map(|v| v as i8)
    }

    /// Reads a UTF-16 unit written as an `i32` (truncated, as libbinder's `readChar`).
    pub fn read_char(&mut self) -> Result<u16, ParcelError> {
        self.read_i32().map(|v| v as u16)
    }

    // -----------------------------------------------------------------------------------------
    // Strings and arrays

    fn len_i32(len: usize) -> Result<i32, ParcelError> {
        i32::try_from(len).map_err(|_| ParcelError::TooLarge { max: MAX_DATA_SIZE })
    }

    /// Writes a String16 from UTF-16 units.
    pub fn write_string16_units(&mut self, units: &[u16]) -> Result<(), ParcelError> {
        let len = Self::len_i32(units.len())?;
        let start = self.pos;
        let mut bytes = Vec::with_capacity((units.len() + 1) * 2);
        for unit in units.iter().chain(std::iter::once(&0)) {
            bytes.extend_from_slice(&unit.to_ne_bytes());
        }
        let result = self.write_i32(len).and_then(|()| self.write_padded(&bytes));
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Writes a string as String16 (libbinder's `writeString16` / `writeUtf8AsUtf16`).
    pub fn write_string16(&mut self, s: &str) -> Result<(), ParcelError> {
        let units: Vec<u16> = s.encode_utf16().collect();
        self.write_string16_units(&units)
    }

    /// Writes a string or null (`-1`) as String16.
    pub fn write_nullable_string16(&mut self, s: Option<&str>) -> Result<(), ParcelError> {
        match s {
            Some(s) => self.write_string16(s),
            None => self.write_i32(-1),
        }
    }

    /// libbinder's name for [`Parcel::write_string16`]: UTF-8 text travels as UTF-16.
    pub fn write_utf8_as_utf16(&mut self, s: &str) -> Result<(), ParcelError> {
        self.write_string16(s)
    }

    /// Runs a multi-step read; on error, puts the position back where it was.
    fn atomic_read<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, ParcelError>,
    ) -> Result<T, ParcelError> {
        let start = self.pos;
        let result = read(self);
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads a String16 as UTF-16 units; `None` for null.
    pub fn read_string16_units(&mut self) -> Result<Option<Vec<u16>>, ParcelError> {
        self.atomic_read(|p| {
            let start = p.pos;
            let len = p.read_i32()?;
            if len == -1 {
                return Ok(None);
            }
            let what = "String16";
            if len < -1 {
                return Err(ParcelError::NegativeLength {
                    what,
                    pos: start,
                    len,
                });
            }
            let available = p.data_avail();
            let bytes = (len as usize + 1) * 2;
            if bytes > available {
                return Err(ParcelError::LengthTooLarge {
                    what,
                    pos: start,
                    len,
                    available,
                });
            }
            let raw = p.read_padded(bytes)?;
            let mut units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            if units.pop() != Some(0) {
                return Err(ParcelError::MissingTerminator { pos: start, len });
            }
            Ok(Some(units))
        })
    }

    /// Reads a String16 into a `String`; `None` for null. Invalid UTF-16 is an error.
    pub fn read_string16(&mut self) -> Result<Option<String>, ParcelError> {
        self.atomic_read(|p| {
            let start = p.pos;
            match p.read_string16_units()? {
                None => Ok(None),
                Some(units) => String::from_utf16(&units)
                    .map(Some)
                    .map_err(|_| ParcelError::InvalidUtf16 { pos: start }),
            }
        })
    }

    /// Reads a String16 that must not be null.
    pub fn read_required_string16(&mut self) -> Result<String, ParcelError> {
        let pos = self.pos;
        self.atomic_read(|p| {
            p.read_string16()?.ok_or(ParcelError::UnexpectedNull {
                what: "String16",
                pos,
            })
        })
    }

    /// libbinder's name for [`Parcel::read_string16`].
    pub fn read_utf8_from_utf16(&mut self) -> Result<Option<String>, ParcelError> {
        self.read_string16()
    }

    /// Writes a byte array: `i32` length, the bytes, padding.
    pub fn write_byte_array(&mut self, bytes: &[u8]) -> Result<(), ParcelError> {
        let len = Self::len_i32(bytes.len())?;
        let start = self.pos;
        let result = self.write_i32(len).and_then(|()| self.write_padded(bytes));
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Writes a byte array or null (`-1`).
    pub fn write_nullable_byte_array(&mut self, bytes: Option<&[u8]>) -> Result<(), ParcelError> {
        match bytes {
            Some(bytes) => self.write_byte_array(bytes),
            None => self.write_i32(-1),
        }
    }

    /// Reads a byte array; `None` for null.
    pub fn read_byte_array(&mut self) -> Result<Option<Vec<u8>>, ParcelError> {
        self.atomic_read(|p| {
            let start = p.pos;
            let len = p.read_i32()?;
            if len == -1 {
                return Ok(None);
            }
            let what = "byte array";
            if len < -1 {
                return Err(ParcelError::NegativeLength {
                    what,
                    pos: start,
                    len,
                });
            }
            let available = p.data_avail();
            if len as usize > available {
                return Err(ParcelError::LengthTooLarge {
                    what,
                    pos: start,
                    len,
                    available,
                });
            }
            Ok(Some(p.read_padded(len as usize)?.to_vec()))
        })
    }

    /// Reads an `i32` element count of a vector and checks it is not negative (null is
    /// `-1`: `Ok(None)`) and not larger than the bytes left, which bounds any allocation.
    fn read_count(&mut self, what: &'static str) -> Result<Option<usize>, ParcelError> {
        let start = self.pos;
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < -1 {
            self.pos = start;
            return Err(ParcelError::NegativeLength {
                what,
                pos: start,
                len,
            });
        }
        let available = self.data_avail();
        if len as usize > available {
            self.pos = start;
            return Err(ParcelError::LengthTooLarge {
                what,
                pos: start,
                len,
                available,
            });
        }
        Ok(Some(len as usize))
    }

    /// Writes an `i32` vector (AIDL `int[]`): count, then the values.
    pub fn write_i32_array(&mut self, values: &[i32]) -> Result<(), ParcelError> {
        let len = Self::len_i32(values.len())?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let start = self.pos;
        let result = self.write_i32(len).and_then(|()| self.write_padded(&bytes));
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads an `i32` vector; `None` for null (`-1`).
    pub fn read_i32_array(&mut self) -> Result<Option<Vec<i32>>, ParcelError> {
        self.atomic_read(|p| {
            let Some(count) = p.read_count("int32 array")? else {
                return Ok(None);
            };
            let bytes = p.read_padded(count.saturating_mul(4))?;
            Ok(Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ))
        })
    }

    /// Writes a vector of strings as String16s (AIDL `String[]` / `List<String>`): count,
    /// then each string.
    pub fn write_string16_array<S: AsRef<str>>(&mut self, values: &[S]) -> Result<(), ParcelError> {
        let len = Self::len_i32(values.len())?;
        let start = self.pos;
        let result = (|| {
            self.write_i32(len)?;
            values
                .iter()
                .try_for_each(|s| self.write_string16(s.as_ref()))
        })();
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads a vector of non-null strings; `None` for a null vector. A null element is
    /// [`ParcelError::UnexpectedNull`] (as libbinder's `readUtf8VectorFromUtf16Vector`).
    pub fn read_string16_array(&mut self) -> Result<Option<Vec<String>>, ParcelError> {
        self.atomic_read(|p| {
            let Some(count) = p.read_count("String16 array")? else {
                return Ok(None);
            };
            // Each element takes at least 4 bytes: reserve no more than the data left allows.
            let mut out = Vec::with_capacity(count.min(p.data_avail() / 4));
            for _ in 0..count {
                out.push(p.read_required_string16()?);
            }
            Ok(Some(out))
        })
    }

    /// Writes a vector of nullable strings as String16s (AIDL `@nullable String[]` elements,
    /// libbinder's `writeUtf8VectorAsUtf16Vector` of `std::optional`): count, then each string
    /// or `-1` for a null element.
    pub fn write_nullable_string16_array<S: AsRef<str>>(
        &mut self,
        values: &[Option<S>],
    ) -> Result<(), ParcelError> {
        let len = Self::len_i32(values.len())?;
        let start = self.pos;
        let result = (|| {
            self.write_i32(len)?;
            values
                .iter()
                .try_for_each(|s| self.write_nullable_string16(s.as_ref().map(|s| s.as_ref())))
        })();
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads a vector of strings whose elements may be null (`-1`), as AOSP and rsbinder write
    /// them for `@nullable` element types; `None` for a null vector.
    pub fn read_nullable_string16_array(
        &mut self,
    ) -> Result<Option<Vec<Option<String>>>, ParcelError> {
        self.atomic_read(|p| {
            let Some(count) = p.read_count("String16 array")? else {
                return Ok(None);
            };
            // Each element takes at least 4 bytes: reserve no more than the data left allows.
            let mut out = Vec::with_capacity(count.min(p.data_avail() / 4));
            for _ in 0..count {
                out.push(p.read_string16()?);
            }
            Ok(Some(out))
        })
    }

    // -----------------------------------------------------------------------------------------
    // Interface tokens

    /// Writes an interface token as libbinder does with no strict-mode policy and no work
    /// source: `0x8000_0000`, `-1`, `'SYST'`, descriptor.
    pub fn write_interface_token(&mut self, descriptor: &str) -> Result<(), ParcelError> {
        self.write_interface_token_with(
            InterfaceHeader {
                strict_mode_policy: 0,
                work_source_uid: UNSET_WORK_SOURCE,
            },
            descriptor,
        )
    }

    /// Writes an interface token with the given strict-mode policy (the gather bit is added)
    /// and work-source uid.
    pub fn write_interface_token_with(
        &mut self,
        header: InterfaceHeader,
        descriptor: &str,
    ) -> Result<(), ParcelError> {
        let start = self.pos;
        let result = (|| {
            self.write_i32(header.strict_mode_policy | STRICT_MODE_PENALTY_GATHER)?;
            self.write_i32(header.work_source_uid)?;
            self.write_u32(INTERFACE_HEADER_SYST)?;
            self.write_string16(descriptor)
        })();
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads an interface token and checks it names `descriptor` (libbinder's
    /// `enforceInterface`). A header other than `'SYST'` is
    /// [`ParcelError::InterfaceHeader`]; another descriptor is
    /// [`ParcelError::InterfaceMismatch`].
    pub fn enforce_interface(&mut self, descriptor: &str) -> Result<InterfaceHeader, ParcelError> {
        self.atomic_read(|p| {
            let strict_mode_policy = p.read_i32()?;
            let work_source_uid = p.read_i32()?;
            let header_pos = p.pos;
            let header = p.read_u32()?;
            if header != INTERFACE_HEADER_SYST {
                return Err(ParcelError::InterfaceHeader {
                    pos: header_pos,
                    expected: INTERFACE_HEADER_SYST,
                    found: header,
                });
            }
            let found = p.read_string16_units()?;
            let expected: Vec<u16> = descriptor.encode_utf16().collect();
            if found.as_deref() != Some(&expected[..]) {
                return Err(ParcelError::InterfaceMismatch {
                    expected: descriptor.to_owned(),
                    found: found.map(|units| String::from_utf16_lossy(&units)),
                });
            }
            Ok(InterfaceHeader {
                strict_mode_policy,
                work_source_uid,
            })
        })
    }

    // -----------------------------------------------------------------------------------------
    // Objects

    /// Writes a 24-byte object at the position (4-aligned), recording its offset when
    /// `record` is set, and returns its offset.
    fn write_object(
        &mut self,
        bytes: &[u8; OBJECT_SIZE],
        record: bool,
    ) -> Result<u64, ParcelError> {
        if self.pos % 4 != 0 {
            return Err(ParcelError::UnalignedObject { pos: self.pos });
        }
        let start = self.reserve(OBJECT_SIZE)?;
        self.data[start..start + OBJECT_SIZE].copy_from_slice(bytes);
        self.pos = start + OBJECT_SIZE;
        let offset = start as u64;
        if record {
            // No object intersects these bytes (checked by reserve): insert in order.
            let i = self.objects.partition_point(|&o| o < offset);
            self.objects.insert(i, offset);
        }
        Ok(offset)
    }

    /// The 24 bytes at the position, as an object: checks they are inside the data and, unless
    /// `unlisted_null_ok` lets an unlisted all-zero pointer/cookie object through (libbinder's
    /// null binder), that the offsets list names this position.
    fn peek_object(&self, unlisted_null_ok: bool) -> Result<FlatBinderObject, ParcelError> {
        let pos = self.pos;
        let size = self.data.len();
        let bytes = pos
            .checked_add(OBJECT_SIZE)
            .and_then(|end| self.data.get(pos..end))
            .ok_or(ParcelError::UnexpectedEnd {
                pos,
                needed: OBJECT_SIZE,
                size,
            })?;
        let flat: FlatBinderObject = bytemuck::pod_read_unaligned(bytes);
        if self.objects.binary_search(&(pos as u64)).is_ok() {
            return Ok(flat);
        }
        if unlisted_null_ok && flat.binder == 0 && flat.cookie == 0 {
            // Not an object to the driver: plain bytes, which must not cover a listed object.
            if let Some(object) = self.object_in(pos, OBJECT_SIZE) {
                return Err(ParcelError::ReadOverObject {
                    pos,
                    len: OBJECT_SIZE,
                    object,
                });
            }
            return Ok(flat);
        }
        Err(ParcelError::NoObjectAt { pos })
    }

    /// Keeps `object` alive as long as the parcel (libbinder's Parcel holds a strong
    /// reference on every binder it carries): the runtime passes the binder it writes, so a
    /// handle cannot be released before the transaction that carries it is written.
    pub fn hold(&mut self, object: Box<dyn std::any::Any + Send + Sync>) {
        self.held.push(object);
    }

    /// Writes a binder object followed by the [`Stability::SYSTEM`] stability.
    pub fn write_binder(&mut self, obj: BinderObject) -> Result<(), ParcelError> {
        self.write_binder_with_stability(obj, Stability::SYSTEM)
    }

    /// Writes a binder object followed by `stability`, which must be a declared level
    /// ([`Stability::is_declared`]) or this is [`ParcelError::BadFlag`]. Like libbinder, the offset is recorded
    /// only when the object's pointer/handle word is non-zero: a handle-0 reference travels
    /// untranslated and reads back as handle 0.
    /// A local binder with pointer 0 is [`ParcelError::UnexpectedNull`]: a null binder is
    /// [`Parcel::write_null_binder`]'s.
    pub fn write_binder_with_stability(
        &mut self,
        obj: BinderObject,
        stability: Stability,
    ) -> Result<(), ParcelError> {
        if !stability.is_declared() {
            return Err(ParcelError::BadFlag {
                what: "binder stability",
                pos: self.pos + OBJECT_SIZE,
                value: stability.0,
                allowed: DECLARED_STABILITIES,
            });
        }
        // A local binder is named by its pointer: with pointer 0 it would be written outside
        // the offsets (libbinder's null binder) and read back as something else. A null
        // binder is `write_null_binder`'s.
        if let BinderObject::Local { ptr: 0, .. } = obj {
            return Err(ParcelError::UnexpectedNull {
                what: "local binder pointer (write_null_binder writes a null binder)",
                pos: self.pos,
            });
        }
        let flat = obj.to_flat();
        let start = self.pos;
        let bytes: [u8; OBJECT_SIZE] = bytemuck::cast(flat);
        let result = self
            .write_object(&bytes, flat.binder != 0)
            .and_then(|_| self.write_i32(stability.0));
        if let Err(e) = result {
            // The object may be in; take it out again.
            if let Ok(i) = self.objects.binary_search(&(start as u64)) {
                self.objects.remove(i);
            }
            self.pos = start;
            return Err(e);
        }
        Ok(())
    }

    /// Writes libbinder's null binder (a zero `BINDER_TYPE_BINDER` object, not listed in the
    /// offsets) followed by [`Stability::UNDECLARED`].
    pub fn write_null_binder(&mut self) -> Result<(), ParcelError> {
        let mut flat = FlatBinderObject::default();
        flat.hdr.type_ = crate::binder_ipc::uapi::BINDER_TYPE_BINDER;
        flat.flags = DEFAULT_SCHED_FLAGS;
        let start = self.pos;
        let bytes: [u8; OBJECT_SIZE] = bytemuck::cast(flat);
        let result = self
            .write_object(&bytes, false)
            .and_then(|_| self.write_i32(Stability::UNDECLARED.0));
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads a binder object and its stability; `None` for a null binder. As in libbinder, a
    /// non-null binder must carry a declared stability level and a null binder
    /// [`Stability::UNDECLARED`], else [`ParcelError::BadFlag`].
    pub fn read_binder_with_stability(
        &mut self,
    ) -> Result<Option<(BinderObject, Stability)>, ParcelError> {
        self.atomic_read(|p| {
            let pos = p.pos;
            let flat = p.peek_object(true)?;
            let obj =
                BinderObject::from_flat(&flat).map_err(|found| ParcelError::WrongObjectType {
                    expected: "a binder object",
                    pos,
                    found,
                })?;
            p.pos = pos + OBJECT_SIZE;
            let stability = Stability::from_wire(p.read_i32()?);
            let (ok, allowed) = match obj {
                Some(_) => (stability.is_declared(), DECLARED_STABILITIES),
                None => (
                    stability == Stability::UNDECLARED,
                    "0 (undeclared) for a null binder",
                ),
            };
            if !ok {
                return Err(ParcelError::BadFlag {
                    what: "binder stability",
                    pos: pos + OBJECT_SIZE,
                    value: stability.0,
                    allowed,
                });
            }
            Ok(obj.map(|obj| (obj, stability)))
        })
    }

    /// Reads a binder object (its stability is read and dropped); `None` for a null binder.
    pub fn read_binder(&mut self) -> Result<Option<BinderObject>, ParcelError> {
        Ok(self.read_binder_with_stability()?.map(|(obj, _)| obj))
    }

    /// Reads a binder object that must not be null.
    pub fn read_required_binder(&mut self) -> Result<BinderObject, ParcelError> {
        let pos = self.pos;
        self.atomic_read(|p| {
            p.read_binder()?.ok_or(ParcelError::UnexpectedNull {
                what: "binder",
                pos,
            })
        })
    }

    // -----------------------------------------------------------------------------------------
    // File descriptors

    /// Writes a file descriptor object for `fd`, which the parcel now owns (cookie 1) until
    /// it is dropped or the fd is read out.
    pub fn write_fd(&mut self, fd: OwnedFd) -> Result<(), ParcelError> {
        let obj = BinderFdObject {
            hdr: crate::binder_ipc::uapi::BinderObjectHeader {
                type_: BINDER_TYPE_FD,
            },
            pad_flags: 0,
            pad_binder: u64::from(fd.as_raw_fd() as u32),
            cookie: 1,
        };
        let bytes: [u8; OBJECT_SIZE] = bytemuck::cast(obj);
        let offset = self.write_object(&bytes, true)?;
        self.fds.insert(offset, Some(fd));
        Ok(())
    }

    /// Writes a duplicate of `fd` (`F_DUPFD_CLOEXEC`), owned by the parcel.
    pub fn write_dup_fd(&mut self, fd: BorrowedFd<'_>) -> Result<(), ParcelError> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| ParcelError::Dup(io_errno(&e)))?;
        self.write_fd(dup)
    }

    /// Finds the fd object at the position and returns its offset (the position is not moved).
    fn fd_object_here(&self) -> Result<u64, ParcelError> {
        let pos = self.pos;
        let flat = self.peek_object(false)?;
        if flat.hdr.type_ != BINDER_TYPE_FD {
            return Err(ParcelError::WrongObjectType {
                expected: "a file descriptor object",
                pos,
                found: flat.hdr.type_,
            });
        }
        Ok(pos as u64)
    }

    /// Reads a file descriptor object and moves its fd out of the parcel. Reading the same
    /// object again is [`ParcelError::FdAlreadyTaken`].
    pub fn read_fd(&mut self) -> Result<OwnedFd, ParcelError> {
        let pos = self.pos;
        let offset = self.fd_object_here()?;
        let fd = self
            .fds
            .get_mut(&offset)
            .and_then(Option::take)
            .ok_or(ParcelError::FdAlreadyTaken { pos })?;
        self.pos = pos + OBJECT_SIZE;
        Ok(fd)
    }

    /// Reads a file descriptor object and returns a duplicate (`F_DUPFD_CLOEXEC`) of its fd,
    /// which stays in the parcel (libbinder's `readUniqueFileDescriptor`).
    pub fn read_dup_fd(&mut self) -> Result<OwnedFd, ParcelError> {
        let pos = self.pos;
        let offset = self.fd_object_here()?;
        let fd = match self.fds.get(&offset) {
            Some(Some(fd)) => fd.try_clone().map_err(|e| ParcelError::Dup(io_errno(&e)))?,
            _ => return Err(ParcelError::FdAlreadyTaken { pos }),
        };
        self.pos = pos + OBJECT_SIZE;
        Ok(fd)
    }

    /// Writes a ParcelFileDescriptor without a comm channel: `i32` 0, then the fd object
    /// (libbinder's `writeParcelFileDescriptor`). AIDL adds its own non-null marker (`i32` 1)
    /// before a parcelable argument; write it with [`Parcel::write_i32`] when talking to AIDL.
    pub fn write_parcel_file_descriptor(&mut self, fd: OwnedFd) -> Result<(), ParcelError> {
        let start = self.pos;
        let result = self.write_i32(0).and_then(|()| self.write_fd(fd));
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Writes a ParcelFileDescriptor holding a duplicate of `fd`.
    pub fn write_dup_parcel_file_descriptor(
        &mut self,
        fd: BorrowedFd<'_>,
    ) -> Result<(), ParcelError> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| ParcelError::Dup(io_errno(&e)))?;
        self.write_parcel_file_descriptor(dup)
    }

    /// Writes a ParcelFileDescriptor the way AIDL frames a (nullable) parcelable: `i32` 1 and
    /// the ParcelFileDescriptor, or `i32` 0 for null.
    pub fn write_nullable_parcel_file_descriptor(
        &mut self,
        fd: Option<OwnedFd>,
    ) -> Result<(), ParcelError> {
        let start = self.pos;
        let result = match fd {
            None => self.write_i32(0),
            Some(fd) => self
                .write_i32(1)
                .and_then(|()| self.write_parcel_file_descriptor(fd)),
        };
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// Reads a ParcelFileDescriptor framed as an AIDL parcelable: `i32` 0 is null, `i32` 1 is
    /// followed by the ParcelFileDescriptor; any other flag is [`ParcelError::BadFlag`].
    pub fn read_nullable_parcel_file_descriptor(&mut self) -> Result<Option<OwnedFd>, ParcelError> {
        let start = self.pos;
        match self.read_i32()? {
            0 => Ok(None),
            1 => match self.read_parcel_file_descriptor() {
                Ok(fd) => Ok(Some(fd)),
                Err(e) => {
                    self.pos = start;
                    Err(e)
                }
            },
            value => {
                self.pos = start;
                Err(ParcelError::BadFlag {
                    what: "parcelable presence flag",
                    pos: start,
                    value,
                    allowed: "0 (null) or 1",
                })
            }
        }
    }

    /// Reads a ParcelFileDescriptor and moves its fd out (libbinder's
    /// `readParcelFileDescriptor`). When the writer attached a comm channel, that second fd
    /// is read too, told `DETACHED` (as libbinder does; a failed write is ignored) and closed.
    pub fn read_parcel_file_descriptor(&mut self) -> Result<OwnedFd, ParcelError> {
        let start = self.pos;
        let has_comm = self.read_i32()?;
        let fd = match self.read_fd() {
            Ok(fd) => fd,
            Err(e) => {
                self.pos = start;
                return Err(e);
            }
        };
        if has_comm != 0 {
            let comm = match self.read_fd() {
                Ok(comm) => comm,
                Err(e) => {
                    // Put the first fd back so that nothing leaks and a retry sees the same state.
                    self.fds.insert((start + 4) as u64, Some(fd));
                    self.pos = start;
                    return Err(e);
                }
            };
            let _ = nix::unistd::write(&comm, &PFD_STATUS_DETACHED.to_be_bytes());
        }
        Ok(fd)
    }
}

static_assertions::assert_impl_all!(Parcel: Send);

fn io_errno(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests;
