//! The sensor service over binder, with several client processes: the crate's main demo.
//!
//! The parent process starts the binder driver shim, the service manager and the sensor
//! service. The sensor service lives in the parent too, registered with
//! `ServiceManager::add_local` (the manager's own process cannot call handle 0): that keeps
//! the service's per-connection counters (drops, acks, wake-ups outstanding) readable by
//! the parent, which prints them next to what each client saw. Everything the clients do
//! goes through binder: they look `sensorservice` up, create an event connection, receive
//! the tube end as a `BINDER_TYPE_FD` object, enable sensors, flush, destroy.
//!
//! Each client process subscribes to its own sensors and rates, reports once a second to the
//! parent (lines on its stdout) and, at the end, flushes and reports what it received in its
//! measurement window. The parent shows a live table per client and a final summary, and
//! exits 0 only when every client got what it asked for: at least 90% of the events due in
//! its window on every sensor, timestamps increasing, no loss the service did not count as a
//! drop, every wake-up event acknowledged, and (with `--direct`) a direct channel that
//! delivered increasing counters without losing records.
//!
//! ```sh
//! cargo run --release --example sensor_demo -- [--clients 4] [--duration 5] \
//!     [--sensors accel,gyro,mag,wake] [--rates 50,200,500,1000] [--per-client 2] \
//!     [--batch-ms 0] [--direct] [--quiet]
//! ```
//!
//! With `--iio` first (`sensor_demo --iio [other options]`), the machine's IIO
//! accelerometers, gyroscopes and magnetometers are served instead: a [`SensorService`]
//! over the IIO HAL (`SensorHal::Iio`, [`bittube::sensor_demo::iio`]) in this process, one
//! event connection enabling each sensor in turn at the first `--rates` rate for
//! `--duration` seconds, its events (Android units, IIO time stamps) read from the
//! connection's tube and printed as rates and last values. When no IIO sensor exists, the
//! simulated HAL stays and the demo runs as without `--iio`.
//!
//! Client `i` takes `--per-client` sensors from the `--sensors` list starting at position
//! `i`, and rates from the `--rates` list starting at position `i * per-client`.
//!
//! Protocol between parent and clients. A client is this program re-executed with
//! [`CHILD_ENV`] naming its plan and `BITTUBE_BINDER` naming the driver shim. It writes lines
//! starting with [`PREFIX`] on stdout (other lines are ignored) and reads `go` and `bye` on
//! stdin: `connected` (its event connection exists), `ready` (sensors enabled), then after
//! `go` a `tick` a second, and after its window `sensor`/`direct`/`hist` lines and `final`;
//! after `bye` it destroys its connections and shuts its binder process down. Connections
//! are created one client at a time, so that the parent can tell which service connection
//! belongs to which client.
//!
//! This file is also compiled into `tests/sensor_demo_example.rs` and
//! `benches/sensor_load.rs` (`#[path]` modules), which drive [`run`] with other arguments.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bittube::binder_ipc::runtime::ProcessState;
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager};
use bittube::binder_ipc::shim::ENV_SOCKET;
use bittube::bittube::TubeError;
use bittube::sensor_demo::binder::SERVICE_NAME;
use bittube::sensor_demo::sensors::{
    ACCELEROMETER, ACCELEROMETER_WAKE_UP, GYROSCOPE, MAGNETOMETER,
};
use bittube::sensor_demo::{
    clock_now_ns, sensor_list, sensor_server, ConnectionId, ConnectionStats, DirectRate,
    LatencySummary, SensorEvent, SensorManager, SensorService, MAX_RECEIVE_EVENTS,
};
use bytemuck::Zeroable;
use clap::Parser;
use hdrhistogram::Histogram;

/// Environment variable that makes this program a client; its value is the client's plan.
pub const CHILD_ENV: &str = "SENSOR_DEMO_CHILD";
/// Prefix of the report lines a client writes on stdout.
pub const PREFIX: &str = "@sensor_demo ";
/// Records in a client's direct channel ring.
const RING_RECORDS: usize = 4096;
/// The rate level of the direct channels.
const DIRECT_RATE: DirectRate = DirectRate::Fast;
/// Guards against hangs (never a measured quantity).
const LONG: Duration = Duration::from_secs(30);
/// Share of the due events a client must receive.
const MIN_SHARE: f64 = 0.9;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Command line of the demo.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sensor_demo",
    about = "Sensor service over binder, N client processes"
)]
pub struct Args {
    /// Client processes.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Measurement window of every client, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Sensors handed out to clients in turn: accel, gyro, mag, wake (wake-up accelerometer).
    #[arg(long, value_delimiter = ',', default_value = "accel,gyro,mag,wake")]
    pub sensors: Vec<String>,
    /// Rates in Hz handed out in turn.
    #[arg(long, value_delimiter = ',', default_value = "50,200,500,1000")]
    pub rates: Vec<u32>,
    /// Sensors per client.
    #[arg(long, default_value_t = 2)]
    pub per_client: usize,
    /// Max report latency (batching) in ms; 0 sends every event at once.
    #[arg(long, default_value_t = 0)]
    pub batch_ms: u64,
    /// Every client also reads its first sensor through a direct channel (memfd ring, 200 Hz).
    #[arg(long)]
    pub direct: bool,
    /// One aggregate line a second instead of the table per client.
    #[arg(long)]
    pub quiet: bool,
}

/// One sensor of a client's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Sub {
    /// Sensor handle.
    pub handle: i32,
    /// Requested rate in Hz.
    pub hz: u32,
    /// Spacing of the events the client receives, in ns: the service takes, from a HAL that
    /// runs at the fastest period asked for, the first sample at least 0.9 period after the
    /// last one it took.
    pub spacing_ns: i64,
}

/// What one client does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Client number.
    pub index: usize,
    /// Measurement window in ns.
    pub window_ns: i64,
    /// Max report latency in ns.
    pub batch_ns: i64,
    /// Sensors and rates.
    pub subs: Vec<Sub>,
    /// Direct channel on this sensor, with its record spacing in ns.
    pub direct: Option<(i32, i64)>,
}

fn sensor_handle(name: &str) -> Result<i32, Error> {
    Ok(match name.trim() {
        "accel" => ACCELEROMETER,
        "gyro" => GYROSCOPE,
        "mag" => MAGNETOMETER,
        "wake" => ACCELEROMETER_WAKE_UP,
        other => {
            return Err(format!(
                "unknown sensor {other:?} (continuous sensors: accel, gyro, mag, wake)"
            )
            .into())
        }
    })
}

/// Short name of a sensor handle.
pub fn sensor_name(handle: i32) -> &'static str {
    match handle {
        ACCELEROMETER => "accel",
        GYROSCOPE => "gyro",
        MAGNETOMETER => "mag",
        ACCELEROMETER_WAKE_UP => "wake",
        _ => "?",
    }
}

fn period_ns(hz: u32) -> i64 {
    1_000_000_000 / i64::from(hz.max(1))
}

/// The sampling period the service uses for `hz` on `handle` (clamped to the sensor's range).
fn clamped_ns(handle: i32, hz: u32) -> i64 {
    let requested = Duration::from_nanos(period_ns(hz) as u64);
    sensor_list()
        .iter()
        .find(|s| s.handle == handle)
        .map_or(requested, |s| s.clamp_period(requested))
        .as_nanos() as i64
}

/// Spacing of events taken every `period` from a HAL sampling every `hal` (both ns).
fn spacing(period: i64, hal: i64) -> i64 {
    let threshold = period - period / 10;
    let k = (threshold + hal - 1) / hal;
    k.max(1) * hal
}

/// Every client's plan, from the command line. Bad arguments are an error that says why.
pub fn make_plans(args: &Args) -> Result<Vec<Plan>, Error> {
    if args.clients == 0 || args.clients > 256 {
        return Err(format!("--clients {}: 1 to 256 clients", args.clients).into());
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(format!(
            "--duration {}: more than 0 s, at most 3600 s",
            args.duration
        )
        .into());
    }
    if args.sensors.is_empty() || args.rates.is_empty() {
        return Err("--sensors and --rates need at least one entry each".into());
    }
    if let Some(r) = args.rates.iter().find(|&&r| r == 0 || r > 1760) {
        return Err(format!("rate {r} Hz: rates go from 1 to 1760 Hz").into());
    }
    let handles = args
        .sensors
        .iter()
        .map(|s| sensor_handle(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut unique = handles.clone();
    unique.sort_unstable();
    unique.dedup();
    if handles.len() != unique.len() {
        return Err("--sensors lists a sensor twice".into());
    }
    if args.per_client == 0 || args.per_client > unique.len() {
        return Err(format!(
            "--per-client {}: 1 to {} (the distinct sensors given)",
            args.per_client,
            unique.len()
        )
        .into());
    }
    // (handle, hz) per client.
    let mut wanted: Vec<Vec<(i32, u32)>> = Vec::new();
    for i in 0..args.clients {
        let subs = (0..args.per_client)
            .map(|j| {
                let h = handles[(i + j) % handles.len()];
                let hz = args.rates[(i * args.per_client + j) % args.rates.len()];
                (h, hz)
            })
            .collect();
        wanted.push(subs);
    }
    // The HAL of each sensor runs at the fastest clamped period anyone uses.
    let mut hal: BTreeMap<i32, i64> = BTreeMap::new();
    let mut note = |h: i32, p: i64| {
        let e = hal.entry(h).or_insert(p);
        *e = (*e).min(p);
    };
    for subs in &wanted {
        for &(h, hz) in subs {
            note(h, clamped_ns(h, hz));
        }
        if args.direct {
            note(subs[0].0, clamped_ns(subs[0].0, DIRECT_RATE.hz()));
        }
    }
    let window_ns = (args.duration * 1e9) as i64;
    let batch_ns = i64::try_from(args.batch_ms.saturating_mul(1_000_000))
        .map_err(|_| "--batch-ms is too large")?;
    Ok(wanted
        .into_iter()
        .enumerate()
        .map(|(index, subs)| {
            let direct = args.direct.then(|| {
                let h = subs[0].0;
                (h, spacing(clamped_ns(h, DIRECT_RATE.hz()), hal[&h]))
            });
            Plan {
                index,
                window_ns,
                batch_ns,
                subs: subs
                    .into_iter()
                    .map(|(handle, hz)| Sub {
                        handle,
                        hz,
                        spacing_ns: spacing(clamped_ns(handle, hz), hal[&handle]),
                    })
                    .collect(),
                direct,
            }
        })
        .collect())
}

impl Plan {
    /// The plan as an environment variable value.
    pub fn encode(&self) -> String {
        let subs: Vec<String> = self
            .subs
            .iter()
            .map(|s| format!("{}:{}:{}", s.handle, s.hz, s.spacing_ns))
            .collect();
        let direct = self
            .direct
            .map_or("-".to_string(), |(h, s)| format!("{h}:{s}"));
        format!(
            "{};{};{};{};{}",
            self.index,
            self.window_ns,
            self.batch_ns,
            direct,
            subs.join(",")
        )
    }

    /// Parse [`encode`](Self::encode)'s output; malformed text is an error.
    pub fn decode(text: &str) -> Result<Plan, Error> {
        let bad = || format!("malformed client plan {text:?}");
        let parts: Vec<&str> = text.split(';').collect();
        let [index, window, batch, direct, subs] = parts[..] else {
            return Err(bad().into());
        };
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let direct = match direct {
            "-" => None,
            d => {
                let (h, s) = d.split_once(':').ok_or_else(bad)?;
                Some((num(h)? as i32, num(s)?))
            }
        };
        let subs = subs
            .split(',')
            .map(|s| {
                let f: Vec<&str> = s.split(':').collect();
                let [h, hz, sp] = f[..] else {
                    return Err(bad());
                };
                let spacing_ns = num(sp)?;
                if spacing_ns <= 0 {
                    return Err(bad());
                }
                Ok(Sub {
                    handle: num(h)? as i32,
                    hz: num(hz)? as u32,
                    spacing_ns,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            index: num(index)? as usize,
            window_ns: num(window)?,
            batch_ns: num(batch)?,
            subs,
            direct,
        })
    }

    /// "accel@50 gyro@200".
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = self
            .subs
            .iter()
            .map(|s| format!("{}@{}", sensor_name(s.handle), s.hz))
            .collect();
        if let Some((h, _)) = self.direct {
            s.push(format!("+direct {}", sensor_name(h)));
        }
        s.join(" ")
    }
}

// ---------------------------------------------------------------------------------------
// Client process.

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{PREFIX}{line}");
    let _ = out.flush();
}

/// CPU time of this process's live threads so far, in ns (from their `schedstat`).
pub fn threads_cpu_ns() -> u64 {
    thread_cpu().values().map(|(_, ns)| ns).sum()
}

/// CPU time of this process so far (user + system, every thread that ever ran), in ns, at
/// clock-tick resolution.
pub fn process_cpu_ns() -> u64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name.
    (get(11) + get(12)) * 1_000_000_000 / ticks
}

/// Per-sensor bookkeeping of a client.
struct Track {
    sub: Sub,
    last_ts: Option<i64>,
    in_window: u64,
    missing: u64,
    increasing: bool,
    flushed: bool,
}

impl Track {
    fn new(sub: Sub) -> Track {
        Track {
            sub,
            last_ts: None,
            in_window: 0,
            missing: 0,
            increasing: true,
            flushed: false,
        }
    }

    /// Note one event; gaps after the window opened count as missing events.
    fn note(&mut self, ts: i64, t0: Option<i64>, t1: i64) {
        if let Some(last) = self.last_ts {
            if ts <= last {
                self.increasing = false;
            } else if t0.is_some_and(|t0| last >= t0) {
                let gap = ts - last;
                let s = self.sub.spacing_ns;
                if 2 * gap > 3 * s {
                    self.missing += ((gap + s / 2) / s - 1) as u64;
                }
            }
        }
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        if t0.is_some_and(|t0| ts >= t0 && ts < t1) {
            self.in_window += 1;
        }
    }
}

fn expected(window_ns: i64, spacing_ns: i64) -> u64 {
    (window_ns / spacing_ns.max(1)) as u64
}

/// The client role: `plan` over binder, reporting on stdout.
pub fn client_main(plan: &Plan) -> Result<(), Error> {
    let socket = std::env::var_os(ENV_SOCKET).ok_or("BITTUBE_BINDER is not set")?;
    let ps = ProcessState::open_shim(std::path::Path::new(&socket))?;
    ps.start_thread_pool()?;
    let result = client_session(&ps, plan);
    ps.shutdown(Duration::from_secs(5))?;
    result
}

fn client_session(ps: &ProcessState, plan: &Plan) -> Result<(), Error> {
    // Lines from the parent, read on a thread so that the events keep flowing meanwhile.
    let (lines_tx, lines) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
        let _ = lines_tx.send("eof".into());
    });

    let mgr = SensorManager::connect(ps, LONG)?;
    let (conn, mut queue) = mgr.create_event_queue()?;
    say(format_args!("{} connected", plan.index));
    let mut direct = match plan.direct {
        Some((handle, spacing_ns)) => {
            let (dconn, reader) = mgr.create_direct_connection(RING_RECORDS)?;
            let token = dconn.configure(handle, DIRECT_RATE)?;
            Some((dconn, reader, token, spacing_ns))
        }
        None => None,
    };
    let batch = Duration::from_nanos(plan.batch_ns.max(0) as u64);
    for s in &plan.subs {
        conn.enable(
            s.handle,
            Duration::from_nanos(period_ns(s.hz) as u64),
            batch,
        )?;
    }
    say(format_args!("{} ready", plan.index));

    let mut tracks: Vec<Track> = plan.subs.iter().cloned().map(Track::new).collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut tick_lat: Vec<i64> = Vec::new();
    let mut tick_events = 0u64;
    let mut buf = vec![SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    let mut records = Vec::new();
    let (mut direct_in_window, mut direct_last, mut direct_increasing) = (0u64, 0u32, true);
    let (mut t0, mut t1) = (None::<i64>, i64::MAX);
    let mut cpu0 = 0;
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut flushing = false;
    let mut waited_since = Instant::now();
    loop {
        // Parent's orders.
        while let Ok(line) = lines.try_recv() {
            match line.trim() {
                "go" if t0.is_none() => {
                    let now = clock_now_ns();
                    t0 = Some(now);
                    t1 = now + plan.window_ns;
                    cpu0 = threads_cpu_ns();
                    next_tick = Instant::now() + Duration::from_secs(1);
                }
                "eof" | "bye" => return Err("the parent went away".into()),
                _ => {}
            }
        }
        let now = clock_now_ns();
        if t0.is_some() && now >= t1 && !flushing {
            // Everything sampled before the flush arrives before its flush-complete events.
            say(format_args!("{} closed", plan.index));
            conn.flush()?;
            flushing = true;
            waited_since = Instant::now();
        }
        if flushing && tracks.iter().all(|t| t.flushed) {
            break;
        }
        if flushing && waited_since.elapsed() > LONG {
            return Err("no flush-complete event within 30 s".into());
        }
        if t0.is_none() && waited_since.elapsed() > LONG * 4 {
            return Err("no go from the parent".into());
        }
        let wait = if direct.is_some() {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(20)
        };
        match queue.read_timeout(&mut buf, wait) {
            Ok(n) => {
                let received = clock_now_ns();
                for e in &buf[..n] {
                    if let Some(h) = e.flushed_sensor() {
                        if flushing {
                            if let Some(t) = tracks.iter_mut().find(|t| t.sub.handle == h) {
                                t.flushed = true;
                            }
                        }
                        continue;
                    }
                    let Some(track) = tracks.iter_mut().find(|t| t.sub.handle == e.sensor) else {
                        return Err(format!("event of sensor {} never enabled", e.sensor).into());
                    };
                    track.note(e.timestamp, t0, t1);
                    if t0.is_some_and(|t0| e.timestamp >= t0 && e.timestamp < t1) {
                        let lat = received.saturating_sub(e.timestamp).max(0);
                        hist.saturating_record(lat.max(1_000) as u64);
                        tick_lat.push(lat);
                        tick_events += 1;
                    }
                }
            }
            Err(TubeError::TimedOut { .. } | TubeError::WouldBlock) => {}
            Err(e) => return Err(format!("event queue: {e}").into()),
        }
        if let Some((_, reader, token, _)) = direct.as_mut() {
            records.clear();
            reader.read(&mut records, usize::MAX);
            for r in &records {
                let counter = r.reserved0 as u32;
                direct_increasing &= counter > direct_last && r.sensor == *token;
                direct_last = counter;
                if t0.is_some_and(|t0| r.timestamp >= t0 && r.timestamp < t1) {
                    direct_in_window += 1;
                }
            }
        }
        if t0.is_some() && !flushing && Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let l = LatencySummary::from_samples(&mut tick_lat);
            let missing: u64 = tracks.iter().map(|t| t.missing).sum();
            say(format_args!(
                "{} tick {tick_events} {} {} {missing} {} {direct_in_window}",
                plan.index,
                l.p50,
                l.p99,
                queue.stats().acks_sent
            ));
            tick_lat.clear();
            tick_events = 0;
        }
    }
    let cpu = threads_cpu_ns().saturating_sub(cpu0);
    // Done, as an app unregistering its listener: disable, take what is still on its way,
    // and acknowledge every wake-up event, so that the service holds nothing for us.
    for s in &plan.subs {
        conn.disable(s.handle)?;
    }
    loop {
        match queue.read_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => {}
            Err(TubeError::TimedOut { .. } | TubeError::WouldBlock) => break,
            Err(e) => return Err(format!("event queue: {e}").into()),
        }
    }
    let deadline = Instant::now() + LONG;
    while !queue.send_acks() {
        if Instant::now() > deadline {
            return Err("the service does not take our acks".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let window = plan.window_ns;
    for t in &tracks {
        say(format_args!(
            "{} sensor {} {} {} {} {}",
            plan.index,
            t.sub.handle,
            t.in_window,
            expected(window, t.sub.spacing_ns),
            t.missing,
            u8::from(t.increasing)
        ));
    }
    if let Some((_, reader, _, spacing_ns)) = &direct {
        say(format_args!(
            "{} direct {direct_in_window} {} {} {}",
            plan.index,
            expected(window, *spacing_ns),
            reader.lost(),
            u8::from(direct_increasing)
        ));
    }
    for v in hist.iter_recorded() {
        say(format_args!(
            "{} hist {} {}",
            plan.index,
            v.value_iterated_to(),
            v.count_at_value()
        ));
    }
    let st = queue.stats().clone();
    say(format_args!(
        "{} final {} {} {} {cpu}",
        plan.index, st.events, st.wakeups, st.acks_sent
    ));

    // Wait for the parent to read the service's counters, then tear down through binder.
    loop {
        match lines.recv_timeout(LONG * 4) {
            Ok(l) if l.trim() == "bye" || l == "eof" => break,
            Ok(_) => {}
            Err(_) => return Err("no bye from the parent".into()),
        }
    }
    conn.destroy()?;
    let deadline = Instant::now() + LONG;
    loop {
        match queue.read_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(_) => {}
            Err(TubeError::PeerClosed) => break,
            Err(TubeError::TimedOut { .. } | TubeError::WouldBlock) => {}
            Err(e) => return Err(format!("event queue after destroy: {e}").into()),
        }
        if Instant::now() > deadline {
            return Err("the service did not close the tube after destroy".into());
        }
    }
    if let Some((dconn, ..)) = direct {
        dconn.destroy()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Parent process.

/// How the parent starts a client: the program and the arguments that make it run
/// [`client_main`] when [`CHILD_ENV`] is set (none for the example; libtest's filter for a
/// test binary).
#[derive(Clone, Debug)]
pub struct Launcher {
    /// Program to run.
    pub program: PathBuf,
    /// Arguments before anything else.
    pub args: Vec<String>,
}

impl Launcher {
    /// This program, re-executed without arguments.
    pub fn current_exe() -> Result<Launcher, Error> {
        Ok(Launcher {
            program: std::env::current_exe()?,
            args: Vec::new(),
        })
    }
}

/// Moments of a run at which a caller may measure something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Every client is ready; the windows open now.
    Go,
    /// Every client reported its window.
    Done,
}

/// What one sensor of one client got.
#[derive(Clone, Debug, Default)]
pub struct SensorResult {
    /// Handle.
    pub handle: i32,
    /// Events received with a timestamp in the window.
    pub received: u64,
    /// Events due in the window.
    pub expected: u64,
    /// Events missing from the timestamp sequence.
    pub missing: u64,
    /// Timestamps strictly increased.
    pub increasing: bool,
}

/// What one client got, and what the service counted for its connection.
#[derive(Clone, Debug, Default)]
pub struct ClientResult {
    /// Its plan, described.
    pub describe: String,
    /// Per sensor.
    pub sensors: Vec<SensorResult>,
    /// Direct channel: received in window, expected, lost, increasing.
    pub direct: Option<(u64, u64, u64, bool)>,
    /// All events read (with meta events).
    pub events: u64,
    /// Wake-up events received and ack counts sent.
    pub wakeups: u64,
    /// Acks the client sent.
    pub acks_sent: u64,
    /// CPU time of the client process during its window, ns.
    pub cpu_ns: u64,
    /// Latency histogram (event timestamp to receipt), ns.
    pub latency: Option<Histogram<u64>>,
    /// The service's counters for its connection, at the end of the window.
    pub service: Option<ConnectionStats>,
    /// The client process exited with success.
    pub exited_ok: bool,
    /// Why it failed, if it did.
    pub problems: Vec<String>,
}

impl ClientResult {
    /// Events received in the window, all sensors.
    pub fn received(&self) -> u64 {
        self.sensors.iter().map(|s| s.received).sum()
    }

    /// Events due in the window, all sensors.
    pub fn expected(&self) -> u64 {
        self.sensors.iter().map(|s| s.expected).sum()
    }

    /// Events missing from the sequences.
    pub fn missing(&self) -> u64 {
        self.sensors.iter().map(|s| s.missing).sum()
    }

    /// Events the service dropped (counted).
    pub fn dropped(&self) -> u64 {
        self.service.as_ref().map_or(0, |s| s.events_dropped)
    }

    /// Losses the service did not count.
    pub fn unexplained(&self) -> u64 {
        self.missing().saturating_sub(self.dropped())
    }

    /// Got what it asked for.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// CPU time of the threads of this process, by thread id: (name, ns).
pub fn thread_cpu() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        // schedstat: time on CPU (ns), run-queue wait (ns), timeslices.
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert(tid, (name, ns));
    }
    out
}

/// CPU used by the service during the window, ns.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceCpu {
    /// The `sensor-service` thread (connections, batching, sends).
    pub service_thread: u64,
    /// The simulated HAL threads (`hal-*`).
    pub hal_threads: u64,
    /// The whole parent process (also the driver shim, the binder pool, this demo's readers).
    pub process: u64,
}

fn cpu_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> (u64, u64) {
    let (mut svc, mut hal) = (0, 0);
    for (tid, (name, ns)) in after {
        let d = ns.saturating_sub(before.get(tid).map_or(0, |b| b.1));
        if name == "sensor-service" {
            svc += d;
        } else if name.starts_with("hal-") {
            hal += d;
        }
    }
    (svc, hal)
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Per client.
    pub clients: Vec<ClientResult>,
    /// Window length, ns.
    pub window_ns: i64,
    /// All clients' latencies.
    pub latency: Option<Histogram<u64>>,
    /// The service's CPU during the windows.
    pub cpu: ServiceCpu,
    /// Wall time from go to the first window's end, ns.
    pub wall_ns: u64,
    /// Problems not tied to one client.
    pub problems: Vec<String>,
}

impl Summary {
    /// Every client got what it asked for and the service cleaned up.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.clients.iter().all(ClientResult::ok)
    }
}

enum Msg {
    Line(Vec<String>),
    Eof,
}

struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    conn: Option<ConnectionId>,
}

fn send_line(r: &mut Running, line: &str) {
    if let Some(stdin) = r.stdin.as_mut() {
        let _ = writeln!(stdin, "{line}");
        let _ = stdin.flush();
    }
}

/// The newest connection of `svc` not in `known` (ids are handed out in increasing order).
fn find_new_connection(
    svc: &SensorService,
    known: &[ConnectionId],
    from: u64,
) -> Option<ConnectionId> {
    (from..from + 64)
        .map(ConnectionId)
        .find(|id| !known.contains(id) && svc.connection_stats(*id).is_ok())
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Run the demo: driver, service manager, sensor service, clients. `on_phase` is called at
/// [`Phase::Go`] and [`Phase::Done`].
pub fn run(
    args: &Args,
    launcher: &Launcher,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<Summary, Error> {
    let plans = make_plans(args)?;
    let (ps, driver) = ProcessState::embedded()?;
    let sm = ServiceManager::serve(&ps, default_policy())?;
    let svc = SensorService::start()?;
    sm.add_local(SERVICE_NAME, sensor_server(svc.clone()));
    if !args.quiet {
        println!(
            "driver shim at {}; service manager and {SERVICE_NAME} running in pid {}",
            driver.socket_path().display(),
            std::process::id()
        );
    }
    let result = drive(args, launcher, on_phase, &plans, &svc, driver.socket_path());
    // Whatever happened, end the binder side cleanly.
    drop(sm);
    let down = ps.shutdown(Duration::from_secs(5));
    drop(driver);
    let summary = result?;
    down?;
    Ok(summary)
}

fn drive(
    args: &Args,
    launcher: &Launcher,
    on_phase: &mut dyn FnMut(Phase),
    plans: &[Plan],
    svc: &SensorService,
    socket: &std::path::Path,
) -> Result<Summary, Error> {
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Msg)>();
    let mut running: Vec<Running> = Vec::new();
    let mut results: Vec<ClientResult> = plans
        .iter()
        .map(|p| ClientResult {
            describe: p.describe(),
            ..Default::default()
        })
        .collect();
    let mut summary = Summary {
        window_ns: plans[0].window_ns,
        ..Default::default()
    };
    let outcome = (|| -> Result<(), Error> {
        // Start clients one by one; each one's connection is the next one the service makes.
        let mut known = Vec::new();
        let mut next_id = 1;
        let mut said = Vec::new();
        for plan in plans {
            let mut child = Command::new(&launcher.program)
                .args(&launcher.args)
                .env(CHILD_ENV, plan.encode())
                .env(ENV_SOCKET, socket)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().ok_or("no stdout pipe")?;
            let stdin = child.stdin.take();
            let (i, tx) = (plan.index, tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Anywhere in the line: a test harness may print before it.
                    if let Some(rest) = line.find(PREFIX).map(|at| &line[at + PREFIX.len()..]) {
                        let fields = rest.split_whitespace().map(String::from).collect();
                        if tx.send((i, Msg::Line(fields))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((i, Msg::Eof));
            });
            running.push(Running {
                child,
                stdin,
                conn: None,
            });
            wait_for(&rx, plan.index, "connected", &mut said, &mut results)?;
            let id = find_new_connection(svc, &known, next_id)
                .ok_or("the service has no connection for the new client")?;
            next_id = id.0 + 1;
            known.push(id);
            running[plan.index].conn = Some(id);
        }
        for plan in plans {
            wait_for(&rx, plan.index, "ready", &mut said, &mut results)?;
        }
        let before = thread_cpu();
        let process_before = process_cpu_ns();
        on_phase(Phase::Go);
        let go = Instant::now();
        for r in running.iter_mut() {
            send_line(r, "go");
        }
        // Live table until every client sent its final line.
        let mut ticks: Vec<Option<Vec<String>>> = vec![None; plans.len()];
        let mut finals = 0;
        // A little after each client's tick.
        let mut next_print = go + Duration::from_millis(1200);
        let mut second = 0;
        let deadline = go + Duration::from_nanos(plans[0].window_ns as u64) + LONG * 2;
        while finals < plans.len() {
            let now = Instant::now();
            if now >= deadline {
                return Err("clients did not report their windows in time".into());
            }
            if now >= next_print && summary.wall_ns == 0 {
                second += 1;
                next_print += Duration::from_secs(1);
                print_ticks(args.quiet, second, plans, &ticks, &running, svc);
            } else if now >= next_print {
                next_print += Duration::from_secs(1); // windows closed: no more ticks
            }
            match rx.recv_timeout(next_print.saturating_duration_since(Instant::now())) {
                Ok((i, Msg::Line(f))) => {
                    if f.get(1).map(String::as_str) == Some("closed") {
                        // The first window closed (they all open and close together): the
                        // service's CPU over the window, while its HAL threads still run.
                        if summary.wall_ns == 0 {
                            summary.wall_ns = go.elapsed().as_nanos() as u64;
                            let (svc_ns, hal_ns) = cpu_delta(&before, &thread_cpu());
                            summary.cpu = ServiceCpu {
                                service_thread: svc_ns,
                                hal_threads: hal_ns,
                                process: process_cpu_ns().saturating_sub(process_before),
                            };
                        }
                    } else if f.get(1).map(String::as_str) == Some("tick") {
                        ticks[i] = Some(f);
                    } else if absorb(&mut results[i], &f)? {
                        finals += 1;
                        // Its window is closed and flushed: the service's view of it.
                        if let Some(id) = running[i].conn {
                            results[i].service = settled_stats(svc, id, results[i].acks_sent);
                        }
                    }
                }
                Ok((i, Msg::Eof)) => return Err(format!("client {i} ended early").into()),
                Err(_) => {}
            }
        }
        on_phase(Phase::Done);
        Ok(())
    })();
    if let Err(e) = outcome {
        summary.problems.push(e.to_string());
    }
    // Let every client go: it destroys its connections and shuts its binder process down.
    for r in running.iter_mut() {
        send_line(r, "bye");
        r.stdin = None;
    }
    for (i, r) in running.iter_mut().enumerate() {
        let deadline = Instant::now() + LONG;
        let status = loop {
            if let Some(s) = r.child.try_wait()? {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = r.child.kill();
                let _ = r.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        results[i].exited_ok = status.is_some_and(|s| s.success());
        if !results[i].exited_ok {
            results[i]
                .problems
                .push(format!("process ended with {status:?}"));
        }
    }
    // The service is left with nothing: no connection, channel or running sensor.
    let deadline = Instant::now() + LONG;
    loop {
        let st = svc.stats()?;
        if st.connections == 0 && st.direct_channels == 0 && st.active_sensors.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            summary.problems.push(format!(
                "the service kept state after the clients left: {st:?}"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for r in results.iter_mut() {
        judge(r);
        if let Some(h) = &r.latency {
            match summary.latency.as_mut() {
                Some(all) => all.add(h)?,
                None => summary.latency = Some(h.clone()),
            }
        }
    }
    summary.clients = results;
    Ok(summary)
}

/// Wait for client `i` to say `what` (`connected`, `ready`); what other clients say
/// meanwhile is kept in `said`.
fn wait_for(
    rx: &crossbeam_channel::Receiver<(usize, Msg)>,
    i: usize,
    what: &str,
    said: &mut Vec<(usize, String)>,
    results: &mut [ClientResult],
) -> Result<(), Error> {
    let deadline = Instant::now() + LONG * 2;
    loop {
        if let Some(at) = said.iter().position(|(j, w)| *j == i && w == what) {
            said.remove(at);
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((j, Msg::Line(f))) => match f.get(1).map(String::as_str) {
                Some("error") => results[j].problems.push(f[2..].join(" ")),
                Some(w) => said.push((j, w.to_string())),
                None => {}
            },
            Ok((j, Msg::Eof)) => {
                return Err(format!("client {j} ended before saying {what}").into())
            }
            Err(_) => return Err(format!("client {i} did not say {what} in time").into()),
        }
    }
}

/// The service's counters for a finished window, once the client's last acks arrived.
fn settled_stats(svc: &SensorService, id: ConnectionId, acks_sent: u64) -> Option<ConnectionStats> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let st = svc.connection_stats(id).ok()?;
        if (st.acks_received >= acks_sent && st.wakeup_outstanding == 0)
            || Instant::now() > deadline
        {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn field<T: std::str::FromStr>(f: &[String], i: usize) -> Result<T, Error> {
    f.get(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("malformed report line {f:?}").into())
}

/// Take one report line of a client; true on its final line.
fn absorb(r: &mut ClientResult, f: &[String]) -> Result<bool, Error> {
    match f.get(1).map(String::as_str) {
        Some("sensor") => r.sensors.push(SensorResult {
            handle: field(f, 2)?,
            received: field(f, 3)?,
            expected: field(f, 4)?,
            missing: field(f, 5)?,
            increasing: field::<u8>(f, 6)? == 1,
        }),
        Some("direct") => {
            r.direct = Some((
                field(f, 2)?,
                field(f, 3)?,
                field(f, 4)?,
                field::<u8>(f, 5)? == 1,
            ))
        }
        Some("hist") => {
            let h = match r.latency.as_mut() {
                Some(h) => h,
                None => r
                    .latency
                    .insert(Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?),
            };
            h.saturating_record_n(field(f, 2)?, field(f, 3)?);
        }
        Some("final") => {
            r.events = field(f, 2)?;
            r.wakeups = field(f, 3)?;
            r.acks_sent = field(f, 4)?;
            r.cpu_ns = field(f, 5)?;
            return Ok(true);
        }
        _ => {}
    }
    Ok(false)
}

/// Did the client get what it asked for?
fn judge(r: &mut ClientResult) {
    if r.sensors.is_empty() {
        r.problems.push("no report".into());
    }
    for s in &r.sensors {
        let name = sensor_name(s.handle);
        if (s.received as f64) < MIN_SHARE * s.expected as f64 {
            r.problems.push(format!(
                "{name}: {} of {} events due",
                s.received, s.expected
            ));
        }
        if !s.increasing {
            r.problems
                .push(format!("{name}: timestamps went backwards"));
        }
    }
    if r.unexplained() > 0 {
        r.problems.push(format!(
            "{} events missing, {} counted as dropped by the service",
            r.missing(),
            r.dropped()
        ));
    }
    if r.acks_sent != r.wakeups {
        r.problems.push(format!(
            "{} wake-up events, {} acknowledged",
            r.wakeups, r.acks_sent
        ));
    }
    match &r.service {
        Some(st) if st.wakeup_outstanding != 0 => r.problems.push(format!(
            "the service still holds {} wake-up packets",
            st.wakeup_outstanding
        )),
        Some(_) => {}
        None => r.problems.push("no service counters".into()),
    }
    if let Some((got, due, lost, increasing)) = r.direct {
        if (got as f64) < MIN_SHARE * due as f64 || lost > 0 || !increasing {
            r.problems.push(format!(
                "direct channel: {got} of {due} records, {lost} lost, counters increasing: {increasing}"
            ));
        }
    }
}

fn print_ticks(
    quiet: bool,
    second: u32,
    plans: &[Plan],
    ticks: &[Option<Vec<String>>],
    running: &[Running],
    svc: &SensorService,
) {
    let num = |t: &Option<Vec<String>>, i: usize| -> u64 {
        t.as_ref()
            .and_then(|f| f.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stats: Vec<Option<ConnectionStats>> = running
        .iter()
        .map(|r| r.conn.and_then(|id| svc.connection_stats(id).ok()))
        .collect();
    if quiet {
        let events: u64 = ticks.iter().map(|t| num(t, 2)).sum();
        let p99 = ticks.iter().map(|t| num(t, 4)).max().unwrap_or(0);
        let drops: u64 = stats.iter().flatten().map(|s| s.events_dropped).sum();
        println!(
            "t={second:>3}s  {events:>8} events/s  worst client p99 {:>8.1} µs  drops {drops}",
            us(p99)
        );
        return;
    }
    println!(
        "t={second}s {:>6} {:<36} {:>8} {:>9} {:>9} {:>7} {:>6} {:>6} {:>7}",
        "client",
        "subscriptions",
        "events/s",
        "p50 µs",
        "p99 µs",
        "missing",
        "drops",
        "acks",
        "direct"
    );
    for (i, plan) in plans.iter().enumerate() {
        let st = stats[i].as_ref();
        println!(
            "     {:>6} {:<36} {:>8} {:>9.1} {:>9.1} {:>7} {:>6} {:>6} {:>7}",
            i,
            plan.describe(),
            num(&ticks[i], 2),
            us(num(&ticks[i], 3)),
            us(num(&ticks[i], 4)),
            num(&ticks[i], 5),
            st.map_or(0, |s| s.events_dropped),
            num(&ticks[i], 6),
            if plan.direct.is_some() {
                num(&ticks[i], 7).to_string()
            } else {
                "-".into()
            },
        );
    }
}

/// Load averages (1, 5, 15 min) from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Print the final summary.
pub fn print_summary(s: &Summary) {
    println!();
    println!(
        "{:>6} {:<36} {:>17} {:>7} {:>6} {:>8} {:>8} {:>8} {:>7} {:>9}  verdict",
        "client",
        "subscriptions",
        "received/due",
        "missing",
        "drops",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "acks",
        "cpu ms"
    );
    for (i, c) in s.clients.iter().enumerate() {
        let q = |p: f64| {
            c.latency
                .as_ref()
                .map_or(0.0, |h| us(h.value_at_quantile(p)))
        };
        println!(
            "{:>6} {:<36} {:>17} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>9.1}  {}",
            i,
            c.describe,
            format!("{}/{}", c.received(), c.expected()),
            c.missing(),
            c.dropped(),
            q(0.5),
            q(0.99),
            q(0.999),
            c.acks_sent,
            c.cpu_ns as f64 / 1e6,
            if c.ok() {
                "ok".to_string()
            } else {
                c.problems.join("; ")
            }
        );
        if let Some((got, due, lost, _)) = c.direct {
            println!("{:>6} direct channel: {got}/{due} records, {lost} lost", "");
        }
    }
    let (got, due): (u64, u64) = s
        .clients
        .iter()
        .fold((0, 0), |(g, d), c| (g + c.received(), d + c.expected()));
    let drops: u64 = s.clients.iter().map(ClientResult::dropped).sum();
    let unexplained: u64 = s.clients.iter().map(ClientResult::unexplained).sum();
    let secs = s.window_ns as f64 / 1e9;
    println!(
        "all: {got}/{due} events due delivered ({:.1}%), {:.0} events/s, {drops} dropped by the service, {unexplained} unexplained losses",
        100.0 * got as f64 / due.max(1) as f64,
        got as f64 / secs.max(1e-9)
    );
    if let Some(h) = &s.latency {
        println!(
            "latency (event timestamp to receipt): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max())
        );
    }
    let wall = s.wall_ns.max(1) as f64;
    println!(
        "service CPU over {:.1} s: sensor-service thread {:.0} ms ({:.1}% of a core), HAL threads {:.0} ms, whole parent process {:.0} ms (with the driver shim); load average {}",
        wall / 1e9,
        s.cpu.service_thread as f64 / 1e6,
        100.0 * s.cpu.service_thread as f64 / wall,
        s.cpu.hal_threads as f64 / 1e6,
        s.cpu.process as f64 / 1e6,
        load_average()
    );
    for p in &s.problems {
        println!("problem: {p}");
    }
    println!(
        "{}",
        if s.ok() {
            "ok: every client got what it asked for"
        } else {
            "FAILED: see above"
        }
    );
}

/// Run the client role if [`CHILD_ENV`] is set; `None` otherwise.
pub fn child_role() -> Option<Result<(), Error>> {
    let plan = std::env::var(CHILD_ENV).ok()?;
    Some(Plan::decode(&plan).and_then(|p| {
        let r = client_main(&p);
        if let Err(e) = &r {
            say(format_args!("{} error {e}", p.index));
        }
        r
    }))
}

#[allow(dead_code)] // the test and the bench include this file and have their own main
/// Serve the machine's IIO sensors through a [`SensorService`] over the IIO HAL and read each
/// for `--duration` seconds through an event connection's tube, in this process; false when
/// there is none (the simulated HAL then stays).
fn iio_demo(args: &Args) -> Result<bool, Error> {
    use bittube::sensor_demo::iio::{IioHal, IioPaths};
    use bittube::sensor_demo::sensors::SensorHal;
    use bittube::sensor_demo::{SensorEventQueue, ServiceConfig};
    let hal = SensorHal::iio_or_simulated(IioHal::open(IioPaths::default()));
    if matches!(hal, SensorHal::Simulated) {
        return Ok(false);
    }
    let svc = SensorService::with_hal(ServiceConfig::default(), hal)?;
    let rate = args.rates.first().copied().unwrap_or(50);
    let (conn, tube) = svc.create_connection()?;
    let mut queue = SensorEventQueue::new(tube);
    let mut buf = vec![SensorEvent::zeroed(); MAX_RECEIVE_EVENTS];
    // One sensor at a time: sensors of one device share its buffer.
    for sensor in svc.sensor_list() {
        svc.enable(
            conn,
            sensor.handle,
            Duration::from_nanos(period_ns(rate) as u64),
            Duration::ZERO,
        )?;
        let end = Instant::now() + Duration::from_secs_f64(args.duration);
        let mut events = Vec::new();
        while Instant::now() < end {
            match queue.read_timeout(&mut buf, Duration::from_millis(100)) {
                Ok(n) => events.extend(buf[..n].iter().filter(|e| !e.is_meta()).copied()),
                Err(TubeError::WouldBlock) => {}
                Err(e) => return Err(e.into()),
            }
        }
        svc.disable(conn, sensor.handle)?;
        println!(
            "iio: {} (handle {}) through the sensor service: {}",
            sensor.name,
            sensor.handle,
            describe_iio_events(&events)
        );
    }
    let stats = svc.destroy(conn)?;
    println!("iio: connection {stats:?}; service {:?}", svc.stats()?);
    Ok(true)
}

#[allow(dead_code)] // the test and the bench include this file and have their own main
/// Count, rate by the IIO time stamps, last value of a sensor's events.
fn describe_iio_events(events: &[SensorEvent]) -> String {
    let span = match (events.first(), events.last()) {
        (Some(a), Some(b)) if b.timestamp > a.timestamp => (b.timestamp - a.timestamp) as f64 / 1e9,
        _ => 0.0,
    };
    let hz = if span > 0.0 {
        (events.len() - 1) as f64 / span
    } else {
        0.0
    };
    let last = events
        .last()
        .map(|e| e.data[..3].to_vec())
        .unwrap_or_default();
    format!(
        "{} events, {hz:.1} Hz by the IIO time stamps, last {last:?}",
        events.len()
    )
}

fn main() -> ExitCode {
    if let Some(r) = child_role() {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sensor_demo client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--iio") {
        argv.remove(1);
        let args = Args::parse_from(&argv);
        match iio_demo(&args) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => println!("sensor_demo: no IIO sensor found; the simulated HAL stays"),
            Err(e) => {
                eprintln!("sensor_demo: IIO: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let args = Args::parse_from(&argv);
    let summary = Launcher::current_exe().and_then(|l| run(&args, &l, &mut |_| {}));
    match summary {
        Ok(s) => {
            print_summary(&s);
            if s.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sensor_demo: {e}");
            ExitCode::FAILURE
        }
    }
}
