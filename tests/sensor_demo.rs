//! The sensor service end to end: delivery to a client process, the drop-oldest cache of a
//! client that stops reading, flush-complete ordering, wake-up acks and their timeout, cleanup
//! after a killed client (fds counted), the direct channel, mio and tokio clients.
//!
//! Until the binder runtime lands, the test plays the binder part: it calls the service's
//! operations directly and hands the client's tube end (or the direct channel's memfd) to a
//! child process by SCM_RIGHTS. Children are this test binary re-executed with
//! `BITTUBE_CHILD=<role>`; their stdin is the control socket (SEQPACKET). A child reports its
//! counts back as one `Report` packet on the control socket. Assertions are on counts; time
//! limits only guard against hangs.

mod common;
use common::*;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use bittube::binder_ipc::runtime::ProcessState;
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager};
use bittube::binder_ipc::shim::ENV_SOCKET;
use bittube::bittube::{TubeEnd, TubeError};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use bittube::sensor_demo::binder::SERVICE_NAME;
use bittube::sensor_demo::event::TYPE_ACCELEROMETER;
use bittube::sensor_demo::sensors::{ACCELEROMETER, ACCELEROMETER_WAKE_UP, SIGNIFICANT_MOTION};
use bittube::sensor_demo::{
    sensor_server, ConnectionId, ConnectionStats, DirectChannelReader, DirectRate, SensorEvent,
    SensorEventQueue, SensorManager, SensorService, ServiceConfig, MAX_RECEIVE_EVENTS,
};
use bytemuck::{Pod, Zeroable};

/// What a child saw, sent back as one packet.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
struct Report {
    /// All events read (sensor and meta).
    events: u64,
    /// Sensor events (not meta).
    sensor_events: u64,
    /// Flush-complete meta events.
    flush_completes: u64,
    /// Events read before the first flush-complete.
    before_first_flush: u64,
    /// Sensor named by the first flush-complete (0: none).
    flushed_sensor: u64,
    /// 1 if timestamps (per sensor) and direct-channel counters strictly increased.
    increasing: u64,
    /// Events flagged for ack.
    wakeups: u64,
    /// Ack counts sent.
    acks_sent: u64,
    /// Direct channel: last counter, records lost.
    last_counter: u64,
    lost: u64,
}

/// Hand `fd` to the child over the control socket.
fn send_fd(control: &OwnedFd, fd: impl AsFd) {
    send_with_fds(control, b"fd", &[fd.as_fd()]).expect("send fd to child");
}

fn recv_fd(control: &OwnedFd) -> OwnedFd {
    let mut buf = [0u8; 8];
    let mut got = recv_with_fds(control, &mut buf, 1).expect("receive fd");
    assert_eq!(got.fds.len(), 1, "one fd expected");
    got.fds.pop().unwrap()
}

fn send_report(control: &OwnedFd, report: &Report) {
    send_with_fds(control, bytemuck::bytes_of(report), &[]).expect("send report");
}

fn recv_report(control: &OwnedFd) -> Report {
    let mut report = Report::zeroed();
    let got = recv_with_fds(control, bytemuck::bytes_of_mut(&mut report), 0).expect("report");
    assert_eq!(
        got.len,
        std::mem::size_of::<Report>(),
        "child sent no report"
    );
    report
}

/// Poll `cond` on the connection's stats until it holds (panics after [`LONG`]).
fn wait_stats(
    svc: &SensorService,
    id: ConnectionId,
    what: &str,
    cond: impl Fn(&ConnectionStats) -> bool,
) -> ConnectionStats {
    let deadline = Instant::now() + LONG;
    loop {
        let stats = svc.connection_stats(id).expect("connection stats");
        if cond(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "waited {LONG:?} for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Child role "reader": read with a SensorEventQueue (auto-acks) until the service closes
/// the connection; report.
fn reader_child() {
    let control = control_in_child();
    let tube = TubeEnd::try_from_socket(recv_fd(&control)).expect("a tube");
    let mut queue = SensorEventQueue::new(tube);
    let mut report = Report {
        increasing: 1,
        ..Report::default()
    };
    let mut last_ts = std::collections::HashMap::new();
    let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    loop {
        let n = match queue.read_timeout(&mut buf, LONG) {
            Ok(n) => n,
            Err(TubeError::PeerClosed) => break,
            Err(e) => panic!("read: {e}"),
        };
        for e in &buf[..n] {
            report.events += 1;
            if let Some(sensor) = e.flushed_sensor() {
                if report.flush_completes == 0 {
                    report.before_first_flush = report.events - 1;
                    report.flushed_sensor = sensor as u64;
                }
                report.flush_completes += 1;
                continue;
            }
            report.sensor_events += 1;
            if let Some(prev) = last_ts.insert(e.sensor, e.timestamp) {
                if e.timestamp <= prev {
                    report.increasing = 0;
                }
            }
        }
    }
    report.wakeups = queue.stats().wakeups;
    report.acks_sent = queue.stats().acks_sent;
    send_report(&control, &report);
}

/// Child role "idle": hold the tube end, never read, until the parent closes the control
/// socket.
fn idle_child() {
    let control = control_in_child();
    let _tube = recv_fd(&control);
    let mut buf = [0u8; 8];
    let _ = recv_with_fds(&control, &mut buf, 0); // returns at EOF
}

#[test]
fn client_process_receives_200hz_stream() {
    if let Some(role) = child_role() {
        assert_eq!(role, "reader");
        return reader_child();
    }
    let svc = SensorService::start().unwrap();
    let (id, end) = svc.create_connection().unwrap();
    let (child, control) = spawn_child("client_process_receives_200hz_stream", "reader");
    send_fd(&control, &end);
    drop(end);
    svc.enable(id, ACCELEROMETER, Duration::from_millis(5), Duration::ZERO)
        .unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    svc.disable(id, ACCELEROMETER).unwrap();
    let elapsed = start.elapsed();
    wait_stats(&svc, id, "an empty cache", |s| {
        s.cached == 0 && s.pending == 0
    });
    let stats = svc.destroy(id).unwrap();
    wait_success(child);
    let report = recv_report(&control);

    let expected = elapsed.as_secs_f64() * 200.0;
    assert!(
        report.sensor_events as f64 >= 0.9 * expected,
        "received {} of ~{expected:.0} events; {stats:?}",
        report.sensor_events
    );
    assert_eq!(report.increasing, 1, "timestamps must increase");
    // Nothing lost beyond counted drops: the client got every event the service sent.
    assert_eq!(report.events, stats.events_sent, "{stats:?}");
    assert_eq!(
        stats.events_queued,
        stats.events_sent + stats.events_dropped + stats.events_discarded,
        "{stats:?}"
    );
    assert_eq!(stats.events_discarded, 0);
}

#[test]
fn stalled_client_fills_its_cache_and_others_are_unaffected() {
    match child_role().as_deref() {
        Some("reader") => return reader_child(),
        Some("idle") => return idle_child(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let test = "stalled_client_fills_its_cache_and_others_are_unaffected";
    let svc = SensorService::with_config(ServiceConfig {
        cache_capacity: 200,
        ..ServiceConfig::default()
    })
    .unwrap();
    let (stalled, stalled_end) = svc.create_connection().unwrap();
    let (healthy, healthy_end) = svc.create_connection().unwrap();
    let (idle, idle_control) = spawn_child(test, "idle");
    let (reader, reader_control) = spawn_child(test, "reader");
    send_fd(&idle_control, &stalled_end);
    send_fd(&reader_control, &healthy_end);
    drop((stalled_end, healthy_end));
    svc.enable(
        stalled,
        ACCELEROMETER,
        Duration::from_millis(1),
        Duration::ZERO,
    )
    .unwrap();
    svc.enable(
        healthy,
        ACCELEROMETER,
        Duration::from_millis(5),
        Duration::ZERO,
    )
    .unwrap();

    let s = wait_stats(&svc, stalled, "drops on the stalled connection", |s| {
        s.events_dropped >= 100
    });
    assert_eq!(s.cached, 200, "the cache is full: {s:?}");
    assert!(s.tube_full > 0);
    svc.disable(stalled, ACCELEROMETER).unwrap();
    svc.disable(healthy, ACCELEROMETER).unwrap();
    wait_stats(&svc, healthy, "an empty cache", |s| {
        s.cached == 0 && s.pending == 0
    });
    let stalled_stats = svc.destroy(stalled).unwrap();
    let healthy_stats = svc.destroy(healthy).unwrap();
    drop(idle_control);
    wait_success(idle);
    wait_success(reader);
    let report = recv_report(&reader_control);

    // Every event of the stalled connection is sent, dropped (counted) or discarded at the end.
    assert_eq!(
        stalled_stats.events_queued,
        stalled_stats.events_sent + stalled_stats.events_dropped + stalled_stats.events_discarded,
        "{stalled_stats:?}"
    );
    assert!(stalled_stats.events_dropped >= 100);
    assert_eq!(stalled_stats.cache_peak, 200);
    // The healthy client lost nothing and got everything it was sent.
    assert_eq!(healthy_stats.events_dropped, 0, "{healthy_stats:?}");
    assert_eq!(healthy_stats.events_sent, healthy_stats.events_queued);
    assert!(healthy_stats.events_sent > 0);
    assert_eq!(report.events, healthy_stats.events_sent);
    assert_eq!(report.increasing, 1);
}

#[test]
fn flush_complete_follows_the_events_pending_before_it() {
    if let Some(role) = child_role() {
        assert_eq!(role, "reader");
        return reader_child();
    }
    let svc = SensorService::start().unwrap();
    let (id, end) = svc.create_connection().unwrap();
    assert_eq!(svc.connection_stats(id).unwrap().buffer_size, 4096);
    let (child, control) = spawn_child(
        "flush_complete_follows_the_events_pending_before_it",
        "reader",
    );
    send_fd(&control, &end);
    drop(end);
    // Batching: events may wait 60 s, so nothing is sent before the flush.
    svc.enable(
        id,
        ACCELEROMETER,
        Duration::from_millis(5),
        Duration::from_secs(60),
    )
    .unwrap();
    let batched = svc.connection_stats(id).unwrap().buffer_size;
    assert_eq!(
        batched,
        (100 * 1024).min(bittube::sensor_demo::service::read_wmem_max())
    );
    let before = wait_stats(&svc, id, "batched events", |s| s.events_queued >= 50);
    assert_eq!(
        before.events_sent, 0,
        "batched events went out early: {before:?}"
    );
    let flush = svc.flush(id, ACCELEROMETER).unwrap();
    assert!(flush.events_before >= 50);
    svc.disable(id, ACCELEROMETER).unwrap();
    // Disabling sends what was batched since the flush.
    let stats = wait_stats(&svc, id, "nothing pending or cached", |s| {
        s.cached == 0 && s.pending == 0
    });
    assert_eq!(stats.events_dropped, 0);
    assert_eq!(stats.events_sent, stats.events_queued);
    assert!(
        stats.packets_sent < stats.events_sent,
        "events travel in batches"
    );
    svc.destroy(id).unwrap();
    wait_success(child);
    let report = recv_report(&control);

    assert_eq!(report.events, stats.events_sent);
    assert_eq!(report.flush_completes, 1);
    assert_eq!(report.flushed_sensor, ACCELEROMETER as u64);
    assert_eq!(
        report.before_first_flush, flush.events_before,
        "the flush-complete event must come right after the events queued before it"
    );
    assert_eq!(report.increasing, 1);
}

#[test]
fn wake_up_events_are_acknowledged_by_the_client() {
    if let Some(role) = child_role() {
        assert_eq!(role, "reader");
        return reader_child();
    }
    // A timeout far longer than the test: only acks can bring the count back to zero.
    let svc = SensorService::with_config(ServiceConfig {
        wakeup_timeout: Duration::from_secs(600),
        ..ServiceConfig::default()
    })
    .unwrap();
    let (id, end) = svc.create_connection().unwrap();
    let (child, control) = spawn_child("wake_up_events_are_acknowledged_by_the_client", "reader");
    send_fd(&control, &end);
    drop(end);
    svc.enable(
        id,
        ACCELEROMETER_WAKE_UP,
        Duration::from_millis(10),
        Duration::ZERO,
    )
    .unwrap();
    wait_stats(&svc, id, "wake-up packets", |s| s.wakeup_flagged >= 20);
    svc.disable(id, ACCELEROMETER_WAKE_UP).unwrap();
    let stats = wait_stats(&svc, id, "every wake-up acknowledged", |s| {
        s.cached == 0 && s.wakeup_outstanding == 0
    });
    assert_eq!(stats.acks_received, stats.wakeup_flagged, "{stats:?}");
    assert_eq!(stats.wakeup_timeouts, 0);
    assert_eq!(stats.acks_unmatched, 0);
    svc.destroy(id).unwrap();
    wait_success(child);
    let report = recv_report(&control);
    assert_eq!(report.wakeups, stats.wakeup_flagged);
    assert_eq!(report.acks_sent, stats.acks_received);
}

#[test]
fn unacknowledged_wake_ups_are_released_by_the_timeout() {
    if let Some(role) = child_role() {
        assert_eq!(role, "idle");
        return idle_child();
    }
    let svc = SensorService::with_config(ServiceConfig {
        wakeup_timeout: Duration::from_millis(200),
        ..ServiceConfig::default()
    })
    .unwrap();
    let (id, end) = svc.create_connection().unwrap();
    let (child, control) = spawn_child(
        "unacknowledged_wake_ups_are_released_by_the_timeout",
        "idle",
    );
    send_fd(&control, &end);
    drop(end);
    svc.enable(
        id,
        ACCELEROMETER_WAKE_UP,
        Duration::from_millis(20),
        Duration::ZERO,
    )
    .unwrap();
    wait_stats(&svc, id, "wake-up packets", |s| s.wakeup_flagged >= 5);
    svc.disable(id, ACCELEROMETER_WAKE_UP).unwrap();
    let stats = wait_stats(&svc, id, "wake-ups released", |s| s.wakeup_outstanding == 0);
    assert_eq!(stats.acks_received, 0);
    assert_eq!(stats.wakeup_timeouts, stats.wakeup_flagged, "{stats:?}");
    svc.destroy(id).unwrap();
    drop(control);
    wait_success(child);
}

#[test]
fn killed_client_connection_is_cleaned_up() {
    match child_role().as_deref() {
        Some("service") => return killed_client_service(),
        Some("reader-forever") => {
            let control = control_in_child();
            let tube = TubeEnd::try_from_socket(recv_fd(&control)).expect("a tube");
            let mut queue = SensorEventQueue::new(tube);
            let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
            queue.read_timeout(&mut buf, LONG).expect("first event");
            send_with_fds(&control, b"reading", &[]).unwrap();
            loop {
                match queue.read_timeout(&mut buf, LONG) {
                    Ok(_) | Err(TubeError::TimedOut { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        Some("holder") => {
            // Holds its tube end without any sensor enabled: only the hang-up tells the
            // service it died.
            let control = control_in_child();
            let _tube = recv_fd(&control);
            send_with_fds(&control, b"reading", &[]).unwrap();
            let mut buf = [0u8; 8];
            let _ = recv_with_fds(&control, &mut buf, 0);
            std::thread::sleep(LONG);
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    // The service runs in a child of its own, where no other test opens fds meanwhile.
    let (child, _control) = spawn_child("killed_client_connection_is_cleaned_up", "service");
    wait_success(child);
}

fn killed_client_service() {
    let test = "killed_client_connection_is_cleaned_up";
    let svc = SensorService::start().unwrap();
    let baseline = open_fds();
    // One client streams at 1 kHz when it dies, the other has no sensor enabled.
    let (streaming, streaming_end) = svc.create_connection().unwrap();
    let (quiet, quiet_end) = svc.create_connection().unwrap();
    svc.enable(
        streaming,
        ACCELEROMETER,
        Duration::from_millis(1),
        Duration::ZERO,
    )
    .unwrap();
    let mut clients = Vec::new();
    for (role, end) in [("reader-forever", streaming_end), ("holder", quiet_end)] {
        let (client, control) = spawn_child(test, role);
        send_fd(&control, &end);
        drop(end);
        let mut buf = [0u8; 16];
        let got = recv_with_fds(&control, &mut buf, 0).unwrap();
        assert_eq!(&buf[..got.len], b"reading");
        clients.push((client, control));
    }
    assert_eq!(svc.stats().unwrap().connections, 2);
    for (mut client, control) in clients {
        client.kill().unwrap();
        client.wait().unwrap();
        drop(control);
    }

    let deadline = Instant::now() + LONG;
    let stats = loop {
        let stats = svc.stats().unwrap();
        if stats.connections == 0 {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "connections not cleaned up: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(stats.closed_by_peer, 2, "{stats:?}");
    assert!(
        stats.active_sensors.is_empty(),
        "HAL still running: {stats:?}"
    );
    for id in [streaming, quiet] {
        assert!(matches!(
            svc.connection_stats(id),
            Err(bittube::sensor_demo::SensorError::NoSuchConnection(_))
        ));
    }
    assert_eq!(open_fds(), baseline, "fds leaked");
}

#[test]
fn direct_channel_delivers_increasing_counters() {
    if let Some(role) = child_role() {
        assert_eq!(role, "direct");
        let control = control_in_child();
        let mut reader = DirectChannelReader::new(recv_fd(&control)).expect("map ring");
        let mut records = Vec::new();
        let deadline = Instant::now() + LONG;
        while records.len() < 100 {
            assert!(Instant::now() < deadline, "only {} records", records.len());
            reader.read(&mut records, usize::MAX);
            std::thread::sleep(Duration::from_millis(2));
        }
        let counters: Vec<u32> = records.iter().map(|r| r.reserved0 as u32).collect();
        let increasing = counters.windows(2).all(|w| w[0] < w[1])
            && records.windows(2).all(|w| w[0].timestamp < w[1].timestamp)
            && records.iter().all(|r| {
                r.sensor == ACCELEROMETER && r.kind == TYPE_ACCELEROMETER && r.version == 104
            });
        send_report(
            &control,
            &Report {
                events: records.len() as u64,
                increasing: u64::from(increasing),
                last_counter: u64::from(reader.last_counter()),
                lost: reader.lost(),
                ..Report::default()
            },
        );
        return;
    }
    let svc = SensorService::start().unwrap();
    let (id, fd) = svc.create_direct_channel(64).unwrap();
    assert!(svc
        .configure_direct_channel(id, SIGNIFICANT_MOTION, DirectRate::Fast)
        .is_err());
    svc.configure_direct_channel(id, ACCELEROMETER, DirectRate::Fast)
        .unwrap();
    let (child, control) = spawn_child("direct_channel_delivers_increasing_counters", "direct");
    send_fd(&control, &fd);
    drop(fd);
    wait_success(child);
    let report = recv_report(&control);
    let stats = svc.stats().unwrap();
    svc.destroy_direct_channel(id).unwrap();
    assert!(report.events >= 100);
    assert_eq!(report.increasing, 1, "{report:?}");
    assert_eq!(report.events + report.lost, report.last_counter);
    assert!(stats.direct_records >= report.last_counter);
}

#[test]
fn queue_is_a_mio_source() {
    let svc = SensorService::start().unwrap();
    let (id, end) = svc.create_connection().unwrap();
    let mut queue = SensorEventQueue::new(end);
    let mut poll = mio::Poll::new().unwrap();
    poll.registry()
        .register(&mut queue, mio::Token(7), mio::Interest::READABLE)
        .unwrap();
    svc.enable(id, ACCELEROMETER, Duration::from_millis(5), Duration::ZERO)
        .unwrap();
    let mut events = mio::Events::with_capacity(4);
    let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    let mut got = 0;
    let deadline = Instant::now() + LONG;
    while got < 20 {
        assert!(Instant::now() < deadline);
        poll.poll(&mut events, Some(LONG)).unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        loop {
            match queue.read(&mut buf) {
                Ok(n) => got += n,
                Err(TubeError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    svc.destroy(id).unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn queue_is_a_tokio_stream_that_acks() {
    use futures_util::StreamExt;
    let svc = SensorService::with_config(ServiceConfig {
        wakeup_timeout: Duration::from_secs(600),
        ..ServiceConfig::default()
    })
    .unwrap();
    let (id, end) = svc.create_connection().unwrap();
    let mut stream = SensorEventQueue::new(end).into_stream().unwrap();
    svc.enable(
        id,
        ACCELEROMETER_WAKE_UP,
        Duration::from_millis(5),
        Duration::ZERO,
    )
    .unwrap();
    let mut last = i64::MIN;
    for _ in 0..20 {
        let e = tokio::time::timeout(LONG, stream.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("good event");
        assert_eq!(e.sensor, ACCELEROMETER_WAKE_UP);
        assert!(e.timestamp > last);
        last = e.timestamp;
    }
    svc.disable(id, ACCELEROMETER_WAKE_UP).unwrap();
    let acks = stream.stats().acks_sent;
    assert!(acks > 0);
    let deadline = Instant::now() + LONG;
    loop {
        let s = svc.connection_stats(id).unwrap();
        // Acks for packets already read have reached the service.
        if s.acks_received >= acks {
            assert_eq!(s.wakeup_timeouts, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    svc.destroy(id).unwrap();
    // The service closed its end: the stream yields what was sent, then ends.
    while let Some(item) = tokio::time::timeout(LONG, stream.next())
        .await
        .expect("the stream ends")
    {
        item.unwrap();
    }
}

#[test]
fn every_sensor_of_the_list_delivers_its_events() {
    let svc = SensorService::start().unwrap();
    let list = svc.sensor_list();
    assert_eq!(list.len(), 6);
    assert!(list.iter().any(|s| s.is_wake_up()));
    let (id, end) = svc.create_connection().unwrap();
    let mut queue = SensorEventQueue::new(end);
    for s in &list {
        // Period 0 asks for the fastest rate: clamped to the sensor's min delay.
        svc.enable(id, s.handle, Duration::ZERO, Duration::ZERO)
            .unwrap();
    }
    let stats = svc.stats().unwrap();
    let accel = stats
        .active_sensors
        .iter()
        .find(|(h, _)| *h == ACCELEROMETER)
        .expect("accelerometer HAL running");
    assert_eq!(accel.1, Duration::from_micros(568), "1760 Hz ceiling");

    let mut seen = std::collections::BTreeMap::new();
    let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    let deadline = Instant::now() + LONG;
    while seen.len() < list.len() {
        assert!(Instant::now() < deadline, "only saw {seen:?}");
        let n = queue.read_timeout(&mut buf, LONG).unwrap();
        for e in &buf[..n] {
            let info = list
                .iter()
                .find(|s| s.handle == e.sensor)
                .expect("known sensor");
            assert_eq!(e.kind, info.kind);
            assert!(!e.needs_ack() || info.is_wake_up());
            *seen.entry(e.sensor).or_insert(0u64) += 1;
        }
    }
    // Significant motion is one-shot: it fired once and disabled itself.
    assert_eq!(seen[&SIGNIFICANT_MOTION], 1);
    let active = svc.stats().unwrap().active_sensors;
    assert!(
        active.iter().all(|(h, _)| *h != SIGNIFICANT_MOTION),
        "{active:?}"
    );
    assert!(
        svc.flush(id, SIGNIFICANT_MOTION).is_err(),
        "one-shot cannot flush"
    );
    svc.destroy(id).unwrap();
    assert!(svc.stats().unwrap().active_sensors.is_empty());
}

/// Read from `queue` until `stop` says so for an event; returns the events read.
fn read_until(
    queue: &mut SensorEventQueue,
    mut stop: impl FnMut(&SensorEvent) -> bool,
) -> Vec<SensorEvent> {
    let mut got = Vec::new();
    let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    loop {
        let n = queue.read_timeout(&mut buf, LONG).expect("events");
        for e in &buf[..n] {
            got.push(*e);
            if stop(e) {
                return got;
            }
        }
    }
}

/// The client process of `sensor_service_over_binder`: everything through binder.
fn binder_client() {
    let ps = ProcessState::open().expect("binder (BITTUBE_BINDER)");
    ps.start_thread_pool().unwrap();
    let mgr = SensorManager::connect(&ps, LONG).expect("sensorservice");
    assert_eq!(
        mgr.sensor_list().unwrap(),
        bittube::sensor_demo::sensor_list()
    );

    // An event connection: the tube end comes out of the reply as a BINDER_TYPE_FD object.
    let (conn, mut queue) = mgr.create_event_queue().unwrap();
    assert!(
        conn.channel().is_err(),
        "the channel can be taken only once"
    );
    assert!(conn.enable(99, Duration::ZERO, Duration::ZERO).is_err());
    conn.enable(ACCELEROMETER, Duration::from_millis(5), Duration::ZERO)
        .unwrap();
    let mut count = 0;
    let got = read_until(&mut queue, |e| {
        count += u32::from(e.sensor == ACCELEROMETER);
        count >= 100
    });
    assert!(got.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    conn.flush().unwrap();
    let got = read_until(&mut queue, |e| e.flushed_sensor().is_some());
    assert_eq!(got.last().unwrap().flushed_sensor(), Some(ACCELEROMETER));
    conn.destroy().unwrap();
    let mut buf = [SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    loop {
        match queue.read_timeout(&mut buf, LONG) {
            Ok(_) => {}
            Err(TubeError::PeerClosed) => break,
            Err(e) => panic!("after destroy: {e}"),
        }
    }

    // A connection whose proxy is dropped: the service's object is released and the
    // connection destroyed, which the client sees as the tube closing.
    let (conn, mut queue) = mgr.create_event_queue().unwrap();
    conn.enable(ACCELEROMETER, Duration::from_millis(5), Duration::ZERO)
        .unwrap();
    read_until(&mut queue, |_| true);
    drop(conn);
    loop {
        match queue.read_timeout(&mut buf, LONG) {
            Ok(_) => {}
            Err(TubeError::PeerClosed) => break,
            Err(e) => panic!("after dropping the connection: {e}"),
        }
    }

    // The direct channel: the ring's memfd comes through binder too.
    let (direct, mut reader) = mgr.create_direct_connection(64).unwrap();
    let token = direct.configure(ACCELEROMETER, DirectRate::Fast).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + LONG;
    while records.len() < 50 {
        assert!(Instant::now() < deadline);
        reader.read(&mut records, usize::MAX);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(records.iter().all(|r| r.sensor == token));
    assert!(records
        .windows(2)
        .all(|w| (w[0].reserved0 as u32) < (w[1].reserved0 as u32)));
    direct.destroy().unwrap();
    ps.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn sensor_service_over_binder() {
    match child_role().as_deref() {
        Some("binder-client") => return binder_client(),
        Some("binder-victim") => {
            // Streams until it is killed.
            let control = control_in_child();
            let ps = ProcessState::open().expect("binder (BITTUBE_BINDER)");
            ps.start_thread_pool().unwrap();
            let mgr = SensorManager::connect(&ps, LONG).expect("sensorservice");
            let (conn, mut queue) = mgr.create_event_queue().unwrap();
            conn.enable(ACCELEROMETER, Duration::from_millis(1), Duration::ZERO)
                .unwrap();
            read_until(&mut queue, |_| true);
            send_with_fds(&control, b"reading", &[]).unwrap();
            loop {
                read_until(&mut queue, |_| true);
            }
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let test = "sensor_service_over_binder";
    let (ps, driver) = ProcessState::embedded().unwrap();
    let sm = ServiceManager::serve(&ps, default_policy()).unwrap();
    let svc = SensorService::start().unwrap();
    sm.add_local(SERVICE_NAME, sensor_server(svc.clone()));
    let env = [(ENV_SOCKET, driver.socket_path().as_os_str())];
    let (child, _control) = spawn_child_env(test, "binder-client", &env);
    wait_success(child);
    // A client killed while streaming: its connection goes too (its tube closes and the
    // driver releases its reference on the connection object).
    let (mut victim, control) = spawn_child_env(test, "binder-victim", &env);
    let mut buf = [0u8; 16];
    let got = recv_with_fds(&control, &mut buf, 0).unwrap();
    assert_eq!(&buf[..got.len], b"reading");
    assert_eq!(svc.stats().unwrap().connections, 1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let deadline = Instant::now() + LONG;
    loop {
        let stats = svc.stats().unwrap();
        if stats.connections == 0 && stats.direct_channels == 0 && stats.active_sensors.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    ps.shutdown(Duration::from_secs(5)).unwrap();
}
