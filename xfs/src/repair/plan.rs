//! From a check's report to a repair plan: which structures to rebuild,
//! which repairs are refused and why, and the staged writes.

use super::agheader::AgfSpace;
use super::{alloc, fscounters, ialloc};
use crate::fs::Filesystem;
use crate::types::AgNumber;
use repair::WriteSet;
use scrub::{FindingKind, ItemStatus, Report};
use std::collections::{BTreeMap, BTreeSet};

/// Scrubbers whose damage the AG free-space rebuild fixes.
const SPACE_SCRUBBERS: &[&str] = &["agf", "agfl", "bnobt", "cntbt"];

/// Scrubbers whose damage the AG inode btree rebuild fixes.
const INODE_SCRUBBERS: &[&str] = &["agi", "inobt", "finobt"];

/// One repair the plan makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRepair {
    /// What is rebuilt, as the kernel names it (`bnobt+cntbt+agfl+agf`,
    /// `fscounters`).
    pub what: &'static str,
    /// The AG, for per-AG repairs.
    pub group: Option<u32>,
    /// What will be written, in words.
    pub detail: String,
    /// Filesystem blocks (or sectors, for headers) written.
    pub writes: u64,
    /// Codes of the findings this repair addresses.
    pub fixes: Vec<String>,
}

/// A repair that is needed but will not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What would have been rebuilt.
    pub what: &'static str,
    /// The AG, for per-AG repairs.
    pub group: Option<u32>,
    /// Why not.
    pub reason: String,
}

/// Everything one `repair` run will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The writes, for one atomic commit.
    pub writes: WriteSet,
    /// Repairs planned.
    pub repairs: Vec<PlannedRepair>,
    /// Repairs refused.
    pub refused: Vec<Refusal>,
}

/// Plans the repairs the damage in `report` (a check of `fs`) calls for.
/// Nothing is written: the plan's writes are staged in memory.
pub fn plan(fs: &Filesystem, report: &Report) -> Plan {
    let mut out = Plan::default();
    // Damage per (scrubber, AG).
    let mut damaged: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut rmap_bad: BTreeMap<u32, String> = BTreeMap::new();
    let mut rmap_seen: BTreeSet<u32> = BTreeSet::new();
    let mut counters: Vec<String> = Vec::new();
    let mut inode_damaged: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for item in &report.items {
        let g = item.item.group.and_then(|g| u32::try_from(g).ok());
        let name = item.item.scrubber;
        if name == "rmapbt"
            && let Some(g) = g
        {
            if item.status == ItemStatus::Done {
                rmap_seen.insert(g);
            }
            if let Some(f) = item
                .findings
                .iter()
                .find(|f| matches!(f.kind, FindingKind::Corrupt | FindingKind::Incomplete))
            {
                rmap_bad.entry(g).or_insert_with(|| f.message.clone());
            }
        }
        let codes = item
            .findings
            .iter()
            .filter(|f| f.kind.is_damage() || f.kind == FindingKind::Preen)
            .map(|f| f.code.to_string());
        if let Some(g) = g
            && SPACE_SCRUBBERS.contains(&name)
        {
            let c: Vec<String> = codes.filter(|_| true).collect();
            if item.findings.iter().any(|f| f.kind.is_damage()) {
                damaged.entry(g).or_default().extend(c);
            }
        } else if let Some(g) = g
            && INODE_SCRUBBERS.contains(&name)
        {
            if item.findings.iter().any(|f| f.kind.is_damage()) {
                inode_damaged.entry(g).or_default().extend(codes);
            }
        } else if name == "fscounters" {
            counters.extend(codes);
        }
    }

    let mut rebuilt: BTreeMap<AgNumber, AgfSpace> = BTreeMap::new();
    for (g, fixes) in damaged {
        let what = "bnobt+cntbt+agfl+agf";
        let group = Some(g);
        if !fs.geometry().features.has_rmapbt() {
            out.refused.push(Refusal {
                what,
                group,
                reason: "the filesystem has no reverse-mapping btree to rebuild from".into(),
            });
            continue;
        }
        if let Some(why) = rmap_bad.get(&g) {
            out.refused.push(Refusal {
                what,
                group,
                reason: format!("the rmapbt this repair rebuilds from failed its check: {why}"),
            });
            continue;
        }
        if !rmap_seen.contains(&g) {
            out.refused.push(Refusal {
                what,
                group,
                reason: "the rmapbt this repair rebuilds from was not checked".into(),
            });
            continue;
        }
        let agno = AgNumber(g);
        let before = out.writes.len();
        match alloc::plan_ag_space(fs, agno, &mut out.writes) {
            Ok(s) => {
                out.repairs.push(PlannedRepair {
                    what,
                    group,
                    detail: format!(
                        "{} free extents ({} blocks, longest {}) from {} rmap records: bnobt {} blocks, cntbt {} blocks, AGFL {} blocks, new AGF",
                        s.extents,
                        s.agf.freeblks,
                        s.agf.longest,
                        s.rmap_records,
                        s.bno_blocks,
                        s.cnt_blocks,
                        s.agfl.len()
                    ),
                    writes: (out.writes.len() - before) as u64,
                    fixes,
                });
                rebuilt.insert(agno, s.agf);
            }
            Err(reason) => out.refused.push(Refusal {
                what,
                group,
                reason,
            }),
        }
    }

    let agis = plan_inodes(fs, inode_damaged, &rmap_bad, &rmap_seen, &mut out);

    if !counters.is_empty() || !rebuilt.is_empty() || !agis.is_empty() {
        let before = out.writes.len();
        match fscounters::plan_counters_with(fs, &rebuilt, &agis, &mut out.writes) {
            Ok((old, new)) if old != new => out.repairs.push(PlannedRepair {
                what: "fscounters",
                group: None,
                detail: format!(
                    "superblock icount {} -> {}, ifree {} -> {}, fdblocks {} -> {}",
                    old.icount, new.icount, old.ifree, new.ifree, old.fdblocks, new.fdblocks
                ),
                writes: (out.writes.len() - before) as u64,
                fixes: counters,
            }),
            Ok(_) => {}
            Err(reason) if !counters.is_empty() => out.refused.push(Refusal {
                what: "fscounters",
                group: None,
                reason,
            }),
            Err(_) => {}
        }
    }
    out
}

/// Plans the inode btree rebuild (inobt, finobt, AGI) of every AG in
/// `damaged`, each needing an rmapbt that was checked and found sound;
/// returns the new AGI values for the summary counters.
fn plan_inodes(
    fs: &Filesystem,
    damaged: BTreeMap<u32, Vec<String>>,
    rmap_bad: &BTreeMap<u32, String>,
    rmap_seen: &BTreeSet<u32>,
    out: &mut Plan,
) -> ialloc::RebuiltAgis {
    let mut agis = ialloc::RebuiltAgis::new();
    let what = "inobt+finobt+agi";
    for (g, mut fixes) in damaged {
        fixes.sort();
        fixes.dedup();
        let group = Some(g);
        let refuse = if !fs.geometry().features.has_rmapbt() {
            Some("the filesystem has no reverse-mapping btree to rebuild from".to_owned())
        } else if let Some(why) = rmap_bad.get(&g) {
            Some(format!(
                "the rmapbt this repair rebuilds from failed its check: {why}"
            ))
        } else if !rmap_seen.contains(&g) {
            Some("the rmapbt this repair rebuilds from was not checked".to_owned())
        } else {
            None
        };
        if let Some(reason) = refuse {
            out.refused.push(Refusal {
                what,
                group,
                reason,
            });
            continue;
        }
        let before = out.writes.len();
        match ialloc::plan_ag_inodes(fs, AgNumber(g), &mut out.writes) {
            Ok(s) => {
                out.repairs.push(PlannedRepair {
                    what,
                    group,
                    detail: format!(
                        "{} inode chunks ({} sparse, {} with free inodes; {} inodes, {} free) from {} rmap records: inobt {} blocks, finobt {} blocks, new AGI{}",
                        s.chunks,
                        s.sparse_chunks,
                        s.free_chunks,
                        s.agi.count,
                        s.agi.freecount,
                        s.rmap_records,
                        s.agi.iblocks,
                        s.agi.fblocks,
                        if s.unlinked_dropped > 0 {
                            format!(" ({} bad unlinked-list heads cleared)", s.unlinked_dropped)
                        } else {
                            String::new()
                        }
                    ),
                    writes: (out.writes.len() - before) as u64,
                    fixes,
                });
                agis.insert(s.agno, s.agi);
            }
            Err(reason) => out.refused.push(Refusal {
                what,
                group,
                reason,
            }),
        }
    }
    agis
}
