//! rsbinder's service manager, `rsb_hub` from crates.io `rsbinder-tools` 0.12.0, built
//! unchanged from that package's source (see build.rs) so that the kernel run can start it.
#![allow(non_snake_case, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/rsb_hub.rs"));
