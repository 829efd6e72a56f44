//! The `rmapbt-shadow` scrubber: silent on every clean fixture, finds
//! records patched out of or into the rmapbt, flags every `rmapbt` case of
//! the inode corpus that `xfs_repair -n` flags, and gives the same report
//! whether its staging fits in memory or spills.

use crate::agreement::{check_case, load_set};
use crate::common::{fixture_images, testdata};
use crate::scrub_rmap::{HDR, put_rmap_rec, rmap_rec};
use scrub::{FindingKind, ItemStatus, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::btree::rmap::{RmapRec, owner};
use xfs::format::crc;
use xfs::types::{AgBlock, AgNumber};

type Found = Vec<(FindingKind, String, String)>;

/// Runs the shadow check alone over `fs` with a budget of `budget` bytes.
fn check_with(fs: &Filesystem, budget: &MemoryBudget) -> Found {
    let ctx = ScrubContext::new(budget.clone());
    let opts = RunOptions {
        only: Some(vec![xfs::scrub::rmap_shadow::NAME.to_owned()]),
        threads: Some(1),
    };
    let report = scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap();
    for item in &report.items {
        assert!(
            matches!(
                item.status,
                ItemStatus::Done | ItemStatus::Absent { .. } | ItemStatus::Impossible { .. }
            ),
            "{}: {:?}",
            item.item,
            item.status
        );
    }
    report
        .findings()
        .map(|(_, f)| (f.kind, f.code.to_string(), f.to_string()))
        .collect()
}

fn check(fs: &Filesystem) -> Found {
    check_with(fs, &MemoryBudget::new(64 << 20))
}

fn show(found: &Found) -> String {
    found
        .iter()
        .map(|f| f.2.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

fn has(found: &Found, code: &str) -> bool {
    found
        .iter()
        .any(|(k, c, _)| *k == FindingKind::XrefCorrupt && c == code)
}

#[test]
fn clean_fixtures_have_no_findings() {
    for zst in fixture_images() {
        let name = zst.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dirtylog") || name.starts_with("v4") {
            continue;
        }
        let fs = Filesystem::open(open_image(&zst, Access::ReadOnly).unwrap()).unwrap();
        let found = check(&fs);
        if fs.geometry().features.has_rmapbt() {
            assert!(found.is_empty(), "{name}: {}", show(&found));
        } else {
            // Never silent: the missing feature is named.
            assert_eq!(found.len(), 1, "{name}: {}", show(&found));
            assert_eq!(found[0].0, FindingKind::Warning, "{name}");
            assert_eq!(found[0].1, "rmapbt-shadow.not-possible", "{name}");
            assert!(found[0].2.contains("rmapbt feature"), "{name}");
        }
    }
}

/// A fixture on a writable overlay.
fn overlay(fixture: &str) -> Arc<CowDevice<Arc<dyn Device>>> {
    let zst = testdata().join(format!("images/{fixture}.img.zst"));
    let base: Arc<dyn Device> = Arc::from(open_image(&zst, Access::ReadOnly).unwrap());
    Arc::new(CowDevice::new(base))
}

/// Lets `patch` change the first leaf of AG `agno`'s rmapbt in the
/// `rmapbt` fixture (CRC recomputed), then runs the shadow check.
fn damage(agno: u32, patch: impl FnOnce(&mut Vec<u8>)) -> Found {
    let fs = damaged("rmapbt", agno, patch);
    check(&fs)
}

/// `fixture` with the first leaf of AG `agno`'s rmapbt changed by `patch`.
fn damaged(fixture: &str, agno: u32, patch: impl FnOnce(&mut Vec<u8>)) -> Filesystem {
    let dev = overlay(fixture);
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let geo = fs.geometry().clone();
    let agf = fs.read_agf(AgNumber(agno)).unwrap().value;
    let read = |agbno: u32| {
        let off = geo
            .agb_to_daddr(AgNumber(agno), AgBlock(agbno))
            .unwrap()
            .to_bytes()
            .unwrap();
        let mut b = vec![0u8; geo.block_size as usize];
        fs.device().read_at(&mut b, off).unwrap();
        (off, b)
    };
    let mut at = agf.rmap_root;
    let (off, mut b) = loop {
        let (off, b) = read(at);
        if u16::from_be_bytes([b[4], b[5]]) == 0 {
            break (off, b);
        }
        let maxrecs = (b.len() - HDR) / 44;
        at = u32::from_be_bytes(b[HDR + 40 * maxrecs..][..4].try_into().unwrap());
    };
    patch(&mut b);
    crc::update(&mut b, 52).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    Filesystem::open(Box::new(dev)).unwrap()
}

fn numrecs(b: &[u8]) -> usize {
    u16::from_be_bytes([b[6], b[7]]) as usize
}

fn find_rec(b: &[u8], pred: impl Fn(&RmapRec) -> bool) -> usize {
    (0..numrecs(b)).find(|i| pred(&rmap_rec(b, *i))).unwrap()
}

/// Removes record `i` from a leaf (shifting the rest down).
fn remove_rec(b: &mut [u8], i: usize) {
    let n = numrecs(b);
    for j in i..n - 1 {
        let r = rmap_rec(b, j + 1);
        put_rmap_rec(b, j, &r);
    }
    b[6..8].copy_from_slice(&((n - 1) as u16).to_be_bytes());
}

#[test]
fn record_patched_out_is_missing() {
    let found = damage(1, |b| {
        let i = find_rec(b, |r| !owner::is_special(r.owner) && !r.bmbt_block());
        // Keep the first record: it is the leaf's key in its parent.
        let i = if i == 0 { 1 } else { i };
        remove_rec(b, i);
    });
    assert!(has(&found, "rmapbt.missing"), "{}", show(&found));
}

#[test]
fn special_owner_record_patched_out_is_missing() {
    let found = damage(1, |b| {
        let i = find_rec(b, |r| r.owner == owner::INODES || r.owner == owner::INOBT);
        let i = if i == 0 { 1 } else { i };
        remove_rec(b, i);
    });
    assert!(has(&found, "rmapbt.missing"), "{}", show(&found));
}

#[test]
fn owner_changed_is_missing_and_extra() {
    let found = damage(1, |b| {
        let i = find_rec(b, |r| {
            !owner::is_special(r.owner) && !r.bmbt_block() && !r.attr_fork()
        });
        let i = if i == 0 { 1 } else { i };
        let mut r = rmap_rec(b, i);
        // Another inode number (it exists or not; either way nobody maps
        // these blocks for it).
        r.owner += 1;
        put_rmap_rec(b, i, &r);
    });
    assert!(has(&found, "rmapbt.missing"), "{}", show(&found));
    assert!(has(&found, "rmapbt.extra"), "{}", show(&found));
}

#[test]
fn length_changed_is_a_mismatch() {
    let found = damage(1, |b| {
        let i = find_rec(b, |r| r.owner == owner::INODES);
        let mut r = rmap_rec(b, i);
        r.blockcount -= 1;
        put_rmap_rec(b, i, &r);
    });
    assert!(has(&found, "rmapbt.mismatch"), "{}", show(&found));
}

/// Every `rmapbt` case of the inode corpus that `xfs_repair -n` flags is
/// flagged by the full check (any damage finding counts, as in the
/// agreement harness); prints how many the shadow check alone flags.
#[test]
fn inode_corpus_rmapbt_cases_are_flagged() {
    let cases: Vec<_> = load_set("inode")
        .into_iter()
        .filter(|c| c.structure == "rmapbt")
        .collect();
    assert!(!cases.is_empty());
    let mut missed = Vec::new();
    let (mut oracle, mut shadow_alone) = (0, 0);
    for c in &cases {
        if !c.repair_flags {
            continue;
        }
        oracle += 1;
        if !check_case(c).flagged() {
            missed.push(c.id.clone());
        }
        let dev = CowDevice::new(crate::agreement::base_image(&c.base));
        for (off, bytes) in &c.patch {
            dev.write_at(bytes, *off).unwrap();
        }
        if let Ok(fs) = Filesystem::open(Box::new(dev))
            && check(&fs).iter().any(|f| f.0.is_damage())
        {
            shadow_alone += 1;
        }
    }
    eprintln!(
        "inode corpus rmapbt: {} cases, {oracle} flagged by xfs_repair -n, \
         {shadow_alone} of those by the shadow check alone, {} missed",
        cases.len(),
        missed.len()
    );
    assert!(missed.is_empty(), "not flagged: {missed:?}");
}

/// The shadow check of the `large` fixture (with a record patched out and
/// an owner changed, so there is something to report) gives the same
/// findings when a 64 KiB budget makes its staging spill as with a budget
/// it fits in. (Its whole shadow is about 1 MiB, so 16 MiB would not spill.)
#[test]
fn large_fixture_same_findings_when_spilling() {
    let fs = damaged("large", 2, |b| {
        let i = find_rec(b, |r| r.owner == owner::INODES);
        let i = if i == 0 { 1 } else { i };
        remove_rec(b, i);
        let j = find_rec(b, |r| !owner::is_special(r.owner) && !r.bmbt_block());
        let j = if j == 0 { 1 } else { j };
        let mut r = rmap_rec(b, j);
        r.owner += 1;
        put_rmap_rec(b, j, &r);
    });
    let small = MemoryBudget::new(64 << 10);
    let big = MemoryBudget::new(1 << 30);
    let a = check_with(&fs, &small);
    let b = check_with(&fs, &big);
    assert!(
        has(&a, "rmapbt.missing") && has(&a, "rmapbt.extra"),
        "{}",
        show(&a)
    );
    assert_eq!(a, b);
    let spilled =
        |m: &MemoryBudget| -> u64 { m.stats_by_name().iter().map(|s| s.bytes_spilled).sum() };
    assert!(spilled(&small) > 0, "{:?}", small.stats_by_name());
    assert_eq!(spilled(&big), 0, "{:?}", big.stats_by_name());
    // The statistics of the dropped staging structures are still there.
    let names: Vec<String> = small.stats_by_name().into_iter().map(|s| s.name).collect();
    assert!(
        names
            .iter()
            .any(|n| n == xfs::scrub::rmap_shadow::RAW_STAGING),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == xfs::scrub::rmap_shadow::TREE_STAGING),
        "{names:?}"
    );
}

/// Size of one refcountbt record.
const REFC_REC: usize = 12;

/// `(startblock word, blockcount, refcount)` of refcountbt leaf record `i`.
fn refc_rec(b: &[u8], i: usize) -> (u32, u32, u32) {
    let r = &b[HDR + REFC_REC * i..];
    let w = |o: usize| u32::from_be_bytes(r[o..o + 4].try_into().unwrap());
    (w(0), w(4), w(8))
}

fn put_refc_rec(b: &mut [u8], i: usize, (s, l, c): (u32, u32, u32)) {
    let r = &mut b[HDR + REFC_REC * i..];
    r[0..4].copy_from_slice(&s.to_be_bytes());
    r[4..8].copy_from_slice(&l.to_be_bytes());
    r[8..12].copy_from_slice(&c.to_be_bytes());
}

/// The `rmapbt` fixture with the refcountbt leaf of the AG holding the
/// `/reflink` shared extents changed by `patch` (CRC recomputed).
fn refcountbt_damaged(patch: impl FnOnce(&mut Vec<u8>)) -> Filesystem {
    let dev = overlay("rmapbt");
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let geo = fs.geometry().clone();
    let (off, mut b) = geo
        .ags()
        .find_map(|agno| {
            let agf = fs.read_agf(agno).unwrap().value;
            assert_eq!(
                agf.refcount_level, 1,
                "the fixture's refcountbts are one leaf"
            );
            let off = geo
                .agb_to_daddr(agno, AgBlock(agf.refcount_root))
                .unwrap()
                .to_bytes()
                .unwrap();
            let mut b = vec![0u8; geo.block_size as usize];
            fs.device().read_at(&mut b, off).unwrap();
            (numrecs(&b) >= 2).then_some((off, b))
        })
        .expect("an AG with shared extents");
    patch(&mut b);
    crc::update(&mut b, 52).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    Filesystem::open(Box::new(dev)).unwrap()
}

fn finding<'a>(found: &'a Found, code: &str) -> &'a str {
    &found
        .iter()
        .find(|f| f.1 == code)
        .unwrap_or_else(|| panic!("no {code}:\n{}", show(found)))
        .2
}

#[test]
fn refcount_changed_is_a_mismatch_naming_the_files() {
    let found = check(&refcountbt_damaged(|b| {
        let (s, l, c) = refc_rec(b, 0);
        put_refc_rec(b, 0, (s, l, c + 1));
    }));
    assert!(has(&found, "refcountbt.mismatch"), "{}", show(&found));
    let f = finding(&found, "refcountbt.mismatch");
    assert!(
        f.contains("file mappings share") && f.contains("inodes "),
        "{f}"
    );
    // Only the reference counts differ: the rmapbt matches its owners.
    assert!(
        !found.iter().any(|f| f.1.starts_with("rmapbt.")),
        "{}",
        show(&found)
    );
}

/// Every scrubber over `fs`.
fn check_all(fs: &Filesystem) -> Found {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: None,
        threads: Some(1),
    };
    scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts)
        .unwrap()
        .findings()
        .map(|(_, f)| (f.kind, f.code.to_string(), f.to_string()))
        .collect()
}

const DERIVED: [&str; 3] = [
    "refcountbt.missing",
    "refcountbt.extra",
    "refcountbt.mismatch",
];

/// With the rmapbt agreeing with every owner, the refcountbt scrubber's
/// count against the rmapbt already finds a wrong count; the shadow does
/// not report the same record a second time.
#[test]
fn full_check_reports_a_wrong_count_once() {
    let fs = refcountbt_damaged(|b| {
        let (s, l, c) = refc_rec(b, 0);
        put_refc_rec(b, 0, (s, l, c + 1));
    });
    let found = check_all(&fs);
    let refc: Vec<_> = found
        .iter()
        .filter(|f| f.0.is_damage() && f.1.starts_with("refcountbt."))
        .collect();
    assert_eq!(refc.len(), 1, "{}", show(&found));
    assert!(!DERIVED.contains(&refc[0].1.as_str()), "{}", show(&found));
}

#[test]
fn shared_record_patched_out_is_missing() {
    let found = check(&refcountbt_damaged(|b| {
        let n = numrecs(b);
        b[6..8].copy_from_slice(&((n - 1) as u16).to_be_bytes());
    }));
    assert!(has(&found, "refcountbt.missing"), "{}", show(&found));
    assert!(!has(&found, "refcountbt.extra"), "{}", show(&found));
}

#[test]
fn record_moved_to_unshared_blocks_is_extra_and_missing() {
    let found = check(&refcountbt_damaged(|b| {
        let last = numrecs(b) - 1;
        let (s, l, c) = refc_rec(b, last);
        put_refc_rec(b, last, (s + 1000, l, c));
    }));
    assert!(has(&found, "refcountbt.missing"), "{}", show(&found));
    assert!(has(&found, "refcountbt.extra"), "{}", show(&found));
}

/// Owner-side damage: a file's only extent re-pointed at blocks another
/// file's clones share. Neither tree changed, yet the counts derived from
/// the owners differ from the refcountbt, and the finding names the file
/// that joined.
#[test]
fn file_mapped_onto_shared_blocks_changes_the_count() {
    use xfs::format::dinode::Fork;
    use xfs::types::Ino;
    let dev = overlay("rmapbt");
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let geo = fs.geometry().clone();
    let mapping = |ino: u64| {
        let inode = fs.read_inode(Ino(ino)).unwrap().value;
        fs.mappings(&inode, Fork::Data).unwrap()
    };
    // /reflink/source (ino 47978) and /files/small/small-21 (ino 161, one
    // extent of 3 blocks), from the fixture's manifest.
    let source = mapping(47978)[0].start.0;
    assert_eq!(mapping(161).len(), 1);
    let at = geo.inode_location(Ino(161)).unwrap().byte_offset;
    let mut inode = vec![0u8; usize::from(geo.inode_size as u16)];
    fs.device().read_at(&mut inode, at).unwrap();
    let rec = &mut inode[176..192];
    let l0 = u64::from_be_bytes(rec[0..8].try_into().unwrap());
    let l1 = u64::from_be_bytes(rec[8..16].try_into().unwrap());
    let l0 = (l0 & !0x1ff) | (source >> 43);
    let l1 = (l1 & 0x1f_ffff) | (source << 21);
    rec[0..8].copy_from_slice(&l0.to_be_bytes());
    rec[8..16].copy_from_slice(&l1.to_be_bytes());
    crc::update(&mut inode, 100).unwrap();
    drop(fs);
    dev.write_at(&inode, at).unwrap();
    let fs = Filesystem::open(Box::new(dev)).unwrap();
    let found = check(&fs);
    // The rmapbt and refcountbt agree with each other, so only the counts
    // derived from the owners can tell: the full check reports them too.
    let all = check_all(&fs);
    assert!(
        all.iter().any(|f| DERIVED.contains(&f.1.as_str())),
        "{}",
        show(&all)
    );
    let counts: Vec<&str> = found
        .iter()
        .filter(|f| f.1 == "refcountbt.mismatch" || f.1 == "refcountbt.missing")
        .map(|f| f.2.as_str())
        .collect();
    assert!(counts.iter().any(|f| f.contains("161")), "{}", show(&found));
    assert!(has(&found, "rmapbt.missing"), "{}", show(&found));
}
