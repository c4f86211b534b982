//! Binder conformance suite: BC_/BR_ byte streams through the `Device` trait only, so the
//! same tests run against the crate's driver shim and against the Linux kernel driver
//! (`BITTUBE_REQUIRE_KERNEL=1`, or whenever `/dev/binder` exists). The kernel is the
//! reference: every expected BR_ code and value below is what drivers/android/binder.c does.
//! Cross-process behaviour uses real child processes (this binary re-executed in a role).
//!
//! What each test pins, and where in the kernel it comes from (function names in
//! drivers/android/binder.c unless said otherwise):
//!
//! basics
//! - `version_is_8`: BINDER_VERSION = BINDER_CURRENT_PROTOCOL_VERSION (binder_ioctl).
//! - `empty_write_read_returns_at_once`: write_size 0 and read_size 0 do nothing
//!   (binder_ioctl_write_read).
//! - `first_read_of_a_new_thread_is_a_lone_noop`: BR_NOOP first in a fresh read
//!   (binder_thread_read); a new thread's first read does not sleep (binder_get_thread_ilocked
//!   sets looper_need_return; binder_has_work_ilocked).
//! - `second_context_manager_is_ebusy`: EBUSY while a manager node exists, the slot is freed
//!   when the manager goes (binder_ioctl_set_ctx_mgr, binder_deferred_release).
//! - `call_to_missing_context_manager_is_dead_reply`: handle 0 without manager →
//!   BR_DEAD_REPLY, sync and oneway (binder_transaction).
//! - `context_manager_process_calling_handle_0_fails`: calls to handle 0 from the manager's own
//!   OS process → BR_FAILED_REPLY (binder_transaction, "from process owning it").
//!
//! transactions
//! - `sync_call_and_reply`: BR_TRANSACTION fields: target.ptr/cookie of the node, code, flags,
//!   sender_pid (task_tgid_nr_ns of the sender), sender_euid, data, data.ptr.offsets =
//!   buffer + ALIGN(data_size, 8); BR_TRANSACTION_COMPLETE deferred until BR_REPLY
//!   (binder_enqueue_deferred_thread_work_ilocked); BR_REPLY has target/cookie 0 and sender_pid
//!   0; the replier gets BR_TRANSACTION_COMPLETE (binder_transaction, binder_thread_read).
//! - `oneway_is_complete_at_once_and_serialized_per_node`: TF_ONE_WAY → BR_TRANSACTION_COMPLETE
//!   at once, sender_pid 0; one async transaction per node at a time, the next released by
//!   BC_FREE_BUFFER (binder_proc_transaction has_async_transaction / async_todo,
//!   binder_free_buf); double free ignored (binder_alloc_prepare_to_free).
//! - `reply_without_transaction_fails_and_stops_the_write`: BC_REPLY with an empty stack →
//!   BR_FAILED_REPLY; binder_thread_write stops while thread->return_error is pending.
//! - `one_transaction_per_read`: binder_thread_read stops after one BR_TRANSACTION; queued
//!   work comes out in order with each node's ptr/cookie.
//! - `nested_call_goes_to_the_waiting_thread`: a call back into a process of the caller's
//!   chain goes to the waiting thread (binder_transaction, transaction_stack walk).
//!
//! objects
//! - `weak_binder_becomes_weak_handle`: WEAK_BINDER → WEAK_HANDLE, BR_INCREFS only,
//!   WEAK_HANDLE to the owner → WEAK_BINDER, BR_DECREFS alone at the end
//!   (binder_translate_binder, binder_translate_handle).
//! - `call_on_a_weak_handle_fails`: BR_FAILED_REPLY, oneway or not (binder_get_ref_olocked
//!   with need_strong_ref).
//! - `handle_0_references_need_no_handshake`: BC_INCREFS/ACQUIRE/RELEASE/DECREFS of handle 0
//!   by a client send nothing to the manager (binder_thread_write, binder_inc_node_nilocked,
//!   binder_ioctl_set_ctx_mgr sets has_strong_ref/has_weak_ref).
//! - `binder_objects_become_handles_and_come_back_as_binders`: BINDER → HANDLE (cookie 0,
//!   flags kept), handles from 1, one per node (binder_translate_binder,
//!   binder_get_ref_for_node_olocked); BR_INCREFS + BR_ACQUIRE on the sending thread before
//!   BR_TRANSACTION_COMPLETE (binder_inc_node_nilocked, BINDER_WORK_NODE in
//!   binder_thread_read); HANDLE to the owner → BINDER with ptr/cookie
//!   (binder_translate_handle); BC_INCREFS_DONE / BC_ACQUIRE_DONE, buffer release
//!   (binder_transaction_buffer_release) → BR_RELEASE then BR_DECREFS per node.
//!
//! fds
//! - `fd_arrives_as_new_cloexec_fd_sharing_the_file_offset`: the "helloworld" demonstration:
//!   new fd with O_CLOEXEC, installed when the receiver reads, same open file description,
//!   cookie kept, nothing leaked (binder_translate_fd, binder_apply_fd_fixups).
//! - `fd_to_node_without_accepts_fds_fails`: FLAT_BINDER_FLAG_ACCEPTS_FDS missing →
//!   BR_FAILED_REPLY (binder_translate_fd).
//! - `fd_in_reply_needs_tf_accept_fds`: replies need TF_ACCEPT_FDS in the call; a failed reply
//!   gives the replier BR_TRANSACTION_COMPLETE and the caller BR_FAILED_REPLY
//!   (binder_translate_fd, binder_transaction error path, binder_send_failed_reply).
//!
//! death
//! - `death_notification_on_sigkill`: BR_DEAD_BINDER(cookie) when the owner is SIGKILLed
//!   (binder_deferred_release → binder_node_release); BC_DEAD_BINDER_DONE,
//!   BC_CLEAR_DEATH_NOTIFICATION → BR_CLEAR_DEATH_NOTIFICATION_DONE (binder_thread_write);
//!   request on a dead node fires at once; calls to a dead node → BR_DEAD_REPLY
//!   (binder_get_node_refs_for_txn).
//! - `process_killed_during_a_call_gives_dead_reply`: callee killed mid-call → caller gets
//!   BR_TRANSACTION_COMPLETE, BR_DEAD_REPLY, then BR_DEAD_BINDER (binder_thread_release,
//!   binder_send_failed_reply); afterwards this process's fd table (which holds the embedded
//!   shim's fds on the shim) returns to its baseline.
//! - `refs_of_a_killed_process_are_released`: a killed process's refs go, the owner gets
//!   BR_RELEASE, BR_DECREFS (binder_deferred_release, binder_cleanup_ref_olocked); a BINDER in
//!   a reply gives the replier BR_INCREFS, BR_ACQUIRE, BR_TRANSACTION_COMPLETE.
//! - `thread_exit_with_a_pending_call_gives_dead_reply`: BINDER_THREAD_EXIT with an incoming
//!   call → caller gets BR_DEAD_REPLY (binder_thread_release).
//!
//! buffers
//! - `exhausted_buffer_area_fails_until_a_buffer_is_freed`: no space → BR_FAILED_REPLY, room
//!   again after BC_FREE_BUFFER (binder_alloc_new_buf in binder_alloc.c).
//! - `oneway_may_use_only_half_of_the_area`: free_async_space is half the area; larger than the
//!   whole area fails (binder_alloc.c).
//! - `oneway_spam_suspect_when_enabled`: BR_ONEWAY_SPAM_SUSPECT replaces
//!   BR_TRANSACTION_COMPLETE for the oneway that leaves < 1/10 of the area as async space while
//!   the sender holds > 1/4 of it, only with BINDER_ENABLE_ONEWAY_SPAM_DETECTION
//!   (debug_low_async_space_locked in binder_alloc.c, binder_thread_read).
//!
//! sg
//! - `scatter_gather_buffers_and_fd_arrays`: BC_TRANSACTION_SG: PTR buffers copied after the
//!   offsets array, buffer pointers and the parent fixup rewritten to receiver addresses, FDA
//!   fds installed (FD_CLOEXEC) in the parent buffer and closed at BC_FREE_BUFFER
//!   (binder_fixup_parent, binder_translate_fd_array, binder_transaction_buffer_release).
//! - `bad_scatter_gather_objects_fail`: PTR longer than buffers_size, FDA parent not a PTR,
//!   and (a kernel quirk) a fixup into a parent PTR at data offset 0 → BR_FAILED_REPLY
//!   (binder_transaction, binder_validate_ptr, binder_validate_fixup).
//!
//! looper
//! - `spawn_looper_when_no_thread_waits`: BR_SPAWN_LOOPER overwrites BR_NOOP when no thread
//!   waits, none requested, started < max_threads, and the reader is a looper
//!   (binder_thread_read end; BC_REGISTER_LOOPER / BC_ENTER_LOOPER in binder_thread_write).
//! - `spawn_looper_when_the_last_looper_gets_work`: the only looper taking a call with
//!   max_threads 1 gets exactly one BR_SPAWN_LOOPER (same place in binder_thread_read).
//!
//! malformed
//! - `unknown_command_is_einval`: -EINVAL, write_consumed at the command, read_consumed 0;
//!   BC_ATTEMPT_ACQUIRE / BC_ACQUIRE_RESULT too (binder_thread_write, binder_ioctl_write_read).
//! - `transaction_to_invalid_handle_fails`: BR_FAILED_REPLY (binder_transaction).
//! - `offsets_size_not_multiple_of_8_fails`: BR_FAILED_REPLY (binder_transaction).
//! - `misplaced_object_offsets_fail`: misaligned, out of range, past the end → BR_FAILED_REPLY
//!   (binder_get_object).
//! - `overlapping_or_descending_objects_fail`: off_min check → BR_FAILED_REPLY.
//! - `unknown_object_type_fails`: BR_FAILED_REPLY (binder_get_object).
//! - `invalid_handle_object_fails`: BR_FAILED_REPLY (binder_translate_handle).
//! - `bad_fd_fails`: BR_FAILED_REPLY (binder_translate_fd, -EBADF).
//! - `oversize_transaction_fails`: BR_FAILED_REPLY (binder_alloc_new_buf).
//! - `bad_pointers_and_sizes_fail`: unreadable data/offsets, absurd sizes → BR_FAILED_REPLY
//!   (binder_transaction copy failures, binder_alloc_new_buf size checks).
//! - `free_of_a_bogus_buffer_is_ignored`: no error, nothing returned (BC_FREE_BUFFER,
//!   binder_alloc_prepare_to_free).
//! - `refcount_commands_on_invalid_handles_are_ignored`: BC_INCREFS/ACQUIRE/RELEASE/DECREFS,
//!   *_DONE, death commands on unknown handles/nodes/cookies are ignored (binder_thread_write).
//! - `context_manager_acquiring_handle_0_is_einval`: -EINVAL (binder_thread_write).
//!
//! Not covered through `Device` (no non-blocking open in the trait): EAGAIN of a non-blocking
//! empty read.

#[path = "conformance/basics.rs"]
mod basics;
#[path = "conformance/buffers.rs"]
mod buffers;
#[path = "conformance/death.rs"]
mod death;
#[path = "conformance/fds.rs"]
mod fds;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/looper.rs"]
mod looper;
#[path = "conformance/malformed.rs"]
mod malformed;
#[path = "conformance/objects.rs"]
mod objects;
#[path = "conformance/regressions.rs"]
mod regressions;
#[path = "conformance/sg.rs"]
mod sg;
#[path = "conformance/transactions.rs"]
mod transactions;
