//! Pageable staging memory under a hard, shared memory budget.
//!
//! A checker or repairer often has to collect far more records than it may
//! keep in RAM: a shadow copy of an index, the records of a structure it is
//! about to rebuild, names and values of directory entries. This crate gives
//! such code storage that behaves like memory while it fits and spills to a
//! private temporary file when it does not, with one limit shared by
//! everything a run stages.
//!
//! # What is here
//!
//! * [`XFile`]: a sparse, byte-addressable file. Reads of bytes never
//!   written return zeros; `discard` punches holes; `seek_data` /
//!   `seek_hole` / `data_ranges` skip what was never written.
//! * [`XfArray`]: an array of fixed-size [`Record`]s with buffered append,
//!   page-at-a-time iteration and an external merge sort that works when the
//!   array is many times larger than the budget.
//! * [`SparseXfArray`]: records indexed by position with gaps; a gap is
//!   "absent", distinct from a record that happens to be all zeros.
//! * [`XfBlob`]: variable-size byte strings addressed by [`BlobCookie`].
//! * [`MemoryBudget`]: the limit, shared by every structure of a run, and
//!   exact statistics ([`BudgetStats`], [`StagingStats`]).
//!
//! # Not here
//!
//! No persistence (everything vanishes with the process; the backing file
//! has no name), no crash safety, no cross-process sharing, no `mmap`, and
//! no knowledge of any particular on-disk format.
//!
//! # The model
//!
//! An [`XFile`] is cut into pages of [`XFileOptions::page_size`] bytes
//! (64 KiB by default). A page that is read or written is brought into a
//! per-file cache; before it is cached, its size is *charged* to the
//! [`MemoryBudget`], an atomic check-and-add against the limit. When the
//! charge fails the file:
//!
//! 1. evicts one of its own unpinned pages (a clock scan: pages touched
//!    since the hand last passed get a second chance), writing it to the
//!    backing file first if it is dirty, and reuses its memory;
//! 2. otherwise asks the other files of the same budget to shrink. They are
//!    only ever `try_lock`ed, so two files can never deadlock each other,
//!    and a busy file is simply skipped;
//! 3. otherwise does the I/O without the cache: `read_at`/`write_at` then
//!    `pread`/`pwrite` the backing file directly, so ordinary I/O works with
//!    any budget, even 0 (such uncached I/O holds the file's map lock, so
//!    it is serialised per file: a starved budget is slow, never wrong).
//!    Only pinned access ([`XFile::with_page`], [`XFile::with_page_mut`],
//!    [`XFile::lease`]) and the sort's work buffer need memory; they fail
//!    with [`StagingError::BudgetExhausted`].
//!
//! Reading bytes that were never written costs no memory: a page that is
//! neither cached nor in the backing file is returned as zeros without
//! being cached.
//!
//! **The bound.** Pinned pages are charged like any other, and nothing is
//! cached without a successful charge, so at every instant
//!
//! > sum over the budget's files of (cached pages × page size + sort work
//! > buffers) ≤ `limit`
//!
//! with no exception: a pin that cannot be charged fails instead of
//! overdrawing. Not charged are per-structure constants: the page map
//! (about 100 bytes per cached page), the one-page append buffer of an
//! [`XfArray`], the one-page read buffer of an iterator, the 64 KiB merge
//! buffers of a sort, and the transient buffers of `discard`. The
//! statistics report exactly the charged bytes.
//!
//! **Threads.** The crate starts no threads of its own except one scoped
//! helper while [`XfArray::sort_by`] sorts a large buffer; it is joined
//! before `sort_by` returns.
//!
//! **Spill.** The backing file is created with `O_TMPFILE` (mode 0600) in
//! [`XFileOptions::tmpdir`], `$SCRUBD_TMPDIR` or the system temporary
//! directory; where the filesystem lacks `O_TMPFILE`, it is created under a
//! random name and unlinked at once. It is only accessed with
//! `pread`/`pwrite`/`fallocate`/`lseek`, never mapped, so a full disk is an
//! error value ([`StagingError::NoSpace`]), never a signal. A dirty page
//! whose write-back fails stays cached and dirty: what was staged can still
//! be read.
//!
//! **Leases.** [`XFile::lease`] pins a page until the lease is dropped
//! (for structures such as btrees that keep a node at hand). Leased pages
//! are never evicted; at most [`XFileOptions::max_leases`] may be held on a
//! file, and one more fails at once with [`StagingError::TooManyLeases`].
//!
//! # Locking rules for callers
//!
//! Every type is `Send + Sync`. An [`XFile`] may be used from many threads
//! at once: each page has its own lock, and a read or write of a range is
//! atomic per page, not as a whole. The file's map lock is never held while
//! a closure runs or while waiting for a page, so inside a `with_page*`
//! closure you may call any method of the same file (or of another file of
//! the same budget) **for a different page**. Touching the same page again
//! from inside its closure, or from the same thread while holding one of
//! its lease guards ([`PageRef`], [`PageMut`]), deadlocks; so does
//! discarding or truncating away a page you are accessing. The record
//! structures take `&mut self` for changes, so share them behind your own
//! lock, as the staging design intends.
#![forbid(unsafe_code)]

mod array;
mod backing;
mod blob;
mod budget;
mod error;
mod sort;
mod sparse;
mod xfile;

pub use array::{XfArray, XfArrayIter};
pub use blob::{BlobCookie, XfBlob};
pub use budget::{BudgetStats, MemoryBudget, StagingStats};
pub use error::StagingError;
pub use sparse::{SparseIter, SparseXfArray};
pub use xfile::{DataRanges, PageLease, PageMut, PageRef, XFile, XFileOptions};

/// A fixed-size, plain-bytes value that can be staged: any type that
/// `zerocopy` can turn into bytes and back (no padding, no pointers, every
/// bit pattern valid). Implemented for every such type.
pub trait Record:
    zerocopy::FromBytes
    + zerocopy::IntoBytes
    + zerocopy::Immutable
    + zerocopy::KnownLayout
    + Copy
    + Send
    + Sync
    + 'static
{
}

impl<T> Record for T where
    T: zerocopy::FromBytes
        + zerocopy::IntoBytes
        + zerocopy::Immutable
        + zerocopy::KnownLayout
        + Copy
        + Send
        + Sync
        + 'static
{
}
