//! Repairs of real images: the AG corpus cases in the structures the XFS
//! repairers rebuild (AGF, AGFL, bnobt, cntbt) repaired with a commit,
//! then `xfs_repair -n` (the oracle) must accept the image and every
//! manifest file must read back identical; a crash at every write of a
//! commit recovers to an image the oracle accepts; undo restores every
//! byte, also when interrupted.

use crate::agreement::{Case, load_set};
use crate::common::{decompress, have_xfsprogs, testdata};
use crate::fixtures::check_manifest;
use repair::{Disk, FaultyDisk, Sidecars};
use scrub::{Report, RunOptions, ScrubContext};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, open_image};
use xfs::repair::{self as xrepair, Opened};

/// Structures whose corpus cases the repairers address.
const REPAIRED: &[&str] = &["agf", "agfl", "bnobt", "cntbt", "refcountbt"];

/// Plain (decompressed) fixtures, made once per test binary.
fn plain_base(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static MADE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let mut made = MADE.get_or_init(Default::default).lock().unwrap();
    made.entry(name.to_owned())
        .or_insert_with(|| {
            let out = dir.path().join(format!("{name}.img"));
            decompress(
                &testdata().join("images").join(format!("{name}.img.zst")),
                &out,
            );
            out
        })
        .clone()
}

/// A private copy of fixture `name` in `dir`, with `patch` applied.
fn patched_copy(dir: &Path, name: &str, patch: &[(u64, Vec<u8>)]) -> PathBuf {
    let path = dir.join(format!("{name}.img"));
    std::fs::copy(plain_base(name), &path).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::os::unix::fs::FileExt;
    for (off, bytes) in patch {
        f.write_all_at(bytes, *off).unwrap();
    }
    path
}

fn check(fs: &Filesystem) -> Report {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: None,
        threads: Some(1),
    };
    scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap()
}

fn damage(r: &Report) -> Vec<String> {
    r.findings()
        .filter(|(_, f)| f.kind.is_damage())
        .map(|(_, f)| f.code.to_string())
        .collect()
}

fn open_rw(path: &Path) -> Opened {
    xrepair::open_for_repair(path, &Sidecars::beside(path), true).unwrap()
}

/// `xfs_repair -n`'s exit code on `path`.
fn xfs_repair_n(path: &Path) -> i32 {
    let out = Command::new("xfs_repair")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

/// What repairing one image did.
#[derive(Debug)]
struct Outcome {
    before: Vec<String>,
    repaired: usize,
    refused: Vec<String>,
    after: Vec<String>,
}

/// Checks, plans, commits and re-checks the image at `path`.
fn repair_image(path: &Path) -> Outcome {
    let o = open_rw(path);
    let before = check(&o.fs);
    let plan = xrepair::plan(&o.fs, &before);
    if !plan.writes.is_empty() {
        xrepair::commit_plan(&o, &plan.writes).unwrap();
    }
    drop(o);
    let o = open_rw(path);
    let after = check(&o.fs);
    Outcome {
        before: damage(&before),
        repaired: plan.repairs.len(),
        refused: plan
            .refused
            .iter()
            .map(|r| format!("{} {:?}: {}", r.what, r.group, r.reason))
            .collect(),
        after: damage(&after),
    }
}

fn reopen_ro(path: &Path) -> Filesystem {
    Filesystem::open(open_image(path, Access::ReadOnly).unwrap()).unwrap()
}

/// The AG corpus cases in the repaired structures that xfs_repair -n
/// flags: every `step`-th of them, in file order (deterministic).
fn cases(step: usize) -> Vec<Case> {
    load_set("ag")
        .into_iter()
        .filter(|c| REPAIRED.contains(&c.structure.as_str()) && c.repair_flags)
        .step_by(step)
        .filter(|c| only().is_none_or(|s| s.split(',').any(|p| c.id.starts_with(p))))
        .collect()
}

/// `REPAIR_ONLY=prefix,prefix` runs only the sampled cases whose id starts
/// with one of them (`refcountbt-`, `agf-magicnum`: for working on one
/// repairer).
fn only() -> Option<String> {
    std::env::var("REPAIR_ONLY").ok()
}

/// Every `step()`-th flagged corpus case of the repaired structures
/// (`REPAIR_STEP`, default 12: 50 of the 595 cases).
fn step() -> usize {
    std::env::var("REPAIR_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

#[test]
fn corpus_repairs_pass_the_oracle_and_keep_every_file() {
    if !have_xfsprogs("corpus_repairs_pass_the_oracle_and_keep_every_file") {
        return;
    }
    let all = cases(step());
    // Cases are independent: run them on every core (each in its own
    // temporary copy), then tally in corpus order.
    use rayon::prelude::*;
    /// A case's outcome, xfs_repair -n's exit code and the files checked.
    type CaseResult = Result<(Outcome, i32, usize), String>;
    let results: Vec<(String, CaseResult)> = all
        .par_iter()
        .map(|c| {
            let dir = tempfile::tempdir().unwrap();
            let path = patched_copy(dir.path(), &c.base, &c.patch);
            // A damaged primary superblock or an unusable AGF stops the open.
            if let Err(e) = xrepair::open_for_repair(&path, &Sidecars::beside(&path), true) {
                return (c.id.clone(), Err(format!("cannot open: {e}")));
            }
            let out = repair_image(&path);
            let oracle = xfs_repair_n(&path);
            // No repair may lose a byte of any file, repaired or not.
            let files = check_manifest(&reopen_ro(&path), &c.base);
            (c.id.clone(), Ok((out, oracle, files)))
        })
        .collect();
    let (mut attempted, mut repaired, mut oracle_clean, mut files) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (id, r) in results {
        let (out, oracle, n) = match r {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{id}: {e}"));
                continue;
            }
        };
        attempted += 1;
        files += n;
        let fixed = out.after.is_empty() && !out.before.is_empty();
        if fixed {
            repaired += 1;
        }
        if oracle == 0 {
            oracle_clean += 1;
        }
        if !fixed || oracle != 0 {
            failures.push(format!(
                "{id}: repairs {}, refused {:?}, after {:?}, xfs_repair -n {oracle}",
                out.repaired, out.refused, out.after
            ));
        }
        if fixed {
            assert_eq!(
                oracle, 0,
                "{id}: scrubd says fixed, xfs_repair -n disagrees"
            );
        }
    }
    for f in &failures {
        eprintln!("NOT REPAIRED {f}");
    }
    eprintln!(
        "repair corpus (every {}th case of {REPAIRED:?}): repaired {repaired}/{attempted}, xfs_repair -n clean {oracle_clean}/{attempted}, manifest files identical {files}",
        step()
    );
    assert!(
        attempted >= 50 || step() != 12 || only().is_some(),
        "only {attempted} cases attempted"
    );
}

/// A small case for the crash and undo tests: a damaged bnobt record in
/// the `rmapbt` fixture (the rebuild writes new bnobt and cntbt blocks,
/// the AGF, the AGFL and the superblock's NEEDSREPAIR marker).
fn small_case() -> Case {
    let all = cases(1);
    all.into_iter()
        .find(|c| c.id == "bnobt-recs84-startblock-add")
        .expect("corpus case bnobt-recs84-startblock-add")
}

#[test]
fn a_crash_after_any_write_of_a_commit_recovers_to_an_image_the_oracle_accepts() {
    if !have_xfsprogs("a_crash_after_any_write_of_a_commit_recovers") {
        return;
    }
    let c = small_case();
    // The full commit, counting its device writes.
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let path = patched_copy(dir.path(), &c.base, &c.patch);
        let o = open_rw(&path);
        let plan = xrepair::plan(&o.fs, &check(&o.fs));
        assert!(!plan.writes.is_empty(), "{:?}", plan.refused);
        let d = FaultyDisk::new(o.disk.clone(), u64::MAX);
        xrepair::commit_to(&d, &o, &plan.writes).unwrap();
        d.writes()
    };
    assert!(total >= 5, "{total} writes");
    for k in 0..total {
        let dir = tempfile::tempdir().unwrap();
        let path = patched_copy(dir.path(), &c.base, &c.patch);
        {
            let o = open_rw(&path);
            let plan = xrepair::plan(&o.fs, &check(&o.fs));
            let d = FaultyDisk::new(o.disk.clone(), k);
            assert!(xrepair::commit_to(&d, &o, &plan.writes).is_err(), "k={k}");
            assert!(d.crashed());
            assert!(Sidecars::beside(&path).journal_pending(), "k={k}");
        }
        // The next open replays the journal.
        let o = open_rw(&path);
        assert!(
            matches!(o.recovery, repair::Recovery::Replayed { .. }),
            "k={k}"
        );
        assert!(damage(&check(&o.fs)).is_empty(), "k={k}");
        drop(o);
        assert_eq!(xfs_repair_n(&path), 0, "crash after {k} writes");
        check_manifest(&reopen_ro(&path), &c.base);
    }
    eprintln!("crash points tested: {total} (every write of the commit)");
}

#[test]
fn undo_restores_every_byte_also_when_interrupted() {
    let c = small_case();
    let dir = tempfile::tempdir().unwrap();
    let path = patched_copy(dir.path(), &c.base, &c.patch);
    let original = std::fs::read(&path).unwrap();
    let out = repair_image(&path);
    assert!(out.after.is_empty() && !out.before.is_empty(), "{out:?}");
    assert_ne!(std::fs::read(&path).unwrap(), original);
    let o = open_rw(&path);
    let sc = o.sidecars.clone();
    // An undo that stops after its first write...
    let d = FaultyDisk::new(o.disk.clone(), 1);
    assert!(repair::undo(&d, &sc.undo, &sc, &o.identity).is_err());
    // ...run again, gives back the image as it was.
    let u = repair::undo(&o.disk, &sc.undo, &sc, &o.identity).unwrap();
    assert_eq!(u.commits, 1);
    o.disk.sync().unwrap();
    drop(o);
    assert!(
        std::fs::read(&path).unwrap() == original,
        "undo left a difference"
    );
    // And once more: undo is idempotent.
    let dev: Arc<dyn xfs::device::Device> =
        Arc::new(xfs::device::FileDevice::open(&path, true).unwrap());
    let id = xrepair::identity(dev.as_ref()).unwrap();
    repair::undo(&xrepair::DeviceDisk(dev), &sc.undo, &sc, &id).unwrap();
    assert!(std::fs::read(&path).unwrap() == original);
}

#[test]
fn a_clean_image_needs_no_repair_and_its_free_space_rebuilds_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = patched_copy(dir.path(), "rmapbt", &[]);
    let o = open_rw(&path);
    let report = check(&o.fs);
    assert!(damage(&report).is_empty());
    let plan = xrepair::plan(&o.fs, &report);
    assert!(plan.writes.is_empty() && plan.refused.is_empty());
    // Rebuilding each AG from its rmapbt gives the counters on disk.
    for agno in o.fs.geometry().ags() {
        let mut w = repair::WriteSet::new();
        let s = xrepair::alloc::plan_ag_space(&o.fs, agno, &mut w).unwrap();
        let agf = o.fs.read_agf(agno).unwrap().into_verified().unwrap();
        assert_eq!(s.agf.freeblks, agf.freeblks, "{agno}");
        assert_eq!(s.agf.longest, agf.longest, "{agno}");
        assert_eq!(s.agf.rmap_blocks, agf.rmap_blocks, "{agno}");
        assert_eq!(
            s.agf.freeblks + s.agf.flcount + s.agf.btreeblks,
            agf.freeblks + agf.flcount + agf.btreeblks,
            "{agno}: free blocks as the superblock counts them"
        );
    }
}

/// Every record of AG `agno`'s refcountbt, in order.
fn refcount_records(fs: &Filesystem, agno: xfs::types::AgNumber) -> Vec<(u32, bool, u32, u32)> {
    let agf = fs.read_agf(agno).unwrap().into_verified().unwrap();
    let t = fs.refcountbt(agno, &agf).unwrap();
    let mut c = t.cursor_first().unwrap();
    let mut out = Vec::new();
    while let Some(r) = c.next_record().unwrap() {
        out.push((r.startblock, r.cow, r.blockcount, r.refcount));
    }
    out
}

#[test]
fn a_clean_refcountbt_rebuilds_to_the_same_records_in_new_blocks() {
    let path = plain_base("rmapbt");
    let fs = reopen_ro(&path);
    let budget = MemoryBudget::new(1 << 20);
    let mut shared = 0;
    for agno in fs.geometry().ags() {
        let mut w = repair::WriteSet::new();
        let r = xrepair::refcount::plan_refcountbt(&fs, agno, &budget, &mut w).unwrap();
        let old_agf = fs.read_agf(agno).unwrap().into_verified().unwrap();
        let after = xrepair::overlay(&fs, &w).unwrap();
        let new_agf = after.read_agf(agno).unwrap().into_verified().unwrap();
        let old = refcount_records(&fs, agno);
        assert_eq!(refcount_records(&after, agno), old, "{agno}");
        assert_eq!(r.shared + r.cow, old.len() as u64, "{agno}");
        shared += r.shared;
        // The tree moved: new blocks from free space, old ones freed.
        assert_ne!(new_agf.refcount_root, old_agf.refcount_root, "{agno}");
        assert_eq!(u64::from(new_agf.refcount_blocks), r.new_blocks, "{agno}");
        assert_eq!(r.old_blocks, u64::from(old_agf.refcount_blocks), "{agno}");
        assert_eq!(r.freed + r.unmapped, r.old_blocks, "{agno}");
        // Free space as the superblock counts it moves by the difference.
        let free = |a: &xfs::format::agf::Agf| {
            i64::from(a.freeblks) + i64::from(a.flcount) + i64::from(a.btreeblks)
        };
        assert_eq!(
            free(&new_agf) - free(&old_agf),
            r.freed as i64 - r.new_blocks as i64,
            "{agno}"
        );
        // Nothing the check knows of is damaged in the result.
        assert!(
            damage(&check(&after)).is_empty(),
            "{agno}: {:?}",
            damage(&check(&after))
        );
    }
    assert!(shared > 0, "the fixture shares no blocks");
}

#[test]
fn agf_identity_and_rmapbt_root_are_fixed_before_the_rebuild() {
    if !have_xfsprogs("agf_identity_and_rmapbt_root_are_fixed_before_the_rebuild") {
        return;
    }
    let all = load_set("ag");
    // A zeroed magic; a root pointing at a random block (found by scanning
    // the AG); a zero height (the named block's own header gives it).
    for (id, fixed) in [
        ("agf-magicnum-zeroes", "magicnum"),
        ("agf-rmaproot-random", "rmaproot"),
        ("agf-rmaplevel-zeroes", "rmaplevel"),
    ] {
        let c = all.iter().find(|c| c.id == id).expect(id);
        let dir = tempfile::tempdir().unwrap();
        let path = patched_copy(dir.path(), &c.base, &c.patch);
        let o = open_rw(&path);
        let plan = xrepair::plan(&o.fs, &check(&o.fs));
        assert!(plan.refused.is_empty(), "{id}: {:?}", plan.refused);
        assert!(
            plan.repairs
                .iter()
                .any(|r| r.detail.contains("fixed first") && r.detail.contains(fixed)),
            "{id}: {:?}",
            plan.repairs
        );
        drop(o);
        let out = repair_image(&path);
        assert!(
            out.after.is_empty() && !out.before.is_empty(),
            "{id}: {out:?}"
        );
        assert_eq!(xfs_repair_n(&path), 0, "{id}");
    }
}

#[test]
fn the_recheck_of_a_plan_sees_its_result_and_writes_nothing() {
    let all = load_set("ag");
    let c = all
        .iter()
        .find(|c| c.id == "refcountbt-recs1-refcount-add")
        .expect("corpus case");
    let dir = tempfile::tempdir().unwrap();
    let path = patched_copy(dir.path(), &c.base, &c.patch);
    let original = std::fs::read(&path).unwrap();
    let fs = reopen_ro(&path);
    let before = check(&fs);
    assert!(!damage(&before).is_empty());
    let plan = xrepair::plan(&fs, &before);
    assert_eq!(
        xrepair::rebuilt_scrubbers(&plan),
        ["agf", "agfl", "bnobt", "cntbt", "refcountbt", "rmapbt"]
    );
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let after = xrepair::recheck(&fs, &plan, &ctx, 1).unwrap();
    assert!(damage(&after).is_empty(), "{:?}", damage(&after));
    assert!(!after.items.is_empty());
    // The same repairs without their writes: the damage would remain.
    let hollow = xrepair::Plan {
        writes: repair::WriteSet::new(),
        ..plan.clone()
    };
    let left = xrepair::recheck(&fs, &hollow, &ctx, 1).unwrap();
    assert!(
        damage(&left).iter().any(|c| c.starts_with("refcountbt.")),
        "{:?}",
        damage(&left)
    );
    drop(fs);
    assert!(
        std::fs::read(&path).unwrap() == original,
        "the re-check wrote"
    );
}
