//! Transactions and replies (`binder_transaction`): routing, buffer allocation, object
//! translation and fd hand-off, and failed replies (`binder_send_failed_reply`).

use super::state::*;
use crate::binder_ipc::protocol::object::{self, Object};
use crate::binder_ipc::protocol::wire::{align8, Gathered};
use crate::binder_ipc::uapi::*;
use std::mem::size_of;
use std::os::fd::OwnedFd;

/// Why a transaction failed: the BR_ code for the sender.
type Fail = u32;

impl State {
    /// BC_TRANSACTION / BC_REPLY (and the `_SG` forms) from thread `conn`.
    #[allow(clippy::too_many_arguments)]
    pub fn transaction(
        &mut self,
        conn: ConnId,
        tr: &BinderTransactionData,
        reply: bool,
        extra: u64,
        g: &Gathered,
        body: &[u8],
        fds: Vec<OwnedFd>,
    ) {
        let mut in_reply_to = None;
        match self.transaction_inner(conn, tr, reply, extra, g, body, fds, &mut in_reply_to) {
            Ok(()) => {}
            Err(code) => {
                if let Some(irt) = in_reply_to {
                    // The replier hears "complete"; the caller gets the failure.
                    self.stats.failed_transactions += 1;
                    if let Some(t) = self.threads.get_mut(&conn) {
                        t.return_error = Some(BR_TRANSACTION_COMPLETE);
                    }
                    self.enqueue_thread(conn, Work::ReturnError, true);
                    self.send_failed_reply(irt, code);
                } else {
                    self.return_error(conn, code);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transaction_inner(
        &mut self,
        conn: ConnId,
        tr: &BinderTransactionData,
        reply: bool,
        extra: u64,
        g: &Gathered,
        body: &[u8],
        fds: Vec<OwnedFd>,
        in_reply_to_out: &mut Option<u64>,
    ) -> Result<(), Fail> {
        let proc = self.threads.get(&conn).ok_or(BR_FAILED_REPLY)?.proc;
        let (sender_pid, sender_euid) = self
            .procs
            .get(&proc)
            .map(|p| (p.pid, p.euid))
            .ok_or(BR_FAILED_REPLY)?;
        let oneway = !reply && tr.flags & TF_ONE_WAY != 0;
        let mut target_thread: Option<ConnId> = None;
        let target_proc: u64;
        let mut target_node: Option<u64> = None;

        if reply {
            let irt = self
                .threads
                .get(&conn)
                .and_then(|t| t.stack)
                .ok_or_else(|| {
                    self.stats.user_errors += 1;
                    BR_FAILED_REPLY
                })?;
            let x = self.txns.get(&irt).ok_or(BR_FAILED_REPLY)?;
            if x.to_thread != Some(conn) {
                self.user_error();
                return Err(BR_FAILED_REPLY);
            }
            let to_parent = x.to_parent;
            let from = x.from;
            if let Some(t) = self.threads.get_mut(&conn) {
                t.stack = to_parent;
            }
            *in_reply_to_out = Some(irt);
            let Some(from) = from else {
                return Err(BR_DEAD_REPLY);
            };
            let caller = self.threads.get(&from).ok_or(BR_DEAD_REPLY)?;
            if caller.stack != Some(irt) {
                *in_reply_to_out = None;
                self.user_error();
                return Err(BR_FAILED_REPLY);
            }
            target_thread = Some(from);
            target_proc = caller.proc;
        } else {
            let handle = tr.handle();
            let node = if handle == 0 {
                self.ctx_mgr.ok_or(BR_DEAD_REPLY)?
            } else {
                // `binder_get_ref_olocked(.., need_strong_ref = true)`: a weak ref cannot
                // be called.
                let r = self
                    .procs
                    .get(&proc)
                    .and_then(|p| p.refs.get(&handle))
                    .filter(|r| r.strong > 0)
                    .ok_or_else(|| {
                        self.stats.user_errors += 1;
                        BR_FAILED_REPLY
                    })?;
                r.node
            };
            let owner = self
                .nodes
                .get(&node)
                .and_then(|n| n.owner)
                .ok_or(BR_DEAD_REPLY)?;
            // The kernel compares OS pids here: no binder process of the context manager's
            // own OS process may call it through handle 0.
            let same_pid =
                handle == 0 && self.procs.get(&owner).is_some_and(|p| p.pid == sender_pid);
            if owner == proc || same_pid {
                self.user_error();
                return Err(BR_FAILED_REPLY);
            }
            target_proc = owner;
            target_node = Some(node);
            if !oneway {
                if let Some(top) = self.threads.get(&conn).and_then(|t| t.stack) {
                    let x = self.txns.get(&top).ok_or(BR_FAILED_REPLY)?;
                    if x.to_thread != Some(conn) {
                        self.user_error();
                        return Err(BR_FAILED_REPLY);
                    }
                    // A nested call back into a process already in this chain goes to the
                    // thread of that process that waits in it.
                    let mut cur = Some(top);
                    while let Some(id) = cur {
                        let Some(x) = self.txns.get(&id) else { break };
                        if let Some(f) = x.from {
                            if self.threads.get(&f).is_some_and(|t| t.proc == target_proc) {
                                target_thread = Some(f);
                                break;
                            }
                        }
                        cur = x.from_parent;
                    }
                }
            }
        }
        if !self.procs.get(&target_proc).is_some_and(|p| p.mapped) {
            return Err(BR_DEAD_REPLY);
        }

        // Sizes: what the caller's pointers named must be what it gathered.
        if g.status != 0 {
            return Err(BR_FAILED_REPLY);
        }
        if g.data_len != tr.data_size || g.offsets_len != tr.offsets_size || g.sg_len > extra {
            return Err(BR_FAILED_REPLY);
        }
        if tr.offsets_size % 8 != 0 || extra % 8 != 0 {
            self.user_error();
            return Err(BR_FAILED_REPLY);
        }
        let data_size = tr.data_size;
        let off_start = align8(data_size);
        let off_end = off_start + tr.offsets_size;
        let sg_start = align8(off_end);
        let total = sg_start.checked_add(extra).ok_or(BR_FAILED_REPLY)?;
        let is_async = oneway;
        let tp = self.procs.get_mut(&target_proc).ok_or(BR_DEAD_REPLY)?;
        let buf_off = tp
            .area
            .alloc(total, is_async)
            .map_err(|_| BR_FAILED_REPLY)?;
        let data = &body[..data_size as usize];
        let offs = &body[data_size as usize..(data_size + tr.offsets_size) as usize];
        let sg = &body[(data_size + tr.offsets_size) as usize..];
        {
            let dst = tp
                .area
                .bytes_mut(buf_off, total as usize)
                .ok_or(BR_FAILED_REPLY)?;
            dst.fill(0);
            dst[..data.len()].copy_from_slice(data);
            dst[off_start as usize..off_end as usize].copy_from_slice(offs);
        }
        let accept_fds = if reply {
            in_reply_to_out
                .and_then(|t| self.txns.get(&t))
                .is_some_and(|t| t.flags & TF_ACCEPT_FDS != 0)
        } else {
            target_node
                .and_then(|n| self.nodes.get(&n))
                .is_some_and(|n| n.accept_fds)
        };
        let mut releases = Vec::new();
        let mut fixups: Vec<(u64, OwnedFd)> = Vec::new();
        let mut fda_fds = Vec::new();
        let res = self.translate(
            conn,
            proc,
            target_proc,
            buf_off,
            data,
            offs,
            sg,
            sg_start,
            extra,
            accept_fds,
            fds,
            &mut releases,
            &mut fixups,
            &mut fda_fds,
        );
        if let Err(code) = res {
            if let Some(tp) = self.procs.get_mut(&target_proc) {
                tp.area.free(buf_off, is_async);
            }
            self.apply_releases(target_proc, &releases);
            return Err(code);
        }
        // Judged only for a transaction that goes through: a refused one must not use up the
        // once-per-episode report.
        let spam = is_async && self.oneway_spam(target_proc, sender_pid, total);
        let id = self.new_id();
        self.stats.created[OBJ_TXN] += 1;
        if let Some(tp) = self.procs.get_mut(&target_proc) {
            tp.buffers.insert(
                buf_off,
                Buffer {
                    data_size,
                    offsets_size: tr.offsets_size,
                    is_async,
                    target_node,
                    txn: Some(id),
                    allow_user_free: false,
                    releases,
                    fda_fds,
                    sender_pid,
                },
            );
        }
        self.txns.insert(
            id,
            Txn {
                from: (!reply && !oneway).then_some(conn),
                to_thread: None,
                to_proc: Some(target_proc),
                code: tr.code,
                flags: tr.flags,
                sender_pid,
                sender_euid,
                is_reply: reply,
                node: target_node,
                buffer: Some(buf_off),
                from_parent: None,
                to_parent: None,
                fds: fixups,
            },
        );

        if reply {
            let irt = in_reply_to_out.take().ok_or(BR_FAILED_REPLY)?;
            let to = target_thread.ok_or(BR_DEAD_REPLY)?;
            self.enqueue_thread(conn, Work::Complete, true);
            let from_parent = self.txns.get(&irt).and_then(|x| x.from_parent);
            if let Some(t) = self.threads.get_mut(&to) {
                t.stack = from_parent;
            }
            self.enqueue_thread(to, Work::Txn(id), true);
            self.free_txn_record(irt);
        } else if !oneway {
            let parent = self.threads.get(&conn).and_then(|t| t.stack);
            if let Some(x) = self.txns.get_mut(&id) {
                x.from_parent = parent;
            }
            if let Some(t) = self.threads.get_mut(&conn) {
                t.stack = Some(id);
            }
            // Deferred: the caller sleeps until the reply comes.
            self.enqueue_thread(conn, Work::Complete, false);
            self.proc_transaction(id, target_proc, target_thread, target_node, false);
        } else {
            let w = if spam {
                Work::SpamSuspect
            } else {
                Work::Complete
            };
            self.enqueue_thread(conn, w, true);
            self.proc_transaction(id, target_proc, None, target_node, true);
        }
        Ok(())
    }

    /// Hands transaction `id` to its target (`binder_proc_transaction`).
    fn proc_transaction(
        &mut self,
        id: u64,
        proc: u64,
        thread: Option<ConnId>,
        node: Option<u64>,
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
    fn oneway_spam(&mut self, target_proc: u64, sender_pid: i32, size: u64) -> bool {
        let Some(tp) = self.procs.get_mut(&target_proc) else {
            return false;
        };
        let total = tp.area.size() as u64;
        if tp.area.free_async_space >= total / 10 {
            tp.area.spam_detected = false;
            return false;
        }
        let (mut n, mut bytes) = (1u64, align8(size).max(8));
        for (off, _) in tp
            .buffers
            .iter()
            .filter(|(_, b)| b.is_async && b.sender_pid == sender_pid)
        {
            n += 1;
            bytes += tp.area.len_of(*off).unwrap_or(0);
        }
        if (n > 50 || bytes > total / 4) && !tp.area.spam_detected {
            tp.area.spam_detected = true;
            return true;
        }
        false
    }

    /// Translates the objects of a new buffer into the target's terms, writing them into the
    /// target's area. Records what the buffer holds in `releases`.
    #[allow(clippy::too_many_arguments)]
    fn translate(
        &mut self,
        conn: ConnId,
        proc: u64,
        target_proc: u64,
        buf_off: u64,
        data: &[u8],
        offs: &[u8],
        sg: &[u8],
        sg_start: u64,
        extra: u64,
        accept_fds: bool,
        fds: Vec<OwnedFd>,
        releases: &mut Vec<Release>,
        fixups: &mut Vec<(u64, OwnedFd)>,
        fda_fds: &mut Vec<u64>,
    ) -> Result<(), Fail> {
        let mut fds = fds.into_iter();
        let mut off_min = 0u64;
        let mut sg_used = 0u64;
        let sg_end = sg_start + extra;
        // PTR objects so far, and the kernel's fixup order state (`last_fixup_obj_off`, 0
        // meaning none, and `last_fixup_min_off`).
        let mut ptrs: Vec<PtrSeen> = Vec::new();
        let (mut last_fixup_obj, mut last_fixup_min) = (0u64, 0u64);
        let client_base = self
            .procs
            .get(&target_proc)
            .map(|p| p.area.client_base)
            .ok_or(BR_DEAD_REPLY)?;
        for (idx, off) in object::offsets(offs).enumerate() {
            let obj = object::object_at(data, off).ok_or_else(|| {
                self.stats.user_errors += 1;
                BR_FAILED_REPLY
            })?;
            if off < off_min {
                self.user_error();
                return Err(BR_FAILED_REPLY);
            }
            off_min = off + obj.size() as u64;
            let out: Vec<u8> = match obj {
                Object::Binder(fbo) => self
                    .translate_binder(conn, proc, target_proc, fbo, releases)?
                    .to_vec(),
                Object::Fd(mut fo) => {
                    if !accept_fds {
                        return Err(BR_FAILED_REPLY);
                    }
                    let file = fds.next().ok_or(BR_FAILED_REPLY)?;
                    fixups.push((buf_off + off + 8, file));
                    fo.pad_binder = 0;
                    bytemuck::bytes_of(&fo).to_vec()
                }
                Object::Ptr(mut bo) => {
                    let len = align8(bo.length);
                    let src = sg
                        .get(sg_used as usize..(sg_used + len) as usize)
                        .ok_or(BR_FAILED_REPLY)?;
                    let at = sg_start + sg_used;
                    if at + len > sg_end {
                        return Err(BR_FAILED_REPLY);
                    }
                    let area = &mut self.procs.get_mut(&target_proc).ok_or(BR_DEAD_REPLY)?.area;
                    area.bytes_mut(buf_off + at, len as usize)
                        .ok_or(BR_FAILED_REPLY)?
                        .copy_from_slice(src);
                    sg_used += len;
                    bo.buffer = client_base + buf_off + at;
                    if bo.flags & BINDER_BUFFER_FLAG_HAS_PARENT != 0 {
                        let parent = *ptrs
                            .iter()
                            .find(|p| p.index == bo.parent)
                            .ok_or(BR_FAILED_REPLY)?;
                        if !validate_fixup(
                            &ptrs,
                            parent.data_off,
                            bo.parent_offset,
                            last_fixup_obj,
                            last_fixup_min,
                        ) || parent.obj.length < 8
                            || bo.parent_offset > parent.obj.length - 8
                        {
                            return Err(BR_FAILED_REPLY);
                        }
                        let fix = area
                            .bytes_mut(buf_off + parent.at + bo.parent_offset, 8)
                            .ok_or(BR_FAILED_REPLY)?;
                        fix.copy_from_slice(&bo.buffer.to_ne_bytes());
                    }
                    last_fixup_obj = off;
                    last_fixup_min = 0;
                    ptrs.push(PtrSeen {
                        index: idx as u64,
                        data_off: off,
                        at,
                        obj: bo,
                    });
                    bytemuck::bytes_of(&bo).to_vec()
                }
                Object::Fda(fa) => {
                    if !accept_fds {
                        return Err(BR_FAILED_REPLY);
                    }
                    let parent = *ptrs
                        .iter()
                        .find(|p| p.index == fa.parent)
                        .ok_or(BR_FAILED_REPLY)?;
                    if !validate_fixup(
                        &ptrs,
                        parent.data_off,
                        fa.parent_offset,
                        last_fixup_obj,
                        last_fixup_min,
                    ) {
                        return Err(BR_FAILED_REPLY);
                    }
                    let (p_at, p_len) = (parent.at, parent.obj.length);
                    let bytes = fa.num_fds.checked_mul(4).ok_or(BR_FAILED_REPLY)?;
                    if fa.parent_offset % 4 != 0
                        || fa
                            .parent_offset
                            .checked_add(bytes)
                            .is_none_or(|e| e > p_len)
                    {
                        return Err(BR_FAILED_REPLY);
                    }
                    for k in 0..fa.num_fds {
                        let file = fds.next().ok_or(BR_FAILED_REPLY)?;
                        let pos = buf_off + p_at + fa.parent_offset + k * 4;
                        fixups.push((pos, file));
                        fda_fds.push(pos);
                    }
                    last_fixup_obj = parent.data_off;
                    last_fixup_min = fa.parent_offset + bytes;
                    bytemuck::bytes_of(&fa).to_vec()
                }
            };
            let area = &mut self.procs.get_mut(&target_proc).ok_or(BR_DEAD_REPLY)?.area;
            area.bytes_mut(buf_off + off, out.len())
                .ok_or(BR_FAILED_REPLY)?
                .copy_from_slice(&out);
        }
        Ok(())
    }

    /// BINDER/WEAK_BINDER and HANDLE/WEAK_HANDLE objects (`binder_translate_binder`,
    /// `binder_translate_handle`).
    fn translate_binder(
        &mut self,
        conn: ConnId,
        proc: u64,
        target_proc: u64,
        mut fbo: FlatBinderObject,
        releases: &mut Vec<Release>,
    ) -> Result<[u8; 24], Fail> {
        let ty = fbo.hdr.type_;
        let strong = ty == BINDER_TYPE_BINDER || ty == BINDER_TYPE_HANDLE;
        if ty == BINDER_TYPE_BINDER || ty == BINDER_TYPE_WEAK_BINDER {
            let existing = self
                .procs
                .get(&proc)
                .and_then(|p| p.nodes.get(&fbo.binder).copied());
            let node = match existing {
                Some(n) => n,
                None => self.new_node(proc, fbo.binder, fbo.cookie, fbo.flags),
            };
            if self
                .nodes
                .get(&node)
                .is_some_and(|n| n.cookie != fbo.cookie)
            {
                self.user_error();
                return Err(BR_FAILED_REPLY);
            }
            let desc = self
                .inc_ref_for_node(target_proc, node, strong, Some(conn))
                .map_err(|_| BR_FAILED_REPLY)?;
            releases.push(Release::Ref { node, strong });
            fbo.hdr.type_ = if strong {
                BINDER_TYPE_HANDLE
            } else {
                BINDER_TYPE_WEAK_HANDLE
            };
            fbo.binder = desc as u64;
            fbo.cookie = 0;
        } else {
            let handle = fbo.handle();
            let Some(r) = self
                .procs
                .get(&proc)
                .and_then(|p| p.refs.get(&handle))
                .copied()
                // A strong HANDLE object needs a strong ref.
                .filter(|r| !strong || r.strong > 0)
            else {
                self.user_error();
                return Err(BR_FAILED_REPLY);
            };
            let node = self.nodes.get(&r.node).ok_or(BR_FAILED_REPLY)?;
            if node.owner == Some(target_proc) {
                fbo.hdr.type_ = if strong {
                    BINDER_TYPE_BINDER
                } else {
                    BINDER_TYPE_WEAK_BINDER
                };
                fbo.binder = node.ptr;
                fbo.cookie = node.cookie;
                self.inc_node(r.node, strong, false, None)
                    .map_err(|_| BR_FAILED_REPLY)?;
                releases.push(Release::Node {
                    node: r.node,
                    strong,
                });
            } else {
                let desc = self
                    .inc_ref_for_node(target_proc, r.node, strong, None)
                    .map_err(|_| BR_FAILED_REPLY)?;
                releases.push(Release::Ref {
                    node: r.node,
                    strong,
                });
                fbo.binder = desc as u64;
                fbo.cookie = 0;
            }
        }
        let mut out = [0u8; 24];
        out.copy_from_slice(bytemuck::bytes_of(&fbo));
        Ok(out)
    }

    /// Forgets a finished transaction record, leaving its buffer to its owner.
    pub fn free_txn_record(&mut self, id: u64) {
        if let Some(t) = self.txns.remove(&id) {
            self.stats.deleted[OBJ_TXN] += 1;
            if let (Some(off), Some(p)) = (t.buffer, t.to_proc) {
                if let Some(b) = self.procs.get_mut(&p).and_then(|p| p.buffers.get_mut(&off)) {
                    b.txn = None;
                }
            }
        }
    }

    /// The call `t` will get no reply: its caller (or the first live caller down the chain)
    /// gets `code` (`binder_send_failed_reply`).
    pub fn send_failed_reply(&mut self, mut t: u64, code: u32) {
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
}

/// A PTR object met while translating.
#[derive(Clone, Copy)]
struct PtrSeen {
    /// Its index in the offsets array.
    index: u64,
    /// Its offset in the data.
    data_off: u64,
    /// Where its buffer landed, from the start of the transaction buffer.
    at: u64,
    /// The object.
    obj: BinderBufferObject,
}

/// The kernel's `binder_validate_fixup`: a fixup at `fixup_offset` inside the buffer of the
/// PTR object at data offset `parent_data_off` is allowed only in order — into the buffer
/// last fixed up or one of its ancestors, at or past the last fixed-up position. Like the
/// kernel, "no fixup yet" is data offset 0, so a parent at offset 0 takes no fixups.
fn validate_fixup(
    ptrs: &[PtrSeen],
    parent_data_off: u64,
    fixup_offset: u64,
    last_obj: u64,
    last_min: u64,
) -> bool {
    if last_obj == 0 {
        return false;
    }
    let (mut last, mut min) = (last_obj, last_min);
    while last != parent_data_off {
        let Some(p) = ptrs.iter().find(|p| p.data_off == last) else {
            return false;
        };
        if p.obj.flags & BINDER_BUFFER_FLAG_HAS_PARENT == 0 {
            return false;
        }
        min = p.obj.parent_offset + 8;
        let Some(parent) = ptrs.iter().find(|q| q.index == p.obj.parent) else {
            return false;
        };
        last = parent.data_off;
    }
    fixup_offset >= min
}

/// Room a read needs before the kernel delivers a transaction: command + the secctx form
/// of the transaction data (the kernel sizes its check for the larger record).
pub const TXN_RECORD: usize = 4 + size_of::<BinderTransactionDataSecctx>();
