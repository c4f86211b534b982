//! evdev records through one device's mapper (keys, multi-touch protocol B, relative
//! pointer, SYN_DROPPED and resync from a snapshot, unplug): the first 8 bytes choose the
//! capabilities and axis ranges, the rest are `struct input_event` records
//! (`bittube::input_demo::evdev::fuzz_mapper`). Checked beyond "no panic": every motion the
//! mapper makes has 1 to 16 pointers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bittube::input_demo::evdev::fuzz_mapper(data);
});
