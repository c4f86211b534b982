//! The async side of generated interfaces (feature `tokio`).
//!
//! - Async proxies run each blocking call on tokio's blocking pool ([`blocking`]): the
//!   runtime's worker threads never wait on binder; each call in flight holds one blocking
//!   thread (which is, for that time, a binder thread of the process).
//! - Async services run their methods on the user's runtime ([`run_on`]). A oneway method's
//!   future is only spawned ([`spawn_oneway`]): nobody waits for a reply, the binder thread is
//!   free at once. For a two-way method the binder thread that received the call waits for
//!   the future's result, *parked* ([`ParkedThread`]): the reply must leave from the thread
//!   that read the transaction (on the kernel driver `BC_REPLY` pops that thread's
//!   transaction stack, and a thread with a transaction on its stack gets no other calls), so
//!   the thread is held for the wait. A parked thread is not counted as available: when no
//!   looper is left idle the runtime enters a replacement looper, so waiting async methods
//!   never take the pool's capacity from other calls (up to
//!   [`ProcessState::set_max_parked_replacements`](crate::binder_ipc::runtime::ProcessState::set_max_parked_replacements);
//!   [`ProcessState::pool_stats`](crate::binder_ipc::runtime::ProcessState::pool_stats) shows
//!   parked, idle and replacement threads). [`AsyncServerStats`] counts per service.

use crate::binder_ipc::runtime::{BinderError, ParkedThread, ProcessState};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tokio runtime an async service runs on (re-exported: generated code needs no `tokio`
/// dependency of its own).
pub use tokio::runtime::Handle as RuntimeHandle;

/// Runs a blocking binder call on tokio's blocking pool and awaits its result.
pub async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> Result<R, BinderError> + Send + 'static,
) -> Result<R, BinderError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(r) => r,
        Err(e) => Err(BinderError::ServiceFailed(format!(
            "the blocking call did not finish: {e}"
        ))),
    }
}

/// What an async service's binder threads did: how many calls ran, how many binder threads
/// wait on a future right now and at most.
#[derive(Debug, Default)]
pub struct AsyncServerStats {
    calls: AtomicU64,
    waiting: AtomicU64,
    max_waiting: AtomicU64,
    oneway: AtomicU64,
    oneway_failed: AtomicU64,
}

/// A copy of [`AsyncServerStats`]' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsyncServerCounts {
    /// Calls handed to the tokio runtime.
    pub calls: u64,
    /// Binder threads waiting for a future now.
    pub waiting: u64,
    /// The most binder threads that waited at once.
    pub max_waiting: u64,
    /// Oneway calls spawned on the runtime (no binder thread waits for them).
    pub oneway: u64,
    /// Oneway calls whose method returned an error (there is no caller to tell).
    pub oneway_failed: u64,
}

impl AsyncServerStats {
    /// The counters now.
    pub fn counts(&self) -> AsyncServerCounts {
        AsyncServerCounts {
            calls: self.calls.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            max_waiting: self.max_waiting.load(Ordering::Relaxed),
            oneway: self.oneway.load(Ordering::Relaxed),
            oneway_failed: self.oneway_failed.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the waiting count when dropped.
struct Waiting<'a>(&'a AsyncServerStats);

impl<'a> Waiting<'a> {
    fn enter(stats: &'a AsyncServerStats) -> Self {
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let now = stats.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        stats.max_waiting.fetch_max(now, Ordering::Relaxed);
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `future` on `runtime` and waits for its result on this binder thread, parked
/// ([`ParkedThread`]: the pool replaces it while it waits).
pub fn run_on<R: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    stats: &AsyncServerStats,
    future: impl Future<Output = Result<R, BinderError>> + Send + 'static,
) -> Result<R, BinderError> {
    let _waiting = Waiting::enter(stats);
    let _parked = ParkedThread::enter();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The receiver only goes away with the binder thread: nothing to report to then.
        let _ = tx.send(future.await);
    });
    match rx.recv() {
        Ok(r) => r,
        Err(_) => Err(BinderError::ServiceFailed(
            "the async method did not finish (it panicked, or the runtime shut down)".into(),
        )),
    }
}

/// Spawns a oneway method's `future` on `runtime` and returns at once; an error it ends with
/// is counted in `stats` (`oneway_failed`) and in the process's
/// [`PoolStats::oneway_errors`](crate::binder_ipc::runtime::PoolStats::oneway_errors), and
/// logged.
pub fn spawn_oneway(
    runtime: &tokio::runtime::Handle,
    stats: &std::sync::Arc<AsyncServerStats>,
    future: impl Future<Output = Result<(), BinderError>> + Send + 'static,
) {
    stats.oneway.fetch_add(1, Ordering::Relaxed);
    let stats = stats.clone();
    let process = ProcessState::serving();
    runtime.spawn(async move {
        if let Err(e) = future.await {
            stats.oneway_failed.fetch_add(1, Ordering::Relaxed);
            match &process {
                Some(p) => p.report_oneway_error("of an async service", &e),
                None => tracing::warn!(
                    target: "bittube::binder",
                    "oneway call of an async service failed: {e}"
                ),
            }
        }
    });
}

/// Resolves when the process behind `binder` dies (a death notification as a future). A
/// local binder never dies while this process runs: that is an error at once. Needs the
/// thread pool (the notification arrives on a pool thread).
pub fn death(
    binder: &crate::binder_ipc::runtime::Binder,
) -> Result<impl Future<Output = ()> + Send + 'static, BinderError> {
    let proxy = binder
        .as_proxy()
        .ok_or_else(|| BinderError::BadValue("a local binder has no death notification".into()))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let recipient: std::sync::Arc<dyn crate::binder_ipc::runtime::DeathRecipient> =
        std::sync::Arc::new(move || {
            if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                // The future may be gone: nobody waits for this death any more.
                let _ = tx.send(());
            }
        });
    proxy.link_to_death(recipient)?;
    Ok(async move {
        // The sender lives in the recipient, which the proxy keeps: it fires or stays.
        let _ = rx.await;
    })
}

/// Waits (on tokio's blocking pool) for the service `name` to be registered, up to
/// `timeout`.
pub async fn wait_for_service(
    sm: &crate::binder_ipc::service_manager::ServiceManagerClient,
    name: &str,
    timeout: std::time::Duration,
) -> Result<crate::binder_ipc::runtime::Binder, BinderError> {
    let (sm, name) = (sm.clone(), name.to_owned());
    blocking(move || sm.wait_for_service(&name, timeout)).await
}
