//! An opened XFS filesystem image: validated superblock and geometry, log
//! state, and readers for AG headers, inodes and blocks.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::agf::Agf;
use crate::format::agfl::Agfl;
use crate::format::agi::Agi;
use crate::format::dinode::Dinode;
use crate::format::superblock::{self, SbKind, Superblock};
use crate::format::{Checked, Problem, crc};
use crate::geometry::Geometry;
use crate::log::{LogState, log_state};
use crate::types::{AgNumber, Daddr, FsBlock, Ino};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The largest sector size XFS allows; the primary superblock is read in
/// a buffer this big before its sector size is trusted.
const MAX_SECTOR: usize = 32768;

/// Bytes of inode cluster buffers a read-only [`Filesystem`] keeps (at
/// least [`MIN_CLUSTERS_CACHED`] clusters whatever their size).
const INODE_CACHE_BYTES: usize = 4 << 20;
/// Clusters kept however large they are.
const MIN_CLUSTERS_CACHED: usize = 8;

/// Recently read inode cluster buffers, by byte offset, evicted oldest
/// first. Several scrubbers (inodes, both fork mappings, the reverse-map
/// shadow, directories, link counts, the directory tree) each visit every
/// inode; they share these buffers instead of each issuing one read per
/// inode. Only a read-only filesystem caches (nothing can change a block
/// under it).
#[derive(Default)]
struct ClusterCache {
    buffers: HashMap<u64, Arc<[u8]>>,
    order: VecDeque<u64>,
}

/// An inode read from disk: its raw bytes and decoded core.
#[derive(Debug, Clone)]
pub struct Inode {
    /// The inode number.
    pub ino: Ino,
    /// The decoded core.
    pub core: Dinode,
    /// All `inode_size` bytes, forks included.
    pub raw: Vec<u8>,
}

/// An open filesystem image.
pub struct Filesystem {
    dev: Arc<dyn Device>,
    sb: Superblock,
    geo: Geometry,
    log: LogState,
    warnings: Vec<String>,
    clusters: Mutex<ClusterCache>,
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem")
            .field("geometry", &self.geo)
            .field("log", &self.log)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Filesystem {
    /// Opens the filesystem on `dev`: reads and validates the primary
    /// superblock and the geometry, checks the device is large enough and
    /// finds the log state.
    ///
    /// Fails with [`Error::NotXfs`], [`Error::Unsupported`] (v4, unknown or
    /// unsupported features, external log, realtime) or
    /// [`Error::Corrupt`] (every problem of the primary superblock). A dirty
    /// log or NEEDSREPAIR only add [`warnings`](Self::warnings).
    pub fn open(dev: Box<dyn Device>) -> Result<Filesystem> {
        let size = dev.size();
        let mut first = vec![0u8; 512];
        dev.read_at(&mut first, 0)?;
        let sb0 = Superblock::from_bytes(&first)?;
        if sb0.magicnum != superblock::MAGIC {
            return Err(Error::NotXfs {
                magic: sb0.magicnum,
            });
        }
        // Refuse v4 and unknown features before trusting any geometry,
        // unless the primary is what is damaged (see `damaged_primary`).
        let mut warnings = match sb0.features().check_supported() {
            Ok(w) => w,
            Err(why) => return Err(damaged_primary(dev.as_ref(), &sb0, Error::Unsupported(why))),
        };
        // The CRC covers one sector: read it once its size is plausible.
        let sect = usize::from(sb0.sectsize);
        let sector = if sect > 512 && sect <= MAX_SECTOR && sect.is_power_of_two() {
            let mut s = vec![0u8; sect];
            if u64::try_from(sect).is_ok_and(|l| l <= size) {
                dev.read_at(&mut s, 0)?;
            }
            s
        } else {
            first
        };
        let sb = Superblock::from_bytes(&sector)?;
        let geo = match Geometry::from_superblock(&sb, &sector) {
            Ok(g) => g,
            Err(e @ Error::Unsupported(_)) => return Err(damaged_primary(dev.as_ref(), &sb, e)),
            Err(e) => return Err(e),
        };
        let need = sb.dblocks.saturating_mul(u64::from(sb.blocksize));
        if size < need {
            return Err(Error::Malformed {
                what: "image".to_owned(),
                reason: format!(
                    "the device has {size} bytes but the filesystem needs {need} (dblocks {} x {} bytes): truncated image?",
                    sb.dblocks, sb.blocksize
                ),
            });
        }
        let log = log_state(dev.as_ref(), &geo)?;
        match &log {
            LogState::Dirty { head, tail } => warnings.push(format!(
                "the log is dirty (head {head}, tail {tail}): metadata may be missing committed changes; mount the filesystem to replay the log"
            )),
            LogState::Corrupt { reason } => {
                warnings.push(format!("the log is corrupt: {reason}"));
            }
            LogState::Clean { .. } | LogState::Zeroed => {}
        }
        Ok(Filesystem {
            dev: Arc::from(dev),
            sb,
            geo,
            log,
            warnings,
            clusters: Mutex::new(ClusterCache::default()),
        })
    }

    /// The device, shared: for an overlay that must outlive this borrow
    /// (a repair's dry run reads its planned result through one).
    pub fn shared_device(&self) -> Arc<dyn Device> {
        Arc::clone(&self.dev)
    }

    /// The primary superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The log state found at open time.
    pub fn log_state(&self) -> &LogState {
        &self.log
    }

    /// Conditions worth telling the user about (dirty log, NEEDSREPAIR,
    /// unknown compatible features).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The device.
    pub fn device(&self) -> &dyn Device {
        self.dev.as_ref()
    }

    /// Reads `buf.len()` bytes at disk address `daddr`.
    pub fn read_daddr(&self, daddr: Daddr, buf: &mut [u8]) -> Result<()> {
        let off = daddr
            .to_bytes()
            .ok_or_else(|| Error::InvalidArgument(format!("{daddr} out of range")))?;
        self.dev.read_at(buf, off)?;
        Ok(())
    }

    /// Reads one sector of AG `agno`'s headers (0 SB, 1 AGF, 2 AGI, 3 AGFL).
    fn read_ag_sector(&self, agno: AgNumber, sector: u32) -> Result<Vec<u8>> {
        let daddr = self
            .geo
            .ag_header_daddr(agno, sector)
            .ok_or_else(|| Error::InvalidArgument(format!("{agno} does not exist")))?;
        let mut buf = vec![0u8; usize::try_from(self.geo.sector_size).unwrap_or(512)];
        self.read_daddr(daddr, &mut buf)?;
        Ok(buf)
    }

    /// Reads and verifies the superblock copy of AG `agno` (0: the primary,
    /// re-read from disk).
    pub fn read_sb(&self, agno: AgNumber) -> Result<Checked<Superblock>> {
        let buf = self.read_ag_sector(agno, 0)?;
        let kind = if agno.0 == 0 {
            SbKind::Primary
        } else {
            SbKind::Secondary {
                agno,
                primary: &self.sb,
            }
        };
        Ok(Superblock::check(&buf, kind)?)
    }

    /// True if the primary superblock's CRC is correct (for `xfs_db`-style
    /// printing).
    pub fn primary_crc_ok(&self) -> Result<bool> {
        let buf = self.read_ag_sector(AgNumber(0), 0)?;
        Ok(crc::verify(&buf, superblock::CRC_OFFSET))
    }

    /// Reads and verifies the AGF of AG `agno`.
    pub fn read_agf(&self, agno: AgNumber) -> Result<Checked<Agf>> {
        let buf = self.read_ag_sector(agno, 1)?;
        Ok(Agf::check(&buf, agno, &self.geo)?)
    }

    /// Reads and verifies the AGI of AG `agno`.
    pub fn read_agi(&self, agno: AgNumber) -> Result<Checked<Agi>> {
        let buf = self.read_ag_sector(agno, 2)?;
        Ok(Agi::check(&buf, agno, &self.geo)?)
    }

    /// Reads and verifies the AGFL of AG `agno`; `agf` (if readable) says
    /// which slots are live.
    pub fn read_agfl(&self, agno: AgNumber, agf: Option<&Agf>) -> Result<Checked<Agfl>> {
        let buf = self.read_ag_sector(agno, 3)?;
        Ok(Agfl::check(&buf, agno, &self.geo, agf)?)
    }

    /// Reads and verifies inode `ino` (magic, CRC, self-number, UUID and
    /// the rest of `xfs_dinode_verify`). An inode number that cannot exist
    /// is an [`Error::InvalidArgument`].
    pub fn read_inode(&self, ino: Ino) -> Result<Checked<Inode>> {
        let loc = self
            .geo
            .inode_location(ino)
            .ok_or_else(|| Error::InvalidArgument(format!("{ino} is not a valid inode number")))?;
        let isize = usize::try_from(self.geo.inode_size).unwrap_or(512);
        let raw = match self.cached_inode_bytes(&loc, isize) {
            Some(raw) => raw,
            None => {
                let mut raw = vec![0u8; isize];
                self.dev.read_at(&mut raw, loc.byte_offset)?;
                raw
            }
        };
        let checked = Dinode::check(&raw, ino, &self.geo)?;
        Ok(Checked {
            value: Inode {
                ino,
                core: checked.value,
                raw,
            },
            problems: checked.problems,
        })
    }

    /// The `isize` bytes of the inode at `loc` from its cluster buffer,
    /// read into the cluster cache if needed; `None` when the device is
    /// writable, the cluster does not fit the device or reading it fails
    /// (the caller then reads the inode alone and reports its own error).
    fn cached_inode_bytes(
        &self,
        loc: &crate::geometry::InodeLocation,
        isize: usize,
    ) -> Option<Vec<u8>> {
        if self.dev.is_writable() {
            return None;
        }
        let csize = usize::try_from(
            u64::from(self.geo.inodes.blocks_per_cluster)
                .checked_mul(u64::from(self.geo.block_size))?,
        )
        .ok()?;
        let within = usize::try_from(loc.index_in_cluster)
            .ok()?
            .checked_mul(isize)?;
        if within.checked_add(isize)? > csize {
            return None;
        }
        let start = loc.byte_offset.checked_sub(u64::try_from(within).ok()?)?;
        let slice = |b: &Arc<[u8]>| b.get(within..within + isize).map(<[u8]>::to_vec);
        {
            let cache = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = cache.buffers.get(&start) {
                return slice(b);
            }
        }
        let end = start.checked_add(u64::try_from(csize).ok()?)?;
        if end > self.dev.size() {
            return None;
        }
        let mut buf = vec![0u8; csize];
        self.dev.read_at(&mut buf, start).ok()?;
        let buf: Arc<[u8]> = buf.into();
        let limit = (INODE_CACHE_BYTES / csize.max(1)).max(MIN_CLUSTERS_CACHED);
        let mut cache = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        while cache.order.len() >= limit {
            match cache.order.pop_front() {
                Some(old) => {
                    cache.buffers.remove(&old);
                }
                None => break,
            }
        }
        if cache.buffers.insert(start, Arc::clone(&buf)).is_none() {
            cache.order.push_back(start);
        }
        slice(&buf)
    }

    /// Reads inode `ino` and fails with [`Error::Corrupt`] unless it
    /// verifies.
    pub fn read_inode_verified(&self, ino: Ino) -> Result<Inode> {
        self.read_inode(ino)?
            .into_verified()
            .map_err(|problems| Error::Corrupt {
                what: ino.to_string(),
                problems,
            })
    }

    /// Reads `count` filesystem blocks starting at `fsb` into a new
    /// buffer. The run must lie inside one AG.
    pub fn read_fsblocks(&self, fsb: FsBlock, count: u32) -> Result<Vec<u8>> {
        if !self.geo.verify_fsb_extent(fsb, u64::from(count)) {
            return Err(Error::InvalidArgument(format!(
                "{fsb} + {count} blocks is not a valid extent"
            )));
        }
        let daddr = self
            .geo
            .fsb_to_daddr(fsb)
            .ok_or_else(|| Error::InvalidArgument(format!("{fsb} out of range")))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(usize::try_from(self.geo.block_size).ok()?))
            .ok_or_else(|| Error::InvalidArgument("read too large".to_owned()))?;
        let mut buf = vec![0u8; len];
        self.read_daddr(daddr, &mut buf)?;
        Ok(buf)
    }
}

/// Fields that every superblock copy must share and that decide whether
/// scrubd can interpret the filesystem at all (besides the version nibble).
/// Not `versionnum` as a whole nor `features2`: the kernel sets bits of
/// those in the primary alone as features come into use.
const IDENTITY_FIELDS: &[&str] = &[
    "features_compat",
    "features_ro_compat",
    "features_incompat",
    "logstart",
    "logblocks",
    "blocksize",
    "sectsize",
    "inodesize",
    "agblocks",
    "agcount",
    "dblocks",
    "rootino",
];
/// `unsupported` is why the primary superblock `primary` cannot be
/// interpreted (a v4 version, unknown incompatible features, an external
/// log). That is only true of the filesystem if its other copies say so
/// too: a single flipped bit in the primary must read as a damaged primary
/// (as `xfs_repair` treats it), not as a filesystem we do not support.
///
/// The primary is damaged when its CRC does not match, or when the
/// secondary superblock of AG 1 (where the primary's geometry puts it)
/// verifies cleanly, is itself supported, and disagrees with the primary
/// on an identity field. Then the answer is [`Error::Corrupt`] naming each
/// such field; otherwise `unsupported` is returned unchanged.
fn damaged_primary(dev: &dyn Device, primary: &Superblock, unsupported: Error) -> Error {
    let read_sector = |offset: u64, sectsize: u16| -> Option<Vec<u8>> {
        let sect = usize::from(sectsize);
        let len = if (512..=MAX_SECTOR).contains(&sect) && sect.is_power_of_two() {
            sect
        } else {
            512
        };
        let mut s = vec![0u8; len];
        dev.read_at(&mut s, offset).ok()?;
        Some(s)
    };
    let mut problems = Vec::new();
    // A v5 primary (by its CRC feature bit or its version nibble) whose
    // CRC does not match was damaged after it was last written.
    if (primary.features2 & crate::format::features::features2::CRC != 0
        || primary.features().is_v5())
        && let Some(sector) = read_sector(0, primary.sectsize)
        && let Some(computed) = crc::compute(&sector, superblock::CRC_OFFSET)
        && computed != primary.crc
    {
        problems.push(Problem {
            structure: "superblock 0".to_owned(),
            field: "crc".to_owned(),
            expected: format!("{computed:#x}"),
            actual: format!("{:#x}", primary.crc),
        });
    }
    // The AG 1 copy, where the primary's geometry puts it.
    let secondary = u64::from(primary.agblocks)
        .checked_mul(u64::from(primary.blocksize))
        .filter(|off| *off > 0 && *off < dev.size())
        .and_then(|off| Some((off, read_sector(off, primary.sectsize)?)))
        .and_then(|(_, sector)| {
            let sb = Superblock::from_bytes(&sector).ok()?;
            let clean = sb
                .verify(
                    &sector,
                    SbKind::Secondary {
                        agno: AgNumber(1),
                        primary: &sb,
                    },
                )
                .is_empty();
            // Supported itself: known features, an internal log, no
            // realtime section. (Not `Geometry::from_superblock`: that
            // holds a copy to the primary's rules, such as `inprogress`.)
            let supported =
                sb.features().check_supported().is_ok() && sb.logstart != 0 && sb.rblocks == 0;
            (clean && supported).then_some(sb)
        });
    if let Some(sec) = secondary {
        let nibble = |v: u16| v & 0xf;
        if nibble(primary.versionnum) != nibble(sec.versionnum) {
            problems.push(Problem {
                structure: "superblock 0".to_owned(),
                field: "versionnum".to_owned(),
                expected: format!(
                    "version {} in the low nibble (as superblock 1 says)",
                    nibble(sec.versionnum)
                ),
                actual: format!("{:#x}", primary.versionnum),
            });
        }
        let (mut p, s) = (primary.db_fields(true), sec.db_fields(true));
        // NEEDSREPAIR is set in the primary alone while a repair runs.
        let needsrepair = u64::from(crate::format::features::incompat::NEEDSREPAIR);
        for (n, v) in &mut p {
            if *n == "features_incompat" {
                let bits = u64::from(primary.features_incompat) & !needsrepair;
                *v = if bits == 0 {
                    "0".to_owned()
                } else {
                    format!("{bits:#x}")
                };
            }
        }
        for name in IDENTITY_FIELDS {
            let value =
                |v: &[(&str, String)]| v.iter().find(|(n, _)| n == name).map(|(_, x)| x.clone());
            if let (Some(pv), Some(sv)) = (value(&p), value(&s))
                && pv != sv
            {
                problems.push(Problem {
                    structure: "superblock 0".to_owned(),
                    field: (*name).to_owned(),
                    expected: format!("{sv} (as superblock 1 says)"),
                    actual: pv,
                });
            }
        }
    }
    if problems.is_empty() {
        return unsupported;
    }
    Error::Corrupt {
        what: format!("primary superblock ({unsupported})"),
        problems,
    }
}
