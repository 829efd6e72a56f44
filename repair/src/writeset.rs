//! The writes one repair commits, in the order that keeps them atomic.

use crate::error::RepairError;
use std::collections::BTreeMap;

/// When a staged write is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Blocks nothing points at yet (a new btree's blocks): written and made
    /// durable first, so that a crash leaves them unreferenced.
    New,
    /// Writes that make the new blocks live (headers holding roots,
    /// counters): applied only once every `New` write is durable.
    Live,
}

/// Writes staged for one atomic commit. Writes never overlap one another.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    writes: BTreeMap<u64, (Phase, Vec<u8>)>,
}

impl WriteSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stages `data` at byte `offset` in `phase`. Staging the same range
    /// again replaces it; a partial overlap with another staged write is
    /// refused (it would make the order of the two matter).
    pub fn stage(&mut self, phase: Phase, offset: u64, data: Vec<u8>) -> Result<(), RepairError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(RepairError::Overlap { offset })?;
        if data.is_empty() {
            return Ok(());
        }
        if let Some((&o, (_, d))) = self.writes.range(..=offset).next_back() {
            let same = o == offset && d.len() == data.len();
            if !same && o + d.len() as u64 > offset {
                return Err(RepairError::Overlap { offset });
            }
        }
        if let Some((&o, _)) = self.writes.range(offset + 1..end).next() {
            return Err(RepairError::Overlap { offset: o });
        }
        self.writes.insert(offset, (phase, data));
        Ok(())
    }

    /// Stages a write of a new block.
    pub fn stage_new(&mut self, offset: u64, data: Vec<u8>) -> Result<(), RepairError> {
        self.stage(Phase::New, offset, data)
    }

    /// Stages a write that makes new blocks live.
    pub fn stage_live(&mut self, offset: u64, data: Vec<u8>) -> Result<(), RepairError> {
        self.stage(Phase::Live, offset, data)
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Number of staged writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Bytes staged in all.
    pub fn bytes(&self) -> u64 {
        self.writes.values().map(|(_, d)| d.len() as u64).sum()
    }

    /// The writes of `phase`, by offset.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = (u64, &[u8])> {
        self.writes
            .iter()
            .filter(move |(_, (p, _))| *p == phase)
            .map(|(o, (_, d))| (*o, d.as_slice()))
    }

    /// Every write, by offset.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Phase, &[u8])> {
        self.writes.iter().map(|(o, (p, d))| (*o, *p, d.as_slice()))
    }

    /// The staged write that covers `[offset, offset + len)` completely, if
    /// any.
    pub fn covering(&self, offset: u64, len: usize) -> Option<(u64, Phase, &[u8])> {
        let (&o, (p, d)) = self.writes.range(..=offset).next_back()?;
        (o + d.len() as u64 >= offset + len as u64).then_some((o, *p, d.as_slice()))
    }

    /// Copies what `[offset, offset + buf.len())` will hold after the commit
    /// over `buf` (which holds the device's current contents).
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let first = self
            .writes
            .range(..offset)
            .next_back()
            .map_or(offset, |(o, _)| *o);
        for (&o, (_, d)) in self.writes.range(first..end) {
            let (ws, we) = (o, o + d.len() as u64);
            let (s, e) = (ws.max(offset), we.min(end));
            if s < e {
                buf[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&d[(s - ws) as usize..(e - ws) as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_refused_and_overlay_reads_through() {
        let mut w = WriteSet::new();
        w.stage_new(100, vec![1; 10]).unwrap();
        w.stage_live(200, vec![2; 10]).unwrap();
        assert!(w.stage_new(105, vec![3; 10]).is_err());
        assert!(w.stage_new(95, vec![3; 10]).is_err());
        assert!(w.stage_new(195, vec![3; 10]).is_err());
        w.stage_new(110, vec![4; 5]).unwrap();
        w.stage_new(100, vec![5; 10]).unwrap();
        assert_eq!(w.len(), 3);
        let mut buf = vec![0u8; 30];
        w.overlay(95, &mut buf);
        assert_eq!(&buf[..5], &[0; 5]);
        assert_eq!(&buf[5..15], &[5; 10]);
        assert_eq!(&buf[15..20], &[4; 5]);
        assert_eq!(w.phase(Phase::Live).count(), 1);
        assert_eq!(w.covering(202, 4).map(|c| c.0), Some(200));
        assert!(w.covering(205, 10).is_none());
    }
}
