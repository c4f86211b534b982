//! The dispatcher as a binder service: windows register through binder and get their input
//! channel's client end back as a `BINDER_TYPE_FD` object; a window whose process dies is
//! removed by its token's death notification.
//!
//! [`InputService`] (a local [`Service`]) sits in front of a [`DispatcherThread`] and turns
//! calls into the dispatcher's plain methods. A window is identified by a **token**: a binder
//! object of the application's process ([`WindowTokenService`] is one with nothing to call).
//! The service keeps the proxy it receives, names the window by the proxy's handle (the
//! driver gives one node one handle in a process) and links to its death, which unregisters
//! the window. [`InputClient`] is the application's side of the calls.
//!
//! Every call starts with the interface token [`DESCRIPTOR`]. The calls:
//!
//! | code                  | arguments                                         | reply              |
//! |-----------------------|---------------------------------------------------|--------------------|
//! | [`REGISTER_WINDOW`]   | token binder, name (String16), left, top, right, bottom (f32) | fd (client end) |
//! | [`UNREGISTER_WINDOW`] | token binder                                      | bool: was registered |
//! | [`SET_FOCUS`]         | token binder or null                              | —                  |
//! | [`INJECT_EVENT`]      | byte array: one key or motion message in the channel's wire format (its seq is ignored) | u32 seq |
//!
//! Errors travel as status codes: a bad argument is `BAD_VALUE`, an unknown window
//! `NAME_NOT_FOUND`, a refused caller `PERMISSION_DENIED` with the reason.
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
use crate::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, Service, FIRST_CALL_TRANSACTION,
};
use crate::bittube::TubeEnd;

/// The name the service is registered under with the service manager.
pub const SERVICE_NAME: &str = "bittube.input";
/// The interface descriptor of the service.
pub const DESCRIPTOR: &str = "bittube.input.IInputDispatcher";
/// The interface descriptor of a window token.
pub const TOKEN_DESCRIPTOR: &str = "bittube.input.IWindowToken";
/// Register a window; the reply carries its channel's client end.
pub const REGISTER_WINDOW: u32 = FIRST_CALL_TRANSACTION;
/// Unregister a window.
pub const UNREGISTER_WINDOW: u32 = FIRST_CALL_TRANSACTION + 1;
/// Give focus to a window (or to none).
pub const SET_FOCUS: u32 = FIRST_CALL_TRANSACTION + 2;
/// Inject a key or motion event.
pub const INJECT_EVENT: u32 = FIRST_CALL_TRANSACTION + 3;

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

    fn read_token(data: &mut Parcel, call: &CallContext) -> Result<Option<Binder>, BinderError> {
        call.process.read_binder(data)
    }

    fn register(
        &self,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        let token = Self::read_token(data, call)?
            .ok_or_else(|| BinderError::BadValue("the window token is null".into()))?;
        let name = data.read_required_string16()?;
        let bounds = Bounds {
            left: data.read_f32()?,
            top: data.read_f32()?,
            right: data.read_f32()?,
            bottom: data.read_f32()?,
        };
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
            .register_window(&name, bounds, window)
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
        reply.write_fd(end.into())?;
        Ok(())
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

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        if (REGISTER_WINDOW..=INJECT_EVENT).contains(&code) {
            data.enforce_interface(DESCRIPTOR)?;
        }
        match code {
            REGISTER_WINDOW => self.register(data, reply, call),
            UNREGISTER_WINDOW => {
                let token = Self::read_token(data, call)?
                    .ok_or_else(|| BinderError::BadValue("the window token is null".into()))?;
                let window = Self::window_of(&token)?;
                self.check_owner(window, call)?;
                let removed = self.dispatcher.lock().unregister_window(window);
                // Dropping the kept proxy (outside the lock) also drops its death notification.
                let token = lock_tokens(&self.tokens).remove(&window);
                drop(token);
                reply.write_bool(removed)?;
                Ok(())
            }
            SET_FOCUS => {
                self.need_inject(call, "change the focus")?;
                let window = match Self::read_token(data, call)? {
                    Some(token) => Some(Self::window_of(&token)?),
                    None => None,
                };
                self.dispatcher
                    .lock()
                    .set_focus(window)
                    .map_err(dispatch_error)
            }
            INJECT_EVENT => {
                self.need_inject(call, "inject events")?;
                let bytes = data
                    .read_byte_array()?
                    .ok_or_else(|| BinderError::BadValue("the event is null".into()))?;
                let message = InputMessage::decode(&bytes)
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
                reply.write_u32(injected.seq)?;
                Ok(())
            }
            other => Err(BinderError::UnknownTransaction(other)),
        }
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
    process: ProcessState,
    service: Binder,
}

impl InputClient {
    /// Calls to `service` (found with the service manager under [`SERVICE_NAME`]) from
    /// `process`.
    pub fn new(process: &ProcessState, service: Binder) -> InputClient {
        InputClient {
            process: process.clone(),
            service,
        }
    }

    fn call(
        &self,
        code: u32,
        write: impl FnOnce(&mut Parcel) -> Result<(), BinderError>,
    ) -> Result<Parcel, BinderError> {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR)?;
        write(&mut data)?;
        self.service.transact(code, &data)
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
        let mut reply = self.call(REGISTER_WINDOW, |data| {
            self.process.write_binder(data, token)?;
            data.write_string16(name)?;
            for v in [bounds.left, bounds.top, bounds.right, bounds.bottom] {
                data.write_f32(v)?;
            }
            Ok(())
        })?;
        let fd = reply.read_fd()?;
        let end = TubeEnd::try_from_socket(fd)
            .map_err(|e| BinderError::BadValue(format!("the reply's fd is not a channel: {e}")))?;
        Ok(InputChannel::from_tube_end(name, end))
    }

    /// Unregister the window of `token`; whether it was registered.
    pub fn unregister_window(&self, token: &Binder) -> Result<bool, BinderError> {
        let mut reply = self.call(UNREGISTER_WINDOW, |data| {
            self.process.write_binder(data, token)
        })?;
        Ok(reply.read_bool()?)
    }

    /// Give focus to the window of `token`, or to none.
    pub fn set_focus(&self, token: Option<&Binder>) -> Result<(), BinderError> {
        self.call(SET_FOCUS, |data| match token {
            Some(token) => self.process.write_binder(data, token),
            None => Ok(data.write_null_binder()?),
        })
        .map(drop)
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
        let mut reply = self.call(INJECT_EVENT, |data| Ok(data.write_byte_array(bytes)?))?;
        Ok(reply.read_u32()?)
    }

    fn inject(&self, message: &InputMessage) -> Result<u32, BinderError> {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        let len = message
            .encode(&mut buf)
            .map_err(|e| BinderError::BadValue(e.to_string()))?;
        self.inject_bytes(&buf[..len])
    }
}
