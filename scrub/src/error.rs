//! Errors: the tool itself could not proceed.

/// Why a scrub item (or a whole run) could not proceed.
///
/// Damage found in the filesystem is never an error: it is a
/// [`Finding`](crate::Finding). An error means the check itself stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrubError {
    /// The run was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// Staging memory or its backing file failed; the item's result is
    /// incomplete.
    #[error("staging failed: {0}")]
    Staging(#[from] xfile::StagingError),
    /// The check could not go on for a reason outside the structure checked
    /// (for example an I/O error reading the image).
    #[error("{0}")]
    Operational(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bug: the scrubber panicked. Reported, never swallowed.
    #[error("internal error: {0}")]
    Internal(String),
    /// `--only` named a scrubber the registry does not have.
    #[error("unknown scrubber {name:?}; known: {known}")]
    UnknownScrubber {
        /// The name asked for.
        name: String,
        /// The names the registry has, comma separated.
        known: String,
    },
    /// A scrubber depends on one that is not registered.
    #[error("scrubber {scrubber} depends on unknown scrubber {dependency}")]
    UnknownDependency {
        /// The dependent.
        scrubber: &'static str,
        /// The missing dependency.
        dependency: &'static str,
    },
    /// The dependencies of the registered scrubbers form a cycle.
    #[error("scrubber dependencies form a cycle through {0}")]
    DependencyCycle(&'static str),
    /// Two scrubbers share a name.
    #[error("two scrubbers are named {0}")]
    DuplicateName(&'static str),
}

impl ScrubError {
    /// Wraps any error as an operational one.
    pub fn operational(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ScrubError::Operational(Box::new(e))
    }
}
