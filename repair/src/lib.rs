//! The online repair framework: building a replacement for a damaged
//! structure and making it live atomically.
//!
//! # What it is for
//!
//! A repairer rebuilds a structure from redundant metadata: it stages the
//! new records, computes the new structure's geometry, takes blocks only
//! from space proven free ([`Reservation`]), bulk-loads the new structure
//! into them as staged writes ([`build_tree`]), stages the header updates
//! that make it live, and hands the whole [`WriteSet`] to [`commit`]. The
//! old structure's blocks are then freed by a later, separate update
//! ([`reap`] decides which).
//!
//! # What it is not for
//!
//! It knows no filesystem. What a structure's records are, where its header
//! lives and what marks an image as "being repaired" are the filesystem
//! crate's business (a [`Marker`] and a [`Disk`]).
//!
//! # Invariants
//!
//! - Nothing reaches the image that is not first in the undo file and then
//!   in a complete, checksummed journal; a crash at any point leaves a state
//!   that [`recover`] turns into the committed one.
//! - While writes are being applied the image carries its marker, so no
//!   other software uses a half-written image.
//! - Every commit can be undone exactly ([`undo`]), repeatedly.
#![forbid(unsafe_code)]

mod build;
mod commit;
mod disk;
mod error;
mod reap;
mod reserve;
pub mod sidecar;
mod writeset;

pub use build::{Builder, build_tree};
pub use commit::{
    CommitStats, Marker, NoMarker, Recovery, Sidecars, UndoStats, commit, recover, undo,
};
pub use disk::{Disk, FaultyDisk, MemDisk};
pub use error::RepairError;
pub use reap::{Reaped, reap};
pub use reserve::Reservation;
pub use writeset::{Phase, WriteSet};
