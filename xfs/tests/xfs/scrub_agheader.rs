//! The AG header and summary counter scrubbers (`sb`, `agf`, `agfl`, `agi`,
//! `fscounters`): silent on every clean fixture, and precise about damage
//! made by hand (each test changes one field, fixes up the CRC as a real
//! writer would, and checks the finding's kind, code and place).

use crate::common::{fixture_images, testdata};
use scrub::{Finding, FindingKind, Report, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::{agf, agfl, agi, crc, superblock};
use xfs::types::{AgNumber, Daddr};

/// The scrubbers under test.
const MINE: &[&str] = &["sb", "agf", "agfl", "agi", "fscounters"];

fn run(fs: &Filesystem) -> Report {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: Some(MINE.iter().map(|s| s.to_string()).collect()),
        threads: Some(1),
    };
    scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap()
}

fn findings(r: &Report) -> Vec<Finding> {
    r.findings().map(|(_, f)| f.clone()).collect()
}

#[test]
fn clean_fixtures_have_no_findings() {
    let mut checked = 0;
    for img in fixture_images() {
        let name = img.file_name().unwrap().to_string_lossy().into_owned();
        // v4 cannot be opened; dirtylog's metadata lags its log.
        if name.starts_with("v4.") || name.starts_with("dirtylog.") {
            continue;
        }
        let fs = Filesystem::open(open_image(&img, Access::ReadOnly).unwrap()).unwrap();
        let report = run(&fs);
        let all: Vec<String> = findings(&report).iter().map(|f| f.to_string()).collect();
        assert!(all.is_empty(), "{name}: {all:#?}");
        for item in &report.items {
            assert_eq!(
                item.status,
                scrub::ItemStatus::Done,
                "{name}: {}",
                item.item
            );
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} fixtures found");
}

/// The `rmapbt` fixture (four AGs, rmapbt, reflink, finobt) on a
/// copy-on-write overlay.
fn rmapbt_image() -> Arc<dyn Device> {
    let zst = testdata().join("images").join("rmapbt.img.zst");
    Arc::from(open_image(&zst, Access::ReadOnly).unwrap())
}

/// Byte offset of header sector `sector` of AG `agno`.
fn header_offset(base: &Arc<dyn Device>, agno: u32, sector: u32) -> u64 {
    let fs = Filesystem::open(Box::new(CowDevice::new(base.clone()))).unwrap();
    let d: Daddr = fs
        .geometry()
        .ag_header_daddr(AgNumber(agno), sector)
        .unwrap();
    d.to_bytes().unwrap()
}

/// Opens `base` with header sector `sector` of AG `agno` edited by `edit`
/// and its CRC (at `crc_off`) recomputed.
fn open_edited(
    base: &Arc<dyn Device>,
    agno: u32,
    sector: u32,
    crc_off: usize,
    edit: impl FnOnce(&mut [u8]),
) -> Filesystem {
    let dev = CowDevice::new(base.clone());
    edit_sector(&dev, header_offset(base, agno, sector), crc_off, edit);
    Filesystem::open(Box::new(dev)).unwrap()
}

/// Edits the 512-byte sector at `off` of `dev` and recomputes its CRC.
fn edit_sector(
    dev: &CowDevice<Arc<dyn Device>>,
    off: u64,
    crc_off: usize,
    edit: impl FnOnce(&mut [u8]),
) {
    let mut buf = vec![0u8; 512];
    dev.read_at(&mut buf, off).unwrap();
    edit(&mut buf);
    crc::update(&mut buf, crc_off).unwrap();
    dev.write_at(&buf, off).unwrap();
}

fn be32(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(buf[off..off + 4].try_into().unwrap())
}

fn put_be32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn damage(fs: &Filesystem) -> Vec<Finding> {
    findings(&run(fs))
        .into_iter()
        .filter(|f| f.kind.is_damage())
        .collect()
}

#[test]
fn agf_freeblks_disagrees_with_the_bnobt() {
    let base = rmapbt_image();
    // agf_freeblks is at byte 52.
    let fs = open_edited(&base, 1, 1, agf::CRC_OFFSET, |b| {
        let v = be32(b, 52);
        put_be32(b, 52, v + 1);
    });
    let all = findings(&run(&fs));
    let bad = damage(&fs);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].kind, FindingKind::XrefCorrupt);
    assert_eq!(bad[0].code, "agf.freeblks");
    assert_eq!(bad[0].location.group, Some(1));
    assert_eq!(
        bad[0].expected.as_deref().unwrap().parse::<u64>().unwrap() + 1,
        bad[0].actual.as_deref().unwrap().parse::<u64>().unwrap()
    );
    // The summary counters are checked against the AG's trees instead of
    // its damaged AGF, and the superblock agrees with them.
    assert!(
        !all.iter().any(|f| f.code.starts_with("fscounters.")),
        "{all:#?}"
    );
}

/// `base` with the AG header sector edited, then the primary superblock
/// edited too (both CRCs recomputed).
fn open_edited_twice(
    base: &Arc<dyn Device>,
    (agno, sector, crc_off): (u32, u32, usize),
    edit: impl FnOnce(&mut [u8]),
    edit_sb: impl FnOnce(&mut [u8]),
) -> Filesystem {
    let dev = CowDevice::new(base.clone());
    edit_sector(&dev, header_offset(base, agno, sector), crc_off, edit);
    edit_sector(
        &dev,
        header_offset(base, 0, 0),
        superblock::CRC_OFFSET,
        edit_sb,
    );
    Filesystem::open(Box::new(dev)).unwrap()
}

fn be64(buf: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(buf[off..off + 8].try_into().unwrap())
}

fn put_be64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn free_blocks_of_a_damaged_agf_are_counted_from_its_trees() {
    let base = rmapbt_image();
    // agf_freeblks at byte 52; sb_fdblocks is the u64 at byte 144.
    let fs = open_edited_twice(
        &base,
        (1, 1, agf::CRC_OFFSET),
        |b| {
            let v = be32(b, 52);
            put_be32(b, 52, v + 7);
        },
        |b| {
            let v = be64(b, 144);
            put_be64(b, 144, v - 3);
        },
    );
    let bad = damage(&fs);
    let f = bad
        .iter()
        .find(|f| f.code == "fscounters.fdblocks")
        .unwrap_or_else(|| panic!("{bad:#?}"));
    assert_eq!(f.kind, FindingKind::Corrupt);
    // The count is the true one, from the trees, not the AGF's +7.
    assert_eq!(
        f.expected.as_deref().unwrap().parse::<u64>().unwrap(),
        f.actual.as_deref().unwrap().parse::<u64>().unwrap() + 3,
        "{f}"
    );
    assert!(
        f.message.contains("AG 1, whose AGF is damaged"),
        "{}",
        f.message
    );
    assert!(bad.iter().any(|f| f.code == "agf.freeblks"), "{bad:#?}");
}

#[test]
fn inodes_of_a_damaged_agi_are_counted_from_its_inobt() {
    let base = rmapbt_image();
    // agi_count at byte 16, agi_freecount at 28; sb_icount at 128 and
    // sb_ifree at 136 (u64s).
    let edit_agi = |b: &mut [u8]| {
        let (c, f) = (be32(b, 16), be32(b, 28));
        put_be32(b, 16, c + 64);
        put_be32(b, 28, f + 5);
    };
    // The superblock right: nothing for fscounters to say.
    let fs = open_edited(&base, 0, 2, agi::CRC_OFFSET, edit_agi);
    let all = findings(&run(&fs));
    assert!(
        !all.iter().any(|f| f.code.starts_with("fscounters.")),
        "{all:#?}"
    );
    assert!(all.iter().any(|f| f.code.starts_with("agi.")), "{all:#?}");
    // The superblock wrong too: both counts, from the inobt.
    let fs = open_edited_twice(&base, (0, 2, agi::CRC_OFFSET), edit_agi, |b| {
        let (c, f) = (be64(b, 128), be64(b, 136));
        put_be64(b, 128, c + 64);
        put_be64(b, 136, f + 1);
    });
    let bad = damage(&fs);
    for (code, off) in [("fscounters.icount", 64), ("fscounters.ifree", 1)] {
        let f = bad
            .iter()
            .find(|f| f.code == code)
            .unwrap_or_else(|| panic!("no {code}: {bad:#?}"));
        assert_eq!(
            f.expected.as_deref().unwrap().parse::<u64>().unwrap() + off,
            f.actual.as_deref().unwrap().parse::<u64>().unwrap(),
            "{f}"
        );
        assert!(f.message.contains("whose AGI is damaged"), "{}", f.message);
    }
}

#[test]
fn a_free_list_count_nothing_confirms_leaves_fdblocks_unchecked() {
    let base = rmapbt_image();
    // agf_flcount at byte 48: no longer the length of flfirst..=fllast.
    let fs = open_edited(&base, 1, 1, agf::CRC_OFFSET, |b| {
        let v = be32(b, 48);
        put_be32(b, 48, v + 1);
    });
    let all = findings(&run(&fs));
    let f = all
        .iter()
        .find(|f| f.code == "fscounters.xref-agf")
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(f.kind, FindingKind::XrefFailed);
    assert!(f.message.contains("free list"), "{}", f.message);
    assert!(
        !all.iter().any(|f| f.code == "fscounters.fdblocks"),
        "{all:#?}"
    );
}

#[test]
fn agf_level_disagrees_with_its_root_block() {
    let base = rmapbt_image();
    // agf_levels[rmap] is at byte 36.
    let fs = open_edited(&base, 1, 1, agf::CRC_OFFSET, |b| {
        let v = be32(b, 36);
        put_be32(b, 36, v + 1);
    });
    let bad = damage(&fs);
    assert!(
        bad.iter()
            .any(|f| f.code == "agf.rmaplevel" && f.kind == FindingKind::XrefCorrupt),
        "{bad:#?}"
    );
}

#[test]
fn secondary_uuid_is_only_preened() {
    let base = rmapbt_image();
    // sb_uuid is at byte 32.
    let fs = open_edited(&base, 2, 0, superblock::CRC_OFFSET, |b| b[32] ^= 0xff);
    let all = findings(&run(&fs));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].kind, FindingKind::Preen);
    assert_eq!(all[0].code, "sb.uuid");
    assert_eq!(all[0].location.group, Some(2));
}

#[test]
fn secondary_geometry_must_match_the_primary() {
    let base = rmapbt_image();
    // sb_logblocks is at byte 96.
    let fs = open_edited(&base, 3, 0, superblock::CRC_OFFSET, |b| {
        let v = be32(b, 96);
        put_be32(b, 96, v - 1);
    });
    let bad = damage(&fs);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].kind, FindingKind::Corrupt);
    assert_eq!(bad[0].code, "sb.logblocks");
    assert_eq!(bad[0].location.group, Some(3));
}

#[test]
fn primary_inode_count_is_checked_against_the_agis() {
    let base = rmapbt_image();
    // sb_icount is the u64 at byte 128.
    let fs = open_edited(&base, 0, 0, superblock::CRC_OFFSET, |b| b[135] ^= 1);
    let bad = damage(&fs);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].code, "fscounters.icount");
    // The image was unmounted cleanly: the kernel would trust the value.
    assert_eq!(bad[0].kind, FindingKind::Corrupt);
}

#[test]
fn primary_root_pointer_must_name_the_root_directory() {
    let base = rmapbt_image();
    // sb_rootino is the u64 at byte 56; the next inode is the realtime
    // bitmap, a regular file.
    let fs = open_edited(&base, 0, 0, superblock::CRC_OFFSET, |b| b[63] += 1);
    let bad = damage(&fs);
    assert!(
        bad.iter()
            .any(|f| f.code == "sb.rootino" && f.location.group == Some(0)),
        "{bad:#?}"
    );
}

#[test]
fn free_list_block_owned_by_someone_else() {
    let base = rmapbt_image();
    let fs = Filesystem::open(Box::new(CowDevice::new(base.clone()))).unwrap();
    let a = fs.read_agf(AgNumber(1)).unwrap().value;
    let inobt_root = fs.read_agi(AgNumber(1)).unwrap().value.root;
    assert!(a.flcount > 0);
    let slot = usize::try_from(a.flfirst).unwrap();
    // The first live slot now names the inobt's root block.
    let fs = open_edited(&base, 1, 3, agfl::CRC_OFFSET, |b| {
        put_be32(b, agfl::HEADER_SIZE + 4 * slot, inobt_root)
    });
    let bad = damage(&fs);
    assert!(
        bad.iter().any(|f| f.code == "agfl.rmap-owner"
            && f.kind == FindingKind::XrefCorrupt
            && f.location.block == Some(u64::from(inobt_root))),
        "{bad:#?}"
    );
}

#[test]
fn unlinked_list_must_hold_unlinked_inodes() {
    let base = rmapbt_image();
    let fs = Filesystem::open(Box::new(CowDevice::new(base.clone()))).unwrap();
    let root = fs.superblock().rootino;
    let agino = u32::try_from(root & ((1 << fs.geometry().agino_log) - 1)).unwrap();
    let bucket = usize::try_from(agino % 64).unwrap();
    // agi_unlinked[] starts at byte 40; the root directory is linked.
    let fs = open_edited(&base, 0, 2, agi::CRC_OFFSET, |b| {
        put_be32(b, 40 + 4 * bucket, agino)
    });
    let bad = damage(&fs);
    let field = format!("agi.unlinked[{bucket}]");
    assert!(
        bad.iter()
            .any(|f| f.code == field && f.kind == FindingKind::Corrupt),
        "{bad:#?}"
    );
}
