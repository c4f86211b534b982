//! The interop matrix under the real kernel binder, both directions:
//!
//! - cell a: bittube's service manager and a bittube IEcho service; rsbinder's client lists,
//!   checks, gets, waits for and calls it (string, fd, tube), registers its own service and is
//!   notified;
//! - cell b: rsb_hub (rsbinder's service manager) and an rsbinder IEcho service; bittube's
//!   client does the same.
//!
//! The peers are this package's programs (`CARGO_BIN_EXE_*`), started as child processes.
//! Needs `/dev/binder` (scripts/kernel-binder-test.sh --package=bittube-interop); elsewhere
//! each test says why it did not run, unless BITTUBE_REQUIRE_KERNEL=1 makes that a failure.

use bittube_interop::{wait_for_line, DEVICE};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

const BT_PEER: &str = env!("CARGO_BIN_EXE_bt_peer");
const RSB_PEER: &str = env!("CARGO_BIN_EXE_rsb_peer");
const RSB_HUB: &str = env!("CARGO_BIN_EXE_rsb_hub");

fn kernel_binder(test: &str) -> bool {
    if Path::new(DEVICE).exists() {
        return true;
    }
    if std::env::var("BITTUBE_REQUIRE_KERNEL").as_deref() == Ok("1") {
        panic!("{test}: BITTUBE_REQUIRE_KERNEL=1 but there is no {DEVICE}");
    }
    let msg =
        format!("{test}: not run: no {DEVICE} (set BITTUBE_REQUIRE_KERNEL=1 to make this fail)\n");
    let _ = std::io::stderr().write_all(msg.as_bytes());
    false
}

/// A peer program: its stdin is held open (closing it stops the peer), its stdout read.
struct Peer {
    name: String,
    child: Child,
    out: BufReader<ChildStdout>,
    seen: Vec<String>,
}

impl Peer {
    fn start(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Peer {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {exe}: {e}"));
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let name = format!(
            "{} {}",
            Path::new(exe).file_name().unwrap().to_string_lossy(),
            args.join(" ")
        );
        Peer {
            name,
            child,
            out,
            seen: Vec::new(),
        }
    }

    /// Waits for the line `want`; panics with what the peer printed if it ends first.
    fn expect_line(&mut self, want: &str) {
        if !wait_for_line(&mut self.out, want, &mut self.seen) {
            let status = self.child.wait();
            panic!(
                "{} ended before printing {want:?}: {status:?}, printed {:?}",
                self.name, self.seen
            );
        }
    }

    /// Reads the rest of the peer's output and waits for it (a client ends by itself); the
    /// watchdog is disarmed once the output ends, before the peer is reaped.
    fn finish_guarded(mut self, guard: Watchdog) -> (bool, Vec<String>) {
        drop(self.child.stdin.take());
        let mut rest = Vec::new();
        for line in self.out.lines() {
            match line {
                Ok(l) => rest.push(l),
                Err(_) => break,
            }
        }
        drop(guard);
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, rest)
    }

    /// Stops a serving peer (closes its stdin) and reaps it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// Stops a peer that serves until a signal (rsb_hub: SIGTERM) and reaps it.
    fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Kills a peer that hangs, so that a hang fails the test instead of the whole kernel run.
/// Dropping the guard disarms it (before the peer is reaped, so the pid is still its).
struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

fn watchdog(pid: u32, limit: Duration) -> Watchdog {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if flag.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !flag.load(std::sync::atomic::Ordering::Acquire) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Counts a client's PASS/FAIL lines, prints them and the cell's total, and checks them.
fn verdict(cell: &str, client: Peer, guard: Watchdog, expected: usize) {
    let name = client.name.clone();
    let (ok, lines) = client.finish_guarded(guard);
    let passed = lines.iter().filter(|l| l.starts_with("PASS ")).count();
    let failed = lines.iter().filter(|l| l.starts_with("FAIL ")).count();
    for l in &lines {
        println!("interop {cell}: {l}");
    }
    println!("interop matrix {cell}: {passed} passed, {failed} failed");
    assert!(
        ok && failed == 0 && passed == expected,
        "{name}: exit ok {ok}, {passed} passed (of {expected}), {failed} failed:\n{}",
        lines.join("\n")
    );
}

#[test]
fn cell_a_bittube_manager_and_service_rsbinder_client() {
    if !kernel_binder("cell_a") {
        return;
    }
    let mut manager = Peer::start(BT_PEER, &["manager"], &[]);
    manager.expect_line("ready");
    let mut client = Peer::start(RSB_PEER, &["client"], &[]);
    let guard = watchdog(client.child.id(), Duration::from_secs(150));
    client.expect_line("waiting");
    let mut service = Peer::start(BT_PEER, &["service"], &[]);
    service.expect_line("ready");
    verdict(
        "a (bittube manager + service, rsbinder client)",
        client,
        guard,
        14,
    );
    service.stop();
    manager.stop();
}

/// rsb_hub reads its device as /dev/binderfs/NAME; this kernel has no binderfs, only
/// /dev/binder: a link gives it that path (the same device).
fn binderfs_path_for_rsb_hub() {
    let link = Path::new("/dev/binderfs/binder");
    if !link.exists() {
        std::fs::create_dir_all("/dev/binderfs").expect("mkdir /dev/binderfs");
        std::os::unix::fs::symlink(DEVICE, link).expect("link /dev/binderfs/binder");
    }
}

/// Starts rsb_hub and waits for its READY=1 (sd_notify on NOTIFY_SOCKET). The previous
/// context manager's role is released by the kernel a little after its process exits: a
/// hub that exits before it is ready is started again, a bounded number of times.
fn start_rsb_hub() -> Peer {
    binderfs_path_for_rsb_hub();
    let path = std::env::temp_dir().join(format!("interop-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("RUST_LOG", "warn"),
    ];
    for _attempt in 0..40 {
        let mut hub = Peer::start(RSB_HUB, &["--insecure-allow-all"], &env);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    let _ = std::fs::remove_file(&path);
                    return hub;
                }
            }
            if let Ok(Some(status)) = hub.child.try_wait() {
                // The device still had a context manager: try again.
                eprintln!("rsb_hub exited before it was ready ({status}); starting it again");
                break;
            }
            if std::time::Instant::now() > deadline {
                hub.terminate();
                panic!("rsb_hub neither became ready nor exited in 30 s");
            }
        }
    }
    panic!("rsb_hub never became the service manager");
}

#[test]
fn cell_b_rsb_hub_and_rsbinder_service_bittube_client() {
    if !kernel_binder("cell_b") {
        return;
    }
    let hub = start_rsb_hub();
    let mut client = Peer::start(BT_PEER, &["client"], &[]);
    let guard = watchdog(client.child.id(), Duration::from_secs(150));
    client.expect_line("waiting");
    let mut service = Peer::start(RSB_PEER, &["service"], &[]);
    service.expect_line("ready");
    verdict(
        "b (rsb_hub + rsbinder service, bittube client)",
        client,
        guard,
        16,
    );
    service.stop();
    hub.terminate();
}
