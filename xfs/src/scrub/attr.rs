//! The `xattr` scrubber: the extended attributes of every inode of an AG,
//! as the kernel's `fs/xfs/scrub/attr.c` and xfs_repair's attribute
//! checks see them.
//!
//! - Shortform forks: the header's total size against the fork and the
//!   entries, each entry inside it, names valid, flags known.
//! - Leaf and node forks: every dabtree block's v5 header (CRC, UUID, disk
//!   address, owner, LSN, padding), node levels, counts, hash order and
//!   the hash each node records for its child, sibling links per level;
//!   in each leaf the entries (hash order across the whole fork, the name
//!   hash, flags, padding), the name records (inside the block, not
//!   overlapping each other or the header), `usedbytes`, `firstused` and
//!   the free map.
//! - Remote values: each block mapped, its header (magic, CRC, UUID,
//!   owner, disk address, LSN) and its offset and byte count against the
//!   value length the entry records.
//!
//! Findings name the inode; `block` is the attribute fork block (dabtree
//! block number) and `offset` the byte offset in it.

use super::common::{group_of, log_head, lsn_ahead, read_error};
use super::dir::for_each_inode;
use crate::bmap::{Extent, find_extent};
use crate::error::Error;
use crate::format::attr::{
    FLAG_INCOMPLETE, FLAG_LOCAL, FLAG_ROOT, FLAG_SECURE, LEAF_ENTRY_SIZE, LEAF_HDR_SIZE,
    LEAF_MAGIC, LeafEntry, LeafHeader, LeafName, RMT_CRC_OFFSET, RMT_HDR_SIZE, RMT_MAGIC,
    RmtHeader, SF_HDR_SIZE, SfEntry, SfHeader, name_is_valid,
};
use crate::format::dinode::{Fork, ForkFormat};
use crate::format::dir2::hashname;
use crate::format::dir2::leaf::{DA_CRC_OFFSET, Da3BlkInfo, HEADER_SIZE, NODE_MAGIC};
use crate::format::{be16_at, be32_at, crc};
use crate::fs::{Filesystem, Inode};
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use std::collections::{BTreeMap, HashSet};

/// Deepest dabtree (`XFS_DA_NODE_MAXDEPTH`).
const DA_MAX_DEPTH: u16 = 5;
/// Largest attribute value (`XATTR_SIZE_MAX`).
const MAX_VALUE_LEN: u32 = 65536;

/// Checks the extended attributes of the inodes of one AG.
pub struct XattrScrub;

impl Scrubber<Filesystem> for XattrScrub {
    fn name(&self) -> &'static str {
        "xattr"
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
        for_each_inode(fs, agno, "xattr", ctx, out, |_, out, inode| {
            if inode.core.has_attr_fork() {
                AttrCheck::new(fs, out, agno, inode).check()
            } else {
                Ok(())
            }
        })
    }
}

/// The checks of one inode's attribute fork.
struct AttrCheck<'a> {
    fs: &'a Filesystem,
    out: &'a mut Findings,
    group: u32,
    inode: &'a Inode,
    ino: u64,
    head: Option<(i32, i32)>,
    /// Hash of the last leaf entry seen, across leaves in tree order.
    last_hash: Option<u32>,
}

impl<'a> AttrCheck<'a> {
    fn new(fs: &'a Filesystem, out: &'a mut Findings, group: u32, inode: &'a Inode) -> Self {
        Self {
            fs,
            out,
            group,
            inode,
            ino: inode.ino.0,
            head: log_head(fs),
            last_hash: None,
        }
    }

    /// Reports corruption of `field` (`problem` is the code's tail).
    #[allow(clippy::too_many_arguments)]
    fn corrupt(
        &mut self,
        field: &str,
        block: Option<u64>,
        offset: Option<usize>,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
        msg: String,
    ) {
        let code: String = field
            .chars()
            .filter(|c| !c.is_ascii_digit() && *c != '[' && *c != ']')
            .collect();
        let mut f = Finding::new(
            FindingKind::Corrupt,
            "xattr",
            format!("xattr.{code}"),
            format!("inode {}: {msg}", self.ino),
        )
        .group(u64::from(self.group))
        .inode(self.ino)
        .field(field.to_owned(), expected, actual);
        if let Some(b) = block {
            f = f.block(b);
        }
        if let Some(o) = offset {
            f = f.offset(o as u64);
        }
        self.out.push(f);
    }

    fn check(&mut self) -> Result<(), ScrubError> {
        match self.inode.core.fork_format(Fork::Attr) {
            ForkFormat::Local => {
                self.check_shortform();
                Ok(())
            }
            ForkFormat::Extents | ForkFormat::Btree => self.check_blocks(),
            other => {
                self.corrupt(
                    "core.aformat",
                    None,
                    None,
                    "local, extents or btree",
                    format!("{other:?}"),
                    format!("the attribute fork format {other:?} cannot hold attributes"),
                );
                Ok(())
            }
        }
    }

    // ---- shortform ------------------------------------------------------

    fn check_shortform(&mut self) {
        let fork = self.inode.core.fork_bytes(&self.inode.raw, Fork::Attr);
        let Some(h) = SfHeader::parse(fork) else {
            self.corrupt(
                "hdr.totsize",
                None,
                None,
                format!(">= {SF_HDR_SIZE} bytes of fork"),
                fork.len(),
                "the attribute fork is too small for a shortform header".to_owned(),
            );
            return;
        };
        let totsize = usize::from(h.totsize);
        if totsize < SF_HDR_SIZE || totsize > fork.len() {
            self.corrupt(
                "hdr.totsize",
                None,
                Some(0),
                format!("{SF_HDR_SIZE}..={}", fork.len()),
                totsize,
                "the shortform attributes do not fit the attribute fork".to_owned(),
            );
            return;
        }
        let area = &fork[..totsize];
        let mut at = SF_HDR_SIZE;
        for i in 0..usize::from(h.count) {
            // An entry needs its 3-byte header and at least one name byte
            // before the end (`xfs_attr_shortform_verify`).
            let Some(e) = SfEntry::parse(area, at).filter(|_| at + 3 < totsize) else {
                self.corrupt(
                    "hdr.count",
                    None,
                    Some(at),
                    format!("entries that fit {totsize} bytes"),
                    h.count,
                    format!("shortform entry {i} starts past the end of the attributes"),
                );
                return;
            };
            let next = at + e.size();
            if e.namelen == 0 {
                self.corrupt(
                    &format!("list[{i}].namelen"),
                    None,
                    Some(at),
                    "1..=255",
                    0,
                    format!("shortform entry {i} has an empty name"),
                );
                return;
            }
            if next > totsize {
                self.corrupt(
                    &format!("list[{i}].valuelen"),
                    None,
                    Some(at),
                    format!("an entry ending by byte {totsize}"),
                    format!("an entry ending at byte {next}"),
                    format!(
                        "shortform entry {i} (name {} bytes, value {} bytes) runs past the end of the attributes",
                        e.namelen, e.valuelen
                    ),
                );
                return;
            }
            self.check_flags(
                &format!("list[{i}].flags"),
                e.flags,
                FLAG_ROOT | FLAG_SECURE,
                None,
                Some(at),
            );
            let name = e.name(area).unwrap_or_default();
            if !name_is_valid(name) {
                self.corrupt(
                    &format!("list[{i}].name"),
                    None,
                    Some(at + 3),
                    "1..=255 bytes without NUL",
                    format!("{:?}", String::from_utf8_lossy(name)),
                    format!("shortform entry {i} has an invalid name"),
                );
            }
            at = next;
        }
        if at != totsize {
            self.corrupt(
                "hdr.totsize",
                None,
                Some(0),
                at,
                totsize,
                format!(
                    "the {} shortform entries end at byte {at}, but the header says {totsize}",
                    h.count
                ),
            );
        }
    }

    /// Flags outside `allowed` (plus the namespace rule: at most one of
    /// `trusted` and `security`).
    fn check_flags(
        &mut self,
        field: &str,
        flags: u8,
        allowed: u8,
        block: Option<u64>,
        offset: Option<usize>,
    ) {
        if flags & !allowed != 0 {
            self.corrupt(
                field,
                block,
                offset,
                format!("only bits of {allowed:#x}"),
                format!("{flags:#x}"),
                format!("attribute flags {flags:#x} have unknown bits"),
            );
        } else if flags & FLAG_ROOT != 0 && flags & FLAG_SECURE != 0 {
            self.corrupt(
                field,
                block,
                offset,
                "one namespace",
                format!("{flags:#x}"),
                "an attribute is in both the trusted and the security namespace".to_owned(),
            );
        }
    }

    // ---- blocks ---------------------------------------------------------

    fn check_blocks(&mut self) -> Result<(), ScrubError> {
        let extents = match self.fs.mappings(self.inode, Fork::Attr) {
            Ok(e) => e,
            Err(e @ Error::Device(_)) => return Err(read_error(e)),
            // The bmapbta scrubber reports a fork that cannot be mapped.
            Err(_) => return Ok(()),
        };
        if extents.is_empty() {
            return Ok(());
        }
        let Some((buf, daddr)) = self.read_block(&extents, 0)? else {
            return Ok(());
        };
        match be16_at(&buf, 8).unwrap_or(0) {
            LEAF_MAGIC => {
                if let Some(info) = self.check_leaf(&extents, &buf, daddr, 0)?
                    && (info.forw != 0 || info.back != 0)
                {
                    self.corrupt(
                        "hdr.info.hdr.forw",
                        Some(0),
                        None,
                        "0/0",
                        format!("{}/{}", info.back, info.forw),
                        "the only leaf of the attribute fork has sibling links (back/forw)"
                            .to_owned(),
                    );
                }
            }
            NODE_MAGIC => {
                let mut levels = BTreeMap::new();
                let mut visited = HashSet::new();
                self.walk_node(&extents, 0, None, 0, &mut visited, &mut levels)?;
                self.check_siblings(&levels);
            }
            magic => self.corrupt(
                "hdr.info.hdr.magic",
                Some(0),
                None,
                format!("{LEAF_MAGIC:#x} or {NODE_MAGIC:#x}"),
                format!("{magic:#x}"),
                "the first attribute block is neither a leaf nor a dabtree node".to_owned(),
            ),
        }
        Ok(())
    }

    /// Reads attribute fork block `dablk`; `None` (reported) when it is
    /// not mapped to a valid disk block.
    fn read_block(
        &mut self,
        extents: &[Extent],
        dablk: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, ScrubError> {
        let geo = self.fs.geometry();
        let fsb = find_extent(extents, dablk)
            .and_then(|e| e.fsb_for(dablk))
            .filter(|&f| geo.verify_fsb_extent(f, 1));
        let Some(fsb) = fsb else {
            self.corrupt(
                "hole",
                Some(dablk),
                None,
                "a mapped block",
                "a hole",
                format!("attribute fork block {dablk} is not mapped to a valid disk block"),
            );
            return Ok(None);
        };
        let daddr = geo.fsb_to_daddr(fsb).map_or(0, |d| d.0);
        match self.fs.read_fsblocks(fsb, 1) {
            Ok(buf) => Ok(Some((buf, daddr))),
            Err(e @ Error::Device(_)) => Err(read_error(e)),
            Err(e) => {
                self.corrupt(
                    "read",
                    Some(dablk),
                    None,
                    "a readable block",
                    e.to_string(),
                    format!("attribute fork block {dablk} cannot be read"),
                );
                Ok(None)
            }
        }
    }

    fn check_lsn(&mut self, field: &str, lsn: u64, dablk: u64) {
        if let Some(head) = self.head
            && lsn_ahead(lsn, head)
        {
            self.corrupt(
                field,
                Some(dablk),
                None,
                format!("<= the log head {}/{}", head.0, head.1),
                format!("{}/{}", lsn >> 32, lsn & 0xffff_ffff),
                format!("attribute block {dablk} carries an LSN ahead of the log"),
            );
        }
    }

    /// The v5 header every dabtree block (leaf or node) carries.
    fn check_da_header(&mut self, buf: &[u8], daddr: u64, dablk: u64) -> Option<Da3BlkInfo> {
        let info = Da3BlkInfo::parse(buf)?;
        let uuid = self.fs.geometry().meta_uuid;
        if !crc::verify(buf, DA_CRC_OFFSET) {
            self.corrupt(
                "hdr.info.crc",
                Some(dablk),
                None,
                format!("{:#x}", crc::compute(buf, DA_CRC_OFFSET).unwrap_or(0)),
                format!("{:#x}", info.crc),
                format!("attribute block {dablk} has a bad checksum"),
            );
        }
        if info.uuid != uuid {
            self.corrupt(
                "hdr.info.uuid",
                Some(dablk),
                None,
                uuid,
                info.uuid,
                format!("attribute block {dablk} belongs to another filesystem"),
            );
        }
        if info.blkno != daddr {
            self.corrupt(
                "hdr.info.bno",
                Some(dablk),
                None,
                daddr,
                info.blkno,
                format!("attribute block {dablk} records the wrong disk address"),
            );
        }
        if info.owner != self.ino {
            self.corrupt(
                "hdr.info.owner",
                Some(dablk),
                None,
                self.ino,
                info.owner,
                format!("attribute block {dablk} records the wrong owner"),
            );
        }
        let pad = be16_at(buf, 10).unwrap_or(0);
        if pad != 0 {
            self.corrupt(
                "hdr.info.hdr.pad",
                Some(dablk),
                Some(10),
                0,
                pad,
                format!("attribute block {dablk} has non-zero header padding"),
            );
        }
        self.check_lsn("hdr.info.lsn", info.lsn, dablk);
        Some(info)
    }

    /// Walks the dabtree below node `dablk`; returns the largest hash
    /// found below it.
    fn walk_node(
        &mut self,
        extents: &[Extent],
        dablk: u64,
        want_level: Option<u16>,
        depth: u16,
        visited: &mut HashSet<u64>,
        levels: &mut BTreeMap<u16, Vec<(u64, u32, u32)>>,
    ) -> Result<Option<u32>, ScrubError> {
        if depth > DA_MAX_DEPTH || !visited.insert(dablk) {
            self.corrupt(
                "btree.before",
                Some(dablk),
                None,
                "a block reached once",
                "a cycle or a tree too deep",
                format!("dabtree block {dablk} is reached twice or too deep"),
            );
            return Ok(None);
        }
        let Some((buf, daddr)) = self.read_block(extents, dablk)? else {
            return Ok(None);
        };
        let magic = be16_at(&buf, 8).unwrap_or(0);
        match (magic, want_level) {
            (LEAF_MAGIC, None | Some(0)) => {
                let Some(info) = self.check_leaf(extents, &buf, daddr, dablk)? else {
                    return Ok(None);
                };
                levels
                    .entry(0)
                    .or_default()
                    .push((dablk, info.forw, info.back));
                Ok(self.last_hash)
            }
            (NODE_MAGIC, _) => {
                let Some(info) = self.check_da_header(&buf, daddr, dablk) else {
                    return Ok(None);
                };
                let count = usize::from(be16_at(&buf, 56).unwrap_or(0));
                let level = be16_at(&buf, 58).unwrap_or(0);
                if level == 0 || level >= DA_MAX_DEPTH || want_level.is_some_and(|w| w != level) {
                    self.corrupt(
                        "hdr.level",
                        Some(dablk),
                        Some(58),
                        want_level.map_or(format!("1..{DA_MAX_DEPTH}"), |w| w.to_string()),
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
                    self.corrupt(
                        "hdr.count",
                        Some(dablk),
                        Some(56),
                        format!("1..={max}"),
                        count,
                        format!("dabtree node {dablk} has an impossible entry count"),
                    );
                    return Ok(None);
                }
                let mut prev: Option<u32> = None;
                let mut last = None;
                for i in 0..count {
                    let at = HEADER_SIZE + i * 8;
                    let hash = be32_at(&buf, at).unwrap_or(0);
                    let before = u64::from(be32_at(&buf, at + 4).unwrap_or(0));
                    if prev.is_some_and(|p| hash < p) {
                        self.corrupt(
                            &format!("btree[{i}].hashval"),
                            Some(dablk),
                            Some(at),
                            format!(">= {:#x}", prev.unwrap_or(0)),
                            format!("{hash:#x}"),
                            format!("node entry {i} is out of hash order"),
                        );
                    }
                    prev = Some(hash);
                    let child = self.walk_node(
                        extents,
                        before,
                        Some(level - 1),
                        depth + 1,
                        visited,
                        levels,
                    )?;
                    if let Some(c) = child
                        && c != hash
                    {
                        self.corrupt(
                            &format!("btree[{i}].hashval"),
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
            (LEAF_MAGIC, Some(l)) => {
                self.corrupt(
                    "hdr.level",
                    Some(dablk),
                    None,
                    l,
                    0,
                    format!("a node of level {} points at a leaf", l + 1),
                );
                Ok(None)
            }
            (magic, _) => {
                self.corrupt(
                    "hdr.info.hdr.magic",
                    Some(dablk),
                    Some(8),
                    format!("{LEAF_MAGIC:#x} or {NODE_MAGIC:#x}"),
                    format!("{magic:#x}"),
                    format!("attribute block {dablk} is neither a leaf nor a dabtree node"),
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
                let want_forw = blocks.get(i + 1).map_or(0, |b| b.0);
                if u64::from(back) != want_back || u64::from(forw) != want_forw {
                    self.corrupt(
                        "hdr.info.hdr.forw",
                        Some(dablk),
                        None,
                        format!("{want_back}/{want_forw}"),
                        format!("{back}/{forw}"),
                        format!(
                            "attribute block {dablk} (level {level}) has the wrong sibling links (back/forw)"
                        ),
                    );
                }
            }
        }
    }

    // ---- leaves ---------------------------------------------------------

    /// Checks one leaf block; returns its header.
    fn check_leaf(
        &mut self,
        extents: &[Extent],
        buf: &[u8],
        daddr: u64,
        dablk: u64,
    ) -> Result<Option<Da3BlkInfo>, ScrubError> {
        let Some(h) = LeafHeader::parse(buf) else {
            return Ok(None);
        };
        self.check_da_header(buf, daddr, dablk);
        let bs = buf.len();
        if h.pad1 != 0 || h.pad2 != 0 {
            self.corrupt(
                "hdr.pad",
                Some(dablk),
                None,
                0,
                format!("{}/{}", h.pad1, h.pad2),
                format!("attribute leaf {dablk} has non-zero header padding"),
            );
        }
        let max = (bs - LEAF_HDR_SIZE) / LEAF_ENTRY_SIZE;
        let count = usize::from(h.count);
        if count == 0 {
            // A crash in the middle of an attribute operation can leave an
            // empty leaf; the kernel accepts it (an empty leaf is not
            // corruption) and xfs_repair only tidies it away.
            self.out.push(
                Finding::new(
                    FindingKind::Preen,
                    "xattr",
                    "xattr.hdr.count",
                    format!(
                        "inode {}: attribute leaf {dablk} holds no entries",
                        self.ino
                    ),
                )
                .group(u64::from(self.group))
                .inode(self.ino)
                .block(dablk),
            );
            return Ok(Some(h.info));
        }
        if count > max {
            self.corrupt(
                "hdr.count",
                Some(dablk),
                Some(56),
                format!("1..={max}"),
                count,
                format!("attribute leaf {dablk} has more entries than fit"),
            );
        }
        let count = count.min(max);
        let entries_end = LEAF_HDR_SIZE + count * LEAF_ENTRY_SIZE;
        let firstused = h.first_used();
        let mut firstused_ok = true;
        if firstused > bs || firstused < entries_end {
            self.corrupt(
                "hdr.firstused",
                Some(dablk),
                Some(60),
                format!("{entries_end}..={bs}"),
                firstused,
                format!(
                    "attribute leaf {dablk}: the names would start inside the header or the entries, or past the block"
                ),
            );
            firstused_ok = false;
        }
        // Byte ranges in use, to find overlaps: the header and entries,
        // then each name record.
        let mut used: Vec<(usize, usize)> = vec![(0, entries_end)];
        let mut usedbytes = 0usize;
        let mut lowest = bs;
        let mut prev_hash: Option<u32> = None;
        for i in 0..count {
            let Some(e) = LeafEntry::parse(buf, i) else {
                break;
            };
            let at = LEAF_HDR_SIZE + i * LEAF_ENTRY_SIZE;
            if let Some(p) = prev_hash.or(self.last_hash)
                && e.hashval < p
            {
                self.corrupt(
                    &format!("entries[{i}].hashval"),
                    Some(dablk),
                    Some(at),
                    format!(">= {p:#x}"),
                    format!("{:#x}", e.hashval),
                    format!("attribute leaf {dablk} entry {i} is out of hash order"),
                );
            }
            prev_hash = Some(e.hashval);
            if e.pad2 != 0 {
                self.corrupt(
                    &format!("entries[{i}].pad2"),
                    Some(dablk),
                    Some(at + 7),
                    0,
                    e.pad2,
                    format!("attribute leaf {dablk} entry {i} has non-zero padding"),
                );
            }
            if e.flags & FLAG_INCOMPLETE != 0 {
                self.corrupt(
                    &format!("entries[{i}].incomplete"),
                    Some(dablk),
                    Some(at + 6),
                    "clear",
                    "set",
                    format!(
                        "attribute leaf {dablk} entry {i} is marked incomplete: an attribute left half-created or half-removed"
                    ),
                );
            }
            self.check_flags(
                &format!("entries[{i}].flags"),
                e.flags & !FLAG_INCOMPLETE,
                FLAG_LOCAL | FLAG_ROOT | FLAG_SECURE,
                Some(dablk),
                Some(at + 6),
            );
            let idx = usize::from(e.nameidx);
            if idx < entries_end || idx >= bs || idx % 4 != 0 || (firstused_ok && idx < firstused) {
                self.corrupt(
                    &format!("entries[{i}].nameidx"),
                    Some(dablk),
                    Some(at + 4),
                    format!("a multiple of 4 in {}..{bs}", firstused.max(entries_end)),
                    idx,
                    format!(
                        "attribute leaf {dablk} entry {i} points its name outside the name area"
                    ),
                );
                continue;
            }
            let local = e.flags & FLAG_LOCAL != 0;
            let Some(rec) = LeafName::parse(buf, idx, local) else {
                self.corrupt(
                    &format!("nvlist[{i}].namelen"),
                    Some(dablk),
                    Some(idx),
                    format!("a record ending by byte {bs}"),
                    "a record running past the block",
                    format!(
                        "attribute leaf {dablk} entry {i}: the name record runs past the block"
                    ),
                );
                continue;
            };
            let end = idx + rec.size();
            if end > bs {
                self.corrupt(
                    &format!("nvlist[{i}].namelen"),
                    Some(dablk),
                    Some(idx),
                    format!("a record ending by byte {bs}"),
                    format!("a record ending at byte {end}"),
                    format!(
                        "attribute leaf {dablk} entry {i}: the name record runs past the block"
                    ),
                );
                continue;
            }
            if let Some(&(s, t)) = used.iter().find(|&&(s, t)| idx < t && s < end) {
                self.corrupt(
                    &format!("entries[{i}].nameidx"),
                    Some(dablk),
                    Some(at + 4),
                    format!("a record outside bytes {s}..{t}"),
                    format!("bytes {idx}..{end}"),
                    format!(
                        "attribute leaf {dablk} entry {i}: its name record overlaps other data of the block"
                    ),
                );
                continue;
            }
            used.push((idx, end));
            usedbytes += rec.size();
            lowest = lowest.min(idx);
            let name = rec.name();
            if !name_is_valid(name) {
                self.corrupt(
                    &format!("nvlist[{i}].name"),
                    Some(dablk),
                    Some(idx),
                    "1..=255 bytes without NUL",
                    format!("{:?}", String::from_utf8_lossy(name)),
                    format!("attribute leaf {dablk} entry {i} has an invalid name"),
                );
            } else if hashname(name) != e.hashval {
                self.corrupt(
                    &format!("entries[{i}].hashval"),
                    Some(dablk),
                    Some(at),
                    format!("{:#x}", hashname(name)),
                    format!("{:#x}", e.hashval),
                    format!(
                        "attribute leaf {dablk} entry {i} records a hash that is not the hash of its name {:?}",
                        String::from_utf8_lossy(name)
                    ),
                );
            }
            if let LeafName::Remote {
                valueblk, valuelen, ..
            } = rec
            {
                self.check_remote(extents, dablk, i, idx, valueblk, valuelen)?;
            }
        }
        if let Some(p) = prev_hash {
            self.last_hash = Some(p);
        }
        if usize::from(h.usedbytes) != usedbytes {
            self.corrupt(
                "hdr.usedbytes",
                Some(dablk),
                Some(58),
                usedbytes,
                h.usedbytes,
                format!("attribute leaf {dablk}: usedbytes disagrees with the name records"),
            );
        }
        // Names start at `firstused`; a leaf whose names were moved out by
        // a split (marked with `holes`) may start its names later.
        if firstused_ok && (firstused > lowest || (h.holes == 0 && firstused != lowest)) {
            self.corrupt(
                "hdr.firstused",
                Some(dablk),
                Some(60),
                lowest,
                firstused,
                format!(
                    "attribute leaf {dablk}: firstused is not where the first name record is{}",
                    if h.holes == 0 {
                        " (and the block has no holes)"
                    } else {
                        ""
                    }
                ),
            );
        }
        for (i, fm) in h.freemap.iter().enumerate() {
            let (base, size) = (usize::from(fm.base), usize::from(fm.size));
            let end = base + size;
            let bad = base > bs || base % 4 != 0 || size % 4 != 0 || end > bs;
            let overlap = size > 0 && used.iter().any(|&(s, t)| base < t && s < end);
            if bad || overlap {
                self.corrupt(
                    &format!("hdr.freemap[{i}].base"),
                    Some(dablk),
                    Some(64 + 4 * i),
                    "a 4-byte aligned free region inside the block",
                    format!("bytes {base}..{end}"),
                    format!(
                        "attribute leaf {dablk}: free map entry {i} {}",
                        if bad {
                            "lies outside the block or is misaligned"
                        } else {
                            "covers bytes in use"
                        }
                    ),
                );
            }
        }
        Ok(Some(h.info))
    }

    /// The remote value of leaf `dablk`'s entry `i`: `valuelen` bytes in
    /// the blocks from attribute fork block `valueblk`.
    fn check_remote(
        &mut self,
        extents: &[Extent],
        dablk: u64,
        i: usize,
        idx: usize,
        valueblk: u32,
        valuelen: u32,
    ) -> Result<(), ScrubError> {
        if valueblk == 0 {
            self.corrupt(
                &format!("nvlist[{i}].valueblk"),
                Some(dablk),
                Some(idx),
                "a block past the first",
                0,
                format!(
                    "attribute leaf {dablk} entry {i} keeps its value in block 0, the leaf itself"
                ),
            );
            return Ok(());
        }
        if valuelen == 0 || valuelen > MAX_VALUE_LEN {
            self.corrupt(
                &format!("nvlist[{i}].valuelen"),
                Some(dablk),
                Some(idx + 4),
                format!("1..={MAX_VALUE_LEN}"),
                valuelen,
                format!("attribute leaf {dablk} entry {i} has an impossible remote value length"),
            );
            return Ok(());
        }
        let bs = self.fs.geometry().block_size as usize;
        let per_block = (bs - RMT_HDR_SIZE) as u32;
        let nblocks = valuelen.div_ceil(per_block);
        let uuid = self.fs.geometry().meta_uuid;
        for b in 0..nblocks {
            let blk = u64::from(valueblk) + u64::from(b);
            let Some((buf, daddr)) = self.read_block(extents, blk)? else {
                return Ok(());
            };
            let Some(r) = RmtHeader::parse(&buf) else {
                return Ok(());
            };
            if r.magic != RMT_MAGIC {
                self.corrupt(
                    "rmt.hdr.magic",
                    Some(blk),
                    Some(0),
                    format!("{RMT_MAGIC:#x}"),
                    format!("{:#x}", r.magic),
                    format!(
                        "attribute fork block {blk} holds no remote value header (entry {i} of leaf {dablk})"
                    ),
                );
                return Ok(());
            }
            if !crc::verify(&buf, RMT_CRC_OFFSET) {
                self.corrupt(
                    "rmt.hdr.crc",
                    Some(blk),
                    Some(RMT_CRC_OFFSET),
                    format!("{:#x}", crc::compute(&buf, RMT_CRC_OFFSET).unwrap_or(0)),
                    format!("{:#x}", r.crc),
                    format!("remote value block {blk} has a bad checksum"),
                );
            }
            if r.uuid != uuid {
                self.corrupt(
                    "rmt.hdr.uuid",
                    Some(blk),
                    Some(16),
                    uuid,
                    r.uuid,
                    format!("remote value block {blk} belongs to another filesystem"),
                );
            }
            if r.owner != self.ino {
                self.corrupt(
                    "rmt.hdr.owner",
                    Some(blk),
                    Some(32),
                    self.ino,
                    r.owner,
                    format!("remote value block {blk} records the wrong owner"),
                );
            }
            if r.blkno != daddr {
                self.corrupt(
                    "rmt.hdr.bno",
                    Some(blk),
                    Some(40),
                    daddr,
                    r.blkno,
                    format!("remote value block {blk} records the wrong disk address"),
                );
            }
            self.check_lsn("rmt.hdr.lsn", r.lsn, blk);
            let offset = b * per_block;
            if r.offset != offset {
                self.corrupt(
                    "rmt.hdr.offset",
                    Some(blk),
                    Some(4),
                    offset,
                    r.offset,
                    format!(
                        "remote value block {blk} is block {b} of the value, which starts at byte {offset}"
                    ),
                );
            }
            let bytes = (valuelen - offset).min(per_block);
            if r.bytes != bytes {
                self.corrupt(
                    "rmt.hdr.bytes",
                    Some(blk),
                    Some(8),
                    bytes,
                    r.bytes,
                    format!(
                        "remote value block {blk} should hold {bytes} bytes of the {valuelen}-byte value of entry {i} of leaf {dablk}"
                    ),
                );
            }
        }
        Ok(())
    }
}
