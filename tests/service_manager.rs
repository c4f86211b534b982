//! The service manager across processes on the driver shim: Android 16's methods from a
//! client process, the manager's "manager" entry, the `service list`/`check` reports, the
//! manager's own wait, and an explicitly chosen older numbering on both sides.

mod common;

use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{Binder, BinderError, ProcessState, UNKNOWN_TRANSACTION};
use bittube::binder_ipc::service_manager::{
    check_report, default_policy, list_report, Numbering, ServiceManager, ServiceManagerClient,
    ServiceUnion, DESCRIPTOR,
};
use bittube::binder_ipc::shim::Driver;
use common::services::TOKEN;
use common::{child_role, spawn_child_env, wait_success, LONG};
use std::ffi::OsStr;
use std::path::PathBuf;

const SOCKET_ENV: &str = "BITTUBE_TEST_SM_SOCKET";

fn child_process() -> ProcessState {
    let socket = PathBuf::from(std::env::var_os(SOCKET_ENV).expect("socket env"));
    let ps = ProcessState::open_shim(&socket).expect("binder process on the shim");
    ps.start_thread_pool().expect("pool");
    ps
}

fn run_child(test: &str, driver: &Driver) {
    let socket = driver.socket_path().as_os_str().to_owned();
    let env: [(&str, &OsStr); 1] = [(SOCKET_ENV, &socket)];
    let (child, _control) = spawn_child_env(test, "client", &env);
    wait_success(child);
}

#[test]
fn android16_methods_from_another_process() {
    const TEST: &str = "android16_methods_from_another_process";
    if child_role().as_deref() == Some("client") {
        let ps = child_process();
        let sm = ServiceManagerClient::new(&ps).unwrap();
        // The manager is registered as "manager" and answers as IServiceManager.
        let me = sm.get_service("manager").unwrap().expect("manager");
        assert_eq!(me.descriptor().unwrap(), DESCRIPTOR);
        sm.add_service("child.token", &Binder::new(TOKEN)).unwrap();
        let names = sm.list_services().unwrap();
        assert_eq!(names, ["child.token", "host.token", "manager"]);
        match sm.check_service2("child.token").unwrap() {
            ServiceUnion::ServiceWithMetadata(s) => {
                assert!(s.service.is_some() && !s.isLazyService)
            }
            other => panic!("{other:?}"),
        }
        assert!(sm.get_service2("nobody").unwrap().binder().is_none());
        let report = list_report(&sm).unwrap();
        assert_eq!(
            report,
            "Found 3 services:\n\
             0\tchild.token: [bittube.test.IToken]\n\
             1\thost.token: [bittube.test.IToken]\n\
             2\tmanager: [android.os.IServiceManager]\n"
        );
        assert_eq!(
            check_report(&sm, "host.token").unwrap(),
            "Service host.token: found\n"
        );
        assert_eq!(
            check_report(&sm, "nobody").unwrap(),
            "Service nobody: not found\n"
        );
        let pids = sm.get_service_debug_info().unwrap();
        let child = pids.iter().find(|i| i.name == "child.token").unwrap();
        assert_eq!(child.debugPid, std::process::id() as i32);
        assert!(!sm.is_declared("child.token").unwrap());
        assert_eq!(sm.updatable_via_apex("child.token").unwrap(), None);
        assert_eq!(sm.get_connection_info("child.token").unwrap(), None);
        // A code past Android 16's last method is UNKNOWN_TRANSACTION, not another method.
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR).unwrap();
        let e = me.transact(17, &data).unwrap_err();
        assert_eq!(e.to_status(), UNKNOWN_TRANSACTION, "{e}");
        // The host waits for this one with wait_for_local.
        sm.add_service("child.late", &Binder::new(TOKEN)).unwrap();
        ps.shutdown(LONG).unwrap();
        return;
    }
    let driver = Driver::start().expect("shim");
    let ps = ProcessState::open_shim(driver.socket_path()).unwrap();
    let sm = ServiceManager::serve(&ps, default_policy()).unwrap();
    sm.add_local("host.token", Binder::new(TOKEN));
    let waiter = {
        let sm = sm.clone();
        std::thread::spawn(move || sm.wait_for_local("child.late", LONG))
    };
    run_child(TEST, &driver);
    let late = waiter.join().unwrap().expect("child.late registered");
    assert!(matches!(late, Binder::Remote(_)));
    ps.shutdown(LONG).unwrap();
}

#[test]
fn an_older_numbering_is_chosen_on_both_sides() {
    const TEST: &str = "an_older_numbering_is_chosen_on_both_sides";
    if child_role().as_deref() == Some("client") {
        let ps = child_process();
        let old = ServiceManagerClient::with_numbering(&ps, Numbering::Android14).unwrap();
        old.add_service("child.token", &Binder::new(TOKEN)).unwrap();
        assert_eq!(old.list_services().unwrap(), ["child.token", "manager"]);
        assert!(old.check_service("child.token").unwrap().is_some());
        assert!(old.get_service_debug_info().unwrap().len() == 2);
        // Methods Android 14 does not have are refused by the client, not sent.
        assert!(matches!(
            old.get_service2("child.token"),
            Err(BinderError::BadValue(_))
        ));
        // Android 16's getServiceDebugInfo (16) is unknown to an Android 14 manager.
        let new = ServiceManagerClient::new(&ps).unwrap();
        let e = new.get_service_debug_info().unwrap_err();
        assert_eq!(e.to_status(), UNKNOWN_TRANSACTION, "{e}");
        ps.shutdown(LONG).unwrap();
        return;
    }
    let driver = Driver::start().expect("shim");
    let ps = ProcessState::open_shim(driver.socket_path()).unwrap();
    let sm = ServiceManager::serve_with(&ps, default_policy(), Numbering::Android14).unwrap();
    run_child(TEST, &driver);
    assert_eq!(sm.numbering(), Numbering::Android14);
    ps.shutdown(LONG).unwrap();
}
