//! The sensor event: Android's `ASensorEvent` (`sensors_event_t`) layout, 104 bytes.

use bytemuck::{Pod, Zeroable};
use std::mem::{offset_of, size_of};

/// Size of one event in bytes, on the tube and in the direct channel ring.
pub const EVENT_SIZE: usize = 104;

/// `flags` bit 31: this event is the wake-up event of its packet and must be acknowledged
/// (Android's `WAKE_UP_SENSOR_EVENT_NEEDS_ACK`).
pub const WAKE_UP_NEEDS_ACK: u32 = 1 << 31;

/// Sensor type of meta events (Android's `SENSOR_TYPE_META_DATA`).
pub const TYPE_META_DATA: i32 = 0;
/// Accelerometer, m/s² (`SENSOR_TYPE_ACCELEROMETER`).
pub const TYPE_ACCELEROMETER: i32 = 1;
/// Magnetometer, µT (`SENSOR_TYPE_MAGNETIC_FIELD`).
pub const TYPE_MAGNETIC_FIELD: i32 = 2;
/// Gyroscope, rad/s (`SENSOR_TYPE_GYROSCOPE`).
pub const TYPE_GYROSCOPE: i32 = 4;
/// Significant motion, one-shot wake-up (`SENSOR_TYPE_SIGNIFICANT_MOTION`).
pub const TYPE_SIGNIFICANT_MOTION: i32 = 17;
/// Step counter, steps since the sensor was activated, a `u64` in the data
/// (`SENSOR_TYPE_STEP_COUNTER`).
pub const TYPE_STEP_COUNTER: i32 = 19;

/// `meta_data.what` of a flush-complete meta event (Android's `META_DATA_FLUSH_COMPLETE`).
pub const META_DATA_FLUSH_COMPLETE: i32 = 1;

/// One sensor event, laid out exactly as Android's `ASensorEvent` / `sensors_event_t`.
///
/// | field       | type       | offset |
/// |-------------|------------|--------|
/// | `version`   | `i32`      | 0      |
/// | `sensor`    | `i32`      | 4      |
/// | `kind`      | `i32`      | 8      |
/// | `reserved0` | `i32`      | 12     |
/// | `timestamp` | `i64`      | 16     |
/// | `data`      | `[f32;16]` | 24     |
/// | `flags`     | `u32`      | 88     |
/// | `reserved1` | `[u32;3]`  | 92     |
///
/// `version` holds the record size (104), as Android's HALs put `sizeof(sensors_event_t)`
/// there. Timestamps are nanoseconds of `CLOCK_MONOTONIC` (see [`super::clock_now_ns`]).
///
/// **Meta events.** A flush-complete event has `kind == TYPE_META_DATA` (0), `sensor == 0`,
/// and in its data union Android's `meta_data_event_t { int32 what; int32 sensor; }`:
/// `what == META_DATA_FLUSH_COMPLETE` (1) at offset 24 and the flushed sensor's handle at
/// offset 28 (see [`SensorEvent::flush_complete`]). Android writes `META_DATA_VERSION` into
/// `version` of meta events; this crate keeps 104 there for every record and recognises
/// meta events by their type alone.
///
/// **Direct channel records** use the same layout with `reserved0` as the record's atomic
/// counter (as Android's direct-report shared-memory format does) and `sensor` as the report
/// token (here: the sensor handle).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct SensorEvent {
    /// Size of the record: 104.
    pub version: i32,
    /// Handle of the sensor that produced the event (0 for meta events).
    pub sensor: i32,
    /// Sensor type (`type` in C): one of the `TYPE_*` constants.
    pub kind: i32,
    /// Reserved; the atomic counter in direct channel records.
    pub reserved0: i32,
    /// When the sample was taken: nanoseconds of `CLOCK_MONOTONIC`.
    pub timestamp: i64,
    /// The values (the C union's `float data[16]`).
    pub data: [f32; 16],
    /// Flags; bit 31 is [`WAKE_UP_NEEDS_ACK`].
    pub flags: u32,
    /// Reserved, zero.
    pub reserved1: [u32; 3],
}

static_assertions::const_assert_eq!(size_of::<SensorEvent>(), EVENT_SIZE);
static_assertions::const_assert_eq!(std::mem::align_of::<SensorEvent>(), 8);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, version), 0);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, sensor), 4);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, kind), 8);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, reserved0), 12);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, timestamp), 16);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, data), 24);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, flags), 88);
static_assertions::const_assert_eq!(offset_of!(SensorEvent, reserved1), 92);

impl SensorEvent {
    /// An event of sensor `handle` of type `kind` at `timestamp` with `values` in the first
    /// data slots (at most 16 are used).
    pub fn new(handle: i32, kind: i32, timestamp: i64, values: &[f32]) -> SensorEvent {
        let mut data = [0f32; 16];
        let n = values.len().min(16);
        data[..n].copy_from_slice(&values[..n]);
        SensorEvent {
            version: EVENT_SIZE as i32,
            sensor: handle,
            kind,
            reserved0: 0,
            timestamp,
            data,
            flags: 0,
            reserved1: [0; 3],
        }
    }

    /// A step counter event carrying `steps` in the data union's `uint64_t step_counter`
    /// (the first 8 bytes of `data`, native byte order).
    pub fn step_counter(handle: i32, timestamp: i64, steps: u64) -> SensorEvent {
        let mut event = SensorEvent::new(handle, TYPE_STEP_COUNTER, timestamp, &[]);
        let bytes = steps.to_ne_bytes();
        event.data[0] = f32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        event.data[1] = f32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        event
    }

    /// The `uint64_t step_counter` view of the data union.
    pub fn steps(&self) -> u64 {
        let lo = self.data[0].to_ne_bytes();
        let hi = self.data[1].to_ne_bytes();
        u64::from_ne_bytes([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]])
    }

    /// The flush-complete meta event for sensor `handle` (see the type's docs for the layout).
    pub fn flush_complete(handle: i32, timestamp: i64) -> SensorEvent {
        let mut event = SensorEvent::new(0, TYPE_META_DATA, timestamp, &[]);
        event.data[0] = f32::from_ne_bytes(META_DATA_FLUSH_COMPLETE.to_ne_bytes());
        event.data[1] = f32::from_ne_bytes(handle.to_ne_bytes());
        event
    }

    /// Whether this is a meta event (type 0).
    pub fn is_meta(&self) -> bool {
        self.kind == TYPE_META_DATA
    }

    /// If this is a flush-complete meta event, the handle of the flushed sensor.
    pub fn flushed_sensor(&self) -> Option<i32> {
        if !self.is_meta() {
            return None;
        }
        let what = i32::from_ne_bytes(self.data[0].to_ne_bytes());
        let sensor = i32::from_ne_bytes(self.data[1].to_ne_bytes());
        (what == META_DATA_FLUSH_COMPLETE).then_some(sensor)
    }

    /// Whether the event carries [`WAKE_UP_NEEDS_ACK`].
    pub fn needs_ack(&self) -> bool {
        self.flags & WAKE_UP_NEEDS_ACK != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_event_round_trips_and_sits_where_android_puts_it() {
        let e = SensorEvent::flush_complete(7, 5);
        assert_eq!(e.flushed_sensor(), Some(7));
        let bytes: &[u8] = bytemuck::bytes_of(&e);
        assert_eq!(&bytes[8..12], &0i32.to_ne_bytes());
        assert_eq!(&bytes[24..28], &1i32.to_ne_bytes());
        assert_eq!(&bytes[28..32], &7i32.to_ne_bytes());
        assert_eq!(SensorEvent::new(7, 1, 0, &[1.0]).flushed_sensor(), None);
    }

    #[test]
    fn step_counter_is_a_u64_at_offset_24() {
        let e = SensorEvent::step_counter(3, 1, 0x0102_0304_0506_0708);
        assert_eq!(e.steps(), 0x0102_0304_0506_0708);
        let bytes: &[u8] = bytemuck::bytes_of(&e);
        assert_eq!(&bytes[24..32], &0x0102_0304_0506_0708u64.to_ne_bytes());
    }
}
