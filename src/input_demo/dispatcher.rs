//! The dispatcher core: windows with connections, routing, outbound and wait queues, ANRs.
//!
//! A window is registered with a name, its bounds and a [`WindowToken`]; the dispatcher makes
//! an [`InputChannel`] pair, keeps the server end and returns the client end, which the caller
//! hands to the application (by fd passing, or through binder as a `BINDER_TYPE_FD` object:
//! see [`super::binder`]). Windows stack in registration order, the newest on top.
//!
//! Routing: key events go to the focused window ([`Dispatcher::set_focus`]); a touch DOWN goes
//! to the topmost window whose bounds contain its first pointer, and the rest of that gesture
//! (same device and source, until UP or CANCEL) follows it to the same window.
//!
//! Per connection, an **outbound queue** holds events not yet written, a **wait queue** the
//! events published and not yet finished. [`Dispatcher::pump`] does the work: it writes
//! outbound events while the channel takes them, reads finished signals, and reports
//! [`DispatchEvent`]s:
//! - an ANR when the oldest unfinished event of a connection is older than the timeout (once
//!   per event; it is cleared when that event is finished);
//! - a window removed when its channel is dead (`DeadObject`: the application closed it or
//!   died) or broken (the channel would block while nothing waits to be finished: every event
//!   published was answered, so the application's side should be empty, and a full channel
//!   means the channel no longer works as a channel should), or when it was unregistered;
//! - a bad message (malformed, unexpected, or a finished signal for an unknown seq): reported,
//!   skipped, and the connection keeps going.
//!
//! `pump` waits with a `mio::Poll` for the channels (and for the next ANR deadline), so one
//! thread can drive the dispatcher. For calls from other threads, [`super::DispatcherThread`]
//! keeps it behind a mutex and waits on [`Dispatcher::poll_fd`] without the lock;
//! [`Dispatcher::waker`] makes a waiting `pump` return early.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::channel::{ChannelError, InputChannel};
use super::message::{
    InputMessage, KeyEvent, MessageError, MotionEvent, MOTION_ACTION_CANCEL, MOTION_ACTION_DOWN,
    MOTION_ACTION_UP,
};
use super::now_nanos;
use super::publisher::{Finished, InputPublisher};
use crate::bittube::TubeEnd;

/// The default ANR timeout (Android's 5 s).
pub const DEFAULT_ANR_TIMEOUT: Duration = Duration::from_secs(5);

/// The mio token of the dispatcher's waker; no window may use it.
const WAKER_TOKEN: Token = Token(usize::MAX);

/// Identifies a window: the binder layer maps a window's binder token to one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowToken(pub u64);

/// A window's rectangle in display coordinates: `left <= x < right`, `top <= y < bottom`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Left edge (inclusive).
    pub left: f32,
    /// Top edge (inclusive).
    pub top: f32,
    /// Right edge (exclusive).
    pub right: f32,
    /// Bottom edge (exclusive).
    pub bottom: f32,
}

impl Bounds {
    /// Whether `(x, y)` is inside.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        self.left <= x && x < self.right && self.top <= y && y < self.bottom
    }
}

/// Settings of a dispatcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// How long the oldest unfinished event of a connection may wait before an ANR is
    /// reported.
    pub anr_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> DispatcherConfig {
        DispatcherConfig {
            anr_timeout: DEFAULT_ANR_TIMEOUT,
        }
    }
}

/// Why a window was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    /// [`Dispatcher::unregister_window`] was called (e.g. on a death notification).
    Unregistered,
    /// The channel's peer is gone (`DeadObject`).
    DeadObject,
    /// The channel would block while no event waits to be finished, or failed otherwise.
    BrokenChannel,
}

/// Something the dispatcher reports from [`Dispatcher::pump`].
#[derive(Clone, Debug, PartialEq)]
pub enum DispatchEvent {
    /// Application not responding: the oldest unfinished event of the window is older than
    /// the ANR timeout.
    Anr {
        /// The window.
        token: WindowToken,
        /// Its name.
        name: String,
        /// The seq of the oldest unfinished event.
        seq: u32,
        /// How long it has waited since it was published.
        waited: Duration,
    },
    /// A window was removed; its channel is closed.
    WindowRemoved {
        /// The window.
        token: WindowToken,
        /// Its name.
        name: String,
        /// Why.
        reason: RemovalReason,
        /// Events that were queued or published and will never be finished.
        abandoned: usize,
    },
    /// A message from the application was rejected (and skipped).
    BadMessage {
        /// The window.
        token: WindowToken,
        /// Its name.
        name: String,
        /// What was wrong.
        error: String,
    },
}

/// What can go wrong calling the dispatcher.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The token is already registered.
    #[error("a window with token {0:?} is already registered")]
    DuplicateToken(WindowToken),
    /// The token is reserved for the dispatcher's waker.
    #[error("window token {0:?} is reserved")]
    ReservedToken(WindowToken),
    /// No window has this token.
    #[error("no window with token {0:?}")]
    UnknownWindow(WindowToken),
    /// A key event arrived while no window has focus.
    #[error("no focused window to receive a key event")]
    NoFocusedWindow,
    /// A touch landed outside every window.
    #[error("no window at ({x}, {y})")]
    NoWindowAt {
        /// X of the first pointer.
        x: f32,
        /// Y of the first pointer.
        y: f32,
    },
    /// The injected event is invalid (e.g. 0 or more than 16 pointers).
    #[error("invalid event: {0}")]
    BadEvent(#[from] MessageError),
    /// The input channel could not be created.
    #[error("input channel: {0}")]
    Channel(#[from] ChannelError),
    /// Polling failed.
    #[error("dispatcher poll: {0}")]
    Io(#[from] io::Error),
}

/// Where an injected event went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The target window.
    pub token: WindowToken,
    /// The event's sequence number.
    pub seq: u32,
}

/// A registered window as seen from outside.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowInfo {
    /// Its token.
    pub token: WindowToken,
    /// Its name.
    pub name: String,
    /// Its bounds.
    pub bounds: Bounds,
    /// Events not yet published.
    pub outbound: usize,
    /// Events published and not yet finished.
    pub waiting: usize,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

/// Counters and latencies of a dispatcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Events published (written to a channel).
    pub dispatched: u64,
    /// Finished signals matched to a published event.
    pub finished: u64,
    /// Batches seen: groups of two or more finished signals with one consume time (a
    /// consumer finishes a batch of MOVE samples with one time stamp).
    pub batches: u64,
    /// ANRs reported.
    pub anrs: u64,
    /// Windows removed, for any reason.
    pub windows_removed: u64,
    /// Messages from applications rejected.
    pub bad_messages: u64,
    /// Events abandoned with a removed window.
    pub abandoned: u64,
    /// From publishing an event to reading its finished signal.
    pub finish_latency: LatencySummary,
    /// From publishing an event to the consume time its finished signal reports (both
    /// `CLOCK_MONOTONIC`, which all processes share).
    pub consume_latency: LatencySummary,
}

#[derive(Debug)]
struct Pending {
    seq: u32,
    message: InputMessage,
}

#[derive(Debug)]
struct Waiting {
    seq: u32,
    published_at: i64,
}

#[derive(Debug)]
struct Connection {
    token: WindowToken,
    name: String,
    bounds: Bounds,
    publisher: InputPublisher,
    outbound: VecDeque<Pending>,
    wait: VecDeque<Waiting>,
    anr_seq: Option<u32>,
    last_consume_time: Option<i64>,
    group_len: usize,
}

/// The dispatcher: windows, focus, touch targets, connections and their queues.
#[derive(Debug)]
pub struct Dispatcher {
    config: DispatcherConfig,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Bottom to top.
    windows: Vec<Connection>,
    focus: Option<WindowToken>,
    /// Touch gestures in progress: (device, source) → window.
    touches: Vec<((i32, u32), WindowToken)>,
    last_seq: u32,
    notifications: Vec<DispatchEvent>,
    counters: DispatcherStats,
    finish_latency: Histogram<u64>,
    consume_latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h, 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

fn record_us(h: &mut Histogram<u64>, nanos: i64) {
    let us = (nanos.max(0) as u64 / 1000).max(1);
    h.saturating_record(us);
}

impl Dispatcher {
    /// A dispatcher with no window.
    pub fn new(config: DispatcherConfig) -> Result<Dispatcher, DispatchError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Dispatcher {
            config,
            poll,
            events: Events::with_capacity(64),
            waker,
            windows: Vec::new(),
            focus: None,
            touches: Vec::new(),
            last_seq: 0,
            notifications: Vec::new(),
            counters: DispatcherStats::default(),
            finish_latency: histogram(),
            consume_latency: histogram(),
        })
    }

    /// The settings.
    pub fn config(&self) -> DispatcherConfig {
        self.config
    }

    /// A waker that makes a waiting [`pump`](Self::pump) return early (for a thread that
    /// wants the dispatcher's lock).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Register a window on top of the others and return the client end of its new input
    /// channel, to hand to the application.
    pub fn register_window(
        &mut self,
        name: &str,
        bounds: Bounds,
        token: WindowToken,
    ) -> Result<TubeEnd, DispatchError> {
        if Token(token.0 as usize) == WAKER_TOKEN {
            return Err(DispatchError::ReservedToken(token));
        }
        if self.index(token).is_some() {
            return Err(DispatchError::DuplicateToken(token));
        }
        let (server, client) = InputChannel::pair(name)?;
        let raw = server.as_fd().as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&raw),
            Token(token.0 as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.windows.push(Connection {
            token,
            name: name.to_owned(),
            bounds,
            publisher: InputPublisher::new(server),
            outbound: VecDeque::new(),
            wait: VecDeque::new(),
            anr_seq: None,
            last_consume_time: None,
            group_len: 0,
        });
        Ok(client.into_tube_end())
    }

    /// Remove a window and close its channel (its events are abandoned). Returns whether it
    /// was registered. A [`DispatchEvent::WindowRemoved`] is reported by the next `pump`.
    pub fn unregister_window(&mut self, token: WindowToken) -> bool {
        match self.index(token) {
            Some(i) => {
                self.remove(i, RemovalReason::Unregistered);
                true
            }
            None => false,
        }
    }

    /// Give focus to `token` (or to no window); the old and new windows are told by a focus
    /// event.
    pub fn set_focus(&mut self, token: Option<WindowToken>) -> Result<(), DispatchError> {
        if let Some(t) = token {
            if self.index(t).is_none() {
                return Err(DispatchError::UnknownWindow(t));
            }
        }
        if self.focus == token {
            return Ok(());
        }
        if let Some(old) = self.focus.take() {
            self.enqueue(old, |seq| InputMessage::Focus {
                seq,
                has_focus: false,
                in_touch_mode: false,
            });
        }
        if let Some(new) = token {
            self.focus = Some(new);
            self.enqueue(new, |seq| InputMessage::Focus {
                seq,
                has_focus: true,
                in_touch_mode: false,
            });
        }
        Ok(())
    }

    /// The focused window.
    pub fn focused(&self) -> Option<WindowToken> {
        self.focus
    }

    /// Send a key event to the focused window.
    pub fn inject_key(&mut self, event: &KeyEvent) -> Result<Injected, DispatchError> {
        let token = self.focus.ok_or(DispatchError::NoFocusedWindow)?;
        let event = *event;
        let seq = self.enqueue(token, |seq| InputMessage::Key { seq, event });
        Ok(Injected { token, seq })
    }

    /// Send a motion event to the window under its first pointer (for a DOWN), or to the
    /// window its gesture started in.
    pub fn inject_motion(&mut self, event: &MotionEvent) -> Result<Injected, DispatchError> {
        event.validate()?;
        let key = (event.device_id, event.source);
        let gesture = self.touches.iter().position(|(k, _)| *k == key);
        let token = match (event.action, gesture) {
            (MOTION_ACTION_DOWN, _) | (_, None) => {
                let p = event.pointers[0];
                let token = self
                    .windows
                    .iter()
                    .rev()
                    .find(|w| w.bounds.contains(p.x, p.y))
                    .map(|w| w.token)
                    .ok_or(DispatchError::NoWindowAt { x: p.x, y: p.y })?;
                if let Some(g) = gesture {
                    self.touches.remove(g);
                }
                if event.action == MOTION_ACTION_DOWN {
                    self.touches.push((key, token));
                }
                token
            }
            (_, Some(g)) => self.touches[g].1,
        };
        if matches!(event.action, MOTION_ACTION_UP | MOTION_ACTION_CANCEL) {
            self.touches.retain(|(k, _)| *k != key);
        }
        let seq = self.enqueue(token, |seq| InputMessage::Motion {
            seq,
            event: event.clone(),
        });
        Ok(Injected { token, seq })
    }

    /// Write what the channels take, wait up to `timeout` (less if an ANR falls due) for
    /// channel activity, read finished signals, write again, check for ANRs, and return what
    /// happened since the last call.
    pub fn pump(&mut self, timeout: Duration) -> Result<Vec<DispatchEvent>, DispatchError> {
        self.flush_all();
        let wait = if self.notifications.is_empty() {
            self.next_timeout()
                .map_or(timeout, |left| timeout.min(left))
        } else {
            Duration::ZERO
        };
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in ready {
            if token != WAKER_TOKEN {
                self.read_finished(WindowToken(token.0 as u64));
            }
        }
        self.flush_all();
        self.check_anrs(now_nanos());
        Ok(std::mem::take(&mut self.notifications))
    }

    /// How long [`pump`](Self::pump) may wait before an ANR falls due (`None`: no event is
    /// waiting to be finished, or its ANR was already reported).
    pub fn next_timeout(&self) -> Option<Duration> {
        let deadline = self.next_anr_deadline()?;
        Some(Duration::from_nanos((deadline - now_nanos()).max(0) as u64))
    }

    /// A descriptor (a duplicate of the dispatcher's epoll fd) that is readable whenever a
    /// channel has activity or the waker was woken: a thread can wait on it without holding
    /// the dispatcher, then call `pump(Duration::ZERO)`.
    pub fn poll_fd(&self) -> Result<OwnedFd, DispatchError> {
        Ok(self.poll.registry().as_fd().try_clone_to_owned()?)
    }

    /// The windows, bottom to top.
    pub fn windows(&self) -> Vec<WindowInfo> {
        self.windows
            .iter()
            .map(|w| WindowInfo {
                token: w.token,
                name: w.name.clone(),
                bounds: w.bounds,
                outbound: w.outbound.len(),
                waiting: w.wait.len(),
            })
            .collect()
    }

    /// Whether no event is queued or waiting to be finished on any connection.
    pub fn is_idle(&self) -> bool {
        self.windows
            .iter()
            .all(|w| w.outbound.is_empty() && w.wait.is_empty())
    }

    /// The latency distributions behind [`stats`](Self::stats), in µs: publish → the consume
    /// time the finished signal reports, and publish → reading that signal.
    pub fn latency_histograms(&self) -> (&Histogram<u64>, &Histogram<u64>) {
        (&self.consume_latency, &self.finish_latency)
    }

    /// Counters and latency percentiles.
    pub fn stats(&self) -> DispatcherStats {
        DispatcherStats {
            finish_latency: summary(&self.finish_latency),
            consume_latency: summary(&self.consume_latency),
            ..self.counters
        }
    }

    fn index(&self, token: WindowToken) -> Option<usize> {
        self.windows.iter().position(|w| w.token == token)
    }

    fn next_seq(&mut self) -> u32 {
        self.last_seq = self.last_seq.wrapping_add(1);
        if self.last_seq == 0 {
            self.last_seq = 1; // 0 is never a valid seq
        }
        self.last_seq
    }

    /// Queue a message for `token` (which exists) and write what the channel takes.
    fn enqueue(&mut self, token: WindowToken, message: impl FnOnce(u32) -> InputMessage) -> u32 {
        let seq = self.next_seq();
        if let Some(i) = self.index(token) {
            self.windows[i].outbound.push_back(Pending {
                seq,
                message: message(seq),
            });
            if let Some(reason) = self.flush(i) {
                self.remove(i, reason);
            }
        }
        seq
    }

    fn flush_all(&mut self) {
        let mut i = 0;
        while i < self.windows.len() {
            match self.flush(i) {
                Some(reason) => self.remove(i, reason),
                None => i += 1,
            }
        }
    }

    /// Publish outbound events of window `i` while the channel takes them; returns why the
    /// window must go, if it must.
    fn flush(&mut self, i: usize) -> Option<RemovalReason> {
        let conn = &mut self.windows[i];
        while let Some(pending) = conn.outbound.front() {
            // Stamped before the send: the application may consume the event, on another
            // CPU, before the send returns here.
            let published_at = now_nanos();
            match conn.publisher.publish(&pending.message) {
                Ok(()) => {
                    let seq = pending.seq;
                    conn.outbound.pop_front();
                    conn.wait.push_back(Waiting { seq, published_at });
                    self.counters.dispatched += 1;
                }
                Err(ChannelError::WouldBlock) if conn.wait.is_empty() => {
                    return Some(RemovalReason::BrokenChannel)
                }
                Err(ChannelError::WouldBlock) => return None,
                Err(ChannelError::DeadObject) => return Some(RemovalReason::DeadObject),
                Err(_) => return Some(RemovalReason::BrokenChannel),
            }
        }
        None
    }

    fn read_finished(&mut self, token: WindowToken) {
        let Some(i) = self.index(token) else {
            return;
        };
        loop {
            let conn = &mut self.windows[i];
            match conn.publisher.receive_finished() {
                Ok(finished) => self.on_finished(i, finished),
                Err(ChannelError::WouldBlock) => return,
                Err(ChannelError::DeadObject) => {
                    self.remove(i, RemovalReason::DeadObject);
                    return;
                }
                Err(e @ (ChannelError::Malformed(_) | ChannelError::Unexpected { .. })) => {
                    self.bad_message(i, e.to_string());
                }
                Err(_) => {
                    self.remove(i, RemovalReason::BrokenChannel);
                    return;
                }
            }
        }
    }

    fn on_finished(&mut self, i: usize, finished: Finished) {
        let conn = &mut self.windows[i];
        let Some(at) = conn.wait.iter().position(|w| w.seq == finished.seq) else {
            let error = format!(
                "finished signal for seq {}, which is not waiting to be finished",
                finished.seq
            );
            self.bad_message(i, error);
            return;
        };
        let waited = conn.wait.remove(at).expect("index from position");
        if conn.anr_seq == Some(finished.seq) {
            conn.anr_seq = None;
        }
        if conn.last_consume_time == Some(finished.consume_time) {
            conn.group_len += 1;
            if conn.group_len == 2 {
                self.counters.batches += 1;
            }
        } else {
            conn.last_consume_time = Some(finished.consume_time);
            conn.group_len = 1;
        }
        self.counters.finished += 1;
        let now = now_nanos();
        record_us(&mut self.finish_latency, now - waited.published_at);
        record_us(
            &mut self.consume_latency,
            finished.consume_time - waited.published_at,
        );
    }

    fn bad_message(&mut self, i: usize, error: String) {
        self.counters.bad_messages += 1;
        let conn = &self.windows[i];
        self.notifications.push(DispatchEvent::BadMessage {
            token: conn.token,
            name: conn.name.clone(),
            error,
        });
    }

    fn remove(&mut self, i: usize, reason: RemovalReason) {
        let conn = self.windows.remove(i);
        let raw = conn.publisher.channel().as_fd().as_raw_fd();
        // Deregistering a closed-on-our-side fd cannot happen: we own it until the drop below.
        let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        if self.focus == Some(conn.token) {
            self.focus = None;
        }
        self.touches.retain(|(_, t)| *t != conn.token);
        let abandoned = conn.outbound.len() + conn.wait.len();
        self.counters.windows_removed += 1;
        self.counters.abandoned += abandoned as u64;
        self.notifications.push(DispatchEvent::WindowRemoved {
            token: conn.token,
            name: conn.name.clone(),
            reason,
            abandoned,
        });
        drop(conn); // closes the server end
    }

    fn next_anr_deadline(&self) -> Option<i64> {
        let timeout = self.config.anr_timeout.as_nanos() as i64;
        self.windows
            .iter()
            .filter_map(|w| {
                let oldest = w.wait.front()?;
                (w.anr_seq != Some(oldest.seq)).then_some(oldest.published_at + timeout)
            })
            .min()
    }

    fn check_anrs(&mut self, now: i64) {
        let timeout = self.config.anr_timeout;
        for conn in &mut self.windows {
            let Some(oldest) = conn.wait.front() else {
                continue;
            };
            let waited = Duration::from_nanos((now - oldest.published_at).max(0) as u64);
            if waited >= timeout && conn.anr_seq != Some(oldest.seq) {
                conn.anr_seq = Some(oldest.seq);
                self.counters.anrs += 1;
                self.notifications.push(DispatchEvent::Anr {
                    token: conn.token,
                    name: conn.name.clone(),
                    seq: oldest.seq,
                    waited,
                });
            }
        }
    }
}
