//! Cross-referencing within an AG: the headers and the other btrees, as
//! the scrubbers of one structure consult them.
//!
//! Every query answers from the on-disk trees through the btree engine.
//! A tree whose header pointer is unusable, or whose blocks the engine
//! finds corrupt on the query's path, makes the query fail with
//! [`Unavailable`]; the caller reports that once as `xref-failed` and goes
//! on ("cross-referencing failed" is not "corrupt").

use crate::btree::AgBtree;
use crate::format::Checked;
use crate::format::agf::Agf;
use crate::format::agi::Agi;
use crate::format::btree::alloc::{AllocRec, BnoKey, Bnobt, Cntbt};
use crate::format::btree::ialloc::{INODES_PER_CHUNK, Inobt, InobtRec};
use crate::format::btree::refcount::{COW_FLAG, RefcountRec, Refcountbt};
use crate::format::btree::rmap::{RmapKey, RmapRec, Rmapbt};
use crate::fs::Filesystem;
use crate::types::{AgBlock, AgIno, AgNumber};
use scrub::{Coverage, ExtentBitmap, ScrubError};
use std::fmt;
use std::ops::ControlFlow;
use xfbtree::{BtreeError, Lookup};

/// Why a cross-reference could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<BtreeError> for Unavailable {
    fn from(e: BtreeError) -> Self {
        Unavailable(e.to_string())
    }
}

/// One AG's headers, read once, and its btrees on demand.
pub(crate) struct AgContext<'fs> {
    pub fs: &'fs Filesystem,
    pub agno: AgNumber,
    /// The AGF as read, with its verifier's problems; `None` if its magic
    /// number is wrong (nothing in it can be trusted).
    pub agf: Option<Checked<Agf>>,
    /// The AGI likewise.
    pub agi: Option<Checked<Agi>>,
}

impl<'fs> AgContext<'fs> {
    /// Reads the AG headers. Only I/O failure is an error.
    pub fn load(fs: &'fs Filesystem, agno: AgNumber) -> Result<Self, ScrubError> {
        let agf = fs.read_agf(agno).map_err(ScrubError::operational)?;
        let agi = fs.read_agi(agno).map_err(ScrubError::operational)?;
        let agf = (agf.value.magicnum == crate::format::agf::MAGIC).then_some(agf);
        let agi = (agi.value.magicnum == crate::format::agi::MAGIC).then_some(agi);
        Ok(Self { fs, agno, agf, agi })
    }

    /// Group number for findings.
    pub fn group(&self) -> u32 {
        self.agno.0
    }

    fn agf(&self) -> Result<&Agf, Unavailable> {
        self.agf
            .as_ref()
            .map(|c| &c.value)
            .ok_or_else(|| Unavailable("the AGF has a bad magic number".into()))
    }

    fn agi(&self) -> Result<&Agi, Unavailable> {
        self.agi
            .as_ref()
            .map(|c| &c.value)
            .ok_or_else(|| Unavailable("the AGI has a bad magic number".into()))
    }

    /// Checks that a header's root pointer and level can be followed.
    fn root_ok(&self, what: &str, root: u32, level: u32, max: u32) -> Result<(), Unavailable> {
        if !self.fs.geometry().verify_agbno(self.agno, AgBlock(root)) {
            return Err(Unavailable(format!(
                "the {what} root {root} is not a valid AG block"
            )));
        }
        if level == 0 || level > max {
            return Err(Unavailable(format!(
                "the {what} height {level} is not in 1..={max}"
            )));
        }
        Ok(())
    }

    /// The bnobt, if the AGF points at it usably.
    pub fn bnobt(&self) -> Result<AgBtree<'fs, Bnobt>, Unavailable> {
        let agf = self.agf()?;
        self.root_ok(
            "bnobt",
            agf.bno_root,
            agf.bno_level,
            self.fs.geometry().maxlevels.alloc,
        )?;
        self.fs
            .bnobt(self.agno, agf)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The cntbt, if the AGF points at it usably.
    pub fn cntbt(&self) -> Result<AgBtree<'fs, Cntbt>, Unavailable> {
        let agf = self.agf()?;
        self.root_ok(
            "cntbt",
            agf.cnt_root,
            agf.cnt_level,
            self.fs.geometry().maxlevels.alloc,
        )?;
        self.fs
            .cntbt(self.agno, agf)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The rmapbt, if the filesystem has one and the AGF points at it usably.
    pub fn rmapbt(&self) -> Result<AgBtree<'fs, Rmapbt>, Unavailable> {
        if !self.fs.geometry().features.has_rmapbt() {
            return Err(Unavailable(
                "the filesystem has no reverse-mapping btree".into(),
            ));
        }
        let agf = self.agf()?;
        self.root_ok(
            "rmapbt",
            agf.rmap_root,
            agf.rmap_level,
            self.fs.geometry().maxlevels.rmap,
        )?;
        self.fs
            .rmapbt(self.agno, agf)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The refcountbt, if the filesystem has reflink and the AGF points at
    /// it usably.
    pub fn refcountbt(&self) -> Result<AgBtree<'fs, Refcountbt>, Unavailable> {
        if !self.fs.geometry().features.has_reflink() {
            return Err(Unavailable(
                "the filesystem has no reference count btree".into(),
            ));
        }
        let agf = self.agf()?;
        self.root_ok(
            "refcountbt",
            agf.refcount_root,
            agf.refcount_level,
            self.fs.geometry().maxlevels.refcount,
        )?;
        self.fs
            .refcountbt(self.agno, agf)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The inobt, if the AGI points at it usably.
    pub fn inobt(&self) -> Result<AgBtree<'fs, Inobt>, Unavailable> {
        let agi = self.agi()?;
        self.root_ok(
            "inobt",
            agi.root,
            agi.level,
            self.fs.geometry().maxlevels.inobt,
        )?;
        self.fs
            .inobt(self.agno, agi)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The finobt, if the filesystem has one and the AGI points at it usably.
    pub fn finobt(&self) -> Result<AgBtree<'fs, Inobt>, Unavailable> {
        if !self.fs.geometry().features.has_finobt() {
            return Err(Unavailable("the filesystem has no free inode btree".into()));
        }
        let agi = self.agi()?;
        self.root_ok(
            "finobt",
            agi.free_root,
            agi.free_level,
            self.fs.geometry().maxlevels.inobt,
        )?;
        self.fs
            .finobt(self.agno, agi)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The AG blocks on the free list, as the AGF's ring says (slots whose
    /// block number is not a valid AG block are left out).
    pub fn agfl_blocks(&self) -> Result<Vec<u32>, Unavailable> {
        let agf = self.agf()?;
        let agfl = self
            .fs
            .read_agfl(self.agno, Some(agf))
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(agfl
            .value
            .active(agf)
            .into_iter()
            .map(|(_, b)| b)
            .filter(|b| self.fs.geometry().verify_agbno(self.agno, AgBlock(*b)))
            .collect())
    }
}

/// Free-space, ownership, inode-chunk and sharing queries over a range of
/// AG blocks. Each holds the tree it needs, opened once per scrub item.
pub(crate) struct Xref<'fs> {
    pub bnobt: Result<AgBtree<'fs, Bnobt>, Unavailable>,
    pub rmapbt: Result<AgBtree<'fs, Rmapbt>, Unavailable>,
    pub inobt: Result<AgBtree<'fs, Inobt>, Unavailable>,
    pub refcountbt: Result<AgBtree<'fs, Refcountbt>, Unavailable>,
    fs: &'fs Filesystem,
}

impl<'fs> Xref<'fs> {
    /// Opens every tree a cross-reference may need.
    pub fn new(ag: &AgContext<'fs>) -> Self {
        Self {
            bnobt: ag.bnobt(),
            rmapbt: ag.rmapbt(),
            inobt: ag.inobt(),
            refcountbt: ag.refcountbt(),
            fs: ag.fs,
        }
    }

    /// Free-space records (bnobt) that overlap `[agbno, agbno + len)`.
    pub fn free_overlaps(&self, agbno: u32, len: u32) -> Result<Vec<AllocRec>, Unavailable> {
        let t = self.bnobt.as_ref().map_err(Clone::clone)?;
        let end = u64::from(agbno) + u64::from(len);
        let key = BnoKey(AllocRec {
            startblock: agbno,
            blockcount: 0,
        });
        let mut out = Vec::new();
        if let Some(prev) = t.lookup(&key, Lookup::Le)?
            && prev.startblock < agbno
            && u64::from(prev.startblock) + u64::from(prev.blockcount) > u64::from(agbno)
        {
            out.push(prev);
        }
        let mut c = t.cursor(&key, Lookup::Ge)?;
        while let Some(r) = c.next_record()? {
            if u64::from(r.startblock) >= end {
                break;
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Reverse mappings that overlap `[agbno, agbno + len)`, any owner.
    pub fn rmap_overlaps(&self, agbno: u32, len: u32) -> Result<Vec<RmapRec>, Unavailable> {
        let t = self.rmapbt.as_ref().map_err(Clone::clone)?;
        let last = agbno.saturating_add(len.saturating_sub(1));
        let mut out = Vec::new();
        t.query_overlapping(&RmapKey::min_at(agbno), &RmapKey::max_at(last), |r| {
            out.push(*r);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// How much of `[agbno, agbno + len)` the rmapbt gives to `owner`
    /// (with `flags` the offset-word flags the mappings must carry, for
    /// file owners).
    pub fn rmap_owner_coverage(
        &self,
        agbno: u32,
        len: u32,
        owner: u64,
    ) -> Result<Coverage, Unavailable> {
        let mut b = ExtentBitmap::new();
        for r in self.rmap_overlaps(agbno, len)? {
            if r.owner == owner {
                b.set(u64::from(r.startblock), u64::from(r.blockcount));
            }
        }
        Ok(b.coverage(u64::from(agbno), u64::from(len)))
    }

    /// Inode chunk records whose blocks overlap `[agbno, agbno + len)`.
    /// (A sparse chunk's records are returned whole; its holes are the
    /// caller's to look at.)
    pub fn inode_chunks(&self, agbno: u32, len: u32) -> Result<Vec<InobtRec>, Unavailable> {
        let t = self.inobt.as_ref().map_err(Clone::clone)?;
        let geo = self.fs.geometry();
        let Some(first) = geo.agbno_to_agino(AgBlock(agbno)) else {
            return Ok(Vec::new());
        };
        let end_block = u64::from(agbno) + u64::from(len);
        let last = u32::try_from(end_block)
            .ok()
            .and_then(|e| geo.agbno_to_agino(AgBlock(e)))
            .map_or(u32::MAX, |AgIno(a)| a);
        let mut out = Vec::new();
        // A chunk starting up to 63 inodes before `first` may still cover it.
        let from = first.0.saturating_sub(INODES_PER_CHUNK - 1);
        let mut c = t.cursor(&from, Lookup::Ge)?;
        while let Some(r) = c.next_record()? {
            if r.startino >= last {
                break;
            }
            if u64::from(r.startino) + u64::from(INODES_PER_CHUNK) > u64::from(first.0) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Reference count records (shared, or with `cow` CoW staging) that
    /// overlap `[agbno, agbno + len)`.
    pub fn refcount_overlaps(
        &self,
        agbno: u32,
        len: u32,
        cow: bool,
    ) -> Result<Vec<RefcountRec>, Unavailable> {
        let t = self.refcountbt.as_ref().map_err(Clone::clone)?;
        let flag = if cow { COW_FLAG } else { 0 };
        let start = (agbno & !COW_FLAG) | flag;
        let end = u64::from(agbno) + u64::from(len);
        let mut out = Vec::new();
        if let Some(prev) = t.lookup(&start, Lookup::Le)?
            && prev.cow == cow
            && prev.startblock < agbno
            && u64::from(prev.startblock) + u64::from(prev.blockcount) > u64::from(agbno)
        {
            out.push(prev);
        }
        let mut c = t.cursor(&start, Lookup::Ge)?;
        while let Some(r) = c.next_record()? {
            if r.cow != cow || u64::from(r.startblock) >= end {
                break;
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// What one verified count of a btree found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TreeTally {
    /// Blocks of the tree (the root included).
    pub blocks: u64,
    /// Records of the tree.
    pub records: u64,
}

/// Counts blocks and records and remembers the first structural problem.
struct TallyVisitor<R> {
    on_record: R,
    tally: TreeTally,
    first_problem: Option<String>,
}

impl<F, R> xfbtree::verify::Visitor<F> for TallyVisitor<R>
where
    F: xfbtree::BtreeFormat,
    R: FnMut(&F::Record),
{
    fn block(&mut self, _addr: xfbtree::BlockAddr, _level: u16, _bytes: &[u8]) {
        self.tally.blocks = self.tally.blocks.saturating_add(1);
    }

    fn record(&mut self, record: &F::Record, _at: xfbtree::verify::RecordLoc) {
        self.tally.records = self.tally.records.saturating_add(1);
        (self.on_record)(record);
    }

    fn problem(&mut self, problem: xfbtree::verify::Problem) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem.to_string());
        }
    }
}

/// Counts the blocks of `tree` (called `name` in messages) and shows each
/// record to `on_record`, in one walk of the engine's verifier, so the
/// walk is bounded by the AG's size whatever the pointers say.
///
/// A header counter can only be compared with a tree that is sound: a tree
/// with any structural problem is [`Unavailable`] (its own scrubber reports
/// the damage; the caller reports `xref-failed`).
pub(crate) fn tally_tree<S, F, R>(
    tree: &xfbtree::Btree<S, F>,
    name: &str,
    on_record: R,
) -> Result<TreeTally, Unavailable>
where
    S: xfbtree::BlockStore,
    F: xfbtree::BtreeFormat,
    R: FnMut(&F::Record),
{
    let mut v = TallyVisitor {
        on_record,
        tally: TreeTally::default(),
        first_problem: None,
    };
    tree.verify(&mut v);
    match v.first_problem {
        Some(p) => Err(Unavailable(format!("the {name} is damaged ({p})"))),
        None => Ok(v.tally),
    }
}

/// Which trees a scrub item has found sound by walking them in full.
///
/// A damaged tree (say, a node with wrong keys) answers queries wrongly,
/// so a disagreement with a tree is only reported once the tree is known
/// to be sound; otherwise cross-referencing it failed, and the tree's own
/// scrubber reports its damage. Trees are walked lazily, on the first
/// disagreement, so an AG where everything agrees costs no walk; a caller
/// that walked a tree anyway records the result.
#[derive(Debug, Default)]
pub(crate) struct Vetting {
    known: Vec<(&'static str, Result<(), Unavailable>)>,
}

impl Vetting {
    /// Records what the caller's own walk of `tree` found.
    pub fn record(&mut self, tree: &'static str, sound: Result<(), Unavailable>) {
        self.known.retain(|(n, _)| *n != tree);
        self.known.push((tree, sound));
    }

    /// Whether `tree` (called `name`) is sound, walking it once if not
    /// yet known.
    pub fn sound<S, F>(
        &mut self,
        name: &'static str,
        tree: &Result<xfbtree::Btree<S, F>, Unavailable>,
    ) -> Result<(), Unavailable>
    where
        S: xfbtree::BlockStore,
        F: xfbtree::BtreeFormat,
    {
        if let Some((_, r)) = self.known.iter().find(|(n, _)| *n == name) {
            return r.clone();
        }
        let r = match tree {
            Ok(t) => tally_tree(t, name, |_| {}).map(|_| ()),
            Err(e) => Err(e.clone()),
        };
        self.known.push((name, r.clone()));
        r
    }

    /// Pushes `finding` (a disagreement with `name`) if the tree is sound,
    /// else reports once that `name` could not be cross-referenced.
    #[allow(clippy::too_many_arguments)]
    pub fn confirm<S, F>(
        &mut self,
        name: &'static str,
        tree: &Result<xfbtree::Btree<S, F>, Unavailable>,
        structure: &'static str,
        group: u32,
        finding: scrub::Finding,
        failures: &mut crate::scrub::common::XrefFailures,
        out: &mut scrub::Findings,
    ) where
        S: xfbtree::BlockStore,
        F: xfbtree::BtreeFormat,
    {
        match self.sound(name, tree) {
            Ok(()) => out.push(finding),
            Err(e) => failures.report(structure, group, name, e, out),
        }
    }
}

impl Xref<'_> {
    /// Cross-references `len` AG blocks from `agbno`, which hold `what`
    /// (e.g. "the AGF") and belong to `owner` alone: they must not be free
    /// space, inode chunks, shared or CoW staging, and the rmapbt must give
    /// all of them to `owner` and to nobody else (the kernel's
    /// `xchk_xref_is_used_space`, `_is_not_inode_chunk`,
    /// `_is_only_owned_by`, `_is_not_shared` and `_is_not_cow_staging`).
    ///
    /// Disagreements are `xref-corrupt` findings of `structure` at
    /// `agbno`, reported once `vetting` finds the other tree sound; a tree
    /// that cannot be consulted is reported once through `failures`. Trees
    /// the filesystem does not have are not consulted.
    #[allow(clippy::too_many_arguments)]
    pub fn check_owned_extent(
        &self,
        structure: &'static str,
        group: u32,
        agbno: u32,
        len: u32,
        owner: u64,
        what: &str,
        vetting: &mut Vetting,
        failures: &mut crate::scrub::common::XrefFailures,
        out: &mut scrub::Findings,
    ) {
        use crate::scrub::common::xref_corrupt;
        let geo = self.fs.geometry();
        let features = geo.features;
        let end = u64::from(agbno).saturating_add(u64::from(len));
        let span = if len == 1 {
            format!("AG block {agbno}")
        } else {
            format!("AG blocks {agbno}..{end}")
        };

        let at = |code: &str, msg: String| {
            xref_corrupt(structure, group, code, msg).block(u64::from(agbno))
        };

        match self.free_overlaps(agbno, len) {
            Ok(free) => {
                if let Some(r) = free.first() {
                    let msg = format!(
                        "{what} ({span}) is also recorded as free space by the bnobt \
                         (free extent of {} blocks at AG block {})",
                        r.blockcount, r.startblock
                    );
                    let f = at("free-space", msg);
                    vetting.confirm("bnobt", &self.bnobt, structure, group, f, failures, out);
                }
            }
            Err(e) => failures.report(structure, group, "bnobt", e, out),
        }

        match self.inode_chunks(agbno, len) {
            Ok(chunks) => {
                let hit = chunks.iter().find(|c| {
                    (0..INODES_PER_CHUNK).any(|i| {
                        c.exists(i)
                            && c.startino.checked_add(i).is_some_and(|agino| {
                                let b = u64::from(geo.agino_to_agbno(AgIno(agino)).0);
                                b >= u64::from(agbno) && b < end
                            })
                    })
                });
                if let Some(c) = hit {
                    let msg = format!(
                        "{what} ({span}) lies inside the inode chunk starting at AG inode {} \
                         according to the inobt",
                        c.startino
                    );
                    let f = at("inode-chunk", msg);
                    vetting.confirm("inobt", &self.inobt, structure, group, f, failures, out);
                }
            }
            Err(e) => failures.report(structure, group, "inobt", e, out),
        }

        if features.has_rmapbt() {
            match self.rmap_overlaps(agbno, len) {
                Ok(maps) => {
                    let mut mine = ExtentBitmap::new();
                    let mut other = None;
                    for r in &maps {
                        if r.owner == owner {
                            mine.set(u64::from(r.startblock), u64::from(r.blockcount));
                        } else if other.is_none() {
                            other = Some(*r);
                        }
                    }
                    let f = if let Some(r) = other {
                        let r_end = u64::from(r.startblock).saturating_add(u64::from(r.blockcount));
                        Some(at(
                            "rmap-owner",
                            format!(
                                "the rmapbt gives AG blocks {}..{r_end} to {}, but {what} ({span}) \
                                 belongs to {}",
                                r.startblock,
                                crate::scrub::common::owner_name(r.owner),
                                crate::scrub::common::owner_name(owner)
                            ),
                        ))
                    } else if mine.coverage(u64::from(agbno), u64::from(len)) != Coverage::Full {
                        Some(at(
                            "rmap-missing",
                            format!(
                                "the rmapbt does not record {what} ({span}) as owned by {}",
                                crate::scrub::common::owner_name(owner)
                            ),
                        ))
                    } else {
                        None
                    };
                    if let Some(f) = f {
                        vetting.confirm("rmapbt", &self.rmapbt, structure, group, f, failures, out);
                    }
                }
                Err(e) => failures.report(structure, group, "rmapbt", e, out),
            }
        }

        if features.has_reflink() {
            for cow in [false, true] {
                match self.refcount_overlaps(agbno, len, cow) {
                    Ok(recs) => {
                        if let Some(r) = recs.first() {
                            let (code, how) = if cow {
                                ("cow", "CoW staging space")
                            } else {
                                ("shared", "shared")
                            };
                            let msg = format!(
                                "the refcountbt records {} blocks at AG block {} as {how}, \
                                 overlapping {what} ({span})",
                                r.blockcount, r.startblock
                            );
                            let f = at(code, msg);
                            vetting.confirm(
                                "refcountbt",
                                &self.refcountbt,
                                structure,
                                group,
                                f,
                                failures,
                                out,
                            );
                        }
                    }
                    Err(e) => failures.report(structure, group, "refcountbt", e, out),
                }
            }
        }
    }
}

impl Xref<'_> {
    /// Where the rmapbt does not give `[agbno, agbno + len)` to `owner`
    /// alone (`xchk_xref_is_only_owned_by`): the blocks not mapped to
    /// `owner`, and the blocks (also) mapped to another owner, with the
    /// first such owner seen.
    pub fn rmap_not_only_owner(
        &self,
        agbno: u32,
        len: u32,
        owner: u64,
    ) -> Result<(ExtentBitmap, ExtentBitmap, Option<u64>), Unavailable> {
        let mut own = ExtentBitmap::new();
        let mut others = ExtentBitmap::new();
        let mut other = None;
        for r in self.rmap_overlaps(agbno, len)? {
            if r.owner == owner {
                own.set(u64::from(r.startblock), u64::from(r.blockcount));
            } else {
                other.get_or_insert(r.owner);
                others.set(u64::from(r.startblock), u64::from(r.blockcount));
            }
        }
        let mut missing = ExtentBitmap::new();
        missing.set(u64::from(agbno), u64::from(len));
        missing.subtract(&own);
        let mut foreign = ExtentBitmap::new();
        for (s, l) in others.runs_in(u64::from(agbno), u64::from(len)) {
            foreign.set(s, l);
        }
        Ok((missing, foreign, other))
    }
}

/// The AG blocks of an inode chunk record: those holding inodes that exist,
/// and those covered only by the chunk's holes (sparse chunks). Inode
/// numbers past the 32-bit AG inode space are left out.
pub(crate) fn chunk_blocks(
    geo: &crate::geometry::Geometry,
    rec: &InobtRec,
) -> (ExtentBitmap, ExtentBitmap) {
    use crate::format::btree::ialloc::INODES_PER_HOLEMASK_BIT;
    let mut exist = ExtentBitmap::new();
    let mut holes = ExtentBitmap::new();
    let shift = u32::from(geo.inopb_log);
    for bit in 0..(INODES_PER_CHUNK / INODES_PER_HOLEMASK_BIT) {
        let first = u64::from(rec.startino) + u64::from(bit * INODES_PER_HOLEMASK_BIT);
        let last = first + u64::from(INODES_PER_HOLEMASK_BIT - 1);
        if last > u64::from(u32::MAX) {
            break;
        }
        let (b0, b1) = (first >> shift, last >> shift);
        let target = if rec.holemask & (1 << bit) != 0 {
            &mut holes
        } else {
            &mut exist
        };
        target.set(b0, b1 - b0 + 1);
    }
    holes.subtract(&exist);
    (exist, holes)
}

/// One-descent queries for trees whose records never overlap each other
/// (bnobt, inobt, each domain of the refcountbt): the only record that can
/// reach into a range from before its end is the last one starting before
/// that end, so one `Le` lookup answers "does anything overlap?" where a
/// cursor scan would read (and verify) a leaf once per record.
impl Xref<'_> {
    /// A bnobt record overlapping `[agbno, agbno + len)`, if any.
    pub fn free_any(&self, agbno: u32, len: u32) -> Result<Option<AllocRec>, Unavailable> {
        let t = self.bnobt.as_ref().map_err(Clone::clone)?;
        let Some(last) = last_block(agbno, len) else {
            return Ok(None);
        };
        let key = BnoKey(AllocRec {
            startblock: last,
            blockcount: 0,
        });
        Ok(t.lookup(&key, Lookup::Le)?
            .filter(|r| u64::from(r.startblock) + u64::from(r.blockcount) > u64::from(agbno)))
    }

    /// A reference count record of the shared (or, with `cow`, the CoW
    /// staging) domain overlapping `[agbno, agbno + len)`, if any.
    pub fn refcount_any(
        &self,
        agbno: u32,
        len: u32,
        cow: bool,
    ) -> Result<Option<RefcountRec>, Unavailable> {
        let t = self.refcountbt.as_ref().map_err(Clone::clone)?;
        let Some(last) = last_block(agbno, len) else {
            return Ok(None);
        };
        let key = (last & !COW_FLAG) | if cow { COW_FLAG } else { 0 };
        Ok(t.lookup(&key, Lookup::Le)?.filter(|r| {
            r.cow == cow && u64::from(r.startblock) + u64::from(r.blockcount) > u64::from(agbno)
        }))
    }

    /// An inode chunk with inodes (not holes) in `[agbno, agbno + len)`, if
    /// any.
    pub fn inode_chunk_any(&self, agbno: u32, len: u32) -> Result<Option<InobtRec>, Unavailable> {
        let t = self.inobt.as_ref().map_err(Clone::clone)?;
        let geo = self.fs.geometry();
        let Some(end) = agbno.checked_add(len) else {
            return Ok(None);
        };
        // The last inode of the range's last block.
        let last = geo
            .agbno_to_agino(AgBlock(end))
            .and_then(|AgIno(a)| a.checked_sub(1))
            .unwrap_or(u32::MAX);
        let Some(c) = t.lookup(&last, Lookup::Le)? else {
            return Ok(None);
        };
        let (inodes, holes) = chunk_overlap(geo, &c, agbno, len);
        if inodes {
            return Ok(Some(c));
        }
        if !holes {
            // The chunk lies wholly before the range, and so do all others
            // before it.
            return Ok(None);
        }
        // Only the chunk's holes reach the range: an earlier chunk may too.
        let all = self.inode_chunks(agbno, len)?;
        Ok(all
            .into_iter()
            .find(|c| chunk_overlap(geo, c, agbno, len).0))
    }
}

/// The last block of `[agbno, agbno + len)`, if the range is not empty.
fn last_block(agbno: u32, len: u32) -> Option<u32> {
    agbno.checked_add(len.checked_sub(1)?)
}

/// Whether inodes of chunk `rec` that exist, and whether its holes, lie in
/// blocks of `[agbno, agbno + len)`: [`chunk_blocks`] without building the
/// bitmaps, for per-record queries.
pub(crate) fn chunk_overlap(
    geo: &crate::geometry::Geometry,
    rec: &InobtRec,
    agbno: u32,
    len: u32,
) -> (bool, bool) {
    use crate::format::btree::ialloc::INODES_PER_HOLEMASK_BIT;
    let shift = u32::from(geo.inopb_log);
    let (start, end) = (u64::from(agbno), u64::from(agbno) + u64::from(len));
    let (mut inodes, mut holes) = (false, false);
    for bit in 0..(INODES_PER_CHUNK / INODES_PER_HOLEMASK_BIT) {
        let first = u64::from(rec.startino) + u64::from(bit * INODES_PER_HOLEMASK_BIT);
        let last = first + u64::from(INODES_PER_HOLEMASK_BIT - 1);
        if last > u64::from(u32::MAX) {
            break;
        }
        if (last >> shift) < start || (first >> shift) >= end {
            continue;
        }
        if rec.holemask & (1 << bit) != 0 {
            holes = true;
        } else {
            inodes = true;
        }
    }
    (inodes, holes)
}

impl Xref<'_> {
    /// How much of `[agbno, agbno + len)` holds inodes according to the
    /// inobt: blocks of inode chunks, without the holes of sparse chunks
    /// (`xfs_ialloc_has_inodes_at_extent`).
    pub fn inode_coverage(&self, agbno: u32, len: u32) -> Result<Coverage, Unavailable> {
        let geo = self.fs.geometry();
        let mut b = ExtentBitmap::new();
        for r in self.inode_chunks(agbno, len)? {
            b.union(&chunk_blocks(geo, &r).0);
        }
        Ok(b.coverage(u64::from(agbno), u64::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::tests_support::sample_geometry;
    use proptest::prelude::*;

    proptest! {
        /// The allocation-free overlap test agrees with the bitmaps, for
        /// every inodes-per-block and any chunk and range.
        #[test]
        fn chunk_overlap_agrees_with_chunk_blocks(
            startino in any::<u32>(),
            holemask in any::<u16>(),
            inopb_log in 0u8..=5,
            agbno in any::<u32>(),
            len in 0u32..200,
        ) {
            let mut geo = sample_geometry();
            geo.inopb_log = inopb_log;
            let rec = InobtRec { startino, holemask, count: 0, freecount: 0, free: 0 };
            let (exist, holes) = chunk_blocks(&geo, &rec);
            let (inodes, hole) = chunk_overlap(&geo, &rec, agbno, len);
            let (a, l) = (u64::from(agbno), u64::from(len));
            prop_assert_eq!(inodes, exist.count_in(a, l) > 0);
            if !inodes {
                prop_assert_eq!(hole, holes.count_in(a, l) > 0);
            }
        }
    }

    #[test]
    fn chunk_blocks_of_a_sparse_chunk() {
        let mut geo = sample_geometry();
        // Eight 512-byte inodes per 4 KiB block: a chunk is 8 blocks, each
        // hole mask bit half a block.
        geo.inopb_log = 3;
        let rec = InobtRec {
            startino: 64,
            holemask: 0x00ff,
            count: 32,
            freecount: 0,
            free: 0xffff_ffff,
        };
        let (exist, holes) = chunk_blocks(&geo, &rec);
        assert_eq!(exist.runs().collect::<Vec<_>>(), vec![(12, 4)]);
        assert_eq!(holes.runs().collect::<Vec<_>>(), vec![(8, 4)]);
        assert_eq!(chunk_overlap(&geo, &rec, 0, 8), (false, false));
        assert_eq!(chunk_overlap(&geo, &rec, 8, 4), (false, true));
        assert_eq!(chunk_overlap(&geo, &rec, 11, 2), (true, true));
    }
}
