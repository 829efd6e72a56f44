//! Reading directories: shortform, block, leaf and node directories.
//!
//! Lookup is a linear scan of the directory's data blocks (the first 32 GiB
//! of its address space); the hash index is not used yet. The scan is
//! bounded by the blocks the fork maps below both the directory size and
//! the end of the data space, and each block is parsed with a bounded walk.

use crate::bmap::{Extent, find_extent};
use crate::error::{Error, Result};
use crate::format::dinode::{FileType, Fork, ForkFormat};
use crate::format::dir2::data::{DataBlock, DataBlockContext, describe_magic};
use crate::format::dir2::sf::Shortform;
use crate::format::dir2::{self, ftype};
use crate::format::{Checked, Problem};
use crate::fs::{Filesystem, Inode};
use crate::types::Ino;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (bytes; XFS names need not be UTF-8).
    pub name: Vec<u8>,
    /// The inode it names.
    pub ino: Ino,
    /// File type code recorded in the entry, if the filesystem records one.
    pub ftype: Option<u8>,
}

impl DirEntry {
    /// The name, lossily decoded for display.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// A short name of the recorded file type.
    pub fn ftype_name(&self) -> &'static str {
        self.ftype.map_or("unknown", ftype::name)
    }
}

impl Filesystem {
    /// Every entry of directory `dir`, including `.` and `..`, with the
    /// problems found in the directory's blocks (entries of damaged blocks
    /// are returned as far as they could be decoded).
    pub fn read_dir_checked(&self, dir: &Inode) -> Result<Checked<Vec<DirEntry>>> {
        if dir.core.file_type() != FileType::Directory {
            return Err(Error::WrongFileType {
                ino: dir.ino.0,
                reason: "not a directory".to_owned(),
            });
        }
        let has_ftype = self.geometry().features.has_ftype();
        match dir.core.fork_format(Fork::Data) {
            ForkFormat::Local => {
                let fork = dir.core.fork_bytes(&dir.raw, Fork::Data);
                let what = format!("directory {}", dir.ino.0);
                let sf =
                    Shortform::parse(fork, dir.core.size, has_ftype, &what).ok_or_else(|| {
                        Error::Malformed {
                            what: what.clone(),
                            reason: "shortform header does not fit the directory".to_owned(),
                        }
                    })?;
                let mut entries = vec![
                    DirEntry {
                        name: b".".to_vec(),
                        ino: dir.ino,
                        ftype: has_ftype.then_some(ftype::DIR),
                    },
                    DirEntry {
                        name: b"..".to_vec(),
                        ino: Ino(sf.value.parent),
                        ftype: has_ftype.then_some(ftype::DIR),
                    },
                ];
                entries.extend(sf.value.entries.into_iter().map(|e| DirEntry {
                    name: e.name,
                    ino: Ino(e.ino),
                    ftype: e.ftype,
                }));
                Ok(Checked {
                    value: entries,
                    problems: sf.problems,
                })
            }
            _ => {
                let extents = self.mappings(dir, Fork::Data)?;
                self.read_dir_blocks(dir, &extents, has_ftype)
            }
        }
    }

    /// Every entry of directory `dir`; fails with [`Error::Corrupt`] if any
    /// directory block has a problem.
    pub fn read_dir(&self, dir: &Inode) -> Result<Vec<DirEntry>> {
        let c = self.read_dir_checked(dir)?;
        if c.problems.is_empty() {
            Ok(c.value)
        } else {
            Err(Error::Corrupt {
                what: format!("directory {}", dir.ino.0),
                problems: c.problems,
            })
        }
    }

    /// Looks `name` up in directory `dir`. On an ASCII case-insensitive
    /// filesystem (`-n version=ci`) names that differ only in the case of
    /// A-Z match, as in the kernel's `xfs_ascii_ci_compname`; an exact match
    /// is preferred.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let entries = self.read_dir(dir)?;
        if let Some(i) = entries.iter().position(|e| e.name == name) {
            return Ok(entries.into_iter().nth(i));
        }
        if self.geometry().features.has_asciici() {
            return Ok(entries
                .into_iter()
                .find(|e| e.name.eq_ignore_ascii_case(name)));
        }
        Ok(None)
    }

    /// Scans the data blocks of a block, leaf or node directory.
    fn read_dir_blocks(
        &self,
        dir: &Inode,
        extents: &[Extent],
        has_ftype: bool,
    ) -> Result<Checked<Vec<DirEntry>>> {
        let geo = self.geometry();
        let fsbs = u64::from(geo.dir_block_fsbs);
        let block_log = u32::from(geo.block_log);
        // Data blocks live below the leaf space and below the directory size.
        let data_end_fsb = dir2::LEAF_OFFSET >> block_log;
        let size_end_fsb = dir.core.size.div_ceil(u64::from(geo.block_size));
        let limit = data_end_fsb.min(size_end_fsb);
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        let starts = dir_block_starts(extents, fsbs, 0, limit);
        for db in starts {
            let what = format!("directory {} block {}", dir.ino.0, db);
            let Some((buf, daddr)) = self.read_dir_block(extents, db)? else {
                problems.push(Problem {
                    structure: what,
                    field: "bmap".to_owned(),
                    expected: format!("all {fsbs} blocks of the directory block mapped"),
                    actual: "a hole".to_owned(),
                });
                continue;
            };
            let ctx = DataBlockContext {
                owner: dir.ino.0,
                daddr,
                meta_uuid: geo.meta_uuid,
                has_ftype,
                what: &what,
            };
            match DataBlock::parse(&buf, &ctx) {
                Some(c) => {
                    problems.extend(c.problems);
                    entries.extend(c.value.entries.into_iter().map(|e| DirEntry {
                        name: e.name,
                        ino: Ino(e.ino),
                        ftype: e.ftype,
                    }));
                }
                None => problems.push(Problem {
                    structure: what,
                    field: "magic".to_owned(),
                    expected: "0x58444233 (\"XDB3\") or 0x58444433 (\"XDD3\")".to_owned(),
                    actual: describe_magic(&buf),
                }),
            }
        }
        Ok(Checked {
            value: entries,
            problems,
        })
    }

    /// Reads the directory block starting at file block `dablk` (all
    /// `dir_block_fsbs` of its filesystem blocks) through `extents`, with
    /// the disk address of its first block. `None` if any of its blocks is
    /// not mapped (or mapped to an address outside the filesystem).
    pub fn read_dir_block(&self, extents: &[Extent], dablk: u64) -> Result<Option<(Vec<u8>, u64)>> {
        let geo = self.geometry();
        let fsbs = u64::from(geo.dir_block_fsbs);
        let bs = usize::try_from(geo.block_size).unwrap_or(4096);
        let mut buf = vec![0u8; bs.saturating_mul(usize::try_from(fsbs).unwrap_or(1))];
        let mut daddr = None;
        for (i, chunk) in (0..fsbs).zip(buf.chunks_exact_mut(bs)) {
            let off = dablk.saturating_add(i);
            let Some(fsb) = find_extent(extents, off).and_then(|e| e.fsb_for(off)) else {
                return Ok(None);
            };
            if !geo.verify_fsb_extent(fsb, 1) {
                return Ok(None);
            }
            if i == 0 {
                daddr = geo.fsb_to_daddr(fsb).map(|d| d.0);
            }
            chunk.copy_from_slice(&self.read_fsblocks(fsb, 1)?);
        }
        Ok(daddr.map(|d| (buf, d)))
    }
}

/// The file offsets (in filesystem blocks) of the directory blocks that
/// have their first block mapped in `extents`, in `lo..hi`. Directory
/// blocks start at multiples of `fsbs` (the directory block size in
/// filesystem blocks). The list is bounded by the mapped extents.
pub fn dir_block_starts(extents: &[Extent], fsbs: u64, lo: u64, hi: u64) -> Vec<u64> {
    let fsbs = fsbs.max(1);
    let mut starts: Vec<u64> = Vec::new();
    for e in extents {
        if e.file_offset.0 >= hi {
            break;
        }
        let mut db = e.file_offset.0.max(lo).next_multiple_of(fsbs);
        while db < e.end() && db < hi {
            if starts.last() != Some(&db) {
                starts.push(db);
            }
            db = db.saturating_add(fsbs);
        }
    }
    starts
}
