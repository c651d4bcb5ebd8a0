//! `POST /v1/k8s/audit`: the Kubernetes API server's audit webhook backend.
//!
//! The API server POSTs an `EventList` (`audit.k8s.io/v1`, or `v1beta1`) and treats
//! any 2xx as delivered. It retries only 429 and 5xx answers; a 400 or 413 makes it
//! drop the whole batch. So this route:
//! - appends every valid event of a batch as its own entry (its exact bytes), and keeps
//!   each event it cannot store as a rejection record in `_stele/rejected` (reason,
//!   size, SHA-256 and the bytes, base64, cut to fit an entry) instead of refusing
//!   the batch: a 400 is given only when the body as a whole is not an EventList;
//! - recognises retried events by `auditID`, `stage` and their bytes (see `dedup`), so
//!   a batch resent after a timeout appends only what was not yet stored, while two
//!   different events that claim the same `auditID` and `stage` are both kept;
//! - answers overload with 429 and `Retry-After`, which the API server retries;
//! - answers 200 only once every event and rejection record is durable.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};
use stele_formats::{EventFormat, Normalized, Normalizer, k8s_dedup_key, split_event_list};

use crate::dedup::{self, Dedup, Kind};
use crate::http::{
    ApiError, App, check_content_length, content_encoding_gzip, error, error_with, gunzip, json, maybe_blocking,
    read_body, stream_name, submit_error,
};
use crate::sequencer::PreparedEvent;
use crate::submit::SubmitError;

/// Stream of webhook events whose request names none (`?stream=` in the webhook
/// kubeconfig's server URL names one).
pub(crate) const K8S_DEFAULT_STREAM: &str = "k8s-audit";
/// Stream of rejection records.
pub(crate) const REJECTED_STREAM: &str = "_stele/rejected";
/// Room kept in a rejection record for everything but the rejected bytes.
const REJECTION_OVERHEAD: usize = 2048;

/// The events of one webhook body, judged one by one.
struct Judged {
    events: Vec<PreparedEvent>,
    keys: Vec<Option<dedup::KeyDigest>>,
    /// Rejection record payloads, with the item number and reason.
    rejected: Vec<(usize, String, Vec<u8>)>,
    rejected_keys: Vec<Option<dedup::KeyDigest>>,
}

pub(crate) async fn post_k8s_audit(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    match handle(&app, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// 429 rather than 503 for a full queue: both are retried by the API server, 429
/// says "slow down".
fn webhook_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Overloaded(m) => {
            let mut e = error_with(StatusCode::TOO_MANY_REQUESTS, m, serde_json::json!({ "retry_after_seconds": 1 }));
            e.retry_after = true;
            e
        }
        other => submit_error(other),
    }
}

async fn handle(app: &App, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    if let Some(e) = app.refuse_early() {
        return Err(webhook_error(e));
    }
    let stream = stream_name(uri, headers, K8S_DEFAULT_STREAM)?;
    if uri.query().is_some_and(|q| q.split('&').any(|p| p.starts_with("wait="))) {
        return Err(error(StatusCode::BAD_REQUEST, "wait=checkpoint is not offered on the audit webhook route"));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let media = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media != "application/json" && !media.is_empty() {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {media:?} is not accepted: the audit webhook sends application/json"),
            ));
        }
    }
    let gzip = content_encoding_gzip(headers)?;
    let limits = &app.limits;
    check_content_length(headers, limits.max_body_bytes)?;
    let raw = read_body(body, limits.max_body_bytes, limits.body_timeout).await?;
    let max_body = limits.max_body_bytes;
    let body = if gzip { maybe_blocking(raw.len(), move || gunzip(&raw, max_body)).await? } else { raw };
    let (normalizer, b, max_entry, stream_for_records) =
        (app.normalizer.clone(), body.clone(), limits.max_entry_bytes, stream.clone());
    let judged = maybe_blocking(body.len(), move || judge(&b, &normalizer, max_entry, &stream_for_records)).await?;
    let metrics = &app.shared.metrics;
    let (accepted_n, rejected_n) = (judged.events.len(), judged.rejected.len());

    let events_done = async {
        if judged.events.is_empty() {
            return Ok(None);
        }
        app.submit_dedup(stream, body, judged.events, Dedup::PerEvent(judged.keys)).await.map(Some)
    };
    let mut record_body = Vec::new();
    let mut record_events = Vec::with_capacity(rejected_n);
    for (_, _, payload) in &judged.rejected {
        let start = record_body.len();
        record_body.extend_from_slice(payload);
        record_events.push(PreparedEvent {
            range: start..record_body.len(),
            format: stele_store::log::FORMAT_STELE_RECORD,
            fields: Normalized::default(),
        });
    }
    let records_done = async {
        if record_events.is_empty() {
            return Ok(None);
        }
        app.submit_dedup(
            REJECTED_STREAM.to_string(),
            Bytes::from(record_body),
            record_events,
            Dedup::PerEvent(judged.rejected_keys),
        )
        .await
        .map(Some)
    };
    let (events, records) = tokio::join!(events_done, records_done);
    let (events, records) = match (events, records) {
        (Ok(e), Ok(r)) => (e, r),
        (Err(e), _) | (_, Err(e)) => {
            metrics.count_ingest("k8s-webhook", "rejected", accepted_n + rejected_n);
            return Err(webhook_error(e));
        }
    };
    metrics.count_ingest("k8s-webhook", "accepted", accepted_n);
    metrics.count_ingest("k8s-webhook", "rejected", rejected_n);

    // Written by hand: a batch answer lists hundreds of entries.
    let mut out = String::with_capacity(128 + accepted_n * 80);
    out.push_str("{\"entries\":[");
    let mut duplicates = 0usize;
    let mut tree_size = 0;
    if let Some(c) = &events {
        tree_size = c.tree_size;
        for (i, (index, hash)) in c.indexes.iter().zip(&c.leaf_hashes).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"index\":{index},\"leaf_hash\":\"{}\"", hash.to_base64());
            if c.duplicate.get(i).copied().unwrap_or(false) {
                duplicates += 1;
                out.push_str(",\"duplicate\":true");
            }
            out.push('}');
        }
    }
    let mut rejections = Vec::with_capacity(rejected_n);
    for (k, (item, reason, _)) in judged.rejected.iter().enumerate() {
        let record = records.as_ref().and_then(|c| c.indexes.get(k)).copied();
        tree_size = tree_size.max(records.as_ref().map_or(0, |c| c.tree_size));
        rejections.push(serde_json::json!({ "item": item, "error": reason, "record_index": record }));
    }
    let _ = write!(
        out,
        "],\"accepted\":{},\"duplicates\":{duplicates},\"rejected\":{rejected_n},\"rejections\":{},\"tree_size\":{tree_size}}}",
        accepted_n - duplicates,
        serde_json::Value::Array(rejections)
    );
    Ok(json(StatusCode::OK, out))
}

/// Splits the body and judges each item: an acceptable audit event, or a rejection.
fn judge(body: &[u8], normalizer: &Normalizer, max_entry: usize, stream: &str) -> Result<Judged, ApiError> {
    let items = split_event_list(body).map_err(|e| {
        error(StatusCode::BAD_REQUEST, format!("{e}; expected an audit.k8s.io EventList; nothing was appended"))
    })?;
    let base = body.as_ptr() as usize;
    let mut out = Judged { events: Vec::new(), keys: Vec::new(), rejected: Vec::new(), rejected_keys: Vec::new() };
    for (i, item) in items.into_iter().enumerate() {
        let verdict = if item.len() > max_entry {
            Err(format!("the event is {} bytes, more than the entry limit of {max_entry} bytes", item.len()))
        } else {
            normalizer.parse(item, Some(EventFormat::KubernetesAudit)).map_err(|e| e.to_string())
        };
        let digest = Sha256::digest(item);
        // auditID and stage name the event; the bytes make sure that two different
        // events under one auditID (a producer bug, or an edited copy) are both kept.
        let key = k8s_dedup_key(item).map(|k| format!("{k}/{}", hex::encode(digest)));
        match verdict {
            Ok((format, fields)) => {
                let start = item.as_ptr() as usize - base;
                out.events.push(PreparedEvent { range: start..start + item.len(), format: format.code(), fields });
                out.keys.push(key.map(|k| dedup::digest(Kind::Event, &k)));
            }
            Err(reason) => {
                let keep = max_entry.saturating_sub(REJECTION_OVERHEAD) / 4 * 3;
                let kept = &item[..item.len().min(keep)];
                let record = serde_json::json!({
                    "type": "rejected",
                    "protocol": "k8s-webhook",
                    "stream": stream,
                    "item": i,
                    "reason": reason,
                    "size": item.len(),
                    "sha256": hex::encode(digest),
                    "truncated": kept.len() < item.len(),
                    "base64": BASE64.encode(kept),
                });
                // The same bytes rejected again (a retried batch) are recorded once.
                let rkey = format!("rejected/{}/{}", hex::encode(digest), key.unwrap_or_default());
                out.rejected_keys.push(Some(dedup::digest(Kind::Event, &rkey)));
                out.rejected.push((i, reason, record.to_string().into_bytes()));
            }
        }
    }
    Ok(out)
}
