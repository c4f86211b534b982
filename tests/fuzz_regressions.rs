//! Inputs found by the fuzz targets (fuzz/, `scripts/fuzz-smoke.sh`), replayed through the
//! same public API in the normal test suite: each must be refused with an error, never a
//! panic, and leave the shim (or parcel) working.
//!
//! The shim cases use `shim::fuzzing::Harness` (the shim without sockets, as the
//! `shim_frames` target does) or a real `ShimDevice` on an embedded `Driver` (as
//! `bc_stream` does); the parcel cases the parcel API (as `parcel_read`).

use bittube::binder_ipc::device::{Device, ShimDevice, WriteRead};
use bittube::binder_ipc::parcel::{BinderObject, Parcel};
use bittube::binder_ipc::protocol::wire::*;
use bittube::binder_ipc::shim::fuzzing::{frame_bytes, Answer, ConnHandle, Harness};
use bittube::binder_ipc::shim::Driver;
use bittube::binder_ipc::uapi::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

// ---------------------------------------------------------------------------------------------
// The shim without sockets

/// A harness with a context manager (pid 4001) and a client (pid 4002), both with a thread.
struct Two {
    h: Harness,
    mgr: ConnHandle,
    client: ConnHandle,
}

fn open_proc(h: &mut Harness, pid: i32) -> ConnHandle {
    let proc = h.connect(pid, 0).unwrap();
    let req = OpenProc {
        version: WIRE_VERSION,
        reserved: 0,
        area_size: 256 * 1024,
    };
    let answers = h.feed(
        proc,
        &frame_bytes(K_OPEN_PROC, bytemuck::bytes_of(&req), 0),
        Vec::new(),
    );
    let ok: OpenProcOk = bytemuck::pod_read_unaligned(&answers[0].body[..24]);
    assert_eq!(ok.errno, 0);
    h.feed(
        proc,
        &frame_bytes(K_MAP_DONE, &0x7000_0000u64.to_ne_bytes(), 0),
        Vec::new(),
    );
    let thread = h.connect(pid, 0).unwrap();
    let answers = h.feed(
        thread,
        &frame_bytes(K_OPEN_THREAD, &ok.token.to_ne_bytes(), 0),
        Vec::new(),
    );
    assert_eq!(answers[0].header.kind, K_RESULT);
    thread
}

impl Two {
    fn new() -> Two {
        let mut h = Harness::new();
        let mgr = open_proc(&mut h, 4001);
        let mut req = Ioctl {
            cmd: BINDER_SET_CONTEXT_MGR,
            ..Default::default()
        };
        req.arg[..4].copy_from_slice(&0u32.to_ne_bytes());
        h.feed(
            mgr,
            &frame_bytes(K_IOCTL, bytemuck::bytes_of(&req), 0),
            Vec::new(),
        );
        let client = open_proc(&mut h, 4002);
        Two { h, mgr, client }
    }

    /// A K_WRITE_READ on `conn` with `stream` (gathered records included); the shim's answers.
    fn feed_write_read(&mut self, conn: ConnHandle, stream: &[u8], user_len: usize) -> Vec<Answer> {
        let req = WriteReadReq {
            write_consumed: 0,
            write_size: user_len as u64,
            read_consumed: 0,
            read_size: 4096,
            nonblock: 1,
            reserved: 0,
        };
        let mut body = bytemuck::bytes_of(&req).to_vec();
        body.extend_from_slice(stream);
        self.h
            .feed(conn, &frame_bytes(K_WRITE_READ, &body, 0), Vec::new())
    }

    /// [`Two::feed_write_read`]; the BR_ commands returned to `conn`.
    fn write_read(&mut self, conn: ConnHandle, stream: &[u8], user_len: usize) -> Vec<u32> {
        let answers = self.feed_write_read(conn, stream, user_len);
        returned(&answers, conn)
    }

    /// [`Two::feed_write_read`]; the BR_TRANSACTIONs returned to `conn`.
    fn transactions(
        &mut self,
        conn: ConnHandle,
        stream: &[u8],
        user_len: usize,
    ) -> Vec<BinderTransactionData> {
        let answers = self.feed_write_read(conn, stream, user_len);
        let mut out = Vec::new();
        each_return(&answers, conn, |cmd, payload| {
            if cmd == BR_TRANSACTION {
                out.push(bytemuck::pod_read_unaligned(
                    &payload[..std::mem::size_of::<BinderTransactionData>()],
                ));
            }
        });
        out
    }

    /// The shim still serves: the client's plain call reaches the manager. (The client's
    /// BR_TRANSACTION_COMPLETE of a two-way call is deferred work, as in the kernel: a
    /// non-blocking read returns it only with the reply, or on a thread's first read.)
    fn still_serves(&mut self) {
        let (stream, len) = transaction_sg(&[], &[], &[], 0);
        self.write_read(self.client, &stream, len);
        // A thread takes its process's work once it is a looper, as in the kernel.
        let enter = BC_ENTER_LOOPER.to_ne_bytes();
        let brs = self.write_read(self.mgr, &enter, enter.len());
        assert!(brs.contains(&BR_TRANSACTION), "{brs:x?}\n{}", self.h.dump());
    }
}

fn commands(bytes: &[u8]) -> Vec<u32> {
    let mut cmds = Vec::new();
    let mut r = CommandReader::new(bytes);
    while let Some((cmd, _)) = r.next_command() {
        cmds.push(cmd);
    }
    cmds
}

/// Calls `f` with each BR_ command (and its payload) that the K_WRITE_READ_RET answers to
/// `conn` return.
fn each_return(answers: &[Answer], conn: ConnHandle, mut f: impl FnMut(u32, &[u8])) {
    for a in answers.iter().filter(|a| a.conn == conn) {
        if a.header.kind != K_WRITE_READ_RET {
            continue;
        }
        let ret: WriteReadRet = bytemuck::pod_read_unaligned(&a.body[..32]);
        let mut r = CommandReader::new(&a.body[32..32 + ret.read_len as usize]);
        while let Some((cmd, payload)) = r.next_command() {
            f(cmd, payload);
        }
    }
}

/// The BR_ commands that the answers to `conn` return.
fn returned(answers: &[Answer], conn: ConnHandle) -> Vec<u32> {
    let mut cmds = Vec::new();
    each_return(answers, conn, |cmd, _| cmds.push(cmd));
    cmds
}

/// A BC_TRANSACTION_SG to handle 0 with `data`, `offsets` and `sg` bytes, as ShimDevice
/// sends it (the gathered record after the command); returns the stream and the length of
/// its user part.
fn transaction_sg(data: &[u8], offsets: &[u64], sg: &[u8], buffers_size: u64) -> (Vec<u8>, usize) {
    let offs: Vec<u8> = offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
    let tr = BinderTransactionDataSg {
        transaction_data: BinderTransactionData {
            data_size: data.len() as u64,
            offsets_size: offs.len() as u64,
            data_buffer: 0x1000,
            data_offsets: 0x2000,
            ..Default::default()
        },
        buffers_size,
    };
    let mut s = BC_TRANSACTION_SG.to_ne_bytes().to_vec();
    s.extend_from_slice(bytemuck::bytes_of(&tr));
    let user_len = s.len();
    let g = Gathered {
        status: 0,
        nfds: 0,
        data_len: data.len() as u64,
        offsets_len: offs.len() as u64,
        sg_len: sg.len() as u64,
    };
    s.extend_from_slice(bytemuck::bytes_of(&g));
    s.extend_from_slice(data);
    s.extend_from_slice(&offs);
    s.extend_from_slice(sg);
    (s, user_len)
}

fn ptr(length: u64, flags: u32, parent: u64, parent_offset: u64) -> Vec<u8> {
    bytemuck::bytes_of(&BinderBufferObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_PTR,
        },
        flags,
        buffer: 0x3000,
        length,
        parent,
        parent_offset,
    })
    .to_vec()
}

fn fda(num_fds: u64, parent: u64, parent_offset: u64) -> Vec<u8> {
    bytemuck::bytes_of(&BinderFdArrayObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_FDA,
        },
        pad: 0,
        num_fds,
        parent,
        parent_offset,
    })
    .to_vec()
}

/// Runs `case` on a fresh two-process shim: the client's transaction must fail (any BR_
/// error, no panic) and the shim must still serve a plain call afterwards.
fn refused(objects: &[Vec<u8>], sg: &[u8], buffers_size: u64) {
    let mut two = Two::new();
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for o in objects {
        offsets.push(data.len() as u64);
        data.extend_from_slice(o);
    }
    let (stream, len) = transaction_sg(&data, &offsets, sg, buffers_size);
    let brs = catch_unwind(AssertUnwindSafe(|| {
        two.write_read(two.client, &stream, len)
    }))
    .expect("the shim panicked on a client's transaction");
    assert!(
        brs.contains(&BR_FAILED_REPLY) || brs.contains(&BR_DEAD_REPLY),
        "not refused: {brs:x?}"
    );
    two.still_serves();
}

/// Issue 10 item 1: a PTR whose `length` is near `u64::MAX` (align8 overflows).
#[test]
fn shim_ptr_length_near_u64_max() {
    refused(&[ptr(u64::MAX - 3, 0, 0, 0)], &[0; 8], 8);
}

/// A PTR child whose parent offset overflows when added to the pointer size.
#[test]
fn shim_ptr_child_parent_offset_overflow() {
    refused(
        &[
            ptr(16, 0, 0, 0),
            ptr(8, BINDER_BUFFER_FLAG_HAS_PARENT, 0, u64::MAX - 3),
        ],
        &[0; 24],
        24,
    );
}

/// An FDA whose `num_fds * 4` overflows.
#[test]
fn shim_fda_num_fds_overflow() {
    refused(&[ptr(16, 0, 0, 0), fda(1 << 62, 0, 0)], &[0; 16], 16);
}

/// An FDA whose `parent_offset` overflows when the array's size is added.
#[test]
fn shim_fda_parent_offset_overflow() {
    refused(&[ptr(16, 0, 0, 0), fda(1, 0, u64::MAX - 1)], &[0; 16], 16);
}

// ---------------------------------------------------------------------------------------------
// The client side: ShimDevice gathering a transaction

/// Sends `objects` (PTR `buffer` fields already naming live memory) in one BC_TRANSACTION_SG
/// from a fresh ShimDevice: the call must fail cleanly (an errno or a BR_ error), not panic,
/// and the device must still answer afterwards.
fn device_refuses(objects: &[Vec<u8>], buffers_size: u64) {
    let driver = Driver::start().unwrap();
    let dev = ShimDevice::open(driver.socket_path()).unwrap();
    dev.set_nonblocking(true);
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for o in objects {
        offsets.push(data.len() as u64);
        data.extend_from_slice(o);
    }
    let tr = BinderTransactionDataSg {
        transaction_data: BinderTransactionData {
            data_size: data.len() as u64,
            offsets_size: (offsets.len() * 8) as u64,
            data_buffer: data.as_ptr() as u64,
            data_offsets: offsets.as_ptr() as u64,
            ..Default::default()
        },
        buffers_size,
    };
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION_SG, &tr);
    let mut read = [0u8; 256];
    let (r, filled) = catch_unwind(AssertUnwindSafe(|| {
        let mut wr = WriteRead::new(w.as_bytes(), &mut read);
        let r = dev.write_read(&mut wr);
        (r, wr.read_consumed)
    }))
    .expect("ShimDevice panicked gathering the transaction");
    // No context manager here (handle 0 is BR_DEAD_REPLY): these cases are about the
    // client's gather, which runs before the shim looks at the target; the shim's own checks
    // of the same objects, with a reachable target, are the `shim_*` tests above.
    let brs = commands(&read[..filled]);
    assert!(
        r.is_err() || brs.contains(&BR_FAILED_REPLY) || brs.contains(&BR_DEAD_REPLY),
        "not refused: {r:?} {brs:x?}"
    );
    assert_eq!(dev.version().unwrap(), 8, "the device still works");
}

/// A PTR naming `buf` with `length`.
fn ptr_at(buf: &[u8], length: u64) -> Vec<u8> {
    bytemuck::bytes_of(&BinderBufferObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_PTR,
        },
        flags: 0,
        buffer: buf.as_ptr() as u64,
        length,
        parent: 0,
        parent_offset: 0,
    })
    .to_vec()
}

/// bc_stream crash-e672045f (issue 10 item 1 on the client side): ShimDevice's gather pads a
/// PTR's length to 8 (`wire::align8`, device/shim.rs) before any check; a length near
/// `u64::MAX` overflows.
#[test]
fn device_gather_ptr_length_near_u64_max() {
    let buf = [0u8; 16];
    device_refuses(&[ptr_at(&buf, u64::MAX - 3)], 16);
}

/// ShimDevice's gather adds an FDA's `parent_offset` to the parent's start unchecked
/// (device/shim.rs, the `Object::Fda` arm).
#[test]
fn device_gather_fda_parent_offset_overflow() {
    let buf = [0u8; 16];
    device_refuses(&[ptr_at(&buf, 16), fda(2, 0, u64::MAX - 1)], 16);
}

/// bc_stream (fuzz/regressions/bc_stream/manager-oneway-status-code-never-freed): the
/// harness's context manager did not free the buffer of a transaction that carried
/// TF_STATUS_CODE with no data (it took it for a bufferless status), so that oneway
/// transaction stayed the node's one async in flight, every later oneway call to the
/// manager queued behind it for good and their fds piled up in the shim ("fds grow" after
/// ~27k inputs). The shim's side of the contract, which the harness now follows: such a
/// oneway transaction arrives with a buffer, the next oneway to the node waits until it is
/// freed, and freeing it delivers the next.
#[test]
fn oneway_with_status_code_has_a_buffer_that_holds_the_node_until_freed() {
    let mut two = Two::new();
    let oneway = |two: &mut Two| {
        let (mut stream, len) = transaction_sg(&[], &[], &[], 0);
        // transaction_data.flags: after the command word, target (8), cookie (8), code (4).
        stream[24..28].copy_from_slice(&(TF_ONE_WAY | TF_STATUS_CODE).to_ne_bytes());
        two.write_read(two.client, &stream, len);
    };
    oneway(&mut two);
    oneway(&mut two);
    let enter = BC_ENTER_LOOPER.to_ne_bytes();
    let first = two.transactions(two.mgr, &enter, enter.len());
    assert_eq!(first.len(), 1, "{}", two.h.dump());
    assert_ne!(first[0].flags & TF_STATUS_CODE, 0);
    assert_eq!(first[0].data_size, 0);
    let held = two.transactions(two.mgr, &[], 0);
    assert!(
        held.is_empty(),
        "a second async ran before the first was freed"
    );
    let mut free = BC_FREE_BUFFER.to_ne_bytes().to_vec();
    free.extend_from_slice(&first[0].data_buffer.to_ne_bytes());
    let next = two.transactions(two.mgr, &free, free.len());
    assert_eq!(
        next.len(),
        1,
        "freeing the buffer did not release the next async"
    );
    two.still_serves();
}

// ---------------------------------------------------------------------------------------------
// Parcels

/// parcel_read: `write_binder` of a local binder whose pointer word is 0 but cookie is not
/// writes an object (unlisted, like a null binder, but with the SYSTEM stability) that the
/// parcel's own reader then refuses. Writing it must fail, or reading it back must give it.
#[test]
fn parcel_local_binder_with_null_pointer_round_trips_or_is_refused() {
    for (ptr, cookie) in [(0u64, 0x1234u64), (0, 0)] {
        let obj = BinderObject::local(ptr, cookie);
        let mut p = Parcel::new();
        if p.write_binder(obj).is_err() {
            continue;
        }
        p.set_data_position(0);
        let back = p.read_binder();
        let expected = if cookie == 0 { None } else { Some(obj) };
        assert!(
            matches!(&back, Ok(b) if *b == expected),
            "write_binder({obj:?}) succeeded but reads back as {back:?}"
        );
    }
}

/// parcel_read (fuzz/regressions/parcel_read/exception-code-noted-appops-header):
/// `write_exception` with code -127 (`EX_HAS_NOTED_APPOPS_REPLY_HEADER`) or -128
/// (`EX_HAS_REPLY_HEADER`) wrote the marker as an ordinary exception (code, message, empty
/// stack-trace header); `read_exception` then takes the marker for a reply header, skips the
/// message as that header's size and fails (`NegativeLength` for the fuzzer's message) or
/// reads no exception at all. Writing a marker must fail, or reading it back must give it.
#[test]
fn parcel_exception_with_a_reply_header_code_round_trips_or_is_refused() {
    use bittube::binder_ipc::parcel::{
        AidlException, ParcelError, EX_HAS_NOTED_APPOPS_REPLY_HEADER, EX_HAS_REPLY_HEADER,
    };
    // The fuzzer's message (as the regression file decodes), then a plain one.
    for message in ["\u{fffd}?\u{c}\u{fffd}\u{fffd}\u{fffd}", "m"] {
        for code in [EX_HAS_NOTED_APPOPS_REPLY_HEADER, EX_HAS_REPLY_HEADER] {
            let ex = AidlException {
                code,
                message: message.to_owned(),
                service_specific: None,
            };
            let mut p = Parcel::new();
            let written = catch_unwind(AssertUnwindSafe(|| p.write_exception(&ex)));
            let Ok(written) = written else {
                panic!("write_exception({ex:?}) panicked");
            };
            if written.is_err() {
                assert_eq!(
                    p.data_position(),
                    0,
                    "a refused exception moved the position"
                );
                continue;
            }
            p.set_data_position(0);
            let back = catch_unwind(AssertUnwindSafe(|| p.read_exception()))
                .unwrap_or_else(|_| panic!("read_exception after {ex:?} panicked"));
            assert!(
                matches!(&back, Err(ParcelError::Exception(e)) if *e == ex),
                "write_exception({ex:?}) succeeded but reads back as {back:?}"
            );
        }
    }
}

/// The helpers themselves: a plain call goes through on a fresh harness.
#[test]
fn harness_plain_call_reaches_the_manager() {
    Two::new().still_serves();
}

/// An fd of this process at a number far above what the other tests of this binary open, so
/// that "closed" / "still open" checks cannot see another thread's fd under the same number.
fn high_fd(min: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let null = std::fs::File::open("/dev/null").unwrap();
    let fd = nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min)).unwrap();
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

fn fd_is_open(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETFD only looks the number up; it fails cleanly on a closed one.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// parcel_read (fuzz/regressions/parcel_read/received-overlapping-fd-objects, and its
/// hand-made minimum `-min`): a received parcel whose offsets list FD objects at 12 and at 4
/// (24 bytes each, so they overlap), in descending order, some listed more than once. The
/// target installed an fd for 12 (at 20) and then one for 4 (at 12, over 12's type word), so
/// the data handed over names only the second; it took the first still open for a leak of the
/// parcel. The parcel owns exactly the fds its data names (`received_fds`): it must refuse
/// the offsets (as the kernel refuses them from a sender, `off_min`), close every fd it was
/// handed once, run release once, and leave the installer's other fd alone.
#[test]
fn parcel_received_with_overlapping_fd_objects_is_refused_and_closes_exactly_its_fds() {
    use bittube::binder_ipc::parcel::{received_fds, ParcelError};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let word = |data: &mut [u8], at: usize, v: u32| {
        data[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    };
    for offsets in [&[12u64, 4][..], &[12, 0, 0, 4, 0, 12, 4]] {
        let mut data = vec![0u8; 36];
        word(&mut data, 4, BINDER_TYPE_FD);
        word(&mut data, 12, BINDER_TYPE_FD);
        // Installed as the target did, each FD object once in listed order: 12's fd at 20,
        // then 4's at 12, which turns 12 into an object of another type.
        let first = high_fd(700);
        word(&mut data, 20, first.as_raw_fd() as u32);
        let second = high_fd(800);
        word(&mut data, 12, second.as_raw_fd() as u32);
        assert_eq!(received_fds(&data, offsets), vec![second.as_raw_fd()]);
        let released = Arc::new(AtomicUsize::new(0));
        let counter = released.clone();
        let release = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let handed = second.into_raw_fd();
        // SAFETY: the one fd the data names as an FD object (`received_fds`) is `handed`,
        // created above and given up for this call.
        let r = unsafe { Parcel::from_received(&data, offsets, Some(release)) };
        // Refused: 12 is no known object type any more (and 4 lies below it).
        assert!(
            matches!(r, Err(ParcelError::UnknownObjectType { offset: 12, .. })),
            "{offsets:?}: {r:?}"
        );
        assert_eq!(released.load(Ordering::SeqCst), 1, "release runs once");
        assert!(!fd_is_open(handed), "the fd the parcel was handed leaked");
        // Not the parcel's: still open; this test closes it.
        assert!(
            fd_is_open(first.as_raw_fd()),
            "the parcel closed an fd not its own"
        );
        drop(first);
    }
}

/// The same FD objects without overlap but listed in descending order (28, then 4): refused
/// as well, and both fds (both named) closed, each once.
#[test]
fn parcel_received_with_descending_fd_objects_is_refused_and_closes_both() {
    use bittube::binder_ipc::parcel::{received_fds, ParcelError};
    use std::os::fd::IntoRawFd;
    let mut data = vec![0u8; 52];
    let a = high_fd(900).into_raw_fd();
    let b = high_fd(950).into_raw_fd();
    for (at, fd) in [(4usize, a), (28, b)] {
        data[at..at + 4].copy_from_slice(&BINDER_TYPE_FD.to_ne_bytes());
        data[at + 8..at + 12].copy_from_slice(&fd.to_ne_bytes());
    }
    let offsets = [28u64, 4, 28];
    assert_eq!(received_fds(&data, &offsets), vec![b, a]);
    // SAFETY: `a` and `b`, the fds the data names, were created above and given up here.
    let r = unsafe { Parcel::from_received(&data, &offsets, None) };
    assert!(
        matches!(r, Err(ParcelError::BadOffset { index: 1, .. })),
        "{r:?}"
    );
    assert!(!fd_is_open(a) && !fd_is_open(b), "a named fd leaked");
}
