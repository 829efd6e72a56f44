//! The bulk-load driver: a new btree written into reserved blocks as staged
//! writes, ready for the commit.

use crate::error::RepairError;
use crate::reserve::Reservation;
use crate::writeset::WriteSet;
use xfbtree::{
    BloadOptions, BloadTarget, BlockAddr, BtreeError, BtreeFormat, BuiltTree, Geometry, StoreError,
    bulk_load,
};

/// Blocks from a reservation, written as new-block writes of a write set.
pub struct Builder<'a> {
    reservation: &'a mut Reservation,
    writes: &'a mut WriteSet,
    offset_of: &'a dyn Fn(BlockAddr) -> Option<u64>,
}

impl<'a> Builder<'a> {
    /// A builder that takes blocks from `reservation` and stages them in
    /// `writes`; `offset_of` maps a block address to its byte offset on the
    /// image.
    pub fn new(
        reservation: &'a mut Reservation,
        writes: &'a mut WriteSet,
        offset_of: &'a dyn Fn(BlockAddr) -> Option<u64>,
    ) -> Self {
        Self {
            reservation,
            writes,
            offset_of,
        }
    }
}

impl BloadTarget for Builder<'_> {
    fn alloc_block(&mut self) -> Result<BlockAddr, BtreeError> {
        self.reservation
            .take()
            .map(BlockAddr)
            .ok_or(BtreeError::Store(StoreError::NoSpace))
    }

    fn write_block(&mut self, addr: BlockAddr, bytes: &[u8]) -> Result<(), BtreeError> {
        let off = (self.offset_of)(addr).ok_or(BtreeError::Store(StoreError::OutOfRange(addr)))?;
        self.writes
            .stage_new(off, bytes.to_vec())
            .map_err(|e| BtreeError::Source(Box::new(e)))
    }
}

/// Builds a btree of `records` (sorted, `count` of them) in blocks of
/// `block_size` bytes: computes its geometry, reserves exactly that many
/// blocks, writes every block as a staged new-block write and returns the
/// new root (not yet live: committing it is the caller's header update).
#[allow(clippy::too_many_arguments)]
pub fn build_tree<F, I, E>(
    format: &F,
    block_size: usize,
    count: u64,
    records: I,
    opts: &BloadOptions,
    reservation: &mut Reservation,
    writes: &mut WriteSet,
    offset_of: &dyn Fn(BlockAddr) -> Option<u64>,
) -> Result<(BuiltTree<F::Key>, Geometry), RepairError>
where
    F: BtreeFormat,
    I: IntoIterator<Item = Result<F::Record, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let geometry = Geometry::compute(format, block_size, count, opts)?;
    reservation.reserve(geometry.total_blocks())?;
    let mut target = Builder::new(reservation, writes, offset_of);
    let built = bulk_load(format, block_size, &geometry, records, &mut target)?;
    Ok((built, geometry))
}
