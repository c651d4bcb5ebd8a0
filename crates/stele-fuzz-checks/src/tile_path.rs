//! `parse_tile_index` on arbitrary strings: never panics, and whatever parses is the
//! canonical path of the tile it names (so no tile has two paths); and every
//! `(index, width)` encodes to a path that parses back to it.

use stele_tlog::tile::{TILE_WIDTH, TileId, parse_tile_index};

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Some((index, width)) = parse_tile_index(s)
    {
        assert!(width >= 1 && u64::from(width) <= TILE_WIDTH);
        let t = TileId { level: 0, index, width };
        assert_eq!(t.entries_path().strip_prefix("tile/entries/"), Some(s), "non-canonical path accepted");
    }
    if data.len() >= 9 {
        let index = u64::from_le_bytes(data[..8].try_into().unwrap());
        let width = u32::from(data[8]) + 1; // 1..=256
        let t = TileId { level: u32::from(data.get(9).copied().unwrap_or(0) % 8), index, width };
        let path = t.hash_path();
        let rest = path.splitn(3, '/').nth(2).unwrap();
        assert_eq!(parse_tile_index(rest), Some((index, width)));
    }
}
