//! C2SP tlog-tiles coordinates: tiles of height 8 (256 hashes), their paths, and the
//! mapping from tree nodes to stored tile levels.
//!
//! A tile at tile level `L`, index `N` holds the hashes of tree level `8·L`,
//! nodes `[256·N, 256·N + W)`, where `W` (1..=256) is its width; a tile of width 256
//! is full and never changes again.

use crate::hash::{Hash, node_hash};

/// Tile height in tree levels (C2SP tlog-tiles fixes it at 8).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile: `2^TILE_HEIGHT`.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Identifies one tile: tile level, tile index and width (number of hashes, 1..=256).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileId {
    /// Tile level `L`: its hashes are tree level `8·L`.
    pub level: u32,
    /// Tile index `N` within its level.
    pub index: u64,
    /// Number of hashes (or entries) in the tile, 1..=256.
    pub width: u32,
}

impl TileId {
    /// Whether the tile is full (width 256) and therefore immutable.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// Path of this hash tile under the log prefix: `tile/<L>/<N>[.p/<W>]`.
    pub fn hash_path(&self) -> String {
        let mut p = format!("tile/{}/{}", self.level, encode_tile_index(self.index));
        if !self.is_full() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Path of the entry bundle with this index and width: `tile/entries/<N>[.p/<W>]`.
    pub fn entries_path(&self) -> String {
        let mut p = format!("tile/entries/{}", encode_tile_index(self.index));
        if !self.is_full() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }
}

/// Encodes a tile index as path elements of three decimal digits, all but the last
/// prefixed with `x` (C2SP tlog-tiles): 1234067 → `x001/x234/067`.
pub fn encode_tile_index(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

/// Parses what follows `tile/<L>/` or `tile/entries/`: `<N>[.p/<W>]`, with N encoded as
/// by [`encode_tile_index`]. Returns `(index, width)`, width 256 for a full tile.
/// Rejects non-canonical encodings (wrong digit counts, missing `x`, width 0 or > 255
/// for a partial tile).
pub fn parse_tile_index(path: &str) -> Option<(u64, u32)> {
    let (index_part, width) = match path.split_once(".p/") {
        Some((i, w)) => {
            if w.is_empty() || w.len() > 3 || !w.bytes().all(|b| b.is_ascii_digit()) || w.starts_with('0') {
                return None;
            }
            let w: u32 = w.parse().ok()?;
            if w == 0 || u64::from(w) >= TILE_WIDTH {
                return None;
            }
            (i, w)
        }
        None => (path, TILE_WIDTH as u32),
    };
    let elems: Vec<&str> = index_part.split('/').collect();
    let mut index: u64 = 0;
    for (i, e) in elems.iter().enumerate() {
        let last = i + 1 == elems.len();
        let digits = if last { *e } else { e.strip_prefix('x')? };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse::<u64>().ok()?)?;
    }
    // Reject leading zero groups ("x000/001"), which would give two paths for one tile.
    if elems.len() > 1 && elems[0] == "x000" {
        return None;
    }
    Some((index, width))
}

/// The tiles that make up a tree of `tree_size` leaves at tile level `level`:
/// full tiles `0..full` and, if any, one partial tile of `partial_width` hashes.
pub fn tiles_at_level(tree_size: u64, level: u32) -> (u64, u32) {
    let shift = TILE_HEIGHT * level;
    let nodes = if shift >= 64 { 0 } else { tree_size >> shift };
    (nodes / TILE_WIDTH, (nodes % TILE_WIDTH) as u32)
}

/// Reduces `2^k` consecutive hashes of one level to the root of the perfect subtree
/// above them (k levels up). `hashes.len()` must be a power of two.
pub fn reduce_perfect(hashes: &[Hash]) -> Hash {
    assert!(hashes.len().is_power_of_two(), "reduce_perfect needs 2^k hashes");
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_index_encoding_matches_spec_examples() {
        // C2SP tlog-tiles: "1234067 will be encoded as x001/x234/067".
        assert_eq!(encode_tile_index(1234067), "x001/x234/067");
        assert_eq!(encode_tile_index(0), "000");
        assert_eq!(encode_tile_index(999), "999");
        assert_eq!(encode_tile_index(1000), "x001/000");
        assert_eq!(parse_tile_index("x001/x234/067"), Some((1234067, 256)));
        assert_eq!(parse_tile_index("x001/x234/067.p/8"), Some((1234067, 8)));
        assert_eq!(parse_tile_index("067.p/0"), None);
        assert_eq!(parse_tile_index("067.p/256"), None);
        assert_eq!(parse_tile_index("67"), None);
        assert_eq!(parse_tile_index("001/002"), None);
        assert_eq!(parse_tile_index("x000/002"), None);
    }

    #[test]
    fn paths() {
        let t = TileId { level: 0, index: 1234067, width: 256 };
        assert_eq!(t.hash_path(), "tile/0/x001/x234/067");
        let t = TileId { level: 1, index: 2, width: 10 };
        assert_eq!(t.hash_path(), "tile/1/002.p/10");
        assert_eq!(t.entries_path(), "tile/entries/002.p/10");
    }

    #[test]
    fn tiles_at_level_counts() {
        assert_eq!(tiles_at_level(0, 0), (0, 0));
        assert_eq!(tiles_at_level(256, 0), (1, 0));
        assert_eq!(tiles_at_level(257, 0), (1, 1));
        assert_eq!(tiles_at_level(65536 + 300, 1), (1, 1));
        assert_eq!(tiles_at_level(u64::MAX, 8), (0, 0));
    }

    proptest::proptest! {
        #[test]
        fn tile_index_round_trips(index in proptest::num::u64::ANY, width in 1u32..=256) {
            let t = TileId { level: 0, index, width };
            let path = t.entries_path();
            let rest = path.strip_prefix("tile/entries/").unwrap();
            proptest::prop_assert_eq!(parse_tile_index(rest), Some((index, width)));
        }
    }
}
