//! The sensor service core: one thread owns every connection, direct channel and HAL sensor,
//! driven by a mio `Poll`; the public calls are plain Rust calls that the binder interface
//! (ISensorServer / ISensorEventConnection style) forwards.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};

use super::clock_now_ns;
use super::connection::{Closed, Connection, ConnectionStats, Subscription};
use super::direct::{DirectChannelError, DirectRate, DirectRing};
use super::event::SensorEvent;
use super::sensors::{RunningSensor, SensorHal, SensorHandle, SensorInfo, REPORTING_ONE_SHOT};
use crate::bittube::{BitTube, TubeEnd, TubeError, DEFAULT_BUFFER_SIZE};

/// Socket buffer of a connection whose sensors batch (Android's
/// `SOCKET_BUFFER_SIZE_BATCHED`, 100 KiB ≈ 984 events), before the `wmem_max` cap.
pub const BATCHED_BUFFER_SIZE: usize = 100 * 1024;
/// Default time after which an unacknowledged wake-up packet is released (Android: 5 s).
pub const DEFAULT_WAKEUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Tunables of a [`SensorService`].
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Events a connection caches while its tube is full (drop-oldest beyond).
    pub cache_capacity: usize,
    /// Events a batching connection holds before it sends regardless of the report latency
    /// (the simulated HAL FIFO).
    pub fifo_capacity: usize,
    /// Unacknowledged wake-up packets are released after this long (and counted).
    pub wakeup_timeout: Duration,
    /// Send buffer of a connection with a batching sensor (capped at `net.core.wmem_max`).
    pub batched_buffer_size: usize,
    /// Send buffer of a connection without batching.
    pub plain_buffer_size: usize,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            cache_capacity: 1024,
            fifo_capacity: 3000,
            wakeup_timeout: DEFAULT_WAKEUP_TIMEOUT,
            batched_buffer_size: BATCHED_BUFFER_SIZE,
            plain_buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

/// Names one event connection of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Names one direct channel of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectChannelId(pub u64);

/// What a flush did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushInfo {
    /// Events queued to the connection before the flush-complete meta event (its
    /// `events_queued` just before the meta event was queued): the client receives each of
    /// them, or it is counted as dropped, before the meta event.
    pub events_before: u64,
}

/// Service-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Open event connections.
    pub connections: usize,
    /// Open direct channels.
    pub direct_channels: usize,
    /// Connections ended because the client closed its end or died.
    pub closed_by_peer: u64,
    /// Sensors whose HAL thread runs, with their sampling period.
    pub active_sensors: Vec<(SensorHandle, Duration)>,
    /// Events received from the HAL threads.
    pub hal_events: u64,
    /// Records written into direct channels.
    pub direct_records: u64,
    /// Connections ended by a tube error other than the peer closing.
    pub closed_by_error: u64,
    /// HAL threads that could not be started.
    pub hal_start_failures: u64,
    /// The last such error (a connection's tube error or a HAL thread start failure).
    pub last_error: Option<String>,
}

/// What can go wrong in a service call.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// No connection with this id (never created, destroyed, or its client is gone).
    #[error("no event connection {0:?}")]
    NoSuchConnection(ConnectionId),
    /// No direct channel with this id.
    #[error("no direct channel {0:?}")]
    NoSuchDirectChannel(DirectChannelId),
    /// No sensor with this handle.
    #[error("no sensor with handle {0}")]
    NoSuchSensor(SensorHandle),
    /// The sensor is not enabled on this connection (flush, set_rate).
    #[error("sensor {0} is not enabled on this connection")]
    NotEnabled(SensorHandle),
    /// One-shot sensors cannot be flushed (Android answers BAD_VALUE).
    #[error("sensor {0} is one-shot and cannot be flushed")]
    OneShot(SensorHandle),
    /// The sensor cannot feed a direct channel (only continuous sensors can).
    #[error("sensor {0} does not support direct report")]
    NoDirectReport(SensorHandle),
    /// The service thread is gone.
    #[error("the sensor service has stopped")]
    Stopped,
    /// A tube could not be created or configured.
    #[error("tube: {0}")]
    Tube(#[from] TubeError),
    /// A direct channel ring could not be created.
    #[error("direct channel: {0}")]
    Direct(#[from] DirectChannelError),
    /// A system call failed.
    #[error("sensor service: {0}")]
    Io(#[from] io::Error),
}

type Reply<T> = Sender<Result<T, SensorError>>;

enum Command {
    CreateConnection(Reply<(ConnectionId, TubeEnd)>),
    Enable {
        conn: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
        latency: Duration,
        reply: Reply<()>,
    },
    Disable {
        conn: ConnectionId,
        sensor: SensorHandle,
        reply: Reply<()>,
    },
    SetRate {
        conn: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
        reply: Reply<()>,
    },
    Flush {
        conn: ConnectionId,
        sensor: SensorHandle,
        reply: Reply<FlushInfo>,
    },
    FlushAll {
        conn: ConnectionId,
        reply: Reply<Vec<(SensorHandle, FlushInfo)>>,
    },
    Destroy {
        conn: ConnectionId,
        reply: Reply<ConnectionStats>,
    },
    ConnectionStats {
        conn: ConnectionId,
        reply: Reply<ConnectionStats>,
    },
    Stats(Reply<ServiceStats>),
    CreateDirect {
        slots: usize,
        reply: Reply<(DirectChannelId, OwnedFd)>,
    },
    ConfigureDirect {
        id: DirectChannelId,
        sensor: SensorHandle,
        rate: DirectRate,
        reply: Reply<()>,
    },
    DestroyDirect {
        id: DirectChannelId,
        reply: Reply<()>,
    },
}

/// A running sensor service. Cheap to clone (all clones drive the same service thread); the
/// thread, its HAL threads and every connection end when the last clone is dropped.
#[derive(Clone)]
pub struct SensorService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SensorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorService").finish_non_exhaustive()
    }
}

struct Inner {
    commands: Option<Sender<Command>>,
    waker: Arc<Waker>,
    thread: Mutex<Option<JoinHandle<()>>>,
    sensors: Vec<SensorInfo>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commands = None; // the loop sees the channel closed and ends
        let _ = self.waker.wake();
        if let Ok(mut thread) = self.thread.lock() {
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

const WAKER: Token = Token(0);

impl SensorService {
    /// Start a service with the default [`ServiceConfig`].
    pub fn start() -> Result<SensorService, SensorError> {
        SensorService::with_config(ServiceConfig::default())
    }

    /// Start a service thread with `config` over the simulated HAL.
    pub fn with_config(config: ServiceConfig) -> Result<SensorService, SensorError> {
        SensorService::with_hal(config, SensorHal::Simulated)
    }

    /// Start a service thread with `config` whose sensors come from `hal` (the simulated
    /// sensors or the machine's IIO sensors).
    pub fn with_hal(config: ServiceConfig, hal: SensorHal) -> Result<SensorService, SensorError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (hal_tx, hal_rx) = crossbeam_channel::unbounded();
        let sensors = hal.sensor_list();
        let wmem_max = read_wmem_max();
        let state = Loop {
            poll,
            waker: waker.clone(),
            commands: command_rx,
            hal_rx,
            hal_tx,
            sensors: sensors.clone(),
            wake_up_mask: sensors
                .iter()
                .filter(|s| s.is_wake_up() && (0..64).contains(&s.handle))
                .fold(0u64, |m, s| m | 1 << s.handle),
            config,
            wmem_max,
            conns: HashMap::new(),
            directs: HashMap::new(),
            hal,
            hals: BTreeMap::new(),
            next_id: 1,
            stats: ServiceStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name("sensor-service".into())
            .spawn(move || state.run())?;
        Ok(SensorService {
            inner: Arc::new(Inner {
                commands: Some(commands),
                waker,
                thread: Mutex::new(Some(thread)),
                sensors,
            }),
        })
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SensorError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let commands = self.inner.commands.as_ref().ok_or(SensorError::Stopped)?;
        commands.send(make(tx)).map_err(|_| SensorError::Stopped)?;
        self.inner.waker.wake()?;
        rx.recv().map_err(|_| SensorError::Stopped)?
    }

    /// The sensor list (ISensorServer::getSensorList).
    pub fn sensor_list(&self) -> Vec<SensorInfo> {
        self.inner.sensors.clone()
    }

    /// Create an event connection (ISensorServer::createSensorEventConnection). Returns its id
    /// and the tube end that travels to the client (ISensorEventConnection::getSensorChannel);
    /// the service keeps the other end.
    pub fn create_connection(&self) -> Result<(ConnectionId, TubeEnd), SensorError> {
        self.call(Command::CreateConnection)
    }

    /// Enable `sensor` on `conn` with a sampling `period` (clamped to the sensor's min/max
    /// delay) and a max report `latency` (0: no batching; > 0: events may wait that long and
    /// travel in large batches, with a 100 KiB tube buffer). Enabling again updates both.
    pub fn enable(
        &self,
        conn: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
        latency: Duration,
    ) -> Result<(), SensorError> {
        self.call(|reply| Command::Enable {
            conn,
            sensor,
            period,
            latency,
            reply,
        })
    }

    /// Disable `sensor` on `conn` (no error if it was not enabled).
    pub fn disable(&self, conn: ConnectionId, sensor: SensorHandle) -> Result<(), SensorError> {
        self.call(|reply| Command::Disable {
            conn,
            sensor,
            reply,
        })
    }

    /// Change the sampling period of an enabled sensor.
    pub fn set_rate(
        &self,
        conn: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
    ) -> Result<(), SensorError> {
        self.call(|reply| Command::SetRate {
            conn,
            sensor,
            period,
            reply,
        })
    }

    /// Flush `sensor` on `conn`: everything pending for the connection is sent now, followed
    /// by a flush-complete meta event for `sensor`.
    pub fn flush(
        &self,
        conn: ConnectionId,
        sensor: SensorHandle,
    ) -> Result<FlushInfo, SensorError> {
        self.call(|reply| Command::Flush {
            conn,
            sensor,
            reply,
        })
    }

    /// Flush every sensor enabled on `conn` (one-shot sensors excepted), in handle order:
    /// one flush-complete meta event each, behind the events pending before the call
    /// (ISensorEventConnection::flush).
    pub fn flush_all(
        &self,
        conn: ConnectionId,
    ) -> Result<Vec<(SensorHandle, FlushInfo)>, SensorError> {
        self.call(|reply| Command::FlushAll { conn, reply })
    }

    /// Destroy `conn`: its sensors are disabled, the service closes its tube end (the client
    /// reads what was already sent, then sees the peer closed). Returns its final counters.
    pub fn destroy(&self, conn: ConnectionId) -> Result<ConnectionStats, SensorError> {
        self.call(|reply| Command::Destroy { conn, reply })
    }

    /// The counters of `conn`.
    pub fn connection_stats(&self, conn: ConnectionId) -> Result<ConnectionStats, SensorError> {
        self.call(|reply| Command::ConnectionStats { conn, reply })
    }

    /// Service-wide counters.
    pub fn stats(&self) -> Result<ServiceStats, SensorError> {
        self.call(Command::Stats)
    }

    /// Create a direct channel: a sealed memfd ring of `slots` 104-byte records. Returns its id
    /// and an fd for the client to map with [`super::DirectChannelReader`].
    pub fn create_direct_channel(
        &self,
        slots: usize,
    ) -> Result<(DirectChannelId, OwnedFd), SensorError> {
        self.call(|reply| Command::CreateDirect { slots, reply })
    }

    /// Write `sensor`'s events into direct channel `id` at `rate` ([`DirectRate::Stop`] stops).
    pub fn configure_direct_channel(
        &self,
        id: DirectChannelId,
        sensor: SensorHandle,
        rate: DirectRate,
    ) -> Result<(), SensorError> {
        self.call(|reply| Command::ConfigureDirect {
            id,
            sensor,
            rate,
            reply,
        })
    }

    /// Destroy direct channel `id` (clients keep their mapping; nothing more is written).
    pub fn destroy_direct_channel(&self, id: DirectChannelId) -> Result<(), SensorError> {
        self.call(|reply| Command::DestroyDirect { id, reply })
    }
}

/// `net.core.wmem_max`, the cap on `SO_SNDBUF` (212992 if unreadable).
pub fn read_wmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992)
}

struct Direct {
    ring: DirectRing,
    /// sensor -> (period ns, next timestamp taken)
    sensors: BTreeMap<SensorHandle, (i64, i64)>,
}

struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    hal_rx: Receiver<SensorEvent>,
    hal_tx: Sender<SensorEvent>,
    sensors: Vec<SensorInfo>,
    wake_up_mask: u64,
    config: ServiceConfig,
    wmem_max: usize,
    conns: HashMap<ConnectionId, Connection>,
    directs: HashMap<DirectChannelId, Direct>,
    hal: SensorHal,
    hals: BTreeMap<SensorHandle, RunningSensor>,
    next_id: u64,
    stats: ServiceStats,
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

impl Loop {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let timeout_ns = nanos(self.config.wakeup_timeout);
        loop {
            let now = clock_now_ns();
            let timeout = self
                .conns
                .values()
                .filter_map(|c| c.next_deadline(timeout_ns))
                .min()
                .map(|t| Duration::from_nanos(t.saturating_sub(now).max(0) as u64));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            let now = clock_now_ns();
            let mut dead = Vec::new();
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let id = ConnectionId(event.token().0 as u64);
                let Some(conn) = self.conns.get_mut(&id) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(why) = conn.read_acks() {
                        dead.push((id, why));
                        continue;
                    }
                }
                if event.is_writable() && conn.blocked {
                    conn.blocked = false;
                    if let Err(why) = conn.write_cache(now) {
                        dead.push((id, why));
                    }
                }
            }
            self.drain_hal();
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.command(command),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
            let now = clock_now_ns();
            for (&id, conn) in self.conns.iter_mut() {
                conn.expire_wakeups(now, timeout_ns);
                if conn.due(now) {
                    if let Err(why) = conn.send_pending(now) {
                        dead.push((id, why));
                        continue;
                    }
                }
                // Ask for writable events only while the tube is full: otherwise every read
                // by the client would wake this thread.
                if conn.blocked != conn.wants_writable {
                    let interest = if conn.blocked {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    let token = Token(id.0 as usize);
                    match self
                        .poll
                        .registry()
                        .reregister(&mut conn.tube, token, interest)
                    {
                        Ok(()) => conn.wants_writable = conn.blocked,
                        Err(e) => dead.push((id, Closed::Error(e.into()))),
                    }
                }
            }
            if !dead.is_empty() {
                for (id, why) in dead {
                    if let Some(conn) = self.conns.remove(&id) {
                        match why {
                            Closed::Peer => self.stats.closed_by_peer += 1,
                            Closed::Error(e) => {
                                self.stats.closed_by_error += 1;
                                self.stats.last_error = Some(e.to_string());
                            }
                        }
                        self.close(conn);
                    }
                }
                self.update_hals();
            }
        }
    }

    fn close(&mut self, mut conn: Connection) -> ConnectionStats {
        let _ = self.poll.registry().deregister(&mut conn.tube);
        conn.finish()
    }

    /// Hand every event the HAL threads produced to the connections and direct channels.
    fn drain_hal(&mut self) {
        let mut fired_one_shot = false;
        while let Ok(event) = self.hal_rx.try_recv() {
            self.stats.hal_events += 1;
            for conn in self.conns.values_mut() {
                conn.offer(&event);
            }
            for direct in self.directs.values_mut() {
                if let Some((period, next)) = direct.sensors.get_mut(&event.sensor) {
                    if event.timestamp >= *next {
                        *next = event.timestamp.saturating_add(*period - *period / 10);
                        if direct.ring.write(&event, event.sensor).is_some() {
                            self.stats.direct_records += 1;
                        }
                    }
                }
            }
            if self
                .info(event.sensor)
                .is_some_and(|s| s.reporting_mode() == REPORTING_ONE_SHOT)
            {
                // One-shot sensors disable themselves once they fired.
                for conn in self.conns.values_mut() {
                    conn.subs.remove(&event.sensor);
                }
                fired_one_shot = true;
            }
        }
        if fired_one_shot {
            self.update_hals();
        }
    }

    fn info(&self, sensor: SensorHandle) -> Option<&SensorInfo> {
        self.sensors.iter().find(|s| s.handle == sensor)
    }

    fn conn(&mut self, id: ConnectionId) -> Result<&mut Connection, SensorError> {
        self.conns
            .get_mut(&id)
            .ok_or(SensorError::NoSuchConnection(id))
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::CreateConnection(reply) => {
                let _ = reply.send(self.create_connection());
            }
            Command::Enable {
                conn,
                sensor,
                period,
                latency,
                reply,
            } => {
                let _ = reply.send(self.enable(conn, sensor, period, latency));
            }
            Command::Disable {
                conn,
                sensor,
                reply,
            } => {
                let r = self.conn(conn).map(|c| {
                    c.subs.remove(&sensor);
                    c.send_soon();
                });
                let r = r.and_then(|()| self.resize_buffer(conn));
                self.update_hals();
                let _ = reply.send(r);
            }
            Command::SetRate {
                conn,
                sensor,
                period,
                reply,
            } => {
                let r = self.set_rate(conn, sensor, period);
                let _ = reply.send(r);
            }
            Command::Flush {
                conn,
                sensor,
                reply,
            } => {
                // Events the HAL produced before the call go out before the meta event.
                self.drain_hal();
                let r = self.flush(conn, sensor);
                let _ = reply.send(r);
            }
            Command::FlushAll { conn, reply } => {
                self.drain_hal();
                let r = self
                    .conn(conn)
                    .map(|c| c.subs.keys().copied().collect::<Vec<_>>());
                let r = r.and_then(|handles| {
                    let mut done = Vec::new();
                    for h in handles {
                        match self.flush(conn, h) {
                            Ok(info) => done.push((h, info)),
                            Err(SensorError::OneShot(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(done)
                });
                let _ = reply.send(r);
            }
            Command::Destroy { conn, reply } => {
                let r = match self.conns.remove(&conn) {
                    Some(c) => {
                        let stats = self.close(c);
                        self.update_hals();
                        Ok(stats)
                    }
                    None => Err(SensorError::NoSuchConnection(conn)),
                };
                let _ = reply.send(r);
            }
            Command::ConnectionStats { conn, reply } => {
                let _ = reply.send(self.conn(conn).map(|c| c.stats.clone()));
            }
            Command::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.connections = self.conns.len();
                stats.direct_channels = self.directs.len();
                stats.active_sensors = self.hals.iter().map(|(h, s)| (*h, s.period())).collect();
                let _ = reply.send(Ok(stats));
            }
            Command::CreateDirect { slots, reply } => {
                let r = DirectRing::new(slots)
                    .map_err(SensorError::from)
                    .and_then(|ring| {
                        let fd = ring.share()?;
                        let id = DirectChannelId(self.next_id);
                        self.next_id += 1;
                        self.directs.insert(
                            id,
                            Direct {
                                ring,
                                sensors: BTreeMap::new(),
                            },
                        );
                        Ok((id, fd))
                    });
                let _ = reply.send(r);
            }
            Command::ConfigureDirect {
                id,
                sensor,
                rate,
                reply,
            } => {
                let r = self.configure_direct(id, sensor, rate);
                self.update_hals();
                let _ = reply.send(r);
            }
            Command::DestroyDirect { id, reply } => {
                let r = self
                    .directs
                    .remove(&id)
                    .map(drop)
                    .ok_or(SensorError::NoSuchDirectChannel(id));
                self.update_hals();
                let _ = reply.send(r);
            }
        }
    }

    fn create_connection(&mut self) -> Result<(ConnectionId, TubeEnd), SensorError> {
        let size = self.config.plain_buffer_size.min(self.wmem_max);
        let (local, remote) = BitTube::with_buffer_size(size)?.into_ends()?;
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        let mut conn = Connection::new(
            local,
            self.config.cache_capacity,
            self.config.fifo_capacity,
            self.wake_up_mask,
            size,
        );
        self.poll
            .registry()
            .register(&mut conn.tube, Token(id.0 as usize), Interest::READABLE)?;
        self.conns.insert(id, conn);
        Ok((id, remote))
    }

    fn enable(
        &mut self,
        id: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
        latency: Duration,
    ) -> Result<(), SensorError> {
        let info = self
            .info(sensor)
            .ok_or(SensorError::NoSuchSensor(sensor))?
            .clone();
        let period = info.clamp_period(period);
        let conn = self.conn(id)?;
        conn.subs
            .insert(sensor, Subscription::new(nanos(period), nanos(latency)));
        self.resize_buffer(id)?;
        self.update_hals();
        Ok(())
    }

    fn set_rate(
        &mut self,
        id: ConnectionId,
        sensor: SensorHandle,
        period: Duration,
    ) -> Result<(), SensorError> {
        let info = self
            .info(sensor)
            .ok_or(SensorError::NoSuchSensor(sensor))?
            .clone();
        let conn = self.conn(id)?;
        let sub = conn
            .subs
            .get_mut(&sensor)
            .ok_or(SensorError::NotEnabled(sensor))?;
        *sub = Subscription::new(nanos(info.clamp_period(period)), sub.latency_ns);
        self.update_hals();
        Ok(())
    }

    fn flush(&mut self, id: ConnectionId, sensor: SensorHandle) -> Result<FlushInfo, SensorError> {
        let info = self.info(sensor).ok_or(SensorError::NoSuchSensor(sensor))?;
        if info.reporting_mode() == REPORTING_ONE_SHOT {
            return Err(SensorError::OneShot(sensor));
        }
        let conn = self.conn(id)?;
        if !conn.subs.contains_key(&sensor) {
            return Err(SensorError::NotEnabled(sensor));
        }
        let events_before = conn.stats.events_queued;
        conn.queue_flush_complete(sensor, clock_now_ns());
        Ok(FlushInfo { events_before })
    }

    /// 4 KiB without batching, the batched size when any enabled sensor batches; both capped
    /// at `net.core.wmem_max`.
    fn resize_buffer(&mut self, id: ConnectionId) -> Result<(), SensorError> {
        let (plain, batched, cap) = (
            self.config.plain_buffer_size,
            self.config.batched_buffer_size,
            self.wmem_max,
        );
        let conn = self.conn(id)?;
        let batching = conn.subs.values().any(|s| s.latency_ns > 0);
        let size = if batching { batched } else { plain }.min(cap);
        conn.set_buffer_size(size)?;
        Ok(())
    }

    fn configure_direct(
        &mut self,
        id: DirectChannelId,
        sensor: SensorHandle,
        rate: DirectRate,
    ) -> Result<(), SensorError> {
        let info = self
            .info(sensor)
            .ok_or(SensorError::NoSuchSensor(sensor))?
            .clone();
        if info.reporting_mode() != super::sensors::REPORTING_CONTINUOUS {
            return Err(SensorError::NoDirectReport(sensor));
        }
        let direct = self
            .directs
            .get_mut(&id)
            .ok_or(SensorError::NoSuchDirectChannel(id))?;
        if rate == DirectRate::Stop {
            direct.sensors.remove(&sensor);
        } else {
            let period = info.clamp_period(Duration::from_nanos(1_000_000_000 / rate.hz() as u64));
            direct.sensors.insert(sensor, (nanos(period), i64::MIN));
        }
        Ok(())
    }

    /// Run one HAL thread per sensor in use, at the fastest period asked for.
    fn update_hals(&mut self) {
        let mut wanted: BTreeMap<SensorHandle, i64> = BTreeMap::new();
        let uses = self
            .conns
            .values()
            .flat_map(|c| c.subs.iter().map(|(h, s)| (*h, s.period_ns)))
            .chain(
                self.directs
                    .values()
                    .flat_map(|d| d.sensors.iter().map(|(h, (p, _))| (*h, *p))),
            );
        for (handle, period) in uses {
            let e = wanted.entry(handle).or_insert(period);
            *e = (*e).min(period);
        }
        self.hals.retain(|h, _| wanted.contains_key(h));
        for (handle, period) in wanted {
            let period = Duration::from_nanos(period.max(1) as u64);
            if let Some(hal) = self.hals.get_mut(&handle) {
                if hal.set_period(period) {
                    continue;
                }
                // Restarted at the new period.
                self.hals.remove(&handle);
            }
            let Some(info) = self.info(handle).cloned() else {
                continue;
            };
            let waker = self.waker.clone();
            let wake = Arc::new(move || {
                let _ = waker.wake();
            });
            match self.hal.start(info, period, self.hal_tx.clone(), wake) {
                Ok(hal) => {
                    self.hals.insert(handle, hal);
                }
                Err(e) => {
                    self.stats.hal_start_failures += 1;
                    self.stats.last_error = Some(format!("HAL for sensor {handle}: {e}"));
                }
            }
        }
    }
}
