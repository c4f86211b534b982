//! Binder helpers shared by the shim targets: a context manager in a child process (the shim
//! refuses handle 0 to callers in the manager's own OS process, as the kernel does), reading
//! BR_ streams, and the liveness round trip.

use bittube::binder_ipc::device::{Device, Errno, ShimDevice, WriteRead};
use bittube::binder_ipc::protocol::object::{object_at, offsets, Object};
use bittube::binder_ipc::uapi::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Set in the child that serves as context manager: the shim's socket path.
pub const ENV_MGR: &str = "BITTUBE_FUZZ_MGR";
/// Transaction code asking the manager to drop every handle it holds.
pub const CODE_RESET: u32 = 1;
/// Most handles the manager keeps (oldest released first).
const MAX_HELD: usize = 16;

/// What a process learnt from its BR_ returns: buffers to free, nodes the driver asked about,
/// dead-binder cookies.
#[derive(Debug, Default)]
pub struct Returns {
    /// `data.ptr.buffer` of every transaction and reply received, not freed yet.
    pub buffers: Vec<u64>,
    /// `(ptr, cookie)` of BR_INCREFS / BR_ACQUIRE.
    pub asked: Vec<(u64, u64)>,
    /// Cookies of BR_DEAD_BINDER.
    pub dead: Vec<u64>,
    /// Replies (BR_REPLY) received.
    pub replies: usize,
    /// BR_DEAD_REPLY and BR_FAILED_REPLY received.
    pub failed: usize,
    /// Transactions (BR_TRANSACTION) received, with their flags, target and handles in them.
    pub transactions: Vec<(u32, u32, Vec<u32>)>,
}

/// The transaction received in `tr`: closes the fds the driver installed for its FD objects
/// (this process owns them, as with the kernel) and returns the handles of its HANDLE objects.
pub fn take_transaction(dev: &ShimDevice, tr: &BinderTransactionData) -> Vec<u32> {
    let mut handles = Vec::new();
    let (Some(data), Some(offs)) = (
        dev.buffer_bytes(tr.data_buffer, tr.data_size as usize),
        dev.buffer_bytes(tr.data_offsets, tr.offsets_size as usize),
    ) else {
        panic!("a received transaction's buffer lies outside the area: {tr:?}");
    };
    for off in offsets(offs) {
        match object_at(data, off) {
            Some(Object::Fd(fo)) => {
                // SAFETY: the driver installed this fd for us; nobody else owns it.
                unsafe { libc::close(fo.fd()) };
            }
            Some(Object::Binder(fbo))
                if fbo.hdr.type_ == BINDER_TYPE_HANDLE
                    || fbo.hdr.type_ == BINDER_TYPE_WEAK_HANDLE =>
            {
                handles.push(fbo.handle())
            }
            _ => {}
        }
    }
    handles
}

/// Reads the BR_ stream `bytes` of `dev` into `out`.
pub fn parse_returns(dev: &ShimDevice, bytes: &[u8], out: &mut Returns) {
    let mut r = CommandReader::new(bytes);
    while let Some((cmd, payload)) = r.next_command() {
        match cmd {
            BR_TRANSACTION | BR_REPLY | BR_TRANSACTION_SEC_CTX => {
                let tr: BinderTransactionData = bytemuck::pod_read_unaligned(
                    &payload[..std::mem::size_of::<BinderTransactionData>()],
                );
                let handles = take_transaction(dev, &tr);
                // Every delivered transaction or reply has a buffer to free, whatever its flags
                // (TF_STATUS_CODE is the sender's), as with the kernel.
                out.buffers.push(tr.data_buffer);
                if cmd == BR_REPLY {
                    out.replies += 1;
                } else {
                    out.transactions.push((tr.flags, tr.code, handles));
                }
            }
            BR_INCREFS | BR_ACQUIRE => {
                let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(payload);
                out.asked.push((pc.ptr, pc.cookie));
            }
            BR_DEAD_BINDER => out.dead.push(bytemuck::pod_read_unaligned(payload)),
            BR_DEAD_REPLY | BR_FAILED_REPLY => out.failed += 1,
            _ => {}
        }
    }
}

/// One write_read of `write` with a read buffer of `read_size`; the returns go to `out`.
pub fn call(
    dev: &ShimDevice,
    write: &[u8],
    read_size: usize,
    out: &mut Returns,
) -> Result<(), Errno> {
    call_consumed(dev, write, read_size, out).0
}

/// [`call`] that also says how many bytes of `write` the driver consumed (it stops at the
/// first command that fails, as the kernel does; the commands after it were not run).
pub fn call_consumed(
    dev: &ShimDevice,
    write: &[u8],
    read_size: usize,
    out: &mut Returns,
) -> (Result<(), Errno>, usize) {
    let mut read = vec![0u8; read_size];
    let mut wr = WriteRead::new(write, &mut read);
    let r = dev.write_read(&mut wr);
    let (n, consumed) = (wr.read_consumed, wr.write_consumed);
    if trace() {
        let mut cr = CommandReader::new(&read[..n]);
        let mut names = Vec::new();
        while let Some((cmd, _)) = cr.next_command() {
            names.push(command_name(cmd));
        }
        eprintln!("write_read {} bytes -> {r:?} {names:?}", write.len());
    }
    parse_returns(dev, &read[..n], out);
    (r, consumed)
}

/// `BITTUBE_FUZZ_TRACE` set: every write_read is logged (to check what a seed reaches).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("BITTUBE_FUZZ_TRACE").is_some())
}

/// Sends a two-way transaction with no data to handle 0 and waits (bounded) for the reply;
/// frees it. Panics when the shim does not answer: that is the liveness check.
pub fn round_trip(dev: &ShimDevice, code: u32) {
    if let Err(e) = try_round_trip(dev, code) {
        panic!("the shim failed a plain round trip to the context manager: {e}");
    }
}

/// [`round_trip`] that returns what went wrong instead of panicking.
pub fn try_round_trip(dev: &ShimDevice, code: u32) -> Result<(), String> {
    let tr = BinderTransactionData {
        code,
        ..Default::default()
    };
    let mut w = CommandWriter::new();
    w.cmd_with(BC_TRANSACTION, &tr);
    let mut out = Returns::default();
    let _ = call(dev, w.as_bytes(), 0, &mut out);
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.replies == 0 {
        match call(dev, &[], 4096, &mut out) {
            Ok(()) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(format!("write_read: {e}")),
        }
        if out.failed > 0 {
            return Err("BR_DEAD_REPLY / BR_FAILED_REPLY".into());
        }
        if out.replies == 0 {
            if Instant::now() > deadline {
                return Err("no reply within 10 s".into());
            }
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    }
    free_all(dev, &mut out);
    Ok(())
}

/// Frees every buffer in `out`.
pub fn free_all(dev: &ShimDevice, out: &mut Returns) {
    let mut w = CommandWriter::new();
    for b in out.buffers.drain(..) {
        w.cmd_with(BC_FREE_BUFFER, &b);
    }
    if !w.is_empty() {
        let mut sink = Returns::default();
        let _ = call(dev, w.as_bytes(), 0, &mut sink);
    }
}

/// The context manager: keeps the handles it is sent (up to 16, with a strong ref) and
/// answers every two-way call with all of them as HANDLE objects; code [`CODE_RESET`] drops
/// them first. Runs until the shim goes away, then exits the process.
pub fn manager(socket: &Path) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let dev = ShimDevice::open(socket).unwrap_or_else(|_| exit());
    let fbo = FlatBinderObject {
        flags: FLAT_BINDER_FLAG_ACCEPTS_FDS,
        ..Default::default()
    };
    dev.set_context_mgr_ext(&fbo).unwrap_or_else(|_| exit());
    let mut held: Vec<u32> = Vec::new();
    let mut w = CommandWriter::new();
    w.cmd(BC_ENTER_LOOPER);
    loop {
        let mut out = Returns::default();
        let reply_data: Vec<u8>;
        let reply_offs: Vec<u64>;
        if call(&dev, w.as_bytes(), 8192, &mut out).is_err() {
            exit();
        }
        w.clear();
        for (ptr, cookie) in out.asked.drain(..) {
            let pc = BinderPtrCookie { ptr, cookie };
            w.cmd_with(BC_INCREFS_DONE, &pc)
                .cmd_with(BC_ACQUIRE_DONE, &pc);
        }
        let mut two_way = false;
        for (flags, code, handles) in out.transactions.drain(..) {
            if code == CODE_RESET {
                for h in held.drain(..) {
                    w.cmd_with(BC_RELEASE, &h);
                }
            }
            for h in handles {
                if !held.contains(&h) {
                    w.cmd_with(BC_ACQUIRE, &h);
                    held.push(h);
                }
            }
            while held.len() > MAX_HELD {
                w.cmd_with(BC_RELEASE, &held.remove(0));
            }
            two_way |= flags & TF_ONE_WAY == 0;
        }
        // Freed only now: the buffer holds the refs until the BC_ACQUIREs above took theirs.
        for b in out.buffers.drain(..) {
            w.cmd_with(BC_FREE_BUFFER, &b);
        }
        if two_way {
            let (d, o) = handles_parcel(&held);
            reply_data = d;
            reply_offs = o;
            let tr = BinderTransactionData {
                data_size: reply_data.len() as u64,
                offsets_size: (reply_offs.len() * 8) as u64,
                data_buffer: reply_data.as_ptr() as u64,
                data_offsets: reply_offs.as_ptr() as u64,
                ..Default::default()
            };
            w.cmd_with(BC_REPLY, &tr);
            // The reply's pointers are read within the next call, while they are alive.
            if call(&dev, w.as_bytes(), 0, &mut out).is_err() {
                exit();
            }
            w.clear();
        }
    }
}

/// HANDLE objects for `handles`, with their offsets.
fn handles_parcel(handles: &[u32]) -> (Vec<u8>, Vec<u64>) {
    let mut data = Vec::new();
    let mut offs = Vec::new();
    for &h in handles {
        offs.push(data.len() as u64);
        let fbo = FlatBinderObject {
            hdr: BinderObjectHeader {
                type_: BINDER_TYPE_HANDLE,
            },
            binder: u64::from(h),
            ..Default::default()
        };
        data.extend_from_slice(bytemuck::bytes_of(&fbo));
    }
    (data, offs)
}

fn exit() -> ! {
    // SAFETY: _exit ends the process at once (no leak report from the child's sanitizer).
    unsafe { libc::_exit(0) }
}
