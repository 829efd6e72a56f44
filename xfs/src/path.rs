//! Resolving absolute paths to inodes.
//!
//! Intermediate symlinks are followed (at most [`MAX_SYMLINKS`], like
//! Linux's `ELOOP` limit); the final component is not (lstat semantics), so
//! a manifest entry for a symlink names the symlink itself. The walk is
//! bounded by [`MAX_STEPS`] components, so a hostile directory tree (a
//! `..` cycle, a self-referencing entry) cannot make it loop forever.

use crate::error::{Error, Result};
use crate::format::dinode::FileType;
use crate::fs::{Filesystem, Inode};
use crate::types::Ino;
use std::collections::VecDeque;

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
