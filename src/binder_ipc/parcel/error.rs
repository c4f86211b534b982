//! What can go wrong while writing or reading a [`Parcel`](super::Parcel).

use super::status::AidlException;
use nix::errno::Errno;

/// An error from writing or reading a [`Parcel`](super::Parcel).
///
/// Every variant says what was wrong and at which byte position of the parcel's data (or
/// which entry of its offsets array). Reads never panic, whatever the bytes: they return one
/// of these and leave the data position where it was.
#[derive(Debug, thiserror::Error)]
pub enum ParcelError {
    /// A read needs more bytes than the data holds.
    #[error(
        "reading {needed} bytes at position {pos} runs past the end of the data ({size} bytes)"
    )]
    UnexpectedEnd {
        /// Where the read started.
        pos: usize,
        /// Bytes the read needed (padding included).
        needed: usize,
        /// Size of the data.
        size: usize,
    },
    /// A plain read covers the bytes of an object (libbinder refuses these too).
    #[error(
        "reading {len} bytes at position {pos} would read the object at offset {object} as plain data"
    )]
    ReadOverObject {
        /// Where the read started.
        pos: usize,
        /// Bytes of the read.
        len: usize,
        /// Offset of the object in the way.
        object: u64,
    },
    /// A write would overwrite an object already in the parcel.
    #[error("writing {len} bytes at position {pos} would overwrite the object at offset {object}")]
    WriteOverObject {
        /// Where the write started.
        pos: usize,
        /// Bytes of the write.
        len: usize,
        /// Offset of the object in the way.
        object: u64,
    },
    /// An object would start at a position that is not a multiple of 4.
    #[error("an object cannot be written at position {pos}: objects must be 4-byte aligned")]
    UnalignedObject {
        /// The position.
        pos: usize,
    },
    /// The data would grow past what a parcel may hold (`i32::MAX` bytes).
    #[error("the parcel would grow past {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// A length prefix is negative (and not the `-1` that means null where null is allowed).
    #[error("{what} at position {pos} has a negative length {len}")]
    NegativeLength {
        /// What was being read.
        what: &'static str,
        /// Position of the length prefix.
        pos: usize,
        /// The length read.
        len: i32,
    },
    /// A length prefix promises more than the data holds.
    #[error(
        "{what} at position {pos} claims {len} elements, more than the {available} bytes left"
    )]
    LengthTooLarge {
        /// What was being read.
        what: &'static str,
        /// Position of the length prefix.
        pos: usize,
        /// The length read.
        len: i32,
        /// Bytes left after the length prefix.
        available: usize,
    },
    /// A String16 lacks its NUL terminator.
    #[error("the String16 at position {pos} has no NUL terminator after its {len} units")]
    MissingTerminator {
        /// Position of the length prefix.
        pos: usize,
        /// Its length in UTF-16 units.
        len: i32,
    },
    /// A String16 is not valid UTF-16 (an unpaired surrogate).
    #[error("the String16 at position {pos} is not valid UTF-16")]
    InvalidUtf16 {
        /// Position of the length prefix.
        pos: usize,
    },
    /// A flag word holds a value other than the ones its format allows.
    #[error("{what} at position {pos} is {value}, expected {allowed}")]
    BadFlag {
        /// What was being read.
        what: &'static str,
        /// Position of the flag.
        pos: usize,
        /// The value read.
        value: i32,
        /// The values allowed.
        allowed: &'static str,
    },
    /// A null value where a value is required.
    #[error("unexpected null {what} at position {pos}")]
    UnexpectedNull {
        /// What was being read.
        what: &'static str,
        /// Position of the value.
        pos: usize,
    },
    /// An object read at a position where the offsets list has no object.
    #[error("no object at position {pos}: the offsets list names no object there")]
    NoObjectAt {
        /// The position.
        pos: usize,
    },
    /// The object at the read position is of another kind.
    #[error("expected {expected} at position {pos}, found object type {found:#010x}")]
    WrongObjectType {
        /// What the read wanted.
        expected: &'static str,
        /// The position.
        pos: usize,
        /// The object's `BINDER_TYPE_*`.
        found: u32,
    },
    /// The file descriptor object was already read with `read_fd`, which took the fd.
    #[error("the file descriptor at position {pos} was already taken out of the parcel")]
    FdAlreadyTaken {
        /// The object's position.
        pos: usize,
    },
    /// Duplicating a file descriptor failed.
    #[error("duplicating a file descriptor failed: {0}")]
    Dup(#[source] Errno),
    /// The interface token does not start with libbinder's `'SYST'` header.
    #[error("interface token at position {pos}: expected header 'SYST' ({expected:#010x}), found {found:#010x}")]
    InterfaceHeader {
        /// Position of the header word.
        pos: usize,
        /// The header expected.
        expected: u32,
        /// The word found.
        found: u32,
    },
    /// The interface token names another interface.
    #[error("interface token names {found:?}, expected {expected:?}")]
    InterfaceMismatch {
        /// The descriptor the reader enforces.
        expected: String,
        /// The descriptor in the parcel (`None`: a null String16).
        found: Option<String>,
    },
    /// The offsets array of a received parcel is not a whole number of `u64`s.
    #[error("an offsets array of {len} bytes is not a multiple of 8")]
    OffsetsSize {
        /// Its size in bytes.
        len: usize,
    },
    /// An entry of a received parcel's offsets array is unusable.
    #[error("object offset #{index} ({offset}) {reason}")]
    BadOffset {
        /// Index in the offsets array.
        index: usize,
        /// The offset.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A received object has a type this parcel does not handle.
    #[error("object #{index} at offset {offset} has unknown or unsupported type {type_:#010x}")]
    UnknownObjectType {
        /// Index in the offsets array.
        index: usize,
        /// Its offset.
        offset: u64,
        /// The type word.
        type_: u32,
    },
    /// A received file descriptor object holds an impossible fd.
    #[error("file descriptor object #{index} at offset {offset} holds invalid fd {fd}")]
    BadFd {
        /// Index in the offsets array.
        index: usize,
        /// Its offset.
        offset: u64,
        /// The fd number.
        fd: i32,
    },
    /// Two received file descriptor objects name the same fd.
    #[error("file descriptor objects at offsets {first} and {second} both name fd {fd}")]
    DuplicateFd {
        /// Offset of the first object.
        first: u64,
        /// Offset of the second object.
        second: u64,
        /// The fd number.
        fd: i32,
    },
    /// A parcel built from plain bytes (no fd ownership) contains a file descriptor object.
    #[error("object #{index} at offset {offset} is a file descriptor, not allowed in this parcel")]
    FdsNotAllowed {
        /// Index in the offsets array.
        index: usize,
        /// Its offset.
        offset: u64,
    },
    /// The reply header carries an exception raised by the remote side.
    #[error("remote exception: {0}")]
    Exception(#[from] AidlException),
}
