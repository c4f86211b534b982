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
use super::state::{ConnId, ThreadId};
use super::Limits;
use crate::binder_ipc::protocol::wire::FrameHeader;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// A fake connection of a [`Harness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnHandle(ConnId);

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
    /// Connections whose answers are left queued (a client that does not read).
    not_reading: std::collections::BTreeSet<ConnId>,
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
            not_reading: Default::default(),
        }
    }

    /// Opens a connection whose peer is `pid`, `uid` (as `SO_PEERCRED` would say); the
    /// errno the server would refuse it with otherwise.
    pub fn connect(&mut self, pid: i32, uid: u32) -> Result<ConnHandle, Errno> {
        self.core.admit(uid)?;
        let id = self.next;
        self.next += 1;
        self.core.add(ThreadId(id), None, pid, uid);
        Ok(ConnHandle(ThreadId(id)))
    }

    /// Opens a binder process for OS process `pid`, `uid`: `K_OPEN_PROC` with a 64 KiB area
    /// on a fresh connection. Returns the connection and the proc token; panics when the
    /// shim refuses (for tests).
    #[cfg(test)]
    pub(crate) fn open_proc(&mut self, pid: i32, uid: u32) -> (ConnHandle, u64) {
        use crate::binder_ipc::protocol::wire::{OpenProc, OpenProcOk, K_OPEN_PROC, WIRE_VERSION};
        let c = self.connect(pid, uid).expect("a connection");
        let req = OpenProc {
            version: WIRE_VERSION,
            reserved: 0,
            area_size: 64 * 1024,
        };
        let a = self.feed(
            c,
            &frame_bytes(K_OPEN_PROC, bytemuck::bytes_of(&req), 0),
            Vec::new(),
        );
        let ok: OpenProcOk = bytemuck::pod_read_unaligned(&a[0].body);
        (c, ok.token)
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

    /// Whether the client of `conn` reads its answers (the default). One that does not has
    /// them left queued, as a socket nobody reads; turning reading back on collects them at
    /// the next call.
    pub fn set_reading(&mut self, conn: ConnHandle, reading: bool) {
        if reading {
            self.not_reading.remove(&conn.0);
            if self.core.conns.contains_key(&conn.0) {
                self.core.dirty.push(conn.0);
            }
        } else {
            self.not_reading.insert(conn.0);
        }
    }

    /// Whether `conn` is still open (a protocol error or a close ends it).
    pub fn is_open(&self, conn: ConnHandle) -> bool {
        self.core.conns.get(&conn.0).is_some_and(|k| !k.dead)
    }

    /// Bytes of answers queued for `conn` and not yet collected (0 after a call unless its
    /// client does not read: [`set_reading`](Self::set_reading)).
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
            // Connections that used up their turn get the next one, as in the server.
            for c in self.core.next_turn() {
                self.core.receive_buffered(c);
            }
            if self.core.dirty.is_empty() && !self.core.has_busy() {
                // The per-uid counts are the sums of the per-process ones, whatever came in.
                debug_assert!(
                    self.core.state.uid_usage_consistent(),
                    "per-uid usage drifted"
                );
                return answers;
            }
        }
    }

    fn collect(&mut self, c: ConnId, answers: &mut Vec<Answer>) {
        let Some(k) = self.core.conns.get_mut(&c) else {
            return;
        };
        k.clear_dirty();
        if self.not_reading.contains(&c) {
            return;
        }
        let queued = k.out.queued();
        let (bytes, fds) = k.out.take_all();
        self.core.out_sent(c, queued);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binder_ipc::protocol::wire::*;

    #[test]
    fn a_frame_split_anywhere_is_the_same_frame() {
        let state = frame_bytes(K_STATE, &[], 0);
        for cut in 0..state.len() {
            let mut h = Harness::new();
            let c = h.connect(1, 0).unwrap();
            assert!(h.feed(c, &state[..cut], Vec::new()).is_empty());
            let a = h.feed(c, &state[cut..], Vec::new());
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].header.kind, K_STATE_RET);
        }
    }

    #[test]
    fn a_close_after_half_a_frame_reaps_the_connection() {
        let mut h = Harness::new();
        let (p, _) = h.open_proc(1, 0);
        h.feed(
            p,
            &frame_bytes(K_MAP_DONE, &0u64.to_ne_bytes(), 0)[..10],
            Vec::new(),
        );
        h.close(p);
        assert!(!h.is_open(p));
        assert!(h.dump().contains("open 0 "), "{}", h.dump());
        assert!(!h.dump().contains("proc 1 "), "the process went with it");
    }

    #[test]
    fn a_client_that_never_reads_is_paused_at_the_cap() {
        let limits = Limits {
            out_bytes_per_conn: 4096,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        let c = h.connect(1, 0).unwrap();
        let flood: Vec<u8> = (0..1000)
            .flat_map(|_| frame_bytes(K_STATE, &[], 0))
            .collect();
        // The harness collects answers as they come, so the queue drains and resumes: all
        // 1000 are answered, never more than the cap plus one answer queued at once.
        let a = h.feed(c, &flood, Vec::new());
        assert_eq!(a.len(), 1000);
        assert!(h.dump().contains("stalls "), "{}", h.dump());
        assert!(!h.dump().contains("stalls 0 "), "{}", h.dump());
    }

    #[test]
    fn caps_refuse_with_an_errno_and_count() {
        let limits = Limits {
            conns_per_uid: 3,
            procs_per_uid: 1,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        let (_p, token) = h.open_proc(1, 5);
        let c2 = h.connect(1, 5).unwrap();
        let req = OpenProc {
            version: WIRE_VERSION,
            reserved: 0,
            area_size: 64 * 1024,
        };
        let a = h.feed(
            c2,
            &frame_bytes(K_OPEN_PROC, bytemuck::bytes_of(&req), 0),
            Vec::new(),
        );
        let ok: OpenProcOk = bytemuck::pod_read_unaligned(&a[0].body);
        assert_eq!(ok.errno, Errno::EMFILE as i32);
        let t = h.connect(1, 5).unwrap();
        let a = h.feed(
            t,
            &frame_bytes(K_OPEN_THREAD, &token.to_ne_bytes(), 0),
            Vec::new(),
        );
        let r: ResultBody = bytemuck::pod_read_unaligned(&a[0].body);
        assert_eq!(r.errno, 0);
        assert_eq!(h.connect(1, 5), Err(Errno::EUSERS));
        // Another uid is not affected.
        assert!(h.connect(2, 6).is_ok());
        let dump = h.dump();
        assert!(dump.contains("conns per uid 1 "), "{dump}");
        assert!(dump.contains("procs per uid 1 "), "{dump}");
    }

    #[test]
    fn half_frames_past_the_uid_input_budget_close_the_connection() {
        let limits = Limits {
            in_bytes_per_uid: 1000,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        let mut half = frame_bytes(K_WRITE_READ, &[0u8; 4096], 0);
        half.truncate(600);
        let a = h.connect(1, 7).unwrap();
        let b = h.connect(1, 7).unwrap();
        let other = h.connect(1, 8).unwrap();
        h.feed(a, &half, Vec::new());
        h.feed(other, &half, Vec::new());
        assert!(h.is_open(a) && h.is_open(other));
        h.feed(b, &half, Vec::new());
        assert!(!h.is_open(b), "past the budget");
        assert!(
            h.is_open(a) && h.is_open(other),
            "the others are not touched"
        );
        assert!(h.dump().contains("input per uid 1 "), "{}", h.dump());
        // Its bytes left with it: the budget has room again.
        let c = h.connect(1, 7).unwrap();
        h.feed(c, &half[..300], Vec::new());
        assert!(h.is_open(c));
    }

    #[test]
    fn clients_that_never_read_are_bounded_per_connection_and_per_uid() {
        let limits = Limits {
            out_bytes_per_conn: 8 * 1024,
            out_bytes_per_uid: 20 * 1024,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        let flood: Vec<u8> = (0..1000)
            .flat_map(|_| frame_bytes(K_STATE, &[], 0))
            .collect();
        let conns: Vec<ConnHandle> = (0..5).map(|_| h.connect(1, 9).unwrap()).collect();
        for &c in &conns {
            h.set_reading(c, false);
            h.feed(c, &flood, Vec::new());
        }
        let one = h.dump().len() + 200;
        let total: usize = conns.iter().map(|&c| h.queued(c)).sum();
        for &c in &conns {
            assert!(h.queued(c) <= 8 * 1024 + one, "{}", h.queued(c));
        }
        assert!(total <= 20 * 1024 + 5 * one, "{total}");
        // Another uid is served at once.
        let other = h.connect(2, 10).unwrap();
        let a = h.feed(other, &frame_bytes(K_STATE, &[], 0), Vec::new());
        assert_eq!(a.len(), 1);
        // Once a client reads, its requests go on.
        h.set_reading(conns[0], true);
        let a = h.feed(other, &[], Vec::new());
        assert!(a.iter().filter(|x| x.conn == conns[0]).count() > 1);
    }

    #[test]
    fn a_flooding_connection_yields_after_its_turn_and_others_are_served() {
        use super::super::server::FRAMES_PER_TURN;
        let mut h = Harness::new();
        let flooder = h.connect(1, 1).unwrap();
        let other = h.connect(2, 2).unwrap();
        let flood: Vec<u8> = (0..1000)
            .flat_map(|_| frame_bytes(K_STATE, &[], 0))
            .collect();
        // One read's worth of frames, as the server hands it over: one turn's worth is
        // handled, the rest waits in the connection's buffer.
        h.core.receive(flooder.0, &flood, Vec::new());
        // (Answers are dumps of about one size: the count is approximate, 1000 without turns.)
        let answered = h.queued(flooder) / h.core.dump().len();
        let turn = FRAMES_PER_TURN as usize;
        assert!(
            (turn / 2..=turn * 2).contains(&answered),
            "{answered} answered in one turn"
        );
        // Another connection's request in the same turn is handled at once.
        h.core
            .receive(other.0, &frame_bytes(K_STATE, &[], 0), Vec::new());
        assert!(h.queued(other) > 0, "the other connection waited");
        // The flooder's next turn, and the rest through the harness's turns: all answered.
        let a = h.feed(flooder, &[], Vec::new());
        assert_eq!(a.iter().filter(|x| x.conn == flooder).count(), 1000);
        let dump = h.dump();
        assert!(!dump.contains("turns yielded 0 "), "{dump}");
    }

    #[test]
    fn a_thread_token_of_another_pid_is_refused() {
        let mut h = Harness::new();
        let (_p, token) = h.open_proc(1, 0);
        let t = h.connect(2, 0).unwrap();
        let a = h.feed(
            t,
            &frame_bytes(K_OPEN_THREAD, &token.to_ne_bytes(), 0),
            Vec::new(),
        );
        let r: ResultBody = bytemuck::pod_read_unaligned(&a[0].body);
        assert_eq!(r.errno, Errno::EPERM as i32);
    }
}
