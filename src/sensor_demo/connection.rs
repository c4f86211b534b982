//! One event connection inside the service: subscriptions, batching, the bounded cache,
//! wake-up accounting and statistics. Owned and driven by the service thread only.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::AsFd;

use nix::sys::socket::{self, sockopt};

use super::event::{SensorEvent, EVENT_SIZE, WAKE_UP_NEEDS_ACK};
use super::sensors::SensorHandle;
use crate::bittube::{TubeEnd, TubeError};

/// The most events one packet carries: the client reads up to 256 events at a time
/// (Android's receive buffer), so a larger packet would be truncated.
pub const MAX_EVENTS_PER_PACKET: usize = 256;

/// Counters of one connection, as [`super::SensorService::connection_stats`] reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Events handed to this connection (sensor events and meta events).
    pub events_queued: u64,
    /// Events written to the tube.
    pub events_sent: u64,
    /// Packets written to the tube.
    pub packets_sent: u64,
    /// Events dropped because the cache was full (oldest first); every drop is counted here.
    pub events_dropped: u64,
    /// Events still pending or cached when the connection was destroyed or closed.
    pub events_discarded: u64,
    /// Events waiting for their batch to be sent (max report latency not yet reached).
    pub pending: usize,
    /// Events in the cache now (written when the tube has room again).
    pub cached: usize,
    /// Most events the cache ever held.
    pub cache_peak: usize,
    /// Times a send found the tube full (`WouldBlock`).
    pub tube_full: u64,
    /// Packets sent with a wake-up event flagged [`WAKE_UP_NEEDS_ACK`].
    pub wakeup_flagged: u64,
    /// Sum of the ack counts the client sent back.
    pub acks_received: u64,
    /// Flagged packets neither acknowledged nor timed out yet (the wake-lock refcount).
    pub wakeup_outstanding: u64,
    /// Flagged packets released by the timeout instead of an ack.
    pub wakeup_timeouts: u64,
    /// Acks beyond the outstanding count (late acks after a timeout, or a confused client).
    pub acks_unmatched: u64,
    /// Malformed packets received from the client (not whole `u32` acks); ignored.
    pub bad_packets: u64,
    /// Flush-complete meta events queued.
    pub flushes: u64,
    /// The send buffer size requested for the tube (4 KiB, or the batching size).
    pub buffer_size: usize,
}

/// One sensor enabled on a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subscription {
    /// Sampling period in ns (after clamping).
    pub period_ns: i64,
    /// Max report latency in ns (0: no batching).
    pub latency_ns: i64,
    /// Next timestamp this connection takes an event at (decimation of a faster HAL).
    next_ts: i64,
}

impl Subscription {
    pub(crate) fn new(period_ns: i64, latency_ns: i64) -> Subscription {
        Subscription {
            period_ns,
            latency_ns,
            next_ts: i64::MIN,
        }
    }
}

/// Why a connection is finished.
#[derive(Debug)]
pub(crate) enum Closed {
    /// The client closed its end (or died).
    Peer,
    /// Another tube error.
    Error(TubeError),
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub tube: TubeEnd,
    pub subs: BTreeMap<SensorHandle, Subscription>,
    pending: Vec<SensorEvent>,
    pending_deadline: Option<i64>,
    urgent: bool,
    cache: VecDeque<SensorEvent>,
    /// Meta events in `cache` (drops are done in bulk while there are none).
    metas_cached: usize,
    cache_capacity: usize,
    fifo_capacity: usize,
    /// Send time of every flagged packet not yet acknowledged.
    outstanding: VecDeque<i64>,
    /// The tube was full; waiting for a writable event.
    pub blocked: bool,
    /// The tube is registered for writable events (kept in step with `blocked`).
    pub wants_writable: bool,
    max_per_packet: usize,
    wake_up_mask: u64,
    pub stats: ConnectionStats,
}

impl Connection {
    /// `wake_up_mask` has bit `h` set for every wake-up sensor handle `h` (< 64).
    pub(crate) fn new(
        tube: TubeEnd,
        cache_capacity: usize,
        fifo_capacity: usize,
        wake_up_mask: u64,
        buffer_size: usize,
    ) -> Connection {
        let mut c = Connection {
            tube,
            subs: BTreeMap::new(),
            pending: Vec::new(),
            pending_deadline: None,
            urgent: false,
            cache: VecDeque::new(),
            metas_cached: 0,
            cache_capacity: cache_capacity.max(1),
            fifo_capacity: fifo_capacity.max(1),
            outstanding: VecDeque::new(),
            blocked: false,
            wants_writable: false,
            max_per_packet: 1,
            wake_up_mask,
            stats: ConnectionStats::default(),
        };
        c.max_per_packet = packet_events(buffer_size);
        c.stats.buffer_size = buffer_size;
        c
    }

    /// Set the tube's send buffer to `bytes` (already capped by the caller) and size packets
    /// to match.
    pub(crate) fn set_buffer_size(&mut self, bytes: usize) -> Result<(), TubeError> {
        if bytes == self.stats.buffer_size {
            return Ok(());
        }
        socket::setsockopt(&self.tube.as_fd(), sockopt::SndBuf, &bytes)?;
        self.stats.buffer_size = bytes;
        self.max_per_packet = packet_events(bytes);
        Ok(())
    }

    /// Offer an event from the HAL: queued if this connection has the sensor enabled and the
    /// event is due for its sampling period. Returns whether it was queued.
    pub(crate) fn offer(&mut self, event: &SensorEvent) -> bool {
        let Some(sub) = self.subs.get_mut(&event.sensor) else {
            return false;
        };
        if event.timestamp < sub.next_ts {
            return false;
        }
        // Take the next event one period later, less a tenth for a HAL that samples faster
        // and not in step.
        sub.next_ts = event
            .timestamp
            .saturating_add(sub.period_ns - sub.period_ns / 10);
        let latency = sub.latency_ns;
        self.queue(*event, latency);
        true
    }

    /// Queue `event` to be sent within `latency_ns` (0: at once).
    pub(crate) fn queue(&mut self, event: SensorEvent, latency_ns: i64) {
        self.stats.events_queued += 1;
        self.pending.push(event);
        self.stats.pending = self.pending.len();
        if latency_ns <= 0 {
            self.urgent = true;
        } else {
            let due = event.timestamp.saturating_add(latency_ns);
            self.pending_deadline = Some(self.pending_deadline.map_or(due, |d| d.min(due)));
        }
    }

    /// Queue a flush-complete meta event behind everything pending, and send all at once.
    pub(crate) fn queue_flush_complete(&mut self, sensor: SensorHandle, now: i64) {
        self.stats.flushes += 1;
        self.queue(SensorEvent::flush_complete(sensor, now), 0);
    }

    /// Send whatever is pending with the next write, whatever its latency (a sensor was
    /// disabled: its batched events should not wait for a deadline that no longer matters).
    pub(crate) fn send_soon(&mut self) {
        if !self.pending.is_empty() {
            self.urgent = true;
        }
    }

    /// Whether pending events must be sent now.
    pub(crate) fn due(&self, now: i64) -> bool {
        !self.pending.is_empty()
            && (self.urgent
                || self.pending_deadline.is_some_and(|d| d <= now)
                || self.pending.len() >= self.fifo_capacity)
    }

    /// The earliest time something must happen on this connection (a batch deadline or a
    /// wake-up timeout), in ns.
    pub(crate) fn next_deadline(&self, wakeup_timeout_ns: i64) -> Option<i64> {
        let batch = if self.pending.is_empty() {
            None
        } else {
            self.pending_deadline
        };
        let wake = self
            .outstanding
            .front()
            .map(|t| t.saturating_add(wakeup_timeout_ns));
        match (batch, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Send what is pending: straight from the pending list when nothing waits in the cache
    /// and the tube has room (one copy, into the socket), otherwise behind the cache
    /// (dropping the oldest if it overflows) and then as much of the cache as the tube takes.
    pub(crate) fn send_pending(&mut self, now: i64) -> Result<(), Closed> {
        self.stats.pending = 0;
        self.pending_deadline = None;
        self.urgent = false;
        let mut pending = std::mem::take(&mut self.pending);
        let result = if self.cache.is_empty() && !self.blocked {
            let sent = self.write_events(&mut pending, now);
            // What the tube did not take waits in the cache (also after an error: `finish`
            // counts it as discarded).
            let n = *sent.as_ref().unwrap_or(&0);
            self.push_cache_all(&pending[n..]);
            sent.map(drop)
        } else {
            self.push_cache_all(&pending);
            if self.blocked {
                Ok(())
            } else {
                self.write_cache(now)
            }
        };
        pending.clear();
        self.pending = pending; // keep the allocation
        result
    }

    /// Append `events` to the cache, dropping the oldest sensor events beyond its capacity:
    /// in bulk (O(dropped)) when no meta event is involved, one by one otherwise.
    fn push_cache_all(&mut self, events: &[SensorEvent]) {
        if events.is_empty() {
            return;
        }
        if self.metas_cached == 0 && !events.iter().any(SensorEvent::is_meta) {
            let over = (self.cache.len() + events.len()).saturating_sub(self.cache_capacity);
            let from_cache = over.min(self.cache.len());
            self.cache.drain(..from_cache);
            self.stats.events_dropped += over as u64;
            self.cache.extend(&events[over - from_cache..]);
            self.stats.cache_peak = self.stats.cache_peak.max(self.cache.len());
            self.stats.cached = self.cache.len();
        } else {
            for e in events {
                self.push_cache(*e);
            }
        }
    }

    fn push_cache(&mut self, event: SensorEvent) {
        if self.cache.len() >= self.cache_capacity {
            // Drop the oldest sensor event; meta events (flush-complete) are kept, since a
            // client waiting for one would wait forever.
            match self.cache.iter().position(|e| !e.is_meta()) {
                Some(i) => {
                    self.cache.remove(i);
                    self.stats.events_dropped += 1;
                }
                None if event.is_meta() => {}
                None => {
                    self.stats.events_dropped += 1;
                    return;
                }
            }
        }
        self.metas_cached += usize::from(event.is_meta());
        self.cache.push_back(event);
        self.stats.cache_peak = self.stats.cache_peak.max(self.cache.len());
        self.stats.cached = self.cache.len();
    }

    /// Write the cache to the tube, one packet per chunk of up to `max_per_packet` events,
    /// until it is empty or the tube is full (then `blocked` is set).
    pub(crate) fn write_cache(&mut self, now: i64) -> Result<(), Closed> {
        let mut cache = std::mem::take(&mut self.cache);
        let sent = self.write_events(cache.make_contiguous(), now);
        let n = *sent.as_ref().unwrap_or(&0);
        if self.metas_cached > 0 {
            self.metas_cached -= cache.range(..n).filter(|e| e.is_meta()).count();
        }
        cache.drain(..n);
        self.cache = cache;
        self.stats.cached = self.cache.len();
        sent.map(drop)
    }

    /// Write `events` to the tube in packets of up to `max_per_packet`, straight from the
    /// slice; returns how many went before the tube was full (then `blocked` is set) or all
    /// of them (then it is cleared).
    fn write_events(&mut self, events: &mut [SensorEvent], now: i64) -> Result<usize, Closed> {
        let mut done = 0;
        while done < events.len() {
            let end = events.len().min(done + self.max_per_packet);
            let chunk = &mut events[done..end];
            // Android flags the first wake-up event of each packet and counts one
            // outstanding ack per packet.
            let mask = self.wake_up_mask;
            let flagged = chunk.iter().position(|e| {
                !e.is_meta() && (0..64).contains(&e.sensor) && (mask >> e.sensor) & 1 != 0
            });
            if let Some(i) = flagged {
                chunk[i].flags |= WAKE_UP_NEEDS_ACK;
            }
            match self.tube.send_batch(chunk) {
                Ok(_) => {
                    done = end;
                    self.stats.events_sent += chunk.len() as u64;
                    self.stats.packets_sent += 1;
                    if flagged.is_some() {
                        self.outstanding.push_back(now);
                        self.stats.wakeup_flagged += 1;
                        self.stats.wakeup_outstanding = self.outstanding.len() as u64;
                    }
                    continue;
                }
                Err(e) => {
                    // Not sent: the next packet may be cut differently.
                    if let Some(i) = flagged {
                        chunk[i].flags &= !WAKE_UP_NEEDS_ACK;
                    }
                    match e {
                        TubeError::WouldBlock => {
                            self.stats.tube_full += 1;
                            self.blocked = true;
                            return Ok(done);
                        }
                        TubeError::PacketTooLarge { .. } if self.max_per_packet > 1 => {
                            self.max_per_packet /= 2;
                        }
                        TubeError::PeerClosed => return Err(Closed::Peer),
                        e => return Err(Closed::Error(e)),
                    }
                }
            }
        }
        self.blocked = false;
        Ok(done)
    }

    /// Read every ack packet the client sent (`u32` counts). Malformed packets are counted
    /// and skipped.
    pub(crate) fn read_acks(&mut self) -> Result<(), Closed> {
        let mut buf = [0u32; 64];
        loop {
            match self.tube.recv_batch(&mut buf) {
                Ok(n) => {
                    for &count in &buf[..n] {
                        self.ack(count);
                    }
                }
                Err(TubeError::WouldBlock) => return Ok(()),
                Err(
                    TubeError::BadPacketSize { .. }
                    | TubeError::Truncated { .. }
                    | TubeError::EmptyPacket,
                ) => self.stats.bad_packets += 1,
                Err(TubeError::PeerClosed) => return Err(Closed::Peer),
                Err(e) => return Err(Closed::Error(e)),
            }
        }
    }

    /// The client acknowledged `count` flagged packets.
    pub(crate) fn ack(&mut self, count: u32) {
        self.stats.acks_received += u64::from(count);
        let matched = (count as usize).min(self.outstanding.len());
        self.outstanding.drain(..matched);
        self.stats.acks_unmatched += u64::from(count) - matched as u64;
        self.stats.wakeup_outstanding = self.outstanding.len() as u64;
    }

    /// Release flagged packets unacknowledged for `timeout_ns`.
    pub(crate) fn expire_wakeups(&mut self, now: i64, timeout_ns: i64) {
        while self
            .outstanding
            .front()
            .is_some_and(|&t| t.saturating_add(timeout_ns) <= now)
        {
            self.outstanding.pop_front();
            self.stats.wakeup_timeouts += 1;
        }
        self.stats.wakeup_outstanding = self.outstanding.len() as u64;
    }

    /// The connection ends: count what was never sent and release its wake-ups.
    pub(crate) fn finish(mut self) -> ConnectionStats {
        self.stats.events_discarded += (self.pending.len() + self.cache.len()) as u64;
        self.stats.cached = 0;
        self.stats.pending = 0;
        self.outstanding.clear();
        self.stats.wakeup_outstanding = 0;
        self.stats
    }
}

/// Events per packet for a send buffer of `bytes`.
fn packet_events(bytes: usize) -> usize {
    (bytes / EVENT_SIZE).clamp(1, MAX_EVENTS_PER_PACKET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittube::BitTube;

    fn ev(sensor: i32, ts: i64) -> SensorEvent {
        SensorEvent::new(sensor, 1, ts, &[ts as f32])
    }

    #[test]
    fn full_tube_fills_cache_drops_oldest_keeps_order_and_counts() {
        let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
        let mut c = Connection::new(local, 50, 1000, 0, 4096);
        c.subs.insert(1, Subscription::new(1, 0));
        for ts in 0..2000 {
            assert!(c.offer(&ev(1, ts)));
            c.send_pending(0).unwrap();
        }
        assert!(c.blocked);
        assert_eq!(c.stats.cached, 50);
        let s = c.stats.clone();
        assert_eq!(s.events_queued, 2000);
        assert_eq!(s.events_sent + s.events_dropped + s.cached as u64, 2000);
        assert!(s.events_dropped > 0);
        // Read everything: timestamps increase across tube and cache; nothing else is lost.
        let mut got = Vec::new();
        let mut buf = [SensorEvent::zeroed(); 256];
        loop {
            match remote.recv_batch(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(TubeError::WouldBlock) => {
                    if c.cache.is_empty() {
                        break;
                    }
                    c.write_cache(0).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len() as u64 + c.stats.events_dropped, 2000);
        assert!(got.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert_eq!(got.last().unwrap().timestamp, 1999);
    }

    #[test]
    fn meta_events_survive_a_full_cache() {
        let (local, _remote) = BitTube::new().unwrap().into_ends().unwrap();
        let mut c = Connection::new(local, 4, 1000, 0, 4096);
        c.blocked = true;
        c.queue_flush_complete(1, 0);
        for ts in 0..10 {
            c.queue(ev(1, ts), 0);
        }
        c.send_pending(0).unwrap();
        assert_eq!(c.cache.len(), 4);
        assert!(c.cache[0].is_meta());
        assert_eq!(c.stats.events_dropped, 7);
    }

    #[test]
    fn wake_up_packets_are_flagged_once_and_acks_and_timeouts_release_them() {
        let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
        let mut c = Connection::new(local, 100, 1000, 1 << 4, 4096);
        c.queue(ev(4, 1), 0);
        c.queue(ev(4, 2), 0);
        c.send_pending(10).unwrap();
        let mut buf = [SensorEvent::zeroed(); 8];
        assert_eq!(remote.recv_batch(&mut buf).unwrap(), 2);
        assert!(buf[0].needs_ack() && !buf[1].needs_ack());
        assert_eq!(c.stats.wakeup_outstanding, 1);
        c.queue(ev(4, 3), 0);
        c.send_pending(20).unwrap();
        remote.send_batch(&[1u32]).unwrap();
        c.read_acks().unwrap();
        assert_eq!(c.stats.wakeup_outstanding, 1);
        c.expire_wakeups(20 + 99, 100);
        assert_eq!(c.stats.wakeup_outstanding, 1);
        c.expire_wakeups(20 + 100, 100);
        assert_eq!(c.stats.wakeup_outstanding, 0);
        assert_eq!(c.stats.wakeup_timeouts, 1);
        remote.send_batch(&[5u8, 6, 7]).unwrap();
        c.read_acks().unwrap();
        assert_eq!(c.stats.bad_packets, 1);
        drop(remote);
        assert!(matches!(c.read_acks(), Err(Closed::Peer)));
    }

    #[test]
    fn overflow_drops_in_bulk_and_meta_counting_follows_the_cache() {
        let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
        let mut c = Connection::new(local, 50, 1000, 0, 4096);
        c.blocked = true;
        for ts in 0..120 {
            c.queue(ev(1, ts), 0);
        }
        c.send_pending(0).unwrap();
        assert_eq!(c.stats.events_dropped, 70);
        assert_eq!(c.cache.front().unwrap().timestamp, 70);
        assert_eq!(c.cache.back().unwrap().timestamp, 119);
        // A meta event in the cache switches to one-by-one drops; sending clears the count.
        c.queue_flush_complete(1, 0);
        c.send_pending(0).unwrap();
        assert_eq!(c.metas_cached, 1);
        assert!(c.cache.iter().any(|e| e.is_meta()));
        c.blocked = false;
        let mut buf = [SensorEvent::zeroed(); 256];
        while !c.cache.is_empty() {
            c.write_cache(0).unwrap();
            while remote.recv_batch(&mut buf).is_ok() {}
        }
        assert_eq!(c.metas_cached, 0);
        // The meta event took the place of the oldest sensor event.
        assert_eq!(c.stats.events_dropped, 71);
        assert_eq!(c.stats.events_sent, 50);
    }

    use bytemuck::Zeroable;
}
