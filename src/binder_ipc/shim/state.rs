//! The driver's state, owned by its event loop: processes, threads, nodes, refs, death
//! notifications, transactions and buffers, with the kernel's rules
//! (`drivers/android/binder.c`). This file holds the types, the BC_ command loop
//! (`binder_thread_write`) and process/thread release; `transaction.rs`, `read.rs` and
//! `node.rs` hold the rest.
//!
//! Errors follow the kernel's two levels: an errno for the call (`EINVAL` for an unknown
//! command, `EFAULT` for bytes that are not there) and a BR_ code for the protocol
//! (`BR_FAILED_REPLY`, `BR_DEAD_REPLY`) queued to the thread. Misuse the kernel only logs
//! (`binder_user_error`) is counted in [`Stats::user_errors`] and otherwise ignored.

use super::alloc::Area;
use super::error::{Check, ExtendedError, EE_CLEAR};
pub use super::ids::{BufferId, DeathId, Handle, NodeId, ProcId, ThreadId, TxnId};
use super::limits::{Cap, Limits, Refused, UidUsage, CAPS};
use super::transaction::TxnRequest;
use crate::binder_ipc::protocol::wire::{Gathered, WriteReadReq};
use crate::binder_ipc::uapi::*;
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::os::fd::OwnedFd;

/// A connection's id in the event loop: a thread's identity ([`ThreadId`]).
pub type ConnId = ThreadId;

/// A hash map keyed by the driver's own ids (sequential numbers the driver hands out, or
/// random tokens), hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A cheap hasher for integer ids: one multiply by an odd constant, which spreads sequential
/// ids over the high bits the table's control bytes use. Keys are never chosen by clients
/// (SipHash's flooding resistance buys nothing here) and SipHash cost a measurable share of
/// each round trip's lookups.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Looper state bits (`BINDER_LOOPER_STATE_*`).
pub const LOOPER_REGISTERED: u32 = 0x01;
/// The thread called BC_ENTER_LOOPER.
pub const LOOPER_ENTERED: u32 = 0x02;
/// The thread called BC_EXIT_LOOPER.
pub const LOOPER_EXITED: u32 = 0x04;
/// The thread misused the looper commands.
pub const LOOPER_INVALID: u32 = 0x08;

/// One item of a todo list (`struct binder_work`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// An incoming transaction or reply.
    Txn(TxnId),
    /// BR_TRANSACTION_COMPLETE.
    Complete,
    /// BR_ONEWAY_SPAM_SUSPECT (in place of BR_TRANSACTION_COMPLETE).
    SpamSuspect,
    /// The thread's `return_error`.
    ReturnError,
    /// The thread's `reply_error`.
    ReplyError,
    /// Refcount changes of a node, for its owner.
    Node(NodeId),
    /// A death notification (dead binder, clear done, or both).
    Death(DeathId),
}

/// Where a work item is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// A thread's todo list.
    Thread(ConnId),
    /// A process's todo list.
    Proc(ProcId),
}

/// A blocked read, parked until work arrives.
#[derive(Debug, Clone, Copy)]
pub struct PendingRead {
    /// `write_consumed` to report.
    pub write_consumed: u64,
    /// `read_consumed` on entry.
    pub read_consumed: u64,
    /// `read_size`.
    pub read_size: u64,
}

/// A binder thread (`struct binder_thread`).
#[derive(Debug)]
pub struct Thread {
    /// Owning process.
    pub proc: ProcId,
    /// `LOOPER_*` bits.
    pub looper: u32,
    /// `looper_need_return`: set at creation, cleared at the end of each call.
    pub need_return: bool,
    /// Non-deferred work is queued.
    pub process_todo: bool,
    /// Thread-specific work.
    pub todo: VecDeque<Work>,
    /// Top of the transaction stack.
    pub stack: Option<TxnId>,
    /// BR_ error for this thread's last command (`return_error`).
    pub return_error: Option<u32>,
    /// The i32 that follows a BR_ERROR `return_error`.
    pub return_error_param: i32,
    /// BR_ error for a call this thread made (`reply_error`).
    pub reply_error: Option<u32>,
    /// A parked blocking read.
    pub pending: Option<PendingRead>,
    /// fd numbers the process must close after this call (FDA fds of freed buffers).
    pub close_fds: Vec<i32>,
    /// `BINDER_GET_EXTENDED_ERROR`'s record.
    pub ee: ExtendedError,
}

/// A reference from a process to a node (`struct binder_ref`).
#[derive(Debug, Clone, Copy)]
pub struct Ref {
    /// The node.
    pub node: NodeId,
    /// Strong count.
    pub strong: u32,
    /// Weak count.
    pub weak: u32,
    /// The registered death notification.
    pub death: Option<DeathId>,
}

/// What a death notification will say next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathKind {
    /// Registered, the node alive.
    Armed,
    /// BR_DEAD_BINDER is due (or was delivered and awaits BC_DEAD_BINDER_DONE).
    DeadBinder,
    /// BR_DEAD_BINDER, then the clear is answered after BC_DEAD_BINDER_DONE.
    DeadBinderAndClear,
    /// BR_CLEAR_DEATH_NOTIFICATION_DONE is due.
    Clear,
}

/// A death notification (`struct binder_ref_death`).
#[derive(Debug, Clone, Copy)]
pub struct Death {
    /// The process that requested it (counted against its cap).
    pub owner: ProcId,
    /// Its cookie.
    pub cookie: u64,
    /// What is due.
    pub kind: DeathKind,
    /// Where its work is queued, if it is.
    pub queued: Option<Loc>,
}

/// A binder object (`struct binder_node`).
#[derive(Debug)]
pub struct Node {
    /// The owner; `None` once it died.
    pub owner: Option<ProcId>,
    /// The owner's pointer.
    pub ptr: u64,
    /// The owner's cookie.
    pub cookie: u64,
    /// FLAT_BINDER_FLAG_ACCEPTS_FDS.
    pub accept_fds: bool,
    /// Minimum priority (flags & 0xff).
    pub min_priority: u32,
    /// Strong refs held by other processes' refs.
    pub internal_strong_refs: u32,
    /// Strong refs held by the driver (transactions, the handshake).
    pub local_strong_refs: u32,
    /// Weak refs held by the driver.
    pub local_weak_refs: u32,
    /// Temporary refs held while a transaction is built.
    pub tmp_refs: u32,
    /// The owner was told to hold a strong ref (BR_ACQUIRE sent).
    pub has_strong_ref: bool,
    /// BC_ACQUIRE_DONE awaited.
    pub pending_strong_ref: bool,
    /// The owner was told to hold a weak ref (BR_INCREFS sent).
    pub has_weak_ref: bool,
    /// BC_INCREFS_DONE awaited.
    pub pending_weak_ref: bool,
    /// Processes holding a ref to this node.
    pub refs: BTreeSet<ProcId>,
    /// A oneway transaction is being handled.
    pub has_async: bool,
    /// Oneway transactions waiting for it.
    pub async_todo: VecDeque<TxnId>,
    /// Where the node's work item is queued.
    pub work: Option<Loc>,
}

/// An object reference a buffer holds, released when the buffer is freed.
#[derive(Debug, Clone, Copy)]
pub enum Release {
    /// The receiver owns the node: a local ref.
    Node {
        /// The node.
        node: NodeId,
        /// Strong or weak.
        strong: bool,
    },
    /// The receiver holds a ref to the node, released by the handle number written into
    /// the buffer, as binder_transaction_buffer_release does (binder_dec_ref_for_handle with
    /// the object's handle): when the receiver dropped that ref itself (BC_RELEASE) and the
    /// number went to a newer ref, freeing the buffer drops the newer ref (differential
    /// seed 4117).
    Ref {
        /// The handle written into the buffer.
        desc: Handle,
        /// Strong or weak.
        strong: bool,
    },
}

/// An allocated buffer in a process's area (`struct binder_buffer`).
#[derive(Debug)]
pub struct Buffer {
    /// Bytes of data.
    pub data_size: u64,
    /// Bytes of offsets.
    pub offsets_size: u64,
    /// A oneway buffer (counts against the async half).
    pub is_async: bool,
    /// The node the transaction targeted.
    pub target_node: Option<NodeId>,
    /// The transaction still pointing at it.
    pub txn: Option<TxnId>,
    /// Delivered: the process may free it.
    pub allow_user_free: bool,
    /// References its objects hold.
    pub releases: Vec<Release>,
    /// Area offsets of FDA fd numbers (closed with the buffer).
    pub fda_fds: Vec<u64>,
    /// The sender's pid (oneway spam accounting).
    pub sender_pid: i32,
}

/// A transaction or reply (`struct binder_transaction`).
#[derive(Debug)]
pub struct Txn {
    /// The calling thread, for sync calls while it waits.
    pub from: Option<ConnId>,
    /// The sending process (the record counts against its cap).
    pub sender_proc: ProcId,
    /// The thread handling it (sync calls, once read).
    pub to_thread: Option<ConnId>,
    /// The target process.
    pub to_proc: Option<ProcId>,
    /// The code.
    pub code: u32,
    /// TF_ flags.
    pub flags: u32,
    /// Sender's pid.
    pub sender_pid: i32,
    /// Sender's euid.
    pub sender_euid: u32,
    /// A reply.
    pub is_reply: bool,
    /// The target node (calls).
    pub node: Option<NodeId>,
    /// The buffer's offset in the target's area.
    pub buffer: Option<BufferId>,
    /// The caller's previous transaction.
    pub from_parent: Option<TxnId>,
    /// The handler's previous transaction.
    pub to_parent: Option<TxnId>,
    /// fds to install at read: (area offset for the number, the file).
    pub fds: Vec<(u64, OwnedFd)>,
}

/// A binder process (`struct binder_proc`).
#[derive(Debug)]
pub struct Proc {
    /// The OS process id (from SO_PEERCRED).
    pub pid: i32,
    /// Its effective uid.
    pub euid: u32,
    /// The secret thread connections present.
    pub token: u64,
    /// The buffer area.
    pub area: Area,
    /// The process mapped its area and may receive.
    pub mapped: bool,
    /// Its threads.
    pub threads: BTreeSet<ConnId>,
    /// Its nodes by pointer.
    pub nodes: BTreeMap<u64, NodeId>,
    /// Its refs by handle.
    pub refs: BTreeMap<Handle, Ref>,
    /// Handle by node.
    pub refs_by_node: IdMap<NodeId, Handle>,
    /// Process-wide work.
    pub todo: VecDeque<Work>,
    /// Death notifications delivered, awaiting BC_DEAD_BINDER_DONE.
    pub delivered_death: Vec<DeathId>,
    /// BINDER_SET_MAX_THREADS.
    pub max_threads: u32,
    /// BR_SPAWN_LOOPER sent, BC_REGISTER_LOOPER not yet seen.
    pub requested_threads: u32,
    /// Threads started on request.
    pub requested_threads_started: u32,
    /// Buffers by area offset.
    pub buffers: BTreeMap<BufferId, Buffer>,
    /// BINDER_ENABLE_ONEWAY_SPAM_DETECTION.
    pub spam_detection: bool,
    /// Transaction records kept for this sender ([`Limits::txns`]).
    pub txns_out: u32,
    /// Death notifications kept for this process ([`Limits::deaths`]).
    pub deaths: u32,
    /// fds the shim holds for this sender's transactions not yet read ([`Limits::fds`]).
    pub fds_out: u32,
}

impl Proc {
    /// How many of `cap` this process holds.
    pub fn held(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Nodes => self.nodes.len() as u64,
            Cap::Refs => self.refs.len() as u64,
            Cap::Txns => self.txns_out as u64,
            Cap::Deaths => self.deaths as u64,
            Cap::Threads => self.threads.len() as u64,
            Cap::Fds => self.fds_out as u64,
        }
    }
}

/// Counters, like the kernel's binder `stats`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// BC_ commands by number.
    pub bc: [u64; 32],
    /// BR_ commands by number.
    pub br: [u64; 32],
    /// Misuse the kernel logs and ignores.
    pub user_errors: u64,
    /// Transactions that failed (BR_FAILED_REPLY / BR_DEAD_REPLY).
    pub failed_transactions: u64,
    /// Objects created: procs, threads, nodes, refs, deaths, transactions.
    pub created: [u64; 6],
    /// Objects deleted, same order.
    pub deleted: [u64; 6],
    /// Refusals by the per-process cap ([`Cap`] order).
    pub refused: Refused,
    /// Refusals by the per-uid cap ([`Cap`] order).
    pub refused_uid: Refused,
    /// Refused transactions by the check that refused them.
    pub refusals: BTreeMap<Check, u64>,
}

/// Indexes of [`Stats::created`] / [`Stats::deleted`].
pub const OBJ_PROC: usize = 0;
/// Threads.
pub const OBJ_THREAD: usize = 1;
/// Nodes.
pub const OBJ_NODE: usize = 2;
/// Refs.
pub const OBJ_REF: usize = 3;
/// Death notifications.
pub const OBJ_DEATH: usize = 4;
/// Transactions.
pub const OBJ_TXN: usize = 5;

/// The whole driver state.
#[derive(Debug, Default)]
pub struct State {
    /// Processes by id.
    pub procs: IdMap<ProcId, Proc>,
    /// Threads by connection.
    pub threads: IdMap<ConnId, Thread>,
    /// Nodes by id.
    pub nodes: IdMap<NodeId, Node>,
    /// Transactions by id.
    pub txns: IdMap<TxnId, Txn>,
    /// Death notifications by id.
    pub deaths: IdMap<DeathId, Death>,
    /// The context manager's node.
    pub ctx_mgr: Option<NodeId>,
    /// The uid that set the context manager first (the kernel's `binder_context_mgr_uid`).
    pub ctx_mgr_uid: Option<u32>,
    next_id: u64,
    /// Threads whose parked read may now complete.
    pub wake: Vec<ConnId>,
    /// Counters.
    pub stats: Stats,
    /// Per-process and per-uid caps.
    pub limits: Limits,
    /// What each uid's processes hold, against [`Limits::per_uid`].
    pub uid_usage: UidUsage,
}

/// The result of a `BINDER_WRITE_READ` that did not park.
#[derive(Debug, Default)]
pub struct WriteReadDone {
    /// errno, 0 for success.
    pub errno: i32,
    /// `write_consumed` after.
    pub write_consumed: u64,
    /// `read_consumed` after.
    pub read_consumed: u64,
    /// The BR_ bytes produced.
    pub read: Vec<u8>,
    /// fds to install: (area offset for the number, the file).
    pub fixups: Vec<(u64, OwnedFd)>,
    /// fd numbers the process must close.
    pub close: Vec<i32>,
}

impl State {
    /// A fresh id for any object.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers a process (`binder_open`).
    pub fn open_proc(&mut self, pid: i32, euid: u32, area: Area, token: u64) -> ProcId {
        let id = ProcId(self.new_id());
        self.stats.created[OBJ_PROC] += 1;
        self.procs.insert(
            id,
            Proc {
                pid,
                euid,
                token,
                area,
                mapped: false,
                threads: BTreeSet::new(),
                nodes: BTreeMap::new(),
                refs: BTreeMap::new(),
                refs_by_node: IdMap::default(),
                todo: VecDeque::new(),
                delivered_death: Vec::new(),
                max_threads: 0,
                requested_threads: 0,
                requested_threads_started: 0,
                buffers: BTreeMap::new(),
                spam_detection: false,
                txns_out: 0,
                fds_out: 0,
                deaths: 0,
            },
        );
        id
    }

    /// Registers a thread connection of process `proc` (`binder_get_thread`).
    pub fn open_thread(&mut self, conn: ConnId, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(&proc) {
            if p.threads.insert(conn) {
                self.uid_usage.charge(p.euid, Cap::Threads);
            }
        }
        self.stats.created[OBJ_THREAD] += 1;
        self.threads.insert(
            conn,
            Thread {
                proc,
                looper: 0,
                need_return: true,
                process_todo: false,
                todo: VecDeque::new(),
                stack: None,
                return_error: None,
                return_error_param: 0,
                reply_error: None,
                pending: None,
                close_fds: Vec::new(),
                ee: EE_CLEAR,
            },
        );
    }

    /// The thread cap: `ENOMEM` (the kernel's answer when it cannot make a thread) once
    /// process `proc` has [`Limits::threads`] threads, counted. Call before
    /// [`State::open_thread`].
    pub fn check_thread_cap(&mut self, proc: ProcId) -> Result<(), Errno> {
        if self.has_room(proc, Cap::Threads) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Whether process `proc` may hold one more `cap`: under its own cap and its uid's
    /// ([`Limits::per_uid`]). A refusal is counted (per process or per uid); the caller
    /// answers it. A missing process has no room.
    pub(super) fn has_room(&mut self, proc: ProcId, cap: Cap) -> bool {
        self.has_room_for(proc, cap, 1)
    }

    /// Whether process `proc` may hold `n` more `cap` (see [`State::has_room`]).
    pub(super) fn has_room_for(&mut self, proc: ProcId, cap: Cap, n: u64) -> bool {
        let Some(p) = self.procs.get(&proc) else {
            debug_assert!(false, "cap check for missing proc {proc}");
            return false;
        };
        let fits = |held: u64, cap: u64| held.checked_add(n).is_some_and(|t| t <= cap);
        if !fits(p.held(cap), self.limits.per_proc(cap)) {
            self.stats.refused[cap as usize] += 1;
            return false;
        }
        if !fits(
            self.uid_usage.get(p.euid, cap),
            self.limits.per_uid.get(cap),
        ) {
            self.stats.refused_uid[cap as usize] += 1;
            return false;
        }
        true
    }

    /// Whether [`State::uid_usage`] is the sum of every live process's counts (a test and
    /// fuzzing check of the charging).
    pub fn uid_usage_consistent(&self) -> bool {
        let mut sums = UidUsage::default();
        for p in self.procs.values() {
            for cap in CAPS {
                sums.charge_n(p.euid, cap, p.held(cap));
            }
        }
        let mut want = sums.sorted();
        want.retain(|(_, u)| u.iter().any(|&x| x > 0));
        want == self.uid_usage.sorted()
    }

    /// Forgets death notification `d`, uncounting it from its process.
    pub(super) fn forget_death(&mut self, d: DeathId) {
        let Some(death) = self.deaths.remove(&d) else {
            debug_assert!(false, "forget of missing death {d}");
            return;
        };
        self.stats.deleted[OBJ_DEATH] += 1;
        if let Some(p) = self.procs.get_mut(&death.owner) {
            p.deaths = p.deaths.saturating_sub(1);
            self.uid_usage.uncharge(p.euid, Cap::Deaths);
        }
    }

    pub(super) fn user_error(&mut self) {
        self.stats.user_errors += 1;
    }

    // -----------------------------------------------------------------------------------------
    // Work queues

    /// Queues `w` on a thread; `wake` = non-deferred (`binder_enqueue_thread_work`).
    pub fn enqueue_thread(&mut self, conn: ConnId, w: Work, wake: bool) {
        if let Some(t) = self.threads.get_mut(&conn) {
            t.todo.push_back(w);
            if wake {
                t.process_todo = true;
                self.wake.push(conn);
            }
        }
    }

    /// Queues `w` on a process and wakes one waiting thread (`binder_wakeup_proc_ilocked`).
    pub fn enqueue_proc(&mut self, proc: ProcId, w: Work) {
        if let Some(p) = self.procs.get_mut(&proc) {
            p.todo.push_back(w);
            self.wake_proc(proc);
        }
    }

    /// Queues `w` at `loc`, waking as the kernel would.
    pub fn enqueue_at(&mut self, loc: Loc, w: Work) {
        match loc {
            Loc::Thread(c) => self.enqueue_thread(c, w, true),
            Loc::Proc(p) => self.enqueue_proc(p, w),
        }
    }

    /// Removes `w` from the list at `loc`.
    pub fn dequeue_at(&mut self, loc: Loc, w: Work) {
        let list = match loc {
            Loc::Thread(c) => self.threads.get_mut(&c).map(|t| &mut t.todo),
            Loc::Proc(p) => self.procs.get_mut(&p).map(|p| &mut p.todo),
        };
        if let Some(list) = list {
            list.retain(|x| *x != w);
        }
        if let Loc::Thread(c) = loc {
            if let Some(t) = self.threads.get_mut(&c) {
                if t.todo.is_empty() {
                    t.process_todo = false;
                }
            }
        }
    }

    /// A thread takes process work when it is idle: no transaction on its stack, nothing
    /// of its own queued. Since Linux 31643d84b8c3 ("binder: fix hang of unregistered
    /// readers", 6.1.103 and the Debian kernel of the qemu run) the looper state no longer
    /// matters here; a thread that waits for process work without BC_ENTER_LOOPER /
    /// BC_REGISTER_LOOPER is a user error the kernel logs (counted in `thread_read`).
    pub fn available_for_proc_work(t: &Thread) -> bool {
        t.stack.is_none() && t.todo.is_empty()
    }

    /// A thread parked waiting for process work (the kernel's `waiting_threads`).
    pub fn waiting_thread(&self, proc: ProcId) -> Option<ConnId> {
        let p = self.procs.get(&proc)?;
        p.threads.iter().copied().find(|c| {
            self.threads
                .get(c)
                .is_some_and(|t| t.pending.is_some() && Self::available_for_proc_work(t))
        })
    }

    /// Wakes one thread waiting for process work.
    pub fn wake_proc(&mut self, proc: ProcId) {
        if let Some(c) = self.waiting_thread(proc) {
            self.wake.push(c);
        }
    }

    /// Queues a non-transaction `return_error` (BR_ERROR with its `param`).
    pub fn return_error_code(&mut self, conn: ConnId, cmd: u32, param: i32) {
        if let Some(t) = self.threads.get_mut(&conn) {
            t.return_error = Some(cmd);
            t.return_error_param = param;
        }
        self.enqueue_thread(conn, Work::ReturnError, true);
    }

    /// Sets the thread's return error and queues it (`binder_transaction`'s error path).
    pub fn return_error(&mut self, conn: ConnId, cmd: u32) {
        self.stats.failed_transactions += 1;
        if let Some(t) = self.threads.get_mut(&conn) {
            t.return_error = Some(cmd);
        }
        self.enqueue_thread(conn, Work::ReturnError, true);
    }

    // -----------------------------------------------------------------------------------------
    // BINDER_WRITE_READ

    /// Runs the write half of a `BINDER_WRITE_READ` (`binder_thread_write`): the caller's
    /// `stream` (with [`Gathered`] records after transactions) from `consumed` on. Returns the
    /// new `write_consumed`, and an errno when the call fails.
    pub fn thread_write(
        &mut self,
        conn: ConnId,
        stream: &[u8],
        mut consumed: u64,
        fds: Vec<OwnedFd>,
    ) -> (u64, Option<Errno>) {
        let mut fds: VecDeque<OwnedFd> = fds.into();
        let mut pos = 0usize;
        while pos < stream.len() {
            if self
                .threads
                .get(&conn)
                .is_none_or(|t| t.return_error.is_some())
            {
                break;
            }
            let Some(cmd) = read_at::<u32>(stream, pos) else {
                return (consumed, Some(Errno::EFAULT));
            };
            if !command_name(cmd).starts_with("BC_") {
                // `binder_thread_write`'s default case: the call fails, consumed stays at the
                // unknown command.
                return (consumed, Some(Errno::EINVAL));
            }
            let size = ioc_size(cmd);
            let next = pos + 4 + size;
            let Some(payload) = stream.get(pos + 4..next) else {
                // The command's payload lies past the end of the caller's buffer.
                return (consumed, Some(Errno::EFAULT));
            };
            if let Some(i) = bc_index(cmd) {
                self.stats.bc[i] += 1;
            }
            let next = match self.bc_command(conn, cmd, payload, stream, next, &mut fds) {
                Ok(next) => next,
                Err(e) => return (consumed, Some(e)),
            };
            // `write_consumed` came from the client: it may be anything.
            let Some(c) = consumed.checked_add(4 + size as u64) else {
                return (consumed, Some(Errno::EFAULT));
            };
            consumed = c;
            pos = next;
        }
        (consumed, None)
    }

    /// One BC_ command with its `payload`; `next` is where the stream goes on, which a
    /// transaction moves past its [`Gathered`] record. Returns the new position.
    fn bc_command(
        &mut self,
        conn: ConnId,
        cmd: u32,
        payload: &[u8],
        stream: &[u8],
        next: usize,
        fds: &mut VecDeque<OwnedFd>,
    ) -> Result<usize, Errno> {
        match cmd {
            BC_TRANSACTION | BC_REPLY | BC_TRANSACTION_SG | BC_REPLY_SG => {
                let tr: BinderTransactionData = read_at(payload, 0).ok_or(Errno::EFAULT)?;
                let sg = matches!(cmd, BC_TRANSACTION_SG | BC_REPLY_SG);
                let buffers_size = if sg {
                    read_at::<u64>(payload, 64)
                } else {
                    None
                };
                let (gathered, body, taken, end) =
                    parse_gathered(stream, next, fds).ok_or(Errno::EFAULT)?;
                let req = TxnRequest {
                    tr,
                    reply: matches!(cmd, BC_REPLY | BC_REPLY_SG),
                    buffers_size: buffers_size.unwrap_or(0),
                    gathered,
                    body,
                    fds: taken,
                };
                self.transaction(conn, req);
                return Ok(end);
            }
            BC_INCREFS | BC_ACQUIRE | BC_RELEASE | BC_DECREFS => {
                let handle = Handle(read_at::<u32>(payload, 0).ok_or(Errno::EFAULT)?);
                self.bc_refcount(conn, cmd, handle)?;
            }
            BC_INCREFS_DONE | BC_ACQUIRE_DONE => {
                let pc: BinderPtrCookie = read_at(payload, 0).ok_or(Errno::EFAULT)?;
                self.bc_refcount_done(conn, cmd == BC_ACQUIRE_DONE, pc);
            }
            BC_FREE_BUFFER => {
                let addr: u64 = read_at(payload, 0).ok_or(Errno::EFAULT)?;
                self.bc_free_buffer(conn, addr);
            }
            BC_REGISTER_LOOPER | BC_ENTER_LOOPER | BC_EXIT_LOOPER => self.bc_looper(conn, cmd),
            BC_REQUEST_DEATH_NOTIFICATION | BC_CLEAR_DEATH_NOTIFICATION => {
                let hc: BinderHandleCookie = read_at(payload, 0).ok_or(Errno::EFAULT)?;
                let (handle, cookie) = (Handle(hc.handle), hc.cookie);
                if cmd == BC_REQUEST_DEATH_NOTIFICATION {
                    self.bc_request_death(conn, handle, cookie);
                } else {
                    self.bc_clear_death(conn, handle, cookie);
                }
            }
            BC_DEAD_BINDER_DONE => {
                let cookie: u64 = read_at(payload, 0).ok_or(Errno::EFAULT)?;
                self.bc_dead_binder_done(conn, cookie);
            }
            // BC_ACQUIRE_RESULT and BC_ATTEMPT_ACQUIRE are not supported by the kernel
            // either; freeze notifications are outside this shim (see ARCHITECTURE.md).
            _ => return Err(Errno::EINVAL),
        }
        Ok(next)
    }

    fn bc_looper(&mut self, conn: ConnId, cmd: u32) {
        let Some(t) = self.threads.get(&conn) else {
            debug_assert!(false, "missing t in state.rs");
            return;
        };
        let proc = t.proc;
        let looper = t.looper;
        let mut bad = false;
        let mut add = match cmd {
            BC_REGISTER_LOOPER => {
                if looper & LOOPER_ENTERED != 0 {
                    bad = true;
                } else if let Some(p) = self.procs.get_mut(&proc) {
                    if p.requested_threads == 0 {
                        bad = true;
                    } else {
                        p.requested_threads -= 1;
                        p.requested_threads_started += 1;
                    }
                }
                LOOPER_REGISTERED
            }
            BC_ENTER_LOOPER => {
                bad = looper & LOOPER_REGISTERED != 0;
                LOOPER_ENTERED
            }
            _ => LOOPER_EXITED,
        };
        if bad {
            self.user_error();
            add |= LOOPER_INVALID;
        }
        if let Some(t) = self.threads.get_mut(&conn) {
            t.looper |= add;
        }
    }

    /// Runs a whole `BINDER_WRITE_READ` as `req` asks (its `write_consumed`, `read_consumed`,
    /// `read_size`, `nonblock`; `stream` is the caller's write stream from `write_consumed`
    /// on); `None` when the read parks (the thread blocks).
    pub fn write_read(
        &mut self,
        conn: ConnId,
        stream: &[u8],
        req: &WriteReadReq,
        fds: Vec<OwnedFd>,
    ) -> Option<WriteReadDone> {
        let (write_consumed, read_consumed) = (req.write_consumed, req.read_consumed);
        let (read_size, nonblock) = (req.read_size, req.nonblock != 0);
        let proc = self.threads.get(&conn)?.proc;
        let (wc, err) = self.thread_write(conn, stream, write_consumed, fds);
        if let Some(e) = err {
            self.after_call(conn, proc);
            // The kernel reports read_consumed 0 when the write half failed.
            return Some(WriteReadDone {
                errno: e as i32,
                write_consumed: wc,
                ..Default::default()
            });
        }
        if read_size == 0 {
            self.after_call(conn, proc);
            return Some(WriteReadDone {
                write_consumed: wc,
                read_consumed,
                ..Default::default()
            });
        }
        let pending = PendingRead {
            write_consumed: wc,
            read_consumed,
            read_size,
        };
        match self.thread_read(conn, pending, nonblock) {
            Some(done) => {
                self.after_call(conn, proc);
                Some(done)
            }
            None => {
                if let Some(t) = self.threads.get_mut(&conn) {
                    t.pending = Some(pending);
                }
                if self.procs.get(&proc).is_some_and(|p| !p.todo.is_empty()) {
                    self.wake_proc(proc);
                }
                None
            }
        }
    }

    /// Tries to finish the parked read of `conn`.
    pub fn retry_read(&mut self, conn: ConnId) -> Option<WriteReadDone> {
        let t = self.threads.get(&conn)?;
        let pending = t.pending?;
        let proc = t.proc;
        let done = self.thread_read(conn, pending, false)?;
        if let Some(t) = self.threads.get_mut(&conn) {
            t.pending = None;
        }
        self.after_call(conn, proc);
        Some(done)
    }

    /// The end of every ioctl: `looper_need_return` clears, and leftover process work wakes
    /// a waiting thread.
    fn after_call(&mut self, conn: ConnId, proc: ProcId) {
        if let Some(t) = self.threads.get_mut(&conn) {
            t.need_return = false;
        }
        if self.procs.get(&proc).is_some_and(|p| !p.todo.is_empty()) {
            self.wake_proc(proc);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Other ioctls

    /// `BINDER_SET_MAX_THREADS`.
    pub fn set_max_threads(&mut self, conn: ConnId, max: u32) {
        if let Some(p) = self
            .threads
            .get(&conn)
            .and_then(|t| self.procs.get_mut(&t.proc))
        {
            p.max_threads = max;
        }
    }

    /// `BINDER_SET_CONTEXT_MGR(_EXT)`.
    pub fn set_context_mgr(
        &mut self,
        conn: ConnId,
        fbo: Option<FlatBinderObject>,
    ) -> Result<(), Errno> {
        let proc = self.threads.get(&conn).ok_or(Errno::EINVAL)?.proc;
        if self.ctx_mgr.is_some() {
            return Err(Errno::EBUSY);
        }
        let euid = self.procs.get(&proc).ok_or(Errno::EINVAL)?.euid;
        if let Some(uid) = self.ctx_mgr_uid {
            if uid != euid {
                return Err(Errno::EPERM);
            }
        }
        if !self.has_room(proc, Cap::Nodes) {
            // The kernel's answer when it cannot make the node.
            return Err(Errno::ENOMEM);
        }
        let (ptr, cookie, flags) = fbo
            .map(|f| (f.binder, f.cookie, f.flags))
            .unwrap_or((0, 0, 0));
        let node = self.new_node(proc, ptr, cookie, flags);
        if let Some(n) = self.nodes.get_mut(&node) {
            n.local_weak_refs += 1;
            n.local_strong_refs += 1;
            n.has_strong_ref = true;
            n.has_weak_ref = true;
        }
        self.ctx_mgr = Some(node);
        self.ctx_mgr_uid = Some(euid);
        Ok(())
    }

    /// `BINDER_ENABLE_ONEWAY_SPAM_DETECTION`.
    pub fn set_spam_detection(&mut self, conn: ConnId, on: bool) {
        if let Some(p) = self
            .threads
            .get(&conn)
            .and_then(|t| self.procs.get_mut(&t.proc))
        {
            p.spam_detection = on;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Release

    /// A thread's connection closed (`binder_thread_release`).
    pub fn release_thread(&mut self, conn: ConnId) {
        let Some(t) = self.threads.get(&conn) else {
            return;
        };
        let proc = t.proc;
        let mut send_reply = None;
        let mut cur = t.stack;
        if let Some(top) = cur {
            if self
                .txns
                .get(&top)
                .is_some_and(|x| x.to_thread == Some(conn))
            {
                send_reply = Some(top);
            }
        }
        while let Some(id) = cur {
            let Some(x) = self.txns.get_mut(&id) else {
                break;
            };
            if x.to_thread == Some(conn) {
                x.to_proc = None;
                x.to_thread = None;
                cur = x.to_parent;
                // The buffer stays with the process (freed with it); the transaction lets go.
                if let Some(off) = x.buffer.take() {
                    if let Some(b) = self
                        .procs
                        .get_mut(&proc)
                        .and_then(|p| p.buffers.get_mut(&off))
                    {
                        b.txn = None;
                    }
                }
            } else if x.from == Some(conn) {
                x.from = None;
                cur = x.from_parent;
            } else {
                break;
            }
        }
        if let Some(t) = send_reply {
            self.send_failed_reply(t, BR_DEAD_REPLY);
        }
        let todo: Vec<Work> = self
            .threads
            .get_mut(&conn)
            .map(|t| t.todo.drain(..).collect())
            .unwrap_or_default();
        self.threads.remove(&conn);
        self.stats.deleted[OBJ_THREAD] += 1;
        if let Some(p) = self.procs.get_mut(&proc) {
            if p.threads.remove(&conn) {
                self.uid_usage.uncharge(p.euid, Cap::Threads);
            }
        }
        self.release_work(todo);
    }

    /// Drops work items of a dying thread or process (`binder_release_work`).
    pub fn release_work(&mut self, list: Vec<Work>) {
        for w in list {
            match w {
                Work::Txn(id) => {
                    let sync_call = self
                        .txns
                        .get(&id)
                        .is_some_and(|t| !t.is_reply && t.flags & TF_ONE_WAY == 0);
                    if sync_call {
                        self.send_failed_reply(id, BR_DEAD_REPLY);
                    } else {
                        self.free_txn(id);
                    }
                }
                Work::Death(d) => {
                    if let Some(death) = self.deaths.get_mut(&d) {
                        death.queued = None;
                        if death.kind == DeathKind::Clear {
                            self.forget_death(d);
                        }
                    }
                }
                Work::Node(n) => {
                    if let Some(node) = self.nodes.get_mut(&n) {
                        node.work = None;
                    }
                }
                _ => {}
            }
        }
    }

    /// A process's connection closed: it exited, whatever the cause (`binder_deferred_release`).
    pub fn release_proc(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get(&proc) else {
            return;
        };
        if self
            .ctx_mgr
            .is_some_and(|n| self.nodes.get(&n).is_some_and(|n| n.owner == Some(proc)))
        {
            self.ctx_mgr = None;
        }
        let threads: Vec<ConnId> = p.threads.iter().copied().collect();
        for c in threads {
            self.release_thread(c);
        }
        let nodes: Vec<NodeId> = self
            .procs
            .get(&proc)
            .map(|p| p.nodes.values().copied().collect())
            .unwrap_or_default();
        for n in nodes {
            self.release_node(n);
        }
        let refs: Vec<Handle> = self
            .procs
            .get(&proc)
            .map(|p| p.refs.keys().copied().collect())
            .unwrap_or_default();
        for desc in refs {
            self.delete_ref(proc, desc);
        }
        let (todo, delivered): (Vec<Work>, Vec<DeathId>) = match self.procs.get_mut(&proc) {
            Some(p) => (
                p.todo.drain(..).collect(),
                std::mem::take(&mut p.delivered_death),
            ),
            None => return,
        };
        self.release_work(todo);
        for d in delivered {
            if self.deaths.contains_key(&d) {
                self.forget_death(d);
            }
        }
        let bufs: Vec<BufferId> = self
            .procs
            .get(&proc)
            .map(|p| p.buffers.keys().copied().collect())
            .unwrap_or_default();
        for off in bufs {
            // The process is gone: its fds went with it.
            self.release_buffer(proc, off);
        }
        if let Some(p) = self.procs.remove(&proc) {
            // What the process still holds (records of its transactions not yet read) is
            // no longer its uid's.
            for cap in CAPS {
                self.uid_usage.uncharge_n(p.euid, cap, p.held(cap));
            }
        }
        self.stats.deleted[OBJ_PROC] += 1;
    }

    /// The owner of node `n` died (`binder_node_release`).
    fn release_node(&mut self, n: NodeId) {
        let async_todo: Vec<TxnId> = self
            .nodes
            .get_mut(&n)
            .map(|x| x.async_todo.drain(..).collect())
            .unwrap_or_default();
        self.release_work(async_todo.into_iter().map(Work::Txn).collect());
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        if let (Some(loc), Some(_)) = (node.work.take(), node.owner) {
            self.dequeue_at(loc, Work::Node(n));
        }
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        if let Some(owner) = node.owner.take() {
            if let Some(p) = self.procs.get_mut(&owner) {
                if p.nodes.remove(&node.ptr).is_some() {
                    self.uid_usage.uncharge(p.euid, Cap::Nodes);
                }
            }
        }
        node.local_strong_refs = 0;
        node.local_weak_refs = 0;
        if node.refs.is_empty() && node.tmp_refs == 0 {
            self.nodes.remove(&n);
            self.stats.deleted[OBJ_NODE] += 1;
            return;
        }
        let holders: Vec<ProcId> = node.refs.iter().copied().collect();
        for holder in holders {
            let death = self
                .procs
                .get(&holder)
                .and_then(|p| p.refs_by_node.get(&n).and_then(|d| p.refs.get(d)))
                .and_then(|r| r.death);
            if let Some(d) = death {
                if let Some(death) = self.deaths.get_mut(&d) {
                    if death.queued.is_none() {
                        death.kind = DeathKind::DeadBinder;
                        death.queued = Some(Loc::Proc(holder));
                        self.enqueue_proc(holder, Work::Death(d));
                    }
                }
            }
        }
    }

    /// Frees buffer `off` of `proc` and releases what its objects held. Returns the fd
    /// numbers of its FDA objects, which the process must close (the kernel closes them in
    /// the freeing process).
    pub fn release_buffer(&mut self, proc: ProcId, off: BufferId) -> Option<Vec<i32>> {
        let p = self.procs.get_mut(&proc)?;
        let b = p.buffers.remove(&off)?;
        let mut close = Vec::new();
        if b.allow_user_free {
            if let Some(mut view) = p.area.buffer_mut(off) {
                // Buffer offsets checked when the FDA was translated.
                close.extend(b.fda_fds.iter().filter_map(|at| view.read::<i32>(*at).ok()));
            }
        }
        p.area.free(off, b.is_async);
        if let Some(t) = b.txn {
            if let Some(t) = self.txns.get_mut(&t) {
                t.buffer = None;
            }
        }
        if b.is_async {
            if let Some(n) = b.target_node {
                self.next_async(n);
            }
        }
        if let Some(n) = b.target_node {
            self.dec_node(n, true, false);
        }
        self.apply_releases(proc, &b.releases);
        Some(close)
    }

    /// Drops the references a buffer's objects held (`binder_transaction_buffer_release`).
    pub fn apply_releases(&mut self, proc: ProcId, releases: &[Release]) {
        for r in releases {
            match *r {
                Release::Node { node, strong } => {
                    self.dec_node(node, strong, false);
                }
                Release::Ref { desc, strong } => {
                    // A number no ref holds any more: the kernel logs it ("bad handle") and
                    // goes on; not a user error.
                    if self
                        .procs
                        .get(&proc)
                        .is_some_and(|p| p.refs.contains_key(&desc))
                    {
                        self.dec_ref(proc, desc, strong);
                    }
                }
            }
        }
    }

    /// BC_FREE_BUFFER.
    fn bc_free_buffer(&mut self, conn: ConnId, addr: u64) {
        let Some(proc) = self.threads.get(&conn).map(|t| t.proc) else {
            debug_assert!(false, "missing proc in state.rs");
            return;
        };
        let Some(p) = self.procs.get(&proc) else {
            debug_assert!(false, "missing p in state.rs");
            return;
        };
        let off = BufferId(addr.wrapping_sub(p.area.client_base));
        match p.buffers.get(&off) {
            Some(b) if b.allow_user_free => {
                let close = self.release_buffer(proc, off).unwrap_or_default();
                if let Some(t) = self.threads.get_mut(&conn) {
                    // binder_transaction_buffer_release sets looper_need_return for each FDA
                    // fd it closes, so this call's read returns at once, a lone BR_NOOP
                    // rather than EAGAIN for a non-blocking read (differential seed 6275).
                    t.need_return |= !close.is_empty();
                    t.close_fds.extend(close);
                }
            }
            _ => self.user_error(),
        }
    }

    /// A oneway buffer of node `n` was freed: the next queued oneway call goes to the process.
    fn next_async(&mut self, n: NodeId) {
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        match node.async_todo.pop_front() {
            Some(t) => {
                if let Some(owner) = node.owner {
                    self.enqueue_proc(owner, Work::Txn(t));
                } else {
                    self.free_txn(t);
                }
            }
            None => node.has_async = false,
        }
    }

    /// Frees a transaction record that is dropped undelivered (`binder_free_transaction`).
    /// Like the kernel, this leaves its buffer allocated, with the references its target
    /// node and objects hold, until the receiving process exits: the receiver never saw it,
    /// so it cannot free it (differential seed 6113: a call queued to a thread that exits
    /// keeps its target node strong).
    pub fn free_txn(&mut self, id: TxnId) {
        let Some(t) = self.txns.remove(&id) else {
            return;
        };
        self.stats.deleted[OBJ_TXN] += 1;
        self.uncount_txn(&t);
        if let (Some(off), Some(proc)) = (t.buffer, t.to_proc) {
            if let Some(b) = self
                .procs
                .get_mut(&proc)
                .and_then(|p| p.buffers.get_mut(&off))
            {
                b.txn = None;
            }
        }
        // t.fds close here if never installed.
    }
}

/// A plain value at `pos` of `bytes`.
pub fn read_at<T: bytemuck::Pod>(bytes: &[u8], pos: usize) -> Option<T> {
    bytes
        .get(pos..pos.checked_add(size_of::<T>())?)
        .map(bytemuck::pod_read_unaligned)
}

/// The stats slot of a BC_ command.
pub fn bc_index(cmd: u32) -> Option<usize> {
    (cmd >> 8 & 0xff == b'c' as u32).then_some((cmd & 0x1f) as usize)
}

/// The stats slot of a BR_ command.
pub fn br_index(cmd: u32) -> Option<usize> {
    (cmd >> 8 & 0xff == b'r' as u32).then_some((cmd & 0x1f) as usize)
}

/// The payload of one transaction in a gathered stream: `(record, data ‖ offsets ‖ sg, fds,
/// end position)`.
pub type GatheredParts<'a> = (Gathered, &'a [u8], Vec<OwnedFd>, usize);

/// Reads the [`Gathered`] record at `pos` and takes its fds.
fn parse_gathered<'a>(
    stream: &'a [u8],
    pos: usize,
    fds: &mut VecDeque<OwnedFd>,
) -> Option<GatheredParts<'a>> {
    let g: Gathered = read_at(stream, pos)?;
    let start = pos + size_of::<Gathered>();
    let len = g
        .data_len
        .checked_add(g.offsets_len)?
        .checked_add(g.sg_len)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let body = stream.get(start..end)?;
    if fds.len() < g.nfds as usize {
        return None;
    }
    let taken: Vec<OwnedFd> = fds.drain(..g.nfds as usize).collect();
    Some((g, body, taken, end))
}
