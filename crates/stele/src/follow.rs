//! `stele import --follow FILE`: tails a growing log file into the log, across
//! rotation and restarts, each line exactly once.
//!
//! The position is the file's identity (device and inode), the byte offset up to
//! which its lines are in the log, a SHA-256 of its first bytes (up to
//! [`HEAD_BYTES`]), and the tree size after the last commit. It is kept in
//! `<data>/follow/<hash of the path>.json`, written (temporary file, fsync, rename,
//! fsync of the directory) after each commit is durable.
//!
//! - Rotation by rename (logrotate's default, auditd's `max_log_file_action`): the
//!   old file is read to its end (a final line without `\n` included, since the
//!   file is finished), then the new file from its start. Lines a writer still adds
//!   to the old file before it reopens are read as long as they arrive before the
//!   new file is switched to, which happens one poll after the rename is seen.
//! - Rotation by copy and truncate (logrotate's `copytruncate`): the file is
//!   shorter than the position, or its first bytes changed. The copy, a file in the
//!   same directory whose name starts with the followed file's name and whose first
//!   bytes hash the same, supplies the lines between the position and the copy's
//!   end; then the truncated file is read from its start.
//! - Restart: the saved position is resumed. A file rotated in between is found by
//!   its inode (renamed) or its first bytes (copied) among its siblings. A crash
//!   between a commit and the position's fsync leaves entries the position does not
//!   cover: they are the next lines of the file, in order, so the lines equal to the
//!   entries appended after the saved tree size are skipped instead of appended
//!   again.
//!
//! Lines are framed as JSON lines (any JSON format, one event per line). Invalid
//! lines are reported on standard error and skipped, as a tail cannot stop. Unix
//! only (device and inode numbers).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use stele_formats::{Batch, EventReader, InputFormat, Normalizer};
use stele_index::Index;
use stele_store::{Log, NewEntry};

use crate::config::Config;

/// Bytes of the file's start whose hash identifies it across copytruncate.
pub(crate) const HEAD_BYTES: usize = 256;
/// Bytes read per poll at most (bounds memory; more is read on the next turn).
const CHUNK_BYTES: usize = 8 << 20;
/// A checkpoint at least this often while lines arrive.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The saved position (see the module documentation).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
    head_len: usize,
    /// Hex SHA-256 of the first `head_len` bytes.
    head_sha256: String,
    tree_size: u64,
}

/// What `--follow` needs besides the log.
pub(crate) struct FollowArgs<'a> {
    pub(crate) file: &'a Path,
    pub(crate) stream: &'a str,
    pub(crate) format: InputFormat,
    /// Poll interval.
    pub(crate) poll: Duration,
    /// Exit once nothing new arrived for this long (`None`: run until killed).
    pub(crate) idle_exit: Option<Duration>,
}

fn hex_sha256(b: &[u8]) -> String {
    stele_tlog::hash::sha256(b).0.iter().map(|x| format!("{x:02x}")).collect()
}

fn state_path(data_dir: &Path, file: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(file.parent().unwrap_or(Path::new(".")))
        .map(|d| d.join(file.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| file.to_path_buf());
    let h = hex_sha256(abs.as_os_str().as_encoded_bytes());
    data_dir.join("follow").join(format!("{}.json", &h[..32]))
}

fn save(path: &Path, pos: &Position) -> anyhow::Result<()> {
    let dir = path.parent().expect("state file has a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(pos)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Option<Position>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file being read.
struct Current {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    head: Vec<u8>,
}

impl Current {
    fn open(path: &Path, offset: u64, head: Vec<u8>) -> std::io::Result<Current> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Current { file, dev: m.dev(), ino: m.ino(), offset, head })
    }

    /// Reads from the offset: the complete lines (up to the last `\n`), or with
    /// `finished` everything to the end.
    fn read_lines(&mut self, finished: bool) -> std::io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        (&mut self.file).take(CHUNK_BYTES as u64).read_to_end(&mut buf)?;
        if !finished || buf.len() == CHUNK_BYTES {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(p) => buf.truncate(p + 1),
                None if buf.len() == CHUNK_BYTES => {}
                None => buf.clear(),
            }
        }
        Ok(buf)
    }

    fn advance(&mut self, consumed: &[u8]) {
        if self.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - self.head.len()).min(consumed.len());
            self.head.extend_from_slice(&consumed[..take]);
        }
        self.offset += consumed.len() as u64;
    }

    /// True when the file's first bytes are no longer the ones read.
    fn head_changed(&self) -> std::io::Result<bool> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))?;
        let mut b = vec![0u8; self.head.len()];
        let n = f.take(self.head.len() as u64).read(&mut b)?;
        Ok(n < b.len() || b != self.head)
    }
}

/// A sibling of `path` (same directory, name starting with its name) with inode
/// `ino`: the file after a rename rotation.
fn find_renamed(path: &Path, ino: u64) -> Option<PathBuf> {
    siblings(path)?.into_iter().find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino))
}

/// The other files of `path`'s directory whose names start with its name, sorted.
fn siblings(path: &Path) -> Option<Vec<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name()?.to_str()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(name) && n != name))
        .map(|e| e.path())
        .collect();
    found.sort();
    Some(found)
}

struct Follower<'a> {
    log: Log,
    index: Index,
    normalizer: Normalizer,
    args: &'a FollowArgs<'a>,
    state: PathBuf,
    max_entry: usize,
    /// Payloads appended after the saved position (a crash before its fsync): the
    /// next lines equal to them, in order, are already in the log.
    already: std::collections::VecDeque<Vec<u8>>,
    appended: u64,
    last_checkpoint: Instant,
    /// Seals configured personal-data fields (docs/erasure.md).
    sealer: Option<stele_erasure::Sealer>,
}

impl Follower<'_> {
    /// Appends the events of `lines` (complete lines) and saves the position.
    fn commit(&mut self, cur: &mut Current, lines: &[u8]) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut reader =
            EventReader::new(lines, self.args.format, self.max_entry).with_normalizer(self.normalizer.clone());
        let mut batch = Batch::new();
        loop {
            match reader.read_batch(usize::MAX, usize::MAX, &mut batch) {
                Ok(_) => break,
                Err(e) if !e.is_fatal() => {
                    eprintln!("skipped {}:+{}: {e}", self.args.file.display(), cur.offset);
                    // Keep what was read before the error, then go on.
                    let mut rest = Batch::new();
                    std::mem::swap(&mut rest, &mut batch);
                    self.append(&rest)?;
                }
                Err(e) => {
                    eprintln!("skipped the rest of a chunk of {}: {e}", self.args.file.display());
                    break;
                }
            }
        }
        self.append(&batch)?;
        cur.advance(lines);
        let pos = Position {
            dev: cur.dev,
            ino: cur.ino,
            offset: cur.offset,
            head_len: cur.head.len(),
            head_sha256: hex_sha256(&cur.head),
            tree_size: self.log.tree_size(),
        };
        self.index.flush()?;
        save(&self.state, &pos)?;
        if self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.log.sign_checkpoint()?;
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    fn append(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let mut selected = Vec::new();
        let mut fields = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            if self.already.front().is_some_and(|p| p.as_slice() == e.bytes) {
                self.already.pop_front();
                continue;
            }
            self.already.clear();
            selected.push((e.format.code(), e.bytes));
            fields.push(batch.normalized(i).cloned().unwrap_or_default());
        }
        let sealed = crate::cmd_erase::seal_batch(self.sealer.as_mut(), self.args.stream, selected.iter().copied())?;
        let mut entries = Vec::with_capacity(selected.len());
        for (i, (code, bytes)) in selected.iter().enumerate() {
            entries.push(match sealed.get(i).and_then(Option::as_ref) {
                Some(s) => {
                    fields[i] = crate::cmd_erase::sealed_fields(&self.normalizer, s);
                    NewEntry { stream: self.args.stream, format: s.format, payload: &s.payload }
                }
                None => NewEntry { stream: self.args.stream, format: *code, payload: bytes },
            });
        }
        if entries.is_empty() {
            return Ok(());
        }
        let done = self.log.append(&entries).context("appending followed lines")?;
        let sid = self.log.reader().streams().id(self.args.stream).expect("stream registered by the append");
        for (ix, f) in done.indexes.iter().zip(fields) {
            self.index.add(*ix, done.received_ns, sid, f)?;
        }
        self.appended += done.indexes.len() as u64;
        Ok(())
    }

    /// Reads a finished (rotated) file from `offset` to its end.
    fn drain_rotated(&mut self, path: &Path, offset: u64, head: Vec<u8>) -> anyhow::Result<()> {
        let mut old = Current::open(path, offset, head)?;
        loop {
            let lines = old.read_lines(true)?;
            if lines.is_empty() {
                return Ok(());
            }
            self.commit(&mut old, &lines)?;
        }
    }
}

/// Runs the follower until killed (or idle for `idle_exit`).
pub(crate) fn run(config: &Config, data_dir: &Path, args: &FollowArgs<'_>) -> anyhow::Result<()> {
    let options = config.log_options();
    let max_entry = options.max_entry_bytes;
    let log = Log::open(data_dir, options)?;
    let pointers = config.field_pointers();
    let mut index = Index::open(data_dir, log.reader(), &pointers, true)?;
    index.catch_up()?;
    let sealer = crate::cmd_erase::sealer(config, data_dir, &index.snapshot(), &log.reader())?;
    let state = state_path(data_dir, args.file);
    let saved = load(&state)?;
    let mut f = Follower {
        log,
        index,
        normalizer: Normalizer::new(&pointers),
        args,
        state,
        max_entry,
        already: Default::default(),
        appended: 0,
        last_checkpoint: Instant::now(),
        sealer,
    };
    // Entries committed after the saved position.
    if let Some(pos) = &saved {
        let reader = f.log.reader();
        for i in pos.tree_size..reader.tree_size() {
            let e = reader.entry(i)?;
            if e.stream == args.stream {
                // Compared with the lines as read: a sealed entry is compared restored.
                let keys = f.sealer.as_ref().map(|s| s.keys());
                f.already.push_back(crate::cmd_erase::view(keys, &e)?.bytes);
            }
        }
    }
    // Where to start in the current file.
    let mut cur = loop {
        match Current::open(args.file, 0, Vec::new()) {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::thread::sleep(args.poll),
            Err(e) => return Err(e).with_context(|| format!("{}", args.file.display())),
        }
    };
    if let Some(pos) = saved {
        let same_file = pos.dev == cur.dev && pos.ino == cur.ino;
        let mut head = vec![0u8; pos.head_len];
        let head_ok = (&cur.file).read_exact(&mut head).is_ok() && hex_sha256(&head) == pos.head_sha256;
        let len = cur.file.metadata()?.len();
        if same_file && head_ok && len >= pos.offset {
            cur.offset = pos.offset;
            cur.head = head;
        } else {
            // Rotated while stopped: finish the old file first.
            let renamed = if same_file { None } else { find_renamed(args.file, pos.ino) };
            // Else a copy: its first bytes are the saved ones.
            let old = renamed.or_else(|| find_by_hash(args.file, pos.head_len, &pos.head_sha256, pos.offset));
            match old {
                Some(p) => {
                    let mut h = vec![0u8; pos.head_len];
                    File::open(&p)?.read_exact(&mut h)?;
                    f.drain_rotated(&p, pos.offset, h)?;
                }
                None => eprintln!(
                    "warning: {} was rotated while stele was stopped and the old file is gone; lines after byte {} of it are lost",
                    args.file.display(),
                    pos.offset
                ),
            }
        }
    }
    let mut idle_since = Instant::now();
    let mut rotated_seen = false;
    loop {
        let lines = cur.read_lines(false)?;
        let got = !lines.is_empty();
        f.commit(&mut cur, &lines)?;
        // Rotation checks.
        let now = std::fs::metadata(args.file);
        let renamed = match &now {
            Ok(m) => m.dev() != cur.dev || m.ino() != cur.ino,
            Err(_) => true,
        };
        if renamed && now.is_ok() {
            if rotated_seen && !got {
                // One quiet poll after the rename: the old file is finished.
                let rest = cur.read_lines(true)?;
                f.commit(&mut cur, &rest)?;
                cur = Current::open(args.file, 0, Vec::new())?;
                rotated_seen = false;
                idle_since = Instant::now();
                continue;
            }
            rotated_seen = true;
        } else if !renamed {
            let len = cur.file.metadata()?.len();
            if len < cur.offset || cur.head_changed()? {
                // copytruncate: the copy holds what was between the position and
                // the truncation.
                if let Some(copy) = find_by_hash(args.file, cur.head.len(), &hex_sha256(&cur.head), cur.offset) {
                    let head = cur.head.clone();
                    f.drain_rotated(&copy, cur.offset, head)?;
                } else {
                    eprintln!("warning: {} was truncated; no copy of it found", args.file.display());
                }
                cur = Current::open(args.file, 0, Vec::new())?;
                idle_since = Instant::now();
                continue;
            }
        }
        if got {
            idle_since = Instant::now();
            continue;
        }
        if args.idle_exit.is_some_and(|d| idle_since.elapsed() >= d) {
            break;
        }
        std::thread::sleep(args.poll);
    }
    f.index.flush()?;
    f.log.sign_checkpoint()?;
    println!("appended {} entries from {}", f.appended, args.file.display());
    println!("tree size {}", f.log.tree_size());
    Ok(())
}

/// A sibling of `path` whose first `head_len` bytes hash to `sha` and that is at
/// least `min_len` long (a copytruncate copy).
fn find_by_hash(path: &Path, head_len: usize, sha: &str, min_len: u64) -> Option<PathBuf> {
    siblings(path)?.into_iter().find(|p| {
        let Ok(mut file) = File::open(p) else { return false };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut b = vec![0u8; head_len];
        len >= min_len && file.read_exact(&mut b).is_ok() && hex_sha256(&b) == sha
    })
}
