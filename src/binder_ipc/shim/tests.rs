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

mod untrusted {
    //! Whatever a client sends, the shim answers or drops that client, and keeps serving.

    use super::*;
    use crate::binder_ipc::protocol::wire::{
        FrameHeader, K_IOCTL, K_OPEN_PROC, K_OPEN_THREAD, K_WRITE_READ,
    };
    use proptest::prelude::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A BC_ command with arbitrary payload bytes, or arbitrary bytes.
    fn command() -> impl Strategy<Value = Vec<u8>> {
        let codes = prop::sample::select(vec![
            BC_TRANSACTION,
            BC_REPLY,
            BC_FREE_BUFFER,
            BC_INCREFS,
            BC_ACQUIRE,
            BC_RELEASE,
            BC_DECREFS,
            BC_INCREFS_DONE,
            BC_ACQUIRE_DONE,
            BC_REGISTER_LOOPER,
            BC_ENTER_LOOPER,
            BC_EXIT_LOOPER,
            BC_REQUEST_DEATH_NOTIFICATION,
            BC_CLEAR_DEATH_NOTIFICATION,
            BC_DEAD_BINDER_DONE,
            BC_TRANSACTION_SG,
            BC_REPLY_SG,
        ]);
        prop_oneof![
            (codes, prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(c, p)| {
                let mut v = c.to_ne_bytes().to_vec();
                v.extend_from_slice(&p[..ioc_size(c).min(p.len())]);
                v.resize(4 + ioc_size(c), 0);
                v
            }),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn still_serves(driver: &Driver) {
        let dev = ShimDevice::open(driver.socket_path()).expect("a fresh process opens");
        assert_eq!(dev.version(), Ok(8));
        driver.state().expect("state dump");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_command_streams(streams in prop::collection::vec(prop::collection::vec(command(), 1..6), 1..4)) {
            let driver = Driver::start().unwrap();
            let dev = ShimDevice::open(driver.socket_path()).unwrap();
            for stream in streams {
                let bytes: Vec<u8> = stream.concat();
                // Write-only calls never block; errors are fine, panics and hangs are not.
                let mut wr = WriteRead::new(&bytes, &mut []);
                let _ = dev.write_read(&mut wr);
                prop_assert!(wr.write_consumed <= bytes.len());
            }
            still_serves(&driver);
        }

        #[test]
        fn random_frames_on_the_socket(kind in prop::sample::select(vec![K_OPEN_PROC, K_OPEN_THREAD, K_IOCTL, K_WRITE_READ, 0, 99]),
                                       lie in any::<bool>(),
                                       body in prop::collection::vec(any::<u8>(), 0..200)) {
            let driver = Driver::start().unwrap();
            let mut sock = UnixStream::connect(driver.socket_path()).unwrap();
            let len = if lie { body.len() as u32 + 1000 } else { body.len() as u32 };
            let hdr = FrameHeader { len, kind, nfds: lie as u32, reserved: 0 };
            let _ = sock.write_all(bytemuck::bytes_of(&hdr));
            let _ = sock.write_all(&body);
            drop(sock);
            still_serves(&driver);
        }
    }

    #[test]
    fn thread_connection_without_a_proc_is_refused() {
        let driver = Driver::start().unwrap();
        let sock = UnixStream::connect(driver.socket_path()).unwrap();
        crate::binder_ipc::protocol::wire::send_frame(
            std::os::fd::AsFd::as_fd(&sock),
            K_OPEN_THREAD,
            &[&42u64.to_ne_bytes()],
            &[],
        )
        .unwrap();
        let (hdr, body, _) =
            crate::binder_ipc::protocol::wire::recv_frame(std::os::fd::AsFd::as_fd(&sock)).unwrap();
        let res: crate::binder_ipc::protocol::wire::ResultBody =
            crate::binder_ipc::protocol::wire::body_as(
                &hdr,
                &body,
                crate::binder_ipc::protocol::wire::K_RESULT,
            )
            .unwrap();
        assert_eq!(res.errno, libc::EPERM, "a guessed token names no process");
        still_serves(&driver);
    }
}

#[test]
fn a_shim_that_offers_a_short_or_unsealed_area_is_refused() {
    use crate::binder_ipc::protocol::wire::{self, OpenProcOk, K_OPEN_PROC_OK};
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    let dir = std::env::temp_dir().join(format!("bittube-fake-shim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("binder");
    let listener = UnixListener::bind(&path).unwrap();
    let fake = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        wire::recv_frame(conn.as_fd()).unwrap();
        // A 4 KiB memfd, unsealed, announced as 1 MiB.
        let mfd: OwnedFd = memfd::MemfdOptions::default()
            .create("short")
            .unwrap()
            .into_file()
            .into();
        nix::unistd::ftruncate(&mfd, 4096).unwrap();
        let ok = OpenProcOk {
            errno: 0,
            reserved: 0,
            token: 1,
            area_size: 1 << 20,
        };
        wire::send_frame(
            conn.as_fd(),
            K_OPEN_PROC_OK,
            &[bytemuck::bytes_of(&ok)],
            &[mfd.as_fd()],
        )
        .unwrap();
    });
    let err = ShimDevice::open(&path).expect_err("the area must be refused");
    fake.join().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(
        err.to_string()
            .contains("not sealed against shrinking or smaller"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
