//! Random operation sequences against a `BTreeMap` model.

use crate::common::{assert_clean, backwards, forwards};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;
use xfbtree::formats::U64Map;
use xfbtree::{Btree, BtreeError, Lookup, MemStore, XfileStore};

/// 128-byte blocks hold 5 records or 5 node entries, so a few hundred
/// records already make a tree of four or more levels.
const BLOCK: usize = 128;

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64),
    Delete(u64),
    Update(u64, u64),
    Lookup(u64, u8),
    Range(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u64..1500;
    prop_oneof![
        6 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => key.clone().prop_map(Op::Delete),
        1 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Update(k, v)),
        2 => (key.clone(), 0u8..3).prop_map(|(k, m)| Op::Lookup(k, m)),
        1 => (key.clone(), key).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b))),
    ]
}

fn model_lookup(m: &BTreeMap<u64, u64>, k: u64, mode: Lookup) -> Option<(u64, u64)> {
    let hit = match mode {
        Lookup::Eq => m.get_key_value(&k),
        Lookup::Le => m.range(..=k).next_back(),
        Lookup::Ge => m.range(k..).next(),
    };
    hit.map(|(k, v)| (*k, *v))
}

fn run(ops: &[Op]) {
    run_on(MemStore::new(BLOCK), ops);
    // Staging memory of three pages (96 blocks): nearly every access evicts.
    let budget = xfile::MemoryBudget::new(3 * 4096);
    run_on(XfileStore::new("model", &budget, BLOCK).unwrap(), ops);
    assert!(budget.stats().total.peak_resident_bytes <= 3 * 4096);
}

fn run_on<S: xfbtree::BlockStore>(store: S, ops: &[Op]) {
    let mut tree = Btree::create(store, U64Map::default()).unwrap();
    let mut model = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(k, v) => {
                let r = tree.insert(&(k, v));
                if let std::collections::btree_map::Entry::Vacant(e) = model.entry(k) {
                    r.unwrap();
                    e.insert(v);
                } else {
                    assert!(matches!(r, Err(BtreeError::Duplicate)), "op {i}: {r:?}");
                }
            }
            Op::Delete(k) => {
                assert_eq!(
                    tree.delete(&k).unwrap(),
                    model.remove(&k).map(|v| (k, v)),
                    "op {i}"
                );
            }
            Op::Update(k, v) => {
                let old = model
                    .get_mut(&k)
                    .map(|slot| (k, std::mem::replace(slot, v)));
                assert_eq!(tree.update(&(k, v)).unwrap(), old, "op {i}");
            }
            Op::Lookup(k, m) => {
                let mode = [Lookup::Eq, Lookup::Le, Lookup::Ge][usize::from(m)];
                assert_eq!(
                    tree.lookup(&k, mode).unwrap(),
                    model_lookup(&model, k, mode),
                    "op {i} {mode:?}"
                );
            }
            Op::Range(a, b) => {
                let got: Vec<_> = tree
                    .range(Bound::Included(&a), Bound::Excluded(&b))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let want: Vec<_> = model.range(a..b).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want, "op {i} range {a}..{b}");
            }
        }
        if i % 64 == 0 {
            assert_clean(&tree);
        }
    }
    assert_clean(&tree);
    let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(forwards(&tree), want);
    assert_eq!(backwards(&tree), want);
    assert_eq!(tree.len().unwrap(), model.len() as u64);
    assert_eq!(tree.count_records().unwrap(), model.len() as u64);
    assert_eq!(tree.first().unwrap(), want.first().copied());
    assert_eq!(tree.last().unwrap(), want.last().copied());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_btreemap(ops in prop::collection::vec(op(), 1..1500)) {
        run(&ops);
    }
}

/// Grows a tree to at least four levels, then shrinks it to nothing, checking
/// it after every step: exercises splits, root growth, borrowing, merging and
/// root collapse at every level.
#[test]
fn grow_to_four_levels_and_shrink_to_empty() {
    // Checksums on: a write path that forgot to seal its block shows up.
    let format = U64Map::default().with_checksums();
    let mut tree = Btree::create(MemStore::new(BLOCK), format).unwrap();
    let n = 3000u64;
    // A fixed permutation: multiplication by an odd number modulo a power of two.
    let keys: Vec<u64> = (0..4096u64)
        .map(|i| (i * 2_654_435_761) % 4096)
        .filter(|k| *k < n)
        .collect();
    let mut max_height = 0;
    for (i, k) in keys.iter().enumerate() {
        tree.insert(&(*k, !*k)).unwrap();
        max_height = max_height.max(tree.height());
        if i % 97 == 0 {
            assert_clean(&tree);
        }
    }
    assert!(max_height >= 4, "height only {max_height}");
    assert_clean(&tree);
    assert_eq!(forwards(&tree).len() as u64, n);
    let blocks_full = tree.store().allocated();
    for (i, k) in keys.iter().rev().enumerate() {
        assert_eq!(tree.delete(k).unwrap(), Some((*k, !*k)));
        if i % 89 == 0 {
            assert_clean(&tree);
        }
    }
    assert_clean(&tree);
    assert_eq!(tree.height(), 1);
    assert!(tree.first().unwrap().is_none());
    assert_eq!(
        tree.store().allocated(),
        1,
        "every block but the root returned (had {blocks_full})"
    );
}
