//! The shim's event loop: one mio `Poll` owns every connection and the whole [`State`];
//! nothing in it blocks. Frames come in with their fds, go to the state, and answers go
//! out through per-connection queues.

use super::alloc::Area;
use super::state::{ConnId, IdMap, State, WriteReadDone};
use crate::binder_ipc::protocol::wire::*;
use crate::binder_ipc::uapi::*;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Bytes one read takes from a connection.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    New,
    Proc(u64),
    Thread(u64),
}

/// A piece of output: bytes with fds riding on their first byte.
struct Piece {
    bytes: Vec<u8>,
    pos: usize,
    fds: Vec<OwnedFd>,
}

struct Conn {
    sock: UnixStream,
    pid: i32,
    uid: u32,
    role: Role,
    inbuf: Vec<u8>,
    infds: VecDeque<OwnedFd>,
    out: VecDeque<Piece>,
    want_write: bool,
    dead: bool,
}

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    conns: IdMap<ConnId, Conn>,
    tokens: IdMap<u64, u64>,
    state: State,
    next: usize,
    stop: Arc<AtomicBool>,
    /// The read buffer, kept between reads.
    rbuf: Vec<u8>,
    /// The control-message buffer for reads.
    cmsg: Vec<u8>,
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

impl Server {
    /// A server listening on `listener`; returns it and the waker that interrupts it.
    pub fn new(
        listener: std::os::unix::net::UnixListener,
        stop: Arc<AtomicBool>,
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
                conns: IdMap::default(),
                tokens: IdMap::default(),
                state: State::default(),
                next: 2,
                stop,
                rbuf: vec![0u8; READ_BUF],
                cmsg: cmsg_buffer(),
            },
            waker,
        ))
    }

    /// Runs until the stop flag is set and the waker fires.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
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
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(c);
                        }
                        if ev.is_writable() {
                            self.flush(c);
                        }
                    }
                }
                self.run_wakes();
                self.reap();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, _)) => {
                    let cred = match getsockopt(&sock.as_fd(), sockopt::PeerCredentials) {
                        Ok(c) => c,
                        Err(_) => continue,
                    };
                    let id = self.next;
                    self.next += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, Token(id), Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        id,
                        Conn {
                            sock,
                            pid: cred.pid(),
                            uid: cred.uid(),
                            role: Role::New,
                            inbuf: Vec::new(),
                            infds: VecDeque::new(),
                            out: VecDeque::new(),
                            want_write: false,
                            dead: false,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_conn(&mut self, c: ConnId) {
        // One read buffer for the whole loop (taken out while frames borrow it).
        let mut buf = std::mem::take(&mut self.rbuf);
        if buf.len() < READ_BUF {
            buf.resize(READ_BUF, 0);
        }
        let mut fds = Vec::new();
        while let Some(conn) = self.conns.get_mut(&c) {
            match recv_some_with(
                conn.sock.as_fd(),
                &mut buf,
                &mut self.cmsg,
                &mut fds,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => {
                    conn.dead = true;
                    break;
                }
                Ok(n) => {
                    let got_fds = !fds.is_empty();
                    conn.infds.extend(fds.drain(..));
                    if conn.inbuf.is_empty() {
                        // Whole frames straight from the read buffer; only a partial tail
                        // is kept.
                        let used = self.frames(c, &buf[..n]);
                        if let Some(conn) = self.conns.get_mut(&c) {
                            conn.inbuf.extend_from_slice(&buf[used..n]);
                        }
                    } else {
                        conn.inbuf.extend_from_slice(&buf[..n]);
                        let inbuf = std::mem::take(&mut conn.inbuf);
                        let used = self.frames(c, &inbuf);
                        if let Some(conn) = self.conns.get_mut(&c) {
                            let mut inbuf = inbuf;
                            inbuf.drain(..used);
                            conn.inbuf = inbuf;
                        }
                    }
                    // A stream read shorter than the buffer, with no fds, took everything
                    // queued (a read stops early only after a message with fds, or between
                    // writers of different credentials, which one thread's connection does
                    // not have): no need for the read that would say EAGAIN. Data that
                    // arrives later is a new edge for the poll.
                    if n < buf.len() && !got_fds {
                        break;
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    conn.infds.extend(fds.drain(..));
                    conn.dead = true;
                    break;
                }
            }
        }
        self.rbuf = buf;
    }

    /// Handles the whole frames at the front of `bytes` in order; returns how many bytes they
    /// took. A malformed header or a refused frame marks the connection dead.
    fn frames(&mut self, c: ConnId, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&c) else {
                return bytes.len();
            };
            let rest = &bytes[at..];
            if rest.len() < size_of::<FrameHeader>() {
                return at;
            }
            let hdr: FrameHeader = bytemuck::pod_read_unaligned(&rest[..16]);
            if hdr.len as usize > MAX_FRAME || hdr.nfds as usize > 1 << 20 {
                conn.dead = true;
                return bytes.len();
            }
            let total = 16 + hdr.len as usize;
            if rest.len() < total {
                return at;
            }
            if conn.infds.len() < hdr.nfds as usize {
                // Every fd rides on the frame's own bytes: missing ones mean a lying header.
                conn.dead = true;
                return bytes.len();
            }
            let fds: Vec<OwnedFd> = conn.infds.drain(..hdr.nfds as usize).collect();
            at += total;
            if !self.frame(c, &hdr, &rest[16..total], fds) {
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.dead = true;
                }
                return bytes.len();
            }
        }
    }

    fn send(&mut self, c: ConnId, kind: u32, parts: &[&[u8]], fds: Vec<OwnedFd>) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let hdr = FrameHeader {
            len: len as u32,
            kind,
            nfds: fds.len() as u32,
            reserved: 0,
        };
        let hdr_bytes = bytemuck::bytes_of(&hdr);
        let total = 16 + len;
        // Fast path: nothing queued, fds fit one message: send straight from the parts and
        // queue only what the socket did not take.
        if conn.out.is_empty() && fds.len() <= MAX_FDS_PER_MSG && parts.len() < 4 {
            let mut iov = [IoSlice::new(&[]); 4];
            iov[0] = IoSlice::new(hdr_bytes);
            for (i, p) in parts.iter().enumerate() {
                iov[i + 1] = IoSlice::new(p);
            }
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let cm = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cm };
            let sent = match sendmsg::<()>(
                conn.sock.as_raw_fd(),
                &iov[..parts.len() + 1],
                cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => Some(n),
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => None,
                Err(_) => {
                    conn.dead = true;
                    return;
                }
            };
            // Our copies of sent fds close here; the peer holds its own.
            let (pos, fds) = match sent {
                Some(n) => (n, Vec::new()),
                None => (0, fds),
            };
            if pos == total {
                return;
            }
            let mut bytes = Vec::with_capacity(total - pos);
            let mut skip = pos;
            for part in std::iter::once(hdr_bytes).chain(parts.iter().copied()) {
                let from = skip.min(part.len());
                skip -= from;
                bytes.extend_from_slice(&part[from..]);
            }
            conn.out.push_back(Piece { bytes, pos: 0, fds });
            self.flush(c);
            return;
        }
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(hdr_bytes);
        for p in parts {
            bytes.extend_from_slice(p);
        }
        // fds in pieces of at most MAX_FDS_PER_MSG, each on its own byte; the last piece
        // carries the rest of the bytes.
        let mut fds = fds;
        let mut pos = 0;
        while fds.len() > MAX_FDS_PER_MSG && pos + 1 < bytes.len() {
            let rest = fds.split_off(MAX_FDS_PER_MSG);
            conn.out.push_back(Piece {
                bytes: bytes[pos..pos + 1].to_vec(),
                pos: 0,
                fds,
            });
            fds = rest;
            pos += 1;
        }
        conn.out.push_back(Piece { bytes, pos, fds });
        self.flush(c);
    }

    fn flush(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        while let Some(p) = conn.out.front_mut() {
            let raw: Vec<RawFd> = p.fds.iter().map(|f| f.as_raw_fd()).collect();
            let cm = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cm };
            let iov = [IoSlice::new(&p.bytes[p.pos..])];
            match sendmsg::<()>(
                conn.sock.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => {
                    p.pos += n;
                    p.fds.clear();
                    if p.pos == p.bytes.len() {
                        conn.out.pop_front();
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    conn.out.clear();
                    conn.dead = true;
                    break;
                }
            }
        }
        let want = !conn.out.is_empty();
        if want != conn.want_write {
            conn.want_write = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.sock, Token(c), interest);
        }
    }

    fn result(&mut self, c: ConnId, r: Result<i32, Errno>) {
        let body = match r {
            Ok(v) => ResultBody { errno: 0, value: v },
            Err(e) => ResultBody {
                errno: e as i32,
                value: 0,
            },
        };
        self.send(c, K_RESULT, &[bytemuck::bytes_of(&body)], Vec::new());
    }

    /// Handles one frame; false closes the connection (protocol error).
    fn frame(&mut self, c: ConnId, hdr: &FrameHeader, body: &[u8], fds: Vec<OwnedFd>) -> bool {
        let Some(conn) = self.conns.get(&c) else {
            return false;
        };
        let (role, pid, uid) = (conn.role, conn.pid, conn.uid);
        match (role, hdr.kind) {
            (Role::New, K_OPEN_PROC) => {
                let Some(req) = read_body::<OpenProc>(body) else {
                    return false;
                };
                if req.version != WIRE_VERSION {
                    let ok = OpenProcOk {
                        errno: Errno::EPROTO as i32,
                        ..Default::default()
                    };
                    self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], Vec::new());
                    return true;
                }
                match Area::new(req.area_size as usize).and_then(|a| {
                    a.memfd()
                        .try_clone()
                        .map(|fd| (a, fd))
                        .map_err(|_| Errno::EMFILE)
                }) {
                    Ok((area, memfd)) => {
                        let size = area.size() as u64;
                        let token = random_u64();
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
                        let ok = OpenProcOk {
                            errno: e as i32,
                            ..Default::default()
                        };
                        self.send(c, K_OPEN_PROC_OK, &[bytemuck::bytes_of(&ok)], Vec::new());
                    }
                }
                true
            }
            (Role::Proc(p), K_MAP_DONE) => {
                let Some(base) = read_body::<u64>(body) else {
                    return false;
                };
                if let Some(proc) = self.state.procs.get_mut(&p) {
                    proc.area.client_base = base;
                    proc.mapped = true;
                }
                self.result(c, Ok(0));
                true
            }
            (Role::New, K_OPEN_THREAD) => {
                let Some(token) = read_body::<u64>(body) else {
                    return false;
                };
                let proc = self.tokens.get(&token).copied().filter(|p| {
                    self.state
                        .procs
                        .get(p)
                        .is_some_and(|p| p.pid == pid && p.euid == uid)
                });
                match proc {
                    Some(p) => {
                        self.state.open_thread(c, p);
                        if let Some(conn) = self.conns.get_mut(&c) {
                            conn.role = Role::Thread(p);
                        }
                        self.result(c, Ok(0));
                    }
                    None => self.result(c, Err(Errno::EPERM)),
                }
                true
            }
            (Role::New, K_STATE) => {
                let text = super::dump::dump(&self.state);
                self.send(c, K_STATE_RET, &[text.as_bytes()], Vec::new());
                true
            }
            (Role::Thread(p), K_IOCTL) => {
                let Some(req) = read_body::<Ioctl>(body) else {
                    return false;
                };
                let r = self.ioctl(c, p, &req);
                if let Some(t) = self.state.threads.get_mut(&c) {
                    t.need_return = false;
                }
                self.result(c, r);
                true
            }
            (Role::Thread(_), K_WRITE_READ) => {
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
                if let Some(done) = self.state.write_read(
                    c,
                    stream,
                    req.write_consumed,
                    req.read_consumed,
                    req.read_size,
                    req.nonblock != 0,
                    fds,
                ) {
                    // Threads this call woke are served first, as the kernel wakes the
                    // target before the caller returns: each thread only sees its own
                    // answers, so the order of sends cannot change what any thread reads,
                    // and the woken side (a caller waiting for BR_REPLY) runs sooner.
                    self.run_wakes();
                    self.reply_write_read(c, done);
                }
                true
            }
            _ => false,
        }
    }

    fn ioctl(&mut self, c: ConnId, p: u64, req: &Ioctl) -> Result<i32, Errno> {
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

    fn reply_write_read(&mut self, c: ConnId, done: WriteReadDone) {
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
        self.send(
            c,
            K_WRITE_READ_RET,
            &[bytemuck::bytes_of(&ret), &done.read, &tail],
            fds,
        );
    }

    fn run_wakes(&mut self) {
        while let Some(c) = self.state.wake.pop() {
            if let Some(done) = self.state.retry_read(c) {
                self.reply_write_read(c, done);
            }
        }
    }

    /// Closes dead connections: a proc connection's end is process exit, a thread's is
    /// thread exit.
    fn reap(&mut self) {
        let dead: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, k)| k.dead)
            .map(|(&c, _)| c)
            .collect();
        for c in dead {
            let Some(mut conn) = self.conns.remove(&c) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.sock);
            match conn.role {
                Role::Proc(p) => {
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
                Role::Thread(_) => self.state.release_thread(c),
                Role::New => {}
            }
            self.run_wakes();
        }
        if self.conns.values().any(|k| k.dead) {
            self.reap();
        }
    }
}

fn read_body<T: bytemuck::Pod>(body: &[u8]) -> Option<T> {
    (body.len() == size_of::<T>()).then(|| bytemuck::pod_read_unaligned(body))
}

fn read_body_prefix<T: bytemuck::Pod>(body: &[u8]) -> Option<T> {
    body.get(..size_of::<T>()).map(bytemuck::pod_read_unaligned)
}
