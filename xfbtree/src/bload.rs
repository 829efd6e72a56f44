//! The bulk loader: a whole tree from a sorted record stream, bottom-up.
//!
//! Loading is two steps. [`Geometry::compute`] decides, from the record
//! count alone, how many blocks each level needs and how full they are, so
//! the caller can reserve exactly that many blocks first. [`bulk_load`] then
//! streams the records into leaves left to right, writes each block as soon
//! as it is complete (with its sibling pointers), feeds the key range of
//! every finished block to the level above, and returns the new root. It
//! never touches a live root: making the new tree live is the caller's
//! commit.
//!
//! Memory use is one block buffer per level, whatever the record count.

use crate::error::BtreeError;
use crate::format::{BlockHeader, BtreeFormat};
use crate::layout::Layout;
use crate::node::KeyRange;
use crate::store::{BlockAddr, BlockStore};
use crate::tree::{Btree, InlineRoot, NodeEntry, Root};

/// How full the loader packs blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BloadOptions {
    /// Empty record slots to leave in each leaf. `None`: half the room
    /// between the minimum and the maximum, so leaves are about 75% full
    /// and later inserts do not split at once. `Some(0)`: full blocks, for
    /// when space is tight.
    pub leaf_slack: Option<usize>,
    /// The same for nodes.
    pub node_slack: Option<usize>,
    /// When the owner can hold the root itself (for example in an inode), the
    /// most entries it can hold there. The loader then stops at the first
    /// level above the leaves whose entries fit, and returns them as an
    /// inline root instead of writing a root block.
    pub inline_root_capacity: Option<usize>,
}

impl BloadOptions {
    /// Options that pack every block full.
    pub fn full() -> Self {
        Self {
            leaf_slack: Some(0),
            node_slack: Some(0),
            inline_root_capacity: None,
        }
    }
}

/// The shape of one level of a planned tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelPlan {
    /// Entries on this level (records for the leaf level).
    pub entries: u64,
    /// Blocks on this level.
    pub blocks: u64,
    /// Entries in each block, before the extras.
    pub per_block: usize,
    /// The first `extra` blocks hold one entry more.
    pub extra: u64,
}

impl LevelPlan {
    fn entries_in(&self, block_index: u64) -> usize {
        self.per_block + usize::from(block_index < self.extra)
    }
}

/// The planned shape of a bulk-loaded tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Records to load.
    pub records: u64,
    /// Levels with blocks, leaves first.
    pub levels: Vec<LevelPlan>,
    /// Entries of an inline root above the top block level, if the root is
    /// held by the owner.
    pub inline_root_entries: Option<usize>,
}

impl Geometry {
    /// Plans a tree of `records` records of `format` in `block_size`-byte
    /// blocks.
    pub fn compute<F: BtreeFormat>(
        format: &F,
        block_size: usize,
        records: u64,
        opts: &BloadOptions,
    ) -> Result<Self, BtreeError> {
        let layout = Layout::new(format, block_size)?;
        let max_height = usize::from(format.max_height());
        let mut levels = Vec::new();
        let mut entries = records;
        let mut level: u16 = 0;
        loop {
            let slack = if level == 0 {
                opts.leaf_slack
            } else {
                opts.node_slack
            };
            let plan = plan_level(&layout, level, entries, slack)?;
            levels.push(plan);
            let height = levels.len();
            if height > max_height {
                return Err(BtreeError::TooTall {
                    needed: height,
                    max: format.max_height(),
                });
            }
            if let Some(cap) = opts.inline_root_capacity {
                if plan.blocks <= cap as u64 {
                    if height + 1 > max_height {
                        return Err(BtreeError::TooTall {
                            needed: height + 1,
                            max: format.max_height(),
                        });
                    }
                    return Ok(Self {
                        records,
                        levels,
                        inline_root_entries: Some(plan.blocks as usize),
                    });
                }
            } else if plan.blocks == 1 {
                return Ok(Self {
                    records,
                    levels,
                    inline_root_entries: None,
                });
            }
            entries = plan.blocks;
            level += 1;
        }
    }

    /// Blocks to reserve: every block of every level.
    pub fn total_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Levels of the finished tree, counting an inline root.
    pub fn height(&self) -> usize {
        self.levels.len() + usize::from(self.inline_root_entries.is_some())
    }
}

/// Splits `entries` over blocks of `level` so that each is close to the
/// desired fill, none holds more than the maximum and (unless there is only
/// one block) none fewer than the minimum.
fn plan_level(
    layout: &Layout,
    level: u16,
    entries: u64,
    slack: Option<usize>,
) -> Result<LevelPlan, BtreeError> {
    let max = layout.max_recs(level);
    let min = layout.min_recs(level).max(1);
    let slack = slack.unwrap_or((max - min) / 2);
    let desired = max.saturating_sub(slack).clamp(min, max) as u64;
    let mut blocks = (entries / desired).max(1);
    let mut per = entries / blocks;
    let mut extra = entries % blocks;
    if per > max as u64 || (per == max as u64 && extra > 0) {
        blocks += 1;
        per = entries / blocks;
        extra = entries % blocks;
    }
    if per > max as u64 || (blocks > 1 && per < min as u64) {
        return Err(BtreeError::BadFormat(format!(
            "cannot spread {entries} entries over level-{level} blocks of {min}..={max}"
        )));
    }
    Ok(LevelPlan {
        entries,
        blocks,
        per_block: per as usize,
        extra,
    })
}

/// Where the loader gets blocks and puts them.
///
/// Every [`BlockStore`] is a target. A repair implements it over its space
/// reservation (only blocks proven free) and its commit journal.
pub trait BloadTarget {
    /// Hands out the next reserved block.
    fn alloc_block(&mut self) -> Result<BlockAddr, BtreeError>;
    /// Writes a finished block.
    fn write_block(&mut self, addr: BlockAddr, bytes: &[u8]) -> Result<(), BtreeError>;
}

impl<S: BlockStore> BloadTarget for S {
    fn alloc_block(&mut self) -> Result<BlockAddr, BtreeError> {
        Ok(self.alloc()?)
    }
    fn write_block(&mut self, addr: BlockAddr, bytes: &[u8]) -> Result<(), BtreeError> {
        self.write(addr, |b| b.copy_from_slice(bytes))?;
        Ok(())
    }
}

/// The result of a bulk load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTree<K> {
    /// The new root, for the caller to commit.
    pub root: Root<K>,
    /// Blocks written.
    pub blocks: u64,
    /// Records loaded.
    pub records: u64,
}

/// The block being filled on one level.
struct Open<K> {
    addr: BlockAddr,
    buf: Vec<u8>,
    n: usize,
    range: Option<KeyRange<K>>,
}

struct LevelWriter<K> {
    plan: LevelPlan,
    level: u16,
    index: u64,
    prev: Option<BlockAddr>,
    open: Option<Open<K>>,
}

/// An entry on its way into a block.
enum Item<'r, F: BtreeFormat> {
    Record(&'r F::Record),
    Child(BlockAddr),
}

struct Loader<'a, F: BtreeFormat, T> {
    format: &'a F,
    layout: Layout,
    target: &'a mut T,
    writers: Vec<LevelWriter<F::Key>>,
    inline: Option<Vec<NodeEntry<F::Key>>>,
    top: Option<BlockAddr>,
    blocks: u64,
}

impl<F: BtreeFormat, T: BloadTarget> Loader<'_, F, T> {
    /// Adds one entry, covering `range`, to level `lvl`; writes the block
    /// when it holds its planned count and passes it up.
    fn push(
        &mut self,
        lvl: usize,
        range: KeyRange<F::Key>,
        item: Item<'_, F>,
    ) -> Result<(), BtreeError> {
        let (format, layout) = (self.format, self.layout);
        let Some(w) = self.writers.get_mut(lvl) else {
            return Err(BtreeError::BadFormat(
                "bulk load pushed past the planned levels".into(),
            ));
        };
        if w.index >= w.plan.blocks {
            return Err(BtreeError::CountMismatch {
                planned: w.plan.entries,
                actual: w.plan.entries.saturating_add(1),
            });
        }
        if w.open.is_none() {
            w.open = Some(Open {
                addr: self.target.alloc_block()?,
                buf: vec![0; layout.block_size],
                n: 0,
                range: None,
            });
        }
        let Some(open) = w.open.as_mut() else {
            return Err(BtreeError::BadFormat("no open block".into()));
        };
        let i = open.n;
        match item {
            Item::Record(rec) => format.encode_record(rec, &mut open.buf[layout.record(i)]),
            Item::Child(ptr) => {
                format.encode_key(&range.low, &mut open.buf[layout.key(i)]);
                if layout.overlapping {
                    format.encode_key(&range.high, &mut open.buf[layout.high_key(i)]);
                }
                format.encode_ptr(ptr, &mut open.buf[layout.ptr(i)]);
            }
        }
        open.n += 1;
        match &mut open.range {
            None => open.range = Some(range),
            Some(r) => {
                if range.high > r.high {
                    r.high = range.high;
                }
            }
        }
        if open.n < w.plan.entries_in(w.index) {
            return Ok(());
        }

        // The block is complete: link it, write it, pass it up.
        let Some(mut done) = w.open.take() else {
            return Err(BtreeError::BadFormat("no open block".into()));
        };
        let right = if w.index + 1 == w.plan.blocks {
            None
        } else {
            Some(self.target.alloc_block()?)
        };
        let header = BlockHeader {
            level: w.level,
            numrecs: u32::try_from(done.n)
                .map_err(|_| BtreeError::BadFormat("block too full".into()))?,
            left: w.prev,
            right,
        };
        format.write_header(&mut done.buf, done.addr, &header);
        format.seal(&mut done.buf);
        self.target.write_block(done.addr, &done.buf)?;
        w.prev = Some(done.addr);
        w.index += 1;
        if let Some(addr) = right {
            w.open = Some(Open {
                addr,
                buf: vec![0; layout.block_size],
                n: 0,
                range: None,
            });
        }
        self.blocks += 1;
        let Some(range) = done.range else {
            return Err(BtreeError::BadFormat(
                "finished block without entries".into(),
            ));
        };
        if lvl + 1 < self.writers.len() {
            self.push(lvl + 1, range, Item::Child(done.addr))
        } else if let Some(inline) = self.inline.as_mut() {
            inline.push(NodeEntry {
                range,
                ptr: done.addr,
            });
            Ok(())
        } else {
            self.top = Some(done.addr);
            Ok(())
        }
    }
}

/// Builds a tree from `records` (sorted, strictly increasing keys, exactly
/// `geometry.records` of them) into blocks from `target`.
///
/// Blocks are allocated from the target in the order they are needed and
/// each is written once, complete. On error nothing has been made live; the
/// blocks already written are the caller's to reclaim.
pub fn bulk_load<F, T, I, E>(
    format: &F,
    block_size: usize,
    geometry: &Geometry,
    records: I,
    target: &mut T,
) -> Result<BuiltTree<F::Key>, BtreeError>
where
    F: BtreeFormat,
    T: BloadTarget,
    I: IntoIterator<Item = Result<F::Record, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let layout = Layout::new(format, block_size)?;
    let height = geometry.height();
    if height == 0 || height > usize::from(format.max_height()) {
        return Err(BtreeError::TooTall {
            needed: height,
            max: format.max_height(),
        });
    }
    if geometry.levels.first().map(|l| l.entries) != Some(geometry.records) {
        return Err(BtreeError::BadFormat(
            "geometry does not match its record count".into(),
        ));
    }
    let mut writers = Vec::with_capacity(geometry.levels.len());
    for (level, plan) in geometry.levels.iter().enumerate() {
        let level =
            u16::try_from(level).map_err(|_| BtreeError::BadFormat("too many levels".into()))?;
        if plan.per_block.saturating_add(usize::from(plan.extra > 0)) > layout.max_recs(level) {
            return Err(BtreeError::BadFormat(format!(
                "level {level} plan overfills its blocks"
            )));
        }
        writers.push(LevelWriter {
            plan: *plan,
            level,
            index: 0,
            prev: None,
            open: None,
        });
    }
    let mut loader = Loader {
        format,
        layout,
        target,
        writers,
        inline: geometry.inline_root_entries.map(Vec::with_capacity),
        top: None,
        blocks: 0,
    };

    let mut count: u64 = 0;
    let mut prev_key: Option<F::Key> = None;
    for rec in records {
        let rec = rec.map_err(|e| BtreeError::Source(Box::new(e)))?;
        let key = format.record_key(&rec);
        if prev_key.as_ref().is_some_and(|p| key <= *p) {
            return Err(BtreeError::Unsorted { index: count });
        }
        if count >= geometry.records {
            return Err(BtreeError::CountMismatch {
                planned: geometry.records,
                actual: count.saturating_add(1),
            });
        }
        let high = if layout.overlapping {
            format.record_high_key(&rec)
        } else {
            key.clone()
        };
        loader.push(
            0,
            KeyRange {
                low: key.clone(),
                high,
            },
            Item::Record(&rec),
        )?;
        prev_key = Some(key);
        count += 1;
    }
    if count != geometry.records {
        return Err(BtreeError::CountMismatch {
            planned: geometry.records,
            actual: count,
        });
    }

    if geometry.records == 0 {
        // An empty tree is one empty root leaf.
        let addr = loader.target.alloc_block()?;
        let mut buf = vec![0; layout.block_size];
        let header = BlockHeader {
            level: 0,
            numrecs: 0,
            left: None,
            right: None,
        };
        format.write_header(&mut buf, addr, &header);
        format.seal(&mut buf);
        loader.target.write_block(addr, &buf)?;
        return Ok(BuiltTree {
            root: Root::Block { addr, height: 1 },
            blocks: 1,
            records: 0,
        });
    }

    let blocks = loader.blocks;
    let root = match (loader.inline.take(), loader.top) {
        (Some(entries), _) => {
            let level = u16::try_from(geometry.levels.len())
                .map_err(|_| BtreeError::BadFormat("too many levels".into()))?;
            Root::Inline(InlineRoot { level, entries })
        }
        (None, Some(addr)) => Root::Block {
            addr,
            height: u16::try_from(height)
                .map_err(|_| BtreeError::BadFormat("too many levels".into()))?,
        },
        (None, None) => {
            return Err(BtreeError::BadFormat(
                "bulk load finished without a root".into(),
            ));
        }
    };
    Ok(BuiltTree {
        root,
        blocks,
        records: count,
    })
}

impl<S: BlockStore, F: BtreeFormat> Btree<S, F> {
    /// Bulk-loads a new tree into `store` and opens it: the fast way to
    /// build a staging tree from sorted records.
    pub fn bulk_load<I, E>(
        mut store: S,
        format: F,
        records: u64,
        input: I,
        opts: &BloadOptions,
    ) -> Result<Self, BtreeError>
    where
        I: IntoIterator<Item = Result<F::Record, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let opts = BloadOptions {
            inline_root_capacity: None,
            ..*opts
        };
        let geometry = Geometry::compute(&format, store.block_size(), records, &opts)?;
        let built = bulk_load(&format, store.block_size(), &geometry, input, &mut store)?;
        let mut tree = Btree::open(store, format, built.root)?;
        tree.set_known_len(built.records);
        Ok(tree)
    }
}
