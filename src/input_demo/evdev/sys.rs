//! The ioctls of evdev (`linux/input.h`) and uinput (`linux/uinput.h`), fenced: every request
//! number is built here from its direction, type, number and the size of the buffer or
//! struct passed, so the kernel never writes past what was handed to it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use bytemuck::{Pod, Zeroable};

use super::codes::{is_button, ABS_MT_SLOT, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, REL_X, REL_Y};
use super::codes::{
    ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_PRESSURE, ABS_MT_TOUCH_MAJOR, ABS_MT_TRACKING_ID,
};
use super::mapper::{AbsRange, Capabilities, KeyBits, Snapshot, TouchAxes, MAX_SLOTS};

const IOC_NONE: libc::c_ulong = 0;
const IOC_WRITE: libc::c_ulong = 1;
const IOC_READ: libc::c_ulong = 2;

/// `_IOC(dir, ty, nr, size)` as `asm-generic/ioctl.h` lays it out.
const fn ioc(dir: libc::c_ulong, ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    (dir << 30)
        | ((size as libc::c_ulong & 0x3fff) << 16)
        | ((ty as libc::c_ulong) << 8)
        | nr as libc::c_ulong
}

fn check(ret: libc::c_int) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// A read ioctl `_IOC(_IOC_READ, ty, nr, buf.len())`: the kernel writes at most `buf.len()`
/// bytes. Returns the ioctl's result (for evdev's string/bitmap reads, the bytes written).
pub(crate) fn ioctl_read(fd: impl AsFd, ty: u8, nr: u8, buf: &mut [u8]) -> io::Result<usize> {
    let req = ioc(IOC_READ, ty, nr, buf.len());
    // SAFETY: the request encodes buf.len() as its size, and the evdev/uinput read ioctls
    // write at most that many bytes into the buffer, which is valid and exclusively borrowed.
    check(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req, buf.as_mut_ptr()) })
}

/// A write ioctl `_IOW(ty, nr, T)`: the kernel reads exactly `size_of::<T>()` bytes.
pub(crate) fn ioctl_write<T: Pod>(fd: impl AsFd, ty: u8, nr: u8, value: &T) -> io::Result<usize> {
    let req = ioc(IOC_WRITE, ty, nr, std::mem::size_of::<T>());
    // SAFETY: `value` is a valid, initialised T for the call; the request encodes its size and
    // the kernel only reads from it.
    check(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req, value as *const T) })
}

/// The ioctls that take an integer by value (`UI_SET_*BIT`, `EVIOCGRAB`) or nothing
/// (`UI_DEV_CREATE`, `UI_DEV_DESTROY`); the only ones this module passes a plain integer to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueIoctl {
    /// `EVIOCGRAB`: 1 grabs, 0 releases.
    Grab,
    /// `UI_SET_EVBIT`.
    UiSetEvBit,
    /// `UI_SET_KEYBIT`.
    UiSetKeyBit,
    /// `UI_SET_RELBIT`.
    UiSetRelBit,
    /// `UI_SET_ABSBIT`.
    UiSetAbsBit,
    /// `UI_SET_PROPBIT`.
    UiSetPropBit,
    /// `UI_DEV_CREATE` (the value is ignored).
    UiDevCreate,
    /// `UI_DEV_DESTROY` (the value is ignored).
    UiDevDestroy,
}

/// Issue a [`ValueIoctl`] with `value`.
pub(crate) fn ioctl_value(
    fd: impl AsFd,
    which: ValueIoctl,
    value: libc::c_int,
) -> io::Result<usize> {
    let int = std::mem::size_of::<libc::c_int>();
    let req = match which {
        ValueIoctl::Grab => ioc(IOC_WRITE, b'E', 0x90, int),
        ValueIoctl::UiSetEvBit => ioc(IOC_WRITE, b'U', 100, int),
        ValueIoctl::UiSetKeyBit => ioc(IOC_WRITE, b'U', 101, int),
        ValueIoctl::UiSetRelBit => ioc(IOC_WRITE, b'U', 102, int),
        ValueIoctl::UiSetAbsBit => ioc(IOC_WRITE, b'U', 103, int),
        ValueIoctl::UiSetPropBit => ioc(IOC_WRITE, b'U', 110, int),
        ValueIoctl::UiDevCreate => ioc(IOC_NONE, b'U', 1, 0),
        ValueIoctl::UiDevDestroy => ioc(IOC_NONE, b'U', 2, 0),
    };
    // SAFETY: each of these requests takes its argument as a plain integer (or ignores it);
    // the kernel dereferences no pointer.
    check(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req, value as libc::c_ulong) })
}

/// `struct input_absinfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct AbsInfo {
    /// Current value.
    pub value: i32,
    /// Smallest value.
    pub minimum: i32,
    /// Largest value.
    pub maximum: i32,
    /// Noise filter.
    pub fuzz: i32,
    /// Dead zone.
    pub flat: i32,
    /// Units per millimetre.
    pub resolution: i32,
}

/// `EVIOCGNAME`: the device's name.
pub(crate) fn name(fd: &File) -> io::Result<String> {
    let mut buf = [0u8; 256];
    let n = ioctl_read(fd, b'E', 0x06, &mut buf)?.min(buf.len());
    let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// `EVIOCGBIT(ev, len)`: the codes of event type `ev` (0: the event types) the device has.
fn bits(fd: &File, ev: u16) -> io::Result<KeyBits> {
    let mut buf = [0u8; KeyBits::BYTES];
    let nr = u8::try_from(0x20 + ev).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let n = ioctl_read(fd, b'E', nr, &mut buf)?.min(buf.len());
    Ok(KeyBits::from_bytes(&buf[..n]))
}

/// `EVIOCGABS(code)`.
pub(crate) fn abs_info(fd: &File, code: u16) -> io::Result<AbsInfo> {
    let mut info = AbsInfo::default();
    let nr = u8::try_from(0x40 + code).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    ioctl_read(fd, b'E', nr, bytemuck::bytes_of_mut(&mut info))?;
    Ok(info)
}

/// `EVIOCGKEY`: keys and buttons down now.
pub(crate) fn key_state(fd: &File) -> io::Result<KeyBits> {
    let mut buf = [0u8; KeyBits::BYTES];
    let n = ioctl_read(fd, b'E', 0x18, &mut buf)?.min(buf.len());
    Ok(KeyBits::from_bytes(&buf[..n]))
}

/// `EVIOCGMTSLOTS`: the values of axis `code` in the first `slots` slots.
pub(crate) fn mt_slots(fd: &File, code: u16, slots: usize) -> io::Result<Vec<i32>> {
    let mut values = [0i32; MAX_SLOTS + 1];
    let n = slots.min(MAX_SLOTS);
    values[0] = i32::from(code);
    ioctl_read(fd, b'E', 0x0a, bytemuck::cast_slice_mut(&mut values[..=n]))?;
    Ok(values[1..=n].to_vec())
}

/// `EVIOCSCLOCKID`: stamp events with `CLOCK_MONOTONIC`, the clock of the dispatcher.
pub(crate) fn use_monotonic_clock(fd: &File) -> io::Result<()> {
    ioctl_write(fd, b'E', 0xa0, &libc::CLOCK_MONOTONIC).map(drop)
}

/// `EVIOCGRAB`.
pub(crate) fn grab(fd: &File, on: bool) -> io::Result<()> {
    ioctl_value(fd, ValueIoctl::Grab, on.into()).map(drop)
}

fn range(info: AbsInfo) -> AbsRange {
    AbsRange {
        min: info.minimum,
        max: info.maximum,
    }
}

/// What the device can do (`EVIOCGBIT` for keys, relative and absolute axes; `EVIOCGABS`).
pub(crate) fn capabilities(fd: &File) -> io::Result<Capabilities> {
    let types = bits(fd, 0)?;
    let keys = if types.get(EV_KEY) {
        bits(fd, EV_KEY)?
    } else {
        KeyBits::default()
    };
    let rel = if types.get(EV_REL) {
        bits(fd, EV_REL)?
    } else {
        KeyBits::default()
    };
    let abs = if types.get(EV_ABS) {
        bits(fd, EV_ABS)?
    } else {
        KeyBits::default()
    };
    let keyboard = keys.codes().any(|c| !is_button(c));
    let pointer = rel.get(REL_X) && rel.get(REL_Y) && keys.get(BTN_LEFT);
    let touch = if abs.get(ABS_MT_SLOT) && abs.get(ABS_MT_POSITION_X) && abs.get(ABS_MT_POSITION_Y)
    {
        let optional = |code| -> io::Result<Option<AbsRange>> {
            Ok(if abs.get(code) {
                Some(range(abs_info(fd, code)?))
            } else {
                None
            })
        };
        let slots = abs_info(fd, ABS_MT_SLOT)?.maximum;
        Some(TouchAxes {
            slots: usize::try_from(slots).map_or(0, |s| s.saturating_add(1).min(MAX_SLOTS)),
            x: range(abs_info(fd, ABS_MT_POSITION_X)?),
            y: range(abs_info(fd, ABS_MT_POSITION_Y)?),
            pressure: optional(ABS_MT_PRESSURE)?,
            major: optional(ABS_MT_TOUCH_MAJOR)?,
        })
    } else {
        None
    };
    Ok(Capabilities {
        keyboard,
        touch,
        pointer,
    })
}

/// The state to resync from after `SYN_DROPPED`.
pub(crate) fn snapshot(fd: &File, caps: &Capabilities) -> io::Result<Snapshot> {
    let mut snapshot = Snapshot {
        keys: key_state(fd)?,
        ..Snapshot::default()
    };
    if let Some(axes) = caps.touch {
        snapshot.slot = abs_info(fd, ABS_MT_SLOT)?.value;
        snapshot.tracking_id = mt_slots(fd, ABS_MT_TRACKING_ID, axes.slots)?;
        snapshot.x = mt_slots(fd, ABS_MT_POSITION_X, axes.slots)?;
        snapshot.y = mt_slots(fd, ABS_MT_POSITION_Y, axes.slots)?;
        if axes.pressure.is_some() {
            snapshot.pressure = mt_slots(fd, ABS_MT_PRESSURE, axes.slots)?;
        }
        if axes.major.is_some() {
            snapshot.major = mt_slots(fd, ABS_MT_TOUCH_MAJOR, axes.slots)?;
        }
    }
    Ok(snapshot)
}
