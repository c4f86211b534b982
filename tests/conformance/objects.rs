//! BINDER / HANDLE object translation and node reference counting.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;

const P1: u64 = 0x5100_0000_0010;
const K1: u64 = 0x5100_0000_0011;
const P2: u64 = 0x5200_0000_0020;
const K2: u64 = 0x5200_0000_0021;

/// binder_translate_binder: a BINDER object becomes a HANDLE in the receiver (binder 0 →
/// the handle, cookie 0, flags kept); handles are the smallest free desc from 1
/// (binder_get_ref_for_node_olocked; 0 is only the manager's); the same node twice gives the
/// same handle. The owner learns of the new strong reference on the sending thread:
/// BR_INCREFS then BR_ACQUIRE with (ptr, cookie) per node (binder_inc_node_nilocked queues
/// node work on thread->todo; binder_thread_read, BINDER_WORK_NODE), before
/// BR_TRANSACTION_COMPLETE.
///
/// binder_translate_handle: a HANDLE sent to the node's owner becomes BINDER with the node's
/// ptr and cookie.
///
/// Release: the receiver's BC_FREE_BUFFER drops the references the buffer held
/// (binder_transaction_buffer_release); once the owner answered BC_INCREFS_DONE and
/// BC_ACQUIRE_DONE and freed its own reply buffer, each node's work yields BR_RELEASE then
/// BR_DECREFS with (ptr, cookie), on the process queue.
#[test]
fn binder_objects_become_handles_and_come_back_as_binders() {
    run(
        test_name!(binder_objects_become_handles_and_come_back_as_binders),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, 0xAA, 0xBB);
                let mut child = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                assert_stream(&rets, &["BR_TRANSACTION"], "manager receiving binders");
                let r = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(r.offsets, [8, 32, 56]);
                assert_eq!(&r.data[..8], &0xAAAA_0001u64.to_ne_bytes());
                let mut handles = Vec::new();
                for off in [8u64, 32, 56] {
                    let obj: FlatBinderObject = r.object(off);
                    assert_eq!(
                        obj.hdr.type_, BINDER_TYPE_HANDLE,
                        "object at {off}: {obj:?}"
                    );
                    assert_eq!(obj.cookie, 0, "translated handles carry cookie 0: {obj:?}");
                    assert_eq!(
                        obj.flags, FLAT_BINDER_FLAG_ACCEPTS_FDS,
                        "flags are kept: {obj:?}"
                    );
                    assert_eq!(
                        obj.binder >> 32,
                        0,
                        "the handle union's high half is 0: {obj:?}"
                    );
                    handles.push(obj.handle());
                }
                assert_eq!(
                    handles,
                    [1, 2, 1],
                    "handles are the smallest free ids from 1, one per node"
                );
                // Send handle 1 back to its owner in the reply.
                let mut reply = Payload::new();
                reply.push_object(&handle_obj(1));
                // Keep both references (BC_ACQUIRE) past the buffer's release until the
                // owner has seen BR_INCREFS/BR_ACQUIRE: a node whose refs all go before its
                // owner read that work is deleted silently (binder_dec_node_nilocked).
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &1u32).cmd_with(BC_ACQUIRE, &2u32);
                bc::reply(&mut w, 0, 0, &reply);
                bc::free_buffer(&mut w, r.tr.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "manager replying");
                assert_eq!(child.expect("DONES"), "");
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &1u32).cmd_with(BC_RELEASE, &2u32);
                m.write(w.as_bytes());
                assert_eq!(child.expect("RELEASED"), "ok");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut p = Payload::new();
                p.push_bytes(&0xAAAA_0001u64.to_ne_bytes());
                p.push_object(&binder_obj(P1, K1, FLAT_BINDER_FLAG_ACCEPTS_FDS));
                p.push_object(&binder_obj(P2, K2, FLAT_BINDER_FLAG_ACCEPTS_FDS));
                p.push_object(&binder_obj(P1, K1, FLAT_BINDER_FLAG_ACCEPTS_FDS));
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                bc::transaction(&mut w, 0, 7, 0, &p);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                assert_stream(
                    &rets,
                    &[
                        "BR_INCREFS",
                        "BR_ACQUIRE",
                        "BR_INCREFS",
                        "BR_ACQUIRE",
                        "BR_TRANSACTION_COMPLETE",
                        "BR_REPLY",
                    ],
                    "owner sending two nodes",
                );
                let node_work: Vec<_> = without_noop(&rets)
                    .iter()
                    .take(4)
                    .map(|r| (r.cmd, r.ptr_cookie()))
                    .collect();
                assert_eq!(
                    node_work,
                    [
                        (BR_INCREFS, (P1, K1)),
                        (BR_ACQUIRE, (P1, K1)),
                        (BR_INCREFS, (P2, K2)),
                        (BR_ACQUIRE, (P2, K2))
                    ]
                );
                let reply = c.received(&find(&rets, BR_REPLY));
                assert_eq!(reply.offsets, [0]);
                let back: FlatBinderObject = reply.object(0);
                assert_eq!(
                    back.hdr.type_, BINDER_TYPE_BINDER,
                    "a handle sent to its owner becomes BINDER: {back:?}"
                );
                assert_eq!(back.binder, P1);
                assert_eq!(back.cookie, K1);

                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, reply.tr.data_buffer);
                for (ptr, cookie) in [(P1, K1), (P2, K2)] {
                    bc::ptr_cookie(&mut w, BC_INCREFS_DONE, ptr, cookie);
                    bc::ptr_cookie(&mut w, BC_ACQUIRE_DONE, ptr, cookie);
                }
                c.write(w.as_bytes());
                tell("DONES", "");
                let done = |rs: &[Ret]| {
                    [P1, P2].iter().all(|p| {
                        rs.iter()
                            .any(|r| r.cmd == BR_DECREFS && r.ptr_cookie().0 == *p)
                            && rs
                                .iter()
                                .any(|r| r.cmd == BR_RELEASE && r.ptr_cookie().0 == *p)
                    })
                };
                let rets = without_noop(&c.write_read_until(
                    &[],
                    "BR_RELEASE/BR_DECREFS of both nodes",
                    done,
                ));
                assert_eq!(
                    rets.len(),
                    4,
                    "exactly one BR_RELEASE and one BR_DECREFS per node: {rets:?}"
                );
                for (ptr, cookie) in [(P1, K1), (P2, K2)] {
                    let mine: Vec<_> = rets.iter().filter(|r| r.ptr_cookie().0 == ptr).collect();
                    assert_eq!(
                        names(&mine.iter().map(|r| (*r).clone()).collect::<Vec<_>>()),
                        ["BR_RELEASE", "BR_DECREFS"]
                    );
                    assert!(mine.iter().all(|r| r.ptr_cookie() == (ptr, cookie)));
                }
                tell("RELEASED", "ok");
            }
        },
    );
}

const PW: u64 = 0x5700_0000_0030;
const KW: u64 = 0x5700_0000_0031;

/// Weak references: binder_translate_binder turns WEAK_BINDER into WEAK_HANDLE and the owner
/// gets BR_INCREFS only (binder_inc_node_nilocked with strong 0; BINDER_WORK_NODE).
/// WEAK_HANDLE sent to the owner becomes WEAK_BINDER (binder_translate_handle).
/// When the last weak reference goes the owner gets BR_DECREFS alone.
#[test]
fn weak_binder_becomes_weak_handle() {
    run(
        test_name!(weak_binder_becomes_weak_handle),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, 0xAA, 0xBB);
                let mut child = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION"],
                    "manager receiving a weak binder",
                );
                let r = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(r.offsets, [0]);
                let obj: FlatBinderObject = r.object(0);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_WEAK_HANDLE, "{obj:?}");
                assert_eq!(obj.cookie, 0);
                assert_eq!(obj.handle(), 1);
                let mut back = Payload::new();
                let mut weak = handle_obj(1);
                weak.hdr.type_ = BINDER_TYPE_WEAK_HANDLE;
                back.push_object(&weak);
                let mut w = CommandWriter::new();
                w.cmd_with(BC_INCREFS, &1u32);
                bc::reply(&mut w, 0, 0, &back);
                bc::free_buffer(&mut w, r.tr.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "manager replying",
                );
                assert_eq!(child.expect("DONES"), "");
                let mut w = CommandWriter::new();
                w.cmd_with(BC_DECREFS, &1u32);
                m.write(w.as_bytes());
                assert_eq!(child.expect("RELEASED"), "ok");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut p = Payload::new();
                let mut obj = binder_obj(PW, KW, 0);
                obj.hdr.type_ = BINDER_TYPE_WEAK_BINDER;
                p.push_object(&obj);
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                bc::transaction(&mut w, 0, 7, 0, &p);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                assert_stream(
                    &rets,
                    &["BR_INCREFS", "BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "owner sending a weak binder",
                );
                assert_eq!(find(&rets, BR_INCREFS).ptr_cookie(), (PW, KW));
                let reply = c.received(&find(&rets, BR_REPLY));
                let back: FlatBinderObject = reply.object(0);
                assert_eq!(back.hdr.type_, BINDER_TYPE_WEAK_BINDER, "{back:?}");
                assert_eq!((back.binder, back.cookie), (PW, KW));
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, reply.tr.data_buffer);
                bc::ptr_cookie(&mut w, BC_INCREFS_DONE, PW, KW);
                c.write(w.as_bytes());
                tell("DONES", "");
                let rets = c.write_read_until_any(&[], &[BR_DECREFS, BR_RELEASE]);
                assert_stream(
                    &rets,
                    &["BR_DECREFS"],
                    "owner after the last weak reference went",
                );
                assert_eq!(find(&rets, BR_DECREFS).ptr_cookie(), (PW, KW));
                tell("RELEASED", "ok");
            }
        },
    );
}

/// A transaction on a weak handle fails with BR_FAILED_REPLY, oneway or not
/// (binder_transaction → binder_get_ref_olocked(need_strong_ref): "tried to use weak ref as
/// strong ref").
#[test]
fn call_on_a_weak_handle_fails() {
    run(test_name!(call_on_a_weak_handle_fails), |ctx| {
        match ctx.role.as_deref() {
            None => {
                let m = Proc::open();
                m.become_context_manager(0, 0xAA, 0xBB);
                let child = ctx.spawn("owner", &[]);
                let rets = m.enter_looper_until_transaction();
                let r = m.received(&find(&rets, BR_TRANSACTION));
                let obj: FlatBinderObject = r.object(0);
                assert_eq!((obj.hdr.type_, obj.handle()), (BINDER_TYPE_WEAK_HANDLE, 1));
                let mut w = CommandWriter::new();
                w.cmd_with(BC_INCREFS, &1u32);
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "manager replying",
                );
                // Oneway first: a driver that wrongly delivers it cannot leave this test hanging.
                let rets = m.transact(1, 1, TF_ONE_WAY, &Payload::bytes(b"oneway on a weak ref"));
                assert_stream(&rets, &["BR_FAILED_REPLY"], "oneway on a weak handle");
                let rets = m.transact(1, 1, 0, &Payload::bytes(b"call on a weak ref"));
                assert_stream(&rets, &["BR_FAILED_REPLY"], "call on a weak handle");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut p = Payload::new();
                let mut obj = binder_obj(PW, KW, 0);
                obj.hdr.type_ = BINDER_TYPE_WEAK_BINDER;
                p.push_object(&obj);
                let rets = c.transact(0, 7, 0, &p);
                assert_stream(
                    &rets,
                    &["BR_INCREFS", "BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "owner",
                );
                c.free(find(&rets, BR_REPLY).txn().data_buffer);
                // Exit when the parent is done (a wrongly delivered call would arrive here).
                while hear().is_some() {}
            }
        }
    });
}

/// References to handle 0 need no handshake: BC_INCREFS / BC_ACQUIRE of handle 0 by a client
/// create its desc-0 reference (binder_thread_write → binder_inc_ref_for_node on the manager
/// node, which set_ctx_mgr created with has_strong_ref / has_weak_ref), and neither they nor
/// BC_RELEASE / BC_DECREFS send anything to anyone.
#[test]
fn handle_0_references_need_no_handshake() {
    run(
        test_name!(handle_0_references_need_no_handshake),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("client", &[]);
                let rets = m.enter_looper_until_transaction();
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION"],
                    "manager: no BR_INCREFS/BR_ACQUIRE for its own node",
                );
                let t = find(&rets, BR_TRANSACTION).txn();
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "reply",
                );
                assert_eq!(child.expect("RELEASED"), "");
                let probe = m.probe_process_work();
                assert_eq!(
                    names(&probe),
                    ["BR_NOOP"],
                    "no BR_RELEASE/BR_DECREFS for the manager node: {probe:?}"
                );
                child.send("BYE");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let mut w = CommandWriter::new();
                w.cmd_with(BC_INCREFS, &0u32).cmd_with(BC_ACQUIRE, &0u32);
                let (consumed, rets) = c.write_then_marker(w.as_bytes());
                assert_eq!(consumed, w.len() + 68);
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "acquiring handle 0, then the marker",
                );
                let rets = c.transact(0, 1, 0, &Payload::new());
                c.free_reply(&rets, "call");
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &0u32).cmd_with(BC_DECREFS, &0u32);
                let (consumed, rets) = c.write_then_marker(w.as_bytes());
                assert_eq!(consumed, w.len() + 68);
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "releasing handle 0, then the marker",
                );
                tell("RELEASED", "");
                hear_exact("BYE");
            }
        },
    );
}
