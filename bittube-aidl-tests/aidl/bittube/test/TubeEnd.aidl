package bittube.test;

/** A BitTube end: travels as a ParcelFileDescriptor, checked on receipt. */
parcelable TubeEnd rust_type "bittube::bittube::TubeEnd";
