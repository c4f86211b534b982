//! The service manager: the context manager (handle 0) that maps names to binders, and its
//! client.
//!
//! The protocol is `android.os.IServiceManager` as AOSP has it today (Android 16: sixteen
//! methods, [`Method`]), declared by AOSP's own `.aidl` files and generated at build time
//! ([`aidl`]): the manager implements the generated interface, the client calls the generated
//! proxy; a server and a client can be told to speak an older release's
//! numbering instead ([`Numbering`]), never silently. A code the manager's numbering does not
//! have is `UNKNOWN_TRANSACTION`. Callbacks are `android.os.IServiceCallback`
//! `onRegistration` (oneway, code 1). Replies start with the AIDL exception header. The
//! manager registers itself as `"manager"`, as AOSP's does.
//!
//! An [`AccessPolicy`] decides who may add which name (default: the manager's own uid or
//! root); a refusal reaches the caller as [`BinderError::PermissionDenied`] with the reason.
//! A service whose process dies leaves the list.
//!
//! [`BinderError::PermissionDenied`]: crate::binder_ipc::runtime::BinderError::PermissionDenied

pub mod aidl;
mod client;
mod codes;
mod report;
mod server;
#[cfg(test)]
mod tests;
mod types;

pub use client::ServiceManagerClient;
pub use codes::{Method, Numbering};
pub use report::{check_report, list_report};
pub use server::{default_policy, Access, AccessPolicy, AccessRequest, ServiceManager};
pub use types::{
    ConnectionInfo, ServiceDebugInfo, ServiceUnion, ServiceWithMetadata, TAG_ACCESSOR,
    TAG_SERVICE_WITH_METADATA,
};

/// The interface descriptor.
pub const DESCRIPTOR: &str = aidl::IServiceManager::DESCRIPTOR;
/// The registration callback's descriptor.
pub const CALLBACK_DESCRIPTOR: &str = aidl::IServiceCallback::DESCRIPTOR;
/// The client callback's descriptor (lazy services).
pub const CLIENT_CALLBACK_DESCRIPTOR: &str = aidl::IClientCallback::DESCRIPTOR;
/// `IServiceCallback.onRegistration(name, binder)` (oneway).
pub const ON_REGISTRATION: u32 = 1;
/// `IClientCallback.onClients(registered, hasClients)` (oneway).
pub const ON_CLIENTS: u32 = 1;
/// The name the manager registers itself under.
pub const SELF_NAME: &str = "manager";

/// Dump priority: critical.
pub const DUMP_FLAG_PRIORITY_CRITICAL: i32 = aidl::IServiceManager::DUMP_FLAG_PRIORITY_CRITICAL;
/// Dump priority: high.
pub const DUMP_FLAG_PRIORITY_HIGH: i32 = aidl::IServiceManager::DUMP_FLAG_PRIORITY_HIGH;
/// Dump priority: normal.
pub const DUMP_FLAG_PRIORITY_NORMAL: i32 = aidl::IServiceManager::DUMP_FLAG_PRIORITY_NORMAL;
/// Dump priority: default (what `addService` sends when the caller names none).
pub const DUMP_FLAG_PRIORITY_DEFAULT: i32 = aidl::IServiceManager::DUMP_FLAG_PRIORITY_DEFAULT;
/// Every dump priority (what `listServices` asks for to see every name).
pub const DUMP_FLAG_PRIORITY_ALL: i32 = aidl::IServiceManager::DUMP_FLAG_PRIORITY_ALL;
/// Dump in protobuf format.
pub const DUMP_FLAG_PROTO: i32 = aidl::IServiceManager::DUMP_FLAG_PROTO;
/// In `addService`'s dump priority: a lazy service (clients should not cache it).
pub const FLAG_IS_LAZY_SERVICE: i32 = aidl::IServiceManager::FLAG_IS_LAZY_SERVICE;

/// The longest name AOSP accepts, in bytes.
pub const MAX_NAME_LEN: usize = 127;
/// Most names the manager holds (services; names with callbacks): a bound on what callers
/// can make it keep. Calls past it are refused with EX_ILLEGAL_STATE and counted.
pub const MAX_NAMES: usize = 10_000;
/// Most registration callbacks per name, and client callbacks per service.
pub const MAX_CALLBACKS_PER_NAME: usize = 256;

/// AOSP's `isValidServiceName`: 1 to 127 bytes of `[A-Za-z0-9_./-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/'))
}
