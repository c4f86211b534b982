//! Load bench of the sensor service over binder: 64 client processes × 4 sensors × 1 kHz for
//! 10 s (256k events/s due), with the raw one-way latency of a SEQPACKET socketpair between
//! two processes measured in the same run as the baseline.
//!
//! ```sh
//! cargo bench --bench sensor_load                       # 64 clients, 10 s
//! cargo bench --bench sensor_load -- --clients 16 --duration 5
//! cargo bench --bench sensor_load -- --smoke            # 4 clients, 1 s
//! ```
//!
//! The run is the example's (`examples/sensor_demo.rs`, compiled in as a module): the parent
//! hosts the driver shim, the service manager and the sensor service; every client is this
//! bench re-executed as a client, looks the service up through binder, enables the four
//! continuous sensors at 1 kHz with no batching and reports what it received in its window
//! and a latency histogram (event timestamp to receipt, `CLOCK_MONOTONIC`).
//!
//! The baseline: a second process blocked in `poll` on one end of a SEQPACKET socketpair
//! (a `TubeEnd`, as a sensor client reads), the parent sending 104-byte packets stamped with
//! `CLOCK_MONOTONIC` every 250 µs; the receiver records receipt time minus stamp. It is
//! measured twice: on the idle service before the load (the goal's reference), and during
//! the load window (same machine contention as the sensor path).
//!
//! The equal-work baseline (`benches/common/raw_sensor.rs`), run in the same invocation for
//! the same time, half just before the service and half just after: the same timers (4 sensors × 1 kHz), one sender
//! thread fanning out to the same number of consumer processes over SEQPACKET socketpairs
//! with the same batching rule (≤ 39 events per packet on 4 KiB buffers, drop-oldest cache
//! of 1024), in raw libc calls, no binder, no service logic. The bench prints bittube/raw for
//! p50/p99/p99.9 and for CPU per event on the producer side (the service thread against the
//! raw sender thread) and the consumer side, and draws the latency CDFs to
//! `target/bench-plots/sensor_load.svg`.
//!
//! Goals (issues 6 and 15): 256k events/s delivered, 0 drops, p99 ≤ 1.5× the raw pipeline's
//! p99, service CPU per event ≤ 1.5× the raw sender's, on 2 cores. The bench prints each
//! figure next to its goal and exits 0 when the run itself worked (every process started,
//! reported and ended cleanly), met or not. `--smoke` (or `BITTUBE_BENCH_SMOKE=1`) runs 4
//! clients for 1 s, to prove the bench works.

#[path = "../examples/sensor_demo.rs"]
#[allow(dead_code)]
mod demo;
#[allow(dead_code)] // each bench uses part of it
#[path = "common/plot.rs"]
mod plot;
#[path = "common/raw_sensor.rs"]
mod raw_sensor;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittube::bittube::{BitTube, TubeEnd, TubeError};
use bittube::sensor_demo::clock_now_ns;
use hdrhistogram::Histogram;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Makes this bench the receiving end of the raw baseline.
const RAW_ENV: &str = "SENSOR_LOAD_RAW";
/// Time between two baseline packets.
const RAW_INTERVAL: Duration = Duration::from_micros(250);

/// One baseline packet: the send time, padded to the size of a sensor event.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Stamp {
    sent_ns: i64,
    pad: [u8; 96],
}

fn histogram() -> Result<Histogram<u64>, Error> {
    Ok(Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?)
}

/// The receiving process: read stamps until the sender closes, then print the histogram.
fn raw_receiver() -> Result<(), Error> {
    let fd: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let end = TubeEnd::try_from_socket(fd)?;
    let mut hist = histogram()?;
    let mut buf = [bytemuck::Zeroable::zeroed(); 16];
    loop {
        match end.recv_batch_timeout::<Stamp>(&mut buf, Duration::from_secs(60)) {
            Ok(n) => {
                let now = clock_now_ns();
                for s in &buf[..n] {
                    hist.saturating_record(now.saturating_sub(s.sent_ns).max(1_000) as u64);
                }
            }
            Err(TubeError::PeerClosed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    for v in hist.iter_recorded() {
        println!("hist {} {}", v.value_iterated_to(), v.count_at_value());
    }
    Ok(())
}

/// One-way latency of a socketpair between this process and a child, for `duration`.
fn raw_one_way(duration: Duration) -> Result<Histogram<u64>, Error> {
    let mut tube = BitTube::new()?;
    let remote = tube.take_remote()?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(RAW_ENV, "1")
        .stdin(Stdio::from(OwnedFd::from(remote)))
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let local = tube.into_local();
    // Let the receiver start and block in poll before the first stamp.
    std::thread::sleep(Duration::from_millis(100));
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let stamp = Stamp {
            sent_ns: clock_now_ns(),
            pad: [0; 96],
        };
        local.send_batch_timeout(&[stamp], Duration::from_secs(10))?;
        std::thread::sleep(RAW_INTERVAL);
    }
    drop(local);
    let mut hist = histogram()?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if let ["hist", v, c] = f[..] {
            hist.saturating_record_n(v.parse()?, c.parse()?);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("raw receiver ended with {status}").into());
    }
    Ok(hist)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn describe(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({} samples)",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        h.len()
    )
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The options of a run.
struct Opts {
    clients: usize,
    duration: f64,
    smoke: bool,
}

impl Opts {
    fn parse() -> Result<Opts, Error> {
        let argv: Vec<String> = std::env::args().collect();
        let smoke = argv.iter().any(|a| a == "--smoke")
            || std::env::var_os("BITTUBE_BENCH_SMOKE").is_some_and(|v| v != "0");
        let (c, d) = if smoke { (4, 1.0) } else { (64, 10.0) };
        Ok(Opts {
            clients: option(&argv, "--clients").map_or(Ok(c), |v| v.parse())?,
            duration: option(&argv, "--duration").map_or(Ok(d), |v| v.parse())?,
            smoke,
        })
    }
}

/// The service's run and what was measured around it.
struct Measured {
    summary: demo::Summary,
    raw_load: Option<Histogram<u64>>,
    load_during: String,
    total: Duration,
}

fn run_service(opts: &Opts) -> Result<Measured, Error> {
    let args = demo::Args {
        clients: opts.clients,
        duration: opts.duration,
        sensors: ["accel", "gyro", "mag", "wake"].map(String::from).to_vec(),
        rates: vec![1000],
        per_client: 4,
        batch_ms: 0,
        direct: false,
        quiet: true,
    };
    // The one-way baseline again while the service is loaded, started at Go and joined at Done.
    let window = Duration::from_secs_f64(opts.duration);
    let mut raw_load: Option<JoinHandle<Result<Histogram<u64>, Error>>> = None;
    let mut raw_load_result = None;
    let mut load_during = String::new();
    let launcher = demo::Launcher::current_exe()?;
    let started = Instant::now();
    let summary = demo::run(&args, &launcher, &mut |phase| match phase {
        demo::Phase::Go => {
            raw_load = Some(std::thread::spawn(move || {
                raw_one_way(window.saturating_sub(Duration::from_millis(300)))
            }));
        }
        demo::Phase::Done => {
            load_during = demo::load_average();
            raw_load_result = raw_load.take().map(|t| t.join());
        }
    })?;
    let raw_load = match raw_load_result {
        Some(Ok(Ok(h))) => Some(h),
        Some(Ok(Err(e))) => return Err(format!("baseline under load: {e}").into()),
        Some(Err(_)) => return Err("baseline thread panicked".into()),
        None => None,
    };
    Ok(Measured {
        summary,
        raw_load,
        load_during,
        total: started.elapsed(),
    })
}

fn bench() -> Result<(), Error> {
    let opts = Opts::parse()?;
    let load_before = demo::load_average();
    println!(
        "sensor_load{}: {} client processes × 4 sensors × 1 kHz for {} s; {} CPUs; load average {load_before}",
        if opts.smoke { " (smoke)" } else { "" },
        opts.clients,
        opts.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let raw_idle = raw_one_way(Duration::from_secs_f64(if opts.smoke { 0.3 } else { 2.0 }))?;
    println!(
        "raw one-way socketpair, idle:        {}",
        describe(&raw_idle)
    );
    // The raw pipeline runs half its time before the service and half after, so that a
    // machine whose load drifts weighs on both alike.
    let half = Duration::from_secs_f64(opts.duration / 2.0);
    let load_raw = demo::load_average();
    let mut raw = raw_sensor::run(opts.clients, half)?;
    println!(
        "raw pipeline, first half (load average {load_raw} at its start): {}",
        describe(&raw.latency)
    );
    let m = run_service(&opts)?;
    let load_raw = demo::load_average();
    let second = raw_sensor::run(opts.clients, half)?;
    println!(
        "raw pipeline, second half (load average {load_raw} at its start): {}",
        describe(&second.latency)
    );
    raw.merge(second)?;
    report(&opts, &m, &raw, &raw_idle)?;
    println!(
        "load average: {load_before} before, {} at the end of the window, {} after",
        m.load_during,
        demo::load_average()
    );
    let s = &m.summary;
    for p in &s.problems {
        println!("problem: {p}");
    }
    for (i, c) in s.clients.iter().enumerate().filter(|(_, c)| !c.ok()) {
        println!("client {i}: {}", c.problems.join("; "));
    }
    println!("total run {:.1} s (service part)", m.total.as_secs_f64());
    if !s.problems.is_empty() || s.clients.iter().any(|c| !c.exited_ok) {
        return Err("the run did not complete".into());
    }
    Ok(())
}

/// What the service counted over all connections: events sent, packets, tube full, largest
/// cache.
fn service_counts(s: &demo::Summary) -> (u64, u64, u64, usize) {
    s.clients
        .iter()
        .filter_map(|c| c.service.as_ref())
        .fold((0, 0, 0, 0), |(e, p, f, c), st| {
            (
                e + st.events_sent,
                p + st.packets_sent,
                f + st.tube_full,
                c.max(st.cache_peak),
            )
        })
}

fn report(
    opts: &Opts,
    m: &Measured,
    raw: &raw_sensor::RawResult,
    raw_idle: &Histogram<u64>,
) -> Result<(), Error> {
    let s = &m.summary;
    let (got, due): (u64, u64) = s
        .clients
        .iter()
        .fold((0, 0), |(g, d), c| (g + c.received(), d + c.expected()));
    let drops: u64 = s.clients.iter().map(|c| c.dropped()).sum();
    let unexplained: u64 = s.clients.iter().map(|c| c.unexplained()).sum();
    let failed = s.clients.iter().filter(|c| !c.ok()).count();
    let secs = s.window_ns as f64 / 1e9;
    let rate = got as f64 / secs;
    let client_cpu: u64 = s.clients.iter().map(|c| c.cpu_ns).sum();
    let wall = s.wall_ns.max(1) as f64;
    let (sent, packets, tube_full, cache_peak) = service_counts(s);
    println!();
    println!(
        "delivered/expected: {got}/{due} ({:.2}%), {:.0} events/s; drops {drops} (service count), unexplained losses {unexplained}; clients short of what they asked: {failed}/{}",
        100.0 * got as f64 / due.max(1) as f64,
        rate,
        s.clients.len()
    );
    println!(
        "service sends: {sent} events in {packets} packets ({:.2} events/packet), tube full {tube_full} times, largest cache {cache_peak} events",
        sent as f64 / packets.max(1) as f64
    );
    println!(
        "raw pipeline, {:.1} s: {} events in {} packets ({:.2} events/packet), tube full {} times, largest cache {} events, drops {}; received {} of {} due; timers woke up to {:.1} ms late ({} wake-ups > 10 ms late)",
        raw.wall_ns as f64 / 1e9,
        raw.sent,
        raw.packets,
        raw.sent as f64 / raw.packets.max(1) as f64,
        raw.tube_full,
        raw.cache_peak,
        raw.drops,
        raw.received,
        raw.produced * opts.clients as u64,
        raw.late.max as f64 / 1e6,
        raw.late.over_10ms
    );
    println!(
        "service CPU over {:.1} s: sensor-service thread {:.0} ms ({:.1}% of a core), HAL threads {:.0} ms ({:.1}%), parent process {:.0} ms ({:.1}%, with the driver shim); clients {:.0} ms ({:.1}% of a core)",
        wall / 1e9,
        s.cpu.service_thread as f64 / 1e6,
        100.0 * s.cpu.service_thread as f64 / wall,
        s.cpu.hal_threads as f64 / 1e6,
        100.0 * s.cpu.hal_threads as f64 / wall,
        s.cpu.process as f64 / 1e6,
        100.0 * s.cpu.process as f64 / wall,
        client_cpu as f64 / 1e6,
        100.0 * client_cpu as f64 / wall,
    );
    let lat = s.latency.as_ref().ok_or("no latency samples")?;
    println!("end-to-end (HAL timestamp → client): {}", describe(lat));
    println!(
        "raw one-way socketpair, idle:        {}",
        describe(raw_idle)
    );
    if let Some(h) = &m.raw_load {
        println!("raw one-way socketpair, under load:  {}", describe(h));
    }
    let cpu = CpuPerEvent {
        service: s.cpu.service_thread as f64 / sent.max(1) as f64,
        raw_sender: raw.sender_cpu as f64 / raw.sent.max(1) as f64,
        clients: client_cpu as f64 / got.max(1) as f64,
        raw_consumers: raw.consumer_cpu as f64 / raw.received.max(1) as f64,
        hal: s.cpu.hal_threads as f64 / sent.max(1) as f64,
        raw_timers: raw.timer_cpu as f64 / raw.sent.max(1) as f64,
    };
    let p99_ratio = table(lat, &raw.latency, &cpu);
    let want = opts.clients as f64 * 4.0 * 1000.0;
    let goal = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goals: {}k events/s delivered: {} ({rate:.0}/s, {} due/s); 0 drops: {}; p99 ≤ 1.5× raw pipeline p99: {} ({p99_ratio:.2}×); service CPU/event ≤ 1.5× raw sender's: {} ({:.2}×)",
        opts.clients * 4,
        goal(rate >= want * 0.999 && due as f64 / secs >= want * 0.995),
        (due as f64 / secs) as u64,
        goal(drops == 0 && unexplained == 0),
        goal(p99_ratio <= 1.5),
        goal(cpu.service <= 1.5 * cpu.raw_sender),
        cpu.service / cpu.raw_sender.max(1e-9)
    );
    picture(lat, &raw.latency, raw_idle);
    Ok(())
}

/// CPU per event, ns.
struct CpuPerEvent {
    service: f64,
    raw_sender: f64,
    clients: f64,
    raw_consumers: f64,
    hal: f64,
    raw_timers: f64,
}

/// Prints bittube against the raw pipeline; returns the p99 ratio.
fn table(lat: &Histogram<u64>, raw: &Histogram<u64>, cpu: &CpuPerEvent) -> f64 {
    println!(
        "{:<34} | {:>10} | {:>10} | {:>8}",
        "bittube vs raw pipeline", "bittube", "raw", "ratio"
    );
    for (name, q) in [("p50 µs", 0.5), ("p99 µs", 0.99), ("p99.9 µs", 0.999)] {
        let (a, b) = (lat.value_at_quantile(q), raw.value_at_quantile(q));
        println!(
            "{name:<34} | {:>10.1} | {:>10.1} | {:>7.2}×",
            us(a),
            us(b),
            a as f64 / b.max(1) as f64
        );
    }
    for (name, a, b) in [
        (
            "CPU/event, producer thread, ns",
            cpu.service,
            cpu.raw_sender,
        ),
        (
            "CPU/event, timer (HAL) threads, ns",
            cpu.hal,
            cpu.raw_timers,
        ),
        ("CPU/event, consumers, ns", cpu.clients, cpu.raw_consumers),
    ] {
        println!(
            "{name:<34} | {a:>10.0} | {b:>10.0} | {:>7.2}×",
            a / b.max(1e-9)
        );
    }
    lat.value_at_quantile(0.99) as f64 / raw.value_at_quantile(0.99).max(1) as f64
}

fn picture(lat: &Histogram<u64>, raw: &Histogram<u64>, idle: &Histogram<u64>) {
    let curves = [
        plot::Curve::from_hist("bittube: HAL → service → binder-made tube → client", lat),
        plot::Curve::from_hist("raw pipeline (same work, libc only)", raw),
        plot::Curve::from_hist("raw one-way socketpair, idle", idle),
    ];
    let marks = [plot::Mark {
        name: "goal: bittube p99 ≤ 1.5× raw pipeline p99".into(),
        at_us: 1.5 * us(raw.value_at_quantile(0.99)),
    }];
    match plot::write_cdf(
        "sensor_load",
        "sensor_load: event latency, CDF",
        &curves,
        &marks,
    ) {
        Ok(p) => println!("picture: {}", p.display()),
        Err(e) => println!("picture not written: {e}"),
    }
}

fn main() -> ExitCode {
    let role = if let Some(r) = demo::child_role() {
        r
    } else if std::env::var_os(RAW_ENV).is_some() {
        raw_receiver()
    } else if std::env::var_os(raw_sensor::CONSUMER_ENV).is_some() {
        raw_sensor::consumer()
    } else {
        bench()
    };
    match role {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensor_load: {e}");
            ExitCode::FAILURE
        }
    }
}
