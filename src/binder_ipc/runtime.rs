//! The binder runtime: what applications use (libbinder's `ProcessState`, `IPCThreadState`,
//! `BBinder`, `BpBinder`).
//!
//! - [`ProcessState`]: a binder process on a device (the kernel driver, or the shim), its
//!   thread pool, its local services and proxies.
//! - [`Binder`]: a local [`Service`] or a [`Proxy`] to a remote one; calls, ping,
//!   [`DeathRecipient`]s.
//!
//! Each OS thread that calls through a `ProcessState` is one binder thread of it. Reference
//! counts follow the driver's protocol: a proxy holds a strong and a weak reference on its
//! handle (`BC_ACQUIRE`/`BC_INCREFS`, released on drop), local nodes answer
//! `BR_INCREFS`/`BR_ACQUIRE` with the `*_DONE` commands and stay registered while the driver
//! holds references. A received parcel frees its buffer (`BC_FREE_BUFFER`) when dropped.
//!
//! Errors ([`BinderError`]) cross a transaction with their kind and message; a service that
//! panics costs one failed call ([`PanicPolicy`]); the device going away ends the pool and
//! fires death recipients ([`ProcessState::on_device_gone`]).
//!
//! A parcel holds the binders written into it until it is dropped, after the write that
//! sends it (libbinder's Parcel does the same). The pool's counters
//! ([`ProcessState::pool_stats`]) show idle, serving and *parked* threads: a thread that waits
//! on work done elsewhere ([`ParkedThread`], e.g. an async method's future) is not counted as
//! available, and the pool enters a replacement looper when none is idle.

mod binder;
mod error;
mod pool;
mod process;
mod thread;

pub use binder::{
    Binder, CallContext, DeathRecipient, Proxy, Service, FIRST_CALL_TRANSACTION,
    INTERFACE_TRANSACTION, LAST_CALL_TRANSACTION, PING_TRANSACTION,
};
pub use error::*;
pub use pool::{ParkedThread, PoolStats, DEFAULT_MAX_PARKED_REPLACEMENTS};
pub use process::{DeviceGoneFn, PanicPolicy, ProcessState, DEFAULT_MAX_THREADS};
