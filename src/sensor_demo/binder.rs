//! The sensor service over binder: ISensorServer / ISensorEventConnection style interfaces
//! on the crate's binder runtime, and the client's [`SensorManager`].
//!
//! The server side is a thin layer: it decodes parcels and calls [`SensorService`]. Codes
//! follow the order of Android's native interfaces (`FIRST_CALL_TRANSACTION` onwards); the
//! payloads are this crate's own (Android flattens `Sensor` objects in a richer format).
//!
//! `android.gui.SensorServer` (registered as [`SERVICE_NAME`]):
//! - [`GET_SENSOR_LIST`]`(opPackageName: String16)` → `count: i32`, then per sensor
//!   `handle: i32, name: String16, type: i32, minDelay: i32, maxDelay: i32, flags: u32`;
//! - [`CREATE_SENSOR_EVENT_CONNECTION`]`(packageName: String16)` → a strong binder, the
//!   connection (`android.gui.SensorEventConnection`);
//! - [`CREATE_SENSOR_DIRECT_CONNECTION`]`(opPackageName: String16, records: i32)` → a
//!   binder (a direct connection, same descriptor) and the ring's memfd. Android's client
//!   brings its own shared memory; here the service creates the sealed ring and hands it out.
//!
//! `android.gui.SensorEventConnection`; every reply is an `i32` status (0, or a negative
//! libbinder status such as `BAD_VALUE`):
//! - [`GET_SENSOR_CHANNEL`]`()` → the tube's travelling end, a `BINDER_TYPE_FD` object (moved
//!   out: a second call is `BAD_VALUE`, like `BitTube::writeToParcel`). The service keeps no
//!   copy, so a client that dies is seen as `PeerClosed` on the tube;
//! - [`ENABLE_DISABLE`]`(handle: i32, enabled: i32, samplingPeriodNs: i64,
//!   maxBatchReportLatencyNs: i64, reservedFlags: i32)`;
//! - [`SET_EVENT_RATE`]`(handle: i32, samplingPeriodNs: i64)`;
//! - [`FLUSH_SENSOR`]`()`: flush every enabled sensor (one flush-complete event each);
//! - [`CONFIGURE_CHANNEL`]`(handle: i32, rateLevel: i32)` (direct connections) → status,
//!   then the report token (`i32`) when the status is 0;
//! - [`DESTROY`]`()`: also done when the connection's binder object is released (the client
//!   dropped its proxy or died).
//!
//! Permissions ([`SensorPermissions`], checked against each call's uid from the driver, as
//! Android's SensorService does since Android 12): a caller without the high-rate permission
//! (`HIGH_SAMPLING_RATE_SENSORS`) is granted at most [`CAPPED_RATE_HZ`] (200 Hz) through an
//! event connection and at most `RATE_NORMAL` through a direct channel; enabling a wake-up
//! sensor needs the wake-up permission and creating a direct channel the direct permission
//! (`PERMISSION_DENIED` with the reason). Caps and refusals are logged (target
//! `bittube::sensor`).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::SensorEventQueue;
use super::direct::{DirectChannelReader, DirectRate};
use super::sensors::SensorInfo;
use super::service::{ConnectionId, DirectChannelId, SensorError, SensorService};
use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::policy::UidSet;
use crate::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, Service, BAD_VALUE, DEAD_OBJECT,
    FIRST_CALL_TRANSACTION,
};
use crate::binder_ipc::service_manager::ServiceManagerClient;
use crate::binder_ipc::tube::read_tube;
use crate::bittube::TubeEnd;

/// The name the sensor service is registered under with the service manager.
pub const SERVICE_NAME: &str = "sensorservice";
/// Descriptor of the server interface.
pub const SERVER_DESCRIPTOR: &str = "android.gui.SensorServer";
/// Descriptor of event and direct connections.
pub const CONNECTION_DESCRIPTOR: &str = "android.gui.SensorEventConnection";

/// ISensorServer: the sensor list.
pub const GET_SENSOR_LIST: u32 = FIRST_CALL_TRANSACTION;
/// ISensorServer: a new event connection.
pub const CREATE_SENSOR_EVENT_CONNECTION: u32 = FIRST_CALL_TRANSACTION + 1;
/// ISensorServer: a new direct connection (code 5 in Android's order).
pub const CREATE_SENSOR_DIRECT_CONNECTION: u32 = FIRST_CALL_TRANSACTION + 4;

/// ISensorEventConnection: the tube end.
pub const GET_SENSOR_CHANNEL: u32 = FIRST_CALL_TRANSACTION;
/// ISensorEventConnection: enable or disable a sensor.
pub const ENABLE_DISABLE: u32 = FIRST_CALL_TRANSACTION + 1;
/// ISensorEventConnection: change a sensor's sampling period.
pub const SET_EVENT_RATE: u32 = FIRST_CALL_TRANSACTION + 2;
/// ISensorEventConnection: flush the connection's sensors.
pub const FLUSH_SENSOR: u32 = FIRST_CALL_TRANSACTION + 3;
/// ISensorEventConnection: configure a direct connection for a sensor.
pub const CONFIGURE_CHANNEL: u32 = FIRST_CALL_TRANSACTION + 4;
/// ISensorEventConnection: destroy the connection.
pub const DESTROY: u32 = FIRST_CALL_TRANSACTION + 5;

/// libbinder's `NO_MEMORY` (-ENOMEM): a resource (tube, memfd, thread) could not be had.
pub const NO_MEMORY: i32 = -libc::ENOMEM;

/// Largest sensor list a client accepts.
const MAX_SENSORS: i32 = 1024;

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
    Binder::new(SensorServer { svc, perms })
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

impl Service for SensorServer {
    fn descriptor(&self) -> &str {
        SERVER_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        data.enforce_interface(SERVER_DESCRIPTOR)?;
        match code {
            GET_SENSOR_LIST => {
                let _package = data.read_string16()?;
                let list = self.svc.sensor_list();
                reply.write_i32(list.len() as i32)?;
                for s in &list {
                    reply.write_i32(s.handle)?;
                    reply.write_string16(&s.name)?;
                    reply.write_i32(s.kind)?;
                    reply.write_i32(s.min_delay_us)?;
                    reply.write_i32(s.max_delay_us)?;
                    reply.write_u32(s.flags)?;
                }
                Ok(())
            }
            CREATE_SENSOR_EVENT_CONNECTION => {
                let _package = data.read_string16()?;
                let (id, end) = self
                    .svc
                    .create_connection()
                    .map_err(|e| BinderError::Status(status_of(&e)))?;
                let conn = Binder::new(EventConnection {
                    svc: self.svc.clone(),
                    perms: self.perms.clone(),
                    id,
                    channel: Mutex::new(Some(end)),
                });
                call.process.write_binder(reply, &conn)
            }
            CREATE_SENSOR_DIRECT_CONNECTION => {
                let _package = data.read_string16()?;
                let records = data.read_i32()?;
                let direct = &self.perms.permissions.direct;
                SensorPermissions::need(direct, call, "create a direct channel")?;
                if records <= 0 {
                    return Err(BinderError::BadValue(format!(
                        "a direct channel needs a positive record count, got {records}"
                    )));
                }
                let (id, fd) = self
                    .svc
                    .create_direct_channel(records as usize)
                    .map_err(|e| BinderError::Status(status_of(&e)))?;
                let conn = Binder::new(DirectConnection {
                    svc: self.svc.clone(),
                    perms: self.perms.clone(),
                    id,
                });
                call.process.write_binder(reply, &conn)?;
                reply.write_fd(fd)?;
                Ok(())
            }
            _ => Err(BinderError::UnknownTransaction(code)),
        }
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

impl Service for EventConnection {
    fn descriptor(&self) -> &str {
        CONNECTION_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        data.enforce_interface(CONNECTION_DESCRIPTOR)?;
        let p = &self.perms.permissions;
        let st = match code {
            GET_SENSOR_CHANNEL => {
                let end = self
                    .channel
                    .lock()
                    .map_err(|_| BinderError::BadValue("connection state poisoned".into()))?
                    .take()
                    .ok_or_else(|| {
                        BinderError::BadValue("the sensor channel was already taken".into())
                    })?;
                reply.write_fd(OwnedFd::from(end))?;
                return Ok(());
            }
            ENABLE_DISABLE => {
                let handle = data.read_i32()?;
                let enabled = data.read_i32()?;
                let period = data.read_i64()?;
                let latency = data.read_i64()?;
                let _reserved_flags = data.read_i32()?;
                if enabled != 0 {
                    if self.perms.wake_up.contains(&handle) {
                        let what = format!("enable wake-up sensor {handle}");
                        SensorPermissions::need(&p.wake_up, call, &what)?;
                    }
                    let period = p.grant(call, handle, nanos_arg(period));
                    status(self.svc.enable(self.id, handle, period, nanos_arg(latency)))
                } else {
                    status(self.svc.disable(self.id, handle))
                }
            }
            SET_EVENT_RATE => {
                let handle = data.read_i32()?;
                let period = p.grant(call, handle, nanos_arg(data.read_i64()?));
                status(self.svc.set_rate(self.id, handle, period))
            }
            FLUSH_SENSOR => status(self.svc.flush_all(self.id).map(drop)),
            DESTROY => status(self.svc.destroy(self.id).map(drop)),
            CONFIGURE_CHANNEL => BAD_VALUE, // event connections have no direct channel
            _ => return Err(BinderError::UnknownTransaction(code)),
        };
        reply.write_i32(st)?;
        Ok(())
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

impl Service for DirectConnection {
    fn descriptor(&self) -> &str {
        CONNECTION_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        data.enforce_interface(CONNECTION_DESCRIPTOR)?;
        match code {
            CONFIGURE_CHANNEL => {
                let handle = data.read_i32()?;
                let level = data.read_i32()?;
                let Some(mut rate) = rate_of_level(level) else {
                    reply.write_i32(BAD_VALUE)?;
                    return Ok(());
                };
                let high_rate = &self.perms.permissions.high_rate;
                if level > level_of_rate(DirectRate::Normal) && !high_rate.contains(call.uid) {
                    tracing::info!(target: "bittube::sensor", pid = call.pid, uid = call.uid,
                        "direct channel sensor {handle}: rate level {level} lowered to RATE_NORMAL: no high-rate permission");
                    rate = DirectRate::Normal;
                }
                match self.svc.configure_direct_channel(self.id, handle, rate) {
                    Ok(()) => {
                        reply.write_i32(0)?;
                        reply.write_i32(handle)?; // the report token
                    }
                    Err(e) => reply.write_i32(status_of(&e))?,
                }
            }
            DESTROY => reply.write_i32(status(self.svc.destroy_direct_channel(self.id)))?,
            GET_SENSOR_CHANNEL | ENABLE_DISABLE | SET_EVENT_RATE | FLUSH_SENSOR => {
                reply.write_i32(BAD_VALUE)?
            }
            _ => return Err(BinderError::UnknownTransaction(code)),
        }
        Ok(())
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
    process: ProcessState,
    server: Binder,
    package: String,
}

fn check(status: i32) -> Result<(), BinderError> {
    if status == 0 {
        Ok(())
    } else {
        Err(BinderError::from_status(status))
    }
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
            process: process.clone(),
            server,
            package: format!("pid{}", std::process::id()),
        }
    }

    fn request(&self) -> Result<Parcel, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(SERVER_DESCRIPTOR)?;
        data.write_string16(&self.package)?;
        Ok(data)
    }

    /// The sensor list.
    pub fn sensor_list(&self) -> Result<Vec<SensorInfo>, BinderError> {
        let mut reply = self.server.transact(GET_SENSOR_LIST, &self.request()?)?;
        let count = reply.read_i32()?;
        if !(0..=MAX_SENSORS).contains(&count) {
            return Err(BinderError::BadValue(format!(
                "sensor list of {count} entries (0..={MAX_SENSORS} expected)"
            )));
        }
        let mut list = Vec::with_capacity(count as usize);
        for _ in 0..count {
            list.push(SensorInfo {
                handle: reply.read_i32()?,
                name: reply.read_string16()?.unwrap_or_default(),
                kind: reply.read_i32()?,
                min_delay_us: reply.read_i32()?,
                max_delay_us: reply.read_i32()?,
                flags: reply.read_u32()?,
            });
        }
        Ok(list)
    }

    /// A new event connection.
    pub fn create_event_connection(&self) -> Result<SensorEventConnection, BinderError> {
        let mut reply = self
            .server
            .transact(CREATE_SENSOR_EVENT_CONNECTION, &self.request()?)?;
        let binder = self
            .process
            .read_binder(&mut reply)?
            .ok_or_else(|| BinderError::BadValue("no connection in the reply".into()))?;
        Ok(SensorEventConnection { binder })
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
        let mut data = self.request()?;
        data.write_i32(i32::try_from(records).map_err(|_| {
            BinderError::BadValue(format!("{records} records is too many for one channel"))
        })?)?;
        let mut reply = self
            .server
            .transact(CREATE_SENSOR_DIRECT_CONNECTION, &data)?;
        let binder = self
            .process
            .read_binder(&mut reply)?
            .ok_or_else(|| BinderError::BadValue("no connection in the reply".into()))?;
        let fd = reply.read_fd()?;
        let reader = DirectChannelReader::new(fd)
            .map_err(|e| BinderError::BadValue(format!("direct channel ring: {e}")))?;
        Ok((SensorDirectConnection { binder }, reader))
    }
}

/// A proxy to an event connection (Android's `ISensorEventConnection`).
#[derive(Debug, Clone)]
pub struct SensorEventConnection {
    binder: Binder,
}

impl SensorEventConnection {
    fn call(
        &self,
        code: u32,
        args: impl FnOnce(&mut Parcel) -> Result<(), BinderError>,
    ) -> Result<Parcel, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(CONNECTION_DESCRIPTOR)?;
        args(&mut data)?;
        self.binder.transact(code, &data)
    }

    fn call_status(
        &self,
        code: u32,
        args: impl FnOnce(&mut Parcel) -> Result<(), BinderError>,
    ) -> Result<(), BinderError> {
        check(self.call(code, args)?.read_i32()?)
    }

    /// The connection's binder (a proxy).
    pub fn binder(&self) -> &Binder {
        &self.binder
    }

    /// Take the tube end (once) and wrap it in a [`SensorEventQueue`].
    pub fn channel(&self) -> Result<SensorEventQueue, BinderError> {
        let mut reply = self.call(GET_SENSOR_CHANNEL, |_| Ok(()))?;
        Ok(SensorEventQueue::new(read_tube(&mut reply)?))
    }

    /// Enable `handle` with a sampling `period` and a max report `latency`.
    pub fn enable(
        &self,
        handle: i32,
        period: Duration,
        latency: Duration,
    ) -> Result<(), BinderError> {
        self.call_status(ENABLE_DISABLE, |p| {
            p.write_i32(handle)?;
            p.write_i32(1)?;
            p.write_i64(period.as_nanos().min(i64::MAX as u128) as i64)?;
            p.write_i64(latency.as_nanos().min(i64::MAX as u128) as i64)?;
            p.write_i32(0)?;
            Ok(())
        })
    }

    /// Disable `handle`.
    pub fn disable(&self, handle: i32) -> Result<(), BinderError> {
        self.call_status(ENABLE_DISABLE, |p| {
            p.write_i32(handle)?;
            p.write_i32(0)?;
            p.write_i64(0)?;
            p.write_i64(0)?;
            p.write_i32(0)?;
            Ok(())
        })
    }

    /// Change the sampling period of `handle`.
    pub fn set_rate(&self, handle: i32, period: Duration) -> Result<(), BinderError> {
        self.call_status(SET_EVENT_RATE, |p| {
            p.write_i32(handle)?;
            p.write_i64(period.as_nanos().min(i64::MAX as u128) as i64)?;
            Ok(())
        })
    }

    /// Flush every enabled sensor: each answers with a flush-complete meta event behind the
    /// events pending before it.
    pub fn flush(&self) -> Result<(), BinderError> {
        self.call_status(FLUSH_SENSOR, |_| Ok(()))
    }

    /// Destroy the connection: the service closes its tube end.
    pub fn destroy(&self) -> Result<(), BinderError> {
        self.call_status(DESTROY, |_| Ok(()))
    }
}

/// A proxy to a direct connection.
#[derive(Debug, Clone)]
pub struct SensorDirectConnection {
    binder: Binder,
}

impl SensorDirectConnection {
    /// Write `handle`'s events into the ring at `rate`; returns the report token found in the
    /// records' `sensor` field.
    pub fn configure(&self, handle: i32, rate: DirectRate) -> Result<i32, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(CONNECTION_DESCRIPTOR)?;
        data.write_i32(handle)?;
        data.write_i32(level_of_rate(rate))?;
        let mut reply = self.binder.transact(CONFIGURE_CHANNEL, &data)?;
        check(reply.read_i32()?)?;
        Ok(reply.read_i32()?)
    }

    /// Stop the channel (the ring stays mapped; nothing more is written).
    pub fn destroy(&self) -> Result<(), BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(CONNECTION_DESCRIPTOR)?;
        check(self.binder.transact(DESTROY, &data)?.read_i32()?)
    }
}
