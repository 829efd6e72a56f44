//! The verifier against trees damaged on purpose: one rule at a time, each
//! must produce exactly its finding; and random damage must never panic,
//! hang or make any operation misbehave.

use crate::common::problems;
use proptest::prelude::*;
use std::ops::ControlFlow;
use xfbtree::formats::{Interval, IntervalKey, Intervals, U64Map};
use xfbtree::verify::{Problem, ProblemKind};
use xfbtree::{
    BloadOptions, BlockAddr, BlockStore, Btree, BtreeFormat, Layout, Lookup, MemStore, Root,
};

const BLOCK: usize = 256;
/// Header offsets of the formats' shared header.
const LEVEL: usize = 4;
const NUMRECS: usize = 6;
const LEFT: usize = 8;
const RIGHT: usize = 16;
const BLKNO: usize = 24;

type Tree = Btree<MemStore, U64Map>;

/// The format under test, with checksums so that damage shows up as such.
fn fmt() -> U64Map {
    U64Map::default().with_checksums()
}

/// A four-level tree of 2000 records with keys 0, 10, 20, ...
fn tree() -> Tree {
    let t = Btree::bulk_load(
        MemStore::new(BLOCK),
        fmt(),
        2000,
        (0..2000u64).map(|k| Ok::<_, std::io::Error>((k * 10, k))),
        &BloadOptions::default(),
    )
    .unwrap();
    assert_eq!(t.height(), 4);
    assert!(problems(&t).is_empty());
    t
}

fn root(t: &Tree) -> BlockAddr {
    match t.root() {
        Root::Block { addr, .. } => *addr,
        Root::Inline(_) => unreachable!(),
    }
}

fn layout(t: &Tree) -> Layout {
    *t.layout()
}

/// The block reached by following child indices from the root.
fn block_at(t: &Tree, path: &[usize]) -> BlockAddr {
    let l = layout(t);
    let mut addr = root(t);
    for &i in path {
        let r = l.ptr(i);
        addr = t.store().read(addr, |b| fmt().decode_ptr(&b[r])).unwrap();
    }
    addr
}

fn poke(t: &mut Tree, addr: BlockAddr, off: usize, bytes: &[u8], reseal: bool) {
    t.store_mut().poke(addr, off, bytes).unwrap();
    if reseal {
        t.store_mut().write(addr, |b| fmt().seal(b)).unwrap();
    }
}

fn kinds(p: &[Problem]) -> Vec<&'static str> {
    p.iter().map(|p| p.kind.code()).collect()
}

/// Applies one damage and asserts the verifier reports exactly `want` (by
/// problem code), the first of them at `at`.
#[track_caller]
fn expect(t: &Tree, want: &[&str], at: BlockAddr) -> Vec<Problem> {
    let p = problems(t);
    assert_eq!(kinds(&p), want, "{p:#?}");
    assert_eq!(p[0].block, Some(at), "{p:#?}");
    p
}

#[test]
fn bad_magic_is_reported_and_the_block_skipped() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 1, 2]);
    poke(&mut t, leaf, 0, b"JUNK", true);
    let p = expect(&t, &["header"], leaf);
    let ProblemKind::Header(f) = &p[0].kind else {
        unreachable!()
    };
    assert_eq!(f.field, "magic");
    assert_eq!(f.actual, "0x4a554e4b");
}

#[test]
fn wrong_self_address() {
    let mut t = tree();
    let node = block_at(&t, &[1, 0]);
    poke(&mut t, node, BLKNO, &7777u64.to_be_bytes(), true);
    let p = expect(&t, &["header"], node);
    let ProblemKind::Header(f) = &p[0].kind else {
        unreachable!()
    };
    assert_eq!(
        (f.field, f.expected.as_str(), f.actual.as_str()),
        ("blkno", &*node.0.to_string(), "7777")
    );
}

#[test]
fn checksum_mismatch() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 0, 0]);
    // A value byte of record 3: content stays orderly, only the CRC is wrong.
    let off = layout(&t).record(3).start + 15;
    poke(&mut t, leaf, off, &[0xee], false);
    expect(&t, &["checksum"], leaf);
}

#[test]
fn wrong_level_and_leaf_at_wrong_depth() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 0, 1]);
    poke(&mut t, leaf, LEVEL, &1u16.to_be_bytes(), true);
    let p = expect(&t, &["level"], leaf);
    assert_eq!(
        p[0].kind,
        ProblemKind::Level {
            expected: 0,
            actual: 1
        }
    );

    let mut t = tree();
    let node = block_at(&t, &[0, 1]);
    poke(&mut t, node, LEVEL, &0u16.to_be_bytes(), true);
    let p = expect(&t, &["leaf-depth"], node);
    assert_eq!(p[0].kind, ProblemKind::LeafDepth { expected: 1 });
}

#[test]
fn record_counts_out_of_range() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 0, 2]);
    poke(&mut t, leaf, NUMRECS, &200u16.to_be_bytes(), true);
    expect(&t, &["too-many-records"], leaf);

    let mut t = tree();
    let leaf = block_at(&t, &[0, 0, 2]);
    poke(&mut t, leaf, NUMRECS, &1u16.to_be_bytes(), true);
    let p = expect(&t, &["underfull"], leaf);
    assert_eq!(
        p[0].kind,
        ProblemKind::Underfull {
            min: layout(&t).leaf_max / 2,
            actual: 1
        }
    );

    let mut t = tree();
    let node = block_at(&t, &[0, 2]);
    poke(&mut t, node, NUMRECS, &0u16.to_be_bytes(), true);
    expect(&t, &["empty-node"], node);
}

#[test]
fn keys_out_of_order_inside_a_block() {
    let mut t = tree();
    let leaf = block_at(&t, &[1, 1, 1]);
    let l = layout(&t);
    let (r3, r4) = (l.record(3), l.record(4));
    let (a, b) = t
        .store()
        .read(leaf, |b| (b[r3.clone()].to_vec(), b[r4.clone()].to_vec()))
        .unwrap();
    poke(&mut t, leaf, r3.start, &b, false);
    poke(&mut t, leaf, r4.start, &a, true);
    let p = expect(&t, &["key-order"], leaf);
    assert_eq!(p[0].index, Some(4));
}

#[test]
fn keys_out_of_order_across_siblings() {
    let mut t = tree();
    let left = block_at(&t, &[0, 0, 0]);
    let leaf = block_at(&t, &[0, 0, 1]);
    let l = layout(&t);
    let f = fmt();
    // Make the second leaf start with the first leaf's last key, and its
    // parent agree, so that only the order across the siblings is wrong.
    let n_left = t
        .store()
        .read(left, |b| f.read_header(b).numrecs as usize)
        .unwrap();
    let last = t
        .store()
        .read(left, |b| f.decode_record(&b[l.record(n_left - 1)]).0)
        .unwrap();
    poke(&mut t, leaf, l.record(0).start, &last.to_be_bytes(), true);
    let parent = block_at(&t, &[0, 0]);
    poke(&mut t, parent, l.key(1).start, &last.to_be_bytes(), true);
    let p = expect(&t, &["sibling-key-order"], leaf);
    assert!(matches!(p[0].kind, ProblemKind::SiblingKeyOrder { left: l2, .. } if l2 == left));
}

#[test]
fn parent_key_disagrees_with_child() {
    let mut t = tree();
    let node = block_at(&t, &[0, 0]);
    let child = block_at(&t, &[0, 0, 2]);
    let l = layout(&t);
    let k = t
        .store()
        .read(node, |b| fmt().decode_key(&b[l.key(2)]))
        .unwrap();
    poke(&mut t, node, l.key(2).start, &(k - 1).to_be_bytes(), true);
    let p = expect(&t, &["parent-low-key"], child);
    assert_eq!(
        p[0].kind,
        ProblemKind::ParentLowKey {
            parent: (k - 1).to_string(),
            child: k.to_string()
        }
    );
}

#[test]
fn broken_sibling_links() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 1, 1]);
    poke(&mut t, leaf, LEFT, &3u64.to_be_bytes(), true);
    let p = expect(&t, &["left-sibling"], leaf);
    assert!(matches!(
        p[0].kind,
        ProblemKind::LeftSibling {
            actual: Some(BlockAddr(3)),
            ..
        }
    ));

    let mut t = tree();
    let leaf = block_at(&t, &[0, 1, 1]);
    poke(&mut t, leaf, RIGHT, &u64::MAX.to_be_bytes(), true);
    let p = expect(&t, &["right-sibling"], leaf);
    assert!(matches!(
        p[0].kind,
        ProblemKind::RightSibling {
            actual: None,
            expected: Some(_)
        }
    ));

    // The last block of a level must end the level.
    let mut t = tree();
    let n = t
        .store()
        .read(root(&t), |b| fmt().read_header(b).numrecs as usize)
        .unwrap();
    let last = block_at(&t, &[n - 1]);
    poke(&mut t, last, RIGHT, &5u64.to_be_bytes(), true);
    let p = expect(&t, &["right-sibling"], last);
    assert_eq!(
        p[0].kind,
        ProblemKind::RightSibling {
            expected: None,
            actual: Some(BlockAddr(5))
        }
    );

    // The root has no siblings.
    let mut t = tree();
    let r = root(&t);
    poke(&mut t, r, LEFT, &5u64.to_be_bytes(), true);
    expect(&t, &["left-sibling"], r);
}

#[test]
fn pointers_outside_the_store_and_blocks_reached_twice() {
    let mut t = tree();
    let node = block_at(&t, &[0, 1]);
    let l = layout(&t);
    poke(
        &mut t,
        node,
        l.ptr(2).start,
        &1_000_000u64.to_be_bytes(),
        true,
    );
    let p = expect(&t, &["pointer-out-of-range"], node);
    assert_eq!(p[0].index, Some(2));

    let mut t = tree();
    let node = block_at(&t, &[0, 1]);
    let first = block_at(&t, &[0, 1, 1]);
    poke(&mut t, node, l.ptr(2).start, &first.0.to_be_bytes(), true);
    let p = expect(&t, &["reached-twice"], node);
    assert_eq!(p[0].kind, ProblemKind::ReachedTwice { ptr: first });

    // A cycle: a node pointing back at the root.
    let mut t = tree();
    let node = block_at(&t, &[1, 1]);
    let r = root(&t);
    poke(&mut t, node, l.ptr(0).start, &r.0.to_be_bytes(), true);
    let p = expect(&t, &["reached-twice"], node);
    assert_eq!(p[0].kind, ProblemKind::ReachedTwice { ptr: r });
}

#[test]
fn impossible_height() {
    let t = tree();
    let (store, format, root) = t.into_parts();
    let Root::Block { addr, .. } = root else {
        unreachable!()
    };
    let t = Btree::open(store, format, Root::Block { addr, height: 40 }).unwrap();
    let p = problems(&t);
    assert_eq!(kinds(&p), ["height"]);
    assert!(
        t.get(&10).is_err(),
        "operations refuse an impossible height"
    );
}

#[test]
fn overlapping_tree_high_keys() {
    let f = Intervals::default().with_checksums();
    let recs: Vec<Interval> = (0..400u64)
        .map(|i| Interval {
            start: i * 4,
            len: 1 + i % 9,
            owner: i % 3,
        })
        .collect();
    let build = || {
        Btree::bulk_load(
            MemStore::new(BLOCK),
            f,
            400,
            recs.iter().map(|r| Ok::<_, std::io::Error>(*r)),
            &BloadOptions::default(),
        )
        .unwrap()
    };
    let mut t = build();
    assert!(t.height() >= 3);
    assert!(problems(&t).is_empty());
    let Root::Block { addr: r, .. } = *t.root() else {
        unreachable!()
    };
    let l = *t.layout();
    let child = t.store().read(r, |b| f.decode_ptr(&b[l.ptr(0)])).unwrap();
    // The root's high key for child 0, lowered but still above the low key.
    let (low, high) = t
        .store()
        .read(r, |b| {
            (f.decode_key(&b[l.key(0)]), f.decode_key(&b[l.high_key(0)]))
        })
        .unwrap();
    let lowered = IntervalKey {
        start: high.start - 1,
        owner: high.owner,
    };
    let mut raw = [0u8; 16];
    f.encode_key(&lowered, &mut raw);
    t.store_mut().poke(r, l.high_key(0).start, &raw).unwrap();
    t.store_mut().write(r, |b| f.seal(b)).unwrap();
    let p = problems(&t);
    assert_eq!(kinds(&p), ["parent-high-key"], "{p:#?}");
    assert_eq!(p[0].block, Some(child));

    // A high key below its low key (entry 1: its low key is above zero).
    let mut t = build();
    let low1 = t.store().read(r, |b| f.decode_key(&b[l.key(1)])).unwrap();
    assert!(low1.start > 0);
    let below = IntervalKey {
        start: low1.start - 1,
        owner: 0,
    };
    f.encode_key(&below, &mut raw);
    t.store_mut().poke(r, l.high_key(1).start, &raw).unwrap();
    t.store_mut().write(r, |b| f.seal(b)).unwrap();
    let p = problems(&t);
    assert!(kinds(&p).contains(&"high-below-low"), "{p:#?}");
    assert!(kinds(&p).contains(&"parent-high-key"), "{p:#?}");

    // Queries still never panic over the damaged tree.
    let _ = t.query_overlapping(&low, &high, |_| ControlFlow::Continue(()));
}

#[test]
fn operations_on_corrupt_blocks_fail_cleanly() {
    let mut t = tree();
    let leaf = block_at(&t, &[0, 0, 0]);
    poke(&mut t, leaf, 0, b"JUNK", true);
    assert!(t.get(&0).is_err());
    assert!(t.insert(&(1, 1)).is_err());
    assert!(t.delete(&0).is_err());
    assert!(t.lookup(&5, Lookup::Le).is_err());
    // Records elsewhere are still reachable.
    assert_eq!(t.get(&19_990).unwrap(), Some((19_990, 1999)));
}

/// Runs every operation over a possibly damaged tree; all must return
/// (with any result) without panicking.
fn exercise<S: BlockStore, F: BtreeFormat>(
    t: &mut Btree<S, F>,
    keys: &[F::Key],
    recs: &[F::Record],
) {
    let p = problems(t);
    let _ = p.len();
    if let Ok(mut c) = t.cursor_first() {
        for _ in 0..100_000 {
            match c.next_record() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    if let Ok(mut c) = t.cursor_last() {
        for _ in 0..100_000 {
            match c.prev_record() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    for k in keys {
        let _ = t.lookup(k, Lookup::Eq);
        let _ = t.lookup(k, Lookup::Le);
        let _ = t.lookup(k, Lookup::Ge);
        let _ = t.query_overlapping(k, k, |_| ControlFlow::Continue(()));
        let _ = t.delete(k);
    }
    for r in recs {
        let _ = t.insert(r);
        let _ = t.update(r);
    }
    let _ = t.count_records();
    let _ = problems(t);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random damage, resealed or not, to random blocks.
    #[test]
    fn random_damage_never_panics(
        hits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..BLOCK, any::<u8>(), any::<bool>()), 1..8),
        keys in prop::collection::vec(0u64..21_000, 1..20),
    ) {
        let mut t = tree();
        let cap = t.store().capacity() as usize;
        for (blk, off, byte, reseal) in &hits {
            let addr = BlockAddr(blk.index(cap) as u64);
            poke(&mut t, addr, *off, &[*byte], *reseal);
        }
        let recs: Vec<(u64, u64)> = keys.iter().map(|k| (k + 5, *k)).collect();
        exercise(&mut t, &keys, &recs);
    }

    #[test]
    fn random_damage_to_overlapping_trees_never_panics(
        hits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..BLOCK, any::<u8>()), 1..8),
        starts in prop::collection::vec(0u64..2000, 1..20),
    ) {
        let f = Intervals::default().with_checksums();
        let recs: Vec<Interval> = (0..500u64).map(|i| Interval { start: i * 4, len: 1 + i % 9, owner: i % 3 }).collect();
        let mut t = Btree::bulk_load(MemStore::new(BLOCK), f, 500, recs.iter().map(|r| Ok::<_, std::io::Error>(*r)), &BloadOptions::default()).unwrap();
        let cap = t.store().capacity() as usize;
        for (blk, off, byte) in &hits {
            let addr = BlockAddr(blk.index(cap) as u64);
            t.store_mut().poke(addr, *off, &[*byte]).unwrap();
            t.store_mut().write(addr, |b| f.seal(b)).unwrap();
        }
        let keys: Vec<IntervalKey> = starts.iter().map(|s| IntervalKey { start: *s, owner: 1 }).collect();
        let new: Vec<Interval> = starts.iter().map(|s| Interval { start: *s + 1, len: 3, owner: 7 }).collect();
        exercise(&mut t, &keys, &new);
    }
}
