//! The service manager: the context manager (handle 0) that maps names to binders, and its
//! client.
//!
//! The wire protocol is `android.os.IServiceManager` (Android 11+ AIDL codes): `getService`
//! 1, `checkService` 2, `addService` 3, `listServices` 4, `registerForNotifications` 5,
//! `unregisterForNotifications` 6; callbacks are `android.os.IServiceCallback`
//! `onRegistration` (oneway, code 1). Replies start with the AIDL exception header.
//!
//! An [`AccessPolicy`] decides who may add which name (default: the manager's own uid or
//! root); a refusal reaches the caller as [`BinderError::PermissionDenied`] with the reason.
//! A service whose process dies leaves the list.

use crate::binder_ipc::parcel::{AidlException, Parcel, EX_ILLEGAL_ARGUMENT, EX_SECURITY};
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The interface descriptor.
pub const DESCRIPTOR: &str = "android.os.IServiceManager";
/// The callback interface descriptor.
pub const CALLBACK_DESCRIPTOR: &str = "android.os.IServiceCallback";
/// `getService`.
pub const GET_SERVICE: u32 = 1;
/// `checkService`.
pub const CHECK_SERVICE: u32 = 2;
/// `addService`.
pub const ADD_SERVICE: u32 = 3;
/// `listServices`.
pub const LIST_SERVICES: u32 = 4;
/// `registerForNotifications`.
pub const REGISTER_FOR_NOTIFICATIONS: u32 = 5;
/// `unregisterForNotifications`.
pub const UNREGISTER_FOR_NOTIFICATIONS: u32 = 6;
/// `IServiceCallback.onRegistration`.
pub const ON_REGISTRATION: u32 = 1;
/// `listServices` dump priority: all.
pub const DUMP_FLAG_PRIORITY_ALL: i32 = 0xf;

/// Who asks to add a name.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The name.
    pub name: &'a str,
    /// The caller's pid (from the driver).
    pub pid: i32,
    /// The caller's euid (from the driver).
    pub uid: u32,
}

/// Decides whether a caller may add a name: `Ok(())`, or the reason for refusing.
pub type AccessPolicy = Arc<dyn Fn(&AccessRequest<'_>) -> Result<(), String> + Send + Sync>;

/// The default policy: the manager's own uid or root may add any name.
pub fn default_policy() -> AccessPolicy {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    Arc::new(move |req: &AccessRequest<'_>| {
        if req.uid == me || req.uid == 0 {
            Ok(())
        } else {
            Err(format!(
                "uid {} may not add '{}': only the service manager's uid {me} or root may",
                req.uid, req.name
            ))
        }
    })
}

struct Entry {
    binder: Binder,
}

/// The service manager itself: run it with [`ServiceManager::serve`].
pub struct ServiceManager {
    services: Mutex<BTreeMap<String, Entry>>,
    callbacks: Mutex<Vec<(String, Binder)>>,
    policy: AccessPolicy,
    process: OnceLock<ProcessState>,
    weak_self: Weak<ServiceManager>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceManager {
    /// A service manager with `policy`.
    pub fn new(policy: AccessPolicy) -> Arc<ServiceManager> {
        Arc::new_cyclic(|weak| ServiceManager {
            services: Mutex::new(BTreeMap::new()),
            callbacks: Mutex::new(Vec::new()),
            policy,
            process: OnceLock::new(),
            weak_self: weak.clone(),
        })
    }

    /// Makes `ps` the context manager with a new service manager and starts its thread pool.
    pub fn serve(
        ps: &ProcessState,
        policy: AccessPolicy,
    ) -> Result<Arc<ServiceManager>, BinderError> {
        let sm = ServiceManager::new(policy);
        let _ = sm.process.set(ps.clone());
        // The kernel lets go of a dead manager's role a little after its process exits.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match ps.become_context_manager(sm.clone()) {
                Err(BinderError::Device(nix::errno::Errno::EBUSY)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                r => break r?,
            }
        }
        ps.start_thread_pool()?;
        Ok(sm)
    }

    /// Adds a service of the manager's own process (which cannot call itself through
    /// handle 0). No policy check: the manager's process is trusted.
    pub fn add_local(&self, name: &str, binder: Binder) {
        self.insert(name, binder);
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.services).keys().cloned().collect()
    }

    /// The binder registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<Binder> {
        lock(&self.services).get(name).map(|e| e.binder.clone())
    }

    fn insert(&self, name: &str, binder: Binder) {
        if let Binder::Remote(p) = &binder {
            let weak = self.weak_self.clone();
            let key = name.to_owned();
            let dead = binder.clone();
            let _ = p.link_to_death(Arc::new(move || {
                if let Some(sm) = weak.upgrade() {
                    let mut s = lock(&sm.services);
                    if s.get(&key).is_some_and(|e| e.binder.same_as(&dead)) {
                        s.remove(&key);
                    }
                }
            }));
        }
        lock(&self.services).insert(
            name.to_owned(),
            Entry {
                binder: binder.clone(),
            },
        );
        let waiting: Vec<Binder> = lock(&self.callbacks)
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, cb)| cb.clone())
            .collect();
        if let Some(ps) = self.process.get() {
            for cb in waiting {
                let _ = notify(ps, &cb, name, &binder);
            }
        }
    }
}

/// Calls `IServiceCallback.onRegistration(name, binder)` (oneway).
fn notify(ps: &ProcessState, cb: &Binder, name: &str, binder: &Binder) -> Result<(), BinderError> {
    let mut data = Parcel::new();
    data.write_interface_token(CALLBACK_DESCRIPTOR)?;
    data.write_utf8_as_utf16(name)?;
    ps.write_binder(&mut data, binder)?;
    cb.transact_oneway(ON_REGISTRATION, &data)
}

fn exception(reply: &mut Parcel, code: i32, message: String) -> Result<(), BinderError> {
    reply.write_exception(&AidlException::new(code, message))?;
    Ok(())
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
        call: &CallContext,
    ) -> Result<(), BinderError> {
        data.enforce_interface(DESCRIPTOR)?;
        match code {
            GET_SERVICE | CHECK_SERVICE => {
                let name = data.read_utf8_from_utf16()?.unwrap_or_default();
                reply.write_no_exception()?;
                match self.lookup(&name) {
                    Some(b) => call.process.write_binder(reply, &b)?,
                    None => reply.write_null_binder()?,
                }
                Ok(())
            }
            ADD_SERVICE => {
                let name = data.read_utf8_from_utf16()?.unwrap_or_default();
                let binder = call.process.read_binder(data)?;
                let _allow_isolated = data.read_bool()?;
                let _dump_priority = data.read_i32()?;
                let Some(binder) = binder else {
                    return exception(
                        reply,
                        EX_ILLEGAL_ARGUMENT,
                        format!("null binder for '{name}'"),
                    );
                };
                if name.is_empty() || name.len() > 127 {
                    return exception(
                        reply,
                        EX_ILLEGAL_ARGUMENT,
                        format!("bad service name '{name}'"),
                    );
                }
                let req = AccessRequest {
                    name: &name,
                    pid: call.pid,
                    uid: call.uid,
                };
                if let Err(why) = (self.policy)(&req) {
                    return exception(reply, EX_SECURITY, why);
                }
                self.insert(&name, binder);
                reply.write_no_exception()?;
                Ok(())
            }
            LIST_SERVICES => {
                let _priority = data.read_i32()?;
                reply.write_no_exception()?;
                reply.write_string16_array(&self.names())?;
                Ok(())
            }
            REGISTER_FOR_NOTIFICATIONS => {
                let name = data.read_utf8_from_utf16()?.unwrap_or_default();
                let Some(cb) = call.process.read_binder(data)? else {
                    return exception(reply, EX_ILLEGAL_ARGUMENT, "null callback".into());
                };
                lock(&self.callbacks).push((name.clone(), cb.clone()));
                reply.write_no_exception()?;
                if let Some(b) = self.lookup(&name) {
                    let _ = notify(&call.process, &cb, &name, &b);
                }
                Ok(())
            }
            UNREGISTER_FOR_NOTIFICATIONS => {
                let name = data.read_utf8_from_utf16()?.unwrap_or_default();
                let cb = call.process.read_binder(data)?;
                if let Some(cb) = cb {
                    lock(&self.callbacks).retain(|(n, b)| !(n == &name && b.same_as(&cb)));
                }
                reply.write_no_exception()?;
                Ok(())
            }
            other => Err(BinderError::UnknownTransaction(other)),
        }
    }
}

/// A client of the service manager (handle 0).
#[derive(Clone, Debug)]
pub struct ServiceManagerClient {
    ps: ProcessState,
    sm: Binder,
}

impl ServiceManagerClient {
    /// The service manager of `ps`'s driver.
    pub fn new(ps: &ProcessState) -> Result<ServiceManagerClient, BinderError> {
        Ok(ServiceManagerClient {
            ps: ps.clone(),
            sm: ps.context_object()?,
        })
    }

    fn call(&self, code: u32, data: &Parcel) -> Result<Parcel, BinderError> {
        let mut reply = self.sm.transact(code, data)?;
        reply
            .read_exception()
            .map_err(crate::binder_ipc::interface::from_reply_error)?;
        Ok(reply)
    }

    fn named(&self, name: &str) -> Result<Parcel, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR)?;
        data.write_utf8_as_utf16(name)?;
        Ok(data)
    }

    /// Registers `binder` as `name`.
    pub fn add_service(&self, name: &str, binder: &Binder) -> Result<(), BinderError> {
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, binder)?;
        data.write_bool(false)?;
        data.write_i32(DUMP_FLAG_PRIORITY_ALL)?;
        self.call(ADD_SERVICE, &data).map(drop)
    }

    /// The service registered as `name`, if any (does not wait).
    pub fn check_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        let mut reply = self.call(CHECK_SERVICE, &self.named(name)?)?;
        self.ps.read_binder(&mut reply)
    }

    /// Same as [`check_service`](Self::check_service) (`getService`).
    pub fn get_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        let mut reply = self.call(GET_SERVICE, &self.named(name)?)?;
        self.ps.read_binder(&mut reply)
    }

    /// The registered names.
    pub fn list_services(&self) -> Result<Vec<String>, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR)?;
        data.write_i32(DUMP_FLAG_PRIORITY_ALL)?;
        let mut reply = self.call(LIST_SERVICES, &data)?;
        Ok(reply.read_string16_array()?.unwrap_or_default())
    }

    /// Calls `on_registered(name, binder)` when `name` is registered (at once if it is).
    /// Needs this process's thread pool. Returns the callback binder, for
    /// [`unregister_for_notifications`](Self::unregister_for_notifications).
    pub fn register_for_notifications(
        &self,
        name: &str,
        on_registered: impl Fn(&str, Binder) + Send + Sync + 'static,
    ) -> Result<Binder, BinderError> {
        let cb = Binder::new(Callback {
            f: Box::new(on_registered),
        });
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, &cb)?;
        self.call(REGISTER_FOR_NOTIFICATIONS, &data)?;
        Ok(cb)
    }

    /// Stops the notifications of `callback` for `name`.
    pub fn unregister_for_notifications(
        &self,
        name: &str,
        callback: &Binder,
    ) -> Result<(), BinderError> {
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, callback)?;
        self.call(UNREGISTER_FOR_NOTIFICATIONS, &data).map(drop)
    }

    /// Waits until `name` is registered, up to `timeout`. Uses a registration notification
    /// when this process's thread pool runs, and checks again every 50 ms either way.
    pub fn wait_for_service(&self, name: &str, timeout: Duration) -> Result<Binder, BinderError> {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::bounded::<Binder>(1);
        let cb = self
            .register_for_notifications(name, move |_, b| {
                let _ = tx.try_send(b);
            })
            .ok();
        let result = loop {
            if let Some(b) = self.check_service(name)? {
                break Ok(b);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(BinderError::TimedOut(format!(
                    "no service '{name}' after {timeout:?}"
                )));
            }
            if let Ok(b) = rx.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
                break Ok(b);
            }
        };
        if let Some(cb) = cb {
            let _ = self.unregister_for_notifications(name, &cb);
        }
        result
    }
}

/// What a registration callback runs.
type OnRegistered = Box<dyn Fn(&str, Binder) + Send + Sync>;

struct Callback {
    f: OnRegistered,
}

impl Service for Callback {
    fn descriptor(&self) -> &str {
        CALLBACK_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        _reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        if code != ON_REGISTRATION {
            return Err(BinderError::UnknownTransaction(code));
        }
        data.enforce_interface(CALLBACK_DESCRIPTOR)?;
        let name = data.read_utf8_from_utf16()?.unwrap_or_default();
        if let Some(b) = call.process.read_binder(data)? {
            (self.f)(&name, b);
        }
        Ok(())
    }
}
