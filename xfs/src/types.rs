//! Newtypes for XFS's address spaces.
//!
//! XFS has several integer spaces that are easy to mix up: an AG-relative
//! block number (`agbno`), a filesystem block number (`fsbno`, which packs the
//! AG number into its high bits using `sb_agblklog`, so it is *not* a linear
//! block index), a 512-byte disk address (`daddr`), an inode number, an
//! AG-relative inode number and a file block offset. Each gets its own type
//! so that one cannot be passed where another is expected. Conversions that
//! need the geometry (`agblklog`, `blocklog`, ...) live on
//! [`Geometry`](crate::geometry::Geometry) and are checked.

use std::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty), $label:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw integer value.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " {}"), self.0)
            }
        }
    };
}

newtype!(
    /// Allocation group number (`xfs_agnumber_t`).
    AgNumber(u32),
    "AG"
);
newtype!(
    /// Block number relative to the start of an AG (`xfs_agblock_t`, "agbno").
    AgBlock(u32),
    "agbno"
);
newtype!(
    /// Filesystem block number (`xfs_fsblock_t`): `agno << agblklog | agbno`.
    FsBlock(u64),
    "fsbno"
);
newtype!(
    /// Disk address in 512-byte basic blocks (`xfs_daddr_t`).
    Daddr(u64),
    "daddr"
);
newtype!(
    /// Inode number (`xfs_ino_t`): `agno << (agblklog + inopblog) | agino`.
    Ino(u64),
    "inode"
);
newtype!(
    /// Inode number relative to its AG (`xfs_agino_t`).
    AgIno(u32),
    "agino"
);
newtype!(
    /// Block offset inside a file's fork (`xfs_fileoff_t`).
    FileOffset(u64),
    "file block"
);

impl Daddr {
    /// The byte offset of this disk address on the device, if it fits.
    pub fn to_bytes(self) -> Option<u64> {
        self.0.checked_mul(512)
    }
}

/// The "null" sentinels XFS stores on disk.
pub mod null {
    /// `NULLAGBLOCK`: no AG block.
    pub const AGBLOCK: u32 = u32::MAX;
    /// `NULLAGINO`: no AG inode (end of an unlinked list, empty bucket).
    pub const AGINO: u32 = u32::MAX;
    /// `NULLFSINO`: no inode.
    pub const FSINO: u64 = u64::MAX;
    /// `NULLFSBLOCK`: no filesystem block.
    pub const FSBLOCK: u64 = u64::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_space() {
        assert_eq!(AgBlock(7).to_string(), "agbno 7");
        assert_eq!(Ino(128).to_string(), "inode 128");
        assert_eq!(Daddr(3).to_bytes(), Some(1536));
        assert_eq!(Daddr(u64::MAX).to_bytes(), None);
    }
}
