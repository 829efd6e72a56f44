//! Scrubbers and the registry that knows their dependencies.

use crate::context::ScrubContext;
use crate::error::ScrubError;
use crate::finding::Findings;
use serde::Serialize;
use std::fmt;

/// The object a scrubber checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One instance per group (allocation group, block group, ...): the
    /// orchestrator runs one item per group, in parallel.
    Group,
    /// One instance for the whole filesystem.
    Whole,
}

/// One unit of scrub work: a scrubber on one group, or on the whole target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ItemId {
    /// The scrubber's name.
    pub scrubber: &'static str,
    /// The group, for group scrubbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            Some(g) => write!(f, "{} (group {g})", self.scrubber),
            None => f.write_str(self.scrubber),
        }
    }
}

/// Whether a scrubber can run on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applicability {
    /// Run it.
    Applies,
    /// The structure does not exist on this target (for example an optional
    /// btree the filesystem was made without): nothing to check, nothing to
    /// report beyond the reason in the run's list of skipped items.
    Absent(String),
    /// The check would be meaningful but cannot be done (for example it needs
    /// a feature the filesystem lacks): reported as a warning naming the
    /// reason, never silently skipped.
    Impossible(String),
}

/// A checker of one kind of structure of targets of type `T`.
///
/// A scrubber reads what it needs from the target, reports problems as
/// findings and returns an error only when it cannot go on.
pub trait Scrubber<T: ?Sized>: Send + Sync {
    /// The structure's name: used in findings, in `--only`, and as the
    /// dependency name (e.g. `agf`, `bnobt`).
    fn name(&self) -> &'static str;

    /// One item per group, or one for the whole target.
    fn scope(&self) -> Scope;

    /// Scrubbers whose items must finish first (same group for group
    /// scrubbers; all groups when depending on a group scrubber from a
    /// whole-target one). A scrubber reads its dependencies' verdicts from
    /// [`ScrubContext::health`].
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether this scrubber can run on `target`.
    fn applies(&self, _target: &T) -> Applicability {
        Applicability::Applies
    }

    /// Checks one item.
    fn scrub(
        &self,
        target: &T,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError>;
}

/// What the orchestrator needs to know of a target.
pub trait ScrubTarget: Sync {
    /// Number of groups.
    fn group_count(&self) -> u64;
}

/// The scrubbers of one kind of target, in report order.
pub struct Registry<T: ?Sized> {
    scrubbers: Vec<Box<dyn Scrubber<T>>>,
}

impl<T: ?Sized> Default for Registry<T> {
    fn default() -> Self {
        Self {
            scrubbers: Vec::new(),
        }
    }
}

impl<T: ?Sized> Registry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scrubber. Its dependencies must already be registered, which
    /// keeps the registry free of cycles and makes registration order a
    /// valid run order.
    pub fn register(&mut self, s: Box<dyn Scrubber<T>>) -> Result<(), ScrubError> {
        let name = s.name();
        if self.get(name).is_some() {
            return Err(ScrubError::DuplicateName(name));
        }
        for dep in s.depends_on() {
            if *dep == name {
                return Err(ScrubError::DependencyCycle(name));
            }
            if self.get(dep).is_none() {
                return Err(ScrubError::UnknownDependency {
                    scrubber: name,
                    dependency: dep,
                });
            }
        }
        self.scrubbers.push(s);
        Ok(())
    }

    /// The scrubber called `name`.
    pub fn get(&self, name: &str) -> Option<&dyn Scrubber<T>> {
        self.scrubbers
            .iter()
            .find(|s| s.name() == name)
            .map(|s| &**s)
    }

    /// All names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.scrubbers.iter().map(|s| s.name()).collect()
    }

    /// All scrubbers, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Scrubber<T>> {
        self.scrubbers.iter().map(|s| &**s)
    }

    /// Positions of the scrubbers named in `only` (all when `None`), in
    /// registration order; an unknown name is an error.
    pub fn select(&self, only: Option<&[String]>) -> Result<Vec<usize>, ScrubError> {
        let Some(only) = only else {
            return Ok((0..self.scrubbers.len()).collect());
        };
        for name in only {
            if self.get(name).is_none() {
                return Err(ScrubError::UnknownScrubber {
                    name: name.clone(),
                    known: self.names().join(","),
                });
            }
        }
        Ok(self
            .scrubbers
            .iter()
            .enumerate()
            .filter(|(_, s)| only.iter().any(|n| n == s.name()))
            .map(|(i, _)| i)
            .collect())
    }

    pub(crate) fn at(&self, i: usize) -> &dyn Scrubber<T> {
        &*self.scrubbers[i]
    }
}
