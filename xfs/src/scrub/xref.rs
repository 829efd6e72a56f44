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
use crate::format::agfl::Agfl;
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

    /// The AGFL as read (with problems), or `None` if its magic is wrong.
    pub fn agfl(&self) -> Result<Checked<Agfl>, ScrubError> {
        let agf = self.agf.as_ref().map(|c| &c.value);
        self.fs
            .read_agfl(self.agno, agf)
            .map_err(ScrubError::operational)
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

    /// How much of `[agbno, agbno + len)` the bnobt says is free.
    pub fn free_coverage(&self, agbno: u32, len: u32) -> Result<Coverage, Unavailable> {
        let mut b = ExtentBitmap::new();
        for r in self.free_overlaps(agbno, len)? {
            b.set(u64::from(r.startblock), u64::from(r.blockcount));
        }
        Ok(b.coverage(u64::from(agbno), u64::from(len)))
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

impl Xref<'_> {
    /// How much of `[agbno, agbno + len)` holds inodes according to the
    /// inobt: blocks of inode chunks, without the holes of sparse chunks
    /// (`xfs_ialloc_has_inodes_at_extent`).
    pub fn inode_coverage(&self, agbno: u32, len: u32) -> Result<Coverage, Unavailable> {
        let inopb_log = self.fs.geometry().inopb_log;
        let mut b = ExtentBitmap::new();
        for r in self.inode_chunks(agbno, len)? {
            set_inode_blocks(&r, inopb_log, &mut b);
        }
        Ok(b.coverage(u64::from(agbno), u64::from(len)))
    }
}

/// Adds to `b` the AG blocks holding the inodes of chunk `r` that exist
/// (sparse holes left out); `inopb_log` is log2 of inodes per block.
pub(crate) fn set_inode_blocks(r: &InobtRec, inopb_log: u8, b: &mut ExtentBitmap) {
    let shift = u32::from(inopb_log);
    // Runs of hole-mask bits that are clear, each bit four inodes.
    let mut bit = 0u32;
    while bit < 16 {
        if r.holemask & (1 << bit) != 0 {
            bit = bit.saturating_add(1);
            continue;
        }
        let first_bit = bit;
        while bit < 16 && r.holemask & (1 << bit) == 0 {
            bit = bit.saturating_add(1);
        }
        let first = u64::from(r.startino).saturating_add(u64::from(first_bit) * 4);
        let last = u64::from(r.startino)
            .saturating_add(u64::from(bit) * 4)
            .saturating_sub(1);
        let (fb, lb) = (first >> shift, last >> shift);
        b.set(fb, lb.saturating_sub(fb).saturating_add(1));
    }
}
