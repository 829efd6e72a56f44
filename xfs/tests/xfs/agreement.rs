//! Oracle agreement: the committed corruption corpus
//! (`testdata/corruptions/<set>.jsonl`, made by `make-corruptions.py`),
//! each case a patch to a fixture image with `xfs_repair -n`'s verdict
//! recorded next to it.
//!
//! For every case the patch is applied on a copy-on-write overlay of the
//! fixture and the whole scrub registry runs over it. The case counts as
//! flagged when the check reports damage (a `corrupt` or `xref-corrupt`
//! finding) or the image cannot even be opened as a consistent filesystem
//! (the primary superblock is corrupt). Rules:
//!
//! - in a *covered* structure (one whose scrubbers exist: [`COVERED`]),
//!   every case xfs_repair flags must be flagged, unless it is listed with
//!   its reason in `agreement-exceptions.txt` beside this file;
//! - no case may panic or take more than [`CASE_LIMIT`];
//! - the structure x verb agreement matrix is printed for the record.

use crate::common::{have_xfsprogs, testdata};
use rayon::prelude::*;
use scrub::{RunOptions, ScrubContext};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use xfile::MemoryBudget;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::{Error, Filesystem};

/// Structures whose scrubbers exist; agreement is enforced for these.
const COVERED: &[&str] = &[
    "sb",
    "sb-secondary",
    "agf",
    "agfl",
    "agi",
    "bnobt",
    "cntbt",
    "inobt",
    "finobt",
    "rmapbt",
    "refcountbt",
    "inode",
    "bmbt",
    "dir",
    "symlink",
    "nlinks",
    "xattr",
];

/// The longest one case may take (open + full check).
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// One corruption case.
pub(crate) struct Case {
    pub(crate) id: String,
    pub(crate) base: String,
    pub(crate) structure: String,
    verb: String,
    pub(crate) patch: Vec<(u64, Vec<u8>)>,
    pub(crate) repair_flags: bool,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn load_set(set: &str) -> Vec<Case> {
    let path = testdata().join("corruptions").join(format!("{set}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Case {
                id: s("id"),
                base: s("base"),
                structure: s("structure"),
                verb: s("verb"),
                patch: v["patch"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["offset"].as_u64().unwrap(),
                            hex(p["hex"].as_str().unwrap()),
                        )
                    })
                    .collect(),
                repair_flags: v["xfs_repair_n"]["exit"].as_i64().unwrap_or(0) != 0,
            }
        })
        .collect()
}

/// Decompressed fixture images, shared by every case of the test binary.
pub(crate) fn base_image(name: &str) -> Arc<dyn Device> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, Arc<dyn Device>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    c.entry(name.to_owned())
        .or_insert_with(|| {
            let zst = testdata().join("images").join(format!("{name}.img.zst"));
            Arc::from(open_image(&zst, Access::ReadOnly).unwrap())
        })
        .clone()
}

/// What checking one case gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The check reported damage.
    Damage,
    /// The image could not be opened: its primary superblock is corrupt.
    Refused(String),
    /// Opened, checked, no damage reported.
    Clean,
    /// The image could not be opened for another reason (unsupported).
    Unsupported(String),
}

impl Verdict {
    pub(crate) fn flagged(&self) -> bool {
        matches!(self, Verdict::Damage | Verdict::Refused(_))
    }
}

pub(crate) fn check_case(c: &Case) -> Verdict {
    let dev = CowDevice::new(base_image(&c.base));
    for (off, bytes) in &c.patch {
        dev.write_at(bytes, *off).unwrap();
    }
    let fs = match Filesystem::open(Box::new(dev)) {
        Ok(fs) => fs,
        Err(e @ (Error::Corrupt { .. } | Error::NotXfs { .. } | Error::Malformed { .. })) => {
            return Verdict::Refused(e.to_string());
        }
        Err(e) => return Verdict::Unsupported(e.to_string()),
    };
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: None,
        threads: Some(1),
    };
    let report = scrub::run(&fs, &xfs::scrub::registry(), &ctx, &opts).unwrap();
    if std::env::var_os("AGREEMENT_SHOW").is_some() {
        // Every case's damage codes, to see why each was flagged.
        let mut codes: Vec<String> = report
            .findings()
            .filter(|(_, f)| f.kind.is_damage())
            .map(|(_, f)| f.code.to_string())
            .collect();
        codes.dedup();
        eprintln!("SHOW {} :: {}", c.id, codes.join(" "));
    }
    if report.has_damage() {
        // Cases xfs_repair -n passes but scrubd flags: print what was
        // found so each can be judged (real damage the oracle misses, or
        // a false positive to fix).
        if !c.repair_flags && std::env::var_os("AGREEMENT_EXTRAS").is_some() {
            let f: Vec<String> = report
                .findings()
                .filter(|(_, f)| f.kind.is_damage())
                .take(3)
                .map(|(_, f)| f.to_string())
                .collect();
            eprintln!("EXTRA {} :: {}", c.id, f.join(" || "));
        }
        Verdict::Damage
    } else {
        Verdict::Clean
    }
}

/// Known disagreements with their reasons: `case-id  reason` per line.
fn exceptions() -> HashMap<String, String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xfs/agreement-exceptions.txt");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(id, why)| (id.to_owned(), why.trim().to_owned()))
        .collect()
}

fn run_set(set: &str) {
    if !have_xfsprogs(set) {
        return;
    }
    let cases = load_set(set);
    let started = Instant::now();
    let results: Vec<(usize, Result<Verdict, String>, Duration)> = cases
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let t = Instant::now();
            if std::env::var_os("AGREEMENT_TRACE").is_some() {
                eprintln!("case {}", c.id);
            }
            let v = std::panic::catch_unwind(|| check_case(c)).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            (i, v, t.elapsed())
        })
        .collect();

    let exceptions = exceptions();
    // structure -> verb -> (agree, cases xfs_repair flags)
    let mut matrix: BTreeMap<String, BTreeMap<String, (u32, u32)>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut extra = 0u32;
    let mut unsupported = 0u32;
    for (i, v, took) in &results {
        let c = &cases[*i];
        let key = if c.base == "rmapbt" {
            c.structure.clone()
        } else {
            format!("{} ({})", c.structure, c.base)
        };
        let v = match v {
            Ok(v) => v,
            Err(msg) => {
                failures.push(format!("{}: PANIC {msg}", c.id));
                continue;
            }
        };
        if *took > CASE_LIMIT {
            failures.push(format!("{}: took {took:?}", c.id));
        }
        if matches!(v, Verdict::Unsupported(_)) {
            unsupported += 1;
        }
        if !c.repair_flags {
            extra += u32::from(v.flagged());
            continue;
        }
        let cell = matrix
            .entry(key)
            .or_default()
            .entry(c.verb.clone())
            .or_default();
        cell.1 += 1;
        if v.flagged() {
            cell.0 += 1;
        } else if COVERED.contains(&c.structure.as_str()) && !exceptions.contains_key(&c.id) {
            failures.push(format!(
                "{}: xfs_repair -n flags it, scrubd says {v:?}",
                c.id
            ));
        }
    }

    // The matrix, for the record (and the closing notes).
    let verbs = [
        "zeroes",
        "ones",
        "firstbit",
        "middlebit",
        "lastbit",
        "add",
        "sub",
        "random",
    ];
    let mut table = format!(
        "\n{set}: agreement with xfs_repair -n on the cases it flags (flagged by scrubd / flagged by xfs_repair)\n| structure | {} | total |\n",
        verbs.join(" | ")
    );
    let (mut ta, mut tn) = (0, 0);
    for (s, row) in &matrix {
        let (ra, rn) = row.values().fold((0, 0), |a, (x, y)| (a.0 + x, a.1 + y));
        ta += ra;
        tn += rn;
        let cells: Vec<String> = verbs
            .iter()
            .map(|v| {
                row.get(*v)
                    .map_or(String::new(), |(a, n)| format!("{a}/{n}"))
            })
            .collect();
        let covered = if COVERED.contains(&s.split(' ').next().unwrap_or_default()) {
            ""
        } else {
            " (not covered yet)"
        };
        table += &format!("| {s}{covered} | {} | {ra}/{rn} |\n", cells.join(" | "));
    }
    table += &format!(
        "| all | {} | {ta}/{tn} |\n{} cases in {:.0?}; flagged by scrubd but not by xfs_repair -n: {extra}; refused as unsupported: {unsupported}\n",
        vec![""; verbs.len()].join(" | "),
        cases.len(),
        started.elapsed()
    );
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{} disagreements or failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn ag_metadata_corpus() {
    run_set("ag");
}

#[test]
fn inode_corpus() {
    run_set("inode");
}

#[test]
fn dir_corpus() {
    run_set("dir");
}
