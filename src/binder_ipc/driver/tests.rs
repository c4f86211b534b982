//! In-process tests of the shim: several binder processes in one OS process (each
//! `ShimDevice` is one), each OS thread one binder thread. The cross-process suite is
//! tests/conformance.rs.

use super::Driver;
use crate::binder_ipc::device::{Device, ShimDevice, WriteRead};
use crate::binder_ipc::uapi::*;

fn returned(dev: &dyn Device, write: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut read = vec![0u8; 512];
    let mut wr = WriteRead::new(write, &mut read);
    dev.write_read(&mut wr).expect("write_read");
    assert_eq!(wr.write_consumed, write.len());
    let mut r = CommandReader::new(wr.returned());
    let mut v = Vec::new();
    while let Some((c, p)) = r.next_command() {
        v.push((c, p.to_vec()));
    }
    v
}

fn cmds(v: &[(u32, Vec<u8>)]) -> Vec<&'static str> {
    v.iter().map(|(c, _)| command_name(*c)).collect()
}

fn txn(handle: u32, code: u32, flags: u32, data: &[u8], offsets: &[u64]) -> BinderTransactionData {
    BinderTransactionData {
        target: handle as u64,
        code,
        flags,
        data_size: data.len() as u64,
        offsets_size: (offsets.len() * 8) as u64,
        data_buffer: data.as_ptr() as u64,
        data_offsets: offsets.as_ptr() as u64,
        ..Default::default()
    }
}

#[test]
fn context_manager_is_unreachable_from_its_own_os_process() {
    // The kernel refuses handle 0 when the caller's pid is the manager's, even from another
    // binder process (another open of the device); calls between OS processes are
    // tests/conformance.rs.
    let driver = Driver::start().unwrap();
    let mgr = ShimDevice::open(driver.socket_path()).unwrap();
    let client = ShimDevice::open(driver.socket_path()).unwrap();
    assert_eq!(mgr.version().unwrap(), 8);
    let fbo = FlatBinderObject {
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        ..Default::default()
    };
    mgr.set_context_mgr_ext(&fbo).unwrap();
    assert_eq!(client.set_context_mgr(), Err(nix::errno::Errno::EBUSY));
    let t = txn(0, 7, 0, b"ping", &[]);
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &t);
    assert_eq!(
        cmds(&returned(&client, w.as_bytes())),
        ["BR_NOOP", "BR_FAILED_REPLY"]
    );
    let state = driver.state().unwrap();
    assert!(state.contains("BC_TRANSACTION: 1"), "{state}");
    assert!(state.contains("failed transactions: 1"), "{state}");
    assert!(
        !state.contains("buffer at"),
        "no buffer left behind:\n{state}"
    );
}

#[test]
fn no_context_manager_is_dead_reply_and_unknown_command_is_einval() {
    let driver = Driver::start().unwrap();
    let dev = ShimDevice::open(driver.socket_path()).unwrap();
    let t = txn(0, 1, 0, b"x", &[]);
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &t);
    assert_eq!(
        cmds(&returned(&dev, w.as_bytes())),
        ["BR_NOOP", "BR_DEAD_REPLY"]
    );
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER).cmd(0x1234_5678);
    let mut read = [0u8; 64];
    let mut wr = WriteRead::new(w.as_bytes(), &mut read);
    assert_eq!(dev.write_read(&mut wr), Err(nix::errno::Errno::EINVAL));
    assert_eq!(wr.write_consumed, 4);
}
