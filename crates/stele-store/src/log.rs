//! The writer: one per data directory. Appends batches as group commits (every file a
//! commit touched is synced before it returns) and signs checkpoints over durable data.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::{HASH_LEN, Hash, leaf_hash};
use stele_tlog::leaf::{LEAF_LEN, Leaf, SALT_LEN};
use stele_tlog::merkle::Frontier;
use stele_tlog::note::{NoteSigner, NoteVerifier};
use stele_tlog::signer::CheckpointSigner;
use stele_tlog::tile::TILE_HEIGHT;

use rayon::prelude::*;

use crate::backend::{Backend, FileBackend, StorageFile};
use crate::checkpoints::StoredCheckpoint;
use crate::chunk::{self, CHUNK_TARGET_BYTES, Compression};
use crate::error::{Result, StoreError};
use crate::files::{LOCATOR_LEN, Locator, LogFiles, SegmentInfo};
use crate::header::HEADER_LEN;
use crate::layout;
use crate::meta::Meta;
use crate::reader::LogReader;
use crate::records;
use crate::recover::{self, Recovered};
use crate::state::{self, OpenSegmentState, State};
use crate::streams::{self, SYSTEM_STREAM_ID, StreamRecord, Streams};

/// Payload format code of stele's own records (JSON).
pub const FORMAT_STELE_RECORD: u8 = 3;

/// Tunables of a log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Largest payload accepted, bytes (default 8 MiB: Kubernetes `RequestResponse`
    /// audit events carry whole request and response objects and reach several MiB).
    pub max_entry_bytes: usize,
    /// Payload compression (default zstd level 3).
    pub compression: Compression,
    /// Length of a segment's time window, ns (default one day). Retention deletes
    /// whole segments, so this is the granularity of deletion.
    pub segment_window_ns: u64,
    /// A segment is sealed once it reaches this many bytes (default 1 GiB).
    pub segment_max_bytes: u64,
    /// Every signed checkpoint younger than this is kept, ns (default 7 days).
    pub checkpoint_keep_all_ns: u64,
    /// Older checkpoints are thinned to the first of each period of this length, ns
    /// (default one hour), kept for the life of the log.
    pub checkpoint_keep_every_ns: u64,
    /// Where received times come from (default: the system clock).
    pub clock: Clock,
    /// How far the clock may read behind the last received time before a
    /// [`crate::clock::ClockBackwards`] event is recorded, ns (default 1 s: NTP slews
    /// and small steps stay below it).
    pub clock_backwards_tolerance_ns: u64,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            max_entry_bytes: 8 << 20,
            compression: Compression::Zstd(1),
            segment_window_ns: 86_400 * 1_000_000_000,
            segment_max_bytes: 1 << 30,
            checkpoint_keep_all_ns: 7 * 86_400 * 1_000_000_000,
            checkpoint_keep_every_ns: 3_600 * 1_000_000_000,
            clock: Clock::system(),
            clock_backwards_tolerance_ns: 1_000_000_000,
        }
    }
}

/// One entry to append.
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Payload format code (see the leaf layout).
    pub format: u8,
    /// The payload, byte for byte as received.
    pub payload: &'a [u8],
}

/// What an append made durable, per entry in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Index of each input entry.
    pub indexes: Vec<u64>,
    /// Leaf hash of each input entry.
    pub leaf_hashes: Vec<Hash>,
    /// Received time given to the batch, ns since the epoch.
    pub received_ns: u64,
    /// Tree size after the commit.
    pub tree_size: u64,
}

struct OpenSegment {
    segno: u32,
    file: Arc<dyn StorageFile>,
    len: u64,
    window_start_ns: u64,
}

/// The single writer of a data directory.
pub struct Log {
    files: Arc<LogFiles>,
    reader: LogReader,
    options: LogOptions,
    signer: Box<dyn CheckpointSigner>,
    /// Whether `signer` is the data directory's key file (`keys/signing.key`), loaded
    /// by [`Log::open_with`], rather than a signer the caller gave.
    key_file_signer: bool,
    frontier: Frontier,
    streams: Streams,
    streams_len: u64,
    /// Length of `streams.dat` at the last successful commit (what is durable).
    durable_streams_len: u64,
    open_segments: HashMap<u32, OpenSegment>,
    next_segno: u32,
    state: State,
    checkpoints_len: u64,
    newest_checkpoint: Option<StoredCheckpoint>,
    last_received_ns: u64,
    last_thinned_ns: u64,
    clock_watch: crate::clock::ClockWatch,
    poisoned: Option<String>,
    _lock: Option<File>,
}

/// The writer's state, rebuilt from what recovery found.
struct WriterParts {
    frontier: Frontier,
    streams: Streams,
    streams_len: u64,
    open_segments: HashMap<u32, OpenSegment>,
    next_segno: u32,
    state: State,
    checkpoints_len: u64,
    newest_checkpoint: Option<StoredCheckpoint>,
    last_received_ns: u64,
}

impl WriterParts {
    fn from_recovered(files: &Arc<LogFiles>, rec: Recovered) -> Result<WriterParts> {
        let mut open_segments = HashMap::new();
        for s in &rec.open_segments {
            let (file, _) = files.segment(s.segno)?;
            open_segments
                .insert(s.stream, OpenSegment { segno: s.segno, file, len: s.len, window_start_ns: s.window_start_ns });
        }
        let last_received_ns = if rec.size > 0 { files.read_leaf(rec.size - 1)?.received_ns } else { 0 };
        let mut state = rec.state.clone();
        // The anchor's tree size is the newest checkpoint's, never the recovered size:
        // recovery checks that the checkpoint it points at covers it, and entries past
        // that checkpoint are rolled forward from the other files.
        state.tree_size = rec.newest_checkpoint.as_ref().map_or(0, |c| c.tree_size);
        state.streams_len = rec.streams_len;
        state.checkpoints_len = rec.checkpoints_len;
        state.newest_checkpoint_offset = rec.newest_checkpoint.as_ref().map(|c| c.offset);
        state.next_segno = rec.next_segno;
        state.open_segments = rec.open_segments.clone();
        Ok(WriterParts {
            frontier: rec.frontier,
            streams: rec.streams,
            streams_len: rec.streams_len,
            open_segments,
            next_segno: rec.next_segno,
            state,
            checkpoints_len: rec.checkpoints_len,
            newest_checkpoint: rec.newest_checkpoint,
            last_received_ns,
        })
    }
}

pub use crate::clock::Clock;

/// Current time in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Creates a new data directory at `dir` for the log named `origin`, with a fresh
/// Ed25519 key pair (private key file mode 0600). Returns the verifier key.
pub fn init(dir: &Path, origin: &str) -> Result<NoteVerifier> {
    stele_tlog::note::check_key_name(origin).map_err(|e| StoreError::InvalidArgument(format!("origin: {e}")))?;
    if origin.len() > 255 {
        return Err(StoreError::InvalidArgument("origin is longer than 255 bytes".into()));
    }
    std::fs::create_dir_all(dir).map_err(StoreError::io("creating", "data directory"))?;
    if dir.join(layout::META).exists() {
        return Err(StoreError::AlreadyInitialized(dir.display().to_string()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| StoreError::Key(format!("no randomness: {e}")))?;
    let signer = NoteSigner::from_seed(origin, &seed).map_err(|e| StoreError::Key(e.to_string()))?;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(StoreError::io("creating", "keys"))?;
    write_private(&dir.join(layout::SIGNING_KEY), signer.to_private_key_string().as_bytes())?;
    let verifier = signer.verifier();
    std::fs::write(dir.join(layout::VERIFIER_KEY), format!("{}\n", verifier.to_vkey()))
        .map_err(StoreError::io("writing", layout::VERIFIER_KEY))?;
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new(dir));
    init_backend(&backend, origin)?;
    // meta.json last: its presence marks a complete directory.
    let meta = Meta::new(origin, now_ns());
    let tmp = dir.join("meta.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).expect("meta serializes"))
        .map_err(StoreError::io("writing", layout::META))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(StoreError::io("syncing", layout::META))?;
    std::fs::rename(&tmp, dir.join(layout::META)).map_err(StoreError::io("renaming", layout::META))?;
    File::open(dir).and_then(|f| f.sync_all()).map_err(StoreError::io("syncing", "data directory"))?;
    Ok(verifier)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("creating", layout::SIGNING_KEY))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(StoreError::io("writing", layout::SIGNING_KEY))
}

/// Creates the log files (no keys, no meta) in `backend`: for tests on memory backends.
pub fn init_backend(backend: &Arc<dyn Backend>, _origin: &str) -> Result<()> {
    LogFiles::create(backend)?;
    let f = backend.open(layout::STATE, false).map_err(StoreError::io("opening", layout::STATE))?;
    state::write(
        &f,
        &State {
            seq: 0,
            tree_size: 0,
            checkpoints_len: HEADER_LEN,
            newest_checkpoint_offset: None,
            streams_len: HEADER_LEN,
            next_segno: 0,
            open_segments: vec![],
        },
    )
}

/// Reads `meta.json` and the signing key of a data directory.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    let bytes = std::fs::read(dir.join(layout::META)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && dir.join(layout::LEAVES).exists() {
            StoreError::Corrupt(format!("{} is missing from a data directory that holds a log", layout::META))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotADataDir(dir.display().to_string())
        } else {
            StoreError::Io { op: "reading", file: layout::META.into(), source: e }
        }
    })?;
    let meta: Meta =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", layout::META)))?;
    if meta.format_version == 0 {
        return Err(StoreError::Corrupt(format!("{}: format version 0 was never written", layout::META)));
    }
    if meta.format_version > crate::header::FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            file: layout::META.into(),
            found: meta.format_version,
            supported: crate::header::FORMAT_VERSION,
        });
    }
    Ok(meta)
}

/// Reads the verifier key of a data directory.
pub fn read_verifier(dir: &Path) -> Result<NoteVerifier> {
    // The verifier key is part of the data directory: a missing or unreadable one is
    // damage (exit 1), not a usage error.
    let bytes = std::fs::read(dir.join(layout::VERIFIER_KEY)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::Corrupt(format!("{} is missing", layout::VERIFIER_KEY)),
        _ => StoreError::Io { op: "reading", file: layout::VERIFIER_KEY.into(), source: e },
    })?;
    let text =
        String::from_utf8(bytes).map_err(|_| StoreError::Corrupt(format!("{}: not UTF-8", layout::VERIFIER_KEY)))?;
    NoteVerifier::parse(&text).map_err(|e| StoreError::Corrupt(format!("{}: {e}", layout::VERIFIER_KEY)))
}

fn read_signer(dir: &Path) -> Result<NoteSigner> {
    crate::signer_file::load_private_key(&dir.join(layout::SIGNING_KEY))
}

impl Log {
    /// Opens the data directory at `dir` as its writer: takes the lock (failing with
    /// [`StoreError::Locked`] if another process holds it), checks versions and key,
    /// and recovers.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log> {
        Log::open_with(dir, options, None)
    }

    /// [`Log::open`] with checkpoints signed by `signer` (an out-of-process signer, for
    /// example) instead of the key file of the data directory. `None` loads the key file.
    /// The signer's key name must be the log's origin.
    pub fn open_with(dir: &Path, options: LogOptions, signer: Option<Box<dyn CheckpointSigner>>) -> Result<Log> {
        let meta = read_meta(dir)?;
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(layout::LOCK))
            .map_err(StoreError::io("opening", layout::LOCK))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io { op: "locking", file: layout::LOCK.into(), source: e });
            }
        }
        let key_file_signer = signer.is_none();
        let signer = match signer {
            Some(s) => s,
            None => Box::new(read_signer(dir)?),
        };
        if signer.name() != meta.origin {
            return Err(StoreError::Key(format!("key name {:?} differs from origin {:?}", signer.name(), meta.origin)));
        }
        // After a rotation only the newest key may sign (docs/keys.md).
        let current = read_verifier(dir)?;
        if signer.verifier() != current {
            return Err(StoreError::Key(format!(
                "the signing key {} is not the log's current key {} ({})",
                signer.verifier().to_vkey(),
                current.to_vkey(),
                layout::VERIFIER_KEY
            )));
        }
        let backend: Arc<dyn Backend> = Arc::new(FileBackend::new(dir));
        let mut log = Log::open_backend_with(backend, &meta.origin, signer, options)?;
        log._lock = Some(lock);
        log.key_file_signer = key_file_signer;
        Ok(log)
    }

    /// Opens a log over any backend (tests use the memory backend).
    pub fn open_backend(
        backend: Arc<dyn Backend>,
        origin: &str,
        signer: NoteSigner,
        options: LogOptions,
    ) -> Result<Log> {
        Log::open_backend_with(backend, origin, Box::new(signer), options)
    }

    /// [`Log::open_backend`] with any [`CheckpointSigner`].
    pub fn open_backend_with(
        backend: Arc<dyn Backend>,
        origin: &str,
        signer: Box<dyn CheckpointSigner>,
        options: LogOptions,
    ) -> Result<Log> {
        let files = Arc::new(LogFiles::open(backend, true)?);
        let rec: Recovered = recover::recover(&files)?;
        let reader = LogReader::from_parts(
            files.clone(),
            origin,
            signer.verifier(),
            rec.size,
            rec.streams.clone(),
            rec.newest_checkpoint.clone(),
        );
        let parts = WriterParts::from_recovered(&files, rec)?;
        Ok(Log {
            files,
            reader,
            options,
            signer,
            key_file_signer: false,
            frontier: parts.frontier,
            streams: parts.streams,
            streams_len: parts.streams_len,
            durable_streams_len: parts.streams_len,
            open_segments: parts.open_segments,
            next_segno: parts.next_segno,
            state: parts.state,
            checkpoints_len: parts.checkpoints_len,
            newest_checkpoint: parts.newest_checkpoint,
            last_received_ns: parts.last_received_ns,
            last_thinned_ns: 0,
            clock_watch: Default::default(),
            poisoned: None,
            _lock: None,
        })
    }

    /// Makes a poisoned log writable again without trusting anything the failed write
    /// or sync left behind: every append-only file is cut back to what was durable at
    /// the last acknowledged commit and checkpoint (so bytes a failed `fsync` left only
    /// in the page cache are dropped, never read back as if durable), cached chunks are
    /// forgotten, recovery runs over the files again, and the writer's state is rebuilt
    /// from what it finds. Readers keep working throughout; their tree size never
    /// changes, because nothing past it was ever published.
    ///
    /// Returns `Ok(false)` when the log was not poisoned.
    ///
    /// # Errors
    /// The I/O error that still prevents writing (for example, the disk is still full):
    /// the log stays poisoned and the call can be retried. [`StoreError::Corrupt`] if
    /// recovery finds fewer entries than were acknowledged.
    pub fn recover_after_failure(&mut self) -> Result<bool> {
        if self.poisoned.is_none() {
            return Ok(false);
        }
        let acked = self.reader.tree_size();
        let cut = |f: &Arc<dyn StorageFile>, name: &str, len: u64| -> Result<()> {
            if LogFiles::len(f, name)? > len {
                f.set_len(len).map_err(StoreError::io("truncating", name))?;
            }
            f.sync().map_err(StoreError::io("syncing", name))
        };
        cut(&self.files.leaves, layout::LEAVES, HEADER_LEN + acked * LEAF_LEN as u64)?;
        cut(&self.files.locators, layout::LOCATORS, HEADER_LEN + acked * LOCATOR_LEN as u64)?;
        cut(&self.files.checkpoints(), layout::CHECKPOINTS, self.checkpoints_len)?;
        cut(&self.files.streams, layout::STREAMS, self.durable_streams_len)?;
        self.files.hashes.truncate_to(acked)?;
        self.files.hashes.sync(0..self.files.hashes.levels())?;
        self.files.clear_chunk_cache();
        let rec = recover::recover(&self.files)?;
        if rec.size != acked {
            return Err(StoreError::Corrupt(format!(
                "recovery after a failed write found {} entries, but {acked} were acknowledged",
                rec.size
            )));
        }
        self.reader.publish(rec.size, Some(&rec.streams));
        if let Some(cp) = rec.newest_checkpoint.clone() {
            self.reader.publish_checkpoint(cp);
        }
        let parts = WriterParts::from_recovered(&self.files, rec)?;
        self.frontier = parts.frontier;
        self.streams = parts.streams;
        self.streams_len = parts.streams_len;
        self.durable_streams_len = parts.streams_len;
        self.open_segments = parts.open_segments;
        self.next_segno = parts.next_segno;
        self.state = parts.state;
        self.checkpoints_len = parts.checkpoints_len;
        self.newest_checkpoint = parts.newest_checkpoint;
        self.last_received_ns = self.last_received_ns.max(parts.last_received_ns);
        self.poisoned = None;
        Ok(true)
    }

    /// A reader that shares this writer's files and sees each commit once it is durable.
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Number of entries (durable).
    pub fn tree_size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root hash of the current tree.
    pub fn root_hash(&self) -> Hash {
        self.frontier.root()
    }

    /// The newest signed checkpoint.
    pub fn newest_checkpoint(&self) -> Option<&StoredCheckpoint> {
        self.newest_checkpoint.as_ref()
    }

    /// The options in force.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// Backward steps of the clock seen since the last call (at most one per episode;
    /// see [`crate::clock`]), oldest first.
    pub fn take_clock_backwards(&mut self) -> Vec<crate::clock::ClockBackwards> {
        std::mem::take(&mut self.clock_watch.pending)
    }

    /// Backward steps of the clock seen since the log was opened.
    pub fn clock_backwards_total(&self) -> u64 {
        self.clock_watch.total
    }

    /// Why the log stopped accepting writes, if it did.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(p) => Err(StoreError::Poisoned(p.clone())),
            None => Ok(()),
        }
    }

    /// Any write or sync failure poisons the log: the state of the files is unknown
    /// until recovery, so nothing more is acknowledged.
    fn poison<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r
            && matches!(e, StoreError::Io { .. })
        {
            self.poisoned = Some(e.to_string());
        }
        r
    }

    /// Appends `entries` as one group commit: all are durable when this returns `Ok`,
    /// none are visible if it fails. Entries of a stream not seen before are preceded by
    /// a stele record registering the stream.
    pub fn append(&mut self, entries: &[NewEntry<'_>]) -> Result<Appended> {
        self.check_poisoned()?;
        for e in entries {
            if e.payload.len() > self.options.max_entry_bytes {
                return Err(StoreError::EntryTooLarge { size: e.payload.len(), limit: self.options.max_entry_bytes });
            }
        }
        // Resolve streams; new ones get a registration record in this same commit.
        let mut new_streams: Vec<StreamRecord> = Vec::new();
        let mut ids = Vec::with_capacity(entries.len());
        let mut pending: HashMap<&str, u32> = HashMap::new();
        for e in entries {
            let id = match self.streams.id(e.stream).or_else(|| pending.get(e.stream).copied()) {
                Some(id) => id,
                None => {
                    streams::check_log_stream_name(e.stream)?;
                    let id = self.streams.next_id() + new_streams.len() as u32;
                    new_streams.push(StreamRecord { id, name: e.stream.to_string() });
                    pending.insert(e.stream, id);
                    id
                }
            };
            ids.push(id);
        }
        let system_payloads: Vec<Vec<u8>> = new_streams
            .iter()
            .map(|r| {
                serde_json::to_vec(&serde_json::json!({"type": "stream", "stream_id": r.id, "name": r.name}))
                    .expect("json")
            })
            .collect();
        let mut all: Vec<(u32, u8, &[u8])> = Vec::with_capacity(entries.len() + system_payloads.len());
        for p in &system_payloads {
            all.push((SYSTEM_STREAM_ID, FORMAT_STELE_RECORD, p));
        }
        for (e, id) in entries.iter().zip(&ids) {
            all.push((*id, e.format, e.payload));
        }
        let r = self.commit(&all, &new_streams);
        let r = self.poison(r)?;
        let skip = system_payloads.len();
        Ok(Appended {
            indexes: r.0[skip..].to_vec(),
            leaf_hashes: r.1[skip..].to_vec(),
            received_ns: r.2,
            tree_size: self.frontier.size(),
        })
    }

    #[allow(clippy::type_complexity)]
    fn commit(&mut self, all: &[(u32, u8, &[u8])], new_streams: &[StreamRecord]) -> Result<(Vec<u64>, Vec<Hash>, u64)> {
        let first = self.frontier.size();
        let now = self.options.clock.now_ns();
        self.clock_watch.observe(now, self.last_received_ns, self.options.clock_backwards_tolerance_ns);
        let received_ns = now.max(self.last_received_ns);
        let mut salts = vec![0u8; all.len() * SALT_LEN];
        getrandom::fill(&mut salts).map_err(|e| StoreError::Io {
            op: "reading randomness",
            file: "getrandom".into(),
            source: std::io::Error::other(e.to_string()),
        })?;

        // Group entries per stream into chunks of about CHUNK_TARGET_BYTES.
        let mut per_stream: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, (stream, _, _)) in all.iter().enumerate() {
            per_stream.entry(*stream).or_default().push(i);
        }
        let mut chunk_jobs: Vec<(u32, Vec<usize>)> = Vec::new();
        for (stream, idxs) in per_stream {
            let mut cur = Vec::new();
            let mut bytes = 0usize;
            for i in idxs {
                if !cur.is_empty() && bytes + all[i].2.len() > CHUNK_TARGET_BYTES {
                    chunk_jobs.push((stream, std::mem::take(&mut cur)));
                    bytes = 0;
                }
                bytes += all[i].2.len();
                cur.push(i);
            }
            chunk_jobs.push((stream, cur));
        }

        // Reserve the space of everything this commit writes into existing files
        // before writing (or changing) anything: a full disk fails the commit here,
        // cleanly, instead of halfway through its writes.
        self.reserve_commit(first, all, &chunk_jobs, received_ns)?;

        // Hashing (salted digests, leaf hashes, then the tree) and compression run at
        // the same time on the thread pool.
        let compression = self.options.compression;
        let frontier = &mut self.frontier;
        let ((leaves, leaf_hashes, level_bytes), encoded) = rayon::join(
            || {
                let hashed: Vec<([u8; LEAF_LEN], Hash)> = (0..all.len())
                    .into_par_iter()
                    .with_min_len(256)
                    .map(|i| {
                        let (stream, format, payload) = all[i];
                        let salt: [u8; SALT_LEN] = salts[i * SALT_LEN..(i + 1) * SALT_LEN].try_into().expect("16");
                        let leaf = Leaf::new(format, stream, received_ns, salt, payload).encode();
                        let h = leaf_hash(&leaf);
                        (leaf, h)
                    })
                    .collect();
                let (leaves, hashes): (Vec<[u8; LEAF_LEN]>, Vec<Hash>) = hashed.into_iter().unzip();
                // Level-0 hashes and every completed node of a stored tile level.
                let mut level_bytes: BTreeMap<u32, (u64, Vec<u8>)> = BTreeMap::new();
                for h in &hashes {
                    frontier.push(*h, |level, index, hash| {
                        if level % TILE_HEIGHT == 0 {
                            let e = level_bytes.entry(level / TILE_HEIGHT).or_insert((index, Vec::new()));
                            e.1.extend_from_slice(&hash.0);
                        }
                    });
                }
                (leaves, hashes, level_bytes)
            },
            || {
                chunk_jobs
                    .par_iter()
                    .map(|(_, idxs)| {
                        let items: Vec<(u64, &[u8])> = idxs.iter().map(|&i| (first + i as u64, all[i].2)).collect();
                        chunk::encode(&items, compression)
                    })
                    .collect::<Vec<Vec<u8>>>()
            },
        );

        // Place chunks in segments.
        let window = self.options.segment_window_ns.max(1);
        let window_start = received_ns - received_ns % window;
        let mut locators = vec![Locator { segno: 0, offset: 0 }; all.len()];
        let mut seg_writes: BTreeMap<u32, (Arc<dyn StorageFile>, u64, Vec<u8>)> = BTreeMap::new();
        for ((stream, idxs), bytes) in chunk_jobs.iter().zip(&encoded) {
            let need_new = match self.open_segments.get(stream) {
                None => true,
                Some(s) => {
                    s.window_start_ns != window_start
                        || s.len + bytes.len() as u64 > self.options.segment_max_bytes && s.len > HEADER_LEN
                }
            };
            if need_new {
                let segno = self.next_segno;
                self.next_segno += 1;
                let file =
                    self.files.create_segment(segno, SegmentInfo { stream: *stream, window_start_ns: window_start })?;
                self.open_segments
                    .insert(*stream, OpenSegment { segno, file, len: HEADER_LEN, window_start_ns: window_start });
            }
            let seg = self.open_segments.get_mut(stream).expect("inserted above");
            let w = seg_writes.entry(seg.segno).or_insert_with(|| (seg.file.clone(), seg.len, Vec::new()));
            let offset = seg.len;
            for &i in idxs {
                locators[i] = Locator { segno: seg.segno, offset };
            }
            w.2.extend_from_slice(bytes);
            seg.len += bytes.len() as u64;
        }

        // Write everything, then sync everything; only then is the commit acknowledged.
        let leaf_bytes: Vec<u8> = leaves.iter().flatten().copied().collect();
        let loc_bytes: Vec<u8> = locators.iter().flat_map(|l| l.encode()).collect();
        let mut to_sync: Vec<(Arc<dyn StorageFile>, String)> = Vec::new();
        for (segno, (file, offset, bytes)) in &seg_writes {
            let name = layout::segment(*segno);
            file.write_at(*offset, bytes).map_err(StoreError::io("writing", &name))?;
            to_sync.push((file.clone(), name));
        }
        if !new_streams.is_empty() {
            let mut b = Vec::new();
            for r in new_streams {
                b.extend_from_slice(&records::frame(&serde_json::to_vec(r).expect("json")));
            }
            self.files.streams.write_at(self.streams_len, &b).map_err(StoreError::io("writing", layout::STREAMS))?;
            self.streams_len += b.len() as u64;
            to_sync.push((self.files.streams.clone(), layout::STREAMS.into()));
        }
        self.files
            .leaves
            .write_at(HEADER_LEN + first * LEAF_LEN as u64, &leaf_bytes)
            .map_err(StoreError::io("writing", layout::LEAVES))?;
        to_sync.push((self.files.leaves.clone(), layout::LEAVES.into()));
        self.files
            .locators
            .write_at(HEADER_LEN + first * LOCATOR_LEN as u64, &loc_bytes)
            .map_err(StoreError::io("writing", layout::LOCATORS))?;
        to_sync.push((self.files.locators.clone(), layout::LOCATORS.into()));
        for (k, (start, bytes)) in &level_bytes {
            debug_assert_eq!(bytes.len() % HASH_LEN, 0);
            self.files.hashes.write_at(*k, *start, bytes)?;
            to_sync.push((self.files.hashes.file(*k)?, layout::hash_level(*k)));
        }
        sync_all(&to_sync)?;
        self.durable_streams_len = self.streams_len;

        for r in new_streams {
            self.streams.insert(r.id, r.name.clone());
        }
        self.last_received_ns = received_ns;
        let indexes = (first..first + all.len() as u64).collect();
        self.reader.publish(self.frontier.size(), if new_streams.is_empty() { None } else { Some(&self.streams) });
        Ok((indexes, leaf_hashes, received_ns))
    }

    /// Reserves (see [`StorageFile::reserve`]) the bytes a commit of `all` from index
    /// `first` writes into the leaves, locators and existing hash level files, and an
    /// upper bound of its chunks in each stream's open segment (when the segment's
    /// time window is still current). Fails with [`StoreError::NoSpace`], having
    /// written nothing. A segment or hash level the commit creates is not reserved
    /// (its creation is where a full disk surfaces then).
    fn reserve_commit(
        &self,
        first: u64,
        all: &[(u32, u8, &[u8])],
        chunk_jobs: &[(u32, Vec<usize>)],
        received_ns: u64,
    ) -> Result<()> {
        let n = all.len() as u64;
        let leaf = LEAF_LEN as u64;
        reserve(&self.files.leaves, layout::LEAVES, HEADER_LEN + first * leaf, HEADER_LEN + (first + n) * leaf)?;
        let loc = LOCATOR_LEN as u64;
        reserve(&self.files.locators, layout::LOCATORS, HEADER_LEN + first * loc, HEADER_LEN + (first + n) * loc)?;
        for k in 0..self.files.hashes.levels() {
            let (from, to) = (crate::hashes::stored_count(first, k), crate::hashes::stored_count(first + n, k));
            if to > from {
                let hash = HASH_LEN as u64;
                let file = self.files.hashes.file(k)?;
                reserve(&file, &layout::hash_level(k), HEADER_LEN + from * hash, HEADER_LEN + to * hash)?;
            }
        }
        // A chunk is its header and its body (per entry two varints and the payload);
        // zstd's output is at most its input plus 1/128 and a small frame.
        let window = self.options.segment_window_ns.max(1);
        let window_start = received_ns - received_ns % window;
        let mut per_stream: HashMap<u32, u64> = HashMap::new();
        for (stream, idxs) in chunk_jobs {
            let body: u64 = idxs.iter().map(|&i| all[i].2.len() as u64 + 20).sum();
            *per_stream.entry(*stream).or_default() += chunk::CHUNK_HEADER_LEN as u64 + body + body / 128 + 512;
        }
        for (stream, bound) in per_stream {
            if let Some(seg) = self.open_segments.get(&stream).filter(|s| s.window_start_ns == window_start) {
                reserve(&seg.file, &layout::segment(seg.segno), seg.len, seg.len + bound)?;
            }
        }
        Ok(())
    }

    /// Whether checkpoints are signed with the data directory's key file
    /// (`keys/signing.key`, the log opened by [`Log::open`] or [`Log::open_with`] given
    /// no signer) rather than a signer the caller gave (an out-of-process signer).
    pub fn signs_with_key_file(&self) -> bool {
        self.key_file_signer
    }

    /// The log's own signer, for the key statements it signs (docs/keys.md).
    pub(crate) fn signer_mut(&mut self) -> &mut dyn CheckpointSigner {
        self.signer.as_mut()
    }

    /// Signs every later checkpoint with `signer` (after a key rotation), and gives its
    /// key to the readers sharing this log's files.
    pub(crate) fn replace_signer(&mut self, signer: Box<dyn CheckpointSigner>) {
        self.reader.set_verifier(signer.verifier());
        self.signer = signer;
    }

    /// Signs a checkpoint over the current (durable) tree if it grew since the last one,
    /// stores it, and writes the recovery anchor. Returns the new checkpoint.
    pub fn sign_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>> {
        self.check_poisoned()?;
        let size = self.frontier.size();
        if self.newest_checkpoint.as_ref().is_some_and(|c| c.tree_size == size) {
            return Ok(None);
        }
        let r = self.write_checkpoint(size, None);
        let cp = self.poison(r)?;
        // Thinning runs at most once per keep-every period.
        let now = self.options.clock.now_ns();
        if now.saturating_sub(self.last_thinned_ns) >= self.options.checkpoint_keep_every_ns {
            let r = self.thin_checkpoints(now);
            self.poison(r)?;
        }
        Ok(Some(cp))
    }

    /// Signs a checkpoint over the current tree with the log's signer and `also` (the
    /// note carries both signatures: the transition checkpoint of a key rotation), and
    /// stores it like [`Log::sign_checkpoint`].
    ///
    /// # Errors
    /// As [`Log::sign_checkpoint`]; [`StoreError::InvalidArgument`] when the tree did
    /// not grow since the newest checkpoint.
    pub fn sign_checkpoint_with(&mut self, also: &mut dyn CheckpointSigner) -> Result<StoredCheckpoint> {
        self.check_poisoned()?;
        let size = self.frontier.size();
        if self.newest_checkpoint.as_ref().is_some_and(|c| c.tree_size == size) {
            return Err(StoreError::InvalidArgument(format!("tree size {size} already has a checkpoint")));
        }
        let r = self.write_checkpoint(size, Some(also));
        self.poison(r)
    }

    /// Removes old checkpoints: keeps every checkpoint signed within
    /// `checkpoint_keep_all_ns` of `now_ns`, the first of each `checkpoint_keep_every_ns`
    /// period before that, and always the first and the newest. The kept records are
    /// written to a new file that atomically replaces `checkpoints.dat`. Returns how
    /// many were removed.
    pub fn thin_checkpoints(&mut self, now_ns: u64) -> Result<usize> {
        self.check_poisoned()?;
        self.last_thinned_ns = now_ns;
        let all = crate::checkpoints::read_all(&self.files, self.checkpoints_len)?;
        let cutoff = now_ns.saturating_sub(self.options.checkpoint_keep_all_ns);
        let every = self.options.checkpoint_keep_every_ns.max(1);
        let mut keep = Vec::with_capacity(all.len());
        let mut last_period = None;
        for (i, cp) in all.iter().enumerate() {
            let period = cp.signed_ns / every;
            let keep_it = i == 0 || i + 1 == all.len() || cp.signed_ns >= cutoff || last_period != Some(period);
            if keep_it {
                keep.push(cp);
            }
            last_period = Some(period);
        }
        let removed = all.len() - keep.len();
        if removed == 0 {
            return Ok(0);
        }
        let tmp = "checkpoints.dat.new";
        let f = self.files.backend.open(tmp, true).map_err(StoreError::io("creating", tmp))?;
        f.set_len(0).map_err(StoreError::io("truncating", tmp))?;
        crate::header::Header::new(crate::header::Kind::Checkpoints, 0, 0, 0).write(&f, tmp)?;
        let mut offset = HEADER_LEN;
        let mut bytes = Vec::new();
        let mut newest = None;
        for cp in keep {
            let moved = StoredCheckpoint { offset, ..cp.clone() };
            let framed = records::frame(&moved.encode());
            offset += framed.len() as u64;
            bytes.extend_from_slice(&framed);
            newest = Some(moved);
        }
        f.write_at(HEADER_LEN, &bytes).map_err(StoreError::io("writing", tmp))?;
        f.sync().map_err(StoreError::io("syncing", tmp))?;
        self.files.replace_checkpoints(tmp)?;
        self.checkpoints_len = offset;
        let newest = newest.expect("the newest checkpoint is kept");
        self.state.seq += 1;
        self.state.checkpoints_len = offset;
        self.state.newest_checkpoint_offset = Some(newest.offset);
        state::write(&self.files.state, &self.state)?;
        self.newest_checkpoint = Some(newest.clone());
        self.reader.publish_checkpoint(newest);
        Ok(removed)
    }

    /// Removes segment `segno` under retention, keeping every leaf, hash and proof:
    /// appends `record` (a [`crate::retention::DeletionRecord`] for this segment) to
    /// `_stele/retention` as one commit, records the removal in `deletions.dat`, then
    /// removes the segment file ([`crate::files::LogFiles::remove_deleted_segment`]).
    /// Returns the record's index.
    ///
    /// A segment that was removed from `deletions.dat` but whose file is still there
    /// (an interrupted deletion) just has its file removed; its earlier record's index
    /// is returned.
    ///
    /// # Errors
    /// [`StoreError::SegmentNotDeletable`] when the segment does not exist, still
    /// receives entries (its time window has not ended), holds entries not yet covered
    /// by a signed checkpoint, or when the record does not describe it or breaks its
    /// own minimum retention; I/O errors poison the writer like any write.
    pub fn delete_segment(&mut self, segno: u32, record: &crate::retention::DeletionRecord) -> Result<u64> {
        self.check_poisoned()?;
        if let Some(existing) = self.files.deleted_segment(segno) {
            self.files.remove_deleted_segment(segno)?;
            return Ok(existing);
        }
        let index = self.delete_segment_inner(segno, record)?;
        self.files.remove_deleted_segment(segno)?;
        Ok(index)
    }

    /// Checks, appends the record and notes the deletion; leaves the file.
    fn delete_segment_inner(&mut self, segno: u32, record: &crate::retention::DeletionRecord) -> Result<u64> {
        self.check_poisoned()?;
        let refuse = |reason: String| Err(StoreError::SegmentNotDeletable { segno, reason });
        let name = layout::segment(segno);
        if segno >= self.next_segno || !self.files.backend.exists(&name) {
            return refuse("no such segment".into());
        }
        if record.kind != "deletion" || record.segment != segno {
            return refuse("the deletion record does not name this segment".into());
        }
        if !record.respects_minimum() {
            return refuse("the deletion record is earlier than its policy's minimum retention".into());
        }
        let last = record.ranges.last().map_or(0, |r| r.1);
        if self.newest_checkpoint.as_ref().is_none_or(|c| c.tree_size <= last) {
            return refuse(format!("entry {last} is not yet covered by a signed checkpoint"));
        }
        // The segment must be finished: a new entry of its stream would go to another.
        let open_stream =
            self.open_segments.iter().find(|(_, s)| s.segno == segno).map(|(stream, s)| (*stream, s.window_start_ns));
        if let Some((stream, window_start)) = open_stream {
            let now = self.options.clock.now_ns().max(self.last_received_ns);
            if now < window_start.saturating_add(self.options.segment_window_ns.max(1)) {
                return refuse("its time window has not ended; it still receives entries".into());
            }
            // Seal it: no longer open at the recovery anchor.
            self.open_segments.remove(&stream);
            self.state.seq += 1;
            self.state.open_segments.retain(|s| s.segno != segno);
            let r = state::write(&self.files.state, &self.state);
            self.poison(r)?;
        }
        let payload = record.encode();
        let appended = self.append(&[NewEntry {
            stream: streams::RETENTION_STREAM,
            format: FORMAT_STELE_RECORD,
            payload: &payload,
        }])?;
        let index = appended.indexes[0];
        let r = self.files.record_deletion(segno, index);
        self.poison(r)?;
        Ok(index)
    }

    /// [`Log::delete_segment`] without the file removal, for a writer that must not
    /// wait for it (the server's sequencer): once this returns, the deletion is
    /// authorised, recorded and durable, readers no longer use the segment, and the
    /// caller removes the file with [`crate::files::LogFiles::remove_deleted_segment`]
    /// from any thread. Until then `verify` notes the file as an interrupted deletion.
    ///
    /// # Errors
    /// As [`Log::delete_segment`].
    pub fn record_segment_deletion(&mut self, segno: u32, record: &crate::retention::DeletionRecord) -> Result<u64> {
        if let Some(existing) = self.files.deleted_segment(segno) {
            return Ok(existing);
        }
        self.delete_segment_inner(segno, record)
    }

    fn write_checkpoint(&mut self, size: u64, also: Option<&mut dyn CheckpointSigner>) -> Result<StoredCheckpoint> {
        let body = Checkpoint {
            origin: self.signer.name().to_string(),
            tree_size: size,
            root_hash: self.frontier.root(),
            extensions: vec![],
        };
        // A signer failure is not an I/O failure of the log: nothing was written, the
        // log is not poisoned, and entries keep being accepted until a signer answers.
        let mut signers: Vec<&mut dyn CheckpointSigner> = vec![self.signer.as_mut()];
        if let Some(s) = also {
            signers.push(s);
        }
        let note = stele_tlog::signer::sign_note(&body.to_body(), &mut signers).map_err(StoreError::Signer)?;
        let cp = StoredCheckpoint {
            tree_size: size,
            signed_ns: self.options.clock.now_ns(),
            note,
            offset: self.checkpoints_len,
        };
        let framed = records::frame(&cp.encode());
        let ck = self.files.checkpoints();
        // Both writes' space first: a full disk refuses the checkpoint cleanly.
        let end = self.checkpoints_len + framed.len() as u64;
        reserve(&ck, layout::CHECKPOINTS, self.checkpoints_len, end)?;
        let slot = state::slot_offset(self.state.seq + 1);
        reserve(&self.files.state, layout::STATE, slot, slot + state::SLOT_LEN)?;
        ck.write_at(self.checkpoints_len, &framed).map_err(StoreError::io("writing", layout::CHECKPOINTS))?;
        ck.sync().map_err(StoreError::io("syncing", layout::CHECKPOINTS))?;
        self.checkpoints_len += framed.len() as u64;
        self.state = State {
            seq: self.state.seq + 1,
            tree_size: size,
            checkpoints_len: self.checkpoints_len,
            newest_checkpoint_offset: Some(cp.offset),
            streams_len: self.streams_len,
            next_segno: self.next_segno,
            open_segments: self
                .open_segments
                .iter()
                .map(|(stream, s)| OpenSegmentState {
                    segno: s.segno,
                    stream: *stream,
                    window_start_ns: s.window_start_ns,
                    len: s.len,
                })
                .collect(),
        };
        state::write(&self.files.state, &self.state)?;
        self.newest_checkpoint = Some(cp.clone());
        self.reader.publish_checkpoint(cp.clone());
        Ok(cp)
    }
}

/// Reserves bytes `[from, to)` of `file` ([`StorageFile::reserve`]): a full disk is
/// [`StoreError::NoSpace`] (nothing written, the log not poisoned).
fn reserve(file: &Arc<dyn StorageFile>, name: &str, from: u64, to: u64) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    file.reserve(from, to - from).map_err(|source| {
        if source.kind() == std::io::ErrorKind::StorageFull {
            StoreError::NoSpace { file: name.to_string(), bytes: to - from, source }
        } else {
            StoreError::Io { op: "reserving space in", file: name.to_string(), source }
        }
    })
}

fn sync_all(files: &[(Arc<dyn StorageFile>, String)]) -> Result<()> {
    // One after the other: on ext4 concurrent fdatasyncs of appended files contend for
    // the journal and measured slower here (1.9 ms against 1.0 ms for four files).
    for (f, name) in files {
        f.sync().map_err(StoreError::io("syncing", name))?;
    }
    Ok(())
}

/// Maps `f` over `0..n` on the thread pool, in chunks of at least `min_items`.
pub(crate) fn par_map_min<T: Send, F: Fn(usize) -> T + Sync + Send>(n: usize, min_items: usize, f: F) -> Vec<T> {
    (0..n).into_par_iter().with_min_len(min_items.max(1)).map(f).collect()
}
