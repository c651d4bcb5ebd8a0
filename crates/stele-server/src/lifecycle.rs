//! Gaps in the record are themselves on the record (PCI DSS 10.7, NIST AU-5).
//!
//! Records in `_stele/gaps` (JSON, format 3), next to the silent-source ones:
//! - `server_start` when the server starts: the previous run's end, whether it
//!   stopped cleanly (a `server_stop` record after its `server_start`), and otherwise
//!   the newest received time in the log, where the unrecorded gap begins;
//! - `server_stop` at a clean shutdown, after everything queued is committed;
//! - `shedding` once per minute while the server refused work because it was
//!   overloaded or could not write: how many requests and events were refused, from
//!   when to when. (Refusals are answered with 503/429, so senders retry; the record
//!   says the log was not taking events then.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use stele_formats::Normalized;
use stele_index::Query;

use crate::dedup::Dedup;
use crate::http::App;
use crate::sequencer::PreparedEvent;
use crate::silence::GAPS_STREAM;

/// How often refusals are summed into a `shedding` record.
const SHEDDING_PERIOD: Duration = Duration::from_secs(60);

/// Requests and events refused (overload or unwritable log) since the last record.
#[derive(Default)]
pub(crate) struct Shed {
    requests: AtomicU64,
    events: AtomicU64,
}

impl Shed {
    pub(crate) fn count(&self, events: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
    }

    fn take(&self) -> (u64, u64) {
        (self.requests.swap(0, Ordering::Relaxed), self.events.swap(0, Ordering::Relaxed))
    }
}

pub(crate) async fn append(app: &App, record: serde_json::Value) -> Result<u64, String> {
    let payload = record.to_string().into_bytes();
    let event = PreparedEvent {
        range: 0..payload.len(),
        format: stele_store::log::FORMAT_STELE_RECORD,
        fields: Normalized::default(),
    };
    app.submit_dedup(GAPS_STREAM.to_string(), Bytes::from(payload), vec![event], Dedup::None)
        .await
        .map(|c| c.indexes[0])
        .map_err(|e| e.to_string())
}

/// Appends the `server_start` record.
pub(crate) async fn record_start(app: &App) {
    let shared = &app.shared;
    let reader = shared.reader.clone();
    let snapshot = shared.snapshot();
    let now = stele_store::log::now_ns();
    // The previous run: its last start or stop record.
    let previous = tokio::task::spawn_blocking(move || {
        let q = Query { stream: Some(GAPS_STREAM.into()), ..Query::default() };
        let mut last: Option<(String, u64)> = None;
        let _ = snapshot.query(&q, |h| {
            if let Ok(e) = reader.entry(h.index)
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.payload)
                && let Some(t @ ("server_start" | "server_stop")) = v["type"].as_str()
            {
                last = Some((t.to_string(), e.leaf.received_ns));
            }
            true
        });
        let newest = reader.tree_size().checked_sub(1).and_then(|i| reader.leaf(i).ok()).map(|l| l.received_ns);
        (last, newest)
    })
    .await
    .unwrap_or((None, None));
    let (last, newest_received) = previous;
    let record = match last {
        None => serde_json::json!({ "type": "server_start", "at_ns": now, "previous_run": null,
            "newest_received_ns": newest_received }),
        Some((kind, at)) => serde_json::json!({
            "type": "server_start",
            "at_ns": now,
            "previous_run": if kind == "server_stop" {
                serde_json::json!({ "clean_stop": true, "stopped_ns": at })
            } else {
                serde_json::json!({ "clean_stop": false, "started_ns": at, "newest_received_ns": newest_received })
            },
        }),
    };
    if let Err(e) = append(app, record).await {
        tracing::error!("appending the server_start record: {e}");
    }
}

/// Appends the `server_stop` record (at a clean shutdown, before the sequencer stops).
pub(crate) async fn record_stop(app: &App) {
    let record = serde_json::json!({ "type": "server_stop", "at_ns": stele_store::log::now_ns() });
    if let Err(e) = append(app, record).await {
        tracing::error!("appending the server_stop record: {e}");
    }
}

/// Starts the task that turns refusals into `shedding` records.
pub(crate) fn spawn_shedding(app: Arc<App>) {
    tokio::spawn(async move {
        let mut from = stele_store::log::now_ns();
        let mut interval = tokio::time::interval(SHEDDING_PERIOD);
        interval.tick().await;
        loop {
            interval.tick().await;
            if !app.shared.sequencer_alive.load(Ordering::Acquire) {
                return;
            }
            let to = stele_store::log::now_ns();
            let (requests, events) = app.shared.shed.take();
            if requests > 0 {
                let record = serde_json::json!({
                    "type": "shedding", "from_ns": from, "to_ns": to,
                    "refused_requests": requests, "refused_events": events,
                });
                if let Err(e) = append(&app, record).await {
                    tracing::warn!("appending a shedding record: {e} (kept for the next period)");
                    app.shared.shed.requests.fetch_add(requests, Ordering::Relaxed);
                    app.shared.shed.events.fetch_add(events, Ordering::Relaxed);
                    continue;
                }
            }
            from = to;
        }
    });
}
