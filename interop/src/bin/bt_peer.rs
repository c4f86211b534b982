//! bittube's side of the interop matrix: `manager`, `service` or `client` (see the crate
//! docs).

use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{Binder, BinderError, CallContext, ProcessState, Service};
use bittube::binder_ipc::service_manager::{
    default_policy, list_report, ServiceManager, ServiceManagerClient, ServiceUnion,
};
use bittube::bittube::{BitTube, TubeEnd};
use bittube_interop::*;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// IEcho on bittube.
struct Echo;

impl Service for Echo {
    fn descriptor(&self) -> &str {
        ECHO_DESCRIPTOR
    }

    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        _call: &CallContext,
    ) -> Result<(), BinderError> {
        data.enforce_interface(ECHO_DESCRIPTOR)?;
        match code {
            ECHO => {
                let text = data.read_required_string16()?;
                reply.write_no_exception()?;
                reply.write_string16(&format!("{text} echoed"))?;
            }
            APPEND_WORLD => {
                let fd = data.read_parcel_file_descriptor()?;
                std::fs::File::from(fd)
                    .write_all(b"world")
                    .map_err(|e| BinderError::BadValue(format!("write world: {e}")))?;
                reply.write_no_exception()?;
            }
            OPEN_TUBE => {
                let count = u32::try_from(data.read_i32()?)
                    .map_err(|_| BinderError::BadValue("negative count".into()))?;
                let mut tube =
                    BitTube::new().map_err(|e| BinderError::BadValue(format!("tube: {e}")))?;
                let events: Vec<[u32; 4]> = (0..count).map(event).collect();
                tube.local()
                    .send_batch(&events)
                    .map_err(|e| BinderError::BadValue(format!("send: {e}")))?;
                let remote = tube
                    .take_remote()
                    .map_err(|e| BinderError::BadValue(format!("remote: {e}")))?;
                reply.write_no_exception()?;
                reply.write_parcel_file_descriptor(remote.into())?;
                // The local end may close: the packet stays queued for the reader.
            }
            other => return Err(BinderError::UnknownTransaction(other)),
        }
        Ok(())
    }
}

fn open() -> ProcessState {
    let ps = ProcessState::open().expect("kernel binder");
    ps.start_thread_pool().expect("thread pool");
    ps
}

fn manager() {
    let ps = ProcessState::open().expect("kernel binder");
    let _sm = ServiceManager::serve(&ps, default_policy()).expect("serve");
    println!("ready");
    serve_until_stdin_closes();
}

fn service() {
    let ps = open();
    let sm = ServiceManagerClient::new(&ps).expect("service manager");
    sm.add_service(BT_SERVICE, &Binder::new(Echo)).expect("add");
    println!("ready");
    serve_until_stdin_closes();
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Calls `svc`'s IEcho: string, fd (hello/world on a shared offset), tube.
fn call_echo(checks: &mut Checks, svc: &Binder) {
    checks.check(
        "call string",
        (|| {
            let mut data = Parcel::new();
            data.write_interface_token(ECHO_DESCRIPTOR).map_err(err)?;
            data.write_string16("hi").map_err(err)?;
            let mut reply = svc.transact(ECHO, &data).map_err(err)?;
            reply.read_exception().map_err(err)?;
            let got = reply.read_required_string16().map_err(err)?;
            (got == "hi echoed")
                .then_some(())
                .ok_or(format!("got {got:?}"))
        })(),
    );
    checks.check(
        "call fd",
        (|| {
            let mut file = tempfile()?;
            file.write_all(b"hello").map_err(err)?;
            let mut data = Parcel::new();
            data.write_interface_token(ECHO_DESCRIPTOR).map_err(err)?;
            let dup: OwnedFd = file.try_clone().map_err(err)?.into();
            data.write_parcel_file_descriptor(dup).map_err(err)?;
            let mut reply = svc.transact(APPEND_WORLD, &data).map_err(err)?;
            reply.read_exception().map_err(err)?;
            let mut all = String::new();
            file.rewind().map_err(err)?;
            file.read_to_string(&mut all).map_err(err)?;
            (all == "helloworld")
                .then_some(())
                .ok_or(format!("file holds {all:?}"))
        })(),
    );
    checks.check(
        "call tube",
        (|| {
            let mut data = Parcel::new();
            data.write_interface_token(ECHO_DESCRIPTOR).map_err(err)?;
            data.write_i32(TUBE_EVENTS as i32).map_err(err)?;
            let mut reply = svc.transact(OPEN_TUBE, &data).map_err(err)?;
            reply.read_exception().map_err(err)?;
            let fd = reply.read_parcel_file_descriptor().map_err(err)?;
            let end = TubeEnd::try_from_socket(fd).map_err(err)?;
            let mut buf = [[0u32; 4]; 64];
            let n = end
                .recv_batch_timeout(&mut buf, Duration::from_secs(20))
                .map_err(err)?;
            let bytes: Vec<u8> = buf[..n]
                .iter()
                .flatten()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            check_events(&bytes, TUBE_EVENTS)
        })(),
    );
}

/// An unnamed file in /tmp: what `hello`/`world` are written to.
fn tempfile() -> Result<std::fs::File, String> {
    let fd = nix::fcntl::open(
        "/tmp",
        nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(err)?;
    Ok(std::fs::File::from(fd))
}

/// bittube's client against rsb_hub and an rsbinder IEcho service (cell b).
fn client() {
    let ps = open();
    let mut checks = Checks::default();
    let sm = ServiceManagerClient::new(&ps).expect("service manager");
    println!("waiting");
    let waited = sm.wait_for_service(RSB_SERVICE, Duration::from_secs(60));
    checks.check("wait", waited.as_ref().map(drop).map_err(err));
    checks.check(
        "list",
        (|| {
            let names = sm.list_services().map_err(err)?;
            let has = |n: &str| names.iter().any(|x| x == n);
            (has("manager") && has(RSB_SERVICE))
                .then_some(())
                .ok_or(format!("{names:?}"))
        })(),
    );
    checks.check(
        "service list report",
        (|| {
            let report = list_report(&sm).map_err(err)?;
            let line = format!("{RSB_SERVICE}: [{ECHO_DESCRIPTOR}]");
            report.contains(&line).then_some(()).ok_or(report)
        })(),
    );
    checks.check(
        "check",
        match sm.check_service(RSB_SERVICE) {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    checks.check(
        "get",
        match sm.get_service(RSB_SERVICE) {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    checks.check(
        "getService2",
        match sm.get_service2(RSB_SERVICE) {
            Ok(ServiceUnion::ServiceWithMetadata(s)) if s.service.is_some() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    checks.check(
        "checkService2 missing",
        match sm.check_service2("interop.nobody") {
            Ok(u) if u.binder().is_none() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    checks.check(
        "isDeclared",
        match sm.is_declared(RSB_SERVICE) {
            Ok(false) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    checks.check(
        "getServiceDebugInfo",
        (|| {
            let infos = sm.get_service_debug_info().map_err(err)?;
            infos
                .iter()
                .any(|i| i.name == RSB_SERVICE)
                .then_some(())
                .ok_or(format!("{infos:?}"))
        })(),
    );
    if let Ok(svc) = &waited {
        call_echo(&mut checks, svc);
    }
    notify(&mut checks, &sm);
    std::process::exit(checks.exit_code());
}

/// Asks to be told about `LATE_NAME`, registers a service under it, waits for the call.
fn notify(checks: &mut Checks, sm: &ServiceManagerClient) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4);
    let cb = sm.register_for_notifications(LATE_NAME, move |name, _| {
        let _ = tx.try_send(name.to_owned());
    });
    checks.check(
        "register for notifications",
        cb.as_ref().map(drop).map_err(err),
    );
    checks.check(
        "add",
        sm.add_service(LATE_NAME, &Binder::new(Echo)).map_err(err),
    );
    checks.check(
        "notified",
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(name) if name == LATE_NAME => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    if let Ok(cb) = cb {
        checks.check(
            "unregister",
            sm.unregister_for_notifications(LATE_NAME, &cb).map_err(err),
        );
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("manager") => manager(),
        Some("service") => service(),
        Some("client") => client(),
        other => {
            eprintln!("bt_peer: unknown role {other:?} (manager | service | client)");
            std::process::exit(2);
        }
    }
}
