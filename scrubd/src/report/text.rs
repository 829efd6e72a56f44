//! The human report of `scrubd check`.
//!
//! Layout: a header (image, UUID, geometry, features, log state), then the
//! warnings about the whole filesystem, the findings grouped by structure
//! in report order, the checks that were not run or did not finish, and a
//! closing `result:` line with the verdict. A clean run prints the header
//! and the result line only.

use super::{CheckReport, item_name, location};
use crate::size::human;
use scrub::{Finding, FindingKind, ItemReport, ItemStatus};
use std::fmt::Write as _;

/// Notices shown in capitals: conditions that make every result suspect.
const PROMINENT: [&str; 2] = ["log.dirty", "sb.needsrepair"];

/// Renders the report. `quiet` leaves out the header and the list of
/// structures not present on the filesystem.
pub fn render(r: &CheckReport, quiet: bool) -> String {
    let mut s = String::new();
    if !quiet {
        header(&mut s, r);
    }

    // Whole-filesystem warnings.
    let warnings: Vec<&Finding> = r
        .notices
        .iter()
        .filter(|f| f.kind == FindingKind::Warning)
        .collect();
    if !warnings.is_empty() {
        s.push('\n');
        for w in warnings {
            let tag = if PROMINENT.contains(&&*w.code) {
                "WARNING"
            } else {
                "warning"
            };
            let _ = writeln!(s, "{tag}: {}", w.message);
        }
    }

    findings_by_structure(&mut s, r);
    if !quiet {
        not_checked(&mut s, r);
    }
    unfinished(&mut s, r);

    let counts: Vec<String> = r
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    s.push('\n');
    if !counts.is_empty() {
        let _ = writeln!(s, "findings: {}", counts.join(", "));
    }
    let _ = writeln!(s, "result: {}", verdict(r));
    if let Some(st) = &r.stats {
        stats_table(&mut s, st);
    }
    s
}

/// The `--stats` table: one row per staging structure name.
fn stats_table(s: &mut String, st: &super::StagingReport) {
    let _ = writeln!(
        s,
        "\nstaging memory: limit {}, peak {}",
        st.limit, st.peak_resident_bytes
    );
    if st.structures.is_empty() {
        s.push_str("no staging structures were used\n");
        return;
    }
    let header = [
        "structure",
        "count",
        "records",
        "bytes staged",
        "peak resident",
        "bytes spilled",
        "evictions",
        "page-ins",
    ];
    let rows: Vec<[String; 8]> = st
        .structures
        .iter()
        .map(|x| {
            [
                x.name.clone(),
                x.instances.to_string(),
                x.records.to_string(),
                x.bytes_staged.to_string(),
                x.peak_resident_bytes.to_string(),
                x.bytes_spilled.to_string(),
                x.evictions.to_string(),
                x.page_ins.to_string(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i == 0 {
                let _ = write!(l, "{c:<w$}");
            } else {
                let _ = write!(l, "  {c:>w$}");
            }
        }
        l.push('\n');
        l
    };
    s.push_str(&line(header.to_vec()));
    for r in &rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
}

fn header(s: &mut String, r: &CheckReport) {
    let _ = writeln!(s, "image:    {}", r.image);
    match &r.fs {
        Some(fs) => {
            let bytes = fs.dblocks.saturating_mul(u64::from(fs.block_size));
            let _ = writeln!(s, "uuid:     {}", fs.uuid);
            let _ = writeln!(
                s,
                "geometry: {} AG{} of {} blocks, {} blocks of {} bytes ({}), {}-byte inodes",
                fs.ag_count,
                plural(u64::from(fs.ag_count)),
                fs.ag_blocks,
                fs.dblocks,
                fs.block_size,
                human(bytes),
                fs.inode_size
            );
            let _ = writeln!(s, "features: {}", fs.features.join(" "));
            let _ = writeln!(s, "log:      {}", fs.log_detail);
        }
        None => {
            let _ = writeln!(
                s,
                "filesystem: not opened, its primary superblock is unusable"
            );
        }
    }
}

/// Findings shown under their structure: everything except what the
/// "not checked" and "did not finish" lists already say.
fn shown(item: Option<&ItemReport>, f: &Finding) -> bool {
    match item.map(|i| &i.status) {
        None => f.kind != FindingKind::Warning,
        Some(ItemStatus::Impossible { .. }) => false,
        Some(ItemStatus::Failed { .. }) => f.kind != FindingKind::Incomplete,
        Some(_) => true,
    }
}

fn findings_by_structure(s: &mut String, r: &CheckReport) {
    let all: Vec<&Finding> = r
        .notices
        .iter()
        .filter(|f| shown(None, f))
        .chain(
            r.items
                .iter()
                .flat_map(|i| i.findings.iter().filter(move |f| shown(Some(i), f))),
        )
        .collect();
    let mut order: Vec<&str> = Vec::new();
    for f in &all {
        if !order.contains(&&*f.structure) {
            order.push(&f.structure);
        }
    }
    for structure in order {
        let group: Vec<&&Finding> = all.iter().filter(|f| f.structure == structure).collect();
        let n = group.len() as u64;
        let _ = writeln!(s, "\n{structure}: {n} finding{}", plural(n));
        for f in group {
            let _ = writeln!(s, "  {}", finding_line(f));
        }
    }
}

/// `corrupt      AG 2 block 17 record 4: message (field: expected E, found A)`
pub fn finding_line(f: &Finding) -> String {
    let mut line = format!("{:<12} ", f.kind.as_str());
    let loc = location(f);
    if !loc.is_empty() {
        line.push_str(&loc);
        line.push_str(": ");
    }
    line.push_str(&f.message);
    match (&f.field, &f.expected, &f.actual) {
        (Some(field), Some(e), Some(a)) => {
            let _ = write!(line, " ({field}: expected {e}, found {a})");
        }
        (Some(field), _, _) => {
            let _ = write!(line, " ({field})");
        }
        _ => {}
    }
    line
}

/// Items not run because the structure is absent or the check impossible,
/// one line per scrubber and reason.
fn not_checked(s: &mut String, r: &CheckReport) {
    let mut lines: Vec<(&str, &str, &str, Vec<Option<u64>>)> = Vec::new();
    for i in &r.items {
        let (what, reason) = match &i.status {
            ItemStatus::Absent { reason } => ("not present", reason.as_str()),
            ItemStatus::Impossible { reason } => ("not possible", reason.as_str()),
            _ => continue,
        };
        match lines
            .iter_mut()
            .find(|(s, w, re, _)| *s == i.item.scrubber && *w == what && *re == reason)
        {
            Some(l) => l.3.push(i.item.group),
            None => lines.push((i.item.scrubber, what, reason, vec![i.item.group])),
        }
    }
    if lines.is_empty() {
        return;
    }
    s.push_str("\nnot checked:\n");
    let ags = r.fs.as_ref().map_or(0, |f| u64::from(f.ag_count));
    for (scrubber, what, reason, groups) in lines {
        let where_ = ag_list(&groups, ags);
        let _ = writeln!(s, "  {scrubber}{where_}: {what}: {reason}");
    }
}

/// ` (all 4 AGs)`, ` (AG 1)`, ` (AGs 0, 2)`, or nothing for
/// whole-filesystem items.
fn ag_list(groups: &[Option<u64>], ag_count: u64) -> String {
    let gs: Vec<u64> = groups.iter().filter_map(|g| *g).collect();
    match gs.len() {
        0 => String::new(),
        1 => format!(" (AG {})", gs[0]),
        n if n as u64 == ag_count && ag_count > 1 => format!(" (all {n} AGs)"),
        _ => {
            let l: Vec<String> = gs.iter().map(|g| g.to_string()).collect();
            format!(" (AGs {})", l.join(", "))
        }
    }
}

/// Items that stopped early, and how many the user cancelled.
fn unfinished(s: &mut String, r: &CheckReport) {
    let failed: Vec<&ItemReport> = r
        .items
        .iter()
        .filter(|i| matches!(i.status, ItemStatus::Failed { .. }))
        .collect();
    if !failed.is_empty() {
        s.push_str("\ndid not finish (nothing is known about what they did not reach):\n");
        for i in failed {
            if let ItemStatus::Failed { error, operational } = &i.status {
                let why = if *operational {
                    "operational error"
                } else {
                    "staging"
                };
                let _ = writeln!(s, "  {} ({why}): {error}", item_name(&i.item));
            }
        }
    }
    let c = r.item_counts();
    if r.cancelled {
        let _ = writeln!(
            s,
            "\ncancelled: {} of {} item{} did not run or were stopped",
            c.cancelled,
            c.total,
            plural(c.total)
        );
    }
}

/// The closing verdict.
fn verdict(r: &CheckReport) -> String {
    let problems = r.problems();
    let structures = r.damaged_structures();
    let mut v = if problems == 0 {
        "no damage found".to_owned()
    } else {
        format!(
            "{problems} problem{} found in {} structure{} ({})",
            plural(problems),
            structures.len(),
            plural(structures.len() as u64),
            structures.join(", ")
        )
    };
    let c = r.item_counts();
    if r.cancelled {
        v = format!("cancelled; {v} in what was checked");
    }
    if c.failed > 0 {
        let _ = write!(
            v,
            ", but {} check{} did not finish",
            c.failed,
            plural(c.failed)
        );
    }
    let ms = r.elapsed.as_millis();
    if r.fs.is_none() {
        let _ = write!(v, "; nothing else was checked (in {ms} ms)");
        return v;
    }
    let checked = c.done + c.failed;
    let _ = write!(
        v,
        " ({checked} of {} item{} checked in {ms} ms)",
        c.total,
        plural(c.total),
    );
    v
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn sample_report() {
        let out = render(&sample(), false);
        let want = "\
image:    img
uuid:     5c2bd000-0000-4000-8000-000000000003
geometry: 2 AGs of 4096 blocks, 8192 blocks of 4096 bytes (32 MiB), 512-byte inodes
features: crc finobt
log:      dirty (head at cycle 1 block 29, tail at cycle 1 block 2)

WARNING: the log is dirty

agf: 1 finding
  corrupt      AG 0: bad (freeblks: expected 1, found 2)

bnobt: 1 finding
  xref-corrupt AG 0 block 1 record 3: x

not checked:
  finobt (all 2 AGs): not present: the filesystem has no free inode btree
  rmapbt (AG 0): not possible: needs reflink

did not finish (nothing is known about what they did not reach):
  agf AG 1 (operational error): I/O error

cancelled: 1 of 7 items did not run or were stopped

findings: corrupt 1, xref-corrupt 1, incomplete 1, warning 2
result: cancelled; 2 problems found in 2 structures (agf, bnobt) in what was checked, but 1 check did not finish (3 of 7 items checked in 5 ms)
";
        assert_eq!(out, want);
    }

    #[test]
    fn unusable_superblock_report_is_short() {
        let mut r = sample();
        r.fs = None;
        r.items.clear();
        r.cancelled = false;
        r.planned_items = 0;
        r.notices = vec![
            Finding::new(
                FindingKind::Corrupt,
                "sb",
                "sb.agcount",
                "superblock 0 field agcount is wrong",
            )
            .group(0)
            .block(0)
            .field("agcount", 4, 7),
        ];
        let want = "\
image:    img
filesystem: not opened, its primary superblock is unusable

sb: 1 finding
  corrupt      AG 0 block 0: superblock 0 field agcount is wrong (agcount: expected 4, found 7)

findings: corrupt 1
result: 1 problem found in 1 structure (sb); nothing else was checked (in 5 ms)
";
        assert_eq!(render(&r, false), want);
        // Quiet: no header.
        assert!(render(&r, true).starts_with("\nsb: 1 finding"));
    }

    #[test]
    fn ag_lists() {
        assert_eq!(ag_list(&[None], 4), "");
        assert_eq!(ag_list(&[Some(1)], 4), " (AG 1)");
        assert_eq!(ag_list(&[Some(0), Some(2)], 4), " (AGs 0, 2)");
        assert_eq!(
            ag_list(&[Some(0), Some(1), Some(2), Some(3)], 4),
            " (all 4 AGs)"
        );
    }
}
