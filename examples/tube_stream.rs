//! Stream sensor-style events to another process through a BitTube.
//!
//! The parent creates a [`BitTube`], starts a child (this program again, with the argument
//! `child`), and hands it the tube's remote end by fd passing (SCM_RIGHTS) over a Unix
//! socketpair that is the child's stdin. It then streams N 104-byte events (Android's
//! `ASensorEvent` layout) in batches, one packet per batch; the child checks every event and
//! acknowledges each packet with the running count, over the same tube. The parent waits on
//! both directions with one mio `Poll`. When the last acknowledgement arrives the parent closes
//! its end, which the child sees as "peer closed" and exits.
//!
//! ```text
//! cargo run --release --example tube_stream -- [--events N] [--batch B] [--buffer BYTES]
//! ```
//! Exits 0 when every event arrived intact and was acknowledged.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bittube::bittube::{BitTube, TubeEnd, TubeError, DEFAULT_BUFFER_SIZE};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use bytemuck::{Pod, Zeroable};
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

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

const _: () = assert!(std::mem::size_of::<SensorEvent>() == 104);

/// The event with sequence number `seq` (the child recomputes it to check what arrived).
fn event(seq: u64) -> SensorEvent {
    let mut data = [0f32; 16];
    data[0] = (seq % 1000) as f32 * 0.01;
    data[1] = 9.81;
    SensorEvent {
        version: 104,
        sensor: 1,
        kind: 1, // accelerometer
        reserved0: 0,
        timestamp: seq as i64 * 1_000_000,
        data,
        flags: seq as u32,
        reserved1: [0; 3],
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);
type Error = Box<dyn std::error::Error>;

struct Options {
    events: u64,
    batch: usize,
    buffer: usize,
}

fn parse_options(args: &[String]) -> Result<Options, Error> {
    let mut o = Options {
        events: 100_000,
        batch: 39,
        buffer: DEFAULT_BUFFER_SIZE,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || -> Result<u64, Error> {
            let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            Ok(v.parse().map_err(|e| format!("{arg} {v}: {e}"))?)
        };
        match arg.as_str() {
            "--events" => o.events = value()?,
            "--batch" => o.batch = value()? as usize,
            "--buffer" => o.buffer = value()? as usize,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if o.events == 0 || o.batch == 0 {
        return Err("--events and --batch must be at least 1".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("child") {
        child()
    } else {
        parse_options(&args).and_then(|o| parent(&o))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tube_stream: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(o: &Options) -> Result<(), Error> {
    let mut tube = BitTube::with_buffer_size(o.buffer)?;
    let remote = tube.take_remote()?;

    let (control, child_control) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("child")
        .stdin(Stdio::from(child_control))
        .spawn()?;
    // The remote end travels by fd passing; the tube itself is close-on-exec, so the child
    // could not have inherited it.
    send_with_fds(&control, b"tube", &[remote.as_fd()])?;
    drop(remote);

    let mut local = tube.into_local();
    let kernel_buffer = local.send_buffer_size()?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4);
    poll.registry().register(
        &mut local,
        Token(0),
        Interest::READABLE | Interest::WRITABLE,
    )?;

    let start = Instant::now();
    let mut batch = Vec::with_capacity(o.batch);
    let (mut sent, mut acked, mut packets, mut acks) = (0u64, 0u64, 0u64, 0u64);
    let mut ack = [0u64; 64];
    while acked < o.events {
        // Send until the tube is full (edge-triggered readiness: go until WouldBlock).
        while sent < o.events {
            let n = (o.events - sent).min(o.batch as u64);
            batch.clear();
            batch.extend((sent..sent + n).map(event));
            match local.send_batch(&batch) {
                Ok(_) => {
                    sent += n;
                    packets += 1;
                }
                Err(TubeError::WouldBlock) => break,
                Err(e) => return Err(format!("sending events: {e}").into()),
            }
        }
        // Drain acknowledgements.
        loop {
            match local.recv_batch(&mut ack) {
                Ok(n) => {
                    acks += 1;
                    acked = ack[n - 1];
                }
                Err(TubeError::WouldBlock) => break,
                Err(e) => return Err(format!("reading acknowledgements: {e}").into()),
            }
        }
        if acked < o.events {
            poll.poll(&mut events, Some(TIMEOUT))?;
            if events.is_empty() {
                return Err(format!("no progress in {TIMEOUT:?} ({acked} of {sent} acked)").into());
            }
        }
    }
    let elapsed = start.elapsed();
    poll.registry().deregister(&mut local)?;
    drop(local); // the child sees PeerClosed and exits

    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    let rate = o.events as f64 / elapsed.as_secs_f64();
    println!(
        "tube_stream: {} events of {} bytes in {} packets (batch {}) to child {}, \
         {} acks back, all intact",
        o.events,
        std::mem::size_of::<SensorEvent>(),
        packets,
        o.batch,
        child.id(),
        acks
    );
    println!(
        "tube_stream: {:.1} ms, {:.0} events/s, tube buffers {} bytes (kernel: {})",
        elapsed.as_secs_f64() * 1e3,
        rate,
        o.buffer,
        kernel_buffer
    );
    Ok(())
}

fn child() -> Result<(), Error> {
    let control: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut buf = [0u8; 8];
    let got = recv_with_fds(&control, &mut buf, 1)?;
    if &buf[..got.len] != b"tube" {
        return Err("unexpected message on the control socket".into());
    }
    let fd = got
        .fds
        .into_iter()
        .next()
        .ok_or("no fd came with the tube")?;
    let tube = TubeEnd::try_from_socket(fd)?;

    let mut events = vec![SensorEvent::zeroed(); 256];
    let mut count = 0u64;
    loop {
        match tube.recv_batch_timeout(&mut events, TIMEOUT) {
            Ok(n) => {
                for e in &events[..n] {
                    if *e != event(count) {
                        return Err(format!("event {count} arrived damaged: {e:?}").into());
                    }
                    count += 1;
                }
                tube.send_batch_timeout(&[count], TIMEOUT)?;
            }
            Err(TubeError::PeerClosed) => return Ok(()),
            Err(e) => return Err(format!("child after {count} events: {e}").into()),
        }
    }
}
