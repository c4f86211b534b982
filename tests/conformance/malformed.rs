//! Malformed input: what the kernel answers, command by command.
//!
//! Most of these are BR_FAILED_REPLY with the ioctl succeeding (binder_transaction's error
//! paths queue thread->return_error); a few are -EINVAL from binder_thread_write; some are
//! silently ignored (binder_user_error and go on). Calls that need a target go to a "sink"
//! child (the context manager) that reports every transaction it receives; each test ends
//! with a valid call that must be the first thing the sink saw.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::device::Errno;
use bittube::binder_ipc::uapi::*;
use std::fs::File;
use std::os::fd::AsRawFd;

const FINAL_CODE: u32 = 0x7e57;

/// The sink: the context manager, accepting fds, replying empty to everything and telling
/// the parent `TXN code=… size=… offsets=…` for each transaction.
fn sink() {
    let s = Proc::open();
    s.become_context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS, 0x5111, 0x5112);
    exit_when_parent_closes_stdin();
    tell("READY", "");
    let empty = Payload::new();
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut next = w.into_bytes();
    loop {
        let rets = s.write_read_until_any(&next, &[BR_TRANSACTION]);
        let mut w = CommandWriter::new();
        for r in rets.iter().filter(|r| r.cmd == BR_TRANSACTION) {
            let t = s.received(r);
            tell(
                "TXN",
                &format!(
                    "code={:#x} size={} offsets={} flags={:#x}",
                    t.tr.code, t.tr.data_size, t.tr.offsets_size, t.tr.flags
                ),
            );
            if t.tr.flags & TF_ONE_WAY == 0 {
                bc::reply(&mut w, 0, 0, &empty);
            }
            bc::free_buffer(&mut w, t.tr.data_buffer);
        }
        next = w.into_bytes();
    }
}

/// Runs `f` as a client of a fresh sink, then checks that a valid call still works and that
/// the sink received nothing before it.
fn with_sink(ctx: &Ctx, f: impl FnOnce(&Proc)) {
    let mut child = ctx.spawn("sink", &[]);
    child.expect("READY");
    let p = Proc::open();
    f(&p);
    let rets = p.transact(0, FINAL_CODE, 0, &Payload::bytes(b"final"));
    p.free_reply(&rets, "valid call after the malformed ones");
    let line = child.expect("TXN");
    assert_eq!(
        kv(&line).get("code").map(String::as_str),
        Some(format!("{FINAL_CODE:#x}").as_str()),
        "the sink received a malformed transaction: {line}"
    );
    child.finish();
}

/// Sends `tr` as BC_TRANSACTION to handle 0 and expects exactly BR_FAILED_REPLY.
#[track_caller]
fn expect_failed(p: &Proc, tr: BinderTransactionData, what: &str) {
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &tr);
    let rets = p.write_read_until_any(
        w.as_bytes(),
        &[
            BR_FAILED_REPLY,
            BR_REPLY,
            BR_TRANSACTION_COMPLETE,
            BR_DEAD_REPLY,
        ],
    );
    assert_stream(&rets, &["BR_FAILED_REPLY"], what);
}

fn dev_null() -> File {
    File::open("/dev/null").unwrap()
}

/// binder_thread_write, default case: an unknown command is -EINVAL; write_consumed stays at
/// the start of that command (the commands before it were executed) and nothing is read
/// (binder_ioctl_write_read sets read_consumed 0). BC_ATTEMPT_ACQUIRE and BC_ACQUIRE_RESULT
/// are "not supported": -EINVAL too.
#[test]
fn unknown_command_is_einval() {
    run(test_name!(unknown_command_is_einval), |_| {
        let p = Proc::open();
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER)
            .cmd(ioc(0, b'c', 99, 0))
            .cmd(BC_EXIT_LOOPER);
        let c = p.call(w.as_bytes(), true);
        assert_eq!(c.result, Err(Errno::EINVAL), "unknown command");
        assert_eq!(
            c.write_consumed, 4,
            "write_consumed stops at the unknown command"
        );
        assert!(
            c.rets.is_empty(),
            "nothing is read after a write error: {:?}",
            c.rets
        );
        for cmd in [BC_ATTEMPT_ACQUIRE, BC_ACQUIRE_RESULT] {
            let mut w = CommandWriter::new();
            w.cmd_with(cmd, &0u64);
            let c = p.call(w.as_bytes(), true);
            assert_eq!(c.result, Err(Errno::EINVAL), "{}", command_name(cmd));
            assert_eq!(c.write_consumed, 0, "{}", command_name(cmd));
            assert!(c.rets.is_empty());
        }
        // The process still works.
        let (consumed, rets) = p.write_then_marker(&[]);
        assert_eq!(consumed, 68);
        assert_stream(&rets, &["BR_FAILED_REPLY"], "marker");
    });
}

/// binder_transaction: "got transaction to invalid handle": BR_FAILED_REPLY for sync and
/// oneway calls alike, no BR_TRANSACTION_COMPLETE.
#[test]
fn transaction_to_invalid_handle_fails() {
    run(test_name!(transaction_to_invalid_handle_fails), |_| {
        let p = Proc::open();
        for (handle, flags) in [(1, 0), (12345, 0), (INVALID_HANDLE, TF_ONE_WAY)] {
            let rets = p.transact(handle, 1, flags, &Payload::bytes(b"x"));
            assert_stream(
                &rets,
                &["BR_FAILED_REPLY"],
                &format!("handle {handle} flags {flags:#x}"),
            );
        }
    });
}

/// binder_transaction: offsets_size not a multiple of 8 → BR_FAILED_REPLY ("invalid offsets
/// size").
#[test]
fn offsets_size_not_multiple_of_8_fails() {
    run(
        test_name!(offsets_size_not_multiple_of_8_fails),
        |ctx| match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                // One valid object: only the offsets size is wrong.
                let null = dev_null();
                let mut pl = Payload::new();
                pl.push_object(&fd_obj(null.as_raw_fd(), 0));
                pl.offsets.extend([0, 0]);
                for bad in [4u64, 12] {
                    let mut tr = pl.tr(0, 1, 0);
                    tr.offsets_size = bad;
                    expect_failed(p, tr, &format!("offsets_size {bad}"));
                }
            }),
        },
    );
}

/// binder_get_object: an object offset that is not 4-aligned, lies beyond data_size, or
/// whose object runs past the end of the data is invalid → BR_FAILED_REPLY ("invalid offset
/// … or object"); also for oneway calls.
#[test]
fn misplaced_object_offsets_fail() {
    run(test_name!(misplaced_object_offsets_fail), |ctx| {
        match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                let null = dev_null();
                let obj = bytemuck::bytes_of(&fd_obj(null.as_raw_fd(), 0)).to_vec();
                // Misaligned: the object at offset 2.
                let mut misaligned = Payload::bytes(&[0u8; 2]);
                misaligned.push_bytes(&obj).push_bytes(&[0u8; 6]);
                misaligned.offsets.push(2);
                expect_failed(p, misaligned.tr(0, 1, 0), "object at a misaligned offset");
                // Out of range.
                for off in [24u64, 4096, u64::MAX - 7] {
                    let mut far = Payload::bytes(&obj);
                    far.offsets.push(off);
                    expect_failed(
                        p,
                        far.tr(0, 1, 0),
                        &format!("object offset {off} beyond the data"),
                    );
                    expect_failed(
                        p,
                        far.tr(0, 1, TF_ONE_WAY),
                        &format!("oneway, object offset {off} beyond the data"),
                    );
                }
                // Past the end: a 24-byte object at offset 16 of 32 bytes.
                let mut cut = Payload::bytes(&[0u8; 16]);
                cut.push_bytes(&obj[..16]);
                cut.offsets.push(16);
                expect_failed(
                    p,
                    cut.tr(0, 1, 0),
                    "object running past the end of the data",
                );
            }),
        }
    });
}

/// binder_transaction: object offsets must ascend without overlap (object_offset < off_min →
/// BR_FAILED_REPLY).
#[test]
fn overlapping_or_descending_objects_fail() {
    run(
        test_name!(overlapping_or_descending_objects_fail),
        |ctx| match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                let null = dev_null();
                let mut two = Payload::new();
                two.push_object(&fd_obj(null.as_raw_fd(), 0));
                two.push_object(&fd_obj(null.as_raw_fd(), 0));
                two.offsets = vec![24, 0];
                expect_failed(p, two.tr(0, 1, 0), "descending offsets");
                two.offsets = vec![0, 8];
                expect_failed(p, two.tr(0, 1, 0), "overlapping objects");
                two.offsets = vec![0, 0];
                expect_failed(p, two.tr(0, 1, 0), "the same object twice");
            }),
        },
    );
}

/// binder_get_object: an unknown object type is invalid → BR_FAILED_REPLY.
#[test]
fn unknown_object_type_fails() {
    run(test_name!(unknown_object_type_fails), |ctx| {
        match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                let mut pl = Payload::new();
                let mut obj = binder_obj(0x1, 0x2, 0);
                obj.hdr.type_ = 0x1234_5678;
                pl.push_object(&obj);
                expect_failed(p, pl.tr(0, 1, 0), "unknown object type");
            }),
        }
    });
}

/// binder_translate_handle: a HANDLE / WEAK_HANDLE object naming a handle the sender does not
/// hold → BR_FAILED_REPLY ("got transaction with invalid handle").
#[test]
fn invalid_handle_object_fails() {
    run(test_name!(invalid_handle_object_fails), |ctx| {
        match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                for ty in [BINDER_TYPE_HANDLE, BINDER_TYPE_WEAK_HANDLE] {
                    let mut obj = handle_obj(777);
                    obj.hdr.type_ = ty;
                    let mut pl = Payload::new();
                    pl.push_object(&obj);
                    expect_failed(
                        p,
                        pl.tr(0, 1, 0),
                        &format!("handle object {ty:#x} with an invalid handle"),
                    );
                }
            }),
        }
    });
}

/// binder_translate_fd: an fd the sender does not have → BR_FAILED_REPLY (-EBADF).
#[test]
fn bad_fd_fails() {
    run(test_name!(bad_fd_fails), |ctx| match ctx.role.as_deref() {
        Some(_) => sink(),
        None => with_sink(ctx, |p| {
            for fd in [999_999, -1] {
                let mut pl = Payload::new();
                pl.push_object(&fd_obj(fd, 0));
                expect_failed(p, pl.tr(0, 1, TF_ACCEPT_FDS), &format!("fd {fd}"));
            }
        }),
    });
}

/// binder_alloc_new_buf: a transaction larger than the receiver's whole area → BR_FAILED_REPLY
/// (sync and oneway).
#[test]
fn oversize_transaction_fails() {
    run(test_name!(oversize_transaction_fails), |ctx| {
        match ctx.role.as_deref() {
            Some(_) => sink(),
            None => with_sink(ctx, |p| {
                let huge = Payload::bytes(&vec![0x5a; 8 << 20]);
                expect_failed(p, huge.tr(0, 1, 0), "8 MiB call");
                expect_failed(p, huge.tr(0, 1, TF_ONE_WAY), "8 MiB oneway");
            }),
        }
    });
}

/// binder_transaction: data or offsets pointers the sender cannot read (copy_from_user fails)
/// and an absurd data_size (binder_alloc_new_buf refuses it) → BR_FAILED_REPLY, never a
/// crash. Played by a separate child so that a crash cannot take the test binary down.
#[test]
fn bad_pointers_and_sizes_fail() {
    run(test_name!(bad_pointers_and_sizes_fail), |ctx| {
        match ctx.role.as_deref() {
            Some("sink") => sink(),
            Some(_) => {
                let p = Proc::open();
                let good = Payload::bytes(&[7u8; 64]);
                let mut tr = good.tr(0, 1, 0);
                tr.data_buffer = 0x10;
                expect_failed(&p, tr, "data pointer into the null page");
                let mut with_offsets = Payload::bytes(&[0u8; 64]);
                with_offsets.offsets.push(0);
                let mut tr = with_offsets.tr(0, 1, 0);
                tr.data_offsets = 0x10;
                expect_failed(&p, tr, "offsets pointer into the null page");
                let mut tr = good.tr(0, 1, 0);
                tr.data_size = 1 << 62;
                expect_failed(&p, tr, "data_size 2^62");
                let mut tr = good.tr(0, 1, 0);
                tr.offsets_size = 1 << 62;
                expect_failed(&p, tr, "offsets_size 2^62");
                tell("OK", "");
            }
            None => with_sink(ctx, |_| {
                let mut bad = ctx.spawn("badptr", &[]);
                assert_eq!(bad.expect("OK"), "");
                bad.finish();
            }),
        }
    });
}

/// BC_FREE_BUFFER of an address that is no returned buffer: binder_alloc_prepare_to_free finds
/// nothing, binder_user_error, the write goes on and nothing is returned.
#[test]
fn free_of_a_bogus_buffer_is_ignored() {
    run(test_name!(free_of_a_bogus_buffer_is_ignored), |_| {
        let p = Proc::open();
        let (base, len) = p.dev.buffer_area();
        let mut w = CommandWriter::new();
        for addr in [0x1000, base, base + 8, base + len as u64 - 8, u64::MAX] {
            bc::free_buffer(&mut w, addr);
        }
        let (consumed, rets) = p.write_then_marker(w.as_bytes());
        assert_eq!(
            consumed,
            w.len() + 68,
            "the write stopped at a bogus BC_FREE_BUFFER"
        );
        assert_stream(&rets, &["BR_FAILED_REPLY"], "bogus frees then marker");
    });
}

/// Refcount and death commands on handles / nodes / cookies that do not exist: the kernel
/// logs a user error and goes on (binder_update_ref_for_handle -EINVAL; BC_INCREFS_DONE
/// "no match"; BC_REQUEST/CLEAR_DEATH_NOTIFICATION "invalid ref"; BC_DEAD_BINDER_DONE "not
/// found"): no error, nothing returned.
#[test]
fn refcount_commands_on_invalid_handles_are_ignored() {
    run(
        test_name!(refcount_commands_on_invalid_handles_are_ignored),
        |_| {
            let p = Proc::open();
            let mut w = CommandWriter::new();
            for cmd in [BC_INCREFS, BC_ACQUIRE, BC_RELEASE, BC_DECREFS] {
                w.cmd_with(cmd, &999u32);
            }
            w.cmd_with(BC_RELEASE, &0u32).cmd_with(BC_DECREFS, &0u32);
            bc::ptr_cookie(&mut w, BC_INCREFS_DONE, 0xabc, 0);
            bc::ptr_cookie(&mut w, BC_ACQUIRE_DONE, 0xabc, 0);
            bc::handle_cookie(&mut w, BC_REQUEST_DEATH_NOTIFICATION, 999, 1);
            bc::handle_cookie(&mut w, BC_CLEAR_DEATH_NOTIFICATION, 999, 1);
            w.cmd_with(BC_DEAD_BINDER_DONE, &1u64);
            let (consumed, rets) = p.write_then_marker(w.as_bytes());
            assert_eq!(consumed, w.len() + 68, "the write stopped early");
            assert_stream(&rets, &["BR_FAILED_REPLY"], "ignored commands then marker");
        },
    );
}

/// binder_thread_write, BC_INCREFS/BC_ACQUIRE of handle 0 by the context manager itself:
/// "context manager tried to acquire desc 0" → -EINVAL, write_consumed at that command.
#[test]
fn context_manager_acquiring_handle_0_is_einval() {
    run(
        test_name!(context_manager_acquiring_handle_0_is_einval),
        |_| {
            let m = Proc::context_manager(0);
            for cmd in [BC_INCREFS, BC_ACQUIRE] {
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER).cmd_with(cmd, &0u32);
                let c = m.call(w.as_bytes(), true);
                assert_eq!(c.result, Err(Errno::EINVAL), "{}", command_name(cmd));
                assert_eq!(c.write_consumed, 4, "{}", command_name(cmd));
                assert!(c.rets.is_empty());
            }
        },
    );
}
