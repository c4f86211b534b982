//! The receiver's buffer area: exhaustion, the oneway half, recovery after BC_FREE_BUFFER.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn env_usize(name: &str) -> usize {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap()
}

/// Buffers of received transactions stay allocated in the receiver's area
/// until BC_FREE_BUFFER. binder_alloc_new_buf fails with -ENOSPC when no free chunk fits, and
/// binder_transaction turns that into BR_FAILED_REPLY for the sender (no
/// BR_TRANSACTION_COMPLETE, nothing delivered). Freeing a buffer makes room again.
#[test]
fn exhausted_buffer_area_fails_until_a_buffer_is_freed() {
    run(
        test_name!(exhausted_buffer_area_fails_until_a_buffer_is_freed),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let area = m.dev.buffer_area().1;
                assert!(area >= 64 * 1024, "buffer area of {area} bytes");
                let big = (area * 2 / 5) & !7;
                let mut child = ctx.spawn("client", &[("BIG", big.to_string())]);
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                let mut next = w.into_bytes();
                let mut held = Vec::new();
                for i in 0..2u8 {
                    let rets = m.write_read_until_any(&next, &[BR_TRANSACTION]);
                    next = Vec::new();
                    assert_stream(&rets, &["BR_TRANSACTION"], "manager");
                    let t = find(&rets, BR_TRANSACTION).txn();
                    assert_eq!(t.code, i as u32 + 1);
                    assert_eq!(t.data_size as usize, big);
                    let data = m
                        .dev
                        .buffer_bytes(t.data_buffer, big)
                        .expect("data in the buffer area");
                    assert!(
                        data == pattern(big, i).as_slice(),
                        "transaction {i}: data corrupted"
                    );
                    held.push(t.data_buffer);
                    // Reply but keep the buffer.
                    let mut w = CommandWriter::new();
                    bc::reply(&mut w, 0, 0, &Payload::new());
                    assert_stream(
                        &m.write_read(w.as_bytes()),
                        &["BR_TRANSACTION_COMPLETE"],
                        "reply",
                    );
                }
                assert_eq!(child.expect("FULL"), "");
                assert_eq!(
                    names(&m.probe_process_work()),
                    ["BR_NOOP"],
                    "the failed transaction was delivered"
                );
                m.free(held.remove(0));
                child.send("FREED");
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                let t = find(&rets, BR_TRANSACTION).txn();
                assert_eq!((t.code, t.data_size as usize), (4, big));
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                bc::free_buffer(&mut w, held.remove(0));
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "reply",
                );
                assert_eq!(child.expect("DONE"), "");
                child.finish();
            }
            Some(_) => {
                let big = env_usize("BIG");
                let c = Proc::open();
                for i in 0..2u8 {
                    let rets = c.transact(0, i as u32 + 1, 0, &Payload::bytes(&pattern(big, i)));
                    c.free_reply(&rets, "call that fits");
                }
                let rets = c.transact(0, 3, 0, &Payload::bytes(&pattern(big, 3)));
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "call when the receiver's area is full",
                );
                tell("FULL", "");
                hear_exact("FREED");
                let rets = c.transact(0, 4, 0, &Payload::bytes(&pattern(big, 4)));
                c.free_reply(&rets, "call after a buffer was freed");
                tell("DONE", "");
            }
        },
    );
}

/// binder_alloc: oneway transactions may only use half of the area (free_async_space starts
/// at half the mapping; binder_alloc_new_buf fails an async buffer larger than what is left
/// with -ENOSPC → BR_FAILED_REPLY). The same size as a sync call fits; a oneway under half
/// fits. A transaction larger than the whole area fails too.
#[test]
fn oneway_may_use_only_half_of_the_area() {
    run(
        test_name!(oneway_may_use_only_half_of_the_area),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let area = m.dev.buffer_area().1;
                let over_half = (area * 3 / 5) & !7;
                let under_half = (area * 2 / 5) & !7;
                let mut child = ctx.spawn(
                    "client",
                    &[
                        ("OVER_HALF", over_half.to_string()),
                        ("UNDER_HALF", under_half.to_string()),
                        ("AREA", area.to_string()),
                    ],
                );
                let rets = m.enter_looper_until_transaction();
                assert_stream(&rets, &["BR_TRANSACTION"], "manager");
                let t = find(&rets, BR_TRANSACTION).txn();
                assert_eq!(
                    (t.code, t.flags, t.data_size as usize),
                    (2, 0, over_half),
                    "only the sync call arrives first"
                );
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "reply",
                );
                let rets = m.write_read_until_any(&[], &[BR_TRANSACTION]);
                let t = find(&rets, BR_TRANSACTION).txn();
                assert_eq!(
                    (t.code, t.flags & TF_ONE_WAY, t.data_size as usize),
                    (3, TF_ONE_WAY, under_half)
                );
                m.free(t.data_buffer);
                assert_eq!(child.expect("DONE"), "");
                child.finish();
            }
            Some(_) => {
                let over_half = env_usize("OVER_HALF");
                let under_half = env_usize("UNDER_HALF");
                let area = env_usize("AREA");
                let c = Proc::open();
                let rets = c.transact(0, 1, TF_ONE_WAY, &Payload::bytes(&pattern(over_half, 1)));
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "oneway larger than half the area",
                );
                let rets = c.transact(0, 9, 0, &Payload::bytes(&pattern(area + 4096, 9)));
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "call larger than the whole area",
                );
                let rets = c.transact(0, 2, 0, &Payload::bytes(&pattern(over_half, 2)));
                c.free_reply(&rets, "sync call of the same size");
                let rets = c.transact(0, 3, TF_ONE_WAY, &Payload::bytes(&pattern(under_half, 3)));
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE"],
                    "oneway under half the area",
                );
                tell("DONE", "");
            }
        },
    );
}

/// Oneway spam detection (binder_alloc.c, debug_low_async_space_locked): once a oneway
/// allocation leaves less than a tenth of the area as async space and the sending process holds
/// more than a quarter of the area in async buffers, that transaction is flagged; a sender
/// that enabled BINDER_ENABLE_ONEWAY_SPAM_DETECTION gets BR_ONEWAY_SPAM_SUSPECT instead of
/// BR_TRANSACTION_COMPLETE for it (binder_thread_read), others get BR_TRANSACTION_COMPLETE.
/// The flag resets when space comes back.
#[test]
fn oneway_spam_suspect_when_enabled() {
    run(
        test_name!(oneway_spam_suspect_when_enabled),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let area = m.dev.buffer_area().1;
                let size = (area / 18) & !7;
                let mut child = ctx.spawn("client", &[("SIZE", size.to_string())]);
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                let mut next = w.into_bytes();
                for (round, count) in [("ROUND1", 8), ("ROUND2", 8), ("ROUND3", 1)] {
                    // Hold the first buffer until the whole round was sent, then drain.
                    for i in 0..count {
                        let rets = m.write_read_until_any(&next, &[BR_TRANSACTION]);
                        let t = find(&rets, BR_TRANSACTION).txn();
                        assert_eq!(
                            (t.flags & TF_ONE_WAY, t.data_size as usize),
                            (TF_ONE_WAY, size),
                            "{round} #{i}"
                        );
                        if i == 0 {
                            assert_eq!(child.expect(round), "");
                        }
                        let mut w = CommandWriter::new();
                        bc::free_buffer(&mut w, t.data_buffer);
                        next = w.into_bytes();
                    }
                    m.write(&next);
                    next = Vec::new();
                    child.send("FREED");
                }
                child.finish();
            }
            Some(_) => {
                let size = env_usize("SIZE");
                let c = Proc::open();
                let send = |c: &Proc| {
                    let mut w = CommandWriter::new();
                    let p = Payload::bytes(&pattern(size, 0));
                    bc::transaction(&mut w, 0, 1, TF_ONE_WAY, &p);
                    c.write_read_until_any(
                        w.as_bytes(),
                        &[
                            BR_TRANSACTION_COMPLETE,
                            BR_ONEWAY_SPAM_SUSPECT,
                            BR_FAILED_REPLY,
                            BR_DEAD_REPLY,
                        ],
                    )
                };
                for i in 0..8 {
                    assert_stream(
                        &send(&c),
                        &["BR_TRANSACTION_COMPLETE"],
                        &format!("detection off, oneway {i}"),
                    );
                }
                tell("ROUND1", "");
                hear_exact("FREED");
                c.dev
                    .enable_oneway_spam_detection(true)
                    .expect("BINDER_ENABLE_ONEWAY_SPAM_DETECTION");
                for i in 0..7 {
                    assert_stream(
                        &send(&c),
                        &["BR_TRANSACTION_COMPLETE"],
                        &format!("detection on, oneway {i}"),
                    );
                }
                assert_stream(
                    &send(&c),
                    &["BR_ONEWAY_SPAM_SUSPECT"],
                    "detection on, the oneway crossing the threshold",
                );
                tell("ROUND2", "");
                hear_exact("FREED");
                assert_stream(
                    &send(&c),
                    &["BR_TRANSACTION_COMPLETE"],
                    "after the space came back",
                );
                tell("ROUND3", "");
                hear_exact("FREED");
            }
        },
    );
}
