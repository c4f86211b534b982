//! The small parsers every binder stream goes through: `uapi::CommandReader` (BC_/BR_
//! streams), the object walker `protocol::object::object_at` over any data and offsets,
//! `parcel::offsets_from_bytes` and `wire::body_as` / `body_as_prefix`.
//!
//! Input: the first byte splits the rest into a stream / data part and an offsets part.
//! Checked beyond "no panic": the reader's position only grows, never passes the end, and a
//! command it returns carries exactly the payload its code encodes; a found object lies
//! inside the data.
#![no_main]

use bittube::binder_ipc::parcel::offsets_from_bytes;
use bittube::binder_ipc::protocol::object::{object_at, offsets};
use bittube::binder_ipc::protocol::wire::{
    body_as, body_as_prefix, FrameHeader, OpenProcOk, WriteReadRet,
};
use bittube::binder_ipc::uapi::{command_name, ioc_size, CommandReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize * rest.len()) / 255;
    let (stream, offs) = rest.split_at(cut.min(rest.len()));

    let mut r = CommandReader::new(stream);
    let mut last = 0;
    let _ = r.peek_cmd();
    while let Some((cmd, payload)) = r.next_command() {
        assert_eq!(payload.len(), ioc_size(cmd));
        assert!(r.position() > last && r.position() <= stream.len());
        last = r.position();
        let _ = command_name(cmd);
        let _ = r.peek_cmd();
        assert_eq!(r.remaining(), stream.len() - r.position());
    }
    let _ = r.read::<u64>();
    assert!(r.position() <= stream.len());

    for off in offsets(offs) {
        if let Some(obj) = object_at(stream, off) {
            let end = (off as usize).checked_add(obj.size()).unwrap();
            assert!(end <= stream.len());
        }
    }
    let _ = offsets_from_bytes(offs);

    let hdr = FrameHeader {
        len: stream.len() as u32,
        kind: cut as u32 % 12,
        nfds: 0,
        reserved: 0,
    };
    let _ = body_as::<OpenProcOk>(&hdr, stream, hdr.kind);
    let _ = body_as_prefix::<WriteReadRet>(&hdr, stream, hdr.kind);
});
