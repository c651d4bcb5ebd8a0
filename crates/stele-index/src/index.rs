//! The index files, building blocks as entries arrive, catching up from the log, and
//! running queries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_formats::{FieldPointers, Normalized, Normalizer};
use stele_store::backend::{Backend, FileBackend, StorageFile};
use stele_store::header::{HEADER_LEN, Header, Kind};
use stele_store::{LogReader, StoreError};

use crate::block::{self, BLOCK_ENTRIES, DIR_RECORD_LEN, DirRecord, Row};
use crate::query::{Hit, Query};

const DIR: &str = "index/dir.dat";
const BLOCKS: &str = "index/blocks.dat";
const META: &str = "index/meta.json";

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An index file could not be read or written.
    #[error("query index {file}: {source}")]
    Io {
        /// File name.
        file: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Entries were added out of order (a bug in the caller).
    #[error("index expected entry {expected}, got {got}")]
    OutOfOrder {
        /// Next expected index.
        expected: u64,
        /// Index given.
        got: u64,
    },
}

fn io(file: &'static str) -> impl FnOnce(std::io::Error) -> IndexError {
    move |source| IndexError::Io { file, source }
}

/// The query index of one data directory.
pub struct Index {
    reader: LogReader,
    normalizer: Normalizer,
    dir_file: Option<Arc<dyn StorageFile>>,
    blocks_file: Arc<dyn StorageFile>,
    dir: Arc<Vec<DirRecord>>,
    blocks_len: u64,
    pending_first: u64,
    pending: Vec<Row>,
}

/// A point-in-time view for queries that runs without holding the index.
#[derive(Clone)]
pub struct Snapshot {
    reader: LogReader,
    normalizer: Normalizer,
    blocks_file: Arc<dyn StorageFile>,
    dir: Arc<Vec<DirRecord>>,
    pending_first: u64,
    pending: Arc<Vec<Row>>,
}

/// Version of the block layout and of the normalization it was built with: an index
/// written under another version is rebuilt from the log. 2: seven string fields;
/// 3: a stream bitmap in each directory record.
const INDEX_VERSION: u32 = 3;

/// What the index was built from: its layout version, the normalization version of
/// `stele-formats`, and the field pointers. Any change rebuilds the index.
fn fingerprint(pointers: &FieldPointers) -> String {
    let json = serde_json::to_vec(pointers).expect("pointers serialize");
    format!("{INDEX_VERSION}.{}.{:08x}", stele_formats::NORMALIZATION_VERSION, crc32c::crc32c(&json))
}

impl Index {
    /// Opens the index of the data directory `data_dir` for the log behind `reader`.
    /// Damaged or stale parts (a different field configuration, records past a damaged
    /// one) are dropped; when `writable`, the files are repaired and the caller should
    /// [`Index::catch_up`]. Read-only opens never change files.
    pub fn open(
        data_dir: &Path,
        reader: LogReader,
        pointers: &FieldPointers,
        writable: bool,
    ) -> Result<Index, IndexError> {
        let backend: Arc<dyn Backend> =
            if writable { Arc::new(FileBackend::new(data_dir)) } else { Arc::new(FileBackend::read_only(data_dir)) };
        let meta_path: PathBuf = data_dir.join(META);
        let fp = fingerprint(pointers);
        let stale = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["fields"].as_str().map(|f| f != fp))
            .unwrap_or(true);
        let normalizer = Normalizer::new(pointers);
        if !writable && (stale || !backend.exists(DIR) || !backend.exists(BLOCKS)) {
            return Ok(Index::log_only(reader, normalizer));
        }
        let dir_file = backend.open(DIR, writable).map_err(io(DIR))?;
        let blocks_file = backend.open(BLOCKS, writable).map_err(io(BLOCKS))?;
        let mut fresh = stale;
        for (f, name, kind) in [(&dir_file, DIR, Kind::IndexDirectory), (&blocks_file, BLOCKS, Kind::IndexBlocks)] {
            if Header::read(f, name, kind).is_err() {
                fresh = true;
            }
        }
        if fresh {
            if !writable {
                return Ok(Index::log_only(reader, normalizer));
            }
            for (f, name, kind) in [(&dir_file, DIR, Kind::IndexDirectory), (&blocks_file, BLOCKS, Kind::IndexBlocks)] {
                f.set_len(0).map_err(io(name))?;
                Header::new(kind, 0, 0, 0).write(f, name).map_err(IndexError::Store)?;
            }
            std::fs::write(&meta_path, serde_json::json!({"version": INDEX_VERSION, "fields": fp}).to_string())
                .map_err(io(META))?;
        }
        // Directory records: keep the valid, contiguous prefix whose blocks exist.
        let dir_len = dir_file.len().map_err(io(DIR))?;
        let blocks_len_on_disk = blocks_file.len().map_err(io(BLOCKS))?;
        let n = dir_len.saturating_sub(HEADER_LEN) / DIR_RECORD_LEN as u64;
        let mut buf = vec![0u8; n as usize * DIR_RECORD_LEN];
        dir_file.read_at(HEADER_LEN, &mut buf).map_err(io(DIR))?;
        let tree_size = reader.tree_size();
        let mut dir = Vec::with_capacity(n as usize);
        let (mut next, mut end) = (0u64, HEADER_LEN);
        for rec in buf.chunks_exact(DIR_RECORD_LEN) {
            match DirRecord::decode(rec) {
                Some(r)
                    if r.first == next
                        && r.offset == end
                        && r.offset + u64::from(r.len) <= blocks_len_on_disk
                        && r.first + u64::from(r.count) <= tree_size =>
                {
                    next = r.first + u64::from(r.count);
                    end = r.offset + u64::from(r.len);
                    dir.push(r);
                }
                _ => break,
            }
        }
        if writable {
            dir_file.set_len(HEADER_LEN + (dir.len() * DIR_RECORD_LEN) as u64).map_err(io(DIR))?;
            blocks_file.set_len(end).map_err(io(BLOCKS))?;
        }
        Ok(Index {
            reader,
            normalizer,
            dir_file: writable.then_some(dir_file),
            blocks_file,
            dir: Arc::new(dir),
            blocks_len: end,
            pending_first: next,
            pending: Vec::with_capacity(BLOCK_ENTRIES),
        })
    }

    /// An index with nothing usable on disk (read-only open of a missing, stale or
    /// damaged index): every query reads the log (correct, only slower).
    fn log_only(reader: LogReader, normalizer: Normalizer) -> Index {
        Index {
            reader,
            normalizer,
            dir_file: None,
            blocks_file: Arc::new(EmptyFile),
            dir: Arc::new(vec![]),
            blocks_len: 0,
            pending_first: 0,
            pending: vec![],
        }
    }

    /// Removes the index files of `data_dir` (the next writable open rebuilds them).
    pub fn remove(data_dir: &Path) -> Result<(), IndexError> {
        for name in [DIR, BLOCKS, META] {
            match std::fs::remove_file(data_dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IndexError::Io { file: name, source: e }),
            }
        }
        Ok(())
    }

    /// Entries covered by the index (blocks and pending rows).
    pub fn indexed_size(&self) -> u64 {
        self.pending_first + self.pending.len() as u64
    }

    /// Entries covered by blocks on disk.
    pub fn flushed_size(&self) -> u64 {
        self.pending_first
    }

    /// Adds entry `index` with its fields. Entries must come in order; a gap (stele's
    /// own records appended in the same commit) is filled from the log.
    pub fn add(&mut self, index: u64, received_ns: u64, stream: u32, fields: Normalized) -> Result<(), IndexError> {
        let next = self.indexed_size();
        if index < next {
            return Err(IndexError::OutOfOrder { expected: next, got: index });
        }
        if index > next {
            self.catch_up_to(index)?;
        }
        self.push(Row { received_ns, stream, fields })
    }

    fn push(&mut self, row: Row) -> Result<(), IndexError> {
        self.pending.push(row);
        if self.pending.len() >= BLOCK_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    /// Indexes every entry of the log not yet indexed, reading and normalizing payloads.
    /// Returns how many entries were added.
    pub fn catch_up(&mut self) -> Result<u64, IndexError> {
        let before = self.indexed_size();
        self.catch_up_to(self.reader.tree_size())?;
        Ok(self.indexed_size() - before)
    }

    fn catch_up_to(&mut self, end: u64) -> Result<(), IndexError> {
        while self.indexed_size() < end {
            let i = self.indexed_size();
            let row = row_from_log(&self.reader, &self.normalizer, i)?;
            self.push(row)?;
        }
        Ok(())
    }

    /// Writes pending rows as a block (also a short one). Index files are derived data
    /// and are not synced: after a crash, damaged records are dropped and rebuilt.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(dir_file) = &self.dir_file else {
            return Ok(());
        };
        let (bytes, mut rec) = block::encode(self.pending_first, &self.pending);
        rec.offset = self.blocks_len;
        self.blocks_file.write_at(self.blocks_len, &bytes).map_err(io(BLOCKS))?;
        dir_file.write_at(HEADER_LEN + (self.dir.len() * DIR_RECORD_LEN) as u64, &rec.encode()).map_err(io(DIR))?;
        self.blocks_len += bytes.len() as u64;
        self.pending_first += self.pending.len() as u64;
        self.pending.clear();
        Arc::make_mut(&mut self.dir).push(rec);
        Ok(())
    }

    /// A view for running queries without holding `self`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            reader: self.reader.clone(),
            normalizer: self.normalizer.clone(),
            blocks_file: self.blocks_file.clone(),
            dir: self.dir.clone(),
            pending_first: self.pending_first,
            pending: Arc::new(self.pending.clone()),
        }
    }

    /// Runs `query`; see [`Snapshot::query`].
    pub fn query(&self, query: &Query, out: impl FnMut(Hit) -> bool) -> Result<(), IndexError> {
        self.snapshot().query(query, out)
    }
}

fn row_from_log(reader: &LogReader, normalizer: &Normalizer, i: u64) -> Result<Row, IndexError> {
    let e = match reader.entry(i) {
        Ok(e) => e,
        // Payload removed by retention: the entry stays, with no fields to match.
        Err(StoreError::Deleted { .. }) => {
            let leaf = reader.leaf(i)?;
            return Ok(Row { received_ns: leaf.received_ns, stream: leaf.stream_id, fields: Normalized::default() });
        }
        Err(e) => return Err(e.into()),
    };
    // A sealed entry is normalized from its envelope's body: fields read from sealed
    // values hold their blind tokens, never the values.
    let fields = normalizer.stored_fields(e.leaf.payload_format, &e.payload);
    Ok(Row { received_ns: e.leaf.received_ns, stream: e.leaf.stream_id, fields })
}

/// How many entries [`Snapshot::query_while`] looks at between two calls of its
/// `go_on`: a clock read per 256 decoded rows costs nothing next to decoding them,
/// and 256 rows take well under a millisecond.
pub const GO_ON_EVERY_ROWS: u64 = 256;

impl Snapshot {
    /// Calls `out` with each entry matching `query`, oldest first, until it returns
    /// `false` or `query.limit` hits were given. Blocks whose time bounds do not overlap
    /// the query are skipped; entries past the index are read from the log. A damaged
    /// block is read from the log instead.
    pub fn query(&self, query: &Query, out: impl FnMut(Hit) -> bool) -> Result<(), IndexError> {
        self.query_from(query, 0, out)
    }

    /// The indexes of every entry of `stream` (an exact name) from index `from` on,
    /// oldest first: how stele reads its own record streams (`_stele/...`). Callers
    /// re-read each entry from the log; the index is not trusted.
    ///
    /// # Errors
    /// As [`Snapshot::query`].
    pub fn stream_indexes(&self, stream: &str, from: u64) -> Result<Vec<u64>, IndexError> {
        let query = Query { stream: Some(stream.to_string()), ..Query::default() };
        let mut out = Vec::new();
        self.query_from(&query, from, |h| {
            out.push(h.index);
            true
        })?;
        Ok(out)
    }

    /// As [`Snapshot::query`], for entries with index `from` and later only: blocks
    /// wholly before `from` are not read, so a caller that remembers how far it has
    /// read (e.g. through stele's own record streams) only pays for what is new.
    ///
    /// # Errors
    /// As [`Snapshot::query`].
    pub fn query_from(&self, query: &Query, from: u64, out: impl FnMut(Hit) -> bool) -> Result<(), IndexError> {
        self.query_while(query, from, || true, out)
    }

    /// As [`Snapshot::query_from`], also calling `go_on` before each block and every
    /// [`GO_ON_EVERY_ROWS`] entries looked at, matching or not; once it returns `false`
    /// the query stops (`Ok`). This bounds the work of a query that matches few
    /// entries, where `out` alone is rarely called: e.g. a deadline
    /// (`|| Instant::now() < deadline`).
    ///
    /// # Errors
    /// As [`Snapshot::query`].
    pub fn query_while(
        &self,
        query: &Query,
        from: u64,
        go_on: impl FnMut() -> bool,
        mut out: impl FnMut(Hit) -> bool,
    ) -> Result<(), IndexError> {
        let go_on = std::cell::RefCell::new(go_on);
        let streams = self.reader.streams();
        let limit = query.limit.unwrap_or(u64::MAX);
        let mut given = 0u64;
        let mut looked = 0u64;
        let mut emit = |index: u64, row: &Row, out: &mut dyn FnMut(Hit) -> bool| -> bool {
            looked += 1;
            if looked.is_multiple_of(GO_ON_EVERY_ROWS) && !(go_on.borrow_mut())() {
                return false;
            }
            if index < from {
                return true;
            }
            let stream = streams.name(row.stream).unwrap_or("");
            if !query.row_matches(row, stream) {
                return true;
            }
            given += 1;
            out(Hit { index, received_ns: row.received_ns, stream: stream.to_string(), fields: row.fields.clone() })
                && given < limit
        };
        if limit == 0 {
            return Ok(());
        }
        let tree_size = self.reader.tree_size();
        // One exact stream: blocks without its bit hold none of its entries; a stream
        // that is not registered has no entries at all.
        let stream_bit = match query.stream.as_deref().filter(|s| !s.ends_with('*')) {
            Some(name) => match streams.id(name) {
                Some(id) => Some(block::stream_bit(id)),
                None => return Ok(()),
            },
            None => None,
        };
        for rec in self.dir.iter() {
            if !(go_on.borrow_mut())() {
                return Ok(());
            }
            if stream_bit.is_some_and(|bit| rec.streams & bit == 0) || rec.first + u64::from(rec.count) <= from {
                continue;
            }
            let (lo, hi) = if query.by_received {
                (rec.min_received as i64, rec.max_received as i64)
            } else {
                (rec.min_time, rec.max_time)
            };
            if !query.overlaps(lo, hi) || self.bloom_excludes(rec, query) {
                continue;
            }
            let rows = self.read_block(rec);
            match rows {
                Some(rows) => {
                    for (j, row) in rows.iter().enumerate() {
                        if !emit(rec.first + j as u64, row, &mut out) {
                            return Ok(());
                        }
                    }
                }
                None => {
                    for i in rec.first..rec.first + u64::from(rec.count) {
                        let row = row_from_log(&self.reader, &self.normalizer, i)?;
                        if !emit(i, &row, &mut out) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        for (j, row) in self.pending.iter().enumerate() {
            if !emit(self.pending_first + j as u64, row, &mut out) {
                return Ok(());
            }
        }
        for i in (self.pending_first + self.pending.len() as u64).max(from)..tree_size {
            let row = row_from_log(&self.reader, &self.normalizer, i)?;
            if !emit(i, &row, &mut out) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether the block's Bloom filter shows it holds no entry with an exact-value
    /// filter of the query. A damaged filter excludes nothing.
    fn bloom_excludes(&self, rec: &DirRecord, query: &Query) -> bool {
        let exact: Vec<(u8, &str)> = block::FIELD_TAGS
            .iter()
            .zip(query.string_filters())
            .filter_map(|(t, f)| f.as_deref().filter(|v| !v.ends_with('*')).map(|v| (*t, v)))
            .collect();
        if exact.is_empty() {
            return false;
        }
        let mut head = [0u8; 8];
        if self.blocks_file.read_at(rec.offset, &mut head).is_err() {
            return false;
        }
        let len = u32::from_be_bytes(head[..4].try_into().expect("4")) as usize;
        if len > rec.len as usize {
            return false;
        }
        let mut bytes = vec![0u8; 8 + len];
        if self.blocks_file.read_at(rec.offset, &mut bytes).is_err() {
            return false;
        }
        match block::split(&bytes) {
            Some((Some(bloom), _)) => exact.iter().any(|(t, v)| !bloom.may_contain(*t, v)),
            _ => false,
        }
    }

    fn read_block(&self, rec: &DirRecord) -> Option<Vec<Row>> {
        let mut bytes = vec![0u8; rec.len as usize];
        self.blocks_file.read_at(rec.offset, &mut bytes).ok()?;
        if crc32c::crc32c(&bytes) != rec.block_crc {
            return None;
        }
        let rows = block::decode(&bytes, rec.count)?;
        (rows.len() == rec.count as usize).then_some(rows)
    }
}

/// Stands in for missing index files in a read-only open.
struct EmptyFile;

impl StorageFile for EmptyFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn read_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
        Err(std::io::ErrorKind::UnexpectedEof.into())
    }
    fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}
