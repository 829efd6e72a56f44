//! A btree over a block store: lookups, inserts, updates and deletes.

use crate::error::BtreeError;
use crate::format::{BlockHeader, BtreeFormat, Trust};
use crate::layout::Layout;
use crate::node::{Codec, KeyRange};
use crate::store::{BlockAddr, BlockStore};

/// Where a tree's root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root<K> {
    /// The root is a block of the store; `height` counts levels, so a tree
    /// whose root is a leaf has height 1.
    Block {
        /// The root block.
        addr: BlockAddr,
        /// Number of levels.
        height: u16,
    },
    /// The root's entries are held by the tree's owner outside the store
    /// (for example a file's mapping tree rooted in its inode). Such trees
    /// can be read and verified; changing them is the owner's business.
    Inline(InlineRoot<K>),
}

impl<K> Root<K> {
    /// Number of levels in the tree, counting an inline root as one.
    pub fn height(&self) -> u16 {
        match self {
            Root::Block { height, .. } => *height,
            Root::Inline(r) => r.level.saturating_add(1),
        }
    }
}

/// A root held outside the store: one level of node entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineRoot<K> {
    /// The level of the root (at least 1: its entries point at blocks).
    pub level: u16,
    /// The root's entries, in key order.
    pub entries: Vec<NodeEntry<K>>,
}

/// One entry of a node: the key range of a child and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry<K> {
    /// Keys covered by the child.
    pub range: KeyRange<K>,
    /// The child block.
    pub ptr: BlockAddr,
}

/// How [`Btree::lookup`] matches a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The record with exactly this key.
    Eq,
    /// The record with the greatest key not above this key.
    Le,
    /// The record with the least key not below this key.
    Ge,
}

/// A B+tree of one format over one block store.
///
/// Every block read is checked (size, level, record count, checksum and the
/// format's header fields); a block that fails makes the operation return
/// [`BtreeError::Corrupt`] rather than guess.
pub struct Btree<S, F: BtreeFormat> {
    pub(crate) store: S,
    pub(crate) format: F,
    pub(crate) layout: Layout,
    pub(crate) root: Root<F::Key>,
    len: Option<u64>,
    /// Reused by every change for its descent path.
    path: Vec<Step>,
}

/// A child step of a descent: the node and the entry index taken in it.
type Step = (BlockAddr, usize);

/// What goes into a block: a record or a node entry, already encoded.
enum Entry {
    Record(Vec<u8>),
    Node { slot: Vec<u8>, ptr: Vec<u8> },
}

/// A block copied out of the store for a structural change.
struct Image {
    level: u16,
    left: Option<BlockAddr>,
    right: Option<BlockAddr>,
    n: usize,
    /// Records (leaf) or key slots (node) of the `n` entries, back to back.
    data: Vec<u8>,
    /// Child pointers of the `n` entries (nodes only).
    ptrs: Vec<u8>,
}

impl<S: BlockStore, F: BtreeFormat> Btree<S, F> {
    /// Creates an empty tree: one empty root leaf, allocated from `store`.
    pub fn create(mut store: S, format: F) -> Result<Self, BtreeError> {
        let layout = Layout::new(&format, store.block_size())?;
        let addr = store.alloc()?;
        let header = BlockHeader {
            level: 0,
            numrecs: 0,
            left: None,
            right: None,
        };
        store.write(addr, |b| {
            b.fill(0);
            format.write_header(b, addr, &header);
            format.seal(b);
        })?;
        Ok(Self {
            store,
            format,
            layout,
            root: Root::Block { addr, height: 1 },
            len: Some(0),
            path: Vec::new(),
        })
    }

    /// Opens an existing tree with the given root. Nothing is read yet.
    pub fn open(store: S, format: F, root: Root<F::Key>) -> Result<Self, BtreeError> {
        let layout = Layout::new(&format, store.block_size())?;
        Ok(Self {
            store,
            format,
            layout,
            root,
            len: None,
            path: Vec::new(),
        })
    }

    /// The root, for the owner to record (in a header block, an inode, ...)
    /// after changes.
    pub fn root(&self) -> &Root<F::Key> {
        &self.root
    }

    /// Number of levels.
    pub fn height(&self) -> u16 {
        self.root.height()
    }

    /// The block layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The block store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The block store, mutably (for owners that keep their own blocks in it).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives back the store and format.
    pub fn into_parts(self) -> (S, F, Root<F::Key>) {
        (self.store, self.format, self.root)
    }

    pub(crate) fn codec(&self) -> Codec<'_, F> {
        Codec {
            format: &self.format,
            layout: &self.layout,
        }
    }

    /// Number of records. Known without I/O for trees created or loaded by
    /// this engine and changed only through it; otherwise counted by a walk.
    pub fn len(&self) -> Result<u64, BtreeError> {
        match self.len {
            Some(n) => Ok(n),
            None => self.count_records(),
        }
    }

    /// Whether the tree holds no records.
    pub fn is_empty(&self) -> Result<bool, BtreeError> {
        Ok(self.first()?.is_none())
    }

    /// Tells the tree how many records it holds (for example after a bulk
    /// load), so that [`Btree::len`] needs no walk.
    pub fn set_known_len(&mut self, len: u64) {
        self.len = Some(len);
    }

    pub(crate) fn check_height(&self) -> Result<u16, BtreeError> {
        let height = self.root.height();
        let max = self.format.max_height();
        if height == 0 || height > max {
            return Err(BtreeError::corrupt(
                self.root_addr().unwrap_or(BlockAddr(u64::MAX)),
                height.saturating_sub(1),
                format!("tree height {height} outside 1..={max}"),
            ));
        }
        Ok(height)
    }

    fn root_addr(&self) -> Option<BlockAddr> {
        match &self.root {
            Root::Block { addr, .. } => Some(*addr),
            Root::Inline(_) => None,
        }
    }

    /// Reads block `addr`, expected at `level`, checking it, and runs `f` on
    /// its bytes and record count.
    pub(crate) fn read_block<R>(
        &self,
        addr: BlockAddr,
        level: u16,
        f: impl FnOnce(&[u8], usize) -> R,
    ) -> Result<R, BtreeError> {
        let layout = &self.layout;
        let format = &self.format;
        if !self.store.contains(addr) {
            return Err(BtreeError::corrupt(
                addr,
                level,
                "pointer outside the store",
            ));
        }
        let checked = self.store.read_verified(
            addr,
            |b| format.checksum_ok(b),
            |b, checksum_ok| {
                let n = check_block(format, layout, b, addr, level, checksum_ok)?;
                Ok(f(b, n))
            },
        )?;
        checked.map_err(|reason: String| BtreeError::corrupt(addr, level, reason))
    }

    /// The child pointer of entry `i` of the node at `addr`, checked to lie
    /// inside the store.
    pub(crate) fn child(
        &self,
        addr: BlockAddr,
        level: u16,
        block: &[u8],
        i: usize,
    ) -> Result<BlockAddr, BtreeError> {
        let ptr = self.codec().ptr(block, i);
        if self.store.contains(ptr) {
            Ok(ptr)
        } else {
            Err(BtreeError::corrupt(
                addr,
                level,
                format!("entry {i} points at block {ptr}, outside the store"),
            ))
        }
    }

    /// Descends from the root towards `key`; returns the node steps taken
    /// and the leaf reached.
    fn descend(
        &self,
        key: &F::Key,
        mut path: Option<&mut Vec<Step>>,
    ) -> Result<BlockAddr, BtreeError> {
        let height = self.check_height()?;
        let (mut addr, mut level) = match &self.root {
            Root::Block { addr, .. } => (*addr, height - 1),
            Root::Inline(_) => return Err(BtreeError::InlineRoot),
        };
        if let Some(p) = path.as_deref_mut() {
            p.clear();
        }
        while level > 0 {
            let next = self.read_block(addr, level, |b, n| {
                let i = self.codec().choose_child(b, n, key);
                self.child(addr, level, b, i).map(|c| (i, c))
            })??;
            if let Some(p) = path.as_deref_mut() {
                p.push((addr, next.0));
            }
            addr = next.1;
            level -= 1;
        }
        Ok(addr)
    }

    /// Descends towards `key` for a change: the node steps go in the
    /// tree's reusable path buffer, which the caller hands back.
    fn descend_for_update(&mut self, key: &F::Key) -> Result<(Vec<Step>, BlockAddr), BtreeError> {
        let mut path = std::mem::take(&mut self.path);
        match self.descend(key, Some(&mut path)) {
            Ok(leaf) => Ok((path, leaf)),
            Err(e) => {
                self.path = path;
                Err(e)
            }
        }
    }

    /// The record with key `key` (or nearest, per `mode`).
    pub fn lookup(&self, key: &F::Key, mode: Lookup) -> Result<Option<F::Record>, BtreeError> {
        match mode {
            Lookup::Eq => {
                if let Root::Inline(_) = self.root {
                    let mut c = self.cursor(key, Lookup::Ge)?;
                    return Ok(c
                        .next_record()?
                        .filter(|r| self.format.record_key(r) == *key));
                }
                let leaf = self.descend(key, None)?;
                self.read_block(leaf, 0, |b, n| {
                    self.codec()
                        .search_leaf(b, n, key)
                        .ok()
                        .map(|i| self.codec().record(b, i))
                })
            }
            Lookup::Ge => self.cursor(key, Lookup::Ge)?.next_record(),
            Lookup::Le => self.cursor(key, Lookup::Le)?.prev_record(),
        }
    }

    /// The record with exactly this key.
    pub fn get(&self, key: &F::Key) -> Result<Option<F::Record>, BtreeError> {
        self.lookup(key, Lookup::Eq)
    }

    /// The record with the least key.
    pub fn first(&self) -> Result<Option<F::Record>, BtreeError> {
        self.cursor_first()?.next_record()
    }

    /// The record with the greatest key.
    pub fn last(&self) -> Result<Option<F::Record>, BtreeError> {
        self.cursor_last()?.prev_record()
    }

    /// Counts records by walking every leaf.
    pub fn count_records(&self) -> Result<u64, BtreeError> {
        let mut n = 0u64;
        let mut c = self.cursor_first()?;
        loop {
            n += c.leaf_len() as u64;
            if !c.step_right()? {
                return Ok(n);
            }
        }
    }

    fn root_block_for_update(&self) -> Result<(BlockAddr, u16), BtreeError> {
        let height = self.check_height()?;
        match &self.root {
            Root::Block { addr, .. } => Ok((*addr, height)),
            Root::Inline(_) => Err(BtreeError::InlineRoot),
        }
    }

    /// Inserts a record. Fails with [`BtreeError::Duplicate`] if a record
    /// with the same key exists (use [`Btree::update`] to replace one).
    pub fn insert(&mut self, record: &F::Record) -> Result<(), BtreeError> {
        self.root_block_for_update()?;
        let key = self.format.record_key(record);
        let (path, leaf) = self.descend_for_update(&key)?;
        let result = self.insert_at(record, &key, &path, leaf);
        self.path = path;
        result?;
        if let Some(n) = &mut self.len {
            *n += 1;
        }
        Ok(())
    }

    fn insert_at(
        &mut self,
        record: &F::Record,
        key: &F::Key,
        path: &[Step],
        leaf: BlockAddr,
    ) -> Result<(), BtreeError> {
        // The common case in one pass over the leaf: check it, find the
        // slot and, when there is room, insert in place.
        let (format, layout) = (&self.format, &self.layout);
        let outcome: Result<Option<(usize, bool)>, String> = self.store.write(leaf, |b| {
            let n = check_block(format, layout, b, leaf, 0, format.checksum_ok(b))?;
            let codec = Codec { format, layout };
            let pos = match codec.search_leaf(b, n, key) {
                Ok(_) => return Ok(None),
                Err(p) => p,
            };
            if n == layout.leaf_max {
                return Ok(Some((pos, false)));
            }
            let r = layout.records(pos, n);
            b.copy_within(r.clone(), r.start + layout.record_len);
            format.encode_record(record, &mut b[layout.record(pos)]);
            let mut h = format.read_header(b);
            h.numrecs = h.numrecs.saturating_add(1);
            format.write_header(b, leaf, &h);
            format.seal(b);
            Ok(Some((pos, true)))
        })?;
        let (pos, done) = match outcome {
            Err(reason) => return Err(BtreeError::corrupt(leaf, 0, reason)),
            Ok(None) => return Err(BtreeError::Duplicate),
            Ok(Some(found)) => found,
        };
        if done {
            // A new first record changes the leaf's key in its parent; in
            // an overlapping tree any record may raise the high key, which
            // is then the larger of the old one and the record's: raised
            // without rescanning every block on the path.
            if pos == 0 {
                self.fix_keys(path, 1, leaf)?;
            } else if self.layout.overlapping {
                let high = self.format.record_high_key(record);
                self.raise_high_keys(path, &high)?;
            }
        } else {
            let mut raw = vec![0; self.layout.record_len];
            self.format.encode_record(record, &mut raw);
            self.insert_entry(path, 0, leaf, pos, Entry::Record(raw))?;
        }
        Ok(())
    }

    /// Replaces the record with the same key; returns the old record, or
    /// `None` (and changes nothing) when there is none.
    pub fn update(&mut self, record: &F::Record) -> Result<Option<F::Record>, BtreeError> {
        self.root_block_for_update()?;
        let key = self.format.record_key(record);
        let (path, leaf) = self.descend_for_update(&key)?;
        let found = self.read_block(leaf, 0, |b, n| {
            self.codec()
                .search_leaf(b, n, &key)
                .ok()
                .map(|i| (i, self.codec().record(b, i)))
        })?;
        let Some((pos, old)) = found else {
            return Ok(None);
        };
        let (format, layout) = (&self.format, &self.layout);
        self.store.write(leaf, |b| {
            format.encode_record(record, &mut b[layout.record(pos)]);
            format.seal(b);
        })?;
        if self.layout.overlapping {
            self.fix_keys(&path, 1, leaf)?;
        }
        self.path = path;
        Ok(Some(old))
    }

    /// Removes the record with this key and returns it.
    pub fn delete(&mut self, key: &F::Key) -> Result<Option<F::Record>, BtreeError> {
        self.root_block_for_update()?;
        let (path, leaf) = self.descend_for_update(key)?;
        let found = self.read_block(leaf, 0, |b, n| {
            self.codec()
                .search_leaf(b, n, key)
                .ok()
                .map(|i| (i, self.codec().record(b, i)))
        })?;
        let Some((pos, old)) = found else {
            return Ok(None);
        };
        self.remove_entry(&path, 0, leaf, pos)?;
        self.path = path;
        if let Some(n) = &mut self.len {
            *n = n.saturating_sub(1);
        }
        Ok(Some(old))
    }

    // ----- structural changes -------------------------------------------

    fn range_of(
        &self,
        addr: BlockAddr,
        level: u16,
    ) -> Result<Option<KeyRange<F::Key>>, BtreeError> {
        self.read_block(addr, level, |b, n| self.codec().block_range(b, level, n))
    }

    fn encode_slot(&self, range: &KeyRange<F::Key>) -> Vec<u8> {
        let mut slot = vec![0; self.layout.slot_len];
        self.format
            .encode_key(&range.low, &mut slot[..self.layout.key_len]);
        if self.layout.overlapping {
            self.format
                .encode_key(&range.high, &mut slot[self.layout.key_len..]);
        }
        slot
    }

    fn encode_ptr(&self, addr: BlockAddr) -> Vec<u8> {
        let mut ptr = vec![0; self.layout.ptr_len];
        self.format.encode_ptr(addr, &mut ptr);
        ptr
    }

    /// Writes the key range of the child `child` (at `level - 1`) into entry
    /// `idx` of the node `parent`. Returns whether anything changed.
    fn set_parent_keys(
        &mut self,
        parent: BlockAddr,
        level: u16,
        idx: usize,
        child: BlockAddr,
    ) -> Result<bool, BtreeError> {
        let Some(range) = self.range_of(child, level - 1)? else {
            return Err(BtreeError::corrupt(
                child,
                level - 1,
                "empty non-root block",
            ));
        };
        let slot = self.encode_slot(&range);
        let layout = self.layout;
        let current = self.read_block(parent, level, |b, n| {
            (idx < n).then(|| b[layout.slots(idx, idx + 1)].to_vec())
        })?;
        match current {
            None => Err(BtreeError::corrupt(
                parent,
                level,
                "entry index past the record count",
            )),
            Some(cur) if cur == slot => Ok(false),
            Some(_) => {
                let format = &self.format;
                self.store.write(parent, |b| {
                    b[layout.slots(idx, idx + 1)].copy_from_slice(&slot);
                    format.seal(b);
                })?;
                Ok(true)
            }
        }
    }

    /// After `addr` (a block at `level - 1` whose parent steps are `path`)
    /// changed, brings the keys of its ancestors up to date, stopping as soon
    /// as an ancestor's entry is unchanged.
    fn fix_keys(
        &mut self,
        path: &[Step],
        level: u16,
        mut addr: BlockAddr,
    ) -> Result<(), BtreeError> {
        for (level, &(parent, idx)) in (level..).zip(path.iter().rev()) {
            if !self.set_parent_keys(parent, level, idx, addr)? {
                break;
            }
            addr = parent;
        }
        Ok(())
    }

    /// After an entry with high key `high` went into the block below
    /// `path` without changing its low key, raises the high key of each
    /// ancestor entry that is below `high`: the same keys a rescan of every
    /// block on the path ([`Btree::fix_keys`]) would write, at the cost of
    /// one slot per level.
    fn raise_high_keys(&mut self, path: &[Step], high: &F::Key) -> Result<(), BtreeError> {
        for (level, &(parent, idx)) in (1u16..).zip(path.iter().rev()) {
            let current = self.read_block(parent, level, |b, n| {
                (idx < n).then(|| self.codec().high_key(b, idx))
            })?;
            let Some(current) = current else {
                return Err(BtreeError::corrupt(
                    parent,
                    level,
                    "entry index past the record count",
                ));
            };
            if *high <= current {
                break;
            }
            let (format, layout) = (&self.format, &self.layout);
            self.store.write(parent, |b| {
                format.encode_key(high, &mut b[layout.high_key(idx)]);
                format.seal(b);
            })?;
        }
        Ok(())
    }

    fn load_image(&self, addr: BlockAddr, level: u16) -> Result<Image, BtreeError> {
        let layout = self.layout;
        self.read_block(addr, level, |b, n| {
            let h = self.format.read_header(b);
            let (data, ptrs) = if level == 0 {
                (b[layout.records(0, n)].to_vec(), Vec::new())
            } else {
                (
                    b[layout.slots(0, n)].to_vec(),
                    b[layout.ptrs(0, n)].to_vec(),
                )
            };
            Image {
                level,
                left: h.left,
                right: h.right,
                n,
                data,
                ptrs,
            }
        })
    }

    fn store_image(&mut self, addr: BlockAddr, img: &Image) -> Result<(), BtreeError> {
        let (format, layout) = (&self.format, &self.layout);
        let header = BlockHeader {
            level: img.level,
            numrecs: u32::try_from(img.n)
                .map_err(|_| BtreeError::corrupt(addr, img.level, "too many entries"))?,
            left: img.left,
            right: img.right,
        };
        self.store.write(addr, |b| {
            b.fill(0);
            format.write_header(b, addr, &header);
            if img.level == 0 {
                b[layout.records(0, img.n)].copy_from_slice(&img.data);
            } else {
                b[layout.slots(0, img.n)].copy_from_slice(&img.data);
                b[layout.ptrs(0, img.n)].copy_from_slice(&img.ptrs);
            }
            format.seal(b);
        })?;
        Ok(())
    }

    fn entry_width(&self, level: u16) -> usize {
        if level == 0 {
            self.layout.record_len
        } else {
            self.layout.slot_len
        }
    }

    /// Sets the left sibling pointer of `addr` (a block at `level`).
    fn set_left_sibling(
        &mut self,
        addr: BlockAddr,
        level: u16,
        left: Option<BlockAddr>,
    ) -> Result<(), BtreeError> {
        self.read_block(addr, level, |_, _| ())?;
        let format = &self.format;
        self.store.write(addr, |b| {
            let mut h = format.read_header(b);
            h.left = left;
            format.write_header(b, addr, &h);
            format.seal(b);
        })?;
        Ok(())
    }

    /// Puts `entry` at position `pos` of block `addr` at `level`; splits the
    /// block when full. Returns the new right sibling if there was a split.
    fn put_entry(
        &mut self,
        addr: BlockAddr,
        level: u16,
        pos: usize,
        entry: &Entry,
    ) -> Result<Option<BlockAddr>, BtreeError> {
        let max = self.layout.max_recs(level);
        let n = self.read_block(addr, level, |_, n| n)?;
        if pos > n {
            return Err(BtreeError::corrupt(
                addr,
                level,
                "insert position past the record count",
            ));
        }
        if n < max {
            let (format, layout) = (&self.format, &self.layout);
            self.store.write(addr, |b| {
                match entry {
                    Entry::Record(raw) => {
                        let r = layout.records(pos, n);
                        b.copy_within(r.clone(), r.start + layout.record_len);
                        b[layout.record(pos)].copy_from_slice(raw);
                    }
                    Entry::Node { slot, ptr } => {
                        let s = layout.slots(pos, n);
                        b.copy_within(s.clone(), s.start + layout.slot_len);
                        b[layout.slots(pos, pos + 1)].copy_from_slice(slot);
                        let p = layout.ptrs(pos, n);
                        b.copy_within(p.clone(), p.start + layout.ptr_len);
                        b[layout.ptr(pos)].copy_from_slice(ptr);
                    }
                }
                let mut h = format.read_header(b);
                h.numrecs = h.numrecs.saturating_add(1);
                format.write_header(b, addr, &h);
                format.seal(b);
            })?;
            return Ok(None);
        }

        // Split: the old block keeps the left half, a new block takes the right.
        let mut img = self.load_image(addr, level)?;
        let w = self.entry_width(level);
        match entry {
            Entry::Record(raw) => {
                img.data.splice(pos * w..pos * w, raw.iter().copied());
            }
            Entry::Node { slot, ptr } => {
                img.data.splice(pos * w..pos * w, slot.iter().copied());
                let pw = self.layout.ptr_len;
                img.ptrs.splice(pos * pw..pos * pw, ptr.iter().copied());
            }
        }
        img.n += 1;
        let keep = img.n / 2;
        let new = self.store.alloc()?;
        let right = Image {
            level,
            left: Some(addr),
            right: img.right,
            n: img.n - keep,
            data: img.data.split_off(keep * w),
            ptrs: if level == 0 {
                Vec::new()
            } else {
                img.ptrs.split_off(keep * self.layout.ptr_len)
            },
        };
        let old_right = img.right;
        img.n = keep;
        img.right = Some(new);
        self.store_image(new, &right)?;
        self.store_image(addr, &img)?;
        if let Some(r) = old_right {
            self.set_left_sibling(r, level, Some(new))?;
        }
        Ok(Some(new))
    }

    /// Inserts `entry` at `pos` of block `addr` at `level`, whose ancestors
    /// are `path`, splitting and growing the tree as needed and keeping
    /// every ancestor key right.
    fn insert_entry(
        &mut self,
        path: &[Step],
        level: u16,
        addr: BlockAddr,
        pos: usize,
        entry: Entry,
    ) -> Result<(), BtreeError> {
        let split = self.put_entry(addr, level, pos, &entry)?;
        // Without high keys, a leaf's key in its parent is its first key,
        // which only an insert at the front or a split can change. (Not so
        // for nodes: the caller may just have changed entry 0.)
        if level == 0 && split.is_none() && pos != 0 && !self.layout.overlapping {
            return Ok(());
        }
        match path.split_last() {
            None => {
                if let Some(right) = split {
                    self.grow_root(addr, right, level)?;
                }
                Ok(())
            }
            Some((&(parent, idx), above)) => {
                let changed = self.set_parent_keys(parent, level + 1, idx, addr)?;
                if let Some(right) = split {
                    let Some(range) = self.range_of(right, level)? else {
                        return Err(BtreeError::corrupt(
                            right,
                            level,
                            "split produced an empty block",
                        ));
                    };
                    let entry = Entry::Node {
                        slot: self.encode_slot(&range),
                        ptr: self.encode_ptr(right),
                    };
                    self.insert_entry(above, level + 1, parent, idx + 1, entry)
                } else if changed {
                    self.fix_keys(above, level + 2, parent)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Adds a level: a new root over the old root and its new right sibling.
    fn grow_root(
        &mut self,
        left: BlockAddr,
        right: BlockAddr,
        level: u16,
    ) -> Result<(), BtreeError> {
        let needed = usize::from(level) + 2;
        if needed > usize::from(self.format.max_height()) {
            return Err(BtreeError::TooTall {
                needed,
                max: self.format.max_height(),
            });
        }
        let mut data = Vec::new();
        let mut ptrs = Vec::new();
        for child in [left, right] {
            let Some(range) = self.range_of(child, level)? else {
                return Err(BtreeError::corrupt(
                    child,
                    level,
                    "empty block under a new root",
                ));
            };
            data.extend(self.encode_slot(&range));
            ptrs.extend(self.encode_ptr(child));
        }
        let root = self.store.alloc()?;
        let img = Image {
            level: level + 1,
            left: None,
            right: None,
            n: 2,
            data,
            ptrs,
        };
        self.store_image(root, &img)?;
        self.root = Root::Block {
            addr: root,
            height: level + 2,
        };
        Ok(())
    }

    /// Removes entry `pos` of block `addr` at `level`, whose ancestors are
    /// `path`; rebalances (borrows from or merges with a sibling) when the
    /// block becomes underfull and shrinks the tree when the root is left
    /// with one child.
    fn remove_entry(
        &mut self,
        path: &[Step],
        level: u16,
        addr: BlockAddr,
        pos: usize,
    ) -> Result<(), BtreeError> {
        let n = self.read_block(addr, level, |_, n| n)?;
        if pos >= n {
            return Err(BtreeError::corrupt(
                addr,
                level,
                "delete position past the record count",
            ));
        }
        {
            let (format, layout) = (&self.format, &self.layout);
            self.store.write(addr, |b| {
                if level == 0 {
                    let r = layout.records(pos + 1, n);
                    b.copy_within(r.clone(), r.start - layout.record_len);
                    b[layout.record(n - 1)].fill(0);
                } else {
                    let s = layout.slots(pos + 1, n);
                    b.copy_within(s.clone(), s.start - layout.slot_len);
                    b[layout.slots(n - 1, n)].fill(0);
                    let p = layout.ptrs(pos + 1, n);
                    b.copy_within(p.clone(), p.start - layout.ptr_len);
                    b[layout.ptr(n - 1)].fill(0);
                }
                let mut h = format.read_header(b);
                h.numrecs = h.numrecs.saturating_sub(1);
                format.write_header(b, addr, &h);
                format.seal(b);
            })?;
        }
        let n = n - 1;

        let Some((&(parent, idx), above)) = path.split_last() else {
            // The root: a node left with a single child hands the root down.
            if level > 0 && n == 1 {
                let child =
                    self.read_block(addr, level, |b, _| self.child(addr, level, b, 0))??;
                self.store.free(addr)?;
                self.root = Root::Block {
                    addr: child,
                    height: level,
                };
            }
            return Ok(());
        };

        if n >= self.layout.min_recs(level) {
            if level == 0 && pos != 0 && !self.layout.overlapping {
                return Ok(());
            }
            if self.set_parent_keys(parent, level + 1, idx, addr)? {
                self.fix_keys(above, level + 2, parent)?;
            }
            return Ok(());
        }

        // Underfull: look at the siblings under the same parent.
        let (pn, left, right) = self.read_block(parent, level + 1, |b, pn| {
            let left = if idx > 0 {
                Some(self.child(parent, level + 1, b, idx - 1))
            } else {
                None
            };
            let right = if idx + 1 < pn {
                Some(self.child(parent, level + 1, b, idx + 1))
            } else {
                None
            };
            (pn, left.transpose(), right.transpose())
        })?;
        let (left, right) = (left?, right?);
        if idx >= pn {
            return Err(BtreeError::corrupt(
                parent,
                level + 1,
                "path index past the record count",
            ));
        }
        let min = self.layout.min_recs(level);
        let w = self.entry_width(level);
        let pw = self.layout.ptr_len;

        if let Some(r) = right {
            let mut rimg = self.load_image(r, level)?;
            if rimg.n > min {
                // Borrow the right sibling's first entry.
                let mut img = self.load_image(addr, level)?;
                img.data.extend(rimg.data.drain(..w));
                if level > 0 {
                    img.ptrs.extend(rimg.ptrs.drain(..pw));
                }
                img.n += 1;
                rimg.n -= 1;
                self.store_image(addr, &img)?;
                self.store_image(r, &rimg)?;
                self.set_parent_keys(parent, level + 1, idx, addr)?;
                self.set_parent_keys(parent, level + 1, idx + 1, r)?;
                return self.fix_keys(above, level + 2, parent);
            }
        }
        if let Some(l) = left {
            let mut limg = self.load_image(l, level)?;
            if limg.n > min {
                // Borrow the left sibling's last entry.
                let mut img = self.load_image(addr, level)?;
                let cut = (limg.n - 1) * w;
                let moved: Vec<u8> = limg.data.drain(cut..).collect();
                img.data.splice(0..0, moved);
                if level > 0 {
                    let cut = (limg.n - 1) * pw;
                    let moved: Vec<u8> = limg.ptrs.drain(cut..).collect();
                    img.ptrs.splice(0..0, moved);
                }
                img.n += 1;
                limg.n -= 1;
                self.store_image(addr, &img)?;
                self.store_image(l, &limg)?;
                self.set_parent_keys(parent, level + 1, idx - 1, l)?;
                self.set_parent_keys(parent, level + 1, idx, addr)?;
                return self.fix_keys(above, level + 2, parent);
            }
        }
        // Merge with a sibling: the right block of the pair goes away.
        let (keep, gone, keep_idx) = match (left, right) {
            (_, Some(r)) => (addr, r, idx),
            (Some(l), None) => (l, addr, idx - 1),
            (None, None) => {
                return Err(BtreeError::corrupt(
                    parent,
                    level + 1,
                    "non-root node with a single child",
                ));
            }
        };
        let mut kimg = self.load_image(keep, level)?;
        let gimg = self.load_image(gone, level)?;
        kimg.data.extend_from_slice(&gimg.data);
        kimg.ptrs.extend_from_slice(&gimg.ptrs);
        kimg.n += gimg.n;
        kimg.right = gimg.right;
        if kimg.n > self.layout.max_recs(level) {
            return Err(BtreeError::corrupt(
                keep,
                level,
                "siblings too full to merge",
            ));
        }
        self.store_image(keep, &kimg)?;
        if let Some(rr) = gimg.right {
            self.set_left_sibling(rr, level, Some(keep))?;
        }
        self.store.free(gone)?;
        self.set_parent_keys(parent, level + 1, keep_idx, keep)?;
        self.remove_entry(above, level + 1, parent, keep_idx + 1)
    }
}

/// Checks one block read from `addr` at `level`: size, header level, record
/// count against the layout, checksum and the format's own fields. Returns
/// the record count or why the block cannot be used. `checksum_ok` is the
/// format's checksum verdict on `b` (computed by the caller, which may have
/// it remembered by the store).
pub(crate) fn check_block<F: BtreeFormat>(
    format: &F,
    layout: &Layout,
    b: &[u8],
    addr: BlockAddr,
    level: u16,
    checksum_ok: bool,
) -> Result<usize, String> {
    if b.len() != layout.block_size {
        return Err(format!(
            "block is {} bytes, expected {}",
            b.len(),
            layout.block_size
        ));
    }
    let mut problems = Vec::new();
    if format.check_header(b, addr, &mut problems) == Trust::Unusable || !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(format!("bad header ({})", list.join("; ")));
    }
    if !checksum_ok {
        return Err("checksum mismatch".into());
    }
    let h = format.read_header(b);
    if h.level != level {
        return Err(format!("level {} where {} was expected", h.level, level));
    }
    let n = usize::try_from(h.numrecs).unwrap_or(usize::MAX);
    if n > layout.max_recs(level) {
        return Err(format!(
            "{} records, more than the {} that fit",
            h.numrecs,
            layout.max_recs(level)
        ));
    }
    if level > 0 && n == 0 {
        return Err("node with no entries".into());
    }
    Ok(n)
}
