//! Input formats of bittube's fuzz targets and the helpers they share.
//!
//! Each target decodes its input with the module of the same name; the seed generator
//! (`fuzz/seedgen`) includes these modules by path and writes seeds with their encoders.

pub mod bc;
pub mod binder;
pub mod bytes;
pub mod frames;
pub mod input;
pub mod parcel;
pub mod sensor;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A fresh fd (`/dev/null`, read-write), owned by the caller.
pub fn fresh_fd() -> OwnedFd {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null")
        .into()
}

/// True when fd number `fd` is open in this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only looks the number up; it fails cleanly on a closed one.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// The raw numbers of `fds`.
pub fn raw(fds: &[OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(AsRawFd::as_raw_fd).collect()
}
