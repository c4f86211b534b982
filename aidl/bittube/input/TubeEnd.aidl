package bittube.input;

/** A BitTube end: travels as a ParcelFileDescriptor, checked on receipt (a SEQPACKET socket). */
parcelable TubeEnd rust_type "crate::bittube::TubeEnd";
