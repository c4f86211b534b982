//! The evdev wire format: `struct input_event` records, the event types and codes this reader
//! understands (values from `linux/input-event-codes.h`), and the Linux scan code to Android
//! key code table.
//!
//! A record is 24 bytes on 64-bit Linux: `struct timeval` (`tv_sec`, `tv_usec`, 8 bytes
//! each), `type: u16`, `code: u16`, `value: i32`. [`decode_events`] turns any byte slice into
//! records: whole records only, a trailing partial record is reported, never read past.

use bytemuck::{Pod, Zeroable};
use static_assertions::const_assert_eq;

/// Synchronisation events (`EV_SYN`).
pub const EV_SYN: u16 = 0x00;
/// Keys and buttons (`EV_KEY`).
pub const EV_KEY: u16 = 0x01;
/// Relative axes (`EV_REL`).
pub const EV_REL: u16 = 0x02;
/// Absolute axes (`EV_ABS`).
pub const EV_ABS: u16 = 0x03;
/// Miscellaneous events (`EV_MSC`).
pub const EV_MSC: u16 = 0x04;
/// The largest event type (`EV_MAX`).
pub const EV_MAX: u16 = 0x1f;

/// End of a frame (`SYN_REPORT`).
pub const SYN_REPORT: u16 = 0;
/// The client's buffer overflowed; events were lost (`SYN_DROPPED`).
pub const SYN_DROPPED: u16 = 3;

/// Relative X (`REL_X`).
pub const REL_X: u16 = 0x00;
/// Relative Y (`REL_Y`).
pub const REL_Y: u16 = 0x01;
/// The largest relative axis code (`REL_MAX`).
pub const REL_MAX: u16 = 0x0f;

/// First button code (`BTN_MISC`); codes from here to [`KEY_OK`] are buttons, not keys.
pub const BTN_MISC: u16 = 0x100;
/// Left mouse button (`BTN_LEFT`).
pub const BTN_LEFT: u16 = 0x110;
/// Right mouse button (`BTN_RIGHT`).
pub const BTN_RIGHT: u16 = 0x111;
/// Middle mouse button (`BTN_MIDDLE`).
pub const BTN_MIDDLE: u16 = 0x112;
/// A finger tool (`BTN_TOOL_FINGER`).
pub const BTN_TOOL_FINGER: u16 = 0x145;
/// Touching the surface (`BTN_TOUCH`).
pub const BTN_TOUCH: u16 = 0x14a;
/// First key code after the button block (`KEY_OK`).
pub const KEY_OK: u16 = 0x160;
/// The largest key code (`KEY_MAX`).
pub const KEY_MAX: u16 = 0x2ff;

/// The MT slot being described (`ABS_MT_SLOT`).
pub const ABS_MT_SLOT: u16 = 0x2f;
/// Major axis of the touch ellipse (`ABS_MT_TOUCH_MAJOR`).
pub const ABS_MT_TOUCH_MAJOR: u16 = 0x30;
/// Minor axis of the touch ellipse (`ABS_MT_TOUCH_MINOR`).
pub const ABS_MT_TOUCH_MINOR: u16 = 0x31;
/// Contact X (`ABS_MT_POSITION_X`).
pub const ABS_MT_POSITION_X: u16 = 0x35;
/// Contact Y (`ABS_MT_POSITION_Y`).
pub const ABS_MT_POSITION_Y: u16 = 0x36;
/// Contact id; -1 ends the contact (`ABS_MT_TRACKING_ID`).
pub const ABS_MT_TRACKING_ID: u16 = 0x39;
/// Contact pressure (`ABS_MT_PRESSURE`).
pub const ABS_MT_PRESSURE: u16 = 0x3a;
/// The largest absolute axis code (`ABS_MAX`).
pub const ABS_MAX: u16 = 0x3f;

/// Device property: a direct input device, such as a touch screen (`INPUT_PROP_DIRECT`).
pub const INPUT_PROP_DIRECT: u16 = 0x01;

/// Size of one `struct input_event` on 64-bit Linux.
pub const EVENT_SIZE: usize = 24;

/// One `struct input_event`, exactly as the kernel writes it on 64-bit Linux.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct RawEvent {
    /// Seconds of the time stamp.
    pub sec: i64,
    /// Microseconds of the time stamp.
    pub usec: i64,
    /// Event type (`EV_*`).
    pub kind: u16,
    /// Event code (`SYN_*`, `KEY_*`, `REL_*`, `ABS_*`).
    pub code: u16,
    /// Value: 0/1/2 for keys (up/down/repeat), a delta or a position for axes.
    pub value: i32,
}

const_assert_eq!(std::mem::size_of::<RawEvent>(), EVENT_SIZE);

impl RawEvent {
    /// The time stamp in nanoseconds, saturating (a hostile record cannot overflow it).
    pub fn time_ns(&self) -> i64 {
        self.sec
            .saturating_mul(1_000_000_000)
            .saturating_add(self.usec.saturating_mul(1_000))
    }

    /// A record with the given type, code and value and a zero time stamp.
    pub fn new(kind: u16, code: u16, value: i32) -> RawEvent {
        RawEvent {
            kind,
            code,
            value,
            ..RawEvent::default()
        }
    }
}

/// The records in `bytes`, and the length of a trailing partial record (0 when the length is
/// a whole number of records). Never reads out of bounds, never panics.
pub fn decode_events(bytes: &[u8]) -> (impl Iterator<Item = RawEvent> + '_, usize) {
    let chunks = bytes.chunks_exact(EVENT_SIZE);
    let rest = chunks.remainder().len();
    (chunks.map(bytemuck::pod_read_unaligned::<RawEvent>), rest)
}

/// Android key codes (`AKEYCODE_*`) for Linux key codes, as Android's `Generic.kl` maps them
/// (the common keys only). Anything else is `AKEYCODE_UNKNOWN` (0), with the scan code kept.
pub fn android_key_code(scan: u16) -> i32 {
    // Letter rows: KEY_Q.. (16..25), KEY_A.. (30..38), KEY_Z.. (44..50) → AKEYCODE_A (29) + n.
    const QWERTY: [(u16, &[u8]); 3] = [(16, b"qwertyuiop"), (30, b"asdfghjkl"), (44, b"zxcvbnm")];
    for (first, letters) in QWERTY {
        if let Some(i) = scan.checked_sub(first) {
            if let Some(&c) = letters.get(usize::from(i)) {
                return 29 + i32::from(c - b'a');
            }
        }
    }
    match scan {
        // KEY_1..KEY_9 (2..10) → AKEYCODE_1.. (8..16); KEY_0 (11) → AKEYCODE_0 (7).
        2..=10 => i32::from(scan) + 6,
        11 => 7,
        1 => 111,   // KEY_ESC → AKEYCODE_ESCAPE
        14 => 67,   // KEY_BACKSPACE → AKEYCODE_DEL
        15 => 61,   // KEY_TAB
        28 => 66,   // KEY_ENTER
        29 => 113,  // KEY_LEFTCTRL → AKEYCODE_CTRL_LEFT
        42 => 59,   // KEY_LEFTSHIFT → AKEYCODE_SHIFT_LEFT
        54 => 60,   // KEY_RIGHTSHIFT
        56 => 57,   // KEY_LEFTALT → AKEYCODE_ALT_LEFT
        57 => 62,   // KEY_SPACE
        97 => 114,  // KEY_RIGHTCTRL
        100 => 58,  // KEY_RIGHTALT
        102 => 122, // KEY_HOME → AKEYCODE_MOVE_HOME
        103 => 19,  // KEY_UP → AKEYCODE_DPAD_UP
        105 => 21,  // KEY_LEFT
        106 => 22,  // KEY_RIGHT
        108 => 20,  // KEY_DOWN
        114 => 25,  // KEY_VOLUMEDOWN
        115 => 24,  // KEY_VOLUMEUP
        116 => 26,  // KEY_POWER
        158 => 4,   // KEY_BACK
        _ => 0,
    }
}

/// Meta state bit of a shift key (`AMETA_SHIFT_ON`).
pub const META_SHIFT_ON: u32 = 0x01;
/// Meta state bit of an alt key (`AMETA_ALT_ON`).
pub const META_ALT_ON: u32 = 0x02;
/// Meta state bit of a control key (`AMETA_CTRL_ON`).
pub const META_CTRL_ON: u32 = 0x1000;

/// The meta bit a modifier key sets, or 0.
pub fn meta_bit(scan: u16) -> u32 {
    match scan {
        42 | 54 => META_SHIFT_ON,
        56 | 100 => META_ALT_ON,
        29 | 97 => META_CTRL_ON,
        _ => 0,
    }
}

/// Whether `code` of an `EV_KEY` event is a button (the `BTN_*` block), not a key.
pub fn is_button(code: u16) -> bool {
    (BTN_MISC..KEY_OK).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_whole_records_and_reports_the_rest() {
        let mut bytes = Vec::new();
        for value in [1, -1] {
            let event = RawEvent {
                sec: 2,
                usec: 5,
                kind: EV_ABS,
                code: ABS_MT_TRACKING_ID,
                value,
            };
            bytes.extend_from_slice(bytemuck::bytes_of(&event));
        }
        bytes.extend_from_slice(&[0; 7]);
        let (events, rest) = decode_events(&bytes[1..]);
        assert_eq!(events.count(), 2);
        assert_eq!(rest, 6);
        let (events, rest) = decode_events(&bytes);
        let events: Vec<_> = events.collect();
        assert_eq!(rest, 7);
        assert_eq!(events[1].value, -1);
        assert_eq!(events[0].time_ns(), 2_000_005_000);
    }

    #[test]
    fn maps_common_keys() {
        assert_eq!(android_key_code(30), 29); // KEY_A → AKEYCODE_A
        assert_eq!(android_key_code(48), 30); // KEY_B
        assert_eq!(android_key_code(16), 45); // KEY_Q
        assert_eq!(android_key_code(50), 41); // KEY_M
        assert_eq!(android_key_code(11), 7);
        assert_eq!(android_key_code(2), 8);
        assert_eq!(android_key_code(0x2ff), 0);
    }
}
