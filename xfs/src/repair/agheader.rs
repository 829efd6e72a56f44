//! The AG header sectors a repair writes: the AGF (free-space header) and
//! the AGFL (free list), encoded whole from trusted values (the kernel's
//! `agheader_repair.c` twin).
//!
//! Both are rebuilt rather than patched: every field is set from the
//! geometry or from the rebuilt structures, except the AGF fields of trees
//! this repair does not rebuild (the rmapbt and refcountbt roots, levels
//! and block counts), which are kept. The LSN is zeroed: these sectors are
//! not written through the log, and a zero LSN is never "ahead of the log".

use crate::format::agf::{self, RawAgf};
use crate::format::agfl::{self, RawAgflHeader};
use crate::format::crc;
use crate::geometry::Geometry;
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
