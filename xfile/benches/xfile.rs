//! Staging structures against their in-RAM alternatives, measured in the
//! same run. Each benchmark prints a line
//! `ratio NAME: R.RRx (xfarray A ms / vec B ms)` with the medians.
//!
//! Run with `cargo bench -p xfile`.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use xfile::{MemoryBudget, XfArray};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// 16 bytes: a sort key and a payload.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
struct Rec {
    key: u64,
    payload: u64,
}

const N: usize = 10_000_000;
const DATA_BYTES: u64 = (N * size_of::<Rec>()) as u64;

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn records() -> Vec<Rec> {
    let mut s = 42;
    (0..N as u64)
        .map(|i| Rec {
            key: splitmix(&mut s),
            payload: i,
        })
        .collect()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Print the ratio of the medians of the two variants.
fn report(
    name: &str,
    xf: &RefCell<Vec<Duration>>,
    base: &RefCell<Vec<Duration>>,
    what: &str,
    target: f64,
) {
    if xf.borrow().is_empty() || base.borrow().is_empty() {
        // Filtered out on the command line.
        return;
    }
    let (x, b) = (median(&xf.borrow()), median(&base.borrow()));
    let ratio = x.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "ratio {name}: {ratio:.2}x (xfarray {:.0} ms / {what} {:.0} ms; target <= {target}x: {})",
        x.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        if ratio <= target { "met" } else { "MISSED" }
    );
}

/// Run `once` `iters` times; it returns the time of the part it measures.
/// Each time is also kept in `log` for the ratio.
fn timed(iters: u64, log: &RefCell<Vec<Duration>>, mut once: impl FnMut() -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let d = once();
        total += d;
        log.borrow_mut().push(d);
    }
    total
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    g
}

/// Sort with `budget` bytes against `sort_unstable_by_key`. Only the sort is
/// timed; filling the array or cloning the vector is not.
fn bench_sort(c: &mut Criterion, name: &str, data: &[Rec], budget: u64, target: f64) {
    let xf = RefCell::new(Vec::new());
    let base = RefCell::new(Vec::new());
    let mut g = configure(c, name);
    g.bench_function("xfarray", |b| {
        b.iter_custom(|iters| {
            timed(iters, &xf, || {
                let budget = MemoryBudget::new(budget);
                let mut a = XfArray::<Rec>::new("bench-sort", &budget).expect("create");
                a.extend_from_slice(data).expect("fill");
                a.flush().expect("flush");
                let t = Instant::now();
                a.sort_by(|x, y| x.key.cmp(&y.key)).expect("sort");
                let d = t.elapsed();
                black_box(a.get(N as u64 / 2).expect("get"));
                d
            })
        })
    });
    g.bench_function("vec", |b| {
        b.iter_custom(|iters| {
            timed(iters, &base, || {
                let mut v = data.to_vec();
                let t = Instant::now();
                v.sort_unstable_by_key(|r| r.key);
                let d = t.elapsed();
                black_box(v[N / 2].key);
                d
            })
        })
    });
    g.finish();
    report(name, &xf, &base, "vec", target);
}

fn sorts(c: &mut Criterion) {
    let data = records();
    // Larger than the data: room for the cached pages and the work buffer.
    bench_sort(c, "sort_resident", &data, 2 * DATA_BYTES + (64 << 20), 1.5);
    bench_sort(c, "sort_spill_1_8", &data, DATA_BYTES / 8, 4.0);
}

/// Append 10 M records then scan them, against `Vec::push` and iteration.
fn append_scan(c: &mut Criterion) {
    let xf = RefCell::new(Vec::new());
    let base = RefCell::new(Vec::new());
    let mut g = configure(c, "append_scan");
    let budget = MemoryBudget::new(2 * DATA_BYTES);
    g.bench_function("xfarray", |b| {
        b.iter_custom(|iters| {
            timed(iters, &xf, || {
                let t = Instant::now();
                let mut a = XfArray::<Rec>::new("bench-append", &budget).expect("create");
                let mut s = 7;
                for i in 0..N as u64 {
                    let key = splitmix(&mut s);
                    a.append(Rec { key, payload: i }).expect("append");
                }
                let mut sum = 0u64;
                for r in a.iter() {
                    let r = r.expect("read");
                    sum = sum.wrapping_add(r.key ^ r.payload);
                }
                black_box(sum);
                t.elapsed()
            })
        })
    });
    g.bench_function("vec", |b| {
        b.iter_custom(|iters| {
            timed(iters, &base, || {
                let t = Instant::now();
                let mut v = Vec::new();
                let mut s = 7;
                for i in 0..N as u64 {
                    let key = splitmix(&mut s);
                    v.push(Rec { key, payload: i });
                }
                let mut sum = 0u64;
                for r in black_box(&v) {
                    sum = sum.wrapping_add(r.key ^ r.payload);
                }
                black_box(sum);
                t.elapsed()
            })
        })
    });
    g.finish();
    report("append_scan", &xf, &base, "vec", 2.0);
}

criterion_group!(benches, sorts, append_scan);
criterion_main!(benches);
