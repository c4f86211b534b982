//! IIO scan element type strings, scan layouts and recorded buffers
//! (`bittube::sensor_demo::iio::fuzz_scan`): the first line holds type strings for the
//! channels accel_x..magn_z and timestamp, the rest is buffer data decoded into sensor
//! events. Checked beyond "no panic": a partial scan is shorter than a scan, and no more
//! events come out than three per whole scan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bittube::sensor_demo::iio::fuzz_scan(data);
});
