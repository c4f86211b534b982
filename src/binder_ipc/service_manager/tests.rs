//! Pins the transaction codes of every numbering and the reply bytes of every method.

use super::*;
use crate::binder_ipc::aidl::{AidlNullable, AidlValue};
use crate::binder_ipc::parcel::{Parcel, DEFAULT_SCHED_FLAGS, LOCAL_BINDER_FLAGS};
use crate::binder_ipc::runtime::{
    Binder, BinderError, CallContext, ProcessState, Service, UNKNOWN_TRANSACTION,
};
use crate::binder_ipc::shim::Driver;
use crate::binder_ipc::uapi::BINDER_TYPE_BINDER;
use std::sync::Arc;

#[test]
fn android16_codes_are_declaration_order() {
    let expected = [
        (Method::GetService, 1),
        (Method::GetService2, 2),
        (Method::CheckService, 3),
        (Method::CheckService2, 4),
        (Method::AddService, 5),
        (Method::ListServices, 6),
        (Method::RegisterForNotifications, 7),
        (Method::UnregisterForNotifications, 8),
        (Method::IsDeclared, 9),
        (Method::GetDeclaredInstances, 10),
        (Method::UpdatableViaApex, 11),
        (Method::GetUpdatableNames, 12),
        (Method::GetConnectionInfo, 13),
        (Method::RegisterClientCallback, 14),
        (Method::TryUnregisterService, 15),
        (Method::GetServiceDebugInfo, 16),
    ];
    for (m, code) in expected {
        assert_eq!(Numbering::Android16.code(m), Some(code), "{m}");
        assert_eq!(Numbering::Android16.method(code), Some(m));
    }
    assert_eq!(Numbering::default(), Numbering::Android16);
    assert_eq!(Numbering::Android16.method(0), None);
    assert_eq!(Numbering::Android16.method(17), None);
}

#[test]
fn older_numberings_are_pinned() {
    use Method::*;
    let n = Numbering::Android14;
    let a14 = [
        (GetService, 1),
        (CheckService, 2),
        (AddService, 3),
        (ListServices, 4),
        (RegisterForNotifications, 5),
        (UnregisterForNotifications, 6),
        (IsDeclared, 7),
        (GetDeclaredInstances, 8),
        (UpdatableViaApex, 9),
        (GetUpdatableNames, 10),
        (GetConnectionInfo, 11),
        (RegisterClientCallback, 12),
        (TryUnregisterService, 13),
        (GetServiceDebugInfo, 14),
    ];
    for (m, code) in a14 {
        assert_eq!(n.code(m), Some(code), "{m}");
    }
    assert_eq!(n.code(GetService2), None);
    assert_eq!(n.method(15), None);
    assert_eq!(Numbering::Android11.code(RegisterClientCallback), Some(8));
    assert_eq!(Numbering::Android11.code(TryUnregisterService), Some(9));
    assert_eq!(Numbering::Android11.code(GetServiceDebugInfo), None);
    assert_eq!(Numbering::Android12.code(GetServiceDebugInfo), Some(12));
    assert_eq!(Numbering::Android13.code(GetConnectionInfo), Some(10));
    assert_eq!(Numbering::Android15.code(GetService2), Some(2));
    assert_eq!(Numbering::Android15.code(CheckService), Some(3));
    assert_eq!(Numbering::Android15.code(GetServiceDebugInfo), Some(15));
    for n in [
        Numbering::Android11,
        Numbering::Android12,
        Numbering::Android13,
        Numbering::Android14,
        Numbering::Android15,
        Numbering::Android16,
    ] {
        for (i, &m) in n.methods().iter().enumerate() {
            assert_eq!(n.method(i as u32 + 1), Some(m));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reply layouts, byte for byte

struct Harness {
    sm: Arc<ServiceManager>,
    ctx: CallContext,
    _driver: Driver,
}

fn harness(numbering: Numbering) -> Harness {
    let (ps, driver) = ProcessState::embedded().expect("embedded shim");
    Harness {
        sm: ServiceManager::with_numbering(default_policy(), numbering),
        ctx: CallContext {
            pid: std::process::id() as i32,
            // SAFETY: geteuid has no preconditions.
            uid: unsafe { libc::geteuid() },
            oneway: false,
            process: ps,
        },
        _driver: driver,
    }
}

struct Token;
impl Service for Token {
    fn descriptor(&self) -> &str {
        "bittube.test.IToken"
    }
    fn on_transact(
        &self,
        code: u32,
        _: &mut Parcel,
        _: &mut Parcel,
        _: &CallContext,
    ) -> Result<(), BinderError> {
        Err(BinderError::UnknownTransaction(code))
    }
}

impl Harness {
    fn request(&self, build: impl FnOnce(&mut Parcel, &ProcessState)) -> Parcel {
        let mut data = Parcel::new();
        data.write_interface_token(DESCRIPTOR).unwrap();
        build(&mut data, &self.ctx.process);
        data.set_data_position(0);
        data
    }

    fn call(&self, method: Method, build: impl FnOnce(&mut Parcel, &ProcessState)) -> Vec<u8> {
        let code = self.sm.numbering().code(method).unwrap();
        let mut data = self.request(build);
        let mut reply = Parcel::new();
        self.sm
            .on_transact(code, &mut data, &mut reply, &self.ctx)
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        reply.data().to_vec()
    }

    fn named(&self, method: Method, name: &str) -> Vec<u8> {
        self.call(method, |p, _| p.write_string16(name).unwrap())
    }

    fn add(&self, name: &str, binder: &Binder, priority: i32) -> Vec<u8> {
        self.call(Method::AddService, |p, ps| {
            p.write_string16(name).unwrap();
            ps.write_binder(p, binder).unwrap();
            p.write_bool(false).unwrap();
            p.write_i32(priority).unwrap();
        })
    }

    /// The bytes of `binder` as this process writes it: a local BINDER object and SYSTEM.
    fn local_bytes(&self, binder: &Binder) -> Vec<u8> {
        let Binder::Local(s) = binder else {
            panic!("local binder expected")
        };
        let ptr = Arc::as_ptr(s) as *const () as u64;
        let mut out = words(&[BINDER_TYPE_BINDER as i32, LOCAL_BINDER_FLAGS as i32]);
        out.extend(ptr.to_le_bytes());
        out.extend(ptr.to_le_bytes());
        out.extend(12i32.to_le_bytes());
        out
    }
}

fn words(ws: &[i32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// libbinder's null binder: a zero BINDER_TYPE_BINDER object with the default sched flags,
/// then stability 0.
fn null_binder() -> Vec<u8> {
    let mut out = words(&[BINDER_TYPE_BINDER as i32, DEFAULT_SCHED_FLAGS as i32]);
    out.extend([0u8; 16]);
    out.extend(0i32.to_le_bytes());
    out
}

fn string16(s: &str) -> Vec<u8> {
    let mut p = Parcel::new();
    p.write_string16(s).unwrap();
    p.data().to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn lookups_reply_a_nullable_binder() {
    let h = harness(Numbering::Android16);
    let none = cat(&[&words(&[0]), &null_binder()]);
    assert_eq!(h.named(Method::GetService, "x"), none);
    assert_eq!(h.named(Method::CheckService, "x"), none);
    let b = Binder::new(Token);
    assert_eq!(h.add("x", &b, DUMP_FLAG_PRIORITY_DEFAULT), words(&[0]));
    let some = cat(&[&words(&[0]), &h.local_bytes(&b)]);
    assert_eq!(h.named(Method::GetService, "x"), some);
    assert_eq!(h.named(Method::CheckService, "x"), some);
}

#[test]
fn service2_replies_the_service_union() {
    let h = harness(Numbering::Android16);
    // 0 (no exception), 1 (non-null), tag 0, 1 (non-null), size 36, binder, isLazyService.
    let none = cat(&[&words(&[0, 1, 0, 1, 36]), &null_binder(), &words(&[0])]);
    assert_eq!(h.named(Method::GetService2, "x"), none);
    assert_eq!(h.named(Method::CheckService2, "x"), none);
    let b = Binder::new(Token);
    h.add("x", &b, DUMP_FLAG_PRIORITY_DEFAULT | FLAG_IS_LAZY_SERVICE);
    let lazy = cat(&[&words(&[0, 1, 0, 1, 36]), &h.local_bytes(&b), &words(&[1])]);
    assert_eq!(h.named(Method::GetService2, "x"), lazy);
    assert_eq!(h.named(Method::CheckService2, "x"), lazy);
    // And the client's reader takes those bytes back.
    let mut p = Parcel::from_bytes(&none[4..], &[]).unwrap();
    let u = ServiceUnion::read_aidl(&mut p, &h.ctx.process).unwrap();
    assert!(u.binder().is_none());
    // An accessor (tag 1) with a null binder, as rsbinder writes one.
    let acc = cat(&[&words(&[1, 1]), &null_binder()]);
    let mut p = Parcel::from_bytes(&acc, &[]).unwrap();
    assert!(matches!(
        ServiceUnion::read_aidl(&mut p, &h.ctx.process).unwrap(),
        ServiceUnion::Accessor(None)
    ));
    let mut p = Parcel::from_bytes(&words(&[1, 2]), &[]).unwrap();
    assert!(ServiceUnion::read_aidl(&mut p, &h.ctx.process).is_err());
}

#[test]
fn add_service_errors_are_aidl_exceptions() {
    let h = harness(Numbering::Android16);
    // `IBinder service` is not @nullable: the generated stub refuses a null before the
    // method runs.
    let mut data = h.request(|p, _| {
        p.write_string16("x").unwrap();
        p.write_null_binder().unwrap();
        p.write_bool(false).unwrap();
        p.write_i32(DUMP_FLAG_PRIORITY_DEFAULT).unwrap();
    });
    let code = Numbering::Android16.code(Method::AddService).unwrap();
    let e =
        h.sm.on_transact(code, &mut data, &mut Parcel::new(), &h.ctx);
    assert!(
        matches!(&e, Err(BinderError::BadValue(m)) if m.contains("null")),
        "{e:?}"
    );
    let ex = |code: i32, msg: &str| cat(&[&words(&[code]), &string16(msg), &words(&[0])]);
    let bad = h.add("bad name!", &Binder::new(Token), DUMP_FLAG_PRIORITY_DEFAULT);
    assert_eq!(bad, ex(-3, "Invalid service name 'bad name!'"));
    assert!(h.sm.names().is_empty());
}

#[test]
fn list_services_filters_by_dump_priority() {
    let h = harness(Numbering::Android16);
    h.add("b.default", &Binder::new(Token), DUMP_FLAG_PRIORITY_DEFAULT);
    h.add(
        "a.critical",
        &Binder::new(Token),
        DUMP_FLAG_PRIORITY_CRITICAL,
    );
    let list = |prio: i32| h.call(Method::ListServices, |p, _| p.write_i32(prio).unwrap());
    let all = cat(&[
        &words(&[0, 2]),
        &string16("a.critical"),
        &string16("b.default"),
    ]);
    assert_eq!(list(DUMP_FLAG_PRIORITY_ALL), all);
    let high = cat(&[&words(&[0, 1]), &string16("a.critical")]);
    assert_eq!(
        list(DUMP_FLAG_PRIORITY_CRITICAL | DUMP_FLAG_PRIORITY_HIGH),
        high
    );
    assert_eq!(list(0), words(&[0, 0]));
}

#[test]
fn notification_registration_replies() {
    let h = harness(Numbering::Android16);
    let cb = Binder::new(Token);
    let with_cb = |m: Method| {
        h.call(m, |p, ps| {
            p.write_string16("x").unwrap();
            ps.write_binder(p, &cb).unwrap();
        })
    };
    assert_eq!(with_cb(Method::RegisterForNotifications), words(&[0]));
    assert_eq!(with_cb(Method::UnregisterForNotifications), words(&[0]));
    let again = with_cb(Method::UnregisterForNotifications);
    assert_eq!(&again[..4], &words(&[-5])[..], "EX_ILLEGAL_STATE");
}

#[test]
fn undeclared_methods_reply_nothing_declared() {
    let h = harness(Numbering::Android16);
    assert_eq!(h.named(Method::IsDeclared, "x"), words(&[0, 0]));
    assert_eq!(h.named(Method::GetDeclaredInstances, "i"), words(&[0, 0]));
    assert_eq!(h.named(Method::UpdatableViaApex, "x"), words(&[0, -1]));
    assert_eq!(h.named(Method::GetUpdatableNames, "a"), words(&[0, 0]));
    assert_eq!(h.named(Method::GetConnectionInfo, "x"), words(&[0, 0]));
}

#[test]
fn client_callbacks_and_unregistering() {
    let h = harness(Numbering::Android16);
    let svc = Binder::new(Token);
    let cb = Binder::new(Token);
    h.add(
        "lazy",
        &svc,
        DUMP_FLAG_PRIORITY_DEFAULT | FLAG_IS_LAZY_SERVICE,
    );
    let unregister = || {
        h.call(Method::TryUnregisterService, |p, ps| {
            p.write_string16("lazy").unwrap();
            ps.write_binder(p, &svc).unwrap();
        })
    };
    // Not lazy yet (no client callback): EX_ILLEGAL_STATE.
    assert_eq!(&unregister()[..4], &words(&[-5])[..]);
    let wrong = h.call(Method::RegisterClientCallback, |p, ps| {
        p.write_string16("lazy").unwrap();
        ps.write_binder(p, &cb).unwrap();
        ps.write_binder(p, &cb).unwrap();
    });
    assert_eq!(&wrong[..4], &words(&[-3])[..], "a different binder");
    let ok = h.call(Method::RegisterClientCallback, |p, ps| {
        p.write_string16("lazy").unwrap();
        ps.write_binder(p, &svc).unwrap();
        ps.write_binder(p, &cb).unwrap();
    });
    assert_eq!(ok, words(&[0]));
    assert_eq!(unregister(), words(&[0]));
    assert!(h.sm.lookup("lazy").is_none());
    assert_eq!(&unregister()[..4], &words(&[-5])[..], "gone");
}

#[test]
fn service_debug_info_lists_names_and_pids() {
    let h = harness(Numbering::Android16);
    h.add("a", &Binder::new(Token), DUMP_FLAG_PRIORITY_DEFAULT);
    let reply = h.call(Method::GetServiceDebugInfo, |_, _| {});
    let name = string16("a");
    let size = 4 + name.len() as i32 + 4;
    let expected = cat(&[
        &words(&[0, 1, 1, size]),
        &name,
        &words(&[std::process::id() as i32]),
    ]);
    assert_eq!(reply, expected);
    let mut p = Parcel::from_bytes(&reply[4..], &[]).unwrap();
    let infos = Vec::<ServiceDebugInfo>::read_aidl(&mut p, &h.ctx.process).unwrap();
    assert_eq!(infos[0].name, "a");
}

#[test]
fn connection_info_round_trips() {
    let info = ConnectionInfo {
        ipAddress: "10.0.0.1".into(),
        port: 8080,
    };
    let (ps, _driver) = ProcessState::embedded().expect("embedded shim");
    let mut p = Parcel::new();
    ConnectionInfo::write_nullable(Some(&info), &mut p, &ps).unwrap();
    let ip = string16("10.0.0.1");
    let expected = cat(&[&words(&[1, 4 + ip.len() as i32 + 4]), &ip, &words(&[8080])]);
    assert_eq!(p.data(), &expected[..]);
    p.set_data_position(0);
    assert_eq!(
        ConnectionInfo::read_nullable(&mut p, &ps).unwrap(),
        Some(info)
    );
}

#[test]
fn unknown_codes_are_unknown_transaction() {
    let h = harness(Numbering::Android16);
    for code in [0, 17, 0x00ff_ffff] {
        let mut data = h.request(|_, _| {});
        let mut reply = Parcel::new();
        let e =
            h.sm.on_transact(code, &mut data, &mut reply, &h.ctx)
                .unwrap_err();
        assert!(matches!(e, BinderError::UnknownTransaction(c) if c == code));
        assert_eq!(e.to_status(), UNKNOWN_TRANSACTION);
        assert_eq!(UNKNOWN_TRANSACTION, -74);
        assert!(reply.data().is_empty());
    }
}

#[test]
fn an_android14_manager_answers_android14_codes_only() {
    let h = harness(Numbering::Android14);
    h.add("x", &Binder::new(Token), DUMP_FLAG_PRIORITY_DEFAULT);
    // Code 4 is listServices in Android 14 (checkService2 in 16).
    let mut data = h.request(|p, _| p.write_i32(DUMP_FLAG_PRIORITY_ALL).unwrap());
    let mut reply = Parcel::new();
    h.sm.on_transact(4, &mut data, &mut reply, &h.ctx).unwrap();
    assert_eq!(reply.data(), &cat(&[&words(&[0, 1]), &string16("x")])[..]);
    let mut data = h.request(|_, _| {});
    let e = h.sm.on_transact(15, &mut data, &mut Parcel::new(), &h.ctx);
    assert!(matches!(e, Err(BinderError::UnknownTransaction(15))));
}

#[test]
fn names_are_checked_as_aosp_does() {
    assert!(valid_name("android.hardware.foo.IFoo/default"));
    assert!(valid_name("a-b_c"));
    assert!(!valid_name(""));
    assert!(!valid_name("a b"));
    assert!(!valid_name("é"));
    assert!(!valid_name(&"a".repeat(128)));
    assert!(valid_name(&"a".repeat(127)));
}
