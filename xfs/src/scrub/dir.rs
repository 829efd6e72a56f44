//! The `directory` scrubber: every directory whose inode lives in the AG,
//! in each of its forms (the kernel's `fs/xfs/scrub/dir.c` and
//! `xfs_repair`'s phase 6 directory checks).
//!
//! - **shortform**: the header (`count`, `i8count`, parent), every entry
//!   inside the directory size, offsets increasing past `.` and `..`;
//! - **block, leaf, node**: each data block's header (magic, CRC, UUID,
//!   `blkno`, owner, LSN not ahead of the log), entries and free regions
//!   tiling the block with correct tags, the best-free table naming the
//!   largest free regions; `.` and `..` first in the first block;
//! - the hash index: leaf entries in hash order, each pointing at a live
//!   entry whose name hashes to the recorded value (the ASCII
//!   case-insensitive hash on `-n version=ci` filesystems), every live
//!   entry indexed exactly once, stale counts; the leaf's best-free array
//!   (leaf form); dabtree nodes (levels, counts, hash keys equal to their
//!   children's last hash, sibling links) and leaf blocks (node form);
//!   free-index blocks (`firstdb`, `nvalid`, `nused`, each best value);
//! - every entry: a valid name, an inode number that exists and is
//!   allocated in the inode btree, a file type matching the inode's mode;
//!   `..` names an allocated directory (the root's names the root).
//!
//! Locations: `inode` is the directory, `block` the directory block's
//! offset in the directory (in filesystem blocks, as `xfs_db`'s `dblock`
//! counts), `offset` the byte offset of the entry in that block, `path`
//! the directory's path when it can be found by following `..`.

use super::common::{group_of, log_head, lsn_ahead, read_error};
use super::xref::{AgContext, Unavailable};
use crate::bmap::Extent;
use crate::dir::dir_block_starts;
use crate::error::Error;
use crate::format::btree::ialloc::{INODES_PER_CHUNK, InobtRec};
use crate::format::dinode::{FileType, Fork, ForkFormat};
use crate::format::dir2::data::{DataBlock, DataBlockContext, DataBlockKind, HEADER_SIZE};
use crate::format::dir2::leaf::{
    DA_CRC_OFFSET, Da3BlkInfo, FREE_CRC_OFFSET, FREE_MAGIC, FreeHeader, LEAF1_MAGIC, LEAFN_MAGIC,
    LeafEntry, NODE_MAGIC,
};
use crate::format::dir2::sf::Shortform;
use crate::format::dir2::{self, hashname};
use crate::format::{Problem, be16_at, be32_at, be64_at, crc, magic_str};
use crate::fs::{Filesystem, Inode};
use crate::types::{AgNumber, Ino};
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The dabtree's deepest level (`XFS_DA_NODE_MAXDEPTH`).
const DA_MAX_DEPTH: u16 = 5;
/// A leaf entry address meaning "stale" (`XFS_DIR2_NULL_DATAPTR`).
const NULL_DATAPTR: u32 = 0;
/// A best-free value meaning "no such data block" (`NULLDATAOFF`).
const NULL_BEST: u16 = 0xffff;
/// Inode magic number.
const INODE_MAGIC: u16 = 0x494e;
/// Most `..` steps taken to name a directory's path.
const MAX_PATH_DEPTH: usize = 256;

/// Checks the directories whose inodes are in one AG.
pub struct DirectoryScrub;

impl Scrubber<Filesystem> for DirectoryScrub {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["inobt"]
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        for_each_inode_of_type(
            fs,
            agno,
            FileType::Directory,
            "directory",
            ctx,
            out,
            |idx, out, inode| DirCheck::new(fs, idx, out, agno, inode).check(),
        )
    }
}

/// Calls `check` on every allocated inode of AG `agno` whose mode says
/// `ft` (and whose core decodes); if the AG's inodes cannot be listed,
/// reports that once as incomplete for `structure`.
pub(crate) fn for_each_inode_of_type<'fs>(
    fs: &'fs Filesystem,
    agno: u32,
    ft: FileType,
    structure: &'static str,
    ctx: &ScrubContext,
    out: &mut Findings,
    mut check: impl FnMut(&mut InodeIndex<'fs>, &mut Findings, &Inode) -> Result<(), ScrubError>,
) -> Result<(), ScrubError> {
    for_each_inode(fs, agno, structure, ctx, out, |idx, out, inode| {
        if inode.core.file_type() == ft {
            check(idx, out, inode)
        } else {
            Ok(())
        }
    })
}

/// Calls `check` on every allocated inode of AG `agno` whose core decodes;
/// if the AG's inodes cannot be listed, reports that once as incomplete
/// for `structure`.
pub(crate) fn for_each_inode<'fs>(
    fs: &'fs Filesystem,
    agno: u32,
    structure: &'static str,
    ctx: &ScrubContext,
    out: &mut Findings,
    mut check: impl FnMut(&mut InodeIndex<'fs>, &mut Findings, &Inode) -> Result<(), ScrubError>,
) -> Result<(), ScrubError> {
    let mut idx = InodeIndex::new(fs);
    let inos = match idx.ag_allocated(agno) {
        Ok(v) => v,
        Err(why) => {
            out.push(
                Finding::new(
                    FindingKind::Incomplete,
                    structure,
                    format!("{structure}.unavailable"),
                    format!("the inodes of AG {agno} cannot be listed: {why}"),
                )
                .group(u64::from(agno)),
            );
            return Ok(());
        }
    };
    for ino in inos {
        ctx.check_cancelled()?;
        let Some(inode) = read_inode_core(fs, ino)? else {
            continue;
        };
        check(&mut idx, out, &inode)?;
    }
    Ok(())
}

/// Reads inode `ino` if its core can be decoded and has the inode magic;
/// its own verifier's problems are the inode scrubber's to report.
pub(crate) fn read_inode_core(fs: &Filesystem, ino: Ino) -> Result<Option<Inode>, ScrubError> {
    match fs.read_inode(ino) {
        Ok(c) if c.value.core.magic == INODE_MAGIC => Ok(Some(c.value)),
        Ok(_) | Err(Error::InvalidArgument(_) | Error::Short(_)) => Ok(None),
        Err(e) => Err(read_error(e)),
    }
}

/// Which inodes are allocated, from each AG's inode btree, read once per
/// AG on first use.
pub(crate) struct InodeIndex<'fs> {
    fs: &'fs Filesystem,
    ags: HashMap<u32, Result<Vec<InobtRec>, Unavailable>>,
}

impl<'fs> InodeIndex<'fs> {
    /// An empty index.
    pub fn new(fs: &'fs Filesystem) -> Self {
        Self {
            fs,
            ags: HashMap::new(),
        }
    }

    fn records(&mut self, agno: u32) -> Result<&[InobtRec], Unavailable> {
        let fs = self.fs;
        let r = self.ags.entry(agno).or_insert_with(|| {
            let ag = AgContext::load(fs, AgNumber(agno)).map_err(|e| Unavailable(e.to_string()))?;
            let tree = ag.inobt()?;
            let mut recs = Vec::new();
            super::common::walk_quietly(&tree, "inode btree", |r: &InobtRec| recs.push(*r))?;
            recs.sort_by_key(|r| r.startino);
            Ok(recs)
        });
        r.as_ref().map(Vec::as_slice).map_err(Clone::clone)
    }

    /// Whether inode `ino` is allocated; `Ok(false)` also for inode
    /// numbers that cannot exist.
    pub fn allocated(&mut self, ino: Ino) -> Result<bool, Unavailable> {
        let Some((agno, agino)) = self.fs.geometry().ino_split(ino) else {
            return Ok(false);
        };
        let recs = self.records(agno.0)?;
        let agino = agino.0;
        let i = recs.partition_point(|r| r.startino.saturating_add(INODES_PER_CHUNK) <= agino);
        Ok(recs.get(i).is_some_and(|r| {
            r.startino <= agino && {
                let bit = agino.saturating_sub(r.startino);
                (r.free | r.hole_inodes()) & (1u64 << bit) == 0
            }
        }))
    }

    /// Every allocated inode of AG `agno`, in inode order.
    pub fn ag_allocated(&mut self, agno: u32) -> Result<Vec<Ino>, Unavailable> {
        let fs = self.fs;
        let recs = self.records(agno)?;
        let mut v = Vec::new();
        for r in recs {
            let used = !(r.free | r.hole_inodes());
            for bit in 0..INODES_PER_CHUNK {
                if used & (1u64 << bit) != 0 {
                    let agino = crate::types::AgIno(r.startino.saturating_add(bit));
                    if let Some(ino) = fs.geometry().ino_make(AgNumber(agno), agino) {
                        v.push(ino);
                    }
                }
            }
        }
        Ok(v)
    }
}

/// The name hash of `name` as the filesystem computes it: the ASCII
/// case-insensitive variant folds A-Z to lower case first.
pub(crate) fn dir_hash(fs: &Filesystem, name: &[u8]) -> u32 {
    if fs.geometry().features.has_asciici() {
        hashname(&name.to_ascii_lowercase())
    } else {
        hashname(name)
    }
}

/// The path of directory `ino`, found by following `..` up to the root
/// and looking each directory's name up in its parent. `None` when a step
/// fails (damaged directory, cycle, too deep).
pub(crate) fn path_of(fs: &Filesystem, ino: Ino) -> Option<String> {
    let root = fs.root_ino();
    let mut parts: Vec<String> = Vec::new();
    let mut cur = ino;
    let mut seen = HashSet::new();
    while cur != root {
        if parts.len() >= MAX_PATH_DEPTH || !seen.insert(cur) {
            return None;
        }
        let inode = fs.read_inode(cur).ok()?.value;
        let entries = fs.read_dir_checked(&inode).ok()?.value;
        let parent = entries.iter().find(|e| e.name == b"..")?.ino;
        let pinode = fs.read_inode(parent).ok()?.value;
        let pentries = fs.read_dir_checked(&pinode).ok()?.value;
        let me = pentries
            .iter()
            .find(|e| e.ino == cur && e.name != b"." && e.name != b"..")?;
        parts.push(me.name_lossy());
        cur = parent;
    }
    parts.reverse();
    Some(format!("/{}", parts.join("/")))
}

/// A live data entry, for matching with the hash index.
struct Live {
    hash: u32,
    dablk: u64,
    offset: usize,
    indexed: bool,
}

/// The checks of one directory.
struct DirCheck<'a, 'fs> {
    fs: &'fs Filesystem,
    idx: &'a mut InodeIndex<'fs>,
    out: &'a mut Findings,
    group: u32,
    inode: &'a Inode,
    ino: u64,
    path: Option<Option<String>>,
    has_ftype: bool,
    /// The inode btree could not be consulted (reported once).
    xref_failed: bool,
    /// Live entries by leaf address (byte offset in the data space / 8).
    live: HashMap<u32, Live>,
    /// `bestfree[0]` length of each data block, by data block index.
    bests: BTreeMap<u64, u16>,
    /// Hash of the last leaf entry seen, across leaf blocks in order.
    last_hash: Option<u32>,
    head: Option<(i32, i32)>,
}

impl<'a, 'fs> DirCheck<'a, 'fs> {
    fn new(
        fs: &'fs Filesystem,
        idx: &'a mut InodeIndex<'fs>,
        out: &'a mut Findings,
        group: u32,
        inode: &'a Inode,
    ) -> Self {
        Self {
            fs,
            idx,
            out,
            group,
            inode,
            ino: inode.ino.0,
            path: None,
            has_ftype: fs.geometry().features.has_ftype(),
            xref_failed: false,
            live: HashMap::new(),
            bests: BTreeMap::new(),
            last_hash: None,
            head: log_head(fs),
        }
    }

    /// A finding about this directory.
    fn finding(&mut self, kind: FindingKind, problem: &str, message: String) -> Finding {
        let path = self
            .path
            .get_or_insert_with(|| path_of(self.fs, Ino(self.ino)))
            .clone();
        let where_ = match &path {
            Some(p) => format!("directory {} ({p})", self.ino),
            None => format!("directory {}", self.ino),
        };
        let mut f = Finding::new(
            kind,
            "directory",
            format!("directory.{problem}"),
            format!("{where_}: {message}"),
        )
        .group(u64::from(self.group))
        .inode(self.ino);
        if let Some(p) = path {
            f = f.path(p);
        }
        f
    }

    fn corrupt(&mut self, problem: &str, block: Option<u64>, offset: Option<usize>, msg: String) {
        let mut f = self.finding(FindingKind::Corrupt, problem, msg);
        if let Some(b) = block {
            f = f.block(b);
        }
        if let Some(o) = offset {
            f = f.offset(o as u64);
        }
        self.out.push(f);
    }

    fn corrupt_field(
        &mut self,
        field: &str,
        block: Option<u64>,
        offset: Option<usize>,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
        msg: String,
    ) {
        let code = field_code(field);
        let mut f = self.finding(FindingKind::Corrupt, &code, msg).field(
            field.to_owned(),
            expected,
            actual,
        );
        if let Some(b) = block {
            f = f.block(b);
        }
        if let Some(o) = offset {
            f = f.offset(o as u64);
        }
        self.out.push(f);
    }

    fn problems(&mut self, block: Option<u64>, problems: Vec<Problem>) {
        for p in problems {
            let msg = format!(
                "{} field {} is {}, expected {}",
                p.structure, p.field, p.actual, p.expected
            );
            let field = field_code(&p.field);
            let mut f = self
                .finding(FindingKind::Corrupt, &field, msg)
                .field(p.field, p.expected, p.actual);
            if let Some(b) = block {
                f = f.block(b);
            }
            self.out.push(f);
        }
    }

    fn check(&mut self) -> Result<(), ScrubError> {
        match self.inode.core.fork_format(Fork::Data) {
            ForkFormat::Local => {
                self.check_shortform();
                Ok(())
            }
            ForkFormat::Extents | ForkFormat::Btree => self.check_blocks(),
            other => {
                self.corrupt_field(
                    "core.format",
                    None,
                    None,
                    "local, extents or btree",
                    format!("{other:?}"),
                    format!("the data fork format {other:?} cannot hold a directory"),
                );
                Ok(())
            }
        }
    }

    // ---- entries --------------------------------------------------------

    /// Checks what one entry names: the inode number, its allocation and
    /// the file type.
    fn check_entry(
        &mut self,
        name: &[u8],
        ino: u64,
        ft: Option<u8>,
        block: Option<u64>,
        offset: Option<usize>,
    ) {
        let shown = String::from_utf8_lossy(name).escape_debug().to_string();
        let geo = self.fs.geometry();
        if geo.ino_split(Ino(ino)).is_none() {
            self.corrupt_field(
                "inumber",
                block,
                offset,
                "a valid inode number",
                ino,
                format!("entry \"{shown}\" names inode {ino}, which cannot exist"),
            );
            return;
        }
        match self.idx.allocated(Ino(ino)) {
            Ok(true) => {}
            Ok(false) => {
                let mut f = self
                    .finding(
                        FindingKind::XrefCorrupt,
                        "free-inode",
                        format!(
                            "entry \"{shown}\" names inode {ino}, which the inode btree says is free"
                        ),
                    )
                    .field("inumber", "an allocated inode", ino);
                if let Some(b) = block {
                    f = f.block(b);
                }
                if let Some(o) = offset {
                    f = f.offset(o as u64);
                }
                self.out.push(f);
                return;
            }
            Err(why) => {
                if !self.xref_failed {
                    self.xref_failed = true;
                    let f = self.finding(
                        FindingKind::XrefFailed,
                        "xref-inobt",
                        format!("cannot tell whether entries name allocated inodes: {why}"),
                    );
                    self.out.push(f);
                }
                return;
            }
        }
        let Some(ft) = ft else { return };
        let target = match self.fs.read_inode(Ino(ino)) {
            Ok(c) if c.value.core.magic == INODE_MAGIC => c.value,
            _ => return,
        };
        let Some(want) = target.core.file_type().dir_ftype() else {
            return;
        };
        if ft != want {
            self.corrupt_field(
                "filetype",
                block,
                offset,
                format!("{want} ({})", dir2::ftype::name(want)),
                format!("{ft} ({})", dir2::ftype::name(ft)),
                format!(
                    "entry \"{shown}\" records file type {} but inode {ino} is a {}",
                    dir2::ftype::name(ft),
                    dir2::ftype::name(want)
                ),
            );
        }
    }

    /// Checks `..`: an allocated directory; the root's parent is the root.
    fn check_parent(&mut self, parent: u64, block: Option<u64>, offset: Option<usize>) {
        let root = self.fs.root_ino().0;
        if self.ino == root {
            if parent != root {
                self.corrupt_field(
                    "parent",
                    block,
                    offset,
                    root,
                    parent,
                    format!("the root directory's \"..\" names inode {parent}, not itself"),
                );
            }
            return;
        }
        if parent == self.ino {
            self.corrupt_field(
                "parent",
                block,
                offset,
                "another directory",
                parent,
                "\"..\" names the directory itself".to_owned(),
            );
            return;
        }
        let before = self.out.len();
        self.check_entry(b"..", parent, None, block, offset);
        if self.out.len() != before {
            return;
        }
        if let Ok(c) = self.fs.read_inode(Ino(parent))
            && c.value.core.magic == INODE_MAGIC
            && c.value.core.file_type() != FileType::Directory
        {
            self.corrupt_field(
                "parent",
                block,
                offset,
                "a directory",
                format!("inode {parent}, a {:?}", c.value.core.file_type()),
                format!("\"..\" names inode {parent}, which is not a directory"),
            );
        }
    }

    // ---- shortform ------------------------------------------------------

    fn check_shortform(&mut self) {
        let fork = self.inode.core.fork_bytes(&self.inode.raw, Fork::Data);
        let what = format!("shortform directory {}", self.ino);
        let Some(sf) = Shortform::parse(fork, self.inode.core.size, self.has_ftype, &what) else {
            self.corrupt_field(
                "core.size",
                None,
                None,
                "at least the shortform header",
                self.inode.core.size,
                "the directory is too small to hold a shortform header".to_owned(),
            );
            return;
        };
        self.problems(None, sf.problems);
        let sf = sf.value;
        self.check_parent(sf.parent, None, None);
        let i8 = sf
            .entries
            .iter()
            .filter(|e| e.ino > u64::from(u32::MAX))
            .count();
        if sf.entries.len() == usize::from(sf.count) && i8 != usize::from(sf.i8count) {
            self.corrupt_field(
                "hdr.i8count",
                None,
                None,
                i8,
                sf.i8count,
                format!(
                    "the header counts {} entries with 8-byte inode numbers, the entries hold {i8}",
                    sf.i8count
                ),
            );
        }
        // The entries, at their offsets, with a leaf entry each (and for
        // "." and "..") and the block tail, must fit one directory block:
        // otherwise the directory could not be converted to block form
        // (`xfs_dir2_sf_verify`; xfs_repair: "offsets too high").
        if let Some(last) = sf.entries.last() {
            let end = usize::from(last.offset)
                .saturating_add(dir2::data::entry_size(last.name.len(), self.has_ftype))
                .saturating_add((usize::from(sf.count).saturating_add(2)).saturating_mul(8))
                .saturating_add(8);
            let dbs = usize::try_from(self.fs.geometry().dir_block_size).unwrap_or(usize::MAX);
            if end > dbs {
                self.corrupt_field(
                    "list.offset",
                    None,
                    Some(sf.entries.len().saturating_sub(1)),
                    format!("entries that fit one {dbs}-byte directory block"),
                    format!("offset {:#x}", last.offset),
                    format!(
                        "the last entry's offset {:#x} puts the directory's block form past its {dbs}-byte block",
                        last.offset
                    ),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, e) in sf.entries.iter().enumerate() {
            if e.name == b"." || e.name == b".." {
                self.corrupt_field(
                    "list.name",
                    None,
                    Some(i),
                    "a name other than \".\" and \"..\"",
                    String::from_utf8_lossy(&e.name),
                    format!("shortform entry {i} is named \"{}\"", e.name_shown()),
                );
                continue;
            }
            if !names.insert(e.name.clone()) {
                self.corrupt(
                    "duplicate-name",
                    None,
                    Some(i),
                    format!(
                        "shortform entry {i}: the name \"{}\" appears twice",
                        e.name_shown()
                    ),
                );
            }
            self.check_entry(&e.name, e.ino, e.ftype, None, Some(i));
        }
    }

    // ---- block, leaf and node directories --------------------------------

    fn check_blocks(&mut self) -> Result<(), ScrubError> {
        let extents = match self.fs.mappings(self.inode, Fork::Data) {
            Ok(e) => e,
            Err(e @ Error::Device(_)) => return Err(read_error(e)),
            Err(e) => {
                self.corrupt(
                    "bmap",
                    None,
                    None,
                    format!("the directory's block map cannot be read: {e}"),
                );
                return Ok(());
            }
        };
        let geo = self.fs.geometry();
        let fsbs = u64::from(geo.dir_block_fsbs);
        let dbs = u64::from(geo.dir_block_size);
        let block_log = u32::from(geo.block_log);
        let leaf_fsb = dir2::LEAF_OFFSET >> block_log;
        let free_fsb = dir2::FREE_OFFSET >> block_log;
        let data = dir_block_starts(&extents, fsbs, 0, leaf_fsb);
        let leaves = dir_block_starts(&extents, fsbs, leaf_fsb, free_fsb);
        let frees = dir_block_starts(&extents, fsbs, free_fsb, u64::MAX);
        let size = self.inode.core.size;

        if data.is_empty() {
            self.corrupt(
                "no-data",
                None,
                None,
                "the directory maps no data blocks".to_owned(),
            );
            return Ok(());
        }
        let is_block = leaves.is_empty() && frees.is_empty() && data == [0];
        if is_block {
            if size != dbs {
                self.corrupt_field(
                    "core.size",
                    None,
                    None,
                    dbs,
                    size,
                    format!("a single-block directory must be {dbs} bytes long"),
                );
            }
        } else {
            let last = data.last().copied().unwrap_or(0);
            let want = last
                .saturating_add(fsbs)
                .saturating_mul(u64::from(geo.block_size));
            if size != want {
                self.corrupt_field(
                    "core.size",
                    None,
                    None,
                    want,
                    size,
                    format!(
                        "the directory's size should end with its last data block (file block {last})"
                    ),
                );
            }
        }

        let kind = if is_block {
            DataBlockKind::Block
        } else {
            DataBlockKind::Data
        };
        let mut block_leaf: Option<(Vec<u8>, DataBlock)> = None;
        for (n, &db) in data.iter().enumerate() {
            let Some((buf, daddr)) = self.read_block(&extents, db)? else {
                continue;
            };
            if let Some(b) = self.check_data_block(&buf, daddr, db, kind, n == 0)
                && is_block
            {
                block_leaf = Some((buf, b));
            }
        }

        if is_block {
            if let Some((buf, b)) = block_leaf {
                self.check_block_leaf(&buf, &b);
            }
        } else if leaves.is_empty() {
            self.corrupt(
                "no-leaf",
                Some(leaf_fsb),
                None,
                "a directory of several blocks has no hash index at the leaf offset".to_owned(),
            );
        } else {
            self.check_index(&extents, leaf_fsb, &leaves, &frees, &data)?;
        }
        self.check_unindexed();
        Ok(())
    }

    fn read_block(
        &mut self,
        extents: &[Extent],
        db: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, ScrubError> {
        match self.fs.read_dir_block(extents, db) {
            Ok(Some(x)) => Ok(Some(x)),
            Ok(None) => {
                self.corrupt(
                    "hole",
                    Some(db),
                    None,
                    format!(
                        "directory block at file block {db} is not fully mapped to valid disk blocks"
                    ),
                );
                Ok(None)
            }
            Err(e @ Error::Device(_)) => Err(read_error(e)),
            Err(e) => {
                self.corrupt("read", Some(db), None, format!("file block {db}: {e}"));
                Ok(None)
            }
        }
    }

    fn check_lsn(&mut self, lsn: u64, db: u64) {
        if let Some(head) = self.head
            && lsn_ahead(lsn, head)
        {
            self.corrupt_field(
                "lsn",
                Some(db),
                None,
                format!("<= the log head {}/{}", head.0, head.1),
                format!("{}/{}", lsn >> 32, lsn & 0xffff_ffff),
                format!("directory block {db} carries an LSN ahead of the log"),
            );
        }
    }

    /// Checks one data (or single) block; returns it decoded.
    fn check_data_block(
        &mut self,
        buf: &[u8],
        daddr: u64,
        db: u64,
        kind: DataBlockKind,
        first: bool,
    ) -> Option<DataBlock> {
        let geo = self.fs.geometry();
        let what = format!("directory block {db}");
        let ctx = DataBlockContext {
            owner: self.ino,
            daddr,
            meta_uuid: geo.meta_uuid,
            has_ftype: self.has_ftype,
            what: &what,
        };
        let Some(c) = DataBlock::parse(buf, &ctx) else {
            let want = match kind {
                DataBlockKind::Block => "XDB3",
                DataBlockKind::Data => "XDD3",
            };
            self.corrupt_field(
                "magic",
                Some(db),
                None,
                want,
                dir2::data::describe_magic(buf),
                format!("directory block {db} is not a directory data block"),
            );
            return None;
        };
        self.problems(Some(db), c.problems);
        let b = c.value;
        if b.kind != kind {
            self.corrupt_field(
                "magic",
                Some(db),
                None,
                magic_str(match kind {
                    DataBlockKind::Block => dir2::data::BLOCK_MAGIC,
                    DataBlockKind::Data => dir2::data::DATA_MAGIC,
                }),
                magic_str(b.header.magic),
                format!("directory block {db} has the wrong kind for the directory's form"),
            );
        }
        self.check_lsn(be64_at(buf, 16).unwrap_or(0), db);
        self.check_bestfree(&b, db);

        let dbs = u64::from(geo.dir_block_size);
        let index = db / u64::from(geo.dir_block_fsbs).max(1);
        self.bests.insert(index, b.bestfree[0].1);
        for (n, e) in b.entries.iter().enumerate() {
            let dot = first && n == 0;
            let dotdot = first && n == 1;
            if dot || dotdot {
                let want: &[u8] = if dot { b"." } else { b".." };
                if e.name != want {
                    self.corrupt_field(
                        "name",
                        Some(db),
                        Some(e.offset),
                        format!("\"{}\"", String::from_utf8_lossy(want)),
                        format!("\"{}\"", String::from_utf8_lossy(&e.name).escape_debug()),
                        format!(
                            "entry {n} of the first block must be \"{}\"",
                            String::from_utf8_lossy(want)
                        ),
                    );
                } else if dot && e.ino != self.ino {
                    self.corrupt_field(
                        "inumber",
                        Some(db),
                        Some(e.offset),
                        self.ino,
                        e.ino,
                        format!("\".\" names inode {}, not the directory itself", e.ino),
                    );
                } else if dotdot {
                    self.check_parent(e.ino, Some(db), Some(e.offset));
                }
                if let Some(ft) = e.ftype
                    && ft != dir2::ftype::DIR
                {
                    self.corrupt_field(
                        "filetype",
                        Some(db),
                        Some(e.offset),
                        dir2::ftype::DIR,
                        ft,
                        format!(
                            "\"{}\" must record the directory file type",
                            String::from_utf8_lossy(want)
                        ),
                    );
                }
            } else if e.name == b"." || e.name == b".." {
                self.corrupt_field(
                    "name",
                    Some(db),
                    Some(e.offset),
                    "a name other than \".\" and \"..\"",
                    String::from_utf8_lossy(&e.name),
                    format!(
                        "entry at byte {} is a misplaced \"{}\"",
                        e.offset,
                        e.name_shown()
                    ),
                );
            } else if dir2::name_is_valid(&e.name) {
                self.check_entry(&e.name, e.ino, e.ftype, Some(db), Some(e.offset));
            }
            let byte = index.saturating_mul(dbs).saturating_add(e.offset as u64);
            if let Ok(addr) = u32::try_from(byte / 8) {
                let hash = dir_hash(self.fs, &e.name);
                self.live.insert(
                    addr,
                    Live {
                        hash,
                        dablk: db,
                        offset: e.offset,
                        indexed: false,
                    },
                );
            }
        }
        Some(b)
    }

    /// The best-free table names the largest free regions, longest first;
    /// no two free regions are adjacent.
    fn check_bestfree(&mut self, b: &DataBlock, db: u64) {
        for w in b.free.windows(2) {
            if w[0].0.saturating_add(w[0].1) == w[1].0 {
                self.corrupt(
                    "free-adjacent",
                    Some(db),
                    Some(w[1].0),
                    format!(
                        "free regions at bytes {} and {} are adjacent (they should be one)",
                        w[0].0, w[1].0
                    ),
                );
            }
        }
        let bf = b.bestfree;
        for (i, &(off, len)) in bf.iter().enumerate() {
            let field = format!("bestfree[{i}]");
            if len == 0 {
                if off != 0 {
                    self.corrupt_field(
                        &format!("{field}.offset"),
                        Some(db),
                        None,
                        0,
                        off,
                        format!("unused best-free slot {i} has offset {off}"),
                    );
                }
                continue;
            }
            if i > 0 && bf[i - 1].1 < len {
                self.corrupt_field(
                    &format!("{field}.length"),
                    Some(db),
                    None,
                    format!("<= bestfree[{}].length {}", i - 1, bf[i - 1].1),
                    len,
                    "best-free slots are not longest first".to_owned(),
                );
            }
            let hit = b
                .free
                .iter()
                .any(|&(o, l)| o == usize::from(off) && l == usize::from(len));
            if !hit {
                self.corrupt_field(
                    &field,
                    Some(db),
                    None,
                    "a free region of the block",
                    format!("{len} bytes at {off}"),
                    format!("best-free slot {i} names {len} bytes at byte {off}, which is not a free region"),
                );
            }
        }
        let smallest = usize::from(bf[2].1);
        for &(o, l) in &b.free {
            let listed = bf
                .iter()
                .any(|&(bo, bl)| usize::from(bo) == o && usize::from(bl) == l);
            if !listed && l > smallest {
                self.corrupt_field(
                    "bestfree",
                    Some(db),
                    Some(o),
                    format!("a slot for the {l}-byte free region at byte {o}"),
                    format!(
                        "{:?}",
                        bf.iter().map(|&(o, l)| (o, l)).collect::<Vec<_>>()
                    ),
                    format!(
                        "the free region of {l} bytes at byte {o} is larger than the smallest best-free slot but not listed"
                    ),
                );
            }
        }
    }

    // ---- the hash index ---------------------------------------------------

    /// Checks leaf entries in order against the live data entries.
    fn check_leaf_entries(&mut self, ents: &[LeafEntry], stale: u32, dablk: u64, first_at: usize) {
        let mut nstale = 0u32;
        let geo = self.fs.geometry();
        let fsbs = u64::from(geo.dir_block_fsbs).max(1);
        let dbs = u64::from(geo.dir_block_size);
        for (i, e) in ents.iter().enumerate() {
            let at = first_at.saturating_add(i.saturating_mul(8));
            if let Some(prev) = self.last_hash
                && e.hashval < prev
            {
                self.corrupt_field(
                    "ents.hashval",
                    Some(dablk),
                    Some(at),
                    format!(">= {prev:#x}"),
                    format!("{:#x}", e.hashval),
                    format!("leaf entry {i} is out of hash order"),
                );
            }
            self.last_hash = Some(e.hashval);
            if e.address == NULL_DATAPTR {
                nstale = nstale.saturating_add(1);
                continue;
            }
            let byte = u64::from(e.address).saturating_mul(8);
            match self.live.get_mut(&e.address) {
                Some(l) if !l.indexed => {
                    l.indexed = true;
                    let want = l.hash;
                    if want != e.hashval {
                        let (d, o) = (l.dablk, l.offset);
                        self.corrupt_field(
                            "ents.hashval",
                            Some(dablk),
                            Some(at),
                            format!("{want:#x}"),
                            format!("{:#x}", e.hashval),
                            format!(
                                "leaf entry {i} records hash {:#x} for the entry at byte {o} of block {d}, whose name hashes to {want:#x}",
                                e.hashval
                            ),
                        );
                    }
                }
                Some(_) => self.corrupt_field(
                    "ents.address",
                    Some(dablk),
                    Some(at),
                    "an entry not indexed before",
                    format!("{:#x}", e.address),
                    format!("leaf entry {i} indexes a data entry a second time"),
                ),
                None => self.corrupt_field(
                    "ents.address",
                    Some(dablk),
                    Some(at),
                    "the address of a live entry",
                    format!("{:#x}", e.address),
                    format!(
                        "leaf entry {i} points at byte {} of data block {}, where no entry starts",
                        byte % dbs,
                        (byte / dbs).saturating_mul(fsbs)
                    ),
                ),
            }
        }
        if nstale != stale {
            self.corrupt_field(
                "stale",
                Some(dablk),
                None,
                nstale,
                stale,
                format!("the leaf counts {stale} stale entries, it holds {nstale}"),
            );
        }
    }

    /// Every live entry must be in the hash index.
    fn check_unindexed(&mut self) {
        let mut missing: Vec<(u64, usize)> = self
            .live
            .values()
            .filter(|l| !l.indexed)
            .map(|l| (l.dablk, l.offset))
            .collect();
        missing.sort_unstable();
        let n = missing.len();
        if let Some(&(d, o)) = missing.first() {
            self.corrupt(
                "unindexed",
                Some(d),
                Some(o),
                format!(
                    "{n} entries are missing from the hash index, the first at byte {o} of block {d}"
                ),
            );
        }
    }

    /// The leaf array and tail of a single-block directory.
    fn check_block_leaf(&mut self, buf: &[u8], b: &DataBlock) {
        let Some((count, stale)) = b.tail else { return };
        let tail_at = buf.len().saturating_sub(8);
        let start = b.entries_end;
        let ents: Vec<LeafEntry> = buf
            .get(start..tail_at)
            .unwrap_or(&[])
            .chunks_exact(8)
            .take(usize::try_from(count).unwrap_or(0))
            .map(leaf_entry)
            .collect();
        self.check_leaf_entries(&ents, stale, 0, start);
    }

    fn check_da_header(&mut self, buf: &[u8], daddr: u64, dablk: u64) -> Option<Da3BlkInfo> {
        let geo = self.fs.geometry();
        let info = Da3BlkInfo::parse(buf)?;
        if !crc::verify(buf, DA_CRC_OFFSET) {
            self.corrupt_field(
                "crc",
                Some(dablk),
                None,
                format!("{:#x}", crc::compute(buf, DA_CRC_OFFSET).unwrap_or(0)),
                format!("{:#x}", info.crc),
                format!("directory block {dablk} has a bad checksum"),
            );
        }
        if info.uuid != geo.meta_uuid {
            self.corrupt_field(
                "uuid",
                Some(dablk),
                None,
                geo.meta_uuid,
                info.uuid,
                format!("directory block {dablk} belongs to another filesystem"),
            );
        }
        if info.blkno != daddr {
            self.corrupt_field(
                "bno",
                Some(dablk),
                None,
                daddr,
                info.blkno,
                format!("directory block {dablk} records the wrong disk address"),
            );
        }
        if info.owner != self.ino {
            self.corrupt_field(
                "owner",
                Some(dablk),
                None,
                self.ino,
                info.owner,
                format!("directory block {dablk} records the wrong owner"),
            );
        }
        self.check_lsn(info.lsn, dablk);
        Some(info)
    }

    /// The hash index of a leaf or node directory, and its free index.
    fn check_index(
        &mut self,
        extents: &[Extent],
        leaf_fsb: u64,
        leaves: &[u64],
        frees: &[u64],
        data: &[u64],
    ) -> Result<(), ScrubError> {
        let Some((buf, daddr)) = self.read_block(extents, leaf_fsb)? else {
            return Ok(());
        };
        let magic = be16_at(&buf, 8).unwrap_or(0);
        let mut visited = HashSet::new();
        let mut levels: BTreeMap<u16, Vec<(u64, u32, u32)>> = BTreeMap::new();
        match magic {
            LEAF1_MAGIC => {
                visited.insert(leaf_fsb);
                self.check_leaf1(&buf, daddr, leaf_fsb, data);
                if let Some(&f) = frees.first() {
                    self.corrupt(
                        "free-index",
                        Some(f),
                        None,
                        "a leaf-form directory has a free-index block".to_owned(),
                    );
                }
            }
            NODE_MAGIC | LEAFN_MAGIC => {
                self.walk_da(extents, leaf_fsb, None, 0, &mut visited, &mut levels)?;
                self.check_siblings(&levels);
                self.check_free_index(extents, frees, data)?;
            }
            _ => {
                self.corrupt_field(
                    "magic",
                    Some(leaf_fsb),
                    None,
                    "a leaf or dabtree node (0x3df1, 0x3dff or 0x3ebe)",
                    format!("{magic:#x}"),
                    "the first block of the hash index is neither a leaf nor a node".to_owned(),
                );
                // Entries cannot be matched without an index.
                for l in self.live.values_mut() {
                    l.indexed = true;
                }
                return Ok(());
            }
        }
        for &l in leaves {
            if !visited.contains(&l) {
                self.corrupt(
                    "leaf-orphan",
                    Some(l),
                    None,
                    format!("hash index block {l} is mapped but not part of the index"),
                );
            }
        }
        Ok(())
    }

    /// The single leaf of a leaf-form directory, with its best-free array.
    fn check_leaf1(&mut self, buf: &[u8], daddr: u64, dablk: u64, data: &[u64]) {
        let Some(info) = self.check_da_header(buf, daddr, dablk) else {
            return;
        };
        if info.forw != 0 || info.back != 0 {
            self.corrupt_field(
                "info.forw",
                Some(dablk),
                None,
                "0/0",
                format!("{}/{}", info.forw, info.back),
                "the only leaf of a leaf directory has siblings".to_owned(),
            );
        }
        let count = usize::from(be16_at(buf, 56).unwrap_or(0));
        let stale = be16_at(buf, 58).unwrap_or(0);
        let tail_at = buf.len().saturating_sub(4);
        let bestcount = usize::try_from(be32_at(buf, tail_at).unwrap_or(0)).unwrap_or(usize::MAX);
        let bests_at = tail_at.checked_sub(bestcount.saturating_mul(2));
        let ents_end = HEADER_SIZE.saturating_add(count.saturating_mul(8));
        let Some(bests_at) = bests_at.filter(|&b| b >= ents_end) else {
            self.corrupt_field(
                "count",
                Some(dablk),
                None,
                "entries and best-free array that fit the block",
                format!("count {count}, bestcount {bestcount}"),
                "the leaf's entries and best-free array overrun the block".to_owned(),
            );
            return;
        };
        let ents: Vec<LeafEntry> = buf
            .get(HEADER_SIZE..ents_end)
            .unwrap_or(&[])
            .chunks_exact(8)
            .map(leaf_entry)
            .collect();
        self.check_leaf_entries(&ents, u32::from(stale), dablk, HEADER_SIZE);
        let fsbs = u64::from(self.fs.geometry().dir_block_fsbs).max(1);
        let ndata = data.last().map_or(0, |&d| d / fsbs + 1);
        if bestcount as u64 != ndata {
            self.corrupt_field(
                "ltail.bestcount",
                Some(dablk),
                None,
                ndata,
                bestcount,
                format!("the leaf's best-free array should cover {ndata} data blocks"),
            );
            return;
        }
        for i in 0..bestcount {
            let got = be16_at(buf, bests_at.saturating_add(i.saturating_mul(2))).unwrap_or(0);
            let want = self.bests.get(&(i as u64)).copied().unwrap_or(NULL_BEST);
            if got != want {
                self.corrupt_field(
                    &format!("lbests[{i}]"),
                    Some(dablk),
                    None,
                    want,
                    got,
                    format!(
                        "the leaf's best free for data block {i} is {got}, the block's is {want}"
                    ),
                );
            }
        }
    }

    /// Walks the dabtree from `dablk`; returns the largest hash below it.
    fn walk_da(
        &mut self,
        extents: &[Extent],
        dablk: u64,
        want_level: Option<u16>,
        depth: u16,
        visited: &mut HashSet<u64>,
        levels: &mut BTreeMap<u16, Vec<(u64, u32, u32)>>,
    ) -> Result<Option<u32>, ScrubError> {
        let geo = self.fs.geometry();
        let leaf_fsb = dir2::LEAF_OFFSET >> geo.block_log;
        let free_fsb = dir2::FREE_OFFSET >> geo.block_log;
        if dablk < leaf_fsb || dablk >= free_fsb {
            self.corrupt(
                "node-pointer",
                Some(dablk),
                None,
                format!("a dabtree pointer names file block {dablk}, outside the hash index space"),
            );
            return Ok(None);
        }
        if depth > DA_MAX_DEPTH || !visited.insert(dablk) {
            self.corrupt(
                "node-cycle",
                Some(dablk),
                None,
                format!("dabtree block {dablk} is reached twice or too deep"),
            );
            return Ok(None);
        }
        let Some((buf, daddr)) = self.read_block(extents, dablk)? else {
            return Ok(None);
        };
        let magic = be16_at(&buf, 8).unwrap_or(0);
        match magic {
            LEAFN_MAGIC => {
                if let Some(l) = want_level
                    && l != 0
                {
                    self.corrupt_field(
                        "level",
                        Some(dablk),
                        None,
                        l,
                        0,
                        format!("a node of level {} points at a leaf", l.saturating_add(1)),
                    );
                }
                let Some(info) = self.check_da_header(&buf, daddr, dablk) else {
                    return Ok(None);
                };
                levels
                    .entry(0)
                    .or_default()
                    .push((dablk, info.forw, info.back));
                let count = usize::from(be16_at(&buf, 56).unwrap_or(0));
                let stale = be16_at(&buf, 58).unwrap_or(0);
                let max = buf.len().saturating_sub(HEADER_SIZE) / 8;
                if count > max {
                    self.corrupt_field(
                        "count",
                        Some(dablk),
                        None,
                        format!("<= {max}"),
                        count,
                        "the leaf holds more entries than fit".to_owned(),
                    );
                    return Ok(None);
                }
                let ents: Vec<LeafEntry> = buf[HEADER_SIZE..]
                    .chunks_exact(8)
                    .take(count)
                    .map(leaf_entry)
                    .collect();
                self.check_leaf_entries(&ents, u32::from(stale), dablk, HEADER_SIZE);
                Ok(ents.last().map(|e| e.hashval))
            }
            NODE_MAGIC => {
                let Some(info) = self.check_da_header(&buf, daddr, dablk) else {
                    return Ok(None);
                };
                let count = usize::from(be16_at(&buf, 56).unwrap_or(0));
                let level = be16_at(&buf, 58).unwrap_or(0);
                if level == 0 || level > DA_MAX_DEPTH || want_level.is_some_and(|w| w != level) {
                    self.corrupt_field(
                        "hdr.level",
                        Some(dablk),
                        None,
                        want_level.map_or(format!("1..={DA_MAX_DEPTH}"), |w| w.to_string()),
                        level,
                        format!("dabtree node {dablk} has the wrong level"),
                    );
                    return Ok(None);
                }
                levels
                    .entry(level)
                    .or_default()
                    .push((dablk, info.forw, info.back));
                let max = buf.len().saturating_sub(HEADER_SIZE) / 8;
                if count == 0 || count > max {
                    self.corrupt_field(
                        "hdr.count",
                        Some(dablk),
                        None,
                        format!("1..={max}"),
                        count,
                        format!("dabtree node {dablk} has an impossible entry count"),
                    );
                    return Ok(None);
                }
                let mut prev: Option<u32> = None;
                let mut last = None;
                for i in 0..count {
                    let at = HEADER_SIZE.saturating_add(i.saturating_mul(8));
                    let hash = be32_at(&buf, at).unwrap_or(0);
                    let before = u64::from(be32_at(&buf, at.saturating_add(4)).unwrap_or(0));
                    if prev.is_some_and(|p| hash < p) {
                        self.corrupt_field(
                            "btree.hashval",
                            Some(dablk),
                            Some(at),
                            format!(">= {:#x}", prev.unwrap_or(0)),
                            format!("{hash:#x}"),
                            format!("node entry {i} is out of hash order"),
                        );
                    }
                    prev = Some(hash);
                    let child = self.walk_da(
                        extents,
                        before,
                        Some(level.saturating_sub(1)),
                        depth.saturating_add(1),
                        visited,
                        levels,
                    )?;
                    if let Some(c) = child
                        && c != hash
                    {
                        self.corrupt_field(
                            "btree.hashval",
                            Some(dablk),
                            Some(at),
                            format!("{c:#x}"),
                            format!("{hash:#x}"),
                            format!(
                                "node entry {i} records hash {hash:#x}, but the largest hash below it is {c:#x}"
                            ),
                        );
                    }
                    last = Some(hash);
                }
                Ok(last)
            }
            _ => {
                self.corrupt_field(
                    "magic",
                    Some(dablk),
                    None,
                    "a dabtree node or leaf (0x3ebe or 0x3dff)",
                    format!("{magic:#x}"),
                    format!("hash index block {dablk} is neither a node nor a leaf"),
                );
                Ok(None)
            }
        }
    }

    /// Each level's blocks link to their neighbours in hash order.
    fn check_siblings(&mut self, levels: &BTreeMap<u16, Vec<(u64, u32, u32)>>) {
        for (level, blocks) in levels {
            for (i, &(dablk, forw, back)) in blocks.iter().enumerate() {
                let want_back = i
                    .checked_sub(1)
                    .and_then(|j| blocks.get(j))
                    .map_or(0, |b| b.0);
                let want_forw = blocks.get(i.saturating_add(1)).map_or(0, |b| b.0);
                if u64::from(back) != want_back || u64::from(forw) != want_forw {
                    self.corrupt_field(
                        "info.forw",
                        Some(dablk),
                        None,
                        format!("{want_back}/{want_forw}"),
                        format!("{back}/{forw}"),
                        format!(
                            "dabtree block {dablk} (level {level}) has the wrong sibling links (back/forw)"
                        ),
                    );
                }
            }
        }
    }

    /// The free-index blocks of a node directory.
    fn check_free_index(
        &mut self,
        extents: &[Extent],
        frees: &[u64],
        data: &[u64],
    ) -> Result<(), ScrubError> {
        let geo = self.fs.geometry();
        let fsbs = u64::from(geo.dir_block_fsbs).max(1);
        let free_fsb = dir2::FREE_OFFSET >> geo.block_log;
        let maxbests = (u64::from(geo.dir_block_size).saturating_sub(64)) / 2;
        let ndata = data.last().map_or(0, |&d| d / fsbs + 1);
        let mut covered = 0u64;
        if frees.is_empty() {
            self.corrupt(
                "free-index",
                Some(free_fsb),
                None,
                "a node-form directory has no free-index block".to_owned(),
            );
            return Ok(());
        }
        for &f in frees {
            let Some((buf, daddr)) = self.read_block(extents, f)? else {
                continue;
            };
            let Some(h) = FreeHeader::parse(&buf) else {
                self.corrupt_field(
                    "magic",
                    Some(f),
                    None,
                    magic_str(FREE_MAGIC),
                    dir2::data::describe_magic(&buf),
                    format!("free-index block {f} has the wrong magic number"),
                );
                continue;
            };
            if !crc::verify(&buf, FREE_CRC_OFFSET) {
                self.corrupt_field(
                    "crc",
                    Some(f),
                    None,
                    format!("{:#x}", crc::compute(&buf, FREE_CRC_OFFSET).unwrap_or(0)),
                    format!("{:#x}", h.crc),
                    format!("free-index block {f} has a bad checksum"),
                );
            }
            let uuid = dir2::data::Dir3BlkHdr::parse(&buf).map(|x| x.uuid);
            if uuid != Some(geo.meta_uuid) {
                self.corrupt_field(
                    "uuid",
                    Some(f),
                    None,
                    geo.meta_uuid,
                    uuid.map_or_else(|| "none".to_owned(), |u| u.to_string()),
                    format!("free-index block {f} belongs to another filesystem"),
                );
            }
            if h.blkno != daddr {
                self.corrupt_field(
                    "bno",
                    Some(f),
                    None,
                    daddr,
                    h.blkno,
                    format!("free-index block {f} records the wrong disk address"),
                );
            }
            if h.owner != self.ino {
                self.corrupt_field(
                    "owner",
                    Some(f),
                    None,
                    self.ino,
                    h.owner,
                    format!("free-index block {f} records the wrong owner"),
                );
            }
            self.check_lsn(be64_at(&buf, 16).unwrap_or(0), f);
            let k = (f.saturating_sub(free_fsb)) / fsbs;
            let firstdb = k.saturating_mul(maxbests);
            if u64::from(h.firstdb) != firstdb {
                self.corrupt_field(
                    "fhdr.firstdb",
                    Some(f),
                    None,
                    firstdb,
                    h.firstdb,
                    format!("free-index block {f} should start at data block {firstdb}"),
                );
                continue;
            }
            let nvalid = u64::from(h.nvalid);
            let want_valid = ndata.saturating_sub(firstdb).min(maxbests);
            if nvalid > maxbests || nvalid < want_valid {
                self.corrupt_field(
                    "fhdr.nvalid",
                    Some(f),
                    None,
                    format!("{want_valid}..={maxbests}"),
                    nvalid,
                    format!("free-index block {f} describes {nvalid} data blocks"),
                );
                continue;
            }
            let mut used = 0u64;
            for i in 0..nvalid {
                let at = usize::try_from(64u64.saturating_add(i.saturating_mul(2)))
                    .unwrap_or(usize::MAX);
                let got = be16_at(&buf, at).unwrap_or(0);
                let db = firstdb.saturating_add(i);
                let want = self.bests.get(&db).copied().unwrap_or(NULL_BEST);
                if got != NULL_BEST {
                    used = used.saturating_add(1);
                }
                if got != want {
                    self.corrupt_field(
                        &format!("bests[{i}]"),
                        Some(f),
                        Some(at),
                        want,
                        got,
                        format!(
                            "the free index says data block {db} has {got} bytes free at most; the block says {want}"
                        ),
                    );
                }
            }
            covered = covered.max(firstdb.saturating_add(nvalid));
            if used != u64::from(h.nused) {
                self.corrupt_field(
                    "fhdr.nused",
                    Some(f),
                    None,
                    used,
                    h.nused,
                    format!(
                        "free-index block {f} counts {} used slots, it has {used}",
                        h.nused
                    ),
                );
            }
        }
        if covered < ndata {
            self.corrupt(
                "free-index",
                None,
                None,
                format!("the free index covers {covered} of the {ndata} data blocks"),
            );
        }
        Ok(())
    }
}

fn leaf_entry(c: &[u8]) -> LeafEntry {
    LeafEntry {
        hashval: be32_at(c, 0).unwrap_or(0),
        address: be32_at(c, 4).unwrap_or(0),
    }
}

/// A stable problem code from a verifier field name: `du[64].tag` ->
/// `tag`, `hdr.i8count` -> `hdr.i8count`.
fn field_code(field: &str) -> String {
    let mut s = String::with_capacity(field.len());
    let mut depth = 0u32;
    for ch in field.chars() {
        match ch {
            '[' => depth = depth.saturating_add(1),
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => s.push(c),
            _ => {}
        }
    }
    s.trim_start_matches('.')
        .trim_start_matches("du.")
        .trim_start_matches("list.")
        .to_owned()
}

/// Display helpers for names.
trait NameShown {
    fn name_shown(&self) -> String;
}

impl NameShown for dir2::sf::SfEntry {
    fn name_shown(&self) -> String {
        String::from_utf8_lossy(&self.name)
            .escape_debug()
            .to_string()
    }
}

impl NameShown for dir2::data::DataEntry {
    fn name_shown(&self) -> String {
        String::from_utf8_lossy(&self.name)
            .escape_debug()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_codes() {
        assert_eq!(field_code("du[64].tag"), "tag");
        assert_eq!(field_code("list[3].name"), "name");
        assert_eq!(field_code("hdr.i8count"), "hdr.i8count");
        assert_eq!(field_code("crc"), "crc");
    }
}
