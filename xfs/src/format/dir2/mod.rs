//! Directory formats (version 2 directories with v5 "dir3" headers).
//!
//! A directory is stored, by size, as
//! - **shortform** ([`sf`]): entries inside the inode's data fork;
//! - **block**: one directory block (`XDB3`) holding entries, a hash-sorted
//!   leaf array and a tail;
//! - **leaf / node**: data blocks (`XDD3`) in the first 32 GiB of the
//!   directory's address space, a hash index ([`leaf`]) at 32 GiB and a
//!   free-space index at 64 GiB.
//!
//! Entries in block and data blocks share one layout ([`data`]).

pub mod data;
pub mod leaf;
pub mod sf;

/// Byte size of each of the three directory address spaces (`XFS_DIR2_SPACE_SIZE`).
pub const SPACE_SIZE: u64 = 1 << 35;
/// Byte offset of the leaf (hash index) space.
pub const LEAF_OFFSET: u64 = SPACE_SIZE;
/// Byte offset of the free-space index space.
pub const FREE_OFFSET: u64 = 2 * SPACE_SIZE;
/// Alignment of data entries (`XFS_DIR2_DATA_ALIGN`).
pub const DATA_ALIGN: usize = 8;
/// Longest name (`MAXNAMELEN - 1`).
pub const MAX_NAME_LEN: usize = 255;

/// Directory entry file types (`XFS_DIR3_FT_*`).
pub mod ftype {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG_FILE: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHRDEV: u8 = 3;
    /// Block device.
    pub const BLKDEV: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
    /// Whiteout.
    pub const WHITEOUT: u8 = 8;
    /// One past the largest valid value.
    pub const MAX: u8 = 9;

    /// A short name for reports.
    pub fn name(ft: u8) -> &'static str {
        match ft {
            UNKNOWN => "unknown",
            REG_FILE => "regular",
            DIR => "directory",
            CHRDEV => "chardev",
            BLKDEV => "blockdev",
            FIFO => "fifo",
            SOCK => "socket",
            SYMLINK => "symlink",
            WHITEOUT => "whiteout",
            _ => "invalid",
        }
    }
}

/// True if `name` is a valid directory entry name: 1..=255 bytes, no `/`
/// and no NUL (`xfs_dir2_namecheck`).
pub fn name_is_valid(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// The directory/attribute name hash (`xfs_da_hashname`).
pub fn hashname(name: &[u8]) -> u32 {
    let mut hash: u32 = 0;
    let mut chunks = name.chunks_exact(4);
    for c in &mut chunks {
        hash = (u32::from(c[0]) << 21)
            ^ (u32::from(c[1]) << 14)
            ^ (u32::from(c[2]) << 7)
            ^ u32::from(c[3])
            ^ hash.rotate_left(7 * 4);
    }
    match *chunks.remainder() {
        [a, b, c] => {
            (u32::from(a) << 14) ^ (u32::from(b) << 7) ^ u32::from(c) ^ hash.rotate_left(7 * 3)
        }
        [a, b] => (u32::from(a) << 7) ^ u32::from(b) ^ hash.rotate_left(7 * 2),
        [a] => u32::from(a) ^ hash.rotate_left(7),
        _ => hash,
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_values() {
        // Values computed with xfs_db's `hash` command.
        assert_eq!(hashname(b"."), 0x2e);
        assert_eq!(hashname(b".."), 0x172e);
        assert_eq!(hashname(b""), 0);
    }

    #[test]
    fn names() {
        assert!(name_is_valid(b"a"));
        assert!(!name_is_valid(b""));
        assert!(!name_is_valid(b"a/b"));
        assert!(!name_is_valid(&[b'a', 0]));
        assert!(!name_is_valid(&[b'a'; 256]));
        assert_eq!(ftype::name(7), "symlink");
        assert_eq!(ftype::name(200), "invalid");
    }

    proptest! {
        #[test]
        fn hash_never_panics(name in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = hashname(&name);
        }
    }
}
