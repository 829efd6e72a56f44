//! The AG inode header (`struct xfs_agi`), sector 2 of every AG.
//!
//! Verification follows libxfs `xfs_agi_verify` (magic, version, uuid,
//! seqno/length, inobt and finobt levels, unlinked buckets hold valid AG
//! inode numbers) plus the rules online scrub's `xchk_agi` adds (roots
//! inside the AG, counts consistent, the inode btree block counters bounded,
//! each unlinked bucket only heads inodes that hash to it).

use super::problem::{Checked, Checker};
use super::{Problem, ShortBuffer, Uuid, crc, magic_str, view};
use crate::geometry::Geometry;
use crate::types::{AgBlock, AgIno, AgNumber, null};
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XAGI`.
pub const MAGIC: u32 = 0x5841_4749;
/// `XFS_AGI_VERSION`.
pub const VERSION: u32 = 1;
/// Offset of `agi_crc`.
pub const CRC_OFFSET: usize = 312;
/// Size of the on-disk structure.
pub const SIZE: usize = 344;
/// Number of unlinked-inode hash buckets (`XFS_AGI_UNLINKED_BUCKETS`).
pub const UNLINKED_BUCKETS: usize = 64;

/// Raw view of `struct xfs_agi`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawAgi {
    pub magicnum: be::U32,
    pub versionnum: be::U32,
    pub seqno: be::U32,
    pub length: be::U32,
    pub count: be::U32,
    pub root: be::U32,
    pub level: be::U32,
    pub freecount: be::U32,
    pub newino: be::U32,
    pub dirino: be::U32,
    pub unlinked: [be::U32; UNLINKED_BUCKETS],
    pub uuid: Uuid,
    pub crc: le::U32,
    pub pad32: be::U32,
    pub lsn: be::U64,
    pub free_root: be::U32,
    pub free_level: be::U32,
    pub iblocks: be::U32,
    pub fblocks: be::U32,
}

const _: () = assert!(size_of::<RawAgi>() == SIZE);
const _: () = assert!(core::mem::offset_of!(RawAgi, crc) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawAgi, uuid) == 296);
const _: () = assert!(core::mem::offset_of!(RawAgi, free_root) == 328);

/// A decoded AGI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agi {
    /// `agi_magicnum`.
    pub magicnum: u32,
    /// `agi_versionnum`.
    pub versionnum: u32,
    /// `agi_seqno`: the AG number.
    pub seqno: u32,
    /// `agi_length`: blocks in this AG.
    pub length: u32,
    /// Allocated inodes.
    pub count: u32,
    /// Root of the inode btree.
    pub root: u32,
    /// Height of the inode btree.
    pub level: u32,
    /// Free inodes among the allocated ones.
    pub freecount: u32,
    /// Most recently allocated inode chunk.
    pub newino: u32,
    /// Obsolete, `NULLAGINO`.
    pub dirino: u32,
    /// Heads of the unlinked-inode lists, by `agino % 64`.
    pub unlinked: [u32; UNLINKED_BUCKETS],
    /// Metadata UUID.
    pub uuid: Uuid,
    /// Stored CRC.
    pub crc: u32,
    /// Padding.
    pub pad32: u32,
    /// LSN of the last write.
    pub lsn: u64,
    /// Root of the free inode btree.
    pub free_root: u32,
    /// Height of the free inode btree.
    pub free_level: u32,
    /// Blocks in the inode btree (INOBTCNT).
    pub iblocks: u32,
    /// Blocks in the free inode btree (INOBTCNT).
    pub fblocks: u32,
}

impl Agi {
    /// Decodes an AGI; fails only on a short buffer.
    pub fn from_bytes(buf: &[u8]) -> Result<Agi, ShortBuffer> {
        let r: &RawAgi = view(buf, "AGI")?;
        let mut unlinked = [0u32; UNLINKED_BUCKETS];
        for (d, s) in unlinked.iter_mut().zip(r.unlinked.iter()) {
            *d = s.get();
        }
        Ok(Agi {
            magicnum: r.magicnum.get(),
            versionnum: r.versionnum.get(),
            seqno: r.seqno.get(),
            length: r.length.get(),
            count: r.count.get(),
            root: r.root.get(),
            level: r.level.get(),
            freecount: r.freecount.get(),
            newino: r.newino.get(),
            dirino: r.dirino.get(),
            unlinked,
            uuid: r.uuid,
            crc: r.crc.get(),
            pad32: r.pad32.get(),
            lsn: r.lsn.get(),
            free_root: r.free_root.get(),
            free_level: r.free_level.get(),
            iblocks: r.iblocks.get(),
            fblocks: r.fblocks.get(),
        })
    }

    /// Decodes and verifies the AGI of AG `agno` from its sector.
    pub fn check(
        sector: &[u8],
        agno: AgNumber,
        geo: &Geometry,
    ) -> Result<Checked<Agi>, ShortBuffer> {
        let agi = Agi::from_bytes(sector)?;
        let mut problems: Vec<Problem> =
            crc::problem(sector, CRC_OFFSET, format!("AGI {}", agno.0))
                .into_iter()
                .collect();
        problems.extend(agi.verify(agno, geo));
        Ok(Checked {
            value: agi,
            problems,
        })
    }

    /// Verifies every field against the geometry (not the CRC).
    pub fn verify(&self, agno: AgNumber, geo: &Geometry) -> Vec<Problem> {
        let mut c = Checker::new(format!("AGI {}", agno.0));
        let f = geo.features;
        c.expect(
            self.magicnum == MAGIC,
            "magicnum",
            magic_str(MAGIC),
            magic_str(self.magicnum),
        );
        c.equal("versionnum", VERSION, self.versionnum);
        c.equal("seqno", agno.0, self.seqno);
        let len = geo.ag_len(agno).unwrap_or(0);
        c.equal("length", len, self.length);
        c.expect(self.uuid == geo.meta_uuid, "uuid", geo.meta_uuid, self.uuid);
        let maxl = geo.maxlevels.inobt;
        c.expect(
            (1..=maxl).contains(&self.level),
            "level",
            format_args!("1..={maxl}"),
            self.level,
        );
        let root_rule = format!(
            "an AG block in {}..{len}",
            geo.ag_header_last_block.saturating_add(1)
        );
        c.expect(
            geo.verify_agbno(agno, AgBlock(self.root)),
            "root",
            &root_rule,
            self.root,
        );
        if f.has_finobt() {
            c.expect(
                (1..=maxl).contains(&self.free_level),
                "free_level",
                format_args!("1..={maxl}"),
                self.free_level,
            );
            c.expect(
                geo.verify_agbno(agno, AgBlock(self.free_root)),
                "free_root",
                &root_rule,
                self.free_root,
            );
        }
        c.expect(
            self.freecount <= self.count,
            "freecount",
            format_args!("<= count {}", self.count),
            self.freecount,
        );
        let (first, last) = geo.agino_range(agno).unwrap_or((AgIno(0), AgIno(0)));
        let slots = u64::from(last.0.saturating_sub(first.0)).saturating_add(1);
        c.expect(
            u64::from(self.count) <= slots,
            "count",
            format_args!("<= {slots} (inode slots in the AG)"),
            self.count,
        );
        c.expect(
            self.newino == null::AGINO || geo.verify_agino(agno, AgIno(self.newino)),
            "newino",
            format_args!("null or an AG inode in {}..={}", first.0, last.0),
            self.newino,
        );
        for (i, &head) in self.unlinked.iter().enumerate() {
            if head == null::AGINO {
                continue;
            }
            let field = format!("unlinked[{i}]");
            c.expect(
                geo.verify_agino(agno, AgIno(head)),
                &field,
                format_args!("null or an AG inode in {}..={}", first.0, last.0),
                head,
            );
            let bucket = usize::try_from(head % 64).unwrap_or(usize::MAX);
            c.expect(
                bucket == i,
                &field,
                format_args!("an inode with agino % 64 == {i}"),
                head,
            );
        }
        if f.has_inobtcounts() {
            c.expect(
                (1..=len).contains(&self.iblocks),
                "ino_blocks",
                format_args!("1..={len}"),
                self.iblocks,
            );
            if f.has_finobt() {
                c.expect(
                    (1..=len).contains(&self.fblocks),
                    "fino_blocks",
                    format_args!("1..={len}"),
                    self.fblocks,
                );
            }
        }
        c.finish()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use crate::geometry::tests_support::sample_geometry;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    fn sample_sector(agno: u32) -> Vec<u8> {
        let geo = sample_geometry();
        let mut r = RawAgi::new_zeroed();
        r.magicnum.set(MAGIC);
        r.versionnum.set(VERSION);
        r.seqno.set(agno);
        r.length.set(4096);
        r.count.set(64);
        r.root.set(3);
        r.level.set(1);
        r.freecount.set(61);
        r.newino.set(128);
        r.dirino.set(null::AGINO);
        for u in r.unlinked.iter_mut() {
            u.set(null::AGINO);
        }
        r.uuid = geo.meta_uuid;
        r.free_root.set(4);
        r.free_level.set(1);
        r.iblocks.set(1);
        r.fblocks.set(1);
        let mut s = vec![0u8; 512];
        s[..SIZE].copy_from_slice(r.as_bytes());
        crc::update(&mut s, CRC_OFFSET).unwrap();
        s
    }

    #[test]
    fn sample_is_clean() {
        let g = sample_geometry();
        let c = Agi::check(&sample_sector(0), AgNumber(0), &g).unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
    }

    #[test]
    fn bad_unlinked_bucket() {
        let g = sample_geometry();
        let mut a = Agi::from_bytes(&sample_sector(0)).unwrap();
        a.unlinked[5] = 133; // 133 % 64 == 5: fine
        assert!(a.verify(AgNumber(0), &g).is_empty());
        a.unlinked[6] = 133; // wrong bucket
        a.unlinked[7] = 3; // not an inode of this AG
        let p = a.verify(AgNumber(0), &g);
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["unlinked[6]", "unlinked[7]", "unlinked[7]"]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600), agno in 0u32..6) {
            let g = sample_geometry();
            let _ = Agi::check(&buf, AgNumber(agno), &g);
        }

        #[test]
        fn arbitrary_fields_never_panic(words in proptest::collection::vec(any::<u32>(), 86)) {
            let g = sample_geometry();
            let buf: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let _ = Agi::check(&buf, AgNumber(3), &g).unwrap();
        }
    }
}
