//! Caps on what a binder process, and all the processes of one uid together, can make the
//! shim hold, with the counters the state dump shows. The kernel has none of these (its
//! memory is the limit); the shim is one user-space process serving every client, so each
//! client gets a bounded share and a refusal that only it sees.
//!
//! | resource | per process | per uid | counted against | refusal (what the client reads) |
//! |---|---|---|---|---|
//! | nodes | 16384 | 65536 | the owner | BR_FAILED_REPLY, extended error -ENOMEM (BINDER object); ENOMEM from SET_CONTEXT_MGR |
//! | refs | 16384 | 65536 | the holder | BR_FAILED_REPLY, -ENOMEM (transaction); user error for BC_INCREFS/ACQUIRE on handle 0 |
//! | pending transactions | 1024 | 4096 | the sender | BR_FAILED_REPLY, -ENOSPC |
//! | death notifications | 16384 | 65536 | the requester | BR_ERROR (-ENOMEM), as the kernel when it cannot allocate one |
//! | threads | 256 | 1024 | the process | ENOMEM from the ioctl that would register the thread |
//! | fds held for unread transactions | 1024 | 4096 | the sender | BR_FAILED_REPLY, -EMFILE |
//!
//! The per-uid cap is a sum over the uid's live processes (the euid the shim got from
//! SO_PEERCRED), so a uid that opens many processes cannot hold more than its share; its
//! refusal is the same BR code and errno as the per-process cap's, counted apart. Root and
//! the daemon's own uid are capped too: the service manager's refs (one per service) are
//! far below the defaults, and a runaway system client should not exhaust the shim either.
//!
//! A pending transaction is a transaction record the shim keeps for its sender: a sync call
//! until its reply (or failure) is read, a oneway call or reply until it is read. Death
//! notifications count from BC_REQUEST_DEATH_NOTIFICATION until the shim forgets them
//! (BR_CLEAR_DEATH_NOTIFICATION_DONE read, the ref gone, or the process gone).
//!
//! The fds a transaction carries (FD objects and FDA entries) sit in the shim's own fd table
//! from the moment the transaction is accepted until the receiving thread reads it (or the
//! transaction is dropped): a oneway flood to a process that never reads would otherwise fill
//! the shim's table and refuse every other client. They count against the sender, per
//! transaction, all or none; the shim's `RLIMIT_NOFILE` should stay well above the per-uid
//! cap times the number of uids expected to be busy at once.

use std::collections::HashMap;

/// The caps, one per resource, per process and per uid.
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
    /// fds the shim holds for one sender's transactions not yet read.
    pub fds: u32,
    /// The same resources summed over all the processes of one uid.
    pub per_uid: UidLimits,
}

/// Caps on the sums over all the live binder processes of one uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidLimits {
    /// Nodes the uid's processes own.
    pub nodes: u64,
    /// Refs the uid's processes hold.
    pub refs: u64,
    /// Transaction records kept for the uid's processes as senders.
    pub txns: u64,
    /// Death notifications the uid's processes have the shim keep.
    pub deaths: u64,
    /// Binder threads of the uid's processes.
    pub threads: u64,
    /// fds the shim holds for the uid's processes' transactions not yet read.
    pub fds: u64,
}

impl UidLimits {
    /// The cap on `cap`.
    pub fn get(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Nodes => self.nodes,
            Cap::Refs => self.refs,
            Cap::Txns => self.txns,
            Cap::Deaths => self.deaths,
            Cap::Threads => self.threads,
            Cap::Fds => self.fds,
        }
    }
}

impl Limits {
    /// Sets the per-process cap on `cap` to `n` (saturating at the field's range).
    pub fn set_per_proc(&mut self, cap: Cap, n: u64) {
        let as_usize = usize::try_from(n).unwrap_or(usize::MAX);
        let as_u32 = u32::try_from(n).unwrap_or(u32::MAX);
        match cap {
            Cap::Nodes => self.nodes = as_usize,
            Cap::Refs => self.refs = as_usize,
            Cap::Txns => self.txns = as_u32,
            Cap::Deaths => self.deaths = as_u32,
            Cap::Threads => self.threads = as_usize,
            Cap::Fds => self.fds = as_u32,
        }
    }

    /// Sets the per-uid cap on `cap` to `n`.
    pub fn set_per_uid(&mut self, cap: Cap, n: u64) {
        let u = &mut self.per_uid;
        match cap {
            Cap::Nodes => u.nodes = n,
            Cap::Refs => u.refs = n,
            Cap::Txns => u.txns = n,
            Cap::Deaths => u.deaths = n,
            Cap::Threads => u.threads = n,
            Cap::Fds => u.fds = n,
        }
    }

    /// The per-process cap on `cap`.
    pub fn per_proc(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Nodes => self.nodes as u64,
            Cap::Refs => self.refs as u64,
            Cap::Txns => self.txns as u64,
            Cap::Deaths => self.deaths as u64,
            Cap::Threads => self.threads as u64,
            Cap::Fds => self.fds as u64,
        }
    }
}

/// The defaults (see the module table).
pub const DEFAULT_LIMITS: Limits = Limits {
    nodes: 16384,
    refs: 16384,
    txns: 1024,
    deaths: 16384,
    threads: 256,
    fds: 1024,
    per_uid: UidLimits {
        nodes: 65536,
        refs: 65536,
        txns: 4096,
        deaths: 65536,
        threads: 1024,
        fds: 4096,
    },
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

impl Default for UidLimits {
    fn default() -> Self {
        DEFAULT_LIMITS.per_uid
    }
}

/// Which cap refused: its index in the refusal counters `bittube state` prints.
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
    /// [`Limits::fds`].
    Fds = 5,
}

/// Number of caps.
pub const NCAPS: usize = 6;

/// All the caps, in index order.
pub const CAPS: [Cap; NCAPS] = [
    Cap::Nodes,
    Cap::Refs,
    Cap::Txns,
    Cap::Deaths,
    Cap::Threads,
    Cap::Fds,
];

/// Names of the caps, in [`Cap`] order (for the dump).
pub const CAP_NAMES: [&str; NCAPS] = ["nodes", "refs", "transactions", "deaths", "threads", "fds"];

impl Cap {
    /// The cap named `name` (one of [`CAP_NAMES`]).
    pub fn from_name(name: &str) -> Option<Cap> {
        CAP_NAMES.iter().position(|n| *n == name).map(|i| CAPS[i])
    }
}

/// Refusals by cap, since the shim started.
pub type Refused = [u64; NCAPS];

/// What each uid's live processes hold, by cap: kept equal to the sum of the per-process
/// counts (`Proc::held`) by charging and uncharging where those change.
#[derive(Debug, Default, Clone)]
pub struct UidUsage(HashMap<u32, [u64; NCAPS]>);

impl UidUsage {
    /// What `uid` holds of `cap`.
    pub fn get(&self, uid: u32, cap: Cap) -> u64 {
        self.0.get(&uid).map(|u| u[cap as usize]).unwrap_or(0)
    }

    /// `uid` holds one more `cap`.
    pub fn charge(&mut self, uid: u32, cap: Cap) {
        self.charge_n(uid, cap, 1);
    }

    /// `uid` holds `n` more `cap`.
    pub fn charge_n(&mut self, uid: u32, cap: Cap, n: u64) {
        let u = self.0.entry(uid).or_default();
        u[cap as usize] = u[cap as usize].saturating_add(n);
    }

    /// `uid` holds one `cap` less.
    pub fn uncharge(&mut self, uid: u32, cap: Cap) {
        self.uncharge_n(uid, cap, 1);
    }

    /// `uid` holds `n` `cap` less; the uid is forgotten once it holds nothing.
    pub fn uncharge_n(&mut self, uid: u32, cap: Cap, n: u64) {
        if n == 0 {
            return;
        }
        let Some(u) = self.0.get_mut(&uid) else {
            debug_assert!(false, "uncharge of uid {uid} that holds nothing");
            return;
        };
        debug_assert!(u[cap as usize] >= n, "uid {uid} uncharged below 0");
        u[cap as usize] = u[cap as usize].saturating_sub(n);
        if u.iter().all(|&x| x == 0) {
            self.0.remove(&uid);
        }
    }

    /// Every uid that holds something, with its counts by cap, in uid order.
    pub fn sorted(&self) -> Vec<(u32, [u64; NCAPS])> {
        let mut v: Vec<_> = self.0.iter().map(|(&k, &u)| (k, u)).collect();
        v.sort_unstable_by_key(|&(k, _)| k);
        v
    }
}
