//! Directory data blocks (`XDD3`) and single-block directories (`XDB3`).
//!
//! Both start with the 64-byte `xfs_dir3_data_hdr` (a self-describing
//! block header plus three "best free" slots) followed by 8-byte aligned
//! entries. A live entry is `{inumber be64, namelen, name, ftype, pad,
//! tag be16}`; a free region is `{0xffff, length be16, ..., tag be16}`. The
//! tag is the entry's own offset in the block. A single-block directory ends
//! with the hash leaf array and a tail `{count be32, stale be32}`, and its
//! entries stop where the leaf array starts.
//!
//! Checks follow libxfs `xfs_dir3_data_verify` / `xfs_dir3_block_verify`
//! (magic, uuid, blkno, owner, CRC) and `__xfs_dir3_data_check` (entries in
//! bounds, tags, names, file types, free regions).

use super::{DATA_ALIGN, ftype, name_is_valid};
use crate::format::problem::{Checked, Checker};
use crate::format::{Uuid, be16_at, be32_at, be64_at, crc, magic_str};

/// `XDB3`: single-block directory.
pub const BLOCK_MAGIC: u32 = 0x5844_4233;
/// `XDD3`: directory data block.
pub const DATA_MAGIC: u32 = 0x5844_4433;
/// Offset of the CRC in the block header.
pub const CRC_OFFSET: usize = 4;
/// Size of `xfs_dir3_data_hdr`.
pub const HEADER_SIZE: usize = 64;
/// `XFS_DIR2_DATA_FREE_TAG`.
pub const FREE_TAG: u16 = 0xffff;

/// Which kind of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBlockKind {
    /// A single-block directory (`XDB3`): entries, leaf array, tail.
    Block,
    /// A data block of a leaf or node directory (`XDD3`).
    Data,
}

/// The v5 block header shared by directory data, leaf-less blocks and free
/// blocks (`struct xfs_dir3_blk_hdr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir3BlkHdr {
    /// Magic number.
    pub magic: u32,
    /// Stored CRC.
    pub crc: u32,
    /// The block's own disk address.
    pub blkno: u64,
    /// LSN of the last write.
    pub lsn: u64,
    /// Metadata UUID.
    pub uuid: Uuid,
    /// Inode number of the directory.
    pub owner: u64,
}

impl Dir3BlkHdr {
    /// Decodes the 48-byte header, if the buffer holds it.
    pub fn parse(buf: &[u8]) -> Option<Dir3BlkHdr> {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(buf.get(24..40)?);
        Some(Dir3BlkHdr {
            magic: be32_at(buf, 0)?,
            crc: crc::stored(buf, 4)?,
            blkno: be64_at(buf, 8)?,
            lsn: be64_at(buf, 16)?,
            uuid: Uuid(uuid),
            owner: be64_at(buf, 40)?,
        })
    }
}

/// One live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Byte offset of the entry in its block.
    pub offset: usize,
    /// Inode number.
    pub ino: u64,
    /// The name.
    pub name: Vec<u8>,
    /// File type code, if the filesystem records it.
    pub ftype: Option<u8>,
}

/// Size of a live entry with a name of `namelen` bytes
/// (`xfs_dir2_data_entsize`).
pub fn entry_size(namelen: usize, has_ftype: bool) -> usize {
    let raw = 8usize
        .saturating_add(1)
        .saturating_add(namelen)
        .saturating_add(usize::from(has_ftype))
        .saturating_add(2);
    raw.next_multiple_of(DATA_ALIGN)
}

/// A decoded directory data (or single) block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlock {
    /// Which kind.
    pub kind: DataBlockKind,
    /// The self-describing header.
    pub header: Dir3BlkHdr,
    /// `bestfree[3]` as `(offset, length)`.
    pub bestfree: [(u16, u16); 3],
    /// Live entries, in block order, as far as they could be decoded.
    pub entries: Vec<DataEntry>,
    /// For a single-block directory: the tail's leaf `count` and `stale`.
    pub tail: Option<(u32, u32)>,
    /// Free regions as `(offset, length)`, in block order, as far as the
    /// walk got.
    pub free: Vec<(usize, usize)>,
    /// Where the entry area ends: the block size, or the start of a
    /// single-block directory's leaf array.
    pub entries_end: usize,
}

/// What a data block must say about itself.
#[derive(Debug, Clone, Copy)]
pub struct DataBlockContext<'a> {
    /// The directory's inode number.
    pub owner: u64,
    /// The block's disk address.
    pub daddr: u64,
    /// The filesystem's metadata UUID.
    pub meta_uuid: Uuid,
    /// Directory entries record a file type.
    pub has_ftype: bool,
    /// Structure label for problems, e.g. `directory 128 block 0`.
    pub what: &'a str,
}

impl DataBlock {
    /// Decodes and verifies one directory block (`dir_block_size` bytes).
    /// Returns `None` if the magic is neither `XDB3` nor `XDD3` or the
    /// buffer cannot hold the header; otherwise the entries that could be
    /// decoded and every problem found.
    pub fn parse(buf: &[u8], ctx: &DataBlockContext<'_>) -> Option<Checked<DataBlock>> {
        let header = Dir3BlkHdr::parse(buf)?;
        let kind = match header.magic {
            BLOCK_MAGIC => DataBlockKind::Block,
            DATA_MAGIC => DataBlockKind::Data,
            _ => return None,
        };
        if buf.len() < HEADER_SIZE {
            return None;
        }
        let mut c = Checker::new(ctx.what);
        c.expect(
            crc::verify(buf, CRC_OFFSET),
            "crc",
            format_args!("{:#x}", crc::compute(buf, CRC_OFFSET).unwrap_or(0)),
            format_args!("{:#x}", header.crc),
        );
        c.expect(
            header.uuid == ctx.meta_uuid,
            "uuid",
            ctx.meta_uuid,
            header.uuid,
        );
        c.equal("bno", ctx.daddr, header.blkno);
        c.equal("owner", ctx.owner, header.owner);
        let mut bestfree = [(0u16, 0u16); 3];
        for (i, bf) in bestfree.iter_mut().enumerate() {
            let o = 48usize.saturating_add(i.saturating_mul(4));
            *bf = (
                be16_at(buf, o).unwrap_or(0),
                be16_at(buf, o.saturating_add(2)).unwrap_or(0),
            );
        }

        // Where the entries end.
        let (end, tail) = match kind {
            DataBlockKind::Data => (buf.len(), None),
            DataBlockKind::Block => {
                let tail_at = buf.len().saturating_sub(8);
                let count = be32_at(buf, tail_at).unwrap_or(0);
                let stale = be32_at(buf, tail_at.saturating_add(4)).unwrap_or(0);
                let leaf_bytes = usize::try_from(count)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(8);
                let end = tail_at.checked_sub(leaf_bytes);
                c.expect(
                    end.is_some_and(|e| e >= HEADER_SIZE),
                    "tail.count",
                    "a leaf array that fits the block",
                    count,
                );
                c.expect(
                    stale <= count,
                    "tail.stale",
                    format_args!("<= count {count}"),
                    stale,
                );
                (
                    end.unwrap_or(HEADER_SIZE).max(HEADER_SIZE),
                    Some((count, stale)),
                )
            }
        };

        let mut entries = Vec::new();
        let mut free = Vec::new();
        let mut pos = HEADER_SIZE;
        // Each step advances by at least 8 bytes: the walk is bounded by the
        // block size.
        while pos < end {
            let field = format!("du[{pos}]");
            let Some(first) = be16_at(buf, pos) else {
                c.push(&field, "an entry header inside the block", "truncated");
                break;
            };
            if first == FREE_TAG {
                let len = usize::from(be16_at(buf, pos.saturating_add(2)).unwrap_or(0));
                if len < DATA_ALIGN || len % DATA_ALIGN != 0 || pos.saturating_add(len) > end {
                    c.push(
                        &format!("{field}.length"),
                        format_args!("a multiple of 8 ending by byte {end}"),
                        len,
                    );
                    break;
                }
                let tag_at = pos.saturating_add(len).saturating_sub(2);
                let tag = be16_at(buf, tag_at).map(usize::from);
                c.expect(
                    tag == Some(pos),
                    &format!("{field}.tag"),
                    pos,
                    tag.unwrap_or(0),
                );
                free.push((pos, len));
                pos = pos.saturating_add(len);
                continue;
            }
            let ino = be64_at(buf, pos).unwrap_or(0);
            let namelen = usize::from(buf.get(pos.saturating_add(8)).copied().unwrap_or(0));
            let size = entry_size(namelen, ctx.has_ftype);
            if namelen == 0 || pos.saturating_add(size) > end {
                c.push(
                    &format!("{field}.namelen"),
                    format_args!("1..=255 with the entry ending by byte {end}"),
                    namelen,
                );
                break;
            }
            let name_start = pos.saturating_add(9);
            let name_end = name_start.saturating_add(namelen);
            let name = buf.get(name_start..name_end).unwrap_or(&[]).to_vec();
            let ft = if ctx.has_ftype {
                buf.get(name_end).copied()
            } else {
                None
            };
            let tag_at = pos.saturating_add(size).saturating_sub(2);
            let tag = be16_at(buf, tag_at).map(usize::from);
            c.expect(
                tag == Some(pos),
                &format!("{field}.tag"),
                pos,
                tag.unwrap_or(0),
            );
            c.expect(
                name_is_valid(&name),
                &format!("{field}.name"),
                "a name without '/' or NUL",
                String::from_utf8_lossy(&name).escape_debug(),
            );
            if let Some(ft) = ft {
                c.expect(
                    ft < ftype::MAX,
                    &format!("{field}.filetype"),
                    format_args!("< {}", ftype::MAX),
                    ft,
                );
            }
            entries.push(DataEntry {
                offset: pos,
                ino,
                name,
                ftype: ft,
            });
            pos = pos.saturating_add(size);
        }
        Some(Checked {
            value: DataBlock {
                kind,
                header,
                bestfree,
                entries,
                tail,
                free,
                entries_end: end,
            },
            problems: c.finish(),
        })
    }
}

/// Describes a magic number for "not a directory data block" messages.
pub fn describe_magic(buf: &[u8]) -> String {
    be32_at(buf, 0).map_or_else(|| "nothing".to_owned(), magic_str)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a valid data block with the given entries.
    pub(crate) fn build(
        kind: DataBlockKind,
        entries: &[(&[u8], u64, u8)],
        size: usize,
        daddr: u64,
        owner: u64,
        uuid: Uuid,
    ) -> Vec<u8> {
        let mut b = vec![0u8; size];
        let magic = match kind {
            DataBlockKind::Block => BLOCK_MAGIC,
            DataBlockKind::Data => DATA_MAGIC,
        };
        b[0..4].copy_from_slice(&magic.to_be_bytes());
        b[8..16].copy_from_slice(&daddr.to_be_bytes());
        b[24..40].copy_from_slice(&uuid.0);
        b[40..48].copy_from_slice(&owner.to_be_bytes());
        let mut pos = HEADER_SIZE;
        for (name, ino, ft) in entries {
            let sz = entry_size(name.len(), true);
            b[pos..pos + 8].copy_from_slice(&ino.to_be_bytes());
            b[pos + 8] = u8::try_from(name.len()).unwrap();
            b[pos + 9..pos + 9 + name.len()].copy_from_slice(name);
            b[pos + 9 + name.len()] = *ft;
            b[pos + sz - 2..pos + sz].copy_from_slice(&u16::try_from(pos).unwrap().to_be_bytes());
            pos += sz;
        }
        let end = match kind {
            DataBlockKind::Data => size,
            DataBlockKind::Block => {
                let n = entries.len();
                b[size - 8..size - 4].copy_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
                size - 8 - n * 8
            }
        };
        let free = end - pos;
        b[pos..pos + 2].copy_from_slice(&FREE_TAG.to_be_bytes());
        b[pos + 2..pos + 4].copy_from_slice(&u16::try_from(free).unwrap().to_be_bytes());
        b[end - 2..end].copy_from_slice(&u16::try_from(pos).unwrap().to_be_bytes());
        crc::update(&mut b, CRC_OFFSET).unwrap();
        b
    }

    fn ctx() -> DataBlockContext<'static> {
        DataBlockContext {
            owner: 128,
            daddr: 800,
            meta_uuid: Uuid([1; 16]),
            has_ftype: true,
            what: "directory 128 block 0",
        }
    }

    #[test]
    fn block_dir_roundtrip() {
        let b = build(
            DataBlockKind::Block,
            &[(b".", 128, 2), (b"..", 128, 2), (b"hello", 131, 1)],
            4096,
            800,
            128,
            Uuid([1; 16]),
        );
        let c = DataBlock::parse(&b, &ctx()).unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
        let names: Vec<&[u8]> = c.value.entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, vec![&b"."[..], b"..", b"hello"]);
        assert_eq!(c.value.entries[2].ino, 131);
        assert_eq!(c.value.tail, Some((3, 0)));
    }

    #[test]
    fn wrong_owner_and_bad_tag() {
        let mut b = build(
            DataBlockKind::Data,
            &[(b"x", 131, 1)],
            4096,
            800,
            129,
            Uuid([1; 16]),
        );
        b[64 + 14] ^= 1; // tag of the first entry
        crc::update(&mut b, CRC_OFFSET).unwrap();
        let c = DataBlock::parse(&b, &ctx()).unwrap();
        let fields: Vec<&str> = c.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["owner", "du[64].tag"]);
    }

    #[test]
    fn entry_sizes() {
        assert_eq!(entry_size(1, true), 16);
        assert_eq!(entry_size(5, true), 24);
        assert_eq!(entry_size(4, false), 16);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut buf in proptest::collection::vec(any::<u8>(), 0..1024), block in any::<bool>()) {
            if buf.len() >= 4 {
                let m = if block { BLOCK_MAGIC } else { DATA_MAGIC };
                buf[0..4].copy_from_slice(&m.to_be_bytes());
            }
            let _ = DataBlock::parse(&buf, &ctx());
            let _ = describe_magic(&buf);
        }
    }
}
