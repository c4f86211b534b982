//! Known differences between the shim and the kernel, each with its reason. A difference is
//! skipped only when one entry here names it exactly (the step it happens at and both
//! traces); nothing silences a whole class.

use crate::gen::Step;

/// The first step at which the two traces differ.
pub struct Diff<'a> {
    /// The step (`None` for the set-up lines).
    pub step: Option<&'a Step>,
    /// The shim's trace line.
    pub shim: &'a str,
    /// The kernel's trace line.
    pub kernel: &'a str,
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

// Findings of the first longer campaign (seeds 1001..1230 on Debian's 6.1.172), replayed with
// `BITTUBE_DIFF_REPLAY="<seed>[:<steps>] ..." scripts/kernel-binder-test.sh differential`:
// - 1052 / 1067 / 1214 (fixed): a sync call written while the reply to the thread's previous
//   call sat unread at the head of its todo list. The kernel refuses it (binder_transaction,
//   "new transaction not allowed when there is a transaction on thread todo": BR_FAILED_REPLY,
//   -EPROTO, queued behind the reply); the shim now does too (`Check::TxnOnTodo`), pinned by
//   conformance `sync_call_with_an_unread_reply_on_the_thread_fails`.
// - 1123 (fixed with the above): the pending error on one side only was that refusal's
//   BR_FAILED_REPLY; the replay agrees now.
// - 1227: an FDA of no fds outside its parent PTR, which the kernel does not check
//   (binder_translate_fd_array returns at once for an empty array) and ShimDevice refused;
//   fixed in ShimDevice (commit 4ab34d8), the replay agrees now.
// - 1222: `allocator-exact-fit-order` below.
//
// Findings of the 5,000-scenario campaign (seeds 3001..8000, Debian's 6.1.0-48); every one
// is fixed and its replay (full and minimised) agrees on that kernel:
// - 4117 (`BITTUBE_DIFF_REPLAY=4117:9,10,11,17,18,19,20,21,22,23,24,25,40,41,46,47,56,57,62,63`,
//   fixed): P1 dropped the ref of a handle it had received in a reply it still held (#40,
//   BC_RELEASE), the number went to a new node's ref (#46/#56), then P1 freed that old reply
//   (#56). binder_transaction_buffer_release releases a HANDLE object by the handle number
//   written in the buffer (binder_dec_ref_for_handle), so the kernel dropped the new ref, the
//   new node lost its last reference and binder_dec_node_nilocked freed it with its queued
//   BR_INCREFS/BR_ACQUIRE; the shim released by node and kept it. The shim now records the
//   handle number (`Release::Ref`); conformance `freeing_a_buffer_releases_its_handles_by_number`.
// - 4963, 7971: the same empty-FDA difference, in a reply; fixed with 1227.
// - 7721 (`BITTUBE_DIFF_REPLAY=7721:9,10,11,13,14,15,17,18,19,22,23,24,25,27,34,38,41,42`,
//   fixed with 1227): the differing step carries an empty FDA outside its parent, which
//   ShimDevice refused and the kernel accepts; the node-work difference came from that
//   refusal, and both replays agree since ShimDevice's fix (4ab34d8).
// - 6275 (fixed): a BC_FREE_BUFFER that closes FDA fds sets looper_need_return in the kernel,
//   so a non-blocking read in the same call returns a lone BR_NOOP, not EAGAIN.
// - 6113 (`BITTUBE_DIFF_REPLAY=6113:6,29,32,33,38,39,44`, fixed): the manager, handling P1T0's
//   call, called P1's node back (#33: queued on P1T0, which waits for the reply), then exited;
//   P1T0 exited before reading it (#39). binder_release_work drops such a call with
//   binder_send_failed_reply / binder_free_transaction, which leave its buffer allocated
//   until the process exits, so the buffer's strong ref on its target node stays and P1's
//   later BC_ACQUIRE_DONE queues no BR_RELEASE; the shim freed the buffer with the
//   transaction and gave the next reader BR_RELEASE. The shim now keeps it (`free_txn`);
//   conformance `call_dropped_at_thread_exit_keeps_its_buffer_and_target_node`.

/// The list. Issue 17's item 5 (command payloads cut by the end of the write buffer: the
/// kernel reads past the buffer) is not generated at all, so it needs no entry.
pub const KNOWN: &[Known] = &[Known {
    name: "allocator-exact-fit-order",
    reason: "Both drivers allocate best fit from the same free blocks, but among several \
              free blocks of the needed size the kernel takes the first one its walk of \
              the size-keyed red-black tree meets (binder_alloc_new_buf_locked stops at the \
              first exact match from the root, so the pick depends on the tree's shape and \
              insertion history), and among larger blocks of one size the earliest \
              inserted; the shim's allocator (shim/alloc.rs) takes the lowest address. \
              Matching it needs the kernel's rbtree balancing reproduced. Matched only when \
              the two lines are equal except for `at=` (the buffer's offset in the area).",
    matches: only_buffer_offset_differs,
}];

/// The two lines are the same once every `at=<offset>` is masked.
fn only_buffer_offset_differs(d: &Diff<'_>) -> bool {
    let mask = |line: &str| {
        line.split(' ')
            .map(|w| if w.starts_with("at=0x") { "at=?" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    };
    d.shim != d.kernel && mask(d.shim) == mask(d.kernel)
}

/// The known difference `d` is, if any.
pub fn known(d: &Diff<'_>) -> Option<&'static Known> {
    KNOWN.iter().find(|k| (k.matches)(d))
}
