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
