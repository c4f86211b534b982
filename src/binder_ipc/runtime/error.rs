//! [`BinderError`]: what can go wrong with a binder call, and how an error travels back to
//! the caller: libbinder's `status_t` code, followed by the error's message.
//!
//! An error a service returns goes back as a `TF_STATUS_CODE` reply whose first four bytes
//! are the `status_t` (all libbinder reads), followed by the message as a String16 (this
//! crate's addition; libbinder ignores the bytes after the code). The caller rebuilds the
//! same kind with the same message ([`BinderError::from_reply`]); a reply without a message
//! (from libbinder) gets a message that says so.

use crate::binder_ipc::device::Errno;
use crate::binder_ipc::parcel::{AidlException, Parcel, ParcelError, EX_BAD_PARCELABLE};
use crate::bittube::TubeError;

/// libbinder's `UNKNOWN_ERROR` (INT32_MIN): this crate sends it for a service that panicked.
pub const UNKNOWN_ERROR: i32 = i32::MIN;
/// libbinder's `NO_MEMORY` (-ENOMEM).
pub const NO_MEMORY: i32 = -libc::ENOMEM;
/// libbinder's `INVALID_OPERATION` (-ENOSYS).
pub const INVALID_OPERATION: i32 = -libc::ENOSYS;
/// libbinder's `BAD_VALUE` (-EINVAL).
pub const BAD_VALUE: i32 = -libc::EINVAL;
/// libbinder's `BAD_TYPE` (INT32_MIN + 1): AIDL stubs answer a wrong interface token with it.
pub const BAD_TYPE: i32 = i32::MIN + 1;
/// libbinder's `NAME_NOT_FOUND` (-ENOENT).
pub const NAME_NOT_FOUND: i32 = -libc::ENOENT;
/// libbinder's `PERMISSION_DENIED` (-EPERM).
pub const PERMISSION_DENIED: i32 = -libc::EPERM;
/// libbinder's `NO_INIT` (-ENODEV).
pub const NO_INIT: i32 = -libc::ENODEV;
/// libbinder's `ALREADY_EXISTS` (-EEXIST).
pub const ALREADY_EXISTS: i32 = -libc::EEXIST;
/// libbinder's `DEAD_OBJECT` (-EPIPE).
pub const DEAD_OBJECT: i32 = -libc::EPIPE;
/// libbinder's `FAILED_TRANSACTION` (INT32_MIN + 2).
pub const FAILED_TRANSACTION: i32 = i32::MIN + 2;
/// libbinder's `NOT_ENOUGH_DATA` (-ENODATA).
pub const NOT_ENOUGH_DATA: i32 = -libc::ENODATA;
/// libbinder's `TIMED_OUT` (-ETIMEDOUT on Linux).
pub const TIMED_OUT: i32 = -libc::ETIMEDOUT;
/// libbinder's `UNKNOWN_TRANSACTION` (-EBADMSG).
pub const UNKNOWN_TRANSACTION: i32 = -libc::EBADMSG;
/// libbinder's `UNEXPECTED_NULL` (INT32_MIN + 8).
pub const UNEXPECTED_NULL: i32 = i32::MIN + 8;
/// The code [`BinderError::DeviceGone`] travels as (-ESHUTDOWN; libbinder has no name for it).
pub const DEVICE_GONE: i32 = -libc::ESHUTDOWN;

/// The longest message an error reply carries, in UTF-16 units; longer ones are cut.
pub const MAX_REPLY_MESSAGE: usize = 4096;

/// What can go wrong with a binder call.
///
/// Every kind crosses a transaction as its `status_t` ([`BinderError::to_status`]) and its
/// message, and arrives as the same kind with the same message, with these exceptions, all
/// shared with libbinder: [`Frozen`](Self::Frozen) arrives as
/// [`FailedTransaction`](Self::FailedTransaction) (libbinder reports a frozen target as
/// `FAILED_TRANSACTION`); a [`Device`](Self::Device) errno that is also a named `status_t`
/// (`EPERM`, `EINVAL`, `ENOENT`, `EPIPE`, ...) arrives as that status's kind;
/// [`Parcel`](Self::Parcel) arrives as a `Parcel` error holding an `EX_BAD_PARCELABLE`
/// exception with the service's text.
#[derive(Debug, thiserror::Error)]
pub enum BinderError {
    /// The binder's process is dead (BR_DEAD_REPLY, or its connection is gone).
    #[error("dead object: the binder's process is gone")]
    DeadObject,
    /// The driver refused the transaction (BR_FAILED_REPLY): no buffer space, an fd the
    /// target does not accept, a bad object.
    #[error("failed transaction: the driver refused it (no buffer space, an object or fd the target cannot take)")]
    FailedTransaction,
    /// The target process is frozen (BR_FROZEN_REPLY).
    #[error("the target process is frozen")]
    Frozen,
    /// The service does not know the code.
    #[error("unknown transaction code {0}")]
    UnknownTransaction(u32),
    /// A parcel could not be read or written.
    #[error("parcel: {0}")]
    Parcel(#[from] ParcelError),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A bad argument.
    #[error("bad value: {0}")]
    BadValue(String),
    /// Nothing by that name.
    #[error("not found: {0}")]
    NotFound(String),
    /// A wait ran out.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The device call failed with this errno.
    #[error("binder device: {0}")]
    Device(Errno),
    /// The remote side answered with this status code (one with no kind of its own).
    #[error("remote status {0}")]
    Status(i32),
    /// No context manager: handle 0 names nothing (no process became the context manager on
    /// this binder device, or its process died). The kernel answers BR_DEAD_REPLY.
    #[error("no context manager: no service manager runs on this binder device (none became the context manager, or its process died)")]
    NoContextManager,
    /// `BINDER_SET_CONTEXT_MGR(_EXT)` said `EBUSY`: another process (or this one) is already
    /// the context manager of this binder device.
    #[error(
        "a context manager already exists on this binder device (BINDER_SET_CONTEXT_MGR: EBUSY)"
    )]
    ContextManagerExists,
    /// This process is the context manager and called handle 0: the driver refuses a
    /// process's calls to its own context object (EINVAL, BR_FAILED_REPLY).
    #[error("this process is the context manager: the driver refuses its calls to handle 0; use the service manager's local API (e.g. ServiceManager::lookup) instead")]
    OwnContextManager,
    /// The service failed while handling the call (it panicked); the text says where.
    #[error("the service failed: {0}")]
    ServiceFailed(String),
    /// The binder device went away (the shim closed the connection, the kernel device was
    /// released): this process gets no more calls and can make none.
    #[error("the binder device went away: {0}")]
    DeviceGone(String),
    /// An AIDL exception with no kind of its own (`EX_NULL_POINTER`, `EX_ILLEGAL_STATE`,
    /// `EX_UNSUPPORTED_OPERATION`, a service-specific error, ...).
    #[error("{0}")]
    Exception(AidlException),
}

impl From<Errno> for BinderError {
    fn from(e: Errno) -> Self {
        BinderError::Device(e)
    }
}

/// A tube error inside a service, so that `?` works on tube calls: a timeout is
/// [`TimedOut`](BinderError::TimedOut), a closed peer [`DeadObject`](BinderError::DeadObject)
/// (as libbinder's `BitTube` reports `-EPIPE`), anything else
/// [`BadValue`](BinderError::BadValue) with the tube's message.
impl From<TubeError> for BinderError {
    fn from(e: TubeError) -> Self {
        match e {
            TubeError::TimedOut { .. } => BinderError::TimedOut(format!("tube: {e}")),
            TubeError::PeerClosed => BinderError::DeadObject,
            e => BinderError::BadValue(format!("tube: {e}")),
        }
    }
}

impl BinderError {
    /// The libbinder status code that carries this error in a reply.
    pub fn to_status(&self) -> i32 {
        match self {
            BinderError::DeadObject => DEAD_OBJECT,
            BinderError::FailedTransaction | BinderError::Frozen => FAILED_TRANSACTION,
            BinderError::UnknownTransaction(_) => UNKNOWN_TRANSACTION,
            BinderError::Parcel(ParcelError::InterfaceMismatch { .. })
            | BinderError::Parcel(ParcelError::InterfaceHeader { .. }) => BAD_TYPE,
            BinderError::Parcel(_) => NOT_ENOUGH_DATA,
            BinderError::BadValue(_) => BAD_VALUE,
            BinderError::PermissionDenied(_) => PERMISSION_DENIED,
            BinderError::NotFound(_) => NAME_NOT_FOUND,
            BinderError::TimedOut(_) => TIMED_OUT,
            BinderError::Device(e) => -(*e as i32),
            BinderError::Status(s) => *s,
            BinderError::NoContextManager => NO_INIT,
            BinderError::ContextManagerExists => ALREADY_EXISTS,
            BinderError::OwnContextManager => INVALID_OPERATION,
            BinderError::ServiceFailed(_) => UNKNOWN_ERROR,
            BinderError::DeviceGone(_) => DEVICE_GONE,
            BinderError::Exception(_) => FAILED_TRANSACTION,
        }
    }

    /// The text that travels after the status code: the payload of the kinds that carry
    /// one, `None` for the others.
    pub fn message(&self) -> Option<String> {
        match self {
            BinderError::PermissionDenied(m)
            | BinderError::BadValue(m)
            | BinderError::NotFound(m)
            | BinderError::TimedOut(m)
            | BinderError::ServiceFailed(m)
            | BinderError::DeviceGone(m) => Some(m.clone()),
            BinderError::Parcel(ParcelError::Exception(ex)) if ex.code == EX_BAD_PARCELABLE => {
                Some(ex.message.clone())
            }
            BinderError::Parcel(e) => Some(e.to_string()),
            BinderError::Exception(ex) => Some(ex.to_string()),
            _ => None,
        }
    }

    /// The error a status code stands for, with no message and no transaction code (for a
    /// status read out of a reply's data, as some interfaces send one).
    pub fn from_status(code: i32) -> BinderError {
        Self::from_reply(code, None, 0)
    }

    /// The error an error reply stands for: its `status_t`, the message that came with it
    /// (`None` from libbinder, which sends none) and the code of the call it answers.
    pub fn from_reply(status: i32, message: Option<String>, txn_code: u32) -> BinderError {
        let text = || {
            message
                .clone()
                .unwrap_or_else(|| format!("reported by the remote side (status {status})"))
        };
        match status {
            DEAD_OBJECT => BinderError::DeadObject,
            FAILED_TRANSACTION => BinderError::FailedTransaction,
            UNKNOWN_TRANSACTION => BinderError::UnknownTransaction(txn_code),
            PERMISSION_DENIED => BinderError::PermissionDenied(text()),
            BAD_VALUE => BinderError::BadValue(text()),
            NAME_NOT_FOUND => BinderError::NotFound(text()),
            TIMED_OUT => BinderError::TimedOut(text()),
            BAD_TYPE | NOT_ENOUGH_DATA | UNEXPECTED_NULL => BinderError::Parcel(
                ParcelError::Exception(AidlException::new(EX_BAD_PARCELABLE, text())),
            ),
            NO_INIT => BinderError::NoContextManager,
            ALREADY_EXISTS => BinderError::ContextManagerExists,
            INVALID_OPERATION => BinderError::OwnContextManager,
            UNKNOWN_ERROR => BinderError::ServiceFailed(text()),
            DEVICE_GONE => BinderError::DeviceGone(text()),
            c if (-4095..0).contains(&c) => BinderError::Device(Errno::from_raw(-c)),
            c => BinderError::Status(c),
        }
    }

    /// Writes this error as the body of a `TF_STATUS_CODE` reply: the `status_t`, then the
    /// message (cut to [`MAX_REPLY_MESSAGE`] units) when the kind carries one.
    pub fn write_reply(&self, parcel: &mut Parcel) -> Result<(), ParcelError> {
        parcel.write_i32(self.to_status())?;
        if let Some(m) = self.message() {
            let units: Vec<u16> = m.encode_utf16().take(MAX_REPLY_MESSAGE).collect();
            parcel.write_string16_units(&units)?;
        }
        Ok(())
    }

    /// Reads the body of a `TF_STATUS_CODE` reply to call `txn_code` (see
    /// [`write_reply`](Self::write_reply)); a body too short for a status is
    /// [`FailedTransaction`](Self::FailedTransaction), a missing or malformed message is no
    /// message.
    pub fn read_reply(parcel: &mut Parcel, txn_code: u32) -> BinderError {
        let Ok(status) = parcel.read_i32() else {
            return BinderError::FailedTransaction;
        };
        let message = if parcel.data_position() < parcel.data_size() {
            parcel.read_string16().ok().flatten()
        } else {
            None
        };
        Self::from_reply(status, message, txn_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &BinderError, code: u32) -> BinderError {
        let mut p = Parcel::new();
        e.write_reply(&mut p).unwrap();
        p.set_data_position(0);
        BinderError::read_reply(&mut p, code)
    }

    #[test]
    fn libbinder_status_codes_are_libbinders() {
        // Errors.h on Linux.
        assert_eq!(UNKNOWN_ERROR, -2147483648);
        assert_eq!(BAD_TYPE, -2147483647);
        assert_eq!(FAILED_TRANSACTION, -2147483646);
        assert_eq!(UNEXPECTED_NULL, -2147483640);
        assert_eq!(TIMED_OUT, -110);
        assert_eq!(UNKNOWN_TRANSACTION, -74);
        assert_eq!(DEAD_OBJECT, -32);
        assert_eq!(NOT_ENOUGH_DATA, -61);
        assert_eq!(NO_INIT, -19);
    }

    #[test]
    fn kinds_and_messages_survive_a_status_reply() {
        let cases = [
            BinderError::NotFound("no tick source 43".into()),
            BinderError::BadValue("b".into()),
            BinderError::PermissionDenied("p".into()),
            BinderError::TimedOut("t".into()),
            BinderError::ServiceFailed("s".into()),
            BinderError::DeviceGone("d".into()),
            BinderError::DeadObject,
            BinderError::FailedTransaction,
            BinderError::NoContextManager,
            BinderError::ContextManagerExists,
            BinderError::OwnContextManager,
            BinderError::Device(Errno::EBUSY),
            BinderError::Status(7),
        ];
        for e in &cases {
            let got = round_trip(e, 5);
            assert_eq!(got.to_string(), e.to_string(), "{e:?} arrived as {got:?}");
        }
        assert!(matches!(
            round_trip(&BinderError::UnknownTransaction(0), 77),
            BinderError::UnknownTransaction(77)
        ));
    }

    #[test]
    fn a_libbinder_status_reply_has_no_message() {
        // libbinder's status reply: the four bytes of the status_t, nothing else.
        let mut p = Parcel::new();
        p.write_bytes(&NAME_NOT_FOUND.to_le_bytes()).unwrap();
        p.set_data_position(0);
        let e = BinderError::read_reply(&mut p, 1);
        assert!(
            matches!(&e, BinderError::NotFound(m) if m.contains("status -2")),
            "{e:?}"
        );
        // Too short for a status: the transaction failed.
        let mut short = Parcel::new();
        assert!(matches!(
            BinderError::read_reply(&mut short, 1),
            BinderError::FailedTransaction
        ));
    }

    #[test]
    fn a_long_message_is_cut() {
        let e = BinderError::BadValue("x".repeat(MAX_REPLY_MESSAGE * 2));
        match round_trip(&e, 1) {
            BinderError::BadValue(m) => assert_eq!(m.len(), MAX_REPLY_MESSAGE),
            other => panic!("{other:?}"),
        }
    }
}
