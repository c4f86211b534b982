// Shared by the build scripts of bittube-aidl-tests and interop, each of which `include!`s
// this file: where cargo put the package of a dependency.

/// The directory of the package `name_version` (e.g. `"rsbinder-0.12.0"`), from its
/// manifest path in `cargo metadata` (wherever the registry or a vendor directory put it).
fn package_dir(name_version: &str) -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(std::env::var("TARGET").expect("TARGET"))
        .arg("--manifest-path")
        .arg(std::path::Path::new(&manifest).join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    // Every manifest_path value; the one of `name_version`.
    let suffix = format!("{name_version}/Cargo.toml");
    let manifest_path = json
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|p| p.ends_with(&suffix))
        .unwrap_or_else(|| panic!("{name_version} in cargo metadata"));
    std::path::Path::new(manifest_path)
        .parent()
        .expect("package dir")
        .to_path_buf()
}
