//! Staging far more than the budget keeps the process's memory bounded.
//!
//! Its own test binary: the peak RSS (VmHWM) is process-wide, so no other
//! test may run beside it.

use xfile::{MemoryBudget, XFile};

const BUDGET: u64 = 4 << 20;
const STAGED: u64 = 256 << 20;
const CHUNK: usize = 1 << 20;

/// The process's peak resident set in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

/// Cheap, position-dependent content: each 8-byte word holds a hash of its
/// offset.
fn fill(buf: &mut [u8], off: u64) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let pos = off + 8 * i as u64;
        w.copy_from_slice(&(pos.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555).to_le_bytes());
    }
}

#[test]
fn staging_256_mib_under_a_4_mib_budget_keeps_rss_bounded() {
    // Reset the peak to the current RSS where the kernel allows it.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm_hwm();

    let budget = MemoryBudget::new(BUDGET);
    let f = XFile::create("spill", &budget).expect("create");
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0;
    while off < STAGED {
        fill(&mut buf, off);
        f.write_at(&buf, off).expect("write");
        off += CHUNK as u64;
    }
    let mut want = vec![0u8; CHUNK];
    let mut off = 0;
    while off < STAGED {
        f.read_at(&mut buf, off).expect("read");
        fill(&mut want, off);
        assert!(buf == want, "bytes at {off} differ");
        off += CHUNK as u64;
    }

    let st = f.stats();
    let grew = vm_hwm().saturating_sub(before);
    println!(
        "spill: staged {} MiB, budget {} MiB, peak RSS grew {:.1} MiB, spilled {} MiB, {} evictions, {} page-ins",
        STAGED >> 20,
        BUDGET >> 20,
        grew as f64 / (1 << 20) as f64,
        st.bytes_spilled >> 20,
        st.evictions,
        st.page_ins
    );
    assert!(grew < BUDGET + (32 << 20), "peak RSS grew by {grew} bytes");
    assert!(st.peak_resident_bytes <= BUDGET);
    assert!(st.bytes_spilled >= STAGED - BUDGET);
    assert_eq!(st.bytes_staged, STAGED);
}
