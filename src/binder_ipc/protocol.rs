//! What the device side ([`ShimDevice`](super::device::ShimDevice)) and the shim
//! ([`shim`](super::shim)) both speak: the frames on the shim's socket and the binder objects
//! found in a transaction buffer. One home, imported by both sides, so the two cannot drift.

pub mod object;
pub mod wire;
