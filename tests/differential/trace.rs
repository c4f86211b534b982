//! The trace normaliser: BR_ streams as text in which nothing depends on the run — fd
//! numbers become the file they name (and whether they are open and close-on-exec), sender
//! pids become process indexes, addresses become offsets (in the buffer area, or from the
//! transaction's data), data bytes become a hash with objects masked out.
//!
//! It also remembers what the process learned (handles, buffers, node requests, dead
//! cookies) for the next steps to refer to.

use crate::build::INVALID_HANDLE;
use crate::gen::HandleRef;
use crate::worker::Worker;
use bittube::binder_ipc::device::Device;
use bittube::binder_ipc::uapi::*;
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::os::fd::{BorrowedFd, RawFd};

/// A buffer the process received.
#[derive(Debug)]
pub struct RecvBuf {
    addr: u64,
    fda_fds: Vec<RawFd>,
    freed: bool,
    /// FDA fds still open after the free (they are closed at the scenario's end).
    open_after_free: Vec<RawFd>,
}

/// What a process has learned from its reads.
#[derive(Debug, Default)]
pub struct Learned {
    handles: Vec<u32>,
    bufs: Vec<RecvBuf>,
    increfs: VecDeque<(u64, u64)>,
    acquires: VecDeque<(u64, u64)>,
    dead: VecDeque<u64>,
}

impl Learned {
    /// Resolves a handle reference.
    pub fn handle(&self, h: HandleRef) -> u32 {
        match h {
            HandleRef::Zero => 0,
            HandleRef::Invalid => INVALID_HANDLE,
            HandleRef::Learned(k) => {
                let n = self.handles.len();
                if n == 0 {
                    INVALID_HANDLE
                } else {
                    self.handles[n - 1 - (k as usize % n)]
                }
            }
        }
    }

    /// Resolves a buffer reference (`None`: no buffer received yet).
    pub fn buffer(&self, k: u8) -> Option<u64> {
        let n = self.bufs.len();
        (n > 0).then(|| self.bufs[n - 1 - (k as usize % n)].addr)
    }

    /// The oldest unanswered BR_INCREFS (for BC_INCREFS_DONE) or BR_ACQUIRE.
    pub fn node_request(&mut self, cmd: u32) -> (u64, u64) {
        let q = if cmd == BC_INCREFS_DONE {
            &mut self.increfs
        } else {
            &mut self.acquires
        };
        q.pop_front().unwrap_or((0xBAD000, 0xBAD001))
    }

    /// The oldest unanswered BR_DEAD_BINDER cookie.
    pub fn dead_cookie(&mut self) -> u64 {
        self.dead.pop_front().unwrap_or(0xBAD0)
    }

    /// After a BC_FREE_BUFFER of `addr`: whether the FDA fds of that buffer are closed.
    pub fn after_free(&mut self, addr: u64) -> String {
        let Some(b) = self
            .bufs
            .iter_mut()
            .rev()
            .find(|b| b.addr == addr && !b.freed)
        else {
            return String::new();
        };
        b.freed = true;
        if b.fda_fds.is_empty() {
            return String::new();
        }
        let states: Vec<&str> = b
            .fda_fds
            .iter()
            .map(|&fd| if is_open(fd) { "open" } else { "closed" })
            .collect();
        b.open_after_free = b
            .fda_fds
            .iter()
            .copied()
            .filter(|&fd| is_open(fd))
            .collect();
        format!(" fda_after_free=[{}]", states.join(","))
    }

    /// FDA fds that may still be open: of buffers never freed, or open after their free.
    pub fn leftover_fds(self) -> BTreeSet<RawFd> {
        self.bufs
            .into_iter()
            .flat_map(|b| {
                if b.freed {
                    b.open_after_free
                } else {
                    b.fda_fds
                }
            })
            .collect()
    }
}

fn is_open(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: only asks whether the number is open; nothing is done with it.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// A received fd: `closed`, or the scenario file it names (`other` for anything else),
/// with `+cx` when close-on-exec.
fn fd_state(w: &Worker, fd: RawFd) -> String {
    if fd < 0 {
        return "closed".into();
    }
    // SAFETY: only reads the fd flags; nothing is done with the number.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(flags) = nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD) else {
        return "closed".into();
    };
    let name = match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(t) if t.starts_with(&w.dir) => t
            .file_name()
            .map_or("?".into(), |n| n.to_string_lossy().into_owned()),
        _ => "other".into(),
    };
    let cx = if flags & libc::FD_CLOEXEC != 0 {
        "+cx"
    } else {
        ""
    };
    format!("{name}{cx}")
}

/// FNV-1a, folded to 32 bits.
pub fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

fn short(name: &str) -> &str {
    name.strip_prefix("BR_").unwrap_or(name)
}

/// Describes a BR_ stream (and learns from it).
pub fn describe_stream(w: &mut Worker, dev: &dyn Device, bytes: &[u8]) -> String {
    let mut r = CommandReader::new(bytes);
    let mut out = String::new();
    while let Some((cmd, payload)) = r.next_command() {
        let name = short(command_name(cmd));
        out.push(' ');
        let pc = || -> (u64, u64) {
            let v: BinderPtrCookie = bytemuck::pod_read_unaligned(payload);
            (v.ptr, v.cookie)
        };
        match cmd {
            BR_TRANSACTION | BR_REPLY if payload.len() == 64 => {
                let tr: BinderTransactionData = bytemuck::pod_read_unaligned(payload);
                out.push_str(&describe_txn(w, dev, name, &tr));
            }
            BR_INCREFS | BR_ACQUIRE | BR_RELEASE | BR_DECREFS if payload.len() == 16 => {
                let (p, c) = pc();
                if cmd == BR_INCREFS {
                    w.learned.increfs.push_back((p, c));
                } else if cmd == BR_ACQUIRE {
                    w.learned.acquires.push_back((p, c));
                }
                let _ = write!(out, "{name}({p:#x},{c:#x})");
            }
            BR_DEAD_BINDER | BR_CLEAR_DEATH_NOTIFICATION_DONE if payload.len() == 8 => {
                let c = u64::from_ne_bytes(payload.try_into().unwrap());
                if cmd == BR_DEAD_BINDER {
                    w.learned.dead.push_back(c);
                }
                let _ = write!(out, "{name}({c:#x})");
            }
            BR_ERROR if payload.len() == 4 => {
                let _ = write!(
                    out,
                    "{name}({})",
                    i32::from_ne_bytes(payload.try_into().unwrap())
                );
            }
            _ if payload.is_empty() => out.push_str(name),
            _ => {
                let _ = write!(out, "{name}[{} bytes]", payload.len());
            }
        }
    }
    if r.remaining() != 0 {
        let _ = write!(out, " junk({} bytes)", r.remaining());
    }
    out
}

struct PtrSeen {
    idx: u64,
    buffer: u64,
    length: u64,
    parent: Option<(u64, u64)>,
}

fn describe_txn(
    w: &mut Worker,
    dev: &dyn Device,
    name: &str,
    tr: &BinderTransactionData,
) -> String {
    let base = dev.buffer_area().0;
    let pid = if tr.sender_pid == 0 {
        "0".to_string()
    } else {
        match w.pids.iter().position(|p| *p == tr.sender_pid) {
            Some(i) => format!("P{i}"),
            None => format!("?{}", tr.sender_pid),
        }
    };
    let euid = if tr.sender_euid == nix::unistd::geteuid().as_raw() {
        "me".to_string()
    } else {
        tr.sender_euid.to_string()
    };
    let mut s = format!(
        "{name}{{tgt={:#x} ck={:#x} code={} fl={:#x} pid={pid} euid={euid} ds={} os={} at={:#x} off={:#x}",
        tr.target,
        tr.cookie,
        tr.code,
        tr.flags,
        tr.data_size,
        tr.offsets_size,
        tr.data_buffer.wrapping_sub(base),
        tr.data_offsets.wrapping_sub(tr.data_buffer),
    );
    let Some(data) = usize::try_from(tr.data_size)
        .ok()
        .and_then(|n| dev.buffer_bytes(tr.data_buffer, n))
    else {
        s.push_str(" data=outside}");
        return s;
    };
    let mut data = data.to_vec();
    let offsets: Vec<u64> = usize::try_from(tr.offsets_size)
        .ok()
        .and_then(|n| dev.buffer_bytes(tr.data_offsets, n))
        .map(|b| {
            b.chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    let mut descs = Vec::new();
    let mut ptrs = Vec::new();
    let mut fdas = Vec::new();
    let mut fda_fds = Vec::new();
    for (idx, &off) in offsets.iter().enumerate() {
        let (desc, size) = describe_object(w, &data, off, idx as u64, tr, &mut ptrs, &mut fdas);
        descs.push(desc);
        if let Some(end) = (off as usize).checked_add(size) {
            if end <= data.len() {
                data[off as usize..end].fill(0);
            }
        }
    }
    // FDA fds, read from their parent buffer in the receiver.
    for (i, &(n, parent, poff)) in fdas.iter().enumerate() {
        let words = ptrs
            .iter()
            .find(|p: &&PtrSeen| p.idx == parent)
            .and_then(|p| p.buffer.checked_add(poff))
            .zip(n.checked_mul(4).filter(|b| *b <= 4096))
            .and_then(|(a, len)| dev.buffer_bytes(a, len as usize));
        let files: Vec<String> = match words {
            Some(ws) => ws
                .chunks_exact(4)
                .map(|c| {
                    let fd = i32::from_ne_bytes(c.try_into().unwrap());
                    fda_fds.push(fd);
                    fd_state(w, fd)
                })
                .collect(),
            None => vec!["outside".into()],
        };
        descs.push(format!("fda{i}=[{}]", files.join(",")));
    }
    // PTR contents, with the fixed-up pointers and FDA fds masked.
    for p in &ptrs {
        let content = usize::try_from(p.length)
            .ok()
            .filter(|l| *l <= 1 << 20)
            .and_then(|l| dev.buffer_bytes(p.buffer, l));
        let Some(content) = content else {
            descs.push(format!("ptr{}=outside", p.idx));
            continue;
        };
        let mut c = content.to_vec();
        for child in ptrs.iter().filter(|c| c.parent.map(|x| x.0) == Some(p.idx)) {
            let rel = child.buffer.wrapping_sub(tr.data_buffer).to_ne_bytes();
            mask(&mut c, child.parent.unwrap().1, &rel);
        }
        for &(n, parent, poff) in &fdas {
            if parent == p.idx && n <= 1024 {
                mask(&mut c, poff, &vec![0u8; n as usize * 4]);
            }
        }
        descs.push(format!("ptr{}={}", p.idx, hash(&c)));
    }
    let d = if data.len() <= 16 {
        data.iter().map(|b| format!("{b:02x}")).collect::<String>()
    } else {
        hash(&data)
    };
    let _ = write!(s, " data={d} objs=[{}]}}", descs.join(" "));
    w.learned.bufs.push(RecvBuf {
        addr: tr.data_buffer,
        fda_fds,
        freed: false,
        open_after_free: Vec::new(),
    });
    s
}

fn mask(buf: &mut [u8], at: u64, with: &[u8]) {
    let Ok(at) = usize::try_from(at) else { return };
    if let Some(end) = at.checked_add(with.len()) {
        if end <= buf.len() {
            buf[at..end].copy_from_slice(with);
        }
    }
}

/// One object of a received transaction: its description and size.
fn describe_object(
    w: &mut Worker,
    data: &[u8],
    off: u64,
    idx: u64,
    tr: &BinderTransactionData,
    ptrs: &mut Vec<PtrSeen>,
    fdas: &mut Vec<(u64, u64, u64)>,
) -> (String, usize) {
    let at = |len: usize| -> Option<&[u8]> {
        let o = usize::try_from(off).ok()?;
        data.get(o..o.checked_add(len)?)
    };
    let Some(ty) = at(4).map(|b| u32::from_ne_bytes(b.try_into().unwrap())) else {
        return (format!("?@{off}"), 0);
    };
    match ty {
        BINDER_TYPE_BINDER
        | BINDER_TYPE_WEAK_BINDER
        | BINDER_TYPE_HANDLE
        | BINDER_TYPE_WEAK_HANDLE => {
            let Some(b) = at(24) else {
                return (format!("short@{off}"), 0);
            };
            let o: FlatBinderObject = bytemuck::pod_read_unaligned(b);
            let kind = match ty {
                BINDER_TYPE_BINDER => "B",
                BINDER_TYPE_WEAK_BINDER => "WB",
                BINDER_TYPE_HANDLE => "H",
                _ => "WH",
            };
            if matches!(ty, BINDER_TYPE_HANDLE | BINDER_TYPE_WEAK_HANDLE) {
                let h = o.binder as u32;
                if !w.learned.handles.contains(&h) {
                    w.learned.handles.push(h);
                }
            }
            (
                format!("{kind}({:#x},{:#x},{:#x})", o.binder, o.cookie, o.flags),
                24,
            )
        }
        BINDER_TYPE_FD => {
            let Some(b) = at(24) else {
                return (format!("short@{off}"), 0);
            };
            let o: BinderFdObject = bytemuck::pod_read_unaligned(b);
            let fd = o.pad_binder as u32 as i32;
            let st = fd_state(w, fd);
            w.close_received(fd);
            (format!("FD({st},{:#x})", o.cookie), 24)
        }
        BINDER_TYPE_PTR => {
            let Some(b) = at(40) else {
                return (format!("short@{off}"), 0);
            };
            let o: BinderBufferObject = bytemuck::pod_read_unaligned(b);
            let parent = (o.flags & BINDER_BUFFER_FLAG_HAS_PARENT != 0)
                .then_some((o.parent, o.parent_offset));
            ptrs.push(PtrSeen {
                idx,
                buffer: o.buffer,
                length: o.length,
                parent,
            });
            (
                format!(
                    "P(rel={:#x},len={},fl={},par={:?})",
                    o.buffer.wrapping_sub(tr.data_buffer),
                    o.length,
                    o.flags,
                    parent
                ),
                40,
            )
        }
        BINDER_TYPE_FDA => {
            let Some(b) = at(32) else {
                return (format!("short@{off}"), 0);
            };
            let o: BinderFdArrayObject = bytemuck::pod_read_unaligned(b);
            fdas.push((o.num_fds, o.parent, o.parent_offset));
            (
                format!(
                    "FDA(n={},par={},off={})",
                    o.num_fds, o.parent, o.parent_offset
                ),
                32,
            )
        }
        t => (format!("?type{t:#x}"), 4),
    }
}
