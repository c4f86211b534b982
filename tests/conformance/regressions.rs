//! Differences between the shim and the kernel found by the differential tester (issue 17),
//! each pinned here so that it runs on both drivers: the kernel's behaviour is the expected one.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;
use nix::fcntl::{fcntl, FcntlArg};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

const PREFIX: u64 = 0x5C5C;
const FIRST: u32 = 0x7e51;
const LAST: u32 = 0x7e52;

/// A sync BC_TRANSACTION_SG to handle 0; reads until its outcome.
fn sg_call(c: &Proc, p: &Payload, code: u32, buffers_size: u64) -> Vec<Ret> {
    let sg = BinderTransactionDataSg {
        transaction_data: p.tr(0, code, TF_ACCEPT_FDS),
        buffers_size,
    };
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION_SG, &sg);
    c.write_read_until_any(w.as_bytes(), &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY])
}

/// A PTR object of length `u64::MAX` (align8 of it wraps), a child PTR whose fixup offset in
/// its parent overflows, a child PTR of length `u64::MAX`, and FDAs whose `num_fds * 4` or
/// `parent_offset + size` overflow: each gives the sender BR_FAILED_REPLY (binder_transaction:
/// "too large buffer", binder_validate_fixup, binder_translate_fd_array's bounds), the sender
/// lives on, nothing reaches the receiver, and the receiver's buffer of an earlier call is
/// unchanged.
#[test]
fn overflowing_ptr_and_fda_sizes_fail_the_transaction() {
    run(
        test_name!(overflowing_ptr_and_fda_sizes_fail_the_transaction),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS);
                let mut child = ctx.spawn("sender", &[]);
                let rets = m.enter_looper_until_transaction();
                assert_stream(&rets, &["BR_TRANSACTION"], "the first, valid call");
                let first = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(first.tr.code, FIRST);
                let pa: BinderBufferObject = first.object(8);
                let snapshot = |what: &str| {
                    let d = m
                        .dev
                        .buffer_bytes(first.tr.data_buffer, first.tr.data_size as usize)
                        .unwrap_or_else(|| panic!("{what}: data in the area"))
                        .to_vec();
                    let a = m
                        .dev
                        .buffer_bytes(pa.buffer, pa.length as usize)
                        .unwrap_or_else(|| panic!("{what}: PTR buffer in the area"))
                        .to_vec();
                    (d, a)
                };
                let before = snapshot("before");
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "replying to the first call (its buffer is kept)",
                );
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                assert_stream(&rets, &["BR_TRANSACTION"], "after the bad calls");
                let last = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(
                    last.tr.code, LAST,
                    "no transaction with an overflowing object reaches the receiver"
                );
                assert_eq!(
                    snapshot("after"),
                    before,
                    "a delivered buffer must not change"
                );
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, last.tr.data_buffer);
                bc::free_buffer(&mut w, first.tr.data_buffer);
                m.write_read(w.as_bytes());
                assert_eq!(child.expect("OK"), "");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let a = [0xA1u8; 32];
                let b = [0xB2u8; 16];
                let null = File::open("/dev/null").unwrap();
                let words = [null.as_raw_fd() as u32; 4];
                // The first call: a good PTR buffer the receiver keeps.
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                p.push_object(&ptr_obj(a.as_ptr() as u64, 32, None));
                let rets = sg_call(&c, &p, FIRST, 32);
                c.free_reply(&rets, "the first call");
                let fail = |p: &Payload, buffers_size: u64, what: &str| {
                    let rets = sg_call(&c, p, 0xBAD, buffers_size);
                    assert_stream(&rets, &["BR_FAILED_REPLY"], what);
                };
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                p.push_object(&ptr_obj(a.as_ptr() as u64, u64::MAX, None));
                fail(&p, 32, "PTR of length u64::MAX");
                let parent = |p: &mut Payload| {
                    p.push_object(&ptr_obj(a.as_ptr() as u64, 32, None));
                };
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                parent(&mut p);
                p.push_object(&ptr_obj(b.as_ptr() as u64, 16, Some((0, u64::MAX - 3))));
                fail(&p, 48, "child PTR whose parent offset overflows");
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                parent(&mut p);
                p.push_object(&ptr_obj(b.as_ptr() as u64, u64::MAX, Some((0, 8))));
                fail(&p, 48, "child PTR of length u64::MAX");
                let fda_parent = |p: &mut Payload| {
                    p.push_object(&ptr_obj(words.as_ptr() as u64, 16, None));
                };
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                fda_parent(&mut p);
                p.push_object(&fda_obj(u64::MAX / 4 + 1, 0, 0));
                fail(&p, 16, "FDA whose num_fds * 4 overflows");
                let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                fda_parent(&mut p);
                p.push_object(&fda_obj(2, 0, u64::MAX - 3));
                fail(&p, 16, "FDA whose parent_offset overflows");
                // The sender is alive and its next call goes through.
                let rets = c.transact(0, LAST, 0, &Payload::bytes(b"last"));
                c.free_reply(&rets, "a valid call afterwards");
                tell("OK", "");
            }
        },
    );
}

fn is_open(fd: i32) -> bool {
    // SAFETY: only asks whether the number is open; nothing is done with it.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(b, FcntlArg::F_GETFD).is_ok()
}

/// The FDA fds of a received buffer are closed when BC_FREE_BUFFER returns
/// (binder_transaction_buffer_release → binder_deferred_fd_close, task work run on the way
/// back to user space), whether the free is written alone or with a read; the read returns at
/// once with a lone BR_NOOP (the release sets looper_need_return so the close runs).
#[test]
fn fda_fds_are_closed_when_the_free_returns() {
    run(
        test_name!(fda_fds_are_closed_when_the_free_returns),
        |ctx| match ctx.role.as_deref() {
            None => {
                let path = std::env::temp_dir().join(format!("bittube-regress-{}-fda", pid()));
                std::fs::write(&path, b"fda").unwrap();
                let m = Proc::context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS);
                let mut child = ctx.spawn("sender", &[("FDA", path.display().to_string())]);
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                m.write(w.as_bytes());
                let mut bufs = Vec::new();
                for _ in 0..2 {
                    let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                    let r = m.received(&find(&rets, BR_TRANSACTION));
                    let pa: BinderBufferObject = r.object(8);
                    let words = m.dev.buffer_bytes(pa.buffer, 8).expect("parent").to_vec();
                    let fds = [
                        i32::from_ne_bytes(words[..4].try_into().unwrap()),
                        i32::from_ne_bytes(words[4..].try_into().unwrap()),
                    ];
                    for fd in fds {
                        assert!(is_open(fd), "FDA fd {fd} is installed");
                        assert_eq!(
                            std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
                            PathBuf::from(&path)
                        );
                    }
                    let mut w = CommandWriter::new();
                    bc::reply(&mut w, 0, 0, &Payload::new());
                    assert_stream(
                        &m.write_read(w.as_bytes()),
                        &["BR_TRANSACTION_COMPLETE"],
                        "replying (the buffer is kept)",
                    );
                    bufs.push((r.tr.data_buffer, fds));
                }
                let (addr, fds) = bufs[0];
                m.free(addr);
                for fd in fds {
                    assert!(!is_open(fd), "FDA fd {fd} closed by a write-only free");
                }
                let (addr, fds) = bufs[1];
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, addr);
                let rets = m.write_read(w.as_bytes());
                assert_eq!(
                    names(&rets),
                    ["BR_NOOP"],
                    "a free with a read returns at once with a lone BR_NOOP"
                );
                for fd in fds {
                    assert!(!is_open(fd), "FDA fd {fd} closed by a free with a read");
                }
                assert_eq!(child.expect("OK"), "");
                child.finish();
                let _ = std::fs::remove_file(path);
            }
            Some(_) => {
                let f = File::open(std::env::var("FDA").unwrap()).unwrap();
                let fd = f.as_raw_fd() as u32;
                let words = [fd, fd];
                let c = Proc::open();
                for _ in 0..2 {
                    let mut p = Payload::bytes(&PREFIX.to_ne_bytes());
                    p.push_object(&ptr_obj(words.as_ptr() as u64, 8, None));
                    p.push_object(&fda_obj(2, 0, 0));
                    let rets = sg_call(&c, &p, FIRST, 8);
                    c.free_reply(&rets, "an FDA call");
                }
                tell("OK", "");
            }
        },
    );
}

const NODE: u64 = 0xDE00_0001;
const NODE_COOKIE: u64 = 0xDE00_0002;
const DEATH_COOKIE: u64 = 0xDEAD_C0DE;

/// A death request on a node that is already dead, written while the thread serves a sync
/// call: the kernel queues BR_DEAD_BINDER on the process (BC_REQUEST_DEATH_NOTIFICATION,
/// ref->node->proc == NULL → proc->todo), which a thread with a transaction stack does not
/// take; it comes after the reply, in the next read.
#[test]
fn death_request_on_a_dead_node_during_a_call_comes_after_the_reply() {
    run(
        test_name!(death_request_on_a_dead_node_during_a_call_comes_after_the_reply),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut owner = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                let r = m.received(&find(&rets, BR_TRANSACTION));
                let obj: FlatBinderObject = r.object(0);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_HANDLE);
                let h = obj.handle();
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &h);
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                m.write_read(w.as_bytes());
                assert_eq!(owner.expect("REGISTERED"), "");
                owner.kill();
                // A call to the killed owner ends in BR_DEAD_REPLY (at once, or when the
                // kernel's release of the process, on a workqueue, fails the queued call).
                let rets = m.transact(h, 5, 0, &Payload::bytes(b"alive?"));
                assert!(
                    rets.iter().any(|r| r.cmd == BR_DEAD_REPLY),
                    "call to the killed owner: {rets:?}"
                );
                let mut caller = ctx.spawn("caller", &[]);
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                assert_stream(&rets, &["BR_TRANSACTION"], "the caller's call");
                let t = find(&rets, BR_TRANSACTION).txn();
                let mut w = CommandWriter::new();
                bc::handle_cookie(&mut w, BC_REQUEST_DEATH_NOTIFICATION, h, DEATH_COOKIE);
                m.write(w.as_bytes());
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "the reply's read: BR_DEAD_BINDER is process work, not yet taken",
                );
                let rets = m.write_read_until_any(&[], &[BR_DEAD_BINDER]);
                assert_stream(&rets, &["BR_DEAD_BINDER"], "the next read");
                assert_eq!(find(&rets, BR_DEAD_BINDER).cookie(), DEATH_COOKIE);
                assert_eq!(caller.expect("REPLIED"), "");
                caller.finish();
                let mut w = CommandWriter::new();
                w.cmd_with(BC_DEAD_BINDER_DONE, &DEATH_COOKIE);
                bc::handle_cookie(&mut w, BC_CLEAR_DEATH_NOTIFICATION, h, DEATH_COOKIE);
                let rets =
                    m.write_read_until_any(w.as_bytes(), &[BR_CLEAR_DEATH_NOTIFICATION_DONE]);
                assert_stream(&rets, &["BR_CLEAR_DEATH_NOTIFICATION_DONE"], "clearing");
            }
            Some("owner") => {
                let c = Proc::open();
                let mut p = Payload::new();
                p.push_object(&binder_obj(NODE, NODE_COOKIE, 0));
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                bc::transaction(&mut w, 0, 1, 0, &p);
                let rets = c.write_read_until_any(w.as_bytes(), &[BR_REPLY]);
                let reply = find(&rets, BR_REPLY).txn();
                c.free_and_ack_node(reply.data_buffer, NODE, NODE_COOKIE);
                tell("REGISTERED", "");
                while hear().is_some() {}
            }
            Some(_) => {
                let c = Proc::open();
                let rets = c.transact(0, 7, 0, &Payload::bytes(b"call"));
                c.free_reply(&rets, "the caller");
                tell("REPLIED", "");
            }
        },
    );
}

/// A device fresh from `open`, used by the thread that opened it: its first read is that of
/// a new binder thread (binder_get_thread sets looper_need_return), a lone BR_NOOP at once,
/// on both drivers; opening must not leave the opening thread registered.
#[test]
fn first_read_on_the_opening_thread_is_a_lone_noop() {
    run(
        test_name!(first_read_on_the_opening_thread_is_a_lone_noop),
        |_| {
            let p = Proc::open();
            assert_eq!(names(&p.write_read(&[])), ["BR_NOOP"], "the first read");
            let q = Proc::open();
            let mut w = CommandWriter::new();
            w.cmd(BC_ENTER_LOOPER);
            assert_eq!(
                names(&q.write_read(w.as_bytes())),
                ["BR_NOOP"],
                "a looper's first read"
            );
        },
    );
}

const FIRST_CALL: u32 = 0x51;
const SECOND_CALL: u32 = 0x52;
const THIRD_CALL: u32 = 0x53;

/// A sync call written while the reply to the thread's previous call sits unread at the head
/// of its todo list (that call's BR_TRANSACTION_COMPLETE already read) is refused: the
/// kernel's binder_transaction, "new transaction not allowed when there is a transaction on
/// thread todo", BR_FAILED_REPLY with extended error -EPROTO, queued behind the reply. The
/// write goes on (write_consumed covers the call), the read stops after the BR_REPLY, the
/// next read has the BR_FAILED_REPLY, and the refused call never reaches the receiver.
/// (Differential seeds 1052, 1067, 1214.)
#[test]
fn sync_call_with_an_unread_reply_on_the_thread_fails() {
    run(
        test_name!(sync_call_with_an_unread_reply_on_the_thread_fails),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut caller = ctx.spawn("caller", &[]);
                let rets = m.enter_looper_until_transaction();
                let t = find(&rets, BR_TRANSACTION).txn();
                assert_eq!(t.code, FIRST_CALL);
                assert_eq!(caller.expect("COMPLETE"), "");
                let answer = Payload::bytes(b"first reply");
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &answer);
                bc::free_buffer(&mut w, t.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "replying to the first call",
                );
                caller.send("REPLIED");
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                let t = find(&rets, BR_TRANSACTION).txn();
                assert_eq!(t.code, THIRD_CALL, "the refused call never arrives");
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                m.write_read(w.as_bytes());
                assert_eq!(caller.expect("DONE"), "");
                caller.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let first = Payload::bytes(b"first");
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, 0, FIRST_CALL, 0, &first);
                assert_stream(
                    &c.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "the first call's write",
                );
                tell("COMPLETE", "");
                hear_exact("REPLIED");
                let second = Payload::bytes(b"second");
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, 0, SECOND_CALL, 0, &second);
                let call = c.call(w.as_bytes(), true);
                assert_eq!(call.result, Ok(()));
                assert_eq!(call.write_consumed, w.len(), "the refused call is consumed");
                assert_stream(&call.rets, &["BR_REPLY"], "the read stops at the old reply");
                let reply = c.received(&find(&call.rets, BR_REPLY));
                assert_eq!(reply.data, b"first reply");
                assert_stream(
                    &c.write_read(&[]),
                    &["BR_FAILED_REPLY"],
                    "the second call's outcome",
                );
                let ee = c.dev.extended_error().expect("BINDER_GET_EXTENDED_ERROR");
                assert_eq!(ee.command, BR_FAILED_REPLY);
                assert_eq!(ee.param, -libc::EPROTO);
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, reply.tr.data_buffer);
                c.write(w.as_bytes());
                let rets = c.transact(0, THIRD_CALL, 0, &Payload::bytes(b"third"));
                c.free_reply(&rets, "a call once the queue is read");
                tell("DONE", "");
            }
        },
    );
}

const NODE_A: u64 = 0x4117_0a00;
const NODE_B: u64 = 0x4117_0b00;

/// Freeing a buffer releases each HANDLE object by the handle number written in it
/// (binder_transaction_buffer_release → binder_dec_ref_for_handle), not by the node it named
/// when translated: after the receiver dropped that ref itself (BC_RELEASE) and the number went
/// to another node, freeing the old buffer drops a reference of the new node. (Differential
/// seed 4117: there the new node lost its last reference and its queued BR_INCREFS/BR_ACQUIRE
/// went with it, binder_dec_node_nilocked.)
#[test]
fn freeing_a_buffer_releases_its_handles_by_number() {
    run(
        test_name!(freeing_a_buffer_releases_its_handles_by_number),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut owner = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                let first = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(first.object::<FlatBinderObject>(0).handle(), 1);
                // Drop the ref the first buffer holds: handle 1 goes, the buffer stays.
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &1u32);
                bc::reply(&mut w, 0, 0, &Payload::new());
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "releasing handle 1 and replying",
                );
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                let second = m.received(&find(&rets, BR_TRANSACTION));
                let obj: FlatBinderObject = second.object(0);
                assert_eq!(obj.handle(), 1, "the free number goes to the second node");
                // Strong count 2 (the second buffer, BC_ACQUIRE); the first free takes one
                // (by number), the second free the other: handle 1 is gone.
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &1u32);
                bc::free_buffer(&mut w, first.tr.data_buffer);
                bc::free_buffer(&mut w, second.tr.data_buffer);
                bc::reply(&mut w, 0, 0, &Payload::new());
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "freeing both buffers and replying",
                );
                assert_eq!(owner.expect("DONE"), "");
                let rets = m.transact(1, 3, TF_ONE_WAY, &Payload::bytes(b"anyone?"));
                assert_stream(&rets, &["BR_FAILED_REPLY"], "a call on the dropped handle");
                owner.finish();
            }
            Some(_) => {
                let c = Proc::open();
                for (code, node) in [(1, NODE_A), (2, NODE_B)] {
                    let mut p = Payload::new();
                    p.push_object(&binder_obj(node, node + 1, 0));
                    let rets = c.transact(0, code, 0, &p);
                    let reply = c.received(&find(&rets, BR_REPLY));
                    let mut w = CommandWriter::new();
                    bc::free_buffer(&mut w, reply.tr.data_buffer);
                    c.write(w.as_bytes());
                }
                tell("DONE", "");
                // Alive until the parent is done.
                let _ = hear();
            }
        },
    );
}

const NODE_C: u64 = 0x6113_0c00;

/// A call dropped undelivered because its thread exited (binder_thread_release →
/// binder_release_work → binder_send_failed_reply → binder_free_transaction) leaves its
/// buffer allocated until the process exits, and that buffer keeps its strong reference on
/// the target node: when every other reference goes, the owner hears no BR_RELEASE.
/// (Differential seed 6113.)
#[test]
fn call_dropped_at_thread_exit_keeps_its_buffer_and_target_node() {
    run(
        test_name!(call_dropped_at_thread_exit_keeps_its_buffer_and_target_node),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut owner = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                let first = m.received(&find(&rets, BR_TRANSACTION));
                let h = first.object::<FlatBinderObject>(0).handle();
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &h);
                bc::free_buffer(&mut w, first.tr.data_buffer);
                bc::reply(&mut w, 0, 0, &Payload::new());
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "keeping the node and replying",
                );
                // While handling the owner's second call, call its node: the call is queued
                // on the owner's thread that waits for this reply.
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                let second = m.received(&find(&rets, BR_TRANSACTION));
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, h, 7, 0, &Payload::bytes(b"call back"));
                m.write(w.as_bytes());
                owner.send("CALLED");
                assert_eq!(owner.expect("EXITED"), "");
                let rets = m.write_read_until_any(&[], &[BR_DEAD_REPLY]);
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_DEAD_REPLY"],
                    "the call back, dropped with the thread",
                );
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &h);
                bc::free_buffer(&mut w, second.tr.data_buffer);
                m.write(w.as_bytes());
                owner.send("RELEASED");
                assert_eq!(
                    owner.expect("RESULT"),
                    "BR_NOOP",
                    "the dropped call's buffer still holds the node strong"
                );
                owner.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut p = Payload::new();
                p.push_object(&binder_obj(NODE_C, NODE_C + 1, 0));
                let rets = c.transact(0, 1, 0, &p);
                assert_stream(
                    &rets,
                    &[
                        "BR_INCREFS",
                        "BR_ACQUIRE",
                        "BR_TRANSACTION_COMPLETE",
                        "BR_REPLY",
                    ],
                    "registering a node",
                );
                let reply = c.received(&find(&rets, BR_REPLY));
                c.free_and_ack_node(reply.tr.data_buffer, NODE_C, NODE_C + 1);
                // The second call, written only: this thread now waits for its reply.
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, 0, 2, 0, &Payload::bytes(b"waiting"));
                c.write(w.as_bytes());
                hear_exact("CALLED");
                c.dev.thread_exit().expect("BINDER_THREAD_EXIT");
                tell("EXITED", "");
                hear_exact("RELEASED");
                let rets = c.probe_process_work();
                tell("RESULT", &names(&rets).join(","));
                let _ = hear();
            }
        },
    );
}
