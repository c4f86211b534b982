//! A worker: one OS process that plays one binder process of each scenario, with
//! [`THREADS`] OS threads as its binder threads. It reads `begin` / `step` / `end` lines on
//! stdin, runs each step on the thread it names, and answers with one normalised trace line
//! (see `trace.rs`).

use crate::gen::*;
use crate::trace::Learned;
use bittube::binder_ipc::device::{Device, Errno, KernelDevice, ShimDevice, WriteRead};
use bittube::binder_ipc::uapi::*;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Env var naming the worker's process index (set only in workers).
pub const WORKER_ENV: &str = "BITTUBE_DIFF_WORKER";
/// Env var naming the directory of the files the workers send.
pub const FILES_ENV: &str = "BITTUBE_DIFF_FILES";
/// Prefix of the worker's answer lines.
pub const ANSWER: &str = "@@diff ";
/// An fd number no worker has open (checked at start).
pub const BAD_FD: RawFd = 999;

/// The state of the binder process a worker plays in the current scenario.
pub struct Worker {
    /// This worker's process index.
    pub index: usize,
    /// The scenario's pids, by process index (to name senders).
    pub pids: Vec<i32>,
    /// The files the worker sends, and their directory.
    pub files: Vec<File>,
    /// Directory of the files.
    pub dir: PathBuf,
    /// The device of the current scenario.
    pub dev: Option<Arc<dyn Device>>,
    /// The scenario.
    pub scenario: Option<Scenario>,
    /// What the process has received so far.
    pub learned: Learned,
}

enum Job {
    Begin(Vec<String>),
    Step(usize),
    End,
}

/// Runs a worker until stdin closes.
pub fn main(index: usize) {
    let dir = PathBuf::from(std::env::var_os(FILES_ENV).expect("BITTUBE_DIFF_FILES"));
    let files = (0..FILES)
        .map(|i| File::open(dir.join(format!("f{i}"))).expect("opening a scenario file"))
        .collect();
    assert!(
        nix::fcntl::fcntl(
            // SAFETY: only asks whether BAD_FD is open; nothing is done with it.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(BAD_FD) },
            nix::fcntl::FcntlArg::F_GETFD
        )
        .is_err(),
        "fd {BAD_FD} must not be open in a worker"
    );
    // Panics of a step are part of its trace (run_job); no backtrace on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let state = Arc::new(Mutex::new(Worker {
        index,
        pids: Vec::new(),
        files,
        dir,
        dev: None,
        scenario: None,
        learned: Learned::default(),
    }));
    // Each binder thread answers on stdout itself (one hop fewer per step than handing the
    // answer back to the main thread: wake-ups are what a step costs under qemu TCG). The
    // controller sends the next line only after this answer, so answers never interleave.
    let threads: Vec<mpsc::Sender<Job>> = (0..THREADS)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<Job>();
            let state = state.clone();
            std::thread::spawn(move || {
                for job in rx {
                    let text = run_job(&state, job);
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "\n{ANSWER}{text}");
                    let _ = out.flush();
                }
            });
            tx
        })
        .collect();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let (thread, job) = match words.first().map(String::as_str) {
            Some("begin") => (0, Job::Begin(words[1..].to_vec())),
            Some("step") => {
                let i: usize = words[1].parse().expect("step number");
                let lock = state.lock().unwrap_or_else(|e| e.into_inner());
                let t = lock.scenario.as_ref().expect("a scenario").steps[i].thread;
                (t, Job::Step(i))
            }
            Some("end") => (0, Job::End),
            _ => continue,
        };
        threads[thread].send(job).expect("worker thread alive");
    }
    std::process::exit(0);
}

fn run_job(state: &Mutex<Worker>, job: Job) -> String {
    let mut w = state.lock().unwrap_or_else(|e| e.into_inner());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
        Job::Begin(args) => w.begin(&args),
        Job::Step(i) => w.step(i),
        Job::End => w.end(),
    }));
    match r {
        Ok(s) => s,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("PANIC({})", msg.lines().next().unwrap_or(""))
        }
    }
}

/// Opens a device of `side` (`kernel:<path>` or `shim:<path>`), non-blocking.
fn open_side(side: &str) -> Result<Arc<dyn Device>, String> {
    if let Some(path) = side.strip_prefix("kernel:") {
        let d = KernelDevice::open(Path::new(path)).map_err(|e| e.to_string())?;
        d.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Arc::new(d))
    } else if let Some(path) = side.strip_prefix("shim:") {
        let d = ShimDevice::open(Path::new(path)).map_err(|e| e.to_string())?;
        d.set_nonblocking(true);
        Ok(Arc::new(d))
    } else {
        Err(format!("unknown side {side}"))
    }
}

impl Worker {
    /// `begin <seed> <side> <pid>...`: opens the device and sets the process up.
    fn begin(&mut self, args: &[String]) -> String {
        let seed: u64 = args[0].parse().expect("seed");
        let scen = scenario(seed);
        self.pids = args[2..].iter().map(|p| p.parse().expect("pid")).collect();
        self.learned = Learned::default();
        let setup = scen.procs[self.index];
        self.scenario = Some(scen);
        let dev = match open_side(&args[1]) {
            Ok(d) => d,
            Err(e) => return format!("open failed: {e}"),
        };
        let mut out = Vec::new();
        if self.index == 0 {
            let obj = FlatBinderObject {
                hdr: BinderObjectHeader {
                    type_: BINDER_TYPE_BINDER,
                },
                flags: setup.mgr_flags,
                binder: node_ptr(0, 0),
                cookie: node_cookie(0, 0),
            };
            // The previous scenario's manager is released on a workqueue: wait for it.
            let start = Instant::now();
            let r = loop {
                match dev.set_context_mgr_ext(&obj) {
                    Err(Errno::EBUSY) if start.elapsed() < Duration::from_secs(20) => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    r => break r,
                }
            };
            out.push(format!("mgr={}", errno_text(r)));
        }
        out.push(format!(
            "max_threads={}",
            errno_text(dev.set_max_threads(setup.max_threads))
        ));
        if setup.spam_detection {
            out.push(format!(
                "spam={}",
                errno_text(dev.enable_oneway_spam_detection(true))
            ));
        }
        self.dev = Some(dev);
        out.join(" ")
    }

    /// `end`: the process ends; fds it still holds from FDA buffers are closed.
    fn end(&mut self) -> String {
        self.dev = None;
        self.scenario = None;
        let fds = std::mem::take(&mut self.learned).leftover_fds();
        for fd in fds {
            self.close_received(fd);
        }
        "ended".to_string()
    }

    /// Closes `fd` when it is a received copy of one of the scenario files (never one of
    /// the worker's own).
    pub fn close_received(&self, fd: RawFd) {
        if self.files.iter().any(|f| f.as_raw_fd() == fd) || fd < 0 {
            return;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            return;
        };
        if target.starts_with(&self.dir) {
            use std::os::fd::{FromRawFd, OwnedFd};
            // SAFETY: the driver installed `fd` in this process for a received object; it
            // names a scenario file and is none of the worker's own files, so nothing else
            // in this process owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    fn step(&mut self, i: usize) -> String {
        let step = self.scenario.as_ref().expect("scenario").steps[i].clone();
        let Some(dev) = self.dev.clone() else {
            return "no device".to_string();
        };
        match step.op {
            Op::Exit => {
                self.dev = None;
                drop(dev);
                "exit".to_string()
            }
            Op::ThreadExit => format!("thread_exit={}", errno_text(dev.thread_exit())),
            Op::WriteRead { cmds, read } => self.write_read(&*dev, &cmds, read),
        }
    }

    fn write_read(&mut self, dev: &dyn Device, cmds: &[Cmd], read: usize) -> String {
        let built = crate::build::Stream::build(self, dev, cmds);
        let mut rbuf = vec![0u8; read];
        let mut wr = WriteRead::new(built.bytes(), &mut rbuf);
        let r = dev.write_read(&mut wr);
        let (wc, rc) = (wr.write_consumed, wr.read_consumed);
        let returned = wr.returned().to_vec();
        let mut text = format!("{} wc={wc} rc={rc} |", errno_text(r));
        let rets = crate::trace::describe_stream(self, dev, &returned);
        text.push_str(&rets);
        for addr in built.freed {
            text.push_str(&self.learned.after_free(addr));
        }
        drop(built.keep);
        text
    }
}

/// `ok` or the errno's name.
pub fn errno_text(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    }
}
