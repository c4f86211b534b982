//! Input format of the `bc_stream` target: BC_ command streams with binder objects, written
//! by two or three binder processes of this OS process.
//!
//! ```text
//! input := nprocs:u8 op*
//! op    := 0 proc:u8 read:u16 n:u8 cmd{n}   write_read of the commands (read buffer: read % 4097)
//!        | 1 proc:u8 read:u16 raw:blob      write_read of raw bytes
//!        | 2 proc:u8                        read only
//!        | 3 proc:u8                        BINDER_THREAD_EXIT
//!        | 4 proc:u8                        the process exits (its device is dropped)
//! cmd   := 0 txn
//!        | 1 sel:u8 raw:u64                 BC_FREE_BUFFER (received buffer #sel, or raw when sel >= 128)
//!        | 2 which:u8 handle:u32            BC_INCREFS / ACQUIRE / RELEASE / DECREFS
//!        | 3 acquire:u8 sel:u8              BC_INCREFS_DONE / ACQUIRE_DONE of a node the driver asked about
//!        | 4 clear:u8 handle:u32 cookie:u64 BC_REQUEST / CLEAR_DEATH_NOTIFICATION
//!        | 5 sel:u8 raw:u64                 BC_DEAD_BINDER_DONE
//!        | 6 which:u8                       BC_ENTER_LOOPER / REGISTER_LOOPER / EXIT_LOOPER
//!        | 7 cmd:u32 payload:blob           any command word and payload
//! txn   := kind:u8 handle:u32 code:u32 flags:u32 data:blob nobj:u8 obj{nobj}
//!          nextra:u8 offset:wide{nextra} sg_raw:u8 sg:wide
//! obj   := 0 strong:u8 ptr:u64 cookie:u64 flags:u32     BINDER / WEAK_BINDER
//!        | 1 strong:u8 handle:u32                       HANDLE / WEAK_HANDLE
//!        | 2 sel:u8 raw:u32                             FD: one of 3 fresh fds, or a raw number when sel >= 200
//!        | 3 num:wide parent:wide parent_offset:wide    FDA
//!        | 4 flags:u32 parent:wide parent_offset:wide len_raw:u8 len:wide content
//!                                                       PTR to real memory holding `content`
//! content := 0 bytes:blob | 1 n:u8 (n of the fresh fds, as i32s: an fd array)
//! ```
//! `wide` is [`Reader::wide`]: a raw `u64` or a value near an edge. `kind` bit 0: BC_REPLY
//! instead of BC_TRANSACTION; bit 1: the _SG variant. `len_raw` odd:
//! the PTR's `length` is `len` as given instead of the content's size. `sg_raw` odd: the
//! `buffers_size` is `sg` as given instead of what the PTRs need plus `sg % 256`.

use crate::bytes::{Reader, Writer};

/// How a PTR object's buffer is filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `n` fds of the pool, as `i32`s (the parent of an FDA).
    Fds(u8),
}

/// A binder object in a transaction's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obj {
    /// BINDER (strong) or WEAK_BINDER.
    Binder {
        /// Strong.
        strong: bool,
        /// The node's pointer.
        ptr: u64,
        /// Its cookie.
        cookie: u64,
        /// The object's flags.
        flags: u32,
    },
    /// HANDLE or WEAK_HANDLE.
    Handle {
        /// Strong.
        strong: bool,
        /// The handle.
        handle: u32,
    },
    /// FD: fd #sel of the pool (sel < 200) or `raw`.
    Fd {
        /// Which.
        sel: u8,
        /// The raw number used when sel >= 200.
        raw: u32,
    },
    /// FDA.
    Fda {
        /// `num_fds`.
        num: u64,
        /// `parent` (object index).
        parent: u64,
        /// `parent_offset`.
        parent_offset: u64,
    },
    /// PTR.
    Ptr {
        /// `flags` (BINDER_BUFFER_FLAG_HAS_PARENT = 1).
        flags: u32,
        /// `parent`.
        parent: u64,
        /// `parent_offset`.
        parent_offset: u64,
        /// `length` is `len` as given (else the content's size).
        len_raw: bool,
        /// The raw length.
        len: u64,
        /// The buffer.
        content: Content,
    },
}

/// A transaction command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Bit 0: reply; bit 1: scatter-gather.
    pub kind: u8,
    /// Target handle.
    pub handle: u32,
    /// Code.
    pub code: u32,
    /// Flags (TF_*).
    pub flags: u32,
    /// Data before the objects.
    pub data: Vec<u8>,
    /// The objects, appended 8-aligned after the data; their offsets are listed in order.
    pub objs: Vec<Obj>,
    /// More offsets, listed after the objects'.
    pub extra_offsets: Vec<u64>,
    /// `buffers_size` is `sg` as given.
    pub sg_raw: bool,
    /// See `sg_raw`.
    pub sg: u64,
}

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// BC_TRANSACTION(_SG) / BC_REPLY(_SG).
    Txn(Txn),
    /// BC_FREE_BUFFER.
    Free(u8, u64),
    /// BC_INCREFS (0), ACQUIRE (1), RELEASE (2), DECREFS (3).
    Ref(u8, u32),
    /// BC_INCREFS_DONE (false) / BC_ACQUIRE_DONE (true) of asked node #sel.
    Done(bool, u8),
    /// BC_REQUEST_DEATH_NOTIFICATION (false) / CLEAR (true).
    Death(bool, u32, u64),
    /// BC_DEAD_BINDER_DONE.
    DeadDone(u8, u64),
    /// BC_ENTER_LOOPER (0) / REGISTER_LOOPER (1) / EXIT_LOOPER (2).
    Looper(u8),
    /// Any command and payload.
    Raw(u32, Vec<u8>),
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// write_read of commands by process #proc with a read buffer of `read` bytes.
    Write(u8, u16, Vec<Cmd>),
    /// write_read of raw bytes.
    RawWrite(u8, u16, Vec<u8>),
    /// read only.
    Read(u8),
    /// BINDER_THREAD_EXIT.
    ThreadExit(u8),
    /// The process exits.
    Exit(u8),
}

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// 2 or 3 processes.
    pub nprocs: u8,
    /// The steps.
    pub ops: Vec<Op>,
}

fn content(r: &mut Reader<'_>) -> Content {
    match r.u8() & 1 {
        0 => Content::Bytes(r.blob().to_vec()),
        _ => Content::Fds(r.u8()),
    }
}

fn obj(r: &mut Reader<'_>) -> Obj {
    match r.u8() % 5 {
        0 => Obj::Binder {
            strong: r.u8() & 1 == 0,
            ptr: r.u64(),
            cookie: r.u64(),
            flags: r.u32(),
        },
        1 => Obj::Handle {
            strong: r.u8() & 1 == 0,
            handle: r.u32(),
        },
        2 => Obj::Fd {
            sel: r.u8(),
            raw: r.u32(),
        },
        3 => Obj::Fda {
            num: r.wide(),
            parent: r.wide(),
            parent_offset: r.wide(),
        },
        _ => Obj::Ptr {
            flags: r.u32(),
            parent: r.wide(),
            parent_offset: r.wide(),
            len_raw: r.u8() & 1 == 1,
            len: r.wide(),
            content: content(r),
        },
    }
}

pub(crate) fn txn(r: &mut Reader<'_>) -> Txn {
    let kind = r.u8();
    let handle = r.u32();
    let code = r.u32();
    let flags = r.u32();
    let data = r.blob().to_vec();
    let n = r.u8() % 16;
    let objs = (0..n).map(|_| obj(r)).collect();
    let nextra = r.u8() % 8;
    let extra_offsets = (0..nextra).map(|_| r.wide()).collect();
    let sg_raw = r.u8() & 1 == 1;
    let sg = r.wide();
    Txn {
        kind,
        handle,
        code,
        flags,
        data,
        objs,
        extra_offsets,
        sg_raw,
        sg,
    }
}

pub(crate) fn cmd(r: &mut Reader<'_>) -> Cmd {
    match r.u8() % 8 {
        0 => Cmd::Txn(txn(r)),
        1 => Cmd::Free(r.u8(), r.u64()),
        2 => Cmd::Ref(r.u8() % 4, r.u32()),
        3 => Cmd::Done(r.u8() & 1 == 1, r.u8()),
        4 => Cmd::Death(r.u8() & 1 == 1, r.u32(), r.u64()),
        5 => Cmd::DeadDone(r.u8(), r.u64()),
        6 => Cmd::Looper(r.u8() % 3),
        _ => Cmd::Raw(r.u32(), r.blob().to_vec()),
    }
}

/// Decodes any bytes.
pub fn decode(data: &[u8]) -> Input {
    let mut r = Reader::new(data);
    let nprocs = 2 + r.u8() % 2;
    let mut ops = Vec::new();
    while !r.is_empty() {
        ops.push(match r.u8() % 5 {
            0 => {
                let p = r.u8();
                let read = r.u16();
                let n = r.u8() % 16;
                Op::Write(p, read, (0..n).map(|_| cmd(&mut r)).collect())
            }
            1 => Op::RawWrite(r.u8(), r.u16(), r.blob().to_vec()),
            2 => Op::Read(r.u8()),
            3 => Op::ThreadExit(r.u8()),
            _ => Op::Exit(r.u8()),
        });
    }
    Input { nprocs, ops }
}

fn put_obj(w: &mut Writer, o: &Obj) {
    match o {
        Obj::Binder {
            strong,
            ptr,
            cookie,
            flags,
        } => w
            .u8(0)
            .u8(u8::from(!strong))
            .u64(*ptr)
            .u64(*cookie)
            .u32(*flags),
        Obj::Handle { strong, handle } => w.u8(1).u8(u8::from(!strong)).u32(*handle),
        Obj::Fd { sel, raw } => w.u8(2).u8(*sel).u32(*raw),
        Obj::Fda {
            num,
            parent,
            parent_offset,
        } => w.u8(3).wide(*num).wide(*parent).wide(*parent_offset),
        Obj::Ptr {
            flags,
            parent,
            parent_offset,
            len_raw,
            len,
            content,
        } => {
            w.u8(4)
                .u32(*flags)
                .wide(*parent)
                .wide(*parent_offset)
                .u8(u8::from(*len_raw))
                .wide(*len);
            match content {
                Content::Bytes(b) => w.u8(0).blob(b),
                Content::Fds(n) => w.u8(1).u8(*n),
            }
        }
    };
}

pub(crate) fn put_cmd(w: &mut Writer, c: &Cmd) {
    match c {
        Cmd::Txn(t) => {
            w.u8(0)
                .u8(t.kind)
                .u32(t.handle)
                .u32(t.code)
                .u32(t.flags)
                .blob(&t.data);
            w.u8(t.objs.len() as u8);
            for o in &t.objs {
                put_obj(w, o);
            }
            w.u8(t.extra_offsets.len() as u8);
            for &o in &t.extra_offsets {
                w.wide(o);
            }
            w.u8(u8::from(t.sg_raw)).wide(t.sg);
        }
        Cmd::Free(s, raw) => {
            w.u8(1).u8(*s).u64(*raw);
        }
        Cmd::Ref(which, h) => {
            w.u8(2).u8(*which).u32(*h);
        }
        Cmd::Done(acq, s) => {
            w.u8(3).u8(u8::from(*acq)).u8(*s);
        }
        Cmd::Death(clear, h, c) => {
            w.u8(4).u8(u8::from(*clear)).u32(*h).u64(*c);
        }
        Cmd::DeadDone(s, raw) => {
            w.u8(5).u8(*s).u64(*raw);
        }
        Cmd::Looper(which) => {
            w.u8(6).u8(*which);
        }
        Cmd::Raw(cmd, p) => {
            w.u8(7).u32(*cmd).blob(p);
        }
    }
}

/// Encodes an input (the inverse of [`decode`]).
pub fn encode(input: &Input) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(input.nprocs.saturating_sub(2));
    for op in &input.ops {
        match op {
            Op::Write(p, read, cmds) => {
                w.u8(0).u8(*p).u16(*read).u8(cmds.len() as u8);
                for c in cmds {
                    put_cmd(&mut w, c);
                }
            }
            Op::RawWrite(p, read, raw) => {
                w.u8(1).u8(*p).u16(*read).blob(raw);
            }
            Op::Read(p) => {
                w.u8(2).u8(*p);
            }
            Op::ThreadExit(p) => {
                w.u8(3).u8(*p);
            }
            Op::Exit(p) => {
                w.u8(4).u8(*p);
            }
        }
    }
    w.finish()
}

/// A transaction's bytes, laid out as a client would: the data (objects 8-aligned after the
/// leading bytes), the offsets, and each PTR object's buffer.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The data; PTR objects' `buffer` fields are 0 until the caller sets them.
    pub data: Vec<u8>,
    /// The offsets array.
    pub offsets: Vec<u64>,
    /// `(position of a PTR's buffer field in data, its buffer's bytes)`, in object order.
    pub ptrs: Vec<(usize, Vec<u8>)>,
    /// fds the objects name (FD objects and fd arrays), in order.
    pub fds: Vec<i32>,
    /// `buffers_size` as the input says.
    pub buffers_size: u64,
}

fn object_bytes<T: bytemuck::Pod>(v: &T) -> Vec<u8> {
    bytemuck::bytes_of(v).to_vec()
}

/// Lays out `t`; `pool` are the fds that FD objects and fd arrays pick from (non-empty).
pub fn layout(t: &Txn, pool: &[i32]) -> Layout {
    use bittube::binder_ipc::uapi::*;
    let mut l = Layout {
        data: t.data.clone(),
        ..Layout::default()
    };
    let pick = |sel: u8| pool[sel as usize % pool.len()];
    let mut sg_needed: u64 = 0;
    for o in &t.objs {
        l.data.resize(l.data.len().next_multiple_of(8), 0);
        let at = l.data.len();
        l.offsets.push(at as u64);
        let bytes = match o {
            Obj::Binder {
                strong,
                ptr,
                cookie,
                flags,
            } => object_bytes(&FlatBinderObject {
                hdr: BinderObjectHeader {
                    type_: if *strong {
                        BINDER_TYPE_BINDER
                    } else {
                        BINDER_TYPE_WEAK_BINDER
                    },
                },
                flags: *flags,
                binder: *ptr,
                cookie: *cookie,
            }),
            Obj::Handle { strong, handle } => object_bytes(&FlatBinderObject {
                hdr: BinderObjectHeader {
                    type_: if *strong {
                        BINDER_TYPE_HANDLE
                    } else {
                        BINDER_TYPE_WEAK_HANDLE
                    },
                },
                flags: 0,
                binder: u64::from(*handle),
                cookie: 0,
            }),
            Obj::Fd { sel, raw } => {
                let fd = if *sel < 200 { pick(*sel) } else { *raw as i32 };
                l.fds.push(fd);
                object_bytes(&BinderFdObject {
                    hdr: BinderObjectHeader {
                        type_: BINDER_TYPE_FD,
                    },
                    pad_flags: 0,
                    pad_binder: u64::from(fd as u32),
                    cookie: 0,
                })
            }
            Obj::Fda {
                num,
                parent,
                parent_offset,
            } => object_bytes(&BinderFdArrayObject {
                hdr: BinderObjectHeader {
                    type_: BINDER_TYPE_FDA,
                },
                pad: 0,
                num_fds: *num,
                parent: *parent,
                parent_offset: *parent_offset,
            }),
            Obj::Ptr {
                flags,
                parent,
                parent_offset,
                len_raw,
                len,
                content,
            } => {
                let buf: Vec<u8> = match content {
                    Content::Bytes(b) => b.clone(),
                    Content::Fds(n) => (0..*n).flat_map(|i| pick(i).to_ne_bytes()).collect(),
                };
                if let Content::Fds(n) = content {
                    l.fds.extend((0..*n).map(pick));
                }
                let length = if *len_raw { *len } else { buf.len() as u64 };
                sg_needed = sg_needed.saturating_add((buf.len() as u64).next_multiple_of(8));
                l.ptrs.push((at + 8, buf));
                object_bytes(&BinderBufferObject {
                    hdr: BinderObjectHeader {
                        type_: BINDER_TYPE_PTR,
                    },
                    flags: *flags,
                    buffer: 0,
                    length,
                    parent: *parent,
                    parent_offset: *parent_offset,
                })
            }
        };
        l.data.extend_from_slice(&bytes);
    }
    l.offsets.extend_from_slice(&t.extra_offsets);
    l.buffers_size = if t.sg_raw {
        t.sg
    } else {
        sg_needed.saturating_add(t.sg % 256)
    };
    l
}

/// The command word of `t`: BC_TRANSACTION, BC_REPLY or their _SG forms.
pub fn txn_command(t: &Txn) -> u32 {
    use bittube::binder_ipc::uapi::*;
    match t.kind & 3 {
        0 => BC_TRANSACTION,
        1 => BC_REPLY,
        2 => BC_TRANSACTION_SG,
        _ => BC_REPLY_SG,
    }
}
