//! Sync and oneway transactions, replies, nested calls.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;

const MGR_PTR: u64 = 0xC0DE_0000_0001;
const MGR_COOKIE: u64 = 0xC0DE_0000_0002;
const CALL_CODE: u32 = 0x1234_5678;
const REPLY_CODE: u32 = 0x99;

/// The manager thread's first write: enter the looper.
fn enter_looper() -> Vec<u8> {
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    w.into_bytes()
}

/// A sync call from a child to the manager (handle 0).
///
/// Receiver side (binder_thread_read): BR_TRANSACTION with target.ptr/cookie of the manager
/// node (set by BINDER_SET_CONTEXT_MGR_EXT), the sender's code and flags, sender_pid = the
/// sender's OS pid (task_tgid_nr_ns), sender_euid, data intact, data.ptr.offsets =
/// data.ptr.buffer + ALIGN(data_size, 8). The replier gets BR_TRANSACTION_COMPLETE at once.
/// Sender side: BR_TRANSACTION_COMPLETE (deferred by binder_enqueue_deferred_thread_work_ilocked)
/// then BR_REPLY with target 0, cookie 0, the reply's code and flags, sender_pid 0.
#[test]
fn sync_call_and_reply() {
    run(test_name!(sync_call_and_reply), |ctx| {
        match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS, MGR_PTR, MGR_COOKIE);
                let mut child = ctx.spawn("client", &[]);
                let rets = m.write_read_until_any(&enter_looper(), &[BR_TRANSACTION]);
                assert_stream(&rets, &["BR_TRANSACTION"], "manager receiving a call");
                let t = find(&rets, BR_TRANSACTION);
                let r = m.received(&t);
                assert_eq!(r.tr.target, MGR_PTR, "target.ptr is the manager node's ptr");
                assert_eq!(
                    r.tr.cookie, MGR_COOKIE,
                    "cookie is the manager node's cookie"
                );
                assert_eq!(r.tr.code, CALL_CODE);
                assert_eq!(r.tr.flags, TF_ACCEPT_FDS, "flags are passed through");
                assert_eq!(
                    r.tr.sender_pid,
                    child.pid(),
                    "sender_pid is the caller's OS pid"
                );
                assert_eq!(r.tr.sender_euid, euid());
                assert_eq!(r.tr.data_size, 13);
                assert_eq!(r.tr.offsets_size, 0);
                assert_eq!(r.tr.data_offsets, r.tr.data_buffer + align8(13));
                assert_eq!(r.data, b"hello, binder");
                let (base, len) = m.dev.buffer_area();
                assert!(r.tr.data_buffer >= base && r.tr.data_buffer < base + len as u64);

                let reply = Payload::bytes(b"reply-bytes");
                let mut w = CommandWriter::new();
                bc::reply(&mut w, REPLY_CODE, 0, &reply);
                bc::free_buffer(&mut w, r.tr.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE"],
                    "replier after BC_REPLY",
                );
                assert_eq!(child.expect("REPLY"), "ok");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let rets = c.transact(
                    0,
                    CALL_CODE,
                    TF_ACCEPT_FDS,
                    &Payload::bytes(b"hello, binder"),
                );
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "caller of a sync call",
                );
                let r = c.received(&find(&rets, BR_REPLY));
                assert_eq!(r.tr.target, 0);
                assert_eq!(r.tr.cookie, 0);
                assert_eq!(r.tr.code, REPLY_CODE);
                assert_eq!(r.tr.flags, 0);
                assert_eq!(r.tr.sender_pid, 0, "replies carry no sender pid");
                assert_eq!(r.tr.sender_euid, euid());
                assert_eq!(r.data, b"reply-bytes");
                assert_eq!(r.tr.data_offsets, r.tr.data_buffer + align8(11));
                c.free(r.tr.data_buffer);
                tell("REPLY", "ok");
            }
        }
    });
}

/// Oneway: the sender gets BR_TRANSACTION_COMPLETE at once (binder_enqueue_thread_work) and
/// no reply; the receiver sees TF_ONE_WAY and sender_pid 0 (t->from is NULL). A second oneway
/// to the same node waits on node->async_todo (binder_proc_transaction: has_async_transaction)
/// until the receiver frees the first buffer (binder_free_buf moves it to the process queue).
/// Freeing a buffer twice is ignored (binder_alloc_prepare_to_free finds nothing).
#[test]
fn oneway_is_complete_at_once_and_serialized_per_node() {
    run(
        test_name!(oneway_is_complete_at_once_and_serialized_per_node),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, MGR_PTR, MGR_COOKIE);
                let mut child = ctx.spawn("client", &[]);
                let rets = m.write_read_until_any(&enter_looper(), &[BR_TRANSACTION]);
                assert_stream(&rets, &["BR_TRANSACTION"], "first oneway");
                let first = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(first.tr.flags & TF_ONE_WAY, TF_ONE_WAY);
                assert_eq!(first.tr.code, 1);
                assert_eq!(
                    first.tr.sender_pid, 0,
                    "oneway transactions carry no sender pid"
                );
                assert_eq!(first.tr.sender_euid, euid());
                assert_eq!(first.tr.target, MGR_PTR);
                assert_eq!(first.data, b"one");
                assert_eq!(child.expect("SENT"), "2");
                // The second is held back on the node while the first buffer is not freed.
                let probe = m.probe_process_work();
                assert_eq!(
                    names(&probe),
                    ["BR_NOOP"],
                    "second oneway delivered before the first was freed: {probe:?}"
                );
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, first.tr.data_buffer);
                let rets = m.write_read_until_any(w.as_bytes(), &[BR_TRANSACTION]);
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION"],
                    "second oneway after BC_FREE_BUFFER",
                );
                let second = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(second.tr.code, 2);
                assert_eq!(second.tr.flags & TF_ONE_WAY, TF_ONE_WAY);
                assert_eq!(second.data, b"two");
                m.free(second.tr.data_buffer);
                // Double free: ignored, nothing queued, the write goes on.
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, second.tr.data_buffer);
                let (consumed, rets) = m.write_then_marker(w.as_bytes());
                assert_eq!(
                    consumed,
                    w.len() + 4 + 64,
                    "the write stopped at a double BC_FREE_BUFFER"
                );
                assert_stream(&rets, &["BR_FAILED_REPLY"], "double free then marker");
                child.send("DONE");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let one = Payload::bytes(b"one");
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, 0, 1, TF_ONE_WAY, &one);
                let rets = c.write_read(w.as_bytes());
                // The read after a oneway returns at once with BR_TRANSACTION_COMPLETE.
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "first oneway");
                let rets = c.transact(0, 2, TF_ONE_WAY, &Payload::bytes(b"two"));
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "second oneway");
                tell("SENT", "2");
                hear_exact("DONE");
            }
        },
    );
}

/// binder_transaction with reply set and an empty transaction stack: BR_FAILED_REPLY
/// ("got reply transaction with no transaction stack"), queued as thread->return_error;
/// binder_thread_write stops at the next command while that error is pending, so
/// write_consumed ends right after the BC_REPLY and the ioctl still succeeds.
#[test]
fn reply_without_transaction_fails_and_stops_the_write() {
    run(
        test_name!(reply_without_transaction_fails_and_stops_the_write),
        |_| {
            let p = Proc::open();
            let empty = Payload::new();
            let mut w = CommandWriter::new();
            bc::reply(&mut w, 0, 0, &empty);
            let reply_len = w.len();
            w.cmd(BC_ENTER_LOOPER).cmd(BC_EXIT_LOOPER);
            let c = p.call(w.as_bytes(), true);
            assert_eq!(c.result, Ok(()));
            assert_eq!(
                c.write_consumed, reply_len,
                "the write goes on past a failed BC_REPLY"
            );
            assert_eq!(
                names(&c.rets),
                ["BR_NOOP", "BR_FAILED_REPLY"],
                "got {:?}",
                c.rets
            );
            // The error was consumed: the rest of the stream is accepted now.
            let rest = &w.as_bytes()[reply_len..];
            let (consumed, rets) = p.write_then_marker(rest);
            assert_eq!(consumed, rest.len() + 4 + 64);
            assert_stream(&rets, &["BR_FAILED_REPLY"], "marker after the rest");
        },
    );
}

/// Nested call routing (binder_transaction, the transaction_stack walk): while the manager
/// handles call X from thread T of the child, it calls back into the child (a node the child
/// passed in X). The kernel queues that call Y on T itself (the thread waiting for X's reply),
/// not on the child's idle looper thread. T then sees BR_TRANSACTION(Y) with sender_pid =
/// the manager's pid, replies, and still gets X's reply afterwards.
#[test]
fn nested_call_goes_to_the_waiting_thread() {
    const NODE: u64 = 0xAB00_0001;
    const NODE_COOKIE: u64 = 0xAB00_0002;
    run(
        test_name!(nested_call_goes_to_the_waiting_thread),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, MGR_PTR, MGR_COOKIE);
                let mut child = ctx.spawn("client", &[("PARENT_PID", pid().to_string())]);
                let rets = m.write_read_until_any(&enter_looper(), &[BR_TRANSACTION]);
                let x = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(x.tr.code, 1);
                assert_eq!(x.offsets, [0]);
                let obj: FlatBinderObject = x.object(0);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_HANDLE);
                let handle = obj.handle();
                assert_eq!(handle, 1);
                // Call Y into the child while X is on our stack.
                let rets = m.transact(handle, 2, 0, &Payload::bytes(b"y"));
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "manager calling back",
                );
                let y_reply = m.received(&find(&rets, BR_REPLY));
                assert_eq!(y_reply.data, b"y-reply");
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, y_reply.tr.data_buffer);
                let x_reply = Payload::bytes(b"x-reply");
                bc::reply(&mut w, 0, 0, &x_reply);
                bc::free_buffer(&mut w, x.tr.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "manager replying to X");
                assert_eq!(child.expect("DONE"), "ok");
                child.finish();
            }
            Some(_) => {
                let parent_pid: i32 = std::env::var("PARENT_PID").unwrap().parse().unwrap();
                let c = Proc::open();
                // An idle looper thread that must NOT get the nested call.
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let idle = c.clone();
                std::thread::spawn(move || {
                    let first = idle.write_read(&enter_looper());
                    assert_eq!(names(&first), ["BR_NOOP"]);
                    ready_tx.send(()).unwrap();
                    loop {
                        let rets = idle.write_read(&[]);
                        if rets.iter().any(|r| r.cmd == BR_TRANSACTION) {
                            tell("WRONG", &format!("the idle looper thread got {rets:?}"));
                            std::process::exit(3);
                        }
                    }
                });
                ready_rx.recv().unwrap();
                let mut x = Payload::new();
                x.push_object(&binder_obj(NODE, NODE_COOKIE, 0));
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, 0, 1, 0, &x);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_TRANSACTION, BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                assert_stream(
                    &rets,
                    &[
                        "BR_INCREFS",
                        "BR_ACQUIRE",
                        "BR_TRANSACTION_COMPLETE",
                        "BR_TRANSACTION",
                    ],
                    "calling thread while the manager calls back",
                );
                let y = c.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(y.tr.target, NODE);
                assert_eq!(y.tr.cookie, NODE_COOKIE);
                assert_eq!(y.tr.code, 2);
                assert_eq!(y.tr.sender_pid, parent_pid);
                assert_eq!(y.data, b"y");
                let y_reply = Payload::bytes(b"y-reply");
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &y_reply);
                bc::free_buffer(&mut w, y.tr.data_buffer);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "X's reply after answering Y",
                );
                let xr = c.received(&find(&rets, BR_REPLY));
                assert_eq!(xr.data, b"x-reply");
                c.free(xr.tr.data_buffer);
                tell("DONE", "ok");
            }
        },
    );
}

/// binder_thread_read delivers at most one transaction per read (the loop breaks after a
/// BR_TRANSACTION): two oneways queued on the process (two nodes, so neither waits on the
/// other's async_todo) come out in two reads, in the order they were sent, with the target
/// ptr/cookie of their own node and sender_pid 0.
#[test]
fn one_transaction_per_read() {
    const N1: u64 = 0x6100_0001;
    const C1: u64 = 0x6100_0002;
    const N2: u64 = 0x6200_0001;
    const C2: u64 = 0x6200_0002;
    run(test_name!(one_transaction_per_read), |ctx| {
        match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, MGR_PTR, MGR_COOKIE);
                let mut child = ctx.spawn("owner", &[]);
                let rets = m.write_read_until_any(&enter_looper(), &[BR_TRANSACTION]);
                let r = m.received(&find(&rets, BR_TRANSACTION));
                let h1 = r.object::<FlatBinderObject>(0).handle();
                let h2 = r.object::<FlatBinderObject>(24).handle();
                assert_eq!((h1, h2), (1, 2));
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &h1).cmd_with(BC_ACQUIRE, &h2);
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "manager replying",
                );
                assert_eq!(child.expect("REGISTERED"), "");
                for (h, text) in [(h1, &b"to node 1"[..]), (h2, &b"to node 2"[..])] {
                    let rets = m.transact(h, 0x21, TF_ONE_WAY, &Payload::bytes(text));
                    assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "oneway to the child");
                }
                child.send("SENT");
                assert_eq!(child.expect("OK"), "");
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &h1).cmd_with(BC_RELEASE, &h2);
                m.write(w.as_bytes());
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut p = Payload::new();
                p.push_object(&binder_obj(N1, C1, 0));
                p.push_object(&binder_obj(N2, C2, 0));
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                bc::transaction(&mut w, 0, 1, 0, &p);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                assert_eq!(find(&rets, BR_REPLY).txn().data_size, 0);
                c.free(find(&rets, BR_REPLY).txn().data_buffer);
                tell("REGISTERED", "");
                hear_exact("SENT");
                for (node, cookie, text) in
                    [(N1, C1, &b"to node 1"[..]), (N2, C2, &b"to node 2"[..])]
                {
                    // One read (retrying only reads that brought nothing but BR_NOOP).
                    let mut rets = c.write_read(&[]);
                    while without_noop(&rets).is_empty() {
                        rets = c.write_read(&[]);
                    }
                    assert_stream(
                        &rets,
                        &["BR_TRANSACTION"],
                        "one read with two oneways queued",
                    );
                    let r = c.received(&find(&rets, BR_TRANSACTION));
                    assert_eq!(
                        (r.tr.target, r.tr.cookie, r.tr.sender_pid),
                        (node, cookie, 0)
                    );
                    assert_eq!(r.data, text);
                    c.free(r.tr.data_buffer);
                }
                tell("OK", "");
            }
        }
    });
}
