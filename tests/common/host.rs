//! The host of a cross-process binder test (the end-to-end device tests, tests/iio.rs and
//! tests/evdev.rs): a process that serves the service manager and starts the other parties as
//! children of this test binary, and the text messages the host and its children exchange over
//! their control sockets.

use super::{spawn_child_env, LONG};
use bittube::binder_ipc::device::KernelDevice;
use bittube::binder_ipc::runtime::{BinderError, ProcessState};
use bittube::binder_ipc::service_manager::{default_policy, AccessPolicy, ServiceManager};
use bittube::binder_ipc::shim::{Driver, ENV_SOCKET};
use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves a service manager with `policy` in `ps`. A manager of an earlier test whose process
/// just ended may still hold the role for a moment (the kernel releases it asynchronously):
/// that is retried for up to 5 s.
pub fn serve_manager(ps: &ProcessState, policy: AccessPolicy) -> Arc<ServiceManager> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ServiceManager::serve(ps, policy.clone()) {
            Err(BinderError::ContextManagerExists) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r.expect("service manager"),
        }
    }
}

/// The host of a cross-process test: the service manager on the kernel binder device when there
/// is one (the kernel run: `ProcessState::open` picks it in every process), else on a driver
/// shim whose socket its children are told through [`ENV_SOCKET`].
pub struct BinderHost {
    // Dropped in this order: the manager, the host's process state, then the shim.
    _sm: Arc<ServiceManager>,
    ps: ProcessState,
    driver: Option<Driver>,
}

impl BinderHost {
    /// Starts the shim (without a kernel binder device), opens the host process on it and
    /// serves the service manager with the default policy ([`serve_manager`]).
    pub fn start() -> BinderHost {
        let driver = match KernelDevice::default_path() {
            Some(_) => None,
            None => Some(Driver::start().expect("driver shim")),
        };
        let ps = match &driver {
            Some(d) => ProcessState::open_shim(d.socket_path()).expect("host process"),
            None => ProcessState::open().expect("kernel binder"),
        };
        let sm = serve_manager(&ps, default_policy());
        BinderHost {
            _sm: sm,
            ps,
            driver,
        }
    }

    /// The shim's socket; `None` on the kernel binder device (children open it themselves).
    pub fn socket(&self) -> Option<&Path> {
        self.driver.as_ref().map(|d| d.socket_path())
    }

    /// Runs this test binary again for `test` as `role`, on the host's binder (see
    /// [`spawn_child_env`]).
    pub fn spawn(&self, test: &str, role: &str) -> (Child, OwnedFd) {
        let env: Vec<(&str, &OsStr)> = self
            .driver
            .iter()
            .map(|d| (ENV_SOCKET, d.socket_path().as_os_str()))
            .collect();
        spawn_child_env(test, role, &env)
    }

    /// Which binder the test runs over, for its summary line.
    pub fn binder_name(&self) -> &'static str {
        if self.driver.is_some() {
            "driver shim"
        } else {
            "kernel binder"
        }
    }

    /// Shuts the host's process state down (the service manager still serving), then drops
    /// the manager and the shim.
    pub fn shutdown(self) {
        self.ps.shutdown(LONG).expect("host shutdown");
    }
}

/// Sends one text message over a control socket.
pub fn send_text(control: &OwnedFd, text: &str) {
    send_with_fds(control, text.as_bytes(), &[]).expect("send control");
}

/// The next text message (up to 64 KiB), or `None` after `wait` (an empty string: the peer is
/// gone).
pub fn recv_text(control: &OwnedFd, wait: Duration) -> Option<String> {
    let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::try_from(wait).unwrap()).expect("poll control");
    if n == 0 {
        return None;
    }
    let mut buf = vec![0u8; 1 << 16];
    let got = recv_with_fds(control, &mut buf, 0).expect("receive control");
    Some(String::from_utf8_lossy(&buf[..got.len]).into_owned())
}

/// The next text message; fails the test when none comes in [`LONG`] (`what` names it).
pub fn expect_text(control: &OwnedFd, what: &str) -> String {
    recv_text(control, LONG).unwrap_or_else(|| panic!("no {what} in {LONG:?}"))
}
