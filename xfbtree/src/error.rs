//! Errors of tree operations.

use crate::store::{BlockAddr, StoreError};

/// Why a tree operation could not complete.
///
/// Corruption met during an ordinary operation (a lookup, an insert) is an
/// error: the operation cannot give a trustworthy answer. To *describe*
/// corruption, run the verifier, which reports findings instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtreeError {
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block on the path of the operation is not a valid block of this tree.
    #[error("corrupt btree block {addr} (level {level}): {reason}")]
    Corrupt {
        /// The block.
        addr: BlockAddr,
        /// The level the block was expected at.
        level: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// An insert found a record with the same key.
    #[error("a record with this key is already in the tree")]
    Duplicate,
    /// The format's sizes do not make a usable block layout.
    #[error("unusable btree format: {0}")]
    BadFormat(String),
    /// The tree would grow taller than the format allows.
    #[error("the tree would need {needed} levels; the format allows {max}")]
    TooTall {
        /// Levels needed.
        needed: usize,
        /// Levels allowed.
        max: u16,
    },
    /// The operation needs a root block but the tree's root lives elsewhere
    /// (an inline root is only walked, never modified, by this engine).
    #[error("the tree's root is held by its owner; this operation needs a root block")]
    InlineRoot,
    /// The bulk loader was given records out of order.
    #[error("bulk load record {index} is not above the previous record's key")]
    Unsorted {
        /// Position in the input stream.
        index: u64,
    },
    /// The bulk loader was given a different number of records than planned.
    #[error("bulk load planned {planned} records but the input held {actual}")]
    CountMismatch {
        /// Records the geometry was computed for.
        planned: u64,
        /// Records the input produced (at least this many).
        actual: u64,
    },
    /// The record source of a bulk load failed.
    #[error("bulk load input failed: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BtreeError {
    pub(crate) fn corrupt(addr: BlockAddr, level: u16, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            addr,
            level,
            reason: reason.into(),
        }
    }
}
