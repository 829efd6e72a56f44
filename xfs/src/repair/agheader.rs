//! The AG header sectors a repair writes: the AGF (free-space header) and
//! the AGFL (free list), encoded whole from trusted values (the kernel's
//! `agheader_repair.c` twin).
//!
//! Both are rebuilt rather than patched: every field is set from the
//! geometry or from the rebuilt structures, except the AGF fields of trees
//! this repair does not rebuild (the rmapbt and refcountbt roots, levels
//! and block counts), which are kept. The LSN is zeroed: these sectors are
//! not written through the log, and a zero LSN is never "ahead of the log".

use super::alloc::{Owners, Refused, read_sector};
use crate::format::agf::{self, Agf, RawAgf};
use crate::format::agfl::{self, RawAgflHeader};
use crate::format::btree::rmap::{self, RmapRec};
use crate::format::crc;
use crate::fs::Filesystem;
use crate::geometry::Geometry;
use crate::scrub::common::walk_quietly;
use crate::types::AgBlock;
use crate::types::{AgNumber, null};
use zerocopy::FromBytes;

/// The values of an AGF that a free-space rebuild decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgfSpace {
    /// bnobt root and height.
    pub bno: (u32, u32),
    /// cntbt root and height.
    pub cnt: (u32, u32),
    /// Live AGFL slots (from slot 0).
    pub flcount: u32,
    /// Free blocks in the free-space btrees.
    pub freeblks: u32,
    /// Longest free extent.
    pub longest: u32,
    /// Free-space and rmap btree blocks beyond their roots.
    pub btreeblks: u32,
    /// Blocks of the rmapbt.
    pub rmap_blocks: u32,
}

/// A new AGF sector for AG `agno`: identity fields from the geometry,
/// `space` from the rebuild, the rmapbt and refcountbt fields from `old`
/// (the current sector). The rest of the sector is zero.
pub fn agf_sector(old: &[u8], geo: &Geometry, agno: AgNumber, space: &AgfSpace) -> Vec<u8> {
    let len = usize::try_from(geo.sector_size).unwrap_or(512);
    let mut s = vec![0u8; len];
    let n = agf::SIZE.min(old.len());
    s[..n].copy_from_slice(&old[..n]);
    if let Ok((r, _)) = RawAgf::mut_from_prefix(&mut s) {
        r.magicnum.set(agf::MAGIC);
        r.versionnum.set(agf::VERSION);
        r.seqno.set(agno.0);
        r.length.set(geo.ag_len(agno).unwrap_or(0));
        r.roots[0].set(space.bno.0);
        r.levels[0].set(space.bno.1);
        r.roots[1].set(space.cnt.0);
        r.levels[1].set(space.cnt.1);
        r.flfirst.set(0);
        r.fllast.set(if space.flcount == 0 {
            geo.agfl_size.saturating_sub(1)
        } else {
            space.flcount - 1
        });
        r.flcount.set(space.flcount);
        r.freeblks.set(space.freeblks);
        r.longest.set(space.longest);
        r.btreeblks.set(space.btreeblks);
        r.uuid = geo.meta_uuid;
        r.rmap_blocks.set(space.rmap_blocks);
        for v in &mut r.spare64 {
            v.set(0);
        }
        r.lsn.set(0);
        r.spare2.set(0);
    }
    let _ = crc::update(&mut s, agf::CRC_OFFSET);
    s
}

/// Changes fields of the AGF in `sector` (at least [`agf::SIZE`] bytes;
/// shorter is left alone) through `f` and updates its CRC.
pub(crate) fn patch_agf(sector: &mut [u8], f: impl FnOnce(&mut RawAgf)) {
    if let Ok((r, _)) = RawAgf::mut_from_prefix(sector) {
        f(r);
        let _ = crc::update(sector, agf::CRC_OFFSET);
    }
}

/// A new AGFL sector for AG `agno` holding `blocks` in slots 0.., the
/// other slots null. `blocks` must fit ([`Geometry::agfl_size`]).
pub fn agfl_sector(geo: &Geometry, agno: AgNumber, blocks: &[u32]) -> Vec<u8> {
    let len = usize::try_from(geo.sector_size).unwrap_or(512);
    let mut s = vec![0u8; len];
    if let Ok((h, _)) = RawAgflHeader::mut_from_prefix(&mut s) {
        h.magicnum.set(agfl::MAGIC);
        h.seqno.set(agno.0);
        h.uuid = geo.meta_uuid;
        h.lsn.set(0);
    }
    let slots = s.get_mut(agfl::HEADER_SIZE..).unwrap_or(&mut []);
    let mut it = blocks.iter();
    for slot in slots.chunks_exact_mut(4) {
        let v = it.next().copied().unwrap_or(null::AGBLOCK);
        slot.copy_from_slice(&v.to_be_bytes());
    }
    let _ = crc::update(&mut s, agfl::CRC_OFFSET);
    s
}

/// The AGF a rebuild of AG `agno` starts from: the sector on disk with its
/// identity fields set from the geometry (magic, version, sequence number,
/// length) and, when the rmapbt root or height it names does not lead to a
/// sound rmapbt, the root found by looking for it (the kernel's
/// `xrep_agf`, which fixes the AGF's identity before trusting anything in
/// it). The rmapbt found is structurally sound; whether its records pass
/// the rmapbt checks is the caller's question.
#[derive(Debug, Clone)]
pub struct AgfBase {
    /// The sector, fixed (CRC updated).
    pub sector: Vec<u8>,
    /// It, decoded.
    pub agf: Agf,
    /// The fields that were fixed, as xfs_db names them.
    pub fixed: Vec<&'static str>,
}

/// See [`AgfBase`]. `Err` says why no usable AGF could be made.
pub fn agf_for_rebuild(fs: &Filesystem, agno: AgNumber) -> Result<AgfBase, Refused> {
    let geo = fs.geometry();
    let mut sector = read_sector(fs, agno, 1)?;
    let old = Agf::from_bytes(&sector).map_err(|e| e.to_string())?;
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    let mut fixed = Vec::new();
    if old.magicnum != agf::MAGIC {
        fixed.push("magicnum");
    }
    if old.versionnum != agf::VERSION {
        fixed.push("versionnum");
    }
    if old.seqno != agno.0 {
        fixed.push("seqno");
    }
    if old.length != ag_len {
        fixed.push("length");
    }
    let root = if rmapbt_sound_at(fs, agno, &old, old.rmap_root, old.rmap_level) {
        (old.rmap_root, old.rmap_level)
    } else {
        let found = find_rmap_root(fs, agno, &old)?;
        if found.0 != old.rmap_root {
            fixed.push("rmaproot");
        }
        if found.1 != old.rmap_level {
            fixed.push("rmaplevel");
        }
        found
    };
    patch_agf(&mut sector, |r| {
        r.magicnum.set(agf::MAGIC);
        r.versionnum.set(agf::VERSION);
        r.seqno.set(agno.0);
        r.length.set(ag_len);
        r.roots[2].set(root.0);
        r.levels[2].set(root.1);
    });
    let agf = Agf::from_bytes(&sector).map_err(|e| e.to_string())?;
    Ok(AgfBase { sector, agf, fixed })
}

/// Whether the rmapbt of AG `agno`, rooted at `root` and `level` high,
/// walks without a structural problem and records its own blocks as
/// `OWN_AG`.
fn rmapbt_sound_at(fs: &Filesystem, agno: AgNumber, agf: &Agf, root: u32, level: u32) -> bool {
    let geo = fs.geometry();
    if !geo.verify_agbno(agno, AgBlock(root)) || level == 0 || level > geo.maxlevels.rmap {
        return false;
    }
    let mut a = agf.clone();
    a.rmap_root = root;
    a.rmap_level = level;
    let Ok(tree) = fs.rmapbt(agno, &a) else {
        return false;
    };
    let ag_len = geo.ag_len(agno).unwrap_or(0);
    let mut owners = Owners::default();
    let mut inside = true;
    match walk_quietly(&tree, "rmapbt", |r: &RmapRec| {
        inside &= owners.add(r, ag_len)
    }) {
        Ok(blocks) => inside && owners.check_rmapbt_blocks(&blocks).is_ok(),
        Err(_) => false,
    }
}

/// Blocks read at once while looking for rmapbt blocks.
const SCAN_CHUNK: u32 = 256;

/// Finds the rmapbt root of AG `agno` when the AGF's pointer is unusable:
/// the block the AGF names, at the height its own header gives, if that
/// makes a sound tree; otherwise every block of the AG that carries the
/// rmapbt magic and says it belongs at this address, highest level first.
/// Exactly one sound tree among the highest candidates is the root; none
/// or several (stale copies) is a refusal.
fn find_rmap_root(fs: &Filesystem, agno: AgNumber, agf: &Agf) -> Result<(u32, u32), Refused> {
    let geo = fs.geometry();
    let bs = usize::try_from(geo.block_size).unwrap_or(4096);
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    // The named block, with the height its header says.
    let level_of = |b: &[u8], agbno: u32| -> Option<u32> {
        let magic = b
            .get(0..4)
            .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]))?;
        let level = b.get(4..6).map(|l| u16::from_be_bytes([l[0], l[1]]))?;
        let blkno = b.get(16..24).and_then(|x| <[u8; 8]>::try_from(x).ok())?;
        let daddr = geo.agb_to_daddr(agno, AgBlock(agbno))?;
        (magic == rmap::MAGIC && u64::from_be_bytes(blkno) == daddr.0)
            .then_some(u32::from(level) + 1)
    };
    let read = |agbno: u32, n: u32| -> Option<Vec<u8>> {
        let off = geo.agb_to_daddr(agno, AgBlock(agbno))?.to_bytes()?;
        let mut buf = vec![0u8; bs * usize::try_from(n).ok()?];
        fs.device().read_at(&mut buf, off).ok()?;
        Some(buf)
    };
    if geo.verify_agbno(agno, AgBlock(agf.rmap_root))
        && let Some(b) = read(agf.rmap_root, 1)
        && let Some(level) = level_of(&b, agf.rmap_root)
        && rmapbt_sound_at(fs, agno, agf, agf.rmap_root, level)
    {
        return Ok((agf.rmap_root, level));
    }
    let mut candidates: Vec<(u32, u32)> = Vec::new();
    let first = geo.ag_header_last_block.saturating_add(1);
    let mut at = first;
    while at < ag_len {
        let n = SCAN_CHUNK.min(ag_len - at);
        let buf = read(at, n).ok_or_else(|| format!("reading {agno} blocks {at}+{n} failed"))?;
        for (i, b) in buf.chunks_exact(bs).enumerate() {
            let agbno = at + u32::try_from(i).unwrap_or(0);
            if let Some(level) = level_of(b, agbno)
                && level <= geo.maxlevels.rmap
            {
                candidates.push((agbno, level));
            }
        }
        at += n;
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut levels: Vec<u32> = candidates.iter().map(|c| c.1).collect();
    levels.dedup();
    for level in levels {
        let sound: Vec<u32> = candidates
            .iter()
            .filter(|c| c.1 == level)
            .map(|c| c.0)
            .filter(|&root| rmapbt_sound_at(fs, agno, agf, root, level))
            .collect();
        match sound.as_slice() {
            [] => continue,
            [root] => return Ok((*root, level)),
            many => {
                return Err(format!(
                    "the AGF's rmapbt root ({} at height {}) is unusable and {} blocks could be the root at height {level}; not guessing",
                    agf.rmap_root,
                    agf.rmap_level,
                    many.len()
                ));
            }
        }
    }
    Err(format!(
        "the AGF's rmapbt root ({} at height {}) is unusable and no block of the AG roots a sound rmapbt, so there is nothing to rebuild from",
        agf.rmap_root, agf.rmap_level
    ))
}
