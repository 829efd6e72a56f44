//! Damage tests, the way fstests' fuzz tests do it: for every field of the
//! superblock, AGF, AGI, AGFL and of two inodes, `xfs_db -x ... fuzz` it
//! (with the CRC recomputed, `-d`, so content checks must catch it; and
//! without, `-c`, so the CRC check must), then open and read the image.
//!
//! Assertions: nothing panics, and whenever xfs_db's own verifiers complain
//! about the damaged image, our reader reports at least one problem or
//! error too. Cases where we report a problem xfs_db does not are counted
//! and a sample is printed (the scrub checks are stricter than the kernel's
//! buffer verifiers by design).

use crate::common::{have_xfsprogs, mkfs, open, parse_fields, xfs_db};
use std::os::unix::fs::FileExt;
use std::path::Path;
use xfs::types::{AgNumber, Ino};

/// Fuzz verbs with the CRC recomputed.
const VERBS_D: &[&str] = &[
    "zeroes",
    "ones",
    "firstbit",
    "middlebit",
    "lastbit",
    "add",
    "sub",
    "random",
];
/// Fuzz verbs leaving the CRC stale.
const VERBS_C: &[&str] = &["ones", "random"];

/// Something to damage: an xfs_db selector and the bytes to restore after.
struct Target {
    select: String,
    offset: u64,
    len: usize,
    /// Limit to these fields (empty: every printed field).
    only: &'static [&'static str],
}

/// Field names xfs_db prints for a structure, with arrays sampled.
fn field_names(img: &Path, select: &str) -> Vec<String> {
    let out = xfs_db(img, false, &[select, "print"]);
    let mut names = Vec::new();
    for (k, _) in parse_fields(&out.stdout) {
        if let Some((base, range)) = k.split_once('[') {
            // "unlinked[0-63]" -> unlinked[0], [1], [63]
            let range = range.trim_end_matches(']');
            if let Some((a, b)) = range.split_once('-') {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                for i in [a, a + 1, b] {
                    names.push(format!("{base}[{i}]"));
                }
                continue;
            }
        }
        if k.starts_with("u3.") || k.starts_with("a.") {
            continue;
        }
        names.push(k);
    }
    names
}

/// Everything our reader reports about the image: problems and errors.
fn our_findings(img: &Path, inodes: &[Ino]) -> Vec<String> {
    let fs = match open(img) {
        Ok(fs) => fs,
        Err(e) => return vec![format!("open: {e}")],
    };
    let mut found = Vec::new();
    let geo = fs.geometry().clone();
    for agno in geo.ags() {
        match fs.read_sb(agno) {
            Ok(c) => found.extend(c.problems.iter().map(ToString::to_string)),
            Err(e) => found.push(format!("{agno} sb: {e}")),
        }
        let agf = match fs.read_agf(agno) {
            Ok(c) => {
                found.extend(c.problems.iter().map(ToString::to_string));
                Some(c.value)
            }
            Err(e) => {
                found.push(format!("{agno} agf: {e}"));
                None
            }
        };
        match fs.read_agfl(agno, agf.as_ref()) {
            Ok(c) => found.extend(c.problems.iter().map(ToString::to_string)),
            Err(e) => found.push(format!("{agno} agfl: {e}")),
        }
        match fs.read_agi(agno) {
            Ok(c) => found.extend(c.problems.iter().map(ToString::to_string)),
            Err(e) => found.push(format!("{agno} agi: {e}")),
        }
    }
    for &ino in inodes {
        match fs.read_inode(ino) {
            Ok(c) if c.is_ok() => {
                // Exercise the readers on whatever the inode now says.
                let inode = c.value;
                use xfs::format::dinode::FileType;
                let r = match inode.core.file_type() {
                    FileType::Directory => fs.read_dir(&inode).map(|_| ()),
                    FileType::Regular => fs.file_reader(&inode).and_then(|r| {
                        let mut buf = vec![0u8; 65536];
                        let mut pos = 0u64;
                        while pos < r.size().min(1 << 20) {
                            let n = r.read_at(&mut buf, pos)?;
                            if n == 0 {
                                break;
                            }
                            pos += n as u64;
                        }
                        Ok(())
                    }),
                    FileType::Symlink => fs.read_symlink(&inode).map(|_| ()),
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    found.push(format!("{ino}: {e}"));
                }
            }
            Ok(c) => found.extend(c.problems.iter().map(ToString::to_string)),
            Err(e) => found.push(format!("{ino}: {e}")),
        }
    }
    found
}

/// Did xfs_db's verifiers complain? `baseline` is its stderr on the
/// undamaged image.
fn xfs_db_complains(img: &Path, select: &str, baseline: &str) -> bool {
    let out = xfs_db(img, false, &[select, "print"]);
    let noise: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !baseline.contains(*l))
        .collect();
    !out.ok || !noise.is_empty()
}

#[test]
fn fuzzed_headers_and_inodes() {
    if !have_xfsprogs("fuzzed_headers_and_inodes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A small populated image: a file with one extent, a symlink.
    let src = dir.path().join("f");
    std::fs::write(&src, vec![0x5au8; 10000]).unwrap();
    let proto = dir.path().join("proto");
    std::fs::write(
        &proto,
        format!(
            "/dev/null\n0 0\nd--755 0 0\n file ---644 0 0 {}\n link l--777 0 0 file\n$\n",
            src.display()
        ),
    )
    .unwrap();
    let img = dir.path().join("d.img");
    mkfs(&img, 64, &["-p", proto.to_str().unwrap()]);

    let (root, file, sect, ag1, isize, file_off, root_off) = {
        let fs = open(&img).unwrap();
        let g = fs.geometry().clone();
        let file = fs.resolve("/file").unwrap();
        let ag1 = g
            .ag_header_daddr(AgNumber(1), 0)
            .unwrap()
            .to_bytes()
            .unwrap();
        (
            g.root_ino,
            file,
            u64::from(g.sector_size),
            ag1,
            usize::try_from(g.inode_size).unwrap(),
            g.inode_location(file).unwrap().byte_offset,
            g.inode_location(g.root_ino).unwrap().byte_offset,
        )
    };
    let hdr = usize::try_from(sect * 4).unwrap();
    let targets = vec![
        Target {
            select: "sb 0".into(),
            offset: 0,
            len: hdr,
            only: &[],
        },
        Target {
            select: "sb 1".into(),
            offset: ag1,
            len: hdr,
            only: &[
                "magicnum",
                "blocksize",
                "dblocks",
                "agblocks",
                "uuid",
                "crc",
            ],
        },
        Target {
            select: "agf 1".into(),
            offset: ag1,
            len: hdr,
            only: &[],
        },
        Target {
            select: "agi 1".into(),
            offset: ag1,
            len: hdr,
            only: &[],
        },
        Target {
            select: "agfl 1".into(),
            offset: ag1,
            len: hdr,
            only: &[],
        },
        Target {
            select: format!("inode {}", root.0),
            offset: root_off,
            len: isize,
            only: &[],
        },
        Target {
            select: format!("inode {}", file.0),
            offset: file_off,
            len: isize,
            only: &[],
        },
    ];
    let inodes = [root, file];
    let clean = our_findings(&img, &inodes);
    assert!(clean.is_empty(), "undamaged image: {clean:?}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();

    let (mut cases, mut skipped, mut db_flagged, mut extra) = (0, 0, 0, Vec::new());
    let mut missed = Vec::new();
    for t in &targets {
        let baseline = xfs_db(&img, false, &[&t.select, "print"]).stderr;
        let mut saved = vec![0u8; t.len];
        f.read_exact_at(&mut saved, t.offset).unwrap();
        let mut fields = field_names(&img, &t.select);
        if !t.only.is_empty() {
            fields.retain(|n| t.only.contains(&n.as_str()));
        }
        if t.select.starts_with("inode") && t.select.ends_with(&file.0.to_string()) {
            fields.extend(
                [
                    "u3.bmx[0].startoff",
                    "u3.bmx[0].startblock",
                    "u3.bmx[0].blockcount",
                ]
                .map(String::from),
            );
        }
        assert!(!fields.is_empty(), "no fields for {}", t.select);
        for field in &fields {
            let modes = VERBS_D
                .iter()
                .map(|v| ("-d", *v))
                .chain(VERBS_C.iter().map(|v| ("-c", *v)));
            for (mode, verb) in modes {
                let case = format!("{} fuzz {mode} {field} {verb}", t.select);
                let cmd = format!("fuzz {mode} {field} {verb}");
                let w = xfs_db(&img, true, &[&t.select, &cmd]);
                let mut now = vec![0u8; t.len];
                f.read_exact_at(&mut now, t.offset).unwrap();
                if !w.ok || now == saved {
                    // xfs_db could not fuzz this field, or the verb left
                    // it unchanged (e.g. zeroes on a zero field).
                    skipped += 1;
                    f.write_all_at(&saved, t.offset).unwrap();
                    continue;
                }
                cases += 1;
                let complained = xfs_db_complains(&img, &t.select, &baseline);
                let ours = std::panic::catch_unwind(|| our_findings(&img, &inodes))
                    .unwrap_or_else(|_| panic!("PANIC on {case}"));
                if complained {
                    db_flagged += 1;
                    if ours.is_empty() {
                        missed.push(case.clone());
                    }
                } else if !ours.is_empty() && extra.len() < 10_000 {
                    extra.push(format!("{case}: {}", ours[0]));
                }
                f.write_all_at(&saved, t.offset).unwrap();
            }
        }
    }
    eprintln!(
        "damage: {cases} cases ({skipped} skipped: unchanged or not fuzzable), xfs_db flagged {db_flagged}, we missed {}, we alone flagged {}",
        missed.len(),
        extra.len()
    );
    for e in extra.iter().take(15) {
        eprintln!("  stricter than xfs_db: {e}");
    }
    assert!(cases > 500, "only {cases} damage cases ran");
    assert!(
        missed.is_empty(),
        "xfs_db flagged but we did not: {missed:#?}"
    );
}
