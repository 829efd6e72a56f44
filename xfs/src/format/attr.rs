//! Extended attribute structures: the shortform attribute fork, v5 leaf
//! blocks (`XFS_ATTR3_LEAF_MAGIC`) with their entries and name records, and
//! the headers of remote value blocks (`XFS_ATTR3_RMT_MAGIC`). Interior
//! nodes are the dabtree nodes shared with directories
//! ([`crate::format::dir2::leaf`]).
//!
//! Every decoder is bounded by its buffer and returns `None` when a
//! structure does not fit; judging values is the scrubber's job.

use crate::format::dir2::leaf::Da3BlkInfo;
use crate::format::{be16_at, be32_at, be64_at};

/// `XFS_ATTR3_LEAF_MAGIC`, at byte 8 of a leaf block.
pub const LEAF_MAGIC: u16 = 0x3bee;
/// `XFS_ATTR3_RMT_MAGIC` ("XARM"), at byte 0 of a remote value block.
pub const RMT_MAGIC: u32 = 0x5841_524d;
/// Size of `struct xfs_attr3_leaf_hdr`.
pub const LEAF_HDR_SIZE: usize = 80;
/// Size of one `struct xfs_attr_leaf_entry`.
pub const LEAF_ENTRY_SIZE: usize = 8;
/// Size of `struct xfs_attr3_rmt_hdr`.
pub const RMT_HDR_SIZE: usize = 56;
/// Offset of the CRC in a leaf block (`info.crc`).
pub const LEAF_CRC_OFFSET: usize = 12;
/// Offset of the CRC in a remote value block.
pub const RMT_CRC_OFFSET: usize = 12;
/// Size of the shortform header.
pub const SF_HDR_SIZE: usize = 4;
/// Longest attribute name (`MAXNAMELEN - 1`).
pub const MAX_NAME_LEN: usize = 255;

/// The value is in the leaf block, not in remote blocks.
pub const FLAG_LOCAL: u8 = 1 << 0;
/// The `trusted.` namespace.
pub const FLAG_ROOT: u8 = 1 << 1;
/// The `security.` namespace.
pub const FLAG_SECURE: u8 = 1 << 2;
/// Parent pointer attribute (the `parent` feature).
pub const FLAG_PARENT: u8 = 1 << 3;
/// Being created or removed: never seen at rest in a consistent
/// filesystem.
pub const FLAG_INCOMPLETE: u8 = 1 << 7;

/// The shortform header: total bytes (header included) and entry count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SfHeader {
    /// Bytes of the whole shortform structure.
    pub totsize: u16,
    /// Entries that follow.
    pub count: u8,
}

impl SfHeader {
    /// Decodes the 4-byte header.
    pub fn parse(fork: &[u8]) -> Option<SfHeader> {
        Some(SfHeader {
            totsize: be16_at(fork, 0)?,
            count: *fork.get(2)?,
        })
    }
}

/// One shortform entry, at `offset` in the fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfEntry {
    /// Byte offset of the entry in the fork.
    pub offset: usize,
    /// Name length as recorded.
    pub namelen: u8,
    /// Value length as recorded.
    pub valuelen: u8,
    /// Namespace flags.
    pub flags: u8,
}

impl SfEntry {
    /// Decodes the 3-byte entry header at `offset`.
    pub fn parse(fork: &[u8], offset: usize) -> Option<SfEntry> {
        let h = fork.get(offset..offset.checked_add(3)?)?;
        Some(SfEntry {
            offset,
            namelen: h[0],
            valuelen: h[1],
            flags: h[2],
        })
    }

    /// Bytes of the entry: header, name and value.
    pub fn size(&self) -> usize {
        // At most 3 + 255 + 255: no overflow.
        usize::from(self.namelen)
            .saturating_add(usize::from(self.valuelen))
            .saturating_add(3)
    }

    /// The name, if it lies inside `fork`.
    pub fn name<'a>(&self, fork: &'a [u8]) -> Option<&'a [u8]> {
        let start = self.offset.checked_add(3)?;
        fork.get(start..start.checked_add(usize::from(self.namelen))?)
    }
}

/// One free region of a leaf block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeMap {
    /// Start, in bytes from the block start.
    pub base: u16,
    /// Length in bytes.
    pub size: u16,
}

/// `struct xfs_attr3_leaf_hdr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafHeader {
    /// The dabtree block header.
    pub info: Da3BlkInfo,
    /// The `pad` half-word of `info` (must be zero).
    pub info_pad: u16,
    /// Entries.
    pub count: u16,
    /// Bytes used by name records.
    pub usedbytes: u16,
    /// Offset of the first name record (0 stands for 65536).
    pub firstused: u16,
    /// Whether the block may have holes (a hint).
    pub holes: u8,
    /// Padding (must be zero).
    pub pad1: u8,
    /// The three largest free regions.
    pub freemap: [FreeMap; 3],
    /// Padding (must be zero).
    pub pad2: u32,
}

impl LeafHeader {
    /// Decodes the header of a leaf block (any magic; the caller checks).
    pub fn parse(buf: &[u8]) -> Option<LeafHeader> {
        let fm = |at: usize| -> Option<FreeMap> {
            Some(FreeMap {
                base: be16_at(buf, at)?,
                size: be16_at(buf, at.checked_add(2)?)?,
            })
        };
        Some(LeafHeader {
            info: Da3BlkInfo::parse(buf)?,
            info_pad: be16_at(buf, 10)?,
            count: be16_at(buf, 56)?,
            usedbytes: be16_at(buf, 58)?,
            firstused: be16_at(buf, 60)?,
            holes: *buf.get(62)?,
            pad1: *buf.get(63)?,
            freemap: [fm(64)?, fm(68)?, fm(72)?],
            pad2: be32_at(buf, 76)?,
        })
    }

    /// `firstused` as a byte offset (the on-disk 0 means 65536, for 64 KiB
    /// blocks).
    pub fn first_used(&self) -> usize {
        if self.firstused == 0 {
            65536
        } else {
            usize::from(self.firstused)
        }
    }
}

/// `struct xfs_attr_leaf_entry`: the hash-ordered index of a leaf block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry {
    /// Hash of the name.
    pub hashval: u32,
    /// Offset of the name record in the block.
    pub nameidx: u16,
    /// Flags (local, namespace, incomplete).
    pub flags: u8,
    /// Padding (must be zero).
    pub pad2: u8,
}

impl LeafEntry {
    /// Decodes entry `i` of a leaf block.
    pub fn parse(buf: &[u8], i: usize) -> Option<LeafEntry> {
        let at = LEAF_HDR_SIZE.checked_add(i.checked_mul(LEAF_ENTRY_SIZE)?)?;
        Some(LeafEntry {
            hashval: be32_at(buf, at)?,
            nameidx: be16_at(buf, at.checked_add(4)?)?,
            flags: *buf.get(at.checked_add(6)?)?,
            pad2: *buf.get(at.checked_add(7)?)?,
        })
    }
}

/// A name record of a leaf block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafName<'a> {
    /// Name and value in the block.
    Local {
        /// The name.
        name: &'a [u8],
        /// The value's length as recorded.
        valuelen: u16,
        /// Bytes the record takes, rounded to 4.
        size: usize,
    },
    /// Name in the block, value in remote blocks.
    Remote {
        /// The name.
        name: &'a [u8],
        /// First attr-fork block of the value.
        valueblk: u32,
        /// The value's length.
        valuelen: u32,
        /// Bytes the record takes, rounded to 4.
        size: usize,
    },
}

impl<'a> LeafName<'a> {
    /// Decodes the name record at `at`; `None` if it does not fit `buf`.
    /// The value of a local record must fit as well.
    pub fn parse(buf: &'a [u8], at: usize, local: bool) -> Option<LeafName<'a>> {
        if local {
            let valuelen = be16_at(buf, at)?;
            let namelen = usize::from(*buf.get(at.checked_add(2)?)?);
            let start = at.checked_add(3)?;
            let name = buf.get(start..start.checked_add(namelen)?)?;
            let end = start
                .checked_add(namelen)?
                .checked_add(usize::from(valuelen))?;
            buf.get(start..end)?;
            Some(LeafName::Local {
                name,
                valuelen,
                size: end.checked_sub(at)?.next_multiple_of(4),
            })
        } else {
            let valueblk = be32_at(buf, at)?;
            let valuelen = be32_at(buf, at.checked_add(4)?)?;
            let namelen = usize::from(*buf.get(at.checked_add(8)?)?);
            let start = at.checked_add(9)?;
            let name = buf.get(start..start.checked_add(namelen)?)?;
            Some(LeafName::Remote {
                name,
                valueblk,
                valuelen,
                // `sizeof(xfs_attr_leaf_name_remote_t) - 1 + namelen`: the
                // struct is 12 bytes with its padding, so 11 + namelen.
                size: (11 + namelen).next_multiple_of(4),
            })
        }
    }

    /// The name.
    pub fn name(&self) -> &'a [u8] {
        match self {
            LeafName::Local { name, .. } | LeafName::Remote { name, .. } => name,
        }
    }

    /// Bytes the record takes in the block.
    pub fn size(&self) -> usize {
        match self {
            LeafName::Local { size, .. } | LeafName::Remote { size, .. } => *size,
        }
    }
}

/// `struct xfs_attr3_rmt_hdr`: the header of each remote value block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RmtHeader {
    /// Magic number ("XARM").
    pub magic: u32,
    /// Offset of this block's bytes in the value.
    pub offset: u32,
    /// Value bytes in this block.
    pub bytes: u32,
    /// Stored CRC.
    pub crc: u32,
    /// Metadata UUID.
    pub uuid: crate::format::Uuid,
    /// Owning inode.
    pub owner: u64,
    /// The block's disk address.
    pub blkno: u64,
    /// LSN of the last write.
    pub lsn: u64,
}

impl RmtHeader {
    /// Decodes the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Option<RmtHeader> {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(buf.get(16..32)?);
        Some(RmtHeader {
            magic: be32_at(buf, 0)?,
            offset: be32_at(buf, 4)?,
            bytes: be32_at(buf, 8)?,
            crc: be32_at(buf, 12)?,
            uuid: crate::format::Uuid(uuid),
            owner: be64_at(buf, 32)?,
            blkno: be64_at(buf, 40)?,
            lsn: be64_at(buf, 48)?,
        })
    }
}

/// Whether `name` is a valid attribute name (`xfs_attr_namecheck`):
/// 1..=255 bytes and no NUL.
pub fn name_is_valid(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// No decoder panics on arbitrary bytes at arbitrary offsets.
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..700),
                                       at in 0usize..800, i in 0usize..100, local in any::<bool>()) {
            let _ = SfHeader::parse(&buf);
            if let Some(e) = SfEntry::parse(&buf, at) {
                let _ = e.name(&buf);
                let _ = e.size();
            }
            if let Some(h) = LeafHeader::parse(&buf) {
                let _ = h.first_used();
            }
            let _ = LeafEntry::parse(&buf, i);
            if let Some(n) = LeafName::parse(&buf, at, local) {
                prop_assert!(n.size() >= n.name().len());
            }
            let _ = RmtHeader::parse(&buf);
        }
    }

    #[test]
    fn record_sizes_round_to_four() {
        // valuelen 5, namelen 3: 3 + 3 + 5 = 11 -> 12.
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&5u16.to_be_bytes());
        b[2] = 3;
        let n = LeafName::parse(&b, 0, true).unwrap();
        assert_eq!(n.size(), 12);
        assert_eq!(n.name(), &[0, 0, 0]);
        // Remote, namelen 4: 11 + 4 = 15 -> 16; namelen 6: 17 -> 20.
        b[8] = 4;
        let r = LeafName::parse(&b, 0, false).unwrap();
        assert_eq!(r.size(), 16);
        b[8] = 6;
        assert_eq!(LeafName::parse(&b, 0, false).unwrap().size(), 20);
        // A local record whose value runs off the block does not decode.
        b[0..2].copy_from_slice(&100u16.to_be_bytes());
        assert!(LeafName::parse(&b, 0, true).is_none());
    }

    #[test]
    fn names() {
        assert!(name_is_valid(b"user.x"));
        assert!(!name_is_valid(b""));
        assert!(!name_is_valid(b"a\0b"));
        assert!(!name_is_valid(&[b'a'; 256]));
    }
}
