//! Reference count btree repair of one AG (the kernel's
//! `refcount_repair.c`): a new refcountbt derived from the reverse map.
//!
//! # How
//!
//! 1. Walk the rmapbt once (it must be structurally sound; the plan only
//!    calls this for an rmapbt that passed its checks). Its records come
//!    in block order, so one sweep with a heap of extent ends counts, for
//!    every block, the *shareable* mappings over it (file data: an inode
//!    owner, data fork, not a bmbt block, not unwritten, as the rmapbt
//!    scrubber defines it). Every range where the count is at least 2
//!    becomes a shared record, merged into maximal extents of one count.
//!    Every `OWN_COW` mapping becomes a CoW staging record (refcount 1, in
//!    the CoW domain). The records are staged in an `XfArray` and sorted
//!    by on-disk key (shared before CoW).
//! 2. The `OWN_REFC` mappings are the old tree's blocks, whatever the
//!    (possibly damaged) old tree and AGF say.
//! 3. The new tree is bulk-loaded into blocks reserved from space proven
//!    free (owned by nobody in the reverse map), never into a block this
//!    repair frees (the busy-extent rule).
//! 4. The old blocks are reaped: those owned by nobody else become free,
//!    cross-linked ones only lose their `OWN_REFC` mapping.
//! 5. The reverse map changes accordingly (old `OWN_REFC` records out, one
//!    per new run in), so the rmapbt is rebuilt from the staged records,
//!    and with it the free-space trees, the AGFL and the AGF (new
//!    refcountbt root, level and block count) by [`super::alloc`]'s
//!    rebuild inside the AG's `OWN_AG` blocks.
//!
//! Everything goes into one write set: one journalled commit makes the new
//! refcountbt, rmapbt, free-space trees and AGF live together.

use super::agheader::{AgfBase, agf_for_rebuild, patch_agf};
use super::alloc::{AgSpace, Owners, Refused, RmapTree, StagedRmap, outside_message, plan_space};
use crate::format::btree::refcount::{COW_FLAG, RefcountRec, Refcountbt};
use crate::format::btree::rmap::{RmapKey, RmapRec, owner};
use crate::fs::Filesystem;
use crate::scrub::common::walk_quietly;
use crate::scrub::rmap::shareable;
use crate::scrub::shared_extents::{MAX_OVERLAPPING, RefcountSweep, SharedRun, SweepError};
use crate::types::{AgBlock, AgNumber};
use repair::{Reservation, WriteSet, build_tree, reap};
use scrub::ExtentBitmap;
use xfbtree::{BloadOptions, BlockAddr, Root};
use xfile::{MemoryBudget, StagingError, XfArray};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Name of the staging array of new refcount records (for statistics).
pub const RECORD_STAGING: &str = "refcount-repair-records";
/// Name of the staging arrays of reverse mappings (old and new).
pub const RMAP_STAGING: &str = "refcount-repair-rmaps";

/// What the rebuild of one AG's refcountbt will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefcountRebuild {
    /// The AG.
    pub agno: AgNumber,
    /// Shared-extent records of the new tree.
    pub shared: u64,
    /// CoW staging records of the new tree.
    pub cow: u64,
    /// The new tree's root block and height.
    pub root: (u32, u32),
    /// Blocks of the new tree (taken from free space).
    pub new_blocks: u64,
    /// Blocks of the old tree (its `OWN_REFC` mappings).
    pub old_blocks: u64,
    /// Old blocks freed.
    pub freed: u64,
    /// Old blocks that stay allocated to another owner (cross-linked).
    pub unmapped: u64,
    /// The AG's new free space, rmapbt and AGFL.
    pub space: AgSpace,
}

/// One refcount record staged in an `XfArray` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct StagedRefc {
    /// Start block word, CoW flag included: the on-disk key.
    key: u32,
    blockcount: u32,
    refcount: u32,
}

impl StagedRefc {
    fn rec(&self) -> RefcountRec {
        RefcountRec {
            startblock: self.key & !COW_FLAG,
            cow: self.key & COW_FLAG != 0,
            blockcount: self.blockcount,
            refcount: self.refcount,
        }
    }
}

fn staging(e: StagingError) -> Refused {
    format!("staging memory: {e}")
}

/// Plans the refcountbt rebuild of AG `agno` (and the rmapbt, free-space
/// and AGF updates it implies) and stages its writes in `writes` only when
/// the whole plan succeeds. Staging arrays take memory from `budget`.
pub fn plan_refcountbt(
    fs: &Filesystem,
    agno: AgNumber,
    budget: &MemoryBudget,
    writes: &mut WriteSet,
) -> Result<RefcountRebuild, Refused> {
    let geo = fs.geometry();
    if !geo.features.has_reflink() {
        return Err("the filesystem has no reference count btree (no reflink)".into());
    }
    if !geo.features.has_rmapbt() {
        return Err("the filesystem has no reverse-mapping btree to rebuild from".into());
    }
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    let AgfBase {
        sector: agf_sector_old,
        agf,
        fixed,
    } = agf_for_rebuild(fs, agno)?;
    let rmapbt = fs.rmapbt(agno, &agf).map_err(|e| e.to_string())?;

    // 1. One walk: who owns what, the old tree's blocks, the new records.
    let mut rmaps = XfArray::<StagedRmap>::new(RMAP_STAGING, budget).map_err(staging)?;
    let mut refc = XfArray::<StagedRefc>::new(RECORD_STAGING, budget).map_err(staging)?;
    let mut owners = Owners::default();
    let mut old = ExtentBitmap::new();
    let mut others = ExtentBitmap::new();
    let mut sweep = RefcountSweep::default();
    let mut failed: Option<Refused> = None;
    let mut cow = 0u64;
    let rmap_blocks = walk_quietly(&rmapbt, "rmapbt", |r: &RmapRec| {
        if failed.is_some() {
            return;
        }
        if !owners.add(r, ag_len) {
            failed = Some(outside_message(r, ag_len));
            return;
        }
        let (s, l) = (u64::from(r.startblock), u64::from(r.blockcount));
        if r.owner == owner::REFC {
            old.set(s, l);
        } else {
            others.set(s, l);
        }
        let mut step = || -> Result<(), Refused> {
            rmaps.append(StagedRmap::of(r)).map_err(staging)?;
            if r.owner == owner::COW {
                cow += 1;
                refc.append(StagedRefc {
                    key: r.startblock | COW_FLAG,
                    blockcount: r.blockcount,
                    refcount: 1,
                })
                .map_err(staging)?;
            } else if shareable(true, r) {
                sweep
                    .push(s, s + l, &mut |run| stage_shared(run, &mut refc))
                    .map_err(sweep_refused)?;
            }
            Ok(())
        };
        if let Err(e) = step() {
            failed = Some(e);
        }
    })
    .map_err(|u| u.0)?;
    if let Some(e) = failed {
        return Err(e);
    }
    sweep
        .finish(&mut |run| stage_shared(run, &mut refc))
        .map_err(sweep_refused)?;
    owners.check_rmapbt_blocks(&rmap_blocks)?;
    refc.sort_by_key(|r| r.key).map_err(staging)?;
    let count = refc.len();
    let shared = count - cow;

    // 2.-3. The new tree, in space proven free, never in a busy block.
    let mut free = ExtentBitmap::new();
    free.set(0, u64::from(ag_len));
    free.subtract(&owners.owned);
    let mut res = Reservation::new(free, &old);
    let mut staged = WriteSet::new();
    let offset_of = |a: BlockAddr| -> Option<u64> {
        let b = u32::try_from(a.0).ok()?;
        geo.agb_to_daddr(agno, AgBlock(b))?.to_bytes()
    };
    let bs = usize::try_from(geo.block_size).unwrap_or(4096);
    let (built, tree_geo) = build_tree(
        &Refcountbt::new(geo, agno),
        bs,
        count,
        refc.iter().map(|r| r.map(|s| s.rec())),
        &BloadOptions::default(),
        &mut res,
        &mut staged,
        &offset_of,
    )
    .map_err(|e| format!("building the new refcountbt: {e}"))?;
    let root = match built.root {
        Root::Block { addr, height } => (
            u32::try_from(addr.0).map_err(|e| e.to_string())?,
            u32::from(height),
        ),
        _ => return Err("the bulk loader returned an inline root for an AG btree".into()),
    };
    let new_blocks = res.taken_bitmap();

    // 4. The old blocks: freed, or only unmapped where cross-linked.
    let reaped = reap(&old, &new_blocks, |b| {
        Ok::<_, std::convert::Infallible>(others.contains(b))
    })
    .unwrap_or_default();

    // 5. The new reverse map: the old one without OWN_REFC, plus a record
    // per run of the new tree, in key order.
    let mut new_rmaps = XfArray::<StagedRmap>::new(RMAP_STAGING, budget).map_err(staging)?;
    let mut new_owners = Owners::default();
    let mut runs = new_blocks.runs().filter_map(|(s, l)| {
        Some(RmapRec {
            startblock: u32::try_from(s).ok()?,
            blockcount: u32::try_from(l).ok()?,
            owner: owner::REFC,
            offset_word: 0,
        })
    });
    let mut next_run = runs.next();
    let key = |r: &RmapRec| RmapKey {
        startblock: r.startblock,
        owner: r.owner,
        offset_word: r.offset_word,
    };
    let mut put = |r: &RmapRec| -> Result<(), Refused> {
        new_owners.add(r, ag_len);
        new_rmaps.append(StagedRmap::of(r)).map_err(staging)
    };
    for r in rmaps.iter() {
        let r = r.map_err(staging)?.rec();
        if r.owner == owner::REFC {
            continue;
        }
        while let Some(n) = next_run.filter(|n| key(n) < key(&r)) {
            put(&n)?;
            next_run = runs.next();
        }
        put(&r)?;
    }
    while let Some(n) = next_run {
        put(&n)?;
        next_run = runs.next();
    }
    drop(rmaps);

    // The AGF's refcountbt fields, then the AG's space around them.
    let mut base = agf_sector_old;
    let blocks = u32::try_from(tree_geo.total_blocks()).map_err(|e| e.to_string())?;
    patch_agf(&mut base, |a| {
        a.refcount_root.set(root.0);
        a.refcount_level.set(root.1);
        a.refcount_blocks.set(blocks);
    });
    let mut space = plan_space(
        fs,
        agno,
        &base,
        &new_owners,
        RmapTree::Rebuild(&new_rmaps),
        &mut staged,
    )?;
    space.agf_fixed = fixed;
    for (off, phase, data) in staged.iter() {
        writes
            .stage(phase, off, data.to_vec())
            .map_err(|e| e.to_string())?;
    }
    Ok(RefcountRebuild {
        agno,
        shared,
        cow,
        root,
        new_blocks: new_blocks.count(),
        old_blocks: old.count(),
        freed: reaped.free.count(),
        unmapped: reaped.unmap_only.count(),
        space,
    })
}

/// Stages one shared run as a refcount record, refusing one that does not
/// fit the record's fields.
fn stage_shared(run: SharedRun, out: &mut XfArray<StagedRefc>) -> Result<(), Refused> {
    let too_big = || {
        format!(
            "a shared extent at AG block {} does not fit a record",
            run.start
        )
    };
    out.append(StagedRefc {
        key: u32::try_from(run.start)
            .ok()
            .filter(|k| k & COW_FLAG == 0)
            .ok_or_else(too_big)?,
        blockcount: u32::try_from(run.len).map_err(|_| too_big())?,
        refcount: u32::try_from(run.refcount).map_err(|_| too_big())?,
    })
    .map_err(staging)
}

fn sweep_refused(e: SweepError<Refused>) -> Refused {
    match e {
        SweepError::Crowded => format!(
            "more than {MAX_OVERLAPPING} mappings share one block; the count cannot be confirmed"
        ),
        SweepError::Sink(e) => e,
    }
}
