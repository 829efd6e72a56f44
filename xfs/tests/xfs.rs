//! Integration tests of the xfs crate against images made by xfsprogs.
//!
//! xfsprogs (mkfs.xfs, xfs_db) is the oracle: superblock fields must print
//! exactly as xfs_db prints them, whatever xfs_db's verifiers flag after a
//! fuzz must be flagged by ours, and files written into an image must read
//! back byte for byte through the path API.

#[path = "xfs/agreement.rs"]
mod agreement;
#[path = "xfs/block_cache.rs"]
mod block_cache;
#[path = "xfs/common.rs"]
mod common;
#[path = "xfs/damage.rs"]
mod damage;
#[path = "xfs/fixtures.rs"]
mod fixtures;
#[path = "xfs/fuzz_smoke.rs"]
mod fuzz_smoke;
#[path = "xfs/geometry.rs"]
mod geometry;
#[path = "xfs/log.rs"]
mod log;
#[path = "xfs/mutate.rs"]
mod mutate;
#[path = "xfs/paths.rs"]
mod paths;
#[path = "xfs/repair.rs"]
mod repair;
#[path = "xfs/scrub_agheader.rs"]
mod scrub_agheader;
#[path = "xfs/scrub_alloc.rs"]
mod scrub_alloc;
#[path = "xfs/scrub_attr.rs"]
mod scrub_attr;
#[path = "xfs/scrub_dir.rs"]
mod scrub_dir;
#[path = "xfs/scrub_inode.rs"]
mod scrub_inode;
#[path = "xfs/scrub_rmap.rs"]
mod scrub_rmap;
#[path = "xfs/scrub_rmap_shadow.rs"]
mod scrub_rmap_shadow;
