//! `scrubd`: check and repair XFS v5 filesystem images.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("scrubd: no subcommands yet");
    std::process::exit(16);
}
