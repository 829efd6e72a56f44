//! [`XFile`]: a sparse, byte-addressable staging file with a page cache
//! charged to a [`MemoryBudget`].

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut, Range};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};

use crate::Record;
use crate::backing::Backing;
use crate::budget::{Counters, MemoryBudget, Reservation, Shrinker, Shrunk, StagingStats};
use crate::error::StagingError;

const RELAXED: Ordering = Ordering::Relaxed;

/// How often `acquire` retries eviction and shrinking before it gives up on
/// caching the page.
const MAX_ACQUIRE_ROUNDS: usize = 8;
/// How many dirty victims may fail to write back in one eviction attempt
/// before the error is reported (a full filesystem fails every one).
const MAX_WRITEBACK_FAILURES: usize = 2;

/// Creation options of an [`XFile`].
#[derive(Clone, Debug)]
pub struct XFileOptions {
    /// Size of a cached page in bytes: a power of two, at least 4096 and at
    /// most 16 MiB. Default 65536.
    pub page_size: usize,
    /// Most page leases that may be held on the file at once. Default 64.
    pub max_leases: usize,
    /// Directory for the backing file. Default: `$SCRUBD_TMPDIR` if set,
    /// else the system temporary directory.
    pub tmpdir: Option<PathBuf>,
}

impl Default for XFileOptions {
    fn default() -> Self {
        XFileOptions {
            page_size: 65536,
            max_leases: 64,
            tmpdir: None,
        }
    }
}

/// A sparse, byte-addressable staging file. Bytes live in cached pages
/// charged to a shared [`MemoryBudget`] and spill to a private unlinked
/// temporary file when the budget is full. Never-written bytes read as
/// zeros. See the crate documentation for the memory and locking model.
pub struct XFile {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    page_size: usize,
    shift: u32,
    max_leases: usize,
    /// Offsets at or past this are beyond what the structure can address.
    max_len: u64,
    backing: Backing,
    budget: MemoryBudget,
    counters: Arc<Counters>,
    /// Id in the budget's registry.
    id: u64,
    map: Mutex<PageMap>,
    /// 1 + highest byte written (or the length set by `truncate`).
    len: AtomicU64,
    /// Every byte of the backing file at or past this offset is known to be
    /// zero, so pages there are filled without a read. Raised before every
    /// write to the file, lowered only by `truncate`.
    extent: AtomicU64,
    leases: AtomicUsize,
}

struct PageMap {
    pages: BTreeMap<u64, Arc<Page>>,
    /// The clock hand: the next page index the eviction scan looks at.
    hand: u64,
}

/// A cached page.
///
/// Lock rules: `pins` is only raised while the map lock is held, so a page
/// seen with `pins == 0` under the map lock is not in use and nobody holds
/// its data lock. The map lock is never held while blocking on another
/// lock (only `try_*` on page locks; the budget's
/// charge lock is a leaf), which is what makes nested access and
/// cross-file shrinking deadlock-free. It is held across system calls on
/// the backing file only for uncached I/O and hole punching.
struct Page {
    pins: AtomicUsize,
    referenced: AtomicBool,
    /// Changed only with the data lock held: set for writing, cleared by
    /// write-back (read lock) or discard (write lock). Read without the
    /// lock by the seek functions and eviction's first look.
    dirty: AtomicBool,
    data: RwLock<PageData>,
}

struct PageData {
    buf: Box<[u8]>,
    /// False while the page is being filled and forever if filling failed
    /// (the page is then no longer in the map; whoever sees it retries).
    valid: bool,
}

/// A pinned page: unpinned on drop.
struct Pin {
    page: Arc<Page>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.page.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Fill<'s> {
    /// Fill the new page from the backing file.
    Read,
    /// Like `Read`, but the caller only copies bytes out: a page that is
    /// neither cached nor in the backing file is all zeros and need not be
    /// cached at all (`Acquired::Hole`).
    ReadOnly,
    /// The caller overwrites the whole page with these bytes.
    Overwrite(&'s [u8]),
}

/// Outcome of one eviction attempt.
enum Victim {
    /// A page was evicted; its buffer, still charged to the budget.
    Freed(Box<[u8]>),
    /// Every cached page is pinned (or there are none).
    Nothing,
    /// (Shrinking only.) The map lock was taken; nothing was tried.
    Busy,
}

enum Acquired<'a> {
    /// The page is cached and pinned; `filled` says the `Overwrite` bytes
    /// were already copied into it.
    Cached { pin: Pin, filled: bool },
    /// No memory: the page is not cached, and stays so while this map guard
    /// is held. The caller does its I/O on the backing file.
    Direct(#[allow(dead_code)] MutexGuard<'a, PageMap>),
    /// (`Fill::ReadOnly` only.) The page was never written back and is not
    /// cached: it reads as zeros.
    Hole,
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl XFile {
    /// Create an empty staging file with default options.
    pub fn create(name: &str, budget: &MemoryBudget) -> Result<Self, StagingError> {
        Self::with_options(name, budget, XFileOptions::default())
    }

    /// Create an empty staging file.
    pub fn with_options(
        name: &str,
        budget: &MemoryBudget,
        opts: XFileOptions,
    ) -> Result<Self, StagingError> {
        let ps = opts.page_size;
        if !ps.is_power_of_two() || !(4096..=1 << 24).contains(&ps) {
            return Err(StagingError::InvalidOptions {
                reason: format!("page size {ps} is not a power of two between 4096 and 16 MiB"),
            });
        }
        let dir = match opts.tmpdir {
            Some(d) => d,
            None => std::env::var_os("SCRUBD_TMPDIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        };
        let backing = Backing::create(&dir)
            .map_err(|e| StagingError::from_io(name, &dir, "create the backing file", e))?;
        let counters = Arc::new(Counters::new(name));
        let ps64 = ps as u64;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let shrinker: Weak<dyn Shrinker> = weak.clone();
            let id = budget.register(Arc::clone(&counters), shrinker);
            Inner {
                page_size: ps,
                shift: ps.trailing_zeros(),
                max_leases: opts.max_leases,
                // pread/pwrite offsets are signed 64-bit.
                max_len: (i64::MAX as u64) & !(ps64 - 1),
                backing,
                budget: budget.clone(),
                counters,
                id,
                map: Mutex::new(PageMap {
                    pages: BTreeMap::new(),
                    hand: 0,
                }),
                len: AtomicU64::new(0),
                extent: AtomicU64::new(0),
                leases: AtomicUsize::new(0),
            }
        });
        Ok(XFile { inner })
    }

    /// The name given at creation (used in statistics and errors).
    pub fn name(&self) -> &str {
        &self.inner.counters.name
    }

    /// Size of a page in bytes.
    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// The budget this file charges its pages to.
    pub fn budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// Largest length the file can have: offsets are signed 64-bit in the
    /// system calls, rounded down to a page.
    pub fn max_len(&self) -> u64 {
        self.inner.max_len
    }

    /// Fill `buf` with the bytes at `offset`. Bytes never written (or
    /// discarded, or past [`XFile::len`]) read as zeros. Works with any
    /// budget, including 0: without memory it reads the backing file
    /// directly.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StagingError> {
        self.inner.read_at(buf, offset)
    }

    /// Write `buf` at `offset`, growing [`XFile::len`] as needed. Works with
    /// any budget, including 0: without memory it writes the backing file
    /// directly.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), StagingError> {
        self.inner.write_at(buf, offset, true)
    }

    /// Read one record at a byte offset.
    pub fn load<T: Record>(&self, offset: u64) -> Result<T, StagingError> {
        let mut v = T::new_zeroed();
        self.read_at(v.as_mut_bytes(), offset)?;
        Ok(v)
    }

    /// Write one record at a byte offset.
    pub fn store<T: Record>(&self, offset: u64, value: &T) -> Result<(), StagingError> {
        self.write_at(value.as_bytes(), offset)
    }

    /// Make `range` read as zeros and free its memory: whole pages in the
    /// range are dropped from the cache and punched out of the backing file,
    /// partial pages at the ends are zeroed. Does not change
    /// [`XFile::len`]. A page of the range that is leased or being accessed
    /// is zeroed in place (so a caller must not discard a page it is
    /// accessing in the same thread: that deadlocks).
    pub fn discard(&self, range: Range<u64>) -> Result<(), StagingError> {
        self.inner
            .check_range(range.start, range.end.saturating_sub(range.start))?;
        self.inner.discard(range.start, range.end, false)
    }

    /// 1 + the highest byte ever written, or the length set by
    /// [`XFile::truncate`]. Mutable page access counts the whole page.
    pub fn len(&self) -> u64 {
        self.inner.len.load(Ordering::Acquire)
    }

    /// True if [`XFile::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Set the length. Shrinking discards everything from `len` on (same
    /// rules as [`XFile::discard`]); growing only changes the length (the
    /// new bytes read as zeros).
    pub fn truncate(&self, len: u64) -> Result<(), StagingError> {
        self.inner.check_range(len, 0)?;
        let old = self.len();
        if len < old {
            self.inner.discard(len, self.inner.max_len, true)?;
        }
        self.inner.len.store(len, Ordering::Release);
        Ok(())
    }

    /// First offset at or after `from` that may hold data: in a dirty cached
    /// page or in a data extent of the backing file. `None` if everything
    /// from `from` on is known to read as zeros. Page granular for cached
    /// pages, filesystem-block granular for the backing file; a region
    /// reported as data may still read as zeros.
    pub fn seek_data(&self, from: u64) -> Result<Option<u64>, StagingError> {
        self.inner.seek_data(from)
    }

    /// First offset at or after `from` that is not data in the sense of
    /// [`XFile::seek_data`]. [`XFile::len`] (or `from`, if larger) always
    /// counts as a hole.
    pub fn seek_hole(&self, from: u64) -> Result<u64, StagingError> {
        self.inner.seek_hole(from)
    }

    /// The data regions at or after `from`, in order, found with
    /// [`XFile::seek_data`] and [`XFile::seek_hole`].
    pub fn data_ranges(&self, from: u64) -> DataRanges<'_> {
        DataRanges {
            file: self,
            pos: from,
            done: false,
        }
    }

    /// Run `f` on the contents of page `page` (bytes `page * page_size ..`)
    /// without copying. The page is pinned and read-locked while `f` runs,
    /// so keep `f` short. `f` may call other methods of this file for other
    /// pages. Fails with [`StagingError::BudgetExhausted`] if no memory can
    /// be had for the page.
    pub fn with_page<R>(&self, page: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, StagingError> {
        // One lock round per access on the hot path: the page's validity
        // (another thread may still be filling it) is checked under the
        // same lock the caller's closure runs under.
        loop {
            let pin = self.inner.pin_any(page)?;
            let data = read_lock(&pin.page.data);
            if data.valid {
                return Ok(f(&data.buf));
            }
        }
    }

    /// Like [`XFile::with_page`], for changing the page. The page is marked
    /// dirty, counts as one page of staged bytes, and [`XFile::len`] grows
    /// to the end of the page.
    pub fn with_page_mut<R>(
        &self,
        page: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, StagingError> {
        loop {
            let pin = self.inner.pin_any(page)?;
            let mut data = write_lock(&pin.page.data);
            if data.valid {
                self.inner.mark_page_written(&pin.page, page);
                return Ok(f(&mut data.buf));
            }
        }
    }

    /// Pin page `page` until the returned lease is dropped. Leased pages are
    /// never evicted. At most `max_leases` leases may be held at once; one
    /// more fails with [`StagingError::TooManyLeases`] at once.
    pub fn lease(&self, page: u64) -> Result<PageLease<'_>, StagingError> {
        let inner = &*self.inner;
        let max = inner.max_leases;
        if inner
            .leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(StagingError::TooManyLeases { limit: max });
        }
        match inner.pin_page(page) {
            Ok(pin) => {
                inner.counters.leases.fetch_add(1, RELAXED);
                Ok(PageLease {
                    file: self,
                    pin,
                    page,
                })
            }
            Err(e) => {
                inner.leases.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Add `delta` (may be negative) to the `records` figure of this file's
    /// statistics. Structures built on the file keep it equal to the number
    /// of records they hold.
    pub fn add_records(&self, delta: i64) {
        self.inner.counters.add_records(delta);
    }

    /// A snapshot of this file's statistics.
    pub fn stats(&self) -> StagingStats {
        self.inner.counters.snapshot()
    }

    /// Number of pages cached now.
    pub fn resident_pages(&self) -> usize {
        self.inner.lock_map().pages.len()
    }

    /// Write every dirty cached page that nobody is changing right now to
    /// the backing file. Pages stay cached, now clean.
    pub fn flush(&self) -> Result<(), StagingError> {
        self.inner.flush()
    }

    /// Flush, then drop every cached page that is not pinned, giving its
    /// memory back to the budget.
    pub fn drop_cache(&self) -> Result<(), StagingError> {
        self.inner.flush()?;
        self.inner.drop_clean_unpinned();
        Ok(())
    }

    /// Read from the backing file, bypassing the cache. Only for callers
    /// with exclusive access that called [`XFile::drop_cache`] first.
    pub(crate) fn read_uncached(&self, buf: &mut [u8], offset: u64) -> Result<(), StagingError> {
        self.inner.check_range(offset, buf.len() as u64)?;
        self.inner.direct_read(buf, offset)
    }

    /// Write to the backing file, bypassing the cache. Only for callers with
    /// exclusive access that called [`XFile::drop_cache`] first.
    pub(crate) fn write_uncached(&self, buf: &[u8], offset: u64) -> Result<(), StagingError> {
        let inner = &*self.inner;
        inner.check_range(offset, buf.len() as u64)?;
        inner.direct_write(buf, offset)?;
        inner
            .len
            .fetch_max(offset + buf.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Overwrite bytes through the cache without counting them as staged or
    /// growing the length (the sort rewriting records in place).
    pub(crate) fn rewrite_at(&self, buf: &[u8], offset: u64) -> Result<(), StagingError> {
        self.inner.write_at(buf, offset, false)
    }

    /// A new empty file on the same budget, page size and directory, for
    /// scratch space (the sort's second region).
    pub(crate) fn sibling(&self, suffix: &str) -> Result<XFile, StagingError> {
        let opts = XFileOptions {
            page_size: self.inner.page_size,
            max_leases: self.inner.max_leases,
            tmpdir: Some(self.inner.backing.dir().to_owned()),
        };
        XFile::with_options(
            &format!("{}{suffix}", self.name()),
            &self.inner.budget,
            opts,
        )
    }

    /// Reserve up to `max` (at least `min`) bytes of work memory charged to
    /// this file, shrinking other structures of the budget if needed and
    /// `shrink_others` allows.
    pub(crate) fn reserve(&self, max: u64, min: u64, shrink_others: bool) -> Option<Reservation> {
        let inner = &*self.inner;
        inner
            .budget
            .reserve(inner.id, &inner.counters, max, min, shrink_others)
    }

    pub(crate) fn budget_exhausted(&self, needed: u64) -> StagingError {
        self.inner.budget_exhausted(needed)
    }

    pub(crate) fn out_of_range(&self, what: &'static str, value: u64, limit: u64) -> StagingError {
        StagingError::OutOfRange {
            name: self.name().to_owned(),
            what,
            value,
            limit,
        }
    }
}

impl std::fmt::Debug for XFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XFile")
            .field("name", &self.name())
            .field("page_size", &self.page_size())
            .field("len", &self.len())
            .finish()
    }
}

impl Inner {
    fn lock_map(&self) -> MutexGuard<'_, PageMap> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ps(&self) -> u64 {
        self.page_size as u64
    }

    fn io_err(&self, op: &'static str, e: std::io::Error) -> StagingError {
        StagingError::from_io(&self.counters.name, self.backing.dir(), op, e)
    }

    fn budget_exhausted(&self, needed: u64) -> StagingError {
        StagingError::BudgetExhausted {
            name: self.counters.name.clone(),
            needed,
            limit: self.budget.limit(),
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), StagingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.max_len => Ok(()),
            _ => Err(StagingError::OutOfRange {
                name: self.counters.name.clone(),
                what: "byte offset",
                value: offset.saturating_add(len),
                limit: self.max_len,
            }),
        }
    }

    /// Get page `idx` cached and pinned, or (if `allow_direct` and no memory
    /// can be had) the map guard under which the page is known not to be
    /// cached.
    fn acquire(
        &self,
        idx: u64,
        fill: Fill<'_>,
        allow_direct: bool,
    ) -> Result<Acquired<'_>, StagingError> {
        let ps = self.ps();
        // A page buffer taken from one of our own evicted pages, still
        // charged to the budget.
        let mut spare: Option<Box<[u8]>> = None;
        let mut last_err: Option<StagingError> = None;
        let mut round = 0;
        loop {
            let mut map = self.lock_map();
            if let Some(page) = map.pages.get(&idx) {
                let page = Arc::clone(page);
                page.pins.fetch_add(1, Ordering::AcqRel);
                page.referenced.store(true, RELAXED);
                drop(map);
                if spare.take().is_some() {
                    self.budget.uncharge(ps, &self.counters);
                }
                return Ok(Acquired::Cached {
                    pin: Pin { page },
                    filled: false,
                });
            }
            if matches!(fill, Fill::ReadOnly)
                && idx << self.shift >= self.extent.load(Ordering::Acquire)
            {
                // Not cached, and the file has nothing there: zeros. (The
                // extent only grows under the map lock or for cached pages.)
                drop(map);
                if spare.take().is_some() {
                    self.budget.uncharge(ps, &self.counters);
                }
                return Ok(Acquired::Hole);
            }
            let buf = match spare.take() {
                Some(b) => Some(b),
                None if self.budget.try_charge(ps, &self.counters) => {
                    Some(vec![0u8; self.page_size].into_boxed_slice())
                }
                None => None,
            };
            if let Some(buf) = buf {
                let page = Arc::new(Page {
                    pins: AtomicUsize::new(1),
                    referenced: AtomicBool::new(true),
                    dirty: AtomicBool::new(false),
                    data: RwLock::new(PageData { buf, valid: false }),
                });
                let mut data = write_lock(&page.data);
                map.pages.insert(idx, Arc::clone(&page));
                drop(map);
                let filled = matches!(fill, Fill::Overwrite(_));
                match self.fill_page(idx, &mut data.buf, fill) {
                    Ok(()) => {
                        data.valid = true;
                        if filled {
                            page.dirty.store(true, Ordering::Release);
                        }
                        drop(data);
                        return Ok(Acquired::Cached {
                            pin: Pin { page },
                            filled,
                        });
                    }
                    Err(e) => {
                        drop(data);
                        let mut map = self.lock_map();
                        if map.pages.get(&idx).is_some_and(|p| Arc::ptr_eq(p, &page)) {
                            map.pages.remove(&idx);
                        }
                        drop(map);
                        self.budget.uncharge(ps, &self.counters);
                        page.pins.fetch_sub(1, Ordering::AcqRel);
                        return Err(e);
                    }
                }
            }
            drop(map);
            if round >= MAX_ACQUIRE_ROUNDS {
                break;
            }
            round += 1;
            match self.evict_one(false) {
                Ok(Victim::Freed(b)) => {
                    spare = Some(b);
                    continue;
                }
                Ok(Victim::Nothing | Victim::Busy) => {}
                Err(e) => last_err = Some(e),
            }
            let shrunk = self.budget.shrink_others(self.id, ps);
            if shrunk.freed > 0 {
                continue;
            }
            if shrunk.busy {
                // Another file has evictable pages but its lock is taken:
                // give it a moment rather than failing at once.
                std::thread::yield_now();
                continue;
            }
            break;
        }
        if allow_direct {
            let map = self.lock_map();
            if let Some(page) = map.pages.get(&idx) {
                // Cached meanwhile by another thread: use it.
                let page = Arc::clone(page);
                page.pins.fetch_add(1, Ordering::AcqRel);
                return Ok(Acquired::Cached {
                    pin: Pin { page },
                    filled: false,
                });
            }
            return Ok(Acquired::Direct(map));
        }
        Err(last_err.unwrap_or_else(|| self.budget_exhausted(ps)))
    }

    fn fill_page(&self, idx: u64, buf: &mut [u8], fill: Fill<'_>) -> Result<(), StagingError> {
        match fill {
            Fill::Overwrite(src) => buf.copy_from_slice(src),
            Fill::Read | Fill::ReadOnly => {
                let off = idx << self.shift;
                if off >= self.extent.load(Ordering::Acquire) {
                    buf.fill(0);
                } else {
                    self.backing
                        .read_at(buf, off)
                        .map_err(|e| self.io_err("read a page back from the backing file", e))?;
                    self.counters.page_ins.fetch_add(1, RELAXED);
                }
            }
        }
        Ok(())
    }

    /// Pin a cached, valid page for direct access.
    fn pin_page(&self, idx: u64) -> Result<Pin, StagingError> {
        loop {
            let pin = self.pin_any(idx)?;
            if read_lock(&pin.page.data).valid {
                return Ok(pin);
            }
        }
    }

    /// Pins page `idx` in the cache, filling it from the backing file if it
    /// was not cached. The page may still be being filled by another
    /// thread: callers check `valid` under the page's lock (and retry).
    fn pin_any(&self, idx: u64) -> Result<Pin, StagingError> {
        if idx >= self.max_len >> self.shift {
            return Err(StagingError::OutOfRange {
                name: self.counters.name.clone(),
                what: "page index",
                value: idx,
                limit: self.max_len >> self.shift,
            });
        }
        match self.acquire(idx, Fill::Read, false)? {
            Acquired::Cached { pin, .. } => Ok(pin),
            Acquired::Direct(_) | Acquired::Hole => Err(self.budget_exhausted(self.ps())),
        }
    }

    /// Bookkeeping for a mutable access to a whole page: call with the data
    /// lock held for writing.
    fn mark_page_written(&self, page: &Page, idx: u64) {
        page.dirty.store(true, Ordering::Release);
        let end = (idx + 1) << self.shift;
        self.len.fetch_max(end, Ordering::AcqRel);
        self.counters.staged.fetch_add(self.ps(), RELAXED);
    }

    /// Split `len` bytes at `offset` into per-page pieces: (file offset,
    /// offset in the page, range in the caller's buffer).
    fn pieces(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Iterator<Item = (u64, usize, Range<usize>)> + use<> {
        let ps = self.page_size;
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let pos = offset + done as u64;
            let in_page = (pos & (ps as u64 - 1)) as usize;
            let n = (ps - in_page).min(len - done);
            let piece = done..done + n;
            done += n;
            Some((pos, in_page, piece))
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StagingError> {
        self.check_range(offset, buf.len() as u64)?;
        for (pos, in_page, piece) in self.pieces(offset, buf.len()) {
            let n = piece.len();
            let out = &mut buf[piece];
            if pos >= self.len.load(Ordering::Acquire) {
                // Nothing at or past len holds data: every completed write
                // has raised it.
                out.fill(0);
                continue;
            }
            loop {
                match self.acquire(pos >> self.shift, Fill::ReadOnly, true)? {
                    Acquired::Cached { pin, .. } => {
                        let data = read_lock(&pin.page.data);
                        if !data.valid {
                            continue;
                        }
                        out.copy_from_slice(&data.buf[in_page..in_page + n]);
                        break;
                    }
                    Acquired::Direct(guard) => {
                        self.counters.direct_reads.fetch_add(1, RELAXED);
                        let r = self.direct_read(out, pos);
                        drop(guard);
                        r?;
                        break;
                    }
                    Acquired::Hole => {
                        out.fill(0);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `account`: count the bytes as staged and grow `len` (false for the
    /// zeroing done by `discard`).
    fn write_at(&self, buf: &[u8], offset: u64, account: bool) -> Result<(), StagingError> {
        self.check_range(offset, buf.len() as u64)?;
        for (pos, in_page, piece) in self.pieces(offset, buf.len()) {
            let n = piece.len();
            let src = &buf[piece];
            let fill = if n == self.page_size {
                Fill::Overwrite(src)
            } else {
                Fill::Read
            };
            let mut fill = Some(fill);
            loop {
                let f = fill.take().unwrap_or(Fill::Read);
                match self.acquire(pos >> self.shift, f, true)? {
                    Acquired::Cached { pin, filled } => {
                        if filled {
                            break;
                        }
                        let mut data = write_lock(&pin.page.data);
                        if !data.valid {
                            continue;
                        }
                        data.buf[in_page..in_page + n].copy_from_slice(src);
                        pin.page.dirty.store(true, Ordering::Release);
                        break;
                    }
                    Acquired::Direct(guard) => {
                        self.counters.direct_writes.fetch_add(1, RELAXED);
                        let r = self.direct_write(src, pos);
                        drop(guard);
                        r?;
                        break;
                    }
                    // Only answered to Fill::ReadOnly; were it ever seen
                    // here, the retry asks with Fill::Read.
                    Acquired::Hole => continue,
                }
            }
            if account {
                self.len.fetch_max(pos + n as u64, Ordering::AcqRel);
                self.counters.staged.fetch_add(n as u64, RELAXED);
            }
        }
        Ok(())
    }

    fn direct_read(&self, buf: &mut [u8], pos: u64) -> Result<(), StagingError> {
        if pos >= self.extent.load(Ordering::Acquire) {
            buf.fill(0);
            return Ok(());
        }
        self.backing
            .read_at(buf, pos)
            .map_err(|e| self.io_err("read the backing file", e))
    }

    fn direct_write(&self, buf: &[u8], pos: u64) -> Result<(), StagingError> {
        // Raise the extent first: a failed write may have left bytes behind.
        self.extent
            .fetch_max(pos + buf.len() as u64, Ordering::AcqRel);
        self.backing
            .write_at(buf, pos)
            .map_err(|e| self.io_err("write the backing file", e))?;
        self.counters.spilled.fetch_add(buf.len() as u64, RELAXED);
        Ok(())
    }

    /// Write a page's bytes to the backing file; the caller holds its data
    /// lock and a pin. On failure the page stays dirty.
    fn write_back(&self, idx: u64, page: &Page, data: &PageData) -> Result<(), StagingError> {
        if !page.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let off = idx << self.shift;
        self.extent.fetch_max(off + self.ps(), Ordering::AcqRel);
        match self.backing.write_at(&data.buf, off) {
            Ok(()) => {
                self.counters.spilled.fetch_add(self.ps(), RELAXED);
                Ok(())
            }
            Err(e) => {
                page.dirty.store(true, Ordering::Release);
                Err(self.io_err("write back a page", e))
            }
        }
    }

    /// Evict one unpinned page with the clock algorithm, writing it back if
    /// dirty. Returns its buffer, still charged to the budget. `shrinking`:
    /// called on behalf of another file, so only try the map lock.
    fn evict_one(&self, shrinking: bool) -> Result<Victim, StagingError> {
        let mut failures = 0;
        let mut last_err = None;
        for _ in 0..MAX_ACQUIRE_ROUNDS {
            let mut map = if shrinking {
                match self.map.try_lock() {
                    Ok(m) => m,
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return Ok(Victim::Busy),
                }
            } else {
                self.lock_map()
            };
            let Some((idx, victim)) = Self::clock_pick(&mut map) else {
                return match last_err {
                    Some(e) => Err(e),
                    None => Ok(Victim::Nothing),
                };
            };
            // pins was 0 under the map lock: nobody holds the data lock.
            let Ok(data) = victim.data.try_read() else {
                victim.pins.fetch_sub(1, Ordering::AcqRel);
                continue;
            };
            if !victim.dirty.load(Ordering::Acquire) {
                // Clean: drop it right away, still under the map lock.
                drop(data);
                map.pages.remove(&idx);
                drop(map);
                return Ok(Victim::Freed(self.take_evicted(&victim)));
            }
            drop(map);
            let wb = self.write_back(idx, &victim, &data);
            drop(data);
            if let Err(e) = wb {
                victim.pins.fetch_sub(1, Ordering::AcqRel);
                last_err = Some(e);
                failures += 1;
                if failures >= MAX_WRITEBACK_FAILURES {
                    break;
                }
                continue;
            }
            let mut map = self.lock_map();
            // Evict only if nobody pinned or dirtied it meanwhile.
            if victim.pins.load(Ordering::Acquire) == 1 && !victim.dirty.load(Ordering::Acquire) {
                map.pages.remove(&idx);
                drop(map);
                return Ok(Victim::Freed(self.take_evicted(&victim)));
            }
            drop(map);
            victim.pins.fetch_sub(1, Ordering::AcqRel);
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(Victim::Nothing),
        }
    }

    /// Choose a victim: unpinned, not referenced since the hand last passed.
    /// Pins it before returning.
    fn clock_pick(map: &mut PageMap) -> Option<(u64, Arc<Page>)> {
        let n = map.pages.len();
        if n == 0 {
            return None;
        }
        let hand = map.hand;
        let mut found = None;
        // Two sweeps: the first may only clear reference bits.
        'sweep: for _ in 0..2 {
            for (&idx, page) in map.pages.range(hand..).chain(map.pages.range(..hand)) {
                if page.pins.load(Ordering::Acquire) != 0 {
                    continue;
                }
                if page.referenced.swap(false, RELAXED) {
                    continue;
                }
                found = Some((idx, Arc::clone(page)));
                break 'sweep;
            }
        }
        let (idx, page) = found?;
        page.pins.fetch_add(1, Ordering::AcqRel);
        map.hand = idx.wrapping_add(1);
        Some((idx, page))
    }

    /// Take the buffer out of a page just removed from the map (we hold the
    /// only pin).
    fn take_evicted(&self, victim: &Arc<Page>) -> Box<[u8]> {
        let buf = std::mem::take(&mut write_lock(&victim.data).buf);
        victim.pins.fetch_sub(1, Ordering::AcqRel);
        self.counters.evictions.fetch_add(1, RELAXED);
        buf
    }

    fn flush(&self) -> Result<(), StagingError> {
        let dirty: Vec<(u64, Arc<Page>)> = {
            let map = self.lock_map();
            map.pages
                .iter()
                .filter(|(_, p)| p.dirty.load(Ordering::Acquire))
                .map(|(&i, p)| {
                    p.pins.fetch_add(1, Ordering::AcqRel);
                    (i, Arc::clone(p))
                })
                .collect()
        };
        let mut result = Ok(());
        for (idx, page) in dirty {
            let pin = Pin { page };
            // Skip pages somebody is changing right now (possibly the caller).
            if let Ok(data) = pin.page.data.try_read()
                && data.valid
                && let Err(e) = self.write_back(idx, &pin.page, &data)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    fn drop_clean_unpinned(&self) {
        let mut map = self.lock_map();
        let victims: Vec<u64> = map
            .pages
            .iter()
            .filter(|(_, p)| {
                p.pins.load(Ordering::Acquire) == 0 && !p.dirty.load(Ordering::Acquire)
            })
            .map(|(&i, _)| i)
            .collect();
        for idx in victims {
            map.pages.remove(&idx);
            self.budget.uncharge(self.ps(), &self.counters);
        }
    }

    /// Zero `[start, end)`; with `truncating`, also cut the backing file at
    /// the first whole page of the range (`end` is then ignored).
    fn discard(&self, start: u64, end: u64, truncating: bool) -> Result<(), StagingError> {
        let ps = self.ps();
        let len = self.len.load(Ordering::Acquire);
        // Nothing at or past len was ever written.
        let zero_end = end.min(len);
        let first_full = start.div_ceil(ps) * ps;
        let last_full = if truncating {
            self.max_len
        } else {
            end / ps * ps
        };
        if first_full >= last_full {
            return self.zero_bytes(start, zero_end);
        }
        self.zero_bytes(start, first_full.min(zero_end))?;
        self.zero_bytes(last_full.max(start), zero_end)?;

        let (first_page, last_page) = (first_full >> self.shift, last_full >> self.shift);
        let mut map = self.lock_map();
        // Punch first, under the map lock, so no page-in can read the old
        // bytes; if it fails, nothing has changed.
        let r = if truncating {
            self.backing.set_len(first_full)
        } else {
            self.backing.punch(first_full, last_full - first_full)
        };
        r.map_err(|e| self.io_err("punch a hole in the backing file", e))?;
        let in_range: Vec<u64> = map
            .pages
            .range(first_page..last_page)
            .map(|(&i, _)| i)
            .collect();
        let mut pinned = Vec::new();
        for idx in in_range {
            let Some(page) = map.pages.get(&idx) else {
                continue;
            };
            if page.pins.load(Ordering::Acquire) == 0 {
                map.pages.remove(&idx);
                self.budget.uncharge(ps, &self.counters);
            } else {
                page.pins.fetch_add(1, Ordering::AcqRel);
                pinned.push((
                    idx,
                    Pin {
                        page: Arc::clone(page),
                    },
                ));
            }
        }
        if truncating && pinned.is_empty() {
            self.extent.fetch_min(first_full, Ordering::AcqRel);
        }
        drop(map);
        // Pages in use are zeroed in place. A write-back of the old bytes may
        // have raced with the punch, so punch again while holding the lock.
        let mut result = Ok(());
        for (idx, pin) in pinned {
            let mut data = write_lock(&pin.page.data);
            data.buf.fill(0);
            let off = idx << self.shift;
            if self.backing.punch(off, ps).is_ok() {
                pin.page.dirty.store(false, Ordering::Release);
            } else {
                // The zeros reach the file on write-back instead.
                pin.page.dirty.store(true, Ordering::Release);
                if result.is_ok() {
                    result = Err(self.io_err(
                        "punch a hole in the backing file",
                        std::io::Error::other("punch failed"),
                    ));
                }
            }
        }
        result
    }

    fn zero_bytes(&self, start: u64, end: u64) -> Result<(), StagingError> {
        if start >= end {
            return Ok(());
        }
        let zeros = vec![0u8; (end - start).min(self.ps()) as usize];
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(zeros.len() as u64);
            self.write_at(&zeros[..n as usize], pos, false)?;
            pos += n;
        }
        Ok(())
    }

    fn seek_data(&self, from: u64) -> Result<Option<u64>, StagingError> {
        let len = self.len.load(Ordering::Acquire);
        if from >= len {
            return Ok(None);
        }
        let cached = {
            let map = self.lock_map();
            map.pages
                .range(from >> self.shift..)
                .find(|(_, p)| p.dirty.load(Ordering::Acquire))
                .map(|(&i, _)| (i << self.shift).max(from))
        };
        let in_file = self
            .backing
            .seek_data(from)
            .map_err(|e| self.io_err("seek data in the backing file", e))?;
        let best = match (cached, in_file) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(best.filter(|&p| p < len))
    }

    fn seek_hole(&self, from: u64) -> Result<u64, StagingError> {
        let len = self.len.load(Ordering::Acquire);
        if from >= len {
            return Ok(from);
        }
        let mut pos = from;
        loop {
            if pos >= len {
                return Ok(len);
            }
            let h = self
                .backing
                .seek_hole(pos)
                .map_err(|e| self.io_err("seek a hole in the backing file", e))?
                .max(pos);
            if h >= len {
                return Ok(len);
            }
            // A dirty cached page is data whatever the file says.
            let first = h >> self.shift;
            let mut q = first;
            {
                let map = self.lock_map();
                while map
                    .pages
                    .get(&q)
                    .is_some_and(|p| p.dirty.load(Ordering::Acquire))
                {
                    q += 1;
                }
            }
            if q == first {
                return Ok(h);
            }
            pos = q << self.shift;
        }
    }
}

impl Shrinker for Inner {
    fn try_shrink(&self, want: u64) -> Shrunk {
        let mut shrunk = Shrunk::default();
        while shrunk.freed < want {
            match self.evict_one(true) {
                Ok(Victim::Freed(buf)) => {
                    drop(buf);
                    self.budget.uncharge(self.ps(), &self.counters);
                    shrunk.freed += self.ps();
                }
                Ok(Victim::Busy) => {
                    shrunk.busy = true;
                    break;
                }
                Ok(Victim::Nothing) | Err(_) => break,
            }
        }
        shrunk
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let map = self.map.get_mut().unwrap_or_else(PoisonError::into_inner);
        let pages = map.pages.len() as u64;
        map.pages.clear();
        self.budget
            .uncharge(pages * self.page_size as u64, &self.counters);
        self.budget.unregister(self.id);
    }
}

/// Iterator over the data regions of an [`XFile`]; see
/// [`XFile::data_ranges`].
pub struct DataRanges<'a> {
    file: &'a XFile,
    pos: u64,
    done: bool,
}

impl Iterator for DataRanges<'_> {
    type Item = Result<Range<u64>, StagingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = (|| {
            let Some(start) = self.file.seek_data(self.pos)? else {
                return Ok(None);
            };
            let mut end = self.file.seek_hole(start)?;
            if end <= start {
                // Only possible when racing with a concurrent change: report
                // the rest of the page as data and go on.
                let ps = self.file.page_size() as u64;
                end = (start / ps + 1) * ps;
            }
            Ok(Some(start..end))
        })();
        match r {
            Ok(Some(range)) => {
                self.pos = range.end;
                Some(Ok(range))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A long-term pin on one page of an [`XFile`]: the page stays cached (and
/// charged to the budget) until the lease is dropped.
///
/// Access goes through short-lived guards from [`PageLease::read`] and
/// [`PageLease::write`]; do not hold a guard while accessing the same page
/// another way in the same thread.
pub struct PageLease<'a> {
    file: &'a XFile,
    pin: Pin,
    page: u64,
}

impl PageLease<'_> {
    /// Index of the leased page.
    pub fn page(&self) -> u64 {
        self.page
    }

    /// Read access to the page's bytes.
    pub fn read(&self) -> PageRef<'_> {
        PageRef {
            guard: read_lock(&self.pin.page.data),
        }
    }

    /// Write access to the page's bytes; marks the page dirty, counts one
    /// page as staged, and grows the file's length to the end of the page.
    pub fn write(&mut self) -> PageMut<'_> {
        let guard = write_lock(&self.pin.page.data);
        self.file.inner.mark_page_written(&self.pin.page, self.page);
        PageMut { guard }
    }
}

impl Drop for PageLease<'_> {
    fn drop(&mut self) {
        let inner = &*self.file.inner;
        inner.leases.fetch_sub(1, Ordering::AcqRel);
        inner.counters.leases.fetch_sub(1, RELAXED);
    }
}

impl std::fmt::Debug for PageLease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageLease")
            .field("file", &self.file.name())
            .field("page", &self.page)
            .finish()
    }
}

/// Read guard of a leased page; derefs to the page's bytes.
pub struct PageRef<'a> {
    guard: RwLockReadGuard<'a, PageData>,
}

impl Deref for PageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.guard.buf
    }
}

/// Write guard of a leased page; derefs to the page's bytes.
pub struct PageMut<'a> {
    guard: RwLockWriteGuard<'a, PageData>,
}

impl Deref for PageMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.guard.buf
    }
}

impl DerefMut for PageMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.guard.buf
    }
}
