//! [`XfArray`]: a dense array of fixed-size records in an [`XFile`].

use std::cmp::Ordering;
use std::marker::PhantomData;

use zerocopy::IntoBytes;

use crate::budget::{MemoryBudget, StagingStats};
use crate::error::StagingError;
use crate::xfile::{XFile, XFileOptions};
use crate::{Record, sort};

/// A dense array of records of type `T`, staged in an [`XFile`].
///
/// Record `i` lives at byte offset `i * size_of::<T>()`. Appends are
/// collected in a one-page buffer and written a page at a time, so
/// appending costs about as much as pushing to a `Vec`. Changes take
/// `&mut self`; share the array behind your own lock.
pub struct XfArray<T: Record> {
    file: XFile,
    /// Records already written to the file.
    flushed: u64,
    /// Records `flushed..flushed + tail.len()`, not yet written.
    tail: Vec<T>,
    /// Capacity of `tail` in records: one page.
    chunk: usize,
    _marker: PhantomData<T>,
}

const fn rec_size<T>() -> u64 {
    size_of::<T>() as u64
}

impl<T: Record> XfArray<T> {
    /// An empty array with default [`XFileOptions`].
    pub fn new(name: &str, budget: &MemoryBudget) -> Result<Self, StagingError> {
        Self::with_options(name, budget, XFileOptions::default())
    }

    /// An empty array whose file is created with `opts`.
    pub fn with_options(
        name: &str,
        budget: &MemoryBudget,
        opts: XFileOptions,
    ) -> Result<Self, StagingError> {
        let file = XFile::with_options(name, budget, opts)?;
        let chunk = (file.page_size() / size_of::<T>().max(1)).max(1);
        Ok(XfArray {
            file,
            flushed: 0,
            tail: Vec::new(),
            chunk,
            _marker: PhantomData,
        })
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }

    /// True if there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most records the array can hold.
    pub fn max_len(&self) -> u64 {
        self.file.max_len() / rec_size::<T>().max(1)
    }

    /// The underlying file (holds the records written so far; appended
    /// records may still sit in the append buffer, see [`XfArray::flush`]).
    pub fn file(&self) -> &XFile {
        &self.file
    }

    /// Add a record at the end.
    pub fn append(&mut self, value: T) -> Result<(), StagingError> {
        if self.len() >= self.max_len() {
            return Err(self
                .file
                .out_of_range("record count", self.len() + 1, self.max_len()));
        }
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(self.chunk);
        }
        self.tail.push(value);
        if self.tail.len() >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    /// Add all of `values` at the end.
    pub fn extend_from_slice(&mut self, mut values: &[T]) -> Result<(), StagingError> {
        let new_len = self.len().checked_add(values.len() as u64);
        if new_len.is_none_or(|l| l > self.max_len()) {
            return Err(self.file.out_of_range(
                "record count",
                new_len.unwrap_or(u64::MAX),
                self.max_len(),
            ));
        }
        if !self.tail.is_empty() {
            let take = (self.chunk - self.tail.len()).min(values.len());
            self.tail.extend_from_slice(&values[..take]);
            values = &values[take..];
            if self.tail.len() >= self.chunk {
                self.flush()?;
            }
        }
        // Whole chunks go straight to the file.
        while values.len() >= self.chunk {
            let n = values.len() / self.chunk * self.chunk;
            let n = n.min(self.chunk * 64);
            self.file
                .write_at(values[..n].as_bytes(), self.flushed * rec_size::<T>())?;
            self.flushed += n as u64;
            self.file.add_records(n as i64);
            values = &values[n..];
        }
        self.tail.extend_from_slice(values);
        Ok(())
    }

    /// Write the append buffer to the file. Called by `append` whenever the
    /// buffer holds a page; call it yourself before using
    /// [`XfArray::file`] directly. If the write fails the records stay in the
    /// buffer.
    pub fn flush(&mut self) -> Result<(), StagingError> {
        if self.tail.is_empty() {
            return Ok(());
        }
        self.file
            .write_at(self.tail.as_bytes(), self.flushed * rec_size::<T>())?;
        let n = self.tail.len();
        self.flushed += n as u64;
        self.file.add_records(n as i64);
        self.tail.clear();
        Ok(())
    }

    fn check_index(&self, i: u64) -> Result<(), StagingError> {
        if i >= self.len() {
            return Err(self.file.out_of_range("record index", i, self.len()));
        }
        Ok(())
    }

    /// Record `i`.
    pub fn get(&self, i: u64) -> Result<T, StagingError> {
        self.check_index(i)?;
        if i >= self.flushed {
            return Ok(self.tail[(i - self.flushed) as usize]);
        }
        self.file.load(i * rec_size::<T>())
    }

    /// Replace record `i` (which must exist).
    pub fn set(&mut self, i: u64, value: T) -> Result<(), StagingError> {
        self.check_index(i)?;
        if i >= self.flushed {
            self.tail[(i - self.flushed) as usize] = value;
            return Ok(());
        }
        self.file.store(i * rec_size::<T>(), &value)
    }

    /// Keep the first `len` records and free the memory and disk space of
    /// the rest. No effect if `len >= self.len()`.
    pub fn truncate(&mut self, len: u64) -> Result<(), StagingError> {
        if len >= self.len() {
            return Ok(());
        }
        if len >= self.flushed {
            self.tail.truncate((len - self.flushed) as usize);
            return Ok(());
        }
        self.tail.clear();
        self.file.truncate(len * rec_size::<T>())?;
        let dropped = self.flushed - len;
        self.file
            .add_records(-(dropped.min(i64::MAX as u64) as i64));
        self.flushed = len;
        Ok(())
    }

    /// Remove every record.
    pub fn clear(&mut self) -> Result<(), StagingError> {
        self.truncate(0)
    }

    /// Iterate over the records in order, reading a page of records at a
    /// time. Stops after the first error.
    pub fn iter(&self) -> XfArrayIter<'_, T> {
        XfArrayIter {
            array: self,
            next: 0,
            end: self.len(),
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Sort the records with `cmp`, an unstable sort (equal records may end
    /// up in any order).
    ///
    /// If the array fits in the budget this is one in-memory
    /// `sort_unstable_by`; otherwise an external merge sort: runs of up to
    /// half the budget are sorted in memory, then merged `k` at a time with
    /// a page-sized buffer per run (several passes if needed), reading and
    /// writing whole pages. The work buffer is charged to the budget, so
    /// the budget's bound holds throughout; the scratch space on disk is up
    /// to the array's size again. Needs at least three records' worth of
    /// budget; else [`StagingError::BudgetExhausted`].
    ///
    /// An in-memory buffer of 65536 records or more is sorted as two halves
    /// on the calling thread and one helper thread (hence `Sync`), then
    /// merged while it is written back; a panic in `cmp` propagates.
    ///
    /// If the sort fails (full disk, I/O error), the array keeps its length,
    /// but its order, and if the last merge pass failed its contents, are
    /// unspecified: treat it as lost.
    pub fn sort_by<F>(&mut self, cmp: F) -> Result<(), StagingError>
    where
        F: Fn(&T, &T) -> Ordering + Sync,
    {
        self.flush()?;
        sort::sort_file::<T, F>(&self.file, self.flushed, &cmp, None)
    }

    /// Sort by a key (unstable; see [`XfArray::sort_by`]).
    pub fn sort_by_key<K, F>(&mut self, key: F) -> Result<(), StagingError>
    where
        K: Ord,
        F: Fn(&T) -> K + Sync,
    {
        self.sort_by(|a, b| key(a).cmp(&key(b)))
    }

    #[cfg(test)]
    pub(crate) fn sort_by_with_memory<F>(&mut self, cmp: F, mem: u64) -> Result<(), StagingError>
    where
        F: Fn(&T, &T) -> Ordering + Sync,
    {
        self.flush()?;
        sort::sort_file::<T, F>(&self.file, self.flushed, &cmp, Some(mem))
    }

    /// Statistics of the array's file; `records` is the exact record count,
    /// including records still in the append buffer (the budget's snapshot
    /// counts those only once they are flushed).
    pub fn stats(&self) -> StagingStats {
        let mut s = self.file.stats();
        s.records = self.len();
        s
    }
}

impl<T: Record> std::fmt::Debug for XfArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XfArray")
            .field("name", &self.file.name())
            .field("len", &self.len())
            .finish()
    }
}

impl<'a, T: Record> IntoIterator for &'a XfArray<T> {
    type Item = Result<T, StagingError>;
    type IntoIter = XfArrayIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the records of an [`XfArray`]; see [`XfArray::iter`].
pub struct XfArrayIter<'a, T: Record> {
    array: &'a XfArray<T>,
    next: u64,
    end: u64,
    buf: Vec<T>,
    /// Index of `buf[0]`.
    buf_start: u64,
}

impl<T: Record> Iterator for XfArrayIter<'_, T> {
    type Item = Result<T, StagingError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        if i >= self.end {
            return None;
        }
        self.next += 1;
        let rel = i.wrapping_sub(self.buf_start);
        if rel < self.buf.len() as u64 {
            return Some(Ok(self.buf[rel as usize]));
        }
        let a = self.array;
        if i >= a.flushed {
            return Some(Ok(a.tail[(i - a.flushed) as usize]));
        }
        self.refill(i).map(|()| self.buf[0]).map_or_else(
            |e| {
                self.next = self.end;
                Some(Err(e))
            },
            |v| Some(Ok(v)),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl<T: Record> XfArrayIter<'_, T> {
    fn refill(&mut self, i: u64) -> Result<(), StagingError> {
        let a = self.array;
        let n = (a.flushed - i).min(a.chunk as u64) as usize;
        self.buf.clear();
        self.buf.resize(n, T::new_zeroed());
        self.buf_start = i;
        let r = a.file.read_at(self.buf.as_mut_bytes(), i * rec_size::<T>());
        if r.is_err() {
            self.buf.clear();
        }
        r
    }
}

impl<T: Record> ExactSizeIterator for XfArrayIter<'_, T> {}
