//! `scrubd`: check and repair XFS v5 filesystem images.
//!
//! Exit codes: 0 success, 8 operational error (bad image, I/O error,
//! unsupported feature), 16 usage error. Errors are rendered once, here,
//! as one line `scrubd: <error>: <cause>: ...`.
#![forbid(unsafe_code)]

mod info;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for an operational error.
const EXIT_OPERATIONAL: u8 = 8;
/// Exit code for a usage error.
const EXIT_USAGE: u8 = 16;

#[derive(Debug, Parser)]
#[command(
    name = "scrubd",
    version,
    about = "Check and repair XFS v5 filesystem images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the filesystem geometry and features the way xfs_info does.
    Info {
        /// The image (plain or zstd-compressed).
        image: PathBuf,
        /// Print every primary superblock field as `name = value`, named
        /// and formatted as `xfs_db -c 'sb 0' -c print` prints them.
        #[arg(long)]
        sb: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            // clap renders help, version and usage errors itself.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Info { image, sb } => info::run(&image, sb),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrubd: {}", render_chain(e.as_ref()));
            ExitCode::from(EXIT_OPERATIONAL)
        }
    }
}

/// Renders an error and its causes on one line.
fn render_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
