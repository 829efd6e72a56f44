//! Benchmarks of the btree engine, each against the obvious alternative
//! measured in the same run:
//!
//! - random insert of 1 M u64-keyed records vs `BTreeMap::insert`, into
//!   plain memory and into a resident staging store (target: at least 0.5x
//!   BTreeMap's throughput);
//! - bulk load of 10 M sorted records vs the insert path (target: at least
//!   10x the insert path's throughput).
//!
//! Besides criterion's own report, each prints a `ratio` line computed from
//! the best of several timed runs of both sides.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use xfbtree::formats::U64Map;
use xfbtree::{BloadOptions, Btree, MemStore, XfileStore};
use xfile::MemoryBudget;

const BLOCK: usize = 4096;
const INSERTS: u64 = 1_000_000;
const BULK: u64 = 10_000_000;

/// Pseudo-random keys (xorshift64), the same every run.
fn keys(n: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn insert_btreemap(keys: &[u64]) -> usize {
    let mut m = BTreeMap::new();
    for k in keys {
        m.insert(*k, *k);
    }
    m.len()
}

fn insert_xfbtree(keys: &[u64]) -> Btree<MemStore, U64Map> {
    let mut t = Btree::create(MemStore::new(BLOCK), U64Map::default()).expect("create");
    for k in keys {
        t.insert(&(*k, *k)).expect("insert");
    }
    t
}

/// The same into a staging tree in pageable memory, with a budget that
/// keeps it resident ("while resident").
fn insert_xfile(keys: &[u64]) -> Btree<XfileStore, U64Map> {
    let budget = MemoryBudget::new(1 << 30);
    let store = XfileStore::new("bench", &budget, BLOCK).expect("store");
    let mut t = Btree::create(store, U64Map::default()).expect("create");
    for k in keys {
        t.insert(&(*k, *k)).expect("insert");
    }
    t
}

fn bulk_load(n: u64) -> Btree<MemStore, U64Map> {
    Btree::bulk_load(
        MemStore::new(BLOCK),
        U64Map::default(),
        n,
        (0..n).map(|k| Ok::<_, std::io::Error>((k, k))),
        &BloadOptions::default(),
    )
    .expect("bulk load")
}

/// Best wall time of `runs` runs.
fn best<R>(runs: usize, mut f: impl FnMut() -> R) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn benches(c: &mut Criterion) {
    let k = keys(INSERTS);

    let mut g = c.benchmark_group("insert_1m_random");
    g.sample_size(10);
    g.bench_function("btreemap", |b| b.iter(|| insert_btreemap(black_box(&k))));
    g.bench_function("xfbtree_mem", |b| b.iter(|| insert_xfbtree(black_box(&k))));
    g.bench_function("xfbtree_xfile", |b| b.iter(|| insert_xfile(black_box(&k))));
    g.finish();

    let mut g = c.benchmark_group("bulk_load_10m");
    g.sample_size(10);
    g.bench_function("xfbtree_bload", |b| b.iter(|| bulk_load(BULK)));
    g.finish();

    // Ratios from the same process, best of five.
    let map = best(5, || insert_btreemap(&k));
    let tree = best(5, || insert_xfbtree(&k));
    println!(
        "ratio insert_1m_random: {:.2}x BTreeMap's throughput (xfbtree {:.0} ms / BTreeMap {:.0} ms; target >= 0.5x)",
        map.as_secs_f64() / tree.as_secs_f64(),
        ms(tree),
        ms(map)
    );
    let staged = best(5, || insert_xfile(&k));
    println!(
        "ratio insert_1m_random (xfile store): {:.2}x BTreeMap's throughput (xfbtree {:.0} ms / BTreeMap {:.0} ms; target >= 0.5x)",
        map.as_secs_f64() / staged.as_secs_f64(),
        ms(staged),
        ms(map)
    );
    let load = best(3, || bulk_load(BULK));
    let insert_rate = INSERTS as f64 / tree.as_secs_f64();
    let load_rate = BULK as f64 / load.as_secs_f64();
    println!(
        "ratio bulk_load_10m: {:.1}x the insert path's throughput ({:.1} M rec/s loaded vs {:.2} M rec/s inserted; {:.0} ms for 10 M; target >= 10x)",
        load_rate / insert_rate,
        load_rate / 1e6,
        insert_rate / 1e6,
        ms(load)
    );
}

criterion_group!(group, benches);
criterion_main!(group);
