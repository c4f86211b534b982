//! The shim's event loop: one mio `Poll` owns every connection and the whole [`State`];
//! nothing in it blocks.
//!
//! Two layers: [`Core`] takes a connection's bytes and fds, cuts them into frames, runs each
//! against the state and queues the answers ([`OutQueue`]); it does no I/O, so the fuzzing
//! harness ([`super::fuzzing`]) drives exactly the code the server runs. [`Server`] moves
//! bytes between the sockets and the core.
//!
//! Every connection is bounded: its queued answers ([`Limits::out_bytes_per_conn`]: past it
//! the connection's input is not read until the answers drain), the connections of its uid,
//! the binder processes of its uid and the threads of its process. Each refusal is an errno
//! to that client and a counter in the state dump.

use super::alloc::Area;
use super::state::{
    ConnId, IdMap, ProcId, State, ThreadId, Work, WriteReadDone, LOOPER_ENTERED, LOOPER_REGISTERED,
};
use super::transaction::TXN_RECORD;
use super::Limits;
use crate::binder_ipc::protocol::wire::*;
use crate::binder_ipc::uapi::*;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IoSlice;
use std::mem::size_of;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Bytes one read takes from a connection.
const READ_BUF: usize = 64 * 1024;
/// Frames one connection may have handled per turn of the event loop. Past it the
/// connection yields: the rest of its input waits (in its buffer and its socket) until every
/// other ready connection had its turn, so a client that floods and reads as fast cannot keep
/// the loop on itself. A binder thread has one request in flight, so only a pipelining
/// client ever reaches it.
pub(super) const FRAMES_PER_TURN: u32 = 64;
/// Buffer capacity a connection keeps once drained; more is given back.
const KEEP: usize = 64 * 1024;
/// Most fds a frame header may announce.
const MAX_FRAME_FDS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    New,
    Proc(ProcId),
    Thread(ProcId),
}

/// Answers queued for one connection: whole frames, and the fds that ride on given bytes.
#[derive(Default)]
pub(super) struct OutQueue {
    bytes: Vec<u8>,
    /// Bytes before `pos` are sent.
    pos: usize,
    /// (position in `bytes`, fds that ride on that byte), in position order.
    fds: VecDeque<(usize, Vec<OwnedFd>)>,
    /// It once held more than [`KEEP`] bytes.
    grew: bool,
}

impl OutQueue {
    /// Bytes queued and not yet sent.
    pub(super) fn queued(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Appends one frame; its fds ride on its first bytes, at most [`MAX_FDS_PER_MSG`] a byte.
    fn push_frame(&mut self, kind: u32, parts: &[&[u8]], fds: Vec<OwnedFd>) {
        self.push_flagged(kind, 0, parts, fds);
    }

    /// [`push_frame`](Self::push_frame) with `flags` in the header's `reserved` field.
    fn push_flagged(&mut self, kind: u32, flags: u32, parts: &[&[u8]], fds: Vec<OwnedFd>) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let hdr = FrameHeader {
            // Answers are built by the shim from bounded state; a body over 4 GiB is a bug.
            len: u32::try_from(len).unwrap_or(u32::MAX),
            kind,
            nfds: fds.len() as u32,
            reserved: flags,
        };
        let at = self.bytes.len();
        self.bytes.extend_from_slice(bytemuck::bytes_of(&hdr));
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        let last = self.bytes.len() - 1;
        let mut fds = fds;
        let mut byte = at;
        while !fds.is_empty() {
            let rest = if fds.len() > MAX_FDS_PER_MSG {
                fds.split_off(MAX_FDS_PER_MSG)
            } else {
                Vec::new()
            };
            self.fds.push_back((byte.min(last), fds));
            fds = rest;
            byte += 1;
        }
    }

    /// The next piece to send: a byte range and the fds riding on its first byte.
    fn next_piece(&self) -> (Range<usize>, &[OwnedFd]) {
        let end_at = |i: usize| self.fds.get(i).map_or(self.bytes.len(), |(p, _)| *p);
        match self.fds.front() {
            Some((p, fds)) if *p == self.pos => (self.pos..end_at(1).max(self.pos + 1), fds),
            _ => (self.pos..end_at(0), &[]),
        }
    }

    /// `n` bytes of the piece [`next_piece`](Self::next_piece) named were sent.
    fn advance(&mut self, n: usize) {
        if n > 0 && self.fds.front().is_some_and(|(p, _)| *p == self.pos) {
            // Our copies of the sent fds close here; the peer holds its own.
            self.fds.pop_front();
        }
        self.pos += n;
        if self.pos >= self.bytes.len() {
            self.clear();
        }
    }

    /// Drops everything queued and gives back a large buffer.
    fn clear(&mut self) {
        self.bytes.clear();
        self.pos = 0;
        self.fds.clear();
        if self.bytes.capacity() > KEEP {
            self.bytes.shrink_to(KEEP);
            self.grew = true;
        }
    }

    /// Takes every whole frame queued (the fuzzing harness's "socket").
    pub(super) fn take_all(&mut self) -> (Vec<u8>, Vec<(usize, Vec<OwnedFd>)>) {
        let bytes = self.bytes[self.pos..].to_vec();
        let base = self.pos;
        let fds = self.fds.drain(..).map(|(p, f)| (p - base, f)).collect();
        self.clear();
        (bytes, fds)
    }
}

/// One client connection.
pub(super) struct Conn {
    /// The socket; `None` in the fuzzing harness.
    sock: Option<UnixStream>,
    pid: i32,
    uid: u32,
    role: Role,
    /// Bytes of a frame not yet whole.
    inbuf: Vec<u8>,
    /// fds received and not yet taken by a frame.
    infds: VecDeque<OwnedFd>,
    pub(super) out: OutQueue,
    /// Registered for writable events.
    want_write: bool,
    /// Input is left unread while the output queue is over its cap.
    pub(super) paused: bool,
    /// Frames handled in this turn ([`FRAMES_PER_TURN`]).
    turn_frames: u32,
    /// Used up its turn: on [`Core::busy`], its input waits for the next turn.
    yielded: bool,
    /// On [`Core::dirty`].
    dirty: bool,
    /// To be reaped.
    pub(super) dead: bool,
}

impl Conn {
    /// Its answers were collected (the fuzzing harness): off [`Core::dirty`].
    pub(super) fn clear_dirty(&mut self) {
        self.dirty = false;
    }
}

/// Counters of the connection layer, shown in the state dump.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ServerStats {
    accepted: u64,
    reaped: u64,
    refused_conns_per_uid: u64,
    refused_fd_limit: u64,
    refused_procs_per_uid: u64,
    refused_input_per_uid: u64,
    protocol_errors: u64,
    output_stalls: u64,
    peak_output: usize,
    yields: u64,
    /// `K_WRITE_READ_LOCAL` calls whose answer (`BR_TRANSACTION_COMPLETE`) was the shim's.
    local_completes: u64,
    /// `K_WRITE_READ_LOCAL` calls whose write stopped early or whose thread had no
    /// completion at its head (the device's answer was not the kernel's).
    local_contradicted: u64,
}

/// Frames in, answers queued: everything between the sockets and the [`State`].
pub(super) struct Core {
    pub(super) conns: IdMap<ConnId, Conn>,
    tokens: IdMap<u64, ProcId>,
    pub(super) state: State,
    limits: Limits,
    conns_by_uid: IdMap<u64, usize>,
    /// Bytes of frames not yet whole, per uid.
    in_by_uid: IdMap<u64, usize>,
    /// Bytes of answers queued, per uid.
    out_by_uid: IdMap<u64, usize>,
    stats: ServerStats,
    /// Connections with new output, in the order they got it.
    pub(super) dirty: Vec<ConnId>,
    /// Connections that used up their turn with input left, in the order they did.
    busy: Vec<ConnId>,
    /// Deterministic proc tokens (fuzzing): the next one; `None`: random.
    next_token: Option<u64>,
    /// A connection that held large buffers went away: give free heap back.
    trim: bool,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the live buffer `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // Fall back to the clock and address entropy; the token is also checked against the
        // peer's uid and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return (t as u64) ^ ((&b as *const _ as u64) << 16);
    }
    u64::from_ne_bytes(b)
}

impl Core {
    /// A core with `limits`; `det_tokens` makes proc tokens a counter (fuzzing only).
    pub(super) fn new(limits: Limits, det_tokens: bool) -> Core {
        let mut state = State::default();
        state.limits = limits.state;
        Core {
            conns: IdMap::default(),
            tokens: IdMap::default(),
            state,
            limits,
            conns_by_uid: IdMap::default(),
            in_by_uid: IdMap::default(),
            out_by_uid: IdMap::default(),
            stats: ServerStats::default(),
            dirty: Vec::new(),
            busy: Vec::new(),
            next_token: det_tokens.then_some(0x7000_0000_0000_0001),
            trim: false,
        }
    }

    /// Admits a new connection of `uid` under the caps, or says why not (counted).
    pub(super) fn admit(&mut self, uid: u32) -> Result<(), Errno> {
        let n = self.conns_by_uid.get(&(uid as u64)).copied().unwrap_or(0);
        if n >= self.limits.conns_per_uid {
            self.stats.refused_conns_per_uid += 1;
            return Err(Errno::EUSERS);
        }
        Ok(())
    }

    /// Adds connection `c` (admitted by [`admit`](Self::admit)).
    pub(super) fn add(&mut self, c: ConnId, sock: Option<UnixStream>, pid: i32, uid: u32) {
        *self.conns_by_uid.entry(uid as u64).or_insert(0) += 1;
        self.stats.accepted += 1;
        self.conns.insert(
            c,
            Conn {
                sock,
                pid,
                uid,
                role: Role::New,
                inbuf: Vec::new(),
                infds: VecDeque::new(),
                out: OutQueue::default(),
                want_write: false,
                paused: false,
                turn_frames: 0,
                yielded: false,
                dirty: false,
                dead: false,
            },
        );
    }

    /// Bytes (and the fds that rode on them) arrived on `c`: handles every whole frame,
    /// keeps the rest (within the uid's input budget).
    pub(super) fn receive(&mut self, c: ConnId, bytes: &[u8], fds: Vec<OwnedFd>) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let before = conn.inbuf.len();
        conn.infds.extend(fds);
        if conn.inbuf.is_empty() {
            // Whole frames straight from the caller's buffer; only a tail is kept.
            let used = self.frames(c, bytes);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.inbuf
                    .extend_from_slice(&bytes[used.min(bytes.len())..]);
            }
        } else {
            conn.inbuf.extend_from_slice(bytes);
            self.handle_buffered(c);
        }
        self.account_input(c, before);
    }

    /// Handles whole frames left in `c`'s input buffer (after a pause).
    pub(super) fn receive_buffered(&mut self, c: ConnId) {
        let Some(before) = self.conns.get(&c).map(|k| k.inbuf.len()) else {
            return;
        };
        self.handle_buffered(c);
        self.account_input(c, before);
    }

    fn handle_buffered(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let inbuf = std::mem::take(&mut conn.inbuf);
        let used = self.frames(c, &inbuf);
        if let Some(conn) = self.conns.get_mut(&c) {
            let mut inbuf = inbuf;
            inbuf.drain(..used.min(inbuf.len()));
            if inbuf.is_empty() && inbuf.capacity() > KEEP {
                inbuf = Vec::new();
            }
            conn.inbuf = inbuf;
        }
    }

    /// `c`'s half-received bytes went from `before` to what it holds now: counted against
    /// its uid, whose budget ([`Limits::in_bytes_per_uid`]) a growing connection may not
    /// pass (it is closed: half a frame cannot be answered; counted).
    fn account_input(&mut self, c: ConnId, before: usize) {
        let Some(k) = self.conns.get(&c) else {
            return;
        };
        let (uid, after) = (k.uid as u64, k.inbuf.len());
        let total = self.in_by_uid.entry(uid).or_insert(0);
        *total = total.saturating_sub(before).saturating_add(after);
        if after > before && *total > self.limits.in_bytes_per_uid {
            self.stats.refused_input_per_uid += 1;
            self.protocol_error(c);
        }
    }

    /// The peer of `c` hung up (or its socket failed): whatever it left half-sent is dropped.
    pub(super) fn hang_up(&mut self, c: ConnId) {
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.dead = true;
        }
    }

    /// Marks `c` dead for a protocol error (counted).
    fn protocol_error(&mut self, c: ConnId) {
        self.stats.protocol_errors += 1;
        self.hang_up(c);
    }

    /// Handles the whole frames at the front of `bytes` in order; returns how many bytes they
    /// took. Stops early when the connection's answers fill its cap (the rest waits); a
    /// malformed header or a refused frame marks the connection dead.
    fn frames(&mut self, c: ConnId, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&c) else {
                return bytes.len();
            };
            if conn.dead {
                return bytes.len();
            }
            let q = conn.out.queued();
            let uid_out = self
                .out_by_uid
                .get(&(conn.uid as u64))
                .copied()
                .unwrap_or(0);
            if q >= self.limits.out_bytes_per_conn
                || (q > 0 && uid_out >= self.limits.out_bytes_per_uid)
            {
                if !conn.paused {
                    conn.paused = true;
                    self.stats.output_stalls += 1;
                }
                return at;
            }
            let rest = &bytes[at..];
            let Some(h) = rest.get(..size_of::<FrameHeader>()) else {
                return at;
            };
            if conn.turn_frames >= FRAMES_PER_TURN {
                if !conn.yielded {
                    conn.yielded = true;
                    self.stats.yields += 1;
                    self.busy.push(c);
                }
                return at;
            }
            conn.turn_frames += 1;
            let hdr: FrameHeader = bytemuck::pod_read_unaligned(h);
            let nfds = hdr.nfds as usize;
            if hdr.len as usize > MAX_FRAME || nfds > MAX_FRAME_FDS {
                self.protocol_error(c);
                return bytes.len();
            }
            let total = 16 + hdr.len as usize;
            let Some(body) = rest.get(16..total) else {
                return at;
            };
            if conn.infds.len() < nfds {
                // Every fd rides on the frame's own bytes: missing ones mean a lying header.
                self.protocol_error(c);
                return bytes.len();
            }
            let fds: Vec<OwnedFd> = conn.infds.drain(..nfds).collect();
            at += total;
            if !self.frame(c, &hdr, body, fds) {
                self.protocol_error(c);
                return bytes.len();
            }
        }
    }

    /// Queues one answer frame on `c`.
    fn send(&mut self, c: ConnId, kind: u32, parts: &[&[u8]], fds: Vec<OwnedFd>) {
        self.send_flagged(c, kind, 0, parts, fds);
    }

    /// [`send`](Self::send) with header flags.
    fn send_flagged(
        &mut self,
        c: ConnId,
        kind: u32,
        flags: u32,
        parts: &[&[u8]],
        fds: Vec<OwnedFd>,
    ) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.dead {
            return;
        }
        let before = conn.out.queued();
        conn.out.push_flagged(kind, flags, parts, fds);
        let added = conn.out.queued() - before;
        *self.out_by_uid.entry(conn.uid as u64).or_insert(0) += added;
        self.stats.peak_output = self.stats.peak_output.max(conn.out.queued());
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(c);
        }
    }

    fn result(&mut self, c: ConnId, r: Result<i32, Errno>) {
        self.send(
            c,
            K_RESULT,
            &[bytemuck::bytes_of(&result_body(r))],
            Vec::new(),
        );
    }

    /// Handles one frame; false closes the connection (protocol error).
    fn frame(&mut self, c: ConnId, hdr: &FrameHeader, body: &[u8], fds: Vec<OwnedFd>) -> bool {
        let Some(role) = self.conns.get(&c).map(|k| k.role) else {
            return false;
        };
        match (role, hdr.kind) {
            (Role::New, K_OPEN_PROC) => read_body(body).is_some_and(|r| self.open_proc(c, r)),
            (Role::Proc(p), K_MAP_DONE) => read_body(body).is_some_and(|b| self.map_done(c, p, b)),
            (Role::New, K_OPEN_THREAD) => read_body(body).is_some_and(|t| self.open_thread(c, t)),
            (Role::New, K_STATE) => {
                let text = self.dump();
                self.send(c, K_STATE_RET, &[text.as_bytes()], Vec::new());
                true
            }
            (Role::Thread(p), K_IOCTL) => {
                read_body(body).is_some_and(|r| self.ioctl_frame(c, p, r))
            }
            (Role::Thread(_), K_WRITE_READ) => self.write_read(c, body, fds),
            (Role::Thread(_), K_WRITE_READ_LOCAL) => self.write_read_local(c, body, fds),
            _ => false,
        }
    }

    /// `K_OPEN_PROC`: a new binder process with a fresh buffer area.
    fn open_proc(&mut self, c: ConnId, req: OpenProc) -> bool {
        let Some((pid, uid)) = self.conns.get(&c).map(|k| (k.pid, k.uid)) else {
            return false;
        };
        let refuse = |errno: Errno| OpenProcOk {
            errno: errno as i32,
            ..Default::default()
        };
        if req.version != WIRE_VERSION {
            let ok = refuse(Errno::EPROTO);
            self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], Vec::new());
            return true;
        }
        let procs = self.state.procs.values().filter(|p| p.euid == uid).count();
        if procs >= self.limits.procs_per_uid {
            self.stats.refused_procs_per_uid += 1;
            let ok = refuse(Errno::EMFILE);
            self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], Vec::new());
            return true;
        }
        let area = usize::try_from(req.area_size)
            .map_err(|_| Errno::ENOMEM)
            .and_then(Area::new)
            .and_then(|a| {
                let fd = a.memfd().try_clone().map_err(|_| Errno::EMFILE)?;
                Ok((a, fd))
            });
        match area {
            Ok((area, memfd)) => {
                let size = area.size() as u64;
                let token = self.new_token();
                let proc = self.state.open_proc(pid, uid, area, token);
                self.tokens.insert(token, proc);
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.role = Role::Proc(proc);
                }
                let ok = OpenProcOk {
                    errno: 0,
                    reserved: 0,
                    token,
                    area_size: size,
                };
                self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], vec![memfd]);
            }
            Err(e) => {
                let ok = refuse(e);
                self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], Vec::new());
            }
        }
        true
    }

    fn new_token(&mut self) -> u64 {
        match &mut self.next_token {
            Some(t) => {
                *t += 1;
                *t
            }
            None => random_u64(),
        }
    }

    /// `K_MAP_DONE`: the process mapped its area at `base`.
    fn map_done(&mut self, c: ConnId, p: ProcId, base: u64) -> bool {
        if let Some(proc) = self.state.procs.get_mut(&p) {
            proc.area.client_base = base;
            proc.mapped = true;
        }
        self.result(c, Ok(0));
        true
    }

    /// `K_OPEN_THREAD`: `c` becomes a thread of the process `token` names, when its peer is
    /// that process's pid and uid and the process has room for another thread (the state's
    /// thread cap, `ENOMEM`).
    fn open_thread(&mut self, c: ConnId, token: u64) -> bool {
        let Some((pid, uid)) = self.conns.get(&c).map(|k| (k.pid, k.uid)) else {
            return false;
        };
        let proc = self.tokens.get(&token).copied().filter(|id| {
            self.state
                .procs
                .get(id)
                .is_some_and(|p| p.pid == pid && p.euid == uid)
        });
        let Some(p) = proc else {
            self.result(c, Err(Errno::EPERM));
            return true;
        };
        if let Err(e) = self.state.check_thread_cap(p) {
            self.result(c, Err(e));
            return true;
        }
        self.state.open_thread(c, p);
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.role = Role::Thread(p);
        }
        self.result(c, Ok(0));
        true
    }

    fn ioctl_frame(&mut self, c: ConnId, p: ProcId, req: Ioctl) -> bool {
        if req.cmd == BINDER_GET_EXTENDED_ERROR {
            // Read and cleared, as the kernel does; the record follows the result.
            let ee = self
                .state
                .take_extended_error(c)
                .unwrap_or(super::error::EE_CLEAR);
            let body = result_body(Ok(0));
            let parts = [bytemuck::bytes_of(&body), bytemuck::bytes_of(&ee)];
            self.send(c, K_RESULT, &parts, Vec::new());
            return true;
        }
        let r = self.ioctl(c, p, &req);
        if let Some(t) = self.state.threads.get_mut(&c) {
            t.need_return = false;
        }
        self.result(c, r);
        true
    }

    fn ioctl(&mut self, c: ConnId, p: ProcId, req: &Ioctl) -> Result<i32, Errno> {
        let arg_u32 = u32::from_ne_bytes([req.arg[0], req.arg[1], req.arg[2], req.arg[3]]);
        match req.cmd {
            BINDER_VERSION => Ok(BINDER_CURRENT_PROTOCOL_VERSION),
            BINDER_SET_MAX_THREADS => {
                self.state.set_max_threads(c, arg_u32);
                Ok(0)
            }
            BINDER_SET_CONTEXT_MGR => self.state.set_context_mgr(c, None).map(|_| 0),
            BINDER_SET_CONTEXT_MGR_EXT => {
                let fbo: FlatBinderObject = bytemuck::pod_read_unaligned(&req.arg);
                self.state.set_context_mgr(c, Some(fbo)).map(|_| 0)
            }
            BINDER_THREAD_EXIT => {
                self.state.release_thread(c);
                self.state.open_thread(c, p);
                Ok(0)
            }
            BINDER_ENABLE_ONEWAY_SPAM_DETECTION => {
                self.state.set_spam_detection(c, arg_u32 != 0);
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `K_WRITE_READ`: one `BINDER_WRITE_READ`; a read with nothing to return parks.
    fn write_read(&mut self, c: ConnId, body: &[u8], fds: Vec<OwnedFd>) -> bool {
        if self
            .state
            .threads
            .get(&c)
            .is_none_or(|t| t.pending.is_some())
        {
            return false;
        }
        let Some(req) = read_body_prefix::<WriteReadReq>(body) else {
            return false;
        };
        let stream = &body[size_of::<WriteReadReq>()..];
        let done = self.state.write_read(c, stream, &req, fds);
        if let Some(done) = done.or_else(|| self.finish_after_free(c)) {
            // Threads this call woke are served first, as the kernel wakes the target before
            // the caller returns: each thread only sees its own answers, so the order of
            // sends cannot change what any thread reads, and the woken side (a caller
            // waiting for BR_REPLY) runs sooner.
            self.run_wakes();
            self.reply_write_read(c, done);
        }
        true
    }

    /// `K_WRITE_READ_LOCAL`: a `BINDER_WRITE_READ` the device already answered with the
    /// whole write consumed and `BR_NOOP BR_TRANSACTION_COMPLETE` read (what the kernel
    /// returns to a thread that replies to the call it was handed: the reply's
    /// BR_TRANSACTION_COMPLETE is queued on the replier's own list, and a thread with work of
    /// its own takes no process work). The write runs as for `K_WRITE_READ`; the read hands
    /// the thread exactly the completion at the head of its list, if that is what the head
    /// is, and leaves everything else queued for its next read. Nothing is sent back. A head
    /// that is not a completion, a write that stopped early or a read that could ask for a
    /// looper contradicts the device's answer (a device that breaks the rules of
    /// [`K_WRITE_READ_LOCAL`] only misleads its own process): counted.
    fn write_read_local(&mut self, c: ConnId, body: &[u8], fds: Vec<OwnedFd>) -> bool {
        let idle = self
            .state
            .threads
            .get(&c)
            .is_some_and(|t| t.pending.is_none());
        let Some(req) = read_body_prefix::<WriteReadReq>(body).filter(|_| idle) else {
            return false;
        };
        // The answer given is a read from 0 with room for the completion, as the kernel's.
        let room = (4 + TXN_RECORD) as u64;
        if req.read_consumed != 0 || req.read_size < room || req.write_consumed > req.write_size {
            return false;
        }
        let stream = &body[size_of::<WriteReadReq>()..];
        let write_only = WriteReadReq {
            read_size: 0,
            ..req
        };
        let done = self.state.write_read(c, stream, &write_only, fds);
        let whole = done.is_some_and(|d| d.errno == 0 && d.write_consumed == req.write_size)
            && !self.may_spawn_looper(c);
        let head = self
            .state
            .threads
            .get(&c)
            .and_then(|t| t.todo.front().copied());
        let mut kept = false;
        if whole && matches!(head, Some(Work::Complete | Work::ReturnError)) {
            // Room for one item after a BR_NOOP already counted as read: the thread's head
            // and nothing else; non-blocking, so it never parks.
            let one = WriteReadReq {
                write_consumed: req.write_size,
                write_size: req.write_size,
                read_consumed: 4,
                read_size: room,
                nonblock: 1,
                reserved: 0,
            };
            let got = self.state.write_read(c, &[], &one, Vec::new());
            self.state.stats.br[(BR_NOOP & 0x1f) as usize] += 1;
            kept = got.is_some_and(|d| {
                d.errno == 0
                    && d.read == BR_TRANSACTION_COMPLETE.to_ne_bytes()
                    && d.fixups.is_empty()
                    && d.close.is_empty()
            });
        }
        if kept {
            self.stats.local_completes += 1;
        } else {
            self.stats.local_contradicted += 1;
        }
        self.run_wakes();
        true
    }

    /// Whether a read of thread `c` that returns now could end in `BR_SPAWN_LOOPER` (the
    /// kernel's test at the end of `binder_thread_read`), which a device's own answer
    /// cannot hold.
    fn may_spawn_looper(&self, c: ConnId) -> bool {
        let Some(t) = self.state.threads.get(&c) else {
            return false;
        };
        self.state.procs.get(&t.proc).is_some_and(|p| {
            p.requested_threads == 0
                && self.state.waiting_thread(t.proc).is_none()
                && p.requested_threads_started < p.max_threads
                && t.looper & (LOOPER_REGISTERED | LOOPER_ENTERED) != 0
        })
    }

    /// A read parked after this call freed a buffer holding an FDA: the kernel closes those
    /// fds in the freeing thread's process before the call returns, and sets
    /// `looper_need_return` so the read returns at once (a lone `BR_NOOP` when nothing else
    /// is pending). The same here: the parked read completes now, with the close list.
    fn finish_after_free(&mut self, c: ConnId) -> Option<WriteReadDone> {
        let t = self.state.threads.get_mut(&c)?;
        if t.close_fds.is_empty() {
            return None;
        }
        t.need_return = true;
        self.state.retry_read(c)
    }

    fn reply_write_read(&mut self, c: ConnId, mut done: WriteReadDone) {
        // FDA fds of buffers this call freed close within this call, read or not.
        if let Some(t) = self.state.threads.get_mut(&c) {
            done.close.append(&mut t.close_fds);
        }
        let ret = WriteReadRet {
            errno: done.errno,
            nfixups: done.fixups.len() as u32,
            write_consumed: done.write_consumed,
            read_consumed: done.read_consumed,
            read_len: done.read.len() as u32,
            nclose: done.close.len() as u32,
        };
        let mut tail = Vec::with_capacity(done.fixups.len() * 8 + done.close.len() * 4);
        let mut fds = Vec::with_capacity(done.fixups.len());
        for (off, fd) in done.fixups {
            tail.extend_from_slice(&off.to_ne_bytes());
            fds.push(fd);
        }
        for n in done.close {
            tail.extend_from_slice(&n.to_ne_bytes());
        }
        let flags = if self.hands_parked_call(c, &done.read) {
            RET_CALLER_PARKED
        } else {
            0
        };
        self.send_flagged(
            c,
            K_WRITE_READ_RET,
            flags,
            &[bytemuck::bytes_of(&ret), &done.read, &tail],
            fds,
        );
    }

    /// Whether `read` hands thread `c` a sync call whose caller is parked in a blocking
    /// read for its reply, with that call on top of its stack, and leaves nothing on the
    /// thread's own list (which its next read would return ahead of the reply's completion)
    /// ([`RET_CALLER_PARKED`]).
    fn hands_parked_call(&self, c: ConnId, read: &[u8]) -> bool {
        if !hands_sync_call(read) {
            return false;
        }
        let Some(id) = self
            .state
            .threads
            .get(&c)
            .filter(|t| t.todo.is_empty())
            .and_then(|t| t.stack)
        else {
            return false;
        };
        let Some(x) = self.state.txns.get(&id).filter(|x| x.to_thread == Some(c)) else {
            return false;
        };
        x.from
            .and_then(|f| self.state.threads.get(&f))
            .is_some_and(|t| t.pending.is_some() && t.stack == Some(id))
    }

    /// Completes the parked reads the state woke.
    pub(super) fn run_wakes(&mut self) {
        while let Some(c) = self.state.wake.pop() {
            if let Some(done) = self.state.retry_read(c) {
                self.reply_write_read(c, done);
            }
        }
    }

    /// Starts a new turn: the connections that used up the last one, in order, each with a
    /// fresh frame budget. The caller handles their buffered input
    /// ([`receive_buffered`](Self::receive_buffered)) and reads their sockets.
    pub(super) fn next_turn(&mut self) -> Vec<ConnId> {
        let busy = std::mem::take(&mut self.busy);
        for c in &busy {
            if let Some(k) = self.conns.get_mut(c) {
                k.yielded = false;
                k.turn_frames = 0;
            }
        }
        busy
    }

    /// Whether some connection waits for its next turn.
    pub(super) fn has_busy(&self) -> bool {
        !self.busy.is_empty()
    }

    /// Whether `c` may be read now (not paused for its output, not waiting for its turn,
    /// not dead); a connection that may starts a fresh turn.
    fn start_turn(&mut self, c: ConnId) -> bool {
        match self.conns.get_mut(&c) {
            Some(k) if !k.paused && !k.yielded && !k.dead => {
                k.turn_frames = 0;
                true
            }
            _ => false,
        }
    }

    /// Whether `c`, paused for its output, has drained to half its cap: it is resumed (its
    /// buffered input must then be handled, and its socket read).
    pub(super) fn resume_if_drained(&mut self, c: ConnId) -> bool {
        let half = self.limits.out_bytes_per_conn / 2;
        let budget = self.limits.out_bytes_per_uid;
        let Some(k) = self.conns.get_mut(&c) else {
            return false;
        };
        let uid_out = self.out_by_uid.get(&(k.uid as u64)).copied().unwrap_or(0);
        let q = k.out.queued();
        match k {
            k if k.paused && !k.dead && q <= half && (q == 0 || uid_out < budget) => {
                k.paused = false;
                true
            }
            _ => false,
        }
    }

    /// Removes dead connections: a proc connection's end is process exit, a thread's is
    /// thread exit. Returns the sockets of the removed connections.
    pub(super) fn reap(&mut self) -> Vec<UnixStream> {
        let mut socks = Vec::new();
        loop {
            let dead: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, k)| k.dead)
                .map(|(&c, _)| c)
                .collect();
            if dead.is_empty() {
                return socks;
            }
            for c in dead {
                if let Some(sock) = self.remove(c) {
                    socks.push(sock);
                }
                self.run_wakes();
            }
        }
    }

    /// Removes connection `c` and releases what its role held.
    fn remove(&mut self, c: ConnId) -> Option<UnixStream> {
        let conn = self.conns.remove(&c)?;
        self.stats.reaped += 1;
        if conn.out.bytes.capacity() > KEEP || conn.inbuf.capacity() > KEEP || conn.out.grew {
            self.trim = true;
        }
        let uid = conn.uid as u64;
        if let Some(n) = self.conns_by_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.conns_by_uid.remove(&uid);
            }
        }
        if let Some(n) = self.out_by_uid.get_mut(&uid) {
            *n = n.saturating_sub(conn.out.queued());
            if *n == 0 {
                self.out_by_uid.remove(&uid);
            }
        }
        if let Some(n) = self.in_by_uid.get_mut(&uid) {
            *n = n.saturating_sub(conn.inbuf.len());
            if *n == 0 {
                self.in_by_uid.remove(&uid);
            }
        }
        match conn.role {
            Role::Proc(p) => self.release_proc(p),
            Role::Thread(_) => self.state.release_thread(c),
            Role::New => {}
        }
        conn.sock
    }

    fn release_proc(&mut self, p: ProcId) {
        if let Some(token) = self.state.procs.get(&p).map(|p| p.token) {
            self.tokens.remove(&token);
        }
        let threads: Vec<ConnId> = self
            .state
            .procs
            .get(&p)
            .map(|p| p.threads.iter().copied().collect())
            .unwrap_or_default();
        self.state.release_proc(p);
        for t in threads {
            if let Some(k) = self.conns.get_mut(&t) {
                k.role = Role::New;
                k.dead = true;
            }
        }
    }

    /// `n` bytes of `c`'s queued answers left (sent, collected or dropped).
    pub(super) fn out_sent(&mut self, c: ConnId, n: usize) {
        let Some(uid) = self.conns.get(&c).map(|k| k.uid as u64) else {
            return;
        };
        if let Some(t) = self.out_by_uid.get_mut(&uid) {
            *t = t.saturating_sub(n);
            if *t == 0 {
                self.out_by_uid.remove(&uid);
            }
        }
    }

    /// Whether freed heap should be given back (a connection with large buffers went away).
    pub(super) fn take_trim(&mut self) -> bool {
        std::mem::take(&mut self.trim)
    }

    /// The state dump with the connection layer's section.
    pub(super) fn dump(&self) -> String {
        let mut o = super::dump::dump(&self.state);
        let s = &self.stats;
        let l = &self.limits;
        let _ = writeln!(o, "shim connections:");
        let _ = writeln!(
            o,
            "  open {} accepted {} reaped {} protocol errors {}",
            self.conns.len(),
            s.accepted,
            s.reaped,
            s.protocol_errors
        );
        let _ = writeln!(
            o,
            "  refused: conns per uid {} (cap {}) fd limit {} procs per uid {} (cap {}) input per uid {} (cap {} bytes)",
            s.refused_conns_per_uid,
            l.conns_per_uid,
            s.refused_fd_limit,
            s.refused_procs_per_uid,
            l.procs_per_uid,
            s.refused_input_per_uid,
            l.in_bytes_per_uid,
        );
        let queued: usize = self.conns.values().map(|k| k.out.queued()).sum();
        let paused = self.conns.values().filter(|k| k.paused).count();
        let _ = writeln!(
            o,
            "  output: queued {queued} bytes, peak {} on one connection (cap {}, {} per uid), stalls {} ({paused} paused now)",
            s.peak_output, l.out_bytes_per_conn, l.out_bytes_per_uid, s.output_stalls
        );
        let _ = writeln!(
            o,
            "  fairness: turns yielded {} (at {FRAMES_PER_TURN} frames), {} waiting now",
            s.yields,
            self.busy.len()
        );
        let _ = writeln!(
            o,
            "  replies completed by the device: {} (contradicted {})",
            s.local_completes, s.local_contradicted
        );
        o
    }
}

fn result_body(r: Result<i32, Errno>) -> ResultBody {
    match r {
        Ok(v) => ResultBody { errno: 0, value: v },
        Err(e) => ResultBody {
            errno: e as i32,
            value: 0,
        },
    }
}

fn read_body<T: bytemuck::Pod>(body: &[u8]) -> Option<T> {
    (body.len() == size_of::<T>()).then(|| bytemuck::pod_read_unaligned(body))
}

fn read_body_prefix<T: bytemuck::Pod>(body: &[u8]) -> Option<T> {
    body.get(..size_of::<T>()).map(bytemuck::pod_read_unaligned)
}

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    core: Core,
    next: usize,
    stop: Arc<AtomicBool>,
    /// The read buffer, kept between reads.
    rbuf: Vec<u8>,
    /// The control-message buffer for reads.
    cmsg: Vec<u8>,
    /// A spare fd, given up to accept (and refuse) a connection when the fd table is full.
    spare: Option<std::fs::File>,
}

fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl Server {
    /// A server listening on `listener` under `limits`; returns it and the waker that
    /// interrupts it.
    pub fn new(
        listener: std::os::unix::net::UnixListener,
        stop: Arc<AtomicBool>,
        limits: Limits,
    ) -> std::io::Result<(Server, Arc<Waker>)> {
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok((
            Server {
                poll,
                listener,
                core: Core::new(limits, false),
                next: 2,
                stop,
                rbuf: vec![0u8; READ_BUF],
                cmsg: cmsg_buffer(),
                spare: open_spare(),
            },
            waker,
        ))
    }

    /// Runs until the stop flag is set and the waker fires.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            // A connection waiting for its turn: look for others' events without blocking.
            let timeout = self.core.has_busy().then_some(std::time::Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        if self.stop.load(Ordering::Acquire) {
                            return Ok(());
                        }
                    }
                    Token(c) => {
                        let hup = ev.is_read_closed() || ev.is_error();
                        if ev.is_readable() || hup {
                            self.read_conn(ThreadId(c), hup);
                        }
                        if ev.is_writable() || hup {
                            self.flush(ThreadId(c));
                        }
                    }
                }
                self.settle();
            }
            self.next_turn();
        }
    }

    /// Gives each connection that used up its last turn one more (its buffered frames,
    /// then its socket), after the ready connections had theirs.
    fn next_turn(&mut self) {
        for c in self.core.next_turn() {
            self.core.receive_buffered(c);
            // Read to the end (EAGAIN or end of stream): the edge that announced more
            // input, or a hang-up, came while it waited.
            self.read_conn(c, true);
            self.settle();
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => self.admit(sock),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // Interrupted, or a connection that went before it was taken: go on.
                Err(e)
                    if e.kind() == std::io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.refuse_at_fd_limit() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// The fd table is full: the spare fd makes room to accept one connection and tell it
    /// so, instead of leaving it (and every later one) waiting in the backlog.
    fn refuse_at_fd_limit(&mut self) -> bool {
        if self.spare.take().is_none() {
            return false;
        }
        let ok = match self.listener.accept() {
            Ok((sock, _)) => {
                self.core.stats.refused_fd_limit += 1;
                refuse(&sock, Errno::EMFILE);
                true
            }
            Err(_) => false,
        };
        self.spare = open_spare();
        ok
    }

    fn admit(&mut self, mut sock: UnixStream) {
        let Ok(cred) = getsockopt(&sock.as_fd(), sockopt::PeerCredentials) else {
            return;
        };
        if let Err(e) = self.core.admit(cred.uid()) {
            refuse(&sock, e);
            return;
        }
        let id = self.next;
        self.next += 1;
        if self
            .poll
            .registry()
            .register(&mut sock, Token(id), Interest::READABLE)
            .is_err()
        {
            return;
        }
        self.core
            .add(ThreadId(id), Some(sock), cred.pid(), cred.uid());
    }

    /// Reads what `c` sent and handles its frames. `hup`: the peer hung up (or failed), so
    /// read on to the end of its stream.
    fn read_conn(&mut self, c: ConnId, hup: bool) {
        // One read buffer for the whole loop (taken out while frames borrow it).
        let mut buf = std::mem::take(&mut self.rbuf);
        if buf.len() < READ_BUF {
            buf.resize(READ_BUF, 0);
        }
        let mut fds = Vec::new();
        if !self.core.start_turn(c) && !hup {
            self.rbuf = buf;
            return;
        }
        while let Some(conn) = self.core.conns.get_mut(&c) {
            if conn.paused || conn.dead || conn.yielded {
                break;
            }
            let Some(sock) = conn.sock.as_ref() else {
                break;
            };
            match recv_some_with(
                sock.as_fd(),
                &mut buf,
                &mut self.cmsg,
                &mut fds,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => {
                    // End of stream, whatever came before it: a half-sent frame and its fds
                    // go with the connection.
                    self.core.hang_up(c);
                    break;
                }
                Ok(n) => {
                    let got_fds = !fds.is_empty();
                    self.core.receive(c, &buf[..n], std::mem::take(&mut fds));
                    // A stream read shorter than the buffer, with no fds, took everything
                    // queued (a read stops early only after a message with fds, or between
                    // writers of different credentials, which one connection does not
                    // have): no need for the read that would say EAGAIN, unless the peer
                    // hung up, whose end of stream comes on no new edge.
                    if n < buf.len() && !got_fds && !hup {
                        break;
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    drop(std::mem::take(&mut fds));
                    self.core.hang_up(c);
                    break;
                }
            }
        }
        self.rbuf = buf;
    }

    /// Sends the answers of every connection that got some, in order.
    fn flush_dirty(&mut self) {
        while !self.core.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.core.dirty);
            for c in dirty {
                if let Some(k) = self.core.conns.get_mut(&c) {
                    k.dirty = false;
                }
                self.flush(c);
            }
            self.core.run_wakes();
        }
    }

    /// Sends what `c` has queued; watches for writability while some is left; resumes a
    /// paused connection once drained.
    fn flush(&mut self, c: ConnId) {
        let Some(conn) = self.core.conns.get_mut(&c) else {
            return;
        };
        let Some(sock) = conn.sock.as_mut() else {
            return;
        };
        let before = conn.out.queued();
        while conn.out.queued() > 0 {
            let (range, fds) = conn.out.next_piece();
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let cm = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cm };
            let iov = [IoSlice::new(&conn.out.bytes[range])];
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, flags, None) {
                Ok(n) => conn.out.advance(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    conn.out.clear();
                    conn.dead = true;
                    break;
                }
            }
        }
        let left = conn.out.queued();
        let want = left > 0 && !conn.dead;
        if want != conn.want_write {
            conn.want_write = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self.poll.registry().reregister(sock, Token(c.0), interest);
        }
        self.core.out_sent(c, before - left);
        if self.core.resume_if_drained(c) {
            self.core.receive_buffered(c);
            self.read_conn(c, true);
        }
    }

    /// What follows every event: woken reads complete, answers go out, dead connections
    /// are reaped (which may wake and answer others, or find more dead), until nothing moves.
    fn settle(&mut self) {
        loop {
            self.core.run_wakes();
            self.flush_dirty();
            let socks = self.core.reap();
            if socks.is_empty() && self.core.dirty.is_empty() {
                return;
            }
            for mut s in socks {
                let _ = self.poll.registry().deregister(&mut s);
            }
            if self.core.take_trim() {
                release_free_memory();
            }
        }
    }
}

/// Tells a connection it is refused (a [`K_RESULT`] with `errno`, which every client reads
/// in place of the answer it waits for); it is then closed.
fn refuse(sock: &UnixStream, errno: Errno) {
    let body = result_body(Err(errno));
    let mut q = OutQueue::default();
    q.push_frame(K_RESULT, &[bytemuck::bytes_of(&body)], Vec::new());
    // A fresh socket's buffer takes 24 bytes at once; if not, the close alone tells.
    let _ = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&q.bytes)],
        &[],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

/// Gives freed heap back to the system once no connection is left (the allocator keeps
/// freed chunks otherwise, and a flood's answers would stay resident).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fuzzing::{frame_bytes, Harness};
    use crate::binder_ipc::protocol::wire::*;
    use crate::binder_ipc::uapi::*;

    /// A binder thread of a new process on `h` (pid 1, uid 0).
    fn thread(h: &mut Harness) -> super::super::fuzzing::ConnHandle {
        thread_of(h, 1)
    }

    /// A binder thread of a new process of OS process `pid` on `h`.
    fn thread_of(h: &mut Harness, pid: i32) -> super::super::fuzzing::ConnHandle {
        let (p, token) = h.open_proc(pid, 0);
        h.feed(
            p,
            &frame_bytes(K_MAP_DONE, &0u64.to_ne_bytes(), 0),
            Vec::new(),
        );
        let t = h.connect(pid, 0).unwrap();
        h.feed(
            t,
            &frame_bytes(K_OPEN_THREAD, &token.to_ne_bytes(), 0),
            Vec::new(),
        );
        t
    }

    /// A `K_WRITE_READ` of `write` with a blocking read of 256 bytes (none: `read_size` 0).
    fn write_read(write: &[u8], read: bool) -> Vec<u8> {
        let req = WriteReadReq {
            write_size: write.len() as u64,
            read_size: if read { 256 } else { 0 },
            ..Default::default()
        };
        let mut body = bytemuck::bytes_of(&req).to_vec();
        body.extend_from_slice(write);
        frame_bytes(K_WRITE_READ, &body, 0)
    }

    /// The header flags of the `K_WRITE_READ_RET` that hands the context manager a call
    /// from a caller that reads its reply in the same call (`parked`) or writes only.
    fn flags_of_handed_call(parked: bool) -> u32 {
        let mut h = Harness::new();
        let mgr = thread_of(&mut h, 1);
        let ioctl = Ioctl {
            cmd: BINDER_SET_CONTEXT_MGR,
            ..Default::default()
        };
        h.feed(
            mgr,
            &frame_bytes(K_IOCTL, bytemuck::bytes_of(&ioctl), 0),
            Vec::new(),
        );
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        // The ioctl cleared the new thread's looper_need_return: the read parks.
        assert!(h
            .feed(mgr, &write_read(w.as_bytes(), true), Vec::new())
            .is_empty());
        let client = thread_of(&mut h, 2);
        // An ioctl first: a new thread's first read returns at once (looper_need_return),
        // so its caller would not wait in it.
        let version = Ioctl {
            cmd: BINDER_VERSION,
            ..Default::default()
        };
        h.feed(
            client,
            &frame_bytes(K_IOCTL, bytemuck::bytes_of(&version), 0),
            Vec::new(),
        );
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &BinderTransactionData::default());
        // The record a device puts after each transaction command: nothing gathered.
        let mut stream = w.as_bytes().to_vec();
        stream.extend_from_slice(bytemuck::bytes_of(&Gathered::default()));
        let answers = h.feed(client, &write_read(&stream, parked), Vec::new());
        let handed = answers
            .iter()
            .find(|a| a.conn == mgr)
            .unwrap_or_else(|| panic!("the call reaches the manager: {answers:?}"));
        assert!(hands_sync_call(
            &handed.body[std::mem::size_of::<WriteReadRet>()..]
        ));
        handed.header.reserved
    }

    /// A call handed over while its caller waits for the reply in the same call is flagged
    /// (the replier's device may then answer the reply itself); one from a caller that only
    /// wrote is not (it could start another call before reading the reply).
    #[test]
    fn a_call_is_flagged_only_when_its_caller_is_parked() {
        assert_eq!(flags_of_handed_call(true), RET_CALLER_PARKED);
        assert_eq!(flags_of_handed_call(false), 0);
    }

    fn local(stream: &[u8], read_size: u64) -> Vec<u8> {
        let req = WriteReadReq {
            write_consumed: 0,
            write_size: stream.len() as u64,
            read_consumed: 0,
            read_size,
            nonblock: 0,
            reserved: 0,
        };
        let mut body = bytemuck::bytes_of(&req).to_vec();
        body.extend_from_slice(stream);
        frame_bytes(K_WRITE_READ_LOCAL, &body, 0)
    }

    /// A `K_WRITE_READ_LOCAL` whose thread has no completion to take (no reply in its
    /// write) is counted as contradicted, answered with nothing, and the thread lives on; a
    /// reply without a call (BR_FAILED_REPLY for the replier) is contradicted too and does
    /// not stay queued; one whose read has no room for the completion, or that starts
    /// inside the read, is a protocol error.
    #[test]
    fn a_local_write_read_the_shim_cannot_back_is_counted_not_answered() {
        let mut h = Harness::new();
        let t = thread(&mut h);
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        assert!(h.feed(t, &local(w.as_bytes(), 256), Vec::new()).is_empty());
        let mut w = CommandWriter::new();
        w.cmd_with(BC_REPLY, &BinderTransactionData::default());
        assert!(h.feed(t, &local(w.as_bytes(), 256), Vec::new()).is_empty());
        assert!(h.is_open(t));
        let dump = h.dump();
        assert!(
            dump.contains("replies completed by the device: 0 (contradicted 2)"),
            "{dump}"
        );
        // Nothing was left on the thread's list: a non-blocking read finds no work.
        let req = WriteReadReq {
            read_size: 256,
            nonblock: 1,
            ..Default::default()
        };
        let a = h.feed(
            t,
            &frame_bytes(K_WRITE_READ, bytemuck::bytes_of(&req), 0),
            Vec::new(),
        );
        let ret: WriteReadRet =
            bytemuck::pod_read_unaligned(&a[0].body[..std::mem::size_of::<WriteReadRet>()]);
        assert_eq!(ret.errno, nix::errno::Errno::EAGAIN as i32, "{a:?}");
        // No room for the completion: refused.
        assert!(h.feed(t, &local(&[], 8), Vec::new()).is_empty());
        assert!(!h.is_open(t));
    }
}
