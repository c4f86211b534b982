//! Parcel: round trips, exact layouts, malformed input, fd ownership of received parcels.
//!
//! Tests that count `/proc/self/fd` entries run in a child process (this test binary
//! re-executed with `--exact <name>` and `BITTUBE_CHILD=<name>`), so that no other test of
//! this binary opens or closes fds while they count.

use bittube::binder_ipc::parcel::{
    offsets_from_bytes, AidlException, BinderObject, Parcel, ParcelError, Stability,
    EX_ILLEGAL_STATE, EX_SECURITY, EX_SERVICE_SPECIFIC, OBJECT_SIZE,
};
use bittube::binder_ipc::uapi::{
    BINDER_TYPE_BINDER, BINDER_TYPE_FD, BINDER_TYPE_FDA, BINDER_TYPE_HANDLE, BINDER_TYPE_PTR,
    BINDER_TYPE_WEAK_BINDER, BINDER_TYPE_WEAK_HANDLE,
};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Helpers

const CHILD_ENV: &str = "BITTUBE_CHILD";

/// Runs the test `name` alone in a child process; returns true when the caller *is* that
/// child and should do the work.
fn in_child(name: &str) -> bool {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        return true;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .expect("spawn child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn fd_is_open(fd: RawFd) -> bool {
    // F_GETFD on a closed fd is EBADF.
    nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// A borrowed fd for a probe that only asks the kernel about the number.
fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fd is only passed to fcntl(F_GETFD), which is harmless on any number,
    // closed or not; the BorrowedFd does not outlive the probe.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// True when every write end of the pipe `read_end` belongs to is closed (POLLHUP), waiting
/// at most 10 s so that a leak fails the test instead of hanging it.
fn writers_gone(read_end: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(read_end, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(10_000u16)) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP)),
        _ => false,
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

fn counting_release() -> (Arc<AtomicUsize>, Box<dyn FnOnce() + Send>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    (
        count,
        Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

/// What the driver does to an outgoing parcel: the receiver gets new fds (here: dups) written
/// into the FD objects. Returns the received data and the raw fds now owned by the caller.
fn translate_fds(p: &Parcel) -> (Vec<u8>, Vec<RawFd>) {
    let mut data = p.data().to_vec();
    let mut raws = Vec::new();
    for &offset in p.offsets() {
        let at = offset as usize;
        if u32::from_ne_bytes(data[at..at + 4].try_into().unwrap()) == BINDER_TYPE_FD {
            let old = i32::from_ne_bytes(data[at + 8..at + 12].try_into().unwrap());
            let original = p
                .fds()
                .find(|fd| fd.as_raw_fd() == old)
                .expect("fd of object");
            let new = original.try_clone_to_owned().expect("dup").into_raw_fd();
            data[at + 8..at + 12].copy_from_slice(&new.to_ne_bytes());
            raws.push(new);
        }
    }
    (data, raws)
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[derive(Clone, Debug)]
enum Value {
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Byte(i8),
    Char(u16),
    Str(Option<String>),
    Units(Vec<u16>),
    Bytes(Option<Vec<u8>>),
    Binder(Option<BinderObject>, Stability),
    Token(String),
    NoException,
    I32Array(Option<Vec<i32>>),
    StrArray(Option<Vec<String>>),
}

fn binder_object() -> impl Strategy<Value = BinderObject> {
    prop_oneof![
        (1u64.., any::<u64>(), any::<bool>()).prop_map(|(ptr, cookie, strong)| {
            BinderObject::Local {
                ptr,
                cookie,
                strong,
            }
        }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(handle, strong)| BinderObject::Handle { handle, strong }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(Value::U32),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::Byte),
        any::<u16>().prop_map(Value::Char),
        proptest::option::of(".{0,12}").prop_map(Value::Str),
        proptest::collection::vec(any::<u16>(), 0..9).prop_map(Value::Units),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..13)).prop_map(Value::Bytes),
        (
            proptest::option::of(binder_object()),
            prop_oneof![
                Just(Stability::VENDOR),
                Just(Stability::SYSTEM),
                Just(Stability::VINTF)
            ]
        )
            .prop_map(|(b, s)| Value::Binder(b, s)),
        "[a-zA-Z.]{0,20}".prop_map(Value::Token),
        Just(Value::NoException),
        proptest::option::of(proptest::collection::vec(any::<i32>(), 0..9))
            .prop_map(Value::I32Array),
        proptest::option::of(proptest::collection::vec(".{0,6}", 0..5)).prop_map(Value::StrArray),
    ]
}

fn write_value(p: &mut Parcel, v: &Value) {
    match v {
        Value::I32(x) => p.write_i32(*x),
        Value::U32(x) => p.write_u32(*x),
        Value::I64(x) => p.write_i64(*x),
        Value::U64(x) => p.write_u64(*x),
        Value::F32(x) => p.write_f32(*x),
        Value::F64(x) => p.write_f64(*x),
        Value::Bool(x) => p.write_bool(*x),
        Value::Byte(x) => p.write_byte(*x),
        Value::Char(x) => p.write_char(*x),
        Value::Str(s) => p.write_nullable_string16(s.as_deref()),
        Value::Units(u) => p.write_string16_units(u),
        Value::Bytes(b) => p.write_nullable_byte_array(b.as_deref()),
        Value::Binder(Some(b), s) => p.write_binder_with_stability(*b, *s),
        Value::Binder(None, _) => p.write_null_binder(),
        Value::Token(d) => p.write_interface_token(d),
        Value::NoException => p.write_no_exception(),
        Value::I32Array(Some(a)) => p.write_i32_array(a),
        Value::StrArray(Some(a)) => p.write_string16_array(a),
        Value::I32Array(None) | Value::StrArray(None) => p.write_i32(-1),
    }
    .expect("write");
}

fn check_value(p: &mut Parcel, v: &Value) -> Result<(), TestCaseError> {
    match v {
        Value::I32(x) => prop_assert_eq!(p.read_i32().unwrap(), *x),
        Value::U32(x) => prop_assert_eq!(p.read_u32().unwrap(), *x),
        Value::I64(x) => prop_assert_eq!(p.read_i64().unwrap(), *x),
        Value::U64(x) => prop_assert_eq!(p.read_u64().unwrap(), *x),
        Value::F32(x) => prop_assert_eq!(p.read_f32().unwrap().to_bits(), x.to_bits()),
        Value::F64(x) => prop_assert_eq!(p.read_f64().unwrap().to_bits(), x.to_bits()),
        Value::Bool(x) => prop_assert_eq!(p.read_bool().unwrap(), *x),
        Value::Byte(x) => prop_assert_eq!(p.read_byte().unwrap(), *x),
        Value::Char(x) => prop_assert_eq!(p.read_char().unwrap(), *x),
        Value::Str(s) => prop_assert_eq!(&p.read_string16().unwrap(), s),
        Value::Units(u) => prop_assert_eq!(p.read_string16_units().unwrap(), Some(u.clone())),
        Value::Bytes(b) => prop_assert_eq!(&p.read_byte_array().unwrap(), b),
        Value::Binder(Some(b), s) => {
            prop_assert_eq!(p.read_binder_with_stability().unwrap(), Some((*b, *s)))
        }
        Value::Binder(None, _) => prop_assert_eq!(p.read_binder().unwrap(), None),
        Value::Token(d) => {
            p.enforce_interface(d).unwrap();
        }
        Value::NoException => p.read_exception().unwrap(),
        Value::I32Array(a) => prop_assert_eq!(&p.read_i32_array().unwrap(), a),
        Value::StrArray(a) => prop_assert_eq!(&p.read_string16_array().unwrap(), a),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sequence of values reads back equal, from the parcel itself and from a parcel
    /// rebuilt from its data and offsets (what a receiver gets).
    #[test]
    fn sequences_round_trip(values in proptest::collection::vec(value(), 0..24)) {
        let mut p = Parcel::new();
        for v in &values {
            write_value(&mut p, v);
            prop_assert_eq!(p.data_position() % 4, 0);
        }
        prop_assert_eq!(p.data_size() % 4, 0);
        let offsets = p.offsets().to_vec();
        prop_assert!(offsets.windows(2).all(|w| w[0] + OBJECT_SIZE as u64 <= w[1]));
        p.set_data_position(0);
        for v in &values {
            check_value(&mut p, v)?;
        }
        prop_assert_eq!(p.data_avail(), 0);

        let mut q = Parcel::from_bytes(p.data(), &offsets).expect("own output validates");
        for v in &values {
            check_value(&mut q, v)?;
        }
        prop_assert_eq!(q.data_avail(), 0);
    }

    #[test]
    fn strings_round_trip(s in any::<String>()) {
        let mut p = Parcel::new();
        p.write_string16(&s).unwrap();
        let units = s.encode_utf16().count();
        prop_assert_eq!(p.data_size(), 4 + ((units + 1) * 2).div_ceil(4) * 4);
        p.set_data_position(0);
        prop_assert_eq!(p.read_utf8_from_utf16().unwrap(), Some(s));
    }

    #[test]
    fn byte_arrays_round_trip(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut p = Parcel::new();
        p.write_byte_array(&b).unwrap();
        prop_assert_eq!(p.data_size(), 4 + b.len().div_ceil(4) * 4);
        // Padding is zeroed.
        prop_assert!(p.data()[4 + b.len()..].iter().all(|&x| x == 0));
        p.set_data_position(0);
        prop_assert_eq!(p.read_byte_array().unwrap(), Some(b));
    }

    /// Every strict prefix of a parcel's data fails to read back, with an error, not a panic.
    #[test]
    fn truncated_data_is_an_error(values in proptest::collection::vec(value(), 1..8),
                                  cut in any::<prop::sample::Index>()) {
        let mut p = Parcel::new();
        for v in &values {
            write_value(&mut p, v);
        }
        let size = p.data_size();
        let cut = cut.index(size);
        let offsets: Vec<u64> =
            p.offsets().iter().copied().filter(|&o| o as usize + OBJECT_SIZE <= cut).collect();
        let mut q = Parcel::from_bytes(&p.data()[..cut], &offsets).unwrap();
        let mut failed = false;
        for v in &values {
            if read_any(&mut q, v).is_err() {
                failed = true;
                break;
            }
        }
        prop_assert!(failed, "reading {} values from {} of {} bytes succeeded", values.len(), cut, size);
    }
}

/// Reads a value of `v`'s kind, returning the error instead of comparing.
fn read_any(p: &mut Parcel, v: &Value) -> Result<(), ParcelError> {
    match v {
        Value::I32(_) => p.read_i32().map(drop),
        Value::U32(_) => p.read_u32().map(drop),
        Value::I64(_) => p.read_i64().map(drop),
        Value::U64(_) => p.read_u64().map(drop),
        Value::F32(_) => p.read_f32().map(drop),
        Value::F64(_) => p.read_f64().map(drop),
        Value::Bool(_) => p.read_bool().map(drop),
        Value::Byte(_) => p.read_byte().map(drop),
        Value::Char(_) => p.read_char().map(drop),
        Value::Str(_) => p.read_string16().map(drop),
        Value::Units(_) => p.read_string16_units().map(drop),
        Value::Bytes(_) => p.read_byte_array().map(drop),
        Value::Binder(..) => p.read_binder().map(drop),
        Value::Token(d) => p.enforce_interface(d).map(drop),
        Value::NoException => p.read_exception(),
        Value::I32Array(_) => p.read_i32_array().map(drop),
        Value::StrArray(_) => p.read_string16_array().map(drop),
    }
}

// ---------------------------------------------------------------------------------------------
// Untrusted bytes never panic

#[derive(Clone, Debug)]
enum ReadOp {
    Seek(usize),
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Bool,
    Byte,
    Char,
    Str,
    Units,
    Bytes,
    RawBytes(usize),
    Binder,
    Fd,
    DupFd,
    Pfd,
    Token,
    Exception,
    I32Array,
    StrArray,
    NullablePfd,
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        (0usize..300).prop_map(ReadOp::Seek),
        Just(ReadOp::I32),
        Just(ReadOp::U32),
        Just(ReadOp::I64),
        Just(ReadOp::U64),
        Just(ReadOp::F32),
        Just(ReadOp::F64),
        Just(ReadOp::Bool),
        Just(ReadOp::Byte),
        Just(ReadOp::Char),
        Just(ReadOp::Str),
        Just(ReadOp::Units),
        Just(ReadOp::Bytes),
        (0usize..64).prop_map(ReadOp::RawBytes),
        Just(ReadOp::Binder),
        Just(ReadOp::Fd),
        Just(ReadOp::DupFd),
        Just(ReadOp::Pfd),
        Just(ReadOp::Token),
        Just(ReadOp::Exception),
        Just(ReadOp::I32Array),
        Just(ReadOp::StrArray),
        Just(ReadOp::NullablePfd),
    ]
}

fn run_reads(p: &mut Parcel, ops: &[ReadOp]) {
    for op in ops {
        let before = p.data_position();
        let result: Result<(), ParcelError> = match op {
            ReadOp::Seek(pos) => {
                p.set_data_position(*pos);
                Ok(())
            }
            ReadOp::I32 => p.read_i32().map(drop),
            ReadOp::U32 => p.read_u32().map(drop),
            ReadOp::I64 => p.read_i64().map(drop),
            ReadOp::U64 => p.read_u64().map(drop),
            ReadOp::F32 => p.read_f32().map(drop),
            ReadOp::F64 => p.read_f64().map(drop),
            ReadOp::Bool => p.read_bool().map(drop),
            ReadOp::Byte => p.read_byte().map(drop),
            ReadOp::Char => p.read_char().map(drop),
            ReadOp::Str => p.read_string16().map(drop),
            ReadOp::Units => p.read_string16_units().map(drop),
            ReadOp::Bytes => p.read_byte_array().map(drop),
            ReadOp::RawBytes(n) => p.read_bytes(*n).map(drop),
            ReadOp::Binder => p.read_binder().map(drop),
            ReadOp::Fd => p.read_fd().map(drop),
            ReadOp::DupFd => p.read_dup_fd().map(drop),
            ReadOp::Pfd => p.read_parcel_file_descriptor().map(drop),
            ReadOp::Token => p.enforce_interface("a.b.IFoo").map(drop),
            ReadOp::Exception => p.read_exception(),
            ReadOp::I32Array => p.read_i32_array().map(drop),
            ReadOp::StrArray => p.read_string16_array().map(drop),
            ReadOp::NullablePfd => p.read_nullable_parcel_file_descriptor().map(drop),
        };
        if let Err(e) = result {
            // Errors render, and (except remote exceptions, which consume their header)
            // leave the position where it was.
            assert!(!e.to_string().is_empty());
            if !matches!(e, ParcelError::Exception(_)) {
                assert_eq!(p.data_position(), before, "{e}");
            }
        }
    }
}

/// Data made of random words and real objects, with offsets that mostly point at the objects:
/// gets past validation often enough to exercise the readers. With `with_fds`, some objects
/// are FD objects; the third part lists where the fd numbers of the *listed* ones go
/// (filled with real fds by the caller). Without, no object has the FD type.
fn structured_input(with_fds: bool) -> impl Strategy<Value = (Vec<u8>, Vec<u64>, Vec<usize>)> {
    let fd_type = if with_fds {
        BINDER_TYPE_FD
    } else {
        BINDER_TYPE_BINDER
    };
    let chunk = prop_oneof![
        proptest::collection::vec(any::<u8>(), 4).prop_map(|b| (b, None)),
        any::<i32>().prop_map(|v| (v.to_ne_bytes().to_vec(), None)),
        (0i32..64).prop_map(|v| (v.to_ne_bytes().to_vec(), None)),
        Just(((-1i32).to_ne_bytes().to_vec(), None)),
        (
            prop_oneof![
                Just(BINDER_TYPE_BINDER),
                Just(BINDER_TYPE_WEAK_BINDER),
                Just(BINDER_TYPE_HANDLE),
                Just(BINDER_TYPE_WEAK_HANDLE),
                Just(BINDER_TYPE_FDA),
                Just(fd_type),
                Just(fd_type),
                any::<u32>().prop_filter("not FD", |&t| t != BINDER_TYPE_FD),
            ],
            any::<u64>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(ty, binder, cookie, listed)| {
                let mut b = Vec::with_capacity(24);
                b.extend_from_slice(&ty.to_ne_bytes());
                b.extend_from_slice(&0u32.to_ne_bytes());
                b.extend_from_slice(&binder.to_ne_bytes());
                b.extend_from_slice(&cookie.to_ne_bytes());
                (b, Some(listed))
            }),
    ];
    proptest::collection::vec(chunk, 0..20).prop_map(|chunks| {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        let mut fd_slots = Vec::new();
        for (bytes, object) in chunks {
            if object == Some(true) {
                offsets.push(data.len() as u64);
                if bytes[..4] == BINDER_TYPE_FD.to_ne_bytes() {
                    fd_slots.push(data.len() + 8);
                }
            }
            data.extend_from_slice(&bytes);
        }
        (data, offsets, fd_slots)
    })
}

/// Under `from_received`'s contract the input must not name fds we do not own: turn FD
/// objects at listed offsets into something else.
fn without_fd_objects(mut data: Vec<u8>, offsets: &[u64]) -> Vec<u8> {
    for &o in offsets {
        if let Ok(at) = usize::try_from(o) {
            if let Some(word) = at.checked_add(4).and_then(|end| data.get_mut(at..end)) {
                if word == BINDER_TYPE_FD.to_ne_bytes() {
                    word.copy_from_slice(&BINDER_TYPE_PTR.to_ne_bytes());
                }
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Arbitrary bytes and offsets: construction either fails with an error or gives a parcel
    /// on which any sequence of reads returns values or errors, never panics.
    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        offsets in proptest::collection::vec(prop_oneof![0u64..200, any::<u64>()], 0..6),
        ops in proptest::collection::vec(read_op(), 0..30),
    ) {
        if let Ok(mut p) = Parcel::from_bytes(&data, &offsets) {
            run_reads(&mut p, &ops);
        }
        let data = without_fd_objects(data, &offsets);
        let (released, release) = counting_release();
        // SAFETY: no FD object is left at a listed offset, so no fd is handed over.
        let parcel = unsafe { Parcel::from_received(&data, &offsets, Some(release)) };
        if let Ok(mut p) = parcel {
            run_reads(&mut p, &ops);
            prop_assert_eq!(released.load(Ordering::SeqCst), 0);
            drop(p);
        }
        prop_assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn structured_garbage_never_panics(
        (data, offsets, _) in structured_input(false),
        ops in proptest::collection::vec(read_op(), 0..40),
    ) {
        match Parcel::from_bytes(&data, &offsets) {
            Ok(mut p) => run_reads(&mut p, &ops),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn offsets_bytes_must_be_whole_u64s(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match offsets_from_bytes(&bytes) {
            Ok(offsets) => {
                prop_assert_eq!(bytes.len() % 8, 0);
                prop_assert_eq!(offsets.len(), bytes.len() / 8);
            }
            Err(ParcelError::OffsetsSize { len }) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert_ne!(len % 8, 0);
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input, case by case

fn handle_object(handle: u32) -> Vec<u8> {
    let mut p = Parcel::new();
    p.write_binder(BinderObject::handle(handle)).unwrap();
    p.data()[..OBJECT_SIZE].to_vec()
}

#[test]
fn lying_lengths_are_errors() {
    for (len, tail) in [
        (i32::MAX, 8usize),
        (i32::MAX - 1, 8),
        (1000, 8),
        (-2, 8),
        (i32::MIN, 0),
    ] {
        let mut p = Parcel::new();
        p.write_i32(len).unwrap();
        p.write_bytes(&vec![0x41; tail]).unwrap();
        for read in [0, 1] {
            p.set_data_position(0);
            let err = if read == 0 {
                p.read_string16().map(drop).unwrap_err()
            } else {
                p.read_byte_array().map(drop).unwrap_err()
            };
            match err {
                ParcelError::NegativeLength { pos: 0, len: l, .. } => assert!(l < -1 && l == len),
                ParcelError::LengthTooLarge {
                    pos: 0,
                    len: l,
                    available,
                    ..
                } => {
                    assert_eq!((l, available), (len, tail))
                }
                other => panic!("length {len}: unexpected {other}"),
            }
            assert_eq!(p.data_position(), 0);
        }
    }
}

#[test]
fn string16_without_terminator_or_with_bad_utf16_is_an_error() {
    let mut p = Parcel::new();
    p.write_i32(1).unwrap();
    p.write_bytes(&[b'a', 0, b'b', 0]).unwrap(); // no NUL where it should be
    p.set_data_position(0);
    let err = p.read_string16().unwrap_err();
    assert!(
        matches!(err, ParcelError::MissingTerminator { pos: 0, len: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("NUL"));

    let mut p = Parcel::new();
    p.write_string16_units(&[0xd800, 0x41]).unwrap(); // lone high surrogate
    p.set_data_position(0);
    let err = p.read_string16().unwrap_err();
    assert!(matches!(err, ParcelError::InvalidUtf16 { pos: 0 }), "{err}");
    // The units themselves are readable.
    assert_eq!(p.read_string16_units().unwrap(), Some(vec![0xd800, 0x41]));
}

#[test]
fn reading_past_the_end_says_where() {
    let mut p = Parcel::new();
    p.write_i32(1).unwrap();
    p.set_data_position(0);
    let err = p.read_i64().unwrap_err();
    assert!(
        matches!(
            err,
            ParcelError::UnexpectedEnd {
                pos: 0,
                needed: 8,
                size: 4
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("position 0"));
    p.set_data_position(usize::MAX - 2);
    assert!(matches!(
        p.read_i32(),
        Err(ParcelError::UnexpectedEnd { .. })
    ));
    assert!(matches!(
        p.read_binder(),
        Err(ParcelError::UnexpectedEnd { .. })
    ));
    assert!(matches!(p.write_i32(1), Err(ParcelError::TooLarge { .. })));
}

#[test]
fn bad_offsets_are_rejected_with_their_index() {
    let mut data = Vec::new();
    data.extend(handle_object(1));
    data.extend(handle_object(2));
    data.extend([0u8; 8]);
    let len = data.len() as u64; // 56

    Parcel::from_bytes(&data, &[0, 24]).expect("valid");
    let mut apart = handle_object(1);
    apart.extend([0u8; 8]);
    apart.extend(handle_object(2));
    Parcel::from_bytes(&apart, &[0, 32]).expect("objects may be apart");

    let cases: &[(&[u64], usize, &str)] = &[
        (&[2], 0, "aligned"),
        (&[0, 26], 1, "aligned"),
        (&[24, 0], 1, "ascend"),
        (&[0, 0], 1, "ascend"),
        (&[0, 20], 1, "overlaps"),
        (&[len], 0, "past the end"),
        (&[40], 0, "past the end"),
        (&[u64::MAX - 3], 0, "past the end"),
    ];
    for &(offsets, index, reason) in cases {
        let err = Parcel::from_bytes(&data, offsets).unwrap_err();
        match &err {
            ParcelError::BadOffset {
                index: i,
                reason: r,
                ..
            } => {
                assert_eq!(*i, index, "{offsets:?}: {err}");
                assert!(r.contains(reason), "{offsets:?}: {err}");
            }
            other => panic!("{offsets:?}: unexpected {other}"),
        }
    }

    for ty in [BINDER_TYPE_FDA, BINDER_TYPE_PTR, 0, 0x1234_5678] {
        let mut bad = data.clone();
        bad[24..28].copy_from_slice(&ty.to_ne_bytes());
        let err = Parcel::from_bytes(&bad, &[0, 24]).unwrap_err();
        assert!(
            matches!(err, ParcelError::UnknownObjectType { index: 1, offset: 24, type_ } if type_ == ty),
            "{err}"
        );
    }

    let mut fd = data.clone();
    fd[0..4].copy_from_slice(&BINDER_TYPE_FD.to_ne_bytes());
    assert!(matches!(
        Parcel::from_bytes(&fd, &[0]),
        Err(ParcelError::FdsNotAllowed {
            index: 0,
            offset: 0
        })
    ));

    assert!(matches!(
        offsets_from_bytes(&[0; 12]),
        Err(ParcelError::OffsetsSize { len: 12 })
    ));
    assert_eq!(offsets_from_bytes(&24u64.to_ne_bytes()).unwrap(), vec![24]);
}

#[test]
fn unlisted_objects_cannot_be_read() {
    // The driver never saw this object (not in the offsets): reading it as a binder fails.
    let data = handle_object(7);
    let mut p = Parcel::from_bytes(&data, &[]).unwrap();
    assert!(matches!(
        p.read_binder(),
        Err(ParcelError::NoObjectAt { pos: 0 })
    ));
    // As plain data it is readable.
    assert_eq!(p.read_u32().unwrap(), BINDER_TYPE_HANDLE);
}

#[test]
fn reply_headers_round_trip_and_become_errors() {
    for ex in [
        AidlException::new(EX_SECURITY, "denied"),
        AidlException::new(EX_ILLEGAL_STATE, ""),
        AidlException::service_specific(-7, "busy"),
    ] {
        let mut p = Parcel::new();
        p.write_exception(&ex).unwrap();
        p.write_i32(99).unwrap();
        p.set_data_position(0);
        match p.read_exception() {
            Err(ParcelError::Exception(got)) => assert_eq!(got, ex),
            other => panic!("expected exception, got {other:?}"),
        }
        // The whole header was consumed.
        assert_eq!(p.read_i32().unwrap(), 99);
    }
    // A stack-trace header that lies about its size.
    let mut p = Parcel::new();
    p.write_i32(EX_SERVICE_SPECIFIC).unwrap();
    p.write_string16("m").unwrap();
    p.write_i32(1 << 20).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_exception(),
        Err(ParcelError::LengthTooLarge { .. })
    ));
    assert_eq!(p.data_position(), 0);
}

// ---------------------------------------------------------------------------------------------
// File descriptors

#[test]
fn outgoing_fds_are_owned_and_travel_through_a_received_parcel() {
    let (r, w) = pipe();
    let mut out = Parcel::new();
    out.write_i32(1).unwrap();
    out.write_fd(w).unwrap();
    out.write_dup_fd(r.as_fd()).unwrap();
    assert_eq!(out.fds().count(), 2);
    assert_eq!(out.offsets(), &[4, 28]);
    let (data, raws) = translate_fds(&out);
    drop(out);

    let (released, release) = counting_release();
    // SAFETY: `raws` are fresh dups owned by nobody else, written into the FD objects.
    let mut p = unsafe { Parcel::from_received(&data, &[4, 28], Some(release)) }.unwrap();
    assert_eq!(p.read_i32().unwrap(), 1);
    let wfd = p.read_fd().unwrap();
    assert_eq!(wfd.as_raw_fd(), raws[0]);
    // Taking the same fd twice is an error; a duplicate of the other may be taken many times.
    p.set_data_position(4);
    assert!(matches!(
        p.read_fd(),
        Err(ParcelError::FdAlreadyTaken { pos: 4 })
    ));
    p.set_data_position(28);
    let rfd1 = p.read_dup_fd().unwrap();
    p.set_data_position(28);
    let rfd2 = p.read_dup_fd().unwrap();
    assert_eq!(p.fds().count(), 1);
    drop(p);
    assert_eq!(released.load(Ordering::SeqCst), 1);
    // (That the untaken fd was closed is checked, race-free, in a child process below.)

    // The fd taken out works: bytes written on it come out of the read end.
    let mut wfile = std::fs::File::from(wfd);
    wfile.write_all(b"hi").unwrap();
    drop(wfile);
    let mut got = [0u8; 2];
    std::fs::File::from(rfd1).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    drop(rfd2);
    drop(r);
}

#[test]
fn received_parcel_closes_untaken_fds_and_releases_once() {
    if !in_child("received_parcel_closes_untaken_fds_and_releases_once") {
        return;
    }
    let (r, w) = pipe();
    let mut out = Parcel::new();
    out.write_interface_token("x.IFoo").unwrap();
    out.write_dup_fd(w.as_fd()).unwrap();
    out.write_binder(BinderObject::local(0x10, 0x20)).unwrap();
    out.write_dup_parcel_file_descriptor(r.as_fd()).unwrap();
    out.write_dup_fd(r.as_fd()).unwrap();
    let offsets = out.offsets().to_vec();

    let before = open_fd_count();
    let (data, raws) = translate_fds(&out);
    assert_eq!(raws.len(), 3);
    assert_eq!(open_fd_count(), before + 3);
    let (released, release) = counting_release();
    // SAFETY: `raws` are fresh dups owned by nobody else, written into the FD objects.
    let mut p = unsafe { Parcel::from_received(&data, &offsets, Some(release)) }.unwrap();
    assert_eq!(open_fd_count(), before + 3);
    p.enforce_interface("x.IFoo").unwrap();
    let taken = p.read_fd().unwrap();
    assert_eq!(
        p.read_binder().unwrap(),
        Some(BinderObject::local(0x10, 0x20))
    );
    assert_eq!(released.load(Ordering::SeqCst), 0);
    drop(p);
    assert_eq!(released.load(Ordering::SeqCst), 1);
    // The two fds nobody took are closed; the one taken is open until dropped.
    assert_eq!(open_fd_count(), before + 1);
    assert!(fd_is_open(taken.as_raw_fd()));
    assert!(!fd_is_open(raws[1]) && !fd_is_open(raws[2]));
    drop(taken);
    assert_eq!(open_fd_count(), before);

    // An outgoing parcel closes its fds on drop too.
    drop(out);
    assert_eq!(open_fd_count(), before - 3);
}

#[test]
fn rejected_received_parcel_closes_its_fds_and_releases_once() {
    if !in_child("rejected_received_parcel_closes_its_fds_and_releases_once") {
        return;
    }
    let file = std::fs::File::open("/dev/null").unwrap();
    let mut out = Parcel::new();
    out.write_dup_fd(file.as_fd()).unwrap();
    out.write_dup_fd(file.as_fd()).unwrap();
    let before = open_fd_count();
    let (mut data, raws) = translate_fds(&out);
    assert_eq!(open_fd_count(), before + 2);
    // Append an object of a type libbinder does not accept, listed after the two fds.
    data.extend_from_slice(&BINDER_TYPE_PTR.to_ne_bytes());
    data.extend_from_slice(&[0; 20]);
    let (released, release) = counting_release();
    // SAFETY: `raws` are fresh dups owned by nobody else, written into the FD objects.
    let err = unsafe { Parcel::from_received(&data, &[0, 24, 48], Some(release)) }.unwrap_err();
    assert!(
        matches!(err, ParcelError::UnknownObjectType { index: 2, .. }),
        "{err}"
    );
    assert_eq!(released.load(Ordering::SeqCst), 1);
    assert_eq!(open_fd_count(), before);
    assert!(raws.iter().all(|&fd| !fd_is_open(fd)));

    // Two objects naming one fd: refused, and the fd is closed once.
    let (data, raws) = translate_fds(&out);
    let mut data = data;
    let first = raws[0];
    data[24 + 8..24 + 12].copy_from_slice(&first.to_ne_bytes());
    // SAFETY: raws[1] is no longer named by any object: close it ourselves; raws[0] is ours.
    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raws[1]) });
    let (released, release) = counting_release();
    // SAFETY: the one fd named (twice) is a fresh dup owned by nobody else.
    let err = unsafe { Parcel::from_received(&data, &[0, 24], Some(release)) }.unwrap_err();
    assert!(
        matches!(
            err,
            ParcelError::DuplicateFd {
                first: 0,
                second: 24,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(released.load(Ordering::SeqCst), 1);
    assert_eq!(open_fd_count(), before);
    drop(out);
}

#[test]
fn nullable_parcel_file_descriptor_framing() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let mut p = Parcel::new();
    p.write_nullable_parcel_file_descriptor(None).unwrap();
    p.write_nullable_parcel_file_descriptor(Some(file.as_fd().try_clone_to_owned().unwrap()))
        .unwrap();
    p.write_i32(7).unwrap();
    // null: 0 | non-null: 1, comm flag 0, fd object | 7
    assert_eq!(&p.data()[..12], &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.offsets(), &[12]);
    p.set_data_position(0);
    assert!(p.read_nullable_parcel_file_descriptor().unwrap().is_none());
    let fd = p
        .read_nullable_parcel_file_descriptor()
        .unwrap()
        .expect("non-null");
    assert!(fd_is_open(fd.as_raw_fd()));
    assert_eq!(p.read_i32().unwrap(), 7);
    p.set_data_position(p.data_size() - 4);
    let err = p.read_nullable_parcel_file_descriptor().unwrap_err();
    assert!(
        matches!(err, ParcelError::BadFlag { value: 7, .. }),
        "{err}"
    );
}

#[test]
fn vector_counts_that_lie_are_errors() {
    let mut p = Parcel::new();
    p.write_i32(3).unwrap();
    p.write_i32(1).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_i32_array(),
        Err(ParcelError::UnexpectedEnd { .. })
    ));
    p.set_data_position(0);
    assert!(p.read_string16_array().is_err());
    assert_eq!(p.data_position(), 0);
    let mut p = Parcel::new();
    p.write_i32(i32::MAX).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_string16_array(),
        Err(ParcelError::LengthTooLarge { .. })
    ));
    let mut p = Parcel::new();
    p.write_i32(2).unwrap();
    p.write_string16("a").unwrap();
    p.write_nullable_string16(None).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_string16_array(),
        Err(ParcelError::UnexpectedNull { pos: 12, .. })
    ));
}

#[test]
fn parcel_file_descriptor_with_comm_channel_is_detached() {
    // A ParcelFileDescriptor written by Java with a comm channel: flag 1, fd, comm fd.
    let file = std::fs::File::open("/dev/null").unwrap();
    let (comm_r, comm_w) = pipe();
    let mut out = Parcel::new();
    out.write_i32(1).unwrap();
    out.write_dup_fd(file.as_fd()).unwrap();
    out.write_fd(comm_w).unwrap();
    let (data, _raws) = translate_fds(&out);
    let offsets = out.offsets().to_vec();
    drop(out);
    // SAFETY: the fds in the FD objects are fresh dups owned by nobody else.
    let mut p = unsafe { Parcel::from_received(&data, &offsets, None) }.unwrap();
    let fd = p.read_parcel_file_descriptor().unwrap();
    drop(p);
    // The reader told the writer DETACHED (2, big-endian) and closed its end of the channel.
    let mut comm = std::fs::File::from(comm_r);
    let mut msg = [0u8; 4];
    comm.read_exact(&mut msg).unwrap();
    assert_eq!(msg, 2i32.to_be_bytes());
    assert!(
        writers_gone(comm.as_fd()),
        "the comm channel fd was not closed"
    );
    drop(fd);
}

/// Fuzzed received parcels with real fds in their FD objects: whatever the bytes, offsets and
/// reads, every fd handed over is closed once the parcel is gone (or was refused), and the
/// release callback ran exactly once.
#[test]
fn fuzzed_received_parcels_leak_no_fds() {
    if !in_child("fuzzed_received_parcels_leak_no_fds") {
        return;
    }
    use proptest::test_runner::{Config, TestRunner};
    let null = std::fs::File::open("/dev/null").unwrap();
    let before = open_fd_count();
    let config = Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (
        structured_input(true),
        proptest::collection::vec(read_op(), 0..40),
    );
    let handed_over = AtomicUsize::new(0);
    runner
        .run(&strategy, |((mut data, offsets, fd_slots), ops)| {
            for &slot in &fd_slots {
                let fd = null.as_fd().try_clone_to_owned().unwrap().into_raw_fd();
                data[slot..slot + 4].copy_from_slice(&fd.to_ne_bytes());
                handed_over.fetch_add(1, Ordering::Relaxed);
            }
            prop_assert_eq!(open_fd_count(), before + fd_slots.len());
            let (released, release) = counting_release();
            // SAFETY: the only FD objects at listed offsets name the fresh dups just made,
            // owned by nobody else, one per object.
            let parcel = unsafe { Parcel::from_received(&data, &offsets, Some(release)) };
            if let Ok(mut p) = parcel {
                run_reads(&mut p, &ops);
            }
            prop_assert_eq!(released.load(Ordering::SeqCst), 1);
            prop_assert_eq!(open_fd_count(), before);
            Ok(())
        })
        .unwrap();
    let handed_over = handed_over.load(Ordering::Relaxed);
    assert!(handed_over > 50, "only {handed_over} fds were handed over");
}

// ---------------------------------------------------------------------------------------------
// Bytes other binder stacks write (issue 13)

/// A String16 as libbinder and rsbinder write it: length in units, units, NUL, zero padding.
fn string16_bytes(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().collect();
    let mut out = (units.len() as i32).to_le_bytes().to_vec();
    for u in units.iter().chain(std::iter::once(&0)) {
        out.extend_from_slice(&u.to_le_bytes());
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// `@nullable String[]` with a null element, as AOSP's `writeUtf8VectorAsUtf16Vector` and
/// rsbinder's `Vec<Option<String>>` write it: count 3, "a", -1, "bc".
fn string_array_with_null() -> Vec<u8> {
    let mut data = 3i32.to_le_bytes().to_vec();
    data.extend(string16_bytes("a"));
    data.extend((-1i32).to_le_bytes());
    data.extend(string16_bytes("bc"));
    data
}

#[test]
fn string16_array_with_a_null_element_reads_as_options() {
    let data = string_array_with_null();
    let mut p = Parcel::from_bytes(&data, &[]).unwrap();
    let v = p.read_nullable_string16_array().unwrap().unwrap();
    assert_eq!(v, vec![Some("a".to_owned()), None, Some("bc".to_owned())]);
    assert_eq!(p.data_avail(), 0);

    // The non-null reader still refuses it, and leaves the position where it was.
    let mut p = Parcel::from_bytes(&data, &[]).unwrap();
    assert!(matches!(
        p.read_string16_array(),
        Err(ParcelError::UnexpectedNull { .. })
    ));
    assert_eq!(p.data_position(), 0);

    // Writing the same values gives the same bytes.
    let mut w = Parcel::new();
    w.write_nullable_string16_array(&[Some("a"), None, Some("bc")])
        .unwrap();
    assert_eq!(w.data(), &data[..]);

    // A null vector is -1.
    let mut p = Parcel::from_bytes(&(-1i32).to_le_bytes(), &[]).unwrap();
    assert_eq!(p.read_nullable_string16_array().unwrap(), None);
}

/// A flat_binder_object naming handle `handle` (BINDER_TYPE_HANDLE), as a proxy writes it.
fn handle_object_bytes(handle: u32) -> Vec<u8> {
    let mut out = BINDER_TYPE_HANDLE.to_le_bytes().to_vec();
    out.extend(0x13u32.to_le_bytes()); // flags
    out.extend(u64::from(handle).to_le_bytes());
    out.extend(0u64.to_le_bytes()); // cookie
    out
}

#[test]
fn android12_stability_category_is_read_as_its_level() {
    // Android 12 writes Category { version 1, reserved 0, 0, level }: level << 24 | 1.
    for (word, level) in [
        (0x0c00_0001u32 as i32, Stability::SYSTEM),
        (0x0300_0001, Stability::VENDOR),
        (0x3f00_0001, Stability::VINTF),
    ] {
        assert_eq!(level.android12_wire(), word);
        let mut data = handle_object_bytes(3);
        data.extend(word.to_le_bytes());
        let mut p = Parcel::from_bytes(&data, &[0]).unwrap();
        let (obj, stability) = p.read_binder_with_stability().unwrap().unwrap();
        assert!(matches!(obj, BinderObject::Handle { handle: 3, .. }));
        assert_eq!(stability, level);
    }
    // Android 12's null binder: a zero BINDER object, then Category { 1, 0, 0, UNDECLARED }.
    let mut null = Parcel::new();
    null.write_null_binder().unwrap();
    let mut data = null.data()[..OBJECT_SIZE].to_vec();
    data.extend(1i32.to_le_bytes());
    let mut p = Parcel::from_bytes(&data, &[]).unwrap();
    assert_eq!(p.read_binder().unwrap(), None);
    // The bare levels of Android 11 and 13+ still read.
    let mut data = handle_object_bytes(3);
    data.extend(12i32.to_le_bytes());
    let mut p = Parcel::from_bytes(&data, &[0]).unwrap();
    assert!(p.read_binder().unwrap().is_some());
}

#[test]
fn malformed_stability_categories_are_refused() {
    // A version other than 1, reserved bytes set, or an unknown level.
    for word in [0x0c00_0002u32, 0x0c00_0101, 0x0c01_0001, 0x0500_0001, 0x7f] {
        let mut data = handle_object_bytes(3);
        data.extend(word.to_le_bytes());
        let mut p = Parcel::from_bytes(&data, &[0]).unwrap();
        assert!(
            matches!(p.read_binder(), Err(ParcelError::BadFlag { .. })),
            "{word:#x} accepted"
        );
        assert_eq!(p.data_position(), 0);
    }
}
