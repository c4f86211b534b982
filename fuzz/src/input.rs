//! Input format of the `input_message` target.
//!
//! ```text
//! input := 0 packet:rest                    InputMessage::decode, re-encode round trip
//!        | 1 op*                            an InputConsumer / InputPublisher pair
//! op    := 0 packet:blob                    the publisher's end sends raw bytes
//!        | 1 has_frame:u8 frame_time:u64    consumer.consume(frame_time)
//!        | 2 handled:u8                     consumer.finish(oldest unfinished event)
//!        | 3 seq:u32 handled:u8             consumer.finish_seq
//!        | 4                                consumer.flush_finished
//!        | 5 packet:blob                    the consumer's end sends raw bytes
//!        | 6                                publisher.receive_finished
//! ```

use crate::bytes::{Reader, Writer};

/// One step on the channel pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The publisher's end sends these bytes as one packet.
    ToConsumer(Vec<u8>),
    /// `consume(frame_time)`.
    Consume(Option<i64>),
    /// `finish` of the oldest event not finished yet.
    Finish(bool),
    /// `finish_seq`.
    FinishSeq(u32, bool),
    /// `flush_finished`.
    Flush,
    /// The consumer's end sends these bytes as one packet.
    ToPublisher(Vec<u8>),
    /// `receive_finished`.
    ReceiveFinished,
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One packet for `InputMessage::decode`.
    Decode(Vec<u8>),
    /// Steps on a channel pair.
    Channel(Vec<Op>),
}

/// Decodes any bytes.
pub fn decode(data: &[u8]) -> Input {
    let mut r = Reader::new(data);
    if r.u8() & 1 == 0 {
        return Input::Decode(r.rest().to_vec());
    }
    let mut ops = Vec::new();
    while !r.is_empty() {
        ops.push(match r.u8() % 7 {
            0 => Op::ToConsumer(r.blob().to_vec()),
            1 => {
                let has = r.u8() & 1 == 1;
                let t = r.u64() as i64;
                Op::Consume(has.then_some(t))
            }
            2 => Op::Finish(r.u8() & 1 == 1),
            3 => Op::FinishSeq(r.u32(), r.u8() & 1 == 1),
            4 => Op::Flush,
            5 => Op::ToPublisher(r.blob().to_vec()),
            _ => Op::ReceiveFinished,
        });
    }
    Input::Channel(ops)
}

/// Encodes an input (the inverse of [`decode`]).
pub fn encode(input: &Input) -> Vec<u8> {
    let mut w = Writer::new();
    match input {
        Input::Decode(p) => {
            w.u8(0).raw(p);
        }
        Input::Channel(ops) => {
            w.u8(1);
            for op in ops {
                match op {
                    Op::ToConsumer(p) => w.u8(0).blob(p),
                    Op::Consume(t) => w.u8(1).u8(u8::from(t.is_some())).u64(t.unwrap_or(0) as u64),
                    Op::Finish(h) => w.u8(2).u8(u8::from(*h)),
                    Op::FinishSeq(s, h) => w.u8(3).u32(*s).u8(u8::from(*h)),
                    Op::Flush => w.u8(4),
                    Op::ToPublisher(p) => w.u8(5).blob(p),
                    Op::ReceiveFinished => w.u8(6),
                };
            }
        }
    }
    w.finish()
}
