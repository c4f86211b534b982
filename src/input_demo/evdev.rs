//! Real input devices for the dispatcher: a small EventHub + InputReader over Linux evdev.
//!
//! [`EvdevReader`] opens the input devices of a directory (`/dev/input`; all `event*` nodes,
//! or only those whose name is listed), watches the directory with inotify to notice devices
//! that come and go, reads `struct input_event` batches from every device without blocking,
//! and turns them into the crate's [`KeyEvent`]s and [`MotionEvent`]s through one
//! [`mapper::Mapper`] per device (keys, multi-touch protocol B, relative pointers; see the
//! mapper for the rules). Each device gets a [`DeviceId`] that is never reused.
//!
//! - Time stamps: every device is switched to `CLOCK_MONOTONIC` (`EVIOCSCLOCKID`), the clock
//!   of [`crate::input_demo::now_nanos`].
//! - `SYN_DROPPED` (the client buffer in the kernel overflowed): the mapper discards the rest
//!   of the broken frame, then the reader reads the device's state back (`EVIOCGKEY`,
//!   `EVIOCGABS(ABS_MT_SLOT)`, `EVIOCGMTSLOTS` per axis) and the mapper emits the difference,
//!   as Android's EventHub and InputReader do.
//! - A device that goes away (`ENODEV` on read, or its node deleted) ends its gesture with
//!   `CANCEL` and its held keys with a canceled `UP`, then [`ReaderEvent::DeviceRemoved`].
//! - Optional exclusive grab (`EVIOCGRAB`): no other reader (a console) sees the events.
//!
//! Everything read is bounded: reads go into a fixed buffer of [`READ_BATCH`] records, at most
//! [`MAX_READS_PER_DEVICE`] reads per device per call, at most [`MAX_DEVICES`] devices open;
//! bytes are decoded by [`codes::decode_events`], which never reads past the slice.
//! [`feed`] hands the events to a [`Dispatcher`], counting what it refused.
//!
//! [`uinput`] creates virtual devices (tests, the demo).

pub mod codes;
pub mod mapper;
mod sys;
pub mod uinput;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::dispatcher::Dispatcher;
use super::message::{KeyEvent, MotionEvent};
use super::now_nanos;
use codes::{decode_events, EVENT_SIZE};
use mapper::{Capabilities, Display, Mapper, MapperStats, Output, Step};

/// Records read per `read` call.
pub const READ_BATCH: usize = 64;
/// Reads per device per [`EvdevReader::read`] call, so that one busy device cannot starve
/// the others.
pub const MAX_READS_PER_DEVICE: usize = 64;
/// The most devices open at once; more are counted and left closed.
pub const MAX_DEVICES: usize = 32;

/// Identifies an input device for as long as the reader runs (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub i32);

/// Settings of an [`EvdevReader`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReaderConfig {
    /// The directory of the device nodes (`/dev/input`).
    pub dir: PathBuf,
    /// Open only devices with these names (`EVIOCGNAME`); empty: every device.
    pub names: Vec<String>,
    /// The display touch surfaces and cursors map onto.
    pub display: Display,
    /// Grab each device exclusively (`EVIOCGRAB`).
    pub grab: bool,
}

impl Default for ReaderConfig {
    fn default() -> ReaderConfig {
        ReaderConfig {
            dir: PathBuf::from("/dev/input"),
            names: Vec::new(),
            display: Display {
                width: 1000.0,
                height: 1000.0,
            },
            grab: false,
        }
    }
}

/// What the reader reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ReaderEvent {
    /// A device was opened.
    DeviceAdded {
        /// Its id.
        id: DeviceId,
        /// Its name.
        name: String,
        /// Its node.
        path: PathBuf,
        /// What it can do.
        capabilities: Capabilities,
    },
    /// A device went away (after the events that ended its gestures).
    DeviceRemoved {
        /// Its id.
        id: DeviceId,
        /// Its name.
        name: String,
    },
    /// A key event.
    Key(KeyEvent),
    /// A motion event.
    Motion(MotionEvent),
}

/// Counters of a reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Devices opened.
    pub devices_added: u64,
    /// Devices closed because they went away.
    pub devices_removed: u64,
    /// Nodes that could not be opened or queried (or were beyond [`MAX_DEVICES`]).
    pub open_failures: u64,
    /// Nodes skipped: not in the name list, or neither keyboard, touch surface nor pointer.
    pub skipped: u64,
    /// Reads that ended in a partial record (the partial bytes are discarded).
    pub partial_reads: u64,
    /// Read errors other than would-block and device-gone (the device is closed).
    pub read_errors: u64,
    /// Resyncs that failed to read the device's state (the device is closed).
    pub resync_failures: u64,
    /// inotify queue overflows (followed by a full rescan).
    pub inotify_overflows: u64,
    /// The mappers' counters, summed over every device ever opened.
    pub mapper: MapperStats,
}

#[derive(Debug)]
struct OpenDevice {
    id: DeviceId,
    path: PathBuf,
    name: String,
    file: File,
    mapper: Mapper,
}

/// The reader; see the module doc.
#[derive(Debug)]
pub struct EvdevReader {
    config: ReaderConfig,
    inotify: Option<Inotify>,
    devices: Vec<OpenDevice>,
    next_id: i32,
    stats: ReaderStats,
    closed: MapperStats,
    pending: Vec<ReaderEvent>,
}

fn add_stats(a: MapperStats, b: MapperStats) -> MapperStats {
    MapperStats {
        records: a.records + b.records,
        frames: a.frames + b.frames,
        dropped: a.dropped + b.dropped,
        discarded: a.discarded + b.discarded,
        resyncs: a.resyncs + b.resyncs,
        ignored: a.ignored + b.ignored,
        excess_contacts: a.excess_contacts + b.excess_contacts,
    }
}

fn is_event_node(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with("event"))
}

impl EvdevReader {
    /// Watch `config.dir` and open the devices in it (their [`ReaderEvent::DeviceAdded`]
    /// come with the first [`EvdevReader::read`]). A missing directory is not an error: no
    /// devices yet, and no inotify; [`EvdevReader::rescan`] finds later ones.
    pub fn open(config: ReaderConfig) -> io::Result<EvdevReader> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ATTRIB;
        let inotify = match inotify.add_watch(&config.dir, flags) {
            Ok(_) => Some(inotify),
            Err(nix::errno::Errno::ENOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let mut reader = EvdevReader {
            config,
            inotify,
            devices: Vec::new(),
            next_id: 1,
            stats: ReaderStats::default(),
            closed: MapperStats::default(),
            pending: Vec::new(),
        };
        let mut out = Vec::new();
        reader.rescan(&mut out);
        reader.pending = out;
        Ok(reader)
    }

    /// The counters.
    pub fn stats(&self) -> ReaderStats {
        let open = self
            .devices
            .iter()
            .fold(self.closed, |s, d| add_stats(s, d.mapper.stats()));
        ReaderStats {
            mapper: open,
            ..self.stats
        }
    }

    /// The open devices: id, name, node.
    pub fn devices(&self) -> Vec<(DeviceId, String, PathBuf)> {
        self.devices
            .iter()
            .map(|d| (d.id, d.name.clone(), d.path.clone()))
            .collect()
    }

    /// Open every `event*` node of the directory not open yet; events go to `out`.
    pub fn rescan(&mut self, out: &mut Vec<ReaderEvent>) {
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else {
            return;
        };
        let open: HashSet<PathBuf> = self.devices.iter().map(|d| d.path.clone()).collect();
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| is_event_node(&e.file_name()))
            .map(|e| e.path())
            .filter(|p| !open.contains(p))
            .collect();
        paths.sort();
        for path in paths {
            self.open_device(&path, out);
        }
        // Nodes that vanished without a delete event (an inotify overflow).
        let gone: Vec<DeviceId> = self
            .devices
            .iter()
            .filter(|d| !d.path.exists())
            .map(|d| d.id)
            .collect();
        for id in gone {
            self.remove(id, out);
        }
    }

    fn open_device(&mut self, path: &Path, out: &mut Vec<ReaderEvent>) {
        if self.devices.iter().any(|d| d.path == path) {
            return;
        }
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(_) => {
                self.stats.open_failures += 1;
                return;
            }
        };
        let Ok(name) = sys::name(&file) else {
            self.stats.open_failures += 1;
            return;
        };
        if !self.config.names.is_empty() && !self.config.names.contains(&name) {
            self.stats.skipped += 1;
            return;
        }
        let capabilities = match sys::capabilities(&file) {
            Ok(caps) if caps.keyboard || caps.touch.is_some() || caps.pointer => caps,
            Ok(_) => {
                self.stats.skipped += 1;
                return;
            }
            Err(_) => {
                self.stats.open_failures += 1;
                return;
            }
        };
        let grabbed = !self.config.grab || sys::grab(&file, true).is_ok();
        if self.devices.len() >= MAX_DEVICES || sys::use_monotonic_clock(&file).is_err() || !grabbed
        {
            self.stats.open_failures += 1;
            return;
        }
        let id = DeviceId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        let mapper = Mapper::new(id.0, capabilities.clone(), self.config.display);
        self.devices.push(OpenDevice {
            id,
            path: path.to_path_buf(),
            name: name.clone(),
            file,
            mapper,
        });
        self.stats.devices_added += 1;
        out.push(ReaderEvent::DeviceAdded {
            id,
            name,
            path: path.to_path_buf(),
            capabilities,
        });
    }

    fn remove(&mut self, id: DeviceId, out: &mut Vec<ReaderEvent>) {
        let Some(at) = self.devices.iter().position(|d| d.id == id) else {
            return;
        };
        let mut device = self.devices.remove(at);
        let mut outputs = Vec::new();
        device.mapper.cancel(now_nanos(), &mut outputs);
        out.extend(outputs.into_iter().map(ReaderEvent::from));
        self.closed = add_stats(self.closed, device.mapper.stats());
        self.stats.devices_removed += 1;
        out.push(ReaderEvent::DeviceRemoved {
            id,
            name: device.name,
        });
    }

    /// Wait up to `timeout` for input or for devices coming and going, then read everything
    /// that is there (bounded per device) and return the events, in order per device.
    pub fn read(&mut self, timeout: Duration) -> io::Result<Vec<ReaderEvent>> {
        let mut out = std::mem::take(&mut self.pending);
        if out.is_empty() {
            self.wait(timeout)?;
        }
        self.read_inotify(&mut out);
        let ids: Vec<DeviceId> = self.devices.iter().map(|d| d.id).collect();
        for id in ids {
            self.read_device(id, &mut out);
        }
        Ok(out)
    }

    fn wait(&self, timeout: Duration) -> io::Result<()> {
        let mut fds: Vec<PollFd<'_>> = self
            .devices
            .iter()
            .map(|d| PollFd::new(d.file.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(inotify) = &self.inotify {
            fds.push(PollFd::new(inotify.as_fd(), PollFlags::POLLIN));
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn read_inotify(&mut self, out: &mut Vec<ReaderEvent>) {
        let Some(inotify) = &self.inotify else {
            return self.rescan(out);
        };
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let mut overflow = false;
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    overflow = true;
                }
                let Some(name) = event.name.filter(|n| is_event_node(n)) else {
                    continue;
                };
                let path = self.config.dir.join(name);
                if event.mask.contains(AddWatchFlags::IN_DELETE) {
                    deleted.push(path);
                } else {
                    created.push(path);
                }
            }
        }
        for path in deleted {
            let ids: Vec<DeviceId> = self
                .devices
                .iter()
                .filter(|d| d.path == path)
                .map(|d| d.id)
                .collect();
            for id in ids {
                self.remove(id, out);
            }
        }
        for path in created {
            self.open_device(&path, out);
        }
        if overflow {
            self.stats.inotify_overflows += 1;
            self.rescan(out);
        }
    }

    fn read_device(&mut self, id: DeviceId, out: &mut Vec<ReaderEvent>) {
        let mut buf = [0u8; READ_BATCH * EVENT_SIZE];
        for _ in 0..MAX_READS_PER_DEVICE {
            let Some(device) = self.devices.iter_mut().find(|d| d.id == id) else {
                return;
            };
            let n = match device.file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.raw_os_error() != Some(libc::ENODEV) {
                        self.stats.read_errors += 1;
                    }
                    return self.remove(id, out);
                }
            };
            if !self.process(id, &buf[..n.min(buf.len())], out) {
                self.stats.resync_failures += 1;
                return self.remove(id, out);
            }
        }
    }

    /// Feed `bytes` to device `id`'s mapper; false when a resync could not read the device.
    fn process(&mut self, id: DeviceId, bytes: &[u8], out: &mut Vec<ReaderEvent>) -> bool {
        let Some(device) = self.devices.iter_mut().find(|d| d.id == id) else {
            return true;
        };
        let (events, rest) = decode_events(bytes);
        if rest != 0 {
            self.stats.partial_reads += 1;
        }
        let mut outputs = Vec::new();
        for event in events {
            if let Step::Resync { time } = device.mapper.process(event, &mut outputs) {
                let Ok(snapshot) = sys::snapshot(&device.file, device.mapper.capabilities()) else {
                    out.extend(outputs.into_iter().map(ReaderEvent::from));
                    return false;
                };
                device.mapper.resync(&snapshot, time, &mut outputs);
            }
        }
        out.extend(outputs.into_iter().map(ReaderEvent::from));
        true
    }
}

impl From<Output> for ReaderEvent {
    fn from(output: Output) -> ReaderEvent {
        match output {
            Output::Key(event) => ReaderEvent::Key(event),
            Output::Motion(event) => ReaderEvent::Motion(event),
        }
    }
}

/// Counters of [`feed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Key events the dispatcher took.
    pub keys: u64,
    /// Motion events the dispatcher took.
    pub motions: u64,
    /// Events the dispatcher refused (no focused window, no window under the pointer, ...).
    pub refused: u64,
}

/// Hand the key and motion events of `events` to `dispatcher` (device events are skipped);
/// what it refuses is counted in `stats`, never silently lost.
pub fn feed(dispatcher: &mut Dispatcher, events: &[ReaderEvent], stats: &mut FeedStats) {
    for event in events {
        let result = match event {
            ReaderEvent::Key(key) => dispatcher.inject_key(key).map(|_| &mut stats.keys),
            ReaderEvent::Motion(motion) => {
                dispatcher.inject_motion(motion).map(|_| &mut stats.motions)
            }
            _ => continue,
        };
        match result {
            Ok(count) => *count += 1,
            Err(_) => stats.refused += 1,
        }
    }
}

/// Fuzz entry: build a mapper from the first bytes (capabilities, axis ranges), feed the
/// rest as `struct input_event` records, and answer every resync with a snapshot made of the
/// records' own values. Must never panic.
pub fn fuzz_mapper(data: &[u8]) {
    use mapper::{AbsRange, KeyBits, Snapshot, TouchAxes};
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let range = |a: u8, b: u8| AbsRange {
        min: i32::from(a as i8) * 1000,
        max: i32::from(b as i8) * 1000,
    };
    let caps = Capabilities {
        keyboard: head[0] & 1 != 0,
        pointer: head[0] & 2 != 0,
        touch: (head[0] & 4 != 0).then(|| TouchAxes {
            slots: usize::from(head[1]),
            x: range(head[2], head[3]),
            y: range(head[4], head[5]),
            pressure: (head[6] & 1 != 0).then(|| range(head[6], head[7])),
            major: (head[6] & 2 != 0).then(|| range(head[7], head[6])),
        }),
    };
    let display = Display {
        width: f32::from(head[7]) * 8.0,
        height: f32::from(head[6]) * 8.0,
    };
    let mut mapper = Mapper::new(1, caps, display);
    let mut out = Vec::new();
    let (events, _) = decode_events(rest);
    for event in events {
        if let Step::Resync { time } = mapper.process(event, &mut out) {
            let values = vec![event.value; usize::from(head[1] % 20)];
            let snapshot = Snapshot {
                keys: KeyBits::from_bytes(bytemuck::bytes_of(&event)),
                slot: event.value,
                tracking_id: values.clone(),
                x: values.clone(),
                y: values.clone(),
                pressure: values.clone(),
                major: values,
            };
            mapper.resync(&snapshot, time, &mut out);
        }
        if out.len() > 4096 {
            out.clear();
        }
    }
    mapper.cancel(0, &mut out);
    for output in &out {
        if let Output::Motion(motion) = output {
            assert!(
                motion.validate().is_ok(),
                "the mapper made an invalid motion"
            );
        }
    }
}
