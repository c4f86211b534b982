//! The shim without sockets, for fuzzing and tests: a [`Harness`] owns a shim's state and
//! its connection layer, opens fake connections with any pid and uid, and feeds each raw
//! bytes (and fds) through exactly the frame parsing and dispatch the server runs; the
//! answers come back as frames. Deterministic: the same calls give the same answers (proc
//! tokens are a counter, not random).
//!
//! Not a stable API.
//!
//! ```
//! use bittube::binder_ipc::protocol::wire::*;
//! use bittube::binder_ipc::shim::fuzzing::{frame_bytes, Harness};
//!
//! let mut h = Harness::new();
//! let c = h.connect(1000, 0).unwrap();
//! let open = OpenProc { version: WIRE_VERSION, reserved: 0, area_size: 1 << 20 };
//! let answers = h.feed(c, &frame_bytes(K_OPEN_PROC, bytemuck::bytes_of(&open), 0), Vec::new());
//! assert_eq!(answers[0].header.kind, K_OPEN_PROC_OK);
//! assert_eq!(answers[0].fds.len(), 1); // the area's memfd
//! ```

use super::server::Core;
use super::Limits;
use crate::binder_ipc::protocol::wire::FrameHeader;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// A fake connection of a [`Harness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnHandle(usize);

/// One answer frame the shim queued for a connection.
#[derive(Debug)]
pub struct Answer {
    /// The connection it was queued for.
    pub conn: ConnHandle,
    /// Its header.
    pub header: FrameHeader,
    /// Its body.
    pub body: Vec<u8>,
    /// The fds that rode on it.
    pub fds: Vec<OwnedFd>,
}

/// A shim's state and connection layer, driven by calls instead of sockets.
pub struct Harness {
    core: Core,
    next: usize,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Harness {{ conns: {} }}", self.core.conns.len())
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A fresh shim with the default [`Limits`].
    pub fn new() -> Harness {
        Self::with_limits(Limits::default())
    }

    /// A fresh shim with `limits`.
    pub fn with_limits(limits: Limits) -> Harness {
        Harness {
            core: Core::new(limits, true),
            next: 2,
        }
    }

    /// Opens a connection whose peer is `pid`, `uid` (as `SO_PEERCRED` would say); the
    /// errno the server would refuse it with otherwise.
    pub fn connect(&mut self, pid: i32, uid: u32) -> Result<ConnHandle, Errno> {
        self.core.admit(uid)?;
        let id = self.next;
        self.next += 1;
        self.core.add(id, None, pid, uid);
        Ok(ConnHandle(id))
    }

    /// Delivers `bytes` (with `fds` riding on them) on `conn`, as one read of its socket,
    /// then runs what the server runs after every event (woken reads, reaping). Returns every
    /// answer queued meanwhile, on any connection, in order per connection.
    pub fn feed(&mut self, conn: ConnHandle, bytes: &[u8], fds: Vec<OwnedFd>) -> Vec<Answer> {
        self.core.receive(conn.0, bytes, fds);
        self.settle()
    }

    /// The peer of `conn` closes its end (process or thread exit).
    pub fn close(&mut self, conn: ConnHandle) -> Vec<Answer> {
        self.core.hang_up(conn.0);
        self.settle()
    }

    /// Whether `conn` is still open (a protocol error or a close ends it).
    pub fn is_open(&self, conn: ConnHandle) -> bool {
        self.core.conns.get(&conn.0).is_some_and(|k| !k.dead)
    }

    /// Bytes of answers queued for `conn` and not yet collected (always 0 after a call:
    /// every call collects them).
    pub fn queued(&self, conn: ConnHandle) -> usize {
        self.core.conns.get(&conn.0).map_or(0, |k| k.out.queued())
    }

    /// The state dump, as `bittube state` shows it.
    pub fn dump(&self) -> String {
        self.core.dump()
    }

    /// Runs woken reads, collects the answers (as if every client read them at once, which
    /// resumes paused connections) and reaps dead connections.
    fn settle(&mut self) -> Vec<Answer> {
        let mut answers = Vec::new();
        loop {
            self.core.run_wakes();
            while !self.core.dirty.is_empty() {
                for c in std::mem::take(&mut self.core.dirty) {
                    self.collect(c, &mut answers);
                    if self.core.resume_if_drained(c) {
                        self.core.receive_buffered(c);
                    }
                }
                self.core.run_wakes();
            }
            drop(self.core.reap());
            if self.core.dirty.is_empty() {
                return answers;
            }
        }
    }

    fn collect(&mut self, c: usize, answers: &mut Vec<Answer>) {
        let Some(k) = self.core.conns.get_mut(&c) else {
            return;
        };
        k.clear_dirty();
        let (bytes, fds) = k.out.take_all();
        let mut fds = fds.into_iter().peekable();
        let mut at = 0;
        while let Some(h) = bytes.get(at..at + 16) {
            let header: FrameHeader = bytemuck::pod_read_unaligned(h);
            let end = (at + 16 + header.len as usize).min(bytes.len());
            let mut frame_fds = Vec::new();
            while let Some((_, group)) = fds.next_if(|(p, _)| *p < end) {
                frame_fds.extend(group);
            }
            answers.push(Answer {
                conn: ConnHandle(c),
                header,
                body: bytes[at + 16..end].to_vec(),
                fds: frame_fds,
            });
            at = end;
        }
    }
}

/// One frame's bytes: a header of `kind` announcing `nfds` fds, then `body`.
pub fn frame_bytes(kind: u32, body: &[u8], nfds: u32) -> Vec<u8> {
    let hdr = FrameHeader {
        len: body.len() as u32,
        kind,
        nfds,
        reserved: 0,
    };
    let mut v = bytemuck::bytes_of(&hdr).to_vec();
    v.extend_from_slice(body);
    v
}
