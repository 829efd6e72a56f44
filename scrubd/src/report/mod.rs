//! What `scrubd check` found, and its two renderings: [`text`] for people
//! (the default) and [`json`], a documented JSON Lines wire format.

pub mod json;
pub mod text;

use crate::exit::{self, Outcome};
use scrub::{Finding, FindingKind, ItemId, ItemReport, ItemStatus};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every finding kind, most severe first (the order of counts in reports).
pub const KINDS: [FindingKind; 6] = [
    FindingKind::Corrupt,
    FindingKind::XrefCorrupt,
    FindingKind::XrefFailed,
    FindingKind::Incomplete,
    FindingKind::Preen,
    FindingKind::Warning,
];

/// The filesystem as its primary superblock describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsSummary {
    /// User-visible UUID.
    pub uuid: String,
    /// Number of AGs.
    pub ag_count: u32,
    /// Blocks per AG (all but possibly the last).
    pub ag_blocks: u32,
    /// Filesystem block size in bytes.
    pub block_size: u32,
    /// Blocks in the data device.
    pub dblocks: u64,
    /// Inode size in bytes.
    pub inode_size: u32,
    /// Names of the v5 features that change what is checked, as mkfs.xfs
    /// spells its options (`finobt`, `rmapbt`, `reflink`, ...).
    pub features: Vec<&'static str>,
    /// Log state: `clean`, `dirty`, `zeroed` or `corrupt`.
    pub log: &'static str,
    /// The log state in words (head and tail positions, or why corrupt).
    pub log_detail: String,
}

/// What `scrubd check` learned about one image.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The image as named on the command line.
    pub image: String,
    /// The filesystem, if its primary superblock was usable.
    pub fs: Option<FsSummary>,
    /// Staging memory budget in bytes.
    pub memory: u64,
    /// Worker threads.
    pub threads: usize,
    /// The scrubbers selected, in report order.
    pub scrubbers: Vec<&'static str>,
    /// Items the run was to check (0 if it did not run).
    pub planned_items: u64,
    /// Findings made outside the scrubbers, before the run: an unusable
    /// primary superblock, a dirty log, NEEDSREPAIR, a missing rmapbt.
    pub notices: Vec<Finding>,
    /// What the scrubbers found, item by item in report order.
    pub items: Vec<ItemReport>,
    /// Whether the user cancelled the run before every item finished.
    pub cancelled: bool,
    /// Wall time from opening the image to the end of the run.
    pub elapsed: Duration,
    /// Staging memory statistics (`--stats`), if asked for.
    pub stats: Option<StagingReport>,
}

/// Where the staging memory of a run went (`scrubd check --stats`).
#[derive(Debug, Clone)]
pub struct StagingReport {
    /// The budget's limit in bytes.
    pub limit: u64,
    /// Highest total charge to the budget during the run.
    pub peak_resident_bytes: u64,
    /// One entry per staging structure name, in order of first creation,
    /// summed over every structure of that name the run created
    /// ([`xfile::MemoryBudget::stats_by_name`]).
    pub structures: Vec<xfile::StagingStats>,
}

impl StagingReport {
    /// The statistics of `budget` now.
    pub fn of(budget: &xfile::MemoryBudget) -> Self {
        StagingReport {
            limit: budget.limit(),
            peak_resident_bytes: budget.stats().total.peak_resident_bytes,
            structures: budget.stats_by_name(),
        }
    }
}

/// How many items ended in each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemCounts {
    /// Items planned.
    pub total: u64,
    /// Ran to the end.
    pub done: u64,
    /// The structure does not exist on this filesystem.
    pub absent: u64,
    /// The check cannot be done on this filesystem.
    pub impossible: u64,
    /// Stopped early (staging space, I/O error, internal error).
    pub failed: u64,
    /// Not run, or stopped, because of Ctrl-C.
    pub cancelled: u64,
}

impl CheckReport {
    /// Every finding: notices first, then the items' in report order.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.notices
            .iter()
            .chain(self.items.iter().flat_map(|i| i.findings.iter()))
    }

    /// Number of findings of every kind (zeros included), most severe
    /// first.
    pub fn counts(&self) -> Vec<(FindingKind, u64)> {
        let mut m: BTreeMap<FindingKind, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
        for f in self.findings() {
            *m.entry(f.kind).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }

    /// Number of damage findings (`corrupt` and `xref-corrupt`).
    pub fn problems(&self) -> u64 {
        self.findings().filter(|f| f.kind.is_damage()).count() as u64
    }

    /// The structures with damage, in the order first reported.
    pub fn damaged_structures(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for f in self.findings().filter(|f| f.kind.is_damage()) {
            if !v.contains(&&*f.structure) {
                v.push(&f.structure);
            }
        }
        v
    }

    /// How the items ended.
    pub fn item_counts(&self) -> ItemCounts {
        let mut c = ItemCounts {
            total: self.planned_items,
            ..ItemCounts::default()
        };
        for i in &self.items {
            match i.status {
                ItemStatus::Done => c.done += 1,
                ItemStatus::Absent { .. } => c.absent += 1,
                ItemStatus::Impossible { .. } => c.impossible += 1,
                ItemStatus::Failed { .. } => c.failed += 1,
                ItemStatus::Cancelled => c.cancelled += 1,
            }
        }
        c
    }

    /// What decides the exit code.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            damage: self.findings().any(|f| f.kind.is_damage()),
            operational: self.items.iter().any(|i| {
                matches!(
                    i.status,
                    ItemStatus::Failed {
                        operational: true,
                        ..
                    }
                )
            }),
            cancelled: self.cancelled,
        }
    }

    /// The exit code of this report.
    pub fn exit_code(&self) -> u8 {
        exit::for_outcome(self.outcome())
    }
}

/// `AG 2 block 17 record 4`, `inode 131 (/dirs/node) offset 4096`: where a
/// finding is, in XFS terms. Block numbers are AG-relative when an AG is
/// given, filesystem block numbers otherwise.
pub fn location(f: &Finding) -> String {
    let l = &f.location;
    let mut parts: Vec<String> = Vec::new();
    match (l.inode, &l.path) {
        (Some(i), Some(p)) => parts.push(format!("inode {i} ({p})")),
        (Some(i), None) => parts.push(format!("inode {i}")),
        (None, Some(p)) => parts.push(p.clone()),
        (None, None) => {}
    }
    if let Some(g) = l.group {
        parts.push(format!("AG {g}"));
    }
    if let Some(b) = l.block {
        parts.push(format!("block {b}"));
    }
    if let Some(r) = l.record {
        parts.push(format!("record {r}"));
    }
    if let Some(o) = l.offset {
        parts.push(format!("offset {o}"));
    }
    parts.join(" ")
}

/// `bnobt AG 2` or `fscounters`: an item in words.
pub fn item_name(id: &ItemId) -> String {
    match id.group {
        Some(g) => format!("{} AG {g}", id.scrubber),
        None => id.scrubber.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scrub::Health;

    fn item(s: &'static str, g: u64, status: ItemStatus, findings: Vec<Finding>) -> ItemReport {
        ItemReport {
            item: ItemId {
                scrubber: s,
                group: Some(g),
            },
            status,
            findings,
            health: Health::Unchecked,
            elapsed: Duration::ZERO,
        }
    }

    fn absent() -> ItemStatus {
        ItemStatus::Absent {
            reason: "the filesystem has no free inode btree".into(),
        }
    }

    pub(crate) fn sample() -> CheckReport {
        CheckReport {
            image: "img".into(),
            fs: Some(FsSummary {
                uuid: "5c2bd000-0000-4000-8000-000000000003".into(),
                ag_count: 2,
                ag_blocks: 4096,
                block_size: 4096,
                dblocks: 8192,
                inode_size: 512,
                features: vec!["crc", "finobt"],
                log: "dirty",
                log_detail: "dirty (head at cycle 1 block 29, tail at cycle 1 block 2)".into(),
            }),
            stats: None,
            memory: 64 << 20,
            threads: 1,
            scrubbers: vec!["agf", "bnobt"],
            planned_items: 7,
            notices: vec![Finding::new(
                FindingKind::Warning,
                "log",
                "log.dirty",
                "the log is dirty",
            )],
            items: vec![
                item(
                    "agf",
                    0,
                    ItemStatus::Done,
                    vec![
                        Finding::new(FindingKind::Corrupt, "agf", "agf.freeblks", "bad")
                            .group(0)
                            .field("freeblks", 1, 2),
                    ],
                ),
                item(
                    "agf",
                    1,
                    ItemStatus::Failed {
                        error: "I/O error".into(),
                        operational: true,
                    },
                    vec![Finding::new(
                        FindingKind::Incomplete,
                        "agf",
                        "agf.incomplete",
                        "check incomplete: I/O error",
                    )],
                ),
                item(
                    "bnobt",
                    0,
                    ItemStatus::Done,
                    vec![
                        Finding::new(FindingKind::XrefCorrupt, "bnobt", "bnobt.xref", "x")
                            .group(0)
                            .block(1)
                            .record(3),
                    ],
                ),
                item("bnobt", 1, ItemStatus::Cancelled, vec![]),
                item("finobt", 0, absent(), vec![]),
                item("finobt", 1, absent(), vec![]),
                item(
                    "rmapbt",
                    0,
                    ItemStatus::Impossible {
                        reason: "needs reflink".into(),
                    },
                    vec![
                        Finding::new(
                            FindingKind::Warning,
                            "rmapbt",
                            "rmapbt.not-possible",
                            "check not possible: needs reflink",
                        )
                        .group(0),
                    ],
                ),
            ],
            cancelled: true,
            elapsed: Duration::from_millis(5),
        }
    }

    #[test]
    fn counts_verdict_and_exit_code() {
        let r = sample();
        let counts: BTreeMap<_, _> = r.counts().into_iter().collect();
        assert_eq!(counts[&FindingKind::Corrupt], 1);
        assert_eq!(counts[&FindingKind::XrefCorrupt], 1);
        assert_eq!(counts[&FindingKind::Incomplete], 1);
        assert_eq!(counts[&FindingKind::Warning], 2);
        assert_eq!(counts[&FindingKind::Preen], 0);
        assert_eq!(r.problems(), 2);
        assert_eq!(r.damaged_structures(), ["agf", "bnobt"]);
        let c = r.item_counts();
        assert_eq!(
            (
                c.total,
                c.done,
                c.failed,
                c.cancelled,
                c.absent,
                c.impossible
            ),
            (7, 2, 1, 1, 2, 1)
        );
        assert_eq!(r.exit_code(), 4 | 8 | 32);
    }

    #[test]
    fn warnings_alone_exit_zero() {
        let mut r = sample();
        r.items.clear();
        r.cancelled = false;
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn locations_in_xfs_terms() {
        let f = Finding::new(FindingKind::Corrupt, "bnobt", "bnobt.x", "m")
            .group(2)
            .block(17)
            .record(4);
        assert_eq!(location(&f), "AG 2 block 17 record 4");
        let f = Finding::new(FindingKind::Corrupt, "dir", "dir.x", "m")
            .inode(131)
            .path("/dirs/node")
            .offset(4096);
        assert_eq!(location(&f), "inode 131 (/dirs/node) offset 4096");
    }
}
