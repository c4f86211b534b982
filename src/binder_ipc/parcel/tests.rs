//! Unit tests: exact byte layouts against hand-computed expectations.

use super::*;
use crate::binder_ipc::uapi::{BINDER_TYPE_BINDER, BINDER_TYPE_HANDLE};

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

#[test]
fn primitives_are_4_aligned_and_padded() {
    let mut p = Parcel::new();
    p.write_bool(true).unwrap();
    p.write_byte(-2).unwrap();
    p.write_char(0x263a).unwrap();
    p.write_i64(0x0102_0304_0506_0708).unwrap();
    p.write_f32(1.5).unwrap();
    p.write_f64(-2.25).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&[1, 0, 0, 0]);
    want.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff]);
    want.extend_from_slice(&[0x3a, 0x26, 0, 0]);
    want.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    want.extend_from_slice(&1.5f32.to_le_bytes());
    want.extend_from_slice(&(-2.25f64).to_le_bytes());
    assert_eq!(p.data(), &want[..]);
    assert_eq!(p.data_position(), 32);
    assert!(p.offsets().is_empty());
}

#[test]
fn string16_ab_layout() {
    let mut p = Parcel::new();
    p.write_string16("ab").unwrap();
    assert_eq!(p.data(), &[2, 0, 0, 0, b'a', 0, b'b', 0, 0, 0, 0, 0]);
    let mut p = Parcel::new();
    p.write_string16("abc").unwrap();
    // 3 units + NUL = 8 bytes: no padding needed.
    assert_eq!(p.data(), &[3, 0, 0, 0, b'a', 0, b'b', 0, b'c', 0, 0, 0]);
    let mut p = Parcel::new();
    p.write_nullable_string16(None).unwrap();
    p.write_string16("").unwrap();
    assert_eq!(p.data(), &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.set_data_position(0);
    assert_eq!(p.read_string16().unwrap(), None);
    assert_eq!(p.read_string16().unwrap(), Some(String::new()));
}

#[test]
fn string16_surrogate_pairs_count_as_two_units() {
    let mut p = Parcel::new();
    p.write_string16("😀").unwrap();
    assert_eq!(&p.data()[..4], &le32(2));
    assert_eq!(p.data().len(), 4 + 8);
    p.set_data_position(0);
    assert_eq!(p.read_string16().unwrap().as_deref(), Some("😀"));
}

#[test]
fn interface_token_layout() {
    let mut p = Parcel::new();
    p.write_interface_token("a.B").unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&le32(0x8000_0000));
    want.extend_from_slice(&le32(0xffff_ffff));
    want.extend_from_slice(&[0x54, 0x53, 0x59, 0x53]); // 'SYST' as a native-endian u32
    want.extend_from_slice(&le32(3));
    want.extend_from_slice(&[b'a', 0, b'.', 0, b'B', 0, 0, 0]);
    assert_eq!(p.data(), &want[..]);
    p.set_data_position(0);
    let header = p.enforce_interface("a.B").unwrap();
    assert_eq!(header.strict_mode_policy, i32::MIN);
    assert_eq!(header.work_source_uid, -1);
    assert_eq!(p.data_avail(), 0);
}

#[test]
fn enforce_interface_mismatch_is_clear_and_keeps_position() {
    let mut p = Parcel::new();
    p.write_interface_token("android.os.IServiceManager")
        .unwrap();
    p.set_data_position(0);
    let err = p.enforce_interface("android.os.IOther").unwrap_err();
    assert!(
        matches!(err, ParcelError::InterfaceMismatch { ref found, .. }
        if found.as_deref() == Some("android.os.IServiceManager"))
    );
    let text = err.to_string();
    assert!(
        text.contains("android.os.IOther") && text.contains("IServiceManager"),
        "{text}"
    );
    assert_eq!(p.data_position(), 0);

    let mut p = Parcel::new();
    p.write_i32(0).unwrap();
    p.write_i32(-1).unwrap();
    p.write_u32(crate::binder_ipc::uapi::pack_chars(b'V', b'N', b'D', b'R'))
        .unwrap();
    p.write_string16("x").unwrap();
    p.set_data_position(0);
    let err = p.enforce_interface("x").unwrap_err();
    assert!(
        matches!(err, ParcelError::InterfaceHeader { pos: 8, .. }),
        "{err}"
    );
}

#[test]
fn byte_array_layout() {
    let mut p = Parcel::new();
    p.write_byte_array(&[1, 2, 3]).unwrap();
    p.write_nullable_byte_array(None).unwrap();
    p.write_byte_array(&[]).unwrap();
    assert_eq!(
        p.data(),
        &[3, 0, 0, 0, 1, 2, 3, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
    );
}

#[test]
fn binder_objects_layout_and_offsets() {
    let mut p = Parcel::new();
    p.write_i32(7).unwrap();
    p.write_binder(BinderObject::local(0x1122, 0x3344)).unwrap();
    p.write_binder(BinderObject::handle(5)).unwrap();
    p.write_null_binder().unwrap();
    let d = p.data();
    assert_eq!(d.len(), 4 + 3 * 28);
    // Local strong binder at 4: type, flags (ACCEPTS_FDS | prio 19), ptr, cookie, stability.
    assert_eq!(&d[4..8], &le32(BINDER_TYPE_BINDER));
    assert_eq!(&d[8..12], &le32(0x113));
    assert_eq!(&d[12..20], &0x1122u64.to_le_bytes());
    assert_eq!(&d[20..28], &0x3344u64.to_le_bytes());
    assert_eq!(&d[28..32], &le32(0x0c));
    // Handle at 32.
    assert_eq!(&d[32..36], &le32(BINDER_TYPE_HANDLE));
    assert_eq!(&d[36..40], &le32(0x13));
    assert_eq!(&d[40..48], &5u64.to_le_bytes());
    assert_eq!(&d[48..56], &0u64.to_le_bytes());
    assert_eq!(&d[56..60], &le32(0x0c));
    // Null binder at 60: not listed, stability 0.
    assert_eq!(&d[60..64], &le32(BINDER_TYPE_BINDER));
    assert_eq!(&d[68..84], &[0u8; 16]);
    assert_eq!(&d[84..88], &le32(0));
    assert_eq!(p.offsets(), &[4, 32]);
    let objects: Vec<_> = p.binder_objects().collect();
    assert_eq!(
        objects,
        vec![
            (4, BinderObject::local(0x1122, 0x3344)),
            (32, BinderObject::handle(5))
        ]
    );

    p.set_data_position(0);
    assert_eq!(p.read_i32().unwrap(), 7);
    assert_eq!(
        p.read_binder().unwrap(),
        Some(BinderObject::local(0x1122, 0x3344))
    );
    assert_eq!(
        p.read_binder_with_stability().unwrap(),
        Some((BinderObject::handle(5), Stability::SYSTEM))
    );
    assert_eq!(p.read_binder().unwrap(), None);
    assert_eq!(p.data_avail(), 0);
}

#[test]
fn handle_zero_is_unlisted_like_libbinder() {
    let mut p = Parcel::new();
    p.write_binder(BinderObject::handle(0)).unwrap();
    assert!(p.offsets().is_empty());
    p.set_data_position(0);
    assert_eq!(p.read_binder().unwrap(), Some(BinderObject::handle(0)));
}

#[test]
fn fd_object_layout() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let mut p = Parcel::new();
    p.write_dup_fd(file.as_fd()).unwrap();
    let raw = p.fds().next().unwrap().as_raw_fd();
    assert_ne!(raw, file.as_raw_fd());
    let d = p.data();
    assert_eq!(&d[0..4], &le32(BINDER_TYPE_FD));
    assert_eq!(&d[4..8], &le32(0));
    assert_eq!(&d[8..16], &(raw as u32 as u64).to_le_bytes());
    assert_eq!(&d[16..24], &1u64.to_le_bytes());
    assert_eq!(p.offsets(), &[0]);
}

#[test]
fn parcel_file_descriptor_layout() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let mut p = Parcel::new();
    p.write_dup_parcel_file_descriptor(file.as_fd()).unwrap();
    assert_eq!(&p.data()[0..4], &le32(0));
    assert_eq!(&p.data()[4..8], &le32(BINDER_TYPE_FD));
    assert_eq!(p.offsets(), &[4]);
    p.set_data_position(0);
    let fd = p.read_parcel_file_descriptor().unwrap();
    assert_eq!(p.fds().count(), 0);
    drop(fd);
}

#[test]
fn exception_layout() {
    let mut p = Parcel::new();
    p.write_exception(&AidlException::new(EX_ILLEGAL_ARGUMENT, "x"))
        .unwrap();
    assert_eq!(
        p.data(),
        &[0xfd, 0xff, 0xff, 0xff, 1, 0, 0, 0, b'x', 0, 0, 0, 0, 0, 0, 0]
    );
    let mut p = Parcel::new();
    p.write_exception(&AidlException::service_specific(42, "no"))
        .unwrap();
    p.set_data_position(0);
    let err = p.read_exception().unwrap_err();
    match err {
        ParcelError::Exception(ex) => {
            assert_eq!(ex.code, EX_SERVICE_SPECIFIC);
            assert_eq!(ex.service_specific, Some(42));
            assert_eq!(ex.message, "no");
            assert!(ex.to_string().contains("EX_SERVICE_SPECIFIC"), "{ex}");
        }
        other => panic!("expected an exception, got {other}"),
    }
    let mut p = Parcel::new();
    p.write_no_exception().unwrap();
    p.write_i32(5).unwrap();
    p.set_data_position(0);
    p.read_exception().unwrap();
    assert_eq!(p.read_i32().unwrap(), 5);
}

#[test]
fn fat_reply_header_is_skipped() {
    let mut p = Parcel::new();
    p.write_i32(EX_HAS_REPLY_HEADER).unwrap();
    p.write_i32(12).unwrap(); // header size, counting itself
    p.write_i32(111).unwrap();
    p.write_i32(222).unwrap();
    p.write_i32(9).unwrap();
    p.set_data_position(0);
    p.read_exception().unwrap();
    assert_eq!(p.read_i32().unwrap(), 9);
}

#[test]
fn plain_reads_over_objects_are_refused() {
    let mut p = Parcel::new();
    p.write_binder(BinderObject::handle(3)).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_i32(),
        Err(ParcelError::ReadOverObject {
            pos: 0,
            object: 0,
            ..
        })
    ));
    p.set_data_position(20);
    assert!(matches!(
        p.read_i64(),
        Err(ParcelError::ReadOverObject { object: 0, .. })
    ));
    p.set_data_position(24);
    assert_eq!(p.read_i32().unwrap(), Stability::SYSTEM.0);
    // And writes over them too.
    p.set_data_position(8);
    assert!(matches!(
        p.write_i32(1),
        Err(ParcelError::WriteOverObject { object: 0, .. })
    ));
}

#[test]
fn objects_are_only_read_where_listed() {
    let mut p = Parcel::new();
    p.write_i32(1).unwrap();
    p.write_binder(BinderObject::handle(3)).unwrap();
    p.set_data_position(0);
    assert!(matches!(
        p.read_binder(),
        Err(ParcelError::NoObjectAt { pos: 0 })
    ));
    p.set_data_position(8);
    assert!(matches!(
        p.read_binder(),
        Err(ParcelError::NoObjectAt { pos: 8 })
    ));
    p.set_data_position(4);
    assert!(matches!(
        p.read_fd(),
        Err(ParcelError::WrongObjectType { pos: 4, .. })
    ));
    assert_eq!(p.data_position(), 4);
    assert_eq!(p.read_binder().unwrap(), Some(BinderObject::handle(3)));
}

#[test]
fn writes_in_the_middle_keep_offsets_sorted() {
    let mut p = Parcel::new();
    p.write_i32(0).unwrap();
    p.write_i32(0).unwrap();
    p.write_binder(BinderObject::handle(9)).unwrap(); // at 8
    p.set_data_position(p.data_size() + 4);
    p.write_binder(BinderObject::handle(8)).unwrap(); // at 40
    assert_eq!(p.offsets(), &[8, 40]);
    // Object at 0 would overlap the one at 8.
    p.set_data_position(0);
    assert!(matches!(
        p.write_binder(BinderObject::handle(7)),
        Err(ParcelError::WriteOverObject { object: 8, .. })
    ));
    assert_eq!(p.offsets(), &[8, 40]);
    assert_eq!(p.data_position(), 0);
    p.set_data_position(2);
    assert!(matches!(
        p.write_fd_dup_null(),
        Err(ParcelError::UnalignedObject { pos: 2 })
    ));
}

impl Parcel {
    fn write_fd_dup_null(&mut self) -> Result<(), ParcelError> {
        let file = std::fs::File::open("/dev/null").unwrap();
        self.write_dup_fd(file.as_fd())
    }
}

#[test]
fn read_failure_leaves_position() {
    let mut p = Parcel::new();
    p.write_i32(100).unwrap(); // a String16 length that lies
    p.write_i32(0).unwrap();
    p.set_data_position(0);
    let err = p.read_string16().unwrap_err();
    assert!(matches!(
        err,
        ParcelError::LengthTooLarge {
            pos: 0,
            len: 100,
            available: 4,
            ..
        }
    ));
    assert_eq!(p.data_position(), 0);
    assert_eq!(p.read_i32().unwrap(), 100);
}

#[test]
fn binder_stability_must_be_declared() {
    let mut p = Parcel::new();
    let err = p
        .write_binder_with_stability(BinderObject::handle(3), Stability(5))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ParcelError::BadFlag {
                value: 5,
                pos: 24,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!((p.data_size(), p.offsets().len()), (0, 0));
    p.write_binder_with_stability(BinderObject::handle(3), Stability::VINTF)
        .unwrap();
    p.write_null_binder().unwrap();
    // Corrupt the stabilities: an undeclared level on a binder, a level on a null binder.
    let mut data = p.data().to_vec();
    data[24..28].copy_from_slice(&0i32.to_ne_bytes());
    data[52..56].copy_from_slice(&12i32.to_ne_bytes());
    let mut q = Parcel::from_bytes(&data, p.offsets()).unwrap();
    let err = q.read_binder().unwrap_err();
    assert!(
        matches!(
            err,
            ParcelError::BadFlag {
                value: 0,
                pos: 24,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(q.data_position(), 0);
    q.set_data_position(28);
    let err = q.read_binder().unwrap_err();
    assert!(
        matches!(
            err,
            ParcelError::BadFlag {
                value: 12,
                pos: 52,
                ..
            }
        ),
        "{err}"
    );
}
