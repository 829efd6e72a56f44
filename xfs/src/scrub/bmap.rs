//! The block-mapping scrubbers: `bmapbtd` (data forks) and `bmapbta`
//! (attribute forks).
//!
//! As the kernel's `fs/xfs/scrub/bmap.c` does, for every allocated inode
//! of the AG each fork in extents or btree format is checked:
//!
//! - a btree fork's bmbt is walked once with the engine's verifier
//!   (headers, owner = the inode, levels, keys, pointers, siblings), every
//!   block's LSN is compared with the log head, and every block must be in
//!   use and given to the inode as a bmbt block of that fork in the rmapbt;
//! - every mapping (`xfs_bmap_validate_extent`): non-empty, file offsets
//!   that fit, blocks inside one AG past its headers, in file-offset order
//!   without overlap, unwritten only in the data fork; the number of
//!   mappings equals the inode's extent count;
//! - every mapping cross-referenced (`xchk_bmap_iextent_xref`): not free
//!   space, not inside an inode chunk, given to the inode at the same file
//!   offset, fork and written state by the rmapbt (`xchk_bmap_xref_rmap`),
//!   shared in the refcountbt only if the inode has the reflink flag, and
//!   never CoW staging space.
//!
//! The copy-on-write fork exists only in memory while a filesystem is
//! mounted; an image has none, so there is no `bmapbtc` scrubber (the
//! CoW staging extents left on disk are the refcountbt scrubber's).

use super::common::{
    XrefFailures, block_lsn_finding, group_of, log_head, owner_name, walk_tree_blocks,
};
use super::inode::{allocated_chunks, for_each_allocated};
use super::xref::{AgContext, Vetting, Xref};
use crate::bmap::MAX_FILEOFF;
use crate::format::Problem;
use crate::format::bmbt_rec::{self, BmbtIrec};
use crate::format::dinode::{BmdrRoot, Fork, ForkFormat, flags2};
use crate::fs::{Filesystem, Inode};
use crate::types::{AgBlock, AgNumber, FsBlock};
use scrub::{
    ExtentBitmap, Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber,
};
use std::collections::HashMap;

/// Checks the data forks of the inodes of one AG.
pub struct BmapDataScrub;
/// Checks the attribute forks of the inodes of one AG.
pub struct BmapAttrScrub;

impl Scrubber<Filesystem> for BmapDataScrub {
    fn name(&self) -> &'static str {
        "bmapbtd"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["inode", "bnobt", "rmapbt", "refcountbt"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        scrub_forks(fs, item, ctx, out, Fork::Data)
    }
}

impl Scrubber<Filesystem> for BmapAttrScrub {
    fn name(&self) -> &'static str {
        "bmapbta"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["inode", "bnobt", "rmapbt", "refcountbt"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        scrub_forks(fs, item, ctx, out, Fork::Attr)
    }
}

fn structure(fork: Fork) -> &'static str {
    match fork {
        Fork::Data => "bmapbtd",
        Fork::Attr => "bmapbta",
    }
}

/// Byte offset of the LSN in a long-form (bmbt) block header.
const LONG_LSN_OFFSET: usize = 32;

/// The cross-reference state of each AG a fork's blocks lie in, opened on
/// first use.
struct AgXrefs<'fs> {
    fs: &'fs Filesystem,
    ags: HashMap<u32, (Xref<'fs>, Vetting, XrefFailures)>,
}

impl<'fs> AgXrefs<'fs> {
    fn get(&mut self, agno: u32) -> Result<&mut (Xref<'fs>, Vetting, XrefFailures), ScrubError> {
        if !self.ags.contains_key(&agno) {
            let ag = AgContext::load(self.fs, AgNumber(agno))?;
            self.ags.insert(
                agno,
                (Xref::new(&ag), Vetting::default(), XrefFailures::default()),
            );
        }
        self.ags
            .get_mut(&agno)
            .ok_or_else(|| ScrubError::Internal("AG cross-reference cache".into()))
    }
}

fn scrub_forks(
    fs: &Filesystem,
    item: &ItemId,
    ctx: &ScrubContext,
    out: &mut Findings,
    fork: Fork,
) -> Result<(), ScrubError> {
    let s = structure(fork);
    let agno = AgNumber(group_of(item)?);
    let ag = AgContext::load(fs, agno)?;
    let Some(chunks) = allocated_chunks(&ag, s, out) else {
        return Ok(());
    };
    let mut xrefs = AgXrefs {
        fs,
        ags: HashMap::new(),
    };
    let mut result = Ok(());
    for_each_allocated(fs, agno, &chunks, ctx, |inode, problems| {
        if result.is_err() {
            return;
        }
        // An inode that is not one, or whose CRC fails, is the inode
        // scrubber's; so is a fork layout the verifier rejects.
        let broken = |p: &Problem| {
            matches!(
                p.field.as_str(),
                "core.magic" | "v3.crc" | "v3.inumber" | "core.forkoff" | "core.version"
            ) || p.field == fork_format_field(fork)
        };
        if problems.iter().any(broken) {
            return;
        }
        result = check_fork(fs, agno, inode, fork, &mut xrefs, out);
    })?;
    result
}

fn fork_format_field(fork: Fork) -> &'static str {
    match fork {
        Fork::Data => "core.format",
        Fork::Attr => "core.aformat",
    }
}

fn count_field(fork: Fork) -> &'static str {
    match fork {
        Fork::Data => "core.nextents",
        Fork::Attr => "core.naextents",
    }
}

/// A `corrupt` finding about `fork` of `inode`.
fn fork_finding(fork: Fork, agno: AgNumber, inode: &Inode, code: &str, msg: String) -> Finding {
    let s = structure(fork);
    Finding::new(FindingKind::Corrupt, s, format!("{s}.{code}"), msg)
        .group(u64::from(agno.0))
        .inode(inode.ino.0)
}

fn check_fork(
    fs: &Filesystem,
    agno: AgNumber,
    inode: &Inode,
    fork: Fork,
    xrefs: &mut AgXrefs<'_>,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let d = &inode.core;
    if fork == Fork::Attr && !d.has_attr_fork() {
        return Ok(());
    }
    let s = structure(fork);
    let ino = inode.ino.0;
    let n = d.extents(fork);
    let mut rc = RecordCheck {
        fs,
        agno,
        inode,
        fork,
        reflink: d.flags2 & flags2::REFLINK != 0,
        prev_end: 0,
        count: 0,
    };
    // Each record is checked as it is read, never collected: a file of
    // millions of mappings costs the bmbt's height in memory, not a list.
    match d.fork_format(fork) {
        ForkFormat::Extents => {
            let bytes = d.fork_bytes(&inode.raw, fork);
            let max = bytes.len() / bmbt_rec::SIZE;
            // The verifier reports a count that does not fit the fork.
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(max);
            for r in bytes
                .chunks_exact(bmbt_rec::SIZE)
                .take(take)
                .filter_map(BmbtIrec::unpack_slice)
            {
                rc.check(&r, None, xrefs, out)?;
            }
        }
        ForkFormat::Btree => {
            let root = match BmdrRoot::parse(d.fork_bytes(&inode.raw, fork)) {
                Ok(r) => r,
                Err(why) => {
                    out.push(fork_finding(
                        fork,
                        agno,
                        inode,
                        "root",
                        format!("inode {ino}: the bmbt root in the {fork} is unusable: {why}"),
                    ));
                    return Ok(());
                }
            };
            let tree = match fs.bmbt(inode, fork, &root) {
                Ok(t) => t,
                Err(e) => {
                    out.push(fork_finding(
                        fork,
                        agno,
                        inode,
                        "root",
                        format!("inode {ino}: the bmbt of the {fork} cannot be opened: {e}"),
                    ));
                    return Ok(());
                }
            };
            let head = log_head(fs);
            let mut failed: Option<ScrubError> = None;
            let mut local = Findings::new();
            let walk = walk_tree_blocks(
                &tree,
                s,
                Some(agno.0),
                &mut local,
                |addr, _level, bytes, o| {
                    if let Some(f) =
                        block_lsn_finding(s, agno.0, addr, bytes, LONG_LSN_OFFSET, head)
                    {
                        o.push(f);
                    }
                },
                |r: &BmbtIrec, at, o| {
                    if failed.is_none()
                        && let Err(e) = rc.check(r, Some(at.block.0), xrefs, o)
                    {
                        failed = Some(e);
                    }
                },
            );
            for f in local.into_vec() {
                out.push(f.inode(ino));
            }
            if let Some(e) = failed {
                return Err(e);
            }
            check_bmbt_blocks(fs, agno, inode, fork, &walk.blocks, xrefs, out)?;
        }
        // Local and device forks map no blocks; a bad format is the
        // inode scrubber's.
        _ => return Ok(()),
    }

    let count = rc.count;
    if count != n {
        out.push(
            fork_finding(
                fork,
                agno,
                inode,
                "nextents",
                format!("inode {ino}: the {fork} holds {count} mappings but the inode records {n}"),
            )
            .field(count_field(fork), count, n),
        );
    }
    Ok(())
}

/// The checks of one fork's mappings, record by record in file order.
struct RecordCheck<'a> {
    fs: &'a Filesystem,
    agno: AgNumber,
    inode: &'a Inode,
    fork: Fork,
    /// Whether the inode may share blocks.
    reflink: bool,
    /// End of the mappings so far (file blocks).
    prev_end: u64,
    /// Records seen.
    count: u64,
}

impl RecordCheck<'_> {
    /// Checks mapping `r` (from bmbt block `block`, if any) on its own,
    /// against the previous ones and against the AG it lies in.
    fn check(
        &mut self,
        r: &BmbtIrec,
        block: Option<u64>,
        xrefs: &mut AgXrefs<'_>,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let (fs, agno, inode, fork, reflink) =
            (self.fs, self.agno, self.inode, self.fork, self.reflink);
        let geo = fs.geometry();
        let ino = inode.ino.0;
        let (i, idx) = (self.count, self.count);
        self.count = self.count.saturating_add(1);
        let block = block.as_ref();
        let prev_end = self.prev_end;
        let show = format!(
            "mapping {i} (file block {}, {} blocks at filesystem block {}{})",
            r.startoff,
            r.blockcount,
            r.startblock,
            if r.unwritten { ", unwritten" } else { "" }
        );
        let bad = |code: &str, why: &str| {
            let mut f = fork_finding(
                fork,
                agno,
                inode,
                code,
                format!("inode {ino}: {fork} {show} {why}"),
            )
            .offset(r.startoff)
            .record(idx);
            if let Some(b) = block {
                f = f.block(*b);
            }
            f
        };
        if r.blockcount == 0 {
            out.push(bad("blockcount", "maps no blocks"));
            return Ok(());
        }
        let end = r.startoff.saturating_add(u64::from(r.blockcount));
        if end > MAX_FILEOFF {
            out.push(bad(
                "startoff",
                &format!("reaches past the largest file offset {MAX_FILEOFF}"),
            ));
            return Ok(());
        }
        if r.startoff < prev_end {
            out.push(bad(
                "startoff",
                &format!("starts before the end of the previous mapping (file block {prev_end})"),
            ));
        }
        self.prev_end = prev_end.max(end);
        if r.unwritten && fork == Fork::Attr {
            out.push(bad(
                "unwritten",
                "is unwritten, which an attribute fork never is",
            ));
        }
        if !geo.verify_fsb_extent(FsBlock(r.startblock), u64::from(r.blockcount)) {
            out.push(bad(
                "startblock",
                "does not lie inside one AG past its headers",
            ));
            return Ok(());
        }
        let Some((m_ag, AgBlock(agbno))) = geo.fsb_split(FsBlock(r.startblock)) else {
            return Ok(());
        };
        xref_mapping(
            fs, agno, inode, fork, r, m_ag.0, agbno, reflink, xrefs, out, &bad,
        )?;
        Ok(())
    }
}

/// Cross-references one mapping with the AG it lies in.
#[allow(clippy::too_many_arguments)]
fn xref_mapping(
    fs: &Filesystem,
    agno: AgNumber,
    inode: &Inode,
    fork: Fork,
    r: &BmbtIrec,
    m_ag: u32,
    agbno: u32,
    reflink: bool,
    xrefs: &mut AgXrefs<'_>,
    out: &mut Findings,
    bad: &dyn Fn(&str, &str) -> Finding,
) -> Result<(), ScrubError> {
    let s = structure(fork);
    let g = agno.0;
    let features = fs.geometry().features;
    let ino = inode.ino.0;
    let len = r.blockcount;
    let (x, vet, fails) = xrefs.get(m_ag)?;
    let xref = |f: Finding| Finding {
        kind: FindingKind::XrefCorrupt,
        ..f
    };

    match x.free_any(agbno, len) {
        Ok(Some(free)) => {
            let f = xref(bad(
                "free-space",
                &format!(
                    "is also free space in the bnobt of AG {m_ag} ({} blocks at AG block {})",
                    free.blockcount, free.startblock
                ),
            ));
            vet.confirm("bnobt", &x.bnobt, s, g, f, fails, out);
        }
        Ok(None) => {}
        Err(e) => fails.report(s, g, "bnobt", e, out),
    }
    match x.inode_chunk_any(agbno, len) {
        Ok(Some(c)) => {
            let f = xref(bad(
                "inode-chunk",
                &format!(
                    "lies inside the inode chunk at AG inode {} of AG {m_ag}",
                    c.startino
                ),
            ));
            vet.confirm("inobt", &x.inobt, s, g, f, fails, out);
        }
        Ok(None) => {}
        Err(e) => fails.report(s, g, "inobt", e, out),
    }
    if features.has_rmapbt() {
        match x.rmap_overlaps(agbno, len) {
            Ok(maps) => {
                // Blocks the rmapbt gives to this inode, fork and offset.
                let mut good = ExtentBitmap::new();
                let mut wrong: Option<String> = None;
                for m in &maps {
                    if m.owner != ino {
                        if !reflink && wrong.is_none() {
                            wrong = Some(format!(
                                "the rmapbt gives AG blocks {}..{} to {}",
                                m.startblock,
                                u64::from(m.startblock) + u64::from(m.blockcount),
                                owner_name(m.owner)
                            ));
                        }
                        continue;
                    }
                    let same_line = i128::from(m.offset()) - i128::from(m.startblock)
                        == i128::from(r.startoff) - i128::from(agbno);
                    if m.attr_fork() == (fork == Fork::Attr)
                        && !m.bmbt_block()
                        && m.unwritten() == r.unwritten
                        && same_line
                    {
                        good.set(u64::from(m.startblock), u64::from(m.blockcount));
                    } else if wrong.is_none() {
                        wrong = Some(format!(
                            "the rmapbt maps AG blocks {}..{} of inode {ino} with file offset {}, \
                             {}{}{}",
                            m.startblock,
                            u64::from(m.startblock) + u64::from(m.blockcount),
                            m.offset(),
                            if m.attr_fork() {
                                "attr fork"
                            } else {
                                "data fork"
                            },
                            if m.bmbt_block() { ", bmbt block" } else { "" },
                            if m.unwritten() { ", unwritten" } else { "" },
                        ));
                    }
                }
                let covered = good.count_in(u64::from(agbno), u64::from(len)) == u64::from(len);
                let f = match (&wrong, covered) {
                    (Some(w), _) => Some(xref(bad(
                        "rmap",
                        &format!("disagrees with the rmapbt: {w}"),
                    ))),
                    (None, false) => Some(xref(bad(
                        "rmap-missing",
                        &format!("is not (wholly) given to inode {ino} by the rmapbt of AG {m_ag}"),
                    ))),
                    (None, true) => None,
                };
                if let Some(f) = f {
                    vet.confirm("rmapbt", &x.rmapbt, s, g, f, fails, out);
                }
            }
            Err(e) => fails.report(s, g, "rmapbt", e, out),
        }
    }
    if features.has_reflink() {
        match x.refcount_any(agbno, len, false) {
            Ok(Some(rc)) if !reflink || fork == Fork::Attr => {
                let f = xref(bad(
                    "shared",
                    &format!(
                        "is shared according to the refcountbt ({} blocks at AG block {}, {} owners), \
                         but the {}",
                        rc.blockcount,
                        rc.startblock,
                        rc.refcount,
                        if fork == Fork::Attr {
                            "attribute fork cannot share blocks"
                        } else {
                            "inode has no reflink flag"
                        }
                    ),
                ));
                vet.confirm("refcountbt", &x.refcountbt, s, g, f, fails, out);
            }
            Ok(_) => {}
            Err(e) => fails.report(s, g, "refcountbt", e, out),
        }
        match x.refcount_any(agbno, len, true) {
            Ok(Some(rc)) => {
                let f = xref(bad(
                    "cow",
                    &format!(
                        "overlaps CoW staging space in the refcountbt ({} blocks at AG block {})",
                        rc.blockcount, rc.startblock
                    ),
                ));
                vet.confirm("refcountbt", &x.refcountbt, s, g, f, fails, out);
            }
            Ok(None) => {}
            Err(e) => fails.report(s, g, "refcountbt", e, out),
        }
    }
    Ok(())
}

/// Every bmbt block must be in use and given to the inode as a bmbt block
/// of the fork in the rmapbt (`xchk_bmap_btree` block owner checks).
fn check_bmbt_blocks(
    fs: &Filesystem,
    agno: AgNumber,
    inode: &Inode,
    fork: Fork,
    blocks: &ExtentBitmap,
    xrefs: &mut AgXrefs<'_>,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let s = structure(fork);
    let g = agno.0;
    let geo = fs.geometry();
    let has_rmap = geo.features.has_rmapbt();
    let ino = inode.ino.0;
    for (start, len) in blocks.runs() {
        for fsb in start..start.saturating_add(len) {
            let Some((m_ag, AgBlock(agbno))) = geo.fsb_split(FsBlock(fsb)) else {
                continue;
            };
            let (x, vet, fails) = xrefs.get(m_ag.0)?;
            let at = |code: &str, msg: String| {
                Finding::new(FindingKind::XrefCorrupt, s, format!("{s}.{code}"), msg)
                    .group(u64::from(g))
                    .inode(ino)
                    .block(fsb)
            };
            match x.free_any(agbno, 1) {
                Ok(Some(_)) => {
                    let f = at(
                        "bmbt-free",
                        format!(
                            "inode {ino}: {fork} bmbt block {fsb} is also free space in the bnobt"
                        ),
                    );
                    vet.confirm("bnobt", &x.bnobt, s, g, f, fails, out);
                }
                Ok(None) => {}
                Err(e) => fails.report(s, g, "bnobt", e, out),
            }
            if !has_rmap {
                continue;
            }
            match x.rmap_overlaps(agbno, 1) {
                Ok(maps) => {
                    let ok = maps.iter().any(|m| {
                        m.owner == ino && m.bmbt_block() && m.attr_fork() == (fork == Fork::Attr)
                    });
                    if !ok {
                        let who = maps.first().map_or("nobody".to_owned(), |m| {
                            format!(
                                "{}{}",
                                owner_name(m.owner),
                                if m.bmbt_block() { " (bmbt block)" } else { "" }
                            )
                        });
                        let f = at(
                            "bmbt-owner",
                            format!(
                                "inode {ino}: {fork} bmbt block {fsb} is given to {who} in the rmapbt, \
                                 not to this inode's {fork} bmbt"
                            ),
                        );
                        vet.confirm("rmapbt", &x.rmapbt, s, g, f, fails, out);
                    }
                }
                Err(e) => fails.report(s, g, "rmapbt", e, out),
            }
        }
    }
    Ok(())
}
