package bittube.test;

import bittube.test.Point;

/** A shape: one of these. */
union Shape {
    int radius;
    Point corner;
    String name;
    int[] sides;
}
