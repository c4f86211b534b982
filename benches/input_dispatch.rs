//! Input dispatch bench: motion events at 1 kHz to 8 windows, each in its own application
//! process registered through binder, no batching and no stalled application; prints
//! dispatch → consume latency p50/p99 next to the raw one-way SEQPACKET latency measured in
//! the same run (see `examples/input_demo.rs`, which this runs in that configuration).
//!
//! ```text
//! cargo bench --bench input_dispatch
//! ```

#[allow(dead_code)]
#[path = "../examples/input_demo.rs"]
mod demo;

use std::process::{Command, ExitCode};

/// The configuration of issue 7's bench.
const BENCH_ARGS: [&str; 8] = [
    "--windows",
    "8",
    "--rate",
    "1000",
    "--frame-ms",
    "0",
    "--seconds",
    "5",
];

fn main() -> ExitCode {
    // Children (roles) and the re-run with the bench's arguments go to the demo itself.
    if std::env::var_os("BITTUBE_INPUT_DEMO_ROLE").is_some()
        || std::env::args().any(|a| a == "--windows")
    {
        return demo::main();
    }
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("input_dispatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Command::new(me).args(BENCH_ARGS).arg("--no-stall").status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("input_dispatch: the demo ended with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("input_dispatch: {e}");
            ExitCode::FAILURE
        }
    }
}
