//! A dispatcher shared between threads, pumped by a thread of its own.
//!
//! A binder service handles calls on the threads of its binder thread pool, and death
//! notifications arrive on them too; the dispatcher's work (publishing, reading finished
//! signals, ANR checks) needs a thread that waits on the channels. [`DispatcherThread`] holds
//! the [`Dispatcher`] behind a mutex: its thread waits on the dispatcher's epoll descriptor
//! *without* the lock (so calls from other threads are never held up by the wait), then takes
//! the lock for a non-blocking [`Dispatcher::pump`] and forwards what it reports to a channel
//! ([`DispatcherThread::events`]). Other threads call [`DispatcherThread::lock`] and use the
//! dispatcher's plain methods (`register_window`, `inject_key`, ...).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::dispatcher::{DispatchError, DispatchEvent, Dispatcher, DispatcherConfig};

/// The longest the thread sleeps between checks of its stop flag and of ANR deadlines.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// A [`Dispatcher`] behind a mutex, pumped by its own thread; stopped and joined on drop.
#[derive(Debug)]
pub struct DispatcherThread {
    dispatcher: Arc<Mutex<Dispatcher>>,
    events: Receiver<DispatchEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), DispatchError>>>,
}

impl DispatcherThread {
    /// Start a dispatcher and its thread.
    pub fn start(config: DispatcherConfig) -> Result<DispatcherThread, DispatchError> {
        let dispatcher = Dispatcher::new(config)?;
        let epoll = dispatcher.poll_fd()?;
        let dispatcher = Arc::new(Mutex::new(dispatcher));
        let (tx, events) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let dispatcher = Arc::clone(&dispatcher);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("input-dispatcher".into())
                .spawn(move || run(&dispatcher, &epoll, &stop, &tx))?
        };
        Ok(DispatcherThread {
            dispatcher,
            events,
            stop,
            thread: Some(thread),
        })
    }

    /// The dispatcher, locked. Keep the guard short: the pumping thread waits for it.
    pub fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What the dispatcher reports (ANRs, removed windows, bad messages), in order.
    pub fn events(&self) -> &Receiver<DispatchEvent> {
        &self.events
    }

    /// Stop the thread and return its outcome (an error if polling failed).
    pub fn stop(mut self) -> Result<(), DispatchError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), DispatchError> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.lock().waker().wake();
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(DispatchError::Io(std::io::Error::other(
                    "the dispatcher thread panicked",
                )))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for DispatcherThread {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn run(
    dispatcher: &Mutex<Dispatcher>,
    epoll: &impl AsFd,
    stop: &AtomicBool,
    tx: &Sender<DispatchEvent>,
) -> Result<(), DispatchError> {
    let lock = || dispatcher.lock().unwrap_or_else(PoisonError::into_inner);
    while !stop.load(Ordering::SeqCst) {
        let wait = lock().next_timeout().map_or(MAX_WAIT, |t| t.min(MAX_WAIT));
        // Round up: a sub-millisecond rest must not turn into a busy loop of 0 ms polls.
        let ms = wait.as_micros().div_ceil(1000) as u16;
        let mut fds = [PollFd::new(epoll.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(DispatchError::Io(e.into())),
        }
        let events = lock().pump(Duration::ZERO)?;
        for event in events {
            // Nobody listening is fine: the events are also counted in the stats.
            let _ = tx.send(event);
        }
    }
    Ok(())
}
