//! A block store in pageable staging memory: the home of staging btrees.

use crate::store::{BlockAddr, BlockStore, StoreError};
use xfile::{MemoryBudget, XFile, XFileOptions};

/// Blocks kept in an [`XFile`]: resident while the shared budget allows,
/// spilled to the file's private backing store beyond it.
///
/// Blocks are numbered from 0 in allocation order; freed blocks are
/// discarded (their memory and disk space returned) and reused first. The
/// block size is any power of two from 64 bytes: blocks smaller than the
/// 4 KiB minimum page share pages, larger blocks get pages of their size.
pub struct XfileStore {
    file: XFile,
    block_size: usize,
    page_size: usize,
    next: u64,
    free: Vec<u64>,
}

impl XfileStore {
    /// A store of `block_size`-byte blocks named `name`, staged under
    /// `budget`. `block_size` must be a power of two of at least 64 bytes.
    pub fn new(name: &str, budget: &MemoryBudget, block_size: usize) -> Result<Self, StoreError> {
        if !block_size.is_power_of_two() || block_size < 64 {
            return Err(StoreError::BadBlockSize(block_size));
        }
        let page_size = block_size.max(4096);
        let opts = XFileOptions {
            page_size,
            ..XFileOptions::default()
        };
        Ok(Self {
            file: XFile::with_options(name, budget, opts)?,
            block_size,
            page_size,
            next: 0,
            free: Vec::new(),
        })
    }

    /// The staging file (for its statistics).
    pub fn file(&self) -> &XFile {
        &self.file
    }

    /// Blocks allocated and not freed.
    pub fn allocated(&self) -> u64 {
        self.next - self.free.len() as u64
    }

    /// The page and the byte range inside it of block `addr`.
    fn locate(&self, addr: BlockAddr) -> Result<(u64, std::ops::Range<usize>), StoreError> {
        if addr.0 >= self.next {
            return Err(StoreError::OutOfRange(addr));
        }
        let byte = addr
            .0
            .checked_mul(self.block_size as u64)
            .ok_or(StoreError::OutOfRange(addr))?;
        let page = byte / self.page_size as u64;
        let off = (byte % self.page_size as u64) as usize;
        Ok((page, off..off + self.block_size))
    }
}

impl BlockStore for XfileStore {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn contains(&self, addr: BlockAddr) -> bool {
        addr.0 < self.next
    }

    fn capacity(&self) -> u64 {
        self.next
    }

    fn read<R>(&self, addr: BlockAddr, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError> {
        let (page, range) = self.locate(addr)?;
        Ok(self.file.with_page(page, |p| f(&p[range]))?)
    }

    fn write<R>(
        &mut self,
        addr: BlockAddr,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, StoreError> {
        let (page, range) = self.locate(addr)?;
        Ok(self.file.with_page_mut(page, |p| f(&mut p[range]))?)
    }

    fn alloc(&mut self) -> Result<BlockAddr, StoreError> {
        let addr = match self.free.pop() {
            Some(a) => a,
            None => {
                let a = self.next;
                self.next = a.checked_add(1).ok_or(StoreError::NoSpace)?;
                a
            }
        };
        Ok(BlockAddr(addr))
    }

    fn free(&mut self, addr: BlockAddr) -> Result<(), StoreError> {
        let (page, range) = self.locate(addr)?;
        let start = page * self.page_size as u64 + range.start as u64;
        self.file.discard(start..start + self.block_size as u64)?;
        self.free.push(addr.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::U64Map;
    use crate::{Btree, Lookup};

    #[test]
    fn small_blocks_share_pages_and_freed_blocks_are_zeroed_and_reused() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = XfileStore::new("t", &budget, 128).unwrap();
        let a = s.alloc().unwrap();
        let b = s.alloc().unwrap();
        s.write(a, |x| x.fill(1)).unwrap();
        s.write(b, |x| x.fill(2)).unwrap();
        assert!(s.read(a, |x| x.iter().all(|v| *v == 1)).unwrap());
        s.free(a).unwrap();
        assert_eq!(s.read(b, |x| x[0]).unwrap(), 2, "neighbour untouched");
        assert_eq!(s.alloc().unwrap(), a);
        assert!(s.read(a, |x| x.iter().all(|v| *v == 0)).unwrap());
        assert!(matches!(
            s.read(BlockAddr(9), |_| ()),
            Err(StoreError::OutOfRange(_))
        ));
        assert!(XfileStore::new("t", &budget, 100).is_err());
    }

    #[test]
    fn a_staging_tree_works() {
        let budget = MemoryBudget::new(1 << 20);
        let store = XfileStore::new("tree", &budget, 4096).unwrap();
        let mut t = Btree::create(store, U64Map::default()).unwrap();
        for k in (0..20_000u64).rev() {
            t.insert(&(k, k + 1)).unwrap();
        }
        assert_eq!(t.lookup(&5000, Lookup::Eq).unwrap(), Some((5000, 5001)));
        assert_eq!(t.len().unwrap(), 20_000);
        assert!(t.store().file().stats().resident_bytes <= 1 << 20);
    }
}
