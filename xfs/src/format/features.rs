//! Superblock feature bits: `versionnum`, `features2` and the v5
//! compat / ro_compat / incompat / log_incompat words.
//!
//! Every bit `mkfs.xfs` can set is named here, plus the newer incompat bits
//! (EXCHRANGE, PARENT, METADIR, ZONED) so that an image made by a newer mkfs
//! gets a precise "unsupported" message instead of "unknown bit".

use std::fmt;

/// `sb_versionnum` low nibble: the superblock version.
pub const VERSION_NUMBITS: u16 = 0x000f;
/// Version 4 superblock (no CRCs).
pub const VERSION_4: u16 = 4;
/// Version 5 superblock (CRC-protected metadata).
pub const VERSION_5: u16 = 5;

/// `sb_versionnum` feature bits (the high 12 bits).
pub mod version {
    /// Extended attributes.
    pub const ATTR: u16 = 0x0010;
    /// 32-bit link counts.
    pub const NLINK: u16 = 0x0020;
    /// Quotas.
    pub const QUOTA: u16 = 0x0040;
    /// Inode chunk alignment (`sb_inoalignmt`).
    pub const ALIGN: u16 = 0x0080;
    /// Data stripe alignment (`sb_unit`/`sb_width`).
    pub const DALIGN: u16 = 0x0100;
    /// Shared filesystem (never supported on Linux).
    pub const SHARED: u16 = 0x0200;
    /// Version 2 log.
    pub const LOGV2: u16 = 0x0400;
    /// Sector size other than 512 (`sb_logsectsize`).
    pub const SECTOR: u16 = 0x0800;
    /// Unwritten extents.
    pub const EXTFLG: u16 = 0x1000;
    /// Version 2 directories.
    pub const DIRV2: u16 = 0x2000;
    /// ASCII-only case-insensitive names ("borg" bit).
    pub const BORG: u16 = 0x4000;
    /// `sb_features2` is valid.
    pub const MOREBITS: u16 = 0x8000;
    /// Every bit a kernel accepts (all flag bits but SHARED, plus the number).
    pub const OKBITS: u16 = (super::VERSION_NUMBITS | 0xfff0) & !SHARED;
    /// Flags every v5 superblock must have.
    pub const V5_REQUIRED: u16 = NLINK | ALIGN | LOGV2 | EXTFLG | DIRV2 | MOREBITS;
}

/// `sb_features2` bits.
pub mod features2 {
    /// Lazy superblock counters.
    pub const LAZYSBCOUNT: u32 = 0x0000_0002;
    /// Inline attribute rework (attr2).
    pub const ATTR2: u32 = 0x0000_0008;
    /// Parent pointers (old v4 bit, never used).
    pub const PARENT: u32 = 0x0000_0010;
    /// 32-bit project ids.
    pub const PROJID32: u32 = 0x0000_0080;
    /// Metadata CRCs (mirrors the v5 version number).
    pub const CRC: u32 = 0x0000_0100;
    /// File type in directory entries (v4 spelling).
    pub const FTYPE: u32 = 0x0000_0200;
    /// Every bit a kernel accepts in a v4 superblock.
    pub const OKBITS: u32 = LAZYSBCOUNT | ATTR2 | PROJID32 | FTYPE;
    /// Bits every v5 superblock must have.
    pub const V5_REQUIRED: u32 = LAZYSBCOUNT | ATTR2 | PROJID32 | CRC;
}

/// v5 read-only-compatible feature bits.
pub mod ro_compat {
    /// Free inode btree.
    pub const FINOBT: u32 = 1 << 0;
    /// Reverse-mapping btree.
    pub const RMAPBT: u32 = 1 << 1;
    /// Reflink (refcount btree).
    pub const REFLINK: u32 = 1 << 2;
    /// Inode btree block counters in the AGI.
    pub const INOBTCNT: u32 = 1 << 3;
    /// Every bit this crate knows.
    pub const ALL: u32 = FINOBT | RMAPBT | REFLINK | INOBTCNT;
}

/// v5 incompatible feature bits.
pub mod incompat {
    /// File type in directory entries.
    pub const FTYPE: u32 = 1 << 0;
    /// Sparse inode chunks.
    pub const SPINODES: u32 = 1 << 1;
    /// Metadata UUID differs from the user-visible UUID.
    pub const META_UUID: u32 = 1 << 2;
    /// Timestamps up to year 2486.
    pub const BIGTIME: u32 = 1 << 3;
    /// The filesystem must be repaired before mounting.
    pub const NEEDSREPAIR: u32 = 1 << 4;
    /// 64-bit extent counters.
    pub const NREXT64: u32 = 1 << 5;
    /// File range exchange log items (newer kernels).
    pub const EXCHRANGE: u32 = 1 << 6;
    /// Directory parent pointers (newer kernels).
    pub const PARENT: u32 = 1 << 7;
    /// Metadata directory tree (newer kernels).
    pub const METADIR: u32 = 1 << 8;
    /// Zoned realtime device (newer kernels).
    pub const ZONED: u32 = 1 << 9;
    /// Bits this crate reads correctly.
    pub const SUPPORTED: u32 = FTYPE | SPINODES | META_UUID | BIGTIME | NEEDSREPAIR | NREXT64;
    /// Bits this crate recognises by name (supported or not).
    pub const KNOWN: u32 = SUPPORTED | EXCHRANGE | PARENT | METADIR | ZONED;
}

/// v5 log-incompatible feature bits.
pub mod log_incompat {
    /// Logged extended attribute updates.
    pub const XATTRS: u32 = 1 << 0;
    /// Every bit this crate knows.
    pub const ALL: u32 = XATTRS;
}

const VERSION_NAMES: &[(u16, &str)] = &[
    (version::ATTR, "ATTR"),
    (version::NLINK, "NLINK"),
    (version::QUOTA, "QUOTA"),
    (version::ALIGN, "ALIGN"),
    (version::DALIGN, "DALIGN"),
    (version::SHARED, "SHARED"),
    (version::LOGV2, "LOGV2"),
    (version::SECTOR, "SECTOR"),
    (version::EXTFLG, "EXTFLG"),
    (version::DIRV2, "DIRV2"),
    (version::BORG, "ASCII_CI"),
    (version::MOREBITS, "MOREBITS"),
];
const FEATURES2_NAMES: &[(u32, &str)] = &[
    (features2::LAZYSBCOUNT, "LAZYSBCOUNT"),
    (features2::ATTR2, "ATTR2"),
    (features2::PARENT, "PARENT"),
    (features2::PROJID32, "PROJID32"),
    (features2::CRC, "CRC"),
    (features2::FTYPE, "FTYPE"),
];
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (ro_compat::FINOBT, "FINOBT"),
    (ro_compat::RMAPBT, "RMAPBT"),
    (ro_compat::REFLINK, "REFLINK"),
    (ro_compat::INOBTCNT, "INOBTCNT"),
];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (incompat::FTYPE, "FTYPE"),
    (incompat::SPINODES, "SPINODES"),
    (incompat::META_UUID, "META_UUID"),
    (incompat::BIGTIME, "BIGTIME"),
    (incompat::NEEDSREPAIR, "NEEDSREPAIR"),
    (incompat::NREXT64, "NREXT64"),
    (incompat::EXCHRANGE, "EXCHRANGE"),
    (incompat::PARENT, "PARENT"),
    (incompat::METADIR, "METADIR"),
    (incompat::ZONED, "ZONED"),
];
const LOG_INCOMPAT_NAMES: &[(u32, &str)] = &[(log_incompat::XATTRS, "XATTRS")];

/// Lists the names of the set bits of `word`, and the unnamed ones as
/// `bit N (0x...)`.
fn names32(word: u32, table: &[(u32, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for bit in 0..32u32 {
        let mask = 1u32 << bit;
        if word & mask == 0 {
            continue;
        }
        match table.iter().find(|(m, _)| *m == mask) {
            Some((_, name)) => out.push((*name).to_owned()),
            None => out.push(format!("bit {bit} ({mask:#x})")),
        }
    }
    out
}

/// Describes unknown bits: `0x400 (bit 10)` for each set bit of `mask`.
pub fn describe_bits(mask: u32) -> String {
    let mut parts = Vec::new();
    for bit in 0..32u32 {
        let m = 1u32 << bit;
        if mask & m != 0 {
            parts.push(format!("{m:#x} (bit {bit})"));
        }
    }
    parts.join(", ")
}

/// The feature words of a superblock, with named accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `sb_versionnum`.
    pub versionnum: u16,
    /// `sb_features2`.
    pub features2: u32,
    /// `sb_features_compat`.
    pub compat: u32,
    /// `sb_features_ro_compat`.
    pub ro_compat: u32,
    /// `sb_features_incompat`.
    pub incompat: u32,
    /// `sb_features_log_incompat`.
    pub log_incompat: u32,
}

impl Features {
    /// The superblock version number (4 or 5 for filesystems Linux knows).
    pub fn version(&self) -> u16 {
        self.versionnum & VERSION_NUMBITS
    }
    /// A v5 (CRC) superblock.
    pub fn is_v5(&self) -> bool {
        self.version() == VERSION_5
    }
    /// Directory entries carry a file type.
    pub fn has_ftype(&self) -> bool {
        if self.is_v5() {
            self.incompat & incompat::FTYPE != 0
        } else {
            self.versionnum & version::MOREBITS != 0 && self.features2 & features2::FTYPE != 0
        }
    }
    /// Free inode btree.
    pub fn has_finobt(&self) -> bool {
        self.is_v5() && self.ro_compat & ro_compat::FINOBT != 0
    }
    /// Reverse-mapping btree.
    pub fn has_rmapbt(&self) -> bool {
        self.is_v5() && self.ro_compat & ro_compat::RMAPBT != 0
    }
    /// Reflink / refcount btree.
    pub fn has_reflink(&self) -> bool {
        self.is_v5() && self.ro_compat & ro_compat::REFLINK != 0
    }
    /// Inode btree block counters in the AGI.
    pub fn has_inobtcounts(&self) -> bool {
        self.is_v5() && self.ro_compat & ro_compat::INOBTCNT != 0
    }
    /// Sparse inode chunks.
    pub fn has_sparse_inodes(&self) -> bool {
        self.is_v5() && self.incompat & incompat::SPINODES != 0
    }
    /// Metadata UUID in `sb_meta_uuid`.
    pub fn has_meta_uuid(&self) -> bool {
        self.is_v5() && self.incompat & incompat::META_UUID != 0
    }
    /// Big timestamps.
    pub fn has_bigtime(&self) -> bool {
        self.is_v5() && self.incompat & incompat::BIGTIME != 0
    }
    /// The NEEDSREPAIR flag is set.
    pub fn needs_repair(&self) -> bool {
        self.is_v5() && self.incompat & incompat::NEEDSREPAIR != 0
    }
    /// 64-bit extent counters.
    pub fn has_nrext64(&self) -> bool {
        self.is_v5() && self.incompat & incompat::NREXT64 != 0
    }
    /// Extended attributes (always on v5).
    pub fn has_attr(&self) -> bool {
        self.is_v5() || self.versionnum & version::ATTR != 0
    }
    /// attr2 (always on v5).
    pub fn has_attr2(&self) -> bool {
        self.is_v5()
            || (self.versionnum & version::MOREBITS != 0 && self.features2 & features2::ATTR2 != 0)
    }
    /// Lazy superblock counters (always on v5).
    pub fn has_lazysbcount(&self) -> bool {
        self.is_v5()
            || (self.versionnum & version::MOREBITS != 0
                && self.features2 & features2::LAZYSBCOUNT != 0)
    }
    /// 32-bit project ids (always on v5).
    pub fn has_projid32(&self) -> bool {
        self.is_v5()
            || (self.versionnum & version::MOREBITS != 0
                && self.features2 & features2::PROJID32 != 0)
    }
    /// Quotas.
    pub fn has_quota(&self) -> bool {
        self.versionnum & version::QUOTA != 0
    }
    /// Inode chunk alignment.
    pub fn has_align(&self) -> bool {
        self.is_v5() || self.versionnum & version::ALIGN != 0
    }
    /// Data stripe alignment.
    pub fn has_dalign(&self) -> bool {
        self.versionnum & version::DALIGN != 0
    }
    /// Version 2 log.
    pub fn has_logv2(&self) -> bool {
        self.is_v5() || self.versionnum & version::LOGV2 != 0
    }
    /// Log sector size recorded in `sb_logsectsize`.
    pub fn has_sector(&self) -> bool {
        self.versionnum & version::SECTOR != 0
    }
    /// ASCII case-insensitive names.
    pub fn has_asciici(&self) -> bool {
        self.versionnum & version::BORG != 0
    }

    /// Names of every set bit, grouped by word, for reports.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for bit in 4..16u16 {
            let m = 1u16 << bit;
            if self.versionnum & m != 0 {
                match VERSION_NAMES.iter().find(|(v, _)| *v == m) {
                    Some((_, n)) => out.push(format!("versionnum:{n}")),
                    None => out.push(format!("versionnum:bit {bit}")),
                }
            }
        }
        for n in names32(self.features2, FEATURES2_NAMES) {
            out.push(format!("features2:{n}"));
        }
        for n in names32(self.compat, &[]) {
            out.push(format!("compat:{n}"));
        }
        for n in names32(self.ro_compat, RO_COMPAT_NAMES) {
            out.push(format!("ro_compat:{n}"));
        }
        for n in names32(self.incompat, INCOMPAT_NAMES) {
            out.push(format!("incompat:{n}"));
        }
        for n in names32(self.log_incompat, LOG_INCOMPAT_NAMES) {
            out.push(format!("log_incompat:{n}"));
        }
        out
    }

    /// Decides whether this crate can read a filesystem with these features.
    ///
    /// Returns the warnings to show (e.g. NEEDSREPAIR) when it can, and a
    /// sentence naming the offending feature or bits when it cannot: a v4
    /// superblock, an incompat bit this crate does not understand (named if
    /// known, else by position), an unknown log_incompat bit.
    /// Unknown ro_compat and compat bits only warn: reading is still safe,
    /// which is exactly what those classes promise.
    pub fn check_supported(&self) -> Result<Vec<String>, String> {
        match self.version() {
            VERSION_5 => {}
            VERSION_4 => {
                return Err("v4 (non-CRC) XFS filesystems are not supported".to_owned());
            }
            v => return Err(format!("superblock version {v} is not supported")),
        }
        let mut warnings = Vec::new();
        let unknown = self.incompat & !incompat::KNOWN;
        if unknown != 0 {
            return Err(format!(
                "unknown incompatible feature bits {}",
                describe_bits(unknown)
            ));
        }
        let unsupported = self.incompat & !incompat::SUPPORTED;
        if unsupported != 0 {
            let names = names32(unsupported, INCOMPAT_NAMES).join(", ");
            return Err(format!(
                "incompatible feature {names} ({unsupported:#x}) changes on-disk metadata this version does not understand"
            ));
        }
        let unknown_log = self.log_incompat & !log_incompat::ALL;
        if unknown_log != 0 {
            return Err(format!(
                "unknown log-incompatible feature bits {}",
                describe_bits(unknown_log)
            ));
        }
        if self.needs_repair() {
            warnings.push(
                "the NEEDSREPAIR feature is set: a previous repair did not finish".to_owned(),
            );
        }
        let unknown_ro = self.ro_compat & !ro_compat::ALL;
        if unknown_ro != 0 {
            warnings.push(format!(
                "unknown read-only-compatible feature bits {}; structures they add are not checked",
                describe_bits(unknown_ro)
            ));
        }
        if self.compat != 0 {
            warnings.push(format!(
                "unknown compatible feature bits {}",
                describe_bits(self.compat)
            ));
        }
        Ok(warnings)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    fn v5() -> Features {
        Features {
            versionnum: 0xb4a5,
            features2: 0x18a,
            compat: 0,
            ro_compat: 0xd,
            incompat: 0xb,
            log_incompat: 0,
        }
    }

    #[test]
    fn default_mkfs_features_are_supported() {
        let f = v5();
        assert!(f.is_v5());
        assert!(f.has_ftype() && f.has_finobt() && f.has_reflink() && f.has_inobtcounts());
        assert!(f.has_bigtime() && f.has_sparse_inodes());
        assert!(!f.has_rmapbt() && !f.has_nrext64());
        assert_eq!(f.check_supported(), Ok(vec![]));
        let names = f.names();
        assert!(names.contains(&"incompat:BIGTIME".to_owned()));
        assert!(names.contains(&"ro_compat:INOBTCNT".to_owned()));
    }

    #[test]
    fn v4_is_refused_clearly() {
        let f = Features {
            versionnum: 0xb4a4,
            ..v5()
        };
        assert_eq!(
            f.check_supported().unwrap_err(),
            "v4 (non-CRC) XFS filesystems are not supported"
        );
    }

    #[test]
    fn unknown_incompat_bit_is_named_by_position() {
        let f = Features {
            incompat: 0xb | (1 << 20),
            ..v5()
        };
        let e = f.check_supported().unwrap_err();
        assert!(e.contains("0x100000 (bit 20)"), "{e}");
    }

    #[test]
    fn newer_known_features_are_named() {
        for (bit, name) in [
            (incompat::PARENT, "PARENT"),
            (incompat::METADIR, "METADIR"),
            (incompat::EXCHRANGE, "EXCHRANGE"),
        ] {
            let f = Features {
                incompat: 0xb | bit,
                ..v5()
            };
            let e = f.check_supported().unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn needsrepair_warns() {
        let f = Features {
            incompat: 0xb | incompat::NEEDSREPAIR,
            ..v5()
        };
        let w = f.check_supported().unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("NEEDSREPAIR"));
    }
}
