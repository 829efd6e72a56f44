//! The reverse-mapping btree: who owns each AG block.
//!
//! A record (`struct xfs_rmap_rec`, 24 bytes) says that `blockcount` blocks
//! from AG block `startblock` belong to `owner` (an inode, or a special
//! owner such as the AG's free-space btrees) at file offset `offset` of the
//! data or attribute fork. The offset word also carries flags: bit 63 attr
//! fork, bit 62 bmbt block, bit 61 unwritten; bits 54..61 must be zero.
//!
//! Several owners may map the same block (reflink), so this is an
//! overlapping tree: node entries carry the low and the high key of their
//! subtree (20-byte packed keys {startblock, owner, offset}). Keys compare
//! start block, owner, then the offset word without the unwritten flag,
//! which is an attribute of a mapping, not part of its identity
//! (`xfs_rmapbt_diff_two_keys`). A record's high key adds `blockcount - 1`
//! to the start block and, for file data mappings, to the offset
//! (`xfs_rmapbt_init_high_key_from_rec`).

use super::{ShortForm, delegate_header, height, put_be32, put_be64};
use crate::format::{be32_at, be64_at};
use crate::geometry::Geometry;
use crate::types::AgNumber;
use std::cmp::Ordering;
use xfbtree::{BlockAddr, BtreeFormat};

/// v5 magic of rmapbt blocks ("RMB3").
pub const MAGIC: u32 = 0x524d_4233;

/// Offset word flag: the mapping is in the attribute fork.
pub const OFF_ATTR_FORK: u64 = 1 << 63;
/// Offset word flag: the block is a bmbt block of the fork.
pub const OFF_BMBT_BLOCK: u64 = 1 << 62;
/// Offset word flag: the mapping is unwritten.
pub const OFF_UNWRITTEN: u64 = 1 << 61;
/// The file offset part of the offset word (`XFS_RMAP_OFF_MASK`).
pub const OFF_MASK: u64 = (1 << 54) - 1;
/// Bits of the offset word that must be zero.
pub const OFF_RESERVED: u64 = !(OFF_MASK | OFF_ATTR_FORK | OFF_BMBT_BLOCK | OFF_UNWRITTEN);

/// Special owners (`XFS_RMAP_OWN_*`): bit 63 set means not an inode.
pub mod owner {
    /// No owner (never on disk).
    pub const NULL: u64 = u64::MAX;
    /// Unknown owner (never on disk).
    pub const UNKNOWN: u64 = u64::MAX - 1;
    /// Static filesystem metadata: AG headers.
    pub const FS: u64 = u64::MAX - 2;
    /// The internal log.
    pub const LOG: u64 = u64::MAX - 3;
    /// AG metadata: free-space btrees, rmapbt blocks and AGFL blocks.
    pub const AG: u64 = u64::MAX - 4;
    /// Inode btree blocks (inobt and finobt).
    pub const INOBT: u64 = u64::MAX - 5;
    /// Inode chunks.
    pub const INODES: u64 = u64::MAX - 6;
    /// Refcount btree blocks.
    pub const REFC: u64 = u64::MAX - 7;
    /// Copy-on-write staging extents.
    pub const COW: u64 = u64::MAX - 8;

    /// Whether `owner` is a special owner rather than an inode number.
    pub fn is_special(owner: u64) -> bool {
        owner & (1 << 63) != 0
    }

    /// The name of a special owner, as xfs_db and the kernel print it.
    pub fn name(owner: u64) -> Option<&'static str> {
        Some(match owner {
            FS => "fs",
            LOG => "log",
            AG => "ag",
            INOBT => "inobt",
            INODES => "inodes",
            REFC => "refcount",
            COW => "cow",
            NULL => "null",
            UNKNOWN => "unknown",
            _ => return None,
        })
    }
}

/// A reverse mapping, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmapRec {
    /// First AG block.
    pub startblock: u32,
    /// Number of blocks.
    pub blockcount: u32,
    /// Inode number, or a special owner (see [`owner`]).
    pub owner: u64,
    /// The whole offset word: file offset and flags.
    pub offset_word: u64,
}

impl RmapRec {
    /// File offset of the first block (for inode owners).
    pub fn offset(&self) -> u64 {
        self.offset_word & OFF_MASK
    }

    /// Whether the mapping is in the attribute fork.
    pub fn attr_fork(&self) -> bool {
        self.offset_word & OFF_ATTR_FORK != 0
    }

    /// Whether the blocks are bmbt blocks of the fork.
    pub fn bmbt_block(&self) -> bool {
        self.offset_word & OFF_BMBT_BLOCK != 0
    }

    /// Whether the mapping is unwritten.
    pub fn unwritten(&self) -> bool {
        self.offset_word & OFF_UNWRITTEN != 0
    }

    /// Bits of the offset word that should be zero but are not.
    pub fn reserved_bits(&self) -> u64 {
        self.offset_word & OFF_RESERVED
    }

    /// Builds the offset word from its parts.
    pub fn offset_word_of(offset: u64, attr_fork: bool, bmbt_block: bool, unwritten: bool) -> u64 {
        (offset & OFF_MASK)
            | if attr_fork { OFF_ATTR_FORK } else { 0 }
            | if bmbt_block { OFF_BMBT_BLOCK } else { 0 }
            | if unwritten { OFF_UNWRITTEN } else { 0 }
    }

    /// One past the last block, if it fits in 32 bits.
    pub fn end(&self) -> Option<u32> {
        self.startblock.checked_add(self.blockcount)
    }
}

/// An rmapbt key: {startblock, owner, offset word}.
#[derive(Debug, Clone, Copy)]
pub struct RmapKey {
    /// AG block.
    pub startblock: u32,
    /// Owner.
    pub owner: u64,
    /// Offset word (flags included).
    pub offset_word: u64,
}

impl RmapKey {
    fn order(&self) -> (u32, u64, u64) {
        (
            self.startblock,
            self.owner,
            self.offset_word & !OFF_UNWRITTEN,
        )
    }

    /// The lowest key: for "is anything mapped at or after this block?".
    pub fn min_at(startblock: u32) -> Self {
        Self {
            startblock,
            owner: 0,
            offset_word: 0,
        }
    }

    /// The highest key at a block.
    pub fn max_at(startblock: u32) -> Self {
        Self {
            startblock,
            owner: u64::MAX,
            offset_word: u64::MAX,
        }
    }
}

impl PartialEq for RmapKey {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for RmapKey {}
impl PartialOrd for RmapKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RmapKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

/// The reverse-mapping btree of one AG.
#[derive(Debug, Clone)]
pub struct Rmapbt {
    form: ShortForm,
    max_height: u16,
}

impl Rmapbt {
    /// The rmapbt of AG `agno`.
    pub fn new(geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            form: ShortForm::new(MAGIC, geo, agno),
            max_height: height(geo.maxlevels.rmap),
        }
    }

    /// The header form (AG, geometry, block address checks).
    pub fn form(&self) -> &ShortForm {
        &self.form
    }
}

fn decode_key(raw: &[u8]) -> RmapKey {
    RmapKey {
        startblock: be32_at(raw, 0).unwrap_or(0),
        owner: be64_at(raw, 4).unwrap_or(0),
        offset_word: be64_at(raw, 12).unwrap_or(0),
    }
}

impl BtreeFormat for Rmapbt {
    type Record = RmapRec;
    type Key = RmapKey;

    fn header_len(&self) -> usize {
        super::SHORT_LEN
    }
    fn record_len(&self) -> usize {
        24
    }
    fn key_len(&self) -> usize {
        20
    }
    fn ptr_len(&self) -> usize {
        4
    }
    fn overlapping(&self) -> bool {
        true
    }
    fn max_height(&self) -> u16 {
        self.max_height
    }
    delegate_header!(form, ShortForm);
    fn decode_record(&self, raw: &[u8]) -> RmapRec {
        RmapRec {
            startblock: be32_at(raw, 0).unwrap_or(0),
            blockcount: be32_at(raw, 4).unwrap_or(0),
            owner: be64_at(raw, 8).unwrap_or(0),
            offset_word: be64_at(raw, 16).unwrap_or(0),
        }
    }
    fn encode_record(&self, r: &RmapRec, raw: &mut [u8]) {
        put_be32(raw, 0, r.startblock);
        put_be32(raw, 4, r.blockcount);
        put_be64(raw, 8, r.owner);
        put_be64(raw, 16, r.offset_word);
    }
    fn decode_key(&self, raw: &[u8]) -> RmapKey {
        decode_key(raw)
    }
    fn encode_key(&self, k: &RmapKey, raw: &mut [u8]) {
        put_be32(raw, 0, k.startblock);
        put_be64(raw, 4, k.owner);
        put_be64(raw, 12, k.offset_word);
    }
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        BlockAddr(u64::from(be32_at(raw, 0).unwrap_or(u32::MAX)))
    }
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        put_be32(raw, 0, u32::try_from(addr.0).unwrap_or(u32::MAX));
    }
    fn record_key(&self, r: &RmapRec) -> RmapKey {
        RmapKey {
            startblock: r.startblock,
            owner: r.owner,
            offset_word: r.offset_word,
        }
    }
    fn describe_key(&self, k: &RmapKey) -> String {
        let owner = owner::name(k.owner).map_or_else(|| k.owner.to_string(), str::to_owned);
        format!(
            "(startblock {}, owner {owner}, offset word {:#x})",
            k.startblock, k.offset_word
        )
    }
    fn record_high_key(&self, r: &RmapRec) -> RmapKey {
        // The kernel's arithmetic, wrap-around included, so that keys it
        // wrote compare equal to the keys computed here.
        let adj = r.blockcount.wrapping_sub(1);
        let mut k = self.record_key(r);
        k.startblock = r.startblock.wrapping_add(adj);
        if !owner::is_special(r.owner) && !r.bmbt_block() {
            let off = (r.offset_word & OFF_MASK).wrapping_add(u64::from(adj));
            k.offset_word = off | (r.offset_word & !OFF_MASK);
        }
        k
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_the_unwritten_flag() {
        let a = RmapKey {
            startblock: 5,
            owner: 131,
            offset_word: 7,
        };
        let b = RmapKey {
            startblock: 5,
            owner: 131,
            offset_word: 7 | OFF_UNWRITTEN,
        };
        assert_eq!(a, b);
        let c = RmapKey {
            startblock: 5,
            owner: 131,
            offset_word: 7 | OFF_ATTR_FORK,
        };
        assert!(a < c, "fork is part of the key");
        assert!(RmapKey::min_at(5) <= a && a <= RmapKey::max_at(5));
    }

    #[test]
    fn owners() {
        assert!(owner::is_special(owner::AG));
        assert!(!owner::is_special(131));
        assert_eq!(owner::name(owner::INODES), Some("inodes"));
        assert_eq!(owner::COW, 0xffff_ffff_ffff_fff7);
    }

    #[test]
    fn offset_word_round_trip() {
        let w = RmapRec::offset_word_of(1234, true, false, true);
        let r = RmapRec {
            startblock: 1,
            blockcount: 2,
            owner: 3,
            offset_word: w,
        };
        assert_eq!(
            (r.offset(), r.attr_fork(), r.bmbt_block(), r.unwritten()),
            (1234, true, false, true)
        );
        assert_eq!(r.reserved_bits(), 0);
        let bad = RmapRec {
            offset_word: 1 << 55,
            ..r
        };
        assert_ne!(bad.reserved_bits(), 0);
    }
}
