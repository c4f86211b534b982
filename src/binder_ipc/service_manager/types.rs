//! The parcelables `IServiceManager` returns, as generated from AOSP's `.aidl`
//! ([`super::aidl`]): the `android.os.Service` union, `ServiceWithMetadata`,
//! `ConnectionInfo` and `ServiceDebugInfo`.

use super::aidl::Service;
use crate::binder_ipc::runtime::Binder;

pub use super::aidl::{ConnectionInfo, ServiceDebugInfo, ServiceWithMetadata};

/// `android.os.Service`, what `getService2`/`checkService2` return: tag 0 the service with
/// its metadata, tag 1 an `android.os.IAccessor` (never produced by this manager; read when a
/// peer sends one).
pub type ServiceUnion = Service;

/// The union's tag for [`ServiceUnion::ServiceWithMetadata`].
pub const TAG_SERVICE_WITH_METADATA: i32 = Service::TAG_SERVICEWITHMETADATA;
/// The union's tag for [`ServiceUnion::Accessor`].
pub const TAG_ACCESSOR: i32 = Service::TAG_ACCESSOR;

impl Service {
    /// The binder it carries (the service or the accessor), if any.
    pub fn binder(&self) -> Option<&Binder> {
        match self {
            Service::ServiceWithMetadata(s) => s.service.as_ref(),
            Service::Accessor(a) => a.as_ref(),
        }
    }
}
