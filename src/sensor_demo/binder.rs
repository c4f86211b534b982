//! The sensor service over binder: ISensorServer / ISensorEventConnection style interfaces
//! on the crate's binder runtime, and the client's [`SensorManager`].
//!
//! The interfaces are declared in `aidl/bittube/sensor/` and generated at build time
//! ([`aidl`]): the generated stubs decode every call and encode every reply, this module only
//! implements [`aidl::ISensorServer::Interface`] and [`aidl::ISensorEventConnection::Interface`]
//! over [`SensorService`], and the client calls the generated proxies. Codes follow the order
//! of Android's native interfaces (`FIRST_CALL_TRANSACTION` onwards: the server's methods are
//! 1, 2 and 5); the payloads are AIDL's encoding of this crate's own types (Android flattens
//! `Sensor` objects in a richer format).
//!
//! `android.gui.SensorServer` (registered as [`SERVICE_NAME`]): `getSensorList`,
//! `createSensorEventConnection` (a connection, `android.gui.SensorEventConnection`) and
//! `createSensorDirectConnection` (a direct connection and its ring's memfd: Android's client
//! brings its own shared memory; here the service creates the sealed ring and hands it out).
//!
//! `android.gui.SensorEventConnection`; the `int` results are statuses (0, or a negative
//! libbinder status such as `BAD_VALUE`): `getSensorChannel` (the tube's travelling end as a
//! ParcelFileDescriptor, moved out: a second call is `BAD_VALUE`, like
//! `BitTube::writeToParcel`; the service keeps no copy, so a client that dies is seen as
//! `PeerClosed` on the tube), `enableDisable`, `setEventRate`, `flush` (one flush-complete
//! event per enabled sensor), `configureChannel` (direct connections; the report token in its
//! out argument) and `destroy` (also done when the connection's binder object is released:
//! the client dropped its proxy or died).
//!
//! Permissions ([`SensorPermissions`], checked against each call's uid from the driver, as
//! Android's SensorService does since Android 12): a caller without the high-rate permission
//! (`HIGH_SAMPLING_RATE_SENSORS`) is granted at most [`CAPPED_RATE_HZ`] (200 Hz) through an
//! event connection and at most `RATE_NORMAL` through a direct channel; enabling a wake-up
//! sensor needs the wake-up permission and creating a direct channel the direct permission
//! (`PERMISSION_DENIED` with the reason). Caps and refusals are logged (target
//! `bittube::sensor`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::SensorEventQueue;
use super::direct::{DirectChannelReader, DirectRate};
use super::sensors::SensorInfo;
use super::service::{ConnectionId, DirectChannelId, SensorError, SensorService};
use crate::binder_ipc::aidl::ParcelFileDescriptor;
use crate::binder_ipc::policy::UidSet;
use crate::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, BAD_VALUE, DEAD_OBJECT,
};
use crate::binder_ipc::service_manager::ServiceManagerClient;
use crate::bittube::TubeEnd;
use aidl::{DirectChannel, ISensorEventConnection, ISensorServer};

/// The sensor service's interfaces, generated at build time by bittube-aidl from
/// `aidl/bittube/sensor/` (`ISensorServer`, `ISensorEventConnection`, the `SensorInfo` and
/// `DirectChannel` parcelables; BitTube ends travel as ParcelFileDescriptors).
pub mod aidl {
    include!(concat!(env!("OUT_DIR"), "/sensor_aidl.rs"));
}

/// The name the sensor service is registered under with the service manager.
pub const SERVICE_NAME: &str = "sensorservice";
/// Descriptor of the server interface.
pub const SERVER_DESCRIPTOR: &str = ISensorServer::DESCRIPTOR;
/// Descriptor of event and direct connections.
pub const CONNECTION_DESCRIPTOR: &str = ISensorEventConnection::DESCRIPTOR;

/// libbinder's `NO_MEMORY` (-ENOMEM): a resource (tube, memfd, thread) could not be had.
pub const NO_MEMORY: i32 = -libc::ENOMEM;

/// Largest sensor list a client accepts.
const MAX_SENSORS: usize = 1024;

/// The status code a service error travels as.
pub fn status_of(e: &SensorError) -> i32 {
    match e {
        SensorError::NoSuchSensor(_)
        | SensorError::NotEnabled(_)
        | SensorError::OneShot(_)
        | SensorError::NoDirectReport(_)
        | SensorError::Direct(super::direct::DirectChannelError::BadSize { .. })
        | SensorError::Direct(super::direct::DirectChannelError::Empty) => BAD_VALUE,
        SensorError::NoSuchConnection(_)
        | SensorError::NoSuchDirectChannel(_)
        | SensorError::Stopped => DEAD_OBJECT,
        SensorError::Tube(_) | SensorError::Direct(_) | SensorError::Io(_) => NO_MEMORY,
    }
}

fn status(r: Result<(), SensorError>) -> i32 {
    r.err().map_or(0, |e| status_of(&e))
}

fn nanos_arg(ns: i64) -> Duration {
    Duration::from_nanos(ns.max(0) as u64)
}

/// The highest event rate a caller without the high-rate permission gets (Android's cap for
/// apps without `HIGH_SAMPLING_RATE_SENSORS`).
pub const CAPPED_RATE_HZ: u64 = 200;
/// The shortest spacing of events without the high-rate permission (1 / [`CAPPED_RATE_HZ`]).
pub const CAPPED_PERIOD: Duration = Duration::from_nanos(1_000_000_000 / CAPPED_RATE_HZ);
/// The sampling period a capped request is raised to: a connection takes an event a tenth of
/// a period early (HAL jitter), so the period is [`CAPPED_PERIOD`] × 10/9 and no two events
/// it delivers are closer than [`CAPPED_PERIOD`] (at most 200 Hz, whatever rate the HAL runs
/// at for other clients; 180 Hz when the sensor runs for this client alone).
pub const CAPPED_REQUEST_PERIOD: Duration =
    Duration::from_nanos(1_000_000_000 * 10 / (9 * CAPPED_RATE_HZ));

/// Who holds the sensor service's permissions.
#[derive(Debug, Clone)]
pub struct SensorPermissions {
    /// Rates above 200 Hz, direct channels above `RATE_NORMAL`.
    pub high_rate: UidSet,
    /// Enabling wake-up sensors.
    pub wake_up: UidSet,
    /// Creating direct channels.
    pub direct: UidSet,
}

impl Default for SensorPermissions {
    /// Root and the service's own uid hold every permission.
    fn default() -> Self {
        SensorPermissions {
            high_rate: UidSet::privileged(),
            wake_up: UidSet::privileged(),
            direct: UidSet::privileged(),
        }
    }
}

impl SensorPermissions {
    /// Every uid holds every permission.
    pub fn everyone() -> SensorPermissions {
        SensorPermissions {
            high_rate: UidSet::any(),
            wake_up: UidSet::any(),
            direct: UidSet::any(),
        }
    }

    /// `period`, raised to [`CAPPED_PERIOD`] for a caller without the high-rate permission.
    fn grant(&self, call: &CallContext, sensor: i32, period: Duration) -> Duration {
        if period >= CAPPED_REQUEST_PERIOD || self.high_rate.contains(call.uid) {
            return period;
        }
        tracing::info!(target: "bittube::sensor", pid = call.pid, uid = call.uid,
            "sensor {sensor}: period {period:?} raised to {CAPPED_REQUEST_PERIOD:?} (at most {CAPPED_RATE_HZ} Hz): no high-rate permission");
        CAPPED_REQUEST_PERIOD
    }

    /// Refuses `what` to a caller not in `set`.
    fn need(set: &UidSet, call: &CallContext, what: &str) -> Result<(), BinderError> {
        if set.contains(call.uid) {
            return Ok(());
        }
        let why = format!("uid {} may not {what}: held by {set}", call.uid);
        tracing::warn!(target: "bittube::sensor", pid = call.pid, uid = call.uid, "refused: {why}");
        Err(BinderError::PermissionDenied(why))
    }
}

/// The binder object of the sensor service: register it with the service manager under
/// [`SERVICE_NAME`]. Default permissions: root and this process's uid hold them all.
pub fn sensor_server(svc: SensorService) -> Binder {
    sensor_server_with(svc, SensorPermissions::default())
}

/// [`sensor_server`] with `permissions`.
pub fn sensor_server_with(svc: SensorService, permissions: SensorPermissions) -> Binder {
    let wake_up = svc
        .sensor_list()
        .iter()
        .filter(|s| s.is_wake_up())
        .map(|s| s.handle)
        .collect();
    let perms = Arc::new(Granted {
        permissions,
        wake_up,
    });
    Binder::new(ISensorServer::Server(SensorServer { svc, perms }))
}

/// The permissions and the wake-up sensors' handles, shared by the server's connections.
#[derive(Debug)]
struct Granted {
    permissions: SensorPermissions,
    wake_up: Vec<i32>,
}

struct SensorServer {
    svc: SensorService,
    perms: Arc<Granted>,
}

/// A service error as the status code it travels as.
fn status_error(e: SensorError) -> BinderError {
    BinderError::Status(status_of(&e))
}

impl ISensorServer::Interface for SensorServer {
    fn getSensorList(
        &self,
        _call: &CallContext,
        _package: Option<String>,
    ) -> Result<Vec<aidl::SensorInfo>, BinderError> {
        let list = self.svc.sensor_list();
        Ok(list
            .into_iter()
            .map(|s| aidl::SensorInfo {
                handle: s.handle,
                name: s.name,
                r#type: s.kind,
                minDelayUs: s.min_delay_us,
                maxDelayUs: s.max_delay_us,
                flags: s.flags as i32, // the same 32 bits
            })
            .collect())
    }

    fn createSensorEventConnection(
        &self,
        call: &CallContext,
        _package: Option<String>,
    ) -> Result<ISensorEventConnection::Proxy, BinderError> {
        let (id, end) = self.svc.create_connection().map_err(status_error)?;
        let conn = EventConnection {
            svc: self.svc.clone(),
            perms: self.perms.clone(),
            id,
            channel: Mutex::new(Some(end)),
        };
        Ok(ISensorEventConnection::Proxy::local(conn, &call.process))
    }

    fn createSensorDirectConnection(
        &self,
        call: &CallContext,
        _package: Option<String>,
        records: i32,
    ) -> Result<DirectChannel, BinderError> {
        let direct = &self.perms.permissions.direct;
        SensorPermissions::need(direct, call, "create a direct channel")?;
        let records = usize::try_from(records)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                BinderError::BadValue(format!(
                    "a direct channel needs a positive record count, got {records}"
                ))
            })?;
        let (id, fd) = self
            .svc
            .create_direct_channel(records)
            .map_err(status_error)?;
        let conn = DirectConnection {
            svc: self.svc.clone(),
            perms: self.perms.clone(),
            id,
        };
        Ok(DirectChannel {
            connection: Some(ISensorEventConnection::Proxy::local(conn, &call.process)),
            ring: Some(ParcelFileDescriptor(fd)),
        })
    }
}

/// One event connection, as a binder object. Destroys the service's connection when the
/// driver releases it (the client dropped its proxy or died).
struct EventConnection {
    svc: SensorService,
    perms: Arc<Granted>,
    id: ConnectionId,
    channel: Mutex<Option<TubeEnd>>,
}

impl ISensorEventConnection::Interface for EventConnection {
    fn getSensorChannel(&self, _call: &CallContext) -> Result<TubeEnd, BinderError> {
        self.channel
            .lock()
            .map_err(|_| BinderError::BadValue("connection state poisoned".into()))?
            .take()
            .ok_or_else(|| BinderError::BadValue("the sensor channel was already taken".into()))
    }

    fn enableDisable(
        &self,
        call: &CallContext,
        handle: i32,
        enabled: bool,
        period: i64,
        latency: i64,
        _reserved_flags: i32,
    ) -> Result<i32, BinderError> {
        if !enabled {
            return Ok(status(self.svc.disable(self.id, handle)));
        }
        let p = &self.perms.permissions;
        if self.perms.wake_up.contains(&handle) {
            let what = format!("enable wake-up sensor {handle}");
            SensorPermissions::need(&p.wake_up, call, &what)?;
        }
        let period = p.grant(call, handle, nanos_arg(period));
        Ok(status(self.svc.enable(
            self.id,
            handle,
            period,
            nanos_arg(latency),
        )))
    }

    fn setEventRate(
        &self,
        call: &CallContext,
        handle: i32,
        period: i64,
    ) -> Result<i32, BinderError> {
        let period = self
            .perms
            .permissions
            .grant(call, handle, nanos_arg(period));
        Ok(status(self.svc.set_rate(self.id, handle, period)))
    }

    fn flush(&self, _call: &CallContext) -> Result<i32, BinderError> {
        Ok(status(self.svc.flush_all(self.id).map(drop)))
    }

    fn configureChannel(
        &self,
        _call: &CallContext,
        _handle: i32,
        _rate_level: i32,
        _report_token: &mut i32,
    ) -> Result<i32, BinderError> {
        Ok(BAD_VALUE) // event connections have no direct channel
    }

    fn destroy(&self, _call: &CallContext) -> Result<i32, BinderError> {
        Ok(status(self.svc.destroy(self.id).map(drop)))
    }
}

impl Drop for EventConnection {
    fn drop(&mut self) {
        // Already gone (destroyed, or the client's tube closed) is fine.
        let _ = self.svc.destroy(self.id);
    }
}

/// One direct connection, as a binder object.
struct DirectConnection {
    svc: SensorService,
    perms: Arc<Granted>,
    id: DirectChannelId,
}

/// Android's `SENSOR_DIRECT_RATE_*` level numbers.
fn rate_of_level(level: i32) -> Option<DirectRate> {
    match level {
        0 => Some(DirectRate::Stop),
        1 => Some(DirectRate::Normal),
        2 => Some(DirectRate::Fast),
        3 => Some(DirectRate::VeryFast),
        _ => None,
    }
}

fn level_of_rate(rate: DirectRate) -> i32 {
    match rate {
        DirectRate::Stop => 0,
        DirectRate::Normal => 1,
        DirectRate::Fast => 2,
        DirectRate::VeryFast => 3,
    }
}

impl ISensorEventConnection::Interface for DirectConnection {
    fn getSensorChannel(&self, _call: &CallContext) -> Result<TubeEnd, BinderError> {
        Err(BinderError::BadValue(
            "a direct connection has no event channel: its events are in the ring".into(),
        ))
    }

    fn enableDisable(
        &self,
        _: &CallContext,
        _: i32,
        _: bool,
        _: i64,
        _: i64,
        _: i32,
    ) -> Result<i32, BinderError> {
        Ok(BAD_VALUE)
    }

    fn setEventRate(&self, _: &CallContext, _: i32, _: i64) -> Result<i32, BinderError> {
        Ok(BAD_VALUE)
    }

    fn flush(&self, _: &CallContext) -> Result<i32, BinderError> {
        Ok(BAD_VALUE)
    }

    fn configureChannel(
        &self,
        call: &CallContext,
        handle: i32,
        level: i32,
        report_token: &mut i32,
    ) -> Result<i32, BinderError> {
        let Some(mut rate) = rate_of_level(level) else {
            return Ok(BAD_VALUE);
        };
        let high_rate = &self.perms.permissions.high_rate;
        if level > level_of_rate(DirectRate::Normal) && !high_rate.contains(call.uid) {
            tracing::info!(target: "bittube::sensor", pid = call.pid, uid = call.uid,
                "direct channel sensor {handle}: rate level {level} lowered to RATE_NORMAL: no high-rate permission");
            rate = DirectRate::Normal;
        }
        match self.svc.configure_direct_channel(self.id, handle, rate) {
            Ok(()) => {
                *report_token = handle;
                Ok(0)
            }
            Err(e) => Ok(status_of(&e)),
        }
    }

    fn destroy(&self, _call: &CallContext) -> Result<i32, BinderError> {
        Ok(status(self.svc.destroy_direct_channel(self.id)))
    }
}

impl Drop for DirectConnection {
    fn drop(&mut self) {
        let _ = self.svc.destroy_direct_channel(self.id);
    }
}

// ---------------------------------------------------------------------------------------------
// Client side

/// The client's view of the sensor service (Android's `SensorManager`).
#[derive(Debug, Clone)]
pub struct SensorManager {
    server: ISensorServer::Proxy,
    package: String,
}

fn check(status: i32) -> Result<(), BinderError> {
    if status == 0 {
        Ok(())
    } else {
        Err(BinderError::from_status(status))
    }
}

/// A duration as the `long` nanoseconds the calls take (saturating).
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl SensorManager {
    /// Look the service up with the service manager of `process`, waiting up to `timeout`.
    pub fn connect(
        process: &ProcessState,
        timeout: Duration,
    ) -> Result<SensorManager, BinderError> {
        let server = ServiceManagerClient::new(process)?.wait_for_service(SERVICE_NAME, timeout)?;
        Ok(SensorManager::from_binder(process, server))
    }

    /// A manager on an already known server binder.
    pub fn from_binder(process: &ProcessState, server: Binder) -> SensorManager {
        SensorManager {
            server: ISensorServer::Proxy::new(server, process),
            package: format!("pid{}", std::process::id()),
        }
    }

    /// The sensor list.
    pub fn sensor_list(&self) -> Result<Vec<SensorInfo>, BinderError> {
        let list = self.server.getSensorList(Some(&self.package))?;
        if list.len() > MAX_SENSORS {
            return Err(BinderError::BadValue(format!(
                "sensor list of {} entries (0..={MAX_SENSORS} expected)",
                list.len()
            )));
        }
        Ok(list
            .into_iter()
            .map(|s| SensorInfo {
                handle: s.handle,
                name: s.name,
                kind: s.r#type,
                min_delay_us: s.minDelayUs,
                max_delay_us: s.maxDelayUs,
                flags: s.flags as u32, // the same 32 bits
            })
            .collect())
    }

    /// A new event connection.
    pub fn create_event_connection(&self) -> Result<SensorEventConnection, BinderError> {
        let conn = self
            .server
            .createSensorEventConnection(Some(&self.package))?;
        Ok(SensorEventConnection { conn })
    }

    /// A new event connection and its event queue (the tube end already taken).
    pub fn create_event_queue(
        &self,
    ) -> Result<(SensorEventConnection, SensorEventQueue), BinderError> {
        let conn = self.create_event_connection()?;
        let queue = conn.channel()?;
        Ok((conn, queue))
    }

    /// A new direct connection with a ring of `records` records, mapped for reading.
    pub fn create_direct_connection(
        &self,
        records: usize,
    ) -> Result<(SensorDirectConnection, DirectChannelReader), BinderError> {
        let records = i32::try_from(records).map_err(|_| {
            BinderError::BadValue(format!("{records} records is too many for one channel"))
        })?;
        let direct = self
            .server
            .createSensorDirectConnection(Some(&self.package), records)?;
        let missing = |what: &str| BinderError::BadValue(format!("no {what} in the reply"));
        let conn = direct.connection.ok_or_else(|| missing("connection"))?;
        let ring = direct.ring.ok_or_else(|| missing("ring"))?;
        let reader = DirectChannelReader::new(ring.0)
            .map_err(|e| BinderError::BadValue(format!("direct channel ring: {e}")))?;
        Ok((SensorDirectConnection { conn }, reader))
    }
}

/// A proxy to an event connection (Android's `ISensorEventConnection`).
#[derive(Debug, Clone)]
pub struct SensorEventConnection {
    conn: ISensorEventConnection::Proxy,
}

impl SensorEventConnection {
    /// The connection's binder (a proxy).
    pub fn binder(&self) -> &Binder {
        self.conn.binder()
    }

    /// Take the tube end (once) and wrap it in a [`SensorEventQueue`].
    pub fn channel(&self) -> Result<SensorEventQueue, BinderError> {
        Ok(SensorEventQueue::new(self.conn.getSensorChannel()?))
    }

    /// Enable `handle` with a sampling `period` and a max report `latency`.
    pub fn enable(
        &self,
        handle: i32,
        period: Duration,
        latency: Duration,
    ) -> Result<(), BinderError> {
        check(
            self.conn
                .enableDisable(handle, true, nanos(period), nanos(latency), 0)?,
        )
    }

    /// Disable `handle`.
    pub fn disable(&self, handle: i32) -> Result<(), BinderError> {
        check(self.conn.enableDisable(handle, false, 0, 0, 0)?)
    }

    /// Change the sampling period of `handle`.
    pub fn set_rate(&self, handle: i32, period: Duration) -> Result<(), BinderError> {
        check(self.conn.setEventRate(handle, nanos(period))?)
    }

    /// Flush every enabled sensor: each answers with a flush-complete meta event behind the
    /// events pending before it.
    pub fn flush(&self) -> Result<(), BinderError> {
        check(self.conn.flush()?)
    }

    /// Destroy the connection: the service closes its tube end.
    pub fn destroy(&self) -> Result<(), BinderError> {
        check(self.conn.destroy()?)
    }
}

/// A proxy to a direct connection.
#[derive(Debug, Clone)]
pub struct SensorDirectConnection {
    conn: ISensorEventConnection::Proxy,
}

impl SensorDirectConnection {
    /// Write `handle`'s events into the ring at `rate`; returns the report token found in the
    /// records' `sensor` field.
    pub fn configure(&self, handle: i32, rate: DirectRate) -> Result<i32, BinderError> {
        let mut token = 0;
        check(
            self.conn
                .configureChannel(handle, level_of_rate(rate), &mut token)?,
        )?;
        Ok(token)
    }

    /// Stop the channel (the ring stays mapped; nothing more is written).
    pub fn destroy(&self) -> Result<(), BinderError> {
        check(self.conn.destroy()?)
    }
}
