package bittube.test;

/** Told about events; oneway. */
oneway interface ICallback {
    /** An event happened. */
    void onEvent(int seq, String what);
}
