//! Overlapping-interval trees against brute force.

use crate::common::{assert_clean, forwards};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use xfbtree::formats::{Interval, IntervalKey, Intervals};
use xfbtree::{BloadOptions, Btree, BtreeFormat, MemStore};

/// 200-byte blocks: 6 records per leaf, 4 entries per node.
const BLOCK: usize = 200;

fn overlapping(
    tree: &Btree<MemStore, Intervals>,
    lo: IntervalKey,
    hi: IntervalKey,
) -> Vec<Interval> {
    let mut out = Vec::new();
    tree.query_overlapping(&lo, &hi, |r| {
        out.push(*r);
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn brute(
    model: &BTreeMap<IntervalKey, Interval>,
    lo: IntervalKey,
    hi: IntervalKey,
) -> Vec<Interval> {
    let f = Intervals::default();
    model
        .values()
        .filter(|r| f.record_key(r) <= hi && f.record_high_key(r) >= lo)
        .copied()
        .collect()
}

fn interval() -> impl Strategy<Value = Interval> {
    (0u64..2000, 1u64..80, 0u64..6).prop_map(|(start, len, owner)| Interval { start, len, owner })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn overlap_queries_match_brute_force(
        inserts in prop::collection::vec(interval(), 1..600),
        deletes in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
        queries in prop::collection::vec((0u64..2100, 0u64..100, 0u64..7, 0u64..7), 1..40),
    ) {
        let f = Intervals::default().with_checksums();
        let mut tree = Btree::create(MemStore::new(BLOCK), f).unwrap();
        let mut model = BTreeMap::new();
        for r in &inserts {
            if let std::collections::btree_map::Entry::Vacant(e) = model.entry(f.record_key(r)) {
                e.insert(*r);
                tree.insert(r).unwrap();
            }
        }
        for d in &deletes {
            let keys: Vec<_> = model.keys().copied().collect();
            if keys.is_empty() { break; }
            let k = keys[d.index(keys.len())];
            prop_assert_eq!(tree.delete(&k).unwrap(), model.remove(&k));
        }
        // Updates change high keys without moving records.
        let some: Vec<_> = model.values().copied().step_by(7).collect();
        for mut r in some {
            r.len += 13;
            model.insert(f.record_key(&r), r);
            prop_assert!(tree.update(&r).unwrap().is_some());
        }
        assert_clean(&tree);
        for (start, span, o1, o2) in queries {
            let lo = IntervalKey { start, owner: o1 };
            let hi = IntervalKey { start: start + span, owner: o2 };
            prop_assert_eq!(overlapping(&tree, lo, hi), brute(&model, lo, hi));
            // "Is anything mapped here?": owner masked out of the query.
            let lo = IntervalKey { start, owner: 0 };
            let hi = IntervalKey { start: start + span, owner: u64::MAX };
            prop_assert_eq!(overlapping(&tree, lo, hi), brute(&model, lo, hi));
        }
        prop_assert_eq!(forwards(&tree), model.values().copied().collect::<Vec<_>>());
    }
}

#[test]
fn bulk_loaded_overlapping_tree_answers_queries() {
    let f = Intervals::default();
    let recs: Vec<Interval> = (0..5000u64)
        .map(|i| Interval {
            start: i * 3,
            len: 1 + (i * 7919) % 50,
            owner: i % 4,
        })
        .collect();
    let mut sorted = recs.clone();
    sorted.sort_by_key(|r| f.record_key(r));
    let tree = Btree::bulk_load(
        MemStore::new(512),
        f,
        sorted.len() as u64,
        sorted.iter().map(|r| Ok::<_, std::io::Error>(*r)),
        &BloadOptions::default(),
    )
    .unwrap();
    assert!(tree.height() >= 3);
    assert_clean(&tree);
    let model: BTreeMap<_, _> = sorted.iter().map(|r| (f.record_key(r), *r)).collect();
    for start in (0..15_100).step_by(997) {
        let lo = IntervalKey { start, owner: 0 };
        let hi = IntervalKey {
            start: start + 40,
            owner: u64::MAX,
        };
        assert_eq!(overlapping(&tree, lo, hi), brute(&model, lo, hi));
    }
}
