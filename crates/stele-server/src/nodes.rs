//! A memo of tree node hashes for receipts. A node that is not at a stored level
//! (tree levels 8·K) costs up to 128 stored reads and 127 hashes, and every receipt of
//! one checkpoint's entries needs mostly the same such nodes; a complete node never
//! changes, so it can be remembered for the life of the process.

use std::collections::HashMap;
use std::sync::Mutex;

use stele_store::{LogReader, StoreError};
use stele_tlog::Hash;
use stele_tlog::merkle::HashReader;
use stele_tlog::tile::TILE_HEIGHT;

/// Nodes remembered before the memo starts over (about 5 MiB).
const MAX_NODES: usize = 100_000;

/// Node hashes of complete nodes, computed once.
#[derive(Default)]
pub(crate) struct NodeCache {
    nodes: Mutex<HashMap<(u32, u64), Hash>>,
}

/// A [`HashReader`] over a log that remembers the nodes it computes. Only asked for
/// nodes below a signed (so durable, complete) tree size.
pub(crate) struct CachedReader<'a> {
    pub(crate) reader: &'a LogReader,
    pub(crate) cache: &'a NodeCache,
}

impl HashReader for CachedReader<'_> {
    type Error = StoreError;

    fn node_hash(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let hashes = &self.reader.files().hashes;
        if level.is_multiple_of(TILE_HEIGHT) {
            return hashes.node_hash(level, index);
        }
        if let Some(h) = self.cache.nodes.lock().unwrap_or_else(|p| p.into_inner()).get(&(level, index)) {
            return Ok(*h);
        }
        let h = hashes.node_hash(level, index)?;
        let mut nodes = self.cache.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if nodes.len() >= MAX_NODES {
            nodes.clear();
        }
        nodes.insert((level, index), h);
        Ok(h)
    }
}
