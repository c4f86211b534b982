package bittube.test;

/** A service with slow methods, for the async tests. */
interface ISlow {
    /** Waits `ms` milliseconds, then returns `ms`. */
    int slow(int ms);
    /** Doubles every value in place, after waiting `ms` milliseconds. */
    void doubleAll(inout int[] values, int ms);
    /** Binder threads of the service waiting on async methods now, and at most. */
    int[] waiting();
    /** Oneway: waits `ms` milliseconds on the service's runtime, counted while it waits. */
    oneway void later(int ms);
    /** How many `later` calls are waiting now, and how many oneway calls failed. */
    int[] pending();
}
