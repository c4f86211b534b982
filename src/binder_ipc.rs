//! Binder: the kernel's protocol, over the crate's driver shim or the real driver.
//!
//! - [`uapi`]: the ABI structs, constants and BC_/BR_ stream encoding.
//! - [`device`]: the [`device::Device`] trait and its two implementations.
//! - [`driver`]: the user-space driver shim (embedded on a thread, or a daemon).
//! - [`parcel`]: libbinder-compatible Parcel encoding.

pub mod device;
pub mod driver;
pub mod parcel;
pub mod uapi;
