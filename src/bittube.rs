//! BitTube: a typed, batched event channel over a SOCK_SEQPACKET socketpair.
//!
//! A [`BitTube`] is an `AF_UNIX`/`SOCK_SEQPACKET` socketpair, created close-on-exec and
//! non-blocking, with small socket buffers (4 KiB by default, like Android's). It has two
//! [`TubeEnd`]s: the **local** end, which the service keeps, and the **remote** end, which
//! travels to another process (by fd passing, see [`crate::fd_transfer`], or inside a binder
//! transaction). Android's `BitTube::writeToParcel` moves the receive end out of the tube; here
//! [`BitTube::take_remote`] does the same, and taking it a second time is an error. Both ends
//! read and write: events go one way, acknowledgements come back.
//!
//! Data travels in batches of plain-old-data objects ([`bytemuck::Pod`]): one call to
//! [`TubeEnd::send_batch`] sends a whole slice as ONE packet, one call to
//! [`TubeEnd::recv_batch`] reads ONE packet into a slice and returns how many objects it held.
//! Batching is what makes small buffers work: with 4 KiB buffers a tube holds about 11 single
//! 104-byte packets, but 39 such events fit in one packet.
//!
//! Outcomes are never confused:
//! - [`TubeError::WouldBlock`]: nothing to read now / no room to write now;
//! - [`TubeError::PeerClosed`]: the other end is gone (`EPIPE`, `ECONNRESET`, end of stream).
//!   Empty batches cannot be sent, so a read of zero bytes is end of stream; should a foreign
//!   peer send an empty packet anyway, it is told apart by asking the socket for `POLLRDHUP`
//!   and reported as [`TubeError::EmptyPacket`];
//! - a packet whose size is not a multiple of `size_of::<T>()` ([`TubeError::BadPacketSize`])
//!   or that did not fit the buffer ([`TubeError::Truncated`]) is an error naming the sizes.
//!
//! Blocking helpers with a timeout ([`TubeEnd::send_batch_timeout`],
//! [`TubeEnd::recv_batch_timeout`]) wait with `poll`. Every end is a [`mio::event::Source`];
//! with the `tokio` feature, `AsyncTubeEnd` offers async batches and a `Stream` of events.
//!
//! ```
//! use bittube::bittube::{BitTube, TubeError};
//! use bytemuck::{Pod, Zeroable};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
//! #[repr(C)]
//! struct Event {
//!     sensor: i32,
//!     value: f32,
//!     timestamp: i64,
//! }
//!
//! fn main() -> Result<(), TubeError> {
//!     let mut tube = BitTube::new()?; // 4 KiB socket buffers, like Android
//!     let remote = tube.take_remote()?; // the end that travels to the client
//!
//!     let events = [Event { sensor: 1, value: 9.81, timestamp: 1_000 }; 3];
//!     tube.local().send_batch(&events)?; // ONE packet of 3 events
//!
//!     let mut buf = [Event::zeroed(); 16];
//!     let n = remote.recv_batch(&mut buf)?; // ONE packet
//!     assert_eq!(&buf[..n], &events);
//!     remote.send_batch(&[n as u32])?; // acknowledgement back on the same tube
//!
//!     let mut ack = [0u32; 1];
//!     assert_eq!(tube.local().recv_batch(&mut ack)?, 1);
//!     assert!(matches!(remote.recv_batch(&mut buf), Err(TubeError::WouldBlock)));
//!     drop(tube); // the service closes its end
//!     assert!(matches!(remote.recv_batch(&mut buf), Err(TubeError::PeerClosed)));
//!     Ok(())
//! }
//! ```

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use bytemuck::Pod;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrLike};
use nix::time::{clock_gettime, ClockId};

use crate::fd_transfer::peer_hung_up;

#[cfg(feature = "tokio")]
mod async_tube;
#[cfg(feature = "tokio")]
pub use async_tube::{AsyncTubeEnd, EventStream, MAX_STREAM_BUFFER};

/// Default socket buffer size in bytes (send and receive), as in Android's BitTube.
pub const DEFAULT_BUFFER_SIZE: usize = 4096;

/// What can go wrong on a tube.
#[derive(Debug, thiserror::Error)]
pub enum TubeError {
    /// Nothing to read now, or no room to write now (`EAGAIN`). Not an end of stream.
    #[error("the tube is not ready (would block)")]
    WouldBlock,
    /// The other end of the tube is closed.
    #[error("the peer closed its end of the tube")]
    PeerClosed,
    /// A blocking helper waited for its whole timeout.
    #[error("timed out after {timeout:?}")]
    TimedOut {
        /// The timeout the caller gave.
        timeout: Duration,
    },
    /// An empty batch was given to send; empty packets would be indistinguishable from end of
    /// stream for the reader.
    #[error("cannot send an empty batch: a 0-byte packet reads as end of stream")]
    EmptyBatch,
    /// A received packet's length is not a multiple of the object size.
    #[error("bad packet: {len} bytes is not a multiple of the {object_size}-byte object size")]
    BadPacketSize {
        /// Length of the packet in bytes.
        len: usize,
        /// `size_of::<T>()` of the batch type.
        object_size: usize,
    },
    /// A received packet was larger than the buffer; the packet is consumed and its contents
    /// are discarded.
    #[error(
        "truncated packet: {len} bytes arrived for a buffer of {capacity} bytes \
         ({object_size}-byte objects); the packet was discarded. The sender batches {} \
         objects a packet: receive with room for at least that many (max_batch >= {})",
        objects_for(*.len, *.object_size),
        objects_for(*.len, *.object_size)
    )]
    Truncated {
        /// Length of the packet in bytes.
        len: usize,
        /// Size of the receive buffer in bytes.
        capacity: usize,
        /// `size_of::<T>()` of the batch type.
        object_size: usize,
    },
    /// The batch is larger than one packet may be with this tube's send buffer (`EMSGSIZE`).
    #[error("packet of {len} bytes is too large for the tube's {send_buffer}-byte send buffer")]
    PacketTooLarge {
        /// Length of the packet in bytes.
        len: usize,
        /// The socket's send buffer size (`SO_SNDBUF`, as the kernel reports it).
        send_buffer: usize,
    },
    /// The peer sent a packet of zero bytes while still connected (a foreign writer: this
    /// crate never sends one).
    #[error("the peer sent an empty packet")]
    EmptyPacket,
    /// [`BitTube::take_remote`] was called after the remote end was already taken.
    #[error("the remote end of this tube was already taken")]
    RemoteTaken,
    /// The fd given to [`TubeEnd::try_from_socket`] is not an `AF_UNIX` `SOCK_SEQPACKET`
    /// socket.
    #[error("not a tube: expected an AF_UNIX SOCK_SEQPACKET socket, found {found}")]
    NotATube {
        /// What was found instead.
        found: String,
    },
    /// Any other socket error.
    #[error("tube socket error: {0}")]
    Io(#[from] io::Error),
}

/// How many `object_size`-byte objects a `len`-byte packet holds, rounded up.
fn objects_for(len: usize, object_size: usize) -> usize {
    len.div_ceil(object_size.max(1))
}

impl TubeError {
    /// For [`TubeError::Truncated`]: the fewest objects a receive buffer must hold for the
    /// packet that did not fit (the sender's batch size). `None` for other errors.
    pub fn min_batch(&self) -> Option<usize> {
        match self {
            TubeError::Truncated {
                len, object_size, ..
            } => Some(objects_for(*len, *object_size)),
            _ => None,
        }
    }
}

impl From<Errno> for TubeError {
    fn from(e: Errno) -> Self {
        TubeError::Io(e.into())
    }
}

/// An event tube: a SEQPACKET socketpair whose remote end can be handed to another process.
#[derive(Debug)]
pub struct BitTube {
    local: TubeEnd,
    remote: Option<TubeEnd>,
}

impl BitTube {
    /// A tube with [`DEFAULT_BUFFER_SIZE`] (4 KiB) send and receive buffers on both ends.
    pub fn new() -> Result<BitTube, TubeError> {
        BitTube::with_buffer_sizes(DEFAULT_BUFFER_SIZE, DEFAULT_BUFFER_SIZE)
    }

    /// A tube whose send and receive buffers are both `bytes` on both ends.
    pub fn with_buffer_size(bytes: usize) -> Result<BitTube, TubeError> {
        BitTube::with_buffer_sizes(bytes, bytes)
    }

    /// A tube with `SO_SNDBUF = send_buffer` and `SO_RCVBUF = recv_buffer` on both sockets.
    ///
    /// The kernel doubles the values (for its bookkeeping) and caps them at
    /// `net.core.wmem_max` / `rmem_max`; [`TubeEnd::send_buffer_size`] reports the result. One
    /// packet may be at most about the send buffer size.
    pub fn with_buffer_sizes(send_buffer: usize, recv_buffer: usize) -> Result<BitTube, TubeError> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        let send_buffer = send_buffer.min(i32::MAX as usize);
        let recv_buffer = recv_buffer.min(i32::MAX as usize);
        for fd in [&a, &b] {
            socket::setsockopt(fd, sockopt::SndBuf, &send_buffer)?;
            socket::setsockopt(fd, sockopt::RcvBuf, &recv_buffer)?;
        }
        Ok(BitTube {
            local: TubeEnd { fd: a },
            remote: Some(TubeEnd { fd: b }),
        })
    }

    /// The end the service keeps (Android's send end).
    pub fn local(&self) -> &TubeEnd {
        &self.local
    }

    /// Move the remote end (Android's receive end) out of the tube, to hand it to another
    /// process. A second call fails with [`TubeError::RemoteTaken`].
    pub fn take_remote(&mut self) -> Result<TubeEnd, TubeError> {
        self.remote.take().ok_or(TubeError::RemoteTaken)
    }

    /// Whether the remote end is still in the tube.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Both ends, `(local, remote)`; fails with [`TubeError::RemoteTaken`] if the remote end
    /// was already taken.
    pub fn into_ends(self) -> Result<(TubeEnd, TubeEnd), TubeError> {
        match self.remote {
            Some(remote) => Ok((self.local, remote)),
            None => Err(TubeError::RemoteTaken),
        }
    }

    /// The local end alone (the remote end, if still here, is closed).
    pub fn into_local(self) -> TubeEnd {
        self.local
    }
}

/// One end of a tube: an owned SEQPACKET socket that sends and receives batches.
///
/// All calls are non-blocking whatever the fd's `O_NONBLOCK` flag says (`MSG_DONTWAIT`),
/// so an end received from another process behaves the same; the `*_timeout` helpers wait
/// with `poll`. Sends never raise `SIGPIPE`.
#[derive(Debug)]
pub struct TubeEnd {
    fd: OwnedFd,
}

impl TubeEnd {
    /// Wrap `fd` after checking that it is an `AF_UNIX` `SOCK_SEQPACKET` socket.
    /// ([`From<OwnedFd>`] wraps without checking.)
    pub fn try_from_socket(fd: OwnedFd) -> Result<TubeEnd, TubeError> {
        let ty = match socket::getsockopt(&fd, sockopt::SockType) {
            Ok(ty) => ty,
            Err(Errno::ENOTSOCK) => {
                return Err(TubeError::NotATube {
                    found: "a file that is not a socket".into(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        if ty != SockType::SeqPacket {
            return Err(TubeError::NotATube {
                found: format!("a {ty:?} socket"),
            });
        }
        let addr: socket::SockaddrStorage = socket::getsockname(fd.as_raw_fd())?;
        if addr.family() != Some(AddressFamily::Unix) {
            return Err(TubeError::NotATube {
                found: format!("a SEQPACKET socket of family {:?}", addr.family()),
            });
        }
        Ok(TubeEnd { fd })
    }

    /// Send `events` as ONE packet; returns `events.len()`.
    ///
    /// Fails with [`TubeError::EmptyBatch`] for an empty slice, [`TubeError::WouldBlock`]
    /// when the tube is full, [`TubeError::PeerClosed`] when the other end is gone and
    /// [`TubeError::PacketTooLarge`] when the batch exceeds the send buffer.
    pub fn send_batch<T: Pod>(&self, events: &[T]) -> Result<usize, TubeError> {
        const { assert!(size_of::<T>() > 0, "tube objects must not be zero-sized") };
        self.send_packet(bytemuck::cast_slice(events))?;
        Ok(events.len())
    }

    /// Receive ONE packet into `events`; returns how many objects it held (at least 1).
    ///
    /// Fails with [`TubeError::WouldBlock`] when nothing is queued,
    /// [`TubeError::PeerClosed`] when the other end is gone and everything it sent was read,
    /// [`TubeError::Truncated`] when the packet is larger than `events` and
    /// [`TubeError::BadPacketSize`] when its length is not a multiple of `size_of::<T>()`. A
    /// rejected packet is consumed; the next call reads the next one.
    pub fn recv_batch<T: Pod>(&self, events: &mut [T]) -> Result<usize, TubeError> {
        const { assert!(size_of::<T>() > 0, "tube objects must not be zero-sized") };
        let object_size = size_of::<T>();
        let buf: &mut [u8] = bytemuck::cast_slice_mut(events);
        let capacity = buf.len();
        let len = self.recv_packet(buf)?;
        if len > capacity {
            return Err(TubeError::Truncated {
                len,
                capacity,
                object_size,
            });
        }
        if len % object_size != 0 {
            return Err(TubeError::BadPacketSize { len, object_size });
        }
        Ok(len / object_size)
    }

    /// Like [`send_batch`](Self::send_batch), but waits (with `poll`) up to `timeout` (to
    /// within a scheduler tick) for room in the tube; [`TubeError::TimedOut`] if there was
    /// none. A closed peer is [`TubeError::PeerClosed`], at once.
    pub fn send_batch_timeout<T: Pod>(
        &self,
        events: &[T],
        timeout: Duration,
    ) -> Result<usize, TubeError> {
        // First try without reading the clock: the common case costs one syscall.
        match self.send_batch(events) {
            Err(TubeError::WouldBlock) => {}
            other => return other,
        }
        let deadline = Deadline::start(timeout)?;
        loop {
            self.wait(PollFlags::POLLOUT, &deadline)?;
            match self.send_batch(events) {
                Err(TubeError::WouldBlock) => {}
                other => return other,
            }
        }
    }

    /// Like [`recv_batch`](Self::recv_batch), but waits (with `poll`) up to `timeout` (to
    /// within a scheduler tick) for a packet; [`TubeError::TimedOut`] if none came. A closed peer is
    /// [`TubeError::PeerClosed`], at once.
    pub fn recv_batch_timeout<T: Pod>(
        &self,
        events: &mut [T],
        timeout: Duration,
    ) -> Result<usize, TubeError> {
        match self.recv_batch(events) {
            Err(TubeError::WouldBlock) => {}
            other => return other,
        }
        let deadline = Deadline::start(timeout)?;
        loop {
            self.wait(PollFlags::POLLIN, &deadline)?;
            match self.recv_batch(events) {
                Err(TubeError::WouldBlock) => {}
                other => return other,
            }
        }
    }

    /// The send buffer size the kernel uses for this end (`SO_SNDBUF`; twice the requested
    /// value on Linux).
    pub fn send_buffer_size(&self) -> Result<usize, TubeError> {
        Ok(socket::getsockopt(&self.fd, sockopt::SndBuf)?)
    }

    /// The receive buffer size the kernel uses for this end (`SO_RCVBUF`; twice the requested
    /// value on Linux).
    pub fn recv_buffer_size(&self) -> Result<usize, TubeError> {
        Ok(socket::getsockopt(&self.fd, sockopt::RcvBuf)?)
    }

    /// A second handle on the same socket (`dup`, close-on-exec).
    pub fn try_clone(&self) -> Result<TubeEnd, TubeError> {
        Ok(TubeEnd {
            fd: self.fd.try_clone()?,
        })
    }

    fn send_packet(&self, bytes: &[u8]) -> Result<(), TubeError> {
        if bytes.is_empty() {
            return Err(TubeError::EmptyBatch);
        }
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        loop {
            match socket::send(self.fd.as_raw_fd(), bytes, flags) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    // SEQPACKET sends are atomic; a short count would be a kernel surprise.
                    return Err(TubeError::Io(io::Error::other(format!(
                        "short send: {n} of {} bytes",
                        bytes.len()
                    ))));
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(TubeError::WouldBlock),
                Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::ECONNREFUSED) => {
                    return Err(TubeError::PeerClosed)
                }
                Err(Errno::EMSGSIZE) => {
                    return Err(TubeError::PacketTooLarge {
                        len: bytes.len(),
                        send_buffer: self.send_buffer_size().unwrap_or(0),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The length in bytes of the packet that the next receive will read, without reading it
    /// (`MSG_PEEK | MSG_TRUNC`): a receiver sizes its buffer with it. 0 for an empty packet
    /// or a closed peer (the next receive says which); [`TubeError::WouldBlock`] when nothing
    /// is queued.
    pub fn next_packet_len(&self) -> Result<usize, TubeError> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC | MsgFlags::MSG_PEEK;
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut [], flags) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(TubeError::WouldBlock),
                Err(Errno::ECONNRESET | Errno::ENOTCONN | Errno::EPIPE) => {
                    return Err(TubeError::PeerClosed)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receive one packet into `buf`; returns the packet's full length, which exceeds
    /// `buf.len()` when it was truncated (`MSG_TRUNC` asks the kernel for the real length).
    fn recv_packet(&self, buf: &mut [u8]) -> Result<usize, TubeError> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Ok(0) => {
                    return if peer_hung_up(self.fd.as_fd())? {
                        Err(TubeError::PeerClosed)
                    } else {
                        Err(TubeError::EmptyPacket)
                    };
                }
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(TubeError::WouldBlock),
                Err(Errno::ECONNRESET | Errno::ENOTCONN | Errno::EPIPE) => {
                    return Err(TubeError::PeerClosed)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Wait until `events` (POLLIN or POLLOUT) or a hang-up is signalled, or the deadline
    /// passes.
    fn wait(&self, events: PollFlags, deadline: &Deadline) -> Result<(), TubeError> {
        loop {
            let left = deadline.left()?;
            // Round up so that a sub-millisecond rest does not spin with timeout 0.
            let ms = (left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0))
                .min(i32::MAX as u128);
            let poll_timeout = PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), events)];
            match poll(&mut fds, poll_timeout) {
                Ok(0) => continue, // re-check the deadline
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The deadline of a blocking helper, on `CLOCK_MONOTONIC_COARSE`.
///
/// The coarse clock is read from the vDSO without touching the TSC: about 6 ns a read on the
/// VMs this crate is measured on, against 30-50 ns for `Instant::now()`, which made a visible
/// difference per packet when every receive finds the tube empty and waits. Its resolution is
/// one scheduler tick, so a timeout may run over by up to a tick.
struct Deadline {
    start: Duration,
    timeout: Duration,
}

impl Deadline {
    fn start(timeout: Duration) -> Result<Deadline, TubeError> {
        Ok(Deadline {
            start: coarse_now()?,
            timeout,
        })
    }

    /// Time left, or [`TubeError::TimedOut`] when none is.
    fn left(&self) -> Result<Duration, TubeError> {
        let elapsed = coarse_now()?.saturating_sub(self.start);
        match self.timeout.checked_sub(elapsed) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(TubeError::TimedOut {
                timeout: self.timeout,
            }),
        }
    }
}

fn coarse_now() -> Result<Duration, TubeError> {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)?;
    Ok(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
}

impl From<OwnedFd> for TubeEnd {
    /// Wrap a socket fd as a tube end without checking it (see
    /// [`TubeEnd::try_from_socket`]).
    fn from(fd: OwnedFd) -> TubeEnd {
        TubeEnd { fd }
    }
}

impl From<TubeEnd> for OwnedFd {
    fn from(end: TubeEnd) -> OwnedFd {
        end.fd
    }
}

impl AsFd for TubeEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TubeEnd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl mio::event::Source for TubeEnd {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).deregister(registry)
    }
}
