//! Generates the corpus (aidl/) for bittube (bittube-aidl) and for rsbinder (rsbinder-aidl).

use std::path::PathBuf;

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
}
