//! BitTube vs raw libc SEQPACKET: 104-byte events from this process to another.
//!
//! `cargo bench --bench bittube` (all), `cargo bench --bench bittube -- 4096/1` (one
//! `<buffer>/<batch>` configuration); `--smoke` (or `BITTUBE_BENCH_SMOKE=1`): 3 short rounds
//! per configuration, to prove the bench works.
//!
//! For batch sizes 1, 8 and 39 (events per packet) and for 4 KiB (Android's default) and
//! 100 KiB (SensorService's batching size) socket buffers, the same transfer runs two ways in
//! the same run, in alternating rounds:
//!
//! - **raw**: `libc::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK)`, `setsockopt`
//!   SO_SNDBUF/SO_RCVBUF, `send(MSG_DONTWAIT)` / `recv(MSG_DONTWAIT)`, `poll` on EAGAIN;
//! - **BitTube**: `BitTube::with_buffer_size`, `send_batch_timeout` / `recv_batch_timeout`.
//!
//! The receiver is this bench binary re-executed (`BITTUBE_BENCH_CHILD` set), which gets the
//! receiving socket by fd passing over a control socketpair (its stdin). A round is timed from
//! the receiver's "ready" to its final count acknowledgement. Each line prints the median
//! events/s of the rounds for both, the median of the per-round BitTube / raw ratios (each
//! BitTube round against its raw neighbour; which goes first alternates) and their range. The
//! whole run takes about 20-30 s. The last two columns are the CPU time (user + system, sender
//! and receiver together) per event in ns, median of the rounds: less sensitive to
//! scheduling noise than wall-clock rates on a busy machine.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bittube::bittube::{BitTube, TubeEnd};
use bittube::fd_transfer::{recv_with_fds, send_with_fds, FdTransferError};
use bytemuck::{Pod, Zeroable};

const CHILD_ENV: &str = "BITTUBE_BENCH_CHILD";
const LONG: Duration = Duration::from_secs(60);
const ROUNDS: usize = 21;
const ROUND_SECONDS: f64 = 0.07;
const BATCHES: [usize; 3] = [1, 8, 39];
const BUFFERS: [usize; 2] = [4096, 100 * 1024];

/// Android's ASensorEvent: 104 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct SensorEvent {
    version: i32,
    sensor: i32,
    kind: i32,
    reserved0: i32,
    timestamp: i64,
    data: [f32; 16],
    flags: u32,
    reserved1: [u32; 3],
}

const EVENT_SIZE: usize = std::mem::size_of::<SensorEvent>();
const _: () = assert!(EVENT_SIZE == 104);

/// What the parent asks the child to receive: 16 bytes on the control socket, with the data
/// socket's fd attached.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Round {
    raw: u32,
    batch: u32,
    events: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Raw,
    Tube,
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    // `cargo bench` passes `--bench`; other arguments are filters on "<buffer>/<batch>",
    // e.g. `cargo bench --bench bittube -- 4096/1`.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let smoke = std::env::args().any(|a| a == "--smoke")
        || std::env::var_os("BITTUBE_BENCH_SMOKE").is_some_and(|v| v != "0");
    let (rounds, round_seconds) = if smoke {
        (3, 0.01)
    } else {
        (ROUNDS, ROUND_SECONDS)
    };
    let (control, mut child) = start_child();
    let run_start = Instant::now();
    println!("bittube bench: 104-byte events, one process to another, median of {rounds} rounds");
    println!(
        "{:>8} {:>6} {:>13} {:>13} {:>7} {:>14} {:>8} {:>8}",
        "buffer",
        "batch",
        "raw ev/s",
        "BitTube ev/s",
        "ratio",
        "pair ratios",
        "raw cpu",
        "tube cpu"
    );
    for buffer in BUFFERS {
        for batch in BATCHES {
            let name = format!("{buffer}/{batch}");
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            // Calibrate the round size so that a round takes about ROUND_SECONDS.
            let probe = (if smoke { 2_000 } else { 20_000 } / batch).max(1) * batch;
            let (rate, _) = run_round(&control, Way::Raw, buffer, batch, probe as u64);
            let per_round = ((rate * round_seconds) as usize / batch).max(1) * batch;
            let (mut raw, mut tube) = (Vec::new(), Vec::new());
            let (mut raw_cpu, mut tube_cpu) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate which way goes first, so that neither always follows the other
                // (the previous round's socket teardown, cache state).
                let order = if round % 2 == 0 {
                    [Way::Raw, Way::Tube]
                } else {
                    [Way::Tube, Way::Raw]
                };
                for way in order {
                    let (r, c) = run_round(&control, way, buffer, batch, per_round as u64);
                    match way {
                        Way::Raw => {
                            raw.push(r);
                            raw_cpu.push(c);
                        }
                        Way::Tube => {
                            tube.push(r);
                            tube_cpu.push(c);
                        }
                    }
                }
            }
            // The raw and BitTube rounds of a pair share the machine's load of the moment: the median
            // of their ratios is the comparison; the range shows the noise.
            let mut ratios: Vec<f64> = tube.iter().zip(&raw).map(|(t, r)| t / r).collect();
            let ratio = median(&mut ratios);
            let (raw, tube) = (median(&mut raw), median(&mut tube));
            println!(
                "{:>8} {:>6} {:>13.0} {:>13.0} {:>7.3} {:>6.2}..{:<6.2} {:>8.0} {:>8.0}",
                buffer,
                batch,
                raw,
                tube,
                ratio,
                ratios[0],
                ratios[ratios.len() - 1],
                median(&mut raw_cpu),
                median(&mut tube_cpu),
            );
        }
    }
    drop(control);
    let status = child.wait().expect("wait for the receiver");
    assert!(status.success(), "receiver failed: {status}");
    println!("total {:.1} s", run_start.elapsed().as_secs_f64());
}

/// CPU time this process has used (user + system), in nanoseconds.
fn cpu_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .expect("process CPU clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn start_child() -> (OwnedFd, Child) {
    let (parent, child) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .expect("control socketpair");
    let child = Command::new(std::env::current_exe().expect("bench binary"))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::from(child))
        .spawn()
        .expect("start the receiver");
    // The child exits when `parent`, its control socket's peer, is closed.
    (parent, child)
}

/// One timed transfer of `events` events in packets of `batch`; returns events per second
/// and the CPU time both processes spent per event (ns).
fn run_round(control: &OwnedFd, way: Way, buffer: usize, batch: usize, events: u64) -> (f64, f64) {
    let round = Round {
        raw: (way == Way::Raw) as u32,
        batch: batch as u32,
        events,
    };
    let packet: Vec<SensorEvent> = (0..batch as u32)
        .map(|i| SensorEvent {
            version: EVENT_SIZE as i32,
            sensor: 1,
            kind: 1,
            timestamp: i64::from(i),
            data: [0.5; 16],
            flags: i,
            ..SensorEvent::zeroed()
        })
        .collect();
    let packets = events / batch as u64;
    match way {
        Way::Raw => {
            let (mine, theirs) = raw_socketpair(buffer);
            send_with_fds(control, bytemuck::bytes_of(&round), &[theirs.as_fd()]).unwrap();
            drop(theirs);
            let mut ack = [0u64; 2];
            raw_recv(mine.as_fd(), bytemuck::cast_slice_mut(&mut ack)); // ready
            let start = Instant::now();
            let cpu = cpu_ns();
            let bytes: &[u8] = bytemuck::cast_slice(&packet);
            for _ in 0..packets {
                raw_send(mine.as_fd(), bytes);
            }
            let n = raw_recv(mine.as_fd(), bytemuck::cast_slice_mut(&mut ack));
            let elapsed = start.elapsed();
            let cpu = cpu_ns() - cpu + ack[1];
            assert_eq!((n, ack[0]), (16, events), "raw: receiver count");
            (
                events as f64 / elapsed.as_secs_f64(),
                cpu as f64 / events as f64,
            )
        }
        Way::Tube => {
            let (mine, theirs) = BitTube::with_buffer_size(buffer)
                .unwrap()
                .into_ends()
                .unwrap();
            send_with_fds(control, bytemuck::bytes_of(&round), &[theirs.as_fd()]).unwrap();
            drop(theirs);
            let mut ack = [0u64; 2];
            mine.recv_batch_timeout(&mut ack, LONG).unwrap(); // ready
            let start = Instant::now();
            let cpu = cpu_ns();
            for _ in 0..packets {
                mine.send_batch_timeout(&packet, LONG).unwrap();
            }
            assert_eq!(mine.recv_batch_timeout(&mut ack, LONG).unwrap(), 2);
            let elapsed = start.elapsed();
            let cpu = cpu_ns() - cpu + ack[1];
            assert_eq!(ack[0], events, "BitTube: receiver count");
            (
                events as f64 / elapsed.as_secs_f64(),
                cpu as f64 / events as f64,
            )
        }
    }
}

/// The receiver: one round per control message, until the control socket closes.
fn child() {
    let control = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let mut buf = vec![SensorEvent::zeroed(); 64];
    loop {
        let mut round = Round::zeroed();
        let got = match recv_with_fds(&control, bytemuck::bytes_of_mut(&mut round), 1) {
            Ok(got) => got,
            Err(FdTransferError::PeerClosed) => return,
            Err(e) => panic!("bench child: {e}"),
        };
        let fd = got.fds.into_iter().next().expect("data socket");
        if round.raw == 1 {
            let fd = fd.as_fd();
            raw_send(fd, bytemuck::bytes_of(&[0u64; 2]));
            let cpu = cpu_ns();
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
            let mut count = 0u64;
            while count < round.events {
                let n = raw_recv(fd, bytes);
                count += (n / EVENT_SIZE) as u64;
            }
            raw_send(fd, bytemuck::bytes_of(&[count, cpu_ns() - cpu]));
        } else {
            let tube = TubeEnd::from(fd);
            tube.send_batch_timeout(&[0u64; 2], LONG).unwrap();
            let cpu = cpu_ns();
            let mut count = 0u64;
            while count < round.events {
                count += tube.recv_batch_timeout(&mut buf, LONG).unwrap() as u64;
            }
            tube.send_batch_timeout(&[count, cpu_ns() - cpu], LONG)
                .unwrap();
        }
    }
}

// ---- the raw baseline: libc only -------------------------------------------------------

fn raw_socketpair(buffer: usize) -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: socketpair writes two fds into the 2-element array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    let size = buffer as libc::c_int;
    for fd in fds {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: fd is open; the option value is a c_int of the given length.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
    }
    // SAFETY: socketpair just created both fds and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn raw_wait(fd: BorrowedFd<'_>, events: libc::c_short) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, LONG.as_millis() as libc::c_int) };
    assert!(r > 0, "raw poll: {r} {}", std::io::Error::last_os_error());
}

fn raw_send(fd: BorrowedFd<'_>, bytes: &[u8]) {
    loop {
        // SAFETY: bytes is a valid buffer of bytes.len() bytes.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n == bytes.len() as isize {
            return;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => raw_wait(fd, libc::POLLOUT),
            Some(libc::EINTR) => {}
            _ => panic!("raw send: {err}"),
        }
    }
}

fn raw_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: buf is a valid, writable buffer of buf.len() bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            return n as usize;
        }
        assert!(n != 0, "raw recv: peer closed");
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => raw_wait(fd, libc::POLLIN),
            Some(libc::EINTR) => {}
            _ => panic!("raw recv: {err}"),
        }
    }
}
