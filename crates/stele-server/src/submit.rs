//! The one path from any ingest protocol to the sequencer.
//!
//! A protocol handler (HTTP JSON, Kubernetes webhook, OTLP, syslog) validates its
//! input completely into a body and [`PreparedEvent`]s, then calls [`App::submit`]:
//! it reserves room in the bounded queue (or fails fast with
//! [`SubmitError::Overloaded`]), hands the events to the sequencer and waits for the
//! group commit. `Ok` means durable: every event was fsynced as part of the log.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use tokio::sync::oneshot;

use crate::dedup::Dedup;
use crate::http::App;
use crate::sequencer::{AppendRequest, CommitError, Committed, Msg, PreparedEvent};

/// Why a submission was not (or may not have been) appended.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The queue is full; retry shortly (HTTP 503/429 + Retry-After, gRPC
    /// UNAVAILABLE / RESOURCE_EXHAUSTED). Nothing was appended.
    Overloaded(String),
    /// The log does not accept writes (poisoned, shutting down). Nothing was appended.
    Unavailable(String),
    /// The store refused the events (a bug: validation should have caught it).
    /// Nothing was appended.
    Rejected(String),
    /// The append failed. Nothing was appended.
    Failed(String),
    /// The sequencer stopped before answering: the events may or may not be in the log.
    Unknown(String),
    /// An idempotency key reused with a different body (409). Nothing was appended.
    Conflict(String),
    /// The principal's append rate is used up; retry after the seconds given (HTTP
    /// 429 + Retry-After, gRPC RESOURCE_EXHAUSTED with RetryInfo). Nothing was appended.
    RateLimited(String, u64),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Overloaded(m)
            | SubmitError::Unavailable(m)
            | SubmitError::Rejected(m)
            | SubmitError::Failed(m)
            | SubmitError::Unknown(m)
            | SubmitError::Conflict(m)
            | SubmitError::RateLimited(m, _) => f.write_str(m),
        }
    }
}

impl App {
    /// `Some(reason)` when new work should be refused before reading it: the log is
    /// poisoned or the queue already holds `queue_depth` events.
    pub(crate) fn refuse_early(&self) -> Option<SubmitError> {
        if let Some(reason) = self.shared.poisoned() {
            return Some(SubmitError::Unavailable(stele_store::StoreError::Poisoned(reason).to_string()));
        }
        let queued = self.shared.queued_events.load(Ordering::Acquire);
        (queued >= self.limits.queue_depth).then(|| {
            self.shared.shed.count(0);
            SubmitError::Overloaded(format!(
                "server overloaded: {queued} events are waiting to be committed; retry later"
            ))
        })
    }

    /// Appends `events` (ranges of `body`) to `stream` as one atomic unit and waits
    /// for the commit. Fails fast with [`SubmitError::Overloaded`] when the queue
    /// cannot take them.
    #[allow(dead_code, reason = "the entry point of protocols without retries to recognise")]
    pub(crate) async fn submit(
        &self,
        stream: String,
        body: Bytes,
        events: Vec<PreparedEvent>,
    ) -> Result<Committed, SubmitError> {
        self.submit_dedup(stream, body, events, Dedup::None).await
    }

    /// [`App::submit`] with retries recognised as `dedup` says: a retry is answered
    /// with the earlier entries' indexes (`Committed::duplicate`) and appends nothing.
    pub(crate) async fn submit_dedup(
        &self,
        stream: String,
        body: Bytes,
        events: Vec<PreparedEvent>,
        dedup: Dedup,
    ) -> Result<Committed, SubmitError> {
        if let Some(reason) = self.shared.poisoned() {
            return Err(SubmitError::Unavailable(stele_store::StoreError::Poisoned(reason).to_string()));
        }
        let n = events.len();
        crate::auth::charge_append(n)?;
        self.reserve(n, body.len()).inspect_err(|_| self.shared.shed.count(n))?;
        self.send(stream, body, events, dedup).await
    }

    /// Like [`App::submit`], but waits (up to `patience`, for ever when it is
    /// `Duration::MAX`) for room in the queue instead of failing: for protocols whose
    /// only pushback is to stop reading (TCP and TLS syslog).
    pub(crate) async fn submit_patiently(
        &self,
        stream: String,
        body: Bytes,
        events: Vec<PreparedEvent>,
        patience: std::time::Duration,
    ) -> Result<Committed, SubmitError> {
        let deadline = tokio::time::Instant::now().checked_add(patience);
        loop {
            if let Some(reason) = self.shared.poisoned() {
                return Err(SubmitError::Unavailable(stele_store::StoreError::Poisoned(reason).to_string()));
            }
            match self.reserve(events.len(), body.len()) {
                Ok(()) => return self.send(stream, body, events, Dedup::None).await,
                Err(e) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                    self.shared.shed.count(events.len());
                    return Err(e);
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            }
        }
    }

    fn reserve(&self, n: usize, bytes: usize) -> Result<(), SubmitError> {
        let limits = &self.limits;
        let before_events = self.shared.queued_events.fetch_add(n, Ordering::AcqRel);
        let before_bytes = self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.shared.metrics.queued_events.inc_by(n as i64);
        if before_events + n > limits.queue_depth || before_bytes + bytes > limits.queue_bytes {
            self.shared.release(n, bytes);
            return Err(SubmitError::Overloaded(format!(
                "server overloaded: {before_events} events ({before_bytes} bytes) are waiting to be committed and this request's {n} would pass the queue limit of {} events ({} bytes); retry later",
                limits.queue_depth, limits.queue_bytes
            )));
        }
        Ok(())
    }

    /// Sends a reserved request to the sequencer and waits for its answer.
    async fn send(
        &self,
        stream: String,
        body: Bytes,
        events: Vec<PreparedEvent>,
        dedup: Dedup,
    ) -> Result<Committed, SubmitError> {
        let (reply, wait) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError(msg)) =
            self.tx.send(Msg::Append(AppendRequest { stream, body, events, dedup, reply }))
        {
            if let Msg::Append(r) = msg {
                self.shared.release(r.events.len(), r.body.len());
            }
            return Err(SubmitError::Unavailable("the server is shutting down; nothing was appended".into()));
        }
        match wait.await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(CommitError::Unavailable(m))) => Err(SubmitError::Unavailable(m)),
            Ok(Err(CommitError::Rejected(m))) => Err(SubmitError::Rejected(m)),
            Ok(Err(CommitError::Conflict(m))) => Err(SubmitError::Conflict(m)),
            Ok(Err(CommitError::Failed(m))) => Err(SubmitError::Failed(format!("append failed, nothing was appended: {m}"))),
            Err(_) => Err(SubmitError::Unknown(
                "the sequencer stopped before answering; the events may or may not have been appended (look them up with /v1/query)".into(),
            )),
        }
    }
}
