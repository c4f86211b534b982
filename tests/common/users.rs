//! Helpers for tests whose parties run as different uids: dropping a child to a uid, and the
//! text messages the parent and its children exchange over the control socket.

use bittube::fd_transfer::{recv_with_fds, send_with_fds};
use nix::unistd::{Gid, Uid};
use std::os::fd::AsFd;

/// Whether this process runs as root (the uid tests are skipped otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Drops this process to `uid` (gid the same) with supplementary `groups`.
pub fn become_uid(uid: u32, groups: &[u32]) {
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).expect("setgroups");
    let g = Gid::from_raw(uid);
    nix::unistd::setresgid(g, g, g).expect("setresgid");
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).expect("setresuid");
    assert_eq!(nix::unistd::geteuid().as_raw(), uid);
}

/// Sends one text message over the control socket.
pub fn send(ctl: &impl AsFd, msg: &str) {
    send_with_fds(ctl, msg.as_bytes(), &[]).expect("control send");
}

/// Receives one text message (up to 256 bytes) from the control socket.
pub fn recv(ctl: &impl AsFd) -> String {
    let mut buf = [0u8; 256];
    let got = recv_with_fds(ctl, &mut buf, 0).expect("control receive");
    String::from_utf8_lossy(&buf[..got.len]).into_owned()
}
