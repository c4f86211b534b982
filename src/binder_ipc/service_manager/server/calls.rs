//! The manager's methods, as the generated `IServiceManager` stub calls them (arguments
//! decoded, the reply encoded by the stub). Argument errors are AIDL exceptions with the
//! codes AOSP's servicemanager uses; a policy refusal is EX_SECURITY naming the rule.

use super::super::aidl::{
    ConnectionInfo, IClientCallback, IServiceCallback, IServiceManager, Service as ServiceUnion,
    ServiceDebugInfo, ServiceWithMetadata,
};
use super::{exception, lock, Access, Entry, ServiceManager};
use crate::binder_ipc::parcel::{
    EX_ILLEGAL_ARGUMENT, EX_ILLEGAL_STATE, EX_SECURITY, EX_UNSUPPORTED_OPERATION,
};
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext};
use crate::binder_ipc::service_manager::FLAG_IS_LAZY_SERVICE;
use crate::binder_ipc::service_manager::{valid_name, MAX_CALLBACKS_PER_NAME, MAX_NAMES};
use std::sync::Arc;

type Result<T> = std::result::Result<T, BinderError>;

impl IServiceManager::Interface for ServiceManager {
    fn getService(&self, call: &CallContext, name: String) -> Result<Option<Binder>> {
        self.find(call, &name)?;
        Ok(self.lookup(&name))
    }

    fn getService2(&self, call: &CallContext, name: String) -> Result<ServiceUnion> {
        self.service_union(call, &name)
    }

    fn checkService(&self, call: &CallContext, name: String) -> Result<Option<Binder>> {
        self.getService(call, name)
    }

    fn checkService2(&self, call: &CallContext, name: String) -> Result<ServiceUnion> {
        self.service_union(call, &name)
    }

    fn addService(
        &self,
        call: &CallContext,
        name: String,
        service: Binder,
        _allow_isolated: bool,
        dump_priority: i32,
    ) -> Result<()> {
        self.add_service(call, name, service, dump_priority)
    }

    fn listServices(&self, call: &CallContext, dump_priority: i32) -> Result<Vec<String>> {
        Ok(lock(&self.services)
            .iter()
            .filter(|(_, e)| e.dump_priority & dump_priority != 0)
            .filter(|(n, _)| self.check_access(Access::List, n, call).is_ok())
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn registerForNotifications(
        &self,
        _call: &CallContext,
        name: String,
        callback: IServiceCallback::Proxy,
    ) -> Result<()> {
        self.register_for_notifications(name, callback)
    }

    fn unregisterForNotifications(
        &self,
        _call: &CallContext,
        name: String,
        callback: IServiceCallback::Proxy,
    ) -> Result<()> {
        self.unregister_for_notifications(name, callback)
    }

    // The VINTF/APEX methods: this manager has no manifest and no APEX, so nothing is
    // declared, updatable or reachable over RPC (the answers AOSP gives for such a name).

    fn isDeclared(&self, _call: &CallContext, _name: String) -> Result<bool> {
        Ok(false)
    }

    fn getDeclaredInstances(&self, _call: &CallContext, _iface: String) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn updatableViaApex(&self, _call: &CallContext, _name: String) -> Result<Option<String>> {
        Ok(None)
    }

    fn getUpdatableNames(&self, _call: &CallContext, _apex: String) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn getConnectionInfo(
        &self,
        _call: &CallContext,
        _name: String,
    ) -> Result<Option<ConnectionInfo>> {
        Ok(None)
    }

    fn registerClientCallback(
        &self,
        call: &CallContext,
        name: String,
        service: Binder,
        callback: IClientCallback::Proxy,
    ) -> Result<()> {
        self.register_client_callback(call, name, service, callback)
    }

    fn tryUnregisterService(
        &self,
        call: &CallContext,
        name: String,
        service: Binder,
    ) -> Result<()> {
        self.try_unregister_service(call, name, service)
    }

    fn getServiceDebugInfo(&self, call: &CallContext) -> Result<Vec<ServiceDebugInfo>> {
        Ok(lock(&self.services)
            .iter()
            .filter(|(n, _)| self.check_access(Access::List, n, call).is_ok())
            .map(|(name, e)| ServiceDebugInfo {
                name: name.clone(),
                debugPid: e.pid,
            })
            .collect())
    }
}

impl ServiceManager {
    /// Refuses a lookup the policy refuses (EX_SECURITY with the policy's reason).
    fn find(&self, call: &CallContext, name: &str) -> Result<()> {
        self.check_access(Access::Find, name, call)
            .map_err(|why| exception(EX_SECURITY, why))
    }

    /// `getService2`/`checkService2`: the service (or none) and whether it is lazy.
    fn service_union(&self, call: &CallContext, name: &str) -> Result<ServiceUnion> {
        self.find(call, name)?;
        let found = lock(&self.services).get(name).and_then(|e| {
            let lazy = e.dump_priority & FLAG_IS_LAZY_SERVICE != 0;
            self.binder_of(e).map(|b| (b, lazy))
        });
        let (service, lazy) = match found {
            Some((b, lazy)) => (Some(b), lazy),
            None => (None, false),
        };
        Ok(ServiceUnion::ServiceWithMetadata(ServiceWithMetadata {
            service,
            isLazyService: lazy,
        }))
    }

    /// `addService(name, service, allowIsolated, dumpPriority)`.
    fn add_service(
        &self,
        call: &CallContext,
        name: String,
        binder: Binder,
        dump_priority: i32,
    ) -> Result<()> {
        if !valid_name(&name) {
            let why = format!("Invalid service name '{name}'");
            return Err(exception(EX_ILLEGAL_ARGUMENT, why));
        }
        self.check_policy(&name, call)
            .map_err(|why| exception(EX_SECURITY, why))?;
        let full = {
            let services = lock(&self.services);
            !services.contains_key(&name) && services.len() >= MAX_NAMES
        };
        if full {
            return Err(self.over_limit(format!("service table full ({MAX_NAMES} names)")));
        }
        self.insert(&name, binder, dump_priority, call.pid);
        Ok(())
    }

    /// `registerForNotifications(name, callback)`: `onRegistration` now if the name is
    /// registered, and at every registration after.
    fn register_for_notifications(&self, name: String, cb: IServiceCallback::Proxy) -> Result<()> {
        if !valid_name(&name) {
            let why = format!("Invalid service name '{name}'");
            return Err(exception(EX_ILLEGAL_ARGUMENT, why));
        }
        {
            let mut callbacks = lock(&self.callbacks);
            let names = callbacks.len();
            let list = match callbacks.get_mut(&name) {
                Some(list) => list,
                None if names >= MAX_NAMES => {
                    drop(callbacks);
                    let why = format!("callback table full ({MAX_NAMES} names)");
                    return Err(self.over_limit(why));
                }
                None => callbacks.entry(name.clone()).or_default(),
            };
            if list.len() >= MAX_CALLBACKS_PER_NAME {
                drop(callbacks);
                let why = format!("too many callbacks for '{name}' ({MAX_CALLBACKS_PER_NAME})");
                return Err(self.over_limit(why));
            }
            list.push(cb.clone());
        }
        self.forget_callback_on_death(&name, cb.binder());
        if let Some(b) = self.lookup(&name) {
            // Oneway, after the table is updated (the reply follows it).
            let _ = cb.onRegistration(&name, &b);
        }
        Ok(())
    }

    /// A callback whose process dies leaves the table.
    fn forget_callback_on_death(&self, name: &str, cb: &Binder) {
        let Binder::Remote(p) = cb else { return };
        let weak = self.weak_self.clone();
        let key = name.to_owned();
        let dead = cb.clone();
        let _ = p.link_to_death(Arc::new(move || {
            if let Some(sm) = weak.upgrade() {
                let mut callbacks = lock(&sm.callbacks);
                if let Some(list) = callbacks.get_mut(&key) {
                    list.retain(|c| !c.binder().same_as(&dead));
                    if list.is_empty() {
                        callbacks.remove(&key);
                    }
                }
            }
        }));
    }

    /// `unregisterForNotifications(name, callback)`; an unknown pair is EX_ILLEGAL_STATE.
    fn unregister_for_notifications(
        &self,
        name: String,
        cb: IServiceCallback::Proxy,
    ) -> Result<()> {
        let mut callbacks = lock(&self.callbacks);
        let found = match callbacks.get_mut(&name) {
            Some(list) => {
                let before = list.len();
                list.retain(|c| !c.binder().same_as(cb.binder()));
                list.len() != before
            }
            None => false,
        };
        if callbacks.get(&name).is_some_and(|l| l.is_empty()) {
            callbacks.remove(&name);
        }
        drop(callbacks);
        match found {
            true => Ok(()),
            false => {
                let why = format!("Trying to unregister callback, but none exists for '{name}'");
                Err(exception(EX_ILLEGAL_STATE, why))
            }
        }
    }

    /// Checks that the caller registered `name` with `binder` (`missing`/`mismatch`: the
    /// exception codes when it is not registered / registered with another binder).
    fn check_owner(
        &self,
        call: &CallContext,
        name: &str,
        binder: &Binder,
        missing: i32,
        mismatch: i32,
    ) -> Result<()> {
        let owner = lock(&self.services)
            .get(name)
            .map(|e: &Entry| (e.pid, self.binder_of(e).is_some_and(|b| b.same_as(binder))));
        Err(match owner {
            None => exception(missing, format!("Service '{name}' is not registered")),
            Some((pid, _)) if pid != call.pid => exception(
                EX_UNSUPPORTED_OPERATION,
                format!("Only the process that registered '{name}' may do this"),
            ),
            Some((_, false)) => exception(
                mismatch,
                format!("'{name}' is registered with a different binder"),
            ),
            Some((_, true)) => return Ok(()),
        })
    }

    /// `registerClientCallback(name, service, callback)`: only the service's own process,
    /// with the binder it registered.
    fn register_client_callback(
        &self,
        call: &CallContext,
        name: String,
        service: Binder,
        cb: IClientCallback::Proxy,
    ) -> Result<()> {
        self.check_policy(&name, call)
            .map_err(|why| exception(EX_SECURITY, why))?;
        self.check_owner(
            call,
            &name,
            &service,
            EX_ILLEGAL_ARGUMENT,
            EX_ILLEGAL_ARGUMENT,
        )?;
        let mut services = lock(&self.services);
        let Some(entry) = services.get_mut(&name) else {
            drop(services);
            let why = format!("Service '{name}' is not registered");
            return Err(exception(EX_ILLEGAL_ARGUMENT, why));
        };
        if entry.client_callbacks.len() >= MAX_CALLBACKS_PER_NAME {
            drop(services);
            return Err(self.over_limit(format!("too many client callbacks for '{name}'")));
        }
        if !entry
            .client_callbacks
            .iter()
            .any(|c| c.binder().same_as(cb.binder()))
        {
            entry.client_callbacks.push(cb);
        }
        Ok(())
    }

    /// `tryUnregisterService(name, service)`: a lazy service (one with a client callback)
    /// leaving, asked by its own process with the binder it registered.
    fn try_unregister_service(
        &self,
        call: &CallContext,
        name: String,
        service: Binder,
    ) -> Result<()> {
        self.check_policy(&name, call)
            .map_err(|why| exception(EX_SECURITY, why))?;
        self.check_owner(call, &name, &service, EX_ILLEGAL_STATE, EX_ILLEGAL_STATE)?;
        let mut services = lock(&self.services);
        let lazy = services
            .get(&name)
            .is_some_and(|e| !e.client_callbacks.is_empty());
        if !lazy {
            drop(services);
            let why = format!("'{name}' has no client callback: only a lazy service unregisters");
            return Err(exception(EX_ILLEGAL_STATE, why));
        }
        services.remove(&name);
        Ok(())
    }
}
