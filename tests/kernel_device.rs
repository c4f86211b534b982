//! `KernelDevice` against the Linux kernel's binder driver.
//!
//! These tests need a kernel binder device (`/dev/binderfs/binder`, `/dev/binder`, or the
//! path in `BITTUBE_KERNEL_DEVICE`). `scripts/kernel-binder-test.sh` boots a Debian kernel
//! with the binder module under qemu and runs them there with `BITTUBE_REQUIRE_KERNEL=1`, so a
//! missing device fails them. Elsewhere each test says why it did not run and returns.
//!
//! Cross-process tests re-execute this test binary with `BITTUBE_CHILD=<role>`: the child runs
//! the same test function, which acts out its role and returns.
//!
//! Every test asserts the exact BR_ sequences the kernel returns, so they double as the
//! record of kernel behaviour the driver shim must match. Observed on Debian's 6.12 kernel:
//!
//! - Every read from `read_consumed == 0` starts with `BR_NOOP`. A read can return a lone
//!   `BR_NOOP` (no work): the kernel wakes all threads of a binder process whenever any fd of
//!   its device is closed, including the close-on-exec copy in a child it spawns.
//! - A sync call's `BR_TRANSACTION_COMPLETE` is held back until the reply: the caller reads
//!   `BR_NOOP, BR_TRANSACTION_COMPLETE, BR_REPLY` in one read, unless its thread is woken for
//!   another reason, when the complete comes alone first. Reference requests caused by the
//!   call (`BR_INCREFS`, `BR_ACQUIRE` on the sent binder) come before it in the same read. A
//!   oneway call completes at once. `BC_REPLY` gives the replier `BR_NOOP,
//!   BR_TRANSACTION_COMPLETE` at once.
//! - Failed calls give `BR_NOOP, BR_FAILED_REPLY` with no transaction complete; a dead or
//!   missing context manager gives `BR_DEAD_REPLY` (after the held-back complete, when the
//!   manager dies with the call in hand).
//! - A read needs room for `BR_NOOP` + 4 + `binder_transaction_data_secctx` (80 bytes) to get a
//!   transaction; with less it returns `BR_NOOP` alone, without blocking.
//! - An interrupted blocking read fails with `EINTR`, even with `SA_RESTART`.
//! - A thread's first call returns at once (a lone `BR_NOOP` when nothing is pending).
//! - The `BR_INCREFS`/`BR_ACQUIRE` a sent binder causes are queued, without waking it, on the
//!   sending thread and computed when it next reads: if the receiver dropped the reference
//!   by then (freed the buffer without `BC_INCREFS`/`BC_ACQUIRE`), the owner gets none.

use bittube::binder_ipc::device::{Device, Errno, KernelDevice, WriteRead};
use bittube::binder_ipc::uapi::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The context manager is one per device: tests that take it run one at a time.
static CONTEXT_MANAGER: Mutex<()> = Mutex::new(());

const CHILD_ENV: &str = "BITTUBE_CHILD";
/// Generous limits, only so that a broken driver or peer cannot hang the run.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The kernel device, or `None` (after saying why) when this machine has none and the run
/// does not require one.
fn device(test: &str) -> Option<KernelDevice> {
    match KernelDevice::open_default() {
        // The tests below call from the opening thread as a registered binder thread, as
        // libbinder's open_driver leaves it (BINDER_VERSION); KernelDevice::open does not.
        Ok(dev) => {
            dev.version().expect("BINDER_VERSION on the opening thread");
            Some(dev)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::env::var("BITTUBE_REQUIRE_KERNEL").as_deref() == Ok("1") {
                panic!("{test}: BITTUBE_REQUIRE_KERNEL=1 but {e}");
            }
            // Straight to fd 2, past libtest's output capture, so the skip is always visible.
            let msg =
                format!("{test}: not run: {e} (set BITTUBE_REQUIRE_KERNEL=1 to make this fail)\n");
            let _ = std::io::stderr().write_all(msg.as_bytes());
            None
        }
        Err(e) => panic!("{test}: kernel binder device present but unusable: {e}"),
    }
}

/// The role this process plays: `None` in the test harness, `Some(role)` in a child.
fn role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Starts this test binary again, running only `test`, as `role`.
fn spawn_child(test: &str, role: &str, envs: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .envs(envs.iter().copied())
        .spawn()
        .expect("spawn child test process")
}

/// Waits for `child` and asserts that it passed; kills it after [`WAIT`].
fn expect_child_ok(mut child: Child) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            assert!(status.success(), "child process failed: {status}");
            return;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes the context manager role, with `obj` (`BINDER_SET_CONTEXT_MGR_EXT`) or without.
/// A previous holder's device is released by the kernel asynchronously after its close, so
/// `EBUSY` is retried for a while.
fn become_context_manager(dev: &KernelDevice, obj: Option<&FlatBinderObject>) {
    let start = Instant::now();
    let mut busy = 0;
    loop {
        let r = match obj {
            Some(obj) => dev.set_context_mgr_ext(obj),
            None => dev.set_context_mgr(),
        };
        match r {
            Ok(()) => {
                if busy > 0 {
                    eprintln!(
                        "observed: context manager still held by a closed device: {busy} EBUSY"
                    );
                }
                return;
            }
            Err(Errno::EBUSY) if start.elapsed() < Duration::from_secs(10) => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("set context manager: {e}"),
        }
    }
}

fn lock_context_manager() -> MutexGuard<'static, ()> {
    CONTEXT_MANAGER.lock().unwrap_or_else(|e| e.into_inner())
}

/// One return command: its code and payload.
#[derive(Debug, Clone, PartialEq)]
struct Ret {
    cmd: u32,
    payload: Vec<u8>,
}

impl Ret {
    fn txn(&self) -> BinderTransactionData {
        assert_eq!(self.payload.len(), 64, "{} payload", command_name(self.cmd));
        bytemuck::pod_read_unaligned(&self.payload)
    }
}

fn parse(bytes: &[u8]) -> Vec<Ret> {
    let mut r = CommandReader::new(bytes);
    let mut out = Vec::new();
    while let Some((cmd, payload)) = r.next_command() {
        out.push(Ret {
            cmd,
            payload: payload.to_vec(),
        });
    }
    assert_eq!(
        r.remaining(),
        0,
        "the kernel returned a cut command: {bytes:?}"
    );
    out
}

fn names(rets: &[Ret]) -> Vec<&'static str> {
    rets.iter().map(|r| command_name(r.cmd)).collect()
}

/// Waits until the calling thread has something to read, at most until `deadline`.
fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant, what: &str) {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::try_from(left).expect("timeout")).expect("poll binder");
    assert_eq!(
        n, 1,
        "nothing to read from binder within {WAIT:?} while waiting for {what}"
    );
}

/// True when the calling thread has something to read right now.
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).expect("poll binder") > 0
}

/// One read-only `BINDER_WRITE_READ`.
fn read_once(dev: &KernelDevice, what: &str) -> Vec<Ret> {
    let mut buf = [0u8; 256];
    let mut wr = WriteRead::new(&[], &mut buf);
    dev.write_read(&mut wr)
        .unwrap_or_else(|e| panic!("read for {what}: {e}"));
    assert_eq!(wr.write_consumed, 0);
    parse(wr.returned())
}

/// Reads until the kernel returns more than a lone `BR_NOOP`, polling first so that a lost
/// message fails the test instead of hanging it.
///
/// A lone `BR_NOOP` is a wake-up without work: the kernel wakes every thread of a binder
/// process (`looper_need_return`) whenever any fd of its device is closed, which includes the
/// close-on-exec copy inside each child this process spawns.
fn read_work(dev: &KernelDevice, what: &str) -> Vec<Ret> {
    let deadline = Instant::now() + WAIT;
    loop {
        wait_readable(dev.as_fd(), deadline, what);
        let rets = read_once(dev, what);
        eprintln!("observed: {what}: {:?}", names(&rets));
        assert_eq!(
            rets.first().map(|r| r.cmd),
            Some(BR_NOOP),
            "every read starts with BR_NOOP"
        );
        if rets.len() > 1 {
            return rets;
        }
    }
}

/// Reads whatever is pending without blocking; returns the commands other than `BR_NOOP`.
fn drain(dev: &KernelDevice, what: &str) -> Vec<Ret> {
    let mut got = Vec::new();
    while readable_now(dev.as_fd()) {
        let rets = read_once(dev, what);
        eprintln!("observed: {what}: {:?}", names(&rets));
        got.extend(rets.into_iter().filter(|r| r.cmd != BR_NOOP));
    }
    got
}

/// One `BINDER_WRITE_READ` that writes and reads in the same call, as libbinder does.
fn write_and_read(dev: &KernelDevice, write: &[u8], what: &str) -> Vec<Ret> {
    let mut buf = [0u8; 256];
    let mut wr = WriteRead::new(write, &mut buf);
    dev.write_read(&mut wr)
        .unwrap_or_else(|e| panic!("write_read for {what}: {e}"));
    assert_eq!(wr.write_consumed, write.len(), "write_consumed for {what}");
    let rets = parse(wr.returned());
    eprintln!("observed: {what}: {:?}", names(&rets));
    rets
}

/// A call to handle 0.
fn call_to_manager(code: u32, flags: u32, data: &[u8], offsets: &[u64]) -> BinderTransactionData {
    BinderTransactionData {
        target: 0,
        code,
        flags,
        data_size: data.len() as u64,
        offsets_size: std::mem::size_of_val(offsets) as u64,
        data_buffer: data.as_ptr() as u64,
        data_offsets: offsets.as_ptr() as u64,
        ..Default::default()
    }
}

/// A reply with `data` and no objects.
fn reply(data: &[u8]) -> BinderTransactionData {
    BinderTransactionData {
        data_size: data.len() as u64,
        data_buffer: data.as_ptr() as u64,
        ..Default::default()
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

// ---------------------------------------------------------------------------------------------
// Tests that need no kernel device

#[test]
fn open_of_a_missing_path_is_not_found() {
    let err = KernelDevice::open(Path::new("/nonexistent/binder")).expect_err("opened nothing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/binder"), "{err}");
}

#[test]
fn open_of_a_file_that_is_not_binder_says_so() {
    let before = open_fds();
    let err = KernelDevice::open(Path::new("/dev/null")).expect_err("/dev/null is no binder");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("not a binder device"), "{err}");
    assert_eq!(open_fds(), before, "the fd of a rejected device is closed");
}

#[test]
fn open_default_honours_the_env_override() {
    let test = "open_default_honours_the_env_override";
    if role().as_deref() == Some("override") {
        assert_eq!(
            KernelDevice::default_path().as_deref(),
            Some(Path::new("/dev/null"))
        );
        let err = KernelDevice::open_default().expect_err("/dev/null is no binder");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("/dev/null"), "{err}");
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("current_exe"));
    child
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "override")
        .env("BITTUBE_KERNEL_DEVICE", "/dev/null");
    expect_child_ok(child.spawn().expect("spawn"));
}

// ---------------------------------------------------------------------------------------------
// Tests on the kernel driver

#[test]
fn open_maps_the_buffer_area_and_speaks_version_8() {
    let before = open_fds();
    let Some(dev) = device("open_maps_the_buffer_area_and_speaks_version_8") else {
        return;
    };
    assert_eq!(dev.version(), Ok(BINDER_CURRENT_PROTOCOL_VERSION));
    let (base, len) = dev.buffer_area();
    assert_ne!(base, 0);
    assert_eq!(len, BINDER_VM_SIZE);
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let start = format!("{base:x}-{:x} r--p", base + len as u64);
    let line = maps.lines().find(|l| l.starts_with(&start));
    assert!(
        line.is_some(),
        "no read-only private mapping {start} in\n{maps}"
    );
    assert!(line.is_some_and(|l| l.contains("binder")), "{line:?}");
    assert_eq!(open_fds(), before + 1);
    assert_eq!(dev.set_max_threads(0), Ok(()));
    assert_eq!(dev.enable_oneway_spam_detection(true), Ok(()));
    assert_eq!(dev.thread_exit(), Ok(()));
    drop(dev);
    assert_eq!(open_fds(), before, "the device fd is closed on drop");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    assert!(
        !maps.lines().any(|l| l.starts_with(&start)),
        "the buffer area is unmapped on drop"
    );
}

#[test]
fn bad_commands_get_the_kernels_answers() {
    let test = "bad_commands_get_the_kernels_answers";
    let Some(dev) = device(test) else { return };

    // An unknown command: EINVAL, and write_consumed stops before it.
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER).cmd(0x1234_5678);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Err(Errno::EINVAL));
    assert_eq!(
        wr.write_consumed, 4,
        "BC_ENTER_LOOPER consumed, the unknown command not"
    );

    // BC_REPLY with no transaction to answer: the call succeeds; the thread reads
    // BR_FAILED_REPLY.
    let data = [1u8, 2, 3, 4];
    let mut w = CommandWriter::new();
    w.cmd_with(BC_REPLY, &reply(&data));
    let rets = write_and_read(&dev, w.as_bytes(), "BC_REPLY without a transaction");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_FAILED_REPLY"]);

    // BC_FREE_BUFFER of an address that is no buffer: silently ignored.
    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &0x1000u64);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    assert_eq!(wr.write_consumed, 12);
    assert!(
        !readable_now(dev.as_fd()),
        "nothing to read after a bogus BC_FREE_BUFFER"
    );

    // BC_TRANSACTION whose data pointer is not mapped: BR_FAILED_REPLY, not EFAULT.
    let mut tr = call_to_manager(1, 0, &data, &[]);
    tr.data_buffer = 8;
    let _cm = lock_context_manager();
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &tr);
    let rets = write_and_read(&dev, w.as_bytes(), "BC_TRANSACTION with a bad data pointer");
    let got = names(&rets);
    // Without a context manager the kernel answers BR_DEAD_REPLY before it looks at data.
    assert!(
        got == ["BR_NOOP", "BR_FAILED_REPLY"] || got == ["BR_NOOP", "BR_DEAD_REPLY"],
        "{got:?}"
    );

    // A read of fewer than 4 bytes from the start: refused before the kernel (it would store
    // its 4-byte BR_NOOP without checking the room).
    let mut small = [0u8; 3];
    let mut wr = WriteRead::new(&[], &mut small);
    assert_eq!(dev.write_read(&mut wr), Err(Errno::EINVAL));

    // Consumed counts beyond their slices: refused.
    let mut buf = [0u8; 64];
    let mut wr = WriteRead::new(&[], &mut buf);
    wr.read_consumed = 65;
    assert_eq!(dev.write_read(&mut wr), Err(Errno::EINVAL));
}

#[test]
fn second_context_manager_is_ebusy() {
    let Some(dev) = device("second_context_manager_is_ebusy") else {
        return;
    };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    assert_eq!(
        dev.set_context_mgr(),
        Err(Errno::EBUSY),
        "again from the same process"
    );
    let obj = FlatBinderObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_BINDER,
        },
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        ..Default::default()
    };
    assert_eq!(dev.set_context_mgr_ext(&obj), Err(Errno::EBUSY));

    // The context manager calling handle 0 (itself): BR_FAILED_REPLY.
    let tr = call_to_manager(1, 0, &CALL_DATA, &[]);
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &tr);
    let rets = write_and_read(&dev, w.as_bytes(), "context manager calling handle 0");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_FAILED_REPLY"]);
}

const CALL_DATA: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];
const REPLY_DATA: [u8; 4] = *b"ok!!";

#[test]
fn call_to_context_manager_and_reply() {
    let test = "call_to_context_manager_and_reply";
    if role().as_deref() == Some("client") {
        let dev = device(test).expect("the parent found a device");
        let tr = call_to_manager(7, TF_ACCEPT_FDS, &CALL_DATA, &[]);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        // Written and read in one call, as libbinder does: the kernel holds back
        // BR_TRANSACTION_COMPLETE of a sync call until the reply is there.
        let rets = write_and_read(&dev, w.as_bytes(), "client: BC_TRANSACTION + read");
        assert_eq!(
            names(&rets),
            ["BR_NOOP", "BR_TRANSACTION_COMPLETE", "BR_REPLY"]
        );
        let r = rets[2].txn();
        assert_eq!(r.data_size, 4);
        assert_eq!(r.offsets_size, 0);
        assert_eq!(r.sender_pid, 0, "replies carry no sender pid");
        assert_eq!(r.sender_euid, nix::unistd::geteuid().as_raw());
        assert_eq!(r.code, 0);
        assert_eq!(r.flags, 0);
        assert_eq!(dev.buffer_bytes(r.data_buffer, 4), Some(&REPLY_DATA[..]));
        let mut w = CommandWriter::new();
        w.cmd_with(BC_FREE_BUFFER, &r.data_buffer);
        let mut wr = WriteRead::new(w.as_bytes(), &mut []);
        assert_eq!(dev.write_read(&mut wr), Ok(()));
        return;
    }

    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    assert_eq!(wr.write_consumed, 4);

    let child = spawn_child(test, "client", &[]);
    let rets = read_work(&dev, "manager: incoming call");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
    let t = rets[1].txn();
    assert_eq!(t.target, 0, "plain SET_CONTEXT_MGR: node ptr 0");
    assert_eq!(t.cookie, 0);
    assert_eq!(t.code, 7);
    assert_eq!(t.flags, TF_ACCEPT_FDS);
    assert_eq!(t.sender_pid, child.id() as i32);
    assert_eq!(t.sender_euid, nix::unistd::geteuid().as_raw());
    assert_eq!(t.data_size, 4);
    assert_eq!(t.offsets_size, 0);
    assert_eq!(
        t.data_offsets,
        t.data_buffer + 8,
        "offsets follow the data, 8-aligned"
    );
    assert_eq!(dev.buffer_bytes(t.data_buffer, 4), Some(&CALL_DATA[..]));

    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &t.data_buffer)
        .cmd_with(BC_REPLY, &reply(&REPLY_DATA));
    let rets = write_and_read(
        &dev,
        w.as_bytes(),
        "manager: BC_FREE_BUFFER + BC_REPLY + read",
    );
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
    expect_child_ok(child);
}

#[test]
fn fd_object_shares_the_file_offset() {
    let test = "fd_object_shares_the_file_offset";
    if role().as_deref() == Some("sender") {
        let dev = device(test).expect("the parent found a device");
        let path = std::env::var("BITTUBE_FD_FILE").expect("BITTUBE_FD_FILE");
        let mut file = std::fs::File::open(path).expect("open the file");
        let mut hello = [0u8; 5];
        file.read_exact(&mut hello).expect("read hello");
        assert_eq!(&hello, b"hello");
        let obj = BinderFdObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_FD,
            },
            pad_flags: 0,
            pad_binder: std::os::fd::AsRawFd::as_raw_fd(&file) as u32 as u64,
            cookie: 1,
        };
        let offsets = [0u64];
        let tr = call_to_manager(1, TF_ACCEPT_FDS, bytemuck::bytes_of(&obj), &offsets);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        let rets = write_and_read(&dev, w.as_bytes(), "sender: BC_TRANSACTION with an fd");
        assert_eq!(
            names(&rets),
            ["BR_NOOP", "BR_TRANSACTION_COMPLETE", "BR_REPLY"]
        );
        // The receiver read "world" through the same open file description.
        assert_eq!(file.stream_position().expect("position"), 10);
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).expect("read the rest");
        assert!(rest.is_empty(), "the receiver consumed the rest: {rest:?}");
        let mut w = CommandWriter::new();
        w.cmd_with(BC_FREE_BUFFER, &rets[2].txn().data_buffer);
        let mut wr = WriteRead::new(w.as_bytes(), &mut []);
        assert_eq!(dev.write_read(&mut wr), Ok(()));
        return;
    }

    let fds_before = open_fds();
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    let manager = FlatBinderObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_BINDER,
        },
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        binder: 0xb17_70be,
        cookie: 0xc00c1e,
    };
    become_context_manager(&dev, Some(&manager));
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));

    let path = std::env::temp_dir().join(format!("bittube-kernel-fd-{}", std::process::id()));
    std::fs::write(&path, "helloworld").expect("write the file");
    let child = spawn_child(
        test,
        "sender",
        &[("BITTUBE_FD_FILE", path.to_str().expect("utf-8"))],
    );
    let rets = read_work(&dev, "manager: incoming call with an fd");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
    let t = rets[1].txn();
    assert_eq!(
        (t.target, t.cookie),
        (0xb17_70be, 0xc00c1e),
        "the node's ptr and cookie"
    );
    assert_eq!((t.data_size, t.offsets_size), (24, 8));
    let offsets = dev
        .buffer_bytes(t.data_offsets, 8)
        .expect("offsets in the buffer area");
    assert_eq!(offsets, &0u64.to_ne_bytes());
    let obj: BinderFdObject =
        bytemuck::pod_read_unaligned(dev.buffer_bytes(t.data_buffer, 24).expect("object"));
    assert_eq!(obj.hdr.type_, BINDER_TYPE_FD);
    assert_eq!(obj.cookie, 1, "the cookie travels unchanged");
    assert_eq!(obj.pad_binder >> 32, 0, "the fd is a 32-bit number at +8");
    eprintln!("observed: received fd object {obj:?}");
    assert_eq!(
        open_fds(),
        fds_before + 2,
        "the device fd and the received fd"
    );

    // SAFETY: the kernel installed this fd in our table when this thread read the
    // transaction; nothing else in this process knows the number, so it is ours to own.
    let received =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(obj.fd()) };
    let flags = nix::fcntl::fcntl(&received, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
    assert_eq!(
        flags & libc::FD_CLOEXEC,
        libc::FD_CLOEXEC,
        "received fds are close-on-exec"
    );
    let mut file = std::fs::File::from(received);
    let mut world = [0u8; 5];
    file.read_exact(&mut world).expect("read world");
    assert_eq!(&world, b"world", "the offset is shared with the sender");
    drop(file);

    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &t.data_buffer)
        .cmd_with(BC_REPLY, &reply(&[]));
    let rets = write_and_read(
        &dev,
        w.as_bytes(),
        "manager: BC_FREE_BUFFER + BC_REPLY + read",
    );
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
    expect_child_ok(child);
    let _ = std::fs::remove_file(&path);
    drop(dev);
    assert_eq!(open_fds(), fds_before, "no fd leaked");
}

#[test]
fn fd_to_a_node_that_does_not_accept_fds_fails() {
    let test = "fd_to_a_node_that_does_not_accept_fds_fails";
    if role().as_deref() == Some("sender") {
        let dev = device(test).expect("the parent found a device");
        let file = std::fs::File::open("/proc/self/stat").expect("open a file");
        let obj = BinderFdObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_FD,
            },
            pad_binder: std::os::fd::AsRawFd::as_raw_fd(&file) as u32 as u64,
            ..Default::default()
        };
        let offsets = [0u64];
        let tr = call_to_manager(1, TF_ACCEPT_FDS, bytemuck::bytes_of(&obj), &offsets);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        let rets = write_and_read(
            &dev,
            w.as_bytes(),
            "sender: fd to a node without ACCEPTS_FDS",
        );
        assert_eq!(names(&rets), ["BR_NOOP", "BR_FAILED_REPLY"]);
        return;
    }

    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    expect_child_ok(spawn_child(test, "sender", &[]));
    let got = drain(&dev, "manager after the failed call");
    assert!(
        got.is_empty(),
        "the failed call reached the manager: {got:?}"
    );
}

/// Waits until thread `tid` of this process sleeps inside `ioctl` (x86_64 syscall 16).
fn wait_in_ioctl(tid: nix::unistd::Pid) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let start = Instant::now();
    loop {
        let s = std::fs::read_to_string(&path).expect("read the thread's syscall");
        if s.starts_with("16 ") {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "thread {tid} never blocked in ioctl: {s}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

static SIGNALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_signal_does_not_break_a_blocking_read() {
    let test = "a_signal_does_not_break_a_blocking_read";
    if role().as_deref() == Some("client") {
        let dev = device(test).expect("the parent found a device");
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &call_to_manager(3, 0, &CALL_DATA, &[]));
        let rets = write_and_read(&dev, w.as_bytes(), "client: call after the signal");
        assert_eq!(
            names(&rets),
            ["BR_NOOP", "BR_TRANSACTION_COMPLETE", "BR_REPLY"]
        );
        return;
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // The interrupted ioctl fails with EINTR (binder returns EINTR itself, so SA_RESTART would
    // not help: measured), which KernelDevice retries.
    let action = SigAction::new(
        SigHandler::Handler(count_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only increments an atomic counter, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.expect("install the SIGUSR1 handler");

    let child = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let dev = &dev;
        let reader = s.spawn(move || {
            let mut w = CommandWriter::new();
            w.cmd(BC_ENTER_LOOPER);
            let mut wr = WriteRead::new(w.as_bytes(), &mut []);
            dev.write_read(&mut wr).expect("BC_ENTER_LOOPER");
            tx.send((nix::unistd::gettid(), {
                // SAFETY: pthread_self has no preconditions.
                unsafe { libc::pthread_self() }
            }))
            .expect("send");
            // A blocking read straight into the ioctl (no poll first), until real work comes.
            let rets = loop {
                let mut buf = [0u8; 256];
                let mut wr = WriteRead::new(&[], &mut buf);
                dev.write_read(&mut wr)
                    .expect("a blocking read survives signals");
                let rets = parse(wr.returned());
                eprintln!("observed: reader after the signal: {:?}", names(&rets));
                if rets.len() > 1 {
                    break rets;
                }
            };
            assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
            // The reply comes from the thread that took the call.
            let t = rets[1].txn();
            let mut w = CommandWriter::new();
            w.cmd_with(BC_FREE_BUFFER, &t.data_buffer)
                .cmd_with(BC_REPLY, &reply(&REPLY_DATA));
            let rets = write_and_read(dev, w.as_bytes(), "reader: reply");
            assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
            t
        });
        let (tid, pthread) = rx.recv().expect("reader started");
        wait_in_ioctl(tid);
        let before = SIGNALS.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: `pthread` names the reader thread, alive until it is joined below.
        let r = unsafe { libc::pthread_kill(pthread, libc::SIGUSR1) };
        assert_eq!(r, 0, "pthread_kill");
        let start = Instant::now();
        while SIGNALS.load(std::sync::atomic::Ordering::SeqCst) == before {
            assert!(start.elapsed() < WAIT, "the signal handler never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The reader goes back into the ioctl instead of failing with EINTR.
        wait_in_ioctl(tid);
        let child = spawn_child(test, "client", &[]);
        let t = reader.join().expect("reader thread");
        assert_eq!((t.code, t.sender_pid), (3, child.id() as i32));
        child
    });
    expect_child_ok(child);
}

#[test]
fn oneway_call_and_a_read_buffer_too_small_for_it() {
    let test = "oneway_call_and_a_read_buffer_too_small_for_it";
    if role().as_deref() == Some("client") {
        let dev = device(test).expect("the parent found a device");
        let mut w = CommandWriter::new();
        w.cmd_with(
            BC_TRANSACTION,
            &call_to_manager(9, TF_ONE_WAY, &CALL_DATA, &[]),
        );
        // A oneway call completes at once: no reply to wait for.
        let rets = write_and_read(&dev, w.as_bytes(), "client: oneway call");
        assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
        return;
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    // The client has exited when its oneway call is read: it is delivered all the same.
    expect_child_ok(spawn_child(test, "client", &[]));
    wait_readable(dev.as_fd(), Instant::now() + WAIT, "the oneway call");
    let read_with = |room: usize| {
        let mut buf = vec![0u8; room];
        let mut wr = WriteRead::new(&[], &mut buf);
        dev.write_read(&mut wr).expect("read");
        let rets = parse(wr.returned());
        eprintln!(
            "observed: read with {room} bytes of room: {:?}",
            names(&rets)
        );
        rets
    };
    // The first read may be a wake-up without work (the child's exec closed its copy of the
    // fd); from the second on, the work is there and the read does not block.
    let _ = read_with(79);
    // The kernel wants room for BR_NOOP + a command + binder_transaction_data_secctx
    // (4 + 4 + 72 = 80 bytes) before it hands out a transaction, even a plain one.
    assert_eq!(names(&read_with(79)), ["BR_NOOP"]);
    let rets = read_with(80);
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
    let t = rets[1].txn();
    assert_eq!(t.code, 9);
    assert_eq!(t.flags, TF_ONE_WAY);
    assert_eq!(t.sender_pid, 0, "oneway calls carry no sender pid");
    assert_eq!(t.sender_euid, nix::unistd::geteuid().as_raw());
    assert_eq!(dev.buffer_bytes(t.data_buffer, 4), Some(&CALL_DATA[..]));
    let mut w = CommandWriter::new();
    w.cmd_with(BC_FREE_BUFFER, &t.data_buffer);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    let got = drain(&dev, "manager after freeing the oneway buffer");
    assert!(got.is_empty(), "nothing follows a oneway call: {got:?}");
}

#[test]
fn binder_object_becomes_a_handle_and_the_owner_gets_refs() {
    let test = "binder_object_becomes_a_handle_and_the_owner_gets_refs";
    const PTR: u64 = 0x1000;
    const COOKIE: u64 = 0x2000;
    if role().as_deref() == Some("owner") {
        let dev = device(test).expect("the parent found a device");
        let obj = FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_BINDER,
            },
            flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
            binder: PTR,
            cookie: COOKIE,
        };
        let offsets = [0u64];
        let tr = call_to_manager(2, TF_ACCEPT_FDS, bytemuck::bytes_of(&obj), &offsets);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        // The manager took a strong and a weak reference before replying: the requests for
        // them come to the calling thread, in the same read as the reply.
        let rets = write_and_read(&dev, w.as_bytes(), "owner: call carrying a binder");
        assert_eq!(
            names(&rets),
            [
                "BR_NOOP",
                "BR_INCREFS",
                "BR_ACQUIRE",
                "BR_TRANSACTION_COMPLETE",
                "BR_REPLY"
            ]
        );
        let mut w = CommandWriter::new();
        for r in &rets[1..3] {
            let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(&r.payload);
            assert_eq!((pc.ptr, pc.cookie), (PTR, COOKIE));
            let done = if r.cmd == BR_INCREFS {
                BC_INCREFS_DONE
            } else {
                BC_ACQUIRE_DONE
            };
            w.cmd_with(done, &pc);
        }
        w.cmd_with(BC_FREE_BUFFER, &rets[4].txn().data_buffer);
        let mut wr = WriteRead::new(w.as_bytes(), &mut []);
        assert_eq!(dev.write_read(&mut wr), Ok(()));
        let rest = drain(&dev, "owner: after the DONEs");
        assert!(rest.is_empty(), "{:?}", names(&rest));
        return;
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    let child = spawn_child(test, "owner", &[]);
    let rets = read_work(&dev, "manager: call carrying a binder");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
    let t = rets[1].txn();
    let obj: FlatBinderObject =
        bytemuck::pod_read_unaligned(dev.buffer_bytes(t.data_buffer, 24).expect("object"));
    eprintln!("observed: the manager received {obj:?}");
    assert_eq!(obj.hdr.type_, BINDER_TYPE_HANDLE);
    assert_eq!(obj.handle(), 1, "the first handle of a process is 1");
    assert_eq!(obj.binder >> 32, 0);
    assert_eq!(obj.cookie, 0, "the cookie does not leave its owner");
    assert_eq!(obj.flags, FLAT_BINDER_FLAG_ACCEPTS_FDS, "the flags travel");
    // Keep the handle, as a proxy would, then free the buffer and reply.
    let mut w = CommandWriter::new();
    w.cmd_with(BC_INCREFS, &1u32).cmd_with(BC_ACQUIRE, &1u32);
    w.cmd_with(BC_FREE_BUFFER, &t.data_buffer)
        .cmd_with(BC_REPLY, &reply(&[]));
    let rets = write_and_read(&dev, w.as_bytes(), "manager: take refs, free, reply");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
    expect_child_ok(child);
}

#[test]
fn malformed_calls_fail_with_br_failed_reply() {
    let test = "malformed_calls_fail_with_br_failed_reply";
    if role().as_deref() == Some("client") {
        let dev = device(test).expect("the parent found a device");
        let fd_obj = |fd: u32| BinderFdObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_FD,
            },
            pad_binder: u64::from(fd),
            ..Default::default()
        };
        let bad_fd = fd_obj(9999);
        let offsets = [0u64, 0];
        let far = [64u64];
        let odd = [2u64];
        let mut unmapped = call_to_manager(1, 0, &CALL_DATA, &[]);
        unmapped.data_buffer = 8;
        let mut unmapped_offsets =
            call_to_manager(1, 0, bytemuck::bytes_of(&bad_fd), &offsets[..1]);
        unmapped_offsets.data_offsets = 8;
        let cases = [
            ("data pointer not mapped", unmapped),
            ("offsets pointer not mapped", unmapped_offsets),
            (
                "offsets_size not a multiple of 8",
                BinderTransactionData {
                    offsets_size: 4,
                    ..call_to_manager(1, 0, bytemuck::bytes_of(&bad_fd), &offsets[..1])
                },
            ),
            (
                "object offset beyond the data",
                call_to_manager(1, 0, &[0; 24], &far),
            ),
            (
                "object offset not 4-aligned",
                call_to_manager(1, 0, &[0; 32], &odd),
            ),
            (
                "fd that is not open",
                call_to_manager(1, 0, bytemuck::bytes_of(&bad_fd), &offsets[..1]),
            ),
            (
                "unknown object type",
                call_to_manager(1, 0, &[0x55; 24], &offsets[..1]),
            ),
            (
                "the same object twice",
                call_to_manager(1, 0, bytemuck::bytes_of(&fd_obj(0)), &offsets),
            ),
        ];
        for (what, tr) in cases {
            let mut w = CommandWriter::new();
            w.cmd_with(BC_TRANSACTION, &tr);
            let rets = write_and_read(&dev, w.as_bytes(), &format!("client: {what}"));
            assert_eq!(names(&rets), ["BR_NOOP", "BR_FAILED_REPLY"], "{what}");
        }
        return;
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    let manager = FlatBinderObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_BINDER,
        },
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        ..Default::default()
    };
    become_context_manager(&dev, Some(&manager));
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    expect_child_ok(spawn_child(test, "client", &[]));
    let got = drain(&dev, "manager after the malformed calls");
    assert!(
        got.is_empty(),
        "a malformed call reached the manager: {:?}",
        names(&got)
    );
}

#[test]
fn a_manager_that_dies_mid_call_gives_br_dead_reply() {
    let test = "a_manager_that_dies_mid_call_gives_br_dead_reply";
    if role().as_deref() == Some("manager") {
        let dev = device(test).expect("the parent found a device");
        become_context_manager(&dev, None);
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        let mut wr = WriteRead::new(w.as_bytes(), &mut []);
        assert_eq!(dev.write_read(&mut wr), Ok(()));
        println!("manager ready");
        let rets = read_work(&dev, "dying manager: incoming call");
        assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
        // Exit with the call unanswered and the buffer held.
        std::process::exit(0);
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "manager")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the manager");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).expect("read the manager");
        assert!(n > 0, "the manager exited before it was ready");
        if line.trim_end().ends_with("manager ready") {
            break;
        }
    }
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &call_to_manager(5, 0, &CALL_DATA, &[]));
    // This process spawned the manager, so its thread may carry a pending wake-up (see
    // `read_work`): the held-back BR_TRANSACTION_COMPLETE then comes alone, in the first read.
    let mut rets = write_and_read(&dev, w.as_bytes(), "client: call to a manager that dies");
    let mut got: Vec<_> = rets
        .iter()
        .map(|r| r.cmd)
        .filter(|c| *c != BR_NOOP)
        .collect();
    while !got.contains(&BR_DEAD_REPLY) && got.len() < 4 {
        rets = read_work(&dev, "client: waiting for the dead reply");
        got.extend(rets.iter().map(|r| r.cmd).filter(|c| *c != BR_NOOP));
    }
    let got: Vec<_> = got.into_iter().map(command_name).collect();
    assert_eq!(got, ["BR_TRANSACTION_COMPLETE", "BR_DEAD_REPLY"]);
    drop(out);
    expect_child_ok(child);
}

#[test]
fn death_notification_when_the_owner_exits() {
    let test = "death_notification_when_the_owner_exits";
    const PTR: u64 = 0x3000;
    const COOKIE: u64 = 0x4000;
    const DEATH_COOKIE: u64 = 0xdead;
    if role().as_deref() == Some("owner") {
        let dev = device(test).expect("the parent found a device");
        let obj = FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_BINDER,
            },
            flags: 0,
            binder: PTR,
            cookie: COOKIE,
        };
        let offsets = [0u64];
        let tr = call_to_manager(2, 0, bytemuck::bytes_of(&obj), &offsets);
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        let rets = write_and_read(&dev, w.as_bytes(), "owner: call carrying a binder");
        assert_eq!(
            names(&rets),
            [
                "BR_NOOP",
                "BR_INCREFS",
                "BR_ACQUIRE",
                "BR_TRANSACTION_COMPLETE",
                "BR_REPLY"
            ]
        );
        let mut w = CommandWriter::new();
        for r in &rets[1..3] {
            let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(&r.payload);
            let done = if r.cmd == BR_INCREFS {
                BC_INCREFS_DONE
            } else {
                BC_ACQUIRE_DONE
            };
            w.cmd_with(done, &pc);
        }
        w.cmd_with(BC_FREE_BUFFER, &rets[4].txn().data_buffer);
        let mut wr = WriteRead::new(w.as_bytes(), &mut []);
        assert_eq!(dev.write_read(&mut wr), Ok(()));
        // Exit holding the node: the manager's handle dies with this process.
        return;
    }
    let Some(dev) = device(test) else { return };
    let _cm = lock_context_manager();
    become_context_manager(&dev, None);
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    let child = spawn_child(test, "owner", &[]);
    let rets = read_work(&dev, "manager: call carrying a binder");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION"]);
    let t = rets[1].txn();
    let obj: FlatBinderObject =
        bytemuck::pod_read_unaligned(dev.buffer_bytes(t.data_buffer, 24).expect("object"));
    assert_eq!((obj.hdr.type_, obj.handle()), (BINDER_TYPE_HANDLE, 1));
    let death = BinderHandleCookie {
        handle: 1,
        cookie: DEATH_COOKIE,
    };
    let mut w = CommandWriter::new();
    w.cmd_with(BC_INCREFS, &1u32).cmd_with(BC_ACQUIRE, &1u32);
    w.cmd_with(BC_REQUEST_DEATH_NOTIFICATION, &death);
    w.cmd_with(BC_FREE_BUFFER, &t.data_buffer)
        .cmd_with(BC_REPLY, &reply(&[]));
    let rets = write_and_read(&dev, w.as_bytes(), "manager: refs, death request, reply");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_TRANSACTION_COMPLETE"]);
    expect_child_ok(child);

    let rets = read_work(&dev, "manager: after the owner exited");
    assert_eq!(names(&rets), ["BR_NOOP", "BR_DEAD_BINDER"]);
    assert_eq!(rets[1].payload, DEATH_COOKIE.to_ne_bytes());
    let mut w = CommandWriter::new();
    w.cmd_with(BC_DEAD_BINDER_DONE, &DEATH_COOKIE);
    w.cmd_with(BC_CLEAR_DEATH_NOTIFICATION, &death);
    w.cmd_with(BC_RELEASE, &1u32).cmd_with(BC_DECREFS, &1u32);
    let mut wr = WriteRead::new(w.as_bytes(), &mut []);
    assert_eq!(dev.write_read(&mut wr), Ok(()));
    let rets = read_work(&dev, "manager: clear after death");
    assert_eq!(
        names(&rets),
        ["BR_NOOP", "BR_CLEAR_DEATH_NOTIFICATION_DONE"]
    );
    assert_eq!(rets[1].payload, DEATH_COOKIE.to_ne_bytes());
    let got = drain(&dev, "manager: after releasing the dead handle");
    assert!(got.is_empty(), "{:?}", names(&got));
}

#[test]
fn a_new_threads_first_read_returns_at_once() {
    let Some(dev) = device("a_new_threads_first_read_returns_at_once") else {
        return;
    };
    // Nothing is pending for this process, yet a thread the driver has not seen before is
    // readable and its first read returns a lone BR_NOOP without blocking; after that it is
    // not readable any more.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(readable_now(dev.as_fd()), "a new thread is readable");
            let rets = read_once(&dev, "first read of a new thread");
            assert_eq!(names(&rets), ["BR_NOOP"]);
            assert!(
                !readable_now(dev.as_fd()),
                "only the first read returns at once"
            );
        });
    });
}
