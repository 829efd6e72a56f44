//! XfArray against a `Vec` model, with a budget of a few pages.

use proptest::prelude::*;
use xfile::{MemoryBudget, StagingError, XfArray};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{check_budget, check_file, small_pages};

/// A 12-byte record: does not divide the page size, so records straddle
/// page boundaries.
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[repr(C)]
struct Rec {
    key: u32,
    a: u32,
    b: u32,
}

fn rec() -> impl Strategy<Value = Rec> {
    // Few distinct keys: plenty of duplicates.
    (0u32..40, any::<u32>(), any::<u32>()).prop_map(|(key, a, b)| Rec { key, a, b })
}

#[derive(Debug, Clone)]
enum Op {
    Append(Rec),
    AppendMany(u32, u32),
    Extend(Vec<Rec>),
    Set(u64, Rec),
    Get(u64),
    Truncate(u64),
    SortFull,
    SortByKey,
    Iter,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => rec().prop_map(Op::Append),
        2 => (0u32..3000, any::<u32>()).prop_map(|(n, seed)| Op::AppendMany(n, seed)),
        2 => proptest::collection::vec(rec(), 0..1500).prop_map(Op::Extend),
        3 => (any::<u64>(), rec()).prop_map(|(i, r)| Op::Set(i, r)),
        3 => any::<u64>().prop_map(Op::Get),
        1 => any::<u64>().prop_map(Op::Truncate),
        1 => Just(Op::SortFull),
        1 => Just(Op::SortByKey),
        1 => Just(Op::Iter),
        1 => Just(Op::Flush),
    ]
}

fn lcg(s: &mut u64) -> u32 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*s >> 33) as u32
}

fn run(budget_pages: u64, ops: Vec<Op>) {
    let budget = MemoryBudget::new(budget_pages * 4096);
    let mut a = XfArray::<Rec>::with_options("array", &budget, small_pages()).expect("create");
    let mut m: Vec<Rec> = Vec::new();
    for op in ops {
        match op {
            Op::Append(r) => {
                a.append(r).expect("append");
                m.push(r);
            }
            Op::AppendMany(n, seed) => {
                let mut s = u64::from(seed);
                for _ in 0..n {
                    let r = Rec {
                        key: lcg(&mut s) % 500,
                        a: lcg(&mut s),
                        b: lcg(&mut s),
                    };
                    a.append(r).expect("append");
                    m.push(r);
                }
            }
            Op::Extend(v) => {
                a.extend_from_slice(&v).expect("extend");
                m.extend_from_slice(&v);
            }
            Op::Set(i, r) => {
                let len = m.len() as u64;
                if len > 0 {
                    let i = i % len;
                    a.set(i, r).expect("set");
                    m[i as usize] = r;
                }
                let e = a.set(len, r).expect_err("set past the end");
                assert!(matches!(e, StagingError::OutOfRange { .. }), "{e}");
            }
            Op::Get(i) => {
                let len = m.len() as u64;
                if len > 0 {
                    let i = i % len;
                    assert_eq!(a.get(i).expect("get"), m[i as usize], "get {i}");
                }
                assert!(a.get(len).is_err());
            }
            Op::Truncate(n) => {
                let n = n % (m.len() as u64 + 2);
                a.truncate(n).expect("truncate");
                m.truncate(n as usize);
            }
            Op::SortFull => {
                a.sort_by(|x, y| x.cmp(y)).expect("sort");
                m.sort();
            }
            Op::SortByKey => {
                // Unstable: compare the key sequence and the multiset.
                a.sort_by_key(|r| r.key).expect("sort");
                m.sort_by_key(|r| r.key);
                let got: Vec<Rec> = a.iter().collect::<Result<_, _>>().expect("iter");
                assert_eq!(
                    got.iter().map(|r| r.key).collect::<Vec<_>>(),
                    m.iter().map(|r| r.key).collect::<Vec<_>>()
                );
                let (mut g, mut w) = (got.clone(), m.clone());
                g.sort();
                w.sort();
                assert_eq!(g, w, "sort_by_key lost or invented records");
                m = got;
            }
            Op::Iter => {
                let got: Vec<Rec> = a.iter().collect::<Result<_, _>>().expect("iter");
                assert_eq!(got, m);
                assert_eq!(a.iter().len(), m.len());
            }
            Op::Flush => a.flush().expect("flush"),
        }
        assert_eq!(a.len(), m.len() as u64);
        assert_eq!(a.stats().records, m.len() as u64);
        check_file(a.file());
        check_budget(&budget);
    }
    let got: Vec<Rec> = a.iter().collect::<Result<_, _>>().expect("iter");
    assert_eq!(got, m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Three pages: every sort of more than a page and a half is external.
    #[test]
    fn xfarray_matches_vec_tiny_budget(ops in proptest::collection::vec(op(), 1..30)) {
        run(3, ops);
    }

    /// Plenty of memory: the in-memory sort path.
    #[test]
    fn xfarray_matches_vec_large_budget(ops in proptest::collection::vec(op(), 1..30)) {
        run(1024, ops);
    }
}

#[test]
fn sort_many_times_larger_than_the_budget() {
    // 200 000 records of 12 bytes (2.4 MB) under a 32 KiB budget: runs of
    // 16 KiB, several merge passes.
    let budget = MemoryBudget::new(8 * 4096);
    let mut a = XfArray::<Rec>::with_options("big", &budget, small_pages()).expect("create");
    let mut m = Vec::new();
    let mut s = 7u64;
    for i in 0..200_000u32 {
        let r = Rec {
            key: lcg(&mut s) % 10_000,
            a: i,
            b: 0,
        };
        m.push(r);
    }
    a.extend_from_slice(&m).expect("extend");
    a.sort_by(|x, y| x.key.cmp(&y.key).then(x.a.cmp(&y.a)))
        .expect("sort");
    m.sort();
    let got: Vec<Rec> = a.iter().collect::<Result<_, _>>().expect("iter");
    assert!(got == m, "sorted array differs from Vec::sort");
    let s = budget.stats();
    assert!(s.total.peak_resident_bytes <= 8 * 4096, "{s:#?}");
    assert!(
        a.stats().bytes_spilled >= 2 * 2_400_000,
        "external sort writes runs and merges"
    );
    assert_eq!(
        s.structures.len(),
        1,
        "the scratch file is gone after the sort"
    );
    check_budget(&budget);
}

#[test]
fn zero_sized_and_u8_records() {
    let budget = MemoryBudget::new(4096);
    let mut z = XfArray::<()>::with_options("zst", &budget, small_pages()).expect("create");
    for _ in 0..10_000 {
        z.append(()).expect("append");
    }
    assert_eq!(z.len(), 10_000);
    z.sort_by(|_, _| std::cmp::Ordering::Equal).expect("sort");
    assert_eq!(z.iter().count(), 10_000);
    let mut b = XfArray::<u8>::with_options("bytes", &budget, small_pages()).expect("create");
    for i in 0..20_000u32 {
        b.append((i * 7 % 256) as u8).expect("append");
    }
    b.sort_by(|x, y| y.cmp(x)).expect("sort desc");
    let v: Vec<u8> = b.iter().collect::<Result<_, _>>().expect("iter");
    assert!(v.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(v.len(), 20_000);
}
