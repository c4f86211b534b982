package bittube.input;

import bittube.input.TubeEnd;

/**
 * The input dispatcher as a binder service (registered as `bittube.input`). A window is
 * named by a token: a binder object of the application's process.
 */
interface IInputDispatcher {
    /** Registers a window; returns its input channel's client end. */
    TubeEnd registerWindow(IBinder token, @utf8InCpp String name, float left, float top,
            float right, float bottom);

    /** Unregisters the window of `token`; whether it was registered. */
    boolean unregisterWindow(IBinder token);

    /** Gives focus to the window of `token`, or to none. */
    void setFocus(@nullable IBinder token);

    /**
     * Injects one key or motion message in the channel's wire format (its seq is ignored);
     * returns the seq it was dispatched with.
     */
    int injectEvent(in byte[] event);
}
