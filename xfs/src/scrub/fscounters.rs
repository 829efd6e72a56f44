//! The `fscounters` scrubber: the primary superblock's summary counters
//! (`sb_icount`, `sb_ifree`, `sb_fdblocks`) against the sums over every
//! AG's headers (the kernel's `fs/xfs/scrub/fscounters.c` and
//! `xfs_repair`'s phase 2 totals).
//!
//! With lazy superblock counters (always on v5) XFS updates these fields
//! on disk only when it writes the superblock, so they are exact after a
//! clean unmount and stale while the log holds changes. After a clean
//! unmount the kernel trusts them at mount (it recomputes them only after
//! log recovery or when they are impossible), so a difference is damage;
//! with a log still to replay it is only preened, because mounting
//! recomputes the counters from the AG headers anyway.
//!
//! The per-AG values come from the AGF and AGI; an AG whose header the
//! `agf`/`agi` scrubbers found damaged cannot be added up, and the
//! comparison it would feed is reported as `xref-failed`.

use super::common::read_error;
use crate::format::{agf, agi};
use crate::fs::Filesystem;
use crate::log::LogState;
use scrub::{
    Finding, FindingKind, Findings, Health, ItemId, Scope, ScrubContext, ScrubError, Scrubber,
};

/// Checks the superblock summary counters against the AG headers.
pub struct FsCountersScrub;

impl Scrubber<Filesystem> for FsCountersScrub {
    fn name(&self) -> &'static str {
        "fscounters"
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["agf", "agi"]
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        _item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let geo = fs.geometry();
        let sb = fs.superblock();

        // Values no filesystem can have, whatever the AGs say
        // (xchk_fscounters' "obviously wrong" checks).
        let (icount_min, icount_max) = geo.icount_range();
        if sb.icount < icount_min || sb.icount > icount_max {
            out.push(damage(
                "icount",
                format!(
                    "the superblock counts {} inodes, outside the {icount_min}..={icount_max} this filesystem can hold",
                    sb.icount
                ),
                format!("{icount_min}..={icount_max}"),
                sb.icount,
            ));
        }
        if sb.ifree > sb.icount {
            out.push(damage(
                "ifree",
                format!(
                    "the superblock counts {} free inodes but only {} inodes",
                    sb.ifree, sb.icount
                ),
                format!("<= icount {}", sb.icount),
                sb.ifree,
            ));
        }
        if sb.fdblocks > sb.dblocks {
            out.push(damage(
                "fdblocks",
                format!(
                    "the superblock counts {} free blocks in a filesystem of {} blocks",
                    sb.fdblocks, sb.dblocks
                ),
                format!("<= dblocks {}", sb.dblocks),
                sb.fdblocks,
            ));
        }

        // Sum the AG headers as xfs_repair and the kernel do: every block
        // not in use is free space, on the free list, or a free-space or
        // rmap btree block beyond the roots (xfs_repair's scan_ags;
        // xchk_fscount_aggregate_agcounts before the in-core reservations).
        let (mut icount, mut ifree, mut fdblocks) = (0u64, 0u64, 0u64);
        let (mut bad_agf, mut bad_agi) = (Vec::new(), Vec::new());
        for agno in geo.ags() {
            ctx.check_cancelled()?;
            let g = Some(u64::from(agno.0));
            let f = fs.read_agf(agno).map_err(read_error)?;
            if f.value.magicnum == agf::MAGIC
                && f.problems.is_empty()
                && ctx.health_of("agf", g) != Health::Sick
            {
                fdblocks = fdblocks
                    .saturating_add(u64::from(f.value.freeblks))
                    .saturating_add(u64::from(f.value.flcount))
                    .saturating_add(u64::from(f.value.btreeblks));
            } else {
                bad_agf.push(agno.0);
            }
            let i = fs.read_agi(agno).map_err(read_error)?;
            if i.value.magicnum == agi::MAGIC
                && i.problems.is_empty()
                && ctx.health_of("agi", g) != Health::Sick
            {
                icount = icount.saturating_add(u64::from(i.value.count));
                ifree = ifree.saturating_add(u64::from(i.value.freecount));
            } else {
                bad_agi.push(agno.0);
            }
        }

        let clean = matches!(fs.log_state(), LogState::Clean { .. } | LogState::Zeroed);
        let mut compare = |field: &'static str, recorded: u64, counted: u64, what: &str| {
            if recorded == counted {
                return;
            }
            let (kind, why) = if clean {
                (
                    FindingKind::Corrupt,
                    "the filesystem was unmounted cleanly, so the kernel will trust the wrong value",
                )
            } else {
                (
                    FindingKind::Preen,
                    "the log is not clean and mounting recomputes the counter from the AG headers",
                )
            };
            out.push(
                Finding::new(
                    kind,
                    "fscounters",
                    format!("fscounters.{field}"),
                    format!(
                        "the superblock counts {recorded} {what}, but the AG headers add up to {counted}: {why}"
                    ),
                )
                .group(0)
                .block(0)
                .field(field, counted, recorded),
            );
        };
        if bad_agf.is_empty() {
            compare("fdblocks", sb.fdblocks, fdblocks, "free blocks");
        }
        if bad_agi.is_empty() {
            compare("icount", sb.icount, icount, "inodes");
            compare("ifree", sb.ifree, ifree, "free inodes");
        }
        for (other, bad, counters) in [
            ("agf", &bad_agf, "fdblocks"),
            ("agi", &bad_agi, "icount and ifree"),
        ] {
            if !bad.is_empty() {
                let list: Vec<String> = bad.iter().map(u32::to_string).collect();
                out.push(Finding::new(
                    FindingKind::XrefFailed,
                    "fscounters",
                    format!("fscounters.xref-{other}"),
                    format!(
                        "{counters} not checked: the {} of AG {} is damaged",
                        other.to_uppercase(),
                        list.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A `corrupt` finding about a summary counter of the primary superblock.
fn damage(
    field: &'static str,
    msg: String,
    expected: impl std::fmt::Display,
    actual: impl std::fmt::Display,
) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        "fscounters",
        format!("fscounters.{field}"),
        msg,
    )
    .group(0)
    .block(0)
    .field(field, expected, actual)
}
