//! A sensor HAL over Linux IIO: accelerometers, gyroscopes and magnetometers found in sysfs,
//! captured through the buffered interface, converted to [`SensorEvent`]s in Android's units.
//!
//! - **Discovery** ([`discover`]): every `iio:deviceN` directory under the sysfs root
//!   ([`IioPaths`], injectable so that tests can point it at a fake tree): its `name`, its
//!   scan elements (`scan_elements/in_<chan>_en`, `_index`, `_type`), and per channel type
//!   `in_<type>_scale` / `in_<type>_offset` (or the per-axis files). A device with
//!   `accel_x/y/z` is an accelerometer, `anglvel_x/y/z` a gyroscope, `magn_x/y/z` a
//!   magnetometer (one device may be several sensors).
//! - **Capture** ([`Capture`]): disables the buffer, enables the axes of the wanted sensors and
//!   the `timestamp` channel (all others disabled), sets the sampling frequency, asks for
//!   `CLOCK_MONOTONIC` time stamps (`current_timestamp_clock`), picks the device's own trigger
//!   when none is set (`trigger/current_trigger`), sets `buffer/length`, enables the buffer
//!   and reads whole scans from `/dev/iio:deviceN`.
//! - **Units**: `(raw + offset) × scale` is m/s² for acceleration and rad/s for angular
//!   velocity as Android wants them; magnetic field comes in Gauss and is multiplied by 100
//!   for µT. The time stamp is the scan's `timestamp` channel when enabled, else the time of
//!   the read.
//! - **Coming and going**: [`IioHal::rescan`] reports devices added and removed; a capture
//!   whose device goes away ends with [`IioError::Gone`].
//!
//! Everything read from sysfs and the device is bounded: files are read up to
//! [`MAX_FILE_BYTES`], at most [`MAX_DEVICES`] devices and [`MAX_CHANNELS`] channels each,
//! scans up to [`scan::MAX_SCAN_BYTES`]; every type string is validated
//! ([`scan::ScanType::parse`]) and decoding never reads past a record.

pub mod scan;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::clock_now_ns;
use super::event::{SensorEvent, TYPE_ACCELEROMETER, TYPE_GYROSCOPE, TYPE_MAGNETIC_FIELD};
use super::sensors::{SensorHandle, SensorInfo, REPORTING_CONTINUOUS};
use scan::{ScanLayout, ScanType};

/// The most bytes read from one sysfs file.
pub const MAX_FILE_BYTES: u64 = 4096;
/// The most IIO devices considered.
pub const MAX_DEVICES: usize = 64;
/// The most scan elements considered per device.
pub const MAX_CHANNELS: usize = 64;
/// Handle of the first IIO sensor (the simulated sensors use small handles).
pub const FIRST_HANDLE: SensorHandle = 100;
/// Scans read per `read` call at most.
pub const READ_SCANS: usize = 64;

/// Where IIO lives: the sysfs device directory and the directory of the character devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IioPaths {
    /// `/sys/bus/iio/devices`.
    pub sysfs: PathBuf,
    /// `/dev` (holding `iio:deviceN`).
    pub dev: PathBuf,
}

impl Default for IioPaths {
    fn default() -> IioPaths {
        IioPaths {
            sysfs: PathBuf::from("/sys/bus/iio/devices"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The kinds of sensor this HAL knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IioKind {
    /// `accel_x/y/z`, m/s².
    Accelerometer,
    /// `anglvel_x/y/z`, rad/s.
    Gyroscope,
    /// `magn_x/y/z`, Gauss in IIO, µT in Android.
    Magnetometer,
}

impl IioKind {
    const ALL: [IioKind; 3] = [
        IioKind::Accelerometer,
        IioKind::Gyroscope,
        IioKind::Magnetometer,
    ];

    /// The IIO channel type (`accel`, `anglvel`, `magn`).
    pub fn channel_type(self) -> &'static str {
        match self {
            IioKind::Accelerometer => "accel",
            IioKind::Gyroscope => "anglvel",
            IioKind::Magnetometer => "magn",
        }
    }

    /// Android's sensor type.
    pub fn sensor_type(self) -> i32 {
        match self {
            IioKind::Accelerometer => TYPE_ACCELEROMETER,
            IioKind::Gyroscope => TYPE_GYROSCOPE,
            IioKind::Magnetometer => TYPE_MAGNETIC_FIELD,
        }
    }

    /// Factor from IIO's unit to Android's (Gauss → µT is 100).
    pub fn unit_factor(self) -> f64 {
        match self {
            IioKind::Magnetometer => 100.0,
            _ => 1.0,
        }
    }

    fn axes(self) -> [String; 3] {
        let t = self.channel_type();
        [format!("{t}_x"), format!("{t}_y"), format!("{t}_z")]
    }
}

/// One scan element of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Name without `in_` and `_en` (`accel_x`, `timestamp`).
    pub name: String,
    /// `_index`.
    pub index: u32,
    /// `_type`.
    pub scan: ScanType,
}

/// A sensor within a device: its kind and conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct IioSensor {
    /// Which sensor.
    pub kind: IioKind,
    /// `in_<type>_scale` (1 when absent).
    pub scale: f64,
    /// `in_<type>_offset` (0 when absent).
    pub offset: f64,
}

/// An IIO device found in sysfs.
#[derive(Clone, Debug, PartialEq)]
pub struct IioDevice {
    /// Its sysfs directory.
    pub dir: PathBuf,
    /// N of `iio:deviceN`.
    pub number: u32,
    /// Its `name`.
    pub name: String,
    /// Its valid scan elements, by index.
    pub channels: Vec<Channel>,
    /// Scan elements skipped: bad type or index, or beyond [`MAX_CHANNELS`].
    pub bad_channels: usize,
    /// The sensors it holds.
    pub sensors: Vec<IioSensor>,
}

/// What can go wrong with IIO.
#[derive(Debug, thiserror::Error)]
pub enum IioError {
    /// The device went away.
    #[error("IIO device {0} is gone")]
    Gone(String),
    /// A sysfs attribute or the character device failed.
    #[error("IIO {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The enabled channels do not form a valid scan.
    #[error("IIO device {0}: the enabled channels make no valid scan")]
    BadLayout(String),
    /// The device has none of the sensors asked for.
    #[error("IIO device {0} has no such sensor")]
    NoSensor(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> IioError {
    let what = what.into();
    move |source| IioError::Io { what, source }
}

/// Read a small sysfs file (at most [`MAX_FILE_BYTES`]), trimmed.
fn read_attr(path: &Path) -> Option<String> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim().to_owned())
}

fn write_attr(path: &Path, value: &str) -> Result<(), IioError> {
    std::fs::write(path, value).map_err(io_error(format!("write {value:?} to {}", path.display())))
}

fn parse_number(dir: &Path, names: &[String]) -> Option<f64> {
    names
        .iter()
        .find_map(|n| read_attr(&dir.join(n)))
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

fn device_number(name: &str) -> Option<u32> {
    name.strip_prefix("iio:device")?.parse().ok()
}

/// Every IIO device under `paths.sysfs` that holds at least one known sensor, by number.
pub fn discover(paths: &IioPaths) -> Vec<IioDevice> {
    let Ok(entries) = std::fs::read_dir(&paths.sysfs) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((device_number(e.file_name().to_str()?)?, e.path())))
        .collect();
    numbered.sort();
    numbered.truncate(MAX_DEVICES);
    numbered
        .into_iter()
        .filter_map(|(number, dir)| read_device(number, dir))
        .filter(|d| !d.sensors.is_empty())
        .collect()
}

fn read_channels(dir: &Path) -> (Vec<Channel>, usize) {
    let scan = dir.join("scan_elements");
    let Ok(entries) = std::fs::read_dir(&scan) else {
        return (Vec::new(), 0);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            Some(n.strip_prefix("in_")?.strip_suffix("_en")?.to_owned())
        })
        .collect();
    names.sort();
    let mut bad = names.len().saturating_sub(MAX_CHANNELS);
    names.truncate(MAX_CHANNELS);
    let mut channels = Vec::new();
    for name in names {
        let index = read_attr(&scan.join(format!("in_{name}_index"))).and_then(|t| t.parse().ok());
        let kind =
            read_attr(&scan.join(format!("in_{name}_type"))).and_then(|t| ScanType::parse(&t).ok());
        match (index, kind) {
            (Some(index), Some(scan)) => channels.push(Channel { name, index, scan }),
            _ => bad += 1,
        }
    }
    channels.sort_by_key(|c| c.index);
    (channels, bad)
}

fn read_device(number: u32, dir: PathBuf) -> Option<IioDevice> {
    let name = read_attr(&dir.join("name")).unwrap_or_default();
    let (channels, bad_channels) = read_channels(&dir);
    let sensors = IioKind::ALL
        .into_iter()
        .filter(|k| {
            k.axes()
                .iter()
                .all(|a| channels.iter().any(|c| &c.name == a))
        })
        .map(|kind| {
            let t = kind.channel_type();
            let files = |what: &str| vec![format!("in_{t}_{what}"), format!("in_{t}_x_{what}")];
            IioSensor {
                kind,
                scale: parse_number(&dir, &files("scale")).unwrap_or(1.0),
                offset: parse_number(&dir, &files("offset")).unwrap_or(0.0),
            }
        })
        .collect();
    Some(IioDevice {
        dir,
        number,
        name,
        channels,
        bad_channels,
        sensors,
    })
}

/// Turn whole scans of `bytes` into events for `sensors` (handle and conversion each); scans
/// without a `timestamp` channel are stamped `now`. Returns the events and the length of a
/// trailing partial scan (ignored). Never panics, never reads past `bytes`.
pub fn decode_scans(
    layout: &ScanLayout,
    sensors: &[(SensorHandle, IioSensor)],
    bytes: &[u8],
    now: i64,
) -> (Vec<SensorEvent>, usize) {
    if layout.size == 0 {
        return (Vec::new(), bytes.len());
    }
    let chunks = bytes.chunks_exact(layout.size);
    let rest = chunks.remainder().len();
    let mut events = Vec::new();
    for scan in chunks {
        let time = layout.raw(scan, "timestamp").unwrap_or(now);
        for (handle, sensor) in sensors {
            let axes = sensor.kind.axes();
            let mut values = [0f32; 3];
            let mut complete = true;
            for (v, axis) in values.iter_mut().zip(&axes) {
                match layout.raw(scan, axis) {
                    Some(raw) => {
                        *v = ((raw as f64 + sensor.offset)
                            * sensor.scale
                            * sensor.kind.unit_factor()) as f32
                    }
                    None => complete = false,
                }
            }
            if complete {
                events.push(SensorEvent::new(
                    *handle,
                    sensor.kind.sensor_type(),
                    time,
                    &values,
                ));
            }
        }
    }
    (events, rest)
}

/// Settings of a capture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptureConfig {
    /// Sampling frequency asked for, Hz (written to the device's `sampling_frequency`).
    pub rate_hz: f64,
    /// `buffer/length`, in scans.
    pub buffer_length: u32,
}

impl Default for CaptureConfig {
    fn default() -> CaptureConfig {
        CaptureConfig {
            rate_hz: 50.0,
            buffer_length: 128,
        }
    }
}

/// Counters of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Scans read.
    pub scans: u64,
    /// Events made.
    pub events: u64,
    /// Reads that ended in a partial scan (its bytes are dropped).
    pub partial_reads: u64,
    /// Settings the device refused (sampling frequency, timestamp clock, trigger); the
    /// capture goes on with the device's own.
    pub refused_settings: u64,
}

/// A running buffered capture of one device; stopped (buffer disabled) when dropped.
#[derive(Debug)]
pub struct Capture {
    device: IioDevice,
    file: File,
    layout: ScanLayout,
    sensors: Vec<(SensorHandle, IioSensor)>,
    stats: CaptureStats,
}

fn sampling_files(device: &IioDevice, kinds: &[IioKind]) -> Vec<PathBuf> {
    let mut files = vec![device.dir.join("sampling_frequency")];
    files.extend(kinds.iter().map(|k| {
        device
            .dir
            .join(format!("in_{}_sampling_frequency", k.channel_type()))
    }));
    files.into_iter().filter(|f| f.exists()).collect()
}

/// Point `trigger/current_trigger` at the device's own trigger (`<name>-dev<N>`) when it has
/// none; false if that failed or no such trigger exists (the capture may still work).
fn choose_trigger(paths: &IioPaths, device: &IioDevice) -> bool {
    let current = device.dir.join("trigger/current_trigger");
    match read_attr(&current) {
        None => return true, // no trigger needed (hardware FIFO) or not supported
        Some(t) if !t.is_empty() => return true,
        Some(_) => {}
    }
    let suffix = format!("-dev{}", device.number);
    let Ok(entries) = std::fs::read_dir(&paths.sysfs) else {
        return false;
    };
    let trigger = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("trigger"))
        })
        .filter_map(|e| read_attr(&e.path().join("name")))
        .find(|n| n.ends_with(&suffix));
    trigger.is_some_and(|t| write_attr(&current, &t).is_ok())
}

impl Capture {
    /// Set up `device` to capture the sensors of `kinds` (handle each) and start it.
    pub fn start(
        paths: &IioPaths,
        device: &IioDevice,
        kinds: &[(SensorHandle, IioKind)],
        config: CaptureConfig,
    ) -> Result<Capture, IioError> {
        let sensors: Vec<(SensorHandle, IioSensor)> = kinds
            .iter()
            .filter_map(|(h, k)| Some((*h, device.sensors.iter().find(|s| s.kind == *k)?.clone())))
            .collect();
        if sensors.is_empty() {
            return Err(IioError::NoSensor(device.name.clone()));
        }
        let mut stats = CaptureStats::default();
        let _ = write_attr(&device.dir.join("buffer/enable"), "0");
        let wanted: BTreeSet<String> = sensors
            .iter()
            .flat_map(|(_, s)| s.kind.axes())
            .chain(["timestamp".to_owned()])
            .collect();
        let scan = device.dir.join("scan_elements");
        let mut enabled = Vec::new();
        for channel in &device.channels {
            let on = wanted.contains(&channel.name);
            write_attr(
                &scan.join(format!("in_{}_en", channel.name)),
                if on { "1" } else { "0" },
            )?;
            if on {
                enabled.push((channel.name.clone(), channel.index, channel.scan));
            }
        }
        let all_kinds: Vec<IioKind> = sensors.iter().map(|(_, s)| s.kind).collect();
        for file in sampling_files(device, &all_kinds) {
            if write_attr(&file, &format!("{}", config.rate_hz)).is_err() {
                stats.refused_settings += 1;
            }
        }
        let clock = device.dir.join("current_timestamp_clock");
        if clock.exists() && write_attr(&clock, "monotonic").is_err() {
            stats.refused_settings += 1;
        }
        if !choose_trigger(paths, device) {
            stats.refused_settings += 1;
        }
        let layout =
            ScanLayout::new(enabled).ok_or_else(|| IioError::BadLayout(device.name.clone()))?;
        write_attr(
            &device.dir.join("buffer/length"),
            &config.buffer_length.to_string(),
        )?;
        write_attr(&device.dir.join("buffer/enable"), "1")?;
        let node = paths.dev.join(format!("iio:device{}", device.number));
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&node)
            .map_err(io_error(format!("open {}", node.display())))?;
        Ok(Capture {
            device: device.clone(),
            file,
            layout,
            sensors,
            stats,
        })
    }

    /// The scan layout in use.
    pub fn layout(&self) -> &ScanLayout {
        &self.layout
    }

    /// The counters.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Wait up to `timeout` for scans and return their events (empty on a timeout).
    /// [`IioError::Gone`] once the device is unplugged.
    pub fn read(&mut self, timeout: Duration) -> Result<Vec<SensorEvent>, IioError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_error("poll")(e.into())),
        }
        let mut buf = vec![0u8; self.layout.size.saturating_mul(READ_SCANS)];
        let n = match self.file.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                0
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return Err(IioError::Gone(self.device.name.clone()))
            }
            Err(e) => return Err(io_error("read")(e)),
        };
        if n == 0 && !self.device.dir.exists() {
            return Err(IioError::Gone(self.device.name.clone()));
        }
        let (events, rest) = decode_scans(
            &self.layout,
            &self.sensors,
            &buf[..n.min(buf.len())],
            clock_now_ns(),
        );
        if rest != 0 {
            self.stats.partial_reads += 1;
        }
        self.stats.scans += (n / self.layout.size.max(1)) as u64;
        self.stats.events += events.len() as u64;
        Ok(events)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Best effort: the device may be gone already.
        let _ = write_attr(&self.device.dir.join("buffer/enable"), "0");
    }
}

/// A change seen by [`IioHal::rescan`].
#[derive(Clone, Debug, PartialEq)]
pub enum IioChange {
    /// A device with sensors appeared.
    Added(IioDevice),
    /// A device went away.
    Removed {
        /// Its number.
        number: u32,
        /// Its name.
        name: String,
    },
}

/// The IIO HAL: the devices found, their sensors under stable handles.
#[derive(Debug)]
pub struct IioHal {
    paths: IioPaths,
    devices: Vec<IioDevice>,
    handles: Vec<(SensorHandle, u32, IioKind)>,
    next_handle: SensorHandle,
}

impl IioHal {
    /// Discover the devices under `paths`.
    pub fn open(paths: IioPaths) -> IioHal {
        let mut hal = IioHal {
            paths,
            devices: Vec::new(),
            handles: Vec::new(),
            next_handle: FIRST_HANDLE,
        };
        let _ = hal.rescan();
        hal
    }

    /// The paths in use.
    pub fn paths(&self) -> &IioPaths {
        &self.paths
    }

    /// The devices known now.
    pub fn devices(&self) -> &[IioDevice] {
        &self.devices
    }

    /// Look again; report devices added and removed (by number and name).
    pub fn rescan(&mut self) -> Vec<IioChange> {
        let now = discover(&self.paths);
        let key = |d: &IioDevice| (d.number, d.name.clone());
        let mut changes = Vec::new();
        for old in &self.devices {
            if !now.iter().any(|d| key(d) == key(old)) {
                self.handles.retain(|h| h.1 != old.number);
                changes.push(IioChange::Removed {
                    number: old.number,
                    name: old.name.clone(),
                });
            }
        }
        for new in &now {
            if !self.devices.iter().any(|d| key(d) == key(new)) {
                for s in &new.sensors {
                    self.handles.push((self.next_handle, new.number, s.kind));
                    self.next_handle = self.next_handle.saturating_add(1);
                }
                changes.push(IioChange::Added(new.clone()));
            }
        }
        self.devices = now;
        changes
    }

    /// The sensor list, as the service would publish it.
    pub fn sensor_list(&self) -> Vec<SensorInfo> {
        self.handles
            .iter()
            .filter_map(|&(handle, number, kind)| {
                let device = self.devices.iter().find(|d| d.number == number)?;
                Some(SensorInfo {
                    handle,
                    name: format!("{} ({})", device.name, kind.channel_type()),
                    kind: kind.sensor_type(),
                    min_delay_us: 1_000,
                    max_delay_us: 1_000_000,
                    flags: REPORTING_CONTINUOUS,
                })
            })
            .collect()
    }

    /// Start capturing sensor `handle` (with the other sensors of its device that are in
    /// `with`).
    pub fn capture(
        &self,
        handle: SensorHandle,
        config: CaptureConfig,
    ) -> Result<Capture, IioError> {
        let &(_, number, _) = self
            .handles
            .iter()
            .find(|h| h.0 == handle)
            .ok_or_else(|| IioError::NoSensor(format!("handle {handle}")))?;
        let device = self
            .devices
            .iter()
            .find(|d| d.number == number)
            .ok_or_else(|| IioError::Gone(format!("iio:device{number}")))?;
        let kinds: Vec<(SensorHandle, IioKind)> = self
            .handles
            .iter()
            .filter(|h| h.1 == number)
            .map(|h| (h.0, h.2))
            .collect();
        Capture::start(&self.paths, device, &kinds, config)
    }
}

/// A capture running on its own thread, sending every event to a channel: the shape of the
/// simulated HAL's sensor threads (`sensors::HalSensor::start(info, period, out, wake)`), so
/// that a service can take IIO sensors the same way. Stopped and joined when dropped.
#[derive(Debug)]
pub struct IioStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<CaptureStats, IioError>>>,
}

/// How long the stream's thread waits for scans before it checks its stop flag.
pub const STREAM_POLL: Duration = Duration::from_millis(50);

impl IioStream {
    /// Start capturing sensor `handle` of `hal` every `period`; each event goes to `out`,
    /// then `wake` runs once per batch. Set-up errors come back here; a device that goes
    /// away later ends the thread with [`IioError::Gone`] ([`IioStream::stop`] returns it).
    pub fn start(
        hal: &IioHal,
        handle: SensorHandle,
        period: Duration,
        out: Sender<SensorEvent>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<IioStream, IioError> {
        let rate_hz = 1.0 / period.as_secs_f64().max(1e-6);
        let config = CaptureConfig {
            rate_hz,
            ..CaptureConfig::default()
        };
        let mut capture = hal.capture(handle, config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("iio-{handle}"))
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    let events = capture.read(STREAM_POLL)?;
                    let batch = !events.is_empty();
                    for event in events.into_iter().filter(|e| e.sensor == handle) {
                        if out.send(event).is_err() {
                            return Ok(capture.stats()); // nobody listens any more
                        }
                    }
                    if batch {
                        wake();
                    }
                }
                Ok(capture.stats())
            })
            .map_err(io_error("spawn the capture thread"))?;
        Ok(IioStream {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread; its counters, or why it ended early.
    pub fn stop(mut self) -> Result<CaptureStats, IioError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<CaptureStats, IioError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io_error("capture thread")(io::Error::other("panicked")))),
            None => Ok(CaptureStats::default()),
        }
    }
}

impl Drop for IioStream {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// Fuzz entry: the first line holds scan type strings separated by spaces (each with its
/// index as its position), the rest is scan data for an accelerometer, gyroscope and
/// magnetometer on channels 0-8 and a timestamp on channel 9. Must never panic.
pub fn fuzz_scan(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, rest) = data.split_at(split);
    let names = [
        "accel_x",
        "accel_y",
        "accel_z",
        "anglvel_x",
        "anglvel_y",
        "anglvel_z",
        "magn_x",
        "magn_y",
        "magn_z",
        "timestamp",
    ];
    let text = String::from_utf8_lossy(head);
    let channels: Vec<(String, u32, ScanType)> = text
        .split(' ')
        .zip(names)
        .enumerate()
        .filter_map(|(i, (t, n))| Some((n.to_owned(), i as u32, ScanType::parse(t).ok()?)))
        .collect();
    let Some(layout) = ScanLayout::new(channels) else {
        return;
    };
    let sensors: Vec<(SensorHandle, IioSensor)> = IioKind::ALL
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            (
                i as SensorHandle,
                IioSensor {
                    kind,
                    scale: 0.001,
                    offset: -1.0,
                },
            )
        })
        .collect();
    let (events, rest_len) = decode_scans(&layout, &sensors, rest, 0);
    assert!(rest_len < layout.size.max(1) || layout.size == 0);
    assert!(events.len() <= 3 * rest.len() / layout.size.max(1));
}
