//! The sensor list and the simulated HAL: one thread per active sensor.
//!
//! A HAL thread runs while at least one connection or direct channel uses its sensor, at the
//! fastest sampling period any of them asked for (as a real HAL runs one physical sensor for
//! all clients). Samples are taken on a fixed schedule on `CLOCK_MONOTONIC`: the thread sleeps
//! until the next sample is due and stamps each sample with the time it was due, so a thread
//! that was scheduled late catches up (up to [`MAX_CATCH_UP`] of samples) instead of losing
//! them, like a hardware FIFO read late.
//!
//! Where a service's sensors come from is its [`SensorHal`]: the simulated sensors above
//! (the default), or the machine's IIO sensors ([`super::iio`]), each running sensor then a
//! capture thread ([`IioStream`]) with the same shape as a simulated sensor's thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::clock_now_ns;
use super::event::{
    SensorEvent, TYPE_ACCELEROMETER, TYPE_GYROSCOPE, TYPE_MAGNETIC_FIELD, TYPE_SIGNIFICANT_MOTION,
    TYPE_STEP_COUNTER,
};
use super::iio::{IioError, IioHal, IioStream};

/// Sensor flag: a wake-up sensor (Android's `SENSOR_FLAG_WAKE_UP_SENSOR`).
pub const FLAG_WAKE_UP: u32 = 1;
/// Reporting mode bits (`SENSOR_FLAG_MASK_REPORTING_MODE`, bits 1-3).
pub const REPORTING_MODE_MASK: u32 = 0xE;
/// Reporting mode: continuous (0 << 1).
pub const REPORTING_CONTINUOUS: u32 = 0;
/// Reporting mode: on change (1 << 1).
pub const REPORTING_ON_CHANGE: u32 = 2;
/// Reporting mode: one shot (2 << 1).
pub const REPORTING_ONE_SHOT: u32 = 4;

/// The most samples a late HAL thread emits at once to catch up; beyond that it skips ahead.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(1);

/// How a sensor is identified in every call: its handle (Android's `sensor_t::handle`).
pub type SensorHandle = i32;

/// One entry of the sensor list (what Android's `Sensor` / `sensor_t` tells a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorInfo {
    /// Handle used in enable/disable/flush and in events' `sensor` field.
    pub handle: SensorHandle,
    /// Human-readable name.
    pub name: String,
    /// Sensor type: one of the `event::TYPE_*` constants.
    pub kind: i32,
    /// Smallest sampling period in µs (0: on-change, -1: one-shot), as Android's `minDelay`.
    pub min_delay_us: i32,
    /// Largest sampling period in µs, as Android's `maxDelay` (0 for one-shot).
    pub max_delay_us: i32,
    /// [`FLAG_WAKE_UP`] and the reporting mode bits.
    pub flags: u32,
}

impl SensorInfo {
    /// Whether this is a wake-up sensor.
    pub fn is_wake_up(&self) -> bool {
        self.flags & FLAG_WAKE_UP != 0
    }

    /// The reporting mode bits ([`REPORTING_CONTINUOUS`], [`REPORTING_ON_CHANGE`],
    /// [`REPORTING_ONE_SHOT`]).
    pub fn reporting_mode(&self) -> u32 {
        self.flags & REPORTING_MODE_MASK
    }

    /// The sampling period the sensor really uses when `requested` is asked for: clamped to
    /// `[min_delay, max_delay]` as Android clamps it. On-change sensors sample at their own
    /// pace ([`STEP_PERIOD`] here) and one-shot ones fire once ([`SIGNIFICANT_MOTION_DELAY`]
    /// after activation).
    pub fn clamp_period(&self, requested: Duration) -> Duration {
        match self.reporting_mode() {
            REPORTING_ONE_SHOT => SIGNIFICANT_MOTION_DELAY,
            REPORTING_ON_CHANGE => requested.clamp(
                Duration::ZERO,
                Duration::from_micros(self.max_delay_us.max(0) as u64),
            ),
            _ => requested.clamp(
                Duration::from_micros(self.min_delay_us.max(1) as u64),
                Duration::from_micros(self.max_delay_us.max(1) as u64),
            ),
        }
    }
}

/// Handle of the accelerometer.
pub const ACCELEROMETER: SensorHandle = 1;
/// Handle of the gyroscope.
pub const GYROSCOPE: SensorHandle = 2;
/// Handle of the magnetometer.
pub const MAGNETOMETER: SensorHandle = 3;
/// Handle of the wake-up accelerometer (a continuous wake-up sensor).
pub const ACCELEROMETER_WAKE_UP: SensorHandle = 4;
/// Handle of significant motion (one-shot, wake-up).
pub const SIGNIFICANT_MOTION: SensorHandle = 5;
/// Handle of the step counter (on-change).
pub const STEP_COUNTER: SensorHandle = 6;

/// Cadence of the simulated walker behind the step counter: one step every 500 ms.
pub const STEP_PERIOD: Duration = Duration::from_millis(500);
/// Significant motion fires this long after it is activated, then disables itself.
pub const SIGNIFICANT_MOTION_DELAY: Duration = Duration::from_millis(200);

/// The simulated device's sensors. Accelerometer and gyroscope reach 1760 Hz (568 µs,
/// the top of Android's VERY_FAST direct-report range); magnetometer and the wake-up
/// accelerometer 1 kHz, so that four sensors at 1 kHz can load the service.
pub fn sensor_list() -> Vec<SensorInfo> {
    vec![
        SensorInfo {
            handle: ACCELEROMETER,
            name: "Simulated Accelerometer".into(),
            kind: TYPE_ACCELEROMETER,
            min_delay_us: 568,
            max_delay_us: 1_000_000,
            flags: REPORTING_CONTINUOUS,
        },
        SensorInfo {
            handle: GYROSCOPE,
            name: "Simulated Gyroscope".into(),
            kind: TYPE_GYROSCOPE,
            min_delay_us: 568,
            max_delay_us: 1_000_000,
            flags: REPORTING_CONTINUOUS,
        },
        SensorInfo {
            handle: MAGNETOMETER,
            name: "Simulated Magnetometer".into(),
            kind: TYPE_MAGNETIC_FIELD,
            min_delay_us: 1_000,
            max_delay_us: 1_000_000,
            flags: REPORTING_CONTINUOUS,
        },
        SensorInfo {
            handle: ACCELEROMETER_WAKE_UP,
            name: "Simulated Accelerometer (wake-up)".into(),
            kind: TYPE_ACCELEROMETER,
            min_delay_us: 1_000,
            max_delay_us: 1_000_000,
            flags: REPORTING_CONTINUOUS | FLAG_WAKE_UP,
        },
        SensorInfo {
            handle: SIGNIFICANT_MOTION,
            name: "Simulated Significant Motion".into(),
            kind: TYPE_SIGNIFICANT_MOTION,
            min_delay_us: -1,
            max_delay_us: 0,
            flags: REPORTING_ONE_SHOT | FLAG_WAKE_UP,
        },
        SensorInfo {
            handle: STEP_COUNTER,
            name: "Simulated Step Counter".into(),
            kind: TYPE_STEP_COUNTER,
            min_delay_us: 0,
            max_delay_us: 10_000_000,
            flags: REPORTING_ON_CHANGE,
        },
    ]
}

/// Where a [`super::SensorService`]'s sensors come from: the list it publishes and what runs
/// a sensor while a client uses it.
#[derive(Debug, Default)]
pub enum SensorHal {
    /// The simulated sensors of [`sensor_list`], one waveform thread per active sensor.
    #[default]
    Simulated,
    /// The IIO sensors found by an [`IioHal`] (as discovered when the service starts), one
    /// buffered capture thread ([`IioStream`]) per active sensor.
    Iio(IioHal),
}

/// Why a sensor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HalStartError {
    /// The simulated sensor's thread could not be spawned.
    #[error("HAL thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The IIO capture could not be set up.
    #[error("{0}")]
    Iio(#[from] IioError),
}

impl SensorHal {
    /// The IIO HAL when `hal` found at least one sensor, else the simulated HAL (the issue's
    /// rule: the simulated HAL stays when no device exists).
    pub fn iio_or_simulated(hal: IioHal) -> SensorHal {
        if hal.sensor_list().is_empty() {
            SensorHal::Simulated
        } else {
            SensorHal::Iio(hal)
        }
    }

    /// The sensor list this HAL offers.
    pub fn sensor_list(&self) -> Vec<SensorInfo> {
        match self {
            SensorHal::Simulated => sensor_list(),
            SensorHal::Iio(hal) => hal.sensor_list(),
        }
    }

    /// Start `info` every `period`: each sample goes to `out`, then `wake` runs (once per
    /// batch).
    pub(crate) fn start(
        &self,
        info: SensorInfo,
        period: Duration,
        out: Sender<SensorEvent>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<RunningSensor, HalStartError> {
        Ok(match self {
            SensorHal::Simulated => {
                RunningSensor::Simulated(HalSensor::start(info, period, out, wake)?)
            }
            SensorHal::Iio(hal) => RunningSensor::Iio {
                _stream: IioStream::start(hal, info.handle, period, out, wake)?,
                period,
            },
        })
    }
}

/// A sensor that runs for a service: a simulated HAL thread or an IIO capture.
#[derive(Debug)]
pub(crate) enum RunningSensor {
    /// A simulated sensor's thread.
    Simulated(HalSensor),
    /// An IIO capture thread and the period its sampling frequency was set for.
    Iio {
        /// The capture thread, held only to be stopped and joined when dropped.
        _stream: IioStream,
        /// The period asked for at start.
        period: Duration,
    },
}

impl RunningSensor {
    /// The period the sensor samples at.
    pub(crate) fn period(&self) -> Duration {
        match self {
            RunningSensor::Simulated(hal) => hal.period(),
            RunningSensor::Iio { period, .. } => *period,
        }
    }

    /// Change the sampling period; false when the sensor must be restarted for that (an IIO
    /// capture sets its sampling frequency once, at start).
    pub(crate) fn set_period(&mut self, period: Duration) -> bool {
        match self {
            RunningSensor::Simulated(hal) => {
                hal.set_period(period);
                true
            }
            RunningSensor::Iio { period: now, .. } => *now == period,
        }
    }
}

/// A running HAL thread for one sensor.
#[derive(Debug)]
pub(crate) struct HalSensor {
    control: Sender<HalControl>,
    thread: Option<JoinHandle<()>>,
    period: Duration,
}

#[derive(Debug)]
enum HalControl {
    Period(Duration),
}

impl HalSensor {
    /// Start sampling `info` every `period`; each sample goes to `out`, then `wake` runs.
    pub(crate) fn start(
        info: SensorInfo,
        period: Duration,
        out: Sender<SensorEvent>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<HalSensor> {
        let (control, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("hal-{}", info.handle))
            .spawn(move || hal_thread(info, period, rx, out, wake))?;
        Ok(HalSensor {
            control,
            thread: Some(thread),
            period,
        })
    }

    /// The period the thread samples at.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// Change the sampling period (takes effect from the next sample).
    pub(crate) fn set_period(&mut self, period: Duration) {
        if period != self.period {
            self.period = period;
            let _ = self.control.send(HalControl::Period(period));
        }
    }
}

impl Drop for HalSensor {
    fn drop(&mut self) {
        // Closing the control channel wakes the thread at once and ends it.
        let (dead, _) = crossbeam_channel::bounded(0);
        self.control = dead;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn hal_thread(
    info: SensorInfo,
    mut period: Duration,
    control: Receiver<HalControl>,
    out: Sender<SensorEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    // Instant is CLOCK_MONOTONIC on Linux: schedule with it, stamp with the same clock.
    let origin = Instant::now();
    let origin_ns = clock_now_ns();
    let stamp = |at: Instant| origin_ns + at.duration_since(origin).as_nanos() as i64;
    let step_period = if info.reporting_mode() == REPORTING_ON_CHANGE {
        STEP_PERIOD
    } else {
        period
    };
    let mut next = origin
        + if info.reporting_mode() == REPORTING_ONE_SHOT {
            SIGNIFICANT_MOTION_DELAY
        } else {
            step_period
        };
    let mut seq: u64 = 0;
    loop {
        match control.recv_deadline(next) {
            Ok(HalControl::Period(p)) => {
                if info.reporting_mode() == REPORTING_CONTINUOUS {
                    // Re-plan from the last sample taken.
                    next = next.checked_sub(period).unwrap_or(next) + p;
                    period = p;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let step = match info.reporting_mode() {
            REPORTING_CONTINUOUS => period,
            REPORTING_ON_CHANGE => STEP_PERIOD,
            _ => Duration::from_secs(3600),
        };
        if now.duration_since(next) > MAX_CATCH_UP {
            // Far behind (the machine stalled): skip ahead rather than flood.
            next = now;
        }
        let mut emitted = false;
        while next <= now {
            seq += 1;
            let event = sample(&info, stamp(next), seq);
            if out.send(event).is_err() {
                return;
            }
            emitted = true;
            next += step;
        }
        if emitted {
            wake();
        }
    }
}

/// The simulated reading number `seq` of `info` at `timestamp`.
fn sample(info: &SensorInfo, timestamp: i64, seq: u64) -> SensorEvent {
    let t = seq as f32 * 0.01;
    match info.kind {
        TYPE_ACCELEROMETER => SensorEvent::new(
            info.handle,
            info.kind,
            timestamp,
            &[0.1 * t.sin(), 0.1 * t.cos(), 9.80665],
        ),
        TYPE_GYROSCOPE => SensorEvent::new(
            info.handle,
            info.kind,
            timestamp,
            &[0.02 * t.sin(), -0.01 * t.cos(), 0.005],
        ),
        TYPE_MAGNETIC_FIELD => SensorEvent::new(
            info.handle,
            info.kind,
            timestamp,
            &[22.0 + t.sin(), 5.0, -40.0 + t.cos()],
        ),
        TYPE_STEP_COUNTER => SensorEvent::step_counter(info.handle, timestamp, seq),
        _ => SensorEvent::new(info.handle, info.kind, timestamp, &[1.0]),
    }
}
