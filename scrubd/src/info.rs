//! `scrubd info`: geometry and features in `xfs_info`'s layout, or every
//! superblock field in `xfs_db`'s.

use scrubd::exit::BoxError;
use std::fmt::Write as _;
use std::path::Path;
use xfs::device::{Access, open_image};
use xfs::format::superblock::{self, Superblock};
use xfs::{Error, Filesystem};

/// Runs `scrubd info`.
pub fn run(image: &Path, sb_fields: bool) -> Result<(), BoxError> {
    let dev = open_image(image, Access::ReadOnly).map_err(Error::from)?;
    if sb_fields {
        print!("{}", sb_dump(dev.as_ref())?);
        return Ok(());
    }
    let fs = Filesystem::open(dev)?;
    for w in fs.warnings() {
        eprintln!("scrubd: warning: {w}");
    }
    print!(
        "{}",
        xfs_info(fs.superblock(), &image.display().to_string())
    );
    Ok(())
}

/// Every primary superblock field as `name = value` lines. Works on a
/// damaged superblock too: it only decodes, like xfs_db.
fn sb_dump(dev: &dyn xfs::device::Device) -> Result<String, Error> {
    let mut first = vec![0u8; 512];
    dev.read_at(&mut first, 0)?;
    let sb0 = Superblock::from_bytes(&first)?;
    let sect = usize::from(sb0.sectsize);
    let sector = if sect > 512 && sect <= 32768 && sect.is_power_of_two() {
        let mut s = vec![0u8; sect];
        dev.read_at(&mut s, 0)?;
        s
    } else {
        first
    };
    let sb = Superblock::from_bytes(&sector)?;
    let crc_ok = xfs::format::crc::verify(&sector, superblock::CRC_OFFSET);
    let mut out = String::new();
    for (name, value) in sb.db_fields(crc_ok) {
        let _ = writeln!(out, "{name} = {value}");
    }
    Ok(out)
}

/// Formats geometry as xfsprogs' `xfs_report_geom` does.
pub fn xfs_info(sb: &Superblock, name: &str) -> String {
    let f = sb.features();
    let b = |v: bool| u32::from(v);
    let attr = if f.has_attr2() {
        2
    } else if f.has_attr() {
        1
    } else {
        0
    };
    let logsectsize = if f.has_sector() {
        u32::from(sb.logsectsize)
    } else {
        512
    };
    let log_name = if sb.logstart > 0 {
        "internal log"
    } else {
        "external"
    };
    let rt_name = if sb.rblocks == 0 { "none" } else { "external" };
    let logsunit_blocks = sb.logsunit.checked_div(sb.blocksize).unwrap_or(0);
    let dirblocksize = sb
        .blocksize
        .checked_shl(u32::from(sb.dirblklog))
        .unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "meta-data={name:<22} isize={:<6} agcount={}, agsize={} blks",
        sb.inodesize, sb.agcount, sb.agblocks
    );
    let _ = writeln!(
        s,
        "         ={:<22} sectsz={:<5} attr={attr}, projid32bit={}",
        "",
        sb.sectsize,
        b(f.has_projid32())
    );
    let _ = writeln!(
        s,
        "         ={:<22} crc={:<8} finobt={}, sparse={}, rmapbt={}",
        "",
        b(f.is_v5()),
        b(f.has_finobt()),
        b(f.has_sparse_inodes()),
        b(f.has_rmapbt())
    );
    let _ = writeln!(
        s,
        "         ={:<22} reflink={:<4} bigtime={} inobtcount={} nrext64={}",
        "",
        b(f.has_reflink()),
        b(f.has_bigtime()),
        b(f.has_inobtcounts()),
        b(f.has_nrext64())
    );
    let _ = writeln!(
        s,
        "data     ={:<22} bsize={:<6} blocks={}, imaxpct={}",
        "", sb.blocksize, sb.dblocks, sb.imax_pct
    );
    let _ = writeln!(
        s,
        "         ={:<22} sunit={:<6} swidth={} blks",
        "", sb.unit, sb.width
    );
    let _ = writeln!(
        s,
        "naming   =version {:<14} bsize={:<6} ascii-ci={}, ftype={}",
        2,
        dirblocksize,
        b(f.has_asciici()),
        b(f.has_ftype())
    );
    let _ = writeln!(
        s,
        "log      ={log_name:<22} bsize={:<6} blocks={}, version={}",
        sb.blocksize,
        sb.logblocks,
        if f.has_logv2() { 2 } else { 1 }
    );
    let _ = writeln!(
        s,
        "         ={:<22} sectsz={:<5} sunit={} blks, lazy-count={}",
        "",
        logsectsize,
        logsunit_blocks,
        b(f.has_lazysbcount())
    );
    let _ = writeln!(
        s,
        "realtime ={rt_name:<22} extsz={:<6} blocks={}, rtextents={}",
        u64::from(sb.rextsize) * u64::from(sb.blocksize),
        sb.rblocks,
        sb.rextents
    );
    s
}
