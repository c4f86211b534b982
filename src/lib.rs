//! bittube: Android-style BitTubes for Linux, handed between processes through binder.
//!
//! - [`fd_transfer`]: send and receive file descriptors with bytes over Unix sockets.
//! - [`bittube`]: typed, batched event tubes over SOCK_SEQPACKET socketpairs.
//! - [`binder_ipc`]: binder with the kernel's exact UAPI, over the crate's user-space driver
//!   shim or the real kernel driver.
#![cfg(target_os = "linux")]
#![warn(missing_docs)]

pub mod binder_ipc;
pub mod bittube;
pub mod fd_transfer;
pub mod input_demo;
pub mod sensor_demo;
