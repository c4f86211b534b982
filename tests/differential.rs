//! The differential tester (issue 17): seeded random multi-process scenarios run through the
//! `Device` trait once on the crate's shim and once on the kernel's binder driver, their
//! normalised BR_ traces compared step by step. The kernel is the reference.
//!
//! - A scenario ([`gen`]) has 2–3 binder processes, each played by a worker: a real OS process
//!   (this test binary re-executed with `BITTUBE_DIFF_WORKER=<index>`, never a fork) with
//!   several OS threads as binder threads. Process 0 is the context manager. Steps are sync,
//!   oneway and nested calls with BINDER/HANDLE/FD/FDA/PTR objects (children with parents),
//!   replies, refcount commands on valid and invalid handles, death requests and clears with
//!   matching cookies, dead-binder acks, valid and bogus frees, looper commands (so
//!   BR_SPAWN_LOOPER shows), thread exits, process exits, a dozen kinds of malformed
//!   transactions, oneway floods that exhaust the async space, unknown commands, and read
//!   sizes that cut a return stream.
//! - Determinism: every device is non-blocking (`O_NONBLOCK`; the shim's equivalent) and the
//!   controller runs one step at a time, waiting for its answer, so no outcome depends on
//!   scheduling. The one asynchronous thing, the release of an exited process (the kernel
//!   does it on a workqueue), gets a settling pause; a difference is counted only when a
//!   second run of both sides reproduces it.
//! - The trace ([`trace`]) is normalised: codes, transaction fields, data hashed with objects
//!   masked, object fields, fds as the file they name (open? close-on-exec?), PTR buffers as
//!   offsets from the data with their contents hashed (fixed-up pointers and fds masked),
//!   handles, errno and consumed counts, and whether FDA fds are closed once a free returns.
//! - A difference is minimised (steps removed while it persists) and printed with a replay
//!   line. Known differences are listed by name in [`known`].
//!
//! Where it runs: with the kernel driver (`BITTUBE_REQUIRE_KERNEL=1` or `/dev/binder`, as in
//! `scripts/kernel-binder-test.sh`), the embedded shim against the kernel in the same boot;
//! without it, the shim against itself (which checks that the scenarios are deterministic).
//! It prints `differential: N scenarios, M differences` and fails when M > 0.
//!
//! Environment: `BITTUBE_DIFF_SEEDS` (scenarios; default 300 on the kernel, 30 without),
//! `BITTUBE_DIFF_SEED` (first seed, default 1), `BITTUBE_DIFF_REPLAY=<seed>[:<step>,...]`
//! (run one scenario, or some of its steps, and print both traces; several such specs
//! separated by spaces run one after the other).

#[path = "differential/build.rs"]
mod build;
#[path = "differential/gen.rs"]
mod gen;
#[path = "differential/known.rs"]
mod known;
#[path = "differential/trace.rs"]
mod trace;
#[path = "differential/worker.rs"]
mod worker;

use bittube::binder_ipc::shim::Driver;
use gen::{scenario, Op, Scenario, MAX_PROCS};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// This test's name (workers re-execute it).
const TEST: &str = "shim_against_kernel";
/// Only turns a hung worker into a failure.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the kernel to release an exited binder process (it does it on a workqueue, and
/// nothing a process can see says when it is done).
const SETTLE: Duration = Duration::from_millis(150);
/// The longest wait for the shim to release an exited process (it does it in the event-loop
/// turn that sees the process's connection close; its state dump then no longer lists it).
const SHIM_SETTLE_MAX: Duration = Duration::from_secs(5);

/// Prints a line the test harness does not capture (the kernel run greps it).
fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn on_kernel() -> bool {
    std::env::var("BITTUBE_REQUIRE_KERNEL").as_deref() == Ok("1")
        || Path::new("/dev/binder").exists()
}

fn kernel_path() -> String {
    std::env::var("BITTUBE_KERNEL_DEVICE").unwrap_or_else(|_| {
        if Path::new("/dev/binder").exists() {
            "/dev/binder".into()
        } else {
            "/dev/binderfs/binder".into()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Workers

struct WorkerProc {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::process::ChildStdout,
    /// Bytes read from `stdout` past the last whole line.
    pending: Vec<u8>,
}

impl WorkerProc {
    /// The next answer line (its [`worker::ANSWER`] prefix removed), read on this thread
    /// (no reader thread: one wake-up fewer per step); `None` at end of output or after
    /// `timeout`.
    fn answer(&mut self, timeout: Duration) -> Option<String> {
        use std::io::Read;
        use std::os::fd::AsFd;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line[..nl]).into_owned();
                if let Some(a) = line.strip_prefix(worker::ANSWER) {
                    return Some(a.to_string());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                self.stdout.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
            let mut buf = [0u8; 4096];
            match self.stdout.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

struct Pool {
    dir: PathBuf,
    workers: Vec<WorkerProc>,
}

impl Pool {
    fn new(dir: PathBuf) -> Pool {
        let mut p = Pool {
            dir,
            workers: Vec::new(),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        self.workers = (0..MAX_PROCS)
            .map(|i| {
                let mut child = Command::new(std::env::current_exe().expect("test binary"))
                    .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                    .env(worker::WORKER_ENV, i.to_string())
                    .env(worker::FILES_ENV, &self.dir)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("starting a worker");
                let stdin = child.stdin.take().expect("worker stdin");
                let stdout = child.stdout.take().expect("worker stdout");
                WorkerProc {
                    child,
                    stdin,
                    stdout,
                    pending: Vec::new(),
                }
            })
            .collect();
    }

    fn kill(&mut self) {
        for mut w in self.workers.drain(..) {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }

    fn pids(&self, n: usize) -> String {
        self.workers[..n]
            .iter()
            .map(|w| w.child.id().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Sends `line` to worker `p`; its answer, or `None` when it hung or died (the workers
    /// are then replaced).
    fn ask(&mut self, p: usize, line: &str) -> Option<String> {
        let w = &mut self.workers[p];
        let sent = writeln!(w.stdin, "{line}").and_then(|_| w.stdin.flush());
        let answer = sent.ok().and_then(|_| w.answer(ANSWER_TIMEOUT));
        if answer.is_none() {
            self.kill();
            self.spawn();
        }
        answer
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Where the time goes

/// Phases of a side's run, timed for the summary.
#[derive(Clone, Copy)]
enum Phase {
    /// `begin` on every worker (opening, becoming context manager).
    Begin = 0,
    /// The steps, each a round trip to a worker.
    Steps = 1,
    /// Waiting for an exited process to be released.
    Settle = 2,
    /// `end` on every worker.
    End = 3,
}

/// Time spent by side (0 shim, 1 kernel) and phase since the test started.
static TIMES: std::sync::Mutex<[[Duration; 4]; 2]> =
    std::sync::Mutex::new([[Duration::ZERO; 4]; 2]);

fn timed<T>(side: usize, phase: Phase, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    t[side][phase as usize] += start.elapsed();
    r
}

/// `shim begin 1.2 s steps ...; kernel ...`: the time per side and phase.
fn times_text() -> String {
    let t = *TIMES.lock().unwrap_or_else(|e| e.into_inner());
    ["shim", "kernel"]
        .iter()
        .zip(t.iter())
        .map(|(side, p)| {
            format!(
                "{side} begin {:.1} s steps {:.1} s settle {:.1} s end {:.1} s",
                p[0].as_secs_f64(),
                p[1].as_secs_f64(),
                p[2].as_secs_f64(),
                p[3].as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Running and comparing

/// Runs steps `kept` of `scen` on `side`; the normalised trace, one line per step.
fn run_side(pool: &mut Pool, scen: &Scenario, kept: &[usize], side: &str) -> Vec<String> {
    let n = scen.procs.len();
    let pids = pool.pids(n);
    let mut trace = Vec::new();
    let s = usize::from(side.starts_with("kernel:"));
    for p in 0..n {
        match timed(s, Phase::Begin, || {
            pool.ask(p, &format!("begin {} {side} {pids}", scen.seed))
        }) {
            Some(a) => trace.push(format!("P{p} begin: {a}")),
            None => {
                trace.push(format!("P{p} begin: HANG"));
                return trace;
            }
        }
    }
    for &i in kept {
        let st = &scen.steps[i];
        match timed(s, Phase::Steps, || pool.ask(st.proc, &format!("step {i}"))) {
            Some(a) => trace.push(format!("#{i} P{}T{}: {a}", st.proc, st.thread)),
            None => {
                trace.push(format!("#{i} P{}T{}: HANG", st.proc, st.thread));
                return trace;
            }
        }
        if matches!(st.op, Op::Exit) {
            let pid = pool.workers[st.proc].child.id();
            timed(s, Phase::Settle, || settle(side, pid));
        }
    }
    for p in 0..n {
        if timed(s, Phase::End, || pool.ask(p, "end")).is_none() {
            trace.push(format!("P{p} end: HANG"));
        }
    }
    trace
}

/// Waits until the driver of `side` has released the binder process of worker `pid`, which
/// just closed its device: for the shim, until its state no longer lists the process (its
/// release is complete by then); for the kernel, a fixed pause.
fn settle(side: &str, pid: u32) {
    let Some(socket) = side.strip_prefix("shim:") else {
        std::thread::sleep(SETTLE);
        return;
    };
    let listed = format!("proc {pid} id ");
    let deadline = Instant::now() + SHIM_SETTLE_MAX;
    while Instant::now() < deadline {
        match bittube::binder_ipc::shim::query_state(Path::new(socket)) {
            Ok(state) if !state.contains(&listed) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => break,
        }
    }
    // Not released in time (or no answer): the trace shows what follows.
}

fn first_difference(a: &[String], b: &[String]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// The step a trace line belongs to (`#<i> ...`).
fn step_of(line: &str) -> Option<usize> {
    line.strip_prefix('#')?.split(' ').next()?.parse().ok()
}

struct Sides {
    shim: String,
    kernel: String,
}

enum Outcome {
    Same,
    Known(&'static str),
    Differs(String),
}

fn compare(
    pool: &mut Pool,
    sides: &Sides,
    scen: &Scenario,
    kept: &[usize],
) -> (Outcome, Vec<String>, Vec<String>) {
    let a = run_side(pool, scen, kept, &sides.shim);
    let b = run_side(pool, scen, kept, &sides.kernel);
    let outcome = match first_difference(&a, &b) {
        None => Outcome::Same,
        Some(i) => {
            let empty = String::new();
            let (sa, sb) = (a.get(i).unwrap_or(&empty), b.get(i).unwrap_or(&empty));
            let at = step_of(sa).or(step_of(sb));
            let step = at.map(|s| &scen.steps[s]);
            let d = known::Diff {
                step,
                shim: sa,
                kernel: sb,
            };
            match known::known(&d) {
                Some(k) => Outcome::Known(k.name),
                None => Outcome::Differs(format!(
                    "first difference at {:?}: shim {:?}, kernel {:?}",
                    d.step, d.shim, d.kernel
                )),
            }
        }
    };
    (outcome, a, b)
}

/// Removes steps while the scenario still differs (a bounded delta debugging).
fn minimise(pool: &mut Pool, sides: &Sides, scen: &Scenario, mut kept: Vec<usize>) -> Vec<usize> {
    let mut chunk = (kept.len() / 2).max(1);
    let mut budget = 80;
    loop {
        let mut i = 0;
        let mut progressed = false;
        while i < kept.len() && budget > 0 {
            let trial: Vec<usize> = kept[..i]
                .iter()
                .chain(kept[(i + chunk).min(kept.len())..].iter())
                .copied()
                .collect();
            budget -= 1;
            if matches!(compare(pool, sides, scen, &trial).0, Outcome::Differs(_)) {
                kept = trial;
                progressed = true;
            } else {
                i += chunk;
            }
        }
        if budget == 0 || (chunk == 1 && !progressed) {
            return kept;
        }
        if !progressed {
            chunk = (chunk / 2).max(1);
        }
    }
}

fn print_traces(scen: &Scenario, kept: &[usize], a: &[String], b: &[String]) {
    say(&format!(
        "differential: seed {} steps {kept:?} (replay: BITTUBE_DIFF_REPLAY={}:{})",
        scen.seed,
        scen.seed,
        kept.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    for (p, s) in scen.procs.iter().enumerate() {
        say(&format!("  P{p} set-up: {s:?}"));
    }
    for &i in kept {
        say(&format!("  step #{i}: {:?}", scen.steps[i]));
    }
    let empty = String::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).unwrap_or(&empty), b.get(i).unwrap_or(&empty));
        if x == y {
            say(&format!("    = {x}"));
        } else {
            say(&format!("    shim   {x}"));
            say(&format!("    kernel {y}"));
        }
    }
}

fn files_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bittube-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scenario files' directory");
    for i in 0..gen::FILES {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}")).expect("scenario file");
    }
    dir
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn shim_against_kernel() {
    if let Ok(i) = std::env::var(worker::WORKER_ENV) {
        worker::main(i.parse().expect("worker index"));
    }
    let driver = Driver::start().expect("starting the embedded shim");
    let shim = format!("shim:{}", driver.socket_path().display());
    let kernel = on_kernel();
    let sides = Sides {
        kernel: if kernel {
            format!("kernel:{}", kernel_path())
        } else {
            shim.clone()
        },
        shim,
    };
    let dir = files_dir();
    let mut pool = Pool::new(dir.clone());
    if let Ok(r) = std::env::var("BITTUBE_DIFF_REPLAY") {
        replay(&mut pool, &sides, &r);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let count = env_u64("BITTUBE_DIFF_SEEDS", if kernel { 100 } else { 30 });
    let first = env_u64("BITTUBE_DIFF_SEED", 1);
    let start = Instant::now();
    let (mut differences, mut unconfirmed, mut steps) = (0u64, 0u64, 0usize);
    let mut known_seen: Vec<(&str, u64)> = Vec::new();
    for seed in first..first + count {
        let scen = scenario(seed);
        let all: Vec<usize> = (0..scen.steps.len()).collect();
        steps += all.len();
        match compare(&mut pool, &sides, &scen, &all).0 {
            Outcome::Same => {}
            Outcome::Known(name) => match known_seen.iter_mut().find(|k| k.0 == name) {
                Some(k) => k.1 += 1,
                None => known_seen.push((name, 1)),
            },
            Outcome::Differs(first) => {
                say(&format!("differential: seed {seed}: {first}"));
                // Counted only when it happens again.
                if !matches!(
                    compare(&mut pool, &sides, &scen, &all).0,
                    Outcome::Differs(_)
                ) {
                    say(&format!(
                        "differential: seed {seed} differed once, not on a second run"
                    ));
                    unconfirmed += 1;
                    continue;
                }
                differences += 1;
                let kept = minimise(&mut pool, &sides, &scen, all);
                let (_, a, b) = compare(&mut pool, &sides, &scen, &kept);
                print_traces(&scen, &kept, &a, &b);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let against = if kernel {
        "shim against kernel"
    } else {
        "shim against itself: no kernel binder here"
    };
    say(&format!(
        "differential: {against}; seeds {first}..{}, {steps} steps a side, {:.1} s; known: {known_seen:?}; unconfirmed: {unconfirmed}",
        first + count,
        start.elapsed().as_secs_f64()
    ));
    for (name, n) in &known_seen {
        if let Some(k) = known::KNOWN.iter().find(|k| k.name == *name) {
            say(&format!(
                "differential: known difference {name} ({n}x): {}",
                k.reason
            ));
        }
    }
    say(&format!("differential: time {}", times_text()));
    say(&format!(
        "differential: {count} scenarios, {differences} differences"
    ));
    assert_eq!(differences, 0, "the shim and the kernel differ (see above)");
}

fn replay(pool: &mut Pool, sides: &Sides, specs: &str) {
    for spec in specs.split_whitespace() {
        replay_one(pool, sides, spec);
    }
}

fn replay_one(pool: &mut Pool, sides: &Sides, spec: &str) {
    let (seed, steps) = spec.split_once(':').unwrap_or((spec, ""));
    let scen = scenario(seed.parse().expect("replay seed"));
    let kept: Vec<usize> = if steps.is_empty() {
        (0..scen.steps.len()).collect()
    } else {
        steps.split(',').map(|s| s.parse().expect("step")).collect()
    };
    let (_, a, b) = compare(pool, sides, &scen, &kept);
    print_traces(&scen, &kept, &a, &b);
}
