//! The equal-work baseline of `input_dispatch`: a raw dispatcher with no binder and no
//! dispatcher logic (no window lookup, no wait queues, no ANR tracking).
//!
//! The same windows (one application process each, this bench re-executed with
//! [`APP_ENV`]), the same channels (SEQPACKET socketpairs with 32 KiB buffers), the same
//! messages (a 100-byte one-pointer MOTION message per window per tick at the same rate, a
//! 64-byte KEY message to the first window every 100 ticks), and the same answers: the
//! application reads what is there once readable, stamps the consume time and sends a
//! 24-byte FINISHED message per event. A reader thread of the dispatcher waits on all
//! channels with epoll and records publish → consume (the application's clock) and publish →
//! finished read, as the real dispatcher does.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittube::input_demo::message::{
    motion_message_size, FINISHED_MESSAGE_SIZE, KEY_MESSAGE_SIZE, KIND_FINISHED, KIND_KEY,
    KIND_MOTION,
};
use bittube::input_demo::{now_nanos, INPUT_CHANNEL_BUFFER_SIZE};
use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    recv, send, setsockopt, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Makes this bench an application of the raw dispatcher.
pub const APP_ENV: &str = "INPUT_DISPATCH_RAW_APP";
/// Publish times kept per window, by seq (far more than can be in flight).
const RING: usize = 1 << 14;

/// What the raw dispatcher measured (latencies in ns).
pub struct RawInput {
    pub consume: Histogram<u64>,
    pub finish: Histogram<u64>,
    pub sent: u64,
    pub finished: u64,
    /// CPU of the dispatcher's two threads and of all applications, ns.
    pub dispatcher_cpu: u64,
    pub app_cpu: u64,
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

fn header(kind: u32, seq: u32, buf: &mut [u8]) {
    buf[..4].copy_from_slice(&kind.to_ne_bytes());
    buf[4..8].copy_from_slice(&seq.to_ne_bytes());
}

/// Publish times by window and seq, shared by the sending and the reading thread.
struct Published {
    at: Vec<AtomicI64>,
    finished: AtomicU64,
}

impl Published {
    fn slot(&self, window: usize, seq: u32) -> &AtomicI64 {
        &self.at[window * RING + seq as usize % RING]
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("histogram bounds")
}

/// Reads finished signals from every window until `stop` and all sent are finished.
fn reader(
    socks: Vec<OwnedFd>,
    published: Arc<Published>,
    expect: Arc<AtomicU64>,
) -> (Histogram<u64>, Histogram<u64>, u64, Vec<OwnedFd>) {
    let cpu0 = thread_cpu_ns();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    for (i, s) in socks.iter().enumerate() {
        epoll
            .add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .expect("epoll add");
    }
    let (mut consume, mut finish) = (histogram(), histogram());
    let mut events = [EpollEvent::empty(); 16];
    let mut buf = [0u8; 64];
    let mut done = 0u64;
    while done < expect.load(Ordering::Acquire) {
        let n = epoll
            .wait(&mut events, EpollTimeout::from(100u16))
            .expect("epoll wait");
        for ev in &events[..n] {
            let w = ev.data() as usize;
            while let Ok(got) = recv(socks[w].as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                if got != FINISHED_MESSAGE_SIZE {
                    break;
                }
                let now = now_nanos();
                let kind = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
                let seq = u32::from_ne_bytes(buf[4..8].try_into().expect("4 bytes"));
                let consumed = i64::from_ne_bytes(buf[16..24].try_into().expect("8 bytes"));
                assert_eq!(kind, KIND_FINISHED, "raw app sent something else");
                let at = published.slot(w, seq).load(Ordering::Acquire);
                finish.saturating_record(now.saturating_sub(at).max(1_000) as u64);
                consume.saturating_record(consumed.saturating_sub(at).max(1_000) as u64);
                done += 1;
            }
        }
    }
    published
        .finished
        .store(thread_cpu_ns() - cpu0, Ordering::Release);
    (consume, finish, done, socks)
}

/// Runs `windows` applications, `rate` Hz for `seconds`.
pub fn run(windows: usize, rate: u32, seconds: f64) -> Result<RawInput, Error> {
    let (mut mine, mut apps) = (Vec::new(), Vec::new());
    for _ in 0..windows {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        for fd in [&a, &b] {
            setsockopt(fd, sockopt::SndBuf, &INPUT_CHANNEL_BUFFER_SIZE)?;
            setsockopt(fd, sockopt::RcvBuf, &INPUT_CHANNEL_BUFFER_SIZE)?;
        }
        let child = Command::new(std::env::current_exe()?)
            .env(APP_ENV, "1")
            .stdin(Stdio::from(b))
            .stdout(Stdio::piped())
            .spawn()?;
        apps.push(child);
        mine.push(a);
    }
    let send_socks: Vec<OwnedFd> = mine
        .iter()
        .map(|s| s.try_clone())
        .collect::<Result<_, _>>()?;
    let published = Arc::new(Published {
        at: (0..windows * RING).map(|_| AtomicI64::new(0)).collect(),
        finished: AtomicU64::new(0),
    });
    let expect = Arc::new(AtomicU64::new(u64::MAX));
    let (p, e) = (published.clone(), expect.clone());
    let reading = std::thread::Builder::new()
        .name("raw-dispatch-reader".into())
        .spawn(move || reader(mine, p, e))?;
    let cpu0 = thread_cpu_ns();
    let sent = inject(&send_socks, &published, rate, seconds)?;
    let inject_cpu = thread_cpu_ns() - cpu0;
    expect.store(sent, Ordering::Release);
    let (consume, finish, finished, socks) =
        reading.join().map_err(|_| "reader thread panicked")?;
    drop((socks, send_socks)); // end of file: the applications exit
    let app_cpu = collect(apps)?;
    Ok(RawInput {
        consume,
        finish,
        sent,
        finished,
        dispatcher_cpu: inject_cpu + published.finished.load(Ordering::Acquire),
        app_cpu,
    })
}

/// The injecting loop: a motion message per window per tick, a key every 100 ms.
fn inject(socks: &[OwnedFd], published: &Published, rate: u32, seconds: f64) -> Result<u64, Error> {
    let mut motion = vec![0u8; motion_message_size(1)];
    let mut key = vec![0u8; KEY_MESSAGE_SIZE];
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let ticks = (f64::from(rate) * seconds) as u64;
    let mut seqs = vec![0u32; socks.len()];
    let mut sent = 0u64;
    let start = Instant::now();
    let mut publish = |w: usize, msg: &mut [u8], kind: u32| -> Result<(), Error> {
        seqs[w] = seqs[w].wrapping_add(1).max(1);
        header(kind, seqs[w], msg);
        let t = now_nanos();
        msg[8..16].copy_from_slice(&t.to_ne_bytes());
        published.slot(w, seqs[w]).store(t, Ordering::Release);
        send(socks[w].as_raw_fd(), msg, MsgFlags::empty())?;
        sent += 1;
        Ok(())
    };
    for tick in 0..=ticks {
        let due = start + period * tick as u32;
        if let Some(rest) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
        for w in 0..socks.len() {
            publish(w, &mut motion, KIND_MOTION)?;
        }
        if tick % (u64::from(rate) / 10).max(1) == 0 {
            publish(0, &mut key, KIND_KEY)?;
        }
    }
    Ok(sent)
}

fn collect(apps: Vec<Child>) -> Result<u64, Error> {
    let mut cpu = 0;
    for mut app in apps {
        let out = app.stdout.take().ok_or("no stdout")?;
        for line in BufReader::new(out).lines() {
            if let Some(v) = line?.strip_prefix("cpu ") {
                cpu += v.parse::<u64>()?;
            }
        }
        let status = app.wait()?;
        if !status.success() {
            return Err(format!("raw application ended with {status}").into());
        }
    }
    Ok(cpu)
}

/// The application: consume whatever is readable, finish every event, until end of file.
pub fn app() -> Result<(), Error> {
    let stdin = std::io::stdin();
    let sock: BorrowedFd<'_> = stdin.as_fd();
    let mut buf = [0u8; 512];
    let mut fin = [0u8; FINISHED_MESSAGE_SIZE];
    let cpu0 = process_cpu_ns();
    'outer: loop {
        let mut p = [nix::poll::PollFd::new(sock, nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE)?;
        let consume_time = now_nanos();
        loop {
            match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break 'outer,
                Ok(_) => {
                    fin[..8].copy_from_slice(&buf[..8]);
                    header(
                        KIND_FINISHED,
                        u32::from_ne_bytes(buf[4..8].try_into()?),
                        &mut fin,
                    );
                    fin[8..12].copy_from_slice(&1u32.to_ne_bytes());
                    fin[16..24].copy_from_slice(&consume_time.to_ne_bytes());
                    send(sock.as_raw_fd(), &fin, MsgFlags::empty())?;
                }
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    println!("cpu {}", process_cpu_ns().saturating_sub(cpu0));
    Ok(())
}
