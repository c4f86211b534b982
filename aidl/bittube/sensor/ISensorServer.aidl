package bittube.sensor;

import bittube.sensor.DirectChannel;
import bittube.sensor.ISensorEventConnection;
import bittube.sensor.SensorInfo;

/**
 * The sensor service (registered as `sensorservice`), in the order of Android's native
 * `ISensorServer`: codes 1, 2 and 5 as Android numbers them.
 */
@Descriptor(value="android.gui.SensorServer")
interface ISensorServer {
    /** The sensor list. */
    SensorInfo[] getSensorList(@nullable String opPackageName) = 1;

    /** A new event connection; its BitTube end is taken with `getSensorChannel`. */
    ISensorEventConnection createSensorEventConnection(@nullable String packageName) = 2;

    /** A new direct connection with a ring of `records` records. */
    DirectChannel createSensorDirectConnection(@nullable String opPackageName, int records) = 5;
}
