//! What every XFS scrubber shares: turning verifier problems into
//! findings, walking a btree with the engine's verifier, and error mapping.

use crate::error::Error;
use crate::format::Problem;
use scrub::{ExtentBitmap, Finding, FindingKind, Findings, ScrubError};
use std::borrow::Cow;
use xfbtree::verify::{Problem as TreeProblem, ProblemKind, RecordLoc, Visitor};
use xfbtree::{BlockAddr, BlockStore, Btree, BtreeFormat};

/// Reports each problem of a structure verifier as a `corrupt` finding
/// with code `structure.field`.
pub(crate) fn problems_to_findings(
    structure: &'static str,
    group: Option<u32>,
    block: Option<u64>,
    problems: &[Problem],
    out: &mut Findings,
) {
    for p in problems {
        let mut f = Finding::new(
            FindingKind::Corrupt,
            structure,
            format!("{structure}.{}", p.field),
            format!("{} field {} is wrong", p.structure, p.field),
        )
        .field(Cow::Owned(p.field.clone()), &p.expected, &p.actual);
        if let Some(g) = group {
            f = f.group(u64::from(g));
        }
        if let Some(b) = block {
            f = f.block(b);
        }
        out.push(f);
    }
}

/// An error reading the image is operational (the check cannot go on);
/// anything else the reader reports about the structure is corruption.
pub(crate) fn read_error(e: Error) -> ScrubError {
    ScrubError::operational(e)
}

/// What a verified tree walk found.
#[derive(Debug, Default)]
pub(crate) struct TreeWalk {
    /// Every block of the tree reached by the walk.
    pub blocks: ExtentBitmap,
    /// Records passed to the record check.
    pub records: u64,
    /// Structural problems found (each already reported).
    pub problems: u64,
}

/// Adapts the engine's verifier to findings: structural problems become
/// `corrupt` findings of `structure` in `group`; every block is recorded;
/// every record goes to `on_record`.
struct Adapter<'o, R> {
    structure: &'static str,
    group: Option<u32>,
    out: &'o mut Findings,
    on_record: R,
    walk: TreeWalk,
}

impl<F, R> Visitor<F> for Adapter<'_, R>
where
    F: BtreeFormat,
    R: FnMut(&F::Record, RecordLoc, &mut Findings),
{
    fn block(&mut self, addr: BlockAddr, _level: u16, _bytes: &[u8]) {
        self.walk.blocks.set(addr.0, 1);
    }

    fn record(&mut self, record: &F::Record, at: RecordLoc) {
        self.walk.records += 1;
        (self.on_record)(record, at, self.out);
    }

    fn problem(&mut self, p: TreeProblem) {
        self.walk.problems += 1;
        self.out.push(tree_finding(self.structure, self.group, &p));
    }
}

/// The finding for one structural problem of a btree.
pub(crate) fn tree_finding(
    structure: &'static str,
    group: Option<u32>,
    p: &TreeProblem,
) -> Finding {
    let code = match &p.kind {
        ProblemKind::Header(fp) => format!("{structure}.{}", fp.field),
        k => format!("{structure}.{}", k.code()),
    };
    let mut f = Finding::new(FindingKind::Corrupt, structure, code, p.kind.to_string());
    if let ProblemKind::Header(fp) = &p.kind {
        f = f.field(fp.field, &fp.expected, &fp.actual);
    }
    if let Some(g) = group {
        f = f.group(u64::from(g));
    }
    if let Some(b) = p.block {
        f = f.block(b.0);
    }
    if let Some(i) = p.index {
        f = f.record(i as u64);
    }
    f
}

/// Walks `tree` once with the engine's verifier: every structural problem
/// becomes a finding, every block is recorded in the returned bitmap, and
/// `on_record` checks (and cross-references) each record in key order.
pub(crate) fn walk_tree<S, F, R>(
    tree: &Btree<S, F>,
    structure: &'static str,
    group: Option<u32>,
    out: &mut Findings,
    on_record: R,
) -> TreeWalk
where
    S: BlockStore,
    F: BtreeFormat,
    R: FnMut(&F::Record, RecordLoc, &mut Findings),
{
    let mut a = Adapter {
        structure,
        group,
        out,
        on_record,
        walk: TreeWalk::default(),
    };
    tree.verify(&mut a);
    a.walk
}

/// A `corrupt` finding about one record of a btree.
pub(crate) fn record_finding(
    structure: &'static str,
    group: u32,
    at: RecordLoc,
    code: &str,
    message: impl Into<String>,
) -> Finding {
    Finding::new(
        FindingKind::Corrupt,
        structure,
        format!("{structure}.{code}"),
        message,
    )
    .group(u64::from(group))
    .block(at.block.0)
    .record(at.index as u64)
}

/// An `xref-corrupt` finding: `structure` disagrees with other metadata.
pub(crate) fn xref_corrupt(
    structure: &'static str,
    group: u32,
    code: &str,
    message: impl Into<String>,
) -> Finding {
    Finding::new(
        FindingKind::XrefCorrupt,
        structure,
        format!("{structure}.{code}"),
        message,
    )
    .group(u64::from(group))
}

/// Reports, once per scrub item, that cross-referencing against `other`
/// was not possible.
#[derive(Debug, Default)]
pub(crate) struct XrefFailures {
    reported: Vec<&'static str>,
}

impl XrefFailures {
    /// Reports that `structure` could not be cross-referenced with
    /// `other` because of `why`, unless already reported for `other`.
    pub(crate) fn report(
        &mut self,
        structure: &'static str,
        group: u32,
        other: &'static str,
        why: impl std::fmt::Display,
        out: &mut Findings,
    ) {
        if self.reported.contains(&other) {
            return;
        }
        self.reported.push(other);
        out.push(
            Finding::new(
                FindingKind::XrefFailed,
                structure,
                format!("{structure}.xref-{other}"),
                format!("could not cross-reference with the {other}: {why}"),
            )
            .group(u64::from(group)),
        );
    }
}

/// Walks `tree` once with the engine's verifier without reporting: every
/// record goes to `on_record`, and the answer is the set of the tree's
/// blocks, for comparing its footprint with other structures. It is
/// `Unavailable` when the walk met any structural problem: the set (and
/// the records seen) may then miss a subtree, and a comparison would blame
/// the other structure wrongly. The tree's own scrubber reports the damage.
pub(crate) fn walk_quietly<S, F>(
    tree: &Btree<S, F>,
    what: &str,
    on_record: impl FnMut(&F::Record),
) -> Result<ExtentBitmap, super::xref::Unavailable>
where
    S: BlockStore,
    F: BtreeFormat,
{
    struct Quiet<R> {
        set: ExtentBitmap,
        problems: u64,
        on_record: R,
    }
    impl<F: BtreeFormat, R: FnMut(&F::Record)> Visitor<F> for Quiet<R> {
        fn block(&mut self, addr: BlockAddr, _level: u16, _bytes: &[u8]) {
            self.set.set(addr.0, 1);
        }
        fn record(&mut self, record: &F::Record, _at: RecordLoc) {
            (self.on_record)(record);
        }
        fn problem(&mut self, _p: TreeProblem) {
            self.problems = self.problems.saturating_add(1);
        }
    }
    let mut v = Quiet {
        set: ExtentBitmap::new(),
        problems: 0,
        on_record,
    };
    tree.verify(&mut v);
    if v.problems > 0 {
        return Err(super::xref::Unavailable(format!(
            "the {what} is damaged ({} structural problems)",
            v.problems
        )));
    }
    Ok(v.set)
}

/// The blocks of `tree` ([`walk_quietly`] without looking at records).
pub(crate) fn tree_blocks<S, F>(
    tree: &Btree<S, F>,
    what: &str,
) -> Result<ExtentBitmap, super::xref::Unavailable>
where
    S: BlockStore,
    F: BtreeFormat,
{
    walk_quietly(tree, what, |_| {})
}

/// Byte offset of the LSN in a v5 short-form (AG) btree block header.
pub(crate) const SHORT_BLOCK_LSN: usize = 24;

/// The log head as an LSN `(cycle, basic block)`: no metadata block may
/// carry a newer LSN. `None` when the log state does not say (a zeroed or
/// unreadable log), in which case LSNs cannot be judged.
pub(crate) fn log_head_lsn(fs: &crate::fs::Filesystem) -> Option<(u32, u32)> {
    match fs.log_state() {
        crate::log::LogState::Clean { head } | crate::log::LogState::Dirty { head, .. } => {
            Some((head.cycle, u32::try_from(head.block).ok()?))
        }
        _ => None,
    }
}

/// Whether a block's `lsn` lies beyond the log head (`xfs_log_check_lsn`,
/// which the kernel's v5 block verifiers call: such a block fails to
/// verify, because log recovery would wrongly skip updates to it). The
/// null LSN (all ones) is exempt.
pub(crate) fn lsn_ahead(lsn: u64, head: (u32, u32)) -> bool {
    if lsn == u64::MAX {
        return false;
    }
    let cycle = u32::try_from(lsn >> 32).unwrap_or(u32::MAX);
    let block = u32::try_from(lsn & 0xffff_ffff).unwrap_or(u32::MAX);
    (cycle, block) > head
}

/// Reports, as `corrupt` findings `structure.lsn`, every block among
/// `blocks` of `tree` (a short-form AG btree) whose LSN is beyond the log
/// head.
pub(crate) fn check_block_lsns<S, F>(
    fs: &crate::fs::Filesystem,
    tree: &Btree<S, F>,
    blocks: &ExtentBitmap,
    structure: &'static str,
    group: u32,
    out: &mut Findings,
) where
    S: BlockStore,
    F: BtreeFormat,
{
    let Some(head) = log_head_lsn(fs) else {
        return;
    };
    for (start, len) in blocks.runs() {
        for addr in start..start.saturating_add(len) {
            let lsn = tree
                .store()
                .read(BlockAddr(addr), |b| {
                    crate::format::be64_at(b, SHORT_BLOCK_LSN)
                })
                .ok()
                .flatten();
            let Some(lsn) = lsn else { continue };
            if lsn_ahead(lsn, head) {
                let (c, b) = (lsn >> 32, lsn & 0xffff_ffff);
                out.push(
                    Finding::new(
                        FindingKind::Corrupt,
                        structure,
                        format!("{structure}.lsn"),
                        format!(
                            "block LSN {c}:{b} is ahead of the log head {}:{}; log recovery would skip updates to this block",
                            head.0, head.1
                        ),
                    )
                    .field("lsn", format!("<= {}:{}", head.0, head.1), format!("{c}:{b}"))
                    .group(u64::from(group))
                    .block(addr),
                );
            }
        }
    }
}
