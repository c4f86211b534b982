//! The binder device: the kernel's calls, behind one trait.
//!
//! [`Device`] carries exactly what the binder ioctls carry: a `BINDER_WRITE_READ` takes a
//! BC_ command stream and gives a BR_ return stream, with the consumed counts set as the
//! kernel sets them; errors are the kernel's errno values. The runtime above speaks only this
//! trait, so it cannot tell the kernel driver ([`KernelDevice`]) from the crate's shim
//! ([`ShimDevice`]).

use super::uapi::{BinderExtendedError, FlatBinderObject};
pub use nix::errno::Errno;

mod shim;
pub use shim::{ShimDevice, OPEN_TIMEOUT};
mod kernel;
pub use kernel::{KernelDevice, DEFAULT_PATHS, KERNEL_DEVICE_ENV};

/// The arguments of one `BINDER_WRITE_READ`, as slices instead of raw addresses.
///
/// Like `struct binder_write_read`, the driver consumes `write[write_consumed..]` and fills
/// `read[read_consumed..]`, advancing both counters, also when the call fails.
#[derive(Debug)]
pub struct WriteRead<'a> {
    /// The BC_ command stream.
    pub write: &'a [u8],
    /// Bytes of `write` the driver has consumed.
    pub write_consumed: usize,
    /// Room for the BR_ return stream.
    pub read: &'a mut [u8],
    /// Bytes of `read` the driver has filled.
    pub read_consumed: usize,
}

impl<'a> WriteRead<'a> {
    /// A call that writes `write` and reads into `read`, both from their start.
    pub fn new(write: &'a [u8], read: &'a mut [u8]) -> Self {
        WriteRead {
            write,
            write_consumed: 0,
            read,
            read_consumed: 0,
        }
    }

    /// The return commands the driver filled in.
    pub fn returned(&self) -> &[u8] {
        &self.read[..self.read_consumed]
    }
}

/// Which driver a [`Device`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The Linux kernel's binder driver.
    Kernel,
    /// The crate's user-space driver shim.
    Shim,
}

/// A binder device opened by one binder process.
///
/// Each OS thread that calls [`Device::write_read`] is one binder thread, as with the kernel.
/// Addresses inside the write stream (`binder_transaction_data` pointers, scatter-gather
/// buffers) must name this process's memory; a bad address fails the transaction with
/// `BR_FAILED_REPLY` (or the call with `EFAULT`), never with undefined behaviour.
///
/// # Safety
///
/// [`Device::buffer_bytes`] turns what [`Device::buffer_area`] returns into slices, so an
/// implementation promises, for `(base, len) = buffer_area()`:
///
/// - `[base, base + len)` is one mapping of this process, readable, that stays mapped (at
///   the same address, with the same length) for as long as the device lives: every call
///   returns the same pair, and the mapping is released only when the device is dropped;
/// - nothing in this process writes to it through a Rust reference, and the bytes of a
///   buffer the driver delivered do not change until that buffer is freed
///   (`BC_FREE_BUFFER`); the mapping is backed by memory that cannot go away under it (a
///   file sealed against shrinking, or the kernel driver's pages), so reading it never
///   faults;
/// - `base + len` does not overflow.
pub unsafe trait Device: Send + Sync + std::fmt::Debug {
    /// `BINDER_WRITE_READ`.
    fn write_read(&self, wr: &mut WriteRead<'_>) -> Result<(), Errno>;
    /// `BINDER_VERSION`: the protocol version.
    fn version(&self) -> Result<i32, Errno>;
    /// `BINDER_SET_MAX_THREADS`.
    fn set_max_threads(&self, max: u32) -> Result<(), Errno>;
    /// `BINDER_SET_CONTEXT_MGR`: become the context manager (handle 0). Second one: `EBUSY`.
    fn set_context_mgr(&self) -> Result<(), Errno>;
    /// `BINDER_SET_CONTEXT_MGR_EXT`: the same, with node flags and cookie.
    fn set_context_mgr_ext(&self, obj: &FlatBinderObject) -> Result<(), Errno>;
    /// `BINDER_THREAD_EXIT`: forget the calling thread.
    fn thread_exit(&self) -> Result<(), Errno>;
    /// `BINDER_GET_EXTENDED_ERROR`: the calling thread's last transaction error (`{id, BR
    /// code, -errno}`, or `{0, BR_OK, 0}`), cleared by reading it. A device without it:
    /// `EINVAL`, as a kernel before 6.0 answers.
    fn extended_error(&self) -> Result<BinderExtendedError, Errno> {
        Err(Errno::EINVAL)
    }
    /// `BINDER_ENABLE_ONEWAY_SPAM_DETECTION`.
    fn enable_oneway_spam_detection(&self, enable: bool) -> Result<(), Errno>;
    /// The buffer area (`mmap` of the device): its start address and length. Buffers of
    /// incoming transactions lie inside it. Part of the trait's safety contract.
    fn buffer_area(&self) -> (u64, usize);
    /// Which driver this is.
    fn kind(&self) -> DeviceKind;

    /// Wakes every thread blocked in [`write_read`](Device::write_read) on this device, for
    /// a runtime that is shutting down. The shim closes the process's connections (every
    /// later call fails with `ECONNRESET`); the kernel driver wakes its threads with a lone
    /// `BR_NOOP` (closing a copy of the fd flushes the process), and the caller stops.
    fn shutdown(&self);

    /// The bytes `[addr, addr + len)` of a received buffer, when they lie inside the buffer
    /// area; `None` otherwise. Valid until the buffer is freed with `BC_FREE_BUFFER`.
    fn buffer_bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (base, size) = self.buffer_area();
        let off = addr.checked_sub(base)? as usize;
        let end = off.checked_add(len)?;
        if end > size {
            return None;
        }
        // SAFETY: by the trait's contract [base, base + size) is the device's mapping,
        // readable and unchanged while `self` is borrowed (for a delivered buffer, until it
        // is freed); [base + off, base + off + len) was checked to lie inside it.
        Some(unsafe { std::slice::from_raw_parts((base as usize + off) as *const u8, len) })
    }
}
