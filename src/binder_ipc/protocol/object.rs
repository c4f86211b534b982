//! Binder objects inside a transaction buffer, found by the kernel's rules
//! (`binder_get_object`): the offset is 4-aligned, the header is known, and the whole object
//! lies inside the data.

use crate::binder_ipc::uapi::*;
use bytemuck::pod_read_unaligned;
use std::mem::size_of;

/// One object of a transaction, as read from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// BINDER, WEAK_BINDER, HANDLE or WEAK_HANDLE.
    Binder(FlatBinderObject),
    /// FD.
    Fd(BinderFdObject),
    /// PTR (scatter-gather buffer).
    Ptr(BinderBufferObject),
    /// FDA (fd array inside a parent buffer).
    Fda(BinderFdArrayObject),
}

impl Object {
    /// Size of the object in bytes.
    pub fn size(&self) -> usize {
        match self {
            Object::Binder(_) => size_of::<FlatBinderObject>(),
            Object::Fd(_) => size_of::<BinderFdObject>(),
            Object::Ptr(_) => size_of::<BinderBufferObject>(),
            Object::Fda(_) => size_of::<BinderFdArrayObject>(),
        }
    }
}

/// The object at `offset` in `data`, or `None` when the kernel would find none there.
pub fn object_at(data: &[u8], offset: u64) -> Option<Object> {
    let off = usize::try_from(offset).ok()?;
    if off % 4 != 0 {
        return None;
    }
    let ty: u32 = pod_read_unaligned(data.get(off..off.checked_add(4)?)?);
    let size = match ty {
        BINDER_TYPE_BINDER
        | BINDER_TYPE_WEAK_BINDER
        | BINDER_TYPE_HANDLE
        | BINDER_TYPE_WEAK_HANDLE => size_of::<FlatBinderObject>(),
        BINDER_TYPE_FD => size_of::<BinderFdObject>(),
        BINDER_TYPE_PTR => size_of::<BinderBufferObject>(),
        BINDER_TYPE_FDA => size_of::<BinderFdArrayObject>(),
        _ => return None,
    };
    let bytes = data.get(off..off.checked_add(size)?)?;
    Some(match ty {
        BINDER_TYPE_FD => Object::Fd(pod_read_unaligned(bytes)),
        BINDER_TYPE_PTR => Object::Ptr(pod_read_unaligned(bytes)),
        BINDER_TYPE_FDA => Object::Fda(pod_read_unaligned(bytes)),
        _ => Object::Binder(pod_read_unaligned(bytes)),
    })
}

/// Rounds `n` up to a multiple of 8, or `None` when that overflows (a length near `u64::MAX`
/// from a client). Every size a client sends goes through this, never through an unchecked
/// `align8`.
pub const fn checked_align8(n: u64) -> Option<u64> {
    match n.checked_add(7) {
        Some(m) => Some(m & !7),
        None => None,
    }
}

/// The offsets array as `u64`s (a trailing partial entry is ignored).
pub fn offsets(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(pod_read_unaligned::<u64>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_objects_by_kernel_rules() {
        let obj = FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_HANDLE,
            },
            binder: 3,
            ..Default::default()
        };
        let mut data = vec![0u8; 4];
        data.extend_from_slice(bytemuck::bytes_of(&obj));
        assert_eq!(object_at(&data, 4), Some(Object::Binder(obj)));
        assert_eq!(object_at(&data, 2), None, "misaligned");
        assert_eq!(object_at(&data, 0), None, "unknown type");
        assert_eq!(object_at(&data[..20], 4), None, "cut short");
        assert_eq!(object_at(&data, u64::MAX), None);
    }

    #[test]
    fn checked_align8_refuses_overflow() {
        assert_eq!(checked_align8(0), Some(0));
        assert_eq!(checked_align8(1), Some(8));
        assert_eq!(checked_align8(u64::MAX - 7), Some(u64::MAX - 7));
        assert_eq!(checked_align8(u64::MAX - 6), None);
        assert_eq!(checked_align8(u64::MAX), None);
    }
}
