//! Where records, keys and pointers sit inside a block.

use crate::error::BtreeError;
use crate::format::BtreeFormat;
use std::ops::Range;

/// The byte layout of a format's blocks at one block size, computed once.
///
/// All offsets are checked at construction, so the accessors below never
/// index outside a block of `block_size` bytes for an index below the
/// corresponding maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Block size in bytes.
    pub block_size: usize,
    /// Header size in bytes.
    pub header_len: usize,
    /// Record size in bytes.
    pub record_len: usize,
    /// Key size in bytes (one half of an overlapping slot).
    pub key_len: usize,
    /// Bytes of one node key slot: a key, or a low and a high key.
    pub slot_len: usize,
    /// Pointer size in bytes.
    pub ptr_len: usize,
    /// Whether slots hold high keys.
    pub overlapping: bool,
    /// Most records a leaf holds.
    pub leaf_max: usize,
    /// Most entries a node holds.
    pub node_max: usize,
}

impl Layout {
    /// Computes the layout of `format` in blocks of `block_size` bytes.
    ///
    /// Fails when a block cannot hold at least two records and four node
    /// entries (a tree could then not rebalance), or when sizes are zero.
    pub fn new<F: BtreeFormat + ?Sized>(format: &F, block_size: usize) -> Result<Self, BtreeError> {
        let header_len = format.header_len();
        let record_len = format.record_len();
        let key_len = format.key_len();
        let ptr_len = format.ptr_len();
        let overlapping = format.overlapping();
        let slot_len = if overlapping {
            key_len.saturating_mul(2)
        } else {
            key_len
        };
        let bad = |why: &str| BtreeError::BadFormat(why.to_string());
        if record_len == 0 || key_len == 0 || ptr_len == 0 {
            return Err(bad("record, key and pointer sizes must be non-zero"));
        }
        let room = block_size
            .checked_sub(header_len)
            .ok_or_else(|| bad("header larger than the block"))?;
        let leaf_max = room / record_len;
        let node_max = room / (slot_len + ptr_len);
        // Four node entries make the minimum two, so that every non-root
        // node has a sibling to borrow from or merge with.
        if leaf_max < 2 || node_max < 4 {
            return Err(bad(
                "a block must hold at least two records and four node entries",
            ));
        }
        if leaf_max > u32::MAX as usize || node_max > u32::MAX as usize {
            return Err(bad("block holds too many records"));
        }
        Ok(Self {
            block_size,
            header_len,
            record_len,
            key_len,
            slot_len,
            ptr_len,
            overlapping,
            leaf_max,
            node_max,
        })
    }

    /// Most entries a block at `level` holds.
    pub fn max_recs(&self, level: u16) -> usize {
        if level == 0 {
            self.leaf_max
        } else {
            self.node_max
        }
    }

    /// Fewest entries a non-root block at `level` may hold.
    pub fn min_recs(&self, level: u16) -> usize {
        self.max_recs(level) / 2
    }

    /// Bytes of record `i` of a leaf.
    pub fn record(&self, i: usize) -> Range<usize> {
        let start = self.header_len + i * self.record_len;
        start..start + self.record_len
    }

    /// Bytes of records `from..to` of a leaf.
    pub fn records(&self, from: usize, to: usize) -> Range<usize> {
        self.header_len + from * self.record_len..self.header_len + to * self.record_len
    }

    /// Bytes of the (low) key of entry `i` of a node.
    pub fn key(&self, i: usize) -> Range<usize> {
        let start = self.header_len + i * self.slot_len;
        start..start + self.key_len
    }

    /// Bytes of the high key of entry `i` of an overlapping node.
    pub fn high_key(&self, i: usize) -> Range<usize> {
        let start = self.header_len + i * self.slot_len + self.key_len;
        start..start + self.key_len
    }

    /// Bytes of key slots `from..to` of a node.
    pub fn slots(&self, from: usize, to: usize) -> Range<usize> {
        self.header_len + from * self.slot_len..self.header_len + to * self.slot_len
    }

    /// Bytes of the child pointer of entry `i` of a node.
    pub fn ptr(&self, i: usize) -> Range<usize> {
        let start = self.ptr_base() + i * self.ptr_len;
        start..start + self.ptr_len
    }

    /// Bytes of child pointers `from..to` of a node.
    pub fn ptrs(&self, from: usize, to: usize) -> Range<usize> {
        self.ptr_base() + from * self.ptr_len..self.ptr_base() + to * self.ptr_len
    }

    fn ptr_base(&self) -> usize {
        self.header_len + self.node_max * self.slot_len
    }
}
