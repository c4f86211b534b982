//! Binder objects as applications hold them: local services ([`Service`]) and proxies to
//! remote ones ([`Proxy`]), behind one handle type ([`Binder`]).

use super::process::{Inner, ProcessState};
use super::thread::Answer;
use super::BinderError;
use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::uapi::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// `PING_TRANSACTION` ('_PNG'): answered by the runtime for every binder.
pub const PING_TRANSACTION: u32 = pack_chars(b'_', b'P', b'N', b'G');
/// `INTERFACE_TRANSACTION` ('_NTF'): the runtime answers with the descriptor.
pub const INTERFACE_TRANSACTION: u32 = pack_chars(b'_', b'N', b'T', b'F');
/// The first code an interface may use.
pub const FIRST_CALL_TRANSACTION: u32 = 1;
/// The last code an interface may use.
pub const LAST_CALL_TRANSACTION: u32 = 0x00ff_ffff;

/// Who is calling: filled by the driver, never by the caller.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The calling OS process (0 for oneway calls, as the kernel reports).
    pub pid: i32,
    /// The caller's effective uid.
    pub uid: u32,
    /// The call expects no reply.
    pub oneway: bool,
    /// The process handling the call (to read binders out of the parcel).
    pub process: ProcessState,
}

/// A local binder object: what a service implements.
pub trait Service: Send + Sync + 'static {
    /// The interface descriptor, e.g. `"android.os.IServiceManager"`.
    fn descriptor(&self) -> &str;

    /// Handles one call. Write the answer into `reply`; an error goes back to the caller as
    /// a status reply that keeps its kind and message ([`BinderError::write_reply`]), a
    /// [`BinderError::Exception`] as an AIDL exception in a normal reply. A panic is caught
    /// by the runtime and answered with [`BinderError::ServiceFailed`] (see
    /// [`PanicPolicy`](super::PanicPolicy)).
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError>;
}

/// Told when the process behind a [`Proxy`] dies.
pub trait DeathRecipient: Send + Sync {
    /// The binder died. Called once, on a thread of the binder thread pool.
    fn binder_died(&self);
}

impl<F: Fn() + Send + Sync> DeathRecipient for F {
    fn binder_died(&self) {
        self()
    }
}

/// A binder: a local service or a proxy to a remote one. Cloning shares it.
#[derive(Clone)]
pub enum Binder {
    /// A service of this process.
    Local(Arc<dyn Service>),
    /// A proxy to a binder in another process.
    Remote(Arc<Proxy>),
}

impl std::fmt::Debug for Binder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binder::Local(s) => write!(f, "Binder::Local({})", s.descriptor()),
            Binder::Remote(p) => write!(f, "Binder::Remote(handle {})", p.handle),
        }
    }
}

impl Binder {
    /// A local binder for `service`.
    pub fn new(service: impl Service) -> Binder {
        Binder::Local(Arc::new(service))
    }

    /// Calls the binder: `code` with `data`, waiting for the reply.
    pub fn transact(&self, code: u32, data: &Parcel) -> Result<Parcel, BinderError> {
        match self {
            Binder::Remote(p) => p.transact(code, data),
            Binder::Local(_) => Err(BinderError::BadValue(
                "a local binder is called directly, not through the driver".into(),
            )),
        }
    }

    /// Calls the binder without waiting for a reply.
    pub fn transact_oneway(&self, code: u32, data: &Parcel) -> Result<(), BinderError> {
        match self {
            Binder::Remote(p) => p.transact_oneway(code, data),
            Binder::Local(_) => Err(BinderError::BadValue(
                "a local binder is called directly, not through the driver".into(),
            )),
        }
    }

    /// True when the binder answers a ping.
    pub fn ping(&self) -> Result<(), BinderError> {
        match self {
            Binder::Remote(p) => p.transact(PING_TRANSACTION, &Parcel::new()).map(drop),
            Binder::Local(_) => Ok(()),
        }
    }

    /// The interface descriptor (asked of the remote side for a proxy).
    pub fn descriptor(&self) -> Result<String, BinderError> {
        match self {
            Binder::Local(s) => Ok(s.descriptor().to_owned()),
            Binder::Remote(p) => {
                let mut r = p.transact(INTERFACE_TRANSACTION, &Parcel::new())?;
                Ok(r.read_string16()?.unwrap_or_default())
            }
        }
    }

    /// The proxy, for a remote binder.
    pub fn as_proxy(&self) -> Option<&Arc<Proxy>> {
        match self {
            Binder::Remote(p) => Some(p),
            Binder::Local(_) => None,
        }
    }

    /// True when both name the same object.
    pub fn same_as(&self, other: &Binder) -> bool {
        match (self, other) {
            (Binder::Local(a), Binder::Local(b)) => Arc::ptr_eq(a, b),
            (Binder::Remote(a), Binder::Remote(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A proxy to a binder in another process: this process's handle for it.
///
/// A proxy holds one strong and one weak reference on its handle from creation to drop
/// (`BC_INCREFS`/`BC_ACQUIRE`, then `BC_RELEASE`/`BC_DECREFS`).
pub struct Proxy {
    pub(super) handle: u32,
    pub(super) process: Weak<Inner>,
    pub(super) dead: AtomicBool,
    pub(super) recipients: Mutex<Vec<Arc<dyn DeathRecipient>>>,
    pub(super) death_requested: AtomicBool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("handle", &self.handle)
            .field("dead", &self.dead.load(Ordering::Relaxed))
            .finish()
    }
}

impl Proxy {
    /// This process's handle for the binder.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// True once the binder's process died (a death notification arrived or a call got
    /// BR_DEAD_REPLY).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn process(&self) -> Result<Arc<Inner>, BinderError> {
        self.process.upgrade().ok_or(BinderError::DeadObject)
    }

    /// Calls the binder and waits for the reply. An error the service sent back arrives as
    /// the kind it sent, with its message.
    pub fn transact(&self, code: u32, data: &Parcel) -> Result<Parcel, BinderError> {
        match self.call(code, data, TF_ACCEPT_FDS)? {
            Answer::Reply(p) => Ok(p),
            Answer::Accepted => Ok(Parcel::default()),
            Answer::Error(e) => Err(e),
        }
    }

    /// Calls the binder without waiting for a reply.
    pub fn transact_oneway(&self, code: u32, data: &Parcel) -> Result<(), BinderError> {
        match self.call(code, data, TF_ONE_WAY | TF_ACCEPT_FDS)? {
            Answer::Error(e) => Err(e),
            Answer::Reply(_) | Answer::Accepted => Ok(()),
        }
    }

    /// One call; a dead reply from the driver marks the proxy dead (an error the service
    /// sent back never does, whatever its kind).
    fn call(&self, code: u32, data: &Parcel, flags: u32) -> Result<Answer, BinderError> {
        let r = self.process()?.transact(self.handle, code, data, flags);
        if matches!(r, Err(BinderError::DeadObject)) {
            self.dead.store(true, Ordering::Release);
        }
        r
    }

    /// Asks to be told when the binder's process dies. A binder already dead is reported at
    /// once. Needs the thread pool ([`ProcessState::start_thread_pool`]).
    pub fn link_to_death(
        self: &Arc<Self>,
        recipient: Arc<dyn DeathRecipient>,
    ) -> Result<(), BinderError> {
        let inner = self.process()?;
        self.recipients
            .lock()
            .map_err(|_| BinderError::BadValue("poisoned".into()))?
            .push(recipient);
        if !self.death_requested.swap(true, Ordering::AcqRel) {
            inner.request_death(self)?;
        }
        Ok(())
    }

    /// Forgets `recipient` (compared by pointer). When no recipient is left the driver is
    /// asked to clear the notification.
    pub fn unlink_to_death(&self, recipient: &Arc<dyn DeathRecipient>) -> Result<(), BinderError> {
        let inner = self.process()?;
        let mut list = self
            .recipients
            .lock()
            .map_err(|_| BinderError::BadValue("poisoned".into()))?;
        let before = list.len();
        list.retain(|r| !Arc::ptr_eq(r, recipient));
        if list.len() == before {
            return Err(BinderError::NotFound(
                "that death recipient is not linked".into(),
            ));
        }
        if list.is_empty() && self.death_requested.swap(false, Ordering::AcqRel) {
            drop(list);
            inner.clear_death(self)?;
        }
        Ok(())
    }

    /// The cookie that names this proxy in death notifications.
    pub(super) fn cookie(&self) -> u64 {
        self as *const Proxy as u64
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(inner) = self.process.upgrade() {
            inner.drop_proxy(self);
        }
    }
}
