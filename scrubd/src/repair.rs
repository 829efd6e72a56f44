//! `scrubd repair IMAGE` and `scrubd undo UNDOFILE IMAGE`.
//!
//! A repair checks the image, plans every repair the damage calls for
//! (building the new structures in memory), and then either prints the
//! plan (the default, a dry run: the image is opened read-only) or, with
//! `--commit`, commits it atomically through the repair journal and undo
//! file and checks again.

use crate::exit::{self, CliError};
use scrub::{Report, RunOptions, ScrubContext};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xfile::MemoryBudget;
use xfs::Filesystem;
use xfs::device::{Access, Device, open_image};
use xfs::repair::{self as xrepair, Plan};

/// `fsck(8)`: every error found was corrected.
pub const CORRECTED: u8 = 1;

/// What to repair and how.
#[derive(Debug, Clone)]
pub struct RepairArgs {
    /// The image.
    pub image: PathBuf,
    /// Write the repairs (otherwise a dry run).
    pub commit: bool,
    /// Where the undo file goes (default: beside the image).
    pub undo_file: Option<PathBuf>,
    /// Staging memory budget in bytes.
    pub memory: u64,
    /// Worker threads.
    pub threads: usize,
}

/// The sidecar files of `image`, with the undo file where asked.
pub fn sidecars(image: &Path, undo_file: Option<&Path>) -> repair::Sidecars {
    let mut s = repair::Sidecars::beside(image);
    if let Some(u) = undo_file {
        s.undo = u.to_path_buf();
    }
    s
}

fn check(fs: &Filesystem, args: &RepairArgs) -> Result<Report, CliError> {
    let ctx = ScrubContext::new(MemoryBudget::new(args.memory));
    let opts = RunOptions {
        only: None,
        threads: Some(args.threads.max(1)),
    };
    let mut report = scrub::run(fs, &xfs::scrub::registry(), &ctx, &opts)?;
    report.attach_paths(|wanted| fs.name_inodes(wanted));
    Ok(report)
}

/// Damage findings of a report, one line each.
fn damage_lines(r: &Report) -> Vec<String> {
    r.findings()
        .filter(|(_, f)| f.kind.is_damage())
        .map(|(_, f)| f.to_string())
        .collect()
}

/// Runs the repair; returns the text to print and the exit code.
pub fn run(args: &RepairArgs) -> Result<(String, u8), CliError> {
    let sc = sidecars(&args.image, args.undo_file.as_deref());
    let opened = xrepair::open_for_repair(&args.image, &sc, args.commit)?;
    let mut out = String::new();
    if let repair::Recovery::Replayed { writes } = opened.recovery {
        let _ = writeln!(
            out,
            "finished an interrupted repair: replayed {writes} writes from {}",
            sc.journal.display()
        );
    }
    let before = check(&opened.fs, args)?;
    let found = damage_lines(&before);
    if before.has_operational_error() {
        return Err(CliError::Operational(
            "the check stopped on an operational error; nothing was repaired".into(),
        ));
    }
    let _ = writeln!(out, "image: {}", args.image.display());
    let _ = writeln!(out, "damage found: {}", found.len());
    for f in &found {
        let _ = writeln!(out, "  {f}");
    }
    if found.is_empty() {
        let _ = writeln!(out, "result: no damage found, nothing to repair");
        return Ok((out, exit::NO_DAMAGE));
    }
    let budget = MemoryBudget::new(args.memory);
    let plan = xrepair::plan_with(&opened.fs, &before, &budget);
    render_plan(&plan, &mut out);
    if !args.commit {
        render_recheck(&opened.fs, &plan, args, &mut out)?;
        let _ = writeln!(
            out,
            "dry run: nothing was written; run with --commit to repair (undo file: {})",
            sc.undo.display()
        );
        return Ok((out, exit::DAMAGE));
    }
    if plan.writes.is_empty() {
        let _ = writeln!(out, "result: nothing could be repaired");
        return Ok((out, exit::DAMAGE));
    }
    let done = xrepair::commit_plan(&opened, &plan.writes)?;
    let _ = writeln!(
        out,
        "committed: {} writes, {} bytes; undo with: scrubd undo {} {}",
        done.stats.writes,
        done.stats.bytes,
        sc.undo.display(),
        args.image.display()
    );
    drop(opened);
    let dev = open_image(&args.image, Access::ReadOnly).map_err(xfs::Error::from)?;
    let fs = Filesystem::open(dev)?;
    let after = check(&fs, args)?;
    let left = damage_lines(&after);
    let _ = writeln!(
        out,
        "after repair: {} of {} damage findings left",
        left.len(),
        found.len()
    );
    for f in &left {
        let _ = writeln!(out, "  {f}");
    }
    let code = if left.is_empty() {
        let _ = writeln!(out, "result: all damage found was repaired");
        CORRECTED
    } else {
        let _ = writeln!(out, "result: some damage is left");
        exit::DAMAGE
    };
    Ok((out, code))
}

fn render_plan(plan: &Plan, out: &mut String) {
    let blocks: u64 = plan.writes.iter().count() as u64;
    let _ = writeln!(
        out,
        "plan: {} repairs, {} refused; {blocks} writes, {} bytes",
        plan.repairs.len(),
        plan.refused.len(),
        plan.writes.bytes()
    );
    for r in &plan.repairs {
        let ag = r.group.map(|g| format!(" AG {g}")).unwrap_or_default();
        let _ = writeln!(out, "  rebuild {}{ag}: {}", r.what, r.detail);
        let _ = writeln!(
            out,
            "    {} writes; fixes: {}",
            r.writes,
            if r.fixes.is_empty() {
                "(counters only)".to_string()
            } else {
                r.fixes.join(", ")
            }
        );
    }
    for r in &plan.refused {
        let ag = r.group.map(|g| format!(" AG {g}")).unwrap_or_default();
        let _ = writeln!(out, "  cannot rebuild {}{ag}: {}", r.what, r.reason);
    }
}

/// The dry run's re-check: the plan's writes on an overlay of the image
/// (nothing is written), the scrubbers of the rebuilt structures run
/// there, and what they find is what the commit would leave.
fn render_recheck(
    fs: &Filesystem,
    plan: &Plan,
    args: &RepairArgs,
    out: &mut String,
) -> Result<(), CliError> {
    let names = xrepair::rebuilt_scrubbers(plan);
    if names.is_empty() {
        return Ok(());
    }
    let ctx = ScrubContext::new(MemoryBudget::new(args.memory));
    let report = match xrepair::recheck(fs, plan, &ctx, args.threads) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "re-check of the planned result: not possible: {e}");
            return Ok(());
        }
    };
    let left = damage_lines(&report);
    let _ = writeln!(
        out,
        "re-check of the planned result ({}): {}",
        names.join(", "),
        if left.is_empty() {
            "clean".to_string()
        } else {
            format!("{} findings would remain", left.len())
        }
    );
    for f in &left {
        let _ = writeln!(out, "  {f}");
    }
    if report.has_operational_error() {
        let _ = writeln!(out, "  (the re-check stopped on an operational error)");
    }
    Ok(())
}

/// `scrubd undo UNDOFILE IMAGE`: restores the image as it was before the
/// repairs recorded in the undo file. Running it again is harmless.
pub fn undo(undo_file: &Path, image: &Path) -> Result<String, CliError> {
    let dev: Arc<dyn Device> = Arc::new(xfs::device::FileDevice::open(image, true)?);
    let id = xrepair::identity(dev.as_ref())?;
    let sc = sidecars(image, Some(undo_file));
    let s = repair::undo(&xrepair::DeviceDisk(dev), undo_file, &sc, &id)?;
    Ok(format!(
        "restored {} ranges ({} bytes) from {} repair(s) recorded in {}\n",
        s.ranges,
        s.bytes,
        s.commits,
        undo_file.display()
    ))
}
