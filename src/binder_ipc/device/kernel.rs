//! [`KernelDevice`]: the Linux kernel's binder driver (`/dev/binderfs/binder`, `/dev/binder`).
//!
//! Every [`Device`] method is the matching ioctl on the device fd. The buffer area is the
//! device mapped as libbinder maps it: [`BINDER_VM_SIZE`] bytes, read-only, private, without
//! swap reservation. The kernel copies each incoming transaction there once.

use super::{Device, DeviceKind, Errno, WriteRead};
use crate::binder_ipc::uapi::{
    ioc_size, BinderExtendedError, BinderVersion, BinderWriteRead, FlatBinderObject,
    BINDER_CURRENT_PROTOCOL_VERSION, BINDER_ENABLE_ONEWAY_SPAM_DETECTION,
    BINDER_GET_EXTENDED_ERROR, BINDER_SET_CONTEXT_MGR, BINDER_SET_CONTEXT_MGR_EXT,
    BINDER_SET_MAX_THREADS, BINDER_THREAD_EXIT, BINDER_VERSION, BINDER_VM_SIZE, BINDER_WRITE_READ,
};
use bytemuck::Pod;
use nix::fcntl::{open, OFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use std::ffi::c_void;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// The environment variable that names the kernel binder device [`KernelDevice::open_default`]
/// opens, instead of looking at [`DEFAULT_PATHS`].
pub const KERNEL_DEVICE_ENV: &str = "BITTUBE_KERNEL_DEVICE";

/// Where [`KernelDevice::open_default`] looks for a kernel binder device, in this order:
/// binderfs (Android, or a host that mounted it there), then the device the module creates
/// with `devices=binder`.
pub const DEFAULT_PATHS: [&str; 2] = ["/dev/binderfs/binder", "/dev/binder"];

/// A kernel binder device, opened and mapped: one binder process.
///
/// The fd is close-on-exec. The buffer area stays mapped until the device is dropped; the
/// kernel forgets the binder process when the fd is closed.
#[derive(Debug)]
pub struct KernelDevice {
    fd: OwnedFd,
    /// Start of the read-only mapping of `map_len` bytes (an address, so the device is
    /// `Send + Sync` without more unsafe code: nothing writes through it in user space).
    map: usize,
    map_len: usize,
    path: PathBuf,
}

impl KernelDevice {
    /// The path [`open_default`](Self::open_default) would open: the one named by
    /// [`KERNEL_DEVICE_ENV`] when set (whether or not it exists), else the first of
    /// [`DEFAULT_PATHS`] that exists; `None` when there is none.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(KERNEL_DEVICE_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        DEFAULT_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// Opens the kernel binder device named by [`KERNEL_DEVICE_ENV`], else the first of
    /// [`DEFAULT_PATHS`] that exists. No device at all is an error of kind
    /// [`io::ErrorKind::NotFound`].
    pub fn open_default() -> io::Result<KernelDevice> {
        match Self::default_path() {
            Some(p) => Self::open(&p),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no kernel binder device: none of {} exists and {KERNEL_DEVICE_ENV} is not set",
                    DEFAULT_PATHS.join(", ")
                ),
            )),
        }
    }

    /// Opens the binder device at `path` (read-write, close-on-exec), checks that it speaks
    /// protocol version 8, and maps its buffer area.
    ///
    /// The new binder process has no binder thread afterwards, as a process fresh from
    /// `open` has with the shim: every binder ioctl registers the calling thread
    /// (`binder_ioctl` calls `binder_get_thread`), and the version check's registration is
    /// undone with `BINDER_THREAD_EXIT` (`binder_thread_release`). So the opening thread's
    /// first `write_read` is that of a new thread (`looper_need_return`: it returns at once
    /// with `BR_NOOP`), not that of a thread already known, which would block or be `EAGAIN`.
    ///
    /// A file that is not a binder device (the version ioctl fails with `ENOTTY`/`EINVAL`) or
    /// speaks another version is an error of kind [`io::ErrorKind::Unsupported`].
    pub fn open(path: &Path) -> io::Result<KernelDevice> {
        let fail = |what: &str, e: Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("binder device {}: {what}: {e}", path.display()),
            )
        };
        let fd = open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| fail("open", e))?;
        let mut version = BinderVersion::default();
        match ioctl_pod(fd.as_fd(), BINDER_VERSION, &mut version) {
            Ok(()) => {}
            Err(e @ (Errno::ENOTTY | Errno::EINVAL)) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{} is not a binder device (BINDER_VERSION failed: {e})",
                        path.display()
                    ),
                ))
            }
            Err(e) => return Err(fail("BINDER_VERSION", e)),
        }
        // Forget the thread BINDER_VERSION registered (see above).
        let mut unused = 0u32;
        ioctl_pod(fd.as_fd(), BINDER_THREAD_EXIT, &mut unused)
            .map_err(|e| fail("BINDER_THREAD_EXIT after BINDER_VERSION", e))?;
        if version.protocol_version != BINDER_CURRENT_PROTOCOL_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "binder device {} speaks protocol version {}, this crate speaks {}",
                    path.display(),
                    version.protocol_version,
                    BINDER_CURRENT_PROTOCOL_VERSION
                ),
            ));
        }
        let len = NonZeroUsize::new(BINDER_VM_SIZE).expect("BINDER_VM_SIZE is not zero");
        // SAFETY: a fresh mapping chosen by the kernel (no address given), so no existing
        // memory is replaced; it is owned by the returned value and unmapped in `Drop`.
        let map = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
                fd.as_fd(),
                0,
            )
        }
        .map_err(|e| fail("mmap of the buffer area", e))?;
        Ok(KernelDevice {
            fd,
            map: map.as_ptr() as usize,
            map_len: BINDER_VM_SIZE,
            path: path.to_owned(),
        })
    }

    /// Makes reads non-blocking (`O_NONBLOCK` on the device's open file): a read with no
    /// work for the thread is `EAGAIN` (`binder_thread_read`), like
    /// [`ShimDevice::set_nonblocking`](super::ShimDevice::set_nonblocking). The flag belongs
    /// to this device's open file, shared by every thread of the binder process.
    pub fn set_nonblocking(&self, nonblock: bool) -> Result<(), Errno> {
        use nix::fcntl::{fcntl, FcntlArg};
        let flags = OFlag::from_bits_retain(fcntl(&self.fd, FcntlArg::F_GETFL)?);
        let flags = if nonblock {
            flags | OFlag::O_NONBLOCK
        } else {
            flags - OFlag::O_NONBLOCK
        };
        fcntl(&self.fd, FcntlArg::F_SETFL(flags)).map(drop)
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An ioctl whose argument is one plain value of the size the request encodes.
    fn ioctl<T: Pod>(&self, request: u32, arg: &mut T) -> Result<(), Errno> {
        ioctl_pod(self.fd.as_fd(), request, arg)
    }
}

/// Issues `request` with `arg`; the request's encoded size must be `size_of::<T>()`, so the
/// kernel reads or writes only `*arg`. Only binder requests with plain arguments (no embedded
/// pointers) go through here.
fn ioctl_pod<T: Pod>(fd: BorrowedFd<'_>, request: u32, arg: &mut T) -> Result<(), Errno> {
    assert_eq!(
        ioc_size(request),
        std::mem::size_of::<T>(),
        "ioctl argument size"
    );
    // SAFETY: `arg` is a valid, exclusive `T`, and the binder driver accesses at most
    // `ioc_size(request) == size_of::<T>()` bytes at that address for these requests; `T` is
    // plain data, so any bytes the kernel writes form a valid value.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            request as libc::Ioctl,
            arg as *mut T as *mut c_void,
        )
    };
    Errno::result(r).map(drop)
}

impl Drop for KernelDevice {
    fn drop(&mut self) {
        if let Some(map) = NonNull::new(self.map as *mut c_void) {
            // SAFETY: `map`/`map_len` is the mapping made in `open`, unmapped only here; every
            // slice `buffer_bytes` handed out borrows `self`, so none outlives the mapping.
            let _ = unsafe { munmap(map, self.map_len) };
        }
    }
}

impl AsFd for KernelDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: `buffer_area` returns the read-only mapping `open` made of the binder device
// (`map`, `map_len`: the kernel's own pages for this process, a range the kernel chose, so
// its end does not overflow), the same pair on every call; it is unmapped only in `drop`.
// Nothing in this process writes to it (it is mapped read-only), and the kernel does not
// change a delivered buffer before it is freed with `BC_FREE_BUFFER`.
unsafe impl Device for KernelDevice {
    /// `BINDER_WRITE_READ`. Interrupted calls (`EINTR`) are retried with the counts the kernel
    /// returned, as libbinder does. Consumed counts beyond their slices are `EINVAL`; so is a
    /// read of 1 to 3 bytes from the start of `read` (the kernel would store its leading 4-byte
    /// `BR_NOOP` without checking the room).
    fn write_read(&self, wr: &mut WriteRead<'_>) -> Result<(), Errno> {
        let read_room = wr
            .read
            .len()
            .checked_sub(wr.read_consumed)
            .ok_or(Errno::EINVAL)?;
        if wr.write_consumed > wr.write.len()
            || (wr.read_consumed == 0 && (1..4).contains(&read_room))
        {
            return Err(Errno::EINVAL);
        }
        let mut bwr = BinderWriteRead {
            write_size: wr.write.len() as u64,
            write_consumed: wr.write_consumed as u64,
            write_buffer: wr.write.as_ptr() as u64,
            read_size: wr.read.len() as u64,
            read_consumed: wr.read_consumed as u64,
            read_buffer: wr.read.as_mut_ptr() as u64,
        };
        loop {
            // SAFETY: `bwr` is a valid binder_write_read. The kernel reads at most
            // `write[write_consumed..]` (a live shared slice) and writes at most
            // `read[read_consumed..]` (a live exclusive slice, with room for the leading
            // BR_NOOP checked above); both borrows outlive the call. Addresses the commands
            // carry are checked by the kernel (EFAULT / BR_FAILED_REPLY), never trusted.
            let r = unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    BINDER_WRITE_READ as libc::Ioctl,
                    &mut bwr as *mut BinderWriteRead,
                )
            };
            let res = Errno::result(r).map(drop);
            // The kernel copies the counts back also when the call failed.
            wr.write_consumed = (bwr.write_consumed as usize).min(wr.write.len());
            wr.read_consumed = (bwr.read_consumed as usize).min(wr.read.len());
            match res {
                Err(Errno::EINTR) => continue,
                other => return other,
            }
        }
    }

    fn version(&self) -> Result<i32, Errno> {
        let mut v = BinderVersion::default();
        self.ioctl(BINDER_VERSION, &mut v)?;
        Ok(v.protocol_version)
    }

    /// `BINDER_GET_EXTENDED_ERROR` (Linux 6.0 and later; `EINVAL` before): the calling
    /// thread's record, cleared by the kernel as it is read.
    fn extended_error(&self) -> Result<BinderExtendedError, Errno> {
        let mut ee = BinderExtendedError::default();
        self.ioctl(BINDER_GET_EXTENDED_ERROR, &mut ee)?;
        Ok(ee)
    }

    fn set_max_threads(&self, max: u32) -> Result<(), Errno> {
        let mut max = max;
        self.ioctl(BINDER_SET_MAX_THREADS, &mut max)
    }

    fn set_context_mgr(&self) -> Result<(), Errno> {
        // The kernel ignores the argument; libbinder passes an int 0.
        let mut unused = 0u32;
        self.ioctl(BINDER_SET_CONTEXT_MGR, &mut unused)
    }

    fn set_context_mgr_ext(&self, obj: &FlatBinderObject) -> Result<(), Errno> {
        let mut obj = *obj;
        self.ioctl(BINDER_SET_CONTEXT_MGR_EXT, &mut obj)
    }

    fn thread_exit(&self) -> Result<(), Errno> {
        // The kernel ignores the argument.
        let mut unused = 0u32;
        self.ioctl(BINDER_THREAD_EXIT, &mut unused)
    }

    fn enable_oneway_spam_detection(&self, enable: bool) -> Result<(), Errno> {
        let mut e = u32::from(enable);
        self.ioctl(BINDER_ENABLE_ONEWAY_SPAM_DETECTION, &mut e)
    }

    fn buffer_area(&self) -> (u64, usize) {
        (self.map as u64, self.map_len)
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Kernel
    }

    fn shutdown(&self) {
        // Closing any copy of the device fd runs the driver's flush, which wakes every
        // thread of this binder process (`binder_flush`).
        if let Ok(copy) = self.fd.try_clone() {
            drop(copy);
        }
    }
}
