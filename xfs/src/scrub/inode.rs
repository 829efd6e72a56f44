//! The `inode` scrubber: the core of every allocated inode of an AG.
//!
//! As the kernel's `fs/xfs/scrub/inode.c` (`xchk_dinode`) and xfs_repair's
//! `repair/dinode.c` do, every inode the inode btree marks allocated (holes
//! of sparse chunks left out) is read and checked:
//!
//! - the read verifier (`xfs_dinode_verify`, see
//!   [`crate::format::dinode::Dinode::verify`]): magic, version 3, CRC,
//!   self-number, UUID, mode, fork formats and sizes against the file type,
//!   fork offset, extent counts, extent size hints, feature flags;
//! - what the verifier leaves to scrub and repair: `di_onlink` zero on a v3
//!   inode, no unknown `di_flags`/`di_flags2` bits, directory-only flags
//!   only on directories, file-only flags only on files, the new-rtbitmap
//!   flag only on the realtime bitmap inode, DAX only on files and
//!   directories, a project id high half only with 32-bit project ids,
//!   legacy timestamps with nanoseconds below a second, symlink targets
//!   no longer than a path;
//! - an absent attr fork's format is extents (`preen`: the kernel also
//!   accepts 0, xfs_repair rewrites it);
//! - the unlinked lists: an inode with no links must be on one of the AGI's
//!   unlinked lists, and an inode with links must not be
//!   (`xchk_inode_check_unlinked`);
//! - `di_nblocks` equals the blocks the forks map plus the blocks of their
//!   bmbts (forks that cannot be read are left to the bmap scrubbers).
//!
//! Free inodes are the inobt scrubber's: it checks that each is unused.

use super::common::{group_of, read_error, unavailable};
use super::xref::AgContext;
use crate::format::Problem;
use crate::format::agi::Agi;
use crate::format::bmbt_rec::{self, BmbtIrec};
use crate::format::btree::ialloc::{INODES_PER_CHUNK, InobtRec};
use crate::format::dinode::{BmdrRoot, FileType, Fork, ForkFormat, MAGIC, flags, flags2};
use crate::fs::{Filesystem, Inode};
use crate::types::{AgIno, AgNumber, null};
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use std::collections::HashSet;

/// Checks the core of every allocated inode of one AG.
pub struct InodeScrub;

impl Scrubber<Filesystem> for InodeScrub {
    fn name(&self) -> &'static str {
        "inode"
    }
    fn scope(&self) -> Scope {
        Scope::Group
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["agi", "inobt"]
    }
    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = AgNumber(group_of(item)?);
        let ag = AgContext::load(fs, agno)?;
        let on_lists = ag
            .agi
            .as_ref()
            .map(|a| unlinked_members(fs, agno, &a.value))
            .unwrap_or_default();
        let Some(chunks) = allocated_chunks(&ag, "inode", out) else {
            return Ok(());
        };
        for_each_allocated(fs, agno, &chunks, ctx, |inode, problems| {
            check_inode(fs, agno, inode, problems, &on_lists, out);
        })
    }
}

/// The inode chunk records of an AG's inobt, as far as the tree can be
/// walked (its own scrubber reports any damage). `None`, with an
/// `incomplete` finding, when the tree cannot be opened.
pub(crate) fn allocated_chunks(
    ag: &AgContext<'_>,
    structure: &'static str,
    out: &mut Findings,
) -> Option<Vec<InobtRec>> {
    let tree = match ag.inobt() {
        Ok(t) => t,
        Err(why) => {
            out.push(unavailable(structure, ag.group(), &why));
            return None;
        }
    };
    let mut recs = Vec::new();
    let walked = super::common::walk_quietly(&tree, "inobt", |r: &InobtRec| recs.push(*r));
    if let Err(why) = walked {
        out.push(unavailable(structure, ag.group(), &why));
    }
    Some(recs)
}

/// Calls `f` with every inode that `chunks` mark allocated, as read from
/// the image, with the read verifier's problems. Only I/O failure stops
/// the walk.
pub(crate) fn for_each_allocated(
    fs: &Filesystem,
    agno: AgNumber,
    chunks: &[InobtRec],
    ctx: &ScrubContext,
    mut f: impl FnMut(&Inode, &[Problem]),
) -> Result<(), ScrubError> {
    let geo = fs.geometry();
    let mut seen = HashSet::new();
    for rec in chunks {
        ctx.check_cancelled()?;
        for i in 0..INODES_PER_CHUNK {
            if !rec.exists(i) || rec.free & (1u64 << i) != 0 {
                continue;
            }
            let Some(agino) = rec.startino.checked_add(i) else {
                continue;
            };
            // A damaged inobt may list a chunk twice; check each inode once.
            if !seen.insert(agino) {
                continue;
            }
            let Some(ino) = geo.ino_make(agno, AgIno(agino)) else {
                continue;
            };
            match fs.read_inode(ino) {
                Ok(c) => f(&c.value, &c.problems),
                Err(crate::Error::Device(e)) => return Err(read_error(crate::Error::Device(e))),
                // An inode number past the AG: the inobt scrubber reports
                // the record.
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// The AG inodes on the AGI's unlinked lists (bounded walk; the AGI
/// scrubber reports damaged lists).
fn unlinked_members(fs: &Filesystem, agno: AgNumber, agi: &Agi) -> HashSet<u32> {
    let geo = fs.geometry();
    let mut set = HashSet::new();
    let slots = geo
        .agino_range(agno)
        .map_or(0, |(a, b)| b.0.saturating_sub(a.0).saturating_add(1));
    let limit = usize::try_from(slots).unwrap_or(usize::MAX);
    for &head in &agi.unlinked {
        let mut cur = head;
        while cur != null::AGINO && set.len() < limit && set.insert(cur) {
            let Some(ino) = geo.ino_make(agno, AgIno(cur)) else {
                break;
            };
            match fs.read_inode(ino) {
                Ok(i) if i.value.core.magic == MAGIC => cur = i.value.core.next_unlinked,
                _ => break,
            }
        }
    }
    set
}

/// Flags every inode may carry (`XFS_DIFLAG_ANY`).
const FLAGS_ANY: u16 = 0x7fff;
/// Flags2 bits this implementation knows (`XFS_DIFLAG2_ANY` before
/// metadata directories).
const FLAGS2_ANY: u64 =
    flags2::DAX | flags2::REFLINK | flags2::COWEXTSIZE | flags2::BIGTIME | flags2::NREXT64;
/// Flags only directories may carry (xfs_repair's "directory flags").
const DIR_FLAGS: u16 =
    flags::RTINHERIT | flags::PROJINHERIT | flags::NOSYMLINKS | flags::EXTSZINHERIT;
/// Flags only regular files may carry (xfs_repair's "file flags").
const FILE_FLAGS: u16 = flags::REALTIME | flags::EXTSIZE;
/// The longest symlink target (`XFS_SYMLINK_MAXLEN`).
const SYMLINK_MAXLEN: u64 = 1024;

/// A `corrupt` finding about inode `ino`.
fn inode_finding(
    agno: AgNumber,
    inode: &Inode,
    field: &str,
    expected: impl std::fmt::Display,
    actual: impl std::fmt::Display,
    message: String,
) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        "inode",
        format!("inode.{field}"),
        message,
    )
    .group(u64::from(agno.0))
    .inode(inode.ino.0)
    .field(field.to_owned(), expected, actual)
}

/// Checks one allocated inode.
fn check_inode(
    fs: &Filesystem,
    agno: AgNumber,
    inode: &Inode,
    problems: &[Problem],
    on_lists: &HashSet<u32>,
    out: &mut Findings,
) {
    let ino = inode.ino.0;
    let d = &inode.core;
    // Nothing else in a block that is not an inode means anything.
    let hopeless = |p: &Problem| p.field == "core.magic" || p.field == "v3.crc";
    let shown: Vec<&Problem> = if problems.iter().any(hopeless) {
        problems.iter().filter(|p| hopeless(p)).collect()
    } else {
        problems.iter().collect()
    };
    for p in &shown {
        out.push(inode_finding(
            agno,
            inode,
            &p.field,
            &p.expected,
            &p.actual,
            format!(
                "inode {ino}: field {} is {}, expected {}",
                p.field, p.actual, p.expected
            ),
        ));
    }
    if problems.iter().any(hopeless) {
        return;
    }
    // Without an attr fork the kernel accepts aformat 0 (older kernels left
    // it) as well as extents; xfs_repair rewrites it to extents.
    if !d.has_attr_fork() && d.aformat == 0 {
        out.push(
            Finding::new(
                FindingKind::Preen,
                "inode",
                "inode.core.aformat",
                format!(
                    "inode {ino}: the absent attr fork's format is 0 (dev); XFS reads it as \
                     extents, and xfs_repair rewrites it so"
                ),
            )
            .group(u64::from(agno.0))
            .inode(ino)
            .field("core.aformat", 2, 0),
        );
    }

    let geo = fs.geometry();
    let ftype = d.file_type();
    let mut bad = |field: &str, expected: String, actual: String, why: &str| {
        out.push(inode_finding(
            agno,
            inode,
            field,
            &expected,
            &actual,
            format!("inode {ino}: {why} (field {field} is {actual}, expected {expected})"),
        ));
    };
    if d.onlink != 0 {
        bad(
            "core.onlink",
            "0".into(),
            d.onlink.to_string(),
            "a v3 inode keeps its link count in nlink; the old 16-bit count must be zero",
        );
    }
    if d.flags & !FLAGS_ANY != 0 {
        bad(
            "core.flags",
            format!("no bits outside {FLAGS_ANY:#x}"),
            format!("{:#x}", d.flags),
            "unknown inode flags are set",
        );
    }
    if d.flags2 & !FLAGS2_ANY != 0 {
        bad(
            "v3.flags2",
            format!("no bits outside {FLAGS2_ANY:#x}"),
            format!("{:#x}", d.flags2),
            "unknown inode flags2 bits are set",
        );
    }
    if ftype != FileType::Directory && d.flags & DIR_FLAGS != 0 {
        bad(
            "core.flags",
            "no rtinherit, projinherit, nosymlinks or extszinherit".into(),
            format!("{:#x}", d.flags),
            "directory-only flags are set on a file that is not a directory",
        );
    }
    if ftype != FileType::Regular && d.flags & FILE_FLAGS != 0 {
        bad(
            "core.flags",
            "no realtime or extsize".into(),
            format!("{:#x}", d.flags),
            "regular-file-only flags are set on a file that is not a regular file",
        );
    }
    if d.flags & flags::NEWRTBM != 0 && ino != fs.superblock().rbmino {
        bad(
            "core.newrtbm",
            "0".into(),
            "1".into(),
            "the new-rtbitmap flag is set on an inode that is not the realtime bitmap",
        );
    }
    if d.flags2 & flags2::DAX != 0 && !matches!(ftype, FileType::Regular | FileType::Directory) {
        bad(
            "v3.dax",
            "0".into(),
            "1".into(),
            "the DAX flag is set on an inode that is neither a file nor a directory",
        );
    }
    if d.projid_hi != 0 && !geo.features.has_projid32() {
        bad(
            "core.projid_hi",
            "0".into(),
            d.projid_hi.to_string(),
            "a 32-bit project id on a filesystem without 32-bit project ids",
        );
    }
    if !d.has_bigtime() {
        for (field, raw) in [
            ("core.atime.nsec", d.atime_raw),
            ("core.mtime.nsec", d.mtime_raw),
            ("core.ctime.nsec", d.ctime_raw),
            ("v3.crtime.nsec", d.crtime_raw),
        ] {
            let nsec = raw & 0xffff_ffff;
            if nsec >= 1_000_000_000 {
                bad(
                    field,
                    "< 1000000000".into(),
                    nsec.to_string(),
                    "a timestamp has a nanosecond part of a second or more",
                );
            }
        }
    }
    if ftype == FileType::Symlink && d.size > SYMLINK_MAXLEN {
        bad(
            "core.size",
            format!("<= {SYMLINK_MAXLEN}"),
            d.size.to_string(),
            "a symbolic link target longer than a path may be",
        );
    }

    // Unlinked lists (xchk_inode_check_unlinked).
    let agino = geo.ino_split(inode.ino).map_or(0, |(_, a)| a.0);
    let listed = on_lists.contains(&agino) || d.next_unlinked != null::AGINO;
    if d.nlink == 0 && !listed {
        bad(
            "core.nlinkv2",
            "> 0, or the inode on an unlinked list".into(),
            "0".into(),
            "an allocated inode has no links and is not on an unlinked list: it is leaked",
        );
    }
    if d.nlink != 0 && listed {
        bad(
            "next_unlinked",
            "null (the inode has links)".into(),
            format!("{:#x}", d.next_unlinked),
            "an inode with links is on an unlinked list, and would be freed by log recovery",
        );
    }

    // di_nblocks against the forks (xfs_repair process_inode_blocks).
    if let Some(counted) = count_blocks(fs, inode)
        && counted != d.nblocks
    {
        bad(
            "core.nblocks",
            format!("{counted} (blocks mapped by the forks and their bmbts)"),
            d.nblocks.to_string(),
            "the inode's block count disagrees with its block mappings",
        );
    }
}

/// Blocks mapped by both forks plus their bmbt blocks, if both forks can be
/// read.
fn count_blocks(fs: &Filesystem, inode: &Inode) -> Option<u64> {
    let mut total = 0u64;
    for fork in [Fork::Data, Fork::Attr] {
        if fork == Fork::Attr && !inode.core.has_attr_fork() {
            continue;
        }
        total = total.checked_add(fork_blocks(fs, inode, fork)?)?;
    }
    Some(total)
}

/// Blocks one fork maps, bmbt blocks included; `None` if the fork cannot
/// be read.
pub(crate) fn fork_blocks(fs: &Filesystem, inode: &Inode, fork: Fork) -> Option<u64> {
    let d = &inode.core;
    match d.fork_format(fork) {
        ForkFormat::Local | ForkFormat::Dev | ForkFormat::Uuid => Some(0),
        ForkFormat::Extents => {
            let bytes = d.fork_bytes(&inode.raw, fork);
            let n = usize::try_from(d.extents(fork)).ok()?;
            if n > bytes.len() / bmbt_rec::SIZE {
                return None;
            }
            bytes
                .chunks_exact(bmbt_rec::SIZE)
                .take(n)
                .filter_map(BmbtIrec::unpack_slice)
                .try_fold(0u64, |a, r| a.checked_add(u64::from(r.blockcount)))
        }
        ForkFormat::Btree => {
            let root = BmdrRoot::parse(d.fork_bytes(&inode.raw, fork)).ok()?;
            let tree = fs.bmbt(inode, fork, &root).ok()?;
            let mut mapped = 0u64;
            let tally = super::xref::tally_tree(&tree, "bmbt", |r: &BmbtIrec| {
                mapped = mapped.saturating_add(u64::from(r.blockcount));
            })
            .ok()?;
            // The root lives in the inode; the walk counts only real blocks.
            mapped.checked_add(tally.blocks)
        }
        ForkFormat::Invalid(_) => None,
    }
}

/// Checks used by the inode scrubber's unit tests.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_masks_are_disjoint_where_they_must_be() {
        assert_eq!(DIR_FLAGS & FILE_FLAGS, 0);
        assert_eq!(FLAGS_ANY & 0x8000, 0);
        assert_eq!(FLAGS2_ANY, 0x1f);
    }
}
