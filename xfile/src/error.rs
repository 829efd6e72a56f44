//! The error type of every staging operation.

use std::io;
use std::path::PathBuf;

/// Why a staging operation failed.
///
/// Staging errors mean the tool itself could not proceed (the backing file
/// could not be written, the memory budget is too small for what was asked);
/// they are never findings about the data being checked. A caller such as a
/// scrubber aborts the one operation that hit the error; the structure stays
/// usable for reading what was already staged.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum StagingError {
    /// The backing file returned an I/O error other than "out of space".
    #[error("staging file I/O failed while trying to {op}: {source}")]
    Io {
        /// What the staging code was doing, e.g. "write back a page".
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },

    /// The filesystem holding the backing file is full, the user's quota is
    /// used up, or the file hit the file size limit (ENOSPC, EDQUOT, EFBIG).
    #[error(
        "no space left for staging data of {name:?} in {dir} while trying to {op}: {source}; \
         free space there or point SCRUBD_TMPDIR at a larger filesystem"
    )]
    NoSpace {
        /// Name of the staging structure.
        name: String,
        /// Directory that holds the (unlinked) backing file.
        dir: PathBuf,
        /// What the staging code was doing.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },

    /// A page lease was requested while `limit` leases of this file are
    /// already held. Leases pin memory, so their number is bounded; the
    /// request fails at once instead of waiting.
    #[error("too many page leases held on one staging file (limit {limit})")]
    TooManyLeases {
        /// The `max_leases` of the file.
        limit: usize,
    },

    /// Pinned direct access (`with_page*`, `lease`, or a sort's work buffer)
    /// needed memory that the budget cannot give: everything that could be
    /// evicted is pinned or busy.
    #[error(
        "staging memory budget of {limit} bytes exhausted: {name:?} needs {needed} more bytes \
         of pinned memory while all cached pages are pinned or busy; raise the memory budget"
    )]
    BudgetExhausted {
        /// Name of the staging structure that asked.
        name: String,
        /// Bytes that were asked for.
        needed: u64,
        /// The budget's limit.
        limit: u64,
    },

    /// An offset, index or length lies outside what the structure can hold
    /// or outside what it holds now.
    #[error("{what} out of range in {name:?}: {value} (limit {limit})")]
    OutOfRange {
        /// Name of the staging structure.
        name: String,
        /// What was out of range, e.g. "record index".
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The first value that is not allowed.
        limit: u64,
    },

    /// The options given to [`crate::XFile::with_options`] are not usable.
    #[error("invalid staging file options: {reason}")]
    InvalidOptions {
        /// Which option and why.
        reason: String,
    },

    /// A blob cookie does not name a live blob: it was freed, the blob store
    /// was truncated, or the cookie was never issued by this store.
    #[error(
        "blob cookie (offset {offset}, id {id}) does not name a live blob in {name:?}: {reason}"
    )]
    InvalidCookie {
        /// Name of the blob store.
        name: String,
        /// Offset stored in the cookie.
        offset: u64,
        /// Identifier stored in the cookie.
        id: u64,
        /// What did not match.
        reason: &'static str,
    },
}

impl StagingError {
    /// Build the right variant for an I/O error of the backing file:
    /// ENOSPC, EDQUOT and EFBIG become [`StagingError::NoSpace`].
    pub(crate) fn from_io(
        name: &str,
        dir: &std::path::Path,
        op: &'static str,
        source: io::Error,
    ) -> Self {
        match source.kind() {
            io::ErrorKind::StorageFull
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::QuotaExceeded => StagingError::NoSpace {
                name: name.to_owned(),
                dir: dir.to_owned(),
                op,
                source,
            },
            _ => StagingError::Io { op, source },
        }
    }

    /// True for [`StagingError::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, StagingError::NoSpace { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_errors_become_no_space() {
        let dir = std::path::Path::new("/staging");
        for errno in [
            rustix::io::Errno::NOSPC,
            rustix::io::Errno::FBIG,
            rustix::io::Errno::DQUOT,
        ] {
            let e = StagingError::from_io("shadow", dir, "write back a page", errno.into());
            assert!(e.is_no_space(), "{errno:?}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains("\"shadow\"")
                    && msg.contains("/staging")
                    && msg.contains("write back a page"),
                "{msg}"
            );
        }
        let e = StagingError::from_io("shadow", dir, "read", rustix::io::Errno::IO.into());
        assert!(matches!(e, StagingError::Io { op: "read", .. }), "{e:?}");
    }
}
