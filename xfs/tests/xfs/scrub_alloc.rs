//! The free-space and inode btree scrubbers (`bnobt`, `cntbt`, `inobt`,
//! `finobt`): silent on every clean fixture, and each of their own checks
//! (beyond the engine's structural ones) fires on a hand-made corruption
//! that keeps every block's checksum valid.

use crate::common::{fixture_images, testdata};
use scrub::{ItemStatus, Report, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::crc;
use xfs::types::{AgBlock, AgNumber};

const MINE: &[&str] = &["bnobt", "cntbt", "inobt", "finobt"];

/// Offset of the CRC in a short-form btree block.
const SHORT_CRC: usize = 52;
/// Length of a short-form btree block header.
const SHORT_LEN: usize = 56;

fn run(fs: &Filesystem) -> Report {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: Some(MINE.iter().map(|s| s.to_string()).collect()),
        threads: Some(1),
    };
    scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap()
}

fn codes(r: &Report) -> Vec<String> {
    r.findings().map(|(_, f)| f.code.to_string()).collect()
}

#[test]
fn clean_fixtures_report_nothing() {
    for path in fixture_images() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dirtylog") || name.starts_with("v4") {
            continue;
        }
        let fs = Filesystem::open(open_image(&path, Access::ReadOnly).unwrap()).unwrap();
        let report = run(&fs);
        let findings: Vec<String> = report
            .findings()
            .map(|(i, f)| format!("{i}: {f}"))
            .collect();
        assert!(findings.is_empty(), "{name}:\n{}", findings.join("\n"));
        for item in &report.items {
            match &item.status {
                ItemStatus::Done => {}
                ItemStatus::Absent { .. }
                    if item.item.scrubber == "finobt" && !fs.geometry().features.has_finobt() => {}
                s => panic!("{name}: {} ended {s:?}", item.item),
            }
        }
    }
}

/// An image to damage: the fixture under a copy-on-write overlay.
struct Patient {
    dev: Arc<CowDevice<Arc<dyn Device>>>,
}

impl Patient {
    fn new(fixture: &str) -> Self {
        let zst = testdata().join("images").join(format!("{fixture}.img.zst"));
        let base: Arc<dyn Device> = Arc::from(open_image(&zst, Access::ReadOnly).unwrap());
        Self {
            dev: Arc::new(CowDevice::new(base)),
        }
    }

    fn fs(&self) -> Filesystem {
        Filesystem::open(Box::new(self.dev.clone())).unwrap()
    }

    /// Byte offset of AG block `agbno` of AG 0.
    fn offset(fs: &Filesystem, agbno: u32) -> u64 {
        fs.geometry()
            .agb_to_daddr(AgNumber(0), AgBlock(agbno))
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// Rewrites AG block `agbno` of AG 0 with `edit`, then reseals its CRC
    /// at `crc_off` (if any) so only content checks can see the damage.
    fn edit_block(&self, agbno: u32, crc_off: Option<usize>, edit: impl FnOnce(&mut [u8])) {
        let fs = self.fs();
        let off = Self::offset(&fs, agbno);
        let mut b = vec![0u8; fs.geometry().block_size as usize];
        self.dev.read_at(&mut b, off).unwrap();
        edit(&mut b);
        if let Some(c) = crc_off {
            crc::update(&mut b, c).unwrap();
        }
        self.dev.write_at(&b, off).unwrap();
    }
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn put_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_be64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// AG 0's bnobt root (a leaf on the small fixtures).
fn bno_root(fs: &Filesystem) -> u32 {
    let agf = fs.read_agf(AgNumber(0)).unwrap().value;
    assert_eq!(agf.bno_level, 1, "the bnobt of AG 0 is a single leaf");
    agf.bno_root
}

#[test]
fn free_extent_missing_from_the_other_tree() {
    // Shrink the first free extent of the bnobt by one block: the cntbt no
    // longer agrees, and the lost block belongs to nobody.
    let p = Patient::new("rmapbt");
    let root = bno_root(&p.fs());
    p.edit_block(root, Some(SHORT_CRC), |b| {
        let n = be32(b, SHORT_LEN + 4);
        put_be32(b, SHORT_LEN + 4, n - 1);
    });
    let c = codes(&run(&p.fs()));
    assert!(c.contains(&"bnobt.not-in-cntbt".to_string()), "{c:?}");
    assert!(c.contains(&"cntbt.not-in-bnobt".to_string()), "{c:?}");
}

#[test]
fn touching_free_extents_are_unmerged() {
    // Split the first free extent of the bnobt into two records that touch
    // (the last record slides to make room): XFS always merges those.
    let p = Patient::new("rmapbt");
    let root = bno_root(&p.fs());
    p.edit_block(root, Some(SHORT_CRC), |b| {
        let n = usize::from(u16::from_be_bytes([b[6], b[7]]));
        let start = be32(b, SHORT_LEN);
        let len = be32(b, SHORT_LEN + 4);
        assert!(len >= 2, "first free extent too short to split");
        let recs = SHORT_LEN;
        b.copy_within(recs + 8..recs + 8 * n, recs + 16);
        put_be32(b, recs + 4, 1);
        put_be32(b, recs + 8, start + 1);
        put_be32(b, recs + 12, len - 1);
        b[6..8].copy_from_slice(&u16::try_from(n + 1).unwrap().to_be_bytes());
    });
    let c = codes(&run(&p.fs()));
    assert!(c.contains(&"bnobt.mergeable".to_string()), "{c:?}");
}

#[test]
fn block_stamped_ahead_of_the_log() {
    let p = Patient::new("rmapbt");
    let root = bno_root(&p.fs());
    // Cycle 1000 is far beyond any fixture's log.
    p.edit_block(root, Some(SHORT_CRC), |b| put_be64(b, 24, 1000 << 32));
    let c = codes(&run(&p.fs()));
    assert!(c.contains(&"bnobt.lsn".to_string()), "{c:?}");
}

/// AG 0's inobt root (a leaf on the small fixtures) and its first record's
/// free mask.
fn ino_root(fs: &Filesystem) -> u32 {
    let agi = fs.read_agi(AgNumber(0)).unwrap().value;
    assert_eq!(agi.level, 1, "the inobt of AG 0 is a single leaf");
    agi.root
}

#[test]
fn free_mask_disagrees_with_the_inodes() {
    // Swap one in-use and one free inode in the first inobt record's free
    // mask: the counts still add up, only the inodes themselves tell.
    let p = Patient::new("rmapbt");
    let root = ino_root(&p.fs());
    p.edit_block(root, Some(SHORT_CRC), |b| {
        let off = SHORT_LEN + 8;
        let free = u64::from_be_bytes(b[off..off + 8].try_into().unwrap());
        let used_bit = (!free).trailing_zeros();
        let free_bit = free.trailing_zeros();
        assert!(
            used_bit < 64 && free_bit < 64,
            "record needs used and free inodes"
        );
        let swapped = free ^ (1 << used_bit) ^ (1 << free_bit);
        put_be64(b, off, swapped);
    });
    let c = codes(&run(&p.fs()));
    for want in [
        "inobt.free-inode-in-use",
        "inobt.used-inode-free",
        "finobt.differs-from-inobt",
    ] {
        assert!(c.contains(&want.to_string()), "{want}: {c:?}");
    }
}

#[test]
fn inode_cluster_without_inodes() {
    // Zero the magic number of the first inode of AG 0's first chunk (the
    // inode's own CRC goes stale, which the inobt check does not look at).
    let p = Patient::new("rmapbt");
    let fs = p.fs();
    let root = ino_root(&fs);
    let off = Patient::offset(&fs, root);
    let mut b = vec![0u8; fs.geometry().block_size as usize];
    p.dev.read_at(&mut b, off).unwrap();
    let startino = be32(&b, SHORT_LEN);
    let agbno = startino >> fs.geometry().inopb_log;
    let first =
        u64::from(startino % fs.geometry().inodes_per_block) * u64::from(fs.geometry().inode_size);
    p.dev
        .write_at(&[0, 0], Patient::offset(&fs, agbno) + first)
        .unwrap();
    let c = codes(&run(&p.fs()));
    assert!(c.contains(&"inobt.inode-magic".to_string()), "{c:?}");
}

/// Runs only `which` over `fs`.
fn run_only(fs: &Filesystem, which: &[&str]) -> Report {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: Some(which.iter().map(|s| s.to_string()).collect()),
        threads: Some(1),
    };
    scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap()
}

#[test]
fn free_extent_with_an_owner() {
    // Stretch the reverse mapping just below AG 0's first free extent into
    // it: the free extent now has an owner. Both free-space trees see it,
    // the cntbt also when it runs without the bnobt.
    let p = Patient::new("rmapbt");
    let fs = p.fs();
    let agf = fs.read_agf(AgNumber(0)).unwrap().value;
    assert_eq!(agf.rmap_level, 1, "the rmapbt of AG 0 is a single leaf");
    let off = Patient::offset(&fs, agf.bno_root);
    let mut b = vec![0u8; fs.geometry().block_size as usize];
    p.dev.read_at(&mut b, off).unwrap();
    let free_start = be32(&b, SHORT_LEN);
    p.edit_block(agf.rmap_root, Some(SHORT_CRC), |b| {
        let n = usize::from(u16::from_be_bytes([b[6], b[7]]));
        let below = (0..n)
            .rev()
            .map(|i| SHORT_LEN + 24 * i)
            .find(|&r| be32(b, r) < free_start)
            .expect("a mapping below the first free extent");
        let start = be32(b, below);
        put_be32(b, below + 4, free_start - start + 1);
    });
    let fs = p.fs();
    let all = codes(&run(&fs));
    assert!(all.contains(&"bnobt.has-owner".to_string()), "{all:?}");
    let alone = codes(&run_only(&fs, &["cntbt"]));
    assert!(alone.contains(&"cntbt.has-owner".to_string()), "{alone:?}");
}
