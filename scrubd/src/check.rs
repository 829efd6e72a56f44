//! `scrubd check IMAGE`: open the image read-only, run every selected
//! scrubber of the XFS registry, and build a [`CheckReport`].

use crate::exit::CliError;
use crate::primary;
use crate::progress::BarProgress;
use crate::report::{CheckReport, FsSummary};
use scrub::{CancelToken, Finding, FindingKind, Progress, RunOptions, Scope, ScrubContext};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, Device, open_image};
use xfs::log::LogState;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    /// The image (plain or zstd-compressed).
    pub image: PathBuf,
    /// Staging memory budget in bytes.
    pub memory: u64,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Run only these scrubbers; all when `None`.
    pub only: Option<Vec<String>>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Put staging memory statistics in the report.
    pub stats: bool,
}

/// The names `--only` accepts: every XFS scrubber, in report order.
pub fn scrubber_names() -> Vec<&'static str> {
    xfs::scrub::registry().names()
}

/// Runs the check. Damage is in the report; an error means the check
/// could not be done (the image cannot be read or is unsupported).
///
/// `cancel` is the token a Ctrl-C handler sets: the items not yet started
/// are then skipped and the report says the run was cancelled.
pub fn run(args: &CheckArgs, cancel: &CancelToken) -> Result<CheckReport, CliError> {
    let registry = xfs::scrub::registry();
    if let Some(only) = &args.only
        && let Some(bad) = only.iter().find(|n| registry.get(n).is_none())
    {
        return Err(CliError::Usage(format!(
            "unknown scrubber {bad:?} in --only; valid names: {}",
            registry.names().join(",")
        )));
    }
    let scrubbers: Vec<&'static str> = registry
        .iter()
        .map(|s| s.name())
        .filter(|n| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == n)))
        .collect();

    let bar = args.progress.then(|| Arc::new(BarProgress::stderr(0)));
    if let Some(b) = &bar {
        b.status(format!("opening {}", args.image.display()));
    }
    let start = Instant::now();
    let dev: Arc<dyn Device> =
        Arc::from(open_image(&args.image, Access::ReadOnly).map_err(xfs::Error::from)?);
    let mut report = CheckReport {
        image: args.image.display().to_string(),
        fs: None,
        memory: args.memory,
        threads: args.threads,
        scrubbers: scrubbers.clone(),
        planned_items: 0,
        notices: Vec::new(),
        items: Vec::new(),
        cancelled: false,
        elapsed: start.elapsed(),
        stats: None,
    };
    let fs = match Filesystem::open(Box::new(Arc::clone(&dev))) {
        Ok(fs) => fs,
        Err(e) => {
            if let Some(b) = &bar {
                b.status("the primary superblock is unusable: looking for a secondary one");
            }
            let Some(findings) = primary::findings_for(&e, dev.as_ref()) else {
                return Err(open_error(e));
            };
            report.notices = findings;
            report.elapsed = start.elapsed();
            return Ok(report);
        }
    };
    report.fs = Some(summary(&fs));
    report.notices = notices(&fs);
    if scrubbers.contains(&"rmapbt-shadow") {
        // The shadow check says the same, as the check that could not be
        // done; one warning is enough.
        report
            .notices
            .retain(|f| f.code != "rmapbt.no-ownership-xref");
    }

    let groups = u64::from(fs.geometry().ag_count);
    report.planned_items = registry
        .iter()
        .filter(|s| scrubbers.contains(&s.name()))
        .map(|s| match s.scope() {
            Scope::Group => groups,
            Scope::Whole => 1,
        })
        .sum();

    if let Some(b) = &bar {
        b.set_total(report.planned_items);
        b.status("");
    }
    let mut ctx = ScrubContext::new(MemoryBudget::new(args.memory)).with_cancel(cancel.clone());
    if let Some(b) = &bar {
        ctx = ctx.with_progress(Arc::clone(b) as Arc<dyn Progress>);
    }
    let opts = RunOptions {
        only: args.only.clone(),
        threads: Some(args.threads.max(1)),
    };
    let mut run = scrub::run(&fs, &registry, &ctx, &opts).map_err(|e| match e {
        scrub::ScrubError::UnknownScrubber { .. } => CliError::Usage(e.to_string()),
        e => CliError::from(e),
    })?;
    if let Some(b) = &bar {
        b.status("naming the files findings are about");
    }
    run.attach_paths(|wanted| fs.name_inodes(wanted));
    if let Some(b) = &bar {
        b.clear();
    }
    report.cancelled = run.cancelled;
    report.items = run.items;
    if args.stats {
        report.stats = Some(crate::report::StagingReport::of(ctx.budget()));
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// The error for an image that cannot be opened and is not a damaged XFS
/// filesystem.
fn open_error(e: xfs::Error) -> CliError {
    match e {
        e @ xfs::Error::NotXfs { .. } => CliError::Operational(
            format!("{e}, and no valid secondary superblock was found either").into(),
        ),
        e => CliError::from(e),
    }
}

/// The header of the report.
fn summary(fs: &Filesystem) -> FsSummary {
    let geo = fs.geometry();
    let f = fs.superblock().features();
    let features: Vec<&'static str> = [
        ("crc", f.is_v5()),
        ("ftype", f.has_ftype()),
        ("finobt", f.has_finobt()),
        ("sparse", f.has_sparse_inodes()),
        ("rmapbt", f.has_rmapbt()),
        ("reflink", f.has_reflink()),
        ("bigtime", f.has_bigtime()),
        ("inobtcount", f.has_inobtcounts()),
        ("nrext64", f.has_nrext64()),
        ("ascii-ci", f.has_asciici()),
        ("quota", f.has_quota()),
        ("meta-uuid", f.has_meta_uuid()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n)
    .collect();
    let state = fs.log_state();
    let log = match state {
        LogState::Clean { .. } => "clean",
        LogState::Dirty { .. } => "dirty",
        LogState::Zeroed => "zeroed",
        LogState::Corrupt { .. } => "corrupt",
        _ => "unknown",
    };
    FsSummary {
        uuid: geo.uuid.to_string(),
        ag_count: geo.ag_count,
        ag_blocks: geo.ag_blocks,
        block_size: geo.block_size,
        dblocks: geo.dblocks,
        inode_size: geo.inode_size,
        features,
        log,
        log_detail: state.to_string(),
    }
}

/// Warnings about the whole filesystem, found at open time: they do not
/// change the exit code, but say how far the results can be trusted.
fn notices(fs: &Filesystem) -> Vec<Finding> {
    let mut out = Vec::new();
    match fs.log_state() {
        LogState::Dirty { head, tail } => out.push(Finding::new(
            FindingKind::Warning,
            "log",
            "log.dirty",
            format!(
                "the log is dirty (head at {head}, tail at {tail}): results may be stale; \
                 mount the filesystem to replay it, as xfs_repair -n also warns"
            ),
        )),
        LogState::Corrupt { reason } => out.push(Finding::new(
            FindingKind::Warning,
            "log",
            "log.corrupt",
            format!(
                "the log is corrupt ({reason}): it cannot be replayed, and results describe the metadata as it is on disk"
            ),
        )),
        _ => {}
    }
    let features = fs.superblock().features();
    if features.needs_repair() {
        out.push(Finding::new(
            FindingKind::Warning,
            "sb",
            "sb.needsrepair",
            "the NEEDSREPAIR feature is set: a previous repair did not finish, so results may describe a half-repaired filesystem",
        ));
    }
    // The other feature warnings `Filesystem::open` gives (unknown
    // compatible feature bits); NEEDSREPAIR has its own finding above.
    if let Ok(warnings) = features.check_supported() {
        for w in warnings.into_iter().filter(|w| !w.contains("NEEDSREPAIR")) {
            out.push(Finding::new(FindingKind::Warning, "sb", "sb.features", w));
        }
    }
    if !features.has_rmapbt() {
        out.push(Finding::new(
            FindingKind::Warning,
            "rmapbt",
            "rmapbt.no-ownership-xref",
            "the filesystem has no reverse-mapping btree (mkfs -m rmapbt=1): block ownership cannot be cross-referenced",
        ));
    }
    out
}
