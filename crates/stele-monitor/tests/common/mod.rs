//! Helpers for the monitor tests: locating ../shared and publishing small logs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{HashReader, MemoryTree, root_hash};
use stele_tlog::note::NoteSigner;
use stele_tlog::tile::{TILE_HEIGHT, TileId, tiles_at_level};

/// The Tessera test log's verifier key (from its testdata/build_log.sh).
pub(crate) const TESSERA_VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

/// `../shared/data/vectors`, or `None` (with a message) when absent.
/// With `STELE_REQUIRE_PEERS=1`, absence is a failure.
pub(crate) fn vectors() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/vectors");
    if dir.join("tessera/testdata/log/checkpoint").is_file() {
        return Some(dir);
    }
    if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", dir.display());
    }
    eprintln!("skipping: ../shared/data/vectors not found at {}", dir.display());
    None
}

/// Copies a directory tree (files made writable).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::write(&dst, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

/// The signer of the test logs built here.
pub(crate) fn test_signer() -> NoteSigner {
    NoteSigner::from_seed("monitor.test/log", &[42; 32]).unwrap()
}

/// Publishes a tlog-tiles log of `entries` under `dir` (hash tiles, entry bundles and
/// a signed checkpoint), replacing what was there. Returns the checkpoint note.
pub(crate) fn publish(dir: &Path, signer: &NoteSigner, entries: &[Vec<u8>]) -> String {
    let _ = std::fs::remove_dir_all(dir);
    let mut tree = MemoryTree::new();
    for e in entries {
        tree.push(leaf_hash(e));
    }
    let n = tree.size();
    let write = |path: String, bytes: Vec<u8>| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    let mut level = 0u32;
    while TILE_HEIGHT * level < 64 && n >> (TILE_HEIGHT * level) > 0 {
        let (full, partial) = tiles_at_level(n, level);
        let mut ids: Vec<TileId> = (0..full).map(|index| TileId { level, index, width: 256 }).collect();
        if partial > 0 {
            ids.push(TileId { level, index: full, width: partial });
        }
        for id in ids {
            let mut bytes = Vec::new();
            for i in 0..u64::from(id.width) {
                bytes.extend_from_slice(&tree.node_hash(TILE_HEIGHT * level, id.index * 256 + i).unwrap().0);
            }
            write(id.hash_path(), bytes);
            if level == 0 {
                let mut bundle = Vec::new();
                for i in 0..u64::from(id.width) {
                    let e = &entries[(id.index * 256 + i) as usize];
                    bundle.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
                    bundle.extend_from_slice(e);
                }
                write(id.entries_path(), bundle);
            }
        }
        level += 1;
    }
    let cp = Checkpoint {
        origin: signer.name().to_string(),
        tree_size: n,
        root_hash: root_hash(&tree, n).unwrap(),
        extensions: vec![],
    };
    let note = cp.sign(signer).unwrap();
    write("checkpoint".into(), note.clone().into_bytes());
    note
}

/// `count` distinct entries starting at `start`.
pub(crate) fn entries(start: usize, count: usize) -> Vec<Vec<u8>> {
    (start..start + count).map(|i| format!("entry {i}").into_bytes()).collect()
}
