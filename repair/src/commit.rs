//! The commit protocol: how staged writes reach the image so that a crash
//! at any moment leaves the old state or the new one, never a mixture, and
//! every commit can be undone.
//!
//! A commit runs these steps, each made durable before the next starts:
//!
//! 1. **Undo.** The current contents of every range the commit will write
//!    are appended to the undo file as one segment.
//! 2. **Journal.** Every write of the commit, in order, is written to a
//!    temporary file, synced, and renamed to the journal's name: from now on
//!    the commit can be finished by replaying the journal.
//! 3. **Marker set.** The image's "between states" marker (for XFS the
//!    NEEDSREPAIR feature bit) is set, so that no kernel mounts the image
//!    until the commit is done.
//! 4. **New blocks**, then **live writes** (the header updates that make
//!    the new blocks reachable). A live write that covers the marker keeps
//!    it set.
//! 5. **Marker restored** to what it was before the commit.
//! 6. The journal is removed.
//!
//! After a crash, [`recover`] replays a journal that exists (every write
//! is idempotent) and removes it; a journal that cannot be read is an error,
//! never silently skipped, because some of its writes may have landed.
//! [`undo`] writes back the undo segments, newest first; running it again
//! after an interruption gives the same result.

use crate::disk::Disk;
use crate::error::RepairError;
use crate::sidecar::{self, JOURNAL_MAGIC, Reader, Tag, UNDO_MAGIC};
use crate::writeset::{Phase, WriteSet};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The image's "between states" marker: a flag inside one small range of
/// the image (a superblock feature bit, say) that tells other software the
/// image must not be used until a commit finishes.
pub trait Marker {
    /// Where the marker lives: byte offset and length of the range that
    /// holds it (a sector, typically).
    fn location(&self) -> (u64, usize);
    /// Whether `range` (the bytes at [`Marker::location`]) has the marker set.
    fn is_set(&self, range: &[u8]) -> bool;
    /// Sets or clears the marker in `range`, fixing up anything that covers
    /// it (a checksum).
    fn set(&self, range: &mut [u8], on: bool);
}

/// A marker that marks nothing: for images with no such flag, and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMarker;

impl Marker for NoMarker {
    fn location(&self) -> (u64, usize) {
        (0, 0)
    }
    fn is_set(&self, _: &[u8]) -> bool {
        false
    }
    fn set(&self, _: &mut [u8], _: bool) {}
}

/// Where the sidecar files of one image live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecars {
    /// The redo journal.
    pub journal: PathBuf,
    /// The undo file.
    pub undo: PathBuf,
}

impl Sidecars {
    /// The default names beside `image`: `IMAGE.scrubd-journal` and
    /// `IMAGE.scrubd-undo`.
    pub fn beside(image: &Path) -> Self {
        let with = |ext: &str| {
            let mut s = image.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        Self {
            journal: with(".scrubd-journal"),
            undo: with(".scrubd-undo"),
        }
    }

    fn journal_tmp(&self) -> PathBuf {
        let mut s = self.journal.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    }

    /// Whether a journal waits to be replayed.
    pub fn journal_pending(&self) -> bool {
        self.journal.exists()
    }
}

/// What one commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Writes applied (marker writes included).
    pub writes: u64,
    /// Bytes written to the image.
    pub bytes: u64,
    /// Bytes saved in the undo file.
    pub undo_bytes: u64,
}

/// The journal's record list for `set`: marker set, new, live (marker kept
/// set), marker restored.
fn plan<D: Disk>(
    disk: &D,
    set: &WriteSet,
    marker: &dyn Marker,
) -> Result<Vec<(Tag, u64, Vec<u8>)>, RepairError> {
    let mut out = Vec::new();
    let (moff, mlen) = marker.location();
    let mut before = vec![0u8; mlen];
    if mlen > 0 {
        disk.read_at(&mut before, moff)?;
        let mut dirty = before.clone();
        marker.set(&mut dirty, true);
        out.push((Tag::MarkDirty, moff, dirty));
    }
    for (off, data) in set.phase(Phase::New) {
        if mlen > 0 && off < moff + mlen as u64 && moff < off + data.len() as u64 {
            return Err(RepairError::MarkerInNewBlock { offset: off });
        }
        out.push((Tag::New, off, data.to_vec()));
    }
    let mut after = before.clone();
    for (off, data) in set.phase(Phase::Live) {
        let mut data = data.to_vec();
        let overlaps = mlen > 0 && off < moff + mlen as u64 && moff < off + data.len() as u64;
        if overlaps {
            // Only a write covering the whole marker range can keep it set.
            if off > moff || off + (data.len() as u64) < moff + mlen as u64 {
                return Err(RepairError::MarkerSplit { offset: off });
            }
            let s = (moff - off) as usize;
            after.copy_from_slice(&data[s..s + mlen]);
            marker.set(&mut data[s..s + mlen], true);
        }
        out.push((Tag::Live, off, data));
    }
    if mlen > 0 {
        let was = marker.is_set(&before);
        marker.set(&mut after, was);
        out.push((Tag::MarkClean, moff, after));
    }
    Ok(out)
}

/// Commits `set` to `disk` as described in the module documentation.
/// `identity` names the image in the sidecar files.
pub fn commit<D: Disk>(
    disk: &D,
    set: &WriteSet,
    marker: &dyn Marker,
    sidecars: &Sidecars,
    identity: &[u8],
) -> Result<CommitStats, RepairError> {
    if sidecars.journal_pending() {
        return Err(RepairError::JournalPending {
            path: sidecars.journal.clone(),
        });
    }
    if set.is_empty() {
        return Ok(CommitStats::default());
    }
    let records = plan(disk, set, marker)?;
    let mut stats = CommitStats::default();

    // 1. Undo: the old contents of every range written, merged.
    let mut ranges: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, off, data) in &records {
        let end = off + data.len() as u64;
        let e = ranges.entry(*off).or_insert(end);
        *e = (*e).max(end);
    }
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some((_, le)) if s <= *le => *le = (*le).max(e),
            _ => merged.push((s, e)),
        }
    }
    {
        let mut w = sidecar::open_append(&sidecars.undo, UNDO_MAGIC, identity)?;
        sidecar::write_record(&mut w, Tag::SegmentStart, 0, &[])?;
        for (s, e) in &merged {
            let mut old = vec![0u8; (e - s) as usize];
            disk.read_at(&mut old, *s)?;
            stats.undo_bytes += old.len() as u64;
            sidecar::write_record(&mut w, Tag::Old, *s, &old)?;
        }
        sidecar::write_record(&mut w, Tag::SegmentEnd, 0, &[])?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    sidecar::sync_dir(&sidecars.undo)?;

    // 2. Journal, published whole by a rename.
    let tmp = sidecars.journal_tmp();
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        sidecar::write_header(&mut w, JOURNAL_MAGIC, identity)?;
        for (tag, off, data) in &records {
            sidecar::write_record(&mut w, *tag, *off, data)?;
        }
        sidecar::write_record(&mut w, Tag::End, records.len() as u64, &[])?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, &sidecars.journal)?;
    sidecar::sync_dir(&sidecars.journal)?;

    // 3-5. Apply, phase by phase.
    apply(disk, &records, &mut stats)?;

    // 6. Done.
    std::fs::remove_file(&sidecars.journal)?;
    sidecar::sync_dir(&sidecars.journal)?;
    Ok(stats)
}

/// Writes journal records in order, syncing whenever the kind of write
/// changes (marker, new blocks, live writes, marker).
fn apply<D: Disk>(
    disk: &D,
    records: &[(Tag, u64, Vec<u8>)],
    stats: &mut CommitStats,
) -> Result<(), RepairError> {
    let mut last: Option<Tag> = None;
    for (tag, off, data) in records {
        if last.is_some_and(|t| t != *tag) {
            disk.sync()?;
        }
        disk.write_at(data, *off)?;
        stats.writes += 1;
        stats.bytes += data.len() as u64;
        last = Some(*tag);
    }
    disk.sync()?;
    Ok(())
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No journal: nothing to do.
    Clean,
    /// A journal was replayed and removed.
    Replayed {
        /// Writes replayed.
        writes: u64,
    },
}

/// Finishes an interrupted commit: replays the journal if there is one.
/// A leftover temporary journal (a commit that crashed before its journal
/// was complete, hence before it wrote anything) is removed.
pub fn recover<D: Disk>(
    disk: &D,
    sidecars: &Sidecars,
    identity: &[u8],
) -> Result<Recovery, RepairError> {
    let tmp = sidecars.journal_tmp();
    if tmp.exists() {
        std::fs::remove_file(&tmp)?;
    }
    if !sidecars.journal.exists() {
        return Ok(Recovery::Clean);
    }
    let mut r = Reader::open(&sidecars.journal, JOURNAL_MAGIC, identity)?;
    let mut records = Vec::new();
    let mut ended = false;
    while let Some(rec) = r.next()? {
        match rec.tag {
            Tag::End => {
                if rec.offset != records.len() as u64 {
                    return Err(RepairError::BadSidecar {
                        path: sidecars.journal.clone(),
                        reason: "the end mark counts a different number of records".into(),
                    });
                }
                ended = true;
                break;
            }
            Tag::MarkDirty | Tag::New | Tag::Live | Tag::MarkClean => {
                records.push((rec.tag, rec.offset, rec.data))
            }
            _ => {
                return Err(RepairError::BadSidecar {
                    path: sidecars.journal.clone(),
                    reason: "a record that does not belong in a journal".into(),
                });
            }
        }
    }
    if !ended {
        return Err(RepairError::BadSidecar {
            path: sidecars.journal.clone(),
            reason: "no end mark".into(),
        });
    }
    let mut stats = CommitStats::default();
    apply(disk, &records, &mut stats)?;
    std::fs::remove_file(&sidecars.journal)?;
    sidecar::sync_dir(&sidecars.journal)?;
    Ok(Recovery::Replayed {
        writes: stats.writes,
    })
}

/// What [`undo`] restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndoStats {
    /// Commits undone (complete undo segments).
    pub commits: u64,
    /// Ranges written back.
    pub ranges: u64,
    /// Bytes written back.
    pub bytes: u64,
}

/// Restores the image to what it was before the commits recorded in the
/// undo file at `path`, newest first. Idempotent: an interrupted undo can
/// simply be run again. Refuses while a journal is pending (finish or
/// recover the commit first) and for an undo file of another image.
pub fn undo<D: Disk>(
    disk: &D,
    path: &Path,
    sidecars: &Sidecars,
    identity: &[u8],
) -> Result<UndoStats, RepairError> {
    if sidecars.journal_pending() {
        return Err(RepairError::JournalPending {
            path: sidecars.journal.clone(),
        });
    }
    let mut r = Reader::open(path, UNDO_MAGIC, identity)?;
    let mut segments: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
    let mut open: Option<Vec<(u64, Vec<u8>)>> = None;
    loop {
        let rec = match r.next() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            // A segment cut short by a crash is the last thing in the file;
            // its commit never started.
            Err(_) if open.is_some() => break,
            Err(e) => return Err(e),
        };
        match rec.tag {
            Tag::SegmentStart => open = Some(Vec::new()),
            Tag::Old => match open.as_mut() {
                Some(seg) => seg.push((rec.offset, rec.data)),
                None => {
                    return Err(RepairError::BadSidecar {
                        path: path.to_path_buf(),
                        reason: "old contents outside a segment".into(),
                    });
                }
            },
            Tag::SegmentEnd => {
                if let Some(seg) = open.take() {
                    segments.push(seg);
                }
            }
            _ => {
                return Err(RepairError::BadSidecar {
                    path: path.to_path_buf(),
                    reason: "a record that does not belong in an undo file".into(),
                });
            }
        }
    }
    let mut stats = UndoStats::default();
    for seg in segments.iter().rev() {
        for (off, data) in seg {
            disk.write_at(data, *off)?;
            stats.ranges += 1;
            stats.bytes += data.len() as u64;
        }
        disk.sync()?;
        stats.commits += 1;
    }
    Ok(stats)
}
