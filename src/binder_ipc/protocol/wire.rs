//! The frames [`ShimDevice`](crate::binder_ipc::device::ShimDevice) and the driver shim
//! exchange over a Unix stream socket.
//!
//! Every frame is a [`FrameHeader`] followed by `len` body bytes; `nfds` file descriptors
//! travel with the frame's bytes (SCM_RIGHTS, at most [`MAX_FDS_PER_MSG`] per `sendmsg`; a
//! frame with more is sent in pieces). A stream socket keeps fds in byte order, so the reader
//! takes them first in, first out.
//!
//! A binder process opens one *proc connection* ([`K_OPEN_PROC`], then [`K_MAP_DONE`]); each
//! of its threads opens a *thread connection* ([`K_OPEN_THREAD`]) that carries the ioctls.
//! Closing a proc connection is process exit; closing a thread connection is
//! `BINDER_THREAD_EXIT`.
//!
//! A `BC_TRANSACTION`/`BC_REPLY` (and `_SG`) in a [`K_WRITE_READ`] write stream is followed by
//! a [`Gathered`] record and the bytes its pointers named: data, offsets, then each
//! scatter-gather buffer padded to 8. The fds its FD and FDA objects name follow in object
//! order. The driver counts `write_consumed` in the caller's original stream, without these
//! records.

use bytemuck::{Pod, Zeroable};
use static_assertions::assert_eq_size;

/// Most fds one `sendmsg` carries (the kernel's SCM_MAX_FD).
pub const MAX_FDS_PER_MSG: usize = 253;
/// Largest frame body accepted (bigger frames are a protocol error).
pub const MAX_FRAME: usize = 64 << 20;

/// Wire protocol version, checked at [`K_OPEN_PROC`].
pub const WIRE_VERSION: u32 = 1;

/// Client → driver: open a binder process. Body [`OpenProc`]. Answer [`K_OPEN_PROC_OK`].
pub const K_OPEN_PROC: u32 = 1;
/// Driver → client: body [`OpenProcOk`], with the buffer area memfd when `errno == 0`.
pub const K_OPEN_PROC_OK: u32 = 2;
/// Client → driver, on the proc connection: the area is mapped at `base`. Body `u64`.
/// Answer [`K_RESULT`].
pub const K_MAP_DONE: u32 = 3;
/// Client → driver: this connection is a thread of the process `token` names. Body `u64`.
/// Answer [`K_RESULT`].
pub const K_OPEN_THREAD: u32 = 4;
/// Client → driver: an ioctl other than WRITE_READ. Body [`Ioctl`]. Answer [`K_RESULT`].
pub const K_IOCTL: u32 = 5;
/// Driver → client: body [`ResultBody`]; for an ioctl that writes its argument back
/// (`BINDER_GET_EXTENDED_ERROR`), followed by those bytes.
pub const K_RESULT: u32 = 6;
/// Client → driver: `BINDER_WRITE_READ`. Body [`WriteReadReq`] + the write stream.
pub const K_WRITE_READ: u32 = 7;
/// Driver → client: body [`WriteReadRet`] + read bytes + fixups (`u64` area offsets, one per
/// fd sent with the frame) + fd numbers to close (`i32`).
pub const K_WRITE_READ_RET: u32 = 8;
/// Client → driver, on a fresh connection: the state dump. Empty body. Answer [`K_STATE_RET`].
pub const K_STATE: u32 = 9;
/// Driver → client: the state dump as UTF-8 text.
pub const K_STATE_RET: u32 = 10;
/// Client → driver: a `BINDER_WRITE_READ` the device has already answered its caller, the
/// way the kernel answers a thread that replies to the call it was handed: the whole write
/// consumed, `BR_NOOP BR_TRANSACTION_COMPLETE` read from 0. Body as [`K_WRITE_READ`]; no
/// answer. The driver runs the write, then hands the thread the completion at the head of its
/// list; any other work stays for its next read. The device sends it only for a write of
/// `BC_FREE_BUFFER`s and one `BC_REPLY` without objects, right after the read that handed
/// the thread a sync transaction from a parked caller ([`RET_CALLER_PARKED`]), when its
/// process cannot be asked for a looper (`BINDER_SET_MAX_THREADS` 0) and the read has room
/// for the completion (ARCHITECTURE.md, "Connections and wake-ups").
pub const K_WRITE_READ_LOCAL: u32 = 11;

/// Header of every frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FrameHeader {
    /// Body bytes after the header.
    pub len: u32,
    /// `K_*`.
    pub kind: u32,
    /// File descriptors that travel with this frame.
    pub nfds: u32,
    /// Zero, except in a [`K_WRITE_READ_RET`]: its flags ([`RET_CALLER_PARKED`]).
    pub reserved: u32,
}
assert_eq_size!(FrameHeader, [u8; 16]);

/// Flag of a [`K_WRITE_READ_RET`] (in [`FrameHeader::reserved`]): the sync transaction this
/// read hands over comes from a thread parked in a blocking read for its reply, and the
/// read left nothing on the receiving thread's own list. That thread
/// can do nothing else until the reply, a nested call from the replier, or its own end, so
/// the replier's `BC_REPLY` cannot find its caller's stack moved (the one way a reply to
/// the call on top of the replier's stack fails for the replier): the device may then
/// answer that reply itself ([`K_WRITE_READ_LOCAL`]).
pub const RET_CALLER_PARKED: u32 = 1;

/// Whether a read stream hands the thread a sync transaction (`BR_TRANSACTION` without
/// `TF_ONE_WAY`: one it must reply to). A read holds at most one transaction.
pub fn hands_sync_call(read: &[u8]) -> bool {
    use crate::binder_ipc::uapi::*;
    let mut r = CommandReader::new(read);
    while let Some((cmd, payload)) = r.next_command() {
        if cmd == BR_TRANSACTION || cmd == BR_TRANSACTION_SEC_CTX {
            return payload
                .get(..std::mem::size_of::<BinderTransactionData>())
                .map(bytemuck::pod_read_unaligned::<BinderTransactionData>)
                .is_some_and(|tr| tr.flags & TF_ONE_WAY == 0);
        }
    }
    false
}

/// Body of [`K_OPEN_PROC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OpenProc {
    /// [`WIRE_VERSION`].
    pub version: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Size of the buffer area to create.
    pub area_size: u64,
}

/// Body of [`K_OPEN_PROC_OK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OpenProcOk {
    /// 0, or the errno of the failure.
    pub errno: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The secret that binds thread connections to this process.
    pub token: u64,
    /// The area's size (page aligned).
    pub area_size: u64,
}

/// Body of [`K_IOCTL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ioctl {
    /// The ioctl number (`BINDER_*`).
    pub cmd: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The argument bytes (a `flat_binder_object` at most).
    pub arg: [u8; 24],
}

/// Body of [`K_RESULT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ResultBody {
    /// 0, or the errno of the failure.
    pub errno: i32,
    /// A returned value (the protocol version for `BINDER_VERSION`).
    pub value: i32,
}

/// Body head of [`K_WRITE_READ`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct WriteReadReq {
    /// `write_consumed` on entry: where the caller's stream starts.
    pub write_consumed: u64,
    /// Bytes of the caller's original write stream (`write_size`).
    pub write_size: u64,
    /// `read_consumed` on entry.
    pub read_consumed: u64,
    /// `read_size`.
    pub read_size: u64,
    /// 1 for a non-blocking call (`O_NONBLOCK`).
    pub nonblock: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Body head of [`K_WRITE_READ_RET`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct WriteReadRet {
    /// 0, or the errno the ioctl returns.
    pub errno: i32,
    /// Fixups (and fds) that follow.
    pub nfixups: u32,
    /// `write_consumed` after the call.
    pub write_consumed: u64,
    /// `read_consumed` after the call.
    pub read_consumed: u64,
    /// Bytes of read stream that follow (`read_consumed` − entry value).
    pub read_len: u32,
    /// fd numbers that follow, for the process to close (FDA fds of a freed buffer).
    pub nclose: u32,
}

/// The record after a transaction command in a [`K_WRITE_READ`] stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Gathered {
    /// 0, or the errno met while gathering (`EFAULT`: a pointer named bad memory; `EBADF`: an
    /// fd object named no open fd; `ENOSPC`: sizes beyond any buffer area).
    pub status: i32,
    /// fds that travel with this transaction.
    pub nfds: u32,
    /// Bytes of data that follow.
    pub data_len: u64,
    /// Bytes of offsets that follow.
    pub offsets_len: u64,
    /// Bytes of scatter-gather buffers that follow (each padded to 8).
    pub sg_len: u64,
}

/// Rounds `n` up to a multiple of 8. Only for sizes already bounded (a buffer inside an area,
/// a read's length): a number from a client goes through
/// [`checked_align8`](super::object::checked_align8), which refuses to overflow.
pub const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

// ---------------------------------------------------------------------------------------------
// Blocking frame I/O (the client side; the driver has its own non-blocking buffers).

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Sends one frame: header, then `parts` as the body, with `fds` attached (in pieces of at most
/// [`MAX_FDS_PER_MSG`]; each piece rides on at least one byte of the frame).
pub fn send_frame(
    sock: BorrowedFd<'_>,
    kind: u32,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Errno> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let hdr = FrameHeader {
        len: u32::try_from(len).map_err(|_| Errno::E2BIG)?,
        kind,
        nfds: fds.len() as u32,
        reserved: 0,
    };
    let hdr_bytes = bytemuck::bytes_of(&hdr);
    if fds.len() <= MAX_FDS_PER_MSG && parts.len() < 4 {
        // One sendmsg straight from the parts; a partial send goes on without fds (they
        // left with the first byte).
        let mut iov = [IoSlice::new(&[]); 4];
        iov[0] = IoSlice::new(hdr_bytes);
        for (i, p) in parts.iter().enumerate() {
            iov[i + 1] = IoSlice::new(p);
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cm = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cm };
        let n = loop {
            match sendmsg::<()>(
                sock.as_raw_fd(),
                &iov[..parts.len() + 1],
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 16 + len {
            return Ok(());
        }
        let mut rest = Vec::with_capacity(16 + len - n);
        let mut skip = n;
        for part in std::iter::once(hdr_bytes).chain(parts.iter().copied()) {
            let from = skip.min(part.len());
            skip -= from;
            rest.extend_from_slice(&part[from..]);
        }
        return send_bytes_with_fds(sock, &rest, &[]);
    }
    let mut bytes = Vec::with_capacity(16 + len);
    bytes.extend_from_slice(hdr_bytes);
    for p in parts {
        bytes.extend_from_slice(p);
    }
    send_bytes_with_fds(sock, &bytes, fds)
}

/// Sends `bytes` with `fds` attached, on a blocking stream socket.
pub fn send_bytes_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Errno> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let chunks: Vec<&[RawFd]> = raw.chunks(MAX_FDS_PER_MSG).collect();
    if chunks.len() > bytes.len() {
        return Err(Errno::EINVAL);
    }
    let mut pos = 0;
    let mut chunk = 0;
    while pos < bytes.len() {
        // Every fd piece but the last rides on exactly one byte.
        let end = if chunk + 1 < chunks.len() {
            pos + 1
        } else {
            bytes.len()
        };
        let cmsg_storage;
        let cmsgs: &[ControlMessage<'_>] = if chunk < chunks.len() {
            cmsg_storage = [ControlMessage::ScmRights(chunks[chunk])];
            &cmsg_storage
        } else {
            &[]
        };
        let iov = [IoSlice::new(&bytes[pos..end])];
        let n = match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        pos += n;
        chunk += 1;
        // A partial send keeps going without fds: they already left with the first byte.
        while pos < end {
            let iov = [IoSlice::new(&bytes[pos..end])];
            match sendmsg::<()>(sock.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None) {
                Ok(n) => pos += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and any fds riding on them (close-on-exec). 0 bytes: the
/// peer closed.
pub fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: MsgFlags,
) -> Result<usize, Errno> {
    let mut cmsg = cmsg_buffer();
    recv_some_with(sock, buf, &mut cmsg, fds, flags)
}

/// A control-message buffer for [`recv_some_with`]: room for [`MAX_FDS_PER_MSG`] fds.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!([RawFd; MAX_FDS_PER_MSG])
}

/// [`recv_some`] with a control-message buffer the caller keeps (from [`cmsg_buffer`]: a
/// smaller one truncates fds, reported as `EMSGSIZE`), so a hot loop does not allocate one
/// per call.
pub fn recv_some_with(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    cmsg: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: MsgFlags,
) -> Result<usize, Errno> {
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut *cmsg),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for r in raw {
                    // SAFETY: the kernel just installed `r` in our table for this message;
                    // nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
        if truncated {
            return Err(Errno::EMSGSIZE);
        }
        return Ok(msg.bytes);
    }
}

fn recv_exact(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        match recv_some(sock, &mut buf[got..], fds, MsgFlags::empty())? {
            0 => return Err(Errno::ECONNRESET),
            n => got += n,
        }
    }
    Ok(())
}

/// Receives one whole frame on a blocking stream socket. A closed peer is `ECONNRESET`.
pub fn recv_frame(sock: BorrowedFd<'_>) -> Result<(FrameHeader, Vec<u8>, Vec<OwnedFd>), Errno> {
    let mut fds = Vec::new();
    let mut h = [0u8; 16];
    recv_exact(sock, &mut h, &mut fds)?;
    let hdr: FrameHeader = bytemuck::pod_read_unaligned(&h);
    if hdr.len as usize > MAX_FRAME {
        return Err(Errno::EPROTO);
    }
    let mut body = vec![0u8; hdr.len as usize];
    recv_exact(sock, &mut body, &mut fds)?;
    if fds.len() != hdr.nfds as usize {
        return Err(Errno::EPROTO);
    }
    Ok((hdr, body, fds))
}

/// Receives one whole frame into `buf` (kept by the caller between calls, grown as needed)
/// with as few reads as the socket allows: on a connection where each request gets exactly
/// one answer, one `recvmsg` usually takes header and body. Returns the header; the body is
/// `buf[16..16 + len]` and the frame's fds are appended to `fds`. A closed peer is
/// `ECONNRESET`; bytes past the frame (a second, unrequested frame) are `EPROTO`.
pub fn recv_frame_into(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    cmsg: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<FrameHeader, Errno> {
    const FIRST_READ: usize = 16 * 1024;
    if buf.len() < FIRST_READ {
        buf.resize(FIRST_READ, 0);
    }
    let first_fd = fds.len();
    let mut got = 0;
    let mut total = usize::MAX;
    while got < total {
        let room = if total == usize::MAX {
            buf.len()
        } else {
            total
        };
        wait_readable(sock)?;
        match recv_some_with(sock, &mut buf[got..room], cmsg, fds, MsgFlags::empty())? {
            0 => return Err(Errno::ECONNRESET),
            n => got += n,
        }
        if total == usize::MAX && got >= 16 {
            let hdr: FrameHeader = bytemuck::pod_read_unaligned(&buf[..16]);
            if hdr.len as usize > MAX_FRAME {
                return Err(Errno::EPROTO);
            }
            total = 16 + hdr.len as usize;
            if buf.len() < total {
                buf.resize(total, 0);
            }
        }
    }
    let hdr: FrameHeader = bytemuck::pod_read_unaligned(&buf[..16]);
    if got != total || fds.len() - first_fd != hdr.nfds as usize {
        return Err(Errno::EPROTO);
    }
    Ok(hdr)
}

/// Blocks until `sock` has bytes to read (or its peer hung up), in `poll`, not in `recvmsg`.
///
/// A thread blocked in `recvmsg` on a stream socket sleeps on the socket's wait queue
/// without a key, so it is also woken (and goes back to sleep) every time its peer reads
/// what this end sent: the peer's read frees write space here, and the write-space wake-up
/// goes to every sleeper. `poll`'s sleepers are keyed by the events they wait for, so a
/// thread waiting for `POLLIN` sleeps through those. On the device's hot path this saves a
/// context switch per request (see ARCHITECTURE.md, "Connections and wake-ups").
pub fn wait_readable(sock: BorrowedFd<'_>) -> Result<(), Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut ready = [PollFd::new(sock, PollFlags::POLLIN)];
    loop {
        match poll(&mut ready, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Connects a stream socket to `path`, waiting at most `timeout` for the listener to take it
/// (a listener whose backlog is full, because nobody accepts, would block `connect`
/// forever), and leaves `timeout` as the socket's read and write timeout, so that the
/// opening exchange that follows is bounded too (a blocking read or write then fails with
/// `EAGAIN`). The caller clears the timeouts when the connection is open. Errors name
/// nothing; the caller adds the socket's name.
pub fn connect_timeout(
    path: &std::path::Path,
    timeout: std::time::Duration,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
    };
    use nix::sys::time::TimeVal;
    let to_io = |e: Errno| std::io::Error::from_raw_os_error(e as i32);
    let addr = UnixAddr::new(path).map_err(to_io)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(to_io)?;
    // A zero timeval means "no timeout" to the kernel: wait at least a microsecond.
    let tv = TimeVal::new(
        timeout.as_secs().min(i64::MAX as u64) as i64,
        (timeout.subsec_micros() as i64).max(i64::from(timeout.is_zero())),
    );
    setsockopt(&sock, sockopt::SendTimeout, &tv).map_err(to_io)?;
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(to_io)?;
    loop {
        match connect(sock.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            // Unix stream sockets say EAGAIN when the send timeout ran out waiting for room
            // in the listener's backlog.
            Err(Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the listener took no connection within {timeout:?}"),
                ))
            }
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(std::os::unix::net::UnixStream::from(sock))
}

/// The body of a frame of kind `kind`, exactly one `T`.
pub fn body_as<T: Pod>(hdr: &FrameHeader, body: &[u8], kind: u32) -> Result<T, Errno> {
    if hdr.kind != kind || body.len() != std::mem::size_of::<T>() {
        return Err(Errno::EPROTO);
    }
    Ok(bytemuck::pod_read_unaligned(body))
}

/// The head of the body of a frame of kind `kind`: a `T` followed by more bytes.
pub fn body_as_prefix<T: Pod>(hdr: &FrameHeader, body: &[u8], kind: u32) -> Result<T, Errno> {
    if hdr.kind != kind || body.len() < std::mem::size_of::<T>() {
        return Err(Errno::EPROTO);
    }
    Ok(bytemuck::pod_read_unaligned(
        &body[..std::mem::size_of::<T>()],
    ))
}
