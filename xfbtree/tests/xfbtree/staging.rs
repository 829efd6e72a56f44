//! Staging trees in pageable memory: bigger than their budget, still right.

use crate::common::assert_clean;
use std::ops::Bound;
use xfbtree::formats::U64Map;
use xfbtree::{BloadOptions, Btree, Lookup, XfileStore};
use xfile::MemoryBudget;

const BUDGET: u64 = 8 << 20;

fn value(k: u64) -> u64 {
    k.rotate_left(17) ^ 0x5555_5555
}

/// Five million records (about 100 MiB of blocks) under an 8 MiB budget:
/// the tree spills, and every kind of query still answers right.
#[test]
fn five_million_records_under_an_eight_mib_budget() {
    let budget = MemoryBudget::new(BUDGET);
    let store = XfileStore::new("staging-5m", &budget, 4096).unwrap();
    let n = 5_000_000u64;
    let mut tree = Btree::bulk_load(
        store,
        U64Map::default(),
        n,
        (0..n).map(|i| Ok::<_, std::io::Error>((i * 3, value(i * 3)))),
        &BloadOptions::default(),
    )
    .unwrap();
    assert!(tree.height() >= 3);
    let blocks = tree.store().allocated();
    assert!(
        blocks * 4096 > 10 * BUDGET,
        "the tree must be much bigger than the budget"
    );

    // Point and nearest lookups at pseudo-random places.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = x % (3 * n + 10);
        let hit = (k.is_multiple_of(3) && k < 3 * n).then(|| (k, value(k)));
        assert_eq!(tree.lookup(&k, Lookup::Eq).unwrap(), hit, "eq {k}");
        let le = (k.min(3 * (n - 1)) / 3) * 3;
        assert_eq!(
            tree.lookup(&k, Lookup::Le).unwrap(),
            Some((le, value(le))),
            "le {k}"
        );
        let ge = k.div_ceil(3) * 3;
        let want = (ge < 3 * n).then(|| (ge, value(ge)));
        assert_eq!(tree.lookup(&k, Lookup::Ge).unwrap(), want, "ge {k}");
    }
    // A range in the middle.
    let got: Vec<u64> = tree
        .range(Bound::Included(&6_000_000), Bound::Excluded(&6_003_000))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        got,
        (2_000_000..2_001_000).map(|i| i * 3).collect::<Vec<_>>()
    );
    assert_eq!(tree.count_records().unwrap(), n);

    // Changes on top of the spilled tree.
    for i in (0..n).step_by(50) {
        tree.insert(&(i * 3 + 1, 7)).unwrap();
        tree.delete(&(i * 3 + 3)).unwrap();
    }
    assert_eq!(tree.count_records().unwrap(), n);
    assert_eq!(tree.get(&(150 * 3 + 1)).unwrap(), Some((451, 7)));
    assert_eq!(tree.get(&(150 * 3 + 3)).unwrap(), None);
    assert_clean(&tree);

    let stats = budget.stats();
    eprintln!(
        "staging tree: {} blocks; peak resident {} B of a {} B budget; {} B spilled, {} evictions, {} page-ins",
        blocks,
        stats.total.peak_resident_bytes,
        BUDGET,
        stats.total.bytes_spilled,
        stats.total.evictions,
        stats.total.page_ins
    );
    assert!(stats.total.peak_resident_bytes <= BUDGET);
    assert!(stats.total.bytes_spilled > 0 && stats.total.page_ins > 0);
}
