//! Decoding entries of a block whose layout has been checked.
//!
//! Every accessor takes an index below the block's record count, which the
//! caller has checked against the layout's maximum, and a block of exactly
//! `layout.block_size` bytes; under those conditions no range is out of
//! bounds.

use crate::format::BtreeFormat;
use crate::layout::Layout;
use crate::store::BlockAddr;

/// The key range a block (or a record) covers: its low key and, in an
/// overlapping tree, the highest key anything below it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange<K> {
    /// The lowest key (the first entry's key).
    pub low: K,
    /// The highest key covered; equal to `low` in trees that do not overlap.
    pub high: K,
}

/// Entry decoding for one format and layout.
pub(crate) struct Codec<'a, F> {
    pub(crate) format: &'a F,
    pub(crate) layout: &'a Layout,
}

impl<F: BtreeFormat> Codec<'_, F> {
    pub(crate) fn record(&self, block: &[u8], i: usize) -> F::Record {
        self.format.decode_record(&block[self.layout.record(i)])
    }

    pub(crate) fn record_key(&self, block: &[u8], i: usize) -> F::Key {
        self.format.record_key(&self.record(block, i))
    }

    pub(crate) fn key(&self, block: &[u8], i: usize) -> F::Key {
        self.format.decode_key(&block[self.layout.key(i)])
    }

    pub(crate) fn high_key(&self, block: &[u8], i: usize) -> F::Key {
        self.format.decode_key(&block[self.layout.high_key(i)])
    }

    pub(crate) fn ptr(&self, block: &[u8], i: usize) -> BlockAddr {
        self.format.decode_ptr(&block[self.layout.ptr(i)])
    }

    /// The low key of entry `i` at `level`.
    pub(crate) fn entry_key(&self, block: &[u8], level: u16, i: usize) -> F::Key {
        if level == 0 {
            self.record_key(block, i)
        } else {
            self.key(block, i)
        }
    }

    /// The key range of entry `i` at `level`.
    pub(crate) fn entry_range(&self, block: &[u8], level: u16, i: usize) -> KeyRange<F::Key> {
        if level == 0 {
            let rec = self.record(block, i);
            let low = self.format.record_key(&rec);
            let high = if self.layout.overlapping {
                self.format.record_high_key(&rec)
            } else {
                low.clone()
            };
            KeyRange { low, high }
        } else {
            let low = self.key(block, i);
            let high = if self.layout.overlapping {
                self.high_key(block, i)
            } else {
                low.clone()
            };
            KeyRange { low, high }
        }
    }

    /// The key range of the first `n` entries of a block at `level`, or
    /// `None` for an empty block.
    pub(crate) fn block_range(
        &self,
        block: &[u8],
        level: u16,
        n: usize,
    ) -> Option<KeyRange<F::Key>> {
        if n == 0 {
            return None;
        }
        let mut range = self.entry_range(block, level, 0);
        if self.layout.overlapping {
            for i in 1..n {
                let high = if level == 0 {
                    self.format.record_high_key(&self.record(block, i))
                } else {
                    self.high_key(block, i)
                };
                if high > range.high {
                    range.high = high;
                }
            }
        } else {
            range.high = self.entry_key(block, level, n - 1);
        }
        Some(range)
    }

    /// Binary search among the first `n` records of a leaf: `Ok(i)` if
    /// record `i` has `key`, else `Err(i)` with `i` where it would go.
    pub(crate) fn search_leaf(&self, block: &[u8], n: usize, key: &F::Key) -> Result<usize, usize> {
        // Branch-free lower bound: the comparison only picks the next base,
        // which compiles to a conditional move instead of a branch that
        // mispredicts half the time on random keys.
        let i = lower_bound(n, |i| self.record_key(block, i) < *key);
        if i < n && self.record_key(block, i) == *key {
            Ok(i)
        } else {
            Err(i)
        }
    }

    /// The child of a node (first `n` entries, `n >= 1`) whose subtree would
    /// hold `key`: the last entry whose low key is not above `key`, or the
    /// first entry when every low key is above it.
    pub(crate) fn choose_child(&self, block: &[u8], n: usize, key: &F::Key) -> usize {
        lower_bound(n, |i| self.key(block, i) <= *key).saturating_sub(1)
    }
}

/// The number of leading indices in `0..n` for which `below` holds, for a
/// `below` that holds on a prefix.
#[inline]
fn lower_bound(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut base, mut len) = (0usize, n);
    while len > 1 {
        let half = len / 2;
        if below(base + half - 1) {
            base += half;
        }
        len -= half;
    }
    base + usize::from(len == 1 && below(base))
}
