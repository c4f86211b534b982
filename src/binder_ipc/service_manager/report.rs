//! What `bittube service list` and `bittube service check NAME` print: the same lines as
//! Android's `service` command.

use super::client::ServiceManagerClient;
use crate::binder_ipc::runtime::BinderError;
use std::fmt::Write;

/// Android's `service list`: `Found N services:`, then one `i\tname: [descriptor]` line per
/// name (the descriptor the service answers `INTERFACE_TRANSACTION` with; empty when it is
/// gone or does not answer).
pub fn list_report(sm: &ServiceManagerClient) -> Result<String, BinderError> {
    let names = sm.list_services()?;
    let mut out = String::new();
    let _ = writeln!(out, "Found {} services:", names.len());
    for (i, name) in names.iter().enumerate() {
        let descriptor = match sm.check_service(name) {
            Ok(Some(b)) => b.descriptor().unwrap_or_default(),
            _ => String::new(),
        };
        let _ = writeln!(out, "{i}\t{name}: [{descriptor}]");
    }
    Ok(out)
}

/// Android's `service check NAME`: `Service NAME: found` or `Service NAME: not found`.
pub fn check_report(sm: &ServiceManagerClient, name: &str) -> Result<String, BinderError> {
    let found = sm.check_service(name)?.is_some();
    let verdict = if found { "found" } else { "not found" };
    Ok(format!("Service {name}: {verdict}\n"))
}
