//! The binder runtime: what applications use (libbinder's `ProcessState`, `IPCThreadState`,
//! `BBinder`, `BpBinder`).
//!
//! - [`ProcessState`]: a binder process on a device (the kernel driver, or the shim), its
//!   thread pool, its local services and proxies.
//! - [`Binder`]: a local [`Service`] or a [`Proxy`] to a remote one; calls, ping,
//!   [`DeathRecipient`]s.
//!
//! Each OS thread that calls through a `ProcessState` is one binder thread of it. Reference
//! counts follow the driver's protocol: a proxy holds a strong and a weak reference on its
//! handle (`BC_ACQUIRE`/`BC_INCREFS`, released on drop), local nodes answer
//! `BR_INCREFS`/`BR_ACQUIRE` with the `*_DONE` commands and stay registered while the driver
//! holds references. A received parcel frees its buffer (`BC_FREE_BUFFER`) when dropped.

mod binder;
mod process;
mod thread;

pub use binder::{
    Binder, CallContext, DeathRecipient, Proxy, Service, FIRST_CALL_TRANSACTION,
    INTERFACE_TRANSACTION, LAST_CALL_TRANSACTION, PING_TRANSACTION,
};
pub use process::{ProcessState, DEFAULT_MAX_THREADS};

use crate::binder_ipc::device::Errno;
use crate::binder_ipc::parcel::ParcelError;

/// libbinder's `UNKNOWN_TRANSACTION` (-EBADMSG).
pub const UNKNOWN_TRANSACTION: i32 = -libc::EBADMSG;
/// libbinder's `PERMISSION_DENIED` (-EPERM).
pub const PERMISSION_DENIED: i32 = -libc::EPERM;
/// libbinder's `BAD_VALUE` (-EINVAL).
pub const BAD_VALUE: i32 = -libc::EINVAL;
/// libbinder's `DEAD_OBJECT` (-EPIPE).
pub const DEAD_OBJECT: i32 = -libc::EPIPE;
/// libbinder's `NAME_NOT_FOUND` (-ENOENT).
pub const NAME_NOT_FOUND: i32 = -libc::ENOENT;
/// libbinder's `FAILED_TRANSACTION` (INT32_MIN + 2).
pub const FAILED_TRANSACTION: i32 = i32::MIN + 2;
/// libbinder's `TIMED_OUT` (INT32_MIN + 3).
pub const TIMED_OUT: i32 = i32::MIN + 3;

/// What can go wrong with a binder call.
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
    /// The remote side answered with this status code.
    #[error("remote status {0}")]
    Status(i32),
}

impl BinderError {
    /// The libbinder status code that carries this error in a reply.
    pub fn to_status(&self) -> i32 {
        match self {
            BinderError::DeadObject => DEAD_OBJECT,
            BinderError::FailedTransaction | BinderError::Frozen => FAILED_TRANSACTION,
            BinderError::UnknownTransaction(_) => UNKNOWN_TRANSACTION,
            BinderError::Parcel(_) | BinderError::BadValue(_) => BAD_VALUE,
            BinderError::PermissionDenied(_) => PERMISSION_DENIED,
            BinderError::NotFound(_) => NAME_NOT_FOUND,
            BinderError::TimedOut(_) => TIMED_OUT,
            BinderError::Device(e) => -(*e as i32),
            BinderError::Status(s) => *s,
        }
    }

    /// The error a status code in a reply stands for.
    pub fn from_status(code: i32) -> BinderError {
        match code {
            DEAD_OBJECT => BinderError::DeadObject,
            FAILED_TRANSACTION => BinderError::FailedTransaction,
            PERMISSION_DENIED => BinderError::PermissionDenied("refused by the remote side".into()),
            BAD_VALUE => BinderError::BadValue("refused by the remote side".into()),
            NAME_NOT_FOUND => BinderError::NotFound("reported by the remote side".into()),
            c => BinderError::Status(c),
        }
    }
}
