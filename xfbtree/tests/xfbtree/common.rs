//! Helpers shared by the test modules.

use xfbtree::verify::{Problem, Problems};
use xfbtree::{BlockStore, Btree, BtreeFormat};

/// Every problem the verifier finds.
pub fn problems<S: BlockStore, F: BtreeFormat>(tree: &Btree<S, F>) -> Vec<Problem> {
    let mut p = Problems::default();
    let summary = tree.verify(&mut p);
    assert!(
        summary.blocks <= tree.store().capacity(),
        "verifier read {} blocks from a store of {}",
        summary.blocks,
        tree.store().capacity()
    );
    p.0
}

/// Asserts the tree verifies clean.
#[track_caller]
pub fn assert_clean<S: BlockStore, F: BtreeFormat>(tree: &Btree<S, F>) {
    let p = problems(tree);
    assert!(p.is_empty(), "unexpected problems: {p:#?}");
}

/// All records, walking forwards.
pub fn forwards<S: BlockStore, F: BtreeFormat>(tree: &Btree<S, F>) -> Vec<F::Record> {
    let mut c = tree.cursor_first().expect("cursor");
    let mut out = Vec::new();
    while let Some(r) = c.next_record().expect("next") {
        out.push(r);
    }
    out
}

/// All records, walking backwards, returned in forward order.
pub fn backwards<S: BlockStore, F: BtreeFormat>(tree: &Btree<S, F>) -> Vec<F::Record> {
    let mut c = tree.cursor_last().expect("cursor");
    let mut out = Vec::new();
    while let Some(r) = c.prev_record().expect("prev") {
        out.push(r);
    }
    out.reverse();
    out
}
