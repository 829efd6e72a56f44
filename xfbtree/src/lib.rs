//! One B+tree engine for staging btrees and on-disk btrees.
//!
//! Work in progress: see issue 3.
#![forbid(unsafe_code)]
