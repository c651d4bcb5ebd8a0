//! Tile fetching and hashing on real Static CT tiles: the first 778 entries of
//! Sunlight's Navigli2025h2 log. There is no checkpoint in these vectors, so no
//! signature or consistency check applies; what is checked here: the tile paths and
//! widths `TileTree` asks for, the authentication of full level-0 tiles against the
//! level above, the root of the first 768 leaves, and every data-tile leaf against its
//! level-0 hash.

mod common;

use stele_monitor::{DirSource, TileSource, TileTree};
use stele_tlog::Hash;
use stele_tlog::hash::{leaf_hash, node_hash};
use stele_tlog::merkle::MemoryTree;
use stele_tlog::tile::reduce_perfect;

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = b.split_at(n);
    *b = tail;
    head
}

fn be(b: &[u8]) -> usize {
    b.iter().fold(0, |acc, &x| acc << 8 | usize::from(x))
}

/// Splits a static-ct-api data tile into the RFC 6962 `MerkleTreeLeaf` of each entry:
/// `0x00 (v1) ‖ 0x00 (timestamped_entry) ‖ TimestampedEntry`.
fn static_ct_leaves(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let start = data;
        take(&mut data, 8); // timestamp
        let entry_type = be(take(&mut data, 2));
        match entry_type {
            0 => {
                let n = be(take(&mut data, 3));
                take(&mut data, n); // certificate
            }
            1 => {
                take(&mut data, 32); // issuer_key_hash
                let n = be(take(&mut data, 3));
                take(&mut data, n); // tbs_certificate
            }
            t => panic!("unknown entry type {t}"),
        }
        let n = be(take(&mut data, 2));
        take(&mut data, n); // extensions
        let timestamped_entry = &start[..start.len() - data.len()];
        let mut leaf = vec![0u8, 0u8];
        leaf.extend_from_slice(timestamped_entry);
        out.push(leaf);
        if entry_type == 1 {
            let n = be(take(&mut data, 3));
            take(&mut data, n); // pre_certificate
        }
        let n = be(take(&mut data, 2));
        take(&mut data, n); // chain fingerprints
    }
    out
}

#[test]
fn navigli_tiles_hash_and_authenticate() {
    let Some(v) = common::vectors() else { return };
    let dir = v.join("sunlight/testdata/navigli2025h2");
    let src = DirSource::new(&dir);
    let get = |p: &str| src.get(p).unwrap().unwrap_or_else(|| panic!("{p} missing"));

    // Every data-tile leaf hashes to its level-0 tile hash.
    let mut tree = MemoryTree::new();
    for (tile, data) in [("000", "000"), ("001", "001"), ("002", "002"), ("003.p/10", "003.p/10")] {
        let level0 = hashes(&get(&format!("tile/0/{tile}")));
        let leaves = static_ct_leaves(&get(&format!("tile/data/{data}")));
        assert_eq!(leaves.len(), level0.len(), "data tile {data}");
        for (i, (leaf, h)) in leaves.iter().zip(&level0).enumerate() {
            assert_eq!(leaf_hash(leaf), *h, "entry {i} of data tile {data}");
            tree.push(*h);
        }
    }
    assert_eq!(tree.size(), 778);
    // The full tile 003 extends the partial 003.p/10.
    assert_eq!(hashes(&get("tile/0/003"))[..10], hashes(&get("tile/0/003.p/10"))[..]);

    // Root of the first 768 leaves (3 full tiles) from tiles, against the leaves.
    let t: Vec<Hash> =
        ["000", "001", "002"].iter().map(|n| reduce_perfect(&hashes(&get(&format!("tile/0/{n}"))))).collect();
    let root768 = node_hash(&node_hash(&t[0], &t[1]), &t[2]);
    assert_eq!(root768, stele_tlog::merkle::root_hash(&tree, 768).unwrap());

    // There is no level-1 tile in the vectors: publish the one the log would serve for
    // size 778 (3 hashes) in a copy, then read the tree through `TileTree`, which must
    // authenticate each full level-0 tile against it and reproduce the root.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("log");
    common::copy_dir(&dir, &copy);
    std::fs::create_dir_all(copy.join("tile/1/000.p")).unwrap();
    let level1: Vec<u8> = t.iter().flat_map(|h| h.0).collect();
    std::fs::write(copy.join("tile/1/000.p/3"), &level1).unwrap();
    let copy_src = DirSource::new(&copy);
    let tiles = TileTree::new(&copy_src, 778);
    assert_eq!(tiles.root().unwrap(), stele_tlog::merkle::root_hash(&tree, 778).unwrap());
    for i in 0..3 {
        let (id, h) = tiles.tile(0, i).unwrap();
        assert!(id.is_full());
        assert_eq!(h.len(), 256);
    }
    // A level-1 hash that disagrees with a full level-0 tile is caught when that tile is read.
    let mut bad = level1.clone();
    bad[32] ^= 1;
    std::fs::write(copy.join("tile/1/000.p/3"), &bad).unwrap();
    let tiles = TileTree::new(&copy_src, 778);
    let err = tiles.tile(0, 1).unwrap_err();
    assert!(err.is_detection() && err.to_string().contains("tile/0/001"), "{err}");
}
