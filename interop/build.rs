//! Generates the rsbinder side of `aidl/`, and puts rsbinder-tools' `rsb_hub` source where
//! `src/bin/rsb_hub.rs` includes it (cargo builds no binaries of dependencies).

use std::path::PathBuf;

include!("../bittube-aidl-tests/package_dir.rs");

fn main() {
    println!("cargo:rerun-if-changed=aidl");
    if let Err(err) = rsbinder_aidl::Builder::new()
        .source(PathBuf::from("aidl/bittube/interop/IEcho.aidl"))
        .output(PathBuf::from("echo.rs"))
        .generate()
    {
        panic!("aidl: {err:?}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let source = rsb_hub_source();
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).expect("read rsb_hub.rs");
    // `include!` takes items only: the crate-level attribute moves to src/bin/rsb_hub.rs.
    let items: String = text
        .lines()
        .filter(|l| !l.starts_with("#!["))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("rsb_hub.rs"), items).expect("write rsb_hub.rs");
}

/// rsbinder-tools' `src/bin/rsb_hub.rs` (the package found by [`package_dir`]).
fn rsb_hub_source() -> PathBuf {
    package_dir("rsbinder-tools-0.12.0").join("src/bin/rsb_hub.rs")
}
