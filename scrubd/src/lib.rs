//! The `scrubd` command-line tool as a library: the `check` command, its
//! reports (human text and a JSON Lines wire format), progress bars, and
//! the mapping of outcomes to fsck(8) exit codes.
//!
//! # What it is for
//!
//! The binary (`src/main.rs`) parses arguments and calls into this crate;
//! keeping the command logic here lets the wire format be documented in
//! rustdoc ([`report::json`]) and tested without a process.
//!
//! # What it is not for
//!
//! It holds no checking logic: the XFS scrubbers live in the `xfs` crate
//! and the orchestration in `scrub`. This crate opens the image, runs the
//! registry and says what was found.
//!
//! # Invariants
//!
//! - `check` never writes to the image: it opens it read-only.
//! - Findings are data: damage found is a report and exit code 4, never an
//!   error. An error (exit 8) means the check itself could not be done.
//! - Exit codes are decided in one place, [`exit`].
#![forbid(unsafe_code)]

pub mod check;
pub mod exit;
pub mod primary;
pub mod progress;
pub mod repair;
pub mod report;
pub mod size;
