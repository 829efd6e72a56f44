//! Structure-aware mutation of a real image, shared by the libFuzzer
//! targets in `fuzz/` (coverage-guided, nightly) and by a stable test that
//! runs the same harness on seeded pseudo-random inputs in CI.
//!
//! Random bytes thrown at a whole image mostly land in file data, and a
//! random change to metadata mostly fails its CRC, so the verifiers stop
//! it at the door. This harness instead aims at the places the oracle
//! corpus (`testdata/corruptions/*.jsonl`) already knows hold one kind of
//! structure, patches bytes inside that structure's block (sector, inode
//! or filesystem block), and, when the input asks, recomputes the block's
//! CRC so the damage reaches the parsers and scrubbers behind it. Each run
//! then opens the image, runs every scrubber, names the files findings
//! point at, and plans the repairs (nothing is written: the image is a
//! copy-on-write overlay). The only failure is a panic.
//!
//! Input layout: `[site: u16][flags: u8]` then operations
//! `[offset: u16][len: u8][bytes...]`, offsets taken modulo the unit.
//! Flag bit 0 asks for the CRC to be recomputed after patching.

use scrub::{RunOptions, ScrubContext};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, CowDevice, Device, open_image};
use xfs::format::crc;

/// The fixture a target aims at unless it names another (`bnobt@large`):
/// the corpus has cases of every structure on it.
const BASE: &str = "rmapbt";

/// A target's structure and fixture.
fn split_target(target: &str) -> (&str, &str) {
    target.split_once('@').unwrap_or((target, BASE))
}

/// What one run did, for the stable test's tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The image did not open (its superblock was refused).
    Refused,
    /// It opened and was checked; `damage` says whether damage was found.
    Checked {
        /// Whether the check reported damage.
        damage: bool,
    },
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// The decompressed fixture `name`, shared by every run of the process.
pub fn base(name: &str) -> Arc<dyn Device> {
    static IMAGES: OnceLock<Mutex<HashMap<String, Arc<dyn Device>>>> = OnceLock::new();
    let mut m = IMAGES.get_or_init(Default::default).lock().unwrap();
    m.entry(name.to_owned())
        .or_insert_with(|| {
            let zst = testdata().join(format!("images/{name}.img.zst"));
            Arc::from(open_image(&zst, Access::ReadOnly).expect("base fixture"))
        })
        .clone()
}

/// Where a structure lives: the start of each unit that holds one.
struct Sites {
    units: Vec<u64>,
    unit_len: usize,
}

/// The sites of `target`: the units of its structure's corpus cases on
/// its fixture.
fn sites(target: &str) -> Arc<Sites> {
    static SITES: OnceLock<Mutex<HashMap<String, Arc<Sites>>>> = OnceLock::new();
    let mut m = SITES.get_or_init(Default::default).lock().unwrap();
    m.entry(target.to_owned())
        .or_insert_with(|| {
            let (structure, fixture) = split_target(target);
            Arc::new(load_sites(structure, fixture))
        })
        .clone()
}

fn load_sites(structure: &str, fixture: &str) -> Sites {
    let fs = Filesystem::open(Box::new(base(fixture))).expect("base fixture opens");
    let geo = fs.geometry();
    let unit_len = match structure {
        "sb" | "sb-secondary" | "agf" | "agi" | "agfl" => usize::from(512u16),
        "inode" | "nlinks" => geo.inode_size as usize,
        _ => geo.block_size as usize,
    };
    let mut units: Vec<u64> = Vec::new();
    for set in ["ag", "inode", "dir"] {
        let path = testdata().join(format!("corruptions/{set}.jsonl"));
        let text = std::fs::read_to_string(&path).expect("corpus");
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line");
            if v["structure"] != structure || v["base"] != fixture {
                continue;
            }
            if let Some(off) = v["patch"][0]["offset"].as_u64() {
                units.push(off - off % unit_len as u64);
            }
        }
    }
    if structure == "inode" {
        // Every inode of the fixture's manifest as well: files, directories
        // and symlinks of every fork format, not only the corpus's few.
        let path = testdata().join(format!("manifests/{fixture}.jsonl"));
        let text = std::fs::read_to_string(&path).expect("manifest");
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l).expect("manifest line");
            if let Some(loc) = v["ino"]
                .as_u64()
                .and_then(|i| geo.inode_location(xfs::types::Ino(i)))
            {
                units.push(loc.byte_offset);
            }
        }
    }
    units.sort_unstable();
    units.dedup();
    assert!(
        !units.is_empty(),
        "no corpus sites for {structure} in {fixture}"
    );
    Sites { units, unit_len }
}

/// Where the CRC of the structure starting at `buf` is, judged by its
/// magic number (`None` when the magic is not one we know, e.g. because
/// the input just destroyed it).
pub fn crc_offset(buf: &[u8]) -> Option<usize> {
    let m32 = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    let m16 = u16::from_be_bytes(buf.get(8..10)?.try_into().ok()?);
    Some(match &m32.to_be_bytes() {
        b"XFSB" => 224,
        b"XAGF" => 216,
        b"XAGI" => 312,
        b"XAFL" => 8,
        // Short-form btree blocks: bnobt, cntbt, inobt, finobt, rmapbt,
        // refcountbt.
        b"AB3B" | b"AB3C" | b"IAB3" | b"FIB3" | b"RMB3" | b"R3FC" => 52,
        // Long-form: the bmbt.
        b"BMA3" => 64,
        // Directory data, block and free-index blocks.
        b"XDB3" | b"XDD3" | b"XDF3" => 4,
        // Remote attribute values and remote symlinks.
        b"XARM" | b"XSLM" => 12,
        _ if m32 >> 16 == 0x494e => 100,
        // da3 node, dir3 leaf1 / leafn, attr3 leaf.
        _ if matches!(m16, 0x3ebe | 0x3df1 | 0x3dff | 0x3bee) => 12,
        _ => return None,
    })
}

/// The damage `data` describes, aimed at `target` (`structure` or
/// `structure@fixture`): where the changed unit starts and its new
/// contents (`None` if the unit cannot be read).
pub fn mutation(target: &str, data: &[u8]) -> Option<(u64, Vec<u8>)> {
    let sites = sites(target);
    let (head, mut ops) = data.split_at(data.len().min(3));
    let pick = |i: usize| head.get(i).copied().unwrap_or(0);
    let site = usize::from(u16::from_le_bytes([pick(0), pick(1)])) % sites.units.len();
    let fix_crc = pick(2) & 1 == 1;
    let start = sites.units[site];
    let mut unit = vec![0u8; sites.unit_len];
    base(split_target(target).1)
        .read_at(&mut unit, start)
        .ok()?;
    while ops.len() >= 3 {
        let off = usize::from(u16::from_le_bytes([ops[0], ops[1]])) % unit.len();
        let len = usize::from(ops[2] % 8) + 1;
        ops = &ops[3..];
        let bytes = &ops[..len.min(ops.len())];
        ops = &ops[bytes.len()..];
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = unit.get_mut(off + i) {
                *slot = *b;
            }
        }
    }
    if fix_crc && let Some(at) = crc_offset(&unit) {
        crc::update(&mut unit, at);
    }
    Some((start, unit))
}

/// One run of the harness on `data`, aimed at `target`.
pub fn run(target: &str, data: &[u8]) -> Outcome {
    let Some((start, unit)) = mutation(target, data) else {
        return Outcome::Refused;
    };
    let dev = CowDevice::new(base(split_target(target).1));
    dev.write_at(&unit, start).expect("overlay write");
    check(dev)
}

/// The damage findings scrubd reports for `data` aimed at `target`, one
/// line each (for judging a disagreement with the oracle).
pub fn damage_lines(target: &str, data: &[u8]) -> Vec<String> {
    let Some((start, unit)) = mutation(target, data) else {
        return Vec::new();
    };
    let dev = CowDevice::new(base(split_target(target).1));
    dev.write_at(&unit, start).expect("overlay write");
    let fs = match Filesystem::open(Box::new(dev)) {
        Ok(fs) => fs,
        Err(e) => return vec![format!("refused: {e}")],
    };
    let ctx = ScrubContext::new(MemoryBudget::new(16 << 20));
    let opts = RunOptions {
        only: None,
        threads: Some(1),
    };
    let report = scrub::run(&fs, &xfs::scrub::registry(), &ctx, &opts).expect("the registry runs");
    report
        .findings()
        .filter(|(_, f)| f.kind.is_damage())
        .map(|(_, f)| format!("{}: {f}", f.code))
        .collect()
}

/// Opens, checks, names and plans, as `scrubd check` and a dry-run
/// `scrubd repair` would.
fn check(dev: CowDevice<Arc<dyn Device>>) -> Outcome {
    let Ok(fs) = Filesystem::open(Box::new(dev)) else {
        return Outcome::Refused;
    };
    let ctx = ScrubContext::new(MemoryBudget::new(16 << 20));
    let opts = RunOptions {
        only: None,
        threads: Some(1),
    };
    let mut report =
        scrub::run(&fs, &xfs::scrub::registry(), &ctx, &opts).expect("the registry runs");
    report.attach_paths(|wanted| fs.name_inodes(wanted));
    let damage = report.has_damage();
    let _plan = xfs::repair::plan(&fs, &report);
    Outcome::Checked { damage }
}

/// Fixture of `target`.
pub fn fixture_of(target: &str) -> &str {
    split_target(target).1
}

/// The targets in the other fixtures: 1 KiB blocks, and multi-level
/// btrees (`large`).
pub const OTHER_FIXTURES: &[&str] = &[
    "sb@1k",
    "agfl@1k",
    "bnobt@1k",
    "rmapbt@1k",
    "bnobt@large",
    "cntbt@large",
    "inobt@large",
    "finobt@large",
    "rmapbt@large",
    "refcountbt@large",
    "bmbt@large",
];

/// Every structure the harness can aim at (one fuzz target each).
pub const STRUCTURES: &[&str] = &[
    "sb",
    "sb-secondary",
    "agf",
    "agfl",
    "agi",
    "bnobt",
    "cntbt",
    "inobt",
    "finobt",
    "rmapbt",
    "refcountbt",
    "inode",
    "bmbt",
    "dir",
    "xattr",
    "symlink",
];

/// Tally of outcomes per structure, for the stable test's log.
pub type Tally = BTreeMap<&'static str, (u32, u32, u32)>;
