//! PLACEHOLDER (branch xfscrub only): the rmapbt scrubber.
use super::agheader::placeholder;
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
placeholder!(RmapbtScrub, "rmapbt", Scope::Group, &["agf"]);
