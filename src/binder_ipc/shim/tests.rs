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

mod checks {
    //! The shim's state driven directly (no sockets): every check on a number a client sends,
    //! every cap, the extended error and the death-on-a-dead-node rule. Each test fails when
    //! its check is gone (a panic on overflow in debug builds, a wrong answer otherwise).

    use super::super::alloc::Area;
    use super::super::error::Check;
    use super::super::limits::Cap;
    use super::super::state::{BufferId, ConnId, Handle, ProcId, State, ThreadId, WriteReadDone};
    use crate::binder_ipc::protocol::wire::{Gathered, WriteReadReq};
    use crate::binder_ipc::uapi::*;
    use nix::errno::Errno;

    /// A non-blocking write_read request.
    fn rq(write_consumed: u64, read_consumed: u64, read_size: u64) -> WriteReadReq {
        WriteReadReq {
            write_consumed,
            read_consumed,
            read_size,
            nonblock: 1,
            ..Default::default()
        }
    }

    const SENDER: ConnId = ThreadId(1);
    const MGR: ConnId = ThreadId(2);
    const THIRD: ConnId = ThreadId(3);
    const MGR_BASE: u64 = 0x7000_0000;

    /// Three processes (pids 100, 200, 300), one thread each; 200 is the context manager
    /// and accepts fds. Returns the state and the proc ids.
    fn setup() -> (State, [ProcId; 3]) {
        let mut s = State::default();
        let mut ids = [ProcId(0); 3];
        for (i, conn) in [SENDER, MGR, THIRD].into_iter().enumerate() {
            let area = Area::new(64 * 1024).unwrap();
            let p = s.open_proc(100 * (i as i32 + 1), 0, area, i as u64);
            let proc = s.procs.get_mut(&p).unwrap();
            proc.mapped = true;
            proc.area.client_base = MGR_BASE * (i as u64 + 1);
            s.open_thread(conn, p);
            ids[i] = p;
        }
        let fbo = FlatBinderObject {
            flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
            ..Default::default()
        };
        s.set_context_mgr(MGR, Some(fbo)).unwrap();
        (s, ids)
    }

    /// A transaction's payload, as the device sends it after the command.
    #[derive(Default)]
    struct Payload {
        data: Vec<u8>,
        offsets: Vec<u64>,
        sg: Vec<u8>,
        buffers_size: Option<u64>,
        nfds: u32,
    }

    /// `cmd` with `tr` (sizes filled in from `p`) and the gathered record + body.
    fn txn_stream(cmd: u32, mut tr: BinderTransactionData, p: &Payload) -> Vec<u8> {
        tr.data_size = p.data.len() as u64;
        tr.offsets_size = p.offsets.len() as u64 * 8;
        let mut w = CommandWriter::new();
        match p.buffers_size {
            Some(b) => w.cmd_with(
                cmd,
                &BinderTransactionDataSg {
                    transaction_data: tr,
                    buffers_size: b,
                },
            ),
            None => w.cmd_with(cmd, &tr),
        };
        let mut v = w.as_bytes().to_vec();
        let g = Gathered {
            status: 0,
            nfds: p.nfds,
            data_len: p.data.len() as u64,
            offsets_len: p.offsets.len() as u64 * 8,
            sg_len: p.sg.len() as u64,
        };
        v.extend_from_slice(bytemuck::bytes_of(&g));
        v.extend_from_slice(&p.data);
        for o in &p.offsets {
            v.extend_from_slice(&o.to_ne_bytes());
        }
        v.extend_from_slice(&p.sg);
        v
    }

    fn call0(flags: u32) -> BinderTransactionData {
        BinderTransactionData {
            code: 1,
            flags,
            ..Default::default()
        }
    }

    /// The object counters agree with what the state holds (while every sender lives: a dead
    /// sender's records outlive its count).
    fn assert_counts(s: &State) {
        use super::super::state::{OBJ_DEATH, OBJ_NODE, OBJ_TXN};
        let live = |i: usize| s.stats.created[i] - s.stats.deleted[i];
        assert_eq!(live(OBJ_NODE), s.nodes.len() as u64);
        assert_eq!(live(OBJ_TXN), s.txns.len() as u64);
        assert_eq!(live(OBJ_DEATH), s.deaths.len() as u64);
        let deaths: u32 = s.procs.values().map(|p| p.deaths).sum();
        assert_eq!(deaths as usize, s.deaths.len());
        let txns: u32 = s.procs.values().map(|p| p.txns_out).sum();
        assert_eq!(txns as usize, s.txns.len());
        let fds_out: u64 = s.procs.values().map(|p| u64::from(p.fds_out)).sum();
        let fds_held: usize = s.txns.values().map(|t| t.fds.len()).sum();
        assert_eq!(fds_out, fds_held as u64, "fds counted against senders");
        assert!(s.uid_usage_consistent(), "{:?}", s.uid_usage);
    }

    /// One non-blocking write_read; returns the BR_ codes read.
    fn wr(s: &mut State, conn: ConnId, stream: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> Vec<u32> {
        let done = s
            .write_read(conn, stream, &rq(0, 0, 512), fds)
            .expect("non-blocking");
        codes(&done)
    }

    fn codes(done: &WriteReadDone) -> Vec<u32> {
        let mut r = CommandReader::new(&done.read);
        let mut v = Vec::new();
        while let Some((c, _)) = r.next_command() {
            v.push(c);
        }
        v
    }

    fn ptr_obj(length: u64, buffer: u64, parent: Option<(u64, u64)>) -> BinderBufferObject {
        BinderBufferObject::new(buffer, length, parent)
    }

    fn fda_obj(num_fds: u64, parent: u64, parent_offset: u64) -> BinderFdArrayObject {
        BinderFdArrayObject::new(num_fds, parent, parent_offset)
    }

    /// Objects laid out one after another from data offset 8 (a parent at offset 0 takes no
    /// fixups, as in the kernel), with their offsets.
    fn objects(objs: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut data = vec![0u8; 8];
        let mut offs = Vec::new();
        for o in objs {
            offs.push(data.len() as u64);
            data.extend_from_slice(o);
        }
        (data, offs)
    }

    /// Sends `p` from the sender to the manager and expects `check` to refuse it with
    /// BR_FAILED_REPLY and `errno` as the extended error; nothing stays allocated.
    fn refused(s: &mut State, p: &Payload, check: Check, errno: Errno) {
        let before = s.procs.values().map(|p| p.area.buffers()).sum::<usize>();
        let stream = txn_stream(BC_TRANSACTION_SG, call0(TF_ACCEPT_FDS), p);
        assert_eq!(
            wr(s, SENDER, &stream, Vec::new()),
            [BR_NOOP, BR_FAILED_REPLY]
        );
        assert_eq!(
            s.stats.refusals.get(&check),
            Some(&1),
            "{:?}",
            s.stats.refusals
        );
        let ee = s.take_extended_error(SENDER).unwrap();
        assert_eq!((ee.command, ee.param), (BR_FAILED_REPLY, -(errno as i32)));
        let after = s.procs.values().map(|p| p.area.buffers()).sum::<usize>();
        assert_eq!(before, after, "the refused buffer was freed");
    }

    #[test]
    fn ptr_length_near_u64_max_is_failed_reply() {
        for length in [u64::MAX, u64::MAX - 6, 17] {
            let (mut s, _) = setup();
            let bo = ptr_obj(length, 0x1000, None);
            let (data, offsets) = objects(&[bytemuck::bytes_of(&bo)]);
            let p = Payload {
                data,
                offsets,
                sg: vec![0; 16],
                buffers_size: Some(16),
                ..Default::default()
            };
            refused(&mut s, &p, Check::PtrTooLarge, Errno::EINVAL);
        }
    }

    /// Delivers a 32-byte buffer of 0xAA to the manager and returns its area offset.
    fn deliver_marker(s: &mut State) -> BufferId {
        let p = Payload {
            data: vec![0xAA; 32],
            ..Default::default()
        };
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &p);
        wr(s, SENDER, &stream, Vec::new());
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        let got = wr(s, MGR, w.as_bytes(), Vec::new());
        assert!(got.contains(&BR_TRANSACTION), "{got:?}");
        let mgr = s.threads[&MGR].proc;
        *s.procs[&mgr].buffers.keys().next().unwrap()
    }

    fn marker_intact(s: &mut State, off: BufferId) -> bool {
        let mgr = s.threads[&MGR].proc;
        let mut b = s.procs.get_mut(&mgr).unwrap().area.buffer_mut(off).unwrap();
        (0..32).all(|i| b.read::<u8>(i) == Ok(0xAA))
    }

    #[test]
    fn ptr_child_cannot_fix_up_outside_its_parent() {
        // The parent's length wraps when rounded up unchecked; the child's fixup offset then
        // points at the buffer delivered before.
        for (parent_len, parent_offset) in [
            (u64::MAX, 0u64),
            (u64::MAX - 6, 0),
            (8, 8),
            (16, u64::MAX - 3),
        ] {
            let (mut s, _) = setup();
            let marker = deliver_marker(&mut s);
            let parent = ptr_obj(parent_len, 0x1000, None);
            let child = ptr_obj(8, 0x2000, Some((0, parent_offset)));
            let (data, offsets) =
                objects(&[bytemuck::bytes_of(&parent), bytemuck::bytes_of(&child)]);
            let p = Payload {
                data,
                offsets,
                sg: vec![0x55; 32],
                buffers_size: Some(32),
                ..Default::default()
            };
            let stream = txn_stream(BC_TRANSACTION_SG, call0(0), &p);
            assert_eq!(
                wr(&mut s, SENDER, &stream, Vec::new()),
                [BR_NOOP, BR_FAILED_REPLY]
            );
            assert!(marker_intact(&mut s, marker), "another buffer changed");
            let refused: u64 = s.stats.refusals.values().sum();
            assert_eq!(refused, 1);
            let check = *s.stats.refusals.keys().next().unwrap();
            assert!(
                [Check::PtrTooLarge, Check::NoRoomForPointer].contains(&check),
                "{check:?}"
            );
        }
    }

    #[test]
    fn fda_count_and_offset_overflow_are_failed_reply() {
        let cases = [
            (u64::MAX / 4 + 1, 0),
            (u64::MAX, 0),
            (1, u64::MAX - 3),
            (1, 16),
            (5, 0),
        ];
        for (num_fds, parent_offset) in cases {
            let (mut s, _) = setup();
            let parent = ptr_obj(16, 0x1000, None);
            let fda = fda_obj(num_fds, 0, parent_offset);
            let (data, offsets) = objects(&[bytemuck::bytes_of(&parent), bytemuck::bytes_of(&fda)]);
            let p = Payload {
                data,
                offsets,
                sg: vec![0; 16],
                buffers_size: Some(16),
                ..Default::default()
            };
            refused(&mut s, &p, Check::FdaNoRoom, Errno::EINVAL);
            assert_counts(&s);
        }
    }

    #[test]
    fn fda_misaligned_in_the_senders_memory_is_failed_reply() {
        // 4-aligned in the receiver's buffer, not at the sender's pointer: the kernel refuses.
        let (mut s, _) = setup();
        let parent = ptr_obj(16, 0x1002, None);
        let fda = fda_obj(1, 0, 0);
        let (data, offsets) = objects(&[bytemuck::bytes_of(&parent), bytemuck::bytes_of(&fda)]);
        let p = Payload {
            data,
            offsets,
            sg: vec![0; 16],
            buffers_size: Some(16),
            ..Default::default()
        };
        refused(&mut s, &p, Check::FdaUnaligned, Errno::EINVAL);
    }

    #[test]
    fn buffers_size_overflow_is_failed_reply() {
        let (mut s, _) = setup();
        let p = Payload {
            data: vec![1; 8],
            buffers_size: Some(u64::MAX - 7),
            ..Default::default()
        };
        refused(&mut s, &p, Check::SizeOverflow, Errno::EINVAL);
    }

    #[test]
    fn object_offset_past_the_data_is_failed_reply() {
        let (mut s, _) = setup();
        let p = Payload {
            data: vec![0; 24],
            offsets: vec![u64::MAX - 3],
            buffers_size: Some(0),
            ..Default::default()
        };
        refused(&mut s, &p, Check::BadObject, Errno::EINVAL);
    }

    #[test]
    fn consumed_counts_near_u64_max_do_not_overflow() {
        let (mut s, _) = setup();
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        let done = s
            .write_read(SENDER, w.as_bytes(), &rq(u64::MAX - 2, 0, 0), Vec::new())
            .unwrap();
        assert_eq!(done.errno, Errno::EFAULT as i32);
        let done = s
            .write_read(SENDER, &[], &rq(0, u64::MAX - 1, u64::MAX), Vec::new())
            .unwrap();
        assert!(done.read_consumed >= u64::MAX - 1);
    }

    #[test]
    fn extended_error_is_set_per_transaction_and_cleared_by_reading() {
        let (mut s, _) = setup();
        let ee = s.take_extended_error(SENDER).unwrap();
        assert_eq!((ee.id, ee.command, ee.param), (0, BR_OK, 0));
        // A call on a handle the sender does not hold.
        let mut tr = call0(0);
        tr.target = 7;
        let stream = txn_stream(BC_TRANSACTION, tr, &Payload::default());
        assert_eq!(
            wr(&mut s, SENDER, &stream, Vec::new()),
            [BR_NOOP, BR_FAILED_REPLY]
        );
        let ee = s.take_extended_error(SENDER).unwrap();
        assert_ne!(ee.id, 0);
        assert_eq!(
            (ee.command, ee.param),
            (BR_FAILED_REPLY, -(Errno::EINVAL as i32))
        );
        let ee = s.take_extended_error(SENDER).unwrap();
        assert_eq!(
            (ee.id, ee.command, ee.param),
            (0, BR_OK, 0),
            "reading clears"
        );
        // A call that goes through leaves {id, BR_OK, 0}.
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &Payload::default());
        assert_eq!(
            wr(&mut s, SENDER, &stream, Vec::new()),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        let ee = s.take_extended_error(SENDER).unwrap();
        assert_ne!(ee.id, 0);
        assert_eq!((ee.command, ee.param), (BR_OK, 0));
    }

    #[test]
    fn failed_reply_sets_the_callers_extended_error() {
        let (mut s, _) = setup();
        let stream = txn_stream(BC_TRANSACTION, call0(0), &Payload::default());
        wr(&mut s, SENDER, &stream, Vec::new());
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        assert!(wr(&mut s, MGR, w.as_bytes(), Vec::new()).contains(&BR_TRANSACTION));
        // A reply whose offsets size is not a multiple of 8.
        let mut stream = txn_stream(
            BC_REPLY,
            BinderTransactionData::default(),
            &Payload::default(),
        );
        // offsets_size sits at byte 40 of the transaction data (after the command).
        stream[4 + 40..4 + 48].copy_from_slice(&4u64.to_ne_bytes());
        let g_at = 4 + 64;
        stream[g_at + 16..g_at + 24].copy_from_slice(&4u64.to_ne_bytes());
        stream.extend_from_slice(&[0; 4]);
        assert_eq!(
            wr(&mut s, MGR, &stream, Vec::new()),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        let caller = s.take_extended_error(SENDER).unwrap();
        assert_eq!(
            (caller.command, caller.param),
            (BR_FAILED_REPLY, -(Errno::EINVAL as i32))
        );
        let replier = s.take_extended_error(MGR).unwrap();
        assert_eq!((replier.command, replier.param), (BR_OK, 0));
        assert_eq!(s.stats.refusals.get(&Check::OffsetsSizeUnaligned), Some(&1));
        assert_counts(&s);
    }

    fn binder_obj(ptr: u64) -> FlatBinderObject {
        FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_BINDER,
            },
            binder: ptr,
            cookie: ptr,
            ..Default::default()
        }
    }

    /// A oneway call to the manager carrying BINDER objects for `ptrs`.
    fn send_binders(s: &mut State, ptrs: &[u64]) -> Vec<u32> {
        let objs: Vec<FlatBinderObject> = ptrs.iter().map(|p| binder_obj(*p)).collect();
        let parts: Vec<&[u8]> = objs.iter().map(bytemuck::bytes_of).collect();
        let (data, offsets) = objects(&parts);
        let p = Payload {
            data,
            offsets,
            ..Default::default()
        };
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &p);
        let mut got = wr(s, SENDER, &stream, Vec::new());
        // The node handshake of new nodes is not what these tests look at.
        got.retain(|c| ![BR_INCREFS, BR_ACQUIRE].contains(c));
        got
    }

    #[test]
    fn node_cap_refuses_the_sender_only() {
        let (mut s, [sender, ..]) = setup();
        s.limits.nodes = 2;
        assert_eq!(
            send_binders(&mut s, &[0x10, 0x20]),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        assert_eq!(send_binders(&mut s, &[0x30]), [BR_NOOP, BR_FAILED_REPLY]);
        assert_eq!(s.stats.refused[Cap::Nodes as usize], 1);
        assert_eq!(
            s.take_extended_error(SENDER).unwrap().param,
            -(Errno::ENOMEM as i32)
        );
        assert_eq!(s.procs[&sender].nodes.len(), 2);
        // Known nodes still travel.
        assert_eq!(
            send_binders(&mut s, &[0x10]),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        assert!(super::super::dump::dump(&s).contains("cap nodes: 2 per process, refused 1"));
    }

    #[test]
    fn node_cap_covers_the_context_manager() {
        let mut s = State::default();
        s.limits.nodes = 0;
        let p = s.open_proc(1, 0, Area::new(4096).unwrap(), 1);
        s.open_thread(SENDER, p);
        assert_eq!(s.set_context_mgr(SENDER, None), Err(Errno::ENOMEM));
        assert_eq!(s.stats.refused[Cap::Nodes as usize], 1);
        assert_eq!(s.ctx_mgr, None);
    }

    #[test]
    fn ref_cap_refuses_with_enomem() {
        let (mut s, [_, mgr, _]) = setup();
        s.limits.refs = 1;
        assert_eq!(
            send_binders(&mut s, &[0x10]),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        assert_eq!(send_binders(&mut s, &[0x20]), [BR_NOOP, BR_FAILED_REPLY]);
        assert_eq!(s.stats.refused[Cap::Refs as usize], 1);
        assert_eq!(s.stats.refusals.get(&Check::RefCap), Some(&1));
        assert_eq!(s.procs[&mgr].refs.len(), 1);
    }

    #[test]
    fn pending_transaction_cap_refuses_the_flooding_sender_only() {
        let (mut s, [sender, ..]) = setup();
        s.limits.txns = 3;
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &Payload::default());
        for _ in 0..3 {
            assert_eq!(
                wr(&mut s, SENDER, &stream, Vec::new()),
                [BR_NOOP, BR_TRANSACTION_COMPLETE]
            );
        }
        assert_eq!(
            wr(&mut s, SENDER, &stream, Vec::new()),
            [BR_NOOP, BR_FAILED_REPLY]
        );
        assert_eq!(
            s.take_extended_error(SENDER).unwrap().param,
            -(Errno::ENOSPC as i32)
        );
        assert_eq!(s.stats.refused[Cap::Txns as usize], 1);
        // Another process still gets through.
        assert_eq!(
            wr(&mut s, THIRD, &stream, Vec::new()),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
        // Once the manager reads them, the sender may send again.
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        for _ in 0..4 {
            wr(&mut s, MGR, w.as_bytes(), Vec::new());
            let bufs: Vec<BufferId> = s.procs[&s.threads[&MGR].proc]
                .buffers
                .keys()
                .copied()
                .collect();
            let mut f = CommandWriter::new();
            for b in bufs {
                f.cmd_with(BC_FREE_BUFFER, &(MGR_BASE * 2 + b.0));
            }
            wr(&mut s, MGR, f.as_bytes(), Vec::new());
        }
        assert_eq!(s.procs[&sender].txns_out, 0);
        assert_eq!(
            wr(&mut s, SENDER, &stream, Vec::new()),
            [BR_NOOP, BR_TRANSACTION_COMPLETE]
        );
    }

    fn death_cmd(cmd: u32, handle: u32, cookie: u64) -> Vec<u8> {
        let mut w = CommandWriter::new();
        w.cmd_with(cmd, &BinderHandleCookie { handle, cookie });
        w.as_bytes().to_vec()
    }

    #[test]
    fn death_cap_is_br_error_and_counts_queued_clears() {
        let (mut s, [sender, ..]) = setup();
        s.limits.deaths = 1;
        // A ref to the manager (handle 0).
        let mut w = CommandWriter::new();
        w.cmd_with(BC_ACQUIRE, &0u32);
        wr(&mut s, SENDER, w.as_bytes(), Vec::new());
        let req = death_cmd(BC_REQUEST_DEATH_NOTIFICATION, 0, 1);
        let clear = death_cmd(BC_CLEAR_DEATH_NOTIFICATION, 0, 1);
        // Request and clear without reading: the clear's notice is still held.
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        let first = [w.as_bytes(), &req, &clear].concat();
        let done = s
            .write_read(SENDER, &first, &rq(0, 0, 0), Vec::new())
            .unwrap();
        assert_eq!(done.errno, 0);
        assert_eq!(s.procs[&sender].deaths, 1);
        let got = wr(&mut s, SENDER, &req, Vec::new());
        assert!(got.contains(&BR_ERROR), "{got:?}");
        assert_eq!(s.stats.refused[Cap::Deaths as usize], 1);
        // Reading the clear's answer (in the same read) frees the slot.
        assert!(got.contains(&BR_CLEAR_DEATH_NOTIFICATION_DONE), "{got:?}");
        assert_eq!(s.procs[&sender].deaths, 0);
        let done = s
            .write_read(SENDER, &req, &rq(0, 0, 0), Vec::new())
            .unwrap();
        assert_eq!(done.errno, 0);
        assert_eq!(s.procs[&sender].deaths, 1, "a new request is accepted");
        assert_counts(&s);
    }

    #[test]
    fn ref_counts_do_not_overflow() {
        let (mut s, [sender, ..]) = setup();
        let mut w = CommandWriter::new();
        w.cmd_with(BC_ACQUIRE, &0u32).cmd_with(BC_INCREFS, &0u32);
        wr(&mut s, SENDER, w.as_bytes(), Vec::new());
        let r = s
            .procs
            .get_mut(&sender)
            .unwrap()
            .refs
            .get_mut(&Handle(0))
            .unwrap();
        (r.strong, r.weak) = (u32::MAX, u32::MAX);
        let errors = s.stats.user_errors;
        let done = s.write_read(SENDER, w.as_bytes(), &rq(0, 0, 0), Vec::new());
        assert_eq!(done.unwrap().errno, 0);
        let r = s.procs[&sender].refs[&Handle(0)];
        assert_eq!((r.strong, r.weak), (u32::MAX, u32::MAX));
        assert_eq!(s.stats.user_errors, errors + 2);
    }

    #[test]
    fn unregistered_reader_takes_process_work_and_is_a_user_error() {
        // Linux 31643d84b8c3: an idle thread that never entered the looper still gets
        // process work (the kernel logs it).
        let (mut s, _) = setup();
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &Payload::default());
        wr(&mut s, SENDER, &stream, Vec::new());
        let errors = s.stats.user_errors;
        let got = wr(&mut s, MGR, &[], Vec::new());
        assert!(got.contains(&BR_TRANSACTION), "{got:?}");
        assert_eq!(s.stats.user_errors, errors + 1);
    }

    /// All of `conn`'s delivered buffers, freed.
    fn free_all(s: &mut State, conn: ConnId) -> Vec<u32> {
        let proc = s.threads[&conn].proc;
        let base = s.procs[&proc].area.client_base;
        let bufs: Vec<BufferId> = s.procs[&proc].buffers.keys().copied().collect();
        let mut f = CommandWriter::new();
        for b in bufs {
            f.cmd_with(BC_FREE_BUFFER, &(base + b.0));
        }
        wr(s, conn, f.as_bytes(), Vec::new())
    }

    #[test]
    fn a_held_buffer_keeps_its_target_node_strong() {
        let (mut s, _) = setup();
        // The third process hands node 0x77 to the manager and finishes the handshake.
        let obj = binder_obj(0x77);
        let (data, offsets) = objects(&[bytemuck::bytes_of(&obj)]);
        let p = Payload {
            data,
            offsets,
            ..Default::default()
        };
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &p);
        assert!(wr(&mut s, THIRD, &stream, Vec::new()).contains(&BR_ACQUIRE));
        let pc = BinderPtrCookie {
            ptr: 0x77,
            cookie: 0x77,
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_INCREFS_DONE, &pc)
            .cmd_with(BC_ACQUIRE_DONE, &pc);
        s.write_read(THIRD, w.as_bytes(), &rq(0, 0, 0), Vec::new());
        // The manager takes its own strong ref on handle 1, frees the buffer, calls the node.
        assert!(wr(&mut s, MGR, &[], Vec::new()).contains(&BR_TRANSACTION));
        let mut w = CommandWriter::new();
        w.cmd_with(BC_ACQUIRE, &1u32);
        wr(&mut s, MGR, w.as_bytes(), Vec::new());
        free_all(&mut s, MGR);
        let mut tr = call0(TF_ONE_WAY);
        tr.target = 1;
        let call = txn_stream(BC_TRANSACTION, tr, &Payload::default());
        wr(&mut s, MGR, &call, Vec::new());
        assert!(wr(&mut s, THIRD, &[], Vec::new()).contains(&BR_TRANSACTION));
        // The last handle goes while the owner holds the call's buffer: no BR_RELEASE yet.
        let mut w = CommandWriter::new();
        w.cmd_with(BC_RELEASE, &1u32);
        wr(&mut s, MGR, w.as_bytes(), Vec::new());
        let got = wr(&mut s, THIRD, &[], Vec::new());
        assert!(!got.contains(&BR_RELEASE), "{got:?}");
        // Freeing the buffer lets go.
        let got = free_all(&mut s, THIRD);
        let got = if got.contains(&BR_RELEASE) {
            got
        } else {
            wr(&mut s, THIRD, &[], Vec::new())
        };
        assert!(got.contains(&BR_RELEASE), "{got:?}");
        assert_counts(&s);
    }

    /// A fourth process of uid 7 with one thread (connection 40), mapped.
    fn other_uid_proc(s: &mut State) -> ProcId {
        let p = s.open_proc(400, 7, Area::new(64 * 1024).unwrap(), 4);
        let proc = s.procs.get_mut(&p).unwrap();
        proc.mapped = true;
        proc.area.client_base = MGR_BASE * 4;
        s.open_thread(ThreadId(40), p);
        p
    }

    #[test]
    fn uid_txn_cap_sums_the_uids_processes_and_spares_other_uids() {
        let (mut s, [_, _, third]) = setup();
        s.limits.per_uid.txns = 3;
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &Payload::default());
        let ok = [BR_NOOP, BR_TRANSACTION_COMPLETE];
        assert_eq!(wr(&mut s, SENDER, &stream, Vec::new()), ok);
        assert_eq!(wr(&mut s, SENDER, &stream, Vec::new()), ok);
        assert_eq!(wr(&mut s, THIRD, &stream, Vec::new()), ok);
        // The third process holds one, under its own cap of 1024, but uid 0 holds three.
        let refused = [BR_NOOP, BR_FAILED_REPLY];
        assert_eq!(wr(&mut s, THIRD, &stream, Vec::new()), refused);
        assert_eq!(
            s.take_extended_error(THIRD).unwrap().param,
            -(Errno::ENOSPC as i32)
        );
        assert_eq!(s.stats.refused_uid[Cap::Txns as usize], 1);
        assert_eq!(s.stats.refused[Cap::Txns as usize], 0);
        other_uid_proc(&mut s);
        assert_eq!(
            wr(&mut s, ThreadId(40), &stream, Vec::new()),
            ok,
            "uid 7 has its own share"
        );
        let dump = super::super::dump::dump(&s);
        assert!(
            dump.contains("cap transactions: 3 per uid, refused 1"),
            "{dump}"
        );
        assert!(
            dump.contains("uid 0 holds: nodes 1 refs 0 transactions 3"),
            "{dump}"
        );
        assert!(
            dump.contains("uid 7 holds: nodes 0 refs 0 transactions 1"),
            "{dump}"
        );
        assert_counts(&s);
        // A process that goes takes its share with it.
        s.release_proc(third);
        assert_eq!(s.uid_usage.get(0, Cap::Txns), 2);
        assert_eq!(wr(&mut s, SENDER, &stream, Vec::new()), ok);
        // (The gone sender's queued record is no one's now, so only the uid sums hold.)
        assert!(s.uid_usage_consistent());
    }

    #[test]
    fn uid_node_and_ref_caps_refuse_as_the_process_caps_do() {
        let (mut s, _) = setup();
        // uid 0 owns the manager's node; one more node and one ref fit.
        s.limits.per_uid.nodes = 2;
        s.limits.per_uid.refs = 1;
        let ok = [BR_NOOP, BR_TRANSACTION_COMPLETE];
        assert_eq!(send_binders(&mut s, &[0x10]), ok);
        assert_eq!(send_binders(&mut s, &[0x20]), [BR_NOOP, BR_FAILED_REPLY]);
        assert_eq!(s.stats.refused_uid[Cap::Nodes as usize], 1);
        assert_eq!(
            s.take_extended_error(SENDER).unwrap().param,
            -(Errno::ENOMEM as i32)
        );
        s.limits.per_uid.nodes = 3;
        assert_eq!(send_binders(&mut s, &[0x20]), [BR_NOOP, BR_FAILED_REPLY]);
        assert_eq!(s.stats.refused_uid[Cap::Refs as usize], 1);
        assert_eq!(s.stats.refusals.get(&Check::RefCap), Some(&1));
        assert_eq!(s.stats.refused[Cap::Refs as usize], 0);
        assert_counts(&s);
    }

    #[test]
    fn uid_death_and_thread_caps() {
        let (mut s, [sender, ..]) = setup();
        s.limits.per_uid.threads = 3;
        assert_eq!(s.check_thread_cap(sender), Err(Errno::ENOMEM));
        assert_eq!(s.stats.refused_uid[Cap::Threads as usize], 1);
        let other = other_uid_proc(&mut s);
        assert_eq!(s.check_thread_cap(other), Ok(()));
        s.limits.per_uid.deaths = 1;
        let mut w = CommandWriter::new();
        w.cmd_with(BC_ACQUIRE, &0u32);
        wr(&mut s, SENDER, w.as_bytes(), Vec::new());
        wr(&mut s, THIRD, w.as_bytes(), Vec::new());
        let req = death_cmd(BC_REQUEST_DEATH_NOTIFICATION, 0, 1);
        assert!(!wr(&mut s, SENDER, &req, Vec::new()).contains(&BR_ERROR));
        assert!(wr(&mut s, THIRD, &req, Vec::new()).contains(&BR_ERROR));
        assert_eq!(s.stats.refused_uid[Cap::Deaths as usize], 1);
        assert_eq!(s.stats.refused[Cap::Deaths as usize], 0);
        assert_counts(&s);
    }

    #[test]
    fn thread_cap_is_enomem() {
        let (mut s, [sender, ..]) = setup();
        s.limits.threads = 2;
        assert_eq!(s.check_thread_cap(sender), Ok(()));
        s.open_thread(ThreadId(10), sender);
        assert_eq!(s.check_thread_cap(sender), Err(Errno::ENOMEM));
        assert_eq!(s.stats.refused[Cap::Threads as usize], 1);
    }

    #[test]
    fn death_on_a_dead_node_waits_for_the_reply() {
        let (mut s, [_, _, third]) = setup();
        // The third process hands its node to the manager, then dies.
        let obj = binder_obj(0x77);
        let (data, offsets) = objects(&[bytemuck::bytes_of(&obj)]);
        let p = Payload {
            data,
            offsets,
            ..Default::default()
        };
        let stream = txn_stream(BC_TRANSACTION, call0(TF_ONE_WAY), &p);
        wr(&mut s, THIRD, &stream, Vec::new());
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        assert!(wr(&mut s, MGR, w.as_bytes(), Vec::new()).contains(&BR_TRANSACTION));
        s.release_proc(third);
        // A sync call reaches the manager's looper thread.
        let call = txn_stream(BC_TRANSACTION, call0(0), &Payload::default());
        wr(&mut s, SENDER, &call, Vec::new());
        assert!(wr(&mut s, MGR, &[], Vec::new()).contains(&BR_TRANSACTION));
        // With the call on its stack, its death request on the dead node is not answered.
        let req = death_cmd(BC_REQUEST_DEATH_NOTIFICATION, 1, 9);
        let done = s.write_read(MGR, &req, &rq(0, 0, 512), Vec::new()).unwrap();
        assert!(
            !codes(&done).contains(&BR_DEAD_BINDER),
            "{:?}",
            codes(&done)
        );
        // After the reply it is.
        let reply = txn_stream(
            BC_REPLY,
            BinderTransactionData::default(),
            &Payload::default(),
        );
        let got = wr(&mut s, MGR, &reply, Vec::new());
        assert!(got.contains(&BR_TRANSACTION_COMPLETE), "{got:?}");
        let got = if got.contains(&BR_DEAD_BINDER) {
            got
        } else {
            wr(&mut s, MGR, &[], Vec::new())
        };
        assert!(got.contains(&BR_DEAD_BINDER), "{got:?}");
        assert_counts(&s);
    }

    #[test]
    fn buffer_view_stays_inside_its_buffer() {
        let mut a = Area::new(64 * 1024).unwrap();
        let x = a.alloc(16, false).unwrap();
        let y = a.alloc(16, false).unwrap();
        let mut b = a.buffer_mut(x).unwrap();
        assert_eq!(b.write(8, &1u64), Ok(()));
        assert_eq!(b.write(9, &1u64), Err(Errno::EFAULT));
        assert_eq!(b.write(u64::MAX - 3, &1u64), Err(Errno::EFAULT));
        assert_eq!(b.copy_into(16, &[1]), Err(Errno::EFAULT));
        assert_eq!(b.read::<u64>(16), Err(Errno::EFAULT));
        let mut c = a.buffer_mut(y).unwrap();
        assert_eq!(c.read::<u64>(0), Ok(0), "the next buffer is untouched");
        assert!(
            a.buffer_mut(BufferId(x.0 + 8)).is_none(),
            "only allocated buffers have views"
        );
    }
}
