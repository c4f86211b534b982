//! The shim fed frames in-process without sockets (`shim::fuzzing::Harness`): connections
//! with any pid and uid, raw bytes cut anywhere, and frames built as `ShimDevice` builds them
//! (open proc, map done, open thread, ioctls, write_read with gathered transactions, state),
//! in any order. Deterministic: no threads, no sockets, fake pids.
//!
//! Checked beyond "no panic": once every connection is closed the shim holds no process,
//! thread, node, ref or buffer; once the harness is dropped this process has exactly the fds
//! it had before (the shim keeps no fd it was sent).
#![no_main]

use bittube::binder_ipc::protocol::wire::*;
use bittube::binder_ipc::shim::fuzzing::{frame_bytes, Answer, ConnHandle, Harness};
use bittube::binder_ipc::uapi::*;
use bittube_fuzz::bc::{layout, txn_command, Cmd};
use bittube_fuzz::frames::{decode, Frame, Op};
use bittube_fuzz::fresh_fd;
use libfuzzer_sys::fuzz_target;
use std::os::fd::OwnedFd;

const PIDS: [i32; 3] = [4001, 4002, 4003];
const UIDS: [u32; 2] = [0, 1000];
const IOCTLS: [u32; 8] = [
    BINDER_VERSION,
    BINDER_SET_MAX_THREADS,
    BINDER_SET_CONTEXT_MGR,
    BINDER_SET_CONTEXT_MGR_EXT,
    BINDER_THREAD_EXIT,
    BINDER_ENABLE_ONEWAY_SPAM_DETECTION,
    BINDER_GET_EXTENDED_ERROR,
    BINDER_FREEZE,
];

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let before = open_fds();
    {
        let mut run = Run::default();
        for op in decode(data) {
            run.step(&op);
        }
        run.finish();
    }
    let after = open_fds();
    assert_eq!(
        after, before,
        "fds leaked: {before} open before, {after} after"
    );
});

#[derive(Default)]
struct Run {
    h: Harness,
    conns: Vec<ConnHandle>,
    tokens: Vec<u64>,
    buffers: Vec<u64>,
    asked: Vec<(u64, u64)>,
    dead: Vec<u64>,
}

fn pick<T: Copy>(list: &[T], sel: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[sel as usize % list.len()])
}

fn fresh(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| fresh_fd()).collect()
}

impl Run {
    fn step(&mut self, op: &Op) {
        match op {
            Op::Connect(p, u) => {
                if let Ok(c) = self.h.connect(PIDS[*p as usize % 3], UIDS[*u as usize % 2]) {
                    self.conns.push(c);
                }
            }
            Op::Raw(c, nfds, bytes) => {
                let Some(c) = pick(&self.conns, *c) else {
                    return;
                };
                let answers = self.h.feed(c, bytes, fresh(*nfds as usize % 8));
                self.note(answers);
            }
            Op::Close(c) => {
                let Some(c) = pick(&self.conns, *c) else {
                    return;
                };
                let answers = self.h.close(c);
                self.note(answers);
            }
            Op::Frame(c, split, f) => {
                let Some(c) = pick(&self.conns, *c) else {
                    return;
                };
                let (bytes, fds) = self.build(f);
                let cut = if *split == 0 {
                    bytes.len()
                } else {
                    *split as usize % bytes.len().max(1)
                };
                let answers = self.h.feed(c, &bytes[..cut], fds);
                self.note(answers);
                if cut < bytes.len() {
                    let answers = self.h.feed(c, &bytes[cut..], Vec::new());
                    self.note(answers);
                }
            }
        }
    }

    /// Remembers tokens, buffers and nodes the answers name; drops their fds (closing them).
    fn note(&mut self, answers: Vec<Answer>) {
        for a in answers {
            match a.header.kind {
                K_OPEN_PROC_OK => {
                    if let Some(ok) = body::<OpenProcOk>(&a.body) {
                        self.tokens.push(ok.token);
                    }
                }
                K_WRITE_READ_RET => {
                    if let Some(ret) = body::<WriteReadRet>(&a.body) {
                        let start = std::mem::size_of::<WriteReadRet>();
                        let end = start
                            .saturating_add(ret.read_len as usize)
                            .min(a.body.len());
                        self.returns(&a.body[start.min(end)..end]);
                    }
                }
                _ => {}
            }
        }
    }

    fn returns(&mut self, bytes: &[u8]) {
        let mut r = CommandReader::new(bytes);
        while let Some((cmd, payload)) = r.next_command() {
            match cmd {
                BR_TRANSACTION | BR_REPLY | BR_TRANSACTION_SEC_CTX => {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(&payload[..64]);
                    self.buffers.push(tr.data_buffer);
                }
                BR_INCREFS | BR_ACQUIRE => {
                    let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(payload);
                    self.asked.push((pc.ptr, pc.cookie));
                }
                BR_DEAD_BINDER => self.dead.push(bytemuck::pod_read_unaligned(payload)),
                _ => {}
            }
        }
    }

    fn build(&self, f: &Frame) -> (Vec<u8>, Vec<OwnedFd>) {
        match f {
            Frame::OpenProc(area) => {
                let req = OpenProc {
                    version: WIRE_VERSION,
                    reserved: 0,
                    area_size: u64::from(*area),
                };
                (
                    frame_bytes(K_OPEN_PROC, bytemuck::bytes_of(&req), 0),
                    Vec::new(),
                )
            }
            Frame::MapDone(addr) => (frame_bytes(K_MAP_DONE, &addr.to_ne_bytes(), 0), Vec::new()),
            Frame::OpenThread(sel, raw) => {
                let token = if *sel < 128 {
                    pick(&self.tokens, *sel).unwrap_or(*raw)
                } else {
                    *raw
                };
                (
                    frame_bytes(K_OPEN_THREAD, &token.to_ne_bytes(), 0),
                    Vec::new(),
                )
            }
            Frame::Ioctl(sel, arg) => {
                let mut req = Ioctl {
                    cmd: *IOCTLS.get(*sel as usize).unwrap_or(&u32::from(*sel)),
                    ..Default::default()
                };
                let n = arg.len().min(req.arg.len());
                req.arg[..n].copy_from_slice(&arg[..n]);
                (
                    frame_bytes(K_IOCTL, bytemuck::bytes_of(&req), 0),
                    Vec::new(),
                )
            }
            Frame::WriteRead {
                nonblock,
                read,
                cmds,
            } => self.write_read(*nonblock, *read, cmds),
            Frame::State => (frame_bytes(K_STATE, &[], 0), Vec::new()),
            Frame::Any(kind, nfds, body) => {
                let n = *nfds as usize % 8;
                (frame_bytes(*kind, body, n as u32), fresh(n))
            }
        }
    }

    /// A K_WRITE_READ frame as `ShimDevice` builds it: after each transaction command, its
    /// gathered record, data, offsets and buffers, and fds for the objects that name some.
    fn write_read(&self, nonblock: bool, read: u32, cmds: &[Cmd]) -> (Vec<u8>, Vec<OwnedFd>) {
        let mut stream = Vec::new();
        let mut user_len = 0usize;
        let mut fds = Vec::new();
        let pool: Vec<i32> = vec![3, 4, 5];
        for c in cmds {
            let at = stream.len();
            match c {
                Cmd::Txn(t) => {
                    let l = layout(t, &pool);
                    let offs: Vec<u8> = l.offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
                    let tr = BinderTransactionData {
                        target: u64::from(t.handle),
                        code: t.code,
                        flags: t.flags,
                        data_size: l.data.len() as u64,
                        offsets_size: offs.len() as u64,
                        data_buffer: 0x1000,
                        data_offsets: 0x2000,
                        ..Default::default()
                    };
                    let cmd = txn_command(t);
                    stream.extend_from_slice(&cmd.to_ne_bytes());
                    stream.extend_from_slice(bytemuck::bytes_of(&tr));
                    if t.kind & 2 != 0 {
                        stream.extend_from_slice(&l.buffers_size.to_ne_bytes());
                    }
                    user_len += stream.len() - at;
                    let mut sg = Vec::new();
                    for (_, buf) in &l.ptrs {
                        sg.extend_from_slice(buf);
                        sg.resize(sg.len().next_multiple_of(8), 0);
                    }
                    let g = Gathered {
                        status: 0,
                        nfds: l.fds.len() as u32,
                        data_len: l.data.len() as u64,
                        offsets_len: offs.len() as u64,
                        sg_len: sg.len() as u64,
                    };
                    stream.extend_from_slice(bytemuck::bytes_of(&g));
                    stream.extend_from_slice(&l.data);
                    stream.extend_from_slice(&offs);
                    stream.extend_from_slice(&sg);
                    fds.extend(fresh(l.fds.len()));
                }
                other => {
                    simple_command(&mut stream, other, self);
                    user_len += stream.len() - at;
                }
            }
        }
        let req = WriteReadReq {
            write_consumed: 0,
            write_size: user_len as u64,
            read_consumed: 0,
            read_size: u64::from(read),
            nonblock: u32::from(nonblock),
            reserved: 0,
        };
        let mut body = bytemuck::bytes_of(&req).to_vec();
        body.extend_from_slice(&stream);
        // Large fd counts are cut to what one message carries.
        fds.truncate(MAX_FDS_PER_MSG);
        (frame_bytes(K_WRITE_READ, &body, fds.len() as u32), fds)
    }

    /// Closes every connection, checks the shim is empty, and drops it.
    fn finish(mut self) {
        let _ = self.h.dump();
        for c in std::mem::take(&mut self.conns) {
            let answers = self.h.close(c);
            drop(answers);
        }
        let dump = self.h.dump();
        for what in ["proc ", "  thread ", "  node ", "  ref ", "  buffer "] {
            assert!(
                !dump.lines().any(|l| l.starts_with(what)),
                "the shim kept a {what}after every connection closed:\n{dump}"
            );
        }
    }
}

fn put<T: bytemuck::Pod>(stream: &mut Vec<u8>, cmd: u32, payload: &T) {
    stream.extend_from_slice(&cmd.to_ne_bytes());
    stream.extend_from_slice(bytemuck::bytes_of(payload));
}

fn simple_command(stream: &mut Vec<u8>, c: &Cmd, run: &Run) {
    match c {
        Cmd::Txn(_) => unreachable!(),
        Cmd::Free(sel, raw) => {
            let addr = if *sel < 128 {
                pick(&run.buffers, *sel).unwrap_or(*raw)
            } else {
                *raw
            };
            put(stream, BC_FREE_BUFFER, &addr);
        }
        Cmd::Ref(which, h) => put(
            stream,
            [BC_INCREFS, BC_ACQUIRE, BC_RELEASE, BC_DECREFS][*which as usize % 4],
            h,
        ),
        Cmd::Done(acquire, sel) => {
            let (ptr, cookie) = pick(&run.asked, *sel).unwrap_or((u64::from(*sel), 0));
            put(
                stream,
                if *acquire {
                    BC_ACQUIRE_DONE
                } else {
                    BC_INCREFS_DONE
                },
                &BinderPtrCookie { ptr, cookie },
            );
        }
        Cmd::Death(clear, handle, cookie) => {
            let cmd = if *clear {
                BC_CLEAR_DEATH_NOTIFICATION
            } else {
                BC_REQUEST_DEATH_NOTIFICATION
            };
            put(
                stream,
                cmd,
                &BinderHandleCookie {
                    handle: *handle,
                    cookie: *cookie,
                },
            );
        }
        Cmd::DeadDone(sel, raw) => {
            let cookie = if *sel < 128 {
                pick(&run.dead, *sel).unwrap_or(*raw)
            } else {
                *raw
            };
            put(stream, BC_DEAD_BINDER_DONE, &cookie);
        }
        Cmd::Looper(which) => {
            stream.extend_from_slice(
                &[BC_ENTER_LOOPER, BC_REGISTER_LOOPER, BC_EXIT_LOOPER][*which as usize % 3]
                    .to_ne_bytes(),
            );
        }
        Cmd::Raw(cmd, payload) => {
            stream.extend_from_slice(&cmd.to_ne_bytes());
            stream.extend_from_slice(payload);
        }
    }
}

fn body<T: bytemuck::Pod>(b: &[u8]) -> Option<T> {
    b.get(..std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
}
