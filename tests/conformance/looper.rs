//! Looper threads and BR_SPAWN_LOOPER.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;

/// One write_read on a new thread of `p` (its first call: it returns at once), then
/// BINDER_THREAD_EXIT.
fn on_new_thread(p: &Proc, cmd: u32) -> Vec<Ret> {
    let q = p.clone();
    std::thread::spawn(move || {
        let mut w = CommandWriter::new();
        w.cmd(cmd);
        q.write_read(w.as_bytes())
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// binder_thread_read (end): when no thread waits for process work, none was requested and
/// fewer than max_threads were started, a looper thread's read gets BR_SPAWN_LOOPER written
/// over its leading BR_NOOP (requested_threads becomes 1). BC_REGISTER_LOOPER of the spawned
/// thread counts it as started (requested_threads_started); with max_threads reached no
/// further BR_SPAWN_LOOPER comes. With max_threads 0 (the default) it never comes, and a
/// thread that is not a looper never gets one.
#[test]
fn spawn_looper_when_no_thread_waits() {
    run(test_name!(spawn_looper_when_no_thread_waits), |_| {
        let p = Proc::open();
        assert_eq!(
            names(&on_new_thread(&p, BC_ENTER_LOOPER)),
            ["BR_NOOP"],
            "max_threads 0: no spawn request"
        );
        p.dev.set_max_threads(1).expect("BINDER_SET_MAX_THREADS");
        let plain = p.clone();
        let rets = std::thread::spawn(move || plain.write_read(&[]))
            .join()
            .unwrap();
        assert_eq!(
            names(&rets),
            ["BR_NOOP"],
            "a thread that is no looper is not asked to spawn"
        );
        let rets = on_new_thread(&p, BC_ENTER_LOOPER);
        assert_eq!(
            names(&rets),
            ["BR_SPAWN_LOOPER"],
            "BR_SPAWN_LOOPER replaces the BR_NOOP: {rets:?}"
        );
        let rets = on_new_thread(&p, BC_ENTER_LOOPER);
        assert_eq!(
            names(&rets),
            ["BR_NOOP"],
            "one request at a time (requested_threads is 1): {rets:?}"
        );
        let rets = on_new_thread(&p, BC_REGISTER_LOOPER);
        assert_eq!(
            names(&rets),
            ["BR_NOOP"],
            "the spawned thread registers; max_threads reached: {rets:?}"
        );
        let rets = on_new_thread(&p, BC_ENTER_LOOPER);
        assert_eq!(names(&rets), ["BR_NOOP"], "max_threads reached: {rets:?}");
    });
}

/// The libbinder pool pattern: with max_threads 1 and the only looper taking a call, nobody
/// is left waiting, so binder_thread_read asks for a new looper (BR_SPAWN_LOOPER over the
/// leading BR_NOOP of a read, exactly once while the request is pending). The spawned thread's
/// BC_REGISTER_LOOPER is accepted without error.
#[test]
fn spawn_looper_when_the_last_looper_gets_work() {
    run(
        test_name!(spawn_looper_when_the_last_looper_gets_work),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                m.dev.set_max_threads(1).expect("BINDER_SET_MAX_THREADS");
                let child = ctx.spawn("client", &[]);
                let rets = m.enter_looper_until_transaction();
                let spawns = rets.iter().filter(|r| r.cmd == BR_SPAWN_LOOPER).count();
                assert_eq!(spawns, 1, "exactly one BR_SPAWN_LOOPER: {rets:?}");
                let t = find(&rets, BR_TRANSACTION).txn();
                let spawned = on_new_thread(&m, BC_REGISTER_LOOPER);
                assert_eq!(
                    names(&spawned),
                    ["BR_NOOP"],
                    "the spawned looper registers: {spawned:?}"
                );
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                let rets = m.write_read(w.as_bytes());
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE"],
                    "reply; max_threads reached, no new request",
                );
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let rets = c.transact(0, 1, 0, &Payload::bytes(b"work"));
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE", "BR_REPLY"], "client");
            }
        },
    );
}
