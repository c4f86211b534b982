//! The conformance harness: open a binder process on the kernel or on the shim, write BC_
//! streams, decode BR_ streams, run child processes, and never hang.
//!
//! Device choice: the kernel driver when `BITTUBE_REQUIRE_KERNEL=1` or `/dev/binder` exists
//! (path overridable with `BITTUBE_KERNEL_DEVICE`), else the shim named by `BITTUBE_BINDER`,
//! else a shim embedded in this test process (started once, handed to children through
//! `BITTUBE_BINDER`).
//!
//! Child processes re-execute this test binary with `--exact <test> --nocapture
//! --test-threads=1` and `BITTUBE_CHILD=<role>`; the test function then plays that role.
//! Children talk to the parent with `@@bittube <tag> <text>` lines on stdout and read lines
//! from stdin.

use bittube::binder_ipc::device::{Device, Errno, KernelDevice, ShimDevice, WriteRead};
use bittube::binder_ipc::shim::Driver;
use bittube::binder_ipc::uapi::*;
use bytemuck::Pod;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Env var naming the role a re-executed test binary plays.
pub const CHILD_ENV: &str = "BITTUBE_CHILD";
/// Env var naming the shim's socket.
pub const SHIM_ENV: &str = "BITTUBE_BINDER";
/// Env var that forces the kernel driver.
pub const REQUIRE_KERNEL_ENV: &str = "BITTUBE_REQUIRE_KERNEL";
/// Env var overriding the kernel device path.
pub const KERNEL_DEVICE_ENV: &str = "BITTUBE_KERNEL_DEVICE";
/// Prefix of the lines children print for their parent.
const LINE_PREFIX: &str = "@@bittube ";

/// Room for one read: the kernel stops filling when fewer than 76 bytes are left.
pub const READ_SIZE: usize = 8192;

/// A test's whole time budget; only there to turn a hang into a failure.
pub fn test_timeout() -> Duration {
    let secs = std::env::var("BITTUBE_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------------------
// Choosing and opening the device

/// True when the tests run against the kernel driver.
pub fn on_kernel() -> bool {
    if std::env::var(REQUIRE_KERNEL_ENV).as_deref() == Ok("1") {
        return true;
    }
    if std::env::var_os(SHIM_ENV).is_some() {
        return false;
    }
    Path::new("/dev/binder").exists()
}

fn kernel_path() -> PathBuf {
    if let Some(p) = std::env::var_os(KERNEL_DEVICE_ENV) {
        return PathBuf::from(p);
    }
    if Path::new("/dev/binder").exists() {
        return PathBuf::from("/dev/binder");
    }
    PathBuf::from("/dev/binderfs/binder")
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

/// The socket of the shim started for the running test (see [`run`]).
static TEST_SHIM: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The shim socket: `BITTUBE_BINDER` when set (children, or an external daemon), else the
/// shim embedded for the running test, else one embedded driver for this test process.
pub fn shim_socket() -> PathBuf {
    if let Some(p) = std::env::var_os(SHIM_ENV) {
        return PathBuf::from(p);
    }
    if let Some(p) = lock(&TEST_SHIM).clone() {
        return p;
    }
    DRIVER
        .get_or_init(|| Driver::start().expect("starting the embedded driver shim"))
        .socket_path()
        .to_path_buf()
}

/// Opens one binder process (like one `open("/dev/binder")` + `mmap`).
pub fn open_proc() -> Box<dyn Device> {
    if on_kernel() {
        let path = kernel_path();
        match KernelDevice::open(&path) {
            Ok(d) => Box::new(d),
            Err(e) => panic!("opening the kernel binder device {}: {e}", path.display()),
        }
    } else {
        let path = shim_socket();
        match ShimDevice::open(&path) {
            Ok(d) => Box::new(d),
            Err(e) => panic!("opening the shim at {}: {e}", path.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// BR_ streams

/// One return command with its payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Ret {
    /// The BR_ code.
    pub cmd: u32,
    /// Its payload bytes.
    pub payload: Vec<u8>,
}

impl Ret {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        command_name(self.cmd)
    }
    fn pod<T: Pod>(&self) -> T {
        assert_eq!(
            self.payload.len(),
            std::mem::size_of::<T>(),
            "{} payload has the wrong size",
            self.name()
        );
        bytemuck::pod_read_unaligned(&self.payload)
    }
    /// The transaction of a BR_TRANSACTION / BR_REPLY.
    pub fn txn(&self) -> BinderTransactionData {
        assert!(
            self.cmd == BR_TRANSACTION || self.cmd == BR_REPLY,
            "expected BR_TRANSACTION or BR_REPLY, got {}",
            self.name()
        );
        self.pod()
    }
    /// The (ptr, cookie) of BR_INCREFS / ACQUIRE / RELEASE / DECREFS.
    pub fn ptr_cookie(&self) -> (u64, u64) {
        let pc: BinderPtrCookie = self.pod();
        (pc.ptr, pc.cookie)
    }
    /// The cookie of BR_DEAD_BINDER / BR_CLEAR_DEATH_NOTIFICATION_DONE.
    pub fn cookie(&self) -> u64 {
        self.pod()
    }
}

impl std::fmt::Debug for Ret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cmd {
            BR_TRANSACTION | BR_REPLY => {
                let t: BinderTransactionData = bytemuck::pod_read_unaligned(&self.payload);
                write!(
                    f,
                    "{}{{target {:#x} cookie {:#x} code {:#x} flags {:#x} pid {} euid {} size {} offsets {}}}",
                    self.name(),
                    t.target,
                    t.cookie,
                    t.code,
                    t.flags,
                    t.sender_pid,
                    t.sender_euid,
                    t.data_size,
                    t.offsets_size
                )
            }
            BR_INCREFS | BR_ACQUIRE | BR_RELEASE | BR_DECREFS => {
                let (p, c) = self.ptr_cookie();
                write!(f, "{}({p:#x}, {c:#x})", self.name())
            }
            BR_DEAD_BINDER | BR_CLEAR_DEATH_NOTIFICATION_DONE => {
                write!(f, "{}({:#x})", self.name(), self.cookie())
            }
            BR_ERROR => write!(f, "BR_ERROR({:?})", self.payload),
            _ => write!(f, "{}", self.name()),
        }
    }
}

/// Decodes a BR_ stream; a stream that does not parse is a conformance failure.
pub fn decode(bytes: &[u8]) -> Vec<Ret> {
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
        "the read stream does not parse: {} bytes left after {:?}",
        r.remaining(),
        out
    );
    out
}

/// The names of a stream, for readable exact assertions.
pub fn names(rets: &[Ret]) -> Vec<&'static str> {
    rets.iter().map(Ret::name).collect()
}

/// The stream without BR_NOOP (which starts every fresh read).
pub fn without_noop(rets: &[Ret]) -> Vec<Ret> {
    rets.iter().filter(|r| r.cmd != BR_NOOP).cloned().collect()
}

/// Asserts the names of a stream (BR_NOOPs removed) equal `expected`.
#[track_caller]
pub fn assert_stream(rets: &[Ret], expected: &[&str], what: &str) {
    let got = without_noop(rets);
    assert_eq!(
        names(&got),
        expected,
        "{what}: expected BR stream {expected:?}, got {got:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Payloads (transaction data + offsets kept alive by the caller)

/// The data and offsets a BC_TRANSACTION / BC_REPLY points at.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// Data bytes.
    pub data: Vec<u8>,
    /// Offsets of objects inside `data`.
    pub offsets: Vec<u64>,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }
    /// A payload of plain bytes.
    pub fn bytes(b: &[u8]) -> Self {
        Payload {
            data: b.to_vec(),
            offsets: Vec::new(),
        }
    }
    /// Appends plain bytes.
    pub fn push_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.data.extend_from_slice(b);
        self
    }
    /// Appends an object and records its offset.
    pub fn push_object<T: Pod>(&mut self, obj: &T) -> &mut Self {
        self.offsets.push(self.data.len() as u64);
        self.data.extend_from_slice(bytemuck::bytes_of(obj));
        self
    }
    /// The `binder_transaction_data` pointing at this payload.
    pub fn tr(&self, target: u64, code: u32, flags: u32) -> BinderTransactionData {
        BinderTransactionData {
            target,
            cookie: 0,
            code,
            flags,
            sender_pid: 0,
            sender_euid: 0,
            data_size: self.data.len() as u64,
            offsets_size: (self.offsets.len() * 8) as u64,
            data_buffer: self.data.as_ptr() as u64,
            data_offsets: self.offsets.as_ptr() as u64,
        }
    }
}

/// A strong local binder object.
pub fn binder_obj(ptr: u64, cookie: u64, flags: u32) -> FlatBinderObject {
    FlatBinderObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_BINDER,
        },
        flags,
        binder: ptr,
        cookie,
    }
}

/// A strong handle object.
pub fn handle_obj(handle: u32) -> FlatBinderObject {
    FlatBinderObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_HANDLE,
        },
        flags: 0,
        binder: handle as u64,
        cookie: 0,
    }
}

/// An fd object.
pub fn fd_obj(fd: i32, cookie: u64) -> BinderFdObject {
    BinderFdObject {
        hdr: BinderObjectHeader {
            type_: BINDER_TYPE_FD,
        },
        pad_flags: 0,
        pad_binder: fd as u32 as u64,
        cookie,
    }
}

/// A BINDER_TYPE_PTR object for `length` bytes at `buffer`; `parent`, when given, is the
/// (parent object index, offset in the parent) the kernel fixes up with this buffer's address.
pub fn ptr_obj(buffer: u64, length: u64, parent: Option<(u64, u64)>) -> BinderBufferObject {
    BinderBufferObject::new(buffer, length, parent)
}

/// A BINDER_TYPE_FDA object: `num_fds` fds at `parent_offset` in the PTR buffer of object
/// index `parent`.
pub fn fda_obj(num_fds: u64, parent: u64, parent_offset: u64) -> BinderFdArrayObject {
    BinderFdArrayObject::new(num_fds, parent, parent_offset)
}

/// BC_ stream builders.
pub mod bc {
    use super::*;

    /// BC_TRANSACTION to `handle`.
    pub fn transaction(w: &mut CommandWriter, handle: u32, code: u32, flags: u32, p: &Payload) {
        w.cmd_with(BC_TRANSACTION, &p.tr(handle as u64, code, flags));
    }
    /// BC_REPLY.
    pub fn reply(w: &mut CommandWriter, code: u32, flags: u32, p: &Payload) {
        w.cmd_with(BC_REPLY, &p.tr(0, code, flags));
    }
    /// BC_FREE_BUFFER.
    pub fn free_buffer(w: &mut CommandWriter, addr: u64) {
        w.cmd_with(BC_FREE_BUFFER, &addr);
    }
    /// A handle + cookie command (death notifications).
    pub fn handle_cookie(w: &mut CommandWriter, cmd: u32, handle: u32, cookie: u64) {
        w.cmd_with(cmd, &BinderHandleCookie { handle, cookie });
    }
    /// A ptr + cookie command (BC_INCREFS_DONE / BC_ACQUIRE_DONE).
    pub fn ptr_cookie(w: &mut CommandWriter, cmd: u32, ptr: u64, cookie: u64) {
        w.cmd_with(cmd, &BinderPtrCookie { ptr, cookie });
    }
}

/// A handle no fresh process holds: a transaction to it fails at once with BR_FAILED_REPLY
/// (binder_transaction: "transaction to invalid handle"). Used as an end marker.
pub const INVALID_HANDLE: u32 = 0x7fff_0001;

// ---------------------------------------------------------------------------------------------
// A binder process

/// What one `BINDER_WRITE_READ` gave back.
#[derive(Debug)]
pub struct Call {
    /// The ioctl's result.
    pub result: Result<(), Errno>,
    /// `write_consumed`.
    pub write_consumed: usize,
    /// The decoded read stream.
    pub rets: Vec<Ret>,
}

/// One opened binder process, shareable between threads.
#[derive(Clone, Debug)]
pub struct Proc {
    /// The device.
    pub dev: Arc<dyn Device>,
}

impl Proc {
    /// Opens a new binder process.
    pub fn open() -> Proc {
        Proc {
            dev: Arc::from(open_proc()),
        }
    }

    /// One `BINDER_WRITE_READ` with `write` and (when `read`) a read buffer.
    pub fn call(&self, write: &[u8], read: bool) -> Call {
        let mut buf = vec![0u8; if read { READ_SIZE } else { 0 }];
        let mut wr = WriteRead::new(write, &mut buf);
        let result = self.dev.write_read(&mut wr);
        let write_consumed = wr.write_consumed;
        let rets = decode(wr.returned());
        Call {
            result,
            write_consumed,
            rets,
        }
    }

    /// Writes `write` without reading; asserts success and full consumption.
    #[track_caller]
    pub fn write(&self, write: &[u8]) {
        let c = self.call(write, false);
        assert_eq!(c.result, Ok(()), "write-only BINDER_WRITE_READ failed");
        assert_eq!(
            c.write_consumed,
            write.len(),
            "write stream not fully consumed"
        );
        assert!(c.rets.is_empty(), "a write-only call returned {:?}", c.rets);
    }

    /// Writes `write` (may be empty) and reads once; asserts success and full consumption.
    #[track_caller]
    pub fn write_read(&self, write: &[u8]) -> Vec<Ret> {
        let c = self.call(write, true);
        assert_eq!(
            c.result,
            Ok(()),
            "BINDER_WRITE_READ failed (read so far: {:?})",
            c.rets
        );
        assert_eq!(
            c.write_consumed,
            write.len(),
            "write stream not fully consumed; read {:?}",
            c.rets
        );
        c.rets
    }

    /// Writes `write`, then reads until `done` holds for everything read so far.
    #[track_caller]
    pub fn write_read_until(
        &self,
        write: &[u8],
        what: &str,
        done: impl Fn(&[Ret]) -> bool,
    ) -> Vec<Ret> {
        step(&format!("waiting for {what}"));
        let mut all = self.write_read(write);
        while !done(&all) {
            step(&format!("waiting for {what}; so far {all:?}"));
            all.extend(self.write_read(&[]));
        }
        all
    }

    /// Writes `write`, then reads until a return command in `cmds` appears.
    #[track_caller]
    pub fn write_read_until_any(&self, write: &[u8], cmds: &[u32]) -> Vec<Ret> {
        let what: Vec<_> = cmds.iter().map(|c| command_name(*c)).collect();
        self.write_read_until(write, &format!("{what:?}"), |rs| {
            rs.iter().any(|r| cmds.contains(&r.cmd))
        })
    }

    /// Sends a transaction and reads until its outcome: for sync calls BR_REPLY,
    /// BR_DEAD_REPLY or BR_FAILED_REPLY; for oneway, BR_TRANSACTION_COMPLETE or an error.
    #[track_caller]
    pub fn transact(&self, handle: u32, code: u32, flags: u32, p: &Payload) -> Vec<Ret> {
        let mut w = CommandWriter::new();
        bc::transaction(&mut w, handle, code, flags, p);
        let end: &[u32] = if flags & TF_ONE_WAY != 0 {
            &[
                BR_TRANSACTION_COMPLETE,
                BR_DEAD_REPLY,
                BR_FAILED_REPLY,
                BR_FROZEN_REPLY,
            ]
        } else {
            &[BR_REPLY, BR_DEAD_REPLY, BR_FAILED_REPLY, BR_FROZEN_REPLY]
        };
        self.write_read_until_any(w.as_bytes(), end)
    }

    /// Opens a new binder process and makes it the context manager with node flags `flags`
    /// (node ptr 0x1, cookie 0x2; see [`Proc::become_context_manager`]).
    #[track_caller]
    pub fn context_manager(flags: u32) -> Proc {
        let m = Proc::open();
        m.become_context_manager(flags, 0x1, 0x2);
        m
    }

    /// Becomes the context manager with `BINDER_SET_CONTEXT_MGR_EXT`, retrying while the
    /// previous test's manager is still being released (the kernel releases a closed
    /// process later, on a workqueue).
    #[track_caller]
    pub fn become_context_manager(&self, flags: u32, ptr: u64, cookie: u64) {
        let obj = binder_obj(ptr, cookie, flags);
        let start = Instant::now();
        loop {
            match self.dev.set_context_mgr_ext(&obj) {
                Ok(()) => return,
                Err(Errno::EBUSY) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("BINDER_SET_CONTEXT_MGR_EXT failed: {e}"),
            }
        }
    }

    /// Copies a received transaction's data and offsets out of the buffer area.
    #[track_caller]
    pub fn received(&self, ret: &Ret) -> Received {
        let tr = ret.txn();
        let data = self
            .dev
            .buffer_bytes(tr.data_buffer, tr.data_size as usize)
            .unwrap_or_else(|| {
                panic!(
                    "data of {ret:?} at {:#x} is not in the buffer area {:x?}",
                    tr.data_buffer,
                    self.dev.buffer_area()
                )
            })
            .to_vec();
        let off = self
            .dev
            .buffer_bytes(tr.data_offsets, tr.offsets_size as usize)
            .unwrap_or_else(|| panic!("offsets of {ret:?} are not in the buffer area"));
        let offsets = off
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        Received { tr, data, offsets }
    }

    /// Frees a received buffer (write only).
    pub fn free(&self, addr: u64) {
        let mut w = CommandWriter::new();
        bc::free_buffer(&mut w, addr);
        self.write(w.as_bytes());
    }

    /// Asserts that `rets`, the outcome of a sync call, is BR_TRANSACTION_COMPLETE then
    /// BR_REPLY (`what` names the call), and frees the reply's buffer.
    #[track_caller]
    pub fn free_reply(&self, rets: &[Ret], what: &str) {
        assert_stream(rets, &["BR_TRANSACTION_COMPLETE", "BR_REPLY"], what);
        self.free(find(rets, BR_REPLY).txn().data_buffer);
    }

    /// Writes BC_ENTER_LOOPER and reads until a BR_TRANSACTION arrives (a manager's first
    /// wait for a call).
    #[track_caller]
    pub fn enter_looper_until_transaction(&self) -> Vec<Ret> {
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        self.write_read_until_any(w.as_bytes(), &[BR_TRANSACTION])
    }

    /// The owner's side of a node it just sent: one write of BC_FREE_BUFFER for `buffer` (the
    /// reply that carried the BR_INCREFS / BR_ACQUIRE), then BC_INCREFS_DONE and
    /// BC_ACQUIRE_DONE for (`node`, `cookie`).
    #[track_caller]
    pub fn free_and_ack_node(&self, buffer: u64, node: u64, cookie: u64) {
        let mut w = CommandWriter::new();
        bc::free_buffer(&mut w, buffer);
        bc::ptr_cookie(&mut w, BC_INCREFS_DONE, node, cookie);
        bc::ptr_cookie(&mut w, BC_ACQUIRE_DONE, node, cookie);
        self.write(w.as_bytes());
    }

    /// Writes `write` followed by a transaction to [`INVALID_HANDLE`] and reads until its
    /// BR_FAILED_REPLY: returns everything this thread got before it. A way to look at a
    /// thread's queue without blocking.
    #[track_caller]
    pub fn write_then_marker(&self, write: &[u8]) -> (usize, Vec<Ret>) {
        let marker = Payload::new();
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &marker.tr(INVALID_HANDLE as u64, 0, 0));
        let mut all = write.to_vec();
        all.extend_from_slice(w.as_bytes());
        let c = self.call(&all, true);
        assert_eq!(c.result, Ok(()), "BINDER_WRITE_READ failed");
        let consumed = c.write_consumed;
        let mut rets = c.rets;
        while !rets.iter().any(|r| r.cmd == BR_FAILED_REPLY) && consumed == all.len() {
            rets.extend(self.write_read(&[]));
        }
        (consumed, rets)
    }

    /// Looks at the process's queue without blocking: a fresh thread's first read returns at
    /// once (binder_get_thread sets looper_need_return) and takes process work if there is
    /// some. The thread then leaves with BINDER_THREAD_EXIT.
    pub fn probe_process_work(&self) -> Vec<Ret> {
        let dev = self.dev.clone();
        std::thread::spawn(move || {
            let p = Proc { dev };
            let mut w = CommandWriter::new();
            w.cmd(BC_ENTER_LOOPER);
            let rets = p.write_read(w.as_bytes());
            let _ = p.dev.thread_exit();
            rets
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// A received transaction, copied out of the buffer area.
#[derive(Clone, Debug)]
pub struct Received {
    /// The BR_TRANSACTION / BR_REPLY payload.
    pub tr: BinderTransactionData,
    /// Data bytes.
    pub data: Vec<u8>,
    /// Object offsets.
    pub offsets: Vec<u64>,
}

impl Received {
    /// The object of type `T` at `offset`.
    #[track_caller]
    pub fn object<T: Pod>(&self, offset: u64) -> T {
        let o = offset as usize;
        let len = std::mem::size_of::<T>();
        assert!(
            o + len <= self.data.len(),
            "object at {o} runs past the data ({} bytes)",
            self.data.len()
        );
        bytemuck::pod_read_unaligned(&self.data[o..o + len])
    }
}

/// The first return of kind `cmd` in a stream.
#[track_caller]
pub fn find(rets: &[Ret], cmd: u32) -> Ret {
    rets.iter()
        .find(|r| r.cmd == cmd)
        .cloned()
        .unwrap_or_else(|| panic!("no {} in {rets:?}", command_name(cmd)))
}

// ---------------------------------------------------------------------------------------------
// Test runner: one test at a time, timeouts, a trail of steps

static SERIAL: Mutex<()> = Mutex::new(());
static STEP: Mutex<String> = Mutex::new(String::new());
static CHILDREN: Mutex<Vec<Arc<ChildShared>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records what the test is doing (shown when it times out).
pub fn step(s: &str) {
    *lock(&STEP) = s.to_string();
}

/// What a test body gets.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The test's name as libtest knows it (`module::test`).
    pub name: String,
    /// The role this process plays: `None` in the parent.
    pub role: Option<String>,
}

impl Ctx {
    /// Starts a child playing `role` in this test.
    pub fn spawn(&self, role: &str, env: &[(&str, String)]) -> Child {
        Child::spawn(&self.name, role, env)
    }
}

/// `module_path!()::name` of a test function.
#[macro_export]
macro_rules! test_name {
    ($f:ident) => {
        concat!(module_path!(), "::", stringify!($f))
    };
}

/// Runs a test body with the serial lock (in the parent) and a timeout.
pub fn run(full_name: &str, body: impl FnOnce(&Ctx) + Send + 'static) {
    let name = full_name
        .split_once("::")
        .map(|(_, n)| n)
        .unwrap_or(full_name)
        .to_string();
    let role = std::env::var(CHILD_ENV).ok();
    let _serial = if role.is_none() {
        Some(lock(&SERIAL))
    } else {
        None
    };
    // On the shim each test gets its own embedded driver, so that a test left hanging (its
    // threads stuck in the driver, holding the context manager) cannot break the next ones.
    let shim = if role.is_none() && !on_kernel() && std::env::var_os(SHIM_ENV).is_none() {
        let d = Driver::start().expect("starting the embedded driver shim");
        *lock(&TEST_SHIM) = Some(d.socket_path().to_path_buf());
        Some(d)
    } else {
        None
    };
    step("starting");
    let ctx = Ctx {
        name: name.clone(),
        role: role.clone(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{name}:{}", role.as_deref().unwrap_or("parent")))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&ctx)));
            let _ = tx.send(r);
        })
        .expect("spawning the test body thread");
    let outcome = rx.recv_timeout(test_timeout());
    *lock(&TEST_SHIM) = None;
    match outcome {
        Ok(Ok(())) => drop(shim),
        Ok(Err(p)) => {
            kill_children();
            drop(shim);
            std::panic::resume_unwind(p)
        }
        Err(_) => {
            // Threads of the test still use this shim: leave it running.
            std::mem::forget(shim);
            let outputs = kill_children();
            panic!(
                "{name} ({}) timed out after {:?}: a blocking call never returned. Last step: {}\n{outputs}",
                role.as_deref().unwrap_or("parent"),
                test_timeout(),
                lock(&STEP)
            );
        }
    }
}

fn kill_children() -> String {
    let children: Vec<_> = lock(&CHILDREN).drain(..).collect();
    let mut out = String::new();
    for c in children {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        out.push_str(&format!(
            "--- child {} ({}) stdout:\n{}\n--- stderr:\n{}\n",
            c.pid,
            c.role,
            lock(&c.stdout),
            lock(&c.stderr)
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Child processes

#[derive(Debug)]
struct ChildShared {
    pid: i32,
    role: String,
    stdout: Mutex<String>,
    stderr: Mutex<String>,
}

/// A child process re-executing this test binary in a role.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    shared: Arc<ChildShared>,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
    reaped: bool,
}

impl Child {
    fn spawn(test: &str, role: &str, env: &[(&str, String)]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !on_kernel() {
            cmd.env(SHIM_ENV, shim_socket());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning a child test process");
        let shared = Arc::new(ChildShared {
            pid: child.id() as i32,
            role: role.to_string(),
            stdout: Mutex::new(String::new()),
            stderr: Mutex::new(String::new()),
        });
        lock(&CHILDREN).push(shared.clone());
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("child stdout");
        let sh = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                {
                    let mut all = lock(&sh.stdout);
                    all.push_str(&line);
                    all.push('\n');
                }
                if let Some(i) = line.find(LINE_PREFIX) {
                    let _ = tx.send(line[i + LINE_PREFIX.len()..].to_string());
                }
            }
        });
        let mut err = child.stderr.take().expect("child stderr");
        let sh = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lock(&sh.stderr).push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        let stdin = child.stdin.take();
        Child {
            child,
            shared,
            lines,
            stdin,
            reaped: false,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.shared.pid
    }

    fn output(&self) -> String {
        format!(
            "--- child {} ({}) stdout:\n{}\n--- stderr:\n{}",
            self.shared.pid,
            self.shared.role,
            lock(&self.shared.stdout),
            lock(&self.shared.stderr)
        )
    }

    /// Waits for the child's next `<tag> <text>` line and returns the text. Lines with other
    /// tags are an error (the protocol of each test is fixed).
    #[track_caller]
    pub fn expect(&mut self, tag: &str) -> String {
        step(&format!("waiting for child line {tag}"));
        match self.lines.recv_timeout(test_timeout()) {
            Ok(line) => {
                let (t, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                assert_eq!(
                    t,
                    tag,
                    "child said {line:?} instead of {tag}\n{}",
                    self.output()
                );
                rest.to_string()
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "child never said {tag} (exit: {:?})\n{}",
                    self.child.try_wait(),
                    self.output()
                )
            }
        }
    }

    /// Sends a line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, &self.shared));
    }

    /// Closes stdin and waits for a successful exit.
    #[track_caller]
    pub fn finish(mut self) {
        step(&format!("waiting for child {} to exit", self.shared.role));
        self.stdin = None;
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, &self.shared));
                    std::thread::sleep(Duration::from_millis(50));
                    assert!(
                        status.success(),
                        "child failed: {status}\n{}",
                        self.output()
                    );
                    return;
                }
                Ok(None) if start.elapsed() < test_timeout() => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => panic!("child did not exit: {other:?}\n{}", self.output()),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// In a child: tells the parent `<tag> <text>`.
pub fn tell(tag: &str, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{LINE_PREFIX}{tag} {text}");
    let _ = out.flush();
}

static STDIN_LINES: Mutex<Option<mpsc::Receiver<String>>> = Mutex::new(None);

/// In a child: waits for the parent's next line; `None` when stdin closed.
pub fn hear() -> Option<String> {
    let mut g = lock(&STDIN_LINES);
    let rx = g.get_or_insert_with(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    });
    rx.recv().ok()
}

/// In a child: waits for the parent's line `expected`.
#[track_caller]
pub fn hear_exact(expected: &str) {
    step(&format!("waiting for parent line {expected}"));
    let got = hear();
    assert_eq!(got.as_deref(), Some(expected), "parent line");
}

/// In a child: exits the whole process when the parent closes stdin (threads blocked in
/// binder reads do not stop the exit).
pub fn exit_when_parent_closes_stdin() {
    std::thread::spawn(|| {
        while hear().is_some() {}
        std::process::exit(0);
    });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// This process's effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// This process's pid.
pub fn pid() -> i32 {
    std::process::id() as i32
}

/// Parses `k=v` words.
pub fn kv(text: &str) -> HashMap<String, String> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `ALIGN(n, 8)`.
pub fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// This process's open fds and what they name, without the fd of the listing itself.
pub fn open_fds() -> BTreeMap<i32, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .flatten()
    {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if t.starts_with("/proc/") && t.ends_with("/fd") {
            continue;
        }
        out.insert(fd, target);
    }
    out
}

/// Waits (generously) until this process's fd table is back to `baseline`; panics with the
/// difference otherwise. Closing after a peer's death is asynchronous in both drivers.
#[track_caller]
/// On the shim: waits until its state dump shows `procs` binder processes, no allocated
/// buffer and no live transaction (the driver's own accounting; the kernel's is not visible
/// through the `Device` trait, so nothing is checked there).
pub fn assert_shim_accounting(procs: usize, what: &str) {
    if on_kernel() {
        return;
    }
    let want = format!("proc: active {procs} ");
    let start = Instant::now();
    loop {
        let dump = bittube::binder_ipc::shim::query_state(&shim_socket()).expect("shim state");
        if dump.contains(&want)
            && !dump.contains("buffer at")
            && dump.contains("transaction: active 0 ")
        {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("{what}: the shim's accounting did not return (want {want:?}, no buffers, no transactions):\n{dump}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn assert_fds_return_to(baseline: &BTreeMap<i32, PathBuf>, what: &str) {
    let start = Instant::now();
    loop {
        let now = open_fds();
        if &now == baseline {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let extra: Vec<_> = now
                .iter()
                .filter(|(k, _)| !baseline.contains_key(k))
                .collect();
            let gone: Vec<_> = baseline
                .iter()
                .filter(|(k, _)| !now.contains_key(k))
                .collect();
            panic!("{what}: fd table did not return to its baseline: extra {extra:?}, missing {gone:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
