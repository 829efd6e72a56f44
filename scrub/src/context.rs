//! What every scrubber gets: staging budget, cancellation, progress, health.

use crate::error::ScrubError;
use crate::finding::FindingKind;
use crate::health::{Health, HealthMap};
use crate::scrubber::ItemId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use xfile::MemoryBudget;

/// A flag that asks running scrubbers to stop (set from a Ctrl-C handler).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Receives progress of a run; the command-line tool draws bars from it.
///
/// Called from worker threads; implementations must be cheap.
pub trait Progress: Send + Sync {
    /// An item started; `total` is its unit count if known (else 0).
    fn begin(&self, _item: &ItemId, _total: u64) {}
    /// An item advanced by `delta` units.
    fn advance(&self, _item: &ItemId, _delta: u64) {}
    /// An item finished; `worst` is its most severe finding.
    fn finish(&self, _item: &ItemId, _worst: Option<FindingKind>) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// The environment of a run, shared by all its scrubbers.
#[derive(Clone)]
pub struct ScrubContext {
    budget: MemoryBudget,
    cancel: CancelToken,
    progress: Arc<dyn Progress>,
    health: Arc<HealthMap>,
}

impl std::fmt::Debug for ScrubContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrubContext")
            .field("budget", &self.budget.limit())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ScrubContext {
    /// A context staging under `budget`, not cancelled, reporting no
    /// progress.
    pub fn new(budget: MemoryBudget) -> Self {
        Self {
            budget,
            cancel: CancelToken::new(),
            progress: Arc::new(NoProgress),
            health: Arc::new(HealthMap::default()),
        }
    }

    /// Uses `token` for cancellation.
    pub fn with_cancel(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The staging budget every staging structure of this run shares.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The cancellation token.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Returns [`ScrubError::Cancelled`] once cancellation was asked for;
    /// long loops call this now and then.
    pub fn check_cancelled(&self) -> Result<(), ScrubError> {
        if self.cancel.is_cancelled() {
            Err(ScrubError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The progress sink.
    pub fn progress(&self) -> &dyn Progress {
        &*self.progress
    }

    /// Health of every structure checked so far in this run.
    pub fn health(&self) -> &HealthMap {
        &self.health
    }

    /// Health of one structure: shorthand for `health().get(..)`.
    pub fn health_of(&self, structure: &str, group: Option<u64>) -> Health {
        self.health.get(structure, group)
    }
}
