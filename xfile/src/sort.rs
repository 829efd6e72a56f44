//! Sorting the records of an [`XFile`]: one in-memory sort when the data
//! fits in the budget, else an external merge sort.
//!
//! The external sort reads and writes whole buffers with `pread`/`pwrite`
//! around the page cache (the file's cache is flushed and dropped first, so
//! the cache and the file cannot disagree), because streaming through the
//! cache would only evict everything else to cache data read once.

use std::cmp::Ordering;

use zerocopy::IntoBytes;

use crate::Record;
use crate::error::StagingError;
use crate::xfile::XFile;

const fn rec_size<T>() -> u64 {
    size_of::<T>() as u64
}

fn alloc_vec<T: Record>(n: u64) -> Result<Vec<T>, StagingError> {
    let oom = || StagingError::Io {
        op: "allocate a sort buffer",
        source: std::io::ErrorKind::OutOfMemory.into(),
    };
    let n = usize::try_from(n).map_err(|_| oom())?;
    T::new_vec_zeroed(n).map_err(|_| oom())
}

/// Sort records `0..n` of `file` by `cmp`. `mem_cap` limits the work memory
/// (tests use it to force several merge passes).
pub(crate) fn sort_file<T, F>(
    file: &XFile,
    n: u64,
    cmp: &F,
    mem_cap: Option<u64>,
) -> Result<(), StagingError>
where
    T: Record,
    F: Fn(&T, &T) -> Ordering + Sync,
{
    let size = rec_size::<T>();
    if n < 2 || size == 0 {
        return Ok(());
    }
    // n records of `size` bytes were written to the file, whose length is
    // bounded by its max_len: no overflow.
    let total = n * size;
    let limit = file.budget().limit();
    let cap = mem_cap.unwrap_or(u64::MAX);

    if total <= limit && total <= cap {
        // Fits: one read, one in-memory sort, one write.
        // Only what is free now: shrinking the others is not worth it while
        // our own cache can be dropped instead.
        if let Some(_res) = file.reserve(total, total, false) {
            // Cache and work buffer fit side by side: copy through the cache.
            let mut buf = alloc_vec::<T>(n)?;
            return sort_in_memory(
                &mut buf,
                cmp,
                |part, at| file.read_at(part.as_mut_bytes(), at * size),
                |part, at| file.rewrite_at(part.as_bytes(), at * size),
            );
        }
    }

    // From here on the file's cache is empty and all I/O bypasses it. Work
    // memory: all the data if the budget could hold it (then this is one
    // in-memory sort after all), else runs of half the budget.
    file.drop_cache()?;
    let min = 3 * size;
    let want = if total <= limit { total } else { limit / 2 };
    let want = want.min(cap).max(min);
    let res = file
        .reserve(want, min, true)
        .ok_or_else(|| file.budget_exhausted(min))?;
    let mem = res.bytes().min(cap).max(min);
    let run_len = mem / size;

    if n <= run_len {
        let mut buf = alloc_vec::<T>(n)?;
        return sort_in_memory(
            &mut buf,
            cmp,
            |part, at| file.read_uncached(part.as_mut_bytes(), at * size),
            |part, at| file.write_uncached(part.as_bytes(), at * size),
        );
    }

    // Merge geometry: a page-sized buffer per input run plus one for the
    // output, as many runs at once as the memory allows; with less than
    // three pages, three equal buffers of whatever there is.
    let page_recs = (file.page_size() as u64 / size).max(1);
    let bufs = mem / (page_recs * size);
    let (k, buf_recs) = if bufs >= 3 {
        (bufs - 1, page_recs)
    } else {
        (2, (mem / size / 3).max(1))
    };
    let nruns = n.div_ceil(run_len);
    let mut passes = 0u32;
    let mut r = nruns;
    while r > 1 {
        r = r.div_ceil(k);
        passes += 1;
    }

    // Runs go where the last merge pass ends in `file`.
    let scratch = file.sibling(".sort")?;
    let (mut src, mut dst): (&XFile, &XFile) = if passes % 2 == 1 {
        (&scratch, file)
    } else {
        (file, &scratch)
    };

    let mut runs = Vec::new();
    {
        let mut buf = alloc_vec::<T>(run_len)?;
        let mut start = 0u64;
        while start < n {
            let m = run_len.min(n - start);
            let run = &mut buf[..m as usize];
            sort_in_memory(
                run,
                cmp,
                |part, at| file.read_uncached(part.as_mut_bytes(), (start + at) * size),
                |part, at| src.write_uncached(part.as_bytes(), (start + at) * size),
            )?;
            runs.push((start, start + m));
            start += m;
        }
    }

    let mut cursors: Vec<RunCursor<T>> = Vec::new();
    for _ in 0..k.min(nruns) {
        cursors.push(RunCursor {
            next: 0,
            end: 0,
            buf: alloc_vec::<T>(buf_recs)?,
            pos: 0,
            len: 0,
        });
    }
    let mut out = alloc_vec::<T>(buf_recs)?;
    for _ in 0..passes {
        let mut merged = Vec::with_capacity(runs.len().div_ceil(k as usize));
        for group in runs.chunks(k as usize) {
            merge_group(src, dst, group, &mut cursors, &mut out, cmp)?;
            merged.push((group[0].0, group[group.len() - 1].1));
        }
        runs = merged;
        std::mem::swap(&mut src, &mut dst);
    }
    debug_assert!(std::ptr::eq(src, file));
    debug_assert_eq!(runs.len(), 1);
    Ok(())
}

/// Below this many records a sort runs on the calling thread only.
const PARALLEL_MIN: usize = 1 << 16;
/// Bytes handed to `emit` at a time while merging (a small, uncharged
/// buffer per merging thread).
const EMIT_BYTES: usize = 64 << 10;

/// Run `f` on a helper thread and `g` on this one, and return both results.
/// `None` if no thread could be started (nothing has run then). A panic on
/// the helper thread is propagated.
fn join<A, B>(f: impl FnOnce() -> A + Send, g: impl FnOnce() -> B) -> Option<(A, B)>
where
    A: Send,
{
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("xfile-sort".into())
            .spawn_scoped(s, f)
            .ok()?;
        let b = g();
        match helper.join() {
            Ok(a) => Some((a, b)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Fill `buf` with `read(part, first_index)`, sort it, and hand the sorted
/// records to `emit(records, first_index)`.
///
/// Buffers of [`PARALLEL_MIN`] records or more use two threads (the
/// comparator is `Sync` for this): each reads and sorts one half, then each
/// merges one half of the output, split where the merged order puts the
/// middle, straight into `emit`. The merge thus replaces the copy out that
/// a single sort needs anyway.
fn sort_in_memory<T, F, R, E>(buf: &mut [T], cmp: &F, read: R, emit: E) -> Result<(), StagingError>
where
    T: Record,
    F: Fn(&T, &T) -> Ordering + Sync,
    R: Fn(&mut [T], u64) -> Result<(), StagingError> + Sync,
    E: Fn(&[T], u64) -> Result<(), StagingError> + Sync,
{
    let parallel = buf.len() >= PARALLEL_MIN
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let mid = buf.len() / 2;
    let (a, b) = buf.split_at_mut(mid);
    let fill_sort = |part: &mut [T], at: u64| -> Result<(), StagingError> {
        read(part, at)?;
        part.sort_unstable_by(cmp);
        Ok(())
    };
    let halves = if parallel {
        join(|| fill_sort(a, 0), || fill_sort(b, mid as u64))
    } else {
        None
    };
    let Some((ra, rb)) = halves else {
        // One thread: the classic read, sort, write.
        let whole = &mut *buf;
        fill_sort(whole, 0)?;
        return emit(whole, 0);
    };
    ra?;
    rb?;
    let (a, b) = (&*a, &*b);
    // Split the output in the middle: the first `half` merged records are
    // a[..i] and b[..j]. `i` is the smallest index with b[j - 1] <= a[i],
    // found by binary search (the condition only turns from false to true
    // as i grows); then every record left of the split is <= every record
    // right of it.
    let half = (a.len() + b.len()) / 2;
    let (mut lo, mut hi) = (half.saturating_sub(b.len()), half.min(a.len()));
    while lo < hi {
        let i = lo + (hi - lo) / 2;
        if cmp(&b[half - i - 1], &a[i]) == Ordering::Greater {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    let (i, j) = (lo, half - lo);
    let merge_left = || merge_into(&a[..i], &b[..j], 0, cmp, &emit);
    let merge_right = || merge_into(&a[i..], &b[j..], half as u64, cmp, &emit);
    match join(merge_left, merge_right) {
        Some((l, r)) => l.and(r),
        None => merge_left().and_then(|()| merge_right()),
    }
}

/// Merge the sorted slices `a` and `b` into `emit`, the first record going
/// to index `at`.
fn merge_into<T, F, E>(a: &[T], b: &[T], mut at: u64, cmp: &F, emit: &E) -> Result<(), StagingError>
where
    T: Record,
    F: Fn(&T, &T) -> Ordering,
    E: Fn(&[T], u64) -> Result<(), StagingError>,
{
    let chunk = (EMIT_BYTES / size_of::<T>().max(1)).max(1);
    let mut out: Vec<T> = Vec::with_capacity(chunk);
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() && j < b.len() {
        if cmp(&b[j], &a[i]) == Ordering::Less {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
        if out.len() == chunk {
            emit(&out, at)?;
            at += chunk as u64;
            out.clear();
        }
    }
    if !out.is_empty() {
        emit(&out, at)?;
        at += out.len() as u64;
    }
    let rest = if i < a.len() { &a[i..] } else { &b[j..] };
    if !rest.is_empty() {
        emit(rest, at)?;
    }
    Ok(())
}

/// A sorted run being read one buffer at a time.
struct RunCursor<T> {
    /// Next record index to read from the file.
    next: u64,
    /// End of the run (record index).
    end: u64,
    buf: Vec<T>,
    pos: usize,
    len: usize,
}

impl<T: Record> RunCursor<T> {
    fn start(&mut self, src: &XFile, start: u64, end: u64) -> Result<(), StagingError> {
        self.next = start;
        self.end = end;
        self.pos = 0;
        self.len = 0;
        self.refill(src)
    }

    fn refill(&mut self, src: &XFile) -> Result<(), StagingError> {
        let m = (self.end - self.next).min(self.buf.len() as u64) as usize;
        src.read_uncached(self.buf[..m].as_mut_bytes(), self.next * rec_size::<T>())?;
        self.next += m as u64;
        self.pos = 0;
        self.len = m;
        Ok(())
    }

    #[inline]
    fn pop(&mut self, src: &XFile) -> Result<Option<T>, StagingError> {
        if self.pos == self.len {
            if self.next == self.end {
                return Ok(None);
            }
            self.refill(src)?;
        }
        let v = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(v))
    }
}

/// Merge the adjacent sorted runs `group` of `src` into the same records of
/// `dst`.
fn merge_group<T, F>(
    src: &XFile,
    dst: &XFile,
    group: &[(u64, u64)],
    cursors: &mut [RunCursor<T>],
    out: &mut [T],
    cmp: &F,
) -> Result<(), StagingError>
where
    T: Record,
    F: Fn(&T, &T) -> Ordering,
{
    let size = rec_size::<T>();
    let mut out_pos = group[0].0;
    let mut out_len = 0usize;
    let mut heap: Vec<(T, usize)> = Vec::with_capacity(group.len());
    for (i, &(start, end)) in group.iter().enumerate() {
        let c = &mut cursors[i];
        c.start(src, start, end)?;
        if let Some(v) = c.pop(src)? {
            heap.push((v, i));
        }
    }
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, i, cmp);
    }
    while let Some(&(v, i)) = heap.first() {
        out[out_len] = v;
        out_len += 1;
        if out_len == out.len() {
            dst.write_uncached(out.as_bytes(), out_pos * size)?;
            out_pos += out_len as u64;
            out_len = 0;
        }
        match cursors[i].pop(src)? {
            Some(next) => heap[0].0 = next,
            None => {
                heap.swap_remove(0);
            }
        }
        sift_down(&mut heap, 0, cmp);
    }
    if out_len > 0 {
        dst.write_uncached(out[..out_len].as_bytes(), out_pos * size)?;
    }
    Ok(())
}

/// Restore the min-heap order below `i`.
#[inline]
fn sift_down<T, F>(heap: &mut [(T, usize)], mut i: usize, cmp: &F)
where
    F: Fn(&T, &T) -> Ordering,
{
    let len = heap.len();
    loop {
        let l = 2 * i + 1;
        if l >= len {
            return;
        }
        let r = l + 1;
        let c = if r < len && cmp(&heap[r].0, &heap[l].0) == Ordering::Less {
            r
        } else {
            l
        };
        if cmp(&heap[c].0, &heap[i].0) == Ordering::Less {
            heap.swap(i, c);
            i = c;
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBudget, XFileOptions, XfArray};

    fn opts() -> XFileOptions {
        XFileOptions {
            page_size: 4096,
            ..XFileOptions::default()
        }
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Sorts with work memory of `mem` bytes, checks against `Vec::sort`.
    fn check(n: u64, mem: u64, budget: u64, keys: u64) {
        let b = MemoryBudget::new(budget);
        let mut a = XfArray::<[u32; 2]>::with_options("sort-test", &b, opts()).expect("create");
        let mut model = Vec::new();
        let mut seed = n ^ mem;
        for i in 0..n {
            let v = [(lcg(&mut seed) % keys) as u32, i as u32];
            a.append(v).expect("append");
            model.push(v);
        }
        a.sort_by_with_memory(|x, y| x.cmp(y), mem).expect("sort");
        model.sort();
        let got: Vec<_> = a.iter().collect::<Result<_, _>>().expect("iter");
        assert_eq!(got, model, "n={n} mem={mem} budget={budget}");
        assert_eq!(
            b.used(),
            a.file().resident_pages() as u64 * 4096,
            "work memory returned"
        );
    }

    #[test]
    fn in_memory_when_it_fits() {
        check(1000, 1 << 20, 1 << 20, 1 << 30);
    }

    #[test]
    fn two_thread_sort_of_large_buffers() {
        // Above PARALLEL_MIN: halves sorted on two threads, then merged.
        check(200_001, 1 << 30, 1 << 30, 1000);
        // Few distinct keys: the output split falls inside runs of equal
        // records.
        check(150_000, 1 << 30, 1 << 30, 2);
        check(131_073, 1 << 30, 1 << 30, 1);
        // The same inside an external sort's runs.
        check(300_000, 1 << 20, 1 << 30, 1 << 30);
    }

    #[test]
    fn parallel_merge_split_is_exact_with_equal_keys() {
        // Compare by key only, so the split point lands among records the
        // comparator calls equal; identical records too.
        for (n, keys) in [
            (PARALLEL_MIN, 1u64),
            (PARALLEL_MIN + 1, 2),
            (200_003, 3),
            (100_000, 50_000),
        ] {
            let mut seed = n as u64;
            let src: Vec<[u32; 2]> = (0..n)
                .map(|i| [(lcg(&mut seed) % keys) as u32, (i % 7) as u32])
                .collect();
            let out = std::sync::Mutex::new(vec![[u32::MAX; 2]; n]);
            let mut buf = vec![[0u32; 2]; n];
            sort_in_memory(
                &mut buf,
                &|x: &[u32; 2], y: &[u32; 2]| x[0].cmp(&y[0]),
                |part, at| {
                    part.copy_from_slice(&src[at as usize..at as usize + part.len()]);
                    Ok(())
                },
                |part, at| {
                    let mut o = out.lock().expect("lock");
                    o[at as usize..at as usize + part.len()].copy_from_slice(part);
                    Ok(())
                },
            )
            .expect("sort");
            let got = out.into_inner().expect("lock");
            assert!(
                got.windows(2).all(|w| w[0][0] <= w[1][0]),
                "n={n} keys={keys}: not sorted"
            );
            let (mut g, mut w) = (got.clone(), src.clone());
            g.sort();
            w.sort();
            assert!(g == w, "n={n} keys={keys}: records lost or duplicated");
        }
    }

    #[test]
    fn one_merge_pass() {
        // 64 KiB of data, 16 KiB of memory: 4 runs, fan-in 3 → 2 passes;
        // with 32 KiB: 2 runs, fan-in 7 → 1 pass.
        check(8192, 16 << 10, 1 << 20, 1 << 30);
        check(8192, 32 << 10, 1 << 20, 1 << 30);
    }

    #[test]
    fn many_passes_with_sub_page_buffers() {
        // 24 bytes of memory: runs of 3 records, fan-in 2, buffers of one
        // record: log2(700) passes.
        check(2100, 24, 1 << 20, 50);
        check(2101, 40, 1 << 20, 3);
    }

    #[test]
    fn tiny_budget_external() {
        // Budget of three pages, data of 40 pages: runs of 1.5 pages.
        check(20_000, u64::MAX, 3 * 4096, 1000);
    }

    #[test]
    fn budget_too_small_is_an_error() {
        let b = MemoryBudget::new(8);
        let mut a = XfArray::<u64>::with_options("small", &b, opts()).expect("create");
        for i in 0..100u64 {
            a.append(100 - i).expect("append");
        }
        let e = a
            .sort_by(|x, y| x.cmp(y))
            .expect_err("must not sort in 8 bytes");
        assert!(matches!(e, StagingError::BudgetExhausted { .. }), "{e}");
        // The data is intact.
        assert_eq!(a.get(0).expect("get"), 100);
    }
}
