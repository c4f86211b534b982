//! Transactions and replies (`binder_transaction`), in the shape of the kernel's Rust driver:
//! the BC_ loop builds one [`TxnRequest`]; [`State::transaction`] hands it to `call`, `reply`
//! or `oneway`, each of which finds its target; [`State::build_txn`] then allocates the
//! receiver's buffer, copies the payload in and translates its objects (translate.rs) before the
//! caller-specific part queues the work. A refusal is a [`TxnError`] (BR code, errno, check),
//! which also becomes the thread's extended error (`BINDER_GET_EXTENDED_ERROR`).

use super::error::{Check, ExtendedError, TxnError, EE_CLEAR};
use super::limits::Cap;
use super::state::*;
use super::translate::{SgState, Translation};
use crate::binder_ipc::protocol::object::checked_align8;
use crate::binder_ipc::protocol::wire::{align8, Gathered};
use crate::binder_ipc::uapi::*;
use nix::errno::Errno;
use std::mem::size_of;
use std::os::fd::OwnedFd;

/// One BC_TRANSACTION / BC_REPLY (or `_SG`) as the BC_ loop read it, with what the sender's
/// device gathered for it.
#[derive(Debug)]
pub struct TxnRequest<'a> {
    /// The transaction data.
    pub tr: BinderTransactionData,
    /// BC_REPLY / BC_REPLY_SG.
    pub reply: bool,
    /// `buffers_size` of the `_SG` forms (0 otherwise).
    pub buffers_size: u64,
    /// What the sender's device gathered.
    pub gathered: Gathered,
    /// data ‖ offsets ‖ scatter-gather bytes.
    pub body: &'a [u8],
    /// The files its FD/FDA objects name, in order.
    pub fds: Vec<OwnedFd>,
}

impl TxnRequest<'_> {
    fn oneway(&self) -> bool {
        !self.reply && self.tr.flags & TF_ONE_WAY != 0
    }
}

/// The sending thread and its process.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    /// The thread.
    pub conn: ConnId,
    /// Its process.
    pub proc: ProcId,
    /// The process's pid.
    pub pid: i32,
    /// The process's euid.
    pub euid: u32,
}

/// Where a transaction goes.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The receiving process.
    pub proc: ProcId,
    /// The target node (calls).
    pub node: Option<NodeId>,
    /// The receiver accepts fds.
    pub accept_fds: bool,
}

/// What a transaction record keeps of its request.
#[derive(Debug, Clone, Copy)]
struct TxnHead {
    id: TxnId,
    code: u32,
    flags: u32,
    reply: bool,
}

/// The layout of a transaction buffer, every boundary computed with checked arithmetic.
#[derive(Debug, Clone, Copy)]
struct Layout {
    data_size: u64,
    offsets_size: u64,
    /// Start of the offsets array (data rounded up to 8).
    off_start: u64,
    /// Start of the scatter-gather area.
    sg_start: u64,
    /// Total bytes (end of the scatter-gather area).
    total: u64,
}

impl State {
    /// BC_TRANSACTION / BC_REPLY (and the `_SG` forms) from thread `conn`.
    pub fn transaction(&mut self, conn: ConnId, req: TxnRequest<'_>) {
        let id = TxnId(self.new_id());
        self.set_ee(conn, ee(id, BR_OK, None));
        let Some(sender) = self.sender(conn) else {
            debug_assert!(false, "transaction from unknown thread {conn}");
            return;
        };
        let res = if req.reply {
            self.reply(sender, id, req)
        } else if req.oneway() {
            self.oneway(sender, id, req)
        } else {
            self.call(sender, id, req)
        };
        if let Err(e) = res {
            self.set_ee(conn, ee(id, e.reply, Some(e)));
            self.count_refusal(e.check);
            self.return_error(conn, e.reply);
        }
    }

    fn sender(&self, conn: ConnId) -> Option<Sender> {
        let proc = self.threads.get(&conn)?.proc;
        let p = self.procs.get(&proc)?;
        Some(Sender {
            conn,
            proc,
            pid: p.pid,
            euid: p.euid,
        })
    }

    /// A sync call (`binder_transaction`, `!reply`, no TF_ONE_WAY).
    fn call(&mut self, s: Sender, id: TxnId, req: TxnRequest<'_>) -> Result<(), TxnError> {
        let (node, target_proc) = self.call_target(s, Handle(req.tr.handle()))?;
        self.no_txn_on_todo(s.conn)?;
        let thread = self.nested_target(s.conn, target_proc)?;
        let route = Route {
            proc: target_proc,
            node: Some(node),
            accept_fds: self.nodes.get(&node).is_some_and(|n| n.accept_fds),
        };
        self.build_txn(s, id, req, route)?;
        let parent = self.threads.get(&s.conn).and_then(|t| t.stack);
        if let Some(x) = self.txns.get_mut(&id) {
            x.from_parent = parent;
        }
        if let Some(t) = self.threads.get_mut(&s.conn) {
            t.stack = Some(id);
        }
        // Deferred: the caller sleeps until the reply comes.
        self.enqueue_thread(s.conn, Work::Complete, false);
        self.proc_transaction(id, target_proc, thread, Some(node), false);
        Ok(())
    }

    /// A oneway call.
    fn oneway(&mut self, s: Sender, id: TxnId, req: TxnRequest<'_>) -> Result<(), TxnError> {
        let (node, target_proc) = self.call_target(s, Handle(req.tr.handle()))?;
        let route = Route {
            proc: target_proc,
            node: Some(node),
            accept_fds: self.nodes.get(&node).is_some_and(|n| n.accept_fds),
        };
        let spam = self.build_txn(s, id, req, route)?;
        let w = if spam {
            Work::SpamSuspect
        } else {
            Work::Complete
        };
        self.enqueue_thread(s.conn, w, true);
        self.proc_transaction(id, target_proc, None, Some(node), true);
        Ok(())
    }

    /// BC_REPLY: the call on top of the thread's stack is answered. Failures after the call
    /// was popped go to its caller (the replier hears BR_TRANSACTION_COMPLETE).
    fn reply(&mut self, s: Sender, id: TxnId, req: TxnRequest<'_>) -> Result<(), TxnError> {
        let irt = self.pop_call_for_reply(s.conn)?;
        let caller = self.txns.get(&irt).and_then(|x| x.from);
        let res = match caller {
            None => Err(TxnError::dead(Check::CallerDead, None)),
            Some(c) => {
                let on_top = self.threads.get(&c).map(|t| t.stack == Some(irt));
                debug_assert!(on_top.is_some(), "caller {c} of txn {irt} is gone");
                if on_top != Some(true) {
                    // The kernel lets go of in_reply_to here: the replier hears the error.
                    self.user_error();
                    return Err(TxnError::failed(Check::CallerStackMoved, Errno::EPROTO));
                }
                self.reply_to(s, id, irt, c, req)
            }
        };
        if let Err(e) = res {
            self.reply_failed(s.conn, id, irt, e);
        }
        Ok(())
    }

    /// Pops the call this thread answers off its stack.
    fn pop_call_for_reply(&mut self, conn: ConnId) -> Result<TxnId, TxnError> {
        let Some(irt) = self.threads.get(&conn).and_then(|t| t.stack) else {
            self.user_error();
            return Err(TxnError::failed(Check::ReplyWithoutCall, Errno::EPROTO));
        };
        let Some(x) = self.txns.get(&irt) else {
            debug_assert!(false, "stack names missing txn {irt}");
            return Err(TxnError::failed(Check::ReplyWithoutCall, Errno::EPROTO));
        };
        if x.to_thread != Some(conn) {
            self.user_error();
            return Err(TxnError::failed(Check::ReplyNotOnTop, Errno::EPROTO));
        }
        let to_parent = x.to_parent;
        if let Some(t) = self.threads.get_mut(&conn) {
            t.stack = to_parent;
        }
        Ok(irt)
    }

    fn reply_to(
        &mut self,
        s: Sender,
        id: TxnId,
        irt: TxnId,
        caller: ConnId,
        req: TxnRequest<'_>,
    ) -> Result<(), TxnError> {
        let target_proc = self.threads.get(&caller).map(|t| t.proc);
        let target_proc = target_proc.ok_or(TxnError::dead(Check::CallerDead, None))?;
        let route = Route {
            proc: target_proc,
            node: None,
            accept_fds: self
                .txns
                .get(&irt)
                .is_some_and(|t| t.flags & TF_ACCEPT_FDS != 0),
        };
        self.build_txn(s, id, req, route)?;
        self.enqueue_thread(s.conn, Work::Complete, true);
        let from_parent = self.txns.get(&irt).and_then(|x| x.from_parent);
        if let Some(t) = self.threads.get_mut(&caller) {
            t.stack = from_parent;
        }
        self.enqueue_thread(caller, Work::Txn(id), true);
        self.free_txn_record(irt);
        Ok(())
    }

    /// A reply that failed after its call was popped: the caller gets the error (and it as
    /// its extended error, unless it holds one), the replier BR_TRANSACTION_COMPLETE.
    fn reply_failed(&mut self, conn: ConnId, id: TxnId, irt: TxnId, e: TxnError) {
        self.count_refusal(e.check);
        self.stats.failed_transactions += 1;
        if let Some(f) = self.txns.get(&irt).and_then(|x| x.from) {
            if let Some(t) = self.threads.get_mut(&f) {
                if t.ee.command == BR_OK {
                    t.ee = ee(id, e.reply, Some(e));
                }
            }
        }
        if let Some(t) = self.threads.get_mut(&conn) {
            t.return_error = Some(BR_TRANSACTION_COMPLETE);
        }
        self.enqueue_thread(conn, Work::ReturnError, true);
        self.send_failed_reply(irt, e.reply);
    }

    /// The node and process a call on `handle` goes to.
    fn call_target(&mut self, s: Sender, handle: Handle) -> Result<(NodeId, ProcId), TxnError> {
        let node = if handle == Handle(0) {
            self.ctx_mgr
                .ok_or(TxnError::dead(Check::NoContextManager, Some(Errno::EINVAL)))?
        } else {
            // `binder_get_ref_olocked(.., need_strong_ref = true)`: a weak ref cannot be
            // called.
            let r = self
                .procs
                .get(&s.proc)
                .and_then(|p| p.refs.get(&handle))
                .filter(|r| r.strong > 0)
                .map(|r| r.node);
            match r {
                Some(n) => n,
                None => {
                    self.user_error();
                    return Err(TxnError::failed(Check::BadHandle, Errno::EINVAL));
                }
            }
        };
        let owner = self.nodes.get(&node).and_then(|n| n.owner);
        let owner = owner.ok_or(TxnError::dead(Check::TargetDead, Some(Errno::EINVAL)))?;
        // The kernel compares OS pids here: no binder process of the context manager's own OS
        // process may call it through handle 0.
        let same_pid =
            handle == Handle(0) && self.procs.get(&owner).is_some_and(|p| p.pid == s.pid);
        if owner == s.proc || same_pid {
            self.user_error();
            return Err(TxnError::failed(Check::SelfCall, Errno::EINVAL));
        }
        Ok((node, owner))
    }

    /// A sync call is refused while the head of the caller's own todo list is a transaction
    /// or a reply (the kernel looks at the head only: a BR_TRANSACTION_COMPLETE or an error
    /// in front of it lets the call through). The check comes after the target is found, as
    /// in `binder_transaction`, so a bad handle is reported first.
    fn no_txn_on_todo(&mut self, conn: ConnId) -> Result<(), TxnError> {
        let head = self
            .threads
            .get(&conn)
            .and_then(|t| t.todo.front().copied());
        if matches!(head, Some(Work::Txn(_))) {
            self.user_error();
            return Err(TxnError::failed(Check::TxnOnTodo, Errno::EPROTO));
        }
        Ok(())
    }

    /// For a sync call from a thread with a stack: the thread of `target_proc` that waits in
    /// this chain, if any (a nested call goes back to it).
    fn nested_target(
        &mut self,
        conn: ConnId,
        target_proc: ProcId,
    ) -> Result<Option<ConnId>, TxnError> {
        let Some(top) = self.threads.get(&conn).and_then(|t| t.stack) else {
            return Ok(None);
        };
        let to_thread = self.txns.get(&top).map(|x| x.to_thread);
        debug_assert!(to_thread.is_some(), "stack names missing txn {top}");
        if to_thread != Some(Some(conn)) {
            self.user_error();
            return Err(TxnError::failed(Check::BadCallStack, Errno::EPROTO));
        }
        let mut cur = Some(top);
        while let Some(id) = cur {
            let Some(x) = self.txns.get(&id) else { break };
            if let Some(f) = x.from {
                if self.threads.get(&f).is_some_and(|t| t.proc == target_proc) {
                    return Ok(Some(f));
                }
            }
            cur = x.from_parent;
        }
        Ok(None)
    }

    /// Allocates the receiver's buffer, copies and translates the payload, and records the
    /// transaction as `id`. Returns whether a oneway sender is now a spam suspect. On error
    /// nothing is left behind: the buffer is freed and the references taken are dropped.
    fn build_txn(
        &mut self,
        s: Sender,
        id: TxnId,
        req: TxnRequest<'_>,
        route: Route,
    ) -> Result<bool, TxnError> {
        if !self.procs.get(&route.proc).is_some_and(|p| p.mapped) {
            return Err(TxnError::dead(Check::TargetUnmapped, Some(Errno::ESRCH)));
        }
        self.check_txn_cap(s.proc)?;
        self.check_fd_cap(s.proc, req.fds.len())?;
        let layout = Layout::of(&req)?;
        let oneway = req.oneway();
        let alloc = match self.procs.get_mut(&route.proc) {
            Some(tp) => tp.area.alloc(layout.total, oneway),
            None => Err(Errno::ESRCH),
        };
        let buf_off = alloc.map_err(|e| TxnError::failed(Check::NoSpace, e))?;
        let mut cx = Translation::new(s, route, buf_off, req.fds);
        let filled = self.fill_buffer(&mut cx, &layout, req.body);
        if let Err(e) = filled {
            if let Some(tp) = self.procs.get_mut(&route.proc) {
                tp.area.free(buf_off, oneway);
            }
            self.apply_releases(route.proc, &cx.releases);
            return Err(e);
        }
        // Judged only for a transaction that goes through: a refused one must not use up the
        // once-per-episode report.
        let spam = oneway && self.oneway_spam(route.proc, s.pid, layout.total);
        let head = TxnHead {
            id,
            code: req.tr.code,
            flags: req.tr.flags,
            reply: req.reply,
        };
        self.commit_txn(s, head, route, layout, cx);
        Ok(spam)
    }

    /// Copies data and offsets into the new buffer and translates the objects.
    fn fill_buffer(
        &mut self,
        cx: &mut Translation,
        layout: &Layout,
        body: &[u8],
    ) -> Result<(), TxnError> {
        let size_err = TxnError::failed(Check::SizeMismatch, Errno::EFAULT);
        let data_len = usize::try_from(layout.data_size).map_err(|_| size_err)?;
        let offs_len = usize::try_from(layout.offsets_size).map_err(|_| size_err)?;
        let offs_end = data_len.checked_add(offs_len).ok_or(size_err)?;
        let data = body.get(..data_len).ok_or(size_err)?;
        let offs = body.get(data_len..offs_end).ok_or(size_err)?;
        let sg_src = body.get(offs_end..).ok_or(size_err)?;
        {
            let mut b = self.txn_buffer(cx)?;
            let access = |e| TxnError::failed(Check::BufferAccess, e);
            b.zero().map_err(access)?;
            b.copy_into(0, data).map_err(access)?;
            b.copy_into(layout.off_start, offs).map_err(access)?;
        }
        let mut sg = SgState::new(sg_src, layout.sg_start, layout.total);
        self.translate_objects(cx, &mut sg, data, offs)
    }

    /// Records the buffer and the transaction (`t->buffer`, `t`), counted against the
    /// sender's cap.
    fn commit_txn(
        &mut self,
        s: Sender,
        head: TxnHead,
        route: Route,
        layout: Layout,
        cx: Translation,
    ) {
        let TxnHead {
            id,
            code,
            flags,
            reply,
        } = head;
        let oneway = !reply && flags & TF_ONE_WAY != 0;
        self.stats.created[OBJ_TXN] += 1;
        if let Some(tp) = self.procs.get_mut(&route.proc) {
            tp.buffers.insert(
                cx.buf_off,
                Buffer {
                    data_size: layout.data_size,
                    offsets_size: layout.offsets_size,
                    is_async: oneway,
                    target_node: route.node,
                    txn: Some(id),
                    allow_user_free: false,
                    releases: cx.releases,
                    fda_fds: cx.fda_fds,
                    sender_pid: s.pid,
                },
            );
        }
        if let Some(n) = route.node {
            // The buffer holds a strong ref on its target node until it is freed (the
            // kernel's `binder_get_node_refs_for_txn`, dropped in
            // `binder_transaction_buffer_release`): no BR_RELEASE while it is held.
            let held = self.inc_node(n, true, false, None);
            debug_assert!(held.is_ok(), "target node {n} of a new txn is gone");
        }
        let nfds = u32::try_from(cx.fd_fixups.len()).unwrap_or(u32::MAX);
        if let Some(p) = self.procs.get_mut(&s.proc) {
            p.txns_out += 1;
            self.uid_usage.charge(p.euid, Cap::Txns);
            p.fds_out = p.fds_out.saturating_add(nfds);
            self.uid_usage.charge_n(p.euid, Cap::Fds, u64::from(nfds));
        }
        self.txns.insert(
            id,
            Txn {
                from: (!reply && !oneway).then_some(s.conn),
                sender_proc: s.proc,
                to_thread: None,
                to_proc: Some(route.proc),
                code,
                flags,
                sender_pid: s.pid,
                sender_euid: s.euid,
                is_reply: reply,
                node: route.node,
                buffer: Some(cx.buf_off),
                from_parent: None,
                to_parent: None,
                fds: cx.fd_fixups,
            },
        );
    }

    /// The sender's pending-transaction cap.
    fn check_txn_cap(&mut self, proc: ProcId) -> Result<(), TxnError> {
        if !self.has_room(proc, Cap::Txns) {
            return Err(TxnError::failed(Check::TxnCap, Errno::ENOSPC));
        }
        Ok(())
    }

    /// Refuses a transaction whose `n` fds would take its sender (or the sender's uid) past
    /// [`super::limits::Limits::fds`] held for transactions not yet read.
    fn check_fd_cap(&mut self, proc: ProcId, n: usize) -> Result<(), TxnError> {
        if n > 0 && !self.has_room_for(proc, Cap::Fds, n as u64) {
            return Err(TxnError::failed(Check::FdCap, Errno::EMFILE));
        }
        Ok(())
    }

    /// Hands transaction `id` to its target (`binder_proc_transaction`).
    fn proc_transaction(
        &mut self,
        id: TxnId,
        proc: ProcId,
        thread: Option<ConnId>,
        node: Option<NodeId>,
        oneway: bool,
    ) {
        let mut pending_async = false;
        if oneway {
            if let Some(n) = node.and_then(|n| self.nodes.get_mut(&n)) {
                if n.has_async {
                    pending_async = true;
                } else {
                    n.has_async = true;
                }
            }
        }
        let thread = match thread {
            Some(t) => Some(t),
            None if !pending_async => self.waiting_thread(proc),
            None => None,
        };
        if let Some(t) = thread {
            self.enqueue_thread(t, Work::Txn(id), true);
        } else if !pending_async {
            self.enqueue_proc(proc, Work::Txn(id));
        } else if let Some(n) = node.and_then(|n| self.nodes.get_mut(&n)) {
            n.async_todo.push_back(id);
        }
    }

    /// Oneway spam (`debug_low_async_space_locked`): once the target's async space is below
    /// a tenth of its area, a sender holding more than 50 oneway buffers or a quarter of the
    /// area is reported, once until space recovers. Whether the sender hears
    /// BR_ONEWAY_SPAM_SUSPECT depends on its own BINDER_ENABLE_ONEWAY_SPAM_DETECTION.
    fn oneway_spam(&mut self, target_proc: ProcId, sender_pid: i32, size: u64) -> bool {
        let Some(tp) = self.procs.get_mut(&target_proc) else {
            return false;
        };
        let total = tp.area.size() as u64;
        if tp.area.free_async_space >= total / 10 {
            tp.area.spam_detected = false;
            return false;
        }
        // `size` was allocated, so it rounds up without overflow.
        let (mut n, mut bytes) = (1u64, align8(size).max(8));
        for (off, _) in tp
            .buffers
            .iter()
            .filter(|(_, b)| b.is_async && b.sender_pid == sender_pid)
        {
            n += 1;
            bytes = bytes.saturating_add(tp.area.len_of(*off).unwrap_or(0));
        }
        if (n > 50 || bytes > total / 4) && !tp.area.spam_detected {
            tp.area.spam_detected = true;
            return true;
        }
        false
    }

    /// Forgets a finished transaction record, leaving its buffer to its owner.
    pub fn free_txn_record(&mut self, id: TxnId) {
        let Some(t) = self.txns.remove(&id) else {
            debug_assert!(false, "free of missing txn {id}");
            return;
        };
        self.stats.deleted[OBJ_TXN] += 1;
        self.uncount_txn(&t);
        if let (Some(off), Some(p)) = (t.buffer, t.to_proc) {
            if let Some(b) = self.procs.get_mut(&p).and_then(|p| p.buffers.get_mut(&off)) {
                b.txn = None;
            }
        }
    }

    /// A transaction record went away: its sender may send one more (and the fds it still
    /// held, never delivered, are closed with it).
    pub(super) fn uncount_txn(&mut self, t: &Txn) {
        self.uncount_txn_fds(t.sender_proc, t.fds.len());
        if let Some(p) = self.procs.get_mut(&t.sender_proc) {
            if p.txns_out > 0 {
                p.txns_out -= 1;
                self.uid_usage.uncharge(p.euid, Cap::Txns);
            }
        }
    }

    /// `n` fds held for a transaction of `sender` left the shim's hands (delivered or
    /// closed).
    pub(super) fn uncount_txn_fds(&mut self, sender: ProcId, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(p) = self.procs.get_mut(&sender) {
            let n = n.min(p.fds_out);
            p.fds_out -= n;
            self.uid_usage.uncharge_n(p.euid, Cap::Fds, u64::from(n));
        }
    }

    /// The call `t` will get no reply: its caller (or the first live caller down the chain)
    /// gets `code` (`binder_send_failed_reply`).
    pub fn send_failed_reply(&mut self, mut t: TxnId, code: u32) {
        loop {
            let Some(x) = self.txns.get(&t) else { return };
            let (from, from_parent) = (x.from, x.from_parent);
            if let Some(f) = from.filter(|f| self.threads.contains_key(f)) {
                if let Some(th) = self.threads.get_mut(&f) {
                    if th.stack == Some(t) {
                        th.stack = from_parent;
                    }
                    if th.reply_error.is_none() {
                        th.reply_error = Some(code);
                        self.stats.failed_transactions += 1;
                        self.enqueue_thread(f, Work::ReplyError, true);
                    }
                }
                self.free_txn(t);
                return;
            }
            self.free_txn(t);
            match from_parent {
                Some(p) => t = p,
                None => return,
            }
        }
    }

    /// Sets thread `conn`'s extended error.
    fn set_ee(&mut self, conn: ConnId, e: ExtendedError) {
        if let Some(t) = self.threads.get_mut(&conn) {
            t.ee = e;
        }
    }

    /// `BINDER_GET_EXTENDED_ERROR`: thread `conn`'s extended error, which this clears to
    /// `{0, BR_OK, 0}`. `None` for an unknown thread.
    pub fn take_extended_error(&mut self, conn: ConnId) -> Option<ExtendedError> {
        let t = self.threads.get_mut(&conn)?;
        Some(std::mem::replace(&mut t.ee, EE_CLEAR))
    }

    /// Counts a refusal by its check (shown in the dump).
    fn count_refusal(&mut self, check: Check) {
        *self.stats.refusals.entry(check).or_insert(0) += 1;
    }
}

/// An extended-error record for transaction `id`.
fn ee(id: TxnId, command: u32, e: Option<TxnError>) -> ExtendedError {
    ExtendedError {
        id: id.0 as u32,
        command,
        param: e.map(|e| e.param()).unwrap_or(0),
    }
}

impl Layout {
    /// The buffer layout of `req`, after checking it against what was gathered
    /// (`binder_alloc_new_buf`'s and `binder_transaction`'s size checks).
    fn of(req: &TxnRequest<'_>) -> Result<Layout, TxnError> {
        let (g, tr) = (&req.gathered, &req.tr);
        if g.status != 0 {
            let errno = Errno::from_raw(g.status);
            return Err(TxnError::failed(Check::Gather, errno));
        }
        if g.data_len != tr.data_size
            || g.offsets_len != tr.offsets_size
            || g.sg_len > req.buffers_size
        {
            return Err(TxnError::failed(Check::SizeMismatch, Errno::EFAULT));
        }
        if tr.offsets_size % 8 != 0 {
            return Err(TxnError::failed(Check::OffsetsSizeUnaligned, Errno::EINVAL));
        }
        if req.buffers_size % 8 != 0 {
            return Err(TxnError::failed(Check::BuffersSizeUnaligned, Errno::EINVAL));
        }
        let overflow = TxnError::failed(Check::SizeOverflow, Errno::EINVAL);
        let off_start = checked_align8(tr.data_size).ok_or(overflow)?;
        let off_end = off_start.checked_add(tr.offsets_size).ok_or(overflow)?;
        let sg_start = checked_align8(off_end).ok_or(overflow)?;
        let total = sg_start.checked_add(req.buffers_size).ok_or(overflow)?;
        Ok(Layout {
            data_size: tr.data_size,
            offsets_size: tr.offsets_size,
            off_start,
            sg_start,
            total,
        })
    }
}

/// Room a read needs before the kernel delivers a transaction: command + the secctx form
/// of the transaction data (the kernel sizes its check for the larger record).
pub const TXN_RECORD: usize = 4 + size_of::<BinderTransactionDataSecctx>();
