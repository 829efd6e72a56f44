//! Integration tests of the btree engine: one binary, one module per area.

mod bload;
mod common;
mod corrupt;
mod model;
mod overlap;
mod staging;
