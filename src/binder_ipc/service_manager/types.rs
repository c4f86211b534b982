//! The parcelables `IServiceManager` returns: the `android.os.Service` union, and
//! `ServiceWithMetadata`, `ConnectionInfo`, `ServiceDebugInfo`, with their wire forms.
//!
//! A value typed as a parcelable travels as `1` then the parcelable (`0` alone for null); a
//! structured parcelable is an `i32` size and its fields; a union is an `i32` tag (the field's
//! index) and that field's value.

use crate::binder_ipc::parcel::{Parcel, ParcelError};
use crate::binder_ipc::runtime::{Binder, BinderError, ProcessState};

/// `android.os.ServiceWithMetadata`: a service and whether clients may cache it.
#[derive(Clone, Debug, Default)]
pub struct ServiceWithMetadata {
    /// The service, `None` when there is none by that name.
    pub service: Option<Binder>,
    /// A lazy service (registered with `FLAG_IS_LAZY_SERVICE`): clients should not cache it.
    pub is_lazy_service: bool,
}

/// `android.os.Service`, what `getService2`/`checkService2` return.
#[derive(Clone, Debug)]
pub enum ServiceUnion {
    /// Tag 0: the service itself.
    ServiceWithMetadata(ServiceWithMetadata),
    /// Tag 1: an `android.os.IAccessor` that hands out connections to an RPC binder service
    /// (never produced by this manager; read when a peer sends one).
    Accessor(Option<Binder>),
}

/// The union's tag for [`ServiceUnion::ServiceWithMetadata`].
pub const TAG_SERVICE_WITH_METADATA: i32 = 0;
/// The union's tag for [`ServiceUnion::Accessor`].
pub const TAG_ACCESSOR: i32 = 1;

impl ServiceUnion {
    /// The binder it carries (the service or the accessor), if any.
    pub fn binder(&self) -> Option<&Binder> {
        match self {
            ServiceUnion::ServiceWithMetadata(s) => s.service.as_ref(),
            ServiceUnion::Accessor(a) => a.as_ref(),
        }
    }

    /// Writes it as a non-null parcelable value: `1`, tag, field.
    pub fn write(&self, ps: &ProcessState, parcel: &mut Parcel) -> Result<(), BinderError> {
        parcel.write_i32(1)?;
        match self {
            ServiceUnion::ServiceWithMetadata(s) => {
                parcel.write_i32(TAG_SERVICE_WITH_METADATA)?;
                parcel.write_i32(1)?;
                parcel.write_sized(|p| {
                    write_nullable_binder(ps, p, s.service.as_ref())?;
                    p.write_bool(s.is_lazy_service)?;
                    Ok::<(), BinderError>(())
                })
            }
            ServiceUnion::Accessor(a) => {
                parcel.write_i32(TAG_ACCESSOR)?;
                write_nullable_binder(ps, parcel, a.as_ref())
            }
        }
    }

    /// Reads what [`ServiceUnion::write`] writes. A null union, an unknown tag or a null
    /// `ServiceWithMetadata` is an error, as in AOSP's generated code.
    pub fn read(ps: &ProcessState, parcel: &mut Parcel) -> Result<ServiceUnion, BinderError> {
        let pos = parcel.data_position();
        if !parcel.read_present()? {
            return Err(ParcelError::UnexpectedNull {
                what: "android.os.Service",
                pos,
            }
            .into());
        }
        let tag_pos = parcel.data_position();
        match parcel.read_i32()? {
            TAG_SERVICE_WITH_METADATA => {
                if !parcel.read_present()? {
                    return Err(ParcelError::UnexpectedNull {
                        what: "ServiceWithMetadata",
                        pos: tag_pos + 4,
                    }
                    .into());
                }
                let s = parcel.read_sized(|p, end| {
                    let mut s = ServiceWithMetadata::default();
                    if p.data_position() < end {
                        s.service = ps.read_binder(p)?;
                    }
                    if p.data_position() < end {
                        s.is_lazy_service = p.read_bool()?;
                    }
                    Ok::<_, BinderError>(s)
                })?;
                Ok(ServiceUnion::ServiceWithMetadata(s))
            }
            TAG_ACCESSOR => Ok(ServiceUnion::Accessor(ps.read_binder(parcel)?)),
            value => Err(ParcelError::BadFlag {
                what: "android.os.Service tag",
                pos: tag_pos,
                value,
                allowed: "0 (serviceWithMetadata) or 1 (accessor)",
            }
            .into()),
        }
    }
}

fn write_nullable_binder(
    ps: &ProcessState,
    parcel: &mut Parcel,
    binder: Option<&Binder>,
) -> Result<(), BinderError> {
    match binder {
        Some(b) => ps.write_binder(parcel, b),
        None => Ok(parcel.write_null_binder()?),
    }
}

/// `android.os.ConnectionInfo`: where an RPC binder service listens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The address.
    pub ip_address: String,
    /// The port.
    pub port: i32,
}

impl ConnectionInfo {
    /// Writes it as a nullable parcelable value.
    pub fn write_nullable(info: Option<&Self>, parcel: &mut Parcel) -> Result<(), ParcelError> {
        let Some(info) = info else {
            return parcel.write_i32(0);
        };
        parcel.write_i32(1)?;
        parcel.write_sized(|p| {
            p.write_string16(&info.ip_address)?;
            p.write_i32(info.port)
        })
    }

    /// Reads a nullable parcelable value.
    pub fn read_nullable(parcel: &mut Parcel) -> Result<Option<Self>, ParcelError> {
        if !parcel.read_present()? {
            return Ok(None);
        }
        parcel
            .read_sized(|p, end| {
                let mut info = ConnectionInfo::default();
                if p.data_position() < end {
                    info.ip_address = p.read_required_string16()?;
                }
                if p.data_position() < end {
                    info.port = p.read_i32()?;
                }
                Ok(info)
            })
            .map(Some)
    }
}

/// `android.os.ServiceDebugInfo`: a registered name and the pid that registered it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDebugInfo {
    /// The name.
    pub name: String,
    /// The registering process (as the driver reported it).
    pub debug_pid: i32,
}

impl ServiceDebugInfo {
    /// Writes a `ServiceDebugInfo[]`: count, then each as a non-null parcelable value.
    pub fn write_array(infos: &[Self], parcel: &mut Parcel) -> Result<(), ParcelError> {
        let count = i32::try_from(infos.len()).map_err(|_| ParcelError::TooLarge {
            max: crate::binder_ipc::parcel::MAX_DATA_SIZE,
        })?;
        parcel.write_i32(count)?;
        for info in infos {
            parcel.write_i32(1)?;
            parcel.write_sized(|p| {
                p.write_string16(&info.name)?;
                p.write_i32(info.debug_pid)
            })?;
        }
        Ok(())
    }

    /// Reads a `ServiceDebugInfo[]` (a null array reads as empty; a null element is an error).
    pub fn read_array(parcel: &mut Parcel) -> Result<Vec<Self>, ParcelError> {
        let pos = parcel.data_position();
        let count = parcel.read_i32()?;
        if count == -1 {
            return Ok(Vec::new());
        }
        // Each element takes at least 8 bytes (presence and size).
        let fits = usize::try_from(count)
            .ok()
            .filter(|&n| n <= parcel.data_avail() / 8);
        let Some(count) = fits else {
            parcel.set_data_position(pos);
            return Err(ParcelError::LengthTooLarge {
                what: "ServiceDebugInfo[]",
                pos,
                len: count,
                available: parcel.data_avail(),
            });
        };
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let at = parcel.data_position();
            if !parcel.read_present()? {
                return Err(ParcelError::UnexpectedNull {
                    what: "ServiceDebugInfo",
                    pos: at,
                });
            }
            out.push(parcel.read_sized(|p, end| {
                let mut info = ServiceDebugInfo::default();
                if p.data_position() < end {
                    info.name = p.read_required_string16()?;
                }
                if p.data_position() < end {
                    info.debug_pid = p.read_i32()?;
                }
                Ok::<_, ParcelError>(info)
            })?);
        }
        Ok(out)
    }
}
