//! Binder: the kernel's protocol, over the crate's driver shim or the real driver.
//!
//! - [`uapi`]: the ABI structs, constants and BC_/BR_ stream encoding.
//! - [`device`]: the [`device::Device`] trait and its two implementations.
//! - [`shim`]: the user-space driver shim (embedded on a thread, or a daemon).
//! - [`protocol`]: what crosses the shim's socket: frames, and binder objects found in a buffer.
//! - [`parcel`]: libbinder-compatible Parcel encoding.
//! - [`interface`]: declare an interface once ([`binder_interface!`](crate::binder_interface)),
//!   get a typed client and server.
//! - [`runtime`]: processes, threads, services, proxies, death recipients.
//! - [`service_manager`]: the context manager that maps names to binders, and its client.
//! - [`tube`]: BitTube ends through binder, and a typed event channel on top.

pub mod aidl;
pub mod device;
pub mod interface;
pub mod parcel;
pub mod policy;
pub mod protocol;
pub mod runtime;
pub mod service_manager;
pub mod shim;
pub mod tube;
pub mod uapi;
