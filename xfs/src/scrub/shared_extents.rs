//! Shared extents derived from mappings: the reference count of every
//! block is the number of shareable mappings over it, and the refcount
//! btree records each maximal run of blocks with the same count of at
//! least two (what `xfs_repair` phase 4 computes from the reverse
//! mappings and the kernel's refcount repair rebuilds from).
//!
//! Used by the shadow check (counts derived from the owners, compared
//! with the refcountbt) and by the refcountbt rebuild (counts derived from
//! the rmapbt, written as the new tree). The sweep keeps only the ends of
//! the mappings over the current block, so its memory is bounded by the
//! largest number of mappings sharing one block, never by the AG.
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Most mappings over one block the sweep tracks; beyond it the count is
/// not confirmed (an error, never a guess).
pub(crate) const MAX_OVERLAPPING: usize = 1 << 20;

/// A run of blocks `[start, start + len)` that `refcount` mappings share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedRun {
    pub start: u64,
    pub len: u64,
    pub refcount: u64,
}

impl SharedRun {
    /// One past the last block.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Why a sweep stopped.
#[derive(Debug)]
pub(crate) enum SweepError<E> {
    /// More than [`MAX_OVERLAPPING`] mappings over one block.
    Crowded,
    /// The sink refused a run.
    Sink(E),
}

/// Counts the mappings over every block in one pass in block order and
/// hands each shared run to a sink, runs of equal count that touch merged.
#[derive(Debug, Default)]
pub(crate) struct RefcountSweep {
    /// Ends of the mappings over the current position.
    active: BinaryHeap<Reverse<u64>>,
    /// Everything before it has been counted.
    pos: u64,
    /// The run being extended.
    run: Option<SharedRun>,
}

impl RefcountSweep {
    /// A mapping of blocks `[start, end)`; starts must come in order.
    pub fn push<E>(
        &mut self,
        start: u64,
        end: u64,
        sink: &mut impl FnMut(SharedRun) -> Result<(), E>,
    ) -> Result<(), SweepError<E>> {
        self.advance(start, sink)?;
        if self.active.len() >= MAX_OVERLAPPING {
            return Err(SweepError::Crowded);
        }
        if end > start {
            self.active.push(Reverse(end));
        }
        Ok(())
    }

    /// Counts everything before `to`.
    fn advance<E>(
        &mut self,
        to: u64,
        sink: &mut impl FnMut(SharedRun) -> Result<(), E>,
    ) -> Result<(), SweepError<E>> {
        while let Some(&Reverse(e)) = self.active.peek() {
            if e > to {
                break;
            }
            self.segment(self.pos, e, self.count(), sink)?;
            self.pos = self.pos.max(e);
            while self.active.peek().is_some_and(|&Reverse(x)| x == e) {
                self.active.pop();
            }
        }
        if !self.active.is_empty() {
            self.segment(self.pos, to, self.count(), sink)?;
        }
        self.pos = self.pos.max(to);
        Ok(())
    }

    fn count(&self) -> u64 {
        u64::try_from(self.active.len()).unwrap_or(u64::MAX)
    }

    /// Blocks `[start, end)` have `n` mappings.
    fn segment<E>(
        &mut self,
        start: u64,
        end: u64,
        n: u64,
        sink: &mut impl FnMut(SharedRun) -> Result<(), E>,
    ) -> Result<(), SweepError<E>> {
        if start >= end {
            return Ok(());
        }
        if let Some(r) = self.run.as_mut() {
            if r.end() == start && r.refcount == n {
                r.len = r.len.saturating_add(end.saturating_sub(start));
                return Ok(());
            }
            self.flush(sink)?;
        }
        if n >= 2 {
            self.run = Some(SharedRun {
                start,
                len: end.saturating_sub(start),
                refcount: n,
            });
        }
        Ok(())
    }

    fn flush<E>(
        &mut self,
        sink: &mut impl FnMut(SharedRun) -> Result<(), E>,
    ) -> Result<(), SweepError<E>> {
        match self.run.take() {
            Some(r) => sink(r).map_err(SweepError::Sink),
            None => Ok(()),
        }
    }

    /// Counts what is left and hands over the last run.
    pub fn finish<E>(
        &mut self,
        sink: &mut impl FnMut(SharedRun) -> Result<(), E>,
    ) -> Result<(), SweepError<E>> {
        let last = self.active.iter().map(|r| r.0).max().unwrap_or(self.pos);
        self.advance(last, sink)?;
        self.flush(sink)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    fn sweep(maps: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        let mut sink = |r: SharedRun| {
            out.push((r.start, r.len, r.refcount));
            Ok::<(), ()>(())
        };
        let mut sw = RefcountSweep::default();
        let mut sorted = maps.to_vec();
        sorted.sort();
        for (s, e) in sorted {
            sw.push(s, e, &mut sink).unwrap();
        }
        sw.finish(&mut sink).unwrap();
        out
    }

    /// The same by brute force: count per block, then merge.
    fn brute(maps: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
        let end = maps.iter().map(|m| m.1).max().unwrap_or(0);
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for b in 0..end {
            let n = maps.iter().filter(|m| m.0 <= b && b < m.1).count() as u64;
            if n < 2 {
                continue;
            }
            match out.last_mut() {
                Some(l) if l.0 + l.1 == b && l.2 == n => l.1 += 1,
                _ => out.push((b, 1, n)),
            }
        }
        out
    }

    #[test]
    fn sweep_counts_owners_per_block() {
        assert_eq!(sweep(&[(0, 10), (5, 15)]), [(5, 5, 2)]);
        assert_eq!(sweep(&[(0, 10), (0, 10), (0, 10)]), [(0, 10, 3)]);
        assert_eq!(
            sweep(&[(0, 10), (2, 4), (2, 8), (20, 30)]),
            [(2, 2, 3), (4, 4, 2)]
        );
        // Two runs of the same count that touch are one record.
        assert_eq!(sweep(&[(0, 5), (0, 5), (5, 10), (5, 10)]), [(0, 10, 2)]);
        assert!(sweep(&[(0, 5), (5, 10)]).is_empty());
        // An empty mapping counts for nothing.
        assert!(sweep(&[(3, 3), (0, 5)]).is_empty());
    }

    #[test]
    fn a_refusing_sink_stops_the_sweep() {
        let mut sw = RefcountSweep::default();
        let mut sink = |_r: SharedRun| Err("full");
        sw.push(0, 4, &mut sink).unwrap();
        sw.push(0, 4, &mut sink).unwrap();
        assert!(matches!(
            sw.finish(&mut sink),
            Err(SweepError::Sink("full"))
        ));
    }

    proptest::proptest! {
        #[test]
        fn sweep_matches_brute_force(maps in proptest::collection::vec((0u64..60, 1u64..20), 0..12)) {
            let maps: Vec<(u64, u64)> = maps.into_iter().map(|(s, l)| (s, s + l)).collect();
            proptest::prop_assert_eq!(sweep(&maps), brute(&maps));
        }
    }
}
