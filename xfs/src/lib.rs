//! Reader of XFS v5 filesystem images: on-disk formats, verifiers,
//! geometry, image access, log state and a path-level read API.
//!
//! This crate is the XFS client of the scrubd framework. It is for reading
//! and (later) checking and repairing *unmounted images* of XFS v5
//! filesystems, the format `mkfs.xfs` writes today. It is not a mountable
//! filesystem, does not replay the log, and refuses v4 filesystems and
//! features whose on-disk changes it does not understand.
//!
//! Invariant: every on-disk number is untrusted. Decoding never panics,
//! every verifier reports all the problems it finds as data
//! ([`format::Problem`]), and every walk over on-disk pointers (directory
//! blocks, extent lists, log scans, path components) is bounded.
//!
//! Entry points: [`device::open_image`] opens an image (plain or
//! zstd-compressed), [`Filesystem::open`] validates the superblock and the
//! geometry and finds the log state, and the `Filesystem` methods read AG
//! headers, inodes, directories, files and symlinks.
#![forbid(unsafe_code)]

pub mod bmap;
pub mod btree;
pub mod device;
pub mod dir;
pub mod error;
pub mod file;
pub mod format;
pub mod fs;
pub mod geometry;
pub mod log;
pub mod path;
pub mod repair;
pub mod scrub;
pub mod types;

pub use error::{Error, Result};
pub use fs::{Filesystem, Inode};
