//! The online fsck framework: findings, scrub context, scrubbers and their
//! registry, the orchestrator that runs them, extent bitmaps and health
//! state.
//!
//! # What it is for
//!
//! A filesystem checker built on this crate writes one [`Scrubber`] per
//! metadata structure (one file each, named after the structure), registers
//! them with their dependencies, and calls [`run`]. The orchestrator expands
//! each scrubber into items (one per group, or one for the whole target),
//! runs items whose dependencies have finished in parallel, and returns a
//! [`Report`] whose order does not depend on scheduling. Scrubbers report
//! what is wrong as [`Finding`]s and keep errors for when they cannot go on.
//!
//! # What it is not for
//!
//! It knows no filesystem: targets, structures and their rules belong to the
//! filesystem's crate. It does not render reports; the command-line tool does.
//!
//! # Invariants
//!
//! - Findings are data, errors are errors: damage never aborts a run.
//! - A run's report is deterministic: items in registry order, then group
//!   order; findings in the order their scrubber emitted them.
//! - Staging memory is bounded by the context's budget; running out ends the
//!   item with an `incomplete` finding, not the process.
#![forbid(unsafe_code)]

mod bitmap;
mod context;
mod error;
mod finding;
mod health;
mod orchestrator;
mod scrubber;

pub use bitmap::{Coverage, ExtentBitmap};
pub use context::{CancelToken, NoProgress, Progress, ScrubContext};
pub use error::ScrubError;
pub use finding::{Finding, FindingKind, Findings, Location};
pub use health::{Health, HealthMap};
pub use orchestrator::{ItemReport, ItemStatus, Report, RunOptions, run};
pub use scrubber::{Applicability, ItemId, Registry, Scope, ScrubTarget, Scrubber};
