//! Free-space repair of one AG (the kernel's `alloc_repair.c` and the AGF
//! and AGFL parts of `agheader_repair.c`): new bnobt and cntbt, a new AGFL
//! and the AGF's free-space fields, all derived from the reverse-mapping
//! btree.
//!
//! # How
//!
//! 1. Walk the rmapbt (it must be structurally sound): every record says
//!    who owns which blocks. Free space is the AG minus every owned block.
//! 2. The rmapbt records bnobt, cntbt, rmapbt and AGFL blocks all as
//!    `OWN_AG`. `OWN_AG` minus the rmapbt's own blocks is therefore exactly
//!    the old bnobt, cntbt and AGFL blocks — whatever the (possibly
//!    damaged) old trees and AGFL say. The new trees are built inside
//!    these blocks, as the kernel's `xrep_allocbt` does, so that the rmapbt
//!    stays correct without being changed; the blocks left over become the
//!    new AGFL.
//! 3. The AGF gets the new roots, levels and counters; the AGFL is rewritten
//!    from slot 0.
//!
//! The new tree blocks may be blocks the old trees still use, so the
//! rebuild is not "new blocks first, then one pointer": it is committed
//! as one journalled group (new blocks, AGF, AGFL) under NEEDSREPAIR, and a
//! crash is finished by replaying the journal.
//!
//! # What it refuses
//!
//! - an rmapbt that cannot be walked cleanly or holds records outside the
//!   AG, or whose blocks are not all `OWN_AG`;
//! - more blocks needed for the new trees than the old ones had (that would
//!   take free space and add `OWN_AG` records to the rmapbt);
//! - more blocks left over than the AGFL holds (freeing them would remove
//!   `OWN_AG` records from the rmapbt).
//!
//! Neither of the last two happens when the free-space picture changes
//! little, the common case for damage found by a check.

use super::agheader::{AgfBase, AgfSpace, agf_for_rebuild, agf_sector, agfl_sector};
use crate::format::btree::alloc::{AllocRec, Bnobt, Cntbt};
use crate::format::btree::rmap::{RmapRec, Rmapbt, owner};
use crate::fs::Filesystem;
use crate::scrub::common::walk_quietly;
use crate::types::{AgBlock, AgNumber};
use repair::{Reservation, WriteSet, build_tree};
use scrub::ExtentBitmap;
use xfbtree::{BloadOptions, BlockAddr, Root};
use xfile::XfArray;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// What the rebuild of one AG's free space will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgSpace {
    /// The AG.
    pub agno: AgNumber,
    /// The new AGF's free-space fields.
    pub agf: AgfSpace,
    /// Free extents (records of each new tree).
    pub extents: u64,
    /// Blocks of the new bnobt.
    pub bno_blocks: u64,
    /// Blocks of the new cntbt.
    pub cnt_blocks: u64,
    /// The new AGFL's blocks.
    pub agfl: Vec<u32>,
    /// The rmap records the rebuild was derived from.
    pub rmap_records: u64,
    /// AGF fields fixed before the rebuild could trust the AGF (identity,
    /// rmapbt root), as xfs_db names them.
    pub agf_fixed: Vec<&'static str>,
}

/// Why a repair could not be planned (the AG is left as it is).
pub type Refused = String;

/// Plans the free-space rebuild of AG `agno` and stages its writes in
/// `writes` (only when the whole plan succeeds). `Err` says why it was
/// refused; I/O errors are refusals too (nothing is written either way).
pub fn plan_ag_space(
    fs: &Filesystem,
    agno: AgNumber,
    writes: &mut WriteSet,
) -> Result<AgSpace, Refused> {
    let geo = fs.geometry();
    if !geo.features.has_rmapbt() {
        return Err("the filesystem has no reverse-mapping btree to rebuild from".into());
    }
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    let AgfBase {
        sector: agf_sector_old,
        agf,
        fixed,
    } = agf_for_rebuild(fs, agno)?;
    let rmapbt = fs.rmapbt(agno, &agf).map_err(|e| e.to_string())?;

    // 1. Who owns what.
    let mut owners = Owners::default();
    let mut outside: Option<RmapRec> = None;
    let rmap_blocks = walk_quietly(&rmapbt, "rmapbt", |r: &RmapRec| {
        if !owners.add(r, ag_len) {
            outside.get_or_insert(*r);
        }
    })
    .map_err(|u| u.0)?;
    if let Some(r) = outside {
        return Err(outside_message(&r, ag_len));
    }
    owners.check_rmapbt_blocks(&rmap_blocks)?;

    // 2.-4. Free space, the new trees in the old blocks, the headers.
    let mut staged = WriteSet::new();
    let mut space = plan_space(
        fs,
        agno,
        &agf_sector_old,
        &owners,
        RmapTree::Keep(rmap_blocks),
        &mut staged,
    )?;
    space.agf_fixed = fixed;
    for (off, phase, data) in staged.iter() {
        writes
            .stage(phase, off, data.to_vec())
            .map_err(|e| e.to_string())?;
    }
    Ok(space)
}

/// Who owns the blocks of one AG, according to its reverse map.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owners {
    /// Blocks mapped to anyone.
    pub owned: ExtentBitmap,
    /// Blocks mapped to `OWN_AG`: the free-space trees, the rmapbt and
    /// the AGFL.
    pub own_ag: ExtentBitmap,
    /// Reverse mappings seen.
    pub records: u64,
}

impl Owners {
    /// Adds one reverse mapping; false (and nothing added) when it is
    /// empty or reaches past the AG's `ag_len` blocks.
    pub fn add(&mut self, r: &RmapRec, ag_len: u32) -> bool {
        self.records += 1;
        let end = u64::from(r.startblock) + u64::from(r.blockcount);
        if r.blockcount == 0 || end > u64::from(ag_len) {
            return false;
        }
        self.owned
            .set(u64::from(r.startblock), u64::from(r.blockcount));
        if r.owner == owner::AG {
            self.own_ag
                .set(u64::from(r.startblock), u64::from(r.blockcount));
        }
        true
    }

    /// The rmapbt's own blocks must all be recorded as `OWN_AG`.
    pub fn check_rmapbt_blocks(&self, rmap_blocks: &ExtentBitmap) -> Result<(), Refused> {
        let mut not_ag = rmap_blocks.clone();
        not_ag.subtract(&self.own_ag);
        if not_ag.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} rmapbt blocks are not recorded as OWN_AG in the rmapbt itself",
                not_ag.count()
            ))
        }
    }
}

/// Why a reverse mapping outside the AG stops a rebuild.
pub(crate) fn outside_message(r: &RmapRec, ag_len: u32) -> Refused {
    format!(
        "the rmapbt maps AG blocks {}+{} outside the AG's {ag_len} blocks",
        r.startblock, r.blockcount
    )
}

/// One reverse mapping staged in an `XfArray` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(crate) struct StagedRmap {
    /// Owner.
    pub owner: u64,
    /// Offset word (flags included).
    pub offset_word: u64,
    /// First AG block.
    pub startblock: u32,
    /// Blocks.
    pub blockcount: u32,
}

impl StagedRmap {
    /// The record.
    pub fn rec(&self) -> RmapRec {
        RmapRec {
            startblock: self.startblock,
            blockcount: self.blockcount,
            owner: self.owner,
            offset_word: self.offset_word,
        }
    }

    /// Staged form of `r`.
    pub fn of(r: &RmapRec) -> Self {
        Self {
            owner: r.owner,
            offset_word: r.offset_word,
            startblock: r.startblock,
            blockcount: r.blockcount,
        }
    }
}

/// The rmapbt in a free-space rebuild.
pub(crate) enum RmapTree<'a> {
    /// Kept as it is; these are its blocks.
    Keep(ExtentBitmap),
    /// Rebuilt from these records (sorted in key order) inside the
    /// `OWN_AG` blocks, with the free-space trees.
    Rebuild(&'a XfArray<StagedRmap>),
}

/// Plans the free space of AG `agno` given who owns what (`owners`, which
/// must describe the reverse map the AG will have): new bnobt and cntbt
/// (and a new rmapbt if `rmap` says so) built inside the `OWN_AG` blocks,
/// the AGFL from what is left of them, and a new AGF from `agf_base`
/// (whose refcountbt fields are kept) staged in `staged`.
pub(crate) fn plan_space(
    fs: &Filesystem,
    agno: AgNumber,
    agf_base: &[u8],
    owners: &Owners,
    rmap: RmapTree<'_>,
    staged: &mut WriteSet,
) -> Result<AgSpace, Refused> {
    let geo = fs.geometry();
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    let mut free = ExtentBitmap::new();
    free.set(0, u64::from(ag_len));
    free.subtract(&owners.owned);
    let recs: Vec<AllocRec> = free
        .runs()
        .filter_map(|(s, l)| {
            Some(AllocRec {
                startblock: u32::try_from(s).ok()?,
                blockcount: u32::try_from(l).ok()?,
            })
        })
        .collect();
    let mut pool = owners.own_ag.clone();
    if let RmapTree::Keep(blocks) = &rmap {
        pool.subtract(blocks);
    }

    let bno_fmt = Bnobt::new(geo, agno);
    let cnt_fmt = Cntbt::new(geo, agno);
    let rmap_fmt = Rmapbt::new(geo, agno);
    let bs = usize::try_from(geo.block_size).unwrap_or(4096);
    let n = recs.len() as u64;
    let rmap_n = match &rmap {
        RmapTree::Keep(_) => None,
        RmapTree::Rebuild(a) => Some(a.len()),
    };
    // Default packing leaves room for later inserts; if the old blocks do
    // not hold that, pack full.
    let need = |opts: &BloadOptions| -> Result<u64, Refused> {
        let b = xfbtree::Geometry::compute(&bno_fmt, bs, n, opts).map_err(|e| e.to_string())?;
        let c = xfbtree::Geometry::compute(&cnt_fmt, bs, n, opts).map_err(|e| e.to_string())?;
        let r = match rmap_n {
            Some(rn) => xfbtree::Geometry::compute(&rmap_fmt, bs, rn, opts)
                .map_err(|e| e.to_string())?
                .total_blocks(),
            None => 0,
        };
        Ok(b.total_blocks() + c.total_blocks() + r)
    };
    let mut opts = BloadOptions::default();
    if need(&opts)? > pool.count() {
        opts = BloadOptions::full();
    }
    let needed = need(&opts)?;
    if needed > pool.count() {
        return Err(format!(
            "the new AG btrees need {needed} blocks but the old ones and the AGFL had only {}: taking more from free space would need an rmapbt update, which this repair does not make",
            pool.count()
        ));
    }

    // Build the trees into the pool.
    let mut res = Reservation::new(pool.clone(), &ExtentBitmap::new());
    let offset_of = |a: BlockAddr| -> Option<u64> {
        let b = u32::try_from(a.0).ok()?;
        geo.agb_to_daddr(agno, AgBlock(b))?.to_bytes()
    };
    let mut base = agf_base.to_vec();
    let rmap_count = match rmap {
        RmapTree::Keep(blocks) => blocks.count(),
        RmapTree::Rebuild(a) => {
            let (built, g) = build_tree(
                &rmap_fmt,
                bs,
                a.len(),
                a.iter().map(|r| r.map(|s| s.rec())),
                &opts,
                &mut res,
                staged,
                &offset_of,
            )
            .map_err(|e| e.to_string())?;
            let (root, level) = root_of(&built.root)
                .ok_or("the bulk loader returned an inline root for an AG btree")?;
            super::agheader::patch_agf(&mut base, |r| {
                r.roots[2].set(root);
                r.levels[2].set(level);
            });
            g.total_blocks()
        }
    };
    let ok = |r: &AllocRec| Ok::<_, std::convert::Infallible>(*r);
    let (bno, bno_geo) = build_tree(
        &bno_fmt,
        bs,
        n,
        recs.iter().map(ok),
        &opts,
        &mut res,
        staged,
        &offset_of,
    )
    .map_err(|e| e.to_string())?;
    let mut by_size = recs.clone();
    by_size.sort_by_key(|r| (r.blockcount, r.startblock));
    let (cnt, cnt_geo) = build_tree(
        &cnt_fmt,
        bs,
        n,
        by_size.iter().map(ok),
        &opts,
        &mut res,
        staged,
        &offset_of,
    )
    .map_err(|e| e.to_string())?;
    let (Some(bno_root), Some(cnt_root)) = (root_of(&bno.root), root_of(&cnt.root)) else {
        return Err("the bulk loader returned an inline root for an AG btree".into());
    };

    // The AGFL holds what is left of the pool.
    let mut left = pool;
    left.subtract(&res.taken_bitmap());
    let agfl: Vec<u32> = left
        .runs()
        .flat_map(|(s, l)| s..s + l)
        .filter_map(|b| u32::try_from(b).ok())
        .collect();
    if agfl.len() as u64 > u64::from(geo.agfl_size) {
        return Err(format!(
            "{} old free-space blocks are left over but the AGFL holds only {}: freeing the rest would need an rmapbt update, which this repair does not make",
            agfl.len(),
            geo.agfl_size
        ));
    }
    let freeblks: u64 = recs.iter().map(|r| u64::from(r.blockcount)).sum();
    let longest = recs.iter().map(|r| r.blockcount).max().unwrap_or(0);
    let btreeblks = (bno_geo.total_blocks() - 1) + (cnt_geo.total_blocks() - 1) + (rmap_count - 1);
    let space = AgfSpace {
        bno: bno_root,
        cnt: cnt_root,
        flcount: u32::try_from(agfl.len()).unwrap_or(0),
        freeblks: u32::try_from(freeblks).map_err(|e| e.to_string())?,
        longest,
        btreeblks: u32::try_from(btreeblks).map_err(|e| e.to_string())?,
        rmap_blocks: u32::try_from(rmap_count).map_err(|e| e.to_string())?,
    };
    let new_agf = agf_sector(&base, geo, agno, &space);
    let new_agfl = agfl_sector(geo, agno, &agfl);
    stage_header(staged, fs, agno, 1, new_agf)?;
    stage_header(staged, fs, agno, 3, new_agfl)?;
    Ok(AgSpace {
        agno,
        agf: space,
        extents: n,
        bno_blocks: bno_geo.total_blocks(),
        cnt_blocks: cnt_geo.total_blocks(),
        agfl,
        rmap_records: owners.records,
        agf_fixed: Vec::new(),
    })
}

/// Byte offset of header sector `sector` of AG `agno`.
fn sector_offset(fs: &Filesystem, agno: AgNumber, sector: u32) -> Result<u64, Refused> {
    fs.geometry()
        .ag_header_daddr(agno, sector)
        .and_then(|d| d.to_bytes())
        .ok_or_else(|| format!("{agno} header sector {sector} is outside the device"))
}

/// Reads header sector `sector` of AG `agno`.
pub(crate) fn read_sector(
    fs: &Filesystem,
    agno: AgNumber,
    sector: u32,
) -> Result<Vec<u8>, Refused> {
    let off = sector_offset(fs, agno, sector)?;
    let mut buf = vec![0u8; usize::try_from(fs.geometry().sector_size).unwrap_or(512)];
    fs.device()
        .read_at(&mut buf, off)
        .map_err(|e| format!("reading {agno} header sector {sector}: {e}"))?;
    Ok(buf)
}

fn stage_header(
    w: &mut WriteSet,
    fs: &Filesystem,
    agno: AgNumber,
    sector: u32,
    data: Vec<u8>,
) -> Result<(), Refused> {
    let off = sector_offset(fs, agno, sector)?;
    w.stage_live(off, data).map_err(|e| e.to_string())
}

/// An AG btree's root block and height, for the AGF.
fn root_of<K>(r: &Root<K>) -> Option<(u32, u32)> {
    match r {
        Root::Block { addr, height } => Some((u32::try_from(addr.0).ok()?, u32::from(*height))),
        _ => None,
    }
}

/// What [`walk_rmap`] saw besides the records.
pub(crate) struct RmapWalk {
    /// Records walked.
    pub records: u64,
}

/// One clean walk of the rmapbt of AG `agno` through the AGF's root, for
/// a rebuild: `on_record` sees every record (each inside the AG). Refuses
/// an unusable root, a damaged tree and a record outside the AG.
pub(crate) fn walk_rmap(
    fs: &Filesystem,
    agno: AgNumber,
    mut on_record: impl FnMut(&RmapRec),
) -> Result<RmapWalk, Refused> {
    let geo = fs.geometry();
    let ag_len = geo
        .ag_len(agno)
        .ok_or_else(|| format!("{agno} does not exist"))?;
    let agf_sector = read_sector(fs, agno, 1)?;
    let agf = crate::format::agf::Agf::from_bytes(&agf_sector).map_err(|e| e.to_string())?;
    if !geo.verify_agbno(agno, AgBlock(agf.rmap_root))
        || agf.rmap_level == 0
        || agf.rmap_level > geo.maxlevels.rmap
    {
        return Err(format!(
            "the AGF's rmapbt root ({} at height {}) is unusable, so there is nothing to rebuild from",
            agf.rmap_root, agf.rmap_level
        ));
    }
    let rmapbt = fs.rmapbt(agno, &agf).map_err(|e| e.to_string())?;
    let mut records = 0u64;
    let mut outside: Option<RmapRec> = None;
    walk_quietly(&rmapbt, "rmapbt", |r: &RmapRec| {
        records += 1;
        let end = u64::from(r.startblock) + u64::from(r.blockcount);
        if r.blockcount == 0 || end > u64::from(ag_len) {
            outside.get_or_insert(*r);
            return;
        }
        on_record(r);
    })
    .map_err(|u| u.0)?;
    if let Some(r) = outside {
        return Err(format!(
            "the rmapbt maps AG blocks {}+{} outside the AG's {ag_len} blocks",
            r.startblock, r.blockcount
        ));
    }
    Ok(RmapWalk { records })
}
