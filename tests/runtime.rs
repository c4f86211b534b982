//! The binder runtime and service manager across real processes, on the embedded shim.
//!
//! Every test starts a *host* process (this test binary re-executed) that runs the driver
//! shim and the service manager, and the host starts the *service* and *client* processes
//! the scenario needs. Processes report with `@@ key value` lines on stdout; every process
//! checks that its `/proc/self/fd` count is back where it started.
//!
//! (The context manager cannot be called from its own OS process, so the host never calls
//! it; services and clients are other processes, as on Android.)

mod common;
use common::host::serve_manager;
use common::report::{say, Proc};
use common::services::TOKEN;

use bittube::binder_ipc::device::KernelDevice;
use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use bittube::binder_ipc::service_manager::{
    default_policy, AccessPolicy, ServiceManager, ServiceManagerClient,
};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::binder_ipc::tube::{read_tube, write_tube, EventReceiver, EventSender};
use bittube::bittube::{BitTube, TubeError};
use bytemuck::{Pod, Zeroable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROLE: &str = "BITTUBE_TEST_ROLE";
const ARG: &str = "BITTUBE_TEST_ARG";
const SERVICE: &str = "bittube.test.events";
const OPEN_CHANNEL: u32 = 1;
const ECHO: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Event {
    seq: u64,
    payload: [u32; 24],
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs `role` of test `test` as a child process of this binary.
fn spawn(test: &str, role: &str, arg: &str, socket: Option<&std::path::Path>) -> Proc {
    // `socket` is None on the kernel driver: children open it themselves.
    Proc::spawn(test, |c| {
        c.env(ROLE, role).env(ARG, arg);
        if let Some(s) = socket {
            c.env(ENV_SOCKET, s);
        }
    })
}

/// Waits until the service manager has dropped `name` (its process died).
fn wait_gone(sm: &ServiceManager, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sm.lookup(name).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sm.lookup(name).is_none(),
        "the dead service {name} left the list"
    );
}

fn role() -> Option<(String, String)> {
    let r = std::env::var(ROLE).ok()?;
    Some((r, std::env::var(ARG).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// The host: driver + service manager

/// Runs the service manager (on the kernel driver when this machine has one, else on a
/// driver shim started here), then `scenario` (which starts the other processes); then shuts
/// the service manager down and checks that the host's fds (and the shim's state) come back
/// to where they were before it opened binder.
fn host(
    policy: AccessPolicy,
    scenario: impl FnOnce(Option<&std::path::Path>, &Arc<ServiceManager>),
) {
    let driver = match KernelDevice::default_path() {
        Some(_) => None,
        None => Some(Driver::start().expect("driver")),
    };
    let socket = driver.as_ref().map(|d| d.socket_path().to_owned());
    let state = || driver.as_ref().map(|d| d.state().expect("state"));
    let before = fd_count();
    {
        let ps = match &socket {
            Some(s) => ProcessState::open_shim(s).expect("process"),
            None => ProcessState::open().expect("kernel binder"),
        };
        let sm = serve_manager(&ps, policy);
        scenario(socket.as_deref(), &sm);
        // Death notifications and connection teardown settle asynchronously.
        let settled = |s: &Option<String>| {
            s.as_ref()
                .is_none_or(|s| s.matches("\nproc ").count() == 1 && !s.contains("buffer at"))
        };
        let last = wait_for(state, settled);
        assert!(
            settled(&last),
            "only the service manager is left, with no buffers:\n{last:?}"
        );
        ps.shutdown(Duration::from_secs(10)).expect("shutdown");
    }
    let gone = |s: &Option<String>| s.as_ref().is_none_or(|s| !s.contains("\nproc "));
    let last = wait_for(state, gone);
    assert!(
        gone(&last),
        "the service manager's binder process is gone:\n{last:?}"
    );
    let fds = wait_for(fd_count, |n| *n == before);
    assert_eq!(
        fds, before,
        "the host's fds (driver and service manager) are back"
    );
    say("host_ok", 1);
}

/// Polls `get` until `done` holds (up to 10 s); returns the last value.
fn wait_for<T>(get: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get();
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_host_test(test: &str) {
    let child = spawn(test, "host", "", None);
    let (ok, kv) = child.finish(Duration::from_secs(120));
    assert!(
        ok && kv.contains_key("host_ok"),
        "host of {test} failed: {kv:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The service and the client

/// The test service: ECHO answers the i32 it gets plus one; OPEN_CHANNEL(count, batch,
/// token binder) answers with a tube end and streams `count` events on it, counting acks.
struct EventService {
    acked: Arc<AtomicU64>,
    clients_died: Arc<AtomicU64>,
    streams: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Clients' tokens: a death recipient fires only while its proxy lives.
    tokens: Mutex<Vec<Binder>>,
}

impl EventService {
    fn new() -> Arc<EventService> {
        Arc::new(EventService {
            acked: Arc::new(AtomicU64::new(0)),
            clients_died: Arc::new(AtomicU64::new(0)),
            streams: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
        })
    }
}

impl Service for EventService {
    fn descriptor(&self) -> &str {
        "bittube.test.IEvents"
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        match code {
            ECHO => {
                let v = data.read_i32()?;
                reply.write_i32(v + 1)?;
                reply.write_i32(call.pid)?;
                Ok(())
            }
            OPEN_CHANNEL => {
                let count = data.read_u64()?;
                let batch = data.read_u32()? as usize;
                let token = call.process.read_binder(data)?;
                let mut tube = BitTube::with_buffer_size(100 * 1024)?;
                write_tube(reply, &mut tube)?;
                if let Some(Binder::Remote(p)) = &token {
                    let died = self.clients_died.clone();
                    p.link_to_death(Arc::new(move || {
                        died.fetch_add(1, Ordering::AcqRel);
                    }))?;
                }
                self.tokens.lock().unwrap().extend(token);
                let acked = self.acked.clone();
                let t = std::thread::spawn(move || {
                    let mut tx = EventSender::<Event>::new(tube.into_local());
                    stream(&mut tx, count, batch.max(1));
                    acked.fetch_add(tx.poll_acks().unwrap_or(0), Ordering::AcqRel);
                });
                self.streams.lock().unwrap().push(t);
                Ok(())
            }
            c => Err(BinderError::UnknownTransaction(c)),
        }
    }
}

/// Sends `count` events in batches; then waits for every acknowledgement or a dead peer.
fn stream(tx: &mut EventSender<Event>, count: u64, batch: usize) {
    let mut seq = 0u64;
    let mut buf = vec![Event::default(); batch];
    while seq < count {
        let n = batch.min((count - seq) as usize);
        for (i, e) in buf[..n].iter_mut().enumerate() {
            e.seq = seq + i as u64;
            e.payload[0] = (seq as u32).wrapping_mul(31);
        }
        match tx.send_timeout(&buf[..n], Duration::from_secs(20)) {
            Ok(_) => seq += n as u64,
            Err(_) => return,
        }
        let _ = tx.poll_acks();
    }
    while tx.poll_acks().map(|a| a < count).unwrap_or(false) {
        if tx.wait_acks(Duration::from_secs(20)).is_err() {
            return;
        }
    }
}

/// Registers `service` as `name`, says so, and serves until the test kills this process.
fn serve_until_killed(name: &str, service: Binder) {
    let ps = ProcessState::open().expect("process");
    ps.start_thread_pool().expect("pool");
    let sm = ServiceManagerClient::new(&ps).expect("sm");
    sm.add_service(name, &service).expect("add_service");
    say("registered", 1);
    std::thread::sleep(Duration::from_secs(60));
}

fn run_service(expect_clients: u64) {
    let before = fd_count();
    {
        let ps = ProcessState::open().expect("process");
        ps.start_thread_pool().expect("pool");
        let svc = EventService::new();
        let sm = ServiceManagerClient::new(&ps).expect("sm");
        sm.add_service(SERVICE, &Binder::Local(svc.clone()))
            .expect("add_service");
        say("registered", 1);
        // Serve until every expected client has died or finished streaming.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let done = svc
                .streams
                .lock()
                .unwrap()
                .iter()
                .filter(|t| t.is_finished())
                .count() as u64;
            let died = svc.clients_died.load(Ordering::Acquire);
            if (done >= expect_clients && died >= expect_clients) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in svc.streams.lock().unwrap().drain(..) {
            let _ = t.join();
        }
        say("acked", svc.acked.load(Ordering::Acquire));
        say("clients_died", svc.clients_died.load(Ordering::Acquire));
        ps.shutdown(Duration::from_secs(10)).expect("shutdown");
    }
    say("fds_delta", fd_count() as i64 - before as i64);
}

/// A client: finds the service (waiting for it), echoes, opens a channel and reads `count`
/// events in order, acknowledging each packet.
fn run_client(count: u64, batch: u32) {
    let before = fd_count();
    client_session(count, batch);
    say("fds_delta", fd_count() as i64 - before as i64);
}

fn client_session(count: u64, batch: u32) {
    let (ps, _token, rx) = open_channel(count, batch);
    let next = read_in_order(&rx, count, batch);
    say("received", next);
    // Stay until the service has read the acks (it closes its end then).
    let mut one = [Event::default()];
    assert!(matches!(
        rx.recv_timeout(&mut one, Duration::from_secs(20)),
        Err(TubeError::PeerClosed)
    ));
    say("peer_closed", 1);
    ps.shutdown(Duration::from_secs(10)).expect("shutdown");
}

/// Opens a binder process, waits for the test service, checks an echo, and asks for `count`
/// events in batches of `batch`. Keep the returned token: the service watches it for this
/// process's death.
fn open_channel(count: u64, batch: u32) -> (ProcessState, Binder, EventReceiver<Event>) {
    let ps = ProcessState::open().expect("process");
    ps.start_thread_pool().expect("pool");
    let svc = ServiceManagerClient::new(&ps)
        .expect("sm")
        .wait_for_service(SERVICE, Duration::from_secs(30))
        .expect("wait_for_service");
    let mut data = Parcel::new();
    data.write_i32(41).unwrap();
    let mut reply = svc.transact(ECHO, &data).expect("echo");
    assert_eq!(reply.read_i32().unwrap(), 42);
    let token = Binder::new(TOKEN);
    let mut data = Parcel::new();
    data.write_u64(count).unwrap();
    data.write_u32(batch).unwrap();
    ps.write_binder(&mut data, &token).unwrap();
    let mut reply = svc.transact(OPEN_CHANNEL, &data).expect("open channel");
    let rx = EventReceiver::<Event>::new(read_tube(&mut reply).expect("tube end"));
    (ps, token, rx)
}

/// Reads `count` events, checking order and content, acknowledging every packet.
fn read_in_order(rx: &EventReceiver<Event>, count: u64, batch: u32) -> u64 {
    let mut buf = vec![Event::default(); 256];
    let mut next = 0u64;
    while next < count {
        let n = rx
            .recv_timeout(&mut buf, Duration::from_secs(20))
            .expect("events");
        for e in &buf[..n] {
            assert_eq!(e.seq, next, "events arrive in order, none lost");
            assert_eq!(e.payload[0], (e.seq - e.seq % batch as u64) as u32 * 31);
            next += 1;
        }
        rx.ack(n as u32).expect("ack");
    }
    next
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn client_waits_for_the_service_then_streams_a_million_events_with_acks() {
    const TEST: &str = "client_waits_for_the_service_then_streams_a_million_events_with_acks";
    match role() {
        Some((r, _)) if r == "host" => host(default_policy(), |socket, sm| {
            // The client starts first and waits for the name.
            let client = spawn(TEST, "client", "1000000", socket);
            std::thread::sleep(Duration::from_millis(300));
            assert!(sm.lookup(SERVICE).is_none());
            let service = spawn(TEST, "service", "1", socket);
            let (cok, ckv) = client.finish(Duration::from_secs(100));
            let (sok, skv) = service.finish(Duration::from_secs(100));
            assert!(cok, "client: {ckv:?}");
            assert!(sok, "service: {skv:?}");
            assert_eq!(ckv["received"], "1000000");
            assert_eq!(ckv["fds_delta"], "0", "the client's fds are back");
            assert_eq!(skv["acked"], "1000000", "every ack came back");
            assert_eq!(skv["clients_died"], "1", "the client's token died with it");
            assert_eq!(skv["fds_delta"], "0");
            wait_gone(sm, SERVICE);
        }),
        Some((r, a)) if r == "client" => run_client(a.parse().unwrap(), 39),
        Some((r, a)) if r == "service" => run_service(a.parse().unwrap()),
        Some(_) => {}
        None => run_host_test(TEST),
    }
}

#[test]
fn hundred_clients_at_once() {
    const TEST: &str = "hundred_clients_at_once";
    const PROCS: usize = 10;
    const PER_PROC: usize = 10;
    match role() {
        Some((r, _)) if r == "host" => host(default_policy(), |socket, _sm| {
            let mut service = spawn(TEST, "service", &(PROCS * PER_PROC).to_string(), socket);
            assert_eq!(service.wait_line("registered").as_deref(), Some("1"));
            let clients: Vec<Proc> = (0..PROCS)
                .map(|_| spawn(TEST, "clients", "", socket))
                .collect();
            for c in clients {
                let (ok, kv) = c.finish(Duration::from_secs(100));
                assert!(ok, "client process: {kv:?}");
                assert_eq!(kv["received"], (PER_PROC * 1000).to_string());
            }
            let (ok, kv) = service.finish(Duration::from_secs(100));
            assert!(ok, "service: {kv:?}");
            assert_eq!(kv["acked"], (PROCS * PER_PROC * 1000).to_string());
        }),
        Some((r, _)) if r == "clients" => {
            // Ten binder processes in this OS process, each a client on its own thread.
            let total: u64 = (0..PER_PROC)
                .map(|_| std::thread::spawn(|| client_in_thread(1000)))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().expect("client thread"))
                .sum();
            say("received", total);
        }
        Some((r, a)) if r == "service" => run_service(a.parse().unwrap()),
        Some(_) => {}
        None => run_host_test(TEST),
    }
}

fn client_in_thread(count: u64) -> u64 {
    let (ps, _token, rx) = open_channel(count, 8);
    let next = read_in_order(&rx, count, 8);
    // Until the service closes its end: it counts this process's death at the end.
    let mut one = [Event::default()];
    let _ = rx.recv_timeout(&mut one, Duration::from_secs(20));
    ps.shutdown(Duration::from_secs(10)).expect("shutdown");
    next
}

#[test]
fn killed_client_fires_the_services_death_recipient() {
    const TEST: &str = "killed_client_fires_the_services_death_recipient";
    match role() {
        Some((r, _)) if r == "host" => host(default_policy(), |socket, _| {
            let mut service = spawn(TEST, "service", "1", socket);
            assert_eq!(service.wait_line("registered").as_deref(), Some("1"));
            let mut client = spawn(TEST, "client", "", socket);
            assert_eq!(client.wait_line("streaming").as_deref(), Some("1"));
            client.kill();
            let (ok, kv) = service.finish(Duration::from_secs(60));
            assert!(ok, "service: {kv:?}");
            assert_eq!(kv["clients_died"], "1", "death recipient fired");
            assert_eq!(
                kv["fds_delta"], "0",
                "the service cleaned up the dead client's connection"
            );
        }),
        Some((r, _)) if r == "client" => {
            let (_ps, _token, rx) = open_channel(u64::MAX, 8);
            let mut buf = [Event::default(); 8];
            rx.recv_timeout(&mut buf, Duration::from_secs(20))
                .expect("first events");
            say("streaming", 1);
            std::thread::sleep(Duration::from_secs(60));
        }
        Some((r, a)) if r == "service" => run_service(a.parse().unwrap()),
        Some(_) => {}
        None => run_host_test(TEST),
    }
}

#[test]
fn killed_service_gives_dead_object_and_fires_the_clients_recipient() {
    const TEST: &str = "killed_service_gives_dead_object_and_fires_the_clients_recipient";
    match role() {
        Some((r, _)) if r == "host" => host(default_policy(), |socket, sm| {
            let mut service = spawn(TEST, "service", "1", socket);
            assert_eq!(service.wait_line("registered").as_deref(), Some("1"));
            let mut client = spawn(TEST, "client", "", socket);
            assert_eq!(client.wait_line("linked").as_deref(), Some("1"));
            service.kill();
            let (ok, kv) = client.finish(Duration::from_secs(60));
            assert!(ok, "client: {kv:?}");
            assert_eq!(kv["recipient"], "fired");
            assert_eq!(kv["call_after_death"], "DeadObject");
            assert_eq!(kv["fds_delta"], "0", "the client's fds are back");
            wait_gone(sm, SERVICE);
        }),
        Some((r, _)) if r == "client" => {
            let before = fd_count();
            {
                let ps = ProcessState::open().expect("process");
                ps.start_thread_pool().expect("pool");
                let sm = ServiceManagerClient::new(&ps).expect("sm");
                let svc = sm
                    .wait_for_service(SERVICE, Duration::from_secs(30))
                    .expect("service");
                let (tx, rx) = std::sync::mpsc::channel();
                let tx = Mutex::new(tx);
                svc.as_proxy()
                    .expect("a proxy")
                    .link_to_death(Arc::new(move || {
                        let _ = tx.lock().unwrap().send(());
                    }))
                    .expect("link_to_death");
                say("linked", 1);
                rx.recv_timeout(Duration::from_secs(30))
                    .expect("death recipient fired");
                say("recipient", "fired");
                let mut data = Parcel::new();
                data.write_i32(1).unwrap();
                match svc.transact(ECHO, &data) {
                    Err(BinderError::DeadObject) => say("call_after_death", "DeadObject"),
                    other => say("call_after_death", format!("{other:?}")),
                }
                ps.shutdown(Duration::from_secs(10)).expect("shutdown");
            }
            say("fds_delta", fd_count() as i64 - before as i64);
        }
        Some((r, _)) if r == "service" => {
            serve_until_killed(SERVICE, Binder::Local(EventService::new()))
        }
        Some(_) => {}
        None => run_host_test(TEST),
    }
}

#[test]
fn unauthorised_add_is_refused_with_the_reason() {
    const TEST: &str = "unauthorised_add_is_refused_with_the_reason";
    match role() {
        Some((r, _)) if r == "host" => {
            let policy: AccessPolicy = Arc::new(|req| {
                if req.name.starts_with("system.") {
                    Err(format!(
                        "pid {} may not add '{}': system names are reserved",
                        req.pid, req.name
                    ))
                } else {
                    Ok(())
                }
            });
            host(policy, |socket, sm| {
                let (ok, kv) = spawn(TEST, "adder", "", socket).finish(Duration::from_secs(60));
                assert!(ok, "adder: {kv:?}");
                assert!(
                    kv["refused"].contains("system names are reserved"),
                    "{kv:?}"
                );
                assert_eq!(kv["allowed"], "ok");
                assert!(sm.lookup("system.clock").is_none());
            });
        }
        Some((r, _)) if r == "adder" => {
            let ps = ProcessState::open().expect("process");
            ps.start_thread_pool().expect("pool");
            let sm = ServiceManagerClient::new(&ps).expect("sm");
            let b = Binder::new(TOKEN);
            match sm.add_service("system.clock", &b) {
                Err(BinderError::PermissionDenied(why)) => say("refused", why),
                other => say("refused", format!("not refused: {other:?}")),
            }
            sm.add_service("app.clock", &b).expect("an allowed name");
            assert!(sm
                .list_services()
                .unwrap()
                .contains(&"app.clock".to_owned()));
            assert!(sm.check_service("app.clock").unwrap().is_some());
            say("allowed", "ok");
        }
        Some(_) => {}
        None => run_host_test(TEST),
    }
}

bittube::binder_interface! {
    /// A declared interface, used across processes below.
    mod calc("bittube.test.ICalc") {
        /// a + b.
        fn add(a: i64, b: i64) -> i64 = 1;
        /// a / b; dividing by zero is refused.
        fn divide(a: i64, b: i64) -> i64 = 2;
        /// A tube with one packet already in it: [first, first + 1, first + 2].
        fn tube(first: u64) -> bittube::bittube::TubeEnd = 3;
        /// The caller's pid, as the driver reported it.
        fn whoami() -> i32 = 4;
    }
}

struct Calc;

impl calc::Interface for Calc {
    fn add(&self, _: &CallContext, a: i64, b: i64) -> Result<i64, BinderError> {
        Ok(a + b)
    }
    fn divide(&self, _: &CallContext, a: i64, b: i64) -> Result<i64, BinderError> {
        a.checked_div(b)
            .ok_or_else(|| BinderError::BadValue(format!("{a} / {b}: division by zero")))
    }
    fn tube(&self, _: &CallContext, first: u64) -> Result<bittube::bittube::TubeEnd, BinderError> {
        let (local, remote) = BitTube::new().and_then(|t| t.into_ends())?;
        local.send_batch(&[first, first + 1, first + 2])?;
        Ok(remote)
    }
    fn whoami(&self, call: &CallContext) -> Result<i32, BinderError> {
        Ok(call.pid)
    }
}

#[test]
fn declared_interface_across_processes() {
    const TEST: &str = "declared_interface_across_processes";
    match role() {
        Some((r, _)) if r == "host" => host(default_policy(), |socket, _| {
            let mut service = spawn(TEST, "service", "", socket);
            assert_eq!(service.wait_line("registered").as_deref(), Some("1"));
            let (ok, kv) = spawn(TEST, "client", "", socket).finish(Duration::from_secs(60));
            service.kill();
            assert!(ok, "client: {kv:?}");
            assert_eq!(kv["add"], "42");
            assert!(kv["divide"].contains("division by zero"), "{kv:?}");
            assert_eq!(kv["tube"], "[7, 8, 9]");
            assert_eq!(kv["whoami"], "self");
            assert_eq!(kv["fds_delta"], "0");
        }),
        Some((r, _)) if r == "service" => {
            serve_until_killed("bittube.test.calc", Binder::new(calc::Server(Calc)))
        }
        Some((r, _)) if r == "client" => {
            let before = fd_count();
            {
                let ps = ProcessState::open().expect("process");
                let sm = ServiceManagerClient::new(&ps).expect("sm");
                let b = sm
                    .wait_for_service("bittube.test.calc", Duration::from_secs(30))
                    .expect("calc");
                assert_eq!(b.descriptor().unwrap(), calc::DESCRIPTOR);
                let calc = calc::Proxy::new(b, &ps);
                say("add", calc.add(40, 2).expect("add"));
                match calc.divide(1, 0) {
                    Err(BinderError::BadValue(why)) => say("divide", why),
                    other => say("divide", format!("{other:?}")),
                }
                let end = calc.tube(7).expect("tube");
                let mut got = [0u64; 3];
                end.recv_batch_timeout(&mut got, Duration::from_secs(10))
                    .expect("packet");
                say("tube", format!("{got:?}"));
                let pid = calc.whoami().expect("whoami");
                say(
                    "whoami",
                    if pid == std::process::id() as i32 {
                        "self".to_owned()
                    } else {
                        pid.to_string()
                    },
                );
                drop(end);
                ps.shutdown(Duration::from_secs(10)).expect("shutdown");
            }
            say("fds_delta", fd_count() as i64 - before as i64);
        }
        Some(_) => {}
        None => run_host_test(TEST),
    }
}
