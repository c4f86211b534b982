//! Input channel messages: a header `{type, seq}` and one body per type, with an exact layout.
//!
//! Every message is ONE packet: an 8-byte [`Header`] followed by the body of its type.
//!
//! | type            | body                                      | packet size            |
//! |-----------------|-------------------------------------------|------------------------|
//! | [`KIND_KEY`]      | [`KeyEvent`] (56 bytes)                  | 64                     |
//! | [`KIND_MOTION`]   | [`MotionBody`] (56) + n × [`Pointer`] (36) | 64 + 36 n, 1 ≤ n ≤ 16 |
//! | [`KIND_FINISHED`] | [`FinishedBody`] (16)                    | 24                     |
//! | [`KIND_FOCUS`]    | [`FocusBody`] (8)                        | 16                     |
//!
//! All structs are `#[repr(C)]` plain old data with no implicit padding (bytemuck's `Pod`
//! derive refuses padding), sizes and offsets pinned by static assertions. Where a field is
//! only there for alignment it is named `reserved` and written as zero; encoding starts from
//! a zeroed buffer, so no stale byte ever leaves the process.
//!
//! Decoding never trusts the bytes: the size must be exactly the size of the type named in
//! the header (for a motion, of its pointer count, which must be 1 to [`MAX_POINTERS`]), or
//! [`MessageError`] says what was wrong and nothing of the body is read. Fields are read
//! unaligned, so the receive buffer needs no particular alignment.

use std::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};
use static_assertions::const_assert_eq;

/// Message type of a key event.
pub const KIND_KEY: u32 = 1;
/// Message type of a motion event.
pub const KIND_MOTION: u32 = 2;
/// Message type of a finished signal (consumer to publisher).
pub const KIND_FINISHED: u32 = 3;
/// Message type of a focus change.
pub const KIND_FOCUS: u32 = 4;

/// The most pointers one motion event carries (Android's `MAX_POINTERS`).
pub const MAX_POINTERS: usize = 16;

/// Key action: a key went down (`AKEY_EVENT_ACTION_DOWN`).
pub const KEY_ACTION_DOWN: u32 = 0;
/// Key action: a key went up (`AKEY_EVENT_ACTION_UP`).
pub const KEY_ACTION_UP: u32 = 1;
/// Motion action: the first pointer went down (`AMOTION_EVENT_ACTION_DOWN`).
pub const MOTION_ACTION_DOWN: u32 = 0;
/// Motion action: the last pointer went up (`AMOTION_EVENT_ACTION_UP`).
pub const MOTION_ACTION_UP: u32 = 1;
/// Motion action: pointers moved (`AMOTION_EVENT_ACTION_MOVE`); these are batched.
pub const MOTION_ACTION_MOVE: u32 = 2;
/// Motion action: the gesture was cancelled (`AMOTION_EVENT_ACTION_CANCEL`).
pub const MOTION_ACTION_CANCEL: u32 = 3;
/// Input source of a keyboard (`AINPUT_SOURCE_KEYBOARD`).
pub const SOURCE_KEYBOARD: u32 = 0x0000_0101;
/// Input source of a touch screen (`AINPUT_SOURCE_TOUCHSCREEN`).
pub const SOURCE_TOUCHSCREEN: u32 = 0x0000_1002;
/// Tool type of a finger (`AMOTION_EVENT_TOOL_TYPE_FINGER`).
pub const TOOL_TYPE_FINGER: u32 = 1;

/// The header that starts every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Header {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    /// Sequence number of the event (non-zero); a finished signal carries the seq it answers.
    pub seq: u32,
}

/// A key event; also the exact wire body of a [`KIND_KEY`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct KeyEvent {
    /// The input device that produced the event.
    pub device_id: i32,
    /// Input source (`SOURCE_*`).
    pub source: u32,
    /// Display the event belongs to.
    pub display_id: i32,
    /// `KEY_ACTION_*`.
    pub action: u32,
    /// Key flags.
    pub flags: u32,
    /// Key code.
    pub key_code: i32,
    /// Hardware scan code.
    pub scan_code: i32,
    /// Meta key state.
    pub meta_state: u32,
    /// Repeat count of a held key.
    pub repeat_count: i32,
    /// Policy flags of the dispatcher.
    pub policy_flags: u32,
    /// When the key went down, `CLOCK_MONOTONIC` nanoseconds.
    pub down_time: i64,
    /// When this event happened, `CLOCK_MONOTONIC` nanoseconds.
    pub event_time: i64,
}

/// One pointer of a motion event: identity, tool and axes. Exact wire layout (36 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct Pointer {
    /// Pointer id, stable for the pointer's whole gesture.
    pub id: i32,
    /// Tool type (`TOOL_TYPE_*`).
    pub tool_type: u32,
    /// X coordinate in display pixels.
    pub x: f32,
    /// Y coordinate in display pixels.
    pub y: f32,
    /// Pressure, normally 0 to 1.
    pub pressure: f32,
    /// Size of the touch, normally 0 to 1.
    pub size: f32,
    /// Major axis of the touch ellipse.
    pub touch_major: f32,
    /// Minor axis of the touch ellipse.
    pub touch_minor: f32,
    /// Orientation in radians.
    pub orientation: f32,
}

/// The fixed part of a [`KIND_MOTION`] body; `pointer_count` [`Pointer`]s follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MotionBody {
    /// The input device that produced the event.
    pub device_id: i32,
    /// Input source (`SOURCE_*`).
    pub source: u32,
    /// Display the event belongs to.
    pub display_id: i32,
    /// `MOTION_ACTION_*`.
    pub action: u32,
    /// The button of a button press/release.
    pub action_button: u32,
    /// Motion flags.
    pub flags: u32,
    /// Buttons held down.
    pub button_state: u32,
    /// Meta key state.
    pub meta_state: u32,
    /// Number of pointers that follow, 1 to [`MAX_POINTERS`].
    pub pointer_count: u32,
    /// Alignment of the times that follow; written as zero.
    pub reserved: u32,
    /// When the gesture started, `CLOCK_MONOTONIC` nanoseconds.
    pub down_time: i64,
    /// When this sample was taken, `CLOCK_MONOTONIC` nanoseconds.
    pub event_time: i64,
}

/// The body of a [`KIND_FINISHED`] message; the seq it answers is the header's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FinishedBody {
    /// 1 if the application handled the event, 0 if not.
    pub handled: u32,
    /// Alignment of the time that follows; written as zero.
    pub reserved: u32,
    /// When the application consumed the event, `CLOCK_MONOTONIC` nanoseconds.
    pub consume_time: i64,
}

/// The body of a [`KIND_FOCUS`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FocusBody {
    /// 1 if the window gained focus, 0 if it lost it.
    pub has_focus: u32,
    /// 1 if the device is in touch mode.
    pub in_touch_mode: u32,
}

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = size_of::<Header>();
/// Size of a key message in bytes.
pub const KEY_MESSAGE_SIZE: usize = HEADER_SIZE + size_of::<KeyEvent>();
/// Size of a finished message in bytes.
pub const FINISHED_MESSAGE_SIZE: usize = HEADER_SIZE + size_of::<FinishedBody>();
/// Size of a focus message in bytes.
pub const FOCUS_MESSAGE_SIZE: usize = HEADER_SIZE + size_of::<FocusBody>();
/// Size of the largest message (a motion with [`MAX_POINTERS`] pointers).
pub const MAX_MESSAGE_SIZE: usize = motion_message_size(MAX_POINTERS);

/// Size in bytes of a motion message with `pointers` pointers.
pub const fn motion_message_size(pointers: usize) -> usize {
    HEADER_SIZE + size_of::<MotionBody>() + pointers * size_of::<Pointer>()
}

const_assert_eq!(size_of::<Header>(), 8);
const_assert_eq!(offset_of!(Header, seq), 4);
const_assert_eq!(size_of::<KeyEvent>(), 56);
const_assert_eq!(offset_of!(KeyEvent, policy_flags), 36);
const_assert_eq!(offset_of!(KeyEvent, down_time), 40);
const_assert_eq!(offset_of!(KeyEvent, event_time), 48);
const_assert_eq!(size_of::<Pointer>(), 36);
const_assert_eq!(offset_of!(Pointer, x), 8);
const_assert_eq!(offset_of!(Pointer, orientation), 32);
const_assert_eq!(size_of::<MotionBody>(), 56);
const_assert_eq!(offset_of!(MotionBody, pointer_count), 32);
const_assert_eq!(offset_of!(MotionBody, reserved), 36);
const_assert_eq!(offset_of!(MotionBody, down_time), 40);
const_assert_eq!(offset_of!(MotionBody, event_time), 48);
const_assert_eq!(size_of::<FinishedBody>(), 16);
const_assert_eq!(offset_of!(FinishedBody, consume_time), 8);
const_assert_eq!(size_of::<FocusBody>(), 8);
const_assert_eq!(KEY_MESSAGE_SIZE, 64);
const_assert_eq!(motion_message_size(1), 100);
const_assert_eq!(MAX_MESSAGE_SIZE, 640);
const_assert_eq!(FINISHED_MESSAGE_SIZE, 24);
const_assert_eq!(FOCUS_MESSAGE_SIZE, 16);

/// A motion event: the fixed fields and 1 to [`MAX_POINTERS`] pointers.
#[derive(Clone, Debug, PartialEq)]
pub struct MotionEvent {
    /// The input device that produced the event.
    pub device_id: i32,
    /// Input source (`SOURCE_*`).
    pub source: u32,
    /// Display the event belongs to.
    pub display_id: i32,
    /// `MOTION_ACTION_*`.
    pub action: u32,
    /// The button of a button press/release.
    pub action_button: u32,
    /// Motion flags.
    pub flags: u32,
    /// Buttons held down.
    pub button_state: u32,
    /// Meta key state.
    pub meta_state: u32,
    /// When the gesture started, `CLOCK_MONOTONIC` nanoseconds.
    pub down_time: i64,
    /// When this sample was taken, `CLOCK_MONOTONIC` nanoseconds.
    pub event_time: i64,
    /// The pointers, 1 to [`MAX_POINTERS`].
    pub pointers: Vec<Pointer>,
}

impl MotionEvent {
    /// A touch-screen event with one finger at `(x, y)`, taken at `event_time`.
    pub fn touch(action: u32, x: f32, y: f32, down_time: i64, event_time: i64) -> MotionEvent {
        MotionEvent {
            device_id: 1,
            source: SOURCE_TOUCHSCREEN,
            display_id: 0,
            action,
            action_button: 0,
            flags: 0,
            button_state: 0,
            meta_state: 0,
            down_time,
            event_time,
            pointers: vec![Pointer {
                id: 0,
                tool_type: TOOL_TYPE_FINGER,
                x,
                y,
                pressure: 1.0,
                size: 0.1,
                ..Pointer::default()
            }],
        }
    }

    /// Check the pointer count (1 to [`MAX_POINTERS`]).
    pub fn validate(&self) -> Result<(), MessageError> {
        let count = self.pointers.len();
        if count == 0 || count > MAX_POINTERS {
            return Err(MessageError::BadPointerCount {
                count: u32::try_from(count).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq)]
pub enum InputMessage {
    /// A key event.
    Key {
        /// Sequence number.
        seq: u32,
        /// The event.
        event: KeyEvent,
    },
    /// A motion event.
    Motion {
        /// Sequence number.
        seq: u32,
        /// The event.
        event: MotionEvent,
    },
    /// The consumer finished the event `seq`.
    Finished {
        /// The sequence number answered.
        seq: u32,
        /// Whether the application handled it.
        handled: bool,
        /// When the application consumed it, `CLOCK_MONOTONIC` nanoseconds.
        consume_time: i64,
    },
    /// The window gained or lost focus.
    Focus {
        /// Sequence number.
        seq: u32,
        /// Whether the window has focus now.
        has_focus: bool,
        /// Whether the device is in touch mode.
        in_touch_mode: bool,
    },
}

/// A message that cannot be encoded or was rejected on receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer bytes than a header.
    #[error("message of {len} bytes is shorter than the {HEADER_SIZE}-byte header")]
    TooShort {
        /// Length of the packet.
        len: usize,
    },
    /// A packet larger than a receive buffer holds (which is far larger than the largest
    /// message); it was discarded unread.
    #[error("packet of {len} bytes is far longer than the largest message ({MAX_MESSAGE_SIZE} bytes); discarded unread")]
    TooLong {
        /// Length of the packet.
        len: usize,
    },
    /// The header names no known type.
    #[error("unknown message type {kind} (seq {seq}, {len} bytes)")]
    UnknownType {
        /// The type in the header.
        kind: u32,
        /// The seq in the header.
        seq: u32,
        /// Length of the packet.
        len: usize,
    },
    /// The size does not match the type named in the header.
    #[error("wrong size for a {kind} message: {len} bytes, expected exactly {expected}")]
    WrongSize {
        /// Name of the type.
        kind: &'static str,
        /// Length of the packet.
        len: usize,
        /// The only valid length.
        expected: usize,
    },
    /// A motion message too short to hold its fixed part and one pointer.
    #[error("motion message of {len} bytes is too short: a motion needs at least {min} bytes")]
    MotionTooShort {
        /// Length of the packet.
        len: usize,
        /// Size of a motion with one pointer.
        min: usize,
    },
    /// A motion with no pointer or more than [`MAX_POINTERS`].
    #[error("bad pointer count {count}: a motion carries 1 to {MAX_POINTERS} pointers")]
    BadPointerCount {
        /// The pointer count given.
        count: u32,
    },
}

fn put<T: Pod>(buf: &mut [u8], at: usize, value: &T) -> usize {
    let bytes = bytemuck::bytes_of(value);
    buf[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

fn get<T: Pod>(bytes: &[u8], at: usize) -> T {
    bytemuck::pod_read_unaligned(&bytes[at..at + size_of::<T>()])
}

impl InputMessage {
    /// The message's sequence number (for a finished signal, the seq it answers).
    pub fn seq(&self) -> u32 {
        match self {
            InputMessage::Key { seq, .. }
            | InputMessage::Motion { seq, .. }
            | InputMessage::Finished { seq, .. }
            | InputMessage::Focus { seq, .. } => *seq,
        }
    }

    /// Name of the message type, for errors and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            InputMessage::Key { .. } => "key",
            InputMessage::Motion { .. } => "motion",
            InputMessage::Finished { .. } => "finished",
            InputMessage::Focus { .. } => "focus",
        }
    }

    /// Encode into `buf` (zeroed first, so reserved fields and unused bytes are zero);
    /// returns the message length. A motion with a bad pointer count is refused.
    pub fn encode(&self, buf: &mut [u8; MAX_MESSAGE_SIZE]) -> Result<usize, MessageError> {
        buf.fill(0);
        let len = match self {
            InputMessage::Key { seq, event } => {
                let at = put(
                    buf,
                    0,
                    &Header {
                        kind: KIND_KEY,
                        seq: *seq,
                    },
                );
                put(buf, at, event)
            }
            InputMessage::Motion { seq, event } => {
                event.validate()?;
                let at = put(
                    buf,
                    0,
                    &Header {
                        kind: KIND_MOTION,
                        seq: *seq,
                    },
                );
                let body = MotionBody {
                    device_id: event.device_id,
                    source: event.source,
                    display_id: event.display_id,
                    action: event.action,
                    action_button: event.action_button,
                    flags: event.flags,
                    button_state: event.button_state,
                    meta_state: event.meta_state,
                    pointer_count: event.pointers.len() as u32,
                    reserved: 0,
                    down_time: event.down_time,
                    event_time: event.event_time,
                };
                let mut at = put(buf, at, &body);
                for pointer in &event.pointers {
                    at = put(buf, at, pointer);
                }
                at
            }
            InputMessage::Finished {
                seq,
                handled,
                consume_time,
            } => {
                let at = put(
                    buf,
                    0,
                    &Header {
                        kind: KIND_FINISHED,
                        seq: *seq,
                    },
                );
                let body = FinishedBody {
                    handled: u32::from(*handled),
                    reserved: 0,
                    consume_time: *consume_time,
                };
                put(buf, at, &body)
            }
            InputMessage::Focus {
                seq,
                has_focus,
                in_touch_mode,
            } => {
                let at = put(
                    buf,
                    0,
                    &Header {
                        kind: KIND_FOCUS,
                        seq: *seq,
                    },
                );
                let body = FocusBody {
                    has_focus: u32::from(*has_focus),
                    in_touch_mode: u32::from(*in_touch_mode),
                };
                put(buf, at, &body)
            }
        };
        Ok(len)
    }

    /// Decode one packet. The length must be exactly that of the type in the header (and,
    /// for a motion, of its pointer count); otherwise nothing but the header is read.
    pub fn decode(bytes: &[u8]) -> Result<InputMessage, MessageError> {
        let len = bytes.len();
        if len < HEADER_SIZE {
            return Err(MessageError::TooShort { len });
        }
        let header: Header = get(bytes, 0);
        let exact = |kind: &'static str, expected: usize| {
            if len == expected {
                Ok(())
            } else {
                Err(MessageError::WrongSize {
                    kind,
                    len,
                    expected,
                })
            }
        };
        let seq = header.seq;
        match header.kind {
            KIND_KEY => {
                exact("key", KEY_MESSAGE_SIZE)?;
                Ok(InputMessage::Key {
                    seq,
                    event: get(bytes, HEADER_SIZE),
                })
            }
            KIND_MOTION => {
                let min = motion_message_size(1);
                let fixed = HEADER_SIZE + size_of::<MotionBody>();
                if len < fixed {
                    return Err(MessageError::MotionTooShort { len, min });
                }
                let body: MotionBody = get(bytes, HEADER_SIZE);
                let count = body.pointer_count;
                if count == 0 || count as usize > MAX_POINTERS {
                    return Err(MessageError::BadPointerCount { count });
                }
                exact("motion", motion_message_size(count as usize))?;
                let pointers = (0..count as usize)
                    .map(|i| get::<Pointer>(bytes, fixed + i * size_of::<Pointer>()))
                    .collect();
                Ok(InputMessage::Motion {
                    seq,
                    event: MotionEvent {
                        device_id: body.device_id,
                        source: body.source,
                        display_id: body.display_id,
                        action: body.action,
                        action_button: body.action_button,
                        flags: body.flags,
                        button_state: body.button_state,
                        meta_state: body.meta_state,
                        down_time: body.down_time,
                        event_time: body.event_time,
                        pointers,
                    },
                })
            }
            KIND_FINISHED => {
                exact("finished", FINISHED_MESSAGE_SIZE)?;
                let body: FinishedBody = get(bytes, HEADER_SIZE);
                Ok(InputMessage::Finished {
                    seq,
                    handled: body.handled != 0,
                    consume_time: body.consume_time,
                })
            }
            KIND_FOCUS => {
                exact("focus", FOCUS_MESSAGE_SIZE)?;
                let body: FocusBody = get(bytes, HEADER_SIZE);
                Ok(InputMessage::Focus {
                    seq,
                    has_focus: body.has_focus != 0,
                    in_touch_mode: body.in_touch_mode != 0,
                })
            }
            kind => Err(MessageError::UnknownType { kind, seq, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: i32) -> KeyEvent {
        KeyEvent {
            device_id: 3,
            source: SOURCE_KEYBOARD,
            display_id: 0,
            action: KEY_ACTION_DOWN,
            flags: 0,
            key_code: code,
            scan_code: 30,
            meta_state: 0,
            repeat_count: 0,
            policy_flags: 0,
            down_time: 10,
            event_time: 11,
        }
    }

    #[test]
    fn round_trips_every_type() {
        let mut motion = MotionEvent::touch(MOTION_ACTION_MOVE, 1.5, 2.5, 5, 6);
        motion.pointers.push(Pointer {
            id: 1,
            x: 7.0,
            ..motion.pointers[0]
        });
        let messages = [
            InputMessage::Key {
                seq: 1,
                event: key(42),
            },
            InputMessage::Motion {
                seq: 2,
                event: motion,
            },
            InputMessage::Finished {
                seq: 3,
                handled: true,
                consume_time: 99,
            },
            InputMessage::Focus {
                seq: 4,
                has_focus: true,
                in_touch_mode: false,
            },
        ];
        let mut buf = [0xaau8; MAX_MESSAGE_SIZE];
        for (message, size) in messages.iter().zip([64, 136, 24, 16]) {
            buf.fill(0xaa);
            let len = message.encode(&mut buf).unwrap();
            assert_eq!(len, size, "{}", message.kind_name());
            assert!(buf[len..].iter().all(|&b| b == 0), "tail is zeroed");
            assert_eq!(&InputMessage::decode(&buf[..len]).unwrap(), message);
        }
    }

    #[test]
    fn reserved_fields_are_zero_on_the_wire() {
        let mut buf = [0xffu8; MAX_MESSAGE_SIZE];
        let finished = InputMessage::Finished {
            seq: 9,
            handled: true,
            consume_time: -1,
        };
        finished.encode(&mut buf).unwrap();
        assert_eq!(&buf[12..16], &[0, 0, 0, 0]);
        let motion = InputMessage::Motion {
            seq: 1,
            event: MotionEvent::touch(MOTION_ACTION_DOWN, 0.0, 0.0, -1, -1),
        };
        motion.encode(&mut buf).unwrap();
        assert_eq!(&buf[HEADER_SIZE + 36..HEADER_SIZE + 40], &[0, 0, 0, 0]);
    }

    #[test]
    fn encode_refuses_bad_pointer_counts() {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        let mut event = MotionEvent::touch(MOTION_ACTION_MOVE, 0.0, 0.0, 0, 0);
        event.pointers.clear();
        let message = InputMessage::Motion {
            seq: 1,
            event: event.clone(),
        };
        assert_eq!(
            message.encode(&mut buf),
            Err(MessageError::BadPointerCount { count: 0 })
        );
        event.pointers = vec![Pointer::default(); 17];
        let message = InputMessage::Motion { seq: 1, event };
        assert_eq!(
            message.encode(&mut buf),
            Err(MessageError::BadPointerCount { count: 17 })
        );
    }
}
