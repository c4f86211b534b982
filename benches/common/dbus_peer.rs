//! A real D-Bus peer for the binder bench: a private `dbus-daemon` started by the bench, a
//! server side (echo method, signal counter) and a calling side, both on libdbus through the
//! `dbus` crate's blocking [`Channel`].

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbus::channel::Channel;
use dbus::message::MessageType;
use dbus::Message;

/// Environment variable that hands the bus address to the server process.
pub const ADDRESS_ENV: &str = "BITTUBE_BENCH_DBUS";
/// The server's well-known name, object path and interface.
pub const NAME: &str = "org.bittube.Bench";
const PATH: &str = "/org/bittube/Bench";
const IFACE: &str = "org.bittube.Bench";
const TIMEOUT: Duration = Duration::from_secs(10);

/// A private session bus: `dbus-daemon --session --nofork --print-address`, killed on drop.
pub struct Daemon {
    child: Child,
    /// The address clients connect to.
    pub address: String,
}

impl Daemon {
    /// Starts the daemon (installing the `dbus-daemon` package with apt-get first when the
    /// program is missing and we are root) and reads its address.
    pub fn start() -> Result<Daemon, String> {
        ensure_installed()?;
        let dir = std::env::temp_dir();
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:dir={}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It complains that it cannot raise its fd limit (harmless here).
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start dbus-daemon: {e}"))?;
        let stdout = child.stdout.take().ok_or("dbus-daemon: no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read the bus address: {e}"))?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            return Err("dbus-daemon printed no address".into());
        }
        Ok(Daemon { child, address })
    }

    /// The daemon's process id (its CPU counts in the D-Bus figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_installed() -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dbus-daemon").is_file()));
    if found {
        return Ok(());
    }
    eprintln!("binder bench: dbus-daemon missing, installing the dbus-daemon package");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "dbus-daemon"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("dbus-daemon is not installed and apt-get install -y dbus-daemon failed".into())
    }
}

fn connect(address: &str) -> Result<Channel, String> {
    let mut ch = Channel::open_private(address).map_err(|e| format!("connect to the bus: {e}"))?;
    ch.register().map_err(|e| format!("Hello: {e}"))?;
    Ok(ch)
}

fn bus_call(ch: &Channel, method: &str, arg: &str) -> Result<(), String> {
    let m = Message::new_method_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        method,
    )?
    .append1(arg);
    ch.send_with_reply_and_block(m, TIMEOUT)
        .map(drop)
        .map_err(|e| format!("{method}: {e}"))
}

/// The server: owns [`NAME`], answers `Echo(ay) -> ay` and `Count() -> t` (signals seen),
/// counts every `Ping` signal. Calls `ready` once it listens, then serves until the bus
/// goes away.
pub fn serve(address: &str, ready: impl FnOnce()) -> Result<(), String> {
    let ch = connect(address)?;
    // DBUS_NAME_FLAG_DO_NOT_QUEUE.
    let m = Message::new_method_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
    )?
    .append2(NAME, 4u32);
    ch.send_with_reply_and_block(m, TIMEOUT)
        .map_err(|e| format!("RequestName: {e}"))?;
    bus_call(
        &ch,
        "AddMatch",
        &format!("type='signal',interface='{IFACE}'"),
    )?;
    ready();
    let mut signals = 0u64;
    loop {
        let Some(msg) = ch
            .blocking_pop_message(Duration::from_secs(3600))
            .map_err(|e| format!("dbus server: {e}"))?
        else {
            continue;
        };
        let member = msg.member().map(|m| m.to_string()).unwrap_or_default();
        match (msg.msg_type(), member.as_str()) {
            (MessageType::Signal, "Ping") => signals += 1,
            (MessageType::MethodCall, "Echo") => {
                let bytes: Vec<u8> = msg.read1().map_err(|e| format!("Echo: {e}"))?;
                let _ = ch.send(msg.method_return().append1(bytes));
            }
            (MessageType::MethodCall, "Count") => {
                let _ = ch.send(msg.method_return().append1(signals));
            }
            _ => {}
        }
    }
}

/// The calling side.
pub struct Caller {
    ch: Channel,
}

impl Caller {
    /// Connects to the bus at `address` and waits until the server owns [`NAME`].
    pub fn connect(address: &str) -> Result<Caller, String> {
        let ch = connect(address)?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let m = Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
            )?
            .append1(NAME);
            let has: bool = ch
                .send_with_reply_and_block(m, TIMEOUT)
                .map_err(|e| format!("NameHasOwner: {e}"))?
                .read1()
                .map_err(|e| format!("NameHasOwner: {e}"))?;
            if has {
                return Ok(Caller { ch });
            }
            if Instant::now() > deadline {
                return Err("the D-Bus server never took its name".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `n` `Echo(payload)` calls, their durations appended to `out`.
    pub fn run(&self, payload: &[u8], n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let m = Message::new_method_call(NAME, PATH, IFACE, "Echo")
                .expect("Echo message")
                .append1(payload);
            let t = Instant::now();
            let reply = self
                .ch
                .send_with_reply_and_block(m, TIMEOUT)
                .expect("D-Bus Echo");
            out.push(t.elapsed().as_nanos() as u64);
            let back: &[u8] = reply.read1().expect("Echo reply");
            assert_eq!(back.len(), payload.len(), "Echo reply of the wrong size");
        }
    }

    fn count(&self) -> u64 {
        let m = Message::new_method_call(NAME, PATH, IFACE, "Count").expect("Count message");
        self.ch
            .send_with_reply_and_block(m, TIMEOUT)
            .expect("D-Bus Count")
            .read1()
            .expect("Count reply")
    }

    /// Emits `n` `Ping` signals with `payload` and waits until the server counted them all;
    /// returns the time from the first send to the last one counted.
    pub fn signals(&self, payload: &[u8], n: u64) -> Duration {
        let start = self.count();
        let t = Instant::now();
        for _ in 0..n {
            let m = Message::new_signal(PATH, IFACE, "Ping")
                .expect("Ping signal")
                .append1(payload);
            self.ch.send(m).expect("D-Bus send");
        }
        self.ch.flush();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < start + n {
            assert!(Instant::now() < deadline, "D-Bus signals were lost");
        }
        t.elapsed()
    }
}
