//! The service manager: the context manager (handle 0) that maps names to binders.

use super::aidl::{IClientCallback, IServiceCallback, IServiceManager};
use super::codes::Numbering;
use super::{DESCRIPTOR, DUMP_FLAG_PRIORITY_DEFAULT, SELF_NAME};
use crate::binder_ipc::parcel::{AidlException, Parcel, EX_ILLEGAL_STATE};
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

mod calls;

/// What a caller asks to do with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Register it (addService, client callbacks, tryUnregisterService).
    Add,
    /// Look it up (getService, checkService and their `2` forms).
    Find,
    /// See it in listServices (names refused are left out).
    List,
}

/// Who asks to do what with a name.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// What the caller asks.
    pub action: Access,
    /// The name.
    pub name: &'a str,
    /// The caller's pid (from the driver).
    pub pid: i32,
    /// The caller's euid (from the driver).
    pub uid: u32,
}

/// Decides whether a caller may add a name: `Ok(())`, or the reason for refusing.
pub type AccessPolicy = Arc<dyn Fn(&AccessRequest<'_>) -> Result<(), String> + Send + Sync>;

/// The default policy: the manager's own uid or root may add any name; anyone finds and lists.
pub fn default_policy() -> AccessPolicy {
    let me = nix::unistd::geteuid().as_raw();
    Arc::new(move |req: &AccessRequest<'_>| {
        if req.action != Access::Add || req.uid == me || req.uid == 0 {
            Ok(())
        } else {
            Err(format!(
                "uid {} may not add '{}': only the service manager's uid {me} or root may",
                req.uid, req.name
            ))
        }
    })
}

/// A registered name.
struct Entry {
    /// The service; `None` for the manager itself (held weakly, so that the manager's own
    /// entry does not keep it alive).
    binder: Option<Binder>,
    dump_priority: i32,
    /// The process that registered it (the manager's own pid for local services).
    pid: i32,
    /// `IClientCallback`s registered by the service's own process.
    client_callbacks: Vec<IClientCallback::Proxy>,
}

/// The service manager itself: run it with [`ServiceManager::serve`].
pub struct ServiceManager {
    services: Mutex<BTreeMap<String, Entry>>,
    /// Signalled whenever a name is added (for [`ServiceManager::wait_for_local`]).
    added: Condvar,
    callbacks: Mutex<BTreeMap<String, Vec<IServiceCallback::Proxy>>>,
    policy: AccessPolicy,
    numbering: Numbering,
    /// Calls refused because a bound was reached (names, callbacks).
    refused_over_limit: AtomicU64,
    weak_self: Weak<ServiceManager>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An AIDL exception: the generated stub writes it as the whole reply.
fn exception(code: i32, message: String) -> BinderError {
    BinderError::Exception(AidlException::new(code, message))
}

impl ServiceManager {
    /// A service manager with `policy`, answering Android 16's numbering.
    pub fn new(policy: AccessPolicy) -> Arc<ServiceManager> {
        Self::with_numbering(policy, Numbering::default())
    }

    /// A service manager with `policy` that answers `numbering`'s codes.
    pub fn with_numbering(policy: AccessPolicy, numbering: Numbering) -> Arc<ServiceManager> {
        Arc::new_cyclic(|weak| ServiceManager {
            services: Mutex::new(BTreeMap::new()),
            added: Condvar::new(),
            callbacks: Mutex::new(BTreeMap::new()),
            policy,
            numbering,
            refused_over_limit: AtomicU64::new(0),
            weak_self: weak.clone(),
        })
    }

    /// Makes `ps` the context manager with a new service manager (Android 16's numbering),
    /// registers it as `"manager"` and starts the thread pool.
    pub fn serve(
        ps: &ProcessState,
        policy: AccessPolicy,
    ) -> Result<Arc<ServiceManager>, BinderError> {
        Self::serve_with(ps, policy, Numbering::default())
    }

    /// [`ServiceManager::serve`] answering `numbering`'s codes.
    pub fn serve_with(
        ps: &ProcessState,
        policy: AccessPolicy,
        numbering: Numbering,
    ) -> Result<Arc<ServiceManager>, BinderError> {
        let sm = ServiceManager::with_numbering(policy, numbering);
        // The kernel lets go of a dead manager's role a little after its process exits.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match ps.become_context_manager(sm.clone()) {
                Err(BinderError::ContextManagerExists) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                r => break r?,
            }
        }
        // AOSP's servicemanager registers itself, under "manager", as DEFAULT priority.
        let me = Entry {
            binder: None,
            dump_priority: DUMP_FLAG_PRIORITY_DEFAULT,
            pid: own_pid(),
            client_callbacks: Vec::new(),
        };
        lock(&sm.services).insert(SELF_NAME.to_owned(), me);
        ps.start_thread_pool()?;
        Ok(sm)
    }

    /// The numbering this manager answers.
    pub fn numbering(&self) -> Numbering {
        self.numbering
    }

    /// Adds a service of the manager's own process (which cannot call itself through
    /// handle 0). No policy check: the manager's process is trusted.
    pub fn add_local(&self, name: &str, binder: Binder) {
        self.insert(name, binder, DUMP_FLAG_PRIORITY_DEFAULT, own_pid());
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.services).keys().cloned().collect()
    }

    /// The binder registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<Binder> {
        lock(&self.services)
            .get(name)
            .and_then(|e| self.binder_of(e))
    }

    /// Waits, in the manager's own process, until `name` is registered, up to `timeout`
    /// (the local equivalent of [`ServiceManagerClient::wait_for_service`]: this process
    /// cannot call handle 0, the driver refuses a context manager's calls to itself).
    ///
    /// [`ServiceManagerClient::wait_for_service`]: super::ServiceManagerClient::wait_for_service
    pub fn wait_for_local(&self, name: &str, timeout: Duration) -> Result<Binder, BinderError> {
        let deadline = Instant::now() + timeout;
        let mut services = lock(&self.services);
        loop {
            if let Some(b) = services.get(name).and_then(|e| self.binder_of(e)) {
                return Ok(b);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BinderError::TimedOut(format!(
                    "no service '{name}' after {timeout:?}"
                )));
            }
            services = self
                .added
                .wait_timeout(services, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Calls refused because a bound on names or callbacks was reached.
    pub fn refused_over_limit(&self) -> u64 {
        self.refused_over_limit.load(Ordering::Relaxed)
    }

    fn insert(&self, name: &str, binder: Binder, dump_priority: i32, pid: i32) {
        if let Binder::Remote(p) = &binder {
            let weak = self.weak_self.clone();
            let key = name.to_owned();
            let dead = binder.clone();
            let _ = p.link_to_death(Arc::new(move || {
                if let Some(sm) = weak.upgrade() {
                    let mut s = lock(&sm.services);
                    let same = |e: &Entry| e.binder.as_ref().is_some_and(|b| b.same_as(&dead));
                    if s.get(&key).is_some_and(same) {
                        s.remove(&key);
                    }
                }
            }));
        }
        let entry = Entry {
            binder: Some(binder.clone()),
            dump_priority,
            pid,
            client_callbacks: Vec::new(),
        };
        lock(&self.services).insert(name.to_owned(), entry);
        self.added.notify_all();
        let waiting = lock(&self.callbacks).get(name).cloned().unwrap_or_default();
        for cb in waiting {
            // Oneway: a callback whose process is gone only fails its own call.
            let _ = cb.onRegistration(name, &binder);
        }
    }

    /// The binder of an entry (the manager itself for its own entry, while it lives).
    fn binder_of(&self, e: &Entry) -> Option<Binder> {
        match &e.binder {
            Some(b) => Some(b.clone()),
            None => {
                let me: Arc<dyn Service> = self.weak_self.upgrade()?;
                Some(Binder::Local(me))
            }
        }
    }

    /// Counts a call refused at a bound; the error it answers (EX_ILLEGAL_STATE).
    fn over_limit(&self, what: String) -> BinderError {
        self.refused_over_limit.fetch_add(1, Ordering::Relaxed);
        exception(EX_ILLEGAL_STATE, what)
    }
}

fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

impl Service for ServiceManager {
    fn descriptor(&self) -> &str {
        DESCRIPTOR
    }

    /// Maps the code of the manager's numbering to the method's Android 16 code, then lets
    /// the generated `IServiceManager` stub decode the call. A code this numbering does not
    /// have is UNKNOWN_TRANSACTION, never another method.
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        ctx: &CallContext,
    ) -> Result<(), BinderError> {
        let android16 = self
            .numbering
            .method(code)
            .and_then(|m| Numbering::Android16.code(m))
            .ok_or(BinderError::UnknownTransaction(code))?;
        IServiceManager::dispatch(self, android16, data, reply, ctx)
    }
}

impl ServiceManager {
    fn check_policy(&self, name: &str, ctx: &CallContext) -> Result<(), String> {
        self.check_access(Access::Add, name, ctx)
    }

    fn check_access(&self, action: Access, name: &str, ctx: &CallContext) -> Result<(), String> {
        let req = AccessRequest {
            action,
            name,
            pid: ctx.pid,
            uid: ctx.uid,
        };
        (self.policy)(&req)
    }
}
