//! Space for new structures, taken only from blocks proven free.

use crate::error::RepairError;
use scrub::ExtentBitmap;
use std::collections::VecDeque;

/// Blocks reserved for the structures one repair builds.
///
/// It starts from space the caller has *proven* free (for a filesystem:
/// free in the free-space records and owned by nobody in the reverse map)
/// and hands blocks out best-fit: the smallest free run that holds a whole
/// request, so large free extents stay whole. Blocks the same repair frees
/// are excluded: they must not be reused before the commit that frees them
/// is durable (the "busy extent" rule).
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    free: ExtentBitmap,
    queue: VecDeque<u64>,
    taken: Vec<u64>,
}

impl Reservation {
    /// A reservation over `proven_free`, minus `busy` (blocks this repair
    /// frees).
    pub fn new(mut proven_free: ExtentBitmap, busy: &ExtentBitmap) -> Self {
        proven_free.subtract(busy);
        Self {
            free: proven_free,
            queue: VecDeque::new(),
            taken: Vec::new(),
        }
    }

    /// Blocks still available (not reserved).
    pub fn available(&self) -> u64 {
        self.free.count()
    }

    /// Sets aside `n` more blocks for [`Reservation::take`]: one free run if
    /// any holds them all (the smallest such run), else the largest runs.
    pub fn reserve(&mut self, n: u64) -> Result<(), RepairError> {
        if n > self.free.count() {
            return Err(RepairError::NoSpace {
                needed: n,
                available: self.free.count(),
            });
        }
        let mut left = n;
        while left > 0 {
            let best = self
                .free
                .runs()
                .filter(|(_, l)| *l >= left)
                .min_by_key(|(_, l)| *l)
                .or_else(|| self.free.runs().max_by_key(|(_, l)| *l));
            let Some((start, len)) = best else {
                return Err(RepairError::NoSpace {
                    needed: n,
                    available: self.free.count(),
                });
            };
            let k = len.min(left);
            self.free.clear(start, k);
            self.queue.extend(start..start + k);
            left -= k;
        }
        Ok(())
    }

    /// The next reserved block.
    pub fn take(&mut self) -> Option<u64> {
        let b = self.queue.pop_front()?;
        self.taken.push(b);
        Some(b)
    }

    /// Blocks handed out, in order.
    pub fn taken(&self) -> &[u64] {
        &self.taken
    }

    /// Blocks handed out, as a bitmap.
    pub fn taken_bitmap(&self) -> ExtentBitmap {
        self.taken.iter().map(|b| (*b, 1)).collect()
    }

    /// Reserved blocks never handed out: they stay free.
    pub fn unused(&self) -> impl Iterator<Item = u64> + '_ {
        self.queue.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_and_busy_blocks() {
        let free: ExtentBitmap = [(10, 100), (200, 5), (300, 20)].into_iter().collect();
        let busy: ExtentBitmap = [(300, 2)].into_iter().collect();
        let mut r = Reservation::new(free, &busy);
        assert_eq!(r.available(), 123);
        r.reserve(4).unwrap();
        assert_eq!(
            (0..4).map(|_| r.take().unwrap()).collect::<Vec<_>>(),
            [200, 201, 202, 203]
        );
        r.reserve(18).unwrap();
        assert_eq!(r.take(), Some(302), "busy blocks are never handed out");
        assert!(r.reserve(1000).is_err());
        assert!(r.taken_bitmap().contains(200) && !r.taken_bitmap().contains(300));
        assert_eq!(r.unused().count(), 17);
        // Larger than any run: the largest runs are combined.
        let free: ExtentBitmap = [(0, 3), (10, 3)].into_iter().collect();
        let mut r = Reservation::new(free, &ExtentBitmap::new());
        r.reserve(5).unwrap();
        assert_eq!(r.unused().count(), 5);
    }
}
