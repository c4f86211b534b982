//! The client side: a `SensorEventQueue` over the tube end the service handed out.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::event::SensorEvent;
use crate::bittube::{TubeEnd, TubeError};

/// Events one read takes at most (Android's receive buffer: 256 events).
pub const MAX_RECEIVE_EVENTS: usize = 256;

/// Counters of a [`SensorEventQueue`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events received (sensor and meta events).
    pub events: u64,
    /// Packets received.
    pub packets: u64,
    /// Flush-complete meta events received.
    pub flush_completes: u64,
    /// Events that carried the wake-up ack flag.
    pub wakeups: u64,
    /// Sum of the ack counts sent back.
    pub acks_sent: u64,
}

/// Reads sensor events from a tube and acknowledges wake-up events automatically: after each
/// read, the number of events flagged [`super::WAKE_UP_NEEDS_ACK`] goes back over the same
/// tube as one `u32` (if the tube is full, the count is kept and sent after the next read).
#[derive(Debug)]
pub struct SensorEventQueue {
    tube: TubeEnd,
    unacked: u32,
    stats: QueueStats,
}

impl SensorEventQueue {
    /// A queue reading from `tube` (the end returned by the service's `create_connection`).
    pub fn new(tube: TubeEnd) -> SensorEventQueue {
        SensorEventQueue {
            tube,
            unacked: 0,
            stats: QueueStats::default(),
        }
    }

    /// Read one packet (up to `buf.len()` events; give it [`MAX_RECEIVE_EVENTS`]) without
    /// waiting. [`TubeError::WouldBlock`] when nothing is there, [`TubeError::PeerClosed`]
    /// once the service closed the connection and everything it sent was read.
    pub fn read(&mut self, buf: &mut [SensorEvent]) -> Result<usize, TubeError> {
        let result = self.tube.recv_batch(buf);
        self.after_read(buf, result)
    }

    /// Like [`read`](Self::read), but waits up to `timeout` for a packet.
    pub fn read_timeout(
        &mut self,
        buf: &mut [SensorEvent],
        timeout: Duration,
    ) -> Result<usize, TubeError> {
        let result = self.tube.recv_batch_timeout(buf, timeout);
        self.after_read(buf, result)
    }

    fn after_read(
        &mut self,
        buf: &[SensorEvent],
        result: Result<usize, TubeError>,
    ) -> Result<usize, TubeError> {
        let n = result?;
        self.note(&buf[..n]);
        Ok(n)
    }

    fn note(&mut self, events: &[SensorEvent]) {
        self.stats.packets += 1;
        self.stats.events += events.len() as u64;
        for e in events {
            if e.needs_ack() {
                self.unacked = self.unacked.saturating_add(1);
                self.stats.wakeups += 1;
            }
            if e.flushed_sensor().is_some() {
                self.stats.flush_completes += 1;
            }
        }
        self.send_acks();
    }

    /// Send the pending ack count now (done after every read anyway). Returns whether
    /// nothing is left to acknowledge.
    pub fn send_acks(&mut self) -> bool {
        if self.unacked == 0 {
            return true;
        }
        match self.tube.send_batch(&[self.unacked]) {
            Ok(_) => {
                self.stats.acks_sent += u64::from(self.unacked);
                self.unacked = 0;
                true
            }
            // Full: retried after the next read. Closed: the next read reports it.
            Err(_) => false,
        }
    }

    /// Wake-up events received but not yet acknowledged.
    pub fn pending_acks(&self) -> u32 {
        self.unacked
    }

    /// The queue's counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    /// The tube end.
    pub fn tube(&self) -> &TubeEnd {
        &self.tube
    }

    /// A stream of events on the current tokio runtime (feature `tokio`), acknowledging
    /// wake-up events as they are read.
    #[cfg(feature = "tokio")]
    pub fn into_stream(self) -> Result<SensorEventStream, TubeError> {
        // SAFETY: the queue owns its TubeEnd, which owns its fd and never replaces it, so the
        // fd `as_raw_fd` returns stays open and names the same socket until the AsyncFd is
        // dropped.
        let queue = unsafe { tokio::io::unix::AsyncFd::register(self) }
            .map_err(|e| TubeError::Io(e.into()))?;
        Ok(SensorEventStream {
            queue,
            buf: vec![bytemuck::Zeroable::zeroed(); MAX_RECEIVE_EVENTS].into_boxed_slice(),
            pos: 0,
            len: 0,
            done: false,
        })
    }
}

impl AsFd for SensorEventQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tube.as_fd()
    }
}

impl AsRawFd for SensorEventQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.tube.as_raw_fd()
    }
}

impl mio::event::Source for SensorEventQueue {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tube.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tube.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tube.deregister(registry)
    }
}

/// Every event read by a [`SensorEventQueue`], one at a time, as a tokio `Stream` (feature
/// `tokio`). Wake-up events are acknowledged as their packet is read. Malformed packets are
/// yielded as one `Err` each and the stream goes on; it ends when the service closes the
/// connection.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct SensorEventStream {
    queue: tokio::io::unix::AsyncFd<SensorEventQueue>,
    buf: Box<[SensorEvent]>,
    pos: usize,
    len: usize,
    done: bool,
}

#[cfg(feature = "tokio")]
impl SensorEventStream {
    /// The queue's counters.
    pub fn stats(&self) -> &QueueStats {
        self.queue.get_ref().stats()
    }
}

#[cfg(feature = "tokio")]
impl futures_core::Stream for SensorEventStream {
    type Item = Result<SensorEvent, TubeError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if this.pos < this.len {
                this.pos += 1;
                return Poll::Ready(Some(Ok(this.buf[this.pos - 1])));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let mut guard = match this.queue.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(TubeError::Io(e))));
                }
                Poll::Pending => return Poll::Pending,
            };
            match guard.get_inner_mut().read(&mut this.buf) {
                Ok(n) => {
                    this.pos = 0;
                    this.len = n;
                }
                Err(TubeError::WouldBlock) => guard.clear_ready(),
                Err(TubeError::PeerClosed) => this.done = true,
                Err(
                    e @ (TubeError::BadPacketSize { .. }
                    | TubeError::Truncated { .. }
                    | TubeError::EmptyPacket),
                ) => return Poll::Ready(Some(Err(e))),
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// Latency of `event` received at `received_ns` (both `CLOCK_MONOTONIC` ns, see
/// [`super::clock_now_ns`]): time from the sample to its receipt.
pub fn latency_ns(event: &SensorEvent, received_ns: i64) -> i64 {
    received_ns.saturating_sub(event.timestamp)
}

/// Percentiles of a set of latencies (ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Largest.
    pub max: i64,
}

impl LatencySummary {
    /// Summarise `samples` (sorted in place). All zero when empty.
    pub fn from_samples(samples: &mut [i64]) -> LatencySummary {
        if samples.is_empty() {
            return LatencySummary::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        LatencySummary {
            count: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}
