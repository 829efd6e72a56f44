//! CRC32C of self-describing metadata.
//!
//! XFS computes crc32c (Castagnoli) over a whole object (a sector, an inode,
//! a block) with the 4-byte CRC field taken as zero, and stores the result
//! little-endian (libxfs `xfs_cksum.h`: seed `~0`, final inversion). The
//! standard crc32c of the `crc32c` crate already includes the seed and the
//! inversion, so the stored value is exactly `crc32c(buf with zeroed field)`.

/// Computes the CRC of `buf` with the 4 bytes at `crc_off` taken as zero.
/// Returns `None` if the CRC field does not fit in the buffer.
pub fn compute(buf: &[u8], crc_off: usize) -> Option<u32> {
    let end = crc_off.checked_add(4)?;
    let before = buf.get(..crc_off)?;
    let after = buf.get(end..)?;
    let crc = crc32c::crc32c(before);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    Some(crc32c::crc32c_append(crc, after))
}

/// The CRC stored in `buf` at `crc_off` (little-endian), if it fits.
pub fn stored(buf: &[u8], crc_off: usize) -> Option<u32> {
    let end = crc_off.checked_add(4)?;
    let b: [u8; 4] = buf.get(crc_off..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// True if the CRC stored at `crc_off` matches the contents of `buf`.
pub fn verify(buf: &[u8], crc_off: usize) -> bool {
    match (compute(buf, crc_off), stored(buf, crc_off)) {
        (Some(c), Some(s)) => c == s,
        _ => false,
    }
}

/// Recomputes the CRC of `buf` and stores it at `crc_off`. Returns the new
/// CRC, or `None` (leaving `buf` unchanged) if the field does not fit.
pub fn update(buf: &mut [u8], crc_off: usize) -> Option<u32> {
    let crc = compute(buf, crc_off)?;
    let end = crc_off.checked_add(4)?;
    buf.get_mut(crc_off..end)?
        .copy_from_slice(&crc.to_le_bytes());
    Some(crc)
}

/// A `crc` problem for `structure` if the CRC stored at `crc_off` does not
/// match `buf`; `None` when it does.
pub(crate) fn problem(buf: &[u8], crc_off: usize, structure: String) -> Option<super::Problem> {
    if verify(buf, crc_off) {
        return None;
    }
    Some(super::Problem {
        structure,
        field: "crc".to_owned(),
        expected: format!("{:#x}", compute(buf, crc_off).unwrap_or(0)),
        actual: format!("{:#x}", stored(buf, crc_off).unwrap_or(0)),
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_value() {
        // crc32c("123456789") = 0xe3069283 (the standard check value); put it
        // after a zeroed 4-byte field.
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(b"123456789");
        let direct = crc32c::crc32c(&buf);
        assert_eq!(compute(&buf, 0), Some(direct));
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn update_then_verify() {
        let mut buf = vec![7u8; 512];
        assert!(!verify(&buf, 224));
        let crc = update(&mut buf, 224).unwrap();
        assert!(verify(&buf, 224));
        assert_eq!(stored(&buf, 224), Some(crc));
        buf[3] ^= 1;
        assert!(!verify(&buf, 224));
    }

    #[test]
    fn field_out_of_range() {
        let mut buf = vec![0u8; 8];
        assert_eq!(compute(&buf, 6), None);
        assert_eq!(update(&mut buf, usize::MAX), None);
        assert!(!verify(&buf, 5));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600), off in 0usize..700) {
            let mut b = buf.clone();
            let _ = verify(&buf, off);
            if update(&mut b, off).is_some() {
                prop_assert!(verify(&b, off));
            }
        }
    }
}
