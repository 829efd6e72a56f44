//! [`SparseXfArray`]: records indexed by position, with gaps.

use std::marker::PhantomData;

use crate::Record;
use crate::budget::{MemoryBudget, StagingStats};
use crate::error::StagingError;
use crate::xfile::{DataRanges, XFile, XFileOptions};

/// Tag byte of an occupied slot. A slot whose tag is 0 is absent: never
/// written bytes read as zeros, so gaps cost nothing and need no
/// initialisation.
const PRESENT: u8 = 1;

/// Slots up to this size are staged through a stack buffer.
const STACK_SLOT: usize = 128;

/// A sparse array of records of type `T` indexed by `u64`, staged in an
/// [`XFile`].
///
/// Slot `i` is one tag byte followed by the record, at byte offset
/// `i * (1 + size_of::<T>())`. The tag, not the record's bytes, says whether
/// the slot is present, so an all-zero record is an ordinary value. Slots
/// never written cost no memory and no disk, and
/// [`SparseXfArray::iter_present`] skips them with
/// [`XFile::data_ranges`].
pub struct SparseXfArray<T: Record> {
    file: XFile,
    present: u64,
    /// 1 + highest index ever set (0 after `clear`).
    bound: u64,
    _marker: PhantomData<T>,
}

const fn slot_size<T>() -> u64 {
    1 + size_of::<T>() as u64
}

/// Runs `f` on a zeroed buffer of one slot, on the stack when small.
fn with_slot_buf<T, R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let n = slot_size::<T>() as usize;
    if n <= STACK_SLOT {
        let mut stack = [0u8; STACK_SLOT];
        f(&mut stack[..n])
    } else {
        f(&mut vec![0u8; n])
    }
}

fn decode<T: Record>(bytes: &[u8]) -> T {
    let mut v = T::new_zeroed();
    v.as_mut_bytes().copy_from_slice(bytes);
    v
}

impl<T: Record> SparseXfArray<T> {
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
        Ok(SparseXfArray {
            file: XFile::with_options(name, budget, opts)?,
            present: 0,
            bound: 0,
            _marker: PhantomData,
        })
    }

    /// Number of present records.
    pub fn count(&self) -> u64 {
        self.present
    }

    /// 1 + the highest index ever set (every present index is below it).
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Largest index + 1 the array can hold.
    pub fn max_index(&self) -> u64 {
        self.file.max_len() / slot_size::<T>()
    }

    /// The underlying file.
    pub fn file(&self) -> &XFile {
        &self.file
    }

    fn slot_offset(&self, i: u64) -> Result<u64, StagingError> {
        if i >= self.max_index() {
            return Err(self.file.out_of_range("sparse index", i, self.max_index()));
        }
        Ok(i * slot_size::<T>())
    }

    /// The record at `i`, or `None` if none was set (or it was removed).
    pub fn get(&self, i: u64) -> Result<Option<T>, StagingError> {
        let off = self.slot_offset(i)?;
        if i >= self.bound {
            return Ok(None);
        }
        with_slot_buf::<T, _>(|buf| {
            self.file.read_at(buf, off)?;
            Ok((buf[0] != 0).then(|| decode(&buf[1..])))
        })
    }

    /// True if a record is present at `i`.
    pub fn contains(&self, i: u64) -> Result<bool, StagingError> {
        let off = self.slot_offset(i)?;
        if i >= self.bound {
            return Ok(false);
        }
        let mut tag = [0u8];
        self.file.read_at(&mut tag, off)?;
        Ok(tag[0] != 0)
    }

    /// Store `value` at `i`, replacing what was there.
    pub fn set(&mut self, i: u64, value: T) -> Result<(), StagingError> {
        let was = self.contains(i)?;
        let off = self.slot_offset(i)?;
        with_slot_buf::<T, _>(|buf| {
            buf[0] = PRESENT;
            buf[1..].copy_from_slice(value.as_bytes());
            self.file.write_at(buf, off)
        })?;
        self.bound = self.bound.max(i + 1);
        if !was {
            self.present += 1;
            self.file.add_records(1);
        }
        Ok(())
    }

    /// Remove the record at `i`, returning it.
    pub fn remove(&mut self, i: u64) -> Result<Option<T>, StagingError> {
        let old = self.get(i)?;
        if old.is_some() {
            let off = self.slot_offset(i)?;
            with_slot_buf::<T, _>(|buf| self.file.write_at(buf, off))?;
            self.present -= 1;
            self.file.add_records(-1);
        }
        Ok(old)
    }

    /// Remove every record and free the memory and disk space.
    pub fn clear(&mut self) -> Result<(), StagingError> {
        self.file.truncate(0)?;
        self.file
            .add_records(-(self.present.min(i64::MAX as u64) as i64));
        self.present = 0;
        self.bound = 0;
        Ok(())
    }

    /// The present records with their indices, in index order, skipping
    /// never-written regions without reading them. Stops after the first
    /// error.
    pub fn iter_present(&self) -> SparseIter<'_, T> {
        SparseIter {
            array: self,
            ranges: self.file.data_ranges(0),
            next_slot: 0,
            range_end: 0,
            buf: Vec::new(),
            buf_first: 0,
            buf_slots: 0,
            pos: 0,
            done: false,
        }
    }

    /// Statistics of the array's file (`records` is the present count).
    pub fn stats(&self) -> StagingStats {
        self.file.stats()
    }
}

impl<T: Record> std::fmt::Debug for SparseXfArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseXfArray")
            .field("name", &self.file.name())
            .field("count", &self.present)
            .field("bound", &self.bound)
            .finish()
    }
}

/// Iterator over the present records of a [`SparseXfArray`]; see
/// [`SparseXfArray::iter_present`].
pub struct SparseIter<'a, T: Record> {
    array: &'a SparseXfArray<T>,
    ranges: DataRanges<'a>,
    /// Next slot to read.
    next_slot: u64,
    /// End (exclusive) of the slots of the current data range.
    range_end: u64,
    buf: Vec<u8>,
    buf_first: u64,
    buf_slots: usize,
    pos: usize,
    done: bool,
}

impl<T: Record> Iterator for SparseIter<'_, T> {
    type Item = Result<(u64, T), StagingError>;

    fn next(&mut self) -> Option<Self::Item> {
        let slot = slot_size::<T>() as usize;
        while !self.done {
            if self.pos < self.buf_slots {
                let p = self.pos;
                self.pos += 1;
                let bytes = &self.buf[p * slot..(p + 1) * slot];
                if bytes[0] != 0 {
                    return Some(Ok((self.buf_first + p as u64, decode(&bytes[1..]))));
                }
                continue;
            }
            if self.next_slot < self.range_end {
                let file = &self.array.file;
                let per_chunk = (file.page_size() / slot).max(1) as u64;
                let n = per_chunk.min(self.range_end - self.next_slot) as usize;
                self.buf.resize(n * slot, 0);
                if let Err(e) =
                    file.read_at(&mut self.buf[..n * slot], self.next_slot * slot as u64)
                {
                    self.done = true;
                    return Some(Err(e));
                }
                self.buf_first = self.next_slot;
                self.buf_slots = n;
                self.pos = 0;
                self.next_slot += n as u64;
                continue;
            }
            match self.ranges.next() {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(r)) => {
                    // A slot can straddle range boundaries: take every slot
                    // that overlaps the range, each once.
                    let lo = self.next_slot.max(r.start / slot as u64);
                    let hi = r.end.div_ceil(slot as u64).min(self.array.bound);
                    if hi > lo {
                        self.next_slot = lo;
                        self.range_end = hi;
                    }
                }
            }
        }
        None
    }
}
