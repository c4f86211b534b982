//! What code generated from `.aidl` files by the `bittube-aidl` build-time generator runs on:
//! the [`AidlValue`] encoding of every AIDL type (AOSP's bytes for the same `.aidl`), the
//! [`ParcelFileDescriptor`] type, and, with feature `tokio`, the async adapters
//! ([`blocking`], [`AsyncServerStats`]).
//!
//! The wire rules (AOSP's, as libbinder's C++ and Rust backends write them):
//! - `boolean`, `byte`, `char` and `int` are one `i32` each; `long` an `i64`; `float`/`double`
//!   as themselves; `String` (with or without `@utf8InCpp`) a UTF-16 string (`-1` for null).
//! - An array or `List<T>` is an `i32` length (`-1` for null) and its elements; a `byte[]` is
//!   packed (padded to 4 bytes at its end).
//! - A parcelable (a structured one, a union, a `ParcelFileDescriptor`) is `1` then its body,
//!   or `0` for null; a structured parcelable's body is size-prefixed
//!   ([`Parcel::write_sized`]), a union's is its tag and the field.
//! - `IBinder` and interfaces are a flat binder object (a null one for null).

use crate::binder_ipc::parcel::Parcel;
use crate::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState};
use crate::bittube::TubeEnd;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The most memory (bytes of elements) an `out` array argument may ask for: the service
/// allocates the elements before the call, so a caller may not make it allocate without bound.
pub const MAX_OUT_ARRAY_BYTES: usize = 1 << 20;

/// The most elements an array read reserves before reading them.
const PREALLOCATE: usize = 64;

/// A value of an AIDL type: written by reference (fds are duplicated, as AOSP does), read
/// into a new value. Arrays have their own encoding hooks because `byte[]` is packed.
pub trait AidlValue: Sized {
    /// Writes the value.
    fn write_aidl(&self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError>;
    /// Reads a value.
    fn read_aidl(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError>;

    /// Writes an array of values: the length, then each element.
    fn write_array(
        values: &[Self],
        parcel: &mut Parcel,
        process: &ProcessState,
    ) -> Result<(), BinderError> {
        parcel.write_i32(array_len(values.len())?)?;
        values
            .iter()
            .try_for_each(|v| v.write_aidl(parcel, process))
    }

    /// Reads an array (`None` for a null one). A length that the parcel cannot hold (every
    /// element takes at least 4 bytes) is refused before anything is allocated.
    fn read_array(
        parcel: &mut Parcel,
        process: &ProcessState,
    ) -> Result<Option<Vec<Self>>, BinderError> {
        let Some(len) = read_array_len(parcel, 4)? else {
            return Ok(None);
        };
        // The length is bounded by the bytes left, not by what an element takes in memory:
        // grow as elements arrive instead of reserving `len` large elements up front.
        let mut values = Vec::with_capacity(len.min(PREALLOCATE));
        for _ in 0..len {
            values.push(Self::read_aidl(parcel, process)?);
        }
        Ok(Some(values))
    }
}

/// An AIDL type that may be `@nullable`: how null is written and recognised.
pub trait AidlNullable: AidlValue {
    /// Writes `Some` as the value, `None` as this type's null.
    fn write_nullable(
        value: Option<&Self>,
        parcel: &mut Parcel,
        process: &ProcessState,
    ) -> Result<(), BinderError>;
    /// Reads a value or this type's null.
    fn read_nullable(
        parcel: &mut Parcel,
        process: &ProcessState,
    ) -> Result<Option<Self>, BinderError>;
}

/// An array length as its `i32` on the wire.
fn array_len(len: usize) -> Result<i32, BinderError> {
    i32::try_from(len).map_err(|_| BinderError::BadValue(format!("an array of {len} elements")))
}

/// Reads an array length: `None` for `-1`; a length whose elements (`min_elem` bytes each at
/// least) would not fit in what is left of the parcel is an error.
pub fn read_array_len(parcel: &mut Parcel, min_elem: usize) -> Result<Option<usize>, BinderError> {
    let pos = parcel.data_position();
    let len = parcel.read_i32()?;
    if len == -1 {
        return Ok(None);
    }
    let fits = usize::try_from(len).ok().filter(|&n| {
        n.checked_mul(min_elem)
            .is_some_and(|b| b <= parcel.data_avail())
    });
    match fits {
        Some(n) => Ok(Some(n)),
        None => {
            parcel.set_data_position(pos);
            Err(BinderError::BadValue(format!(
                "array length {len} at byte {pos}: more than the {} bytes left",
                parcel.data_avail()
            )))
        }
    }
}

/// The error for a null where the type is not `@nullable` (AOSP's `UNEXPECTED_NULL`).
pub fn unexpected_null(what: &str) -> BinderError {
    BinderError::BadValue(format!("unexpected null: {what} is not @nullable"))
}

/// Writes the length an `out` array argument asks the service to fill (`-1` for null), as
/// AOSP's proxies do.
pub fn write_out_array_len<T>(
    parcel: &mut Parcel,
    values: Option<&Vec<T>>,
) -> Result<(), BinderError> {
    let len = match values {
        Some(v) => array_len(v.len())?,
        None => -1,
    };
    Ok(parcel.write_i32(len)?)
}

/// Reads the length of an `out` array argument and makes that many default elements (at most
/// [`MAX_OUT_ARRAY_BYTES`] of them); `None` for `-1`.
pub fn read_out_array<T: Default>(parcel: &mut Parcel) -> Result<Option<Vec<T>>, BinderError> {
    let len = parcel.read_i32()?;
    if len == -1 {
        return Ok(None);
    }
    let elem = std::mem::size_of::<T>().max(1);
    let fits = usize::try_from(len).ok().filter(|&n| {
        n.checked_mul(elem)
            .is_some_and(|b| b <= MAX_OUT_ARRAY_BYTES)
    });
    match fits {
        Some(n) => Ok(Some((0..n).map(|_| T::default()).collect())),
        None => Err(BinderError::BadValue(format!(
            "out array length {len}: at most {} elements of {elem} bytes",
            MAX_OUT_ARRAY_BYTES / elem
        ))),
    }
}

macro_rules! word_value {
    ($($t:ty => $w:ident, $r:ident;)*) => {$(
        impl AidlValue for $t {
            fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
                Ok(parcel.$w(*self)?)
            }
            fn read_aidl(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
                Ok(parcel.$r()?)
            }
        }
    )*};
}

word_value! {
    i32 => write_i32, read_i32;
    i64 => write_i64, read_i64;
    f32 => write_f32, read_f32;
    f64 => write_f64, read_f64;
    bool => write_bool, read_bool;
}

/// `void`: nothing on the wire.
impl AidlValue for () {
    fn write_aidl(&self, _: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(())
    }
    fn read_aidl(_: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(())
    }
}

/// `char`: a UTF-16 unit in an `i32`.
impl AidlValue for u16 {
    fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_char(*self)?)
    }
    fn read_aidl(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_char()?)
    }
}

/// Reads packed bytes (a `byte[]` body after its length).
fn read_packed(parcel: &mut Parcel) -> Result<Option<Vec<u8>>, BinderError> {
    Ok(parcel.read_byte_array()?)
}

/// `byte`: an `i32` on the wire; `byte[]` packed.
impl AidlValue for i8 {
    fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_byte(*self)?)
    }
    fn read_aidl(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_byte()?)
    }
    fn write_array(v: &[Self], parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_byte_array(bytemuck::cast_slice(v))?)
    }
    fn read_array(parcel: &mut Parcel, _: &ProcessState) -> Result<Option<Vec<Self>>, BinderError> {
        Ok(read_packed(parcel)?.map(|b| b.into_iter().map(|x| x as i8).collect()))
    }
}

/// The element type of `byte[]` in generated code (`Vec<u8>`, as AOSP's Rust backend has it).
impl AidlValue for u8 {
    fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_byte(*self as i8)?)
    }
    fn read_aidl(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_byte()? as u8)
    }
    fn write_array(v: &[Self], parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_byte_array(v)?)
    }
    fn read_array(parcel: &mut Parcel, _: &ProcessState) -> Result<Option<Vec<Self>>, BinderError> {
        read_packed(parcel)
    }
}

impl AidlValue for String {
    fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(parcel.write_utf8_as_utf16(self)?)
    }
    fn read_aidl(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        parcel
            .read_string16()?
            .ok_or_else(|| unexpected_null("a String"))
    }
}

impl AidlNullable for String {
    fn write_nullable(
        v: Option<&Self>,
        p: &mut Parcel,
        _: &ProcessState,
    ) -> Result<(), BinderError> {
        Ok(p.write_nullable_string16(v.map(String::as_str))?)
    }
    fn read_nullable(p: &mut Parcel, _: &ProcessState) -> Result<Option<Self>, BinderError> {
        Ok(p.read_string16()?)
    }
}

impl<T: AidlValue> AidlValue for Vec<T> {
    fn write_aidl(&self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError> {
        T::write_array(self, parcel, process)
    }
    fn read_aidl(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError> {
        T::read_array(parcel, process)?.ok_or_else(|| unexpected_null("an array"))
    }
}

impl<T: AidlValue> AidlNullable for Vec<T> {
    fn write_nullable(
        v: Option<&Self>,
        p: &mut Parcel,
        ps: &ProcessState,
    ) -> Result<(), BinderError> {
        write_nullable_slice(v.map(Vec::as_slice), p, ps)
    }
    fn read_nullable(p: &mut Parcel, ps: &ProcessState) -> Result<Option<Self>, BinderError> {
        T::read_array(p, ps)
    }
}

/// `@nullable T`: written and read the way `T` writes its null.
impl<T: AidlNullable> AidlValue for Option<T> {
    fn write_aidl(&self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError> {
        T::write_nullable(self.as_ref(), parcel, process)
    }
    fn read_aidl(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError> {
        T::read_nullable(parcel, process)
    }
}

impl AidlValue for Binder {
    fn write_aidl(&self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError> {
        process.write_binder(parcel, self)
    }
    fn read_aidl(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError> {
        process
            .read_binder(parcel)?
            .ok_or_else(|| unexpected_null("an IBinder"))
    }
}

impl AidlNullable for Binder {
    fn write_nullable(
        v: Option<&Self>,
        p: &mut Parcel,
        ps: &ProcessState,
    ) -> Result<(), BinderError> {
        match v {
            Some(b) => ps.write_binder(p, b),
            None => Ok(p.write_null_binder()?),
        }
    }
    fn read_nullable(p: &mut Parcel, ps: &ProcessState) -> Result<Option<Self>, BinderError> {
        ps.read_binder(p)
    }
}

/// AIDL's `ParcelFileDescriptor`: an fd (written as a duplicate; the value keeps its own).
#[derive(Debug)]
pub struct ParcelFileDescriptor(pub OwnedFd);

impl AsFd for ParcelFileDescriptor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl From<OwnedFd> for ParcelFileDescriptor {
    fn from(fd: OwnedFd) -> Self {
        ParcelFileDescriptor(fd)
    }
}

/// Writes `fd` as a present `ParcelFileDescriptor` parcelable (`1`, `0`, the fd object).
fn write_pfd(parcel: &mut Parcel, fd: BorrowedFd<'_>) -> Result<(), BinderError> {
    parcel.write_i32(1)?;
    Ok(parcel.write_dup_parcel_file_descriptor(fd)?)
}

/// [`AidlValue`] and [`AidlNullable`] for a type that travels as a `ParcelFileDescriptor`:
/// written as `1`, `0` and a duplicate of its fd (`0` alone for null); read by `$from`, which
/// makes the value of the received fd or refuses it. `$what` names the type in the
/// unexpected-null error; attributes (docs) go on the `AidlValue` impl.
macro_rules! pfd_value {
    ($(#[$attr:meta])* $t:ty, $what:literal, $from:expr) => {
        $(#[$attr])*
        impl AidlValue for $t {
            fn write_aidl(&self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
                write_pfd(parcel, self.as_fd())
            }
            fn read_aidl(parcel: &mut Parcel, ps: &ProcessState) -> Result<Self, BinderError> {
                Self::read_nullable(parcel, ps)?.ok_or_else(|| unexpected_null($what))
            }
        }

        impl AidlNullable for $t {
            fn write_nullable(
                v: Option<&Self>,
                p: &mut Parcel,
                _: &ProcessState,
            ) -> Result<(), BinderError> {
                match v {
                    Some(v) => write_pfd(p, v.as_fd()),
                    None => Ok(p.write_i32(0)?),
                }
            }
            fn read_nullable(p: &mut Parcel, _: &ProcessState) -> Result<Option<Self>, BinderError> {
                p.read_nullable_parcel_file_descriptor()?
                    .map($from)
                    .transpose()
            }
        }
    };
}

pfd_value!(ParcelFileDescriptor, "a ParcelFileDescriptor", |fd| Ok(
    ParcelFileDescriptor(fd)
));

pfd_value!(
    /// A BitTube end travels as a `ParcelFileDescriptor` (declare it in AIDL as
    /// `parcelable TubeEnd rust_type "bittube::bittube::TubeEnd";`); on receipt the fd must be
    /// a SOCK_SEQPACKET Unix socket, or the read fails.
    TubeEnd,
    "a tube end",
    |fd| TubeEnd::try_from_socket(fd)
        .map_err(|e| BinderError::BadValue(format!("not a tube end: {e}")))
);

/// Calls `binder` with `code` and `data` (written from its start) and returns the reply
/// (`None` for a oneway call). A proxy goes through the driver; a local service is called
/// directly, as libbinder's `BBinder::transact` does, with this process's pid and euid as the
/// caller, so a callback handed out by this process can be called here too.
pub fn transact(
    binder: &Binder,
    process: &ProcessState,
    code: u32,
    mut data: Parcel,
    oneway: bool,
) -> Result<Option<Parcel>, BinderError> {
    let service = match binder {
        Binder::Remote(p) if oneway => return p.transact_oneway(code, &data).map(|()| None),
        Binder::Remote(p) => return p.transact(code, &data).map(Some),
        Binder::Local(service) => service,
    };
    let call = CallContext {
        pid: std::process::id() as i32,
        uid: nix::unistd::geteuid().as_raw(),
        oneway,
        process: process.clone(),
    };
    data.set_data_position(0);
    let mut reply = Parcel::new();
    match service.on_transact(code, &mut data, &mut reply, &call) {
        Ok(()) if oneway => Ok(None),
        Ok(()) => {
            reply.set_data_position(0);
            Ok(Some(reply))
        }
        // What the runtime would send as an exception reply.
        Err(BinderError::Exception(ex)) if !oneway => {
            let mut reply = Parcel::new();
            reply.write_exception(&ex)?;
            reply.set_data_position(0);
            Ok(Some(reply))
        }
        Err(e) => Err(e),
    }
}

/// Writes a borrowed nullable array (`-1` for `None`), as proxies take them.
pub fn write_nullable_slice<T: AidlValue>(
    values: Option<&[T]>,
    parcel: &mut Parcel,
    process: &ProcessState,
) -> Result<(), BinderError> {
    match values {
        Some(v) => T::write_array(v, parcel, process),
        None => Ok(parcel.write_i32(-1)?),
    }
}

/// Reads the `1`/`0` before a parcelable; `0` is null.
pub fn read_present(parcel: &mut Parcel) -> Result<bool, BinderError> {
    Ok(parcel.read_present()?)
}

/// A field of a structured parcelable that AOSP's Rust backend holds as `Option` because the
/// type has no default (`IBinder`, interfaces, `ParcelFileDescriptor`, `rust_type`
/// parcelables) while the AIDL type is not `@nullable`: `None` cannot be written.
pub fn write_required<T: AidlValue>(
    value: &Option<T>,
    parcel: &mut Parcel,
    process: &ProcessState,
    field: &str,
) -> Result<(), BinderError> {
    match value {
        Some(v) => v.write_aidl(parcel, process),
        None => Err(unexpected_null(field)),
    }
}

#[cfg(feature = "tokio")]
mod tokio_support;
#[cfg(feature = "tokio")]
pub use tokio_support::*;
