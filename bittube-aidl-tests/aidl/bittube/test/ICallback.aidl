package bittube.test;

import bittube.test.Names;

/** Told about events; oneway. */
oneway interface ICallback {
    /** An event happened. */
    void onEvent(int seq, String what);
    /** Argument names that generated code must not confuse with its own locals. */
    void named(int data, int reply, int call, int result, int proxy, int value, in Names names);
}
