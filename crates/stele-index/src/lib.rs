//! # stele-index
//!
//! The query index: derived data that answers "which entries match these fields and
//! this time range" without scanning the log. It is rebuilt from the log at will
//! (`stele reindex`), repaired automatically when damaged, and never trusted by
//! verification: every hit is re-read from the log, checked against its leaf, and
//! re-matched against the query before it is returned.
//!
//! Layout (in `DATA/index/`): `dir.dat` holds one fixed 64-byte record per block
//! (entry range, time bounds, where the block is, CRCs); `blocks.dat` holds the blocks,
//! each a zstd-compressed table of the normalized fields of a contiguous range of
//! entries. A time-range query reads only the blocks whose bounds overlap the range;
//! entries not yet in a block are read from the log itself.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod block;
mod index;
mod query;

pub use index::{GO_ON_EVERY_ROWS, Index, IndexError, Snapshot};
pub use query::{Hit, Query};
