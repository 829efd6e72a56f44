//! Remote symlink blocks (`struct xfs_dsymlink_hdr`, magic `XSLM`).
//!
//! A symlink target that does not fit the inode is stored in filesystem
//! blocks, each starting with a 56-byte header saying which bytes of the
//! target it holds. Checks follow libxfs `xfs_symlink_verify`.

use super::problem::{Checked, Checker};
use super::{ShortBuffer, Uuid, crc, magic_str, view};
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XSLM`.
pub const MAGIC: u32 = 0x5853_4c4d;
/// Offset of the CRC.
pub const CRC_OFFSET: usize = 12;
/// Size of the header.
pub const HEADER_SIZE: usize = 56;
/// Longest symlink target (`XFS_SYMLINK_MAXLEN`).
pub const MAX_LEN: u64 = 1024;

/// Raw view of the remote symlink header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawSymlinkHdr {
    pub magic: be::U32,
    pub offset: be::U32,
    pub bytes: be::U32,
    pub crc: le::U32,
    pub uuid: Uuid,
    pub owner: be::U64,
    pub blkno: be::U64,
    pub lsn: be::U64,
}

const _: () = assert!(size_of::<RawSymlinkHdr>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(RawSymlinkHdr, crc) == CRC_OFFSET);

/// A decoded remote symlink header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkHeader {
    /// Magic number.
    pub magic: u32,
    /// Offset in the target of the bytes in this block.
    pub offset: u32,
    /// Target bytes in this block.
    pub bytes: u32,
    /// Stored CRC.
    pub crc: u32,
    /// Metadata UUID.
    pub uuid: Uuid,
    /// The symlink's inode.
    pub owner: u64,
    /// The block's disk address.
    pub blkno: u64,
    /// LSN of the last write.
    pub lsn: u64,
}

impl SymlinkHeader {
    /// Decodes the header at the start of a block.
    pub fn from_bytes(buf: &[u8]) -> Result<SymlinkHeader, ShortBuffer> {
        let r: &RawSymlinkHdr = view(buf, "symlink block")?;
        Ok(SymlinkHeader {
            magic: r.magic.get(),
            offset: r.offset.get(),
            bytes: r.bytes.get(),
            crc: r.crc.get(),
            uuid: r.uuid,
            owner: r.owner.get(),
            blkno: r.blkno.get(),
            lsn: r.lsn.get(),
        })
    }

    /// Decodes and verifies one remote symlink block (a whole filesystem
    /// block, which the CRC covers).
    pub fn check(
        block: &[u8],
        owner: u64,
        daddr: u64,
        meta_uuid: Uuid,
        what: &str,
    ) -> Result<Checked<SymlinkHeader>, ShortBuffer> {
        let h = SymlinkHeader::from_bytes(block)?;
        let mut c = Checker::new(what);
        c.expect(
            h.magic == MAGIC,
            "magic",
            magic_str(MAGIC),
            magic_str(h.magic),
        );
        c.expect(
            crc::verify(block, CRC_OFFSET),
            "crc",
            format_args!("{:#x}", crc::compute(block, CRC_OFFSET).unwrap_or(0)),
            format_args!("{:#x}", h.crc),
        );
        c.expect(h.uuid == meta_uuid, "uuid", meta_uuid, h.uuid);
        c.equal("owner", owner, h.owner);
        c.equal("bno", daddr, h.blkno);
        let room = block.len().saturating_sub(HEADER_SIZE);
        c.expect(
            u64::from(h.offset) < MAX_LEN,
            "offset",
            format_args!("< {MAX_LEN}"),
            h.offset,
        );
        c.expect(
            usize::try_from(h.bytes).is_ok_and(|b| b <= room),
            "bytes",
            format_args!("<= {room} (the block's room)"),
            h.bytes,
        );
        c.expect(
            u64::from(h.offset).saturating_add(u64::from(h.bytes)) <= MAX_LEN,
            "bytes",
            format_args!("offset + bytes <= {MAX_LEN}"),
            h.bytes,
        );
        Ok(Checked {
            value: h,
            problems: c.finish(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_block() {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[8..12].copy_from_slice(&600u32.to_be_bytes());
        b[16..32].copy_from_slice(&[3; 16]);
        b[32..40].copy_from_slice(&131u64.to_be_bytes());
        b[40..48].copy_from_slice(&64u64.to_be_bytes());
        crc::update(&mut b, CRC_OFFSET).unwrap();
        let c = SymlinkHeader::check(&b, 131, 64, Uuid([3; 16]), "symlink 131").unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
        let c = SymlinkHeader::check(&b, 132, 64, Uuid([3; 16]), "symlink 132").unwrap();
        assert_eq!(c.problems.len(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SymlinkHeader::check(&buf, 1, 2, Uuid([0; 16]), "x");
        }
    }
}
