//! The `dirtree` scrubber: the directory tree as a whole (the kernel's
//! `fs/xfs/scrub/dirtree.c`, `xfs_repair`'s phase 6 connectivity pass).
//!
//! A breadth-first walk from the root reaches every directory exactly
//! once: a directory named a second time (a hard link to a directory, or
//! an entry naming an ancestor: a cycle) is damage, and so is a `..` that
//! does not name the directory holding the entry. Then every allocated
//! inode the walk did not reach is reported: `xfs_repair` would move it to
//! `lost+found`. Directories are tracked in a map (one entry per
//! directory); the set of reached inodes is staged in the memory budget.

use super::common::read_error;
use super::dir::{InodeIndex, read_inode_core};
use super::nlinks::metadata_inodes;
use crate::format::dinode::FileType;
use crate::fs::Filesystem;
use crate::types::Ino;
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
use std::collections::{HashMap, VecDeque};
use xfile::SparseXfArray;

/// Checks that the directory tree is a tree that reaches every inode.
pub struct DirtreeScrub;

impl Scrubber<Filesystem> for DirtreeScrub {
    fn name(&self) -> &'static str {
        "dirtree"
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
        let op = ScrubError::operational;
        let root = fs.root_ino();
        let mut reached: SparseXfArray<u8> =
            SparseXfArray::new("dirtree-reached", ctx.budget()).map_err(op)?;
        // Directory -> the directory whose entry reached it.
        let mut parent_of: HashMap<u64, u64> = HashMap::new();
        let mut queue: VecDeque<(Ino, String)> = VecDeque::new();
        let mut incomplete = Vec::new();
        parent_of.insert(root.0, root.0);
        reached.set(root.0, 1).map_err(op)?;
        queue.push_back((root, "/".to_owned()));
        while let Some((dir, path)) = queue.pop_front() {
            ctx.check_cancelled()?;
            let Some(inode) = read_inode_core(fs, dir)? else {
                incomplete.push(format!("directory {} ({path}) cannot be read", dir.0));
                continue;
            };
            if inode.core.file_type() != FileType::Directory {
                continue;
            }
            let entries = match fs.read_dir_checked(&inode) {
                Ok(c) => c.value,
                Err(e @ crate::Error::Device(_)) => return Err(read_error(e)),
                Err(e) => {
                    incomplete.push(format!("directory {} ({path}): {e}", dir.0));
                    continue;
                }
            };
            let expected_parent = parent_of.get(&dir.0).copied().unwrap_or(root.0);
            for e in entries {
                if e.name == b"." {
                    continue;
                }
                if e.name == b".." {
                    if e.ino.0 != expected_parent {
                        out.push(
                            Finding::new(
                                FindingKind::Corrupt,
                                "dirtree",
                                "dirtree.parent",
                                format!(
                                    "directory {} ({path}): \"..\" names inode {}, but the directory is entered from inode {expected_parent}",
                                    dir.0, e.ino.0
                                ),
                            )
                            .inode(dir.0)
                            .path(path.clone())
                            .field("..", expected_parent, e.ino.0),
                        );
                    }
                    continue;
                }
                if fs.geometry().ino_split(e.ino).is_none() {
                    continue;
                }
                reached.set(e.ino.0, 1).map_err(op)?;
                let Some(child) = read_inode_core(fs, e.ino)? else {
                    continue;
                };
                if child.core.file_type() != FileType::Directory {
                    continue;
                }
                let sep = if path.ends_with('/') { "" } else { "/" };
                let child_path = format!("{path}{sep}{}", e.name_lossy());
                if let Some(&first) = parent_of.get(&e.ino.0) {
                    let what = if e.ino == root
                        || first != dir.0 && is_ancestor(&parent_of, e.ino.0, dir.0)
                    {
                        "a cycle: the entry names one of its own ancestors"
                    } else {
                        "a directory may have only one parent"
                    };
                    out.push(
                        Finding::new(
                            FindingKind::Corrupt,
                            "dirtree",
                            "dirtree.multiple-parents",
                            format!(
                                "{child_path} names directory {}, which is already reached from directory {first}: {what}",
                                e.ino.0
                            ),
                        )
                        .inode(e.ino.0)
                        .path(child_path),
                    );
                    continue;
                }
                parent_of.insert(e.ino.0, dir.0);
                queue.push_back((e.ino, child_path));
            }
        }
        if !incomplete.is_empty() {
            out.push(Finding::new(
                FindingKind::Incomplete,
                "dirtree",
                "dirtree.incomplete",
                format!(
                    "the tree walk could not read every directory, so unreached inodes are not reported: {}",
                    incomplete.join("; ")
                ),
            ));
            return Ok(());
        }

        let skip = metadata_inodes(fs);
        let mut idx = InodeIndex::new(fs);
        for agno in fs.geometry().ags() {
            let Ok(inos) = idx.ag_allocated(agno.0) else {
                continue;
            };
            for ino in inos {
                ctx.check_cancelled()?;
                if skip.contains(&ino.0) || reached.contains(ino.0).map_err(op)? {
                    continue;
                }
                let Some(inode) = read_inode_core(fs, ino)? else {
                    continue;
                };
                let ft = inode.core.file_type();
                // An allocated inode nothing links to is an open-but-unlinked
                // file (on the AGI's unlinked list), not a lost one.
                if ft == FileType::Free || inode.core.nlink == 0 {
                    continue;
                }
                let what = if ft == FileType::Directory {
                    "directory"
                } else {
                    "inode"
                };
                out.push(
                    Finding::new(
                        FindingKind::Corrupt,
                        "dirtree",
                        "dirtree.disconnected",
                        format!(
                            "{what} {} ({ft:?}, {} links) is not reachable from the root; it would be moved to lost+found",
                            ino.0, inode.core.nlink
                        ),
                    )
                    .group(u64::from(agno.0))
                    .inode(ino.0),
                );
            }
        }
        Ok(())
    }
}

/// Whether `a` is `d` or one of its ancestors in the walk so far.
fn is_ancestor(parent_of: &HashMap<u64, u64>, a: u64, d: u64) -> bool {
    let mut cur = d;
    for _ in 0..parent_of.len().saturating_add(1) {
        if cur == a {
            return true;
        }
        match parent_of.get(&cur) {
            Some(&p) if p != cur => cur = p,
            _ => return false,
        }
    }
    false
}
