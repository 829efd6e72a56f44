//! The reference count btree scrubber (`refcountbt`), after the kernel's
//! `fs/xfs/scrub/refcount.c` and what `xfs_repair` checks of the tree.
//!
//! One verified walk of the AG's refcountbt; each record is checked on its
//! own (`xfs_refcount_check_irec`: a non-empty extent inside the AG past
//! the headers, a reference count that fits its domain: at least 2 for
//! shared extents, exactly 1 for CoW staging extents) and against the
//! previous one (no overlap, no two records that should be one), then
//! cross-referenced:
//!
//! - the space is in use (bnobt) and holds no inodes (inobt);
//! - the reference count equals the number of reverse mappings over every
//!   block of the extent (`xchk_refcountbt_xref_rmap`; counted here with an
//!   exact sweep over the overlapping mappings rather than the kernel's
//!   fragment list), and a CoW staging extent is mapped by CoW staging
//!   records only;
//! - between shared records, no block is mapped twice in the rmapbt
//!   (`xchk_refcountbt_xref_gaps`): sharing the refcountbt does not record
//!   is damage.
//!
//! Every block of the tree must be owned by `refcount` in the rmapbt and
//! only by it, in use, and hold no inodes.
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::common::{XrefFailures, check_block_lsns, record_finding, walk_tree, xref_corrupt};
use super::rmap::{AgMaps, blocks, group_of, report_runs, root_unusable};
use super::xref::{AgContext, Xref};
use crate::format::btree::refcount::RefcountRec;
use crate::format::btree::rmap::{RmapKey, RmapRec, owner};
use crate::fs::Filesystem;
use crate::types::{AgBlock, AgNumber};
use scrub::{
    Applicability, Coverage, ExtentBitmap, Findings, ItemId, Scope, ScrubContext, ScrubError,
    Scrubber,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use xfbtree::verify::RecordLoc;

/// The scrubber's name.
pub const NAME: &str = "refcountbt";

/// Most reverse mappings tracked at once while counting the owners of one
/// extent; a count beyond it cannot be confirmed (reported as a failed
/// cross-reference, never guessed).
const MAX_OVERLAPPING: usize = 1 << 20;

/// Checks the reference count btree of one AG.
pub struct RefcountbtScrub;

impl Scrubber<Filesystem> for RefcountbtScrub {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["agf"]
    }

    fn applies(&self, fs: &Filesystem) -> Applicability {
        if fs.geometry().features.has_reflink() {
            Applicability::Applies
        } else {
            Applicability::Absent("the filesystem has no reference count btree (no reflink)".into())
        }
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        let ag = AgContext::load(fs, agno)?;
        let tree = match ag.refcountbt() {
            Ok(t) => t,
            Err(why) => {
                out.push(root_unusable(NAME, agno, &why));
                return Ok(());
            }
        };
        let xref = Xref::new(&ag);
        let maps = AgMaps::load(&ag, &xref, false);
        ctx.check_cancelled()?;
        let mut check = RecordCheck::new(fs, agno, &xref, &maps);
        let walk = walk_tree(&tree, NAME, Some(agno.0), out, |r, at, out| {
            check.record(r, at, out);
        });
        ctx.check_cancelled()?;
        // The last shared records, and sharing after them up to the end of
        // the AG.
        let ag_end = u64::from(fs.geometry().ag_len(agno).unwrap_or(0));
        check.flush(ag_end, out);
        let mut failures = std::mem::take(&mut check.failures);
        drop(check);
        check_tree_blocks(&ag, &xref, &maps, &walk.blocks, &mut failures, out);
        check_block_lsns(fs, &tree, &walk.blocks, NAME, agno.0, out);
        Ok(())
    }
}

/// "shared extent of AG blocks 100..103 with 2 owners".
pub(super) fn describe(r: &RefcountRec) -> String {
    let what = if r.cow {
        "CoW staging extent"
    } else {
        "shared extent"
    };
    format!(
        "{what} of {} with refcount {}",
        blocks(u64::from(r.startblock), u64::from(r.blockcount)),
        r.refcount
    )
}

/// One past the last block of a record, without overflow.
fn rec_end(r: &RefcountRec) -> u64 {
    u64::from(r.startblock).saturating_add(u64::from(r.blockcount))
}

/// `xfs_refcount_check_irec`: what is wrong with a record on its own, as
/// (code, sentence).
fn check_irec(fs: &Filesystem, agno: AgNumber, r: &RefcountRec) -> Option<(&'static str, String)> {
    let geo = fs.geometry();
    if r.blockcount == 0 {
        return Some((
            "blockcount",
            format!("{}: the record covers no blocks", describe(r)),
        ));
    }
    if r.cow && r.refcount != 1 {
        return Some((
            "refcount",
            format!(
                "{}: a CoW staging extent has exactly one owner",
                describe(r)
            ),
        ));
    }
    if !r.cow && r.refcount < 2 {
        return Some((
            "refcount",
            format!("{}: a shared extent has at least two owners", describe(r)),
        ));
    }
    let last = r.startblock.checked_add(r.blockcount.saturating_sub(1));
    let inside = last.is_some_and(|l| {
        geo.verify_agbno(agno, AgBlock(r.startblock)) && geo.verify_agbno(agno, AgBlock(l))
    });
    if !inside {
        return Some((
            "extent",
            format!(
                "{}: the extent is not inside the AG's blocks {}..{}",
                describe(r),
                geo.ag_header_last_block.saturating_add(1),
                geo.ag_len(agno).unwrap_or(0).saturating_sub(1)
            ),
        ));
    }
    None
}

/// Shared records whose owners are counted in one pass over the rmapbt.
const SWEEP_BATCH: usize = 1 << 16;

/// A good refcount record waiting for its owners to be counted.
#[derive(Debug, Clone, Copy)]
struct Expect {
    rec: RefcountRec,
    at: RecordLoc,
}

impl Expect {
    fn start(&self) -> u64 {
        u64::from(self.rec.startblock)
    }
    fn end(&self) -> u64 {
        rec_end(&self.rec)
    }
}

/// The per-record checks of one walk, with what they carry from record to
/// record.
///
/// Owners are counted by sweeping the rmapbt in block order: shared records
/// are batched, and each batch is compared with one streaming query of the
/// rmapbt over the blocks from the end of the previous batch to the end of
/// this one, gaps included (`xchk_refcountbt_xref_rmap` and
/// `xchk_refcountbt_xref_gaps` in one pass). CoW staging records, rare,
/// are swept one by one.
struct RecordCheck<'a, 'fs> {
    fs: &'fs Filesystem,
    agno: AgNumber,
    xref: &'a Xref<'fs>,
    maps: &'a AgMaps,
    /// Whether the filesystem has an rmapbt to count owners with.
    rmap: bool,
    /// The previous good record, for the overlap and merge checks.
    prev: Option<RefcountRec>,
    /// Shared records not yet swept, in block order, not overlapping.
    pending: Vec<Expect>,
    /// Every block below this one has been swept.
    swept_to: u64,
    failures: XrefFailures,
}

impl<'a, 'fs> RecordCheck<'a, 'fs> {
    fn new(fs: &'fs Filesystem, agno: AgNumber, xref: &'a Xref<'fs>, maps: &'a AgMaps) -> Self {
        Self {
            fs,
            agno,
            xref,
            maps,
            rmap: fs.geometry().features.has_rmapbt(),
            prev: None,
            pending: Vec::new(),
            swept_to: 0,
            failures: XrefFailures::default(),
        }
    }

    fn group(&self) -> u32 {
        self.agno.0
    }

    fn xcorrupt(&self, at: Option<RecordLoc>, code: &str, msg: String, out: &mut Findings) {
        let mut f = xref_corrupt(NAME, self.group(), code, msg);
        if let Some(at) = at {
            f = f
                .block(at.block.0)
                .record(u64::try_from(at.index).unwrap_or(u64::MAX));
        }
        out.push(f);
    }

    fn fail(&mut self, other: &'static str, why: impl std::fmt::Display, out: &mut Findings) {
        let g = self.group();
        self.failures.report(NAME, g, other, why, out);
    }

    fn record(&mut self, r: &RefcountRec, at: RecordLoc, out: &mut Findings) {
        let g = self.group();
        if let Some((code, msg)) = check_irec(self.fs, self.agno, r) {
            out.push(record_finding(NAME, g, at, code, msg));
            return;
        }
        let mut overlaps = false;
        if let Some(p) = self.prev
            && p.cow == r.cow
        {
            if u64::from(r.startblock) < rec_end(&p) {
                overlaps = true;
                let msg = format!(
                    "{} overlaps the previous record ({})",
                    describe(r),
                    describe(&p)
                );
                out.push(record_finding(NAME, g, at, "overlap", msg));
            } else if rec_end(&p) == u64::from(r.startblock)
                && p.refcount == r.refcount
                && u64::from(p.blockcount).saturating_add(u64::from(r.blockcount))
                    <= u64::from(u32::MAX)
            {
                let msg = format!(
                    "{} continues the previous record ({}) with the same refcount: the two should be one record",
                    describe(r),
                    describe(&p)
                );
                out.push(record_finding(NAME, g, at, "mergeable", msg));
            }
        }
        if !overlaps {
            self.prev = Some(*r);
        }
        self.cross_reference(r, at, out);
        if overlaps || !self.rmap {
            return;
        }
        let e = Expect { rec: *r, at };
        if r.cow {
            self.sweep(e.start(), e.end(), &[e], true, out);
        } else if e.start() >= self.swept_to {
            self.pending.push(e);
            if self.pending.len() >= SWEEP_BATCH {
                self.flush(e.end(), out);
            }
        }
    }

    /// Sweeps the pending shared records and the gaps around them, up to
    /// block `to`.
    fn flush(&mut self, to: u64, out: &mut Findings) {
        let batch = std::mem::take(&mut self.pending);
        if self.rmap {
            self.sweep(self.swept_to, to, &batch, false, out);
        }
        self.swept_to = self.swept_to.max(to);
    }

    /// `xchk_refcountbt_xref`: in use, no inodes.
    fn cross_reference(&mut self, r: &RefcountRec, at: RecordLoc, out: &mut Findings) {
        let (start, len) = (u64::from(r.startblock), u64::from(r.blockcount));
        match self.maps.free_run(self.xref, start, len) {
            Ok(None) => {}
            Ok(Some((fs, fl))) => {
                let msg = format!(
                    "{} covers space the bnobt lists as free ({})",
                    describe(r),
                    blocks(fs, fl)
                );
                self.xcorrupt(Some(at), "free-space", msg, out);
            }
            Err(why) => self.fail("bnobt", why, out),
        }
        match self.maps.inodes(self.xref, start, len) {
            Ok(Coverage::None) => {}
            Ok(_) => {
                let msg = format!(
                    "{} covers blocks that hold inodes according to the inobt",
                    describe(r)
                );
                self.xcorrupt(Some(at), "inode-chunk", msg, out);
            }
            Err(why) => self.fail("inobt", why, out),
        }
    }

    /// Counts the reverse mappings over every block of `[from, to)` and
    /// compares with `expects` (sorted, not overlapping, inside the range):
    /// inside a shared record the count is its refcount; inside a CoW
    /// staging record (`cow`) it is one mapping of owner `cow`; elsewhere
    /// (shared sweeps only) no block may be mapped twice.
    fn sweep(&mut self, from: u64, to: u64, expects: &[Expect], cow: bool, out: &mut Findings) {
        if to <= from {
            return;
        }
        let t = match self.xref.rmapbt.as_ref() {
            Ok(t) => t,
            Err(why) => {
                let why = why.clone();
                self.fail("rmapbt", why, out);
                return;
            }
        };
        let (Ok(lo), Ok(hi)) = (u32::try_from(from), u32::try_from(to.saturating_sub(1))) else {
            return;
        };
        let mut sw = Sweep::new(from, expects, cow);
        let mut too_many = false;
        let q = t.query_overlapping(&RmapKey::min_at(lo), &RmapKey::max_at(hi), |m| {
            let s = u64::from(m.startblock).max(from);
            let e = rec_end_rmap(m).min(to);
            sw.advance(s);
            sw.push(e, m.owner != owner::COW);
            if sw.active.len() > MAX_OVERLAPPING {
                too_many = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if let Err(e) = q {
            self.fail("rmapbt", e, out);
            return;
        }
        if too_many {
            self.fail(
                "rmapbt",
                format!("more than {MAX_OVERLAPPING} mappings overlap one block"),
                out,
            );
            return;
        }
        sw.advance(to);
        for m in sw.mismatches {
            match m {
                Mismatch::Count { i, start, end, n } => {
                    if let Some(e) = expects.get(i) {
                        let msg = format!(
                            "{}, but the rmapbt maps {} {n} times",
                            describe(&e.rec),
                            blocks(start, end.saturating_sub(start))
                        );
                        self.xcorrupt(Some(e.at), "refcount-rmap", msg, out);
                    }
                }
                Mismatch::NotCow { i, start, end } => {
                    if let Some(e) = expects.get(i) {
                        let msg = format!(
                            "{}, but {} are also mapped to an owner other than cow in the rmapbt",
                            describe(&e.rec),
                            blocks(start, end.saturating_sub(start))
                        );
                        self.xcorrupt(Some(e.at), "cow-owner", msg, out);
                    }
                }
                Mismatch::Unrecorded {
                    next,
                    start,
                    end,
                    n,
                } => {
                    let msg = format!(
                        "{} are mapped {n} times in the rmapbt, but the refcountbt has no record saying they are shared",
                        blocks(start, end.saturating_sub(start))
                    );
                    let at = expects.get(next).map(|e| e.at);
                    self.xcorrupt(at, "unrecorded-sharing", msg, out);
                }
            }
        }
    }
}

/// One past the last block of a reverse mapping, without overflow.
fn rec_end_rmap(m: &RmapRec) -> u64 {
    u64::from(m.startblock).saturating_add(u64::from(m.blockcount))
}

/// What a sweep found wrong (each refcount record and each gap at most
/// once).
enum Mismatch {
    /// Expectation `i` has `n` mappings over `[start, end)`.
    Count {
        i: usize,
        start: u64,
        end: u64,
        n: u64,
    },
    /// CoW expectation `i` is also mapped by another owner over
    /// `[start, end)`.
    NotCow { i: usize, start: u64, end: u64 },
    /// `[start, end)`, outside any record (before expectation `next`), is
    /// mapped `n` times.
    Unrecorded {
        next: usize,
        start: u64,
        end: u64,
        n: u64,
    },
}

/// Counts overlapping mappings block by block against the expectations:
/// the ends of the mappings covering the current position, smallest first,
/// each with whether its owner is not `cow`.
struct Sweep<'e> {
    /// Every block before this one has been counted.
    pos: u64,
    expects: &'e [Expect],
    cow: bool,
    /// The expectation at or after `pos`.
    next: usize,
    active: BinaryHeap<Reverse<(u64, bool)>>,
    /// Active mappings whose owner is not `cow`.
    not_cow: usize,
    /// The last place reported: `2i` for the gap before expectation `i`,
    /// `2i + 1` for expectation `i` (places only move forward).
    reported: Option<usize>,
    mismatches: Vec<Mismatch>,
}

impl<'e> Sweep<'e> {
    fn new(start: u64, expects: &'e [Expect], cow: bool) -> Self {
        Self {
            pos: start,
            expects,
            cow,
            next: 0,
            active: BinaryHeap::new(),
            not_cow: 0,
            reported: None,
            mismatches: Vec::new(),
        }
    }

    fn push(&mut self, end: u64, not_cow: bool) {
        if end > self.pos {
            self.active.push(Reverse((end, not_cow)));
            if not_cow {
                self.not_cow = self.not_cow.saturating_add(1);
            }
        }
    }

    /// Counts every block in `[pos, to)`.
    fn advance(&mut self, to: u64) {
        while self.pos < to {
            while let Some(Reverse((e, nc))) = self.active.peek().copied()
                && e <= self.pos
            {
                self.active.pop();
                if nc {
                    self.not_cow = self.not_cow.saturating_sub(1);
                }
            }
            while self
                .expects
                .get(self.next)
                .is_some_and(|x| x.end() <= self.pos)
            {
                self.next = self.next.saturating_add(1);
            }
            let here = self.expects.get(self.next);
            let inside = here.is_some_and(|x| x.start() <= self.pos);
            let bound = match here {
                Some(x) if inside => x.end(),
                Some(x) => x.start(),
                None => to,
            };
            let end = self
                .active
                .peek()
                .map_or(to, |Reverse((e, _))| *e)
                .min(bound)
                .min(to);
            let n = u64::try_from(self.active.len()).unwrap_or(u64::MAX);
            let (i, start) = (self.next, self.pos);
            // Each record (and each gap, by the record after it) is
            // reported at most once.
            let place = i.saturating_mul(2).saturating_add(usize::from(inside));
            if self.reported != Some(place) {
                let found = match here {
                    Some(_) if inside && self.cow && self.not_cow > 0 => {
                        Some(Mismatch::NotCow { i, start, end })
                    }
                    Some(x) if inside && n != u64::from(x.rec.refcount) => {
                        Some(Mismatch::Count { i, start, end, n })
                    }
                    _ if !inside && !self.cow && n > 1 => Some(Mismatch::Unrecorded {
                        next: i,
                        start,
                        end,
                        n,
                    }),
                    _ => None,
                };
                if let Some(m) = found {
                    self.reported = Some(place);
                    self.mismatches.push(m);
                }
            }
            self.pos = end;
        }
    }
}

/// Every refcountbt block must be owned by `refcount` (and only by it) in
/// the rmapbt, in use, and hold no inodes (`xchk_btree_check_block_owner`).
fn check_tree_blocks(
    ag: &AgContext<'_>,
    xref: &Xref<'_>,
    maps: &AgMaps,
    tree: &ExtentBitmap,
    failures: &mut XrefFailures,
    out: &mut Findings,
) {
    let g = ag.group();
    let rmap = ag.fs.geometry().features.has_rmapbt();
    let mut unowned = ExtentBitmap::new();
    for (s, l) in tree.runs() {
        let (Ok(start), Ok(len)) = (u32::try_from(s), u32::try_from(l)) else {
            continue;
        };
        match maps.free_run(xref, s, l) {
            Ok(None) => {}
            Ok(Some((fs, fl))) => out.push(
                xref_corrupt(
                    NAME,
                    g,
                    "block-free",
                    format!(
                        "refcountbt blocks among {} are listed as free by the bnobt ({})",
                        blocks(s, l),
                        blocks(fs, fl)
                    ),
                )
                .block(s),
            ),
            Err(why) => failures.report(NAME, g, "bnobt", why, out),
        }
        match maps.inodes(xref, s, l) {
            Ok(Coverage::None) => {}
            Ok(_) => out.push(
                xref_corrupt(
                    NAME,
                    g,
                    "block-inodes",
                    format!(
                        "refcountbt blocks among {} hold inodes according to the inobt",
                        blocks(s, l)
                    ),
                )
                .block(s),
            ),
            Err(why) => failures.report(NAME, g, "inobt", why, out),
        }
        if !rmap {
            continue;
        }
        match xref.rmap_overlaps(start, len) {
            Ok(maps) => {
                let mut owned = ExtentBitmap::new();
                for m in &maps {
                    if m.owner == owner::REFC {
                        owned.set(u64::from(m.startblock), u64::from(m.blockcount));
                    } else {
                        out.push(
                            xref_corrupt(
                                NAME,
                                g,
                                "block-owner",
                                format!(
                                    "refcountbt blocks among {} are also mapped to owner {:#x} at {} in the rmapbt",
                                    blocks(s, l),
                                    m.owner,
                                    blocks(u64::from(m.startblock), u64::from(m.blockcount))
                                ),
                            )
                            .block(s),
                        );
                    }
                }
                for (gs, gl) in owned.gaps(s, l) {
                    unowned.set(gs, gl);
                }
            }
            Err(why) => failures.report(NAME, g, "rmapbt", why, out),
        }
    }
    report_runs(&unowned, out, |s, l| {
        xref_corrupt(
            NAME,
            g,
            "block-unowned",
            format!(
                "refcountbt {} are not mapped to owner refcount in the rmapbt",
                blocks(s, l)
            ),
        )
        .block(s)
    });
}
