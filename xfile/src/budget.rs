//! The memory budget shared by all staging structures of a run, and their
//! statistics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A hard limit on the bytes of cached pages (and sort work buffers) that
/// all staging structures created with it may hold together.
///
/// Cloning gives another handle to the same budget. Every [`crate::XFile`]
/// charges a page to the budget before it caches it and uncharges it when the
/// page is evicted or the file is dropped; a charge is checked and added
/// atomically, so the sum of charges never exceeds the limit. When the
/// budget is full, a file first evicts its own pages and then asks the other
/// files of the same budget to shrink (see the crate documentation).
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    limit: u64,
    /// Serialises every change of `used`, `peak` and the structures'
    /// `resident`/`peak` counters, so that a snapshot taken under it is
    /// consistent: the residents sum to `used`, and no peak is ever raised by
    /// a transient mix of one structure's charge and another's uncharge.
    /// Charges happen once per page-in or eviction, so this lock is cheap
    /// next to the work around it.
    charge_lock: Mutex<()>,
    /// Written only under `charge_lock`; read freely.
    used: AtomicU64,
    peak: AtomicU64,
    next_id: AtomicU64,
    /// Where the next round of "shrink the others" starts, so that the
    /// burden is spread over all files.
    shrink_cursor: AtomicUsize,
    registry: Mutex<Vec<Entry>>,
    /// Statistics of the structures already dropped, summed per name in
    /// order of first registration, so that a report made after a run
    /// still says where its memory went.
    retired: Mutex<Vec<StagingStats>>,
}

struct Entry {
    id: u64,
    counters: Arc<Counters>,
    shrinker: Weak<dyn Shrinker>,
}

/// Something that can give cached memory back to the budget.
pub(crate) trait Shrinker: Send + Sync {
    /// Evict unpinned pages until about `want` bytes are freed, without ever
    /// blocking on a lock another thread holds.
    fn try_shrink(&self, want: u64) -> Shrunk;
}

/// What a round of shrinking achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shrunk {
    /// Bytes uncharged.
    pub(crate) freed: u64,
    /// Some structure was skipped because its lock was taken: trying again
    /// shortly may free memory.
    pub(crate) busy: bool,
}

/// Exact statistics of one staging structure (or of all of them together),
/// as a snapshot.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StagingStats {
    /// Name given when the structure was created (`"total"` for the sum).
    pub name: String,
    /// Bytes charged to the budget now: cached pages, plus the work buffer
    /// while a sort runs.
    pub resident_bytes: u64,
    /// Highest value `resident_bytes` ever had. For the total this is the
    /// peak of the sum, not the sum of the peaks.
    pub peak_resident_bytes: u64,
    /// Bytes written into the structure by callers (cumulative). A mutable
    /// page access (`with_page_mut`, a lease's `write`) counts one page.
    pub bytes_staged: u64,
    /// Bytes written to the backing file by eviction, flushing, sorting or
    /// uncached writes (cumulative).
    pub bytes_spilled: u64,
    /// Pages dropped from the cache to make room (cumulative).
    pub evictions: u64,
    /// Pages read back from the backing file into the cache (cumulative).
    pub page_ins: u64,
    /// Page leases held now.
    pub leases_held: u64,
    /// Records held, as maintained by the structure's user (see
    /// [`crate::XFile::add_records`]).
    pub records: u64,
    /// Reads served straight from the backing file because no page could be
    /// cached (cumulative count of calls).
    pub direct_reads: u64,
    /// Structures these figures are about: 1 for one structure, the number
    /// created under the name in [`MemoryBudget::stats_by_name`].
    pub instances: u64,
    /// Writes sent straight to the backing file because no page could be
    /// cached (cumulative count of calls).
    pub direct_writes: u64,
}

/// A snapshot of a budget: its limit, the totals, and one entry per live
/// staging structure. A structure's entry disappears when it is dropped,
/// and its pages are uncharged at that moment.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// The budget's limit in bytes.
    pub limit: u64,
    /// Sum over `structures`, except `peak_resident_bytes`, which is the peak
    /// of the budget's total charge over its whole life.
    pub total: StagingStats,
    /// One entry per live structure, in creation order.
    pub structures: Vec<StagingStats>,
}

/// Live counters of one structure. All updates are relaxed atomics: each
/// counter is exact, a snapshot of several is not a single instant.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) name: String,
    pub(crate) resident: AtomicU64,
    pub(crate) peak: AtomicU64,
    pub(crate) staged: AtomicU64,
    pub(crate) spilled: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) page_ins: AtomicU64,
    pub(crate) leases: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) direct_reads: AtomicU64,
    pub(crate) direct_writes: AtomicU64,
}

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        Counters {
            name: name.to_owned(),
            ..Counters::default()
        }
    }

    pub(crate) fn snapshot(&self) -> StagingStats {
        StagingStats {
            name: self.name.clone(),
            resident_bytes: self.resident.load(Relaxed),
            peak_resident_bytes: self.peak.load(Relaxed),
            bytes_staged: self.staged.load(Relaxed),
            bytes_spilled: self.spilled.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            page_ins: self.page_ins.load(Relaxed),
            leases_held: self.leases.load(Relaxed),
            records: self.records.load(Relaxed),
            direct_reads: self.direct_reads.load(Relaxed),
            direct_writes: self.direct_writes.load(Relaxed),
            instances: 1,
        }
    }

    /// Apply a signed change to the record count, saturating at 0 and
    /// `u64::MAX`.
    pub(crate) fn add_records(&self, delta: i64) {
        let _ = self.records.fetch_update(Relaxed, Relaxed, |r| {
            Some(if delta >= 0 {
                r.saturating_add(delta.unsigned_abs())
            } else {
                r.saturating_sub(delta.unsigned_abs())
            })
        });
    }
}

impl MemoryBudget {
    /// A budget of `limit_bytes`. A limit of 0 is allowed: every read and
    /// write then goes straight to the backing files, and only pinned access
    /// fails.
    pub fn new(limit_bytes: u64) -> Self {
        MemoryBudget {
            inner: Arc::new(BudgetInner {
                limit: limit_bytes,
                charge_lock: Mutex::new(()),
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                shrink_cursor: AtomicUsize::new(0),
                registry: Mutex::new(Vec::new()),
                retired: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes charged now by all structures of this budget.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Relaxed)
    }

    /// A snapshot of the totals and of every live structure. The resident
    /// and peak figures are one consistent instant; the cumulative counters
    /// are each exact but read one after the other.
    pub fn stats(&self) -> BudgetStats {
        let registry = self.registry();
        let (structures, used, peak) = {
            let _charges = self.charge_lock();
            let structures: Vec<StagingStats> =
                registry.iter().map(|e| e.counters.snapshot()).collect();
            (structures, self.used(), self.inner.peak.load(Relaxed))
        };
        drop(registry);
        let mut total = StagingStats {
            name: "total".to_owned(),
            resident_bytes: used,
            peak_resident_bytes: peak,
            ..StagingStats::default()
        };
        for s in &structures {
            total.bytes_staged = total.bytes_staged.saturating_add(s.bytes_staged);
            total.bytes_spilled = total.bytes_spilled.saturating_add(s.bytes_spilled);
            total.evictions = total.evictions.saturating_add(s.evictions);
            total.page_ins = total.page_ins.saturating_add(s.page_ins);
            total.leases_held = total.leases_held.saturating_add(s.leases_held);
            total.records = total.records.saturating_add(s.records);
            total.direct_reads = total.direct_reads.saturating_add(s.direct_reads);
            total.direct_writes = total.direct_writes.saturating_add(s.direct_writes);
        }
        total.instances = u64::try_from(structures.len()).unwrap_or(u64::MAX);
        BudgetStats {
            limit: self.inner.limit,
            total,
            structures,
        }
    }

    fn charge_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .charge_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn registry(&self) -> MutexGuard<'_, Vec<Entry>> {
        // Nothing panics while holding this lock; recover from poison anyway.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Register a structure; returns its id, used to unregister it.
    pub(crate) fn register(&self, counters: Arc<Counters>, shrinker: Weak<dyn Shrinker>) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        self.registry().push(Entry {
            id,
            counters,
            shrinker,
        });
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        let mut gone = Vec::new();
        self.registry().retain(|e| {
            if e.id == id {
                gone.push(e.counters.snapshot());
            }
            e.id != id
        });
        let mut retired = self.retired();
        for s in gone {
            fold_by_name(&mut retired, &s);
        }
    }

    fn retired(&self) -> MutexGuard<'_, Vec<StagingStats>> {
        self.inner.retired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Statistics per structure name over the budget's whole life: the
    /// structures already dropped and the live ones, summed per name, in
    /// order of first creation. Cumulative counters and `records` (held at
    /// drop time, or now) are sums; `resident_bytes` is what live
    /// structures hold now; `peak_resident_bytes` is the highest peak of
    /// any one structure of the name; `instances` counts the structures.
    pub fn stats_by_name(&self) -> Vec<StagingStats> {
        let live: Vec<StagingStats> = {
            let registry = self.registry();
            let _charges = self.charge_lock();
            registry.iter().map(|e| e.counters.snapshot()).collect()
        };
        let mut out = self.retired().clone();
        for s in &live {
            fold_by_name(&mut out, s);
        }
        out
    }

    /// Charge `bytes` to the budget on behalf of `counters` if that keeps
    /// the total within the limit.
    pub(crate) fn try_charge(&self, bytes: u64, counters: &Counters) -> bool {
        let inner = &*self.inner;
        let _charges = self.charge_lock();
        let used = inner.used.load(Relaxed);
        let Some(new) = used.checked_add(bytes).filter(|&n| n <= inner.limit) else {
            return false;
        };
        inner.used.store(new, Relaxed);
        inner.peak.fetch_max(new, Relaxed);
        let r = counters.resident.load(Relaxed) + bytes;
        counters.resident.store(r, Relaxed);
        counters.peak.fetch_max(r, Relaxed);
        true
    }

    /// Give back a charge taken with [`MemoryBudget::try_charge`].
    pub(crate) fn uncharge(&self, bytes: u64, counters: &Counters) {
        let _charges = self.charge_lock();
        self.inner.used.fetch_sub(bytes, Relaxed);
        counters.resident.fetch_sub(bytes, Relaxed);
    }

    /// Ask the structures of this budget other than `requester` to give back
    /// about `want` bytes. Never blocks on another structure's locks.
    pub(crate) fn shrink_others(&self, requester: u64, want: u64) -> Shrunk {
        let others: Vec<Weak<dyn Shrinker>> = self
            .registry()
            .iter()
            .filter(|e| e.id != requester)
            .map(|e| e.shrinker.clone())
            .collect();
        let mut total = Shrunk::default();
        if others.is_empty() {
            return total;
        }
        let start = self.inner.shrink_cursor.fetch_add(1, Relaxed) % others.len();
        for i in 0..others.len() {
            if total.freed >= want {
                break;
            }
            let Some(shrinker) = others[(start + i) % others.len()].upgrade() else {
                continue;
            };
            let r = shrinker.try_shrink(want - total.freed);
            total.freed = total.freed.saturating_add(r.freed);
            total.busy |= r.busy;
        }
        total
    }

    /// Reserve up to `max` (at least `min`) bytes of work memory for
    /// `counters`, shrinking the other structures if needed and `shrink`
    /// allows. `None` if not even `min` bytes can be had.
    pub(crate) fn reserve(
        &self,
        requester: u64,
        counters: &Arc<Counters>,
        max: u64,
        min: u64,
        shrink: bool,
    ) -> Option<Reservation> {
        let min = min.min(max);
        for _ in 0..4 {
            let avail = self.inner.limit.saturating_sub(self.used());
            if avail < max && shrink && self.shrink_others(requester, max - avail).busy {
                std::thread::yield_now();
            }
            let avail = self.inner.limit.saturating_sub(self.used());
            let take = avail.min(max);
            if take >= min && self.try_charge(take, counters) {
                return Some(Reservation {
                    budget: self.clone(),
                    counters: Arc::clone(counters),
                    bytes: take,
                });
            }
        }
        None
    }
}

/// Adds `s` to the entry of its name in `into` (appending one if none).
fn fold_by_name(into: &mut Vec<StagingStats>, s: &StagingStats) {
    let Some(t) = into.iter_mut().find(|t| t.name == s.name) else {
        into.push(s.clone());
        return;
    };
    t.resident_bytes = t.resident_bytes.saturating_add(s.resident_bytes);
    t.peak_resident_bytes = t.peak_resident_bytes.max(s.peak_resident_bytes);
    t.bytes_staged = t.bytes_staged.saturating_add(s.bytes_staged);
    t.bytes_spilled = t.bytes_spilled.saturating_add(s.bytes_spilled);
    t.evictions = t.evictions.saturating_add(s.evictions);
    t.page_ins = t.page_ins.saturating_add(s.page_ins);
    t.leases_held = t.leases_held.saturating_add(s.leases_held);
    t.records = t.records.saturating_add(s.records);
    t.direct_reads = t.direct_reads.saturating_add(s.direct_reads);
    t.direct_writes = t.direct_writes.saturating_add(s.direct_writes);
    t.instances = t.instances.saturating_add(s.instances);
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.inner.limit)
            .field("used", &self.used())
            .finish()
    }
}

/// Work memory charged to a budget until dropped.
pub(crate) struct Reservation {
    budget: MemoryBudget,
    counters: Arc<Counters>,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.uncharge(self.bytes, &self.counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_respects_limit_and_tracks_peak() {
        let b = MemoryBudget::new(100);
        let c = Counters::new("a");
        assert!(b.try_charge(60, &c));
        assert!(!b.try_charge(41, &c));
        assert!(b.try_charge(40, &c));
        assert_eq!(b.used(), 100);
        b.uncharge(70, &c);
        assert_eq!(b.used(), 30);
        assert_eq!(c.resident.load(Relaxed), 30);
        assert_eq!(c.peak.load(Relaxed), 100);
        assert_eq!(b.inner.peak.load(Relaxed), 100);
        assert!(!b.try_charge(u64::MAX, &c));
    }

    #[test]
    fn snapshots_are_consistent_under_concurrent_charges() {
        struct Nothing;
        impl Shrinker for Nothing {
            fn try_shrink(&self, _: u64) -> Shrunk {
                Shrunk::default()
            }
        }
        // Two threads per structure: a structure's own charge and uncharge
        // race as well as those of different structures.
        let b = MemoryBudget::new(2);
        let shrinker: Arc<dyn Shrinker> = Arc::new(Nothing);
        let counters: Vec<Arc<Counters>> = (0..2)
            .map(|i| Arc::new(Counters::new(&format!("c{i}"))))
            .collect();
        for c in &counters {
            b.register(Arc::clone(c), Arc::downgrade(&shrinker));
        }
        let check = |st: &BudgetStats| {
            let sum: u64 = st.structures.iter().map(|x| x.resident_bytes).sum();
            assert_eq!(sum, st.total.resident_bytes);
            assert!(st.total.peak_resident_bytes <= 2, "{st:?}");
            for x in &st.structures {
                // A structure's peak can only come from a real instant.
                assert!(
                    x.peak_resident_bytes <= st.total.peak_resident_bytes,
                    "{st:?}"
                );
            }
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = counters
                .iter()
                .chain(&counters)
                .map(|c| {
                    let b = &b;
                    s.spawn(move || {
                        for _ in 0..300_000 {
                            if b.try_charge(1, c) {
                                b.uncharge(1, c);
                            }
                        }
                    })
                })
                .collect();
            while !workers.iter().all(|w| w.is_finished()) {
                check(&b.stats());
            }
        });
        // Peaks persist: a transient overcount anywhere shows up here.
        check(&b.stats());
    }

    #[test]
    fn per_name_stats_survive_drop() {
        struct Nothing;
        impl Shrinker for Nothing {
            fn try_shrink(&self, _: u64) -> Shrunk {
                Shrunk::default()
            }
        }
        let b = MemoryBudget::new(100);
        let shrinker: Arc<dyn Shrinker> = Arc::new(Nothing);
        let mk = |name: &str, charge: u64, staged: u64| {
            let c = Arc::new(Counters::new(name));
            let id = b.register(Arc::clone(&c), Arc::downgrade(&shrinker));
            assert!(b.try_charge(charge, &c));
            c.staged.store(staged, Relaxed);
            c.add_records(3);
            (c, id)
        };
        let (a1, id1) = mk("a", 40, 5);
        b.uncharge(40, &a1);
        b.unregister(id1);
        let (_a2, _) = mk("a", 30, 7);
        let (c, id3) = mk("b", 10, 1);
        b.uncharge(10, &c);
        b.unregister(id3);
        assert!(b.stats().structures.len() == 1, "only one live structure");
        let by = b.stats_by_name();
        assert_eq!(by.len(), 2);
        assert_eq!(
            (by[0].name.as_str(), by[0].instances, by[0].bytes_staged),
            ("a", 2, 12)
        );
        assert_eq!((by[0].peak_resident_bytes, by[0].resident_bytes), (40, 30));
        assert_eq!(by[0].records, 6);
        assert_eq!(
            (by[1].name.as_str(), by[1].instances, by[1].resident_bytes),
            ("b", 1, 0)
        );
    }

    #[test]
    fn zero_budget_charges_nothing() {
        let b = MemoryBudget::new(0);
        let c = Counters::new("a");
        assert!(b.try_charge(0, &c));
        assert!(!b.try_charge(1, &c));
    }

    #[test]
    fn add_records_saturates() {
        let c = Counters::new("a");
        c.add_records(5);
        c.add_records(-7);
        assert_eq!(c.records.load(Relaxed), 0);
        c.add_records(i64::MAX);
        c.add_records(i64::MAX);
        c.add_records(i64::MAX);
        assert_eq!(c.records.load(Relaxed), u64::MAX);
    }
}
