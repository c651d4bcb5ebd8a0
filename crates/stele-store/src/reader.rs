//! Reading a log: entries, roots, proofs and checkpoints. A reader either shares a
//! writer's files (and sees each commit once durable) or opens a data directory
//! read-only beside a running writer in another process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use stele_tlog::hash::{Hash, leaf_hash};
use stele_tlog::leaf::LEAF_LEN;
use stele_tlog::leaf::Leaf;
use stele_tlog::merkle::{self, HashReader as _, ProofError};
use stele_tlog::note::NoteVerifier;
use stele_tlog::tile::{TILE_HEIGHT, TILE_WIDTH, tiles_at_level};

use crate::backend::{Backend, FileBackend};
use crate::checkpoints::{self, StoredCheckpoint};
use crate::error::{Result, StoreError};
use crate::files::LogFiles;
use crate::log::{read_meta, read_verifier};
use crate::recover;
use crate::streams::Streams;

/// One entry as read back: its leaf and payload (checked against the leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index in the log.
    pub index: u64,
    /// The leaf record.
    pub leaf: Leaf,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: Hash,
    /// Stream name.
    pub stream: String,
    /// The payload, byte for byte as appended.
    pub payload: Vec<u8>,
}

struct Inner {
    files: Arc<LogFiles>,
    origin: String,
    /// Replaced when a running writer rotates the log's key ([`crate::keys::rotate_log`]).
    verifier: RwLock<NoteVerifier>,
    size: AtomicU64,
    streams: RwLock<Streams>,
    newest: RwLock<Option<StoredCheckpoint>>,
}

/// A cheap-to-clone handle for reading a log.
#[derive(Clone)]
pub struct LogReader {
    inner: Arc<Inner>,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl LogReader {
    /// Opens the data directory at `dir` read-only (no lock; a writer may be running).
    /// The size is the intact, durable prefix found by the same checks recovery uses.
    pub fn open(dir: &Path) -> Result<LogReader> {
        let meta = read_meta(dir)?;
        let verifier = read_verifier(dir)?;
        if verifier.name() != meta.origin {
            return Err(StoreError::Corrupt(format!(
                "the key name {:?} in keys/verifier.vkey differs from the origin {:?} in meta.json",
                verifier.name(),
                meta.origin
            )));
        }
        LogReader::open_backend(Arc::new(FileBackend::read_only(dir)), &meta.origin, verifier)
    }

    /// Opens a log read-only over any backend.
    pub fn open_backend(backend: Arc<dyn Backend>, origin: &str, verifier: NoteVerifier) -> Result<LogReader> {
        let files = Arc::new(LogFiles::open(backend, false)?);
        let rec = recover::recover(&files)?;
        Ok(LogReader::from_parts(files, origin, verifier, rec.size, rec.streams, rec.newest_checkpoint))
    }

    pub(crate) fn from_parts(
        files: Arc<LogFiles>,
        origin: &str,
        verifier: NoteVerifier,
        size: u64,
        streams: Streams,
        newest: Option<StoredCheckpoint>,
    ) -> LogReader {
        LogReader {
            inner: Arc::new(Inner {
                files,
                origin: origin.to_string(),
                verifier: RwLock::new(verifier),
                size: AtomicU64::new(size),
                streams: RwLock::new(streams),
                newest: RwLock::new(newest),
            }),
        }
    }

    pub(crate) fn publish(&self, size: u64, streams: Option<&Streams>) {
        if let Some(s) = streams {
            *self.inner.streams.write().unwrap_or_else(|p| p.into_inner()) = s.clone();
        }
        self.inner.size.store(size, Ordering::Release);
    }

    pub(crate) fn set_verifier(&self, verifier: NoteVerifier) {
        *self.inner.verifier.write().unwrap_or_else(|p| p.into_inner()) = verifier;
    }

    pub(crate) fn publish_checkpoint(&self, cp: StoredCheckpoint) {
        *self.inner.newest.write().unwrap_or_else(|p| p.into_inner()) = Some(cp);
    }

    /// The open files (for verification).
    pub fn files(&self) -> &LogFiles {
        &self.inner.files
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The log's current verifier key (a copy: a key rotation by the writer that
    /// shares this reader's files replaces it).
    pub fn verifier(&self) -> NoteVerifier {
        read_lock(&self.inner.verifier).clone()
    }

    /// Number of durable entries.
    pub fn tree_size(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    /// The stream table.
    pub fn streams(&self) -> Streams {
        read_lock(&self.inner.streams).clone()
    }

    /// Name of stream `id`.
    pub fn stream_name(&self, id: u32) -> Option<String> {
        read_lock(&self.inner.streams).name(id).map(str::to_string)
    }

    /// The newest signed checkpoint.
    pub fn newest_checkpoint(&self) -> Option<StoredCheckpoint> {
        read_lock(&self.inner.newest).clone()
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let valid = match self.newest_checkpoint() {
            Some(c) => c.offset + 1,
            None => return Ok(vec![]),
        };
        checkpoints::read_all(&self.inner.files, valid)
    }

    fn check_index(&self, index: u64) -> Result<()> {
        let tree_size = self.tree_size();
        if index >= tree_size {
            return Err(StoreError::NoSuchEntry { index, tree_size });
        }
        Ok(())
    }

    /// Leaf of entry `index`.
    pub fn leaf(&self, index: u64) -> Result<Leaf> {
        self.check_index(index)?;
        self.inner.files.read_leaf(index)
    }

    /// Entry `index` with its payload. The leaf is checked against the stored leaf hash
    /// (the tree's level 0) and the payload against the leaf digest: bytes damaged on
    /// disk or on the way from it are reported as [`StoreError::Corrupt`], never returned.
    pub fn entry(&self, index: u64) -> Result<Entry> {
        self.check_index(index)?;
        let raw = self.inner.files.read_leaf_bytes(index, 1)?;
        let stored = self.inner.files.read_leaf_hashes(index, 1)?;
        if stored.first() != Some(&leaf_hash(&raw)) {
            return Err(StoreError::Corrupt(format!("entry {index}: the leaf does not match its stored leaf hash")));
        }
        let leaf = Leaf::decode(&raw).map_err(|e| StoreError::Corrupt(format!("entry {index}: {e}")))?;
        let payload = self.inner.files.read_payload(index, &leaf)?;
        let stream = self.stream_name(leaf.stream_id).unwrap_or_else(|| format!("#{}", leaf.stream_id));
        Ok(Entry { index, leaf, leaf_hash: leaf_hash(&raw), stream, payload })
    }

    /// Root hash of the tree of `tree_size` leaves.
    pub fn root_hash(&self, tree_size: u64) -> Result<Hash> {
        if tree_size > self.tree_size() {
            return Err(StoreError::InvalidArgument(format!(
                "tree size {tree_size} is beyond the log's {}",
                self.tree_size()
            )));
        }
        merkle::root_hash(&self.inner.files.hashes, tree_size)
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` leaves.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>> {
        if tree_size > self.tree_size() {
            return Err(StoreError::InvalidArgument(format!(
                "tree size {tree_size} is beyond the log's {}",
                self.tree_size()
            )));
        }
        merkle::inclusion_proof(&self.inner.files.hashes, index, tree_size).map_err(proof_err)
    }

    /// RFC 9162 consistency proof between tree sizes `first` and `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>> {
        if second > self.tree_size() {
            return Err(StoreError::InvalidArgument(format!(
                "tree size {second} is beyond the log's {}",
                self.tree_size()
            )));
        }
        merkle::consistency_proof(&self.inner.files.hashes, first, second).map_err(proof_err)
    }
}

/// Whether tile `(level, index)` of `width` exists in the tree of `tree_size` leaves
/// under C2SP tlog-tiles: a full tile once complete, a partial tile only at the
/// current partial width of its level.
pub fn tile_exists(level: u32, index: u64, width: u32, tree_size: u64) -> bool {
    let (full, partial) = tiles_at_level(tree_size, level);
    if u64::from(width) == TILE_WIDTH { index < full } else { width > 0 && index == full && width == partial }
}

impl LogReader {
    fn check_tile_size(&self, tree_size: u64) -> Result<()> {
        if tree_size > self.tree_size() {
            return Err(StoreError::InvalidArgument(format!(
                "tree size {tree_size} is beyond the log's {}",
                self.tree_size()
            )));
        }
        Ok(())
    }

    /// The C2SP tlog-tiles hash tile `(level, index)` of `width` hashes as seen from the
    /// tree of `tree_size` leaves: the bytes stored in level file `level` (hashes of
    /// tree level `8·level`). `Ok(None)` when that tile does not exist at `tree_size`
    /// (see [`tile_exists`]); an error when `tree_size` is beyond the log.
    pub fn tile(&self, level: u32, index: u64, width: u32, tree_size: u64) -> Result<Option<Vec<u8>>> {
        self.check_tile_size(tree_size)?;
        if !tile_exists(level, index, width, tree_size) {
            return Ok(None);
        }
        let hashes = &self.inner.files.hashes;
        let start = index * TILE_WIDTH;
        let end = start + u64::from(width);
        if level < hashes.levels() && hashes.len_of(level)? >= end {
            return hashes.read_tile(level, index, width).map(Some);
        }
        // A reader beside a running writer may see level 0 ahead of the upper levels:
        // compute the missing nodes from the level below.
        let mut out = Vec::with_capacity(width as usize * 32);
        for n in start..end {
            out.extend_from_slice(&hashes.node_hash(level * TILE_HEIGHT, n)?.0);
        }
        Ok(Some(out))
    }

    /// The C2SP tlog-tiles entry bundle `index` of `width` entries as seen from the tree
    /// of `tree_size` leaves: for each entry, a big-endian `u16` length (68) and the
    /// 68-byte leaf record. `Ok(None)` when that bundle does not exist at `tree_size`.
    pub fn entry_bundle(&self, index: u64, width: u32, tree_size: u64) -> Result<Option<Vec<u8>>> {
        self.check_tile_size(tree_size)?;
        if !tile_exists(0, index, width, tree_size) {
            return Ok(None);
        }
        let raw = self.inner.files.read_leaf_bytes(index * TILE_WIDTH, u64::from(width))?;
        let mut out = Vec::with_capacity(width as usize * (2 + LEAF_LEN));
        for leaf in raw.chunks_exact(LEAF_LEN) {
            out.extend_from_slice(&(LEAF_LEN as u16).to_be_bytes());
            out.extend_from_slice(leaf);
        }
        Ok(Some(out))
    }

    /// Index of the first entry below `below` whose leaf hash is `hash`, or `None`.
    ///
    /// This is a linear scan of the stored level-0 hashes (`hashes/level-00.dat`, every
    /// leaf hash in order) in sequential reads of [`FIND_LEAF_HASH_BATCH`] hashes
    /// (2 MiB): O(n) in the entries scanned, about 32 bytes read per entry, so roughly
    /// a second per 30 million entries at ~1 GB/s of sequential reads, and memory
    /// bounded by one batch. There is no index by leaf hash. `below` must not exceed
    /// the tree size.
    pub fn find_leaf_hash(&self, hash: &Hash, below: u64) -> Result<Option<u64>> {
        self.check_tile_size(below)?;
        let mut start = 0u64;
        while start < below {
            let count = (below - start).min(FIND_LEAF_HASH_BATCH);
            let batch = self.inner.files.read_leaf_hashes(start, count)?;
            if let Some(i) = batch.iter().position(|h| h == hash) {
                return Ok(Some(start + i as u64));
            }
            start += count;
        }
        Ok(None)
    }

    /// Leaf hash of entry `index`, recomputed from its stored leaf record.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash> {
        self.check_index(index)?;
        Ok(leaf_hash(&self.inner.files.read_leaf_bytes(index, 1)?))
    }
}

/// Hashes read at a time by [`LogReader::find_leaf_hash`] (64 Ki hashes, 2 MiB).
pub const FIND_LEAF_HASH_BATCH: u64 = 1 << 16;

fn proof_err(e: ProofError<StoreError>) -> StoreError {
    match e {
        ProofError::Read(e) => e,
        other => StoreError::InvalidArgument(other.to_string()),
    }
}
