//! An input dispatcher service with application processes, all talking binder: finished
//! signals, MOVE batching, an ANR.
//!
//! Processes: this program starts the binder driver shim and the service manager (the *host*),
//! then the *dispatcher* process (this program again, with `BITTUBE_INPUT_DEMO_ROLE` set),
//! which publishes the input service ([`InputService`]) and starts `--windows N` *application*
//! processes (default 3). Each application finds the service through the service manager and
//! registers a window (name, bounds, a token binder); the client end of the window's input
//! channel comes back in the reply as a `BINDER_TYPE_FD` object. The dispatcher then injects
//! synthetic input: one touch gesture per window whose MOVE samples come at `--rate` Hz
//! (default 1000), and a key every 100 ms to the focused window (the first). Applications
//! consume once per frame (`--frame-ms`, default 8; 0 = no batching, every event at once) and
//! finish every sequence number. With three windows or more, the last application stops
//! answering after one second: its ANR is reported after `--anr-ms` (default 1000).
//!
//! Before that, a raw baseline is measured in the same run: one-way latency of a 104-byte
//! packet over a SEQPACKET socketpair to another process, one packet per tick at the same rate.
//!
//! With `--evdev`, the input comes from the machine's real input devices instead
//! ([`bittube::input_demo::evdev`]: every keyboard, touch screen and mouse under `/dev/input`,
//! or only those named with `--evdev-device NAME`, grabbed exclusively with `--grab`) for
//! `--seconds`; touch screens map onto a 1000 × 1000 display, the windows side by side.
//!
//! ```text
//! cargo run --release --example input_demo -- [--windows N] [--seconds S] [--rate HZ]
//!     [--frame-ms F] [--anr-ms T] [--no-stall] [--evdev [--evdev-device NAME]... [--grab]]
//!     [--histograms]
//! ```
//! Prints dispatch latency percentiles (publish → consume time reported by the app, and
//! publish → finished signal read), events dispatched and finished, batches, ANRs; with
//! `--histograms` also both distributions, a `hist consume|finish <µs> <count>` line per
//! recorded value (for `benches/input_dispatch.rs`, which draws them). Exits 0
//! when every event of every answering application was finished.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittube::binder_ipc::runtime::{Binder, ProcessState};
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager, ServiceManagerClient};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::bittube::{BitTube, TubeEnd, TubeError};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use bittube::input_demo::binder::{InputClient, InputService, WindowTokenService, SERVICE_NAME};
use bittube::input_demo::*;
use hdrhistogram::Histogram;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

type Error = Box<dyn std::error::Error>;

const ROLE_ENV: &str = "BITTUBE_INPUT_DEMO_ROLE";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    windows: usize,
    seconds: f64,
    rate: u32,
    frame_ms: u64,
    anr_ms: u64,
    stall: bool,
    /// Print the latency histograms after the percentiles.
    histograms: bool,
    /// Real input devices instead of synthetic input.
    evdev: bool,
    evdev_devices: Vec<String>,
    grab: bool,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        windows: 3,
        seconds: 3.0,
        rate: 1000,
        frame_ms: 8,
        anr_ms: 1000,
        stall: true,
        histograms: false,
        evdev: false,
        evdev_devices: Vec::new(),
        grab: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--windows" => o.windows = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--rate" => o.rate = value()?.parse()?,
            "--frame-ms" => o.frame_ms = value()?.parse()?,
            "--anr-ms" => o.anr_ms = value()?.parse()?,
            "--no-stall" => o.stall = false,
            "--histograms" => o.histograms = true,
            "--evdev" => o.evdev = true,
            "--evdev-device" => o.evdev_devices.push(value()?),
            "--grab" => o.grab = true,
            // `cargo bench` passes this to benches/input_dispatch.rs, which runs this program.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if o.windows == 0 || o.rate == 0 {
        return Err("--windows and --rate must be at least 1".into());
    }
    Ok(o)
}

/// Start this program again as `role`; its stdin is the child's end of a control socket.
fn spawn(role: &str) -> Result<(Child, OwnedFd), Error> {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let child = Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, role)
        .stdin(Stdio::from(child))
        .spawn()?;
    Ok((child, parent))
}

fn receive_end(control: &OwnedFd) -> Result<TubeEnd, Error> {
    let mut buf = [0u8; 64];
    let got = recv_with_fds(control, &mut buf, 1)?;
    let fd = got.fds.into_iter().next().ok_or("no fd came")?;
    Ok(TubeEnd::try_from_socket(fd)?)
}

fn percentiles(name: &str, h: &Histogram<u64>) {
    println!(
        "  {name:<34} n={:<7} p50={:>6} µs  p90={:>6} µs  p99={:>6} µs  max={:>6} µs",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn summary(name: &str, s: &LatencySummary) {
    println!(
        "  {name:<34} n={:<7} p50={:>6} µs  p90={:>6} µs  p99={:>6} µs  max={:>6} µs",
        s.count, s.p50_us, s.p90_us, s.p99_us, s.max_us
    );
}

/// Application: register window `index` of `windows` through binder, consume per frame,
/// finish every seq; stop reading after `stall_ms` if set.
fn app(index: usize, windows: usize, frame_ms: u64, stall_ms: Option<u64>) -> Result<(), Error> {
    let control = std::io::stdin().as_fd().try_clone_to_owned()?;
    let ps = ProcessState::open()?;
    ps.start_thread_pool()?;
    let sm = ServiceManagerClient::new(&ps)?;
    let client = InputClient::new(&ps, sm.wait_for_service(SERVICE_NAME, TIMEOUT)?);
    let token = Binder::new(WindowTokenService);
    let channel = client.register_window(
        &format!("app{index}"),
        window_bounds(index, windows),
        &token,
    )?;
    let mut consumer = InputConsumer::new(channel);
    let start = Instant::now();
    let result = loop {
        if stall_ms.is_some_and(|ms| start.elapsed() > Duration::from_millis(ms)) {
            // Stop reading; wait for the dispatcher to end the demo.
            let mut buf = [0u8; 8];
            let _ = recv_with_fds(&control, &mut buf, 0);
            break Ok(());
        }
        let frame_time = if frame_ms > 0 {
            std::thread::sleep(Duration::from_millis(frame_ms));
            Some(now_nanos())
        } else {
            consumer
                .channel()
                .wait_readable(Duration::from_millis(50))?;
            None
        };
        let events = match consumer.consume(frame_time) {
            Ok(events) => events,
            Err(ChannelError::DeadObject) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        for event in &events {
            consumer.finish(event, true)?;
        }
        consumer.flush_finished()?;
    };
    drop((client, sm, token));
    ps.shutdown(TIMEOUT)?;
    result
}

/// Window `index` of `windows`: side by side on a 1000 × 1000 display.
fn window_bounds(index: usize, windows: usize) -> Bounds {
    let width = 1000.0 / windows as f32;
    Bounds {
        left: index as f32 * width,
        top: 0.0,
        right: (index + 1) as f32 * width,
        bottom: 1000.0,
    }
}

/// Raw baseline peer: answer each packet with its one-way latency.
fn echo() -> Result<(), Error> {
    let control = std::io::stdin().as_fd().try_clone_to_owned()?;
    let end = receive_end(&control)?;
    let mut packet = [0i64; 13];
    loop {
        match end.recv_batch_timeout(&mut packet, TIMEOUT) {
            Ok(_) => {
                let latency = now_nanos() - packet[0];
                end.send_batch(&[latency])?;
            }
            Err(TubeError::PeerClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn baseline(o: &Options) -> Result<Histogram<u64>, Error> {
    let mut tube = BitTube::with_buffer_size(INPUT_CHANNEL_BUFFER_SIZE)?;
    let (mut child, control) = spawn("echo")?;
    let remote = tube.take_remote()?;
    send_with_fds(&control, b"echo", &[remote.as_fd()])?;
    drop(remote);
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
    let period = Duration::from_secs_f64(1.0 / f64::from(o.rate));
    let samples = ((f64::from(o.rate) * o.seconds.min(2.0)) as u64).max(1);
    let mut next = Instant::now();
    for _ in 0..samples {
        next += period;
        let mut packet = [0i64; 13]; // 104 bytes, about a one-pointer motion message
        packet[0] = now_nanos();
        tube.local().send_batch(&packet)?;
        let mut reply = [0i64; 1];
        tube.local().recv_batch_timeout(&mut reply, TIMEOUT)?;
        h.saturating_record((reply[0].max(0) as u64 / 1000).max(1));
        if let Some(rest) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    drop(tube);
    child.wait()?;
    Ok(h)
}

fn run(o: &Options) -> Result<bool, Error> {
    println!(
        "input_demo: {} windows, {} Hz motion per window, {} s, frame {} ms, ANR timeout {} ms",
        o.windows, o.rate, o.seconds, o.frame_ms, o.anr_ms
    );
    let raw = baseline(o)?;

    let ps = ProcessState::open()?;
    ps.start_thread_pool()?;
    let dispatcher = Arc::new(DispatcherThread::start(DispatcherConfig {
        anr_timeout: Duration::from_millis(o.anr_ms),
    })?);
    let service = InputService::new(Arc::clone(&dispatcher));
    let sm = ServiceManagerClient::new(&ps)?;
    sm.add_service(SERVICE_NAME, &Binder::Local(service.clone()))?;
    let width = 1000.0 / o.windows as f32;
    let stalled_name = format!("app{}", o.windows - 1);
    let stalled = (o.stall && o.windows >= 3).then_some(o.windows - 1);
    let mut apps = Vec::new();
    for i in 0..o.windows {
        let stall = if stalled == Some(i) { "1000" } else { "" };
        apps.push(spawn(&format!(
            "app:{i}:{}:{}:{stall}",
            o.windows, o.frame_ms
        ))?);
    }
    // The applications register through binder.
    let deadline = Instant::now() + TIMEOUT;
    while dispatcher.lock().windows().len() < o.windows {
        if Instant::now() > deadline {
            return Err("the applications did not register their windows".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let token_of = |name: &str| {
        dispatcher
            .lock()
            .windows()
            .into_iter()
            .find(|w| w.name == name)
            .map(|w| w.token)
    };
    let first = token_of("app0");
    dispatcher.lock().set_focus(first)?;
    let stalled_token = stalled.and_then(|_| token_of(&stalled_name));
    let is_stalled = |name: &str| stalled.is_some() && name == stalled_name;

    let mut notes = Vec::new();
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(o.rate));
    let ticks = (f64::from(o.rate) * o.seconds) as u64;
    let mut injected = 0u64;
    let mut to_stalled = 0u64;
    if o.evdev {
        injected = real_input(o, &dispatcher)?;
    }
    for tick in (0..=ticks).filter(|_| !o.evdev) {
        let due = start + period * tick as u32;
        if let Some(rest) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
        let mut d = dispatcher.lock();
        for i in 0..o.windows {
            let x = i as f32 * width + 1.0 + (tick % 100) as f32 * width / 200.0;
            let y = 10.0 + (tick % 500) as f32;
            let action = match tick {
                0 => MOTION_ACTION_DOWN,
                t if t == ticks => MOTION_ACTION_UP,
                _ => MOTION_ACTION_MOVE,
            };
            let mut event = MotionEvent::touch(action, x, y, 0, now_nanos());
            event.device_id = i as i32 + 1;
            match d.inject_motion(&event) {
                Ok(sent) => {
                    injected += 1;
                    if Some(sent.token) == stalled_token {
                        to_stalled += 1;
                    }
                }
                Err(DispatchError::NoWindowAt { .. }) => {} // the window was removed
                Err(e) => return Err(e.into()),
            }
        }
        if tick % (u64::from(o.rate) / 10).max(1) == 0 {
            let t = now_nanos();
            let key = KeyEvent {
                device_id: 0,
                source: SOURCE_KEYBOARD,
                display_id: 0,
                action: KEY_ACTION_DOWN,
                flags: 0,
                key_code: 29,
                scan_code: 30,
                meta_state: 0,
                repeat_count: 0,
                policy_flags: 0,
                down_time: t,
                event_time: t,
            };
            if d.inject_key(&key).is_ok() {
                injected += 1;
            }
        }
    }
    notes.extend(dispatcher.events().try_iter());
    // Let the answering applications finish what is in flight.
    let deadline = Instant::now() + TIMEOUT;
    let answering_idle = || {
        dispatcher
            .lock()
            .windows()
            .iter()
            .all(|w| is_stalled(&w.name) || (w.waiting == 0 && w.outbound == 0))
    };
    while !answering_idle() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = answering_idle();
    let windows = dispatcher.lock().windows();
    for w in &windows {
        println!(
            "  window {:<6} outbound {:>5}  waiting {:>5}",
            w.name, w.outbound, w.waiting
        );
    }
    // Closing the windows' channels ends the applications.
    service.clear();
    for (mut child, control) in apps {
        drop(control);
        child.wait()?;
    }
    notes.extend(dispatcher.events().try_iter());
    let d = dispatcher.lock();
    let s = d.stats();
    println!("results:");
    percentiles("raw SEQPACKET one-way (baseline)", &raw);
    summary("dispatch -> consume (app clock)", &s.consume_latency);
    summary("dispatch -> finished read", &s.finish_latency);
    if o.histograms {
        let (consume, finish) = d.latency_histograms();
        for (name, h) in [("consume", consume), ("finish", finish)] {
            for v in h.iter_recorded() {
                println!(
                    "hist {name} {} {}",
                    v.value_iterated_to(),
                    v.count_at_value()
                );
            }
        }
    }
    println!(
        "  injected {injected} (to the stalled app {to_stalled}), dispatched {}, finished {}, \
         batches {}, ANRs {}, bad messages {}, windows removed {}, abandoned {}",
        s.dispatched, s.finished, s.batches, s.anrs, s.bad_messages, s.windows_removed, s.abandoned
    );
    for note in &notes {
        if let DispatchEvent::Anr {
            name, seq, waited, ..
        } = note
        {
            println!("  ANR: {name} has not finished seq {seq} for {waited:?}");
        }
    }
    drop(d);
    drop(sm);
    ps.shutdown(TIMEOUT)?;
    Ok(ok)
}

/// Feed the dispatcher from the real input devices for `--seconds`; returns the events taken.
fn real_input(o: &Options, dispatcher: &DispatcherThread) -> Result<u64, Error> {
    use bittube::input_demo::evdev::{feed, EvdevReader, FeedStats, ReaderConfig, ReaderEvent};
    let mut reader = EvdevReader::open(ReaderConfig {
        names: o.evdev_devices.clone(),
        grab: o.grab,
        ..ReaderConfig::default()
    })?;
    let mut stats = FeedStats::default();
    let end = Instant::now() + Duration::from_secs_f64(o.seconds);
    while Instant::now() < end {
        let events = reader.read(Duration::from_millis(50))?;
        for event in &events {
            match event {
                ReaderEvent::DeviceAdded {
                    id,
                    name,
                    path,
                    capabilities,
                } => println!(
                    "  evdev: device {} {name:?} at {} ({capabilities:?})",
                    id.0,
                    path.display()
                ),
                ReaderEvent::DeviceRemoved { id, name } => {
                    println!("  evdev: device {} {name:?} removed", id.0)
                }
                _ => {}
            }
        }
        feed(&mut dispatcher.lock(), &events, &mut stats);
    }
    let r = reader.stats();
    println!(
        "  evdev: {} keys and {} motions dispatched, {} refused (no focus / no window); \
         records {}, frames {}, SYN_DROPPED {}, resyncs {}, open failures {}",
        stats.keys,
        stats.motions,
        stats.refused,
        r.mapper.records,
        r.mapper.frames,
        r.mapper.dropped,
        r.mapper.resyncs,
        r.open_failures
    );
    Ok(stats.keys + stats.motions)
}

/// The host: the driver shim and the service manager; the dispatcher runs in a child (the
/// context manager is not called from its own process).
fn host() -> Result<bool, Error> {
    options()?; // check the arguments before starting anything
    let driver = Driver::start()?;
    let ps = ProcessState::open_shim(driver.socket_path())?;
    let _sm = ServiceManager::serve(&ps, default_policy())?;
    let status = Command::new(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .env(ROLE_ENV, "dispatcher")
        .env(ENV_SOCKET, driver.socket_path())
        .status()?;
    ps.shutdown(TIMEOUT)?;
    Ok(status.success())
}

/// The demo (also run by `benches/input_dispatch.rs`).
pub fn main() -> ExitCode {
    let result = match std::env::var(ROLE_ENV) {
        Ok(role) if role == "echo" => echo().map(|()| true),
        Ok(role) if role == "dispatcher" => options().and_then(|o| run(&o)),
        Ok(role) => {
            // app:<index>:<windows>:<frame ms>:<stall ms or empty>
            let parts: Vec<&str> = role.split(':').skip(1).collect();
            let number = |i: usize| parts.get(i).and_then(|f| f.parse::<u64>().ok());
            match (number(0), number(1)) {
                (Some(index), Some(windows)) => app(
                    index as usize,
                    windows as usize,
                    number(2).unwrap_or(0),
                    number(3),
                )
                .map(|()| true),
                _ => Err(format!("bad role {role}").into()),
            }
        }
        Err(_) => host(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("input_demo: some events of answering applications were not finished");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("input_demo: {e}");
            ExitCode::FAILURE
        }
    }
}
