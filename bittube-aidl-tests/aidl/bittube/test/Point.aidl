package bittube.test;

/**
 * A point on the plane.
 * Two coordinates and a label.
 */
parcelable Point {
    /** The horizontal coordinate. */
    int x;
    int y = 7;
    @utf8InCpp String label = "origin";
    @nullable String note;
    const int DIMENSIONS = 2;
}
