//! The data path of the "horizon" design, as a prototype the binder bench measures: a lane
//! between one calling thread and one serving thread that the shim would set up (and keep
//! authority over) but not sit in. A lane is a memfd with a request area and a reply area,
//! and two eventfds (one per direction): a call is copy in, one eventfd write, one wake-up
//! of the server; the reply the same way back. Two wake-ups per round trip, as with the
//! kernel's binder, instead of the relay's four.
//!
//! The serving side treats the request area as hostile memory: it reads the length once,
//! checks it against the area, and copies the bytes out before looking at them (what the
//! kernel's copy into the receiver's buffer guarantees). What the shim would keep doing and
//! this prototype leaves out: creating lanes (binding identity, the target node and the
//! thread pair at creation), transactions with objects (refs, fds: they go through the shim),
//! oneway calls, death (the shim holds both eventfds and would wake a waiter of a dead peer).

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::mman::{mmap, MapFlags, ProtFlags};

/// Bytes of each area (request, reply), the length word included.
const AREA: usize = 64 * 1024;
/// The length word that tells the server to stop.
const STOP: u64 = u64::MAX;

/// One end of a lane: the shared areas and both eventfds.
pub struct Lane {
    base: NonNull<u8>,
    to_server: EventFd,
    to_client: EventFd,
    _memfd: OwnedFd,
}

// SAFETY: the mapping is owned by the lane and lives as long as it; only one thread uses a
// lane end at a time (it is moved to the thread that serves or calls).
unsafe impl Send for Lane {}

impl Lane {
    /// A new lane: the memfd and the two eventfds, in that order, to hand to the other end.
    pub fn create() -> std::io::Result<(Lane, [OwnedFd; 3])> {
        let memfd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .create("bittube-lane")
            .map_err(std::io::Error::other)?;
        memfd.as_file().set_len((2 * AREA) as u64)?;
        let memfd = OwnedFd::from(memfd.into_file());
        let s = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
        let c = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
        let fds = [
            memfd.try_clone()?,
            s.as_fd().try_clone_to_owned()?,
            c.as_fd().try_clone_to_owned()?,
        ];
        Ok((Lane::open(memfd, s, c)?, fds))
    }

    /// The other end, from the fds [`Lane::create`] returned.
    pub fn from_fds([memfd, s, c]: [OwnedFd; 3]) -> std::io::Result<Lane> {
        // SAFETY: these fds are eventfds created by `Lane::create` and sent over SCM_RIGHTS;
        // this end owns its copies.
        let (s, c) = unsafe { (EventFd::from_owned_fd(s), EventFd::from_owned_fd(c)) };
        Lane::open(memfd, s, c)
    }

    fn open(memfd: OwnedFd, to_server: EventFd, to_client: EventFd) -> std::io::Result<Lane> {
        let len = std::num::NonZeroUsize::new(2 * AREA).expect("non-zero");
        // SAFETY: a fresh shared mapping of the whole memfd (sized to 2 * AREA above); no
        // other mapping in this process aliases it as a Rust reference.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                memfd.as_fd(),
                0,
            )?
        };
        Ok(Lane {
            base: base.cast(),
            to_server,
            to_client,
            _memfd: memfd,
        })
    }

    fn len_word(&self, area: usize) -> &AtomicU64 {
        // SAFETY: the word lies at the start of an area inside the mapping, 8-aligned (the
        // mapping is page-aligned); other processes touch it only atomically too.
        unsafe { &*self.base.as_ptr().add(area * AREA).cast::<AtomicU64>() }
    }

    /// Writes `bytes` (at most the area less its length word) into `area`.
    fn put(&self, area: usize, bytes: &[u8]) {
        assert!(bytes.len() <= AREA - 8, "lane message too large");
        // SAFETY: the destination is inside the mapping (checked above); the peer does not
        // read it until the eventfd write that follows (the fence orders the copy first).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.as_ptr().add(area * AREA + 8),
                bytes.len(),
            )
        };
        fence(Ordering::Release);
        self.len_word(area)
            .store(bytes.len() as u64, Ordering::Release);
    }

    /// Copies `area`'s message out into `out`; the peer's length is checked, never trusted.
    /// `None` for the stop word.
    fn take(&self, area: usize, out: &mut Vec<u8>) -> Option<()> {
        let len = self.len_word(area).load(Ordering::Acquire);
        if len == STOP {
            return None;
        }
        let len = usize::try_from(len).ok().filter(|&l| l <= AREA - 8)?;
        out.clear();
        out.resize(len, 0);
        // SAFETY: source range checked to lie inside the area; the bytes are copied once and
        // only the copy is looked at (a hostile peer rewriting them meanwhile changes only
        // what we copied, never memory outside the mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(area * AREA + 8),
                out.as_mut_ptr(),
                len,
            )
        };
        Some(())
    }

    /// One call: `payload` out, the reply into `back`.
    pub fn call(&self, payload: &[u8], back: &mut Vec<u8>) {
        self.put(0, payload);
        self.to_server.write(1).expect("lane: wake the server");
        self.to_client.read().expect("lane: wait for the reply");
        self.take(1, back).expect("lane: bad reply");
    }

    /// Tells the server to stop.
    pub fn stop(&self) {
        self.len_word(0).store(STOP, Ordering::Release);
        let _ = self.to_server.write(1);
    }

    /// Serves echo calls until [`Lane::stop`].
    pub fn serve(&self) {
        let mut buf = Vec::with_capacity(AREA);
        loop {
            if self.to_server.read().is_err() {
                return;
            }
            if self.take(0, &mut buf).is_none() {
                return;
            }
            self.put(1, &buf);
            if self.to_client.write(1).is_err() {
                return;
            }
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once, with no reference into it left
        // (every access above ends with its call).
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), 2 * AREA) };
    }
}
