//! The `rmapbt` and `refcountbt` scrubbers: silent on every clean fixture,
//! and each kind of damage they exist for is reported with its code.
//!
//! Damage is made by patching records of the committed `rmapbt` fixture on
//! a copy-on-write overlay (CRC recomputed, so only the content checks can
//! catch it), the way the oracle corpus does.

use crate::common::{fixture_images, testdata};
use scrub::{FindingKind, ItemStatus, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::btree::refcount::RefcountRec;
use xfs::format::btree::rmap::{RmapRec, owner};
use xfs::format::crc;
use xfs::types::{AgBlock, AgNumber};

const MINE: &[&str] = &["rmapbt", "refcountbt"];

/// Runs the two scrubbers over `fs`: (kind, code, message) of every finding.
fn check(fs: &Filesystem) -> Vec<(FindingKind, String, String)> {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: Some(MINE.iter().map(|s| s.to_string()).collect()),
        threads: Some(1),
    };
    let report = scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap();
    for item in &report.items {
        assert!(
            matches!(item.status, ItemStatus::Done | ItemStatus::Absent { .. }),
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

#[test]
fn clean_fixtures_have_no_findings() {
    for zst in fixture_images() {
        let name = zst.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dirtylog") || name.starts_with("v4") {
            continue;
        }
        let fs = Filesystem::open(open_image(&zst, Access::ReadOnly).unwrap()).unwrap();
        let found = check(&fs);
        assert!(
            found.is_empty(),
            "{name}: {}",
            found
                .iter()
                .map(|f| f.2.clone())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The `rmapbt` fixture on a writable overlay.
fn overlay() -> Arc<CowDevice<Arc<dyn Device>>> {
    let zst = testdata().join("images/rmapbt.img.zst");
    let base: Arc<dyn Device> = Arc::from(open_image(&zst, Access::ReadOnly).unwrap());
    Arc::new(CowDevice::new(base))
}

/// Reads block `agbno` of AG `agno`.
fn read_block(fs: &Filesystem, agno: u32, agbno: u32) -> (u64, Vec<u8>) {
    let geo = fs.geometry();
    let off = geo
        .agb_to_daddr(AgNumber(agno), AgBlock(agbno))
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut b = vec![0u8; geo.block_size as usize];
    fs.device().read_at(&mut b, off).unwrap();
    (off, b)
}

/// The first leaf of a short-form btree rooted at `root`.
fn first_leaf(fs: &Filesystem, agno: u32, root: u32, ptr_at: impl Fn(&[u8]) -> u32) -> u32 {
    let mut at = root;
    loop {
        let (_, b) = read_block(fs, agno, at);
        if u16::from_be_bytes([b[4], b[5]]) == 0 {
            return at;
        }
        at = ptr_at(&b);
    }
}

pub(crate) const HDR: usize = 56;

pub(crate) fn rmap_rec(b: &[u8], i: usize) -> RmapRec {
    let r = &b[HDR + 24 * i..];
    RmapRec {
        startblock: u32::from_be_bytes(r[0..4].try_into().unwrap()),
        blockcount: u32::from_be_bytes(r[4..8].try_into().unwrap()),
        owner: u64::from_be_bytes(r[8..16].try_into().unwrap()),
        offset_word: u64::from_be_bytes(r[16..24].try_into().unwrap()),
    }
}

pub(crate) fn put_rmap_rec(b: &mut [u8], i: usize, r: &RmapRec) {
    let at = HDR + 24 * i;
    b[at..at + 4].copy_from_slice(&r.startblock.to_be_bytes());
    b[at + 4..at + 8].copy_from_slice(&r.blockcount.to_be_bytes());
    b[at + 8..at + 16].copy_from_slice(&r.owner.to_be_bytes());
    b[at + 16..at + 24].copy_from_slice(&r.offset_word.to_be_bytes());
}

/// Opens the fixture, lets `patch` change one leaf block of the rmapbt (or
/// refcountbt) of AG `agno`, recomputes its CRC and checks the result.
fn damage(
    refcount: bool,
    agno: u32,
    patch: impl FnOnce(&Filesystem, &mut Vec<u8>),
) -> Vec<(FindingKind, String, String)> {
    let dev = overlay();
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let agf = fs.read_agf(AgNumber(agno)).unwrap().value;
    let leaf = if refcount {
        first_leaf(&fs, agno, agf.refcount_root, |b| {
            let maxrecs = (b.len() - HDR) / 8;
            u32::from_be_bytes(b[HDR + 4 * maxrecs..][..4].try_into().unwrap())
        })
    } else {
        first_leaf(&fs, agno, agf.rmap_root, |b| {
            let maxrecs = (b.len() - HDR) / 44;
            u32::from_be_bytes(b[HDR + 40 * maxrecs..][..4].try_into().unwrap())
        })
    };
    let (off, mut b) = read_block(&fs, agno, leaf);
    patch(&fs, &mut b);
    crc::update(&mut b, 52).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    let fs = Filesystem::open(Box::new(dev)).unwrap();
    check(&fs)
}

fn has(found: &[(FindingKind, String, String)], kind: FindingKind, code: &str) -> bool {
    found.iter().any(|(k, c, _)| *k == kind && c == code)
}

fn show(found: &[(FindingKind, String, String)]) -> String {
    found
        .iter()
        .map(|f| f.2.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Index of the first record of the leaf matching `pred`.
fn find_rec(b: &[u8], pred: impl Fn(&RmapRec) -> bool) -> usize {
    let n = u16::from_be_bytes([b[6], b[7]]) as usize;
    (0..n).find(|i| pred(&rmap_rec(b, *i))).unwrap()
}

fn file_data(r: &RmapRec) -> bool {
    !owner::is_special(r.owner) && !r.bmbt_block() && !r.attr_fork()
}

#[test]
fn file_offset_disagreeing_with_the_owner_is_found() {
    let found = damage(false, 1, |_, b| {
        let i = find_rec(b, file_data);
        let mut r = rmap_rec(b, i);
        r.offset_word += 1;
        put_rmap_rec(b, i, &r);
    });
    assert!(
        has(&found, FindingKind::XrefCorrupt, "rmapbt.owner-mapping"),
        "{}",
        show(&found)
    );
}

#[test]
fn owner_swapped_for_another_inode_is_found() {
    let found = damage(false, 1, |_, b| {
        let i = find_rec(b, file_data);
        let j = find_rec(b, |r| file_data(r) && r.owner != rmap_rec(b, i).owner);
        let mut r = rmap_rec(b, i);
        r.owner = rmap_rec(b, j).owner;
        put_rmap_rec(b, i, &r);
    });
    assert!(
        has(&found, FindingKind::XrefCorrupt, "rmapbt.owner-mapping"),
        "{}",
        show(&found)
    );
}

#[test]
fn unwritten_flag_on_written_data_is_found() {
    let found = damage(false, 1, |_, b| {
        let i = find_rec(b, |r| file_data(r) && !r.unwritten());
        let mut r = rmap_rec(b, i);
        r.offset_word |= xfs::format::btree::rmap::OFF_UNWRITTEN;
        put_rmap_rec(b, i, &r);
    });
    assert!(
        has(&found, FindingKind::XrefCorrupt, "rmapbt.owner-mapping"),
        "{}",
        show(&found)
    );
}

#[test]
fn metadata_record_grown_over_its_neighbour_is_found() {
    let found = damage(false, 1, |_, b| {
        let i = find_rec(b, |r| r.owner == owner::AG);
        let mut r = rmap_rec(b, i);
        r.blockcount += 1;
        put_rmap_rec(b, i, &r);
    });
    assert!(
        has(&found, FindingKind::Corrupt, "rmapbt.overlap"),
        "{}",
        show(&found)
    );
    assert!(
        has(&found, FindingKind::XrefCorrupt, "rmapbt.owner-extra"),
        "{}",
        show(&found)
    );
}

#[test]
fn special_owner_with_flags_is_corrupt() {
    let found = damage(false, 1, |_, b| {
        let i = find_rec(b, |r| r.owner == owner::AG);
        let mut r = rmap_rec(b, i);
        r.offset_word |= xfs::format::btree::rmap::OFF_ATTR_FORK;
        put_rmap_rec(b, i, &r);
    });
    assert!(
        has(&found, FindingKind::Corrupt, "rmapbt.flags"),
        "{}",
        show(&found)
    );
}

#[test]
fn block_lsn_ahead_of_the_log_is_corrupt() {
    let found = damage(false, 1, |_, b| {
        b[24..32].copy_from_slice(&0x0000_0100_0000_0000u64.to_be_bytes());
    });
    assert!(
        has(&found, FindingKind::Corrupt, "rmapbt.lsn"),
        "{}",
        show(&found)
    );
}

fn refc_rec(b: &[u8], i: usize) -> RefcountRec {
    let r = &b[HDR + 12 * i..];
    let w = u32::from_be_bytes(r[0..4].try_into().unwrap());
    RefcountRec {
        startblock: w & 0x7fff_ffff,
        cow: w >> 31 != 0,
        blockcount: u32::from_be_bytes(r[4..8].try_into().unwrap()),
        refcount: u32::from_be_bytes(r[8..12].try_into().unwrap()),
    }
}

#[test]
fn refcount_off_by_one_is_found() {
    let found = damage(true, 2, |_, b| {
        let r = refc_rec(b, 0);
        b[HDR + 8..HDR + 12].copy_from_slice(&(r.refcount + 1).to_be_bytes());
    });
    assert!(
        has(&found, FindingKind::XrefCorrupt, "refcountbt.refcount-rmap"),
        "{}",
        show(&found)
    );
}

#[test]
fn shared_blocks_left_out_of_the_refcountbt_are_found() {
    // Shrinking a record leaves its last block shared in the rmapbt with no
    // refcount record.
    let found = damage(true, 2, |_, b| {
        let r = refc_rec(b, 1);
        assert!(
            r.blockcount > 1,
            "fixture: second shared extent is one block"
        );
        b[HDR + 12 + 4..HDR + 12 + 8].copy_from_slice(&(r.blockcount - 1).to_be_bytes());
    });
    assert!(
        has(
            &found,
            FindingKind::XrefCorrupt,
            "refcountbt.unrecorded-sharing"
        ),
        "{}",
        show(&found)
    );
}

#[test]
fn cow_flag_on_a_shared_extent_is_corrupt() {
    let found = damage(true, 2, |_, b| {
        b[HDR] |= 0x80;
    });
    assert!(
        has(&found, FindingKind::Corrupt, "refcountbt.refcount"),
        "{}",
        show(&found)
    );
}
