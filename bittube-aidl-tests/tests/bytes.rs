//! The corpus's data types written by bittube's generated code and by rsbinder's generated
//! code for the same `.aidl` files: the bytes must be equal, and each side reads the other's.

use bittube::binder_ipc::aidl::AidlValue;
use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::ProcessState;
use bittube_aidl_tests::rsb::bittube::test as r;
use bittube_aidl_tests::{Color, Everything, Level, Point, Shape};

fn process() -> ProcessState {
    // A real process on an embedded shim: data types never touch it, but the API takes one.
    let (ps, driver) = ProcessState::embedded().expect("embedded shim");
    std::mem::forget(driver);
    ps
}

fn bittube_bytes<T: AidlValue>(v: &T, ps: &ProcessState) -> Vec<u8> {
    let mut p = Parcel::new();
    v.write_aidl(&mut p, ps).expect("write");
    p.data().to_vec()
}

fn read_back<T: AidlValue>(bytes: &[u8], ps: &ProcessState) -> T {
    let mut p = Parcel::from_bytes(bytes, &[]).expect("parcel");
    let v = T::read_aidl(&mut p, ps).expect("read");
    assert_eq!(p.data_avail(), 0, "every byte read");
    v
}

fn point(x: i32) -> (Point, r::Point::Point) {
    let b = Point {
        x,
        y: -x,
        label: format!("p{x}"),
        note: (x % 2 == 0).then(|| "even".into()),
    };
    let s = r::Point::Point {
        x,
        y: -x,
        label: format!("p{x}"),
        note: (x % 2 == 0).then(|| "even".into()),
    };
    (b, s)
}

/// One `Everything` value, built from the names of one side's generated types (the struct,
/// `Color`, `Level`, `Shape`) and four points: both sides get the same field values.
macro_rules! everything {
    (
        $everything:ident, $color:ident, $level:ident, $shape:ident,
        [$p1:expr, $p2:expr, $p3:expr, $p4:expr]
    ) => {
        $everything {
            flag: false,
            b: -7,
            c: 'é' as u16,
            i: i32::MIN,
            l: i64::MAX,
            f: -0.5,
            d: 1e300,
            s: "héllo wörld ☃".into(),
            ns: None,
            bytes: vec![1, 2, 3, 250, 9],
            chars: vec![65, 0x263a],
            flags: vec![true, false, true],
            ints: vec![-1, 0, 1],
            longs: vec![1 << 40],
            floats: vec![0.25],
            doubles: vec![-2.5, 3.0],
            strings: vec!["a".into(), "".into()],
            list: vec!["x".into()],
            points: vec![$p1, $p2],
            pointList: vec![$p3],
            maybePoint: Some($p4),
            color: $color::BLUE,
            colors: vec![$color::RED, $color::GREEN, $color(9)],
            level: $level::HIGH,
            shape: $shape::Sides(vec![3, 4, 5]),
            maybeInts: None,
        }
    };
}

fn everything() -> (Everything, r::Everything::Everything) {
    use r::Color::Color as RColor;
    use r::Everything::Everything as REverything;
    use r::Level::Level as RLevel;
    use r::Shape::Shape as RShape;
    let (p1, s1) = point(1);
    let (p2, s2) = point(2);
    let (p3, s3) = point(3);
    let (p4, s4) = point(4);
    let b = everything!(Everything, Color, Level, Shape, [p1, p2, p3, p4]);
    let s = everything!(REverything, RColor, RLevel, RShape, [s1, s2, s3, s4]);
    (b, s)
}

#[test]
fn a_parcelable_is_written_as_rsbinder_writes_it_and_read_back() {
    let ps = process();
    for x in 0..4 {
        let (b, s) = point(x);
        let mine = bittube_bytes(&b, &ps);
        assert_eq!(mine, rsbinder::to_bytes(&s).expect("rsbinder"), "Point {x}");
        assert_eq!(read_back::<Point>(&mine, &ps), b);
    }
}

#[test]
fn every_field_type_is_written_as_rsbinder_writes_it() {
    let ps = process();
    let (b, s) = everything();
    let mine = bittube_bytes(&b, &ps);
    let theirs = rsbinder::to_bytes(&s).expect("rsbinder");
    assert_eq!(mine.len(), theirs.len(), "sizes");
    assert_eq!(mine, theirs);
    assert_eq!(read_back::<Everything>(&theirs, &ps), b);
    let back: r::Everything::Everything = rsbinder::from_bytes(&mine).expect("rsbinder reads ours");
    assert_eq!(back.s, s.s);
    assert_eq!(back.colors, s.colors);
}

#[test]
fn unions_enums_and_nulls_match_rsbinder() {
    let ps = process();
    let (p, sp) = point(5);
    let pairs: Vec<(Shape, r::Shape::Shape)> = vec![
        (Shape::Radius(9), r::Shape::Shape::Radius(9)),
        (Shape::Corner(p), r::Shape::Shape::Corner(sp)),
        (Shape::Name("n".into()), r::Shape::Shape::Name("n".into())),
    ];
    for (b, s) in pairs {
        let mine = bittube_bytes(&b, &ps);
        assert_eq!(mine, rsbinder::to_bytes(&s).unwrap(), "{b:?}");
        assert_eq!(read_back::<Shape>(&mine, &ps), b);
    }
    let none: Option<Point> = None;
    assert_eq!(
        bittube_bytes(&none, &ps),
        rsbinder::to_bytes(&None::<r::Point::Point>).unwrap()
    );
    let colors = vec![Color::GREEN, Color::BLUE];
    let theirs = vec![r::Color::Color::GREEN, r::Color::Color::BLUE];
    assert_eq!(
        bittube_bytes(&colors, &ps),
        rsbinder::to_bytes(&theirs).unwrap(),
        "byte-backed enum arrays are packed"
    );
    assert_eq!(
        bittube_bytes(&Level::LOW, &ps),
        rsbinder::to_bytes(&r::Level::Level::LOW).unwrap()
    );
    assert_eq!(Level::LOW.0, 4);
    assert_eq!(Level::HIGH.0, 0x1_0000_0000);
    assert_eq!(Point::DIMENSIONS, 2);
    assert_eq!(Point::default().y, 7);
    assert_eq!(Everything::default().color, Color::GREEN);
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    let ps = process();
    let (b, _) = everything();
    let bytes = bittube_bytes(&b, &ps);
    // Every truncation and a corrupted length at every word: an error or a value, never a panic.
    for cut in (0..bytes.len()).step_by(4) {
        let mut p = Parcel::from_bytes(&bytes[..cut], &[]).unwrap();
        assert!(
            Everything::read_aidl(&mut p, &ps).is_err(),
            "truncated at {cut}"
        );
    }
    for at in (0..bytes.len()).step_by(4) {
        let mut bad = bytes.clone();
        bad[at..at + 4].copy_from_slice(&0x7fff_fff0i32.to_le_bytes());
        let mut p = Parcel::from_bytes(&bad, &[]).unwrap();
        let _ = Everything::read_aidl(&mut p, &ps);
    }
    // A union tag nobody declared.
    let mut p = Parcel::new();
    p.write_i32(1).unwrap();
    p.write_i32(42).unwrap();
    let mut p = Parcel::from_bytes(p.data(), &[]).unwrap();
    let err = Shape::read_aidl(&mut p, &ps).unwrap_err();
    assert!(err.to_string().contains("unknown union tag 42"), "{err}");
}

#[test]
fn a_tube_end_is_checked_on_receipt() {
    use bittube::binder_ipc::aidl::ParcelFileDescriptor;
    use bittube::bittube::{BitTube, TubeEnd};
    let ps = process();
    // A pipe is no tube end: written as a ParcelFileDescriptor, it is refused as a TubeEnd.
    let (r, _w) = nix::unistd::pipe().expect("pipe");
    let mut p = Parcel::new();
    ParcelFileDescriptor(r)
        .write_aidl(&mut p, &ps)
        .expect("write");
    p.set_data_position(0);
    let err = TubeEnd::read_aidl(&mut p, &ps).expect_err("a pipe is not a tube end");
    assert!(err.to_string().contains("not a tube end"), "{err}");
    // A real end passes, with the same bytes as a ParcelFileDescriptor of it.
    let mut tube = BitTube::new().expect("tube");
    let end = tube.take_remote().expect("end");
    let mut p = Parcel::new();
    end.write_aidl(&mut p, &ps).expect("write");
    p.set_data_position(0);
    let got = TubeEnd::read_aidl(&mut p, &ps).expect("a tube end");
    tube.local().send_batch(&[5u32]).expect("send");
    let mut buf = [0u32; 1];
    got.recv_batch_timeout(&mut buf, std::time::Duration::from_secs(10))
        .expect("recv");
    assert_eq!(buf, [5]);
}

/// Records the data of every call and answers with no exception and zeros.
struct Recorder(std::sync::Mutex<Vec<Vec<u8>>>);

impl bittube::binder_ipc::runtime::Service for Recorder {
    fn descriptor(&self) -> &str {
        bittube_aidl_tests::ICorpus::DESCRIPTOR
    }
    fn on_transact(
        &self,
        _: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        _: &bittube::binder_ipc::runtime::CallContext,
    ) -> Result<(), bittube::binder_ipc::runtime::BinderError> {
        self.0.lock().unwrap().push(data.data().to_vec());
        reply.write_no_exception()?;
        Ok(reply.write_bytes(&[0; 16])?)
    }
}

#[test]
fn a_proxys_call_data_is_the_token_then_rsbinders_encoding_of_the_arguments() {
    use bittube::binder_ipc::runtime::Binder;
    use bittube_aidl_tests::ICorpus;
    let ps = process();
    let rec = std::sync::Arc::new(Recorder(Default::default()));
    let proxy = ICorpus::Proxy::new(Binder::Local(rec.clone()), &ps);
    proxy.add(40, 2).unwrap();
    proxy.maybe(false, Some("fb"), None).unwrap();
    proxy.maybe(true, None, Some(&[1, 2])).unwrap();
    proxy.reverse(&["a".into(), "bc".into()]).unwrap();
    proxy.area(&Shape::Name("x".into())).unwrap();
    proxy.fill(&mut vec![0; 3], 5).unwrap();
    let (e, se) = everything();
    // The recorder answers zeros: a null Everything, refused; the call data is recorded.
    assert!(proxy.echo(&e).is_err());
    let cat = |parts: Vec<Vec<u8>>| parts.concat();
    let b = |v: &dyn Fn() -> rsbinder::Result<Vec<u8>>| v().expect("rsbinder");
    let expected: Vec<Vec<u8>> = vec![
        cat(vec![
            b(&|| rsbinder::to_bytes(&40i32)),
            b(&|| rsbinder::to_bytes(&2i64)),
        ]),
        cat(vec![
            b(&|| rsbinder::to_bytes(&false)),
            b(&|| rsbinder::to_bytes(&Some("fb".to_owned()))),
            b(&|| rsbinder::to_bytes(&None::<Vec<i32>>)),
        ]),
        cat(vec![
            b(&|| rsbinder::to_bytes(&true)),
            b(&|| rsbinder::to_bytes(&None::<String>)),
            b(&|| rsbinder::to_bytes(&Some(vec![1i32, 2]))),
        ]),
        b(&|| rsbinder::to_bytes(&vec!["a".to_owned(), "bc".to_owned()])),
        b(&|| rsbinder::to_bytes(&r::Shape::Shape::Name("x".into()))),
        // An out array sends its size (libbinder's writeVectorSize), then the in argument.
        cat(vec![
            b(&|| rsbinder::to_bytes(&3i32)),
            b(&|| rsbinder::to_bytes(&5i32)),
        ]),
        b(&|| rsbinder::to_bytes(&se)),
    ];
    let mut token = Parcel::new();
    token.write_interface_token(ICorpus::DESCRIPTOR).unwrap();
    let calls = rec.0.lock().unwrap();
    assert_eq!(calls.len(), expected.len());
    for (i, (call, args)) in calls.iter().zip(&expected).enumerate() {
        assert!(
            call.starts_with(token.data()),
            "call {i}: the interface token first"
        );
        assert_eq!(
            &call[token.data().len()..],
            &args[..],
            "call {i}: the arguments"
        );
    }
}
