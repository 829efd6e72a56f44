//! PLACEHOLDER (branch xfscrub only): the fscounters scrubber.
use super::agheader::placeholder;
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
placeholder!(FsCountersScrub, "fscounters", Scope::Whole, &["agf", "agi"]);
