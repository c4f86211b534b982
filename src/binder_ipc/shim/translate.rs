//! Object translation inside a new transaction buffer (`binder_translate_binder`,
//! `_handle`, `_fd`, `_fd_array`, the PTR case and `binder_fixup_parent`), with the kernel's
//! checks on every number the sender chose: object offsets in order and inside the data, PTR
//! lengths within the scatter-gather space left (before any rounding), parents that are earlier
//! PTR objects, fixups in order (`binder_validate_fixup`) and inside their parent, FDA counts
//! that neither overflow nor leave their parent. The receiver's buffer is written only through
//! its bounded view ([`BufferMut`]).

use super::alloc::BufferMut;
use super::error::{Check, TxnError};
use super::limits::Cap;
use super::state::*;
use super::transaction::{Route, Sender};
use crate::binder_ipc::protocol::object::{self, checked_align8, Object};
use crate::binder_ipc::uapi::*;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

/// One transaction's translation: who sends, where the buffer is, and what it collects
/// (references to release with the buffer, fds to install at read).
#[derive(Debug)]
pub struct Translation {
    /// The sender.
    pub sender: Sender,
    /// The receiver.
    pub route: Route,
    /// The buffer's offset in the receiver's area.
    pub buf_off: BufferId,
    /// The files the sender's FD/FDA objects name, in order.
    pub fds: std::vec::IntoIter<OwnedFd>,
    /// References the buffer's objects hold.
    pub releases: Vec<Release>,
    /// fds to install at read: (area offset for the number, the file).
    pub fd_fixups: Vec<(u64, OwnedFd)>,
    /// Buffer offsets of FDA fd numbers (closed with the buffer).
    pub fda_fds: Vec<u64>,
}

impl Translation {
    /// A translation into the buffer at `buf_off` of `route.proc`.
    pub fn new(sender: Sender, route: Route, buf_off: BufferId, fds: Vec<OwnedFd>) -> Translation {
        Translation {
            sender,
            route,
            buf_off,
            fds: fds.into_iter(),
            releases: Vec::new(),
            fd_fixups: Vec::new(),
            fda_fds: Vec::new(),
        }
    }

    /// The next file, for an FD object or FDA entry.
    fn next_fd(&mut self) -> Result<OwnedFd, TxnError> {
        if !self.route.accept_fds {
            return Err(TxnError::failed(Check::FdsNotAccepted, Errno::EPERM));
        }
        self.fds
            .next()
            .ok_or(TxnError::failed(Check::MissingFd, Errno::EBADF))
    }

    /// The area offset of buffer offset `at` (where the device writes an fd number).
    fn area_pos(&self, at: u64) -> Result<u64, TxnError> {
        self.buf_off.0.checked_add(at).ok_or(access(Errno::EFAULT))
    }
}

/// A PTR object met while translating.
#[derive(Debug, Clone, Copy)]
struct PtrSeen {
    /// Its index in the offsets array.
    index: u64,
    /// Its offset in the data.
    data_off: u64,
    /// Where its bytes landed, from the start of the transaction buffer.
    at: u64,
    /// The sender's pointer (the kernel checks FDA alignment on both sides).
    sender_buffer: u64,
    /// The object.
    obj: BinderBufferObject,
}

/// The scatter-gather state of one transaction (the Rust driver's `ScatterGatherState`):
/// the gathered bytes, the cursor in the buffer's scatter-gather area, the PTR objects so far
/// and the kernel's fixup order state.
#[derive(Debug)]
pub struct SgState<'a> {
    /// The gathered bytes, each PTR's padded to 8, in object order.
    src: &'a [u8],
    /// Start of the scatter-gather area in the buffer.
    start: u64,
    /// Its end (the buffer's total size).
    end: u64,
    /// Bytes of it used so far (the same cursor in `src`).
    used: u64,
    ptrs: Vec<PtrSeen>,
    /// `last_fixup_obj_off`: 0 meaning none.
    last_fixup_obj: u64,
    /// `last_fixup_min_off`.
    last_fixup_min: u64,
}

impl<'a> SgState<'a> {
    /// A fresh state for the area `[start, end)` filled from `src`.
    pub fn new(src: &'a [u8], start: u64, end: u64) -> SgState<'a> {
        SgState {
            src,
            start,
            end,
            used: 0,
            ptrs: Vec::new(),
            last_fixup_obj: 0,
            last_fixup_min: 0,
        }
    }

    /// Bytes of scatter-gather space left.
    fn left(&self) -> u64 {
        (self.end - self.start).saturating_sub(self.used)
    }

    /// The earlier PTR object at offsets index `index` (`binder_validate_ptr`).
    fn parent(&self, index: u64) -> Result<PtrSeen, TxnError> {
        self.ptrs
            .iter()
            .find(|p| p.index == index)
            .copied()
            .ok_or(TxnError::failed(Check::BadParent, Errno::EINVAL))
    }

    /// The kernel's `binder_validate_fixup`: a fixup at `fixup_offset` inside the buffer of
    /// the PTR object at data offset `parent_data_off` is allowed only in order — into the
    /// buffer last fixed up or one of its ancestors, at or past the last fixed-up position.
    /// Like the kernel, "no fixup yet" is data offset 0, so a parent at offset 0 takes none.
    fn validate_fixup(&self, parent_data_off: u64, fixup_offset: u64) -> Result<(), TxnError> {
        let refuse = TxnError::failed(Check::FixupOrder, Errno::EINVAL);
        if self.last_fixup_obj == 0 {
            return Err(refuse);
        }
        let (mut last, mut min) = (self.last_fixup_obj, self.last_fixup_min);
        while last != parent_data_off {
            let p = self
                .ptrs
                .iter()
                .find(|p| p.data_off == last)
                .ok_or(refuse)?;
            if p.obj.flags & BINDER_BUFFER_FLAG_HAS_PARENT == 0 {
                return Err(refuse);
            }
            min = p.obj.parent_offset.checked_add(8).ok_or(refuse)?;
            last = self.parent(p.obj.parent).map_err(|_| refuse)?.data_off;
        }
        if fixup_offset >= min {
            Ok(())
        } else {
            Err(refuse)
        }
    }
}

fn access(e: Errno) -> TxnError {
    TxnError::failed(Check::BufferAccess, e)
}

impl State {
    /// The new transaction's buffer, as a bounded view.
    pub(super) fn txn_buffer(&mut self, cx: &Translation) -> Result<BufferMut<'_>, TxnError> {
        let b = self
            .procs
            .get_mut(&cx.route.proc)
            .and_then(|p| p.area.buffer_mut(cx.buf_off));
        debug_assert!(b.is_some(), "buffer {} of a new txn is gone", cx.buf_off);
        b.ok_or(access(Errno::EFAULT))
    }

    /// Writes `v` at `at` in the new buffer.
    fn put_obj<T: bytemuck::Pod>(
        &mut self,
        cx: &Translation,
        at: u64,
        v: &T,
    ) -> Result<(), TxnError> {
        self.txn_buffer(cx)?.write(at, v).map_err(access)
    }

    /// Translates every object the offsets array names.
    pub(super) fn translate_objects(
        &mut self,
        cx: &mut Translation,
        sg: &mut SgState<'_>,
        data: &[u8],
        offs: &[u8],
    ) -> Result<(), TxnError> {
        let mut off_min = 0u64;
        for (idx, off) in object::offsets(offs).enumerate() {
            let bad = TxnError::failed(Check::BadObject, Errno::EINVAL);
            let Some(obj) = object::object_at(data, off).filter(|_| off >= off_min) else {
                self.user_error();
                return Err(bad);
            };
            off_min = off.checked_add(obj.size() as u64).ok_or(bad)?;
            match obj {
                Object::Binder(fbo) => {
                    let out = self.translate_binder(cx, fbo)?;
                    self.put_obj(cx, off, &out)?;
                }
                Object::Fd(mut fo) => {
                    let file = cx.next_fd()?;
                    let pos = cx.area_pos(off.checked_add(8).ok_or(bad)?)?;
                    cx.fd_fixups.push((pos, file));
                    fo.pad_binder = 0;
                    self.put_obj(cx, off, &fo)?;
                }
                Object::Ptr(bo) => self.translate_ptr(cx, sg, idx as u64, off, bo)?,
                Object::Fda(fa) => self.translate_fda(cx, sg, off, fa)?,
            }
        }
        Ok(())
    }

    /// A PTR object: its bytes go to the next place in the scatter-gather area, its pointer
    /// is rewritten, and with a parent the parent's pointer slot is fixed up.
    fn translate_ptr(
        &mut self,
        cx: &mut Translation,
        sg: &mut SgState<'_>,
        index: u64,
        off: u64,
        mut bo: BinderBufferObject,
    ) -> Result<(), TxnError> {
        // Checked before rounding: a length near u64::MAX is refused here, never wrapped.
        if bo.length > sg.left() {
            self.user_error();
            return Err(TxnError::failed(Check::PtrTooLarge, Errno::EINVAL));
        }
        let too_large = TxnError::failed(Check::PtrTooLarge, Errno::EINVAL);
        let padded = checked_align8(bo.length).ok_or(too_large)?;
        let (from, len) = (
            usize::try_from(sg.used).map_err(|_| too_large)?,
            usize::try_from(bo.length).map_err(|_| too_large)?,
        );
        let src = from
            .checked_add(len)
            .and_then(|end| sg.src.get(from..end))
            .ok_or(TxnError::failed(Check::SizeMismatch, Errno::EFAULT))?;
        let at = sg.start.checked_add(sg.used).ok_or(too_large)?;
        self.txn_buffer(cx)?.copy_into(at, src).map_err(access)?;
        sg.used = sg.used.checked_add(padded).ok_or(too_large)?;
        let sender_buffer = bo.buffer;
        let client_base = self
            .procs
            .get(&cx.route.proc)
            .map(|p| p.area.client_base)
            .unwrap_or(0);
        bo.buffer = client_base
            .checked_add(cx.buf_off.0)
            .and_then(|b| b.checked_add(at))
            .ok_or(access(Errno::EFAULT))?;
        if bo.flags & BINDER_BUFFER_FLAG_HAS_PARENT != 0 {
            self.fixup_parent(cx, sg, &bo)?;
        }
        sg.last_fixup_obj = off;
        sg.last_fixup_min = 0;
        sg.ptrs.push(PtrSeen {
            index,
            data_off: off,
            at,
            sender_buffer,
            obj: bo,
        });
        self.put_obj(cx, off, &bo)
    }

    /// `binder_fixup_parent`: writes `bo`'s new pointer into its parent's buffer.
    fn fixup_parent(
        &mut self,
        cx: &Translation,
        sg: &SgState<'_>,
        bo: &BinderBufferObject,
    ) -> Result<(), TxnError> {
        let parent = sg.parent(bo.parent)?;
        sg.validate_fixup(parent.data_off, bo.parent_offset)?;
        let no_room = TxnError::failed(Check::NoRoomForPointer, Errno::EINVAL);
        let last_slot = parent.obj.length.checked_sub(8).ok_or(no_room)?;
        if bo.parent_offset > last_slot {
            return Err(no_room);
        }
        let pos = parent.at.checked_add(bo.parent_offset).ok_or(no_room)?;
        self.put_obj(cx, pos, &bo.buffer)
    }

    /// An FDA object (`binder_translate_fd_array`): `num_fds` fd slots inside its parent's
    /// buffer, filled with the receiver's fd numbers at read.
    fn translate_fda(
        &mut self,
        cx: &mut Translation,
        sg: &mut SgState<'_>,
        off: u64,
        fa: BinderFdArrayObject,
    ) -> Result<(), TxnError> {
        let parent = sg.parent(fa.parent)?;
        sg.validate_fixup(parent.data_off, fa.parent_offset)?;
        let no_room = TxnError::failed(Check::FdaNoRoom, Errno::EINVAL);
        let bytes = fa.num_fds.checked_mul(4).ok_or(no_room)?;
        let first = parent.at.checked_add(fa.parent_offset).ok_or(no_room)?;
        // The kernel checks nothing more for an empty array.
        if fa.num_fds > 0 {
            let room = parent.obj.length.checked_sub(bytes).ok_or(no_room)?;
            if fa.parent_offset > room {
                return Err(no_room);
            }
            let sender_first = parent.sender_buffer.wrapping_add(fa.parent_offset);
            if first % 4 != 0 || sender_first % 4 != 0 {
                return Err(TxnError::failed(Check::FdaUnaligned, Errno::EINVAL));
            }
            for k in 0..fa.num_fds {
                let file = cx.next_fd()?;
                // k * 4 < bytes, and first + bytes lies inside the parent.
                let at = first + k * 4;
                let pos = cx.area_pos(at)?;
                cx.fd_fixups.push((pos, file));
                cx.fda_fds.push(at);
            }
        }
        sg.last_fixup_obj = parent.data_off;
        sg.last_fixup_min = fa.parent_offset.checked_add(bytes).ok_or(no_room)?;
        self.put_obj(cx, off, &fa)
    }

    /// BINDER/WEAK_BINDER and HANDLE/WEAK_HANDLE objects (`binder_translate_binder`,
    /// `binder_translate_handle`).
    fn translate_binder(
        &mut self,
        cx: &mut Translation,
        fbo: FlatBinderObject,
    ) -> Result<FlatBinderObject, TxnError> {
        let ty = fbo.hdr.type_;
        if ty == BINDER_TYPE_BINDER || ty == BINDER_TYPE_WEAK_BINDER {
            self.translate_local(cx, fbo)
        } else {
            self.translate_handle(cx, fbo)
        }
    }

    /// A node of the sender's: the receiver gets a handle.
    fn translate_local(
        &mut self,
        cx: &mut Translation,
        mut fbo: FlatBinderObject,
    ) -> Result<FlatBinderObject, TxnError> {
        let strong = fbo.hdr.type_ == BINDER_TYPE_BINDER;
        let s = cx.sender;
        let existing = self
            .procs
            .get(&s.proc)
            .and_then(|p| p.nodes.get(&fbo.binder).copied());
        let node = match existing {
            Some(n) => n,
            None => {
                if !self.has_room(s.proc, Cap::Nodes) {
                    return Err(TxnError::failed(Check::NodeCap, Errno::ENOMEM));
                }
                self.new_node(s.proc, fbo.binder, fbo.cookie, fbo.flags)
            }
        };
        if self
            .nodes
            .get(&node)
            .is_some_and(|n| n.cookie != fbo.cookie)
        {
            self.user_error();
            return Err(TxnError::failed(Check::CookieMismatch, Errno::EINVAL));
        }
        let desc = self
            .inc_ref_for_node(cx.route.proc, node, strong, Some(s.conn))
            .map_err(ref_error)?;
        cx.releases.push(Release::Ref { desc, strong });
        fbo.hdr.type_ = if strong {
            BINDER_TYPE_HANDLE
        } else {
            BINDER_TYPE_WEAK_HANDLE
        };
        fbo.binder = desc.0 as u64;
        fbo.cookie = 0;
        Ok(fbo)
    }

    /// A handle of the sender's: the receiver gets the node (if it owns it) or a handle.
    fn translate_handle(
        &mut self,
        cx: &mut Translation,
        mut fbo: FlatBinderObject,
    ) -> Result<FlatBinderObject, TxnError> {
        let strong = fbo.hdr.type_ == BINDER_TYPE_HANDLE;
        let handle = Handle(fbo.handle());
        let Some(r) = self
            .procs
            .get(&cx.sender.proc)
            .and_then(|p| p.refs.get(&handle))
            .copied()
            // A strong HANDLE object needs a strong ref.
            .filter(|r| !strong || r.strong > 0)
        else {
            self.user_error();
            return Err(TxnError::failed(Check::BadObjectHandle, Errno::EINVAL));
        };
        let Some(node) = self.nodes.get(&r.node) else {
            debug_assert!(false, "ref to missing node {}", r.node);
            return Err(TxnError::failed(Check::BadObjectHandle, Errno::EINVAL));
        };
        let node_id = r.node;
        if node.owner == Some(cx.route.proc) {
            fbo.hdr.type_ = if strong {
                BINDER_TYPE_BINDER
            } else {
                BINDER_TYPE_WEAK_BINDER
            };
            fbo.binder = node.ptr;
            fbo.cookie = node.cookie;
            self.inc_node(node_id, strong, false, None)
                .map_err(ref_error)?;
            cx.releases.push(Release::Node {
                node: node_id,
                strong,
            });
        } else {
            let desc = self
                .inc_ref_for_node(cx.route.proc, node_id, strong, None)
                .map_err(ref_error)?;
            cx.releases.push(Release::Ref { desc, strong });
            fbo.binder = desc.0 as u64;
            fbo.cookie = 0;
        }
        Ok(fbo)
    }
}

/// A refused node/ref count: the ref cap (ENOMEM) or the kernel's own refusal.
fn ref_error(e: Errno) -> TxnError {
    let check = if e == Errno::ENOMEM {
        Check::RefCap
    } else {
        Check::RefCount
    };
    TxnError::failed(check, e)
}
