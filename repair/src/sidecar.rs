//! The two files beside an image that make repairs safe: the redo journal
//! (what a commit is about to write) and the undo file (what every commit
//! overwrote).
//!
//! Both are sequences of checksummed records, little-endian:
//!
//! ```text
//! file header:  magic[8] version:u32 identity_len:u32 identity[..] crc:u32
//! record:       tag:u8 offset:u64 len:u32 crc:u32 data[len]
//!               (crc = crc32c of tag, offset, len and data)
//! ```
//!
//! The journal is one header, the records of one commit (tags: marker set,
//! new block, live write, marker clear) and an end mark; it is written to a
//! temporary name, synced, and renamed into place, so a journal that exists
//! is complete. The undo file is one header followed by segments, one per
//! commit, each a start mark, the old contents of every range the commit
//! overwrites, and an end mark; a segment without its end mark was cut
//! short before its commit began and is ignored.
//!
//! The identity is supplied by the caller (for a filesystem: its UUID and
//! size) so that a journal or undo file is never applied to another image.

use crate::error::RepairError;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Magic of a journal file.
pub const JOURNAL_MAGIC: &[u8; 8] = b"SCRUBDJ1";
/// Magic of an undo file.
pub const UNDO_MAGIC: &[u8; 8] = b"SCRUBDU1";
const VERSION: u32 = 1;
/// The most data one record may carry: bounds what a damaged file can make
/// a reader allocate.
pub const MAX_RECORD: u32 = 64 << 20;
/// Longest identity accepted.
const MAX_IDENTITY: u32 = 4096;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// Journal: set the image's "between states" marker.
    MarkDirty = 1,
    /// Journal: a new block.
    New = 2,
    /// Journal: a write that makes new blocks live.
    Live = 3,
    /// Journal: restore the marker.
    MarkClean = 4,
    /// Journal: end of the commit (len 0).
    End = 5,
    /// Undo: start of a segment (offset = segment number, len 0).
    SegmentStart = 6,
    /// Undo: old contents of a range.
    Old = 7,
    /// Undo: end of a segment (len 0).
    SegmentEnd = 8,
}

impl Tag {
    fn from_u8(v: u8) -> Option<Tag> {
        Some(match v {
            1 => Tag::MarkDirty,
            2 => Tag::New,
            3 => Tag::Live,
            4 => Tag::MarkClean,
            5 => Tag::End,
            6 => Tag::SegmentStart,
            7 => Tag::Old,
            8 => Tag::SegmentEnd,
            _ => return None,
        })
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What it is.
    pub tag: Tag,
    /// Byte offset on the image (segment number for segment marks).
    pub offset: u64,
    /// Bytes to write there (none for marks).
    pub data: Vec<u8>,
}

fn record_crc(tag: u8, offset: u64, len: u32, data: &[u8]) -> u32 {
    let mut head = [0u8; 13];
    head[0] = tag;
    head[1..9].copy_from_slice(&offset.to_le_bytes());
    head[9..13].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), data)
}

/// Writes the file header.
pub(crate) fn write_header(
    w: &mut impl Write,
    magic: &[u8; 8],
    identity: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(identity.len()).unwrap_or(u32::MAX);
    let mut h = Vec::with_capacity(16 + identity.len());
    h.extend_from_slice(magic);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(identity);
    let crc = crc32c::crc32c(&h);
    w.write_all(&h)?;
    w.write_all(&crc.to_le_bytes())
}

/// Writes one record.
pub(crate) fn write_record(
    w: &mut impl Write,
    tag: Tag,
    offset: u64,
    data: &[u8],
) -> Result<(), RepairError> {
    let len = u32::try_from(data.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or(RepairError::TooLarge { len: data.len() })?;
    let crc = record_crc(tag as u8, offset, len, data);
    w.write_all(&[tag as u8])?;
    w.write_all(&offset.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&crc.to_le_bytes())?;
    w.write_all(data)?;
    Ok(())
}

/// A sidecar file being read: header checked, records on demand.
pub(crate) struct Reader {
    r: BufReader<File>,
    path: PathBuf,
}

impl Reader {
    /// Opens `path`, checks magic, version and identity.
    pub fn open(path: &Path, magic: &[u8; 8], identity: &[u8]) -> Result<Self, RepairError> {
        let f = File::open(path)?;
        let mut r = BufReader::new(f);
        let bad = |why: &str| RepairError::BadSidecar {
            path: path.to_path_buf(),
            reason: why.to_string(),
        };
        let mut fixed = [0u8; 16];
        r.read_exact(&mut fixed)
            .map_err(|_| bad("shorter than its header"))?;
        if &fixed[..8] != magic {
            return Err(bad("wrong magic number: not a scrubd file of this kind"));
        }
        let version = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this scrubd reads {VERSION}"
            )));
        }
        let idlen = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        if idlen > MAX_IDENTITY {
            return Err(bad("identity too long"));
        }
        let mut id = vec![0u8; idlen as usize];
        r.read_exact(&mut id).map_err(|_| bad("header cut short"))?;
        let mut crc = [0u8; 4];
        r.read_exact(&mut crc)
            .map_err(|_| bad("header cut short"))?;
        let want = crc32c::crc32c_append(crc32c::crc32c(&fixed), &id);
        if u32::from_le_bytes(crc) != want {
            return Err(bad("header checksum mismatch"));
        }
        if id != identity {
            return Err(RepairError::WrongImage {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            r,
            path: path.to_path_buf(),
        })
    }

    /// The next record; `Ok(None)` at a clean end of file; `Err` for a
    /// record that is cut short or fails its checksum.
    pub fn next(&mut self) -> Result<Option<Record>, RepairError> {
        let mut head = [0u8; 17];
        let mut got = 0;
        while got < head.len() {
            match self.r.read(&mut head[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(self.bad("a record is cut short")),
                n => got += n,
            }
        }
        let tag = head[0];
        let offset = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[9..13].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(head[13..17].try_into().unwrap_or_default());
        if len > MAX_RECORD {
            return Err(self.bad("a record claims an impossible length"));
        }
        let mut data = vec![0u8; len as usize];
        self.r
            .read_exact(&mut data)
            .map_err(|_| self.bad("a record is cut short"))?;
        if record_crc(tag, offset, len, &data) != crc {
            return Err(self.bad("a record fails its checksum"));
        }
        let tag = Tag::from_u8(tag).ok_or_else(|| self.bad("a record has an unknown tag"))?;
        Ok(Some(Record { tag, offset, data }))
    }

    fn bad(&self, why: &str) -> RepairError {
        RepairError::BadSidecar {
            path: self.path.clone(),
            reason: why.to_string(),
        }
    }
}

/// Syncs the directory holding `path`, so that a rename or removal in it
/// is durable.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Opens a sidecar for appending (creating it with a header if new).
pub(crate) fn open_append(
    path: &Path,
    magic: &[u8; 8],
    identity: &[u8],
) -> Result<BufWriter<File>, RepairError> {
    let exists = path.exists();
    if exists {
        // Validate before appending to it.
        Reader::open(path, magic, identity)?;
    }
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let mut w = BufWriter::new(f);
    if !exists {
        write_header(&mut w, magic, identity)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        {
            let mut w = BufWriter::new(File::create(&p).unwrap());
            write_header(&mut w, JOURNAL_MAGIC, b"image-1").unwrap();
            write_record(&mut w, Tag::New, 4096, &[7; 100]).unwrap();
            write_record(&mut w, Tag::End, 0, &[]).unwrap();
        }
        let mut r = Reader::open(&p, JOURNAL_MAGIC, b"image-1").unwrap();
        assert_eq!(
            r.next().unwrap(),
            Some(Record {
                tag: Tag::New,
                offset: 4096,
                data: vec![7; 100]
            })
        );
        assert_eq!(r.next().unwrap().unwrap().tag, Tag::End);
        assert_eq!(r.next().unwrap(), None);
        assert!(matches!(
            Reader::open(&p, JOURNAL_MAGIC, b"image-2"),
            Err(RepairError::WrongImage { .. })
        ));
        assert!(Reader::open(&p, UNDO_MAGIC, b"image-1").is_err());
        // Flip a data byte: the record fails its checksum.
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let mut r = Reader::open(&p, JOURNAL_MAGIC, b"image-1").unwrap();
        assert!(r.next().is_err());
        // Truncate inside a record.
        std::fs::write(&p, &bytes[..n - 40]).unwrap();
        let mut r = Reader::open(&p, JOURNAL_MAGIC, b"image-1").unwrap();
        assert!(r.next().is_err());
    }
}
