//! The v3 on-disk inode (`struct xfs_dinode`): the 176-byte core, then the
//! data fork, then (from `176 + forkoff * 8`) the attribute fork.
//!
//! Verification follows libxfs `xfs_dinode_verify` and its helpers
//! (`xfs_dinode_verify_fork`, `_forkoff`, `_nrext64`,
//! `xfs_inode_validate_extsize`, `_cowextsize`). Field names in problems are
//! xfs_db's (`core.size`, `v3.crc`), so a report can be matched with
//! `xfs_db -c 'inode N' -c print`.

use super::bmbt_rec::BLOCKCOUNT_MASK;
use super::problem::{Checked, Checker};
use super::{Problem, ShortBuffer, Uuid, be16_at, be64_at, crc, view};
use crate::geometry::{DINODE_CORE_SIZE, Geometry};
use crate::types::{AgIno, Ino};
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `IN`.
pub const MAGIC: u16 = 0x494e;
/// Offset of `di_crc`.
pub const CRC_OFFSET: usize = 100;
/// Size of the v3 core.
pub const CORE_SIZE: usize = 176;

/// `di_flags` bits.
pub mod flags {
    /// File data lives on the realtime device.
    pub const REALTIME: u16 = 1 << 0;
    /// Preallocated space.
    pub const PREALLOC: u16 = 1 << 1;
    /// Realtime bitmap inode uses the new format.
    pub const NEWRTBM: u16 = 1 << 2;
    /// Immutable.
    pub const IMMUTABLE: u16 = 1 << 3;
    /// Append only.
    pub const APPEND: u16 = 1 << 4;
    /// Synchronous writes.
    pub const SYNC: u16 = 1 << 5;
    /// No atime updates.
    pub const NOATIME: u16 = 1 << 6;
    /// Not to be dumped.
    pub const NODUMP: u16 = 1 << 7;
    /// New files inherit REALTIME.
    pub const RTINHERIT: u16 = 1 << 8;
    /// New files inherit the project id.
    pub const PROJINHERIT: u16 = 1 << 9;
    /// No symlinks may be created in this directory.
    pub const NOSYMLINKS: u16 = 1 << 10;
    /// Extent size hint set.
    pub const EXTSIZE: u16 = 1 << 11;
    /// New files inherit the extent size hint.
    pub const EXTSZINHERIT: u16 = 1 << 12;
    /// Do not defragment.
    pub const NODEFRAG: u16 = 1 << 13;
    /// Filestream allocator.
    pub const FILESTREAM: u16 = 1 << 14;
}

/// `di_flags2` bits.
pub mod flags2 {
    /// DAX.
    pub const DAX: u64 = 1 << 0;
    /// Blocks may be shared.
    pub const REFLINK: u64 = 1 << 1;
    /// Copy-on-write extent size hint set.
    pub const COWEXTSIZE: u64 = 1 << 2;
    /// Big timestamps.
    pub const BIGTIME: u64 = 1 << 3;
    /// 64-bit extent counters.
    pub const NREXT64: u64 = 1 << 4;
}

/// Raw view of the v3 inode core.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawDinode {
    pub magic: be::U16,
    pub mode: be::U16,
    pub version: u8,
    pub format: u8,
    pub onlink: be::U16,
    pub uid: be::U32,
    pub gid: be::U32,
    pub nlink: be::U32,
    pub projid_lo: be::U16,
    pub projid_hi: be::U16,
    /// `di_big_nextents` with NREXT64, else `di_v3_pad` (must be zero).
    pub big_nextents: be::U64,
    pub atime: be::U64,
    pub mtime: be::U64,
    pub ctime: be::U64,
    pub size: be::U64,
    pub nblocks: be::U64,
    pub extsize: be::U32,
    /// `di_nextents`, or `di_big_anextents` with NREXT64.
    pub nextents: be::U32,
    /// `di_anextents`, or `di_nrext64_pad` with NREXT64.
    pub anextents: be::U16,
    pub forkoff: u8,
    pub aformat: u8,
    pub dmevmask: be::U32,
    pub dmstate: be::U16,
    pub flags: be::U16,
    pub generation: be::U32,
    pub next_unlinked: be::U32,
    pub crc: le::U32,
    pub changecount: be::U64,
    pub lsn: be::U64,
    pub flags2: be::U64,
    pub cowextsize: be::U32,
    pub pad2: [u8; 12],
    pub crtime: be::U64,
    pub ino: be::U64,
    pub uuid: Uuid,
}

const _: () = assert!(size_of::<RawDinode>() == CORE_SIZE);
const _: () = assert!(core::mem::offset_of!(RawDinode, crc) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawDinode, nextents) == 76);
const _: () = assert!(core::mem::offset_of!(RawDinode, forkoff) == 82);
const _: () = assert!(core::mem::offset_of!(RawDinode, crtime) == 144);
const _: () = assert!(CORE_SIZE == 176 && DINODE_CORE_SIZE == 176);

/// The kind of file, from the mode's type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Unallocated inode (mode 0).
    Free,
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
    /// Symbolic link.
    Symlink,
    /// A type value XFS never stores.
    Invalid(u16),
}

impl FileType {
    /// Decodes the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u16) -> FileType {
        match mode & 0o170000 {
            0 if mode == 0 => FileType::Free,
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            0o120000 => FileType::Symlink,
            other => FileType::Invalid(other),
        }
    }

    /// The directory-entry file type code (`XFS_DIR3_FT_*`) for this kind.
    pub fn dir_ftype(self) -> Option<u8> {
        Some(match self {
            FileType::Regular => 1,
            FileType::Directory => 2,
            FileType::CharDevice => 3,
            FileType::BlockDevice => 4,
            FileType::Fifo => 5,
            FileType::Socket => 6,
            FileType::Symlink => 7,
            FileType::Free | FileType::Invalid(_) => return None,
        })
    }
}

/// Which fork of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fork {
    /// File data, directory entries, symlink target.
    Data,
    /// Extended attributes.
    Attr,
}

impl std::fmt::Display for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fork::Data => "data fork",
            Fork::Attr => "attr fork",
        })
    }
}

/// How a fork stores its contents (`XFS_DINODE_FMT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkFormat {
    /// A device number (`dev_t`).
    Dev,
    /// Contents stored inside the inode.
    Local,
    /// An array of extent records inside the inode.
    Extents,
    /// The root of a block-mapping btree inside the inode.
    Btree,
    /// A UUID (unused).
    Uuid,
    /// A value XFS never stores.
    Invalid(u8),
}

impl ForkFormat {
    /// Decodes `di_format` / `di_aformat`.
    pub fn from_raw(v: u8) -> ForkFormat {
        match v {
            0 => ForkFormat::Dev,
            1 => ForkFormat::Local,
            2 => ForkFormat::Extents,
            3 => ForkFormat::Btree,
            4 => ForkFormat::Uuid,
            x => ForkFormat::Invalid(x),
        }
    }
}

/// An inode timestamp, legacy or big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// Seconds and nanoseconds since the Unix epoch (32-bit seconds).
    Legacy {
        /// Signed seconds.
        sec: i32,
        /// Nanoseconds.
        nsec: u32,
    },
    /// Nanoseconds since 1901-12-13T20:45:52Z (the smallest legacy time).
    Big(u64),
}

/// Seconds between the bigtime epoch and the Unix epoch.
const BIGTIME_EPOCH_OFFSET: i64 = 1 << 31;

impl Timestamp {
    /// Decodes a raw timestamp word given the inode's BIGTIME flag.
    pub fn decode(raw: u64, bigtime: bool) -> Timestamp {
        if bigtime {
            Timestamp::Big(raw)
        } else {
            let sec = i32::from_be_bytes(u32::try_from(raw >> 32).unwrap_or(0).to_be_bytes());
            let nsec = u32::try_from(raw & 0xffff_ffff).unwrap_or(0);
            Timestamp::Legacy { sec, nsec }
        }
    }

    /// Seconds and nanoseconds since the Unix epoch.
    pub fn to_unix(self) -> (i64, u32) {
        match self {
            Timestamp::Legacy { sec, nsec } => (i64::from(sec), nsec),
            Timestamp::Big(ns) => {
                let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
                let nsec = u32::try_from(ns % 1_000_000_000).unwrap_or(0);
                (secs.saturating_sub(BIGTIME_EPOCH_OFFSET), nsec)
            }
        }
    }
}

/// A decoded v3 inode core: every field of `struct xfs_dinode`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // names follow xfs_format.h without the di_ prefix
pub struct Dinode {
    pub magic: u16,
    pub mode: u16,
    pub version: u8,
    pub format: u8,
    pub onlink: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub projid_lo: u16,
    pub projid_hi: u16,
    /// Raw word at offset 24: `di_big_nextents` or `di_v3_pad`.
    pub big_nextents: u64,
    /// Raw timestamps; see [`Dinode::atime`] and friends.
    pub atime_raw: u64,
    pub mtime_raw: u64,
    pub ctime_raw: u64,
    pub size: u64,
    pub nblocks: u64,
    pub extsize: u32,
    /// Raw word at offset 76: `di_nextents` or `di_big_anextents`.
    pub nextents_raw: u32,
    /// Raw word at offset 80: `di_anextents` or `di_nrext64_pad`.
    pub anextents_raw: u16,
    pub forkoff: u8,
    pub aformat: u8,
    pub dmevmask: u32,
    pub dmstate: u16,
    pub flags: u16,
    pub generation: u32,
    pub next_unlinked: u32,
    pub crc: u32,
    pub changecount: u64,
    pub lsn: u64,
    pub flags2: u64,
    pub cowextsize: u32,
    pub pad2: [u8; 12],
    pub crtime_raw: u64,
    pub ino: u64,
    pub uuid: Uuid,
}

impl Dinode {
    /// Decodes the 176-byte core; fails only on a short buffer.
    pub fn from_bytes(buf: &[u8]) -> Result<Dinode, ShortBuffer> {
        let r: &RawDinode = view(buf, "inode core")?;
        Ok(Dinode {
            magic: r.magic.get(),
            mode: r.mode.get(),
            version: r.version,
            format: r.format,
            onlink: r.onlink.get(),
            uid: r.uid.get(),
            gid: r.gid.get(),
            nlink: r.nlink.get(),
            projid_lo: r.projid_lo.get(),
            projid_hi: r.projid_hi.get(),
            big_nextents: r.big_nextents.get(),
            atime_raw: r.atime.get(),
            mtime_raw: r.mtime.get(),
            ctime_raw: r.ctime.get(),
            size: r.size.get(),
            nblocks: r.nblocks.get(),
            extsize: r.extsize.get(),
            nextents_raw: r.nextents.get(),
            anextents_raw: r.anextents.get(),
            forkoff: r.forkoff,
            aformat: r.aformat,
            dmevmask: r.dmevmask.get(),
            dmstate: r.dmstate.get(),
            flags: r.flags.get(),
            generation: r.generation.get(),
            next_unlinked: r.next_unlinked.get(),
            crc: r.crc.get(),
            changecount: r.changecount.get(),
            lsn: r.lsn.get(),
            flags2: r.flags2.get(),
            cowextsize: r.cowextsize.get(),
            pad2: r.pad2,
            crtime_raw: r.crtime.get(),
            ino: r.ino.get(),
            uuid: r.uuid,
        })
    }

    /// Decodes and verifies an inode from its `inode_size` bytes.
    pub fn check(buf: &[u8], ino: Ino, geo: &Geometry) -> Result<Checked<Dinode>, ShortBuffer> {
        let d = Dinode::from_bytes(buf)?;
        let problems = d.verify(buf, ino, geo);
        Ok(Checked { value: d, problems })
    }

    /// The kind of file.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The 32-bit project id.
    pub fn projid(&self) -> u32 {
        (u32::from(self.projid_hi) << 16) | u32::from(self.projid_lo)
    }

    /// The inode uses 64-bit extent counters.
    pub fn has_nrext64(&self) -> bool {
        self.flags2 & flags2::NREXT64 != 0
    }

    /// The inode's timestamps are big timestamps.
    pub fn has_bigtime(&self) -> bool {
        self.flags2 & flags2::BIGTIME != 0
    }

    /// Last access time.
    pub fn atime(&self) -> Timestamp {
        Timestamp::decode(self.atime_raw, self.has_bigtime())
    }
    /// Last data modification time.
    pub fn mtime(&self) -> Timestamp {
        Timestamp::decode(self.mtime_raw, self.has_bigtime())
    }
    /// Last inode change time.
    pub fn ctime(&self) -> Timestamp {
        Timestamp::decode(self.ctime_raw, self.has_bigtime())
    }
    /// Creation time.
    pub fn crtime(&self) -> Timestamp {
        Timestamp::decode(self.crtime_raw, self.has_bigtime())
    }

    /// Extents in the data fork (`xfs_dfork_data_extents`).
    pub fn data_extents(&self) -> u64 {
        if self.has_nrext64() {
            self.big_nextents
        } else {
            u64::from(self.nextents_raw)
        }
    }

    /// Extents in the attr fork (`xfs_dfork_attr_extents`).
    pub fn attr_extents(&self) -> u64 {
        if self.has_nrext64() {
            u64::from(self.nextents_raw)
        } else {
            u64::from(self.anextents_raw)
        }
    }

    /// Extents in `fork`.
    pub fn extents(&self, fork: Fork) -> u64 {
        match fork {
            Fork::Data => self.data_extents(),
            Fork::Attr => self.attr_extents(),
        }
    }

    /// Storage format of `fork`.
    pub fn fork_format(&self, fork: Fork) -> ForkFormat {
        ForkFormat::from_raw(match fork {
            Fork::Data => self.format,
            Fork::Attr => self.aformat,
        })
    }

    /// Byte offset of the attr fork from the start of the literal area
    /// (`XFS_DFORK_BOFF`).
    pub fn attr_fork_boff(&self) -> u32 {
        u32::from(self.forkoff) << 3
    }

    /// The attr fork exists.
    pub fn has_attr_fork(&self) -> bool {
        self.forkoff != 0
    }

    /// Size in bytes of `fork` (`XFS_DFORK_SIZE`) for an inode of
    /// `inode_size` bytes; 0 for an absent attr fork. Saturates rather than
    /// underflowing on a corrupt `forkoff`.
    pub fn fork_size(&self, fork: Fork, inode_size: u32) -> u32 {
        let lit = inode_size.saturating_sub(DINODE_CORE_SIZE);
        match (fork, self.has_attr_fork()) {
            (Fork::Data, false) => lit,
            (Fork::Data, true) => self.attr_fork_boff().min(lit),
            (Fork::Attr, false) => 0,
            (Fork::Attr, true) => lit.saturating_sub(self.attr_fork_boff()),
        }
    }

    /// Byte offset of `fork` inside the inode buffer.
    pub fn fork_offset(&self, fork: Fork) -> u32 {
        match fork {
            Fork::Data => DINODE_CORE_SIZE,
            Fork::Attr => DINODE_CORE_SIZE.saturating_add(self.attr_fork_boff()),
        }
    }

    /// The bytes of `fork` inside the inode buffer `buf`, bounded by the
    /// buffer, so a corrupt `forkoff` can never index past it.
    pub fn fork_bytes<'a>(&self, buf: &'a [u8], fork: Fork) -> &'a [u8] {
        let inode_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let start = usize::try_from(self.fork_offset(fork)).unwrap_or(usize::MAX);
        let size = usize::try_from(self.fork_size(fork, inode_size)).unwrap_or(0);
        let end = start.saturating_add(size).min(buf.len());
        buf.get(start..end).unwrap_or(&[])
    }

    /// The most extent records `fork` can hold inline (`XFS_DFORK_MAXEXT`).
    pub fn fork_max_extents(&self, fork: Fork, inode_size: u32) -> u64 {
        u64::from(self.fork_size(fork, inode_size) / 16)
    }

    /// Verifies the inode core and fork layout (`xfs_dinode_verify`).
    /// `buf` is the whole inode (`inode_size` bytes), which the CRC covers.
    pub fn verify(&self, buf: &[u8], ino: Ino, geo: &Geometry) -> Vec<Problem> {
        let mut c = Checker::new(format!("inode {}", ino.0));
        let f = geo.features;
        c.expect(
            self.magic == MAGIC,
            "core.magic",
            format_args!("{MAGIC:#x}"),
            format_args!("{:#x}", self.magic),
        );
        c.equal("core.version", 3, self.version);
        let inode_len = usize::try_from(geo.inode_size).unwrap_or(usize::MAX);
        let crc_ok = buf.len() >= inode_len
            && buf
                .get(..inode_len)
                .is_some_and(|b| crc::verify(b, CRC_OFFSET));
        c.expect(
            crc_ok,
            "v3.crc",
            format_args!(
                "{:#x}",
                buf.get(..inode_len)
                    .and_then(|b| crc::compute(b, CRC_OFFSET))
                    .unwrap_or(0)
            ),
            format_args!("{:#x}", self.crc),
        );
        c.equal("v3.inumber", ino.0, self.ino);
        c.expect(
            self.uuid == geo.meta_uuid,
            "v3.uuid",
            geo.meta_uuid,
            self.uuid,
        );
        // The unlinked list pointer stays inside the inode's AG
        // (xfs_inode_buf_verify: xfs_verify_agino_or_null).
        if self.next_unlinked != crate::types::null::AGINO {
            let ok = geo
                .ino_split(ino)
                .is_some_and(|(agno, _)| geo.verify_agino(agno, AgIno(self.next_unlinked)));
            c.expect(
                ok,
                "next_unlinked",
                "null or an inode of the same AG",
                self.next_unlinked,
            );
        }

        c.expect(self.size >> 63 == 0, "core.size", "< 2^63", self.size);
        let ftype = self.file_type();
        let mode_str = format!("{:#o}", self.mode);
        c.expect(
            !matches!(ftype, FileType::Invalid(_)),
            "core.mode",
            "a valid file type",
            &mode_str,
        );
        if matches!(ftype, FileType::Directory | FileType::Symlink) {
            c.expect(
                self.size != 0,
                "core.size",
                "> 0 for a directory or symlink",
                self.size,
            );
        }

        // xfs_dinode_verify_nrext64.
        if self.has_nrext64() {
            c.expect(
                f.has_nrext64(),
                "v3.nrext64",
                "0 on a filesystem without NREXT64",
                1,
            );
            c.equal("core.nrext64_pad", 0, self.anextents_raw);
        } else {
            c.equal("core.v3_pad", 0, self.big_nextents);
        }

        let nextents = self.data_extents();
        let naextents = self.attr_extents();
        let used = ftype != FileType::Free;
        if used {
            c.expect(
                nextents.saturating_add(naextents) <= self.nblocks,
                "core.nblocks",
                format_args!(
                    ">= nextents + naextents = {}",
                    nextents.saturating_add(naextents)
                ),
                self.nblocks,
            );
            c.expect(
                self.attr_fork_boff() <= geo.inode_size,
                "core.forkoff",
                format_args!("<= {} (the inode size / 8)", geo.inode_size >> 3),
                self.forkoff,
            );
        }
        if ftype == FileType::Directory {
            let max = geo.dir_max_extents();
            c.expect(
                nextents <= max,
                "core.nextents",
                format_args!("<= {max} for a directory"),
                nextents,
            );
        }
        if used && self.flags & flags::REALTIME != 0 {
            c.push(
                "core.realtime",
                "0 on a filesystem without a realtime device",
                1,
            );
        }

        // xfs_dinode_verify_forkoff.
        if self.forkoff != 0 {
            let lit8 = geo.literal_area_size() >> 3;
            match self.fork_format(Fork::Data) {
                ForkFormat::Dev => c.expect(
                    self.forkoff == 1,
                    "core.forkoff",
                    "1 for a device inode",
                    self.forkoff,
                ),
                ForkFormat::Local | ForkFormat::Extents | ForkFormat::Btree => c.expect(
                    u32::from(self.forkoff) < lit8,
                    "core.forkoff",
                    format_args!("< {lit8}"),
                    self.forkoff,
                ),
                other => c.push(
                    "core.format",
                    "dev, local, extents or btree",
                    format_args!("{other:?}"),
                ),
            }
        }

        match ftype {
            FileType::Fifo | FileType::CharDevice | FileType::BlockDevice | FileType::Socket => {
                c.expect(
                    self.fork_format(Fork::Data) == ForkFormat::Dev,
                    "core.format",
                    "dev for a device, fifo or socket",
                    format_args!("{:?}", self.fork_format(Fork::Data)),
                );
            }
            FileType::Regular | FileType::Symlink | FileType::Directory => {
                self.verify_fork(&mut c, Fork::Data, geo, ftype);
            }
            FileType::Free | FileType::Invalid(_) => {}
        }

        if self.forkoff != 0 {
            self.verify_fork(&mut c, Fork::Attr, geo, ftype);
        } else {
            c.expect(
                matches!(self.aformat, 0 | 2),
                "core.aformat",
                "0 or extents without an attr fork",
                self.aformat,
            );
            c.expect(
                naextents == 0,
                "core.naextents",
                "0 without an attr fork",
                naextents,
            );
        }

        self.verify_extsize(&mut c, geo, ftype);
        self.verify_cowextsize(&mut c, geo, ftype);

        let reflink = self.flags2 & flags2::REFLINK != 0;
        if self.flags2 & (flags2::REFLINK | flags2::COWEXTSIZE) != 0 && !f.has_reflink() {
            c.push(
                "v3.flags2",
                "no reflink or cowextsize flag without the reflink feature",
                format_args!("{:#x}", self.flags2),
            );
        }
        if reflink && ftype != FileType::Regular {
            c.push("v3.reflink", "0 except on regular files", 1);
        }
        if reflink && self.flags & flags::REALTIME != 0 {
            c.push("v3.reflink", "0 on a realtime file", 1);
        }
        if self.has_bigtime() && !f.has_bigtime() {
            c.push("v3.bigtime", "0 on a filesystem without BIGTIME", 1);
        }
        c.finish()
    }

    /// `xfs_dinode_verify_fork`.
    fn verify_fork(&self, c: &mut Checker, fork: Fork, geo: &Geometry, ftype: FileType) {
        let size = self.fork_size(fork, geo.inode_size);
        let format = self.fork_format(fork);
        let n = self.extents(fork);
        let (fmt_field, n_field) = match fork {
            Fork::Data => ("core.format", "core.nextents"),
            Fork::Attr => ("core.aformat", "core.naextents"),
        };
        if fork == Fork::Data {
            let fits = self.size <= u64::from(size);
            if matches!(ftype, FileType::Directory | FileType::Symlink) && fits {
                c.expect(
                    format == ForkFormat::Local,
                    fmt_field,
                    format_args!("local for a size of {} that fits the fork", self.size),
                    format_args!("{format:?}"),
                );
            }
            if !fits {
                c.expect(
                    format != ForkFormat::Local,
                    fmt_field,
                    format_args!("not local for a size of {} beyond the fork", self.size),
                    format_args!("{format:?}"),
                );
            }
        }
        match format {
            ForkFormat::Local => {
                if ftype == FileType::Regular && fork == Fork::Data {
                    c.push(fmt_field, "not local for a regular file", "Local");
                }
                c.equal(n_field, 0, n);
            }
            ForkFormat::Extents => {
                let max = self.fork_max_extents(fork, geo.inode_size);
                c.expect(
                    n <= max,
                    n_field,
                    format_args!("<= {max} (records that fit the fork)"),
                    n,
                );
            }
            ForkFormat::Btree => {
                let max: u64 = match (fork, self.has_nrext64()) {
                    (Fork::Data, true) => (1 << 48) - 1,
                    (Fork::Data, false) => (1 << 31) - 1,
                    (Fork::Attr, true) => (1 << 32) - 1,
                    (Fork::Attr, false) => (1 << 15) - 1,
                };
                c.expect(n <= max, n_field, format_args!("<= {max}"), n);
            }
            other => c.push(
                fmt_field,
                "local, extents or btree",
                format_args!("{other:?}"),
            ),
        }
    }

    /// `xfs_inode_validate_extsize` (no realtime device).
    fn verify_extsize(&self, c: &mut Checker, geo: &Geometry, ftype: FileType) {
        let hint = self.flags & flags::EXTSIZE != 0;
        let inherit = self.flags & flags::EXTSZINHERIT != 0;
        let is_dir = ftype == FileType::Directory;
        let is_reg = ftype == FileType::Regular;
        let e = self.extsize;
        if (hint || inherit) && !(is_dir || is_reg) {
            c.push(
                "core.flags",
                "no extent size hint flags except on files and directories",
                format_args!("{:#x}", self.flags),
            );
        }
        if hint && !is_reg {
            c.push(
                "core.extsize",
                "the EXTSIZE flag only on regular files",
                format_args!("{:#x}", self.flags),
            );
        }
        if inherit && !is_dir {
            c.push("core.extszinherit", "0 except on directories", 1);
        }
        if (hint || inherit) && e == 0 {
            c.push("core.extsize", "> 0 when a hint flag is set", 0);
        }
        if ftype != FileType::Free && !(hint || inherit) && e != 0 {
            c.push("core.extsize", "0 without a hint flag", e);
        }
        c.expect(
            e <= BLOCKCOUNT_MASK,
            "core.extsize",
            format_args!("<= {BLOCKCOUNT_MASK}"),
            e,
        );
        c.expect(
            e <= geo.ag_blocks / 2,
            "core.extsize",
            format_args!("<= half an AG ({})", geo.ag_blocks / 2),
            e,
        );
    }

    /// `xfs_inode_validate_cowextsize`.
    fn verify_cowextsize(&self, c: &mut Checker, geo: &Geometry, ftype: FileType) {
        let hint = self.flags2 & flags2::COWEXTSIZE != 0;
        let e = self.cowextsize;
        if hint && !matches!(ftype, FileType::Directory | FileType::Regular) {
            c.push("v3.cowextsz", "0 except on files and directories", 1);
        }
        if hint && e == 0 {
            c.push("v3.cowextsize", "> 0 when the hint flag is set", 0);
        }
        if ftype != FileType::Free && !hint && e != 0 {
            c.push("v3.cowextsize", "0 without the hint flag", e);
        }
        if hint && self.flags & flags::REALTIME != 0 {
            c.push("v3.cowextsz", "0 on a realtime file", 1);
        }
        c.expect(
            e <= BLOCKCOUNT_MASK,
            "v3.cowextsize",
            format_args!("<= {BLOCKCOUNT_MASK}"),
            e,
        );
        c.expect(
            e <= geo.ag_blocks / 2,
            "v3.cowextsize",
            format_args!("<= half an AG ({})", geo.ag_blocks / 2),
            e,
        );
    }
}

/// The in-inode root of a block-mapping btree (`struct xfs_bmdr_block` and
/// the keys and pointers after it).
///
/// Keys start right after the 4-byte header; pointers start after
/// `maxrecs` keys, where `maxrecs` is what the fork can hold, not after
/// `numrecs` keys (`xfs_bmdr_ptr_addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmdrRoot {
    /// Height of the tree below the root (>= 1).
    pub level: u16,
    /// Live entries.
    pub numrecs: u16,
    /// File offsets: the first offset mapped by each child.
    pub keys: Vec<u64>,
    /// Child block addresses (fsbnos).
    pub ptrs: Vec<u64>,
}

impl BmdrRoot {
    /// The most entries a root in a fork of `fork_size` bytes holds
    /// (`xfs_bmdr_maxrecs` for a node).
    pub fn maxrecs(fork_size: usize) -> usize {
        fork_size.saturating_sub(4) / 16
    }

    /// Decodes the root from the fork's bytes, checking level and numrecs.
    pub fn parse(fork: &[u8]) -> Result<BmdrRoot, String> {
        let level = be16_at(fork, 0).ok_or("fork too small for a btree root")?;
        let numrecs = be16_at(fork, 2).ok_or("fork too small for a btree root")?;
        let maxrecs = Self::maxrecs(fork.len());
        if level == 0 {
            return Err("btree root level 0 (must be >= 1)".to_owned());
        }
        let n = usize::from(numrecs);
        if n == 0 || n > maxrecs {
            return Err(format!("btree root numrecs {numrecs} not in 1..={maxrecs}"));
        }
        let mut keys = Vec::with_capacity(n);
        let mut ptrs = Vec::with_capacity(n);
        let ptr_base = maxrecs.saturating_mul(8).saturating_add(4);
        for i in 0..n {
            let k = be64_at(fork, i.saturating_mul(8).saturating_add(4))
                .ok_or("btree root key past the fork")?;
            let p = be64_at(fork, ptr_base.saturating_add(i.saturating_mul(8)))
                .ok_or("btree root pointer past the fork")?;
            keys.push(k);
            ptrs.push(p);
        }
        Ok(BmdrRoot {
            level,
            numrecs,
            keys,
            ptrs,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
pub(crate) mod tests {
    use super::*;
    use crate::geometry::tests_support::sample_geometry;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    /// A valid 512-byte regular-file inode 131 with one extent.
    pub(crate) fn sample_inode() -> Vec<u8> {
        let g = sample_geometry();
        let mut r = RawDinode::new_zeroed();
        r.magic.set(MAGIC);
        r.mode.set(0o100644);
        r.version = 3;
        r.format = 2;
        r.nlink.set(1);
        r.size.set(5000);
        r.nblocks.set(2);
        r.nextents.set(1);
        r.forkoff = 0;
        r.aformat = 2;
        r.flags2.set(flags2::BIGTIME);
        r.ino.set(131);
        r.next_unlinked.set(u32::MAX);
        r.uuid = g.meta_uuid;
        let mut buf = vec![0u8; 512];
        buf[..CORE_SIZE].copy_from_slice(r.as_bytes());
        let rec = super::super::bmbt_rec::BmbtIrec {
            startoff: 0,
            startblock: 100,
            blockcount: 2,
            unwritten: false,
        };
        buf[176..192].copy_from_slice(&rec.pack().unwrap());
        crc::update(&mut buf, CRC_OFFSET).unwrap();
        buf
    }

    #[test]
    fn sample_is_clean() {
        let g = sample_geometry();
        let c = Dinode::check(&sample_inode(), Ino(131), &g).unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
        let d = c.value;
        assert_eq!(d.file_type(), FileType::Regular);
        assert_eq!(d.data_extents(), 1);
        assert_eq!(d.fork_size(Fork::Data, 512), 336);
        assert_eq!(d.fork_bytes(&sample_inode(), Fork::Data).len(), 336);
        assert_eq!(d.fork_size(Fork::Attr, 512), 0);
    }

    #[test]
    fn wrong_ino_and_mode() {
        let g = sample_geometry();
        let mut buf = sample_inode();
        buf[2..4].copy_from_slice(&0o170644u16.to_be_bytes());
        crc::update(&mut buf, CRC_OFFSET).unwrap();
        let c = Dinode::check(&buf, Ino(132), &g).unwrap();
        let fields: Vec<&str> = c.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["v3.inumber", "core.mode"], "{:?}", c.problems);
    }

    #[test]
    fn fork_layout_with_attr_fork() {
        let mut d = Dinode::from_bytes(&sample_inode()).unwrap();
        d.forkoff = 15;
        assert_eq!(d.fork_size(Fork::Data, 512), 120);
        assert_eq!(d.fork_offset(Fork::Attr), 176 + 120);
        assert_eq!(d.fork_size(Fork::Attr, 512), 216);
        d.forkoff = 255; // corrupt: past the inode
        assert_eq!(d.fork_size(Fork::Attr, 512), 0);
        assert!(d.fork_bytes(&sample_inode(), Fork::Attr).is_empty());
    }

    #[test]
    fn timestamps() {
        let t = Timestamp::decode(1u64 << 31 << 30, true);
        assert_eq!(Timestamp::Big(1 << 61), t);
        // Bigtime zero is the smallest legacy time.
        assert_eq!(Timestamp::decode(0, true).to_unix(), (-(1i64 << 31), 0));
        let legacy = (u64::from(0xffff_fffeu32) << 32) | 5;
        assert_eq!(Timestamp::decode(legacy, false).to_unix(), (-2, 5));
    }

    #[test]
    fn bmdr_root_layout() {
        // 336-byte fork: maxrecs 20; keys at 4, ptrs at 4 + 160.
        let mut fork = vec![0u8; 336];
        fork[0..2].copy_from_slice(&1u16.to_be_bytes());
        fork[2..4].copy_from_slice(&2u16.to_be_bytes());
        fork[4..12].copy_from_slice(&0u64.to_be_bytes());
        fork[12..20].copy_from_slice(&77u64.to_be_bytes());
        fork[164..172].copy_from_slice(&1000u64.to_be_bytes());
        fork[172..180].copy_from_slice(&2000u64.to_be_bytes());
        let r = BmdrRoot::parse(&fork).unwrap();
        assert_eq!(r.keys, vec![0, 77]);
        assert_eq!(r.ptrs, vec![1000, 2000]);
        fork[2..4].copy_from_slice(&21u16.to_be_bytes());
        assert!(BmdrRoot::parse(&fork).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..700), ino in any::<u64>()) {
            let g = sample_geometry();
            if let Ok(c) = Dinode::check(&buf, Ino(ino), &g) {
                let d = c.value;
                for fork in [Fork::Data, Fork::Attr] {
                    let _ = d.fork_bytes(&buf, fork);
                    let _ = d.fork_max_extents(fork, 512);
                }
                let _ = (d.atime().to_unix(), d.crtime().to_unix(), d.projid());
            }
            let _ = BmdrRoot::parse(&buf);
        }

        #[test]
        fn mutated_sample_never_panics(idx in 0usize..512, val in any::<u8>()) {
            let g = sample_geometry();
            let mut buf = sample_inode();
            buf[idx] = val;
            let _ = Dinode::check(&buf, Ino(131), &g).unwrap();
        }
    }
}
