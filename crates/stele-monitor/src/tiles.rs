//! Reading a tree's hashes from C2SP tlog-tiles, authenticating every tile read, and
//! parsing entry bundles.
//!
//! Authentication: a *partial* tile (the rightmost tile of a level) is checked by the
//! root computation, which reads every hash of every partial tile of the tree (the
//! tree's size decomposes into one perfect subtree per set bit, and bits `8L..8L+7`
//! are exactly the partial tile of level `L`). A *full* tile is checked when fetched:
//! its 256 hashes must reduce to the node one tile level up, read (and so checked) the
//! same way. Callers must therefore compare [`TileTree::root`] with a signed root
//! before trusting anything else read through the tree.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use stele_tlog::Hash;
use stele_tlog::hash::HASH_LEN;
use stele_tlog::merkle::{HashReader, root_hash};
use stele_tlog::tile::{TILE_HEIGHT, TILE_WIDTH, TileId, reduce_perfect, tiles_at_level};

use crate::MonitorError;
use crate::source::TileSource;

/// Tiles read so far, by (tile level, index).
type TileCache = RefCell<HashMap<(u32, u64), Rc<Vec<Hash>>>>;

/// The tree of `size` leaves of a published log, read lazily from its hash tiles.
pub struct TileTree<'a> {
    source: &'a dyn TileSource,
    size: u64,
    tiles: TileCache,
    fetched: Cell<usize>,
}

impl std::fmt::Debug for TileTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileTree").field("size", &self.size).field("fetched", &self.fetched.get()).finish()
    }
}

impl<'a> TileTree<'a> {
    /// The tree of `size` leaves published by `source`.
    pub fn new(source: &'a dyn TileSource, size: u64) -> TileTree<'a> {
        TileTree { source, size, tiles: RefCell::new(HashMap::new()), fetched: Cell::new(0) }
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of tiles downloaded so far.
    pub fn tiles_fetched(&self) -> usize {
        self.fetched.get()
    }

    /// The root recomputed from the tiles (RFC 9162); compare it with a signed root.
    pub fn root(&self) -> Result<Hash, MonitorError> {
        root_hash(self, self.size)
    }

    /// The tile of this tree at tile level `level`, index `index`: its id (width as in
    /// a tree of this size) and hashes.
    pub fn tile(&self, level: u32, index: u64) -> Result<(TileId, Rc<Vec<Hash>>), MonitorError> {
        let (full, partial) = tiles_at_level(self.size, level);
        let width = if index < full {
            TILE_WIDTH as u32
        } else if index == full && partial > 0 {
            partial
        } else {
            return Err(MonitorError::Internal(format!(
                "tile {level}/{index} is outside a tree of {} leaves",
                self.size
            )));
        };
        let id = TileId { level, index, width };
        if let Some(t) = self.tiles.borrow().get(&(level, index)) {
            return Ok((id, Rc::clone(t)));
        }
        let path = id.hash_path();
        let mut bytes = self.fetch(&path)?;
        if bytes.is_none() && !id.is_full() {
            // C2SP tlog-tiles: a client may use the full tile when the partial one is gone.
            let full_id = TileId { width: TILE_WIDTH as u32, ..id };
            bytes = self.fetch(&full_id.hash_path())?.map(|mut b| {
                b.truncate(width as usize * HASH_LEN);
                b
            });
        }
        let bytes = bytes.ok_or_else(|| MonitorError::Missing { what: self.source.describe(&path) })?;
        let want = width as usize * HASH_LEN;
        if bytes.len() != want {
            return Err(MonitorError::MalformedTile {
                location: self.source.describe(&path),
                reason: format!("{} bytes, expected {want}", bytes.len()),
            });
        }
        let hashes: Vec<Hash> = bytes.chunks_exact(HASH_LEN).map(|c| Hash::from_slice(c).unwrap_or_default()).collect();
        if id.is_full() {
            let parent = self.node_hash(TILE_HEIGHT * (level + 1), index)?;
            if reduce_perfect(&hashes) != parent {
                let (pl, pi) = (level + 1, index >> TILE_HEIGHT);
                return Err(MonitorError::TileMismatch {
                    location: self.source.describe(&path),
                    reason: format!("its hashes do not reduce to entry {} of tile {pl}/{pi}", index % TILE_WIDTH),
                });
            }
        }
        let hashes = Rc::new(hashes);
        self.tiles.borrow_mut().insert((level, index), Rc::clone(&hashes));
        Ok((id, hashes))
    }

    fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, MonitorError> {
        let b = self.source.get(path)?;
        if b.is_some() {
            self.fetched.set(self.fetched.get() + 1);
        }
        Ok(b)
    }

    /// The entry bundle matching level-0 tile `id`: its location and bytes, and whether
    /// it is the full bundle used in place of a missing partial one (then it holds
    /// more entries than `id.width`; the first `id.width` are the ones wanted).
    pub fn bundle(&self, id: &TileId) -> Result<(String, Vec<u8>, bool), MonitorError> {
        let path = id.entries_path();
        if let Some(b) = self.fetch(&path)? {
            return Ok((self.source.describe(&path), b, false));
        }
        if !id.is_full() {
            let full = TileId { width: TILE_WIDTH as u32, ..*id }.entries_path();
            if let Some(b) = self.fetch(&full)? {
                return Ok((self.source.describe(&full), b, true));
            }
        }
        Err(MonitorError::Missing { what: self.source.describe(&path) })
    }

    /// Where a file of this log lives, for messages.
    pub fn describe(&self, path: &str) -> String {
        self.source.describe(path)
    }
}

impl HashReader for TileTree<'_> {
    type Error = MonitorError;

    fn node_hash(&self, level: u32, index: u64) -> Result<Hash, MonitorError> {
        let tile_level = level / TILE_HEIGHT;
        let up = level % TILE_HEIGHT;
        let first = index << up; // first node of the tile level under this node
        let (_, tile) = self.tile(tile_level, first >> TILE_HEIGHT)?;
        let start = (first % TILE_WIDTH) as usize;
        let span = tile
            .get(start..start + (1usize << up))
            .ok_or_else(|| MonitorError::Internal(format!("node ({level}, {index}) is not in its tile")))?;
        Ok(if up == 0 { span[0] } else { reduce_perfect(span) })
    }
}

/// Splits an entry bundle (C2SP tlog-tiles: each entry a big-endian `u16` length and
/// that many bytes) into its entries. `None` when a length runs past the end.
pub fn parse_entry_bundle(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return None;
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles() {
        assert_eq!(parse_entry_bundle(b"").unwrap().len(), 0);
        let b = [0, 3, b'o', b'n', b'e', 0, 0, 0, 1, b'x'];
        assert_eq!(parse_entry_bundle(&b).unwrap(), vec![&b"one"[..], b"", b"x"]);
        assert!(parse_entry_bundle(&b[..9]).is_none());
        assert!(parse_entry_bundle(&[0]).is_none());
    }
}
