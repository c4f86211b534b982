//! The README's first program is this crate's `ticker` binary, its `.aidl` files and its
//! build script call, verbatim: every fenced block after a `<!-- same as: PATH -->` line is
//! that file's whole content, after `<!-- part of: PATH -->` a piece of it. The program is
//! run here too (its service and client processes), so the README shows code that works.

use std::process::Command;
use std::time::{Duration, Instant};

/// The README and the files it shows, read at build time (the kernel run has no sources).
const README: &str = include_str!("../../README.md");
const FILES: &[(&str, &str)] = &[
    (
        "bittube-aidl-tests/aidl/bittube/example/TubeEnd.aidl",
        include_str!("../aidl/bittube/example/TubeEnd.aidl"),
    ),
    (
        "bittube-aidl-tests/aidl/bittube/example/ITicker.aidl",
        include_str!("../aidl/bittube/example/ITicker.aidl"),
    ),
    ("bittube-aidl-tests/build.rs", include_str!("../build.rs")),
    (
        "bittube-aidl-tests/src/bin/ticker.rs",
        include_str!("../src/bin/ticker.rs"),
    ),
];

/// The fenced blocks that follow a marker line: (marker, path, code).
fn marked_blocks(readme: &str) -> Vec<(&str, &str, String)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("<!-- ") else {
            continue;
        };
        let Some((marker, path)) = rest.trim_end_matches(" -->").split_once(": ") else {
            continue;
        };
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("```")),
            "README line {}: a fence must follow {line:?}",
            i + 2
        );
        let code: String = lines[i + 2..]
            .iter()
            .take_while(|l| **l != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        blocks.push((marker, path, code));
    }
    blocks
}

/// Each line without its leading spaces: a piece may be indented differently in its file.
fn dedent(text: &str) -> String {
    text.lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect()
}

#[test]
fn the_readme_shows_the_ticker_program_verbatim() {
    let readme = README;
    let blocks = marked_blocks(readme);
    let mut lines = 0;
    for (marker, path, code) in &blocks {
        let (_, file) = *FILES
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("the README shows {path}, which this test does not know"));
        match *marker {
            "same as" => assert_eq!(code, &file, "README's copy of {path}"),
            "part of" => assert!(
                dedent(file).contains(&dedent(code)),
                "{path} has (indentation aside)\n{code}"
            ),
            other => panic!("unknown README marker {other:?}"),
        }
        lines += code.lines().count();
    }
    let paths: Vec<&str> = blocks.iter().map(|(_, p, _)| *p).collect();
    let known: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
    assert_eq!(paths, known, "the README shows these files, in this order");
    // The program comes before any other Rust example of the README.
    let first_rust = readme.find("```rust\n").expect("a Rust block");
    let program = readme
        .find("<!-- same as: bittube-aidl-tests/src/bin/ticker.rs -->")
        .expect("the program");
    let build = readme
        .find("<!-- part of: bittube-aidl-tests/build.rs -->")
        .expect("the build script");
    assert!(
        build < first_rust && first_rust < program,
        "the README's first Rust example"
    );
    eprintln!("readme: the first program is {lines} lines (.aidl, build.rs call, program)");
}

#[test]
fn the_ticker_program_runs() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticker"))
        .env_remove("BITTUBE_BINDER")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ticker");
    // Only a hang reaches the bound.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the ticker program hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "client: 1000 ticks, in order\n");
}
