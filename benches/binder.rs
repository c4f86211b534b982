//! Sync binder round trips through the driver shim vs a direct Unix-socket ping-pong between
//! the same two OS processes, in the same run.
//!
//! `cargo bench --bench binder` (set `BINDER_BENCH_ITERS` for another count per configuration;
//! the default is 20 000; set `BINDER_BENCH_ONLY` to `shim`, `direct` or `relay` to run only
//! that way, e.g. under `strace -c -f` to count system calls per round trip).
//!
//! This process starts the shim embedded ([`Driver::start`]) and re-executes itself as the
//! server (`BITTUBE_BENCH_CHILD` set, `BITTUBE_BINDER` naming the shim). The server opens a
//! [`ShimDevice`], becomes the context manager, enters the looper on a thread of its own and
//! answers every `BR_TRANSACTION` with a `BC_REPLY` of the same size followed by the
//! `BC_FREE_BUFFER` of the transaction's buffer, as libbinder's `sendReply` does. Its main
//! thread echoes every packet that arrives on its stdin, one end of a SOCK_SEQPACKET
//! socketpair whose other end this process keeps.
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
//!   recv, send), to the server's second echo socket (its stdout): the floor of any design
//!   that relays through a driver thread, two hops each way like the shim.
//!
//! Each line prints the median and p99 round trip in µs for the three, and the shim/direct
//! ratios of the medians and of the p99s (the shim's goal is ≤ 2.5× direct: close to the
//! relay floor). A second table gives, per round trip, the CPU time all threads of both
//! processes spent (`/proc/<pid>/task/*/schedstat`, first field), the time they spent
//! runnable but waiting for a CPU (second field) and how many times a thread was switched in
//! (third field): on a busy machine the latencies follow the waits, while CPU time and
//! switches count the work each way does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bittube::binder_ipc::device::{Device, ShimDevice, WriteRead};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::binder_ipc::uapi::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

const CHILD_ENV: &str = "BITTUBE_BENCH_CHILD";
const ITERS_ENV: &str = "BINDER_BENCH_ITERS";
const ONLY_ENV: &str = "BINDER_BENCH_ONLY";
const WAYS: [&str; 3] = ["shim", "direct", "relay"];
const SIZES: [usize; 2] = [0, 1024];
const ROUNDS: usize = 10;
const READY: &[u8] = b"ready!!!";
/// The code the server checks, so a stray transaction is noticed (libbinder's
/// FIRST_CALL_TRANSACTION).
const CODE: u32 = 1;

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let iters: usize = std::env::var(ITERS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
        .max(ROUNDS);
    let per_round = iters / ROUNDS;
    let only = std::env::var(ONLY_ENV).ok();
    if let Some(o) = &only {
        assert!(
            WAYS.contains(&o.as_str()),
            "{ONLY_ENV} must be one of {WAYS:?}"
        );
    }
    let wanted = |way: usize| only.as_deref().is_none_or(|o| o == WAYS[way]);

    let driver = Driver::start().expect("start the embedded driver shim");
    let (mine, theirs) = seqpacket_pair();
    // The relay: this thread <-> relay thread <-> server's stdout.
    let (relay_near, relay_far) = seqpacket_pair();
    let (relay_out, theirs_relayed) = seqpacket_pair();
    let mut server = Server::spawn(driver.socket_path(), theirs, theirs_relayed);
    let relay_thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || relay(relay_far, relay_out))
        .expect("spawn the relay thread");
    let mut buf = vec![0u8; 64];
    let n = recv(mine.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("wait for the server");
    assert_eq!(&buf[..n], READY, "the server did not start");

    let dev = ShimDevice::open(driver.socket_path()).expect("open the shim");
    let mut client = Client::new(&dev);

    println!(
        "sync round trip, {iters} per configuration ({ROUNDS} alternating rounds), µs:\n\
         {:>7} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | shim/direct p50 p99 | relay/direct p50",
        "payload", "shim p50", "p99", "direct", "p99", "relay", "p99"
    );
    let started = Instant::now();
    let mut cpu_lines = Vec::new();
    for size in SIZES {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        // Warm-up: caches, the allocator, the shim's first-use paths.
        let warm = (iters / 10).max(100);
        let mut sink = Vec::with_capacity(warm);
        if wanted(0) {
            client.run(&payload, warm, &mut sink);
        }
        sink.clear();
        if wanted(1) {
            direct(mine.as_fd(), &payload, warm, &mut sink);
        }
        sink.clear();
        if wanted(2) {
            direct(relay_near.as_fd(), &payload, warm, &mut sink);
        }

        let mut shim_ns = Vec::with_capacity(iters);
        let mut direct_ns = Vec::with_capacity(iters);
        let mut relay_ns = Vec::with_capacity(iters);
        let mut sched = [Sched::default(); 3];
        for round in 0..ROUNDS {
            // Which one goes first turns with the round.
            for k in 0..3 {
                let way = (round + k) % 3;
                if !wanted(way) {
                    continue;
                }
                let before = Sched::now(server.pid());
                match way {
                    0 => client.run(&payload, per_round, &mut shim_ns),
                    1 => direct(mine.as_fd(), &payload, per_round, &mut direct_ns),
                    _ => direct(relay_near.as_fd(), &payload, per_round, &mut relay_ns),
                }
                sched[way].add(Sched::now(server.pid()).since(before));
            }
        }
        cpu_lines.push((size, sched.map(|s| s.per(per_round * ROUNDS))));
        let (s50, s99) = percentiles(&mut shim_ns);
        let (d50, d99) = percentiles(&mut direct_ns);
        let (r50, r99) = percentiles(&mut relay_ns);
        println!(
            "{:>5} B | {:>8.1} {:>8.1} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1} | {:>6.2}× {:>6.2}×       | {:>6.2}×",
            size,
            us(s50),
            us(s99),
            us(d50),
            us(d99),
            us(r50),
            us(r99),
            s50 as f64 / d50 as f64,
            s99 as f64 / d99 as f64,
            r50 as f64 / d50 as f64
        );
    }
    client.finish();
    println!(
        "per round trip, both processes: µs on CPU / µs runnable waiting for a CPU / switches \
         (of them preemptions):\n\
         {:>7} | {:>26} | {:>26} | {:>26} | shim/direct CPU",
        "payload", "shim", "direct", "relay"
    );
    for (size, [s, d, r]) in cpu_lines {
        println!(
            "{:>5} B | {:>6.1} / {:>6.1} / {:>4.1} ({:>3.1}) | {:>6.1} / {:>6.1} / {:>4.1} ({:>3.1}) \
             | {:>6.1} / {:>6.1} / {:>4.1} ({:>3.1}) | {:>6.2}×",
            size,
            s.0,
            s.1,
            s.2,
            s.3,
            d.0,
            d.1,
            d.2,
            d.3,
            r.0,
            r.1,
            r.2,
            r.3,
            s.0 / d.0
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());

    drop(relay_near); // end of file: the relay thread ends, closing the server's stdout
    relay_thread.join().expect("relay thread");
    drop(mine); // end of file: the server exits
    server.wait();
    let state = driver.state().expect("shim state");
    assert!(
        !state.contains("  buffer at "),
        "buffers left allocated after the run:\n{state}"
    );
}

/// Scheduler times of every thread of this process and the server: ns on a CPU, ns runnable
/// but waiting for one.
#[derive(Clone, Copy, Debug, Default)]
struct Sched {
    run: u64,
    wait: u64,
    switches: u64,
    /// Involuntary switches (preemptions), from `/proc/<pid>/task/*/status`.
    preempted: u64,
}

impl Sched {
    fn now(server: u32) -> Sched {
        let mut s = Sched::default();
        for pid in [std::process::id(), server] {
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

/// Forwards packets both ways between `a` and `b` until either end closes.
fn relay(a: OwnedFd, b: OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            PollFd::new(a.as_fd(), PollFlags::POLLIN),
            PollFd::new(b.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::NONE).expect("relay: poll");
        let ready = [
            fds[0].revents().unwrap_or(PollFlags::empty()),
            fds[1].revents().unwrap_or(PollFlags::empty()),
        ];
        for (i, ev) in ready.into_iter().enumerate() {
            if ev.is_empty() {
                continue;
            }
            let (from, to) = if i == 0 { (&a, &b) } else { (&b, &a) };
            let n = recv(from.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("relay: recv");
            if n == 0 {
                return;
            }
            send(to.as_raw_fd(), &buf[..n], MsgFlags::empty()).expect("relay: send");
        }
    }
}

/// The direct ping-pong: `n` round trips of one packet, their durations appended to `out`.
fn direct(sock: BorrowedFd<'_>, payload: &[u8], n: usize, out: &mut Vec<u64>) {
    let mut msg = vec![0u8; 8 + payload.len()];
    msg[8..].copy_from_slice(payload);
    let mut back = vec![0u8; msg.len() + 64];
    for i in 0..n as u64 {
        msg[..8].copy_from_slice(&i.to_ne_bytes());
        let t = Instant::now();
        send(sock.as_raw_fd(), &msg, MsgFlags::empty()).expect("send to the server");
        let got = recv(sock.as_raw_fd(), &mut back, MsgFlags::empty()).expect("recv echo");
        out.push(t.elapsed().as_nanos() as u64);
        assert_eq!(got, msg.len(), "echo of the wrong size");
        assert_eq!(&back[..8], &msg[..8], "echo out of order");
    }
}

/// The calling side: one binder thread (this one) of this process's binder process.
struct Client<'d> {
    dev: &'d ShimDevice,
    write: CommandWriter,
    read: Vec<u8>,
    /// The last reply's buffer, freed in front of the next call.
    to_free: Option<u64>,
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

    /// One sync call; returns the reply's data size.
    fn call(&mut self, payload: &[u8]) -> u64 {
        self.write.clear();
        if let Some(buf) = self.to_free.take() {
            self.write.cmd_with(BC_FREE_BUFFER, &buf);
        }
        let tr = BinderTransactionData {
            target: 0,
            code: CODE,
            flags: TF_ACCEPT_FDS,
            data_size: payload.len() as u64,
            data_buffer: payload.as_ptr() as u64,
            ..Default::default()
        };
        self.write.cmd_with(BC_TRANSACTION, &tr);
        let mut write: &[u8] = self.write.as_bytes();
        loop {
            let mut wr = WriteRead::new(write, &mut self.read);
            self.dev.write_read(&mut wr).expect("BINDER_WRITE_READ");
            assert_eq!(wr.write_consumed, write.len(), "write not consumed");
            write = &[];
            let mut r = CommandReader::new(wr.returned());
            while let Some((cmd, body)) = r.next_command() {
                match cmd {
                    BR_NOOP | BR_TRANSACTION_COMPLETE | BR_SPAWN_LOOPER => {}
                    BR_REPLY => {
                        let reply: BinderTransactionData = bytemuck::pod_read_unaligned(body);
                        self.to_free = Some(reply.data_buffer);
                        assert_eq!(reply.flags & TF_STATUS_CODE, 0, "status reply");
                        return reply.data_size;
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
    /// The server echoes packets on `sock` (its stdin) and `relayed` (its stdout).
    fn spawn(socket: &std::path::Path, sock: OwnedFd, relayed: OwnedFd) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let child = Command::new(exe)
            .env(CHILD_ENV, "server")
            .env(ENV_SOCKET, socket)
            .stdin(Stdio::from(sock))
            .stdout(Stdio::from(relayed))
            .spawn()
            .expect("spawn the server process");
        Server(child)
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
    send(sock.as_raw_fd(), READY, MsgFlags::empty()).expect("server: ready");
    // The direct echo, until the caller closes its end.
    echo(sock);
    // The binder thread is still blocked in write_read: leave it to process exit.
    std::process::exit(0);
}

/// Sends every packet back, until end of file.
fn echo(sock: BorrowedFd<'_>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("server: recv");
        if n == 0 {
            return;
        }
        send(sock.as_raw_fd(), &buf[..n], MsgFlags::empty()).expect("server: echo");
    }
}

fn binder_loop(dev: &ShimDevice, ready: std::sync::mpsc::Sender<()>) {
    dev.set_context_mgr()
        .expect("server: BINDER_SET_CONTEXT_MGR");
    let mut write = CommandWriter::new();
    write.cmd(BC_ENTER_LOOPER);
    ready.send(()).expect("server: ready");
    let mut read = vec![0u8; 4096];
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
                    assert_eq!(tr.code, CODE, "server: unexpected code");
                    // Reply with the same bytes: they lie in this process's buffer area,
                    // readable until the free that follows the reply.
                    let reply = BinderTransactionData {
                        data_size: tr.data_size,
                        data_buffer: tr.data_buffer,
                        ..Default::default()
                    };
                    next.cmd_with(BC_REPLY, &reply);
                    next.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
                }
                other => panic!("server: unexpected {}", command_name(other)),
            }
        }
        write = next;
    }
}
