//! One B+tree engine for staging btrees and on-disk btrees.
//!
//! # What it is for
//!
//! Online fsck stages shadow copies of metadata in btrees that live in
//! pageable memory, and checks, reads and rebuilds the filesystem's own
//! on-disk btrees. This crate runs the *same* code for both: a [`Btree`] is
//! generic over
//!
//! - a [`BlockStore`]: where blocks live (plain memory, staging memory that
//!   spills to disk, or a region of a filesystem image), and
//! - a [`BtreeFormat`]: what a block looks like (header fields and their
//!   checks, record / key / pointer encodings, key order).
//!
//! It gives lookups (exact, at-or-below, at-or-above), inserts, updates and
//! deletes with rebalancing, cursors in both directions, range queries, and
//! for *overlapping* trees (node entries with low and high keys) queries for
//! every record whose interval meets a range. The [`bload`] module builds
//! whole trees bottom-up from sorted records (the way repairs rebuild
//! metadata) and the [`verify`] module walks any tree once and reports every
//! structural problem it finds.
//!
//! # What it is not for
//!
//! It knows no filesystem. Formats of real on-disk trees are defined by
//! their filesystem crates, and committing a newly loaded root is the
//! caller's business. Inline roots (a root held by an owner such as an
//! inode) can be read and verified but not changed here.
//!
//! # Invariants
//!
//! - Blocks are untrusted: every read is checked (size, level, record count,
//!   checksum, format fields) before use, so corruption gives an error or a
//!   [`verify::Problem`], never a panic or an endless loop.
//! - Descents follow strictly decreasing levels and verification visits each
//!   block at most once, so all work is bounded.
//! - Records in a tree have distinct keys.
//!
//! # Example
//!
//! ```
//! use xfbtree::{Btree, Lookup, MemStore, formats::U64Map};
//!
//! let mut tree = Btree::create(MemStore::new(512), U64Map::default())?;
//! for k in [5u64, 1, 9, 3] {
//!     tree.insert(&(k, k * 10))?;
//! }
//! assert_eq!(tree.get(&9)?, Some((9, 90)));
//! assert_eq!(tree.lookup(&4, Lookup::Le)?, Some((3, 30)));
//! let problems = {
//!     let mut p = xfbtree::verify::Problems::default();
//!     tree.verify(&mut p);
//!     p.0
//! };
//! assert!(problems.is_empty());
//! # Ok::<(), xfbtree::BtreeError>(())
//! ```
#![forbid(unsafe_code)]

pub mod bload;
mod cursor;
mod error;
pub mod format;
pub mod formats;
mod layout;
mod node;
mod query;
pub mod store;
mod tree;
pub mod verify;
mod xfile_store;

pub use bload::{BloadOptions, BloadTarget, BuiltTree, Geometry, bulk_load};
pub use cursor::{Cursor, Range};
pub use error::BtreeError;
pub use format::{BlockHeader, BtreeFormat, FieldProblem, Trust};
pub use layout::Layout;
pub use node::KeyRange;
pub use store::{BlockAddr, BlockStore, MemStore, StoreError};
pub use tree::{Btree, InlineRoot, Lookup, NodeEntry, Root};
pub use xfile_store::XfileStore;
