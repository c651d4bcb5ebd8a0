//! Silent sources: a stream can declare how often it is expected to receive events;
//! when it stays quiet for longer, stele says so in `/metrics` and appends a record.
//!
//! PCI DSS 10.7 asks that failures of logging be detected, not just noticed later:
//! a producer that stops sending (crashed agent, broken pipeline, cut network) looks
//! exactly like a quiet system unless someone expects it to speak. For each declared
//! source a watcher compares the newest commit time of its stream with the allowed
//! silence. On the transition to silent it appends a `source_silent` record to
//! `_stele/gaps`, and when events arrive again a `source_resumed` record with the
//! length of the gap; both are ordinary entries, so the gap is on the signed record.
//! Silence is counted from the server's start when a stream has had no event since.
//!
//! Metrics: `stele_source_silent{stream}` (1 while silent) and
//! `stele_source_last_event_age_seconds{stream}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use stele_formats::Normalized;

use crate::dedup::Dedup;
use crate::http::App;
use crate::sequencer::PreparedEvent;

/// Stream of gap records.
pub(crate) const GAPS_STREAM: &str = "_stele/gaps";

/// A source that is expected to send at least every `max_silence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedSource {
    /// The stream its events go to.
    pub stream: String,
    /// Longest silence that is normal (at least one second).
    pub max_silence: Duration,
}

/// Newest commit time (ns since the epoch) per stream, written by the sequencer.
#[derive(Default)]
pub(crate) struct LastSeen(Mutex<HashMap<String, u64>>);

impl LastSeen {
    pub(crate) fn saw(&self, stream: &str, at_ns: u64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(stream) {
            Some(t) => *t = (*t).max(at_ns),
            None => {
                m.insert(stream.to_string(), at_ns);
            }
        }
    }

    fn get(&self, stream: &str) -> Option<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(stream).copied()
    }
}

/// Starts the watcher task (nothing when no source is declared).
pub(crate) fn spawn(app: Arc<App>, sources: Vec<ExpectedSource>) {
    if sources.is_empty() {
        return;
    }
    let shortest = sources.iter().map(|s| s.max_silence).min().expect("not empty");
    let tick = (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let started = stele_store::log::now_ns();
    tokio::spawn(async move {
        // Per source: since when it is silent (None while it speaks).
        let mut silent_since: Vec<Option<u64>> = vec![None; sources.len()];
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            if !app.shared.sequencer_alive.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let now = stele_store::log::now_ns();
            for (s, since) in sources.iter().zip(&mut silent_since) {
                let last = app.shared.last_seen.get(&s.stream);
                let reference = last.unwrap_or(started);
                let age_ns = now.saturating_sub(reference);
                let limit_ns = u64::try_from(s.max_silence.as_nanos()).unwrap_or(u64::MAX);
                let labels = [("stream", s.stream.clone())];
                let m = &app.shared.metrics;
                m.source_last_event_age.get_or_create(&labels).set(age_ns as f64 / 1e9);
                match *since {
                    None if age_ns > limit_ns => {
                        m.source_silent.get_or_create(&labels).set(1);
                        let record = serde_json::json!({
                            "type": "source_silent",
                            "stream": s.stream,
                            "last_event_ns": last,
                            "max_silence_seconds": s.max_silence.as_secs_f64(),
                            "detected_ns": now,
                        });
                        tracing::warn!(stream = %s.stream, "no event for {:.0} s (expected at least every {:?})", age_ns as f64 / 1e9, s.max_silence);
                        if append(&app, record).await {
                            *since = Some(reference);
                        }
                    }
                    Some(from) if last.is_some_and(|l| l > from) => {
                        m.source_silent.get_or_create(&labels).set(0);
                        let record = serde_json::json!({
                            "type": "source_resumed",
                            "stream": s.stream,
                            "silent_from_ns": from,
                            "resumed_ns": last,
                            "gap_seconds": last.unwrap_or(from).saturating_sub(from) as f64 / 1e9,
                        });
                        tracing::info!(stream = %s.stream, "events arrive again");
                        if append(&app, record).await {
                            *since = None;
                        }
                    }
                    _ => {}
                }
            }
        }
    });
}

/// Appends a gap record; false (logged) when the log does not take it now.
async fn append(app: &App, record: serde_json::Value) -> bool {
    let payload = record.to_string().into_bytes();
    let event = PreparedEvent {
        range: 0..payload.len(),
        format: stele_store::log::FORMAT_STELE_RECORD,
        fields: Normalized::default(),
    };
    match app.submit_dedup(GAPS_STREAM.to_string(), Bytes::from(payload), vec![event], Dedup::None).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("appending a gap record: {e}");
            false
        }
    }
}
