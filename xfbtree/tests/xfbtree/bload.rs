//! The bulk loader: geometry, shapes at the edges, and trees that stay
//! valid when changed afterwards.

use crate::common::{assert_clean, backwards, forwards};
use xfbtree::formats::U64Map;
use xfbtree::{BloadOptions, Btree, BtreeError, Geometry, Layout, MemStore, Root, bulk_load};

fn load(n: u64, block: usize, opts: &BloadOptions) -> Btree<MemStore, U64Map> {
    let tree = Btree::bulk_load(
        MemStore::new(block),
        U64Map::default(),
        n,
        (0..n).map(|k| Ok::<_, std::io::Error>((k * 2, k))),
        opts,
    )
    .unwrap();
    assert_eq!(
        tree.store().allocated(),
        Geometry::compute(&U64Map::default(), block, n, opts)
            .unwrap()
            .total_blocks()
    );
    tree
}

#[test]
fn edge_sizes_load_and_verify() {
    let layout = Layout::new(&U64Map::default(), 256).unwrap();
    let (lmax, nmax) = (layout.leaf_max as u64, layout.node_max as u64);
    for opts in [BloadOptions::default(), BloadOptions::full()] {
        for n in [
            0,
            1,
            2,
            lmax - 1,
            lmax,
            lmax + 1,
            lmax * nmax,
            lmax * nmax + 1,
            10_000,
        ] {
            let tree = load(n, 256, &opts);
            assert_clean(&tree);
            let want: Vec<_> = (0..n).map(|k| (k * 2, k)).collect();
            assert_eq!(forwards(&tree), want, "n={n} {opts:?}");
            assert_eq!(backwards(&tree), want, "n={n} {opts:?}");
            assert_eq!(tree.count_records().unwrap(), n);
        }
    }
    // Exactly full: one leaf, then exactly two full levels.
    assert_eq!(load(lmax, 256, &BloadOptions::full()).height(), 1);
    let two = load(lmax * nmax, 256, &BloadOptions::full());
    assert_eq!(two.height(), 2);
    assert_eq!(two.store().allocated(), nmax + 1);
}

#[test]
fn default_fill_is_about_three_quarters() {
    let layout = Layout::new(&U64Map::default(), 4096).unwrap();
    let g = Geometry::compute(
        &U64Map::default(),
        4096,
        1_000_000,
        &BloadOptions::default(),
    )
    .unwrap();
    let per = g.levels[0].per_block as f64 / layout.leaf_max as f64;
    assert!((0.70..=0.80).contains(&per), "leaf fill {per}");
    let full =
        Geometry::compute(&U64Map::default(), 4096, 1_000_000, &BloadOptions::full()).unwrap();
    assert!(full.total_blocks() < g.total_blocks());
}

#[test]
fn millions_of_records() {
    let n = 2_000_000;
    let tree = load(n, 4096, &BloadOptions::default());
    assert_clean(&tree);
    assert_eq!(tree.count_records().unwrap(), n);
    assert_eq!(
        tree.get(&(2 * 1_234_567)).unwrap(),
        Some((2 * 1_234_567, 1_234_567))
    );
    assert_eq!(tree.get(&(2 * 1_234_567 + 1)).unwrap(), None);
}

#[test]
fn bulk_loaded_tree_stays_valid_under_changes() {
    for opts in [BloadOptions::default(), BloadOptions::full()] {
        let mut tree = load(3000, 256, &opts);
        for k in (1..6000).step_by(6) {
            tree.insert(&(k, k)).unwrap();
        }
        assert_clean(&tree);
        for k in (0..6000).step_by(4) {
            tree.delete(&k).unwrap();
        }
        assert_clean(&tree);
        let mut want: Vec<u64> = (0..3000u64)
            .map(|k| k * 2)
            .chain((1..6000).step_by(6))
            .filter(|k| k % 4 != 0)
            .collect();
        want.sort_unstable();
        let got: Vec<u64> = forwards(&tree).into_iter().map(|r| r.0).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn bad_input_is_refused() {
    let f = U64Map::default();
    let g = Geometry::compute(&f, 256, 3, &BloadOptions::default()).unwrap();
    let unsorted = [(1u64, 0u64), (3, 0), (2, 0)].map(Ok::<_, std::io::Error>);
    let e = bulk_load(&f, 256, &g, unsorted, &mut MemStore::new(256)).unwrap_err();
    assert!(matches!(e, BtreeError::Unsorted { index: 2 }), "{e:?}");
    let dup = [(1u64, 0u64), (1, 0), (2, 0)].map(Ok::<_, std::io::Error>);
    assert!(matches!(
        bulk_load(&f, 256, &g, dup, &mut MemStore::new(256)),
        Err(BtreeError::Unsorted { .. })
    ));
    let short = [(1u64, 0u64), (2, 0)].map(Ok::<_, std::io::Error>);
    assert!(matches!(
        bulk_load(&f, 256, &g, short, &mut MemStore::new(256)),
        Err(BtreeError::CountMismatch {
            planned: 3,
            actual: 2
        })
    ));
    let long = [(1u64, 0u64), (2, 0), (3, 0), (4, 0)].map(Ok::<_, std::io::Error>);
    assert!(matches!(
        bulk_load(&f, 256, &g, long, &mut MemStore::new(256)),
        Err(BtreeError::CountMismatch { .. })
    ));
    let failing = [Ok((1u64, 0u64)), Err(std::io::Error::other("disk on fire"))];
    assert!(matches!(
        bulk_load(&f, 256, &g, failing, &mut MemStore::new(256)),
        Err(BtreeError::Source(_))
    ));
    // No space: the reservation runs dry.
    let g = Geometry::compute(&f, 256, 1000, &BloadOptions::default()).unwrap();
    let many = (0..1000u64).map(|k| Ok::<_, std::io::Error>((k, k)));
    assert!(bulk_load(&f, 256, &g, many, &mut MemStore::with_limit(256, 5)).is_err());
}

#[test]
fn inline_root_when_the_owner_holds_the_root() {
    let f = U64Map::default();
    let opts = BloadOptions {
        inline_root_capacity: Some(9),
        ..BloadOptions::default()
    };
    let layout = Layout::new(&f, 256).unwrap();
    for n in [1u64, layout.leaf_max as u64 * 3, 5000] {
        let g = Geometry::compute(&f, 256, n, &opts).unwrap();
        let mut store = MemStore::new(256);
        let built = bulk_load(
            &f,
            256,
            &g,
            (0..n).map(|k| Ok::<_, std::io::Error>((k, k))),
            &mut store,
        )
        .unwrap();
        let Root::Inline(root) = &built.root else {
            panic!("expected an inline root for n={n}");
        };
        assert!(root.entries.len() <= 9);
        assert_eq!(usize::from(built.root.height()), g.height());
        let tree = Btree::open(store, f, built.root.clone()).unwrap();
        assert_clean(&tree);
        assert_eq!(forwards(&tree).len() as u64, n);
        assert_eq!(tree.get(&(n / 2)).unwrap(), Some((n / 2, n / 2)));
    }
}
