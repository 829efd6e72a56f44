//! Cursors: walking records in key order, in both directions.

use crate::error::BtreeError;
use crate::format::BtreeFormat;
use crate::store::{BlockAddr, BlockStore};
use crate::tree::{Btree, Lookup, Root};
use std::ops::Bound;

/// One level of a cursor's path.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// The block, or `None` for an inline root.
    addr: Option<BlockAddr>,
    /// In a node: the entry descended into. In a leaf: the gap position
    /// (0 = before the first record, `n` = after the last).
    idx: usize,
    /// Entries in the block.
    n: usize,
}

/// A position between two records of a tree.
///
/// [`Cursor::next_record`] returns the record after the position and moves
/// past it; [`Cursor::prev_record`] returns the record before it and moves
/// back. Both return `None` at the ends without moving. A cursor reads
/// blocks as it goes and keeps no block borrowed between calls.
pub struct Cursor<'t, S, F: BtreeFormat> {
    tree: &'t Btree<S, F>,
    /// Root first, leaf last.
    path: Vec<Level>,
}

/// Which way a descent leans when it has no key to follow.
#[derive(Clone, Copy)]
enum Edge {
    Left,
    Right,
}

impl<S: BlockStore, F: BtreeFormat> Btree<S, F> {
    /// A cursor before the first record.
    pub fn cursor_first(&self) -> Result<Cursor<'_, S, F>, BtreeError> {
        Cursor::at_edge(self, Edge::Left)
    }

    /// A cursor after the last record.
    pub fn cursor_last(&self) -> Result<Cursor<'_, S, F>, BtreeError> {
        Cursor::at_edge(self, Edge::Right)
    }

    /// A cursor near `key`: with [`Lookup::Ge`] (or `Eq`) just before the
    /// least record not below `key`; with [`Lookup::Le`] just after the
    /// greatest record not above it.
    pub fn cursor(&self, key: &F::Key, mode: Lookup) -> Result<Cursor<'_, S, F>, BtreeError> {
        Cursor::at_key(self, key, mode)
    }

    /// Records whose keys lie within the bounds, in key order.
    pub fn range<'t>(
        &'t self,
        low: Bound<&F::Key>,
        high: Bound<&F::Key>,
    ) -> Result<Range<'t, S, F>, BtreeError> {
        let cursor = match low {
            Bound::Unbounded => self.cursor_first()?,
            Bound::Included(k) | Bound::Excluded(k) => self.cursor(k, Lookup::Ge)?,
        };
        Ok(Range {
            cursor,
            low: low.cloned(),
            high: high.cloned(),
            done: false,
        })
    }
}

impl<'t, S: BlockStore, F: BtreeFormat> Cursor<'t, S, F> {
    fn level_of(&self, depth: usize) -> u16 {
        // Depth 0 is the root; the height has been checked to fit in u16.
        let height = usize::from(self.tree.root.height());
        u16::try_from(height - 1 - depth).unwrap_or(0)
    }

    /// Entry count of a node level and the child pointer at `idx`.
    fn child_at(&self, depth: usize) -> Result<BlockAddr, BtreeError> {
        let lv = self.path[depth];
        let level = self.level_of(depth);
        match lv.addr {
            None => match &self.tree.root {
                Root::Inline(r) => {
                    let e = r.entries.get(lv.idx).ok_or_else(|| {
                        BtreeError::corrupt(
                            BlockAddr(u64::MAX),
                            level,
                            "inline root entry out of range",
                        )
                    })?;
                    if self.tree.store.contains(e.ptr) {
                        Ok(e.ptr)
                    } else {
                        Err(BtreeError::corrupt(
                            BlockAddr(u64::MAX),
                            level,
                            format!("inline root entry {} points outside the store", lv.idx),
                        ))
                    }
                }
                Root::Block { .. } => Err(BtreeError::InlineRoot),
            },
            Some(addr) => self
                .tree
                .read_block(addr, level, |b, _| self.tree.child(addr, level, b, lv.idx))?,
        }
    }

    /// Fills the path below `depth` by descending to one edge.
    fn descend_edge(&mut self, depth: usize, edge: Edge) -> Result<(), BtreeError> {
        self.path.truncate(depth + 1);
        let height = usize::from(self.tree.root.height());
        for d in depth + 1..height {
            let addr = self.child_at(d - 1)?;
            let level = self.level_of(d);
            let n = self.tree.read_block(addr, level, |_, n| n)?;
            let idx = match (edge, level) {
                (Edge::Left, _) => 0,
                (Edge::Right, 0) => n,
                (Edge::Right, _) => n.saturating_sub(1),
            };
            self.path.push(Level {
                addr: Some(addr),
                idx,
                n,
            });
        }
        Ok(())
    }

    fn root_level(tree: &Btree<S, F>, edge: Edge) -> Result<Level, BtreeError> {
        tree.check_height()?;
        match &tree.root {
            Root::Block { addr, height } => {
                let level = height - 1;
                let n = tree.read_block(*addr, level, |_, n| n)?;
                let idx = match (edge, level) {
                    (Edge::Left, _) => 0,
                    (Edge::Right, 0) => n,
                    (Edge::Right, _) => n.saturating_sub(1),
                };
                Ok(Level {
                    addr: Some(*addr),
                    idx,
                    n,
                })
            }
            Root::Inline(r) => {
                if r.level == 0 || r.entries.is_empty() {
                    return Err(BtreeError::corrupt(
                        BlockAddr(u64::MAX),
                        r.level,
                        "inline root must be a node with entries",
                    ));
                }
                let n = r.entries.len();
                let idx = match edge {
                    Edge::Left => 0,
                    Edge::Right => n - 1,
                };
                Ok(Level { addr: None, idx, n })
            }
        }
    }

    fn at_edge(tree: &'t Btree<S, F>, edge: Edge) -> Result<Self, BtreeError> {
        let root = Self::root_level(tree, edge)?;
        let mut c = Cursor {
            tree,
            path: vec![root],
        };
        c.descend_edge(0, edge)?;
        Ok(c)
    }

    fn at_key(tree: &'t Btree<S, F>, key: &F::Key, mode: Lookup) -> Result<Self, BtreeError> {
        let mut c = Cursor {
            tree,
            path: vec![Self::root_level(tree, Edge::Left)?],
        };
        let height = usize::from(tree.root.height());
        // Choose the child at the root.
        if height > 1 {
            let idx = match (&tree.root, c.path[0].addr) {
                (Root::Inline(r), None) => {
                    let below = r.entries.partition_point(|e| e.range.low <= *key);
                    below.saturating_sub(1)
                }
                (_, Some(addr)) => {
                    let level = c.level_of(0);
                    tree.read_block(addr, level, |b, n| tree.codec().choose_child(b, n, key))?
                }
                _ => return Err(BtreeError::InlineRoot),
            };
            c.path[0].idx = idx;
        }
        for d in 1..height {
            let addr = c.child_at(d - 1)?;
            let level = c.level_of(d);
            let (idx, n) = tree.read_block(addr, level, |b, n| {
                let codec = tree.codec();
                let idx = if level == 0 {
                    match codec.search_leaf(b, n, key) {
                        Ok(i) if mode == Lookup::Le => i + 1,
                        Ok(i) | Err(i) => i,
                    }
                } else {
                    codec.choose_child(b, n, key)
                };
                (idx, n)
            })?;
            c.path.push(Level {
                addr: Some(addr),
                idx,
                n,
            });
        }
        if height == 1 {
            // The root is the leaf.
            let addr = c.path[0].addr.ok_or(BtreeError::InlineRoot)?;
            let idx =
                tree.read_block(addr, 0, |b, n| match tree.codec().search_leaf(b, n, key) {
                    Ok(i) if mode == Lookup::Le => i + 1,
                    Ok(i) | Err(i) => i,
                })?;
            c.path[0].idx = idx;
        }
        Ok(c)
    }

    fn leaf(&self) -> Level {
        // The path always reaches a leaf: constructors descend to level 0.
        self.path[self.path.len() - 1]
    }

    /// Records in the current leaf.
    pub(crate) fn leaf_len(&self) -> usize {
        self.leaf().n
    }

    fn read_leaf_record(&self, idx: usize) -> Result<F::Record, BtreeError> {
        let addr = self.leaf().addr.ok_or(BtreeError::InlineRoot)?;
        self.tree
            .read_block(addr, 0, |b, n| {
                (idx < n).then(|| self.tree.codec().record(b, idx))
            })?
            .ok_or_else(|| BtreeError::corrupt(addr, 0, "leaf changed under a cursor"))
    }

    /// Moves to the start of the next leaf. Returns false (and stays) at the
    /// last leaf.
    pub(crate) fn step_right(&mut self) -> Result<bool, BtreeError> {
        let leaf = self.path.len() - 1;
        let Some(depth) = (0..leaf)
            .rev()
            .find(|&d| self.path[d].idx + 1 < self.path[d].n)
        else {
            return Ok(false);
        };
        self.path[depth].idx += 1;
        self.descend_edge(depth, Edge::Left)?;
        Ok(true)
    }

    /// Moves to the end of the previous leaf. Returns false (and stays) at
    /// the first leaf.
    fn step_left(&mut self) -> Result<bool, BtreeError> {
        let leaf = self.path.len() - 1;
        let Some(depth) = (0..leaf).rev().find(|&d| self.path[d].idx > 0) else {
            return Ok(false);
        };
        self.path[depth].idx -= 1;
        self.descend_edge(depth, Edge::Right)?;
        Ok(true)
    }

    /// The record after the cursor; the cursor moves past it.
    pub fn next_record(&mut self) -> Result<Option<F::Record>, BtreeError> {
        loop {
            let leaf = self.leaf();
            if leaf.idx < leaf.n {
                let rec = self.read_leaf_record(leaf.idx)?;
                let last = self.path.len() - 1;
                self.path[last].idx += 1;
                return Ok(Some(rec));
            }
            let saved = self.path.clone();
            if !self.step_right()? {
                self.path = saved;
                return Ok(None);
            }
        }
    }

    /// The record before the cursor; the cursor moves before it.
    pub fn prev_record(&mut self) -> Result<Option<F::Record>, BtreeError> {
        loop {
            let leaf = self.leaf();
            if leaf.idx > 0 {
                let last = self.path.len() - 1;
                self.path[last].idx -= 1;
                return self.read_leaf_record(leaf.idx - 1).map(Some);
            }
            let saved = self.path.clone();
            if !self.step_left()? {
                self.path = saved;
                return Ok(None);
            }
        }
    }
}

/// An iterator over the records of a key range; see [`Btree::range`].
pub struct Range<'t, S, F: BtreeFormat> {
    cursor: Cursor<'t, S, F>,
    low: Bound<F::Key>,
    high: Bound<F::Key>,
    done: bool,
}

impl<S: BlockStore, F: BtreeFormat> Iterator for Range<'_, S, F> {
    type Item = Result<F::Record, BtreeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let rec = match self.cursor.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let key = self.cursor.tree.format.record_key(&rec);
            if let Bound::Excluded(low) = &self.low
                && key == *low
            {
                continue;
            }
            let inside = match &self.high {
                Bound::Unbounded => true,
                Bound::Included(h) => key <= *h,
                Bound::Excluded(h) => key < *h,
            };
            if inside {
                return Some(Ok(rec));
            }
            break;
        }
        self.done = true;
        None
    }
}
