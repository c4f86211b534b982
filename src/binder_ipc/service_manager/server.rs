//! The service manager: the context manager (handle 0) that maps names to binders.

use super::codes::{Method, Numbering};
use super::types::{ConnectionInfo, ServiceDebugInfo, ServiceUnion, ServiceWithMetadata};
use super::{
    valid_name, CALLBACK_DESCRIPTOR, DESCRIPTOR, DUMP_FLAG_PRIORITY_DEFAULT, FLAG_IS_LAZY_SERVICE,
    MAX_CALLBACKS_PER_NAME, MAX_NAMES, ON_REGISTRATION, SELF_NAME,
};
use crate::binder_ipc::parcel::{
    AidlException, Parcel, EX_ILLEGAL_ARGUMENT, EX_ILLEGAL_STATE, EX_NULL_POINTER, EX_SECURITY,
    EX_UNSUPPORTED_OPERATION,
};
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
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
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
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
    client_callbacks: Vec<Binder>,
}

/// The service manager itself: run it with [`ServiceManager::serve`].
pub struct ServiceManager {
    services: Mutex<BTreeMap<String, Entry>>,
    /// Signalled whenever a name is added (for [`ServiceManager::wait_for_local`]).
    added: Condvar,
    callbacks: Mutex<BTreeMap<String, Vec<Binder>>>,
    policy: AccessPolicy,
    numbering: Numbering,
    /// Calls refused because a bound was reached (names, callbacks).
    refused_over_limit: AtomicU64,
    process: OnceLock<ProcessState>,
    weak_self: Weak<ServiceManager>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes an AIDL exception as the whole reply.
fn exception(reply: &mut Parcel, code: i32, message: String) -> Result<(), BinderError> {
    reply.write_exception(&AidlException::new(code, message))?;
    Ok(())
}

/// The name argument every method but `listServices` and `getServiceDebugInfo` starts with
/// (`@utf8InCpp String`, non-null).
fn read_name(data: &mut Parcel) -> Result<String, BinderError> {
    Ok(data.read_required_string16()?)
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
            process: OnceLock::new(),
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
        let _ = sm.process.set(ps.clone());
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
        let waiting: Vec<Binder> = lock(&self.callbacks).get(name).cloned().unwrap_or_default();
        if let Some(ps) = self.process.get() {
            for cb in waiting {
                let _ = notify(ps, &cb, name, &binder);
            }
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

    fn over_limit(&self, reply: &mut Parcel, what: String) -> Result<(), BinderError> {
        self.refused_over_limit.fetch_add(1, Ordering::Relaxed);
        exception(reply, EX_ILLEGAL_STATE, what)
    }
}

fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

/// Calls `IServiceCallback.onRegistration(name, binder)` (oneway).
fn notify(ps: &ProcessState, cb: &Binder, name: &str, binder: &Binder) -> Result<(), BinderError> {
    let mut data = Parcel::new();
    data.write_interface_token(CALLBACK_DESCRIPTOR)?;
    data.write_utf8_as_utf16(name)?;
    ps.write_binder(&mut data, binder)?;
    cb.transact_oneway(ON_REGISTRATION, &data)
}

/// One call: its arguments, its reply and who made it.
struct Call<'a> {
    data: &'a mut Parcel,
    reply: &'a mut Parcel,
    ctx: &'a CallContext,
}

impl Service for ServiceManager {
    fn descriptor(&self) -> &str {
        DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        ctx: &CallContext,
    ) -> Result<(), BinderError> {
        // A code this numbering does not have is UNKNOWN_TRANSACTION, never another method.
        let Some(method) = self.numbering.method(code) else {
            return Err(BinderError::UnknownTransaction(code));
        };
        data.enforce_interface(DESCRIPTOR)?;
        let mut call = Call { data, reply, ctx };
        self.dispatch(method, &mut call)
    }
}

impl ServiceManager {
    fn dispatch(&self, method: Method, call: &mut Call<'_>) -> Result<(), BinderError> {
        match method {
            Method::GetService | Method::CheckService => {
                let name = read_name(call.data)?;
                if let Err(why) = self.check_access(Access::Find, &name, call.ctx) {
                    return exception(call.reply, EX_SECURITY, why);
                }
                call.reply.write_no_exception()?;
                match self.lookup(&name) {
                    Some(b) => call.ctx.process.write_binder(call.reply, &b),
                    None => Ok(call.reply.write_null_binder()?),
                }
            }
            Method::GetService2 | Method::CheckService2 => {
                let name = read_name(call.data)?;
                if let Err(why) = self.check_access(Access::Find, &name, call.ctx) {
                    return exception(call.reply, EX_SECURITY, why);
                }
                let found = lock(&self.services).get(&name).and_then(|e| {
                    let lazy = e.dump_priority & FLAG_IS_LAZY_SERVICE != 0;
                    self.binder_of(e).map(|b| (b, lazy))
                });
                let (service, is_lazy_service) = match found {
                    Some((b, lazy)) => (Some(b), lazy),
                    None => (None, false),
                };
                let union = ServiceUnion::ServiceWithMetadata(ServiceWithMetadata {
                    service,
                    is_lazy_service,
                });
                call.reply.write_no_exception()?;
                union.write(&call.ctx.process, call.reply)
            }
            Method::AddService => self.add_service(call),
            Method::ListServices => {
                let priority = call.data.read_i32()?;
                let names: Vec<String> = lock(&self.services)
                    .iter()
                    .filter(|(_, e)| e.dump_priority & priority != 0)
                    .filter(|(n, _)| self.check_access(Access::List, n, call.ctx).is_ok())
                    .map(|(n, _)| n.clone())
                    .collect();
                call.reply.write_no_exception()?;
                Ok(call.reply.write_string16_array(&names)?)
            }
            Method::RegisterForNotifications => self.register_for_notifications(call),
            Method::UnregisterForNotifications => self.unregister_for_notifications(call),
            Method::RegisterClientCallback => self.register_client_callback(call),
            Method::TryUnregisterService => self.try_unregister_service(call),
            Method::GetServiceDebugInfo => {
                let infos: Vec<ServiceDebugInfo> = lock(&self.services)
                    .iter()
                    .filter(|(n, _)| self.check_access(Access::List, n, call.ctx).is_ok())
                    .map(|(name, e)| ServiceDebugInfo {
                        name: name.clone(),
                        debug_pid: e.pid,
                    })
                    .collect();
                call.reply.write_no_exception()?;
                Ok(ServiceDebugInfo::write_array(&infos, call.reply)?)
            }
            Method::IsDeclared
            | Method::GetDeclaredInstances
            | Method::UpdatableViaApex
            | Method::GetUpdatableNames
            | Method::GetConnectionInfo => self.undeclared(method, call),
        }
    }

    /// The VINTF/APEX methods: this manager has no manifest and no APEX, so nothing is
    /// declared, updatable or reachable over RPC (the answers AOSP gives for such a name).
    fn undeclared(&self, method: Method, call: &mut Call<'_>) -> Result<(), BinderError> {
        let _name = read_name(call.data)?;
        call.reply.write_no_exception()?;
        match method {
            Method::IsDeclared => call.reply.write_bool(false)?,
            Method::UpdatableViaApex => call.reply.write_nullable_string16(None)?,
            Method::GetConnectionInfo => ConnectionInfo::write_nullable(None, call.reply)?,
            // getDeclaredInstances, getUpdatableNames: an empty String[].
            _ => call.reply.write_string16_array::<&str>(&[])?,
        }
        Ok(())
    }

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
