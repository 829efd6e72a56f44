//! Shortform directories: the whole directory inside the inode's data fork
//! (`struct xfs_dir2_sf_hdr` and `xfs_dir2_sf_entry`).
//!
//! Header: `count`, `i8count` (entries needing 8-byte inode numbers), the
//! parent inode (4 bytes, or 8 if `i8count` is non-zero). Each entry:
//! `namelen`, a 2-byte `offset` (the entry's position if it were in a block
//! directory), the name, the file type (with FTYPE) and the inode number.
//! Checks follow libxfs `xfs_dir2_sf_verify`.

use super::data::{HEADER_SIZE, entry_size};
use super::{ftype, name_is_valid};
use crate::format::problem::{Checked, Checker};
use crate::format::{be16_at, be32_at, be64_at};

/// One shortform entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfEntry {
    /// The name.
    pub name: Vec<u8>,
    /// Position the entry would have in a block directory (`offset`).
    pub offset: u16,
    /// File type code, if the filesystem records it.
    pub ftype: Option<u8>,
    /// Inode number.
    pub ino: u64,
}

/// A decoded shortform directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortform {
    /// Entries in the header's `count`.
    pub count: u8,
    /// Entries with 8-byte inode numbers.
    pub i8count: u8,
    /// The parent directory (`..`).
    pub parent: u64,
    /// The entries decoded (`.` and `..` are implicit, not stored).
    pub entries: Vec<SfEntry>,
}

impl Shortform {
    /// Decodes a shortform directory of `size` bytes (the inode's
    /// `di_size`) from the data fork `fork`. Returns `None` if not even the
    /// header fits; otherwise the entries that could be decoded and the
    /// problems found (decoding stops at the first entry that overruns).
    pub fn parse(
        fork: &[u8],
        size: u64,
        has_ftype: bool,
        what: &str,
    ) -> Option<Checked<Shortform>> {
        let mut c = Checker::new(what);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > fork.len() {
            c.push(
                "core.size",
                format_args!("<= {} (the data fork)", fork.len()),
                size,
            );
        }
        let data = fork.get(..size.min(fork.len()))?;
        let count = *data.first()?;
        let i8count = *data.get(1)?;
        let ino_len: usize = if i8count == 0 { 4 } else { 8 };
        let parent = if i8count == 0 {
            u64::from(be32_at(data, 2)?)
        } else {
            be64_at(data, 2)?
        };
        let mut entries = Vec::new();
        let mut pos = 2usize.saturating_add(ino_len);
        // The entry offsets must increase by at least each entry's size in
        // a block directory, starting past the "." and ".." entries there
        // (`xfs_dir2_sf_verify`). How many entries use 8-byte inode numbers
        // (`i8count`) is the caller's to compare with the entries.
        let mut next_offset = HEADER_SIZE
            .saturating_add(entry_size(1, has_ftype))
            .saturating_add(entry_size(2, has_ftype));
        for i in 0..usize::from(count) {
            let field = format!("list[{i}]");
            let Some(&namelen) = data.get(pos) else {
                c.push(&field, "an entry inside the directory size", "past the end");
                break;
            };
            let name_start = pos.saturating_add(3);
            let name_end = name_start.saturating_add(usize::from(namelen));
            let ft_len = usize::from(has_ftype);
            let ino_at = name_end.saturating_add(ft_len);
            let end = ino_at.saturating_add(ino_len);
            if end > data.len() {
                c.push(
                    &field,
                    "an entry inside the directory size",
                    format_args!("ends at byte {end} of {}", data.len()),
                );
                break;
            }
            let offset = be16_at(data, pos.saturating_add(1)).unwrap_or(0);
            let name = data.get(name_start..name_end).unwrap_or(&[]).to_vec();
            let ft = if has_ftype {
                data.get(name_end).copied()
            } else {
                None
            };
            let ino = if ino_len == 4 {
                be32_at(data, ino_at).map(u64::from).unwrap_or(0)
            } else {
                be64_at(data, ino_at).unwrap_or(0)
            };
            c.expect(
                name_is_valid(&name),
                &format!("{field}.name"),
                "1..=255 bytes without '/' or NUL",
                String::from_utf8_lossy(&name).escape_debug(),
            );
            if let Some(ft) = ft {
                c.expect(
                    ft < ftype::MAX,
                    &format!("{field}.ftype"),
                    format_args!("< {}", ftype::MAX),
                    ft,
                );
            }
            c.expect(
                usize::from(offset) >= next_offset,
                &format!("{field}.offset"),
                format_args!(">= {next_offset} (offsets increase)"),
                offset,
            );
            next_offset =
                usize::from(offset).saturating_add(entry_size(usize::from(namelen), has_ftype));
            entries.push(SfEntry {
                name,
                offset,
                ftype: ft,
                ino,
            });
            pos = end;
        }
        if entries.len() == usize::from(count) {
            c.expect(
                pos == data.len(),
                "core.size",
                format_args!("{pos} (the end of the last entry)"),
                data.len(),
            );
        }
        Some(Checked {
            value: Shortform {
                count,
                i8count,
                parent,
                entries,
            },
            problems: c.finish(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut v = vec![2u8, 0];
        v.extend_from_slice(&128u32.to_be_bytes());
        for (name, off, ino) in [(&b"a"[..], 0x60u16, 131u32), (&b"bc"[..], 0x70, 132)] {
            v.push(u8::try_from(name.len()).unwrap());
            v.extend_from_slice(&off.to_be_bytes());
            v.extend_from_slice(name);
            v.push(1);
            v.extend_from_slice(&ino.to_be_bytes());
        }
        v
    }

    #[test]
    fn decodes() {
        let s = sample();
        let mut fork = s.clone();
        fork.resize(336, 0);
        let c =
            Shortform::parse(&fork, u64::try_from(s.len()).unwrap(), true, "inode 128").unwrap();
        assert!(c.is_ok(), "{:?}", c.problems);
        assert_eq!(c.value.parent, 128);
        assert_eq!(c.value.entries.len(), 2);
        assert_eq!(c.value.entries[1].name, b"bc");
        assert_eq!(c.value.entries[1].ino, 132);
        assert_eq!(c.value.entries[1].ftype, Some(1));
    }

    #[test]
    fn truncated() {
        let s = sample();
        let c =
            Shortform::parse(&s, u64::try_from(s.len() - 3).unwrap(), true, "inode 128").unwrap();
        assert_eq!(c.value.entries.len(), 1);
        assert_eq!(c.problems.len(), 1);
        assert!(Shortform::parse(&s, 3, true, "x").is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..400), size in any::<u64>(), ft in any::<bool>()) {
            if let Some(c) = Shortform::parse(&buf, size, ft, "x") {
                prop_assert!(c.value.entries.len() <= usize::from(c.value.count));
            }
        }
    }
}
