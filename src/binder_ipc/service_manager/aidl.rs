//! AOSP's Android 16 `android.os` service-manager interfaces, generated at build time by
//! bittube-aidl from `aidl/android/os/` (AOSP's own `.aidl` files): `IServiceManager`,
//! `IServiceCallback`, `IClientCallback` and the parcelables `Service`,
//! `ServiceWithMetadata`, `ServiceDebugInfo` and `ConnectionInfo`.
//!
//! [`ServiceManager`](super::ServiceManager) implements [`IServiceManager::Interface`] and
//! decodes calls with [`IServiceManager::dispatch`] (after mapping an older release's code to
//! Android 16's); [`ServiceManagerClient`](super::ServiceManagerClient) calls through
//! [`IServiceManager::Proxy`].

include!(concat!(env!("OUT_DIR"), "/service_manager_aidl.rs"));
