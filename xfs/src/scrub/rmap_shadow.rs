//! The reverse-mapping shadow check (`rmapbt-shadow`): the converse of the
//! `rmapbt` scrubber. That one takes each on-disk record and asks its owner
//! whether it really uses those blocks; this one asks every owner which
//! blocks it uses, builds the reverse map those answers imply in a staging
//! btree, and compares it with the on-disk rmapbt record by record, so a
//! record that is *missing* is found too (the design's §4 "shadow"
//! check, and what `xfs_repair` phase 4 does by rebuilding the reverse
//! mappings from the inodes).
//!
//! # Owners enumerated
//!
//! Per AG: the header sectors (`fs`), the internal log (`log`), the free
//! space btrees, the rmapbt and the AGFL blocks (`ag`), the inode btrees
//! (`inobt`), the refcount btree (`refcount`), the inode chunks minus their
//! sparse holes (`inodes`), the CoW staging extents of the refcountbt
//! (`cow`); and for every inode in use in the whole filesystem, each
//! mapping of its data and attr forks (file offset, attr and unwritten
//! flags) and each block of their bmbts (bmbt flag).
//!
//! # Cost
//!
//! The inodes are read in one pass over the whole filesystem (a `Whole`
//! scrubber), not once per AG: each mapping is appended to one xfile-backed
//! array tagged with its AG, so the work is linear in inodes + mappings.
//! The array is sorted (external merge sort under the budget) by AG, owner,
//! fork, file offset and block, which puts the pieces XFS would have merged
//! into one record next to each other; the merged records of one AG at a
//! time go into a staging btree (an [`Rmapbt`] over an [`XfileStore`],
//! same format, same key order as the on-disk tree), which is then walked
//! together with the on-disk rmapbt in one merge. Both staging structures
//! are charged to the run's [`MemoryBudget`](xfile::MemoryBudget) and spill
//! to disk beyond it.
//!
//! # Findings
//!
//! Attributed to `rmapbt`: `rmapbt.missing` (an owner uses blocks no
//! record gives it), `rmapbt.extra` (a record for blocks no owner uses that
//! way), `rmapbt.mismatch` (same start, owner and offset, different length
//! or unwritten flag). Owners that could not be enumerated (an inode that
//! does not verify, a fork or tree that cannot be walked) are left out of
//! the comparison on both sides and reported once as `xref-failed`; their
//! damage is the business of their own scrubbers. Without an rmapbt the
//! check is reported impossible (`rmapbt-shadow.not-possible`, a `warning`).
//!
//! # Reference counts
//!
//! On a reflink filesystem the shared extents are then derived from the
//! shadow, so from the owners themselves (a sweep counting the file data
//! mappings over each block, as `xfs_repair` phase 4 does), and compared
//! with the refcountbt's shared records in one merge walk:
//! `refcountbt.missing`, `refcountbt.extra`, `refcountbt.mismatch`, each
//! naming up to four of the inodes that share the blocks. When the rmapbt
//! agrees with every owner and the `refcountbt` scrubber already found the
//! tree damaged, that scrubber's count against the rmapbt was this same
//! comparison and the AG is not compared again (one damage, one report).
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::common::{tree_blocks, walk_quietly};
use super::refcount::describe as describe_refcount;
use super::rmap::{AgMaps, blocks, describe, mergeable, shareable};
use super::shared_extents::{MAX_OVERLAPPING, RefcountSweep, SharedRun, SweepError};
use super::xref::{AgContext, Unavailable, Xref, chunk_blocks};
use crate::format::btree::ialloc::{INODES_PER_CHUNK, InobtRec};
use crate::format::btree::refcount::RefcountRec;
use crate::format::btree::rmap::{
    OFF_ATTR_FORK, OFF_BMBT_BLOCK, OFF_MASK, OFF_UNWRITTEN, RmapRec, Rmapbt, owner,
};
use crate::format::dinode::{BmdrRoot, Fork, ForkFormat};
use crate::fs::Filesystem;
use crate::types::{AgNumber, FsBlock, Ino};
use scrub::{
    Applicability, ExtentBitmap, Finding, FindingKind, Findings, Health, ItemId, Scope,
    ScrubContext, ScrubError, Scrubber,
};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use xfbtree::{BlockAddr, Btree, BtreeFormat as _, XfileStore};
use xfile::XfArray;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The scrubber's name.
pub const NAME: &str = "rmapbt-shadow";
/// The structure its findings are about.
const STRUCTURE: &str = "rmapbt";
/// Name of the staging array of raw owner mappings (for `--stats`).
pub const RAW_STAGING: &str = "rmap-shadow-raw";
/// Name of each AG's staging btree (for `--stats`).
pub const TREE_STAGING: &str = "rmap-shadow-btree";

/// Most findings of each kind reported per AG; the rest are counted in one
/// more finding, so that a lost rmapbt leaf does not bury the report.
const MAX_REPORTED: u64 = 32;

/// Block size of the staging btree.
const STAGING_BLOCK: usize = 4096;

/// Compares the rmapbt of every AG with the reverse map built from all
/// owners of all blocks.
pub struct RmapShadowScrub;

impl Scrubber<Filesystem> for RmapShadowScrub {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["rmapbt", "inobt", super::refcount::NAME]
    }

    fn applies(&self, fs: &Filesystem) -> Applicability {
        if fs.geometry().features.has_rmapbt() {
            Applicability::Applies
        } else {
            // The owners exist; only the tree to compare them with does
            // not: a warning (`rmapbt-shadow.not-possible`), never silence.
            let also = if fs.geometry().features.has_reflink() {
                ", nor reference counts derived from the files' own mappings"
            } else {
                ""
            };
            Applicability::Impossible(format!(
                "the filesystem has no reverse-mapping btree (rmapbt feature), so block \
                 ownership cannot be cross-checked against every owner{also}"
            ))
        }
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        _item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let mut raw = XfArray::<Raw>::new(RAW_STAGING, ctx.budget()).map_err(staging)?;
        let mut unknown = Unknown::default();
        for agno in fs.geometry().ags() {
            ctx.check_cancelled()?;
            stage_ag(fs, agno, &mut raw, &mut unknown, out)?;
        }
        ctx.check_cancelled()?;
        raw.sort_by(merge_order).map_err(staging)?;

        // Merge runs of each AG into its staging btree, then compare.
        let mut iter = raw.iter();
        let mut pending: Option<Raw> = None;
        for agno in fs.geometry().ags() {
            ctx.check_cancelled()?;
            let store = XfileStore::new(TREE_STAGING, ctx.budget(), STAGING_BLOCK)
                .map_err(ScrubError::operational)?;
            let mut shadow = Btree::create(store, ShadowFormat(Rmapbt::new(fs.geometry(), agno)))
                .map_err(ScrubError::operational)?;
            let mut run: Option<RmapRec> = None;
            let mut inserted = 0i64;
            loop {
                let next = match pending.take() {
                    Some(r) => Some(r),
                    None => iter.next().transpose().map_err(staging)?,
                };
                let Some(r) = next else { break };
                match r.agno.cmp(&agno.0) {
                    Ordering::Less => continue,
                    Ordering::Greater => {
                        pending = Some(r);
                        break;
                    }
                    Ordering::Equal => {}
                }
                let rec = r.rec();
                run = match run {
                    Some(cur) if mergeable(&cur, &rec) => Some(RmapRec {
                        blockcount: cur.blockcount.saturating_add(rec.blockcount),
                        ..cur
                    }),
                    Some(cur) if overlaps_same(&cur, &rec) => Some(RmapRec {
                        blockcount: u32::try_from(
                            rec_end(&rec)
                                .max(rec_end(&cur))
                                .saturating_sub(u64::from(cur.startblock)),
                        )
                        .unwrap_or(cur.blockcount),
                        ..cur
                    }),
                    Some(cur) => {
                        insert(&mut shadow, &cur)?;
                        inserted = inserted.saturating_add(1);
                        Some(rec)
                    }
                    None => Some(rec),
                };
            }
            if let Some(cur) = run {
                insert(&mut shadow, &cur)?;
                inserted = inserted.saturating_add(1);
            }
            shadow.store().file().add_records(inserted);
            let rmapbt_agrees = compare_ag(fs, agno, &shadow, &unknown, out)?;
            // When the rmapbt agrees with every owner, the refcountbt
            // scrubber's counts against the rmapbt were this very
            // comparison: damage it found would only be reported twice.
            let counted = rmapbt_agrees
                && ctx.health_of(super::refcount::NAME, Some(u64::from(agno.0))) == Health::Sick;
            if fs.geometry().features.has_reflink() && !counted {
                compare_refcounts(fs, agno, &shadow, &unknown, out)?;
            }
        }
        drop(iter);
        unknown.report(out);
        Ok(())
    }
}

/// The staging btree's format: the on-disk rmapbt's records, keys and key
/// order (so both trees are walked in the same order), with the header
/// checks that only make sense on disk left out: a staging block's address
/// is its index in the xfile, not an AG block, and staging memory is not
/// checksummed.
struct ShadowFormat(Rmapbt);

impl xfbtree::BtreeFormat for ShadowFormat {
    type Record = RmapRec;
    type Key = crate::format::btree::rmap::RmapKey;

    fn header_len(&self) -> usize {
        self.0.header_len()
    }
    fn record_len(&self) -> usize {
        self.0.record_len()
    }
    fn key_len(&self) -> usize {
        self.0.key_len()
    }
    fn ptr_len(&self) -> usize {
        self.0.ptr_len()
    }
    fn overlapping(&self) -> bool {
        true
    }
    fn max_height(&self) -> u16 {
        // Not the on-disk limit: the shadow of a damaged AG may be bigger
        // than any rmapbt the AG could hold.
        16
    }
    fn read_header(&self, block: &[u8]) -> xfbtree::BlockHeader {
        self.0.read_header(block)
    }
    fn write_header(&self, block: &mut [u8], addr: BlockAddr, h: &xfbtree::BlockHeader) {
        self.0.write_header(block, addr, h);
    }
    fn check_header(
        &self,
        block: &[u8],
        addr: BlockAddr,
        out: &mut Vec<xfbtree::FieldProblem>,
    ) -> xfbtree::Trust {
        let mut all = Vec::new();
        let trust = self.0.check_header(block, addr, &mut all);
        out.extend(
            all.into_iter()
                .filter(|p| !matches!(p.field, "bno" | "leftsib" | "rightsib")),
        );
        trust
    }
    fn checksum_ok(&self, _block: &[u8]) -> bool {
        true
    }
    fn seal(&self, _block: &mut [u8]) {}
    fn decode_record(&self, raw: &[u8]) -> RmapRec {
        self.0.decode_record(raw)
    }
    fn encode_record(&self, r: &RmapRec, raw: &mut [u8]) {
        self.0.encode_record(r, raw);
    }
    fn decode_key(&self, raw: &[u8]) -> Self::Key {
        self.0.decode_key(raw)
    }
    fn encode_key(&self, k: &Self::Key, raw: &mut [u8]) {
        self.0.encode_key(k, raw);
    }
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        self.0.decode_ptr(raw)
    }
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        self.0.encode_ptr(addr, raw);
    }
    fn record_key(&self, r: &RmapRec) -> Self::Key {
        self.0.record_key(r)
    }
    fn record_high_key(&self, r: &RmapRec) -> Self::Key {
        self.0.record_high_key(r)
    }
    fn describe_key(&self, k: &Self::Key) -> String {
        self.0.describe_key(k)
    }
}

/// One owner mapping as staged, before merging: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct Raw {
    owner: u64,
    offset_word: u64,
    agno: u32,
    startblock: u32,
    blockcount: u32,
    pad: u32,
}

impl Raw {
    fn rec(&self) -> RmapRec {
        RmapRec {
            startblock: self.startblock,
            blockcount: self.blockcount,
            owner: self.owner,
            offset_word: self.offset_word,
        }
    }
}

/// The order that makes mergeable pieces neighbours: AG, owner, fork and
/// bmbt flag, file offset (file data only), block, then the unwritten flag.
fn merge_order(a: &Raw, b: &Raw) -> Ordering {
    let key = |r: &Raw| {
        let file_data = !owner::is_special(r.owner) && r.offset_word & OFF_BMBT_BLOCK == 0;
        let off = if file_data {
            r.offset_word & OFF_MASK
        } else {
            0
        };
        (
            r.agno,
            r.owner,
            r.offset_word & (OFF_ATTR_FORK | OFF_BMBT_BLOCK),
            off,
            r.startblock,
            r.offset_word & OFF_UNWRITTEN,
        )
    };
    key(a).cmp(&key(b))
}

/// One past the last block of a record.
fn rec_end(r: &RmapRec) -> u64 {
    u64::from(r.startblock).saturating_add(u64::from(r.blockcount))
}

/// Whether `b` overlaps `a` for the same owner that is not file data (two
/// structures claiming a block: the block-owner checks of their scrubbers
/// report that; the shadow keeps one record for the union).
fn overlaps_same(a: &RmapRec, b: &RmapRec) -> bool {
    a.owner == b.owner
        && (owner::is_special(a.owner) || (a.bmbt_block() && b.bmbt_block()))
        && a.offset_word == b.offset_word
        && u64::from(b.startblock) < rec_end(a)
}

fn insert(shadow: &mut Btree<XfileStore, ShadowFormat>, r: &RmapRec) -> Result<(), ScrubError> {
    shadow.insert(r).map_err(ScrubError::operational)
}

fn staging(e: xfile::StagingError) -> ScrubError {
    ScrubError::operational(e)
}

/// Owners left out of the comparison because they could not be
/// enumerated, with why.
#[derive(Default)]
struct Unknown {
    /// Inodes (by number) whose mappings could not all be read.
    inodes: BTreeSet<u64>,
    /// Per AG, special owners whose structures could not be walked.
    special: BTreeSet<(u32, u64)>,
    /// AGs whose inode chunks could not be listed: every inode owner there
    /// is unknown.
    ags_without_inodes: BTreeSet<u32>,
    /// One line per reason, reported at the end.
    why: Vec<(Option<u32>, String)>,
}

impl Unknown {
    fn owner_unknown(&self, agno: u32, r: &RmapRec, geo: &crate::geometry::Geometry) -> bool {
        if owner::is_special(r.owner) {
            return self.special.contains(&(agno, r.owner));
        }
        if self.inodes.contains(&r.owner) {
            return true;
        }
        match geo.ino_split(Ino(r.owner)) {
            Some((a, _)) => self.ags_without_inodes.contains(&a.0),
            None => false,
        }
    }

    fn report(self, out: &mut Findings) {
        for (agno, why) in self.why {
            let mut f = Finding::new(
                FindingKind::XrefFailed,
                STRUCTURE,
                "rmapbt.xref-shadow",
                format!("reverse mappings not checked against their owner: {why}"),
            );
            if let Some(a) = agno {
                f = f.group(u64::from(a));
            }
            out.push(f);
        }
    }
}

/// Appends every owner mapping of AG `agno`'s metadata, and of the inodes
/// whose chunks lie in it, to `raw`.
fn stage_ag(
    fs: &Filesystem,
    agno: AgNumber,
    raw: &mut XfArray<Raw>,
    unknown: &mut Unknown,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let ag = AgContext::load(fs, agno)?;
    let xref = Xref::new(&ag);
    let maps = AgMaps::load(&ag, &xref, true);
    let rmap_blocks = ag.rmapbt().and_then(|t| tree_blocks(&t, "rmapbt"));
    let a = agno.0;
    let push = |raw: &mut XfArray<Raw>, owner: u64, offset_word: u64, start: u64, len: u64| {
        let (Ok(startblock), Ok(blockcount)) = (u32::try_from(start), u32::try_from(len)) else {
            return Ok(());
        };
        raw.append(Raw {
            owner,
            offset_word,
            agno: a,
            startblock,
            blockcount,
            pad: 0,
        })
        .map_err(staging)
    };
    let special = |raw: &mut XfArray<Raw>,
                   unknown: &mut Unknown,
                   o: u64,
                   blocks: Result<&ExtentBitmap, &Unavailable>|
     -> Result<(), ScrubError> {
        match blocks {
            Ok(b) => {
                for (s, l) in b.runs() {
                    push(raw, o, 0, s, l)?;
                }
            }
            Err(why) => {
                unknown.special.insert((a, o));
                unknown.why.push((
                    Some(a),
                    format!(
                        "the blocks of owner {} are unknown: {why}",
                        owner::name(o).unwrap_or("?")
                    ),
                ));
            }
        }
        Ok(())
    };
    match &rmap_blocks {
        Ok(rb) => {
            let meta = maps.metadata(&ag, rb);
            special(raw, unknown, owner::FS, Ok(&meta.fs))?;
            special(raw, unknown, owner::LOG, Ok(&meta.log))?;
            special(raw, unknown, owner::AG, meta.ag.as_ref())?;
            special(raw, unknown, owner::INOBT, meta.inobt.as_ref())?;
            if geo.features.has_reflink() {
                special(raw, unknown, owner::REFC, meta.refc.as_ref())?;
            }
        }
        Err(why) => {
            // Without the rmapbt there is nothing to compare this AG with;
            // the rmapbt scrubber reports why.
            unknown
                .why
                .push((Some(a), format!("the rmapbt cannot be walked: {why}")));
        }
    }

    // CoW staging extents: the refcountbt's CoW domain.
    if geo.features.has_reflink() {
        let mut cow = ExtentBitmap::new();
        let walked = xref
            .refcountbt
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|t| {
                walk_quietly(t, "refcountbt", |r: &RefcountRec| {
                    if r.cow {
                        cow.set(u64::from(r.startblock), u64::from(r.blockcount));
                    }
                })
            });
        special(raw, unknown, owner::COW, walked.as_ref().map(|_| &cow))?;
    }

    // Inode chunks, and the inodes in use.
    let mut chunks: Vec<InobtRec> = Vec::new();
    let walked = xref
        .inobt
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|t| walk_quietly(t, "inobt", |r: &InobtRec| chunks.push(*r)));
    match walked {
        Ok(_) => {
            let mut inode_blocks = ExtentBitmap::new();
            for c in &chunks {
                inode_blocks.union(&chunk_blocks(geo, c).0);
            }
            special(raw, unknown, owner::INODES, Ok(&inode_blocks))?;
        }
        Err(why) => {
            unknown.special.insert((a, owner::INODES));
            unknown.ags_without_inodes.insert(a);
            unknown.why.push((
                Some(a),
                format!("the inode chunks and the inodes of this AG are unknown: {why}"),
            ));
            chunks.clear();
        }
    }
    for c in &chunks {
        for i in 0..INODES_PER_CHUNK {
            if !c.exists(i) || c.is_free(i) {
                continue;
            }
            let Some(agino) = c.startino.checked_add(i) else {
                continue;
            };
            let Some(ino) = geo.ino_make(agno, crate::types::AgIno(agino)) else {
                continue;
            };
            stage_inode(fs, ino, raw, unknown, out)?;
        }
    }
    Ok(())
}

/// Appends the mappings and bmbt blocks of both forks of inode `ino`.
fn stage_inode(
    fs: &Filesystem,
    ino: Ino,
    raw: &mut XfArray<Raw>,
    unknown: &mut Unknown,
    _out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let fail = |unknown: &mut Unknown, why: String| {
        if unknown.inodes.insert(ino.0) {
            unknown.why.push((
                geo.ino_split(ino).map(|(a, _)| a.0),
                format!("inode {}: {why}", ino.0),
            ));
        }
    };
    let inode = match fs.read_inode(ino) {
        Ok(c) if c.problems.is_empty() => c.value,
        Ok(_) => {
            fail(unknown, "the inode does not verify".into());
            return Ok(());
        }
        Err(e) => {
            fail(unknown, format!("the inode cannot be read: {e}"));
            return Ok(());
        }
    };
    for fork in [Fork::Data, Fork::Attr] {
        if fork == Fork::Attr && !inode.core.has_attr_fork() {
            continue;
        }
        let format = inode.core.fork_format(fork);
        if !matches!(format, ForkFormat::Extents | ForkFormat::Btree) {
            continue;
        }
        let attr = if fork == Fork::Attr { OFF_ATTR_FORK } else { 0 };
        // Streamed, not collected: a file of millions of mappings costs
        // staging (charged to the budget), not a Vec of them.
        let mut staged: Result<(), ScrubError> = Ok(());
        let read = fs.for_each_mapping(&inode, fork, |e| {
            if staged.is_err() {
                return;
            }
            let Some((a, b)) = geo.fsb_split(e.start) else {
                return;
            };
            let unwritten = if e.unwritten { OFF_UNWRITTEN } else { 0 };
            staged = raw
                .append(Raw {
                    owner: ino.0,
                    offset_word: (e.file_offset.0 & OFF_MASK) | attr | unwritten,
                    agno: a.0,
                    startblock: b.0,
                    blockcount: e.len,
                    pad: 0,
                })
                .map_err(staging);
        });
        staged?;
        if let Err(e) = read {
            // What was staged for this inode is left out of the comparison
            // with the rest of its mappings.
            fail(unknown, format!("the {fork} mappings cannot be read: {e}"));
            return Ok(());
        }
        if format == ForkFormat::Btree {
            let blocks = BmdrRoot::parse(inode.core.fork_bytes(&inode.raw, fork))
                .map_err(|e| format!("bmbt root: {e}"))
                .and_then(|root| fs.bmbt(&inode, fork, &root).map_err(|e| e.to_string()))
                .and_then(|t| tree_blocks(&t, "bmbt").map_err(|e| e.to_string()));
            let blocks = match blocks {
                Ok(b) => b,
                Err(why) => {
                    fail(unknown, format!("the {fork} bmbt cannot be walked: {why}"));
                    return Ok(());
                }
            };
            for (s, l) in blocks.runs() {
                for fsb in s..s.saturating_add(l) {
                    let Some((a, b)) = geo.fsb_split(FsBlock(fsb)) else {
                        continue;
                    };
                    raw.append(Raw {
                        owner: ino.0,
                        offset_word: attr | OFF_BMBT_BLOCK,
                        agno: a.0,
                        startblock: b.0,
                        blockcount: 1,
                        pad: 0,
                    })
                    .map_err(staging)?;
                }
            }
        }
    }
    Ok(())
}

/// Walks the on-disk rmapbt of `agno` and the shadow together in key
/// order and reports every difference; tells whether the two agreed
/// (walked to the end without a difference).
fn compare_ag(
    fs: &Filesystem,
    agno: AgNumber,
    shadow: &Btree<XfileStore, ShadowFormat>,
    unknown: &Unknown,
    out: &mut Findings,
) -> Result<bool, ScrubError> {
    let geo = fs.geometry();
    let a = agno.0;
    let ag = AgContext::load(fs, agno)?;
    let Ok(disk) = ag.rmapbt() else {
        return Ok(false); // reported by stage_ag and the rmapbt scrubber
    };
    if tree_blocks(&disk, "rmapbt").is_err() {
        // A damaged tree cannot be walked in order to the end; the rmapbt
        // scrubber reports its damage.
        out.push(
            Finding::new(
                FindingKind::XrefFailed,
                STRUCTURE,
                "rmapbt.xref-shadow",
                "the rmapbt is damaged, so its records were not compared with their owners",
            )
            .group(u64::from(a)),
        );
        return Ok(false);
    }
    let mut dc = disk.cursor_first().map_err(ScrubError::operational)?;
    let mut sc = shadow.cursor_first().map_err(ScrubError::operational)?;
    let skip = |r: &RmapRec| unknown.owner_unknown(a, r, geo);
    fn next_kept<S: xfbtree::BlockStore, F: xfbtree::BtreeFormat<Record = RmapRec>>(
        c: &mut xfbtree::Cursor<'_, S, F>,
        skip: &dyn Fn(&RmapRec) -> bool,
    ) -> Result<Option<RmapRec>, ScrubError> {
        loop {
            match c.next_record().map_err(ScrubError::operational)? {
                Some(r) if skip(&r) => continue,
                other => return Ok(other),
            }
        }
    }
    let mut d = next_kept(&mut dc, &skip)?;
    let mut s = next_kept(&mut sc, &skip)?;
    let mut counts = [0u64; 3];
    let fmt = Rmapbt::new(geo, agno);
    loop {
        let (kind, rec, other) = match (&d, &s) {
            (None, None) => break,
            (Some(dr), None) => {
                let r = *dr;
                d = next_kept(&mut dc, &skip)?;
                (Diff::Extra, r, None)
            }
            (None, Some(sr)) => {
                let r = *sr;
                s = next_kept(&mut sc, &skip)?;
                (Diff::Missing, r, None)
            }
            (Some(dr), Some(sr)) => match fmt.record_key(dr).cmp(&fmt.record_key(sr)) {
                Ordering::Less => {
                    let r = *dr;
                    d = next_kept(&mut dc, &skip)?;
                    (Diff::Extra, r, None)
                }
                Ordering::Greater => {
                    let r = *sr;
                    s = next_kept(&mut sc, &skip)?;
                    (Diff::Missing, r, None)
                }
                Ordering::Equal => {
                    let (dr, sr) = (*dr, *sr);
                    d = next_kept(&mut dc, &skip)?;
                    s = next_kept(&mut sc, &skip)?;
                    if dr.blockcount == sr.blockcount && dr.offset_word == sr.offset_word {
                        continue;
                    }
                    (Diff::Mismatch, dr, Some(sr))
                }
            },
        };
        let i = kind.index();
        counts[i] = counts[i].saturating_add(1);
        if counts[i] <= MAX_REPORTED {
            out.push(diff_finding(kind, a, &rec, other.as_ref()));
        }
    }
    for kind in [Diff::Missing, Diff::Extra, Diff::Mismatch] {
        let n = counts[kind.index()];
        if n > MAX_REPORTED {
            out.push(
                Finding::new(
                    FindingKind::XrefCorrupt,
                    STRUCTURE,
                    format!("rmapbt.{}", kind.code()),
                    format!(
                        "{} more {} records in this AG not listed",
                        n.saturating_sub(MAX_REPORTED),
                        kind.code()
                    ),
                )
                .group(u64::from(a)),
            );
        }
    }
    Ok(counts == [0; 3])
}

#[derive(Clone, Copy)]
enum Diff {
    Missing,
    Extra,
    Mismatch,
}

impl Diff {
    fn index(self) -> usize {
        match self {
            Diff::Missing => 0,
            Diff::Extra => 1,
            Diff::Mismatch => 2,
        }
    }
    fn code(self) -> &'static str {
        match self {
            Diff::Missing => "missing",
            Diff::Extra => "extra",
            Diff::Mismatch => "mismatch",
        }
    }
}

fn diff_finding(kind: Diff, agno: u32, r: &RmapRec, shadow: Option<&RmapRec>) -> Finding {
    let msg = match (kind, shadow) {
        (Diff::Missing, _) => format!(
            "the rmapbt has no record for the {}, which that owner uses",
            describe(r)
        ),
        (Diff::Extra, _) => format!(
            "the rmapbt records a {}, but no owner uses those blocks that way",
            describe(r)
        ),
        (Diff::Mismatch, Some(s)) => format!(
            "the rmapbt records a {}, but the owner has a {}",
            describe(r),
            describe(s)
        ),
        (Diff::Mismatch, None) => format!("the rmapbt records a {}", describe(r)),
    };
    let mut f = Finding::new(
        FindingKind::XrefCorrupt,
        STRUCTURE,
        format!("rmapbt.{}", kind.code()),
        msg,
    )
    .group(u64::from(agno))
    .block(u64::from(r.startblock));
    if !owner::is_special(r.owner) {
        f = f.inode(r.owner);
        if !r.bmbt_block() {
            f = f.offset(r.offset());
        }
    }
    if let Some(s) = shadow {
        f = f.field("blockcount", s.blockcount, r.blockcount);
    }
    f
}

/// The structure the reference-count findings are about.
const REFC_STRUCTURE: &str = "refcountbt";
/// Most inodes a reference-count finding names.
const SHARERS: usize = 4;

/// Derives the shared extents of AG `agno` from the shadow (the owners'
/// own mappings, not the on-disk rmapbt) and compares them with the
/// on-disk refcountbt's shared records in one merge walk (what
/// `xfs_repair` phase 4 does with the reverse mappings it rebuilt).
///
/// Blocks that an owner left out of the shadow maps (per the on-disk
/// rmapbt) cannot be counted; records over them are skipped on both
/// sides, and when the rmapbt cannot say where those blocks are the AG is
/// not compared at all (`xref-failed`).
fn compare_refcounts(
    fs: &Filesystem,
    agno: AgNumber,
    shadow: &Btree<XfileStore, ShadowFormat>,
    unknown: &Unknown,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let a = agno.0;
    let not_checked = |why: String| {
        Finding::new(
            FindingKind::XrefFailed,
            REFC_STRUCTURE,
            "refcountbt.xref-shadow",
            format!("reference counts not checked against the files' mappings: {why}"),
        )
        .group(u64::from(a))
    };
    let ag = AgContext::load(fs, agno)?;
    let disk = match ag.refcountbt() {
        Ok(t) => t,
        Err(why) => {
            out.push(not_checked(why.to_string()));
            return Ok(());
        }
    };
    if let Err(why) = tree_blocks(&disk, "refcountbt") {
        // The refcountbt scrubber reports the damage itself.
        out.push(not_checked(format!("the refcountbt is damaged: {why}")));
        return Ok(());
    }

    // Where the owners left out of the shadow have their blocks.
    let mut uncertain = ExtentBitmap::new();
    if !unknown.inodes.is_empty() || !unknown.ags_without_inodes.is_empty() {
        let walked = ag.rmapbt().and_then(|t| {
            walk_quietly(&t, "rmapbt", |r: &RmapRec| {
                if !owner::is_special(r.owner) && unknown.owner_unknown(a, r, geo) {
                    uncertain.set(u64::from(r.startblock), u64::from(r.blockcount));
                }
            })
        });
        if let Err(why) = walked {
            out.push(not_checked(format!(
                "some inodes could not be read, and the rmapbt, which would say where their \
                 blocks are, cannot be walked: {why}"
            )));
            return Ok(());
        }
    }

    let mut dc = disk.cursor_first().map_err(ScrubError::operational)?;
    // Shared records come first in key order; the CoW domain ends them.
    let next_disk = move || -> Result<Option<RefcountRec>, ScrubError> {
        Ok(dc
            .next_record()
            .map_err(ScrubError::operational)?
            .filter(|r| !r.cow))
    };
    let mut merge = RefcMerge::new(a, shadow, &uncertain, next_disk)?;
    let mut sweep = RefcountSweep::default();
    let mut sc = shadow.cursor_first().map_err(ScrubError::operational)?;
    let mut sink = |run: SharedRun| merge.derived(run, out);
    let mut swept = Ok(());
    while let Some(r) = sc.next_record().map_err(ScrubError::operational)? {
        if !shareable(true, &r) || unknown.owner_unknown(a, &r, geo) {
            continue;
        }
        swept = sweep.push(u64::from(r.startblock), rec_end(&r), &mut sink);
        if swept.is_err() {
            break;
        }
    }
    if swept.is_ok() {
        swept = sweep.finish(&mut sink);
    }
    match swept {
        Ok(()) => merge.finish(out),
        Err(SweepError::Crowded) => {
            out.push(not_checked(format!(
                "more than {MAX_OVERLAPPING} file mappings share one block"
            )));
            Ok(())
        }
        Err(SweepError::Sink(e)) => Err(e),
    }
}

/// The merge of the derived shared extents (in block order) with the
/// on-disk refcountbt's shared records (in key order).
struct RefcMerge<'a, N> {
    agno: u32,
    shadow: &'a Btree<XfileStore, ShadowFormat>,
    uncertain: &'a ExtentBitmap,
    next_disk: N,
    disk: Option<RefcountRec>,
    counts: [u64; 3],
}

impl<'a, N: FnMut() -> Result<Option<RefcountRec>, ScrubError>> RefcMerge<'a, N> {
    fn new(
        agno: u32,
        shadow: &'a Btree<XfileStore, ShadowFormat>,
        uncertain: &'a ExtentBitmap,
        mut next_disk: N,
    ) -> Result<Self, ScrubError> {
        let disk = next_disk()?;
        Ok(Self {
            agno,
            shadow,
            uncertain,
            next_disk,
            disk,
            counts: [0; 3],
        })
    }

    fn advance(&mut self) -> Result<(), ScrubError> {
        self.disk = (self.next_disk)()?;
        Ok(())
    }

    /// The next shared extent the owners' mappings imply.
    fn derived(&mut self, d: SharedRun, out: &mut Findings) -> Result<(), ScrubError> {
        while let Some(k) = self.disk.filter(|k| u64::from(k.startblock) < d.start) {
            self.report(Diff::Extra, Some(k), None, out)?;
            self.advance()?;
        }
        match self.disk {
            Some(k) if u64::from(k.startblock) == d.start => {
                if u64::from(k.blockcount) != d.len || u64::from(k.refcount) != d.refcount {
                    self.report(Diff::Mismatch, Some(k), Some(d), out)?;
                }
                self.advance()
            }
            _ => self.report(Diff::Missing, None, Some(d), out),
        }
    }

    /// The on-disk records past the last derived extent, then the counts.
    fn finish(&mut self, out: &mut Findings) -> Result<(), ScrubError> {
        while let Some(k) = self.disk {
            self.report(Diff::Extra, Some(k), None, out)?;
            self.advance()?;
        }
        for kind in [Diff::Missing, Diff::Extra, Diff::Mismatch] {
            let n = self.counts[kind.index()];
            if n > MAX_REPORTED {
                out.push(
                    Finding::new(
                        FindingKind::XrefCorrupt,
                        REFC_STRUCTURE,
                        format!("refcountbt.{}", kind.code()),
                        format!(
                            "{} more {} reference count records in this AG not listed",
                            n.saturating_sub(MAX_REPORTED),
                            kind.code()
                        ),
                    )
                    .group(u64::from(self.agno)),
                );
            }
        }
        Ok(())
    }

    /// One difference: the on-disk record `k`, the derived extent `d`.
    fn report(
        &mut self,
        kind: Diff,
        k: Option<RefcountRec>,
        d: Option<SharedRun>,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let span = |start: u64, len: u64| (start, len);
        let (start, len) = match (k, d) {
            (Some(k), _) => span(u64::from(k.startblock), u64::from(k.blockcount)),
            (None, Some(d)) => span(d.start, d.len),
            (None, None) => return Ok(()),
        };
        let over_unknown = |s: u64, l: u64| self.uncertain.count_in(s, l) > 0;
        if over_unknown(start, len) || d.is_some_and(|d| over_unknown(d.start, d.len)) {
            return Ok(());
        }
        let i = kind.index();
        self.counts[i] = self.counts[i].saturating_add(1);
        if self.counts[i] > MAX_REPORTED {
            return Ok(());
        }
        let files = match d {
            Some(d) => self.sharers(d)?,
            None => Vec::new(),
        };
        let by = if files.is_empty() {
            String::new()
        } else {
            let mut list: Vec<String> = files.iter().take(SHARERS).map(u64::to_string).collect();
            if files.len() > SHARERS {
                list.push("...".into());
            }
            format!(" (inodes {})", list.join(", "))
        };
        let msg = match (kind, k, d) {
            (Diff::Missing, _, Some(d)) => format!(
                "the refcountbt has no record for {}, which {} file mappings share{by}",
                blocks(d.start, d.len),
                d.refcount
            ),
            (Diff::Extra, Some(k), _) => format!(
                "the refcountbt records a {}, but the files' mappings share no extent starting there",
                describe_refcount(&k)
            ),
            (Diff::Mismatch, Some(k), Some(d)) => format!(
                "the refcountbt records a {}, but {} file mappings share {}{by}",
                describe_refcount(&k),
                d.refcount,
                blocks(d.start, d.len)
            ),
            _ => return Ok(()),
        };
        let mut f = Finding::new(
            FindingKind::XrefCorrupt,
            REFC_STRUCTURE,
            format!("refcountbt.{}", kind.code()),
            msg,
        )
        .group(u64::from(self.agno))
        .block(start);
        if let Some(first) = files.first() {
            f = f.inode(*first);
        }
        if let (Some(k), Some(d)) = (k, d) {
            if u64::from(k.refcount) != d.refcount {
                f = f.field("refcount", d.refcount, k.refcount);
            } else {
                f = f.field("blockcount", d.len, k.blockcount);
            }
        }
        out.push(f);
        Ok(())
    }

    /// The inodes (up to [`SHARERS`], and one more to tell that there are
    /// more) whose shareable mappings cover the start of `d`, so a finding
    /// can name a file.
    fn sharers(&self, d: SharedRun) -> Result<Vec<u64>, ScrubError> {
        use crate::format::btree::rmap::RmapKey;
        let Ok(at) = u32::try_from(d.start) else {
            return Ok(Vec::new());
        };
        let mut inodes = BTreeSet::new();
        self.shadow
            .query_overlapping(&RmapKey::min_at(at), &RmapKey::max_at(at), |r| {
                if shareable(true, r) {
                    inodes.insert(r.owner);
                }
                if inodes.len() > SHARERS {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(ScrubError::operational)?;
        Ok(inodes.into_iter().collect())
    }
}
