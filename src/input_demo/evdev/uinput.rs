//! Virtual input devices through `/dev/uinput` (`linux/uinput.h`): a keyboard and a
//! multi-touch screen for tests and the demo. The device exists from
//! [`VirtualDevice::create`] until it is dropped (closing the uinput fd destroys it, which
//! evdev readers see as the device going away).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use static_assertions::const_assert_eq;

use super::codes::*;
use super::mapper::AbsRange;
use super::sys::{ioctl_value, ioctl_write, AbsInfo, ValueIoctl};

/// The uinput device node.
pub const UINPUT_PATH: &str = "/dev/uinput";
/// The bus type of a virtual device (`BUS_VIRTUAL`).
pub const BUS_VIRTUAL: u16 = 0x06;

/// `struct uinput_setup`.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Setup {
    bustype: u16,
    vendor: u16,
    product: u16,
    version: u16,
    name: [u8; 80],
    ff_effects_max: u32,
}
const_assert_eq!(std::mem::size_of::<Setup>(), 92);

/// `struct uinput_abs_setup` (the C struct pads `code` to the alignment of `absinfo`).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct AbsSetup {
    code: u16,
    reserved: u16,
    info: AbsInfo,
}
const_assert_eq!(std::mem::size_of::<AbsSetup>(), 28);

/// What a virtual device offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Its name (at most 79 bytes are kept).
    pub name: String,
    /// `EV_KEY` codes.
    pub keys: Vec<u16>,
    /// `EV_REL` codes.
    pub rel: Vec<u16>,
    /// `EV_ABS` codes with their ranges.
    pub abs: Vec<(u16, AbsRange)>,
    /// `INPUT_PROP_*` properties.
    pub props: Vec<u16>,
}

impl DeviceSpec {
    /// A keyboard with the letter, digit and a few control keys.
    pub fn keyboard(name: &str) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            keys: (1..=58).chain([102, 103, 105, 106, 108, 158]).collect(),
            ..DeviceSpec::default()
        }
    }

    /// A multi-touch screen (protocol B) with `slots` slots, positions `0..width` by
    /// `0..height` and pressure `0..=255`.
    pub fn touchscreen(name: &str, slots: i32, width: i32, height: i32) -> DeviceSpec {
        let r = |min, max| AbsRange { min, max };
        DeviceSpec {
            name: name.into(),
            keys: vec![BTN_TOUCH, BTN_TOOL_FINGER],
            abs: vec![
                (ABS_MT_SLOT, r(0, slots - 1)),
                (ABS_MT_TRACKING_ID, r(0, 65535)),
                (ABS_MT_POSITION_X, r(0, width - 1)),
                (ABS_MT_POSITION_Y, r(0, height - 1)),
                (ABS_MT_PRESSURE, r(0, 255)),
            ],
            props: vec![INPUT_PROP_DIRECT],
            ..DeviceSpec::default()
        }
    }

    /// A mouse: `REL_X`, `REL_Y`, left/right/middle buttons.
    pub fn mouse(name: &str) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            keys: vec![BTN_LEFT, BTN_RIGHT, BTN_MIDDLE],
            rel: vec![REL_X, REL_Y],
            ..DeviceSpec::default()
        }
    }
}

/// A virtual input device; destroyed when dropped.
#[derive(Debug)]
pub struct VirtualDevice {
    file: File,
    name: String,
}

fn bit(file: &File, which: ValueIoctl, code: u16) -> io::Result<()> {
    ioctl_value(file, which, code.into()).map(drop)
}

impl VirtualDevice {
    /// Create the device described by `spec` through `uinput` (normally [`UINPUT_PATH`]).
    pub fn create(uinput: &Path, spec: &DeviceSpec) -> io::Result<VirtualDevice> {
        let file = OpenOptions::new().write(true).open(uinput)?;
        if !spec.keys.is_empty() {
            bit(&file, ValueIoctl::UiSetEvBit, EV_KEY)?;
        }
        for &key in &spec.keys {
            bit(&file, ValueIoctl::UiSetKeyBit, key)?;
        }
        if !spec.rel.is_empty() {
            bit(&file, ValueIoctl::UiSetEvBit, EV_REL)?;
        }
        for &rel in &spec.rel {
            bit(&file, ValueIoctl::UiSetRelBit, rel)?;
        }
        if !spec.abs.is_empty() {
            bit(&file, ValueIoctl::UiSetEvBit, EV_ABS)?;
        }
        for &(code, range) in &spec.abs {
            bit(&file, ValueIoctl::UiSetAbsBit, code)?;
            let setup = AbsSetup {
                code,
                reserved: 0,
                info: AbsInfo {
                    minimum: range.min,
                    maximum: range.max,
                    ..AbsInfo::default()
                },
            };
            ioctl_write(&file, b'U', 4, &setup)?;
        }
        for &prop in &spec.props {
            bit(&file, ValueIoctl::UiSetPropBit, prop)?;
        }
        let mut setup = Setup {
            bustype: BUS_VIRTUAL,
            vendor: 0x1234,
            product: 0x5678,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        let name = spec.name.as_bytes();
        let len = name.len().min(setup.name.len() - 1);
        setup.name[..len].copy_from_slice(&name[..len]);
        ioctl_write(&file, b'U', 3, &setup)?;
        ioctl_value(&file, ValueIoctl::UiDevCreate, 0)?;
        Ok(VirtualDevice {
            file,
            name: String::from_utf8_lossy(&name[..len]).into_owned(),
        })
    }

    /// The device's name, as evdev reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Write records (time stamps are set by the kernel).
    pub fn emit(&mut self, events: &[RawEvent]) -> io::Result<()> {
        self.file.write_all(bytemuck::cast_slice(events))
    }

    /// Press (`true`) or release a key, followed by `SYN_REPORT`.
    pub fn key(&mut self, code: u16, down: bool) -> io::Result<()> {
        self.emit(&[RawEvent::new(EV_KEY, code, down.into()), syn()])
    }

    /// Destroy the device now (`UI_DEV_DESTROY`), as unplugging it would.
    pub fn destroy(self) -> io::Result<()> {
        ioctl_value(&self.file, ValueIoctl::UiDevDestroy, 0).map(drop)
    }
}

/// A `SYN_REPORT` record.
pub fn syn() -> RawEvent {
    RawEvent::new(EV_SYN, SYN_REPORT, 0)
}

/// The records of one contact in slot `slot`: select the slot, then either end the contact
/// (`position == None`) or set tracking id (when `new_id` is given), position and pressure.
pub fn contact(slot: i32, new_id: Option<i32>, position: Option<(i32, i32)>) -> Vec<RawEvent> {
    let abs = |code, value| RawEvent::new(EV_ABS, code, value);
    let mut events = vec![abs(ABS_MT_SLOT, slot)];
    match position {
        None => events.push(abs(ABS_MT_TRACKING_ID, -1)),
        Some((x, y)) => {
            if let Some(id) = new_id {
                events.push(abs(ABS_MT_TRACKING_ID, id));
            }
            events.extend([
                abs(ABS_MT_POSITION_X, x),
                abs(ABS_MT_POSITION_Y, y),
                abs(ABS_MT_PRESSURE, 128),
            ]);
        }
    }
    events
}
