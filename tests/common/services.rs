//! Small services the integration tests hand around: a binder with nothing to offer, and a
//! sink whose oneway calls never finish.

use bittube::binder_ipc::parcel::Parcel;
use bittube::binder_ipc::runtime::{BinderError, CallContext, Service, FIRST_CALL_TRANSACTION};

/// A service with nothing to offer: it answers to its descriptor and refuses every call as
/// [`BinderError::UnknownTransaction`]. What a test wants of it is a node: its identity, its
/// references, its death.
#[derive(Debug, Clone, Copy)]
pub struct Inert(pub &'static str);

/// The tests' token: an [`Inert`] service named `bittube.test.IToken`.
pub const TOKEN: Inert = Inert("bittube.test.IToken");

impl Service for Inert {
    fn descriptor(&self) -> &str {
        self.0
    }
    fn on_transact(
        &self,
        code: u32,
        _: &mut Parcel,
        _: &mut Parcel,
        _: &CallContext,
    ) -> Result<(), BinderError> {
        Err(BinderError::UnknownTransaction(code))
    }
}

/// The [`Sink`] code that never returns.
pub const SINK_BLOCK: u32 = FIRST_CALL_TRANSACTION;

/// A service whose [`SINK_BLOCK`] call never returns (its thread parks for good): the oneway
/// calls behind one such call stay queued, each a pending transaction of its sender. Every
/// other call is refused as [`BinderError::UnknownTransaction`].
#[derive(Debug, Clone, Copy)]
pub struct Sink(pub &'static str);

impl Service for Sink {
    fn descriptor(&self) -> &str {
        self.0
    }
    fn on_transact(
        &self,
        code: u32,
        data: &mut Parcel,
        reply: &mut Parcel,
        call: &CallContext,
    ) -> Result<(), BinderError> {
        if code == SINK_BLOCK {
            loop {
                std::thread::park();
            }
        }
        Inert(self.0).on_transact(code, data, reply, call)
    }
}
