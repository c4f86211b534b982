//! Writes fuzz/seeds/<target>/<name> for every fuzz target. Usage: seedgen <seeds dir>.
//! Deterministic: the same crate writes the same files.

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

fn main() {
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
