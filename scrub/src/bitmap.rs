//! Extent bitmaps: sets of `u64` units (blocks, inodes) kept as runs.
//!
//! Scrubbers use them for "who owns this block" bookkeeping: the blocks a
//! btree walk reached, the blocks the reverse map says an owner has, and
//! the differences between them ("bitmap disunion" in the design: the old
//! blocks a repair may reap are `owned - still_used`).

use std::collections::BTreeMap;
use std::ops::Bound;

/// How much of a range a bitmap covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// No unit of the range is set.
    None,
    /// Some units are set, some are not.
    Partial,
    /// Every unit is set.
    Full,
}

/// A set of `u64` units stored as disjoint, non-adjacent runs.
///
/// Runs are half-open `[start, end)`. Ranges that would pass `u64::MAX`
/// are clipped there, so the largest unit, `u64::MAX` itself, is never set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentBitmap {
    /// start -> end of each run.
    runs: BTreeMap<u64, u64>,
    /// Units set, kept up to date.
    count: u64,
}

fn end_of(start: u64, len: u64) -> u64 {
    start.saturating_add(len)
}

impl ExtentBitmap {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no unit is set.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Number of units set.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of runs.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The run containing `x` or ending at it, if any.
    fn run_touching(&self, x: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=x)
            .next_back()
            .filter(|(_, e)| **e >= x)
            .map(|(s, e)| (*s, *e))
    }

    /// Sets `len` units from `start`.
    pub fn set(&mut self, start: u64, len: u64) {
        let mut s = start;
        let mut e = end_of(start, len);
        if s >= e {
            return;
        }
        // Merge with a run that contains or touches the start.
        if let Some((ps, pe)) = self.run_touching(s) {
            s = ps;
            e = e.max(pe);
            self.remove_run(ps, pe);
        }
        // Swallow every run that starts inside (or right at the end of) the new one.
        while let Some((ns, ne)) = self
            .runs
            .range((Bound::Included(s), Bound::Included(e)))
            .next()
            .map(|(a, b)| (*a, *b))
        {
            e = e.max(ne);
            self.remove_run(ns, ne);
        }
        self.runs.insert(s, e);
        self.count += e - s;
    }

    fn remove_run(&mut self, s: u64, e: u64) {
        self.runs.remove(&s);
        self.count -= e - s;
    }

    /// Clears `len` units from `start`.
    pub fn clear(&mut self, start: u64, len: u64) {
        let s = start;
        let e = end_of(start, len);
        if s >= e {
            return;
        }
        // A run that starts before s and reaches into the range: keep its head.
        if let Some((ps, pe)) = self.runs.range(..s).next_back().map(|(a, b)| (*a, *b))
            && pe > s
        {
            self.remove_run(ps, pe);
            self.runs.insert(ps, s);
            self.count += s - ps;
            if pe > e {
                self.runs.insert(e, pe);
                self.count += pe - e;
                return;
            }
        }
        // Runs that start inside the range: drop them, keep any tail.
        while let Some((ns, ne)) = self.runs.range(s..e).next().map(|(a, b)| (*a, *b)) {
            self.remove_run(ns, ne);
            if ne > e {
                self.runs.insert(e, ne);
                self.count += ne - e;
            }
        }
    }

    /// Whether unit `x` is set.
    pub fn contains(&self, x: u64) -> bool {
        self.runs
            .range(..=x)
            .next_back()
            .is_some_and(|(_, e)| *e > x)
    }

    /// How much of `len` units from `start` is set. An empty range is `Full`.
    pub fn coverage(&self, start: u64, len: u64) -> Coverage {
        let e = end_of(start, len);
        if start >= e {
            return Coverage::Full;
        }
        let set = self.count_in(start, len);
        if set == 0 {
            Coverage::None
        } else if set == e - start {
            Coverage::Full
        } else {
            Coverage::Partial
        }
    }

    /// Number of set units among `len` units from `start`.
    pub fn count_in(&self, start: u64, len: u64) -> u64 {
        let e = end_of(start, len);
        let mut n = 0;
        if let Some((_, pe)) = self.runs.range(..start).next_back() {
            n += pe.min(&e).saturating_sub(start);
        }
        for (rs, re) in self.runs.range(start..e) {
            n += re.min(&e) - rs;
        }
        n
    }

    /// The runs, as `(start, len)`, in order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(s, e)| (*s, e - s))
    }

    /// The runs that intersect `len` units from `start`, clipped to them.
    pub fn runs_in(&self, start: u64, len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let e = end_of(start, len);
        let head = self
            .runs
            .range(..start)
            .next_back()
            .filter(|(_, pe)| **pe > start)
            .map(|(_, pe)| (start, pe.min(&e) - start));
        head.into_iter().chain(
            self.runs
                .range(start..e)
                .map(move |(s, re)| (*s, re.min(&e) - s)),
        )
    }

    /// Sets every unit set in `other`.
    pub fn union(&mut self, other: &ExtentBitmap) {
        for (s, l) in other.runs() {
            self.set(s, l);
        }
    }

    /// Clears every unit set in `other` (the design's "disunion").
    pub fn subtract(&mut self, other: &ExtentBitmap) {
        for (s, l) in other.runs() {
            self.clear(s, l);
        }
    }

    /// Keeps only the units also set in `other`.
    pub fn intersect(&mut self, other: &ExtentBitmap) {
        let mut out = ExtentBitmap::new();
        for (s, l) in self.runs() {
            for (os, ol) in other.runs_in(s, l) {
                out.set(os, ol);
            }
        }
        *self = out;
    }

    /// The units not set within `len` units from `start`, as runs.
    pub fn gaps(&self, start: u64, len: u64) -> Vec<(u64, u64)> {
        let e = end_of(start, len);
        let mut out = Vec::new();
        let mut at = start;
        for (s, l) in self.runs_in(start, len) {
            if s > at {
                out.push((at, s - at));
            }
            at = s + l;
        }
        if at < e {
            out.push((at, e - at));
        }
        out
    }
}

impl FromIterator<(u64, u64)> for ExtentBitmap {
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(iter: I) -> Self {
        let mut b = ExtentBitmap::new();
        for (s, l) in iter {
            b.set(s, l);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const DOMAIN: u64 = 200;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u64, u64),
        Clear(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..DOMAIN, 0u64..30).prop_map(|(s, l)| Op::Set(s, l)),
            (0..DOMAIN, 0u64..30).prop_map(|(s, l)| Op::Clear(s, l)),
        ]
    }

    fn apply(b: &mut ExtentBitmap, m: &mut BTreeSet<u64>, op: &Op) {
        match *op {
            Op::Set(s, l) => {
                b.set(s, l);
                m.extend(s..s + l);
            }
            Op::Clear(s, l) => {
                b.clear(s, l);
                for x in s..s + l {
                    m.remove(&x);
                }
            }
        }
    }

    fn model_runs(m: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &x in m {
            match out.last_mut() {
                Some((s, l)) if *s + *l == x => *l += 1,
                _ => out.push((x, 1)),
            }
        }
        out
    }

    fn check(b: &ExtentBitmap, m: &BTreeSet<u64>) {
        assert_eq!(
            b.runs().collect::<Vec<_>>(),
            model_runs(m),
            "runs are maximal and ordered"
        );
        assert_eq!(b.count(), m.len() as u64);
        for x in 0..DOMAIN + 40 {
            assert_eq!(b.contains(x), m.contains(&x), "unit {x}");
        }
    }

    proptest! {
        #[test]
        fn matches_a_set_of_units(ops in prop::collection::vec(op(), 0..60), q in (0..DOMAIN, 0u64..50)) {
            let (mut b, mut m) = (ExtentBitmap::new(), BTreeSet::new());
            for o in &ops {
                apply(&mut b, &mut m, o);
            }
            check(&b, &m);
            let (qs, ql) = q;
            let n = (qs..qs + ql).filter(|x| m.contains(x)).count() as u64;
            prop_assert_eq!(b.count_in(qs, ql), n);
            let want = if ql == 0 || n == ql { Coverage::Full } else if n == 0 { Coverage::None } else { Coverage::Partial };
            prop_assert_eq!(b.coverage(qs, ql), want);
            let gaps: BTreeSet<u64> = b.gaps(qs, ql).into_iter().flat_map(|(s, l)| s..s + l).collect();
            let want_gaps: BTreeSet<u64> = (qs..qs + ql).filter(|x| !m.contains(x)).collect();
            prop_assert_eq!(gaps, want_gaps);
        }

        #[test]
        fn set_algebra_matches(a in prop::collection::vec(op(), 0..40), c in prop::collection::vec(op(), 0..40)) {
            let (mut ba, mut ma) = (ExtentBitmap::new(), BTreeSet::new());
            let (mut bc, mut mc) = (ExtentBitmap::new(), BTreeSet::new());
            for o in &a { apply(&mut ba, &mut ma, o); }
            for o in &c { apply(&mut bc, &mut mc, o); }
            let mut u = ba.clone(); u.union(&bc);
            check(&u, &ma.union(&mc).copied().collect());
            let mut d = ba.clone(); d.subtract(&bc);
            check(&d, &ma.difference(&mc).copied().collect());
            let mut i = ba.clone(); i.intersect(&bc);
            check(&i, &ma.intersection(&mc).copied().collect());
        }
    }

    #[test]
    fn ranges_near_the_top_are_clipped() {
        let mut b = ExtentBitmap::new();
        b.set(u64::MAX - 2, 10);
        assert_eq!(b.count(), 2);
        assert!(b.contains(u64::MAX - 1));
        assert!(!b.contains(u64::MAX));
        b.clear(0, u64::MAX);
        assert!(b.is_empty());
    }
}
