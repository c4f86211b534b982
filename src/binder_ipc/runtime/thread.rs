//! The per-thread side of the runtime (libbinder's `IPCThreadState`): each OS thread keeps,
//! per binder process, the commands it has yet to write and the returns it has yet to handle;
//! `transact` writes a call and handles everything the driver returns until the answer
//! comes; pool threads loop on the same handler.

use super::binder::{CallContext, Service, INTERFACE_TRANSACTION, PING_TRANSACTION};
use super::pool::{Looper, LooperKind, Serving};
use super::process::{lock, Inner, PanicPolicy, ProcessState};
use super::BinderError;
use crate::binder_ipc::device::{DeviceKind, Errno, WriteRead};
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

/// A call this thread waits on.
#[derive(Clone, Copy)]
struct Pending {
    handle: u32,
    code: u32,
    want_reply: bool,
}

/// How a call ended, when the driver delivered it.
pub(super) enum Answer {
    /// The reply.
    Reply(Parcel),
    /// A oneway call the driver accepted.
    Accepted,
    /// The target answered with an error (a status reply).
    Error(BinderError),
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
        r.map_err(|e| self.device_error(e))
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
        r.map_err(|e| self.device_error(e))
    }

    /// A failed `BINDER_WRITE_READ`: a connection that is gone is the device going away
    /// (unless this process is shutting down).
    fn device_error(&self, e: Errno) -> BinderError {
        match e {
            Errno::ECONNRESET | Errno::EPIPE | Errno::EBADF
                if self.stopping.load(Ordering::Acquire) =>
            {
                BinderError::DeadObject
            }
            Errno::ECONNRESET | Errno::EPIPE | Errno::EBADF => {
                let reason = match self.device.kind() {
                    DeviceKind::Shim => format!("the driver shim closed the connection ({e})"),
                    _ => format!("the binder device refused this process ({e})"),
                };
                self.went_away(reason)
            }
            e => BinderError::Device(e),
        }
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
    /// An error the driver reports is `Err`; an error the target sent back is
    /// [`Answer::Error`].
    pub(super) fn transact(
        &self,
        handle: u32,
        code: u32,
        data: &Parcel,
        flags: u32,
    ) -> Result<Answer, BinderError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(BinderError::DeadObject);
        }
        if self.is_gone.load(Ordering::Acquire) {
            let reason = lock(&self.gone).clone().unwrap_or_default();
            return Err(BinderError::DeviceGone(reason));
        }
        if handle == 0 && lock(&self.context_object).is_some() {
            return Err(BinderError::OwnContextManager);
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
        let call = Pending {
            handle,
            code,
            want_reply: flags & TF_ONE_WAY == 0,
        };
        self.wait_for_response(Some(call))
    }

    /// Handles returns until the answer to `call` comes (`None`: until the driver took a
    /// reply this thread sent).
    fn wait_for_response(&self, call: Option<Pending>) -> Result<Answer, BinderError> {
        let want_reply = call.is_some_and(|c| c.want_reply);
        loop {
            let ret = self.next_command()?;
            let (cmd, payload) = (ret.cmd, ret.payload());
            match cmd {
                BR_TRANSACTION_COMPLETE | BR_ONEWAY_SPAM_SUSPECT => {
                    if !want_reply {
                        return Ok(Answer::Accepted);
                    }
                }
                // Handle 0 with no context manager is a dead reply (the kernel's rule).
                BR_DEAD_REPLY if call.is_some_and(|c| c.handle == 0) => {
                    return Err(BinderError::NoContextManager)
                }
                BR_DEAD_REPLY => return Err(BinderError::DeadObject),
                BR_FAILED_REPLY => return Err(BinderError::FailedTransaction),
                BR_FROZEN_REPLY => return Err(BinderError::Frozen),
                BR_REPLY => {
                    let tr: BinderTransactionData = bytemuck::pod_read_unaligned(payload);
                    let mut parcel = self.received_parcel(&tr)?;
                    if tr.flags & TF_STATUS_CODE != 0 {
                        let code = call.map_or(0, |c| c.code);
                        return Ok(Answer::Error(BinderError::read_reply(&mut parcel, code)));
                    }
                    return Ok(Answer::Reply(parcel));
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
                self.spawn_pool_thread(LooperKind::Registered)?;
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
        let _serving = self.weak_self.upgrade().map(Serving::enter);
        let oneway = tr.flags & TF_ONE_WAY != 0;
        let mut reply = Parcel::new();
        // The call's buffer is freed (dropped inside) before the reply goes out, in one write.
        // The reply holds the binders it carries until it is dropped, after the write below.
        let result = self.dispatch(tr, oneway, &mut reply);
        if oneway {
            if let Err(e) = &result {
                let what = format!("code {} to node {:#x}", tr.code, tr.target);
                self.oneway_failed(&what, e);
            }
            return Ok(());
        }
        let mut error_body = Parcel::new();
        let status_code = match result {
            Ok(()) => false,
            // An AIDL exception travels inside a normal reply, as libbinder's Status does.
            Err(BinderError::Exception(ex)) => {
                reply = Parcel::new();
                reply.write_exception(&ex)?;
                false
            }
            Err(e) => {
                e.write_reply(&mut error_body)?;
                true
            }
        };
        let (body, flags) = match status_code {
            true => (&error_body, TF_STATUS_CODE),
            false => (&reply, 0),
        };
        let rt = BinderTransactionData {
            flags,
            data_size: body.data().len() as u64,
            offsets_size: (body.offsets().len() * 8) as u64,
            data_buffer: body.data().as_ptr() as u64,
            data_offsets: body.offsets().as_ptr() as u64,
            ..Default::default()
        };
        let mut w = CommandWriter::new();
        w.cmd_with(BC_REPLY, &rt);
        with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
        match self.wait_for_response(None) {
            // The caller may have died meanwhile: that is its business, not ours.
            Ok(_) | Err(BinderError::DeadObject) | Err(BinderError::FailedTransaction) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finds the call's target and runs it: the runtime answers ping and interface queries,
    /// the service the rest.
    fn dispatch(
        &self,
        tr: &BinderTransactionData,
        oneway: bool,
        reply: &mut Parcel,
    ) -> Result<(), BinderError> {
        let service = if tr.target == 0 {
            lock(&self.context_object).clone()
        } else {
            self.local(tr.target)
        };
        let mut data = self.received_parcel(tr)?;
        let (Some(service), Some(inner)) = (service, self.weak_self.upgrade()) else {
            return Err(BinderError::DeadObject);
        };
        let call = CallContext {
            pid: tr.sender_pid,
            uid: tr.sender_euid,
            oneway,
            process: ProcessState { inner },
        };
        match tr.code {
            PING_TRANSACTION => Ok(()),
            INTERFACE_TRANSACTION => reply
                .write_string16(service.descriptor())
                .map_err(Into::into),
            code => self.call_service(&*service, code, &mut data, reply, &call),
        }
    }

    /// Runs `on_transact`, catching a panic: the caller gets [`BinderError::ServiceFailed`]
    /// (or, with [`PanicPolicy::Abort`], the process aborts).
    fn call_service(
        &self,
        service: &dyn Service,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        let run = std::panic::AssertUnwindSafe(|| service.on_transact(code, data, reply, call));
        match std::panic::catch_unwind(run) {
            Ok(r) => r,
            Err(payload) => {
                // What the service half wrote (fds included) is dropped, never sent.
                *reply = Parcel::new();
                Err(self.service_panicked(service.descriptor(), code, payload.as_ref()))
            }
        }
    }

    /// Counts and logs a panic of a service; aborts the process under [`PanicPolicy::Abort`].
    fn service_panicked(
        &self,
        descriptor: &str,
        code: u32,
        payload: &(dyn std::any::Any + Send),
    ) -> BinderError {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".into());
        let n = self.panics.fetch_add(1, Ordering::AcqRel) + 1;
        let text = format!("{descriptor} panicked in call code {code}: {what}");
        if self.panic_policy() == PanicPolicy::Abort {
            eprintln!("bittube: binder service {text}; aborting (PanicPolicy::Abort)");
            std::process::abort();
        }
        eprintln!(
            "bittube: binder service {text} (panic {n} of this process; the caller gets the error)"
        );
        BinderError::ServiceFailed(text)
    }

    /// Starts a pool thread of `kind` (the first one and replacements enter with
    /// BC_ENTER_LOOPER; threads the driver asked for answer BR_SPAWN_LOOPER with
    /// BC_REGISTER_LOOPER).
    pub(super) fn spawn_pool_thread(&self, kind: LooperKind) -> Result<(), BinderError> {
        let inner: Arc<Inner> = self.weak_self.upgrade().ok_or(BinderError::DeadObject)?;
        let n = self.pool_threads.fetch_add(1, Ordering::AcqRel);
        let count = self.pool_threads.clone();
        let looper = Looper::count(inner.clone(), kind);
        let spawned = std::thread::Builder::new()
            .name(format!("binder:{}_{n}", std::process::id()))
            .spawn(move || {
                let _ = inner.join_pool(&looper);
                drop(looper);
                drop(inner);
                count.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.pool_threads.fetch_sub(1, Ordering::AcqRel);
            return Err(BinderError::Device(Errno::EAGAIN));
        }
        Ok(())
    }

    /// The looper: handles returns until the device fails (or, for a replacement looper,
    /// until it is surplus).
    pub(super) fn join_pool(&self, looper: &Looper) -> Result<(), BinderError> {
        looper.mark_thread();
        let mut w = CommandWriter::new();
        w.cmd(match looper.kind() {
            LooperKind::Main | LooperKind::Replacement => BC_ENTER_LOOPER,
            LooperKind::Registered => BC_REGISTER_LOOPER,
        });
        with_state(self.id, |s| s.out.extend_from_slice(w.as_bytes()));
        let busy = Busy::enter(self.id);
        let result = loop {
            if self.stopping.load(Ordering::Acquire) {
                break Ok(());
            }
            let ret = match self.next_command() {
                Ok(ret) => ret,
                Err(_) if self.stopping.load(Ordering::Acquire) => break Ok(()),
                Err(e) => break Err(e),
            };
            // A failed call served here is the caller's problem; the loop goes on, unless
            // the device itself is gone.
            match self.execute(ret.cmd, ret.payload()) {
                Err(e @ BinderError::DeviceGone(_)) => break Err(e),
                Err(BinderError::DeadObject | BinderError::Device(_)) if !self.device_alive() => {
                    if self.stopping.load(Ordering::Acquire) {
                        break Ok(());
                    }
                    break Err(self.went_away("the binder device stopped answering".into()));
                }
                _ => {}
            }
            if looper.retire_if_surplus() {
                break Ok(());
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
