//! Generates the crate's own binder interfaces from `aidl/` with bittube-aidl (the support
//! code is this crate, so the generated paths start with `crate::`):
//!
//! - `service_manager_aidl.rs`: AOSP's Android 16 `android.os.IServiceManager` and the types
//!   and callbacks it uses (`aidl/android/os/`, AOSP's declarations);
//! - `sensor_aidl.rs`: the sensor service's `ISensorServer` and `ISensorEventConnection`
//!   (`aidl/bittube/sensor/`);
//! - `input_aidl.rs`: the input service's `IInputDispatcher` (`aidl/bittube/input/`).

use std::path::PathBuf;

/// One generated file and the `.aidl` files it comes from.
struct Set {
    output: &'static str,
    dir: &'static str,
    files: &'static [&'static str],
}

const SETS: &[Set] = &[
    Set {
        output: "service_manager_aidl.rs",
        dir: "aidl/android/os",
        files: &[
            "ConnectionInfo",
            "IClientCallback",
            "IServiceCallback",
            "IServiceManager",
            "Service",
            "ServiceDebugInfo",
            "ServiceWithMetadata",
        ],
    },
    Set {
        output: "sensor_aidl.rs",
        dir: "aidl/bittube/sensor",
        files: &[
            "TubeEnd",
            "SensorInfo",
            "DirectChannel",
            "ISensorEventConnection",
            "ISensorServer",
        ],
    },
    Set {
        output: "input_aidl.rs",
        dir: "aidl/bittube/input",
        files: &["TubeEnd", "IInputDispatcher"],
    },
];

fn main() {
    for set in SETS {
        let mut b = bittube_aidl::Builder::new()
            .crate_path("crate")
            .output(set.output);
        for f in set.files {
            b = b.source(PathBuf::from(format!("{}/{f}.aidl", set.dir)));
        }
        if let Err(e) = b.generate() {
            panic!("{e}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
