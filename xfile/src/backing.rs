//! The private backing file of an [`crate::XFile`]: an unlinked temporary
//! file accessed only with `pread`/`pwrite`/`fallocate`/`lseek`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

/// An open, unlinked temporary file.
pub(crate) struct Backing {
    file: File,
    dir: PathBuf,
}

impl Backing {
    /// Create a private file in `dir` that no path reaches: `O_TMPFILE`
    /// where the filesystem supports it, else a randomly named file that is
    /// unlinked at once. Mode 0600 either way.
    pub(crate) fn create(dir: &Path) -> io::Result<Backing> {
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(rustix::fs::CWD, dir, flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => File::from(fd),
            // EOPNOTSUPP: the filesystem has no O_TMPFILE. EISDIR/EINVAL:
            // kernels too old to know the flag.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => tempfile::tempfile_in(dir)?,
            Err(e) => return Err(e.into()),
        };
        Ok(Backing {
            file,
            dir: dir.to_owned(),
        })
    }

    /// The directory the file was created in (for error messages).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fill `buf` from `offset`; bytes past the end of the file read as
    /// zeros.
    pub(crate) fn read_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.file.read_at(buf, offset) {
                Ok(0) => {
                    buf.fill(0);
                    return Ok(());
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write all of `buf` at `offset`.
    pub(crate) fn write_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.file.write_at(buf, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Make `[offset, offset + len)` read as zeros and free its blocks. If
    /// the filesystem cannot punch holes, writes zeros instead.
    pub(crate) fn punch(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, offset, len) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP) => {
                // Only the part inside the file needs zeros.
                let size = self.file.metadata()?.len();
                let end = offset.saturating_add(len).min(size);
                let zeros = vec![0u8; 1 << 16];
                let mut pos = offset;
                while pos < end {
                    let n = (end - pos).min(zeros.len() as u64) as usize;
                    self.write_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// First offset at or after `offset` that holds data, if any.
    pub(crate) fn seek_data(&self, offset: u64) -> io::Result<Option<u64>> {
        match rustix::fs::seek(&self.file, SeekFrom::Data(offset)) {
            Ok(pos) => Ok(Some(pos)),
            Err(Errno::NXIO) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// First offset at or after `offset` that is a hole (the end of the file
    /// counts as one).
    pub(crate) fn seek_hole(&self, offset: u64) -> io::Result<u64> {
        match rustix::fs::seek(&self.file, SeekFrom::Hole(offset)) {
            Ok(pos) => Ok(pos),
            Err(Errno::NXIO) => Ok(offset),
            Err(e) => Err(e.into()),
        }
    }

    /// Set the file's size (used when truncating).
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfile_is_private_and_sparse() {
        let dir = std::env::temp_dir();
        let b = Backing::create(&dir).expect("create backing file");
        // Not reachable by any path: its link count is 0.
        use std::os::unix::fs::MetadataExt;
        let md = b.file.metadata().expect("stat");
        assert_eq!(md.nlink(), 0);
        assert_eq!(md.mode() & 0o777, 0o600);

        let mut buf = [0xAAu8; 8];
        b.read_at(&mut buf, 1 << 20).expect("read past end");
        assert_eq!(buf, [0; 8]);
        b.write_at(b"hello", 1 << 20).expect("write");
        assert_eq!(b.seek_data(0).expect("seek"), Some(1 << 20));
        // The end of the file counts as a hole.
        assert_eq!(b.seek_hole(1 << 20).expect("seek"), (1 << 20) + 5);
        b.punch(1 << 20, 4096).expect("punch");
        b.read_at(&mut buf[..5], 1 << 20).expect("read");
        assert_eq!(&buf[..5], &[0; 5]);
        assert_eq!(b.seek_data(0).expect("seek"), None);
    }
}
