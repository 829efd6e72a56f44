//! Reaping: which blocks of an old structure can be freed after a rebuild.

use scrub::ExtentBitmap;

/// The fate of an old structure's blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Blocks to free: owned by the old structure, not used by the new one,
    /// owned by nobody else.
    pub free: ExtentBitmap,
    /// Blocks cross-linked with another owner: the old structure's claim is
    /// dropped, the block stays allocated to the other owner.
    pub unmap_only: ExtentBitmap,
}

/// Decides the fate of `old` (blocks the old structure's owner had) given
/// `keep` (blocks still in use by this owner, e.g. the new structure's) and
/// `owned_by_others` (whether a block also belongs to someone else).
///
/// This is the design's "bitmap disunion": candidates are `old - keep`;
/// each is freed unless another owner still maps it, in which case only
/// this owner's claim goes away.
pub fn reap<E>(
    old: &ExtentBitmap,
    keep: &ExtentBitmap,
    mut owned_by_others: impl FnMut(u64) -> Result<bool, E>,
) -> Result<Reaped, E> {
    let mut candidates = old.clone();
    candidates.subtract(keep);
    let mut out = Reaped::default();
    for (start, len) in candidates.runs() {
        for b in start..start + len {
            if owned_by_others(b)? {
                out.unmap_only.set(b, 1);
            } else {
                out.free.set(b, 1);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crosslinked_blocks_lose_only_this_owner() {
        let old: ExtentBitmap = [(10, 10)].into_iter().collect();
        let keep: ExtentBitmap = [(12, 2)].into_iter().collect();
        let r = reap(&old, &keep, |b| Ok::<_, ()>(b == 15 || b == 16)).unwrap();
        assert_eq!(
            r.free.runs().collect::<Vec<_>>(),
            [(10, 2), (14, 1), (17, 3)]
        );
        assert_eq!(r.unmap_only.runs().collect::<Vec<_>>(), [(15, 2)]);
    }
}
