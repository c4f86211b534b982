//! Input format of the `sensor_event` target.
//!
//! ```text
//! input := 0 qop*                                  a SensorEventQueue over a tube we feed
//!        | 1 slots:u8 seal:u8 ring:blob dop*       a DirectChannelReader over a memfd we fill
//!        | 2 enable:u8 packet:blob{..}             acks sent to a SensorService connection
//! qop   := 0 packet:blob | 1 n:u8 (read n events) | 2 (drain acks) | 3 (send_acks)
//! dop   := 0 max:u8 (read) | 1 word:u16 value:u32 (poke) | 2 n:u8 (ring writes n records)
//! ```

use crate::bytes::{Reader, Writer};

/// A step on a `SensorEventQueue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOp {
    /// The service's end sends these bytes as one packet.
    Send(Vec<u8>),
    /// `read` into a buffer of this many events (1..=256).
    Read(u8),
    /// The service's end reads the acks.
    DrainAcks,
    /// `send_acks`.
    SendAcks,
}

/// A step on a direct channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectOp {
    /// `read(max)`.
    Read(u8),
    /// Store `value` at word `index` (mod the ring's words) of the shared file.
    Poke(u16, u32),
    /// Write this many well-formed records, counters going on from the last one written,
    /// each into slot `(counter - 1) % slots` (as `DirectRing` does).
    Records(u8),
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Queue steps.
    Queue(Vec<QueueOp>),
    /// A ring of `slots` (0 makes a 0-byte file) with initial bytes, sealed or not.
    Direct {
        /// Records in the file (0..=15; 0 is an empty file).
        slots: u8,
        /// Add `F_SEAL_SHRINK | F_SEAL_GROW`.
        sealed: bool,
        /// Initial contents (zero-padded, cut to the file's size).
        ring: Vec<u8>,
        /// The steps.
        ops: Vec<DirectOp>,
    },
    /// Ack packets sent to a service connection (with a wake-up sensor enabled when set).
    Acks(bool, Vec<Vec<u8>>),
}

/// Decodes any bytes.
pub fn decode(data: &[u8]) -> Input {
    let mut r = Reader::new(data);
    match r.u8() % 3 {
        0 => {
            let mut ops = Vec::new();
            while !r.is_empty() {
                ops.push(match r.u8() % 4 {
                    0 => QueueOp::Send(r.blob().to_vec()),
                    1 => QueueOp::Read(r.u8()),
                    2 => QueueOp::DrainAcks,
                    _ => QueueOp::SendAcks,
                });
            }
            Input::Queue(ops)
        }
        1 => {
            let slots = r.u8() % 16;
            let sealed = r.u8() & 1 == 0;
            let ring = r.blob().to_vec();
            let mut ops = Vec::new();
            while !r.is_empty() {
                ops.push(match r.u8() % 3 {
                    0 => DirectOp::Read(r.u8()),
                    1 => DirectOp::Poke(r.u16(), r.u32()),
                    _ => DirectOp::Records(r.u8()),
                });
            }
            Input::Direct {
                slots,
                sealed,
                ring,
                ops,
            }
        }
        _ => {
            let enable = r.u8() & 1 == 1;
            let mut packets = Vec::new();
            while !r.is_empty() {
                packets.push(r.blob().to_vec());
            }
            Input::Acks(enable, packets)
        }
    }
}

/// Encodes an input (the inverse of [`decode`]).
pub fn encode(input: &Input) -> Vec<u8> {
    let mut w = Writer::new();
    match input {
        Input::Queue(ops) => {
            w.u8(0);
            for op in ops {
                match op {
                    QueueOp::Send(p) => w.u8(0).blob(p),
                    QueueOp::Read(n) => w.u8(1).u8(*n),
                    QueueOp::DrainAcks => w.u8(2),
                    QueueOp::SendAcks => w.u8(3),
                };
            }
        }
        Input::Direct {
            slots,
            sealed,
            ring,
            ops,
        } => {
            w.u8(1).u8(*slots).u8(u8::from(!*sealed)).blob(ring);
            for op in ops {
                match op {
                    DirectOp::Read(n) => w.u8(0).u8(*n),
                    DirectOp::Poke(i, v) => w.u8(1).u16(*i).u32(*v),
                    DirectOp::Records(n) => w.u8(2).u8(*n),
                };
            }
        }
        Input::Acks(enable, packets) => {
            w.u8(2).u8(u8::from(*enable));
            for p in packets {
                w.blob(p);
            }
        }
    }
    w.finish()
}
