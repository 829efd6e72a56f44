//! The `xattr` scrubber: silent on every clean fixture, and each kind of
//! damage it exists for is reported with its code. Damage is patched into
//! the `rmapbt` fixture on a copy-on-write overlay with the checksum
//! recomputed, so only the field checks can see it.

use crate::common::{fixture_images, testdata};
use scrub::{FindingKind, RunOptions, ScrubContext};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::crc;
use xfs::format::dinode::Fork;

/// (kind, code) of every finding of the `xattr` scrubber over `fs`.
fn check(fs: &Filesystem) -> Vec<(FindingKind, String)> {
    let ctx = ScrubContext::new(MemoryBudget::new(64 << 20));
    let opts = RunOptions {
        only: Some(vec!["xattr".to_owned()]),
        threads: Some(1),
    };
    let report = scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts).unwrap();
    report
        .findings()
        .map(|(_, f)| (f.kind, f.code.to_string()))
        .collect()
}

#[test]
fn clean_fixtures_have_no_attr_findings() {
    for zst in fixture_images() {
        let name = zst.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("v4") {
            continue;
        }
        let fs = Filesystem::open(open_image(&zst, Access::ReadOnly).unwrap()).unwrap();
        let found = check(&fs);
        assert!(found.is_empty(), "{name}: {found:?}");
    }
}

fn overlay() -> Arc<CowDevice<Arc<dyn Device>>> {
    let zst = testdata().join("images/rmapbt.img.zst");
    let base: Arc<dyn Device> = Arc::from(open_image(&zst, Access::ReadOnly).unwrap());
    Arc::new(CowDevice::new(base))
}

/// Patches attribute fork block `ablock` of the file at `path` (CRC at
/// `crc_at` recomputed) and runs the scrubber.
fn damage_attr_block(
    path: &str,
    ablock: u64,
    crc_at: usize,
    patch: impl FnOnce(&mut [u8]),
) -> Vec<(FindingKind, String)> {
    let dev = overlay();
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let inode = fs.resolve_inode(path).unwrap();
    let extents = fs.mappings(&inode, Fork::Attr).unwrap();
    let fsb = xfs::bmap::find_extent(&extents, ablock)
        .and_then(|e| e.fsb_for(ablock))
        .unwrap();
    let off = fs.geometry().fsb_to_byte(fsb).unwrap();
    let mut b = vec![0u8; fs.geometry().block_size as usize];
    fs.device().read_at(&mut b, off).unwrap();
    patch(&mut b);
    crc::update(&mut b, crc_at).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    check(&Filesystem::open(Box::new(dev)).unwrap())
}

fn has(found: &[(FindingKind, String)], code: &str) -> bool {
    found
        .iter()
        .any(|(k, c)| *k == FindingKind::Corrupt && c == code)
}

#[test]
fn incomplete_entry_is_corrupt() {
    // Entry 0's flags byte: header 80 bytes, then hashval (4), nameidx (2).
    let found = damage_attr_block("/xattrs/leaf", 0, 12, |b| b[80 + 6] |= 0x80);
    assert!(has(&found, "xattr.entries.incomplete"), "{found:?}");
}

#[test]
fn remote_value_owner() {
    // The remote value blocks follow the leaf; owner at byte 32.
    let found = damage_attr_block("/xattrs/remote", 1, 12, |b| {
        b[32..40].copy_from_slice(&4242u64.to_be_bytes());
    });
    assert!(has(&found, "xattr.rmt.hdr.owner"), "{found:?}");
}

#[test]
fn usedbytes_and_freemap() {
    let found = damage_attr_block("/xattrs/leaf", 0, 12, |b| {
        // usedbytes + 4, and free map 0 over the header.
        let used = u16::from_be_bytes([b[58], b[59]]) + 4;
        b[58..60].copy_from_slice(&used.to_be_bytes());
        b[64..66].copy_from_slice(&0u16.to_be_bytes());
        b[66..68].copy_from_slice(&64u16.to_be_bytes());
    });
    assert!(has(&found, "xattr.hdr.usedbytes"), "{found:?}");
    assert!(has(&found, "xattr.hdr.freemap.base"), "{found:?}");
}

#[test]
fn empty_leaf_is_only_preen() {
    let found = damage_attr_block("/xattrs/leaf", 0, 12, |b| b[56..58].fill(0));
    assert_eq!(
        found,
        vec![(FindingKind::Preen, "xattr.hdr.count".to_owned())]
    );
}

#[test]
fn shortform_totsize() {
    let dev = overlay();
    let fs = Filesystem::open(Box::new(dev.clone())).unwrap();
    let ino = fs.resolve("/xattrs/local").unwrap();
    let inode = fs.read_inode(ino).unwrap().value;
    let off = fs.geometry().inode_location(ino).unwrap().byte_offset;
    let at = inode.core.fork_offset(Fork::Attr) as usize;
    let mut b = inode.raw.clone();
    let tot = u16::from_be_bytes([b[at], b[at + 1]]) + 1;
    b[at..at + 2].copy_from_slice(&tot.to_be_bytes());
    crc::update(&mut b, 100).unwrap();
    drop(fs);
    dev.write_at(&b, off).unwrap();
    let found = check(&Filesystem::open(Box::new(dev)).unwrap());
    assert!(has(&found, "xattr.hdr.totsize"), "{found:?}");
}
