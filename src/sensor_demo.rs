//! A SensorService-style event pipeline: simulated sensors, a service that streams
//! [`SensorEvent`]s (Android's 104-byte `ASensorEvent`) to clients over BitTubes, and the
//! client's [`SensorEventQueue`].
//!
//! - [`event`]: the event layout, the wake-up ack flag, flush-complete meta events.
//! - [`sensors`]: the sensor list and the simulated HAL (a thread per active sensor,
//!   timestamps on `CLOCK_MONOTONIC`, up to 1760 Hz).
//! - [`service`]: [`SensorService`], the service core. Per connection: sampling period and
//!   max report latency per sensor; batched sends (one packet per batch); a bounded,
//!   order-keeping, drop-oldest cache while the tube is full, written out when it becomes
//!   writable; wake-up events flagged for acknowledgement, acks back on the same tube, a
//!   wake-lock-like count released by acks or by a timeout; flush answered by a
//!   flush-complete meta event behind the pending events; counters.
//! - [`direct`]: the direct channel, a sealed memfd ring of records with atomic counters.
//! - [`client`]: [`SensorEventQueue`] (blocking, mio, tokio `Stream`), latency helpers.
//! - [`binder`]: the ISensorServer / ISensorEventConnection interfaces on the binder
//!   runtime ([`binder::sensor_server`]), the name it is registered under
//!   ([`SERVICE_NAME`]) and the client's [`SensorManager`].
//!
//! **Clock.** Timestamps are `CLOCK_MONOTONIC` nanoseconds ([`clock_now_ns`]): the clock of
//! `Instant`, mio and poll timeouts. Android stamps with `CLOCK_BOOTTIME`
//! (`elapsedRealtimeNanos`); the two differ only by time spent suspended.
//!
//! **The seam for binder.** Every operation of ISensorServer / ISensorEventConnection is a
//! plain method of [`SensorService`] ([`SensorService::sensor_list`],
//! [`SensorService::create_connection`] which returns the tube end that travels as a
//! `BINDER_TYPE_FD`, [`SensorService::enable`], [`SensorService::disable`],
//! [`SensorService::set_rate`], [`SensorService::flush`] / [`SensorService::flush_all`],
//! [`SensorService::destroy`], [`SensorService::create_direct_channel`], ...). The
//! [`binder`] module implements the interfaces generated from `aidl/bittube/sensor/*.aidl`
//! (the generated stubs decode the parcels) by calling them; tests drive the same methods
//! directly, handing tube ends to client processes by SCM_RIGHTS.

pub mod binder;
pub mod client;
pub mod connection;
pub mod direct;
pub mod event;
pub mod iio;
pub mod sensors;
pub mod service;

pub use binder::{
    sensor_server, SensorDirectConnection, SensorEventConnection, SensorManager, SERVICE_NAME,
};
#[cfg(feature = "tokio")]
pub use client::SensorEventStream;
pub use client::{latency_ns, LatencySummary, QueueStats, SensorEventQueue, MAX_RECEIVE_EVENTS};
pub use connection::{ConnectionStats, MAX_EVENTS_PER_PACKET};
pub use direct::{DirectChannelError, DirectChannelReader, DirectRate, DirectRing};
pub use event::{SensorEvent, EVENT_SIZE, WAKE_UP_NEEDS_ACK};
pub use sensors::{sensor_list, SensorHandle, SensorInfo};
pub use service::{
    ConnectionId, DirectChannelId, FlushInfo, SensorError, SensorService, ServiceConfig,
    ServiceStats,
};

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the clock of event timestamps.
pub fn clock_now_ns() -> i64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() * 1_000_000_000 + t.tv_nsec(),
        // CLOCK_MONOTONIC cannot fail on Linux; Instant::now() reads the same clock.
        Err(_) => 0,
    }
}
