//! [`XfBlob`]: variable-size byte strings addressed by cookies.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::budget::{MemoryBudget, StagingStats};
use crate::error::StagingError;
use crate::xfile::{XFile, XFileOptions};

/// Marks the start of a live blob ("BLOB").
const MAGIC: u32 = 0x424c_4f42;
const HEADER: u64 = size_of::<BlobHeader>() as u64;
const ALIGN: u64 = 8;

/// Written in front of every blob. Freed blobs are discarded, so their
/// header reads as zeros.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
struct BlobHeader {
    magic: u32,
    _pad: u32,
    id: u64,
    len: u64,
}

/// Names one stored blob. Cheap to copy, and itself a [`crate::Record`], so
/// it can be kept inside staged records.
///
/// A cookie carries the blob's offset and a store-wide unique id; loading
/// checks both against the header in the store, so a cookie of a freed blob,
/// of a store that was truncated since, or made up from arbitrary bytes
/// gives [`StagingError::InvalidCookie`], never another blob's bytes and
/// never a panic.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct BlobCookie {
    offset: u64,
    id: u64,
}

impl BlobCookie {
    /// The raw (offset, id) pair, e.g. for logging.
    pub fn to_raw(self) -> (u64, u64) {
        (self.offset, self.id)
    }

    /// A cookie from a raw pair. Loading with it fails cleanly unless it
    /// names a live blob.
    pub fn from_raw(offset: u64, id: u64) -> Self {
        BlobCookie { offset, id }
    }
}

/// A store of byte strings of any length, staged in an [`XFile`].
///
/// Blobs are appended; `free` punches the blob's bytes out but never reuses
/// the space (staging holds blobs only briefly, so compaction is not worth
/// it); `truncate` drops them all. Changes take `&mut self`.
pub struct XfBlob {
    file: XFile,
    /// Where the next blob goes.
    end: u64,
    next_id: u64,
    live: u64,
}

impl XfBlob {
    /// An empty store with default [`XFileOptions`].
    pub fn new(name: &str, budget: &MemoryBudget) -> Result<Self, StagingError> {
        Self::with_options(name, budget, XFileOptions::default())
    }

    /// An empty store whose file is created with `opts`.
    pub fn with_options(
        name: &str,
        budget: &MemoryBudget,
        opts: XFileOptions,
    ) -> Result<Self, StagingError> {
        Ok(XfBlob {
            file: XFile::with_options(name, budget, opts)?,
            end: 0,
            next_id: 1,
            live: 0,
        })
    }

    /// Store a copy of `data`; the cookie gets it back.
    pub fn store(&mut self, data: &[u8]) -> Result<BlobCookie, StagingError> {
        let len = data.len() as u64;
        let span = HEADER
            .checked_add(len)
            .and_then(|n| n.checked_next_multiple_of(ALIGN))
            .and_then(|n| n.checked_add(self.end))
            .filter(|&e| e <= self.file.max_len());
        let Some(new_end) = span else {
            return Err(self.file.out_of_range(
                "blob store size",
                self.end.saturating_add(len),
                self.file.max_len(),
            ));
        };
        let header = BlobHeader {
            magic: MAGIC,
            _pad: 0,
            id: self.next_id,
            len,
        };
        let offset = self.end;
        // Data first: a failed write leaves no header naming it.
        self.file.write_at(data, offset + HEADER)?;
        self.file.store(offset, &header)?;
        self.end = new_end;
        self.next_id += 1;
        self.live += 1;
        self.file.add_records(1);
        Ok(BlobCookie {
            offset,
            id: header.id,
        })
    }

    /// Check `cookie` and return the header it names.
    fn header(&self, cookie: BlobCookie) -> Result<BlobHeader, StagingError> {
        let bad = |reason| StagingError::InvalidCookie {
            name: self.file.name().to_owned(),
            offset: cookie.offset,
            id: cookie.id,
            reason,
        };
        if !cookie.offset.is_multiple_of(ALIGN) {
            return Err(bad("misaligned offset"));
        }
        if cookie
            .offset
            .checked_add(HEADER)
            .is_none_or(|e| e > self.end)
        {
            return Err(bad("offset past the end of the store"));
        }
        let h: BlobHeader = self.file.load(cookie.offset)?;
        if h.magic != MAGIC {
            return Err(bad(
                "no live blob there (freed, truncated away, or never stored)",
            ));
        }
        if h.id != cookie.id {
            return Err(bad(
                "the blob there has another id (stale or forged cookie)",
            ));
        }
        if h.len > self.end - cookie.offset - HEADER {
            return Err(bad("blob length runs past the end of the store"));
        }
        Ok(h)
    }

    /// A copy of the blob named by `cookie`.
    pub fn load(&self, cookie: BlobCookie) -> Result<Vec<u8>, StagingError> {
        let h = self.header(cookie)?;
        // h.len <= self.end, which was built from in-memory slices.
        let mut buf = vec![0u8; h.len as usize];
        self.file.read_at(&mut buf, cookie.offset + HEADER)?;
        Ok(buf)
    }

    /// Length in bytes of the blob named by `cookie`.
    pub fn len_of(&self, cookie: BlobCookie) -> Result<u64, StagingError> {
        Ok(self.header(cookie)?.len)
    }

    /// Free the blob named by `cookie`: its memory and disk space are
    /// released (whole pages) and the cookie stops working.
    pub fn free(&mut self, cookie: BlobCookie) -> Result<(), StagingError> {
        let h = self.header(cookie)?;
        // Kill the header first: from here on the cookie is dead, whatever
        // happens to the discard below.
        self.file.write_at(&[0u8; HEADER as usize], cookie.offset)?;
        self.live -= 1;
        self.file.add_records(-1);
        let span = (HEADER + h.len).next_multiple_of(ALIGN);
        self.file.discard(cookie.offset..cookie.offset + span)
    }

    /// Free every blob. Cookies issued before stay invalid for good: ids
    /// are never reused.
    pub fn truncate(&mut self) -> Result<(), StagingError> {
        self.file.truncate(0)?;
        self.end = 0;
        self.file
            .add_records(-(self.live.min(i64::MAX as u64) as i64));
        self.live = 0;
        Ok(())
    }

    /// Number of live blobs.
    pub fn count(&self) -> u64 {
        self.live
    }

    /// Bytes of the store used so far (headers, blobs and freed space).
    pub fn used_bytes(&self) -> u64 {
        self.end
    }

    /// The underlying file.
    pub fn file(&self) -> &XFile {
        &self.file
    }

    /// Statistics of the store's file (`records` is the live blob count).
    pub fn stats(&self) -> StagingStats {
        self.file.stats()
    }
}

impl std::fmt::Debug for XfBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XfBlob")
            .field("name", &self.file.name())
            .field("count", &self.live)
            .field("used_bytes", &self.end)
            .finish()
    }
}
