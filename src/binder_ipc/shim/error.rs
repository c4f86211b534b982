//! Why the shim refused something, kept whole: the BR_ code the thread reads, the errno the
//! kernel would record (`return_error_param`), and which check refused (for the state dump and
//! for tests). Like the kernel's Rust driver (`BinderError`: reply code + source errno), plus the
//! name of the check, which the kernel only logs.
//!
//! [`ExtendedError`] is `BINDER_GET_EXTENDED_ERROR`'s record (`binder_set_extended_error`):
//! every transaction command sets it to `{id, BR_OK, 0}`; a refused transaction sets
//! `{id, BR code, -errno}` on the sender, a refused reply on the caller it was meant for (unless
//! that thread already holds an error); reading it clears it to `{0, BR_OK, 0}`.

use crate::binder_ipc::uapi::*;
use nix::errno::Errno;

/// The check that refused a transaction (the kernel's `binder_user_error` /
/// `binder_txn_error` sites, by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// BC_REPLY with no transaction on the thread's stack.
    ReplyWithoutCall,
    /// BC_REPLY while the top of the stack is not a call to this thread.
    ReplyNotOnTop,
    /// The caller's stack no longer has the call on top.
    CallerStackMoved,
    /// The caller is gone.
    CallerDead,
    /// A call on a handle the sender holds no strong ref for.
    BadHandle,
    /// Handle 0 with no context manager.
    NoContextManager,
    /// The target node's owner died.
    TargetDead,
    /// A call into the sender's own process (or to the manager from its own OS process).
    SelfCall,
    /// A sync call while the top of the stack is not this thread's to answer.
    BadCallStack,
    /// A sync call while the head of the thread's own todo list is a transaction or reply
    /// (e.g. the reply to its previous call, unread): the kernel's "new transaction not
    /// allowed when there is a transaction on thread todo".
    TxnOnTodo,
    /// The target has not mapped its area.
    TargetUnmapped,
    /// The sender's device could not gather what the pointers named (status errno).
    Gather,
    /// Gathered sizes differ from the transaction's.
    SizeMismatch,
    /// `offsets_size` is not a multiple of 8.
    OffsetsSizeUnaligned,
    /// `buffers_size` is not a multiple of 8.
    BuffersSizeUnaligned,
    /// data + offsets + buffers overflows.
    SizeOverflow,
    /// No room in the target's area.
    NoSpace,
    /// An offset names no valid object, or objects overlap / go backwards.
    BadObject,
    /// A BINDER object whose cookie differs from its node's.
    CookieMismatch,
    /// A HANDLE object the sender holds no (strong) ref for.
    BadObjectHandle,
    /// Taking a node or ref count for the target failed.
    RefCount,
    /// An fd to a target that does not accept fds.
    FdsNotAccepted,
    /// An FD/FDA object with no file behind it.
    MissingFd,
    /// A PTR object longer than the buffer space left (`binder_transaction`: "too large
    /// buffer").
    PtrTooLarge,
    /// A parent index that names no earlier PTR object (`binder_validate_ptr`).
    BadParent,
    /// A fixup out of order (`binder_validate_fixup`).
    FixupOrder,
    /// No room for a pointer at the parent offset (`binder_fixup_parent`).
    NoRoomForPointer,
    /// An FDA whose `num_fds` overflows or does not fit its parent.
    FdaNoRoom,
    /// An FDA not 4-aligned in the parent (receiver or sender side).
    FdaUnaligned,
    /// The sender already has [`super::limits::Limits::txns`] transactions pending.
    TxnCap,
    /// The sender's transactions not yet read would hold more than
    /// [`super::limits::Limits::fds`] fds.
    FdCap,
    /// The sender (or target) reached [`super::limits::Limits::nodes`].
    NodeCap,
    /// The target reached [`super::limits::Limits::refs`].
    RefCap,
    /// The receiver's buffer view refused an access (a bug if it happens: every offset is
    /// checked before).
    BufferAccess,
}

/// A refused transaction: what the sender (or caller) reads, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnError {
    /// BR_FAILED_REPLY or BR_DEAD_REPLY.
    pub reply: u32,
    /// The errno the kernel records (0 where it records none).
    pub errno: Option<Errno>,
    /// What refused.
    pub check: Check,
}

impl TxnError {
    /// BR_FAILED_REPLY for `check`, recording `errno`.
    pub fn failed(check: Check, errno: Errno) -> TxnError {
        TxnError {
            reply: BR_FAILED_REPLY,
            errno: Some(errno),
            check,
        }
    }

    /// BR_DEAD_REPLY for `check`, recording `errno` (if any).
    pub fn dead(check: Check, errno: Option<Errno>) -> TxnError {
        TxnError {
            reply: BR_DEAD_REPLY,
            errno,
            check,
        }
    }

    /// The extended-error parameter: `-errno`, or 0.
    pub fn param(&self) -> i32 {
        self.errno.map(|e| -(e as i32)).unwrap_or(0)
    }
}

/// `struct binder_extended_error` of one thread.
pub type ExtendedError = BinderExtendedError;

/// The cleared record (`{0, BR_OK, 0}`).
pub const EE_CLEAR: ExtendedError = BinderExtendedError {
    id: 0,
    command: BR_OK,
    param: 0,
};
