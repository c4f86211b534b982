//! BitTube behaviour: typed batches, size errors, peer closed vs would-block, buffer sizing,
//! mio readiness, and a tube end that travels to another process by fd passing.
//!
//! Cross-process tests re-execute this test binary with `BITTUBE_CHILD=<role>`: the named test
//! then acts as the child. The child's stdin is one end of a SEQPACKET socketpair (the control
//! socket); the tube end reaches the child over it by SCM_RIGHTS, never by inheritance.

mod common;
use common::*;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use bittube::bittube::{BitTube, TubeEnd, TubeError, DEFAULT_BUFFER_SIZE};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use bytemuck::{Pod, Zeroable};
use nix::sys::socket::{self, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// Android's ASensorEvent layout: 104 bytes.
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

fn event(seq: u32) -> SensorEvent {
    let mut data = [0f32; 16];
    data[0] = seq as f32 * 0.5;
    data[15] = -(seq as f32);
    SensorEvent {
        version: 104,
        sensor: (seq % 7) as i32,
        kind: 1,
        reserved0: 0,
        timestamp: 1_000_000 + i64::from(seq),
        data,
        flags: seq,
        reserved1: [0; 3],
    }
}

/// Receive a tube end over the control socket.
fn receive_tube_end(control: &OwnedFd) -> TubeEnd {
    let mut buf = [0u8; 16];
    let got = recv_with_fds(control, &mut buf, 1).expect("receive tube end");
    assert_eq!(&buf[..got.len], b"tube");
    let fd = got.fds.into_iter().next().expect("one fd");
    TubeEnd::try_from_socket(fd).expect("a SEQPACKET socket")
}

#[test]
fn pod_batches_round_trip() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let mut buf = [SensorEvent::zeroed(); 64];
    let mut seq = 0;
    for batch in [1usize, 8, 39] {
        let events: Vec<_> = (seq..seq + batch as u32).map(event).collect();
        seq += batch as u32;
        assert_eq!(local.send_batch(&events).unwrap(), batch);
        let n = remote.recv_batch(&mut buf).unwrap();
        assert_eq!(n, batch, "one packet carries the whole batch");
        assert_eq!(&buf[..n], &events[..]);
        // And back, with a different type on the same tube.
        remote.send_batch(&[n as u32]).unwrap();
        let mut ack = [0u32; 4];
        assert_eq!(local.recv_batch(&mut ack).unwrap(), 1);
        assert_eq!(ack[0], batch as u32);
    }
    // Two packets stay two packets.
    local.send_batch(&[event(1), event(2)]).unwrap();
    local.send_batch(&[event(3)]).unwrap();
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 2);
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], event(3));
}

#[test]
fn tube_end_handed_to_child_works_both_ways() {
    const TEST: &str = "tube_end_handed_to_child_works_both_ways";
    if child_role().as_deref() == Some("client") {
        let control = control_in_child();
        let tube = receive_tube_end(&control);
        let mut buf = [SensorEvent::zeroed(); 64];
        let mut seq = 0u32;
        for batch in [1usize, 8, 39] {
            let n = tube.recv_batch_timeout(&mut buf, LONG).expect("events");
            assert_eq!(n, batch);
            for (i, e) in buf[..n].iter().enumerate() {
                assert_eq!(*e, event(seq + i as u32));
            }
            seq += n as u32;
            tube.send_batch_timeout(&[n as u32], LONG).expect("ack");
        }
        // Events the other way too.
        let back: Vec<_> = (1000..1005).map(event).collect();
        tube.send_batch_timeout(&back, LONG)
            .expect("events to parent");
        // The parent closes its end: that is PeerClosed, not a timeout and not "no data".
        match tube.recv_batch_timeout(&mut buf, LONG) {
            Err(TubeError::PeerClosed) => {}
            other => panic!("expected PeerClosed, got {other:?}"),
        }
        return;
    }

    let mut tube = BitTube::new().unwrap();
    let remote = tube.take_remote().unwrap();
    let (child, control) = spawn_child(TEST, "client");
    send_with_fds(&control, b"tube", &[remote.as_fd()]).unwrap();
    drop(remote); // the child holds the only copy now

    let mut seq = 0u32;
    let mut ack = [0u32; 1];
    for batch in [1usize, 8, 39] {
        let events: Vec<_> = (seq..seq + batch as u32).map(event).collect();
        seq += batch as u32;
        tube.local().send_batch_timeout(&events, LONG).unwrap();
        assert_eq!(tube.local().recv_batch_timeout(&mut ack, LONG).unwrap(), 1);
        assert_eq!(ack[0], batch as u32, "child acknowledged the batch size");
    }
    let mut buf = [SensorEvent::zeroed(); 8];
    let n = tube.local().recv_batch_timeout(&mut buf, LONG).unwrap();
    assert_eq!(n, 5);
    assert_eq!(buf[4], event(1004));
    drop(tube);
    wait_success(child);
}

#[test]
fn dead_child_is_peer_closed_after_its_data() {
    const TEST: &str = "dead_child_is_peer_closed_after_its_data";
    if child_role().as_deref() == Some("dies") {
        let control = control_in_child();
        let tube = receive_tube_end(&control);
        tube.send_batch(&[event(7)]).expect("last words");
        // Exit without closing anything explicitly: the kernel closes the end.
        std::process::exit(0);
    }

    let mut tube = BitTube::new().unwrap();
    let remote = tube.take_remote().unwrap();
    let (child, control) = spawn_child(TEST, "dies");
    send_with_fds(&control, b"tube", &[remote.as_fd()]).unwrap();
    drop(remote);
    wait_success(child);

    let mut buf = [SensorEvent::zeroed(); 4];
    // What the child sent before dying is still delivered...
    assert_eq!(tube.local().recv_batch_timeout(&mut buf, LONG).unwrap(), 1);
    assert_eq!(buf[0], event(7));
    // ...then the death is reported as such, by every path.
    assert!(matches!(
        tube.local().recv_batch(&mut buf),
        Err(TubeError::PeerClosed)
    ));
    assert!(matches!(
        tube.local().recv_batch_timeout(&mut buf, LONG),
        Err(TubeError::PeerClosed)
    ));
    assert!(matches!(
        tube.local().send_batch(&[event(1)]),
        Err(TubeError::PeerClosed)
    ));
}

#[test]
fn bad_packet_size_is_rejected() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    local.send_batch(&[0xabu8; 100]).unwrap();
    local.send_batch(&[event(1)]).unwrap();
    let mut buf = [SensorEvent::zeroed(); 8];
    let err = remote.recv_batch(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            TubeError::BadPacketSize {
                len: 100,
                object_size: 104
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("100") && msg.contains("104"), "{msg}");
    // The bad packet is consumed; the next one is intact.
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], event(1));
}

#[test]
fn truncated_packet_is_rejected() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let ten: Vec<_> = (0..10).map(event).collect();
    local.send_batch(&ten).unwrap();
    local.send_batch(&[event(99)]).unwrap();
    let mut small = [SensorEvent::zeroed(); 4];
    let err = remote.recv_batch(&mut small).unwrap_err();
    assert!(
        matches!(
            err,
            TubeError::Truncated {
                len: 1040,
                capacity: 416,
                object_size: 104
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("1040") && msg.contains("416"), "{msg}");
    // No tail of the truncated packet is left behind.
    assert_eq!(remote.recv_batch(&mut small).unwrap(), 1);
    assert_eq!(small[0], event(99));
}

#[test]
fn would_block_and_peer_closed_are_distinct() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let mut buf = [SensorEvent::zeroed(); 64];
    assert!(matches!(
        remote.recv_batch(&mut buf),
        Err(TubeError::WouldBlock)
    ));

    // Fill the tube: the sender learns it is full.
    let mut sent = 0usize;
    loop {
        match local.send_batch(&[event(sent as u32)]) {
            Ok(_) => sent += 1,
            Err(TubeError::WouldBlock) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(sent < 100_000, "a 4 KiB tube never filled");
    }
    assert!(sent > 0);
    assert!(matches!(
        local.send_batch_timeout(&[event(0)], Duration::from_millis(20)),
        Err(TubeError::TimedOut { .. })
    ));

    drop(local);
    // Everything queued is still read, in order, then PeerClosed.
    for i in 0..sent {
        assert_eq!(remote.recv_batch(&mut buf).unwrap(), 1);
        assert_eq!(buf[0].flags, i as u32);
    }
    assert!(matches!(
        remote.recv_batch(&mut buf),
        Err(TubeError::PeerClosed)
    ));
    assert!(matches!(
        remote.recv_batch_timeout(&mut buf, LONG),
        Err(TubeError::PeerClosed)
    ));
    assert!(matches!(
        remote.send_batch(&[event(0)]),
        Err(TubeError::PeerClosed)
    ));
    assert!(matches!(
        remote.send_batch_timeout(&[event(0)], LONG),
        Err(TubeError::PeerClosed)
    ));
}

#[test]
fn recv_timeout_on_a_live_empty_tube_times_out() {
    let (_local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let mut buf = [0u32; 4];
    let err = remote
        .recv_batch_timeout(&mut buf, Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, TubeError::TimedOut { .. }), "{err:?}");
}

#[test]
fn empty_batches_are_refused_and_foreign_empty_packets_are_not_eof() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let none: [SensorEvent; 0] = [];
    assert!(matches!(
        local.send_batch(&none),
        Err(TubeError::EmptyBatch)
    ));
    // A foreign writer sends a 0-byte packet on a live tube: not PeerClosed.
    socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&local),
        &[],
        MsgFlags::MSG_DONTWAIT,
    )
    .unwrap();
    let mut buf = [0u32; 4];
    assert!(matches!(
        remote.recv_batch(&mut buf),
        Err(TubeError::EmptyPacket)
    ));
    assert!(matches!(
        remote.recv_batch(&mut buf),
        Err(TubeError::WouldBlock)
    ));
}

#[test]
fn remote_end_is_taken_once() {
    let mut tube = BitTube::new().unwrap();
    assert!(tube.has_remote());
    let _remote = tube.take_remote().unwrap();
    assert!(!tube.has_remote());
    assert!(matches!(tube.take_remote(), Err(TubeError::RemoteTaken)));
    assert!(matches!(tube.into_ends(), Err(TubeError::RemoteTaken)));
}

fn sysctl(name: &str) -> usize {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/sys/net/core/{name}"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s.trim().parse().unwrap()
}

#[test]
fn buffer_sizes_apply_to_both_ends() {
    // Linux doubles SO_SNDBUF/SO_RCVBUF for bookkeeping and caps them at wmem_max/rmem_max.
    let expect_snd = |req: usize| 2 * req.min(sysctl("wmem_max"));
    let expect_rcv = |req: usize| 2 * req.min(sysctl("rmem_max"));

    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    for end in [&local, &remote] {
        assert_eq!(
            end.send_buffer_size().unwrap(),
            expect_snd(DEFAULT_BUFFER_SIZE)
        );
        assert_eq!(
            end.recv_buffer_size().unwrap(),
            expect_rcv(DEFAULT_BUFFER_SIZE)
        );
    }
    // 39 events of 104 bytes (4056 bytes) travel as one packet with 4 KiB buffers...
    let batch: Vec<_> = (0..39).map(event).collect();
    local.send_batch(&batch).unwrap();
    let mut buf = [SensorEvent::zeroed(); 128];
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 39);
    // ...but 100 events (10400 bytes) exceed the send buffer: a clear error, not a hang.
    let big: Vec<_> = (0..100).map(event).collect();
    let err = local.send_batch(&big).unwrap_err();
    assert!(
        matches!(err, TubeError::PacketTooLarge { len: 10400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("10400"), "{err}");

    let (local, remote) = BitTube::with_buffer_sizes(100 * 1024, 64 * 1024)
        .unwrap()
        .into_ends()
        .unwrap();
    for end in [&local, &remote] {
        assert_eq!(end.send_buffer_size().unwrap(), expect_snd(100 * 1024));
        assert_eq!(end.recv_buffer_size().unwrap(), expect_rcv(64 * 1024));
    }
}

#[test]
fn try_from_socket_checks_the_socket_type() {
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let err = TubeEnd::try_from_socket(a).unwrap_err();
    assert!(matches!(err, TubeError::NotATube { .. }), "{err:?}");
    let file: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
    assert!(matches!(
        TubeEnd::try_from_socket(file),
        Err(TubeError::NotATube { .. })
    ));
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let local = TubeEnd::try_from_socket(OwnedFd::from(local)).unwrap();
    local.send_batch(&[5u16]).unwrap();
    let mut buf = [0u16; 1];
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], 5);
}

#[test]
fn mio_readiness_wakes_a_poll() {
    use mio::{Events, Interest, Poll, Token};

    let (local, mut remote) = BitTube::new().unwrap().into_ends().unwrap();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut remote, Token(7), Interest::READABLE)
        .unwrap();
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(events.is_empty(), "nothing sent yet");

    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        local.send_batch(&[event(42)]).unwrap();
        local
    });
    poll.poll(&mut events, Some(LONG)).unwrap();
    let ev = events.iter().next().expect("poll woke up");
    assert_eq!(ev.token(), Token(7));
    assert!(ev.is_readable());
    let mut buf = [SensorEvent::zeroed(); 4];
    assert_eq!(remote.recv_batch(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], event(42));

    // The peer closing wakes the poll too, and reads as PeerClosed.
    let local = sender.join().unwrap();
    drop(local);
    poll.poll(&mut events, Some(LONG)).unwrap();
    let ev = events.iter().next().expect("poll woke up on close");
    assert!(ev.is_read_closed() || ev.is_readable());
    assert!(matches!(
        remote.recv_batch(&mut buf),
        Err(TubeError::PeerClosed)
    ));
    poll.registry().deregister(&mut remote).unwrap();
}

/// The README's API example is not compiled by itself (lib.rs does not include the README);
/// it is kept identical to the doctest in `src/bittube.rs`'s module docs, which is.
#[test]
fn readme_example_is_the_compiled_module_doctest() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme
        .rfind("```rust\n")
        .expect("README has a rust example")
        + "```rust\n".len();
    let len = readme[start..].find("```\n").unwrap();
    let readme_code = &readme[start..start + len];

    let module = std::fs::read_to_string(format!("{root}/src/bittube.rs")).unwrap();
    let doc: String = module
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            let l = l.strip_prefix("//!").unwrap();
            format!("{}\n", l.strip_prefix(' ').unwrap_or(l))
        })
        .collect();
    let start = doc.find("```\n").expect("module docs have a doctest") + "```\n".len();
    let len = doc[start..].find("```\n").unwrap();
    assert_eq!(readme_code, &doc[start..start + len]);
}
