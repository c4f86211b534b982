//! The binder user-space ABI (`linux/android/binder.h`) for 64-bit Linux.
//!
//! Every struct is `#[repr(C)]` plain old data with its size and field offsets pinned by
//! `static_assertions`, so the same bytes go to the kernel driver and to the crate's shim.
//! Unions of the C header become one integer field: `target` of [`BinderTransactionData`]
//! holds either a handle (low 32 bits) or a node pointer, and the `binder`/`handle` union of
//! [`FlatBinderObject`] is one `u64`.
//!
//! Command streams are read with [`CommandReader`] (never panics, whatever the bytes) and
//! written with [`CommandWriter`].

use bytemuck::{Pod, Zeroable};
use static_assertions::{assert_eq_size, const_assert_eq};
use std::mem::{offset_of, size_of};

/// `B_PACK_CHARS(c1, c2, c3, c4)` of the header.
pub const fn pack_chars(c1: u8, c2: u8, c3: u8, c4: u8) -> u32 {
    ((c1 as u32) << 24) | ((c2 as u32) << 16) | ((c3 as u32) << 8) | (c4 as u32)
}
/// `B_TYPE_LARGE`.
pub const B_TYPE_LARGE: u8 = 0x85;

/// A strong reference to a local binder (sender owns the node).
pub const BINDER_TYPE_BINDER: u32 = pack_chars(b's', b'b', b'*', B_TYPE_LARGE);
/// A weak reference to a local binder.
pub const BINDER_TYPE_WEAK_BINDER: u32 = pack_chars(b'w', b'b', b'*', B_TYPE_LARGE);
/// A strong reference to a remote binder, by handle.
pub const BINDER_TYPE_HANDLE: u32 = pack_chars(b's', b'h', b'*', B_TYPE_LARGE);
/// A weak reference to a remote binder, by handle.
pub const BINDER_TYPE_WEAK_HANDLE: u32 = pack_chars(b'w', b'h', b'*', B_TYPE_LARGE);
/// A file descriptor.
pub const BINDER_TYPE_FD: u32 = pack_chars(b'f', b'd', b'*', B_TYPE_LARGE);
/// An array of file descriptors inside a scatter-gather buffer.
pub const BINDER_TYPE_FDA: u32 = pack_chars(b'f', b'd', b'a', B_TYPE_LARGE);
/// A scatter-gather buffer.
pub const BINDER_TYPE_PTR: u32 = pack_chars(b'p', b't', b'*', B_TYPE_LARGE);

/// Minimum scheduling priority mask of a node.
pub const FLAT_BINDER_FLAG_PRIORITY_MASK: u32 = 0xff;
/// The node accepts file descriptors in calls made to it.
pub const FLAT_BINDER_FLAG_ACCEPTS_FDS: u32 = 0x100;
/// The node wants the caller's security context.
pub const FLAT_BINDER_FLAG_TXN_SECURITY_CTX: u32 = 0x1000;
/// A [`BinderBufferObject`] is embedded in a parent buffer.
pub const BINDER_BUFFER_FLAG_HAS_PARENT: u32 = 0x01;

/// Transaction flag: asynchronous call, no reply.
pub const TF_ONE_WAY: u32 = 0x01;
/// Transaction flag: contents are the component's root object.
pub const TF_ROOT_OBJECT: u32 = 0x04;
/// Transaction flag: contents are a 32-bit status code.
pub const TF_STATUS_CODE: u32 = 0x08;
/// Transaction flag: the reply may contain file descriptors.
pub const TF_ACCEPT_FDS: u32 = 0x10;
/// Transaction flag: clear the buffer when it is freed.
pub const TF_CLEAR_BUF: u32 = 0x20;
/// Transaction flag: replace an outdated pending oneway transaction.
pub const TF_UPDATE_TXN: u32 = 0x40;

/// The protocol version of 64-bit binder.
pub const BINDER_CURRENT_PROTOCOL_VERSION: i32 = 8;

/// Size of the buffer area libbinder maps: 1 MiB minus two pages.
pub const BINDER_VM_SIZE: usize = (1 << 20) - 2 * 4096;

// ---------------------------------------------------------------------------------------------
// ioctl number encoding (generic _IOC, as on x86_64 and arm64)

const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | (nr as u32)
}
const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}
const fn iow(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}
const fn ior(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}
const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// The size encoded in an ioctl or command number.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> 16) & 0x3fff) as usize
}

/// `BINDER_WRITE_READ`.
pub const BINDER_WRITE_READ: u32 = iowr(b'b', 1, size_of::<BinderWriteRead>());
/// `BINDER_SET_IDLE_TIMEOUT`.
pub const BINDER_SET_IDLE_TIMEOUT: u32 = iow(b'b', 3, 8);
/// `BINDER_SET_MAX_THREADS`.
pub const BINDER_SET_MAX_THREADS: u32 = iow(b'b', 5, 4);
/// `BINDER_SET_IDLE_PRIORITY`.
pub const BINDER_SET_IDLE_PRIORITY: u32 = iow(b'b', 6, 4);
/// `BINDER_SET_CONTEXT_MGR`.
pub const BINDER_SET_CONTEXT_MGR: u32 = iow(b'b', 7, 4);
/// `BINDER_THREAD_EXIT`.
pub const BINDER_THREAD_EXIT: u32 = iow(b'b', 8, 4);
/// `BINDER_VERSION`.
pub const BINDER_VERSION: u32 = iowr(b'b', 9, size_of::<BinderVersion>());
/// `BINDER_SET_CONTEXT_MGR_EXT`.
pub const BINDER_SET_CONTEXT_MGR_EXT: u32 = iow(b'b', 13, size_of::<FlatBinderObject>());
/// `BINDER_FREEZE`.
pub const BINDER_FREEZE: u32 = iow(b'b', 14, 12);
/// `BINDER_GET_FROZEN_INFO`.
pub const BINDER_GET_FROZEN_INFO: u32 = iowr(b'b', 15, size_of::<BinderFrozenStatusInfo>());
/// `BINDER_ENABLE_ONEWAY_SPAM_DETECTION`.
pub const BINDER_ENABLE_ONEWAY_SPAM_DETECTION: u32 = iow(b'b', 16, 4);
/// `BINDER_GET_EXTENDED_ERROR`.
pub const BINDER_GET_EXTENDED_ERROR: u32 = iowr(b'b', 17, size_of::<BinderExtendedError>());
/// binderfs `BINDER_CTL_ADD` on `binder-control`.
pub const BINDER_CTL_ADD: u32 = iowr(b'b', 1, size_of::<BinderfsDevice>());

const_assert_eq!(BINDER_WRITE_READ, 0xc0306201);
const_assert_eq!(BINDER_SET_MAX_THREADS, 0x40046205);
const_assert_eq!(BINDER_SET_CONTEXT_MGR, 0x40046207);
const_assert_eq!(BINDER_THREAD_EXIT, 0x40046208);
const_assert_eq!(BINDER_VERSION, 0xc0046209);
const_assert_eq!(BINDER_SET_CONTEXT_MGR_EXT, 0x4018620d);
const_assert_eq!(BINDER_FREEZE, 0x400c620e);
const_assert_eq!(BINDER_GET_FROZEN_INFO, 0xc00c620f);
const_assert_eq!(BINDER_ENABLE_ONEWAY_SPAM_DETECTION, 0x40046210);
const_assert_eq!(BINDER_GET_EXTENDED_ERROR, 0xc00c6211);
const_assert_eq!(BINDER_CTL_ADD, 0xc1086201);

// ---------------------------------------------------------------------------------------------
// Structs

/// `struct binder_object_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderObjectHeader {
    /// One of the `BINDER_TYPE_*` values.
    pub type_: u32,
}

/// `struct flat_binder_object`: BINDER, WEAK_BINDER, HANDLE and WEAK_HANDLE objects.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlatBinderObject {
    /// Object header (`BINDER_TYPE_*`).
    pub hdr: BinderObjectHeader,
    /// `FLAT_BINDER_FLAG_*`.
    pub flags: u32,
    /// The union: the local object's pointer (BINDER) or the handle in the low 32 bits (HANDLE).
    pub binder: u64,
    /// Extra data associated with a local object.
    pub cookie: u64,
}

impl FlatBinderObject {
    /// The handle, for HANDLE and WEAK_HANDLE objects.
    pub fn handle(&self) -> u32 {
        self.binder as u32
    }
}

/// `struct binder_fd_object`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderFdObject {
    /// Object header (`BINDER_TYPE_FD`).
    pub hdr: BinderObjectHeader,
    /// Unused padding / flags.
    pub pad_flags: u32,
    /// The union `{ pad_binder u64, fd u32 }`: the fd in the low 32 bits.
    pub pad_binder: u64,
    /// Extra data (libbinder: 1 when the parcel owns the fd).
    pub cookie: u64,
}

impl BinderFdObject {
    /// The file descriptor number.
    pub fn fd(&self) -> i32 {
        self.pad_binder as u32 as i32
    }
}

/// `struct binder_buffer_object`: a scatter-gather buffer (`BINDER_TYPE_PTR`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderBufferObject {
    /// Object header (`BINDER_TYPE_PTR`).
    pub hdr: BinderObjectHeader,
    /// `BINDER_BUFFER_FLAG_*`.
    pub flags: u32,
    /// Address of the buffer (sender's address space; receiver's after translation).
    pub buffer: u64,
    /// Length of the buffer in bytes.
    pub length: u64,
    /// Index of the parent object in the offsets array, with `HAS_PARENT`.
    pub parent: u64,
    /// Offset of the pointer to this buffer inside the parent buffer.
    pub parent_offset: u64,
}

/// `struct binder_fd_array_object` (`BINDER_TYPE_FDA`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderFdArrayObject {
    /// Object header (`BINDER_TYPE_FDA`).
    pub hdr: BinderObjectHeader,
    /// Padding.
    pub pad: u32,
    /// Number of fds in the array.
    pub num_fds: u64,
    /// Index of the parent buffer object in the offsets array.
    pub parent: u64,
    /// Offset of the array inside the parent buffer.
    pub parent_offset: u64,
}

impl BinderBufferObject {
    /// A `BINDER_TYPE_PTR` object for `length` bytes at `buffer`; `parent`, when given, is
    /// (the parent object's index, the offset in the parent buffer) the driver fixes up with
    /// this buffer's address (`BINDER_BUFFER_FLAG_HAS_PARENT`).
    pub fn new(buffer: u64, length: u64, parent: Option<(u64, u64)>) -> BinderBufferObject {
        let (index, offset) = parent.unwrap_or((0, 0));
        BinderBufferObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_PTR,
            },
            flags: if parent.is_some() {
                BINDER_BUFFER_FLAG_HAS_PARENT
            } else {
                0
            },
            buffer,
            length,
            parent: index,
            parent_offset: offset,
        }
    }
}

impl BinderFdArrayObject {
    /// A `BINDER_TYPE_FDA` object: `num_fds` fds at `parent_offset` in the buffer of the PTR
    /// object at index `parent`.
    pub fn new(num_fds: u64, parent: u64, parent_offset: u64) -> BinderFdArrayObject {
        BinderFdArrayObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_FDA,
            },
            pad: 0,
            num_fds,
            parent,
            parent_offset,
        }
    }
}

/// `struct binder_write_read`, the argument of `BINDER_WRITE_READ`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderWriteRead {
    /// Bytes of commands to write.
    pub write_size: u64,
    /// Bytes consumed by the driver.
    pub write_consumed: u64,
    /// Address of the command bytes.
    pub write_buffer: u64,
    /// Room for return commands.
    pub read_size: u64,
    /// Bytes of return commands filled by the driver.
    pub read_consumed: u64,
    /// Address of the read buffer.
    pub read_buffer: u64,
}

/// `struct binder_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderVersion {
    /// The driver's protocol version.
    pub protocol_version: i32,
}

/// `struct binder_transaction_data`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderTransactionData {
    /// The union `{ handle u32, ptr u64 }`: target handle on send, node pointer on receipt.
    pub target: u64,
    /// The node's cookie, on receipt.
    pub cookie: u64,
    /// The transaction code.
    pub code: u32,
    /// `TF_*` flags.
    pub flags: u32,
    /// Sender's pid (sync calls only; 0 for oneway and replies).
    pub sender_pid: i32,
    /// Sender's effective uid.
    pub sender_euid: u32,
    /// Bytes of data.
    pub data_size: u64,
    /// Bytes of the offsets array.
    pub offsets_size: u64,
    /// Address of the data (`data.ptr.buffer`).
    pub data_buffer: u64,
    /// Address of the offsets array (`data.ptr.offsets`).
    pub data_offsets: u64,
}

impl BinderTransactionData {
    /// The target handle, for commands written by user space.
    pub fn handle(&self) -> u32 {
        self.target as u32
    }
}

/// `struct binder_transaction_data_sg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderTransactionDataSg {
    /// The transaction.
    pub transaction_data: BinderTransactionData,
    /// Total bytes of scatter-gather buffers.
    pub buffers_size: u64,
}

/// `struct binder_transaction_data_secctx`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderTransactionDataSecctx {
    /// The transaction.
    pub transaction_data: BinderTransactionData,
    /// Address of the security context string.
    pub secctx: u64,
}

/// `struct binder_ptr_cookie`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderPtrCookie {
    /// Node pointer.
    pub ptr: u64,
    /// Node cookie.
    pub cookie: u64,
}

/// `struct binder_handle_cookie` (packed: 12 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderHandleCookie {
    /// A handle.
    pub handle: u32,
    /// The death recipient's cookie.
    pub cookie: u64,
}

/// `struct binder_frozen_status_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderFrozenStatusInfo {
    /// Process id.
    pub pid: u32,
    /// Sync transactions received while frozen.
    pub sync_recv: u32,
    /// Async transactions received while frozen.
    pub async_recv: u32,
}

/// `struct binder_extended_error`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderExtendedError {
    /// Debug id of the failed transaction.
    pub id: u32,
    /// The BR_ command returned.
    pub command: u32,
    /// The errno behind it.
    pub param: i32,
}

/// `struct binderfs_device`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BinderfsDevice {
    /// Device name, NUL-terminated.
    pub name: [u8; 256],
    /// Major number (out).
    pub major: u32,
    /// Minor number (out).
    pub minor: u32,
}

assert_eq_size!(BinderObjectHeader, [u8; 4]);
assert_eq_size!(FlatBinderObject, [u8; 24]);
assert_eq_size!(BinderFdObject, [u8; 24]);
assert_eq_size!(BinderBufferObject, [u8; 40]);
assert_eq_size!(BinderFdArrayObject, [u8; 32]);
assert_eq_size!(BinderWriteRead, [u8; 48]);
assert_eq_size!(BinderVersion, [u8; 4]);
assert_eq_size!(BinderTransactionData, [u8; 64]);
assert_eq_size!(BinderTransactionDataSg, [u8; 72]);
assert_eq_size!(BinderTransactionDataSecctx, [u8; 72]);
assert_eq_size!(BinderPtrCookie, [u8; 16]);
assert_eq_size!(BinderHandleCookie, [u8; 12]);
assert_eq_size!(BinderFrozenStatusInfo, [u8; 12]);
assert_eq_size!(BinderExtendedError, [u8; 12]);
assert_eq_size!(BinderfsDevice, [u8; 264]);
const_assert_eq!(offset_of!(FlatBinderObject, flags), 4);
const_assert_eq!(offset_of!(FlatBinderObject, binder), 8);
const_assert_eq!(offset_of!(FlatBinderObject, cookie), 16);
const_assert_eq!(offset_of!(BinderFdObject, pad_binder), 8);
const_assert_eq!(offset_of!(BinderBufferObject, buffer), 8);
const_assert_eq!(offset_of!(BinderBufferObject, length), 16);
const_assert_eq!(offset_of!(BinderBufferObject, parent), 24);
const_assert_eq!(offset_of!(BinderBufferObject, parent_offset), 32);
const_assert_eq!(offset_of!(BinderFdArrayObject, num_fds), 8);
const_assert_eq!(offset_of!(BinderFdArrayObject, parent), 16);
const_assert_eq!(offset_of!(BinderFdArrayObject, parent_offset), 24);
const_assert_eq!(offset_of!(BinderTransactionData, cookie), 8);
const_assert_eq!(offset_of!(BinderTransactionData, code), 16);
const_assert_eq!(offset_of!(BinderTransactionData, flags), 20);
const_assert_eq!(offset_of!(BinderTransactionData, sender_pid), 24);
const_assert_eq!(offset_of!(BinderTransactionData, sender_euid), 28);
const_assert_eq!(offset_of!(BinderTransactionData, data_size), 32);
const_assert_eq!(offset_of!(BinderTransactionData, offsets_size), 40);
const_assert_eq!(offset_of!(BinderTransactionData, data_buffer), 48);
const_assert_eq!(offset_of!(BinderTransactionData, data_offsets), 56);
const_assert_eq!(offset_of!(BinderTransactionDataSg, buffers_size), 64);
const_assert_eq!(offset_of!(BinderHandleCookie, cookie), 4);
const_assert_eq!(offset_of!(BinderWriteRead, read_buffer), 40);

// ---------------------------------------------------------------------------------------------
// Commands

/// `BR_ERROR`: an error code (i32).
pub const BR_ERROR: u32 = ior(b'r', 0, 4);
/// `BR_OK`.
pub const BR_OK: u32 = io(b'r', 1);
/// `BR_TRANSACTION_SEC_CTX`: a transaction with the caller's security context.
pub const BR_TRANSACTION_SEC_CTX: u32 = ior(b'r', 2, size_of::<BinderTransactionDataSecctx>());
/// `BR_TRANSACTION`: an incoming call.
pub const BR_TRANSACTION: u32 = ior(b'r', 2, size_of::<BinderTransactionData>());
/// `BR_REPLY`: the reply to this thread's call.
pub const BR_REPLY: u32 = ior(b'r', 3, size_of::<BinderTransactionData>());
/// `BR_ACQUIRE_RESULT` (unused by the driver).
pub const BR_ACQUIRE_RESULT: u32 = ior(b'r', 4, 4);
/// `BR_DEAD_REPLY`: the target is dead.
pub const BR_DEAD_REPLY: u32 = io(b'r', 5);
/// `BR_TRANSACTION_COMPLETE`: the driver took the transaction or reply.
pub const BR_TRANSACTION_COMPLETE: u32 = io(b'r', 6);
/// `BR_INCREFS`: take a weak reference on a local node.
pub const BR_INCREFS: u32 = ior(b'r', 7, size_of::<BinderPtrCookie>());
/// `BR_ACQUIRE`: take a strong reference on a local node.
pub const BR_ACQUIRE: u32 = ior(b'r', 8, size_of::<BinderPtrCookie>());
/// `BR_RELEASE`: drop a strong reference on a local node.
pub const BR_RELEASE: u32 = ior(b'r', 9, size_of::<BinderPtrCookie>());
/// `BR_DECREFS`: drop a weak reference on a local node.
pub const BR_DECREFS: u32 = ior(b'r', 10, size_of::<BinderPtrCookie>());
/// `BR_NOOP`.
pub const BR_NOOP: u32 = io(b'r', 12);
/// `BR_SPAWN_LOOPER`: start another looper thread.
pub const BR_SPAWN_LOOPER: u32 = io(b'r', 13);
/// `BR_FINISHED` (unused by the driver).
pub const BR_FINISHED: u32 = io(b'r', 14);
/// `BR_DEAD_BINDER`: a binder with a death notification died (cookie).
pub const BR_DEAD_BINDER: u32 = ior(b'r', 15, 8);
/// `BR_CLEAR_DEATH_NOTIFICATION_DONE` (cookie).
pub const BR_CLEAR_DEATH_NOTIFICATION_DONE: u32 = ior(b'r', 16, 8);
/// `BR_FAILED_REPLY`: the transaction failed.
pub const BR_FAILED_REPLY: u32 = io(b'r', 17);
/// `BR_FROZEN_REPLY`: the target is frozen.
pub const BR_FROZEN_REPLY: u32 = io(b'r', 18);
/// `BR_ONEWAY_SPAM_SUSPECT`: this process holds too much of a target's oneway space.
pub const BR_ONEWAY_SPAM_SUSPECT: u32 = io(b'r', 19);
/// `BR_TRANSACTION_PENDING_FROZEN`: oneway queued to a frozen target.
pub const BR_TRANSACTION_PENDING_FROZEN: u32 = io(b'r', 20);

/// `BC_TRANSACTION`.
pub const BC_TRANSACTION: u32 = iow(b'c', 0, size_of::<BinderTransactionData>());
/// `BC_REPLY`.
pub const BC_REPLY: u32 = iow(b'c', 1, size_of::<BinderTransactionData>());
/// `BC_ACQUIRE_RESULT` (not supported by the driver).
pub const BC_ACQUIRE_RESULT: u32 = iow(b'c', 2, 4);
/// `BC_FREE_BUFFER` (buffer address).
pub const BC_FREE_BUFFER: u32 = iow(b'c', 3, 8);
/// `BC_INCREFS` (handle).
pub const BC_INCREFS: u32 = iow(b'c', 4, 4);
/// `BC_ACQUIRE` (handle).
pub const BC_ACQUIRE: u32 = iow(b'c', 5, 4);
/// `BC_RELEASE` (handle).
pub const BC_RELEASE: u32 = iow(b'c', 6, 4);
/// `BC_DECREFS` (handle).
pub const BC_DECREFS: u32 = iow(b'c', 7, 4);
/// `BC_INCREFS_DONE` (ptr, cookie).
pub const BC_INCREFS_DONE: u32 = iow(b'c', 8, size_of::<BinderPtrCookie>());
/// `BC_ACQUIRE_DONE` (ptr, cookie).
pub const BC_ACQUIRE_DONE: u32 = iow(b'c', 9, size_of::<BinderPtrCookie>());
/// `BC_ATTEMPT_ACQUIRE` (not supported by the driver).
pub const BC_ATTEMPT_ACQUIRE: u32 = iow(b'c', 10, 8);
/// `BC_REGISTER_LOOPER`: a spawned looper thread starts.
pub const BC_REGISTER_LOOPER: u32 = io(b'c', 11);
/// `BC_ENTER_LOOPER`: the application's own looper thread starts.
pub const BC_ENTER_LOOPER: u32 = io(b'c', 12);
/// `BC_EXIT_LOOPER`.
pub const BC_EXIT_LOOPER: u32 = io(b'c', 13);
/// `BC_REQUEST_DEATH_NOTIFICATION` (handle, cookie).
pub const BC_REQUEST_DEATH_NOTIFICATION: u32 = iow(b'c', 14, size_of::<BinderHandleCookie>());
/// `BC_CLEAR_DEATH_NOTIFICATION` (handle, cookie).
pub const BC_CLEAR_DEATH_NOTIFICATION: u32 = iow(b'c', 15, size_of::<BinderHandleCookie>());
/// `BC_DEAD_BINDER_DONE` (cookie).
pub const BC_DEAD_BINDER_DONE: u32 = iow(b'c', 16, 8);
/// `BC_TRANSACTION_SG`.
pub const BC_TRANSACTION_SG: u32 = iow(b'c', 17, size_of::<BinderTransactionDataSg>());
/// `BC_REPLY_SG`.
pub const BC_REPLY_SG: u32 = iow(b'c', 18, size_of::<BinderTransactionDataSg>());
/// `BC_REQUEST_FREEZE_NOTIFICATION` (handle, cookie).
pub const BC_REQUEST_FREEZE_NOTIFICATION: u32 = iow(b'c', 19, size_of::<BinderHandleCookie>());
/// `BC_CLEAR_FREEZE_NOTIFICATION` (handle, cookie).
pub const BC_CLEAR_FREEZE_NOTIFICATION: u32 = iow(b'c', 20, size_of::<BinderHandleCookie>());
/// `BC_FREEZE_NOTIFICATION_DONE` (cookie).
pub const BC_FREEZE_NOTIFICATION_DONE: u32 = iow(b'c', 21, 8);

const_assert_eq!(BR_TRANSACTION, 0x80407202);
const_assert_eq!(BR_TRANSACTION_SEC_CTX, 0x80487202);
const_assert_eq!(BR_DEAD_BINDER, 0x8008720f);
const_assert_eq!(BR_INCREFS, 0x80107207);
const_assert_eq!(BC_TRANSACTION, 0x40406300);
const_assert_eq!(BC_FREE_BUFFER, 0x40086303);
const_assert_eq!(BC_INCREFS_DONE, 0x40106308);
const_assert_eq!(BC_REQUEST_DEATH_NOTIFICATION, 0x400c630e);
const_assert_eq!(BC_TRANSACTION_SG, 0x40486311);
const_assert_eq!(BC_FREEZE_NOTIFICATION_DONE, 0x40086315);

/// The name of a BC_ or BR_ command, for logs, errors and the state dump.
pub fn command_name(cmd: u32) -> &'static str {
    match cmd {
        BR_ERROR => "BR_ERROR",
        BR_OK => "BR_OK",
        BR_TRANSACTION_SEC_CTX => "BR_TRANSACTION_SEC_CTX",
        BR_TRANSACTION => "BR_TRANSACTION",
        BR_REPLY => "BR_REPLY",
        BR_ACQUIRE_RESULT => "BR_ACQUIRE_RESULT",
        BR_DEAD_REPLY => "BR_DEAD_REPLY",
        BR_TRANSACTION_COMPLETE => "BR_TRANSACTION_COMPLETE",
        BR_INCREFS => "BR_INCREFS",
        BR_ACQUIRE => "BR_ACQUIRE",
        BR_RELEASE => "BR_RELEASE",
        BR_DECREFS => "BR_DECREFS",
        BR_NOOP => "BR_NOOP",
        BR_SPAWN_LOOPER => "BR_SPAWN_LOOPER",
        BR_FINISHED => "BR_FINISHED",
        BR_DEAD_BINDER => "BR_DEAD_BINDER",
        BR_CLEAR_DEATH_NOTIFICATION_DONE => "BR_CLEAR_DEATH_NOTIFICATION_DONE",
        BR_FAILED_REPLY => "BR_FAILED_REPLY",
        BR_FROZEN_REPLY => "BR_FROZEN_REPLY",
        BR_ONEWAY_SPAM_SUSPECT => "BR_ONEWAY_SPAM_SUSPECT",
        BR_TRANSACTION_PENDING_FROZEN => "BR_TRANSACTION_PENDING_FROZEN",
        BC_TRANSACTION => "BC_TRANSACTION",
        BC_REPLY => "BC_REPLY",
        BC_ACQUIRE_RESULT => "BC_ACQUIRE_RESULT",
        BC_FREE_BUFFER => "BC_FREE_BUFFER",
        BC_INCREFS => "BC_INCREFS",
        BC_ACQUIRE => "BC_ACQUIRE",
        BC_RELEASE => "BC_RELEASE",
        BC_DECREFS => "BC_DECREFS",
        BC_INCREFS_DONE => "BC_INCREFS_DONE",
        BC_ACQUIRE_DONE => "BC_ACQUIRE_DONE",
        BC_ATTEMPT_ACQUIRE => "BC_ATTEMPT_ACQUIRE",
        BC_REGISTER_LOOPER => "BC_REGISTER_LOOPER",
        BC_ENTER_LOOPER => "BC_ENTER_LOOPER",
        BC_EXIT_LOOPER => "BC_EXIT_LOOPER",
        BC_REQUEST_DEATH_NOTIFICATION => "BC_REQUEST_DEATH_NOTIFICATION",
        BC_CLEAR_DEATH_NOTIFICATION => "BC_CLEAR_DEATH_NOTIFICATION",
        BC_DEAD_BINDER_DONE => "BC_DEAD_BINDER_DONE",
        BC_TRANSACTION_SG => "BC_TRANSACTION_SG",
        BC_REPLY_SG => "BC_REPLY_SG",
        BC_REQUEST_FREEZE_NOTIFICATION => "BC_REQUEST_FREEZE_NOTIFICATION",
        BC_CLEAR_FREEZE_NOTIFICATION => "BC_CLEAR_FREEZE_NOTIFICATION",
        BC_FREEZE_NOTIFICATION_DONE => "BC_FREEZE_NOTIFICATION_DONE",
        _ => "unknown command",
    }
}

/// Reads a BC_/BR_ stream: a `u32` command followed by a payload of the size the command
/// encodes. Never panics: a short or misaligned stream yields `None`.
#[derive(Debug, Clone)]
pub struct CommandReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> CommandReader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        CommandReader { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next command code, without consuming it.
    pub fn peek_cmd(&self) -> Option<u32> {
        self.bytes
            .get(self.pos..self.pos + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
    }

    /// Reads a command code.
    pub fn read_cmd(&mut self) -> Option<u32> {
        self.read::<u32>()
    }

    /// Reads one plain value (unaligned reads are fine).
    pub fn read<T: Pod>(&mut self) -> Option<T> {
        let end = self.pos.checked_add(size_of::<T>())?;
        let bytes = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(bytemuck::pod_read_unaligned(bytes))
    }

    /// Reads one command with its payload: `(cmd, payload)`. `None` at the end, or when the
    /// payload the command encodes is cut short (the reader then stays where it was).
    pub fn next_command(&mut self) -> Option<(u32, &'a [u8])> {
        let start = self.pos;
        let cmd = self.read_cmd()?;
        let len = ioc_size(cmd);
        match self.bytes.get(self.pos..self.pos + len) {
            Some(payload) => {
                self.pos += len;
                Some((cmd, payload))
            }
            None => {
                self.pos = start;
                None
            }
        }
    }
}

/// Writes a BC_/BR_ stream into a growable buffer.
#[derive(Debug, Default, Clone)]
pub struct CommandWriter {
    bytes: Vec<u8>,
}

impl CommandWriter {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A command without payload.
    pub fn cmd(&mut self, cmd: u32) -> &mut Self {
        self.bytes.extend_from_slice(&cmd.to_ne_bytes());
        self
    }

    /// A command with a plain payload.
    pub fn cmd_with<T: Pod>(&mut self, cmd: u32, payload: &T) -> &mut Self {
        self.cmd(cmd);
        self.bytes.extend_from_slice(bytemuck::bytes_of(payload));
        self
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets everything written.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_match_header() {
        assert_eq!(BINDER_TYPE_BINDER, 0x73622a85);
        assert_eq!(BINDER_TYPE_WEAK_BINDER, 0x77622a85);
        assert_eq!(BINDER_TYPE_HANDLE, 0x73682a85);
        assert_eq!(BINDER_TYPE_WEAK_HANDLE, 0x77682a85);
        assert_eq!(BINDER_TYPE_FD, 0x66642a85);
        assert_eq!(BINDER_TYPE_FDA, 0x66646185);
        assert_eq!(BINDER_TYPE_PTR, 0x70742a85);
    }

    #[test]
    fn command_codes_match_header() {
        assert_eq!(BR_OK, 0x7201);
        assert_eq!(BR_REPLY, 0x80407203);
        assert_eq!(BR_DEAD_REPLY, 0x7205);
        assert_eq!(BR_TRANSACTION_COMPLETE, 0x7206);
        assert_eq!(BR_NOOP, 0x720c);
        assert_eq!(BR_SPAWN_LOOPER, 0x720d);
        assert_eq!(BR_FAILED_REPLY, 0x7211);
        assert_eq!(BR_TRANSACTION_PENDING_FROZEN, 0x7214);
        assert_eq!(BC_REPLY, 0x40406301);
        assert_eq!(BC_DECREFS, 0x40046307);
        assert_eq!(BC_ACQUIRE_DONE, 0x40106309);
        assert_eq!(BC_REGISTER_LOOPER, 0x630b);
        assert_eq!(BC_ENTER_LOOPER, 0x630c);
        assert_eq!(BC_EXIT_LOOPER, 0x630d);
        assert_eq!(BC_CLEAR_DEATH_NOTIFICATION, 0x400c630f);
        assert_eq!(BC_DEAD_BINDER_DONE, 0x40086310);
        assert_eq!(BC_REPLY_SG, 0x40486312);
    }

    #[test]
    fn reader_round_trips_writer_and_survives_garbage() {
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER)
            .cmd_with(BC_FREE_BUFFER, &0x1234u64)
            .cmd_with(BC_ACQUIRE, &7u32);
        let mut r = CommandReader::new(w.as_bytes());
        assert_eq!(r.next_command(), Some((BC_ENTER_LOOPER, &[][..])));
        let (c, p) = r.next_command().unwrap();
        assert_eq!((c, p.len()), (BC_FREE_BUFFER, 8));
        let (c, p) = r.next_command().unwrap();
        assert_eq!((c, p), (BC_ACQUIRE, &7u32.to_ne_bytes()[..]));
        assert_eq!(r.next_command(), None);
        // A command promising more payload than there is leaves the reader in place.
        let cut = &w.as_bytes()[..8];
        let mut r = CommandReader::new(cut);
        r.next_command().unwrap();
        assert_eq!(r.next_command(), None);
        assert_eq!(r.position(), 4);
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let mut r = CommandReader::new(&junk);
            while r.next_command().is_some() {}
        }
    }
}
