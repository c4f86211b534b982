//! input_demo with real processes: ordering and finished signals, MOVE batching, ANRs, a
//! killed application removed with its fds released, malformed messages rejected.
//!
//! Cross-process tests re-execute this test binary with `BITTUBE_CHILD=<role>`: the named test
//! then acts as the child (an application, or a dispatcher that itself starts an application).
//! The child's stdin is one end of a SEQPACKET control socketpair; the client end of the
//! window's input channel reaches the application over it by SCM_RIGHTS (where binder will
//! carry it as a `BINDER_TYPE_FD` object), and the application sends its report back on it.

mod common;
use common::*;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittube::binder_ipc::runtime::{Binder, BinderError, ProcessState};
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager, ServiceManagerClient};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::bittube::TubeEnd;
use bittube::fd_transfer::{recv_with_fds, send_with_fds, FdTransferError};
use bittube::input_demo::binder::{InputClient, InputService, WindowTokenService, SERVICE_NAME};
use bittube::input_demo::message::{Header, MotionBody, KIND_FINISHED, KIND_KEY, KIND_MOTION};
use bittube::input_demo::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Only to avoid hangs; nothing asserts on durations.
const SCREEN: Bounds = Bounds {
    left: 0.0,
    top: 0.0,
    right: 1000.0,
    bottom: 1000.0,
};
const APP: WindowToken = WindowToken(7);

/// Hand the client end of a window's channel to the application (what binder will do with a
/// `BINDER_TYPE_FD` object).
fn send_end(control: &OwnedFd, name: &str, end: TubeEnd) {
    send_with_fds(control, name.as_bytes(), &[end.as_fd()]).expect("send client end");
    drop(end); // the application holds the only client end now
}

fn recv_end(control: &OwnedFd) -> InputChannel {
    let mut buf = [0u8; 64];
    let got = recv_with_fds(control, &mut buf, 1).expect("receive client end");
    let name = std::str::from_utf8(&buf[..got.len])
        .expect("name")
        .to_owned();
    let fd = got.fds.into_iter().next().expect("one fd");
    InputChannel::from_tube_end(&name, TubeEnd::try_from_socket(fd).expect("a tube"))
}

/// Receive one message on the control socket, waiting up to [`LONG`].
fn recv_control(control: &OwnedFd) -> Result<String, FdTransferError> {
    let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::try_from(LONG).unwrap()).expect("poll control");
    assert!(n > 0, "no report in {LONG:?}");
    let mut buf = [0u8; 256];
    let got = recv_with_fds(control, &mut buf, 0)?;
    Ok(String::from_utf8_lossy(&buf[..got.len]).into_owned())
}

/// What an application saw, sent back as text.
#[derive(Debug, Default, PartialEq)]
struct Report {
    keys: u64,
    motion_events: u64,
    motion_seqs: u64,
    focus: u64,
    batches: u64,
}

impl Report {
    fn to_text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.keys, self.motion_events, self.motion_seqs, self.focus, self.batches
        )
    }

    fn parse(text: &str) -> Report {
        let v: Vec<u64> = text
            .split(' ')
            .map(|f| f.parse().expect("number"))
            .collect();
        Report {
            keys: v[0],
            motion_events: v[1],
            motion_seqs: v[2],
            focus: v[3],
            batches: v[4],
        }
    }
}

fn key(code: i32) -> KeyEvent {
    let t = now_nanos();
    KeyEvent {
        device_id: 2,
        source: SOURCE_KEYBOARD,
        display_id: 0,
        action: KEY_ACTION_DOWN,
        flags: 0,
        key_code: code,
        scan_code: 0,
        meta_state: 0,
        repeat_count: 0,
        policy_flags: 0,
        down_time: t,
        event_time: t,
    }
}

fn touch(action: u32, x: f32, y: f32) -> MotionEvent {
    let t = now_nanos();
    MotionEvent::touch(action, x, y, t, t)
}

/// Pump until `done` holds, collecting what the dispatcher reports.
fn pump_until(
    d: &mut Dispatcher,
    events: &mut Vec<DispatchEvent>,
    mut done: impl FnMut(&Dispatcher, &[DispatchEvent]) -> bool,
) {
    let deadline = Instant::now() + LONG;
    while !done(d, events) {
        assert!(
            Instant::now() < deadline,
            "not done in {LONG:?}: {events:?}"
        );
        events.extend(d.pump(Duration::from_millis(50)).expect("pump"));
    }
}

/// An application: receives its channel's client end, consumes, finishes, checks order.
///
/// Modes: `ordered` (no batching), `batching` (frame-paced MOVE batching), `stall` (answers
/// two events, then stops reading), `malformed` (sends bad messages before its answers).
/// Returns when the dispatcher closes the channel, after sending its [`Report`].
fn run_app(mode: &str) {
    let control = control_in_child();
    let channel = recv_end(&control);
    let mut consumer = InputConsumer::new(channel);
    let mut report = Report::default();
    let mut last_seq = 0u32;
    let mut last_key_code = 0;
    let mut last_motion_time = i64::MIN;
    let deadline = Instant::now() + LONG;
    loop {
        assert!(Instant::now() < deadline, "app ran for {LONG:?}");
        let frame_time = match mode {
            "batching" => {
                // One frame every 8 ms: samples that arrive in between are batched.
                std::thread::sleep(Duration::from_millis(8));
                Some(now_nanos())
            }
            _ => {
                consumer
                    .channel()
                    .wait_readable(Duration::from_millis(100))
                    .expect("wait");
                None
            }
        };
        let events = match consumer.consume(frame_time) {
            Ok(events) => events,
            Err(ChannelError::DeadObject) => break,
            Err(e) => panic!("consume: {e}"),
        };
        for event in &events {
            for &seq in event.seqs() {
                assert!(seq > last_seq, "seq {seq} after {last_seq}: out of order");
                last_seq = seq;
            }
            match event {
                ConsumedEvent::Key { event, .. } => {
                    assert_eq!(event.key_code, last_key_code + 1, "keys in order");
                    last_key_code = event.key_code;
                    report.keys += 1;
                }
                ConsumedEvent::Motion { seqs, event } => {
                    assert!(event.event_time >= last_motion_time, "motions in order");
                    last_motion_time = event.event_time;
                    report.motion_events += 1;
                    report.motion_seqs += seqs.len() as u64;
                }
                ConsumedEvent::Focus { has_focus, .. } => {
                    assert!(has_focus);
                    report.focus += 1;
                }
            }
            if mode == "malformed" {
                send_bad_messages(consumer.channel().tube());
            }
            consumer.finish(event, true).expect("finish");
            if mode == "stall" && last_seq >= 2 {
                // Stop reading; the channel stays open until the test closes the control
                // socket.
                let mut buf = [0u8; 16];
                let _ = recv_with_fds(&control, &mut buf, 0);
                return;
            }
        }
        consumer.flush_finished().expect("flush finished");
    }
    assert_eq!(
        consumer.unsent_finished(),
        0,
        "every finished signal was sent"
    );
    report.batches = consumer.stats().batches;
    send_with_fds(&control, report.to_text().as_bytes(), &[]).expect("send report");
}

/// Four bad messages: a finished of the wrong size, motions with 0 and 17 pointers, and a
/// finished for a seq that was never published.
fn send_bad_messages(tube: &TubeEnd) {
    let header = |kind, seq| bytemuck::bytes_of(&Header { kind, seq }).to_vec();
    let mut wrong_size = header(KIND_FINISHED, 1);
    wrong_size.resize(30, 0);
    tube.send_batch::<u8>(&wrong_size).unwrap();
    for count in [0u32, 17] {
        tube.send_batch::<u8>(&motion_bytes(count, count as usize))
            .unwrap();
    }
    let mut unknown_seq = header(KIND_FINISHED, 999_999);
    unknown_seq.resize(24, 0);
    tube.send_batch::<u8>(&unknown_seq).unwrap();
}

/// A motion message whose body says `count` pointers and which carries `carried` of them.
fn motion_bytes(count: u32, carried: usize) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(&Header {
        kind: KIND_MOTION,
        seq: 5,
    })
    .to_vec();
    let body = MotionBody {
        device_id: 1,
        source: SOURCE_TOUCHSCREEN,
        display_id: 0,
        action: MOTION_ACTION_MOVE,
        action_button: 0,
        flags: 0,
        button_state: 0,
        meta_state: 0,
        pointer_count: count,
        reserved: 0,
        down_time: 0,
        event_time: 0,
    };
    bytes.extend_from_slice(bytemuck::bytes_of(&body));
    for _ in 0..carried {
        bytes.extend_from_slice(bytemuck::bytes_of(&Pointer::default()));
    }
    bytes
}

fn dispatcher(anr_timeout: Duration) -> Dispatcher {
    Dispatcher::new(DispatcherConfig { anr_timeout }).expect("dispatcher")
}

/// Unregister the window (the app sees a dead channel) and read the app's report.
fn finish_app(d: &mut Dispatcher, control: &OwnedFd, child: Child) -> Report {
    assert!(d.unregister_window(APP));
    let report = Report::parse(&recv_control(control).expect("report"));
    wait_success(child);
    report
}

#[test]
fn keys_and_motions_arrive_in_order_and_every_seq_is_finished() {
    const TEST: &str = "keys_and_motions_arrive_in_order_and_every_seq_is_finished";
    if let Some(role) = child_role() {
        return run_app(&role);
    }
    let mut d = dispatcher(LONG);
    let client = d.register_window("app", SCREEN, APP).unwrap();
    let (child, control) = spawn_child(TEST, "ordered");
    send_end(&control, "app", client);
    d.set_focus(Some(APP)).unwrap();

    let (mut keys, mut motions) = (0u64, 0u64);
    for i in 0..200 {
        let sent = d.inject_key(&key(i + 1)).unwrap();
        assert_eq!(sent.token, APP);
        keys += 1;
        let action = match i % 10 {
            0 => MOTION_ACTION_DOWN,
            9 => MOTION_ACTION_UP,
            _ => MOTION_ACTION_MOVE,
        };
        d.inject_motion(&touch(action, 10.0 + i as f32, 20.0))
            .unwrap();
        motions += 1;
        if i % 50 == 0 {
            d.pump(Duration::ZERO).unwrap();
        }
    }
    let total = keys + motions + 1; // and the focus event
    let mut events = Vec::new();
    pump_until(&mut d, &mut events, |d, _| {
        d.is_idle() && d.stats().finished == total
    });
    assert!(
        events.is_empty(),
        "no ANR, removal or bad message: {events:?}"
    );
    let stats = d.stats();
    assert_eq!(stats.dispatched, total);
    assert_eq!(stats.finished, total);
    assert_eq!(stats.anrs, 0);
    assert_eq!(stats.finish_latency.count, total);
    assert!(stats.finish_latency.p50_us <= stats.finish_latency.p99_us);

    let report = finish_app(&mut d, &control, child);
    assert_eq!(
        report,
        Report {
            keys,
            motion_events: motions,
            motion_seqs: motions,
            focus: 1,
            batches: 0
        }
    );
}

#[test]
fn move_batching_reduces_messages_but_every_seq_is_answered() {
    const TEST: &str = "move_batching_reduces_messages_but_every_seq_is_answered";
    if let Some(role) = child_role() {
        return run_app(&role);
    }
    let mut d = dispatcher(LONG);
    let client = d.register_window("app", SCREEN, APP).unwrap();
    let (child, control) = spawn_child(TEST, "batching");
    send_end(&control, "app", client);

    const MOVES: u64 = 300;
    d.inject_motion(&touch(MOTION_ACTION_DOWN, 1.0, 1.0))
        .unwrap();
    for i in 0..MOVES {
        d.inject_motion(&touch(MOTION_ACTION_MOVE, 1.0 + i as f32, 1.0))
            .unwrap();
    }
    d.inject_motion(&touch(MOTION_ACTION_UP, 500.0, 1.0))
        .unwrap();
    let total = MOVES + 2;
    let mut events = Vec::new();
    pump_until(&mut d, &mut events, |d, _| {
        d.is_idle() && d.stats().finished == total
    });
    assert!(events.is_empty(), "{events:?}");
    let stats = d.stats();
    assert_eq!(stats.dispatched, total);
    assert!(
        stats.batches >= 1,
        "finished signals of a batch share a time: {stats:?}"
    );

    let report = finish_app(&mut d, &control, child);
    assert_eq!(report.motion_seqs, total, "every seq was delivered");
    assert!(
        report.motion_events < total,
        "batching delivered {} events for {total} messages",
        report.motion_events
    );
    assert!(report.batches >= 1);
}

#[test]
fn an_app_that_stops_reading_triggers_an_anr() {
    const TEST: &str = "an_app_that_stops_reading_triggers_an_anr";
    if let Some(role) = child_role() {
        return run_app(&role);
    }
    let mut d = dispatcher(Duration::from_millis(300));
    let client = d.register_window("sleepy", SCREEN, APP).unwrap();
    let (child, control) = spawn_child(TEST, "stall");
    send_end(&control, "sleepy", client);
    d.set_focus(Some(APP)).unwrap(); // seq 1
    d.inject_key(&key(1)).unwrap(); // seq 2: the last one answered
    let mut events = Vec::new();
    // (On a loaded machine the app may take longer than 300 ms for these two as well; an ANR
    // for them would be right, so nothing is asserted about this phase.)
    pump_until(&mut d, &mut events, |d, _| d.stats().finished == 2);

    let unanswered = d.inject_key(&key(2)).unwrap();
    let anr_for = |e: &DispatchEvent, want: u32| {
        matches!(e, DispatchEvent::Anr { token, name, seq, waited }
            if *token == APP && name == "sleepy" && *seq == want
                && *waited >= Duration::from_millis(300))
    };
    pump_until(&mut d, &mut events, |_, e| {
        e.iter().any(|e| anr_for(e, unanswered.seq))
    });
    assert_eq!(
        events.iter().filter(|e| anr_for(e, unanswered.seq)).count(),
        1,
        "one ANR per unfinished event: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| matches!(e, DispatchEvent::Anr { .. })),
        "{events:?}"
    );
    assert_eq!(d.windows().len(), 1, "an ANR does not remove the window");
    assert_eq!(d.windows()[0].waiting, 1);

    drop(control); // lets the app exit
    wait_success(child);
}

#[test]
fn an_anr_is_reported_once_per_event_and_cleared_by_its_finish() {
    // In one process, the test answers for the application, so the order is certain.
    let mut d = dispatcher(Duration::from_millis(50));
    let client = d.register_window("slow", SCREEN, APP).unwrap();
    let client = InputChannel::from_tube_end("slow", client);
    d.set_focus(Some(APP)).unwrap();
    let focus = client.receive_message().unwrap();
    let answer = |seq| {
        let finished = InputMessage::Finished {
            seq,
            handled: true,
            consume_time: now_nanos(),
        };
        client.send_message(&finished).unwrap();
    };
    answer(focus.seq());
    let mut events = Vec::new();
    pump_until(&mut d, &mut events, |d, _| d.is_idle());

    let first = d.inject_key(&key(1)).unwrap();
    let second = d.inject_key(&key(2)).unwrap();
    let anrs = |e: &[DispatchEvent]| -> Vec<u32> {
        e.iter()
            .filter_map(|e| match e {
                DispatchEvent::Anr { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    };
    events.clear();
    pump_until(&mut d, &mut events, |_, e| !anrs(e).is_empty());
    assert_eq!(anrs(&events), [first.seq], "the oldest unfinished event");
    // Still unanswered: no second report for the same event.
    for _ in 0..3 {
        events.extend(d.pump(Duration::from_millis(60)).unwrap());
    }
    assert_eq!(anrs(&events), [first.seq]);
    // Finishing it moves the ANR on to the next oldest event, reported once as well.
    answer(first.seq);
    pump_until(&mut d, &mut events, |_, e| anrs(e).len() == 2);
    assert_eq!(anrs(&events), [first.seq, second.seq]);
    answer(second.seq);
    pump_until(&mut d, &mut events, |d, _| d.is_idle());
    assert_eq!(d.stats().anrs, 2);
    assert_eq!(d.stats().finished, 3);
}

#[test]
fn a_killed_app_is_removed_and_its_fds_are_released() {
    const TEST: &str = "a_killed_app_is_removed_and_its_fds_are_released";
    match child_role().as_deref() {
        // The dispatcher runs in a child of its own: no other test opens fds in its process.
        Some("dispatcher") => return killed_app_dispatcher(TEST),
        Some(role) => return run_app(role),
        None => {}
    }
    let (child, _control) = spawn_child(TEST, "dispatcher");
    wait_success(child);
}

fn killed_app_dispatcher(test: &str) {
    let mut d = dispatcher(LONG);
    let before = open_fds();
    let client = d.register_window("doomed", SCREEN, APP).unwrap();
    let (mut app, control) = spawn_child(test, "ordered");
    send_end(&control, "doomed", client);
    d.set_focus(Some(APP)).unwrap();
    d.inject_key(&key(1)).unwrap();
    let mut events = Vec::new();
    pump_until(&mut d, &mut events, |d, _| d.stats().finished == 2);
    assert!(
        open_fds() > before,
        "the server end and control socket are open"
    );

    app.kill().expect("kill app");
    app.wait().expect("reap app");
    pump_until(&mut d, &mut events, |_, e| !e.is_empty());
    assert_eq!(
        events,
        [DispatchEvent::WindowRemoved {
            token: APP,
            name: "doomed".into(),
            reason: RemovalReason::DeadObject,
            abandoned: 0,
        }]
    );
    assert!(d.windows().is_empty());
    assert_eq!(d.focused(), None);
    assert!(matches!(
        d.inject_key(&key(2)),
        Err(DispatchError::NoFocusedWindow)
    ));
    drop(control);
    assert_eq!(open_fds(), before, "every fd of the window was released");
}

#[test]
fn malformed_messages_from_an_app_are_rejected_and_skipped() {
    const TEST: &str = "malformed_messages_from_an_app_are_rejected_and_skipped";
    if let Some(role) = child_role() {
        return run_app(&role);
    }
    let mut d = dispatcher(LONG);
    let client = d.register_window("rogue", SCREEN, APP).unwrap();
    let (child, control) = spawn_child(TEST, "malformed");
    send_end(&control, "rogue", client);
    d.set_focus(Some(APP)).unwrap();
    d.inject_key(&key(1)).unwrap();
    let mut events = Vec::new();
    pump_until(&mut d, &mut events, |d, _| {
        d.stats().finished == 2 && d.stats().bad_messages == 8
    });
    let errors: Vec<String> = events
        .iter()
        .map(|e| match e {
            DispatchEvent::BadMessage { token, error, .. } => {
                assert_eq!(*token, APP);
                error.clone()
            }
            other => panic!("expected bad messages only, got {other:?}"),
        })
        .collect();
    // Four per answered event (focus and key).
    for chunk in errors.chunks(4) {
        assert!(
            chunk[0].contains("wrong size for a finished message: 30 bytes, expected exactly 24"),
            "{}",
            chunk[0]
        );
        assert!(chunk[1].contains("bad pointer count 0"), "{}", chunk[1]);
        assert!(chunk[2].contains("bad pointer count 17"), "{}", chunk[2]);
        assert!(chunk[3].contains("seq 999999"), "{}", chunk[3]);
    }
    assert_eq!(d.windows().len(), 1, "the window stays");
    assert!(d.is_idle());
    let report = finish_app(&mut d, &control, child);
    assert_eq!((report.keys, report.focus), (1, 1));
}

#[test]
fn malformed_messages_are_rejected_on_receipt() {
    let (server, client) = InputChannel::pair("app").unwrap();
    let raw = server.tube();
    let header = |kind, seq| bytemuck::bytes_of(&Header { kind, seq }).to_vec();

    let mut short_key = header(KIND_KEY, 1);
    short_key.resize(60, 0);
    let long_motion = motion_bytes(2, 1); // says 2 pointers, carries 1
    let mut unknown = header(99, 4);
    unknown.resize(64, 0);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            short_key,
            "wrong size for a key message: 60 bytes, expected exactly 64",
        ),
        (motion_bytes(0, 0), "bad pointer count 0"),
        (motion_bytes(17, 17), "bad pointer count 17"),
        (motion_bytes(u32::MAX, 1), "bad pointer count 4294967295"),
        (
            long_motion,
            "wrong size for a motion message: 100 bytes, expected exactly 136",
        ),
        (
            motion_bytes(1, 0)[..40].to_vec(),
            "motion message of 40 bytes is too short",
        ),
        (
            vec![1, 0, 0],
            "message of 3 bytes is shorter than the 8-byte header",
        ),
        (unknown, "unknown message type 99"),
        (vec![0; 5000], "packet of 5000 bytes"), // far beyond MAX_MESSAGE_SIZE
    ];
    for (bytes, _) in &cases {
        raw.send_batch::<u8>(bytes).unwrap();
    }
    for (_, expected) in &cases {
        match client.receive_message() {
            Err(e @ ChannelError::Malformed(_)) => {
                assert!(e.to_string().contains(expected), "{e} / {expected}")
            }
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    // Nothing of them was read as an event, and the channel still works.
    let publisher = InputPublisher::new(server);
    publisher.publish_key(9, &key(1)).unwrap();
    let mut consumer = InputConsumer::new(client);
    let events = consumer.consume(None).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seqs(), &[9]);

    // The consumer reports a bad packet after the events read before it.
    publisher.publish_key(10, &key(2)).unwrap();
    publisher
        .channel()
        .tube()
        .send_batch::<u8>(&motion_bytes(17, 17))
        .unwrap();
    publisher.publish_key(11, &key(3)).unwrap();
    assert_eq!(consumer.consume(None).unwrap()[0].seqs(), &[10]);
    assert!(matches!(
        consumer.consume(None),
        Err(ChannelError::Malformed(MessageError::BadPointerCount {
            count: 17
        }))
    ));
    assert_eq!(consumer.consume(None).unwrap()[0].seqs(), &[11]);
    assert_eq!(consumer.stats().rejected, 1);

    // A publisher refuses bad pointer counts before sending anything.
    let mut none = touch(MOTION_ACTION_DOWN, 0.0, 0.0);
    none.pointers.clear();
    let mut many = touch(MOTION_ACTION_DOWN, 0.0, 0.0);
    many.pointers = vec![many.pointers[0]; MAX_POINTERS + 1];
    for bad in [none, many] {
        assert!(matches!(
            publisher.publish_motion(12, &bad),
            Err(ChannelError::Malformed(
                MessageError::BadPointerCount { .. }
            ))
        ));
    }
    assert!(matches!(consumer.consume(None), Ok(v) if v.is_empty()));
}

#[test]
fn would_block_and_dead_object_are_distinct() {
    let (server, client) = InputChannel::pair("app").unwrap();
    assert!(server.tube().send_buffer_size().unwrap() >= INPUT_CHANNEL_BUFFER_SIZE);
    assert!(client.tube().recv_buffer_size().unwrap() >= INPUT_CHANNEL_BUFFER_SIZE);
    assert!(matches!(
        client.receive_message(),
        Err(ChannelError::WouldBlock)
    ));
    let publisher = InputPublisher::new(server);
    let mut sent = 0;
    loop {
        match publisher.publish_key(sent + 1, &key(1)) {
            Ok(()) => sent += 1,
            Err(ChannelError::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 0);
    drop(publisher);
    let mut consumer = InputConsumer::new(client);
    let events = consumer.consume(None).unwrap();
    assert_eq!(
        events.len(),
        sent as usize,
        "what was sent before the close is read"
    );
    assert!(matches!(
        consumer.consume(None),
        Err(ChannelError::DeadObject)
    ));
    assert!(matches!(
        consumer.finish(&events[0], true),
        Err(ChannelError::DeadObject)
    ));
}

#[test]
fn touches_go_to_the_topmost_window_under_the_pointer() {
    let mut d = dispatcher(LONG);
    let bottom = d.register_window("bottom", SCREEN, WindowToken(1)).unwrap();
    let top_bounds = Bounds {
        left: 0.0,
        top: 0.0,
        right: 100.0,
        bottom: 100.0,
    };
    let top = d
        .register_window("top", top_bounds, WindowToken(2))
        .unwrap();
    assert!(matches!(
        d.register_window("again", SCREEN, WindowToken(2)),
        Err(DispatchError::DuplicateToken(_))
    ));
    let down = d
        .inject_motion(&touch(MOTION_ACTION_DOWN, 50.0, 50.0))
        .unwrap();
    assert_eq!(down.token, WindowToken(2));
    // The gesture stays with its window even outside its bounds.
    let moved = d
        .inject_motion(&touch(MOTION_ACTION_MOVE, 500.0, 500.0))
        .unwrap();
    assert_eq!(moved.token, WindowToken(2));
    d.inject_motion(&touch(MOTION_ACTION_UP, 500.0, 500.0))
        .unwrap();
    let next = d
        .inject_motion(&touch(MOTION_ACTION_DOWN, 500.0, 500.0))
        .unwrap();
    assert_eq!(next.token, WindowToken(1));
    assert!(matches!(
        d.inject_motion(&touch(MOTION_ACTION_DOWN, 5000.0, 5.0)),
        Err(DispatchError::NoWindowAt { .. })
    ));
    let top = InputChannel::from_tube_end("top", top);
    let bottom = InputChannel::from_tube_end("bottom", bottom);
    let seqs = |c: &InputChannel| {
        let mut seqs = Vec::new();
        while let Ok(m) = c.receive_message() {
            seqs.push(m.seq());
        }
        seqs
    };
    assert_eq!(seqs(&top), [down.seq, moved.seq, moved.seq + 1]);
    assert_eq!(seqs(&bottom), [next.seq]);
}

#[test]
fn a_channel_that_blocks_with_nothing_waiting_is_broken() {
    // An application that answers events it never read: the dispatcher's wait queue empties
    // while the channel fills up.
    let mut d = dispatcher(LONG);
    let client =
        InputChannel::from_tube_end("liar", d.register_window("liar", SCREEN, APP).unwrap());
    d.set_focus(Some(APP)).unwrap();
    let mut seq_answered = 1;
    let mut events = Vec::new();
    for i in 0..10_000 {
        let sent = match d.inject_key(&key(i + 1)) {
            Ok(sent) => sent,
            Err(DispatchError::NoFocusedWindow) => break,
            Err(e) => panic!("{e}"),
        };
        if d.windows().is_empty() {
            break; // removed while publishing
        }
        while seq_answered <= sent.seq {
            let finished = InputMessage::Finished {
                seq: seq_answered,
                handled: true,
                consume_time: now_nanos(),
            };
            client.send_message(&finished).unwrap();
            seq_answered += 1;
        }
        events.extend(d.pump(Duration::ZERO).unwrap());
        if !events.is_empty() {
            break;
        }
    }
    events.extend(d.pump(Duration::ZERO).unwrap());
    assert!(
        events.iter().any(|e| matches!(
            e,
            DispatchEvent::WindowRemoved {
                reason: RemovalReason::BrokenChannel,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(d.windows().is_empty());
}

#[test]
fn a_dispatcher_thread_serves_calls_from_other_threads() {
    const TEST: &str = "a_dispatcher_thread_serves_calls_from_other_threads";
    if let Some(role) = child_role() {
        return run_app(&role);
    }
    let service = DispatcherThread::start(DispatcherConfig { anr_timeout: LONG }).unwrap();
    let (child, control) = spawn_child(TEST, "ordered");
    std::thread::scope(|s| {
        // What binder threads will do: register (and hand out the client end), focus, inject.
        s.spawn(|| {
            let client = service.lock().register_window("app", SCREEN, APP).unwrap();
            send_end(&control, "app", client);
            service.lock().set_focus(Some(APP)).unwrap();
        })
        .join()
        .unwrap();
        let injectors: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..50 {
                        service
                            .lock()
                            .inject_motion(&touch(MOTION_ACTION_DOWN, 1.0, 1.0))
                            .unwrap();
                    }
                })
            })
            .collect();
        for injector in injectors {
            injector.join().unwrap();
        }
    });
    // Only the dispatcher's own thread reads the finished signals.
    let deadline = Instant::now() + LONG;
    while service.lock().stats().finished < 101 {
        assert!(Instant::now() < deadline, "{:?}", service.lock().stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(service.lock().is_idle());
    // What a death notification will do, from yet another thread.
    std::thread::scope(|s| {
        s.spawn(|| assert!(service.lock().unregister_window(APP)));
    });
    match service.events().recv_timeout(LONG).unwrap() {
        DispatchEvent::WindowRemoved { token, reason, .. } => {
            assert_eq!((token, reason), (APP, RemovalReason::Unregistered))
        }
        other => panic!("expected the window's removal, got {other:?}"),
    }
    let report = Report::parse(&recv_control(&control).expect("report"));
    assert_eq!((report.motion_seqs, report.focus), (100, 1));
    wait_success(child);
    service.stop().unwrap();
}

mod decode_props {
    use super::*;
    use proptest::prelude::*;

    fn pointer() -> impl Strategy<Value = Pointer> {
        (any::<i32>(), any::<u32>(), any::<[f32; 7]>()).prop_map(|(id, tool_type, a)| Pointer {
            id,
            tool_type,
            x: a[0],
            y: a[1],
            pressure: a[2],
            size: a[3],
            touch_major: a[4],
            touch_minor: a[5],
            orientation: a[6],
        })
    }

    proptest! {
        /// Any bytes: an error or a message, never a panic; a message re-encodes to the
        /// same bytes except reserved fields and booleans, which are normalised.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            if let Ok(message) = InputMessage::decode(&bytes) {
                let mut buf = [0u8; message::MAX_MESSAGE_SIZE];
                let len = message.encode(&mut buf).unwrap();
                prop_assert_eq!(len, bytes.len());
            }
        }

        /// Headers of a known type followed by any bytes of any length.
        #[test]
        fn typed_garbage_is_rejected_or_exact(kind in 1u32..=4, seq in any::<u32>(),
                                              tail in proptest::collection::vec(any::<u8>(), 0..700)) {
            let mut bytes = bytemuck::bytes_of(&Header { kind, seq }).to_vec();
            bytes.extend_from_slice(&tail);
            match InputMessage::decode(&bytes) {
                Ok(m) => prop_assert_eq!(m.seq(), seq),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// Valid motions survive the trip through a real channel.
        #[test]
        fn motions_round_trip(seq in 1u32.., pointers in proptest::collection::vec(pointer(), 1..=16),
                              device_id in any::<i32>(), event_time in any::<i64>()) {
            let (server, client) = InputChannel::pair("p").unwrap();
            let mut event = MotionEvent::touch(MOTION_ACTION_MOVE, 0.0, 0.0, 1, event_time);
            event.device_id = device_id;
            event.pointers = pointers;
            InputPublisher::new(server).publish_motion(seq, &event).unwrap();
            match client.receive_message().unwrap() {
                InputMessage::Motion { seq: got_seq, event: got } => {
                    prop_assert_eq!(got_seq, seq);
                    // Compare bit patterns: NaN axes must survive too.
                    prop_assert_eq!(format!("{:?}", got.pointers.iter().map(|p| bytemuck::bytes_of(p).to_vec()).collect::<Vec<_>>()),
                                    format!("{:?}", event.pointers.iter().map(|p| bytemuck::bytes_of(p).to_vec()).collect::<Vec<_>>()));
                    prop_assert_eq!(got.event_time, event_time);
                    prop_assert_eq!(got.device_id, device_id);
                }
                other => prop_assert!(false, "got {:?}", other),
            }
        }
    }
}

#[test]
fn finished_signals_wait_in_the_consumer_while_the_channel_is_full() {
    let (server, client) = InputChannel::pair("app").unwrap();
    let publisher = InputPublisher::new(server);
    let mut consumer = InputConsumer::new(client);
    // The publisher does not read: answers pile up until the channel is full.
    let mut seq = 0;
    while consumer.unsent_finished() == 0 {
        seq += 1;
        assert!(seq < 100_000, "the channel never filled up");
        publisher.publish_key(seq, &key(1)).unwrap();
        let events = consumer.consume(None).unwrap();
        assert_eq!(events.len(), 1);
        consumer.finish(&events[0], true).unwrap();
    }
    let mut answered = Vec::new();
    loop {
        match publisher.receive_finished() {
            Ok(f) => answered.push(f.seq),
            Err(ChannelError::WouldBlock) => {
                if consumer.unsent_finished() == 0 {
                    break;
                }
                consumer.flush_finished().unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        answered,
        (1..=seq).collect::<Vec<_>>(),
        "every seq, in order"
    );
    assert_eq!(consumer.stats().finished_sent, u64::from(seq));
}

// ---------------------------------------------------------------------------------------------
// Through binder: a host process runs the driver shim and the service manager; the dispatcher
// service and the application are two more processes.

#[test]
fn windows_register_through_binder_and_a_dead_apps_window_is_removed() {
    const TEST: &str = "windows_register_through_binder_and_a_dead_apps_window_is_removed";
    match child_role().as_deref() {
        Some("host") => return binder_host(TEST),
        Some("service") => return binder_service(),
        Some("app") => return binder_app(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let (child, _control) = spawn_child(TEST, "host");
    wait_success(child);
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not done in {LONG:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn binder_host(test: &str) {
    let driver = Driver::start().expect("driver shim");
    let ps = ProcessState::open_shim(driver.socket_path()).expect("host process");
    let _sm = ServiceManager::serve(&ps, default_policy()).expect("service manager");
    let env = [(ENV_SOCKET, driver.socket_path().as_os_str())];
    let (service, service_control) = spawn_child_env(test, "service", &env);
    assert_eq!(recv_control(&service_control).unwrap(), "registered");
    let (mut app, app_control) = spawn_child_env(test, "app", &env);
    assert_eq!(recv_control(&app_control).unwrap(), "consuming");
    assert_eq!(recv_control(&service_control).unwrap(), "all finished");
    app.kill().expect("kill app");
    app.wait().expect("reap app");
    assert_eq!(
        recv_control(&service_control).unwrap(),
        "windows 0 tokens 0 fds 0",
        "the dead app's window, its token and every fd are gone"
    );
    wait_success(service);
    ps.shutdown(LONG).expect("host shutdown");
}

fn binder_service() {
    let control = control_in_child();
    let before = open_fds();
    let (windows, tokens) = {
        let ps = ProcessState::open().expect("binder");
        ps.start_thread_pool().expect("thread pool");
        let dispatcher = Arc::new(
            DispatcherThread::start(DispatcherConfig { anr_timeout: LONG }).expect("dispatcher"),
        );
        let service = InputService::new(Arc::clone(&dispatcher));
        let sm = ServiceManagerClient::new(&ps).expect("service manager");
        sm.add_service(SERVICE_NAME, &Binder::Local(service.clone()))
            .expect("add service");
        send_with_fds(&control, b"registered", &[]).unwrap();

        // The app registers two windows, drops one, focuses the other and injects 10 keys.
        let stats = || dispatcher.lock().stats();
        wait_until("the app's keys", || stats().dispatched >= 11);
        assert_eq!(dispatcher.lock().windows().len(), 1);
        assert_eq!(service.token_count(), 1);
        // Motions from this process, as an input reader would inject them.
        let t = now_nanos();
        let mut gesture = vec![MotionEvent::touch(MOTION_ACTION_DOWN, 5.0, 5.0, t, t)];
        for i in 0..48 {
            gesture.push(touch(MOTION_ACTION_MOVE, 5.0 + i as f32, 5.0));
        }
        gesture.push(touch(MOTION_ACTION_UP, 60.0, 5.0));
        for event in &gesture {
            dispatcher
                .lock()
                .inject_motion(event)
                .expect("inject motion");
        }
        wait_until("every event finished", || {
            let d = dispatcher.lock();
            d.stats().finished == 61 && d.is_idle()
        });
        send_with_fds(&control, b"all finished", &[]).unwrap();

        // The host kills the app: the token's death notification removes its window (unless
        // the dead channel was noticed first) and lets go of the token either way.
        wait_until("the dead app's window removed", || {
            dispatcher.lock().windows().is_empty() && service.token_count() == 0
        });
        let removed: Vec<_> = dispatcher.events().try_iter().collect();
        assert!(
            removed.iter().any(|e| matches!(
                e,
                DispatchEvent::WindowRemoved {
                    name,
                    reason: RemovalReason::DeadObject | RemovalReason::Unregistered,
                    ..
                } if name == "binder-app"
            )),
            "{removed:?}"
        );
        let left = (dispatcher.lock().windows().len(), service.token_count());
        service.clear();
        drop(sm);
        ps.shutdown(LONG).expect("service shutdown");
        left
    };
    let fds = open_fds() as i64 - before as i64;
    let report = format!("windows {windows} tokens {tokens} fds {fds}");
    send_with_fds(&control, report.as_bytes(), &[]).unwrap();
}

fn binder_app() {
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
        .register_window("binder-app", SCREEN, &token)
        .expect("register window");
    assert!(matches!(
        client.register_window("again", SCREEN, &token),
        Err(BinderError::BadValue(_))
    ));
    let other = Binder::new(WindowTokenService);
    let small = Bounds {
        left: 900.0,
        top: 900.0,
        right: 950.0,
        bottom: 950.0,
    };
    let other_channel = client.register_window("other", small, &other).unwrap();
    assert!(client.unregister_window(&other).unwrap());
    assert!(!client.unregister_window(&other).unwrap());
    let mut gone = InputConsumer::new(other_channel);
    assert!(matches!(gone.consume(None), Err(ChannelError::DeadObject)));

    client.set_focus(Some(&token)).expect("focus");
    for i in 0..10 {
        client.inject_key(&key(i + 1)).expect("inject key");
    }
    assert!(matches!(
        client.inject_bytes(&motion_bytes(17, 17)),
        Err(BinderError::BadValue(_))
    ));
    send_with_fds(&control, b"consuming", &[]).unwrap();

    // Consume until killed.
    let mut consumer = InputConsumer::new(channel);
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        consumer
            .channel()
            .wait_readable(Duration::from_millis(100))
            .unwrap();
        for event in consumer.consume(None).expect("consume") {
            consumer.finish(&event, true).expect("finish");
        }
    }
    panic!("the app was not killed");
}

#[test]
fn moves_batch_per_device_and_source_until_the_frame_time() {
    let (server, client) = InputChannel::pair("app").unwrap();
    let publisher = InputPublisher::new(server);
    let mut consumer = InputConsumer::new(client);
    let motion = |device: i32, source: u32, action: u32, time: i64| {
        let mut e = MotionEvent::touch(action, time as f32, 0.0, 0, time);
        e.device_id = device;
        e.source = source;
        e
    };
    // Device 1 and device 2 move in turns; device 1 also on a second source.
    let mut seq = 0;
    let mut publish = |e: MotionEvent| {
        seq += 1;
        publisher.publish_motion(seq, &e).unwrap();
        seq
    };
    for t in 1..=4 {
        publish(motion(1, SOURCE_TOUCHSCREEN, MOTION_ACTION_MOVE, t * 10)); // 1 3 5 7
        publish(motion(
            2,
            SOURCE_TOUCHSCREEN,
            MOTION_ACTION_MOVE,
            t * 10 + 1,
        )); // 2 4 6 8
    }
    publish(motion(1, 0x2002, MOTION_ACTION_MOVE, 25)); // 9: another source
                                                        // Frame at 25: samples taken after it wait for the next frame.
    let events = consumer.consume(Some(25)).unwrap();
    let batches: Vec<(i32, u32, Vec<u32>, i64)> = events
        .iter()
        .map(|e| match e {
            ConsumedEvent::Motion { seqs, event } => (
                event.device_id,
                event.source,
                seqs.clone(),
                event.event_time,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        batches,
        [
            (1, SOURCE_TOUCHSCREEN, vec![1, 3], 20),
            (2, SOURCE_TOUCHSCREEN, vec![2, 4], 21),
            (1, 0x2002, vec![9], 25),
        ],
        "one event per (device, source), the newest sample at or before the frame"
    );
    assert!(consumer.has_pending_batch());
    // An UP of device 1 flushes device 1's batch first, whatever the frame time.
    publish(motion(1, SOURCE_TOUCHSCREEN, MOTION_ACTION_UP, 50)); // 10
    let events = consumer.consume(Some(0)).unwrap();
    let seqs: Vec<Vec<u32>> = events.iter().map(|e| e.seqs().to_vec()).collect();
    assert_eq!(seqs, [vec![5, 7], vec![10]]);
    // Without a frame time nothing waits.
    let events = consumer.consume(None).unwrap();
    let seqs: Vec<Vec<u32>> = events.iter().map(|e| e.seqs().to_vec()).collect();
    assert_eq!(seqs, [vec![6, 8]]);
    assert!(!consumer.has_pending_batch());
    let stats = consumer.stats();
    assert_eq!((stats.batches, stats.batched_samples), (4, 8));
}
