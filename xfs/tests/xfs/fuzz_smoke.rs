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
    // splitmix64: neighbouring seeds give unrelated streams.
    let mut x = structure
        .bytes()
        .fold(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), |a, b| {
            a.rotate_left(8) ^ u64::from(b)
        });
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let ops = 1 + next() % 4;
    let mut v = Vec::new();
    v.extend_from_slice(&(next() as u16).to_le_bytes());
    v.push((n % 2) as u8);
    for _ in 0..ops {
        // Half the patches land in the first 256 bytes, where headers and
        // the first records are; the rest anywhere in the unit.
        let off = if next() % 2 == 0 {
            next() % 256
        } else {
            next()
        };
        v.extend_from_slice(&(off as u16).to_le_bytes());
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

/// Differential test against the oracle on damage nobody wrote a case
/// for: the harness's inputs with the CRC recomputed (so only the field
/// checks can see the damage) are applied to a copy of the base image,
/// `xfs_repair -n` judges each, and every input it flags must be flagged
/// by scrubd too. `DIFF_RUNS` inputs per target (default 3; the
/// figures in the closing notes come from larger runs), `DIFF_SHOW=1`
/// prints which bytes each input changed, `DIFF_EXTRAS=1` what scrubd
/// found where xfs_repair -n found nothing.
#[test]
fn differential_against_xfs_repair() {
    use std::io::{Read, Seek, SeekFrom, Write};
    if !crate::common::have_xfsprogs("differential_against_xfs_repair") {
        return;
    }
    let runs: u64 = std::env::var("DIFF_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    // One writable copy per fixture, patched and restored around each
    // xfs_repair -n run.
    let mut files: std::collections::HashMap<&str, (std::path::PathBuf, std::fs::File)> =
        Default::default();
    let mut misses = Vec::new();
    let mut tally: crate::mutate::Tally = Default::default();
    let targets = STRUCTURES.iter().chain(crate::mutate::OTHER_FIXTURES);
    for s in targets {
        let fixture = crate::mutate::fixture_of(s);
        let (img, file) = files.entry(fixture).or_insert_with(|| {
            let img = dir.path().join(format!("{fixture}.img"));
            crate::common::decompress(
                &crate::common::testdata().join(format!("images/{fixture}.img.zst")),
                &img,
            );
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&img)
                .unwrap();
            (img, file)
        });
        for n in 0..runs {
            let mut data = input(s, 1000 + n);
            data[2] = 1; // recompute the CRC
            let Some((start, unit)) = crate::mutate::mutation(s, &data) else {
                continue;
            };
            let mut orig = vec![0u8; unit.len()];
            file.seek(SeekFrom::Start(start)).unwrap();
            file.read_exact(&mut orig).unwrap();
            if orig == unit {
                continue;
            }
            if std::env::var_os("DIFF_SHOW").is_some() {
                let changed: Vec<usize> = (0..unit.len()).filter(|&i| orig[i] != unit[i]).collect();
                eprintln!("{s} {n} start {start} changed bytes {changed:?}");
            }
            file.seek(SeekFrom::Start(start)).unwrap();
            file.write_all(&unit).unwrap();
            file.sync_data().unwrap();
            let out = std::process::Command::new("xfs_repair")
                .arg("-n")
                .arg(&*img)
                .output()
                .unwrap();
            file.seek(SeekFrom::Start(start)).unwrap();
            file.write_all(&orig).unwrap();
            file.sync_data().unwrap();
            let oracle = out.status.code() != Some(0);
            let ours = !matches!(run(s, &data), Outcome::Checked { damage: false });
            let t = tally.entry(s).or_default();
            match (oracle, ours) {
                (true, true) => t.0 += 1,
                (false, true) => {
                    t.1 += 1;
                    if std::env::var_os("DIFF_EXTRAS").is_some() {
                        let lines = crate::mutate::damage_lines(s, &data);
                        eprintln!("EXTRA {s} input {}: {}", 1000 + n, lines.join(" || "));
                    }
                }
                (false, false) => t.2 += 1,
                (true, false) => {
                    let why: Vec<String> = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .chain(String::from_utf8_lossy(&out.stderr).lines())
                        .filter(|l| !l.starts_with("Phase") && !l.starts_with("        - "))
                        .take(4)
                        .map(str::to_owned)
                        .collect();
                    misses.push(format!(
                        "{s} input {} at byte {start}: xfs_repair -n flags it ({}), scrubd does not",
                        1000 + n,
                        why.join(" / ")
                    ));
                }
            }
        }
    }
    eprintln!("structure: (both flag, only scrubd flags, neither) of {runs} inputs");
    for (s, t) in &tally {
        eprintln!("  {s}: {t:?}");
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}
