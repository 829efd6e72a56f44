//! The image's btrees, opened with the [`xfbtree`] engine.
//!
//! [`ImageBlocks`] is the engine's block store over an image: the blocks of
//! one AG (AG btrees, addressed by AG block number) or of the whole
//! filesystem (bmbt, addressed by fsbno). It is read-only: repairs write
//! through their own commit path. A small cache keeps recently read blocks
//! so that repeated lookups (cross-referencing) do not reread them, with
//! the checksum verdict of each so that they are not checksummed again
//! either (a store serves one header form, short or long, so one CRC
//! layout). A store belongs to one scrub item on one thread, so its cache
//! is a `RefCell` of `Rc` blocks: a lookup costs no atomic operation, which
//! on a check of millions of records was most of the lookup's time.
//!
//! The `Filesystem::*bt` methods open each AG btree from the root and level
//! recorded in its AG header.

use crate::error::Result;
use crate::format::agf::Agf;
use crate::format::agi::Agi;
use crate::format::btree::alloc::{Bnobt, Cntbt};
use crate::format::btree::bmbt::Bmbt;
use crate::format::btree::ialloc::Inobt;
use crate::format::btree::refcount::Refcountbt;
use crate::format::btree::rmap::Rmapbt;
use crate::format::dinode::{BmdrRoot, Fork};
use crate::fs::{Filesystem, Inode};
use crate::types::{AgBlock, AgNumber, FsBlock};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use xfbtree::{BlockAddr, BlockStore, Btree, InlineRoot, KeyRange, NodeEntry, Root, StoreError};

/// Blocks kept by each store's cache.
const CACHE_BLOCKS: usize = 256;

/// Which blocks a store addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The blocks of one AG, by AG block number.
    Ag(AgNumber),
    /// Every filesystem block, by fsbno.
    Fs,
}

/// A cached block and, once some reader computed it, its checksum verdict.
struct Cached {
    bytes: Rc<[u8]>,
    checksum_ok: Option<bool>,
}

/// Hashes block numbers with one multiply. Every btree block read looks
/// here first (tens of millions of lookups in a check of a big
/// filesystem), and the default SipHash cost more than the rest of the
/// lookup. Flooding is not a concern: the cache never holds more than
/// [`CACHE_BLOCKS`] entries, so the worst case is a bounded probe.
#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Default)]
struct Cache {
    blocks: HashMap<u64, Cached, BuildHasherDefault<BlockHasher>>,
    order: VecDeque<u64>,
}

/// A read-only block store over an image.
pub struct ImageBlocks<'fs> {
    fs: &'fs Filesystem,
    space: Space,
    cache: RefCell<Cache>,
}

impl<'fs> ImageBlocks<'fs> {
    /// The blocks of `space` of `fs`.
    pub fn new(fs: &'fs Filesystem, space: Space) -> Self {
        Self {
            fs,
            space,
            cache: RefCell::new(Cache::default()),
        }
    }

    /// Which blocks this store addresses.
    pub fn space(&self) -> Space {
        self.space
    }

    fn daddr(&self, addr: BlockAddr) -> Option<crate::types::Daddr> {
        let geo = self.fs.geometry();
        match self.space {
            Space::Ag(agno) => {
                let agbno = u32::try_from(addr.0).ok()?;
                geo.agb_to_daddr(agno, AgBlock(agbno))
            }
            Space::Fs => geo.fsb_to_daddr(FsBlock(addr.0)),
        }
    }

    /// The block at `addr` and its remembered checksum verdict, if any.
    fn load(&self, addr: BlockAddr) -> std::result::Result<(Rc<[u8]>, Option<bool>), StoreError> {
        {
            let cache = self.cache.borrow_mut();
            if let Some(c) = cache.blocks.get(&addr.0) {
                return Ok((Rc::clone(&c.bytes), c.checksum_ok));
            }
        }
        let daddr = self.daddr(addr).ok_or(StoreError::OutOfRange(addr))?;
        let size = usize::try_from(self.fs.geometry().block_size).unwrap_or(4096);
        let mut buf = vec![0u8; size];
        self.fs
            .read_daddr(daddr, &mut buf)
            .map_err(|e| StoreError::Io {
                addr,
                source: Box::new(e),
            })?;
        let block: Rc<[u8]> = buf.into();
        let mut cache = self.cache.borrow_mut();
        if cache.order.len() >= CACHE_BLOCKS
            && let Some(old) = cache.order.pop_front()
        {
            cache.blocks.remove(&old);
        }
        let fresh = Cached {
            bytes: Rc::clone(&block),
            checksum_ok: None,
        };
        if cache.blocks.insert(addr.0, fresh).is_none() {
            cache.order.push_back(addr.0);
        }
        Ok((block, None))
    }

    /// Remembers the checksum verdict on the cached block at `addr`, if it
    /// is still the same block (`bytes`) in the cache.
    fn remember(&self, addr: BlockAddr, bytes: &Rc<[u8]>, ok: bool) {
        let mut cache = self.cache.borrow_mut();
        if let Some(c) = cache.blocks.get_mut(&addr.0)
            && Rc::ptr_eq(&c.bytes, bytes)
        {
            c.checksum_ok = Some(ok);
        }
    }
}

impl BlockStore for ImageBlocks<'_> {
    fn block_size(&self) -> usize {
        usize::try_from(self.fs.geometry().block_size).unwrap_or(4096)
    }

    fn contains(&self, addr: BlockAddr) -> bool {
        let geo = self.fs.geometry();
        match self.space {
            Space::Ag(agno) => {
                u32::try_from(addr.0).is_ok_and(|b| geo.verify_agbno(agno, AgBlock(b)))
            }
            Space::Fs => geo.verify_fsb_extent(FsBlock(addr.0), 1),
        }
    }

    fn capacity(&self) -> u64 {
        let geo = self.fs.geometry();
        match self.space {
            Space::Ag(agno) => u64::from(geo.ag_len(agno).unwrap_or(0)),
            Space::Fs => geo.dblocks,
        }
    }

    fn read<R>(
        &self,
        addr: BlockAddr,
        f: impl FnOnce(&[u8]) -> R,
    ) -> std::result::Result<R, StoreError> {
        let (block, _) = self.load(addr)?;
        Ok(f(&block))
    }

    fn read_verified<R>(
        &self,
        addr: BlockAddr,
        verify: impl FnOnce(&[u8]) -> bool,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> std::result::Result<R, StoreError> {
        let (block, known) = self.load(addr)?;
        let ok = match known {
            Some(ok) => ok,
            None => {
                let ok = verify(&block);
                self.remember(addr, &block, ok);
                ok
            }
        };
        Ok(f(&block, ok))
    }

    fn write<R>(
        &mut self,
        _addr: BlockAddr,
        _f: impl FnOnce(&mut [u8]) -> R,
    ) -> std::result::Result<R, StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn alloc(&mut self) -> std::result::Result<BlockAddr, StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn free(&mut self, _addr: BlockAddr) -> std::result::Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }
}

/// An AG btree as the engine opens it.
pub type AgBtree<'fs, F> = Btree<ImageBlocks<'fs>, F>;

impl Filesystem {
    /// The block store of AG `agno`.
    pub fn ag_blocks(&self, agno: AgNumber) -> ImageBlocks<'_> {
        ImageBlocks::new(self, Space::Ag(agno))
    }

    fn open_ag<F: xfbtree::BtreeFormat>(
        &self,
        agno: AgNumber,
        format: F,
        addr: u32,
        levels: u32,
    ) -> Result<AgBtree<'_, F>> {
        let root = Root::Block {
            addr: BlockAddr(u64::from(addr)),
            height: u16::try_from(levels).unwrap_or(u16::MAX),
        };
        Btree::open(self.ag_blocks(agno), format, root).map_err(|e| {
            crate::error::Error::Malformed {
                what: format!("{agno} btree"),
                reason: e.to_string(),
            }
        })
    }

    /// The bnobt of AG `agno`, rooted where `agf` says.
    pub fn bnobt(&self, agno: AgNumber, agf: &Agf) -> Result<AgBtree<'_, Bnobt>> {
        self.open_ag(
            agno,
            Bnobt::new(self.geometry(), agno),
            agf.bno_root,
            agf.bno_level,
        )
    }

    /// The cntbt of AG `agno`, rooted where `agf` says.
    pub fn cntbt(&self, agno: AgNumber, agf: &Agf) -> Result<AgBtree<'_, Cntbt>> {
        self.open_ag(
            agno,
            Cntbt::new(self.geometry(), agno),
            agf.cnt_root,
            agf.cnt_level,
        )
    }

    /// The rmapbt of AG `agno`, rooted where `agf` says.
    pub fn rmapbt(&self, agno: AgNumber, agf: &Agf) -> Result<AgBtree<'_, Rmapbt>> {
        self.open_ag(
            agno,
            Rmapbt::new(self.geometry(), agno),
            agf.rmap_root,
            agf.rmap_level,
        )
    }

    /// The refcountbt of AG `agno`, rooted where `agf` says.
    pub fn refcountbt(&self, agno: AgNumber, agf: &Agf) -> Result<AgBtree<'_, Refcountbt>> {
        self.open_ag(
            agno,
            Refcountbt::new(self.geometry(), agno),
            agf.refcount_root,
            agf.refcount_level,
        )
    }

    /// The inobt of AG `agno`, rooted where `agi` says.
    pub fn inobt(&self, agno: AgNumber, agi: &Agi) -> Result<AgBtree<'_, Inobt>> {
        self.open_ag(
            agno,
            Inobt::all_chunks(self.geometry(), agno),
            agi.root,
            agi.level,
        )
    }

    /// The finobt of AG `agno`, rooted where `agi` says.
    pub fn finobt(&self, agno: AgNumber, agi: &Agi) -> Result<AgBtree<'_, Inobt>> {
        self.open_ag(
            agno,
            Inobt::free_chunks(self.geometry(), agno),
            agi.free_root,
            agi.free_level,
        )
    }

    /// The bmbt of `fork` of `inode`, whose root is `root` (decoded from the
    /// fork). Its blocks are addressed by fsbno.
    pub fn bmbt(
        &self,
        inode: &Inode,
        fork: Fork,
        root: &BmdrRoot,
    ) -> Result<Btree<ImageBlocks<'_>, Bmbt>> {
        let entries = root
            .keys
            .iter()
            .zip(&root.ptrs)
            .map(|(k, p)| NodeEntry {
                range: KeyRange { low: *k, high: *k },
                ptr: BlockAddr(*p),
            })
            .collect();
        let root = Root::Inline(InlineRoot {
            level: root.level,
            entries,
        });
        Btree::open(
            ImageBlocks::new(self, Space::Fs),
            Bmbt::new(self.geometry(), inode.ino.0, fork),
            root,
        )
        .map_err(|e| crate::error::Error::Malformed {
            what: format!("{} {fork} bmbt", inode.ino),
            reason: e.to_string(),
        })
    }
}
