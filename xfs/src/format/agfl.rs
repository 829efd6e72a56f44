//! The AG free list (`struct xfs_agfl`), sector 3 of every AG: a ring of
//! AG block numbers reserved for btree splits.
//!
//! The AGF says which slots are live: `flcount` slots starting at
//! `flfirst`, ending at `fllast`, wrapping from the last slot to slot 0.
//! Verification follows libxfs `xfs_agfl_verify` (magic, uuid, seqno, every
//! slot null or inside the AG) and adds the scrub rule (`xchk_agfl`) that a
//! live slot names a real block past the AG headers.

use super::agf::Agf;
use super::problem::{Checked, Checker};
use super::{Problem, ShortBuffer, Uuid, crc, magic_str, view};
use crate::geometry::Geometry;
use crate::types::{AgBlock, AgNumber, null};
use zerocopy::byteorder::{big_endian as be, little_endian as le};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `XAFL`.
pub const MAGIC: u32 = 0x5841_464c;
/// Offset of `agfl_crc`.
pub const CRC_OFFSET: usize = 32;
/// Size of the header; the slot array follows it.
pub const HEADER_SIZE: usize = 36;

/// Raw view of the v5 AGFL header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawAgflHeader {
    pub magicnum: be::U32,
    pub seqno: be::U32,
    pub uuid: Uuid,
    pub lsn: be::U64,
    pub crc: le::U32,
}

const _: () = assert!(size_of::<RawAgflHeader>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(RawAgflHeader, crc) == CRC_OFFSET);

/// A decoded AGFL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agfl {
    /// `agfl_magicnum`.
    pub magicnum: u32,
    /// `agfl_seqno`: the AG number.
    pub seqno: u32,
    /// Metadata UUID.
    pub uuid: Uuid,
    /// LSN of the last write.
    pub lsn: u64,
    /// Stored CRC.
    pub crc: u32,
    /// Every slot of the ring (live or not), `NULLAGBLOCK` when unused.
    pub slots: Vec<u32>,
}

impl Agfl {
    /// Decodes an AGFL sector: the header and `(len - 36) / 4` slots.
    pub fn from_bytes(sector: &[u8]) -> Result<Agfl, ShortBuffer> {
        let h: &RawAgflHeader = view(sector, "AGFL")?;
        let slots = sector
            .get(HEADER_SIZE..)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Agfl {
            magicnum: h.magicnum.get(),
            seqno: h.seqno.get(),
            uuid: h.uuid,
            lsn: h.lsn.get(),
            crc: h.crc.get(),
            slots,
        })
    }

    /// Decodes and verifies the AGFL of AG `agno` from its sector. `agf` is
    /// the AG's AGF, if it could be read; it says which slots are live.
    pub fn check(
        sector: &[u8],
        agno: AgNumber,
        geo: &Geometry,
        agf: Option<&Agf>,
    ) -> Result<Checked<Agfl>, ShortBuffer> {
        let agfl = Agfl::from_bytes(sector)?;
        let mut problems: Vec<Problem> =
            crc::problem(sector, CRC_OFFSET, format!("AGFL {}", agno.0))
                .into_iter()
                .collect();
        problems.extend(agfl.verify(agno, geo, agf));
        Ok(Checked {
            value: agfl,
            problems,
        })
    }

    /// The live slots as `(slot index, agbno)`, in ring order from
    /// `flfirst`. At most `flcount` entries (capped by the ring size), so a
    /// corrupt count cannot make this loop forever.
    pub fn active(&self, agf: &Agf) -> Vec<(usize, u32)> {
        let size = self.slots.len();
        let mut out = Vec::new();
        let Ok(first) = usize::try_from(agf.flfirst) else {
            return out;
        };
        if size == 0 || first >= size {
            return out;
        }
        let count = usize::try_from(agf.flcount).unwrap_or(usize::MAX).min(size);
        let mut i = first;
        for _ in 0..count {
            if let Some(&b) = self.slots.get(i) {
                out.push((i, b));
            }
            i = if i.checked_add(1) == Some(size) {
                0
            } else {
                i.saturating_add(1)
            };
        }
        out
    }

    /// Verifies the header and the slots.
    pub fn verify(&self, agno: AgNumber, geo: &Geometry, agf: Option<&Agf>) -> Vec<Problem> {
        let mut c = Checker::new(format!("AGFL {}", agno.0));
        c.expect(
            self.magicnum == MAGIC,
            "magicnum",
            magic_str(MAGIC),
            magic_str(self.magicnum),
        );
        c.equal("seqno", agno.0, self.seqno);
        c.expect(self.uuid == geo.meta_uuid, "uuid", geo.meta_uuid, self.uuid);
        let agblocks = geo.ag_blocks;
        for (i, &b) in self.slots.iter().enumerate() {
            c.expect(
                b == null::AGBLOCK || b < agblocks,
                &format!("bno[{i}]"),
                format_args!("null or < agblocks {agblocks}"),
                b,
            );
        }
        if let Some(agf) = agf {
            let len = geo.ag_len(agno).unwrap_or(0);
            let mut seen = std::collections::HashSet::new();
            for (i, b) in self.active(agf) {
                let field = format!("bno[{i}]");
                c.expect(
                    geo.verify_agbno(agno, AgBlock(b)),
                    &field,
                    format_args!(
                        "a live slot naming an AG block in {}..{len}",
                        geo.ag_header_last_block.saturating_add(1)
                    ),
                    b,
                );
                c.expect(
                    seen.insert(b),
                    &field,
                    "a block not already on the free list",
                    b,
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

    fn sample_sector(agno: u32) -> Vec<u8> {
        let g = sample_geometry();
        let mut s = vec![0xffu8; 512];
        s[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        s[4..8].copy_from_slice(&agno.to_be_bytes());
        s[8..24].copy_from_slice(&g.meta_uuid.0);
        s[24..32].fill(0);
        for (i, b) in [6u32, 7, 8, 9].iter().enumerate() {
            let o = HEADER_SIZE + i * 4;
            s[o..o + 4].copy_from_slice(&b.to_be_bytes());
        }
        crc::update(&mut s, CRC_OFFSET).unwrap();
        s
    }

    fn agf(first: u32, last: u32, count: u32) -> Agf {
        let mut a = Agf::from_bytes(&super::super::agf::tests::sample_sector(0)).unwrap();
        a.flfirst = first;
        a.fllast = last;
        a.flcount = count;
        a
    }

    #[test]
    fn sample_is_clean() {
        let g = sample_geometry();
        let c = Agfl::check(&sample_sector(0), AgNumber(0), &g, Some(&agf(0, 3, 4))).unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
        assert_eq!(c.value.slots.len(), 119);
        assert_eq!(
            c.value.active(&agf(0, 3, 4)),
            vec![(0, 6), (1, 7), (2, 8), (3, 9)]
        );
    }

    #[test]
    fn ring_wraps_and_is_bounded() {
        let mut a = Agfl::from_bytes(&sample_sector(0)).unwrap();
        a.slots[118] = 20;
        let act = a.active(&agf(118, 1, 3));
        assert_eq!(act, vec![(118, 20), (0, 6), (1, 7)]);
        // A hostile count never yields more than the ring holds.
        assert_eq!(a.active(&agf(5, 4, u32::MAX)).len(), 119);
        assert!(a.active(&agf(500, 4, 3)).is_empty());
    }

    #[test]
    fn live_null_slot_is_a_problem() {
        let g = sample_geometry();
        let a = Agfl::from_bytes(&sample_sector(0)).unwrap();
        let p = a.verify(AgNumber(0), &g, Some(&agf(2, 4, 3)));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "bno[4]");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600),
                                       first in any::<u32>(), last in any::<u32>(), count in any::<u32>()) {
            let g = sample_geometry();
            let a = agf(first, last, count);
            if let Ok(c) = Agfl::check(&buf, AgNumber(1), &g, Some(&a)) {
                prop_assert!(c.value.active(&a).len() <= c.value.slots.len());
            }
        }
    }
}
