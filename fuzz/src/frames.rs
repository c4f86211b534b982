//! Input format of the `shim_frames` target: frames fed to a shim without sockets
//! (`shim::fuzzing::Harness`), raw or built the way `ShimDevice` builds them.
//!
//! ```text
//! input := op*
//! op    := 0 pid:u8 uid:u8                        connect (pid and uid from small sets)
//!        | 1 conn:u8 nfds:u8 bytes:blob           raw bytes (with nfds fresh fds)
//!        | 2 conn:u8                              the peer closes
//!        | 3 conn:u8 split:u8 frame               a built frame, fed in two reads cut at split
//! frame := 0 area:u32                             K_OPEN_PROC
//!        | 1 addr:u64                             K_MAP_DONE
//!        | 2 tok:u8 raw:u64                       K_OPEN_THREAD with token #tok seen (raw when tok >= 128)
//!        | 3 cmd:u8 arg:blob                      K_IOCTL (one of the binder ioctls, or raw)
//!        | 4 nonblock:u8 read:u32 n:u8 cmd{n}     K_WRITE_READ: bc_stream's commands, each
//!                                                 transaction followed by its gathered record
//!        | 5                                      K_STATE
//!        | 6 kind:u32 nfds:u8 body:blob           any kind and body, the header's length right
//! ```
//! `cmd` is the `bc_stream` format's command (see [`crate::bc`]).

use crate::bc::{self, Cmd};
use crate::bytes::{Reader, Writer};

/// A frame built the way the client side builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// K_OPEN_PROC with this area size.
    OpenProc(u32),
    /// K_MAP_DONE with this address.
    MapDone(u64),
    /// K_OPEN_THREAD with token #sel of those seen (raw when sel >= 128).
    OpenThread(u8, u64),
    /// K_IOCTL: ioctl #sel of the list (raw number when out of it) and its argument.
    Ioctl(u8, Vec<u8>),
    /// K_WRITE_READ.
    WriteRead {
        /// The `nonblock` flag.
        nonblock: bool,
        /// `read_size`.
        read: u32,
        /// The BC_ commands.
        cmds: Vec<Cmd>,
    },
    /// K_STATE.
    State,
    /// Any kind and body, with `nfds` fresh fds.
    Any(u32, u8, Vec<u8>),
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new connection from pid #sel, uid #sel.
    Connect(u8, u8),
    /// Raw bytes with fresh fds.
    Raw(u8, u8, Vec<u8>),
    /// The peer closes.
    Close(u8),
    /// A built frame, cut in two reads at `split` (0: one read).
    Frame(u8, u8, Frame),
}

fn frame(r: &mut Reader<'_>) -> Frame {
    match r.u8() % 7 {
        0 => Frame::OpenProc(r.u32()),
        1 => Frame::MapDone(r.u64()),
        2 => Frame::OpenThread(r.u8(), r.u64()),
        3 => Frame::Ioctl(r.u8(), r.blob().to_vec()),
        4 => {
            let nonblock = r.u8() & 1 == 1;
            let read = r.u32();
            let n = r.u8() % 16;
            Frame::WriteRead {
                nonblock,
                read,
                cmds: (0..n).map(|_| bc::cmd(r)).collect(),
            }
        }
        5 => Frame::State,
        _ => Frame::Any(r.u32(), r.u8(), r.blob().to_vec()),
    }
}

/// Decodes any bytes.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut r = Reader::new(data);
    let mut ops = Vec::new();
    while !r.is_empty() {
        ops.push(match r.u8() % 4 {
            0 => Op::Connect(r.u8(), r.u8()),
            1 => Op::Raw(r.u8(), r.u8(), r.blob().to_vec()),
            2 => Op::Close(r.u8()),
            _ => {
                let c = r.u8();
                let split = r.u8();
                Op::Frame(c, split, frame(&mut r))
            }
        });
    }
    ops
}

fn put_frame(w: &mut Writer, f: &Frame) {
    match f {
        Frame::OpenProc(a) => {
            w.u8(0).u32(*a);
        }
        Frame::MapDone(a) => {
            w.u8(1).u64(*a);
        }
        Frame::OpenThread(s, raw) => {
            w.u8(2).u8(*s).u64(*raw);
        }
        Frame::Ioctl(c, arg) => {
            w.u8(3).u8(*c).blob(arg);
        }
        Frame::WriteRead {
            nonblock,
            read,
            cmds,
        } => {
            w.u8(4)
                .u8(u8::from(*nonblock))
                .u32(*read)
                .u8(cmds.len() as u8);
            for c in cmds {
                bc::put_cmd(w, c);
            }
        }
        Frame::State => {
            w.u8(5);
        }
        Frame::Any(k, n, body) => {
            w.u8(6).u32(*k).u8(*n).blob(body);
        }
    }
}

/// Encodes an input (the inverse of [`decode`]).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut w = Writer::new();
    for op in ops {
        match op {
            Op::Connect(p, u) => {
                w.u8(0).u8(*p).u8(*u);
            }
            Op::Raw(c, n, b) => {
                w.u8(1).u8(*c).u8(*n).blob(b);
            }
            Op::Close(c) => {
                w.u8(2).u8(*c);
            }
            Op::Frame(c, s, f) => {
                w.u8(3).u8(*c).u8(*s);
                put_frame(&mut w, f);
            }
        }
    }
    w.finish()
}
