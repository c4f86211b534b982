//! The input demo's wire messages: `InputMessage::decode` on any packet (a decoded message
//! re-encodes to the same length and decodes again to the same bytes), and an
//! `InputConsumer` / `InputPublisher` pair fed raw packets from the other end, with consumes
//! (MOVE batching at any frame time) and finishes in any order.
#![no_main]

use bittube::input_demo::channel::InputChannel;
use bittube::input_demo::consumer::{ConsumedEvent, InputConsumer};
use bittube::input_demo::message::{InputMessage, MAX_MESSAGE_SIZE};
use bittube::input_demo::publisher::InputPublisher;
use bittube_fuzz::input::{decode, Input, Op};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Input::Decode(packet) => round_trip(&packet),
        Input::Channel(ops) => channel(&ops),
    }
});

fn round_trip(packet: &[u8]) {
    let Ok(message) = InputMessage::decode(packet) else {
        return;
    };
    let _ = (message.seq(), message.kind_name());
    let mut buf = [0u8; MAX_MESSAGE_SIZE];
    let len = message.encode(&mut buf).expect("a decoded message encodes");
    assert_eq!(len, packet.len(), "decode takes exact sizes only");
    let again = InputMessage::decode(&buf[..len]).expect("an encoded message decodes");
    let mut buf2 = [0u8; MAX_MESSAGE_SIZE];
    let len2 = again.encode(&mut buf2).unwrap();
    assert_eq!(&buf[..len], &buf2[..len2], "encoding is stable");
}

fn channel(ops: &[Op]) {
    let (server, client) = InputChannel::pair("fuzz").expect("channel pair");
    let publisher = InputPublisher::new(server);
    let mut consumer = InputConsumer::new(client);
    let mut unfinished: VecDeque<ConsumedEvent> = VecDeque::new();
    for op in ops {
        match op {
            Op::ToConsumer(p) => {
                let _ = publisher.channel().tube().send_batch(p);
            }
            Op::Consume(frame_time) => {
                if let Ok(events) = consumer.consume(*frame_time) {
                    unfinished.extend(events);
                }
            }
            Op::Finish(handled) => {
                if let Some(e) = unfinished.pop_front() {
                    let _ = consumer.finish(&e, *handled);
                }
            }
            Op::FinishSeq(seq, handled) => {
                let _ = consumer.finish_seq(*seq, *handled);
            }
            Op::Flush => {
                let _ = consumer.flush_finished();
            }
            Op::ToPublisher(p) => {
                let _ = consumer.channel().tube().send_batch(p);
            }
            Op::ReceiveFinished => {
                let _ = publisher.receive_finished();
            }
        }
    }
    let _ = (
        consumer.stats(),
        consumer.has_pending_batch(),
        consumer.unsent_finished(),
    );
}
