//! Hostile clients against a shim in its own process: connections that send half a frame and
//! close, a client that floods requests and never reads the answers, clients past every cap.
//! Throughout, the shim's fd count (`/proc/<pid>/fd`) comes back to its baseline, its RSS stays
//! under a stated bound, and a normal client's round trip (a ping through the context manager
//! in a third process) keeps working. Waits are bounded only to turn a hang into a failure.

mod common;

use bittube::binder_ipc::device::{Device, ShimDevice};
use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::protocol::wire::{self, FrameHeader, ResultBody};
use bittube::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use bittube::binder_ipc::shim::{query_state, Driver, Limits};
use common::services::{Inert, Sink, SINK_BLOCK};
use common::{child_role, control_in_child, spawn_child_env, LONG};
use nix::sys::socket::{recv, send, MsgFlags};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Instant;

/// The shim's caps in these tests, small enough to reach.
const CONNS_PER_UID: usize = 200;
const PROCS_PER_UID: usize = 8;
const THREADS_PER_PROC: usize = 24;
const OUT_CAP: usize = 256 * 1024;
/// The state caps per process, small enough for a client to pass each.
/// Nodes and refs are two ends of one object (the sender's node, the receiver's ref), so
/// each is passed with the other cap above it: `HOSTILE_CAPS=refs` gives the shim a node
/// cap of [`NODES_FOR_REFS`] instead.
const NODES_PER_PROC: usize = 16;
const REFS_PER_PROC: usize = 32;
const NODES_FOR_REFS: usize = 64;
const TXNS_PER_PROC: u32 = 32;
const DEATHS_PER_PROC: u32 = 8;
/// fds the shim may hold for one sender's unread transactions (`HOSTILE_CAPS=fds`), and
/// the fds each of the fd client's oneway calls carries: the cap is reached after
/// `FDS_PER_PROC / FDS_PER_CALL` queued calls, before the transaction cap.
const FDS_PER_PROC: u32 = 40;
const FDS_PER_CALL: usize = 4;
/// Calls the state-cap client tries past each cap (it must be refused well before).
const TRIES: usize = 400;
/// Echo service codes: a fresh binder for each GIVE; the sink, whose SINK_BLOCK never returns.
const GIVE: u32 = bittube::binder_ipc::runtime::FIRST_CALL_TRANSACTION + 1;
const SINK: u32 = bittube::binder_ipc::runtime::FIRST_CALL_TRANSACTION + 2;
/// A node with nothing to offer (handed out by GIVE, sent by the node-cap client).
const TOKEN: Inert = Inert("bittube.test.Token");
/// The bound on the shim's RSS growth over its baseline while a client floods it: the
/// output cap, one answer, buffers of a read, with room for the allocator's slack.
const RSS_GROWTH_BOUND_KB: u64 = 16 * 1024;

fn limits() -> Limits {
    let mut l = Limits {
        conns_per_uid: CONNS_PER_UID,
        procs_per_uid: PROCS_PER_UID,
        out_bytes_per_conn: OUT_CAP,
        ..Limits::default()
    };
    l.state.threads = THREADS_PER_PROC;
    l.state.nodes = if std::env::var("HOSTILE_CAPS").as_deref() == Ok("refs") {
        NODES_FOR_REFS
    } else {
        NODES_PER_PROC
    };
    l.state.refs = REFS_PER_PROC;
    l.state.txns = TXNS_PER_PROC;
    l.state.deaths = DEATHS_PER_PROC;
    if std::env::var("HOSTILE_CAPS").as_deref() == Ok("fds") {
        l.state.fds = FDS_PER_PROC;
    }
    l
}

/// A shim in a child process, a context manager in another, and this process's client.
struct Setup {
    shim: Child,
    shim_ctl: OwnedFd,
    service: Child,
    socket: PathBuf,
    dir: PathBuf,
    client: ProcessState,
}

fn private_dir(test: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("bittube-hostile-{}-{test}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&base)
        .expect("private dir");
    base
}

fn wait_ready(ctl: &OwnedFd) {
    let mut b = [0u8; 16];
    let n = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty()).expect("child ready");
    assert_eq!(&b[..n], b"ready", "child did not start");
}

fn say_ready() -> OwnedFd {
    let ctl = control_in_child();
    send(ctl.as_raw_fd(), b"ready", MsgFlags::empty()).expect("say ready");
    ctl
}

impl Setup {
    fn start(test: &str) -> Setup {
        Self::start_caps(test, "")
    }

    /// [`start`](Self::start) with `HOSTILE_CAPS=caps` for the shim (see [`limits`]).
    fn start_caps(test: &str, caps: &str) -> Setup {
        let dir = private_dir(test);
        let socket = dir.join("binder");
        let env = [
            ("HOSTILE_SOCKET", socket.as_os_str()),
            ("HOSTILE_CAPS", caps.as_ref()),
        ];
        let (shim, shim_ctl) = spawn_child_env(test, "shim", &env);
        wait_ready(&shim_ctl);
        let (service, service_ctl) = spawn_child_env(test, "service", &env);
        wait_ready(&service_ctl);
        let client = ProcessState::open_shim(&socket).expect("client process");
        let s = Setup {
            shim,
            shim_ctl,
            service,
            socket,
            dir,
            client,
        };
        s.round_trip();
        s
    }

    /// A ping through the context manager: a whole binder round trip.
    fn round_trip(&self) {
        let ctx = self.client.context_object().expect("context object");
        ctx.ping().expect("round trip through the shim");
    }

    fn pid(&self) -> u32 {
        self.shim.id()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("shim fds")
            .count()
    }

    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Waits (bounded) until the shim holds `baseline` fds again.
    fn wait_fds(&self, baseline: usize) {
        let deadline = Instant::now() + LONG;
        while self.fds() != baseline {
            assert!(
                Instant::now() < deadline,
                "shim fds stay at {} (baseline {baseline})\n{}",
                self.fds(),
                self.state()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the state dump contains `text`.
    fn wait_state(&self, text: &str) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let s = self.state();
            if s.contains(text) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {text:?} in\n{s}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn state(&self) -> String {
        query_state(&self.socket).expect("shim state")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        // The shim child exits when its control socket closes.
        let _ =
            nix::sys::socket::shutdown(self.shim_ctl.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = self.shim.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The context manager: echoes a u64; GIVE answers a fresh binder (a new ref for the
/// caller), SINK the sink.
struct Echo {
    sink: Binder,
}

impl Service for Echo {
    fn descriptor(&self) -> &str {
        "bittube.test.Echo"
    }
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        ctx: &CallContext,
    ) -> Result<(), BinderError> {
        match code {
            GIVE => ctx.process.write_binder(reply, &Binder::new(TOKEN))?,
            SINK => ctx.process.write_binder(reply, &self.sink)?,
            _ => reply.write_u64(data.read_u64()?)?,
        }
        Ok(())
    }
}

/// Waits (bounded) until this process has `n` binder threads in the shim's dump.
fn wait_own_threads(socket: &Path, n: usize) {
    let me = format!("{} id ", std::process::id());
    let want = format!(" threads {n} ");
    let deadline = Instant::now() + LONG;
    loop {
        let state = query_state(socket).expect("state");
        let mine = state.split("proc ").find(|s| s.starts_with(&me));
        if mine.is_some_and(|s| s.lines().any(|l| l.contains("held:") && l.contains(&want))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "service threads never joined\n{state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Runs the child roles; true when this process is a child (the test body is skipped).
fn child() -> bool {
    let Some(role) = child_role() else {
        return false;
    };
    let socket = PathBuf::from(std::env::var_os("HOSTILE_SOCKET").expect("socket"));
    match role.as_str() {
        "shim" => {
            let driver = Driver::start_at_with(&socket, limits()).expect("shim");
            let ctl = say_ready();
            // Until the test closes the control socket.
            let mut b = [0u8; 1];
            let _ = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty());
            drop(driver);
        }
        "service" => {
            let ps = ProcessState::open_shim(&socket).expect("service process");
            let sink = Binder::new(Sink("bittube.test.Sink"));
            ps.become_context_manager(Arc::new(Echo { sink }))
                .expect("context manager");
            // Threads besides the one the sink keeps, all started before the tests take
            // the shim's fd baseline (none is spawned later: max threads stays 0).
            for _ in 0..3 {
                let ps = ps.clone();
                std::thread::spawn(move || ps.join_thread_pool());
            }
            wait_own_threads(&socket, 4);
            let _ctl = say_ready();
            ps.join_thread_pool().expect("serve");
        }
        "liar" => liar(&socket),
        "state-hog" => state_hog(&socket),
        "fd-hog" => fd_hog(&socket),
        "mute" => {
            // Listens, never accepts, never answers.
            let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
            let ctl = say_ready();
            let mut b = [0u8; 1];
            let _ = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty());
        }
        r => panic!("unknown role {r}"),
    }
    true
}

fn header(kind: u32, len: u32, nfds: u32) -> Vec<u8> {
    bytemuck::bytes_of(&FrameHeader {
        len,
        kind,
        nfds,
        reserved: 0,
    })
    .to_vec()
}

/// Reads one answer frame from a blocking stream (bounded by a read timeout).
fn read_frame(s: &mut UnixStream) -> (FrameHeader, Vec<u8>) {
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut h = [0u8; 16];
    s.read_exact(&mut h).expect("answer header");
    let hdr: FrameHeader = bytemuck::pod_read_unaligned(&h);
    let mut body = vec![0u8; hdr.len as usize];
    s.read_exact(&mut body).expect("answer body");
    (hdr, body)
}

/// The ways to leave a frame half-sent, then close.
fn partial_frame(socket: &Path, i: usize) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    let state = header(wire::K_STATE, 0, 0);
    match i % 5 {
        // 10 bytes of a header.
        0 => s.write_all(&state[..10]).unwrap(),
        // A header announcing a body that never comes.
        1 => s.write_all(&header(wire::K_OPEN_PROC, 16, 0)).unwrap(),
        // Half a body, with an fd riding on it.
        2 => {
            let mut bytes = header(wire::K_OPEN_THREAD, 8, 1);
            bytes.extend_from_slice(&[1, 2, 3]);
            let fd = std::fs::File::open("/dev/null").unwrap();
            wire::send_bytes_with_fds(
                std::os::fd::AsFd::as_fd(&s),
                &bytes,
                &[std::os::fd::AsFd::as_fd(&fd)],
            )
            .unwrap();
        }
        // A whole request, then half of the next one.
        3 => {
            let mut bytes = state.clone();
            bytes.extend_from_slice(&state[..7]);
            s.write_all(&bytes).unwrap();
        }
        // Nothing at all.
        _ => {}
    }
    s
}

#[test]
fn half_sent_frames_then_close_are_all_reaped() {
    if child() {
        return;
    }
    let setup = Setup::start("half_sent_frames_then_close_are_all_reaped");
    let baseline = setup.fds();
    let rss0 = setup.rss_kb();
    // 1000 connections, 50 open at a time (under the per-uid cap), each closed half-sent.
    for batch in 0..20 {
        let conns: Vec<UnixStream> = (0..50)
            .map(|i| partial_frame(&setup.socket, batch * 50 + i))
            .collect();
        drop(conns);
        setup.wait_fds(baseline);
        setup.round_trip();
    }
    let state = setup.state();
    assert!(state.contains("refused: conns per uid 0 "), "{state}");
    assert!(setup.rss_kb() < rss0 + RSS_GROWTH_BOUND_KB, "{state}");
    eprintln!(
        "half-sent: fds {} (baseline {baseline}), rss {} kB (start {rss0} kB)",
        setup.fds(),
        setup.rss_kb()
    );
}

#[test]
fn a_client_that_never_reads_is_paused_not_buffered() {
    if child() {
        return;
    }
    let setup = Setup::start("a_client_that_never_reads_is_paused_not_buffered");
    let baseline = setup.fds();
    let rss0 = setup.rss_kb();
    let flooder = UnixStream::connect(&setup.socket).unwrap();
    flooder.set_nonblocking(true).unwrap();
    // State requests until the socket takes no more: the shim stops reading once its
    // answers fill the cap, so this ends (without the cap it would not, up to the limit).
    let request = header(wire::K_STATE, 0, 0);
    let mut sent = 0usize;
    while sent < 2_000_000 {
        match (&flooder).write(&request) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Paused is what stops it; until then the shim drains the socket.
                if setup.state().contains("(1 paused now)") {
                    // Fill the socket too: the shim reads none of it.
                    while (&flooder).write(&request).is_ok() {
                        sent += request.len();
                    }
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => panic!("flood: {e}"),
        }
    }
    let state = setup.wait_state("(1 paused now)");
    setup.round_trip();
    let rss = setup.rss_kb();
    eprintln!("flood: {sent} request bytes sent, shim rss {rss} kB (start {rss0} kB)\n{state}");
    assert!(
        rss < rss0 + RSS_GROWTH_BOUND_KB,
        "rss {rss} kB, start {rss0} kB"
    );
    drop(flooder);
    setup.wait_fds(baseline);
    setup.wait_state("(0 paused now)");
    setup.round_trip();
    let rss_after = setup.rss_kb();
    eprintln!("flooder gone: shim rss {rss_after} kB");
    assert!(rss_after < rss0 + RSS_GROWTH_BOUND_KB);
}

#[test]
fn connections_past_the_uid_cap_are_refused() {
    if child() {
        return;
    }
    let setup = Setup::start("connections_past_the_uid_cap_are_refused");
    let baseline = setup.fds();
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..CONNS_PER_UID + 10 {
        let mut s = UnixStream::connect(&setup.socket).unwrap();
        s.write_all(&header(wire::K_STATE, 0, 0)).unwrap();
        let (hdr, body) = read_frame(&mut s);
        if hdr.kind == wire::K_RESULT {
            let r: ResultBody = bytemuck::pod_read_unaligned(&body);
            refused = Some(r.errno);
            break;
        }
        assert_eq!(hdr.kind, wire::K_STATE_RET);
        open.push(s);
    }
    assert_eq!(refused, Some(libc::EUSERS), "no refusal past the cap");
    assert!(open.len() < CONNS_PER_UID);
    // An established client does not notice.
    setup.round_trip();
    // A device opening now is told why.
    let err = ShimDevice::open(&setup.socket).expect_err("open past the cap");
    assert_eq!(err.raw_os_error(), Some(libc::EUSERS), "{err}");
    drop(open);
    setup.wait_fds(baseline);
    let state = setup.state();
    assert!(!state.contains("refused: conns per uid 0 "), "{state}");
    setup.round_trip();
}

#[test]
fn binder_processes_past_the_uid_cap_are_refused() {
    if child() {
        return;
    }
    let setup = Setup::start("binder_processes_past_the_uid_cap_are_refused");
    let baseline = setup.fds();
    let mut devs = Vec::new();
    let err = loop {
        match ShimDevice::open_with(&setup.socket, 128 * 1024) {
            Ok(d) => devs.push(d),
            Err(e) => break e,
        }
        assert!(devs.len() <= PROCS_PER_UID, "no refusal past the cap");
    };
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    // The service and this client are two of the uid's processes.
    assert_eq!(devs.len(), PROCS_PER_UID - 2);
    setup.round_trip();
    let state = setup.state();
    assert!(state.contains("procs per uid 1 "), "{state}");
    drop(devs);
    setup.wait_fds(baseline);
    setup.round_trip();
}

#[test]
fn threads_past_the_process_cap_are_refused() {
    if child() {
        return;
    }
    let setup = Setup::start("threads_past_the_process_cap_are_refused");
    let baseline = setup.fds();
    let dev = ShimDevice::open_with(&setup.socket, 128 * 1024).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(THREADS_PER_PROC + 5));
    let threads: Vec<_> = (0..THREADS_PER_PROC + 4)
        .map(|_| {
            let (dev, barrier) = (dev.clone(), barrier.clone());
            std::thread::spawn(move || {
                let r = dev.version();
                barrier.wait(); // every thread holds its connection until all have tried
                r
            })
        })
        .collect();
    barrier.wait();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| **r == Err(nix::errno::Errno::ENOMEM))
        .count();
    assert_eq!((ok, refused), (THREADS_PER_PROC, 4), "{results:?}");
    setup.round_trip();
    drop(dev);
    setup.wait_fds(baseline);
    setup.round_trip();
}

#[test]
fn a_refused_transaction_leaves_an_extended_error() {
    use bittube::binder_ipc::device::WriteRead;
    use bittube::binder_ipc::uapi::*;
    if child() {
        return;
    }
    let setup = Setup::start("a_refused_transaction_leaves_an_extended_error");
    let dev = ShimDevice::open_with(&setup.socket, 128 * 1024).unwrap();
    // A call on a handle this process does not hold.
    let tr = BinderTransactionData {
        target: 7,
        ..Default::default()
    };
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &tr);
    dev.set_nonblocking(true);
    let mut returned = Vec::new();
    let mut write = w.as_bytes().to_vec();
    // The failure comes back on this thread's reads (nonblocking: none of them can hang).
    for _ in 0..3 {
        let mut read = [0u8; 256];
        let mut wr = WriteRead::new(&write, &mut read);
        let _ = dev.write_read(&mut wr);
        returned.extend_from_slice(wr.returned());
        write.clear();
    }
    assert!(
        returned
            .chunks(4)
            .any(|c| c == BR_FAILED_REPLY.to_ne_bytes()),
        "{returned:x?}"
    );
    let ee = dev.extended_error().expect("extended error");
    assert_eq!(ee.command, BR_FAILED_REPLY, "{ee:?}");
    assert!(ee.param < 0, "{ee:?}");
    // Reading clears it.
    assert_eq!(dev.extended_error().unwrap().command, BR_OK);
    setup.round_trip();
}

/// A shim that lies to its device: it names an fd the device never received in a free's
/// close list, then claims more of the write stream consumed than was written.
fn liar(socket: &Path) {
    use std::os::fd::AsFd;
    use wire::*;
    let victim: i32 = std::env::var("HOSTILE_VICTIM").unwrap().parse().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
    let _ctl = say_ready();
    let (proc_conn, _) = listener.accept().unwrap();
    let (hdr, _, _) = recv_frame(proc_conn.as_fd()).unwrap();
    assert_eq!(hdr.kind, K_OPEN_PROC);
    let mfd = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("liar")
        .unwrap();
    mfd.as_file().set_len(128 * 1024).unwrap();
    mfd.add_seals(&[memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow])
        .unwrap();
    let ok = OpenProcOk {
        errno: 0,
        reserved: 0,
        token: 1,
        area_size: 128 * 1024,
    };
    let area = mfd.as_file().as_fd();
    send_frame(
        proc_conn.as_fd(),
        K_OPEN_PROC_OK,
        &[bytemuck::bytes_of(&ok)],
        &[area],
    )
    .unwrap();
    let ok = ResultBody::default();
    recv_frame(proc_conn.as_fd()).unwrap(); // K_MAP_DONE
    send_frame(proc_conn.as_fd(), K_RESULT, &[bytemuck::bytes_of(&ok)], &[]).unwrap();
    let (thread, _) = listener.accept().unwrap();
    recv_frame(thread.as_fd()).unwrap(); // K_OPEN_THREAD
    send_frame(thread.as_fd(), K_RESULT, &[bytemuck::bytes_of(&ok)], &[]).unwrap();
    for extra in [0u64, 100] {
        let (hdr, body, _) = recv_frame(thread.as_fd()).unwrap();
        assert_eq!(hdr.kind, K_WRITE_READ);
        let req: WriteReadReq = bytemuck::pod_read_unaligned(&body[..size_of_req()]);
        let ret = WriteReadRet {
            errno: 0,
            nfixups: 0,
            write_consumed: req.write_size + extra,
            read_consumed: 4,
            read_len: 4,
            nclose: 1,
        };
        let noop = bittube::binder_ipc::uapi::BR_NOOP.to_ne_bytes();
        let parts = [
            bytemuck::bytes_of(&ret),
            &noop[..],
            &victim.to_ne_bytes()[..],
        ];
        send_frame(thread.as_fd(), K_WRITE_READ_RET, &parts, &[]).unwrap();
    }
    // Until the device goes.
    let _ = recv_frame(thread.as_fd());
}

fn size_of_req() -> usize {
    std::mem::size_of::<wire::WriteReadReq>()
}

#[test]
fn a_lying_shim_cannot_close_fds_or_move_counters() {
    use bittube::binder_ipc::device::WriteRead;
    use bittube::binder_ipc::uapi::*;
    if child() {
        return;
    }
    let dir = private_dir("liar");
    let socket = dir.join("binder");
    let victim = std::fs::File::open("/dev/null").unwrap();
    let n = victim.as_raw_fd().to_string();
    let env = [
        ("HOSTILE_SOCKET", socket.as_os_str()),
        ("HOSTILE_VICTIM", std::ffi::OsStr::new(&n)),
    ];
    let (mut liar, ctl) = spawn_child_env(
        "a_lying_shim_cannot_close_fds_or_move_counters",
        "liar",
        &env,
    );
    wait_ready(&ctl);
    let dev = ShimDevice::open(&socket).expect("open on the liar");
    // A free of a buffer this process never received: the liar names our fd to close.
    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &0x1000u64);
    let mut read = [0u8; 64];
    let mut wr = WriteRead::new(w.as_bytes(), &mut read);
    dev.write_read(&mut wr).expect("first call");
    assert!(
        nix::fcntl::fcntl(&victim, nix::fcntl::FcntlArg::F_GETFD).is_ok(),
        "the device closed an fd it never received"
    );
    // write_consumed past what was written: refused, the caller's counters untouched.
    let mut wr = WriteRead::new(w.as_bytes(), &mut read);
    assert_eq!(dev.write_read(&mut wr), Err(nix::errno::Errno::EPROTO));
    assert_eq!((wr.write_consumed, wr.read_consumed), (0, 0));
    drop(dev);
    let _ = liar.wait();
    drop(victim);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_state_query_to_a_mute_shim_times_out_naming_it() {
    if child() {
        return;
    }
    let dir = private_dir("mute");
    let socket = dir.join("binder");
    let env = [("HOSTILE_SOCKET", socket.as_os_str())];
    let (mut mute, ctl) = spawn_child_env(
        "a_state_query_to_a_mute_shim_times_out_naming_it",
        "mute",
        &env,
    );
    wait_ready(&ctl);
    let err = bittube::binder_ipc::shim::query_state_timeout(
        &socket,
        std::time::Duration::from_millis(100),
    )
    .expect_err("a mute shim answers nothing");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        err.to_string().contains(&*socket.to_string_lossy()),
        "{err}"
    );
    drop(ctl);
    let _ = mute.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_device_debugs_as_one_short_line() {
    if child() {
        return;
    }
    let setup = Setup::start("a_device_debugs_as_one_short_line");
    let dev = ShimDevice::open_with(&setup.socket, 128 * 1024).unwrap();
    dev.version().unwrap();
    let text = format!("{dev:?}");
    assert!(!text.contains('\n') && text.len() < 300, "{text}");
    assert!(text.contains("ShimDevice"), "{text}");
}

/// A client past every state cap, one after the other; after each it reports how far it got
/// ("nodes N", ...) and waits for "go" (the test checks the shim and a normal client's round
/// trip in between). Holds what it got until it exits.
fn state_hog(socket: &Path) {
    let ctl = control_in_child();
    let say = |m: String| {
        send(ctl.as_raw_fd(), m.as_bytes(), MsgFlags::empty()).expect("report");
        let mut b = [0u8; 8];
        let n = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty()).expect("go");
        assert_eq!(&b[..n], b"go");
    };
    let ps = ProcessState::open_shim(socket).expect("hog process");
    ps.start_thread_pool().expect("pool");
    let ctx = ps.context_object().expect("context object");
    if std::env::var("HOSTILE_CAPS").as_deref() == Ok("refs") {
        // Refs: fresh binders from the service until refused.
        let mut held = Vec::new();
        while held.len() < TRIES {
            let Ok(mut reply) = ctx.transact(GIVE, &Parcel::new()) else {
                break;
            };
            held.push(ps.read_binder(&mut reply).unwrap().unwrap());
        }
        say(format!("refs {}", held.len()));
        return;
    }
    // Nodes: one call carrying more new binders than the cap.
    let mut p = Parcel::new();
    let mine: Vec<Binder> = (0..NODES_PER_PROC + 8)
        .map(|_| Binder::new(TOKEN))
        .collect();
    for b in &mine {
        ps.write_binder(&mut p, b).unwrap();
    }
    let refused = ctx.transact(GIVE + 100, &p).is_err();
    say(format!("nodes {refused}"));
    // Proxies to death-watch (the service's node cap bounds how many it hands out).
    let held: Vec<Binder> = (0..DEATHS_PER_PROC + 4)
        .map(|_| {
            let mut reply = ctx.transact(GIVE, &Parcel::new()).expect("token");
            ps.read_binder(&mut reply).unwrap().unwrap()
        })
        .collect();
    // Deaths: one request per held proxy, more than the cap.
    let recipient: Arc<dyn bittube::binder_ipc::runtime::DeathRecipient> = Arc::new(|| {});
    for b in held.iter().take(DEATHS_PER_PROC as usize + 8) {
        if let Some(proxy) = b.as_proxy() {
            let _ = proxy.link_to_death(recipient.clone());
        }
    }
    say("deaths sent".into());
    drop(held);
    // Pending transactions: oneway calls queued behind the sink's blocked one.
    let sink = ps
        .read_binder(&mut ctx.transact(SINK, &Parcel::new()).expect("sink"))
        .unwrap()
        .unwrap();
    let sent = (0..TRIES)
        .take_while(|_| sink.transact_oneway(SINK_BLOCK, &Parcel::new()).is_ok())
        .count();
    say(format!("transactions {sent}"));
}

/// Reads the hog's report (see [`state_hog`]).
fn hog_report(ctl: &OwnedFd) -> String {
    let mut b = [0u8; 64];
    let n = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty()).expect("hog report");
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// The number a dump line `cap NAME: CAP per process, refused N` ends with.
fn refused_per_process(state: &str, name: &str) -> u64 {
    let prefix = format!("cap {name}: ");
    state
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix) && l.contains("per process"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} cap line in\n{state}"))
}

#[test]
fn a_client_past_the_node_death_and_transaction_caps_is_refused_alone() {
    if child() {
        return;
    }
    const TEST: &str = "a_client_past_the_node_death_and_transaction_caps_is_refused_alone";
    let setup = Setup::start(TEST);
    let baseline = setup.fds();
    let rss0 = setup.rss_kb();
    let env = [("HOSTILE_SOCKET", setup.socket.as_os_str())];
    let (hog, ctl) = spawn_child_env(TEST, "state-hog", &env);
    let mut hog = KillOnDrop(hog);
    let go = || send(ctl.as_raw_fd(), b"go", MsgFlags::empty()).expect("go");

    assert_eq!(
        hog_report(&ctl),
        "nodes true",
        "a call past the node cap went through"
    );
    assert!(refused_per_process(&setup.state(), "nodes") >= 1);
    setup.round_trip();
    go();

    assert_eq!(hog_report(&ctl), "deaths sent");
    // The refusal is counted when the request is handled; the hog's writes are in.
    let deadline = Instant::now() + LONG;
    while refused_per_process(&setup.state(), "deaths") == 0 {
        assert!(
            Instant::now() < deadline,
            "no death refused\n{}",
            setup.state()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    setup.round_trip();
    go();

    let sent: usize = hog_report(&ctl)["transactions ".len()..].parse().unwrap();
    assert!(
        sent <= TXNS_PER_PROC as usize + 1,
        "the hog queued {sent} (cap {TXNS_PER_PROC})"
    );
    assert!(refused_per_process(&setup.state(), "transactions") >= 1);
    setup.round_trip();
    let rss = setup.rss_kb();
    eprintln!("state caps: shim rss {rss} kB (start {rss0} kB)");
    assert!(
        rss < rss0 + RSS_GROWTH_BOUND_KB,
        "rss {rss} kB, start {rss0} kB"
    );
    go();

    let status = hog.0.wait().expect("hog exit");
    assert!(status.success(), "hog failed: {status}");
    setup.wait_fds(baseline);
    setup.round_trip();
}

#[test]
fn a_client_past_the_ref_cap_is_refused_alone() {
    if child() {
        return;
    }
    const TEST: &str = "a_client_past_the_ref_cap_is_refused_alone";
    let setup = Setup::start_caps(TEST, "refs");
    let baseline = setup.fds();
    let env = [
        ("HOSTILE_SOCKET", setup.socket.as_os_str()),
        ("HOSTILE_CAPS", "refs".as_ref()),
    ];
    let (hog, ctl) = spawn_child_env(TEST, "state-hog", &env);
    let mut hog = KillOnDrop(hog);
    let refs: usize = hog_report(&ctl)["refs ".len()..].parse().unwrap();
    assert!(
        refs < REFS_PER_PROC,
        "the hog holds {refs} refs (cap {REFS_PER_PROC})"
    );
    assert!(refused_per_process(&setup.state(), "refs") >= 1);
    setup.round_trip();
    send(ctl.as_raw_fd(), b"go", MsgFlags::empty()).expect("go");
    let status = hog.0.wait().expect("hog exit");
    assert!(status.success(), "hog failed: {status}");
    setup.wait_fds(baseline);
    setup.round_trip();
}

/// A child killed if the test fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Oneway calls carrying [`FDS_PER_CALL`] fds each, queued behind the sink's blocked call
/// (which the sink never finishes, so the shim holds every later call's fds), until one is
/// refused; reports "fds <calls accepted> <error of the refused one>" and holds on until "go".
fn fd_hog(socket: &Path) {
    let ctl = control_in_child();
    let ps = ProcessState::open_shim(socket).expect("fd hog process");
    ps.start_thread_pool().expect("pool");
    let ctx = ps.context_object().expect("context object");
    let sink = ps
        .read_binder(&mut ctx.transact(SINK, &Parcel::new()).expect("sink"))
        .unwrap()
        .unwrap();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let mut sent = 0;
    let mut refusal = String::from("none");
    while sent < TRIES {
        let mut p = Parcel::new();
        for _ in 0..FDS_PER_CALL {
            p.write_dup_fd(std::os::fd::AsFd::as_fd(&null)).unwrap();
        }
        match sink.transact_oneway(SINK_BLOCK, &p) {
            Ok(()) => sent += 1,
            Err(e) => {
                refusal = format!("{e:?}");
                break;
            }
        }
    }
    let m = format!("fds {sent} {refusal}");
    send(ctl.as_raw_fd(), m.as_bytes(), MsgFlags::empty()).expect("report");
    let mut b = [0u8; 8];
    let _ = recv(ctl.as_raw_fd(), &mut b, MsgFlags::empty());
}

/// The per-process cap on fds held for unread transactions: a client that floods oneway
/// calls carrying fds to a node that never takes them is refused (BR_FAILED_REPLY, counted
/// as `cap fds` and `refused by FdCap` in the state), the shim's own fd table grows by at
/// most the cap (plus the client's connections), and a normal client's round trip works.
#[test]
fn fds_held_for_queued_transactions_are_capped_per_process() {
    if child() {
        return;
    }
    const TEST: &str = "fds_held_for_queued_transactions_are_capped_per_process";
    let setup = Setup::start_caps(TEST, "fds");
    let baseline = setup.fds();
    let env = [
        ("HOSTILE_SOCKET", setup.socket.as_os_str()),
        ("HOSTILE_CAPS", "fds".as_ref()),
    ];
    let (hog, ctl) = spawn_child_env(TEST, "fd-hog", &env);
    let mut hog = KillOnDrop(hog);
    let report = hog_report(&ctl);
    let mut words = report.split(' ');
    assert_eq!(words.next(), Some("fds"), "{report}");
    let sent: usize = words.next().and_then(|n| n.parse().ok()).expect(&report);
    let queued_max = FDS_PER_PROC as usize / FDS_PER_CALL;
    // The first call is taken by the sink (its fds leave the shim); the rest queue.
    assert!(
        sent <= queued_max + 1,
        "{sent} calls with fds went through (cap {FDS_PER_PROC} fds)"
    );
    assert_eq!(words.next(), Some("FailedTransaction"), "{report}");
    let state = setup.state();
    assert!(refused_per_process(&state, "fds") >= 1, "{state}");
    assert!(state.contains("refused by FdCap: "), "{state}");
    assert_eq!(
        refused_per_process(&state, "transactions"),
        0,
        "the transaction cap refused first\n{state}"
    );
    // The client's own connections (process, pool and calling threads) besides the fds.
    let slack = 16;
    let held = setup.fds();
    assert!(
        held <= baseline + FDS_PER_PROC as usize + slack,
        "the shim holds {held} fds (baseline {baseline}, cap {FDS_PER_PROC})"
    );
    setup.round_trip();
    send(ctl.as_raw_fd(), b"go", MsgFlags::empty()).expect("go");
    let status = hog.0.wait().expect("hog exit");
    assert!(status.success(), "hog failed: {status}");
    setup.round_trip();
}
