package bittube.test;

import bittube.test.Color;
import bittube.test.Level;
import bittube.test.Point;
import bittube.test.Shape;

/** Every field type the generator supports. */
parcelable Everything {
    boolean flag = true;
    byte b = -3;
    char c = 'x';
    int i = 0x7f;
    long l = -5L;
    float f = 1.5f;
    double d = 2.25;
    String s;
    @nullable String ns;
    byte[] bytes;
    char[] chars;
    boolean[] flags;
    int[] ints;
    long[] longs;
    float[] floats;
    double[] doubles;
    String[] strings;
    List<String> list;
    Point[] points;
    List<Point> pointList;
    @nullable Point maybePoint;
    Color color = Color.GREEN;
    Color[] colors;
    Level level;
    Shape shape;
    @nullable int[] maybeInts;
}
