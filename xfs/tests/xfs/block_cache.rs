//! The image block store remembers each cached block's checksum verdict,
//! so repeated lookups (cross-referencing) checksum a block once.

use crate::common::{open, testdata};
use std::cell::Cell;
use xfbtree::{BlockAddr, BlockStore};
use xfs::types::AgNumber;

#[test]
fn checksum_verdict_is_computed_once_per_cached_block() {
    let fs = open(&testdata().join("images/default.img.zst")).unwrap();
    let agf = fs.read_agf(AgNumber(0)).unwrap().value;
    let root = BlockAddr(u64::from(agf.bno_root));
    let blocks = fs.ag_blocks(AgNumber(0));
    let calls = Cell::new(0u32);
    let verify = |_: &[u8]| {
        calls.set(calls.get() + 1);
        false
    };
    // The verdict (here a failing one) is what the first reader found, on
    // every later read of the cached block, without verifying again.
    for _ in 0..3 {
        let seen = blocks
            .read_verified(root, verify, |b, ok| (b.len(), ok))
            .unwrap();
        assert_eq!(seen, (4096, false));
    }
    assert_eq!(calls.get(), 1);
    // Another block is verified on its own.
    let other = BlockAddr(u64::from(agf.cnt_root));
    assert_ne!(other, root);
    blocks.read_verified(other, verify, |_, _| ()).unwrap();
    assert_eq!(calls.get(), 2);
    // A fresh store knows nothing yet.
    let fresh = fs.ag_blocks(AgNumber(0));
    let ok = fresh.read_verified(root, |_| true, |_, ok| ok).unwrap();
    assert!(ok);
}
