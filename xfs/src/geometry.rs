//! Filesystem geometry: every value derived from the superblock, computed
//! once, validated, and the checked conversions between address spaces.
//!
//! The derivations follow libxfs: `xfs_ialloc_setup_geometry` for inode
//! chunk and cluster sizes, `xfs_agino_range` for the valid inode numbers of
//! an AG, the `*_compute_maxlevels` functions for the maximum height of each
//! btree (computed from the *minimum* records per block, the kernel's way),
//! and the mount-time checks of `xfs_mountfs` (sparse inode alignment) and
//! `xfs_check_sizes`.

use crate::error::Error;
use crate::format::features::Features;
use crate::format::superblock::{SbKind, Superblock};
use crate::format::{Problem, Uuid};
use crate::types::{AgBlock, AgIno, AgNumber, Daddr, FsBlock, Ino};

/// Inodes per inode chunk (`XFS_INODES_PER_CHUNK`).
pub const INODES_PER_CHUNK: u32 = 64;
/// Inodes covered by one bit of a sparse chunk's 16-bit holemask.
pub const INODES_PER_HOLEMASK_BIT: u32 = INODES_PER_CHUNK / 16;
/// `XFS_INODE_BIG_CLUSTER_SIZE`: the base inode cluster size.
const INODE_BIG_CLUSTER_SIZE: u32 = 8192;
/// Short-form btree block header length on v5 (`XFS_BTREE_SBLOCK_CRC_LEN`).
pub const SBLOCK_CRC_LEN: u32 = 56;
/// Long-form btree block header length on v5 (`XFS_BTREE_LBLOCK_CRC_LEN`).
pub const LBLOCK_CRC_LEN: u32 = 72;
/// Size of the AGFL header on v5; the agbno array follows it.
pub const AGFL_HEADER_LEN: u32 = 36;
/// Size of the v3 inode core; the data fork starts here.
pub const DINODE_CORE_SIZE: u32 = 176;

/// Inode allocation geometry (`struct xfs_ino_geometry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeGeometry {
    /// Inodes per inode chunk: always 64.
    pub inodes_per_chunk: u32,
    /// Inodes allocated at once (`ialloc_inos`): max(64, inodes per block).
    pub ialloc_inos: u32,
    /// Blocks allocated at once (`ialloc_blks`): one chunk.
    pub ialloc_blks: u32,
    /// Smallest allocation (`ialloc_min_blks`): the sparse alignment when
    /// sparse inodes are on, else a whole chunk.
    pub ialloc_min_blks: u32,
    /// Desired cluster size before rounding to blocks (`inode_cluster_size_raw`).
    pub cluster_size_raw: u32,
    /// Inode cluster buffer size in bytes.
    pub cluster_size: u32,
    /// Blocks per inode cluster.
    pub blocks_per_cluster: u32,
    /// Inodes per inode cluster.
    pub inodes_per_cluster: u32,
    /// Alignment of inode chunks in blocks (`cluster_align`).
    pub cluster_align: u32,
    /// `cluster_align` in inodes.
    pub cluster_align_inodes: u32,
    /// Sparse inode chunks are enabled.
    pub sparse: bool,
    /// Inodes covered by one holemask bit (4).
    pub inodes_per_holemask_bit: u32,
    /// The most inodes `imaxpct` allows (`maxicount`), 0 for no limit.
    pub max_icount: u64,
}

/// Location of the internal log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGeometry {
    /// First block of the log (`sb_logstart`).
    pub start: FsBlock,
    /// AG that holds the log.
    pub agno: AgNumber,
    /// First block of the log inside its AG.
    pub agbno: AgBlock,
    /// Length in filesystem blocks (`sb_logblocks`).
    pub blocks: u32,
    /// Disk address of the first log block.
    pub start_daddr: Daddr,
    /// Length in 512-byte basic blocks.
    pub bb_count: u64,
    /// Log sector size in bytes.
    pub sector_size: u32,
    /// Log stripe unit in bytes.
    pub sunit: u32,
    /// Log format version (2 on v5).
    pub version: u32,
}

/// The maximum height of each btree (`m_*_maxlevels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxLevels {
    /// Free-space btrees (bnobt, cntbt).
    pub alloc: u32,
    /// Inode btrees (inobt, finobt).
    pub inobt: u32,
    /// Reverse-mapping btree (0 without rmapbt).
    pub rmap: u32,
    /// Refcount btree (0 without reflink).
    pub refcount: u32,
    /// Data fork block-mapping btree, counting the in-inode root.
    pub bmbt_data: u32,
    /// Attribute fork block-mapping btree, counting the in-inode root.
    pub bmbt_attr: u32,
}

/// Everything derived from a valid superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// User-visible filesystem UUID (`sb_uuid`).
    pub uuid: Uuid,
    /// UUID stamped in metadata (`sb_meta_uuid` with META_UUID, else `sb_uuid`).
    pub meta_uuid: Uuid,
    /// Feature words.
    pub features: Features,
    /// Filesystem block size in bytes.
    pub block_size: u32,
    /// log2 of the block size.
    pub block_log: u8,
    /// Sector size in bytes.
    pub sector_size: u32,
    /// log2 of the sector size.
    pub sector_log: u8,
    /// Blocks in the data device (`sb_dblocks`).
    pub dblocks: u64,
    /// Number of AGs.
    pub ag_count: u32,
    /// Blocks per AG (all but possibly the last).
    pub ag_blocks: u32,
    /// Bits of an fsbno used for the agbno.
    pub ag_blk_log: u8,
    /// Blocks in the last AG.
    pub last_ag_blocks: u32,
    /// Inode size in bytes.
    pub inode_size: u32,
    /// log2 of the inode size.
    pub inode_log: u8,
    /// Inodes per block.
    pub inodes_per_block: u32,
    /// log2 of inodes per block.
    pub inopb_log: u8,
    /// Bits of an inode number used for the agino.
    pub agino_log: u8,
    /// Inode allocation geometry.
    pub inodes: InodeGeometry,
    /// The internal log.
    pub log: LogGeometry,
    /// Directory block size in bytes.
    pub dir_block_size: u32,
    /// log2 of the directory block size.
    pub dir_block_log: u8,
    /// Filesystem blocks per directory block.
    pub dir_block_fsbs: u32,
    /// Maximum btree heights.
    pub maxlevels: MaxLevels,
    /// Slots in the AGFL.
    pub agfl_size: u32,
    /// The last AG block holding AG headers (`XFS_AGFL_BLOCK`): valid
    /// metadata pointers are strictly above it.
    pub ag_header_last_block: u32,
    /// The root directory inode.
    pub root_ino: Ino,
}

/// `xfs_btree_compute_maxlevels`: height of a btree holding `records`
/// records when every block holds only the minimum.
pub(crate) fn compute_maxlevels(minrecs: [u32; 2], records: u64) -> u32 {
    let leaf = u64::from(minrecs[0].max(1));
    let node = u64::from(minrecs[1].max(2));
    let mut blocks = records.div_ceil(leaf);
    let mut height = 1u32;
    while blocks > 1 {
        blocks = blocks.div_ceil(node);
        height = height.saturating_add(1);
    }
    height
}

/// `xfs_btree_space_to_height`: height of a btree that fills `leaf_blocks`.
fn space_to_height(minrecs: [u32; 2], leaf_blocks: u64) -> u32 {
    if leaf_blocks < 1 {
        return 0;
    }
    let node = u64::from(minrecs[1].max(2));
    let mut node_blocks: u64 = 2;
    let mut left = leaf_blocks - 1;
    let mut height = 1u32;
    while node_blocks < left {
        left -= node_blocks;
        node_blocks = node_blocks.saturating_mul(node);
        height = height.saturating_add(1);
    }
    height
}

/// Half of each of `maxrecs`: the minimum records per non-root block.
fn half(maxrecs: [u32; 2]) -> [u32; 2] {
    [maxrecs[0] / 2, maxrecs[1] / 2]
}

/// `xfs_bmap_compute_maxlevels` for one fork.
fn bmap_maxlevels(block_size: u32, nrext64: bool, data: bool) -> u32 {
    let len = block_size.saturating_sub(LBLOCK_CRC_LEN);
    let minrecs = half([len / 16, len / 16]);
    let maxleafents: u64 = match (data, nrext64) {
        (true, true) => (1 << 48) - 1,
        (true, false) => (1 << 31) - 1,
        (false, true) => (1 << 32) - 1,
        (false, false) => (1 << 15) - 1,
    };
    // The in-inode root must hold at least 3 (data) or 2 (attr) pointers.
    let maxrootrecs: u64 = if data { 3 } else { 2 };
    let mut blocks = maxleafents.div_ceil(u64::from(minrecs[0].max(1)));
    let mut level = 1u32;
    while blocks > 1 {
        if blocks <= maxrootrecs {
            blocks = 1;
        } else {
            blocks = blocks.div_ceil(u64::from(minrecs[1].max(2)));
        }
        level = level.saturating_add(1);
    }
    level
}

fn corrupt(problems: Vec<Problem>) -> Error {
    Error::Corrupt {
        what: "primary superblock".to_owned(),
        problems,
    }
}

fn problem(field: &str, expected: impl ToString, actual: impl ToString) -> Problem {
    Problem {
        structure: "superblock 0".to_owned(),
        field: field.to_owned(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

impl Geometry {
    /// Validates the primary superblock decoded from `sector` and derives
    /// the geometry.
    ///
    /// Refuses what this crate cannot read (v4, unknown or unsupported
    /// incompatible features, an external log, a realtime section) with
    /// [`Error::Unsupported`], and an inconsistent superblock with
    /// [`Error::Corrupt`] listing every problem.
    pub fn from_superblock(sb: &Superblock, sector: &[u8]) -> Result<Geometry, Error> {
        if sb.magicnum != crate::format::superblock::MAGIC {
            return Err(Error::NotXfs { magic: sb.magicnum });
        }
        let features = sb.features();
        features.check_supported().map_err(Error::Unsupported)?;
        let problems = sb.verify(sector, SbKind::Primary);
        if !problems.is_empty() {
            return Err(corrupt(problems));
        }
        if sb.logstart == 0 {
            return Err(Error::Unsupported(
                "filesystems with an external log device are not supported".to_owned(),
            ));
        }
        if sb.rblocks != 0 {
            return Err(Error::Unsupported(
                "filesystems with a realtime section are not supported".to_owned(),
            ));
        }
        Self::derive(sb, features)
    }

    /// Computes the derived values; `sb` has passed the superblock verifier,
    /// so the ranges checked there hold, but every step is still checked.
    fn derive(sb: &Superblock, features: Features) -> Result<Geometry, Error> {
        let bad = |field: &str, why: &str, v: u64| corrupt(vec![problem(field, why, v)]);
        let block_size = sb.blocksize;
        let block_log = sb.blocklog;
        let ag_blocks = sb.agblocks;
        let ag_count = sb.agcount;
        let full = u64::from(ag_count.saturating_sub(1)) * u64::from(ag_blocks);
        let last_ag_blocks = sb
            .dblocks
            .checked_sub(full)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v <= ag_blocks && *v > 0)
            .ok_or_else(|| bad("dblocks", "a last AG of 1..=agblocks blocks", sb.dblocks))?;
        let agino_log = sb.inopblog.saturating_add(sb.agblklog);
        if agino_log > 32 {
            return Err(bad(
                "agblklog",
                "agblklog + inopblog <= 32",
                u64::from(agino_log),
            ));
        }
        let inodes_per_block = u32::from(sb.inopblock);
        let inode_size = u32::from(sb.inodesize);

        // Inode chunk and cluster geometry: xfs_ialloc_setup_geometry.
        let ialloc_inos = INODES_PER_CHUNK.max(inodes_per_block);
        let ialloc_blks = ialloc_inos >> sb.inopblog;
        let ialloc_min_blks = if sb.spino_align != 0 {
            sb.spino_align
        } else {
            ialloc_blks
        };
        let mut cluster_size_raw = INODE_BIG_CLUSTER_SIZE;
        // v5 scales the cluster with the inode size, if the inode alignment
        // allows a cluster that large.
        let scaled = INODE_BIG_CLUSTER_SIZE.saturating_mul(inode_size / 256);
        if sb.inoalignmt >= scaled >> block_log {
            cluster_size_raw = scaled;
        }
        let blocks_per_cluster = if cluster_size_raw > block_size {
            cluster_size_raw >> block_log
        } else {
            1
        };
        let cluster_size = blocks_per_cluster << block_log;
        let inodes_per_cluster = blocks_per_cluster << sb.inopblog;
        let cluster_align = if features.has_align() && sb.inoalignmt >= blocks_per_cluster {
            sb.inoalignmt
        } else {
            1
        };
        let sparse = features.has_sparse_inodes();
        if sparse && sb.spino_align != cluster_size_raw >> block_log {
            return Err(corrupt(vec![problem(
                "spino_align",
                format_args!(
                    "{} (the inode cluster size in blocks)",
                    cluster_size_raw >> block_log
                ),
                sb.spino_align,
            )]));
        }
        let max_icount = if sb.imax_pct != 0 && ialloc_blks != 0 {
            let icount = sb.dblocks.saturating_mul(u64::from(sb.imax_pct)) / 100;
            let chunks = icount / u64::from(ialloc_blks);
            (chunks * u64::from(ialloc_blks)) << sb.inopblog
        } else {
            0
        };
        let inodes = InodeGeometry {
            inodes_per_chunk: INODES_PER_CHUNK,
            ialloc_inos,
            ialloc_blks,
            ialloc_min_blks,
            cluster_size_raw,
            cluster_size,
            blocks_per_cluster,
            inodes_per_cluster,
            cluster_align,
            cluster_align_inodes: cluster_align << sb.inopblog,
            sparse,
            inodes_per_holemask_bit: INODES_PER_HOLEMASK_BIT,
            max_icount,
        };

        // Btree heights.
        let sblen = block_size.saturating_sub(SBLOCK_CRC_LEN);
        let alloc_min = half([sblen / 8, sblen / 12]);
        let inobt_min = half([sblen / 16, sblen / 8]);
        let rmap_min = half([sblen / 24, sblen / 44]);
        let refc_min = half([sblen / 12, sblen / 8]);
        let rmap = if !features.has_rmapbt() {
            0
        } else if features.has_reflink() {
            space_to_height(rmap_min, u64::from(ag_blocks))
        } else {
            compute_maxlevels(rmap_min, u64::from(ag_blocks))
        };
        let maxlevels = MaxLevels {
            alloc: compute_maxlevels(alloc_min, u64::from(ag_blocks).div_ceil(2)),
            inobt: compute_maxlevels(inobt_min, (1u64 << agino_log) >> 6),
            rmap,
            refcount: if features.has_reflink() {
                compute_maxlevels(refc_min, u64::from(ag_blocks))
            } else {
                0
            },
            bmbt_data: bmap_maxlevels(block_size, features.has_nrext64(), true),
            bmbt_attr: bmap_maxlevels(block_size, features.has_nrext64(), false),
        };

        let sector_size = u32::from(sb.sectsize);
        let ag_header_last_block = (3u32 << (sb.sectlog - 9)) >> (block_log - 9);
        let dir_block_log = block_log.saturating_add(sb.dirblklog);

        let mut geo = Geometry {
            uuid: sb.uuid,
            meta_uuid: sb.metadata_uuid(),
            features,
            block_size,
            block_log,
            sector_size,
            sector_log: sb.sectlog,
            dblocks: sb.dblocks,
            ag_count,
            ag_blocks,
            ag_blk_log: sb.agblklog,
            last_ag_blocks,
            inode_size,
            inode_log: sb.inodelog,
            inodes_per_block,
            inopb_log: sb.inopblog,
            agino_log,
            inodes,
            log: LogGeometry {
                start: FsBlock(sb.logstart),
                agno: AgNumber(0),
                agbno: AgBlock(0),
                blocks: sb.logblocks,
                start_daddr: Daddr(0),
                bb_count: u64::from(sb.logblocks) << (block_log - 9),
                sector_size: if features.has_sector() && sb.logsectsize != 0 {
                    u32::from(sb.logsectsize)
                } else {
                    512
                },
                sunit: sb.logsunit,
                version: if features.has_logv2() { 2 } else { 1 },
            },
            dir_block_size: 1u32 << dir_block_log,
            dir_block_log,
            dir_block_fsbs: 1u32 << sb.dirblklog,
            maxlevels,
            agfl_size: (sector_size - AGFL_HEADER_LEN) / 4,
            ag_header_last_block,
            root_ino: Ino(sb.rootino),
        };

        // The internal log must lie inside one AG, past its headers.
        let (log_agno, log_agbno) = geo
            .fsb_split(geo.log.start)
            .ok_or_else(|| bad("logstart", "a block inside the data device", sb.logstart))?;
        let log_end = u64::from(log_agbno.0) + u64::from(sb.logblocks);
        let ag_len = u64::from(geo.ag_len(log_agno).unwrap_or(0));
        if sb.logblocks == 0 || log_end > ag_len || log_agbno.0 <= ag_header_last_block {
            return Err(corrupt(vec![problem(
                "logblocks",
                format_args!(
                    "a log of 1.. blocks starting at {} inside {} (length {ag_len})",
                    log_agbno, log_agno
                ),
                sb.logblocks,
            )]));
        }
        geo.log.agno = log_agno;
        geo.log.agbno = log_agbno;
        geo.log.start_daddr = geo
            .fsb_to_daddr(geo.log.start)
            .ok_or_else(|| bad("logstart", "a valid block", sb.logstart))?;

        if geo.ino_split(geo.root_ino).is_none() {
            return Err(corrupt(vec![problem(
                "rootino",
                "a valid inode number",
                sb.rootino,
            )]));
        }
        let (min_icount, max_icount) = geo.icount_range();
        if sb.inprogress == 0 && !(min_icount..=max_icount).contains(&sb.icount) {
            return Err(corrupt(vec![problem(
                "icount",
                format_args!("{min_icount}..={max_icount}"),
                sb.icount,
            )]));
        }
        Ok(geo)
    }

    /// Number of blocks in AG `agno` (the last AG may be shorter).
    pub fn ag_len(&self, agno: AgNumber) -> Option<u32> {
        if agno.0.checked_add(1)? == self.ag_count {
            Some(self.last_ag_blocks)
        } else if agno.0 < self.ag_count {
            Some(self.ag_blocks)
        } else {
            None
        }
    }

    /// Iterates over all AG numbers.
    pub fn ags(&self) -> impl Iterator<Item = AgNumber> + use<> {
        (0..self.ag_count).map(AgNumber)
    }

    /// Packs an AG number and AG block into an fsbno, checking both.
    pub fn fsbno(&self, agno: AgNumber, agbno: AgBlock) -> Option<FsBlock> {
        if agbno.0 >= self.ag_len(agno)? {
            return None;
        }
        Some(FsBlock(
            (u64::from(agno.0) << self.ag_blk_log) | u64::from(agbno.0),
        ))
    }

    /// Splits an fsbno into AG number and AG block; `None` if either is out
    /// of range.
    pub fn fsb_split(&self, fsb: FsBlock) -> Option<(AgNumber, AgBlock)> {
        let agno = u32::try_from(fsb.0.checked_shr(u32::from(self.ag_blk_log))?).ok()?;
        let mask = (1u64 << self.ag_blk_log) - 1;
        let agbno = u32::try_from(fsb.0 & mask).ok()?;
        let agno = AgNumber(agno);
        if agbno >= self.ag_len(agno)? {
            return None;
        }
        Some((agno, AgBlock(agbno)))
    }

    /// Disk address of block `agbno` of AG `agno`.
    pub fn agb_to_daddr(&self, agno: AgNumber, agbno: AgBlock) -> Option<Daddr> {
        if agbno.0 >= self.ag_len(agno)? {
            return None;
        }
        let linear = u64::from(agno.0)
            .checked_mul(u64::from(self.ag_blocks))?
            .checked_add(u64::from(agbno.0))?;
        Some(Daddr(linear.checked_shl(u32::from(self.block_log - 9))?))
    }

    /// Disk address of an fsbno.
    pub fn fsb_to_daddr(&self, fsb: FsBlock) -> Option<Daddr> {
        let (agno, agbno) = self.fsb_split(fsb)?;
        self.agb_to_daddr(agno, agbno)
    }

    /// Byte offset on the device of an fsbno.
    pub fn fsb_to_byte(&self, fsb: FsBlock) -> Option<u64> {
        self.fsb_to_daddr(fsb)?.to_bytes()
    }

    /// Disk address of sector `sector` (0 = SB, 1 = AGF, 2 = AGI, 3 = AGFL)
    /// of AG `agno`.
    pub fn ag_header_daddr(&self, agno: AgNumber, sector: u32) -> Option<Daddr> {
        let ag_start = self.agb_to_daddr(agno, AgBlock(0))?;
        let off = u64::from(sector) << (self.sector_log - 9);
        Some(Daddr(ag_start.0.checked_add(off)?))
    }

    /// `xfs_verify_agbno`: a block that may hold AG metadata or data: inside
    /// the AG and past the AG header sectors.
    pub fn verify_agbno(&self, agno: AgNumber, agbno: AgBlock) -> bool {
        match self.ag_len(agno) {
            Some(len) => agbno.0 < len && agbno.0 > self.ag_header_last_block,
            None => false,
        }
    }

    /// `xfs_verify_fsbext`: an extent of `len` blocks starting at `fsb`
    /// that is valid and lies within one AG.
    pub fn verify_fsb_extent(&self, fsb: FsBlock, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let Some((agno, agbno)) = self.fsb_split(fsb) else {
            return false;
        };
        if !self.verify_agbno(agno, agbno) {
            return false;
        }
        let Some(last) = u64::from(agbno.0).checked_add(len - 1) else {
            return false;
        };
        match u32::try_from(last) {
            Ok(last) => self.verify_agbno(agno, AgBlock(last)),
            Err(_) => false,
        }
    }

    /// The first and last inode numbers that can exist in AG `agno`
    /// (`xfs_agino_range`): inside cluster-aligned blocks past the headers.
    pub fn agino_range(&self, agno: AgNumber) -> Option<(AgIno, AgIno)> {
        let eoag = self.ag_len(agno)?;
        let align = self.inodes.cluster_align;
        let first_bno = (self.ag_header_last_block + 1).next_multiple_of(align);
        let last_bno = eoag - eoag % align;
        let first = u64::from(first_bno) << self.inopb_log;
        let last = (u64::from(last_bno) << self.inopb_log).checked_sub(1)?;
        if first > last {
            return None;
        }
        Some((
            AgIno(u32::try_from(first).ok()?),
            AgIno(u32::try_from(last).ok()?),
        ))
    }

    /// True if `agino` can be an inode of AG `agno` (`xfs_verify_agino`).
    pub fn verify_agino(&self, agno: AgNumber, agino: AgIno) -> bool {
        match self.agino_range(agno) {
            Some((first, last)) => agino >= first && agino <= last,
            None => false,
        }
    }

    /// Splits an inode number into AG number and AG inode, checking that it
    /// can exist (`xfs_verify_ino`).
    pub fn ino_split(&self, ino: Ino) -> Option<(AgNumber, AgIno)> {
        let agno = u32::try_from(ino.0.checked_shr(u32::from(self.agino_log))?).ok()?;
        let mask = (1u64 << self.agino_log) - 1;
        let agino = AgIno(u32::try_from(ino.0 & mask).ok()?);
        let agno = AgNumber(agno);
        if agno.0 >= self.ag_count || !self.verify_agino(agno, agino) {
            return None;
        }
        Some((agno, agino))
    }

    /// Packs an AG number and AG inode into an inode number.
    pub fn ino_make(&self, agno: AgNumber, agino: AgIno) -> Option<Ino> {
        if agno.0 >= self.ag_count || !self.verify_agino(agno, agino) {
            return None;
        }
        Some(Ino(
            (u64::from(agno.0) << self.agino_log) | u64::from(agino.0)
        ))
    }

    /// The AG block holding `agino`.
    pub fn agino_to_agbno(&self, agino: AgIno) -> AgBlock {
        AgBlock(agino.0 >> self.inopb_log)
    }

    /// The AG inode number of the first inode in `agbno`.
    pub fn agbno_to_agino(&self, agbno: AgBlock) -> Option<AgIno> {
        Some(AgIno(agbno.0.checked_shl(u32::from(self.inopb_log))?))
    }

    /// Where an inode lives: its cluster and its byte offset on the device
    /// (the address math of `xfs_imap` for chunk-aligned filesystems).
    pub fn inode_location(&self, ino: Ino) -> Option<InodeLocation> {
        let (agno, agino) = self.ino_split(ino)?;
        let agbno = self.agino_to_agbno(agino);
        let bpc = self.inodes.blocks_per_cluster;
        // Chunks start at multiples of the cluster alignment; clusters are
        // consecutive runs of blocks_per_cluster blocks inside a chunk.
        let align = self.inodes.cluster_align;
        let chunk_agbno = agbno.0 - agbno.0 % align;
        let offset_agbno = agbno.0 - chunk_agbno;
        let cluster_agbno = chunk_agbno + (offset_agbno / bpc) * bpc;
        let index_in_block = agino.0 & (self.inodes_per_block - 1);
        let index_in_cluster = ((agbno.0 - cluster_agbno) << self.inopb_log) + index_in_block;
        let cluster_daddr = self.agb_to_daddr(agno, AgBlock(cluster_agbno))?;
        let byte = cluster_daddr
            .to_bytes()?
            .checked_add(u64::from(index_in_cluster) * u64::from(self.inode_size))?;
        Some(InodeLocation {
            agno,
            agino,
            agbno,
            cluster_agbno: AgBlock(cluster_agbno),
            index_in_cluster,
            byte_offset: byte,
        })
    }

    /// The fewest and most inodes the filesystem can hold
    /// (`xfs_icount_range`): the first chunk, and every inode slot of
    /// every AG.
    pub fn icount_range(&self) -> (u64, u64) {
        let mut max = 0u64;
        for agno in self.ags() {
            if let Some((first, last)) = self.agino_range(agno) {
                max = max.saturating_add(u64::from(last.0 - first.0) + 1);
            }
        }
        (u64::from(INODES_PER_CHUNK), max)
    }

    /// Size of the area after the inode core holding both forks (`XFS_LITINO`).
    pub fn literal_area_size(&self) -> u32 {
        self.inode_size.saturating_sub(DINODE_CORE_SIZE)
    }

    /// Most data-fork extents a directory can have (`m_dir_geo->max_extents`).
    pub fn dir_max_extents(&self) -> u64 {
        (3u64 << 35) >> self.block_log
    }
}

/// Where one inode is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeLocation {
    /// Its AG.
    pub agno: AgNumber,
    /// Its AG inode number.
    pub agino: AgIno,
    /// The AG block holding it.
    pub agbno: AgBlock,
    /// First block of its inode cluster.
    pub cluster_agbno: AgBlock,
    /// Its index inside the cluster.
    pub index_in_cluster: u32,
    /// Byte offset of the inode on the device.
    pub byte_offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::superblock::tests::sample_sector;

    pub(crate) fn sample() -> Geometry {
        let s = sample_sector();
        let sb = Superblock::from_bytes(&s).unwrap();
        Geometry::from_superblock(&sb, &s).unwrap()
    }

    #[test]
    fn default_mkfs_geometry() {
        let g = sample();
        assert_eq!(g.ag_count, 4);
        assert_eq!(g.last_ag_blocks, 4096);
        assert_eq!(g.agino_log, 15);
        assert_eq!(g.inodes.ialloc_blks, 8);
        // 512-byte inodes double the 8 KiB cluster to 16 KiB = 4 blocks.
        assert_eq!(g.inodes.cluster_size_raw, 16384);
        assert_eq!(g.inodes.blocks_per_cluster, 4);
        assert_eq!(g.inodes.inodes_per_cluster, 32);
        assert_eq!(g.inodes.cluster_align, 8);
        assert_eq!(g.agfl_size, 119);
        assert_eq!(g.ag_header_last_block, 0);
        assert_eq!(g.dir_block_size, 4096);
        assert_eq!(g.log.agno, AgNumber(2));
        assert_eq!(g.log.agbno, AgBlock(6));
        assert_eq!(g.log.bb_count, 1368 * 8);
        // Values xfs_db reports for such a filesystem (`xfs_db -c 'print'`
        // of the mount: alloc 2, inobt 2, refcount 2, bmbt 5/2... checked
        // against the kernel formulas by hand).
        assert_eq!(g.maxlevels.alloc, 2);
        assert_eq!(g.maxlevels.refcount, 2);
        assert_eq!(g.maxlevels.rmap, 0);
        assert_eq!(g.agino_range(AgNumber(0)), Some((AgIno(64), AgIno(32767))));
    }

    #[test]
    fn conversions_are_checked() {
        let g = sample();
        let fsb = g.fsbno(AgNumber(1), AgBlock(5)).unwrap();
        assert_eq!(fsb, FsBlock(4096 + 5));
        assert_eq!(g.fsb_split(fsb), Some((AgNumber(1), AgBlock(5))));
        assert_eq!(g.fsb_to_daddr(fsb), Some(Daddr((4096 + 5) * 8)));
        assert_eq!(g.fsbno(AgNumber(4), AgBlock(0)), None);
        assert_eq!(g.fsbno(AgNumber(0), AgBlock(4096)), None);
        assert_eq!(g.fsb_split(FsBlock(u64::MAX)), None);
        assert!(!g.verify_agbno(AgNumber(0), AgBlock(0)));
        assert!(g.verify_agbno(AgNumber(0), AgBlock(1)));
        assert!(g.verify_fsb_extent(FsBlock(10), 4086));
        assert!(!g.verify_fsb_extent(FsBlock(10), 4087));
        assert_eq!(g.ino_split(Ino(128)), Some((AgNumber(0), AgIno(128))));
        assert_eq!(g.ino_split(Ino(3)), None);
        assert_eq!(g.ino_split(Ino(u64::MAX)), None);
        assert_eq!(
            g.ino_make(AgNumber(1), AgIno(128)),
            Some(Ino((1 << 15) | 128))
        );
        let loc = g.inode_location(Ino(131)).unwrap();
        assert_eq!(loc.agbno, AgBlock(16));
        assert_eq!(loc.cluster_agbno, AgBlock(16));
        assert_eq!(loc.index_in_cluster, 3);
        assert_eq!(loc.byte_offset, 16 * 4096 + 3 * 512);
        let loc = g.inode_location(Ino(128 + 40)).unwrap();
        assert_eq!(loc.cluster_agbno, AgBlock(20));
        assert_eq!(loc.index_in_cluster, 8);
    }

    #[test]
    fn maxlevels_formulas() {
        assert_eq!(compute_maxlevels([1, 2], 1), 1);
        assert_eq!(compute_maxlevels([10, 10], 100), 2);
        assert_eq!(compute_maxlevels([10, 10], 101), 3);
        assert_eq!(space_to_height([10, 10], 0), 0);
        assert_eq!(space_to_height([10, 10], 1), 1);
        // bmbt with 4 KiB blocks: minrecs 125; 2^31 extents need 5 levels.
        assert_eq!(bmap_maxlevels(4096, false, true), 5);
        assert_eq!(bmap_maxlevels(4096, false, false), 3);
    }
}

/// Shared test fixtures: the geometry of a default 64 MiB `mkfs.xfs` image.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::format::superblock::tests::sample_sector;

    /// Geometry of the sample superblock (4 AGs of 4096 4 KiB blocks,
    /// 512-byte inodes, reflink + finobt + sparse inodes + bigtime).
    pub(crate) fn sample_geometry() -> Geometry {
        let s = sample_sector();
        let sb = Superblock::from_bytes(&s).expect("sample decodes");
        Geometry::from_superblock(&sb, &s).expect("sample is valid")
    }
}
