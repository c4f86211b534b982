//! Helpers shared by the integration tests: child processes are this test binary run again
//! for one test, in a role named by `BITTUBE_CHILD`, with a SEQPACKET control socket as
//! stdin (over which fds travel by SCM_RIGHTS, never by inheritance).
#![allow(dead_code)]

pub mod host;
pub mod report;
pub mod services;
pub mod users;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a child's role.
pub const CHILD_ENV: &str = "BITTUBE_CHILD";
/// Only to turn a hang into a failure; nothing is timed.
pub const LONG: Duration = Duration::from_secs(30);

/// The role this process plays, when it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Runs this test binary again for `test` only, as `role`; returns the child and the parent's
/// end of the control socket (the child's stdin).
pub fn spawn_child(test: &str, role: &str) -> (Child, OwnedFd) {
    spawn_child_env(test, role, &[])
}

/// [`spawn_child`] with more environment variables.
pub fn spawn_child_env(test: &str, role: &str, env: &[(&str, &OsStr)]) -> (Child, OwnedFd) {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("control socketpair");
    let child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .envs(env.iter().copied())
        .stdin(Stdio::from(child))
        .stdout(Stdio::null()) // the child's harness chatter; its panics go to stderr
        .spawn()
        .expect("start child");
    (child, parent)
}

/// The child's control socket (its stdin).
pub fn control_in_child() -> OwnedFd {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdin")
}

/// Waits for `child` to exit successfully (or kills it after [`LONG`] and fails).
pub fn wait_success(mut child: Child) {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(status) = child.try_wait().expect("wait child") {
            assert!(status.success(), "child failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish in {LONG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Entries of `/proc/self/fd`.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
