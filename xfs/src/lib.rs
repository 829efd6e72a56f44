//! Reader, checker and repairer of XFS v5 filesystem images.
//!
//! Work in progress: see issue 4.
#![forbid(unsafe_code)]
