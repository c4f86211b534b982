//! bittube: Android-style BitTubes for Linux, handed between processes through binder.
//!
//! A service process hands a client a [`TubeEnd`] through binder (the kernel driver, or the
//! crate's user-space driver shim); the client reads typed event batches from it, blocking
//! or as a tokio `Stream` (feature `tokio`). Interfaces are declared in `.aidl` files and
//! compiled at build time by the `bittube-aidl` generator (see the README's first example).
//!
//! ## Start here
//!
//! - [`ProcessState`]: this process's binder connection, its thread pool and its services;
//!   [`Binder`] (a local [`Service`] or a proxy), [`CallContext`] (who is calling).
//! - [`ServiceManagerClient`]: find and register services by name; [`ServiceManager`] is the
//!   context manager itself (the `bittube driver --service-manager` daemon runs one).
//! - [`BitTube`] and [`TubeEnd`]: SEQPACKET event tubes; [`AsyncTubeEnd`] and
//!   [`EventStream`] with feature `tokio`.
//! - Errors: [`BinderError`] (binder calls, with kind and message across processes),
//!   [`TubeError`], [`ParcelError`], [`FdTransferError`].
//! - [`aidl`]: what code generated from `.aidl` files runs on (AIDL encodings, async
//!   adapters); [`Parcel`] for hand-written services.
//!
//! ## Modules
//!
//! - [`bittube`](mod@bittube): tubes, typed batches, async ends.
//! - [`binder_ipc`]: binder itself: the runtime, parcels, the service manager, the driver
//!   shim, devices, declared interfaces, BitTube ends through binder.
//! - [`fd_transfer`]: file descriptors with bytes over Unix sockets (SCM_RIGHTS).
//! - [`sensor_demo`], [`input_demo`]: SensorService and InputDispatcher prototypes built on
//!   the public API.
#![cfg(target_os = "linux")]
#![warn(missing_docs)]

pub mod binder_ipc;
pub mod bittube;
pub mod fd_transfer;
pub mod input_demo;
pub mod sensor_demo;

pub use binder_ipc::aidl;
pub use binder_ipc::parcel::{Parcel, ParcelError};
pub use binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
pub use binder_ipc::service_manager::{ServiceManager, ServiceManagerClient};
#[cfg(feature = "tokio")]
pub use bittube::{AsyncTubeEnd, EventStream};
pub use bittube::{BitTube, TubeEnd, TubeError};
pub use fd_transfer::FdTransferError;
