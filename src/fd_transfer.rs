//! Sending and receiving file descriptors with bytes (SCM_RIGHTS).
//!
//! Two functions carry bytes plus open file descriptors over a Unix socket (any type:
//! stream, datagram, seqpacket):
//!
//! - [`send_with_fds`] sends `bytes` and, in the same message, up to [`SCM_MAX_FD`] fds.
//! - [`recv_with_fds`] receives one message into a buffer and returns the fds that came with
//!   it as [`OwnedFd`]s. They are close-on-exec from the moment they exist
//!   (`MSG_CMSG_CLOEXEC`), so no `exec` in another thread can leak them.
//!
//! Both calls use the socket's own blocking mode: on a non-blocking socket a call that cannot
//! proceed returns [`FdTransferError::WouldBlock`]. `EINTR` is retried. Sending never raises
//! `SIGPIPE` (`MSG_NOSIGNAL`); a closed peer is [`FdTransferError::PeerClosed`].
//!
//! Truncation is never silent. If the message did not fit the buffer (`MSG_TRUNC`) or more fds
//! were sent than the receiver allowed (`MSG_CTRUNC`), the call fails with
//! [`FdTransferError::Truncated`] or [`FdTransferError::ControlTruncated`], and every fd that
//! did arrive is closed before the error is returned: nothing leaks into the fd table.
//!
//! A read of zero bytes with no fds is ambiguous at the syscall level (end of stream, or an
//! empty datagram). This module asks the socket (`poll` with `POLLRDHUP`) and reports a
//! hung-up peer as [`FdTransferError::PeerClosed`]; an empty datagram or packet from a live
//! peer is returned as `Ok` with `len == 0`.
//!
//! ```
//! use std::os::fd::AsFd;
//! use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
//! use bittube::fd_transfer::{recv_with_fds, send_with_fds};
//!
//! let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
//! let file = std::fs::File::open("/proc/self/status")?;
//! send_with_fds(&a, b"one fd", &[file.as_fd()])?;
//!
//! let mut buf = [0u8; 16];
//! let got = recv_with_fds(&b, &mut buf, 4)?;
//! assert_eq!(&buf[..got.len], b"one fd");
//! assert_eq!(got.fds.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The most fds one message may carry: the kernel's `SCM_MAX_FD`.
pub const SCM_MAX_FD: usize = 253;

/// One message received by [`recv_with_fds`].
#[derive(Debug)]
pub struct Received {
    /// Number of bytes written to the start of the caller's buffer.
    pub len: usize,
    /// The fds that came with the message, in the order they were sent; close-on-exec.
    pub fds: Vec<OwnedFd>,
}

/// What can go wrong while sending or receiving fds with bytes.
#[derive(Debug, thiserror::Error)]
pub enum FdTransferError {
    /// The socket is non-blocking and the call cannot proceed now (`EAGAIN`).
    #[error("the socket is not ready (would block)")]
    WouldBlock,
    /// The peer has closed its end (`EPIPE`/`ECONNRESET` on send; end of stream on receive).
    #[error("the peer closed the connection")]
    PeerClosed,
    /// More fds than one message may carry.
    #[error(
        "cannot send {count} fds in one message: the kernel allows at most {max} (SCM_MAX_FD)"
    )]
    TooManyFds {
        /// How many fds the caller tried to send.
        count: usize,
        /// [`SCM_MAX_FD`].
        max: usize,
    },
    /// Fds must travel with at least one byte: stream sockets drop ancillary data of an empty
    /// send, and an empty read must stay recognisable as end of stream.
    #[error("{count} fds need at least one byte of payload to travel with, the payload is empty")]
    FdsWithoutBytes {
        /// How many fds the caller tried to send.
        count: usize,
    },
    /// The message was larger than the receive buffer (`MSG_TRUNC`); its tail is lost and the
    /// fds that came with it were closed.
    #[error(
        "message truncated: it was longer than the {capacity}-byte buffer; \
         the {fds_closed} fds that came with it were closed"
    )]
    Truncated {
        /// Size of the caller's buffer in bytes.
        capacity: usize,
        /// How many received fds were closed.
        fds_closed: usize,
    },
    /// More fds were sent than the receiver allowed (`MSG_CTRUNC`); the kernel dropped the
    /// excess and the fds that did arrive were closed.
    #[error(
        "fd list truncated: the receiver allowed {max_fds} fds and the sender sent more; \
         the {fds_closed} fds that arrived were closed ({len} payload bytes discarded)"
    )]
    ControlTruncated {
        /// How many fds the receiver allowed.
        max_fds: usize,
        /// How many received fds were closed.
        fds_closed: usize,
        /// Payload bytes that arrived with the message (and are not reported as data).
        len: usize,
    },
    /// Any other socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Size in bytes of the control buffer that holds `n` fds (`CMSG_SPACE(n * sizeof(int))`).
const fn cmsg_space(n: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + cmsg_align(n * size_of::<RawFd>())
}

/// Value of `cmsg_len` for `n` fds (`CMSG_LEN(n * sizeof(int))`).
const fn cmsg_len(n: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + n * size_of::<RawFd>()
}

const fn cmsg_align(len: usize) -> usize {
    let a = size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// A control buffer large enough for [`SCM_MAX_FD`] fds, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; cmsg_space(SCM_MAX_FD)]);

static_assertions::const_assert!(
    std::mem::align_of::<ControlBuffer>() >= std::mem::align_of::<libc::cmsghdr>()
);

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// Send `bytes` and `fds` as one message on `sock`.
///
/// Returns the number of bytes sent (on a stream socket this may be fewer than `bytes.len()`;
/// the fds travel with the first byte). Fails with [`FdTransferError::TooManyFds`] for more
/// than [`SCM_MAX_FD`] fds and [`FdTransferError::FdsWithoutBytes`] for fds with an empty
/// payload. The caller keeps its own copies of `fds`; the receiver gets new ones that refer to
/// the same open files.
pub fn send_with_fds(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, FdTransferError> {
    if fds.len() > SCM_MAX_FD {
        return Err(FdTransferError::TooManyFds {
            count: fds.len(),
            max: SCM_MAX_FD,
        });
    }
    if bytes.is_empty() && !fds.is_empty() {
        return Err(FdTransferError::FdsWithoutBytes { count: fds.len() });
    }
    let sock = sock.as_fd();

    let mut control = ControlBuffer([0; cmsg_space(SCM_MAX_FD)]);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len()) as _;
        // SAFETY: msg_control points to a buffer of cmsg_space(fds.len()) bytes, aligned for
        // cmsghdr (ControlBuffer is align(8)), so CMSG_FIRSTHDR returns a valid, in-bounds
        // header and CMSG_DATA has room for fds.len() ints. The fd numbers are copied as
        // plain ints; the borrows keep them open until sendmsg returns.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = cmsg_len(fds.len()) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }

    loop {
        // SAFETY: msg points to a live iovec over `bytes` and (if any) the control buffer
        // above; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = errno();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Err(FdTransferError::WouldBlock),
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED) => {
                return Err(FdTransferError::PeerClosed)
            }
            _ => return Err(FdTransferError::Io(err)),
        }
    }
}

/// Receive one message from `sock` into `buf`, accepting up to `max_fds` fds with it.
///
/// `max_fds` above [`SCM_MAX_FD`] is treated as [`SCM_MAX_FD`] (no message carries more).
/// Received fds are close-on-exec. If the message was longer than `buf`
/// ([`FdTransferError::Truncated`]) or carried more than `max_fds` fds
/// ([`FdTransferError::ControlTruncated`]), every fd that arrived is closed and the error is
/// returned. End of stream / a hung-up peer is [`FdTransferError::PeerClosed`].
pub fn recv_with_fds(
    sock: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
) -> Result<Received, FdTransferError> {
    let max_fds = max_fds.min(SCM_MAX_FD);
    let sock = sock.as_fd();

    let mut control = ControlBuffer([0; cmsg_space(SCM_MAX_FD)]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if max_fds > 0 {
        msg.msg_control = control.0.as_mut_ptr().cast();
        // CMSG_LEN, not CMSG_SPACE: the kernel derives the fd limit from msg_controllen, and
        // the padding of CMSG_SPACE would admit one fd more than asked for odd counts.
        msg.msg_controllen = cmsg_len(max_fds) as _;
    }

    let n = loop {
        // SAFETY: msg points to a live iovec over `buf` and to `control`, which holds at least
        // msg_controllen bytes; recvmsg writes only within them.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = errno();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Err(FdTransferError::WouldBlock),
            Some(libc::ECONNRESET | libc::ENOTCONN | libc::EPIPE) => {
                return Err(FdTransferError::PeerClosed)
            }
            _ => return Err(FdTransferError::Io(err)),
        }
    };

    // Take ownership of every fd the kernel installed before looking at anything else, so
    // that every early return below closes them.
    let fds = if msg.msg_controllen > 0 {
        // SAFETY: the kernel filled msg_controllen bytes of `control` with cmsg headers.
        unsafe { take_fds(&msg) }
    } else {
        Vec::new()
    };

    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(FdTransferError::ControlTruncated {
            max_fds,
            fds_closed: fds.len(),
            len: n,
        });
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(FdTransferError::Truncated {
            capacity: buf.len(),
            fds_closed: fds.len(),
        });
    }
    if fds.len() > max_fds {
        // Cannot happen with the controllen above; stay strict if a kernel ever differs.
        return Err(FdTransferError::ControlTruncated {
            max_fds,
            fds_closed: fds.len(),
            len: n,
        });
    }
    if n == 0 && fds.is_empty() && peer_hung_up(sock)? {
        return Err(FdTransferError::PeerClosed);
    }
    Ok(Received { len: n, fds })
}

/// Wrap every fd of every SCM_RIGHTS control message in `msg` in an [`OwnedFd`].
///
/// # Safety
/// `msg` must be the header just filled by a successful `recvmsg`, its control buffer
/// aligned for `cmsghdr`.
unsafe fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk headers the kernel wrote inside
    // msg_control..msg_control+msg_controllen and return null past the end. Each fd number in
    // an SCM_RIGHTS payload was just installed in this process's table for us, and nothing
    // else owns it, so wrapping it in OwnedFd is sound and closes it exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let hdr = cmsg.read_unaligned();
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                let payload = (hdr.cmsg_len as usize).saturating_sub(cmsg_len(0));
                let count = payload / size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let raw = data.add(i).read_unaligned();
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    fds
}

/// Whether the peer of `sock` has hung up (`POLLRDHUP` or `POLLHUP`), without waiting.
///
/// Used to tell end of stream from an empty packet after a read of zero bytes.
pub(crate) fn peer_hung_up(sock: BorrowedFd<'_>) -> io::Result<bool> {
    // nix does not name POLLRDHUP; the bit is libc's.
    let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
    let mut fds = [PollFd::new(sock, rdhup)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            // Only POLLRDHUP was asked for; POLLHUP and POLLERR are always reported. (nix's
            // `revents()` cannot decode POLLRDHUP, so count instead of decoding.)
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_sizes_match_libc() {
        for n in [0usize, 1, 2, 3, 64, SCM_MAX_FD] {
            let bytes = (n * size_of::<RawFd>()) as u32;
            // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
            let (space, len) = unsafe { (libc::CMSG_SPACE(bytes), libc::CMSG_LEN(bytes)) };
            assert_eq!(cmsg_space(n), space as usize, "CMSG_SPACE for {n} fds");
            assert_eq!(cmsg_len(n), len as usize, "CMSG_LEN for {n} fds");
        }
    }
}
