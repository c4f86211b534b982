//! Child processes that report with `@@ key value` lines on stdout (tests/runtime.rs,
//! tests/runtime_errors.rs): this test binary run again for one test, its role and
//! arguments in environment variables the caller sets, its lines collected by a reader
//! thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Prints the line `@@ key value` on stdout (what [`Proc`] collects).
pub fn say(key: &str, value: impl std::fmt::Display) {
    println!("@@ {key} {value}");
    let _ = std::io::stdout().flush();
}

/// A child process of this test binary, with its `@@` lines collected by a reader thread.
pub struct Proc {
    child: Child,
    lines: Receiver<(String, String)>,
    seen: HashMap<String, String>,
}

impl Proc {
    /// Runs this test binary again for `test` only; `configure` adds what the child needs
    /// (its role, its binder) to the command. Its stdout is read for `@@` lines, its stderr
    /// is this process's.
    pub fn spawn(test: &str, configure: impl FnOnce(&mut Command)) -> Proc {
        let mut c = Command::new(std::env::current_exe().expect("test binary"));
        c.args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        configure(&mut c);
        let mut child = c.spawn().expect("spawning a test process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("@@ ") {
                    let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                    if tx.send((k.to_owned(), v.to_owned())).is_err() {
                        return;
                    }
                }
            }
        });
        Proc {
            child,
            lines,
            seen: HashMap::new(),
        }
    }

    /// Waits for line `key` (up to 60 s, or until the child ends: only a hang or a dead child
    /// gives `None`).
    pub fn wait_line(&mut self, key: &str) -> Option<String> {
        if let Some(v) = self.seen.get(key) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok((k, v)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.insert(k.clone(), v.clone());
            if k == key {
                return Some(v);
            }
        }
        None
    }

    /// Waits for the child to end (killing it after `timeout`); its lines and whether it
    /// succeeded.
    pub fn finish(mut self, timeout: Duration) -> (bool, HashMap<String, String>) {
        let deadline = Instant::now() + timeout;
        let ok = loop {
            match self.child.try_wait().expect("waiting for a child") {
                Some(status) => break status.success(),
                None if Instant::now() > deadline => {
                    self.kill();
                    break false;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        while let Ok((k, v)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.insert(k, v);
        }
        (ok, self.seen)
    }

    /// The child's exit status when it has ended (without waiting).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for a child")
    }

    /// Kills the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
