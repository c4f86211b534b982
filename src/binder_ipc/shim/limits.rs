//! Per-process caps on what a binder process can make the shim hold, with the counters the
//! state dump shows. The kernel has none of these (its memory is the limit); the shim is one
//! user-space process serving every client, so each client gets a bounded share and a refusal
//! that only it sees.
//!
//! | resource | default | counted against | refusal (what the client reads) |
//! |---|---|---|---|
//! | nodes | 16384 | the owner | BR_FAILED_REPLY, extended error -ENOMEM (BINDER object); ENOMEM from SET_CONTEXT_MGR |
//! | refs | 16384 | the holder | BR_FAILED_REPLY, -ENOMEM (transaction); user error for BC_INCREFS/ACQUIRE on handle 0 |
//! | pending transactions | 1024 | the sender | BR_FAILED_REPLY, -ENOSPC |
//! | death notifications | 16384 | the requester | BR_ERROR (-ENOMEM), as the kernel when it cannot allocate one |
//! | threads | 256 | the process | ENOMEM from the ioctl that would register the thread |
//!
//! A pending transaction is a transaction record the shim keeps for its sender: a sync call
//! until its reply (or failure) is read, a oneway call or reply until it is read. Death
//! notifications count from BC_REQUEST_DEATH_NOTIFICATION until the shim forgets them
//! (BR_CLEAR_DEATH_NOTIFICATION_DONE read, the ref gone, or the process gone).

/// The caps, one per resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nodes one process owns.
    pub nodes: usize,
    /// Refs one process holds.
    pub refs: usize,
    /// Transaction records kept for one sending process.
    pub txns: u32,
    /// Death notifications one process has the shim keep.
    pub deaths: u32,
    /// Binder threads of one process.
    pub threads: usize,
}

/// The defaults (see the module table).
pub const DEFAULT_LIMITS: Limits = Limits {
    nodes: 16384,
    refs: 16384,
    txns: 1024,
    deaths: 16384,
    threads: 256,
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// Which cap refused, the index into [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// [`Limits::nodes`].
    Nodes = 0,
    /// [`Limits::refs`].
    Refs = 1,
    /// [`Limits::txns`].
    Txns = 2,
    /// [`Limits::deaths`].
    Deaths = 3,
    /// [`Limits::threads`].
    Threads = 4,
}

/// Names of the caps, in [`Cap`] order (for the dump).
pub const CAP_NAMES: [&str; 5] = ["nodes", "refs", "transactions", "deaths", "threads"];

/// Refusals by cap, since the shim started.
pub type Refused = [u64; 5];
