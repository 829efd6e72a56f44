//! The structural verifier: one bounded walk that reports every problem.
//!
//! The verifier reads each block reachable from the root at most once, in
//! key order, and reports what is wrong instead of failing: bad header
//! fields, checksum mismatches, record counts out of range, keys out of
//! order inside a block and across siblings, parent keys that disagree with
//! their child, broken sibling links, leaves at the wrong depth, pointers
//! outside the store and blocks reached twice. A block that cannot be
//! interpreted (wrong kind, wrong level, impossible record count) is reported
//! and its subtree skipped. Total work is bounded by the number of distinct
//! blocks in the store, even when pointers form cycles.
//!
//! A [`Visitor`] sees every block and every record of the walk, so a
//! scrubber can check and cross-reference records in the same single pass.

use crate::format::{BtreeFormat, FieldProblem, Trust};
use crate::node::KeyRange;
use crate::store::{BlockAddr, BlockStore};
use crate::tree::{Btree, Root};
use roaring::RoaringTreemap;
use std::fmt;

/// Where a record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLoc {
    /// The leaf holding it.
    pub block: BlockAddr,
    /// Its index in the leaf.
    pub index: usize,
}

/// One problem found by the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The block the problem is in (for pointer problems: the block holding
    /// the pointer); `None` for the inline root or the tree as a whole.
    pub block: Option<BlockAddr>,
    /// The level the block was expected at.
    pub level: Option<u16>,
    /// The entry (record or key/pointer) concerned, if one.
    pub index: Option<usize>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What the verifier found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The block could not be read.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// A format-specific header field is wrong.
    Header(FieldProblem),
    /// The block's checksum does not match its contents.
    Checksum,
    /// The tree is taller than the format allows (or has no levels).
    Height {
        /// Levels claimed.
        height: u16,
        /// Levels allowed.
        max: u16,
    },
    /// The block's level is not one less than its parent's.
    Level {
        /// Level expected from the parent.
        expected: u16,
        /// Level in the header.
        actual: u16,
    },
    /// A leaf sits above the bottom of the tree: leaves are at different
    /// depths.
    LeafDepth {
        /// Level the block should be at.
        expected: u16,
    },
    /// More entries than fit in a block.
    TooManyRecords {
        /// Most that fit.
        max: usize,
        /// Count in the header.
        actual: u32,
    },
    /// A non-root block holds fewer entries than the minimum.
    Underfull {
        /// Fewest allowed.
        min: usize,
        /// Count in the header.
        actual: usize,
    },
    /// A node with no entries.
    EmptyNode,
    /// Entry `index` does not sort after entry `index - 1`.
    KeyOrder {
        /// The earlier key.
        previous: String,
        /// The key out of order.
        key: String,
    },
    /// An entry's high key is below its low key.
    HighBelowLow {
        /// The low key.
        low: String,
        /// The high key.
        high: String,
    },
    /// The block's first key does not sort after the last key of the block
    /// to its left.
    SiblingKeyOrder {
        /// The block to the left.
        left: BlockAddr,
        /// Its last key.
        left_key: String,
        /// This block's first key.
        key: String,
    },
    /// The parent's key for this block is not the block's lowest key.
    ParentLowKey {
        /// Key in the parent.
        parent: String,
        /// Lowest key in the block.
        child: String,
    },
    /// The parent's high key for this block is not the block's highest key.
    ParentHighKey {
        /// High key in the parent.
        parent: String,
        /// Highest key covered by the block.
        child: String,
    },
    /// The left-sibling pointer is not the block to the left on this level.
    LeftSibling {
        /// The block to the left (None for the first block of a level).
        expected: Option<BlockAddr>,
        /// The pointer found.
        actual: Option<BlockAddr>,
    },
    /// The right-sibling pointer is not the block to the right on this level.
    RightSibling {
        /// The block to the right (None for the last block of a level).
        expected: Option<BlockAddr>,
        /// The pointer found.
        actual: Option<BlockAddr>,
    },
    /// A child pointer names a block outside the store.
    PointerOutOfRange {
        /// The pointer.
        ptr: BlockAddr,
    },
    /// A child pointer names a block already reached from elsewhere (a
    /// cycle or a cross-link inside the tree).
    ReachedTwice {
        /// The pointer.
        ptr: BlockAddr,
    },
}

impl ProblemKind {
    /// A stable, machine-readable name for this kind of problem.
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::Unreadable { .. } => "unreadable",
            ProblemKind::Header(_) => "header",
            ProblemKind::Checksum => "checksum",
            ProblemKind::Height { .. } => "height",
            ProblemKind::Level { .. } => "level",
            ProblemKind::LeafDepth { .. } => "leaf-depth",
            ProblemKind::TooManyRecords { .. } => "too-many-records",
            ProblemKind::Underfull { .. } => "underfull",
            ProblemKind::EmptyNode => "empty-node",
            ProblemKind::KeyOrder { .. } => "key-order",
            ProblemKind::HighBelowLow { .. } => "high-below-low",
            ProblemKind::SiblingKeyOrder { .. } => "sibling-key-order",
            ProblemKind::ParentLowKey { .. } => "parent-low-key",
            ProblemKind::ParentHighKey { .. } => "parent-high-key",
            ProblemKind::LeftSibling { .. } => "left-sibling",
            ProblemKind::RightSibling { .. } => "right-sibling",
            ProblemKind::PointerOutOfRange { .. } => "pointer-out-of-range",
            ProblemKind::ReachedTwice { .. } => "reached-twice",
        }
    }
}

fn opt(a: &Option<BlockAddr>) -> String {
    a.map_or_else(|| "none".to_string(), |a| a.to_string())
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            ProblemKind::Header(p) => write!(f, "header {p}"),
            ProblemKind::Checksum => write!(f, "checksum does not match the contents"),
            ProblemKind::Height { height, max } => {
                write!(f, "tree height {height} outside 1..={max}")
            }
            ProblemKind::Level { expected, actual } => {
                write!(f, "level {actual}, expected {expected}")
            }
            ProblemKind::LeafDepth { expected } => {
                write!(
                    f,
                    "leaf found where a level-{expected} node belongs (leaves at different depths)"
                )
            }
            ProblemKind::TooManyRecords { max, actual } => {
                write!(f, "{actual} records, at most {max} fit")
            }
            ProblemKind::Underfull { min, actual } => {
                write!(f, "{actual} records, a non-root block needs at least {min}")
            }
            ProblemKind::EmptyNode => write!(f, "node with no entries"),
            ProblemKind::KeyOrder { previous, key } => {
                write!(
                    f,
                    "key {key} does not sort after the previous key {previous}"
                )
            }
            ProblemKind::HighBelowLow { low, high } => {
                write!(f, "high key {high} is below low key {low}")
            }
            ProblemKind::SiblingKeyOrder {
                left,
                left_key,
                key,
            } => write!(
                f,
                "first key {key} does not sort after the last key {left_key} of left block {left}"
            ),
            ProblemKind::ParentLowKey { parent, child } => {
                write!(
                    f,
                    "parent key {parent} differs from the block's lowest key {child}"
                )
            }
            ProblemKind::ParentHighKey { parent, child } => write!(
                f,
                "parent high key {parent} differs from the block's highest key {child}"
            ),
            ProblemKind::LeftSibling { expected, actual } => write!(
                f,
                "left sibling pointer {}, expected {}",
                opt(actual),
                opt(expected)
            ),
            ProblemKind::RightSibling { expected, actual } => write!(
                f,
                "right sibling pointer {}, expected {}",
                opt(actual),
                opt(expected)
            ),
            ProblemKind::PointerOutOfRange { ptr } => {
                write!(f, "child pointer {ptr} is outside the store")
            }
            ProblemKind::ReachedTwice { ptr } => {
                write!(f, "child pointer {ptr} names a block already in the tree")
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.block, self.level) {
            (Some(b), Some(l)) => write!(f, "block {b} (level {l})")?,
            (Some(b), None) => write!(f, "block {b}")?,
            (None, Some(l)) => write!(f, "root (level {l})")?,
            (None, None) => write!(f, "tree")?,
        }
        if let Some(i) = self.index {
            write!(f, " entry {i}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Receives what the verifier sees.
pub trait Visitor<F: BtreeFormat> {
    /// A block was reached (once per block), before its entries. `bytes` is
    /// the raw block, for owners that want to look at it.
    fn block(&mut self, _addr: BlockAddr, _level: u16, _bytes: &[u8]) {}

    /// A record of a leaf, in key order.
    fn record(&mut self, _record: &F::Record, _at: RecordLoc) {}

    /// A problem.
    fn problem(&mut self, problem: Problem);
}

/// A visitor that collects problems and ignores the rest.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl<F: BtreeFormat> Visitor<F> for Problems {
    fn problem(&mut self, problem: Problem) {
        self.0.push(problem);
    }
}

/// What a verification walk covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Distinct blocks read.
    pub blocks: u64,
    /// Records passed to the visitor.
    pub records: u64,
    /// Problems reported.
    pub problems: u64,
}

/// Per-level state of the left-to-right walk, for sibling checks.
#[derive(Clone)]
enum LevelState<K> {
    /// No block seen on this level yet.
    Start,
    /// The last block seen, its right pointer and last key.
    Seen {
        addr: BlockAddr,
        right: Option<BlockAddr>,
        last_key: Option<K>,
    },
    /// A block on this level could not be walked: links across the gap are
    /// not checked.
    Gap,
}

struct Pending<K> {
    /// A child that will not be walked (pointer outside the store): when
    /// the walk reaches its place, the levels it covers get a gap.
    gap: bool,
    addr: BlockAddr,
    level: u16,
    parent: Option<(Option<BlockAddr>, usize, KeyRange<K>)>,
    /// Below an inline root with one entry: may hold fewer than minrecs.
    min_exempt: bool,
    is_root: bool,
}

struct Walk<'a, F: BtreeFormat, V> {
    format: &'a F,
    visitor: &'a mut V,
    summary: VerifySummary,
}

impl<F: BtreeFormat, V: Visitor<F>> Walk<'_, F, V> {
    fn report(
        &mut self,
        block: Option<BlockAddr>,
        level: Option<u16>,
        index: Option<usize>,
        kind: ProblemKind,
    ) {
        self.summary.problems += 1;
        self.visitor.problem(Problem {
            block,
            level,
            index,
            kind,
        });
    }

    fn show(&self, k: &F::Key) -> String {
        self.format.describe_key(k)
    }
}

/// What one block's read produced for the walk.
struct BlockInfo<K> {
    left: Option<BlockAddr>,
    right: Option<BlockAddr>,
    range: Option<KeyRange<K>>,
    last_key: Option<K>,
    children: Vec<(usize, BlockAddr, KeyRange<K>)>,
    walkable: bool,
}

impl<S: BlockStore, F: BtreeFormat> Btree<S, F> {
    /// Walks the whole tree once, reporting every problem and showing every
    /// block and record to `visitor`. Never fails and never panics on bad
    /// blocks; work is bounded by the store's capacity.
    pub fn verify<V: Visitor<F>>(&self, visitor: &mut V) -> VerifySummary {
        let mut walk = Walk {
            format: &self.format,
            visitor,
            summary: VerifySummary::default(),
        };
        let height = self.root.height();
        let max = self.format.max_height();
        if height == 0 || height > max {
            walk.report(None, None, None, ProblemKind::Height { height, max });
            return walk.summary;
        }
        let mut levels: Vec<LevelState<F::Key>> = vec![LevelState::Start; usize::from(height)];
        let mut visited = RoaringTreemap::new();
        let mut stack: Vec<Pending<F::Key>> = Vec::new();
        match &self.root {
            Root::Block { addr, .. } => {
                if self.store.contains(*addr) {
                    stack.push(Pending {
                        gap: false,
                        addr: *addr,
                        level: height - 1,
                        parent: None,
                        min_exempt: true,
                        is_root: true,
                    });
                } else {
                    walk.report(
                        None,
                        Some(height - 1),
                        None,
                        ProblemKind::PointerOutOfRange { ptr: *addr },
                    );
                }
            }
            Root::Inline(r) => {
                let level = r.level;
                if level == 0 || r.entries.is_empty() {
                    walk.report(None, Some(level), None, ProblemKind::EmptyNode);
                    return walk.summary;
                }
                for (i, pair) in r.entries.windows(2).enumerate() {
                    if pair[1].range.low <= pair[0].range.low {
                        let (previous, key) =
                            (walk.show(&pair[0].range.low), walk.show(&pair[1].range.low));
                        walk.report(
                            None,
                            Some(level),
                            Some(i + 1),
                            ProblemKind::KeyOrder { previous, key },
                        );
                    }
                }
                let exempt = r.entries.len() == 1;
                for (i, e) in r.entries.iter().enumerate().rev() {
                    let gap = !self.store.contains(e.ptr);
                    if gap {
                        walk.report(
                            None,
                            Some(level),
                            Some(i),
                            ProblemKind::PointerOutOfRange { ptr: e.ptr },
                        );
                    }
                    stack.push(Pending {
                        gap,
                        addr: e.ptr,
                        level: level - 1,
                        parent: Some((None, i, e.range.clone())),
                        min_exempt: exempt,
                        is_root: false,
                    });
                }
                // The inline root occupies the top level: nothing to link.
                levels.truncate(usize::from(level));
            }
        }

        while let Some(p) = stack.pop() {
            let lvl = usize::from(p.level);
            let mut gap = p.gap;
            if !gap && visited.contains(p.addr.0) {
                let (blk, idx) = p
                    .parent
                    .as_ref()
                    .map_or((None, None), |(b, i, _)| (*b, Some(*i)));
                walk.report(
                    blk,
                    Some(p.level + 1),
                    idx,
                    ProblemKind::ReachedTwice { ptr: p.addr },
                );
                gap = true;
            }
            if gap {
                // Links across the missing subtree cannot be checked.
                for s in levels.iter_mut().take(lvl + 1) {
                    *s = LevelState::Gap;
                }
                continue;
            }
            visited.insert(p.addr.0);
            walk.summary.blocks += 1;
            let info = self.visit_block(&mut walk, &p);
            let Some(info) = info.filter(|i| i.walkable) else {
                // Links across this block cannot be checked; neither can
                // anything below it on the levels it would have covered.
                for s in levels.iter_mut().take(lvl + 1) {
                    *s = LevelState::Gap;
                }
                continue;
            };

            // Sibling links and key order across siblings.
            if p.is_root {
                if info.left.is_some() {
                    walk.report(
                        Some(p.addr),
                        Some(p.level),
                        None,
                        ProblemKind::LeftSibling {
                            expected: None,
                            actual: info.left,
                        },
                    );
                }
                if info.right.is_some() {
                    walk.report(
                        Some(p.addr),
                        Some(p.level),
                        None,
                        ProblemKind::RightSibling {
                            expected: None,
                            actual: info.right,
                        },
                    );
                }
            } else if let Some(state) = levels.get(lvl).cloned() {
                match state {
                    LevelState::Start => {
                        if info.left.is_some() {
                            walk.report(
                                Some(p.addr),
                                Some(p.level),
                                None,
                                ProblemKind::LeftSibling {
                                    expected: None,
                                    actual: info.left,
                                },
                            );
                        }
                    }
                    LevelState::Seen {
                        addr,
                        right,
                        last_key,
                    } => {
                        if info.left != Some(addr) {
                            walk.report(
                                Some(p.addr),
                                Some(p.level),
                                None,
                                ProblemKind::LeftSibling {
                                    expected: Some(addr),
                                    actual: info.left,
                                },
                            );
                        }
                        if right != Some(p.addr) {
                            walk.report(
                                Some(addr),
                                Some(p.level),
                                None,
                                ProblemKind::RightSibling {
                                    expected: Some(p.addr),
                                    actual: right,
                                },
                            );
                        }
                        if let (Some(lk), Some(r)) = (&last_key, &info.range)
                            && r.low <= *lk
                        {
                            let (left_key, key) = (walk.show(lk), walk.show(&r.low));
                            walk.report(
                                Some(p.addr),
                                Some(p.level),
                                Some(0),
                                ProblemKind::SiblingKeyOrder {
                                    left: addr,
                                    left_key,
                                    key,
                                },
                            );
                        }
                    }
                    LevelState::Gap => {}
                }
                levels[lvl] = LevelState::Seen {
                    addr: p.addr,
                    right: info.right,
                    last_key: info.last_key.clone(),
                };
            }

            for (i, child, range) in info.children.into_iter().rev() {
                stack.push(Pending {
                    gap: !self.store.contains(child),
                    addr: child,
                    level: p.level - 1,
                    parent: Some((Some(p.addr), i, range)),
                    min_exempt: false,
                    is_root: false,
                });
            }
        }

        // The last block of each level must not point further right.
        for (lvl, state) in levels.iter().enumerate() {
            if let LevelState::Seen {
                addr,
                right: Some(r),
                ..
            } = state
            {
                let level = u16::try_from(lvl).unwrap_or(u16::MAX);
                walk.report(
                    Some(*addr),
                    Some(level),
                    None,
                    ProblemKind::RightSibling {
                        expected: None,
                        actual: Some(*r),
                    },
                );
            }
        }
        walk.summary
    }

    /// Reads and checks one block; returns what the walk needs to continue,
    /// or `None` when the block could not be read.
    fn visit_block<V: Visitor<F>>(
        &self,
        walk: &mut Walk<'_, F, V>,
        p: &Pending<F::Key>,
    ) -> Option<BlockInfo<F::Key>> {
        let layout = self.layout;
        let format = &self.format;
        let codec = self.codec();
        let (addr, level) = (p.addr, p.level);
        let result = self.store.read(addr, |b| {
            if b.len() != layout.block_size {
                walk.report(
                    Some(addr),
                    Some(level),
                    None,
                    ProblemKind::Unreadable {
                        reason: format!(
                            "block is {} bytes, expected {}",
                            b.len(),
                            layout.block_size
                        ),
                    },
                );
                return None;
            }
            let mut fields = Vec::new();
            let trust = format.check_header(b, addr, &mut fields);
            for f in fields {
                walk.report(Some(addr), Some(level), None, ProblemKind::Header(f));
            }
            let mut info = BlockInfo {
                left: None,
                right: None,
                range: None,
                last_key: None,
                children: Vec::new(),
                walkable: false,
            };
            if trust == Trust::Unusable {
                return Some(info);
            }
            if !format.checksum_ok(b) {
                walk.report(Some(addr), Some(level), None, ProblemKind::Checksum);
            }
            let h = format.read_header(b);
            info.left = h.left;
            info.right = h.right;
            if h.level != level {
                let kind = if h.level == 0 {
                    ProblemKind::LeafDepth { expected: level }
                } else {
                    ProblemKind::Level {
                        expected: level,
                        actual: h.level,
                    }
                };
                walk.report(Some(addr), Some(level), None, kind);
                return Some(info);
            }
            let max = layout.max_recs(level);
            let n = match usize::try_from(h.numrecs) {
                Ok(n) if n <= max => n,
                _ => {
                    walk.report(
                        Some(addr),
                        Some(level),
                        None,
                        ProblemKind::TooManyRecords {
                            max,
                            actual: h.numrecs,
                        },
                    );
                    return Some(info);
                }
            };
            if level > 0 && n == 0 {
                walk.report(Some(addr), Some(level), None, ProblemKind::EmptyNode);
                return Some(info);
            }
            let min = layout.min_recs(level);
            if !p.is_root && !p.min_exempt && n < min {
                walk.report(
                    Some(addr),
                    Some(level),
                    None,
                    ProblemKind::Underfull { min, actual: n },
                );
            }
            walk.visitor.block(addr, level, b);
            info.walkable = true;

            // Entries: order, intervals, records, children.
            let mut prev: Option<F::Key> = None;
            for i in 0..n {
                let range = codec.entry_range(b, level, i);
                if let Some(pk) = &prev
                    && range.low <= *pk
                {
                    let (previous, key) = (walk.show(pk), walk.show(&range.low));
                    walk.report(
                        Some(addr),
                        Some(level),
                        Some(i),
                        ProblemKind::KeyOrder { previous, key },
                    );
                }
                if layout.overlapping && range.high < range.low {
                    let (low, high) = (walk.show(&range.low), walk.show(&range.high));
                    walk.report(
                        Some(addr),
                        Some(level),
                        Some(i),
                        ProblemKind::HighBelowLow { low, high },
                    );
                }
                if level == 0 {
                    let rec = codec.record(b, i);
                    walk.summary.records += 1;
                    walk.visitor.record(
                        &rec,
                        RecordLoc {
                            block: addr,
                            index: i,
                        },
                    );
                } else {
                    let ptr = codec.ptr(b, i);
                    if !self.store.contains(ptr) {
                        walk.report(
                            Some(addr),
                            Some(level),
                            Some(i),
                            ProblemKind::PointerOutOfRange { ptr },
                        );
                    }
                    info.children.push((i, ptr, range.clone()));
                }
                prev = Some(range.low);
            }
            info.last_key = prev;
            info.range = codec.block_range(b, level, n);

            // The parent's keys must describe this block exactly.
            if let (Some((_, _, pr)), Some(r)) = (&p.parent, &info.range) {
                if pr.low != r.low {
                    let (parent, child) = (walk.show(&pr.low), walk.show(&r.low));
                    walk.report(
                        Some(addr),
                        Some(level),
                        None,
                        ProblemKind::ParentLowKey { parent, child },
                    );
                }
                if layout.overlapping && pr.high != r.high {
                    let (parent, child) = (walk.show(&pr.high), walk.show(&r.high));
                    walk.report(
                        Some(addr),
                        Some(level),
                        None,
                        ProblemKind::ParentHighKey { parent, child },
                    );
                }
            }
            Some(info)
        });
        match result {
            Ok(info) => info,
            Err(e) => {
                walk.report(
                    Some(addr),
                    Some(level),
                    None,
                    ProblemKind::Unreadable {
                        reason: e.to_string(),
                    },
                );
                None
            }
        }
    }
}
