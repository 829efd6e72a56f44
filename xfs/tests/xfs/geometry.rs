//! Fresh images of many mkfs.xfs configurations: the superblock prints as
//! xfs_db prints it, geometry validates, every AG header verifies clean,
//! the log is clean.

use crate::common::{have_xfsprogs, mkfs, open, parse_fields, xfs_db};
use std::path::Path;
use xfs::log::LogState;
use xfs::types::AgNumber;

/// mkfs.xfs variants: (size in MiB, options).
const VARIANTS: &[(u64, &[&str])] = &[
    (64, &[]),
    (64, &["-m", "rmapbt=1"]),
    (64, &["-m", "rmapbt=1,reflink=0"]),
    (64, &["-m", "reflink=0,finobt=0,inobtcount=0,bigtime=0"]),
    (64, &["-i", "size=1024"]),
    (64, &["-i", "size=2048"]),
    (64, &["-b", "size=1024"]),
    (64, &["-b", "size=2048", "-n", "size=8192"]),
    (64, &["-n", "size=65536"]),
    (64, &["-i", "sparse=0"]),
    (64, &["-i", "nrext64=1"]),
    (101, &["-d", "agcount=5"]),
    (64, &["-s", "size=4096"]),
    (64, &["-d", "su=64k,sw=4"]),
    (64, &["-L", "label\"1?"]),
    (64, &["-l", "su=32k"]),
    (64, &["-n", "ftype=1", "-m", "crc=1", "-i", "maxpct=5"]),
];

/// Compares our rendering of the primary superblock with xfs_db's.
pub fn assert_sb_matches_xfs_db(img: &Path) {
    let db = xfs_db(img, false, &["sb 0", "print"]);
    assert!(db.ok, "xfs_db failed on {}: {}", img.display(), db.stderr);
    let want = parse_fields(&db.stdout);
    // Decode only (like xfs_db), so v4 and damaged superblocks print too.
    let mut sector = vec![0u8; 32768];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(img).unwrap(), &mut sector, 0)
        .unwrap();
    let sect = usize::from(u16::from_be_bytes([sector[102], sector[103]])).clamp(512, 32768);
    let sector = &sector[..sect];
    let sb = xfs::format::superblock::Superblock::from_bytes(sector).unwrap();
    let crc_ok = xfs::format::crc::verify(sector, xfs::format::superblock::CRC_OFFSET);
    let got: Vec<(String, String)> = sb
        .db_fields(crc_ok)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(got.len(), want.len(), "{}: field count", img.display());
    for ((gk, gv), (wk, wv)) in got.iter().zip(want.iter()) {
        assert_eq!(gk, wk, "{}: field order", img.display());
        assert_eq!(gv, wv, "{}: field {gk}", img.display());
    }
}

/// Reads every AG header and asserts they verify clean.
pub fn assert_headers_clean(img: &Path) {
    let fs = open(img).unwrap();
    let geo = fs.geometry().clone();
    for agno in geo.ags() {
        let sb = fs.read_sb(agno).unwrap();
        assert!(sb.is_ok(), "{} {agno} sb: {:?}", img.display(), sb.problems);
        let agf = fs.read_agf(agno).unwrap();
        assert!(
            agf.is_ok(),
            "{} {agno} agf: {:?}",
            img.display(),
            agf.problems
        );
        let agi = fs.read_agi(agno).unwrap();
        assert!(
            agi.is_ok(),
            "{} {agno} agi: {:?}",
            img.display(),
            agi.problems
        );
        let agfl = fs.read_agfl(agno, Some(&agf.value)).unwrap();
        assert!(
            agfl.is_ok(),
            "{} {agno} agfl: {:?}",
            img.display(),
            agfl.problems
        );
    }
    let root = fs.read_inode_verified(geo.root_ino).unwrap();
    let entries = fs.read_dir(&root).unwrap();
    assert!(entries.iter().any(|e| e.name == b"."));
    assert!(entries.iter().any(|e| e.name == b".."));
}

#[test]
fn mkfs_variants_match_xfs_db_and_verify_clean() {
    if !have_xfsprogs("mkfs_variants_match_xfs_db_and_verify_clean") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tested = 0;
    for (i, (size, args)) in VARIANTS.iter().enumerate() {
        let img = dir.path().join(format!("v{i}.img"));
        mkfs(&img, *size, args);
        assert_sb_matches_xfs_db(&img);
        assert_headers_clean(&img);
        let fs = open(&img).unwrap();
        assert!(
            matches!(fs.log_state(), LogState::Clean { .. }),
            "{args:?}: fresh log is {}",
            fs.log_state()
        );
        assert!(fs.warnings().is_empty(), "{args:?}: {:?}", fs.warnings());
        std::fs::remove_file(&img).unwrap();
        tested += 1;
    }
    eprintln!("{tested} mkfs variants matched xfs_db");
}

#[test]
fn short_last_ag() {
    if !have_xfsprogs("short_last_ag") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("short.img");
    mkfs(&img, 101, &["-d", "agcount=5"]);
    let fs = open(&img).unwrap();
    let g = fs.geometry();
    assert_eq!(g.ag_count, 5);
    assert!(g.last_ag_blocks < g.ag_blocks, "{g:?}");
    let last = AgNumber(g.ag_count - 1);
    assert_eq!(fs.read_agf(last).unwrap().value.length, g.last_ag_blocks);
}

#[test]
fn meta_uuid_images_verify() {
    if !have_xfsprogs("meta_uuid_images_verify") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mu.img");
    mkfs(&img, 64, &[]);
    let out = std::process::Command::new("xfs_admin")
        .args(["-U", "generate"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fs = open(&img).unwrap();
    assert!(fs.geometry().features.has_meta_uuid());
    assert_ne!(fs.geometry().uuid, fs.geometry().meta_uuid);
    drop(fs);
    assert_sb_matches_xfs_db(&img);
    assert_headers_clean(&img);
}

#[test]
fn not_xfs_and_v4_are_refused_cleanly() {
    if !have_xfsprogs("not_xfs_and_v4_are_refused_cleanly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let e = open(&zeros).unwrap_err();
    assert!(matches!(e, xfs::Error::NotXfs { .. }), "{e}");

    let v4 = dir.path().join("v4.img");
    mkfs(&v4, 64, &["-m", "crc=0"]);
    let e = open(&v4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported: v4 (non-CRC) XFS filesystems are not supported"
    );

    // A truncated image is an error naming the sizes, not a panic.
    let short = dir.path().join("short.img");
    mkfs(&short, 64, &[]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap();
    f.set_len(32 << 20).unwrap();
    let e = open(&short).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn unknown_and_unsupported_incompat_bits() {
    if !have_xfsprogs("unknown_and_unsupported_incompat_bits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("f.img");
    mkfs(&img, 64, &[]);
    let base = xfs_db(&img, false, &["sb 0", "print features_incompat"]);
    let v = u32::from_str_radix(
        base.stdout
            .trim()
            .trim_start_matches("features_incompat = 0x"),
        16,
    )
    .unwrap();
    let agcount: u32 = xfs_db(&img, false, &["sb 0", "print agcount"])
        .stdout
        .trim()
        .trim_start_matches("agcount = ")
        .parse()
        .unwrap();
    // One xfs_db write command applied to every superblock copy.
    let write_every_copy = |cmd: &str| {
        let mut cmds = Vec::new();
        for ag in 0..agcount {
            cmds.push(format!("sb {ag}"));
            cmds.push(cmd.to_owned());
        }
        let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let w = xfs_db(&img, true, &cmds);
        assert!(w.ok, "{}", w.stderr);
    };
    for (bit, want) in [
        (1u32 << 20, "0x100000 (bit 20)"),
        (1 << 7, "PARENT"),
        (1 << 8, "METADIR"),
        (1 << 6, "EXCHRANGE"),
    ] {
        // In the primary alone, an unknown bit is a damaged primary (the
        // AG 1 copy does not have it), as xfs_repair -n also says.
        let cmd = format!("write -d features_incompat {:#x}", v | bit);
        let w = xfs_db(&img, true, &["sb 0", &cmd]);
        assert!(w.ok, "{}", w.stderr);
        let e = open(&img).unwrap_err();
        match &e {
            xfs::Error::Corrupt { problems, .. } => {
                assert!(
                    problems.iter().any(|p| p.field == "features_incompat"),
                    "{e}"
                );
            }
            _ => panic!("a primary-only unknown bit must read as damage: {e}"),
        }
        // In every copy, it is a filesystem scrubd does not support.
        write_every_copy(&cmd);
        let e = open(&img).unwrap_err();
        assert!(matches!(e, xfs::Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        // Back to the original bits everywhere.
        write_every_copy(&format!("write -d features_incompat {v:#x}"));
    }
    // NEEDSREPAIR opens with a warning.
    let cmd = format!("write -d features_incompat {:#x}", v | (1 << 4));
    assert!(xfs_db(&img, true, &["sb 0", &cmd]).ok);
    let fs = open(&img).unwrap();
    assert!(fs.warnings().iter().any(|w| w.contains("NEEDSREPAIR")));
}
