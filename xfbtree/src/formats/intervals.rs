//! Owned intervals in an overlapping tree.

use super::{HEADER_LEN, SimpleHeader, be_u64, put_be_u64};
use crate::format::{BlockHeader, BtreeFormat, FieldProblem, Trust};
use crate::store::BlockAddr;

/// An interval `[start, start + len)` held by an owner: the shape of a
/// reverse-mapping record ("these blocks belong to that owner").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    /// First unit covered.
    pub start: u64,
    /// Units covered (at least 1 for a meaningful interval).
    pub len: u64,
    /// Who holds the interval.
    pub owner: u64,
}

/// The key of an [`Interval`]: ordered by start, then owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntervalKey {
    /// Start (low key) or last unit (high key).
    pub start: u64,
    /// Owner.
    pub owner: u64,
}

/// An overlapping tree of [`Interval`]s: several owners may hold the same
/// units, and [`crate::Btree::query_overlapping`] finds every interval that
/// meets a range.
///
/// A record's low key is `(start, owner)`, its high key `(start + len - 1,
/// owner)`. Records are 24 bytes, keys 16, pointers 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    header: SimpleHeader,
    max_height: u16,
}

impl Intervals {
    /// Magic number of this format's blocks ("IVL3").
    pub const MAGIC: u32 = 0x4956_4c33;

    /// The format, allowing trees of up to `max_height` levels.
    pub fn new(max_height: u16) -> Self {
        Self {
            header: SimpleHeader {
                magic: Self::MAGIC,
                checksums: false,
            },
            max_height,
        }
    }

    /// The same format with a crc32c in every block, checked on every read.
    pub fn with_checksums(mut self) -> Self {
        self.header.checksums = true;
        self
    }
}

impl Default for Intervals {
    #[inline]
    fn default() -> Self {
        Self::new(16)
    }
}

impl BtreeFormat for Intervals {
    type Record = Interval;
    type Key = IntervalKey;

    #[inline]
    fn header_len(&self) -> usize {
        HEADER_LEN
    }
    #[inline]
    fn record_len(&self) -> usize {
        24
    }
    #[inline]
    fn key_len(&self) -> usize {
        16
    }
    #[inline]
    fn ptr_len(&self) -> usize {
        8
    }
    #[inline]
    fn overlapping(&self) -> bool {
        true
    }
    #[inline]
    fn max_height(&self) -> u16 {
        self.max_height
    }
    #[inline]
    fn read_header(&self, block: &[u8]) -> BlockHeader {
        self.header.read(block)
    }
    #[inline]
    fn write_header(&self, block: &mut [u8], addr: BlockAddr, header: &BlockHeader) {
        self.header.write(block, addr, header);
    }
    #[inline]
    fn check_header(&self, block: &[u8], addr: BlockAddr, out: &mut Vec<FieldProblem>) -> Trust {
        self.header.check(block, addr, out)
    }
    #[inline]
    fn checksum_ok(&self, block: &[u8]) -> bool {
        self.header.checksum_ok(block)
    }
    #[inline]
    fn seal(&self, block: &mut [u8]) {
        self.header.seal(block);
    }
    #[inline]
    fn decode_record(&self, raw: &[u8]) -> Interval {
        Interval {
            start: be_u64(raw, 0),
            len: be_u64(raw, 8),
            owner: be_u64(raw, 16),
        }
    }
    #[inline]
    fn encode_record(&self, r: &Interval, raw: &mut [u8]) {
        put_be_u64(raw, 0, r.start);
        put_be_u64(raw, 8, r.len);
        put_be_u64(raw, 16, r.owner);
    }
    #[inline]
    fn decode_key(&self, raw: &[u8]) -> IntervalKey {
        IntervalKey {
            start: be_u64(raw, 0),
            owner: be_u64(raw, 8),
        }
    }
    #[inline]
    fn encode_key(&self, key: &IntervalKey, raw: &mut [u8]) {
        put_be_u64(raw, 0, key.start);
        put_be_u64(raw, 8, key.owner);
    }
    #[inline]
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        BlockAddr(be_u64(raw, 0))
    }
    #[inline]
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        put_be_u64(raw, 0, addr.0);
    }
    #[inline]
    fn record_key(&self, r: &Interval) -> IntervalKey {
        IntervalKey {
            start: r.start,
            owner: r.owner,
        }
    }
    #[inline]
    fn record_high_key(&self, r: &Interval) -> IntervalKey {
        IntervalKey {
            start: r.start.saturating_add(r.len.saturating_sub(1)),
            owner: r.owner,
        }
    }
}
