//! Summary counter repair (the kernel's `fscounters_repair.c`): the primary
//! superblock's `sb_icount`, `sb_ifree` and `sb_fdblocks` set to the sums
//! over the AG headers, as the kernel computes them at mount after a crash
//! (`xfs_initialize_perag_data`): inodes and free inodes from each AGI,
//! free blocks from each AGF's free blocks, free list and btree blocks.
//!
//! The AG headers must be sound (or be rebuilt by the same repair, whose
//! new AGF values are passed in): a sum over a damaged header would write
//! a wrong counter.

use super::agheader::AgfSpace;
use super::ialloc::RebuiltAgis;
use crate::format::superblock::{self, RawSuperblock};
use crate::format::{agf, agi, crc};
use crate::fs::Filesystem;
use crate::types::AgNumber;
use repair::WriteSet;
use std::collections::BTreeMap;
use zerocopy::FromBytes;

/// The counters a repair writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Allocated inodes.
    pub icount: u64,
    /// Free inodes.
    pub ifree: u64,
    /// Free data blocks.
    pub fdblocks: u64,
}

/// Sums the AG headers (with `rebuilt` AGF values in place of the ones on
/// disk for AGs this repair rebuilds) and stages the primary superblock
/// with the sums. Refuses when an AG header it needs is damaged.
pub fn plan_counters(
    fs: &Filesystem,
    rebuilt: &BTreeMap<AgNumber, AgfSpace>,
    writes: &mut WriteSet,
) -> Result<(Counters, Counters), String> {
    plan_counters_with(fs, rebuilt, &RebuiltAgis::new(), writes)
}

/// [`plan_counters`] with `agis`, the new AGI values of AGs whose inode
/// btrees the same repair rebuilds, in place of the AGIs on disk.
pub fn plan_counters_with(
    fs: &Filesystem,
    rebuilt: &BTreeMap<AgNumber, AgfSpace>,
    agis: &RebuiltAgis,
    writes: &mut WriteSet,
) -> Result<(Counters, Counters), String> {
    let mut c = Counters {
        icount: 0,
        ifree: 0,
        fdblocks: 0,
    };
    for agno in fs.geometry().ags() {
        let (free, flcount, btree) = match rebuilt.get(&agno) {
            Some(s) => (s.freeblks, s.flcount, s.btreeblks),
            None => {
                let f = fs.read_agf(agno).map_err(|e| e.to_string())?;
                if f.value.magicnum != agf::MAGIC || !f.problems.is_empty() {
                    return Err(format!(
                        "the AGF of {agno} is damaged, so its free blocks cannot be counted"
                    ));
                }
                (f.value.freeblks, f.value.flcount, f.value.btreeblks)
            }
        };
        c.fdblocks += u64::from(free) + u64::from(flcount) + u64::from(btree);
        let (count, freecount) = match agis.get(&agno) {
            Some(a) => (a.count, a.freecount),
            None => {
                let i = fs.read_agi(agno).map_err(|e| e.to_string())?;
                if i.value.magicnum != agi::MAGIC || !i.problems.is_empty() {
                    return Err(format!(
                        "the AGI of {agno} is damaged, so its inodes cannot be counted"
                    ));
                }
                (i.value.count, i.value.freecount)
            }
        };
        c.icount += u64::from(count);
        c.ifree += u64::from(freecount);
    }
    let sb = fs.superblock();
    let before = Counters {
        icount: sb.icount,
        ifree: sb.ifree,
        fdblocks: sb.fdblocks,
    };
    if before == c {
        return Ok((before, c));
    }
    let len = usize::try_from(fs.geometry().sector_size).unwrap_or(512);
    let mut s = vec![0u8; len];
    fs.device()
        .read_at(&mut s, 0)
        .map_err(|e| format!("reading the primary superblock: {e}"))?;
    let Ok((r, _)) = RawSuperblock::mut_from_prefix(&mut s) else {
        return Err("the superblock sector is too short".into());
    };
    r.icount.set(c.icount);
    r.ifree.set(c.ifree);
    r.fdblocks.set(c.fdblocks);
    let _ = crc::update(&mut s, superblock::CRC_OFFSET);
    writes.stage_live(0, s).map_err(|e| e.to_string())?;
    Ok((before, c))
}
