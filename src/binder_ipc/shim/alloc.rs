//! A process's buffer area: a sealed memfd mapped by the driver (read-write) and by the
//! process (read-only), with the kernel's allocation rules (`binder_alloc`): best fit, sizes
//! rounded to 8, at least 8 bytes, and half of the area for oneway buffers.

use super::ids::BufferId;
use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

/// The buffer area of one binder process.
#[derive(Debug)]
pub struct Area {
    memfd: OwnedFd,
    map: NonNull<u8>,
    size: usize,
    /// Where the process mapped the area (0 until it said so).
    pub client_base: u64,
    /// Free ranges: offset → length.
    free: BTreeMap<u64, u64>,
    /// Allocated ranges: offset → length.
    used: BTreeMap<u64, u64>,
    /// Space left for oneway buffers.
    pub free_async_space: u64,
    /// A oneway spammer was reported since async space last ran low (reported once).
    pub spam_detected: bool,
}

// SAFETY: the mapping is owned by the `Area` and only touched through `&mut self` or `&self`
// copies of bytes; the driver's event loop owns every `Area`.
unsafe impl Send for Area {}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: mapped in `Area::new` with this base and size, unmapped once here.
        let _ = unsafe { munmap(self.map.cast(), self.size) };
    }
}

impl Area {
    /// Creates a sealed memfd of `size` bytes (rounded up to pages) and maps it.
    pub fn new(size: usize) -> Result<Area, Errno> {
        let page = 4096usize;
        let size = size.checked_add(page - 1).ok_or(Errno::EINVAL)? & !(page - 1);
        if size == 0 || size > (1 << 30) {
            return Err(Errno::EINVAL);
        }
        let mfd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .allow_sealing(true)
            .create("binder-area")
            .map_err(|_| Errno::ENOMEM)?;
        mfd.as_file()
            .set_len(size as u64)
            .map_err(|_| Errno::ENOMEM)?;
        mfd.add_seals(&[memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow])
            .and_then(|_| mfd.add_seal(memfd::FileSeal::SealSeal))
            .map_err(|_| Errno::ENOMEM)?;
        let memfd: OwnedFd = mfd.into_file().into();
        let len = NonZeroUsize::new(size).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh shared mapping of a memfd sealed against shrinking, so every page
        // stays backed for the mapping's life; it aliases no Rust object.
        let map = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &memfd,
                0,
            )?
        };
        let mut free = BTreeMap::new();
        free.insert(0, size as u64);
        Ok(Area {
            memfd,
            map: map.cast(),
            size,
            client_base: 0,
            free,
            used: BTreeMap::new(),
            free_async_space: size as u64 / 2,
            spam_detected: false,
        })
    }

    /// The memfd, to hand to the process.
    pub fn memfd(&self) -> &OwnedFd {
        &self.memfd
    }

    /// The area's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes currently allocated.
    pub fn allocated(&self) -> u64 {
        self.used.values().sum()
    }

    /// The allocated length of buffer `id`.
    pub fn len_of(&self, id: BufferId) -> Option<u64> {
        self.used.get(&id.0).copied()
    }

    /// Number of allocated buffers.
    pub fn buffers(&self) -> usize {
        self.used.len()
    }

    /// Allocates a buffer of `len` bytes (rounded to 8, at least 8): best fit, lowest address
    /// among equals. `ENOSPC` when no free range fits, or a oneway buffer finds its half full.
    pub fn alloc(&mut self, len: u64, is_async: bool) -> Result<BufferId, Errno> {
        let len = len.checked_add(7).ok_or(Errno::ENOSPC)? & !7;
        let len = len.max(8);
        if is_async && self.free_async_space < len {
            return Err(Errno::ENOSPC);
        }
        let (&off, &flen) = self
            .free
            .iter()
            .filter(|(_, &l)| l >= len)
            .min_by_key(|(&o, &l)| (l, o))
            .ok_or(Errno::ENOSPC)?;
        self.free.remove(&off);
        if flen > len {
            self.free.insert(off + len, flen - len);
        }
        self.used.insert(off, len);
        if is_async {
            self.free_async_space -= len;
        }
        Ok(BufferId(off))
    }

    /// Frees buffer `id`; returns its length, or `None` when no buffer starts there.
    pub fn free(&mut self, id: BufferId, is_async: bool) -> Option<u64> {
        let off = id.0;
        let len = self.used.remove(&off)?;
        if is_async {
            self.free_async_space += len;
        }
        let mut start = off;
        let mut end = off + len;
        if let Some((&po, &pl)) = self.free.range(..off).next_back() {
            if po + pl == off {
                self.free.remove(&po);
                start = po;
            }
        }
        if let Some(&nl) = self.free.get(&end) {
            self.free.remove(&end);
            end += nl;
        }
        self.free.insert(start, end - start);
        Some(len)
    }

    /// The allocated buffer at `off`, as a bounded view (the kernel's `Allocation`): every
    /// access through it is checked against that buffer's own length, so no offset a client
    /// chose can reach another buffer. `None` when no buffer starts at `off`.
    pub fn buffer_mut(&mut self, id: BufferId) -> Option<BufferMut<'_>> {
        let len = self.len_of(id)?;
        Some(BufferMut {
            area: self,
            off: id.0,
            len,
        })
    }

    /// `[off, off + len)` of the mapping, when inside the area.
    fn range_mut(&mut self, off: u64, len: u64) -> Option<&mut [u8]> {
        let end = off.checked_add(len)?;
        if end > self.size as u64 {
            return None;
        }
        let (off, len) = (usize::try_from(off).ok()?, usize::try_from(len).ok()?);
        // SAFETY: the range lies inside the live mapping (checked above); `&mut self` makes
        // this the only Rust reference into the area for its lifetime. The process maps the
        // area read-only and may race only on bytes of its own buffers, which are plain bytes.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(off), len) })
    }
}

/// One allocated buffer of an [`Area`]: typed, checked reads and writes at offsets from the
/// buffer's start. Nothing hands out a slice of the shared mapping.
#[derive(Debug)]
pub struct BufferMut<'a> {
    area: &'a mut Area,
    off: u64,
    len: u64,
}

/// An access outside the buffer: `EFAULT`, as the kernel's checked buffer copies answer.
pub const OUT_OF_BUFFER: Errno = Errno::EFAULT;

impl BufferMut<'_> {
    /// `[at, at + n)` of this buffer, checked.
    fn range(&mut self, at: u64, n: u64) -> Result<&mut [u8], Errno> {
        if at.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(OUT_OF_BUFFER);
        }
        let start = self.off.checked_add(at).ok_or(OUT_OF_BUFFER)?;
        self.area.range_mut(start, n).ok_or(OUT_OF_BUFFER)
    }

    /// Copies `bytes` in at `at`.
    pub fn copy_into(&mut self, at: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.range(at, bytes.len() as u64)?.copy_from_slice(bytes);
        Ok(())
    }

    /// Writes `v` at `at` (unaligned is fine).
    pub fn write<T: bytemuck::Pod>(&mut self, at: u64, v: &T) -> Result<(), Errno> {
        self.copy_into(at, bytemuck::bytes_of(v))
    }

    /// Reads a `T` at `at`.
    pub fn read<T: bytemuck::Pod>(&mut self, at: u64) -> Result<T, Errno> {
        let r = self.range(at, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(r))
    }

    /// Zeroes the whole buffer.
    pub fn zero(&mut self) -> Result<(), Errno> {
        let len = self.len;
        self.range(0, len)?.fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_merge_and_async_half() {
        let mut a = Area::new(64 * 1024).unwrap();
        let x = a.alloc(100, false).unwrap();
        let y = a.alloc(1, false).unwrap();
        assert_eq!((x.0, y.0), (0, 104));
        assert_eq!(a.allocated(), 112);
        assert_eq!(a.free(x, false), Some(104));
        // The hole at 0 fits 8 bytes best.
        assert_eq!(a.alloc(8, false).unwrap(), BufferId(0));
        assert_eq!(
            a.alloc(40_000, true),
            Err(Errno::ENOSPC),
            "oneway gets half"
        );
        let z = a.alloc(30_000, true).unwrap();
        assert_eq!(a.free_async_space, 32 * 1024 - 30_000);
        a.free(z, true);
        a.free(BufferId(0), false);
        a.free(y, false);
        assert_eq!(a.allocated(), 0);
        assert_eq!(
            a.alloc(64 * 1024, false).unwrap(),
            BufferId(0),
            "free ranges merged back"
        );
        assert_eq!(a.free(BufferId(12345), false), None);
    }
}
