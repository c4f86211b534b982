//! BitTube: a typed, batched event channel over a SOCK_SEQPACKET socketpair.
