//! The sensor direct channel: a shared-memory ring of 104-byte event records.
//!
//! The service writes each event of the channel's sensors into the next slot of a `memfd`
//! ring; the reader maps the same memfd read-only and takes, without a syscall per event,
//! the records whose counter exceeds the last one it saw. As in Android's direct-report
//! format, a record is an [`SensorEvent`] whose `reserved0` field (offset 12) is the record's
//! atomic counter (1, 2, 3, ...; record `c` lives in slot `(c - 1) % slots`), `version` is 104
//! and `sensor` is the report token (the sensor handle here).
//!
//! Every word of the ring is accessed with 32-bit atomics, as a seqlock: the writer stores 0
//! into the counter, fences, stores the payload, then stores the new counter with `Release`;
//! the reader loads the counter with `Acquire`, copies the payload, fences and reloads the
//! counter: if it changed, the slot was being overwritten and the copy is discarded. A reader
//! that falls a whole ring behind skips ahead and counts the records it lost.
//!
//! The memfd is sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`)
//! before it is handed out: the reader cannot be killed by `SIGBUS` through a shrunk file and
//! cannot write into the service's ring; [`DirectChannelReader::new`] checks the seals.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::event::{SensorEvent, EVENT_SIZE};

/// Words (u32) per record.
const WORDS: usize = EVENT_SIZE / 4;
/// Index of the counter word (`reserved0`, offset 12).
const COUNTER_WORD: usize = 3;
/// Largest ring a reader accepts: 64 MiB.
pub const MAX_RING_BYTES: usize = 64 << 20;

/// Rate levels of a direct channel (Android's `RATE_NORMAL`/`FAST`/`VERY_FAST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectRate {
    /// Stop writing this sensor into the channel.
    Stop,
    /// Nominal 50 Hz.
    Normal,
    /// Nominal 200 Hz.
    Fast,
    /// Nominal 800 Hz.
    VeryFast,
}

impl DirectRate {
    /// The nominal rate in Hz (0 for [`DirectRate::Stop`]).
    pub fn hz(self) -> u32 {
        match self {
            DirectRate::Stop => 0,
            DirectRate::Normal => 50,
            DirectRate::Fast => 200,
            DirectRate::VeryFast => 800,
        }
    }
}

/// What can go wrong with a direct channel ring.
#[derive(Debug, thiserror::Error)]
pub enum DirectChannelError {
    /// The ring must hold at least one record.
    #[error("a direct channel ring needs at least one record")]
    Empty,
    /// The file's size is not a whole number of 104-byte records, or is too large.
    #[error(
        "bad ring size: {size} bytes is not a positive multiple of 104 bytes up to {max} bytes"
    )]
    BadSize {
        /// The file's size.
        size: u64,
        /// [`MAX_RING_BYTES`].
        max: usize,
    },
    /// The file is not sealed against shrinking: the writer could truncate it under the reader.
    #[error("the ring's file is not sealed against shrinking (F_SEAL_SHRINK missing)")]
    NotSealed,
    /// A system call failed.
    #[error("direct channel: {0}")]
    Sys(#[from] nix::Error),
}

/// A shared mapping, kept as an address so that it is plainly `Send`; unmapped on drop.
#[derive(Debug)]
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Mapping, DirectChannelError> {
        let length = NonZeroUsize::new(len).ok_or(DirectChannelError::Empty)?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh shared mapping chosen by the kernel (addr None) aliases no Rust
        // object; its memory is only ever reached through `word`, with atomics.
        let ptr = unsafe { mmap(None, length, prot, MapFlags::MAP_SHARED, fd, 0)? };
        Ok(Mapping {
            addr: ptr.as_ptr() as usize,
            len,
        })
    }

    /// Word `index` of the mapping.
    fn word(&self, index: usize) -> &AtomicU32 {
        assert!(index < self.len / 4, "ring word {index} out of range");
        // SAFETY: the mapping is page-aligned, so `addr + 4 * index` is aligned for AtomicU32,
        // and in bounds (checked above); it stays mapped until `self` is dropped, which the
        // returned borrow cannot outlive. All accesses from this process are atomic. Atomic
        // loads from a read-only mapping are allowed for lock-free sizes such as u32 (the
        // reader never stores).
        unsafe { &*((self.addr + 4 * index) as *const AtomicU32) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(ptr) = NonNull::new(self.addr as *mut std::ffi::c_void) {
            // SAFETY: `addr`/`len` are exactly what mmap returned and were never unmapped;
            // no borrow of the memory outlives `self`.
            let _ = unsafe { munmap(ptr, self.len) };
        }
    }
}

/// The service's side of a direct channel: writes records into the ring.
#[derive(Debug)]
pub struct DirectRing {
    fd: OwnedFd,
    map: Mapping,
    slots: usize,
    counter: u32,
}

impl DirectRing {
    /// A new sealed memfd ring of `slots` records.
    pub fn new(slots: usize) -> Result<DirectRing, DirectChannelError> {
        let len = slots
            .checked_mul(EVENT_SIZE)
            .filter(|&len| slots > 0 && len <= MAX_RING_BYTES)
            .ok_or(DirectChannelError::BadSize {
                size: (slots as u64).saturating_mul(EVENT_SIZE as u64),
                max: MAX_RING_BYTES,
            })?;
        let fd = memfd_create(
            c"bittube-sensor-direct",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, len as i64)?;
        let map = Mapping::new(fd.as_fd(), len, true)?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_FUTURE_WRITE
                    | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        Ok(DirectRing {
            fd,
            map,
            slots,
            counter: 0,
        })
    }

    /// Number of record slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Counter of the last record written (0: none yet).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// A new fd for the ring, to hand to a reader (close-on-exec).
    pub fn share(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Write `event` as the next record (its `version`, `sensor` and `reserved0` are set as the
    /// format says: 104, `token`, the counter). Returns the record's counter, or `None` once
    /// the counter reached `u32::MAX` (the channel must then be recreated).
    pub fn write(&mut self, event: &SensorEvent, token: i32) -> Option<u32> {
        let counter = self.counter.checked_add(1)?;
        self.counter = counter;
        let mut record = *event;
        record.version = EVENT_SIZE as i32;
        record.sensor = token;
        record.reserved0 = counter as i32;
        let words: [u32; WORDS] = bytemuck::cast(record);
        let base = ((counter - 1) as usize % self.slots) * WORDS;
        self.map
            .word(base + COUNTER_WORD)
            .store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, w) in words.iter().enumerate() {
            if i != COUNTER_WORD {
                self.map.word(base + i).store(*w, Ordering::Relaxed);
            }
        }
        self.map
            .word(base + COUNTER_WORD)
            .store(counter, Ordering::Release);
        Some(counter)
    }
}

impl AsFd for DirectRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The client's side of a direct channel: takes new records, no syscall per event.
#[derive(Debug)]
pub struct DirectChannelReader {
    map: Mapping,
    slots: usize,
    last: u32,
    lost: u64,
}

impl DirectChannelReader {
    /// Map the ring behind `fd` read-only, after checking its size (a positive multiple of 104
    /// bytes, at most [`MAX_RING_BYTES`]) and its `F_SEAL_SHRINK` seal. The fd is closed; the
    /// mapping stays.
    pub fn new(fd: OwnedFd) -> Result<DirectChannelReader, DirectChannelError> {
        let size = nix::sys::stat::fstat(&fd)?.st_size.max(0) as u64;
        if size == 0 || size % EVENT_SIZE as u64 != 0 || size > MAX_RING_BYTES as u64 {
            return Err(DirectChannelError::BadSize {
                size,
                max: MAX_RING_BYTES,
            });
        }
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(DirectChannelError::NotSealed);
        }
        let map = Mapping::new(fd.as_fd(), size as usize, false)?;
        Ok(DirectChannelReader {
            map,
            slots: size as usize / EVENT_SIZE,
            last: 0,
            lost: 0,
        })
    }

    /// Number of record slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Counter of the last record taken (0: none yet).
    pub fn last_counter(&self) -> u32 {
        self.last
    }

    /// Records overwritten before this reader could take them.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Take up to `max` new records, in counter order, appending them to `out`; returns how
    /// many were taken. Plain memory reads: no syscall.
    pub fn read(&mut self, out: &mut Vec<SensorEvent>, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            let base = (self.last as usize % self.slots) * WORDS;
            let counter = self.map.word(base + COUNTER_WORD).load(Ordering::Acquire);
            if counter == 0 || counter <= self.last {
                break; // nothing new (or the slot is being written for the first time)
            }
            let mut words = [0u32; WORDS];
            for (i, w) in words.iter_mut().enumerate() {
                *w = self.map.word(base + i).load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if self.map.word(base + COUNTER_WORD).load(Ordering::Relaxed) != counter {
                break; // overwritten while copying: try again on the next call
            }
            // Record `last + 1` lives in this slot; a larger counter means the writer lapped us.
            self.lost += u64::from(counter - self.last - 1);
            self.last = counter;
            out.push(bytemuck::cast(words));
            taken += 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64) -> SensorEvent {
        SensorEvent::new(1, 1, i, &[i as f32])
    }

    #[test]
    fn reader_takes_new_records_in_order() {
        let mut ring = DirectRing::new(8).unwrap();
        let mut reader = DirectChannelReader::new(ring.share().unwrap()).unwrap();
        let mut out = Vec::new();
        assert_eq!(reader.read(&mut out, 100), 0);
        for i in 1..=5 {
            ring.write(&event(i), 9);
        }
        assert_eq!(reader.read(&mut out, 100), 5);
        let counters: Vec<i32> = out.iter().map(|e| e.reserved0).collect();
        assert_eq!(counters, [1, 2, 3, 4, 5]);
        assert!(out.iter().all(|e| e.sensor == 9 && e.version == 104));
        assert_eq!(reader.read(&mut out, 100), 0);
        assert_eq!(reader.lost(), 0);
    }

    #[test]
    fn lapped_reader_counts_lost_records_and_stays_in_order() {
        let mut ring = DirectRing::new(4).unwrap();
        let mut reader = DirectChannelReader::new(ring.share().unwrap()).unwrap();
        for i in 1..=10 {
            ring.write(&event(i), 1);
        }
        let mut out = Vec::new();
        let n = reader.read(&mut out, 100);
        assert!(n > 0);
        let counters: Vec<i32> = out.iter().map(|e| e.reserved0).collect();
        assert!(counters.windows(2).all(|w| w[0] < w[1]), "{counters:?}");
        assert_eq!(*counters.last().unwrap(), 10);
        assert_eq!(reader.lost() + n as u64, 10);
    }

    #[test]
    fn reader_rejects_unsealed_and_badly_sized_files() {
        let fd = memfd_create(c"t", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 104).unwrap();
        assert!(matches!(
            DirectChannelReader::new(fd),
            Err(DirectChannelError::NotSealed)
        ));
        let fd = memfd_create(c"t", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 100).unwrap();
        assert!(matches!(
            DirectChannelReader::new(fd),
            Err(DirectChannelError::BadSize { size: 100, .. })
        ));
    }
}
