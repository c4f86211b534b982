//! Declaring a binder interface once: [`binder_interface!`](crate::binder_interface) turns a
//! list of methods into a trait to implement, a typed `Proxy` for clients and a `Server`
//! that dispatches calls, with AIDL's wire conventions (interface token, exception header).
//!
//! ```
//! use bittube::binder_interface;
//! use bittube::binder_ipc::runtime::{BinderError, CallContext};
//!
//! binder_interface! {
//!     /// A counter service.
//!     pub mod counter("bittube.example.ICounter") {
//!         /// Adds `n`, returns the new total.
//!         fn add(n: i64) -> i64 = 1;
//!         /// Names the counter.
//!         fn name() -> String = 2;
//!     }
//! }
//!
//! struct Counter(std::sync::atomic::AtomicI64);
//!
//! impl counter::Interface for Counter {
//!     fn add(&self, _call: &CallContext, n: i64) -> Result<i64, BinderError> {
//!         Ok(self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n)
//!     }
//!     fn name(&self, _call: &CallContext) -> Result<String, BinderError> {
//!         Ok("clicks".into())
//!     }
//! }
//!
//! // The service side registers `Binder::new(counter::Server(Counter(..)))`; a client wraps
//! // the binder it got: `counter::Proxy::new(binder, &process).add(1)?`.
//! let _service = bittube::binder_ipc::runtime::Binder::new(counter::Server(Counter(0.into())));
//! ```

use crate::binder_ipc::parcel::{
    AidlException, Parcel, ParcelError, EX_BAD_PARCELABLE, EX_ILLEGAL_ARGUMENT, EX_SECURITY,
    EX_TRANSACTION_FAILED,
};
use crate::binder_ipc::runtime::{Binder, BinderError, ProcessState};
use crate::bittube::TubeEnd;
use std::os::fd::OwnedFd;

/// A value that travels as an argument or a result of a declared interface.
pub trait ParcelValue: Sized {
    /// Writes the value (consuming it: fds and tube ends move into the parcel).
    fn write_to(self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError>;
    /// Reads a value.
    fn read_from(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError>;
}

macro_rules! plain_value {
    ($($t:ty => $w:ident, $r:ident;)*) => {$(
        impl ParcelValue for $t {
            fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
                parcel.$w(self)?;
                Ok(())
            }
            fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
                Ok(parcel.$r()?)
            }
        }
    )*};
}

plain_value! {
    i32 => write_i32, read_i32;
    u32 => write_u32, read_u32;
    i64 => write_i64, read_i64;
    u64 => write_u64, read_u64;
    f32 => write_f32, read_f32;
    f64 => write_f64, read_f64;
    bool => write_bool, read_bool;
}

impl ParcelValue for () {
    fn write_to(self, _: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        Ok(())
    }
    fn read_from(_: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(())
    }
}

impl ParcelValue for String {
    fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        parcel.write_utf8_as_utf16(&self)?;
        Ok(())
    }
    fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_required_string16()?)
    }
}

impl ParcelValue for Vec<u8> {
    fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        parcel.write_byte_array(&self)?;
        Ok(())
    }
    fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        parcel
            .read_byte_array()?
            .ok_or_else(|| BinderError::BadValue("a byte array was null".into()))
    }
}

impl ParcelValue for Vec<String> {
    fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        parcel.write_string16_array(&self)?;
        Ok(())
    }
    fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_string16_array()?.unwrap_or_default())
    }
}

impl ParcelValue for Binder {
    fn write_to(self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError> {
        process.write_binder(parcel, &self)
    }
    fn read_from(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError> {
        process
            .read_binder(parcel)?
            .ok_or_else(|| BinderError::BadValue("a binder was null".into()))
    }
}

impl ParcelValue for Option<Binder> {
    fn write_to(self, parcel: &mut Parcel, process: &ProcessState) -> Result<(), BinderError> {
        match self {
            Some(b) => process.write_binder(parcel, &b),
            None => Ok(parcel.write_null_binder()?),
        }
    }
    fn read_from(parcel: &mut Parcel, process: &ProcessState) -> Result<Self, BinderError> {
        process.read_binder(parcel)
    }
}

impl ParcelValue for OwnedFd {
    fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        parcel.write_fd(self)?;
        Ok(())
    }
    fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        Ok(parcel.read_fd()?)
    }
}

impl ParcelValue for TubeEnd {
    fn write_to(self, parcel: &mut Parcel, _: &ProcessState) -> Result<(), BinderError> {
        parcel.write_fd(self.into())?;
        Ok(())
    }
    fn read_from(parcel: &mut Parcel, _: &ProcessState) -> Result<Self, BinderError> {
        TubeEnd::try_from_socket(parcel.read_fd()?)
            .map_err(|e| BinderError::BadValue(format!("not a tube end: {e}")))
    }
}

/// The AIDL exception a service method's error goes back as, like libbinder's `Status`:
/// [`PermissionDenied`](BinderError::PermissionDenied) is `EX_SECURITY`,
/// [`BadValue`](BinderError::BadValue) `EX_ILLEGAL_ARGUMENT`, [`Parcel`](BinderError::Parcel)
/// `EX_BAD_PARCELABLE`, an [`Exception`](BinderError::Exception) itself. `None` for the other
/// kinds: like libbinder's `EX_TRANSACTION_FAILED` they go back as a status reply (the
/// `status_t` and the message, see [`BinderError::write_reply`]).
pub fn to_exception(e: &BinderError) -> Option<AidlException> {
    match e {
        BinderError::PermissionDenied(m) => Some(AidlException::new(EX_SECURITY, m.clone())),
        BinderError::BadValue(m) => Some(AidlException::new(EX_ILLEGAL_ARGUMENT, m.clone())),
        BinderError::Parcel(ParcelError::Exception(ex)) => Some(ex.clone()),
        BinderError::Parcel(p) => Some(AidlException::new(EX_BAD_PARCELABLE, p.to_string())),
        BinderError::Exception(ex) => Some(ex.clone()),
        _ => None,
    }
}

/// The error a reply's AIDL exception (or a malformed reply) stands for: the inverse of
/// [`to_exception`]; `EX_TRANSACTION_FAILED` (never written by libbinder) is
/// [`FailedTransaction`](BinderError::FailedTransaction), other codes stay an
/// [`Exception`](BinderError::Exception).
pub fn from_reply_error(e: ParcelError) -> BinderError {
    match e {
        ParcelError::Exception(ex) => match ex.code {
            EX_SECURITY => BinderError::PermissionDenied(ex.message),
            EX_ILLEGAL_ARGUMENT => BinderError::BadValue(ex.message),
            EX_BAD_PARCELABLE => BinderError::Parcel(ParcelError::Exception(ex)),
            EX_TRANSACTION_FAILED => BinderError::FailedTransaction,
            _ => BinderError::Exception(ex),
        },
        e => BinderError::Parcel(e),
    }
}

/// What a declared method's error becomes on the service side: an exception written into
/// `reply` (`Ok`), or an error the runtime sends back as a status reply (`Err`).
pub fn reply_error(reply: &mut Parcel, e: BinderError) -> Result<(), BinderError> {
    match to_exception(&e) {
        Some(ex) => Ok(reply.write_exception(&ex)?),
        None => Err(e),
    }
}

/// Declares a binder interface: a module with `DESCRIPTOR`, a trait `Interface` (one method
/// per declared call, taking the [`CallContext`](crate::binder_ipc::runtime::CallContext)
/// first), `Server<T>` (a [`Service`](crate::binder_ipc::runtime::Service) dispatching to
/// `T: Interface`) and `Proxy` (a typed client). Arguments and results are
/// [`ParcelValue`]s; errors travel as AIDL exceptions. See the
/// [module documentation](crate::binder_ipc::interface) for an example.
#[macro_export]
macro_rules! binder_interface {
    (
        $(#[$meta:meta])*
        $vis:vis mod $module:ident ($descriptor:literal) {
            $(
                $(#[$mmeta:meta])*
                fn $method:ident ( $($arg:ident : $argty:ty),* $(,)? ) -> $ret:ty = $code:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis mod $module {
            #[allow(unused_imports)]
            use super::*;
            use $crate::binder_ipc::interface::ParcelValue as _;

            /// The interface descriptor.
            pub const DESCRIPTOR: &str = $descriptor;

            /// What the service implements.
            pub trait Interface: Send + Sync + 'static {
                $(
                    $(#[$mmeta])*
                    fn $method(
                        &self,
                        call: &$crate::binder_ipc::runtime::CallContext,
                        $($arg: $argty),*
                    ) -> Result<$ret, $crate::binder_ipc::runtime::BinderError>;
                )*
            }

            /// The service side: dispatches calls to the implementation.
            pub struct Server<T: Interface>(pub T);

            impl<T: Interface> $crate::binder_ipc::runtime::Service for Server<T> {
                fn descriptor(&self) -> &str {
                    DESCRIPTOR
                }

                #[allow(unused_variables)]
                fn on_transact(
                    &self,
                    code: u32,
                    data: &mut $crate::binder_ipc::parcel::Parcel,
                    reply: &mut $crate::binder_ipc::parcel::Parcel,
                    call: &$crate::binder_ipc::runtime::CallContext,
                ) -> Result<(), $crate::binder_ipc::runtime::BinderError> {
                    match code {
                        $(
                            $code => {
                                // A wrong token is BAD_TYPE naming both descriptors, as
                                // AIDL stubs answer it (a status, not an exception).
                                data.enforce_interface(DESCRIPTOR)?;
                                $(
                                    let $arg = <$argty as $crate::binder_ipc::interface::ParcelValue>::read_from(data, &call.process)?;
                                )*
                                match self.0.$method(call, $($arg),*) {
                                    Ok(v) => {
                                        reply.write_no_exception()?;
                                        $crate::binder_ipc::interface::ParcelValue::write_to(v, reply, &call.process)
                                    }
                                    Err(e) => $crate::binder_ipc::interface::reply_error(reply, e),
                                }
                            }
                        )*
                        other => Err($crate::binder_ipc::runtime::BinderError::UnknownTransaction(other)),
                    }
                }
            }

            /// The client side: typed calls on a binder that implements the interface.
            #[derive(Clone, Debug)]
            pub struct Proxy {
                binder: $crate::binder_ipc::runtime::Binder,
                process: $crate::binder_ipc::runtime::ProcessState,
            }

            impl Proxy {
                /// Wraps `binder` (a proxy received by `process`).
                pub fn new(binder: $crate::binder_ipc::runtime::Binder, process: &$crate::binder_ipc::runtime::ProcessState) -> Proxy {
                    Proxy { binder, process: process.clone() }
                }

                /// The binder behind this proxy.
                pub fn binder(&self) -> &$crate::binder_ipc::runtime::Binder {
                    &self.binder
                }

                $(
                    $(#[$mmeta])*
                    pub fn $method(&self, $($arg: $argty),*) -> Result<$ret, $crate::binder_ipc::runtime::BinderError> {
                        let mut data = $crate::binder_ipc::parcel::Parcel::new();
                        data.write_interface_token(DESCRIPTOR)?;
                        $(
                            $crate::binder_ipc::interface::ParcelValue::write_to($arg, &mut data, &self.process)?;
                        )*
                        let mut reply = self.binder.transact($code, &data)?;
                        reply.read_exception().map_err($crate::binder_ipc::interface::from_reply_error)?;
                        <$ret as $crate::binder_ipc::interface::ParcelValue>::read_from(&mut reply, &self.process)
                    }
                )*
            }
        }
    };
}
