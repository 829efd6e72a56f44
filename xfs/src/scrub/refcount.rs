//! PLACEHOLDER (branch xfscrub only): the refcountbt scrubber.
use super::agheader::placeholder;
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};
placeholder!(RefcountbtScrub, "refcountbt", Scope::Group, &["agf"]);
