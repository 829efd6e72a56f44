//! Pageable staging memory under a hard budget.
//!
//! Work in progress: see issue 2.
#![forbid(unsafe_code)]
