//! XFile against a `Vec<u8>` model, and its budget, lease and stats rules.

use std::collections::BTreeSet;

use proptest::prelude::*;
use xfile::{MemoryBudget, PageLease, StagingError, XFile, XFileOptions};

use crate::{check_budget, check_file, small_pages};

const PS: u64 = 4096;
const PAGES: u64 = 16;
const SPACE: u64 = PS * PAGES;

#[derive(Debug, Clone)]
enum Op {
    Write {
        off: u64,
        data: Vec<u8>,
    },
    WritePage {
        page: u64,
        fill: u8,
    },
    Read {
        off: u64,
        len: usize,
    },
    Discard {
        start: u64,
        len: u64,
    },
    Truncate {
        len: u64,
    },
    WithPage {
        page: u64,
        peek: u64,
    },
    WithPageMut {
        page: u64,
        pos: usize,
        byte: u8,
        peek: u64,
    },
    Lease {
        page: u64,
    },
    LeaseWrite {
        which: usize,
        pos: usize,
        byte: u8,
    },
    DropLease {
        which: usize,
    },
    SeekData {
        from: u64,
    },
    SeekHole {
        from: u64,
    },
    Ranges,
    Flush,
    DropCache,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SPACE, proptest::collection::vec(1u8..=255, 0..9000))
            .prop_map(|(off, data)| Op::Write { off, data }),
        2 => (0..PAGES, any::<u8>()).prop_map(|(page, fill)| Op::WritePage { page, fill }),
        3 => (0..SPACE + PS, 0usize..9000).prop_map(|(off, len)| Op::Read { off, len }),
        1 => (0..SPACE, 0..3 * PS).prop_map(|(start, len)| Op::Discard { start, len }),
        1 => (0..SPACE).prop_map(|len| Op::Truncate { len }),
        2 => (0..PAGES, 0..SPACE).prop_map(|(page, peek)| Op::WithPage { page, peek }),
        2 => (0..PAGES, 0..PS as usize, any::<u8>(), 0..SPACE)
            .prop_map(|(page, pos, byte, peek)| Op::WithPageMut { page, pos, byte, peek }),
        2 => (0..PAGES).prop_map(|page| Op::Lease { page }),
        1 => (0usize..4, 0..PS as usize, any::<u8>()).prop_map(|(which, pos, byte)| Op::LeaseWrite { which, pos, byte }),
        2 => (0usize..4).prop_map(|which| Op::DropLease { which }),
        1 => (0..SPACE).prop_map(|from| Op::SeekData { from }),
        1 => (0..SPACE).prop_map(|from| Op::SeekHole { from }),
        1 => Just(Op::Ranges),
        1 => Just(Op::Flush),
        1 => Just(Op::DropCache),
    ]
}

/// The reference: bytes and a length.
#[derive(Default)]
struct Model {
    bytes: Vec<u8>,
    len: u64,
}

impl Model {
    fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            // Writes no byte, so the length does not move (as with pwrite).
            return;
        }
        let end = off as usize + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[off as usize..end].copy_from_slice(data);
        self.len = self.len.max(end as u64);
    }
    fn byte(&self, i: u64) -> u8 {
        self.bytes.get(i as usize).copied().unwrap_or(0)
    }
    fn range(&self, off: u64, len: usize) -> Vec<u8> {
        (off..off + len as u64).map(|i| self.byte(i)).collect()
    }
    fn zero(&mut self, start: u64, end: u64) {
        for i in start..end.min(self.bytes.len() as u64) {
            self.bytes[i as usize] = 0;
        }
    }
    fn set_page_byte(&mut self, page: u64, pos: usize, byte: u8) {
        self.write(page * PS + pos as u64, &[byte]);
        self.len = self.len.max((page + 1) * PS);
    }
    fn first_nonzero(&self, from: u64) -> Option<u64> {
        (from..self.bytes.len() as u64).find(|&i| self.byte(i) != 0)
    }
}

/// A budget of two pages and three leases: with two distinct pages leased,
/// every other access goes around the cache, and pinning a third page must
/// fail with BudgetExhausted.
const BUDGET_PAGES: u64 = 2;
const MAX_LEASES: usize = 3;

fn run(ops: Vec<Op>) {
    let budget = MemoryBudget::new(BUDGET_PAGES * PS);
    let opts = XFileOptions {
        max_leases: MAX_LEASES,
        ..small_pages()
    };
    let f = XFile::with_options("model", &budget, opts).expect("create");
    let mut m = Model::default();
    let mut leases: Vec<PageLease<'_>> = Vec::new();
    let (mut last_total_peak, mut last_file_peak) = (0, 0);

    // Whether pinning `page` must succeed now.
    let pin_ok = |leases: &[PageLease<'_>], page: u64| {
        let distinct: BTreeSet<u64> = leases.iter().map(|l| l.page()).collect();
        distinct.contains(&page) || (distinct.len() as u64 + 1) <= BUDGET_PAGES
    };

    for op in ops {
        match op {
            Op::Write { off, data } => {
                f.write_at(&data, off).expect("write");
                m.write(off, &data);
            }
            Op::WritePage { page, fill } => {
                let data = vec![fill; PS as usize];
                f.write_at(&data, page * PS).expect("write page");
                m.write(page * PS, &data);
            }
            Op::Read { off, len } => {
                let mut buf = vec![0xEEu8; len];
                f.read_at(&mut buf, off).expect("read");
                assert_eq!(buf, m.range(off, len), "read {off}+{len}");
            }
            Op::Discard { start, len } => {
                f.discard(start..start + len).expect("discard");
                m.zero(start, start + len);
            }
            Op::Truncate { len } => {
                // Not while leases are held: truncating away a leased page
                // is allowed, but then the model must track it; keep simple.
                f.truncate(len).expect("truncate");
                m.zero(len, u64::MAX);
                m.bytes.truncate(len as usize);
                m.len = len;
            }
            Op::WithPage { page, peek } => {
                let ok = pin_ok(&leases, page);
                let r = f.with_page(page, |bytes| {
                    assert_eq!(
                        bytes,
                        &m.range(page * PS, PS as usize)[..],
                        "with_page {page}"
                    );
                    // Nested access to another page of the same file.
                    if peek / PS != page {
                        let mut b = [0u8; 1];
                        f.read_at(&mut b, peek).expect("nested read");
                        assert_eq!(b[0], m.byte(peek), "nested read at {peek}");
                    }
                });
                match r {
                    Ok(()) => assert!(ok, "with_page {page} succeeded with all memory pinned"),
                    Err(StagingError::BudgetExhausted { .. }) => {
                        assert!(!ok, "with_page {page} failed")
                    }
                    Err(e) => panic!("with_page: {e}"),
                }
            }
            Op::WithPageMut {
                page,
                pos,
                byte,
                peek,
            } => {
                let ok = pin_ok(&leases, page);
                let r = f.with_page_mut(page, |bytes| {
                    bytes[pos] = byte;
                    if peek / PS != page {
                        let mut b = [0u8; 1];
                        f.read_at(&mut b, peek).expect("nested read");
                        // The model is updated after the closure; peek is on
                        // another page, so it is unaffected.
                        assert_eq!(b[0], m.byte(peek), "nested read at {peek}");
                    }
                });
                match r {
                    Ok(()) => {
                        assert!(ok, "with_page_mut {page} succeeded with all memory pinned");
                        m.set_page_byte(page, pos, byte);
                    }
                    Err(StagingError::BudgetExhausted { .. }) => {
                        assert!(!ok, "with_page_mut {page} failed")
                    }
                    Err(e) => panic!("with_page_mut: {e}"),
                }
            }
            Op::Lease { page } => {
                let too_many = leases.len() >= MAX_LEASES;
                let ok = pin_ok(&leases, page);
                match f.lease(page) {
                    Ok(l) => {
                        assert!(!too_many && ok, "lease {page} granted beyond the limits");
                        assert_eq!(&l.read()[..], &m.range(page * PS, PS as usize)[..]);
                        leases.push(l);
                    }
                    Err(StagingError::TooManyLeases { limit }) => {
                        assert!(too_many);
                        assert_eq!(limit, MAX_LEASES);
                    }
                    Err(StagingError::BudgetExhausted { .. }) => assert!(!too_many && !ok),
                    Err(e) => panic!("lease: {e}"),
                }
            }
            Op::LeaseWrite { which, pos, byte } => {
                if let Some(l) = leases.get_mut(which) {
                    let page = l.page();
                    l.write()[pos] = byte;
                    m.set_page_byte(page, pos, byte);
                }
            }
            Op::DropLease { which } => {
                if which < leases.len() {
                    leases.remove(which);
                }
            }
            Op::SeekData { from } => {
                let r = f.seek_data(from).expect("seek_data");
                let first = m.first_nonzero(from);
                match r {
                    Some(p) => {
                        assert!(
                            p >= from && p < m.len,
                            "seek_data({from}) = {p}, len {}",
                            m.len
                        );
                        if let Some(q) = first {
                            assert!(p <= q, "seek_data({from}) = {p} skips data at {q}");
                        }
                    }
                    None => assert_eq!(first, None, "seek_data({from}) missed data"),
                }
            }
            Op::SeekHole { from } => {
                let h = f.seek_hole(from).expect("seek_hole");
                assert!(h >= from, "seek_hole({from}) = {h}");
                assert!(
                    h <= m.len.max(from),
                    "seek_hole({from}) = {h} past len {}",
                    m.len
                );
                assert_eq!(m.byte(h), 0, "seek_hole({from}) = {h} is not zero");
            }
            Op::Ranges => {
                let ranges: Vec<_> = f.data_ranges(0).collect::<Result<_, _>>().expect("ranges");
                let mut prev = 0;
                for r in &ranges {
                    assert!(
                        r.start >= prev && r.start < r.end && r.end <= m.len,
                        "{ranges:?}"
                    );
                    prev = r.end;
                }
                for (i, &b) in m.bytes.iter().enumerate() {
                    if b != 0 {
                        let i = i as u64;
                        assert!(
                            ranges.iter().any(|r| r.contains(&i)),
                            "byte {i} not in {ranges:?}"
                        );
                    }
                }
            }
            Op::Flush => f.flush().expect("flush"),
            Op::DropCache => {
                f.drop_cache().expect("drop cache");
                let distinct: BTreeSet<u64> = leases.iter().map(|l| l.page()).collect();
                assert_eq!(f.resident_pages(), distinct.len(), "only leased pages stay");
            }
        }
        assert_eq!(f.len(), m.len, "len");
        assert_eq!(f.stats().leases_held, leases.len() as u64);
        check_file(&f);
        check_budget(&budget);
        // Peaks never go down.
        let (tp, fp) = (
            budget.stats().total.peak_resident_bytes,
            f.stats().peak_resident_bytes,
        );
        assert!(
            tp >= last_total_peak && fp >= last_file_peak,
            "peak went down"
        );
        (last_total_peak, last_file_peak) = (tp, fp);
    }
    drop(leases);
    // Everything reads back at the end, from cache or file.
    let mut all = vec![0u8; SPACE as usize + PS as usize];
    f.read_at(&mut all, 0).expect("final read");
    assert_eq!(all, m.range(0, all.len()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn xfile_matches_vec_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn zero_budget_does_plain_io_and_refuses_pins() {
    let budget = MemoryBudget::new(0);
    let f = XFile::with_options("zero", &budget, small_pages()).expect("create");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    f.write_at(&data, 123).expect("write");
    let mut back = vec![0u8; data.len()];
    f.read_at(&mut back, 123).expect("read");
    assert_eq!(back, data);
    assert_eq!(f.resident_pages(), 0);
    let st = f.stats();
    assert!(st.direct_writes > 0 && st.direct_reads > 0, "{st:?}");
    assert_eq!(st.bytes_spilled, data.len() as u64);
    assert!(matches!(
        f.with_page(0, |_| ()),
        Err(StagingError::BudgetExhausted { .. })
    ));
    assert!(matches!(
        f.with_page_mut(0, |_| ()),
        Err(StagingError::BudgetExhausted { .. })
    ));
    assert!(matches!(
        f.lease(0),
        Err(StagingError::BudgetExhausted { .. })
    ));
    assert_eq!(f.stats().leases_held, 0);
    // Sub-page budget behaves the same.
    let tiny = MemoryBudget::new(100);
    let g = XFile::with_options("tiny", &tiny, small_pages()).expect("create");
    g.write_at(&data, 0).expect("write");
    g.discard(10..20_000).expect("discard");
    g.read_at(&mut back, 0).expect("read");
    assert_eq!(&back[..10], &data[..10]);
    assert!(back[10..20_000].iter().all(|&b| b == 0));
    assert_eq!(&back[20_000..], &data[20_000..]);
}

#[test]
fn too_many_leases_fails_at_once() {
    let budget = MemoryBudget::new(1 << 20);
    let opts = XFileOptions {
        max_leases: 2,
        ..small_pages()
    };
    let f = XFile::with_options("leases", &budget, opts).expect("create");
    let mut a = f.lease(0).expect("lease");
    let b = f.lease(0).expect("same page twice is two leases");
    let e = f.lease(1).expect_err("third lease");
    assert!(matches!(e, StagingError::TooManyLeases { limit: 2 }), "{e}");
    assert!(e.to_string().contains("too many page leases"), "{e}");
    assert_eq!(f.stats().leases_held, 2);
    a.write()[7] = 42;
    assert_eq!(b.read()[7], 42);
    // Leased pages survive drop_cache (they are pinned).
    f.drop_cache().expect("drop");
    assert_eq!(f.resident_pages(), 1);
    drop(a);
    drop(b);
    assert_eq!(f.stats().leases_held, 0);
    f.drop_cache().expect("drop");
    assert_eq!(f.resident_pages(), 0);
    assert_eq!(f.load::<u8>(7).expect("load"), 42);
    assert_eq!(f.len(), PS, "a lease write counts the whole page");
    let _c = f.lease(1).expect("leases are released on drop");
}

#[test]
fn pinned_pages_are_never_evicted_and_charges_stay_within_the_limit() {
    let budget = MemoryBudget::new(4 * PS);
    let f = XFile::with_options("pins", &budget, small_pages()).expect("create");
    let other = XFile::with_options("other", &budget, small_pages()).expect("create");
    let mut l0 = f.lease(0).expect("lease");
    l0.write().fill(9);
    let mut l1 = f.lease(1).expect("lease");
    l1.write().fill(8);
    // Churn through many pages of both files.
    for i in 0..64u64 {
        f.write_at(&[i as u8; 100], (i + 2) * PS).expect("write f");
        other
            .write_at(&[i as u8; 100], i * PS)
            .expect("write other");
        check_budget(&budget);
    }
    assert!(l0.read().iter().all(|&b| b == 9));
    assert!(l1.read().iter().all(|&b| b == 8));
    let s = budget.stats();
    assert!(s.total.peak_resident_bytes <= 4 * PS, "{s:#?}");
    // With two leased pages, exactly two more can be pinned in total.
    let r = f.with_page(5, |_| other.with_page(7, |_| f.with_page(9, |_| ())));
    match r {
        Ok(Ok(Err(StagingError::BudgetExhausted { .. }))) => {}
        other => panic!("expected the third nested pin to fail, got {other:?}"),
    }
}

#[test]
fn stats_are_exact_and_entries_go_away_on_drop() {
    let budget = MemoryBudget::new(64 * PS);
    let a = XFile::with_options("a", &budget, small_pages()).expect("create");
    let b = XFile::with_options("b", &budget, small_pages()).expect("create");
    a.write_at(&vec![1u8; 3 * PS as usize], 0).expect("write");
    a.add_records(3);
    assert_eq!(a.stats().resident_bytes, 3 * PS);
    assert_eq!(a.stats().bytes_staged, 3 * PS);
    a.drop_cache().expect("drop");
    assert_eq!(a.stats().bytes_spilled, 3 * PS);
    assert_eq!(a.stats().resident_bytes, 0);
    b.write_at(&vec![2u8; 3 * PS as usize], 0).expect("write");
    let s = budget.stats();
    assert_eq!(s.structures.len(), 2);
    assert_eq!(s.structures[0].name, "a");
    assert_eq!(s.structures[0].peak_resident_bytes, 3 * PS);
    assert_eq!(s.structures[1].peak_resident_bytes, 3 * PS);
    // The total's peak is the peak of the sum (3 pages), not the sum of
    // the peaks (6 pages).
    assert_eq!(s.total.peak_resident_bytes, 3 * PS);
    assert_eq!(s.total.records, 3);
    check_budget(&budget);
    // Reading back pages counts page-ins.
    let mut buf = vec![0u8; 2 * PS as usize];
    a.read_at(&mut buf, 0).expect("read");
    assert!(buf.iter().all(|&x| x == 1));
    assert_eq!(a.stats().page_ins, 2);
    drop(a);
    let s = budget.stats();
    assert_eq!(s.structures.len(), 1);
    assert_eq!(s.structures[0].name, "b");
    assert_eq!(s.total.resident_bytes, 3 * PS);
    assert_eq!(
        budget.used(),
        3 * PS,
        "the dropped file's pages were uncharged"
    );
    drop(b);
    assert_eq!(budget.used(), 0);
    assert!(budget.stats().structures.is_empty());
}

#[test]
fn eviction_spills_and_pages_back_in() {
    let budget = MemoryBudget::new(4 * PS);
    let f = XFile::with_options("spill", &budget, small_pages()).expect("create");
    for i in 0..32u64 {
        f.write_at(&[i as u8 + 1; PS as usize], i * PS)
            .expect("write");
    }
    let st = f.stats();
    assert_eq!(st.resident_bytes, 4 * PS);
    assert_eq!(st.evictions, 28);
    assert_eq!(st.bytes_spilled, 28 * PS);
    for i in 0..32u64 {
        assert_eq!(f.load::<u8>(i * PS + 5).expect("load"), i as u8 + 1);
    }
    assert!(f.stats().page_ins >= 28);
    check_budget(&budget);
}

#[test]
fn a_full_budget_is_taken_from_other_files() {
    let budget = MemoryBudget::new(4 * PS);
    let a = XFile::with_options("a", &budget, small_pages()).expect("create");
    a.write_at(&vec![1u8; 4 * PS as usize], 0).expect("write");
    assert_eq!(a.resident_pages(), 4);
    let b = XFile::with_options("b", &budget, small_pages()).expect("create");
    // b has nothing of its own to evict: it must shrink a.
    b.with_page_mut(0, |p| p[0] = 5).expect("pin in b");
    assert_eq!(a.resident_pages(), 3);
    assert_eq!(b.resident_pages(), 1);
    assert_eq!(a.stats().evictions, 1);
    let mut buf = vec![0u8; 4 * PS as usize];
    a.read_at(&mut buf, 0).expect("read");
    assert!(buf.iter().all(|&x| x == 1));
    check_budget(&budget);
}

#[test]
fn discard_punches_holes_and_seek_skips_them() {
    let budget = MemoryBudget::new(1 << 20);
    let f = XFile::with_options("holes", &budget, small_pages()).expect("create");
    f.write_at(&[7u8; 10 * PS as usize], 0).expect("write");
    f.drop_cache().expect("drop");
    f.discard(PS + 10..6 * PS).expect("discard");
    assert_eq!(f.len(), 10 * PS, "discard keeps the length");
    assert_eq!(f.load::<u8>(PS + 9).expect("load"), 7);
    assert_eq!(f.load::<u8>(PS + 10).expect("load"), 0);
    assert_eq!(f.load::<u8>(6 * PS).expect("load"), 7);
    // Pages 2..6 are holes in the file; page 1 is partly zeroed data.
    assert_eq!(f.seek_hole(0).expect("hole"), 2 * PS);
    assert_eq!(f.seek_data(2 * PS).expect("data"), Some(6 * PS));
    let ranges: Vec<_> = f.data_ranges(0).collect::<Result<_, _>>().expect("ranges");
    assert_eq!(ranges, vec![0..2 * PS, 6 * PS..10 * PS]);
    // A dirty cached page is data even though the file has a hole there.
    f.with_page_mut(3, |p| p[1] = 1).expect("dirty");
    assert_eq!(f.seek_data(2 * PS).expect("data"), Some(3 * PS));
    assert_eq!(f.seek_hole(3 * PS).expect("hole"), 4 * PS);
    // Past the length everything is a hole.
    assert_eq!(f.seek_data(10 * PS).expect("data"), None);
    assert_eq!(f.seek_hole(11 * PS).expect("hole"), 11 * PS);
    f.truncate(PS / 2).expect("truncate");
    assert_eq!(f.len(), PS / 2);
    assert_eq!(f.load::<u8>(PS / 2).expect("load"), 0);
    assert_eq!(f.seek_data(PS).expect("data"), None);
    f.truncate(3 * PS).expect("grow");
    assert_eq!(f.load::<u8>(2 * PS).expect("load"), 0);
    assert_eq!(f.load::<u8>(PS / 2 - 1).expect("load"), 7);
}

#[test]
fn backing_file_is_never_reachable_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = MemoryBudget::new(0);
    let opts = XFileOptions {
        tmpdir: Some(dir.path().to_owned()),
        ..small_pages()
    };
    let f = XFile::with_options("private", &budget, opts).expect("create");
    f.write_at(b"secret", 0).expect("write");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("readdir").collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn bad_options_and_ranges_are_errors() {
    let budget = MemoryBudget::new(1 << 20);
    for ps in [0usize, 1000, 2048, 4097, 1 << 25] {
        let opts = XFileOptions {
            page_size: ps,
            ..XFileOptions::default()
        };
        let e = XFile::with_options("bad", &budget, opts).expect_err("bad page size");
        assert!(matches!(e, StagingError::InvalidOptions { .. }), "{e}");
    }
    let f = XFile::create("ranges", &budget).expect("create");
    assert_eq!(f.page_size(), 65536);
    let e = f.write_at(b"xy", u64::MAX - 1).expect_err("past the end");
    assert!(matches!(e, StagingError::OutOfRange { .. }), "{e}");
    let mut b = [0u8; 2];
    assert!(f.read_at(&mut b, u64::MAX).is_err());
    assert!(f.with_page(u64::MAX, |_| ()).is_err());
    assert!(f.truncate(u64::MAX).is_err());
    assert!(f.discard(5..u64::MAX).is_err());
    let (hi, lo) = (9, 3);
    f.discard(hi..lo).expect("an empty range is fine");
    // Largest offsets work.
    f.write_at(b"end", f.max_len() - 3)
        .expect("write at the end");
    f.read_at(&mut b, f.max_len() - 2).expect("read at the end");
    assert_eq!(&b, b"nd");
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = XFileOptions {
        tmpdir: Some(tmp.path().join("does-not-exist")),
        ..XFileOptions::default()
    };
    let e = XFile::with_options("nodir", &budget, missing).expect_err("missing tmpdir");
    assert!(matches!(e, StagingError::Io { .. }), "{e}");
    assert!(e.to_string().contains("create the backing file"), "{e}");
}

#[test]
fn records_figure_follows_add_records() {
    let budget = MemoryBudget::new(0);
    let f = XFile::create("recs", &budget).expect("create");
    f.add_records(10);
    f.add_records(-3);
    assert_eq!(f.stats().records, 7);
    f.add_records(-100);
    assert_eq!(f.stats().records, 0);
}

#[test]
fn reading_holes_caches_nothing() {
    let budget = MemoryBudget::new(1 << 20);
    let f = XFile::with_options("holes-read", &budget, small_pages()).expect("create");
    f.write_at(b"tail", 100 * PS).expect("write");
    let mut buf = vec![0xffu8; 64 * PS as usize];
    f.read_at(&mut buf, 0).expect("read a never-written region");
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(f.resident_pages(), 1, "only the written page is cached");
    assert_eq!(f.stats().page_ins, 0);
    // Once written back, the page is read from the file like any other.
    f.drop_cache().expect("drop");
    assert_eq!(f.load::<[u8; 4]>(100 * PS).expect("load"), *b"tail");
    assert_eq!(f.stats().page_ins, 1);
}
