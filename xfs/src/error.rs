//! The crate's error type: what stops the reader from going on.
//!
//! Corruption found by a verifier is data ([`Problem`]); it becomes an
//! [`Error::Corrupt`] only where a caller needed a sound structure to
//! proceed (the primary superblock, a directory block on a path lookup).

use crate::device::DeviceError;
use crate::format::{Problem, ShortBuffer};
use std::fmt;

/// Why a read could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the device failed.
    #[error("device error")]
    Device(#[from] DeviceError),
    /// The first sector does not hold an XFS superblock.
    #[error("not an XFS filesystem (superblock magic {magic:#x}, expected 0x58465342)")]
    NotXfs {
        /// The magic number found.
        magic: u32,
    },
    /// The filesystem uses a format or feature this crate cannot read.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A structure needed to go on failed verification.
    #[error("{what} is corrupt: {}", ProblemList(.problems))]
    Corrupt {
        /// The structure and where it is (`primary superblock`, `inode 131`).
        what: String,
        /// Every problem its verifier found.
        problems: Vec<Problem>,
    },
    /// A structure is too damaged to decode at all.
    #[error("{what}: {reason}")]
    Malformed {
        /// The structure and where it is.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A buffer was too short for the structure read from it.
    #[error(transparent)]
    Short(#[from] ShortBuffer),
    /// A path component does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path looked up.
        path: String,
    },
    /// A path component that must be a directory is not one.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path looked up.
        path: String,
    },
    /// The operation needs a different kind of file (e.g. reading a
    /// directory as a regular file).
    #[error("inode {ino}: {reason}")]
    WrongFileType {
        /// The inode.
        ino: u64,
        /// What was expected.
        reason: String,
    },
    /// A walk hit its bound: a cycle or a hostile count or size.
    #[error("{what}: {reason}")]
    LimitExceeded {
        /// What was being walked.
        what: String,
        /// Which bound was hit.
        reason: String,
    },
    /// The caller asked for something out of range (an AG number past the
    /// last AG, an invalid inode number).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Renders problems separated by `; `.
struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
