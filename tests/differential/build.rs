//! Turns a step's symbolic commands into a BC_ stream with real addresses and fds of the
//! worker. The memory the stream points at lives in [`Stream::keep`] until the call returns.

use crate::gen::*;
use crate::worker::{Worker, BAD_FD};
use bittube::binder_ipc::device::Device;
use bittube::binder_ipc::uapi::*;
use std::os::fd::AsRawFd;

/// A handle no process holds.
pub const INVALID_HANDLE: u32 = 0x7fff_0001;
/// An unmapped address (the first page is never mapped).
const UNMAPPED: u64 = 0x10;

/// A BC_ stream and the memory it points at.
pub struct Stream {
    bytes: Vec<u8>,
    /// Data, offsets and scatter-gather buffers the stream points at.
    pub keep: Vec<Vec<u8>>,
    /// Buffers the stream frees (known ones only), in order.
    pub freed: Vec<u64>,
}

fn pattern(n: usize, salt: u32) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt as u8))
        .collect()
}

fn put(buf: &mut [u8], at: u64, bytes: &[u8]) {
    let Ok(at) = usize::try_from(at) else { return };
    if let Some(end) = at.checked_add(bytes.len()) {
        if end <= buf.len() {
            buf[at..end].copy_from_slice(bytes);
        }
    }
}

impl Stream {
    /// The stream's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Builds the stream of `cmds` for worker `w`.
    pub fn build(w: &mut Worker, dev: &dyn Device, cmds: &[Cmd]) -> Stream {
        let mut s = Stream {
            bytes: Vec::new(),
            keep: Vec::new(),
            freed: Vec::new(),
        };
        let mut cw = CommandWriter::new();
        for c in cmds {
            match c {
                Cmd::Txn(t) => s.txn(w, &mut cw, t),
                Cmd::Free(b) => {
                    let addr = match *b {
                        BufRef::Received(k) => w.learned.buffer(k),
                        BufRef::Bogus => None,
                    };
                    let addr = addr.unwrap_or(dev.buffer_area().0 + 8);
                    s.freed.push(addr);
                    cw.cmd_with(BC_FREE_BUFFER, &addr);
                }
                Cmd::Ref(cmd, h) => {
                    cw.cmd_with(*cmd, &w.learned.handle(*h));
                }
                Cmd::NodeDone(cmd) => {
                    let (ptr, cookie) = w.learned.node_request(*cmd);
                    cw.cmd_with(*cmd, &BinderPtrCookie { ptr, cookie });
                }
                Cmd::Death(cmd, h, cookie) => {
                    let handle = w.learned.handle(*h);
                    cw.cmd_with(
                        *cmd,
                        &BinderHandleCookie {
                            handle,
                            cookie: *cookie,
                        },
                    );
                }
                Cmd::DeadDone => {
                    let cookie = w.learned.dead_cookie();
                    cw.cmd_with(BC_DEAD_BINDER_DONE, &cookie);
                }
                Cmd::Looper(c) | Cmd::Unknown(c) => {
                    cw.cmd(*c);
                }
            }
        }
        s.bytes = cw.into_bytes();
        s
    }

    fn txn(&mut self, w: &Worker, cw: &mut CommandWriter, t: &Txn) {
        let mut objs = t.objs.clone();
        apply_object_bad(&mut objs, t.bad);
        // Scatter-gather buffers first: their addresses go into the objects.
        let mut contents: Vec<Option<Vec<u8>>> = objs
            .iter()
            .map(|o| match *o {
                Obj::Ptr { len, .. } => Some(pattern(len.min(64) as usize, t.code + 7)),
                _ => None,
            })
            .collect();
        let addr_of = |c: &Option<Vec<u8>>| c.as_ref().map_or(0, |v| v.as_ptr() as u64);
        let addrs: Vec<u64> = contents.iter().map(addr_of).collect();
        for (j, o) in objs.iter().enumerate() {
            match *o {
                Obj::Fda { n, parent, off } if n <= 64 => {
                    if let Some(Some(c)) = contents.get_mut(parent as usize) {
                        for i in 0..n {
                            let fd = w.files[i as usize % FILES].as_raw_fd();
                            put(c, off.wrapping_add(4 * i), &fd.to_ne_bytes());
                        }
                    }
                }
                Obj::Ptr {
                    parent: Some((p, poff)),
                    ..
                } => {
                    if let Some(Some(c)) = contents.get_mut(p as usize) {
                        put(c, poff, &addrs[j].to_ne_bytes());
                    }
                }
                _ => {}
            }
        }
        let mut data = pattern(t.prefix, t.code);
        let mut offsets: Vec<u64> = Vec::new();
        for (j, o) in objs.iter().enumerate() {
            offsets.push(data.len() as u64);
            self.object(w, &mut data, o, addrs[j]);
        }
        data.extend(pattern(t.suffix, t.code + 3));
        let mut buffers_size: u64 = objs
            .iter()
            .filter_map(|o| match *o {
                Obj::Ptr { len, .. } if len <= 1 << 20 => Some((len + 7) & !7),
                _ => None,
            })
            .sum();
        let mut offsets_size = offsets.len() as u64 * 8;
        let (mut data_ptr, mut offsets_ptr) = (None, None);
        match t.bad {
            Some(Bad::OffsetsNot8) => {
                offsets.push(0);
                offsets_size += 4;
            }
            Some(Bad::MisalignedOffset) => offsets[0] += 2,
            Some(Bad::OffsetPastEnd) => {
                offsets.push(data.len() as u64);
                offsets_size += 8;
            }
            Some(Bad::Overlap) => {
                offsets.push(offsets[0]);
                offsets_size += 8;
            }
            Some(Bad::UnknownType) => put(&mut data, offsets[0], &0x7a7a_7a7au32.to_ne_bytes()),
            Some(Bad::UnmappedData) => data_ptr = Some(UNMAPPED),
            Some(Bad::UnmappedOffsets) => offsets_ptr = Some(UNMAPPED),
            Some(Bad::HugeData) => data.resize(BINDER_VM_SIZE + 8, 0),
            Some(Bad::BuffersTooSmall) => buffers_size = buffers_size.saturating_sub(8),
            _ => {}
        }
        let offsets_bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
        let tr = BinderTransactionData {
            target: if t.reply {
                0
            } else {
                w.learned.handle(t.target) as u64
            },
            cookie: 0,
            code: t.code,
            flags: t.flags,
            sender_pid: 0,
            sender_euid: 0,
            data_size: data.len() as u64,
            offsets_size,
            data_buffer: data_ptr.unwrap_or(data.as_ptr() as u64),
            data_offsets: offsets_ptr.unwrap_or(offsets_bytes.as_ptr() as u64),
        };
        let cmd = match (t.reply, t.sg) {
            (false, false) => BC_TRANSACTION,
            (false, true) => BC_TRANSACTION_SG,
            (true, false) => BC_REPLY,
            (true, true) => BC_REPLY_SG,
        };
        if t.sg {
            cw.cmd_with(
                cmd,
                &BinderTransactionDataSg {
                    transaction_data: tr,
                    buffers_size,
                },
            );
        } else {
            cw.cmd_with(cmd, &tr);
        }
        self.keep.push(data);
        self.keep.push(offsets_bytes);
        self.keep.extend(contents.into_iter().flatten());
    }

    fn object(&self, w: &Worker, data: &mut Vec<u8>, o: &Obj, addr: u64) {
        let me = w.index;
        match *o {
            Obj::Binder {
                weak,
                node,
                accept_fds,
            } => data.extend_from_slice(bytemuck::bytes_of(&FlatBinderObject {
                hdr: BinderObjectHeader {
                    type_: if weak {
                        BINDER_TYPE_WEAK_BINDER
                    } else {
                        BINDER_TYPE_BINDER
                    },
                },
                flags: if accept_fds {
                    FLAT_BINDER_FLAG_ACCEPTS_FDS
                } else {
                    0
                },
                binder: node_ptr(me, node),
                cookie: node_cookie(me, node),
            })),
            Obj::Handle { weak, h } => {
                data.extend_from_slice(bytemuck::bytes_of(&FlatBinderObject {
                    hdr: BinderObjectHeader {
                        type_: if weak {
                            BINDER_TYPE_WEAK_HANDLE
                        } else {
                            BINDER_TYPE_HANDLE
                        },
                    },
                    flags: 0,
                    binder: w.learned.handle(h) as u64,
                    cookie: 0,
                }))
            }
            Obj::Fd(_) | Obj::BadFd => {
                let fd = match *o {
                    Obj::Fd(i) => w.files[i as usize % FILES].as_raw_fd(),
                    _ => BAD_FD,
                };
                data.extend_from_slice(bytemuck::bytes_of(&BinderFdObject {
                    hdr: BinderObjectHeader {
                        type_: BINDER_TYPE_FD,
                    },
                    pad_flags: 0,
                    pad_binder: fd as u32 as u64,
                    cookie: 0xF0,
                }))
            }
            Obj::Ptr { len, parent } => {
                data.extend_from_slice(bytemuck::bytes_of(&BinderBufferObject {
                    hdr: BinderObjectHeader {
                        type_: BINDER_TYPE_PTR,
                    },
                    flags: if parent.is_some() {
                        BINDER_BUFFER_FLAG_HAS_PARENT
                    } else {
                        0
                    },
                    buffer: addr,
                    length: len,
                    parent: parent.map_or(0, |p| p.0),
                    parent_offset: parent.map_or(0, |p| p.1),
                }))
            }
            Obj::Fda { n, parent, off } => {
                data.extend_from_slice(bytemuck::bytes_of(&BinderFdArrayObject {
                    hdr: BinderObjectHeader {
                        type_: BINDER_TYPE_FDA,
                    },
                    pad: 0,
                    num_fds: n,
                    parent,
                    parent_offset: off,
                }))
            }
        }
    }
}

/// The malformations that change an object (issue 10's overflows).
fn apply_object_bad(objs: &mut [Obj], bad: Option<Bad>) {
    for o in objs.iter_mut() {
        match (bad, o) {
            (Some(Bad::PtrLenMax), Obj::Ptr { len, parent: None }) => {
                *len = u64::MAX;
                return;
            }
            (
                Some(Bad::ChildOffsetOverflow),
                Obj::Ptr {
                    parent: Some((_, off)),
                    ..
                },
            ) => {
                *off = u64::MAX - 3;
                return;
            }
            (Some(Bad::FdaCountOverflow), Obj::Fda { n, .. }) => {
                *n = u64::MAX / 4 + 1;
                return;
            }
            (Some(Bad::FdaOffsetOverflow), Obj::Fda { off, .. }) => {
                *off = u64::MAX - 3;
                return;
            }
            _ => {}
        }
    }
}
