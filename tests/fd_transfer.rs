//! fd passing (SCM_RIGHTS): 1 and 253 fds between processes, truncation errors that close
//! what arrived (counted in /proc/self/fd), limits, peer closed vs would-block.
//!
//! Cross-process tests re-execute this test binary with `BITTUBE_CHILD=<role>`: the named test
//! then acts as the child. The child's stdin is one end of a SEQPACKET socketpair (the control
//! socket). Fd counting happens in a child, where no other test runs in parallel.

mod common;
use common::*;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bittube::fd_transfer::{recv_with_fds, send_with_fds, FdTransferError, SCM_MAX_FD};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{self, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::pipe2;

fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    let flags = fcntl(fd, FcntlArg::F_GETFD).unwrap();
    FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    pipe2(OFlag::O_CLOEXEC).unwrap()
}

fn write_all(fd: &OwnedFd, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        done += nix::unistd::write(fd, &bytes[done..]).unwrap();
    }
}

fn read_to_end(fd: OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn one_fd_reaches_a_child_process() {
    const TEST: &str = "one_fd_reaches_a_child_process";
    if child_role().as_deref() == Some("one") {
        let control = control_in_child();
        let mut buf = [0u8; 64];
        let got = recv_with_fds(&control, &mut buf, 1).unwrap();
        assert_eq!(&buf[..got.len], b"here is a pipe");
        assert_eq!(got.fds.len(), 1);
        assert!(
            is_cloexec(got.fds[0].as_fd()),
            "received fd must be close-on-exec"
        );
        write_all(&got.fds[0], b"hello from the child");
        return;
    }

    let (read, write) = pipe();
    let (child, control) = spawn_child(TEST, "one");
    let n = send_with_fds(&control, b"here is a pipe", &[write.as_fd()]).unwrap();
    assert_eq!(n, 14);
    drop(write); // EOF on `read` now depends on the child's copy only
    wait_success(child);
    assert_eq!(read_to_end(read), b"hello from the child");
}

#[test]
fn scm_max_fd_fds_reach_a_child_process_in_order() {
    const TEST: &str = "scm_max_fd_fds_reach_a_child_process_in_order";
    if child_role().as_deref() == Some("many") {
        let control = control_in_child();
        let mut buf = [0u8; 8];
        let got = recv_with_fds(&control, &mut buf, SCM_MAX_FD).unwrap();
        assert_eq!(&buf[..got.len], b"253");
        assert_eq!(got.fds.len(), SCM_MAX_FD);
        for (i, fd) in got.fds.iter().enumerate() {
            assert!(is_cloexec(fd.as_fd()));
            write_all(fd, &(i as u32).to_le_bytes());
        }
        return;
    }

    let pipes: Vec<_> = (0..SCM_MAX_FD).map(|_| pipe()).collect();
    let (child, control) = spawn_child(TEST, "many");
    let fds: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    send_with_fds(&control, b"253", &fds).unwrap();
    drop(fds);
    let reads: Vec<_> = pipes.into_iter().map(|(r, _w)| r).collect();
    wait_success(child);
    for (i, read) in reads.into_iter().enumerate() {
        assert_eq!(read_to_end(read), (i as u32).to_le_bytes(), "pipe {i}");
    }
}

#[test]
fn truncation_closes_every_fd_that_arrived() {
    const TEST: &str = "truncation_closes_every_fd_that_arrived";
    if child_role().as_deref() == Some("strict") {
        let control = control_in_child();
        let mut buf = [0u8; 256];
        let before = open_fds();

        // 253 fds, receiver allows 10: CTRUNC, the 10 that arrived are closed.
        let err = recv_with_fds(&control, &mut buf, 10).unwrap_err();
        assert!(
            matches!(
                err,
                FdTransferError::ControlTruncated {
                    max_fds: 10,
                    fds_closed: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("10"), "{err}");
        assert_eq!(open_fds(), before, "leaked fds after CTRUNC (10)");

        // An odd limit: exactly 1 arrives (no padding slot for a second).
        let err = recv_with_fds(&control, &mut buf, 1).unwrap_err();
        assert!(
            matches!(
                err,
                FdTransferError::ControlTruncated {
                    max_fds: 1,
                    fds_closed: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(open_fds(), before, "leaked fds after CTRUNC (1)");

        // Receiver allows none.
        let err = recv_with_fds(&control, &mut buf, 0).unwrap_err();
        assert!(
            matches!(
                err,
                FdTransferError::ControlTruncated {
                    max_fds: 0,
                    fds_closed: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(open_fds(), before, "leaked fds after CTRUNC (0)");

        // 100 bytes and 5 fds into a 10-byte buffer: TRUNC, the 5 fds are closed.
        let err = recv_with_fds(&control, &mut buf[..10], SCM_MAX_FD).unwrap_err();
        assert!(
            matches!(
                err,
                FdTransferError::Truncated {
                    capacity: 10,
                    fds_closed: 5
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("10-byte"), "{err}");
        assert_eq!(open_fds(), before, "leaked fds after TRUNC");

        // The counting itself works: a message that fits installs exactly 253 fds.
        let got = recv_with_fds(&control, &mut buf, SCM_MAX_FD).unwrap();
        assert_eq!(got.fds.len(), SCM_MAX_FD);
        assert_eq!(open_fds(), before + SCM_MAX_FD);
        drop(got);
        assert_eq!(open_fds(), before);
        return;
    }

    let (_read, write) = pipe();
    let many: Vec<OwnedFd> = (0..SCM_MAX_FD)
        .map(|_| write.try_clone().unwrap())
        .collect();
    let many: Vec<_> = many.iter().map(|fd| fd.as_fd()).collect();
    let (child, control) = spawn_child(TEST, "strict");
    send_with_fds(&control, b"ten", &many).unwrap();
    send_with_fds(&control, b"one", &many).unwrap();
    send_with_fds(&control, b"none", &many).unwrap();
    send_with_fds(&control, &[7u8; 100], &many[..5]).unwrap();
    send_with_fds(&control, b"all", &many).unwrap();
    wait_success(child);
}

#[test]
fn more_than_scm_max_fd_is_refused() {
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let (_r, w) = pipe();
    let fds = vec![w.as_fd(); SCM_MAX_FD + 1];
    let err = send_with_fds(&a, b"x", &fds).unwrap_err();
    assert!(
        matches!(
            err,
            FdTransferError::TooManyFds {
                count: 254,
                max: 253
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("254") && msg.contains("253"), "{msg}");
}

#[test]
fn fds_need_at_least_one_byte() {
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let (_r, w) = pipe();
    let err = send_with_fds(&a, b"", &[w.as_fd()]).unwrap_err();
    assert!(
        matches!(err, FdTransferError::FdsWithoutBytes { count: 1 }),
        "{err:?}"
    );
}

#[test]
fn bytes_and_fds_round_trip_in_process() {
    for ty in [SockType::Stream, SockType::SeqPacket, SockType::Datagram] {
        let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let (read, write) = pipe();
        send_with_fds(&a, b"payload", &[write.as_fd(), write.as_fd()]).unwrap();
        send_with_fds(&a, b"no fds", &[]).unwrap();
        drop(write);
        let mut buf = [0u8; 32];
        let got = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!(&buf[..got.len], b"payload", "{ty:?}");
        assert_eq!(got.fds.len(), 2);
        write_all(&got.fds[1], b"via the second copy");
        drop(got);
        assert_eq!(read_to_end(read), b"via the second copy");
        let got = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!(&buf[..got.len], b"no fds");
        assert!(got.fds.is_empty());
    }
}

#[test]
fn would_block_and_peer_closed_are_distinct() {
    for ty in [SockType::Stream, SockType::SeqPacket] {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            ty,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        let mut buf = [0u8; 16];
        let err = recv_with_fds(&b, &mut buf, 1).unwrap_err();
        assert!(
            matches!(err, FdTransferError::WouldBlock),
            "{ty:?}: {err:?}"
        );
        send_with_fds(&a, b"last", &[]).unwrap();
        drop(a);
        let got = recv_with_fds(&b, &mut buf, 1).unwrap();
        assert_eq!(&buf[..got.len], b"last", "{ty:?}");
        let err = recv_with_fds(&b, &mut buf, 1).unwrap_err();
        assert!(
            matches!(err, FdTransferError::PeerClosed),
            "{ty:?}: {err:?}"
        );
        let err = send_with_fds(&b, b"anyone?", &[]).unwrap_err();
        assert!(
            matches!(err, FdTransferError::PeerClosed),
            "{ty:?}: {err:?}"
        );
    }
}

#[test]
fn empty_packet_from_a_live_peer_is_not_peer_closed() {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .unwrap();
    socket::send(std::os::fd::AsRawFd::as_raw_fd(&a), &[], MsgFlags::empty()).unwrap();
    let mut buf = [0u8; 16];
    let got = recv_with_fds(&b, &mut buf, 1).unwrap();
    assert_eq!(got.len, 0);
    assert!(got.fds.is_empty());
    assert!(matches!(
        recv_with_fds(&b, &mut buf, 1),
        Err(FdTransferError::WouldBlock)
    ));
}
