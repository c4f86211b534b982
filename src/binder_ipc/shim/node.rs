//! Nodes, refs and death notifications: the kernel's reference counting
//! (`binder_inc_node_nilocked`, `binder_dec_node_nilocked`, `binder_inc_ref_for_node`,
//! `binder_dec_ref_olocked`) and the death commands.

use super::limits::Cap;
use super::state::*;
use crate::binder_ipc::uapi::*;
use nix::errno::Errno;
use std::collections::{BTreeSet, VecDeque};

impl State {
    /// Creates a node owned by `proc` (`binder_new_node`).
    pub fn new_node(&mut self, proc: ProcId, ptr: u64, cookie: u64, flags: u32) -> NodeId {
        let id = NodeId(self.new_id());
        self.stats.created[OBJ_NODE] += 1;
        self.nodes.insert(
            id,
            Node {
                owner: Some(proc),
                ptr,
                cookie,
                accept_fds: flags & FLAT_BINDER_FLAG_ACCEPTS_FDS != 0,
                min_priority: flags & FLAT_BINDER_FLAG_PRIORITY_MASK,
                internal_strong_refs: 0,
                local_strong_refs: 0,
                local_weak_refs: 0,
                tmp_refs: 0,
                has_strong_ref: false,
                pending_strong_ref: false,
                has_weak_ref: false,
                pending_weak_ref: false,
                refs: BTreeSet::new(),
                has_async: false,
                async_todo: VecDeque::new(),
                work: None,
            },
        );
        if let Some(p) = self.procs.get_mut(&proc) {
            if p.nodes.insert(ptr, id).is_none() {
                self.uid_usage.charge(p.euid, Cap::Nodes);
            }
        }
        id
    }

    /// Takes a ref on node `n`; `target` = the thread whose todo gets the owner's
    /// BR_INCREFS/BR_ACQUIRE (the sending thread, during a transaction).
    pub fn inc_node(
        &mut self,
        n: NodeId,
        strong: bool,
        internal: bool,
        target: Option<ConnId>,
    ) -> Result<(), Errno> {
        let is_ctx = self.ctx_mgr == Some(n);
        let Some(node) = self.nodes.get_mut(&n) else {
            return Err(Errno::EINVAL);
        };
        if strong {
            if internal {
                if target.is_none()
                    && node.internal_strong_refs == 0
                    && !(node.owner.is_some() && is_ctx && node.has_strong_ref)
                {
                    return Err(Errno::EINVAL);
                }
                node.internal_strong_refs += 1;
            } else {
                node.local_strong_refs += 1;
            }
            if !node.has_strong_ref {
                if let Some(c) = target {
                    if let Some(loc) = node.work.take() {
                        self.dequeue_at(loc, Work::Node(n));
                    }
                    if let Some(node) = self.nodes.get_mut(&n) {
                        node.work = Some(Loc::Thread(c));
                    }
                    // Deferred: it rides along with the thread's next read.
                    self.enqueue_thread(c, Work::Node(n), false);
                }
            }
        } else {
            if !internal {
                node.local_weak_refs += 1;
            }
            if !node.has_weak_ref && node.work.is_none() {
                let Some(c) = target else {
                    return Err(Errno::EINVAL);
                };
                node.work = Some(Loc::Thread(c));
                self.enqueue_thread(c, Work::Node(n), false);
            }
        }
        Ok(())
    }

    /// Drops a ref on node `n`; frees the node when nothing holds it
    /// (`binder_dec_node_nilocked`).
    pub fn dec_node(&mut self, n: NodeId, strong: bool, internal: bool) {
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        if strong {
            if internal {
                node.internal_strong_refs = node.internal_strong_refs.saturating_sub(1);
            } else {
                node.local_strong_refs = node.local_strong_refs.saturating_sub(1);
            }
            if node.local_strong_refs > 0 || node.internal_strong_refs > 0 {
                return;
            }
        } else {
            if !internal {
                node.local_weak_refs = node.local_weak_refs.saturating_sub(1);
            }
            if node.local_weak_refs > 0 || node.tmp_refs > 0 || !node.refs.is_empty() {
                return;
            }
        }
        match node.owner {
            Some(owner) if node.has_strong_ref || node.has_weak_ref => {
                if node.work.is_none() {
                    node.work = Some(Loc::Proc(owner));
                    self.enqueue_proc(owner, Work::Node(n));
                }
            }
            owner => {
                if node.refs.is_empty()
                    && node.local_strong_refs == 0
                    && node.local_weak_refs == 0
                    && node.tmp_refs == 0
                {
                    let (ptr, work) = (node.ptr, node.work.take());
                    if let Some(owner) = owner {
                        if let Some(loc) = work {
                            self.dequeue_at(loc, Work::Node(n));
                        }
                        if let Some(p) = self.procs.get_mut(&owner) {
                            if p.nodes.remove(&ptr).is_some() {
                                self.uid_usage.uncharge(p.euid, Cap::Nodes);
                            }
                        }
                    }
                    self.free_node(n);
                }
            }
        }
    }

    pub(super) fn free_node(&mut self, n: NodeId) {
        if self.nodes.remove(&n).is_some() {
            self.stats.deleted[OBJ_NODE] += 1;
        }
        if self.ctx_mgr == Some(n) {
            self.ctx_mgr = None;
        }
    }

    /// The handle `proc` holds for node `n`, created if missing (smallest free handle from 1;
    /// 0 for the context manager), with one more strong or weak count
    /// (`binder_inc_ref_for_node`).
    pub fn inc_ref_for_node(
        &mut self,
        proc: ProcId,
        n: NodeId,
        strong: bool,
        target: Option<ConnId>,
    ) -> Result<Handle, Errno> {
        let existing = self
            .procs
            .get(&proc)
            .ok_or(Errno::EINVAL)?
            .refs_by_node
            .get(&n)
            .copied();
        let desc = match existing {
            Some(d) => d,
            None => {
                if !self.has_room(proc, Cap::Refs) {
                    // The kernel's answer when it cannot allocate a ref.
                    return Err(Errno::ENOMEM);
                }
                let p = self.procs.get(&proc).ok_or(Errno::EINVAL)?;
                // The smallest free handle (refs are capped far below u32::MAX).
                let mut desc = Handle(if self.ctx_mgr == Some(n) { 0 } else { 1 });
                for &used in p.refs.range(desc..).map(|(k, _)| k) {
                    if used == desc {
                        desc.0 += 1;
                    } else {
                        break;
                    }
                }
                let p = self.procs.get_mut(&proc).ok_or(Errno::EINVAL)?;
                p.refs.insert(
                    desc,
                    Ref {
                        node: n,
                        strong: 0,
                        weak: 0,
                        death: None,
                    },
                );
                p.refs_by_node.insert(n, desc);
                self.uid_usage.charge(p.euid, Cap::Refs);
                self.stats.created[OBJ_REF] += 1;
                if let Some(node) = self.nodes.get_mut(&n) {
                    node.refs.insert(proc);
                }
                desc
            }
        };
        self.inc_ref(proc, desc, strong, target)?;
        Ok(desc)
    }

    /// One more count on ref `desc` (`binder_inc_ref_olocked`).
    fn inc_ref(
        &mut self,
        proc: ProcId,
        desc: Handle,
        strong: bool,
        target: Option<ConnId>,
    ) -> Result<(), Errno> {
        let r = *self
            .procs
            .get(&proc)
            .and_then(|p| p.refs.get(&desc))
            .ok_or(Errno::EINVAL)?;
        // A client can send BC_ACQUIRE / BC_INCREFS as often as it likes: a count at its
        // maximum takes no more (the kernel's int would overflow).
        if (if strong { r.strong } else { r.weak }) == u32::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if strong {
            if r.strong == 0 {
                self.inc_node(r.node, true, true, target)?;
            }
        } else if r.weak == 0 {
            self.inc_node(r.node, false, true, target)?;
        }
        if let Some(r) = self
            .procs
            .get_mut(&proc)
            .and_then(|p| p.refs.get_mut(&desc))
        {
            if strong {
                r.strong += 1;
            } else {
                r.weak += 1;
            }
        }
        Ok(())
    }

    /// One less count on ref `desc`; deletes it when both reach 0
    /// (`binder_dec_ref_olocked`). A count already at 0 is a user error.
    pub fn dec_ref(&mut self, proc: ProcId, desc: Handle, strong: bool) -> bool {
        let Some(r) = self
            .procs
            .get_mut(&proc)
            .and_then(|p| p.refs.get_mut(&desc))
        else {
            self.user_error();
            return false;
        };
        let node = r.node;
        if strong {
            if r.strong == 0 {
                self.user_error();
                return false;
            }
            r.strong -= 1;
            if r.strong == 0 {
                self.dec_node(node, true, true);
            }
        } else {
            if r.weak == 0 {
                self.user_error();
                return false;
            }
            r.weak -= 1;
        }
        let r = self
            .procs
            .get(&proc)
            .and_then(|p| p.refs.get(&desc))
            .copied();
        if r.is_some_and(|r| r.strong == 0 && r.weak == 0) {
            self.delete_ref(proc, desc);
        }
        true
    }

    /// Removes ref `desc` of `proc` and what hangs on it (`binder_cleanup_ref_olocked` and
    /// `binder_free_ref`).
    pub fn delete_ref(&mut self, proc: ProcId, desc: Handle) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some(r) = p.refs.remove(&desc) else {
            return;
        };
        p.refs_by_node.remove(&r.node);
        self.uid_usage.uncharge(p.euid, Cap::Refs);
        self.stats.deleted[OBJ_REF] += 1;
        if let Some(node) = self.nodes.get_mut(&r.node) {
            node.refs.remove(&proc);
        }
        if r.strong > 0 {
            self.dec_node(r.node, true, true);
        }
        self.dec_node(r.node, false, true);
        if let Some(d) = r.death {
            if let Some(death) = self.deaths.get(&d).copied() {
                if let Some(loc) = death.queued {
                    self.dequeue_at(loc, Work::Death(d));
                }
                if let Some(p) = self.procs.get_mut(&proc) {
                    p.delivered_death.retain(|x| *x != d);
                }
                self.forget_death(d);
            }
        }
    }

    /// BC_INCREFS / BC_ACQUIRE / BC_RELEASE / BC_DECREFS on a handle.
    pub fn bc_refcount(&mut self, conn: ConnId, cmd: u32, handle: Handle) -> Result<(), Errno> {
        let Some(proc) = self.threads.get(&conn).map(|t| t.proc) else {
            debug_assert!(false, "missing proc in node.rs");
            return Ok(());
        };
        let strong = cmd == BC_ACQUIRE || cmd == BC_RELEASE;
        let increment = cmd == BC_INCREFS || cmd == BC_ACQUIRE;
        let has_ref = self
            .procs
            .get(&proc)
            .is_some_and(|p| p.refs.contains_key(&handle));
        if increment && handle == Handle(0) && !has_ref {
            if let Some(ctx) = self.ctx_mgr {
                if self.nodes.get(&ctx).and_then(|n| n.owner) == Some(proc) {
                    // "context manager tried to acquire desc 0": the call fails.
                    self.user_error();
                    return Err(Errno::EINVAL);
                }
                if self.inc_ref_for_node(proc, ctx, strong, None).is_err() {
                    self.user_error();
                }
                return Ok(());
            }
        }
        let ok = if increment {
            has_ref && self.inc_ref(proc, handle, strong, None).is_ok()
        } else {
            self.dec_ref(proc, handle, strong)
        };
        if !ok && increment {
            self.user_error();
        }
        Ok(())
    }

    /// BC_INCREFS_DONE / BC_ACQUIRE_DONE: the owner finished the handshake.
    pub fn bc_refcount_done(&mut self, conn: ConnId, strong: bool, pc: BinderPtrCookie) {
        let Some(proc) = self.threads.get(&conn).map(|t| t.proc) else {
            debug_assert!(false, "missing proc in node.rs");
            return;
        };
        let Some(&n) = self.procs.get(&proc).and_then(|p| p.nodes.get(&pc.ptr)) else {
            self.user_error();
            return;
        };
        let Some(node) = self.nodes.get_mut(&n) else {
            debug_assert!(false, "missing node in node.rs");
            return;
        };
        if node.cookie != pc.cookie {
            self.user_error();
            return;
        }
        let pending = if strong {
            &mut node.pending_strong_ref
        } else {
            &mut node.pending_weak_ref
        };
        if !*pending {
            self.user_error();
            return;
        }
        *pending = false;
        self.dec_node(n, strong, false);
    }

    /// Queues death notification `d` as `kind`: to the calling thread when it is a looper,
    /// else to its process (the kernel's choice in the death commands).
    fn queue_death(
        &mut self,
        d: DeathId,
        kind: DeathKind,
        conn: ConnId,
        proc: ProcId,
        looper: u32,
    ) {
        let loc = if looper & (LOOPER_REGISTERED | LOOPER_ENTERED) != 0 {
            Loc::Thread(conn)
        } else {
            Loc::Proc(proc)
        };
        if let Some(death) = self.deaths.get_mut(&d) {
            death.kind = kind;
            death.queued = Some(loc);
        }
        self.enqueue_at(loc, Work::Death(d));
    }

    /// BC_REQUEST_DEATH_NOTIFICATION. On a node already dead, BR_DEAD_BINDER is queued on
    /// the process (the kernel's rule for the request, unlike the clear's), so a thread in the
    /// middle of a call hears it only after its reply, or another looper takes it.
    pub fn bc_request_death(&mut self, conn: ConnId, handle: Handle, cookie: u64) {
        let Some(proc) = self.threads.get(&conn).map(|t| t.proc) else {
            debug_assert!(false, "death request from unknown thread {conn}");
            return;
        };
        let Some(r) = self
            .procs
            .get(&proc)
            .and_then(|p| p.refs.get(&handle))
            .copied()
        else {
            self.user_error();
            return;
        };
        if r.death.is_some() {
            self.user_error();
            return;
        }
        if !self.has_room(proc, Cap::Deaths) {
            // The kernel's answer when it cannot allocate a death: BR_ERROR on the thread.
            self.return_error_code(conn, BR_ERROR, -(Errno::ENOMEM as i32));
            return;
        }
        let d = DeathId(self.new_id());
        self.stats.created[OBJ_DEATH] += 1;
        self.deaths.insert(
            d,
            Death {
                owner: proc,
                cookie,
                kind: DeathKind::Armed,
                queued: None,
            },
        );
        if let Some(p) = self.procs.get_mut(&proc) {
            p.deaths += 1;
            self.uid_usage.charge(p.euid, Cap::Deaths);
            if let Some(r) = p.refs.get_mut(&handle) {
                r.death = Some(d);
            }
        }
        let owner_dead = self.nodes.get(&r.node).is_none_or(|n| n.owner.is_none());
        if owner_dead {
            if let Some(death) = self.deaths.get_mut(&d) {
                death.kind = DeathKind::DeadBinder;
                death.queued = Some(Loc::Proc(proc));
            }
            self.enqueue_proc(proc, Work::Death(d));
        }
    }

    /// BC_CLEAR_DEATH_NOTIFICATION.
    pub fn bc_clear_death(&mut self, conn: ConnId, handle: Handle, cookie: u64) {
        let Some((proc, looper)) = self.threads.get(&conn).map(|t| (t.proc, t.looper)) else {
            debug_assert!(false, "missing proc, looper in node.rs");
            return;
        };
        let Some(r) = self
            .procs
            .get(&proc)
            .and_then(|p| p.refs.get(&handle))
            .copied()
        else {
            self.user_error();
            return;
        };
        let Some(d) = r.death else {
            self.user_error();
            return;
        };
        let Some(death) = self.deaths.get(&d).copied() else {
            debug_assert!(false, "missing death in node.rs");
            return;
        };
        if death.cookie != cookie {
            self.user_error();
            return;
        }
        if let Some(r) = self
            .procs
            .get_mut(&proc)
            .and_then(|p| p.refs.get_mut(&handle))
        {
            r.death = None;
        }
        let delivered = self
            .procs
            .get(&proc)
            .is_some_and(|p| p.delivered_death.contains(&d));
        if death.queued.is_none() && !delivered {
            self.queue_death(d, DeathKind::Clear, conn, proc, looper);
        } else if let Some(death) = self.deaths.get_mut(&d) {
            // Dead already: BR_DEAD_BINDER first (or done), the clear after
            // BC_DEAD_BINDER_DONE.
            death.kind = DeathKind::DeadBinderAndClear;
        }
    }

    /// BC_DEAD_BINDER_DONE.
    pub fn bc_dead_binder_done(&mut self, conn: ConnId, cookie: u64) {
        let Some((proc, looper)) = self.threads.get(&conn).map(|t| (t.proc, t.looper)) else {
            debug_assert!(false, "missing proc, looper in node.rs");
            return;
        };
        let Some(p) = self.procs.get_mut(&proc) else {
            debug_assert!(false, "missing p in node.rs");
            return;
        };
        let found = p
            .delivered_death
            .iter()
            .position(|d| self.deaths.get(d).is_some_and(|x| x.cookie == cookie));
        let Some(i) = found else {
            self.user_error();
            return;
        };
        let d = p.delivered_death.remove(i);
        if self
            .deaths
            .get(&d)
            .is_some_and(|x| x.kind == DeathKind::DeadBinderAndClear)
        {
            self.queue_death(d, DeathKind::Clear, conn, proc, looper);
        }
    }
}
