//! `scrubd info` and `info --sb` against xfs_db on the committed fixtures
//! (compressed, opened directly), and its exit codes.

use crate::common::{fixture, scrubd};
use std::path::{Path, PathBuf};
use std::process::Command;

fn have_xfs_db() -> bool {
    let ok = Command::new("xfs_db").arg("-V").output().is_ok();
    if !ok {
        eprintln!("SKIP: xfs_db not installed");
    }
    ok
}

/// Decompresses a fixture for xfs_db.
fn plain(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{name}.img"));
    crate::common::decompress(name, &out);
    out
}

#[test]
fn info_matches_xfs_db() {
    if !have_xfs_db() || !fixture("default").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "default", "1k", "8ag", "rmapbt", "nofinobt", "asciici", "large", "empty",
    ] {
        let img = plain(name, dir.path());
        let zst = fixture(name);
        let zst_s = zst.to_str().unwrap();
        // --sb: field by field against `xfs_db -c 'sb 0' -c print`.
        let db = Command::new("xfs_db")
            .args(["-r", "-c", "sb 0", "-c", "print"])
            .arg(&img)
            .output()
            .unwrap();
        let r = scrubd(&["info", "--sb", zst_s]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(
            r.stdout,
            String::from_utf8_lossy(&db.stdout),
            "{name}: --sb"
        );
        // info: xfs_info's layout, as `xfs_db -c info` prints it; the
        // first line names the image as given.
        let db = Command::new("xfs_db")
            .args(["-r", "-c", "info"])
            .arg(&img)
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&db.stdout).replacen(
            &format!("meta-data={:<22}", img.display()),
            &format!("meta-data={zst_s:<22}"),
            1,
        );
        let r = scrubd(&["info", zst_s]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.stdout, want, "{name}: info");
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn info_exit_codes_and_messages() {
    let r = scrubd(&["info", "/nonexistent/image"]);
    assert_eq!(r.code, 8);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("scrubd: ") && r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );

    assert_eq!(scrubd(&["frobnicate"]).code, 16);
    assert_eq!(scrubd(&["info"]).code, 16);
    let r = scrubd(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("info") && r.stdout.contains("check"));

    if fixture("v4").exists() {
        let r = scrubd(&["info", fixture("v4").to_str().unwrap()]);
        assert_eq!(r.code, 8);
        assert_eq!(
            r.stderr.trim(),
            "scrubd: unsupported: v4 (non-CRC) XFS filesystems are not supported"
        );
    }
    if fixture("dirtylog").exists() {
        let r = scrubd(&["info", fixture("dirtylog").to_str().unwrap()]);
        assert_eq!(r.code, 0);
        assert!(
            r.stderr.contains("warning: the log is dirty"),
            "{}",
            r.stderr
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let r = scrubd(&["info", junk.to_str().unwrap()]);
    assert_eq!(r.code, 8);
    assert!(r.stderr.contains("not an XFS filesystem"), "{}", r.stderr);
}
