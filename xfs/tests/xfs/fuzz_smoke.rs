//! The fuzz harness (`mutate.rs`, run coverage-guided by `fuzz/` on
//! nightly) on seeded pseudo-random inputs, so CI runs every target's code
//! path on stable: no input may panic, and every target must actually
//! reach damage (a harness whose patches never land would test nothing).

use crate::mutate::{Outcome, STRUCTURES, run};
use rayon::prelude::*;

/// Inputs per structure (half with the CRC recomputed).
const RUNS: u64 = 12;

/// Deterministic pseudo-random input number `n` for `structure`.
fn input(structure: &str, n: u64) -> Vec<u8> {
    let mut x = structure
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15u64 ^ n, |a, b| {
            a.rotate_left(7) ^ u64::from(b)
        })
        | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ops = 1 + next() % 4;
    let mut v = Vec::new();
    v.extend_from_slice(&(next() as u16).to_le_bytes());
    v.push((n % 2) as u8);
    for _ in 0..ops {
        v.extend_from_slice(&(next() as u16).to_le_bytes());
        let len = (next() % 8) as u8;
        v.push(len);
        for _ in 0..=len {
            v.push(next() as u8);
        }
    }
    v
}

#[test]
fn fuzz_harness_smoke() {
    let jobs: Vec<(&str, u64)> = STRUCTURES
        .iter()
        .flat_map(|s| (0..RUNS).map(move |n| (*s, n)))
        .collect();
    let results: Vec<(&str, u64, Result<Outcome, String>)> = jobs
        .par_iter()
        .map(|&(s, n)| {
            let data = input(s, n);
            let r = std::panic::catch_unwind(|| run(s, &data)).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            (s, n, r)
        })
        .collect();
    let mut panics = Vec::new();
    let mut tally: crate::mutate::Tally = Default::default();
    for (s, n, r) in &results {
        let t = tally.entry(s).or_default();
        match r {
            Err(msg) => panics.push(format!("{s} input {n} {:02x?}: {msg}", input(s, *n))),
            Ok(Outcome::Refused) => t.0 += 1,
            Ok(Outcome::Checked { damage: true }) => t.1 += 1,
            Ok(Outcome::Checked { damage: false }) => t.2 += 1,
        }
    }
    eprintln!("structure: (refused, damage found, clean) of {RUNS} inputs");
    for (s, t) in &tally {
        eprintln!("  {s}: {t:?}");
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
    for (s, (refused, damage, _)) in &tally {
        assert!(refused + damage > 0, "{s}: no input reached any damage");
    }
    // A patch with a stale CRC is always damage (the even inputs); only a
    // recomputed CRC may hide a change in bytes nothing reads.
    for (s, n, r) in &results {
        if n % 2 == 0 {
            assert_ne!(
                r.as_ref().ok(),
                Some(&Outcome::Checked { damage: false }),
                "{s} input {n}"
            );
        }
    }
}
