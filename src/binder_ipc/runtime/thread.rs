//! The per-thread side of the runtime (libbinder's `IPCThreadState`): each OS thread keeps,
//! per binder process, the commands it has yet to write and the returns it has yet to handle;
//! `transact` writes a call and handles everything the driver returns until the answer
//! comes; pool threads loop on the same handler.

use super::binder::{CallContext, INTERFACE_TRANSACTION, PING_TRANSACTION};
use super::process::{lock, Inner, ProcessState};
use super::BinderError;
use crate::binder_ipc::device::{Errno, WriteRead};
use crate::binder_ipc::parcel::{offsets_from_bytes, Parcel};
use crate::binder_ipc::uapi::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Room for returns per read (the kernel needs 80 bytes for one transaction).
const READ_SIZE: usize = 4096;

/// The largest return payload the runtime reads: a `binder_transaction_data_secctx`.
const RET_MAX: usize = std::mem::size_of::<BinderTransactionDataSecctx>();

/// One return command, its payload copied out of the read buffer without allocating.
struct Ret {
    cmd: u32,
    payload: [u8; RET_MAX],
    len: usize,
}

impl Ret {
    fn payload(&self) -> &[u8] {
        &self.payload[..self.len]
    }
}

#[derive(Default)]
struct ThreadState {
    /// Commands not yet written.
    out: Vec<u8>,
    /// Returns read, not yet handled: `input[pos..]`.
    input: Vec<u8>,
    pos: usize,
    /// Inside a call, a served call or the pool loop: frees and releases wait for the next
    /// write instead of going out at once.
    busy: u32,
}

thread_local! {
    static STATES: RefCell<HashMap<u64, ThreadState>> = RefCell::new(HashMap::new());
}

fn with_state<R>(id: u64, f: impl FnOnce(&mut ThreadState) -> R) -> R {
    STATES.with(|s| f(s.borrow_mut().entry(id).or_default()))
}

/// Decrements `busy` when dropped, also on early return.
struct Busy(u64);

impl Busy {
    fn enter(id: u64) -> Busy {
        with_state(id, |s| s.busy += 1);
        Busy(id)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        with_state(self.0, |s| s.busy = s.busy.saturating_sub(1));
    }
}

impl Inner {
    /// Adds `bytes` to this thread's pending commands; writes them at once when the thread
    /// is not inside the runtime (they might wait forever otherwise).
    pub(super) fn queue(&self, bytes: &[u8]) {
        let idle = with_state(self.id, |s| {
            s.out.extend_from_slice(bytes);
            s.busy == 0
        });
        if idle {
            let _ = self.flush();
        }
    }

    /// Adds `bytes` and writes everything pending now.
    pub(super) fn write_now(&self, bytes: &[u8]) -> Result<(), BinderError> {
        with_state(self.id, |s| s.out.extend_from_slice(bytes));
        self.flush()
    }

    /// Writes pending commands without reading.
    fn flush(&self) -> Result<(), BinderError> {
        let out = with_state(self.id, |s| std::mem::take(&mut s.out));
        if out.is_empty() {
            return Ok(());
        }
        let mut wr = WriteRead::new(&out, &mut []);
        let r = self.device.write_read(&mut wr);
        let consumed = wr.write_consumed;
        if consumed < out.len() {
            with_state(self.id, |s| {
                let mut rest = out[consumed..].to_vec();
                rest.extend_from_slice(&s.out);
                s.out = rest;
            });
        }
        r.map_err(BinderError::Device)
    }

    /// Writes pending commands and reads returns (blocking until there are some).
    fn talk(&self) -> Result<(), BinderError> {
        let out = with_state(self.id, |s| std::mem::take(&mut s.out));
        let mut input = with_state(self.id, |s| std::mem::take(&mut s.input));
        input.clear();
        input.resize(READ_SIZE, 0);
        let mut wr = WriteRead::new(&out, &mut input);
        let r = loop {
            match self.device.write_read(&mut wr) {
                Err(Errno::EINTR) => continue,
                r => break r,
            }
        };
        let (consumed, read) = (wr.write_consumed, wr.read_consumed);
        input.truncate(read);
        with_state(self.id, |s| {
            if consumed < out.len() {
                let mut rest = out[consumed..].to_vec();
                rest.extend_from_slice(&s.out);
                s.out = rest;
            }
            s.input = input;
            s.pos = 0;
        });
        r.map_err(|e| match e {
            Errno::ECONNRESET | Errno::EPIPE | Errno::EBADF => BinderError::DeadObject,
            e => BinderError::Device(e),
        })
    }

    /// The next return command, reading from the driver when none is left.
    fn next_command(&self) -> Result<Ret, BinderError> {
        loop {
            let next = with_state(self.id, |s| {
                let mut r = CommandReader::new(&s.input[s.pos..]);
                let c = r.next_command().map(|(cmd, p)| {
                    // No return the runtime handles carries more than a secctx transaction;
                    // a longer (unknown) one is kept cut, and ignored.
                    let mut ret = Ret {
                        cmd,
                        payload: [0; RET_MAX],
                        len: p.len().min(RET_MAX),
                    };
                    ret.payload[..ret.len].copy_from_slice(&p[..ret.len]);
                    ret
                });
                s.pos += r.position();
                if c.is_none() {
                    // A cut-off tail is dropped: the driver never splits a command.
                    s.pos = s.input.len();
                }
                c
            });
            if let Some(c) = next {
                return Ok(c);
            }
            self.talk()?;
        }
    }

    /// Calls `handle`: writes the transaction and handles returns until the reply (sync) or
    /// the driver's acceptance (oneway). `data` must stay alive meanwhile (it does: borrowed).
    pub(super) fn transact(
        &self,
        handle: u32,
        code: u32,
        data: &Parcel,
        flags: u32,
    ) -> Result<Option<Parcel>, BinderError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(BinderError::DeadObject);
        }
        let tr = BinderTransactionData {
            target: handle as u64,
            code,
            flags,
            data_size: data.data().len() as u64,
            offsets_size: (data.offsets().len() * 8) as u64,
            data_buffer: data.data().as_ptr() as u64,
            data_offsets: data.offsets().as_ptr() as u64,
            ..Default::default()
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_TRANSACTION, &tr);
        with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
        let _busy = Busy::enter(self.id);
        self.wait_for_response(flags & TF_ONE_WAY == 0)
    }

    fn wait_for_response(&self, want_reply: bool) -> Result<Option<Parcel>, BinderError> {
        loop {
            let ret = self.next_command()?;
            let (cmd, payload) = (ret.cmd, ret.payload());
            match cmd {
                BR_TRANSACTION_COMPLETE | BR_ONEWAY_SPAM_SUSPECT => {
                    if !want_reply {
                        return Ok(None);
                    }
                }
                BR_DEAD_REPLY => return Err(BinderError::DeadObject),
                BR_FAILED_REPLY => return Err(BinderError::FailedTransaction),
                BR_FROZEN_REPLY => return Err(BinderError::Frozen),
                BR_REPLY => {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(payload);
                    let parcel = self.received_parcel(&tr);
                    if tr.flags & TF_STATUS_CODE != 0 {
                        let code = parcel.ok().and_then(|mut p| p.read_i32().ok()).unwrap_or(0);
                        return Err(BinderError::from_status(code));
                    }
                    return parcel.map(Some);
                }
                _ => self.execute(cmd, payload)?,
            }
        }
    }

    /// The parcel for a received buffer; dropping it frees the buffer.
    fn received_parcel(&self, tr: &BinderTransactionData) -> Result<Parcel, BinderError> {
        let weak = self.weak_self.clone();
        let addr = tr.data_buffer;
        let release: crate::binder_ipc::parcel::ReleaseFn = Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                let mut w = CommandWriter::new();
                w.cmd_with(BC_FREE_BUFFER, &addr);
                inner.queue(w.as_bytes());
            }
        });
        let data = self
            .device
            .buffer_bytes(tr.data_buffer, tr.data_size as usize);
        let offs = self
            .device
            .buffer_bytes(tr.data_offsets, tr.offsets_size as usize);
        let (Some(data), Some(offs)) = (data, offs) else {
            release();
            return Err(BinderError::BadValue(
                "the driver's buffer lies outside the buffer area".into(),
            ));
        };
        let offsets = match offsets_from_bytes(offs) {
            Ok(o) => o,
            Err(e) => {
                release();
                return Err(e.into());
            }
        };
        // SAFETY: the driver installed the fds this buffer's FD objects name into this
        // process, for this transaction only; nothing else owns them, and the parcel becomes
        // their single owner.
        let parcel = unsafe { Parcel::from_received(data, &offsets, Some(release)) }?;
        Ok(parcel)
    }

    /// Handles one return command that is not the answer to a call of this thread.
    fn execute(&self, cmd: u32, payload: &[u8]) -> Result<(), BinderError> {
        match cmd {
            BR_NOOP | BR_OK | BR_FINISHED | BR_ERROR | BR_CLEAR_DEATH_NOTIFICATION_DONE => {}
            BR_TRANSACTION_COMPLETE
            | BR_ONEWAY_SPAM_SUSPECT
            | BR_DEAD_REPLY
            | BR_FAILED_REPLY
            | BR_FROZEN_REPLY
            | BR_TRANSACTION_PENDING_FROZEN => {}
            BR_SPAWN_LOOPER
                if self.pool_started.load(Ordering::Acquire)
                    && !self.stopping.load(Ordering::Acquire) =>
            {
                self.spawn_pool_thread(false)?;
            }
            BR_SPAWN_LOOPER => {}
            BR_INCREFS | BR_ACQUIRE | BR_RELEASE | BR_DECREFS => {
                let pc: BinderPtrCookie = bytemuck::pod_read_unaligned(payload);
                let strong = cmd == BR_ACQUIRE || cmd == BR_RELEASE;
                let inc = cmd == BR_INCREFS || cmd == BR_ACQUIRE;
                self.node_refs(pc.ptr, strong, inc);
                if inc {
                    let done = if strong {
                        BC_ACQUIRE_DONE
                    } else {
                        BC_INCREFS_DONE
                    };
                    let mut w = CommandWriter::new();
                    w.cmd_with(done, &pc);
                    with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
                }
            }
            BR_DEAD_BINDER => {
                let cookie: u64 = bytemuck::pod_read_unaligned(payload);
                self.dead_binder(cookie);
                let mut w = CommandWriter::new();
                w.cmd_with(BC_DEAD_BINDER_DONE, &cookie);
                with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
            }
            BR_REPLY => {
                // A reply nobody waits for: free its buffer.
                let tr: BinderTransactionData = bytemuck::pod_read_unaligned(payload);
                drop(self.received_parcel(&tr));
            }
            BR_TRANSACTION | BR_TRANSACTION_SEC_CTX => {
                let tr: BinderTransactionData = bytemuck::pod_read_unaligned(&payload[..64]);
                self.serve(&tr)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Serves an incoming call and sends the reply.
    fn serve(&self, tr: &BinderTransactionData) -> Result<(), BinderError> {
        let _busy = Busy::enter(self.id);
        let oneway = tr.flags & TF_ONE_WAY != 0;
        let service = if tr.target == 0 {
            lock(&self.context_object).clone()
        } else {
            self.local(tr.target)
        };
        let mut reply = Parcel::new();
        let result = match (self.received_parcel(tr), service, self.weak_self.upgrade()) {
            (Ok(mut data), Some(service), Some(inner)) => {
                let call = CallContext {
                    pid: tr.sender_pid,
                    uid: tr.sender_euid,
                    oneway,
                    process: ProcessState { inner },
                };
                let r = match tr.code {
                    PING_TRANSACTION => Ok(()),
                    INTERFACE_TRANSACTION => reply
                        .write_string16(service.descriptor())
                        .map_err(Into::into),
                    code => service.on_transact(code, &mut data, &mut reply, &call),
                };
                // The buffer is freed with the reply, in one write.
                drop(data);
                r
            }
            (Err(e), _, _) => Err(e),
            (Ok(_), _, _) => Err(BinderError::DeadObject),
        };
        if oneway {
            return Ok(());
        }
        let status = [result
            .as_ref()
            .err()
            .map(BinderError::to_status)
            .unwrap_or(0)];
        let (data, offsets, flags): (&[u8], &[u64], u32) = match &result {
            Ok(()) => (reply.data(), reply.offsets(), 0),
            Err(_) => (bytemuck::cast_slice(&status), &[], TF_STATUS_CODE),
        };
        let rt = BinderTransactionData {
            flags,
            data_size: data.len() as u64,
            offsets_size: (offsets.len() * 8) as u64,
            data_buffer: data.as_ptr() as u64,
            data_offsets: offsets.as_ptr() as u64,
            ..Default::default()
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_REPLY, &rt);
        with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
        match self.wait_for_response(false) {
            // The caller may have died meanwhile: that is its business, not ours.
            Ok(_) | Err(BinderError::DeadObject) | Err(BinderError::FailedTransaction) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a pool thread (`main`: the first one, BC_ENTER_LOOPER; others answer
    /// BR_SPAWN_LOOPER with BC_REGISTER_LOOPER).
    pub(super) fn spawn_pool_thread(&self, main: bool) -> Result<(), BinderError> {
        let inner: Arc<Inner> = self.weak_self.upgrade().ok_or(BinderError::DeadObject)?;
        let n = self.pool_threads.fetch_add(1, Ordering::AcqRel);
        let count = self.pool_threads.clone();
        std::thread::Builder::new()
            .name(format!("binder:{}_{n}", std::process::id()))
            .spawn(move || {
                let _ = inner.join_pool(main);
                drop(inner);
                count.fetch_sub(1, Ordering::AcqRel);
            })
            .map_err(|_| BinderError::Device(Errno::EAGAIN))?;
        Ok(())
    }

    /// The looper: handles returns until the device fails.
    pub(super) fn join_pool(&self, main: bool) -> Result<(), BinderError> {
        let mut w = CommandWriter::new();
        w.cmd(if main {
            BC_ENTER_LOOPER
        } else {
            BC_REGISTER_LOOPER
        });
        with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
        let busy = Busy::enter(self.id);
        let result = loop {
            if self.stopping.load(Ordering::Acquire) {
                break Ok(());
            }
            match self.next_command() {
                Ok(ret) => {
                    let (cmd, payload) = (ret.cmd, ret.payload());
                    // A failed call served here is the caller's problem; the loop goes on.
                    if let Err(e @ (BinderError::DeadObject | BinderError::Device(_))) =
                        self.execute(cmd, payload)
                    {
                        if !self.device_alive() {
                            break Err(e);
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        drop(busy);
        let mut w = CommandWriter::new();
        w.cmd(BC_EXIT_LOOPER);
        let _ = self.write_now(w.as_bytes());
        let _ = self.device.thread_exit();
        STATES.with(|s| s.borrow_mut().remove(&self.id));
        result
    }

    fn device_alive(&self) -> bool {
        self.device.version().is_ok()
    }
}
