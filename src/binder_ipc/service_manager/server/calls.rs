//! The methods that change the manager's tables: addService, the registration callbacks,
//! the client callbacks and tryUnregisterService. Argument errors are AIDL exceptions with
//! the codes AOSP's servicemanager uses.

use super::{exception, lock, notify, read_name, Call, Entry, ServiceManager};
use super::{
    valid_name, EX_ILLEGAL_ARGUMENT, EX_ILLEGAL_STATE, EX_NULL_POINTER, EX_SECURITY,
    EX_UNSUPPORTED_OPERATION, MAX_CALLBACKS_PER_NAME, MAX_NAMES,
};
use crate::binder_ipc::runtime::{Binder, BinderError};
use std::sync::Arc;

impl ServiceManager {
    /// `addService(name, service, allowIsolated, dumpPriority)`.
    pub(super) fn add_service(&self, call: &mut Call<'_>) -> Result<(), BinderError> {
        let name = read_name(call.data)?;
        let binder = call.ctx.process.read_binder(call.data)?;
        let _allow_isolated = call.data.read_bool()?;
        let dump_priority = call.data.read_i32()?;
        let Some(binder) = binder else {
            return exception(call.reply, EX_ILLEGAL_ARGUMENT, "Null service.".into());
        };
        if !valid_name(&name) {
            let why = format!("Invalid service name '{name}'");
            return exception(call.reply, EX_ILLEGAL_ARGUMENT, why);
        }
        if let Err(why) = self.check_policy(&name, call.ctx) {
            return exception(call.reply, EX_SECURITY, why);
        }
        let full = {
            let services = lock(&self.services);
            !services.contains_key(&name) && services.len() >= MAX_NAMES
        };
        if full {
            let why = format!("service table full ({MAX_NAMES} names)");
            return self.over_limit(call.reply, why);
        }
        call.reply.write_no_exception()?;
        self.insert(&name, binder, dump_priority, call.ctx.pid);
        Ok(())
    }

    /// `registerForNotifications(name, callback)`: `onRegistration` now if the name is
    /// registered, and at every registration after.
    pub(super) fn register_for_notifications(
        &self,
        call: &mut Call<'_>,
    ) -> Result<(), BinderError> {
        let name = read_name(call.data)?;
        let Some(cb) = call.ctx.process.read_binder(call.data)? else {
            return exception(call.reply, EX_NULL_POINTER, "Null callback.".into());
        };
        if !valid_name(&name) {
            let why = format!("Invalid service name '{name}'");
            return exception(call.reply, EX_ILLEGAL_ARGUMENT, why);
        }
        {
            let mut callbacks = lock(&self.callbacks);
            let names = callbacks.len();
            let list = match callbacks.get_mut(&name) {
                Some(list) => list,
                None if names >= MAX_NAMES => {
                    drop(callbacks);
                    let why = format!("callback table full ({MAX_NAMES} names)");
                    return self.over_limit(call.reply, why);
                }
                None => callbacks.entry(name.clone()).or_default(),
            };
            if list.len() >= MAX_CALLBACKS_PER_NAME {
                drop(callbacks);
                let why = format!("too many callbacks for '{name}' ({MAX_CALLBACKS_PER_NAME})");
                return self.over_limit(call.reply, why);
            }
            list.push(cb.clone());
        }
        self.forget_callback_on_death(&name, &cb);
        call.reply.write_no_exception()?;
        if let Some(b) = self.lookup(&name) {
            let _ = notify(&call.ctx.process, &cb, &name, &b);
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
                    list.retain(|b| !b.same_as(&dead));
                    if list.is_empty() {
                        callbacks.remove(&key);
                    }
                }
            }
        }));
    }

    /// `unregisterForNotifications(name, callback)`; an unknown pair is EX_ILLEGAL_STATE.
    pub(super) fn unregister_for_notifications(
        &self,
        call: &mut Call<'_>,
    ) -> Result<(), BinderError> {
        let name = read_name(call.data)?;
        let Some(cb) = call.ctx.process.read_binder(call.data)? else {
            return exception(call.reply, EX_NULL_POINTER, "Null callback.".into());
        };
        let found = {
            let mut callbacks = lock(&self.callbacks);
            let found = match callbacks.get_mut(&name) {
                Some(list) => {
                    let before = list.len();
                    list.retain(|b| !b.same_as(&cb));
                    list.len() != before
                }
                None => false,
            };
            if callbacks.get(&name).is_some_and(|l| l.is_empty()) {
                callbacks.remove(&name);
            }
            found
        };
        if !found {
            let why = format!("Trying to unregister callback, but none exists for '{name}'");
            return exception(call.reply, EX_ILLEGAL_STATE, why);
        }
        call.reply.write_no_exception()?;
        Ok(())
    }

    /// Checks that the caller registered `name` with `binder`: `Err(reply written)` if not.
    fn check_owner(
        &self,
        call: &mut Call<'_>,
        name: &str,
        binder: &Binder,
        missing: i32,
        mismatch: i32,
    ) -> Result<bool, BinderError> {
        let owner = lock(&self.services)
            .get(name)
            .map(|e: &Entry| (e.pid, self.binder_of(e).is_some_and(|b| b.same_as(binder))));
        let why = match owner {
            None => (missing, format!("Service '{name}' is not registered")),
            Some((pid, _)) if pid != call.ctx.pid => (
                EX_UNSUPPORTED_OPERATION,
                format!("Only the process that registered '{name}' may do this"),
            ),
            Some((_, false)) => (
                mismatch,
                format!("'{name}' is registered with a different binder"),
            ),
            Some((_, true)) => return Ok(true),
        };
        exception(call.reply, why.0, why.1)?;
        Ok(false)
    }

    /// `registerClientCallback(name, service, callback)`: only the service's own process,
    /// with the binder it registered.
    pub(super) fn register_client_callback(&self, call: &mut Call<'_>) -> Result<(), BinderError> {
        let name = read_name(call.data)?;
        let service = call.ctx.process.read_binder(call.data)?;
        let cb = call.ctx.process.read_binder(call.data)?;
        let (Some(service), Some(cb)) = (service, cb) else {
            return exception(
                call.reply,
                EX_NULL_POINTER,
                "Null service or callback.".into(),
            );
        };
        if let Err(why) = self.check_policy(&name, call.ctx) {
            return exception(call.reply, EX_SECURITY, why);
        }
        if !self.check_owner(
            call,
            &name,
            &service,
            EX_ILLEGAL_ARGUMENT,
            EX_ILLEGAL_ARGUMENT,
        )? {
            return Ok(());
        }
        let mut services = lock(&self.services);
        let Some(entry) = services.get_mut(&name) else {
            drop(services);
            let why = format!("Service '{name}' is not registered");
            return exception(call.reply, EX_ILLEGAL_ARGUMENT, why);
        };
        if entry.client_callbacks.len() >= MAX_CALLBACKS_PER_NAME {
            drop(services);
            let why = format!("too many client callbacks for '{name}'");
            return self.over_limit(call.reply, why);
        }
        if !entry.client_callbacks.iter().any(|b| b.same_as(&cb)) {
            entry.client_callbacks.push(cb);
        }
        drop(services);
        call.reply.write_no_exception()?;
        Ok(())
    }

    /// `tryUnregisterService(name, service)`: a lazy service (one with a client callback)
    /// leaving, asked by its own process with the binder it registered.
    pub(super) fn try_unregister_service(&self, call: &mut Call<'_>) -> Result<(), BinderError> {
        let name = read_name(call.data)?;
        let Some(service) = call.ctx.process.read_binder(call.data)? else {
            return exception(call.reply, EX_NULL_POINTER, "Null service.".into());
        };
        if let Err(why) = self.check_policy(&name, call.ctx) {
            return exception(call.reply, EX_SECURITY, why);
        }
        if !self.check_owner(call, &name, &service, EX_ILLEGAL_STATE, EX_ILLEGAL_STATE)? {
            return Ok(());
        }
        let mut services = lock(&self.services);
        let lazy = services
            .get(&name)
            .is_some_and(|e| !e.client_callbacks.is_empty());
        if !lazy {
            drop(services);
            let why = format!("'{name}' has no client callback: only a lazy service unregisters");
            return exception(call.reply, EX_ILLEGAL_STATE, why);
        }
        services.remove(&name);
        drop(services);
        call.reply.write_no_exception()?;
        Ok(())
    }
}
