//! Binder: the kernel's protocol, over the crate's driver shim or the real driver.
//!
//! - [`device`]: the [`device::Device`] trait and its two implementations.
//! - [`shim`]: the user-space driver shim (embedded on a thread, or a daemon).
//! - [`parcel`]: libbinder-compatible Parcel encoding.
//! - [`interface`]: declare an interface once ([`binder_interface!`](crate::binder_interface)),
//!   get a typed client and server.
//! - [`runtime`]: processes, threads, services, proxies, death recipients.
//! - [`service_manager`]: the context manager that maps names to binders, and its client.
//! - [`tube`]: BitTube ends through binder, and a typed event channel on top.
//! - [`aidl`]: what code generated from `.aidl` files by `bittube-aidl` runs on.
//!
//! The kernel ABI (`uapi`) and the shim's wire format (`protocol`) are public for the
//! crate's tools, tests and fuzz targets, and hidden from these docs.

pub mod aidl;
pub mod device;
pub mod interface;
pub mod parcel;
pub mod policy;
#[doc(hidden)] // the shim's wire format: internals, public for the fuzz targets and tests
pub mod protocol;
pub mod runtime;
pub mod service_manager;
pub mod shim;
pub mod tube;
#[doc(hidden)] // the kernel ABI: internals, public for the driver shim's tools and tests
pub mod uapi;
