//! `scrubd` end to end: `info` and `info --sb` against xfs_db on the
//! committed fixtures (compressed, opened directly), and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scrubd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scrubd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../testdata/images/{name}.img.zst"))
}

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
    let st = Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(&out)
        .arg(fixture(name))
        .status()
        .unwrap();
    assert!(st.success());
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
        let (code, out, err) = scrubd(&["info", "--sb", zst_s]);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, String::from_utf8_lossy(&db.stdout), "{name}: --sb");
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
        let (code, out, err) = scrubd(&["info", zst_s]);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, want, "{name}: info");
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn exit_codes_and_messages() {
    let (code, _, err) = scrubd(&["info", "/nonexistent/image"]);
    assert_eq!(code, 8);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("scrubd: ") && err.contains("No such file"),
        "{err}"
    );

    let (code, _, _) = scrubd(&["frobnicate"]);
    assert_eq!(code, 16);
    let (code, _, _) = scrubd(&["info"]);
    assert_eq!(code, 16);
    let (code, out, _) = scrubd(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("info"));

    if fixture("v4").exists() {
        let (code, _, err) = scrubd(&["info", fixture("v4").to_str().unwrap()]);
        assert_eq!(code, 8);
        assert_eq!(
            err.trim(),
            "scrubd: unsupported: v4 (non-CRC) XFS filesystems are not supported"
        );
    }
    if fixture("dirtylog").exists() {
        let (code, _, err) = scrubd(&["info", fixture("dirtylog").to_str().unwrap()]);
        assert_eq!(code, 0);
        assert!(err.contains("warning: the log is dirty"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let (code, _, err) = scrubd(&["info", junk.to_str().unwrap()]);
    assert_eq!(code, 8);
    assert!(err.contains("not an XFS filesystem"), "{err}");
}
