//! Overlap queries: every record whose key interval meets a key range.

use crate::error::BtreeError;
use crate::format::BtreeFormat;
use crate::store::{BlockAddr, BlockStore};
use crate::tree::{Btree, Root};
use std::ops::{Bound, ControlFlow};

impl<S: BlockStore, F: BtreeFormat> Btree<S, F> {
    /// Calls `f` on every record whose interval `[record_key,
    /// record_high_key]` overlaps `[low, high]`, in key order, until `f`
    /// breaks.
    ///
    /// In an overlapping tree this prunes subtrees with the node entries'
    /// high keys, so a query touches only blocks that can hold a match. In
    /// other trees records are points and this is a key-range scan.
    pub fn query_overlapping(
        &self,
        low: &F::Key,
        high: &F::Key,
        mut f: impl FnMut(&F::Record) -> ControlFlow<()>,
    ) -> Result<(), BtreeError> {
        if !self.layout.overlapping {
            for rec in self.range(Bound::Included(low), Bound::Included(high))? {
                if f(&rec?).is_break() {
                    break;
                }
            }
            return Ok(());
        }
        let height = self.check_height()?;
        // Depth-first, children pushed right to left so output is in order.
        // Levels strictly decrease along a descent, so this terminates.
        let mut stack: Vec<(BlockAddr, u16)> = Vec::new();
        match &self.root {
            Root::Block { addr, .. } => stack.push((*addr, height - 1)),
            Root::Inline(r) => {
                let level = r.level;
                if level == 0 {
                    return Err(BtreeError::corrupt(
                        BlockAddr(u64::MAX),
                        0,
                        "inline root at level 0",
                    ));
                }
                for e in r.entries.iter().rev() {
                    if e.range.low <= *high && e.range.high >= *low {
                        stack.push((e.ptr, level - 1));
                    }
                }
            }
        }
        while let Some((addr, level)) = stack.pop() {
            if level == 0 {
                let matches = self.read_block(addr, 0, |b, n| {
                    let codec = self.codec();
                    let mut out = Vec::new();
                    for i in 0..n {
                        let rec = codec.record(b, i);
                        if self.format.record_key(&rec) > *high {
                            break;
                        }
                        if self.format.record_high_key(&rec) >= *low {
                            out.push(rec);
                        }
                    }
                    out
                })?;
                for rec in &matches {
                    if f(rec).is_break() {
                        return Ok(());
                    }
                }
            } else {
                let children = self.read_block(addr, level, |b, n| {
                    let codec = self.codec();
                    let mut out = Vec::new();
                    for i in 0..n {
                        if codec.key(b, i) > *high {
                            break;
                        }
                        if codec.high_key(b, i) >= *low {
                            out.push(self.child(addr, level, b, i));
                        }
                    }
                    out
                })?;
                for c in children.into_iter().rev() {
                    stack.push((c?, level - 1));
                }
            }
        }
        Ok(())
    }
}
