//! [`KernelDevice`]: the Linux kernel's binder driver (`/dev/binderfs/binder`, `/dev/binder`).

use super::{Device, DeviceKind, Errno, WriteRead};
use crate::binder_ipc::uapi::FlatBinderObject;
use std::path::Path;

/// A kernel binder device, opened and mapped.
#[derive(Debug)]
pub struct KernelDevice {
    _private: (),
}

impl KernelDevice {
    /// Opens the binder device at `path` and maps its buffer area.
    pub fn open(_path: &Path) -> std::io::Result<KernelDevice> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

impl Device for KernelDevice {
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
        DeviceKind::Kernel
    }
}
