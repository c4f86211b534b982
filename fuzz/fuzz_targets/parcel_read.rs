//! Parcel reading: any bytes and offsets (or a parcel built by the writer), then every reader
//! method in any order and at any position.
//!
//! Checked beyond "no panic": a read that fails leaves the position where it was (except an
//! AIDL exception, which consumes its header by design); every fd the parcel owns is closed
//! once the parcel and what was read out of it are dropped; a received parcel's release runs
//! exactly once; a parcel built by the writer reads back what was written.
#![no_main]

use bittube::binder_ipc::parcel::{
    received_fds, AidlException, BinderObject, Parcel, ParcelError, EX_HAS_REPLY_HEADER, EX_NONE,
    EX_SERVICE_SPECIFIC, OBJECT_SIZE,
};
use bittube::binder_ipc::uapi::BINDER_TYPE_FD;
use bittube_fuzz::parcel::{decode, ReadOp, Source, WriteOp, DESCRIPTORS};
use bittube_fuzz::{fd_is_open, fresh_fd};
use libfuzzer_sys::fuzz_target;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let input = decode(data);
    let mut created: Vec<RawFd> = Vec::new();
    let released = Arc::new(AtomicUsize::new(0));
    let received = matches!(input.source, Source::Received(..));
    let built = match &input.source {
        Source::Bytes(d, o) => Parcel::from_bytes(d, o).ok().map(|p| (p, Vec::new())),
        Source::Received(d, o) => from_received(d.clone(), o, &mut created, &released),
        Source::Built(ops) => Some(build(ops, &mut created)),
    };
    if let Some((mut parcel, ops)) = built {
        read_back(&mut parcel, &ops);
        let mut kept: Vec<OwnedFd> = Vec::new();
        for &op in &input.reads {
            read(&mut parcel, op, &mut kept);
        }
        drop(kept);
        drop(parcel);
    }
    if received {
        assert_eq!(
            released.load(Ordering::SeqCst),
            1,
            "release must run exactly once"
        );
    }
    for fd in created {
        assert!(
            !fd_is_open(fd),
            "fd {fd} the parcel owned is still open: leaked"
        );
    }
});

/// Gives every FD object at a listed, aligned, in-range offset a fresh fd (as the driver
/// installs them), then builds the received parcel.
fn from_received(
    mut data: Vec<u8>,
    offsets: &[u64],
    created: &mut Vec<RawFd>,
    released: &Arc<AtomicUsize>,
) -> Option<(Parcel, Vec<WriteOp>)> {
    let mut installed: Vec<OwnedFd> = Vec::new();
    let mut done = Vec::new();
    for &off in offsets {
        let Ok(start) = usize::try_from(off) else {
            continue;
        };
        if start % 4 != 0
            || start
                .checked_add(OBJECT_SIZE)
                .is_none_or(|e| e > data.len())
            || done.contains(&start)
        {
            continue;
        }
        let ty = u32::from_ne_bytes(data[start..start + 4].try_into().unwrap());
        let fd = i32::from_ne_bytes(data[start + 8..start + 12].try_into().unwrap());
        if ty == BINDER_TYPE_FD && fd >= 0 {
            let fresh = fresh_fd();
            created.push(fresh.as_raw_fd());
            data[start + 8..start + 12].copy_from_slice(&fresh.as_raw_fd().to_ne_bytes());
            installed.push(fresh);
            done.push(start);
        }
    }
    // The parcel takes over the fds the final data names (`received_fds`). With overlapping
    // objects an fd written at one object's +8 can overwrite the type word of another FD
    // object given an fd before it (objects at 12 and 4: the fd for 4 lands on 12's type);
    // that earlier fd is then named by nothing and stays this target's: it is closed here
    // (and, being in `created`, checked closed at the end like the rest). The kernel and the
    // shim refuse overlapping offsets, so a delivered buffer never has such an fd.
    let handed = received_fds(&data, offsets);
    for fd in installed {
        if !handed.contains(&fd.as_raw_fd()) {
            drop(fd);
        } else {
            let _ = fd.into_raw_fd(); // the parcel's from here on
        }
    }
    for fd in &handed {
        assert!(
            created.contains(fd),
            "the parcel would take over fd {fd}, which this target did not install"
        );
    }
    let counter = released.clone();
    let release = Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // SAFETY: the fds `received_fds` names (the ones `from_received` takes over) were just
    // checked to be fds created above, each installed once and given up (into_raw_fd) only
    // for this call; nothing else owns or closes them.
    unsafe { Parcel::from_received(&data, offsets, Some(release)) }
        .ok()
        .map(|p| (p, Vec::new()))
}

fn exception(code: i32, message: &str, ss: i32) -> AidlException {
    AidlException {
        code,
        message: message.to_owned(),
        service_specific: (code == EX_SERVICE_SPECIFIC).then_some(ss),
    }
}

/// Writes `ops`; returns the parcel at position 0 and the ops that succeeded (empty when a
/// raw write or a position change makes a read-back meaningless).
fn build(ops: &[WriteOp], created: &mut Vec<RawFd>) -> (Parcel, Vec<WriteOp>) {
    let mut p = Parcel::new();
    let mut ok = Vec::new();
    let mut exact = true;
    for op in ops {
        let start = p.data_position();
        let r = match op {
            WriteOp::I32(v) => p.write_i32(*v),
            WriteOp::I64(v) => p.write_i64(*v),
            WriteOp::String16(s) => p.write_string16(s),
            WriteOp::NullString16 => p.write_nullable_string16(None),
            WriteOp::ByteArray(b) => p.write_byte_array(b),
            WriteOp::I32Array(v) => p.write_i32_array(v),
            WriteOp::String16Array(v) => p.write_string16_array(v),
            WriteOp::Token(s) => p.write_interface_token(s),
            WriteOp::Local(ptr, cookie) => p.write_binder(BinderObject::local(*ptr, *cookie)),
            WriteOp::Handle(h) => p.write_binder(BinderObject::handle(*h)),
            WriteOp::NullBinder => p.write_null_binder(),
            WriteOp::Fd => {
                let f = fresh_fd();
                created.push(f.as_raw_fd());
                p.write_fd(f)
            }
            WriteOp::Pfd(some) => {
                let f = some.then(fresh_fd);
                created.extend(f.as_ref().map(AsRawFd::as_raw_fd));
                p.write_nullable_parcel_file_descriptor(f)
            }
            WriteOp::Exception(c, m, s) => p.write_exception(&exception(*c, m, *s)),
            WriteOp::Raw(b) => {
                exact = false;
                p.write_bytes(b)
            }
            WriteOp::SetPos(pos) => {
                exact = false;
                p.set_data_position(*pos as usize);
                Ok(())
            }
        };
        match r {
            Ok(()) => ok.push(op.clone()),
            Err(_) => assert_eq!(
                p.data_position(),
                start,
                "a failed write moved the position"
            ),
        }
        if matches!(op, WriteOp::Exception(c, ..) if *c == EX_HAS_REPLY_HEADER) {
            exact = false; // -128 written as an exception code reads as a reply header
        }
    }
    p.set_data_position(0);
    (p, if exact { ok } else { Vec::new() })
}

/// Reads back what `build` wrote, value by value.
fn read_back(p: &mut Parcel, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::I32(v) => assert_eq!(p.read_i32().unwrap(), *v),
            WriteOp::I64(v) => assert_eq!(p.read_i64().unwrap(), *v),
            WriteOp::String16(s) => assert_eq!(p.read_string16().unwrap().as_deref(), Some(&s[..])),
            WriteOp::NullString16 => assert_eq!(p.read_string16().unwrap(), None),
            WriteOp::ByteArray(b) => {
                assert_eq!(p.read_byte_array().unwrap().as_deref(), Some(&b[..]))
            }
            WriteOp::I32Array(v) => {
                assert_eq!(p.read_i32_array().unwrap().as_deref(), Some(&v[..]))
            }
            WriteOp::String16Array(v) => {
                assert_eq!(p.read_string16_array().unwrap().as_deref(), Some(&v[..]))
            }
            WriteOp::Token(s) => {
                p.enforce_interface(s).unwrap();
            }
            WriteOp::Local(ptr, cookie) => {
                // A pointer-0 local binder is refused on write, so it never reaches here.
                let got = p.read_binder().unwrap();
                assert_eq!(got, Some(BinderObject::local(*ptr, *cookie)));
            }
            WriteOp::Handle(h) => {
                assert_eq!(p.read_binder().unwrap(), Some(BinderObject::handle(*h)))
            }
            WriteOp::NullBinder => assert_eq!(p.read_binder().unwrap(), None),
            WriteOp::Fd => drop(p.read_fd().unwrap()),
            WriteOp::Pfd(some) => {
                assert_eq!(
                    p.read_nullable_parcel_file_descriptor().unwrap().is_some(),
                    *some
                )
            }
            WriteOp::Exception(c, m, s) => {
                let got = p.read_exception();
                if *c == EX_NONE {
                    got.unwrap();
                } else {
                    match got {
                        Err(ParcelError::Exception(e)) => assert_eq!(e, exception(*c, m, *s)),
                        other => panic!("exception {c} read back as {other:?}"),
                    }
                }
            }
            WriteOp::Raw(_) | WriteOp::SetPos(_) => unreachable!("not read back"),
        }
    }
}

/// One read; a failed read must leave the position where it was.
fn read(p: &mut Parcel, op: ReadOp, kept: &mut Vec<OwnedFd>) {
    let start = p.data_position();
    let r: Result<(), ParcelError> = match op {
        ReadOp::I32 => p.read_i32().map(drop),
        ReadOp::U32 => p.read_u32().map(drop),
        ReadOp::I64 => p.read_i64().map(drop),
        ReadOp::U64 => p.read_u64().map(drop),
        ReadOp::F32 => p.read_f32().map(drop),
        ReadOp::F64 => p.read_f64().map(drop),
        ReadOp::Bool => p.read_bool().map(drop),
        ReadOp::Byte => p.read_byte().map(drop),
        ReadOp::Char => p.read_char().map(drop),
        ReadOp::Bytes(n) => p.read_bytes(n as usize).map(drop),
        ReadOp::String16Units => p.read_string16_units().map(drop),
        ReadOp::String16 => p.read_string16().map(drop),
        ReadOp::RequiredString16 => p.read_required_string16().map(drop),
        ReadOp::Utf8 => p.read_utf8_from_utf16().map(drop),
        ReadOp::ByteArray => p.read_byte_array().map(drop),
        ReadOp::I32Array => p.read_i32_array().map(drop),
        ReadOp::String16Array => p.read_string16_array().map(drop),
        ReadOp::Enforce(k) => p.enforce_interface(DESCRIPTORS[k as usize]).map(drop),
        ReadOp::Binder => p.read_binder().map(drop),
        ReadOp::BinderStability => p.read_binder_with_stability().map(drop),
        ReadOp::RequiredBinder => p.read_required_binder().map(drop),
        ReadOp::Fd => p.read_fd().map(|fd| kept.push(fd)),
        ReadOp::DupFd => p.read_dup_fd().map(drop),
        ReadOp::Pfd => p.read_parcel_file_descriptor().map(|fd| kept.push(fd)),
        ReadOp::NullablePfd => p
            .read_nullable_parcel_file_descriptor()
            .map(|fd| kept.extend(fd)),
        ReadOp::Exception => p.read_exception(),
        ReadOp::SetPos(pos) => {
            p.set_data_position(pos as usize);
            Ok(())
        }
        ReadOp::SetPosFar(back) => {
            p.set_data_position(usize::MAX - back as usize);
            Ok(())
        }
        ReadOp::Walk => {
            let _ = p.binder_objects().count();
            let _ = p.fds().count();
            let _ = (
                p.offsets().len(),
                p.has_fds(),
                p.data_avail(),
                p.data_size(),
            );
            Ok(())
        }
    };
    match r {
        Err(ParcelError::Exception(_)) | Ok(()) => {}
        Err(e) => assert_eq!(
            p.data_position(),
            start,
            "{op:?} failed ({e}) and moved the position"
        ),
    }
}
