//! The free-space btree scrubbers: `bnobt` (free extents by block number)
//! and `cntbt` (the same extents by size).
//!
//! As the kernel's `fs/xfs/scrub/alloc.c` does, each tree is walked once
//! with the engine's verifier (structure: headers, checksums, levels,
//! record counts, key order, parent keys, siblings, pointers) and every
//! record is checked on its own and cross-referenced in the same walk:
//!
//! - a free extent is not empty and lies inside the AG past its headers
//!   (`xfs_alloc_check_irec`, `xfs_verify_agbext`);
//! - it does not touch the previous record, which XFS would have merged
//!   with it (`xchk_allocbt_mergeable`), and in the bnobt does not overlap
//!   it (`xfs_repair`'s "out-of-order bno btree record");
//! - the other free-space tree holds exactly the same extent
//!   (`xchk_allocbt_xref_other`);
//! - nothing owns it in the rmapbt, it holds no inodes, and it is neither
//!   shared nor CoW staging in the refcountbt (`xchk_allocbt_xref`).
//!
//! After the walk, every block of the tree must be owned by the AG's
//! metadata (`OWN_AG`) and nobody else in the rmapbt and must not be free
//! (`xchk_btree_check_block_owner`), and no block may carry an LSN ahead of
//! the log (`xfs_btree_agblock_verify_crc`).
//!
//! Without an rmapbt (or reflink) the corresponding cross-references do
//! not exist and are left out without a finding per item: the filesystem
//! simply has no such metadata to consult.
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::common::{
    SHORT_LSN_OFFSET, XrefFailures, at_record, block_lsn_finding, check_tree_blocks, group_of,
    log_head, owner_name, record_finding, unavailable, walk_tree_blocks, xref_corrupt,
};
use super::xref::{AgContext, Unavailable, Vetting, Xref};
use crate::btree::AgBtree;
use crate::format::btree::alloc::{AllocRec, BnoKey, CntKey};
use crate::format::btree::rmap::{RmapRec, Rmapbt, owner};
use crate::fs::Filesystem;
use crate::types::{AgBlock, AgNumber};
use scrub::{Finding, Findings, Health, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use xfbtree::verify::RecordLoc;
use xfbtree::{BtreeFormat, Lookup};

/// Checks the free-space-by-block btree of one AG.
pub struct BnobtScrub;

/// Checks the free-space-by-size btree of one AG.
pub struct CntbtScrub;

impl Scrubber<Filesystem> for BnobtScrub {
    fn name(&self) -> &'static str {
        "bnobt"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["agf"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        ctx.check_cancelled()?;
        let ag = AgContext::load(fs, AgNumber(group_of(item)?))?;
        let xref = Xref::new(&ag);
        let tree = match ag.bnobt() {
            Ok(t) => t,
            Err(why) => {
                out.push(unavailable("bnobt", ag.group(), &why));
                return Ok(());
            }
        };
        let cntbt = ag.cntbt();
        let other = |r: &AllocRec| -> Result<Option<AllocRec>, Unavailable> {
            let t = cntbt.as_ref().map_err(Clone::clone)?;
            Ok(t.lookup(&CntKey(*r), Lookup::Le)?)
        };
        let mut vetting = Vetting::default();
        check_tree(
            &ag,
            &xref,
            &tree,
            Tree {
                name: "bnobt",
                other: "cntbt",
                by_block: true,
                xref_matched: true,
            },
            other,
            || vetting.sound("cntbt", &cntbt),
            out,
        );
        ctx.check_cancelled()
    }
}

impl Scrubber<Filesystem> for CntbtScrub {
    fn name(&self) -> &'static str {
        "cntbt"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    /// After the bnobt: when the bnobt was found sound, a cntbt record
    /// identical to its bnobt record needs no cross-referencing of its own.
    fn depends_on(&self) -> &'static [&'static str] {
        &["agf", "bnobt"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        ctx.check_cancelled()?;
        let ag = AgContext::load(fs, AgNumber(group_of(item)?))?;
        let xref = Xref::new(&ag);
        let tree = match ag.cntbt() {
            Ok(t) => t,
            Err(why) => {
                out.push(unavailable("cntbt", ag.group(), &why));
                return Ok(());
            }
        };
        let other = |r: &AllocRec| -> Result<Option<AllocRec>, Unavailable> {
            let t = xref.bnobt.as_ref().map_err(Clone::clone)?;
            Ok(t.lookup(&BnoKey(*r), Lookup::Le)?)
        };
        let bnobt_sound = ctx.health_of("bnobt", item.group) == Health::Ok;
        let mut vetting = Vetting::default();
        check_tree(
            &ag,
            &xref,
            &tree,
            Tree {
                name: "cntbt",
                other: "bnobt",
                by_block: false,
                xref_matched: !bnobt_sound,
            },
            other,
            || {
                if bnobt_sound {
                    Ok(())
                } else {
                    vetting.sound("bnobt", &xref.bnobt)
                }
            },
            out,
        );
        ctx.check_cancelled()
    }
}

/// Which free-space tree is being checked.
struct Tree {
    name: &'static str,
    /// The other free-space tree, which must hold the same extents.
    other: &'static str,
    /// Records are in block order (bnobt): overlaps can be seen between
    /// neighbours.
    by_block: bool,
    /// Whether a record that matches the other tree's record exactly is
    /// cross-referenced with the rest of the AG. The bnobt's records always
    /// are. The cntbt's are only when the bnobt was not found sound in this
    /// run (not checked, or damaged): otherwise the bnobt scrubber already
    /// made the very same queries for the very same extents and found
    /// nothing, and repeating them would double the cost of the pair.
    xref_matched: bool,
}

/// Walks one free-space tree and checks it; `other` finds the record of
/// the other free-space tree at or before a given extent in that tree's
/// order, and `other_sound` says (walking it once, lazily) whether that
/// tree is sound enough for a disagreement with it to blame this one.
fn check_tree<F>(
    ag: &AgContext<'_>,
    xref: &Xref<'_>,
    tree: &AgBtree<'_, F>,
    which: Tree,
    other: impl Fn(&AllocRec) -> Result<Option<AllocRec>, Unavailable>,
    mut other_sound: impl FnMut() -> Result<(), Unavailable>,
    out: &mut Findings,
) where
    F: BtreeFormat<Record = AllocRec>,
{
    let fs = ag.fs;
    let geo = fs.geometry();
    let group = ag.group();
    let name = which.name;
    let has_rmap = geo.features.has_rmapbt();
    let has_reflink = geo.features.has_reflink();
    let head = log_head(fs);
    let mut fails = XrefFailures::default();
    let mut prev: Option<AllocRec> = None;
    // Whether each refcountbt domain has any record at all: most AGs have
    // no CoW staging extents, and many nothing shared; an empty domain
    // needs no query per free extent.
    let (shared_domain, cow_domain) = if has_reflink {
        let ag_len = geo.ag_len(ag.agno).unwrap_or(0);
        let any = |cow| !matches!(xref.refcount_any(0, ag_len, cow), Ok(None));
        (any(false), any(true))
    } else {
        (false, false)
    };
    let xfails = &mut fails;
    // The bnobt's extents come in block order: whether anything owns one
    // is answered by one forward pass over the rmapbt instead of a query
    // from the root per extent (the query still gives the details when
    // something does).
    let mut owned = match (&xref.rmapbt, which.by_block && has_rmap) {
        (Ok(t), true) => OwnedSweep::new(t),
        _ => OwnedSweep::off(),
    };

    let on_block = |addr: xfbtree::BlockAddr, _level: u16, bytes: &[u8], out: &mut Findings| {
        if let Some(f) = block_lsn_finding(name, group, addr, bytes, SHORT_LSN_OFFSET, head) {
            out.push(f);
        }
    };
    let on_record = |r: &AllocRec, at: RecordLoc, out: &mut Findings| {
        let ok = check_record(ag, &which, r, at, prev.as_ref(), out);
        prev = Some(*r);
        if !ok {
            return;
        }
        let loc = |f: Finding| at_record(f, at);
        let (start, len) = (r.startblock, r.blockcount);
        let what = format!("free extent of {len} blocks at AG block {start}");

        // The other free-space tree must hold the very same extent.
        match other(r) {
            Ok(Some(o)) if o == *r => {
                if !which.xref_matched {
                    return;
                }
            }
            Ok(found) => match other_sound() {
                Ok(()) => out.push(loc(xref_corrupt(
                    name,
                    group,
                    &format!("not-in-{}", which.other),
                    format!(
                        "{what} has no matching record in the {}{}",
                        which.other,
                        found.map_or(String::new(), |o| format!(
                            " (nearest: {} blocks at AG block {})",
                            o.blockcount, o.startblock
                        ))
                    ),
                ))),
                Err(why) => xfails.report(name, group, which.other, why, out),
            },
            Err(why) => xfails.report(name, group, which.other, why, out),
        }

        // Free space has no owner ...
        let end = u64::from(start).saturating_add(u64::from(len));
        if has_rmap && owned.may_overlap(u64::from(start), end) {
            match xref.rmap_overlaps(start, len) {
                Ok(maps) => {
                    if let Some(m) = maps.first() {
                        out.push(loc(xref_corrupt(
                            name,
                            group,
                            "has-owner",
                            format!(
                                "{what} is mapped in the rmapbt: {} blocks at AG block {} belong to {}{}",
                                m.blockcount,
                                m.startblock,
                                owner_name(m.owner),
                                more(maps.len())
                            ),
                        )));
                    }
                }
                Err(why) => xfails.report(name, group, "rmapbt", why, out),
            }
        }

        // ... holds no inodes ...
        match xref.inode_chunk_any(start, len) {
            Ok(None) => {}
            Ok(Some(c)) => out.push(loc(xref_corrupt(
                name,
                group,
                "inode-chunk",
                format!(
                    "{what} holds inodes of the chunk starting at AG inode {} in the inobt",
                    c.startino
                ),
            ))),
            Err(why) => xfails.report(name, group, "inobt", why, out),
        }

        // ... and is neither shared nor being copied on write.
        for (present, cow, code, what_rc) in [
            (shared_domain, false, "shared", "shared"),
            (
                cow_domain,
                true,
                "cow-staging",
                "a copy-on-write staging extent",
            ),
        ] {
            if present {
                match xref.refcount_any(start, len, cow) {
                    Ok(None) => {}
                    Ok(Some(c)) => out.push(loc(xref_corrupt(
                        name,
                        group,
                        code,
                        format!(
                            "{what} overlaps {what_rc} in the refcountbt ({} blocks at AG block {})",
                            c.blockcount, c.startblock
                        ),
                    ))),
                    Err(why) => xfails.report(name, group, "refcountbt", why, out),
                }
            }
        }
    };
    let walk = walk_tree_blocks(tree, name, Some(group), out, on_block, on_record);
    check_tree_blocks(ag, xref, name, owner::AG, &walk, &mut fails, out);
}

/// Whether reverse mappings overlap extents asked about in increasing,
/// non-overlapping block order, in one forward pass over the rmapbt: the
/// largest end among the records that start before the extent's end says
/// whether any of them reaches into it. An extent asked out of order, or
/// a tree that cannot be read forward, gets "maybe" (the caller then
/// queries), never a wrong "no".
struct OwnedSweep<'t> {
    cursor: Option<xfbtree::Cursor<'t, crate::btree::ImageBlocks<'t>, Rmapbt>>,
    /// The next record not yet taken into `max_end`.
    next: Option<RmapRec>,
    /// The largest end of the records taken.
    max_end: u64,
    /// The end of the last extent asked about.
    last_end: u64,
}

impl<'t> OwnedSweep<'t> {
    fn new(tree: &'t AgBtree<'t, Rmapbt>) -> Self {
        let mut s = Self::off();
        if let Ok(mut c) = tree.cursor_first()
            && let Ok(next) = c.next_record()
        {
            s.cursor = Some(c);
            s.next = next;
        }
        s
    }

    /// Always "maybe".
    fn off() -> Self {
        Self {
            cursor: None,
            next: None,
            max_end: 0,
            last_end: 0,
        }
    }

    /// False only if no reverse mapping overlaps blocks `[start, end)`.
    fn may_overlap(&mut self, start: u64, end: u64) -> bool {
        let Some(cursor) = self.cursor.as_mut() else {
            return true;
        };
        if start < self.last_end {
            return true;
        }
        self.last_end = end;
        while let Some(r) = self.next.filter(|r| u64::from(r.startblock) < end) {
            let r_end = u64::from(r.startblock).saturating_add(u64::from(r.blockcount));
            self.max_end = self.max_end.max(r_end);
            match cursor.next_record() {
                Ok(n) => self.next = n,
                Err(_) => {
                    self.cursor = None;
                    return true;
                }
            }
        }
        self.max_end > start
    }
}

/// Checks one free-space record on its own; true if it is sound enough to
/// cross-reference.
fn check_record(
    ag: &AgContext<'_>,
    which: &Tree,
    r: &AllocRec,
    at: RecordLoc,
    prev: Option<&AllocRec>,
    out: &mut Findings,
) -> bool {
    let geo = ag.fs.geometry();
    let (name, group) = (which.name, ag.group());
    let (start, len) = (r.startblock, r.blockcount);
    if len == 0 {
        out.push(
            record_finding(
                name,
                group,
                at,
                "blockcount",
                format!("the free extent at AG block {start} is empty (0 blocks)"),
            )
            .field("blockcount", "> 0", 0),
        );
        return false;
    }
    let ag_len = geo.ag_len(ag.agno).unwrap_or(0);
    let inside = r.end().is_some_and(|end| {
        geo.verify_agbno(ag.agno, AgBlock(start))
            && end
                .checked_sub(1)
                .is_some_and(|last| geo.verify_agbno(ag.agno, AgBlock(last)))
    });
    if !inside {
        out.push(
            record_finding(
                name,
                group,
                at,
                "extent",
                format!(
                    "the free extent of {len} blocks at AG block {start} is not inside the AG's usable blocks {}..{ag_len}",
                    geo.ag_header_last_block.saturating_add(1)
                ),
            )
            .field(
                "startblock",
                format!(
                    "{}..{ag_len} with room for the extent",
                    geo.ag_header_last_block.saturating_add(1)
                ),
                start,
            ),
        );
        return false;
    }
    let mut ok = true;
    if let Some(p) = prev
        && p.blockcount > 0
    {
        let p_end = u64::from(p.startblock).saturating_add(u64::from(p.blockcount));
        if which.by_block && p_end > u64::from(start) {
            out.push(record_finding(
                name,
                group,
                at,
                "overlap",
                format!(
                    "the free extent of {len} blocks at AG block {start} overlaps the previous one ({} blocks at AG block {})",
                    p.blockcount, p.startblock
                ),
            ));
            ok = false;
        } else if p_end == u64::from(start)
            && u64::from(p.blockcount).saturating_add(u64::from(len)) < u64::from(u32::MAX)
        {
            // XFS merges neighbouring free extents whenever the result
            // fits a record; two that touch mean a lost update.
            out.push(record_finding(
                name,
                group,
                at,
                "mergeable",
                format!(
                    "the free extent of {len} blocks at AG block {start} directly follows the previous one ({} blocks at AG block {}): XFS would have merged them",
                    p.blockcount, p.startblock
                ),
            ));
        }
    }
    ok
}

fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(" (and {} more mappings)", n.saturating_sub(1)),
    }
}
