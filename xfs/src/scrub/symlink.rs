//! The `symlink` scrubber: every symbolic link whose inode lives in the AG
//! (the kernel's `fs/xfs/scrub/symlink.c`, libxfs `xfs_symlink_verify`
//! and `xfs_repair`'s symlink checks).
//!
//! The target length (`di_size`) is 1..=1024 bytes. An inline target fits
//! the data fork; a remote one is held by blocks each starting with a
//! header (magic, CRC, UUID, owner, disk address, the offset and byte count
//! of the part it holds, an LSN not ahead of the log), the parts following
//! each other and adding up to the length. A target holds no NUL byte.

use super::common::{group_of, log_head, lsn_ahead, read_error};
use super::dir::for_each_inode_of_type;
use crate::error::Error;
use crate::format::dinode::{FileType, Fork, ForkFormat};
use crate::format::symlink::{self, SymlinkHeader};
use crate::fs::{Filesystem, Inode};
use scrub::{Finding, FindingKind, Findings, ItemId, Scope, ScrubContext, ScrubError, Scrubber};

/// Checks the symbolic links whose inodes are in one AG.
pub struct SymlinkScrub;

impl Scrubber<Filesystem> for SymlinkScrub {
    fn name(&self) -> &'static str {
        "symlink"
    }

    fn scope(&self) -> Scope {
        Scope::Group
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["inobt"]
    }

    fn scrub(
        &self,
        fs: &Filesystem,
        item: &ItemId,
        ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        let agno = group_of(item)?;
        for_each_inode_of_type(
            fs,
            agno,
            FileType::Symlink,
            "symlink",
            ctx,
            out,
            |_, out, inode| {
                let ino = inode.ino;
                let mut problems = Vec::new();
                check_symlink(fs, inode, &mut problems)?;
                for (field, block, expected, actual, msg) in problems {
                    let where_ = format!("symlink {}", ino.0);
                    let mut f = Finding::new(
                        FindingKind::Corrupt,
                        "symlink",
                        format!("symlink.{field}"),
                        format!("{where_}: {msg}"),
                    )
                    .group(u64::from(agno))
                    .inode(ino.0)
                    .field(field, expected, actual);
                    if let Some(b) = block {
                        f = f.block(b);
                    }
                    out.push(f);
                }
                Ok(())
            },
        )
    }
}

/// `(field, file block, expected, actual, message)`.
type LinkProblem = (&'static str, Option<u64>, String, String, String);

fn check_symlink(
    fs: &Filesystem,
    inode: &Inode,
    out: &mut Vec<LinkProblem>,
) -> Result<(), ScrubError> {
    let size = inode.core.size;
    if size == 0 || size > symlink::MAX_LEN {
        out.push((
            "core.size",
            None,
            format!("1..={}", symlink::MAX_LEN),
            size.to_string(),
            format!(
                "the target length {size} is not in 1..={}",
                symlink::MAX_LEN
            ),
        ));
        return Ok(());
    }
    let len = usize::try_from(size).unwrap_or(0);
    let target = match inode.core.fork_format(Fork::Data) {
        ForkFormat::Local => {
            let fork = inode.core.fork_bytes(&inode.raw, Fork::Data);
            match fork.get(..len) {
                Some(t) => t.to_vec(),
                None => {
                    out.push((
                        "core.size",
                        None,
                        format!("<= {} (the data fork)", fork.len()),
                        size.to_string(),
                        "the inline target does not fit the data fork".to_owned(),
                    ));
                    return Ok(());
                }
            }
        }
        ForkFormat::Extents | ForkFormat::Btree => match remote_target(fs, inode, len, out)? {
            Some(t) => t,
            None => return Ok(()),
        },
        other => {
            out.push((
                "core.format",
                None,
                "local or extents".to_owned(),
                format!("{other:?}"),
                "the data fork format cannot hold a symlink target".to_owned(),
            ));
            return Ok(());
        }
    };
    if let Some(at) = target.iter().position(|&b| b == 0) {
        out.push((
            "target",
            None,
            "no NUL byte".to_owned(),
            format!("NUL at byte {at}"),
            format!("the target holds a NUL byte at byte {at}"),
        ));
    }
    Ok(())
}

/// Reads and checks a remote target; `None` when it cannot be assembled.
fn remote_target(
    fs: &Filesystem,
    inode: &Inode,
    len: usize,
    out: &mut Vec<LinkProblem>,
) -> Result<Option<Vec<u8>>, ScrubError> {
    let geo = fs.geometry();
    let ino = inode.ino.0;
    let extents = match fs.mappings(inode, Fork::Data) {
        Ok(e) => e,
        Err(e @ Error::Device(_)) => return Err(read_error(e)),
        Err(e) => {
            out.push((
                "bmap",
                None,
                "a readable block map".to_owned(),
                e.to_string(),
                format!("the block map cannot be read: {e}"),
            ));
            return Ok(None);
        }
    };
    let head = log_head(fs);
    let mut target = Vec::with_capacity(len);
    let mut next_off = 0u64;
    let mut ok = true;
    for e in &extents {
        if target.len() >= len {
            out.push((
                "bmap",
                Some(e.file_offset.0),
                format!("no blocks past the {len}-byte target"),
                format!("file block {}", e.file_offset.0),
                "blocks are mapped past the end of the target".to_owned(),
            ));
            break;
        }
        let fb = e.file_offset.0;
        if fb != next_off || e.unwritten {
            out.push((
                "bmap",
                Some(fb),
                format!("written blocks from file block {next_off}"),
                format!("file block {fb}"),
                "the target is not mapped contiguously from the start".to_owned(),
            ));
            return Ok(None);
        }
        let buf = match fs.read_fsblocks(e.start, e.len) {
            Ok(b) => b,
            Err(e @ Error::Device(_)) => return Err(read_error(e)),
            Err(err) => {
                out.push((
                    "bmap",
                    Some(fb),
                    "blocks inside the filesystem".to_owned(),
                    err.to_string(),
                    format!("file block {fb} cannot be read: {err}"),
                ));
                return Ok(None);
            }
        };
        let daddr = geo.fsb_to_daddr(e.start).map(|d| d.0).unwrap_or(0);
        let what = format!("remote symlink block {fb}");
        let Ok(c) = SymlinkHeader::check(&buf, ino, daddr, geo.meta_uuid, &what) else {
            return Ok(None);
        };
        for p in c.problems {
            ok = false;
            out.push((
                field_static(&p.field),
                Some(fb),
                p.expected.clone(),
                p.actual.clone(),
                format!(
                    "{} field {} is {}, expected {}",
                    p.structure, p.field, p.actual, p.expected
                ),
            ));
        }
        let h = c.value;
        if let Some(head) = head
            && lsn_ahead(h.lsn, head)
        {
            out.push((
                "lsn",
                Some(fb),
                format!("<= the log head {}/{}", head.0, head.1),
                format!("{}/{}", h.lsn >> 32, h.lsn & 0xffff_ffff),
                format!("remote block {fb} carries an LSN ahead of the log"),
            ));
        }
        if !ok {
            return Ok(None);
        }
        if usize::try_from(h.offset).ok() != Some(target.len()) || h.bytes == 0 {
            out.push((
                "offset",
                Some(fb),
                target.len().to_string(),
                h.offset.to_string(),
                format!(
                    "remote block {fb} holds bytes {}..+{} of the target, but {} come before it",
                    h.offset,
                    h.bytes,
                    target.len()
                ),
            ));
            return Ok(None);
        }
        let n = usize::try_from(h.bytes).unwrap_or(0);
        if n > len.saturating_sub(target.len()) {
            out.push((
                "bytes",
                Some(fb),
                format!("<= {}", len.saturating_sub(target.len())),
                n.to_string(),
                format!("remote block {fb} holds more bytes than the target has left"),
            ));
            return Ok(None);
        }
        let Some(part) = buf.get(symlink::HEADER_SIZE..symlink::HEADER_SIZE.saturating_add(n))
        else {
            return Ok(None);
        };
        target.extend_from_slice(part);
        next_off = e.end();
    }
    if target.len() != len {
        out.push((
            "core.size",
            None,
            target.len().to_string(),
            len.to_string(),
            format!(
                "the remote blocks hold {} bytes of the {len}-byte target",
                target.len()
            ),
        ));
        return Ok(None);
    }
    Ok(Some(target))
}

fn field_static(f: &str) -> &'static str {
    match f {
        "magic" => "magic",
        "crc" => "crc",
        "uuid" => "uuid",
        "owner" => "owner",
        "bno" => "bno",
        "offset" => "offset",
        "bytes" => "bytes",
        _ => "header",
    }
}
