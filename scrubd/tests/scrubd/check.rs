//! `scrubd check` reports as insta snapshots: the text and the JSON Lines
//! output of every clean fixture, and of one corrupt image per structure
//! made from the corruption corpus (`testdata/corruptions/*.jsonl`, a case
//! `xfs_repair -n` flags).
//!
//! Volatile values are redacted: elapsed times, the tool version and
//! temporary paths. Runs use a fixed `--memory` and `--threads` so that
//! the `begin` record does not depend on the machine.
//!
//! While the XFS scrubbers are still being written, most corrupt images
//! show no finding; their snapshots are re-accepted as scrubbers land.

use crate::common::{Run, corrupt_image, corruption, fixture, json_lines, rel_fixture, scrubd_in};
use std::path::Path;

/// Flags that make the `begin` record machine-independent.
const FIXED: [&str; 4] = ["--memory", "64M", "--threads", "2"];

/// Snapshot settings: filters for everything that changes between runs.
fn settings(tmp: Option<&Path>) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(r"checked in \d+ ms", "checked in [elapsed]");
    s.add_filter(r"\(in \d+ ms\)", "(in [elapsed])");
    s.add_filter(r#""elapsed_ms":\d+"#, r#""elapsed_ms":"[elapsed]""#);
    s.add_filter(r#""tool_version":"[^"]*""#, r#""tool_version":"[version]""#);
    if let Some(t) = tmp {
        s.add_filter(&regex_escape(&t.display().to_string()), "[TMP]");
    }
    s
}

/// Escapes a literal for insta's regex filters.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text snapshot: exit code, stdout, and stderr if any.
fn text_snapshot(r: &Run) -> String {
    let mut s = format!("exit code: {}\n---\n{}", r.code, r.stdout);
    if !r.stderr.is_empty() {
        s.push_str("--- stderr\n");
        s.push_str(&r.stderr);
    }
    s
}

/// Runs text and JSON checks of `image` in `dir` and snapshots both as
/// `<name>.text` and `<name>.json`. Returns the exit code.
fn snapshot_check(name: &str, dir: Option<&Path>, image: &str) -> i32 {
    let mut args = vec!["check"];
    args.extend(FIXED);
    args.push(image);
    let text = scrubd_in(dir, &args);
    args.insert(1, "--json");
    let json = scrubd_in(dir, &args);
    assert!(json.stderr.is_empty(), "{name}: {}", json.stderr);
    json_lines(&json);
    assert_eq!(text.code, json.code, "{name}: text and JSON runs disagree");
    settings(dir).bind(|| {
        insta::assert_snapshot!(format!("{name}.text"), text_snapshot(&text));
        insta::assert_snapshot!(format!("{name}.json"), json.stdout);
    });
    text.code
}

macro_rules! clean {
    ($($test:ident => $fixture:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            if !fixture($fixture).exists() {
                eprintln!("SKIP: no fixture {}", $fixture);
                return;
            }
            let code = snapshot_check(
                concat!("clean-", $fixture),
                None,
                &rel_fixture($fixture),
            );
            assert_eq!(code, 0, "a clean fixture must exit 0");
        }
    )*};
}

clean! {
    clean_empty => "empty",
    clean_default => "default",
    clean_rmapbt => "rmapbt",
    clean_nofinobt => "nofinobt",
    clean_1k => "1k",
    clean_8ag => "8ag",
    clean_large => "large",
    clean_asciici => "asciici",
    clean_dirtylog => "dirtylog",
}

macro_rules! corrupt {
    ($($test:ident => $case:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let case = corruption($case);
            assert!(case.repair_flags, "{}: pick a case xfs_repair -n flags", $case);
            if !fixture(&case.base).exists() {
                eprintln!("SKIP: no fixture {}", case.base);
                return;
            }
            let dir = tempfile::tempdir().unwrap();
            let image = corrupt_image($case, dir.path());
            let code = snapshot_check(
                concat!("corrupt-", stringify!($test)),
                Some(dir.path()),
                &image,
            );
            // Damage or not (the scrubbers decide), never an operational
            // error or a crash.
            assert!(code == 0 || code == 4, "{}: exit code {code}", $case);
        }
    )*};
}

// One case per structure, each flagged by xfs_repair -n: a record or
// header field a scrubber must check.
corrupt! {
    sb => "sb-agcount-random",
    sb_magic => "sb-magicnum-zeroes",
    sb_secondary => "sb-secondary-agcount-firstbit",
    agf => "agf-freeblks-random",
    agfl => "agfl-bno12-random",
    agi => "agi-count-random",
    bnobt => "bnobt-recs84-startblock-random",
    cntbt => "cntbt-recs84-blockcount-random",
    inobt => "inobt-recs14-freecount-random",
    finobt => "finobt-recs14-count-random",
    rmapbt => "rmapbt-recs76-owner-random",
    refcountbt => "refcountbt-recs9-refcount-random",
    inode => "inode-file-core-nblocks-random",
    bmbt => "bmbt-extents-u3-bmx3-blockcount-random",
    dir_block => "dir-block-bu17-inumber-random",
    dir_node => "dir-node-nbtree2-hashval-random",
    symlink => "symlink-rmt-owner-random",
    nlinks => "nlinks-file-core-nlinkv2-random",
    xattr_sf => "xattr-sf-a-sfattr-list2-valuelen-random",
    xattr_leaf => "xattr-leaf-entries15-hashval-random",
    xattr_node => "xattr-node-btree6-before-random",
}

/// Owner-side damage that neither tree shows: the only extent of
/// `/files/small/small-21` (inode 161 of the `rmapbt` fixture) re-pointed
/// at the first blocks of `/reflink/source`, which six clones share. The
/// rmapbt and refcountbt still agree with each other; the shadow check
/// sees the blocks' owners disagree with both, and the reference counts
/// derived from the owners disagree with the refcountbt, naming the files.
/// (`xfs_repair -n` on the same damage, made with `xfs_db -x -c 'inode 161'
/// -c 'write u3.bmx[0].startblock 11628'`, reports the same three
/// reference count records and the same missing reverse mapping.)
#[test]
fn owner_side_sharing() {
    use std::os::unix::fs::FileExt;
    use xfs::format::dinode::Fork;
    use xfs::types::Ino;
    if !fixture("rmapbt").exists() {
        eprintln!("SKIP: no fixture rmapbt");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner-side-sharing.img");
    crate::common::decompress("rmapbt", &path);
    let (at, mut inode) = {
        let dev = xfs::device::open_image(&path, xfs::device::Access::ReadOnly).unwrap();
        let fs = xfs::Filesystem::open(dev).unwrap();
        let first_block = |ino: u64| {
            let inode = fs.read_inode(Ino(ino)).unwrap().value;
            fs.mappings(&inode, Fork::Data).unwrap()[0].start.0
        };
        let source = first_block(47978);
        let geo = fs.geometry();
        let at = geo.inode_location(Ino(161)).unwrap().byte_offset;
        let mut inode = vec![0u8; usize::from(geo.inode_size as u16)];
        fs.device().read_at(&mut inode, at).unwrap();
        // The first extent record of the data fork, right after the core.
        let rec = &mut inode[176..192];
        let l0 = u64::from_be_bytes(rec[0..8].try_into().unwrap());
        let l1 = u64::from_be_bytes(rec[8..16].try_into().unwrap());
        rec[0..8].copy_from_slice(&((l0 & !0x1ff) | (source >> 43)).to_be_bytes());
        rec[8..16].copy_from_slice(&((l1 & 0x1f_ffff) | (source << 21)).to_be_bytes());
        (at, inode)
    };
    xfs::format::crc::update(&mut inode, 100).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&inode, at).unwrap();
    drop(f);
    let code = snapshot_check(
        "corrupt-owner_side_sharing",
        Some(dir.path()),
        "owner-side-sharing.img",
    );
    assert_eq!(code, 4);
}
