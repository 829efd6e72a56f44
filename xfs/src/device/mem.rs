//! An in-memory device for tests.

use super::{Device, DeviceError, check_range};
use std::sync::RwLock;

/// A device held in memory. Always writable.
#[derive(Debug)]
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
}

impl MemDevice {
    /// A device holding `data`.
    pub fn new(data: Vec<u8>) -> MemDevice {
        MemDevice {
            data: RwLock::new(data),
        }
    }

    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Converts a checked in-range offset to an index.
fn index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

impl Device for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        check_range(offset, buf.len(), data.len() as u64)?;
        let start = index(offset);
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        check_range(offset, buf.len(), data.len() as u64)?;
        let start = index(offset);
        data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    fn sync(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn is_writable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_bounds() {
        let d = MemDevice::new(vec![0; 16]);
        d.write_at(&[1, 2, 3], 13).unwrap();
        let mut b = [0u8; 3];
        d.read_at(&mut b, 13).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(d.read_at(&mut b, 14).is_err());
        assert!(d.write_at(&b, u64::MAX).is_err());
        assert_eq!(d.size(), 16);
    }
}
