//! [`ShimDevice`]: the crate's user-space driver shim, reached over a Unix socket.

use super::{Device, DeviceKind, Errno, WriteRead};
use crate::binder_ipc::uapi::FlatBinderObject;
use std::path::Path;

/// A connection to the driver shim: one binder process.
#[derive(Debug)]
pub struct ShimDevice {
    _private: (),
}

impl ShimDevice {
    /// Connects to the shim listening at `path` and registers a new binder process.
    pub fn open(_path: &Path) -> std::io::Result<ShimDevice> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

impl Device for ShimDevice {
    fn write_read(&self, _wr: &mut WriteRead<'_>) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn version(&self) -> Result<i32, Errno> {
        Err(Errno::ENOSYS)
    }
    fn set_max_threads(&self, _max: u32) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn set_context_mgr(&self) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn set_context_mgr_ext(&self, _obj: &FlatBinderObject) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn thread_exit(&self) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn enable_oneway_spam_detection(&self, _enable: bool) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn buffer_area(&self) -> (u64, usize) {
        (0, 0)
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::Shim
    }
}
