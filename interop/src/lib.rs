//! The interop matrix of bittube against rsbinder under the real kernel binder.
//!
//! Three programs, started by `tests/matrix.rs` as child processes (`CARGO_BIN_EXE_*`):
//! - `bt_peer`: bittube's side: `manager` (bittube's service manager), `service` (IEcho on
//!   bittube), `client` (bittube's client against rsb_hub and an rsbinder service);
//! - `rsb_peer`: rsbinder's side: `service` (IEcho on rsbinder), `client` (rsbinder's client
//!   against bittube's manager and service);
//! - `rsb_hub`: rsbinder's service manager, built from rsbinder-tools' source.
//!
//! Each client prints one `PASS <check>` or `FAIL <check>: <why>` line per check; the test
//! counts them. Peers serve until their stdin closes.

use std::io::{BufRead, Read};

/// The test interface (`aidl/bittube/interop/IEcho.aidl`).
pub const ECHO_DESCRIPTOR: &str = "bittube.interop.IEcho";
/// `IEcho.echo(String) -> String`.
pub const ECHO: u32 = 1;
/// `IEcho.appendWorld(in ParcelFileDescriptor)`.
pub const APPEND_WORLD: u32 = 2;
/// `IEcho.openTube(int) -> ParcelFileDescriptor`.
pub const OPEN_TUBE: u32 = 3;

/// The name bittube's IEcho is registered under (cell a).
pub const BT_SERVICE: &str = "bittube.interop.echo";
/// The name rsbinder's IEcho is registered under (cell b).
pub const RSB_SERVICE: &str = "rsbinder.interop.echo";
/// The name the client registers its own service under, after asking to be notified.
pub const LATE_NAME: &str = "interop.client.late";
/// Events a tube carries in `openTube`.
pub const TUBE_EVENTS: u32 = 8;
/// The kernel binder device of the test VM (binder_linux loaded with `devices=binder,...`).
pub const DEVICE: &str = "/dev/binder";

/// Event `i` of a tube: four `u32`s, little-endian on the wire (16 bytes an event).
pub fn event(i: u32) -> [u32; 4] {
    [i, 0xb177_0be0, i.wrapping_mul(i), !i]
}

/// Checks that `bytes` (one SEQPACKET packet) holds events `0..count`.
pub fn check_events(bytes: &[u8], count: u32) -> Result<(), String> {
    let want: Vec<u8> = (0..count)
        .flat_map(event)
        .flat_map(u32::to_le_bytes)
        .collect();
    if bytes == want.as_slice() {
        Ok(())
    } else {
        Err(format!(
            "packet of {} bytes is not the {count} events expected",
            bytes.len()
        ))
    }
}

/// The pass/fail lines of a client.
#[derive(Default, Debug)]
pub struct Checks {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Checks {
    /// Records and prints one check.
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }

    /// The process's exit code: 0 when every check passed.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed != 0 || self.passed == 0)
    }
}

/// Serves until stdin reaches its end (the test closes it to stop a peer).
pub fn serve_until_stdin_closes() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

/// Reads lines from a child's stdout until one equals `want`; `false` at end of stream.
pub fn wait_for_line(out: &mut impl BufRead, want: &str, seen: &mut Vec<String>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {
                let l = line.trim_end().to_owned();
                let done = l == want;
                seen.push(l);
                if done {
                    return true;
                }
            }
        }
    }
}
