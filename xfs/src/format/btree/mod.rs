//! XFS btree blocks as [`xfbtree`] formats.
//!
//! Every XFS btree is one [`xfbtree::BtreeFormat`]: the engine walks,
//! verifies and bulk-loads it, this module says what its blocks look like.
//! Two header forms exist on v5 filesystems (`struct xfs_btree_block`):
//!
//! ```text
//! short form (AG btrees), 56 bytes     long form (bmbt), 72 bytes
//!  0 magic    be32                      0 magic    be32
//!  4 level    be16                      4 level    be16
//!  6 numrecs  be16                      6 numrecs  be16
//!  8 leftsib  be32 agbno                8 leftsib  be64 fsbno
//! 12 rightsib be32 agbno               16 rightsib be64 fsbno
//! 16 blkno    be64 daddr               24 blkno    be64 daddr
//! 24 lsn      be64                     32 lsn      be64
//! 32 uuid     [16]                     40 uuid     [16]
//! 48 owner    be32 agno                56 owner    be64 inode
//! 52 crc      le32                     64 crc      le32
//!                                      68 pad      be32 (zero)
//! ```
//!
//! Block addresses given to the engine are AG block numbers for AG btrees
//! and filesystem block numbers for the bmbt; null siblings are all-ones.
//! Header checks follow the kernel's `xfs_btree_{s,l}block_v5hdr_verify`
//! and `xfs_btree_check_{s,l}block`: magic, UUID (the metadata UUID),
//! self-address, owner, sibling pointers that are null or valid and not the
//! block itself, and (long form) a zero pad. The LSN is not checked.

pub mod alloc;
pub mod bmbt;
pub mod ialloc;
pub mod refcount;
pub mod rmap;

use super::{Uuid, be16_at, be32_at, be64_at, crc, magic_str};
use crate::geometry::Geometry;
use crate::types::{AgBlock, AgNumber, FsBlock, null};
use xfbtree::{BlockAddr, BlockHeader, FieldProblem, Trust};
use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::byteorder::little_endian;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of a v5 short-form header (`XFS_BTREE_SBLOCK_CRC_LEN`).
pub const SHORT_LEN: usize = 56;
/// Length of a v5 long-form header (`XFS_BTREE_LBLOCK_CRC_LEN`).
pub const LONG_LEN: usize = 72;
/// Offset of the CRC in a short-form header.
pub const SHORT_CRC_OFF: usize = 52;
/// Offset of the CRC in a long-form header.
pub const LONG_CRC_OFF: usize = 64;

/// The on-disk short-form header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawShort {
    magic: U32,
    level: U16,
    numrecs: U16,
    leftsib: U32,
    rightsib: U32,
    blkno: U64,
    lsn: U64,
    uuid: Uuid,
    owner: U32,
    crc: little_endian::U32,
}
const _: () = assert!(size_of::<RawShort>() == SHORT_LEN);

/// The on-disk long-form header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawLong {
    magic: U32,
    level: U16,
    numrecs: U16,
    leftsib: U64,
    rightsib: U64,
    blkno: U64,
    lsn: U64,
    uuid: Uuid,
    owner: U64,
    crc: little_endian::U32,
    pad: U32,
}
const _: () = assert!(size_of::<RawLong>() == LONG_LEN);

fn sibling32(v: u32) -> Option<BlockAddr> {
    (v != null::AGBLOCK).then_some(BlockAddr(u64::from(v)))
}

fn sibling64(v: u64) -> Option<BlockAddr> {
    (v != null::FSBLOCK).then_some(BlockAddr(v))
}

/// Header handling of AG btrees: blocks of one AG, owned by that AG.
#[derive(Debug, Clone)]
pub struct ShortForm {
    magic: u32,
    geo: Geometry,
    agno: AgNumber,
}

impl ShortForm {
    /// Blocks of the tree with `magic` in AG `agno`.
    pub fn new(magic: u32, geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            magic,
            geo: geo.clone(),
            agno,
        }
    }

    /// The AG.
    pub fn agno(&self) -> AgNumber {
        self.agno
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    fn agbno(addr: BlockAddr) -> Option<AgBlock> {
        u32::try_from(addr.0).ok().map(AgBlock)
    }

    pub(crate) fn read_header(&self, block: &[u8]) -> BlockHeader {
        BlockHeader {
            level: be16_at(block, 4).unwrap_or(0),
            numrecs: u32::from(be16_at(block, 6).unwrap_or(0)),
            left: sibling32(be32_at(block, 8).unwrap_or(null::AGBLOCK)),
            right: sibling32(be32_at(block, 12).unwrap_or(null::AGBLOCK)),
        }
    }

    pub(crate) fn write_header(&self, block: &mut [u8], addr: BlockAddr, h: &BlockHeader) {
        let Ok((raw, _)) = RawShort::mut_from_prefix(block) else {
            return;
        };
        let daddr = Self::agbno(addr)
            .and_then(|b| self.geo.agb_to_daddr(self.agno, b))
            .map_or(0, |d| d.0);
        let sib = |s: Option<BlockAddr>| {
            s.and_then(|a| u32::try_from(a.0).ok())
                .unwrap_or(null::AGBLOCK)
        };
        raw.magic.set(self.magic);
        raw.level.set(h.level);
        raw.numrecs
            .set(u16::try_from(h.numrecs).unwrap_or(u16::MAX));
        raw.leftsib.set(sib(h.left));
        raw.rightsib.set(sib(h.right));
        raw.blkno.set(daddr);
        raw.lsn.set(0);
        raw.uuid = self.geo.meta_uuid;
        raw.owner.set(self.agno.0);
        raw.crc.set(0);
    }

    pub(crate) fn check_header(
        &self,
        block: &[u8],
        addr: BlockAddr,
        out: &mut Vec<FieldProblem>,
    ) -> Trust {
        let Ok((raw, _)) = RawShort::ref_from_prefix(block) else {
            out.push(FieldProblem::new(
                "magic",
                magic_str(self.magic),
                "short block",
            ));
            return Trust::Unusable;
        };
        if raw.magic.get() != self.magic {
            out.push(FieldProblem::new(
                "magic",
                magic_str(self.magic),
                magic_str(raw.magic.get()),
            ));
            return Trust::Unusable;
        }
        if raw.uuid != self.geo.meta_uuid {
            out.push(FieldProblem::new("uuid", self.geo.meta_uuid, raw.uuid));
        }
        let daddr = Self::agbno(addr).and_then(|b| self.geo.agb_to_daddr(self.agno, b));
        match daddr {
            Some(d) if d.0 == raw.blkno.get() => {}
            Some(d) => out.push(FieldProblem::new("bno", d.0, raw.blkno.get())),
            None => out.push(FieldProblem::new(
                "bno",
                "a block inside the AG",
                raw.blkno.get(),
            )),
        }
        if raw.owner.get() != self.agno.0 {
            out.push(FieldProblem::new("owner", self.agno.0, raw.owner.get()));
        }
        for (field, v) in [
            ("leftsib", raw.leftsib.get()),
            ("rightsib", raw.rightsib.get()),
        ] {
            if v == null::AGBLOCK {
                continue;
            }
            if u64::from(v) == addr.0 {
                out.push(FieldProblem::new(field, "null or another block", v));
            } else if !self.geo.verify_agbno(self.agno, AgBlock(v)) {
                out.push(FieldProblem::new(
                    field,
                    "null or a block inside the AG past its headers",
                    v,
                ));
            }
        }
        Trust::Usable
    }

    pub(crate) fn checksum_ok(block: &[u8]) -> bool {
        crc::verify(block, SHORT_CRC_OFF)
    }

    pub(crate) fn seal(block: &mut [u8]) {
        let _ = crc::update(block, SHORT_CRC_OFF);
    }

    /// Whether `addr` can hold a block of an AG btree (`xfs_verify_agbno`).
    pub fn contains(&self, addr: BlockAddr) -> bool {
        Self::agbno(addr).is_some_and(|b| self.geo.verify_agbno(self.agno, b))
    }
}

/// Header handling of file-owned btrees (the bmbt): blocks anywhere in the
/// filesystem, owned by one inode.
#[derive(Debug, Clone)]
pub struct LongForm {
    magic: u32,
    geo: Geometry,
    owner: u64,
}

impl LongForm {
    /// Blocks of the tree with `magic` owned by inode `owner`.
    pub fn new(magic: u32, geo: &Geometry, owner: u64) -> Self {
        Self {
            magic,
            geo: geo.clone(),
            owner,
        }
    }

    /// The owning inode.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    pub(crate) fn read_header(&self, block: &[u8]) -> BlockHeader {
        BlockHeader {
            level: be16_at(block, 4).unwrap_or(0),
            numrecs: u32::from(be16_at(block, 6).unwrap_or(0)),
            left: sibling64(be64_at(block, 8).unwrap_or(null::FSBLOCK)),
            right: sibling64(be64_at(block, 16).unwrap_or(null::FSBLOCK)),
        }
    }

    pub(crate) fn write_header(&self, block: &mut [u8], addr: BlockAddr, h: &BlockHeader) {
        let Ok((raw, _)) = RawLong::mut_from_prefix(block) else {
            return;
        };
        let daddr = self.geo.fsb_to_daddr(FsBlock(addr.0)).map_or(0, |d| d.0);
        raw.magic.set(self.magic);
        raw.level.set(h.level);
        raw.numrecs
            .set(u16::try_from(h.numrecs).unwrap_or(u16::MAX));
        raw.leftsib.set(h.left.map_or(null::FSBLOCK, |a| a.0));
        raw.rightsib.set(h.right.map_or(null::FSBLOCK, |a| a.0));
        raw.blkno.set(daddr);
        raw.lsn.set(0);
        raw.uuid = self.geo.meta_uuid;
        raw.owner.set(self.owner);
        raw.crc.set(0);
        raw.pad.set(0);
    }

    pub(crate) fn check_header(
        &self,
        block: &[u8],
        addr: BlockAddr,
        out: &mut Vec<FieldProblem>,
    ) -> Trust {
        let Ok((raw, _)) = RawLong::ref_from_prefix(block) else {
            out.push(FieldProblem::new(
                "magic",
                magic_str(self.magic),
                "short block",
            ));
            return Trust::Unusable;
        };
        if raw.magic.get() != self.magic {
            out.push(FieldProblem::new(
                "magic",
                magic_str(self.magic),
                magic_str(raw.magic.get()),
            ));
            return Trust::Unusable;
        }
        if raw.uuid != self.geo.meta_uuid {
            out.push(FieldProblem::new("uuid", self.geo.meta_uuid, raw.uuid));
        }
        match self.geo.fsb_to_daddr(FsBlock(addr.0)) {
            Some(d) if d.0 == raw.blkno.get() => {}
            Some(d) => out.push(FieldProblem::new("bno", d.0, raw.blkno.get())),
            None => out.push(FieldProblem::new("bno", "a valid block", raw.blkno.get())),
        }
        if raw.owner.get() != self.owner {
            out.push(FieldProblem::new("owner", self.owner, raw.owner.get()));
        }
        if raw.pad.get() != 0 {
            out.push(FieldProblem::new("pad", 0, raw.pad.get()));
        }
        for (field, v) in [
            ("leftsib", raw.leftsib.get()),
            ("rightsib", raw.rightsib.get()),
        ] {
            if v == null::FSBLOCK {
                continue;
            }
            if v == addr.0 {
                out.push(FieldProblem::new(field, "null or another block", v));
            } else if !self.geo.verify_fsb_extent(FsBlock(v), 1) {
                out.push(FieldProblem::new(
                    field,
                    "null or a valid filesystem block",
                    v,
                ));
            }
        }
        Trust::Usable
    }

    pub(crate) fn checksum_ok(block: &[u8]) -> bool {
        crc::verify(block, LONG_CRC_OFF)
    }

    pub(crate) fn seal(block: &mut [u8]) {
        let _ = crc::update(block, LONG_CRC_OFF);
    }

    /// Whether `addr` can hold a block of a file's btree.
    pub fn contains(&self, addr: BlockAddr) -> bool {
        self.geo.verify_fsb_extent(FsBlock(addr.0), 1)
    }
}

/// Implements the header half of [`xfbtree::BtreeFormat`] by delegating to a
/// `form` field (a [`ShortForm`] or [`LongForm`]).
macro_rules! delegate_header {
    ($form:ident, $kind:ty) => {
        fn read_header(&self, block: &[u8]) -> xfbtree::BlockHeader {
            self.$form.read_header(block)
        }
        fn write_header(
            &self,
            block: &mut [u8],
            addr: xfbtree::BlockAddr,
            header: &xfbtree::BlockHeader,
        ) {
            self.$form.write_header(block, addr, header);
        }
        fn check_header(
            &self,
            block: &[u8],
            addr: xfbtree::BlockAddr,
            out: &mut Vec<xfbtree::FieldProblem>,
        ) -> xfbtree::Trust {
            self.$form.check_header(block, addr, out)
        }
        fn checksum_ok(&self, block: &[u8]) -> bool {
            <$kind>::checksum_ok(block)
        }
        fn seal(&self, block: &mut [u8]) {
            <$kind>::seal(block);
        }
    };
}
pub(crate) use delegate_header;

/// Writes `v` big-endian at `off` if it fits.
pub(crate) fn put_be32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(d) = off.checked_add(4).and_then(|e| buf.get_mut(off..e)) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes `v` big-endian at `off` if it fits.
pub(crate) fn put_be64(buf: &mut [u8], off: usize, v: u64) {
    if let Some(d) = off.checked_add(8).and_then(|e| buf.get_mut(off..e)) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes `v` big-endian at `off` if it fits.
pub(crate) fn put_be16(buf: &mut [u8], off: usize, v: u16) {
    if let Some(d) = off.checked_add(2).and_then(|e| buf.get_mut(off..e)) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Height limit as the engine wants it.
pub(crate) fn height(levels: u32) -> u16 {
    u16::try_from(levels).unwrap_or(u16::MAX)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    //! Arbitrary bytes in every block of every XFS btree format: the
    //! engine's verifier, cursors and lookups must stay bounded and never
    //! panic. These are the formats' fuzz targets.

    use super::alloc::{AllocRec, BnoKey, Bnobt, CntKey, Cntbt};
    use super::bmbt::Bmbt;
    use super::ialloc::Inobt;
    use super::refcount::Refcountbt;
    use super::rmap::{RmapKey, Rmapbt};
    use crate::format::dinode::Fork;
    use crate::geometry::tests_support::sample_geometry;
    use crate::types::AgNumber;
    use proptest::prelude::*;
    use xfbtree::verify::Problems;
    use xfbtree::{BlockAddr, BlockStore, Btree, BtreeFormat, Lookup, MemStore, Root};

    const BLOCK: usize = 4096;

    /// A store of `blocks` blocks filled from `bytes` (repeated), with the
    /// given magic at the front of every block so that decoding gets past
    /// the magic check most of the time.
    fn store(bytes: &[u8], blocks: usize, magic: u32, keep_magic: bool) -> MemStore {
        let mut s = MemStore::new(BLOCK);
        for b in 0..blocks {
            let a = s.alloc().unwrap();
            s.write(a, |buf| {
                for (i, x) in buf.iter_mut().enumerate() {
                    *x = bytes[(i + b * 7) % bytes.len()];
                }
                if keep_magic {
                    buf[..4].copy_from_slice(&magic.to_be_bytes());
                }
            })
            .unwrap();
        }
        s
    }

    fn exercise<F: BtreeFormat>(
        format: F,
        magic: u32,
        bytes: &[u8],
        height: u16,
        keep_magic: bool,
        keys: &[F::Key],
    ) {
        let s = store(bytes, 24, magic, keep_magic);
        let t = Btree::open(
            s,
            format,
            Root::Block {
                addr: BlockAddr(3),
                height,
            },
        )
        .unwrap();
        let mut p = Problems::default();
        let sum = t.verify(&mut p);
        assert!(sum.blocks <= 24);
        if let Ok(mut c) = t.cursor_first() {
            for _ in 0..100_000 {
                if !matches!(c.next_record(), Ok(Some(_))) {
                    break;
                }
            }
        }
        for k in keys {
            let _ = t.lookup(k, Lookup::Le);
            let _ = t.lookup(k, Lookup::Ge);
            let _ = t.query_overlapping(k, k, |_| std::ops::ControlFlow::Continue(()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_blocks_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 1..600),
            height in 0u16..8,
            keep_magic in any::<bool>(),
            k in any::<u32>(),
        ) {
            let g = sample_geometry();
            let ag = AgNumber(1);
            let rec = AllocRec { startblock: k, blockcount: k.rotate_left(7) };
            exercise(Bnobt::new(&g, ag), super::alloc::BNO_MAGIC, &bytes, height, keep_magic, &[BnoKey(rec)]);
            exercise(Cntbt::new(&g, ag), super::alloc::CNT_MAGIC, &bytes, height, keep_magic, &[CntKey(rec)]);
            exercise(Inobt::all_chunks(&g, ag), super::ialloc::INO_MAGIC, &bytes, height, keep_magic, &[k]);
            exercise(Inobt::free_chunks(&g, ag), super::ialloc::FINO_MAGIC, &bytes, height, keep_magic, &[k]);
            exercise(Rmapbt::new(&g, ag), super::rmap::MAGIC, &bytes, height, keep_magic, &[RmapKey::min_at(k), RmapKey::max_at(k)]);
            exercise(Refcountbt::new(&g, ag), super::refcount::MAGIC, &bytes, height, keep_magic, &[k]);
            exercise(Bmbt::new(&g, 131, Fork::Data), super::bmbt::MAGIC, &bytes, height, keep_magic, &[u64::from(k)]);
        }
    }
}
