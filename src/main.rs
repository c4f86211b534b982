//! The `bittube` command line tool.
//!
//! - `bittube driver --socket PATH`: runs the binder driver shim as a daemon. Once the socket
//!   accepts connections (and, with `--service-manager`, the manager answers), its path is
//!   printed on stdout (one line), so a script can wait for that line. SIGTERM, SIGINT or
//!   SIGHUP stop it and remove the socket.
//!   - `--service-manager` hosts the service manager (the context manager, handle 0) in the
//!     daemon's own process, with the policy file of `--policy FILE` (see
//!     [`bittube::binder_ipc::policy`]). The daemon's process never calls handle 0 itself
//!     (the kernel's rule: a context manager cannot transact to itself; the runtime answers
//!     `OwnContextManager`): it only uses the manager's local API.
//!   - `--mode 660 --group NAME` (or `--mode 666`) opens the socket to a group of users or to
//!     everyone: the system-wide mode. The socket's directory must then be writable by its
//!     owner (this user or root) only and searchable by the allowed users; it is checked at
//!     start and explained when wrong.
//!   - `--log-level` (error, warn, info, debug, trace; default info): logs on stderr, every
//!     refusal included (policy refusals at once; the shim's caps from its counters, checked
//!     every second).
//! - `bittube state [--socket PATH]`: prints the state dump of a running shim (processes,
//!   threads, nodes, refs, transactions, buffers, counters), like the kernel's binder debugfs
//!   `state` and `stats`. The socket defaults to `$BITTUBE_BINDER`.
//! - `bittube service list [--socket PATH] [--owners]`: what Android's `service list` prints
//!   (`Found N services:`, then `i\tname: [descriptor]`), asked over binder (the kernel driver
//!   when this machine has one and no socket is given, else the shim); with `--owners`, each
//!   name with its registering pid and that process's effective uid instead.
//! - `bittube service check NAME [--socket PATH]`: `Service NAME: found` or `not found`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bittube::binder_ipc::policy::ServicePolicy;
use bittube::binder_ipc::runtime::BinderError;
use bittube::binder_ipc::runtime::ProcessState;
use bittube::binder_ipc::service_manager::{
    check_report, list_report, ServiceManager, ServiceManagerClient,
};
use bittube::binder_ipc::shim::{
    query_state, Cap, Driver, Limits, SocketAccess, CAP_NAMES, ENV_SOCKET,
};
use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

/// Android-style BitTubes over binder: the driver shim and its tools.
#[derive(Debug, Parser)]
#[command(name = "bittube", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the binder driver shim as a daemon; prints the socket path once it listens.
    Driver(DriverArgs),
    /// Print the state dump of a running driver shim.
    State {
        /// The shim's socket [default: $BITTUBE_BINDER].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Ask the service manager.
    Service {
        #[command(subcommand)]
        query: ServiceQuery,
    },
}

/// `bittube driver`'s options.
#[derive(Debug, clap::Args)]
struct DriverArgs {
    /// Where to listen. With the default mode its directory must be private to this user
    /// (0700; created when missing); with a shared mode, writable by its owner only.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The socket's permission bits, octal: 600 this user only, 660 its group too, 666
    /// everyone.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// The socket's group (a name or a gid): the users allowed in with mode 660.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    group: Option<u32>,
    /// Host the service manager (handle 0) in this process.
    #[arg(long)]
    service_manager: bool,
    /// The service manager's policy file (implies --service-manager).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Binder processes one uid may open (the shim's per-uid cap) [default: 1024].
    #[arg(long, value_name = "N")]
    max_procs_per_uid: Option<usize>,
    /// Connections one uid may hold open [default: 4096].
    #[arg(long, value_name = "N")]
    max_conns_per_uid: Option<usize>,
    /// A cap on what one binder process may have the shim keep, as NAME=N (repeatable):
    /// nodes, refs, transactions, deaths, threads or fds [defaults: `bittube state`].
    #[arg(long = "proc-cap", value_name = "NAME=N", value_parser = parse_cap)]
    proc_caps: Vec<(Cap, u64)>,
    /// The same caps on the sums over all the binder processes of one uid, as NAME=N
    /// (repeatable).
    #[arg(long = "uid-cap", value_name = "NAME=N", value_parser = parse_cap)]
    uid_caps: Vec<(Cap, u64)>,
    /// Log level on stderr: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,
}

/// `NAME=N` of `--proc-cap` / `--uid-cap`.
fn parse_cap(s: &str) -> Result<(Cap, u64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=N"))?;
    let cap = Cap::from_name(name)
        .ok_or_else(|| format!("{name:?}: not a cap; one of {}", CAP_NAMES.join(", ")))?;
    let n = n
        .parse::<u64>()
        .map_err(|e| format!("{n:?}: not a count: {e}"))?;
    Ok((cap, n))
}

/// Service manager queries.
#[derive(Debug, Subcommand)]
enum ServiceQuery {
    /// List the registered services.
    List {
        /// The shim's socket [default: the kernel driver if present, else $BITTUBE_BINDER].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Also print each service's registering pid and that process's uid.
        #[arg(long)]
        owners: bool,
    },
    /// Say whether a service is registered.
    Check {
        /// The service's name.
        name: String,
        /// The shim's socket [default: the kernel driver if present, else $BITTUBE_BINDER].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s, 8).map_err(|_| format!("'{s}' is not an octal mode"))?;
    if m & !0o666 != 0 || m & 0o600 != 0o600 {
        return Err(format!(
            "mode {s}: a socket mode is read+write bits only (600, 660 or 666) and keeps 600 for its owner"
        ));
    }
    Ok(m)
}

fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group '{s}'")),
        Err(e) => Err(format!("group '{s}': {e}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Driver(args) => driver(&args),
        Command::State { socket } => state(socket),
        Command::Service {
            query: ServiceQuery::List { socket, owners },
        } if owners => service_report(socket, owners_report),
        Command::Service {
            query: ServiceQuery::List { socket, .. },
        } => service_report(socket, list_report),
        Command::Service {
            query: ServiceQuery::Check { name, socket },
        } => service_report(socket, |sm| check_report(sm, &name)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("bittube: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The service manager hosted by the daemon, and the binder process it runs in.
struct HostedManager {
    process: ProcessState,
    manager: Arc<ServiceManager>,
}

/// Makes this process the context manager: the manager answers other processes; this
/// process only uses its local API ([`ServiceManager::names`], `add_local`).
fn host_manager(socket: &Path, policy: Option<&Path>) -> Result<HostedManager, String> {
    let policy = match policy {
        Some(p) => ServicePolicy::load(p)?,
        None => ServicePolicy::default(),
    };
    tracing::info!(
        rules = policy.rules().len(),
        "service manager policy loaded"
    );
    let process = ProcessState::open_shim(socket)
        .map_err(|e| format!("cannot open the shim for the service manager: {e}"))?;
    let manager = ServiceManager::serve(&process, policy.into_access_policy())
        .map_err(|e| format!("cannot become the context manager: {e}"))?;
    Ok(HostedManager { process, manager })
}

/// Runs the shim (and the service manager) until a stop signal arrives.
fn driver(args: &DriverArgs) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .init();
    // Block the stop signals before any thread starts, so that every thread inherits the
    // mask and the signals wait for this thread's sigwait.
    let mut stop = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block()
        .map_err(|e| format!("cannot block the stop signals: {e}"))?;
    let access = SocketAccess {
        mode: args.mode,
        group: args.group,
    };
    let socket = &args.socket;
    // `Driver::start_shared` binds before it returns: the socket accepts connections from here.
    let mut limits = Limits::default();
    limits.procs_per_uid = args.max_procs_per_uid.unwrap_or(limits.procs_per_uid);
    limits.conns_per_uid = args.max_conns_per_uid.unwrap_or(limits.conns_per_uid);
    for &(cap, n) in &args.proc_caps {
        limits.state.set_per_proc(cap, n);
    }
    for &(cap, n) in &args.uid_caps {
        limits.state.set_per_uid(cap, n);
    }
    let driver = Driver::start_shared(socket, limits, access).map_err(|e| {
        format!(
            "cannot start the binder driver shim at {}: {e}",
            socket.display()
        )
    })?;
    tracing::info!(socket = %socket.display(), mode = format!("{:o}", access.mode), group = ?access.group, "binder driver shim listening");
    let hosted = if args.service_manager || args.policy.is_some() {
        Some(host_manager(socket, args.policy.as_deref())?)
    } else {
        None
    };
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = watch_refusals(socket.clone(), watching.clone());
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", driver.socket_path().display())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    let sig = stop
        .wait()
        .map_err(|e| format!("waiting for a stop signal: {e}"))?;
    watching.store(false, Ordering::Release);
    let _ = watcher.map(|w| w.join());
    if let Some(h) = hosted {
        tracing::info!(names = h.manager.names().len(), "service manager stopping");
        let _ = h.process.shutdown(Duration::from_secs(2));
    }
    // Dropping the driver stops its event loop and removes the socket.
    drop(driver);
    tracing::info!("driver stopped by {}", sig.as_str());
    Ok(())
}

/// The shim counts its refusals (caps, bad commands) in its state dump; a thread asks for it
/// every second and logs each counter line that changed, at `warn`.
fn watch_refusals(
    socket: PathBuf,
    running: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("refusal-log".into())
        .spawn(move || {
            let mut seen: HashMap<String, String> = HashMap::new();
            while running.load(Ordering::Acquire) {
                if let Ok(dump) = query_state(&socket) {
                    log_changed_refusals(&dump, &mut seen);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    spawned
        .map_err(|e| tracing::error!("cannot start the refusal log: {e}"))
        .ok()
}

/// Logs the dump's refusal lines whose numbers changed since the last dump.
fn log_changed_refusals(dump: &str, seen: &mut HashMap<String, String>) {
    for line in dump.lines().filter(|l| l.contains("refused")) {
        let line = line.trim();
        let key: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
        let before = seen.insert(key, line.to_owned());
        // The first dump is the baseline.
        if before.is_some_and(|b| b != line) {
            tracing::warn!(target: "bittube::shim", "shim refusals: {line}");
        }
    }
}

/// Prints the state dump of the shim at `socket`, or at `$BITTUBE_BINDER`.
fn state(socket: Option<PathBuf>) -> Result<(), String> {
    let socket = match socket.or_else(|| std::env::var_os(ENV_SOCKET).map(PathBuf::from)) {
        Some(s) => s,
        None => {
            return Err(format!(
                "no socket given: pass --socket PATH or set {ENV_SOCKET}"
            ))
        }
    };
    let dump = query_state(&socket).map_err(|e| {
        format!(
            "no binder driver shim answers at {} ({e}){}",
            socket.display(),
            why_refused(&e, &socket).unwrap_or_else(|| format!(
                "; start one with `bittube driver --socket {}`",
                socket.display()
            ))
        )
    })?;
    let mut out = std::io::stdout().lock();
    out.write_all(dump.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// For a connection refused by the socket's permissions: who may connect, and who this is.
fn why_refused(e: &std::io::Error, socket: &Path) -> Option<String> {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return None;
    }
    let me = nix::unistd::getuid().as_raw();
    let groups = nix::unistd::getgroups().unwrap_or_default();
    let groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
    let dir = socket.parent().unwrap_or(Path::new("/"));
    // The socket itself, or, when its directory is closed to this uid, the directory.
    let (what, meta) = match std::fs::metadata(socket) {
        Ok(m) => ("the socket", m),
        Err(_) => ("its directory", std::fs::metadata(dir).ok()?),
    };
    Some(format!(
        "; {what} (owner uid {}, group {}, mode {:o}) does not let uid {me} (groups {groups:?}) in: ask the admin to add this user to group {}",
        meta.uid(),
        meta.gid(),
        meta.mode() & 0o777,
        meta.gid()
    ))
}

/// Prints what `report` makes of the service manager's answers.
fn service_report(
    socket: Option<PathBuf>,
    report: impl FnOnce(&ServiceManagerClient) -> Result<String, BinderError>,
) -> Result<(), String> {
    let ps = match &socket {
        Some(s) => ProcessState::open_shim(s),
        None => ProcessState::open(),
    }
    .map_err(|e| {
        // The runtime's error keeps the text; connect again for the kind.
        let hint = socket.as_deref().and_then(|s| {
            let probe = std::os::unix::net::UnixStream::connect(s).err()?;
            why_refused(&probe, s)
        });
        format!("cannot open binder: {e}{}", hint.unwrap_or_default())
    })?;
    let text = ServiceManagerClient::new(&ps)
        .and_then(|sm| report(&sm))
        .map_err(|e| format!("cannot ask the service manager: {e}"))?;
    let _ = ps.shutdown(Duration::from_secs(2));
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Each registered name with its registering pid and that process's effective uid.
fn owners_report(sm: &ServiceManagerClient) -> Result<String, BinderError> {
    let names = sm.list_services()?;
    let pids: HashMap<String, i32> = sm
        .get_service_debug_info()?
        .into_iter()
        .map(|i| (i.name, i.debugPid))
        .collect();
    let mut out = String::new();
    for n in names {
        match pids.get(&n) {
            Some(&pid) => out.push_str(&format!("{n}\tpid {pid}\tuid {}\n", euid_of(pid))),
            None => out.push_str(&format!("{n}\tpid ?\tuid ?\n")),
        }
    }
    Ok(out)
}

/// The effective uid of process `pid` (from /proc: the pid is the one the driver recorded
/// when the service was added), or `?` when it is gone.
fn euid_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}
