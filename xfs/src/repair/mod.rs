//! XFS repairers: one file per structure, named as the kernel's
//! `fs/xfs/scrub/*_repair.c` names them, built on the [`repair`] framework.
//!
//! | repairer | file | rebuilds |
//! |---|---|---|
//! | AG free space | [`alloc`] | bnobt, cntbt, AGFL and the AGF counters of one AG, from the rmapbt |
//! | inode btrees | [`ialloc`] | inobt, finobt and the AGI of one AG, from the rmapbt and the inodes |
//! | summary counters | [`fscounters`] | `sb_icount`, `sb_ifree`, `sb_fdblocks` from the AG headers |
//! | reference counts | [`refcount`] | refcountbt of one AG from the rmapbt's overlapping mappings (with the rmapbt, free space and AGF it moves) |
//!
//! Every repairer rebuilds from the reverse-mapping btree, which must have
//! passed its own checks; without one (or with a damaged one) it refuses
//! and says why. A repair is planned first, into a [`WriteSet`] (nothing
//! is written), and committed by [`commit_plan`] through the framework's
//! journal, undo file and the NEEDSREPAIR marker ([`NeedsRepair`]).
//!
//! This module also holds what a repair needs from the image itself: a
//! [`repair::Disk`] over the image device ([`DeviceDisk`]) and the open
//! path ([`open_for_repair`]), which refuses what must not be repaired
//! (a dirty log, a mounted block device, a read-only image) and finishes an
//! interrupted repair (journal replay) before anything else.

pub mod agheader;
pub mod alloc;
pub mod fscounters;
pub mod ialloc;
mod plan;
pub mod refcount;

pub use plan::{
    Plan, PlannedRepair, RecheckError, Refusal, plan, plan_with, rebuilt_scrubbers, recheck,
};

use crate::device::{Access, CowDevice, Device, DeviceError, open_image};
use crate::format::{crc, features, superblock};
use crate::fs::Filesystem;
use crate::log::LogState;
use repair::{Disk, Marker, Recovery, Sidecars, WriteSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an image cannot be repaired (before any repair is planned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The image file is not writable (permissions or a read-only mount).
    #[error("{path} is read-only: a repair must be able to write to it (check its permissions)")]
    ReadOnly {
        /// The image.
        path: PathBuf,
    },
    /// A block device that is mounted or held open by someone else.
    #[error("{path} is busy: it is mounted or in use; unmount it first")]
    Busy {
        /// The device.
        path: PathBuf,
    },
    /// The log holds changes that are not in the metadata yet.
    #[error(
        "the log is {state}: mount the filesystem to replay it (or xfs_repair -L to discard it) before repairing"
    )]
    DirtyLog {
        /// The log state, in words.
        state: String,
    },
    /// A journal of an interrupted repair waits and this run may not
    /// replay it (a dry run writes nothing).
    #[error(
        "an interrupted repair left its journal at {path}: run `scrubd repair --commit` to finish it first"
    )]
    JournalPending {
        /// The journal.
        path: PathBuf,
    },
    /// Opening or reading the image failed.
    #[error(transparent)]
    Xfs(#[from] crate::Error),
    /// Replaying the journal failed.
    #[error("replaying the journal of an interrupted repair failed")]
    Recover(#[source] repair::RepairError),
}

/// The image's device as a [`repair::Disk`]: what commits, recovery and
/// undo write through. `sync` is an `fdatasync` of the image file.
#[derive(Clone)]
pub struct DeviceDisk(pub Arc<dyn Device>);

impl std::fmt::Debug for DeviceDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDisk")
            .field("size", &self.0.size())
            .finish()
    }
}

fn io_error(e: DeviceError) -> io::Error {
    match e {
        DeviceError::Io { source, .. } => source,
        e => io::Error::other(e),
    }
}

impl Disk for DeviceDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset).map_err(io_error)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset).map_err(io_error)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync().map_err(io_error)
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
}

/// The XFS "between states" marker: the NEEDSREPAIR incompatible feature
/// bit of the primary superblock. While it is set no kernel mounts the
/// filesystem and `xfs_repair` insists on a full repair, so a half-written
/// image is never used as if it were whole.
#[derive(Debug, Clone, Copy)]
pub struct NeedsRepair {
    /// Sector size: the superblock CRC covers the whole first sector.
    pub sector_size: usize,
}

/// Offset of `sb_features_incompat` in the superblock.
const INCOMPAT_OFFSET: usize = 216;

impl Marker for NeedsRepair {
    fn location(&self) -> (u64, usize) {
        (0, self.sector_size)
    }
    fn is_set(&self, range: &[u8]) -> bool {
        range
            .get(INCOMPAT_OFFSET..INCOMPAT_OFFSET + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .is_some_and(|b| u32::from_be_bytes(b) & features::incompat::NEEDSREPAIR != 0)
    }
    fn set(&self, range: &mut [u8], on: bool) {
        let Some(field) = range.get_mut(INCOMPAT_OFFSET..INCOMPAT_OFFSET + 4) else {
            return;
        };
        let Ok(b) = <[u8; 4]>::try_from(&*field) else {
            return;
        };
        let mut v = u32::from_be_bytes(b);
        if on {
            v |= features::incompat::NEEDSREPAIR;
        } else {
            v &= !features::incompat::NEEDSREPAIR;
        }
        field.copy_from_slice(&v.to_be_bytes());
        let _ = crc::update(range, superblock::CRC_OFFSET);
    }
}

/// What names an image in its sidecar files: UUID, block count and block
/// size from the primary superblock, which no repair changes.
pub fn identity(dev: &dyn Device) -> Result<Vec<u8>, crate::Error> {
    let mut s = vec![0u8; 512];
    dev.read_at(&mut s, 0)?;
    let sb = superblock::Superblock::from_bytes(&s)?;
    let mut id = b"xfs:".to_vec();
    id.extend_from_slice(&sb.uuid.0);
    id.extend_from_slice(&sb.dblocks.to_le_bytes());
    id.extend_from_slice(&sb.blocksize.to_le_bytes());
    Ok(id)
}

/// An image opened for repair.
pub struct Opened {
    /// The filesystem (on `disk`'s device).
    pub fs: Filesystem,
    /// The device, for commits.
    pub disk: DeviceDisk,
    /// The sidecar files.
    pub sidecars: Sidecars,
    /// What was found in the sidecars at open time.
    pub recovery: Recovery,
    /// The image's identity in its sidecars.
    pub identity: Vec<u8>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("sidecars", &self.sidecars)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

/// Opens `path` for a repair. With `write`, the image is opened read-write
/// (a block device exclusively, so a mounted one is refused), and a journal
/// left by an interrupted repair is replayed first; without it (a dry
/// run) the image is opened read-only and a pending journal is refused.
/// Either way a dirty or corrupt log is refused: the metadata on disk is
/// not the filesystem's current state.
pub fn open_for_repair(path: &Path, sidecars: &Sidecars, write: bool) -> Result<Opened, OpenError> {
    let dev: Arc<dyn Device> = if write {
        open_writable(path)?
    } else {
        Arc::from(open_image(path, Access::ReadOnly).map_err(crate::Error::from)?)
    };
    open_device(dev, sidecars, write)
}

/// [`open_for_repair`] on a device already open (tests use a device in a
/// temporary file; `write` says whether journals may be replayed).
pub fn open_device(
    dev: Arc<dyn Device>,
    sidecars: &Sidecars,
    write: bool,
) -> Result<Opened, OpenError> {
    let identity = identity(dev.as_ref())?;
    let disk = DeviceDisk(Arc::clone(&dev));
    let recovery = if sidecars.journal_pending() {
        if !write {
            return Err(OpenError::JournalPending {
                path: sidecars.journal.clone(),
            });
        }
        repair::recover(&disk, sidecars, &identity).map_err(OpenError::Recover)?
    } else {
        Recovery::Clean
    };
    let fs = Filesystem::open(Box::new(Arc::clone(&dev)))?;
    match fs.log_state() {
        LogState::Clean { .. } | LogState::Zeroed => {}
        LogState::Dirty { .. } => {
            return Err(OpenError::DirtyLog {
                state: "dirty".into(),
            });
        }
        other => {
            return Err(OpenError::DirtyLog {
                state: other.to_string(),
            });
        }
    }
    Ok(Opened {
        fs,
        disk,
        sidecars: sidecars.clone(),
        recovery,
        identity,
    })
}

/// Opens an image file or block device read-write, refusing read-only
/// images and busy devices with a clear error.
fn open_writable(path: &Path) -> Result<Arc<dyn Device>, OpenError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let meta = std::fs::metadata(path).map_err(|source| {
        crate::Error::from(DeviceError::Open {
            path: path.to_owned(),
            source,
        })
    })?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true);
    if meta.file_type().is_block_device() {
        // O_EXCL on a block device fails with EBUSY while it is mounted or
        // held open exclusively by anyone else.
        opts.custom_flags(rustix::fs::OFlags::EXCL.bits().cast_signed());
    }
    match opts.open(path) {
        Ok(f) => {
            use std::os::unix::fs::FileExt;
            let mut magic = [0u8; 4];
            if f.read_exact_at(&mut magic, 0).is_ok() && magic == [0x28, 0xb5, 0x2f, 0xfd] {
                return Err(crate::Error::from(DeviceError::CompressedReadWrite {
                    path: path.to_owned(),
                })
                .into());
            }
            let dev = crate::device::FileDevice::from_file(f, true);
            Ok(Arc::new(dev))
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            Err(OpenError::Busy {
                path: path.to_owned(),
            })
        }
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) =>
        {
            Err(OpenError::ReadOnly {
                path: path.to_owned(),
            })
        }
        Err(source) => Err(crate::Error::from(DeviceError::Open {
            path: path.to_owned(),
            source,
        })
        .into()),
    }
}

/// What [`commit_plan`] did.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The framework's statistics.
    pub stats: repair::CommitStats,
}

/// Commits `writes` to the image of `opened`: undo file, journal,
/// NEEDSREPAIR set, writes, NEEDSREPAIR cleared, journal removed.
pub fn commit_plan(opened: &Opened, writes: &WriteSet) -> Result<Committed, repair::RepairError> {
    commit_to(&opened.disk, opened, writes)
}

/// [`commit_plan`] through another disk (tests inject crashes with
/// [`repair::FaultyDisk`]).
pub fn commit_to<D: Disk>(
    disk: &D,
    opened: &Opened,
    writes: &WriteSet,
) -> Result<Committed, repair::RepairError> {
    let marker = NeedsRepair {
        sector_size: usize::try_from(opened.fs.geometry().sector_size).unwrap_or(512),
    };
    let stats = repair::commit(disk, writes, &marker, &opened.sidecars, &opened.identity)?;
    Ok(Committed { stats })
}

/// The filesystem of `fs`'s image as it will be after `writes` are
/// committed, read through a copy-on-write overlay: the image itself is
/// never written. A dry run re-checks its plan on it.
pub fn overlay(fs: &Filesystem, writes: &WriteSet) -> Result<Filesystem, crate::Error> {
    let cow = CowDevice::new(fs.shared_device());
    for (off, _, data) in writes.iter() {
        cow.write_at(data, off)?;
    }
    Filesystem::open(Box::new(cow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needsrepair_marker_sets_and_clears_with_a_valid_crc() {
        let mut s = vec![0u8; 512];
        s[0..4].copy_from_slice(&superblock::MAGIC.to_be_bytes());
        let _ = crc::update(&mut s, superblock::CRC_OFFSET);
        let m = NeedsRepair { sector_size: 512 };
        assert!(!m.is_set(&s));
        m.set(&mut s, true);
        assert!(m.is_set(&s));
        assert!(crc::verify(&s, superblock::CRC_OFFSET));
        m.set(&mut s, false);
        assert!(!m.is_set(&s));
        assert!(crc::verify(&s, superblock::CRC_OFFSET));
    }
}
