//! Ready-made formats for staging trees, and worked examples of
//! [`BtreeFormat`](crate::BtreeFormat).
//!
//! Both formats share a small self-describing header:
//!
//! ```text
//! offset  size  field
//!      0     4  magic      (big-endian)
//!      4     2  level
//!      6     2  numrecs
//!      8     8  left       (u64::MAX: none)
//!     16     8  right      (u64::MAX: none)
//!     24     8  blkno      (the block's own address)
//!     32     4  crc        (crc32c of the block with this field zeroed,
//!                           little-endian; zero when checksums are off)
//!     36     4  (zero)
//! ```
//!
//! Checksums are off by default: staging trees live in private memory where
//! a checksum only costs time (the kernel's in-memory btrees skip them too).
//! Turn them on with `with_checksums()` to model an on-disk format.

mod intervals;
mod u64map;

pub use intervals::{Interval, IntervalKey, Intervals};
pub use u64map::U64Map;

use crate::format::{BlockHeader, FieldProblem, Trust};
use crate::store::BlockAddr;

const NONE: u64 = u64::MAX;
const HEADER_LEN: usize = 40;
const CRC_OFF: usize = 32;

#[inline]
fn be_u64(raw: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = raw.get(off..off + 8) {
        b.copy_from_slice(src);
    }
    u64::from_be_bytes(b)
}

#[inline]
fn put_be_u64(raw: &mut [u8], off: usize, v: u64) {
    if let Some(dst) = raw.get_mut(off..off + 8) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
fn sibling(v: u64) -> Option<BlockAddr> {
    (v != NONE).then_some(BlockAddr(v))
}

/// The shared header, parameterised by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SimpleHeader {
    pub(crate) magic: u32,
    pub(crate) checksums: bool,
}

impl SimpleHeader {
    #[inline]
    pub(crate) fn read(self, block: &[u8]) -> BlockHeader {
        let level = block
            .get(4..6)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let numrecs = block
            .get(6..8)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        BlockHeader {
            level,
            numrecs: u32::from(numrecs),
            left: sibling(be_u64(block, 8)),
            right: sibling(be_u64(block, 16)),
        }
    }

    #[inline]
    pub(crate) fn write(self, block: &mut [u8], addr: BlockAddr, h: &BlockHeader) {
        if block.len() < HEADER_LEN {
            return;
        }
        block[0..4].copy_from_slice(&self.magic.to_be_bytes());
        block[4..6].copy_from_slice(&h.level.to_be_bytes());
        let n = u16::try_from(h.numrecs).unwrap_or(u16::MAX);
        block[6..8].copy_from_slice(&n.to_be_bytes());
        put_be_u64(block, 8, h.left.map_or(NONE, |a| a.0));
        put_be_u64(block, 16, h.right.map_or(NONE, |a| a.0));
        put_be_u64(block, 24, addr.0);
        block[32..40].fill(0);
    }

    #[inline]
    pub(crate) fn check(self, block: &[u8], addr: BlockAddr, out: &mut Vec<FieldProblem>) -> Trust {
        let magic = block
            .get(0..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if magic != self.magic {
            out.push(FieldProblem::new(
                "magic",
                format_args!("{:#010x}", self.magic),
                format_args!("{magic:#010x}"),
            ));
            return Trust::Unusable;
        }
        let blkno = be_u64(block, 24);
        if blkno != addr.0 {
            out.push(FieldProblem::new("blkno", addr.0, blkno));
        }
        Trust::Usable
    }

    #[inline]
    fn crc(block: &[u8]) -> u32 {
        let head = block.get(..CRC_OFF).unwrap_or(&[]);
        let tail = block.get(CRC_OFF + 4..).unwrap_or(&[]);
        let c = crc32c::crc32c(head);
        let c = crc32c::crc32c_append(c, &[0; 4]);
        crc32c::crc32c_append(c, tail)
    }

    #[inline]
    pub(crate) fn checksum_ok(self, block: &[u8]) -> bool {
        if !self.checksums {
            return true;
        }
        let stored = block
            .get(CRC_OFF..CRC_OFF + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        stored == Self::crc(block)
    }

    #[inline]
    pub(crate) fn seal(self, block: &mut [u8]) {
        if !self.checksums {
            return;
        }
        let c = Self::crc(block);
        if let Some(dst) = block.get_mut(CRC_OFF..CRC_OFF + 4) {
            dst.copy_from_slice(&c.to_le_bytes());
        }
    }
}
