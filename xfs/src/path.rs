//! Resolving absolute paths to inodes.
//!
//! Intermediate symlinks are followed (at most [`MAX_SYMLINKS`], like
//! Linux's `ELOOP` limit); the final component is not (lstat semantics), so
//! a manifest entry for a symlink names the symlink itself. The walk is
//! bounded by [`MAX_STEPS`] components, so a hostile directory tree (a
//! `..` cycle, a self-referencing entry) cannot make it loop forever.
//!
//! The other direction, inode numbers to path names, is
//! [`Filesystem::name_inodes`]: what a report uses to say which file a
//! finding is about.

use crate::error::{Error, Result};
use crate::format::dinode::FileType;
use crate::format::dir2::ftype;
use crate::fs::{Filesystem, Inode};
use crate::types::Ino;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most symlinks followed while resolving one path.
pub const MAX_SYMLINKS: u32 = 40;
/// Most path components visited while resolving one path.
pub const MAX_STEPS: u32 = 65536;

impl Filesystem {
    /// The root directory's inode number.
    pub fn root_ino(&self) -> Ino {
        self.geometry().root_ino
    }

    /// Resolves absolute `path` (`/a/b/c`) to an inode number without
    /// following a final symlink.
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let not_found = || Error::NotFound {
            path: path.to_owned(),
        };
        let mut components: VecDeque<Vec<u8>> = split(path.as_bytes());
        let root = self.root_ino();
        let mut cur = root;
        let mut links = 0u32;
        let mut steps = 0u32;
        while let Some(name) = components.pop_front() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(Error::LimitExceeded {
                    what: path.to_owned(),
                    reason: format!("more than {MAX_STEPS} path components"),
                });
            }
            let dir = self.read_inode_verified(cur)?;
            if dir.core.file_type() != FileType::Directory {
                return Err(Error::NotADirectory {
                    path: path.to_owned(),
                });
            }
            let child = if name == b".." && cur == root {
                root
            } else {
                self.lookup(&dir, &name)?.ok_or_else(not_found)?.ino
            };
            if !components.is_empty() {
                let inode = self.read_inode_verified(child)?;
                if inode.core.file_type() == FileType::Symlink {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::LimitExceeded {
                            what: path.to_owned(),
                            reason: format!("more than {MAX_SYMLINKS} symlinks"),
                        });
                    }
                    let target = self.read_symlink(&inode)?;
                    let mut parts = split(&target);
                    while let Some(p) = parts.pop_back() {
                        components.push_front(p);
                    }
                    cur = if target.first() == Some(&b'/') {
                        root
                    } else {
                        cur
                    };
                    continue;
                }
            }
            cur = child;
        }
        Ok(cur)
    }

    /// Resolves `path` and reads its inode (verified).
    pub fn resolve_inode(&self, path: &str) -> Result<Inode> {
        let ino = self.resolve(path)?;
        self.read_inode_verified(ino)
    }
}

/// Most directory levels [`Filesystem::name_inodes`] descends.
pub const MAX_NAME_DEPTH: usize = 4096;

/// One directory on the naming walk's stack.
struct Frame {
    /// The directory.
    ino: Ino,
    /// Its name in its parent (empty for the root).
    name: Vec<u8>,
    /// Its entries.
    entries: Vec<crate::dir::DirEntry>,
    /// The next entry to visit.
    next: usize,
}

impl Filesystem {
    /// Path names of the inodes in `wanted`, for reports: one depth-first
    /// walk of the directory tree from the root, stopping as soon as every
    /// wanted inode is named. An inode with several links gets the first
    /// name the walk meets; one the walk cannot reach (an orphan, or below
    /// a directory that cannot be read) is left out.
    ///
    /// Damage is tolerated, never trusted: a directory is descended into
    /// only when its own `..` names the directory the walk came from, so a
    /// directory cycle or a directory with two parents is visited at most
    /// once; entries of damaged blocks count as far as they decode. Memory
    /// is the entries of the directories on the current path (at most
    /// [`MAX_NAME_DEPTH`] of them), not a table of the whole tree.
    pub fn name_inodes(&self, wanted: &BTreeSet<u64>) -> BTreeMap<u64, String> {
        let mut out = BTreeMap::new();
        let root = self.root_ino();
        if wanted.contains(&root.0) {
            out.insert(root.0, "/".to_owned());
        }
        let Some(entries) = self.dir_entries(root) else {
            return out;
        };
        let mut stack = vec![Frame {
            ino: root,
            name: Vec::new(),
            entries,
            next: 0,
        }];
        while out.len() < wanted.len() {
            let Some(top) = stack.last_mut() else { break };
            let Some(e) = top.entries.get(top.next).cloned() else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let parent = top.ino;
            if e.name == b"." || e.name == b".." {
                continue;
            }
            if wanted.contains(&e.ino.0) && !out.contains_key(&e.ino.0) {
                out.insert(e.ino.0, join(&stack, &e.name));
            }
            if stack.len() >= MAX_NAME_DEPTH || e.ftype.is_some_and(|t| t != ftype::DIR) {
                continue;
            }
            let Some(entries) = self.dir_entries(e.ino) else {
                continue;
            };
            let back = entries.iter().find(|x| x.name == b"..").map(|x| x.ino);
            if back != Some(parent) {
                continue;
            }
            stack.push(Frame {
                ino: e.ino,
                name: e.name,
                entries,
                next: 0,
            });
        }
        out
    }

    /// The entries of `ino` if it is a directory that can be read at all.
    fn dir_entries(&self, ino: Ino) -> Option<Vec<crate::dir::DirEntry>> {
        let inode = self.read_inode(ino).ok()?.value;
        if inode.core.file_type() != FileType::Directory {
            return None;
        }
        Some(self.read_dir_checked(&inode).ok()?.value)
    }
}

/// The path of `name` inside the directory at the top of `stack`.
fn join(stack: &[Frame], name: &[u8]) -> String {
    let mut s = String::new();
    for f in stack.iter().skip(1) {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(&f.name));
    }
    s.push('/');
    s.push_str(&String::from_utf8_lossy(name));
    s
}

/// Splits a path into components, dropping empty ones and `.`.
fn split(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        let v: Vec<Vec<u8>> = split(b"//a/./b/../c/").into_iter().collect();
        assert_eq!(
            v,
            vec![b"a".to_vec(), b"b".to_vec(), b"..".to_vec(), b"c".to_vec()]
        );
        assert!(split(b"/").is_empty());
    }
}
