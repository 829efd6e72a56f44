//! The reference count btree: blocks shared by more than one owner
//! (reflink), and copy-on-write staging extents.
//!
//! A record (`struct xfs_refcount_rec`, 12 bytes) says `blockcount` blocks
//! from `startblock` have `refcount` owners. Bit 31 of the start block marks
//! a CoW staging extent (`XFS_REFC_COWFLAG`), so that all staging records
//! sort after all shared records; keys are the start block word, flag
//! included.

use super::{ShortForm, delegate_header, height, put_be32};
use crate::format::be32_at;
use crate::geometry::Geometry;
use crate::types::AgNumber;
use xfbtree::{BlockAddr, BtreeFormat};

/// v5 magic of refcountbt blocks ("R3FC").
pub const MAGIC: u32 = 0x5233_4643;
/// The CoW-staging flag in the start block word.
pub const COW_FLAG: u32 = 1 << 31;

/// A reference count record, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefcountRec {
    /// First AG block (without the CoW flag).
    pub startblock: u32,
    /// Whether this is a CoW staging extent.
    pub cow: bool,
    /// Number of blocks.
    pub blockcount: u32,
    /// Number of owners (1 for CoW staging extents, at least 2 otherwise).
    pub refcount: u32,
}

impl RefcountRec {
    /// The start block word as stored (flag included): the record's key.
    pub fn key(&self) -> u32 {
        (self.startblock & !COW_FLAG) | if self.cow { COW_FLAG } else { 0 }
    }

    /// One past the last block, if it fits in 31 bits.
    pub fn end(&self) -> Option<u32> {
        self.startblock
            .checked_add(self.blockcount)
            .filter(|e| *e <= COW_FLAG)
    }
}

/// The reference count btree of one AG.
#[derive(Debug, Clone)]
pub struct Refcountbt {
    form: ShortForm,
    max_height: u16,
}

impl Refcountbt {
    /// The refcountbt of AG `agno`.
    pub fn new(geo: &Geometry, agno: AgNumber) -> Self {
        Self {
            form: ShortForm::new(MAGIC, geo, agno),
            max_height: height(geo.maxlevels.refcount),
        }
    }

    /// The header form (AG, geometry, block address checks).
    pub fn form(&self) -> &ShortForm {
        &self.form
    }
}

impl BtreeFormat for Refcountbt {
    type Record = RefcountRec;
    type Key = u32;

    fn header_len(&self) -> usize {
        super::SHORT_LEN
    }
    fn record_len(&self) -> usize {
        12
    }
    fn key_len(&self) -> usize {
        4
    }
    fn ptr_len(&self) -> usize {
        4
    }
    fn max_height(&self) -> u16 {
        self.max_height
    }
    delegate_header!(form, ShortForm);
    fn decode_record(&self, raw: &[u8]) -> RefcountRec {
        let word = be32_at(raw, 0).unwrap_or(0);
        RefcountRec {
            startblock: word & !COW_FLAG,
            cow: word & COW_FLAG != 0,
            blockcount: be32_at(raw, 4).unwrap_or(0),
            refcount: be32_at(raw, 8).unwrap_or(0),
        }
    }
    fn encode_record(&self, r: &RefcountRec, raw: &mut [u8]) {
        put_be32(raw, 0, r.key());
        put_be32(raw, 4, r.blockcount);
        put_be32(raw, 8, r.refcount);
    }
    fn decode_key(&self, raw: &[u8]) -> u32 {
        be32_at(raw, 0).unwrap_or(0)
    }
    fn encode_key(&self, k: &u32, raw: &mut [u8]) {
        put_be32(raw, 0, *k);
    }
    fn decode_ptr(&self, raw: &[u8]) -> BlockAddr {
        BlockAddr(u64::from(be32_at(raw, 0).unwrap_or(u32::MAX)))
    }
    fn encode_ptr(&self, addr: BlockAddr, raw: &mut [u8]) {
        put_be32(raw, 0, u32::try_from(addr.0).unwrap_or(u32::MAX));
    }
    fn record_key(&self, r: &RefcountRec) -> u32 {
        r.key()
    }
    fn describe_key(&self, k: &u32) -> String {
        let domain = if k & COW_FLAG != 0 { ", cow" } else { "" };
        format!("(startblock {}{domain})", k & !COW_FLAG)
    }
}
