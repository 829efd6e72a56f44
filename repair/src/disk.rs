//! The device a repair writes to, and test devices.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A byte-addressed device. A filesystem crate implements it over its own
/// image access; the tests here use [`MemDisk`] and [`FaultyDisk`].
pub trait Disk: Send + Sync {
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
}

impl<D: Disk + ?Sized> Disk for &D {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

fn range(offset: u64, len: usize, size: u64) -> io::Result<std::ops::Range<usize>> {
    let end = offset.checked_add(len as u64).filter(|e| *e <= size);
    match (
        usize::try_from(offset),
        end.and_then(|e| usize::try_from(e).ok()),
    ) {
        (Ok(s), Some(e)) => Ok(s..e),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes at {offset} are outside a device of {size} bytes"),
        )),
    }
}

/// A device in memory.
#[derive(Debug)]
pub struct MemDisk {
    data: Mutex<Vec<u8>>,
}

impl MemDisk {
    /// A device holding `data`.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data: Mutex::new(data),
        }
    }

    /// A copy of the contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Disk for MemDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let r = range(offset, buf.len(), d.len() as u64)?;
        buf.copy_from_slice(&d[r]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let r = range(offset, buf.len(), d.len() as u64)?;
        d[r].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }
}

/// A device that "crashes" after a number of writes: the first `limit`
/// writes land, every later write fails and changes nothing, as if the
/// machine stopped there. Crash-consistency tests run a commit against it
/// for every `limit` and then recover on the surviving contents.
#[derive(Debug)]
pub struct FaultyDisk<D> {
    inner: D,
    limit: u64,
    writes: AtomicU64,
}

impl<D: Disk> FaultyDisk<D> {
    /// `inner`, failing every write after the first `limit`.
    pub fn new(inner: D, limit: u64) -> Self {
        Self {
            inner,
            limit,
            writes: AtomicU64::new(0),
        }
    }

    /// Writes attempted so far (landed or not).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Whether the crash point was reached.
    pub fn crashed(&self) -> bool {
        self.writes() > self.limit
    }

    /// The device underneath.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: Disk> Disk for FaultyDisk<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n >= self.limit {
            return Err(io::Error::other("injected crash"));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        if self.crashed() {
            return Err(io::Error::other("injected crash"));
        }
        self.inner.sync()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
}
