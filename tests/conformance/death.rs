//! Death notifications and processes killed with SIGKILL.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;

const NODE: u64 = 0xD0D0_0001;
const NODE_COOKIE: u64 = 0xD0D0_0002;

/// Child side shared by both tests: registers one node with the manager (handle 0), answers
/// BR_INCREFS / BR_ACQUIRE, and tells the parent.
fn register_node(c: &Proc) {
    let mut p = Payload::new();
    p.push_object(&binder_obj(NODE, NODE_COOKIE, 0));
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    bc::transaction(&mut w, 0, 1, 0, &p);
    let rets = c.write_read_until_any(w.as_bytes(), &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY]);
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
    c.free_and_ack_node(reply.tr.data_buffer, NODE, NODE_COOKIE);
}

/// Manager side: receives the child's node, keeps a strong reference (BC_ACQUIRE), asks for a
/// death notification, replies. Returns the handle.
fn accept_node(m: &Proc, death_cookie: u64) -> u32 {
    let rets = m.enter_looper_until_transaction();
    assert_stream(&rets, &["BR_TRANSACTION"], "manager receiving a node");
    let r = m.received(&find(&rets, BR_TRANSACTION));
    let obj: FlatBinderObject = r.object(0);
    assert_eq!(obj.hdr.type_, BINDER_TYPE_HANDLE);
    let h = obj.handle();
    let mut w = CommandWriter::new();
    w.cmd_with(BC_ACQUIRE, &h);
    bc::handle_cookie(&mut w, BC_REQUEST_DEATH_NOTIFICATION, h, death_cookie);
    bc::reply(&mut w, 0, 0, &Payload::new());
    bc::free_buffer(&mut w, r.tr.data_buffer);
    let rets = m.write_read(w.as_bytes());
    assert_stream(
        &rets,
        &["BR_TRANSACTION_COMPLETE"],
        "manager replying (the owner is alive: no BR_DEAD_BINDER)",
    );
    h
}

/// Death notifications: BC_REQUEST_DEATH_NOTIFICATION on a handle whose owner is SIGKILLed
/// gives BR_DEAD_BINDER(cookie) on the process queue (binder_node_release, via
/// binder_deferred_release of the dead process); BC_DEAD_BINDER_DONE then
/// BC_CLEAR_DEATH_NOTIFICATION gives BR_CLEAR_DEATH_NOTIFICATION_DONE(cookie) (on the looper
/// thread's own queue). A request on an already dead node gives BR_DEAD_BINDER at once
/// (BC_REQUEST_DEATH_NOTIFICATION, ref->node->proc == NULL). A call to the dead handle is
/// BR_DEAD_REPLY (binder_get_node_refs_for_txn).
#[test]
fn death_notification_on_sigkill() {
    run(test_name!(death_notification_on_sigkill), |ctx| {
        match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("owner", &[]);
                let h = accept_node(&m, 0xD1E);
                assert_eq!(child.expect("REGISTERED"), "");
                child.kill();
                let rets = m.write_read_until_any(&[], &[BR_DEAD_BINDER]);
                assert_stream(&rets, &["BR_DEAD_BINDER"], "after the owner was killed");
                assert_eq!(find(&rets, BR_DEAD_BINDER).cookie(), 0xD1E);

                let mut w = CommandWriter::new();
                w.cmd_with(BC_DEAD_BINDER_DONE, &0xD1Eu64);
                bc::handle_cookie(&mut w, BC_CLEAR_DEATH_NOTIFICATION, h, 0xD1E);
                let rets =
                    m.write_read_until_any(w.as_bytes(), &[BR_CLEAR_DEATH_NOTIFICATION_DONE]);
                assert_stream(&rets, &["BR_CLEAR_DEATH_NOTIFICATION_DONE"], "clearing");
                assert_eq!(
                    find(&rets, BR_CLEAR_DEATH_NOTIFICATION_DONE).cookie(),
                    0xD1E
                );

                // The node is already dead: a new request fires at once.
                let mut w = CommandWriter::new();
                bc::handle_cookie(&mut w, BC_REQUEST_DEATH_NOTIFICATION, h, 0xD2E);
                let rets = m.write_read_until_any(w.as_bytes(), &[BR_DEAD_BINDER]);
                assert_stream(&rets, &["BR_DEAD_BINDER"], "request on a dead node");
                assert_eq!(find(&rets, BR_DEAD_BINDER).cookie(), 0xD2E);
                let mut w = CommandWriter::new();
                w.cmd_with(BC_DEAD_BINDER_DONE, &0xD2Eu64);
                bc::handle_cookie(&mut w, BC_CLEAR_DEATH_NOTIFICATION, h, 0xD2E);
                let rets =
                    m.write_read_until_any(w.as_bytes(), &[BR_CLEAR_DEATH_NOTIFICATION_DONE]);
                assert_stream(
                    &rets,
                    &["BR_CLEAR_DEATH_NOTIFICATION_DONE"],
                    "clearing again",
                );
                assert_eq!(
                    find(&rets, BR_CLEAR_DEATH_NOTIFICATION_DONE).cookie(),
                    0xD2E
                );

                // Calls to the dead node: BR_DEAD_REPLY (no BR_TRANSACTION_COMPLETE).
                let rets = m.transact(h, 5, 0, &Payload::bytes(b"hello?"));
                assert_stream(&rets, &["BR_DEAD_REPLY"], "call to a dead node");
                let rets = m.transact(h, 5, TF_ONE_WAY, &Payload::bytes(b"hello?"));
                assert_stream(&rets, &["BR_DEAD_REPLY"], "oneway to a dead node");
                let mut w = CommandWriter::new();
                w.cmd_with(BC_RELEASE, &h);
                let (consumed, rets) = m.write_then_marker(w.as_bytes());
                assert_eq!(consumed, 8 + 4 + 64);
                assert_stream(&rets, &["BR_FAILED_REPLY"], "release then marker");
            }
            Some(_) => {
                let c = Proc::open();
                register_node(&c);
                tell("REGISTERED", "");
                // Wait to be killed.
                while hear().is_some() {}
            }
        }
    });
}

/// A process SIGKILLed while it handles a sync call: binder_deferred_release →
/// binder_thread_release finds the incoming transaction on the dead thread and
/// binder_send_failed_reply gives the caller BR_DEAD_REPLY (after its deferred
/// BR_TRANSACTION_COMPLETE); then the node's death reaches the holder as BR_DEAD_BINDER.
#[test]
fn process_killed_during_a_call_gives_dead_reply() {
    run(
        test_name!(process_killed_during_a_call_gives_dead_reply),
        |ctx| match ctx.role.as_deref() {
            None => {
                // The shim (embedded in this process) and the kernel alike must give back
                // every fd once the killed process and our own device are gone.
                let baseline = open_fds();
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("owner", &[]);
                let h = accept_node(&m, 0xD3E);
                assert_eq!(child.expect("REGISTERED"), "");
                let killer = std::thread::spawn(move || {
                    assert_eq!(child.expect("GOT"), "3");
                    child.kill();
                });
                let mut w = CommandWriter::new();
                bc::transaction(&mut w, h, 3, 0, &Payload::bytes(b"please die"));
                let rets =
                    m.write_read_until(w.as_bytes(), "BR_DEAD_REPLY and BR_DEAD_BINDER", |rs| {
                        rs.iter().any(|r| r.cmd == BR_DEAD_BINDER)
                            && rs.iter().any(|r| r.cmd == BR_DEAD_REPLY)
                            || rs
                                .iter()
                                .any(|r| r.cmd == BR_REPLY || r.cmd == BR_FAILED_REPLY)
                    });
                killer.join().unwrap();
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_DEAD_REPLY", "BR_DEAD_BINDER"],
                    "caller whose callee was killed",
                );
                assert_eq!(find(&rets, BR_DEAD_BINDER).cookie(), 0xD3E);
                let mut w = CommandWriter::new();
                w.cmd_with(BC_DEAD_BINDER_DONE, &0xD3Eu64);
                bc::handle_cookie(&mut w, BC_CLEAR_DEATH_NOTIFICATION, h, 0xD3E);
                w.cmd_with(BC_RELEASE, &h);
                let rets =
                    m.write_read_until_any(w.as_bytes(), &[BR_CLEAR_DEATH_NOTIFICATION_DONE]);
                assert_stream(&rets, &["BR_CLEAR_DEATH_NOTIFICATION_DONE"], "clearing");
                assert_shim_accounting(1, "after the callee was killed mid-call");
                drop(m);
                assert_shim_accounting(0, "after the manager went too");
                assert_fds_return_to(&baseline, "after the killed callee and the manager went");
            }
            Some(_) => {
                let c = Proc::open();
                register_node(&c);
                tell("REGISTERED", "");
                let rets = c.write_read_until_any(&[], &[BR_TRANSACTION]);
                let t = find(&rets, BR_TRANSACTION).txn();
                tell("GOT", &t.code.to_string());
                // Never reply: wait to be killed.
                while hear().is_some() {}
            }
        },
    );
}

const MINE: u64 = 0xE0E0_0001;
const MINE_COOKIE: u64 = 0xE0E0_0002;

/// Process exit drops the process's references (binder_deferred_release →
/// binder_cleanup_ref_olocked → binder_dec_node_nilocked): the owner of a node the dead
/// process held gets BR_RELEASE then BR_DECREFS. Also pins the owner's side of a BINDER object
/// sent in a reply: BR_INCREFS, BR_ACQUIRE, BR_TRANSACTION_COMPLETE on the replying thread.
#[test]
fn refs_of_a_killed_process_are_released() {
    run(
        test_name!(refs_of_a_killed_process_are_released),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("holder", &[]);
                let rets = m.enter_looper_until_transaction();
                let t = find(&rets, BR_TRANSACTION).txn();
                let mut reply = Payload::new();
                reply.push_object(&binder_obj(MINE, MINE_COOKIE, 0));
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &reply);
                bc::free_buffer(&mut w, t.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_stream(
                    &rets,
                    &["BR_INCREFS", "BR_ACQUIRE", "BR_TRANSACTION_COMPLETE"],
                    "owner replying with a binder",
                );
                assert_eq!(find(&rets, BR_INCREFS).ptr_cookie(), (MINE, MINE_COOKIE));
                assert_eq!(find(&rets, BR_ACQUIRE).ptr_cookie(), (MINE, MINE_COOKIE));
                let mut w = CommandWriter::new();
                bc::ptr_cookie(&mut w, BC_INCREFS_DONE, MINE, MINE_COOKIE);
                bc::ptr_cookie(&mut w, BC_ACQUIRE_DONE, MINE, MINE_COOKIE);
                m.write(w.as_bytes());
                assert_eq!(child.expect("HOLDING"), "1");
                child.kill();
                let rets = m.write_read_until(&[], "BR_DECREFS", |rs| {
                    rs.iter().any(|r| r.cmd == BR_DECREFS)
                });
                assert_stream(
                    &rets,
                    &["BR_RELEASE", "BR_DECREFS"],
                    "owner after the holder was killed",
                );
                assert!(
                    without_noop(&rets)
                        .iter()
                        .all(|r| r.ptr_cookie() == (MINE, MINE_COOKIE)),
                    "{rets:?}"
                );
            }
            Some(_) => {
                let c = Proc::open();
                let rets = c.transact(0, 1, 0, &Payload::new());
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE", "BR_REPLY"], "holder");
                let r = c.received(&find(&rets, BR_REPLY));
                let obj: FlatBinderObject = r.object(0);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_HANDLE);
                let mut w = CommandWriter::new();
                w.cmd_with(BC_ACQUIRE, &obj.handle());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                c.write(w.as_bytes());
                tell("HOLDING", &obj.handle().to_string());
                while hear().is_some() {}
            }
        },
    );
}

/// BINDER_THREAD_EXIT of a thread that holds an incoming sync call: binder_thread_release
/// sends BR_DEAD_REPLY to the caller (binder_send_failed_reply), after its deferred
/// BR_TRANSACTION_COMPLETE. The OS thread's next call is a new binder thread.
#[test]
fn thread_exit_with_a_pending_call_gives_dead_reply() {
    run(
        test_name!(thread_exit_with_a_pending_call_gives_dead_reply),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("client", &[]);
                let rets = m.enter_looper_until_transaction();
                let t = find(&rets, BR_TRANSACTION).txn();
                m.dev.thread_exit().expect("BINDER_THREAD_EXIT");
                assert_eq!(
                    child.expect("RESULT"),
                    "BR_TRANSACTION_COMPLETE,BR_DEAD_REPLY"
                );
                // The buffer still belongs to the process: freeing it from a new thread works,
                // and that new thread's first read returns at once.
                let mut w = CommandWriter::new();
                bc::free_buffer(&mut w, t.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_eq!(
                    names(&rets),
                    ["BR_NOOP"],
                    "a new binder thread's first read: {rets:?}"
                );
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let rets = without_noop(&c.transact(0, 1, 0, &Payload::bytes(b"abandoned")));
                tell("RESULT", &names(&rets).join(","));
            }
        },
    );
}
