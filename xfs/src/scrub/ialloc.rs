//! PLACEHOLDER (branch xfscrub only): the inobt and finobt scrubbers.
use super::agheader::placeholder;
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
placeholder!(InobtScrub, "inobt", Scope::Group, &["agi"]);
placeholder!(FinobtScrub, "finobt", Scope::Group, &["agi"]);
