//! Log record headers (`struct xlog_rec_header`) and operation headers
//! (`struct xlog_op_header`), as much as finding the log head and telling a
//! clean log from a dirty one needs.
//!
//! The log is a ring of 512-byte basic blocks. Every basic block written
//! by a log record starts with the record's cycle number (the record header
//! saves the words it displaced in `h_cycle_data`), except the record
//! header itself, which starts with the magic `0xFEEDbabe` followed by the
//! cycle.

use super::{Uuid, be32_at, be64_at};

/// `XLOG_HEADER_MAGIC_NUM`.
pub const HEADER_MAGIC: u32 = 0xfeed_babe;
/// `XLOG_VERSION_2`.
pub const VERSION_2: u32 = 2;
/// `XLOG_HEADER_CYCLE_SIZE`: bytes of record data one header sector covers.
pub const HEADER_CYCLE_SIZE: u32 = 32 * 1024;
/// `XLOG_UNMOUNT_TRANS`: operation-header flag of an unmount record.
pub const UNMOUNT_TRANS: u8 = 0x20;
/// Size of an operation header.
pub const OP_HEADER_SIZE: usize = 12;
/// `XLOG_MAX_RECORD_BSIZE`.
pub const MAX_RECORD_BSIZE: u32 = 256 * 1024;

/// The cycle number of a basic block: the word after the magic for a
/// record header, else the first word (`xlog_get_cycle`). `None` if the
/// block is shorter than 8 bytes.
pub fn block_cycle(bb: &[u8]) -> Option<u32> {
    let first = be32_at(bb, 0)?;
    if first == HEADER_MAGIC {
        be32_at(bb, 4)
    } else {
        Some(first)
    }
}

/// True if the basic block starts with the record header magic.
pub fn is_record_header(bb: &[u8]) -> bool {
    be32_at(bb, 0) == Some(HEADER_MAGIC)
}

/// The fields of a record header that log scanning needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// `h_magicno`.
    pub magic: u32,
    /// `h_cycle`.
    pub cycle: u32,
    /// `h_version`.
    pub version: u32,
    /// `h_len`: bytes of record data after the header.
    pub len: u32,
    /// `h_lsn`: this record's LSN (cycle << 32 | block).
    pub lsn: u64,
    /// `h_tail_lsn`: the oldest record still needed.
    pub tail_lsn: u64,
    /// `h_crc` (little-endian).
    pub crc: u32,
    /// `h_prev_block`.
    pub prev_block: u32,
    /// `h_num_logops`: operations in this record.
    pub num_logops: u32,
    /// `h_fmt`.
    pub fmt: u32,
    /// `h_fs_uuid`.
    pub fs_uuid: Uuid,
    /// `h_size`: the in-core log buffer size.
    pub size: u32,
}

impl RecordHeader {
    /// Decodes a record header from one basic block; `None` if the block is
    /// short or lacks the magic.
    pub fn parse(bb: &[u8]) -> Option<RecordHeader> {
        let magic = be32_at(bb, 0)?;
        if magic != HEADER_MAGIC {
            return None;
        }
        // h_cycle_data[64] at 44..300, then h_fmt, h_fs_uuid, h_size.
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(bb.get(304..320)?);
        Some(RecordHeader {
            magic,
            cycle: be32_at(bb, 4)?,
            version: be32_at(bb, 8)?,
            len: be32_at(bb, 12)?,
            lsn: be64_at(bb, 16)?,
            tail_lsn: be64_at(bb, 24)?,
            crc: super::crc::stored(bb, 32)?,
            prev_block: be32_at(bb, 36)?,
            num_logops: be32_at(bb, 40)?,
            fmt: be32_at(bb, 300)?,
            fs_uuid: Uuid(uuid),
            size: be32_at(bb, 320)?,
        })
    }

    /// Basic blocks taken by the header (more than one for v2 logs with
    /// log buffers over 32 KiB).
    pub fn header_blocks(&self) -> u32 {
        if self.version & VERSION_2 != 0 && self.size > HEADER_CYCLE_SIZE {
            self.size.div_ceil(HEADER_CYCLE_SIZE)
        } else {
            1
        }
    }

    /// Basic blocks of record data after the header.
    pub fn data_blocks(&self) -> u32 {
        self.len.div_ceil(512)
    }
}

/// The fields of an operation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpHeader {
    /// Transaction id.
    pub tid: u32,
    /// Bytes of the operation's region.
    pub len: u32,
    /// Client id (`XFS_TRANSACTION` or `XFS_LOG`).
    pub clientid: u8,
    /// `XLOG_*_TRANS` flags.
    pub flags: u8,
}

impl OpHeader {
    /// Decodes an operation header.
    pub fn parse(buf: &[u8]) -> Option<OpHeader> {
        Some(OpHeader {
            tid: be32_at(buf, 0)?,
            len: be32_at(buf, 4)?,
            clientid: *buf.get(8)?,
            flags: *buf.get(9)?,
        })
    }

    /// This operation ends a clean unmount.
    pub fn is_unmount(&self) -> bool {
        self.flags & UNMOUNT_TRANS != 0
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cycles() {
        let mut bb = vec![0u8; 512];
        assert_eq!(block_cycle(&bb), Some(0));
        bb[0..4].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(block_cycle(&bb), Some(7));
        bb[0..4].copy_from_slice(&HEADER_MAGIC.to_be_bytes());
        bb[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(block_cycle(&bb), Some(9));
        bb[8..12].copy_from_slice(&2u32.to_be_bytes());
        bb[12..16].copy_from_slice(&512u32.to_be_bytes());
        bb[320..324].copy_from_slice(&(64u32 * 1024).to_be_bytes());
        let h = RecordHeader::parse(&bb).unwrap();
        assert_eq!(h.header_blocks(), 2);
        assert_eq!(h.data_blocks(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = block_cycle(&buf);
            if let Some(h) = RecordHeader::parse(&buf) {
                let _ = (h.header_blocks(), h.data_blocks());
            }
            if let Some(o) = OpHeader::parse(&buf) {
                let _ = o.is_unmount();
            }
        }
    }
}
