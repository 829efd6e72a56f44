//! The packed 128-bit file extent record (`struct xfs_bmbt_rec`).
//!
//! Two big-endian 64-bit words `l0`, `l1`:
//! - `l0` bit 63: the extent is unwritten (preallocated, reads as zeros),
//! - `l0` bits 62..9: file block offset (54 bits),
//! - `l0` bits 8..0 and `l1` bits 63..21: start block (52 bits, an fsbno),
//! - `l1` bits 20..0: length in blocks (21 bits).

/// Size of a packed record.
pub const SIZE: usize = 16;
/// Largest file block offset (`BMBT_STARTOFF_MASK`).
pub const STARTOFF_MASK: u64 = (1 << 54) - 1;
/// Largest start block (`BMBT_STARTBLOCK_MASK`).
pub const STARTBLOCK_MASK: u64 = (1 << 52) - 1;
/// Largest extent length (`XFS_MAX_BMBT_EXTLEN`).
pub const BLOCKCOUNT_MASK: u32 = (1 << 21) - 1;

/// An unpacked extent record (`struct xfs_bmbt_irec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BmbtIrec {
    /// First file block mapped.
    pub startoff: u64,
    /// First filesystem block (an fsbno).
    pub startblock: u64,
    /// Number of blocks.
    pub blockcount: u32,
    /// The extent is allocated but unwritten.
    pub unwritten: bool,
}

impl BmbtIrec {
    /// Unpacks a record. Every bit pattern decodes; range checks belong to
    /// the caller, which knows the geometry.
    pub fn unpack(rec: &[u8; SIZE]) -> BmbtIrec {
        let mut w0 = [0u8; 8];
        let mut w1 = [0u8; 8];
        w0.copy_from_slice(&rec[..8]);
        w1.copy_from_slice(&rec[8..]);
        let l0 = u64::from_be_bytes(w0);
        let l1 = u64::from_be_bytes(w1);
        let blockcount = u32::try_from(l1 & u64::from(BLOCKCOUNT_MASK)).unwrap_or(0);
        BmbtIrec {
            startoff: (l0 >> 9) & STARTOFF_MASK,
            startblock: ((l0 & 0x1ff) << 43) | (l1 >> 21),
            blockcount,
            unwritten: l0 >> 63 != 0,
        }
    }

    /// Unpacks the record at the front of `buf`, if it is long enough.
    pub fn unpack_slice(buf: &[u8]) -> Option<BmbtIrec> {
        let rec: &[u8; SIZE] = buf.get(..SIZE)?.try_into().ok()?;
        Some(BmbtIrec::unpack(rec))
    }

    /// Packs the record; `None` if a field does not fit its bit width.
    pub fn pack(&self) -> Option<[u8; SIZE]> {
        if self.startoff > STARTOFF_MASK
            || self.startblock > STARTBLOCK_MASK
            || self.blockcount > BLOCKCOUNT_MASK
        {
            return None;
        }
        let l0 = (u64::from(self.unwritten) << 63) | (self.startoff << 9) | (self.startblock >> 43);
        let l1 = ((self.startblock & ((1 << 43) - 1)) << 21) | u64::from(self.blockcount);
        let mut out = [0u8; SIZE];
        out[..8].copy_from_slice(&l0.to_be_bytes());
        out[8..].copy_from_slice(&l1.to_be_bytes());
        Some(out)
    }

    /// One past the last file block mapped, if it does not overflow.
    pub fn end_off(&self) -> Option<u64> {
        self.startoff.checked_add(u64::from(self.blockcount))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_layout() {
        let r = BmbtIrec {
            startoff: 5,
            startblock: 0x1_2345,
            blockcount: 7,
            unwritten: true,
        };
        let p = r.pack().unwrap();
        let l0 = u64::from_be_bytes(p[..8].try_into().unwrap());
        let l1 = u64::from_be_bytes(p[8..].try_into().unwrap());
        assert_eq!(l0, (1 << 63) | (5 << 9));
        assert_eq!(l1, (0x1_2345 << 21) | 7);
        assert_eq!(BmbtIrec::unpack(&p), r);
    }

    #[test]
    fn startblock_spans_both_words() {
        let r = BmbtIrec {
            startoff: STARTOFF_MASK,
            startblock: STARTBLOCK_MASK,
            blockcount: BLOCKCOUNT_MASK,
            unwritten: false,
        };
        assert_eq!(BmbtIrec::unpack(&r.pack().unwrap()), r);
        assert_eq!(r.pack().unwrap(), {
            let mut a = [0xffu8; 16];
            a[0] = 0x7f;
            a
        });
        let too_big = BmbtIrec {
            blockcount: BLOCKCOUNT_MASK + 1,
            ..r
        };
        assert_eq!(too_big.pack(), None);
    }

    proptest! {
        #[test]
        fn unpack_pack_roundtrips(bytes in any::<[u8; 16]>()) {
            let r = BmbtIrec::unpack(&bytes);
            prop_assert_eq!(r.pack(), Some(bytes));
            let _ = r.end_off();
        }

        #[test]
        fn pack_unpack_roundtrips(off in 0..=STARTOFF_MASK, blk in 0..=STARTBLOCK_MASK,
                                  len in 0..=BLOCKCOUNT_MASK, unwritten in any::<bool>()) {
            let r = BmbtIrec { startoff: off, startblock: blk, blockcount: len, unwritten };
            prop_assert_eq!(BmbtIrec::unpack(&r.pack().unwrap()), r);
        }

        #[test]
        fn short_slices_are_refused(buf in proptest::collection::vec(any::<u8>(), 0..32)) {
            prop_assert_eq!(BmbtIrec::unpack_slice(&buf).is_some(), buf.len() >= 16);
        }
    }
}
