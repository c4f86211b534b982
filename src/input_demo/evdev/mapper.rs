//! One device's state machine (InputReader's mappers, in small): raw evdev records in, the
//! crate's key and motion events out. Pure: no fds, so every byte sequence can be fed to it
//! (tests and the fuzz entry [`super::fuzz_mapper`]).
//!
//! - **Keys** (`EV_KEY` outside the button block) become [`KeyEvent`]s at once, with the
//!   Android key code of [`android_key_code`], the scan code, the meta state of the held
//!   modifiers and, for the kernel's auto-repeat (value 2), a growing repeat count.
//! - **Multi-touch protocol B**: `ABS_MT_SLOT` selects a slot, `ABS_MT_TRACKING_ID` starts
//!   (≥ 0) or ends (-1) its contact, positions/pressure/size update it; at `SYN_REPORT` the
//!   frame is cooked as Android's TouchInputMapper does: first the contacts that ended
//!   (`POINTER_UP`, or `UP` for the last one, at their last positions), then one `MOVE` if a
//!   remaining contact changed, then the new contacts (`DOWN` for the first, `POINTER_DOWN`
//!   otherwise). Pointer ids are the smallest free ids, stable for a contact's life; pointers
//!   are listed by id; the action's pointer index is shifted by 8 bits.
//! - **Relative pointers** (`REL_X`/`REL_Y`, `BTN_LEFT`/`RIGHT`/`MIDDLE`): a cursor clamped to
//!   the display; `HOVER_MOVE` without buttons, `DOWN`/`MOVE`/`UP` with them.
//! - **`SYN_DROPPED`**: everything up to the next `SYN_REPORT` is discarded (counted), then
//!   [`Mapper::process`] answers [`Step::Resync`] and the reader reads the device's state
//!   ([`Snapshot`]) for [`Mapper::resync`], which emits what changed as a normal frame.
//! - **Unplug**: [`Mapper::cancel`] ends a gesture with `CANCEL` and held keys with `UP`
//!   flagged canceled.
//!
//! Everything is bounded: at most [`MAX_SLOTS`] slots, a key bitmap of `KEY_MAX + 1` bits,
//! slot numbers and codes out of range are ignored and counted.

use super::codes::*;
use crate::input_demo::message::{
    KeyEvent, MotionEvent, Pointer, KEY_ACTION_DOWN, KEY_ACTION_UP, MAX_POINTERS,
    MOTION_ACTION_CANCEL, MOTION_ACTION_DOWN, MOTION_ACTION_MOVE, MOTION_ACTION_UP,
    SOURCE_KEYBOARD, SOURCE_TOUCHSCREEN, TOOL_TYPE_FINGER,
};

/// The most MT slots tracked (more than the dispatcher's [`MAX_POINTERS`] cannot be sent).
pub const MAX_SLOTS: usize = MAX_POINTERS;
/// Motion action: a further pointer went down (`AMOTION_EVENT_ACTION_POINTER_DOWN`).
pub const MOTION_ACTION_POINTER_DOWN: u32 = 5;
/// Motion action: a pointer other than the last went up (`AMOTION_EVENT_ACTION_POINTER_UP`).
pub const MOTION_ACTION_POINTER_UP: u32 = 6;
/// Motion action: a hovering pointer moved (`AMOTION_EVENT_ACTION_HOVER_MOVE`).
pub const MOTION_ACTION_HOVER_MOVE: u32 = 7;
/// Shift of the pointer index in a `POINTER_DOWN`/`POINTER_UP` action.
pub const ACTION_POINTER_INDEX_SHIFT: u32 = 8;
/// Input source of a mouse (`AINPUT_SOURCE_MOUSE`).
pub const SOURCE_MOUSE: u32 = 0x0000_2002;
/// Tool type of a mouse (`AMOTION_EVENT_TOOL_TYPE_MOUSE`).
pub const TOOL_TYPE_MOUSE: u32 = 3;
/// Key flag: the key was canceled, e.g. its device went away (`AKEY_EVENT_FLAG_CANCELED`).
pub const KEY_FLAG_CANCELED: u32 = 0x20;

const KEY_WORDS: usize = (KEY_MAX as usize + 1) / 64;

/// A bitmap of key codes `0..=KEY_MAX`, as `EVIOCGKEY` returns it (little-endian bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyBits([u64; KEY_WORDS]);

impl KeyBits {
    /// Size of the bitmap in bytes (the `len` of `EVIOCGKEY`).
    pub const BYTES: usize = KEY_WORDS * 8;

    /// From `EVIOCGKEY`'s bytes (shorter input leaves the rest clear).
    pub fn from_bytes(bytes: &[u8]) -> KeyBits {
        let mut bits = KeyBits::default();
        for (i, &b) in bytes.iter().take(Self::BYTES).enumerate() {
            bits.0[i / 8] |= u64::from(b) << ((i % 8) * 8);
        }
        bits
    }

    /// Whether `code` is set (codes beyond `KEY_MAX` never are).
    pub fn get(&self, code: u16) -> bool {
        let c = usize::from(code);
        self.0.get(c / 64).is_some_and(|w| w >> (c % 64) & 1 == 1)
    }

    /// Set or clear `code` (ignored beyond `KEY_MAX`).
    pub fn set(&mut self, code: u16, on: bool) {
        let c = usize::from(code);
        if let Some(w) = self.0.get_mut(c / 64) {
            let bit = 1u64 << (c % 64);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    /// The codes that are set.
    pub fn codes(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=KEY_MAX).filter(|&c| self.get(c))
    }
}

/// The range of an absolute axis (`struct input_absinfo`'s minimum and maximum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AbsRange {
    /// Smallest value.
    pub min: i32,
    /// Largest value.
    pub max: i32,
}

impl AbsRange {
    /// `value` scaled onto `0..size` as Android scales touch axes: `size / (max - min + 1)`
    /// per unit.
    pub fn scale(&self, value: i32, size: f32) -> f32 {
        let span = (i64::from(self.max) - i64::from(self.min) + 1).max(1);
        let offset = i64::from(value) - i64::from(self.min);
        (offset as f64 * f64::from(size) / span as f64) as f32
    }

    /// `value` as a fraction of the range, 0 to 1 (1 for an empty range).
    pub fn normalize(&self, value: i32) -> f32 {
        let span = i64::from(self.max) - i64::from(self.min);
        if span <= 0 {
            return 1.0;
        }
        let offset = (i64::from(value) - i64::from(self.min)).clamp(0, span);
        (offset as f64 / span as f64) as f32
    }
}

/// What a device can do, as its `EVIOCGBIT`/`EVIOCGABS` answers say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// It has keys outside the button block.
    pub keyboard: bool,
    /// A multi-touch (protocol B) surface.
    pub touch: Option<TouchAxes>,
    /// A relative pointer with `REL_X`, `REL_Y` and `BTN_LEFT`.
    pub pointer: bool,
}

/// The axes of a multi-touch surface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TouchAxes {
    /// Slots used (`ABS_MT_SLOT`'s maximum + 1, at most [`MAX_SLOTS`]).
    pub slots: usize,
    /// `ABS_MT_POSITION_X`.
    pub x: AbsRange,
    /// `ABS_MT_POSITION_Y`.
    pub y: AbsRange,
    /// `ABS_MT_PRESSURE`, if the device reports it.
    pub pressure: Option<AbsRange>,
    /// `ABS_MT_TOUCH_MAJOR`, if the device reports it.
    pub major: Option<AbsRange>,
}

/// The display the touch axes and the cursor map onto, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Display {
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

/// A device's state read back after `SYN_DROPPED` (`EVIOCGKEY`, `EVIOCGABS(ABS_MT_SLOT)`,
/// `EVIOCGMTSLOTS` per axis). Per-slot vectors may be shorter than the slot count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Keys and buttons down.
    pub keys: KeyBits,
    /// The current slot.
    pub slot: i32,
    /// `ABS_MT_TRACKING_ID` per slot.
    pub tracking_id: Vec<i32>,
    /// `ABS_MT_POSITION_X` per slot.
    pub x: Vec<i32>,
    /// `ABS_MT_POSITION_Y` per slot.
    pub y: Vec<i32>,
    /// `ABS_MT_PRESSURE` per slot.
    pub pressure: Vec<i32>,
    /// `ABS_MT_TOUCH_MAJOR` per slot.
    pub major: Vec<i32>,
}

/// What the mapper made of one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A key event.
    Key(KeyEvent),
    /// A motion event.
    Motion(MotionEvent),
}

/// What the reader must do after [`Mapper::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing more.
    Continue,
    /// Events were dropped and the frame after them is complete: read a [`Snapshot`] and
    /// call [`Mapper::resync`] with this time.
    Resync {
        /// Time of the `SYN_REPORT` that ended the drop, nanoseconds.
        time: i64,
    },
}

/// Counters of one device's mapper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapperStats {
    /// Records processed.
    pub records: u64,
    /// `SYN_REPORT` frames.
    pub frames: u64,
    /// `SYN_DROPPED` seen.
    pub dropped: u64,
    /// Records discarded between `SYN_DROPPED` and the next `SYN_REPORT`.
    pub discarded: u64,
    /// Resyncs done from a [`Snapshot`].
    pub resyncs: u64,
    /// Records ignored: unknown types or codes, out-of-range slots, key ups of keys not down.
    pub ignored: u64,
    /// Contacts beyond [`MAX_SLOTS`] or frames with more contacts than pointers allowed.
    pub excess_contacts: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    tracking_id: i32,
    x: i32,
    y: i32,
    pressure: i32,
    major: i32,
}

const NO_CONTACT: i32 = -1;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Active {
    slot: usize,
    tracking_id: i32,
    pointer: Pointer,
}

/// One device's state machine; see the module doc.
#[derive(Clone, Debug)]
pub struct Mapper {
    device_id: i32,
    caps: Capabilities,
    display: Display,
    keys: KeyBits,
    key_times: Vec<(u16, i64, i32)>,
    slots: Vec<Slot>,
    slot: Option<usize>,
    active: Vec<Active>,
    touch_down_time: i64,
    cursor: (f32, f32),
    rel: (i64, i64),
    buttons: u32,
    pointer_down_time: i64,
    dropping: bool,
    stats: MapperStats,
}

fn button_bit(code: u16) -> u32 {
    match code {
        BTN_LEFT => 1,
        BTN_RIGHT => 2,
        BTN_MIDDLE => 4,
        _ => 0,
    }
}

impl Mapper {
    /// A mapper for device `device_id` with `caps`, mapping onto `display`.
    pub fn new(device_id: i32, caps: Capabilities, display: Display) -> Mapper {
        let slots = caps.touch.map_or(0, |t| t.slots.min(MAX_SLOTS));
        Mapper {
            device_id,
            caps,
            display,
            keys: KeyBits::default(),
            key_times: Vec::new(),
            slots: vec![
                Slot {
                    tracking_id: NO_CONTACT,
                    ..Slot::default()
                };
                slots
            ],
            slot: (slots > 0).then_some(0),
            active: Vec::new(),
            touch_down_time: 0,
            cursor: (display.width / 2.0, display.height / 2.0),
            rel: (0, 0),
            buttons: 0,
            pointer_down_time: 0,
            dropping: false,
            stats: MapperStats::default(),
        }
    }

    /// The device's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The counters.
    pub fn stats(&self) -> MapperStats {
        self.stats
    }

    /// Pointers of the gesture in progress (touch), by id.
    pub fn active_pointers(&self) -> Vec<Pointer> {
        self.active.iter().map(|a| a.pointer).collect()
    }

    /// Process one record; events go to `out`.
    pub fn process(&mut self, event: RawEvent, out: &mut Vec<Output>) -> Step {
        self.stats.records += 1;
        if self.dropping {
            if (event.kind, event.code) == (EV_SYN, SYN_REPORT) {
                self.dropping = false;
                return Step::Resync {
                    time: event.time_ns(),
                };
            }
            self.stats.discarded += 1;
            return Step::Continue;
        }
        match (event.kind, event.code) {
            (EV_SYN, SYN_REPORT) => {
                self.stats.frames += 1;
                self.frame(event.time_ns(), out);
            }
            (EV_SYN, SYN_DROPPED) => {
                self.stats.dropped += 1;
                self.dropping = true;
            }
            (EV_KEY, code) => self.key(code, event.value, event.time_ns(), out),
            (EV_ABS, code) => self.abs(code, event.value),
            (EV_REL, REL_X) => self.rel.0 = self.rel.0.saturating_add(event.value.into()),
            (EV_REL, REL_Y) => self.rel.1 = self.rel.1.saturating_add(event.value.into()),
            (EV_SYN | EV_MSC | EV_REL, _) => {}
            _ => self.stats.ignored += 1,
        }
        Step::Continue
    }

    fn key(&mut self, code: u16, value: i32, time: i64, out: &mut Vec<Output>) {
        if is_button(code) {
            let bit = button_bit(code);
            if self.caps.pointer && bit != 0 {
                self.keys.set(code, value != 0);
            }
            return; // BTN_TOUCH and tools: the MT slots tell the same.
        }
        if code > KEY_MAX || !self.caps.keyboard {
            self.stats.ignored += 1;
            return;
        }
        match value {
            0 if self.keys.get(code) => {
                self.keys.set(code, false);
                let (down, _) = self.take_key_time(code).unwrap_or((time, 0));
                out.push(Output::Key(self.key_event(
                    code,
                    KEY_ACTION_UP,
                    down,
                    time,
                    0,
                )));
            }
            1 | 2 => {
                let repeat = if value == 2 && self.keys.get(code) {
                    self.bump_repeat(code)
                } else {
                    self.take_key_time(code);
                    self.key_times.push((code, time, 0));
                    0
                };
                self.keys.set(code, true);
                let down = self.key_down_time(code).unwrap_or(time);
                out.push(Output::Key(self.key_event(
                    code,
                    KEY_ACTION_DOWN,
                    down,
                    time,
                    repeat,
                )));
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn take_key_time(&mut self, code: u16) -> Option<(i64, i32)> {
        let at = self.key_times.iter().position(|k| k.0 == code)?;
        let (_, t, r) = self.key_times.swap_remove(at);
        Some((t, r))
    }

    fn key_down_time(&self, code: u16) -> Option<i64> {
        self.key_times.iter().find(|k| k.0 == code).map(|k| k.1)
    }

    fn bump_repeat(&mut self, code: u16) -> i32 {
        match self.key_times.iter_mut().find(|k| k.0 == code) {
            Some(k) => {
                k.2 = k.2.saturating_add(1);
                k.2
            }
            None => 0,
        }
    }

    fn meta_state(&self) -> u32 {
        [42u16, 54, 56, 100, 29, 97]
            .into_iter()
            .filter(|&c| self.keys.get(c))
            .fold(0, |m, c| m | meta_bit(c))
    }

    fn key_event(&self, code: u16, action: u32, down: i64, time: i64, repeat: i32) -> KeyEvent {
        KeyEvent {
            device_id: self.device_id,
            source: SOURCE_KEYBOARD,
            display_id: 0,
            action,
            flags: 0,
            key_code: android_key_code(code),
            scan_code: i32::from(code),
            meta_state: self.meta_state(),
            repeat_count: repeat,
            policy_flags: 0,
            down_time: down,
            event_time: time,
        }
    }

    fn abs(&mut self, code: u16, value: i32) {
        if self.caps.touch.is_none() {
            self.stats.ignored += 1;
            return;
        }
        if code == ABS_MT_SLOT {
            self.slot = usize::try_from(value)
                .ok()
                .filter(|&s| s < self.slots.len());
            if self.slot.is_none() {
                self.stats.excess_contacts += 1;
            }
            return;
        }
        let Some(slot) = self.slot.and_then(|s| self.slots.get_mut(s)) else {
            self.stats.ignored += 1;
            return;
        };
        match code {
            ABS_MT_TRACKING_ID => slot.tracking_id = value.max(NO_CONTACT),
            ABS_MT_POSITION_X => slot.x = value,
            ABS_MT_POSITION_Y => slot.y = value,
            ABS_MT_PRESSURE => slot.pressure = value,
            ABS_MT_TOUCH_MAJOR => slot.major = value,
            _ => {} // single-touch mirrors (ABS_X/Y) and axes not used
        }
    }

    fn frame(&mut self, time: i64, out: &mut Vec<Output>) {
        if self.caps.touch.is_some() {
            self.touch_frame(time, out);
        }
        if self.caps.pointer {
            self.pointer_frame(time, out);
        }
    }

    fn cook(&self, slot: &Slot, id: i32) -> Pointer {
        let axes = self.caps.touch.unwrap_or_default();
        Pointer {
            id,
            tool_type: TOOL_TYPE_FINGER,
            x: axes.x.scale(slot.x, self.display.width),
            y: axes.y.scale(slot.y, self.display.height),
            pressure: axes.pressure.map_or(1.0, |p| p.normalize(slot.pressure)),
            size: axes.major.map_or(0.0, |m| m.normalize(slot.major)),
            touch_major: axes
                .major
                .map_or(0.0, |m| m.scale(slot.major, self.display.width)),
            ..Pointer::default()
        }
    }

    fn motion(
        &self,
        action: u32,
        source: u32,
        down: i64,
        time: i64,
        pointers: Vec<Pointer>,
    ) -> Output {
        Output::Motion(MotionEvent {
            device_id: self.device_id,
            source,
            display_id: 0,
            action,
            action_button: 0,
            flags: 0,
            button_state: if source == SOURCE_MOUSE {
                self.buttons
            } else {
                0
            },
            meta_state: 0,
            down_time: down,
            event_time: time,
            pointers,
        })
    }

    fn touch_pointers(&self) -> Vec<Pointer> {
        self.active.iter().map(|a| a.pointer).collect()
    }

    fn touch_frame(&mut self, time: i64, out: &mut Vec<Output>) {
        // Contacts that ended (or whose slot now holds another contact): up, at their last place.
        while let Some(i) = self
            .active
            .iter()
            .position(|a| self.slots[a.slot].tracking_id != a.tracking_id)
        {
            let action = if self.active.len() == 1 {
                MOTION_ACTION_UP
            } else {
                MOTION_ACTION_POINTER_UP | (i as u32) << ACTION_POINTER_INDEX_SHIFT
            };
            let pointers = self.touch_pointers();
            out.push(self.motion(
                action,
                SOURCE_TOUCHSCREEN,
                self.touch_down_time,
                time,
                pointers,
            ));
            self.active.remove(i);
        }
        // One MOVE if a remaining contact changed.
        let mut moved = false;
        for i in 0..self.active.len() {
            let a = self.active[i];
            let now = self.cook(&self.slots[a.slot], a.pointer.id);
            if now != a.pointer {
                self.active[i].pointer = now;
                moved = true;
            }
        }
        if moved {
            let pointers = self.touch_pointers();
            out.push(self.motion(
                MOTION_ACTION_MOVE,
                SOURCE_TOUCHSCREEN,
                self.touch_down_time,
                time,
                pointers,
            ));
        }
        self.touch_downs(time, out);
    }

    fn touch_downs(&mut self, time: i64, out: &mut Vec<Output>) {
        for slot in 0..self.slots.len() {
            let tracking_id = self.slots[slot].tracking_id;
            if tracking_id == NO_CONTACT || self.active.iter().any(|a| a.slot == slot) {
                continue;
            }
            let Some(id) =
                (0..MAX_POINTERS as i32).find(|id| self.active.iter().all(|a| a.pointer.id != *id))
            else {
                self.stats.excess_contacts += 1;
                continue;
            };
            let pointer = self.cook(&self.slots[slot], id);
            let at = self
                .active
                .iter()
                .position(|a| a.pointer.id > id)
                .unwrap_or(self.active.len());
            self.active.insert(
                at,
                Active {
                    slot,
                    tracking_id,
                    pointer,
                },
            );
            let action = if self.active.len() == 1 {
                self.touch_down_time = time;
                MOTION_ACTION_DOWN
            } else {
                MOTION_ACTION_POINTER_DOWN | (at as u32) << ACTION_POINTER_INDEX_SHIFT
            };
            let pointers = self.touch_pointers();
            out.push(self.motion(
                action,
                SOURCE_TOUCHSCREEN,
                self.touch_down_time,
                time,
                pointers,
            ));
        }
    }

    fn mouse_pointer(&self) -> Vec<Pointer> {
        vec![Pointer {
            id: 0,
            tool_type: TOOL_TYPE_MOUSE,
            x: self.cursor.0,
            y: self.cursor.1,
            pressure: if self.buttons != 0 { 1.0 } else { 0.0 },
            ..Pointer::default()
        }]
    }

    fn pointer_frame(&mut self, time: i64, out: &mut Vec<Output>) {
        let (dx, dy) = std::mem::take(&mut self.rel);
        let max_x = (self.display.width - 1.0).max(0.0);
        let max_y = (self.display.height - 1.0).max(0.0);
        self.cursor.0 = (self.cursor.0 as f64 + dx as f64).clamp(0.0, max_x.into()) as f32;
        self.cursor.1 = (self.cursor.1 as f64 + dy as f64).clamp(0.0, max_y.into()) as f32;
        let before = self.buttons;
        let now = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE]
            .into_iter()
            .filter(|&b| self.keys.get(b))
            .fold(0, |m, b| m | button_bit(b));
        let moved = dx != 0 || dy != 0;
        let (action, buttons) = match (before, now) {
            (0, 0) if moved => (MOTION_ACTION_HOVER_MOVE, 0),
            (0, 0) => return,
            (0, _) => {
                self.pointer_down_time = time;
                (MOTION_ACTION_DOWN, now)
            }
            (_, 0) => (MOTION_ACTION_UP, before),
            _ if moved || before != now => (MOTION_ACTION_MOVE, now),
            _ => return,
        };
        self.buttons = buttons;
        out.push(self.motion(
            action,
            SOURCE_MOUSE,
            self.pointer_down_time,
            time,
            self.mouse_pointer(),
        ));
        self.buttons = now;
    }

    /// After [`Step::Resync`]: take the device's state as read from the kernel and emit what
    /// changed since the last frame seen (keys up/down, contacts up/moved/down, buttons).
    pub fn resync(&mut self, snapshot: &Snapshot, time: i64, out: &mut Vec<Output>) {
        self.stats.resyncs += 1;
        if self.caps.keyboard {
            for code in (0..=KEY_MAX).filter(|&c| !is_button(c)) {
                let (was, is) = (self.keys.get(code), snapshot.keys.get(code));
                if was != is {
                    self.key(code, i32::from(is), time, out);
                }
            }
        }
        for code in [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE] {
            if self.caps.pointer {
                self.keys.set(code, snapshot.keys.get(code));
            }
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let at = |v: &Vec<i32>, old: i32| v.get(i).copied().unwrap_or(old);
            slot.tracking_id = at(&snapshot.tracking_id, NO_CONTACT).max(NO_CONTACT);
            slot.x = at(&snapshot.x, slot.x);
            slot.y = at(&snapshot.y, slot.y);
            slot.pressure = at(&snapshot.pressure, slot.pressure);
            slot.major = at(&snapshot.major, slot.major);
        }
        self.slot = usize::try_from(snapshot.slot)
            .ok()
            .filter(|&s| s < self.slots.len());
        self.rel = (0, 0);
        self.frame(time, out);
    }

    /// The device is gone: end a touch or button gesture with `CANCEL` and release held keys
    /// (`UP` flagged [`KEY_FLAG_CANCELED`]).
    pub fn cancel(&mut self, time: i64, out: &mut Vec<Output>) {
        if !self.active.is_empty() {
            let pointers = self.touch_pointers();
            out.push(self.motion(
                MOTION_ACTION_CANCEL,
                SOURCE_TOUCHSCREEN,
                self.touch_down_time,
                time,
                pointers,
            ));
            self.active.clear();
        }
        if self.buttons != 0 {
            out.push(self.motion(
                MOTION_ACTION_CANCEL,
                SOURCE_MOUSE,
                self.pointer_down_time,
                time,
                self.mouse_pointer(),
            ));
            self.buttons = 0;
        }
        let held: Vec<u16> = self.keys.codes().filter(|&c| !is_button(c)).collect();
        for code in held {
            let (down, _) = self.take_key_time(code).unwrap_or((time, 0));
            let mut event = self.key_event(code, KEY_ACTION_UP, down, time, 0);
            event.flags = KEY_FLAG_CANCELED;
            out.push(Output::Key(event));
            self.keys.set(code, false);
        }
        self.keys = KeyBits::default();
        for slot in &mut self.slots {
            slot.tracking_id = NO_CONTACT;
        }
    }
}
