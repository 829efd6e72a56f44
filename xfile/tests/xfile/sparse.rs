//! SparseXfArray against a `HashMap` model.

use std::collections::HashMap;

use proptest::prelude::*;
use xfile::{MemoryBudget, SparseXfArray};

use crate::{check_budget, check_file, small_pages};

#[derive(Debug, Clone)]
enum Op {
    Set(u64, u64),
    Remove(u64),
    Get(u64),
    Iter,
    Clear,
}

/// Indices cluster in a few regions of a large space, so most pages are
/// holes; values include 0, which must still count as present.
fn index() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..600,
        100_000u64..100_300,
        5_000_000u64..5_000_050,
        Just(0)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (index(), prop_oneof![Just(0u64), any::<u64>()]).prop_map(|(i, v)| Op::Set(i, v)),
        2 => index().prop_map(Op::Remove),
        3 => index().prop_map(Op::Get),
        1 => Just(Op::Iter),
        1 => Just(Op::Clear),
    ]
}

fn run(ops: Vec<Op>) {
    let budget = MemoryBudget::new(2 * 4096);
    let mut s =
        SparseXfArray::<u64>::with_options("sparse", &budget, small_pages()).expect("create");
    let mut m: HashMap<u64, u64> = HashMap::new();
    for op in ops {
        match op {
            Op::Set(i, v) => {
                s.set(i, v).expect("set");
                m.insert(i, v);
            }
            Op::Remove(i) => assert_eq!(s.remove(i).expect("remove"), m.remove(&i), "remove {i}"),
            Op::Get(i) => {
                assert_eq!(s.get(i).expect("get"), m.get(&i).copied(), "get {i}");
                assert_eq!(s.contains(i).expect("contains"), m.contains_key(&i));
            }
            Op::Iter => {
                let got: Vec<(u64, u64)> =
                    s.iter_present().collect::<Result<_, _>>().expect("iter");
                let mut want: Vec<(u64, u64)> = m.iter().map(|(&k, &v)| (k, v)).collect();
                want.sort();
                assert_eq!(got, want);
            }
            Op::Clear => {
                s.clear().expect("clear");
                m.clear();
            }
        }
        assert_eq!(s.count(), m.len() as u64);
        assert_eq!(s.stats().records, m.len() as u64);
        check_file(s.file());
        check_budget(&budget);
    }
    let got: Vec<(u64, u64)> = s.iter_present().collect::<Result<_, _>>().expect("iter");
    let mut want: Vec<(u64, u64)> = m.into_iter().collect();
    want.sort();
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sparse_matches_hashmap(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

#[test]
fn zero_records_are_present_and_gaps_are_skipped() {
    let budget = MemoryBudget::new(1 << 20);
    let mut s =
        SparseXfArray::<[u8; 7]>::with_options("zeros", &budget, small_pages()).expect("create");
    assert_eq!(s.get(3).expect("get"), None);
    s.set(3, [0; 7]).expect("set");
    assert_eq!(s.get(3).expect("get"), Some([0; 7]));
    s.set(1 << 30, [1; 7]).expect("set far away");
    assert_eq!(s.bound(), (1 << 30) + 1);
    let got: Vec<_> = s.iter_present().collect::<Result<_, _>>().expect("iter");
    assert_eq!(got, vec![(3, [0; 7]), (1 << 30, [1; 7])]);
    // Only two pages were ever touched: the gap cost nothing.
    assert!(s.file().resident_pages() <= 2);
    assert_eq!(s.remove(3).expect("remove"), Some([0; 7]));
    assert_eq!(s.get(3).expect("get"), None);
    assert_eq!(s.count(), 1);
    assert!(
        s.get(u64::MAX).is_err(),
        "index beyond the addressable range"
    );
    assert!(s.set(u64::MAX / 2, [0; 7]).is_err());
}
