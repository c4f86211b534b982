//! The `bittube` command line tool.
//!
//! - `bittube driver --socket PATH`: runs the binder driver shim as a daemon. Once the socket
//!   accepts connections, its path is printed on stdout (one line), so a script can wait for
//!   that line. SIGTERM, SIGINT or SIGHUP stop it and remove the socket.
//! - `bittube state [--socket PATH]`: prints the state dump of a running shim (processes,
//!   threads, nodes, refs, transactions, buffers, counters), like the kernel's binder debugfs
//!   `state` and `stats`. The socket defaults to `$BITTUBE_BINDER`.
//! - `bittube service list [--socket PATH]`: what Android's `service list` prints (`Found N
//!   services:`, then `i\tname: [descriptor]`), asked over binder (the kernel driver when this
//!   machine has one and no socket is given, else the shim).
//! - `bittube service check NAME [--socket PATH]`: `Service NAME: found` or `not found`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bittube::binder_ipc::runtime::ProcessState;
use bittube::binder_ipc::service_manager::{check_report, list_report, ServiceManagerClient};
use bittube::binder_ipc::shim::{query_state, Driver, ENV_SOCKET};
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
    Driver {
        /// Where to listen. Its directory must be private to this user (mode 0700); it is
        /// created when missing.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
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

/// Service manager queries.
#[derive(Debug, Subcommand)]
enum ServiceQuery {
    /// List the registered services.
    List {
        /// The shim's socket [default: the kernel driver if present, else $BITTUBE_BINDER].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Driver { socket } => driver(&socket),
        Command::State { socket } => state(socket),
        Command::Service {
            query: ServiceQuery::List { socket },
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

/// Runs the shim until a stop signal arrives.
fn driver(socket: &Path) -> Result<(), String> {
    // Block the stop signals before the shim's thread starts, so that it inherits the mask
    // and the signals wait for this thread's sigwait.
    let mut stop = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(sig);
    }
    stop.thread_block()
        .map_err(|e| format!("cannot block the stop signals: {e}"))?;
    // `Driver::start_at` binds before it returns: the socket accepts connections from here on.
    let driver = Driver::start_at(socket).map_err(|e| {
        format!(
            "cannot start the binder driver shim at {}: {e}",
            socket.display()
        )
    })?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", driver.socket_path().display())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    let sig = stop
        .wait()
        .map_err(|e| format!("waiting for a stop signal: {e}"))?;
    // Dropping the driver stops its event loop and removes the socket.
    drop(driver);
    eprintln!("bittube: driver stopped by {}", sig.as_str());
    Ok(())
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
            "no binder driver shim answers at {} ({e}); start one with `bittube driver --socket {}`",
            socket.display(),
            socket.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    out.write_all(dump.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Prints what `report` makes of the service manager's answers.
fn service_report(
    socket: Option<PathBuf>,
    report: impl FnOnce(
        &ServiceManagerClient,
    ) -> Result<String, bittube::binder_ipc::runtime::BinderError>,
) -> Result<(), String> {
    let ps = match &socket {
        Some(s) => ProcessState::open_shim(s),
        None => ProcessState::open(),
    }
    .map_err(|e| format!("cannot open binder: {e}"))?;
    let text = ServiceManagerClient::new(&ps)
        .and_then(|sm| report(&sm))
        .map_err(|e| format!("cannot ask the service manager: {e}"))?;
    let _ = ps.shutdown(std::time::Duration::from_secs(2));
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}
