//! [`ShimDevice`]: the crate's user-space driver shim, reached over a Unix socket.
//!
//! One `ShimDevice` is one binder process: it holds the proc connection (its closing is
//! process exit) and the read-only mapping of the buffer area the driver created. Each OS
//! thread that calls into it gets its own thread connection on first use, closed when the
//! thread exits or the device is dropped (`BINDER_THREAD_EXIT`).
//!
//! `write_read` forwards the caller's command stream as the kernel would read it: the bytes
//! that transaction pointers name are gathered with `process_vm_readv` on this process (a bad
//! address is `EFAULT`, never undefined behaviour) and the fds FD/FDA objects name travel
//! with SCM_RIGHTS. The fds of an incoming transaction arrive close-on-exec and their numbers
//! are written into the buffer before the call returns, as the kernel installs them.

use super::{Device, DeviceKind, Errno, WriteRead};
use crate::binder_ipc::protocol::object::{self, Object};
use crate::binder_ipc::protocol::wire::{self, *};
use crate::binder_ipc::uapi::*;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::mem::size_of;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::Duration;

/// How long [`ShimDevice::open`] (and the opening of a thread's connection) waits for each
/// step: the connect, and each answer of the shim.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the driver shim: one binder process.
#[derive(Clone)]
pub struct ShimDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ShimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let threads = self.inner.threads.lock().map(|t| t.len()).unwrap_or(0);
        write!(
            f,
            "ShimDevice {{ socket: {}, area: {:#x}+{:#x}, threads: {threads} }}",
            self.inner.path.display(),
            self.inner.area_base.as_ptr() as usize,
            self.inner.area_len
        )
    }
}

struct Inner {
    path: PathBuf,
    token: u64,
    _proc_conn: UnixStream,
    area_fd: OwnedFd,
    area_base: NonNull<u8>,
    area_len: usize,
    nonblock: AtomicBool,
    closed: AtomicBool,
    /// The last `BINDER_SET_MAX_THREADS` this process made (0 until then): while it is 0
    /// the kernel never asks the process for a looper (`BR_SPAWN_LOOPER`).
    max_threads: AtomicU32,
    threads: Mutex<HashMap<ThreadId, Arc<ThreadConn>>>,
    /// The fds installed with each received buffer (by its address), while the buffer is
    /// held: the only fds the shim may ask this process to close when it is freed.
    held: Mutex<HashMap<u64, Vec<i32>>>,
}

// SAFETY: `area_base` points at a read-only shared mapping owned by `Inner` for its whole
// life; reading it from any thread is sound, and nothing in this process writes through it.
unsafe impl Send for Inner {}
// SAFETY: as above; all mutable state is behind `Mutex` or atomics.
unsafe impl Sync for Inner {}

/// A thread's connection. Only its own thread sends and receives on `sock`; another thread
/// may only shut it down ([`Device::shutdown`]).
struct ThreadConn {
    sock: UnixStream,
    io: Mutex<ThreadIo>,
}

/// Buffers a thread connection reuses from call to call.
struct ThreadIo {
    /// The frame being sent.
    out: Vec<u8>,
    /// The frame being received.
    inb: Vec<u8>,
    /// Control messages of receives.
    cmsg: Vec<u8>,
    /// This process (for `process_vm_readv`), as seen in fork generation `pid_gen`.
    pid: Pid,
    /// [`FORK_GEN`] when `pid` was read.
    pid_gen: u64,
    /// The last call on this connection returned a sync `BR_TRANSACTION` from a parked
    /// caller ([`RET_CALLER_PARKED`]): the thread's next call may be its reply, answered
    /// here ([`ShimDevice::local_complete`]).
    handed_call: bool,
}

/// Counts `fork`s of this process (bumped in the child), so a cached pid is read again in a
/// forked child instead of naming the parent.
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn bump_fork_gen() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

/// This process's pid, without a `getpid` per call: cached in `io`, read again after a fork.
fn own_pid(pid: &mut Pid, pid_gen: &mut u64) -> Pid {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a child handler that only does an atomic add (async-signal
        // safe); the function lives for the whole program.
        unsafe { libc::pthread_atfork(None, None, Some(bump_fork_gen)) };
    });
    let now = FORK_GEN.load(Ordering::Relaxed);
    if now != *pid_gen {
        *pid = Pid::this();
        *pid_gen = now;
    }
    *pid
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `open_with` with this base and length and is
        // unmapped exactly once, here; no slice into it outlives `self` (buffer_bytes borrows
        // `self`).
        let _ = unsafe { munmap(self.area_base.cast(), self.area_len) };
    }
}

thread_local! {
    static THREAD_GUARD: RefCell<ThreadGuard> = const { RefCell::new(ThreadGuard(Vec::new())) };
}

/// Removes this thread's connections from every device it used, when the thread exits.
struct ThreadGuard(Vec<Weak<Inner>>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let me = std::thread::current().id();
        for dev in self.0.drain(..) {
            if let Some(dev) = dev.upgrade() {
                if let Ok(mut threads) = dev.threads.lock() {
                    threads.remove(&me);
                }
            }
        }
    }
}

fn io_err(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Sends an opening request on a fresh connection and receives its answer of kind `want`. The
/// shim may refuse the connection instead (a [`K_RESULT`] with an errno, then the close): that
/// errno is the error, also when the refusal made the send itself fail.
fn request(
    sock: BorrowedFd<'_>,
    kind: u32,
    parts: &[&[u8]],
    want: u32,
) -> Result<(FrameHeader, Vec<u8>, Vec<OwnedFd>), Errno> {
    let sent = wire::send_frame(sock, kind, parts, &[]);
    let got = wire::recv_frame(sock);
    let (hdr, body, fds) = match (sent, got) {
        (_, Ok(f)) => f,
        (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
    };
    if hdr.kind == K_RESULT && want != K_RESULT {
        let res: ResultBody = wire::body_as(&hdr, &body, K_RESULT)?;
        return Err(if res.errno != 0 {
            Errno::from_raw(res.errno)
        } else {
            Errno::EPROTO
        });
    }
    Ok((hdr, body, fds))
}

/// Maps the area the shim sent, read-only, after checking it holds `area_len` bytes and is
/// sealed against shrinking: a shorter or shrinkable file would fault (SIGBUS) here later.
fn map_area(path: &Path, area_fd: &OwnedFd, area_len: usize) -> std::io::Result<NonNull<u8>> {
    let len = NonZeroUsize::new(area_len).ok_or_else(|| io_err(Errno::EPROTO))?;
    // Map only what is there and cannot go away: a file that is shorter, or not sealed
    // against shrinking, would fault (SIGBUS) in this process later.
    let st = nix::sys::stat::fstat(area_fd).map_err(io_err)?;
    let seals = nix::fcntl::fcntl(area_fd, nix::fcntl::FcntlArg::F_GET_SEALS).map_err(io_err)?;
    if (st.st_size as u64) < area_len as u64 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "binder shim at {}: its buffer area is {} bytes, not sealed against shrinking or smaller than the {area_len} announced",
                    path.display(),
                    st.st_size
                ),
            ));
    }
    // SAFETY: a fresh shared read-only mapping of a memfd checked above to hold at least
    // `area_len` bytes and to be sealed against shrinking; it aliases no Rust object.
    let base = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            area_fd,
            0,
        )
    }
    .map_err(io_err)?;
    Ok(base.cast::<u8>())
}

impl ShimDevice {
    /// Connects to the shim listening at `path` and registers a new binder process with a
    /// buffer area of [`BINDER_VM_SIZE`] bytes.
    pub fn open(path: &Path) -> std::io::Result<ShimDevice> {
        Self::open_with(path, BINDER_VM_SIZE)
    }

    /// Connects to the shim at the path in `BITTUBE_BINDER`.
    pub fn open_from_env() -> std::io::Result<ShimDevice> {
        match std::env::var_os("BITTUBE_BINDER") {
            Some(p) => Self::open(Path::new(&p)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "BITTUBE_BINDER is not set: no binder driver shim to connect to",
            )),
        }
    }

    /// Like [`ShimDevice::open`], with a buffer area of `area_size` bytes.
    pub fn open_with(path: &Path, area_size: usize) -> std::io::Result<ShimDevice> {
        Self::open_with_timeout(path, area_size, OPEN_TIMEOUT)
    }

    /// Like [`ShimDevice::open_with`], waiting at most `timeout` (instead of
    /// [`OPEN_TIMEOUT`]) for each step of the opening: the connect, the shim's answer to the
    /// registration and to the mapping. A shim that never answers is a
    /// [`TimedOut`](std::io::ErrorKind::TimedOut) error naming the socket.
    pub fn open_with_timeout(
        path: &Path,
        area_size: usize,
        timeout: Duration,
    ) -> std::io::Result<ShimDevice> {
        let named = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("binder shim at {}: {e}", path.display()))
        };
        let conn = wire::connect_timeout(path, timeout).map_err(named)?;
        let timed_out = |e: Errno| {
            match e {
            Errno::EAGAIN => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "binder shim at {}: no answer to the opening of a binder process within {timeout:?}",
                    path.display()
                ),
            ),
            // The errno itself, so that callers can tell a cap (EUSERS, EMFILE) apart.
            e => io_err(e),
        }
        };
        let req = OpenProc {
            version: WIRE_VERSION,
            reserved: 0,
            area_size: area_size as u64,
        };
        let (hdr, body, mut fds) = request(
            conn.as_fd(),
            K_OPEN_PROC,
            &[bytemuck::bytes_of(&req)],
            K_OPEN_PROC_OK,
        )
        .map_err(timed_out)?;
        let ok: OpenProcOk = wire::body_as(&hdr, &body, K_OPEN_PROC_OK).map_err(io_err)?;
        if ok.errno != 0 {
            return Err(std::io::Error::from_raw_os_error(ok.errno));
        }
        let area_fd = fds.pop().ok_or_else(|| io_err(Errno::EPROTO))?;
        let area_len = ok.area_size as usize;
        let base = map_area(path, &area_fd, area_len)?;
        let inner = Inner {
            path: path.to_owned(),
            token: ok.token,
            _proc_conn: conn,
            area_fd,
            area_base: base,
            area_len,
            nonblock: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            max_threads: AtomicU32::new(0),
            threads: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        };
        let addr = base.as_ptr() as u64;
        wire::send_frame(
            inner._proc_conn.as_fd(),
            K_MAP_DONE,
            &[&addr.to_ne_bytes()],
            &[],
        )
        .map_err(timed_out)?;
        let (hdr, body, _) = wire::recv_frame(inner._proc_conn.as_fd()).map_err(timed_out)?;
        let res: ResultBody = wire::body_as(&hdr, &body, K_RESULT).map_err(io_err)?;
        if res.errno != 0 {
            return Err(std::io::Error::from_raw_os_error(res.errno));
        }
        // Open: from now on the proc connection only waits for its end.
        inner._proc_conn.set_read_timeout(None).map_err(named)?;
        inner._proc_conn.set_write_timeout(None).map_err(named)?;
        Ok(ShimDevice {
            inner: Arc::new(inner),
        })
    }

    /// Makes reads non-blocking (like `O_NONBLOCK` on the device): a read with no work is
    /// `EAGAIN`.
    pub fn set_nonblocking(&self, nonblock: bool) {
        self.inner.nonblock.store(nonblock, Ordering::Relaxed);
    }

    /// The socket path of the shim this device talks to.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    fn thread_conn(&self) -> Result<Arc<ThreadConn>, Errno> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Errno::ECONNRESET);
        }
        let me = std::thread::current().id();
        let mut threads = self.inner.threads.lock().map_err(|_| Errno::EIO)?;
        if let Some(c) = threads.get(&me) {
            return Ok(c.clone());
        }
        let errno = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::TimedOut => Errno::ETIMEDOUT,
            _ => Errno::from_raw(e.raw_os_error().unwrap_or(libc::ECONNREFUSED)),
        };
        let sock = wire::connect_timeout(&self.inner.path, OPEN_TIMEOUT).map_err(errno)?;
        let (hdr, body, _) = request(
            sock.as_fd(),
            K_OPEN_THREAD,
            &[&self.inner.token.to_ne_bytes()],
            K_RESULT,
        )
        .map_err(|e| {
            if e == Errno::EAGAIN {
                Errno::ETIMEDOUT
            } else {
                e
            }
        })?;
        let res: ResultBody = wire::body_as(&hdr, &body, K_RESULT)?;
        if res.errno != 0 {
            return Err(Errno::from_raw(res.errno));
        }
        // Open: a blocking read on it waits for work as long as it takes.
        sock.set_read_timeout(None).map_err(errno)?;
        sock.set_write_timeout(None).map_err(errno)?;
        let conn = Arc::new(ThreadConn {
            sock,
            io: Mutex::new(ThreadIo {
                out: Vec::new(),
                inb: Vec::new(),
                cmsg: wire::cmsg_buffer(),
                pid: Pid::this(),
                pid_gen: u64::MAX,
                handed_call: false,
            }),
        });
        threads.insert(me, conn.clone());
        drop(threads);
        let weak = Arc::downgrade(&self.inner);
        THREAD_GUARD.with(|g| g.borrow_mut().0.push(weak));
        Ok(conn)
    }

    fn ioctl(&self, cmd: u32, arg: &[u8]) -> Result<i32, Errno> {
        self.ioctl_out(cmd, arg, &mut []).map(|(v, _)| v)
    }

    /// An ioctl whose answer may write bytes back into `out` (as many as the shim sent, at
    /// most `out.len()`; how many is returned with the value).
    fn ioctl_out(&self, cmd: u32, arg: &[u8], out: &mut [u8]) -> Result<(i32, usize), Errno> {
        let conn = self.thread_conn()?;
        // Another call in between: the next one is no longer right after the hand-over.
        conn.io.lock().map_err(|_| Errno::EIO)?.handed_call = false;
        let mut req = Ioctl {
            cmd,
            ..Default::default()
        };
        req.arg[..arg.len()].copy_from_slice(arg);
        wire::send_frame(conn.sock.as_fd(), K_IOCTL, &[bytemuck::bytes_of(&req)], &[])?;
        let (hdr, body, _) = wire::recv_frame(conn.sock.as_fd())?;
        let res: ResultBody = wire::body_as_prefix(&hdr, &body, K_RESULT)?;
        let extra = &body[size_of::<ResultBody>()..];
        if extra.len() > out.len() {
            return Err(Errno::EPROTO);
        }
        if res.errno != 0 {
            return Err(Errno::from_raw(res.errno));
        }
        out[..extra.len()].copy_from_slice(extra);
        Ok((res.value, extra.len()))
    }
}

/// Copies `len` bytes at `addr` of this process into `out`; `EFAULT` when any of it is not
/// readable memory.
fn read_own_memory(pid: Pid, addr: u64, len: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
    let start = out.len();
    out.resize(start + len, 0);
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let mut local = [IoSliceMut::new(&mut out[start..])];
    match process_vm_readv(pid, &mut local, &remote) {
        Ok(n) if n == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(Errno::EFAULT)
        }
    }
}

/// Most bytes one transaction may carry before the sizes are refused outright.
const MAX_GATHER: u64 = 1 << 30;
/// Most fds one transaction may carry (FD objects and FDA entries together).
const MAX_TXN_FDS: usize = 16 * 1024;

/// Appends the [`Gathered`] record for transaction `tr` (and its payload) to `out`, and the
/// fds its objects name to `fds`. A failure is the record's status (the shim then answers
/// `BR_FAILED_REPLY`, as the kernel does); nothing here can overflow or panic.
fn gather<'a>(
    pid: Pid,
    tr: &BinderTransactionData,
    buffers_size: u64,
    out: &mut Vec<u8>,
    fds: &mut Vec<BorrowedFd<'a>>,
) {
    let rec_at = out.len();
    out.extend_from_slice(bytemuck::bytes_of(&Gathered::default()));
    let fds_at = fds.len();
    let mut rec = Gathered::default();
    match gather_payload(pid, tr, buffers_size, out, fds) {
        Ok(sg_len) => {
            rec.data_len = tr.data_size;
            rec.offsets_len = tr.offsets_size;
            rec.sg_len = sg_len;
        }
        Err(e) => {
            out.truncate(rec_at + size_of::<Gathered>());
            fds.truncate(fds_at);
            rec.status = e as i32;
        }
    }
    rec.nfds = (fds.len() - fds_at) as u32;
    out[rec_at..rec_at + size_of::<Gathered>()].copy_from_slice(bytemuck::bytes_of(&rec));
}

/// Where a scatter-gather buffer was gathered: its object's index, start in the gathered
/// bytes, length.
struct PtrBuf {
    index: u64,
    start: usize,
    len: u64,
}

/// Gathers data, offsets and the buffers and fds the objects name; returns the bytes of
/// scatter-gather buffers gathered. Walks the objects the way the shim will; it re-validates
/// everything, so an object this walk cannot place only ends the walk.
fn gather_payload<'a>(
    pid: Pid,
    tr: &BinderTransactionData,
    buffers_size: u64,
    out: &mut Vec<u8>,
    fds: &mut Vec<BorrowedFd<'a>>,
) -> Result<u64, Errno> {
    let total = tr
        .data_size
        .checked_add(tr.offsets_size)
        .and_then(|n| n.checked_add(buffers_size))
        .ok_or(Errno::ENOSPC)?;
    if total > MAX_GATHER {
        return Err(Errno::ENOSPC);
    }
    let data_at = out.len();
    read_own_memory(pid, tr.data_buffer, tr.data_size, out)?;
    let offs_at = out.len();
    read_own_memory(pid, tr.data_offsets, tr.offsets_size, out)?;
    let sg_at = out.len();
    let mut ptr_bufs: Vec<PtrBuf> = Vec::new();
    for i in 0..(sg_at - offs_at) / 8 {
        let at = offs_at + i * 8;
        let off: u64 = bytemuck::pod_read_unaligned(&out[at..at + 8]);
        let Some(obj) = object::object_at(&out[data_at..offs_at], off) else {
            break;
        };
        match obj {
            Object::Fd(fo) => push_fd(fds, fo.fd())?,
            Object::Ptr(bo) => {
                let used = (out.len() - sg_at) as u64;
                let start = out.len();
                gather_ptr(pid, bo.buffer, bo.length, buffers_size - used, out)?;
                ptr_bufs.push(PtrBuf {
                    index: i as u64,
                    start,
                    len: bo.length,
                });
            }
            Object::Fda(fa) => {
                let Some(parent) = ptr_bufs.iter().find(|p| p.index == fa.parent) else {
                    break;
                };
                gather_fda(parent, fa.parent_offset, fa.num_fds, out, fds)?;
            }
            Object::Binder(_) => {}
        }
    }
    Ok((out.len() - sg_at) as u64)
}

/// Gathers one scatter-gather buffer of `len` bytes at `addr`, padded to 8, when it fits in
/// the `left` bytes of `buffers_size` not used yet (the kernel's `bp->length > buf_left`
/// check: `BR_FAILED_REPLY`, here `EINVAL`).
fn gather_ptr(pid: Pid, addr: u64, len: u64, left: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
    let padded = len
        .checked_add(7)
        .map(|n| n & !7)
        .filter(|&p| p <= left)
        .ok_or(Errno::EINVAL)?;
    let padded = usize::try_from(padded).map_err(|_| Errno::EINVAL)?;
    let start = out.len();
    read_own_memory(pid, addr, len, out)?;
    out.resize(start + padded, 0);
    Ok(())
}

/// The fds an FDA object names: `num_fds` `u32`s at `parent_offset` inside its parent's
/// gathered bytes (outside them: `EINVAL`, as the kernel refuses it). An empty array names
/// no fds wherever it points: the kernel's `binder_translate_fd_array` returns at once for
/// it, so it is left to the shim's checks, which are the kernel's.
fn gather_fda<'a>(
    parent: &PtrBuf,
    parent_offset: u64,
    num_fds: u64,
    out: &[u8],
    fds: &mut Vec<BorrowedFd<'a>>,
) -> Result<(), Errno> {
    if num_fds == 0 {
        return Ok(());
    }
    let end = num_fds
        .checked_mul(4)
        .and_then(|n| n.checked_add(parent_offset))
        .filter(|&e| e <= parent.len)
        .ok_or(Errno::EINVAL)?;
    let from = usize::try_from(parent_offset).map_err(|_| Errno::EINVAL)?;
    let to = usize::try_from(end).map_err(|_| Errno::EINVAL)?;
    let bytes = out
        .get(parent.start.checked_add(from).ok_or(Errno::EINVAL)?..)
        .and_then(|b| b.get(..to - from))
        .ok_or(Errno::EINVAL)?;
    for raw in bytes.chunks_exact(4) {
        push_fd(fds, bytemuck::pod_read_unaligned(raw))?;
    }
    Ok(())
}

/// Adds fd number `fd` to a transaction's fds, after checking it is open and the
/// transaction has room for it.
fn push_fd<'a>(fds: &mut Vec<BorrowedFd<'a>>, fd: i32) -> Result<(), Errno> {
    if fds.len() >= MAX_TXN_FDS {
        return Err(Errno::EMFILE);
    }
    fds.push(borrow_checked(fd)?);
    Ok(())
}

/// Borrows fd number `fd` for the length of one send, after checking it is open (`EBADF`).
fn borrow_checked<'a>(fd: i32) -> Result<BorrowedFd<'a>, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    nix::fcntl::fcntl(
        // SAFETY: used only for F_GETFD, which fails cleanly on a closed number.
        unsafe { BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )?;
    // SAFETY: `fd` is open (checked just above) and the caller's transaction names it; the
    // borrow lasts only until the frame is sent, within the caller's write_read call, during
    // which the caller's own parcel keeps the fd open (as the kernel's fget would).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The parts of a [`K_WRITE_READ_RET`] body, checked against each other.
struct Answer<'b> {
    ret: WriteReadRet,
    read: &'b [u8],
    fixups: &'b [u8],
    close: &'b [u8],
}

impl<'b> Answer<'b> {
    fn parse(hdr: &FrameHeader, body: &'b [u8], nfds: usize) -> Result<Answer<'b>, Errno> {
        let ret: WriteReadRet = wire::body_as_prefix(hdr, body, K_WRITE_READ_RET)?;
        let rest = &body[size_of::<WriteReadRet>()..];
        let read_len = ret.read_len as usize;
        let fix_len = (ret.nfixups as usize).checked_mul(8).ok_or(Errno::EPROTO)?;
        let close_len = (ret.nclose as usize).checked_mul(4).ok_or(Errno::EPROTO)?;
        let want = read_len
            .checked_add(fix_len)
            .and_then(|n| n.checked_add(close_len));
        if want != Some(rest.len()) || nfds != ret.nfixups as usize {
            return Err(Errno::EPROTO);
        }
        let (read, rest) = rest.split_at(read_len);
        let (fixups, close) = rest.split_at(fix_len);
        Ok(Answer {
            ret,
            read,
            fixups,
            close,
        })
    }
}

/// The area offsets at which the shim asks this process to write the numbers of the fds it
/// sent, checked before any is written: each a 4-aligned `u32` slot inside the area and at
/// or past `start` (the received buffer's offset), no two slots overlapping. A shim that
/// named one slot twice would make one fd's number overwrite another's, and the fd whose
/// number is gone would be held by this process with no object naming it (a leak no parcel
/// could close); the whole answer is refused instead (`EPROTO`), and every fd it brought is
/// closed.
fn checked_fixups(fixups: &[u8], start: u64, area_len: u64) -> Result<Vec<u64>, Errno> {
    let offsets: Vec<u64> = fixups
        .chunks_exact(8)
        .map(bytemuck::pod_read_unaligned)
        .collect();
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    let mut free_from = start;
    for &off in &sorted {
        let end = off.checked_add(4).ok_or(Errno::EPROTO)?;
        if off % 4 != 0 || off < free_from || end > area_len {
            return Err(Errno::EPROTO);
        }
        free_from = end;
    }
    Ok(offsets)
}

/// The buffer of the transaction a read returned (`data.ptr.buffer` of its first
/// `BR_TRANSACTION`/`BR_REPLY`): the shim returns at most one per read.
fn received_buffer(read: &[u8]) -> Option<u64> {
    let mut r = CommandReader::new(read);
    while let Some((cmd, payload)) = r.next_command() {
        match cmd {
            BR_TRANSACTION | BR_REPLY | BR_TRANSACTION_SEC_CTX => {
                let tr: BinderTransactionData = bytemuck::pod_read_unaligned(
                    payload.get(..size_of::<BinderTransactionData>())?,
                );
                return Some(tr.data_buffer);
            }
            _ => {}
        }
    }
    None
}

/// Bytes a read needs left to take one more work item: the kernel stops when less than a
/// command and a `binder_transaction_data_secctx` is left.
const ITEM_ROOM: usize = 4 + size_of::<BinderTransactionDataSecctx>();

/// The buffers a consumed write stream freed (`BC_FREE_BUFFER`).
fn freed_buffers(write: &[u8]) -> Vec<u64> {
    let mut freed = Vec::new();
    let mut r = CommandReader::new(write);
    while let Some((cmd, payload)) = r.next_command() {
        if cmd == BC_FREE_BUFFER {
            freed.push(bytemuck::pod_read_unaligned(payload));
        }
    }
    freed
}

impl ShimDevice {
    /// Whether this call may be answered here, as the kernel answers it, without waiting for
    /// the shim ([`K_WRITE_READ_LOCAL`]): the thread's previous call handed it a sync
    /// transaction whose caller is parked until the reply ([`RET_CALLER_PARKED`]: that call
    /// is on top of this thread's stack, and the caller cannot move its own);
    /// the write is `BC_FREE_BUFFER`s of buffers that brought no fds and one `BC_REPLY`
    /// without objects, so nothing it does lands on the thread's own list but the reply's
    /// `BR_TRANSACTION_COMPLETE` (a thread with work of its own takes no process work);
    /// the read starts at 0 with room for the completion; the process never set a thread
    /// pool, so no read of it can become `BR_SPAWN_LOOPER`.
    fn local_complete(&self, wr: &WriteRead<'_>, start: usize) -> bool {
        if wr.read_consumed != 0
            || wr.read.len() < 4 + ITEM_ROOM
            || self.inner.max_threads.load(Ordering::SeqCst) != 0
        {
            return false;
        }
        let Ok(held) = self.inner.held.lock() else {
            return false;
        };
        let write = &wr.write[start..];
        let mut r = CommandReader::new(write);
        let mut replies = 0;
        while let Some((cmd, payload)) = r.next_command() {
            let objects = match cmd {
                BC_FREE_BUFFER => {
                    if held.contains_key(&bytemuck::pod_read_unaligned::<u64>(payload)) {
                        return false;
                    }
                    continue;
                }
                BC_REPLY => {
                    bytemuck::pod_read_unaligned::<BinderTransactionData>(payload).offsets_size
                }
                BC_REPLY_SG => {
                    bytemuck::pod_read_unaligned::<BinderTransactionDataSg>(payload)
                        .transaction_data
                        .offsets_size
                }
                _ => return false,
            };
            replies += 1;
            if objects != 0 || replies > 1 {
                return false;
            }
        }
        replies == 1 && r.position() == write.len()
    }

    /// Builds the [`K_WRITE_READ`] body for `wr` from `start` into `out`: the request, the
    /// caller's stream with a [`Gathered`] record after each transaction; the fds to send go
    /// to `fds`.
    fn encode<'w>(
        &self,
        wr: &WriteRead<'w>,
        start: usize,
        pid: Pid,
        out: &mut Vec<u8>,
        fds: &mut Vec<BorrowedFd<'w>>,
    ) {
        out.clear();
        let req = WriteReadReq {
            write_consumed: start as u64,
            write_size: wr.write.len() as u64,
            read_consumed: wr.read_consumed as u64,
            read_size: wr.read.len() as u64,
            nonblock: self.inner.nonblock.load(Ordering::Relaxed) as u32,
            reserved: 0,
        };
        out.extend_from_slice(bytemuck::bytes_of(&req));
        let write = &wr.write[start..];
        let mut r = CommandReader::new(write);
        loop {
            let at = r.position();
            let Some((cmd, payload)) = r.next_command() else {
                out.extend_from_slice(&write[at..]);
                return;
            };
            out.extend_from_slice(&write[at..r.position()]);
            match cmd {
                BC_TRANSACTION | BC_REPLY => {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(payload);
                    gather(pid, &tr, 0, out, fds);
                }
                BC_TRANSACTION_SG | BC_REPLY_SG => {
                    let sg: BinderTransactionDataSg = bytemuck::pod_read_unaligned(payload);
                    gather(pid, &sg.transaction_data, sg.buffers_size, out, fds);
                }
                _ if command_name(cmd).starts_with("BC_") => {}
                _ => {
                    // Unknown: the driver stops here; pass the rest on untouched.
                    out.extend_from_slice(&write[r.position()..]);
                    return;
                }
            }
        }
    }

    /// Installs the fds of a received transaction: each number is written into the buffer
    /// at its fixup offset (inside the area, or `EPROTO`) and recorded for that buffer. fds
    /// that came without a transaction to hold them are closed.
    fn install(&self, ans: &Answer<'_>, fds: Vec<OwnedFd>) -> Result<(), Errno> {
        if fds.is_empty() {
            return Ok(());
        }
        let Some(buffer) = received_buffer(ans.read) else {
            return Ok(());
        };
        let start = buffer
            .checked_sub(self.inner.area_base.as_ptr() as u64)
            .ok_or(Errno::EPROTO)?;
        let offsets = checked_fixups(ans.fixups, start, self.inner.area_len as u64)?;
        for (off, fd) in offsets.into_iter().zip(&fds) {
            let num = fd.as_raw_fd().to_ne_bytes();
            // On an error the read fails and `fds` closes every fd of the answer.
            nix::sys::uio::pwrite(&self.inner.area_fd, &num, off as i64)?;
        }
        let mut held = self.inner.held.lock().map_err(|_| Errno::EIO)?;
        // The numbers now live in the buffer: whoever reads the objects owns the fds, as
        // with the kernel driver.
        held.entry(buffer)
            .or_default()
            .extend(fds.into_iter().map(IntoRawFd::into_raw_fd));
        Ok(())
    }

    /// Closes the FDA fds of the buffers this call freed, as the kernel does in the freeing
    /// process. Only numbers this process received with one of those buffers are closed,
    /// whatever else the shim names.
    fn close_freed(&self, freed: &[u64], close: &[u8]) {
        let Ok(mut held) = self.inner.held.lock() else {
            return;
        };
        let mut mine: Vec<i32> = freed
            .iter()
            .filter_map(|b| held.remove(b))
            .flatten()
            .collect();
        drop(held);
        for c in close.chunks_exact(4) {
            let num: i32 = bytemuck::pod_read_unaligned(c);
            if let Some(i) = mine.iter().position(|&m| m == num) {
                mine.swap_remove(i);
                let _ = nix::unistd::close(num);
            }
        }
    }
}

// SAFETY: `buffer_area` returns the read-only shared mapping made in `open_with` of a memfd
// checked to be at least `area_len` bytes and sealed against shrinking (reads never fault);
// it is unmapped only when the last clone drops `Inner`. Nothing in this process writes
// through it (fds are installed with `pwrite` on the memfd, before the read that names the
// buffer returns), and the shim does not write into a delivered buffer before it is freed.
unsafe impl Device for ShimDevice {
    fn write_read(&self, wr: &mut WriteRead<'_>) -> Result<(), Errno> {
        let conn = self.thread_conn()?;
        let mut io = conn.io.lock().map_err(|_| Errno::EIO)?;
        let ThreadIo {
            out,
            inb,
            cmsg,
            pid,
            pid_gen,
            handed_call,
        } = &mut *io;
        let pid = own_pid(pid, pid_gen);
        let start = wr.write_consumed.min(wr.write.len());
        let local = std::mem::take(handed_call) && self.local_complete(wr, start);
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        self.encode(wr, start, pid, out, &mut fds);
        let kind = if local {
            K_WRITE_READ_LOCAL
        } else {
            K_WRITE_READ
        };
        wire::send_frame(conn.sock.as_fd(), kind, &[out], &fds)?;
        drop(fds);
        if local {
            // The kernel's answer, given here: the shim runs the write and sends nothing.
            let mut answer = [0u8; 8];
            answer[..4].copy_from_slice(&BR_NOOP.to_ne_bytes());
            answer[4..].copy_from_slice(&BR_TRANSACTION_COMPLETE.to_ne_bytes());
            wr.read[..8].copy_from_slice(&answer);
            wr.write_consumed = wr.write.len();
            wr.read_consumed = 8;
            return Ok(());
        }
        let mut fds = Vec::new();
        let hdr = wire::recv_frame_into(conn.sock.as_fd(), inb, cmsg, &mut fds)?;
        let body = inb.get(16..16 + hdr.len as usize).ok_or(Errno::EPROTO)?;
        let ans = Answer::parse(&hdr, body, fds.len())?;
        // The counters must name what this call was given: a shim cannot move them past it.
        let wc = usize::try_from(ans.ret.write_consumed).map_err(|_| Errno::EPROTO)?;
        let rc_in = wr.read_consumed;
        let rc = usize::try_from(ans.ret.read_consumed).map_err(|_| Errno::EPROTO)?;
        if wc < start || wc > wr.write.len() || rc > wr.read.len() {
            return Err(Errno::EPROTO);
        }
        let end = rc_in.checked_add(ans.read.len()).ok_or(Errno::EPROTO)?;
        wr.read
            .get_mut(rc_in..end)
            .ok_or(Errno::EPROTO)?
            .copy_from_slice(ans.read);
        *handed_call = hdr.reserved & RET_CALLER_PARKED != 0 && wire::hands_sync_call(ans.read);
        self.install(&ans, fds)?;
        if self.inner.held.lock().is_ok_and(|h| !h.is_empty()) {
            self.close_freed(&freed_buffers(&wr.write[start..wc]), ans.close);
        }
        wr.write_consumed = wc;
        wr.read_consumed = rc;
        if ans.ret.errno != 0 {
            return Err(Errno::from_raw(ans.ret.errno));
        }
        Ok(())
    }

    fn version(&self) -> Result<i32, Errno> {
        self.ioctl(BINDER_VERSION, &[])
    }
    fn set_max_threads(&self, max: u32) -> Result<(), Errno> {
        // Unknown while the call is on its way (no reply is answered here meanwhile), and
        // after a failure.
        self.inner.max_threads.store(u32::MAX, Ordering::SeqCst);
        self.ioctl(BINDER_SET_MAX_THREADS, &max.to_ne_bytes())?;
        self.inner.max_threads.store(max, Ordering::SeqCst);
        Ok(())
    }
    fn set_context_mgr(&self) -> Result<(), Errno> {
        self.ioctl(BINDER_SET_CONTEXT_MGR, &0i32.to_ne_bytes())
            .map(drop)
    }
    fn set_context_mgr_ext(&self, obj: &FlatBinderObject) -> Result<(), Errno> {
        self.ioctl(BINDER_SET_CONTEXT_MGR_EXT, bytemuck::bytes_of(obj))
            .map(drop)
    }
    fn thread_exit(&self) -> Result<(), Errno> {
        let me = std::thread::current().id();
        let conn = self
            .inner
            .threads
            .lock()
            .map_err(|_| Errno::EIO)?
            .remove(&me);
        // Closing the thread's connection is BINDER_THREAD_EXIT.
        drop(conn);
        Ok(())
    }
    fn extended_error(&self) -> Result<BinderExtendedError, Errno> {
        let mut ee = BinderExtendedError::default();
        let want = size_of::<BinderExtendedError>();
        match self.ioctl_out(
            BINDER_GET_EXTENDED_ERROR,
            &[],
            bytemuck::bytes_of_mut(&mut ee),
        )? {
            (_, n) if n == want => Ok(ee),
            _ => Err(Errno::EPROTO),
        }
    }
    fn enable_oneway_spam_detection(&self, enable: bool) -> Result<(), Errno> {
        self.ioctl(
            BINDER_ENABLE_ONEWAY_SPAM_DETECTION,
            &(enable as u32).to_ne_bytes(),
        )
        .map(drop)
    }
    fn buffer_area(&self) -> (u64, usize) {
        (self.inner.area_base.as_ptr() as u64, self.inner.area_len)
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::Shim
    }

    fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner._proc_conn.shutdown(std::net::Shutdown::Both);
        let conns: Vec<Arc<ThreadConn>> = match self.inner.threads.lock() {
            Ok(t) => t.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for c in conns {
            // Wakes the owner if it is blocked in a read: it gets ECONNRESET.
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The device's own behaviour: opening against a silent shim, and what its gather passes
    //! on. Calls to a context manager run between two OS processes (the manager is this test
    //! binary re-executed), as the kernel refuses handle 0 from the manager's own process.

    use super::*;
    use crate::binder_ipc::shim::{Driver, ENV_SOCKET};
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const CHILD_ENV: &str = "BITTUBE_DEVICE_SHIM_TEST_CHILD";
    const READY: &str = "BITTUBE-DEVICE-TEST-READY";

    fn fixups(offsets: &[u64]) -> Vec<u8> {
        offsets.iter().flat_map(|o| o.to_ne_bytes()).collect()
    }

    #[test]
    fn fixups_are_distinct_aligned_slots_inside_the_received_buffers_area() {
        let ok = fixups(&[136, 128, 132]);
        assert_eq!(checked_fixups(&ok, 128, 4096), Ok(vec![136, 128, 132]));
        assert_eq!(checked_fixups(&[], 128, 4096), Ok(vec![]));
        // One slot named twice: the first fd's number would be overwritten and leak.
        assert_eq!(
            checked_fixups(&fixups(&[128, 136, 128]), 128, 4096),
            Err(Errno::EPROTO)
        );
        // Overlapping slots, a misaligned slot, a slot before the buffer, past the area, and
        // at the end of the address space.
        for bad in [
            &[128, 130][..],
            &[130],
            &[124],
            &[4094],
            &[4096],
            &[u64::MAX - 3],
        ] {
            assert_eq!(
                checked_fixups(&fixups(bad), 128, 4096),
                Err(Errno::EPROTO),
                "{bad:?}"
            );
        }
        assert_eq!(checked_fixups(&fixups(&[4092]), 128, 4096), Ok(vec![4092]));
    }

    fn temp_socket(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bittube-devshim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn open_against_a_shim_that_never_answers_times_out_naming_the_socket() {
        // A listener that takes connections into its backlog and never accepts them: the
        // connect goes through, the registration is never answered.
        let path = temp_socket("silent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = ShimDevice::open_with_timeout(&path, 1 << 20, Duration::from_millis(100))
            .expect_err("a silent shim cannot be opened");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn open_against_a_full_backlog_times_out_naming_the_socket() {
        // A listener with a backlog of one that nobody accepts: once it is full, connect
        // itself waits for room.
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag};
        use nix::sys::socket::{SockType, UnixAddr};
        let path = temp_socket("full.sock");
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        for _ in 0..4 {
            let err = ShimDevice::open_with_timeout(&path, 1 << 20, Duration::from_millis(50))
                .expect_err("a shim that never accepts cannot be opened");
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
        let _ = std::fs::remove_file(&path);
    }

    fn ptr_obj(buffer: u64, length: u64) -> BinderBufferObject {
        BinderBufferObject::new(buffer, length, None)
    }

    fn fda_obj(num_fds: u64, parent_offset: u64) -> BinderFdArrayObject {
        BinderFdArrayObject::new(num_fds, 0, parent_offset)
    }

    /// A call to handle 0 carrying a 16-byte PTR and an FDA of `num_fds` fds at offset 64 of
    /// it (past its end, 4-aligned); returns the BR code that ends it (the reply's buffer is freed).
    fn call_with_fda(dev: &ShimDevice, num_fds: u64, fd: i32) -> u32 {
        let parent = [fd; 4];
        // A parent at data offset 0 can hold no fixup (binder_validate_fixup: "nothing to
        // fix up in"), so the objects start at 8.
        let mut data = vec![0u8; 8];
        data.extend_from_slice(bytemuck::bytes_of(&ptr_obj(parent.as_ptr() as u64, 16)));
        data.extend_from_slice(bytemuck::bytes_of(&fda_obj(num_fds, 64)));
        let offsets = [8u64, 8 + size_of::<BinderBufferObject>() as u64];
        let sg = BinderTransactionDataSg {
            transaction_data: BinderTransactionData {
                target: 0,
                code: 1,
                flags: TF_ACCEPT_FDS,
                data_size: data.len() as u64,
                offsets_size: 16,
                data_buffer: data.as_ptr() as u64,
                data_offsets: offsets.as_ptr() as u64,
                ..Default::default()
            },
            buffers_size: 16,
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION_SG, &sg);
        let mut write = w.as_bytes().to_vec();
        let mut read = vec![0u8; 256];
        loop {
            let mut wr = WriteRead::new(&write, &mut read);
            dev.write_read(&mut wr).expect("write_read");
            let mut r = CommandReader::new(wr.returned());
            let mut end = None;
            while let Some((cmd, body)) = r.next_command() {
                match cmd {
                    BR_REPLY => {
                        let tr: BinderTransactionData = bytemuck::pod_read_unaligned(body);
                        let mut f = CommandWriter::new();
                        f.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
                        let mut wr = WriteRead::new(f.as_bytes(), &mut []);
                        dev.write_read(&mut wr).expect("free the reply");
                        end = Some(cmd);
                    }
                    BR_FAILED_REPLY | BR_DEAD_REPLY => end = Some(cmd),
                    _ => {}
                }
            }
            if let Some(cmd) = end {
                return cmd;
            }
            write.clear();
        }
    }

    /// The manager: answers as many calls as [`CHILD_ENV`] says with empty replies, each
    /// right after the read that brought it, then ends.
    fn manager() {
        let calls: usize = std::env::var(CHILD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("manager: how many calls");
        let dev = ShimDevice::open_from_env().expect("manager: open");
        let node = FlatBinderObject {
            flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
            ..Default::default()
        };
        dev.set_context_mgr_ext(&node)
            .expect("manager: context manager");
        println!("\n{READY}");
        let mut w = CommandWriter::new();
        w.cmd(BC_ENTER_LOOPER);
        let mut read = vec![0u8; 256];
        let mut served = 0;
        while served < calls {
            let write = w.as_bytes().to_vec();
            let mut wr = WriteRead::new(&write, &mut read);
            dev.write_read(&mut wr).expect("manager: write_read");
            w = CommandWriter::new();
            let mut r = CommandReader::new(wr.returned());
            while let Some((cmd, body)) = r.next_command() {
                if cmd == BR_TRANSACTION {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(body);
                    w.cmd_with(BC_REPLY, &BinderTransactionData::default());
                    w.cmd_with(BC_FREE_BUFFER, &tr.data_buffer);
                    served += 1;
                }
            }
        }
        let mut wr = WriteRead::new(w.as_bytes(), &mut read);
        dev.write_read(&mut wr).expect("manager: last reply");
    }

    /// Starts this test binary's test `name` as the manager process (it must call
    /// [`manager`] when [`CHILD_ENV`] is set) and waits until it serves.
    fn spawn_manager(driver: &Driver, name: &str, calls: usize) -> std::process::Child {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("binder_ipc::device::shim::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, calls.to_string())
            .env(ENV_SOCKET, driver.socket_path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines = lines.map_while(Result::ok);
        assert!(lines.any(|l| l == READY), "the manager did not start");
        // The rest of its output (the harness's lines) drains on a thread of its own.
        std::thread::spawn(move || lines.for_each(drop));
        child
    }

    /// A reply written right after the read that handed its call over, by a process without
    /// a thread pool, to a caller parked for it, is answered by the device (BR_NOOP
    /// BR_TRANSACTION_COMPLETE, as the kernel's) and the shim sends nothing back: the shim
    /// counts it as completed, not contradicted; the callers get their replies. The first
    /// call of a fresh caller thread returns at once with its BR_TRANSACTION_COMPLETE (a new
    /// thread's `looper_need_return`) and waits for the reply in a second read: its caller
    /// was not parked when the call was handed over, so that reply takes the round trip.
    #[test]
    fn a_reply_right_after_its_call_is_completed_by_the_device() {
        if std::env::var_os(CHILD_ENV).is_some() {
            manager();
            return;
        }
        let driver = Driver::start().unwrap();
        let mut child = spawn_manager(
            &driver,
            "a_reply_right_after_its_call_is_completed_by_the_device",
            3,
        );
        let dev = ShimDevice::open(driver.socket_path()).unwrap();
        for _ in 0..3 {
            let tr = BinderTransactionData {
                code: 1,
                ..Default::default()
            };
            let mut w = CommandWriter::new();
            w.cmd_with(BC_TRANSACTION, &tr);
            let mut read = vec![0u8; 256];
            let mut write: &[u8] = w.as_bytes();
            let reply = loop {
                let mut wr = WriteRead::new(write, &mut read);
                dev.write_read(&mut wr).expect("call");
                write = &[];
                let mut r = CommandReader::new(wr.returned());
                let mut got = None;
                while let Some((cmd, body)) = r.next_command() {
                    if cmd == BR_REPLY {
                        got = Some(bytemuck::pod_read_unaligned::<BinderTransactionData>(body));
                    }
                    assert_ne!(cmd, BR_FAILED_REPLY, "the call failed");
                }
                if let Some(tr) = got {
                    break tr;
                }
            };
            let mut f = CommandWriter::new();
            f.cmd_with(BC_FREE_BUFFER, &reply.data_buffer);
            dev.write_read(&mut WriteRead::new(f.as_bytes(), &mut []))
                .expect("free the reply");
        }
        assert!(child.wait().unwrap().success(), "the manager failed");
        // Its last frame may still be on its way through the shim's loop. The first call
        // may or may not have found its caller parked (see above); the others did.
        let counts = |state: &str| -> Option<(u64, u64)> {
            let line = state
                .lines()
                .find(|l| l.contains("replies completed by the device:"))?;
            let nums: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((*nums.first()?, *nums.get(1)?))
        };
        let mut state = String::new();
        for _ in 0..1000 {
            state = driver.state().unwrap();
            if let Some((done, contradicted)) = counts(&state) {
                assert_eq!(contradicted, 0, "{state}");
                if done >= 2 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fewer than 2 replies completed by the device:\n{state}");
    }

    /// The kernel does not check an FDA of no fds against its parent (its
    /// `binder_translate_fd_array` returns at once for it): the call goes through. One with
    /// an fd at the same place is refused (BR_FAILED_REPLY).
    #[test]
    fn an_empty_fda_past_its_parents_end_goes_through() {
        if std::env::var_os(CHILD_ENV).is_some() {
            manager();
            return;
        }
        let driver = Driver::start().unwrap();
        let mut child = spawn_manager(&driver, "an_empty_fda_past_its_parents_end_goes_through", 2);
        let dev = ShimDevice::open(driver.socket_path()).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            call_with_fda(&dev, 1, file.as_raw_fd()),
            BR_FAILED_REPLY,
            "an fd past its parent's end"
        );
        for _ in 0..2 {
            let end = call_with_fda(&dev, 0, -1);
            let state = driver.state().unwrap_or_default();
            assert_eq!(end, BR_REPLY, "an empty FDA:\n{state}");
        }
        assert!(child.wait().unwrap().success(), "the manager failed");
    }
}
