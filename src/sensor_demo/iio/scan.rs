//! IIO scan elements: the type strings of `scan_elements/in_*_type`, the layout of one scan
//! (a record of the buffered interface), and decoding a record into channel values.
//!
//! Facts from the kernel's IIO ABI (`Documentation/ABI/testing/sysfs-bus-iio`,
//! `Documentation/iio/iio_devbuf.rst`): a type reads `[be|le]:[s|u]bits/storagebits[Xrepeat]>>shift`;
//! a sample is `storagebits` wide, shifted right by `shift`, of which `bits` are valid. Enabled
//! channels appear in a scan in `_index` order, each aligned to its own storage size; the scan
//! is padded to a multiple of its largest element.

/// A parsed scan element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanType {
    /// Big-endian (`be`) rather than little-endian (`le`).
    pub big_endian: bool,
    /// Signed (`s`) rather than unsigned (`u`).
    pub signed: bool,
    /// Valid bits, 1 to `storage_bits`.
    pub bits: u32,
    /// Storage size in bits: 8, 16, 32 or 64.
    pub storage_bits: u32,
    /// Right shift before masking, `shift + bits <= storage_bits`.
    pub shift: u32,
    /// Repeat count (1 when absent).
    pub repeat: u32,
}

/// A type string that is not `[be|le]:[s|u]bits/storagebits[Xrepeat]>>shift` with sane values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad IIO scan type {0:?}")]
pub struct BadScanType(pub String);

/// The most repeats accepted (the kernel's channels use small ones).
pub const MAX_REPEAT: u32 = 16;

impl ScanType {
    /// Parse a type string (surrounding whitespace ignored). Never panics.
    pub fn parse(text: &str) -> Result<ScanType, BadScanType> {
        let bad = || BadScanType(text.chars().take(64).collect());
        let text = text.trim();
        let (endian, rest) = text.split_once(':').ok_or_else(bad)?;
        let big_endian = match endian {
            "be" => true,
            "le" => false,
            _ => return Err(bad()),
        };
        let signed = match rest.as_bytes().first() {
            Some(b's') => true,
            Some(b'u') => false,
            _ => return Err(bad()),
        };
        let rest = &rest[1..];
        let (bits, rest) = rest.split_once('/').ok_or_else(bad)?;
        let (sizes, shift) = rest.split_once(">>").unwrap_or((rest, "0"));
        let (storage, repeat) = sizes.split_once('X').unwrap_or((sizes, "1"));
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let t = ScanType {
            big_endian,
            signed,
            bits: num(bits)?,
            storage_bits: num(storage)?,
            shift: num(shift)?,
            repeat: num(repeat)?,
        };
        let fits = t
            .bits
            .checked_add(t.shift)
            .is_some_and(|s| s <= t.storage_bits);
        if ![8, 16, 32, 64].contains(&t.storage_bits)
            || t.bits == 0
            || !fits
            || t.repeat == 0
            || t.repeat > MAX_REPEAT
        {
            return Err(bad());
        }
        Ok(t)
    }

    /// Bytes of one storage element.
    pub fn storage_bytes(&self) -> usize {
        (self.storage_bits / 8) as usize
    }

    /// Bytes the channel takes in a scan (all repeats).
    pub fn bytes(&self) -> usize {
        self.storage_bytes() * self.repeat as usize
    }

    /// Decode the first element of `bytes` (which must hold [`ScanType::storage_bytes`];
    /// `None` otherwise): shift, mask to `bits`, sign-extend.
    pub fn decode(&self, bytes: &[u8]) -> Option<i64> {
        let n = self.storage_bytes();
        let raw = bytes.get(..n)?;
        let mut word = [0u8; 8];
        let value = if self.big_endian {
            word[8 - n..].copy_from_slice(raw);
            u64::from_be_bytes(word)
        } else {
            word[..n].copy_from_slice(raw);
            u64::from_le_bytes(word)
        };
        let value = value >> self.shift;
        let value = if self.bits >= 64 {
            value
        } else {
            value & ((1u64 << self.bits) - 1)
        };
        if self.signed && self.bits < 64 && value >> (self.bits - 1) & 1 == 1 {
            Some((value | !((1u64 << self.bits) - 1)) as i64)
        } else {
            Some(value as i64)
        }
    }
}

/// One enabled channel's place in a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The channel's name (`accel_x`, `timestamp`, ...).
    pub name: String,
    /// Its `_index`.
    pub index: u32,
    /// Its type.
    pub scan: ScanType,
    /// Its byte offset in a scan.
    pub offset: usize,
}

/// The layout of one scan of a device's enabled channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanLayout {
    /// Channels in scan order.
    pub slots: Vec<Slot>,
    /// Bytes of one scan (a record of `/dev/iio:deviceN`).
    pub size: usize,
}

/// The most bytes one scan may take (far beyond any real device; keeps buffers bounded).
pub const MAX_SCAN_BYTES: usize = 4096;

impl ScanLayout {
    /// The layout of `channels` (name, index, type), ordered by index; `None` if two share an
    /// index or the scan would exceed [`MAX_SCAN_BYTES`].
    pub fn new(mut channels: Vec<(String, u32, ScanType)>) -> Option<ScanLayout> {
        channels.sort_by_key(|c| c.1);
        if channels.windows(2).any(|w| w[0].1 == w[1].1) {
            return None;
        }
        let mut size = 0usize;
        let mut largest = 1usize;
        let mut slots = Vec::with_capacity(channels.len());
        for (name, index, scan) in channels {
            let align = scan.storage_bytes();
            let offset = size.checked_next_multiple_of(align)?;
            size = offset.checked_add(scan.bytes())?;
            largest = largest.max(align);
            slots.push(Slot {
                name,
                index,
                scan,
                offset,
            });
        }
        let size = size.checked_next_multiple_of(largest)?;
        (size <= MAX_SCAN_BYTES).then_some(ScanLayout { slots, size })
    }

    /// The raw value of channel `name` in `scan` (`None` if the channel is not in the layout
    /// or the scan is short).
    pub fn raw(&self, scan: &[u8], name: &str) -> Option<i64> {
        let slot = self.slots.iter().find(|s| s.name == name)?;
        slot.scan.decode(scan.get(slot.offset..)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_type_strings() {
        let t = ScanType::parse("le:s16/16>>0\n").unwrap();
        assert_eq!(
            (t.big_endian, t.signed, t.bits, t.storage_bits, t.shift),
            (false, true, 16, 16, 0)
        );
        let t = ScanType::parse("be:u12/16>>4").unwrap();
        assert_eq!(
            (t.big_endian, t.signed, t.bits, t.shift),
            (true, false, 12, 4)
        );
        assert_eq!(ScanType::parse("le:s12/16X2>>4").unwrap().repeat, 2);
        for bad in [
            "",
            "le",
            "xe:s16/16>>0",
            "le:s17/16>>0",
            "le:s16/12>>0",
            "le:s8/16>>9",
            "le:q16/16",
            "le:s0/8",
            "le:s16/16X0",
        ] {
            assert!(ScanType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_shifted_signed_samples() {
        let t = ScanType::parse("be:s12/16>>4").unwrap();
        // -3 in 12 bits, shifted left by 4, big-endian.
        let word = ((-3i16 as u16) << 4).to_be_bytes();
        assert_eq!(t.decode(&word), Some(-3));
        let t = ScanType::parse("le:u8/8>>0").unwrap();
        assert_eq!(t.decode(&[200]), Some(200));
        assert_eq!(t.decode(&[]), None);
    }

    #[test]
    fn lays_out_scans_with_alignment() {
        let s16 = ScanType::parse("le:s16/16>>0").unwrap();
        let s64 = ScanType::parse("le:s64/64>>0").unwrap();
        let layout = ScanLayout::new(vec![
            ("timestamp".into(), 3, s64),
            ("accel_x".into(), 0, s16),
            ("accel_y".into(), 1, s16),
            ("accel_z".into(), 2, s16),
        ])
        .unwrap();
        let offsets: Vec<usize> = layout.slots.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, [0, 2, 4, 8]);
        assert_eq!(layout.size, 16);
    }
}
