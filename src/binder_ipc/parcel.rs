//! Parcel: libbinder-compatible data + object offsets.
