//! Is the internal log clean? Finds the log head and tail the way log
//! recovery does (xfsprogs `libxlog` `xlog_find_zeroed`, `xlog_find_head`,
//! `xlog_find_tail`) and looks at the last record: a lone unmount record
//! right before the head means the filesystem was unmounted cleanly.
//!
//! This crate never replays the log. A dirty log means the metadata on disk
//! may be missing committed changes: checks go on with a warning, repairs
//! must refuse.
//!
//! Every scan is bounded: the binary search takes `log2(log size)` reads,
//! the verification scans read at most a few thousand blocks, and the
//! search for the last record header reads each block at most once.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::Uuid;
use crate::format::log::{self as fmt, OpHeader, RecordHeader};
use crate::geometry::Geometry;
use std::fmt as sfmt;

/// Size of a log basic block.
const BB: u64 = 512;

/// A position in the log: a cycle number and a basic block offset from the
/// start of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Cycle number (how many times the log has wrapped, plus one).
    pub cycle: u32,
    /// Basic block offset inside the log.
    pub block: u64,
}

impl sfmt::Display for LogPosition {
    fn fmt(&self, f: &mut sfmt::Formatter<'_>) -> sfmt::Result {
        write!(f, "cycle {} block {}", self.cycle, self.block)
    }
}

/// The state of the internal log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogState {
    /// The last record is an unmount record: the filesystem was unmounted
    /// cleanly and the metadata on disk is complete.
    Clean {
        /// Where the next log write would go.
        head: LogPosition,
    },
    /// The log holds records that were not checkpointed: the filesystem was
    /// not unmounted cleanly and recovery (mounting it) is needed.
    Dirty {
        /// Where the next log write would go.
        head: LogPosition,
        /// The oldest record recovery would replay.
        tail: LogPosition,
    },
    /// The log is all zeroes (e.g. after `xfs_repair -L`): nothing to replay.
    Zeroed,
    /// The log could not be made sense of; recovery would fail.
    Corrupt {
        /// What was wrong.
        reason: String,
    },
}

impl LogState {
    /// True when nothing needs replaying.
    pub fn is_clean(&self) -> bool {
        matches!(self, LogState::Clean { .. } | LogState::Zeroed)
    }
}

impl sfmt::Display for LogState {
    fn fmt(&self, f: &mut sfmt::Formatter<'_>) -> sfmt::Result {
        match self {
            LogState::Clean { head } => write!(f, "clean (head at {head})"),
            LogState::Dirty { head, tail } => {
                write!(f, "dirty (head at {head}, tail at {tail})")
            }
            LogState::Zeroed => f.write_str("zeroed"),
            LogState::Corrupt { reason } => write!(f, "corrupt: {reason}"),
        }
    }
}

/// Reads basic blocks of the internal log.
struct LogReader<'a> {
    dev: &'a dyn Device,
    start: u64,
    /// Log size in basic blocks.
    nbb: u64,
    /// `XLOG_TOTAL_REC_SHIFT`: the most blocks in-flight log writes span.
    total_rec_bbs: u64,
    /// `XLOG_REC_SHIFT`: the most blocks one record spans.
    rec_bbs: u64,
    uuid: Uuid,
}

/// A recoverable oddity found while scanning, turned into `Corrupt`.
struct Inconsistent(String);

type Scan<T> = std::result::Result<T, ScanError>;

enum ScanError {
    Io(Error),
    Bad(Inconsistent),
}

impl From<Error> for ScanError {
    fn from(e: Error) -> Self {
        ScanError::Io(e)
    }
}

fn bad<T>(msg: impl Into<String>) -> Scan<T> {
    Err(ScanError::Bad(Inconsistent(msg.into())))
}

impl LogReader<'_> {
    fn block(&self, blk: u64) -> Result<[u8; 512]> {
        let mut b = [0u8; 512];
        let off = blk
            .checked_mul(BB)
            .and_then(|o| o.checked_add(self.start))
            .ok_or_else(|| Error::InvalidArgument(format!("log block {blk} out of range")))?;
        self.dev.read_at(&mut b, off)?;
        Ok(b)
    }

    fn cycle(&self, blk: u64) -> Result<u32> {
        Ok(fmt::block_cycle(&self.block(blk)?).unwrap_or(0))
    }

    /// `xlog_find_cycle_start`: binary search in `[first, last]` for the
    /// first block stamped with `cycle`, assuming `last` has it.
    fn find_cycle_start(&self, mut first: u64, mut last: u64, cycle: u32) -> Result<u64> {
        let mut mid = first + (last - first) / 2;
        while mid != first && mid != last {
            if self.cycle(mid)? == cycle {
                last = mid;
            } else {
                first = mid;
            }
            mid = first + (last - first) / 2;
        }
        Ok(last)
    }

    /// `xlog_find_verify_cycle`: the first block in `[start, start + n)`
    /// stamped with `cycle`.
    fn find_verify_cycle(&self, start: u64, n: u64, cycle: u32) -> Result<Option<u64>> {
        for blk in start..start.saturating_add(n).min(self.nbb) {
            if self.cycle(blk)? == cycle {
                return Ok(Some(blk));
            }
        }
        Ok(None)
    }

    /// `xlog_find_verify_log_record`: walks back from `*last - 1` to
    /// `start` for a record header; if the record it starts does not end
    /// exactly at `*last` (plus `extra` blocks counted at the other end of
    /// the log), moves `*last` back to that header. Returns `Ok(false)` if
    /// no header was found and the walk reached block 0.
    fn find_verify_log_record(&self, start: u64, last: &mut u64, extra: u64) -> Scan<bool> {
        let mut i = *last;
        let header = loop {
            if i == 0 {
                return Ok(false);
            }
            i -= 1;
            if i < start {
                return bad("log inconsistent: no record header before the head");
            }
            let b = self.block(i)?;
            if fmt::is_record_header(&b) {
                break b;
            }
        };
        let Some(h) = RecordHeader::parse(&header) else {
            return bad(format!("unreadable record header at log block {i}"));
        };
        self.check_header(&h, i)?;
        let xhdrs = u64::from(h.header_blocks());
        if (*last - i).saturating_add(extra) != u64::from(h.data_blocks()).saturating_add(xhdrs) {
            *last = i;
        }
        Ok(true)
    }

    /// `xlog_header_check_mount`: the record belongs to this filesystem.
    fn check_header(&self, h: &RecordHeader, blk: u64) -> Scan<()> {
        if !h.fs_uuid.is_nil() && h.fs_uuid != self.uuid {
            return bad(format!(
                "log record at block {blk} has filesystem UUID {} (expected {})",
                h.fs_uuid, self.uuid
            ));
        }
        Ok(())
    }

    /// `xlog_find_zeroed`: `Some(head)` if the log is (partly) zeroed.
    fn find_zeroed(&self) -> Scan<Option<u64>> {
        let first_cycle = self.cycle(0)?;
        if first_cycle == 0 {
            return Ok(Some(0));
        }
        let last_cycle = self.cycle(self.nbb - 1)?;
        if last_cycle != 0 {
            return Ok(None);
        }
        if first_cycle != 1 {
            return bad(
                "log inconsistent or not a log (last block cycle 0, first block cycle not 1)",
            );
        }
        let mut last = self.find_cycle_start(0, self.nbb - 1, 0)?;
        let scan = self.total_rec_bbs.min(last);
        let start = last - scan;
        if let Some(b) = self.find_verify_cycle(start, scan, 0)? {
            last = b;
        }
        if !self.find_verify_log_record(start, &mut last, 0)? {
            return bad("log inconsistent: no record header before the zeroed part");
        }
        Ok(Some(last))
    }

    /// `xlog_find_head`: the block where the next write would go.
    fn find_head(&self) -> Scan<u64> {
        if let Some(head) = self.find_zeroed()? {
            return Ok(head);
        }
        let nbb = self.nbb;
        let first_half = self.cycle(0)?;
        let last_half = self.cycle(nbb - 1)?;
        let mut head;
        let stop_on_cycle;
        if first_half == last_half {
            // The whole log has one cycle; look for an older hole.
            head = nbb;
            stop_on_cycle = last_half.wrapping_sub(1);
        } else {
            stop_on_cycle = last_half;
            head = self.find_cycle_start(0, nbb - 1, last_half)?;
        }

        let scan = self.total_rec_bbs;
        let mut validated = false;
        if head >= scan {
            if let Some(b) = self.find_verify_cycle(head - scan, scan, stop_on_cycle)? {
                head = b;
            }
        } else {
            let start = nbb.saturating_sub(scan - head);
            if let Some(b) =
                self.find_verify_cycle(start, nbb - start, stop_on_cycle.wrapping_sub(1))?
            {
                head = b;
                validated = true;
            }
            if !validated && let Some(b) = self.find_verify_cycle(0, head, stop_on_cycle)? {
                head = b;
            }
        }

        // Make sure the head is not in the middle of a record.
        let scan = self.rec_bbs;
        if head >= scan {
            if !self.find_verify_log_record(head - scan, &mut head, 0)? {
                return bad("log inconsistent: no record header before the head");
            }
        } else if !self.find_verify_log_record(0, &mut head, 0)? {
            // Hit the start of the log: the last record wraps.
            let start = nbb.saturating_sub(scan - head);
            let mut new = nbb;
            if !self.find_verify_log_record(start, &mut new, head)? {
                return bad("log inconsistent: no record header at the end of the log");
            }
            if new != nbb {
                head = new;
            }
        }
        Ok(if head == nbb { 0 } else { head })
    }

    /// `xlog_find_tail` and the unmount-record check.
    fn state(&self) -> Scan<LogState> {
        let head = self.find_head()?;
        if head == 0 && self.cycle(0)? == 0 {
            return Ok(LogState::Zeroed);
        }
        // Find the last record header before the head, wrapping once.
        let mut found = None;
        for i in (0..head).rev() {
            if fmt::is_record_header(&self.block(i)?) {
                found = Some((i, false));
                break;
            }
        }
        if found.is_none() {
            for i in (head..self.nbb).rev() {
                if fmt::is_record_header(&self.block(i)?) {
                    found = Some((i, true));
                    break;
                }
            }
        }
        let Some((i, wrapped)) = found else {
            return bad("no log record header found");
        };
        let Some(h) = RecordHeader::parse(&self.block(i)?) else {
            return bad(format!("unreadable record header at log block {i}"));
        };
        self.check_header(&h, i)?;
        let cycle = if wrapped {
            h.cycle.wrapping_add(1)
        } else {
            h.cycle
        };
        let head_pos = LogPosition { cycle, block: head };
        let tail = LogPosition {
            cycle: u32::try_from(h.tail_lsn >> 32).unwrap_or(0),
            block: h.tail_lsn & 0xffff_ffff,
        };
        let hblks = u64::from(h.header_blocks());
        let after = (i + hblks + u64::from(h.data_blocks())) % self.nbb;
        if head == after && h.num_logops == 1 {
            let op_blk = (i + hblks) % self.nbb;
            if let Some(op) = OpHeader::parse(&self.block(op_blk)?)
                && op.is_unmount()
            {
                return Ok(LogState::Clean { head: head_pos });
            }
        }
        Ok(LogState::Dirty {
            head: head_pos,
            tail,
        })
    }
}

/// Finds the state of the internal log described by `geo`.
///
/// Errors are I/O errors only; a log that makes no sense is reported as
/// [`LogState::Corrupt`].
pub fn log_state(dev: &dyn Device, geo: &Geometry) -> Result<LogState> {
    let start = geo
        .log
        .start_daddr
        .to_bytes()
        .ok_or_else(|| Error::InvalidArgument("log start out of range".to_owned()))?;
    log_state_at(dev, start, geo.log.bb_count, geo.uuid)
}

/// [`log_state`] for a log of `nbb` basic blocks at byte `start`.
fn log_state_at(dev: &dyn Device, start: u64, nbb: u64, uuid: Uuid) -> Result<LogState> {
    if nbb < 2 {
        return Ok(LogState::Corrupt {
            reason: format!("log of {nbb} basic blocks is too small"),
        });
    }
    // v2 logs: records of up to 256 KiB, up to 8 in flight.
    let rec_bbs = u64::from(fmt::MAX_RECORD_BSIZE) / BB;
    let reader = LogReader {
        dev,
        start,
        nbb,
        total_rec_bbs: rec_bbs * 8,
        rec_bbs,
        uuid,
    };
    match reader.state() {
        Ok(s) => Ok(s),
        Err(ScanError::Io(e)) => Err(e),
        Err(ScanError::Bad(Inconsistent(reason))) => Ok(LogState::Corrupt { reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use proptest::prelude::*;

    const UUID: Uuid = Uuid([7; 16]);

    /// Writes a one-op record at `blk` with `cycle`, covering one data block.
    fn record(log: &mut [u8], blk: usize, cycle: u32, flags: u8, tail: u64) {
        let h = &mut log[blk * 512..blk * 512 + 512];
        h.fill(0);
        h[0..4].copy_from_slice(&fmt::HEADER_MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&cycle.to_be_bytes());
        h[8..12].copy_from_slice(&2u32.to_be_bytes());
        h[12..16].copy_from_slice(&512u32.to_be_bytes());
        h[16..24].copy_from_slice(&((u64::from(cycle) << 32) | blk as u64).to_be_bytes());
        h[24..32].copy_from_slice(&tail.to_be_bytes());
        h[40..44].copy_from_slice(&1u32.to_be_bytes());
        h[304..320].copy_from_slice(&UUID.0);
        h[320..324].copy_from_slice(&32768u32.to_be_bytes());
        let d = &mut log[(blk + 1) * 512..(blk + 2) * 512];
        d.fill(0);
        d[0..4].copy_from_slice(&cycle.to_be_bytes());
        d[9] = flags;
    }

    fn state(log: Vec<u8>) -> LogState {
        let n = log.len() as u64 / 512;
        log_state_at(&MemDevice::new(log), 0, n, UUID).unwrap()
    }

    #[test]
    fn zeroed_clean_dirty() {
        assert_eq!(state(vec![0; 64 * 512]), LogState::Zeroed);
        let mut log = vec![0; 64 * 512];
        record(&mut log, 0, 1, fmt::UNMOUNT_TRANS, 1 << 32);
        assert_eq!(
            state(log.clone()),
            LogState::Clean {
                head: LogPosition { cycle: 1, block: 2 }
            }
        );
        record(&mut log, 2, 1, 0, 1 << 32);
        assert_eq!(
            state(log.clone()),
            LogState::Dirty {
                head: LogPosition { cycle: 1, block: 4 },
                tail: LogPosition { cycle: 1, block: 0 }
            }
        );
        // A record from another filesystem.
        log[2 * 512 + 304] ^= 1;
        assert!(matches!(state(log), LogState::Corrupt { .. }));
    }

    proptest! {
        #[test]
        fn arbitrary_logs_never_panic(log in proptest::collection::vec(any::<u8>(), 0..(40 * 512)),
                                      stamps in proptest::collection::vec((0usize..40, 0u32..4, any::<bool>()), 0..8)) {
            let mut log = log;
            log.truncate(log.len() / 512 * 512);
            let n = log.len() / 512;
            for (blk, cycle, hdr) in stamps {
                if blk + 1 < n {
                    if hdr {
                        record(&mut log, blk, cycle, 0x20, 0);
                    } else {
                        log[blk * 512..blk * 512 + 4].copy_from_slice(&cycle.to_be_bytes());
                    }
                }
            }
            let _ = state(log);
        }
    }
}
