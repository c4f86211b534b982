//! The generator's own tests: errors point at file:line, docs and constants come through.

use crate::decl::{Item, Model};
use crate::types::{Kind, Ty};

fn model(files: &[(&str, &str)]) -> Result<Model, crate::Error> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    Model::parse(&files)
}

fn error(files: &[(&str, &str)]) -> String {
    model(files).expect_err("an error").to_string()
}

#[test]
fn errors_point_at_file_and_line() {
    let e = error(&[(
        "a/IFoo.aidl",
        "package a;\ninterface IFoo {\n  void f(Bar b);\n}\n",
    )]);
    assert!(e.starts_with("a/IFoo.aidl:3: unknown type Bar"), "{e}");
    let e = error(&[("x.aidl", "package a;\n\nparcelable P {\n  int x\n}\n")]);
    assert!(e.starts_with("x.aidl:5: expected `;`"), "{e}");
    let e = error(&[("y.aidl", "interface I {\n  oneway int f();\n}")]);
    assert!(
        e.starts_with("y.aidl:2: oneway method f returns a value"),
        "{e}"
    );
    let e = error(&[(
        "z.aidl",
        "interface I {\n void f(out int x);\n void g() = 0;\n}",
    )]);
    assert!(e.starts_with("z.aidl:3: transaction code out of"), "{e}");
    let e = error(&[("w.aidl", "parcelable P {\n int[3] fixed;\n}")]);
    assert!(e.starts_with("w.aidl:2: fixed-size"), "{e}");
    let e = error(&[("v.aidl", "parcelable Ext;")]);
    assert!(e.contains("rust_type"), "{e}");
    let e = error(&[("u.aidl", "/* open")]);
    assert!(e.starts_with("u.aidl:1: unterminated comment"), "{e}");
}

#[test]
fn docs_constants_and_codes_come_through() {
    let src = "package p;\n/**\n * The service.\n */\n@VintfStability\ninterface IS {\n  /** Five. */\n  const int FIVE = 2 + 3;\n  const long BIG = 1L << 40;\n  const String S = \"s\";\n  /** Does f. */\n  void f(in int[] a, out List<String> b, inout @nullable IBinder c) = 7;\n  oneway void g();\n}\n";
    let m = model(&[("IS.aidl", src)]).expect("model");
    let Item::Interface(i) = &m.items[0] else {
        panic!("not an interface")
    };
    assert_eq!(i.descriptor, "p.IS");
    assert_eq!(i.doc, ["The service."]);
    let c: Vec<(&str, &str)> = i
        .consts
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(
        c,
        [
            ("FIVE", "5i32"),
            ("BIG", "1099511627776i64"),
            ("S", "\"s\"")
        ]
    );
    assert_eq!(i.consts[0].doc, ["Five."]);
    let f = &i.methods[0];
    assert_eq!(
        (f.code, f.oneway, f.doc.as_slice()),
        (7, false, &["Does f.".to_owned()][..])
    );
    assert_eq!(f.args[1].ty.ty, Ty::Array(Box::new(Ty::String)));
    assert!(f.args[2].ty.nullable && f.args[2].ty.ty == Ty::Binder);
    assert_eq!((i.methods[1].code, i.methods[1].oneway), (2, true));
}

#[test]
fn enums_count_on_and_reference_each_other() {
    let src = "@Backing(type=\"int\")\nenum E { A = 3, B, C = A | 0x10, D = -1 }\nparcelable P { E e = E.C; }";
    let m = model(&[("E.aidl", src)]).expect("model");
    let Item::Enum(e) = &m.items[0] else {
        panic!("not an enum")
    };
    assert_eq!(e.backing, "i32");
    let v: Vec<i64> = e.values.iter().map(|x| x.1).collect();
    assert_eq!(v, [3, 4, 0x13, -1]);
    let Item::Parcelable(p) = &m.items[1] else {
        panic!("not a parcelable")
    };
    assert_eq!(p.fields[0].init.as_deref(), Some("E::C"));
    assert_eq!(p.fields[0].ty.ty, Ty::User("E".into(), Kind::Enum("i32")));
}

#[test]
fn generated_text_names_every_part() {
    let src = "package p;\ninterface I { int f(int x); }\nunion U { int a; String b; }";
    let files = [("I.aidl".to_owned(), src.to_owned())];
    let model = Model::parse(&files).expect("model");
    let text = crate::emit::emit(
        &model,
        &crate::emit::Options {
            krate: "::bittube".into(),
            tokio: true,
        },
    );
    for part in [
        "pub mod I",
        "pub trait Interface",
        "pub struct Server",
        "pub struct Proxy",
        "pub struct AsyncProxy",
        "pub trait AsyncInterface",
        "pub struct AsyncServer",
        "pub enum U",
        "pub const TAG_A: i32 = 0;",
        "DESCRIPTOR: &str = \"p.I\"",
    ] {
        assert!(text.contains(part), "missing {part}");
    }
}

#[test]
fn inside_bittube_the_support_paths_start_with_crate() {
    let src = "package p;\ninterface I { const int K = 1; int f(int x); }\nparcelable P { int y; }";
    let files = [("I.aidl".to_owned(), src.to_owned())];
    let model = Model::parse(&files).expect("model");
    let text = crate::emit::emit(
        &model,
        &crate::emit::Options {
            krate: "crate".into(),
            tokio: false,
        },
    );
    assert!(text.contains("use crate::binder_ipc::"), "{text}");
    assert!(!text.contains("::bittube"), "{text}");
    // A service with its own state dispatches through the free function Server<T> uses.
    assert!(text.contains("pub fn dispatch<T: Interface + ?Sized>"));
    assert!(text.contains("dispatch(&self.0, code,"));
    // Undocumented constants and fields still get rustdoc (missing_docs stays quiet).
    assert!(text.contains("/// `K` (a constant of the `.aidl`)."));
    assert!(text.contains("/// Field `y`."));
    assert!(!text.contains("AsyncProxy"));
}
