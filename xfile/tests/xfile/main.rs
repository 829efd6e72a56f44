//! Integration tests of the xfile crate (one binary; the peak-RSS spill
//! test has its own, see `tests/spill.rs`).

mod array;
mod blob;
mod concurrency;
mod enospc;
mod file;
mod sparse;

use xfile::{MemoryBudget, XFile, XFileOptions};

/// Options with the smallest page size, so a few pages are a few KiB.
pub fn small_pages() -> XFileOptions {
    XFileOptions {
        page_size: 4096,
        ..XFileOptions::default()
    }
}

/// The budget's bookkeeping is exact and consistent: each structure's
/// resident bytes are a whole number of pages, the total is the sum, peaks
/// are at least the current values, and the limit holds.
pub fn check_budget(budget: &MemoryBudget) {
    let s = budget.stats();
    let sum: u64 = s.structures.iter().map(|x| x.resident_bytes).sum();
    assert_eq!(
        s.total.resident_bytes, sum,
        "total resident is the sum: {s:#?}"
    );
    assert_eq!(
        s.total.bytes_staged,
        s.structures.iter().map(|x| x.bytes_staged).sum::<u64>()
    );
    assert_eq!(
        s.total.bytes_spilled,
        s.structures.iter().map(|x| x.bytes_spilled).sum::<u64>()
    );
    assert_eq!(
        s.total.evictions,
        s.structures.iter().map(|x| x.evictions).sum::<u64>()
    );
    assert_eq!(
        s.total.page_ins,
        s.structures.iter().map(|x| x.page_ins).sum::<u64>()
    );
    assert_eq!(
        s.total.records,
        s.structures.iter().map(|x| x.records).sum::<u64>()
    );
    assert_eq!(
        s.total.leases_held,
        s.structures.iter().map(|x| x.leases_held).sum::<u64>()
    );
    assert!(s.total.resident_bytes <= s.limit, "limit holds: {s:#?}");
    assert!(
        s.total.peak_resident_bytes <= s.limit,
        "peak within limit: {s:#?}"
    );
    assert!(s.total.peak_resident_bytes >= s.total.resident_bytes);
    for x in &s.structures {
        assert!(x.peak_resident_bytes >= x.resident_bytes, "{x:?}");
        assert!(
            x.peak_resident_bytes <= s.total.peak_resident_bytes,
            "{x:?}"
        );
    }
    assert_eq!(
        budget.used(),
        sum,
        "charges equal the per-structure sum at rest"
    );
}

/// The file's resident bytes are exactly its cached pages.
pub fn check_file(file: &XFile) {
    let st = file.stats();
    let pages = file.resident_pages();
    assert_eq!(
        st.resident_bytes,
        pages as u64 * file.page_size() as u64,
        "resident bytes = pages x page size: {pages} pages, {st:?}"
    );
}

#[test]
fn every_structure_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemoryBudget>();
    assert_send_sync::<XFile>();
    assert_send_sync::<xfile::XfArray<u64>>();
    assert_send_sync::<xfile::SparseXfArray<[u8; 3]>>();
    assert_send_sync::<xfile::XfBlob>();
    assert_send_sync::<xfile::PageLease<'static>>();
    assert_send_sync::<xfile::StagingError>();
}
