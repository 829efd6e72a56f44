//! XFS scrubbers: one file per metadata structure, named as the kernel's
//! `fs/xfs/scrub/` names them, each a [`scrub::Scrubber`] over a
//! [`Filesystem`].
//!
//! | scrubber | file | checks |
//! |---|---|---|
//! | `sb` | [`agheader`] | primary superblock; each secondary against the primary |
//! | `agf`, `agfl`, `agi` | [`agheader`] | AG headers and their counters against the trees |
//! | `bnobt`, `cntbt` | [`alloc`] | free-space btrees |
//! | `inobt`, `finobt` | [`ialloc`] | inode btrees |
//! | `rmapbt` | [`rmap`] | reverse-mapping btree |
//! | `refcountbt` | [`refcount`] | reference count btree |
//! | `inode` | [`inode`] | the core of every allocated inode |
//! | `bmapbtd`, `bmapbta` | [`bmap`] | data and attr fork mappings and bmbts (no CoW fork exists in an image) |
//! | `rmapbt-shadow` | [`rmap_shadow`] | the rmapbt against a reverse map built from every owner |
//! | `fscounters` | [`fscounters`] | superblock summary counters against the AGs |
//! | `directory` | [`dir`] | directories of each AG: blocks, hash index, entries |
//! | `symlink` | [`symlink`] | symbolic link targets of each AG |
//! | `nlinks` | [`nlinks`] | every inode's link count against the directory entries |
//! | `dirtree` | [`dirtree`] | the tree: one parent per directory, every inode reachable |
//! | `xattr` | [`attr`] | extended attributes: shortform, leaf and node forks, remote values |
//!
//! Every btree scrubber walks its tree once with the engine's verifier
//! (structure), checks each record on its own, and cross-references it
//! with the AG's other metadata ([`xref`]) in the same walk.

pub mod agheader;
pub mod alloc;
pub mod attr;
pub mod bmap;
pub(crate) mod common;
pub mod dir;
pub mod dirtree;
pub mod fscounters;
pub mod ialloc;
pub mod inode;
pub mod nlinks;
pub mod refcount;
pub mod rmap;
pub mod rmap_shadow;
pub(crate) mod shared_extents;
pub mod symlink;
pub(crate) mod xref;

use crate::fs::Filesystem;
use scrub::{Registry, ScrubTarget};

impl ScrubTarget for Filesystem {
    fn group_count(&self) -> u64 {
        u64::from(self.geometry().ag_count)
    }
}

/// Every XFS scrubber, in report order, with its dependencies.
pub fn registry() -> Registry<Filesystem> {
    let mut r = Registry::new();
    let all: Vec<Box<dyn scrub::Scrubber<Filesystem>>> = vec![
        Box::new(agheader::SuperblockScrub),
        Box::new(agheader::AgfScrub),
        Box::new(agheader::AgflScrub),
        Box::new(agheader::AgiScrub),
        Box::new(alloc::BnobtScrub),
        Box::new(alloc::CntbtScrub),
        Box::new(ialloc::InobtScrub),
        Box::new(ialloc::FinobtScrub),
        Box::new(rmap::RmapbtScrub),
        Box::new(refcount::RefcountbtScrub),
        Box::new(inode::InodeScrub),
        Box::new(bmap::BmapDataScrub),
        Box::new(bmap::BmapAttrScrub),
        Box::new(rmap_shadow::RmapShadowScrub),
        Box::new(fscounters::FsCountersScrub),
        Box::new(dir::DirectoryScrub),
        Box::new(symlink::SymlinkScrub),
        Box::new(nlinks::NlinksScrub),
        Box::new(dirtree::DirtreeScrub),
        Box::new(attr::XattrScrub),
    ];
    for s in all {
        // The list above is fixed and ordered so that every dependency is
        // registered first; a failure here is a bug caught by the tests.
        if let Err(e) = r.register(s) {
            panic!("XFS scrubber registry: {e}");
        }
    }
    r
}
