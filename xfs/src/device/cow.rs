//! A copy-on-write overlay: writes land in memory, reads see them on top
//! of the base device, and the base is never written. Tests of repairs run
//! on it and can ask which sectors a repair wrote.

use super::{Device, DeviceError, check_range};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Granularity of the overlay.
pub const COW_SECTOR: u64 = 512;

/// A copy-on-write overlay over any device.
#[derive(Debug)]
pub struct CowDevice<D> {
    base: D,
    /// Sector number -> its current contents.
    overlay: RwLock<BTreeMap<u64, Box<[u8; 512]>>>,
}

impl<D: Device> CowDevice<D> {
    /// An overlay over `base`. The base is only ever read.
    pub fn new(base: D) -> CowDevice<D> {
        CowDevice {
            base,
            overlay: RwLock::new(BTreeMap::new()),
        }
    }

    /// The 512-byte sectors written so far, in order.
    pub fn written_sectors(&self) -> Vec<u64> {
        self.overlay
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Forgets every write.
    pub fn discard(&self) {
        self.overlay
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The base device.
    pub fn base(&self) -> &D {
        &self.base
    }
}

impl<D: Device> Device for CowDevice<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        check_range(offset, buf.len(), self.base.size())?;
        self.base.read_at(buf, offset)?;
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        if overlay.is_empty() || buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let first = offset / COW_SECTOR;
        let last = (end - 1) / COW_SECTOR;
        for (&sector, data) in overlay.range(first..=last) {
            let s_start = sector * COW_SECTOR;
            let from = s_start.max(offset);
            let to = (s_start + COW_SECTOR).min(end);
            let src = &data[(from - s_start) as usize..(to - s_start) as usize];
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        check_range(offset, buf.len(), self.base.size())?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let first = offset / COW_SECTOR;
        let last = (end - 1) / COW_SECTOR;
        for sector in first..=last {
            let s_start = sector * COW_SECTOR;
            let mut cur = [0u8; 512];
            let len = COW_SECTOR.min(self.base.size() - s_start) as usize;
            self.read_at(&mut cur[..len], s_start)?;
            let from = s_start.max(offset);
            let to = (s_start + COW_SECTOR).min(end);
            cur[(from - s_start) as usize..(to - s_start) as usize]
                .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
            self.overlay
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sector, Box::new(cur));
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.base.size()
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
    use super::super::MemDevice;
    use super::*;

    #[test]
    fn overlay_and_base() {
        let base = MemDevice::new((0..2048u32).map(|i| (i % 251) as u8).collect());
        let cow = CowDevice::new(base);
        cow.write_at(&[0xaa; 10], 508).unwrap();
        assert_eq!(cow.written_sectors(), vec![0, 1]);
        let mut b = [0u8; 16];
        cow.read_at(&mut b, 504).unwrap();
        assert_eq!(
            &b[..4],
            &[
                (504 % 251) as u8,
                (505 % 251) as u8,
                (506 % 251) as u8,
                (507 % 251) as u8
            ]
        );
        assert_eq!(&b[4..14], &[0xaa; 10]);
        assert_eq!(b[14], (518 % 251) as u8);
        let mut base_b = [0u8; 4];
        cow.base().read_at(&mut base_b, 508).unwrap();
        assert_eq!(
            base_b,
            [
                (508 % 251) as u8,
                (509 % 251) as u8,
                (510 % 251) as u8,
                (511 % 251) as u8
            ]
        );
        assert!(cow.write_at(&[1], 2048).is_err());
        cow.discard();
        assert!(cow.written_sectors().is_empty());
    }
}
