//! The reverse-mapping btree scrubber (`rmapbt`), after the kernel's
//! `fs/xfs/scrub/rmap.c` and what `xfs_repair` checks of the tree.
//!
//! One verified walk of the AG's rmapbt; each record is checked on its own
//! (`xfs_rmap_check_irec`: a non-empty extent inside the AG past the
//! headers, a known owner, flags that go together, a file range that fits)
//! and against its neighbours (records that should have been merged,
//! overlaps that only reflinked file data may have), then cross-referenced:
//!
//! - the space is not free (bnobt);
//! - inode chunk records (owner `inodes`) cover inode chunks of the inobt
//!   and nothing else does;
//! - shared blocks (refcountbt) belong to file data mappings only, and
//!   overlapping file data mappings are shared; CoW staging records match
//!   CoW staging extents of the refcountbt;
//! - a record owned by an inode is backed by that inode: the inobt says
//!   it is in use and its fork maps exactly those blocks at that file
//!   offset (or, for bmbt blocks, its bmbt uses them). This is the check
//!   `xfs_repair` makes by rebuilding the reverse mappings from the inodes;
//!   here each record is looked up in its owner's block map instead.
//!
//! After the walk, the records of each AG metadata owner are compared with
//! the blocks that metadata really uses (AG headers, log, free-space
//! btrees + rmapbt + AGFL, inode btrees, refcount btree), in both
//! directions, and the rmapbt's own blocks must not be free or hold inodes.
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::common::{
    XrefFailures, check_block_lsns, record_finding, tree_blocks, walk_quietly, walk_tree,
    xref_corrupt,
};
use super::xref::{AgContext, Unavailable, Xref, chunk_blocks};
use crate::bmap::{Extent, MAX_FILEOFF};
use crate::btree::{AgBtree, ImageBlocks};
use crate::format::bmbt_rec::{self, BmbtIrec};
use crate::format::btree::bmbt::Bmbt;
use crate::format::btree::ialloc::{INODES_PER_CHUNK, Inobt, InobtRec};
use crate::format::btree::rmap::{RmapRec, owner};
use crate::format::dinode::{BmdrRoot, Fork, ForkFormat};
use crate::fs::Filesystem;
use crate::types::{AgBlock, AgIno, AgNumber, Ino};
use scrub::{
    Applicability, Coverage, ExtentBitmap, Finding, FindingKind, Findings, ItemId, Scope,
    ScrubContext, ScrubError, Scrubber,
};
use std::collections::VecDeque;
use std::fmt::Write as _;
use xfbtree::verify::RecordLoc;
use xfbtree::{Btree, Lookup};

const NAME: &str = "rmapbt";

/// Most runs of disagreeing blocks reported per owner and direction; the
/// rest are summed up in one more finding.
const MAX_RUNS_REPORTED: usize = 8;

/// Owner inodes kept decoded while walking (records of one file tend to be
/// neighbours in block order).
const OWNER_CACHE: usize = 8;

/// Checks the reverse-mapping btree of one AG.
pub struct RmapbtScrub;

impl Scrubber<Filesystem> for RmapbtScrub {
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
        if fs.geometry().features.has_rmapbt() {
            Applicability::Applies
        } else {
            Applicability::Absent("the filesystem has no reverse-mapping btree".into())
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
        let tree = match ag.rmapbt() {
            Ok(t) => t,
            Err(why) => {
                out.push(root_unusable(NAME, agno, &why));
                return Ok(());
            }
        };
        let xref = Xref::new(&ag);
        let mut maps = AgMaps::load(&ag, &xref, true);
        ctx.check_cancelled()?;
        let chunks = std::mem::replace(&mut maps.chunks, Preload::TooBig);
        let mut check = RecordCheck::new(fs, agno, &xref, &maps, chunks);
        let walk = walk_tree(&tree, NAME, Some(agno.0), out, |r, at, out| {
            check.record(r, at, out);
        });
        ctx.check_cancelled()?;
        let clean_walk = walk.problems == 0 && !check.bad_records;
        let owned = std::mem::take(&mut check.owned);
        let mut failures = std::mem::take(&mut check.failures);
        for (s, l) in walk.blocks.runs() {
            check.check_tree_block(s, l, &mut failures, out);
        }
        drop(check);

        let expected = maps.metadata(&ag, &walk.blocks);
        compare_owners(&ag, &owned, &expected, clean_walk, &mut failures, out);
        check_block_lsns(fs, &tree, &walk.blocks, NAME, agno.0, out);
        Ok(())
    }
}

/// The AG of a group item.
pub(super) fn group_of(item: &ItemId) -> Result<AgNumber, ScrubError> {
    item.group
        .and_then(|g| u32::try_from(g).ok())
        .map(AgNumber)
        .ok_or_else(|| ScrubError::Internal(format!("{item} is not an AG item")))
}

/// The finding for a tree whose root the AGF does not let us reach: the
/// AGF scrubber reports the header; this tree could not be checked.
pub(super) fn root_unusable(structure: &'static str, agno: AgNumber, why: &Unavailable) -> Finding {
    Finding::new(
        FindingKind::Incomplete,
        structure,
        format!("{structure}.root-unusable"),
        format!("the {structure} could not be checked: {why}"),
    )
    .group(u64::from(agno.0))
}

/// One past the last block of a record, without overflow.
fn rec_end(r: &RmapRec) -> u64 {
    u64::from(r.startblock).saturating_add(u64::from(r.blockcount))
}

/// "AG blocks a..b" for a run of `len` blocks from `start` (inclusive end).
pub(super) fn blocks(start: u64, len: u64) -> String {
    let last = start.saturating_add(len.saturating_sub(1));
    if len == 1 {
        format!("AG block {start}")
    } else {
        format!("AG blocks {start}..{last}")
    }
}

/// Who a record says owns its blocks, in words.
fn owner_words(r: &RmapRec) -> String {
    if owner::is_special(r.owner) {
        return match owner::name(r.owner) {
            Some(n) => format!("owner {n}"),
            None => format!("unknown owner {:#x}", r.owner),
        };
    }
    let fork = if r.attr_fork() { "attr" } else { "data" };
    let mut s = format!("inode {} {fork} fork", r.owner);
    if r.bmbt_block() {
        s.push_str(" bmbt blocks");
    } else {
        let _ = write!(s, " file block {}", r.offset());
    }
    if r.unwritten() {
        s.push_str(", unwritten");
    }
    s
}

/// A record in words: "mapping of AG blocks 100..103 to inode 131 data
/// fork file block 0".
pub(super) fn describe(r: &RmapRec) -> String {
    format!(
        "mapping of {} to {}",
        blocks(u64::from(r.startblock), u64::from(r.blockcount)),
        owner_words(r)
    )
}

/// Whether an owner is one the rmapbt may hold: an inode number that can
/// exist, or one of the special owners from CoW staging to static metadata.
fn owner_valid(fs: &Filesystem, o: u64) -> bool {
    if owner::is_special(o) {
        (owner::COW..=owner::FS).contains(&o)
    } else {
        fs.geometry().ino_split(Ino(o)).is_some()
    }
}

/// `xfs_rmap_check_irec` and the offset-word decoding before it: what is
/// wrong with a record on its own, as (code, sentence).
fn check_irec(fs: &Filesystem, agno: AgNumber, r: &RmapRec) -> Option<(&'static str, String)> {
    let geo = fs.geometry();
    let reserved = r.reserved_bits();
    if reserved != 0 {
        return Some((
            "offset-reserved",
            format!(
                "{}: reserved bits {reserved:#x} of the offset word are set",
                describe(r)
            ),
        ));
    }
    if r.blockcount == 0 {
        return Some((
            "blockcount",
            format!(
                "record at AG block {} for {} maps no blocks",
                r.startblock,
                owner_words(r)
            ),
        ));
    }
    let headers = geo.ag_header_last_block;
    if r.startblock <= headers {
        let want = headers.saturating_add(1);
        if r.owner != owner::FS || r.blockcount != want {
            return Some((
                "header-blocks",
                format!(
                    "{}: the AG header blocks 0..{headers} must be mapped as one record of owner fs",
                    describe(r)
                ),
            ));
        }
    } else {
        let last = r.startblock.checked_add(r.blockcount.saturating_sub(1));
        let inside = last.is_some_and(|l| {
            geo.verify_agbno(agno, AgBlock(r.startblock)) && geo.verify_agbno(agno, AgBlock(l))
        });
        if !inside {
            let ag_len = geo.ag_len(agno).unwrap_or(0);
            return Some((
                "extent",
                format!(
                    "{}: the extent is not inside the AG's blocks {}..{}",
                    describe(r),
                    headers.saturating_add(1),
                    ag_len.saturating_sub(1)
                ),
            ));
        }
    }
    if !owner_valid(fs, r.owner) {
        return Some((
            "owner",
            format!(
                "{}: {:#x} is neither a valid inode number nor a special owner",
                describe(r),
                r.owner
            ),
        ));
    }
    let inode = !owner::is_special(r.owner);
    let (bmbt, attr, unwritten) = (r.bmbt_block(), r.attr_fork(), r.unwritten());
    if bmbt && r.offset() != 0 {
        return Some((
            "offset",
            format!("{}: bmbt block records have file offset 0", describe(r)),
        ));
    }
    if !inode && r.offset() != 0 {
        return Some((
            "offset",
            format!(
                "{}: file offset {} on a record of a special owner",
                describe(r),
                r.offset()
            ),
        ));
    }
    if !inode && (bmbt || attr || unwritten) {
        return Some((
            "flags",
            format!(
                "{}: special owners carry no fork, bmbt or unwritten flags",
                describe(r)
            ),
        ));
    }
    if unwritten && (bmbt || attr) {
        return Some((
            "flags",
            format!("{}: only data fork mappings can be unwritten", describe(r)),
        ));
    }
    if inode && !bmbt {
        let last = r
            .offset()
            .checked_add(u64::from(r.blockcount).saturating_sub(1));
        if last.is_none_or(|l| l > MAX_FILEOFF) {
            return Some((
                "offset",
                format!(
                    "{}: the file range ends beyond the largest file offset {MAX_FILEOFF}",
                    describe(r)
                ),
            ));
        }
    }
    None
}

/// Whether a record may share its blocks with others (reflinked file data;
/// `xchk_rmapbt_is_shareable`).
pub(crate) fn shareable(reflink: bool, r: &RmapRec) -> bool {
    reflink && !owner::is_special(r.owner) && !r.bmbt_block() && !r.attr_fork() && !r.unwritten()
}

/// Whether `b` continues `a` so that the two should be one record
/// (`xchk_rmap_mergeable`).
pub(super) fn mergeable(a: &RmapRec, b: &RmapRec) -> bool {
    if a.owner != b.owner || rec_end(a) != u64::from(b.startblock) {
        return false;
    }
    if u64::from(a.blockcount).saturating_add(u64::from(b.blockcount)) > u64::from(u32::MAX) {
        return false;
    }
    if owner::is_special(b.owner) {
        return true;
    }
    let flags = |r: &RmapRec| r.offset_word & !crate::format::btree::rmap::OFF_MASK;
    if flags(a) != flags(b) {
        return false;
    }
    if a.bmbt_block() {
        return true;
    }
    a.offset().checked_add(u64::from(a.blockcount)) == Some(b.offset())
}

/// The blocks each AG metadata owner holds according to the rmapbt.
#[derive(Debug, Default)]
struct OwnerBlocks {
    fs: ExtentBitmap,
    log: ExtentBitmap,
    ag: ExtentBitmap,
    inobt: ExtentBitmap,
    refc: ExtentBitmap,
}

impl OwnerBlocks {
    fn for_owner(&mut self, o: u64) -> Option<&mut ExtentBitmap> {
        match o {
            owner::FS => Some(&mut self.fs),
            owner::LOG => Some(&mut self.log),
            owner::AG => Some(&mut self.ag),
            owner::INOBT => Some(&mut self.inobt),
            owner::REFC => Some(&mut self.refc),
            _ => None,
        }
    }
}

/// The per-record checks of one walk, with what they carry from record to
/// record.
struct RecordCheck<'a, 'fs> {
    fs: &'fs Filesystem,
    agno: AgNumber,
    xref: &'a Xref<'fs>,
    maps: &'a AgMaps,
    reflink: bool,
    /// The previous good record, for the merge check.
    prev: Option<RmapRec>,
    /// The good record reaching furthest so far, for the overlap check.
    reach: Option<(RmapRec, RecordLoc)>,
    /// Whether any record failed its own checks.
    bad_records: bool,
    owned: OwnerBlocks,
    owners: OwnerInodes<'fs>,
    failures: XrefFailures,
}

impl<'a, 'fs> RecordCheck<'a, 'fs> {
    fn new(
        fs: &'fs Filesystem,
        agno: AgNumber,
        xref: &'a Xref<'fs>,
        maps: &'a AgMaps,
        chunks: Preload<Vec<InobtRec>>,
    ) -> Self {
        Self {
            fs,
            agno,
            xref,
            maps,
            reflink: fs.geometry().features.has_reflink(),
            prev: None,
            reach: None,
            bad_records: false,
            owned: OwnerBlocks::default(),
            owners: OwnerInodes::new(fs, agno, chunks),
            failures: XrefFailures::default(),
        }
    }

    fn group(&self) -> u32 {
        self.agno.0
    }

    fn corrupt(&mut self, at: RecordLoc, code: &str, msg: String, out: &mut Findings) {
        self.bad_records = true;
        out.push(record_finding(NAME, self.group(), at, code, msg));
    }

    fn xcorrupt(&self, at: RecordLoc, code: &str, msg: String, out: &mut Findings) {
        out.push(
            xref_corrupt(NAME, self.group(), code, msg)
                .block(at.block.0)
                .record(u64::try_from(at.index).unwrap_or(u64::MAX)),
        );
    }

    fn fail(&mut self, other: &'static str, why: impl std::fmt::Display, out: &mut Findings) {
        let g = self.group();
        self.failures.report(NAME, g, other, why, out);
    }

    fn record(&mut self, r: &RmapRec, at: RecordLoc, out: &mut Findings) {
        if let Some((code, msg)) = check_irec(self.fs, self.agno, r) {
            self.corrupt(at, code, msg, out);
            return;
        }
        if let Some(p) = self.prev
            && mergeable(&p, r)
        {
            let msg = format!(
                "{} continues the previous record ({}): the two should be one record",
                describe(r),
                describe(&p)
            );
            self.corrupt(at, "mergeable", msg, out);
        }
        self.prev = Some(*r);
        self.check_overlap(r, at, out);
        self.cross_reference(r, at, out);
        if let Some(b) = self.owned.for_owner(r.owner) {
            b.set(u64::from(r.startblock), u64::from(r.blockcount));
        }
    }

    /// Records may overlap only where both are reflinked file data
    /// (`xchk_rmapbt_check_overlapping`); such overlaps must be shared in
    /// the refcountbt.
    fn check_overlap(&mut self, r: &RmapRec, at: RecordLoc, out: &mut Findings) {
        let Some((p, ploc)) = self.reach else {
            self.reach = Some((*r, at));
            return;
        };
        let (pend, rend) = (rec_end(&p), rec_end(r));
        if pend > u64::from(r.startblock) {
            if shareable(self.reflink, &p) && shareable(self.reflink, r) {
                let last = pend.min(rend);
                self.check_shared(r, at, u64::from(r.startblock), last, out);
            } else {
                let msg = format!(
                    "{} overlaps the {} (block {} record {}), and these mappings cannot share blocks",
                    describe(r),
                    describe(&p),
                    ploc.block.0,
                    ploc.index
                );
                self.corrupt(at, "overlap", msg, out);
            }
        }
        if rend > pend {
            self.reach = Some((*r, at));
        }
    }

    /// Blocks `[start, end)` are mapped by two file data records: the
    /// refcountbt must count them as shared.
    fn check_shared(
        &mut self,
        r: &RmapRec,
        at: RecordLoc,
        start: u64,
        end: u64,
        out: &mut Findings,
    ) {
        let len = end.saturating_sub(start);
        match self.maps.refcounts(self.xref, start, len, false) {
            Ok(shared) => {
                if let Some((gs, gl)) = shared.gaps(start, len).first() {
                    let msg = format!(
                        "{} shares {} with another file mapping, but the refcountbt does not record those blocks as shared",
                        describe(r),
                        blocks(*gs, *gl)
                    );
                    self.xcorrupt(at, "unshared-overlap", msg, out);
                }
            }
            Err(why) => self.fail("refcountbt", why, out),
        }
    }

    /// The rmapbt's own blocks must be in use and hold no inodes
    /// (`xchk_btree_check_block_owner`; their owner is compared with the
    /// records of owner `ag` after the walk).
    fn check_tree_block(&self, s: u64, l: u64, failures: &mut XrefFailures, out: &mut Findings) {
        let g = self.group();
        match self.maps.free_run(self.xref, s, l) {
            Ok(None) => {}
            Ok(Some((fs, fl))) => out.push(
                xref_corrupt(
                    NAME,
                    g,
                    "block-free",
                    format!(
                        "rmapbt blocks among {} are listed as free by the bnobt ({})",
                        blocks(s, l),
                        blocks(fs, fl)
                    ),
                )
                .block(s),
            ),
            Err(why) => failures.report(NAME, g, "bnobt", why, out),
        }
        match self.maps.inodes(self.xref, s, l) {
            Ok(Coverage::None) => {}
            Ok(_) => out.push(
                xref_corrupt(
                    NAME,
                    g,
                    "block-inodes",
                    format!(
                        "rmapbt blocks among {} hold inodes according to the inobt",
                        blocks(s, l)
                    ),
                )
                .block(s),
            ),
            Err(why) => failures.report(NAME, g, "inobt", why, out),
        }
    }

    /// `xchk_rmapbt_xref` and the owner check.
    fn cross_reference(&mut self, r: &RmapRec, at: RecordLoc, out: &mut Findings) {
        let (start, len) = (u64::from(r.startblock), u64::from(r.blockcount));
        match self.maps.free_run(self.xref, start, len) {
            Ok(None) => {}
            Ok(Some((fs, fl))) => {
                let msg = format!(
                    "{} covers space the bnobt lists as free ({})",
                    describe(r),
                    blocks(fs, fl)
                );
                self.xcorrupt(at, "free-space", msg, out);
            }
            Err(why) => self.fail("bnobt", why, out),
        }
        match self.maps.inodes(self.xref, start, len) {
            Ok(cov) => {
                if r.owner == owner::INODES && cov != Coverage::Full {
                    let msg = format!(
                        "{} gives blocks to inode chunks, but the inobt has no inodes in {}",
                        describe(r),
                        if cov == Coverage::None {
                            "any of them"
                        } else {
                            "some of them"
                        }
                    );
                    self.xcorrupt(at, "inode-chunk", msg, out);
                } else if r.owner != owner::INODES && cov != Coverage::None {
                    let msg = format!(
                        "{} covers blocks that hold inodes according to the inobt",
                        describe(r)
                    );
                    self.xcorrupt(at, "inode-chunk", msg, out);
                }
            }
            Err(why) => self.fail("inobt", why, out),
        }
        if self.reflink {
            self.xref_refcount(r, at, out);
        }
        if !owner::is_special(r.owner) {
            self.check_owner_inode(r, at, out);
        }
    }

    /// CoW staging records must be CoW staging extents; shared blocks may
    /// only be file data (`xchk_xref_is_cow_staging`,
    /// `xchk_rmapbt_xref_refc`).
    fn xref_refcount(&mut self, r: &RmapRec, at: RecordLoc, out: &mut Findings) {
        let (start, len) = (u64::from(r.startblock), u64::from(r.blockcount));
        let cow = r.owner == owner::COW;
        let set = match self.maps.refcounts(self.xref, start, len, cow) {
            Ok(set) => set,
            Err(why) => {
                self.fail("refcountbt", why, out);
                return;
            }
        };
        if cow {
            if set.coverage(start, len) != Coverage::Full {
                let msg = format!(
                    "{} is a CoW staging extent, but the refcountbt has no CoW staging record for all of it",
                    describe(r)
                );
                self.xcorrupt(at, "cow-staging", msg, out);
            }
        } else if let Some((ss, sl)) = set.runs().next()
            && !shareable(true, r)
        {
            let msg = format!(
                "{} overlaps blocks the refcountbt records as shared ({}), and such a mapping cannot be shared",
                describe(r),
                blocks(ss, sl)
            );
            self.xcorrupt(at, "shared", msg, out);
        }
    }

    /// A record owned by an inode must be backed by that inode's block map.
    fn check_owner_inode(&mut self, r: &RmapRec, at: RecordLoc, out: &mut Findings) {
        let fs = self.fs;
        let Some(fsb) = fs.geometry().fsbno(self.agno, AgBlock(r.startblock)) else {
            return;
        };
        let fork = if r.attr_fork() {
            Fork::Attr
        } else {
            Fork::Data
        };
        let Some(state) = self.owners.get(r.owner) else {
            return;
        };
        let verdict = match state {
            OwnerState::NotInUse(why) => Verdict::Mismatch(format!("inode {} {why}", r.owner)),
            OwnerState::Unavailable(why) => Verdict::Unavailable(why.clone()),
            OwnerState::InUse { data, attr } => {
                let map = match fork {
                    Fork::Data => data,
                    Fork::Attr => attr,
                };
                if r.bmbt_block() {
                    map.check_bmbt_blocks(fsb.0, r.blockcount)
                } else {
                    map.check_mapping(r.offset(), r.blockcount, fsb.0, r.unwritten())
                }
                .map_mismatch(|m| format!("the inode's {fork} {m}"))
            }
        };
        match verdict {
            Verdict::Match => {}
            Verdict::Mismatch(what) => {
                let msg = format!("{}, but {what}", describe(r));
                self.xcorrupt(at, "owner-mapping", msg, out);
            }
            Verdict::Unavailable(why) => self.fail("inodes", why, out),
        }
    }
}

/// The outcome of comparing a record with its owner's block map.
enum Verdict {
    Match,
    /// The owner says otherwise (what it says).
    Mismatch(String),
    /// The owner could not be consulted (why).
    Unavailable(String),
}

impl Verdict {
    fn map_mismatch(self, f: impl FnOnce(String) -> String) -> Verdict {
        match self {
            Verdict::Mismatch(m) => Verdict::Mismatch(f(m)),
            v => v,
        }
    }
}

/// What the rmapbt check knows of one owner inode.
enum OwnerState<'fs> {
    /// The inobt says the inode is not in use (how).
    NotInUse(String),
    /// The inode could not be consulted (why).
    Unavailable(String),
    /// An inode in use, with the block maps of its forks.
    InUse {
        data: ForkMap<'fs>,
        attr: ForkMap<'fs>,
    },
}

/// Mappings of one fork read into memory at once; a fork with more is
/// looked up in its bmbt instead.
const MAX_LOADED_EXTENTS: u64 = 1 << 16;

/// The block map of one fork, ready for lookups.
enum ForkMap<'fs> {
    /// The fork maps no blocks (local or device format, or no attr fork).
    NoBlocks(&'static str),
    /// The fork could not be read (why).
    Unreadable(String),
    /// The fork's mappings: read whole (an extents-format fork, or a
    /// btree-format one of moderate size) and/or in its bmbt.
    Mapped {
        extents: Option<Vec<Extent>>,
        bmbt: Option<BmbtMap<'fs>>,
    },
}

/// The bmbt of a btree-format fork; its block set is collected the first
/// time a bmbt-block record asks for it.
struct BmbtMap<'fs> {
    tree: Box<Btree<ImageBlocks<'fs>, Bmbt>>,
    blocks: Option<Result<ExtentBitmap, Unavailable>>,
}

impl ForkMap<'_> {
    /// Whether the fork maps file blocks `[off, off + len)` to filesystem
    /// blocks from `fsb` on, all written or all unwritten as `unwritten`.
    fn check_mapping(&mut self, off: u64, len: u32, fsb: u64, unwritten: bool) -> Verdict {
        let mut walk = MappingWalk::new(off, len, fsb, unwritten);
        let (extents, bmbt) = match self {
            ForkMap::NoBlocks(what) => {
                return Verdict::Mismatch(format!("maps no blocks ({what})"));
            }
            ForkMap::Unreadable(why) => return Verdict::Unavailable(why.clone()),
            ForkMap::Mapped { extents, bmbt } => (extents, bmbt),
        };
        if let Some(v) = extents {
            let i = v.partition_point(|e| e.end() <= off);
            for e in v.get(i..).unwrap_or(&[]) {
                if let Some(done) = walk.step(e) {
                    return done;
                }
            }
            return walk.finish();
        }
        let Some(BmbtMap { tree, .. }) = bmbt else {
            return Verdict::Unavailable("the fork's mappings were not read".into());
        };
        let mut c = match tree.cursor(&off, Lookup::Le) {
            Ok(c) => c,
            Err(e) => return Verdict::Unavailable(format!("bmbt lookup failed: {e}")),
        };
        // Step back onto the extent at or before `off`, if any.
        if let Err(e) = c.prev_record() {
            return Verdict::Unavailable(format!("bmbt lookup failed: {e}"));
        }
        // Every useful step advances by at least one block; allow a few
        // records that end before `off` on top.
        let mut budget = u64::from(len).saturating_add(4);
        loop {
            let rec = match c.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => return walk.finish(),
                Err(e) => return Verdict::Unavailable(format!("bmbt walk failed: {e}")),
            };
            let e = Extent {
                file_offset: crate::types::FileOffset(rec.startoff),
                start: crate::types::FsBlock(rec.startblock),
                len: rec.blockcount,
                unwritten: rec.unwritten,
            };
            if e.end() <= off {
                continue;
            }
            if let Some(done) = walk.step(&e) {
                return done;
            }
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return Verdict::Unavailable("the bmbt records are out of order".to_owned());
            }
        }
    }

    /// Whether filesystem blocks `[fsb, fsb + len)` are blocks of this
    /// fork's bmbt.
    fn check_bmbt_blocks(&mut self, fsb: u64, len: u32) -> Verdict {
        match self {
            ForkMap::NoBlocks(what) => Verdict::Mismatch(format!("has no bmbt ({what})")),
            ForkMap::Unreadable(why) => Verdict::Unavailable(why.clone()),
            ForkMap::Mapped { bmbt: None, .. } => {
                Verdict::Mismatch("has no bmbt (its mappings are in extents format)".into())
            }
            ForkMap::Mapped {
                bmbt: Some(BmbtMap { tree, blocks }),
                ..
            } => {
                let set = blocks.get_or_insert_with(|| tree_blocks(tree.as_ref(), "bmbt"));
                match set {
                    Err(why) => Verdict::Unavailable(why.to_string()),
                    Ok(set) => match set.gaps(fsb, u64::from(len)).first() {
                        None => Verdict::Match,
                        Some((g, _)) => {
                            Verdict::Mismatch(format!("bmbt does not use filesystem block {g}"))
                        }
                    },
                }
            }
        }
    }
}

/// Follows a record's file range through a fork's extents, in order.
struct MappingWalk {
    /// Next file block to find.
    off: u64,
    /// One past the last file block.
    end: u64,
    /// Filesystem block that should hold `off`.
    fsb: u64,
    unwritten: bool,
}

impl MappingWalk {
    fn new(off: u64, len: u32, fsb: u64, unwritten: bool) -> Self {
        Self {
            off,
            end: off.saturating_add(u64::from(len)),
            fsb,
            unwritten,
        }
    }

    /// Takes the next extent (one that ends after `off`); `Some` when the
    /// walk is decided.
    fn step(&mut self, e: &Extent) -> Option<Verdict> {
        if e.file_offset.0 > self.off {
            return Some(Verdict::Mismatch(format!(
                "does not map file block {}",
                self.off
            )));
        }
        let into = self.off.saturating_sub(e.file_offset.0);
        let at = e.start.0.saturating_add(into);
        if at != self.fsb {
            return Some(Verdict::Mismatch(format!(
                "maps file block {} to filesystem block {at}, not {}",
                self.off, self.fsb
            )));
        }
        if e.unwritten != self.unwritten {
            return Some(Verdict::Mismatch(format!(
                "maps file block {} as {}",
                self.off,
                if e.unwritten { "unwritten" } else { "written" }
            )));
        }
        let n = e.end().min(self.end).saturating_sub(self.off);
        self.off = self.off.saturating_add(n);
        self.fsb = self.fsb.saturating_add(n);
        (self.off >= self.end).then_some(Verdict::Match)
    }

    fn finish(&self) -> Verdict {
        if self.off >= self.end {
            Verdict::Match
        } else {
            Verdict::Mismatch(format!("does not map file block {}", self.off))
        }
    }
}

/// Inobts of other AGs kept walked while checking owners.
const OTHER_AGS_KEPT: usize = 4;

/// The inode chunks of one AG, for telling whether an owner is in use.
struct AgChunks<'fs> {
    agno: u32,
    chunks: Preload<Vec<InobtRec>>,
    /// The tree, kept only when too big to preload.
    tree: Option<AgBtree<'fs, Inobt>>,
}

impl<'fs> AgChunks<'fs> {
    /// Walks the inobt of `agno` once.
    fn load(fs: &'fs Filesystem, agno: AgNumber) -> Self {
        let tree = AgContext::load(fs, agno)
            .map_err(|e| Unavailable(e.to_string()))
            .and_then(|ag| ag.inobt());
        let (mut chunks, mut n) = (Vec::new(), 0u64);
        let walk = tree.as_ref().map_err(Clone::clone).and_then(|t| {
            walk_quietly(t, "inobt", |r: &InobtRec| {
                bounded(&mut n, |r: &InobtRec| chunks.push(*r), r);
            })
        });
        let chunks = Preload::of(&walk, n, chunks);
        let tree = match chunks {
            Preload::TooBig => tree.ok(),
            _ => None,
        };
        Self {
            agno: agno.0,
            chunks,
            tree,
        }
    }
}

/// Owner inodes of rmap records: whether each is in use (inobt of its AG)
/// and its block maps, for the last few owners seen.
struct OwnerInodes<'fs> {
    fs: &'fs Filesystem,
    /// The inode chunks of the AG being scrubbed (most owners live in the
    /// AG of their blocks), then of the other AGs last consulted.
    chunks: VecDeque<AgChunks<'fs>>,
    cache: VecDeque<(u64, OwnerState<'fs>)>,
    /// The last inode cluster read (its byte offset and contents): owners
    /// of neighbouring records are often neighbours.
    inode_cluster: Option<(u64, Vec<u8>)>,
}

impl<'fs> OwnerInodes<'fs> {
    fn new(fs: &'fs Filesystem, agno: AgNumber, chunks: Preload<Vec<InobtRec>>) -> Self {
        let here = AgChunks {
            agno: agno.0,
            chunks,
            tree: None,
        };
        Self {
            fs,
            chunks: VecDeque::from([here]),
            cache: VecDeque::new(),
            inode_cluster: None,
        }
    }

    /// Reads inode `ino` through a one-cluster cache and checks what the
    /// owner check relies on: magic, CRC and self-number (the inode
    /// scrubber verifies the rest). `Err` says why it cannot be used.
    fn read_inode(&mut self, ino: Ino) -> Result<crate::fs::Inode, String> {
        use crate::format::dinode::{CRC_OFFSET, Dinode, MAGIC};
        let geo = self.fs.geometry();
        let loc = geo
            .inode_location(ino)
            .ok_or_else(|| format!("{ino} is not a valid inode number"))?;
        let base = geo
            .agb_to_daddr(loc.agno, loc.cluster_agbno)
            .and_then(|d| d.to_bytes())
            .ok_or_else(|| format!("{ino}: its cluster lies outside the filesystem"))?;
        if self.inode_cluster.as_ref().is_none_or(|(b, _)| *b != base) {
            self.inode_cluster = None;
            let len = u64::from(geo.block_size)
                .saturating_mul(u64::from(geo.inodes.blocks_per_cluster.max(1)));
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(4096)];
            self.fs
                .device()
                .read_at(&mut buf, base)
                .map_err(|e| format!("{ino}: {e}"))?;
            self.inode_cluster = Some((base, buf));
        }
        let start = usize::try_from(loc.byte_offset.saturating_sub(base)).unwrap_or(usize::MAX);
        let size = usize::try_from(geo.inode_size).unwrap_or(512);
        let raw = self
            .inode_cluster
            .as_ref()
            .and_then(|(_, b)| b.get(start..start.saturating_add(size)))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("{ino} does not fit its cluster"))?;
        let core = Dinode::from_bytes(&raw).map_err(|e| format!("{ino}: {e}"))?;
        if core.magic != MAGIC {
            return Err(format!("{ino} has a bad magic number {:#x}", core.magic));
        }
        if !crate::format::crc::verify(&raw, CRC_OFFSET) {
            return Err(format!("{ino} fails its CRC check"));
        }
        if core.ino != ino.0 {
            return Err(format!("{ino} says it is inode {}", core.ino));
        }
        Ok(crate::fs::Inode { ino, core, raw })
    }

    /// What is known of inode `ino` (a valid inode number), most recently
    /// used first.
    fn get(&mut self, ino: u64) -> Option<&mut OwnerState<'fs>> {
        let cached = self
            .cache
            .iter()
            .position(|(k, _)| *k == ino)
            .and_then(|i| self.cache.remove(i));
        let entry = match cached {
            Some(e) => e,
            None => {
                if self.cache.len() >= OWNER_CACHE {
                    self.cache.pop_back();
                }
                (ino, self.load(ino))
            }
        };
        self.cache.push_front(entry);
        self.cache.front_mut().map(|(_, s)| s)
    }

    /// The inode chunk record at or before `agino` in the inobt of `agno`.
    /// Each AG's inobt is walked once (kept for the current AG and the last
    /// few others); a damaged one is not consulted, a huge one is looked up.
    fn chunk_at(&mut self, agno: AgNumber, agino: AgIno) -> Result<Option<InobtRec>, String> {
        let pos = match self.chunks.iter().position(|c| c.agno == agno.0) {
            Some(i) => i,
            None => {
                if self.chunks.len() > OTHER_AGS_KEPT {
                    // Never the first: the AG being scrubbed stays.
                    self.chunks.remove(1);
                }
                self.chunks.push_back(AgChunks::load(self.fs, agno));
                self.chunks.len().saturating_sub(1)
            }
        };
        let Some(c) = self.chunks.get(pos) else {
            return Err(format!("the inobt of {agno} was not loaded"));
        };
        let found = match &c.chunks {
            Preload::Loaded(chunks) => {
                let i = chunks.partition_point(|c| c.startino <= agino.0);
                Ok(i.checked_sub(1).and_then(|i| chunks.get(i)).copied())
            }
            Preload::Damaged(why) => Err(why.clone()),
            Preload::TooBig => match &c.tree {
                Some(t) => t
                    .lookup(&agino.0, Lookup::Le)
                    .map_err(|e| Unavailable(e.to_string())),
                None => Err(Unavailable("the inobt could not be opened".into())),
            },
        };
        found.map_err(|u| format!("the inobt of {agno}: {u}"))
    }

    fn load(&mut self, ino: u64) -> OwnerState<'fs> {
        let fs = self.fs;
        let Some((agno, agino)) = fs.geometry().ino_split(Ino(ino)) else {
            return OwnerState::NotInUse("is not a valid inode number".into());
        };
        let chunk = self.chunk_at(agno, agino);
        match in_use(chunk, agino) {
            Ok(None) => {}
            Ok(Some(why)) => return OwnerState::NotInUse(why),
            Err(why) => return OwnerState::Unavailable(why),
        }
        let inode = match self.read_inode(Ino(ino)) {
            Ok(i) => i,
            Err(why) => return OwnerState::Unavailable(why),
        };
        if inode.core.mode == 0 {
            return OwnerState::Unavailable(format!(
                "inode {ino} is in use according to the inobt but its core is free"
            ));
        }
        let data = fork_map(fs, &inode, Fork::Data);
        let attr = fork_map(fs, &inode, Fork::Attr);
        OwnerState::InUse { data, attr }
    }
}

/// Whether the inobt says inode `agino` is in use, given the chunk record
/// at or before it: `Ok(None)` if it is, `Ok(Some(how not))` if not.
fn in_use(chunk: Result<Option<InobtRec>, String>, agino: AgIno) -> Result<Option<String>, String> {
    let Some(rec) = chunk? else {
        return Ok(Some("lies in no inode chunk of the inobt".into()));
    };
    let i = agino.0.saturating_sub(rec.startino);
    if agino.0 < rec.startino || i >= INODES_PER_CHUNK {
        return Ok(Some("lies in no inode chunk of the inobt".into()));
    }
    if !rec.exists(i) {
        return Ok(Some("lies in a sparse hole of its inode chunk".into()));
    }
    if rec.free & (1u64 << i) != 0 {
        return Ok(Some("is free according to the inobt".into()));
    }
    Ok(None)
}

/// The block map of `fork` of `inode`.
fn fork_map<'fs>(fs: &'fs Filesystem, inode: &crate::fs::Inode, fork: Fork) -> ForkMap<'fs> {
    if fork == Fork::Attr && !inode.core.has_attr_fork() {
        return ForkMap::NoBlocks("the inode has no attr fork");
    }
    let ino = inode.ino.0;
    match inode.core.fork_format(fork) {
        ForkFormat::Extents => {
            let bytes = inode.core.fork_bytes(&inode.raw, fork);
            let n = inode.core.extents(fork);
            let fits = u64::try_from(bytes.len() / bmbt_rec::SIZE).unwrap_or(0);
            if n > fits {
                return ForkMap::Unreadable(format!(
                    "inode {ino} {fork}: {n} extents do not fit the fork"
                ));
            }
            let recs: Vec<BmbtIrec> = bytes
                .chunks_exact(bmbt_rec::SIZE)
                .take(usize::try_from(n).unwrap_or(0))
                .filter_map(BmbtIrec::unpack_slice)
                .collect();
            match sorted_extents(&recs) {
                Some(v) => ForkMap::Mapped {
                    extents: Some(v),
                    bmbt: None,
                },
                None => ForkMap::Unreadable(format!(
                    "inode {ino} {fork}: extent records are empty, overlap or are out of order"
                )),
            }
        }
        ForkFormat::Btree => {
            let root = match BmdrRoot::parse(inode.core.fork_bytes(&inode.raw, fork)) {
                Ok(r) => r,
                Err(e) => return ForkMap::Unreadable(format!("inode {ino} {fork} bmbt root: {e}")),
            };
            let tree = match fs.bmbt(inode, fork, &root) {
                Ok(t) => t,
                Err(e) => return ForkMap::Unreadable(format!("inode {ino} {fork}: {e}")),
            };
            // One walk collects the bmbt's blocks and, for a bmbt of
            // moderate size, its mappings (the engine verifies a leaf on
            // every record read, so a lookup per rmap record costs more).
            // A huge one is looked up record by record instead.
            let mut recs = Vec::new();
            let mut n = 0u64;
            let set = walk_quietly(&tree, "bmbt", |r: &BmbtIrec| {
                n = n.saturating_add(1);
                if n <= MAX_LOADED_EXTENTS {
                    recs.push(*r);
                }
            });
            let set = match set {
                Ok(set) => set,
                Err(why) => return ForkMap::Unreadable(format!("inode {ino} {fork}: {why}")),
            };
            let extents = if n <= MAX_LOADED_EXTENTS {
                match sorted_extents(&recs) {
                    Some(v) => Some(v),
                    None => {
                        return ForkMap::Unreadable(format!(
                            "inode {ino} {fork}: bmbt records are empty, overlap or are out of order"
                        ));
                    }
                }
            } else {
                None
            };
            ForkMap::Mapped {
                extents,
                bmbt: Some(BmbtMap {
                    tree: Box::new(tree),
                    blocks: Some(Ok(set)),
                }),
            }
        }
        ForkFormat::Local => ForkMap::NoBlocks("its contents are inside the inode"),
        ForkFormat::Dev => ForkMap::NoBlocks("it is a device file"),
        _ => ForkMap::Unreadable(format!("inode {ino} {fork} has an invalid format")),
    }
}

/// Bmbt records as extents, if they are non-empty, sorted and do not
/// overlap (anything else is the bmap scrubber's to report).
fn sorted_extents(recs: &[BmbtIrec]) -> Option<Vec<Extent>> {
    let mut out = Vec::with_capacity(recs.len());
    let mut end = 0u64;
    for r in recs {
        if r.blockcount == 0 || r.startoff < end {
            return None;
        }
        end = r.startoff.checked_add(u64::from(r.blockcount))?;
        out.push(Extent {
            file_offset: crate::types::FileOffset(r.startoff),
            start: crate::types::FsBlock(r.startblock),
            len: r.blockcount,
            unwritten: r.unwritten,
        });
    }
    Some(out)
}

/// Records kept in memory per tree for cross-referencing without a tree
/// lookup per rmap record; a bigger tree is asked record by record instead.
const MAX_PRELOAD_RECORDS: u64 = 1 << 18;

/// The AG's other btrees, each walked once before the rmapbt: the blocks
/// they use (to compare with the rmapbt's metadata owners) and, for sound
/// trees of reasonable size, what their records say as block sets, so that
/// each rmap record is cross-referenced by a set lookup. A set left `None`
/// (tree damaged or too big) sends the question to the tree itself through
/// [`Xref`], record by record.
pub(super) struct AgMaps {
    bnobt_blocks: Result<ExtentBitmap, Unavailable>,
    cntbt_blocks: Result<ExtentBitmap, Unavailable>,
    /// inobt and finobt blocks.
    inobt_blocks: Result<ExtentBitmap, Unavailable>,
    refcountbt_blocks: Result<ExtentBitmap, Unavailable>,
    /// Free blocks (bnobt).
    free: Preload<ExtentBitmap>,
    /// Blocks holding inodes (inobt).
    inodes: Preload<ExtentBitmap>,
    /// The inode chunks of this AG, in order (inobt).
    chunks: Preload<Vec<InobtRec>>,
    /// Shared blocks (refcountbt).
    shared: Preload<ExtentBitmap>,
    /// CoW staging blocks with refcount 1 (refcountbt).
    cow: Preload<ExtentBitmap>,
}

/// What a tree's records say, loaded before the walk.
enum Preload<T> {
    /// The tree was walked whole and found sound.
    Loaded(T),
    /// Too many records to hold: ask the tree record by record.
    TooBig,
    /// The tree could not be opened or walked soundly: no cross-reference
    /// with it (reported once as `xref-failed`), as the kernel drops a
    /// cursor that met corruption. Its own scrubber reports the damage.
    Damaged(Unavailable),
}

impl<T> Preload<T> {
    /// The preload of a tree whose walk gave `walk` after `records` records.
    fn of(walk: &Result<ExtentBitmap, Unavailable>, records: u64, value: T) -> Self {
        match walk {
            Err(why) => Preload::Damaged(why.clone()),
            Ok(_) if records > MAX_PRELOAD_RECORDS => Preload::TooBig,
            Ok(_) => Preload::Loaded(value),
        }
    }
}

/// Counts a record and feeds it to `f` while no more than
/// [`MAX_PRELOAD_RECORDS`] were seen.
fn bounded<R>(count: &mut u64, f: impl FnOnce(&R), r: &R) {
    *count = count.saturating_add(1);
    if *count <= MAX_PRELOAD_RECORDS {
        f(r);
    }
}

impl AgMaps {
    /// Walks the AG's trees; with `full`, also those only the rmapbt
    /// comparison needs (cntbt, finobt, refcountbt).
    pub(super) fn load(ag: &AgContext<'_>, xref: &Xref<'_>, full: bool) -> Self {
        let geo = ag.fs.geometry();
        let mut free = ExtentBitmap::new();
        let mut n = 0u64;
        let bnobt_blocks = xref.bnobt.as_ref().map_err(Clone::clone).and_then(|t| {
            walk_quietly(t, "bnobt", |r| {
                bounded(
                    &mut n,
                    |r: &crate::format::btree::alloc::AllocRec| {
                        free.set(u64::from(r.startblock), u64::from(r.blockcount));
                    },
                    r,
                );
            })
        });
        let free = Preload::of(&bnobt_blocks, n, free);
        let cntbt_blocks = if full {
            ag.cntbt().and_then(|t| tree_blocks(&t, "cntbt"))
        } else {
            Err(Unavailable("not walked".into()))
        };

        let (mut inodes, mut chunks, mut n) = (ExtentBitmap::new(), Vec::new(), 0u64);
        let inobt_blocks = xref.inobt.as_ref().map_err(Clone::clone).and_then(|t| {
            let mut b = walk_quietly(t, "inobt", |r| {
                bounded(
                    &mut n,
                    |r: &InobtRec| {
                        inodes.union(&chunk_blocks(geo, r).0);
                        chunks.push(*r);
                    },
                    r,
                );
            })?;
            if full && geo.features.has_finobt() {
                b.union(&tree_blocks(&ag.finobt()?, "finobt")?);
            }
            Ok(b)
        });
        let inodes = Preload::of(&inobt_blocks, n, inodes);
        let chunks = Preload::of(&inobt_blocks, n, chunks);

        let (mut shared, mut cow, mut n) = (ExtentBitmap::new(), ExtentBitmap::new(), 0u64);
        let refcountbt_blocks = if !full {
            Err(Unavailable("not walked".into()))
        } else if geo.features.has_reflink() {
            xref.refcountbt
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|t| {
                    walk_quietly(t, "refcountbt", |r| {
                        bounded(
                            &mut n,
                            |r: &crate::format::btree::refcount::RefcountRec| {
                                let (s, l) = (u64::from(r.startblock), u64::from(r.blockcount));
                                if !r.cow {
                                    shared.set(s, l);
                                } else if r.refcount == 1 {
                                    cow.set(s, l);
                                }
                            },
                            r,
                        );
                    })
                })
        } else {
            Ok(ExtentBitmap::new())
        };
        let (shared, cow) = if full && geo.features.has_reflink() {
            (
                Preload::of(&refcountbt_blocks, n, shared),
                Preload::of(&refcountbt_blocks, n, cow),
            )
        } else {
            (Preload::TooBig, Preload::TooBig)
        };
        Self {
            bnobt_blocks,
            cntbt_blocks,
            inobt_blocks,
            refcountbt_blocks,
            free,
            inodes,
            chunks,
            shared,
            cow,
        }
    }

    /// The first run of free blocks (bnobt) in `[start, start + len)`.
    pub(super) fn free_run(
        &self,
        xref: &Xref<'_>,
        start: u64,
        len: u64,
    ) -> Result<Option<(u64, u64)>, Unavailable> {
        match &self.free {
            Preload::Loaded(free) => return Ok(free.runs_in(start, len).next()),
            Preload::Damaged(why) => return Err(why.clone()),
            Preload::TooBig => {}
        }
        let (Ok(s), Ok(l)) = (u32::try_from(start), u32::try_from(len)) else {
            return Ok(None);
        };
        Ok(xref.free_overlaps(s, l)?.first().map(|f| {
            let fs = u64::from(f.startblock).max(start);
            let fe = u64::from(f.startblock)
                .saturating_add(u64::from(f.blockcount))
                .min(start.saturating_add(len));
            (fs, fe.saturating_sub(fs))
        }))
    }

    /// How much of `[start, start + len)` holds inodes (inobt).
    pub(super) fn inodes(
        &self,
        xref: &Xref<'_>,
        start: u64,
        len: u64,
    ) -> Result<Coverage, Unavailable> {
        match &self.inodes {
            Preload::Loaded(inodes) => return Ok(inodes.coverage(start, len)),
            Preload::Damaged(why) => return Err(why.clone()),
            Preload::TooBig => {}
        }
        let (Ok(s), Ok(l)) = (u32::try_from(start), u32::try_from(len)) else {
            return Ok(Coverage::None);
        };
        xref.inode_coverage(s, l)
    }

    /// The blocks of `[start, start + len)` the refcountbt records as shared
    /// (or, with `cow`, as CoW staging extents with refcount 1).
    pub(super) fn refcounts(
        &self,
        xref: &Xref<'_>,
        start: u64,
        len: u64,
        cow: bool,
    ) -> Result<ExtentBitmap, Unavailable> {
        match if cow { &self.cow } else { &self.shared } {
            Preload::Loaded(set) => return Ok(set.runs_in(start, len).collect()),
            Preload::Damaged(why) => return Err(why.clone()),
            Preload::TooBig => {}
        }
        let (Ok(s), Ok(l)) = (u32::try_from(start), u32::try_from(len)) else {
            return Ok(ExtentBitmap::new());
        };
        Ok(xref
            .refcount_overlaps(s, l, cow)?
            .iter()
            .filter(|rc| !cow || rc.refcount == 1)
            .map(|rc| (u64::from(rc.startblock), u64::from(rc.blockcount)))
            .collect())
    }

    /// The blocks each AG metadata owner really uses
    /// (`xchk_rmapbt_walk_ag_metadata`).
    pub(super) fn metadata(
        &self,
        ag: &AgContext<'_>,
        rmapbt_blocks: &ExtentBitmap,
    ) -> MetadataBlocks {
        let geo = ag.fs.geometry();
        let mut fs = ExtentBitmap::new();
        fs.set(0, u64::from(geo.ag_header_last_block).saturating_add(1));
        let mut log = ExtentBitmap::new();
        if geo.log.agno == ag.agno && geo.log.blocks > 0 {
            log.set(u64::from(geo.log.agbno.0), u64::from(geo.log.blocks));
        }
        let ag_owned = (|| {
            let mut b = rmapbt_blocks.clone();
            b.union(self.bnobt_blocks.as_ref().map_err(Clone::clone)?);
            b.union(self.cntbt_blocks.as_ref().map_err(Clone::clone)?);
            for agbno in ag.agfl_blocks()? {
                b.set(u64::from(agbno), 1);
            }
            Ok(b)
        })();
        MetadataBlocks {
            fs,
            log,
            ag: ag_owned,
            inobt: self.inobt_blocks.clone(),
            refc: self.refcountbt_blocks.clone(),
        }
    }
}

/// The blocks each AG metadata owner really uses; `Err` for an owner whose
/// structures could not all be walked.
pub(super) struct MetadataBlocks {
    pub(super) fs: ExtentBitmap,
    pub(super) log: ExtentBitmap,
    pub(super) ag: Result<ExtentBitmap, Unavailable>,
    pub(super) inobt: Result<ExtentBitmap, Unavailable>,
    pub(super) refc: Result<ExtentBitmap, Unavailable>,
}

/// Compares the rmapbt's metadata owners with the blocks that metadata
/// uses (`xchk_rmapbt_mark_bitmap`, `xchk_rmapbt_check_bitmaps`). Blocks
/// the rmapbt gives an owner that does not use them are always reported;
/// blocks an owner uses that the rmapbt does not give it only when the
/// walk saw every record (otherwise a skipped record would be blamed).
fn compare_owners(
    ag: &AgContext<'_>,
    owned: &OwnerBlocks,
    expected: &MetadataBlocks,
    clean_walk: bool,
    failures: &mut XrefFailures,
    out: &mut Findings,
) {
    let g = ag.group();
    let classes: [(
        &str,
        &str,
        &ExtentBitmap,
        Result<&ExtentBitmap, &Unavailable>,
    ); 5] = [
        ("fs", "the AG headers", &owned.fs, Ok(&expected.fs)),
        ("log", "the internal log", &owned.log, Ok(&expected.log)),
        (
            "ag",
            "the free-space btrees, the rmapbt and the AGFL",
            &owned.ag,
            expected.ag.as_ref(),
        ),
        (
            "inobt",
            "the inode btrees",
            &owned.inobt,
            expected.inobt.as_ref(),
        ),
        (
            "refcount",
            "the refcountbt",
            &owned.refc,
            expected.refc.as_ref(),
        ),
    ];
    for (name, what, have, want) in classes {
        let want = match want {
            Ok(w) => w,
            Err(why) => {
                failures.report(NAME, g, "ag-metadata", why, out);
                continue;
            }
        };
        let mut extra = have.clone();
        extra.subtract(want);
        report_runs(&extra, out, |s, l| {
            xref_corrupt(
                NAME,
                g,
                "owner-extra",
                format!(
                    "the rmapbt gives {} to owner {name}, but {what} do not use them",
                    blocks(s, l)
                ),
            )
            .field("owner", name, name)
        });
        if clean_walk {
            let mut missing = want.clone();
            missing.subtract(have);
            report_runs(&missing, out, |s, l| {
                xref_corrupt(
                    NAME,
                    g,
                    "owner-missing",
                    format!(
                        "{} belong to {what}, but the rmapbt does not give them to owner {name}",
                        blocks(s, l)
                    ),
                )
                .field("owner", name, name)
            });
        }
    }
}

/// Reports the first runs of `b` with `finding`, then how many more there
/// were.
pub(super) fn report_runs(
    b: &ExtentBitmap,
    out: &mut Findings,
    finding: impl Fn(u64, u64) -> Finding,
) {
    let mut n = 0usize;
    let mut rest_blocks = 0u64;
    let mut first_finding: Option<Finding> = None;
    for (s, l) in b.runs() {
        n = n.saturating_add(1);
        if n <= MAX_RUNS_REPORTED {
            let f = finding(s, l);
            if first_finding.is_none() {
                first_finding = Some(f.clone());
            }
            out.push(f);
        } else {
            rest_blocks = rest_blocks.saturating_add(l);
        }
    }
    if let Some(first) = first_finding
        && n > MAX_RUNS_REPORTED
    {
        out.push(Finding {
            message: format!(
                "{} more runs like the above ({rest_blocks} blocks) not listed",
                n.saturating_sub(MAX_RUNS_REPORTED)
            ),
            field: None,
            expected: None,
            actual: None,
            ..first
        });
    }
}
