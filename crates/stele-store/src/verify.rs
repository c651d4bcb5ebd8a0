//! Full verification of a data directory: every payload against its leaf, every leaf
//! hash against the stored hashes, the whole tree rebuilt and compared with every
//! stored tile level, every kept checkpoint's signature and root, and the payload
//! segments checked for missing, extra, duplicated or reordered chunks. Verification
//! only reads; it never repairs.
//!
//! Memory stays bounded whatever the log size: entries are streamed in batches and
//! only the chunks still being consumed are held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::{HASH_LEN, Hash, leaf_hash};
use stele_tlog::leaf::{LEAF_LEN, Leaf};
use stele_tlog::merkle::Frontier;
use stele_tlog::note::Note;
use stele_tlog::tile::TILE_HEIGHT;

use crate::backend::StorageFile;
use crate::chunk::Chunk;
use crate::error::{Result, StoreError};
use crate::files::{LOCATOR_LEN, Locator, LogFiles};
use crate::hashes::stored_count;
use crate::header::{HEADER_LEN, Header, Kind};
use crate::layout;
use crate::log::par_map_min;
use crate::reader::LogReader;
use crate::records;
use crate::streams::{SYSTEM_STREAM_ID, Streams};

/// Entries read per batch.
const BATCH: u64 = 16_384;
/// Problems recorded before verification stops collecting (it still finishes).
const MAX_PROBLEMS: usize = 100;

/// One thing verification found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The first entry affected, when there is one.
    pub index: Option<u64>,
    /// Where: a file name, with an offset when useful.
    pub location: String,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "entry {i} ({}): {}", self.location, self.what),
            None => write!(f, "{}: {}", self.location, self.what),
        }
    }
}

/// Result of a verification pass.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Entries in the log.
    pub tree_size: u64,
    /// Root hash of the log.
    pub root_hash: Hash,
    /// Entries checked.
    pub entries: u64,
    /// Payload bytes checked.
    pub payload_bytes: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Problems, first found first (at most 100).
    pub problems: Vec<Problem>,
    /// Things that are not part of the log and not damage: bytes after the end of a
    /// file the writer appends to, left by an interrupted (or, beside a running writer,
    /// an in-progress) commit. The writer removes them when it opens the log.
    pub notes: Vec<String>,
    /// Payloads removed by retention, each under a deletion record that was checked:
    /// in the log, naming exactly the entries whose payloads are gone, and no earlier
    /// than its policy's minimum retention.
    pub deletions: Vec<VerifiedDeletion>,
    /// RFC 3161 tokens stored in `timestamps.dat`, with their offsets. Their framing
    /// and tree sizes are checked here; the tokens themselves are checked with
    /// `stele-timestamp` by the caller, which knows the trusted TSA certificates.
    pub timestamps: Vec<(u64, crate::timestamps::TimestampRecord)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// One segment removed by retention, as `verify` found it recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDeletion {
    /// The record's contents.
    pub record: crate::retention::DeletionRecord,
    /// Index of the deletion record.
    pub record_index: u64,
}

impl std::fmt::Display for VerifiedDeletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        let runs: Vec<String> =
            r.ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        let when =
            jiff::Timestamp::from_nanosecond(i128::from(r.deleted_ns)).map(|t| t.to_string()).unwrap_or_default();
        write!(
            f,
            "entries {} ({} of stream {}): payloads deleted by policy {} ({}) at {when}, recorded at entry {}",
            runs.join(","),
            r.entries,
            r.stream,
            r.policy,
            r.mode,
            self.record_index
        )
    }
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, index: Option<u64>, location: impl Into<String>, what: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { index, location: location.into(), what: what.into() });
        }
    }
}

/// Options of a verification pass.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// A signed checkpoint held outside the data directory; the log must contain it
    /// and be consistent with it (catches a rollback that cut entries and checkpoints).
    pub against: Option<Vec<u8>>,
    /// Called with the number of entries checked so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// The first key the verifier trusts; the key statements of `_stele/keys` lead
    /// from it to the current key (default: the data directory's `keys/first.vkey`).
    pub trusted_key: Option<stele_tlog::note::NoteVerifier>,
}

/// Per removed segment, the entries the walk found pointing at it, as index runs.
type DeletedRuns = BTreeMap<u32, Vec<(u64, u64)>>;

struct SegmentCursor {
    /// Where the next chunk must start (unknown for the first chunk a range pass meets).
    next_offset: Option<u64>,
    /// The chunk being consumed: offset, decoded chunk, entries consumed.
    current: Option<(u64, Arc<Chunk>, usize)>,
}

/// Verifies everything in the log behind `reader`.
pub fn verify(reader: &LogReader, options: &VerifyOptions<'_>) -> Result<VerifyReport> {
    let started = Instant::now();
    let files = reader.files();
    let n = reader.tree_size();
    let mut report = VerifyReport { tree_size: n, ..VerifyReport::default() };
    // File headers first: damage there explains what follows, and must not be crowded
    // out of the report by the problems it causes.
    check_header_fields(files, &mut report)?;

    // Checkpoints: parse, check signatures (batched) and order; roots are checked as
    // the tree is rebuilt.
    let mut expected_roots: BTreeMap<u64, Vec<(String, Hash)>> = BTreeMap::new();
    let stored = reader.checkpoints()?;
    check_checkpoints(reader, &stored, &mut report, &mut expected_roots, options.trusted_key.as_ref());
    if let Some(ext) = &options.against {
        match open_outside(reader, ext) {
            Ok(cp) if cp.tree_size > n => report.problem(
                Some(n),
                "--against",
                format!(
                    "the outside checkpoint covers {} entries but the log has only {n}: entries were removed (rollback or truncation)",
                    cp.tree_size
                ),
            ),
            Ok(cp) => expected_roots.entry(cp.tree_size).or_default().push(("the outside checkpoint".into(), cp.root_hash)),
            Err(e) => report.problem(None, "--against", e),
        }
    }

    let mut frontier = Frontier::new();
    check_roots(&frontier, &mut expected_roots, &mut report);
    let mut cursors: HashMap<u32, SegmentCursor> = HashMap::new();
    // Segments the writer may still append to: open at the last recovery anchor, or
    // created after it. Bytes after the last chunk of any other segment are damage.
    let state = crate::state::read(&files.state)?.unwrap_or_default();
    let appendable = |segno: u32| segno >= state.next_segno || state.open_segments.iter().any(|s| s.segno == segno);
    let mut deleted_runs = DeletedRuns::new();
    let mut walk = Walk {
        frontier: &mut frontier,
        expected_roots: &mut expected_roots,
        cursors: &mut cursors,
        durable: state.tree_size,
        range_start: None,
        deleted: &mut deleted_runs,
        report: &mut report,
    };
    walk.entries(reader, 0, n, options.progress)?;
    check_deletions(reader, deleted_runs, &mut report);
    check_timestamps(reader, &mut report)?;
    // Every segment must end exactly after its last chunk, every chunk fully used.
    for (segno, c) in &cursors {
        let name = layout::segment(*segno);
        if let Some((offset, chunk, used)) = &c.current
            && *used < chunk.entries.len()
        {
            report.problem(
                Some(chunk.entries[*used].0),
                format!("{name} offset {offset}"),
                "chunk holds entries no locator names",
            );
        }
        // A segment that does not open was reported with the entries that name it.
        let f = match files.segment(*segno) {
            Ok((f, _)) => f,
            Err(StoreError::Corrupt(_)) => continue,
            Err(e) => return Err(e),
        };
        let len = LogFiles::len(&f, &name)?;
        let next_offset = c.next_offset.unwrap_or(HEADER_LEN);
        if len > next_offset && appendable(*segno) {
            report.notes.push(tail_note(&name, len - next_offset));
        } else if len != next_offset {
            report.problem(
                None,
                format!("{name} offset {next_offset}"),
                format!("{} unexpected bytes after the last chunk", len as i64 - next_offset as i64),
            );
        }
    }
    for name in files.backend.list(layout::SEGMENTS_DIR).map_err(StoreError::io("listing", layout::SEGMENTS_DIR))? {
        match layout::parse_segment(&name) {
            Some(segno) if cursors.contains_key(&segno) => {}
            Some(segno) if files.deleted_segment(segno).is_some() => report.notes.push(format!(
                "{}/{name}: removed by retention, but the file is still there (an interrupted deletion; the next retention pass removes it)",
                layout::SEGMENTS_DIR
            )),
            // Created by a commit that did not finish (or is finishing now).
            Some(segno) if segno >= state.next_segno => {
                report.notes.push(format!(
                    "{}/{name}: a segment no entry uses yet, created by an interrupted or in-progress commit",
                    layout::SEGMENTS_DIR
                ));
            }
            _ => report.problem(None, format!("{}/{name}", layout::SEGMENTS_DIR), "segment file that no entry uses"),
        }
    }
    // Every file ends exactly where the log does: leaves and locators after entry n - 1,
    // each hash level after its last complete node, the record files after their last
    // valid record.
    let check_len = |report: &mut VerifyReport, name: &str, len: u64, end: u64| {
        if len > end {
            report.notes.push(tail_note(name, len - end));
        } else {
            check_len(report, name, len, end);
        }
    };
    let leaves_len = LogFiles::len(&files.leaves, layout::LEAVES)?;
    check_len(&mut report, layout::LEAVES, leaves_len, HEADER_LEN + n * LEAF_LEN as u64);
    let locators_len = LogFiles::len(&files.locators, layout::LOCATORS)?;
    check_len(&mut report, layout::LOCATORS, locators_len, HEADER_LEN + n * LOCATOR_LEN as u64);
    for k in 0.. {
        let name = layout::hash_level(k);
        let want = HEADER_LEN + stored_count(n, k) * HASH_LEN as u64;
        let durable = HEADER_LEN + stored_count(state.tree_size, k) * HASH_LEN as u64;
        if k >= files.hashes.levels() {
            if stored_count(n, k) == 0 {
                break;
            }
            if stored_count(state.tree_size, k) == 0 {
                report.notes.push(format!("{name} is not written yet (an interrupted or in-progress commit)"));
            } else {
                report.problem(None, name, "hash level file is missing");
            }
            continue;
        }
        let len = LogFiles::len(&files.hashes.file(k)?, &name)?;
        if len < want && len >= durable {
            report.notes.push(format!(
                "{name}: {} hashes not written yet (an interrupted or in-progress commit)",
                (want - len) / HASH_LEN as u64
            ));
        } else {
            check_len(&mut report, &name, len, want);
        }
    }
    for (file, name) in [(files.checkpoints(), layout::CHECKPOINTS), (files.streams.clone(), layout::STREAMS)] {
        let (_, end) = records::scan(&file, name, HEADER_LEN)?;
        check_len(&mut report, name, LogFiles::len(&file, name)?, end);
    }
    for (size, roots) in &expected_roots {
        for (what, _) in roots {
            report.problem(None, layout::CHECKPOINTS, format!("{what} covers {size} entries, beyond the log's {n}"));
        }
    }
    report.root_hash = frontier.root();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Verifies entries `[from, to)` and the checkpoints with a tree size in `(from, to]`:
/// the incremental pass of a checker that verified `[0, from)` before.
///
/// For each entry: the leaf hash against the stored level-0 hash, the leaf record, the
/// payload against the leaf digest (and the order of the chunks within the range); the
/// upper-level hashes completed in the range against the stored ones; and for each
/// checkpoint in the range its signature and its root against the tree rebuilt from
/// the leaves. The tree before `from` is taken from the stored hashes, and checked
/// against `trusted` (a tree size and root the caller trusts, such as the last
/// checkpoint an earlier pass verified): equal roots when the size is `from`, an RFC
/// 9162 consistency proof from the stored tiles when it is smaller, the rebuilt root
/// when it lies in the range. A trusted size beyond `to` is reported as a problem
/// (entries were removed). File lengths, stray segments and header fields are only
/// checked by [`verify`].
///
/// `report.tree_size` and `report.root_hash` are `to` and the root rebuilt at `to`;
/// `report.entries` counts the entries checked. Errors are reading failures that stop
/// the pass (`InvalidArgument` for `from > to` or `to` beyond the log).
pub fn verify_range(
    reader: &LogReader,
    from: u64,
    to: u64,
    trusted: Option<(u64, Hash)>,
    options: &VerifyOptions<'_>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let n = reader.tree_size();
    if from > to || to > n {
        return Err(StoreError::InvalidArgument(format!("range [{from}, {to}) is not within the log's {n} entries")));
    }
    let files = reader.files();
    let mut report = VerifyReport { tree_size: to, ..VerifyReport::default() };
    let mut expected_roots: BTreeMap<u64, Vec<(String, Hash)>> = BTreeMap::new();
    let stored: Vec<_> =
        reader.checkpoints()?.into_iter().filter(|c| c.tree_size > from && c.tree_size <= to).collect();
    check_checkpoints(reader, &stored, &mut report, &mut expected_roots, options.trusted_key.as_ref());
    let mut frontier = Frontier::from_reader(&files.hashes, from)?;
    match trusted {
        Some((size, _)) if size > to => report.problem(
            Some(to),
            "trusted checkpoint",
            format!("the trusted tree covers {size} entries but the range ends at {to}: entries were removed"),
        ),
        Some((size, root)) if size > from => {
            expected_roots.entry(size).or_default().push(("the trusted tree".into(), root));
        }
        Some((size, root)) if size == from => {
            if frontier.root() != root {
                report.problem(
                    from.checked_sub(1),
                    layout::hash_level(0),
                    format!("the stored tree of size {from} differs from the trusted root"),
                );
            }
        }
        Some((0, _)) | None => {}
        Some((size, root)) => {
            let consistent = reader.consistency_proof(size, from).and_then(|proof| {
                stele_tlog::merkle::verify_consistency(size, from, &root, &frontier.root(), &proof)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            });
            if let Err(e) = consistent {
                report.problem(
                    from.checked_sub(1),
                    layout::hash_level(0),
                    format!(
                        "the stored tree of size {from} is not consistent with the trusted tree of size {size}: {e}"
                    ),
                );
            }
        }
    }
    check_roots(&frontier, &mut expected_roots, &mut report);
    let state = crate::state::read(&files.state)?.unwrap_or_default();
    let mut cursors: HashMap<u32, SegmentCursor> = HashMap::new();
    // Removed segments are checked against their records by full passes.
    let mut deleted_runs = DeletedRuns::new();
    let mut walk = Walk {
        frontier: &mut frontier,
        expected_roots: &mut expected_roots,
        cursors: &mut cursors,
        durable: state.tree_size,
        range_start: Some(from),
        deleted: &mut deleted_runs,
        report: &mut report,
    };
    walk.entries(reader, from, to, options.progress)?;
    report.entries = to - from;
    for (size, roots) in &expected_roots {
        for (what, _) in roots {
            report.problem(None, layout::CHECKPOINTS, format!("{what} of size {size} was not met by the range"));
        }
    }
    report.root_hash = frontier.root();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The state of one walk over the entries, shared by [`verify`] and [`verify_range`].
struct Walk<'a> {
    frontier: &'a mut Frontier,
    expected_roots: &'a mut BTreeMap<u64, Vec<(String, Hash)>>,
    cursors: &'a mut HashMap<u32, SegmentCursor>,
    /// Tree size of the recovery anchor (see [`check_upper_levels`]).
    durable: u64,
    /// First entry of a range pass; `None` for a full pass.
    range_start: Option<u64>,
    /// Entries found pointing at segments removed by retention.
    deleted: &'a mut DeletedRuns,
    report: &'a mut VerifyReport,
}

impl Walk<'_> {
    /// Checks entries `[from, to)` in batches; `self.frontier` must be at `from`.
    fn entries(
        &mut self,
        reader: &LogReader,
        from: u64,
        to: u64,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<()> {
        let files = reader.files();
        let streams = reader.streams();
        let report = &mut *self.report;
        let mut last_time = match from.checked_sub(1) {
            Some(prev) => {
                files.read_leaf_bytes(prev, 1).ok().and_then(|raw| Leaf::decode(&raw).ok()).map_or(0, |l| l.received_ns)
            }
            None => 0,
        };
        let mut upper: BTreeMap<u32, (u64, Vec<Hash>)> = BTreeMap::new();
        let mut start = from;
        while start < to {
            let count = BATCH.min(to - start);
            let leaves = files.read_leaf_bytes(start, count)?;
            let locs = files.read_locators(start, count)?;
            let stored_hashes = files.read_leaf_hashes(start, count)?;
            let mut decoded: Vec<Option<Leaf>> = Vec::with_capacity(count as usize);
            for j in 0..count as usize {
                let index = start + j as u64;
                let raw = &leaves[j * LEAF_LEN..(j + 1) * LEAF_LEN];
                let h = leaf_hash(raw);
                if h != stored_hashes[j] {
                    report.problem(
                        Some(index),
                        layout::hash_level(0),
                        "stored leaf hash differs from the hash of the leaf record",
                    );
                }
                self.frontier.push(h, |level, idx, hash| {
                    if level > 0 && level % TILE_HEIGHT == 0 {
                        upper.entry(level / TILE_HEIGHT).or_insert((idx, Vec::new())).1.push(*hash);
                    }
                });
                check_roots(self.frontier, self.expected_roots, report);
                match Leaf::decode(raw) {
                    Ok(leaf) => {
                        if leaf.received_ns < last_time {
                            report.problem(Some(index), layout::LEAVES, "received time goes backwards");
                        }
                        last_time = leaf.received_ns;
                        if streams.name(leaf.stream_id).is_none() {
                            report.problem(
                                Some(index),
                                layout::LEAVES,
                                format!("unknown stream id {}", leaf.stream_id),
                            );
                        }
                        decoded.push(Some(leaf));
                    }
                    Err(e) => {
                        report.problem(Some(index), layout::LEAVES, e.to_string());
                        decoded.push(None);
                    }
                }
            }
            check_payloads(
                files,
                start,
                self.range_start,
                &decoded,
                &locs,
                &streams,
                self.cursors,
                self.deleted,
                report,
            )?;
            check_upper_levels(files, &mut upper, self.durable, report)?;
            start += count;
            report.entries = start;
            if let Some(p) = progress {
                p(start);
            }
        }
        Ok(())
    }
}

/// Checks the framing of `timestamps.dat` and that every token names a tree size the
/// log has; keeps the records for the caller to verify the tokens.
fn check_timestamps(reader: &LogReader, report: &mut VerifyReport) -> Result<()> {
    let stored = crate::timestamps::read(reader.files())?;
    for (offset, what) in &stored.damaged {
        report.problem(None, format!("{} offset {offset}", layout::TIMESTAMPS), what.clone());
    }
    if let Some(offset) = stored.torn_tail {
        report.notes.push(format!(
            "{} offset {offset}: an incomplete last record (an interrupted append); not part of the log",
            layout::TIMESTAMPS
        ));
    }
    for (offset, r) in &stored.records {
        if r.tree_size > report.tree_size {
            report.problem(
                None,
                format!("{} offset {offset}", layout::TIMESTAMPS),
                format!("a token for tree size {} but the log has {} entries", r.tree_size, report.tree_size),
            );
        }
    }
    report.timestamps = stored.records;
    Ok(())
}

/// Checks every segment `deletions.dat` names against its deletion record: the record
/// is in the log, in `_stele/retention`, names this segment and exactly the entries the
/// walk found pointing at it, and respects its policy's minimum retention.
fn check_deletions(reader: &LogReader, mut runs: DeletedRuns, report: &mut VerifyReport) {
    let n = reader.tree_size();
    for (segno, record_index) in reader.files().deleted_segments() {
        let found = runs.remove(&segno).unwrap_or_default();
        let at = format!("{} (segment {segno})", layout::DELETIONS);
        if record_index >= n {
            report.problem(None, at, format!("names deletion record {record_index}, beyond the log's {n} entries"));
            continue;
        }
        let entry = match reader.entry(record_index) {
            Ok(e) => e,
            Err(e) => {
                report.problem(Some(record_index), at, format!("its deletion record cannot be read: {e}"));
                continue;
            }
        };
        let record = (entry.stream == crate::streams::RETENTION_STREAM
            && entry.leaf.payload_format == crate::log::FORMAT_STELE_RECORD)
            .then(|| crate::retention::DeletionRecord::parse(&entry.payload))
            .flatten();
        let Some(record) = record else {
            report.problem(Some(record_index), at, "the entry it names is not a deletion record in _stele/retention");
            continue;
        };
        if record.segment != segno {
            report.problem(
                Some(record_index),
                at,
                format!("the deletion record names segment {}, not this one", record.segment),
            );
            continue;
        }
        if record.ranges != found {
            report.problem(
                Some(record_index),
                at,
                format!(
                    "the deletion record covers entries {:?} but the entries whose payloads are gone from it are {found:?}",
                    record.ranges
                ),
            );
            continue;
        }
        if !record.respects_minimum() {
            report.problem(
                Some(record_index),
                at,
                format!(
                    "deleted before its policy's minimum retention of {} s after the newest entry",
                    record.min_retention_seconds
                ),
            );
            continue;
        }
        report.deletions.push(VerifiedDeletion { record, record_index });
    }
}

fn tail_note(name: &str, bytes: u64) -> String {
    format!(
        "{name}: {bytes} bytes after the end of the log are not part of it (an interrupted or in-progress commit; the writer removes them when it opens the log)"
    )
}

/// Reports a file that does not end at `end`, where what the log holds in it ends.
fn check_len(report: &mut VerifyReport, name: &str, len: u64, end: u64) {
    if len > end {
        report.problem(
            None,
            format!("{name} offset {end}"),
            format!("{} unexpected bytes after the end of the log", len - end),
        );
    } else if len < end {
        report.problem(None, format!("{name} offset {len}"), format!("{} bytes missing at the end", end - len));
    }
}

/// Header fields `a`, `b`, `c` are written as zero in every file but a hash level
/// (`a` = tile level) and a segment (checked against its entries in `check_payloads`).
fn check_header_fields(files: &LogFiles, report: &mut VerifyReport) -> Result<()> {
    let mut fixed: Vec<(Arc<dyn StorageFile>, String, Kind, u32)> = vec![
        (files.leaves.clone(), layout::LEAVES.into(), Kind::Leaves, 0),
        (files.locators.clone(), layout::LOCATORS.into(), Kind::Locators, 0),
        (files.checkpoints(), layout::CHECKPOINTS.into(), Kind::Checkpoints, 0),
        (files.streams.clone(), layout::STREAMS.into(), Kind::Streams, 0),
        (files.state.clone(), layout::STATE.into(), Kind::State, 0),
    ];
    for k in 0..files.hashes.levels() {
        fixed.push((files.hashes.file(k)?, layout::hash_level(k), Kind::Hashes, k));
    }
    for (file, name, kind, a) in fixed {
        let h = Header::read(&file, &name, kind)?;
        if (h.a, h.b, h.c) != (a, 0, 0) {
            report.problem(
                None,
                name,
                format!("file header fields are ({}, {}, {}), written as ({a}, 0, 0)", h.a, h.b, h.c),
            );
        }
    }
    Ok(())
}

/// A stele record registering a stream commits to its name: `streams.dat` must give
/// that stream the same name.
fn check_stream_record(index: u64, payload: &[u8], streams: &Streams, report: &mut VerifyReport) {
    let Ok(r) = serde_json::from_slice::<serde_json::Value>(payload) else { return };
    if r["type"] != "stream" {
        return;
    }
    let id = r["stream_id"].as_u64().and_then(|id| u32::try_from(id).ok());
    let stored = id.and_then(|id| streams.name(id));
    if r["name"].as_str().is_none() || stored != r["name"].as_str() {
        report.problem(
            Some(index),
            layout::STREAMS,
            format!(
                "stream {} is named {} in the log but {stored:?} in {}",
                r["stream_id"],
                r["name"],
                layout::STREAMS
            ),
        );
    }
}

fn open_outside(reader: &LogReader, bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    // Checked against the key chain: an outside checkpoint may predate a rotation.
    let (chain, _) = crate::keys::chain(reader, None).map_err(|e| format!("outside checkpoint: {e}"))?;
    let v = chain.open_checkpoint(bytes).map_err(|e| format!("outside checkpoint: {e}"))?;
    Ok(v.checkpoint)
}

fn check_checkpoints(
    reader: &LogReader,
    stored: &[crate::checkpoints::StoredCheckpoint],
    report: &mut VerifyReport,
    expected: &mut BTreeMap<u64, Vec<(String, Hash)>>,
    trusted: Option<&stele_tlog::note::NoteVerifier>,
) {
    let v = reader.verifier();
    // After a rotation (or with a first key given), each checkpoint is checked against
    // the key chain of `_stele/keys`: signed by a key that may sign its tree size.
    let chain = match crate::keys::chain(reader, trusted) {
        Ok((chain, problems)) => {
            for (index, p) in problems {
                report.problem(index, crate::keys::STATEMENTS, p);
            }
            if chain.current() != &v {
                report.problem(
                    None,
                    layout::VERIFIER_KEY,
                    format!("{} is not the last key announced in {}", v.to_vkey(), crate::keys::KEYS_STREAM),
                );
            }
            (chain.keys().len() > 1 || trusted.is_some()).then_some(chain)
        }
        Err(e) => {
            report.problem(None, crate::keys::STATEMENTS, e.to_string());
            None
        }
    };
    let mut prev_size = 0u64;
    let mut batch: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    let flush = |batch: &mut Vec<(usize, Vec<u8>, Vec<u8>)>, report: &mut VerifyReport| {
        if batch.is_empty() {
            return;
        }
        let items: Vec<(&[u8], &[u8])> = batch.iter().map(|(_, m, s)| (m.as_slice(), s.as_slice())).collect();
        if !v.verify_batch(&items) {
            for (i, m, s) in batch.iter() {
                if !v.verify(m, s) {
                    let cp = &stored[*i];
                    report.problem(
                        None,
                        format!("{} offset {}", layout::CHECKPOINTS, cp.offset),
                        format!("checkpoint of size {}: signature does not verify", cp.tree_size),
                    );
                }
            }
        }
        batch.clear();
    };
    for (i, cp) in stored.iter().enumerate() {
        let loc = format!("{} offset {}", layout::CHECKPOINTS, cp.offset);
        let note = match Note::parse(cp.note.as_bytes()) {
            Ok(n) => n,
            Err(e) => {
                report.problem(None, loc, format!("checkpoint note: {e}"));
                continue;
            }
        };
        let body = match Checkpoint::parse_body(&note.text) {
            Ok(b) => b,
            Err(e) => {
                report.problem(None, loc, format!("checkpoint body: {e}"));
                continue;
            }
        };
        if body.origin != reader.origin() || body.tree_size != cp.tree_size {
            report.problem(None, &loc, "checkpoint origin or size differs from its record");
        }
        // The writer signs a checkpoint only when the log grew.
        if i > 0 && cp.tree_size <= prev_size {
            report.problem(None, &loc, format!("checkpoint sizes do not increase ({prev_size} then {})", cp.tree_size));
        }
        prev_size = cp.tree_size;
        if let Some(chain) = &chain {
            if let Err(e) = chain.check_note(&note, &body) {
                report.problem(None, &loc, format!("checkpoint of size {}: {e}", cp.tree_size));
            }
            expected.entry(cp.tree_size).or_default().push((format!("checkpoint at {loc}"), body.root_hash));
            report.checkpoints += 1;
            continue;
        }
        let sig = note.signatures.iter().find(|s| s.name == v.name() && s.key_id == v.key_id());
        match sig {
            Some(s) => batch.push((i, note.text.clone().into_bytes(), s.signature.clone())),
            None => report.problem(None, &loc, "checkpoint has no signature by the log's key"),
        }
        if batch.len() == 1024 {
            flush(&mut batch, report);
        }
        expected.entry(cp.tree_size).or_default().push((format!("checkpoint at {loc}"), body.root_hash));
        report.checkpoints += 1;
    }
    flush(&mut batch, report);
}

fn check_roots(frontier: &Frontier, expected: &mut BTreeMap<u64, Vec<(String, Hash)>>, report: &mut VerifyReport) {
    if let Some(roots) = expected.remove(&frontier.size()) {
        let root = frontier.root();
        for (what, want) in roots {
            if want != root {
                let size = frontier.size();
                report.problem(
                    Some(size.saturating_sub(1)),
                    layout::CHECKPOINTS,
                    format!("{what}: root for size {size} differs from the tree rebuilt from the leaves"),
                );
            }
        }
    }
}

/// Compares rebuilt upper-level nodes with the stored ones. Nodes completed after the
/// recovery anchor's `durable` size are derived data the writer recomputes when it
/// opens the log: a missing or different one there is left by an interrupted commit
/// (a note); before it, damage.
fn check_upper_levels(
    files: &LogFiles,
    upper: &mut BTreeMap<u32, (u64, Vec<Hash>)>,
    durable: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    for (k, (start, hashes)) in std::mem::take(upper) {
        let have = if k < files.hashes.levels() { files.hashes.len_of(k)? } else { 0 };
        let readable = have.saturating_sub(start).min(hashes.len() as u64);
        let stored = if readable > 0 { files.hashes.read_range(k, start, readable)? } else { vec![] };
        for (j, h) in hashes.iter().enumerate() {
            if stored.get(j) != Some(h) {
                let first = (start + j as u64) << (TILE_HEIGHT * k);
                let last = ((start + j as u64 + 1) << (TILE_HEIGHT * k)) - 1;
                if last >= durable {
                    report.notes.push(format!(
                        "{}: node {} is not written yet (an interrupted or in-progress commit; derived from level 0)",
                        layout::hash_level(k),
                        start + j as u64
                    ));
                    continue;
                }
                report.problem(
                    Some(first),
                    layout::hash_level(k),
                    format!("stored hash of node {} differs from the rebuilt tree", start + j as u64),
                );
            }
        }
    }
    Ok(())
}

/// Checks the payloads of entries `[start, start + leaves.len())` and the order of
/// chunks in their segments. `range_start` is the first entry of a range pass (`None`
/// for a full pass, which starts at entry 0 and at the first chunk of each segment).
#[allow(clippy::too_many_arguments)]
fn check_payloads(
    files: &LogFiles,
    start: u64,
    range_start: Option<u64>,
    leaves: &[Option<Leaf>],
    locs: &[Locator],
    streams: &Streams,
    cursors: &mut HashMap<u32, SegmentCursor>,
    deleted: &mut DeletedRuns,
    report: &mut VerifyReport,
) -> Result<()> {
    // Chunks this batch starts to use, in first-use order, read and decoded in parallel.
    let mut new_chunks: Vec<Locator> = Vec::new();
    let mut seen: HashMap<Locator, ()> = HashMap::new();
    for loc in locs {
        if files.deleted_segment(loc.segno).is_some() {
            continue;
        }
        let current = cursors.get(&loc.segno).and_then(|c| c.current.as_ref()).map(|(o, _, _)| *o);
        if current != Some(loc.offset) && seen.insert(*loc, ()).is_none() {
            new_chunks.push(*loc);
        }
    }
    let decoded: Vec<std::result::Result<Arc<Chunk>, String>> = par_map_min(new_chunks.len(), 2, |i| {
        files.read_chunk_uncached(new_chunks[i].segno, new_chunks[i].offset).map_err(|e| e.to_string())
    });
    let mut fresh: HashMap<Locator, std::result::Result<Arc<Chunk>, String>> =
        new_chunks.into_iter().zip(decoded).collect();

    // Digests are checked in parallel too; the order checks are sequential.
    let mut jobs: Vec<(u64, Leaf, Arc<Chunk>, usize)> = Vec::with_capacity(leaves.len());
    for (j, loc) in locs.iter().enumerate() {
        let index = start + j as u64;
        if files.deleted_segment(loc.segno).is_some() {
            // Checked against its deletion record after the walk.
            let runs = deleted.entry(loc.segno).or_default();
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == index => *last = index,
                _ => runs.push((index, index)),
            }
            continue;
        }
        let seg_name = || layout::segment(loc.segno);
        // A range pass does not know where the chunks before its range end.
        let first_offset = if range_start.is_some() { None } else { Some(HEADER_LEN) };
        let cursor = cursors.entry(loc.segno).or_insert(SegmentCursor { next_offset: first_offset, current: None });
        let is_current = cursor.current.as_ref().is_some_and(|(o, _, _)| *o == loc.offset);
        if !is_current {
            if let Some((offset, chunk, used)) = &cursor.current
                && *used < chunk.entries.len()
            {
                report.problem(
                    Some(chunk.entries[*used].0),
                    format!("{} offset {offset}", seg_name()),
                    "chunk holds entries no locator names",
                );
            }
            if let Some(next) = cursor.next_offset
                && loc.offset != next
            {
                report.problem(
                    Some(index),
                    format!("{} offset {}", seg_name(), loc.offset),
                    format!("chunk is out of order (expected the next chunk at offset {next})"),
                );
            }
            match fresh.remove(loc) {
                Some(Ok(chunk)) => {
                    // The segment header names the entry's stream and a window start
                    // no later than any of its entries was received.
                    if let (Ok((_, info)), Some(leaf)) = (files.segment(loc.segno), leaves[j])
                        && (info.stream != leaf.stream_id || info.window_start_ns > leaf.received_ns)
                    {
                        report.problem(
                            Some(index),
                            seg_name(),
                            format!(
                                "segment header (stream {}, window from {} ns) does not fit the entry (stream {}, received {} ns)",
                                info.stream, info.window_start_ns, leaf.stream_id, leaf.received_ns
                            ),
                        );
                    }
                    let total = files.read_chunk_header(loc.segno, loc.offset).map(|h| h.total_len()).unwrap_or(0);
                    cursor.next_offset = Some(loc.offset + total);
                    // A range pass skips the entries of a chunk that come before its range
                    // (checked by an earlier pass).
                    let skip =
                        range_start.map_or(0, |from| chunk.entries.iter().take_while(|(ix, _)| *ix < from).count());
                    cursor.current = Some((loc.offset, chunk, skip));
                }
                Some(Err(e)) => {
                    report.problem(Some(index), format!("{} offset {}", seg_name(), loc.offset), e);
                    cursor.current = None;
                    continue;
                }
                None => {
                    report.problem(
                        Some(index),
                        format!("{} offset {}", seg_name(), loc.offset),
                        "locator names a chunk used before (duplicate)",
                    );
                    continue;
                }
            }
        }
        let Some((offset, chunk, used)) = cursor.current.as_mut() else { continue };
        match chunk.entries.get(*used) {
            Some((ix, _)) if *ix == index => {
                if let Some(leaf) = leaves[j] {
                    jobs.push((index, leaf, chunk.clone(), *used));
                }
                *used += 1;
            }
            _ => report.problem(
                Some(index),
                format!("{} offset {offset}", seg_name()),
                "the chunk the locator names does not hold this entry next",
            ),
        }
    }
    let matches: Vec<bool> = par_map_min(jobs.len(), 64, |i| {
        let (_, leaf, chunk, pos) = &jobs[i];
        leaf.matches_payload(&chunk.body[chunk.entries[*pos].1.clone()])
    });
    for ((index, leaf, chunk, pos), ok) in jobs.iter().zip(matches) {
        report.payload_bytes += chunk.entries[*pos].1.len() as u64;
        if ok && leaf.stream_id == SYSTEM_STREAM_ID {
            check_stream_record(*index, &chunk.body[chunk.entries[*pos].1.clone()], streams, report);
        }
        if !ok {
            let loc = locs[(index - start) as usize];
            report.problem(
                Some(*index),
                format!("{} offset {}", layout::segment(loc.segno), loc.offset),
                "payload does not match the leaf digest",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use stele_tlog::note::NoteSigner;

    use super::*;
    use crate::backend::MemoryBackend;
    use crate::chunk::Compression;
    use crate::log::{Log, LogOptions, NewEntry, init_backend};

    const ORIGIN: &str = "example.com/verify-range";

    fn append(log: &mut Log, tag: &str, n: usize) {
        let payloads: Vec<String> = (0..n).map(|i| format!(r#"{{"actor":"{tag}-{i:04}"}}"#)).collect();
        let entries: Vec<NewEntry<'_>> =
            payloads.iter().map(|p| NewEntry { stream: "app", format: 1, payload: p.as_bytes() }).collect();
        log.append(&entries).unwrap();
    }

    #[test]
    fn verify_range_checks_new_entries_and_checkpoints() {
        let backend = Arc::new(MemoryBackend::new());
        init_backend(&(backend.clone() as _), ORIGIN).unwrap();
        let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap();
        let options = LogOptions { compression: Compression::None, ..LogOptions::default() };
        let mut log = Log::open_backend(backend.clone(), ORIGIN, signer, options).unwrap();
        append(&mut log, "first", 300);
        let cp1 = log.sign_checkpoint().unwrap().unwrap();
        append(&mut log, "second", 20);
        let cp2 = log.sign_checkpoint().unwrap().unwrap();
        let reader = log.reader();
        let opts = VerifyOptions::default();
        assert!(verify(&reader, &opts).unwrap().ok());

        let a = verify_range(&reader, 0, cp1.tree_size, None, &opts).unwrap();
        assert!(a.ok(), "{:?}", a.problems);
        assert_eq!(
            (a.entries, a.checkpoints, a.root_hash),
            (cp1.tree_size, 1, reader.root_hash(cp1.tree_size).unwrap())
        );
        let b = verify_range(&reader, cp1.tree_size, cp2.tree_size, Some((cp1.tree_size, a.root_hash)), &opts).unwrap();
        assert!(b.ok(), "{:?}", b.problems);
        assert_eq!((b.entries, b.checkpoints), (20, 1));
        assert_eq!(b.root_hash, reader.root_hash(cp2.tree_size).unwrap());
        // A range starting inside a chunk, trusted by a consistency proof.
        let c = verify_range(&reader, 150, cp2.tree_size, Some((37, reader.root_hash(37).unwrap())), &opts).unwrap();
        assert!(c.ok(), "{:?}", c.problems);
        // A trusted size inside the range is met by the rebuilt tree.
        let d = verify_range(&reader, 10, 200, Some((100, reader.root_hash(100).unwrap())), &opts).unwrap();
        assert!(d.ok(), "{:?}", d.problems);

        // A wrong trusted root, or a trusted tree longer than the range, is a problem.
        let wrong = Hash([9; HASH_LEN]);
        assert!(
            !verify_range(&reader, cp1.tree_size, cp2.tree_size, Some((cp1.tree_size, wrong)), &opts).unwrap().ok()
        );
        assert!(!verify_range(&reader, 100, 200, Some((50, wrong)), &opts).unwrap().ok());
        assert!(!verify_range(&reader, 0, 100, Some((150, wrong)), &opts).unwrap().ok());
        assert!(!verify_range(&reader, 10, 200, Some((100, wrong)), &opts).unwrap().ok());
        assert!(verify_range(&reader, 5, 4, None, &opts).is_err());
        assert!(verify_range(&reader, 0, cp2.tree_size + 1, None, &opts).is_err());

        // Damage one payload of the second commit: only a range covering it fails.
        let needle = br#""actor":"second-0007""#;
        let name = backend
            .file_names()
            .into_iter()
            .find(|n| {
                n.starts_with(layout::SEGMENTS_DIR)
                    && backend.file_bytes(n).unwrap().windows(needle.len()).any(|w| w == needle)
            })
            .expect("the payload is stored uncompressed");
        let mut bytes = backend.file_bytes(&name).unwrap();
        let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        bytes[at + 12] ^= 1;
        backend.set_file_bytes(&name, bytes);
        assert!(verify_range(&reader, 0, cp1.tree_size, None, &opts).unwrap().ok());
        let bad =
            verify_range(&reader, cp1.tree_size, cp2.tree_size, Some((cp1.tree_size, a.root_hash)), &opts).unwrap();
        assert!(!bad.ok());
        assert!(bad.problems.iter().any(|p| p.index.is_some_and(|i| i >= cp1.tree_size)), "{:?}", bad.problems);
    }
}
