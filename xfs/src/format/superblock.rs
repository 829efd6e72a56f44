//! The superblock (`struct xfs_dsb`), primary (AG 0, sector 0) and the
//! secondary copies at the start of every other AG.
//!
//! Verification follows libxfs `xfs_validate_sb_common` (geometry sanity,
//! feature-mask sanity, log and realtime geometry, stripe geometry),
//! `xfs_validate_sb_read` (feature masks; unsupported features are refused
//! separately by [`Features::check_supported`]) and the summary-counter
//! checks of `xfs_validate_sb_write`; secondaries are also compared with the
//! primary field by field, as online scrub (`xchk_superblock`) does.

use super::features::{self, Features};
use super::problem::{Checked, Checker};
use super::{Problem, ShortBuffer, Uuid, crc, magic_str, view};
use crate::types::AgNumber;
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XFSB`.
pub const MAGIC: u32 = 0x5846_5342;
/// Offset of `sb_crc`.
pub const CRC_OFFSET: usize = 224;
/// Size of the on-disk structure this crate knows (up to `sb_meta_uuid`).
pub const SIZE: usize = 264;

/// `XFS_OQUOTA_ENFD`: v4-only "other" quota enforcement flag.
const OQUOTA_ENFD: u16 = 0x0010;
/// `XFS_OQUOTA_CHKD`: v4-only "other" quota checked flag.
const OQUOTA_CHKD: u16 = 0x0020;
/// `XFS_MIN_AG_BYTES`: 16 MiB.
pub const MIN_AG_BYTES: u64 = 1 << 24;
/// `XFS_MAX_AG_BYTES`: 1 TiB.
pub const MAX_AG_BYTES: u64 = 1 << 40;
/// `XFS_MIN_AG_BLOCKS`: the shortest last AG growfs allows.
pub const MIN_AG_BLOCKS: u64 = 64;
/// `XFS_MAX_LOG_BLOCKS`.
pub const MAX_LOG_BLOCKS: u64 = 1024 * 1024;
/// `XFS_MAX_LOG_BYTES`: just under 2 GiB.
pub const MAX_LOG_BYTES: u64 = 2 * 1024 * 1024 * 1024 - 10 * 1024 * 1024;
/// `XLOG_MAX_RECORD_BSIZE`: the largest log stripe unit.
pub const MAX_LOG_RECORD_BSIZE: u32 = 256 * 1024;
/// `XFS_MIN_RTEXTSIZE`.
pub const MIN_RTEXTSIZE: u64 = 4 * 1024;
/// `XFS_MAX_RTEXTSIZE`.
pub const MAX_RTEXTSIZE: u64 = 1024 * 1024 * 1024;
/// `XFS_MIN_CRC_BLOCKSIZE`.
pub const MIN_CRC_BLOCKSIZE: u32 = 1024;

/// Raw view of `struct xfs_dsb` (264 bytes in xfsprogs 6.1).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawSuperblock {
    pub magicnum: be::U32,
    pub blocksize: be::U32,
    pub dblocks: be::U64,
    pub rblocks: be::U64,
    pub rextents: be::U64,
    pub uuid: Uuid,
    pub logstart: be::U64,
    pub rootino: be::U64,
    pub rbmino: be::U64,
    pub rsumino: be::U64,
    pub rextsize: be::U32,
    pub agblocks: be::U32,
    pub agcount: be::U32,
    pub rbmblocks: be::U32,
    pub logblocks: be::U32,
    pub versionnum: be::U16,
    pub sectsize: be::U16,
    pub inodesize: be::U16,
    pub inopblock: be::U16,
    pub fname: [u8; 12],
    pub blocklog: u8,
    pub sectlog: u8,
    pub inodelog: u8,
    pub inopblog: u8,
    pub agblklog: u8,
    pub rextslog: u8,
    pub inprogress: u8,
    pub imax_pct: u8,
    pub icount: be::U64,
    pub ifree: be::U64,
    pub fdblocks: be::U64,
    pub frextents: be::U64,
    pub uquotino: be::U64,
    pub gquotino: be::U64,
    pub qflags: be::U16,
    pub flags: u8,
    pub shared_vn: u8,
    pub inoalignmt: be::U32,
    pub unit: be::U32,
    pub width: be::U32,
    pub dirblklog: u8,
    pub logsectlog: u8,
    pub logsectsize: be::U16,
    pub logsunit: be::U32,
    pub features2: be::U32,
    pub bad_features2: be::U32,
    pub features_compat: be::U32,
    pub features_ro_compat: be::U32,
    pub features_incompat: be::U32,
    pub features_log_incompat: be::U32,
    pub crc: le::U32,
    pub spino_align: be::U32,
    pub pquotino: be::U64,
    pub lsn: be::U64,
    pub meta_uuid: Uuid,
}

const _: () = assert!(size_of::<RawSuperblock>() == SIZE);
const _: () = assert!(core::mem::offset_of!(RawSuperblock, crc) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawSuperblock, agblklog) == 124);
const _: () = assert!(core::mem::offset_of!(RawSuperblock, features2) == 200);
const _: () = assert!(core::mem::offset_of!(RawSuperblock, meta_uuid) == 248);

/// A decoded superblock: every field of `xfs_dsb`, named as xfs_db names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // field names are xfs_db's; see xfs_format.h
pub struct Superblock {
    pub magicnum: u32,
    pub blocksize: u32,
    pub dblocks: u64,
    pub rblocks: u64,
    pub rextents: u64,
    pub uuid: Uuid,
    pub logstart: u64,
    pub rootino: u64,
    pub rbmino: u64,
    pub rsumino: u64,
    pub rextsize: u32,
    pub agblocks: u32,
    pub agcount: u32,
    pub rbmblocks: u32,
    pub logblocks: u32,
    pub versionnum: u16,
    pub sectsize: u16,
    pub inodesize: u16,
    pub inopblock: u16,
    pub fname: [u8; 12],
    pub blocklog: u8,
    pub sectlog: u8,
    pub inodelog: u8,
    pub inopblog: u8,
    pub agblklog: u8,
    pub rextslog: u8,
    pub inprogress: u8,
    pub imax_pct: u8,
    pub icount: u64,
    pub ifree: u64,
    pub fdblocks: u64,
    pub frextents: u64,
    pub uquotino: u64,
    pub gquotino: u64,
    pub qflags: u16,
    pub flags: u8,
    pub shared_vn: u8,
    pub inoalignmt: u32,
    pub unit: u32,
    pub width: u32,
    pub dirblklog: u8,
    pub logsectlog: u8,
    pub logsectsize: u16,
    pub logsunit: u32,
    pub features2: u32,
    pub bad_features2: u32,
    pub features_compat: u32,
    pub features_ro_compat: u32,
    pub features_incompat: u32,
    pub features_log_incompat: u32,
    pub crc: u32,
    pub spino_align: u32,
    pub pquotino: u64,
    pub lsn: u64,
    pub meta_uuid: Uuid,
}

/// Which copy of the superblock is being verified.
#[derive(Debug, Clone, Copy)]
pub enum SbKind<'a> {
    /// The primary superblock (AG 0): summary counters are checked.
    Primary,
    /// A secondary copy in AG `agno`, compared with the primary.
    Secondary {
        /// The AG holding this copy.
        agno: AgNumber,
        /// The primary superblock to compare with.
        primary: &'a Superblock,
    },
}

/// `xfs_highbit32`: index of the highest set bit, or `None` for zero.
fn highbit32(v: u32) -> Option<u32> {
    31u32.checked_sub(v.leading_zeros())
}

/// `1 << log` if it fits in a `u64`.
fn pow2(log: u8) -> Option<u64> {
    1u64.checked_shl(u32::from(log))
}

impl Superblock {
    /// Decodes the first [`SIZE`] bytes of `buf`. Never fails on content,
    /// only on a short buffer.
    pub fn from_bytes(buf: &[u8]) -> Result<Superblock, ShortBuffer> {
        let r: &RawSuperblock = view(buf, "superblock")?;
        Ok(Superblock {
            magicnum: r.magicnum.get(),
            blocksize: r.blocksize.get(),
            dblocks: r.dblocks.get(),
            rblocks: r.rblocks.get(),
            rextents: r.rextents.get(),
            uuid: r.uuid,
            logstart: r.logstart.get(),
            rootino: r.rootino.get(),
            rbmino: r.rbmino.get(),
            rsumino: r.rsumino.get(),
            rextsize: r.rextsize.get(),
            agblocks: r.agblocks.get(),
            agcount: r.agcount.get(),
            rbmblocks: r.rbmblocks.get(),
            logblocks: r.logblocks.get(),
            versionnum: r.versionnum.get(),
            sectsize: r.sectsize.get(),
            inodesize: r.inodesize.get(),
            inopblock: r.inopblock.get(),
            fname: r.fname,
            blocklog: r.blocklog,
            sectlog: r.sectlog,
            inodelog: r.inodelog,
            inopblog: r.inopblog,
            agblklog: r.agblklog,
            rextslog: r.rextslog,
            inprogress: r.inprogress,
            imax_pct: r.imax_pct,
            icount: r.icount.get(),
            ifree: r.ifree.get(),
            fdblocks: r.fdblocks.get(),
            frextents: r.frextents.get(),
            uquotino: r.uquotino.get(),
            gquotino: r.gquotino.get(),
            qflags: r.qflags.get(),
            flags: r.flags,
            shared_vn: r.shared_vn,
            inoalignmt: r.inoalignmt.get(),
            unit: r.unit.get(),
            width: r.width.get(),
            dirblklog: r.dirblklog,
            logsectlog: r.logsectlog,
            logsectsize: r.logsectsize.get(),
            logsunit: r.logsunit.get(),
            features2: r.features2.get(),
            bad_features2: r.bad_features2.get(),
            features_compat: r.features_compat.get(),
            features_ro_compat: r.features_ro_compat.get(),
            features_incompat: r.features_incompat.get(),
            features_log_incompat: r.features_log_incompat.get(),
            crc: r.crc.get(),
            spino_align: r.spino_align.get(),
            pquotino: r.pquotino.get(),
            lsn: r.lsn.get(),
            meta_uuid: r.meta_uuid,
        })
    }

    /// Decodes and verifies the superblock in `sector` (one whole sector,
    /// which the CRC covers).
    pub fn check(sector: &[u8], kind: SbKind<'_>) -> Result<Checked<Superblock>, ShortBuffer> {
        let sb = Superblock::from_bytes(sector)?;
        let problems = sb.verify(sector, kind);
        Ok(Checked {
            value: sb,
            problems,
        })
    }

    /// The feature words.
    pub fn features(&self) -> Features {
        Features {
            versionnum: self.versionnum,
            features2: self.features2,
            compat: self.features_compat,
            ro_compat: self.features_ro_compat,
            incompat: self.features_incompat,
            log_incompat: self.features_log_incompat,
        }
    }

    /// The UUID stamped into metadata blocks: `meta_uuid` when the
    /// META_UUID feature is set, else `uuid`.
    pub fn metadata_uuid(&self) -> Uuid {
        if self.features().has_meta_uuid() {
            self.meta_uuid
        } else {
            self.uuid
        }
    }

    /// Verifies this superblock as decoded from `sector` and returns every
    /// problem found.
    pub fn verify(&self, sector: &[u8], kind: SbKind<'_>) -> Vec<Problem> {
        let label = match kind {
            SbKind::Primary => "superblock 0".to_owned(),
            SbKind::Secondary { agno, .. } => format!("superblock {}", agno.0),
        };
        let mut c = Checker::new(label);
        let f = self.features();

        c.expect(
            self.magicnum == MAGIC,
            "magicnum",
            magic_str(MAGIC),
            magic_str(self.magicnum),
        );
        // A non-zero crc field means the block claims a CRC even if a bit
        // flip cleared the version: check it anyway (xfs_sb_read_verify).
        if f.is_v5() || self.crc != 0 {
            let computed = crc::compute(sector, CRC_OFFSET);
            c.expect(
                computed == Some(self.crc),
                "crc",
                format_args!("{:#x}", computed.unwrap_or(0)),
                format_args!("{:#x}", self.crc),
            );
        }
        self.verify_version(&mut c, f);
        self.verify_geometry(&mut c, f);
        self.verify_log(&mut c, f);
        self.verify_realtime(&mut c);
        self.verify_stripe(&mut c, f);
        // Old kernels wrote features2 at the wrong offset; a zero copy is
        // what newer mkfs/kernels may leave, and xfs_repair only corrects a
        // nonzero copy that differs.
        c.expect(
            self.bad_features2 == self.features2 || self.bad_features2 == 0,
            "bad_features2",
            format_args!("{:#x} (same as features2)", self.features2),
            format_args!("{:#x}", self.bad_features2),
        );
        match kind {
            SbKind::Primary => {
                c.expect(self.inprogress == 0, "inprogress", 0, self.inprogress);
                c.expect(
                    self.fdblocks <= self.dblocks,
                    "fdblocks",
                    format_args!("<= dblocks {}", self.dblocks),
                    self.fdblocks,
                );
                c.expect(
                    self.ifree <= self.icount,
                    "ifree",
                    format_args!("<= icount {}", self.icount),
                    self.ifree,
                );
            }
            SbKind::Secondary { primary, .. } => self.compare_with_primary(&mut c, primary),
        }
        c.finish()
    }

    /// `xfs_sb_good_version` and the v5 feature-mask rules.
    fn verify_version(&self, c: &mut Checker, f: Features) {
        let v = f.version();
        c.expect(
            v == features::VERSION_4 || v == features::VERSION_5,
            "versionnum",
            "version 4 or 5 in the low nibble",
            format_args!("{:#x}", self.versionnum),
        );
        if !f.is_v5() {
            return;
        }
        let bad_vers = self.versionnum & !features::version::OKBITS;
        c.expect(
            bad_vers == 0,
            "versionnum",
            format_args!("no bits outside {:#x}", features::version::OKBITS),
            format_args!("{:#x}", self.versionnum),
        );
        let required = features::version::V5_REQUIRED;
        c.expect(
            self.versionnum & required == required,
            "versionnum",
            format_args!("bits {required:#x} set on a v5 superblock"),
            format_args!("{:#x}", self.versionnum),
        );
        let ok2 = features::features2::OKBITS | features::features2::CRC;
        c.expect(
            self.features2 & !ok2 == 0,
            "features2",
            format_args!("no bits outside {ok2:#x}"),
            format_args!("{:#x}", self.features2),
        );
        let req2 = features::features2::V5_REQUIRED;
        c.expect(
            self.features2 & req2 == req2,
            "features2",
            format_args!("bits {req2:#x} set on a v5 superblock"),
            format_args!("{:#x}", self.features2),
        );
        c.expect(
            self.blocksize >= MIN_CRC_BLOCKSIZE,
            "blocksize",
            format_args!(">= {MIN_CRC_BLOCKSIZE} on a v5 filesystem"),
            self.blocksize,
        );
        c.expect(
            self.qflags & (OQUOTA_ENFD | OQUOTA_CHKD) == 0,
            "qflags",
            "no OQUOTA bits on a v5 filesystem",
            format_args!("{:#x}", self.qflags),
        );
        if f.has_sparse_inodes() {
            // A full chunk (64 inodes) must be the inode alignment.
            let align = u64::from(self.inodesize)
                .checked_mul(64)
                .and_then(|b| b.checked_shr(u32::from(self.blocklog)));
            c.expect(
                align == Some(u64::from(self.inoalignmt)),
                "inoalignmt",
                format_args!(
                    "{} (one inode chunk, required by sparse inodes)",
                    align.unwrap_or(0)
                ),
                self.inoalignmt,
            );
        }
    }

    /// The block/sector/inode/AG size rules of `xfs_validate_sb_common`.
    fn verify_geometry(&self, c: &mut Checker, _f: Features) {
        c.expect(self.agcount > 0, "agcount", "> 0", self.agcount);
        c.expect(
            (512..=32768).contains(&self.sectsize),
            "sectsize",
            "512..=32768",
            self.sectsize,
        );
        c.expect(
            (9..=15).contains(&self.sectlog),
            "sectlog",
            "9..=15",
            self.sectlog,
        );
        c.expect(
            pow2(self.sectlog) == Some(u64::from(self.sectsize)),
            "sectsize",
            format_args!("1 << sectlog = {}", pow2(self.sectlog).unwrap_or(0)),
            self.sectsize,
        );
        c.expect(
            (512..=65536).contains(&self.blocksize),
            "blocksize",
            "512..=65536",
            self.blocksize,
        );
        c.expect(
            (9..=16).contains(&self.blocklog),
            "blocklog",
            "9..=16",
            self.blocklog,
        );
        c.expect(
            pow2(self.blocklog) == Some(u64::from(self.blocksize)),
            "blocksize",
            format_args!("1 << blocklog = {}", pow2(self.blocklog).unwrap_or(0)),
            self.blocksize,
        );
        let dirlog = u32::from(self.dirblklog).saturating_add(u32::from(self.blocklog));
        c.expect(
            dirlog <= 16,
            "dirblklog",
            format_args!("dirblklog + blocklog <= 16 (blocklog {})", self.blocklog),
            self.dirblklog,
        );
        c.expect(
            (256..=2048).contains(&self.inodesize) && self.inodesize.is_power_of_two(),
            "inodesize",
            "256, 512, 1024 or 2048",
            self.inodesize,
        );
        c.expect(
            (8..=11).contains(&self.inodelog),
            "inodelog",
            "8..=11",
            self.inodelog,
        );
        c.expect(
            pow2(self.inodelog) == Some(u64::from(self.inodesize)),
            "inodesize",
            format_args!("1 << inodelog = {}", pow2(self.inodelog).unwrap_or(0)),
            self.inodesize,
        );
        let inopb = if self.inodesize == 0 {
            None
        } else {
            Some(self.blocksize.div_ceil(u32::from(self.inodesize)))
        };
        c.expect(
            inopb == Some(u32::from(self.inopblock)),
            "inopblock",
            format_args!("blocksize / inodesize = {}", inopb.unwrap_or(0)),
            self.inopblock,
        );
        c.expect(
            self.blocklog.checked_sub(self.inodelog) == Some(self.inopblog),
            "inopblog",
            format_args!(
                "blocklog - inodelog = {}",
                i32::from(self.blocklog).saturating_sub(i32::from(self.inodelog))
            ),
            self.inopblog,
        );
        let ag_bytes = u64::from(self.agblocks).checked_mul(u64::from(self.blocksize));
        c.expect(
            ag_bytes.is_some_and(|b| (MIN_AG_BYTES..=MAX_AG_BYTES).contains(&b)),
            "agblocks",
            format_args!("an AG of 16 MiB..=1 TiB ({} byte blocks)", self.blocksize),
            self.agblocks,
        );
        let want_agblklog = self
            .agblocks
            .checked_sub(1)
            .map(|v| highbit32(v).map_or(0, |h| h.saturating_add(1)));
        c.expect(
            want_agblklog == Some(u32::from(self.agblklog)),
            "agblklog",
            format_args!("log2(agblocks) rounded up = {}", want_agblklog.unwrap_or(0)),
            self.agblklog,
        );
        if self.agblocks != 0 {
            let want = self.dblocks.div_ceil(u64::from(self.agblocks));
            c.expect(
                want == u64::from(self.agcount),
                "agcount",
                format_args!("dblocks / agblocks rounded up = {want}"),
                self.agcount,
            );
        }
        c.expect(self.imax_pct <= 100, "imax_pct", "<= 100", self.imax_pct);
        c.expect(self.dblocks != 0, "dblocks", "> 0", self.dblocks);
        let max_dblocks = u64::from(self.agcount).checked_mul(u64::from(self.agblocks));
        if let Some(max) = max_dblocks {
            c.expect(
                self.dblocks <= max,
                "dblocks",
                format_args!("<= agcount * agblocks = {max}"),
                self.dblocks,
            );
        }
        let min_dblocks = u64::from(self.agcount.saturating_sub(1))
            .checked_mul(u64::from(self.agblocks))
            .and_then(|v| v.checked_add(MIN_AG_BLOCKS));
        if let Some(min) = min_dblocks {
            c.expect(
                self.dblocks >= min,
                "dblocks",
                format_args!(">= (agcount - 1) * agblocks + {MIN_AG_BLOCKS} = {min}"),
                self.dblocks,
            );
        }
        c.expect(self.shared_vn == 0, "shared_vn", 0, self.shared_vn);
    }

    /// Log size, log sector and log stripe rules.
    fn verify_log(&self, c: &mut Checker, f: Features) {
        c.expect(
            u64::from(self.logblocks) <= MAX_LOG_BLOCKS,
            "logblocks",
            format_args!("<= {MAX_LOG_BLOCKS}"),
            self.logblocks,
        );
        let log_bytes = u64::from(self.logblocks).checked_mul(u64::from(self.blocksize));
        c.expect(
            log_bytes.is_some_and(|b| b <= MAX_LOG_BYTES),
            "logblocks",
            format_args!("a log of <= {MAX_LOG_BYTES} bytes"),
            self.logblocks,
        );
        if f.has_sector() {
            let want = 1u32.checked_shl(u32::from(self.logsectlog));
            c.expect(
                want == Some(u32::from(self.logsectsize)),
                "logsectsize",
                format_args!("1 << logsectlog = {}", want.unwrap_or(0)),
                self.logsectsize,
            );
        } else {
            c.expect(
                self.logsectsize == 0,
                "logsectsize",
                "0 without the SECTOR feature",
                self.logsectsize,
            );
            c.expect(
                self.logsectlog == 0,
                "logsectlog",
                "0 without the SECTOR feature",
                self.logsectlog,
            );
        }
        if self.logsunit > 1 {
            c.expect(
                self.blocksize != 0 && self.logsunit.is_multiple_of(self.blocksize),
                "logsunit",
                format_args!("a multiple of the block size {}", self.blocksize),
                self.logsunit,
            );
            c.expect(
                self.logsunit <= MAX_LOG_RECORD_BSIZE,
                "logsunit",
                format_args!("<= {MAX_LOG_RECORD_BSIZE}"),
                self.logsunit,
            );
        }
    }

    /// Realtime geometry: all zero without a realtime device, else consistent.
    fn verify_realtime(&self, c: &mut Checker) {
        let rtext_bytes = u64::from(self.rextsize).checked_mul(u64::from(self.blocksize));
        c.expect(
            rtext_bytes.is_some_and(|b| (MIN_RTEXTSIZE..=MAX_RTEXTSIZE).contains(&b)),
            "rextsize",
            "a realtime extent of 4 KiB..=1 GiB",
            self.rextsize,
        );
        if self.rblocks == 0 {
            c.equal("rextents", 0, self.rextents);
            c.equal("rbmblocks", 0, self.rbmblocks);
            c.equal("rextslog", 0, self.rextslog);
            c.equal("frextents", 0, self.frextents);
        } else {
            let rexts = self.rblocks.checked_div(u64::from(self.rextsize));
            c.expect(
                rexts == Some(self.rextents),
                "rextents",
                format_args!("rblocks / rextsize = {}", rexts.unwrap_or(0)),
                self.rextents,
            );
            let bits_per_block = u64::from(self.blocksize).saturating_mul(8);
            let rbm = self.rextents.checked_div(bits_per_block).map(|q| {
                if !self.rextents.is_multiple_of(bits_per_block) {
                    q.saturating_add(1)
                } else {
                    q
                }
            });
            c.expect(
                rbm == Some(u64::from(self.rbmblocks)),
                "rbmblocks",
                format_args!("{}", rbm.unwrap_or(0)),
                self.rbmblocks,
            );
            let log = u32::try_from(self.rextents)
                .ok()
                .and_then(highbit32)
                .unwrap_or(0);
            c.expect(
                u32::from(self.rextslog) == log,
                "rextslog",
                log,
                self.rextslog,
            );
        }
    }

    /// `sb_unit` / `sb_width` (`xfs_validate_stripe_geometry`).
    fn verify_stripe(&self, c: &mut Checker, f: Features) {
        c.expect(
            (self.unit != 0) == f.has_dalign(),
            "unit",
            if f.has_dalign() {
                "non-zero with the DALIGN feature"
            } else {
                "0 without the DALIGN feature"
            },
            self.unit,
        );
        let bs = u64::from(self.blocksize);
        let sunit = u64::from(self.unit).saturating_mul(bs);
        let swidth = u64::from(self.width).saturating_mul(bs);
        c.expect(
            swidth <= u64::from(i32::MAX.unsigned_abs()),
            "width",
            "a stripe width below 2 GiB",
            self.width,
        );
        c.expect(
            sunit <= swidth || swidth == 0,
            "unit",
            format_args!("<= width {}", self.width),
            self.unit,
        );
        c.expect(
            (sunit == 0) == (swidth == 0),
            "width",
            "unit and width both zero or both set",
            format_args!("unit {} width {}", self.unit, self.width),
        );
        if sunit != 0 {
            c.expect(
                swidth.is_multiple_of(sunit),
                "width",
                format_args!("a multiple of unit {}", self.unit),
                self.width,
            );
        }
    }

    /// Secondary copies must describe the same filesystem as the primary.
    /// The root and realtime inode numbers and the quota fields are left
    /// out: mkfs leaves them null in secondaries and online scrub only
    /// "preens" them (`xchk_superblock`).
    fn compare_with_primary(&self, c: &mut Checker, p: &Superblock) {
        macro_rules! same {
            ($($f:ident),*) => {$(
                c.expect(self.$f == p.$f, stringify!($f),
                    format_args!("{} (as in the primary)", p.$f), self.$f);
            )*};
        }
        same!(
            blocksize,
            dblocks,
            rblocks,
            rextents,
            uuid,
            logstart,
            rextsize,
            agblocks,
            agcount,
            rbmblocks,
            logblocks,
            sectsize,
            inodesize,
            inopblock,
            blocklog,
            sectlog,
            inodelog,
            inopblog,
            agblklog,
            rextslog,
            imax_pct,
            inoalignmt,
            unit,
            width,
            dirblklog,
            logsectlog,
            logsectsize,
            logsunit,
            features2,
            features_compat,
            features_ro_compat,
            features_incompat,
            features_log_incompat,
            spino_align,
            meta_uuid
        );
        c.expect(
            self.versionnum == p.versionnum,
            "versionnum",
            format_args!("{:#x} (as in the primary)", p.versionnum),
            format_args!("{:#x}", self.versionnum),
        );
    }

    /// Every field as `(name, value)`, named and formatted exactly as
    /// `xfs_db -c 'sb 0' -c print` prints them; `crc_ok` says whether the
    /// CRC verified (printed as `(correct)` or `(bad)`; a v4 superblock's
    /// CRC is `(unchecked)`).
    pub fn db_fields(&self, crc_ok: bool) -> Vec<(&'static str, String)> {
        // xfs_db prints "null" for all-ones values of these types.
        fn null64(v: u64) -> String {
            if v == u64::MAX {
                "null".to_owned()
            } else {
                v.to_string()
            }
        }
        fn null32(v: u32) -> String {
            if v == u32::MAX {
                "null".to_owned()
            } else {
                v.to_string()
            }
        }
        // C's "%#x": no prefix for zero.
        fn hex(v: u64) -> String {
            if v == 0 {
                "0".to_owned()
            } else {
                format!("{v:#x}")
            }
        }
        vec![
            ("magicnum", hex(self.magicnum.into())),
            ("blocksize", self.blocksize.to_string()),
            ("dblocks", null64(self.dblocks)),
            ("rblocks", null64(self.rblocks)),
            ("rextents", null64(self.rextents)),
            ("uuid", self.uuid.to_string()),
            ("logstart", null64(self.logstart)),
            ("rootino", null64(self.rootino)),
            ("rbmino", null64(self.rbmino)),
            ("rsumino", null64(self.rsumino)),
            ("rextsize", null32(self.rextsize)),
            ("agblocks", null32(self.agblocks)),
            ("agcount", null32(self.agcount)),
            ("rbmblocks", self.rbmblocks.to_string()),
            ("logblocks", self.logblocks.to_string()),
            ("versionnum", hex(self.versionnum.into())),
            ("sectsize", self.sectsize.to_string()),
            ("inodesize", self.inodesize.to_string()),
            ("inopblock", self.inopblock.to_string()),
            ("fname", db_charns(&self.fname)),
            ("blocklog", self.blocklog.to_string()),
            ("sectlog", self.sectlog.to_string()),
            ("inodelog", self.inodelog.to_string()),
            ("inopblog", self.inopblog.to_string()),
            ("agblklog", self.agblklog.to_string()),
            ("rextslog", self.rextslog.to_string()),
            ("inprogress", self.inprogress.to_string()),
            ("imax_pct", self.imax_pct.to_string()),
            ("icount", self.icount.to_string()),
            ("ifree", self.ifree.to_string()),
            ("fdblocks", self.fdblocks.to_string()),
            ("frextents", self.frextents.to_string()),
            ("uquotino", null64(self.uquotino)),
            ("gquotino", null64(self.gquotino)),
            ("qflags", hex(self.qflags.into())),
            ("flags", hex(self.flags.into())),
            ("shared_vn", self.shared_vn.to_string()),
            ("inoalignmt", self.inoalignmt.to_string()),
            ("unit", self.unit.to_string()),
            ("width", self.width.to_string()),
            ("dirblklog", self.dirblklog.to_string()),
            ("logsectlog", self.logsectlog.to_string()),
            ("logsectsize", self.logsectsize.to_string()),
            ("logsunit", self.logsunit.to_string()),
            ("features2", hex(self.features2.into())),
            ("bad_features2", hex(self.bad_features2.into())),
            ("features_compat", hex(self.features_compat.into())),
            ("features_ro_compat", hex(self.features_ro_compat.into())),
            ("features_incompat", hex(self.features_incompat.into())),
            (
                "features_log_incompat",
                hex(self.features_log_incompat.into()),
            ),
            (
                "crc",
                // xfs_db reads the little-endian CRC field as a big-endian
                // number.
                format!(
                    "{} ({})",
                    hex(self.crc.swap_bytes().into()),
                    if !self.features().is_v5() {
                        "unchecked"
                    } else if crc_ok {
                        "correct"
                    } else {
                        "bad"
                    }
                ),
            ),
            ("spino_align", self.spino_align.to_string()),
            ("pquotino", null64(self.pquotino)),
            ("lsn", hex(self.lsn)),
            ("meta_uuid", self.meta_uuid.to_string()),
        ]
    }
}

/// Formats a fixed-size character array as xfs_db's `charns` type does:
/// quoted, with C escapes and octal for everything unprintable.
fn db_charns(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'\\' | b'\'' | b'"' | b'?' => {
                s.push('\\');
                s.push(char::from(b));
            }
            0x21..=0x7e | b' ' => s.push(char::from(b)),
            0x07 => s.push_str("\\a"),
            0x08 => s.push_str("\\b"),
            0x0c => s.push_str("\\f"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x0b => s.push_str("\\v"),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    /// A valid 64 MiB v5 superblock sector like `mkfs.xfs` 6.1 writes.
    pub(crate) fn sample_sector() -> Vec<u8> {
        let mut r = RawSuperblock::new_zeroed();
        r.magicnum.set(MAGIC);
        r.blocksize.set(4096);
        r.dblocks.set(16384);
        r.uuid = Uuid([0x11; 16]);
        r.logstart.set(8198);
        r.rootino.set(128);
        r.rbmino.set(129);
        r.rsumino.set(130);
        r.rextsize.set(1);
        r.agblocks.set(4096);
        r.agcount.set(4);
        r.logblocks.set(1368);
        r.versionnum.set(0xb4a5);
        r.sectsize.set(512);
        r.inodesize.set(512);
        r.inopblock.set(8);
        r.blocklog = 12;
        r.sectlog = 9;
        r.inodelog = 9;
        r.inopblog = 3;
        r.agblklog = 12;
        r.imax_pct = 25;
        r.icount.set(64);
        r.ifree.set(61);
        r.fdblocks.set(14984);
        r.inoalignmt.set(8);
        r.logsunit.set(1);
        r.features2.set(0x18a);
        r.bad_features2.set(0x18a);
        r.features_ro_compat.set(0xd);
        r.features_incompat.set(0xb);
        r.spino_align.set(4);
        let mut sector = vec![0u8; 512];
        sector[..SIZE].copy_from_slice(r.as_bytes());
        crc::update(&mut sector, CRC_OFFSET).unwrap();
        sector
    }

    #[test]
    fn sample_verifies() {
        let s = sample_sector();
        let c = Superblock::check(&s, SbKind::Primary).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.value.metadata_uuid(), Uuid([0x11; 16]));
    }

    #[test]
    fn reports_every_problem() {
        let mut s = sample_sector();
        s[84..88].copy_from_slice(&3000u32.to_be_bytes()); // agblocks
        s[0] = 0; // magic
        let c = Superblock::check(&s, SbKind::Primary).unwrap();
        let fields: Vec<_> = c.problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"magicnum"));
        assert!(fields.contains(&"crc"));
        assert!(fields.contains(&"agblocks"));
        assert!(fields.contains(&"agcount"));
    }

    #[test]
    fn secondary_differs_from_primary() {
        let s = sample_sector();
        let primary = Superblock::from_bytes(&s).unwrap();
        let mut s2 = s.clone();
        s2[128..136].fill(0); // icount zero: fine for a secondary
        s2[8..16].copy_from_slice(&16000u64.to_be_bytes());
        crc::update(&mut s2, CRC_OFFSET).unwrap();
        let c = Superblock::check(
            &s2,
            SbKind::Secondary {
                agno: AgNumber(1),
                primary: &primary,
            },
        )
        .unwrap();
        let fields: Vec<_> = c.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["dblocks"], "{:?}", c.problems);
        assert!(c.problems[0].structure == "superblock 1");
    }

    #[test]
    fn db_field_formats() {
        let s = sample_sector();
        let sb = Superblock::from_bytes(&s).unwrap();
        let f = sb.db_fields(true);
        let get = |n: &str| f.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get("magicnum"), "0x58465342");
        assert_eq!(get("features_compat"), "0");
        assert_eq!(
            get("fname"),
            "\"\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\""
        );
        assert_eq!(get("lsn"), "0");
        assert!(get("crc").ends_with("(correct)"));
        assert_eq!(f.len(), 55);
    }

    #[test]
    fn charns_escapes() {
        assert_eq!(db_charns(b"a\"b\n\x01"), "\"a\\\"b\\n\\001\"");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(c) = Superblock::check(&buf, SbKind::Primary) {
                let _ = c.value.db_fields(c.is_ok());
                let _ = c.value.features().check_supported();
                let p = c.value.clone();
                let _ = Superblock::check(&buf, SbKind::Secondary { agno: AgNumber(1), primary: &p });
            }
        }

        #[test]
        fn mutated_sample_never_panics(idx in 0usize..512, val in any::<u8>()) {
            let mut s = sample_sector();
            s[idx] = val;
            let _ = Superblock::check(&s, SbKind::Primary).unwrap();
        }
    }
}
