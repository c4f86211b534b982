//! The equal-work baseline of `sensor_load`: the same pipeline with raw libc calls and no
//! binder, no service logic.
//!
//! Four timer threads (one per sensor, 1 kHz, scheduled as the HAL threads are: a channel
//! receive with an absolute deadline, every sample due by the wake-up sent and stamped with
//! its deadline on `CLOCK_MONOTONIC`, one eventfd wake-up of the sender per batch) hand
//! 104-byte events over a channel to one sender thread, as the service's HAL threads do. The sender fans every event out to `clients` consumer processes over SEQPACKET
//! socketpairs with 4 KiB buffers: packets of at most 39 events, a drop-oldest cache of 1024
//! events per consumer while its socket is full (epoll for writable only then), the first
//! wake-up event of a packet flagged, the consumers' `u32` acks read back. Each consumer (this
//! bench re-executed with [`CONSUMER_ENV`]) reads as a sensor client does (non-blocking
//! `recv`, `poll` when empty), records receipt time minus stamp (after a 200 ms warm-up),
//! acks flagged packets, and on end of file prints its histogram, event count and CPU time.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittube::sensor_demo::{clock_now_ns, SensorEvent};
use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    recv, send, setsockopt, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Makes this bench a consumer of the raw pipeline.
pub const CONSUMER_ENV: &str = "SENSOR_LOAD_RAW_CONSUMER";
/// Socket buffers, as the service's plain connections.
const BUFFER: usize = 4096;
/// Events per packet for a 4 KiB buffer (4096 / 104).
const PER_PACKET: usize = BUFFER / EVENT;
const EVENT: usize = std::mem::size_of::<SensorEvent>();
/// Events a consumer's cache holds while its socket is full.
const CACHE: usize = 1024;
/// The sensors: handle 4 is the wake-up accelerometer, as in the service's list.
const SENSORS: [(i32, i32); 4] = [(1, 1), (2, 4), (3, 2), (4, 1)];
const WAKE_UP: i32 = 4;
const WAKE_UP_NEEDS_ACK: u32 = 1 << 31;
const PERIOD_NS: i64 = 1_000_000;
/// Latencies of the first events after a consumer's start are not recorded.
const WARM_UP_NS: i64 = 200_000_000;

/// What the raw pipeline measured.
pub struct RawResult {
    /// Receipt time minus stamp, every consumer, ns.
    pub latency: Histogram<u64>,
    /// Events the timers produced (each due to every consumer).
    pub produced: u64,
    /// Events the consumers received.
    pub received: u64,
    /// Events written, packets written, drops, times a socket was full, largest cache.
    pub sent: u64,
    pub packets: u64,
    pub drops: u64,
    pub tube_full: u64,
    pub cache_peak: usize,
    /// CPU of the sender thread, the timer threads and all consumers, ns.
    pub sender_cpu: u64,
    pub timer_cpu: u64,
    pub consumer_cpu: u64,
    /// Wall time the timers ran, ns.
    pub wall_ns: u64,
    /// How late the timers woke: events are stamped with their deadline, so a late timer
    /// shows in the latencies as it does in the service's (its HAL threads stamp alike).
    pub late: Lateness,
}

fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

fn process_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// One consumer's socket and its sending state.
struct Conn {
    fd: OwnedFd,
    cache: VecDeque<SensorEvent>,
    blocked: bool,
    sent: u64,
    packets: u64,
    drops: u64,
    tube_full: u64,
    cache_peak: usize,
}

impl Conn {
    /// Sends `events[..]` in packets until done or the socket is full; returns how many went.
    fn send_slice(&mut self, events: &[SensorEvent], scratch: &mut Vec<SensorEvent>) -> usize {
        let mut done = 0;
        while done < events.len() {
            let chunk = &events[done..(done + PER_PACKET).min(events.len())];
            let bytes: &[u8] = match chunk.iter().position(|e| e.sensor == WAKE_UP) {
                Some(i) => {
                    scratch.clear();
                    scratch.extend_from_slice(chunk);
                    scratch[i].flags |= WAKE_UP_NEEDS_ACK;
                    bytemuck::cast_slice(scratch)
                }
                None => bytemuck::cast_slice(chunk),
            };
            match send(self.fd.as_raw_fd(), bytes, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => {
                    done += chunk.len();
                    self.sent += chunk.len() as u64;
                    self.packets += 1;
                }
                Err(Errno::EAGAIN) => {
                    self.tube_full += 1;
                    self.blocked = true;
                    break;
                }
                Err(e) => panic!("raw sender: send: {e}"),
            }
        }
        done
    }

    /// Appends to the cache, dropping the oldest beyond its capacity.
    fn cache(&mut self, events: &[SensorEvent]) {
        let over = (self.cache.len() + events.len()).saturating_sub(CACHE);
        let from_cache = over.min(self.cache.len());
        self.cache.drain(..from_cache);
        let skip = over - from_cache;
        self.drops += over as u64;
        self.cache.extend(&events[skip..]);
        self.cache_peak = self.cache_peak.max(self.cache.len());
    }

    /// New events: straight to the socket when nothing waits before them, else behind the
    /// cache.
    fn offer(&mut self, events: &[SensorEvent], scratch: &mut Vec<SensorEvent>) {
        if self.cache.is_empty() && !self.blocked {
            let n = self.send_slice(events, scratch);
            self.cache(&events[n..]);
        } else {
            self.cache(events);
            if !self.blocked {
                self.flush(scratch);
            }
        }
    }

    /// Writes the cache until empty or the socket is full.
    fn flush(&mut self, scratch: &mut Vec<SensorEvent>) {
        let mut cache = std::mem::take(&mut self.cache);
        let n = self.send_slice(cache.make_contiguous(), scratch);
        cache.drain(..n);
        self.cache = cache;
    }

    fn read_acks(&self) {
        let mut buf = [0u8; 256];
        while recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
    }
}

/// The sender thread: drains the timers' channel on every eventfd wake-up and fans out.
fn sender(
    mut conns: Vec<Conn>,
    rx: crossbeam_channel::Receiver<SensorEvent>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
) -> (Vec<Conn>, u64) {
    let cpu0 = thread_cpu_ns();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    epoll
        .add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX))
        .expect("epoll add");
    for (i, c) in conns.iter().enumerate() {
        epoll
            .add(c.fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .expect("epoll add");
    }
    let mut events = [EpollEvent::empty(); 128];
    let mut batch = Vec::new();
    let mut scratch = Vec::with_capacity(PER_PACKET);
    let mut watching = vec![false; conns.len()];
    loop {
        let n = epoll
            .wait(&mut events, EpollTimeout::from(100u16))
            .expect("epoll wait");
        for ev in &events[..n] {
            let i = ev.data();
            if i == u64::MAX {
                let _ = wake.read();
                continue;
            }
            let c = &mut conns[i as usize];
            if ev.events().contains(EpollFlags::EPOLLIN) {
                c.read_acks();
            }
            if ev.events().contains(EpollFlags::EPOLLOUT) && c.blocked {
                c.blocked = false;
                c.flush(&mut scratch);
            }
        }
        batch.clear();
        batch.extend(rx.try_iter());
        if !batch.is_empty() {
            for c in conns.iter_mut() {
                c.offer(&batch, &mut scratch);
            }
        }
        for (i, c) in conns.iter_mut().enumerate() {
            if c.blocked != watching[i] {
                let mut flags = EpollFlags::EPOLLIN;
                if c.blocked {
                    flags |= EpollFlags::EPOLLOUT;
                }
                let mut ev = EpollEvent::new(flags, i as u64);
                epoll.modify(c.fd.as_fd(), &mut ev).expect("epoll modify");
                watching[i] = c.blocked;
            }
        }
        if stop.load(Ordering::Acquire) && rx.is_empty() {
            let pending = conns.iter().any(|c| !c.cache.is_empty());
            if !pending {
                break;
            }
        }
    }
    (conns, thread_cpu_ns().saturating_sub(cpu0))
}

/// One timer thread: an event of `sensor` every millisecond until `stop`.
fn timer(
    (sensor, kind): (i32, i32),
    tx: crossbeam_channel::Sender<SensorEvent>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
) -> (u64, u64, Lateness) {
    let cpu0 = thread_cpu_ns();
    let mut lateness = Lateness::default();
    let (_keep, never) = crossbeam_channel::bounded::<()>(1);
    // Scheduled and stamped as the service's simulated HAL threads do: a channel receive
    // with a deadline; every sample due by the wake-up sent, stamped with its deadline; one
    // wake-up of the sender per batch; more than a second behind, skip ahead.
    let origin = Instant::now();
    let origin_ns = clock_now_ns();
    let period = Duration::from_nanos(PERIOD_NS as u64);
    let stamp = |at: Instant| origin_ns + at.duration_since(origin).as_nanos() as i64;
    let mut next = origin + period;
    let mut made = 0u64;
    while !stop.load(Ordering::Acquire) {
        let _ = never.recv_deadline(next);
        let now = Instant::now();
        let late = now.saturating_duration_since(next).as_nanos() as i64;
        lateness.max = lateness.max.max(late);
        lateness.over_10ms += u64::from(late > 10_000_000);
        if now.duration_since(next) > Duration::from_secs(1) {
            next = now;
        }
        let mut emitted = false;
        while next <= now {
            let event = SensorEvent::new(sensor, kind, stamp(next), &[0.1, 0.2, 9.8]);
            if tx.send(event).is_err() {
                return (made, thread_cpu_ns().saturating_sub(cpu0), lateness);
            }
            made += 1;
            emitted = true;
            next += period;
        }
        if emitted {
            let _ = wake.write(1);
        }
    }
    (made, thread_cpu_ns().saturating_sub(cpu0), lateness)
}

/// How late the timer threads woke (after their deadline).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lateness {
    /// The latest wake-up, ns after its deadline.
    pub max: i64,
    /// Wake-ups more than 10 ms late.
    pub over_10ms: u64,
}

fn spawn_consumer(sock: OwnedFd) -> Result<Child, Error> {
    Ok(Command::new(std::env::current_exe()?)
        .env(CONSUMER_ENV, "1")
        .stdin(Stdio::from(sock))
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Runs the raw pipeline with `clients` consumers for `duration`.
pub fn run(clients: usize, duration: Duration) -> Result<RawResult, Error> {
    let mut conns = Vec::new();
    let mut children = Vec::new();
    for _ in 0..clients {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        for fd in [&mine, &theirs] {
            setsockopt(fd, sockopt::SndBuf, &BUFFER)?;
            setsockopt(fd, sockopt::RcvBuf, &BUFFER)?;
        }
        children.push(spawn_consumer(theirs)?);
        conns.push(Conn {
            fd: mine,
            cache: VecDeque::new(),
            blocked: false,
            sent: 0,
            packets: 0,
            drops: 0,
            tube_full: 0,
            cache_peak: 0,
        });
    }
    let mut readers = Vec::new();
    for c in children.iter_mut() {
        let mut r = BufReader::new(c.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(format!("raw consumer said {line:?}").into());
        }
        readers.push(r);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let wake = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let sender_wake = wake.clone();
    let sender_stop = stop.clone();
    let sender = std::thread::Builder::new()
        .name("raw-sender".into())
        .spawn(move || sender(conns, rx, sender_wake, sender_stop))?;
    let started = clock_now_ns();
    let timers: Vec<_> = SENSORS
        .iter()
        .map(|&s| {
            let (tx, wake, stop) = (tx.clone(), wake.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("raw-timer-{}", s.0))
                .spawn(move || timer(s, tx, wake, stop))
        })
        .collect::<Result<_, _>>()?;
    drop(tx);
    std::thread::sleep(duration);
    stop.store(true, Ordering::Release);
    let (mut produced, mut timer_cpu, mut late) = (0, 0, Lateness::default());
    for t in timers {
        let (m, c, l) = t.join().map_err(|_| "timer thread panicked")?;
        produced += m;
        timer_cpu += c;
        late.max = late.max.max(l.max);
        late.over_10ms += l.over_10ms;
    }
    let wall_ns = clock_now_ns().saturating_sub(started) as u64;
    let _ = wake.write(1);
    let (conns, sender_cpu) = sender.join().map_err(|_| "sender thread panicked")?;
    let mut out = RawResult {
        latency: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?,
        produced,
        received: 0,
        sent: conns.iter().map(|c| c.sent).sum(),
        packets: conns.iter().map(|c| c.packets).sum(),
        drops: conns.iter().map(|c| c.drops).sum(),
        tube_full: conns.iter().map(|c| c.tube_full).sum(),
        cache_peak: conns.iter().map(|c| c.cache_peak).max().unwrap_or(0),
        sender_cpu,
        timer_cpu,
        consumer_cpu: 0,
        wall_ns,
        late,
    };
    for c in &conns {
        c.read_acks();
    }
    drop(conns); // end of file for every consumer
    for (r, mut c) in readers.into_iter().zip(children) {
        absorb(r, &mut out)?;
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("raw consumer ended with {status}").into());
        }
    }
    Ok(out)
}

impl RawResult {
    /// Adds another run's figures to these.
    pub fn merge(&mut self, o: RawResult) -> Result<(), Error> {
        self.latency.add(&o.latency)?;
        self.produced += o.produced;
        self.received += o.received;
        self.sent += o.sent;
        self.packets += o.packets;
        self.drops += o.drops;
        self.tube_full += o.tube_full;
        self.cache_peak = self.cache_peak.max(o.cache_peak);
        self.sender_cpu += o.sender_cpu;
        self.timer_cpu += o.timer_cpu;
        self.consumer_cpu += o.consumer_cpu;
        self.wall_ns += o.wall_ns;
        self.late.max = self.late.max.max(o.late.max);
        self.late.over_10ms += o.late.over_10ms;
        Ok(())
    }
}

fn absorb(r: impl BufRead, out: &mut RawResult) -> Result<(), Error> {
    for line in r.lines() {
        let line = line?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["hist", v, c] => out.latency.saturating_record_n(v.parse()?, c.parse()?),
            ["events", n] => out.received += n.parse::<u64>()?,
            ["cpu", n] => out.consumer_cpu += n.parse::<u64>()?,
            _ => {}
        }
    }
    Ok(())
}

/// The consumer process: reads events from stdin (a SEQPACKET socket) until end of file.
pub fn consumer() -> Result<(), Error> {
    let stdin = std::io::stdin();
    let sock: BorrowedFd<'_> = stdin.as_fd();
    let mut hist: Histogram<u64> = Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut buf = vec![SensorEvent::new(0, 0, 0, &[]); 256];
    let mut events = 0u64;
    let mut first: Option<i64> = None;
    println!("ready");
    let cpu0 = process_cpu_ns();
    loop {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        let n = match recv(sock.as_raw_fd(), bytes, MsgFlags::MSG_DONTWAIT) {
            // The sender closes with acks unread: that reads as a reset, an end all the same.
            Ok(0) | Err(Errno::ECONNRESET) => break,
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                let mut p = [nix::poll::PollFd::new(sock, nix::poll::PollFlags::POLLIN)];
                nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = clock_now_ns();
        let got = &buf[..n / EVENT];
        let mut acks = 0u32;
        let from = *first.get_or_insert(got.first().map_or(now, |e| e.timestamp)) + WARM_UP_NS;
        for e in got {
            // Latencies from the warm-up on (the service's clients measure only their
            // window, which opens well after their start).
            if e.timestamp >= from {
                hist.saturating_record(now.saturating_sub(e.timestamp).max(1_000) as u64);
            }
            if e.flags & WAKE_UP_NEEDS_ACK != 0 {
                acks += 1;
            }
        }
        events += got.len() as u64;
        if acks > 0 {
            let _ = send(
                sock.as_raw_fd(),
                &acks.to_ne_bytes(),
                MsgFlags::MSG_DONTWAIT,
            );
        }
    }
    let cpu = process_cpu_ns().saturating_sub(cpu0);
    for v in hist.iter_recorded() {
        println!("hist {} {}", v.value_iterated_to(), v.count_at_value());
    }
    println!("events {events}");
    println!("cpu {cpu}");
    Ok(())
}
