//! The corpus between real processes on an embedded driver shim: this test binary runs again
//! as a *service* process and a *client* process; the test itself hosts the shim and the
//! service manager. Every construct of the corpus crosses the process boundary, and the
//! async side (ISlow) is checked with counters: 100 concurrent calls all in flight at once,
//! and the service's pool (parked, idle, replacement threads) while a call awaits a timer.

use bittube::binder_ipc::aidl::{AsyncServerStats, ParcelFileDescriptor};
use bittube::binder_ipc::device::KernelDevice;
use bittube::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState};
use bittube::binder_ipc::service_manager::{default_policy, ServiceManager, ServiceManagerClient};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::bittube::{BitTube, TubeEnd};
use bittube_aidl_tests::{
    Color, Everything, ICallback, ICorpus, ISlow, Level, Names, Point, Shape,
};
use std::io::{Read, Write};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const ROLE: &str = "BITTUBE_AIDL_ROLE";
const CORPUS: &str = "bittube.test.corpus";
const SLOW: &str = "bittube.test.slow";
/// Only turns a hang into a failure.
const LONG: Duration = Duration::from_secs(60);

/// Runs `role` of `test` as a process; `socket` is the shim's (None on the kernel driver).
fn spawn(test: &str, role: &str, socket: Option<&std::path::Path>) -> Child {
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    if let Some(s) = socket {
        c.env(ENV_SOCKET, s);
    }
    c.spawn().expect("spawn")
}

fn wait_success(mut child: Child) {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "client failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("client hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the service manager here (on the kernel driver when this machine has one, else on a
/// driver shim started here), the service and the client as processes.
fn host(test: &str) {
    let driver = match KernelDevice::default_path() {
        Some(_) => None,
        None => Some(Driver::start().expect("driver")),
    };
    let socket = driver.as_ref().map(|d| d.socket_path().to_owned());
    let ps = match &socket {
        Some(s) => ProcessState::open_shim(s).expect("process"),
        None => ProcessState::open().expect("kernel binder"),
    };
    let _sm = serve_manager(&ps);
    let mut service = spawn(test, "service", socket.as_deref());
    let client = spawn(test, "client", socket.as_deref());
    let result = std::panic::catch_unwind(|| wait_success(client));
    let _ = service.kill();
    let _ = service.wait();
    ps.shutdown(Duration::from_secs(10)).expect("shutdown");
    result.expect("client");
}

/// Becomes the context manager (an earlier test's manager may hold the role for a moment on
/// the kernel driver, which releases it asynchronously).
fn serve_manager(ps: &ProcessState) -> Arc<ServiceManager> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ServiceManager::serve(ps, default_policy()) {
            Err(BinderError::ContextManagerExists) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r.expect("service manager"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The service process

#[derive(Default)]
struct Corpus {
    pokes: AtomicI32,
}

impl ICorpus::Interface for Corpus {
    fn echo(&self, _: &CallContext, e: Everything) -> Result<Everything, BinderError> {
        Ok(e)
    }
    fn add(&self, _: &CallContext, a: i32, b: i64) -> Result<i64, BinderError> {
        Ok(a as i64 + b)
    }
    fn r#move(
        &self,
        _: &CallContext,
        p: &mut Point,
        dx: i32,
        dy: i32,
        old: &mut Point,
    ) -> Result<(), BinderError> {
        *old = p.clone();
        p.x += dx;
        p.y += dy;
        Ok(())
    }
    fn fill(&self, _: &CallContext, values: &mut Vec<i32>, start: i32) -> Result<(), BinderError> {
        for (i, v) in values.iter_mut().enumerate() {
            *v = start + i as i32;
        }
        Ok(())
    }
    fn maybe(
        &self,
        _: &CallContext,
        give: bool,
        fallback: Option<String>,
        extra: Option<Vec<i32>>,
    ) -> Result<Option<String>, BinderError> {
        Ok(match give {
            true => Some("given".into()),
            false => fallback.map(|f| format!("{f}+{}", extra.map_or(-1, |e| e.len() as i64))),
        })
    }
    fn area(&self, _: &CallContext, s: Shape) -> Result<i32, BinderError> {
        match s {
            Shape::Radius(r) if r < 0 => Err(BinderError::BadValue(format!("negative radius {r}"))),
            Shape::Radius(r) => Ok(3 * r * r),
            Shape::Corner(p) => Ok(p.x * p.y),
            Shape::Name(_) => Ok(0),
            Shape::Sides(s) => Ok(s.iter().product()),
        }
    }
    fn same(&self, _: &CallContext, b: Binder) -> Result<Binder, BinderError> {
        // Kept by nothing here: the reply holds the proxy until it is written.
        Ok(b)
    }
    fn subscribe(
        &self,
        _: &CallContext,
        cb: ICallback::Proxy,
        count: i32,
    ) -> Result<(), BinderError> {
        (0..count).try_for_each(|i| cb.onEvent(i, &format!("event {i}")))
    }
    fn tube(&self, _: &CallContext, first: i64) -> Result<TubeEnd, BinderError> {
        let mut tube = BitTube::new().map_err(BinderError::from)?;
        let end = tube.take_remote().map_err(BinderError::from)?;
        let f = first as u64;
        tube.local()
            .send_batch(&[f, f + 1, f + 2])
            .map_err(BinderError::from)?;
        // The service's end may close: the packet stays queued for the reader.
        Ok(end)
    }
    fn slurp(&self, _: &CallContext, fd: ParcelFileDescriptor) -> Result<Vec<u8>, BinderError> {
        let mut bytes = Vec::new();
        std::fs::File::from(fd.0)
            .read_to_end(&mut bytes)
            .map_err(|e| BinderError::BadValue(e.to_string()))?;
        Ok(bytes)
    }
    fn slow(&self, _: &CallContext, ms: i32) -> Result<i32, BinderError> {
        std::thread::sleep(Duration::from_millis(ms as u64));
        Ok(ms)
    }
    fn poke(&self, _: &CallContext, n: i32) -> Result<(), BinderError> {
        self.pokes.fetch_add(n, Ordering::SeqCst);
        Ok(())
    }
    fn pokes(&self, _: &CallContext) -> Result<i32, BinderError> {
        Ok(self.pokes.load(Ordering::SeqCst))
    }
    fn pid(&self, _: &CallContext) -> Result<i32, BinderError> {
        Ok(std::process::id() as i32)
    }
    fn reverse(&self, _: &CallContext, mut items: Vec<String>) -> Result<Vec<String>, BinderError> {
        items.reverse();
        Ok(items)
    }
}

static SLOW_STATS: OnceLock<Arc<AsyncServerStats>> = OnceLock::new();
/// `later` calls sleeping now.
static LATER: AtomicI32 = AtomicI32::new(0);

struct Slow;

impl ISlow::AsyncInterface for Slow {
    async fn slow(self: Arc<Self>, _: CallContext, ms: i32) -> Result<i32, BinderError> {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        Ok(ms)
    }
    async fn doubleAll(
        self: Arc<Self>,
        _: CallContext,
        mut values: Vec<i32>,
        ms: i32,
    ) -> Result<((), Vec<i32>), BinderError> {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        values.iter_mut().for_each(|v| *v *= 2);
        Ok(((), values))
    }
    async fn later(self: Arc<Self>, _: CallContext, ms: i32) -> Result<(), BinderError> {
        LATER.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        LATER.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    async fn pending(self: Arc<Self>, _: CallContext) -> Result<Vec<i32>, BinderError> {
        let c = SLOW_STATS.get().expect("stats").counts();
        Ok(vec![
            LATER.load(Ordering::SeqCst),
            c.oneway_failed as i32,
            c.waiting as i32,
        ])
    }
    async fn waiting(self: Arc<Self>, _: CallContext) -> Result<Vec<i32>, BinderError> {
        let c = SLOW_STATS.get().expect("stats").counts();
        // This call itself holds one binder thread.
        Ok(vec![c.waiting as i32, c.max_waiting as i32, c.calls as i32])
    }
    async fn gather(self: Arc<Self>, _: CallContext, n: i32, ms: i32) -> Result<i32, BinderError> {
        let now = GATHERING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_GATHERED.fetch_max(now, Ordering::SeqCst);
        GATHERED.notify_waiters();
        let all_in = async {
            while GATHERING.load(Ordering::SeqCst) < n {
                let notified = GATHERED.notified();
                if GATHERING.load(Ordering::SeqCst) >= n {
                    break;
                }
                notified.await;
            }
        };
        // Only a hang reaches the bound: fewer than `n` calls could be in flight at once.
        let r = tokio::time::timeout(LONG, all_in).await;
        GATHERED.notify_waiters();
        r.map_err(|_| {
            BinderError::TimedOut(format!(
                "at most {} of {n} calls were in flight at once",
                MOST_GATHERED.load(Ordering::SeqCst)
            ))
        })?;
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        Ok(MOST_GATHERED.load(Ordering::SeqCst))
    }
    async fn pool(self: Arc<Self>, call: CallContext) -> Result<Vec<i64>, BinderError> {
        let p = call.process.pool_stats();
        Ok(vec![
            p.loopers as i64,
            p.idle as i64,
            p.serving as i64,
            p.parked as i64,
            p.max_parked as i64,
            p.replacements as i64,
            p.replacements_started as i64,
            p.replacements_refused as i64,
            p.oneway_errors as i64,
        ])
    }
}

/// `gather` calls in flight now, and at most.
static GATHERING: AtomicI32 = AtomicI32::new(0);
static MOST_GATHERED: AtomicI32 = AtomicI32::new(0);
static GATHERED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The service's pool, as `ISlow::pool` reports it.
#[derive(Debug)]
struct Pool {
    loopers: i64,
    idle: i64,
    serving: i64,
    parked: i64,
    max_parked: i64,
    replacements: i64,
    replacements_started: i64,
    replacements_refused: i64,
}

async fn pool(slow: &ISlow::AsyncProxy) -> Pool {
    let v = slow.pool().await.expect("pool");
    Pool {
        loopers: v[0],
        idle: v[1],
        serving: v[2],
        parked: v[3],
        max_parked: v[4],
        replacements: v[5],
        replacements_started: v[6],
        replacements_refused: v[7],
    }
}

fn run_service() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let ps = ProcessState::open().expect("process");
    // The driver may start its default 15 threads; parked async calls get replacements.
    ps.set_max_parked_replacements(128);
    ps.start_thread_pool().expect("pool");
    let sm = ServiceManagerClient::new(&ps).expect("sm");
    sm.add_service(CORPUS, &Binder::new(ICorpus::Server(Corpus::default())))
        .expect("add corpus");
    let slow = ISlow::AsyncServer::new(Slow, rt.handle().clone());
    SLOW_STATS.set(slow.stats()).expect("once");
    sm.add_service(SLOW, &Binder::new(slow)).expect("add slow");
    std::thread::sleep(LONG);
}

// ---------------------------------------------------------------------------------------
// The client process

struct Events(Mutex<mpsc::Sender<(i32, String)>>);

impl ICallback::Interface for Events {
    fn onEvent(&self, _: &CallContext, seq: i32, what: String) -> Result<(), BinderError> {
        let _ = self.0.lock().unwrap().send((seq, what));
        Ok(())
    }
    fn named(
        &self,
        _: &CallContext,
        data: i32,
        reply: i32,
        call: i32,
        result: i32,
        proxy: i32,
        value: i32,
        names: Names,
    ) -> Result<(), BinderError> {
        let sum = data
            + reply
            + call
            + result
            + proxy
            + value
            + names.parcel
            + names.process
            + names.end
            + names.value;
        let _ = self.0.lock().unwrap().send((sum, "named".into()));
        Ok(())
    }
}

fn everything() -> Everything {
    Everything {
        s: "ünïcode ☃".into(),
        ns: Some("present".into()),
        bytes: vec![0, 255, 7],
        chars: vec![0x41, 0x263a],
        flags: vec![true, false],
        ints: vec![i32::MIN, 0, i32::MAX],
        longs: vec![i64::MIN],
        floats: vec![1.25],
        doubles: vec![-0.5],
        strings: vec!["a".into(), "bc".into()],
        list: vec!["l".into()],
        points: vec![Point {
            x: 1,
            ..Point::default()
        }],
        pointList: vec![Point {
            note: Some("n".into()),
            ..Point::default()
        }],
        maybePoint: None,
        color: Color::BLUE,
        colors: vec![Color::RED, Color(42)],
        level: Level::HIGH,
        shape: Shape::Corner(Point {
            x: 4,
            y: 5,
            ..Point::default()
        }),
        maybeInts: Some(vec![9]),
        ..Everything::default()
    }
}

fn check_corpus(ps: &ProcessState, c: &ICorpus::Proxy) {
    let e = everything();
    assert_eq!(c.echo(&e).expect("echo"), e);
    assert_eq!(c.add(40, 2).expect("add"), 42);
    let (mut p, mut old) = (
        Point {
            x: 1,
            y: 1,
            ..Point::default()
        },
        Point::default(),
    );
    c.r#move(&mut p, 2, 3, &mut old).expect("move");
    assert_eq!((p.x, p.y, old.x, old.y), (3, 4, 1, 1));
    let mut v = vec![0; 4];
    c.fill(&mut v, 10).expect("fill");
    assert_eq!(v, [10, 11, 12, 13]);
    assert_eq!(c.maybe(false, None, None).expect("maybe"), None);
    assert_eq!(
        c.maybe(true, None, None).expect("maybe").as_deref(),
        Some("given")
    );
    let fb = c.maybe(false, Some("fb"), Some(&[1, 2])).expect("maybe");
    assert_eq!(fb.as_deref(), Some("fb+2"));
    assert_eq!(
        c.maybe(false, Some(""), None).expect("maybe").as_deref(),
        Some("+-1")
    );
    assert_eq!(c.area(&Shape::Sides(vec![2, 3, 4])).expect("area"), 24);
    match c.area(&Shape::Radius(-1)) {
        Err(BinderError::BadValue(m)) => assert!(m.contains("negative radius -1"), "{m}"),
        other => panic!("area(-1): {other:?}"),
    }
    assert_eq!(
        c.reverse(&["a".into(), "b".into()]).expect("reverse"),
        ["b", "a"]
    );
    assert_eq!(ICorpus::VERSION, 3);
    assert_eq!(ICorpus::NAME, "corpus");
    // IBinder out and back: the same local object.
    let (tx, rx) = mpsc::channel();
    let cb = ICallback::Proxy::local(Events(Mutex::new(tx)), ps);
    let back = c.same(cb.binder()).expect("same");
    assert!(back.same_as(cb.binder()), "the binder came back as itself");
    // An interface as an argument: the service calls back (oneway).
    c.subscribe(&cb, 3).expect("subscribe");
    for i in 0..3 {
        let (seq, what) = rx.recv_timeout(LONG).expect("callback");
        assert_eq!((seq, what), (i, format!("event {i}")));
    }
    // Called in this process: the local service runs directly, arguments encoded and decoded.
    let names = Names {
        parcel: 7,
        process: 8,
        end: 9,
        value: 10,
    };
    cb.named(1, 2, 3, 4, 5, 6, &names).expect("local call");
    assert_eq!(
        rx.recv_timeout(LONG).expect("named"),
        (55, "named".to_owned())
    );
    // A BitTube end comes back checked; a ParcelFileDescriptor goes out.
    let end = c.tube(7).expect("tube");
    let mut got = [0u64; 3];
    end.recv_batch_timeout(&mut got, LONG).expect("packet");
    assert_eq!(got, [7, 8, 9]);
    let (r, w) = nix::unistd::pipe().expect("pipe");
    std::fs::File::from(w)
        .write_all(b"through binder")
        .expect("write");
    assert_eq!(
        c.slurp(&ParcelFileDescriptor(r)).expect("slurp"),
        b"through binder"
    );
    hostile_calls(c);
    // Oneway calls arrive (in order, on one node); a sync call sees them eventually.
    for n in [1, 2, 3] {
        c.poke(n).expect("poke");
    }
    let deadline = Instant::now() + LONG;
    while c.pokes().expect("pokes") != 6 {
        assert!(Instant::now() < deadline, "oneway calls lost");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Raw transactions a hostile client could send: errors, never a dead service.
fn hostile_calls(c: &ICorpus::Proxy) {
    use bittube::binder_ipc::parcel::Parcel;
    let raw = |code: u32, body: &dyn Fn(&mut Parcel)| {
        let mut data = Parcel::new();
        data.write_interface_token(ICorpus::DESCRIPTOR).unwrap();
        body(&mut data);
        c.binder().transact(code, &data)
    };
    let exception = |r: Result<Parcel, BinderError>| match r {
        Ok(mut reply) => reply
            .read_exception()
            .map_err(bittube::binder_ipc::interface::from_reply_error),
        Err(e) => Err(e),
    };
    // echo (code 1) with a parcelable whose size runs past the data.
    let r = exception(raw(1, &|d| {
        d.write_i32(1).unwrap();
        d.write_i32(1 << 20).unwrap();
    }));
    assert!(r.is_err(), "oversized parcelable: {r:?}");
    // fill (code 4) asking for 2^31-1 out elements.
    let r = exception(raw(4, &|d| {
        d.write_i32(i32::MAX).unwrap();
        d.write_i32(0).unwrap();
    }));
    assert!(
        matches!(&r, Err(BinderError::BadValue(m)) if m.contains("out array")),
        "{r:?}"
    );
    // reverse (code 14) with a list length far past the data.
    let r = exception(raw(14, &|d| d.write_i32(1 << 28).unwrap()));
    assert!(r.is_err(), "huge list: {r:?}");
    // area (code 6) with a union tag nobody declared.
    let r = exception(raw(6, &|d| {
        d.write_i32(1).unwrap();
        d.write_i32(99).unwrap();
    }));
    assert!(r.is_err(), "bad union tag: {r:?}");
    // A code the interface does not have; a wrong descriptor.
    assert!(matches!(
        raw(999, &|_| ()),
        Err(BinderError::UnknownTransaction(999))
    ));
    let mut data = Parcel::new();
    data.write_interface_token("not.the.Interface").unwrap();
    assert!(c.binder().transact(2, &data).is_err(), "wrong descriptor");
    // The service is still there.
    assert_eq!(c.add(1, 1).expect("add after hostile calls"), 2);
}

async fn check_async(slow: ISlow::AsyncProxy) {
    const MS: i32 = 300;
    let start = Instant::now();
    assert_eq!(slow.slow(MS).await.expect("slow"), MS);
    let one = start.elapsed();
    // 100 concurrent calls of a slow method (MS) that returns only once all 100 are in
    // flight at once: they finish together (about one call's time) or not at all.
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let s = slow.clone();
        set.spawn(async move { s.gather(100, MS).await });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(
            r.expect("join").expect("gather"),
            100,
            "100 calls in flight at once"
        );
    }
    eprintln!(
        "aidl async: one call {one:?}, 100 concurrent calls {:?}",
        start.elapsed()
    );
    let after = pool(&slow).await;
    eprintln!("aidl async: service pool after 100 parked calls: {after:?}");
    assert!(after.max_parked >= 100, "{after:?}");
    assert_eq!(after.replacements_refused, 0, "{after:?}");
    assert!(
        after.replacements_started > 0,
        "the driver's 15 threads alone cannot hold 100 parked calls: {after:?}"
    );
    // A method awaiting a timer: its binder thread is parked (held: the reply must leave
    // from it), not available; an idle looper remains for new calls.
    let sleeper = {
        let s = slow.clone();
        tokio::spawn(async move { s.slow(1_500).await })
    };
    let deadline = Instant::now() + LONG;
    let during = loop {
        let p = pool(&slow).await;
        // `pool` itself is an async call: parked too while it runs.
        if p.parked >= 2 || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("aidl async: service pool while one call awaits a timer: {during:?}");
    assert_eq!(
        during.parked, 2,
        "the sleeping call and this one: {during:?}"
    );
    assert!(during.serving >= 2, "{during:?}");
    assert!(
        during.idle >= 1,
        "a looper stays free for new calls: {during:?}"
    );
    assert_eq!(sleeper.await.expect("join").expect("slow"), 1_500);
    let idle = pool(&slow).await;
    eprintln!("aidl async: service pool afterwards: {idle:?}");
    assert_eq!(idle.parked, 1, "only this call: {idle:?}");
    assert!(idle.replacements <= after.replacements_started, "{idle:?}");
    assert!(idle.loopers >= idle.idle, "{idle:?}");
    let mut v = vec![1, 2, 3];
    slow.doubleAll(&mut v, 10).await.expect("doubleAll");
    assert_eq!(
        v,
        [2, 4, 6],
        "inout through an async proxy and an async service"
    );
    // Oneway async methods hold no binder thread: 20 of them sleep at once on the runtime,
    // while the node delivers oneway calls one after the other.
    for _ in 0..20 {
        slow.later(2_000).await.expect("later");
    }
    let deadline = Instant::now() + LONG;
    let p = loop {
        let p = slow.pending().await.expect("pending");
        if p[0] == 20 || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "aidl async: oneway calls sleeping at once {}, binder threads waiting {}",
        p[0], p[2]
    );
    assert_eq!(
        p,
        [20, 0, 1],
        "20 oneway calls sleeping, none failed, only `pending` holds a thread"
    );
    let w = slow.waiting().await.expect("waiting");
    eprintln!(
        "aidl async: service binder threads waiting now {}, at most {}, calls {}",
        w[0], w[1], w[2]
    );
    assert_eq!(w[0], 1, "only this call holds a binder thread now");
    assert!(w[1] >= 100, "the 100 gathered calls waited at once");
}

fn run_client() {
    let ps = ProcessState::open().expect("process");
    ps.start_thread_pool().expect("pool");
    let sm = ServiceManagerClient::new(&ps).expect("sm");
    let corpus = sm.wait_for_service(CORPUS, LONG).expect("corpus");
    assert_eq!(
        corpus.descriptor().expect("descriptor"),
        ICorpus::DESCRIPTOR
    );
    check_corpus(&ps, &ICorpus::Proxy::new(corpus.clone(), &ps));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let slow = rt
        .block_on(bittube::binder_ipc::aidl::wait_for_service(&sm, SLOW, LONG))
        .expect("slow");
    rt.block_on(check_async(ISlow::AsyncProxy(ISlow::Proxy::new(slow, &ps))));
    // A death notification as a future: the service process is killed from here.
    let pid = ICorpus::Proxy::new(corpus.clone(), &ps).pid().expect("pid");
    let died = bittube::binder_ipc::aidl::death(&corpus).expect("link to death");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
        .expect("kill the service");
    rt.block_on(async { tokio::time::timeout(LONG, died).await })
        .expect("the death notification arrived");
    assert!(matches!(
        ICorpus::Proxy::new(corpus, &ps).pid(),
        Err(BinderError::DeadObject)
    ));
}

#[test]
fn corpus_round_trips_between_processes() {
    const TEST: &str = "corpus_round_trips_between_processes";
    match std::env::var(ROLE).as_deref() {
        Ok("service") => run_service(),
        Ok("client") => run_client(),
        _ => host(TEST),
    }
}
