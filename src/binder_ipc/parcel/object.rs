//! Binder objects as plain values: what a `flat_binder_object` in a parcel names.

use crate::binder_ipc::uapi::{
    FlatBinderObject, BINDER_TYPE_BINDER, BINDER_TYPE_HANDLE, BINDER_TYPE_WEAK_BINDER,
    BINDER_TYPE_WEAK_HANDLE, FLAT_BINDER_FLAG_ACCEPTS_FDS,
};

/// libbinder's default scheduling bits on every binder object it flattens:
/// `SCHED_NORMAL` (policy 0 at bit 9) with minimum priority 19 in the low byte.
pub const DEFAULT_SCHED_FLAGS: u32 = 19;

/// The flags libbinder writes on a local binder: accepts fds, default scheduling.
pub const LOCAL_BINDER_FLAGS: u32 = FLAT_BINDER_FLAG_ACCEPTS_FDS | DEFAULT_SCHED_FLAGS;

/// A binder object at the parcel layer: plain numbers, no reference counting.
///
/// The runtime maps these to its own typed objects (local nodes, proxies) and does the
/// reference counting the driver expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinderObject {
    /// A binder that lives in the process that writes it (`BINDER_TYPE_BINDER` or
    /// `BINDER_TYPE_WEAK_BINDER`): the driver finds or creates the node by `(ptr, cookie)`.
    Local {
        /// The node's address in its process (libbinder: the weak-refs object).
        ptr: u64,
        /// Extra data for the owner (libbinder: the `BBinder` address).
        cookie: u64,
        /// Strong (`true`) or weak reference.
        strong: bool,
    },
    /// A reference to a binder in another process, by this process's handle
    /// (`BINDER_TYPE_HANDLE` or `BINDER_TYPE_WEAK_HANDLE`).
    Handle {
        /// The handle (0 is the context manager).
        handle: u32,
        /// Strong (`true`) or weak reference.
        strong: bool,
    },
}

impl BinderObject {
    /// A strong reference to a local binder.
    pub fn local(ptr: u64, cookie: u64) -> Self {
        BinderObject::Local {
            ptr,
            cookie,
            strong: true,
        }
    }

    /// A strong reference to a remote binder by handle.
    pub fn handle(handle: u32) -> Self {
        BinderObject::Handle {
            handle,
            strong: true,
        }
    }

    /// True for strong references.
    pub fn is_strong(&self) -> bool {
        match *self {
            BinderObject::Local { strong, .. } | BinderObject::Handle { strong, .. } => strong,
        }
    }

    /// The `flat_binder_object` libbinder writes for this object.
    pub fn to_flat(&self) -> FlatBinderObject {
        let mut flat = FlatBinderObject::default();
        match *self {
            BinderObject::Local {
                ptr,
                cookie,
                strong,
            } => {
                flat.hdr.type_ = if strong {
                    BINDER_TYPE_BINDER
                } else {
                    BINDER_TYPE_WEAK_BINDER
                };
                flat.flags = LOCAL_BINDER_FLAGS;
                flat.binder = ptr;
                flat.cookie = cookie;
            }
            BinderObject::Handle { handle, strong } => {
                flat.hdr.type_ = if strong {
                    BINDER_TYPE_HANDLE
                } else {
                    BINDER_TYPE_WEAK_HANDLE
                };
                flat.flags = DEFAULT_SCHED_FLAGS;
                flat.binder = u64::from(handle);
            }
        }
        flat
    }

    /// The object a `flat_binder_object` names: `Ok(None)` for libbinder's null binder
    /// (`BINDER_TYPE_BINDER` with pointer and cookie 0), `Err(type)` for a type that is not a
    /// binder or handle.
    pub fn from_flat(flat: &FlatBinderObject) -> Result<Option<Self>, u32> {
        let null = flat.binder == 0 && flat.cookie == 0;
        match flat.hdr.type_ {
            BINDER_TYPE_BINDER | BINDER_TYPE_WEAK_BINDER if null => Ok(None),
            BINDER_TYPE_BINDER => Ok(Some(BinderObject::local(flat.binder, flat.cookie))),
            BINDER_TYPE_WEAK_BINDER => Ok(Some(BinderObject::Local {
                ptr: flat.binder,
                cookie: flat.cookie,
                strong: false,
            })),
            BINDER_TYPE_HANDLE => Ok(Some(BinderObject::handle(flat.handle()))),
            BINDER_TYPE_WEAK_HANDLE => Ok(Some(BinderObject::Handle {
                handle: flat.handle(),
                strong: false,
            })),
            other => Err(other),
        }
    }
}

/// A binder's stability level, written as an `i32` after every binder object (libbinder's
/// `Stability::getRepr`, an `int16_t` level widened to `i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stability(pub i32);

impl Stability {
    /// No stability declared (libbinder writes this for a null binder).
    pub const UNDECLARED: Stability = Stability(0);
    /// Vendor partition.
    pub const VENDOR: Stability = Stability(0b000011);
    /// System partition: what libbinder marks binders compiled into system code with.
    pub const SYSTEM: Stability = Stability(0b001100);
    /// A stable (VINTF) interface.
    pub const VINTF: Stability = Stability(0b111111);

    /// The wire format version Android 12 stamps into its `Category` (`kBinderWireFormatVersion`).
    pub const ANDROID_12_WIRE_VERSION: u8 = 1;

    /// Android 12's encoding of `self`: its `Category { u8 version, u8 reserved[2], u8 level }`
    /// read as a little-endian `i32`, i.e. `level << 24 | 1`. Android 11 and 13+ write the bare
    /// level (what [`Parcel::write_binder`](super::Parcel::write_binder) writes).
    pub fn android12_wire(self) -> i32 {
        ((self.0 & 0xff) << 24) | i32::from(Self::ANDROID_12_WIRE_VERSION)
    }

    /// The level a stability word read from the wire stands for: the bare level (Android 11,
    /// 13+) as is, and Android 12's `Category` (`level << 24 | version 1`, reserved bytes
    /// zero) as its level. Any other word is returned unchanged, for the caller to refuse.
    pub fn from_wire(word: i32) -> Stability {
        let bytes = word.to_le_bytes();
        let category = bytes[0] == Self::ANDROID_12_WIRE_VERSION && bytes[1] == 0 && bytes[2] == 0;
        if category {
            Stability(i32::from(bytes[3]))
        } else {
            Stability(word)
        }
    }

    /// True for the levels a non-null binder may carry (vendor, system, VINTF); libbinder
    /// refuses to read a binder with any other, and a null binder with anything but
    /// [`Stability::UNDECLARED`].
    pub fn is_declared(self) -> bool {
        matches!(
            self,
            Stability::VENDOR | Stability::SYSTEM | Stability::VINTF
        )
    }
}

impl Default for Stability {
    fn default() -> Self {
        Stability::SYSTEM
    }
}
