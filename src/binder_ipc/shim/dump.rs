//! The state dump: the kernel's binder debugfs `state` and `stats`, in the same spirit.

use super::limits::{CAPS, CAP_NAMES};
use super::state::*;
use crate::binder_ipc::uapi::command_name;
use std::fmt::Write;

const OBJ_NAMES: [&str; 6] = ["proc", "thread", "node", "ref", "death", "transaction"];

/// Renders the whole state.
pub fn dump(s: &State) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "binder state:");
    if let Some(n) = s.ctx_mgr {
        let _ = writeln!(o, "context manager: node {n}");
    }
    let mut procs: Vec<_> = s.procs.iter().collect();
    procs.sort_by_key(|(id, _)| **id);
    for (id, p) in procs {
        dump_proc(&mut o, s, *id, p);
    }
    dump_stats(&mut o, s);
    o
}

/// One process: its area, threads, nodes, refs, buffers and what it holds against its caps.
fn dump_proc(o: &mut String, s: &State, id: ProcId, p: &Proc) {
    let _ = writeln!(o, "proc {} id {id} uid {}", p.pid, p.euid);
    let _ = writeln!(
        o,
        "  area {} bytes, {} buffers, {} bytes allocated, {} free for oneway; max_threads {} requested {} started {}",
        p.area.size(),
        p.area.buffers(),
        p.area.allocated(),
        p.area.free_async_space,
        p.max_threads,
        p.requested_threads,
        p.requested_threads_started
    );
    for c in &p.threads {
        if let Some(t) = s.threads.get(c) {
            let _ = writeln!(
                o,
                "  thread {c}: l {:02x} need_return {} tr {} todo {} {}",
                t.looper,
                t.need_return as u8,
                t.stack.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                t.todo.len(),
                if t.pending.is_some() { "waiting" } else { "" }
            );
        }
    }
    for (ptr, n) in &p.nodes {
        if let Some(node) = s.nodes.get(n) {
            let _ = writeln!(
                o,
                "  node {n}: u{ptr:016x} c{:016x} pri {} fds {} hs {} hw {} ls {} lw {} is {} iw {} tr {}",
                node.cookie,
                node.min_priority,
                node.accept_fds as u8,
                node.has_strong_ref as u8,
                node.has_weak_ref as u8,
                node.local_strong_refs,
                node.local_weak_refs,
                node.internal_strong_refs,
                node.refs.len(),
                node.tmp_refs
            );
        }
    }
    dump_refs_and_buffers(o, s, p);
}

/// A process's refs, buffers, pending work and what it holds against its caps.
fn dump_refs_and_buffers(o: &mut String, s: &State, p: &Proc) {
    for (desc, r) in &p.refs {
        let dead = s.nodes.get(&r.node).is_none_or(|n| n.owner.is_none());
        let _ = writeln!(
            o,
            "  ref desc {desc}: {}node {} s {} w {} d {}",
            if dead { "dead " } else { "" },
            r.node,
            r.strong,
            r.weak,
            r.death.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    for (off, b) in &p.buffers {
        let _ = writeln!(
            o,
            "  buffer at {off}: size {} offsets {}{}{}",
            b.data_size,
            b.offsets_size,
            if b.is_async { " async" } else { "" },
            if b.allow_user_free {
                " delivered"
            } else {
                " pending"
            }
        );
    }
    if !p.todo.is_empty() {
        let _ = writeln!(o, "  pending work: {}", p.todo.len());
    }
    let _ = writeln!(
        o,
        "  held: nodes {} refs {} transactions {} deaths {} threads {} fds {}",
        p.nodes.len(),
        p.refs.len(),
        p.txns_out,
        p.deaths,
        p.threads.len(),
        p.fds_out
    );
}

/// The counters (the kernel's `stats`), the caps and the refusals.
fn dump_stats(o: &mut String, s: &State) {
    let _ = writeln!(o, "binder stats:");
    for (i, n) in s.stats.bc.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(o, "  {}: {n}", command_name(bc_code(i)));
    }
    for (i, n) in s.stats.br.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(o, "  {}: {n}", command_name(br_code(i)));
    }
    for (i, name) in OBJ_NAMES.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {name}: active {} total {}",
            s.stats.created[i].saturating_sub(s.stats.deleted[i]),
            s.stats.created[i]
        );
    }
    let _ = writeln!(o, "  failed transactions: {}", s.stats.failed_transactions);
    let _ = writeln!(o, "  user errors: {}", s.stats.user_errors);
    let l = &s.limits;
    let caps = [
        l.nodes,
        l.refs,
        l.txns as usize,
        l.deaths as usize,
        l.threads,
        l.fds as usize,
    ];
    for ((name, cap), n) in CAP_NAMES.iter().zip(caps).zip(s.stats.refused) {
        let _ = writeln!(o, "  cap {name}: {cap} per process, refused {n}");
    }
    for ((name, cap), n) in CAP_NAMES
        .iter()
        .zip(CAPS.map(|c| l.per_uid.get(c)))
        .zip(s.stats.refused_uid)
    {
        let _ = writeln!(o, "  cap {name}: {cap} per uid, refused {n}");
    }
    for (uid, held) in s.uid_usage.sorted() {
        let _ = writeln!(
            o,
            "  uid {uid} holds: nodes {} refs {} transactions {} deaths {} threads {} fds {}",
            held[0], held[1], held[2], held[3], held[4], held[5]
        );
    }
    for (check, n) in &s.stats.refusals {
        let _ = writeln!(o, "  refused by {check:?}: {n}");
    }
}

/// The BC_ code with stats slot `i`.
fn bc_code(i: usize) -> u32 {
    use crate::binder_ipc::uapi::*;
    [
        BC_TRANSACTION,
        BC_REPLY,
        BC_ACQUIRE_RESULT,
        BC_FREE_BUFFER,
        BC_INCREFS,
        BC_ACQUIRE,
        BC_RELEASE,
        BC_DECREFS,
        BC_INCREFS_DONE,
        BC_ACQUIRE_DONE,
        BC_ATTEMPT_ACQUIRE,
        BC_REGISTER_LOOPER,
        BC_ENTER_LOOPER,
        BC_EXIT_LOOPER,
        BC_REQUEST_DEATH_NOTIFICATION,
        BC_CLEAR_DEATH_NOTIFICATION,
        BC_DEAD_BINDER_DONE,
        BC_TRANSACTION_SG,
        BC_REPLY_SG,
    ]
    .get(i)
    .copied()
    .unwrap_or(0)
}

/// The BR_ code with stats slot `i`.
fn br_code(i: usize) -> u32 {
    use crate::binder_ipc::uapi::*;
    [
        BR_ERROR,
        BR_OK,
        BR_TRANSACTION,
        BR_REPLY,
        BR_ACQUIRE_RESULT,
        BR_DEAD_REPLY,
        BR_TRANSACTION_COMPLETE,
        BR_INCREFS,
        BR_ACQUIRE,
        BR_RELEASE,
        BR_DECREFS,
        0,
        BR_NOOP,
        BR_SPAWN_LOOPER,
        BR_FINISHED,
        BR_DEAD_BINDER,
        BR_CLEAR_DEATH_NOTIFICATION_DONE,
        BR_FAILED_REPLY,
        BR_FROZEN_REPLY,
        BR_ONEWAY_SPAM_SUSPECT,
        BR_TRANSACTION_PENDING_FROZEN,
    ]
    .get(i)
    .copied()
    .unwrap_or(0)
}
