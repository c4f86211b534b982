//! The dispatcher as a binder service: windows register through binder and get their input
//! channel's client end back as a ParcelFileDescriptor (a `BINDER_TYPE_FD` object); a window
//! whose process dies is removed by its token's death notification.
//!
//! [`InputService`] (a local [`Service`]) sits in front of a [`DispatcherThread`] and turns
//! calls into the dispatcher's plain methods. A window is identified by a **token**: a binder
//! object of the application's process ([`WindowTokenService`] is one with nothing to call).
//! The service keeps the proxy it receives, names the window by the proxy's handle (the
//! driver gives one node one handle in a process) and links to its death, which unregisters
//! the window. [`InputClient`] is the application's side of the calls.
//!
//! The interface, `bittube.input.IInputDispatcher`, is declared in
//! `aidl/bittube/input/IInputDispatcher.aidl` and generated at build time ([`aidl`]): the
//! generated stub decodes every call and encodes every reply ([`InputService`]'s
//! `on_transact` hands the call to [`aidl::IInputDispatcher::dispatch`]), and [`InputClient`]
//! calls the generated proxy. The calls (codes from `FIRST_CALL_TRANSACTION`):
//! `registerWindow(token, name, left, top, right, bottom)` → the channel's client end (a
//! BitTube end as a ParcelFileDescriptor, checked on receipt), `unregisterWindow(token)` →
//! whether it was registered, `setFocus(token or null)`, `injectEvent(byte[])` → the seq
//! (one key or motion message in the channel's wire format; its seq is ignored).
//!
//! Errors: a bad argument is an `EX_ILLEGAL_ARGUMENT` exception with the reason (the proxy
//! makes it `BadValue` again), a refused caller `EX_SECURITY` naming the permission
//! (`PermissionDenied`), an unknown window the status `NAME_NOT_FOUND`.
//!
//! Who may do what ([`InputPermissions`], checked against the caller's uid from the driver):
//! injecting events and changing focus need the inject permission (Android's
//! `INJECT_EVENTS`; focus comes from its window manager, not from apps); a window can be
//! unregistered only by the uid that registered it or a holder of the inject permission.
//! Registering is open to every uid. Every refusal is logged (`warn`, target
//! `bittube::input`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::channel::InputChannel;
use super::dispatcher::{Bounds, DispatchError, WindowToken};
use super::message::{InputMessage, KeyEvent, MotionEvent, MAX_MESSAGE_SIZE};
use super::thread::DispatcherThread;
use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::policy::UidSet;
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use crate::bittube::TubeEnd;
use aidl::IInputDispatcher;

/// The input service's interface, generated at build time by bittube-aidl from
/// `aidl/bittube/input/` (`IInputDispatcher`; BitTube ends travel as ParcelFileDescriptors).
pub mod aidl {
    include!(concat!(env!("OUT_DIR"), "/input_aidl.rs"));
}

/// The name the service is registered under with the service manager.
pub const SERVICE_NAME: &str = "bittube.input";
/// The interface descriptor of the service.
pub const DESCRIPTOR: &str = IInputDispatcher::DESCRIPTOR;
/// The interface descriptor of a window token.
pub const TOKEN_DESCRIPTOR: &str = "bittube.input.IWindowToken";

fn dispatch_error(e: DispatchError) -> BinderError {
    match e {
        DispatchError::UnknownWindow(t) => BinderError::NotFound(format!("window {t:?}")),
        DispatchError::NoFocusedWindow | DispatchError::NoWindowAt { .. } => {
            BinderError::NotFound(e.to_string())
        }
        other => BinderError::BadValue(other.to_string()),
    }
}

/// A registered window's token binder and the uid that registered it.
type Owned = (Binder, u32);
/// The token binders of registered windows, by window.
type Tokens = Mutex<HashMap<WindowToken, Owned>>;

fn lock_tokens(tokens: &Tokens) -> std::sync::MutexGuard<'_, HashMap<WindowToken, Owned>> {
    tokens.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who holds the input service's permissions.
#[derive(Debug, Clone)]
pub struct InputPermissions {
    /// May inject events, change focus and unregister any window (`INJECT_EVENTS`).
    pub inject: UidSet,
}

impl Default for InputPermissions {
    /// Root and the service's own uid.
    fn default() -> Self {
        InputPermissions {
            inject: UidSet::privileged(),
        }
    }
}

/// A refusal: logged, and `PERMISSION_DENIED` with the reason for the caller.
fn refuse(call: &CallContext, why: String) -> BinderError {
    tracing::warn!(target: "bittube::input", pid = call.pid, uid = call.uid, "refused: {why}");
    BinderError::PermissionDenied(why)
}

/// The dispatcher's binder service.
#[derive(Debug)]
pub struct InputService {
    dispatcher: Arc<DispatcherThread>,
    tokens: Arc<Tokens>,
    permissions: InputPermissions,
}

impl InputService {
    /// A service in front of `dispatcher`, with the default permissions (root and this
    /// process's uid may inject and focus).
    pub fn new(dispatcher: Arc<DispatcherThread>) -> Arc<InputService> {
        Self::with_permissions(dispatcher, InputPermissions::default())
    }

    /// A service in front of `dispatcher` with `permissions`.
    pub fn with_permissions(
        dispatcher: Arc<DispatcherThread>,
        permissions: InputPermissions,
    ) -> Arc<InputService> {
        Arc::new(InputService {
            dispatcher,
            tokens: Arc::new(Mutex::new(HashMap::new())),
            permissions,
        })
    }

    /// The uid that registered `window`, if it is registered.
    pub fn owner_of(&self, window: WindowToken) -> Option<u32> {
        lock_tokens(&self.tokens).get(&window).map(|(_, uid)| *uid)
    }

    /// Refuses a caller without the inject permission.
    fn need_inject(&self, call: &CallContext, what: &str) -> Result<(), BinderError> {
        if self.permissions.inject.contains(call.uid) {
            return Ok(());
        }
        Err(refuse(
            call,
            format!(
                "uid {} may not {what}: it needs the inject permission (INJECT_EVENTS), held by {}",
                call.uid, self.permissions.inject
            ),
        ))
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Arc<DispatcherThread> {
        &self.dispatcher
    }

    /// How many window tokens the service holds (one per registered window).
    pub fn token_count(&self) -> usize {
        lock_tokens(&self.tokens).len()
    }

    /// Drop every token (and with them the proxies and their death notifications); for a
    /// service that stops.
    pub fn clear(&self) {
        let tokens = std::mem::take(&mut *lock_tokens(&self.tokens));
        let mut dispatcher = self.dispatcher.lock();
        for token in tokens.keys() {
            dispatcher.unregister_window(*token);
        }
    }

    /// The window a token binder names: the proxy's handle.
    fn window_of(token: &Binder) -> Result<WindowToken, BinderError> {
        match token.as_proxy() {
            Some(proxy) => Ok(WindowToken(u64::from(proxy.handle()))),
            None => Err(BinderError::BadValue(
                "a window token must be a binder of the application's process".into(),
            )),
        }
    }

    /// `registerWindow`: the window's channel, whose client end goes back to the caller.
    fn register(
        &self,
        call: &CallContext,
        token: Binder,
        name: &str,
        bounds: Bounds,
    ) -> Result<TubeEnd, BinderError> {
        let finite = [bounds.left, bounds.top, bounds.right, bounds.bottom]
            .iter()
            .all(|v| v.is_finite());
        if !finite || bounds.left > bounds.right || bounds.top > bounds.bottom {
            return Err(BinderError::BadValue(format!(
                "bad window bounds {bounds:?}"
            )));
        }
        let window = Self::window_of(&token)?;
        let end: TubeEnd = self
            .dispatcher
            .lock()
            .register_window(name, bounds, window)
            .map_err(dispatch_error)?;
        // The window goes when its process dies: unregister it, and let go of the token.
        let dispatcher = Arc::downgrade(&self.dispatcher);
        let tokens: Weak<Tokens> = Arc::downgrade(&self.tokens);
        let died = move || {
            if let Some(d) = dispatcher.upgrade() {
                d.lock().unregister_window(window);
                let _ = d.lock().waker().wake();
            }
            if let Some(t) = tokens.upgrade() {
                let token = lock_tokens(&t).remove(&window);
                drop(token); // outside the lock
            }
        };
        // Keep the token before linking: a binder already dead is reported at once, and the
        // notification must find it to let it go.
        let proxy = token.as_proxy().cloned();
        lock_tokens(&self.tokens).insert(window, (token, call.uid));
        if let Some(Err(e)) = proxy.map(|p| p.link_to_death(Arc::new(died))) {
            self.dispatcher.lock().unregister_window(window);
            let token = lock_tokens(&self.tokens).remove(&window);
            drop(token); // outside the lock
            return Err(e);
        }
        Ok(end)
    }
}

impl InputService {
    /// Refuses to unregister `window` for a caller that neither registered it nor holds
    /// the inject permission.
    fn check_owner(&self, window: WindowToken, call: &CallContext) -> Result<(), BinderError> {
        match self.owner_of(window) {
            Some(owner) if owner != call.uid && !self.permissions.inject.contains(call.uid) => {
                Err(refuse(
                    call,
                    format!(
                        "uid {} may not unregister window {window:?} of uid {owner}: only its owner or a holder of the inject permission may",
                        call.uid
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Service for InputService {
    fn descriptor(&self) -> &str {
        DESCRIPTOR
    }

    /// The generated stub decodes the call and runs the [`IInputDispatcher::Interface`]
    /// method (a service shared as `Arc<InputService>` cannot be wrapped in its `Server`).
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        IInputDispatcher::dispatch(self, code, data, reply, call)
    }
}

impl IInputDispatcher::Interface for InputService {
    fn registerWindow(
        &self,
        call: &CallContext,
        token: Binder,
        name: String,
        left: f32,
        top: f32,
        right: f32,
        bottom: f32,
    ) -> Result<TubeEnd, BinderError> {
        let bounds = Bounds {
            left,
            top,
            right,
            bottom,
        };
        self.register(call, token, &name, bounds)
    }

    fn unregisterWindow(&self, call: &CallContext, token: Binder) -> Result<bool, BinderError> {
        let window = Self::window_of(&token)?;
        self.check_owner(window, call)?;
        let removed = self.dispatcher.lock().unregister_window(window);
        // Dropping the kept proxy (outside the lock) also drops its death notification.
        let token = lock_tokens(&self.tokens).remove(&window);
        drop(token);
        Ok(removed)
    }

    fn setFocus(&self, call: &CallContext, token: Option<Binder>) -> Result<(), BinderError> {
        self.need_inject(call, "change the focus")?;
        let window = token.as_ref().map(Self::window_of).transpose()?;
        self.dispatcher
            .lock()
            .set_focus(window)
            .map_err(dispatch_error)
    }

    fn injectEvent(&self, call: &CallContext, event: Vec<u8>) -> Result<i32, BinderError> {
        self.need_inject(call, "inject events")?;
        let message = InputMessage::decode(&event)
            .map_err(|e| BinderError::BadValue(format!("the event: {e}")))?;
        let mut dispatcher = self.dispatcher.lock();
        let injected = match message {
            InputMessage::Key { event, .. } => dispatcher.inject_key(&event),
            InputMessage::Motion { event, .. } => dispatcher.inject_motion(&event),
            other => {
                return Err(BinderError::BadValue(format!(
                    "a {} message is not an event to inject",
                    other.kind_name()
                )))
            }
        }
        .map_err(dispatch_error)?;
        Ok(injected.seq as i32) // the seq's 32 bits, as AIDL has no unsigned int
    }
}

/// A window token: a binder whose identity names a window and whose death removes it.
#[derive(Debug, Default)]
pub struct WindowTokenService;

impl Service for WindowTokenService {
    fn descriptor(&self) -> &str {
        TOKEN_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        _: &mut Parcel,
        _: &mut Parcel,
        _: &CallContext,
    ) -> Result<(), BinderError> {
        Err(BinderError::UnknownTransaction(code))
    }
}

/// The application's side of [`InputService`].
#[derive(Debug, Clone)]
pub struct InputClient {
    service: IInputDispatcher::Proxy,
}

impl InputClient {
    /// Calls to `service` (found with the service manager under [`SERVICE_NAME`]) from
    /// `process`.
    pub fn new(process: &ProcessState, service: Binder) -> InputClient {
        InputClient {
            service: IInputDispatcher::Proxy::new(service, process),
        }
    }

    /// Register a window named `name` with `bounds`, identified by `token` (a local binder
    /// of this process, e.g. `Binder::new(WindowTokenService)`, kept alive by the caller);
    /// returns the window's input channel.
    pub fn register_window(
        &self,
        name: &str,
        bounds: Bounds,
        token: &Binder,
    ) -> Result<InputChannel, BinderError> {
        let end = self.service.registerWindow(
            token,
            name,
            bounds.left,
            bounds.top,
            bounds.right,
            bounds.bottom,
        )?;
        Ok(InputChannel::from_tube_end(name, end))
    }

    /// Unregister the window of `token`; whether it was registered.
    pub fn unregister_window(&self, token: &Binder) -> Result<bool, BinderError> {
        self.service.unregisterWindow(token)
    }

    /// Give focus to the window of `token`, or to none.
    pub fn set_focus(&self, token: Option<&Binder>) -> Result<(), BinderError> {
        self.service.setFocus(token)
    }

    /// Inject a key event; its seq.
    pub fn inject_key(&self, event: &KeyEvent) -> Result<u32, BinderError> {
        self.inject(&InputMessage::Key {
            seq: 0,
            event: *event,
        })
    }

    /// Inject a motion event; its seq.
    pub fn inject_motion(&self, event: &MotionEvent) -> Result<u32, BinderError> {
        self.inject(&InputMessage::Motion {
            seq: 0,
            event: event.clone(),
        })
    }

    /// Inject the raw bytes of one message (the service validates them); its seq.
    pub fn inject_bytes(&self, bytes: &[u8]) -> Result<u32, BinderError> {
        Ok(self.service.injectEvent(bytes)? as u32) // the seq's 32 bits
    }

    fn inject(&self, message: &InputMessage) -> Result<u32, BinderError> {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        let len = message
            .encode(&mut buf)
            .map_err(|e| BinderError::BadValue(e.to_string()))?;
        self.inject_bytes(&buf[..len])
    }
}
