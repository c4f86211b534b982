package bittube.example;

/** A BitTube end: travels as a ParcelFileDescriptor. */
parcelable TubeEnd rust_type "bittube::TubeEnd";
