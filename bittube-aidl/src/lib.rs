//! `.aidl` files to Rust for bittube's binder runtime, from a `build.rs`:
//!
//! ```no_run
//! // build.rs
//! bittube_aidl::Builder::new()
//!     .source("aidl/com/example/IEvents.aidl")
//!     .output("aidl.rs")
//!     .tokio(true)
//!     .generate()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! // src/lib.rs: include!(concat!(env!("OUT_DIR"), "/aidl.rs"));
//! ```
//!
//! Every interface `IFoo` becomes a module `IFoo` with `DESCRIPTOR`, its constants, a trait
//! `Interface` (the service implements it), `Server<T>` (a bittube `Service` dispatching to
//! it) and `Proxy` (typed calls); with [`Builder::tokio`], also `AsyncInterface`,
//! `AsyncServer<T>` and `AsyncProxy`. Parcelables become structs, unions enums, enums
//! newtypes with associated constants, all encoded as AOSP encodes them (see
//! `bittube::binder_ipc::aidl`). The files are parsed by this crate's own lexer and parser
//! (errors are `file:line: message`, `/** */` comments become rustdoc); the types of all
//! files given to one builder live in one Rust module (nested types are flattened into it).

mod decl;
mod emit;
mod lex;
mod parse;
mod types;

use std::fmt;
use std::path::{Path, PathBuf};

/// An error in an `.aidl` file (its path and line) or in writing the output.
#[derive(Debug)]
pub struct Error {
    /// The file.
    pub file: String,
    /// The 1-based line (0 when the error is not about a line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            n => write!(f, "{}:{}: {}", self.file, n, self.message),
        }
    }
}

impl std::error::Error for Error {}

/// What to generate, from which files.
#[derive(Debug, Clone)]
pub struct Builder {
    sources: Vec<PathBuf>,
    output: PathBuf,
    tokio: bool,
    crate_path: String,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// No sources yet; output `aidl.rs` in `OUT_DIR`; no async code; the runtime crate is
    /// `::bittube`.
    pub fn new() -> Builder {
        Builder {
            sources: Vec::new(),
            output: PathBuf::from("aidl.rs"),
            tokio: false,
            crate_path: "::bittube".into(),
        }
    }

    /// Adds an `.aidl` file.
    pub fn source(mut self, path: impl Into<PathBuf>) -> Builder {
        self.sources.push(path.into());
        self
    }

    /// The output file (relative paths are in `OUT_DIR`).
    pub fn output(mut self, path: impl Into<PathBuf>) -> Builder {
        self.output = path.into();
        self
    }

    /// Also generates async proxies and services (the generated code then needs bittube's
    /// feature `tokio`).
    pub fn tokio(mut self, on: bool) -> Builder {
        self.tokio = on;
        self
    }

    /// The path of the bittube crate in generated code (`crate` inside bittube itself).
    pub fn crate_path(mut self, path: impl Into<String>) -> Builder {
        self.crate_path = path.into();
        self
    }

    /// Generates the Rust source text (not formatted).
    pub fn generate_string(&self) -> Result<String, Error> {
        let mut files = Vec::new();
        for path in &self.sources {
            let text = std::fs::read_to_string(path).map_err(|e| Error {
                file: path.display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
            })?;
            files.push((path.display().to_string(), text));
        }
        let model = decl::Model::parse(&files)?;
        Ok(emit::emit(
            &model,
            &emit::Options {
                krate: self.crate_path.clone(),
                tokio: self.tokio,
            },
        ))
    }

    /// Generates, writes and formats (with `rustfmt`, when it runs) the output file, and
    /// tells cargo to rerun when a source or `RUSTFMT` changes. Returns the output path. The
    /// text compiles unformatted: without rustfmt the build only warns.
    pub fn generate(&self) -> Result<PathBuf, Error> {
        for s in &self.sources {
            println!("cargo:rerun-if-changed={}", s.display());
        }
        println!("cargo:rerun-if-env-changed=RUSTFMT");
        let text = self.generate_string()?;
        let out = match self.output.is_absolute() {
            true => self.output.clone(),
            false => Path::new(&std::env::var_os("OUT_DIR").unwrap_or_else(|| ".".into()))
                .join(&self.output),
        };
        std::fs::write(&out, text).map_err(|e| Error {
            file: out.display().to_string(),
            line: 0,
            message: format!("cannot write: {e}"),
        })?;
        let formatted = std::process::Command::new(
            std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into()),
        )
        .args(["--edition", "2021"])
        .arg(&out)
        .status();
        if !formatted.is_ok_and(|s| s.success()) {
            println!("cargo:warning=rustfmt did not format {}", out.display());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
