package bittube.test;

import bittube.test.Everything;
import bittube.test.ICallback;
import bittube.test.Point;
import bittube.test.Shape;
import bittube.test.TubeEnd;

/**
 * The test service: every construct crosses a process boundary.
 */
interface ICorpus {
    /** A version. */
    const int VERSION = 3;
    const String NAME = "corpus";

    /** Echoes everything. */
    Everything echo(in Everything e);
    /** Adds two numbers. */
    long add(int a, long b);
    /** Moves a point by (dx, dy) in place and reports the old one. */
    void move(inout Point p, int dx, int dy, out Point old);
    /** Fills an array the caller sized. */
    void fill(out int[] values, int start);
    /** "given" when asked to give, else the fallback (null or not) with the extra's length. */
    @nullable String maybe(boolean give, @nullable String fallback, @nullable int[] extra);
    /** The area of a shape. */
    int area(in Shape s);
    /** Hands back the binder it was given. */
    IBinder same(IBinder b);
    /** Calls the callback `count` times. */
    void subscribe(ICallback cb, int count);
    /** A tube end carrying [first, first+1, first+2] as u64s. */
    TubeEnd tube(long first);
    /** Reads all bytes of a pipe's read end. */
    byte[] slurp(in ParcelFileDescriptor fd);
    /** Sleeps `ms` milliseconds, then returns `ms`. */
    int slow(int ms);
    /** Fire and forget: counted by the service. */
    oneway void poke(int n);
    /** How many pokes arrived. */
    int pokes();
    /** A list of strings, reversed. */
    List<String> reverse(in List<String> items);
    /** The service's process id. */
    int pid();
}
