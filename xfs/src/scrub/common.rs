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

/// Reports, as `corrupt` findings `structure.lsn`, every block among
/// `blocks` of `tree` (a short-form AG btree) whose LSN is beyond the log
/// head: for scrubbers whose walk does not see block bytes.
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
    let head = log_head(fs);
    if head.is_none() {
        return;
    }
    for (start, len) in blocks.runs() {
        for addr in start..start.saturating_add(len) {
            let f = tree
                .store()
                .read(BlockAddr(addr), |b| {
                    block_lsn_finding(structure, group, BlockAddr(addr), b, SHORT_LSN_OFFSET, head)
                })
                .ok()
                .flatten();
            out.extend(f);
        }
    }
}

/// Byte offset of the LSN in a short-form (AG) btree block header; see the
/// header map in `format::btree`.
pub(crate) const SHORT_LSN_OFFSET: usize = 24;

/// The log head against which metadata LSNs are judged, as the kernel
/// compares them (`xfs_log_check_lsn`): cycle and block as signed 32-bit
/// numbers. `None` when the log has no head to compare with (zeroed or
/// unreadable), in which case no LSN can be judged.
pub(crate) fn log_head(fs: &crate::fs::Filesystem) -> Option<(i32, i32)> {
    use crate::log::LogState;
    let head = match fs.log_state() {
        LogState::Clean { head } | LogState::Dirty { head, .. } => head,
        _ => return None,
    };
    // The kernel keeps both halves in `int`s; the reinterpretation of the
    // bits is deliberate.
    let cycle = i32::from_ne_bytes(head.cycle.to_ne_bytes());
    let block = i32::try_from(head.block).unwrap_or(i32::MAX);
    Some((cycle, block))
}

/// Whether a metadata LSN lies beyond the log head `head`.
///
/// A block stamped with an LSN the log has not reached breaks log
/// recovery's ordering (recovery skips changes older than the block), so
/// the kernel's read verifiers reject such blocks like a bad checksum and
/// `xfs_repair` reformats the log past them. As in the kernel, halves are
/// compared as signed numbers and the all-ones LSN (`NULLCOMMITLSN`) is
/// never ahead.
pub(crate) fn lsn_ahead(lsn: u64, head: (i32, i32)) -> bool {
    if lsn == u64::MAX {
        return false;
    }
    let [c0, c1, c2, c3, b0, b1, b2, b3] = lsn.to_be_bytes();
    let cycle = i32::from_be_bytes([c0, c1, c2, c3]);
    let block = i32::from_be_bytes([b0, b1, b2, b3]);
    cycle > head.0 || (cycle == head.0 && block > head.1)
}

/// The `corrupt` finding for a btree block whose LSN (at
/// `lsn_offset` in `bytes`) is ahead of the log head, if it is.
pub(crate) fn block_lsn_finding(
    structure: &'static str,
    group: u32,
    addr: BlockAddr,
    bytes: &[u8],
    lsn_offset: usize,
    head: Option<(i32, i32)>,
) -> Option<Finding> {
    let head = head?;
    let lsn = crate::format::be64_at(bytes, lsn_offset)?;
    if !lsn_ahead(lsn, head) {
        return None;
    }
    let show = |c: i32, b: i32| format!("{c}:{b}");
    let [c0, c1, c2, c3, b0, b1, b2, b3] = lsn.to_be_bytes();
    let actual = show(
        i32::from_be_bytes([c0, c1, c2, c3]),
        i32::from_be_bytes([b0, b1, b2, b3]),
    );
    let expected = format!("at most {}", show(head.0, head.1));
    Some(
        Finding::new(
            FindingKind::Corrupt,
            structure,
            format!("{structure}.lsn"),
            format!(
                "block {} was stamped with log sequence number {actual}, ahead of the log head {}: log recovery would mis-order changes to it",
                addr.0,
                show(head.0, head.1)
            ),
        )
        .group(u64::from(group))
        .block(addr.0)
        .field("lsn", expected, actual),
    )
}

/// [`Adapter`] that also shows each block's bytes to `on_block`.
struct BlockAdapter<'o, R, B> {
    inner: Adapter<'o, R>,
    on_block: B,
}

impl<F, R, B> Visitor<F> for BlockAdapter<'_, R, B>
where
    F: BtreeFormat,
    R: FnMut(&F::Record, RecordLoc, &mut Findings),
    B: FnMut(BlockAddr, u16, &[u8], &mut Findings),
{
    fn block(&mut self, addr: BlockAddr, level: u16, bytes: &[u8]) {
        <Adapter<'_, R> as Visitor<F>>::block(&mut self.inner, addr, level, bytes);
        (self.on_block)(addr, level, bytes, self.inner.out);
    }

    fn record(&mut self, record: &F::Record, at: RecordLoc) {
        <Adapter<'_, R> as Visitor<F>>::record(&mut self.inner, record, at);
    }

    fn problem(&mut self, p: TreeProblem) {
        <Adapter<'_, R> as Visitor<F>>::problem(&mut self.inner, p);
    }
}

/// [`walk_tree`], with `on_block` also seeing every block the walk reads
/// (its address, level and raw bytes), before that block's records: for
/// header checks the engine cannot make, such as the LSN against the log.
pub(crate) fn walk_tree_blocks<S, F, B, R>(
    tree: &Btree<S, F>,
    structure: &'static str,
    group: Option<u32>,
    out: &mut Findings,
    on_block: B,
    on_record: R,
) -> TreeWalk
where
    S: BlockStore,
    F: BtreeFormat,
    B: FnMut(BlockAddr, u16, &[u8], &mut Findings),
    R: FnMut(&F::Record, RecordLoc, &mut Findings),
{
    let mut a = BlockAdapter {
        inner: Adapter {
            structure,
            group,
            out,
            on_record,
            walk: TreeWalk::default(),
        },
        on_block,
    };
    tree.verify(&mut a);
    a.inner.walk
}

// Shared by the btree scrubbers (written with the free-space and inode
// btree scrubbers).

/// The AG number of a group item.
pub(crate) fn group_of(item: &scrub::ItemId) -> Result<u32, ScrubError> {
    item.group
        .and_then(|g| u32::try_from(g).ok())
        .ok_or_else(|| ScrubError::Internal(format!("{item}: not an AG item")))
}

/// The finding for a tree that cannot even be opened: its header pointer
/// is unusable, which the header's own scrubber reports as damage.
pub(crate) fn unavailable(
    structure: &'static str,
    group: u32,
    why: &super::xref::Unavailable,
) -> Finding {
    Finding::new(
        FindingKind::Incomplete,
        structure,
        format!("{structure}.unavailable"),
        format!("the {structure} cannot be checked: {why}"),
    )
    .group(u64::from(group))
}

/// Puts a finding at a record.
pub(crate) fn at_record(f: Finding, at: RecordLoc) -> Finding {
    f.block(at.block.0)
        .record(u64::try_from(at.index).unwrap_or(u64::MAX))
}

/// A special owner's name, or "inode N".
pub(crate) fn owner_name(o: u64) -> String {
    use crate::format::btree::rmap::owner;
    match owner::name(o) {
        Some(n) if owner::is_special(o) => format!("the {n} owner"),
        _ => format!("inode {o}"),
    }
}

/// Every block of a tree must be in use (not in the bnobt) and owned by
/// `owner` alone in the rmapbt (`xchk_btree_check_block_owner`). Checked
/// run by run over the blocks the walk reached.
pub(crate) fn check_tree_blocks(
    ag: &super::xref::AgContext<'_>,
    xref: &super::xref::Xref<'_>,
    structure: &'static str,
    owner: u64,
    walk: &TreeWalk,
    fails: &mut XrefFailures,
    out: &mut Findings,
) {
    let group = ag.group();
    let has_rmap = ag.fs.geometry().features.has_rmapbt();
    for (start, len) in walk.blocks.runs() {
        let (Ok(s), Ok(l)) = (u32::try_from(start), u32::try_from(len)) else {
            continue;
        };
        // Almost always nothing is free: one lookup says so; the details
        // are gathered only when something is.
        let free = xref.free_any(s, l).and_then(|any| match any {
            None => Ok(Vec::new()),
            Some(_) => xref.free_overlaps(s, l),
        });
        match free {
            Ok(free) => {
                let mut b = ExtentBitmap::new();
                for r in &free {
                    b.set(u64::from(r.startblock), u64::from(r.blockcount));
                }
                for (fs_, fl) in b.runs_in(start, len) {
                    out.push(
                        xref_corrupt(
                            structure,
                            group,
                            "block-free",
                            format!(
                                "{structure} blocks {fs_}..{} are also recorded as free space in the bnobt",
                                fs_.saturating_add(fl)
                            ),
                        )
                        .block(fs_),
                    );
                }
            }
            Err(why) => fails.report(structure, group, "bnobt", why, out),
        }
        if !has_rmap {
            continue;
        }
        match xref.rmap_not_only_owner(s, l, owner) {
            Ok((missing, foreign, other)) => {
                let who = owner_name(owner);
                let runs = missing
                    .runs()
                    .map(|r| (r, "are not mapped to".to_owned()))
                    .chain(foreign.runs().map(|r| {
                        let o = other.map_or("another owner".to_owned(), owner_name);
                        (r, format!("are also mapped to {o}, not only to"))
                    }));
                for ((bs, bl), what) in runs {
                    out.push(
                        xref_corrupt(
                            structure,
                            group,
                            "block-owner",
                            format!(
                                "{structure} blocks {bs}..{} {what} {who} in the rmapbt",
                                bs.saturating_add(bl)
                            ),
                        )
                        .block(bs),
                    );
                }
            }
            Err(why) => fails.report(structure, group, "rmapbt", why, out),
        }
    }
}

#[cfg(test)]
mod lsn_tests {
    use super::lsn_ahead;

    #[test]
    fn lsn_compares_like_the_kernel() {
        let head = (1, 2953);
        let lsn = |c: u32, b: u32| (u64::from(c) << 32) | u64::from(b);
        assert!(!lsn_ahead(lsn(1, 2953), head));
        assert!(!lsn_ahead(lsn(1, 100), head));
        assert!(lsn_ahead(lsn(1, 4948), head));
        assert!(lsn_ahead(lsn(2, 0), head));
        assert!(!lsn_ahead(0, head));
        // Negative halves (high bit set) are never ahead; neither is -1.
        assert!(!lsn_ahead(lsn(0x8000_0001, 5), head));
        assert!(!lsn_ahead(lsn(1, 0x8000_0b73), head));
        assert!(!lsn_ahead(u64::MAX, head));
    }
}
