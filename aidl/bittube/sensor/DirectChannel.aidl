package bittube.sensor;

import bittube.sensor.ISensorEventConnection;

/**
 * A direct connection and its ring. Android's client brings its own shared memory; here the
 * service creates the sealed ring (a memfd) and hands it out.
 */
parcelable DirectChannel {
    /** The direct connection (descriptor `android.gui.SensorEventConnection`). */
    ISensorEventConnection connection;
    /** The ring's memfd, sealed against resizing. */
    ParcelFileDescriptor ring;
}
