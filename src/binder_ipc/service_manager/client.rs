//! A client of the service manager (handle 0): the generated `IServiceManager` proxy, with
//! the codes of an older release when asked ([`Renumbered`]).

use super::aidl::{IClientCallback, IServiceCallback, IServiceManager};
use super::codes::{Method, Numbering};
use super::types::{ConnectionInfo, ServiceDebugInfo, ServiceUnion};
use super::{DESCRIPTOR, DUMP_FLAG_PRIORITY_ALL, DUMP_FLAG_PRIORITY_DEFAULT};
use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use std::time::{Duration, Instant};

/// A client of the service manager (handle 0), speaking Android 16's numbering unless told
/// otherwise ([`ServiceManagerClient::with_numbering`]).
#[derive(Clone, Debug)]
pub struct ServiceManagerClient {
    ps: ProcessState,
    sm: IServiceManager::Proxy,
    numbering: Numbering,
}

impl ServiceManagerClient {
    /// The service manager of `ps`'s driver, spoken to with Android 16's numbering.
    pub fn new(ps: &ProcessState) -> Result<ServiceManagerClient, BinderError> {
        Self::with_numbering(ps, Numbering::default())
    }

    /// The service manager of `ps`'s driver, spoken to with `numbering`'s codes (for a
    /// manager of an older Android release).
    pub fn with_numbering(
        ps: &ProcessState,
        numbering: Numbering,
    ) -> Result<ServiceManagerClient, BinderError> {
        let remote = ps.context_object()?;
        let binder = match numbering {
            Numbering::Android16 => remote,
            _ => Binder::new(Renumbered { remote, numbering }),
        };
        Ok(ServiceManagerClient {
            ps: ps.clone(),
            sm: IServiceManager::Proxy::new(binder, ps),
            numbering,
        })
    }

    /// The numbering this client sends.
    pub fn numbering(&self) -> Numbering {
        self.numbering
    }

    /// The process this client calls from.
    pub fn process(&self) -> &ProcessState {
        &self.ps
    }

    /// The generated `IServiceManager` proxy this client calls through.
    pub fn proxy(&self) -> &IServiceManager::Proxy {
        &self.sm
    }

    /// Registers `binder` as `name` (not for isolated processes, dump priority DEFAULT, as
    /// libbinder's `addService` defaults).
    pub fn add_service(&self, name: &str, binder: &Binder) -> Result<(), BinderError> {
        self.add_service_with(name, binder, false, DUMP_FLAG_PRIORITY_DEFAULT)
    }

    /// `addService` with every argument.
    pub fn add_service_with(
        &self,
        name: &str,
        binder: &Binder,
        allow_isolated: bool,
        dump_priority: i32,
    ) -> Result<(), BinderError> {
        self.sm
            .addService(name, binder, allow_isolated, dump_priority)
    }

    /// The service registered as `name`, if any (`checkService`: does not wait).
    pub fn check_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        self.sm.checkService(name)
    }

    /// `getService` (AOSP's may start a lazy service; this manager's answers at once).
    pub fn get_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        self.sm.getService(name)
    }

    /// `getService2`: the `android.os.Service` union.
    pub fn get_service2(&self, name: &str) -> Result<ServiceUnion, BinderError> {
        self.sm.getService2(name)
    }

    /// `checkService2`: the `android.os.Service` union.
    pub fn check_service2(&self, name: &str) -> Result<ServiceUnion, BinderError> {
        self.sm.checkService2(name)
    }

    /// Every registered name (`listServices(DUMP_FLAG_PRIORITY_ALL)`).
    pub fn list_services(&self) -> Result<Vec<String>, BinderError> {
        self.list_services_with(DUMP_FLAG_PRIORITY_ALL)
    }

    /// The names registered with a dump priority in `dump_priority`.
    pub fn list_services_with(&self, dump_priority: i32) -> Result<Vec<String>, BinderError> {
        self.sm.listServices(dump_priority)
    }

    /// Calls `on_registered(name, binder)` when `name` is registered (at once if it is).
    /// Needs this process's thread pool. Returns the callback binder, for
    /// [`unregister_for_notifications`](Self::unregister_for_notifications).
    pub fn register_for_notifications(
        &self,
        name: &str,
        on_registered: impl Fn(&str, Binder) + Send + Sync + 'static,
    ) -> Result<Binder, BinderError> {
        let cb = IServiceCallback::Proxy::local(
            OnRegistration {
                f: Box::new(on_registered),
            },
            &self.ps,
        );
        self.sm.registerForNotifications(name, &cb)?;
        Ok(cb.binder().clone())
    }

    /// Stops the notifications of `callback` for `name`.
    pub fn unregister_for_notifications(
        &self,
        name: &str,
        callback: &Binder,
    ) -> Result<(), BinderError> {
        let cb = IServiceCallback::Proxy::new(callback.clone(), &self.ps);
        self.sm.unregisterForNotifications(name, &cb)
    }

    /// `isDeclared`: whether the manager's VINTF manifest declares `name`.
    pub fn is_declared(&self, name: &str) -> Result<bool, BinderError> {
        self.sm.isDeclared(name)
    }

    /// `getDeclaredInstances`: the declared instances of interface `iface`.
    pub fn get_declared_instances(&self, iface: &str) -> Result<Vec<String>, BinderError> {
        self.sm.getDeclaredInstances(iface)
    }

    /// `updatableViaApex`: the APEX that can update `name`, if any.
    pub fn updatable_via_apex(&self, name: &str) -> Result<Option<String>, BinderError> {
        self.sm.updatableViaApex(name)
    }

    /// `getUpdatableNames`: the names APEX `apex_name` can update.
    pub fn get_updatable_names(&self, apex_name: &str) -> Result<Vec<String>, BinderError> {
        self.sm.getUpdatableNames(apex_name)
    }

    /// `getConnectionInfo`: where `name` listens for RPC binder, if declared.
    pub fn get_connection_info(&self, name: &str) -> Result<Option<ConnectionInfo>, BinderError> {
        self.sm.getConnectionInfo(name)
    }

    /// `registerClientCallback`: `on_clients(has_clients)` runs when the manager reports a
    /// change in `service`'s clients. Only `service`'s own process may ask. Returns the
    /// callback binder.
    pub fn register_client_callback(
        &self,
        name: &str,
        service: &Binder,
        on_clients: impl Fn(bool) + Send + Sync + 'static,
    ) -> Result<Binder, BinderError> {
        let cb = IClientCallback::Proxy::local(
            OnClients {
                f: Box::new(on_clients),
            },
            &self.ps,
        );
        self.sm.registerClientCallback(name, service, &cb)?;
        Ok(cb.binder().clone())
    }

    /// `tryUnregisterService`: a lazy service asks to leave.
    pub fn try_unregister_service(&self, name: &str, service: &Binder) -> Result<(), BinderError> {
        self.sm.tryUnregisterService(name, service)
    }

    /// `getServiceDebugInfo`: every name with the pid that registered it.
    pub fn get_service_debug_info(&self) -> Result<Vec<ServiceDebugInfo>, BinderError> {
        self.sm.getServiceDebugInfo()
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

/// `android.os.IServiceCallback`: runs a closure.
struct OnRegistration {
    f: OnRegistered,
}

impl IServiceCallback::Interface for OnRegistration {
    fn onRegistration(
        &self,
        _call: &CallContext,
        name: String,
        binder: Binder,
    ) -> Result<(), BinderError> {
        (self.f)(&name, binder);
        Ok(())
    }
}

/// `android.os.IClientCallback`: runs a closure.
struct OnClients {
    f: Box<dyn Fn(bool) + Send + Sync>,
}

impl IClientCallback::Interface for OnClients {
    fn onClients(
        &self,
        _call: &CallContext,
        _registered: Binder,
        has_clients: bool,
    ) -> Result<(), BinderError> {
        (self.f)(has_clients);
        Ok(())
    }
}

/// The manager of an older release, seen through Android 16's codes: the generated proxy
/// calls it with Android 16's code of a method, and this sends the call on with the code
/// `numbering` gives that method (a method the release does not have is refused here, never
/// sent as another one).
struct Renumbered {
    remote: Binder,
    numbering: Numbering,
}

impl Service for Renumbered {
    fn descriptor(&self) -> &str {
        DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        _call: &CallContext,
    ) -> Result<(), BinderError> {
        let method: Method = Numbering::Android16
            .method(code)
            .ok_or(BinderError::UnknownTransaction(code))?;
        let code = self.numbering.code(method).ok_or_else(|| {
            BinderError::BadValue(format!(
                "{method} is not a method of {}'s IServiceManager",
                self.numbering
            ))
        })?;
        *reply = self.remote.transact(code, data)?;
        Ok(())
    }
}
