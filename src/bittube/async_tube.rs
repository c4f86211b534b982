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

    /// A stream of single events: every event of every packet, in order, reading packets of up
    /// to `max_batch` events (at least 1). It ends when the peer closes the tube.
    pub fn into_events<T: Pod>(self, max_batch: usize) -> EventStream<T> {
        EventStream {
            tube: self,
            buf: vec![T::zeroed(); max_batch.max(1)].into_boxed_slice(),
            pos: 0,
            len: 0,
            done: false,
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

/// Every event of every packet received on an [`AsyncTubeEnd`], one at a time.
///
/// Items are `Ok(event)`; a rejected packet ([`TubeError::BadPacketSize`],
/// [`TubeError::Truncated`], [`TubeError::EmptyPacket`]) is yielded as one `Err` and the
/// stream goes on with the next packet. The stream ends (`None`) when the peer closes the
/// tube, or after yielding any other error.
#[derive(Debug)]
pub struct EventStream<T> {
    tube: AsyncTubeEnd,
    buf: Box<[T]>,
    pos: usize,
    len: usize,
    done: bool,
}

impl<T> EventStream<T> {
    /// Stop streaming and give the tube back. Events already read but not yet yielded are
    /// dropped.
    pub fn into_inner(self) -> AsyncTubeEnd {
        self.tube
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
            Poll::Ready(Err(
                e @ (TubeError::BadPacketSize { .. }
                | TubeError::Truncated { .. }
                | TubeError::EmptyPacket),
            )) => Poll::Ready(Some(Err(e))),
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
