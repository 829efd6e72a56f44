//! The AG free-space header (`struct xfs_agf`), sector 1 of every AG.
//!
//! Verification follows libxfs `xfs_agf_verify` (magic, version, uuid,
//! seqno and length via `xfs_validate_ag_length`, AGFL indexes, free block
//! counts, btree levels, btree block counters), `xfs_agfl_needs_reset` (the
//! flfirst/fllast/flcount ring is consistent) and online scrub's
//! `xchk_agf` (btree roots point inside the AG past the header sectors).

use super::problem::{Checked, Checker};
use super::{Problem, ShortBuffer, Uuid, crc, magic_str, view};
use crate::geometry::Geometry;
use crate::types::{AgBlock, AgNumber};
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XAGF`.
pub const MAGIC: u32 = 0x5841_4746;
/// `XFS_AGF_VERSION`.
pub const VERSION: u32 = 1;
/// Offset of `agf_crc`.
pub const CRC_OFFSET: usize = 216;
/// Size of the on-disk structure.
pub const SIZE: usize = 224;

/// Raw view of `struct xfs_agf`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawAgf {
    pub magicnum: be::U32,
    pub versionnum: be::U32,
    pub seqno: be::U32,
    pub length: be::U32,
    pub roots: [be::U32; 3],
    pub levels: [be::U32; 3],
    pub flfirst: be::U32,
    pub fllast: be::U32,
    pub flcount: be::U32,
    pub freeblks: be::U32,
    pub longest: be::U32,
    pub btreeblks: be::U32,
    pub uuid: Uuid,
    pub rmap_blocks: be::U32,
    pub refcount_blocks: be::U32,
    pub refcount_root: be::U32,
    pub refcount_level: be::U32,
    pub spare64: [be::U64; 14],
    pub lsn: be::U64,
    pub crc: le::U32,
    pub spare2: be::U32,
}

const _: () = assert!(size_of::<RawAgf>() == SIZE);
const _: () = assert!(core::mem::offset_of!(RawAgf, crc) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawAgf, uuid) == 64);
const _: () = assert!(core::mem::offset_of!(RawAgf, lsn) == 208);

/// A decoded AGF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agf {
    /// `agf_magicnum`.
    pub magicnum: u32,
    /// `agf_versionnum`.
    pub versionnum: u32,
    /// `agf_seqno`: the AG number.
    pub seqno: u32,
    /// `agf_length`: blocks in this AG.
    pub length: u32,
    /// Root of the by-block free-space btree.
    pub bno_root: u32,
    /// Root of the by-size free-space btree.
    pub cnt_root: u32,
    /// Root of the reverse-mapping btree.
    pub rmap_root: u32,
    /// Height of the bnobt.
    pub bno_level: u32,
    /// Height of the cntbt.
    pub cnt_level: u32,
    /// Height of the rmapbt.
    pub rmap_level: u32,
    /// First active AGFL slot.
    pub flfirst: u32,
    /// Last active AGFL slot.
    pub fllast: u32,
    /// Number of active AGFL slots.
    pub flcount: u32,
    /// Free blocks in the AG (not counting the AGFL).
    pub freeblks: u32,
    /// Longest free extent.
    pub longest: u32,
    /// Blocks held by the free-space and rmap btrees beyond their roots.
    pub btreeblks: u32,
    /// Metadata UUID.
    pub uuid: Uuid,
    /// Blocks in the rmapbt.
    pub rmap_blocks: u32,
    /// Blocks in the refcount btree.
    pub refcount_blocks: u32,
    /// Root of the refcount btree.
    pub refcount_root: u32,
    /// Height of the refcount btree.
    pub refcount_level: u32,
    /// Padding that must be zero.
    pub spare64: [u64; 14],
    /// LSN of the last write.
    pub lsn: u64,
    /// Stored CRC.
    pub crc: u32,
    /// Padding.
    pub spare2: u32,
}

impl Agf {
    /// Decodes an AGF; fails only on a short buffer.
    pub fn from_bytes(buf: &[u8]) -> Result<Agf, ShortBuffer> {
        let r: &RawAgf = view(buf, "AGF")?;
        let mut spare64 = [0u64; 14];
        for (d, s) in spare64.iter_mut().zip(r.spare64.iter()) {
            *d = s.get();
        }
        Ok(Agf {
            magicnum: r.magicnum.get(),
            versionnum: r.versionnum.get(),
            seqno: r.seqno.get(),
            length: r.length.get(),
            bno_root: r.roots[0].get(),
            cnt_root: r.roots[1].get(),
            rmap_root: r.roots[2].get(),
            bno_level: r.levels[0].get(),
            cnt_level: r.levels[1].get(),
            rmap_level: r.levels[2].get(),
            flfirst: r.flfirst.get(),
            fllast: r.fllast.get(),
            flcount: r.flcount.get(),
            freeblks: r.freeblks.get(),
            longest: r.longest.get(),
            btreeblks: r.btreeblks.get(),
            uuid: r.uuid,
            rmap_blocks: r.rmap_blocks.get(),
            refcount_blocks: r.refcount_blocks.get(),
            refcount_root: r.refcount_root.get(),
            refcount_level: r.refcount_level.get(),
            spare64,
            lsn: r.lsn.get(),
            crc: r.crc.get(),
            spare2: r.spare2.get(),
        })
    }

    /// Decodes and verifies the AGF of AG `agno` from its sector.
    pub fn check(
        sector: &[u8],
        agno: AgNumber,
        geo: &Geometry,
    ) -> Result<Checked<Agf>, ShortBuffer> {
        let agf = Agf::from_bytes(sector)?;
        let mut problems: Vec<Problem> =
            crc::problem(sector, CRC_OFFSET, format!("AGF {}", agno.0))
                .into_iter()
                .collect();
        problems.extend(agf.verify(agno, geo));
        Ok(Checked {
            value: agf,
            problems,
        })
    }

    /// The number of active AGFL slots implied by flfirst and fllast for a
    /// non-empty list (`xfs_agfl_needs_reset`'s arithmetic, with wrap).
    pub fn ring_len(&self, agfl_size: u32) -> Option<u32> {
        if self.flcount == 0 {
            return Some(0);
        }
        if self.fllast >= self.flfirst {
            self.fllast.checked_sub(self.flfirst)?.checked_add(1)
        } else {
            agfl_size
                .checked_sub(self.flfirst)?
                .checked_add(self.fllast)?
                .checked_add(1)
        }
    }

    /// Verifies every field against the geometry (not the CRC).
    pub fn verify(&self, agno: AgNumber, geo: &Geometry) -> Vec<Problem> {
        let mut c = Checker::new(format!("AGF {}", agno.0));
        let f = geo.features;
        c.expect(
            self.magicnum == MAGIC,
            "magicnum",
            magic_str(MAGIC),
            magic_str(self.magicnum),
        );
        c.equal("versionnum", VERSION, self.versionnum);
        c.equal("seqno", agno.0, self.seqno);
        let ag_len = geo.ag_len(agno).unwrap_or(0);
        c.equal("length", ag_len, self.length);
        c.expect(self.uuid == geo.meta_uuid, "uuid", geo.meta_uuid, self.uuid);

        let size = geo.agfl_size;
        c.expect(
            self.flfirst < size,
            "flfirst",
            format_args!("< {size} (AGFL slots)"),
            self.flfirst,
        );
        c.expect(
            self.fllast < size,
            "fllast",
            format_args!("< {size} (AGFL slots)"),
            self.fllast,
        );
        c.expect(
            self.flcount <= size,
            "flcount",
            format_args!("<= {size} (AGFL slots)"),
            self.flcount,
        );
        if self.flfirst < size && self.fllast < size && self.flcount <= size {
            let active = self.ring_len(size);
            c.expect(
                active == Some(self.flcount),
                "flcount",
                format_args!(
                    "{} (slots flfirst {}..=fllast {})",
                    active.unwrap_or(0),
                    self.flfirst,
                    self.fllast
                ),
                self.flcount,
            );
        }

        // Bound checks use the AG's real length so that a corrupt length
        // field does not hide them.
        let len = ag_len;
        c.expect(
            self.freeblks <= len,
            "freeblks",
            format_args!("<= {len}"),
            self.freeblks,
        );
        c.expect(
            self.longest <= self.freeblks,
            "longest",
            format_args!("<= freeblks {}", self.freeblks),
            self.longest,
        );
        c.expect(
            self.btreeblks <= len,
            "btreeblks",
            format_args!("<= {len}"),
            self.btreeblks,
        );
        // Free blocks, AGFL blocks and non-root btree blocks are disjoint
        // parts of the AG (the per-AG form of the summary check in
        // xfs_initialize_perag_data).
        let used = u64::from(self.freeblks)
            .saturating_add(u64::from(self.flcount))
            .saturating_add(u64::from(self.btreeblks));
        c.expect(
            used <= u64::from(len),
            "btreeblks",
            format_args!(
                "freeblks {} + flcount {} + btreeblks <= {len}",
                self.freeblks, self.flcount
            ),
            self.btreeblks,
        );

        let max = geo.maxlevels;
        c.expect(
            (1..=max.alloc).contains(&self.bno_level),
            "bnolevel",
            format_args!("1..={}", max.alloc),
            self.bno_level,
        );
        c.expect(
            (1..=max.alloc).contains(&self.cnt_level),
            "cntlevel",
            format_args!("1..={}", max.alloc),
            self.cnt_level,
        );
        let root_ok = |b: u32| geo.verify_agbno(agno, AgBlock(b));
        let root_rule = format_args!(
            "an AG block in {}..{}",
            geo.ag_header_last_block.saturating_add(1),
            len
        )
        .to_string();
        c.expect(root_ok(self.bno_root), "bnoroot", &root_rule, self.bno_root);
        c.expect(root_ok(self.cnt_root), "cntroot", &root_rule, self.cnt_root);
        if f.has_rmapbt() {
            c.expect(
                (1..=max.rmap).contains(&self.rmap_level),
                "rmaplevel",
                format_args!("1..={}", max.rmap),
                self.rmap_level,
            );
            c.expect(
                root_ok(self.rmap_root),
                "rmaproot",
                &root_rule,
                self.rmap_root,
            );
            c.expect(
                self.rmap_blocks <= len,
                "rmapblocks",
                format_args!("<= {len}"),
                self.rmap_blocks,
            );
        }
        if f.has_reflink() {
            c.expect(
                (1..=max.refcount).contains(&self.refcount_level),
                "refcntlevel",
                format_args!("1..={}", max.refcount),
                self.refcount_level,
            );
            c.expect(
                root_ok(self.refcount_root),
                "refcntroot",
                &root_rule,
                self.refcount_root,
            );
            c.expect(
                self.refcount_blocks <= len,
                "refcntblocks",
                format_args!("<= {len}"),
                self.refcount_blocks,
            );
        }
        c.finish()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
pub(crate) mod tests {
    use super::*;
    use crate::geometry::tests_support::sample_geometry;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    /// A valid AGF for AG `agno` of the sample geometry.
    pub(crate) fn sample_sector(agno: u32) -> Vec<u8> {
        let geo = sample_geometry();
        let mut r = RawAgf::new_zeroed();
        r.magicnum.set(MAGIC);
        r.versionnum.set(VERSION);
        r.seqno.set(agno);
        r.length.set(4096);
        r.roots[0].set(1);
        r.roots[1].set(2);
        r.levels[0].set(1);
        r.levels[1].set(1);
        r.flfirst.set(0);
        r.fllast.set(3);
        r.flcount.set(4);
        r.freeblks.set(4000);
        r.longest.set(3900);
        r.uuid = geo.meta_uuid;
        r.refcount_root.set(5);
        r.refcount_level.set(1);
        r.refcount_blocks.set(1);
        let mut s = vec![0u8; 512];
        s[..SIZE].copy_from_slice(r.as_bytes());
        crc::update(&mut s, CRC_OFFSET).unwrap();
        s
    }

    #[test]
    fn sample_is_clean() {
        let g = sample_geometry();
        let c = Agf::check(&sample_sector(1), AgNumber(1), &g).unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
    }

    #[test]
    fn reports_all_problems() {
        let g = sample_geometry();
        let mut s = sample_sector(2);
        s[52..56].copy_from_slice(&99999u32.to_be_bytes()); // freeblks
        s[28..32].copy_from_slice(&0u32.to_be_bytes()); // bno level
        s[16..20].copy_from_slice(&5000u32.to_be_bytes()); // bno root
        let c = Agf::check(&s, AgNumber(2), &g).unwrap();
        let msgs: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.contains(&"AGF 2 field freeblks: expected <= 4096, got 99999".to_owned()),
            "{msgs:?}"
        );
        let fields: Vec<&str> = c.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["crc", "freeblks", "btreeblks", "bnolevel", "bnoroot"],
            "{msgs:?}"
        );
    }

    #[test]
    fn ring_wraps() {
        let mut a = Agf::from_bytes(&sample_sector(0)).unwrap();
        a.flfirst = 117;
        a.fllast = 1;
        a.flcount = 4;
        assert_eq!(a.ring_len(119), Some(4));
        let g = sample_geometry();
        assert!(a.verify(AgNumber(0), &g).is_empty());
        a.flcount = 5;
        let p = a.verify(AgNumber(0), &g);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "flcount");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600), agno in 0u32..6) {
            let g = sample_geometry();
            if let Ok(c) = Agf::check(&buf, AgNumber(agno), &g) {
                let _ = c.value.ring_len(g.agfl_size);
            }
        }

        #[test]
        fn arbitrary_fields_never_panic(words in proptest::collection::vec(any::<u32>(), 56)) {
            let g = sample_geometry();
            let buf: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let c = Agf::check(&buf, AgNumber(1), &g).unwrap();
            prop_assert!(!c.is_ok());
        }
    }
}
