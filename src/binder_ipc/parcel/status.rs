//! AIDL reply headers: an `i32` exception code (0 = none) before the returned values.
//!
//! The layout is libbinder's `binder::Status`: a non-zero code is followed by a String16
//! message, an `i32` remote stack-trace header size (0 from native code; skipped when read),
//! then an `i32` service-specific error code for [`EX_SERVICE_SPECIFIC`] or an `i32`
//! parcelable-blob header size for [`EX_PARCELABLE`]. A reply that starts with
//! [`EX_HAS_REPLY_HEADER`] carries a "fat" header that readers skip and treat as no exception.
//! A reply that starts with [`EX_HAS_NOTED_APPOPS_REPLY_HEADER`] (Java services that noted
//! app-ops) carries a sized header first; readers skip it and read the exception code after
//! it, as libbinder's `Status::readFromParcel` does.

use super::{Parcel, ParcelError};

/// No exception.
pub const EX_NONE: i32 = 0;
/// `SecurityException`.
pub const EX_SECURITY: i32 = -1;
/// `BadParcelableException`.
pub const EX_BAD_PARCELABLE: i32 = -2;
/// `IllegalArgumentException`.
pub const EX_ILLEGAL_ARGUMENT: i32 = -3;
/// `NullPointerException`.
pub const EX_NULL_POINTER: i32 = -4;
/// `IllegalStateException`.
pub const EX_ILLEGAL_STATE: i32 = -5;
/// `NetworkOnMainThreadException`.
pub const EX_NETWORK_MAIN_THREAD: i32 = -6;
/// `UnsupportedOperationException`.
pub const EX_UNSUPPORTED_OPERATION: i32 = -7;
/// `ServiceSpecificException`: carries an `i32` error code.
pub const EX_SERVICE_SPECIFIC: i32 = -8;
/// An exception carried as a parcelable.
pub const EX_PARCELABLE: i32 = -9;
/// A noted-app-ops reply header (skipped; the exception code follows it).
pub const EX_HAS_NOTED_APPOPS_REPLY_HEADER: i32 = -127;
/// A "fat" reply header (skipped; means no exception).
pub const EX_HAS_REPLY_HEADER: i32 = -128;
/// The transaction failed (never written to a parcel by libbinder).
pub const EX_TRANSACTION_FAILED: i32 = -129;

/// The name libbinder gives an exception code.
pub fn exception_name(code: i32) -> &'static str {
    match code {
        EX_NONE => "EX_NONE",
        EX_SECURITY => "EX_SECURITY",
        EX_BAD_PARCELABLE => "EX_BAD_PARCELABLE",
        EX_ILLEGAL_ARGUMENT => "EX_ILLEGAL_ARGUMENT",
        EX_NULL_POINTER => "EX_NULL_POINTER",
        EX_ILLEGAL_STATE => "EX_ILLEGAL_STATE",
        EX_NETWORK_MAIN_THREAD => "EX_NETWORK_MAIN_THREAD",
        EX_UNSUPPORTED_OPERATION => "EX_UNSUPPORTED_OPERATION",
        EX_SERVICE_SPECIFIC => "EX_SERVICE_SPECIFIC",
        EX_PARCELABLE => "EX_PARCELABLE",
        EX_HAS_NOTED_APPOPS_REPLY_HEADER => "EX_HAS_NOTED_APPOPS_REPLY_HEADER",
        EX_HAS_REPLY_HEADER => "EX_HAS_REPLY_HEADER",
        EX_TRANSACTION_FAILED => "EX_TRANSACTION_FAILED",
        _ => "unknown exception",
    }
}

/// An exception raised by the remote side of an AIDL call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({code}){}: {message}", exception_name(*.code),
        .service_specific.map(|e| format!(" service error {e}")).unwrap_or_default())]
pub struct AidlException {
    /// The exception code (`EX_*`, never [`EX_NONE`]).
    pub code: i32,
    /// The message sent with it.
    pub message: String,
    /// The error code of an [`EX_SERVICE_SPECIFIC`] exception.
    pub service_specific: Option<i32>,
}

impl AidlException {
    /// An exception with a code and a message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        AidlException {
            code,
            message: message.into(),
            service_specific: None,
        }
    }

    /// A service-specific exception with its error code.
    pub fn service_specific(error: i32, message: impl Into<String>) -> Self {
        AidlException {
            code: EX_SERVICE_SPECIFIC,
            message: message.into(),
            service_specific: Some(error),
        }
    }
}

impl Parcel {
    /// Writes the reply header of a call that succeeded: `i32` 0.
    pub fn write_no_exception(&mut self) -> Result<(), ParcelError> {
        self.write_i32(EX_NONE)
    }

    /// Writes the reply header of a call that raised `ex` (as libbinder's
    /// `Status::writeToParcel`). An exception code of [`EX_NONE`] writes no exception; the
    /// reply-header markers [`EX_HAS_NOTED_APPOPS_REPLY_HEADER`] and [`EX_HAS_REPLY_HEADER`]
    /// are [`ParcelError::BadFlag`] (the reader would take them for a header).
    pub fn write_exception(&mut self, ex: &AidlException) -> Result<(), ParcelError> {
        let start = self.data_position();
        let result = self.write_exception_inner(ex);
        if result.is_err() {
            self.set_data_position(start);
        }
        result
    }

    fn write_exception_inner(&mut self, ex: &AidlException) -> Result<(), ParcelError> {
        // -127 and -128 are reply-header markers, not exceptions: written as one, the reader
        // would skip the message as a header and read something else back.
        if ex.code == EX_HAS_NOTED_APPOPS_REPLY_HEADER || ex.code == EX_HAS_REPLY_HEADER {
            return Err(ParcelError::BadFlag {
                what: "exception code",
                pos: self.data_position(),
                value: ex.code,
                allowed: "an EX_* code other than the reply-header markers -127 and -128",
            });
        }
        self.write_i32(ex.code)?;
        if ex.code == EX_NONE {
            return Ok(());
        }
        self.write_string16(&ex.message)?;
        self.write_i32(0)?; // empty remote stack trace header
        match ex.code {
            EX_SERVICE_SPECIFIC => self.write_i32(ex.service_specific.unwrap_or(0)),
            EX_PARCELABLE => self.write_i32(0), // no parcelable blob
            _ => Ok(()),
        }
    }

    /// Reads a reply header: `Ok(())` when the call raised no exception,
    /// [`ParcelError::Exception`] with the remote exception otherwise, another
    /// [`ParcelError`] when the header is malformed.
    pub fn read_exception(&mut self) -> Result<(), ParcelError> {
        let start = self.data_position();
        let result = self.read_exception_inner();
        if matches!(result, Err(ref e) if !matches!(e, ParcelError::Exception(_))) {
            self.set_data_position(start);
        }
        result
    }

    fn read_exception_inner(&mut self) -> Result<(), ParcelError> {
        let mut code = self.read_i32()?;
        if code == EX_HAS_NOTED_APPOPS_REPLY_HEADER {
            self.skip_sized_header("noted app-ops reply header")?;
            code = self.read_i32()?;
        }
        if code == EX_HAS_REPLY_HEADER {
            self.skip_sized_header("reply header")?;
            return Ok(());
        }
        if code == EX_NONE {
            return Ok(());
        }
        let message = self.read_string16()?.unwrap_or_default();
        self.skip_sized_header("remote stack trace header")?;
        let mut service_specific = None;
        match code {
            EX_SERVICE_SPECIFIC => service_specific = Some(self.read_i32()?),
            EX_PARCELABLE => self.skip_sized_header("exception parcelable")?,
            _ => {}
        }
        Err(ParcelError::Exception(AidlException {
            code,
            message,
            service_specific,
        }))
    }

    /// Skips a header that starts with its own `i32` size (the size counts itself); a size of
    /// 0 skips only the size word.
    fn skip_sized_header(&mut self, what: &'static str) -> Result<(), ParcelError> {
        let start = self.data_position();
        let size = self.read_i32()?;
        let available = self.data_size().saturating_sub(start);
        if size < 0 {
            return Err(ParcelError::NegativeLength {
                what,
                pos: start,
                len: size,
            });
        }
        if size as usize > available {
            return Err(ParcelError::LengthTooLarge {
                what,
                pos: start,
                len: size,
                available,
            });
        }
        if size != 0 {
            self.set_data_position(start + size as usize);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a Java service writes ahead of its reply status when it noted app-ops for
    /// the caller (`AppOpsManager.prefixParcelWithAppOpsIfNeeded`): -127, the header size
    /// (counted from the size word on), the number of attributions, then per attribution its
    /// tag (String16) and the op mask (3 `long`s for 163 ops).
    fn noted_app_ops_header() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_le_bytes()); // one attribution
        body.extend_from_slice(&3i32.to_le_bytes()); // tag "tag": 3 UTF-16 units
        for u in "tag".encode_utf16().chain([0]) {
            body.extend_from_slice(&u.to_le_bytes());
        }
        for word in [0b11u64, 0, 1 << 2] {
            body.extend_from_slice(&word.to_le_bytes());
        }
        let mut out = Vec::new();
        out.extend_from_slice(&EX_HAS_NOTED_APPOPS_REPLY_HEADER.to_le_bytes());
        out.extend_from_slice(&(4 + body.len() as i32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn parcel_of(bytes: &[u8]) -> Parcel {
        let mut p = Parcel::new();
        p.write_bytes(bytes).unwrap();
        p.set_data_position(0);
        p
    }

    #[test]
    fn noted_app_ops_header_is_skipped_before_no_exception() {
        let mut bytes = noted_app_ops_header();
        bytes.extend_from_slice(&EX_NONE.to_le_bytes());
        bytes.extend_from_slice(&7i32.to_le_bytes());
        let mut p = parcel_of(&bytes);
        p.read_exception().expect("no exception after the header");
        assert_eq!(p.read_i32().unwrap(), 7);
    }

    #[test]
    fn noted_app_ops_header_is_skipped_before_an_exception() {
        let mut bytes = noted_app_ops_header();
        bytes.extend_from_slice(&EX_SECURITY.to_le_bytes());
        bytes.extend_from_slice(&2i32.to_le_bytes()); // "no"
        for u in "no".encode_utf16().chain([0, 0]) {
            bytes.extend_from_slice(&u.to_le_bytes()); // terminator + padding
        }
        bytes.extend_from_slice(&0i32.to_le_bytes()); // no remote stack trace
        let mut p = parcel_of(&bytes);
        match p.read_exception() {
            Err(ParcelError::Exception(ex)) => {
                assert_eq!(ex, AidlException::new(EX_SECURITY, "no"));
            }
            other => panic!("expected EX_SECURITY, got {other:?}"),
        }
    }

    #[test]
    fn a_noted_app_ops_header_larger_than_the_reply_is_refused() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&EX_HAS_NOTED_APPOPS_REPLY_HEADER.to_le_bytes());
        bytes.extend_from_slice(&4096i32.to_le_bytes());
        let mut p = parcel_of(&bytes);
        assert!(matches!(
            p.read_exception(),
            Err(ParcelError::LengthTooLarge { .. })
        ));
        assert_eq!(p.data_position(), 0, "a failed read leaves the position");
    }
}
