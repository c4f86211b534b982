//! The read half of `BINDER_WRITE_READ` (`binder_thread_read`).

use super::limits::Cap;
use super::state::*;
use super::transaction::TXN_RECORD;
use crate::binder_ipc::protocol::wire::align8;
use crate::binder_ipc::uapi::*;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// Which list the next work item comes from.
enum From {
    Thread,
    Proc,
}

impl State {
    fn has_work(&self, conn: ConnId, proc_work: bool) -> bool {
        let Some(t) = self.threads.get(&conn) else {
            return true;
        };
        t.process_todo
            || t.need_return
            || (proc_work && self.procs.get(&t.proc).is_some_and(|p| !p.todo.is_empty()))
    }

    fn put(&mut self, out: &mut Vec<u8>, cmd: u32) {
        out.extend_from_slice(&cmd.to_ne_bytes());
        if let Some(i) = br_index(cmd) {
            self.stats.br[i] += 1;
        }
    }

    /// Reads for thread `conn`. `None`: nothing to return yet and the call blocks (park it).
    pub fn thread_read(
        &mut self,
        conn: ConnId,
        req: PendingRead,
        nonblock: bool,
    ) -> Option<WriteReadDone> {
        let proc = self.threads.get(&conn)?.proc;
        // Both came from the client: any value, so no arithmetic on them may overflow.
        let rc_in = usize::try_from(req.read_consumed).unwrap_or(usize::MAX);
        let room = usize::try_from(req.read_size)
            .unwrap_or(usize::MAX)
            .saturating_sub(rc_in);
        let mut out = Vec::new();
        let mut fixups: Vec<(u64, OwnedFd)> = Vec::new();
        if rc_in == 0 {
            self.put(&mut out, BR_NOOP);
        }
        'retry: loop {
            let Some(t) = self.threads.get(&conn) else {
                debug_assert!(false, "read of unknown thread {conn}");
                return None;
            };
            let proc_work = State::available_for_proc_work(t);
            if proc_work && t.looper & (LOOPER_REGISTERED | LOOPER_ENTERED) == 0 {
                // "Thread waiting for process work before calling BC_REGISTER_LOOPER or
                // BC_ENTER_LOOPER": logged, then served anyway.
                self.user_error();
            }
            if !self.has_work(conn, proc_work) {
                if nonblock {
                    return Some(WriteReadDone {
                        errno: Errno::EAGAIN as i32,
                        write_consumed: req.write_consumed,
                        read_consumed: req.read_consumed,
                        ..Default::default()
                    });
                }
                return None;
            }
            loop {
                let t = self.threads.get(&conn)?;
                let from = if !t.todo.is_empty() {
                    From::Thread
                } else if proc_work && self.procs.get(&proc).is_some_and(|p| !p.todo.is_empty()) {
                    From::Proc
                } else {
                    if rc_in.saturating_add(out.len()) == 4 && !t.need_return {
                        continue 'retry;
                    }
                    break 'retry;
                };
                if room.saturating_sub(out.len()) < TXN_RECORD {
                    break 'retry;
                }
                let w = self.pop_work(conn, proc, from)?;
                if self.read_work(conn, proc, w, &mut out, &mut fixups) {
                    break 'retry;
                }
            }
        }
        if rc_in == 0 {
            self.maybe_spawn_looper(conn, proc, &mut out);
        }
        let close = self
            .threads
            .get_mut(&conn)
            .map(|t| std::mem::take(&mut t.close_fds))
            .unwrap_or_default();
        Some(WriteReadDone {
            errno: 0,
            write_consumed: req.write_consumed,
            read_consumed: req.read_consumed.saturating_add(out.len() as u64),
            read: out,
            fixups,
            close,
        })
    }

    /// Takes the next work item from the thread's list or its process's.
    fn pop_work(&mut self, conn: ConnId, proc: ProcId, from: From) -> Option<Work> {
        match from {
            From::Thread => {
                let t = self.threads.get_mut(&conn)?;
                let w = t.todo.pop_front()?;
                if t.todo.is_empty() {
                    t.process_todo = false;
                }
                Some(w)
            }
            From::Proc => self.procs.get_mut(&proc)?.todo.pop_front(),
        }
    }

    /// Writes one work item's BR_ commands; true when the read must return now (a
    /// transaction, or a dead binder that may make the process call out).
    fn read_work(
        &mut self,
        conn: ConnId,
        proc: ProcId,
        w: Work,
        out: &mut Vec<u8>,
        fixups: &mut Vec<(u64, OwnedFd)>,
    ) -> bool {
        match w {
            Work::Complete => self.put(out, BR_TRANSACTION_COMPLETE),
            Work::SpamSuspect => {
                // The sender's own setting decides what it hears.
                let on = self.procs.get(&proc).is_some_and(|p| p.spam_detection);
                let cmd = if on {
                    BR_ONEWAY_SPAM_SUSPECT
                } else {
                    BR_TRANSACTION_COMPLETE
                };
                self.put(out, cmd);
            }
            Work::ReturnError | Work::ReplyError => self.read_error(conn, w, out),
            Work::Node(n) => self.read_node(n, out),
            Work::Death(d) => return self.read_death(proc, d, out),
            Work::Txn(id) => return self.read_txn(conn, proc, id, out, fixups),
        }
        false
    }

    /// The thread's `return_error` or `reply_error`.
    fn read_error(&mut self, conn: ConnId, w: Work, out: &mut Vec<u8>) {
        let Some(t) = self.threads.get_mut(&conn) else {
            debug_assert!(false, "read of unknown thread {conn}");
            return;
        };
        let e = if w == Work::ReturnError {
            t.return_error.take()
        } else {
            t.reply_error.take()
        };
        let param = t.return_error_param;
        if let Some(cmd) = e {
            self.put(out, cmd);
            if cmd == BR_ERROR {
                // The payload the command's size promises (see ARCHITECTURE.md: the kernel
                // writes the code alone).
                out.extend_from_slice(&param.to_ne_bytes());
            }
        }
    }

    /// BR_SPAWN_LOOPER in place of the leading BR_NOOP, when the process should start
    /// another looper.
    fn maybe_spawn_looper(&mut self, conn: ConnId, proc: ProcId, out: &mut [u8]) {
        let spawn = match (self.threads.get(&conn), self.procs.get(&proc)) {
            (Some(t), Some(p)) => {
                p.requested_threads == 0
                    && self.waiting_thread(proc).is_none()
                    && p.requested_threads_started < p.max_threads
                    && t.looper & (LOOPER_REGISTERED | LOOPER_ENTERED) != 0
            }
            _ => false,
        };
        if !spawn || out.len() < 4 {
            return;
        }
        if let Some(p) = self.procs.get_mut(&proc) {
            p.requested_threads += 1;
        }
        out[..4].copy_from_slice(&BR_SPAWN_LOOPER.to_ne_bytes());
        self.stats.br[(BR_NOOP & 0x1f) as usize] -= 1;
        self.stats.br[(BR_SPAWN_LOOPER & 0x1f) as usize] += 1;
    }

    /// A node's work item: tell the owner what refs to hold (BINDER_WORK_NODE).
    fn read_node(&mut self, n: NodeId, out: &mut Vec<u8>) {
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        node.work = None;
        let strong = node.internal_strong_refs > 0 || node.local_strong_refs > 0;
        let weak = !node.refs.is_empty() || node.local_weak_refs > 0 || node.tmp_refs > 0 || strong;
        let (has_weak, has_strong) = (node.has_weak_ref, node.has_strong_ref);
        let (ptr, cookie) = (node.ptr, node.cookie);
        if weak && !has_weak {
            node.has_weak_ref = true;
            node.pending_weak_ref = true;
            node.local_weak_refs += 1;
        }
        if strong && !has_strong {
            node.has_strong_ref = true;
            node.pending_strong_ref = true;
            node.local_strong_refs += 1;
        }
        if !strong && has_strong {
            node.has_strong_ref = false;
        }
        if !weak && has_weak {
            node.has_weak_ref = false;
        }
        if !weak && !strong {
            if let Some(owner) = node.owner {
                if let Some(p) = self.procs.get_mut(&owner) {
                    if p.nodes.remove(&ptr).is_some() {
                        self.uid_usage.uncharge(p.euid, Cap::Nodes);
                    }
                }
            }
            self.free_node(n);
        }
        let pc = BinderPtrCookie { ptr, cookie };
        let mut emit = |s: &mut State, cmd: u32| {
            s.put(out, cmd);
            out.extend_from_slice(bytemuck::bytes_of(&pc));
        };
        if weak && !has_weak {
            emit(self, BR_INCREFS);
        }
        if strong && !has_strong {
            emit(self, BR_ACQUIRE);
        }
        if !strong && has_strong {
            emit(self, BR_RELEASE);
        }
        if !weak && has_weak {
            emit(self, BR_DECREFS);
        }
    }

    /// A death notification's work item; true when it was BR_DEAD_BINDER.
    fn read_death(&mut self, proc: ProcId, d: DeathId, out: &mut Vec<u8>) -> bool {
        let Some(death) = self.deaths.get_mut(&d) else {
            return false;
        };
        death.queued = None;
        let cookie = death.cookie;
        let kind = death.kind;
        let cmd = if kind == DeathKind::Clear {
            BR_CLEAR_DEATH_NOTIFICATION_DONE
        } else {
            BR_DEAD_BINDER
        };
        self.put(out, cmd);
        out.extend_from_slice(&cookie.to_ne_bytes());
        if kind == DeathKind::Clear {
            self.forget_death(d);
        } else if let Some(p) = self.procs.get_mut(&proc) {
            p.delivered_death.push(d);
        }
        cmd == BR_DEAD_BINDER
    }

    /// Delivers transaction `id` to thread `conn`; true when a record was written.
    fn read_txn(
        &mut self,
        conn: ConnId,
        proc: ProcId,
        id: TxnId,
        out: &mut Vec<u8>,
        fixups: &mut Vec<(u64, OwnedFd)>,
    ) -> bool {
        let Some(t) = self.txns.get_mut(&id) else {
            return false;
        };
        let Some(buf_off) = t.buffer else {
            // Its buffer is gone (the sender died): nothing to deliver.
            self.free_txn(id);
            return false;
        };
        let (code, flags, sender_euid, is_reply) = (t.code, t.flags, t.sender_euid, t.is_reply);
        let sender_pid = if t.from.is_some() { t.sender_pid } else { 0 };
        let (node, sender) = (t.node, t.sender_proc);
        let delivered = t.fds.len();
        fixups.append(&mut t.fds);
        self.uncount_txn_fds(sender, delivered);
        let Some(p) = self.procs.get_mut(&proc) else {
            debug_assert!(false, "missing p in read.rs");
            return false;
        };
        let base = p.area.client_base.wrapping_add(buf_off.0);
        let Some(b) = p.buffers.get_mut(&buf_off) else {
            debug_assert!(false, "missing b in read.rs");
            return false;
        };
        b.allow_user_free = true;
        let (data_size, offsets_size) = (b.data_size, b.offsets_size);
        let (target, cookie) = match node.and_then(|n| self.nodes.get(&n)) {
            Some(n) if !is_reply => (n.ptr, n.cookie),
            _ => (0, 0),
        };
        let tr = BinderTransactionData {
            target,
            cookie,
            code,
            flags,
            sender_pid,
            sender_euid,
            data_size,
            offsets_size,
            data_buffer: base,
            data_offsets: base + align8(data_size),
        };
        let cmd = if is_reply { BR_REPLY } else { BR_TRANSACTION };
        self.put(out, cmd);
        out.extend_from_slice(bytemuck::bytes_of(&tr));
        if !is_reply && flags & TF_ONE_WAY == 0 {
            let parent = self.threads.get(&conn).and_then(|t| t.stack);
            if let Some(t) = self.txns.get_mut(&id) {
                t.to_parent = parent;
                t.to_thread = Some(conn);
            }
            if let Some(t) = self.threads.get_mut(&conn) {
                t.stack = Some(id);
            }
        } else {
            self.free_txn_record(id);
        }
        true
    }
}
