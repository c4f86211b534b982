//! The `bittube` command line, run as a real binary: the driver daemon, and `bittube state`
//! against it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bittube::binder_ipc::device::{Device, ShimDevice};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_bittube");
/// Only to avoid hangs; nothing here is timed.
const LONG: Duration = Duration::from_secs(30);

/// A fresh directory under the temp dir with `mode`, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(mode: u32) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "bittube-cli-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap();
        // The umask must not narrow the mode under test.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `bittube driver` daemon, killed (SIGKILL) if a test ends without stopping it.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Starts `bittube driver --socket <socket>` and waits for the line it prints once it
    /// listens.
    fn start(socket: &Path) -> Daemon {
        Daemon::start_with(socket, &[])
    }

    /// [`Daemon::start`] with more options for `bittube driver`.
    fn start_with(socket: &Path, options: &[&str]) -> Daemon {
        let child = Command::new(BIN)
            .args(["driver", "--socket"])
            .arg(socket)
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bittube driver");
        let mut d = Daemon { child: Some(child) };
        let stdout = d.child_mut().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let line = rx
            .recv_timeout(LONG)
            .expect("bittube driver printed nothing")
            .expect("read bittube driver's stdout");
        assert_eq!(
            line.trim_end(),
            socket.to_str().unwrap(),
            "bittube driver's first line is its socket path"
        );
        d
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// Stops the daemon with SIGTERM; returns its exit status and stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let status = wait_with_timeout(&mut child);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bittube did not exit within {LONG:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `bittube <args>` to completion (killed after [`LONG`]) with `env` set.
fn run(args: &[&str], env: Option<(&str, &Path)>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("BITTUBE_BINDER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn bittube");
    // Drain stdout on a thread so a large dump cannot block the child.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let status = wait_with_timeout(&mut child);
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn driver_daemon_serves_devices_and_state_shows_them() {
    let dir = TempDir::new(0o700);
    let socket = dir.0.join("binder");
    let daemon = Daemon::start(&socket);

    let before = run(&["state", "--socket", socket.to_str().unwrap()], None);
    assert!(before.status.success(), "{}", text(&before.stderr));
    assert!(
        text(&before.stdout).contains("binder state:"),
        "{}",
        text(&before.stdout)
    );
    let me = format!("proc {} id ", std::process::id());
    assert!(!text(&before.stdout).contains(&me));

    // This test process becomes a binder process of the daemon, with one thread.
    let dev = ShimDevice::open(&socket).expect("open a ShimDevice on the daemon's socket");
    assert_eq!(dev.version().unwrap(), 8);

    let after = run(&["state", "--socket", socket.to_str().unwrap()], None);
    assert!(after.status.success(), "{}", text(&after.stderr));
    let dump = text(&after.stdout);
    assert!(dump.contains(&me), "no `{me}` in:\n{dump}");
    // Each process shows the uid the kernel vouched for (SO_PEERCRED).
    let uid = nix::unistd::geteuid().as_raw();
    assert!(
        dump.lines()
            .any(|l| l.starts_with(&me) && l.ends_with(&format!(" uid {uid}"))),
        "no uid {uid} on the `{me}` line of:\n{dump}"
    );
    assert!(dump.contains("  thread "), "no thread in:\n{dump}");
    assert!(dump.contains("proc: active 1"), "{dump}");

    // The socket also comes from BITTUBE_BINDER.
    let by_env = run(&["state"], Some(("BITTUBE_BINDER", &socket)));
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    assert!(
        text(&by_env.stdout).contains(&me),
        "{}",
        text(&by_env.stdout)
    );

    // Closing the device is process exit for the shim.
    drop(dev);
    let deadline = Instant::now() + LONG;
    loop {
        let out = run(&["state", "--socket", socket.to_str().unwrap()], None);
        if !text(&out.stdout).contains(&me) {
            break;
        }
        assert!(Instant::now() < deadline, "proc never went away");
        std::thread::sleep(Duration::from_millis(10));
    }

    let (status, err) = daemon.stop();
    assert!(status.success(), "driver exit {status:?}: {err}");
    assert!(
        !socket.exists(),
        "the stopped daemon left its socket behind"
    );
}

/// `--proc-cap` / `--uid-cap` set the shim's state caps: `bittube state` shows them, and a
/// second binder thread of this process is refused by a cap of one thread per process, with
/// the refusal counted against that cap.
#[test]
fn driver_cap_options_set_the_caps_state_shows_and_enforces() {
    let dir = TempDir::new(0o700);
    let socket = dir.0.join("binder");
    let daemon = Daemon::start_with(
        &socket,
        &[
            "--proc-cap",
            "threads=1",
            "--uid-cap",
            "refs=9",
            "--proc-cap",
            "fds=7",
        ],
    );
    let state = || {
        let out = run(&["state", "--socket", socket.to_str().unwrap()], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let dump = state();
    for line in [
        "cap threads: 1 per process, refused 0",
        "cap fds: 7 per process, refused 0",
        "cap refs: 9 per uid, refused 0",
        "cap nodes: 16384 per process",
    ] {
        assert!(dump.contains(line), "no `{line}` in:\n{dump}");
    }

    let dev = ShimDevice::open(&socket).expect("open a ShimDevice on the daemon's socket");
    assert_eq!(
        dev.version().unwrap(),
        8,
        "this thread is the process's one thread"
    );
    let second = std::thread::scope(|s| s.spawn(|| dev.version()).join().unwrap());
    assert_eq!(
        second,
        Err(nix::errno::Errno::ENOMEM),
        "a second thread past the cap"
    );
    let dump = state();
    assert!(
        dump.contains("cap threads: 1 per process, refused 1"),
        "the refusal is not counted:\n{dump}"
    );
    drop(dev);

    let bad = run(
        &[
            "driver",
            "--socket",
            "/nonexistent/x",
            "--proc-cap",
            "thread=1",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr)
            .contains("not a cap; one of nodes, refs, transactions, deaths, threads, fds"),
        "{}",
        text(&bad.stderr)
    );

    let (status, err) = daemon.stop();
    assert!(status.success(), "driver exit {status:?}: {err}");
}

#[test]
fn driver_refuses_a_socket_in_a_world_accessible_directory() {
    let dir = TempDir::new(0o777);
    let socket = dir.0.join("binder");
    let out = run(&["driver", "--socket", socket.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "driver started in a mode 0777 directory"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(err.contains(dir.0.to_str().unwrap()), "{err}");
    assert!(err.contains("open to other users"), "{err}");
    assert!(!socket.exists());
}

#[test]
fn driver_refuses_a_socket_a_live_shim_listens_on() {
    let dir = TempDir::new(0o700);
    let socket = dir.0.join("binder");
    let daemon = Daemon::start(&socket);
    let out = run(&["driver", "--socket", socket.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already listens"), "{err}");
    // The first daemon still answers.
    let st = run(&["state", "--socket", socket.to_str().unwrap()], None);
    assert!(st.status.success(), "{}", text(&st.stderr));
    let (status, err) = daemon.stop();
    assert!(status.success(), "driver exit {status:?}: {err}");
}

#[test]
fn state_names_the_socket_when_nothing_listens() {
    let dir = TempDir::new(0o700);
    let socket = dir.0.join("nobody-here");
    let out = run(&["state", "--socket", socket.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(err.contains(socket.to_str().unwrap()), "{err}");
    assert!(err.contains("no binder driver shim answers"), "{err}");

    // The same through the environment.
    let out = run(&["state"], Some(("BITTUBE_BINDER", &socket)));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(socket.to_str().unwrap()));

    // And with no socket at all.
    let out = run(&["state"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("BITTUBE_BINDER"), "{err}");
}

#[test]
fn service_list_asks_the_service_manager_over_binder() {
    use bittube::binder_ipc::runtime::{Binder, ProcessState};
    use bittube::binder_ipc::service_manager::{default_policy, ServiceManager};
    use common::services::Inert;

    const CLOCK: Inert = Inert("test.IClock");

    let dir = TempDir::new(0o700);
    let socket = dir.0.join("binder");
    let daemon = Daemon::start(&socket);
    // This test process hosts the service manager; `bittube` is another process, so it may
    // call it through handle 0.
    let ps = ProcessState::open_shim(&socket).expect("binder process on the daemon");
    let sm = ServiceManager::serve(&ps, default_policy()).expect("service manager");
    sm.add_local("test.clock", Binder::new(CLOCK));
    sm.add_local("test.alarm", Binder::new(CLOCK));

    let out = run(
        &["service", "list", "--socket", socket.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Found 3 services:\n0\tmanager: [android.os.IServiceManager]\n\
         1\ttest.alarm: [test.IClock]\n2\ttest.clock: [test.IClock]\n"
    );
    let check = |name: &str| {
        run(
            &[
                "service",
                "check",
                name,
                "--socket",
                socket.to_str().unwrap(),
            ],
            None,
        )
    };
    assert_eq!(
        text(&check("test.alarm").stdout),
        "Service test.alarm: found\n"
    );
    assert_eq!(text(&check("nobody").stdout), "Service nobody: not found\n");

    ps.shutdown(Duration::from_secs(5)).expect("shutdown");
    drop(sm);
    drop(ps);
    let gone = run(
        &["service", "list", "--socket", socket.to_str().unwrap()],
        None,
    );
    assert!(!gone.status.success(), "no service manager any more");
    // Its own error, not a dead object: there is no context manager on this device.
    let why = text(&gone.stderr);
    assert!(why.contains("cannot ask the service manager"), "{why}");
    assert!(why.contains("no context manager"), "{why}");
    assert!(!why.contains("dead object"), "{why}");
    let (status, _) = daemon.stop();
    assert!(status.success());
}
