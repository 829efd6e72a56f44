//! The `fscounters` scrubber: the primary superblock's summary counters
//! (`sb_icount`, `sb_ifree`, `sb_fdblocks`) against the sums over every
//! AG's headers (the kernel's `fs/xfs/scrub/fscounters.c` and
//! `xfs_repair`'s phase 2 totals).
//!
//! With lazy superblock counters (always on v5) XFS updates these fields
//! on disk only when it writes the superblock, so they are exact after a
//! clean unmount and stale while the log holds changes. After a clean
//! unmount the kernel trusts them at mount (it recomputes them only after
//! log recovery or when they are impossible), so a difference is damage;
//! with a log still to replay it is only preened, because mounting
//! recomputes the counters from the AG headers anyway.
//!
//! The per-AG values come from the AGF and AGI. For an AG whose header the
//! `agf`/`agi` scrubbers found damaged they come from its trees instead,
//! as `xfs_repair` counts them: free extents, free list and btree blocks
//! beyond the roots; inodes and free inodes of every chunk record. Only
//! when those trees cannot be walked either is the comparison they would
//! feed reported as `xref-failed`.

use super::common::{tree_blocks, walk_quietly};
use super::xref::{AgContext, Unavailable};
use crate::format::btree::alloc::AllocRec;
use crate::format::btree::ialloc::{INODES_PER_CHUNK, InobtRec};
use crate::format::{agf, agi};
use crate::fs::Filesystem;
use crate::log::LogState;
use scrub::{
    Finding, FindingKind, Findings, Health, ItemId, Scope, ScrubContext, ScrubError, Scrubber,
};

/// Checks the superblock summary counters against the AG headers.
pub struct FsCountersScrub;

impl Scrubber<Filesystem> for FsCountersScrub {
    fn name(&self) -> &'static str {
        "fscounters"
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["agf", "agi"]
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        _item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let geo = fs.geometry();
        let sb = fs.superblock();

        // Values no filesystem can have, whatever the AGs say
        // (xchk_fscounters' "obviously wrong" checks).
        let (icount_min, icount_max) = geo.icount_range();
        if sb.icount < icount_min || sb.icount > icount_max {
            out.push(damage(
                "icount",
                format!(
                    "the superblock counts {} inodes, outside the {icount_min}..={icount_max} this filesystem can hold",
                    sb.icount
                ),
                format!("{icount_min}..={icount_max}"),
                sb.icount,
            ));
        }
        if sb.ifree > sb.icount {
            out.push(damage(
                "ifree",
                format!(
                    "the superblock counts {} free inodes but only {} inodes",
                    sb.ifree, sb.icount
                ),
                format!("<= icount {}", sb.icount),
                sb.ifree,
            ));
        }
        if sb.fdblocks > sb.dblocks {
            out.push(damage(
                "fdblocks",
                format!(
                    "the superblock counts {} free blocks in a filesystem of {} blocks",
                    sb.fdblocks, sb.dblocks
                ),
                format!("<= dblocks {}", sb.dblocks),
                sb.fdblocks,
            ));
        }

        // Sum the AG headers as xfs_repair and the kernel do: every block
        // not in use is free space, on the free list, or a free-space or
        // rmap btree block beyond the roots (xfs_repair's scan_ags;
        // xchk_fscount_aggregate_agcounts before the in-core reservations).
        // A header the agf/agi scrubbers found damaged is replaced by what
        // its trees hold; only trees that cannot be walked leave a sum
        // unknown.
        let (mut icount, mut ifree, mut fdblocks) = (0u64, 0u64, 0u64);
        let (mut bad_agf, mut bad_agi) = (Vec::new(), Vec::new());
        let (mut counted_agf, mut counted_agi) = (Vec::new(), Vec::new());
        for agno in geo.ags() {
            ctx.check_cancelled()?;
            let g = Some(u64::from(agno.0));
            let ag = AgContext::load(fs, agno)?;
            let agf_sound = ag.agf.as_ref().filter(|f| {
                f.problems.is_empty()
                    && f.value.magicnum == agf::MAGIC
                    && ctx.health_of("agf", g) != Health::Sick
            });
            if let Some(f) = agf_sound.map(|f| &f.value) {
                fdblocks = fdblocks
                    .saturating_add(u64::from(f.freeblks))
                    .saturating_add(u64::from(f.flcount))
                    .saturating_add(u64::from(f.btreeblks));
            } else {
                match free_blocks_from_trees(&ag) {
                    Ok(n) => {
                        fdblocks = fdblocks.saturating_add(n);
                        counted_agf.push(agno.0);
                    }
                    Err(why) => bad_agf.push((agno.0, why)),
                }
            }
            let agi_sound = ag.agi.as_ref().filter(|i| {
                i.problems.is_empty()
                    && i.value.magicnum == agi::MAGIC
                    && ctx.health_of("agi", g) != Health::Sick
            });
            if let Some(i) = agi_sound.map(|i| &i.value) {
                icount = icount.saturating_add(u64::from(i.count));
                ifree = ifree.saturating_add(u64::from(i.freecount));
            } else {
                match inodes_from_tree(&ag) {
                    Ok((n, free)) => {
                        icount = icount.saturating_add(n);
                        ifree = ifree.saturating_add(free);
                        counted_agi.push(agno.0);
                    }
                    Err(why) => bad_agi.push((agno.0, why)),
                }
            }
        }

        let clean = matches!(fs.log_state(), LogState::Clean { .. } | LogState::Zeroed);
        let mut compare = |field: &'static str,
                           recorded: u64,
                           counted: u64,
                           what: &str,
                           from_trees: &[u32],
                           header: &str| {
            if recorded == counted {
                return;
            }
            let (kind, why) = if clean {
                (
                    FindingKind::Corrupt,
                    "the filesystem was unmounted cleanly, so the kernel will trust the wrong value",
                )
            } else {
                (
                    FindingKind::Preen,
                    "the log is not clean and mounting recomputes the counter from the AG headers",
                )
            };
            let source = if from_trees.is_empty() {
                "the AG headers add up to".to_owned()
            } else {
                format!(
                    "the AG headers add up to (for AG {}, whose {header} is damaged, its btrees)",
                    list(from_trees)
                )
            };
            out.push(
                Finding::new(
                    kind,
                    "fscounters",
                    format!("fscounters.{field}"),
                    format!(
                        "the superblock counts {recorded} {what}, but {source} {counted}: {why}"
                    ),
                )
                .group(0)
                .block(0)
                .field(field, counted, recorded),
            );
        };
        if bad_agf.is_empty() {
            compare(
                "fdblocks",
                sb.fdblocks,
                fdblocks,
                "free blocks",
                &counted_agf,
                "AGF",
            );
        }
        if bad_agi.is_empty() {
            compare("icount", sb.icount, icount, "inodes", &counted_agi, "AGI");
            compare("ifree", sb.ifree, ifree, "free inodes", &counted_agi, "AGI");
        }
        for (other, bad, counters) in [
            ("agf", &bad_agf, "fdblocks"),
            ("agi", &bad_agi, "icount and ifree"),
        ] {
            for (agno, why) in bad.iter() {
                out.push(
                    Finding::new(
                        FindingKind::XrefFailed,
                        "fscounters",
                        format!("fscounters.xref-{other}"),
                        format!(
                            "{counters} not checked: the {} of AG {agno} is damaged and its btrees cannot be counted ({why})",
                            other.to_uppercase(),
                        ),
                    )
                    .group(0),
                );
            }
        }
        Ok(())
    }
}

/// AG numbers as "1, 3".
fn list(ags: &[u32]) -> String {
    ags.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an AG adds to `sb_fdblocks`, from its trees rather than its AGF:
/// the free extents (bnobt, else cntbt: both index the same extents), the
/// blocks on the free list, and the free-space and rmap btree blocks
/// beyond their roots (`agf_btreeblks`: each tree's first block is not
/// counted; every block it grows by is, as the kernel's btree block
/// allocators and xfs_repair's phase 5 count them).
fn free_blocks_from_trees(ag: &AgContext<'_>) -> Result<u64, Unavailable> {
    let mut free = 0u64;
    let bno = ag.bnobt().and_then(|t| {
        walk_quietly(&t, "bnobt", |r: &AllocRec| {
            free = free.saturating_add(u64::from(r.blockcount));
        })
    });
    let bno_blocks = match bno {
        Ok(b) => Some(b),
        Err(_) => {
            free = 0;
            None
        }
    };
    let cnt_blocks = if bno_blocks.is_some() {
        ag.cntbt().and_then(|t| tree_blocks(&t, "cntbt"))?
    } else {
        ag.cntbt().and_then(|t| {
            walk_quietly(&t, "cntbt", |r: &AllocRec| {
                free = free.saturating_add(u64::from(r.blockcount));
            })
        })?
    };
    // The bnobt's own blocks are needed for btreeblks even when its
    // records were not: without them the count is unknown.
    let bno_blocks = match bno_blocks {
        Some(b) => b,
        None => ag.bnobt().and_then(|t| tree_blocks(&t, "bnobt"))?,
    };
    let mut tree_blocks_beyond_roots = bno_blocks
        .count()
        .saturating_sub(1)
        .saturating_add(cnt_blocks.count().saturating_sub(1));
    if ag.fs.geometry().features.has_rmapbt() {
        let rmap = ag.rmapbt().and_then(|t| tree_blocks(&t, "rmapbt"))?;
        tree_blocks_beyond_roots =
            tree_blocks_beyond_roots.saturating_add(rmap.count().saturating_sub(1));
    }
    let agfl = free_list_length(ag)?;
    Ok(free
        .saturating_add(agfl)
        .saturating_add(tree_blocks_beyond_roots))
}

/// How many blocks the AG's free list holds, from the AGF's ring indices,
/// when they agree with its count (a damaged AGF may have a count that
/// nothing else confirms: then the number is unknown, not guessed).
fn free_list_length(ag: &AgContext<'_>) -> Result<u64, Unavailable> {
    let Some(agf) = ag.agf.as_ref().map(|c| &c.value) else {
        return Err(Unavailable("the AGF has a bad magic number".into()));
    };
    let agfl = ag
        .fs
        .read_agfl(ag.agno, Some(agf))
        .map_err(|e| Unavailable(e.to_string()))?;
    let size = u64::try_from(agfl.value.slots.len()).unwrap_or(0);
    let (first, last, count) = (
        u64::from(agf.flfirst),
        u64::from(agf.fllast),
        u64::from(agf.flcount),
    );
    let ring = if size == 0 || first >= size || last >= size {
        None
    } else if count == 0 {
        // An empty list: the last index is one before the first.
        (last.saturating_add(1) % size == first).then_some(0)
    } else {
        Some(last.saturating_add(size).saturating_sub(first) % size + 1)
    };
    match ring {
        Some(n) if n == count => Ok(n),
        _ => Err(Unavailable(format!(
            "the AGF's free list (first {first}, last {last}, count {count}) is inconsistent"
        ))),
    }
}

/// What an AG adds to `sb_icount` and `sb_ifree`, from its inobt rather
/// than its AGI: the inodes each chunk record holds (sparse holes left
/// out) and those of them its free mask marks free. The records' own
/// count fields are not used: they are what the inobt scrubber checks
/// against the same masks.
fn inodes_from_tree(ag: &AgContext<'_>) -> Result<(u64, u64), Unavailable> {
    let (mut count, mut free) = (0u64, 0u64);
    ag.inobt().and_then(|t| {
        walk_quietly(&t, "inobt", |r: &InobtRec| {
            for i in 0..INODES_PER_CHUNK {
                if r.exists(i) {
                    count = count.saturating_add(1);
                    if r.is_free(i) {
                        free = free.saturating_add(1);
                    }
                }
            }
        })
    })?;
    Ok((count, free))
}

/// A `corrupt` finding about a summary counter of the primary superblock.
fn damage(
    field: &'static str,
    msg: String,
    expected: impl std::fmt::Display,
    actual: impl std::fmt::Display,
) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        "fscounters",
        format!("fscounters.{field}"),
        msg,
    )
    .group(0)
    .block(0)
    .field(field, expected, actual)
}
