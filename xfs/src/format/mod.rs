//! XFS v5 on-disk structures: zerocopy views, decoded values and verifiers.
//!
//! Each structure has one module named as libxfs names it. A module holds
//! - a `pub(crate)` raw view (`#[repr(C)]`, big-endian fields, CRC fields
//!   little-endian) with a compile-time size assertion,
//! - a decoded value with every field as a plain integer, and
//! - a verifier that follows the kernel's buffer verifier and returns *all*
//!   the problems it finds as [`Problem`]s, not just the first.
//!
//! Every byte handed to this module is untrusted: decoding never panics and
//! all arithmetic is checked (the module denies unchecked arithmetic and
//! `as` casts through clippy).
#![warn(clippy::arithmetic_side_effects, clippy::as_conversions)]

pub mod agf;
pub mod agfl;
pub mod agi;
pub mod attr;
pub mod bmbt_rec;
pub mod btree;
pub mod crc;
pub mod dinode;
pub mod dir2;
pub mod features;
pub mod log;
mod problem;
pub mod superblock;
pub mod symlink;

pub use problem::{Checked, Problem};

use std::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a basic block (`BBSIZE`): the unit of disk addresses.
pub const BBSIZE: usize = 512;

/// A filesystem UUID as stored on disk.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// True if every byte is zero (the "nil" UUID).
    pub fn is_nil(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Display for Uuid {
    /// Formats like libuuid's `uuid_unparse`: lowercase `8-4-4-4-12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A buffer was shorter than the structure decoded from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{structure}: buffer of {actual} bytes is shorter than the {needed} bytes needed")]
#[non_exhaustive]
pub struct ShortBuffer {
    /// What was being decoded.
    pub structure: &'static str,
    /// Bytes needed.
    pub needed: usize,
    /// Bytes given.
    pub actual: usize,
}

/// Reads a zerocopy view from the front of `buf`, or says how short it was.
pub(crate) fn view<'a, T>(buf: &'a [u8], structure: &'static str) -> Result<&'a T, ShortBuffer>
where
    T: FromBytes + KnownLayout + Immutable,
{
    T::ref_from_prefix(buf)
        .map(|(v, _)| v)
        .map_err(|_| ShortBuffer {
            structure,
            needed: size_of::<T>(),
            actual: buf.len(),
        })
}

/// Reads a big-endian `u16` at `off`, if the buffer is long enough.
pub(crate) fn be16_at(buf: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    let b = buf.get(off..end)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian `u32` at `off`, if the buffer is long enough.
pub(crate) fn be32_at(buf: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = buf.get(off..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a big-endian `u64` at `off`, if the buffer is long enough.
pub(crate) fn be64_at(buf: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let b: [u8; 8] = buf.get(off..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Formats a magic number as XFS tools do: hex plus its ASCII letters when
/// they are printable (`0x58414746 ("XAGF")`).
pub(crate) fn magic_str(magic: u32) -> String {
    let bytes = magic.to_be_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic()) {
        format!("{magic:#x} (\"{}\")", String::from_utf8_lossy(&bytes))
    } else {
        format!("{magic:#x}")
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn uuid_formats_like_libuuid() {
        let u = Uuid([
            0xe4, 0xf8, 0x17, 0x20, 0x6a, 0x22, 0x42, 0x96, 0xb5, 0xd9, 0xac, 0x3f, 0x09, 0x04,
            0x39, 0x99,
        ]);
        assert_eq!(u.to_string(), "e4f81720-6a22-4296-b5d9-ac3f09043999");
        assert!(Uuid::default().is_nil());
    }

    #[test]
    fn byte_readers_refuse_short_buffers() {
        assert_eq!(be32_at(&[1, 2, 3], 0), None);
        assert_eq!(be32_at(&[0, 0, 1, 2], 0), Some(0x102));
        assert_eq!(be64_at(&[0; 8], usize::MAX), None);
        assert_eq!(be16_at(&[0xab, 0xcd], 0), Some(0xabcd));
    }

    #[test]
    fn magic_strings() {
        assert_eq!(magic_str(0x5841_4746), "0x58414746 (\"XAGF\")");
        assert_eq!(magic_str(0), "0x0");
    }
}
