//! Directory hash-index and free-index block headers: leaf blocks
//! (`LEAF1` / `LEAFN`), free-index blocks (`XDF3`) and dabtree nodes
//! (`DA3`). Only the headers and entry arrays, enough for hashed lookup and
//! for recognising the blocks of a directory's address space.

use crate::format::{Uuid, be16_at, be32_at, be64_at};

/// `XFS_DIR3_LEAF1_MAGIC`: the single leaf of a leaf directory.
pub const LEAF1_MAGIC: u16 = 0x3df1;
/// `XFS_DIR3_LEAFN_MAGIC`: a leaf of a node directory.
pub const LEAFN_MAGIC: u16 = 0x3dff;
/// `XFS_DA3_NODE_MAGIC`: a dabtree interior node.
pub const NODE_MAGIC: u16 = 0x3ebe;
/// `XFS_DIR3_FREE_MAGIC`: a free-space index block (`XDF3`).
pub const FREE_MAGIC: u32 = 0x5844_4633;
/// Size of the v5 leaf, node and free headers.
pub const HEADER_SIZE: usize = 64;
/// Offset of the CRC in leaf and node blocks (`da3_blkinfo.crc`).
pub const DA_CRC_OFFSET: usize = 12;
/// Offset of the CRC in free blocks.
pub const FREE_CRC_OFFSET: usize = 4;

/// `struct xfs_da3_blkinfo`: the header of every dabtree block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Da3BlkInfo {
    /// Next block at this level.
    pub forw: u32,
    /// Previous block at this level.
    pub back: u32,
    /// Magic number.
    pub magic: u16,
    /// Stored CRC.
    pub crc: u32,
    /// The block's disk address.
    pub blkno: u64,
    /// LSN of the last write.
    pub lsn: u64,
    /// Metadata UUID.
    pub uuid: Uuid,
    /// Owning inode.
    pub owner: u64,
}

impl Da3BlkInfo {
    /// Decodes the 56-byte header.
    pub fn parse(buf: &[u8]) -> Option<Da3BlkInfo> {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(buf.get(32..48)?);
        Some(Da3BlkInfo {
            forw: be32_at(buf, 0)?,
            back: be32_at(buf, 4)?,
            magic: be16_at(buf, 8)?,
            crc: crate::format::crc::stored(buf, DA_CRC_OFFSET)?,
            blkno: be64_at(buf, 16)?,
            lsn: be64_at(buf, 24)?,
            uuid: Uuid(uuid),
            owner: be64_at(buf, 48)?,
        })
    }
}

/// A leaf entry: a name hash and the address of the data entry
/// (byte offset in the data space divided by 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry {
    /// Name hash.
    pub hashval: u32,
    /// Data-space address / 8; 0 for a stale entry.
    pub address: u32,
}

/// A decoded leaf block header and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The block header.
    pub info: Da3BlkInfo,
    /// Entries, including stale ones.
    pub count: u16,
    /// Stale entries.
    pub stale: u16,
    /// The entries that fit the block (at most `count`).
    pub entries: Vec<LeafEntry>,
}

impl Leaf {
    /// Decodes a `LEAF1`/`LEAFN` block; `None` for another magic.
    pub fn parse(buf: &[u8]) -> Option<Leaf> {
        let info = Da3BlkInfo::parse(buf)?;
        if info.magic != LEAF1_MAGIC && info.magic != LEAFN_MAGIC {
            return None;
        }
        let count = be16_at(buf, 56)?;
        let stale = be16_at(buf, 58)?;
        let entries = buf
            .get(HEADER_SIZE..)?
            .chunks_exact(8)
            .take(usize::from(count))
            .map(|c| LeafEntry {
                hashval: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                address: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Leaf {
            info,
            count,
            stale,
            entries,
        })
    }
}

/// A decoded free-index block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeHeader {
    /// Magic number (`XDF3`).
    pub magic: u32,
    /// Stored CRC.
    pub crc: u32,
    /// The block's disk address.
    pub blkno: u64,
    /// Owning inode.
    pub owner: u64,
    /// First data block described here.
    pub firstdb: u32,
    /// Valid entries in `bests`.
    pub nvalid: u32,
    /// Used entries in `bests`.
    pub nused: u32,
}

impl FreeHeader {
    /// Decodes an `XDF3` header; `None` for another magic.
    pub fn parse(buf: &[u8]) -> Option<FreeHeader> {
        let magic = be32_at(buf, 0)?;
        if magic != FREE_MAGIC {
            return None;
        }
        Some(FreeHeader {
            magic,
            crc: crate::format::crc::stored(buf, FREE_CRC_OFFSET)?,
            blkno: be64_at(buf, 8)?,
            owner: be64_at(buf, 40)?,
            firstdb: be32_at(buf, 48)?,
            nvalid: be32_at(buf, 52)?,
            nused: be32_at(buf, 56)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leaf_header() {
        let mut b = vec![0u8; 4096];
        b[8..10].copy_from_slice(&LEAF1_MAGIC.to_be_bytes());
        b[48..56].copy_from_slice(&128u64.to_be_bytes());
        b[56..58].copy_from_slice(&2u16.to_be_bytes());
        b[64..68].copy_from_slice(&0x2eu32.to_be_bytes());
        b[68..72].copy_from_slice(&8u32.to_be_bytes());
        let l = Leaf::parse(&b).unwrap();
        assert_eq!(l.info.owner, 128);
        assert_eq!(l.entries.len(), 2);
        assert_eq!(
            l.entries[0],
            LeafEntry {
                hashval: 0x2e,
                address: 8
            }
        );
        assert!(FreeHeader::parse(&b).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(l) = Leaf::parse(&buf) {
                prop_assert!(l.entries.len() <= usize::from(l.count));
            }
            let _ = FreeHeader::parse(&buf);
            let _ = Da3BlkInfo::parse(&buf);
        }
    }
}
