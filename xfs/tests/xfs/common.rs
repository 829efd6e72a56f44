//! Helpers shared by the integration tests: making images with mkfs.xfs,
//! running xfs_db, hashing files read through the path API.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use xfs::Filesystem;
use xfs::device::{Access, open_image};

/// True if xfsprogs is installed; otherwise prints why the test is skipped.
pub fn have_xfsprogs(test: &str) -> bool {
    let ok = Command::new("mkfs.xfs").arg("-V").output().is_ok()
        && Command::new("xfs_db").arg("-V").output().is_ok();
    if !ok {
        eprintln!("SKIP {test}: mkfs.xfs / xfs_db not installed (apt-get install xfsprogs)");
    }
    ok
}

/// True if running as root (loop mounts); otherwise prints why the test is
/// skipped.
pub fn is_root(test: &str) -> bool {
    let out = Command::new("id").arg("-u").output();
    let root = matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!("SKIP {test}: needs root to loop-mount an image");
    }
    root
}

/// Makes a `size_mb` MiB image at `path` with `mkfs.xfs` and extra options.
/// Uses the fstests escape hatch so images under 300 MiB are allowed.
pub fn mkfs(path: &Path, size_mb: u64, args: &[&str]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size_mb << 20).unwrap();
    drop(f);
    let out = Command::new("mkfs.xfs")
        .env("TEST_DIR", "/tmp")
        .env("TEST_DEV", "/dev/null")
        .env("QA_CHECK_FS", "1")
        .arg("-q")
        .arg("-f")
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mkfs.xfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Output of one xfs_db run.
pub struct DbOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `xfs_db [-x|-r] -c cmd... image`.
pub fn xfs_db(image: &Path, expert: bool, cmds: &[&str]) -> DbOut {
    let mut c = Command::new("xfs_db");
    c.arg(if expert { "-x" } else { "-r" });
    for cmd in cmds {
        c.arg("-c").arg(cmd);
    }
    let out = c.arg(image).output().unwrap();
    DbOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Parses `name = value` lines.
pub fn parse_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Opens an image read-only.
pub fn open(path: &Path) -> xfs::Result<Filesystem> {
    let dev = open_image(path, Access::ReadOnly)?;
    Filesystem::open(dev)
}

/// Decompresses a `.zst` image to `out` (xfs_db needs a plain file).
pub fn decompress(zst: &Path, out: &Path) {
    let input = std::fs::File::open(zst).unwrap();
    let mut dec = zstd::stream::read::Decoder::new(input).unwrap();
    let mut f = std::fs::File::create(out).unwrap();
    std::io::copy(&mut dec, &mut f).unwrap();
}

/// sha256 of everything `r` yields, in lowercase hex.
pub fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The workspace's `testdata/` directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Every committed fixture image (`testdata/images/*.img.zst`).
pub fn fixture_images() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata().join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".img.zst"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
