//! Several threads on one file, and several files on one budget.

use std::sync::atomic::{AtomicBool, Ordering};

use xfile::{MemoryBudget, XFile};

use crate::{check_budget, check_file, small_pages};

const PS: u64 = 4096;

fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *s >> 11
}

/// A word that carries its own check: readers can tell a whole word some
/// thread wrote from a torn or invented one.
fn word(tid: u64, seq: u64) -> u64 {
    let hi = (tid << 40) | (seq & 0xff_ffff_ffff);
    (hi << 16) | (hi.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48)
}

fn valid(w: u64) -> bool {
    w == 0 || (w & 0xffff) == ((w >> 16).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48)
}

#[test]
fn threads_on_disjoint_ranges_read_their_own_writes() {
    // 4 threads x 24 pages under an 8-page budget: constant eviction,
    // shrinking and direct I/O, plus pinned access.
    let budget = MemoryBudget::new(8 * PS);
    let f = XFile::with_options("disjoint", &budget, small_pages()).expect("create");
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let f = &f;
            s.spawn(move || {
                let base = t * 24 * PS;
                let mut seed = t + 1;
                for round in 0..6u64 {
                    // Unaligned writes of whole patterned regions...
                    let mut data = vec![0u8; 24 * PS as usize - 7];
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = (i as u64 ^ (round * 31 + t)) as u8;
                    }
                    f.write_at(&data, base + 3).expect("write");
                    // ...random reads of pieces...
                    for _ in 0..40 {
                        let off = lcg(&mut seed) % (data.len() as u64 - 600);
                        let mut buf = vec![0u8; 600];
                        f.read_at(&mut buf, base + 3 + off).expect("read");
                        assert_eq!(
                            &buf[..],
                            &data[off as usize..off as usize + 600],
                            "t{t} r{round}"
                        );
                    }
                    // ...and pinned access to one of our pages (may fail
                    // only for lack of memory).
                    let page = base / PS + 1 + lcg(&mut seed) % 20;
                    match f.with_page_mut(page, |p| {
                        p[100] ^= 0xff;
                        p[100] ^= 0xff;
                    }) {
                        Ok(()) | Err(xfile::StagingError::BudgetExhausted { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let mut all = vec![0u8; data.len()];
                    f.read_at(&mut all, base + 3).expect("read all");
                    assert!(all == data, "t{t} r{round}: region differs");
                }
            });
        }
    });
    check_file(&f);
    check_budget(&budget);
}

#[test]
fn threads_on_overlapping_ranges_never_see_torn_words() {
    let budget = MemoryBudget::new(6 * PS);
    let f = XFile::with_options("overlap", &budget, small_pages()).expect("create");
    const WORDS: u64 = 16 * PS / 8;
    std::thread::scope(|s| {
        for t in 1..=3u64 {
            let f = &f;
            s.spawn(move || {
                let mut seed = t;
                for seq in 0..3000u64 {
                    // Runs of words, possibly crossing pages.
                    let start = lcg(&mut seed) % (WORDS - 64);
                    let n = 1 + lcg(&mut seed) % 64;
                    let mut buf = Vec::with_capacity(n as usize * 8);
                    for _ in 0..n {
                        buf.extend_from_slice(&word(t, seq).to_ne_bytes());
                    }
                    f.write_at(&buf, start * 8).expect("write");
                }
            });
        }
        for r in 0..2u64 {
            let f = &f;
            s.spawn(move || {
                let mut seed = 100 + r;
                for _ in 0..3000 {
                    let start = lcg(&mut seed) % (WORDS - 128);
                    let mut buf = vec![0u8; 128 * 8];
                    f.read_at(&mut buf, start * 8).expect("read");
                    for c in buf.chunks_exact(8) {
                        let w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
                        assert!(valid(w), "torn or invented word {w:#x}");
                    }
                    // Pinned reads see whole words too.
                    let page = lcg(&mut seed) % 16;
                    let _ = f.with_page(page, |p| {
                        for c in p.chunks_exact(8) {
                            let w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
                            assert!(valid(w), "torn word {w:#x} in page {page}");
                        }
                    });
                }
            });
        }
    });
    check_file(&f);
    check_budget(&budget);
}

#[test]
fn files_sharing_a_budget_stay_within_it_and_never_deadlock() {
    let budget = MemoryBudget::new(5 * PS);
    let files: Vec<XFile> = (0..4)
        .map(|i| XFile::with_options(&format!("f{i}"), &budget, small_pages()).expect("create"))
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let files = &files;
            workers.push(s.spawn(move || {
                let mut seed = i as u64 + 1;
                for n in 0..400u64 {
                    let page = lcg(&mut seed) % 32;
                    let byte = (n % 251) as u8;
                    f.write_at(&[byte; 64], page * PS + 8).expect("write");
                    let mut b = [0u8; 64];
                    f.read_at(&mut b, page * PS + 8).expect("read");
                    assert_eq!(b, [byte; 64], "own write reads back");
                    // Nested pins across files: may run out of memory, must
                    // not deadlock.
                    let other = &files[(i + 1 + n as usize % 3) % files.len()];
                    let r = f.with_page(page, |_| other.with_page(lcg(&mut seed) % 32, |p| p[0]));
                    match r {
                        Ok(Ok(_)) | Ok(Err(xfile::StagingError::BudgetExhausted { .. })) => {}
                        Err(xfile::StagingError::BudgetExhausted { .. }) => {}
                        Ok(Err(e)) | Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        let (budget, stop) = (&budget, &stop);
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let st = budget.stats();
                assert!(budget.used() <= 5 * PS);
                assert!(st.total.peak_resident_bytes <= 5 * PS, "{st:#?}");
                std::thread::yield_now();
            }
        });
        for w in workers {
            w.join().expect("worker");
        }
        stop.store(true, Ordering::Relaxed);
    });
    for f in &files {
        check_file(f);
    }
    check_budget(&budget);
}

/// One thread writes, discards and truncates its file and checks every
/// read against a model, while another file of the same budget keeps
/// shrinking it from another thread (its own pages are leased or dropped,
/// so it must take memory from the first): evictions and write-backs race
/// with discards and truncates.
#[test]
fn discard_and_truncate_race_with_eviction_from_another_file() {
    const PAGES: u64 = 12;
    let budget = MemoryBudget::new(6 * PS);
    let a = XFile::with_options("a", &budget, small_pages()).expect("create");
    let b = XFile::with_options("b", &budget, small_pages()).expect("create");
    let stop = AtomicBool::new(false);
    let shrinks = std::sync::atomic::AtomicU64::new(0);
    // Taken before the race starts: pinning may fail while the other file
    // is too busy to be shrunk, and that is not what this test is about.
    let leases: Vec<_> = (0..3).map(|p| b.lease(p).expect("lease")).collect();
    std::thread::scope(|s| {
        let (b, stop, shrinks) = (&b, &stop, &shrinks);
        s.spawn(move || {
            let _leases = leases;
            let mut seed = 99;
            while !stop.load(Ordering::Relaxed) {
                b.drop_cache().expect("drop b's cache");
                let (x, y) = (3 + lcg(&mut seed) % 20, 3 + lcg(&mut seed) % 20);
                let _ = b.with_page(x, |_| {
                    let mut buf = [0u8; 16];
                    b.read_at(&mut buf, y * PS).expect("nested read");
                });
                shrinks.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut model = vec![0u8; (PAGES * PS) as usize];
        let mut len = 0u64;
        let mut seed = 5;
        for round in 0..4000u64 {
            let off = lcg(&mut seed) % (PAGES * PS - 1);
            let n = (1 + lcg(&mut seed) % (3 * PS)).min(PAGES * PS - off);
            match lcg(&mut seed) % 8 {
                0 => {
                    a.discard(off..off + n).expect("discard");
                    model[off as usize..(off + n) as usize].fill(0);
                }
                1 => {
                    a.truncate(off).expect("truncate");
                    model[off as usize..].fill(0);
                    len = off;
                }
                _ => {
                    let byte = (round % 255 + 1) as u8;
                    a.write_at(&vec![byte; n as usize], off).expect("write");
                    model[off as usize..(off + n) as usize].fill(byte);
                    len = len.max(off + n);
                }
            }
            let check = lcg(&mut seed) % (PAGES * PS - 512);
            let mut buf = vec![0u8; 512];
            a.read_at(&mut buf, check).expect("read");
            assert_eq!(
                &buf[..],
                &model[check as usize..check as usize + 512],
                "round {round} at {check}"
            );
            assert_eq!(a.len(), len);
        }
        stop.store(true, Ordering::Relaxed);
        let mut all = vec![0u8; model.len()];
        a.read_at(&mut all, 0).expect("read all");
        assert!(all == model, "final contents differ");
    });
    assert!(
        a.stats().evictions > 0 && a.stats().bytes_spilled > 0,
        "{:?}",
        a.stats()
    );
    println!(
        "other file's rounds: {}, a: {:?}",
        shrinks.load(Ordering::Relaxed),
        a.stats()
    );
    check_file(&a);
    check_file(&b);
    check_budget(&budget);
}
