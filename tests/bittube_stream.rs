//! EventStream and batch sizes: acking on the streamed end, `into_inner` keeping what was
//! read, a stream that learns the sender's batch size, and a truncation error that names the
//! batch a receiver needs. The tube's peer is a real child process for the batch test.

#![cfg(feature = "tokio")]

mod common;

use bittube::binder_ipc::runtime::BinderError;
use bittube::bittube::{AsyncTubeEnd, BitTube, TubeEnd, TubeError};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use common::*;
use futures_util::StreamExt;
use std::os::fd::AsFd;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn batch(first: u64, n: u64) -> Vec<u64> {
    (first..first + n).collect()
}

#[test]
fn acks_go_out_on_the_streamed_end_and_into_inner_keeps_unread_events() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    local.send_batch(&batch(0, 5)).unwrap();
    runtime().block_on(async {
        let mut events = AsyncTubeEnd::new(remote).unwrap().into_events::<u64>(8);
        assert_eq!(events.next().await.unwrap().unwrap(), 0);
        assert_eq!(events.next().await.unwrap().unwrap(), 1);
        // The ack goes back on the same end, no try_clone.
        events.tube().send_batch(&[2u32]).await.unwrap();
        let (end, unread) = events.into_inner();
        assert_eq!(unread, [2, 3, 4], "read but not yet yielded: handed back");
        drop(end);
    });
    let mut ack = [0u32; 1];
    assert_eq!(local.recv_batch_timeout(&mut ack, LONG).unwrap(), 1);
    assert_eq!(ack[0], 2);
}

#[test]
fn a_truncated_packet_names_the_batch_the_receiver_needs() {
    let (local, remote) = BitTube::new().unwrap().into_ends().unwrap();
    local.send_batch(&batch(0, 39)).unwrap();
    let mut small = [0u64; 8];
    let e = remote.recv_batch(&mut small).unwrap_err();
    assert_eq!(e.min_batch(), Some(39));
    assert!(e.to_string().contains("max_batch >= 39"), "{e}");
    // A tube error inside a service: `?` makes it a BinderError that says what happened.
    let b: BinderError = e.into();
    assert!(matches!(&b, BinderError::BadValue(m) if m.contains("max_batch >= 39")));
    assert!(matches!(
        BinderError::from(TubeError::PeerClosed),
        BinderError::DeadObject
    ));
}

#[test]
fn a_stream_with_a_small_max_batch_learns_the_senders_batch() {
    const TEST: &str = "a_stream_with_a_small_max_batch_learns_the_senders_batch";
    if child_role().as_deref() == Some("producer") {
        let control = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
        let mut buf = [0u8; 8];
        let got = recv_with_fds(&control, &mut buf, 1).unwrap();
        let tube = TubeEnd::try_from_socket(got.fds.into_iter().next().unwrap()).unwrap();
        // 20 batches of 39, then one of 60 (larger than anything before), then 5 of 60.
        for i in 0..20 {
            tube.send_batch_timeout(&batch(i * 39, 39), LONG).unwrap();
        }
        for i in 0..6 {
            tube.send_batch_timeout(&batch(1000 + i * 60, 60), LONG)
                .unwrap();
        }
        std::process::exit(0);
    }
    let mut tube = BitTube::with_buffer_size(64 * 1024).unwrap();
    let remote = tube.take_remote().unwrap();
    let (child, control) = spawn_child(TEST, "producer");
    send_with_fds(&control, b"tube", &[remote.as_fd()]).unwrap();
    drop(remote);
    let (got, errors, lost, capacity) = runtime().block_on(async {
        let mut events = AsyncTubeEnd::new(tube.into_local())
            .unwrap()
            .into_events::<u64>(1);
        let mut got = Vec::new();
        let mut errors = Vec::new();
        let all = async {
            while let Some(item) = events.next().await {
                match item {
                    Ok(v) => got.push(v),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        };
        tokio::time::timeout(LONG, all).await.expect("stream ended");
        (got, errors, events.lost_events(), events.batch_capacity())
    });
    wait_success(child);
    let mut want = batch(0, 20 * 39);
    want.extend(batch(1060, 5 * 60));
    assert_eq!(got, want, "no event of the first batch size lost");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("max_batch >= 60"), "{errors:?}");
    assert_eq!(lost, 60, "the one larger packet is counted");
    assert_eq!(capacity, 60);
}
