//! One daemon for the whole machine, used by processes of different uids (issue 12).
//!
//! The daemon is the real `bittube` binary (`driver --policy ... --mode 660 --group G`) with
//! its socket in a temp dir. Child processes are this test binary run again; each drops to
//! its uid (setgroups, setresgid, setresuid) before it opens the device. Needs root: skipped
//! with a message otherwise. Nothing is timed: waits are bounded only to turn a hang into a
//! failure.

mod common;
use common::users::{become_uid, is_root, recv, send};
use common::*;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bittube::binder_ipc::parcel::{Parcel, EX_SECURITY};
use bittube::binder_ipc::policy::UidSet;
use bittube::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, Service, FIRST_CALL_TRANSACTION,
};
use bittube::binder_ipc::service_manager::ServiceManagerClient;
use bittube::binder_ipc::shim::ENV_SOCKET;
use bittube::input_demo::binder::{
    InputClient, InputPermissions, InputService, WindowTokenService, SERVICE_NAME as INPUT,
};
use bittube::input_demo::{
    now_nanos, Bounds, ConsumedEvent, DispatcherConfig, DispatcherThread, InputConsumer, KeyEvent,
    KEY_ACTION_DOWN, SOURCE_KEYBOARD,
};
use bittube::sensor_demo::binder::{sensor_server_with, SensorPermissions, CAPPED_PERIOD};
use bittube::sensor_demo::sensors::{ACCELEROMETER, ACCELEROMETER_WAKE_UP};
use bittube::sensor_demo::{SensorEvent, SensorEventQueue, SensorManager, SensorService};
use bytemuck::Zeroable;

const TEST: &str = "apps_and_a_service_of_three_uids_share_one_daemon";
/// The uids: two apps and a service; an outsider not in the socket's group.
const APP_A: u32 = 10001;
const APP_B: u32 = 10002;
const SERVICE: u32 = 10003;
const OUTSIDER: u32 = 10004;
/// The socket's group: the users allowed in.
const GROUP: u32 = 10100;
/// The daemon's per-uid binder process cap (app A goes past it).
const PROCS_PER_UID: usize = 4;
const POLICY: &str = "\
# rule        action  names        uids
reserved-b    add     vendor.b.*   10002
apps          add     app.*        10001-10003
services      add     bittube.*    10003
sensors       add     sensorservice 10003
";
/// The echo service: replies with the caller's pid and uid as the driver reported them.
const ECHO: &str = "bittube.echo";
const WHO: u32 = FIRST_CALL_TRANSACTION;
/// Events app B injects to itself while app A is refused again and again.
const KEYS: i32 = 200;
const SCREEN: Bounds = Bounds {
    left: 0.0,
    top: 0.0,
    right: 100.0,
    bottom: 100.0,
};

/// Whether a control message is waiting (without taking it).
fn control_pending(ctl: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(ctl.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).expect("poll") > 0
}

fn socket_path() -> PathBuf {
    PathBuf::from(std::env::var_os(ENV_SOCKET).expect("BITTUBE_BINDER"))
}

fn open() -> ProcessState {
    let ps = ProcessState::open_shim(&socket_path()).expect("open the shared shim");
    ps.start_thread_pool().expect("thread pool");
    ps
}

/// The service of [`ECHO`].
struct Echo;

impl Service for Echo {
    fn descriptor(&self) -> &str {
        "bittube.test.IEcho"
    }

    fn on_transact(
        &self,
        code: u32,
        _data: &mut Parcel,
        reply: &mut Parcel,
        ctx: &CallContext,
    ) -> Result<(), BinderError> {
        if code != WHO {
            return Err(BinderError::UnknownTransaction(code));
        }
        reply.write_i32(ctx.pid)?;
        reply.write_u32(ctx.uid)?;
        Ok(())
    }
}

/// Asks the echo service who this caller is.
fn who_am_i(echo: &Binder) -> (i32, u32) {
    let mut reply = echo.transact(WHO, &Parcel::new()).expect("echo");
    (reply.read_i32().unwrap(), reply.read_u32().unwrap())
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

fn key(code: i32) -> KeyEvent {
    let t = now_nanos();
    KeyEvent {
        device_id: 1,
        source: SOURCE_KEYBOARD,
        display_id: 0,
        action: KEY_ACTION_DOWN,
        flags: 0,
        key_code: code,
        scan_code: 0,
        meta_state: 0,
        repeat_count: 0,
        policy_flags: 0,
        down_time: t,
        event_time: t,
    }
}

/// Reads `n` accelerometer events.
fn accelerometer_events(queue: &mut SensorEventQueue, n: usize) -> Vec<SensorEvent> {
    let mut got = Vec::new();
    let mut buf = [SensorEvent::zeroed(); 64];
    while got.len() < n {
        let k = queue.read_timeout(&mut buf, LONG).expect("sensor events");
        got.extend(buf[..k].iter().filter(|e| e.sensor == ACCELEROMETER));
    }
    got
}

fn min_spacing(events: &[SensorEvent]) -> i64 {
    events
        .windows(2)
        .map(|w| w[1].timestamp - w[0].timestamp)
        .min()
        .expect("two events")
}

/// The service process (uid 10003): echo, input (inject permission: app B only) and
/// sensors (high rate, wake-up and direct: app B only).
fn run_service() {
    become_uid(SERVICE, &[GROUP]);
    let control = control_in_child();
    let ps = open();
    let sm = ServiceManagerClient::new(&ps).unwrap();
    sm.add_service(ECHO, &Binder::new(Echo)).unwrap();
    let dispatcher =
        std::sync::Arc::new(DispatcherThread::start(DispatcherConfig::default()).unwrap());
    let only_b = UidSet::none().with(APP_B);
    let inject = InputPermissions {
        inject: only_b.clone(),
    };
    let input = InputService::with_permissions(dispatcher, inject);
    sm.add_service(INPUT, &Binder::Local(input.clone()))
        .unwrap();
    let perms = SensorPermissions {
        high_rate: only_b.clone(),
        wake_up: only_b.clone(),
        direct: only_b,
    };
    let sensors = SensorService::start().unwrap();
    let server = sensor_server_with(sensors.clone(), perms);
    sm.add_service(bittube::sensor_demo::binder::SERVICE_NAME, &server)
        .unwrap();
    send(&control, "ready");
    assert_eq!(recv(&control), "stop");
    input.clear();
    drop(server);
    let _ = ps.shutdown(Duration::from_secs(2));
}

/// App A (uid 10001): holds no permission. Checks its refusals, then is refused again and
/// again (and goes past its binder process cap) until told to stop.
fn run_app_a() {
    become_uid(APP_A, &[GROUP]);
    let control = control_in_child();
    let ps = open();
    let sm = ServiceManagerClient::new(&ps).unwrap();
    let echo = sm.wait_for_service(ECHO, LONG).unwrap();
    assert_eq!(who_am_i(&echo), (own_pid(), APP_A), "CallContext of app A");

    // A name reserved for uid B: a SecurityException naming the rule.
    let mine = Binder::new(WindowTokenService);
    // (The client turns the manager's EX_SECURITY into PermissionDenied, as libbinder's
    // status does.)
    match sm.add_service("vendor.b.camera", &mine) {
        Err(BinderError::PermissionDenied(why)) => {
            assert!(why.contains("rule 'reserved-b'"), "{why}")
        }
        Err(BinderError::Exception(e)) if e.code == EX_SECURITY => {
            assert!(e.message.contains("rule 'reserved-b'"), "{e}")
        }
        other => panic!("uid A registered B's name: {other:?}"),
    }
    sm.add_service("app.a", &mine)
        .expect("app.* is open to apps");

    // Input: no inject permission, and B's window is not A's to unregister.
    let input = InputClient::new(&ps, sm.wait_for_service(INPUT, LONG).unwrap());
    match input.inject_key(&key(1)) {
        Err(BinderError::PermissionDenied(why)) => assert!(why.contains("inject"), "{why}"),
        other => panic!("uid A injected: {other:?}"),
    }
    assert!(matches!(
        input.set_focus(None),
        Err(BinderError::PermissionDenied(_))
    ));
    let b_window = sm.wait_for_service("app.b.window", LONG).unwrap();
    match input.unregister_window(&b_window) {
        Err(BinderError::PermissionDenied(why)) => assert!(why.contains("owner"), "{why}"),
        other => panic!("uid A unregistered B's window: {other:?}"),
    }

    // Sensors: 1 kHz asked, at most 200 Hz delivered; wake-up and direct refused.
    let mgr = SensorManager::connect(&ps, LONG).unwrap();
    let (conn, mut queue) = mgr.create_event_queue().unwrap();
    conn.enable(ACCELEROMETER, Duration::from_millis(1), Duration::ZERO)
        .unwrap();
    let events = accelerometer_events(&mut queue, 60);
    let spacing = min_spacing(&events);
    // No two events closer than 5 ms: at most 200 Hz.
    let floor = CAPPED_PERIOD.as_nanos() as i64;
    assert!(spacing >= floor, "app A got events {spacing} ns apart");
    assert!(matches!(
        conn.enable(
            ACCELEROMETER_WAKE_UP,
            Duration::from_millis(20),
            Duration::ZERO
        ),
        Err(BinderError::PermissionDenied(_))
    ));
    assert!(matches!(
        mgr.create_direct_connection(16),
        Err(BinderError::PermissionDenied(_))
    ));
    send(&control, &format!("solo-done {spacing}"));

    assert_eq!(recv(&control), "hammer");
    hammer(&ps, &sm, &input, &control);
}

/// App A's disturbance: past its process cap, then refused calls until told to stop.
fn hammer(ps: &ProcessState, sm: &ServiceManagerClient, input: &InputClient, control: &OwnedFd) {
    // Its own first process counts: the cap refuses a later one.
    let mut extra = Vec::new();
    let refused = loop {
        match ProcessState::open_shim(&socket_path()) {
            Ok(p) => extra.push(p),
            Err(e) => break e,
        }
        assert!(extra.len() < PROCS_PER_UID, "the per-uid process cap held");
    };
    assert!(
        refused.to_string().contains("Too many open files"),
        "{refused}"
    );
    let mine = Binder::new(WindowTokenService);
    let mut refusals = 0u64;
    loop {
        assert!(sm.add_service("vendor.b.x", &mine).is_err());
        assert!(input.inject_key(&key(1)).is_err());
        refusals += 2;
        if refusals == 2 {
            send(control, "hammering");
        }
        if control_pending(control) {
            break;
        }
    }
    assert_eq!(recv(control), "stop");
    drop(extra);
    let _ = ps;
    send(control, &format!("refusals {refusals}"));
}

/// App B (uid 10002): holds the permissions. Registers B's name, a window it publishes as
/// "app.b.window", then counts its round trips and its injected events while A is refused.
fn run_app_b() {
    become_uid(APP_B, &[GROUP]);
    let control = control_in_child();
    let ps = open();
    let sm = ServiceManagerClient::new(&ps).unwrap();
    let echo = sm.wait_for_service(ECHO, LONG).unwrap();
    assert_eq!(who_am_i(&echo), (own_pid(), APP_B), "CallContext of app B");
    let service = Binder::new(WindowTokenService);
    sm.add_service("vendor.b.camera", &service)
        .expect("the name reserved for B");

    let input = InputClient::new(&ps, sm.wait_for_service(INPUT, LONG).unwrap());
    let token = Binder::new(WindowTokenService);
    let channel = input.register_window("b", SCREEN, &token).unwrap();
    sm.add_service("app.b.window", &token).unwrap();
    input.set_focus(Some(&token)).expect("B may focus");
    let mut consumer = InputConsumer::new(channel);

    // High rate: the 1 kHz asked for is granted.
    let mgr = SensorManager::connect(&ps, LONG).unwrap();
    let (conn, mut queue) = mgr.create_event_queue().unwrap();
    conn.enable(ACCELEROMETER, Duration::from_millis(1), Duration::ZERO)
        .unwrap();
    let spacing = min_spacing(&accelerometer_events(&mut queue, 200));
    assert!(
        spacing < CAPPED_PERIOD.as_nanos() as i64 / 2,
        "app B (high rate) got events at least {spacing} ns apart"
    );
    // Left running (unread: B's share is dropped and counted by the service) so that A's
    // capped stream is cut from a 1 kHz HAL.
    send(&control, "solo-done");

    assert_eq!(recv(&control), "go");
    let mut trips = 0;
    for i in 1..=KEYS {
        assert_eq!(who_am_i(&echo), (own_pid(), APP_B));
        trips += 1;
        input.inject_key(&key(i)).expect("B injects");
    }
    let keys = receive_keys(&mut consumer);
    send(&control, &format!("done trips {trips} keys {keys}"));
    assert_eq!(recv(&control), "exit");
    drop((conn, queue));
    drop(service);
    let _ = ps.shutdown(Duration::from_secs(2));
}

/// Consumes and finishes B's events until [`KEYS`] keys came, in order; their count.
fn receive_keys(consumer: &mut InputConsumer) -> i32 {
    let deadline = Instant::now() + LONG;
    let mut last = 0;
    while last < KEYS {
        assert!(Instant::now() < deadline, "B's keys did not all arrive");
        consumer
            .channel()
            .wait_readable(Duration::from_millis(100))
            .unwrap();
        for event in consumer.consume(None).expect("consume") {
            if let ConsumedEvent::Key { event: k, .. } = &event {
                assert_eq!(k.key_code, last + 1, "a key was lost or reordered");
                last = k.key_code;
            }
            consumer.finish(&event, true).unwrap();
        }
        consumer.flush_finished().unwrap();
    }
    last
}

/// The daemon: the real binary, its socket shared with [`GROUP`], the policy above.
struct Daemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts a daemon whose temp dir is named after `tag` (tests run in parallel).
    fn start(tag: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("bittube-mu-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(0), Some(GROUP)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let (socket, log, policy) = (dir.join("binder"), dir.join("log"), dir.join("policy"));
        std::fs::write(&policy, POLICY).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bittube"))
            .arg("driver")
            .arg("--socket")
            .arg(&socket)
            .args(["--mode", "660", "--group", &GROUP.to_string()])
            .arg("--policy")
            .arg(&policy)
            .args(["--max-procs-per-uid", &PROCS_PER_UID.to_string()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start bittube driver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            socket.to_str().unwrap(),
            "the daemon's ready line"
        );
        Daemon {
            child,
            dir,
            socket,
            log,
        }
    }

    fn env(&self) -> [(&str, &std::ffi::OsStr); 1] {
        [(ENV_SOCKET, self.socket.as_os_str())]
    }

    /// `bittube ARGS --socket S` as `uid` (no supplementary groups): its output.
    fn cli(&self, uid: u32, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_bittube"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn expect_prefix<'a>(msg: &'a str, prefix: &str) -> &'a str {
    msg.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected '{prefix}...', got '{msg}'"))
}

#[test]
fn apps_and_a_service_of_three_uids_share_one_daemon() {
    match child_role().as_deref() {
        Some("service") => return run_service(),
        Some("app-a") => return run_app_a(),
        Some("app-b") => return run_app_b(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !is_root() {
        eprintln!("skipped: needs root to run processes of other uids");
        return;
    }
    let daemon = Daemon::start("apps");
    let env = daemon.env();
    let (service, svc_ctl) = spawn_child_env(TEST, "service", &env);
    assert_eq!(recv(&svc_ctl), "ready");
    let (app_b, b_ctl) = spawn_child_env(TEST, "app-b", &env);
    assert_eq!(recv(&b_ctl), "solo-done");
    let (app_a, a_ctl) = spawn_child_env(TEST, "app-a", &env);
    let spacing: i64 = expect_prefix(&recv(&a_ctl), "solo-done ").parse().unwrap();
    assert!(
        spacing >= 5_000_000,
        "A's events {spacing} ns apart: over 200 Hz"
    );

    // A is refused and over its cap while B works: B loses nothing.
    send(&a_ctl, "hammer");
    assert_eq!(recv(&a_ctl), "hammering");
    send(&b_ctl, "go");
    let done = recv(&b_ctl);
    assert_eq!(done, format!("done trips {KEYS} keys {KEYS}"));
    send(&a_ctl, "stop");
    let refusals: u64 = expect_prefix(&recv(&a_ctl), "refusals ").parse().unwrap();
    assert!(refusals >= 2);
    wait_success(app_a);

    // Owners: B's name was added by B's process, of uid 10002.
    let out = daemon.cli(0, &["service", "list", "--owners"]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{list}");
    let camera = list
        .lines()
        .find(|l| l.starts_with("vendor.b.camera\t"))
        .unwrap_or_else(|| panic!("no vendor.b.camera in\n{list}"));
    assert!(camera.ends_with(&format!("uid {APP_B}")), "{camera}");
    send(&b_ctl, "exit");
    wait_success(app_b);
    send(&svc_ctl, "stop");
    wait_success(service);

    // Refusals are logged, naming the rule.
    let log = daemon.log();
    assert!(log.contains("rule 'reserved-b'"), "{log}");
    assert!(log.contains("WARN"), "{log}");
}

#[test]
fn a_uid_outside_the_sockets_group_cannot_connect() {
    if !is_root() {
        eprintln!("skipped: needs root to run processes of other uids");
        return;
    }
    let daemon = Daemon::start("outsider");
    let out = daemon.cli(OUTSIDER, &["service", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains(&format!("group {GROUP}")), "{err}");
    assert!(err.contains(&format!("uid {OUTSIDER}")), "{err}");
    // A member of the group gets in (root here: the manager answers).
    let out = daemon.cli(0, &["service", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("manager"));
}

#[test]
fn a_shared_socket_in_a_directory_others_may_write_is_refused_with_the_reason() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bittube-multiuser-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bittube"))
        .arg("driver")
        .arg("--socket")
        .arg(dir.join("binder"))
        .args(["--mode", "666"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("may be written by others"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!Path::new(&dir).exists());
}

const IDENTITY_TEST: &str = "thread_tokens_and_handles_hold_across_uids";

/// Opens a binder process over the raw wire protocol: its token.
fn raw_open_proc(socket: &Path) -> (std::os::unix::net::UnixStream, u64) {
    use bittube::binder_ipc::protocol::wire::{self, OpenProc, OpenProcOk};
    let conn = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    let req = OpenProc {
        version: wire::WIRE_VERSION,
        reserved: 0,
        area_size: 1 << 17,
    };
    wire::send_frame(
        conn.as_fd(),
        wire::K_OPEN_PROC,
        &[bytemuck::bytes_of(&req)],
        &[],
    )
    .unwrap();
    let (hdr, body, _area) = wire::recv_frame(conn.as_fd()).unwrap();
    let ok: OpenProcOk = wire::body_as(&hdr, &body, wire::K_OPEN_PROC_OK).unwrap();
    assert_eq!(ok.errno, 0, "open proc");
    (conn, ok.token)
}

/// A thread connection for `token`: the shim's errno (0: joined).
fn raw_open_thread(socket: &Path, token: u64) -> i32 {
    use bittube::binder_ipc::protocol::wire::{self, ResultBody};
    let conn = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    wire::send_frame(
        conn.as_fd(),
        wire::K_OPEN_THREAD,
        &[&token.to_ne_bytes()],
        &[],
    )
    .unwrap();
    let (hdr, body, _) = wire::recv_frame(conn.as_fd()).unwrap();
    let res: ResultBody = wire::body_as(&hdr, &body, wire::K_RESULT).unwrap();
    res.errno
}

/// Uid A's process: opens a binder process, joins it with a thread of its own, hands the
/// token out and keeps the process until told.
fn run_token_owner() {
    become_uid(APP_A, &[GROUP]);
    let control = control_in_child();
    let (_proc_conn, token) = raw_open_proc(&socket_path());
    assert_eq!(
        raw_open_thread(&socket_path(), token),
        0,
        "own thread joins"
    );
    send(&control, &token.to_string());
    assert_eq!(recv(&control), "done");
}

/// Another process (uid from `THIEF_UID`) with the owner's token: refused. Then, with a
/// binder process of its own, every handle it was not given fails.
fn run_thief() {
    let uid: u32 = std::env::var("THIEF_UID").unwrap().parse().unwrap();
    become_uid(uid, &[GROUP]);
    let token: u64 = std::env::var("TOKEN").unwrap().parse().unwrap();
    assert_eq!(
        raw_open_thread(&socket_path(), token),
        libc::EPERM,
        "uid {uid} joined another process with its token"
    );
    let ps = open();
    for handle in 1..=32u32 {
        let obj = bittube::binder_ipc::parcel::BinderObject::handle(handle);
        if let Ok(b) = ps.unflatten(obj) {
            assert!(
                b.transact(WHO, &Parcel::new()).is_err(),
                "uid {uid} reached handle {handle} it was never given"
            );
        }
    }
    let _ = ps.shutdown(Duration::from_secs(2));
}

#[test]
fn thread_tokens_and_handles_hold_across_uids() {
    match child_role().as_deref() {
        Some("token-owner") => return run_token_owner(),
        Some("thief") => return run_thief(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if !is_root() {
        eprintln!("skipped: needs root to run processes of other uids");
        return;
    }
    let daemon = Daemon::start("identity");
    let env = daemon.env();
    let (owner, owner_ctl) = spawn_child_env(IDENTITY_TEST, "token-owner", &env);
    let token = recv(&owner_ctl);
    for uid in [APP_B, APP_A] {
        // Uid B, and uid A from another pid: neither may join A's process.
        let uid = uid.to_string();
        let mut env = env.to_vec();
        env.push(("TOKEN", token.as_ref()));
        env.push(("THIEF_UID", uid.as_ref()));
        let (thief, _ctl) = spawn_child_env(IDENTITY_TEST, "thief", &env);
        wait_success(thief);
    }
    send(&owner_ctl, "done");
    wait_success(owner);
    let state = daemon.cli(0, &["state"]);
    assert!(state.status.success());
}
