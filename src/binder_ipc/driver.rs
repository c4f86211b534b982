//! The driver shim: binder's semantics in user space, served over a Unix socket.

use std::path::{Path, PathBuf};

/// A running driver shim (embedded on a thread of this process).
#[derive(Debug)]
pub struct Driver {
    socket: PathBuf,
}

impl Driver {
    /// Starts a shim on a new thread, listening on a fresh socket in a directory only this
    /// user may enter.
    pub fn start() -> std::io::Result<Driver> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }

    /// The socket path devices connect to (`BITTUBE_BINDER`).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}
