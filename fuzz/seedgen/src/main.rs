//! Writes fuzz/seeds/<target>/<name> for every fuzz target: `seedgen <seeds dir>`.
//! Deterministic: the same crate writes the same files. `seedgen --show <target> <file>`
//! prints what an input (a crash, a corpus entry) decodes to.

#[path = "../../src/bc.rs"]
pub mod bc;
#[path = "../../src/bytes.rs"]
pub mod bytes;
#[path = "../../src/frames.rs"]
pub mod frames;
#[path = "../../src/input.rs"]
pub mod input;
#[path = "../../src/parcel.rs"]
pub mod parcel;
#[path = "../../src/sensor.rs"]
pub mod sensor;

mod seeds;

fn show(target: &str, file: &std::path::Path) {
    let data = std::fs::read(file).unwrap();
    match target {
        "parcel_read" => println!("{:#?}", parcel::decode(&data)),
        "input_message" => println!("{:#?}", input::decode(&data)),
        "sensor_event" => println!("{:#?}", sensor::decode(&data)),
        "bc_stream" => println!("{:#?}", bc::decode(&data)),
        "shim_frames" => println!("{:#?}", frames::decode(&data)),
        _ => println!("{data:02x?}"),
    }
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--show") && args.len() == 4 {
        show(&args[2].to_string_lossy(), std::path::Path::new(&args[3]));
        return;
    }
    let dir = std::env::args_os()
        .nth(1)
        .expect("usage: seedgen <seeds dir>");
    let dir = std::path::PathBuf::from(dir);
    let mut n = 0;
    for (target, name, bytes) in seeds::all() {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
        n += 1;
    }
    println!("wrote {n} seeds under {}", dir.display());
}
