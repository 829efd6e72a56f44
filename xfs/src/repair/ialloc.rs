//! Inode btree repair of one AG (the kernel's `ialloc_repair.c`, and the
//! AGI part of `agheader_repair.c`): a new inobt and finobt and a new AGI,
//! all derived from the reverse-mapping btree and the inodes themselves.
//!
//! # How
//!
//! 1. Walk the rmapbt (it must be structurally sound). Its `OWN_INODES`
//!    records say which blocks hold inodes; its `OWN_INOBT` records say
//!    which blocks the two inode btrees own — whatever the (possibly
//!    damaged) trees and AGI say.
//! 2. Every block of every `OWN_INODES` extent holds inodes; each inode
//!    belongs to the 64-inode chunk its number rounds down to. A chunk the
//!    rmapbt shows only part of is a sparse chunk: its hole mask marks the
//!    groups of four inodes that have no blocks (a half-present group is
//!    refused). Each present inode is read: it must be an inode (magic,
//!    version, its own number), and it is free when its mode is zero.
//! 3. The inobt gets every chunk, the finobt every chunk with a free inode.
//!    Both trees are bulk-loaded into exactly the `OWN_INOBT` blocks, their
//!    leaf fill chosen so that together they use all of them. The rmapbt
//!    therefore stays correct without being changed, and so do free space
//!    and the AGF: nothing is allocated or freed.
//! 4. The AGI is rebuilt whole, as the kernel's `xrep_agi` does: identity
//!    fields from the geometry, roots, levels and counters from the
//!    rebuild, `newino` and `dirino` null, unlinked-list heads kept only
//!    when they name an unlinked inode (in use, no links) of the right
//!    bucket.
//!
//! The new tree blocks are the old trees' blocks, so the rebuild is
//! committed as one journalled group (tree blocks, AGI) under NEEDSREPAIR;
//! a crash is finished by replaying the journal.
//!
//! # What it refuses
//!
//! - an rmapbt that cannot be walked cleanly, maps blocks outside the AG,
//!   or gives an `OWN_INOBT` block to another owner as well;
//! - an `OWN_INODES` extent not made of whole inode clusters, or holding
//!   something that is not the inode it should be;
//! - a partial chunk on a filesystem without sparse inodes;
//! - `OWN_INOBT` blocks that no leaf fill of the two new trees uses
//!   exactly (taking more blocks from free space, or freeing some, would
//!   need an rmapbt update, which this repair does not make).

use super::alloc::{Refused, read_sector, walk_rmap};
use crate::format::agi::{self, RawAgi};
use crate::format::btree::ialloc::{INODES_PER_CHUNK, INODES_PER_HOLEMASK_BIT, Inobt, InobtRec};
use crate::format::btree::rmap::{RmapRec, owner};
use crate::format::crc;
use crate::format::dinode::{Dinode, MAGIC as DINODE_MAGIC};
use crate::fs::Filesystem;
use crate::geometry::Geometry;
use crate::types::{AgBlock, AgIno, AgNumber, null};
use repair::{Reservation, WriteSet, build_tree};
use scrub::ExtentBitmap;
use std::collections::BTreeMap;
use xfbtree::{BloadOptions, BlockAddr, Root};
use zerocopy::FromBytes;

/// The AGI values an inode btree rebuild decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgiInodes {
    /// Inodes in chunks (`agi_count`).
    pub count: u32,
    /// Free inodes among them (`agi_freecount`).
    pub freecount: u32,
    /// inobt root and height.
    pub ino: (u32, u32),
    /// finobt root and height (none without finobt).
    pub fino: Option<(u32, u32)>,
    /// Blocks of the inobt (`agi_iblocks`).
    pub iblocks: u32,
    /// Blocks of the finobt (`agi_fblocks`).
    pub fblocks: u32,
}

/// What the rebuild of one AG's inode btrees will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgInodes {
    /// The AG.
    pub agno: AgNumber,
    /// The new AGI's inode fields.
    pub agi: AgiInodes,
    /// Records of the new inobt (inode chunks).
    pub chunks: u64,
    /// Records of the new finobt (chunks with free inodes).
    pub free_chunks: u64,
    /// Sparse chunks among the chunks.
    pub sparse_chunks: u64,
    /// Unlinked-list heads of the old AGI that were not kept.
    pub unlinked_dropped: u32,
    /// The rmap records the rebuild was derived from.
    pub rmap_records: u64,
}

/// The rmapbt's view of one AG, as far as inodes go.
struct Owners {
    /// `OWN_INODES` extents, in block order.
    inodes: Vec<(u32, u32)>,
    /// `OWN_INOBT` blocks.
    inobt: ExtentBitmap,
    /// Blocks of every other owner.
    others: ExtentBitmap,
    records: u64,
}

/// Plans the inobt, finobt and AGI rebuild of AG `agno` and stages its
/// writes in `writes` (only when the whole plan succeeds). `Err` says why
/// it was refused; nothing is staged then.
pub fn plan_ag_inodes(
    fs: &Filesystem,
    agno: AgNumber,
    writes: &mut WriteSet,
) -> Result<AgInodes, Refused> {
    let geo = fs.geometry();
    if !geo.features.has_rmapbt() {
        return Err("the filesystem has no reverse-mapping btree to rebuild from".into());
    }
    if geo.inodes_per_block > INODES_PER_CHUNK {
        return Err(format!(
            "{} inodes per block (more than a chunk) is not supported by this repair",
            geo.inodes_per_block
        ));
    }
    let own = read_owners(fs, agno)?;
    let mut shared = own.inobt.clone();
    shared.intersect(&own.others);
    if !shared.is_empty() {
        return Err(format!(
            "{} blocks the rmapbt gives to the inode btrees belong to another owner as well",
            shared.count()
        ));
    }
    let chunks = scan_chunks(fs, agno, &own.inodes)?;
    let free_chunks: Vec<InobtRec> = chunks.iter().filter(|r| r.freecount > 0).copied().collect();

    // Shapes of both trees that use the OWN_INOBT blocks exactly.
    let bs = usize::try_from(geo.block_size).unwrap_or(4096);
    let ino_fmt = Inobt::all_chunks(geo, agno);
    let fino_fmt = Inobt::free_chunks(geo, agno);
    let finobt = geo.features.has_finobt();
    let pool = own.inobt.count();
    let ino_shapes = shapes(&ino_fmt, bs, chunks.len() as u64);
    let fino_shapes = if finobt {
        shapes(&fino_fmt, bs, free_chunks.len() as u64)
    } else {
        vec![(0, BloadOptions::default())]
    };
    let Some((ino_opts, fino_opts)) = split(&ino_shapes, &fino_shapes, pool) else {
        let lo = ino_shapes.iter().map(|s| s.0).min().unwrap_or(0)
            + fino_shapes.iter().map(|s| s.0).min().unwrap_or(0);
        let hi = ino_shapes.iter().map(|s| s.0).max().unwrap_or(0)
            + fino_shapes.iter().map(|s| s.0).max().unwrap_or(0);
        return Err(format!(
            "the new inode btrees ({} and {} records) take {lo}..={hi} blocks but the rmapbt gives the inode btrees {pool}: taking or freeing blocks would need an rmapbt update, which this repair does not make",
            chunks.len(),
            free_chunks.len()
        ));
    };

    // Build both trees into the OWN_INOBT blocks.
    let mut staged = WriteSet::new();
    let mut res = Reservation::new(own.inobt.clone(), &ExtentBitmap::new());
    let offset_of = |a: BlockAddr| -> Option<u64> {
        let b = u32::try_from(a.0).ok()?;
        geo.agb_to_daddr(agno, AgBlock(b))?.to_bytes()
    };
    let ok = |r: &InobtRec| Ok::<_, std::convert::Infallible>(*r);
    let (ino, ino_geo) = build_tree(
        &ino_fmt,
        bs,
        chunks.len() as u64,
        chunks.iter().map(ok),
        &ino_opts,
        &mut res,
        &mut staged,
        &offset_of,
    )
    .map_err(|e| e.to_string())?;
    let ino_root = root_of(&ino.root).ok_or("the bulk loader returned an inline inobt root")?;
    let (fino_root, fblocks) = if finobt {
        let (fino, fino_geo) = build_tree(
            &fino_fmt,
            bs,
            free_chunks.len() as u64,
            free_chunks.iter().map(ok),
            &fino_opts,
            &mut res,
            &mut staged,
            &offset_of,
        )
        .map_err(|e| e.to_string())?;
        let root = root_of(&fino.root).ok_or("the bulk loader returned an inline finobt root")?;
        (Some(root), fino_geo.total_blocks())
    } else {
        (None, 0)
    };
    if res.taken().len() as u64 != pool {
        return Err(format!(
            "the new inode btrees took {} of the {pool} inode btree blocks",
            res.taken().len()
        ));
    }

    let count: u64 = chunks.iter().map(|r| u64::from(r.count)).sum();
    let freecount: u64 = chunks.iter().map(|r| u64::from(r.freecount)).sum();
    let values = AgiInodes {
        count: u32::try_from(count).map_err(|e| e.to_string())?,
        freecount: u32::try_from(freecount).map_err(|e| e.to_string())?,
        ino: ino_root,
        fino: fino_root,
        iblocks: u32::try_from(ino_geo.total_blocks()).map_err(|e| e.to_string())?,
        fblocks: u32::try_from(fblocks).map_err(|e| e.to_string())?,
    };
    let old = read_sector(fs, agno, 2)?;
    let (unlinked, dropped) = unlinked_heads(fs, agno, &old);
    let new_agi = agi_sector(geo, agno, &values, &unlinked);
    let off = geo
        .ag_header_daddr(agno, 2)
        .and_then(|d| d.to_bytes())
        .ok_or_else(|| format!("{agno} AGI sector is outside the device"))?;
    staged.stage_live(off, new_agi).map_err(|e| e.to_string())?;
    for (off, phase, data) in staged.iter() {
        writes
            .stage(phase, off, data.to_vec())
            .map_err(|e| e.to_string())?;
    }
    Ok(AgInodes {
        agno,
        agi: values,
        chunks: chunks.len() as u64,
        free_chunks: free_chunks.len() as u64,
        sparse_chunks: chunks.iter().filter(|r| r.holemask != 0).count() as u64,
        unlinked_dropped: dropped,
        rmap_records: own.records,
    })
}

/// One walk of the rmapbt of AG `agno`, through the AGF's root.
fn read_owners(fs: &Filesystem, agno: AgNumber) -> Result<Owners, Refused> {
    let mut own = Owners {
        inodes: Vec::new(),
        inobt: ExtentBitmap::new(),
        others: ExtentBitmap::new(),
        records: 0,
    };
    let walk = walk_rmap(fs, agno, |r: &RmapRec| {
        let (s, l) = (u64::from(r.startblock), u64::from(r.blockcount));
        match r.owner {
            owner::INOBT => own.inobt.set(s, l),
            owner::INODES => {
                own.inodes.push((r.startblock, r.blockcount));
                own.others.set(s, l);
            }
            _ => own.others.set(s, l),
        }
    })?;
    own.records = walk.records;
    Ok(own)
}

/// The most blocks read at once while scanning inode extents.
const READ_BLOCKS: u32 = 64;

/// The inode chunks of the `OWN_INODES` extents (in block order, as the
/// rmapbt gives them): one record per 64-inode chunk, its hole mask from
/// the blocks present and its free mask from the inodes' modes.
fn scan_chunks(
    fs: &Filesystem,
    agno: AgNumber,
    extents: &[(u32, u32)],
) -> Result<Vec<InobtRec>, Refused> {
    let geo = fs.geometry();
    let bpc = geo.inodes.blocks_per_cluster.max(1);
    let inopb = geo.inodes_per_block;
    let isize = usize::try_from(geo.inode_size).unwrap_or(usize::MAX);
    let bsize = usize::try_from(geo.block_size).unwrap_or(4096);
    // (startino, present mask, free mask)
    let mut raw: Vec<(u32, u64, u64)> = Vec::new();
    let mut buf = Vec::new();
    for &(start, len) in extents {
        if !start.is_multiple_of(bpc) || !len.is_multiple_of(bpc) {
            return Err(format!(
                "the rmapbt gives AG blocks {start}+{len} to inodes, which is not a whole number of {bpc}-block inode clusters"
            ));
        }
        let mut b = start;
        let end = start.saturating_add(len);
        while b < end {
            let n = (end - b).min(READ_BLOCKS);
            let daddr = geo
                .agb_to_daddr(agno, AgBlock(b))
                .ok_or_else(|| format!("AG block {b} is outside the device"))?;
            buf.resize(bsize * usize::try_from(n).unwrap_or(0), 0);
            fs.read_daddr(daddr, &mut buf)
                .map_err(|e| format!("reading the inodes at AG block {b}: {e}"))?;
            for (k, slot) in buf.chunks_exact(isize).enumerate() {
                let k = u32::try_from(k).map_err(|e| e.to_string())?;
                let agino = u32::try_from((u64::from(b) << geo.inopb_log) + u64::from(k))
                    .map_err(|_| format!("AG block {b} is beyond the AG inode numbers"))?;
                let ino = geo.ino_make(agno, AgIno(agino)).ok_or_else(|| {
                    format!(
                        "the rmapbt gives AG block {} to inodes, but AG inode {agino} cannot exist",
                        b + k / inopb
                    )
                })?;
                let d = Dinode::from_bytes(slot).map_err(|e| e.to_string())?;
                if d.magic != DINODE_MAGIC || d.version != 3 || d.ino != ino.0 {
                    return Err(format!(
                        "inode {} (AG block {}) is not that inode (magic {:#06x}, version {}, number {}): its chunk cannot be described",
                        ino.0,
                        b + k / inopb,
                        d.magic,
                        d.version,
                        d.ino
                    ));
                }
                let startino = agino & !(INODES_PER_CHUNK - 1);
                let bit = 1u64 << (agino - startino);
                let free = if d.mode == 0 { bit } else { 0 };
                match raw.last_mut() {
                    Some(last) if last.0 == startino => {
                        last.1 |= bit;
                        last.2 |= free;
                    }
                    Some(last) if last.0 > startino => {
                        return Err(format!(
                            "the rmapbt's inode extents are out of order at AG block {b}"
                        ));
                    }
                    _ => raw.push((startino, bit, free)),
                }
            }
            b += n;
        }
    }
    raw.into_iter()
        .map(|(startino, present, free)| chunk_record(geo, startino, present, free))
        .collect()
}

/// The record of the chunk at `startino` whose inodes `present` exist and
/// `free` of them are free.
fn chunk_record(
    geo: &Geometry,
    startino: u32,
    present: u64,
    free: u64,
) -> Result<InobtRec, Refused> {
    let mut holemask = 0u16;
    let groups = INODES_PER_CHUNK / INODES_PER_HOLEMASK_BIT;
    for j in 0..groups {
        let group = (present >> (j * INODES_PER_HOLEMASK_BIT)) & 0xf;
        match group {
            0xf => {}
            0 => holemask |= 1 << j,
            _ => {
                return Err(format!(
                    "the inode chunk at AG inode {startino} has only some inodes of the group at {}: a hole mask cannot describe it",
                    startino + j * INODES_PER_HOLEMASK_BIT
                ));
            }
        }
    }
    if holemask != 0 && !geo.inodes.sparse {
        return Err(format!(
            "the rmapbt shows only part of the inode chunk at AG inode {startino}, but the filesystem has no sparse inode chunks"
        ));
    }
    let rec = InobtRec {
        startino,
        holemask,
        count: u8::try_from(present.count_ones()).unwrap_or(u8::MAX),
        freecount: (free & present).count_ones(),
        free: 0,
    };
    // Holes are marked free, as the kernel records them.
    Ok(InobtRec {
        free: (free & present) | rec.hole_inodes(),
        ..rec
    })
}

/// Every distinct block count the bulk loader can give a tree of `n`
/// records of `fmt`, with the options giving it (the default packing
/// first, then from full leaves to the emptiest allowed).
fn shapes(fmt: &Inobt, bs: usize, n: u64) -> Vec<(u64, BloadOptions)> {
    let mut out: Vec<(u64, BloadOptions)> = Vec::new();
    let mut try_opts = |o: BloadOptions| {
        if let Ok(g) = xfbtree::Geometry::compute(fmt, bs, n, &o)
            && !out.iter().any(|(t, _)| *t == g.total_blocks())
        {
            out.push((g.total_blocks(), o));
        }
    };
    try_opts(BloadOptions::default());
    // Slack beyond the block's room is clamped to the minimum fill.
    for node in [None, Some(0), Some(usize::MAX / 2)] {
        for leaf in 0..=bs / 16 {
            try_opts(BloadOptions {
                leaf_slack: Some(leaf),
                node_slack: node,
                inline_root_capacity: None,
            });
        }
    }
    out
}

/// Options for both trees whose blocks add up to `pool`, the default
/// packing preferred.
fn split(
    ino: &[(u64, BloadOptions)],
    fino: &[(u64, BloadOptions)],
    pool: u64,
) -> Option<(BloadOptions, BloadOptions)> {
    ino.iter().find_map(|(t, o)| {
        let want = pool.checked_sub(*t)?;
        fino.iter()
            .find(|(f, _)| *f == want)
            .map(|(_, fo)| (*o, *fo))
    })
}

/// The unlinked-list heads of the old AGI `old` worth keeping: a head that
/// is an inode of this AG hashing to its bucket and is in use with no
/// links (an unlinked inode). Returns the heads and how many were dropped.
fn unlinked_heads(fs: &Filesystem, agno: AgNumber, old: &[u8]) -> ([u32; 64], u32) {
    let mut heads = [null::AGINO; agi::UNLINKED_BUCKETS];
    let mut dropped = 0;
    let Ok(a) = agi::Agi::from_bytes(old) else {
        return (heads, 0);
    };
    let geo = fs.geometry();
    for (i, &h) in a.unlinked.iter().enumerate() {
        if h == null::AGINO {
            continue;
        }
        let keep = usize::try_from(h % 64).ok() == Some(i)
            && geo
                .ino_make(agno, AgIno(h))
                .and_then(|ino| fs.read_inode(ino).ok())
                .is_some_and(|c| {
                    c.problems.is_empty() && c.value.core.mode != 0 && c.value.core.nlink == 0
                });
        if keep {
            heads[i] = h;
        } else {
            dropped += 1;
        }
    }
    (heads, dropped)
}

/// A new AGI sector for AG `agno`: identity fields from the geometry, the
/// inode fields from `v`, the unlinked-list heads given; the rest zero.
pub fn agi_sector(geo: &Geometry, agno: AgNumber, v: &AgiInodes, unlinked: &[u32; 64]) -> Vec<u8> {
    let len = usize::try_from(geo.sector_size).unwrap_or(512);
    let mut s = vec![0u8; len];
    if let Ok((r, _)) = RawAgi::mut_from_prefix(&mut s) {
        r.magicnum.set(agi::MAGIC);
        r.versionnum.set(agi::VERSION);
        r.seqno.set(agno.0);
        r.length.set(geo.ag_len(agno).unwrap_or(0));
        r.count.set(v.count);
        r.root.set(v.ino.0);
        r.level.set(v.ino.1);
        r.freecount.set(v.freecount);
        r.newino.set(null::AGINO);
        r.dirino.set(null::AGINO);
        for (d, h) in r.unlinked.iter_mut().zip(unlinked) {
            d.set(*h);
        }
        r.uuid = geo.meta_uuid;
        if let Some((root, level)) = v.fino {
            r.free_root.set(root);
            r.free_level.set(level);
        }
        if geo.features.has_inobtcounts() {
            r.iblocks.set(v.iblocks);
            r.fblocks.set(v.fblocks);
        }
    }
    let _ = crc::update(&mut s, agi::CRC_OFFSET);
    s
}

/// An AG btree's root block and height, for the AGI.
fn root_of<K>(r: &Root<K>) -> Option<(u32, u32)> {
    match r {
        Root::Block { addr, height } => Some((u32::try_from(addr.0).ok()?, u32::from(*height))),
        _ => None,
    }
}

/// The AGI values of AGs a plan rebuilds, for the summary counters.
pub type RebuiltAgis = BTreeMap<AgNumber, AgiInodes>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_chunk_records_mark_holes_free() {
        let geo = crate::geometry::tests_support::sample_geometry();
        // Inodes 0..32 present, 1 and 40 (a hole) free.
        let present = 0xffff_ffff_u64;
        let free = 0b10 | (1 << 40);
        let r = chunk_record(&geo, 128, present, free);
        if geo.inodes.sparse {
            let r = r.unwrap();
            assert_eq!(r.holemask, 0xff00);
            assert_eq!(r.count, 32);
            assert_eq!(r.freecount, 1);
            assert_eq!(r.free, 0xffff_ffff_0000_0002);
        } else {
            assert!(r.is_err());
        }
        let full = chunk_record(&geo, 64, u64::MAX, 0b1001).unwrap();
        assert_eq!((full.holemask, full.count, full.freecount), (0, 64, 2));
        assert!(chunk_record(&geo, 0, 0b111, 0).is_err(), "half a group");
    }
}
