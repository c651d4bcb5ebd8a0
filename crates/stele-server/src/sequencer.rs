//! The sequencer: the one thread that owns the log's writer, and the indexer thread
//! that owns the query index.
//!
//! HTTP handlers validate a request completely, reserve room in the queue, and send it
//! to the sequencer. The sequencer takes everything waiting at once and appends it as
//! one group commit (one `Log::append`, so one set of fsyncs for many requests),
//! replies to each request with its own indexes, and hands the entries' fields to the
//! indexer, which indexes them while the next commit runs (sequencing apart from
//! integration: a slow index never delays an acknowledgement, only, through its bounded
//! queue, the next commit). The sequencer also signs a checkpoint every
//! `checkpoint_interval` when the tree grew. Both are plain threads, not tasks: a
//! commit blocks on fsync.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use stele_formats::Normalized;
use stele_index::{Index, Snapshot};
use stele_store::{Log, LogReader, NewEntry, StoreError};
use stele_tlog::Hash;
use tokio::sync::oneshot;

use crate::dedup::{self, Dedup, DedupTables, KeyDigest, Kind, NewKey};
use crate::error::ServerError;
use crate::metrics::Metrics;

/// A snapshot older than this is replaced after the next commit. A stale snapshot is
/// still correct (queries read entries past it from the log); this only bounds how
/// much a query reads from the log instead of the index.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(100);

/// One event of a request, validated.
pub(crate) struct PreparedEvent {
    /// Where its bytes are in the request body.
    pub(crate) range: Range<usize>,
    /// Payload format code (`EventFormat::code`).
    pub(crate) format: u8,
    /// Its normalized fields, for the index.
    pub(crate) fields: Normalized,
}

/// A request's events, appended atomically (all in the same commit, or none).
pub(crate) struct AppendRequest {
    pub(crate) stream: String,
    pub(crate) body: Bytes,
    pub(crate) events: Vec<PreparedEvent>,
    /// How retries of this request are recognised.
    pub(crate) dedup: Dedup,
    pub(crate) reply: oneshot::Sender<Result<Committed, CommitError>>,
}

/// What one request's events became.
pub(crate) struct Committed {
    pub(crate) indexes: Vec<u64>,
    pub(crate) leaf_hashes: Vec<Hash>,
    pub(crate) received_ns: u64,
    pub(crate) tree_size: u64,
    /// Per event: whether it was already in the log (a retry), so that its index is
    /// the earlier entry's and nothing new was appended for it.
    pub(crate) duplicate: Vec<bool>,
}

/// Why a request was not appended.
pub(crate) enum CommitError {
    /// The log stopped accepting writes (503).
    Unavailable(String),
    /// The request itself was refused by the store (400); validation should have
    /// caught it first.
    Rejected(String),
    /// Anything else (500).
    Failed(String),
    /// An idempotency key reused with a different body (409).
    Conflict(String),
}

pub(crate) enum Msg {
    Append(AppendRequest),
    /// Remove a segment under retention (see `Log::delete_segment`); the reply is the
    /// deletion record's index.
    DeleteSegment {
        segno: u32,
        record: Box<stele_store::retention::DeletionRecord>,
        reply: std::sync::mpsc::Sender<Result<u64, StoreError>>,
    },
    /// Carry out the pending erasures nothing blocks any more under these policies;
    /// the reply is how many were carried out.
    CarryOutErasures {
        policies: Vec<stele_retention::Policy>,
        reply: std::sync::mpsc::Sender<Result<usize, String>>,
    },
    /// Resolve a subject to their key, or erase a key (`POST /v1/admin/erasures`): the
    /// sequencer owns both the log and the sealer's keys.
    Erasure {
        op: crate::erasure_api::ErasureOp,
        reply: oneshot::Sender<crate::erasure_api::ErasureResult>,
    },
    /// Rotate the log's key or revoke an earlier one (`POST /v1/admin/keys/...`).
    Keys {
        op: crate::key_api::KeyOp,
        reply: oneshot::Sender<crate::key_api::KeyResult>,
    },
    Shutdown,
}

/// State shared between the sequencer and the HTTP handlers.
pub(crate) struct Shared {
    pub(crate) reader: LogReader,
    /// Tree size of the newest signed checkpoint, published after the reader sees it
    /// (receipts wait on it).
    pub(crate) checkpoints: tokio::sync::watch::Sender<u64>,
    /// Node hashes remembered for receipts.
    pub(crate) node_cache: crate::nodes::NodeCache,
    pub(crate) snapshot: RwLock<Snapshot>,
    pub(crate) poisoned: Mutex<Option<String>>,
    /// Set while commits are refused because the disk is full (their space could not
    /// be reserved; nothing was written): `/healthz` answers 503 with it. Requests
    /// still reach the sequencer, so the first commit after space returns clears it.
    pub(crate) disk_full: Mutex<Option<String>>,
    /// Events and payload bytes accepted but not yet committed (the queue limits).
    pub(crate) queued_events: AtomicUsize,
    pub(crate) queued_bytes: AtomicUsize,
    pub(crate) sequencer_alive: AtomicBool,
    pub(crate) metrics: Metrics,
    /// Refusals since the last `shedding` record (see `lifecycle`).
    pub(crate) shed: crate::lifecycle::Shed,
    /// Newest commit time per stream (for silent-source detection).
    pub(crate) last_seen: crate::silence::LastSeen,
    /// The newest checkpoint with its witness cosignatures (see `witness_client`).
    pub(crate) cosigned: Arc<RwLock<Option<crate::witness_client::CosignedCheckpoint>>>,
    /// Stored timestamp tokens and clock events to record (see `timestamping`).
    pub(crate) trusted_time: crate::timestamping::TrustedTime,
}

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn disk_full(&self) -> Option<String> {
        self.disk_full.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_disk_full(&self, why: Option<String>) {
        let mut g = self.disk_full.lock().unwrap_or_else(|p| p.into_inner());
        match (&*g, &why) {
            (None, Some(w)) => tracing::error!("the disk is full, refusing events until space returns: {w}"),
            (Some(_), None) => tracing::warn!("space returned: the log takes writes again"),
            _ => {}
        }
        *g = why;
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Gives back a request's reservation in the queue.
    pub(crate) fn release(&self, events: usize, bytes: usize) {
        self.queued_events.fetch_sub(events, Ordering::AcqRel);
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.metrics.queued_events.dec_by(events as i64);
    }
}

struct AliveGuard<'a>(&'a AtomicBool);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Commits handed to the indexer before the sequencer waits for it: a backlog of at
/// most this many group commits, so that a slow index slows ingestion instead of
/// growing memory without bound.
const INDEX_QUEUE_COMMITS: usize = 16;

/// Fields of committed entries, in index order, for the indexer.
struct IndexJob {
    indexes: Vec<u64>,
    received_ns: u64,
    rows: Vec<(u32, Normalized)>,
}

pub(crate) struct Sequencer {
    log: Log,
    index: Option<Index>,
    index_tx: Option<SyncSender<IndexJob>>,
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    checkpoint_interval: Duration,
    stream_ids: HashMap<String, u32>,
    dedup: DedupTables,
    /// When a poisoned log next tries to recover.
    next_recovery: Option<Instant>,
    sealing: Option<crate::sealing::Sealing>,
}

/// How often a log that cannot write tries to recover (and the `Retry-After` of the
/// 503 answers meanwhile).
pub(crate) const RECOVERY_RETRY: Duration = Duration::from_secs(2);

impl Sequencer {
    pub(crate) fn new(
        log: Log,
        index: Index,
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        checkpoint_interval: Duration,
        dedup: DedupTables,
    ) -> Sequencer {
        Sequencer {
            log,
            index: Some(index),
            index_tx: None,
            shared,
            rx,
            checkpoint_interval,
            stream_ids: HashMap::new(),
            dedup,
            next_recovery: None,
            sealing: None,
        }
    }

    /// Seals configured personal-data fields of every appended event (docs/erasure.md).
    pub(crate) fn with_sealer(
        mut self,
        sealer: Option<stele_erasure::Sealer>,
        normalizer: stele_formats::Normalizer,
    ) -> Sequencer {
        self.sealing = sealer.map(|s| crate::sealing::Sealing::new(s, normalizer));
        self
    }

    /// Runs the indexer and the sequencing loop until a [`Msg::Shutdown`] (or until
    /// every sender is gone), then signs a final checkpoint once the index is flushed.
    pub(crate) fn run(mut self) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        let _alive = AliveGuard(&shared.sequencer_alive);
        let index = self.index.take().expect("the index is given to new()");
        let (tx, rx) = std::sync::mpsc::sync_channel(INDEX_QUEUE_COMMITS);
        std::thread::scope(|s| {
            let indexer = std::thread::Builder::new()
                .name("stele-indexer".into())
                .spawn_scoped(s, || index_loop(index, rx, &shared))
                .map_err(|e| ServerError::Sequencer(format!("spawning the indexer: {e}")))?;
            self.index_tx = Some(tx);
            self.sequence();
            // Closing the channel lets the indexer finish its backlog, flush and end.
            self.index_tx = None;
            if indexer.join().is_err() {
                tracing::error!("the indexer thread panicked; the index is rebuilt from the log at the next start");
            }
            self.finish()
        })
    }

    fn sequence(&mut self) {
        // A log recovered with entries beyond its newest checkpoint gets one at once.
        self.checkpoint();
        let mut next_checkpoint = Instant::now() + self.checkpoint_interval;
        let mut batch: Vec<AppendRequest> = Vec::new();
        let mut stopping = false;
        while !stopping {
            let wait = next_checkpoint.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Append(r)) => batch.push(r),
                Ok(Msg::DeleteSegment { segno, record, reply }) => self.delete(segno, &record, &reply),
                Ok(Msg::CarryOutErasures { policies, reply }) => {
                    let _ = reply.send(self.carry_out_erasures(&policies));
                }
                Ok(Msg::Erasure { op, reply }) => {
                    let _ = reply.send(self.erasure(op));
                }
                Ok(Msg::Keys { op, reply }) => {
                    let _ = reply.send(self.keys(op));
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Group commit: take everything that is waiting. The queue limits bound it.
            while let Ok(m) = self.rx.try_recv() {
                match m {
                    Msg::Append(r) => batch.push(r),
                    Msg::DeleteSegment { segno, record, reply } => {
                        // Appends that came first are committed first.
                        if !batch.is_empty() {
                            self.commit(std::mem::take(&mut batch));
                        }
                        self.delete(segno, &record, &reply);
                    }
                    Msg::CarryOutErasures { policies, reply } => {
                        if !batch.is_empty() {
                            self.commit(std::mem::take(&mut batch));
                        }
                        let _ = reply.send(self.carry_out_erasures(&policies));
                    }
                    Msg::Erasure { op, reply } => {
                        if !batch.is_empty() {
                            self.commit(std::mem::take(&mut batch));
                        }
                        let _ = reply.send(self.erasure(op));
                    }
                    Msg::Keys { op, reply } => {
                        if !batch.is_empty() {
                            self.commit(std::mem::take(&mut batch));
                        }
                        let _ = reply.send(self.keys(op));
                    }
                    Msg::Shutdown => stopping = true,
                }
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch));
            }
            if Instant::now() >= next_checkpoint {
                self.checkpoint();
                next_checkpoint = Instant::now() + self.checkpoint_interval;
            }
        }
    }

    fn finish(&mut self) -> Result<(), ServerError> {
        if let Some(p) = self.log.poisoned() {
            return Err(StoreError::Poisoned(p.to_string()).into());
        }
        match self.log.sign_checkpoint() {
            Ok(Some(cp)) => {
                tracing::info!(tree_size = cp.tree_size, "signed the final checkpoint");
                self.shared.checkpoints.send_replace(cp.tree_size);
            }
            Ok(None) => {}
            // Every entry is durable; the next start signs what this one could not.
            Err(StoreError::Signer(e)) => tracing::error!("the final checkpoint was not signed: {e}"),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn checkpoint(&mut self) {
        if self.log.poisoned().is_some() {
            self.try_recover();
            return;
        }
        let grew = self.log.tree_size() > self.log.newest_checkpoint().map_or(0, |c| c.tree_size);
        if !grew {
            return;
        }
        match self.log.sign_checkpoint() {
            Ok(Some(cp)) => {
                if self.shared.metrics.signer_up.set(1) == 0 {
                    tracing::warn!(tree_size = cp.tree_size, "the checkpoint signer answers again");
                    // Written to stderr as well: the outage and its end must reach the
                    // operator whether or not a tracing subscriber is installed.
                    eprintln!("stele: the checkpoint signer answers again; signed tree size {}", cp.tree_size);
                }
                tracing::debug!(tree_size = cp.tree_size, "signed a checkpoint");
                self.shared.checkpoints.send_replace(cp.tree_size);
            }
            Ok(None) => {}
            Err(StoreError::Signer(e)) => {
                // Nothing was written: ingestion goes on and the next tick retries.
                self.shared.metrics.checkpoint_sign_failures.inc();
                // Logged once per outage as an error, then at debug level each retry.
                if self.shared.metrics.signer_up.set(0) == 1 {
                    tracing::error!("checkpoint not signed (entries are still accepted; retrying): {e}");
                    eprintln!("stele: error: checkpoint not signed (entries are still accepted; retrying): {e}");
                } else {
                    tracing::debug!("checkpoint still not signed: {e}");
                }
            }
            Err(e) => {
                tracing::error!("signing a checkpoint: {e}");
                // A failure after the checkpoint was stored (thinning) still signed it.
                if let Some(cp) = self.log.newest_checkpoint() {
                    self.shared.checkpoints.send_replace(cp.tree_size);
                }
                self.note_poison();
            }
        }
    }

    /// One retention deletion: one small commit (the deletion record), a record in
    /// `deletions.dat` and a file removal; ingestion waits only that long.
    fn delete(
        &mut self,
        segno: u32,
        record: &stele_store::retention::DeletionRecord,
        reply: &std::sync::mpsc::Sender<Result<u64, StoreError>>,
    ) {
        let started = Instant::now();
        // The file is removed by the retention thread, not here.
        let r = self.log.record_segment_deletion(segno, record);
        self.note_poison();
        Metrics::observe(&self.shared.metrics.retention_delete_duration, started.elapsed());
        let _ = reply.send(r);
    }

    /// While the log is poisoned, every [`RECOVERY_RETRY`]: cut back to what was
    /// durable and recover (`Log::recover_after_failure`); on success the log takes
    /// writes again. Nothing a failed write or sync left behind is trusted.
    fn try_recover(&mut self) {
        let now = Instant::now();
        if self.next_recovery.is_some_and(|t| now < t) {
            return;
        }
        self.next_recovery = Some(now + RECOVERY_RETRY);
        match self.log.recover_after_failure() {
            Ok(true) => {
                tracing::warn!(
                    tree_size = self.log.tree_size(),
                    "the log recovered after a failed write and takes writes again"
                );
                *self.shared.poisoned.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.shared.metrics.log_recoveries.inc();
                self.next_recovery = None;
            }
            Ok(false) => self.next_recovery = None,
            Err(e) => {
                tracing::error!("recovering after a failed write: {e}; retrying in {} s", RECOVERY_RETRY.as_secs())
            }
        }
    }

    /// Pending erasures whose holds were released or whose compliance retention ended
    /// (docs/erasure.md): each is a small commit (its record), then a key store rewrite.
    fn carry_out_erasures(&mut self, policies: &[stele_retention::Policy]) -> Result<usize, String> {
        let Some(sealing) = &mut self.sealing else { return Ok(0) };
        let snapshot = self.shared.snapshot();
        let now = stele_store::log::now_ns();
        let r = sealing.carry_out(&mut self.log, &snapshot, policies, now).map_err(|e| e.to_string());
        self.note_poison();
        r
    }

    /// An erasure asked for over the API: one small commit (its record), then the key
    /// store rewrite, as for a pending erasure carried out.
    fn erasure(&mut self, op: crate::erasure_api::ErasureOp) -> crate::erasure_api::ErasureResult {
        let snapshot = self.shared.snapshot();
        let r = crate::erasure_api::on_sequencer(self.sealing.as_mut(), &mut self.log, &snapshot, op);
        self.note_poison();
        r
    }

    /// A key rotation or revocation: one small commit and its checkpoint(s), signed
    /// and published before the reply.
    fn keys(&mut self, op: crate::key_api::KeyOp) -> crate::key_api::KeyResult {
        let r = crate::key_api::on_sequencer(&mut self.log, op);
        self.note_poison();
        if let Some(cp) = self.log.newest_checkpoint() {
            self.shared.checkpoints.send_replace(cp.tree_size);
        }
        r
    }

    fn note_poison(&self) {
        if let Some(p) = self.log.poisoned() {
            let mut g = self.shared.poisoned.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                tracing::error!("the log stopped accepting writes: {p}");
                *g = Some(p.to_string());
            }
        }
    }

    fn commit(&mut self, mut batch: Vec<AppendRequest>) {
        if let Some(p) = self.log.poisoned() {
            let msg = StoreError::Poisoned(p.to_string()).to_string();
            self.reply_all(batch, |_| CommitError::Unavailable(msg.clone()));
            return;
        }
        let now = stele_store::log::now_ns();
        self.dedup.requests.expire(now);
        self.dedup.events.expire(now);
        let (plans, new_keys, appended_count) = self.plan(&batch, now);
        // Personal-data fields are sealed, and their keys made durable, before the
        // events are appended; a failure appends nothing.
        let is_new = |ri: usize, ei: usize| matches!(&plans[ri], Plan::Slots(sl) if matches!(sl[ei], Slot::New(_)));
        let sealed = match self.sealing.as_mut().map(|s| s.seal(&batch, is_new, now)).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => {
                let msg = format!("sealing personal-data fields failed, nothing was appended: {e}");
                self.reply_all(batch, |_| CommitError::Failed(msg.clone()));
                return;
            }
        };
        let mut entries: Vec<NewEntry<'_>> = Vec::with_capacity(appended_count);
        for (ri, (r, plan)) in batch.iter().zip(&plans).enumerate() {
            if let Plan::Slots(slots) = plan {
                for (ei, (e, slot)) in r.events.iter().zip(slots).enumerate() {
                    if let Slot::New(_) = slot {
                        entries.push(match sealed.get(ri).and_then(|v| v[ei].as_ref()) {
                            Some(s) => NewEntry { stream: &r.stream, format: s.format, payload: &s.payload },
                            None => NewEntry { stream: &r.stream, format: e.format, payload: &r.body[e.range.clone()] },
                        });
                    }
                }
            }
        }
        let records = dedup::records(&new_keys, entries.len());
        for rec in &records {
            entries.push(NewEntry {
                stream: dedup::DEDUP_STREAM,
                format: stele_store::log::FORMAT_STELE_RECORD,
                payload: rec,
            });
        }
        // Events only: stele's own records (format 3) are not counted in the metrics.
        let events: Vec<&NewEntry<'_>> =
            entries.iter().take(appended_count).filter(|e| e.format != stele_store::log::FORMAT_STELE_RECORD).collect();
        let (event_count, payload_bytes) = (events.len(), events.iter().map(|e| e.payload.len()).sum::<usize>());
        drop(events);
        let result = if entries.is_empty() {
            // Only replays and conflicts: nothing to append.
            Ok(None)
        } else {
            let started = Instant::now();
            let r = self.log.append(&entries);
            Metrics::observe(&self.shared.metrics.fsync_duration, started.elapsed());
            self.shared.trusted_time.note_clock(self.log.take_clock_backwards(), &self.shared.metrics);
            r.map(Some)
        };
        let count = entries.len();
        drop(entries);
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                self.note_poison();
                if self.log.poisoned().is_some() {
                    let msg = e.to_string();
                    self.reply_all(batch, |_| CommitError::Unavailable(msg.clone()));
                } else if matches!(e, StoreError::NoSpace { .. }) {
                    // Refused before anything was written: answer 503 and take the
                    // next commit as soon as space returns.
                    let msg = e.to_string();
                    self.shared.set_disk_full(Some(msg.clone()));
                    self.reply_all(batch, |_| CommitError::Unavailable(msg.clone()));
                } else if batch.len() > 1 {
                    // One request the store refused must not fail the others: commit
                    // them one by one (validation makes this path unreachable in practice).
                    for r in batch {
                        self.commit(vec![r]);
                    }
                } else {
                    let msg = e.to_string();
                    let rejected = matches!(e, StoreError::EntryTooLarge { .. } | StoreError::InvalidStreamName(_));
                    self.reply_all(batch, |_| {
                        if rejected { CommitError::Rejected(msg.clone()) } else { CommitError::Failed(msg.clone()) }
                    });
                }
                return;
            }
        };
        if self.shared.disk_full().is_some() {
            self.shared.set_disk_full(None);
        }
        let (indexes, received_ns, tree_size) = match &appended {
            Some(a) => {
                assert_eq!(a.indexes.len(), count, "the store returned one index per entry");
                let m = &self.shared.metrics;
                m.entries_appended.inc_by(event_count as u64);
                m.bytes_appended.inc_by(payload_bytes as u64);
                m.commit_batch_entries.observe(count as f64);
                m.tree_size.set(i64::try_from(a.tree_size).unwrap_or(i64::MAX));
                (a.indexes.as_slice(), a.received_ns, a.tree_size)
            }
            None => (&[][..], stele_store::log::now_ns(), self.log.tree_size()),
        };
        for k in &new_keys {
            self.dedup.table(k.kind).insert(k.key, indexes[k.position], k.count, k.body, received_ns);
        }
        if appended.is_some() {
            let mut last = "";
            for (r, plan) in batch.iter().zip(&plans) {
                let appended_any =
                    matches!(plan, Plan::Slots(slots) if slots.iter().any(|s| matches!(s, Slot::New(_))));
                if appended_any && r.stream != last {
                    self.shared.last_seen.saw(&r.stream, received_ns);
                    last = &r.stream;
                }
            }
        }

        // Reply first: acknowledged entries are already visible to queries (the index
        // is only an accelerator; entries past it are read from the log).
        let mut fields: Vec<(String, Vec<Normalized>)> = Vec::with_capacity(batch.len() + 1);
        for (ri, (r, plan)) in batch.iter_mut().zip(&plans).enumerate() {
            if let Plan::Slots(slots) = plan {
                let sealing = &self.sealing;
                let sealed_r = sealed.get(ri);
                let r_fields = r
                    .events
                    .iter_mut()
                    .zip(slots)
                    .enumerate()
                    .filter(|(_, (_, slot))| matches!(slot, Slot::New(_)))
                    .map(|(ei, (e, _))| match (sealing, sealed_r.and_then(|v| v[ei].as_ref())) {
                        // A sealed event is indexed by its stored form's fields.
                        (Some(s), Some(sealed)) => s.fields(sealed),
                        // stele's own records carry no event fields: indexed as a
                        // rebuild from the log indexes them (`stele verify --index`).
                        _ if e.format == stele_store::log::FORMAT_STELE_RECORD => Normalized::default(),
                        _ => std::mem::take(&mut e.fields),
                    })
                    .collect();
                fields.push((r.stream.clone(), r_fields));
            }
        }
        if !records.is_empty() {
            fields.push((dedup::DEDUP_STREAM.to_string(), vec![Normalized::default(); records.len()]));
        }
        let reader = self.log.reader();
        for (r, plan) in batch.into_iter().zip(plans) {
            self.shared.release(r.events.len(), r.body.len());
            let answer = match plan {
                Plan::Conflict(m) => Err(CommitError::Conflict(m)),
                Plan::Slots(slots) => answer(&slots, indexes, received_ns, tree_size, &reader, appended.as_ref()),
            };
            // The handler may have gone (client disconnected); the entries stay.
            let _ = r.reply.send(answer);
        }
        if let Some(a) = appended {
            self.hand_to_indexer(a.indexes, a.received_ns, fields);
        }
    }

    /// Decides, per request, which events are appended (in order) and which are
    /// answered from earlier entries; returns the plans, the keys to record, and the
    /// number of events appended.
    fn plan(&self, batch: &[AppendRequest], now: u64) -> (Vec<Plan>, Vec<NewKey>, usize) {
        let mut plans = Vec::with_capacity(batch.len());
        let mut new_keys: Vec<NewKey> = Vec::new();
        // Keys first seen in this commit: kind and key → position of the first entry.
        let mut pending: HashMap<(Kind, KeyDigest), (usize, u64, [u8; 32])> = HashMap::new();
        let mut position = 0usize;
        for r in batch {
            let n = r.events.len();
            let plan = match &r.dedup {
                Dedup::None => Plan::Slots((0..n).map(|i| Slot::New(position + i)).collect()),
                Dedup::Request { key, body } => {
                    let prior = match self.dedup.requests.get(key, now) {
                        Some(s) => Some((Prior::Stored(s.first), s.count, s.body)),
                        None => pending.get(&(Kind::Request, *key)).map(|&(p, c, b)| (Prior::Pending(p), c, b)),
                    };
                    match prior {
                        Some((_, count, prior_body)) if prior_body != *body || count != n as u64 => Plan::Conflict(
                            "this Idempotency-Key was already used for a request with a different body; nothing was appended (use a new key for a new request)".into(),
                        ),
                        Some((Prior::Stored(first), _, _)) => {
                            Plan::Slots((0..n as u64).map(|i| Slot::Old(first + i)).collect())
                        }
                        Some((Prior::Pending(p), _, _)) => Plan::Slots((0..n).map(|i| Slot::Again(p + i)).collect()),
                        None => {
                            pending.insert((Kind::Request, *key), (position, n as u64, *body));
                            new_keys.push(NewKey { kind: Kind::Request, key: *key, position, count: n as u64, body: *body });
                            Plan::Slots((0..n).map(|i| Slot::New(position + i)).collect())
                        }
                    }
                }
                Dedup::PerEvent(keys) => {
                    let mut slots = Vec::with_capacity(n);
                    let mut next = position;
                    for i in 0..n {
                        let slot = match keys.get(i).copied().flatten() {
                            None => Slot::New(next),
                            Some(k) => {
                                if let Some(s) = self.dedup.events.get(&k, now) {
                                    Slot::Old(s.first)
                                } else if let Some(&(p, _, _)) = pending.get(&(Kind::Event, k)) {
                                    Slot::Again(p)
                                } else {
                                    pending.insert((Kind::Event, k), (next, 1, [0; 32]));
                                    new_keys.push(NewKey {
                                        kind: Kind::Event,
                                        key: k,
                                        position: next,
                                        count: 1,
                                        body: [0; 32],
                                    });
                                    Slot::New(next)
                                }
                            }
                        };
                        if let Slot::New(_) = slot {
                            next += 1;
                        }
                        slots.push(slot);
                    }
                    Plan::Slots(slots)
                }
            };
            if let Plan::Slots(slots) = &plan {
                position += slots.iter().filter(|s| matches!(s, Slot::New(_))).count();
            }
            plans.push(plan);
        }
        (plans, new_keys, position)
    }

    fn hand_to_indexer(&mut self, indexes: Vec<u64>, received_ns: u64, fields: Vec<(String, Vec<Normalized>)>) {
        let mut rows = Vec::with_capacity(indexes.len());
        for (stream, list) in fields {
            let id = match self.stream_ids.get(&stream) {
                Some(id) => *id,
                None => {
                    let id = self.log.reader().streams().id(&stream).expect("an appended stream is registered");
                    self.stream_ids.insert(stream, id);
                    id
                }
            };
            rows.extend(list.into_iter().map(|f| (id, f)));
        }
        if let Some(tx) = &self.index_tx
            && tx.send(IndexJob { indexes, received_ns, rows }).is_err()
        {
            // The indexer stopped (its error is logged); queries read the log instead.
            self.index_tx = None;
        }
    }

    fn reply_all(&self, batch: Vec<AppendRequest>, err: impl Fn(&AppendRequest) -> CommitError) {
        for r in batch {
            self.shared.release(r.events.len(), r.body.len());
            let e = err(&r);
            let _ = r.reply.send(Err(e));
        }
    }
}

/// The indexer thread: adds committed entries to the index and publishes snapshots.
/// The index is derived data: if it fails, indexing stops and queries stay correct
/// (entries past the last published snapshot are read from the log), only slower.
/// What one event of a request becomes.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// Appended in this commit, at this position among its entries.
    New(usize),
    /// A duplicate of an event appended in this same commit, at this position.
    Again(usize),
    /// A duplicate of the stored entry at this index.
    Old(u64),
}

/// Where a request key was seen before.
enum Prior {
    Stored(u64),
    Pending(usize),
}

/// What happens to one request of a commit.
enum Plan {
    Slots(Vec<Slot>),
    /// A reused idempotency key with another body.
    Conflict(String),
}

/// The answer for a request whose events became `slots`.
fn answer(
    slots: &[Slot],
    indexes: &[u64],
    received_ns: u64,
    tree_size: u64,
    reader: &LogReader,
    appended: Option<&stele_store::log::Appended>,
) -> Result<Committed, CommitError> {
    let mut out = Committed {
        indexes: Vec::with_capacity(slots.len()),
        leaf_hashes: Vec::with_capacity(slots.len()),
        received_ns,
        tree_size,
        duplicate: Vec::with_capacity(slots.len()),
    };
    for slot in slots {
        let (index, hash, dup) = match *slot {
            Slot::New(p) | Slot::Again(p) => {
                let a = appended.expect("a new slot implies an append");
                (indexes[p], a.leaf_hashes[p], matches!(slot, Slot::Again(_)))
            }
            Slot::Old(i) => {
                let hash = reader
                    .leaf_hash(i)
                    .map_err(|e| CommitError::Failed(format!("reading the leaf hash of earlier entry {i}: {e}")))?;
                (i, hash, true)
            }
        };
        out.indexes.push(index);
        out.leaf_hashes.push(hash);
        out.duplicate.push(dup);
    }
    // A request answered wholly from earlier entries reports their received time.
    if let [Slot::Old(first), ..] = slots
        && slots.iter().all(|s| matches!(s, Slot::Old(_)))
    {
        out.received_ns = reader
            .leaf(*first)
            .map_err(|e| CommitError::Failed(format!("reading earlier entry {first}: {e}")))?
            .received_ns;
    }
    Ok(out)
}

fn index_loop(mut index: Index, rx: Receiver<IndexJob>, shared: &Shared) {
    let mut published_at = Instant::now();
    let mut published_flushed = index.flushed_size();
    let mut published_size = index.indexed_size();
    loop {
        match rx.recv_timeout(SNAPSHOT_MAX_AGE) {
            Ok(job) => {
                for (i, (stream, fields)) in job.indexes.into_iter().zip(job.rows) {
                    if let Err(e) = index.add(i, job.received_ns, stream, fields) {
                        tracing::error!(
                            "query index: {e}; indexing stops until restart (queries read the log instead)"
                        );
                        return;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let changed = index.indexed_size() != published_size;
        if changed && (index.flushed_size() != published_flushed || published_at.elapsed() >= SNAPSHOT_MAX_AGE) {
            *shared.snapshot.write().unwrap_or_else(|p| p.into_inner()) = index.snapshot();
            published_at = Instant::now();
            published_flushed = index.flushed_size();
            published_size = index.indexed_size();
        }
    }
    if let Err(e) = index.flush() {
        tracing::warn!("flushing the query index at shutdown: {e} (it is rebuilt from the log at the next start)");
    }
}
