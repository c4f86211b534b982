//! A client of the service manager (handle 0).

use super::codes::{Method, Numbering};
use super::types::{ConnectionInfo, ServiceDebugInfo, ServiceUnion};
use super::{
    CALLBACK_DESCRIPTOR, CLIENT_CALLBACK_DESCRIPTOR, DESCRIPTOR, DUMP_FLAG_PRIORITY_ALL,
    DUMP_FLAG_PRIORITY_DEFAULT, ON_CLIENTS, ON_REGISTRATION,
};
use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use std::time::{Duration, Instant};

/// A client of the service manager (handle 0), speaking Android 16's numbering unless told
/// otherwise ([`ServiceManagerClient::with_numbering`]).
#[derive(Clone, Debug)]
pub struct ServiceManagerClient {
    ps: ProcessState,
    sm: Binder,
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
        Ok(ServiceManagerClient {
            ps: ps.clone(),
            sm: ps.context_object()?,
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

    fn call(&self, method: Method, data: &Parcel) -> Result<Parcel, BinderError> {
        let code = self.numbering.code(method).ok_or_else(|| {
            BinderError::BadValue(format!(
                "{method} is not a method of {}'s IServiceManager",
                self.numbering
            ))
        })?;
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
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, binder)?;
        data.write_bool(allow_isolated)?;
        data.write_i32(dump_priority)?;
        self.call(Method::AddService, &data).map(drop)
    }

    /// The service registered as `name`, if any (`checkService`: does not wait).
    pub fn check_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        let mut reply = self.call(Method::CheckService, &self.named(name)?)?;
        self.ps.read_binder(&mut reply)
    }

    /// `getService` (AOSP's may start a lazy service; this manager's answers at once).
    pub fn get_service(&self, name: &str) -> Result<Option<Binder>, BinderError> {
        let mut reply = self.call(Method::GetService, &self.named(name)?)?;
        self.ps.read_binder(&mut reply)
    }

    /// `getService2`: the `android.os.Service` union.
    pub fn get_service2(&self, name: &str) -> Result<ServiceUnion, BinderError> {
        let mut reply = self.call(Method::GetService2, &self.named(name)?)?;
        ServiceUnion::read(&self.ps, &mut reply)
    }

    /// `checkService2`: the `android.os.Service` union.
    pub fn check_service2(&self, name: &str) -> Result<ServiceUnion, BinderError> {
        let mut reply = self.call(Method::CheckService2, &self.named(name)?)?;
        ServiceUnion::read(&self.ps, &mut reply)
    }

    /// Every registered name (`listServices(DUMP_FLAG_PRIORITY_ALL)`).
    pub fn list_services(&self) -> Result<Vec<String>, BinderError> {
        self.list_services_with(DUMP_FLAG_PRIORITY_ALL)
    }

    /// The names registered with a dump priority in `dump_priority`.
    pub fn list_services_with(&self, dump_priority: i32) -> Result<Vec<String>, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR)?;
        data.write_i32(dump_priority)?;
        let mut reply = self.call(Method::ListServices, &data)?;
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
        self.call(Method::RegisterForNotifications, &data)?;
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
        self.call(Method::UnregisterForNotifications, &data)
            .map(drop)
    }

    /// `isDeclared`: whether the manager's VINTF manifest declares `name`.
    pub fn is_declared(&self, name: &str) -> Result<bool, BinderError> {
        let mut reply = self.call(Method::IsDeclared, &self.named(name)?)?;
        Ok(reply.read_bool()?)
    }

    /// `getDeclaredInstances`: the declared instances of interface `iface`.
    pub fn get_declared_instances(&self, iface: &str) -> Result<Vec<String>, BinderError> {
        let mut reply = self.call(Method::GetDeclaredInstances, &self.named(iface)?)?;
        Ok(reply.read_string16_array()?.unwrap_or_default())
    }

    /// `updatableViaApex`: the APEX that can update `name`, if any.
    pub fn updatable_via_apex(&self, name: &str) -> Result<Option<String>, BinderError> {
        let mut reply = self.call(Method::UpdatableViaApex, &self.named(name)?)?;
        Ok(reply.read_string16()?)
    }

    /// `getUpdatableNames`: the names APEX `apex_name` can update.
    pub fn get_updatable_names(&self, apex_name: &str) -> Result<Vec<String>, BinderError> {
        let mut reply = self.call(Method::GetUpdatableNames, &self.named(apex_name)?)?;
        Ok(reply.read_string16_array()?.unwrap_or_default())
    }

    /// `getConnectionInfo`: where `name` listens for RPC binder, if declared.
    pub fn get_connection_info(&self, name: &str) -> Result<Option<ConnectionInfo>, BinderError> {
        let mut reply = self.call(Method::GetConnectionInfo, &self.named(name)?)?;
        Ok(ConnectionInfo::read_nullable(&mut reply)?)
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
        let cb = Binder::new(ClientCallback {
            f: Box::new(on_clients),
        });
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, service)?;
        self.ps.write_binder(&mut data, &cb)?;
        self.call(Method::RegisterClientCallback, &data)?;
        Ok(cb)
    }

    /// `tryUnregisterService`: a lazy service asks to leave.
    pub fn try_unregister_service(&self, name: &str, service: &Binder) -> Result<(), BinderError> {
        let mut data = self.named(name)?;
        self.ps.write_binder(&mut data, service)?;
        self.call(Method::TryUnregisterService, &data).map(drop)
    }

    /// `getServiceDebugInfo`: every name with the pid that registered it.
    pub fn get_service_debug_info(&self) -> Result<Vec<ServiceDebugInfo>, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR)?;
        let mut reply = self.call(Method::GetServiceDebugInfo, &data)?;
        Ok(ServiceDebugInfo::read_array(&mut reply)?)
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

/// `android.os.IServiceCallback`.
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

/// `android.os.IClientCallback`.
struct ClientCallback {
    f: Box<dyn Fn(bool) + Send + Sync>,
}

impl Service for ClientCallback {
    fn descriptor(&self) -> &str {
        CLIENT_CALLBACK_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        _reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        if code != ON_CLIENTS {
            return Err(BinderError::UnknownTransaction(code));
        }
        data.enforce_interface(CLIENT_CALLBACK_DESCRIPTOR)?;
        let _registered = call.process.read_binder(data)?;
        let has_clients = data.read_bool()?;
        (self.f)(has_clients);
        Ok(())
    }
}
