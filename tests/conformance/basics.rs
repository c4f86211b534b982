//! Version, empty reads, BR_NOOP, the context manager slot.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::device::Errno;
use bittube::binder_ipc::uapi::*;

#[test]
fn version_is_8() {
    run(test_name!(version_is_8), |_| {
        let p = Proc::open();
        assert_eq!(p.dev.version(), Ok(BINDER_CURRENT_PROTOCOL_VERSION));
        assert_eq!(BINDER_CURRENT_PROTOCOL_VERSION, 8);
    });
}

/// binder_ioctl_write_read: with write_size == 0 and read_size == 0 neither
/// binder_thread_write nor binder_thread_read runs: the call returns at once.
#[test]
fn empty_write_read_returns_at_once() {
    run(test_name!(empty_write_read_returns_at_once), |_| {
        let p = Proc::open();
        for _ in 0..3 {
            let c = p.call(&[], false);
            assert_eq!(c.result, Ok(()));
            assert_eq!(c.write_consumed, 0);
            assert!(
                c.rets.is_empty(),
                "nothing may be read with read_size 0: {:?}",
                c.rets
            );
        }
    });
}

/// binder_thread_read puts BR_NOOP first when read_consumed is 0; binder_get_thread creates a
/// thread with looper_need_return set, so the first read of a new thread returns at once with
/// that lone BR_NOOP instead of sleeping (the flag is cleared when the ioctl ends).
#[test]
fn first_read_of_a_new_thread_is_a_lone_noop() {
    run(
        test_name!(first_read_of_a_new_thread_is_a_lone_noop),
        |_| {
            let p = Proc::open();
            for i in 0..3 {
                let q = p.clone();
                let rets = std::thread::spawn(move || {
                    let rets = q.write_read(&[]);
                    let _ = q.dev.thread_exit();
                    rets
                })
                .join()
                .unwrap();
                assert_eq!(names(&rets), ["BR_NOOP"], "thread {i}: {rets:?}");
                assert_eq!(rets[0].payload, Vec::<u8>::new());
            }
        },
    );
}

/// binder_ioctl_set_ctx_mgr: a second BINDER_SET_CONTEXT_MGR(_EXT) while a manager node exists
/// is EBUSY, also for the manager itself; binder_deferred_release clears the slot when the
/// manager's process goes away.
#[test]
fn second_context_manager_is_ebusy() {
    run(test_name!(second_context_manager_is_ebusy), |_| {
        let a = Proc::open();
        a.become_context_manager(0, 0x1000, 0x2000);
        let b = Proc::open();
        assert_eq!(b.dev.set_context_mgr(), Err(Errno::EBUSY));
        assert_eq!(
            b.dev.set_context_mgr_ext(&binder_obj(0x3000, 0x4000, 0)),
            Err(Errno::EBUSY)
        );
        assert_eq!(a.dev.set_context_mgr(), Err(Errno::EBUSY));
        drop(a);
        // Released (asynchronously): b may take the slot.
        b.become_context_manager(0, 0x5000, 0x6000);
    });
}

/// binder_transaction: handle 0 with no context manager is BR_DEAD_REPLY; a sync call gets
/// no BR_TRANSACTION_COMPLETE on that path (the error replaces it). Played by a child
/// process so that no manager left over by this process is involved.
#[test]
fn call_to_missing_context_manager_is_dead_reply() {
    run(
        test_name!(call_to_missing_context_manager_is_dead_reply),
        |ctx| match ctx.role.as_deref() {
            None => {
                // Make sure any manager of earlier tests has been released.
                let probe = Proc::context_manager(0);
                drop(probe);
                let child = ctx.spawn("client", &[]);
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let start = std::time::Instant::now();
                loop {
                    let rets = c.transact(0, 1, 0, &Payload::bytes(b"anyone?"));
                    if names(&without_noop(&rets)) == ["BR_DEAD_REPLY"] {
                        break;
                    }
                    // Only the probe manager of the parent may still be there, being released:
                    // the kernel answers BR_DEAD_REPLY on that path too, a shim may not yet.
                    assert!(
                        start.elapsed() < std::time::Duration::from_secs(5),
                        "expected [BR_DEAD_REPLY], got {rets:?}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                // Oneway too: BR_DEAD_REPLY, no BR_TRANSACTION_COMPLETE.
                let rets = c.transact(0, 1, TF_ONE_WAY, &Payload::bytes(b"anyone?"));
                assert_stream(&rets, &["BR_DEAD_REPLY"], "oneway to a missing manager");
            }
        },
    );
}

/// binder_transaction: "got transaction to context manager from process owning it": a binder
/// process whose OS process (group leader pid) owns the manager node gets BR_FAILED_REPLY
/// for calls to handle 0, whether it is the manager itself or another open in that process.
#[test]
fn context_manager_process_calling_handle_0_fails() {
    run(
        test_name!(context_manager_process_calling_handle_0_fails),
        |_| {
            let m = Proc::open();
            m.become_context_manager(0, 0x10, 0x20);
            let other = Proc::open();
            // Oneway first: a driver that wrongly delivers it cannot leave this test hanging.
            let rets = other.transact(0, 1, TF_ONE_WAY, &Payload::bytes(b"self"));
            assert_stream(
                &rets,
                &["BR_FAILED_REPLY"],
                "oneway to handle 0 from the manager's OS process",
            );
            let rets = other.transact(0, 1, 0, &Payload::bytes(b"self"));
            assert_stream(
                &rets,
                &["BR_FAILED_REPLY"],
                "call to handle 0 from the manager's OS process",
            );
            let rets = m.transact(0, 1, 0, &Payload::bytes(b"self"));
            assert_stream(
                &rets,
                &["BR_FAILED_REPLY"],
                "call to handle 0 from the manager itself",
            );
        },
    );
}
