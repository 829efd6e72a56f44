//! Damage inside a xattr structure of a real image; see `mutate.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../../xfs/tests/xfs/mutate.rs"]
mod mutate;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mutate::run("xattr", data);
});
