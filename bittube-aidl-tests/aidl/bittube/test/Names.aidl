package bittube.test;

/** Field names that generated code must not confuse with its own locals. */
parcelable Names {
    int parcel;
    int process;
    int end;
    int value;
}
