//! The IIO sensor HAL on a fake sysfs tree (a temp dir laid out as `/sys/bus/iio/devices`
//! and `/dev`): discovery, scan element decoding, the capture's sysfs writes, recorded
//! buffers converted to Android units with their time stamps, devices coming and going.
//! On a machine with real IIO sensors, one more test captures from each for a moment.
//!
//! In the kernel run (where `/dev/uhid` and the HID sensor modules exist), an HID sensor hub
//! accelerometer made through `/dev/uhid` streams through the HAL, and end to end through the
//! sensor service: a host process (service manager), a service process (the uhid device, a
//! [`SensorService`] over the IIO HAL, registered through binder) and a client process that
//! finds the service, enables the accelerometer and reads its events from its BitTube.

mod common;
use common::host::{expect_text, recv_text, send_text, BinderHost};
use common::{child_role, control_in_child, spawn_child, wait_success, LONG};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bittube::sensor_demo::event::{TYPE_ACCELEROMETER, TYPE_GYROSCOPE, TYPE_MAGNETIC_FIELD};
use bittube::sensor_demo::iio::scan::{ScanLayout, ScanType};

use bittube::binder_ipc::runtime::ProcessState;
use bittube::binder_ipc::service_manager::ServiceManagerClient;
use bittube::bittube::TubeError;
use bittube::sensor_demo::binder::{sensor_server, SensorManager, SERVICE_NAME};
use bittube::sensor_demo::iio::*;
use bittube::sensor_demo::sensors::SensorHal;
use bittube::sensor_demo::MAX_RECEIVE_EVENTS;
use bittube::sensor_demo::{SensorEvent, SensorService, ServiceConfig};

/// A temp dir removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(test: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("bittube-iio-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sys")).unwrap();
        fs::create_dir_all(dir.join("dev")).unwrap();
        Tree(dir)
    }

    fn paths(&self) -> IioPaths {
        IioPaths {
            sysfs: self.0.join("sys"),
            dev: self.0.join("dev"),
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join("sys").join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.0.join("sys").join(rel))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A device with scan elements `(name, index, type)` and extra attributes.
    fn device(&self, n: u32, name: &str, channels: &[(&str, u32, &str)], attrs: &[(&str, &str)]) {
        let d = format!("iio:device{n}");
        self.write(&format!("{d}/name"), &format!("{name}\n"));
        for (chan, index, kind) in channels {
            self.write(&format!("{d}/scan_elements/in_{chan}_en"), "0\n");
            self.write(
                &format!("{d}/scan_elements/in_{chan}_index"),
                &format!("{index}\n"),
            );
            self.write(
                &format!("{d}/scan_elements/in_{chan}_type"),
                &format!("{kind}\n"),
            );
        }
        for (attr, value) in attrs {
            self.write(&format!("{d}/{attr}"), value);
        }
        self.write(&format!("{d}/buffer/enable"), "0\n");
        self.write(&format!("{d}/buffer/length"), "2\n");
    }

    /// Recorded scans as the character device would return them.
    fn record(&self, n: u32, bytes: &[u8]) {
        fs::write(self.0.join("dev").join(format!("iio:device{n}")), bytes).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An accelerometer like an HID sensor hub's: s16 axes, a shared scale, a timestamp channel,
/// its own trigger, a per-type sampling frequency.
fn accel(tree: &Tree, n: u32) {
    tree.device(
        n,
        "accel_3d",
        &[
            ("accel_x", 0, "le:s16/16>>0"),
            ("accel_y", 1, "le:s16/16>>0"),
            ("accel_z", 2, "le:s16/16>>0"),
            ("timestamp", 3, "le:s64/64>>0"),
        ],
        &[
            ("in_accel_scale", "0.009806650\n"),
            ("in_accel_offset", "0\n"),
            ("in_accel_sampling_frequency", "10.000000\n"),
            ("current_timestamp_clock", "realtime\n"),
            ("trigger/current_trigger", "\n"),
        ],
    );
    tree.write(&format!("trigger{n}/name"), &format!("accel_3d-dev{n}\n"));
}

/// A combined gyroscope + magnetometer with big-endian 12-bit samples and no timestamp.
fn imu(tree: &Tree, n: u32) {
    tree.device(
        n,
        "imu",
        &[
            ("anglvel_x", 0, "be:s12/16>>4"),
            ("anglvel_y", 1, "be:s12/16>>4"),
            ("anglvel_z", 2, "be:s12/16>>4"),
            ("magn_x", 3, "le:s16/16>>0"),
            ("magn_y", 4, "le:s16/16>>0"),
            ("magn_z", 5, "le:s16/16>>0"),
            ("temp", 6, "le:s16/16>>0"),
        ],
        &[
            ("in_anglvel_scale", "0.001\n"),
            ("in_magn_x_scale", "0.01\n"),
            ("in_magn_offset", "-10\n"),
            ("sampling_frequency", "100\n"),
        ],
    );
}

#[test]
fn discovery_finds_sensors_with_their_scan_elements_scale_and_offset() {
    let tree = Tree::new("discovery");
    accel(&tree, 0);
    imu(&tree, 3);
    // Neither a sensor this HAL knows nor a sane one: a light sensor, and a broken type.
    tree.device(1, "als", &[("illuminance", 0, "le:u16/16>>0")], &[]);
    tree.device(
        2,
        "broken",
        &[
            ("accel_x", 0, "le:s99/16>>0"),
            ("accel_y", 1, "le:s16/16"),
            ("accel_z", 2, "?"),
        ],
        &[],
    );
    tree.write("iio_sysfs_trigger/add_trigger", "");

    let devices = discover(&tree.paths());
    let names: Vec<_> = devices
        .iter()
        .map(|d| (d.number, d.name.as_str()))
        .collect();
    assert_eq!(names, [(0, "accel_3d"), (3, "imu")]);
    let a = &devices[0];
    assert_eq!(a.channels.len(), 4);
    assert_eq!(a.sensors.len(), 1);
    assert_eq!(a.sensors[0].kind, IioKind::Accelerometer);
    assert!((a.sensors[0].scale - 0.00980665).abs() < 1e-12);
    let imu = &devices[1];
    let kinds: Vec<_> = imu
        .sensors
        .iter()
        .map(|s| (s.kind, s.scale, s.offset))
        .collect();
    assert_eq!(
        kinds,
        [
            (IioKind::Gyroscope, 0.001, 0.0),
            (IioKind::Magnetometer, 0.01, -10.0)
        ]
    );
    assert_eq!(
        imu.channels
            .iter()
            .find(|c| c.name == "anglvel_y")
            .unwrap()
            .scan,
        ScanType::parse("be:s12/16>>4").unwrap()
    );

    let hal = IioHal::open(tree.paths());
    let list: Vec<_> = hal
        .sensor_list()
        .iter()
        .map(|s| (s.handle, s.kind))
        .collect();
    assert_eq!(
        list,
        [
            (100, TYPE_ACCELEROMETER),
            (101, TYPE_GYROSCOPE),
            (102, TYPE_MAGNETIC_FIELD)
        ]
    );
}

fn accel_scan(x: i16, y: i16, z: i16, t: i64) -> Vec<u8> {
    let mut scan = Vec::new();
    for v in [x, y, z, 0] {
        scan.extend_from_slice(&v.to_le_bytes());
    }
    scan.extend_from_slice(&t.to_le_bytes());
    scan
}

#[test]
fn a_capture_sets_up_the_device_and_converts_recorded_scans_to_android_units() {
    let tree = Tree::new("capture");
    accel(&tree, 0);
    let mut recorded = Vec::new();
    for i in 0..10i64 {
        recorded.extend(accel_scan(100, -200, 1000, 5_000_000_000 + i * 10_000_000));
    }
    recorded.extend_from_slice(&[1, 2, 3]); // a partial scan at the end
    tree.record(0, &recorded);

    let hal = IioHal::open(tree.paths());
    let config = CaptureConfig {
        rate_hz: 100.0,
        buffer_length: 256,
    };
    let mut capture = hal.capture(100, config).expect("capture");
    assert_eq!(tree.read("iio:device0/buffer/enable"), "1");
    assert_eq!(tree.read("iio:device0/buffer/length"), "256");
    for chan in ["accel_x", "accel_y", "accel_z", "timestamp"] {
        assert_eq!(
            tree.read(&format!("iio:device0/scan_elements/in_{chan}_en")),
            "1",
            "{chan}"
        );
    }
    assert_eq!(tree.read("iio:device0/in_accel_sampling_frequency"), "100");
    assert_eq!(
        tree.read("iio:device0/current_timestamp_clock"),
        "monotonic"
    );
    assert_eq!(
        tree.read("iio:device0/trigger/current_trigger"),
        "accel_3d-dev0"
    );
    assert_eq!(capture.layout().size, 16);

    let events = capture.read(Duration::from_secs(1)).expect("read");
    assert_eq!(events.len(), 10);
    for (i, e) in events.iter().enumerate() {
        assert_eq!((e.sensor, e.kind), (100, TYPE_ACCELEROMETER));
        assert_eq!(
            e.timestamp,
            5_000_000_000 + i as i64 * 10_000_000,
            "the IIO timestamp channel"
        );
        let expect = [0.980665f32, -1.96133, 9.80665];
        for (got, want) in e.data[..3].iter().zip(expect) {
            assert!((got - want).abs() < 1e-5, "{:?}", &e.data[..3]);
        }
    }
    assert!(events.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    assert_eq!(capture.stats().partial_reads, 1);
    assert_eq!(capture.stats().refused_settings, 0);

    // Unplugged: the device directory goes away and reads end with Gone.
    fs::remove_dir_all(tree.0.join("sys/iio:device0")).unwrap();
    let end = capture.read(Duration::from_millis(10));
    assert!(matches!(end, Err(IioError::Gone(_))), "{end:?}");
}

#[test]
fn scans_without_timestamps_in_gauss_and_shifted_big_endian_are_converted() {
    let tree = Tree::new("imu");
    imu(&tree, 3);
    let mut scan = Vec::new();
    for v in [-3i16, 0, 2047] {
        scan.extend_from_slice(&((v as u16) << 4).to_be_bytes());
    }
    for v in [10i16, 20, -30] {
        scan.extend_from_slice(&v.to_le_bytes());
    }
    tree.record(3, &scan);
    let hal = IioHal::open(tree.paths());
    let before = bittube::sensor_demo::clock_now_ns();
    let mut capture = hal.capture(101, CaptureConfig::default()).expect("capture");
    assert_eq!(
        tree.read("iio:device3/scan_elements/in_temp_en"),
        "0",
        "unwanted channels stay off"
    );
    assert_eq!(tree.read("iio:device3/sampling_frequency"), "50");
    assert_eq!(capture.layout().size, 12);
    let events = capture.read(Duration::from_secs(1)).unwrap();
    assert_eq!(events.len(), 2, "gyroscope and magnetometer of one scan");
    let gyro = events.iter().find(|e| e.kind == TYPE_GYROSCOPE).unwrap();
    assert_eq!(&gyro.data[..3], &[-0.003f32, 0.0, 2.047]);
    let magn = events
        .iter()
        .find(|e| e.kind == TYPE_MAGNETIC_FIELD)
        .unwrap();
    // (raw - 10) × 0.01 Gauss × 100 µT/Gauss
    assert_eq!(&magn.data[..3], &[0.0f32, 10.0, -40.0]);
    assert!(
        magn.timestamp >= before,
        "no timestamp channel: stamped at the read"
    );
}

#[test]
fn a_stream_sends_captured_events_to_a_channel_and_ends_when_the_device_goes() {
    let tree = Tree::new("stream");
    accel(&tree, 0);
    let recorded: Vec<u8> = (0..5i64)
        .flat_map(|i| accel_scan(1, 2, 3, 100 + i))
        .collect();
    tree.record(0, &recorded);
    let hal = IioHal::open(tree.paths());
    let (tx, rx) = crossbeam_channel::unbounded();
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = wakes.clone();
    let wake = std::sync::Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let stream = IioStream::start(&hal, 100, Duration::from_millis(20), tx, wake).unwrap();
    assert_eq!(tree.read("iio:device0/in_accel_sampling_frequency"), "50");
    let events: Vec<_> = (0..5)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    let stamps: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
    assert_eq!(stamps, [100, 101, 102, 103, 104]);
    assert!(wakes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    fs::remove_dir_all(tree.0.join("sys/iio:device0")).unwrap();
    // The thread sees the device gone; stop() reports it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stream_finished(&rx) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not end"
        );
    }
    assert!(matches!(stream.stop(), Err(IioError::Gone(_))));
}

#[test]
fn the_sensor_service_serves_iio_sensors_through_a_connection() {
    let tree = Tree::new("service");
    accel(&tree, 0);
    let recorded: Vec<u8> = (0..8i64)
        .flat_map(|i| accel_scan(10 * i as i16, -200, 1000, 7_000_000_000 + i * 10_000_000))
        .collect();
    tree.record(0, &recorded);
    let hal = SensorHal::iio_or_simulated(IioHal::open(tree.paths()));
    let svc = SensorService::with_hal(ServiceConfig::default(), hal).expect("service");
    let list = svc.sensor_list();
    assert_eq!(
        list.iter().map(|s| (s.handle, s.kind)).collect::<Vec<_>>(),
        [(FIRST_HANDLE, TYPE_ACCELEROMETER)],
        "the IIO sensors, not the simulated ones"
    );
    let (conn, tube) = svc.create_connection().expect("connection");
    let mut queue = bittube::sensor_demo::SensorEventQueue::new(tube);
    svc.enable(
        conn,
        FIRST_HANDLE,
        Duration::from_millis(10),
        Duration::ZERO,
    )
    .expect("enable");
    assert_eq!(
        tree.read("iio:device0/buffer/enable"),
        "1",
        "capture started"
    );
    assert_eq!(tree.read("iio:device0/in_accel_sampling_frequency"), "100");
    let mut events = Vec::new();
    let mut buf = vec![SensorEvent::new(0, 0, 0, &[]); MAX_RECEIVE_EVENTS];
    let deadline = std::time::Instant::now() + LONG;
    while events.len() < 8 {
        assert!(std::time::Instant::now() < deadline, "{events:?}");
        match queue.read_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => events.extend_from_slice(&buf[..n]),
            Err(TubeError::WouldBlock) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!((e.sensor, e.kind), (FIRST_HANDLE, TYPE_ACCELEROMETER));
        assert_eq!(e.timestamp, 7_000_000_000 + i as i64 * 10_000_000);
        let want = [10.0 * i as f32 * 0.00980665, -1.96133, 9.80665];
        for (got, want) in e.data[..3].iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{:?}", &e.data[..3]);
        }
    }
    // A new period restarts the capture at the new sampling frequency.
    svc.set_rate(conn, FIRST_HANDLE, Duration::from_millis(20))
        .expect("set rate");
    assert_eq!(tree.read("iio:device0/in_accel_sampling_frequency"), "50");
    svc.disable(conn, FIRST_HANDLE).expect("disable");
    assert_eq!(
        tree.read("iio:device0/buffer/enable"),
        "0",
        "capture stopped"
    );
    let stats = svc.stats().expect("stats");
    assert_eq!(stats.hal_start_failures, 0, "{stats:?}");
    assert!(stats.hal_events >= 8, "{stats:?}");

    // Without IIO sensors the simulated HAL stays.
    let empty = Tree::new("service-empty");
    let hal = SensorHal::iio_or_simulated(IioHal::open(empty.paths()));
    assert!(matches!(hal, SensorHal::Simulated));
    assert_eq!(hal.sensor_list(), bittube::sensor_demo::sensor_list());
}

/// True once the stream's thread ended (its sender is dropped).
fn stream_finished(rx: &crossbeam_channel::Receiver<bittube::sensor_demo::SensorEvent>) -> bool {
    matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    )
}

#[test]
fn rescan_reports_devices_that_appear_and_disappear() {
    let tree = Tree::new("rescan");
    let mut hal = IioHal::open(tree.paths());
    assert!(hal.sensor_list().is_empty());
    accel(&tree, 4);
    let changes = hal.rescan();
    assert!(
        matches!(&changes[..], [IioChange::Added(d)] if d.number == 4),
        "{changes:?}"
    );
    assert_eq!(hal.sensor_list().len(), 1);
    fs::remove_dir_all(tree.0.join("sys/iio:device4")).unwrap();
    let changes = hal.rescan();
    assert_eq!(
        changes,
        [IioChange::Removed {
            number: 4,
            name: "accel_3d".into()
        }]
    );
    assert!(hal.sensor_list().is_empty());
    accel(&tree, 4);
    hal.rescan();
    assert_eq!(hal.sensor_list()[0].handle, 101, "handles are not reused");
}

#[test]
fn hostile_scan_types_and_buffers_never_panic() {
    use proptest::prelude::*;
    // Few cases and a fixed seed: this also runs in the kernel run's emulated guest, where
    // the OS random source may block for minutes until the guest kernel has entropy.
    let mut runner = deterministic_runner();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
            fuzz_scan(&bytes);
            Ok(())
        })
        .unwrap();
    let types = "le:s64/64>>0 be:u1/8>>7 le:s16/16X16>>0 le:s32/32>>0 be:s64/64>>0";
    let mut data = types.as_bytes().to_vec();
    data.push(b'\n');
    data.extend(std::iter::repeat_n(0xff, 1000));
    fuzz_scan(&data);
    assert!(ScanLayout::new(vec![
        (
            "a".into(),
            0,
            ScanType::parse("le:s16/16X16").unwrap()
        );
        200
    ])
    .is_none());
}

/// On a machine (or guest) with real IIO sensors: capture each for a moment, check units are
/// finite and time stamps increase.
#[test]
fn real_iio_sensors_stream_samples_with_increasing_timestamps() {
    let hal = IioHal::open(IioPaths::default());
    let list = hal.sensor_list();
    if list.is_empty() {
        let msg = "\nskipped: needs an IIO accelerometer, gyroscope or magnetometer (real_iio_sensors_stream_samples_with_increasing_timestamps)\n";
        let _ = std::io::stderr().write_all(msg.as_bytes());
        return;
    }
    let _ = std::io::stderr()
        .write_all(b"\ndevices: ran real_iio_sensors_stream_samples_with_increasing_timestamps\n");
    for sensor in list {
        let mut capture = hal
            .capture(sensor.handle, CaptureConfig::default())
            .expect("capture");
        let mut events = Vec::new();
        for _ in 0..50 {
            events.extend(capture.read(Duration::from_millis(100)).expect("read"));
            if events.len() >= 5 {
                break;
            }
        }
        assert!(!events.is_empty(), "{}: no samples", sensor.name);
        assert!(events
            .iter()
            .all(|e| e.data[..3].iter().all(|v| v.is_finite())));
        assert!(
            events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "{}",
            sensor.name
        );
    }
    let _ = Path::new("/");
}

// ---------------------------------------------------------------------------------------------
// A real IIO device in the kernel run: an HID sensor hub accelerometer made through /dev/uhid
// (uhid, hid-sensor-hub, hid-sensor-accel-3d, industrialio, kfifo_buf, hid-sensor-trigger).

const UHID_PATH: &str = "/dev/uhid";
/// `sizeof(struct uhid_event)`: the type and the largest member (`uhid_create2_req`).
const UHID_EVENT_SIZE: usize = 4 + 128 + 64 + 64 + 2 + 2 + 4 * 4 + 4096;
const UHID_GET_REPORT: u32 = 9;
const UHID_GET_REPORT_REPLY: u32 = 10;
const UHID_CREATE2: u32 = 11;
const UHID_INPUT2: u32 = 12;
const UHID_SET_REPORT: u32 = 13;
const UHID_SET_REPORT_REPLY: u32 = 14;
const BUS_VIRTUAL: u16 = 0x06;

/// An Accelerometer 3D collection (HID sensor usage page 0x20, usage 0x73): feature report 1
/// with report interval (0x030E, 32 bits), power state (0x0319) and reporting state (0x0316);
/// input report 2 with acceleration X, Y, Z (0x0453-0x0455) as three 16-bit signed fields,
/// unit exponent -2.
fn accel_descriptor() -> Vec<u8> {
    let mut d = vec![0x05, 0x20, 0x09, 0x73, 0xA1, 0x00];
    d.extend([0x85, 0x01]);
    d.extend([0x0A, 0x0E, 0x03, 0x15, 0x00, 0x27, 0xFF, 0xFF, 0xFF, 0x7F]);
    d.extend([0x75, 0x20, 0x95, 0x01, 0x55, 0x00, 0xB1, 0x02]);
    for usage in [0x19u8, 0x16] {
        d.extend([
            0x0A, usage, 0x03, 0x15, 0x00, 0x25, 0x05, 0x75, 0x08, 0x95, 0x01, 0xB1, 0x02,
        ]);
    }
    d.extend([0x85, 0x02]);
    // One field per axis: the hub looks an axis up by its field's first usage.
    d.extend([0x0A, 0x53, 0x04]);
    d.extend([
        0x16, 0x01, 0x80, 0x26, 0xFF, 0x7F, 0x75, 0x10, 0x95, 0x01, 0x55, 0x0E, 0x81, 0x02,
    ]);
    d.extend([0x0A, 0x54, 0x04, 0x81, 0x02, 0x0A, 0x55, 0x04, 0x81, 0x02]);
    d.push(0xC0);
    d
}

fn uhid_event(kind: u32) -> Vec<u8> {
    let mut e = vec![0u8; UHID_EVENT_SIZE];
    e[..4].copy_from_slice(&kind.to_ne_bytes());
    e
}

/// Answers the hub's feature report requests (GET with interval 10 ms, power and reporting
/// state 1; SET accepted) until the device is closed; counts them.
fn uhid_responder(
    mut uhid: fs::File,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u32, u32) {
    use std::io::Read;
    let (mut gets, mut sets) = (0, 0);
    let mut buf = vec![0u8; UHID_EVENT_SIZE];
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let n = match uhid.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => break,
        };
        if n < 12 {
            continue;
        }
        let kind = u32::from_ne_bytes(buf[..4].try_into().unwrap());
        let id = &buf[4..8];
        let reply = match kind {
            UHID_GET_REPORT => {
                gets += 1;
                let mut r = uhid_event(UHID_GET_REPORT_REPLY);
                r[4..8].copy_from_slice(id);
                let data = [buf[8], 10, 0, 0, 0, 1, 1]; // report id, interval, power, reporting
                r[10..12].copy_from_slice(&(data.len() as u16).to_ne_bytes());
                r[12..12 + data.len()].copy_from_slice(&data);
                r
            }
            UHID_SET_REPORT => {
                sets += 1;
                let mut r = uhid_event(UHID_SET_REPORT_REPLY);
                r[4..8].copy_from_slice(id);
                r
            }
            _ => continue, // UHID_START, UHID_OPEN, UHID_CLOSE, UHID_OUTPUT
        };
        if uhid.write_all(&reply).is_err() {
            break;
        }
    }
    (gets, sets)
}

/// The virtual accelerometer: the `/dev/uhid` device and the thread answering its feature
/// report requests. Dropping the device file destroys the device.
struct UhidAccel {
    uhid: fs::File,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    responder: Option<std::thread::JoinHandle<(u32, u32)>>,
}

/// `raw × 9.80665 × 10^-2`: the hub's scale for this descriptor (no HID unit: g; exponent -2).
const HUB_SCALE: f32 = 0.0980665;

impl UhidAccel {
    fn create() -> UhidAccel {
        use std::os::unix::fs::OpenOptionsExt;
        let uhid = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(UHID_PATH)
            .expect("open /dev/uhid");
        let rd = accel_descriptor();
        let mut create = uhid_event(UHID_CREATE2);
        create[4..4 + 17].copy_from_slice(b"bittube-accel-hub");
        create[260..262].copy_from_slice(&(rd.len() as u16).to_ne_bytes());
        create[262..264].copy_from_slice(&BUS_VIRTUAL.to_ne_bytes());
        create[264..268].copy_from_slice(&0x1234u32.to_ne_bytes());
        create[268..272].copy_from_slice(&0x5678u32.to_ne_bytes());
        create[280..280 + rd.len()].copy_from_slice(&rd);
        (&uhid).write_all(&create).expect("UHID_CREATE2");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let responder = {
            let uhid = uhid.try_clone().unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || uhid_responder(uhid, stop))
        };
        UhidAccel {
            uhid,
            stop,
            responder: Some(responder),
        }
    }

    /// One input report: acceleration X, Y, Z raw.
    fn report(&self, raw: [i16; 3]) {
        let mut report = uhid_event(UHID_INPUT2);
        let data: Vec<u8> = [2u8]
            .into_iter()
            .chain(raw.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        report[4..6].copy_from_slice(&(data.len() as u16).to_ne_bytes());
        report[6..6 + data.len()].copy_from_slice(&data);
        (&self.uhid).write_all(&report).expect("UHID_INPUT2");
    }

    /// Stop answering; the feature GETs and SETs answered.
    fn stop_responder(&mut self) -> (u32, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.responder
            .take()
            .map_or((0, 0), |r| r.join().expect("responder"))
    }
}

/// Wait until the hub's accelerometer appears as an IIO device.
fn wait_for_iio_accel() -> IioHal {
    let mut hal = IioHal::open(IioPaths::default());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hal.sensor_list().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no IIO accelerometer appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
        hal.rescan();
    }
    hal
}

/// Skips (with the message the kernel run counts) without `/dev/uhid`; true when it may run.
fn have_uhid(test: &str) -> bool {
    if !Path::new(UHID_PATH).exists() {
        let msg = format!("\nskipped: needs {UHID_PATH} and the HID sensor modules ({test})\n");
        let _ = std::io::stderr().write_all(msg.as_bytes());
        return false;
    }
    let _ = std::io::stderr().write_all(format!("\ndevices: ran {test}\n").as_bytes());
    true
}

/// The events' time stamps increase strictly and are CLOCK_MONOTONIC times of the last minute.
fn check_timestamps(events: &[SensorEvent]) {
    assert!(
        events.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
        "timestamps increase: {:?}",
        events.iter().map(|e| e.timestamp).collect::<Vec<_>>()
    );
    let now = bittube::sensor_demo::clock_now_ns();
    assert!(
        events
            .iter()
            .all(|e| e.timestamp <= now && now - e.timestamp < 60_000_000_000),
        "CLOCK_MONOTONIC"
    );
}

/// The values of raw `raw` in m/s², within float tolerance.
fn check_units(e: &SensorEvent, raw: [i16; 3]) {
    for (got, raw) in e.data[..3].iter().zip(raw) {
        let want = f32::from(raw) * HUB_SCALE;
        assert!((got - want).abs() < 1e-3, "{:?} (m/s²)", &e.data[..3]);
    }
}

#[test]
fn a_hid_sensor_hub_accelerometer_streams_through_the_iio_hal() {
    const TEST: &str = "a_hid_sensor_hub_accelerometer_streams_through_the_iio_hal";
    if !have_uhid(TEST) {
        return;
    }
    let mut accel = UhidAccel::create();
    let mut hal = wait_for_iio_accel();
    let sensor = hal.sensor_list()[0].clone();
    let device = hal.devices()[0].clone();
    let _ =
        std::io::stderr().write_all(format!("iio: found {:?} {:?}\n", sensor, device).as_bytes());
    assert_eq!(sensor.kind, TYPE_ACCELEROMETER);
    let config = CaptureConfig {
        rate_hz: 100.0,
        buffer_length: 64,
    };
    let mut capture = hal.capture(sensor.handle, config).expect("capture");
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while events.len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} samples: {:?}",
            events.len(),
            capture.stats()
        );
        accel.report([100, -200, 1000]);
        events.extend(capture.read(Duration::from_millis(10)).expect("read"));
    }
    drop(capture);
    let (gets, sets) = accel.stop_responder();
    let summary = format!(
        "iio: {} samples, first {:?}, feature GETs {gets} SETs {sets}\n",
        events.len(),
        events[0]
    );
    let _ = std::io::stderr().write_all(summary.as_bytes());
    for e in &events {
        check_units(e, [100, -200, 1000]);
    }
    check_timestamps(&events);
    drop(accel); // destroys the device
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hal
        .rescan()
        .iter()
        .any(|c| matches!(c, IioChange::Removed { .. }))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the IIO device did not go away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: uhid accelerometer → IIO HAL → SensorService (binder) → client process's tube

/// Events the client waits for.
const E2E_EVENTS: usize = 20;

#[test]
fn a_hid_sensor_hub_accelerometer_streams_through_the_sensor_service_to_a_client() {
    const TEST: &str =
        "a_hid_sensor_hub_accelerometer_streams_through_the_sensor_service_to_a_client";
    match child_role().as_deref() {
        Some("host") => return e2e_host(TEST),
        Some("service") => return e2e_service(),
        Some("client") => return e2e_client(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !have_uhid(TEST) {
        return;
    }
    let (child, _control) = spawn_child(TEST, "host");
    wait_success(child);
}

/// The host: the service manager, a service process and a client process (see [`BinderHost`]).
fn e2e_host(test: &str) {
    let host = BinderHost::start();
    let (service, service_control) = host.spawn(test, "service");
    assert_eq!(expect_text(&service_control, "registered"), "registered");
    let (client, client_control) = host.spawn(test, "client");
    let report = expect_text(&client_control, "the client's report");
    send_text(&service_control, "stop");
    let done = expect_text(&service_control, "done");
    let binder = host.binder_name();
    let line = format!("iio e2e over the {binder}: client: {report}; service: {done}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert!(report.starts_with("ok"), "client: {report:?}");
    wait_success(client);
    wait_success(service);
    host.shutdown();
}

/// The raw values of report `k` (X varies, so that each event is checked against its own).
fn raw_of(k: u32) -> [i16; 3] {
    [100 + (k % 100) as i16, -200, 1000]
}

/// The uhid accelerometer, a sensor service over the IIO HAL registered through binder; then
/// an input report every few ms until the host says stop.
fn e2e_service() {
    let control = control_in_child();
    let ps = ProcessState::open().expect("binder");
    ps.start_thread_pool().expect("thread pool");
    let mut accel = UhidAccel::create();
    let hal = wait_for_iio_accel();
    let svc = SensorService::with_hal(ServiceConfig::default(), SensorHal::Iio(hal))
        .expect("sensor service");
    let sm = ServiceManagerClient::new(&ps).expect("service manager");
    sm.add_service(SERVICE_NAME, &sensor_server(svc.clone()))
        .expect("add service");
    send_text(&control, "registered");
    // Paced so that consecutive samples are further apart than the client's period (10 ms,
    // of which the service keeps samples at least 9 ms apart): a pace, not an assertion.
    let mut reports = 0u32;
    let stop = loop {
        accel.report(raw_of(reports));
        reports += 1;
        if let Some(message) = recv_text(&control, Duration::from_millis(12)) {
            break message;
        }
    };
    assert_eq!(stop, "stop");
    let stats = svc.stats().expect("service stats");
    drop(sm);
    drop(svc);
    let (gets, sets) = accel.stop_responder();
    let done = format!(
        "done: {reports} reports, {} HAL events, HAL start failures {} ({:?}), feature GETs {gets} SETs {sets}",
        stats.hal_events, stats.hal_start_failures, stats.last_error
    );
    send_text(&control, &done);
    assert_eq!(stats.hal_start_failures, 0, "{done}");
    ps.shutdown(LONG).expect("service shutdown");
}

/// Finds the service, enables the IIO accelerometer at 100 Hz, reads [`E2E_EVENTS`] events
/// from its tube and checks them: m/s² (raw × scale), strictly increasing CLOCK_MONOTONIC
/// time stamps.
fn e2e_client() {
    let control = control_in_child();
    let ps = ProcessState::open().expect("binder");
    ps.start_thread_pool().expect("thread pool");
    let manager = SensorManager::connect(&ps, LONG).expect("sensor service");
    let list = manager.sensor_list().expect("sensor list");
    let sensor = list
        .iter()
        .find(|s| s.kind == TYPE_ACCELEROMETER)
        .unwrap_or_else(|| panic!("no accelerometer in {list:?}"))
        .clone();
    assert!(sensor.handle >= FIRST_HANDLE, "an IIO sensor: {sensor:?}");
    let (conn, mut queue) = manager.create_event_queue().expect("event connection");
    conn.enable(sensor.handle, Duration::from_millis(10), Duration::ZERO)
        .expect("enable");
    let mut events: Vec<SensorEvent> = Vec::new();
    let mut buf = vec![SensorEvent::new(0, 0, 0, &[]); MAX_RECEIVE_EVENTS];
    let deadline = std::time::Instant::now() + LONG;
    while events.len() < E2E_EVENTS {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} events in {LONG:?}",
            events.len()
        );
        match queue.read_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => events.extend_from_slice(&buf[..n]),
            Err(TubeError::WouldBlock) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    conn.disable(sensor.handle).expect("disable");
    for e in &events {
        assert_eq!((e.sensor, e.kind), (sensor.handle, TYPE_ACCELEROMETER));
        // Which report this was: X = 100 + k % 100 raw.
        let raw_x = (e.data[0] / HUB_SCALE).round();
        assert!((100.0..200.0).contains(&raw_x), "{:?}", &e.data[..3]);
        check_units(e, [raw_x as i16, -200, 1000]);
    }
    check_timestamps(&events);
    let first = &events[0];
    let report = format!(
        "ok: {} events from {:?} (handle {}), first {:?} m/s² at {} ns, last at {} ns",
        events.len(),
        sensor.name,
        sensor.handle,
        &first.data[..3],
        first.timestamp,
        events[events.len() - 1].timestamp
    );
    conn.destroy().expect("destroy");
    send_text(&control, &report);
    ps.shutdown(LONG).expect("client shutdown");
}

/// A proptest runner with 64 cases and a fixed seed (no OS randomness needed).
fn deterministic_runner() -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let config = Config::with_cases(64);
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}
