//! What goes wrong in the binder runtime, across real processes on the shim: a panicking
//! service method is one failed call, every error kind arrives intact, "no context manager"
//! and its relatives say what they are, and a pool learns that the shim died.
//!
//! Processes are this test binary re-executed in a role (`BITTUBE_TEST_ROLE`); they report
//! with `@@ key value` lines on stdout. The service and client tests run on the kernel driver
//! when the machine has one (`scripts/kernel-binder-test.sh runtime_errors`), else on a shim
//! in the host process; the context manager and shim-death tests always use a shim (the
//! latter the `bittube driver` binary, to kill it).

mod common;
use common::host::{serve_manager, BinderHost};
use common::report::{say, Proc};
use common::services::{Inert, TOKEN};

use bittube::binder_ipc::device::KernelDevice;
use bittube::binder_ipc::parcel::{AidlException, Parcel, EX_NULL_POINTER};
use bittube::binder_ipc::runtime::{
    Binder, BinderError, CallContext, PanicPolicy, ProcessState, Service,
};
use bittube::binder_ipc::service_manager::{default_policy, ServiceManagerClient};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "BITTUBE_TEST_ROLE";
const FAULTY: &str = "bittube.test.faulty";
/// A bound that only a hang exceeds.
const HANG: Duration = Duration::from_secs(20);

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Runs `role` of `test` as a child process; `socket` names the shim it must use (`None`: the
/// kernel driver, which the child opens itself).
fn spawn(test: &str, role: &str, socket: Option<&Path>) -> Proc {
    Proc::spawn(test, |c| {
        c.env(ROLE, role).env_remove(ENV_SOCKET);
        if let Some(s) = socket {
            c.env(ENV_SOCKET, s);
        }
    })
}

bittube::binder_interface! {
    /// A service whose methods fail on request.
    mod faulty("bittube.test.IFaulty") {
        /// n + 1.
        fn ok(n: i32) -> i32 = 1;
        /// Panics with a message naming `n`.
        fn boom(n: i32) -> i32 = 2;
        /// Fails with error kind number `kind` (see `error_kind`) carrying `message`.
        fn fail(kind: i32, message: String) -> i32 = 3;
        /// The service's pid.
        fn pid() -> i32 = 4;
        /// Panics the service's runtime caught so far.
        fn panics() -> u64 = 5;
    }
}

bittube::binder_interface! {
    /// Another interface, to call the faulty service with the wrong token.
    mod other("bittube.test.IOther") {
        /// Anything.
        fn ok(n: i32) -> i32 = 1;
    }
}

/// The error kinds a service can return, by number, and what the caller must see.
fn error_kind(kind: i32, m: &str) -> Option<BinderError> {
    let m = m.to_owned();
    Some(match kind {
        0 => BinderError::PermissionDenied(m),
        1 => BinderError::BadValue(m),
        2 => BinderError::NotFound(m),
        3 => BinderError::TimedOut(m),
        4 => BinderError::ServiceFailed(m),
        5 => BinderError::DeviceGone(m),
        6 => BinderError::Exception(AidlException::new(EX_NULL_POINTER, m)),
        7 => BinderError::Exception(AidlException::service_specific(42, m)),
        8 => BinderError::DeadObject,
        9 => BinderError::FailedTransaction,
        10 => BinderError::NoContextManager,
        11 => BinderError::ContextManagerExists,
        12 => BinderError::OwnContextManager,
        13 => BinderError::Device(nix::errno::Errno::EBUSY),
        14 => BinderError::Status(12345),
        // A parcel error as reading a missing argument makes it.
        15 => BinderError::Parcel(Parcel::new().read_i32().unwrap_err()),
        _ => return None,
    })
}

/// The variant's name, to compare kinds across processes.
fn kind_name(e: &BinderError) -> String {
    format!("{e:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

struct Faulty;

impl faulty::Interface for Faulty {
    fn ok(&self, _: &CallContext, n: i32) -> Result<i32, BinderError> {
        Ok(n + 1)
    }
    fn boom(&self, _: &CallContext, n: i32) -> Result<i32, BinderError> {
        panic!("boom number {n}");
    }
    fn fail(&self, _: &CallContext, kind: i32, message: String) -> Result<i32, BinderError> {
        Err(error_kind(kind, &message)
            .unwrap_or_else(|| BinderError::BadValue(format!("no error kind {kind}"))))
    }
    fn pid(&self, _: &CallContext) -> Result<i32, BinderError> {
        Ok(std::process::id() as i32)
    }
    fn panics(&self, call: &CallContext) -> Result<u64, BinderError> {
        Ok(call.process.panic_count())
    }
}

/// The binder process of a child: the shim its parent named, else the kernel driver.
fn open_process() -> ProcessState {
    match std::env::var_os(ENV_SOCKET) {
        Some(s) => ProcessState::open_shim(Path::new(&s)).expect("process on the shim"),
        None => ProcessState::open().expect("process"),
    }
}

/// Runs the service manager here (on the kernel driver when this machine has one, else on a
/// shim started here), the faulty service and `client` as child processes of this test; the
/// client must succeed. `after` gets the service process.
fn host_with_client(test: &str, after: impl FnOnce(&mut Proc)) -> HashMap<String, String> {
    let host = BinderHost::start();
    let socket = host.socket();
    let mut service = spawn(test, "service", socket);
    assert_eq!(service.wait_line("registered").as_deref(), Some("1"));
    let (ok, kv) = spawn(test, "client", socket).finish(Duration::from_secs(120));
    after(&mut service);
    service.kill();
    assert!(ok, "client of {test} failed: {kv:?}");
    host.shutdown();
    kv
}

/// The faulty service: registers, then serves until killed, with ONE looper thread (the
/// driver may start no more), so that a thread lost to a panic would hang the next call.
/// Panics are logged by the runtime; the default hook's output (100 of them) is kept out of
/// the test log.
fn run_faulty_service(policy: PanicPolicy) {
    std::panic::set_hook(Box::new(|_| {}));
    let ps = open_process();
    ps.set_panic_policy(policy);
    ps.set_max_threads(0).expect("max threads");
    ps.start_thread_pool().expect("pool");
    let sm = ServiceManagerClient::new(&ps).expect("sm");
    sm.add_service(FAULTY, &Binder::new(faulty::Server(Faulty)))
        .expect("add_service");
    say("registered", 1);
    std::thread::sleep(Duration::from_secs(120));
}

fn faulty_client() -> (ProcessState, faulty::Proxy) {
    let ps = open_process();
    let sm = ServiceManagerClient::new(&ps).expect("sm");
    let b = sm
        .wait_for_service(FAULTY, Duration::from_secs(30))
        .expect("the faulty service");
    let proxy = faulty::Proxy::new(b, &ps);
    (ps, proxy)
}

/// The service's pool and buffers, from `bittube state`: (looper threads, threads the driver
/// started, buffers). On the kernel driver (no socket) there is no such dump here: zeros.
fn pool_and_buffers(socket: Option<&Path>, pid: i32) -> (u32, u32, u32) {
    let Some(socket) = socket else {
        return (0, 0, 0);
    };
    let out = Command::new(env!("CARGO_BIN_EXE_bittube"))
        .args(["state", "--socket"])
        .arg(socket)
        .output()
        .expect("bittube state");
    let dump = String::from_utf8_lossy(&out.stdout);
    let mut lines = dump.lines();
    let head = format!("proc {pid} ");
    lines
        .find(|l| l.starts_with(&head))
        .expect("the service's proc");
    let area = lines.next().expect("the proc's area line");
    let number_before = |word: &str| -> u32 {
        let words: Vec<&str> = area
            .split([' ', ',', ';'])
            .filter(|w| !w.is_empty())
            .collect();
        let at = words.iter().position(|w| *w == word).expect(word);
        words[at - 1].parse().expect("a number")
    };
    let started = area
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("threads started");
    // Looper threads: `thread N: l XX ...` with the entered or registered bit set.
    let loopers = lines
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().strip_prefix("thread "))
        .filter_map(|l| l.split(" l ").nth(1)?.get(..2))
        .filter(|bits| u8::from_str_radix(bits, 16).is_ok_and(|b| b & 0x03 != 0))
        .count() as u32;
    (loopers, started, number_before("buffers"))
}

#[test]
fn a_panicking_method_is_one_failed_call() {
    const TEST: &str = "a_panicking_method_is_one_failed_call";
    match role().as_deref() {
        None => {
            let kv = host_with_client(TEST, |_| {});
            assert_eq!(kv["panics_ok"], "100", "{kv:?}");
            assert!(kv["panic_error"].contains("boom number 99"), "{kv:?}");
            assert!(kv["panic_error"].contains("bittube.test.IFaulty"), "{kv:?}");
            assert_eq!(kv["after"], "8", "{kv:?}");
            assert_eq!(kv["counted"], "100", "{kv:?}");
            assert_eq!(kv["baseline"], kv["back_to"], "{kv:?}");
            if KernelDevice::default_path().is_none() {
                // One looper, none started on request, no buffer held.
                assert_eq!(kv["baseline"], "(1, 0, 0)", "{kv:?}");
            }
        }
        Some("service") => run_faulty_service(PanicPolicy::ReplyError),
        Some("client") => {
            let socket = std::env::var_os(ENV_SOCKET).map(PathBuf::from);
            let socket = socket.as_deref();
            let (ps, f) = faulty_client();
            for i in 0..10 {
                assert_eq!(f.ok(i).expect("warm-up"), i + 1);
            }
            let pid = f.pid().expect("pid");
            let baseline = pool_and_buffers(socket, pid);
            say("baseline", format!("{baseline:?}"));
            let mut ok = 0;
            let mut last = String::new();
            for i in 0..100 {
                let t = Instant::now();
                match f.boom(i) {
                    Err(e @ BinderError::ServiceFailed(_)) => {
                        ok += 1;
                        last = e.to_string();
                    }
                    other => panic!("call {i}: expected ServiceFailed, got {other:?}"),
                }
                assert!(t.elapsed() < HANG, "panicking call {i} hung");
            }
            say("panics_ok", ok);
            say("panic_error", last);
            say("after", f.ok(7).expect("a normal call right after"));
            say("counted", f.panics().expect("panics"));
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut now = pool_and_buffers(socket, pid);
            while now != baseline && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                now = pool_and_buffers(socket, pid);
            }
            say("back_to", format!("{now:?}"));
            ps.shutdown(Duration::from_secs(10)).expect("shutdown");
        }
        Some(_) => {}
    }
}

#[test]
fn every_error_kind_arrives_intact() {
    const TEST: &str = "every_error_kind_arrives_intact";
    match role().as_deref() {
        None => {
            let kv = host_with_client(TEST, |_| {});
            assert_eq!(kv["kinds"], "16", "{kv:?}");
            assert!(
                kv["unknown"].starts_with("UnknownTransaction(999)"),
                "{kv:?}"
            );
            let wrong = &kv["wrong_descriptor"];
            assert!(
                wrong.contains("bittube.test.IOther") && wrong.contains("bittube.test.IFaulty"),
                "{kv:?}"
            );
        }
        Some("service") => run_faulty_service(PanicPolicy::ReplyError),
        Some("client") => {
            let (ps, f) = faulty_client();
            let mut kinds = 0;
            for k in 0.. {
                let message = format!("no tick source {}", 40 + k);
                let Some(sent) = error_kind(k, &message) else {
                    break;
                };
                let got = f.fail(k, message.clone()).expect_err("an error");
                assert_eq!(kind_name(&got), kind_name(&sent), "kind {k}: {got:?}");
                match &got {
                    // A parcel error arrives as EX_BAD_PARCELABLE with the service's text.
                    BinderError::Parcel(_) => {
                        assert!(got.to_string().contains(&sent.to_string()[8..]), "{got}")
                    }
                    _ => assert_eq!(got.to_string(), sent.to_string(), "kind {k}"),
                }
                kinds += 1;
            }
            say("kinds", kinds);
            let unknown = f
                .binder()
                .transact(999, &Parcel::new())
                .expect_err("unknown");
            say("unknown", format!("{unknown:?}"));
            let wrong = other::Proxy::new(f.binder().clone(), &ps).ok(1);
            say(
                "wrong_descriptor",
                format!("{:?}", wrong.expect_err("refused")),
            );
            ps.shutdown(Duration::from_secs(10)).expect("shutdown");
        }
        Some(_) => {}
    }
}

/// A context object for the manager tests.
const MANAGER: Inert = Inert("bittube.test.IManager");

#[test]
fn context_manager_errors_say_what_happened() {
    let driver = Driver::start().expect("driver");
    let socket = driver.socket_path();
    // `bittube service list` with no manager: a real process, its message.
    let out = Command::new(env!("CARGO_BIN_EXE_bittube"))
        .args(["service", "list", "--socket"])
        .arg(socket)
        .output()
        .expect("bittube service list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no context manager"), "{stderr}");

    let a = ProcessState::open_shim(socket).expect("a");
    let b = ProcessState::open_shim(socket).expect("b");
    let none = a.context_object().unwrap().ping().expect_err("no manager");
    assert!(matches!(none, BinderError::NoContextManager), "{none:?}");

    a.become_context_manager(Arc::new(MANAGER))
        .expect("a manages");
    a.start_thread_pool().expect("pool");
    let second = b
        .become_context_manager(Arc::new(MANAGER))
        .expect_err("a second manager");
    assert!(
        matches!(second, BinderError::ContextManagerExists),
        "{second:?}"
    );
    assert!(second.to_string().contains("already exists"), "{second}");

    let own = a.context_object().expect_err("own handle 0");
    assert!(matches!(own, BinderError::OwnContextManager), "{own:?}");
    assert!(own.to_string().contains("local API"), "{own}");

    a.shutdown(Duration::from_secs(10)).expect("shutdown a");
    b.shutdown(Duration::from_secs(10)).expect("shutdown b");
}

/// A private directory for a socket of the `bittube driver` binary.
fn private_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("bittube-rt-{}-{nanos}", std::process::id()))
}

#[test]
fn a_pool_learns_that_the_shim_died() {
    const TEST: &str = "a_pool_learns_that_the_shim_died";
    match role().as_deref() {
        None => {
            let socket = private_dir().join("binder");
            let mut shim = Command::new(env!("CARGO_BIN_EXE_bittube"))
                .args(["driver", "--socket"])
                .arg(&socket)
                .stdout(Stdio::piped())
                .spawn()
                .expect("bittube driver");
            let mut first = String::new();
            BufReader::new(shim.stdout.take().unwrap())
                .read_line(&mut first)
                .expect("the shim's socket line");
            let mut sm = spawn(TEST, "manager", Some(&*socket));
            assert_eq!(sm.wait_line("serving").as_deref(), Some("1"));
            let mut pool = spawn(TEST, "pool", Some(&*socket));
            assert_eq!(pool.wait_line("ready").as_deref(), Some("1"));
            shim.kill().expect("killing the shim");
            let _ = shim.wait();
            let (ok, kv) = pool.finish(HANG);
            sm.kill();
            let _ = std::fs::remove_dir_all(socket.parent().unwrap());
            assert!(ok, "the pool process: {kv:?}");
            assert!(kv["joined"].contains("device went away"), "{kv:?}");
            assert!(kv["callback"].contains("shim closed"), "{kv:?}");
            assert_eq!(kv["death"], "1", "{kv:?}");
        }
        Some("manager") => {
            let ps = open_process();
            let _sm = serve_manager(&ps, default_policy());
            say("serving", 1);
            std::thread::sleep(Duration::from_secs(60));
        }
        Some("pool") => {
            let ps = open_process();
            ps.start_thread_pool().expect("pool");
            let (tx, rx) = std::sync::mpsc::channel();
            let tx = std::sync::Mutex::new(tx);
            ps.on_device_gone(Arc::new(move |e: &BinderError| {
                let _ = tx.lock().unwrap().send(e.to_string());
            }));
            let died = Arc::new(AtomicBool::new(false));
            let d = died.clone();
            let manager = ps.context_object().unwrap();
            manager.ping().expect("the manager answers");
            manager
                .as_proxy()
                .unwrap()
                .link_to_death(Arc::new(move || d.store(true, Ordering::Release)))
                .expect("link");
            say("ready", 1);
            let joined = ps.join_thread_pool();
            say("joined", joined.expect_err("the device is gone"));
            let why = rx.recv_timeout(HANG).expect("the callback fired");
            say("callback", why);
            say("death", died.load(Ordering::Acquire) as u8);
            assert!(ps.device_gone().is_some());
            let after = manager.ping().expect_err("no device");
            assert!(matches!(after, BinderError::DeviceGone(_)), "{after:?}");
        }
        Some(_) => {}
    }
}

#[test]
fn the_abort_policy_aborts_the_service() {
    const TEST: &str = "the_abort_policy_aborts_the_service";
    match role().as_deref() {
        None => {
            let mut signal = None;
            let kv = host_with_client(TEST, |service| {
                let deadline = Instant::now() + HANG;
                while Instant::now() < deadline {
                    if let Some(status) = service.try_wait() {
                        signal = std::os::unix::process::ExitStatusExt::signal(&status);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            assert_eq!(kv["boom"], "DeadObject", "{kv:?}");
            assert_eq!(signal, Some(libc::SIGABRT), "the service aborted");
        }
        Some("service") => run_faulty_service(PanicPolicy::Abort),
        Some("client") => {
            let (ps, f) = faulty_client();
            assert_eq!(f.ok(1).expect("warm-up"), 2);
            say("boom", format!("{:?}", f.boom(1).expect_err("a death")));
            ps.shutdown(Duration::from_secs(10)).expect("shutdown");
        }
        Some(_) => {}
    }
}

#[test]
fn process_state_debug_is_one_short_line() {
    let (ps, _driver) = ProcessState::embedded().expect("embedded");
    assert_eq!(ps.panic_policy(), PanicPolicy::ReplyError, "the default");
    let debug = format!("{ps:?}");
    assert!(!debug.contains('\n') && debug.len() < 200, "{debug}");
    ps.shutdown(Duration::from_secs(10)).expect("shutdown");
}

const MIRROR: &str = "bittube.test.mirror";
/// Mirror codes: reply the binder the call carries; reply a new binder; fail (called
/// oneway); reply the service's count of oneway errors.
const RETURN_IT: u32 = 1;
const GIVE: u32 = 2;
const FAIL: u32 = 3;
const ONEWAY_ERRORS: u32 = 4;

/// Returns what it is given and keeps nothing: the binder it read (a proxy, for a binder of
/// another process) is dropped when the method returns, before the reply is written.
struct Mirror;

impl Service for Mirror {
    fn descriptor(&self) -> &str {
        "bittube.test.IMirror"
    }
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        match code {
            RETURN_IT => {
                let b = call
                    .process
                    .read_binder(data)?
                    .ok_or(BinderError::BadValue("a binder, please".into()))?;
                call.process.write_binder(reply, &b)
            }
            GIVE => call.process.write_binder(reply, &Binder::new(TOKEN)),
            FAIL => Err(BinderError::BadValue(
                "this oneway call always fails".into(),
            )),
            ONEWAY_ERRORS => Ok(reply.write_u64(call.process.pool_stats().oneway_errors)?),
            _ => Err(BinderError::UnknownTransaction(code)),
        }
    }
}

/// Calls `RETURN_IT` with `b` and reads the binder that comes back.
fn mirrored(ps: &ProcessState, mirror: &Binder, b: Binder) -> Result<Binder, BinderError> {
    let mut data = Parcel::new();
    ps.write_binder(&mut data, &b)?;
    // The parcel holds the binder: dropping ours must not release it before the call.
    drop(b);
    let mut reply = mirror.transact(RETURN_IT, &data)?;
    ps.read_binder(&mut reply)?
        .ok_or(BinderError::BadValue("null".into()))
}

#[test]
fn parcels_hold_their_binders_and_oneway_errors_are_counted() {
    const TEST: &str = "parcels_hold_their_binders_and_oneway_errors_are_counted";
    match role().as_deref() {
        None => {
            let kv = host_with_client(TEST, |_| {});
            assert_eq!(kv["own_binder_back"], "20", "{kv:?}");
            assert_eq!(kv["dropped_proxy_back"], "20", "{kv:?}");
            assert_eq!(kv["oneway_errors"], "5", "{kv:?}");
        }
        Some("service") => {
            let ps = open_process();
            ps.set_max_threads(0).expect("max threads");
            ps.start_thread_pool().expect("pool");
            let sm = ServiceManagerClient::new(&ps).expect("sm");
            sm.add_service(MIRROR, &Binder::new(Mirror))
                .expect("add_service");
            say("registered", 1);
            std::thread::sleep(Duration::from_secs(120));
        }
        Some("client") => {
            let ps = open_process();
            ps.start_thread_pool().expect("pool");
            let sm = ServiceManagerClient::new(&ps).expect("sm");
            let mirror = sm
                .wait_for_service(MIRROR, Duration::from_secs(30))
                .expect("the mirror");
            // Our own binder: the service holds a proxy only while the call runs.
            let token = Binder::new(TOKEN);
            let mut back = 0;
            for _ in 0..20 {
                let b = mirrored(&ps, &mirror, token.clone())
                    .unwrap_or_else(|e| panic!("own binder back, call {back}: {e:?}"));
                assert!(b.same_as(&token), "{b:?}");
                back += 1;
            }
            say("own_binder_back", back);
            // A proxy whose only holder is the parcel once we drop it (an idle thread writes
            // a dropped proxy's release at once).
            let mut back = 0;
            for _ in 0..20 {
                let mut r = mirror.transact(GIVE, &Parcel::new()).expect("give");
                let fresh = ps.read_binder(&mut r).expect("read").expect("a binder");
                drop(r);
                let b = mirrored(&ps, &mirror, fresh).expect("dropped proxy back");
                assert_eq!(b.descriptor().expect("descriptor"), "bittube.test.IToken");
                back += 1;
            }
            say("dropped_proxy_back", back);
            for _ in 0..5 {
                mirror
                    .transact_oneway(FAIL, &Parcel::new())
                    .expect("oneway sent");
            }
            let deadline = Instant::now() + HANG;
            let count = loop {
                let mut r = mirror
                    .transact(ONEWAY_ERRORS, &Parcel::new())
                    .expect("count");
                let n = r.read_u64().expect("u64");
                if n >= 5 || Instant::now() > deadline {
                    break n;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            say("oneway_errors", count);
            ps.shutdown(Duration::from_secs(10)).expect("shutdown");
        }
        Some(_) => {}
    }
}
