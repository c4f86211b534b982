//! The methods of `android.os.IServiceManager` and the transaction codes each Android release
//! gives them. AIDL numbers methods in declaration order from `FIRST_CALL_TRANSACTION` (1),
//! so every release that inserted a method moved the codes after it.

use std::fmt;

/// A method of `android.os.IServiceManager` (AOSP's `IServiceManager.aidl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `@nullable IBinder getService(String name)`.
    GetService,
    /// `Service getService2(String name)` (Android 15 r6+).
    GetService2,
    /// `@nullable IBinder checkService(String name)`.
    CheckService,
    /// `Service checkService2(String name)` (Android 16).
    CheckService2,
    /// `void addService(String name, IBinder service, boolean allowIsolated, int dumpPriority)`.
    AddService,
    /// `String[] listServices(int dumpPriority)`.
    ListServices,
    /// `void registerForNotifications(String name, IServiceCallback callback)`.
    RegisterForNotifications,
    /// `void unregisterForNotifications(String name, IServiceCallback callback)`.
    UnregisterForNotifications,
    /// `boolean isDeclared(String name)`.
    IsDeclared,
    /// `String[] getDeclaredInstances(String iface)` (Android 12+).
    GetDeclaredInstances,
    /// `@nullable String updatableViaApex(String name)` (Android 12+).
    UpdatableViaApex,
    /// `String[] getUpdatableNames(String apexName)` (Android 14+).
    GetUpdatableNames,
    /// `@nullable ConnectionInfo getConnectionInfo(String name)` (Android 13+).
    GetConnectionInfo,
    /// `void registerClientCallback(String name, IBinder service, IClientCallback callback)`.
    RegisterClientCallback,
    /// `void tryUnregisterService(String name, IBinder service)`.
    TryUnregisterService,
    /// `ServiceDebugInfo[] getServiceDebugInfo()` (Android 12+).
    GetServiceDebugInfo,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Method::GetService => "getService",
            Method::GetService2 => "getService2",
            Method::CheckService => "checkService",
            Method::CheckService2 => "checkService2",
            Method::AddService => "addService",
            Method::ListServices => "listServices",
            Method::RegisterForNotifications => "registerForNotifications",
            Method::UnregisterForNotifications => "unregisterForNotifications",
            Method::IsDeclared => "isDeclared",
            Method::GetDeclaredInstances => "getDeclaredInstances",
            Method::UpdatableViaApex => "updatableViaApex",
            Method::GetUpdatableNames => "getUpdatableNames",
            Method::GetConnectionInfo => "getConnectionInfo",
            Method::RegisterClientCallback => "registerClientCallback",
            Method::TryUnregisterService => "tryUnregisterService",
            Method::GetServiceDebugInfo => "getServiceDebugInfo",
        };
        f.write_str(name)
    }
}

/// Which release's numbering of `IServiceManager` a server answers and a client sends.
///
/// [`Numbering::Android16`] is AOSP's servicemanager today and what rsbinder speaks on Linux;
/// it is the default. The older ones exist for peers that still speak them and are chosen
/// explicitly (client and server alike): the same code means a different method in each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Numbering {
    /// Android 11 (`isDeclared`, `registerClientCallback`, `tryUnregisterService` after the
    /// six methods of Android 10).
    Android11,
    /// Android 12 and 12L.
    Android12,
    /// Android 13.
    Android13,
    /// Android 14, and Android 15 up to r5.
    Android14,
    /// Android 15 r6 and later (`getService2` inserted at 2).
    Android15,
    /// Android 16 (`checkService2` inserted at 4): AOSP's servicemanager today.
    #[default]
    Android16,
}

use Method::*;

const ANDROID_11: &[Method] = &[
    GetService,
    CheckService,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    RegisterClientCallback,
    TryUnregisterService,
];
const ANDROID_12: &[Method] = &[
    GetService,
    CheckService,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    GetDeclaredInstances,
    UpdatableViaApex,
    RegisterClientCallback,
    TryUnregisterService,
    GetServiceDebugInfo,
];
const ANDROID_13: &[Method] = &[
    GetService,
    CheckService,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    GetDeclaredInstances,
    UpdatableViaApex,
    GetConnectionInfo,
    RegisterClientCallback,
    TryUnregisterService,
    GetServiceDebugInfo,
];
const ANDROID_14: &[Method] = &[
    GetService,
    CheckService,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    GetDeclaredInstances,
    UpdatableViaApex,
    GetUpdatableNames,
    GetConnectionInfo,
    RegisterClientCallback,
    TryUnregisterService,
    GetServiceDebugInfo,
];
const ANDROID_15: &[Method] = &[
    GetService,
    GetService2,
    CheckService,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    GetDeclaredInstances,
    UpdatableViaApex,
    GetUpdatableNames,
    GetConnectionInfo,
    RegisterClientCallback,
    TryUnregisterService,
    GetServiceDebugInfo,
];
const ANDROID_16: &[Method] = &[
    GetService,
    GetService2,
    CheckService,
    CheckService2,
    AddService,
    ListServices,
    RegisterForNotifications,
    UnregisterForNotifications,
    IsDeclared,
    GetDeclaredInstances,
    UpdatableViaApex,
    GetUpdatableNames,
    GetConnectionInfo,
    RegisterClientCallback,
    TryUnregisterService,
    GetServiceDebugInfo,
];

impl Numbering {
    /// The methods in declaration order: method `i` has code `i + 1`.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Numbering::Android11 => ANDROID_11,
            Numbering::Android12 => ANDROID_12,
            Numbering::Android13 => ANDROID_13,
            Numbering::Android14 => ANDROID_14,
            Numbering::Android15 => ANDROID_15,
            Numbering::Android16 => ANDROID_16,
        }
    }

    /// The transaction code of `method`, or `None` when this release does not have it.
    pub fn code(self, method: Method) -> Option<u32> {
        let index = self.methods().iter().position(|&m| m == method)?;
        u32::try_from(index).ok()?.checked_add(1)
    }

    /// The method `code` stands for, or `None` (then the call is `UNKNOWN_TRANSACTION`).
    pub fn method(self, code: u32) -> Option<Method> {
        let index = usize::try_from(code.checked_sub(1)?).ok()?;
        self.methods().get(index).copied()
    }
}

impl fmt::Display for Numbering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Numbering::Android11 => "Android 11",
            Numbering::Android12 => "Android 12",
            Numbering::Android13 => "Android 13",
            Numbering::Android14 => "Android 14 (and 15 up to r5)",
            Numbering::Android15 => "Android 15 r6+",
            Numbering::Android16 => "Android 16",
        };
        f.write_str(name)
    }
}
