//! Known differences between the shim and the kernel, each with its reason. A difference is
//! skipped only when one entry here names it exactly (the step it happens at and both
//! traces); nothing silences a whole class.

use crate::gen::{Cmd, Obj, Op, Step};
use bittube::binder_ipc::uapi::{BC_ENTER_LOOPER, BC_REGISTER_LOOPER};

/// The first step at which the two traces differ.
pub struct Diff<'a> {
    /// The step (`None` for the set-up lines).
    pub step: Option<&'a Step>,
    /// The shim's trace line.
    pub shim: &'a str,
    /// The kernel's trace line.
    pub kernel: &'a str,
    /// The steps run before it on the same thread of the same process, in order.
    pub earlier: Vec<&'a Step>,
    /// The trace lines before it (the same on both sides).
    pub history: &'a [String],
}

/// One known difference.
pub struct Known {
    /// Its name, printed when it is skipped.
    pub name: &'static str,
    /// Why it is not fixed.
    pub reason: &'static str,
    /// Whether a difference is this one.
    pub matches: fn(&Diff<'_>) -> bool,
}

/// The list. Issue 17's item 5 (command payloads cut by the end of the write buffer: the
/// kernel reads past the buffer) is not generated at all, so it needs no entry.
pub const KNOWN: &[Known] = &[
    Known {
        name: "unregistered-reader-takes-process-work",
        reason:
            "Linux commit 31643d84b8c3 (\"binder: fix hang of unregistered readers\", in 6.1.103+ \
             and so in the Debian kernel of the qemu run) lets a thread that never wrote \
             BC_ENTER_LOOPER / BC_REGISTER_LOOPER take process work \
             (binder_available_for_proc_work_ilocked no longer checks the looper state); the \
             shim still requires it (shim/state.rs available_for_proc_work). A shim fix, owned \
             by the shim internals; drop this entry when it lands.",
        matches: unregistered_reader,
    },
    Known {
        name: "empty-fda-outside-its-parent",
        reason: "An FDA with num_fds 0 is not checked against its parent's length or alignment \
             by the kernel (binder_translate_fd_array returns at once for an empty array, \
             \"binder: Address corner cases in deferred copy and fixup\"), so the call goes \
             through; ShimDevice's gather_fda (device/shim.rs) refuses a parent_offset past \
             the parent even when num_fds is 0, and the sender gets BR_FAILED_REPLY. A \
             ShimDevice fix (the shim itself already skips empty arrays); drop this entry \
             when it lands.",
        matches: empty_fda_outside_parent,
    },
    Known {
        name: "held-buffer-keeps-its-target-node",
        reason:
            "A received transaction's buffer holds a strong reference on its target node until \
             BC_FREE_BUFFER (binder_transaction takes it for t->buffer->target_node, \
             binder_transaction_buffer_release drops it), so the owner gets no BR_RELEASE / \
             BR_DECREFS while it holds such a buffer; the shim sends them as soon as the last \
             handle goes. A shim fix (node references of buffers); drop this entry when it \
             lands.",
        matches: held_buffer_keeps_node,
    },
];

/// The step sends an FDA of no fds whose offset lies past (or is misaligned in) its parent
/// PTR; the shim fails it, the kernel does not.
fn empty_fda_outside_parent(d: &Diff<'_>) -> bool {
    let Some(Step {
        op: Op::WriteRead { cmds, .. },
        ..
    }) = d.step
    else {
        return false;
    };
    let odd = cmds.iter().any(|c| match c {
        Cmd::Txn(t) => {
            t.bad.is_none()
                && t.objs.iter().any(|o| match *o {
                    Obj::Fda { n: 0, parent, off } => match t.objs.get(parent as usize) {
                        Some(Obj::Ptr { len, .. }) => off > *len || off % 4 != 0,
                        _ => false,
                    },
                    _ => false,
                })
        }
        _ => false,
    });
    let (shim, kernel) = (result(d.shim), result(d.kernel));
    odd && !kernel.contains("FAILED_REPLY")
        && (shim.contains("FAILED_REPLY") || shim.ends_with(" rc=4 | NOOP"))
}

/// The shim's read has BR_RELEASE of a node the kernel's does not, and this process received
/// a transaction for that node earlier (whose buffer may still be held).
fn held_buffer_keeps_node(d: &Diff<'_>) -> bool {
    let (shim, kernel) = (result(d.shim), result(d.kernel));
    let released: Vec<&str> = shim
        .split(' ')
        .filter(|w| w.starts_with("RELEASE(") && !kernel.contains(*w))
        .collect();
    let Some(step) = d.step else { return false };
    let me = format!(" P{}T", step.proc);
    !released.is_empty()
        && released.iter().all(|w| {
            let ptr = w
                .trim_start_matches("RELEASE(")
                .split(',')
                .next()
                .unwrap_or("");
            d.history
                .iter()
                .any(|l| l.contains(&me) && l.contains(&format!("TRANSACTION{{tgt={ptr} ")))
        })
}

fn registers(s: &Step) -> bool {
    matches!(&s.op, Op::WriteRead { cmds, .. }
        if cmds.iter().any(|c| matches!(c, Cmd::Looper(BC_ENTER_LOOPER | BC_REGISTER_LOOPER))))
}

/// The result part of a trace line (after `#<i> P<p>T<t>: `).
fn result(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, r)| r)
}

/// A read on a thread that has not entered the looper since it started: the kernel hands it
/// process work (or a lone BR_NOOP when the read is too small for it), the shim answers
/// EAGAIN or a lone BR_NOOP; the write half agrees.
fn unregistered_reader(d: &Diff<'_>) -> bool {
    let Some(step) = d.step else { return false };
    let Op::WriteRead { read, .. } = &step.op else {
        return false;
    };
    if *read == 0 || registers(step) {
        return false;
    }
    let since_start = d
        .earlier
        .iter()
        .rev()
        .take_while(|s| !matches!(s.op, Op::ThreadExit));
    if since_start.clone().any(|s| registers(s)) {
        return false;
    }
    let (shim, kernel) = (result(d.shim), result(d.kernel));
    let wc = |r: &str| r.split(' ').nth(1).map(str::to_string);
    let shim_idle = shim.starts_with("EAGAIN ") && shim.ends_with(" rc=0 |")
        || shim.starts_with("ok ") && shim.ends_with(" rc=4 | NOOP");
    shim_idle && kernel.starts_with("ok ") && wc(shim) == wc(kernel)
}

/// The known difference `d` is, if any.
pub fn known(d: &Diff<'_>) -> Option<&'static Known> {
    KNOWN.iter().find(|k| (k.matches)(d))
}
