//! An InputDispatcher-style pipeline: input channels, publisher and consumer, and a
//! dispatcher with finished signals and ANR detection.
//!
//! Built on the crate's public API only ([`crate::bittube`]):
//! - [`message`]: the wire format, a header `{type, seq}` and exact bodies for key, motion
//!   (1 to 16 pointers), finished and focus; sizes validated exactly on receipt.
//! - [`channel`]: [`InputChannel`], a SEQPACKET tube end with 32 KiB buffers; would-block,
//!   dead peer and malformed messages are distinct outcomes.
//! - [`publisher`] / [`consumer`]: [`InputPublisher`] publishes events and reads finished
//!   signals; [`InputConsumer`] batches MOVE samples per (device, source) until a frame and
//!   answers one finished signal per sequence number.
//! - [`dispatcher`]: [`Dispatcher`], windows with connections, focus and touch routing,
//!   outbound and wait queues, ANRs, removal of dead or broken windows, latency statistics.
//! - [`thread`]: [`DispatcherThread`], the dispatcher behind a mutex with a thread that pumps
//!   it, for callers on other threads (a binder thread pool).
//! - [`binder`]: [`binder::InputService`], the dispatcher as a binder service (windows
//!   register with a token binder and get their channel's client end as a `BINDER_TYPE_FD`
//!   object; the token's death removes the window), and [`binder::InputClient`], the
//!   application's side.
//!
//! The dispatcher is reached through plain calls — [`Dispatcher::register_window`] (which
//! returns the client end of the window's channel, to hand to the application),
//! [`Dispatcher::unregister_window`], [`Dispatcher::set_focus`], [`Dispatcher::inject_key`],
//! [`Dispatcher::inject_motion`] — and [`binder::InputService`] puts binder in front of them:
//! it names a window by the handle of the token binder the application sends, returns the
//! client end as a `BINDER_TYPE_FD` object, and calls `unregister_window` from the token's
//! death notification.
//!
//! ```
//! use bittube::input_demo::*;
//! use std::time::Duration;
//!
//! let mut dispatcher = Dispatcher::new(DispatcherConfig::default())?;
//! let bounds = Bounds { left: 0.0, top: 0.0, right: 100.0, bottom: 100.0 };
//! let client = dispatcher.register_window("app", bounds, WindowToken(1))?;
//! let mut app = InputConsumer::new(InputChannel::from_tube_end("app", client));
//!
//! let t = now_nanos();
//! let sent = dispatcher.inject_motion(&MotionEvent::touch(MOTION_ACTION_DOWN, 5.0, 5.0, t, t))?;
//! let events = app.consume(None)?;
//! assert_eq!(events[0].seqs(), &[sent.seq]);
//! app.finish(&events[0], true)?;
//! dispatcher.pump(Duration::from_secs(1))?;
//! assert_eq!(dispatcher.stats().finished, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod binder;
pub mod channel;
pub mod consumer;
pub mod dispatcher;
pub mod evdev;
pub mod message;
pub mod publisher;
pub mod thread;

pub use channel::{ChannelError, InputChannel, INPUT_CHANNEL_BUFFER_SIZE};
pub use consumer::{ConsumedEvent, ConsumerStats, InputConsumer};
pub use dispatcher::{
    Bounds, DispatchError, DispatchEvent, Dispatcher, DispatcherConfig, DispatcherStats, Injected,
    LatencySummary, RemovalReason, WindowInfo, WindowToken, DEFAULT_ANR_TIMEOUT,
};
pub use message::{
    InputMessage, KeyEvent, MessageError, MotionEvent, Pointer, KEY_ACTION_DOWN, KEY_ACTION_UP,
    MAX_POINTERS, MOTION_ACTION_CANCEL, MOTION_ACTION_DOWN, MOTION_ACTION_MOVE, MOTION_ACTION_UP,
    SOURCE_KEYBOARD, SOURCE_TOUCHSCREEN, TOOL_TYPE_FINGER,
};
pub use publisher::{Finished, InputPublisher};
pub use thread::DispatcherThread;

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the time base of event, consume and publish
/// times (shared by all processes of the machine).
pub fn now_nanos() -> i64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() * 1_000_000_000 + t.tv_nsec(),
        // CLOCK_MONOTONIC always exists on Linux; fall back to a process-local clock.
        Err(_) => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_nanos() as i64
        }
    }
}
