//! The inode btree scrubbers: `inobt` (every inode chunk) and `finobt`
//! (the chunks that have free inodes).
//!
//! As the kernel's `fs/xfs/scrub/ialloc.c` does, each tree is walked once
//! with the engine's verifier (structure) and every record is checked on
//! its own and cross-referenced in the same walk:
//!
//! - the chunk lies inside the AG's inode numbers (`xfs_inobt_check_irec`)
//!   and is aligned as inode allocation aligns chunks and clusters
//!   (`xchk_iallocbt_rec_alignment`);
//! - its counts agree with its masks: with sparse chunks `count` is 64
//!   minus four per hole bit and holes are marked free; `freecount` is the
//!   number of free inodes that exist (`xchk_iallocbt_rec`);
//! - its blocks are in use, owned by `OWN_INODES` in the rmapbt and not
//!   shared, and its holes are not owned by `OWN_INODES`
//!   (`xchk_iallocbt_chunk_xref`, `xchk_iallocbt_check_cluster`);
//! - the other inode tree agrees: an inobt chunk is in the finobt exactly
//!   when it has free inodes, and a finobt record is the inobt's record
//!   for the same chunk (`xchk_iallocbt_chunk_xref_other`, and xfs_repair's
//!   `scan_single_finobt_chunk`);
//! - each inode cluster is either wholly a hole or wholly present, and each
//!   present inode carries the inode magic number and its own number and is
//!   in use exactly when the free mask says so
//!   (`xchk_iallocbt_check_clusters`).
//!
//! After the walk, every block of the tree must be in use and owned by
//! `OWN_INOBT` alone, and no block may carry an LSN ahead of the log. For
//! the inobt, the rmapbt must give `OWN_INOBT` exactly the blocks of both
//! inode trees and `OWN_INODES` exactly the blocks of the inodes counted
//! (`xchk_iallocbt_xref_rmap_btreeblks`, `xchk_iallocbt_xref_rmap_inodes`).
//!
//! Without an rmapbt (or reflink, or a finobt) the corresponding
//! cross-references do not exist and are left out without a finding per
//! item.
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::common::{
    SHORT_LSN_OFFSET, XrefFailures, at_record, block_lsn_finding, check_tree_blocks, group_of,
    log_head, record_finding, unavailable, walk_tree_blocks, xref_corrupt,
};
use super::xref::{AgContext, Unavailable, Vetting, Xref, chunk_blocks};
use crate::btree::AgBtree;
use crate::format::btree::ialloc::{INODES_PER_CHUNK, INODES_PER_HOLEMASK_BIT, Inobt, InobtRec};
use crate::format::btree::rmap::{RmapRec, Rmapbt, owner};
use crate::format::dinode::{Dinode, MAGIC as DINODE_MAGIC};
use crate::fs::Filesystem;
use crate::types::{AgBlock, AgIno, AgNumber};
use scrub::{
    Applicability, Coverage, Findings, Health, ItemId, Scope, ScrubContext, ScrubError, Scrubber,
};
use xfbtree::verify::{Problem as TreeProblem, Problems, RecordLoc, Visitor};

/// Checks the inode btree of one AG.
pub struct InobtScrub;

/// Checks the free inode btree of one AG.
pub struct FinobtScrub;

impl Scrubber<Filesystem> for InobtScrub {
    fn name(&self) -> &'static str {
        "inobt"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["agi"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        scrub_tree(fs, item, ctx, out, Which::Inobt)
    }
}

impl Scrubber<Filesystem> for FinobtScrub {
    fn name(&self) -> &'static str {
        "finobt"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    /// After the inobt: when the inobt was found sound, a finobt record
    /// identical to its inobt record needs no cross-referencing or inode
    /// reading of its own.
    fn depends_on(&self) -> &'static [&'static str] {
        &["agi", "inobt"]
    }
    fn applies(&self, fs: &Filesystem) -> Applicability {
        if fs.geometry().features.has_finobt() {
            Applicability::Applies
        } else {
            Applicability::Absent("the filesystem has no free inode btree (finobt=0)".into())
        }
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        scrub_tree(fs, item, ctx, out, Which::Finobt)
    }
}

/// Which inode tree is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Inobt,
    Finobt,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Inobt => "inobt",
            Which::Finobt => "finobt",
        }
    }

    fn other(self) -> &'static str {
        match self {
            Which::Inobt => "finobt",
            Which::Finobt => "inobt",
        }
    }
}

/// What the walk carries from one record to the next.
#[derive(Debug, Default)]
struct WalkState {
    /// The previous record.
    prev: Option<InobtRec>,
    /// In an inode cluster larger than a chunk: the start of the record
    /// that must come next, and the end of that cluster.
    next_startino: Option<(u32, u64)>,
    /// Inodes that exist, over every record (inobt).
    inodes: u64,
}

fn scrub_tree(
    fs: &Filesystem,
    item: &ItemId,
    ctx: &ScrubContext,
    out: &mut Findings,
    which: Which,
) -> Result<(), ScrubError> {
    ctx.check_cancelled()?;
    let ag = AgContext::load(fs, AgNumber(group_of(item)?))?;
    let name = which.name();
    let group = ag.group();
    let geo = fs.geometry();
    let tree = match which {
        Which::Inobt => ag.inobt(),
        Which::Finobt => ag.finobt(),
    };
    let tree = match tree {
        Ok(t) => t,
        Err(why) => {
            out.push(unavailable(name, group, &why));
            return Ok(());
        }
    };
    let xref = Xref::new(&ag);
    // The other inode tree: none when the filesystem has no finobt.
    let other = match which {
        Which::Inobt => geo.features.has_finobt().then(|| ag.finobt()),
        Which::Finobt => Some(ag.inobt()),
    };
    // A finobt record identical to the inobt's is cross-referenced and its
    // inodes read by the inobt scrubber; when that found the inobt sound in
    // this run, doing it again would only double the cost.
    let inobt_sound = which == Which::Finobt && ctx.health_of("inobt", item.group) == Health::Ok;
    let head = log_head(fs);
    let mut fails = XrefFailures::default();
    let mut st = WalkState::default();
    let mut vetting = Vetting::default();
    if inobt_sound {
        vetting.record("inobt", Ok(()));
    }

    let walk = {
        let vetting = &mut vetting;
        let fails = &mut fails;
        let st = &mut st;
        let on_block = |addr: xfbtree::BlockAddr, _level: u16, bytes: &[u8], out: &mut Findings| {
            if let Some(f) = block_lsn_finding(name, group, addr, bytes, SHORT_LSN_OFFSET, head) {
                out.push(f);
            }
        };
        let on_record = |r: &InobtRec, at: RecordLoc, out: &mut Findings| {
            let ok = check_record(&ag, which, r, at, st, out);
            st.prev = Some(*r);
            if !ok {
                return;
            }
            st.inodes = st.inodes.saturating_add(u64::from(r.count));
            let matched = xref_other(group, which, other.as_ref(), r, at, vetting, fails, out);
            if matched && inobt_sound {
                return;
            }
            xref_chunk(&ag, &xref, which, r, at, fails, out);
            check_clusters(&ag, which, r, at, fails, out);
        };
        walk_tree_blocks(&tree, name, Some(group), out, on_block, on_record)
    };
    ctx.check_cancelled()?;
    check_tree_blocks(&ag, &xref, name, owner::INOBT, &walk, &mut fails, out);

    // Totals against the rmapbt, once per AG (from the inobt), and only
    // when nothing else is wrong: any damage already found would make the
    // totals disagree too.
    let damaged = out.as_slice().iter().any(|f| f.kind.is_damage());
    if which == Which::Inobt && geo.features.has_rmapbt() && !damaged {
        let other_blocks = match &other {
            None => Ok(0),
            Some(Err(why)) => Err(why.clone()),
            Some(Ok(t)) => count_blocks(t),
        };
        match other_blocks {
            Ok(n) => rmap_totals(
                &ag,
                &xref,
                walk.blocks.count().saturating_add(n),
                st.inodes,
                &mut fails,
                out,
            ),
            Err(why) => fails.report(name, group, "finobt", why, out),
        }
    }
    ctx.check_cancelled()
}

/// Checks one record on its own; true if it is sound enough to
/// cross-reference and to look at its inodes.
fn check_record(
    ag: &AgContext<'_>,
    which: Which,
    r: &InobtRec,
    at: RecordLoc,
    st: &mut WalkState,
    out: &mut Findings,
) -> bool {
    let geo = ag.fs.geometry();
    let (name, group) = (which.name(), ag.group());
    let start = r.startino;
    let holes = if geo.inodes.sparse {
        r.hole_inodes()
    } else {
        0
    };
    let exist = !holes;

    // The chunk's inodes that exist must be valid inode numbers of the AG
    // (xfs_inobt_check_irec; the last one checked is the highest that
    // exists, as current kernels do for sparse chunks at the end of an AG).
    let high = 63u32.saturating_sub(exist.leading_zeros());
    let in_range = geo.verify_agino(ag.agno, AgIno(start))
        && start
            .checked_add(high)
            .is_some_and(|last| geo.verify_agino(ag.agno, AgIno(last)));
    if !in_range {
        let range = geo
            .agino_range(ag.agno)
            .map_or("none".to_owned(), |(a, b)| format!("{}..={}", a.0, b.0));
        out.push(
            record_finding(
                name,
                group,
                at,
                "startino",
                format!(
                    "the inode chunk starting at AG inode {start} is not inside the AG's inode numbers {range}"
                ),
            )
            .field("startino", format!("a chunk inside {range}"), start),
        );
        return false;
    }

    if !check_alignment(ag, which, r, at, st, out) {
        return false;
    }

    let mut ok = true;
    let mut bad =
        |code: &str, field: &'static str, expected: String, actual: String, msg: String| {
            out.push(record_finding(name, group, at, code, msg).field(field, expected, actual));
            ok = false;
        };
    let holecount = r
        .holemask
        .count_ones()
        .saturating_mul(INODES_PER_HOLEMASK_BIT);
    if geo.inodes.sparse {
        let expected = INODES_PER_CHUNK.saturating_sub(holecount);
        if u32::from(r.count) != expected || r.count < 4 || u32::from(r.count) > INODES_PER_CHUNK {
            bad(
                "count",
                "count",
                expected.to_string(),
                r.count.to_string(),
                format!(
                    "the inode chunk at AG inode {start} counts {} inodes, but its hole mask {:#06x} leaves {expected}",
                    r.count, r.holemask
                ),
            );
        }
        if holes & r.free != holes {
            bad(
                "holemask",
                "free",
                format!("all of {holes:#018x} set"),
                format!("{:#018x}", r.free),
                format!(
                    "the inode chunk at AG inode {start} has holes (mask {:#06x}) that its free mask does not mark free",
                    r.holemask
                ),
            );
        }
    }
    let real_free = (r.free & exist).count_ones();
    if r.freecount != real_free || r.freecount > u32::from(r.count) {
        bad(
            "freecount",
            "freecount",
            real_free.to_string(),
            r.freecount.to_string(),
            format!(
                "the inode chunk at AG inode {start} counts {} free inodes, but its free mask marks {real_free} of its inodes free",
                r.freecount
            ),
        );
    }
    if which == Which::Finobt && r.freecount == 0 && real_free == 0 {
        bad(
            "no-free-inodes",
            "freecount",
            "> 0".to_owned(),
            "0".to_owned(),
            format!(
                "the inode chunk at AG inode {start} has no free inodes and does not belong in the finobt"
            ),
        );
    }
    if let Some(p) = st.prev
        && u64::from(p.startino).saturating_add(u64::from(INODES_PER_CHUNK)) > u64::from(start)
        && p.startino < start
    {
        bad(
            "overlap",
            "startino",
            format!(
                "at least {}",
                u64::from(p.startino).saturating_add(u64::from(INODES_PER_CHUNK))
            ),
            start.to_string(),
            format!(
                "the inode chunk at AG inode {start} overlaps the previous chunk at AG inode {}",
                p.startino
            ),
        );
    }
    ok
}

/// Chunk alignment (`xchk_iallocbt_rec_alignment`): inobt chunks start on
/// the inode allocation alignment and on an inode cluster, and when a
/// cluster holds several chunks they follow each other without gaps;
/// finobt chunks start on a 64-inode (or alignment) boundary, their exact
/// place being checked against the inobt.
fn check_alignment(
    ag: &AgContext<'_>,
    which: Which,
    r: &InobtRec,
    at: RecordLoc,
    st: &mut WalkState,
    out: &mut Findings,
) -> bool {
    let geo = ag.fs.geometry();
    let (name, group) = (which.name(), ag.group());
    let start = r.startino;
    let align = geo.inodes.cluster_align_inodes.max(1);
    let per_cluster = geo.inodes.inodes_per_cluster.max(1);
    let misaligned = |unit: u32, what: &str| {
        record_finding(
            name,
            group,
            at,
            "alignment",
            format!(
                "the inode chunk starts at AG inode {start}, not a multiple of {unit} ({what})"
            ),
        )
        .field("startino", format!("a multiple of {unit}"), start)
    };
    if which == Which::Finobt {
        let unit = INODES_PER_CHUNK.min(align);
        if !start.is_multiple_of(unit) {
            out.push(misaligned(unit, "the chunk alignment"));
            return false;
        }
        return true;
    }
    if let Some((next, cluster_end)) = st.next_startino {
        if u64::from(start) != u64::from(next) {
            out.push(
                record_finding(
                    name,
                    group,
                    at,
                    "alignment",
                    format!(
                        "the inode chunk starts at AG inode {start}, but the inode cluster being described continues at AG inode {next}"
                    ),
                )
                .field("startino", next, start),
            );
            st.next_startino = None;
            return false;
        }
        let after = u64::from(next).saturating_add(u64::from(INODES_PER_CHUNK));
        st.next_startino = u32::try_from(after)
            .ok()
            .filter(|a| u64::from(*a) < cluster_end)
            .map(|a| (a, cluster_end));
        return true;
    }
    if !start.is_multiple_of(align) {
        out.push(misaligned(align, "the inode allocation alignment"));
        return false;
    }
    if !start.is_multiple_of(per_cluster) {
        out.push(misaligned(per_cluster, "the inodes per cluster"));
        return false;
    }
    if per_cluster > INODES_PER_CHUNK
        && let Some(next) = start.checked_add(INODES_PER_CHUNK)
    {
        st.next_startino = Some((
            next,
            u64::from(start).saturating_add(u64::from(per_cluster)),
        ));
    }
    true
}

/// Cross-references the blocks of one sound record with free space,
/// ownership and sharing.
fn xref_chunk(
    ag: &AgContext<'_>,
    xref: &Xref<'_>,
    which: Which,
    r: &InobtRec,
    at: RecordLoc,
    fails: &mut XrefFailures,
    out: &mut Findings,
) {
    let geo = ag.fs.geometry();
    let (name, group) = (which.name(), ag.group());
    let start = r.startino;
    let chunk = format!("the inode chunk at AG inode {start}");
    let finding = |code: &str, msg: String| at_record(xref_corrupt(name, group, code, msg), at);
    let (exist, holes) = chunk_blocks(geo, r);
    for (s, l) in exist.runs() {
        let (Ok(s32), Ok(l32)) = (u32::try_from(s), u32::try_from(l)) else {
            continue;
        };
        let blocks = format!("{s}..{}", s.saturating_add(l));
        match xref.free_any(s32, l32) {
            Ok(None) => {}
            Ok(Some(_)) => out.push(
                finding(
                    "chunk-free",
                    format!("{chunk} has blocks {blocks} recorded as free space in the bnobt"),
                )
                .block(s),
            ),
            Err(why) => fails.report(name, group, "bnobt", why, out),
        }
        if geo.features.has_rmapbt() {
            match xref.rmap_owner_coverage(s32, l32, owner::INODES) {
                Ok(Coverage::Full) => {}
                Ok(_) => out.push(
                    finding(
                        "chunk-owner",
                        format!(
                            "{chunk} has blocks {blocks} that the rmapbt does not give to the inodes owner"
                        ),
                    )
                    .block(s),
                ),
                Err(why) => fails.report(name, group, "rmapbt", why, out),
            }
        }
        if geo.features.has_reflink() {
            match xref.refcount_any(s32, l32, false) {
                Ok(None) => {}
                Ok(Some(_)) => out.push(
                    finding(
                        "chunk-shared",
                        format!("{chunk} has blocks {blocks} recorded as shared in the refcountbt"),
                    )
                    .block(s),
                ),
                Err(why) => fails.report(name, group, "refcountbt", why, out),
            }
        }
    }
    if geo.features.has_rmapbt() {
        for (s, l) in holes.runs() {
            let (Ok(s32), Ok(l32)) = (u32::try_from(s), u32::try_from(l)) else {
                continue;
            };
            match xref.rmap_owner_coverage(s32, l32, owner::INODES) {
                Ok(Coverage::None) => {}
                Ok(_) => out.push(
                    finding(
                        "hole-owner",
                        format!(
                            "{chunk} has a hole at blocks {s}..{} that the rmapbt gives to the inodes owner",
                            s.saturating_add(l)
                        ),
                    )
                    .block(s),
                ),
                Err(why) => fails.report(name, group, "rmapbt", why, out),
            }
        }
    }
}

/// Cross-references one sound record with the other inode tree; true if
/// that tree holds the very same record (finobt).
#[allow(clippy::too_many_arguments)]
fn xref_other(
    group: u32,
    which: Which,
    other: Option<&Result<AgBtree<'_, Inobt>, Unavailable>>,
    r: &InobtRec,
    at: RecordLoc,
    vetting: &mut Vetting,
    fails: &mut XrefFailures,
    out: &mut Findings,
) -> bool {
    let name = which.name();
    let start = r.startino;
    let chunk = format!("the inode chunk at AG inode {start}");
    let Some(other) = other else {
        return false;
    };
    let found = other
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|t| t.get(&start).map_err(Unavailable::from));
    let mut matched = false;
    let disagreement = match (which, found) {
        (_, Err(why)) => {
            fails.report(name, group, which.other(), why, out);
            None
        }
        (Which::Inobt, Ok(None)) if r.freecount > 0 => Some((
            "not-in-finobt",
            format!(
                "{chunk} has {} free inodes but no record in the finobt",
                r.freecount
            ),
        )),
        (Which::Inobt, Ok(Some(_))) if r.freecount == 0 => Some((
            "in-finobt",
            format!("{chunk} has no free inodes but has a record in the finobt"),
        )),
        (Which::Finobt, Ok(None)) => Some((
            "not-in-inobt",
            format!("{chunk} is in the finobt but not in the inobt"),
        )),
        (Which::Finobt, Ok(Some(i))) if i != *r => Some((
            "differs-from-inobt",
            format!(
                "{chunk} differs between the trees: finobt {}, inobt {}",
                show(r),
                show(&i)
            ),
        )),
        (Which::Finobt, Ok(Some(_))) => {
            matched = true;
            None
        }
        _ => None,
    };
    if let Some((code, msg)) = disagreement {
        // A damaged other tree answers lookups wrongly: the disagreement
        // only blames this tree once the other one is known sound.
        let f = at_record(xref_corrupt(name, group, code, msg), at);
        vetting.confirm(which.other(), other, name, group, f, fails, out);
    }
    matched
}

fn show(r: &InobtRec) -> String {
    format!(
        "holemask {:#06x} count {} freecount {} free {:#018x}",
        r.holemask, r.count, r.freecount, r.free
    )
}

/// What is wrong with some inodes of one cluster, for one finding per
/// problem and cluster.
#[derive(Default)]
struct Tally {
    count: u32,
    first: Option<u64>,
}

impl Tally {
    fn add(&mut self, ino: u64) {
        self.count = self.count.saturating_add(1);
        self.first.get_or_insert(ino);
    }
}

/// Reads the inode clusters of a sound record and checks them against it
/// (`xchk_iallocbt_check_clusters`): a cluster is wholly a hole or wholly
/// present; each present inode is an inode (magic number, its own number)
/// and is in use exactly when the record does not mark it free.
fn check_clusters(
    ag: &AgContext<'_>,
    which: Which,
    r: &InobtRec,
    at: RecordLoc,
    fails: &mut XrefFailures,
    out: &mut Findings,
) {
    let fs = ag.fs;
    let geo = fs.geometry();
    let (name, group) = (which.name(), ag.group());
    let per_cluster = geo.inodes.inodes_per_cluster.max(1);
    let nr_inodes = per_cluster.min(INODES_PER_CHUNK);
    let blocks = geo.inodes.blocks_per_cluster.max(1);
    let isize = usize::try_from(geo.inode_size).unwrap_or(usize::MAX);
    let inopb = geo.inodes_per_block.max(1);
    let Ok(len) = usize::try_from(u64::from(blocks) << geo.block_log) else {
        return;
    };
    let Some(ag_len) = geo.ag_len(ag.agno) else {
        return;
    };
    // With several chunks per block, a chunk may start inside its block.
    let first_slot = r.startino.checked_rem(inopb).unwrap_or(0);
    let holes = if geo.inodes.sparse { r.holemask } else { 0 };
    let mut buf = vec![0u8; len];
    let corrupt = |code: &str, msg: String| record_finding(name, group, at, code, msg);

    let mut base = 0u32;
    while base < INODES_PER_CHUNK {
        let this = base;
        base = base.saturating_add(per_cluster);
        let Some(agino) = r.startino.checked_add(this) else {
            return;
        };
        let agbno = geo.agino_to_agbno(AgIno(agino));
        if first_slot != 0 && this != 0 {
            out.push(corrupt(
                "cluster-offset",
                format!(
                    "the inode chunk at AG inode {} starts inside a block yet spans several inode clusters",
                    r.startino
                ),
            ));
            return;
        }
        // The hole mask bits of this cluster's inodes.
        let mut mask = 0u16;
        let mut i = 0;
        while i < nr_inodes {
            let bit = this.saturating_add(i) / INODES_PER_HOLEMASK_BIT;
            mask |= 1u16.checked_shl(bit).unwrap_or(0);
            i = i.saturating_add(INODES_PER_HOLEMASK_BIT);
        }
        let cluster_holes = holes & mask;
        if cluster_holes != 0 && cluster_holes != mask {
            out.push(corrupt(
                "cluster-holes",
                format!(
                    "the inode cluster at AG block {} of the chunk at AG inode {} is partly a hole (hole mask {:#06x})",
                    agbno.0, r.startino, r.holemask
                ),
            ));
            continue;
        }
        if cluster_holes != 0 {
            continue;
        }
        if u64::from(agbno.0).saturating_add(u64::from(blocks)) > u64::from(ag_len) {
            return;
        }
        let Some(daddr) = geo.agb_to_daddr(ag.agno, AgBlock(agbno.0)) else {
            return;
        };
        if let Err(e) = fs.read_daddr(daddr, &mut buf) {
            fails.report(name, group, "inode-clusters", e, out);
            return;
        }
        let (mut not_inode, mut wrong_ino, mut free_in_use, mut used_free) = (
            Tally::default(),
            Tally::default(),
            Tally::default(),
            Tally::default(),
        );
        for i in 0..nr_inodes {
            let idx = this.saturating_add(i);
            let slot = usize::try_from(first_slot.saturating_add(i)).unwrap_or(usize::MAX);
            let bytes = slot
                .checked_mul(isize)
                .and_then(|off| buf.get(off..off.checked_add(isize)?));
            let Some(bytes) = bytes else {
                out.push(corrupt(
                    "cluster-offset",
                    format!(
                        "inode {idx} of the chunk at AG inode {} lies beyond its inode cluster buffer",
                        r.startino
                    ),
                ));
                break;
            };
            let Some(ino) = agino
                .checked_add(i)
                .and_then(|a| geo.ino_make(ag.agno, AgIno(a)))
            else {
                continue;
            };
            let Ok(d) = Dinode::from_bytes(bytes) else {
                continue;
            };
            if d.magic != DINODE_MAGIC || d.version != 3 {
                not_inode.add(ino.0);
                continue;
            }
            if d.ino != ino.0 {
                wrong_ino.add(ino.0);
                continue;
            }
            let marked_free = r.free & 1u64.checked_shl(idx).unwrap_or(0) != 0;
            match (marked_free, d.mode != 0) {
                (true, true) => free_in_use.add(ino.0),
                (false, false) => used_free.add(ino.0),
                _ => {}
            }
        }
        let chunk = r.startino;
        for (t, code, what) in [
            (
                not_inode,
                "inode-magic",
                "do not hold an inode (bad magic number or version)",
            ),
            (
                wrong_ino,
                "inode-number",
                "hold an inode with another inode number",
            ),
            (
                free_in_use,
                "free-inode-in-use",
                "are marked free in the record but are in use (non-zero mode)",
            ),
            (
                used_free,
                "used-inode-free",
                "are marked in use in the record but are free (zero mode)",
            ),
        ] {
            if let Some(first) = t.first {
                out.push(corrupt(
                    code,
                    format!(
                        "{} inode slots of the chunk at AG inode {chunk} (cluster at AG block {}) {what}; the first is inode {first}",
                        t.count, agbno.0
                    ),
                ));
            }
        }
    }
}

/// Blocks of an inode tree, counted by a walk of it; unavailable if the
/// walk finds the tree damaged (its own scrubber reports how).
fn count_blocks(t: &AgBtree<'_, Inobt>) -> Result<u64, Unavailable> {
    let mut p = Problems::default();
    let summary = t.verify(&mut p);
    match p.0.first() {
        None => Ok(summary.blocks),
        Some(first) => Err(Unavailable(format!("it is damaged ({first})"))),
    }
}

/// Blocks the rmapbt gives to the inode btrees and to inode chunks.
#[derive(Default)]
struct OwnerBlocks {
    inobt: u64,
    inodes: u64,
    /// The first structural problem met, if any.
    problem: Option<String>,
}

impl Visitor<Rmapbt> for OwnerBlocks {
    fn record(&mut self, m: &RmapRec, _at: RecordLoc) {
        match m.owner {
            owner::INOBT => self.inobt = self.inobt.saturating_add(u64::from(m.blockcount)),
            owner::INODES => self.inodes = self.inodes.saturating_add(u64::from(m.blockcount)),
            _ => {}
        }
    }

    fn problem(&mut self, p: TreeProblem) {
        self.problem.get_or_insert_with(|| p.to_string());
    }
}

/// The rmapbt must give `OWN_INOBT` as many blocks as the two inode trees
/// have, and `OWN_INODES` as many as the inodes counted take up
/// (`xchk_iallocbt_xref_rmap_btreeblks`, `xchk_iallocbt_xref_rmap_inodes`).
fn rmap_totals(
    ag: &AgContext<'_>,
    xref: &Xref<'_>,
    tree_blocks: u64,
    inodes: u64,
    fails: &mut XrefFailures,
    out: &mut Findings,
) {
    let geo = ag.fs.geometry();
    let group = ag.group();
    let Ok(rmap) = xref.rmapbt.as_ref() else {
        if let Err(why) = &xref.rmapbt {
            fails.report("inobt", group, "rmapbt", why.clone(), out);
        }
        return;
    };
    // One verified walk of the rmapbt reads each block once; its
    // structure is the rmapbt scrubber's to report, so any problem only
    // makes the totals unavailable.
    let mut count = OwnerBlocks::default();
    rmap.verify(&mut count);
    if let Some(why) = count.problem {
        fails.report(
            "inobt",
            group,
            "rmapbt",
            format!("it is damaged ({why})"),
            out,
        );
        return;
    }
    let (inobt, inode_blocks) = (count.inobt, count.inodes);
    if inobt != tree_blocks {
        out.push(
            xref_corrupt(
                "inobt",
                group,
                "rmap-btree-blocks",
                format!(
                    "the rmapbt gives {inobt} blocks to the inode btrees owner, but the inobt and finobt have {tree_blocks}"
                ),
            )
            .field("blocks", tree_blocks, inobt),
        );
    }
    let expected = inodes
        .saturating_mul(u64::from(geo.inode_size))
        .div_ceil(u64::from(geo.block_size.max(1)));
    if inode_blocks != expected {
        out.push(
            xref_corrupt(
                "inobt",
                group,
                "rmap-inode-blocks",
                format!(
                    "the rmapbt gives {inode_blocks} blocks to the inodes owner, but the {inodes} inodes of the inobt take up {expected}"
                ),
            )
            .field("blocks", expected, inode_blocks),
        );
    }
}
