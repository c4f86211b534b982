//! Generates the rsbinder side of `aidl/`, and puts rsbinder-tools' `rsb_hub` source where
//! `src/bin/rsb_hub.rs` includes it (cargo builds no binaries of dependencies).

use std::path::PathBuf;
use std::process::Command;

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

/// rsbinder-tools' `src/bin/rsb_hub.rs`, found through `cargo metadata` (the package's
/// manifest path, wherever the registry or a vendor directory put it).
fn rsb_hub_source() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(std::env::var("TARGET").expect("TARGET"))
        .arg("--manifest-path")
        .arg(PathBuf::from(manifest).join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    // Every manifest_path value; the one of rsbinder-tools-0.12.0.
    let path = json
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|p| p.ends_with("rsbinder-tools-0.12.0/Cargo.toml"))
        .expect("rsbinder-tools 0.12.0 in cargo metadata");
    PathBuf::from(path)
        .parent()
        .expect("package dir")
        .join("src/bin/rsb_hub.rs")
}
