//! PLACEHOLDER (branch xfscrub only): the bnobt and cntbt scrubbers.
use super::agheader::placeholder;
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
placeholder!(BnobtScrub, "bnobt", Scope::Group, &["agf"]);
placeholder!(CntbtScrub, "cntbt", Scope::Group, &["agf"]);
