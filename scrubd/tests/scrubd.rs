//! `scrubd` end to end, one test binary: `info` against xfs_db, `check`
//! reports (insta snapshots of every clean fixture and of one corrupt image
//! per structure), exit codes, and Ctrl-C.

#[path = "scrubd/cancel.rs"]
mod cancel;
#[path = "scrubd/check.rs"]
mod check;
#[path = "scrubd/common.rs"]
mod common;
#[path = "scrubd/exit_codes.rs"]
mod exit_codes;
#[path = "scrubd/info.rs"]
mod info;
#[path = "scrubd/repair.rs"]
mod repair;
