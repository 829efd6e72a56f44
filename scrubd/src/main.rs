//! `scrubd`: check and repair XFS v5 filesystem images.
//!
//! This file parses the command line and turns results into exit codes
//! (through [`scrubd::exit`], the one place that maps them). Errors are
//! rendered once, here, as one line `scrubd: <error>: <cause>: ...`.
#![forbid(unsafe_code)]

mod info;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use scrub::CancelToken;
use scrubd::check::{self, CheckArgs};
use scrubd::exit::{self, CliError};
use scrubd::report;
use scrubd::size::{self, parse_size};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Check every metadata structure of an image, read-only, and report
    /// what is damaged.
    #[command(
        long_about = "Check every metadata structure of an XFS v5 image and report what is \
damaged: where (AG, block, record, inode), what (field, expected and actual value) and how \
bad (corrupt, xref-corrupt, xref-failed, incomplete, preen, warning). The image is opened \
read-only and never written. A dirty log is reported as a warning: the results may then be \
stale, as with xfs_repair -n.",
        after_long_help = CHECK_AFTER_HELP,
        after_help = "Exit status: 0 no damage, 4 damage found, 8 operational error, \
16 usage error, 32 cancelled (bits combine). See --help for more."
    )]
    Check(CheckCli),
    /// Repair an image: check it, plan the rebuilds the damage calls for
    /// and, with --commit, write them atomically (a dry run otherwise).
    #[command(
        after_help = "Exit status: 0 no damage, 1 all damage found was repaired, 4 damage left \
(always after a dry run that found damage), 8 operational error, 16 usage error."
    )]
    Repair(RepairCli),
    /// Undo the repairs recorded in an undo file, restoring the image's
    /// previous bytes exactly. Safe to run again after an interruption.
    Undo {
        /// The undo file a `repair --commit` wrote.
        undo_file: PathBuf,
        /// The repaired image.
        image: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RepairCli {
    /// The image: a plain file or block device (not compressed).
    image: PathBuf,
    /// Write the repairs. Without it nothing is written: the plan is
    /// printed (a dry run, the image opened read-only).
    #[arg(long)]
    commit: bool,
    /// Where to keep the undo file. Default: IMAGE.scrubd-undo.
    #[arg(long, value_name = "PATH")]
    undo_file: Option<PathBuf>,
    /// Staging memory budget (as for check).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Worker threads for the checks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

const CHECK_AFTER_HELP: &str = "\
Exit status (bits, combined as fsck(8) combines them):
  0   no damage found (preen and warning findings alone give 0)
  4   damage found: a corrupt or xref-corrupt finding
  8   operational error: the image cannot be read or is unsupported (v4,
      unknown features, I/O error), or a check stopped because of one
  16  usage error (bad flag or argument)
  32  cancelled by Ctrl-C (a second Ctrl-C exits at once)

A damaged primary superblock is damage (exit 4), not an operational error,
when a valid secondary superblock shows the image is XFS.

Examples:
  scrubd check testdata/images/rmapbt.img.zst
  scrubd check --json --only agf,bnobt,cntbt testdata/images/large.img.zst
  scrubd check --memory 256M --threads 1 /dev/vg0/scratch

JSON output (--json) is documented in the rustdoc of scrubd::report::json
(cargo doc -p scrubd --open).";

#[derive(Debug, Args)]
struct CheckCli {
    /// The image: a file or block device, plain or zstd-compressed.
    image: PathBuf,
    /// Write JSON Lines on stdout instead of the text report: a `begin`
    /// record, one `finding` per finding, `item` records for checks not
    /// done, and a final `summary` (see scrubd::report::json).
    #[arg(long)]
    json: bool,
    /// No progress bar; the text report leaves out its header and the list
    /// of structures the filesystem does not have.
    #[arg(long, short)]
    quiet: bool,
    /// Staging memory budget for shadow copies of metadata: bytes, or a
    /// number with K, M, G or T (multiples of 1024), e.g. 512M. Staging
    /// beyond it spills to a temporary file in $SCRUBD_TMPDIR. Default:
    /// 1/8 of physical memory, at least 64M and at most 4G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// After the report, a table of the staging structures: records and
    /// bytes staged, peak memory, bytes spilled to disk, evictions and
    /// page-ins per structure name (a `stats` record with --json).
    #[arg(long)]
    stats: bool,
    /// Worker threads checking allocation groups in parallel. Default: the
    /// number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Check only these structures (comma separated). Structures they
    /// depend on are not checked unless named too.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        value_parser = PossibleValuesParser::new(check::scrubber_names())
    )]
    only: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap renders help, version and usage errors itself.
            let _ = e.print();
            return ExitCode::from(exit::for_clap(&e));
        }
    };
    let result = match cli.command {
        Command::Info { image, sb } => info::run(&image, sb)
            .map(|()| exit::NO_DAMAGE)
            .map_err(CliError::Operational),
        Command::Check(c) => run_check(c),
        Command::Repair(r) => run_repair(r),
        Command::Undo { undo_file, image } => scrubd::repair::undo(&undo_file, &image).map(|s| {
            print!("{s}");
            exit::NO_DAMAGE
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("scrubd: {e}");
            ExitCode::from(exit::for_error(&e))
        }
    }
}

/// Runs `scrubd check` and prints its report; returns the exit code.
fn run_check(c: CheckCli) -> Result<u8, CliError> {
    let cancel = interrupt_token()?;
    let args = CheckArgs {
        image: c.image,
        memory: c.memory.unwrap_or_else(size::default_memory),
        threads: c.threads.map_or_else(default_threads, usize::from),
        only: c.only,
        progress: !c.quiet && std::io::stderr().is_terminal(),
        stats: c.stats,
    };
    let r = check::run(&args, &cancel)?;
    let mut out = std::io::stdout().lock();
    if c.json {
        report::json::write(&r, &mut out)?;
    } else {
        out.write_all(report::text::render(&r, c.quiet).as_bytes())?;
    }
    out.flush()?;
    Ok(r.exit_code())
}

/// Runs `scrubd repair` and prints what it did; returns the exit code.
fn run_repair(r: RepairCli) -> Result<u8, CliError> {
    let args = scrubd::repair::RepairArgs {
        image: r.image,
        commit: r.commit,
        undo_file: r.undo_file,
        memory: r.memory.unwrap_or_else(size::default_memory),
        threads: r.threads.map_or_else(default_threads, usize::from),
    };
    let (text, code) = scrubd::repair::run(&args)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(code)
}

/// A cancel token set by the first Ctrl-C; the second exits at once.
fn interrupt_token() -> Result<CancelToken, CliError> {
    let token = CancelToken::new();
    let t = token.clone();
    ctrlc::set_handler(move || {
        if t.is_cancelled() {
            eprintln!("scrubd: interrupted again: exiting now");
            std::process::exit(i32::from(exit::CANCELLED));
        }
        t.cancel();
        eprintln!("scrubd: interrupted: finishing the checks under way (Ctrl-C again to exit now)");
    })
    .map_err(|e| CliError::Operational(format!("cannot handle Ctrl-C: {e}").into()))?;
    Ok(token)
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
