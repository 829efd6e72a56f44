//! Running a registry over a target: dependency waves, in parallel, with a
//! deterministic report.

use crate::context::ScrubContext;
use crate::error::ScrubError;
use crate::finding::{Finding, FindingKind, Findings};
use crate::health::Health;
use crate::scrubber::{Applicability, ItemId, Registry, Scope, ScrubTarget};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only these scrubbers (by name); all when `None`. Dependencies
    /// not selected are not run; they only order what is.
    pub only: Option<Vec<String>>,
    /// Worker threads: `Some(1)` runs every item on the calling thread, in
    /// order; `Some(n)` on a pool of `n` threads made for the run; `None` on
    /// the caller's rayon pool (the global pool has one thread per CPU).
    pub threads: Option<usize>,
}

/// How an item ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ItemStatus {
    /// The scrubber ran to the end.
    Done,
    /// The structure does not exist on this target.
    Absent {
        /// Why.
        reason: String,
    },
    /// The check could not be done (a warning finding says why).
    Impossible {
        /// Why.
        reason: String,
    },
    /// The scrubber stopped early (its findings include an `incomplete`).
    Failed {
        /// Why.
        error: String,
        /// Whether the cause was operational (I/O and the like) rather than
        /// staging or cancellation.
        operational: bool,
    },
    /// Not run, or stopped, because the run was cancelled.
    Cancelled,
}

/// The outcome of one item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    /// Which item.
    pub item: ItemId,
    /// How it ended.
    #[serde(flatten)]
    pub status: ItemStatus,
    /// What it found, in the order found.
    pub findings: Vec<Finding>,
    /// The health it established.
    pub health: Health,
    /// Wall time spent.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// The outcome of a run: every item in registry order, then group order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Items, in report order.
    pub items: Vec<ItemReport>,
    /// Whether the run was cancelled before every item finished.
    pub cancelled: bool,
}

impl Report {
    /// Every finding, in report order.
    pub fn findings(&self) -> impl Iterator<Item = (&ItemId, &Finding)> {
        self.items
            .iter()
            .flat_map(|i| i.findings.iter().map(move |f| (&i.item, f)))
    }

    /// Number of findings of each kind.
    pub fn counts(&self) -> BTreeMap<FindingKind, u64> {
        let mut m = BTreeMap::new();
        for (_, f) in self.findings() {
            *m.entry(f.kind).or_insert(0) += 1;
        }
        m
    }

    /// Whether any finding means damage.
    pub fn has_damage(&self) -> bool {
        self.findings().any(|(_, f)| f.kind.is_damage())
    }

    /// Fills in the path of every finding that names an inode but no path.
    ///
    /// Scrubbers see one structure at a time and rarely know a file's name;
    /// the target does, by walking its namespace once. `name` gets the set
    /// of inode numbers wanted and returns the names it found (an inode it
    /// cannot name keeps only its number). Nothing is called when no
    /// finding needs a name, so a clean run pays nothing.
    pub fn attach_paths(&mut self, name: impl FnOnce(&BTreeSet<u64>) -> BTreeMap<u64, String>) {
        let wanted: BTreeSet<u64> = self
            .findings()
            .filter(|(_, f)| f.location.path.is_none())
            .filter_map(|(_, f)| f.location.inode)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let names = name(&wanted);
        for f in self.items.iter_mut().flat_map(|i| i.findings.iter_mut()) {
            if f.location.path.is_none()
                && let Some(p) = f.location.inode.and_then(|i| names.get(&i))
            {
                f.location.path = Some(p.clone());
            }
        }
    }

    /// Whether any item failed for an operational reason.
    pub fn has_operational_error(&self) -> bool {
        self.items.iter().any(|i| {
            matches!(
                i.status,
                ItemStatus::Failed {
                    operational: true,
                    ..
                }
            )
        })
    }
}

/// Runs the selected scrubbers of `registry` over `target`.
///
/// Items run in waves: an item runs once every item it depends on has
/// finished; the items of a wave run in parallel on a pool of
/// `opts.threads` threads. Whatever the schedule, the report lists items in
/// registry order and then group order, each with its findings in the order
/// its scrubber emitted them.
///
/// Fails only when the request itself is wrong (an unknown scrubber name,
/// a thread pool that cannot be built); problems of items are in the report.
pub fn run<T: ScrubTarget + ?Sized>(
    target: &T,
    registry: &Registry<T>,
    ctx: &ScrubContext,
    opts: &RunOptions,
) -> Result<Report, ScrubError> {
    let selected = registry.select(opts.only.as_deref())?;
    let groups = target.group_count();

    // Expand scrubbers into items, in report order.
    let mut items: Vec<(usize, ItemId)> = Vec::new();
    for &s in &selected {
        let sc = registry.at(s);
        match sc.scope() {
            Scope::Group => {
                for g in 0..groups {
                    items.push((
                        s,
                        ItemId {
                            scrubber: sc.name(),
                            group: Some(g),
                        },
                    ));
                }
            }
            Scope::Whole => items.push((
                s,
                ItemId {
                    scrubber: sc.name(),
                    group: None,
                },
            )),
        }
    }

    // Wave of each item: one more than the deepest selected dependency.
    // Registration order guarantees dependencies come first.
    let mut wave_of: BTreeMap<ItemId, usize> = BTreeMap::new();
    for (s, id) in &items {
        let mut wave = 0;
        for dep in registry.at(*s).depends_on() {
            for (_, did) in items.iter().filter(|(_, d)| d.scrubber == *dep) {
                let relevant = match (id.group, did.group) {
                    (Some(g), Some(dg)) => g == dg,
                    _ => true,
                };
                if relevant && let Some(w) = wave_of.get(did) {
                    wave = wave.max(w + 1);
                }
            }
        }
        wave_of.insert(id.clone(), wave);
    }
    let waves = wave_of.values().copied().max().map_or(0, |w| w + 1);

    // Where items run. One thread: right here, in order. No count: on the
    // caller's rayon pool (the global one, or the pool the caller already
    // runs in). A count: a pool of our own. (Installing into a new pool
    // from inside another pool's worker would let that worker pick up more
    // of its own pool's jobs while it waits, nesting without bound.)
    let pool = match opts.threads {
        Some(n) if n > 1 => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("scrub-{i}"))
                .build()
                .map_err(ScrubError::operational)?,
        ),
        _ => None,
    };
    let sequential = opts.threads == Some(1);

    let mut results: BTreeMap<ItemId, ItemReport> = BTreeMap::new();
    for wave in 0..waves {
        let batch: Vec<&(usize, ItemId)> = items
            .iter()
            .filter(|(_, id)| wave_of.get(id) == Some(&wave))
            .collect();
        let run_batch = || -> Vec<ItemReport> {
            use rayon::prelude::*;
            if sequential {
                batch
                    .iter()
                    .map(|(s, id)| run_item(target, registry, *s, id, ctx))
                    .collect()
            } else {
                batch
                    .par_iter()
                    .map(|(s, id)| run_item(target, registry, *s, id, ctx))
                    .collect()
            }
        };
        let done = match &pool {
            Some(p) => p.install(run_batch),
            None => run_batch(),
        };
        for r in done {
            results.insert(r.item.clone(), r);
        }
    }

    let mut report = Report::default();
    for (_, id) in &items {
        if let Some(r) = results.remove(id) {
            report.cancelled |= r.status == ItemStatus::Cancelled;
            report.items.push(r);
        }
    }
    Ok(report)
}

fn run_item<T: ScrubTarget + ?Sized>(
    target: &T,
    registry: &Registry<T>,
    s: usize,
    id: &ItemId,
    ctx: &ScrubContext,
) -> ItemReport {
    let sc = registry.at(s);
    let start = Instant::now();
    let mut out = Findings::new();
    let finish = |status: ItemStatus, findings: Findings| {
        let findings = findings.into_vec();
        let health = match status {
            ItemStatus::Done | ItemStatus::Failed { .. } => Health::from_findings(&findings),
            _ => Health::Unchecked,
        };
        ctx.health().set(id.scrubber, id.group, health);
        ctx.progress()
            .finish(id, findings.iter().map(|f| f.kind).min());
        ItemReport {
            item: id.clone(),
            status,
            findings,
            health,
            elapsed: start.elapsed(),
        }
    };
    if ctx.cancel_token().is_cancelled() {
        return finish(ItemStatus::Cancelled, out);
    }
    match sc.applies(target) {
        Applicability::Applies => {}
        Applicability::Absent(reason) => return finish(ItemStatus::Absent { reason }, out),
        Applicability::Impossible(reason) => {
            let mut f = Finding::new(
                FindingKind::Warning,
                id.scrubber,
                format!("{}.not-possible", id.scrubber),
                format!("check not possible: {reason}"),
            );
            if let Some(g) = id.group {
                f = f.group(g);
            }
            out.push(f);
            return finish(ItemStatus::Impossible { reason }, out);
        }
    }
    ctx.progress().begin(id, 0);
    // A bug in one scrubber must not take the whole run down: a panic ends
    // the item as an operational failure and the run goes on.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sc.scrub(target, id, ctx, &mut out)
    }))
    .unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(ScrubError::Internal(format!(
            "scrubber {} panicked: {what}",
            id.scrubber
        )))
    });
    match result {
        Ok(()) => finish(ItemStatus::Done, out),
        Err(ScrubError::Cancelled) => finish(ItemStatus::Cancelled, out),
        Err(e) => {
            let operational = !matches!(e, ScrubError::Staging(_));
            let mut f = Finding::new(
                FindingKind::Incomplete,
                id.scrubber,
                format!("{}.incomplete", id.scrubber),
                format!("check incomplete: {e}"),
            );
            if let Some(g) = id.group {
                f = f.group(g);
            }
            out.push(f);
            finish(
                ItemStatus::Failed {
                    error: e.to_string(),
                    operational,
                },
                out,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(findings: Vec<Finding>) -> ItemReport {
        ItemReport {
            item: ItemId {
                scrubber: "toy",
                group: None,
            },
            status: ItemStatus::Done,
            findings,
            health: Health::Unchecked,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn attach_paths_names_only_what_needs_a_name() {
        let f = |ino: Option<u64>| {
            let f = Finding::new(FindingKind::Corrupt, "toy", "toy.bad", "bad");
            match ino {
                Some(i) => f.inode(i),
                None => f,
            }
        };
        let mut report = Report {
            items: vec![
                item(vec![f(Some(7)), f(None), f(Some(9)).path("/kept")]),
                item(vec![f(Some(8)), f(Some(7))]),
            ],
            cancelled: false,
        };
        let mut asked = None;
        report.attach_paths(|wanted| {
            asked = Some(wanted.clone());
            BTreeMap::from([(7, "/a/seven".to_owned())])
        });
        assert_eq!(asked, Some(BTreeSet::from([7, 8])));
        let paths: Vec<Option<&str>> = report
            .findings()
            .map(|(_, f)| f.location.path.as_deref())
            .collect();
        assert_eq!(
            paths,
            [
                Some("/a/seven"),
                None,
                Some("/kept"),
                None,
                Some("/a/seven")
            ]
        );

        // Nothing to name: the namer is not called.
        let mut clean = Report::default();
        clean.attach_paths(|_| panic!("called for a clean report"));
    }
}
