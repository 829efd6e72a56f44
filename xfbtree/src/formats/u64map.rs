//! A map from `u64` keys to `u64` values.

use super::{HEADER_LEN, SimpleHeader, be_u64, put_be_u64};
use crate::format::{BlockHeader, BtreeFormat, FieldProblem, Trust};
use crate::store::BlockAddr;

/// A tree of `(key, value)` pairs, both `u64`: the simplest useful staging
/// tree, and the smallest complete example of a format.
///
/// Records are 16 bytes, keys 8, pointers 8, after the 40-byte shared
/// header; blocks carry a magic number, their own address and, with
/// [`U64Map::with_checksums`], a crc32c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U64Map {
    header: SimpleHeader,
    max_height: u16,
}

impl U64Map {
    /// Magic number of this format's blocks ("U64M").
    pub const MAGIC: u32 = 0x5536_344d;

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

impl Default for U64Map {
    #[inline]
    fn default() -> Self {
        Self::new(16)
    }
}

impl BtreeFormat for U64Map {
    type Record = (u64, u64);
    type Key = u64;

    #[inline]
    fn header_len(&self) -> usize {
        HEADER_LEN
    }
    #[inline]
    fn record_len(&self) -> usize {
        16
    }
    #[inline]
    fn key_len(&self) -> usize {
        8
    }
    #[inline]
    fn ptr_len(&self) -> usize {
        8
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
    fn decode_record(&self, raw: &[u8]) -> (u64, u64) {
        (be_u64(raw, 0), be_u64(raw, 8))
    }
    #[inline]
    fn encode_record(&self, record: &(u64, u64), raw: &mut [u8]) {
        put_be_u64(raw, 0, record.0);
        put_be_u64(raw, 8, record.1);
    }
    #[inline]
    fn decode_key(&self, raw: &[u8]) -> u64 {
        be_u64(raw, 0)
    }
    #[inline]
    fn encode_key(&self, key: &u64, raw: &mut [u8]) {
        put_be_u64(raw, 0, *key);
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
    fn record_key(&self, record: &(u64, u64)) -> u64 {
        record.0
    }
}
