//! When the primary superblock is unusable: findings instead of an error.
//!
//! `Filesystem::open` refuses an image whose primary superblock fails
//! verification. For a checker that refusal is itself the result: the
//! superblock is damaged. Each problem becomes a `corrupt` finding of
//! structure `sb`, and one `incomplete` finding says that nothing else was
//! checked (`xfs_repair -n` stops at the same point: it cannot go on in
//! no-modify mode without a primary superblock).
//!
//! A wrong magic number is ambiguous: a damaged XFS filesystem, or not XFS
//! at all. As `xfs_repair` does, we look for a valid secondary superblock;
//! only if one exists is the image a damaged XFS filesystem. Otherwise
//! opening it is an operational error ("not an XFS filesystem").
//!
//! The search tries where the damaged primary's own geometry puts AG 1
//! first, which finds it at once when only the magic number was hit. If
//! that fails it reads the device sector by sector like xfs_repair does,
//! which on a large device that is not XFS takes as long as reading it
//! whole; a second Ctrl-C ends the tool at once.

use scrub::{Finding, FindingKind};
use std::borrow::Cow;
use xfs::Error;
use xfs::device::Device;
use xfs::format::Problem;
use xfs::format::superblock::{self, MIN_AG_BYTES, SbKind, Superblock};
use xfs::types::AgNumber;

/// Bytes read at a time while scanning for a secondary superblock.
const SCAN_CHUNK: usize = 1 << 20;
/// Candidate superblocks start on sector boundaries of at least this size.
const SECTOR: usize = 512;
/// The largest sector size XFS allows.
const MAX_SECTOR: usize = 32768;

/// A valid secondary superblock found on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secondary {
    /// The AG whose superblock it is.
    pub agno: u32,
    /// Its byte offset.
    pub offset: u64,
}

/// The findings for an image that [`xfs::Filesystem::open`] refused with
/// `e`, or `None` if the refusal is not about the primary superblock's
/// content (I/O error, unsupported feature, or no XFS filesystem at all).
pub fn findings_for(e: &Error, dev: &dyn Device) -> Option<Vec<Finding>> {
    let mut out = match e {
        Error::Corrupt { problems, .. } => problems.iter().map(problem_finding).collect(),
        Error::Malformed { what, reason } => vec![
            Finding::new(
                FindingKind::Corrupt,
                "sb",
                "sb.malformed",
                format!("{what}: {reason}"),
            )
            .group(0)
            .block(0),
        ],
        Error::NotXfs { .. } => {
            let primary = read_primary(dev);
            let sec = find_secondary(dev, primary.as_ref().map(|(sb, _)| sb))?;
            let mut v: Vec<Finding> = match &primary {
                Some((sb, sector)) => sb
                    .verify(sector, SbKind::Primary)
                    .iter()
                    .map(problem_finding)
                    .collect(),
                None => Vec::new(),
            };
            let note = format!(
                "; a valid secondary superblock was found in AG {} (byte offset {}), so this is a damaged XFS filesystem",
                sec.agno, sec.offset
            );
            match v.iter_mut().find(|f| f.code == "sb.magicnum") {
                Some(f) => f.message.push_str(&note),
                None => v.insert(
                    0,
                    Finding::new(
                        FindingKind::Corrupt,
                        "sb",
                        "sb.magicnum",
                        format!("the primary superblock has a bad magic number{note}"),
                    )
                    .group(0)
                    .block(0),
                ),
            }
            v
        }
        _ => return None,
    };
    out.push(
        Finding::new(
            FindingKind::Incomplete,
            "sb",
            "sb.primary-unusable",
            "no other structure was checked: the primary superblock is unusable (xfs_repair -n stops here too)",
        )
        .group(0),
    );
    Some(out)
}

/// A `corrupt` finding for one problem of the primary superblock, coded
/// `sb.<field>` as the `sb` scrubber codes its findings.
fn problem_finding(p: &Problem) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        "sb",
        format!("sb.{}", p.field),
        format!("{} field {} is wrong", p.structure, p.field),
    )
    .group(0)
    .block(0)
    .field(Cow::Owned(p.field.clone()), &p.expected, &p.actual)
}

/// The primary superblock as decoded (untrusted) and the sector holding
/// it, or `None` if it cannot even be read.
fn read_primary(dev: &dyn Device) -> Option<(Superblock, Vec<u8>)> {
    read_sb_at(dev, 0)
}

/// Decodes the superblock at byte `offset` and reads the whole sector its
/// `sectsize` claims, when that is plausible (the CRC covers the sector).
fn read_sb_at(dev: &dyn Device, offset: u64) -> Option<(Superblock, Vec<u8>)> {
    let mut first = vec![0u8; SECTOR];
    dev.read_at(&mut first, offset).ok()?;
    let sb = Superblock::from_bytes(&first).ok()?;
    let sect = usize::from(sb.sectsize);
    if sect > SECTOR && sect <= MAX_SECTOR && sect.is_power_of_two() {
        let mut s = vec![0u8; sect];
        if dev.read_at(&mut s, offset).is_ok() {
            return Some((sb, s));
        }
    }
    Some((sb, first))
}

/// Whether a valid secondary superblock sits at byte `offset`: the XFS
/// magic number, a verifier that finds nothing wrong (CRC included), and an
/// offset that is the start of an AG other than 0 by its own geometry.
fn secondary_at(dev: &dyn Device, offset: u64) -> Option<Secondary> {
    let (sb, sector) = read_sb_at(dev, offset)?;
    if sb.magicnum != superblock::MAGIC {
        return None;
    }
    let ag_bytes = u64::from(sb.agblocks).checked_mul(u64::from(sb.blocksize))?;
    if ag_bytes == 0 || !offset.is_multiple_of(ag_bytes) {
        return None;
    }
    let agno = u32::try_from(offset / ag_bytes).ok()?;
    if agno == 0 || agno >= sb.agcount {
        return None;
    }
    // Compared with itself: every rule of a secondary copy except agreement
    // with a primary we do not have.
    let problems = sb.verify(
        &sector,
        SbKind::Secondary {
            agno: AgNumber(agno),
            primary: &sb,
        },
    );
    problems.is_empty().then_some(Secondary { agno, offset })
}

/// Looks for a valid secondary superblock: first where the damaged
/// primary's geometry puts AG 1, then, as `xfs_repair` does, every sector
/// from the smallest possible AG size to the end of the device.
pub fn find_secondary(dev: &dyn Device, primary: Option<&Superblock>) -> Option<Secondary> {
    if let Some(sb) = primary
        && let Some(off) = u64::from(sb.agblocks).checked_mul(u64::from(sb.blocksize))
        && off >= MIN_AG_BYTES
        && let Some(s) = secondary_at(dev, off)
    {
        return Some(s);
    }
    let size = dev.size();
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut chunk_start = MIN_AG_BYTES;
    let magic = superblock::MAGIC.to_be_bytes();
    while chunk_start < size {
        let len = usize::try_from((size - chunk_start).min(SCAN_CHUNK as u64)).ok()?;
        let chunk = &mut buf[..len];
        dev.read_at(chunk, chunk_start).ok()?;
        for (i, sector) in chunk.chunks_exact(SECTOR).enumerate() {
            if sector[..4] == magic {
                let off = chunk_start + (i * SECTOR) as u64;
                if let Some(s) = secondary_at(dev, off) {
                    return Some(s);
                }
            }
        }
        chunk_start += len as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfs::device::MemDevice;

    #[test]
    fn no_secondary_in_garbage_or_tiny_devices() {
        assert_eq!(find_secondary(&MemDevice::new(vec![0; 4096]), None), None);
        assert_eq!(
            find_secondary(&MemDevice::new(vec![0xff; 17 << 20]), None),
            None
        );
        // The magic alone is not enough.
        let mut v = vec![0u8; 18 << 20];
        v[16 << 20..(16 << 20) + 4].copy_from_slice(b"XFSB");
        assert_eq!(find_secondary(&MemDevice::new(v), None), None);
    }

    #[test]
    fn garbage_is_not_a_damaged_filesystem() {
        let dev = MemDevice::new(vec![0u8; 4096]);
        let e = Error::NotXfs { magic: 0 };
        assert!(findings_for(&e, &dev).is_none());
        let e = Error::Unsupported("v4".into());
        assert!(findings_for(&e, &dev).is_none());
    }

    #[test]
    fn corrupt_primary_gives_one_finding_per_problem() {
        let dev = MemDevice::new(vec![0u8; 4096]);
        let e = Error::Corrupt {
            what: "primary superblock".into(),
            problems: vec![
                Problem {
                    structure: "superblock 0".into(),
                    field: "agcount".into(),
                    expected: "1..".into(),
                    actual: "0".into(),
                },
                Problem {
                    structure: "superblock 0".into(),
                    field: "crc".into(),
                    expected: "0x1".into(),
                    actual: "0x2".into(),
                },
            ],
        };
        let f = findings_for(&e, &dev).unwrap();
        let codes: Vec<&str> = f.iter().map(|f| &*f.code).collect();
        assert_eq!(codes, ["sb.agcount", "sb.crc", "sb.primary-unusable"]);
        assert_eq!(f[0].kind, FindingKind::Corrupt);
        assert_eq!(f[0].expected.as_deref(), Some("1.."));
        assert_eq!(f[0].actual.as_deref(), Some("0"));
        assert_eq!(f[2].kind, FindingKind::Incomplete);
    }
}
