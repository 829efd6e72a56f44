//! From a check's report to a repair plan: which structures to rebuild,
//! which repairs are refused and why, and the staged writes.

use super::agheader::{AgfSpace, agf_for_rebuild};
use super::{alloc, fscounters, ialloc, refcount};
use crate::fs::Filesystem;
use crate::types::AgNumber;
use repair::WriteSet;
use scrub::{FindingKind, ItemStatus, Report, RunOptions, ScrubContext};
use std::collections::{BTreeMap, BTreeSet};
use xfile::MemoryBudget;

/// Scrubbers whose damage the AG free-space rebuild fixes.
const SPACE_SCRUBBERS: &[&str] = &["agf", "agfl", "bnobt", "cntbt"];

/// Scrubbers whose damage the AG inode btree rebuild fixes.
const INODE_SCRUBBERS: &[&str] = &["agi", "inobt", "finobt"];
/// What the refcountbt rebuild rewrites (it moves the tree, so the rmapbt
/// and the free space change with it).
const REFCOUNT_WHAT: &str = "refcountbt+rmapbt+bnobt+cntbt+agfl+agf";

/// Whether a finding is about the AGF's refcountbt fields, which only the
/// refcountbt rebuild sets.
fn agf_refcount_field(f: &scrub::Finding) -> bool {
    f.field.as_deref().is_some_and(|n| n.starts_with("refcnt")) || f.code.contains("refcnt")
}

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

/// Staging memory of [`plan`] (the CLI passes its `--memory` to
/// [`plan_with`]).
const DEFAULT_BUDGET: u64 = 64 << 20;

/// Plans the repairs the damage in `report` (a check of `fs`) calls for.
/// Nothing is written: the plan's writes are staged in memory.
pub fn plan(fs: &Filesystem, report: &Report) -> Plan {
    plan_with(fs, report, &MemoryBudget::new(DEFAULT_BUDGET))
}

/// [`plan`] with staging arrays (beyond the write set) taking memory from
/// `budget`.
pub fn plan_with(fs: &Filesystem, report: &Report, budget: &MemoryBudget) -> Plan {
    let mut out = Plan::default();
    // Damage per (scrubber, AG).
    let mut damaged: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut rmap_bad: BTreeMap<u32, String> = BTreeMap::new();
    let mut rmap_seen: BTreeSet<u32> = BTreeSet::new();
    let mut counters: Vec<String> = Vec::new();
    let mut inode_damaged: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // AGs whose refcountbt (or the AGF's pointer to it) is damaged.
    let mut refc_damaged: BTreeMap<u32, Vec<String>> = BTreeMap::new();
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
            && name == "agf"
            && item
                .findings
                .iter()
                .any(|f| f.kind.is_damage() && agf_refcount_field(f))
        {
            refc_damaged.entry(g).or_default();
        }
        if let Some(g) = g
            && name == "refcountbt"
        {
            if item.findings.iter().any(|f| f.kind.is_damage()) {
                refc_damaged.entry(g).or_default().extend(codes);
            }
        } else if let Some(g) = g
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
    // An AG whose refcountbt is rebuilt gets its free space rebuilt with it.
    for (g, codes) in &refc_damaged {
        damaged.entry(*g).or_default().extend(codes.iter().cloned());
    }
    for (g, fixes) in damaged {
        let refc = refc_damaged.contains_key(&g);
        let what = if refc {
            REFCOUNT_WHAT
        } else {
            "bnobt+cntbt+agfl+agf"
        };
        let group = Some(g);
        if !fs.geometry().features.has_rmapbt() {
            out.refused.push(Refusal {
                what,
                group,
                reason: "the filesystem has no reverse-mapping btree to rebuild from".into(),
            });
            continue;
        }
        let verdict = if let Some(why) = rmap_bad.get(&g) {
            Err(format!(
                "the rmapbt this repair rebuilds from failed its check: {why}"
            ))
        } else if !rmap_seen.contains(&g) {
            Err("the rmapbt this repair rebuilds from was not checked".to_string())
        } else {
            Ok(())
        };
        if let Err(reason) = verdict {
            // A damaged AGF may be all that kept the rmapbt from passing:
            // check it again under the AGF the rebuild starts from.
            if let Err(more) = recheck_rmapbt(fs, AgNumber(g), budget) {
                out.refused.push(Refusal {
                    what,
                    group,
                    reason: format!("{reason}; {more}"),
                });
                continue;
            }
        }
        let agno = AgNumber(g);
        let before = out.writes.len();
        if refc {
            match refcount::plan_refcountbt(fs, agno, budget, &mut out.writes) {
                Ok(r) => {
                    let s = &r.space;
                    out.repairs.push(PlannedRepair {
                        what,
                        group,
                        detail: format!(
                            "refcountbt of {} shared and {} CoW records in {} new blocks (root {} height {}), {} old blocks freed, {} cross-linked unmapped; rmapbt of {} records; {} free extents ({} blocks): bnobt {} blocks, cntbt {} blocks, AGFL {} blocks, new AGF",
                            r.shared,
                            r.cow,
                            r.new_blocks,
                            r.root.0,
                            r.root.1,
                            r.freed,
                            r.unmapped,
                            s.rmap_records,
                            s.extents,
                            s.agf.freeblks,
                            s.bno_blocks,
                            s.cnt_blocks,
                            s.agfl.len()
                        ) + &fixed_note(s),
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
            continue;
        }
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
                    ) + &fixed_note(&s),
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

/// Whether AG `agno`'s rmapbt passes the rmapbt checks once the AGF is
/// what a rebuild starts from (identity fields set, rmapbt root found:
/// [`agf_for_rebuild`]), checked on an overlay; `Err` says why not.
fn recheck_rmapbt(fs: &Filesystem, agno: AgNumber, budget: &MemoryBudget) -> Result<(), String> {
    let base = agf_for_rebuild(fs, agno)?;
    if base.fixed.is_empty() {
        return Err("the AGF needs no identity or rmapbt root fix that could explain it".into());
    }
    let off = fs
        .geometry()
        .ag_header_daddr(agno, 1)
        .and_then(|d| d.to_bytes())
        .ok_or_else(|| format!("{agno}'s AGF is outside the device"))?;
    let mut w = WriteSet::new();
    w.stage_live(off, base.sector).map_err(|e| e.to_string())?;
    let over = super::overlay(fs, &w).map_err(|e| e.to_string())?;
    let ctx = ScrubContext::new(budget.clone());
    let opts = RunOptions {
        only: Some(vec!["rmapbt".to_string()]),
        threads: Some(1),
    };
    let report =
        scrub::run(&over, &crate::scrub::registry(), &ctx, &opts).map_err(|e| e.to_string())?;
    let item = report
        .items
        .iter()
        .find(|i| i.item.scrubber == "rmapbt" && i.item.group == Some(u64::from(agno.0)))
        .ok_or("the rmapbt check did not run under the fixed AGF")?;
    if item.status != ItemStatus::Done {
        return Err("the rmapbt check did not finish under the fixed AGF".into());
    }
    match item
        .findings
        .iter()
        .find(|f| matches!(f.kind, FindingKind::Corrupt | FindingKind::Incomplete))
    {
        Some(f) => Err(format!(
            "with the AGF's {} fixed, the rmapbt still fails its check: {}",
            base.fixed.join(", "),
            f.message
        )),
        None => Ok(()),
    }
}

/// The AGF fields a rebuild fixed before it could start, for the plan.
fn fixed_note(s: &alloc::AgSpace) -> String {
    if s.agf_fixed.is_empty() {
        String::new()
    } else {
        format!(" (AGF {} fixed first)", s.agf_fixed.join(", "))
    }
}

/// Why a planned result could not be re-checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecheckError {
    /// The image with the plan's writes on an overlay would not open.
    #[error("the planned result does not open as a filesystem")]
    Open(#[source] crate::Error),
    /// The check itself stopped.
    #[error("checking the planned result failed")]
    Check(#[source] scrub::ScrubError),
}

/// The scrubbers that check what `plan` rebuilds (each repair's `what`
/// names them; the summary counters live in the superblock).
pub fn rebuilt_scrubbers(plan: &Plan) -> Vec<String> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in &plan.repairs {
        for part in r.what.split('+') {
            names.insert(part.to_string());
            if part == "fscounters" {
                names.insert("sb".to_string());
            }
        }
    }
    names.into_iter().collect()
}

/// Checks the result of `plan` without writing it: the plan's writes go
/// on a copy-on-write overlay of `fs`'s image, and the scrubbers of the
/// rebuilt structures ([`rebuilt_scrubbers`]) run there. An empty plan
/// gives an empty report.
pub fn recheck(
    fs: &Filesystem,
    plan: &Plan,
    ctx: &ScrubContext,
    threads: usize,
) -> Result<Report, RecheckError> {
    let names = rebuilt_scrubbers(plan);
    if names.is_empty() {
        return Ok(Report::default());
    }
    let over = super::overlay(fs, &plan.writes).map_err(RecheckError::Open)?;
    let opts = RunOptions {
        only: Some(names),
        threads: Some(threads.max(1)),
    };
    scrub::run(&over, &crate::scrub::registry(), ctx, &opts).map_err(RecheckError::Check)
}
