//! Typed ids for the shim's objects, so that a node id cannot be passed where a transaction id
//! is meant. All come from one counter ([`State::new_id`](super::state::State::new_id)); a
//! buffer's id is its offset in its process's area.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A binder process (`struct binder_proc`).
    ProcId
);
id_type!(
    /// A node (`struct binder_node`).
    NodeId
);
id_type!(
    /// A transaction or reply (`struct binder_transaction`).
    TxnId
);
id_type!(
    /// A death notification (`struct binder_ref_death`).
    DeathId
);
/// A process's handle for a node (`binder_ref`'s `desc`): 0 is the context manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u32);

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

id_type!(
    /// A buffer: its offset in the owning process's area (`struct binder_buffer`).
    BufferId
);

/// A binder thread: the id of its connection in the event loop (each thread connection is
/// one thread; the server also names its other connections with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(pub usize);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
