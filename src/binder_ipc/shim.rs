//! The driver shim: binder's semantics in user space, served over a Unix socket.
//!
//! The shim is the kernel's binder driver re-created as a library component: processes,
//! threads, nodes, refs, transactions, buffers in a per-process shared area, fd translation
//! and death notifications, all owned by one event loop. It runs embedded on a thread of any
//! process ([`Driver::start`]) or as a daemon ([`serve`], `bittube driver --socket PATH`);
//! [`ShimDevice`](crate::binder_ipc::device::ShimDevice) is its client.
//!
//! The socket lives in a directory only its owner may enter (or, shared with other users, one
//! only its owner or root may write: [`SocketAccess`]); every connection's pid and uid
//! come from `SO_PEERCRED`.
//!
//! ```
//! use bittube::binder_ipc::device::{Device, ShimDevice};
//! use bittube::binder_ipc::shim::Driver;
//!
//! let driver = Driver::start()?;
//! let dev = ShimDevice::open(driver.socket_path())?;
//! assert_eq!(dev.version()?, 8);
//! assert!(driver.state()?.contains("proc "));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alloc;
mod dump;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod limits;
mod node;
mod read;
mod server;
mod state;
#[cfg(test)]
mod tests;
mod transaction;
mod translate;

use std::os::fd::AsFd;

use super::protocol::wire;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A running driver shim on a thread of this process. Dropping it stops the shim and removes
/// its socket.
#[derive(Debug)]
pub struct Driver {
    socket: PathBuf,
    private_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// The environment variable that names the shim's socket for child processes.
pub const ENV_SOCKET: &str = "BITTUBE_BINDER";

/// How long [`query_state`] waits for a shim to answer.
pub const STATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub use limits::Limits as StateLimits;
pub use limits::UidLimits as StateUidLimits;
pub use limits::{Cap, CAP_NAMES};

/// What one client may hold in a shim. Each refusal is an errno to that client (on the
/// answer to its open or call) and a counter in the state dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per uid: proc, thread and state connections together. Past it a new
    /// connection is answered `EUSERS` and closed.
    pub conns_per_uid: usize,
    /// Binder processes per uid. Past it `K_OPEN_PROC` is answered `EMFILE`
    /// (`ShimDevice::open` fails with it). One connection holds at most one process.
    pub procs_per_uid: usize,
    /// Bytes of frames not yet whole, held for all the connections of one uid. A connection
    /// whose half-received frame would pass it is closed (half a frame cannot be answered);
    /// frames are at most [`wire::MAX_FRAME`] bytes.
    pub in_bytes_per_uid: usize,
    /// Bytes of answers queued for one connection that has not read them. Past it the shim
    /// stops reading that connection's requests until half of it has drained (the client's
    /// own writes then block); other connections are not affected.
    pub out_bytes_per_conn: usize,
    /// Bytes of answers queued for all the connections of one uid. Past it, a connection of
    /// that uid with answers still queued is paused in the same way, so that many
    /// connections that never read cannot add up their caps.
    pub out_bytes_per_uid: usize,
    /// The caps inside the state, per binder process and per uid (sums over the uid's
    /// processes, [`StateLimits::per_uid`]): nodes, refs, pending transactions, death
    /// notifications and threads (a thread connection past either cap is answered `ENOMEM`).
    pub state: StateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            conns_per_uid: 4096,
            procs_per_uid: 1024,
            in_bytes_per_uid: 256 << 20,
            out_bytes_per_conn: 1 << 20,
            out_bytes_per_uid: 64 << 20,
            state: StateLimits::default(),
        }
    }
}

fn private_dir() -> std::io::Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    for _ in 0..32 {
        let mut b = [0u8; 8];
        // SAFETY: getrandom writes at most 8 bytes into the live buffer `b`.
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
        let dir = base.join(format!(
            "bittube-{}-{:016x}",
            std::process::id(),
            u64::from_ne_bytes(b)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "could not create a private directory for the binder socket",
    ))
}

/// Checks that only this user may enter `dir`.
fn check_private(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is open to other users (mode {:o}, owner {}): the binder socket needs a directory only its owner may enter", dir.display(), meta.mode() & 0o777, meta.uid()),
        ));
    }
    Ok(())
}

/// Who besides the shim's own user may connect to its socket (the system-wide mode).
///
/// [`SocketAccess::PRIVATE`] (the default) is the owner only, in a directory only the owner
/// may enter. A shared socket (group or other bits in `mode`) sits in a directory that only
/// its owner or root may write (others could replace the socket) and that the allowed users
/// may search; both are checked at start and explained when wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    /// The socket's permission bits: 0o600 the owner only, 0o660 its group too, 0o666 everyone.
    pub mode: u32,
    /// The socket's group (a gid); `None` keeps the creating process's.
    pub group: Option<u32>,
}

impl SocketAccess {
    /// The owner only (mode 0o600, directory 0o700).
    pub const PRIVATE: SocketAccess = SocketAccess {
        mode: 0o600,
        group: None,
    };

    fn shared(&self) -> bool {
        self.mode & 0o077 != 0
    }
}

impl Default for SocketAccess {
    fn default() -> Self {
        SocketAccess::PRIVATE
    }
}

/// Checks a shared socket's directory: written by its owner (this user or root) only, and
/// searchable by the users `access` lets in.
fn check_shared(dir: &Path, access: SocketAccess) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    let (mode, d) = (meta.mode() & 0o7777, dir.display());
    let why = if meta.uid() != me && meta.uid() != 0 {
        Some(format!(
            "{d} belongs to uid {}, not to this user ({me}) or root",
            meta.uid()
        ))
    } else if mode & 0o022 != 0 {
        Some(format!("{d} (mode {mode:o}) may be written by others, who could replace the socket: chmod go-w {d}"))
    } else if access.mode & 0o007 != 0 && mode & 0o001 == 0 {
        Some(format!("the socket is for everyone but {d} (mode {mode:o}) lets only its owner/group through: chmod o+x {d}"))
    } else if access.mode & 0o070 != 0
        && mode & 0o001 == 0
        && (mode & 0o010 == 0 || access.group.is_some_and(|g| g != meta.gid()))
    {
        Some(format!("the socket is for group {:?} but {d} (mode {mode:o}, group {}) does not let that group through: chgrp it to the socket's group and chmod g+x {d}", access.group.unwrap_or(meta.gid()), meta.gid()))
    } else {
        None
    };
    match why {
        Some(w) => Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, w)),
        None => Ok(()),
    }
}

/// Creates a missing socket directory: 0o700 private, 0o750 (the socket's group) or 0o755.
fn create_dir(dir: &Path, access: SocketAccess) -> std::io::Result<()> {
    let mode = match (access.shared(), access.mode & 0o007 != 0) {
        (false, _) => 0o700,
        (true, true) => 0o755,
        (true, false) => 0o750,
    };
    std::fs::DirBuilder::new()
        .mode(mode)
        .recursive(true)
        .create(dir)?;
    if access.shared() && access.group.is_some() {
        std::os::unix::fs::chown(dir, None, access.group)?;
    }
    Ok(())
}

fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    bind_shared(socket, SocketAccess::PRIVATE)
}

fn bind_shared(socket: &Path, access: SocketAccess) -> std::io::Result<UnixListener> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        create_dir(dir, access)?;
    }
    if access.shared() {
        check_shared(dir, access)?;
    } else {
        check_private(dir)?;
    }
    if socket.exists() {
        // A stale socket from a dead shim is replaced; a live one is refused.
        if UnixStream::connect(socket).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("a binder shim already listens at {}", socket.display()),
            ));
        }
        std::fs::remove_file(socket)?;
    }
    let l = UnixListener::bind(socket)?;
    if access.group.is_some() {
        std::os::unix::fs::chown(socket, None, access.group)?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(access.mode & 0o777))?;
    Ok(l)
}

impl Driver {
    /// Starts a shim on a new thread, listening on a fresh socket in a new directory only this
    /// user may enter (under `$XDG_RUNTIME_DIR`, else the temp dir).
    pub fn start() -> std::io::Result<Driver> {
        let dir = private_dir()?;
        let socket = dir.join("binder");
        let mut d = Self::start_at(&socket)?;
        d.private_dir = Some(dir);
        Ok(d)
    }

    /// Starts a shim on a new thread listening at `socket`, whose directory must be private
    /// to this user (it is created, mode 0700, when missing).
    pub fn start_at(socket: &Path) -> std::io::Result<Driver> {
        Self::start_at_with(socket, Limits::default())
    }

    /// [`Driver::start`] with `limits` in place of the default caps.
    pub fn start_with(limits: Limits) -> std::io::Result<Driver> {
        let dir = private_dir()?;
        let socket = dir.join("binder");
        let mut d = Self::start_at_with(&socket, limits)?;
        d.private_dir = Some(dir);
        Ok(d)
    }

    /// [`Driver::start_at`] with `limits` in place of the default caps.
    pub fn start_at_with(socket: &Path, limits: Limits) -> std::io::Result<Driver> {
        Self::start_shared(socket, limits, SocketAccess::PRIVATE)
    }

    /// [`Driver::start_at_with`] with a socket other users may reach as `access` says (the
    /// system-wide mode); the directory is checked (see [`SocketAccess`]).
    pub fn start_shared(
        socket: &Path,
        limits: Limits,
        access: SocketAccess,
    ) -> std::io::Result<Driver> {
        let listener = bind_shared(socket, access)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (mut server, waker) = server::Server::new(listener, stop.clone(), limits)?;
        let thread = std::thread::Builder::new()
            .name("binder-shim".into())
            .spawn(move || server.run())?;
        Ok(Driver {
            socket: socket.to_owned(),
            private_dir: None,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The socket path devices connect to; child processes find it in [`ENV_SOCKET`].
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The state dump, like the kernel's binder debugfs `state` and `stats`.
    pub fn state(&self) -> std::io::Result<String> {
        query_state(&self.socket)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        if let Some(d) = &self.private_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Runs a shim at `socket` on this thread until the process ends (the daemon).
pub fn serve(socket: &Path) -> std::io::Result<()> {
    serve_with(socket, Limits::default())
}

/// [`serve`] with `limits` in place of the default caps.
pub fn serve_with(socket: &Path, limits: Limits) -> std::io::Result<()> {
    let listener = bind(socket)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (mut server, _waker) = server::Server::new(listener, stop, limits)?;
    server.run()
}

/// Asks the shim at `socket` for its state dump, waiting at most [`STATE_TIMEOUT`] for the
/// answer (the error then names the socket).
pub fn query_state(socket: &Path) -> std::io::Result<String> {
    query_state_timeout(socket, STATE_TIMEOUT)
}

/// [`query_state`] with its own time limit for the connect, the request and the answer.
pub fn query_state_timeout(socket: &Path, timeout: std::time::Duration) -> std::io::Result<String> {
    let named = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("binder shim at {}: {e}", socket.display()),
        )
    };
    let conn = UnixStream::connect(socket).map_err(named)?;
    conn.set_read_timeout(Some(timeout)).map_err(named)?;
    conn.set_write_timeout(Some(timeout)).map_err(named)?;
    let err = |e: nix::errno::Errno| match e {
        nix::errno::Errno::EAGAIN => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "binder shim at {}: no answer to the state query within {timeout:?}",
                socket.display()
            ),
        ),
        e => named(std::io::Error::from_raw_os_error(e as i32)),
    };
    wire::send_frame(conn.as_fd(), wire::K_STATE, &[], &[]).map_err(err)?;
    let (hdr, body, _) = wire::recv_frame(conn.as_fd()).map_err(err)?;
    match hdr.kind {
        wire::K_STATE_RET => String::from_utf8(body)
            .map_err(|_| named(std::io::Error::other("its state dump is not UTF-8"))),
        wire::K_RESULT => {
            let r: wire::ResultBody = wire::body_as(&hdr, &body, wire::K_RESULT).map_err(err)?;
            Err(named(std::io::Error::from_raw_os_error(r.errno)))
        }
        _ => Err(named(std::io::Error::other(
            "it answered the state query with the wrong frame",
        ))),
    }
}
