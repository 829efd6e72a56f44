//! The block-mapping btree of a file fork (bmbt).
//!
//! Its root lives in the inode (`struct xfs_bmdr_block`, see
//! [`crate::format::dinode::BmdrRoot`]) and its other blocks anywhere in
//! the filesystem, with long-form headers owned by the inode. Records are
//! packed extent records ([`crate::format::bmbt_rec`]); keys are the
//! 64-bit file offset of the first block mapped; pointers are fsbnos.

use super::{LongForm, delegate_header, height, put_be64};
use crate::format::be64_at;
use crate::format::bmbt_rec::{self, BmbtIrec};
use crate::format::dinode::Fork;
use crate::geometry::Geometry;
use xfbtree::{BlockAddr, BtreeFormat};

/// v5 magic of bmbt blocks ("BMA3").
pub const MAGIC: u32 = 0x424d_4133;

/// The bmbt of one fork of one inode.
#[derive(Debug, Clone)]
pub struct Bmbt {
    form: LongForm,
    max_height: u16,
}

impl Bmbt {
    /// The bmbt of `fork` of inode `ino`.
    pub fn new(geo: &Geometry, ino: u64, fork: Fork) -> Self {
        let levels = match fork {
            Fork::Data => geo.maxlevels.bmbt_data,
            Fork::Attr => geo.maxlevels.bmbt_attr,
        };
        Self {
            form: LongForm::new(MAGIC, geo, ino),
            max_height: height(levels),
        }
    }

    /// The header form (owner, geometry, block address checks).
    pub fn form(&self) -> &LongForm {
        &self.form
    }
}

impl BtreeFormat for Bmbt {
    type Record = BmbtIrec;
    type Key = u64;

    fn header_len(&self) -> usize {
        super::LONG_LEN
    }
    fn record_len(&self) -> usize {
        bmbt_rec::SIZE
    }
    fn key_len(&self) -> usize {
        8
    }
    fn ptr_len(&self) -> usize {
        8
    }
    fn max_height(&self) -> u16 {
        self.max_height
    }
    delegate_header!(form, LongForm);
    fn decode_record(&self, raw: &[u8]) -> BmbtIrec {
        BmbtIrec::unpack_slice(raw).unwrap_or(BmbtIrec {
            startoff: 0,
            startblock: 0,
            blockcount: 0,
            unwritten: false,
        })
    }
    fn encode_record(&self, r: &BmbtIrec, raw: &mut [u8]) {
        // Records come from checked mappings; a field too wide for its bits
        // is masked rather than spilling into its neighbours.
        let masked = BmbtIrec {
            startoff: r.startoff & bmbt_rec::STARTOFF_MASK,
            startblock: r.startblock & bmbt_rec::STARTBLOCK_MASK,
            blockcount: r.blockcount & bmbt_rec::BLOCKCOUNT_MASK,
            unwritten: r.unwritten,
        };
        if let (Some(packed), Some(dst)) = (masked.pack(), raw.get_mut(..bmbt_rec::SIZE)) {
            dst.copy_from_slice(&packed);
        }
    }
    fn decode_key(&self, raw: &[u8]) -> u64 {
        be64_at(raw, 0).unwrap_or(0)
    }
    fn encode_key(&self, k: &u64, raw: &mut [u8]) {
        put_be64(raw, 0, *k);
    }
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        BlockAddr(be64_at(raw, 0).unwrap_or(u64::MAX))
    }
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        put_be64(raw, 0, addr.0);
    }
    fn record_key(&self, r: &BmbtIrec) -> u64 {
        r.startoff
    }
    fn describe_key(&self, k: &u64) -> String {
        format!("(file block {k})")
    }
}
