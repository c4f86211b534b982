//! BINDER_TYPE_FD translation.

use crate::harness::*;
use crate::test_name;
use bittube::binder_ipc::uapi::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// FD_CLOEXEC of an open fd.
fn cloexec(fd: &OwnedFd) -> bool {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
    flags & libc::FD_CLOEXEC != 0
}

/// Takes ownership of an fd the driver installed for us.
fn take_fd(fd: i32) -> OwnedFd {
    assert!(fd >= 0, "bad fd number {fd}");
    // The fd must be open before we own it.
    // SAFETY: borrow_raw only to check the fd is open; it is not used past this call.
    let probe = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(probe, nix::fcntl::FcntlArg::F_GETFD)
        .unwrap_or_else(|e| panic!("received fd {fd} is not open: {e}"));
    // SAFETY: the driver installed this fd in our table for us (binder_apply_fd_fixups); the
    // runtime owns it from now on and nothing else closes it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn temp_file(tag: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bittube-conformance-{}-{tag}", pid()));
    std::fs::write(&path, contents).expect("writing a temp file");
    path
}

/// The seed's demonstration. A process opens a file holding "helloworld", reads 5 bytes and
/// sends the fd; the receiving process reads "world". binder_translate_fd takes a reference
/// on the sender's open file (fget); binder_apply_fd_fixups installs it in the receiver with
/// get_unused_fd_flags(O_CLOEXEC) when the receiving thread reads the transaction and writes
/// the new number into the object (pad_binder cleared first, cookie kept). Same open file
/// description: the sender's offset moves when the receiver reads. Exactly one new fd appears
/// in the receiver, and the sender's fd stays open.
#[test]
fn fd_arrives_as_new_cloexec_fd_sharing_the_file_offset() {
    run(
        test_name!(fd_arrives_as_new_cloexec_fd_sharing_the_file_offset),
        |ctx| match ctx.role.as_deref() {
            None => {
                let path = temp_file("helloworld", b"helloworld");
                let mut child =
                    ctx.spawn("receiver", &[("HELLO_PATH", path.display().to_string())]);
                child.expect("READY");
                let s = Proc::open();
                let mut file = File::open(&path).unwrap();
                let mut hello = [0u8; 5];
                file.read_exact(&mut hello).unwrap();
                assert_eq!(&hello, b"hello");
                let mut p = Payload::new();
                p.push_bytes(b"FDv1\0\0\0\0");
                p.push_object(&fd_obj(file.as_raw_fd(), 0x55));
                let rets = s.transact(0, 0xF0, 0, &p);
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "sender of an fd",
                );
                let r = s.received(&find(&rets, BR_REPLY));
                assert_eq!(
                    r.data, b"world",
                    "what the receiver read through its new fd"
                );
                s.free(r.tr.data_buffer);
                let mut rest = Vec::new();
                file.read_to_end(&mut rest)
                    .expect("the sender's fd stays open");
                assert_eq!(
                    rest, b"",
                    "the receiver's read moved the shared file offset to the end"
                );
                file.seek(SeekFrom::Start(0)).unwrap();
                let mut all = String::new();
                file.read_to_string(&mut all).unwrap();
                assert_eq!(all, "helloworld");
                assert_eq!(child.expect("OK"), "");
                child.finish();
                let _ = std::fs::remove_file(&path);
            }
            Some(_) => {
                let path = PathBuf::from(std::env::var("HELLO_PATH").unwrap());
                let r = Proc::open();
                r.become_context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS, 0xF00D, 0xF00E);
                let _ = r.call(&[], false);
                let before = open_fds();
                tell("READY", "");
                let rets = r.enter_looper_until_transaction();
                let after = open_fds();
                assert_stream(&rets, &["BR_TRANSACTION"], "receiver of an fd");
                let t = r.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(t.tr.code, 0xF0);
                assert_eq!(t.offsets, [8]);
                assert_eq!(&t.data[..8], b"FDv1\0\0\0\0");
                let obj: BinderFdObject = t.object(8);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_FD);
                assert_eq!(obj.cookie, 0x55, "the cookie is passed through");
                assert_eq!(
                    obj.pad_binder >> 32,
                    0,
                    "the fd union's high half is cleared: {obj:?}"
                );
                let fd = obj.fd();
                let new: Vec<_> = after
                    .keys()
                    .filter(|k| !before.contains_key(k))
                    .copied()
                    .collect();
                assert_eq!(new, [fd], "exactly the received fd is new in our table (before {before:?}, after {after:?})");
                assert_eq!(after[&fd], path, "the received fd names the sender's file");
                let owned = take_fd(fd);
                assert!(cloexec(&owned), "received fds have FD_CLOEXEC");
                let mut file = File::from(owned);
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).unwrap();
                assert_eq!(
                    rest, b"world",
                    "the sender's read of 5 bytes moved the shared offset"
                );
                drop(file);
                let reply = Payload::bytes(&rest);
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &reply);
                bc::free_buffer(&mut w, t.tr.data_buffer);
                let rets = r.write_read(w.as_bytes());
                assert_stream(&rets, &["BR_TRANSACTION_COMPLETE"], "receiver replying");
                assert_eq!(
                    open_fds(),
                    before,
                    "no fd left behind after closing the received one"
                );
                tell("OK", "");
            }
        },
    );
}

/// binder_translate_fd: a call to a node without FLAT_BINDER_FLAG_ACCEPTS_FDS carrying an fd
/// fails with BR_FAILED_REPLY (-EPERM, "target does not allow fds"), no
/// BR_TRANSACTION_COMPLETE, nothing delivered; the next call without fd goes through.
#[test]
fn fd_to_node_without_accepts_fds_fails() {
    run(
        test_name!(fd_to_node_without_accepts_fds_fails),
        |ctx| match ctx.role.as_deref() {
            None => {
                let m = Proc::context_manager(0);
                let mut child = ctx.spawn("client", &[]);
                let rets = m.enter_looper_until_transaction();
                assert_stream(&rets, &["BR_TRANSACTION"], "manager");
                let r = m.received(&find(&rets, BR_TRANSACTION));
                assert_eq!(
                    r.tr.code, 2,
                    "the call carrying an fd must not be delivered"
                );
                let mut w = CommandWriter::new();
                bc::reply(&mut w, 0, 0, &Payload::new());
                bc::free_buffer(&mut w, r.tr.data_buffer);
                assert_stream(
                    &m.write_read(w.as_bytes()),
                    &["BR_TRANSACTION_COMPLETE"],
                    "manager replying",
                );
                assert_eq!(child.expect("OK"), "");
                child.finish();
            }
            Some(_) => {
                let c = Proc::open();
                let null = File::open("/dev/null").unwrap();
                let mut p = Payload::new();
                p.push_object(&fd_obj(null.as_raw_fd(), 0));
                let rets = c.transact(0, 1, TF_ACCEPT_FDS, &p);
                assert_stream(
                    &rets,
                    &["BR_FAILED_REPLY"],
                    "fd to a node that does not accept fds",
                );
                let rets = c.transact(0, 2, 0, &Payload::bytes(b"plain"));
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "plain call afterwards",
                );
                c.free(c.received(&find(&rets, BR_REPLY)).tr.data_buffer);
                tell("OK", "");
            }
        },
    );
}

/// binder_translate_fd for replies: allowed only when the call carried TF_ACCEPT_FDS. Without
/// it the reply fails: the replier still gets BR_TRANSACTION_COMPLETE (binder_transaction sets
/// return_error BR_TRANSACTION_COMPLETE when in_reply_to) and the caller gets
/// BR_FAILED_REPLY (binder_send_failed_reply) after its BR_TRANSACTION_COMPLETE. With the
/// flag the caller receives a new FD_CLOEXEC fd naming the replier's file.
#[test]
fn fd_in_reply_needs_tf_accept_fds() {
    run(
        test_name!(fd_in_reply_needs_tf_accept_fds),
        |ctx| match ctx.role.as_deref() {
            None => {
                let path = temp_file("reply-fd", b"reply file");
                let m = Proc::context_manager(FLAT_BINDER_FLAG_ACCEPTS_FDS);
                let mut child = ctx.spawn("client", &[("REPLY_PATH", path.display().to_string())]);
                let file = File::open(&path).unwrap();
                let mut w = CommandWriter::new();
                w.cmd(BC_ENTER_LOOPER);
                let mut next = w.into_bytes();
                for (code, flags) in [(1, 0), (2, TF_ACCEPT_FDS)] {
                    let rets = m.write_read_until_any(&next, &[BR_TRANSACTION]);
                    assert_stream(&rets, &["BR_TRANSACTION"], "manager");
                    let r = m.received(&find(&rets, BR_TRANSACTION));
                    assert_eq!((r.tr.code, r.tr.flags), (code, flags));
                    let mut reply = Payload::new();
                    reply.push_object(&fd_obj(file.as_raw_fd(), 0));
                    let mut w = CommandWriter::new();
                    bc::reply(&mut w, 0, 0, &reply);
                    let reply_len = w.len();
                    bc::free_buffer(&mut w, r.tr.data_buffer);
                    let c = m.call(w.as_bytes(), true);
                    assert_eq!(c.result, Ok(()));
                    // Either way the replier gets BR_TRANSACTION_COMPLETE; a failed reply leaves
                    // that as the pending return_error, which stops the write after BC_REPLY.
                    assert_stream(
                        &c.rets,
                        &["BR_TRANSACTION_COMPLETE"],
                        "replier (whether or not its reply failed)",
                    );
                    if flags & TF_ACCEPT_FDS == 0 {
                        assert_eq!(
                            c.write_consumed, reply_len,
                            "the write stops after the failed BC_REPLY"
                        );
                        m.free(r.tr.data_buffer);
                    } else {
                        assert_eq!(c.write_consumed, w.len());
                    }
                    next = Vec::new();
                }
                assert_eq!(child.expect("OK"), "");
                child.finish();
                let _ = std::fs::remove_file(&path);
            }
            Some(_) => {
                let path = PathBuf::from(std::env::var("REPLY_PATH").unwrap());
                let c = Proc::open();
                let rets = c.transact(0, 1, 0, &Payload::new());
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_FAILED_REPLY"],
                    "caller without TF_ACCEPT_FDS",
                );
                let rets = c.transact(0, 2, TF_ACCEPT_FDS, &Payload::new());
                assert_stream(
                    &rets,
                    &["BR_TRANSACTION_COMPLETE", "BR_REPLY"],
                    "caller with TF_ACCEPT_FDS",
                );
                let r = c.received(&find(&rets, BR_REPLY));
                assert_eq!(r.offsets, [0]);
                let obj: BinderFdObject = r.object(0);
                assert_eq!(obj.hdr.type_, BINDER_TYPE_FD);
                let fd = take_fd(obj.fd());
                assert!(cloexec(&fd));
                assert_eq!(
                    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(),
                    path
                );
                let mut s = String::new();
                File::from(fd).read_to_string(&mut s).unwrap();
                assert_eq!(s, "reply file");
                c.free(r.tr.data_buffer);
                tell("OK", "");
            }
        },
    );
}
