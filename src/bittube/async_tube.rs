//! Async tube ends on tokio's `AsyncFd` (feature `tokio`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytemuck::Pod;
use futures_core::stream::{FusedStream, Stream};
use tokio::io::unix::AsyncFd;

use super::{TubeEnd, TubeError};

/// A [`TubeEnd`] registered with the tokio reactor: async batches and a stream of events.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bittube::bittube::TubeError> {
/// use bittube::bittube::{AsyncTubeEnd, BitTube};
///
/// let (local, remote) = BitTube::new()?.into_ends()?;
/// let remote = AsyncTubeEnd::new(remote)?;
/// local.send_batch(&[1u64, 2, 3])?;
/// let mut buf = [0u64; 8];
/// assert_eq!(remote.recv_batch(&mut buf).await?, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncTubeEnd {
    inner: AsyncFd<TubeEnd>,
}

impl AsyncTubeEnd {
    /// Register `end` with the current tokio runtime's reactor.
    ///
    /// # Panics
    /// When called outside a tokio runtime (as [`AsyncFd::register`] does).
    pub fn new(end: TubeEnd) -> Result<AsyncTubeEnd, TubeError> {
        // SAFETY: a TubeEnd owns its OwnedFd and never replaces it, so the fd that
        // `as_raw_fd` returns stays open and names the same socket until the AsyncFd is dropped
        // or `into_inner` gives the end back.
        let inner = unsafe { AsyncFd::register(end) }.map_err(io::Error::from)?;
        Ok(AsyncTubeEnd { inner })
    }

    /// The underlying end, for non-blocking calls.
    pub fn get_ref(&self) -> &TubeEnd {
        self.inner.get_ref()
    }

    /// Deregister from the reactor and give the end back.
    pub fn into_inner(self) -> TubeEnd {
        self.inner.into_inner()
    }

    /// Send `events` as ONE packet, waiting for room; see [`TubeEnd::send_batch`].
    pub async fn send_batch<T: Pod>(&self, events: &[T]) -> Result<usize, TubeError> {
        loop {
            let mut guard = self.inner.writable().await?;
            match guard.get_inner().send_batch(events) {
                Err(TubeError::WouldBlock) => guard.clear_ready(),
                other => return other,
            }
        }
    }

    /// Receive ONE packet into `events`, waiting for one; see [`TubeEnd::recv_batch`].
    pub async fn recv_batch<T: Pod>(&self, events: &mut [T]) -> Result<usize, TubeError> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.get_inner().recv_batch(events) {
                Err(TubeError::WouldBlock) => guard.clear_ready(),
                other => return other,
            }
        }
    }

    /// A stream of single events: every event of every packet, in order. `max_batch` (at
    /// least 1) sizes the first read buffer; the stream looks at the size of the first packet
    /// before reading it and grows the buffer to fit the sender's batch (up to
    /// [`MAX_STREAM_BUFFER`] bytes), and grows it again when a later packet is larger (that
    /// packet is lost, counted in [`EventStream::lost_events`], and reported as
    /// [`TubeError::Truncated`]). It ends when the peer closes the tube. The end stays
    /// usable for sending (acks) through [`EventStream::tube`].
    pub fn into_events<T: Pod>(self, max_batch: usize) -> EventStream<T> {
        EventStream {
            tube: self,
            buf: vec![T::zeroed(); max_batch.max(1)].into_boxed_slice(),
            pos: 0,
            len: 0,
            done: false,
            sized: false,
            lost: 0,
        }
    }

    fn poll_next_len(&self, cx: &mut Context<'_>) -> Poll<Result<usize, TubeError>> {
        loop {
            let mut guard = match self.inner.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            match guard.get_inner().next_packet_len() {
                Err(TubeError::WouldBlock) => guard.clear_ready(),
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_recv<T: Pod>(
        &self,
        cx: &mut Context<'_>,
        events: &mut [T],
    ) -> Poll<Result<usize, TubeError>> {
        loop {
            let mut guard = match self.inner.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            match guard.get_inner().recv_batch(events) {
                Err(TubeError::WouldBlock) => guard.clear_ready(),
                other => return Poll::Ready(other),
            }
        }
    }
}

/// The largest read buffer an [`EventStream`] grows to, in bytes.
pub const MAX_STREAM_BUFFER: usize = 1 << 20;

/// Every event of every packet received on an [`AsyncTubeEnd`], one at a time.
///
/// Items are `Ok(event)`; a rejected packet ([`TubeError::BadPacketSize`],
/// [`TubeError::Truncated`], [`TubeError::EmptyPacket`]) is yielded as one `Err` and the
/// stream goes on with the next packet. The stream ends (`None`) when the peer closes the
/// tube, or after yielding any other error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bittube::bittube::TubeError> {
/// use bittube::bittube::{AsyncTubeEnd, BitTube};
/// use futures_util::StreamExt;
///
/// let (local, remote) = BitTube::new()?.into_ends()?;
/// local.send_batch(&[1u64, 2, 3])?;
/// let mut events = AsyncTubeEnd::new(remote)?.into_events::<u64>(1);
/// assert_eq!(events.next().await.transpose()?, Some(1));
/// events.tube().send_batch(&[1u32]).await?; // ack on the same end
/// let (_end, unread) = events.into_inner();
/// assert_eq!(unread, [2, 3]); // read, not yet yielded: handed back, not dropped
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct EventStream<T> {
    tube: AsyncTubeEnd,
    buf: Box<[T]>,
    pos: usize,
    len: usize,
    done: bool,
    /// The first packet's size was looked at before reading it.
    sized: bool,
    /// Events in packets discarded because they did not fit.
    lost: u64,
}

impl<T: Pod> EventStream<T> {
    /// The tube end, to send on it (acks) while streaming.
    pub fn tube(&self) -> &AsyncTubeEnd {
        &self.tube
    }

    /// Stop streaming: the tube end, and the events already read but not yet yielded, in
    /// order.
    pub fn into_inner(self) -> (AsyncTubeEnd, Vec<T>) {
        let unread = self.buf[self.pos..self.len].to_vec();
        (self.tube, unread)
    }

    /// Events lost in packets larger than the read buffer was then.
    pub fn lost_events(&self) -> u64 {
        self.lost
    }

    /// How many events one read holds now.
    pub fn batch_capacity(&self) -> usize {
        self.buf.len()
    }

    /// Grows the read buffer to hold a `len`-byte packet (up to [`MAX_STREAM_BUFFER`]).
    /// Called only when every event read was yielded.
    fn fit(&mut self, len: usize) {
        let size = size_of::<T>().max(1);
        let want = len.div_ceil(size).min(MAX_STREAM_BUFFER / size);
        if want > self.buf.len() && self.pos >= self.len {
            self.buf = vec![T::zeroed(); want].into_boxed_slice();
        }
    }
}

impl<T: Pod> Stream for EventStream<T> {
    type Item = Result<T, TubeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pos < this.len {
            let event = this.buf[this.pos];
            this.pos += 1;
            return Poll::Ready(Some(Ok(event)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if !this.sized {
            match this.tube.poll_next_len(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(len)) => this.fit(len),
                // The read below reports it.
                Poll::Ready(Err(_)) => {}
            }
            this.sized = true;
        }
        match this.tube.poll_recv(cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(n)) => {
                // recv_batch never returns 0 objects: an empty read is PeerClosed/EmptyPacket.
                this.len = n;
                this.pos = 1;
                Poll::Ready(Some(Ok(this.buf[0])))
            }
            Poll::Ready(Err(TubeError::PeerClosed)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(TubeError::Truncated {
                len,
                capacity,
                object_size,
            })) => {
                this.lost = this.lost.saturating_add((len / object_size.max(1)) as u64);
                this.fit(len);
                Poll::Ready(Some(Err(TubeError::Truncated {
                    len,
                    capacity,
                    object_size,
                })))
            }
            Poll::Ready(Err(e @ (TubeError::BadPacketSize { .. } | TubeError::EmptyPacket))) => {
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len - self.pos, None)
    }
}

impl<T: Pod> FusedStream for EventStream<T> {
    fn is_terminated(&self) -> bool {
        self.done && self.pos >= self.len
    }
}
