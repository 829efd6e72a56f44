//! Block stores: where a tree's blocks live.
//!
//! The engine never owns memory or does I/O itself; it asks a [`BlockStore`]
//! for short-term access to one block at a time. A store may be plain memory
//! ([`MemStore`]), pageable staging memory ([`crate::XfileStore`]) or a region
//! of a filesystem image (implemented by the filesystem crate).

use std::fmt;

/// The address of one block inside a store.
///
/// What the number means is up to the store and the format: an AG block
/// number, a filesystem block number, a page index. The engine only compares
/// addresses and hands them back to the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockAddr(pub u64);

impl fmt::Debug for BlockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for BlockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a store could not give access to a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The address is not one this store can hold.
    #[error("block {0} is outside the store")]
    OutOfRange(BlockAddr),
    /// The store is read-only (an on-disk tree opened for checking).
    #[error("the block store is read-only")]
    ReadOnly,
    /// No block could be allocated.
    #[error("no free block left in the store")]
    NoSpace,
    /// The store cannot use blocks of this size.
    #[error("unusable block size {0}")]
    BadBlockSize(usize),
    /// The staging memory behind the store failed (I/O, disk full, budget).
    #[error(transparent)]
    Staging(#[from] xfile::StagingError),
    /// Any other failure of the underlying medium.
    #[error("block {addr}: {source}")]
    Io {
        /// The block being accessed.
        addr: BlockAddr,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Storage for fixed-size blocks.
///
/// Access is through closures so that a store can hand out its own buffer
/// (a resident page, a cached disk block) without copying it. A closure must
/// not call back into the same store.
pub trait BlockStore {
    /// Size of every block in bytes.
    fn block_size(&self) -> usize;

    /// Whether `addr` names a block this store can hold. A tree pointer for
    /// which this is false is corruption, never an access.
    fn contains(&self, addr: BlockAddr) -> bool;

    /// An upper bound on the number of distinct blocks the store holds; walks
    /// over untrusted pointers use it to bound their work.
    fn capacity(&self) -> u64;

    /// Runs `f` on the contents of block `addr`.
    fn read<R>(&self, addr: BlockAddr, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError>;

    /// Runs `f` on the contents of block `addr` together with `verify`'s
    /// verdict on them (the engine passes its checksum check).
    ///
    /// A store whose blocks cannot change under it (a read-only cache of a
    /// disk image) may remember the verdict with the cached block and skip
    /// `verify` on later reads of the same block: checksumming every block
    /// of every lookup path again is most of the cost of repeated
    /// cross-reference queries. Every format a store serves must then agree
    /// on what the verdict is for given bytes (e.g. one checksum layout per
    /// store). The default calls `verify` every time.
    fn read_verified<R>(
        &self,
        addr: BlockAddr,
        verify: impl FnOnce(&[u8]) -> bool,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<R, StoreError> {
        self.read(addr, |b| {
            let ok = verify(b);
            f(b, ok)
        })
    }

    /// Runs `f` on the contents of block `addr` and keeps its changes.
    fn write<R>(
        &mut self,
        addr: BlockAddr,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, StoreError>;

    /// Allocates a block. Its contents are unspecified until written.
    fn alloc(&mut self) -> Result<BlockAddr, StoreError>;

    /// Returns a block to the store.
    fn free(&mut self, addr: BlockAddr) -> Result<(), StoreError>;
}

impl<S: BlockStore + ?Sized> BlockStore for &mut S {
    fn block_size(&self) -> usize {
        (**self).block_size()
    }
    fn contains(&self, addr: BlockAddr) -> bool {
        (**self).contains(addr)
    }
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn read<R>(&self, addr: BlockAddr, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError> {
        (**self).read(addr, f)
    }
    fn read_verified<R>(
        &self,
        addr: BlockAddr,
        verify: impl FnOnce(&[u8]) -> bool,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<R, StoreError> {
        (**self).read_verified(addr, verify, f)
    }
    fn write<R>(
        &mut self,
        addr: BlockAddr,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, StoreError> {
        (**self).write(addr, f)
    }
    fn alloc(&mut self) -> Result<BlockAddr, StoreError> {
        (**self).alloc()
    }
    fn free(&mut self, addr: BlockAddr) -> Result<(), StoreError> {
        (**self).free(addr)
    }
}

/// A store in plain process memory, for tests and small trees.
///
/// Freed blocks are reused before the store grows. An optional block limit
/// makes allocation fail with [`StoreError::NoSpace`] once reached.
#[derive(Debug, Clone)]
pub struct MemStore {
    block_size: usize,
    blocks: Vec<Option<Box<[u8]>>>,
    free: Vec<u64>,
    limit: Option<u64>,
}

impl MemStore {
    /// An empty store of `block_size`-byte blocks.
    pub fn new(block_size: usize) -> Self {
        Self {
            block_size,
            blocks: Vec::new(),
            free: Vec::new(),
            limit: None,
        }
    }

    /// An empty store that refuses to hold more than `max_blocks` blocks.
    pub fn with_limit(block_size: usize, max_blocks: u64) -> Self {
        Self {
            limit: Some(max_blocks),
            ..Self::new(block_size)
        }
    }

    /// Number of blocks currently allocated.
    pub fn allocated(&self) -> u64 {
        self.blocks.iter().filter(|b| b.is_some()).count() as u64
    }

    /// Overwrites raw bytes of a block: for tests that damage trees on purpose.
    pub fn poke(&mut self, addr: BlockAddr, offset: usize, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(addr, |b| {
            let end = offset.saturating_add(bytes.len()).min(b.len());
            let n = end.saturating_sub(offset);
            if let (Some(dst), Some(src)) = (b.get_mut(offset..end), bytes.get(..n)) {
                dst.copy_from_slice(src);
            }
        })
    }

    fn slot(&self, addr: BlockAddr) -> Option<&[u8]> {
        usize::try_from(addr.0)
            .ok()
            .and_then(|i| self.blocks.get(i))
            .and_then(|b| b.as_deref())
    }
}

impl BlockStore for MemStore {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn contains(&self, addr: BlockAddr) -> bool {
        self.slot(addr).is_some()
    }

    fn capacity(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn read<R>(&self, addr: BlockAddr, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError> {
        self.slot(addr).map(f).ok_or(StoreError::OutOfRange(addr))
    }

    fn write<R>(
        &mut self,
        addr: BlockAddr,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, StoreError> {
        usize::try_from(addr.0)
            .ok()
            .and_then(|i| self.blocks.get_mut(i))
            .and_then(|b| b.as_deref_mut())
            .map(f)
            .ok_or(StoreError::OutOfRange(addr))
    }

    fn alloc(&mut self) -> Result<BlockAddr, StoreError> {
        if let Some(a) = self.free.pop() {
            if let Some(slot) = usize::try_from(a).ok().and_then(|i| self.blocks.get_mut(i)) {
                *slot = Some(vec![0; self.block_size].into_boxed_slice());
            }
            return Ok(BlockAddr(a));
        }
        let next = self.blocks.len() as u64;
        if self.limit.is_some_and(|l| next >= l) {
            return Err(StoreError::NoSpace);
        }
        self.blocks
            .push(Some(vec![0; self.block_size].into_boxed_slice()));
        Ok(BlockAddr(next))
    }

    fn free(&mut self, addr: BlockAddr) -> Result<(), StoreError> {
        let slot = usize::try_from(addr.0)
            .ok()
            .and_then(|i| self.blocks.get_mut(i))
            .filter(|b| b.is_some())
            .ok_or(StoreError::OutOfRange(addr))?;
        *slot = None;
        self.free.push(addr.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_reuses_freed_blocks_and_honours_limit() {
        let mut s = MemStore::with_limit(64, 2);
        let a = s.alloc().unwrap();
        let b = s.alloc().unwrap();
        assert!(matches!(s.alloc(), Err(StoreError::NoSpace)));
        s.write(a, |buf| buf[0] = 7).unwrap();
        assert_eq!(s.read(a, |buf| buf[0]).unwrap(), 7);
        s.free(a).unwrap();
        assert!(!s.contains(a));
        assert!(matches!(s.read(a, |_| ()), Err(StoreError::OutOfRange(_))));
        assert!(s.free(a).is_err(), "double free is refused");
        let c = s.alloc().unwrap();
        assert_eq!(c, a);
        assert_eq!(
            s.read(c, |buf| buf[0]).unwrap(),
            0,
            "reused blocks are zeroed"
        );
        assert!(s.contains(b));
        assert_eq!(s.allocated(), 2);
    }
}
