package bittube.sensor;

/** One sensor of the list (Android flattens `Sensor` objects in a richer format). */
parcelable SensorInfo {
    /** The sensor's handle, named in every call about it. */
    int handle;
    /** Its name. */
    @utf8InCpp String name;
    /** Android's `SENSOR_TYPE_*`. */
    int type;
    /** Shortest sampling period, in microseconds. */
    int minDelayUs;
    /** Longest sampling period, in microseconds. */
    int maxDelayUs;
    /** Android's `SENSOR_FLAG_*` bits (reporting mode, wake-up, direct channel). */
    int flags;
}
