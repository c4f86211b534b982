//! [`ProcessState`]: one binder process — its device, its local nodes and proxies, its
//! thread pool.

use super::binder::{Binder, Proxy, Service};
use super::pool::{Looper, LooperKind};
use super::BinderError;
use crate::binder_ipc::device::{Device, Errno, KernelDevice, ShimDevice};
use crate::binder_ipc::parcel::BinderObject;
use crate::binder_ipc::shim::{Driver, ENV_SOCKET};
use crate::binder_ipc::uapi::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Default maximum of threads the driver may ask the pool to spawn (libbinder's).
pub const DEFAULT_MAX_THREADS: u32 = 15;

/// What the runtime does when a service panics while handling a call
/// ([`ProcessState::set_panic_policy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PanicPolicy {
    /// Catch the panic at the dispatch: the caller gets [`BinderError::ServiceFailed`] with
    /// the panic message, the call's buffer is freed, the thread goes back to the pool, and
    /// the panic is counted ([`ProcessState::panic_count`]) and logged with the service's
    /// descriptor and the call's code. The default: one service bug is one failed call.
    #[default]
    ReplyError,
    /// Log and abort the process, as Android's Rust binder does: clients see a true death
    /// (`DeadObject`, death notifications).
    Abort,
}

/// Called once when the binder device goes away, with the error that says how.
pub type DeviceGoneFn = Arc<dyn Fn(&BinderError) + Send + Sync>;

/// A local node the driver knows about: the service and the counts the driver asked for.
pub(super) struct LocalNode {
    pub service: Arc<dyn Service>,
    pub strong: u32,
    pub weak: u32,
}

/// The shared state of a binder process.
pub struct Inner {
    pub(super) id: u64,
    pub(super) device: Arc<dyn Device>,
    pub(super) locals: Mutex<HashMap<u64, LocalNode>>,
    /// Every service written into a parcel, weakly: found again when the driver's counts
    /// for it went to zero while a parcel naming it was in flight.
    pub(super) known_locals: Mutex<HashMap<u64, Weak<dyn Service>>>,
    pub(super) known_locals_prune_at: AtomicU32,
    pub(super) proxies: Mutex<HashMap<u32, Weak<Proxy>>>,
    pub(super) deaths: Mutex<HashMap<u64, Weak<Proxy>>>,
    pub(super) context_object: Mutex<Option<Arc<dyn Service>>>,
    pub(super) max_threads: AtomicU32,
    pub(super) pool_started: AtomicBool,
    /// Pool threads alive; shared so a thread counts itself out only after it let go of
    /// the process (then the device closes with the last handle, not later).
    pub(super) pool_threads: Arc<AtomicU32>,
    pub(super) stopping: AtomicBool,
    /// Panics caught in services ([`PanicPolicy::ReplyError`]).
    pub(super) panics: AtomicU64,
    pub(super) panic_policy: AtomicU8,
    /// Why the device went away, once it did.
    pub(super) gone: Mutex<Option<String>>,
    /// `gone` is set: checked on every call without taking the lock.
    pub(super) is_gone: AtomicBool,
    pub(super) on_gone: Mutex<Vec<DeviceGoneFn>>,
    /// Loopers, calls served, parked threads, replacements, oneway errors.
    pub(super) pool: super::pool::PoolCounters,
    pub(super) weak_self: Weak<Inner>,
}

/// A binder process: a device opened once, shared by all of its threads. Cloning shares it.
///
/// ```no_run
/// use bittube::binder_ipc::runtime::ProcessState;
/// let ps = ProcessState::open()?; // the kernel driver, or the shim named by BITTUBE_BINDER
/// ps.start_thread_pool()?;
/// let sm = ps.context_object()?;  // handle 0
/// sm.ping()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProcessState {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One short line: a summary of the device, never the device itself.
        f.debug_struct("ProcessState")
            .field("id", &self.inner.id)
            .field("device", &self.inner.device.kind())
            .field(
                "pool_threads",
                &self.inner.pool_threads.load(Ordering::Relaxed),
            )
            .field("panics", &self.inner.panics.load(Ordering::Relaxed))
            .field("gone", &lock(&self.inner.gone).is_some())
            .finish()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ProcessState {
    /// Opens the binder device this machine offers: the kernel driver when a device exists
    /// (`BITTUBE_KERNEL_DEVICE`, `/dev/binderfs/binder`, `/dev/binder`), else the shim whose
    /// socket `BITTUBE_BINDER` names; else an error that says both were looked for.
    pub fn open() -> Result<ProcessState, BinderError> {
        if let Some(path) = KernelDevice::default_path() {
            let dev = KernelDevice::open(&path).map_err(|e| {
                BinderError::NotFound(format!("kernel binder device {}: {e}", path.display()))
            })?;
            return Ok(Self::with_device(Arc::new(dev)));
        }
        match std::env::var_os(ENV_SOCKET) {
            Some(p) => Self::open_shim(Path::new(&p)),
            None => Err(BinderError::NotFound(format!(
                "no binder: no kernel binder device (/dev/binderfs/binder, /dev/binder) and {ENV_SOCKET} names no driver shim"
            ))),
        }
    }

    /// Opens a binder process on the shim listening at `socket`.
    pub fn open_shim(socket: &Path) -> Result<ProcessState, BinderError> {
        let dev = ShimDevice::open(socket).map_err(|e| {
            BinderError::NotFound(format!("binder shim at {}: {e}", socket.display()))
        })?;
        Ok(Self::with_device(Arc::new(dev)))
    }

    /// Starts a driver shim on a thread of this process and opens a binder process on it.
    /// Child processes reach the shim through [`ENV_SOCKET`] set to `driver.socket_path()`.
    pub fn embedded() -> Result<(ProcessState, Driver), BinderError> {
        let driver =
            Driver::start().map_err(|e| BinderError::NotFound(format!("binder shim: {e}")))?;
        let ps = Self::open_shim(driver.socket_path())?;
        Ok((ps, driver))
    }

    /// A binder process on an opened device.
    pub fn with_device(device: Arc<dyn Device>) -> ProcessState {
        let inner = Arc::new_cyclic(|weak| Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            locals: Mutex::new(HashMap::new()),
            known_locals: Mutex::new(HashMap::new()),
            known_locals_prune_at: AtomicU32::new(64),
            proxies: Mutex::new(HashMap::new()),
            deaths: Mutex::new(HashMap::new()),
            context_object: Mutex::new(None),
            max_threads: AtomicU32::new(DEFAULT_MAX_THREADS),
            pool_started: AtomicBool::new(false),
            pool_threads: Arc::new(AtomicU32::new(0)),
            stopping: AtomicBool::new(false),
            panics: AtomicU64::new(0),
            panic_policy: AtomicU8::new(PanicPolicy::ReplyError as u8),
            gone: Mutex::new(None),
            is_gone: AtomicBool::new(false),
            on_gone: Mutex::new(Vec::new()),
            pool: Default::default(),
            weak_self: weak.clone(),
        });
        ProcessState { inner }
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.inner.device
    }

    /// The most threads the driver may ask the pool to start (`BINDER_SET_MAX_THREADS`).
    pub fn set_max_threads(&self, max: u32) -> Result<(), BinderError> {
        self.inner.max_threads.store(max, Ordering::Relaxed);
        self.inner
            .device
            .set_max_threads(max)
            .map_err(BinderError::Device)
    }

    /// Starts the thread pool: one looper thread now, more when the driver asks
    /// (`BR_SPAWN_LOOPER`). Incoming calls and death notifications need it.
    pub fn start_thread_pool(&self) -> Result<(), BinderError> {
        if self.inner.pool_started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.set_max_threads(self.inner.max_threads.load(Ordering::Relaxed))?;
        self.inner.spawn_pool_thread(LooperKind::Main)
    }

    /// Makes the calling thread a looper of the pool. Returns `Ok` after
    /// [`shutdown`](Self::shutdown), [`BinderError::DeviceGone`] when the device went away
    /// (the shim closed, the kernel device was released), another error when the device
    /// failed.
    pub fn join_thread_pool(&self) -> Result<(), BinderError> {
        self.inner.pool_started.store(true, Ordering::Release);
        let looper = Looper::count(self.inner.clone(), LooperKind::Main);
        self.inner.join_pool(&looper)
    }

    /// Ends this binder process: the pool threads stop, local services are let go, and the
    /// device is closed once the last handle to this `ProcessState` is dropped (its fds and
    /// mapping go with it; for the driver it is process exit: holders of its binders get
    /// death notifications). Calls made afterwards fail with [`BinderError::DeadObject`].
    /// Waits up to `timeout` for the pool threads to leave.
    pub fn shutdown(&self, timeout: std::time::Duration) -> Result<(), BinderError> {
        self.inner.stopping.store(true, Ordering::Release);
        *lock(&self.inner.context_object) = None;
        let locals = std::mem::take(&mut *lock(&self.inner.locals));
        drop(locals);
        self.inner.device.shutdown();
        let deadline = std::time::Instant::now() + timeout;
        while self.inner.pool_threads.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() > deadline {
                return Err(BinderError::TimedOut(format!(
                    "{} binder pool threads still running",
                    self.inner.pool_threads.load(Ordering::Acquire)
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(())
    }

    /// The context manager (handle 0), as a proxy. In the context manager's own process it
    /// is [`BinderError::OwnContextManager`]: the driver refuses that process a reference to
    /// (and calls through) handle 0.
    pub fn context_object(&self) -> Result<Binder, BinderError> {
        if lock(&self.inner.context_object).is_some() {
            return Err(BinderError::OwnContextManager);
        }
        Ok(Binder::Remote(self.inner.proxy_for(0)?))
    }

    /// Becomes the context manager with `service` as the object behind handle 0
    /// (`BINDER_SET_CONTEXT_MGR_EXT`, accepting fds). When another one exists (the driver's
    /// `EBUSY`) it is [`BinderError::ContextManagerExists`]. Afterwards this process's calls
    /// to handle 0 are [`BinderError::OwnContextManager`] (the driver refuses them).
    pub fn become_context_manager(&self, service: Arc<dyn Service>) -> Result<(), BinderError> {
        let ptr = Arc::as_ptr(&service) as *const () as u64;
        let obj = FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_BINDER,
            },
            flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
            binder: ptr,
            cookie: ptr,
        };
        self.inner
            .device
            .set_context_mgr_ext(&obj)
            .map_err(|e| match e {
                Errno::EBUSY => BinderError::ContextManagerExists,
                e => BinderError::Device(e),
            })?;
        lock(&self.inner.locals).insert(
            ptr,
            LocalNode {
                service: service.clone(),
                strong: 1,
                weak: 1,
            },
        );
        *lock(&self.inner.context_object) = Some(service);
        Ok(())
    }

    /// The parcel-level object for `binder`, registering a local service with this process
    /// so that the driver's calls reach it.
    pub fn flatten(&self, binder: &Binder) -> Result<BinderObject, BinderError> {
        match binder {
            Binder::Local(s) => {
                let ptr = Arc::as_ptr(s) as *const () as u64;
                self.inner.remember_local(ptr, s);
                lock(&self.inner.locals)
                    .entry(ptr)
                    .or_insert_with(|| LocalNode {
                        service: s.clone(),
                        strong: 0,
                        weak: 0,
                    });
                Ok(BinderObject::local(ptr, ptr))
            }
            Binder::Remote(p) => {
                if !p.process.ptr_eq(&self.inner.weak_self) {
                    return Err(BinderError::BadValue(
                        "a proxy belongs to the binder process that received it".into(),
                    ));
                }
                Ok(BinderObject::handle(p.handle))
            }
        }
    }

    /// The binder a received parcel names: the local service for our own node, a proxy
    /// (created with its references) for a handle.
    pub fn unflatten(&self, obj: BinderObject) -> Result<Binder, BinderError> {
        match obj {
            BinderObject::Local { ptr, .. } => self
                .inner
                .local(ptr)
                .map(Binder::Local)
                .ok_or_else(|| BinderError::BadValue(format!("no local binder at {ptr:#x}"))),
            BinderObject::Handle { handle, .. } => {
                Ok(Binder::Remote(self.inner.proxy_for(handle)?))
            }
        }
    }

    /// Writes `binder` into `parcel` (strong reference); the parcel holds the binder until it
    /// is dropped, as libbinder's Parcel does.
    pub fn write_binder(
        &self,
        parcel: &mut crate::binder_ipc::parcel::Parcel,
        binder: &Binder,
    ) -> Result<(), BinderError> {
        let obj = self.flatten(binder)?;
        parcel.write_binder(obj)?;
        // The parcel keeps the binder (a proxy's references on its handle) until it is
        // dropped, which is after the write that sends it: a proxy the caller drops at once
        // cannot release the handle before the driver has translated it.
        parcel.hold(Box::new(binder.clone()));
        Ok(())
    }

    /// Reads a binder from `parcel`; `None` for a null binder.
    pub fn read_binder(
        &self,
        parcel: &mut crate::binder_ipc::parcel::Parcel,
    ) -> Result<Option<Binder>, BinderError> {
        match parcel.read_binder()? {
            Some(obj) => self.unflatten(obj).map(Some),
            None => Ok(None),
        }
    }

    /// What happens when a service of this process panics in a call (default
    /// [`PanicPolicy::ReplyError`]).
    pub fn set_panic_policy(&self, policy: PanicPolicy) {
        self.inner
            .panic_policy
            .store(policy as u8, Ordering::Release);
    }

    /// The panic policy in force.
    pub fn panic_policy(&self) -> PanicPolicy {
        self.inner.panic_policy()
    }

    /// Panics caught in this process's services so far.
    pub fn panic_count(&self) -> u64 {
        self.inner.panics.load(Ordering::Acquire)
    }

    /// Calls `f` once when the binder device goes away (at once if it already has). The
    /// pool's threads end, every proxy's death recipients fire, and
    /// [`join_thread_pool`](Self::join_thread_pool) returns the same error.
    pub fn on_device_gone(&self, f: DeviceGoneFn) {
        // `gone` is read under the callbacks' lock: `went_away` sets it before taking them,
        // so `f` is either taken by it or called here.
        let mut callbacks = lock(&self.inner.on_gone);
        let gone = lock(&self.inner.gone).clone();
        match gone {
            Some(reason) => {
                drop(callbacks);
                f(&BinderError::DeviceGone(reason));
            }
            None => callbacks.push(f),
        }
    }

    /// [`BinderError::DeviceGone`] once the device went away, else `None`.
    pub fn device_gone(&self) -> Option<BinderError> {
        lock(&self.inner.gone).clone().map(BinderError::DeviceGone)
    }

    /// Number of local binders the driver holds references to (for tests and dumps).
    pub fn local_binder_count(&self) -> usize {
        lock(&self.inner.locals).len()
    }
}

impl Inner {
    /// The proxy for `handle`, created when missing, with its references taken at once (a
    /// handle that arrived in a parcel is held by the buffer only until it is freed).
    pub(super) fn proxy_for(&self, handle: u32) -> Result<Arc<Proxy>, BinderError> {
        let mut map = lock(&self.proxies);
        if let Some(p) = map.get(&handle).and_then(Weak::upgrade) {
            return Ok(p);
        }
        let p = Arc::new(Proxy {
            handle,
            process: self.weak_self.clone(),
            dead: AtomicBool::new(false),
            recipients: Mutex::new(Vec::new()),
            death_requested: AtomicBool::new(false),
        });
        map.insert(handle, Arc::downgrade(&p));
        drop(map);
        // The references go to the driver before anything else this thread writes, so a
        // buffer freed later cannot drop the handle first.
        let mut w = CommandWriter::new();
        w.cmd_with(BC_INCREFS, &handle)
            .cmd_with(BC_ACQUIRE, &handle);
        self.write_now(w.as_bytes())?;
        Ok(p)
    }

    /// A proxy is going away: drop its references (and its death notification).
    pub(super) fn drop_proxy(&self, p: &Proxy) {
        {
            let mut map = lock(&self.proxies);
            if map.get(&p.handle).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&p.handle);
            }
        }
        let mut w = CommandWriter::new();
        if p.death_requested.load(Ordering::Acquire) {
            lock(&self.deaths).remove(&p.cookie());
            let hc = BinderHandleCookie {
                handle: p.handle,
                cookie: p.cookie(),
            };
            w.cmd_with(BC_CLEAR_DEATH_NOTIFICATION, &hc);
        }
        w.cmd_with(BC_RELEASE, &p.handle)
            .cmd_with(BC_DECREFS, &p.handle);
        self.queue(w.as_bytes());
    }

    pub(super) fn request_death(&self, p: &Arc<Proxy>) -> Result<(), BinderError> {
        lock(&self.deaths).insert(p.cookie(), Arc::downgrade(p));
        let hc = BinderHandleCookie {
            handle: p.handle,
            cookie: p.cookie(),
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_REQUEST_DEATH_NOTIFICATION, &hc);
        self.write_now(w.as_bytes())
    }

    pub(super) fn clear_death(&self, p: &Proxy) -> Result<(), BinderError> {
        lock(&self.deaths).remove(&p.cookie());
        let hc = BinderHandleCookie {
            handle: p.handle,
            cookie: p.cookie(),
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_CLEAR_DEATH_NOTIFICATION, &hc);
        self.write_now(w.as_bytes())
    }

    /// The local service at `ptr`: registered with the driver, else one written earlier
    /// that is still alive.
    pub(super) fn local(&self, ptr: u64) -> Option<Arc<dyn Service>> {
        let registered = lock(&self.locals).get(&ptr).map(|n| n.service.clone());
        registered.or_else(|| self.known_local(ptr))
    }

    /// A service written into a parcel once and still alive somewhere (its allocation is
    /// kept by the weak reference, so `ptr` names no other service meanwhile).
    fn known_local(&self, ptr: u64) -> Option<Arc<dyn Service>> {
        lock(&self.known_locals).get(&ptr).and_then(Weak::upgrade)
    }

    /// Remembers `service` by its pointer; forgets dead ones when the table doubled.
    fn remember_local(&self, ptr: u64, service: &Arc<dyn Service>) {
        let mut known = lock(&self.known_locals);
        known.insert(ptr, Arc::downgrade(service));
        if known.len() >= self.known_locals_prune_at.load(Ordering::Relaxed) as usize {
            known.retain(|_, w| w.strong_count() > 0);
            let next = (known.len() as u32).saturating_mul(2).max(64);
            self.known_locals_prune_at.store(next, Ordering::Relaxed);
        }
    }

    /// BR_INCREFS / BR_ACQUIRE / BR_RELEASE / BR_DECREFS for local node `ptr`.
    pub(super) fn node_refs(&self, ptr: u64, strong: bool, inc: bool) {
        let mut locals = lock(&self.locals);
        if inc && !locals.contains_key(&ptr) {
            // The decrements of an earlier round may have removed the node after it was
            // written again (the driver then sends new increments): registered again.
            if let Some(service) = self.known_local(ptr) {
                locals.insert(
                    ptr,
                    LocalNode {
                        service,
                        strong: 0,
                        weak: 0,
                    },
                );
            }
        }
        let Some(n) = locals.get_mut(&ptr) else {
            return;
        };
        let c = if strong { &mut n.strong } else { &mut n.weak };
        if inc {
            *c += 1;
        } else {
            *c = c.saturating_sub(1);
        }
        if n.strong == 0 && n.weak == 0 {
            locals.remove(&ptr);
        }
    }

    pub(super) fn panic_policy(&self) -> PanicPolicy {
        match self.panic_policy.load(Ordering::Acquire) {
            x if x == PanicPolicy::Abort as u8 => PanicPolicy::Abort,
            _ => PanicPolicy::ReplyError,
        }
    }

    /// The device went away (`reason` says how): the first caller marks it, fires every
    /// proxy's death recipients and the [`ProcessState::on_device_gone`] callbacks. Returns
    /// the error for the caller to report.
    pub(super) fn went_away(&self, reason: String) -> BinderError {
        {
            let mut gone = lock(&self.gone);
            if let Some(first) = gone.as_ref() {
                return BinderError::DeviceGone(first.clone());
            }
            *gone = Some(reason.clone());
            self.is_gone.store(true, Ordering::Release);
        }
        let error = BinderError::DeviceGone(reason);
        let cookies: Vec<u64> = lock(&self.deaths).keys().copied().collect();
        for c in cookies {
            self.dead_binder(c);
        }
        let callbacks = std::mem::take(&mut *lock(&self.on_gone));
        for f in callbacks {
            f(&error);
        }
        error
    }

    /// BR_DEAD_BINDER: tell the proxy's recipients.
    pub(super) fn dead_binder(&self, cookie: u64) {
        let p = lock(&self.deaths).get(&cookie).and_then(Weak::upgrade);
        if let Some(p) = p {
            p.dead.store(true, Ordering::Release);
            let list: Vec<_> = std::mem::take(&mut *lock(&p.recipients));
            for r in list {
                r.binder_died();
            }
        }
    }
}
