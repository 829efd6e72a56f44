//! PLACEHOLDER (branch xfscrub only): the sb, agf, agfl and agi scrubbers.
use crate::fs::Filesystem;
use scrub::{Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};

macro_rules! placeholder {
    ($t:ident, $name:literal, $scope:expr, $deps:expr) => {
        /// Placeholder.
        pub struct $t;
        impl Scrubber<Filesystem> for $t {
            fn name(&self) -> &'static str {
                $name
            }
            fn scope(&self) -> Scope {
                $scope
            }
            fn depends_on(&self) -> &'static [&'static str] {
                $deps
            }
            fn scrub(
                &self,
                _: &Filesystem,
                _: &ItemId,
                _: &ScrubContext,
                _: &mut Findings,
            ) -> Result<(), ScrubError> {
                Ok(())
            }
        }
    };
}
pub(crate) use placeholder;

placeholder!(SuperblockScrub, "sb", Scope::Group, &[]);
placeholder!(AgfScrub, "agf", Scope::Group, &[]);
placeholder!(AgflScrub, "agfl", Scope::Group, &["agf"]);
placeholder!(AgiScrub, "agi", Scope::Group, &[]);
