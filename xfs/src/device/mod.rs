//! Storage behind a tiny trait: the image file, an in-memory buffer, a
//! copy-on-write overlay for tests of repairs, and `open_image`, which also
//! opens zstd-compressed images.
//!
//! Invariant: a device opened read-only refuses every write
//! ([`DeviceError::ReadOnly`]), so a check can never modify an image.

mod cow;
mod file;
mod mem;

pub use cow::CowDevice;
pub use file::FileDevice;
pub use mem::MemDevice;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The operating system reported an error.
    #[error("I/O error at byte offset {offset} (length {len})")]
    Io {
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request.
        len: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The request reaches past the end of the device.
    #[error(
        "read of {len} bytes at byte offset {offset} reaches past the end of the device ({size} bytes)"
    )]
    OutOfRange {
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request.
        len: usize,
        /// Device size.
        size: u64,
    },
    /// A write was attempted on a read-only device.
    #[error("the device is open read-only")]
    ReadOnly,
    /// Opening the image failed.
    #[error("cannot open {path}")]
    Open {
        /// The image path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Decompressing a compressed image failed.
    #[error("cannot decompress {path}")]
    Decompress {
        /// The image path.
        path: PathBuf,
        /// The error from the decoder or the temporary file.
        #[source]
        source: io::Error,
    },
    /// Read-write access was asked for a compressed image.
    #[error(
        "{path} is zstd-compressed: it can only be opened read-only (decompress it first to repair it)"
    )]
    CompressedReadWrite {
        /// The image path.
        path: PathBuf,
    },
}

/// A block device or image: positioned reads and writes of bytes.
pub trait Device: Send + Sync {
    /// Fills `buf` from byte `offset`. A read past the end is an error
    /// naming the offset; short reads never happen.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError>;
    /// Writes all of `buf` at byte `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError>;
    /// Size of the device in bytes.
    fn size(&self) -> u64;
    /// Makes previous writes durable.
    fn sync(&self) -> Result<(), DeviceError>;
    /// Whether writes are allowed.
    fn is_writable(&self) -> bool;
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        (**self).write_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn sync(&self) -> Result<(), DeviceError> {
        (**self).sync()
    }
    fn is_writable(&self) -> bool {
        (**self).is_writable()
    }
}

impl<D: Device + ?Sized> Device for Arc<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        (**self).write_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn sync(&self) -> Result<(), DeviceError> {
        (**self).sync()
    }
    fn is_writable(&self) -> bool {
        (**self).is_writable()
    }
}

/// Checks that `[offset, offset + len)` lies inside a device of `size` bytes.
pub(crate) fn check_range(offset: u64, len: usize, size: u64) -> Result<(), DeviceError> {
    let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::OutOfRange { offset, len, size }),
    }
}

/// How to open an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only; writes are refused.
    ReadOnly,
    /// Reads and writes (repairs with `--commit`).
    ReadWrite,
}

/// The zstd frame magic number, as it appears in the file.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Chunk size for decompression; all-zero chunks are skipped so the
/// temporary file stays sparse.
const DECOMPRESS_CHUNK: usize = 1 << 20;

/// Environment variable naming the directory for decompressed images.
pub const TMPDIR_ENV: &str = "SCRUBD_TMPDIR";

/// Opens an image file.
///
/// A zstd-compressed image (recognised by its magic number, whatever its
/// name) is decompressed, streaming, into a private unlinked temporary file
/// in `$SCRUBD_TMPDIR` (else the system temporary directory); all-zero
/// chunks are not written, so the file stays sparse. Compressed images can
/// only be opened read-only.
pub fn open_image(path: &Path, access: Access) -> Result<Box<dyn Device>, DeviceError> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|source| DeviceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let n = read_up_to(&mut f, &mut magic).map_err(|source| DeviceError::Open {
        path: path.to_owned(),
        source,
    })?;
    if n == magic.len() && magic == ZSTD_MAGIC {
        if access == Access::ReadWrite {
            return Err(DeviceError::CompressedReadWrite {
                path: path.to_owned(),
            });
        }
        drop(f);
        let dev = decompress_to_temp(path).map_err(|source| DeviceError::Decompress {
            path: path.to_owned(),
            source,
        })?;
        return Ok(Box::new(dev));
    }
    drop(f);
    Ok(Box::new(FileDevice::open(
        path,
        access == Access::ReadWrite,
    )?))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decompresses `path` into a sparse unlinked temporary file.
fn decompress_to_temp(path: &Path) -> io::Result<FileDevice> {
    use std::os::unix::fs::FileExt;
    let dir = std::env::var_os(TMPDIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let out = tempfile::tempfile_in(&dir)?;
    let input = std::fs::File::open(path)?;
    let mut dec = zstd::stream::read::Decoder::new(input)?;
    let mut buf = vec![0u8; DECOMPRESS_CHUNK];
    let mut offset: u64 = 0;
    loop {
        let n = read_up_to(&mut dec, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().any(|&b| b != 0) {
            out.write_all_at(chunk, offset)?;
        }
        offset += n as u64;
        if n < buf.len() {
            break;
        }
    }
    out.set_len(offset)?;
    Ok(FileDevice::from_file(out, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn range_checks() {
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(1, 10, 10).is_err());
        assert!(check_range(u64::MAX, 1, u64::MAX).is_err());
    }

    #[test]
    fn compressed_images_open_read_only_and_stay_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 3 << 20];
        data[5] = 1;
        data[(3 << 20) - 1] = 2;
        // Name it .img: detection is by magic, not by name.
        let path = dir.path().join("x.img");
        let compressed = zstd::encode_all(&data[..], 3).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&compressed)
            .unwrap();
        let dev = open_image(&path, Access::ReadOnly).unwrap();
        assert_eq!(dev.size(), 3 << 20);
        assert!(!dev.is_writable());
        let mut b = [0u8; 8];
        dev.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [0, 0, 0, 0, 0, 1, 0, 0]);
        dev.read_at(&mut b, (3 << 20) - 8).unwrap();
        assert_eq!(b[7], 2);
        assert!(matches!(dev.write_at(&b, 0), Err(DeviceError::ReadOnly)));
        let e = open_image(&path, Access::ReadWrite).err().unwrap();
        assert!(matches!(e, DeviceError::CompressedReadWrite { .. }));
        let e = dev.read_at(&mut b, 3 << 20).unwrap_err();
        assert!(e.to_string().contains("3145728"), "{e}");
    }

    #[test]
    fn plain_images_open_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.img");
        std::fs::write(&path, vec![9u8; 4096]).unwrap();
        let ro = open_image(&path, Access::ReadOnly).unwrap();
        assert!(!ro.is_writable());
        assert!(ro.write_at(&[1], 0).is_err());
        let rw = open_image(&path, Access::ReadWrite).unwrap();
        rw.write_at(&[1, 2], 10).unwrap();
        rw.sync().unwrap();
        let mut b = [0u8; 2];
        ro.read_at(&mut b, 10).unwrap();
        assert_eq!(b, [1, 2]);
        assert!(matches!(
            open_image(&dir.path().join("missing"), Access::ReadOnly),
            Err(DeviceError::Open { .. })
        ));
    }
}
