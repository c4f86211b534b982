//! Sync binder round trips through the driver shim vs a direct Unix-socket ping-pong between
//! the same two OS processes, a relayed one (the floor of any design with a driver thread in
//! the middle) and a D-Bus method call through a `dbus-daemon` (a real peer), in the same
//! run; then oneway throughput (binder oneway transactions vs D-Bus signals) and fd
//! throughput (binder `BINDER_TYPE_FD` vs SCM_RIGHTS through the relay).
//!
//! `cargo bench --bench binder` (set `BINDER_BENCH_ITERS` for another count per configuration;
//! the default is 20 000; set `BINDER_BENCH_ONLY` to `shim`, `direct`, `relay`, `dbus` or `lane` to
//! run only that way, e.g. under `strace -c -f` to count system calls per round trip;
//! `BINDER_BENCH_THREADS=1` adds CPU and switches per round trip by thread;
//! `BINDER_BENCH_NO_THROUGHPUT=1` leaves the oneway and fd throughput out;
//! `BITTUBE_BENCH_SMOKE=1` runs a second's worth of everything, to prove the bench works).
//! The D-Bus peer needs `dbus-daemon`; when it is missing the bench installs the
//! `dbus-daemon` package with apt-get (root) or says why not and skips D-Bus.
//!
//! This process starts the shim embedded ([`Driver::start`]) and re-executes itself as the
//! server (`BITTUBE_BENCH_CHILD` set, `BITTUBE_BINDER` naming the shim). The server opens a
//! [`ShimDevice`], becomes the context manager, enters the looper on a thread of its own and
//! answers every `BR_TRANSACTION` with a `BC_REPLY` of the same size followed by the
//! `BC_FREE_BUFFER` of the transaction's buffer, as libbinder's `sendReply` does (its process
//! sets no thread pool, so `ShimDevice` answers those replies' `BR_TRANSACTION_COMPLETE`
//! itself, as the kernel would, without a round trip through the shim). Its main
//! thread echoes every packet that arrives on its stdin, one end of a SOCK_SEQPACKET
//! socketpair whose other end this process keeps; a third thread serves D-Bus.
//!
//! Per payload size (0 and 1024 bytes), this process then times, in alternating rounds:
//!
//! - **shim**: `BC_TRANSACTION` to handle 0 and reads until `BR_REPLY`, the `BC_FREE_BUFFER` of
//!   the previous reply riding in front of the next call (as libbinder piggybacks it); only
//!   the [`Device`] trait's BC/BR bytes are used;
//! - **direct**: one packet of an 8-byte sequence number plus the payload out, the same
//!   packet back (a zero-length SEQPACKET packet would read as end of file, hence the
//!   header);
//! - **relay**: the same packets, but through a forwarding thread of this process (poll,
//!   recvmsg, sendmsg), to the server's second echo socket (its stdout): the floor of any
//!   design that relays through a driver thread, two hops each way like the shim;
//! - **dbus**: `Echo(ay) -> ay` through the daemon, libdbus on both sides;
//! - **lane**: the data path of the "horizon" design (`benches/common/lane.rs`): a memfd and
//!   two eventfds between this thread and a server thread, no shim in the path: what a
//!   binder round trip could cost with two wake-ups, as the kernel's (a prototype, not
//!   binder: no identity, refs or thread selection on this path).
//!
//! Each line prints the median and p99 round trip in µs, and the ratios the goals are about.
//! A second table gives, per round trip, the CPU time all threads of the three processes
//! (this one, the server, the daemon) spent (`/proc/<pid>/task/*/schedstat`, first field),
//! the time they spent runnable but waiting for a CPU (second field) and how many times a
//! thread was switched in (third field): on a busy machine the latencies follow the waits,
//! while CPU time and switches count the work each way does. The CDFs of the 0-byte round
//! trips go to `target/bench-plots/binder.svg`.
//!
//! The goals are judged per round: each round's shim p50 (p99, CPU per round trip) against
//! the same round's relay (D-Bus), and the median of those ratios over the rounds, printed
//! with their range and with the ratio over all samples pooled. On these shared 2-vCPU
//! machines a round trip's latency depends on which vCPUs the threads happen to wake on
//! (waking an idle vCPU costs tens of µs here), and that changes within a run; a ratio
//! taken within one round compares the ways under the same conditions.

#[path = "common/dbus_peer.rs"]
mod dbus_peer;
#[path = "common/lane.rs"]
mod lane;
#[allow(dead_code)] // each bench uses part of it
#[path = "common/plot.rs"]
mod plot;

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bittube::binder_ipc::device::{Device, ShimDevice, WriteRead};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::binder_ipc::uapi::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

const CHILD_ENV: &str = "BITTUBE_BENCH_CHILD";
const ITERS_ENV: &str = "BINDER_BENCH_ITERS";
const ONLY_ENV: &str = "BINDER_BENCH_ONLY";
const SMOKE_ENV: &str = "BITTUBE_BENCH_SMOKE";
/// Set: CPU and switches per round trip by thread, too.
const THREADS_ENV: &str = "BINDER_BENCH_THREADS";
/// Set: only the round trips (e.g. to count system calls per round trip under strace).
const NO_THROUGHPUT_ENV: &str = "BINDER_BENCH_NO_THROUGHPUT";
const WAYS: [&str; 5] = ["shim", "direct", "relay", "dbus", "lane"];
const SIZES: [usize; 2] = [0, 1024];
const ROUNDS: usize = 10;
const READY: &[u8] = b"ready!!!";
/// The code the server echoes, so a stray transaction is noticed (libbinder's
/// FIRST_CALL_TRANSACTION).
const CODE: u32 = 1;
/// Answers with the number of oneway transactions the server has seen (a `u64`).
const CODE_COUNT: u32 = 2;
/// Carries one `BINDER_TYPE_FD` object; the server closes the fd and replies empty.
const CODE_FD: u32 = 3;
/// A oneway transaction the server counts.
const CODE_ONEWAY: u32 = 4;
/// Payload of the oneway transactions and signals.
const ONEWAY_PAYLOAD: usize = 64;

/// How much to run.
struct Config {
    iters: usize,
    oneway: u64,
    fds: usize,
    only: Option<String>,
    smoke: bool,
}

impl Config {
    fn from_env() -> Config {
        let smoke = std::env::var_os(SMOKE_ENV).is_some_and(|v| v != "0");
        let iters: usize = std::env::var(ITERS_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if smoke { 300 } else { 20_000 })
            .max(ROUNDS);
        let only = std::env::var(ONLY_ENV).ok();
        if let Some(o) = &only {
            assert!(
                WAYS.contains(&o.as_str()),
                "{ONLY_ENV} must be one of {WAYS:?}"
            );
        }
        Config {
            iters,
            oneway: if smoke { 500 } else { 50_000 },
            fds: if smoke { 300 } else { 20_000 },
            only,
            smoke,
        }
    }

    fn wanted(&self, way: usize) -> bool {
        self.only.as_deref().is_none_or(|o| o == WAYS[way])
    }
}

/// Everything this process holds during the run.
struct Rig {
    driver: Driver,
    server: Server,
    daemon: Option<dbus_peer::Daemon>,
    mine: OwnedFd,
    relay_near: OwnedFd,
    relay_thread: std::thread::JoinHandle<()>,
    /// The calling end of the horizon prototype's lane (the server serves the other).
    lane: lane::Lane,
}

impl Rig {
    fn start() -> Rig {
        let driver = Driver::start().expect("start the embedded driver shim");
        let daemon = match dbus_peer::Daemon::start() {
            Ok(d) => Some(d),
            Err(e) => {
                println!("D-Bus skipped: {e}");
                None
            }
        };
        let (mine, theirs) = seqpacket_pair();
        // The relay: this thread <-> relay thread <-> server's stdout.
        let (relay_near, relay_far) = seqpacket_pair();
        let (relay_out, theirs_relayed) = seqpacket_pair();
        let bus = daemon.as_ref().map(|d| d.address.as_str());
        let server = Server::spawn(driver.socket_path(), theirs, theirs_relayed, bus);
        let (lane, lane_fds) = lane::Lane::create().expect("create the lane");
        let raw: Vec<RawFd> = lane_fds.iter().map(|f| f.as_raw_fd()).collect();
        send_with_fds(mine.as_raw_fd(), b"lane", &raw);
        drop(lane_fds);
        let relay_thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || relay(relay_far, relay_out))
            .expect("spawn the relay thread");
        let mut buf = [0u8; 64];
        let n = nix::sys::socket::recv(mine.as_raw_fd(), &mut buf, MsgFlags::empty())
            .expect("wait for the server");
        assert_eq!(&buf[..n], READY, "the server did not start");
        Rig {
            driver,
            server,
            daemon,
            mine,
            relay_near,
            relay_thread,
            lane,
        }
    }

    fn pids(&self) -> Vec<u32> {
        let mut p = vec![std::process::id(), self.server.pid()];
        p.extend(self.daemon.as_ref().map(|d| d.pid()));
        p
    }

    fn finish(mut self) {
        self.lane.stop();
        drop(self.relay_near); // end of file: the relay thread ends, closing the server's stdout
        self.relay_thread.join().expect("relay thread");
        drop(self.mine); // end of file: the server exits
        self.server.wait();
        let state = self.driver.state().expect("shim state");
        assert!(
            !state.contains("  buffer at "),
            "buffers left allocated after the run:\n{state}"
        );
        // How many of the server's replies ShimDevice answered itself (ARCHITECTURE.md,
        // "Connections and wake-ups"): all of those without fds, as its process has no pool.
        if let Some(line) = state
            .lines()
            .find(|l| l.contains("replies completed by the device"))
        {
            println!("shim: {}", line.trim());
        }
    }
}

/// Latencies of one payload size, ns, per way.
#[derive(Default)]
struct Samples {
    ways: [Vec<u64>; 5],
    sched: [Sched; 5],
    /// Per round, per way: the round's CPU time and switches (its latencies are the round's
    /// slice of `ways`, `per_round` samples each).
    rounds: Vec<[Sched; 5]>,
    /// Round trips per round and way.
    per_round: usize,
    /// Per way, per thread (`pid/comm`): ns on CPU and switches in, when
    /// `BINDER_BENCH_THREADS` is set.
    threads: [BTreeMap<String, (u64, u64)>; 5],
}

/// Every thread of `pids`: tid -> (`pid/comm`, ns on CPU, switches in).
fn thread_stats(pids: &[u32]) -> BTreeMap<u64, (String, u64, u64)> {
    let mut out = BTreeMap::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let tid: u64 = t.file_name().to_string_lossy().parse().unwrap_or(0);
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            let f: Vec<u64> = text
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let role = if *pid == std::process::id() {
                "bench"
            } else {
                "peer"
            };
            out.insert(
                tid,
                (
                    format!("{role} {pid}/{}", comm.trim()),
                    f.first().copied().unwrap_or(0),
                    f.get(2).copied().unwrap_or(0),
                ),
            );
        }
    }
    out
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let cfg = Config::from_env();
    let rig = Rig::start();
    let dev = ShimDevice::open(rig.driver.socket_path()).expect("open the shim");
    let mut client = Client::new(&dev);
    let caller = rig
        .daemon
        .as_ref()
        .map(|d| dbus_peer::Caller::connect(&d.address).expect("connect to the D-Bus server"));
    println!(
        "binder bench{}: load average {} (/proc/loadavg) at the start",
        if cfg.smoke { " (smoke)" } else { "" },
        load_average()
    );
    let started = Instant::now();
    let mut all = Vec::new();
    for size in SIZES {
        all.push((
            size,
            latencies(&cfg, &rig, &mut client, caller.as_ref(), size),
        ));
    }
    print_latencies(&cfg, &all);
    print_cpu(&all);
    if std::env::var_os(THREADS_ENV).is_some() {
        print_threads(&all);
    }
    let tput = if std::env::var_os(NO_THROUGHPUT_ENV).is_some() {
        Throughput::default()
    } else {
        throughput(&cfg, &rig, &mut client, caller.as_ref())
    };
    client.finish();
    print_goals(&all[0].1, &tput);
    match plot_latencies(&all[0].1) {
        Ok(path) => println!("picture: {}", path.display()),
        Err(e) => println!("picture not written: {e}"),
    }
    println!(
        "load average {} at the end ({:.1} s)",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    drop(caller);
    rig.finish();
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Round trips of `size`-byte payloads, every way, in alternating rounds.
fn latencies(
    cfg: &Config,
    rig: &Rig,
    client: &mut Client<'_>,
    caller: Option<&dbus_peer::Caller>,
    size: usize,
) -> Samples {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let per_round = cfg.iters / ROUNDS;
    let pids = rig.pids();
    let mut s = Samples {
        per_round,
        ..Samples::default()
    };
    let by_thread = std::env::var_os(THREADS_ENV).is_some();
    let mut run = |way: usize, n: usize, out: &mut Vec<u64>| match way {
        0 => client.run(&payload, n, out),
        1 => direct(rig.mine.as_fd(), &payload, n, out),
        2 => direct(rig.relay_near.as_fd(), &payload, n, out),
        3 => {
            if let Some(c) = caller {
                c.run(&payload, n, out)
            }
        }
        _ => lane_calls(&rig.lane, &payload, n, out),
    };
    // Warm-up: caches, the allocator, the shim's first-use paths.
    let warm = (cfg.iters / 10).max(100);
    for way in 0..WAYS.len() {
        if cfg.wanted(way) {
            run(way, warm, &mut Vec::with_capacity(warm));
        }
    }
    for round in 0..ROUNDS {
        s.rounds.push(Default::default());
        // Which one goes first turns with the round.
        for k in 0..WAYS.len() {
            let way = (round + k) % WAYS.len();
            if !cfg.wanted(way) {
                continue;
            }
            let threads_before = by_thread.then(|| thread_stats(&pids));
            let before = Sched::now(&pids);
            run(way, per_round, &mut s.ways[way]);
            let spent = Sched::now(&pids).since(before);
            s.sched[way].add(spent);
            s.rounds[round][way] = spent;
            if let Some(tb) = threads_before {
                for (tid, (name, run, sw)) in thread_stats(&pids) {
                    let (r0, s0) = tb.get(&tid).map_or((0, 0), |b| (b.1, b.2));
                    let e = s.threads[way].entry(name).or_default();
                    e.0 += run.saturating_sub(r0);
                    e.1 += sw.saturating_sub(s0);
                }
            }
        }
    }
    s
}

/// `a / b`, NaN when `b` did not run.
/// `n` lane calls (the horizon prototype), their durations appended to `out`.
fn lane_calls(lane: &lane::Lane, payload: &[u8], n: usize, out: &mut Vec<u64>) {
    let mut back = Vec::with_capacity(payload.len());
    for _ in 0..n {
        let t = Instant::now();
        lane.call(payload, &mut back);
        out.push(t.elapsed().as_nanos() as u64);
        assert_eq!(back.len(), payload.len(), "lane reply of the wrong size");
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

fn print_latencies(cfg: &Config, all: &[(usize, Samples)]) {
    println!(
        "sync round trip, {} per configuration ({ROUNDS} alternating rounds), µs:\n\
         {:>7} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | shim/relay p50 p99 | shim/direct p50 | D-Bus/shim p50 p99",
        cfg.iters, "payload", "shim p50", "p99", "direct", "p99", "relay", "p99", "D-Bus", "p99",
        "lane*", "p99"
    );
    for (size, s) in all {
        let p: Vec<(u64, u64)> = s.ways.iter().map(|v| percentiles(&mut v.clone())).collect();
        let cells: Vec<String> = p
            .iter()
            .map(|(a, b)| format!("{:>8.1} {:>8.1}", us(*a), us(*b)))
            .collect();
        println!(
            "{:>5} B | {} | {} | {} | {} | {} | {:>6.2}× {:>6.2}×     | {:>6.2}×         | {:>6.2}× {:>6.2}×",
            size,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            ratio(p[0].0, p[2].0),
            ratio(p[0].1, p[2].1),
            ratio(p[0].0, p[1].0),
            ratio(p[3].0, p[0].0),
            ratio(p[3].1, p[0].1),
        );
    }
    println!(
        "(* lane: the horizon prototype's data path, benches/common/lane.rs: a memfd and two \
         eventfds between caller and server, no shim in the path; not binder)"
    );
}

fn print_threads(all: &[(usize, Samples)]) {
    for (size, s) in all {
        for (way, threads) in s.threads.iter().enumerate() {
            let n = s.ways[way].len().max(1) as f64;
            for (name, (run, sw)) in threads {
                if *run as f64 / n >= 100.0 {
                    println!(
                        "{size:>5} B {:>6} | {name:<32} | {:>6.1} µs CPU | {:>4.2} switches per round trip",
                        WAYS[way],
                        *run as f64 / n / 1000.0,
                        *sw as f64 / n
                    );
                }
            }
        }
    }
}

fn print_cpu(all: &[(usize, Samples)]) {
    println!(
        "per round trip, all processes (this one, the server, dbus-daemon): µs on CPU / µs \
         runnable waiting for a CPU / switches (of them preemptions):\n\
         {:>7} | {:>26} | {:>26} | {:>26} | {:>26} | {:>26} | shim/relay CPU",
        "payload", "shim", "direct", "relay", "D-Bus", "lane*"
    );
    for (size, s) in all {
        let cells: Vec<String> = (0..WAYS.len())
            .map(|w| {
                let c = s.sched[w].per(s.ways[w].len().max(1));
                format!("{:>6.1} / {:>6.1} / {:>4.1} ({:>3.1})", c.0, c.1, c.2, c.3)
            })
            .collect();
        let cpu = |w: usize| s.sched[w].per(s.ways[w].len().max(1)).0;
        println!(
            "{:>5} B | {} | {:>6.2}×",
            size,
            cells.join(" | "),
            cpu(0) / cpu(2).max(1e-9)
        );
    }
}

/// Throughput figures.
#[derive(Default)]
struct Throughput {
    /// Oneway transactions per second through the shim, and the retries after a full
    /// oneway space (`BR_FAILED_REPLY`).
    shim_oneway: f64,
    shim_oneway_retries: u64,
    /// D-Bus signals per second, sender to counted.
    dbus_signals: Option<f64>,
    /// fds per second: one `BINDER_TYPE_FD` per sync call; one SCM_RIGHTS fd per relayed
    /// round trip.
    shim_fds: f64,
    relay_fds: f64,
}

fn throughput(
    cfg: &Config,
    rig: &Rig,
    client: &mut Client<'_>,
    caller: Option<&dbus_peer::Caller>,
) -> Throughput {
    let payload = vec![7u8; ONEWAY_PAYLOAD];
    let mut t = Throughput::default();
    if cfg.wanted(0) {
        let start = client.count();
        let began = Instant::now();
        for _ in 0..cfg.oneway {
            while !client.oneway(&payload) {
                t.shim_oneway_retries += 1;
                std::thread::yield_now();
            }
        }
        while client.count() < start + cfg.oneway {}
        t.shim_oneway = cfg.oneway as f64 / began.elapsed().as_secs_f64();
    }
    if let (Some(c), true) = (caller, cfg.wanted(3)) {
        t.dbus_signals = Some(cfg.oneway as f64 / c.signals(&payload, cfg.oneway).as_secs_f64());
    }
    // The fd every transfer carries: the receiver closes its copy.
    let fd = nix::sys::eventfd::EventFd::new().expect("eventfd");
    if cfg.wanted(0) {
        let began = Instant::now();
        for _ in 0..cfg.fds {
            client.send_fd(fd.as_fd());
        }
        t.shim_fds = cfg.fds as f64 / began.elapsed().as_secs_f64();
    }
    if cfg.wanted(2) {
        let began = Instant::now();
        relayed_fds(rig.relay_near.as_fd(), fd.as_fd(), cfg.fds);
        t.relay_fds = cfg.fds as f64 / began.elapsed().as_secs_f64();
    }
    println!(
        "oneway, {} × {ONEWAY_PAYLOAD} B, sender to all counted by the server: shim {:.0}/s \
         ({} retries after a full oneway space), D-Bus signals {}; shim/D-Bus {}",
        cfg.oneway,
        t.shim_oneway,
        t.shim_oneway_retries,
        t.dbus_signals
            .map_or("skipped".into(), |d| format!("{d:.0}/s")),
        t.dbus_signals
            .map_or("-".into(), |d| format!("{:.2}×", t.shim_oneway / d)),
    );
    println!(
        "fds, {} sync round trips with one fd each: binder BINDER_TYPE_FD {:.0} fds/s, relayed \
         SCM_RIGHTS floor {:.0} fds/s; shim/floor {:.2}×",
        cfg.fds,
        t.shim_fds,
        t.relay_fds,
        t.shim_fds / t.relay_fds.max(1e-9)
    );
    t
}

/// Way `a` against way `b`, round by round: one ratio per round.
#[derive(Default)]
struct RoundRatios {
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// CPU per round trip, all processes.
    cpu: Vec<f64>,
}

/// Per round, way `a` against way `b` on the same round. Rounds alternate, so load that
/// comes and goes during the run falls on both ways; the goals are judged on the medians of
/// these ratios.
fn round_ratios(s: &Samples, a: usize, b: usize) -> RoundRatios {
    let n = s.per_round;
    let mut out = RoundRatios::default();
    for (r, sched) in s.rounds.iter().enumerate() {
        let round = |w: usize| s.ways[w].get(r * n..(r + 1) * n).map(<[u64]>::to_vec);
        if let (Some(mut x), Some(mut y)) = (round(a), round(b)) {
            let (px, py) = (percentiles(&mut x), percentiles(&mut y));
            out.p50.push(ratio(px.0, py.0));
            out.p99.push(ratio(px.1, py.1));
            out.cpu
                .push(sched[a].run as f64 / sched[b].run.max(1) as f64);
        }
    }
    out
}

/// Median, lowest and highest of `v` (NaNs when empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

fn print_goals(s: &Samples, t: &Throughput) {
    let p: Vec<(u64, u64)> = s.ways.iter().map(|v| percentiles(&mut v.clone())).collect();
    let cpu: Vec<_> = (0..4)
        .map(|w| s.sched[w].per(s.ways[w].len().max(1)))
        .collect();
    let goal = |ok: bool| if ok { "met" } else { "NOT met" };
    let relay = round_ratios(s, 0, 2);
    let ((sr, sr_lo, sr_hi), (cr, cr_lo, cr_hi)) = (spread(&relay.p50), spread(&relay.cpu));
    let sw = cpu[0].2;
    println!(
        "goals (0-byte payload; ratios are medians of the {} alternating rounds' own ratios, \
         with their range, then the ratio over all samples):",
        relay.p50.len()
    );
    println!(
        "  shim p50 ≤ 1.3× relay p50: {} ({sr:.2}×; rounds {sr_lo:.2}–{sr_hi:.2}×; all {:.2}×)",
        goal(sr <= 1.3),
        ratio(p[0].0, p[2].0)
    );
    println!(
        "  shim CPU per round trip ≤ 1.5× relay's: {} ({cr:.2}×; rounds {cr_lo:.2}–{cr_hi:.2}×; all {:.2}×)",
        goal(cr <= 1.5),
        cpu[0].0 / cpu[2].0.max(1e-9)
    );
    println!(
        "  ≤ 5 switches per shim round trip: {} ({sw:.1})",
        goal(sw <= 5.0)
    );
    if p[3].0 > 0 {
        let dbus = round_ratios(s, 3, 0);
        let ((a, a_lo, a_hi), (b, b_lo, b_hi)) = (spread(&dbus.p50), spread(&dbus.p99));
        println!(
            "  shim ≥ 1.8× faster than D-Bus at p50 and p99: {} ({a:.2}× / {b:.2}×; rounds \
             {a_lo:.2}–{a_hi:.2}× / {b_lo:.2}–{b_hi:.2}×; all {:.2}× / {:.2}×)",
            goal(a >= 1.8 && b >= 1.8),
            ratio(p[3].0, p[0].0),
            ratio(p[3].1, p[0].1)
        );
    }
    if p[4].0 > 0 {
        println!(
            "  (horizon prototype, no goal) lane p50 {:.1} µs = {:.2}× direct, {:.2}× relay; {:.1} switches per round trip",
            us(p[4].0),
            ratio(p[4].0, p[1].0),
            ratio(p[4].0, p[2].0),
            s.sched[4].per(s.ways[4].len().max(1)).2
        );
    }
    if let Some(d) = t.dbus_signals {
        println!(
            "  (no goal) oneway shim/D-Bus signals {:.2}×; fds shim/relay floor {:.2}×",
            t.shim_oneway / d,
            t.shim_fds / t.relay_fds.max(1e-9)
        );
    }
}

fn plot_latencies(
    s: &Samples,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let names = [
        "shim (binder)",
        "direct ping-pong",
        "relay floor",
        "D-Bus (dbus-daemon)",
        "lane: horizon prototype (not binder)",
    ];
    let curves: Vec<plot::Curve> = (0..WAYS.len())
        .filter(|&w| !s.ways[w].is_empty())
        .map(|w| plot::Curve::from_ns(names[w], &s.ways[w]))
        .collect();
    let mut marks = Vec::new();
    let (r50, _) = percentiles(&mut s.ways[2].clone());
    if r50 > 0 {
        marks.push(plot::Mark {
            name: "goal: shim p50 ≤ 1.3× relay p50".into(),
            at_us: 1.3 * us(r50),
        });
    }
    let (d50, _) = percentiles(&mut s.ways[3].clone());
    if d50 > 0 {
        marks.push(plot::Mark {
            name: "goal: shim p50 ≤ D-Bus p50 / 1.8".into(),
            at_us: us(d50) / 1.8,
        });
    }
    plot::write_cdf(
        "binder",
        "binder sync round trip (0 B), CDF",
        &curves,
        &marks,
    )
}

/// Scheduler times of every thread of the processes measured: ns on a CPU, ns runnable but
/// waiting for one.
#[derive(Clone, Copy, Debug, Default)]
struct Sched {
    run: u64,
    wait: u64,
    switches: u64,
    /// Involuntary switches (preemptions), from `/proc/<pid>/task/*/status`.
    preempted: u64,
}

impl Sched {
    fn now(pids: &[u32]) -> Sched {
        let mut s = Sched::default();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
                    continue;
                };
                let mut f = text
                    .split_whitespace()
                    .map(|x| x.parse::<u64>().unwrap_or(0));
                s.run += f.next().unwrap_or(0);
                s.wait += f.next().unwrap_or(0);
                s.switches += f.next().unwrap_or(0);
                if let Ok(status) = std::fs::read_to_string(t.path().join("status")) {
                    s.preempted += status
                        .lines()
                        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        s
    }

    fn since(self, before: Sched) -> Sched {
        Sched {
            run: self.run.saturating_sub(before.run),
            wait: self.wait.saturating_sub(before.wait),
            switches: self.switches.saturating_sub(before.switches),
            preempted: self.preempted.saturating_sub(before.preempted),
        }
    }

    fn add(&mut self, d: Sched) {
        self.run += d.run;
        self.wait += d.wait;
        self.switches += d.switches;
        self.preempted += d.preempted;
    }

    /// µs on CPU, µs waiting, switches in and of them preemptions, per one of `n` round
    /// trips.
    fn per(self, n: usize) -> (f64, f64, f64, f64) {
        let n = n as f64;
        (
            self.run as f64 / n / 1000.0,
            self.wait as f64 / n / 1000.0,
            self.switches as f64 / n,
            self.preempted as f64 / n,
        )
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Median and 99th percentile (zeros when the way did not run).
fn percentiles(v: &mut [u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair")
}

/// Receives one packet and the fds that came with it (owned now); 0 bytes at end of file.
fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> usize {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg");
    for c in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: the kernel just installed these fds in this process for this message;
            // nothing else owns them.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    msg.bytes
}

/// Sends one packet with `fds` attached.
fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::empty(), None).expect("sendmsg");
}

/// Forwards packets (and the fds they carry) both ways between `a` and `b` until either end
/// closes.
fn relay(a: OwnedFd, b: OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds = Vec::new();
    loop {
        let mut pfds = [
            PollFd::new(a.as_fd(), PollFlags::POLLIN),
            PollFd::new(b.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut pfds, PollTimeout::NONE).expect("relay: poll");
        let ready = [
            pfds[0].revents().unwrap_or(PollFlags::empty()),
            pfds[1].revents().unwrap_or(PollFlags::empty()),
        ];
        for (i, ev) in ready.into_iter().enumerate() {
            if ev.is_empty() {
                continue;
            }
            let (from, to) = if i == 0 { (&a, &b) } else { (&b, &a) };
            let n = recv_with_fds(from.as_raw_fd(), &mut buf, &mut fds);
            if n == 0 {
                return;
            }
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            send_with_fds(to.as_raw_fd(), &buf[..n], &raw);
            fds.clear(); // this process's copies close; the receiver has its own
        }
    }
}

/// The direct ping-pong: `n` round trips of one packet, their durations appended to `out`.
fn direct(sock: BorrowedFd<'_>, payload: &[u8], n: usize, out: &mut Vec<u64>) {
    let mut msg = vec![0u8; 8 + payload.len()];
    msg[8..].copy_from_slice(payload);
    let mut back = vec![0u8; msg.len() + 64];
    let fd = sock.as_raw_fd();
    for i in 0..n as u64 {
        msg[..8].copy_from_slice(&i.to_ne_bytes());
        let t = Instant::now();
        nix::sys::socket::send(fd, &msg, MsgFlags::empty()).expect("send to the server");
        let got = nix::sys::socket::recv(fd, &mut back, MsgFlags::empty()).expect("recv echo");
        out.push(t.elapsed().as_nanos() as u64);
        assert_eq!(got, msg.len(), "echo of the wrong size");
        assert_eq!(&back[..8], &msg[..8], "echo out of order");
    }
}

/// `n` round trips through the relay, each carrying `fd` to the server, which closes it.
fn relayed_fds(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, n: usize) {
    let mut back = [0u8; 64];
    let mut none = Vec::new();
    for i in 0..n as u64 {
        send_with_fds(sock.as_raw_fd(), &i.to_ne_bytes(), &[fd.as_raw_fd()]);
        let got = recv_with_fds(sock.as_raw_fd(), &mut back, &mut none);
        assert_eq!(&back[..got], &i.to_ne_bytes(), "fd echo out of order");
    }
    assert!(none.is_empty(), "the echo sent fds back");
}

/// The calling side: one binder thread (this one) of this process's binder process.
struct Client<'d> {
    dev: &'d ShimDevice,
    write: CommandWriter,
    read: Vec<u8>,
    /// The last reply's buffer, freed in front of the next call.
    to_free: Option<u64>,
}

/// One outgoing transaction.
struct Call<'a> {
    code: u32,
    flags: u32,
    data: &'a [u8],
    offsets: &'a [u64],
}

impl<'d> Client<'d> {
    fn new(dev: &'d ShimDevice) -> Self {
        Client {
            dev,
            write: CommandWriter::new(),
            read: vec![0u8; 256],
            to_free: None,
        }
    }

    /// `n` calls to handle 0 with `payload`, their durations appended to `out`.
    fn run(&mut self, payload: &[u8], n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let t = Instant::now();
            let size = self.call(payload);
            out.push(t.elapsed().as_nanos() as u64);
            assert_eq!(size, payload.len() as u64, "reply of the wrong size");
        }
    }

    /// One sync echo call; returns the reply's data size.
    fn call(&mut self, payload: &[u8]) -> u64 {
        let call = Call {
            code: CODE,
            flags: TF_ACCEPT_FDS,
            data: payload,
            offsets: &[],
        };
        self.transact(&call).expect("sync call failed").0
    }

    /// The number of oneway transactions the server has handled. Right after a flood of
    /// oneway calls the shim may refuse this call with `ENOSPC`: this sender already has as
    /// many transactions pending as the shim's cap allows (its queued oneways count), or
    /// the server's buffer space is used up. Both drain as the server reads, so the call
    /// is tried again; any other refusal, or one that lasts 30 s, fails the bench.
    fn count(&mut self) -> u64 {
        let call = Call {
            code: CODE_COUNT,
            flags: 0,
            data: &[],
            offsets: &[],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, n)) = self.transact(&call) {
                return n;
            }
            let why = self
                .dev
                .extended_error()
                .expect("BINDER_GET_EXTENDED_ERROR");
            assert!(
                why.param == -libc::ENOSPC && Instant::now() < deadline,
                "count call failed: {why:?}"
            );
            std::thread::yield_now();
        }
    }

    /// One oneway transaction; false when the shim refused it (the target's oneway space is
    /// full: `BR_FAILED_REPLY`).
    fn oneway(&mut self, payload: &[u8]) -> bool {
        let call = Call {
            code: CODE_ONEWAY,
            flags: TF_ONE_WAY,
            data: payload,
            offsets: &[],
        };
        self.transact(&call).is_some()
    }

    /// One sync call carrying `fd` as a `BINDER_TYPE_FD` object.
    fn send_fd(&mut self, fd: BorrowedFd<'_>) {
        let obj = BinderFdObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_FD,
            },
            pad_binder: fd.as_raw_fd() as u32 as u64,
            ..Default::default()
        };
        let call = Call {
            code: CODE_FD,
            flags: TF_ACCEPT_FDS,
            data: bytemuck::bytes_of(&obj),
            offsets: &[0],
        };
        self.transact(&call).expect("fd call failed");
    }

    /// Sends `call` to handle 0 and reads until its end: `BR_REPLY` (its data size and first
    /// 8 bytes as a `u64`), `BR_TRANSACTION_COMPLETE` for a oneway call ((0, 0)), `None` on
    /// `BR_FAILED_REPLY`.
    fn transact(&mut self, call: &Call<'_>) -> Option<(u64, u64)> {
        self.write.clear();
        if let Some(buf) = self.to_free.take() {
            self.write.cmd_with(BC_FREE_BUFFER, &buf);
        }
        let tr = BinderTransactionData {
            target: 0,
            code: call.code,
            flags: call.flags,
            data_size: call.data.len() as u64,
            data_buffer: call.data.as_ptr() as u64,
            offsets_size: (call.offsets.len() * 8) as u64,
            data_offsets: call.offsets.as_ptr() as u64,
            ..Default::default()
        };
        self.write.cmd_with(BC_TRANSACTION, &tr);
        let oneway = call.flags & TF_ONE_WAY != 0;
        let mut write: &[u8] = self.write.as_bytes();
        loop {
            let mut wr = WriteRead::new(write, &mut self.read);
            self.dev.write_read(&mut wr).expect("BINDER_WRITE_READ");
            assert_eq!(wr.write_consumed, write.len(), "write not consumed");
            write = &[];
            let mut r = CommandReader::new(wr.returned());
            while let Some((cmd, body)) = r.next_command() {
                match cmd {
                    BR_NOOP | BR_SPAWN_LOOPER | BR_ONEWAY_SPAM_SUSPECT => {}
                    BR_TRANSACTION_COMPLETE if oneway => return Some((0, 0)),
                    BR_TRANSACTION_COMPLETE => {}
                    BR_FAILED_REPLY => return None,
                    BR_REPLY => {
                        let reply: BinderTransactionData = bytemuck::pod_read_unaligned(body);
                        self.to_free = Some(reply.data_buffer);
                        assert_eq!(reply.flags & TF_STATUS_CODE, 0, "status reply");
                        let first = self
                            .dev
                            .buffer_bytes(reply.data_buffer, 8.min(reply.data_size as usize))
                            .map_or(0, |b| {
                                let mut x = [0u8; 8];
                                x[..b.len()].copy_from_slice(b);
                                u64::from_ne_bytes(x)
                            });
                        return Some((reply.data_size, first));
                    }
                    other => panic!("unexpected {} in the caller", command_name(other)),
                }
            }
        }
    }

    /// Frees the last reply's buffer.
    fn finish(&mut self) {
        if let Some(buf) = self.to_free.take() {
            self.write.clear();
            self.write.cmd_with(BC_FREE_BUFFER, &buf);
            let mut wr = WriteRead::new(self.write.as_bytes(), &mut []);
            self.dev.write_read(&mut wr).expect("BC_FREE_BUFFER");
        }
    }
}

/// The server process, seen from here.
struct Server(Child);

impl Server {
    /// The server echoes packets on `sock` (its stdin) and `relayed` (its stdout), and serves
    /// D-Bus on `bus` when given.
    fn spawn(
        socket: &std::path::Path,
        sock: OwnedFd,
        relayed: OwnedFd,
        bus: Option<&str>,
    ) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.env(CHILD_ENV, "server")
            .env(ENV_SOCKET, socket)
            .stdin(Stdio::from(sock))
            .stdout(Stdio::from(relayed));
        if let Some(bus) = bus {
            cmd.env(dbus_peer::ADDRESS_ENV, bus);
        }
        Server(cmd.spawn().expect("spawn the server process"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn wait(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("wait for the server") {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the server did not exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.

fn child() {
    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    // The lane of the horizon prototype comes first, its three fds in one packet.
    let mut fds = Vec::new();
    let mut buf = [0u8; 16];
    let n = recv_with_fds(sock.as_raw_fd(), &mut buf, &mut fds);
    assert_eq!(&buf[..n], b"lane", "server: expected the lane first");
    let fds: [OwnedFd; 3] = fds.try_into().expect("server: the lane takes three fds");
    let lane = lane::Lane::from_fds(fds).expect("server: open the lane");
    std::thread::Builder::new()
        .name("lane".into())
        .spawn(move || lane.serve())
        .expect("server: spawn the lane thread");
    let dev = ShimDevice::open_from_env().expect("server: open the shim");
    // The binder thread registers as context manager itself, then loops.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("binder".into())
        .spawn(move || binder_loop(&dev, tx))
        .expect("server: spawn the binder thread");
    rx.recv().expect("server: binder thread failed to start");
    // The relayed echo on stdout, on a thread of its own.
    std::thread::Builder::new()
        .name("echo-relayed".into())
        .spawn(|| echo(std::io::stdout().as_fd()))
        .expect("server: spawn the echo thread");
    if let Some(bus) = std::env::var_os(dbus_peer::ADDRESS_ENV) {
        let bus = bus.to_string_lossy().into_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dbus".into())
            .spawn(move || {
                let r = dbus_peer::serve(&bus, || tx.send(()).expect("server: dbus ready"));
                eprintln!("server: D-Bus ended: {r:?}");
            })
            .expect("server: spawn the D-Bus thread");
        rx.recv().expect("server: D-Bus failed to start");
    }
    nix::sys::socket::send(sock.as_raw_fd(), READY, MsgFlags::empty()).expect("server: ready");
    // The direct echo, until the caller closes its end.
    echo(sock);
    // The binder thread is still blocked in write_read: leave it to process exit.
    std::process::exit(0);
}

/// Sends every packet back (without the fds it carried, which close here), until end of
/// file.
fn echo(sock: BorrowedFd<'_>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds = Vec::new();
    loop {
        let n = recv_with_fds(sock.as_raw_fd(), &mut buf, &mut fds);
        fds.clear();
        if n == 0 {
            return;
        }
        nix::sys::socket::send(sock.as_raw_fd(), &buf[..n], MsgFlags::empty())
            .expect("server: echo");
    }
}

/// What the server's binder thread keeps between calls.
struct Served {
    oneway: u64,
    /// The count a `CODE_COUNT` reply points at: it must live until the reply is written.
    count_reply: Box<u64>,
}

fn binder_loop(dev: &ShimDevice, ready: std::sync::mpsc::Sender<()>) {
    // A node that accepts fds, as libbinder's context manager is.
    let node = FlatBinderObject {
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        ..Default::default()
    };
    dev.set_context_mgr_ext(&node)
        .expect("server: BINDER_SET_CONTEXT_MGR_EXT");
    let mut write = CommandWriter::new();
    write.cmd(BC_ENTER_LOOPER);
    ready.send(()).expect("server: ready");
    let mut read = vec![0u8; 4096];
    let mut served = Served {
        oneway: 0,
        count_reply: Box::new(0),
    };
    loop {
        let mut wr = WriteRead::new(write.as_bytes(), &mut read);
        dev.write_read(&mut wr).expect("server: BINDER_WRITE_READ");
        assert_eq!(wr.write_consumed, write.as_bytes().len());
        let mut next = CommandWriter::new();
        let mut r = CommandReader::new(wr.returned());
        while let Some((cmd, body)) = r.next_command() {
            match cmd {
                BR_NOOP | BR_TRANSACTION_COMPLETE | BR_SPAWN_LOOPER => {}
                BR_INCREFS => {
                    let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(body);
                    next.cmd_with(BC_INCREFS_DONE, &pc);
                }
                BR_ACQUIRE => {
                    let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(body);
                    next.cmd_with(BC_ACQUIRE_DONE, &pc);
                }
                BR_RELEASE | BR_DECREFS => {}
                BR_TRANSACTION => {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(body);
                    serve(dev, &tr, &mut served, &mut next);
                }
                other => panic!("server: unexpected {}", command_name(other)),
            }
        }
        write = next;
    }
}

/// Answers one transaction into `next`.
fn serve(dev: &ShimDevice, tr: &BinderTransactionData, s: &mut Served, next: &mut CommandWriter) {
    let mut reply = BinderTransactionData::default();
    match tr.code {
        // Reply with the same bytes: they lie in this process's buffer area, readable until
        // the free that follows the reply.
        CODE => {
            reply.data_size = tr.data_size;
            reply.data_buffer = tr.data_buffer;
        }
        CODE_ONEWAY => {
            assert_ne!(tr.flags & TF_ONE_WAY, 0, "server: oneway code sent sync");
            s.oneway += 1;
            next.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
            return;
        }
        CODE_COUNT => {
            *s.count_reply = s.oneway;
            reply.data_size = 8;
            reply.data_buffer = &*s.count_reply as *const u64 as u64;
        }
        CODE_FD => {
            let obj: BinderFdObject = dev
                .buffer_bytes(tr.data_buffer, std::mem::size_of::<BinderFdObject>())
                .map(bytemuck::pod_read_unaligned)
                .expect("server: fd object outside the buffer area");
            assert_eq!(obj.hdr.type_, BINDER_TYPE_FD, "server: not an fd object");
            // SAFETY: the driver installed this fd in this process for this transaction and
            // hands its ownership to the receiver (as libbinder's Parcel takes it).
            drop(unsafe { OwnedFd::from_raw_fd(obj.fd()) });
        }
        other => panic!("server: unexpected code {other}"),
    }
    next.cmd_with(BC_REPLY, &reply);
    next.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
}
