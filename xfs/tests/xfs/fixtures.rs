//! Every committed fixture image (`testdata/images/*.img.zst`): the
//! superblock prints as xfs_db prints it, and every object its manifest
//! (`testdata/manifests/<name>.jsonl`, written by `testdata/manifest.py`)
//! lists resolves to the recorded inode, with the recorded type, and every
//! regular file reads back with the recorded sha256 through the path API.
//!
//! Every AG btree of every fixture verifies clean with the btree engine.

use crate::common::{decompress, fixture_images, have_xfsprogs, open, sha256_hex, testdata};
use crate::geometry::assert_sb_matches_xfs_db;
use std::collections::HashMap;
use xfbtree::verify::Problems;
use xfbtree::{BlockStore, Btree, BtreeFormat};
use xfs::Filesystem;
use xfs::format::dinode::FileType;
use xfs::log::LogState;
use xfs::types::AgNumber;
use xfs::types::Ino;

/// Verifies one tree with the engine: no problems, and returns (blocks,
/// records, height).
fn verify_tree<S: BlockStore, F: BtreeFormat>(what: &str, t: &Btree<S, F>) -> (u64, u64, u16) {
    let mut p = Problems::default();
    let summary = t.verify(&mut p);
    assert!(p.0.is_empty(), "{what}: {:#?}", p.0);
    (summary.blocks, summary.records, t.height())
}

/// Every AG btree of `fs` verifies clean.
fn verify_ag_btrees(fs: &Filesystem, name: &str) {
    let geo = fs.geometry();
    let features = geo.features;
    let mut heights = Vec::new();
    for agno in geo.ags() {
        let agf = fs.read_agf(agno).unwrap().into_verified().unwrap();
        let agi = fs.read_agi(agno).unwrap().into_verified().unwrap();
        let here = |t: &str| format!("{name} AG {} {t}", agno.0);
        let mut v = vec![
            (
                "bnobt",
                verify_tree(&here("bnobt"), &fs.bnobt(agno, &agf).unwrap()),
            ),
            (
                "cntbt",
                verify_tree(&here("cntbt"), &fs.cntbt(agno, &agf).unwrap()),
            ),
            (
                "inobt",
                verify_tree(&here("inobt"), &fs.inobt(agno, &agi).unwrap()),
            ),
        ];
        if features.has_finobt() {
            v.push((
                "finobt",
                verify_tree(&here("finobt"), &fs.finobt(agno, &agi).unwrap()),
            ));
        }
        if features.has_rmapbt() {
            v.push((
                "rmapbt",
                verify_tree(&here("rmapbt"), &fs.rmapbt(agno, &agf).unwrap()),
            ));
        }
        if features.has_reflink() {
            v.push((
                "refcountbt",
                verify_tree(&here("refcountbt"), &fs.refcountbt(agno, &agf).unwrap()),
            ));
        }
        // Block counts the AG headers keep agree with the walk.
        let blocks = |t: &str| v.iter().find(|(n, _)| *n == t).map_or(0, |(_, s)| s.0);
        let rmap = blocks("rmapbt");
        let extra = |b: u64| b.saturating_sub(1);
        assert_eq!(
            u64::from(agf.btreeblks),
            extra(blocks("bnobt")) + extra(blocks("cntbt")) + extra(rmap),
            "{}",
            here("agf btreeblks")
        );
        if features.has_rmapbt() {
            assert_eq!(
                u64::from(agf.rmap_blocks),
                rmap,
                "{}",
                here("agf rmap_blocks")
            );
        }
        if features.has_reflink() {
            assert_eq!(
                u64::from(agf.refcount_blocks),
                blocks("refcountbt"),
                "{}",
                here("refcount_blocks")
            );
        }
        if features.has_inobtcounts() {
            assert_eq!(
                u64::from(agi.iblocks),
                blocks("inobt"),
                "{}",
                here("agi iblocks")
            );
            assert_eq!(
                u64::from(agi.fblocks),
                blocks("finobt"),
                "{}",
                here("agi fblocks")
            );
        }
        heights.push((agno, v.iter().map(|(n, s)| (*n, s.2)).collect::<Vec<_>>()));
    }
    let max = heights
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, h)| *h))
        .max()
        .unwrap_or(0);
    eprintln!("{name}: AG btrees verified; tallest {max} levels");
    if name == "large" {
        // The fixture was built so that AG 1 has every tree at two levels.
        let ag1 = &heights.iter().find(|(a, _)| *a == AgNumber(1)).unwrap().1;
        assert!(ag1.iter().all(|(_, h)| *h >= 2), "{ag1:?}");
    }
}

/// What one fixture check saw.
#[derive(Default, Debug)]
struct Tally {
    files: usize,
    dirs: usize,
    symlinks: usize,
    special: usize,
    bmbt_forks: usize,
    skipped_xattrs: usize,
}

/// Directory listings already read, by path: resolving every one of tens
/// of thousands of paths from the root would rescan big directories once
/// per entry.
type Listings = HashMap<String, HashMap<Vec<u8>, Ino>>;

/// The inode at `path`: looked up in the cached listing of its parent, and
/// also resolved from the root (the API under test) for every entry of
/// small directories and a sample of big ones.
fn inode_at(fs: &Filesystem, path: &str, cache: &mut Listings, seq: usize) -> xfs::Inode {
    if path == "/" {
        return fs
            .resolve_inode(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let (parent, base) = path.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() { "/" } else { parent };
    if !cache.contains_key(parent) {
        let dir = fs
            .resolve_inode(parent)
            .unwrap_or_else(|e| panic!("{parent}: {e}"));
        let entries = fs
            .read_dir(&dir)
            .unwrap_or_else(|e| panic!("{parent}: {e}"));
        cache.insert(
            parent.to_owned(),
            entries.into_iter().map(|e| (e.name, e.ino)).collect(),
        );
    }
    let listing = &cache[parent];
    let ino = *listing
        .get(base.as_bytes())
        .unwrap_or_else(|| panic!("{path}: not in its parent's listing"));
    if listing.len() < 500 || seq.is_multiple_of(97) {
        let resolved = fs
            .resolve_inode(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resolved.ino, ino, "{path}: resolve vs listing");
    }
    fs.read_inode_verified(ino)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Checks one manifest entry against the image.
fn check_entry(
    fs: &Filesystem,
    name: &str,
    v: &serde_json::Value,
    t: &mut Tally,
    cache: &mut Listings,
    seq: usize,
) {
    check_entry_with(fs, None, name, v, t, cache, seq);
}

/// [`check_entry`]; with `pristine` (the unmodified fixture, whose files
/// `committed_fixtures` proves match the manifest's sha256), a regular
/// file is compared byte for byte with the same file there instead of
/// hashed: the same verdict, far faster than hashing the 1 GiB sparse
/// files of the fixtures in software for every repaired copy.
fn check_entry_with(
    fs: &Filesystem,
    pristine: Option<(&Filesystem, &mut Listings)>,
    name: &str,
    v: &serde_json::Value,
    t: &mut Tally,
    cache: &mut Listings,
    seq: usize,
) {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str());
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let Some(path) = s("path") else {
        return; // the header line
    };
    let kind = s("type").unwrap_or("");
    if kind == "xattr" {
        t.skipped_xattrs += 1; // no attribute reader yet
        return;
    }
    let here = format!("{name}:{path}");
    let inode = inode_at(fs, path, cache, seq);
    if s("fork") == Some("btree") {
        t.bmbt_forks += 1;
    }
    if let Some(ino) = n("ino") {
        assert_eq!(inode.ino, Ino(ino), "{here}: inode number");
    }
    let ft = inode.core.file_type();
    match kind {
        "file" => {
            assert_eq!(ft, FileType::Regular, "{here}");
            assert_eq!(Some(inode.core.size), n("size"), "{here}: size");
            let r = fs
                .file_reader(&inode)
                .unwrap_or_else(|e| panic!("{here}: {e}"));
            if let Some((p, pcache)) = pristine {
                let orig = inode_at(p, path, pcache, seq);
                let o = p
                    .file_reader(&orig)
                    .unwrap_or_else(|e| panic!("{here} (pristine): {e}"));
                let same = same_contents(r, o).unwrap_or_else(|e| panic!("{here}: {e}"));
                assert!(same, "{here}: contents differ from the pristine fixture");
            } else {
                let got = sha256_hex(r).unwrap_or_else(|e| panic!("{here}: {e}"));
                assert_eq!(Some(got.as_str()), s("sha256"), "{here}: sha256");
            }
            t.files += 1;
        }
        "dir" => {
            assert_eq!(ft, FileType::Directory, "{here}");
            let entries = fs
                .read_dir(&inode)
                .unwrap_or_else(|e| panic!("{here}: {e}"));
            let real = entries.iter().filter(|e| e.name != b"." && e.name != b"..");
            assert_eq!(Some(real.count() as u64), n("entries"), "{here}: entries");
            t.dirs += 1;
        }
        "symlink" => {
            assert_eq!(ft, FileType::Symlink, "{here}");
            let target = fs
                .read_symlink(&inode)
                .unwrap_or_else(|e| panic!("{here}: {e}"));
            assert_eq!(
                Some(target.as_slice()),
                s("target").map(str::as_bytes),
                "{here}"
            );
            t.symlinks += 1;
        }
        "blockdev" | "chardev" | "fifo" | "socket" => {
            let want = match kind {
                "blockdev" => FileType::BlockDevice,
                "chardev" => FileType::CharDevice,
                "fifo" => FileType::Fifo,
                _ => FileType::Socket,
            };
            assert_eq!(ft, want, "{here}");
            t.special += 1;
        }
        other => panic!("{here}: unknown manifest type {other:?}"),
    }
}

#[test]
fn committed_fixtures() {
    if !have_xfsprogs("committed_fixtures") {
        return;
    }
    let images = fixture_images();
    if images.is_empty() {
        eprintln!("SKIP committed_fixtures: no testdata/images/*.img.zst on this branch yet");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut total = Tally::default();
    for zst in &images {
        let name = zst
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".img.zst")
            .to_owned();
        let plain = dir.path().join(format!("{name}.img"));
        decompress(zst, &plain);
        assert_sb_matches_xfs_db(&plain);
        std::fs::remove_file(&plain).unwrap();

        // The compressed image opens directly.
        let fs = match open(zst) {
            Ok(fs) => fs,
            Err(e) if name == "v4" => {
                assert_eq!(
                    e.to_string(),
                    "unsupported: v4 (non-CRC) XFS filesystems are not supported"
                );
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        eprintln!("{name}: log {}", fs.log_state());
        let manifest = testdata().join("manifests").join(format!("{name}.jsonl"));
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}")))
            .collect();
        let dirty = lines[0]
            .get("xfs_repair_n_exit")
            .and_then(serde_json::Value::as_u64)
            .is_some_and(|x| x != 0);
        if name == "dirtylog" || dirty {
            // The manifest describes the filesystem after log recovery,
            // which this reader does not do: only the log state is checked.
            assert!(
                matches!(fs.log_state(), LogState::Dirty { .. }),
                "{name}: {}",
                fs.log_state()
            );
            assert!(fs.warnings().iter().any(|w| w.contains("dirty")));
            continue;
        }
        assert!(fs.log_state().is_clean(), "{name}: {}", fs.log_state());
        verify_ag_btrees(&fs, &name);
        let mut t = Tally::default();
        let mut cache = Listings::new();
        for (seq, v) in lines.iter().enumerate() {
            check_entry(&fs, &name, v, &mut t, &mut cache, seq);
        }
        eprintln!("{name}: {t:?}");
        total.files += t.files;
        total.dirs += t.dirs;
        total.symlinks += t.symlinks;
        total.special += t.special;
        total.bmbt_forks += t.bmbt_forks;
        total.skipped_xattrs += t.skipped_xattrs;
    }
    eprintln!(
        "fixtures: {} images; verified {} files, {} dirs, {} symlinks, {} special files ({} with bmbt-format forks); skipped {} xattrs (no attr reader yet)",
        images.len(),
        total.files,
        total.dirs,
        total.symlinks,
        total.special,
        total.bmbt_forks,
        total.skipped_xattrs
    );
    assert!(total.files > 20_000, "{total:?}");
    assert!(total.bmbt_forks > 10, "{total:?}");
}

/// Checks every entry of fixture `name`'s manifest against `fs` (which
/// must hold that fixture's files, e.g. after a repair); returns the number
/// of regular files whose contents were compared.
// Kept for tests of changed images without a pristine copy at hand (the
// repair tests now use `check_manifest_against`, which is much faster).
#[allow(dead_code)]
pub fn check_manifest(fs: &Filesystem, name: &str) -> usize {
    let manifest = testdata().join("manifests").join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut t = Tally::default();
    let mut cache = Listings::new();
    for (seq, l) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}"));
        check_entry(fs, name, &v, &mut t, &mut cache, seq);
    }
    t.files
}

/// Whether `a` and `b` yield the same bytes.
fn same_contents(mut a: impl std::io::Read, mut b: impl std::io::Read) -> std::io::Result<bool> {
    /// Fills `buf` as far as `r` goes; returns the bytes read.
    fn fill(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let (n, m) = (fill(&mut a, &mut x)?, fill(&mut b, &mut y)?);
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// [`check_manifest`] for a copy of fixture `name` that a test changed
/// (a repair): every entry as there, but each regular file compared byte
/// for byte with the same file of `pristine`, the unmodified fixture.
pub fn check_manifest_against(fs: &Filesystem, pristine: &Filesystem, name: &str) -> usize {
    let manifest = testdata().join("manifests").join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut t = Tally::default();
    let mut cache = Listings::new();
    let mut pcache = Listings::new();
    for (seq, l) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}"));
        check_entry_with(
            fs,
            Some((pristine, &mut pcache)),
            name,
            &v,
            &mut t,
            &mut cache,
            seq,
        );
    }
    t.files
}
