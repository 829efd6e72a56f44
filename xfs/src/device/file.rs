//! A device backed by a file (an image, or a decompressed temporary file).

use super::{Device, DeviceError, check_range};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An image file. Opened read-only unless writes were asked for.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    size: u64,
    writable: bool,
}

impl FileDevice {
    /// Opens `path`, read-only unless `writable`.
    pub fn open(path: &Path, writable: bool) -> Result<FileDevice, DeviceError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| DeviceError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(FileDevice::from_file(file, writable))
    }

    /// Wraps an open file. Its size is taken once, now.
    pub fn from_file(file: File, writable: bool) -> FileDevice {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        FileDevice {
            file,
            size,
            writable,
        }
    }
}

impl Device for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        check_range(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| DeviceError::Io {
                offset,
                len: buf.len(),
                source,
            })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        if !self.writable {
            return Err(DeviceError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| DeviceError::Io {
                offset,
                len: buf.len(),
                source,
            })
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn sync(&self) -> Result<(), DeviceError> {
        if !self.writable {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| DeviceError::Io {
            offset: 0,
            len: 0,
            source,
        })
    }

    fn is_writable(&self) -> bool {
        self.writable
    }
}
