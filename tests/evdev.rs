//! The evdev reader: its mapper on recorded event streams (everywhere), and on virtual devices
//! made through `/dev/uinput` (in the kernel run; on a host without `/dev/uinput` those tests
//! print `skipped: needs /dev/uinput` and pass).
//!
//! The end-to-end test runs four processes: a host (driver shim and service manager), the
//! input service (dispatcher, binder service, evdev reader, and the virtual devices it
//! drives), and an application that registers its window through binder, consumes, finishes,
//! and reports what it saw.

mod common;
use common::host::{expect_text, recv_text, send_text, BinderHost};
use common::*;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittube::binder_ipc::runtime::{Binder, ProcessState};
use bittube::binder_ipc::service_manager::ServiceManagerClient;
use bittube::input_demo::binder::{InputClient, InputService, WindowTokenService, SERVICE_NAME};
use bittube::input_demo::evdev::codes::*;
use bittube::input_demo::evdev::mapper::*;
use bittube::input_demo::evdev::uinput::{contact, syn, DeviceSpec, VirtualDevice, UINPUT_PATH};
use bittube::input_demo::evdev::{feed, EvdevReader, FeedStats, ReaderConfig, ReaderEvent};
use bittube::input_demo::*;

const SCREEN: Bounds = Bounds {
    left: 0.0,
    top: 0.0,
    right: 1000.0,
    bottom: 1000.0,
};
const DISPLAY: Display = Display {
    width: 1000.0,
    height: 1000.0,
};

// ---------------------------------------------------------------------------------------------
// Describing events as text (what the application reports and the tests compare)

fn action_name(action: u32) -> String {
    let index = action >> ACTION_POINTER_INDEX_SHIFT;
    match action & 0xff {
        MOTION_ACTION_DOWN => "DOWN".into(),
        MOTION_ACTION_UP => "UP".into(),
        MOTION_ACTION_MOVE => "MOVE".into(),
        MOTION_ACTION_CANCEL => "CANCEL".into(),
        MOTION_ACTION_POINTER_DOWN => format!("POINTER_DOWN({index})"),
        MOTION_ACTION_POINTER_UP => format!("POINTER_UP({index})"),
        MOTION_ACTION_HOVER_MOVE => "HOVER_MOVE".into(),
        other => format!("action {other:#x}"),
    }
}

fn describe_motion(m: &MotionEvent) -> String {
    let pointers: Vec<String> = m
        .pointers
        .iter()
        .map(|p| format!("{}:{:.0},{:.0}", p.id, p.x, p.y))
        .collect();
    format!("{} {}", action_name(m.action), pointers.join(" "))
}

fn describe_key(k: &KeyEvent) -> String {
    let action = if k.action == KEY_ACTION_DOWN {
        "down"
    } else {
        "up"
    };
    format!("key {action} {} scan {}", k.key_code, k.scan_code)
}

fn describe(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| match o {
            Output::Key(k) => describe_key(k),
            Output::Motion(m) => describe_motion(m),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The mapper on recorded streams (no device needed)

fn touch_caps() -> Capabilities {
    let r = |min, max| AbsRange { min, max };
    Capabilities {
        keyboard: false,
        pointer: false,
        touch: Some(TouchAxes {
            slots: 4,
            x: r(0, 999),
            y: r(0, 999),
            pressure: Some(r(0, 255)),
            major: None,
        }),
    }
}

fn run(mapper: &mut Mapper, events: &[RawEvent]) -> Vec<Output> {
    let mut out = Vec::new();
    for &e in events {
        assert_eq!(mapper.process(e, &mut out), Step::Continue, "{e:?}");
    }
    out
}

fn frame(parts: &[Vec<RawEvent>]) -> Vec<RawEvent> {
    let mut events: Vec<RawEvent> = parts.concat();
    events.push(syn());
    events
}

/// The two-finger gesture of the tests, frame by frame, and what Android's reader makes of it.
fn two_finger_gesture() -> (Vec<Vec<RawEvent>>, Vec<&'static str>) {
    let frames = vec![
        frame(&[contact(0, Some(100), Some((100, 200)))]),
        frame(&[contact(0, None, Some((110, 210)))]),
        frame(&[contact(1, Some(101), Some((300, 400)))]),
        frame(&[
            contact(0, None, Some((120, 220))),
            contact(1, None, Some((310, 410))),
        ]),
        frame(&[contact(0, None, None)]),
        frame(&[contact(1, None, None)]),
    ];
    let expected = vec![
        "DOWN 0:100,200",
        "MOVE 0:110,210",
        "POINTER_DOWN(1) 0:110,210 1:300,400",
        "MOVE 0:120,220 1:310,410",
        "POINTER_UP(0) 0:120,220 1:310,410",
        "UP 1:310,410",
    ];
    (frames, expected)
}

#[test]
fn the_mapper_cooks_a_two_finger_gesture_in_android_order() {
    let mut mapper = Mapper::new(7, touch_caps(), DISPLAY);
    let (frames, expected) = two_finger_gesture();
    let out = run(&mut mapper, &frames.concat());
    assert_eq!(describe(&out), expected);
    for o in &out {
        let Output::Motion(m) = o else {
            panic!("a key from a touch screen")
        };
        assert_eq!((m.device_id, m.source), (7, SOURCE_TOUCHSCREEN));
        assert!(m
            .pointers
            .iter()
            .all(|p| p.pressure > 0.49 && p.pressure < 0.51));
    }
    assert!(mapper.active_pointers().is_empty());
}

#[test]
fn the_mapper_reuses_the_smallest_free_pointer_id() {
    let mut mapper = Mapper::new(1, touch_caps(), DISPLAY);
    let events = [
        frame(&[
            contact(0, Some(5), Some((1, 1))),
            contact(1, Some(6), Some((2, 2))),
        ]),
        frame(&[contact(0, None, None)]),
        frame(&[contact(2, Some(7), Some((3, 3)))]),
    ]
    .concat();
    let out = describe(&run(&mut mapper, &events));
    assert_eq!(
        out,
        [
            "DOWN 0:1,1",
            "POINTER_DOWN(1) 0:1,1 1:2,2",
            "POINTER_UP(0) 0:1,1 1:2,2",
            "POINTER_DOWN(0) 0:3,3 1:2,2",
        ]
    );
}

#[test]
fn after_syn_dropped_the_mapper_discards_the_frame_and_resyncs_from_the_device_state() {
    let mut mapper = Mapper::new(1, touch_caps(), DISPLAY);
    let mut keys = Mapper::new(
        2,
        Capabilities {
            keyboard: true,
            ..Capabilities::default()
        },
        DISPLAY,
    );
    assert_eq!(
        describe(&run(
            &mut mapper,
            &frame(&[contact(0, Some(1), Some((10, 10)))])
        )),
        ["DOWN 0:10,10"]
    );
    let mut out = Vec::new();
    let dropped = RawEvent::new(EV_SYN, SYN_DROPPED, 0);
    assert_eq!(mapper.process(dropped, &mut out), Step::Continue);
    for e in contact(0, None, Some((999, 999))) {
        assert_eq!(mapper.process(e, &mut out), Step::Continue);
    }
    assert!(out.is_empty(), "events after SYN_DROPPED are discarded");
    assert!(matches!(
        mapper.process(syn(), &mut out),
        Step::Resync { .. }
    ));
    // The device says: contact 1 is still down, moved to (40, 50); contact 2 appeared in slot 1.
    let snapshot = Snapshot {
        slot: 1,
        tracking_id: vec![1, 2, -1, -1],
        x: vec![40, 60, 0, 0],
        y: vec![50, 70, 0, 0],
        pressure: vec![128; 4],
        ..Snapshot::default()
    };
    mapper.resync(&snapshot, 5, &mut out);
    assert_eq!(
        describe(&out),
        ["MOVE 0:40,50", "POINTER_DOWN(1) 0:40,50 1:60,70"]
    );
    let stats = mapper.stats();
    assert_eq!((stats.dropped, stats.discarded, stats.resyncs), (1, 4, 1));

    // Keys: A was down and is up now, B went down while events were lost.
    out.clear();
    let _ = run(&mut keys, &[RawEvent::new(EV_KEY, 30, 1), syn()]);
    let mut state = KeyBits::default();
    state.set(48, true);
    keys.resync(
        &Snapshot {
            keys: state,
            ..Snapshot::default()
        },
        9,
        &mut out,
    );
    assert_eq!(describe(&out), ["key up 29 scan 30", "key down 30 scan 48"]);
}

#[test]
fn cancel_ends_a_gesture_and_releases_held_keys() {
    let mut mapper = Mapper::new(1, touch_caps(), DISPLAY);
    let _ = run(
        &mut mapper,
        &frame(&[
            contact(0, Some(1), Some((10, 20))),
            contact(1, Some(2), Some((30, 40))),
        ]),
    );
    let mut out = Vec::new();
    mapper.cancel(1, &mut out);
    assert_eq!(describe(&out), ["CANCEL 0:10,20 1:30,40"]);

    let mut keys = Mapper::new(
        2,
        Capabilities {
            keyboard: true,
            ..Capabilities::default()
        },
        DISPLAY,
    );
    let _ = run(
        &mut keys,
        &[
            RawEvent::new(EV_KEY, 42, 1),
            RawEvent::new(EV_KEY, 30, 1),
            syn(),
        ],
    );
    out.clear();
    keys.cancel(2, &mut out);
    assert_eq!(out.len(), 2);
    for o in &out {
        let Output::Key(k) = o else { panic!("{o:?}") };
        assert_eq!((k.action, k.flags), (KEY_ACTION_UP, KEY_FLAG_CANCELED));
    }
}

#[test]
fn keys_carry_android_codes_meta_state_and_repeats() {
    let mut keys = Mapper::new(
        3,
        Capabilities {
            keyboard: true,
            ..Capabilities::default()
        },
        DISPLAY,
    );
    let out = run(
        &mut keys,
        &[
            RawEvent::new(EV_KEY, 42, 1), // shift
            RawEvent::new(EV_KEY, 30, 1),
            RawEvent::new(EV_KEY, 30, 2),
            RawEvent::new(EV_KEY, 30, 0),
            RawEvent::new(EV_KEY, 31, 0), // never went down: ignored
            syn(),
        ],
    );
    let keys_out: Vec<KeyEvent> = out
        .iter()
        .map(|o| match o {
            Output::Key(k) => *k,
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(keys_out.len(), 4);
    assert_eq!(
        (keys_out[1].key_code, keys_out[1].meta_state),
        (29, META_SHIFT_ON)
    );
    assert_eq!(keys_out[2].repeat_count, 1);
    assert_eq!(
        (keys_out[3].action, keys_out[3].scan_code),
        (KEY_ACTION_UP, 30)
    );
    assert!(keys_out
        .iter()
        .all(|k| k.device_id == 3 && k.source == SOURCE_KEYBOARD));
}

#[test]
fn a_relative_pointer_hovers_and_drags() {
    let caps = Capabilities {
        pointer: true,
        ..Capabilities::default()
    };
    let mut mouse = Mapper::new(4, caps, DISPLAY);
    let rel = |code, v| RawEvent::new(EV_REL, code, v);
    let out = run(
        &mut mouse,
        &[
            rel(REL_X, 10),
            rel(REL_Y, -20),
            syn(),
            RawEvent::new(EV_KEY, BTN_LEFT, 1),
            syn(),
            rel(REL_X, 5),
            syn(),
            RawEvent::new(EV_KEY, BTN_LEFT, 0),
            syn(),
            rel(REL_X, -10_000),
            syn(),
        ],
    );
    assert_eq!(
        describe(&out),
        [
            "HOVER_MOVE 0:510,480",
            "DOWN 0:510,480",
            "MOVE 0:515,480",
            "UP 0:515,480",
            "HOVER_MOVE 0:0,480"
        ]
    );
    let Output::Motion(drag) = &out[2] else {
        panic!()
    };
    assert_eq!((drag.source, drag.button_state), (SOURCE_MOUSE, 1));
}

#[test]
fn hostile_streams_never_panic_or_make_invalid_motions() {
    use proptest::prelude::*;
    // Few cases and a fixed seed: this also runs in the kernel run's emulated guest, where
    // the OS random source may block for minutes until the guest kernel has entropy.
    let mut runner = deterministic_runner();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..1500), |bytes| {
            bittube::input_demo::evdev::fuzz_mapper(&bytes);
            Ok(())
        })
        .unwrap();
    // Slots far out of range, tracking ids on every slot, more contacts than pointers.
    let mut data = vec![4u8, 255, 0, 100, 0, 100, 3, 9];
    for slot in [-5, 0, 15, 16, 1 << 30] {
        for e in contact(slot, Some(slot), Some((1, 1))) {
            data.extend_from_slice(bytemuck::bytes_of(&e));
        }
        data.extend_from_slice(bytemuck::bytes_of(&syn()));
    }
    bittube::input_demo::evdev::fuzz_mapper(&data);
}

// ---------------------------------------------------------------------------------------------
// Virtual devices (uinput)

/// Whether virtual devices can be made here; if not, says so (past libtest's capture).
fn have_uinput(test: &str) -> bool {
    if Path::new(UINPUT_PATH).exists() {
        let _ = std::io::stderr().write_all(format!("\ndevices: ran {test}\n").as_bytes());
        true
    } else {
        let _ = std::io::stderr()
            .write_all(format!("\nskipped: needs {UINPUT_PATH} ({test})\n").as_bytes());
        false
    }
}

fn reader(names: &[&str]) -> EvdevReader {
    EvdevReader::open(ReaderConfig {
        names: names.iter().map(|n| n.to_string()).collect(),
        display: DISPLAY,
        ..ReaderConfig::default()
    })
    .expect("evdev reader")
}

/// Read until `done` holds for everything read so far; returns it all.
fn read_until(
    reader: &mut EvdevReader,
    what: &str,
    done: impl Fn(&[ReaderEvent]) -> bool,
) -> Vec<ReaderEvent> {
    let deadline = Instant::now() + LONG;
    let mut all = Vec::new();
    while !done(&all) {
        assert!(
            Instant::now() < deadline,
            "{what}: not seen in {LONG:?}; read {all:?}"
        );
        all.extend(reader.read(Duration::from_millis(100)).expect("read"));
    }
    all
}

fn motions(events: &[ReaderEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ReaderEvent::Motion(m) => Some(describe_motion(m)),
            _ => None,
        })
        .collect()
}

fn added(events: &[ReaderEvent], name: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ReaderEvent::DeviceAdded { name: n, .. } if n == name))
}

fn removed(events: &[ReaderEvent], name: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ReaderEvent::DeviceRemoved { name: n, .. } if n == name))
}

#[test]
fn devices_that_come_and_go_are_noticed_and_a_held_key_is_canceled() {
    if !have_uinput("devices_that_come_and_go_are_noticed_and_a_held_key_is_canceled") {
        return;
    }
    let name = "bittube-come-and-go";
    let mut reader = reader(&[name]); // before the device exists: found through inotify
    let mut kb = VirtualDevice::create(Path::new(UINPUT_PATH), &DeviceSpec::keyboard(name))
        .expect("uinput keyboard");
    read_until(&mut reader, "device added", |e| added(e, name));
    kb.key(30, true).unwrap();
    let down = read_until(&mut reader, "key down", |e| {
        e.iter().any(|e| matches!(e, ReaderEvent::Key(_)))
    });
    let ReaderEvent::Key(k) = down
        .iter()
        .find(|e| matches!(e, ReaderEvent::Key(_)))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(
        (k.action, k.key_code, k.scan_code),
        (KEY_ACTION_DOWN, 29, 30)
    );
    let t = now_nanos();
    assert!(
        k.event_time <= t && t - k.event_time < 60_000_000_000,
        "CLOCK_MONOTONIC stamps"
    );
    kb.destroy().unwrap();
    let gone = read_until(&mut reader, "device removed", |e| removed(e, name));
    // The kernel releases held keys itself when a device is unregistered; either way the
    // application sees the key go up before the device goes.
    let up = gone.iter().position(
        |e| matches!(e, ReaderEvent::Key(k) if k.action == KEY_ACTION_UP && k.scan_code == 30),
    );
    let removed_at = gone
        .iter()
        .position(|e| matches!(e, ReaderEvent::DeviceRemoved { .. }));
    assert!(up.is_some() && up < removed_at, "{gone:?}");
    assert!(reader.devices().is_empty());
    assert_eq!(reader.stats().devices_removed, 1);
}

#[test]
fn a_burst_that_overflows_the_evdev_buffer_ends_in_the_right_state() {
    if !have_uinput("a_burst_that_overflows_the_evdev_buffer_ends_in_the_right_state") {
        return;
    }
    let name = "bittube-burst";
    let mut ts = VirtualDevice::create(
        Path::new(UINPUT_PATH),
        &DeviceSpec::touchscreen(name, 4, 1000, 1000),
    )
    .unwrap();
    let mut reader = reader(&[name]);
    read_until(&mut reader, "device added", |e| added(e, name));
    check_burst(&motions(&burst(&mut ts, &mut reader)));
    let stats = reader.stats().mapper;
    assert!(
        stats.dropped >= 1 && stats.resyncs >= 1,
        "the burst overflowed the buffer: {stats:?}"
    );
    // Records discarded after SYN_DROPPED may be none: evdev keeps the newest event of the
    // overflowing packet, often its SYN_REPORT.
}

/// Finger down at (500, 500) (read), then 3000 frames written without reading, ending at
/// (700, 800), then read; then the finger goes up. Returns everything read.
fn burst(ts: &mut VirtualDevice, reader: &mut EvdevReader) -> Vec<ReaderEvent> {
    ts.emit(&frame(&[contact(0, Some(200), Some((500, 500)))]))
        .unwrap();
    let mut all = read_until(reader, "DOWN", |e| !motions(e).is_empty());
    let mut events = Vec::new();
    for i in 0..3000 {
        events.extend(frame(&[contact(
            0,
            None,
            Some((501 + i % 100, 501 + i % 50)),
        )]));
    }
    events.extend(frame(&[contact(0, None, Some((700, 800)))]));
    ts.emit(&events).unwrap();
    all.extend(read_until(reader, "resync", |e| {
        motions(e).last().is_some_and(|m| m == "MOVE 0:700,800")
    }));
    ts.emit(&frame(&[contact(0, None, None)])).unwrap();
    all.extend(read_until(reader, "UP", |e| {
        motions(e).iter().any(|m| m.starts_with("UP"))
    }));
    all
}

/// The motions of a burst: DOWN at (500, 500), MOVEs of pointer 0, and it ends at (700, 800).
fn check_burst(motion: &[impl AsRef<str>]) {
    let motion: Vec<&str> = motion.iter().map(|m| m.as_ref()).collect();
    assert!(motion.len() >= 3, "{motion:?}");
    assert_eq!(motion[0], "DOWN 0:500,500", "{motion:?}");
    assert_eq!(
        motion[motion.len() - 2..],
        ["MOVE 0:700,800", "UP 0:700,800"],
        "{motion:?}"
    );
    assert!(
        motion[1..motion.len() - 2]
            .iter()
            .all(|m| m.starts_with("MOVE 0:")),
        "{motion:?}"
    );
}

#[test]
fn a_mouse_moves_the_cursor_and_clicks() {
    if !have_uinput("a_mouse_moves_the_cursor_and_clicks") {
        return;
    }
    let name = "bittube-mouse";
    let mut mouse =
        VirtualDevice::create(Path::new(UINPUT_PATH), &DeviceSpec::mouse(name)).unwrap();
    let mut reader = reader(&[name]);
    read_until(&mut reader, "device added", |e| added(e, name));
    let rel = |code, v| RawEvent::new(EV_REL, code, v);
    mouse
        .emit(&[rel(REL_X, 10), rel(REL_Y, 20), syn()])
        .unwrap();
    mouse
        .emit(&[RawEvent::new(EV_KEY, BTN_LEFT, 1), syn()])
        .unwrap();
    mouse
        .emit(&[RawEvent::new(EV_KEY, BTN_LEFT, 0), syn()])
        .unwrap();
    let all = read_until(&mut reader, "UP", |e| {
        motions(e).iter().any(|m| m.starts_with("UP"))
    });
    assert_eq!(
        motions(&all),
        ["HOVER_MOVE 0:510,520", "DOWN 0:510,520", "UP 0:510,520"]
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: uinput → evdev reader → dispatcher → binder-registered window

#[test]
fn uinput_keys_and_touches_reach_a_window_registered_through_binder() {
    const TEST: &str = "uinput_keys_and_touches_reach_a_window_registered_through_binder";
    match child_role().as_deref() {
        Some("host") => return e2e_host(TEST),
        Some("service") => return e2e_service(),
        Some("app") => return e2e_app(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !have_uinput(TEST) {
        return;
    }
    let (child, _control) = spawn_child(TEST, "host");
    wait_success(child);
}

/// The host: the service manager, the input service and the application (see [`BinderHost`]).
fn e2e_host(test: &str) {
    let host = BinderHost::start();
    let (service, service_control) = host.spawn(test, "service");
    assert_eq!(expect_text(&service_control, "registered"), "registered");
    let (app, app_control) = host.spawn(test, "app");
    assert_eq!(expect_text(&app_control, "ready"), "ready");
    send_text(&service_control, "go");
    let done = expect_text(&service_control, "done");
    send_text(&app_control, "report");
    let log = expect_text(&app_control, "report");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 15, "{log}");
    let (_, gesture) = two_finger_gesture();
    let keys = [
        "key down 29 scan 30",
        "key up 29 scan 30",
        "key down 30 scan 48",
        "key up 30 scan 48",
    ];
    assert_eq!(lines[..4], keys, "{log}");
    assert_eq!(lines[4..10], gesture[..], "{log}");
    check_burst(&lines[10..lines.len() - 2]);
    assert_eq!(
        lines[lines.len() - 2..],
        ["DOWN 0:50,60", "CANCEL 0:50,60"],
        "{log}"
    );
    let report = format!(
        "evdev e2e: {} events in the window; service: {done}\n",
        lines.len()
    );
    let _ = std::io::stderr().write_all(report.as_bytes());
    wait_success(service);
    wait_success(app);
    host.shutdown();
}

/// Drives the virtual devices phase by phase, reading each phase's events and handing them
/// to the dispatcher; then waits until the window finished every event.
fn e2e_service() {
    let control = control_in_child();
    let ps = ProcessState::open().expect("binder");
    ps.start_thread_pool().expect("thread pool");
    let config = DispatcherConfig { anr_timeout: LONG };
    let dispatcher = Arc::new(DispatcherThread::start(config).expect("dispatcher"));
    let service = InputService::new(Arc::clone(&dispatcher));
    let sm = ServiceManagerClient::new(&ps).expect("service manager");
    sm.add_service(SERVICE_NAME, &Binder::Local(service.clone()))
        .expect("add service");

    let (kb_name, ts_name) = ("bittube-e2e-keyboard", "bittube-e2e-touch");
    let uinput = Path::new(UINPUT_PATH);
    let mut kb = VirtualDevice::create(uinput, &DeviceSpec::keyboard(kb_name)).expect("keyboard");
    let spec = DeviceSpec::touchscreen(ts_name, 4, 1000, 1000);
    let mut ts = VirtualDevice::create(uinput, &spec).expect("touch screen");
    let mut reader = reader(&[kb_name, ts_name]);
    read_until(&mut reader, "both devices", |e| {
        added(e, kb_name) && added(e, ts_name)
    });
    send_text(&control, "registered");
    assert_eq!(expect_text(&control, "go"), "go");

    let mut stats = FeedStats::default();
    let mut phases = Vec::new();
    for (code, down) in [(30, true), (30, false), (48, true), (48, false)] {
        kb.key(code, down).unwrap();
    }
    phases.push(read_until(&mut reader, "keys", |e| {
        e.iter()
            .filter(|e| matches!(e, ReaderEvent::Key(_)))
            .count()
            == 4
    }));
    for f in two_finger_gesture().0 {
        ts.emit(&f).unwrap();
    }
    phases.push(read_until(&mut reader, "gesture", |e| {
        motions(e).len() == 6
    }));
    phases.push(burst(&mut ts, &mut reader));
    ts.emit(&frame(&[contact(0, Some(300), Some((50, 60)))]))
        .unwrap();
    phases.push(read_until(&mut reader, "DOWN", |e| !motions(e).is_empty()));
    ts.destroy().unwrap();
    phases.push(read_until(&mut reader, "unplug", |e| removed(e, ts_name)));
    for events in &phases {
        feed(&mut dispatcher.lock(), events, &mut stats);
    }
    assert_eq!(stats.refused, 0, "{stats:?}");
    let sent = stats.keys + stats.motions;
    wait_until("every event finished", || {
        let d = dispatcher.lock();
        // `finished` also counts the focus message the window got when it took focus.
        d.is_idle() && d.stats().finished >= sent
    });
    let mapper = reader.stats().mapper;
    let done = format!(
        "done: {} keys, {} motions, SYN_DROPPED {}, records discarded {}, resyncs {}",
        stats.keys, stats.motions, mapper.dropped, mapper.discarded, mapper.resyncs
    );
    assert!(mapper.dropped >= 1 && mapper.resyncs >= 1, "{done}");
    send_text(&control, &done);
    service.clear();
    drop(sm);
    ps.shutdown(LONG).expect("service shutdown");
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not done in {LONG:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Registers a full-screen window through binder, takes focus, consumes and finishes
/// everything, and sends what it saw (one line per event) when the host asks.
fn e2e_app() {
    let control = control_in_child();
    let ps = ProcessState::open().expect("binder");
    ps.start_thread_pool().expect("thread pool");
    let sm = ServiceManagerClient::new(&ps).expect("service manager");
    let service = sm
        .wait_for_service(SERVICE_NAME, LONG)
        .expect("input service");
    let client = InputClient::new(&ps, service);
    let token = Binder::new(WindowTokenService);
    let channel = client
        .register_window("evdev-app", SCREEN, &token)
        .expect("register window");
    client.set_focus(Some(&token)).expect("focus");
    send_text(&control, "ready");
    let mut consumer = InputConsumer::new(channel);
    let mut log = Vec::new();
    let deadline = Instant::now() + LONG;
    let mut open = true;
    loop {
        assert!(Instant::now() < deadline, "no report request in {LONG:?}");
        if open {
            consumer
                .channel()
                .wait_readable(Duration::from_millis(20))
                .unwrap();
            match consumer.consume(None) {
                Ok(events) => {
                    for event in events {
                        match &event {
                            ConsumedEvent::Key { event: k, .. } => log.push(describe_key(k)),
                            ConsumedEvent::Motion { event: m, .. } => log.push(describe_motion(m)),
                            ConsumedEvent::Focus { .. } => {}
                        }
                        consumer.finish(&event, true).expect("finish");
                    }
                }
                // The service closes the channel once every event was finished.
                Err(ChannelError::DeadObject) => open = false,
                Err(e) => panic!("consume: {e}"),
            }
        }
        let wait = if open {
            Duration::ZERO
        } else {
            Duration::from_millis(20)
        };
        if recv_text(&control, wait).is_some() {
            break;
        }
    }
    send_text(&control, &log.join("\n"));
    drop(client);
    ps.shutdown(LONG).expect("app shutdown");
}

/// A proptest runner with 64 cases and a fixed seed (no OS randomness needed).
fn deterministic_runner() -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let config = Config::with_cases(64);
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}
