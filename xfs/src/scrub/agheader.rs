//! The AG header scrubbers: `sb`, `agf`, `agfl` and `agi` (the kernel's
//! `fs/xfs/scrub/agheader.c`, plus what `xfs_repair` phases 1 and 2 check
//! in the same headers).
//!
//! Each scrubber reads its header sector itself, reports every problem of
//! the format verifier as `corrupt`, and, when the header is recognisable
//! (right magic number), cross-references it with the AG's btrees:
//!
//! - `sb`: the primary (group 0) against the rules mount relies on (root and
//!   realtime inode pointers, quota inodes, bytes past the last field) and
//!   against the secondaries when all of them agree on a different value;
//!   each secondary against the primary field by field, `corrupt` for
//!   geometry and feature fields and `preen` for fields XFS does not keep up
//!   to date in secondaries (as `xchk_superblock` does).
//! - `agf`: free block count, longest free extent and btree block counters
//!   against the free-space, reverse-mapping and reference count btrees.
//! - `agfl`: every block on the free list is a valid AG block, listed once,
//!   not free space, not inodes, owned by the AG per the rmapbt.
//! - `agi`: inode counts against the inode btrees, btree block counters,
//!   unlinked lists.
//!
//! Every header's own block must be owned by the filesystem (rmapbt owner
//! `fs`), not free, not an inode chunk and not shared; every btree root
//! a header names must be owned by that tree, be a block of it and sit at
//! the recorded height; and no header may have been written at a log
//! position past the log's head.
//!
//! A disagreement with a btree is only reported when that tree is sound
//! (walked without a structural problem, see [`Vetting`]); a damaged tree
//! answers queries wrongly, so cross-referencing it is `xref-failed`, and
//! the tree's own scrubber reports the damage.

use super::common::{XrefFailures, problems_to_findings, read_error, xref_corrupt};
use super::xref::{AgContext, TreeTally, Unavailable, Vetting, Xref, tally_tree};
use crate::format::agf::{self, Agf};
use crate::format::agi::{self, Agi};
use crate::format::btree::alloc::{self, AllocRec};
use crate::format::btree::ialloc::{self, InobtRec};
use crate::format::btree::refcount;
use crate::format::btree::rmap::{self, owner};
use crate::format::dinode::FileType;
use crate::format::features::{self, incompat, ro_compat, version};
use crate::format::superblock::{self, SbKind, Superblock};
use crate::format::{Uuid, agfl};
use crate::fs::Filesystem;
use crate::geometry::Geometry;
use crate::log::LogState;
use crate::types::{AgBlock, AgIno, AgNumber, Ino, null};
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use std::collections::HashSet;
use xfbtree::{BlockAddr, BlockStore};

/// Sector of each AG header within its AG.
const SB_SECTOR: u32 = 0;
const AGF_SECTOR: u32 = 1;
const AGI_SECTOR: u32 = 2;
const AGFL_SECTOR: u32 = 3;

/// The AG of a group item.
fn group_of(item: &ItemId) -> Result<AgNumber, ScrubError> {
    item.group
        .and_then(|g| u32::try_from(g).ok())
        .map(AgNumber)
        .ok_or_else(|| ScrubError::Internal(format!("{item} is not an AG item")))
}

/// The AG block holding header sector `sector`.
fn header_block(geo: &Geometry, sector: u32) -> u32 {
    let bytes = u64::from(sector).saturating_mul(u64::from(geo.sector_size));
    u32::try_from(bytes / u64::from(geo.block_size.max(1))).unwrap_or(u32::MAX)
}

/// Reads header sector `sector` of AG `agno`.
fn read_sector(fs: &Filesystem, agno: AgNumber, sector: u32) -> Result<Vec<u8>, ScrubError> {
    let geo = fs.geometry();
    let daddr = geo
        .ag_header_daddr(agno, sector)
        .ok_or_else(|| ScrubError::Internal(format!("{agno} has no header sector {sector}")))?;
    let mut buf = vec![0u8; usize::try_from(geo.sector_size).unwrap_or(512)];
    fs.read_daddr(daddr, &mut buf).map_err(read_error)?;
    Ok(buf)
}

/// A `corrupt` finding about a header field.
fn corrupt(structure: &'static str, group: u32, block: u32, field: &str, msg: String) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        structure,
        format!("{structure}.{field}"),
        msg,
    )
    .group(u64::from(group))
    .block(u64::from(block))
}

/// What kind of inode a file type is, for messages.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Free => "an unallocated inode",
        FileType::Regular => "a regular file",
        FileType::Directory => "a directory",
        FileType::CharDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        FileType::Invalid(_) => "an inode of invalid type",
    }
}

/// An inode pointer as xfs_db prints it.
fn ino_str(v: u64) -> String {
    if v == null::FSINO {
        "null".to_owned()
    } else {
        v.to_string()
    }
}

/// Whether a quota inode field holds "no inode": mkfs writes 0 in some
/// copies and `NULLFSINO` in others, and XFS reads both as null.
fn null_ino(v: u64) -> bool {
    v == 0 || v == null::FSINO
}

/// A header's LSN must not be ahead of the log: the kernel's read
/// verifiers refuse such a block (`xfs_log_check_lsn`), since recovery
/// could otherwise replay older changes over it. Only checked when the log
/// has a head (clean or dirty, not zeroed or unreadable); cycle and block
/// compare unsigned, as the kernel compares them.
fn check_lsn(
    fs: &Filesystem,
    structure: &'static str,
    g: u32,
    block: u32,
    lsn: u64,
    out: &mut Findings,
) {
    let head = match fs.log_state() {
        LogState::Clean { head } | LogState::Dirty { head, .. } => head,
        LogState::Zeroed | LogState::Corrupt { .. } => return,
    };
    let cycle = u32::try_from(lsn >> 32).unwrap_or(u32::MAX);
    let bno = lsn & u64::from(u32::MAX);
    if (cycle, bno) > (head.cycle, head.block) {
        out.push(
            corrupt(
                structure,
                g,
                block,
                "lsn",
                format!(
                    "the {} was last written at log position {cycle}:{bno}, ahead of the log's head {}:{}",
                    structure.to_uppercase(),
                    head.cycle,
                    head.block
                ),
            )
            .field(
                "lsn",
                format!("<= {:#x}", (u64::from(head.cycle) << 32) | head.block),
                format!("{lsn:#x}"),
            ),
        );
    }
}

/// One btree root recorded in an AG header.
struct RootRef {
    /// The tree, as findings name it.
    tree: &'static str,
    /// The header fields holding the root and the height.
    root_field: &'static str,
    level_field: &'static str,
    root: u32,
    levels: u32,
    max_levels: u32,
    /// The magic number of the tree's blocks.
    magic: u32,
    /// Who owns the tree's blocks in the rmapbt.
    owner: u64,
}

/// The AG btree magic numbers, to name what a wrong root pointer hits.
const AG_BTREE_MAGICS: &[(u32, &str)] = &[
    (alloc::BNO_MAGIC, "bnobt"),
    (alloc::CNT_MAGIC, "cntbt"),
    (rmap::MAGIC, "rmapbt"),
    (refcount::MAGIC, "refcountbt"),
    (ialloc::INO_MAGIC, "inobt"),
    (ialloc::FINO_MAGIC, "finobt"),
];

/// The btree roots an AGF (`agf`) and an AGI (`agi`) record, for the
/// trees the filesystem has.
fn header_roots(geo: &Geometry, agf: Option<&Agf>, agi: Option<&Agi>) -> Vec<RootRef> {
    let (f, m) = (geo.features, geo.maxlevels);
    let mut v = Vec::new();
    let mut add = |present: bool,
                   tree: &'static str,
                   (root_field, level_field): (&'static str, &'static str),
                   (magic, owner): (u32, u64),
                   (root, levels, max_levels): (u32, u32, u32)| {
        if present {
            v.push(RootRef {
                tree,
                root_field,
                level_field,
                root,
                levels,
                max_levels,
                magic,
                owner,
            });
        }
    };
    if let Some(a) = agf {
        let ag = owner::AG;
        let (bno, cnt) = ((a.bno_root, a.bno_level), (a.cnt_root, a.cnt_level));
        let (rmap, refc) = (
            (a.rmap_root, a.rmap_level),
            (a.refcount_root, a.refcount_level),
        );
        add(
            true,
            "bnobt",
            ("bnoroot", "bnolevel"),
            (alloc::BNO_MAGIC, ag),
            (bno.0, bno.1, m.alloc),
        );
        add(
            true,
            "cntbt",
            ("cntroot", "cntlevel"),
            (alloc::CNT_MAGIC, ag),
            (cnt.0, cnt.1, m.alloc),
        );
        add(
            f.has_rmapbt(),
            "rmapbt",
            ("rmaproot", "rmaplevel"),
            (rmap::MAGIC, ag),
            (rmap.0, rmap.1, m.rmap),
        );
        add(
            f.has_reflink(),
            "refcountbt",
            ("refcntroot", "refcntlevel"),
            (refcount::MAGIC, owner::REFC),
            (refc.0, refc.1, m.refcount),
        );
    }
    if let Some(i) = agi {
        let ino = owner::INOBT;
        add(
            true,
            "inobt",
            ("root", "level"),
            (ialloc::INO_MAGIC, ino),
            (i.root, i.level, m.inobt),
        );
        add(
            f.has_finobt(),
            "finobt",
            ("free_root", "free_level"),
            (ialloc::FINO_MAGIC, ino),
            (i.free_root, i.free_level, m.inobt),
        );
    }
    v
}

/// Every root of the AG as `(tree, root block)`.
fn ag_roots(ag: &AgContext<'_>) -> Vec<(&'static str, u32)> {
    let agf = ag.agf.as_ref().map(|c| &c.value);
    let agi = ag.agi.as_ref().map(|c| &c.value);
    header_roots(ag.fs.geometry(), agf, agi)
        .into_iter()
        .map(|r| (r.tree, r.root))
        .collect()
}

/// Whether `tree` of the AG, rooted where its header says but `levels`
/// high, walks without any structural problem.
fn tree_sound_at(ag: &AgContext<'_>, tree: &str, levels: u32) -> bool {
    let (fs, agno) = (ag.fs, ag.agno);
    let agf = ag.agf.as_ref().map(|c| c.value.clone());
    let agi = ag.agi.as_ref().map(|c| c.value.clone());
    let sound = |r: crate::Result<bool>| r.unwrap_or(false);
    match (tree, agf, agi) {
        ("bnobt", Some(mut a), _) => {
            a.bno_level = levels;
            sound(
                fs.bnobt(agno, &a)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        ("cntbt", Some(mut a), _) => {
            a.cnt_level = levels;
            sound(
                fs.cntbt(agno, &a)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        ("rmapbt", Some(mut a), _) => {
            a.rmap_level = levels;
            sound(
                fs.rmapbt(agno, &a)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        ("refcountbt", Some(mut a), _) => {
            a.refcount_level = levels;
            sound(
                fs.refcountbt(agno, &a)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        ("inobt", _, Some(mut i)) => {
            i.level = levels;
            sound(
                fs.inobt(agno, &i)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        ("finobt", _, Some(mut i)) => {
            i.free_level = levels;
            sound(
                fs.finobt(agno, &i)
                    .map(|t| tally_tree(&t, tree, |_| {}).is_ok()),
            )
        }
        _ => false,
    }
}

/// What the block a root pointer names turned out to be.
enum RootBlock {
    /// A block of the right tree: its level, and whether it has a sibling
    /// (which a root never has).
    Tree { level: u16, sibling: bool },
    /// Evidence that the pointer is wrong: the root of another tree, or
    /// something that is no btree block of this AG at all.
    Elsewhere(String),
    /// Possibly a damaged block of the right tree (say, a damaged magic
    /// number): the tree's own scrubber reports it, and nothing says the
    /// pointer is wrong.
    Unclear,
}

/// Reads the short-form btree header at `r.root` and classifies it.
fn classify_root(
    ag: &AgContext<'_>,
    r: &RootRef,
    roots: &[(&'static str, u32)],
) -> Result<RootBlock, ScrubError> {
    let geo = ag.fs.geometry();
    let daddr = geo.agb_to_daddr(ag.agno, AgBlock(r.root)).map(|d| d.0);
    let uuid = geo.meta_uuid;
    ag.fs
        .ag_blocks(ag.agno)
        .read(BlockAddr(u64::from(r.root)), |b| {
            let found = be32(b, 0).unwrap_or(0);
            let level = b.get(4..6).map_or(0, |l| u16::from_be_bytes([l[0], l[1]]));
            if found == r.magic {
                let null = |off: usize| be32(b, off).is_none_or(|p| p == null::AGBLOCK);
                return RootBlock::Tree {
                    level,
                    sibling: !null(8) || !null(12),
                };
            }
            // Another tree's root, carrying that tree's magic number: the
            // two headers cannot both be right, and the block says which.
            if let Some((_, other)) = AG_BTREE_MAGICS.iter().find(|(m, _)| *m == found)
                && roots.iter().any(|(t, root)| t == other && *root == r.root)
            {
                return RootBlock::Elsewhere(format!("the root of the {other}"));
            }
            let blkno = b
                .get(16..24)
                .and_then(|x| <[u8; 8]>::try_from(x).ok())
                .map(u64::from_be_bytes);
            let own_uuid = b.get(32..48).is_some_and(|u| u == uuid.0);
            if blkno.is_some() && blkno == daddr && own_uuid {
                RootBlock::Unclear
            } else {
                RootBlock::Elsewhere(format!(
                    "no btree block of this AG (magic {found:#x}, and no matching self-address and UUID)"
                ))
            }
        })
        .map_err(ScrubError::operational)
}

/// Cross-references a root pointer of an AG header with the block it names
/// and with the rmapbt:
///
/// - the rmapbt must give the block to the tree's owner;
/// - a pointer to another tree's root, or to a block that is no btree block
///   of this AG, is wrong (a block that may just be a damaged block of the
///   tree is left to the tree's scrubber);
/// - when the root block sits at another level than the header records, the
///   header is wrong if the tree is sound at the block's height (otherwise
///   the block's level is the damage, which the tree's scrubber reports).
///
/// Pointers and heights the verifier refused are skipped.
fn check_root(
    cross: &mut Cross<'_>,
    structure: &'static str,
    header: u32,
    r: &RootRef,
    roots: &[(&'static str, u32)],
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let ag = &cross.ag;
    let g = ag.agno.0;
    if !ag.fs.geometry().verify_agbno(ag.agno, AgBlock(r.root))
        || !(1..=r.max_levels).contains(&r.levels)
    {
        return Ok(());
    }
    let what = format!("the {} root block named by {}", r.tree, r.root_field);
    let kind = classify_root(ag, r, roots)?;
    cross.owned(structure, r.root, 1, r.owner, &what, out);
    let ag = &cross.ag;
    match kind {
        RootBlock::Tree { level, sibling } => {
            let levels = u32::from(level).saturating_add(1);
            if levels == r.levels {
                return Ok(());
            }
            if sibling {
                // Two fields of the block (level and siblings) say it is
                // not the root of a tree that high: the pointer is wrong.
                out.push(
                    xref_corrupt(
                        structure,
                        g,
                        r.root_field,
                        format!(
                            "{} points at AG block {}, a {} block at level {level} with siblings, not the root of a {}-level tree",
                            r.root_field, r.root, r.tree, r.levels
                        ),
                    )
                    .block(u64::from(header))
                    .field_name(r.root_field),
                );
            } else if levels <= r.max_levels && tree_sound_at(ag, r.tree, levels) {
                out.push(
                    xref_corrupt(
                        structure,
                        g,
                        r.level_field,
                        format!(
                            "{} says the {} has {} levels, but its root block {} is at level {level} and the tree is sound with {levels} levels",
                            r.level_field, r.tree, r.levels, r.root
                        ),
                    )
                    .block(u64::from(header))
                    .field(r.level_field, levels, r.levels),
                );
            }
        }
        RootBlock::Elsewhere(what) => out.push(
            xref_corrupt(
                structure,
                g,
                r.root_field,
                format!(
                    "{} points at AG block {}, which holds {what}, not the {} root",
                    r.root_field, r.root, r.tree
                ),
            )
            .block(u64::from(header))
            .field_name(r.root_field),
        ),
        RootBlock::Unclear => {}
    }
    Ok(())
}

/// A big-endian `u32` at `off`, if the buffer holds one.
fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The cross-referencing state of one scrub item: the AG's headers and
/// trees, which trees were found sound, and which could not be consulted.
struct Cross<'fs> {
    ag: AgContext<'fs>,
    xref: Xref<'fs>,
    vetting: Vetting,
    failures: XrefFailures,
}

impl<'fs> Cross<'fs> {
    fn load(fs: &'fs Filesystem, agno: AgNumber) -> Result<Self, ScrubError> {
        let ag = AgContext::load(fs, agno)?;
        let xref = Xref::new(&ag);
        Ok(Self {
            ag,
            xref,
            vetting: Vetting::default(),
            failures: XrefFailures::default(),
        })
    }

    /// `Xref::check_owned_extent` with this item's state.
    fn owned(
        &mut self,
        structure: &'static str,
        agbno: u32,
        len: u32,
        owner: u64,
        what: &str,
        out: &mut Findings,
    ) {
        self.xref.check_owned_extent(
            structure,
            self.ag.group(),
            agbno,
            len,
            owner,
            what,
            &mut self.vetting,
            &mut self.failures,
            out,
        );
    }

    /// Reports that `other` could not be cross-referenced.
    fn failed(
        &mut self,
        structure: &'static str,
        other: &'static str,
        why: impl std::fmt::Display,
        out: &mut Findings,
    ) {
        self.failures
            .report(structure, self.ag.group(), other, why, out);
    }
}

// ---------------------------------------------------------------------
// Superblock
// ---------------------------------------------------------------------

/// Checks the superblock copy of each AG: the primary (group 0) against the
/// rules mount relies on, each secondary against the primary.
pub struct SuperblockScrub;

/// How a secondary's field is compared with the primary's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Written by mkfs and growfs in every copy: a difference is damage.
    Same,
    /// Not kept up to date in secondaries by XFS: a difference is preened.
    Preen,
}

/// Geometry and feature fields every copy must share (`xchk_superblock`'s
/// corrupt-class fields), with how each is printed. `versionnum`,
/// `features2`, `features_incompat` and `meta_uuid` have their own rules.
type SbField = (&'static str, fn(&Superblock) -> u64, bool);
const SAME_FIELDS: &[SbField] = &[
    ("blocksize", |s| u64::from(s.blocksize), false),
    ("dblocks", |s| s.dblocks, false),
    ("rblocks", |s| s.rblocks, false),
    ("rextents", |s| s.rextents, false),
    ("logstart", |s| s.logstart, false),
    ("rextsize", |s| u64::from(s.rextsize), false),
    ("agblocks", |s| u64::from(s.agblocks), false),
    ("agcount", |s| u64::from(s.agcount), false),
    ("rbmblocks", |s| u64::from(s.rbmblocks), false),
    ("logblocks", |s| u64::from(s.logblocks), false),
    ("sectsize", |s| u64::from(s.sectsize), false),
    ("inodesize", |s| u64::from(s.inodesize), false),
    ("inopblock", |s| u64::from(s.inopblock), false),
    ("blocklog", |s| u64::from(s.blocklog), false),
    ("sectlog", |s| u64::from(s.sectlog), false),
    ("inodelog", |s| u64::from(s.inodelog), false),
    ("inopblog", |s| u64::from(s.inopblog), false),
    ("agblklog", |s| u64::from(s.agblklog), false),
    ("rextslog", |s| u64::from(s.rextslog), false),
    ("flags", |s| u64::from(s.flags), true),
    ("shared_vn", |s| u64::from(s.shared_vn), false),
    ("inoalignmt", |s| u64::from(s.inoalignmt), false),
    ("dirblklog", |s| u64::from(s.dirblklog), false),
    ("logsectlog", |s| u64::from(s.logsectlog), false),
    ("logsectsize", |s| u64::from(s.logsectsize), false),
    ("logsunit", |s| u64::from(s.logsunit), false),
    ("features_compat", |s| u64::from(s.features_compat), true),
    (
        "features_ro_compat",
        |s| u64::from(s.features_ro_compat),
        true,
    ),
    ("spino_align", |s| u64::from(s.spino_align), false),
    // The parts of the feature words set at mkfs time; the bits XFS may
    // add later are preened separately.
    (
        "versionnum",
        |s| u64::from(s.versionnum & !LATE_VERSION_BITS),
        true,
    ),
    (
        "features2",
        |s| u64::from(s.features2 & !features::features2::ATTR2),
        true,
    ),
    (
        "features_incompat",
        |s| u64::from(s.features_incompat & !incompat::NEEDSREPAIR),
        true,
    ),
];

/// `versionnum` bits XFS may set after mkfs (`xchk_superblock` preens them).
const LATE_VERSION_BITS: u16 = version::ATTR | version::NLINK | version::QUOTA;

/// A field value, in hex for flag words.
fn show(v: u64, hex: bool) -> String {
    if hex {
        format!("{v:#x}")
    } else {
        v.to_string()
    }
}

impl Scrubber<Filesystem> for SuperblockScrub {
    fn name(&self) -> &'static str {
        "sb"
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        let g = agno.0;
        let geo = fs.geometry();
        let buf = read_sector(fs, agno, SB_SECTOR)?;
        let sb = Superblock::from_bytes(&buf).map_err(ScrubError::operational)?;
        let block = header_block(geo, SB_SECTOR);

        let sound = if g == 0 {
            check_primary(fs, &buf, &sb, out)?
        } else {
            check_secondary(fs, agno, &buf, &sb, out)
        };
        if !sound {
            return Ok(());
        }
        ctx.check_cancelled()?;

        let mut cross = Cross::load(fs, agno)?;
        cross.owned("sb", block, 1, owner::FS, "the superblock", out);
        if geo.log.agno == agno {
            cross.owned(
                "sb",
                geo.log.agbno.0,
                geo.log.blocks,
                owner::LOG,
                "the internal log",
                out,
            );
        }
        Ok(())
    }
}

/// Bytes of the superblock a filesystem with `sb`'s features defines; the
/// rest of the sector must be zero (`xfs_repair`'s `secondary_sb_whack`,
/// which it applies to the primary too).
fn defined_sb_bytes(sb: &Superblock) -> usize {
    if sb.features().has_meta_uuid() {
        superblock::SIZE
    } else {
        // Everything up to and including sb_lsn.
        superblock::SIZE - size_of::<Uuid>()
    }
}

/// Reports a non-zero byte past the last field the features define.
fn check_sb_tail(g: u32, buf: &[u8], sb: &Superblock, out: &mut Findings) {
    let start = defined_sb_bytes(sb);
    let Some((off, b)) = buf
        .iter()
        .enumerate()
        .skip(start)
        .find(|(_, b)| **b != 0)
        .map(|(i, b)| (i, *b))
    else {
        return;
    };
    let meta_uuid_at = superblock::SIZE - size_of::<Uuid>();
    let f = if (meta_uuid_at..superblock::SIZE).contains(&off) {
        corrupt(
            "sb",
            g,
            0,
            "meta_uuid",
            format!(
                "superblock {g} holds a metadata UUID ({}) although the META_UUID feature is off; the field must be zero",
                sb.meta_uuid
            ),
        )
        .field("meta_uuid", Uuid::default(), sb.meta_uuid)
    } else {
        corrupt(
            "sb",
            g,
            0,
            "unused",
            format!(
                "superblock {g} has data past its last field: byte {off} of the sector is {b:#04x}, the rest of the sector must be zero"
            ),
        )
        .offset(u64::try_from(off).unwrap_or(u64::MAX))
    };
    out.push(f);
}

/// The primary superblock. Returns whether it is recognisable enough to
/// cross-reference.
fn check_primary(
    fs: &Filesystem,
    buf: &[u8],
    sb: &Superblock,
    out: &mut Findings,
) -> Result<bool, ScrubError> {
    // Open refused a primary with verifier problems; an image changed
    // since is still caught here.
    let problems = sb.verify(buf, SbKind::Primary);
    problems_to_findings("sb", Some(0), Some(0), &problems, out);
    if sb.magicnum != superblock::MAGIC {
        return Ok(false);
    }
    check_sb_tail(0, buf, sb, out);

    // Only a read-only flag was ever defined, and nothing sets it today;
    // xfs_repair clears any value.
    if sb.flags != 0 {
        out.push(
            corrupt(
                "sb",
                0,
                0,
                "flags",
                format!(
                    "the primary superblock's flags field is {:#x}; no flag is in use and the field must be zero",
                    sb.flags
                ),
            )
            .field("flags", 0, format!("{:#x}", sb.flags)),
        );
    }

    let f = sb.features();
    if f.compat != 0 {
        out.push(
            Finding::new(
                FindingKind::Warning,
                "sb",
                "sb.features_compat",
                format!(
                    "unknown compatible features {}: safe to ignore for reading, but whatever they describe is not checked",
                    features::describe_bits(f.compat)
                ),
            )
            .group(0)
            .block(0)
            .field_name("features_compat"),
        );
    }
    let unknown_ro = f.ro_compat & !ro_compat::ALL;
    if unknown_ro != 0 {
        out.push(
            Finding::new(
                FindingKind::Warning,
                "sb",
                "sb.features_ro_compat",
                format!(
                    "unknown read-only-compatible features {}: whatever they describe is not checked and free space may not add up",
                    features::describe_bits(unknown_ro)
                ),
            )
            .group(0)
            .block(0)
            .field_name("features_ro_compat"),
        );
    }

    let mut failures = XrefFailures::default();
    check_metadata_inodes(fs, sb, &mut failures, out)?;
    check_against_secondaries(fs, sb, out)?;
    Ok(true)
}

/// What an inode pointer of the superblock must name.
#[derive(Clone, Copy)]
enum MetaKind {
    /// The root directory.
    Root,
    /// A realtime bitmap or summary inode: a regular file, empty without a
    /// realtime section.
    Realtime,
    /// A quota file.
    Quota,
}

/// The superblock's inode pointers: the root directory, the realtime
/// bitmap and summary inodes (mount reads all three) and the quota inodes.
fn check_metadata_inodes(
    fs: &Filesystem,
    sb: &Superblock,
    failures: &mut XrefFailures,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let f = sb.features();
    let ptrs = [
        ("rootino", "root directory", sb.rootino, MetaKind::Root),
        ("rbmino", "realtime bitmap", sb.rbmino, MetaKind::Realtime),
        (
            "rsumino",
            "realtime summary",
            sb.rsumino,
            MetaKind::Realtime,
        ),
        ("uquotino", "user quota", sb.uquotino, MetaKind::Quota),
        ("gquotino", "group quota", sb.gquotino, MetaKind::Quota),
        ("pquotino", "project quota", sb.pquotino, MetaKind::Quota),
    ];
    let mut seen: Vec<(u64, &str)> = Vec::new();
    for (field, what, ino, kind) in ptrs {
        if matches!(kind, MetaKind::Quota) {
            if null_ino(ino) {
                continue;
            }
            if !f.has_quota() {
                out.push(
                    corrupt(
                        "sb",
                        0,
                        0,
                        field,
                        format!(
                            "the superblock names inode {ino} as the {what} inode, but quotas were never enabled (no QUOTA bit in versionnum)"
                        ),
                    )
                    .field(field, "null", ino),
                );
                continue;
            }
        }
        if let Some((_, other)) = seen.iter().find(|(i, _)| *i == ino) {
            out.push(
                corrupt(
                    "sb",
                    0,
                    0,
                    field,
                    format!(
                        "the superblock names inode {ino} as the {what} inode, and also as the {other} inode"
                    ),
                )
                .field(field, "a distinct inode", ino),
            );
            continue;
        }
        seen.push((ino, what));
        check_metadata_inode(fs, sb, field, what, ino, kind, failures, out)?;
    }
    Ok(())
}

/// One inode pointer of the superblock.
#[allow(clippy::too_many_arguments)]
fn check_metadata_inode(
    fs: &Filesystem,
    sb: &Superblock,
    field: &'static str,
    what: &str,
    ino: u64,
    kind: MetaKind,
    failures: &mut XrefFailures,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let valid = geo
        .ino_split(Ino(ino))
        .is_some_and(|(agno, agino)| geo.verify_agino(agno, agino));
    if !valid {
        out.push(
            corrupt(
                "sb",
                0,
                0,
                field,
                format!(
                    "the {what} inode number {} is not a valid inode number",
                    ino_str(ino)
                ),
            )
            .field(field, "a valid inode number", ino_str(ino)),
        );
        return Ok(());
    }
    let inode = match fs.read_inode(Ino(ino)) {
        Ok(i) => i,
        Err(crate::Error::Device(e)) => return Err(ScrubError::operational(e)),
        Err(e) => {
            failures.report("sb", 0, "inode", format!("inode {ino}: {e}"), out);
            return Ok(());
        }
    };
    if inode.value.core.magic != crate::format::dinode::MAGIC {
        out.push(
            corrupt(
                "sb",
                0,
                0,
                field,
                format!("the {what} inode {ino} does not hold an inode (bad magic number)"),
            )
            .field_name(field),
        );
        return Ok(());
    }
    let core = &inode.value.core;
    let ty = core.file_type();
    let want = match kind {
        MetaKind::Root => FileType::Directory,
        MetaKind::Realtime | MetaKind::Quota => FileType::Regular,
    };
    if ty != want {
        out.push(
            corrupt(
                "sb",
                0,
                0,
                field,
                format!(
                    "the {what} inode {ino} is {}, not {}",
                    type_name(ty),
                    type_name(want)
                ),
            )
            .field(field, type_name(want), type_name(ty)),
        );
        return Ok(());
    }
    match kind {
        MetaKind::Root => {
            // The root directory is its own parent; any other directory
            // has a different one.
            match fs.lookup(&inode.value, b"..") {
                Ok(Some(e)) if e.ino.0 != ino => out.push(
                    corrupt(
                        "sb",
                        0,
                        0,
                        field,
                        format!(
                            "the root directory inode {ino} names inode {} as its parent; the root is its own parent",
                            e.ino.0
                        ),
                    )
                    .field(field, "a directory whose parent is itself", ino),
                ),
                Ok(_) => {}
                Err(crate::Error::Device(e)) => return Err(ScrubError::operational(e)),
                Err(e) => failures.report("sb", 0, "root directory", e, out),
            }
        }
        MetaKind::Realtime => {
            if sb.rblocks == 0 && (core.size != 0 || core.nblocks != 0) {
                out.push(
                    corrupt(
                        "sb",
                        0,
                        0,
                        field,
                        format!(
                            "the {what} inode {ino} holds {} bytes in {} blocks, but a filesystem without a realtime section has an empty {what} inode",
                            core.size, core.nblocks
                        ),
                    )
                    .field(field, "an empty regular file", ino),
                );
            }
        }
        MetaKind::Quota => {}
    }
    Ok(())
}

/// Compares the primary with the secondaries: a geometry field on which
/// every secondary agrees, with a value other than the primary's, is
/// damage in the primary (xfs_repair's phase 1 trusts such a majority).
/// With fewer than two readable secondaries nothing can be concluded.
fn check_against_secondaries(
    fs: &Filesystem,
    primary: &Superblock,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let mut secondaries = Vec::new();
    for agno in geo.ags().skip(1) {
        let buf = read_sector(fs, agno, SB_SECTOR)?;
        let Ok(sb) = Superblock::from_bytes(&buf) else {
            continue;
        };
        // Only copies that are sound on their own get a vote.
        if sb
            .verify(&buf, SbKind::Secondary { agno, primary: &sb })
            .iter()
            .all(|p| p.field == "bad_features2")
        {
            secondaries.push(sb);
        }
    }
    if secondaries.len() < 2 {
        return Ok(());
    }
    for (field, get, hex) in SAME_FIELDS {
        if matches!(*field, "flags" | "shared_vn") {
            continue; // checked on their own
        }
        let mine = get(primary);
        let theirs = get(&secondaries[0]);
        if theirs != mine && secondaries.iter().all(|s| get(s) == theirs) {
            out.push(
                corrupt(
                    "sb",
                    0,
                    0,
                    field,
                    format!(
                        "the primary superblock's {field} is {}, but all {} secondary superblocks say {}",
                        show(mine, *hex),
                        secondaries.len(),
                        show(theirs, *hex)
                    ),
                )
                .field(*field, show(theirs, *hex), show(mine, *hex)),
            );
        }
    }
    Ok(())
}

/// A secondary superblock. Returns whether it is recognisable enough to
/// cross-reference.
fn check_secondary(
    fs: &Filesystem,
    agno: AgNumber,
    buf: &[u8],
    sb: &Superblock,
    out: &mut Findings,
) -> bool {
    let g = agno.0;
    // The verifier on its own (compared with itself, nothing differs). A
    // secondary's bad_features2 is only preened (below).
    let problems: Vec<_> = sb
        .verify(buf, SbKind::Secondary { agno, primary: sb })
        .into_iter()
        .filter(|p| p.field != "bad_features2")
        .collect();
    problems_to_findings("sb", Some(g), Some(0), &problems, out);
    if sb.magicnum != superblock::MAGIC {
        return false;
    }
    let reported: HashSet<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    let p = fs.superblock();
    let mut diff = |field: &'static str, rule: Rule, expected: String, actual: String| {
        if reported.contains(field) {
            return;
        }
        let (kind, why) = match rule {
            Rule::Same => (
                FindingKind::Corrupt,
                "every copy must describe the same filesystem",
            ),
            Rule::Preen => (
                FindingKind::Preen,
                "XFS does not keep this field up to date in secondary copies; rewriting it from the primary is harmless",
            ),
        };
        out.push(
            Finding::new(
                kind,
                "sb",
                format!("sb.{field}"),
                format!("secondary superblock {g} field {field} differs from the primary: {why}"),
            )
            .group(u64::from(g))
            .block(0)
            .field(field, expected, actual),
        );
    };

    for (field, get, hex) in SAME_FIELDS {
        let (a, b) = (get(p), get(sb));
        if a != b {
            diff(field, Rule::Same, show(a, *hex), show(b, *hex));
        }
    }
    if p.features().has_meta_uuid() && sb.meta_uuid != p.meta_uuid {
        diff(
            "meta_uuid",
            Rule::Same,
            p.meta_uuid.to_string(),
            sb.meta_uuid.to_string(),
        );
    }

    // Bits XFS sets in the primary after mkfs without rewriting the
    // secondaries (the first extended attribute sets ATTR): a secondary
    // lacking them is the normal state. A secondary having one the primary
    // lacks is odd and preened; xchk_superblock preens both directions,
    // which would flag every filesystem that ever stored an xattr.
    if sb.versionnum & !p.versionnum & LATE_VERSION_BITS != 0 {
        diff(
            "versionnum",
            Rule::Preen,
            format!("{:#x}", p.versionnum),
            format!("{:#x}", sb.versionnum),
        );
    }
    if sb.features2 & !p.features2 & features::features2::ATTR2 != 0 {
        diff(
            "features2",
            Rule::Preen,
            format!("{:#x}", p.features2),
            format!("{:#x}", sb.features2),
        );
    }
    // NEEDSREPAIR is set in the primary only, while a repair runs.
    if sb.features_incompat & !p.features_incompat & incompat::NEEDSREPAIR != 0 {
        diff(
            "features_incompat",
            Rule::Preen,
            format!("{:#x}", p.features_incompat),
            format!("{:#x}", sb.features_incompat),
        );
    }
    if sb.bad_features2 != sb.features2 && sb.bad_features2 != 0 {
        diff(
            "bad_features2",
            Rule::Preen,
            format!("{:#x} (same as features2)", sb.features2),
            format!("{:#x}", sb.bad_features2),
        );
    }
    if sb.features_log_incompat != 0 {
        // Log recovery only looks at the primary's log-incompatible bits.
        diff(
            "features_log_incompat",
            Rule::Preen,
            "0".to_owned(),
            format!("{:#x}", sb.features_log_incompat),
        );
    }
    if sb.uuid != p.uuid {
        diff("uuid", Rule::Preen, p.uuid.to_string(), sb.uuid.to_string());
    }
    if sb.fname != p.fname {
        diff(
            "fname",
            Rule::Preen,
            String::from_utf8_lossy(&p.fname).into_owned(),
            String::from_utf8_lossy(&sb.fname).into_owned(),
        );
    }
    for (field, a, b) in [
        ("imax_pct", u64::from(p.imax_pct), u64::from(sb.imax_pct)),
        ("unit", u64::from(p.unit), u64::from(sb.unit)),
        ("width", u64::from(p.width), u64::from(sb.width)),
    ] {
        if a != b {
            diff(field, Rule::Preen, a.to_string(), b.to_string());
        }
    }
    // mkfs leaves the inode pointers null in secondaries; growfs copies the
    // primary's. A null copy is fine, another value is preened.
    for (field, a, b) in [
        ("rootino", p.rootino, sb.rootino),
        ("rbmino", p.rbmino, sb.rbmino),
        ("rsumino", p.rsumino, sb.rsumino),
        ("uquotino", p.uquotino, sb.uquotino),
        ("gquotino", p.gquotino, sb.gquotino),
        ("pquotino", p.pquotino, sb.pquotino),
    ] {
        // In a copy mkfs wrote, a quota inode is damage (below).
        let quota = field.ends_with("quotino");
        if !null_ino(b) && a != b && !(quota && sb.inprogress != 0) {
            diff(field, Rule::Preen, ino_str(a), ino_str(b));
        }
    }

    // A copy still marked in progress is one mkfs wrote and nothing
    // rewrote since; mkfs never sets quota fields (xfs_repair's
    // secondary_sb_quota).
    if sb.inprogress != 0 {
        for (field, v) in [
            ("uquotino", sb.uquotino),
            ("gquotino", sb.gquotino),
            ("pquotino", sb.pquotino),
        ] {
            if !null_ino(v) && !reported.contains(field) {
                out.push(
                    corrupt(
                        "sb",
                        g,
                        0,
                        field,
                        format!(
                            "secondary superblock {g} is still marked as written by mkfs (inprogress {}) but names quota inode {v}; mkfs leaves quota fields null",
                            sb.inprogress
                        ),
                    )
                    .field(field, "null", v),
                );
            }
        }
        if sb.qflags != 0 && !reported.contains("qflags") {
            out.push(
                corrupt(
                    "sb",
                    g,
                    0,
                    "qflags",
                    format!(
                        "secondary superblock {g} is still marked as written by mkfs (inprogress {}) but has quota flags {:#x}; mkfs leaves them zero",
                        sb.inprogress, sb.qflags
                    ),
                )
                .field("qflags", 0, format!("{:#x}", sb.qflags)),
            );
        }
    }
    check_sb_tail(g, buf, sb, out);
    true
}

// ---------------------------------------------------------------------
// AGF
// ---------------------------------------------------------------------

/// Checks each AG's free-space header against the free-space, reverse
/// mapping and reference count btrees.
pub struct AgfScrub;

impl Scrubber<Filesystem> for AgfScrub {
    fn name(&self) -> &'static str {
        "agf"
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        let g = agno.0;
        let geo = fs.geometry();
        let block = header_block(geo, AGF_SECTOR);
        let checked = fs.read_agf(agno).map_err(read_error)?;
        problems_to_findings(
            "agf",
            Some(g),
            Some(u64::from(block)),
            &checked.problems,
            out,
        );
        let agf = &checked.value;
        if agf.magicnum != agf::MAGIC {
            return Ok(());
        }
        check_lsn(fs, "agf", g, block, agf.lsn, out);
        ctx.check_cancelled()?;
        let mut cross = Cross::load(fs, agno)?;
        let tallies = AgfTallies::walk(&mut cross);
        cross.owned("agf", block, 1, owner::FS, "the AGF", out);
        let all_roots = ag_roots(&cross.ag);
        for r in &header_roots(geo, Some(agf), None) {
            check_root(&mut cross, "agf", block, r, &all_roots, out)?;
        }
        check_agf_counters(&mut cross, &tallies, agf, block, out);
        Ok(())
    }
}

/// An `xref-corrupt` finding about an AGF or AGI counter.
fn counter_mismatch(
    structure: &'static str,
    g: u32,
    block: u32,
    field: &'static str,
    counted: u64,
    recorded: u32,
    msg: String,
) -> Finding {
    xref_corrupt(structure, g, field, msg)
        .block(u64::from(block))
        .field(field, counted, recorded)
}

/// What walking the AGF's trees found: the bnobt's block count and free
/// blocks, the cntbt's and its last (longest) record, and the rmapbt's and
/// refcountbt's block counts when the filesystem has them.
struct AgfTallies {
    bno: Result<(TreeTally, u64), Unavailable>,
    cnt: Result<(TreeTally, Option<AllocRec>), Unavailable>,
    rmap: Option<Result<TreeTally, Unavailable>>,
    refc: Option<Result<TreeTally, Unavailable>>,
}

impl AgfTallies {
    /// Walks each tree once (the kernel counts their blocks too) and
    /// records in `cross` which are sound, so cross-references with them
    /// need no second walk.
    fn walk(cross: &mut Cross<'_>) -> Self {
        let ag = &cross.ag;
        let features = ag.fs.geometry().features;
        let bno = ag.bnobt().and_then(|t| {
            let mut free = 0u64;
            let tally = tally_tree(&t, "bnobt", |r: &AllocRec| {
                free = free.saturating_add(u64::from(r.blockcount));
            })?;
            Ok((tally, free))
        });
        let cnt = ag.cntbt().and_then(|t| {
            let mut last: Option<AllocRec> = None;
            let tally = tally_tree(&t, "cntbt", |r: &AllocRec| last = Some(*r))?;
            Ok((tally, last))
        });
        let rmap = features
            .has_rmapbt()
            .then(|| ag.rmapbt().and_then(|t| tally_tree(&t, "rmapbt", |_| {})));
        let refc = features.has_reflink().then(|| {
            ag.refcountbt()
                .and_then(|t| tally_tree(&t, "refcountbt", |_| {}))
        });
        let v = &mut cross.vetting;
        v.record("bnobt", bno.as_ref().map(|_| ()).map_err(Clone::clone));
        if let Some(r) = &rmap {
            v.record("rmapbt", r.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        if let Some(r) = &refc {
            v.record("refcountbt", r.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        Self {
            bno,
            cnt,
            rmap,
            refc,
        }
    }
}

/// `agf_freeblks`, `agf_longest`, `agf_btreeblks`, `agf_rmap_blocks` and
/// `agf_refcount_blocks` against the trees (`xchk_agf_xref_*`).
fn check_agf_counters(
    cross: &mut Cross<'_>,
    t: &AgfTallies,
    agf: &Agf,
    block: u32,
    out: &mut Findings,
) {
    let g = cross.ag.group();
    let (bno, cnt, rmap) = (&t.bno, &t.cnt, &t.rmap);
    match bno {
        Ok((_, free)) if *free != u64::from(agf.freeblks) => out.push(counter_mismatch(
            "agf",
            g,
            block,
            "freeblks",
            *free,
            agf.freeblks,
            format!(
                "freeblks says {} blocks are free, but the bnobt's free extents add up to {free}",
                agf.freeblks
            ),
        )),
        Ok(_) => {}
        Err(e) => cross.failed("agf", "bnobt", e, out),
    }

    match cnt {
        Ok((_, None)) => {
            if agf.freeblks != 0 {
                out.push(counter_mismatch(
                    "agf",
                    g,
                    block,
                    "freeblks",
                    0,
                    agf.freeblks,
                    format!(
                        "freeblks says {} blocks are free, but the cntbt has no free extent",
                        agf.freeblks
                    ),
                ));
            }
            if agf.longest != 0 {
                out.push(counter_mismatch(
                    "agf",
                    g,
                    block,
                    "longest",
                    0,
                    agf.longest,
                    format!(
                        "longest says the longest free extent has {} blocks, but the cntbt has no free extent",
                        agf.longest
                    ),
                ));
            }
        }
        Ok((_, Some(r))) if r.blockcount != agf.longest => out.push(counter_mismatch(
            "agf",
            g,
            block,
            "longest",
            u64::from(r.blockcount),
            agf.longest,
            format!(
                "longest says the longest free extent has {} blocks, but the cntbt's longest has {} (at AG block {})",
                agf.longest, r.blockcount, r.startblock
            ),
        )),
        Ok(_) => {}
        Err(e) => cross.failed("agf", "cntbt", e, out),
    }

    match rmap {
        Some(Ok(t)) if t.blocks != u64::from(agf.rmap_blocks) => out.push(counter_mismatch(
            "agf",
            g,
            block,
            "rmapblocks",
            t.blocks,
            agf.rmap_blocks,
            format!(
                "rmapblocks says the rmapbt has {} blocks, but it has {}",
                agf.rmap_blocks, t.blocks
            ),
        )),
        Some(Err(e)) => cross.failed("agf", "rmapbt", e, out),
        _ => {}
    }

    // agf_btreeblks counts the free-space and rmap btree blocks beyond
    // their roots (lazy superblock counters, always on v5).
    if let (Ok((b, _)), Ok((c, _))) = (bno, cnt) {
        let rmap_extra = match rmap {
            None => Some(0),
            Some(Ok(t)) => Some(t.blocks.saturating_sub(1)),
            Some(Err(_)) => None,
        };
        if let Some(r) = rmap_extra {
            let counted = b
                .blocks
                .saturating_sub(1)
                .saturating_add(c.blocks.saturating_sub(1))
                .saturating_add(r);
            if counted != u64::from(agf.btreeblks) {
                out.push(counter_mismatch(
                    "agf",
                    g,
                    block,
                    "btreeblks",
                    counted,
                    agf.btreeblks,
                    format!(
                        "btreeblks says the free-space{} btrees have {} blocks beyond their roots, but they have {counted} (bnobt {}, cntbt {}{})",
                        if rmap.is_some() { " and rmap" } else { "" },
                        agf.btreeblks,
                        b.blocks,
                        c.blocks,
                        match rmap {
                            Some(Ok(t)) => format!(", rmapbt {}", t.blocks),
                            _ => String::new(),
                        }
                    ),
                ));
            }
        }
    }

    match &t.refc {
        Some(Ok(r)) if r.blocks != u64::from(agf.refcount_blocks) => out.push(counter_mismatch(
            "agf",
            g,
            block,
            "refcntblocks",
            r.blocks,
            agf.refcount_blocks,
            format!(
                "refcntblocks says the refcountbt has {} blocks, but it has {}",
                agf.refcount_blocks, r.blocks
            ),
        )),
        Some(Err(e)) => cross.failed("agf", "refcountbt", e, out),
        _ => {}
    }
}

// ---------------------------------------------------------------------
// AGFL
// ---------------------------------------------------------------------

/// Checks each AG's free list: the header, and every block on the list.
pub struct AgflScrub;

impl Scrubber<Filesystem> for AgflScrub {
    fn name(&self) -> &'static str {
        "agfl"
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
        let agno = group_of(item)?;
        let g = agno.0;
        let geo = fs.geometry();
        let block = header_block(geo, AGFL_SECTOR);
        let agf = fs.read_agf(agno).map_err(read_error)?;
        let agf = (agf.value.magicnum == agf::MAGIC).then_some(agf.value);
        // The verifier checks the header, every slot (null or inside the
        // AG) and, with the AGF, that each live slot is a distinct valid
        // block past the AG headers.
        let checked = fs.read_agfl(agno, agf.as_ref()).map_err(read_error)?;
        problems_to_findings(
            "agfl",
            Some(g),
            Some(u64::from(block)),
            &checked.problems,
            out,
        );
        let agfl = &checked.value;
        if agfl.magicnum != agfl::MAGIC {
            if agf.is_none() {
                XrefFailures::default().report(
                    "agfl",
                    g,
                    "agf",
                    "the AGF has a bad magic number, so which slots are live is unknown",
                    out,
                );
            }
            return Ok(());
        }
        check_lsn(fs, "agfl", g, block, agfl.lsn, out);
        ctx.check_cancelled()?;
        let mut cross = Cross::load(fs, agno)?;
        cross.owned("agfl", block, 1, owner::FS, "the AGFL", out);
        let Some(agf) = agf else {
            cross.failed(
                "agfl",
                "agf",
                "the AGF has a bad magic number, so which slots are live is unknown",
                out,
            );
            return Ok(());
        };
        let mut seen = HashSet::new();
        for (slot, b) in agfl.active(&agf) {
            // Invalid and repeated entries were reported by the verifier.
            if !geo.verify_agbno(agno, AgBlock(b)) || !seen.insert(b) {
                continue;
            }
            let what = format!("the free-list entry in AGFL slot {slot}");
            cross.owned("agfl", b, 1, owner::AG, &what, out);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------
// AGI
// ---------------------------------------------------------------------

/// Checks each AG's inode header against the inode btrees, and its
/// unlinked lists.
pub struct AgiScrub;

impl Scrubber<Filesystem> for AgiScrub {
    fn name(&self) -> &'static str {
        "agi"
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        let g = agno.0;
        let geo = fs.geometry();
        let block = header_block(geo, AGI_SECTOR);
        let checked = fs.read_agi(agno).map_err(read_error)?;
        problems_to_findings(
            "agi",
            Some(g),
            Some(u64::from(block)),
            &checked.problems,
            out,
        );
        let agi = &checked.value;
        if agi.magicnum != agi::MAGIC {
            return Ok(());
        }
        // What xchk_agi checks beyond the read verifier.
        if agi.dirino != null::AGINO && !geo.verify_agino(agno, AgIno(agi.dirino)) {
            out.push(
                corrupt(
                    "agi",
                    g,
                    block,
                    "dirino",
                    format!(
                        "dirino {} is neither null nor an inode of AG {g} (the field is obsolete and should be null)",
                        agi.dirino
                    ),
                )
                .field("dirino", "null", agi.dirino),
            );
        }
        if agi.pad32 != 0 {
            out.push(
                corrupt(
                    "agi",
                    g,
                    block,
                    "pad32",
                    format!("the AGI padding word is {:#x}; it must be zero", agi.pad32),
                )
                .field("pad32", 0, format!("{:#x}", agi.pad32)),
            );
        }
        check_lsn(fs, "agi", g, block, agi.lsn, out);
        check_unlinked(fs, agno, agi, block, out)?;
        ctx.check_cancelled()?;

        let mut cross = Cross::load(fs, agno)?;
        let tallies = AgiTallies::walk(&mut cross);
        cross.owned("agi", block, 1, owner::FS, "the AGI", out);
        let all_roots = ag_roots(&cross.ag);
        for r in &header_roots(geo, None, Some(agi)) {
            check_root(&mut cross, "agi", block, r, &all_roots, out)?;
        }
        check_agi_counters(&mut cross, &tallies, agi, block, out);
        Ok(())
    }
}

/// What walking the AGI's trees found: the inobt's block count, inodes
/// and free inodes, and the finobt's block count and free inodes when the
/// filesystem has one.
struct AgiTallies {
    ino: Result<(TreeTally, u64, u64), Unavailable>,
    fino: Option<Result<(TreeTally, u64), Unavailable>>,
}

impl AgiTallies {
    /// Walks each tree once and records in `cross` whether the inobt is
    /// sound (inode chunk cross-references use it).
    fn walk(cross: &mut Cross<'_>) -> Self {
        let ag = &cross.ag;
        let ino = ag.inobt().and_then(|t| {
            let (mut count, mut free) = (0u64, 0u64);
            let tally = tally_tree(&t, "inobt", |r: &InobtRec| {
                count = count.saturating_add(u64::from(r.count));
                free = free.saturating_add(u64::from(r.freecount));
            })?;
            Ok((tally, count, free))
        });
        let fino = ag.fs.geometry().features.has_finobt().then(|| {
            ag.finobt().and_then(|t| {
                let mut free = 0u64;
                let tally = tally_tree(&t, "finobt", |r: &InobtRec| {
                    free = free.saturating_add(u64::from(r.freecount));
                })?;
                Ok((tally, free))
            })
        });
        cross
            .vetting
            .record("inobt", ino.as_ref().map(|_| ()).map_err(Clone::clone));
        Self { ino, fino }
    }
}

/// `agi_count`, `agi_freecount`, `agi_iblocks` and `agi_fblocks` against
/// the inode btrees (`xchk_agi_xref_icounts`, `_fiblocks`, and
/// xfs_repair's finobt free count).
fn check_agi_counters(
    cross: &mut Cross<'_>,
    t: &AgiTallies,
    agi: &Agi,
    block: u32,
    out: &mut Findings,
) {
    let g = cross.ag.group();
    let features = cross.ag.fs.geometry().features;
    let ino = &t.ino;
    match ino {
        Ok((tally, count, free)) => {
            if *count != u64::from(agi.count) {
                out.push(counter_mismatch(
                    "agi",
                    g,
                    block,
                    "count",
                    *count,
                    agi.count,
                    format!(
                        "count says AG {g} has {} inodes, but the inobt's chunks hold {count}",
                        agi.count
                    ),
                ));
            }
            if *free != u64::from(agi.freecount) {
                out.push(counter_mismatch(
                    "agi",
                    g,
                    block,
                    "freecount",
                    *free,
                    agi.freecount,
                    format!(
                        "freecount says AG {g} has {} free inodes, but the inobt's chunks have {free}",
                        agi.freecount
                    ),
                ));
            }
            if features.has_inobtcounts() && tally.blocks != u64::from(agi.iblocks) {
                out.push(counter_mismatch(
                    "agi",
                    g,
                    block,
                    "ino_blocks",
                    tally.blocks,
                    agi.iblocks,
                    format!(
                        "ino_blocks says the inobt has {} blocks, but it has {}",
                        agi.iblocks, tally.blocks
                    ),
                ));
            }
        }
        Err(e) => cross.failed("agi", "inobt", e, out),
    }
    if let Some(fino) = &t.fino {
        match fino {
            Ok((tally, free)) => {
                // Reported once: when the inobt already disagrees the
                // finobt adds nothing.
                let inobt_agrees = matches!(ino, Ok((_, _, f)) if *f == u64::from(agi.freecount));
                if *free != u64::from(agi.freecount) && (inobt_agrees || ino.is_err()) {
                    out.push(counter_mismatch(
                        "agi",
                        g,
                        block,
                        "freecount",
                        *free,
                        agi.freecount,
                        format!(
                            "freecount says AG {g} has {} free inodes, but the finobt's records have {free}",
                            agi.freecount
                        ),
                    ));
                }
                if features.has_inobtcounts() && tally.blocks != u64::from(agi.fblocks) {
                    out.push(counter_mismatch(
                        "agi",
                        g,
                        block,
                        "fino_blocks",
                        tally.blocks,
                        agi.fblocks,
                        format!(
                            "fino_blocks says the finobt has {} blocks, but it has {}",
                            agi.fblocks, tally.blocks
                        ),
                    ));
                }
            }
            Err(e) => cross.failed("agi", "finobt", e, out),
        }
    }
}

/// Follows each unlinked list (`xchk_iunlink`): every inode on it must be
/// allocated, have no links left, and point to the next inode of the same
/// bucket or to null. The walk is bounded by the AG's inode slots and stops
/// at a cycle.
fn check_unlinked(
    fs: &Filesystem,
    agno: AgNumber,
    agi: &Agi,
    block: u32,
    out: &mut Findings,
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let g = agno.0;
    let slots = geo.agino_range(agno).map_or(0, |(first, last)| {
        u64::from(last.0.saturating_sub(first.0)) + 1
    });
    let buckets = u32::try_from(agi::UNLINKED_BUCKETS).unwrap_or(64);
    for (bucket, &head) in (0u32..).zip(agi.unlinked.iter()) {
        // A head that is not a valid inode of this bucket was reported by
        // the verifier.
        if head == null::AGINO || !geo.verify_agino(agno, AgIno(head)) || head % buckets != bucket {
            continue;
        }
        let field = format!("unlinked[{bucket}]");
        let mut bad = |msg: String| {
            out.push(corrupt("agi", g, block, &field, msg).field_name(field.clone()));
        };
        let mut seen = HashSet::new();
        let mut cur = head;
        loop {
            if !seen.insert(cur) {
                bad(format!(
                    "the unlinked list of bucket {bucket} loops back to inode {cur}"
                ));
                break;
            }
            if u64::try_from(seen.len()).unwrap_or(u64::MAX) > slots {
                break;
            }
            let Some(ino) = geo.ino_make(agno, AgIno(cur)) else {
                break;
            };
            let inode = match fs.read_inode(ino) {
                Ok(i) => i,
                Err(crate::Error::Device(e)) => return Err(ScrubError::operational(e)),
                Err(e) => {
                    bad(format!(
                        "the unlinked list of bucket {bucket} reaches inode {}, which cannot be read: {e}",
                        ino.0
                    ));
                    break;
                }
            };
            let core = &inode.value.core;
            if core.magic != crate::format::dinode::MAGIC {
                bad(format!(
                    "the unlinked list of bucket {bucket} reaches inode {}, which does not hold an inode",
                    ino.0
                ));
                break;
            }
            if core.file_type() == FileType::Free {
                bad(format!(
                    "the unlinked list of bucket {bucket} reaches inode {}, which is not allocated",
                    ino.0
                ));
                break;
            }
            if core.nlink != 0 {
                bad(format!(
                    "the unlinked list of bucket {bucket} reaches inode {}, which still has {} links",
                    ino.0, core.nlink
                ));
            }
            let next = core.next_unlinked;
            if next == null::AGINO {
                break;
            }
            if !geo.verify_agino(agno, AgIno(next)) || next % buckets != bucket {
                bad(format!(
                    "inode {} on the unlinked list of bucket {bucket} points to {next}, which is not an inode of this bucket in AG {g}",
                    ino.0
                ));
                break;
            }
            cur = next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_bytes_follow_meta_uuid() {
        let s = superblock::tests::sample_sector();
        let mut sb = Superblock::from_bytes(&s).unwrap();
        assert_eq!(defined_sb_bytes(&sb), 248);
        sb.features_incompat |= incompat::META_UUID;
        assert_eq!(defined_sb_bytes(&sb), 264);
    }

    #[test]
    fn tail_bytes_are_reported_once_with_the_field() {
        let mut s = superblock::tests::sample_sector();
        let sb = Superblock::from_bytes(&s).unwrap();
        let mut out = Findings::new();
        check_sb_tail(1, &s, &sb, &mut out);
        assert!(out.is_empty());
        s[250] = 1;
        s[300] = 2;
        let sb = Superblock::from_bytes(&s).unwrap();
        check_sb_tail(1, &s, &sb, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out.as_slice()[0].code, "sb.meta_uuid");
        let mut out = Findings::new();
        s[250] = 0;
        let sb = Superblock::from_bytes(&s).unwrap();
        check_sb_tail(1, &s, &sb, &mut out);
        assert_eq!(out.as_slice()[0].code, "sb.unused");
        assert_eq!(out.as_slice()[0].location.offset, Some(300));
    }

    #[test]
    fn null_inode_spellings() {
        assert!(null_ino(0) && null_ino(u64::MAX) && !null_ino(128));
    }
}
