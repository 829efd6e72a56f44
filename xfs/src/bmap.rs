//! File block mappings: which filesystem blocks hold which file blocks.
//!
//! Extents-format forks are decoded here; btree-format forks (a bmbt whose
//! root lives in the inode) are walked with the `xfbtree` engine. Every
//! caller goes through [`Filesystem::mappings`], which checks the records
//! of both the same way.

use crate::error::{Error, Result};
use crate::format::Problem;
use crate::format::bmbt_rec::{self, BmbtIrec};
use crate::format::dinode::{BmdrRoot, Fork, ForkFormat};
use crate::fs::{Filesystem, Inode};
use crate::types::{FileOffset, FsBlock};

/// One mapping of file blocks to filesystem blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First file block mapped.
    pub file_offset: FileOffset,
    /// First filesystem block.
    pub start: FsBlock,
    /// Length in blocks (>= 1).
    pub len: u32,
    /// Allocated but unwritten: reads as zeros.
    pub unwritten: bool,
}

impl Extent {
    /// One past the last file block mapped.
    pub fn end(&self) -> u64 {
        self.file_offset.0 + u64::from(self.len)
    }

    /// The filesystem block holding file block `off`, if this extent maps it.
    pub fn fsb_for(&self, off: u64) -> Option<FsBlock> {
        if off >= self.file_offset.0 && off < self.end() {
            Some(FsBlock(self.start.0 + (off - self.file_offset.0)))
        } else {
            None
        }
    }
}

/// The most file blocks a fork can map (`XFS_MAX_FILEOFF`).
pub const MAX_FILEOFF: u64 = bmbt_rec::STARTOFF_MASK + bmbt_rec::BLOCKCOUNT_MASK as u64;

/// The extent containing file block `off` in a sorted, non-overlapping
/// extent list.
pub fn find_extent(extents: &[Extent], off: u64) -> Option<&Extent> {
    let i = extents.partition_point(|e| e.end() <= off);
    extents.get(i).filter(|e| e.file_offset.0 <= off)
}

impl Filesystem {
    /// The block mappings of `fork` of `inode`, sorted by file offset.
    ///
    /// Each record is checked (`xfs_bmap_validate_extent`): a non-zero
    /// length, file offsets that fit, blocks inside one AG past its headers,
    /// records in order without overlap. A fork that fails is
    /// [`Error::Corrupt`]. Btree-format forks are read through the btree
    /// engine, every block checked; a bmbt the engine cannot walk is
    /// [`Error::Malformed`]. Local and device forks have no mappings
    /// ([`Error::WrongFileType`]).
    pub fn mappings(&self, inode: &Inode, fork: Fork) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        self.for_each_mapping(inode, fork, |e| out.push(*e))?;
        Ok(out)
    }

    /// The same checks as [`Filesystem::mappings`], with each good mapping
    /// handed to `f` as it is read instead of collected: memory stays
    /// bounded by the bmbt's height however many mappings a file has.
    /// Mappings already handed over before an error stay handed over; the
    /// caller must discard them when this fails. Returns how many records
    /// the fork holds.
    pub fn for_each_mapping(
        &self,
        inode: &Inode,
        fork: Fork,
        mut f: impl FnMut(&Extent),
    ) -> Result<u64> {
        let core = &inode.core;
        if fork == Fork::Attr && !core.has_attr_fork() {
            return Ok(0);
        }
        let what = format!("{} {fork}", inode.ino);
        let n = core.extents(fork);
        let mut check = MappingCheck::new(self, &what);
        let count = match core.fork_format(fork) {
            ForkFormat::Extents => {
                for (i, r) in self.fork_extent_records(inode, fork)?.enumerate() {
                    check.record(&r, || format!("u3.bmx[{i}]"), &mut f);
                }
                check.count
            }
            ForkFormat::Btree => {
                self.bmbt_records(inode, fork, |i, r| {
                    check.record(r, || format!("bmbt record {i}"), &mut f);
                })?;
                check.count
            }
            other => {
                return Err(Error::WrongFileType {
                    ino: inode.ino.0,
                    reason: format!("{fork} is in {other:?} format and has no block mappings"),
                });
            }
        };
        if count != n {
            return Err(Error::Corrupt {
                what: what.clone(),
                problems: vec![Problem {
                    structure: inode.ino.to_string(),
                    field: match fork {
                        Fork::Data => "core.nextents".to_owned(),
                        Fork::Attr => "core.naextents".to_owned(),
                    },
                    expected: format!("{count} (mappings found)"),
                    actual: n.to_string(),
                }],
            });
        }
        let problems = check.problems;
        if !problems.is_empty() {
            return Err(Error::Corrupt { what, problems });
        }
        Ok(count)
    }

    /// The packed records of an extents-format fork.
    fn fork_extent_records<'i>(
        &self,
        inode: &'i Inode,
        fork: Fork,
    ) -> Result<impl Iterator<Item = BmbtIrec> + 'i> {
        let core = &inode.core;
        let bytes = core.fork_bytes(&inode.raw, fork);
        let n = core.extents(fork);
        let max = u64::try_from(bytes.len() / bmbt_rec::SIZE).unwrap_or(0);
        if n > max {
            return Err(Error::Corrupt {
                what: format!("{} {fork}", inode.ino),
                problems: vec![Problem {
                    structure: inode.ino.to_string(),
                    field: match fork {
                        Fork::Data => "core.nextents".to_owned(),
                        Fork::Attr => "core.naextents".to_owned(),
                    },
                    expected: format!("<= {max} (records that fit the fork)"),
                    actual: n.to_string(),
                }],
            });
        }
        Ok(bytes
            .chunks_exact(bmbt_rec::SIZE)
            .take(usize::try_from(n).unwrap_or(0))
            .filter_map(BmbtIrec::unpack_slice))
    }

    /// Hands the records of a btree-format fork to `f`, in key order, read
    /// through the btree engine. Fails on any block the engine finds
    /// corrupt and on a tree holding more records than the inode says it
    /// maps.
    fn bmbt_records(
        &self,
        inode: &Inode,
        fork: Fork,
        mut f: impl FnMut(u64, &BmbtIrec),
    ) -> Result<()> {
        let what = format!("{} {fork}", inode.ino);
        let malformed = |reason: String| Error::Malformed {
            what: what.clone(),
            reason,
        };
        let root = BmdrRoot::parse(inode.core.fork_bytes(&inode.raw, fork))
            .map_err(|e| malformed(format!("bmbt root: {e}")))?;
        let tree = self.bmbt(inode, fork, &root)?;
        let limit = inode.core.extents(fork);
        let mut cursor = tree
            .cursor_first()
            .map_err(|e| malformed(format!("bmbt: {e}")))?;
        let mut seen = 0u64;
        while let Some(rec) = cursor
            .next_record()
            .map_err(|e| malformed(format!("bmbt: {e}")))?
        {
            if seen >= limit {
                return Err(malformed(format!(
                    "the bmbt holds more than the {limit} mappings the inode records"
                )));
            }
            f(seen, &rec);
            seen += 1;
        }
        Ok(())
    }
}

/// The checks of one fork's mapping records, in order
/// (`xfs_bmap_validate_extent` and the order of the records).
struct MappingCheck<'a> {
    fs: &'a Filesystem,
    what: &'a str,
    /// Records seen.
    count: u64,
    /// End of the last good mapping.
    prev_end: u64,
    problems: Vec<Problem>,
}

impl<'a> MappingCheck<'a> {
    fn new(fs: &'a Filesystem, what: &'a str) -> Self {
        Self {
            fs,
            what,
            count: 0,
            prev_end: 0,
            problems: Vec::new(),
        }
    }

    /// Checks record `r` (named by `field`) and hands it to `f` if good.
    fn record(&mut self, r: &BmbtIrec, field: impl Fn() -> String, f: &mut impl FnMut(&Extent)) {
        self.count += 1;
        let bad = |problems: &mut Vec<Problem>, why: String| {
            problems.push(Problem {
                structure: self.what.to_owned(),
                field: field(),
                expected: why,
                actual: format!(
                    "[startoff {}, startblock {}, blockcount {}, unwritten {}]",
                    r.startoff, r.startblock, r.blockcount, r.unwritten
                ),
            });
        };
        if r.blockcount == 0 {
            bad(&mut self.problems, "a non-empty extent".to_owned());
            return;
        }
        let end = r.startoff + u64::from(r.blockcount);
        if end > MAX_FILEOFF {
            bad(
                &mut self.problems,
                format!("file blocks below {MAX_FILEOFF}"),
            );
            return;
        }
        if !self
            .fs
            .geometry()
            .verify_fsb_extent(FsBlock(r.startblock), u64::from(r.blockcount))
        {
            bad(
                &mut self.problems,
                "blocks inside one AG, past its headers".to_owned(),
            );
            return;
        }
        if r.startoff < self.prev_end {
            bad(
                &mut self.problems,
                format!("startoff >= {} (sorted, no overlap)", self.prev_end),
            );
            return;
        }
        self.prev_end = end;
        f(&Extent {
            file_offset: FileOffset(r.startoff),
            start: FsBlock(r.startblock),
            len: r.blockcount,
            unwritten: r.unwritten,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(off: u64, start: u64, len: u32) -> Extent {
        Extent {
            file_offset: FileOffset(off),
            start: FsBlock(start),
            len,
            unwritten: false,
        }
    }

    #[test]
    fn finds_extents() {
        let v = vec![ext(0, 100, 2), ext(5, 200, 3)];
        assert_eq!(find_extent(&v, 0).unwrap().start, FsBlock(100));
        assert_eq!(find_extent(&v, 1).unwrap().fsb_for(1), Some(FsBlock(101)));
        assert!(find_extent(&v, 2).is_none());
        assert_eq!(find_extent(&v, 7).unwrap().fsb_for(7), Some(FsBlock(202)));
        assert!(find_extent(&v, 8).is_none());
        assert!(find_extent(&[], 0).is_none());
    }
}
