//! Repairs of real images: the AG corpus cases in the structures the XFS
//! repairers rebuild (AGF, AGFL, bnobt, cntbt; AGI, inobt, finobt)
//! repaired with a commit,
//! then `xfs_repair -n` (the oracle) must accept the image and every
//! manifest file must read back identical; a crash at every write of a
//! commit recovers to an image the oracle accepts; undo restores every
//! byte, also when interrupted; where root can loop-mount, a repaired
//! image mounts and its files read back identical through the kernel.

use crate::agreement::{Case, load_set};
use crate::common::{decompress, have_xfsprogs, testdata};
use crate::fixtures::check_manifest_against;
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
const REPAIRED: &[&str] = &["agf", "agfl", "bnobt", "cntbt"];

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
    cases_of(REPAIRED, step)
}

/// The flagged AG corpus cases in `structures`, every `step`-th of them.
fn cases_of(structures: &[&str], step: usize) -> Vec<Case> {
    load_set("ag")
        .into_iter()
        .filter(|c| structures.contains(&c.structure.as_str()) && c.repair_flags)
        .step_by(step)
        .collect()
}

/// The sampling step of a corpus test: `REPAIR_STEP` if set, else
/// `default` (12 for the free-space cases: 50 of the 595).
fn step_or(default: usize) -> usize {
    std::env::var("REPAIR_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn corpus_repairs_pass_the_oracle_and_keep_every_file() {
    run_corpus(
        "corpus_repairs_pass_the_oracle_and_keep_every_file",
        REPAIRED,
        12,
        50,
    );
}

/// Structures whose corpus cases the refcount btree repairer addresses.
const REFCOUNT_REPAIRED: &[&str] = &["refcountbt"];

#[test]
fn refcount_btree_corpus_repairs_pass_the_oracle_and_keep_every_file() {
    run_corpus(
        "refcount_btree_corpus_repairs_pass_the_oracle_and_keep_every_file",
        REFCOUNT_REPAIRED,
        12,
        15,
    );
}

/// Structures whose corpus cases the inode btree repairer addresses.
const INODE_REPAIRED: &[&str] = &["agi", "inobt", "finobt"];

#[test]
fn inode_btree_corpus_repairs_pass_the_oracle_and_keep_every_file() {
    // Every 12th case: 51 of the 603.
    run_corpus(
        "inode_btree_corpus_repairs_pass_the_oracle_and_keep_every_file",
        INODE_REPAIRED,
        12,
        50,
    );
}

/// Repairs every `step`-th flagged corpus case of `structures` with a
/// commit (`REPAIR_STEP` overrides `default_step`); each repaired image
/// must pass `xfs_repair -n`, and every image (repaired or not) must keep
/// every manifest file. Prints repaired / attempted per structure and
/// every case left unrepaired with its reason. At the default step at
/// least `min` cases must be attempted.
fn run_corpus(test: &str, structures: &[&str], default_step: usize, min: usize) {
    if !have_xfsprogs(test) {
        return;
    }
    let step = step_or(default_step);
    let all = cases_of(structures, step);
    // Cases are independent: run them on every core (each in its own
    // temporary copy), then tally in corpus order.
    use rayon::prelude::*;
    /// A case's outcome, xfs_repair -n's exit code and the files checked.
    type CaseResult = Result<(Outcome, i32, usize), String>;
    let results: Vec<(&Case, CaseResult)> = all
        .par_iter()
        .map(|c| {
            let dir = tempfile::tempdir().unwrap();
            let path = patched_copy(dir.path(), &c.base, &c.patch);
            // A damaged primary superblock or an unusable AGF stops the open.
            if let Err(e) = xrepair::open_for_repair(&path, &Sidecars::beside(&path), true) {
                return (c, Err(format!("cannot open: {e}")));
            }
            let out = repair_image(&path);
            let oracle = xfs_repair_n(&path);
            // No repair may lose a byte of any file, repaired or not.
            let files = check_manifest_against(
                &reopen_ro(&path),
                &reopen_ro(&plain_base(&c.base)),
                &c.base,
            );
            (c, Ok((out, oracle, files)))
        })
        .collect();
    let (mut attempted, mut repaired, mut oracle_clean, mut files) = (0, 0, 0, 0);
    // structure -> (repaired, attempted)
    let mut per: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut failures = Vec::new();
    for (c, r) in results {
        let id = &c.id;
        let tally = per.entry(c.structure.as_str()).or_default();
        tally.1 += 1;
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
            tally.0 += 1;
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
    for (s, (fixed, tried)) in &per {
        eprintln!("  {s}: repaired {fixed}/{tried}");
    }
    eprintln!(
        "repair corpus (every {step}th case of {structures:?}): repaired {repaired}/{attempted}, xfs_repair -n clean {oracle_clean}/{attempted}, manifest files identical {files}"
    );
    assert!(
        attempted >= min || step != default_step,
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
    crash_at_every_write(&small_case());
}

/// The inode btree rebuild writes the new trees over the old trees'
/// blocks: a crash between those writes and the AGI must recover too.
#[test]
fn a_crash_in_an_inode_btree_commit_recovers_to_an_image_the_oracle_accepts() {
    if !have_xfsprogs("a_crash_in_an_inode_btree_commit_recovers") {
        return;
    }
    let c = load_set("ag")
        .into_iter()
        .find(|c| c.id == "inobt-recs14-free-random")
        .expect("corpus case inobt-recs14-free-random");
    crash_at_every_write(&c);
}

/// Stops the commit that repairs case `c` after its k-th device write, for
/// every k; the next open must replay the journal to an image with no
/// damage that `xfs_repair -n` accepts and whose files are all intact.
fn crash_at_every_write(c: &Case) {
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
        check_manifest_against(&reopen_ro(&path), &reopen_ro(&plain_base(&c.base)), &c.base);
    }
    eprintln!(
        "{}: crash points tested: {total} (every write of the commit)",
        c.id
    );
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

/// Why a loop mount cannot be tried here, if it cannot: not root, no free
/// loop device, no mount(8), or a kernel without XFS.
fn mount_unavailable() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not running as root".into());
    }
    if !Command::new("losetup")
        .arg("-f")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("`losetup -f` finds no free loop device".into());
    }
    if Command::new("mount").arg("-V").output().is_err() {
        return Some("mount(8) is not installed".into());
    }
    let knows_xfs = || {
        std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("xfs"))
        })
    };
    if !knows_xfs() {
        let _ = Command::new("modprobe").arg("xfs").output();
        if !knows_xfs() {
            return Some(
                "the kernel does not know xfs (not in /proc/filesystems, modprobe xfs failed)"
                    .into(),
            );
        }
    }
    None
}

/// A read-only loop device over an image, detached when dropped.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(image: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// A mounted filesystem, unmounted when dropped (also when a check
/// fails), before its loop device is detached.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_repaired_image_mounts_and_every_file_matches_through_the_kernel() {
    const NAME: &str = "a_repaired_image_mounts_and_every_file_matches_through_the_kernel";
    if !have_xfsprogs(NAME) {
        return;
    }
    if let Some(why) = mount_unavailable() {
        eprintln!("SKIP {NAME}: {why}");
        return;
    }
    // A damaged inobt record: the free mask of chunk 14 of AG 1 (the
    // rebuild writes a new inobt, finobt and AGI).
    let c = load_set("ag")
        .into_iter()
        .find(|c| c.id == "inobt-recs14-free-random")
        .expect("corpus case inobt-recs14-free-random");
    let dir = tempfile::tempdir().unwrap();
    let path = patched_copy(dir.path(), &c.base, &c.patch);
    let out = repair_image(&path);
    assert!(out.after.is_empty() && !out.before.is_empty(), "{out:?}");
    let fs = reopen_ro(&path);
    // In-use inodes the AGIs count, less the internal ones bulkstat skips.
    let sb = fs.superblock();
    let internal = [sb.rbmino, sb.rsumino, sb.uquotino, sb.gquotino, sb.pquotino]
        .iter()
        .filter(|&&i| i != 0 && i != u64::MAX)
        .count();
    let in_use: u64 = fs
        .geometry()
        .ags()
        .map(|a| {
            let agi = fs.read_agi(a).unwrap().into_verified().unwrap();
            u64::from(agi.count - agi.freecount)
        })
        .sum();
    drop(fs);

    let lo = LoopDevice::attach(&path);
    let mnt = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .args(["-t", "xfs", "-o", "ro,nouuid"])
        .arg(&lo.0)
        .arg(mnt.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "mount: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let m = Mounted(mnt.path().to_owned());

    // Every manifest file, read by the kernel.
    let manifest = testdata()
        .join("manifests")
        .join(format!("{}.jsonl", c.base));
    let (mut files, mut bad) = (0, Vec::new());
    for l in std::fs::read_to_string(&manifest).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["type"] != "file" {
            continue;
        }
        let (Some(p), Some(want)) = (v["path"].as_str(), v["sha256"].as_str()) else {
            continue;
        };
        let full = m.0.join(p.trim_start_matches('/'));
        let got = std::fs::File::open(&full)
            .and_then(crate::common::sha256_hex)
            .map_err(|e| e.to_string());
        files += 1;
        if got.as_deref() != Ok(want) {
            bad.push(format!("{p}: {got:?}"));
        }
    }
    // The kernel walks the new inode btrees for bulkstat.
    let bs = Command::new("xfs_io")
        .args(["-r", "-c", "bulkstat"])
        .arg(&m.0)
        .output();
    let listed = bs.as_ref().ok().filter(|o| o.status.success()).map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("bs_ino = "))
            .count() as u64
    });
    drop(m);
    drop(lo);
    assert!(
        bad.is_empty(),
        "{} of {files} files differ: {bad:?}",
        bad.len()
    );
    assert!(files > 100, "{files} files");
    if let Some(n) = listed {
        assert_eq!(
            n + internal as u64,
            in_use,
            "bulkstat through the new inode btrees lists {n} inodes (+{internal} internal)"
        );
    } else {
        eprintln!("{NAME}: xfs_io bulkstat unavailable, inode btrees not walked by the kernel");
    }
    eprintln!(
        "mounted the repaired image: {files} manifest files identical through the kernel; bulkstat {listed:?} inodes"
    );
}

#[test]
fn a_clean_image_rebuilds_its_inode_btrees_with_the_counts_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = patched_copy(dir.path(), "rmapbt", &[]);
    let o = open_rw(&path);
    for agno in o.fs.geometry().ags() {
        let mut w = repair::WriteSet::new();
        let s = xrepair::ialloc::plan_ag_inodes(&o.fs, agno, &mut w).unwrap();
        let agi = o.fs.read_agi(agno).unwrap().into_verified().unwrap();
        assert_eq!(s.agi.count, agi.count, "{agno}");
        assert_eq!(s.agi.freecount, agi.freecount, "{agno}");
        assert_eq!(s.agi.ino.1, agi.level, "{agno}");
        assert_eq!(s.agi.fino.map(|f| f.1), Some(agi.free_level), "{agno}");
        assert_eq!(
            (s.agi.iblocks, s.agi.fblocks),
            (agi.iblocks, agi.fblocks),
            "{agno}"
        );
        assert_eq!(
            s.chunks * 64,
            u64::from(agi.count),
            "{agno}: no sparse chunks"
        );
        // The new trees (over the old trees' blocks) and the new AGI.
        assert_eq!(w.len() as u32, agi.iblocks + agi.fblocks + 1, "{agno}");
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
