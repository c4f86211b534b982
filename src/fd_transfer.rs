//! Sending and receiving file descriptors with bytes (SCM_RIGHTS).
