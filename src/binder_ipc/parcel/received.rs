//! Parcels built from what the driver delivered: data bytes, an offsets array, and the fds
//! the driver installed for the FD objects.
//!
//! This is the one place of the parcel module with `unsafe`: turning the fd numbers found in
//! FD objects into [`OwnedFd`]s.

use super::{Parcel, ParcelError, ReleaseFn, MAX_DATA_SIZE, OBJECT_SIZE};
use crate::binder_ipc::uapi::{
    BINDER_TYPE_BINDER, BINDER_TYPE_FD, BINDER_TYPE_HANDLE, BINDER_TYPE_WEAK_BINDER,
    BINDER_TYPE_WEAK_HANDLE,
};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Decodes an offsets array given as bytes (`offsets_size` bytes at `data.ptr.offsets`):
/// native-endian `u64`s; a size that is not a multiple of 8 is [`ParcelError::OffsetsSize`].
pub fn offsets_from_bytes(bytes: &[u8]) -> Result<Vec<u64>, ParcelError> {
    if bytes.len() % 8 != 0 {
        return Err(ParcelError::OffsetsSize { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn word(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// The object at `offset` if it is 4-aligned and inside `data`: its start as `usize`.
fn object_start(data: &[u8], offset: u64) -> Option<usize> {
    let start = usize::try_from(offset).ok()?;
    (start % 4 == 0 && start.checked_add(OBJECT_SIZE)? <= data.len()).then_some(start)
}

/// The fd numbers [`Parcel::from_received`] takes ownership of for `data` and `offsets`, in
/// the order first named, each once: the non-negative fd (at +8) of every object of type
/// `BINDER_TYPE_FD` at a listed offset that is 4-aligned with 24 bytes inside `data`,
/// whether or not the offsets are otherwise valid (on an error they are closed too).
///
/// This is judged on the data as handed over. Whoever installed fds into the data (the
/// driver, or a test standing in for it) owns any fd this list does not name: e.g. with
/// overlapping objects, an fd written at one object's +8 can overwrite the type word of
/// another FD object, whose own fd is then named by no FD object. The kernel never delivers
/// that (it refuses a sender's offsets below the end of the previous object, `off_min`), and
/// neither does the shim; a caller that installs fds itself can check with this function.
pub fn received_fds(data: &[u8], offsets: &[u64]) -> Vec<RawFd> {
    let mut fds = Vec::new();
    for &offset in offsets {
        if let Some(start) = object_start(data, offset) {
            let fd = word(data, start + 8) as i32;
            if word(data, start) == BINDER_TYPE_FD && fd >= 0 && !fds.contains(&fd) {
                fds.push(fd);
            }
        }
    }
    fds
}

/// Checks the offsets as libbinder and the kernel do and returns `(offset, fd)` of each FD
/// object.
fn validate(
    data: &[u8],
    offsets: &[u64],
    allow_fds: bool,
) -> Result<Vec<(u64, RawFd)>, ParcelError> {
    if data.len() > MAX_DATA_SIZE {
        return Err(ParcelError::TooLarge { max: MAX_DATA_SIZE });
    }
    let mut fds = Vec::new();
    let mut seen: HashMap<RawFd, u64> = HashMap::new();
    let mut previous_end: Option<u64> = None;
    for (index, &offset) in offsets.iter().enumerate() {
        let bad = |reason| ParcelError::BadOffset {
            index,
            offset,
            reason,
        };
        if offset % 4 != 0 {
            return Err(bad("is not 4-byte aligned"));
        }
        if offset.saturating_add(OBJECT_SIZE as u64) > data.len() as u64 {
            return Err(bad("puts the 24-byte object past the end of the data"));
        }
        if let Some(end) = previous_end {
            if offset + (OBJECT_SIZE as u64) <= end {
                return Err(bad(
                    "is not above the previous offset (offsets must ascend)",
                ));
            }
            if offset < end {
                return Err(bad("overlaps the previous object"));
            }
        }
        previous_end = Some(offset + OBJECT_SIZE as u64);
        let start = offset as usize;
        match word(data, start) {
            BINDER_TYPE_BINDER
            | BINDER_TYPE_WEAK_BINDER
            | BINDER_TYPE_HANDLE
            | BINDER_TYPE_WEAK_HANDLE => {}
            BINDER_TYPE_FD => {
                if !allow_fds {
                    return Err(ParcelError::FdsNotAllowed { index, offset });
                }
                let fd = word(data, start + 8) as i32;
                if fd < 0 {
                    return Err(ParcelError::BadFd { index, offset, fd });
                }
                if let Some(&first) = seen.get(&fd) {
                    return Err(ParcelError::DuplicateFd {
                        first,
                        second: offset,
                        fd,
                    });
                }
                seen.insert(fd, offset);
                fds.push((offset, fd));
            }
            type_ => {
                return Err(ParcelError::UnknownObjectType {
                    index,
                    offset,
                    type_,
                })
            }
        }
    }
    Ok(fds)
}

impl Parcel {
    /// A parcel over a copy of `data` with the objects `offsets` names, for data that carries
    /// no file descriptors (a file descriptor object is [`ParcelError::FdsNotAllowed`]).
    ///
    /// The offsets are checked as in [`Parcel::from_received`]. Safe for any bytes: this is
    /// how tests and tools look at parcels, and how a parcel without fds can be rebuilt.
    pub fn from_bytes(data: &[u8], offsets: &[u64]) -> Result<Parcel, ParcelError> {
        validate(data, offsets, false)?;
        let mut parcel = Parcel::new();
        parcel.data = data.to_vec();
        parcel.objects = offsets.to_vec();
        Ok(parcel)
    }

    /// A parcel over a copy of the data and offsets the driver delivered (`BR_TRANSACTION` /
    /// `BR_REPLY`), owning the fds the driver installed for its FD objects.
    ///
    /// The offsets must be 4-aligned, ascending, non-overlapping and inside the data, and
    /// every object must be a binder, handle (strong or weak) or fd object with a valid,
    /// distinct fd; anything else is an error naming the offending entry. (The kernel refuses
    /// such offsets from the sender, so it never delivers them; libbinder, given them, drops
    /// the whole object list. Here the parcel is refused and every fd it was handed closed.)
    ///
    /// `release` runs exactly once: when the parcel is dropped (after its remaining fds are
    /// closed), or before this returns an error. The runtime frees the driver's buffer
    /// (`BC_FREE_BUFFER`) there.
    ///
    /// # Safety
    ///
    /// The caller hands over fd ownership: for every entry of `offsets` that is a multiple of
    /// 4 and leaves 24 bytes inside `data`, if the object there has type `BINDER_TYPE_FD`
    /// and a non-negative fd (the `i32` at +8), that fd must be an open descriptor of this
    /// process that the caller owns and that nothing else will close (the driver installed it
    /// for this transaction). Each such fd (each distinct number once: [`received_fds`]) is
    /// closed by the returned parcel unless read out, and on error before this returns. No
    /// other fd is touched: an fd the caller installed into an object that the data no longer
    /// shows as an FD object stays the caller's.
    pub unsafe fn from_received(
        data: &[u8],
        offsets: &[u64],
        release: Option<ReleaseFn>,
    ) -> Result<Parcel, ParcelError> {
        let mut owned: HashMap<RawFd, OwnedFd> = HashMap::new();
        for fd in received_fds(data, offsets) {
            // SAFETY: per this function's contract, every fd `received_fds` returns (FD objects at
            // aligned, in-range listed offsets, non-negative, each number once) is open and
            // owned by the caller, who passes that ownership to us; each becomes exactly one
            // OwnedFd, so each is closed exactly once.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            owned.insert(std::os::fd::AsRawFd::as_raw_fd(&fd), fd);
        }
        match validate(data, offsets, true) {
            Ok(fd_objects) => {
                let mut fds = BTreeMap::new();
                for (offset, raw) in fd_objects {
                    // Every validated FD object is one of the named fds.
                    fds.insert(offset, owned.remove(&raw));
                }
                let mut parcel = Parcel::new();
                parcel.data = data.to_vec();
                parcel.objects = offsets.to_vec();
                parcel.fds = fds;
                parcel.release = release;
                Ok(parcel)
            }
            Err(e) => {
                drop(owned);
                if let Some(release) = release {
                    release();
                }
                Err(e)
            }
        }
    }
}
