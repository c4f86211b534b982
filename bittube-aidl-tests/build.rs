//! Generates the corpus (aidl/) for bittube (bittube-aidl) and for rsbinder (rsbinder-aidl),
//! the README's example (aidl/bittube/example, for src/bin/ticker.rs),
//! and AOSP's Android 16 service-manager AIDL (as the rsbinder package ships it) for bittube.

use std::path::PathBuf;

include!("package_dir.rs");

const FILES: &[&str] = &[
    "Point",
    "Color",
    "Level",
    "Shape",
    "Everything",
    "TubeEnd",
    "Names",
    "ICallback",
    "ICorpus",
    "ISlow",
];

fn main() {
    let path = |f: &&str| PathBuf::from(format!("aidl/bittube/test/{f}.aidl"));
    let mut b = bittube_aidl::Builder::new().output("corpus.rs").tokio(true);
    for f in FILES {
        b = b.source(path(f));
    }
    if let Err(e) = b.generate() {
        panic!("{e}");
    }
    // rsbinder's side: the data types only (its interfaces need no comparison here).
    let mut r = rsbinder_aidl::Builder::new().output(PathBuf::from("rsbinder_corpus.rs"));
    for f in ["Point", "Color", "Level", "Shape", "Everything"].iter() {
        r = r.source(path(f));
    }
    if let Err(e) = r.generate() {
        panic!("rsbinder-aidl: {e:?}");
    }
    aosp_service_manager();
    ticker().expect("the README's example");
}

/// The README's first example (`src/bin/ticker.rs`); the README shows this function's body.
fn ticker() -> Result<std::path::PathBuf, bittube_aidl::Error> {
    bittube_aidl::Builder::new()
        .source("aidl/bittube/example/TubeEnd.aidl")
        .source("aidl/bittube/example/ITicker.aidl")
        .output("ticker.rs")
        .tokio(true)
        .generate()
}

/// AOSP's `android/os/*.aidl` of Android 16, from the rsbinder package (found through
/// [`package_dir`]), less PersistableBundle (a Java-only parcelable nothing here uses).
fn aosp_service_manager() {
    let dir = package_dir("rsbinder-0.12.0").join("aidl/16/android/os");
    let mut b = bittube_aidl::Builder::new().output("aosp_service_manager.rs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("AOSP aidl dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.ends_with("PersistableBundle.aidl"))
        .collect();
    files.sort();
    for f in files {
        b = b.source(f);
    }
    if let Err(e) = b.generate() {
        panic!("{e}");
    }
}
