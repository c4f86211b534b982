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
    /**
     * Waits (on the service's runtime) until `n` calls of `gather` are in flight at once,
     * then `ms` milliseconds more, and returns the most that were in flight: only calls
     * served concurrently can all return.
     */
    int gather(int n, int ms);
    /**
     * The service process's binder pool: loopers, idle, serving, parked, max parked,
     * replacements alive, replacements started, replacements refused, oneway errors.
     */
    long[] pool();
}
