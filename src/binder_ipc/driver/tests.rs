//! In-process tests of the shim: several binder processes in one OS process (each
//! `ShimDevice` is one), each OS thread one binder thread. The cross-process suite is
//! tests/conformance.rs.

use super::Driver;
use crate::binder_ipc::device::{Device, ShimDevice, WriteRead};
use crate::binder_ipc::uapi::*;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};

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
fn call_reply_and_fd_with_shared_offset() {
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

    let mgr2 = mgr.clone();
    let server = std::thread::spawn(move || {
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        // The first call of a new thread returns at once (looper_need_return), with or
        // without the call, depending on who came first.
        let mut got = returned(&mgr2, w.as_bytes());
        if got.len() == 1 {
            got = returned(&mgr2, &[]);
        }
        assert_eq!(cmds(&got), ["BR_NOOP", "BR_TRANSACTION"]);
        let tr: BinderTransactionData = bytemuck::pod_read_unaligned(&got[1].1);
        assert_eq!(tr.code, 7);
        assert_eq!(tr.sender_pid, std::process::id() as i32);
        assert_eq!(tr.data_offsets, tr.data_buffer + 24);
        let data = mgr2
            .buffer_bytes(tr.data_buffer, tr.data_size as usize)
            .unwrap()
            .to_vec();
        let obj: BinderFdObject = bytemuck::pod_read_unaligned(&data[..24]);
        assert_eq!(obj.hdr.type_, BINDER_TYPE_FD);
        // SAFETY: the driver installed this fd for us; we own it now.
        let mut f = unsafe { std::fs::File::from_raw_fd(obj.fd()) };
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0);
        let mut rest = String::new();
        f.read_to_string(&mut rest).unwrap();
        let reply = b"pong";
        let rt = txn(0, 0, 0, reply, &[]);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_FREE_BUFFER, &tr.data_buffer)
            .cmd_with(BC_REPLY, &rt);
        let got = returned(&mgr2, w.as_bytes());
        assert_eq!(cmds(&got), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
        rest
    });

    let mut file = tempfile_with(b"helloworld");
    let mut first = [0u8; 5];
    file.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello");
    let obj = BinderFdObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_FD,
        },
        pad_binder: file.as_raw_fd() as u64,
        cookie: 0,
        ..Default::default()
    };
    let data = bytemuck::bytes_of(&obj).to_vec();
    let offsets = [0u64];
    let t = txn(0, 7, TF_ACCEPT_FDS, &data, &offsets);
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &t);
    let got = returned(&client, w.as_bytes());
    assert_eq!(
        cmds(&got),
        ["BR_NOOP", "BR_TRANSACTION_COMPLETE", "BR_REPLY"]
    );
    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(&got[2].1);
    assert_eq!(client.buffer_bytes(tr.data_buffer, 4).unwrap(), b"pong");
    assert_eq!(server.join().unwrap(), "world");
    // Shared offset: the receiver's read moved ours too.
    assert_eq!(file.stream_position().unwrap(), 10);
    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    client.write_read(&mut wr).unwrap();
    assert_eq!((wr.write_consumed, wr.read_consumed), (12, 0));
    let state = driver.state().unwrap();
    assert!(state.contains("BC_TRANSACTION: 1"), "{state}");
    assert!(!state.contains("buffer at"), "buffers all freed:\n{state}");
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

fn tempfile_with(bytes: &[u8]) -> std::fs::File {
    let mfd = memfd::MemfdOptions::default().create("hello").unwrap();
    let mut f = mfd.into_file();
    f.write_all(bytes).unwrap();
    f.rewind().unwrap();
    f
}
