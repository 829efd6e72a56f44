//! Errors of repairs: the repair could not be done (or finished) safely.

use std::path::PathBuf;

/// Why a repair step failed. Nothing is left half-applied by any of these:
/// a failed commit is finished or rolled back by [`crate::recover`] or
/// [`crate::undo`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// Reading or writing the image or a sidecar file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A journal from an interrupted commit must be replayed first.
    #[error(
        "an interrupted repair left its journal at {path}; it must be replayed before anything else"
    )]
    JournalPending {
        /// The journal.
        path: PathBuf,
    },
    /// A sidecar file is damaged or not of this kind.
    #[error("{path}: {reason}")]
    BadSidecar {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sidecar file belongs to another image.
    #[error("{path} was written for a different image")]
    WrongImage {
        /// The file.
        path: PathBuf,
    },
    /// Two staged writes overlap.
    #[error("staged writes overlap at byte {offset}")]
    Overlap {
        /// Where.
        offset: u64,
    },
    /// One write is too large for a sidecar record.
    #[error("a single write of {len} bytes is too large")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// A new-block write would overwrite the image's marker.
    #[error("the new-block write at byte {offset} overlaps the image's repair marker")]
    MarkerInNewBlock {
        /// Where.
        offset: u64,
    },
    /// A live write covers part of the marker range but not all of it.
    #[error("the write at byte {offset} covers only part of the image's repair marker")]
    MarkerSplit {
        /// Where.
        offset: u64,
    },
    /// The space proven free ran out before the new structure was built.
    #[error(
        "not enough free space for the new structure: needed {needed} blocks, {available} free"
    )]
    NoSpace {
        /// Blocks asked for.
        needed: u64,
        /// Blocks that were free.
        available: u64,
    },
    /// Building the new structure failed.
    #[error("building the new structure failed: {0}")]
    Build(#[from] xfbtree::BtreeError),
}
