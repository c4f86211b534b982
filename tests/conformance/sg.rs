//! Scatter-gather transactions: BINDER_TYPE_PTR buffers and BINDER_TYPE_FDA fd arrays.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

const MAGIC_A: u64 = 0xA1A1_A1A1_A1A1_A1A1;
const MAGIC_Z: u64 = 0xA2A2_A2A2_A2A2_A2A2;
const B_BYTES: &[u8; 16] = b"bbbbbbbbBBBBBBBB";

/// BC_TRANSACTION_SG with a PTR buffer A, a PTR buffer B whose address sits inside A, and an
/// FDA of two fds inside A (binder_transaction: BINDER_TYPE_PTR, BINDER_TYPE_FDA,
/// binder_fixup_parent, binder_translate_fd_array, binder_do_deferred_txn_copies). The
/// receiver finds the buffers copied after the offsets array (sg_buf_offset =
/// ALIGN(offsets end, 8)), each PTR's buffer field and the pointer to B inside A rewritten to
/// receiver addresses, and the fds in A replaced by new FD_CLOEXEC fds naming the sender's
/// files. BC_FREE_BUFFER closes FDA fds (binder_transaction_buffer_release,
/// binder_deferred_fd_close).
#[test]
fn scatter_gather_buffers_and_fd_arrays() {
    run(
        test_name!(scatter_gather_buffers_and_fd_arrays),
        |ctx| match ctx.role.as_deref() {
            None => {
                let paths: Vec<PathBuf> = (0..2)
                    .map(|i| {
                        let p = std::env::temp_dir()
                            .join(format!("bittube-conformance-{}-fda{i}", pid()));
                        std::fs::write(&p, format!("fda file {i}")).unwrap();
                        p
                    })
                    .collect();
                let m = Proc::context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS);
                let mut child = ctx.spawn(
                    "sender",
                    &[
                        ("FDA0", paths[0].display().to_string()),
                        ("FDA1", paths[1].display().to_string()),
                    ],
                );
                let rets = m.enter_looper_until_transaction();
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION"],
                    "receiver of a scatter-gather transaction",
                );
                let r = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(r.tr.data_size, 128);
                assert_eq!(r.offsets, [8, 48, 88]);
                assert_eq!(&r.data[..8], &0x5C5Cu64.to_ne_bytes());
                let pa: BinderBufferObject = r.object(8);
                let pb: BinderBufferObject = r.object(48);
                let fda: BinderFdArrayObject = r.object(88);
                let sg_start = r.tr.data_buffer + align8(128) + 24;
                assert_eq!(
                    (pa.hdr.type_, pa.flags, pa.length),
                    (BINDER_TYPE_PTR, 0, 32)
                );
                assert_eq!(
                    pa.buffer, sg_start,
                    "A is copied right after the offsets array"
                );
                assert_eq!(
                    (pb.flags, pb.length, pb.parent, pb.parent_offset),
                    (BINDER_BUFFER_FLAG_HAS_PARENT, 16, 0, 8)
                );
                assert_eq!(pb.buffer, sg_start + 32, "B follows A (8-aligned)");
                assert_eq!(
                    (fda.hdr.type_, fda.num_fds, fda.parent, fda.parent_offset),
                    (BINDER_TYPE_FDA, 2, 0, 16)
                );
                let a: Vec<u8> = m
                    .dev
                    .buffer_bytes(pa.buffer, 32)
                    .expect("A in the buffer area")
                    .to_vec();
                let b: Vec<u8> = m
                    .dev
                    .buffer_bytes(pb.buffer, 16)
                    .expect("B in the buffer area")
                    .to_vec();
                let word = |i: usize| u64::from_ne_bytes(a[i * 8..i * 8 + 8].try_into().unwrap());
                assert_eq!(word(0), MAGIC_A);
                assert_eq!(word(1), pb.buffer, "the pointer to B inside A is fixed up");
                assert_eq!(word(3), MAGIC_Z);
                assert_eq!(b, B_BYTES);
                let fds = [word(2) as u32 as i32, (word(2) >> 32) as u32 as i32];
                for (i, fd) in fds.iter().enumerate() {
                    // SAFETY: the driver installed this fd for the buffer; it stays open until
                    // BC_FREE_BUFFER below, and the borrow does not outlive this iteration.
                    let b = unsafe { BorrowedFd::borrow_raw(*fd) };
                    let flags = nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD)
                        .unwrap_or_else(|e| panic!("FDA fd {fd} is not open: {e}"));
                    assert!(flags & libc::FD_CLOEXEC != 0, "FDA fds have FD_CLOEXEC");
                    assert_eq!(
                        std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
                        paths[i]
                    );
                    let mut buf = [0u8; 32];
                    let n = nix::sys::uio::pread(b, &mut buf, 0).unwrap();
                    assert_eq!(&buf[..n], format!("fda file {i}").as_bytes());
                }
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "receiver replying and freeing",
                );
                for fd in fds {
                    // SAFETY: only asks whether the number is still open; nothing is done with it.
                    let b = unsafe { BorrowedFd::borrow_raw(fd) };
                    assert_eq!(
                        nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD),
                        Err(nix::errno::Errno::EBADF),
                        "FDA fd {fd} must be closed with its buffer"
                    );
                }
                assert_eq!(child.expect("OK"), "");
                child.finish();
                for p in paths {
                    let _ = std::fs::remove_file(p);
                }
            }
            Some(_) => {
                let f0 = File::open(std::env::var("FDA0").unwrap()).unwrap();
                let f1 = File::open(std::env::var("FDA1").unwrap()).unwrap();
                let b: [u8; 16] = *B_BYTES;
                let a: [u64; 4] = [
                    MAGIC_A,
                    b.as_ptr() as u64,
                    (f0.as_raw_fd() as u32 as u64) | ((f1.as_raw_fd() as u32 as u64) << 32),
                    MAGIC_Z,
                ];
                let mut p = Payload::new();
                p.push_bytes(&0x5C5Cu64.to_ne_bytes());
                p.push_object(&ptr_obj(a.as_ptr() as u64, 32, None));
                p.push_object(&ptr_obj(b.as_ptr() as u64, 16, Some((0, 8))));
                p.push_object(&fda_obj(2, 0, 16));
                p.push_bytes(&[0u8; 8]);
                let c = Proc::open();
                let sg = BinderTransactionDataSg {
                    transaction_data: p.tr(0, 0x56, 0),
                    buffers_size: 48,
                };
                let mut w = CommandWriter::new();
                w.cmd_with(BC_TRANSACTION_SG, &sg);
                let rets = c.write_read_until_any(
                    w.as_bytes(),
                    &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                );
                c.free_reply(&rets, "sender of a scatter-gather transaction");
                // The sender's buffers are untouched.
                assert_eq!(a[1], b.as_ptr() as u64);
                tell("OK", "");
            }
        },
    );
}

/// binder_transaction, BINDER_TYPE_PTR / FDA checks: a PTR buffer longer than what
/// buffers_size leaves ("too large buffer"), an FDA whose parent is not a PTR object
/// (binder_validate_ptr), and a parent PTR at data offset 0 (binder_validate_fixup has
/// "nothing to fix up in") all give BR_FAILED_REPLY.
#[test]
fn bad_scatter_gather_objects_fail() {
    run(
        test_name!(bad_scatter_gather_objects_fail),
        |ctx| match ctx.role.as_deref() {
            Some(_) => {
                let m = Proc::context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS);
                tell("READY", "");
                let rets = m.enter_looper_until_transaction();
                let t = find(&rets, BR_TRANSACTION).txn();
                tell("TXN", &format!("code={:#x}", t.code));
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, t.data_buffer);
                m.write_read(w.as_bytes());
            }
            None => {
                let mut child = ctx.spawn("receiver", &[]);
                child.expect("READY");
                let c = Proc::open();
                let a = [0u64; 4];
                let b = [0u8; 16];
                let sg_call = |p: &Payload, buffers_size: u64, what: &str| {
                    let sg = BinderTransactionDataSg {
                        transaction_data: p.tr(0, 1, 0),
                        buffers_size,
                    };
                    let mut w = CommandWriter::new();
                    w.cmd_with(BC_TRANSACTION_SG, &sg);
                    let rets = c.write_read_until_any(
                        w.as_bytes(),
                        &[BR_REPLY, BR_FAILED_REPLY, BR_DEAD_REPLY],
                    );
                    assert_stream(&rets, &["BR_FAILED_REPLY"], what);
                };
                // PTR longer than buffers_size.
                let mut p = Payload::bytes(&[0u8; 8]);
                p.push_object(&ptr_obj(a.as_ptr() as u64, 32, None));
                sg_call(&p, 16, "PTR buffer larger than buffers_size");
                // FDA whose parent index names a non-PTR object (an fd object).
                let null = File::open("/dev/null").unwrap();
                let mut p = Payload::bytes(&[0u8; 8]);
                p.push_object(&fd_obj(null.as_raw_fd(), 0));
                p.push_object(&fda_obj(1, 0, 0));
                sg_call(&p, 0, "FDA whose parent is not a PTR");
                // Child PTR fixed up into a parent PTR at data offset 0.
                let mut p = Payload::new();
                p.push_object(&ptr_obj(a.as_ptr() as u64, 32, None));
                p.push_object(&ptr_obj(b.as_ptr() as u64, 16, Some((0, 8))));
                sg_call(&p, 48, "fixup into a parent at data offset 0");
                // A valid call reaches the receiver first.
                let rets = c.transact(0, FINAL, 0, &Payload::bytes(b"ok"));
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "valid call afterwards",
                );
                assert_eq!(child.expect("TXN"), format!("code={FINAL:#x}"));
                child.finish();
            }
        },
    );
}

const FINAL: u32 = 0x7e57;
