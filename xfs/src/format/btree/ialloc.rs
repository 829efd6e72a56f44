//! Inode btrees: all inode chunks (inobt) and chunks with free inodes
//! (finobt).
//!
//! A record (`struct xfs_inobt_rec`, 16 bytes) describes a chunk of 64
//! inodes starting at AG inode `startino`: a free mask (bit `i` set: inode
//! `startino + i` is free) and, on filesystems with sparse inode chunks, a
//! hole mask (bit `j` set: inodes `4j..4j+4` do not exist), the number of
//! inodes that exist and the number free. Without sparse chunks the same
//! bytes hold a 32-bit free count, and every chunk is full
//! (`xfs_inobt_btrec_to_irec`).

use super::{ShortForm, delegate_header, height, put_be16, put_be32, put_be64};
use crate::format::{be16_at, be32_at, be64_at};
use crate::geometry::Geometry;
use crate::types::AgNumber;
use xfbtree::{BlockAddr, BtreeFormat};

/// v5 magic of inobt blocks ("IAB3").
pub const INO_MAGIC: u32 = 0x4941_4233;
/// v5 magic of finobt blocks ("FIB3").
pub const FINO_MAGIC: u32 = 0x4649_4233;
/// Inodes per chunk (`XFS_INODES_PER_CHUNK`).
pub const INODES_PER_CHUNK: u32 = 64;
/// Inodes covered by one hole mask bit (`XFS_INODES_PER_HOLEMASK_BIT`).
pub const INODES_PER_HOLEMASK_BIT: u32 = 4;

/// An inode chunk record, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InobtRec {
    /// First AG inode of the chunk.
    pub startino: u32,
    /// Bit `j` set: inodes `4j..4j+4` of the chunk do not exist (sparse).
    pub holemask: u16,
    /// Inodes that exist (64 for a full chunk).
    pub count: u8,
    /// Free inodes among those that exist.
    pub freecount: u32,
    /// Bit `i` set: inode `i` of the chunk is free (or does not exist).
    pub free: u64,
}

impl InobtRec {
    /// The mask of inodes that do not exist (`xfs_inobt_irec_to_allocmask`
    /// inverted): each hole mask bit covers four inodes.
    pub fn hole_inodes(&self) -> u64 {
        let mut m = 0u64;
        for j in 0..16u32 {
            if self.holemask & (1 << j) != 0 {
                m |= 0xf_u64 << j.saturating_mul(INODES_PER_HOLEMASK_BIT);
            }
        }
        m
    }

    /// Whether inode `i` (0..64) of the chunk exists.
    pub fn exists(&self, i: u32) -> bool {
        i < INODES_PER_CHUNK && self.hole_inodes() & (1u64 << i) == 0
    }

    /// Whether inode `i` of the chunk exists and is free.
    pub fn is_free(&self, i: u32) -> bool {
        self.exists(i) && self.free & (1u64 << i) != 0
    }

    /// Whether the chunk has holes.
    pub fn is_sparse(&self) -> bool {
        self.holemask != 0
    }
}

/// The inode btree or free inode btree of one AG.
#[derive(Debug, Clone)]
pub struct Inobt {
    form: ShortForm,
    sparse: bool,
    max_height: u16,
}

impl Inobt {
    /// The inobt of AG `agno`.
    pub fn all_chunks(geo: &Geometry, agno: AgNumber) -> Self {
        Self::new(INO_MAGIC, geo, agno)
    }

    /// The finobt of AG `agno`.
    pub fn free_chunks(geo: &Geometry, agno: AgNumber) -> Self {
        Self::new(FINO_MAGIC, geo, agno)
    }

    fn new(magic: u32, geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            form: ShortForm::new(magic, geo, agno),
            sparse: geo.features.has_sparse_inodes(),
            max_height: height(geo.maxlevels.inobt),
        }
    }

    /// The header form (AG, geometry, block address checks).
    pub fn form(&self) -> &ShortForm {
        &self.form
    }

    /// Whether records use the sparse layout.
    pub fn sparse(&self) -> bool {
        self.sparse
    }
}

impl BtreeFormat for Inobt {
    type Record = InobtRec;
    type Key = u32;

    fn header_len(&self) -> usize {
        super::SHORT_LEN
    }
    fn record_len(&self) -> usize {
        16
    }
    fn key_len(&self) -> usize {
        4
    }
    fn ptr_len(&self) -> usize {
        4
    }
    fn max_height(&self) -> u16 {
        self.max_height
    }
    delegate_header!(form, ShortForm);
    fn decode_record(&self, raw: &[u8]) -> InobtRec {
        let startino = be32_at(raw, 0).unwrap_or(0);
        let free = be64_at(raw, 8).unwrap_or(0);
        if self.sparse {
            InobtRec {
                startino,
                holemask: be16_at(raw, 4).unwrap_or(0),
                count: raw.get(6).copied().unwrap_or(0),
                freecount: u32::from(raw.get(7).copied().unwrap_or(0)),
                free,
            }
        } else {
            InobtRec {
                startino,
                holemask: 0,
                count: 64,
                freecount: be32_at(raw, 4).unwrap_or(0),
                free,
            }
        }
    }
    fn encode_record(&self, r: &InobtRec, raw: &mut [u8]) {
        put_be32(raw, 0, r.startino);
        if self.sparse {
            put_be16(raw, 4, r.holemask);
            if let Some(b) = raw.get_mut(6) {
                *b = r.count;
            }
            if let Some(b) = raw.get_mut(7) {
                *b = u8::try_from(r.freecount).unwrap_or(u8::MAX);
            }
        } else {
            put_be32(raw, 4, r.freecount);
        }
        put_be64(raw, 8, r.free);
    }
    fn decode_key(&self, raw: &[u8]) -> u32 {
        be32_at(raw, 0).unwrap_or(0)
    }
    fn encode_key(&self, k: &u32, raw: &mut [u8]) {
        put_be32(raw, 0, *k);
    }
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        BlockAddr(u64::from(be32_at(raw, 0).unwrap_or(u32::MAX)))
    }
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        put_be32(raw, 0, u32::try_from(addr.0).unwrap_or(u32::MAX));
    }
    fn record_key(&self, r: &InobtRec) -> u32 {
        r.startino
    }
    fn describe_key(&self, k: &u32) -> String {
        format!("(startino {k})")
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn holes_and_free_inodes() {
        let r = InobtRec {
            startino: 64,
            holemask: 0b1000_0000_0000_0001,
            count: 56,
            freecount: 2,
            free: 0xf000_0000_0000_000f | 0x30,
        };
        assert_eq!(r.hole_inodes(), 0xf000_0000_0000_000f);
        assert!(!r.exists(0) && !r.exists(63) && r.exists(4));
        assert!(r.is_free(4) && r.is_free(5) && !r.is_free(6));
        assert!(!r.is_free(0), "holes are not free inodes");
        assert!(!r.exists(64));
    }
}
