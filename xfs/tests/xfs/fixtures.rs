//! Every committed fixture image (`testdata/images/*.img.zst`): the
//! superblock prints as xfs_db prints it, and every object its manifest
//! (`testdata/manifests/<name>.jsonl`, written by `testdata/manifest.py`)
//! lists resolves to the recorded inode, with the recorded type, and every
//! regular file reads back with the recorded sha256 through the path API.
//!
//! Files and directories whose data fork is in bmbt format are counted and
//! skipped until the bmbt walk exists; a mismatch anywhere else fails.

use crate::common::{decompress, fixture_images, have_xfsprogs, open, sha256_hex, testdata};
use crate::geometry::assert_sb_matches_xfs_db;
use xfs::format::dinode::FileType;
use xfs::log::LogState;
use xfs::types::Ino;
use xfs::{Error, Filesystem};

/// What one fixture check saw.
#[derive(Default, Debug)]
struct Tally {
    files: usize,
    dirs: usize,
    symlinks: usize,
    special: usize,
    skipped_bmbt: usize,
    skipped_xattrs: usize,
}

fn is_bmbt(e: &Error) -> bool {
    matches!(e, Error::Unsupported(m) if m.contains("bmbt"))
}

/// Checks one manifest entry against the image.
fn check_entry(fs: &Filesystem, name: &str, v: &serde_json::Value, t: &mut Tally) {
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
    let inode = match fs.resolve_inode(path) {
        Ok(i) => i,
        // A parent directory has a bmbt-format fork.
        Err(e) if is_bmbt(&e) => {
            t.skipped_bmbt += 1;
            return;
        }
        Err(e) => panic!("{here}: {e}"),
    };
    if let Some(ino) = n("ino") {
        assert_eq!(inode.ino, Ino(ino), "{here}: inode number");
    }
    let ft = inode.core.file_type();
    match kind {
        "file" => {
            assert_eq!(ft, FileType::Regular, "{here}");
            assert_eq!(Some(inode.core.size), n("size"), "{here}: size");
            match fs.file_reader(&inode) {
                Ok(r) => {
                    let got = sha256_hex(r).unwrap_or_else(|e| panic!("{here}: {e}"));
                    assert_eq!(Some(got.as_str()), s("sha256"), "{here}: sha256");
                    t.files += 1;
                }
                Err(e) if is_bmbt(&e) => {
                    assert_eq!(s("fork"), Some("btree"), "{here}");
                    t.skipped_bmbt += 1;
                }
                Err(e) => panic!("{here}: {e}"),
            }
        }
        "dir" => {
            assert_eq!(ft, FileType::Directory, "{here}");
            match fs.read_dir(&inode) {
                Ok(entries) => {
                    let real = entries.iter().filter(|e| e.name != b"." && e.name != b"..");
                    assert_eq!(Some(real.count() as u64), n("entries"), "{here}: entries");
                    t.dirs += 1;
                }
                Err(e) if is_bmbt(&e) => t.skipped_bmbt += 1,
                Err(e) => panic!("{here}: {e}"),
            }
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
        let mut t = Tally::default();
        for v in &lines {
            check_entry(&fs, &name, v, &mut t);
        }
        eprintln!("{name}: {t:?}");
        total.files += t.files;
        total.dirs += t.dirs;
        total.symlinks += t.symlinks;
        total.special += t.special;
        total.skipped_bmbt += t.skipped_bmbt;
        total.skipped_xattrs += t.skipped_xattrs;
    }
    eprintln!(
        "fixtures: {} images; verified {} files, {} dirs, {} symlinks, {} special files; skipped {} entries in or under bmbt-format forks (walk not implemented yet) and {} xattrs (no attr reader yet)",
        images.len(),
        total.files,
        total.dirs,
        total.symlinks,
        total.special,
        total.skipped_bmbt,
        total.skipped_xattrs
    );
    assert!(total.files > 1000, "{total:?}");
}
