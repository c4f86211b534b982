//! Async tube ends (feature `tokio`): async batches, and the event stream that yields every
//! event of every packet and ends when the peer closes, also when the peer is another process.
#![cfg(feature = "tokio")]

mod common;
use common::*;
use std::os::fd::AsFd;

use bittube::bittube::{AsyncTubeEnd, BitTube, TubeEnd, TubeError};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use bytemuck::{Pod, Zeroable};
use futures_util::StreamExt;

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

fn event(seq: u32) -> SensorEvent {
    SensorEvent {
        version: 104,
        sensor: 3,
        kind: 1,
        reserved0: 0,
        timestamp: i64::from(seq) * 1000,
        data: [seq as f32; 16],
        flags: seq,
        reserved1: [0; 3],
    }
}

/// Events numbered from `start`, in batches of the given sizes.
fn batches(start: u32, sizes: &[usize]) -> Vec<Vec<SensorEvent>> {
    let mut seq = start;
    sizes
        .iter()
        .map(|&n| {
            let b: Vec<_> = (seq..seq + n as u32).map(event).collect();
            seq += n as u32;
            b
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn stream_yields_every_event_then_ends_on_peer_closed() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let sent = batches(0, &[1, 8, 39, 5]);
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            for b in &sent {
                local.send_batch_timeout(b, LONG).unwrap();
            }
            // `local` dropped here: the stream must end.
        })
    };
    let got: Vec<SensorEvent> = runtime().block_on(async {
        let stream = AsyncTubeEnd::new(remote)
            .unwrap()
            .into_events::<SensorEvent>(64);
        tokio::time::timeout(LONG, stream.map(|r| r.unwrap()).collect::<Vec<_>>())
            .await
            .expect("stream ended")
    });
    sender.join().unwrap();
    let want: Vec<_> = sent.into_iter().flatten().collect();
    assert_eq!(got.len(), 53);
    assert_eq!(got, want);
}

#[test]
fn stream_reports_a_bad_packet_and_goes_on() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    local.send_batch(&[event(1)]).unwrap();
    local.send_batch(&[0u8; 50]).unwrap();
    local.send_batch(&[event(2), event(3)]).unwrap();
    drop(local);
    let items: Vec<_> = runtime().block_on(async {
        let stream = AsyncTubeEnd::new(remote)
            .unwrap()
            .into_events::<SensorEvent>(8);
        tokio::time::timeout(LONG, stream.collect::<Vec<_>>())
            .await
            .unwrap()
    });
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_ref().unwrap(), &event(1));
    assert!(matches!(
        items[1],
        Err(TubeError::BadPacketSize {
            len: 50,
            object_size: 104
        })
    ));
    assert_eq!(items[2].as_ref().unwrap(), &event(2));
    assert_eq!(items[3].as_ref().unwrap(), &event(3));
}

#[test]
fn async_batches_wait_for_room_and_for_data() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    let sent = batches(0, &[39; 200]); // far more than a 4 KiB tube holds
    runtime().block_on(async {
        let local = AsyncTubeEnd::new(local).unwrap();
        let remote = AsyncTubeEnd::new(remote).unwrap();
        let want: Vec<_> = sent.iter().flatten().copied().collect();
        let writer = async {
            for b in &sent {
                assert_eq!(local.send_batch(b).await.unwrap(), 39);
            }
            let mut ack = [0u32; 1];
            assert_eq!(local.recv_batch(&mut ack).await.unwrap(), 1);
            ack[0]
        };
        let reader = async {
            let mut got = Vec::new();
            let mut buf = [SensorEvent::zeroed(); 64];
            while got.len() < want.len() {
                let n = remote.recv_batch(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            remote.send_batch(&[got.len() as u32]).await.unwrap();
            got
        };
        let (acked, got) = tokio::time::timeout(LONG, async { tokio::join!(writer, reader) })
            .await
            .unwrap();
        assert_eq!(acked, 7800);
        assert_eq!(got, want);
    });
}

#[test]
fn stream_from_a_child_process_ends_when_it_exits() {
    const TEST: &str = "stream_from_a_child_process_ends_when_it_exits";
    if child_role().as_deref() == Some("producer") {
        let control = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
        let mut buf = [0u8; 8];
        let got = recv_with_fds(&control, &mut buf, 1).unwrap();
        let tube = TubeEnd::try_from_socket(got.fds.into_iter().next().unwrap()).unwrap();
        for b in batches(100, &[39, 1, 8, 39, 39]) {
            tube.send_batch_timeout(&b, LONG).unwrap();
        }
        std::process::exit(0);
    }

    let mut tube = BitTube::new().unwrap();
    let remote = tube.take_remote().unwrap();
    let (child, control) = spawn_child(TEST, "producer");
    send_with_fds(&control, b"tube", &[remote.as_fd()]).unwrap();
    drop(remote);
    let got: Vec<SensorEvent> = runtime().block_on(async {
        let stream = AsyncTubeEnd::new(tube.into_local())
            .unwrap()
            .into_events::<SensorEvent>(39);
        tokio::time::timeout(LONG, stream.map(|r| r.unwrap()).collect::<Vec<_>>())
            .await
            .expect("stream ended when the child exited")
    });
    wait_success(child);
    let want: Vec<_> = batches(100, &[39, 1, 8, 39, 39])
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(got, want);
}
