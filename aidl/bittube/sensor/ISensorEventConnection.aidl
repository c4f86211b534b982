package bittube.sensor;

import bittube.sensor.TubeEnd;

/**
 * An event or direct connection, in the order of Android's native `ISensorEventConnection`.
 * The `int` results are statuses: 0, or a negative libbinder status such as `BAD_VALUE`.
 */
@Descriptor(value="android.gui.SensorEventConnection")
interface ISensorEventConnection {
    /**
     * The tube's travelling end, moved out: a second call is `BAD_VALUE`, like
     * `BitTube::writeToParcel`. The service keeps no copy.
     */
    TubeEnd getSensorChannel();

    /** Enables or disables sensor `handle`. */
    int enableDisable(int handle, boolean enabled, long samplingPeriodNs,
            long maxBatchReportLatencyNs, int reservedFlags);

    /** Changes the sampling period of sensor `handle`. */
    int setEventRate(int handle, long samplingPeriodNs);

    /** Flushes every enabled sensor (one flush-complete event each). */
    int flush();

    /**
     * Direct connections: writes sensor `handle`'s events into the ring at `rateLevel`
     * (Android's `SENSOR_DIRECT_RATE_*`); `reportToken` is what the records carry in their
     * `sensor` field (set when the status is 0).
     */
    int configureChannel(int handle, int rateLevel, out int reportToken);

    /** Destroys the connection (also done when its binder is released). */
    int destroy();
}
