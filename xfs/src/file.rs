//! Reading regular files and symlinks through their data fork.
//!
//! Holes and unwritten extents read as zeros; reads stop at the file size.
//! [`FileReader`] streams a file (for hashing large files without holding
//! them in memory); [`Filesystem::read_file`] returns it whole, up to a
//! caller-given limit, so a hostile `di_size` cannot cause an unbounded
//! allocation.

use crate::bmap::{Extent, find_extent};
use crate::error::{Error, Result};
use crate::format::dinode::{FileType, Fork, ForkFormat};
use crate::format::symlink::{self, SymlinkHeader};
use crate::fs::{Filesystem, Inode};
use crate::types::{FsBlock, Ino};
use std::io;

/// Most bytes one read request covers.
const MAX_CHUNK: u64 = 1 << 20;

/// A streaming reader of a regular file's contents.
#[derive(Debug)]
pub struct FileReader<'a> {
    fs: &'a Filesystem,
    extents: Vec<Extent>,
    size: u64,
    pos: u64,
}

impl<'a> FileReader<'a> {
    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads up to `buf.len()` bytes at byte offset `pos`; returns the
    /// number read (0 at the end of the file).
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        if pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let geo = self.fs.geometry();
        let bs = u64::from(geo.block_size);
        let want = (buf.len() as u64).min(self.size - pos).min(MAX_CHUNK);
        let fblock = pos / bs;
        let in_block = pos % bs;
        let out = &mut buf[..usize::try_from(want).unwrap_or(0)];
        match find_extent(&self.extents, fblock) {
            Some(e) if !e.unwritten => {
                // Read the contiguous run of this extent that covers the request.
                let blocks_left = e.end() - fblock;
                let need_blocks = (in_block + want).div_ceil(bs).min(blocks_left);
                let n = (need_blocks * bs - in_block).min(want);
                let start = e.fsb_for(fblock).unwrap_or(FsBlock(0));
                let data = self
                    .fs
                    .read_fsblocks(start, u32::try_from(need_blocks).unwrap_or(1))?;
                let n_us = usize::try_from(n).unwrap_or(0);
                let from = usize::try_from(in_block).unwrap_or(0);
                out[..n_us].copy_from_slice(&data[from..from + n_us]);
                Ok(n_us)
            }
            Some(e) => {
                // Unwritten: zeros up to the end of the extent.
                let n = ((e.end() - fblock) * bs - in_block).min(want);
                let n_us = usize::try_from(n).unwrap_or(0);
                out[..n_us].fill(0);
                Ok(n_us)
            }
            None => {
                // A hole: zeros up to the next extent.
                let idx = self.extents.partition_point(|e| e.end() <= fblock);
                let next = self.extents.get(idx).map_or(u64::MAX, |e| e.file_offset.0);
                let n = next
                    .saturating_sub(fblock)
                    .saturating_mul(bs)
                    .saturating_sub(in_block)
                    .min(want);
                let n_us = usize::try_from(n).unwrap_or(0);
                out[..n_us].fill(0);
                Ok(n_us)
            }
        }
    }
}

impl io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.pos).map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Filesystem {
    /// A streaming reader of regular file `inode`.
    pub fn file_reader(&self, inode: &Inode) -> Result<FileReader<'_>> {
        if inode.core.file_type() != FileType::Regular {
            return Err(Error::WrongFileType {
                ino: inode.ino.0,
                reason: "not a regular file".to_owned(),
            });
        }
        let extents = self.mappings(inode, Fork::Data)?;
        Ok(FileReader {
            fs: self,
            extents,
            size: inode.core.size,
            pos: 0,
        })
    }

    /// The whole contents of regular file `ino`, refusing files larger than
    /// `limit` bytes.
    pub fn read_file(&self, ino: Ino, limit: u64) -> Result<Vec<u8>> {
        let inode = self.read_inode_verified(ino)?;
        let reader = self.file_reader(&inode)?;
        if reader.size() > limit {
            return Err(Error::LimitExceeded {
                what: ino.to_string(),
                reason: format!(
                    "file size {} exceeds the limit of {limit} bytes",
                    reader.size()
                ),
            });
        }
        let mut out = vec![0u8; usize::try_from(reader.size()).unwrap_or(0)];
        let mut pos = 0usize;
        while pos < out.len() {
            let n = reader.read_at(&mut out[pos..], pos as u64)?;
            if n == 0 {
                break;
            }
            pos += n;
        }
        Ok(out)
    }

    /// The target of symlink `inode`, stored inline or in remote blocks.
    pub fn read_symlink(&self, inode: &Inode) -> Result<Vec<u8>> {
        let ino = inode.ino;
        if inode.core.file_type() != FileType::Symlink {
            return Err(Error::WrongFileType {
                ino: ino.0,
                reason: "not a symlink".to_owned(),
            });
        }
        let size = inode.core.size;
        if size == 0 || size > symlink::MAX_LEN {
            return Err(Error::Malformed {
                what: ino.to_string(),
                reason: format!("symlink length {size} not in 1..={}", symlink::MAX_LEN),
            });
        }
        let len = usize::try_from(size).unwrap_or(0);
        match inode.core.fork_format(Fork::Data) {
            ForkFormat::Local => {
                let fork = inode.core.fork_bytes(&inode.raw, Fork::Data);
                fork.get(..len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| Error::Malformed {
                        what: ino.to_string(),
                        reason: format!(
                            "inline symlink of {len} bytes does not fit the {}-byte fork",
                            fork.len()
                        ),
                    })
            }
            _ => {
                let geo = self.geometry();
                let extents = self.mappings(inode, Fork::Data)?;
                let mut out = Vec::with_capacity(len);
                // Each extent is one buffer with one header; the CRC covers
                // the whole extent (libxfs xfs_symlink_remote.c). A target of
                // at most 1024 bytes needs at most a few extents: bounded.
                let mut next_off = 0u64;
                for e in &extents {
                    if out.len() >= len {
                        break;
                    }
                    let what = format!("{ino} symlink block {}", e.file_offset.0);
                    if e.file_offset.0 != next_off || e.unwritten {
                        return Err(Error::Malformed {
                            what,
                            reason: "the symlink target is not fully mapped".to_owned(),
                        });
                    }
                    let buf = self.read_fsblocks(e.start, e.len)?;
                    let daddr = geo.fsb_to_daddr(e.start).map(|d| d.0).unwrap_or(0);
                    let h = SymlinkHeader::check(&buf, ino.0, daddr, geo.meta_uuid, &what)?
                        .into_verified()
                        .map_err(|problems| Error::Corrupt {
                            what: what.clone(),
                            problems,
                        })?;
                    if usize::try_from(h.offset).ok() != Some(out.len()) || h.bytes == 0 {
                        return Err(Error::Malformed {
                            what,
                            reason: format!(
                                "block holds bytes {}..+{} but {} were read so far",
                                h.offset,
                                h.bytes,
                                out.len()
                            ),
                        });
                    }
                    let n = usize::try_from(h.bytes).unwrap_or(0).min(len - out.len());
                    out.extend_from_slice(&buf[symlink::HEADER_SIZE..symlink::HEADER_SIZE + n]);
                    next_off = e.end();
                }
                if out.len() != len {
                    return Err(Error::Malformed {
                        what: ino.to_string(),
                        reason: format!("symlink blocks hold {} of its {len} bytes", out.len()),
                    });
                }
                Ok(out)
            }
        }
    }
}
