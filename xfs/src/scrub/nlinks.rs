//! The `nlinks` scrubber: every allocated inode's link count against the
//! names the directories hold for it (the kernel's
//! `fs/xfs/scrub/nlinks.c`, `xfs_repair`'s phase 7).
//!
//! One pass over every directory counts, per inode, the entries naming it:
//! a file's count is the number of its names; a directory's is its name
//! in the parent, its own `.`, and the `..` of each subdirectory (so the
//! root, which no directory names and whose `..` is itself, counts 2 plus
//! its subdirectories). The counts are staged in a sparse array indexed
//! by inode number, charged to the check's memory budget, so a filesystem
//! with many inodes spills them to disk instead of growing the heap. A
//! second pass compares each allocated inode's `nlink` with its count.
//!
//! Inodes no directory names are left to the `dirtree` scrubber (they are
//! what `xfs_repair` moves to `lost+found`); the quota and realtime
//! metadata inodes, which live outside the directory tree, are skipped.

use super::common::read_error;
use super::dir::{InodeIndex, path_of, read_inode_core};
use crate::format::dinode::FileType;
use crate::fs::Filesystem;
use crate::types::Ino;
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use xfile::{MemoryBudget, SparseXfArray, StagingStats};

/// Checks every inode's link count against the directory entries.
pub struct NlinksScrub;

impl Scrubber<Filesystem> for NlinksScrub {
    fn name(&self) -> &'static str {
        "nlinks"
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["directory"]
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        _item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let table = LinkCounts::count(fs, ctx.budget(), &|| ctx.check_cancelled())?;
        if !table.incomplete.is_empty() {
            out.push(Finding::new(
                FindingKind::Incomplete,
                "nlinks",
                "nlinks.incomplete",
                format!(
                    "link counts cannot be judged: {}",
                    table.incomplete.join("; ")
                ),
            ));
            return Ok(());
        }
        let mut idx = InodeIndex::new(fs);
        let skip = metadata_inodes(fs);
        for agno in fs.geometry().ags() {
            let Ok(inos) = idx.ag_allocated(agno.0) else {
                continue;
            };
            for ino in inos {
                ctx.check_cancelled()?;
                if skip.contains(&ino.0) {
                    continue;
                }
                let Some(inode) = read_inode_core(fs, ino)? else {
                    continue;
                };
                if inode.core.file_type() == FileType::Free {
                    continue;
                }
                let counted = table.links(ino)?;
                let nlink = inode.core.nlink;
                if counted == 0 || u64::from(nlink) == u64::from(counted) {
                    continue;
                }
                let path = table.path(fs, ino)?;
                let shown = path.as_deref().map_or_else(
                    || format!("inode {}", ino.0),
                    |p| format!("inode {} ({p})", ino.0),
                );
                let mut f = Finding::new(
                    FindingKind::Corrupt,
                    "nlinks",
                    "nlinks.mismatch",
                    format!(
                        "{shown} has a link count of {nlink}, but the directories hold {counted} links to it"
                    ),
                )
                .group(u64::from(agno.0))
                .inode(ino.0)
                .field("core.nlinkv2", counted, nlink);
                if let Some(p) = path {
                    f = f.path(p);
                }
                out.push(f);
            }
        }
        Ok(())
    }
}

/// The quota and realtime metadata inodes, which no directory names.
pub(crate) fn metadata_inodes(fs: &Filesystem) -> Vec<u64> {
    let sb = fs.superblock();
    [sb.uquotino, sb.gquotino, sb.pquotino, sb.rbmino, sb.rsumino]
        .into_iter()
        .filter(|&i| i != 0 && i != u64::MAX)
        .collect()
}

/// Links counted per inode over every directory, staged in the memory
/// budget.
pub struct LinkCounts {
    links: SparseXfArray<u32>,
    /// For each named inode, the first directory found naming it (for
    /// paths in reports).
    parents: SparseXfArray<u64>,
    /// Why the count may be short (directories that could not be read).
    pub incomplete: Vec<String>,
}

impl LinkCounts {
    /// Counts the links to every inode by reading every allocated
    /// directory. `cancelled` is polled once per inode.
    pub fn count(
        fs: &Filesystem,
        budget: &MemoryBudget,
        cancelled: &dyn Fn() -> Result<(), ScrubError>,
    ) -> Result<LinkCounts, ScrubError> {
        let mut t = LinkCounts {
            links: SparseXfArray::new("nlinks", budget).map_err(ScrubError::operational)?,
            parents: SparseXfArray::new("nlinks-parents", budget)
                .map_err(ScrubError::operational)?,
            incomplete: Vec::new(),
        };
        let mut idx = InodeIndex::new(fs);
        for agno in fs.geometry().ags() {
            let inos = match idx.ag_allocated(agno.0) {
                Ok(v) => v,
                Err(why) => {
                    t.incomplete.push(format!(
                        "the inodes of AG {} cannot be listed: {why}",
                        agno.0
                    ));
                    continue;
                }
            };
            for ino in inos {
                cancelled()?;
                let Some(inode) = read_inode_core(fs, ino)? else {
                    continue;
                };
                if inode.core.file_type() != FileType::Directory {
                    continue;
                }
                let entries = match fs.read_dir_checked(&inode) {
                    Ok(c) => c.value,
                    Err(e @ crate::Error::Device(_)) => return Err(read_error(e)),
                    Err(e) => {
                        t.incomplete
                            .push(format!("directory {} cannot be read: {e}", ino.0));
                        continue;
                    }
                };
                for e in entries {
                    let target = if e.name == b"." {
                        if e.ino != ino {
                            continue;
                        }
                        ino
                    } else {
                        e.ino
                    };
                    if fs.geometry().ino_split(target).is_none() {
                        continue;
                    }
                    t.add(target)?;
                    if e.name != b"."
                        && e.name != b".."
                        && !t
                            .parents
                            .contains(target.0)
                            .map_err(ScrubError::operational)?
                    {
                        t.parents
                            .set(target.0, ino.0)
                            .map_err(ScrubError::operational)?;
                    }
                }
            }
        }
        Ok(t)
    }

    fn add(&mut self, ino: Ino) -> Result<(), ScrubError> {
        let n = self.links.get(ino.0).map_err(ScrubError::operational)?;
        self.links
            .set(ino.0, n.unwrap_or(0).saturating_add(1))
            .map_err(ScrubError::operational)
    }

    /// The links counted to `ino`.
    pub fn links(&self, ino: Ino) -> Result<u32, ScrubError> {
        Ok(self
            .links
            .get(ino.0)
            .map_err(ScrubError::operational)?
            .unwrap_or(0))
    }

    /// The staging statistics of the link table.
    pub fn stats(&self) -> StagingStats {
        self.links.stats()
    }

    /// The path of `ino` through the first directory found naming it.
    fn path(&self, fs: &Filesystem, ino: Ino) -> Result<Option<String>, ScrubError> {
        if ino == fs.root_ino() {
            return Ok(Some("/".to_owned()));
        }
        let Some(parent) = self.parents.get(ino.0).map_err(ScrubError::operational)? else {
            return Ok(None);
        };
        let Some(dir) = path_of(fs, Ino(parent)) else {
            return Ok(None);
        };
        let Ok(c) = fs.read_inode(Ino(parent)) else {
            return Ok(None);
        };
        let Ok(entries) = fs.read_dir_checked(&c.value) else {
            return Ok(None);
        };
        Ok(entries
            .value
            .iter()
            .find(|e| e.ino == ino && e.name != b"." && e.name != b"..")
            .map(|e| {
                let sep = if dir.ends_with('/') { "" } else { "/" };
                format!("{dir}{sep}{}", e.name_lossy())
            }))
    }
}
