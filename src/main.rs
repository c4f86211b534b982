//! The `bittube` command line tool.

fn main() {
    eprintln!("bittube: no subcommands yet");
    std::process::exit(2);
}
