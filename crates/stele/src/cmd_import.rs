//! `stele import`: a two-stage pipeline. A reader thread splits, validates and
//! normalizes events in batches while the main thread appends the previous batch as
//! one group commit (hashing and compression themselves run on both cores).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use stele_erasure::Sealer;
use stele_formats::{Batch, EventReader, FormatError, InputFormat, Normalizer};
use stele_index::Index;
use stele_store::{Log, NewEntry, StoreError};

use crate::cli::{DataArg, FormatArg};
use crate::config::Config;

/// Events per group commit during import.
const BATCH_EVENTS: usize = 32_768;
/// Bytes per group commit during import.
const BATCH_BYTES: usize = 8 << 20;
/// A checkpoint (and recovery anchor) at least this often during a long import, so a
/// crash never leaves much to check on the next open.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

struct Piece {
    /// The events; those a sealing rule applies to in their sealed form, with the
    /// sealed form's index fields ([`Batch::stored_code`]).
    batch: Batch,
    error: Option<FormatError>,
    /// Sealing failed (key store, randomness): nothing of this piece is appended.
    seal_error: Option<String>,
}

impl Piece {
    fn new(batch: Batch, error: Option<FormatError>) -> Piece {
        Piece { batch, error, seal_error: None }
    }

    /// Whether the appender has something to do with it: events or an error.
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.error.is_none() && self.seal_error.is_none()
    }
}

/// Pieces the appender is done with, handed back to the parser threads: their
/// buffers (the batch's bytes and vectors) are reused instead of allocated for every
/// batch and freed on another thread. (The normalized fields go to the index.)
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<Piece>>>);

/// Pieces kept for reuse: the channels hold at most a few in flight.
const POOL_PIECES: usize = 8;

impl Pool {
    /// An empty piece, reused when one was handed back.
    fn take(&self) -> Piece {
        let reused = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| Piece::new(Batch::new(), None))
    }

    /// Hands back a piece the appender is done with.
    fn give(&self, mut piece: Piece) {
        piece.batch.clear();
        piece.error = None;
        piece.seal_error = None;
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < POOL_PIECES {
            kept.push(piece);
        }
    }
}

/// What the parser threads need to seal personal-data fields: the shared sealer
/// (parsers seal under its read lock; the appender syncs new keys under its write
/// lock before each append), the stream and the normalizer (which also locates the
/// sealed pointers in each event's parse).
#[derive(Clone)]
struct SealJob {
    sealer: Arc<RwLock<Sealer>>,
    stream: Arc<str>,
    normalizer: Normalizer,
}

/// Reads the next batch of `reader` into `piece`, sealing its events as they are
/// parsed when `job` is given. Returns the events read (0 at the end of input, or
/// when sealing the first event failed: `piece.seal_error` then says why).
fn read_piece<R: BufRead>(
    reader: &mut EventReader<R>,
    job: Option<&SealJob>,
    piece: &mut Piece,
) -> Result<usize, FormatError> {
    let Some(job) = job else { return reader.read_batch(BATCH_EVENTS, BATCH_BYTES, &mut piece.batch) };
    let sealer = job.sealer.read().unwrap_or_else(|p| p.into_inner());
    let mut rewrite = SealRewrite {
        // Repeated subjects and values are sealed once per batch.
        batch: sealer.batch(),
        sealer: &sealer,
        stream: &job.stream,
        normalizer: &job.normalizer,
        now: stele_store::log::now_ns(),
        values: Vec::new(),
        replaced: Vec::new(),
        error: None,
    };
    let read = reader.read_batch_rewriting(BATCH_EVENTS, BATCH_BYTES, &mut piece.batch, &mut rewrite);
    if let Some(e) = rewrite.error {
        piece.seal_error = Some(e.to_string());
    }
    read
}

/// Seals each event a rule applies to as the batch takes it, right after its parse:
/// the batch holds the sealed payload, and the event's index fields become those of
/// the sealed form (derived from its parse when that is exact, else normalized from
/// the sealed body).
struct SealRewrite<'s> {
    batch: stele_erasure::BatchSealer<'s>,
    sealer: &'s Sealer,
    stream: &'s str,
    normalizer: &'s Normalizer,
    now: u64,
    values: Vec<stele_erasure::SealedValue>,
    replaced: Vec<stele_formats::Replaced<'s>>,
    error: Option<stele_erasure::ErasureError>,
}

impl stele_formats::Rewrite for SealRewrite<'_> {
    fn rewrite(
        &mut self,
        event: stele_formats::RawEvent<'_>,
        record: Option<stele_formats::CaptureRecordRef<'_>>,
        fields: &mut stele_formats::Normalized,
        out: &mut Vec<u8>,
    ) -> Result<Option<u8>, stele_formats::RewriteStop> {
        let start = out.len();
        let code = event.format.code();
        match self.batch.seal_append(self.stream, code, event.bytes, record, self.now, out, &mut self.values) {
            Ok(None) => Ok(None),
            Ok(Some((stored, rule))) => {
                let payload = &out[start..];
                let derived = match record {
                    Some(record) if self.sealer.replaced_in(rule, &self.values, &mut self.replaced) => {
                        self.normalizer.sealed_fields_update(event.format, record, &self.replaced, payload, fields)
                    }
                    _ => false,
                };
                if !derived {
                    *fields = self.normalizer.stored_fields(stored, payload);
                }
                Ok(Some(stored))
            }
            Err(e) => {
                self.error = Some(e);
                Err(stele_formats::RewriteStop)
            }
        }
    }
}

fn input_format(f: FormatArg) -> InputFormat {
    match f {
        FormatArg::Auto => InputFormat::Auto,
        FormatArg::Jsonl => InputFormat::Jsonl,
        FormatArg::Json => InputFormat::Json,
        FormatArg::K8sAudit => InputFormat::K8sAudit,
        FormatArg::Cloudtrail => InputFormat::CloudTrail,
        FormatArg::GcpAudit => InputFormat::GcpAudit,
        FormatArg::Ocsf => InputFormat::Ocsf,
        FormatArg::Auditd => InputFormat::Auditd,
    }
}

/// Opens a file (or standard input for `-`), decompressing gzip and zstd inputs
/// transparently (detected by their magic bytes).
fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let raw: Box<dyn BufRead + Send> = if path.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| crate::Failure::usage(format!("{}: {e}", path.display())))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let (input, _) = stele_formats::decompress::maybe_decompress(raw)
        .map_err(|e| crate::Failure::usage(format!("{}: {e}", path.display())))?;
    Ok(input)
}

pub(crate) fn run(
    config: &Config,
    data: DataArg,
    format: FormatArg,
    stream: &str,
    skip_invalid: bool,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let dir = config.data_dir(data.data.as_ref())?;
    stele_store::streams::check_stream_name(stream)?;
    let options = config.log_options();
    let max_entry = options.max_entry_bytes;
    let mut log = Log::open(&dir, options).map_err(|e| match e {
        StoreError::Locked => crate::Failure::usage(
            "the data directory is held by a running `stele serve`; send the events to the server instead (POST /v1/events)",
        ),
        other => other.into(),
    })?;
    let pointers = config.field_pointers();
    let mut index = Index::open(&dir, log.reader(), &pointers, true)?;
    index.catch_up()?;
    // With sealing, the parse of each event also locates the sealed pointers.
    let seal_job = crate::cmd_erase::sealer(config, &dir, &index.snapshot(), &log.reader())?.map(|s| SealJob {
        normalizer: Normalizer::with_located(&pointers, s.located_pointers()),
        sealer: Arc::new(RwLock::new(s)),
        stream: Arc::from(stream),
    });

    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut total = 0u64;
    let mut total_bytes = 0u64;
    let mut skipped: Vec<String> = Vec::new();
    let mut stream_id: Option<u32> = None;
    for path in files {
        let input = open_input(path)?;
        let name = path.display().to_string();
        let fmt = input_format(format);
        let normalizer = match &seal_job {
            Some(job) => job.normalizer.clone(),
            None => Normalizer::new(&pointers),
        };
        let pool = Pool::default();
        let (rx, parser) =
            spawn_parsers(input, fmt, max_entry, normalizer, skip_invalid, seal_job.clone(), pool.clone())?;
        let (mut first, mut last, mut count) = (None::<u64>, 0u64, 0u64);
        let mut failure: Option<anyhow::Error> = None;
        for mut piece in rx {
            if let Some(e) = &piece.seal_error {
                failure = Some(anyhow::anyhow!(
                    "sealing personal-data fields failed: {e}; {count} entries before it are appended and committed{}; nothing after it was appended",
                    first.map(|f| format!(" (indexes {f}..={last})")).unwrap_or_default()
                ));
                break;
            }
            if !piece.batch.is_empty() {
                // Personal-data fields were sealed on the parser threads; their keys
                // are made durable before the events are appended.
                // Keys made since the last sync are what needs it; without any, the
                // parser threads keep sealing instead of waiting for the write lock.
                if let Some(job) = &seal_job
                    && job.sealer.read().unwrap_or_else(|p| p.into_inner()).needs_sync()
                {
                    job.sealer.write().unwrap_or_else(|p| p.into_inner()).sync()?;
                }
                let batch = &piece.batch;
                let entries: Vec<NewEntry<'_>> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, e)| NewEntry {
                        stream,
                        format: batch.stored_code(i).unwrap_or(e.format.code()),
                        payload: e.bytes,
                    })
                    .collect();
                let done = log.append(&entries).with_context(|| format!("appending events from {name}"))?;
                let sid = match stream_id {
                    Some(s) => s,
                    None => {
                        let s = log.reader().streams().id(stream).expect("stream registered by the append");
                        stream_id = Some(s);
                        s
                    }
                };
                for (i, ix) in done.indexes.iter().enumerate() {
                    let fields = piece.batch.take_normalized(i).unwrap_or_default();
                    index.add(*ix, done.received_ns, sid, fields)?;
                }
                first.get_or_insert(done.indexes[0]);
                last = *done.indexes.last().expect("non-empty batch");
                count += done.indexes.len() as u64;
                total_bytes += piece.batch.data_len() as u64;
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    log.sign_checkpoint()?;
                    last_checkpoint = Instant::now();
                }
            }
            if let Some(e) = piece.error.take() {
                let at = e.location().map(|l| format!("{name}:{}", l.line)).unwrap_or_else(|| name.clone());
                if skip_invalid && !e.is_fatal() {
                    skipped.push(format!("{at}: {e}"));
                } else {
                    failure = Some(crate::Failure::usage(format!(
                        "{at}: {e}; {count} entries before it are appended and committed{}; nothing after it was appended",
                        first.map(|f| format!(" (indexes {f}..={last})")).unwrap_or_default()
                    )));
                    break;
                }
            }
            pool.give(piece);
        }
        drop(parser);
        total += count;
        match first {
            Some(f) => println!("appended {count} entries (indexes {f}..={last}) from {name}"),
            None => println!("appended 0 entries from {name}"),
        }
        if let Some(f) = failure {
            index.flush()?;
            if let Some(cp) = log.sign_checkpoint()? {
                eprintln!("signed checkpoint at tree size {}", cp.tree_size);
            }
            return Err(f);
        }
    }
    index.flush()?;
    log.sign_checkpoint()?;
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} entries, {:.1} MB in {secs:.2} s ({:.0} entries/s, {:.1} MB/s){}",
        total_bytes as f64 / 1e6,
        total as f64 / secs.max(1e-9),
        total_bytes as f64 / 1e6 / secs.max(1e-9),
        if skipped.is_empty() { String::new() } else { format!("; skipped {} invalid", skipped.len()) }
    );
    println!("tree size {}", log.tree_size());
    if let Some(cp) = log.newest_checkpoint() {
        print!("{}", cp.note);
    }
    Ok(())
}

/// Bytes per block handed to a parser worker in line mode (a longer line makes a
/// longer block, up to the event limit). Small enough that the pieces handed back
/// by the appender are soon reused.
const BLOCK_BYTES: usize = 2 << 20;
/// Parser workers in line mode.
const PARSERS: usize = 2;

/// Handles of the parser threads; joined on drop.
struct Parsers(Vec<std::thread::JoinHandle<()>>);

impl Drop for Parsers {
    fn drop(&mut self) {
        for h in self.0.drain(..) {
            let _ = h.join();
        }
    }
}

/// Whether the input is JSON lines: always for `--format jsonl`; for `auto` and
/// `k8s-audit` when the first line is one complete JSON object that is not an
/// EventList (the same rule the sequential reader's detection uses).
fn is_line_mode(fmt: InputFormat, input: &mut dyn BufRead) -> anyhow::Result<bool> {
    if fmt == InputFormat::Jsonl {
        return Ok(true);
    }
    if matches!(fmt, InputFormat::Json | InputFormat::Auditd) {
        return Ok(false);
    }
    let buf = input.fill_buf()?;
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else { return Ok(false) };
    let line = &buf[..nl];
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    // A CloudTrail log file is one {"Records":[...]} object, often on one line: its
    // records are streamed by the sequential reader.
    Ok(matches!(serde_json::from_slice::<serde_json::Value>(line),
        Ok(serde_json::Value::Object(ref m))
            if m.get("kind").and_then(|k| k.as_str()) != Some("EventList") && !m.contains_key("Records")))
}

/// Starts the parser threads. In line mode a reader thread cuts the input into
/// blocks at line ends and two workers parse blocks in parallel; the pieces come
/// back in input order. Otherwise one thread parses sequentially.
fn spawn_parsers(
    mut input: Box<dyn BufRead + Send>,
    fmt: InputFormat,
    max_entry: usize,
    normalizer: Normalizer,
    skip_invalid: bool,
    seal_job: Option<SealJob>,
    pool: Pool,
) -> anyhow::Result<(mpsc::Receiver<Piece>, Parsers)> {
    let (tx, rx) = mpsc::sync_channel::<Piece>(2);
    if !is_line_mode(fmt, &mut *input)? {
        let h = std::thread::spawn(move || {
            let mut reader = EventReader::new(input, fmt, max_entry).with_normalizer(normalizer);
            loop {
                let mut piece = pool.take();
                let (done, error) = match read_piece(&mut reader, seal_job.as_ref(), &mut piece) {
                    Ok(0) => (true, None),
                    Ok(_) => (false, None),
                    Err(e) => (e.is_fatal() || !skip_invalid, Some(e)),
                };
                piece.error = error;
                let failed = piece.seal_error.is_some();
                if !piece.is_empty() && tx.send(piece).is_err() || failed {
                    return;
                }
                if done {
                    return;
                }
            }
        });
        return Ok((rx, Parsers(vec![h])));
    }
    // Line mode. Blocks go round-robin to the workers; results come back through one
    // channel per worker and are merged in block order.
    // Strict formats keep their check on every line; their reader detects the
    // lines framing of each block as `auto` does.
    let line_fmt = match fmt {
        InputFormat::K8sAudit | InputFormat::CloudTrail | InputFormat::GcpAudit | InputFormat::Ocsf => fmt,
        _ => InputFormat::Jsonl,
    };
    let mut handles = Vec::new();
    let mut block_txs = Vec::new();
    let mut result_rxs = Vec::new();
    for _ in 0..PARSERS {
        let (btx, brx) = mpsc::sync_channel::<(Vec<u8>, u64, u64)>(1);
        let (rtx, rrx) = mpsc::sync_channel::<Vec<Piece>>(1);
        let normalizer = normalizer.clone();
        let seal_job = seal_job.clone();
        let pool = pool.clone();
        handles.push(std::thread::spawn(move || {
            // The piece a block's last (empty) read used, for the next block.
            let mut spare: Option<Piece> = None;
            for (block, base_line, base_offset) in brx {
                let mut reader = EventReader::new(std::io::Cursor::new(block), line_fmt, max_entry)
                    .with_normalizer(normalizer.clone());
                let mut pieces = Vec::new();
                loop {
                    let mut piece = spare.take().unwrap_or_else(|| pool.take());
                    let (done, error) = match read_piece(&mut reader, seal_job.as_ref(), &mut piece) {
                        Ok(0) => (true, None),
                        Ok(_) => (false, None),
                        Err(e) => (e.is_fatal() || !skip_invalid, Some(shift(e, base_line - 1, base_offset))),
                    };
                    let mut stop = error.as_ref().is_some_and(|e| e.is_fatal() || !skip_invalid);
                    piece.error = error;
                    stop |= piece.seal_error.is_some();
                    if !piece.is_empty() {
                        pieces.push(piece);
                    } else {
                        spare = Some(piece);
                    }
                    if done || stop {
                        break;
                    }
                }
                if rtx.send(pieces).is_err() {
                    return;
                }
            }
        }));
        block_txs.push(btx);
        result_rxs.push(rrx);
    }
    // The reader: cut blocks at the last newline, count lines for error locations.
    // A line longer than the event limit is skipped here, without buffering it, and
    // reported in its place.
    let (order_tx, order_rx) = mpsc::sync_channel::<Slot>(PARSERS * 2);
    let block_bytes = BLOCK_BYTES;
    handles.push(std::thread::spawn(move || {
        let mut carry: Vec<u8> = Vec::new();
        let (mut line, mut offset) = (1u64, 0u64);
        let mut worker = 0usize;
        let mut eof = false;
        'blocks: while !eof {
            let mut block = std::mem::take(&mut carry);
            while block.len() < block_bytes {
                match input.fill_buf() {
                    Ok([]) | Err(_) => {
                        eof = true;
                        break;
                    }
                    Ok(got) => {
                        let n = got.len();
                        block.extend_from_slice(got);
                        input.consume(n);
                    }
                }
            }
            // A block starts at a line start. Cut it at its last line end; a line
            // longer than the block is read on up to the event limit.
            let mut searched = 0;
            while !eof {
                match block[searched..].iter().rposition(|&b| b == b'\n') {
                    Some(p) => {
                        carry = block.split_off(searched + p + 1);
                        break;
                    }
                    None if block.len() <= max_entry => {
                        searched = block.len();
                        match input.fill_buf() {
                            Ok([]) | Err(_) => eof = true,
                            Ok(got) => {
                                let n = got.len();
                                block.extend_from_slice(got);
                                input.consume(n);
                            }
                        }
                    }
                    None => {
                        // The line exceeds the event limit: skip to its end.
                        let mut size = block.len() as u64;
                        loop {
                            match input.fill_buf() {
                                Ok([]) | Err(_) => {
                                    eof = true;
                                    break;
                                }
                                Ok(got) => match got.iter().position(|&b| b == b'\n') {
                                    Some(p) => {
                                        size += p as u64;
                                        input.consume(p + 1);
                                        break;
                                    }
                                    None => {
                                        let n = got.len();
                                        size += n as u64;
                                        input.consume(n);
                                    }
                                },
                            }
                        }
                        let location = stele_formats::Location { line, byte_offset: offset };
                        let e = FormatError::TooLarge { location, size, limit: max_entry };
                        if order_tx.send(Slot::Error(e)).is_err() {
                            return;
                        }
                        line += 1;
                        offset += size + 1;
                        continue 'blocks;
                    }
                }
            }
            if block.is_empty() {
                break;
            }
            let lines = memchr_count(&block);
            let len = block.len() as u64;
            if block_txs[worker].send((block, line, offset)).is_err() || order_tx.send(Slot::Worker(worker)).is_err() {
                return;
            }
            line += lines;
            offset += len;
            worker = (worker + 1) % PARSERS;
        }
    }));
    // The merger: pieces in block order.
    handles.push(std::thread::spawn(move || {
        for slot in order_rx {
            let worker = match slot {
                Slot::Worker(w) => w,
                Slot::Error(e) => {
                    let stop = !skip_invalid;
                    if tx.send(Piece::new(Batch::new(), Some(e))).is_err() || stop {
                        return;
                    }
                    continue;
                }
            };
            let Ok(pieces) = result_rxs[worker].recv() else { return };
            for p in pieces {
                let stop = p.seal_error.is_some() || p.error.as_ref().is_some_and(|e| e.is_fatal() || !skip_invalid);
                if tx.send(p).is_err() || stop {
                    return;
                }
            }
        }
    }));
    Ok((rx, Parsers(handles)))
}

/// What the merger takes next: a worker's block, or an error the reader found.
enum Slot {
    Worker(usize),
    Error(FormatError),
}

fn memchr_count(block: &[u8]) -> u64 {
    block.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Moves an error found in a block to its place in the whole input.
fn shift(e: FormatError, lines: u64, offset: u64) -> FormatError {
    let fix = |l: stele_formats::Location| stele_formats::Location {
        line: l.line + lines,
        byte_offset: l.byte_offset + offset,
    };
    match e {
        FormatError::TooLarge { location, size, limit } => {
            FormatError::TooLarge { location: fix(location), size, limit }
        }
        FormatError::InvalidEvent { location, reason } => {
            FormatError::InvalidEvent { location: location.map(fix), reason }
        }
        FormatError::Malformed { location, reason } => FormatError::Malformed { location: fix(location), reason },
        FormatError::Io { location, source } => FormatError::Io { location: fix(location), source },
        other => other,
    }
}

/// `stele import --follow FILE`: see [`crate::follow`].
pub(crate) fn follow(
    config: &Config,
    data: DataArg,
    format: FormatArg,
    stream: &str,
    idle_exit: Option<f64>,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let [file] = files else {
        return Err(crate::Failure::usage("--follow reads exactly one file"));
    };
    let fmt = match input_format(format) {
        InputFormat::Auto => InputFormat::Jsonl,
        InputFormat::Json | InputFormat::Auditd => {
            return Err(crate::Failure::usage(
                "--follow reads JSON lines (formats auto, jsonl, k8s-audit, cloudtrail, gcp-audit, ocsf)",
            ));
        }
        f => f,
    };
    let dir = config.data_dir(data.data.as_ref())?;
    stele_store::streams::check_stream_name(stream)?;
    let idle_exit = match idle_exit {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            return Err(crate::Failure::usage("--idle-exit must be a number of seconds"));
        }
        s => s.map(Duration::from_secs_f64),
    };
    let args = crate::follow::FollowArgs { file, stream, format: fmt, poll: Duration::from_millis(100), idle_exit };
    crate::follow::run(config, &dir, &args)
}
