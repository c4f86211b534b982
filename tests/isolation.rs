//! Uids on one shim cannot take each other's share of its state (issue 12 item 2, issue 10's
//! caps per uid): processes of uid A drive A to the shim's per-uid caps on pending
//! transactions and refs, and a process of uid B, throughout, completes its round trips,
//! gets its own handles and has every event it sends counted by the service.
//!
//! The shim runs in this (root) test process with a world-connectable socket; every other
//! party is this test binary run again, dropped to its uid (setgroups, setresgid, setresuid)
//! before it opens the device. Skipped with a message when not root. Nothing is timed: waits
//! are bounded only to turn a hang into a failure.

mod common;
use common::services::{Sink, SINK_BLOCK, TOKEN};
use common::users::{become_uid, is_root, recv, send};
use common::*;

use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, Service, FIRST_CALL_TRANSACTION,
};
use bittube::binder_ipc::shim::{Driver, Limits, SocketAccess};

const TEST: &str = "an_over_limit_uid_leaves_another_uids_calls_and_events_whole";
/// The hogging uids (pending transactions, refs), the well-behaved one, and the service's.
const HOG: u32 = 10001;
const REF_HOG: u32 = 10004;
const PEER: u32 = 10002;
const SERVICE: u32 = 10003;
/// The per-uid caps under test (the per-process caps stay at their defaults, far above).
const UID_TXNS: u64 = 16;
const UID_REFS: u64 = 24;
/// How many calls a hog tries; it must be refused well before.
const TRIES: usize = 200;
/// The peer's round trips and events.
const ROUNDS: u32 = 100;

const ECHO: u32 = FIRST_CALL_TRANSACTION;
const GIVE: u32 = FIRST_CALL_TRANSACTION + 1;
const SINK: u32 = FIRST_CALL_TRANSACTION + 2;
const EVENT: u32 = FIRST_CALL_TRANSACTION + 3;
const COUNT: u32 = FIRST_CALL_TRANSACTION + 4;

fn socket_path() -> PathBuf {
    PathBuf::from(std::env::var_os("ISOLATION_SOCKET").expect("ISOLATION_SOCKET"))
}

fn open() -> ProcessState {
    let ps = ProcessState::open_shim(&socket_path()).expect("open the shim");
    ps.start_thread_pool().expect("thread pool");
    ps
}

/// The context manager: echo, fresh tokens, the sink, and events counted by caller uid.
struct Hub {
    sink: Binder,
    events: Mutex<std::collections::HashMap<u32, u32>>,
}

impl Service for Hub {
    fn descriptor(&self) -> &str {
        "bittube.test.IHub"
    }
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        ctx: &CallContext,
    ) -> Result<(), BinderError> {
        match code {
            ECHO => reply.write_u64(data.read_u64()?)?,
            GIVE => ctx.process.write_binder(reply, &Binder::new(TOKEN))?,
            SINK => ctx.process.write_binder(reply, &self.sink)?,
            EVENT => *self.events.lock().unwrap().entry(ctx.uid).or_insert(0) += 1,
            COUNT => reply.write_u32(
                self.events
                    .lock()
                    .unwrap()
                    .get(&ctx.uid)
                    .copied()
                    .unwrap_or(0),
            )?,
            _ => return Err(BinderError::UnknownTransaction(code)),
        }
        Ok(())
    }
}

fn run_service() {
    become_uid(SERVICE, &[]);
    let ps = ProcessState::open_shim(&socket_path()).expect("service process");
    ps.set_max_threads(4).expect("max threads");
    let hub = Hub {
        sink: Binder::new(Sink("bittube.test.ISink")),
        events: Mutex::new(Default::default()),
    };
    ps.become_context_manager(Arc::new(hub))
        .expect("context manager");
    ps.start_thread_pool().expect("pool");
    let ctl = control_in_child();
    send(&ctl, "ready");
    ps.join_thread_pool().expect("serve");
}

/// Sends oneway SINK_BLOCKs to the sink until refused; reports how many went, then holds them
/// until told.
fn run_txn_hog() {
    become_uid(HOG, &[]);
    let ctl = control_in_child();
    let ps = open();
    let hub = ps.context_object().expect("hub");
    // Asking for the sink is a call, a pending transaction too: with the uid's share used
    // up by another process, refused at once.
    let sent = match hub.transact(SINK, &Parcel::new()) {
        Ok(mut reply) => {
            let sink = ps
                .read_binder(&mut reply)
                .expect("read sink")
                .expect("a sink");
            (0..TRIES)
                .take_while(|_| sink.transact_oneway(SINK_BLOCK, &Parcel::new()).is_ok())
                .count()
        }
        Err(_) => 0,
    };
    send(&ctl, &sent.to_string());
    assert_eq!(recv(&ctl), "done");
}

/// Asks for fresh tokens until refused, keeping each; reports how many, then holds them.
fn run_ref_hog() {
    become_uid(REF_HOG, &[]);
    let ctl = control_in_child();
    let ps = open();
    let hub = ps.context_object().expect("hub");
    let mut held = Vec::new();
    while held.len() < TRIES {
        let Ok(mut reply) = hub.transact(GIVE, &Parcel::new()) else {
            break;
        };
        held.push(ps.read_binder(&mut reply).expect("token").expect("a token"));
    }
    send(&ctl, &held.len().to_string());
    assert_eq!(recv(&ctl), "done");
}

/// The well-behaved uid: round trips, a oneway to the sink, tokens of its own, and events
/// the service counts. Reports "rounds tokens events".
fn run_peer() {
    become_uid(PEER, &[]);
    let ctl = control_in_child();
    let ps = open();
    let hub = ps.context_object().expect("hub");
    let mut rounds = 0;
    for i in 0..ROUNDS as u64 {
        let mut p = Parcel::new();
        p.write_u64(i).unwrap();
        let mut r = hub.transact(ECHO, &p).expect("peer round trip");
        assert_eq!(r.read_u64().unwrap(), i);
        rounds += 1;
    }
    let sink = ps
        .read_binder(&mut hub.transact(SINK, &Parcel::new()).expect("sink"))
        .expect("read sink")
        .expect("a sink");
    sink.transact_oneway(SINK_BLOCK, &Parcel::new())
        .expect("the peer's own share of pending transactions");
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let mut reply = hub.transact(GIVE, &Parcel::new()).expect("peer token");
        tokens.push(ps.read_binder(&mut reply).unwrap().unwrap());
    }
    // Events in batches of 10, each waited for (counted by the service): the peer stays
    // inside its own share of pending transactions (a sync call may overtake oneway calls
    // still queued, so it asks until they are in; bounded only to turn a loss into a
    // failure).
    let mut events = 0;
    for batch in 1..=ROUNDS / 10 {
        for _ in 0..10 {
            hub.transact_oneway(EVENT, &Parcel::new()).expect("event");
        }
        let deadline = std::time::Instant::now() + LONG;
        loop {
            events = hub
                .transact(COUNT, &Parcel::new())
                .expect("count")
                .read_u32()
                .unwrap();
            if events >= batch * 10 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    send(&ctl, &format!("{rounds} {} {events}", tokens.len()));
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.state.per_uid.txns = UID_TXNS;
    l.state.per_uid.refs = UID_REFS;
    l
}

/// A shim in this process with a socket every uid may connect to.
fn start_shim(dir: &Path) -> Driver {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let access = SocketAccess {
        mode: 0o666,
        group: None,
    };
    Driver::start_shared(&dir.join("binder"), limits(), access).expect("shim")
}

/// The children, killed if the test fails half-way.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(role: &str, dir: &Path, children: &mut Children) -> OwnedFd {
    let socket = dir.join("binder");
    let (child, ctl) = spawn_child_env(TEST, role, &[("ISOLATION_SOCKET", socket.as_os_str())]);
    children.0.push(child);
    ctl
}

fn number(msg: &str) -> u64 {
    msg.parse()
        .unwrap_or_else(|_| panic!("not a count: {msg:?}"))
}

#[test]
fn an_over_limit_uid_leaves_another_uids_calls_and_events_whole() {
    match child_role().as_deref() {
        Some("service") => return run_service(),
        Some("txn-hog") => return run_txn_hog(),
        Some("ref-hog") => return run_ref_hog(),
        Some("peer") => return run_peer(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !is_root() {
        eprintln!("skipped: needs root to run processes of other uids");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bittube-isolation-{}", std::process::id()));
    let driver = start_shim(&dir);
    let mut children = Children(Vec::new());
    let service_ctl = spawn("service", &dir, &mut children);
    assert_eq!(recv(&service_ctl), "ready");

    // Uid A's first process fills the uid's share of pending transactions (the first SINK_BLOCK
    // is read, the rest wait behind it); its second is refused at once: the cap is a sum.
    let hog1 = spawn("txn-hog", &dir, &mut children);
    let first = number(&recv(&hog1));
    assert!(
        (UID_TXNS - 1..=UID_TXNS + 1).contains(&first),
        "first hog sent {first} (uid cap {UID_TXNS})"
    );
    let hog2 = spawn("txn-hog", &dir, &mut children);
    assert_eq!(number(&recv(&hog2)), 0, "second process of the same uid");
    // Another uid takes its share of refs.
    let hog3 = spawn("ref-hog", &dir, &mut children);
    let tokens = number(&recv(&hog3));
    assert!(
        tokens < UID_REFS,
        "ref hog holds {tokens} (uid cap {UID_REFS})"
    );

    let state = driver.state().expect("state");
    for uid in [HOG, REF_HOG] {
        assert!(
            state.contains(&format!("uid {uid} holds: ")),
            "no usage line for {uid}\n{state}"
        );
    }
    for cap in ["transactions", "refs"] {
        let line = state
            .lines()
            .find(|l| l.contains(&format!("cap {cap}:")) && l.contains("per uid"))
            .unwrap_or_else(|| panic!("no per-uid {cap} line\n{state}"));
        assert!(!line.ends_with("refused 0"), "{line}");
    }

    // Uid B, with both hogs at their caps and holding: everything whole.
    let peer = spawn("peer", &dir, &mut children);
    let report = recv(&peer);
    assert_eq!(
        report,
        format!("{ROUNDS} 4 {ROUNDS}"),
        "rounds tokens events"
    );

    for ctl in [hog1, hog2, hog3] {
        send(&ctl, "done");
    }
    // children[0] is the service (it serves until killed); the others end on their own.
    let mut rest: Vec<_> = children.0.drain(1..).collect();
    for c in rest.drain(..) {
        wait_success(c);
    }
    drop(children);
    drop(driver);
    let _ = std::fs::remove_dir_all(&dir);
}

const BUFFERS_TEST: &str = "a_uid_cannot_free_or_read_another_uids_buffer";
/// What the sender's call carries into the owner's buffer.
const PAYLOAD: u64 = 0x5ec2_e7da_7a00_0001;

/// Reads (blocking) until a BR_TRANSACTION: its transaction data.
fn read_transaction(
    dev: &bittube::binder_ipc::device::ShimDevice,
    write: &[u8],
) -> bittube::binder_ipc::uapi::BinderTransactionData {
    use bittube::binder_ipc::device::{Device, WriteRead};
    use bittube::binder_ipc::uapi::*;
    let mut write = write.to_vec();
    loop {
        let mut read = [0u8; 512];
        let mut wr = WriteRead::new(&write, &mut read);
        dev.write_read(&mut wr).expect("write_read");
        let mut r = CommandReader::new(wr.returned());
        while let Some((cmd, payload)) = r.next_command() {
            if cmd == BR_TRANSACTION {
                return bytemuck::pod_read_unaligned(
                    &payload[..std::mem::size_of::<BinderTransactionData>()],
                );
            }
        }
        write.clear();
    }
}

/// Sends `cmd` with `arg` on `dev`.
fn command(dev: &bittube::binder_ipc::device::ShimDevice, cmd: u32, arg: &u64) {
    use bittube::binder_ipc::device::{Device, WriteRead};
    use bittube::binder_ipc::uapi::*;
    let mut w = CommandWriter::new();
    w.cmd_with(cmd, arg);
    // Nothing to read: the write alone (a nonblocking read would say EAGAIN).
    let mut read = [0u8; 0];
    let mut wr = WriteRead::new(w.as_bytes(), &mut read);
    match dev.write_read(&mut wr) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN) => {}
        Err(e) => panic!("write_read: {e}"),
    }
}

/// Uid A, a raw binder process and the context manager: keeps the buffer of the call it
/// gets, reports its address, and after the thief had its go checks that the bytes are
/// still there, then frees it itself.
fn run_buffer_owner() {
    use bittube::binder_ipc::device::{Device, ShimDevice};
    use bittube::binder_ipc::uapi::*;
    become_uid(HOG, &[]);
    let ctl = control_in_child();
    let dev = ShimDevice::open(&socket_path()).expect("owner device");
    dev.set_context_mgr().expect("context manager");
    send(&ctl, "ready");
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let tr = read_transaction(&dev, w.as_bytes());
    let addr = tr.data_buffer;
    let bytes = dev.buffer_bytes(addr, 8).expect("own buffer").to_vec();
    assert_eq!(bytes, PAYLOAD.to_ne_bytes(), "the call's data");
    send(&ctl, &addr.to_string());
    assert_eq!(recv(&ctl), "check");
    let now = dev.buffer_bytes(addr, 8).expect("own buffer").to_vec();
    send(&ctl, if now == bytes { "intact" } else { "changed" });
    assert_eq!(recv(&ctl), "free");
    dev.set_nonblocking(true);
    command(&dev, BC_FREE_BUFFER, &addr);
    send(&ctl, "freed");
}

/// The call that lands in the owner's buffer (uid C, oneway so the owner never replies).
fn run_buffer_sender() {
    become_uid(SERVICE, &[]);
    let ps = open();
    let mut p = Parcel::new();
    p.write_u64(PAYLOAD).unwrap();
    ps.context_object()
        .expect("context object")
        .transact_oneway(ECHO, &p)
        .expect("oneway to the owner");
    let _ = ps.shutdown(std::time::Duration::from_secs(2));
}

/// Uid B with the owner's buffer address: frees it (BC_FREE_BUFFER), and looks at it
/// through its own device. Reports what it saw there.
fn run_buffer_thief() {
    use bittube::binder_ipc::device::{Device, ShimDevice};
    use bittube::binder_ipc::uapi::*;
    become_uid(PEER, &[]);
    let ctl = control_in_child();
    let addr: u64 = std::env::var("OWNER_BUFFER").unwrap().parse().unwrap();
    let dev = ShimDevice::open(&socket_path()).expect("thief device");
    dev.set_nonblocking(true);
    command(&dev, BC_FREE_BUFFER, &addr);
    command(&dev, BC_FREE_BUFFER, &addr);
    let seen = dev.buffer_bytes(addr, 8).map(|b| b.to_vec());
    let saw_payload = seen.as_deref() == Some(&PAYLOAD.to_ne_bytes()[..]);
    send(&ctl, if saw_payload { "read it" } else { "nothing" });
}

#[test]
fn a_uid_cannot_free_or_read_another_uids_buffer() {
    match child_role().as_deref() {
        Some("owner") => return run_buffer_owner(),
        Some("sender") => return run_buffer_sender(),
        Some("thief") => return run_buffer_thief(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !is_root() {
        eprintln!("skipped: needs root to run processes of other uids");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bittube-isolation-buf-{}", std::process::id()));
    let driver = start_shim(&dir);
    let socket = dir.join("binder");
    let env = [("ISOLATION_SOCKET", socket.as_os_str())];
    let mut children = Children(Vec::new());
    let (owner, owner_ctl) = spawn_child_env(BUFFERS_TEST, "owner", &env);
    children.0.push(owner);
    assert_eq!(recv(&owner_ctl), "ready");
    let (sender, _sender_ctl) = spawn_child_env(BUFFERS_TEST, "sender", &env);
    let addr = recv(&owner_ctl);
    wait_success(sender);
    let before = driver.state().expect("state");
    assert!(
        before.contains("delivered"),
        "the owner holds its buffer\n{before}"
    );

    let mut env = env.to_vec();
    env.push(("OWNER_BUFFER", addr.as_ref()));
    let (thief, thief_ctl) = spawn_child_env(BUFFERS_TEST, "thief", &env);
    assert_eq!(recv(&thief_ctl), "nothing", "uid B read uid A's buffer");
    wait_success(thief);
    let after = driver.state().expect("state");
    assert!(
        after.contains("delivered"),
        "uid B freed uid A's buffer\n{after}"
    );
    send(&owner_ctl, "check");
    assert_eq!(recv(&owner_ctl), "intact");
    // The owner's own free works: the buffer was there all along.
    send(&owner_ctl, "free");
    assert_eq!(recv(&owner_ctl), "freed");
    let freed = driver.state().expect("state");
    assert!(!freed.contains("delivered"), "{freed}");
    drop(children);
    drop(driver);
    let _ = std::fs::remove_dir_all(&dir);
}
