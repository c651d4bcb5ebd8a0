//! Hash files: `hashes/level-KK.dat` holds, after its header, the 32-byte hashes of
//! tree level `8·K`, nodes `0, 1, 2, …` — exactly the concatenated C2SP tlog-tiles of
//! tile level `K`, so tile `(K, N)` is bytes `[N·8192, N·8192 + W·32)` after the header.
//! Only complete nodes are stored; a tree of `n` leaves has `⌊n / 256^K⌋` hashes at
//! tile level `K`. Any node is read from the nearest stored level below it with at
//! most 128 stored hashes, so proofs cost O(log n) reads.

use std::sync::{Arc, RwLock};

use stele_tlog::hash::{HASH_LEN, Hash};
use stele_tlog::merkle::HashReader;
use stele_tlog::tile::{TILE_HEIGHT, TILE_WIDTH, reduce_perfect};

use crate::backend::{Backend, StorageFile};
use crate::error::{Result, StoreError};
use crate::header::{HEADER_LEN, Header, Kind};
use crate::layout;

/// The tile-level hash files of one log, opened lazily as the tree grows.
pub struct HashLevels {
    backend: Arc<dyn Backend>,
    files: RwLock<Vec<Arc<dyn StorageFile>>>,
    writable: bool,
}

/// Number of stored hashes at tile level `k` for a tree of `size` leaves.
pub fn stored_count(size: u64, k: u32) -> u64 {
    let shift = TILE_HEIGHT * k;
    if shift >= 64 { 0 } else { size >> shift }
}

impl HashLevels {
    /// Opens the existing level files (level 0 must exist).
    pub fn open(backend: Arc<dyn Backend>, writable: bool) -> Result<HashLevels> {
        let mut files = Vec::new();
        for k in 0.. {
            let name = layout::hash_level(k);
            if !backend.exists(&name) {
                break;
            }
            let f = backend.open(&name, false).map_err(StoreError::io("opening", &name))?;
            // Upper levels are derived from level 0. One created just before a crash may
            // lack its header; it is recreated empty and refilled by recovery.
            if k > 0 && f.len().map_err(StoreError::io("reading", &name))? < HEADER_LEN {
                if !writable {
                    break;
                }
                f.set_len(0).map_err(StoreError::io("truncating", &name))?;
                Header::new(Kind::Hashes, k, 0, 0).write(&f, &name)?;
                f.sync().map_err(StoreError::io("syncing", &name))?;
            }
            let h = Header::read(&f, &name, Kind::Hashes)?;
            if h.a != k {
                return Err(StoreError::Corrupt(format!("{name}: header says tile level {}", h.a)));
            }
            files.push(f);
        }
        if files.is_empty() {
            return Err(StoreError::Corrupt(format!("{} is missing", layout::hash_level(0))));
        }
        Ok(HashLevels { backend, files: RwLock::new(files), writable })
    }

    /// Creates level 0 in a new data directory.
    pub fn create(backend: &Arc<dyn Backend>) -> Result<()> {
        let name = layout::hash_level(0);
        let f = backend.open(&name, true).map_err(StoreError::io("creating", &name))?;
        Header::new(Kind::Hashes, 0, 0, 0).write(&f, &name)?;
        f.sync().map_err(StoreError::io("syncing", &name))
    }

    /// The file of tile level `k`, creating it when writable and missing.
    pub fn file(&self, k: u32) -> Result<Arc<dyn StorageFile>> {
        if let Some(f) = self.files.read().unwrap_or_else(|p| p.into_inner()).get(k as usize) {
            return Ok(f.clone());
        }
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        while files.len() <= k as usize {
            let level = files.len() as u32;
            let name = layout::hash_level(level);
            if !self.writable {
                return Err(StoreError::Corrupt(format!("{name} is missing")));
            }
            let f = self.backend.open(&name, true).map_err(StoreError::io("creating", &name))?;
            Header::new(Kind::Hashes, level, 0, 0).write(&f, &name)?;
            f.sync().map_err(StoreError::io("syncing", &name))?;
            files.push(f);
        }
        Ok(files[k as usize].clone())
    }

    /// Number of level files present.
    pub fn levels(&self) -> u32 {
        self.files.read().unwrap_or_else(|p| p.into_inner()).len() as u32
    }

    /// Reads `count` consecutive stored hashes of tile level `k` from node `start`.
    pub fn read_range(&self, k: u32, start: u64, count: u64) -> Result<Vec<Hash>> {
        let name = layout::hash_level(k);
        let f = self.file(k)?;
        let mut buf = vec![0u8; (count as usize) * HASH_LEN];
        f.read_at(HEADER_LEN + start * HASH_LEN as u64, &mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt(format!("{name}: hashes {start}..{} missing", start + count))
            } else {
                StoreError::Io { op: "reading", file: name.clone(), source: e }
            }
        })?;
        Ok(buf.chunks_exact(HASH_LEN).map(|c| Hash(c.try_into().expect("32"))).collect())
    }

    /// Raw bytes of tile `(k, index)` of `width` hashes (a C2SP hash tile).
    pub fn read_tile(&self, k: u32, index: u64, width: u32) -> Result<Vec<u8>> {
        let name = layout::hash_level(k);
        let f = self.file(k)?;
        let mut buf = vec![0u8; width as usize * HASH_LEN];
        f.read_at(HEADER_LEN + index * 256 * HASH_LEN as u64, &mut buf).map_err(StoreError::io("reading", &name))?;
        Ok(buf)
    }

    /// Appends raw hash bytes at node position `at` of tile level `k`.
    pub fn write_at(&self, k: u32, at: u64, bytes: &[u8]) -> Result<()> {
        let name = layout::hash_level(k);
        self.file(k)?.write_at(HEADER_LEN + at * HASH_LEN as u64, bytes).map_err(StoreError::io("writing", &name))
    }

    /// Truncates every level to the hashes of a tree of `size` leaves.
    pub fn truncate_to(&self, size: u64) -> Result<()> {
        for k in 0..self.levels() {
            let name = layout::hash_level(k);
            let f = self.file(k)?;
            let want = HEADER_LEN + stored_count(size, k) * HASH_LEN as u64;
            if f.len().map_err(StoreError::io("reading", &name))? > want {
                f.set_len(want).map_err(StoreError::io("truncating", &name))?;
            }
        }
        Ok(())
    }

    /// Stored hash count of level `k` according to its file length.
    pub fn len_of(&self, k: u32) -> Result<u64> {
        let name = layout::hash_level(k);
        let len = self.file(k)?.len().map_err(StoreError::io("reading", &name))?;
        Ok(len.saturating_sub(HEADER_LEN) / HASH_LEN as u64)
    }

    /// Syncs the level files in `levels`.
    pub fn sync(&self, levels: impl IntoIterator<Item = u32>) -> Result<()> {
        for k in levels {
            let name = layout::hash_level(k);
            self.file(k)?.sync().map_err(StoreError::io("syncing", &name))?;
        }
        Ok(())
    }
}

impl HashReader for HashLevels {
    type Error = StoreError;

    fn node_hash(&self, level: u32, index: u64) -> Result<Hash> {
        let k = level / TILE_HEIGHT;
        let r = level % TILE_HEIGHT;
        // A reader beside a running writer may see a level-0 hash before the writer has
        // appended the upper-level node it completes: compute such nodes from below.
        if k > 0 && (k >= self.levels() || self.len_of(k)? < (index << r) + (1 << r)) {
            let below = level - TILE_HEIGHT;
            let hashes: Vec<Hash> =
                (0..TILE_WIDTH).map(|j| self.node_hash(below, (index << TILE_HEIGHT) + j)).collect::<Result<_>>()?;
            return Ok(reduce_perfect(&hashes));
        }
        if r == 0 {
            return Ok(self.read_range(k, index, 1)?[0]);
        }
        let hashes = self.read_range(k, index << r, 1 << r)?;
        Ok(reduce_perfect(&hashes))
    }
}
