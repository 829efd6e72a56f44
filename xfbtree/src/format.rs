//! Btree formats: how a tree's blocks, records and keys look in bytes.
//!
//! A format describes one kind of tree: its block header (level, record
//! count, sibling pointers, and whatever self-describing fields it carries:
//! magic, owner, self-address, UUID, checksum), the encodings of records,
//! keys and child pointers, and the order of keys. The engine computes the
//! block layout from the sizes a format declares:
//!
//! ```text
//! leaf:  [ header | rec 0 | rec 1 | ... | rec n-1 | unused ]
//! node:  [ header | key 0 | ... | key max-1 | ptr 0 | ... | ptr max-1 ]
//! ```
//!
//! In a node the pointer array starts after room for the *maximum* number of
//! keys, not after the keys in use, so the pointers never move when a key is
//! added. In an overlapping tree each node key slot holds a low key followed
//! by a high key (see [`BtreeFormat::overlapping`]).
//!
//! # Writing a format
//!
//! Implement [`BtreeFormat`]; [`crate::formats::U64Map`] is a complete,
//! small example. Decoders must be total: any bytes decode to *some* value,
//! because blocks are untrusted. Validity of record contents is the caller's
//! business (a scrubber checks records through the verifier's callback).

use crate::store::BlockAddr;
use std::fmt;

/// The structural fields every btree block carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// 0 for leaves; a node's children are one level lower.
    pub level: u16,
    /// Number of records (leaf) or child entries (node) in use.
    pub numrecs: u32,
    /// The block to the left on the same level, if any.
    pub left: Option<BlockAddr>,
    /// The block to the right on the same level, if any.
    pub right: Option<BlockAddr>,
}

/// A header field that holds the wrong value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's name, as the format's documentation names it.
    pub field: &'static str,
    /// What the field should hold.
    pub expected: String,
    /// What it holds.
    pub actual: String,
}

impl FieldProblem {
    /// A problem with `field`: it should be `expected` but is `actual`.
    pub fn new(
        field: &'static str,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> Self {
        Self {
            field,
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.field, self.expected, self.actual
        )
    }
}

/// Whether a block whose header was checked can be interpreted at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The block is of this tree's kind; its contents can be walked even if
    /// some header fields are wrong.
    Usable,
    /// The block is not of this tree's kind (for example a wrong magic
    /// number); walking it would only produce noise.
    Unusable,
}

/// One kind of btree: block header, record, key and pointer encodings and key
/// order.
///
/// The sizes must be constant for the life of a tree and must leave room for
/// at least two records and four node entries in a block; [`crate::Layout`]
/// checks this.
pub trait BtreeFormat {
    /// A decoded record.
    type Record: Clone + fmt::Debug;
    /// A decoded key. Its `Ord` is the tree's order.
    type Key: Clone + fmt::Debug + Ord;

    /// Size of the block header in bytes.
    fn header_len(&self) -> usize;
    /// Size of one encoded record.
    fn record_len(&self) -> usize;
    /// Size of one encoded key (one half of a slot in an overlapping tree).
    fn key_len(&self) -> usize;
    /// Size of one encoded child pointer.
    fn ptr_len(&self) -> usize;

    /// Whether node entries carry a high key as well as a low key, so that a
    /// query can find every record whose interval overlaps a key range.
    fn overlapping(&self) -> bool {
        false
    }

    /// The tallest tree this format allows. Walks of untrusted trees never
    /// go deeper than this.
    fn max_height(&self) -> u16;

    /// Decodes the structural header fields. Never fails: any bytes decode.
    fn read_header(&self, block: &[u8]) -> BlockHeader;

    /// Writes a complete header for the block at `addr` (structural fields
    /// and every self-describing field: magic, owner, self-address, ...).
    fn write_header(&self, block: &mut [u8], addr: BlockAddr, header: &BlockHeader);

    /// Checks the format's own header fields (magic, owner, self-address,
    /// UUID, ...) of the block read from `addr`, appending every wrong field
    /// to `out`. Level, record count and siblings are checked by the engine.
    fn check_header(&self, block: &[u8], addr: BlockAddr, out: &mut Vec<FieldProblem>) -> Trust;

    /// Whether the block's checksum is right. Formats without one return true.
    fn checksum_ok(&self, _block: &[u8]) -> bool {
        true
    }

    /// Finalises a block before it is stored (computes its checksum).
    fn seal(&self, _block: &mut [u8]) {}

    /// Decodes a record from `record_len()` bytes.
    fn decode_record(&self, raw: &[u8]) -> Self::Record;
    /// Encodes a record into `record_len()` bytes.
    fn encode_record(&self, record: &Self::Record, raw: &mut [u8]);

    /// Decodes a key from `key_len()` bytes.
    fn decode_key(&self, raw: &[u8]) -> Self::Key;
    /// Encodes a key into `key_len()` bytes.
    fn encode_key(&self, key: &Self::Key, raw: &mut [u8]);

    /// Decodes a child pointer from `ptr_len()` bytes.
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr;
    /// Encodes a child pointer into `ptr_len()` bytes.
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]);

    /// The key a record is sorted by (its low key in an overlapping tree).
    fn record_key(&self, record: &Self::Record) -> Self::Key;

    /// The highest key a record covers. Only overlapping trees use it; the
    /// default is the record's key.
    fn record_high_key(&self, record: &Self::Record) -> Self::Key {
        self.record_key(record)
    }

    /// A key as the verifier's messages show it to a person. The default
    /// is the key's `Debug` form; formats override it with their own
    /// field names.
    fn describe_key(&self, key: &Self::Key) -> String {
        format!("{key:?}")
    }
}
