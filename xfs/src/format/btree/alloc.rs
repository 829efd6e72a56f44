//! Free-space btrees: by block number (bnobt) and by size (cntbt).
//!
//! Both hold the same records, `struct xfs_alloc_rec` {startblock,
//! blockcount} (8 bytes), and both store node keys as copies of a record
//! (`xfs_allocbt_init_key_from_rec`); they differ in order. The bnobt
//! compares start blocks only, the cntbt block counts and then start
//! blocks (`xfs_bnobt_key_diff`, `xfs_cntbt_key_diff`).

use super::{ShortForm, delegate_header, height, put_be32};
use crate::format::be32_at;
use crate::geometry::Geometry;
use crate::types::AgNumber;
use std::cmp::Ordering;
use xfbtree::{BlockAddr, BtreeFormat};

/// v5 magic of bnobt blocks ("AB3B").
pub const BNO_MAGIC: u32 = 0x4142_3342;
/// v5 magic of cntbt blocks ("AB3C").
pub const CNT_MAGIC: u32 = 0x4142_3343;

/// A free extent: `blockcount` blocks from AG block `startblock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocRec {
    /// First free AG block.
    pub startblock: u32,
    /// Number of free blocks.
    pub blockcount: u32,
}

impl AllocRec {
    fn decode(raw: &[u8]) -> Self {
        Self {
            startblock: be32_at(raw, 0).unwrap_or(0),
            blockcount: be32_at(raw, 4).unwrap_or(0),
        }
    }

    fn encode(&self, raw: &mut [u8]) {
        put_be32(raw, 0, self.startblock);
        put_be32(raw, 4, self.blockcount);
    }

    /// One past the last block, if it fits in 32 bits.
    pub fn end(&self) -> Option<u32> {
        self.startblock.checked_add(self.blockcount)
    }
}

/// A bnobt key: a record copy ordered by start block alone.
#[derive(Debug, Clone, Copy)]
pub struct BnoKey(pub AllocRec);

impl BnoKey {
    /// The key as messages show it: only the start block orders it.
    fn describe(&self) -> String {
        format!("(startblock {})", self.0.startblock)
    }
}

impl PartialEq for BnoKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.startblock == other.0.startblock
    }
}
impl Eq for BnoKey {}
impl PartialOrd for BnoKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BnoKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.startblock.cmp(&other.0.startblock)
    }
}

/// A cntbt key: a record copy ordered by block count, then start block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CntKey(pub AllocRec);

impl CntKey {
    /// The key as messages show it, in its sort order.
    fn describe(&self) -> String {
        format!(
            "(blockcount {}, startblock {})",
            self.0.blockcount, self.0.startblock
        )
    }
}

impl PartialOrd for CntKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for CntKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.blockcount, self.0.startblock).cmp(&(other.0.blockcount, other.0.startblock))
    }
}

/// The free-space-by-block btree of one AG.
#[derive(Debug, Clone)]
pub struct Bnobt {
    form: ShortForm,
    max_height: u16,
}

/// The free-space-by-size btree of one AG.
#[derive(Debug, Clone)]
pub struct Cntbt {
    form: ShortForm,
    max_height: u16,
}

impl Bnobt {
    /// The bnobt of AG `agno`.
    pub fn new(geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            form: ShortForm::new(BNO_MAGIC, geo, agno),
            max_height: height(geo.maxlevels.alloc),
        }
    }

    /// The header form (AG, geometry, block address checks).
    pub fn form(&self) -> &ShortForm {
        &self.form
    }
}

impl Cntbt {
    /// The cntbt of AG `agno`.
    pub fn new(geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            form: ShortForm::new(CNT_MAGIC, geo, agno),
            max_height: height(geo.maxlevels.alloc),
        }
    }

    /// The header form (AG, geometry, block address checks).
    pub fn form(&self) -> &ShortForm {
        &self.form
    }
}

macro_rules! alloc_format {
    ($t:ty, $key:ident) => {
        impl BtreeFormat for $t {
            type Record = AllocRec;
            type Key = $key;

            fn header_len(&self) -> usize {
                super::SHORT_LEN
            }
            fn record_len(&self) -> usize {
                8
            }
            fn key_len(&self) -> usize {
                8
            }
            fn ptr_len(&self) -> usize {
                4
            }
            fn max_height(&self) -> u16 {
                self.max_height
            }
            delegate_header!(form, ShortForm);
            fn decode_record(&self, raw: &[u8]) -> AllocRec {
                AllocRec::decode(raw)
            }
            fn encode_record(&self, r: &AllocRec, raw: &mut [u8]) {
                r.encode(raw);
            }
            fn decode_key(&self, raw: &[u8]) -> $key {
                $key(AllocRec::decode(raw))
            }
            fn encode_key(&self, k: &$key, raw: &mut [u8]) {
                k.0.encode(raw);
            }
            fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
                BlockAddr(u64::from(be32_at(raw, 0).unwrap_or(u32::MAX)))
            }
            fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
                put_be32(raw, 0, u32::try_from(addr.0).unwrap_or(u32::MAX));
            }
            fn record_key(&self, r: &AllocRec) -> $key {
                $key(*r)
            }
            fn describe_key(&self, k: &$key) -> String {
                k.describe()
            }
        }
    };
}

alloc_format!(Bnobt, BnoKey);
alloc_format!(Cntbt, CntKey);

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn key_orders() {
        let a = AllocRec {
            startblock: 10,
            blockcount: 5,
        };
        let b = AllocRec {
            startblock: 20,
            blockcount: 1,
        };
        assert!(BnoKey(a) < BnoKey(b));
        assert!(CntKey(b) < CntKey(a));
        // The bnobt ignores the count in its keys, as the kernel does.
        assert_eq!(
            BnoKey(a),
            BnoKey(AllocRec {
                startblock: 10,
                blockcount: 99
            })
        );
        let mut raw = [0u8; 8];
        a.encode(&mut raw);
        assert_eq!(raw, [0, 0, 0, 10, 0, 0, 0, 5]);
        assert_eq!(AllocRec::decode(&raw), a);
    }
}
