//! The thread pool's bookkeeping: looper threads, threads serving calls, threads *parked*
//! on a call whose answer is computed elsewhere (an async method running on a tokio
//! runtime), and the loopers entered to replace parked ones.
//!
//! Why parked threads exist at all: on the kernel driver the reply to a two-way call must be
//! written by the thread that read the call (`BC_REPLY` pops that thread's transaction stack;
//! any other thread's reply is refused with `BR_FAILED_REPLY`), and a thread with a
//! transaction on its stack is given no process work. So a thread whose call waits on a
//! future is held for the whole wait. What the runtime can do is keep that from starving the
//! pool: a parked thread is not counted as available, and when no looper is left idle the
//! runtime enters a replacement looper (`BC_ENTER_LOOPER`, which the driver's `max_threads`
//! does not count), up to [`ProcessState::set_max_parked_replacements`]. A replacement leaves
//! the pool again once it is surplus (more replacements alive than threads parked).

use super::process::{Inner, ProcessState};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Default most replacement loopers alive at once (each is one OS thread).
pub const DEFAULT_MAX_PARKED_REPLACEMENTS: u32 = 64;

/// How a looper thread joined the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LooperKind {
    /// The pool's first thread, or a user thread in `join_thread_pool` (`BC_ENTER_LOOPER`).
    Main,
    /// Started on the driver's request (`BR_SPAWN_LOOPER` → `BC_REGISTER_LOOPER`); counted
    /// by the driver against `max_threads`, so it never leaves (the kernel does not count a
    /// registered thread out when it exits).
    Registered,
    /// Entered by the runtime for a parked thread (`BC_ENTER_LOOPER`); leaves when surplus.
    Replacement,
}

/// The pool's live counters (one set per [`ProcessState`]).
#[derive(Debug)]
pub(super) struct PoolCounters {
    loopers: AtomicU32,
    loopers_busy: AtomicU32,
    serving: AtomicU32,
    parked: AtomicU32,
    max_parked: AtomicU32,
    parked_calls: AtomicU64,
    replacements: AtomicU32,
    replacements_started: AtomicU64,
    replacements_refused: AtomicU64,
    pub(super) max_replacements: AtomicU32,
    oneway_errors: AtomicU64,
}

impl Default for PoolCounters {
    fn default() -> Self {
        PoolCounters {
            loopers: AtomicU32::new(0),
            loopers_busy: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            parked: AtomicU32::new(0),
            max_parked: AtomicU32::new(0),
            parked_calls: AtomicU64::new(0),
            replacements: AtomicU32::new(0),
            replacements_started: AtomicU64::new(0),
            replacements_refused: AtomicU64::new(0),
            max_replacements: AtomicU32::new(DEFAULT_MAX_PARKED_REPLACEMENTS),
            oneway_errors: AtomicU64::new(0),
        }
    }
}

/// What a process's binder threads are doing ([`ProcessState::pool_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Looper threads alive (the pool's, and user threads in `join_thread_pool`).
    pub loopers: u32,
    /// Loopers waiting for work now (not inside a call): what new calls can be served by.
    pub idle: u32,
    /// Threads inside a served call now (nested calls included), parked ones included.
    pub serving: u32,
    /// Threads parked now: serving a two-way call whose answer a future computes elsewhere.
    pub parked: u32,
    /// The most threads parked at once.
    pub max_parked: u32,
    /// Calls that parked a thread so far.
    pub parked_calls: u64,
    /// Replacement loopers alive now (entered because a parked thread left no idle looper).
    pub replacements: u32,
    /// Replacement loopers started so far.
    pub replacements_started: u64,
    /// Times a thread parked with no idle looper left and no replacement allowed (the limit
    /// was reached): the pool's capacity shrank by one parked thread.
    pub replacements_refused: u64,
    /// Oneway calls whose service returned an error (nobody to tell; logged).
    pub oneway_errors: u64,
    /// Panics caught in services ([`ProcessState::panic_count`]).
    pub panics: u64,
}

thread_local! {
    /// The binder processes whose calls this thread is serving, innermost last.
    static SERVING: RefCell<Vec<(u64, Weak<Inner>)>> = const { RefCell::new(Vec::new()) };
    /// The process this thread is a looper of, and how it joined.
    static LOOPER: Cell<Option<(u64, LooperKind)>> = const { Cell::new(None) };
}

/// Marks the calling thread as serving a call of `inner` while it lives.
pub(super) struct Serving {
    inner: Arc<Inner>,
    /// This serve is the looper's top-level one (the looper is busy).
    top: bool,
}

impl Serving {
    pub(super) fn enter(inner: Arc<Inner>) -> Serving {
        let id = inner.id;
        let nested = SERVING.with(|s| {
            let mut s = s.borrow_mut();
            let nested = s.iter().any(|(i, _)| *i == id);
            s.push((id, Arc::downgrade(&inner)));
            nested
        });
        let top = !nested && LOOPER.with(|l| l.get()).is_some_and(|(i, _)| i == id);
        inner.pool.serving.fetch_add(1, Ordering::AcqRel);
        if top {
            inner.pool.loopers_busy.fetch_add(1, Ordering::AcqRel);
        }
        Serving { inner, top }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|s| s.borrow_mut().pop());
        self.inner.pool.serving.fetch_sub(1, Ordering::AcqRel);
        if self.top {
            self.inner.pool.loopers_busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Counts a looper thread of `inner` from creation to its end.
pub(super) struct Looper {
    inner: Arc<Inner>,
    kind: LooperKind,
    /// A replacement that left as surplus (already counted out of `replacements`).
    retired: Cell<bool>,
}

impl Looper {
    /// Counted at once (also before the thread runs), so that a park meanwhile sees it.
    pub(super) fn count(inner: Arc<Inner>, kind: LooperKind) -> Looper {
        inner.pool.loopers.fetch_add(1, Ordering::AcqRel);
        Looper {
            inner,
            kind,
            retired: Cell::new(false),
        }
    }

    /// Called on the looper's own thread when it starts looping.
    pub(super) fn mark_thread(&self) {
        LOOPER.with(|l| l.set(Some((self.inner.id, self.kind))));
    }

    pub(super) fn kind(&self) -> LooperKind {
        self.kind
    }

    /// Between calls: a replacement looper that is surplus (more replacements alive than
    /// threads parked) is counted out and returns true: it leaves the pool.
    pub(super) fn retire_if_surplus(&self) -> bool {
        if self.kind != LooperKind::Replacement || self.retired.get() {
            return false;
        }
        let pool = &self.inner.pool;
        let parked = pool.parked.load(Ordering::Acquire);
        let surplus = pool
            .replacements
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r > parked).then(|| r - 1)
            })
            .is_ok();
        self.retired.set(surplus);
        surplus
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        LOOPER.with(|l| {
            if l.get().is_some_and(|(i, _)| i == self.inner.id) {
                l.set(None);
            }
        });
        self.inner.pool.loopers.fetch_sub(1, Ordering::AcqRel);
        if self.kind == LooperKind::Replacement && !self.retired.get() {
            // A replacement that ends without retiring (shutdown, device gone) is out too.
            let _ = self.inner.pool.replacements.fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |r| r.checked_sub(1),
            );
        }
    }
}

/// A thread parked on a call: while it lives the thread is counted as parked, not
/// available, and the pool has a replacement looper if none was idle (see the module docs).
///
/// Made by the async adapters (`aidl::run_on`) around the wait for an async method's
/// future; any service that blocks its binder thread on work done elsewhere can use it.
#[must_use = "the thread counts as parked only while the guard lives"]
pub struct ParkedThread {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for ParkedThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedThread")
            .field("counted", &self.inner.is_some())
            .finish()
    }
}

impl ParkedThread {
    /// Parks the calling thread for the call it is serving. On a thread that serves no
    /// binder call it counts nothing.
    pub fn enter() -> ParkedThread {
        let inner = SERVING.with(|s| s.borrow().last().and_then(|(_, w)| w.upgrade()));
        if let Some(inner) = &inner {
            let pool = &inner.pool;
            let now = pool.parked.fetch_add(1, Ordering::AcqRel) + 1;
            pool.max_parked.fetch_max(now, Ordering::AcqRel);
            pool.parked_calls.fetch_add(1, Ordering::AcqRel);
            inner.ensure_idle_looper();
        }
        ParkedThread { inner }
    }
}

impl Drop for ParkedThread {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.pool.parked.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Inner {
    /// A thread parked: when no looper is idle, enter a replacement (within the limit).
    fn ensure_idle_looper(&self) {
        let pool = &self.pool;
        if !self.pool_started.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let loopers = pool.loopers.load(Ordering::Acquire);
        if loopers > pool.loopers_busy.load(Ordering::Acquire) {
            return;
        }
        let max = pool.max_replacements.load(Ordering::Acquire);
        let reserved = pool
            .replacements
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < max).then_some(r + 1)
            });
        if reserved.is_err() {
            pool.replacements_refused.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                target: "bittube::binder",
                "binder thread parked with no idle looper and {max} replacements alive: calls wait for a thread"
            );
            return;
        }
        pool.replacements_started.fetch_add(1, Ordering::AcqRel);
        // A thread that cannot start counts itself out again (its `Looper` is dropped).
        let _ = self.spawn_pool_thread(LooperKind::Replacement);
    }

    /// A oneway call's service returned `error`: nobody waits for it, so it is counted and
    /// logged.
    pub(super) fn oneway_failed(&self, what: &str, error: &super::BinderError) {
        let n = self.pool.oneway_errors.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::warn!(
            target: "bittube::binder",
            "oneway call {what} failed: {error} (oneway error {n} of this process)"
        );
    }
}

impl ProcessState {
    /// What this process's binder threads are doing now (see [`PoolStats`]).
    pub fn pool_stats(&self) -> PoolStats {
        let p = &self.inner.pool;
        let loopers = p.loopers.load(Ordering::Acquire);
        PoolStats {
            loopers,
            idle: loopers.saturating_sub(p.loopers_busy.load(Ordering::Acquire)),
            serving: p.serving.load(Ordering::Acquire),
            parked: p.parked.load(Ordering::Acquire),
            max_parked: p.max_parked.load(Ordering::Acquire),
            parked_calls: p.parked_calls.load(Ordering::Acquire),
            replacements: p.replacements.load(Ordering::Acquire),
            replacements_started: p.replacements_started.load(Ordering::Acquire),
            replacements_refused: p.replacements_refused.load(Ordering::Acquire),
            oneway_errors: p.oneway_errors.load(Ordering::Acquire),
            panics: self.inner.panics.load(Ordering::Acquire),
        }
    }

    /// The most replacement loopers alive at once (default
    /// [`DEFAULT_MAX_PARKED_REPLACEMENTS`]); 0 turns replacements off, so that parked
    /// threads take the pool's capacity as in libbinder.
    pub fn set_max_parked_replacements(&self, max: u32) {
        self.inner
            .pool
            .max_replacements
            .store(max, Ordering::Release);
    }

    /// The process whose call the calling thread is serving, if any (libbinder's
    /// `IPCThreadState::self()` inside a transaction).
    pub fn serving() -> Option<ProcessState> {
        SERVING
            .with(|s| s.borrow().last().and_then(|(_, w)| w.upgrade()))
            .map(|inner| ProcessState { inner })
    }

    /// Counts and logs an error of a oneway call that was answered later than its binder
    /// thread returned (an async service's oneway method): it shows in
    /// [`PoolStats::oneway_errors`] like the errors the runtime sees itself.
    pub fn report_oneway_error(&self, what: &str, error: &super::BinderError) {
        self.inner.oneway_failed(what, error);
    }
}
