//! Every committed fixture image (`testdata/images/*.img.zst`): the
//! superblock prints as xfs_db prints it, and every file its manifest
//! (`testdata/manifests/<name>.jsonl`) lists reads back with the right
//! sha256 through the path API.

use crate::common::{decompress, fixture_images, have_xfsprogs, open, sha256_hex, testdata};
use crate::geometry::assert_sb_matches_xfs_db;
use xfs::Error;
use xfs::format::dinode::FileType;

/// One manifest line, read loosely: the path, and whichever of `sha256`,
/// `target` (symlinks) and `type` it has.
struct Entry {
    path: String,
    kind: Option<String>,
    sha256: Option<String>,
    target: Option<String>,
}

fn parse_manifest(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad manifest line {l}: {e}"));
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            Entry {
                path: s("path").unwrap_or_else(|| panic!("manifest line without path: {l}")),
                kind: s("type").or_else(|| s("kind")),
                sha256: s("sha256"),
                target: s("target").or_else(|| s("symlink")),
            }
        })
        .collect()
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
    let (mut checked, mut skipped_bmbt, mut manifests) = (0usize, 0usize, 0usize);
    for zst in &images {
        let name = zst
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".img.zst")
            .to_owned();
        // The compressed image opens directly.
        let fs = open(zst).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: log {}", fs.log_state());
        let plain = dir.path().join(format!("{name}.img"));
        decompress(zst, &plain);
        assert_sb_matches_xfs_db(&plain);
        std::fs::remove_file(&plain).unwrap();

        let manifest = testdata().join("manifests").join(format!("{name}.jsonl"));
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        manifests += 1;
        for e in parse_manifest(&text) {
            let inode = fs
                .resolve_inode(&e.path)
                .unwrap_or_else(|err| panic!("{name}:{}: {err}", e.path));
            if let Some(want) = &e.sha256 {
                assert_eq!(
                    inode.core.file_type(),
                    FileType::Regular,
                    "{name}:{}",
                    e.path
                );
                match fs.file_reader(&inode) {
                    Ok(r) => {
                        let got = sha256_hex(r).unwrap();
                        assert_eq!(&got, want, "{name}:{}: sha256", e.path);
                        checked += 1;
                    }
                    Err(Error::Unsupported(m)) if m.contains("bmbt") => skipped_bmbt += 1,
                    Err(err) => panic!("{name}:{}: {err}", e.path),
                }
            } else if let Some(t) = &e.target {
                assert_eq!(
                    fs.read_symlink(&inode).unwrap(),
                    t.as_bytes(),
                    "{name}:{}",
                    e.path
                );
                checked += 1;
            } else if e.kind.as_deref().is_some_and(|k| k.starts_with("dir")) {
                assert_eq!(
                    inode.core.file_type(),
                    FileType::Directory,
                    "{name}:{}",
                    e.path
                );
                fs.read_dir(&inode).unwrap();
                checked += 1;
            }
        }
    }
    eprintln!(
        "fixtures: {} images, {manifests} manifests, {checked} entries verified, {skipped_bmbt} files skipped (bmbt format, walk not yet implemented)",
        images.len()
    );
}
