//! The `inode` and `bmapbt*` scrubbers: silent on every clean fixture, and
//! each kind of damage they exist for is reported with its code.
//!
//! Damage is made by patching an inode of the committed `rmapbt` fixture on
//! a copy-on-write overlay with its CRC recomputed, so only the content
//! checks can catch it, the way the oracle corpus does.

use crate::common::{fixture_images, testdata};
use scrub::{FindingKind, ItemStatus, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::crc;

const MINE: &[&str] = &["inode", "bmapbtd", "bmapbta"];

/// Runs the scrubbers over `fs`: (kind, code, message) of every finding.
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

/// Patches the inode at `path` of the `rmapbt` fixture with `patch` (CRC
/// recomputed) and checks the result.
fn damage(path: &str, patch: impl FnOnce(&mut Vec<u8>)) -> Vec<(FindingKind, String, String)> {
    let zst = testdata().join("images/rmapbt.img.zst");
    let base: Arc<dyn Device> = Arc::from(open_image(&zst, Access::ReadOnly).unwrap());
    let dev = Arc::new(CowDevice::new(base));
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let ino = fs.resolve(path).unwrap();
    let off = fs.geometry().inode_location(ino).unwrap().byte_offset;
    let mut b = vec![0u8; fs.geometry().inode_size as usize];
    fs.device().read_at(&mut b, off).unwrap();
    patch(&mut b);
    crc::update(&mut b, 100).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    let fs = Filesystem::open(Box::new(dev)).unwrap();
    check(&fs)
}

fn codes(found: &[(FindingKind, String, String)]) -> Vec<&str> {
    found.iter().map(|f| f.1.as_str()).collect()
}

const FILE: &str = "/files/small/small-21";
const BTREE_FILE: &str = "/files/fragmented-a";

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn leaked_inode_without_links() {
    let found = damage(FILE, |b| b[16..20].copy_from_slice(&0u32.to_be_bytes()));
    assert_eq!(codes(&found), ["inode.core.nlinkv2"], "{found:?}");
}

#[test]
fn linked_inode_on_an_unlinked_list() {
    let found = damage(FILE, |b| b[96..100].copy_from_slice(&5u32.to_be_bytes()));
    assert!(codes(&found).contains(&"inode.next_unlinked"), "{found:?}");
}

#[test]
fn directory_flag_on_a_file() {
    // NOSYMLINKS (bit 10) in di_flags at offset 90.
    let found = damage(FILE, |b| b[90] |= 0x04);
    assert_eq!(codes(&found), ["inode.core.flags"], "{found:?}");
}

#[test]
fn block_count_disagrees_with_mappings() {
    let found = damage(BTREE_FILE, |b| {
        let n = u64::from_be_bytes(b[64..72].try_into().unwrap());
        b[64..72].copy_from_slice(&(n + 1).to_be_bytes());
    });
    assert_eq!(codes(&found), ["inode.core.nblocks"], "{found:?}");
}

#[test]
fn empty_and_misplaced_mappings() {
    // First extent record at 176: zero its length (low 21 bits of l1).
    let found = damage(FILE, |b| {
        let l1 = be32(b, 188) & !0x1f_ffff;
        b[188..192].copy_from_slice(&l1.to_be_bytes());
    });
    assert!(codes(&found).contains(&"bmapbtd.blockcount"), "{found:?}");
    // Move it by one block: the rmapbt no longer agrees.
    let found = damage(FILE, |b| {
        let l1 = u64::from_be_bytes(b[184..192].try_into().unwrap()) + (1 << 21);
        b[184..192].copy_from_slice(&l1.to_be_bytes());
    });
    let c = codes(&found);
    assert!(c.iter().any(|c| c.starts_with("bmapbtd.")), "{found:?}");
    assert!(
        found
            .iter()
            .all(|f| f.0 == FindingKind::XrefCorrupt || f.1.starts_with("inode.")),
        "{found:?}"
    );
}

#[test]
fn bmbt_root_pointer_to_a_foreign_block() {
    // The root's first pointer, after maxrecs keys of the data fork.
    let found = damage(BTREE_FILE, |b| {
        let forkoff = usize::from(b[82]) * 8;
        let size = if forkoff == 0 { b.len() - 176 } else { forkoff };
        let maxrecs = (size - 4) / 16;
        let at = 176 + 4 + 8 * maxrecs;
        let p = u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        b[at..at + 8].copy_from_slice(&(p + 1).to_be_bytes());
    });
    assert!(
        codes(&found).iter().any(|c| c.starts_with("bmapbtd.")),
        "{found:?}"
    );
}
