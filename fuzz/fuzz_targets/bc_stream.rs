//! BC_ command streams with binder objects (BINDER / HANDLE / FD / FDA / PTR with parents)
//! through the shim's transaction path, from two or three binder processes of this OS process
//! with real buffers in its memory, against an embedded shim (`Driver::start`). A context
//! manager runs in a child process (handle 0 from the manager's own OS process is refused,
//! as by the kernel): it keeps the handles it is sent and hands them to every caller, so the
//! fuzzed processes reach each other's nodes.
//!
//! Checked beyond "no panic" (in this process, where the shim thread runs too): received
//! buffers lie inside the receiver's area, and after every input the shim still answers a
//! plain round trip from a fresh process; fds stay bounded.
#![no_main]

use bittube::binder_ipc::device::{Device, ShimDevice};
use bittube::binder_ipc::shim::Driver;
use bittube::binder_ipc::uapi::*;
use bittube_fuzz::bc::{decode, layout, txn_command, Cmd, Input, Op, Txn};
use bittube_fuzz::binder::{
    call, call_consumed, free_all, manager, round_trip, try_round_trip, Returns, CODE_RESET,
    ENV_MGR,
};
use bittube_fuzz::fresh_fd;
use libfuzzer_sys::fuzz_target;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::OnceLock;

struct Shim {
    driver: Driver,
    _manager: Child,
    /// A process that lives across inputs: it makes the liveness round trip after each.
    probe: ShimDevice,
    fd_baseline: usize,
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn shim() -> &'static Shim {
    static SHIM: OnceLock<Shim> = OnceLock::new();
    SHIM.get_or_init(|| {
        let driver = Driver::start().expect("embedded shim");
        let exe = std::env::current_exe().unwrap();
        let manager = Command::new(exe)
            .env(ENV_MGR, driver.socket_path())
            .env_remove("BITTUBE_FUZZ_TRACE")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("context manager child");
        // Wait until it is the context manager.
        let dev = ShimDevice::open(driver.socket_path()).unwrap();
        dev.set_nonblocking(true);
        let start = std::time::Instant::now();
        while try_round_trip(&dev, CODE_RESET).is_err() {
            assert!(
                start.elapsed().as_secs() < 20,
                "context manager child never came up"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Shim {
            driver,
            _manager: manager,
            probe: dev,
            fd_baseline: open_fds(),
        }
    })
}

fuzz_target!(
    init: {
        if let Some(socket) = std::env::var_os(ENV_MGR) {
            manager(std::path::Path::new(&socket));
        }
    },
    |data: &[u8]| run(decode(data))
);

struct Proc {
    dev: Option<ShimDevice>,
    seen: Returns,
}

fn run(input: Input) {
    let t_start = std::time::Instant::now();
    let shim = shim();
    let path = shim.driver.socket_path();
    let pool: Vec<OwnedFd> = (0..3).map(|_| fresh_fd()).collect();
    let mut procs: Vec<Proc> = (0..input.nprocs)
        .map(|_| {
            let dev = ShimDevice::open(path).unwrap();
            dev.set_nonblocking(true);
            Proc {
                dev: Some(dev),
                seen: Returns::default(),
            }
        })
        .collect();
    let trace = std::env::var_os("BITTUBE_FUZZ_TRACE").is_some();
    if trace {
        eprintln!("open {:?}", t_start.elapsed());
    }
    for op in &input.ops {
        let t = std::time::Instant::now();
        step(&mut procs, op, &pool);
        if trace && t.elapsed().as_millis() > 2 {
            eprintln!("slow op {:?}: {op:?}", t.elapsed());
        }
    }
    for p in &mut procs {
        if let Some(dev) = p.dev.take() {
            drain(&dev, &mut p.seen);
        }
    }
    if trace {
        eprintln!("ops + drain {:?}", t_start.elapsed());
    }
    let t0 = std::time::Instant::now();
    drop(procs);
    drop(pool);
    // The shim still answers, and the manager drops what it was sent.
    round_trip(&shim.probe, CODE_RESET);
    let t1 = t0.elapsed();
    settle(&shim.driver);
    if std::env::var_os("BITTUBE_FUZZ_TRACE").is_some() {
        eprintln!("exit + round trip {t1:?}, settle {:?}", t0.elapsed() - t1);
    }
    let fds = open_fds();
    assert!(
        fds < shim.fd_baseline + 256,
        "fds grow: {fds} open, {} at the start",
        shim.fd_baseline
    );
}

/// Waits (bounded) until the shim has released every process of the input: only the
/// manager and the probe are left. A process the shim never releases is a leak.
fn settle(driver: &Driver) {
    let start = std::time::Instant::now();
    loop {
        let state = driver.state().expect("the shim answers a state query");
        let procs = state.lines().filter(|l| l.starts_with("proc ")).count();
        if procs == 2 {
            return;
        }
        assert!(
            start.elapsed().as_secs() < 5,
            "the shim keeps {procs} processes (2 expected):\n{state}"
        );
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Reads what is left, frees every buffer received, then the device is dropped (exit).
fn drain(dev: &ShimDevice, seen: &mut Returns) {
    for _ in 0..64 {
        if call(dev, &[], 8192, seen).is_err() {
            break;
        }
    }
    free_all(dev, seen);
}

fn step(procs: &mut [Proc], op: &Op, pool: &[OwnedFd]) {
    let n = procs.len();
    let (Op::Write(p, ..) | Op::RawWrite(p, ..) | Op::Read(p) | Op::ThreadExit(p) | Op::Exit(p)) =
        op;
    let proc = &mut procs[*p as usize % n];
    let Some(dev) = proc.dev.as_ref() else { return };
    match op {
        Op::Write(_, read, cmds) => {
            let mut keep = Keep::default();
            let mut w = Stream::default();
            // Where the first two-way call to the manager ends in the stream.
            let mut manager_call_end = None;
            for c in cmds {
                command(&mut w, c, &proc.seen, pool, &mut keep);
                if manager_call_end.is_none() && calls_manager(c) {
                    manager_call_end = Some(w.0.len());
                }
            }
            let before = (proc.seen.replies, proc.seen.failed);
            let (r, consumed) = call_consumed(dev, &w.0, *read as usize % 4097, &mut proc.seen);
            drop(keep);
            // Only a call the driver ran has an answer to wait for: the driver stops at the
            // first command that fails, the rest of the stream is not consumed.
            if r.is_ok() && manager_call_end.is_some_and(|end| consumed >= end) {
                await_manager(dev, &mut proc.seen, before);
            }
        }
        Op::RawWrite(_, read, raw) => {
            let _ = call(dev, raw, *read as usize % 4097, &mut proc.seen);
        }
        Op::Read(_) => {
            let _ = call(dev, &[], 4096, &mut proc.seen);
        }
        Op::ThreadExit(_) => {
            let _ = dev.thread_exit();
        }
        Op::Exit(_) => {
            let dev = proc.dev.take().unwrap();
            drain(&dev, &mut proc.seen);
        }
    }
}

/// A two-way call to handle 0: answered by the manager in the child process.
fn calls_manager(c: &Cmd) -> bool {
    matches!(c, Cmd::Txn(t) if t.kind & 1 == 0 && t.handle == 0 && t.flags & TF_ONE_WAY == 0)
}

/// Reads until an answer (reply or failure) arrived since `before`, at most 50 ms: the
/// manager is another process, and waiting for it keeps an input's run the same from run to
/// run. (A call that never reached the manager, e.g. after a bad command, has no answer.)
fn await_manager(dev: &ShimDevice, seen: &mut Returns, before: (usize, usize)) {
    let start = std::time::Instant::now();
    while (seen.replies, seen.failed) == before && start.elapsed().as_millis() < 50 {
        if matches!(call(dev, &[], 4096, seen), Err(e) if e != nix::errno::Errno::EAGAIN) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(20));
    }
}

/// Memory a write's pointers name, alive until the call returned.
#[derive(Default)]
struct Keep {
    blocks: Vec<Vec<u8>>,
}

impl Keep {
    fn hold(&mut self, bytes: Vec<u8>) -> u64 {
        let addr = bytes.as_ptr() as u64;
        self.blocks.push(bytes);
        addr
    }
}

fn pick<T: Copy>(list: &[T], sel: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[sel as usize % list.len()])
}

fn command(w: &mut Stream, c: &Cmd, seen: &Returns, pool: &[OwnedFd], keep: &mut Keep) {
    match c {
        Cmd::Txn(t) => transaction(w, t, pool, keep),
        Cmd::Free(sel, raw) => {
            let addr = if *sel < 128 {
                pick(&seen.buffers, *sel).unwrap_or(*raw)
            } else {
                *raw
            };
            w.cmd_with(BC_FREE_BUFFER, &addr);
        }
        Cmd::Ref(which, h) => {
            let cmd = [BC_INCREFS, BC_ACQUIRE, BC_RELEASE, BC_DECREFS][*which as usize % 4];
            w.cmd_with(cmd, h);
        }
        Cmd::Done(acquire, sel) => {
            let (ptr, cookie) = pick(&seen.asked, *sel).unwrap_or((u64::from(*sel), 0));
            let cmd = if *acquire {
                BC_ACQUIRE_DONE
            } else {
                BC_INCREFS_DONE
            };
            w.cmd_with(cmd, &BinderPtrCookie { ptr, cookie });
        }
        Cmd::Death(clear, handle, cookie) => {
            let cmd = if *clear {
                BC_CLEAR_DEATH_NOTIFICATION
            } else {
                BC_REQUEST_DEATH_NOTIFICATION
            };
            w.cmd_with(
                cmd,
                &BinderHandleCookie {
                    handle: *handle,
                    cookie: *cookie,
                },
            );
        }
        Cmd::DeadDone(sel, raw) => {
            let cookie = if *sel < 128 {
                pick(&seen.dead, *sel).unwrap_or(*raw)
            } else {
                *raw
            };
            w.cmd_with(BC_DEAD_BINDER_DONE, &cookie);
        }
        Cmd::Looper(which) => {
            w.cmd([BC_ENTER_LOOPER, BC_REGISTER_LOOPER, BC_EXIT_LOOPER][*which as usize % 3]);
        }
        Cmd::Raw(cmd, payload) => {
            w.cmd(*cmd);
            w.0.extend_from_slice(payload);
        }
    }
}

/// A BC_ stream; unlike `CommandWriter`, also takes raw bytes.
#[derive(Default)]
struct Stream(Vec<u8>);

impl Stream {
    fn cmd(&mut self, cmd: u32) -> &mut Self {
        self.0.extend_from_slice(&cmd.to_ne_bytes());
        self
    }

    fn cmd_with<T: bytemuck::Pod>(&mut self, cmd: u32, payload: &T) -> &mut Self {
        self.cmd(cmd);
        self.0.extend_from_slice(bytemuck::bytes_of(payload));
        self
    }
}

/// The data, offsets and buffers of a transaction, laid out in memory this call keeps alive.
fn transaction(w: &mut Stream, t: &Txn, pool: &[OwnedFd], keep: &mut Keep) {
    let fds: Vec<i32> = pool.iter().map(AsRawFd::as_raw_fd).collect();
    let mut l = layout(t, &fds);
    for (at, buf) in std::mem::take(&mut l.ptrs) {
        let addr = keep.hold(buf);
        l.data[at..at + 8].copy_from_slice(&addr.to_ne_bytes());
    }
    let offs_bytes: Vec<u8> = l.offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
    let tr = BinderTransactionData {
        target: u64::from(t.handle),
        code: t.code,
        flags: t.flags,
        data_size: l.data.len() as u64,
        offsets_size: offs_bytes.len() as u64,
        data_buffer: keep.hold(l.data),
        data_offsets: keep.hold(offs_bytes),
        ..Default::default()
    };
    let cmd = txn_command(t);
    if t.kind & 2 == 0 {
        w.cmd_with(cmd, &tr);
    } else {
        let sg = BinderTransactionDataSg {
            transaction_data: tr,
            buffers_size: l.buffers_size,
        };
        w.cmd_with(cmd, &sg);
    }
}
