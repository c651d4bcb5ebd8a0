//! Routes and handlers. Handlers do all validation on the async side (parsing runs on
//! the blocking pool when a body is large) so that the sequencer only ever sees
//! requests it can append.

use std::convert::Infallible;
use std::fmt::{Display, Write as _};
use std::io::Read as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query as QueryParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use stele_formats::{BodyError, EventFormat, Normalizer, split_body};
use stele_index::Query;
use stele_store::{LogReader, StoreError};
use stele_tlog::Hash;
use tokio::sync::mpsc;

use crate::dedup::{Dedup, Kind};
use crate::sequencer::{Committed, Msg, PreparedEvent, Shared};
use crate::submit::SubmitError;

/// Bodies (compressed or not) above this size are decompressed and parsed on the
/// blocking pool, so that one large request does not stall other connections.
const INLINE_PARSE_BYTES: usize = 64 * 1024;
/// `Cache-Control` of full tiles: their bytes never change.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the checkpoint and partial tiles: they are replaced as the log grows.
const CACHE_SHORT: &str = "no-cache";
/// Query output is sent in chunks of about this size.
const QUERY_CHUNK_BYTES: usize = 64 * 1024;
/// Default number of query hits.
pub(crate) const DEFAULT_QUERY_LIMIT: u64 = 1000;
/// Most query hits one request may ask for: an answer must stay a bounded amount of
/// work and output; page with `since` for more.
pub(crate) const MAX_QUERY_LIMIT: u64 = 100_000;

/// The limits the handlers enforce (see `ServerConfig` for their reasons).
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_events: usize,
    pub(crate) max_entry_bytes: usize,
    pub(crate) queue_depth: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) query_timeout: Duration,
    pub(crate) receipt_timeout: Duration,
}

pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Sender<Msg>,
    pub(crate) normalizer: Arc<Normalizer>,
    pub(crate) limits: Limits,
    pub(crate) default_stream: String,
    /// Stream → JSON pointer of the field that identifies its events (retries of an
    /// event with the same id and bytes are appended once).
    pub(crate) event_id_fields: std::collections::HashMap<String, String>,
    /// Stream of OTLP log records whose request names none.
    pub(crate) otlp_stream: String,
    /// Principals, tokens, access records and rate limits.
    pub(crate) auth: Arc<crate::auth::Auth>,
    /// Actions waiting for a second principal's approval.
    pub(crate) approvals: Arc<crate::approvals::Approvals>,
    /// Retention policies in force (an erasure over the API is deferred by them as
    /// `stele erase` is).
    pub(crate) retention: Arc<crate::retention_api::InForce>,
    /// The data directory (key rotation writes the new key there).
    pub(crate) data_dir: std::path::PathBuf,
    /// Per-principal buckets of the read routes.
    pub(crate) read_rate: Arc<crate::per_client::ReadRate>,
}

type AppState = Arc<App>;

pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/k8s/audit", post(crate::k8s_webhook::post_k8s_audit))
        .route("/v1/logs", post(crate::otlp_http::post_logs))
        .route("/v1/entries/{index}", get(get_entry))
        .route("/v1/query", get(get_query))
        .route("/checkpoint", get(get_checkpoint))
        .route("/checkpoint/timestamps", get(crate::timestamping::get_timestamps))
        .route("/key-statements", get(crate::keys_route::get_key_statements))
        .route("/tile/{*path}", get(get_tile))
        .route("/v1/proof/inclusion", get(get_inclusion_proof))
        .route("/v1/proof/consistency", get(get_consistency_proof))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/admin/holds", post(crate::admin::place_hold).get(crate::admin::list_holds))
        .route("/v1/admin/holds/{case}/release", post(crate::admin::release_hold))
        .route("/v1/admin/erasures", post(crate::erasure_api::post_erasure).get(crate::erasure_api::list_erasures))
        .route("/v1/admin/retention/shorten", post(crate::retention_api::post_shorten))
        .route("/v1/admin/keys/rotate", post(crate::key_api::post_rotate))
        .route("/v1/admin/keys/revoke", post(crate::key_api::post_revoke))
        .route("/v1/admin/approvals", get(crate::approvals::list))
        .route("/v1/admin/approvals/{id}/approve", post(crate::approvals::approve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.read_rate.clone(), crate::per_client::read_rate))
        .layer(middleware::from_fn_with_state(app.clone(), crate::auth::middleware))
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

// ---------------------------------------------------------------------------------
// Responses

pub(crate) fn response(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    response(status, "application/json", body)
}

/// An error answer: `{"error": message, ...}` with its status.
pub(crate) struct ApiError {
    status: StatusCode,
    body: String,
    pub(crate) retry_after: bool,
    /// The `Retry-After` value in seconds when `retry_after` is set.
    retry_secs: u64,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json(self.status, self.body);
        if self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_secs.max(1)));
        }
        r
    }
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The `"error"` message.
    pub(crate) fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| self.body.clone())
    }

    pub(crate) fn retry_after(&self) -> bool {
        self.retry_after
    }

    pub(crate) fn with_retry_after(mut self) -> ApiError {
        self.retry_after = true;
        self
    }

    /// `Retry-After: secs`.
    pub(crate) fn with_retry_after_secs(mut self, secs: u64) -> ApiError {
        self.retry_after = true;
        self.retry_secs = secs;
        self
    }
}

/// `{"error": message, ...extra}`.
pub(crate) fn error_with(status: StatusCode, message: impl Display, extra: serde_json::Value) -> ApiError {
    let mut v = serde_json::json!({ "error": message.to_string() });
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    ApiError { status, body: v.to_string(), retry_after: false, retry_secs: 1 }
}

pub(crate) fn error(status: StatusCode, message: impl Display) -> ApiError {
    error_with(status, message, serde_json::Value::Null)
}

/// 503 with `Retry-After: 1`: the queue is full, which passes quickly.
pub(crate) fn overloaded(message: impl Display) -> ApiError {
    let mut e = error_with(StatusCode::SERVICE_UNAVAILABLE, message, serde_json::json!({ "retry_after_seconds": 1 }));
    e.retry_after = true;
    e
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// RFC 3339 in UTC with nanoseconds.
fn rfc3339_ns(ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns)).map(|t| format!("{t:.9}")).unwrap_or_default()
}

fn format_name(code: u8) -> String {
    match EventFormat::from_code(code) {
        Some(f) => f.name().to_string(),
        None if code == stele_store::log::FORMAT_STELE_RECORD => "stele-record".to_string(),
        None => format!("unknown-{code}"),
    }
}

/// Appends a stored payload as the value of `"event"` (with the key), verbatim when it
/// is JSON. In NDJSON (`one_line`), line breaks, which JSON allows only as whitespace
/// between tokens, become spaces so that the hit stays on one line. A payload that is
/// not JSON (a format this release does not know) is given as `"event_base64"`.
fn push_event(out: &mut Vec<u8>, payload: &[u8], known_json: bool, one_line: bool) {
    let is_json = known_json || serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    if !is_json {
        out.extend_from_slice(b"\"event_base64\":\"");
        out.extend_from_slice(BASE64.encode(payload).as_bytes());
        out.push(b'"');
        return;
    }
    out.extend_from_slice(b"\"event\":");
    if one_line && payload.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(payload.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    } else {
        out.extend_from_slice(payload);
    }
}

// ---------------------------------------------------------------------------------
// Metrics middleware, fallbacks, health

async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| match p.as_str() {
        "/v1/events" => "/v1/events",
        "/v1/logs" => "/v1/logs",
        "/v1/entries/{index}" => "/v1/entries/{index}",
        "/v1/query" => "/v1/query",
        "/checkpoint" => "/checkpoint",
        "/tile/{*path}" => "/tile",
        "/v1/proof/inclusion" => "/v1/proof/inclusion",
        "/v1/proof/consistency" => "/v1/proof/consistency",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        "/v1/admin/holds" => "/v1/admin/holds",
        "/v1/admin/holds/{case}/release" => "/v1/admin/holds/{case}/release",
        _ => "other",
    });
    let resp = next.run(req).await;
    app.shared
        .metrics
        .http_requests
        .get_or_create(&[("route", route.to_string()), ("status", resp.status().as_u16().to_string())])
        .inc();
    resp
}

async fn not_found(uri: Uri) -> ApiError {
    error(StatusCode::NOT_FOUND, format!("no route {}; see the stele-server documentation for the routes", uri.path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

async fn healthz(State(app): State<AppState>) -> Response {
    let tree_size = app.shared.reader.tree_size();
    if let Some(reason) = app.shared.poisoned() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "poisoned", "error": reason, "tree_size": tree_size }).to_string(),
        );
    }
    if let Some(reason) = app.shared.disk_full() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "disk_full", "error": reason, "tree_size": tree_size }).to_string(),
        );
    }
    if !app.shared.sequencer_alive.load(Ordering::Acquire) {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "stopped", "error": "the sequencer is not running", "tree_size": tree_size })
                .to_string(),
        );
    }
    json(StatusCode::OK, format!("{{\"status\":\"ok\",\"tree_size\":{tree_size}}}"))
}

async fn metrics(State(app): State<AppState>) -> Response {
    let text = app.shared.metrics.render(&app.shared.reader);
    response(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
}

async fn get_checkpoint(State(app): State<AppState>) -> Result<Response, ApiError> {
    match app.shared.reader.newest_checkpoint() {
        Some(cp) => {
            // With witnesses, the same checkpoint with their cosignatures once collected.
            let note = crate::witness_client::cosigned_note(&app.shared.cosigned, cp.tree_size).unwrap_or(cp.note);
            let mut r = response(StatusCode::OK, "text/plain; charset=utf-8", note);
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_SHORT));
            Ok(r)
        }
        None => Err(error(
            StatusCode::NOT_FOUND,
            "no checkpoint has been signed yet: the log is empty, or its first entries arrived less than one checkpoint interval ago",
        )),
    }
}

// ---------------------------------------------------------------------------------
// POST /v1/events

async fn post_events(State(app): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    match append(&app, &uri, &headers, body).await {
        Ok(r) => {
            crate::metrics::Metrics::observe(&app.shared.metrics.append_duration, started.elapsed());
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Runs a CPU-heavy step on the blocking pool when its input is large.
pub(crate) async fn maybe_blocking<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if len <= INLINE_PARSE_BYTES {
        return f();
    }
    tokio::task::spawn_blocking(f).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
}

async fn append(app: &App, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    if let Some(e) = app.refuse_early() {
        return Err(submit_error(e));
    }
    let stream = stream_name(uri, headers, &app.default_stream)?;
    let wait_checkpoint = wait_param(uri)?;
    check_content_type(headers)?;
    let gzip = content_encoding_gzip(headers)?;
    let limits = &app.limits;
    check_content_length(headers, limits.max_body_bytes)?;
    let raw = read_body(body, limits.max_body_bytes, limits.body_timeout).await?;
    let max_body = limits.max_body_bytes;
    let body = if gzip { maybe_blocking(raw.len(), move || gunzip(&raw, max_body)).await? } else { raw };
    let (max_entry, max_batch) = (limits.max_entry_bytes, limits.max_batch_events);
    let (normalizer, b) = (app.normalizer.clone(), body.clone());
    let events = maybe_blocking(body.len(), move || prepare(&b, &normalizer, max_entry, max_batch)).await?;
    let n = events.len();
    let dedup = match idempotency_key(headers)? {
        None => match app.event_id_fields.get(&stream) {
            Some(pointer) => event_id_keys(&body, &events, &stream, pointer),
            None => Dedup::None,
        },
        Some(key) => {
            // The key covers the stream and the (decompressed) body.
            let mut h = stream.as_bytes().to_vec();
            h.push(0);
            h.extend_from_slice(&body);
            Dedup::Request { key: crate::dedup::digest(Kind::Request, &key), body: crate::dedup::body_digest(&h) }
        }
    };
    let submitted = app.submit_dedup(stream, body, events, dedup).await;
    let metrics = &app.shared.metrics;
    match submitted {
        Ok(c) => {
            metrics.count_ingest("http-json", "accepted", n);
            if wait_checkpoint { receipt(app, c).await } else { Ok(json(StatusCode::OK, committed_json(&c))) }
        }
        Err(e) => {
            metrics.count_ingest("http-json", "rejected", n);
            Err(submit_error(e))
        }
    }
}

/// Per-event keys from a source's configured event id field (an RFC 6901 JSON
/// pointer): an event whose field holds a string or number is recognised on a retry
/// by the stream, that value and its bytes (so two different events that share an id
/// are both kept); events without the field are always appended.
fn event_id_keys(body: &[u8], events: &[PreparedEvent], stream: &str, pointer: &str) -> Dedup {
    let keys = events
        .iter()
        .map(|e| {
            let bytes = &body[e.range.clone()];
            let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            let id = match v.pointer(pointer)? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let key = format!("{stream}\0{id}\0{}", hex::encode(crate::dedup::body_digest(bytes)));
            Some(crate::dedup::digest(Kind::Event, &key))
        })
        .collect();
    Dedup::PerEvent(keys)
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header): 1 to 255
/// visible ASCII characters; a quoted string (`"..."`, as the draft writes it) counts
/// without its quotes.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(error(StatusCode::BAD_REQUEST, "Idempotency-Key is given more than once"));
    }
    let raw = v.to_str().map_err(|_| error(StatusCode::BAD_REQUEST, "Idempotency-Key is not visible ASCII"))?.trim();
    let key = raw.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(raw);
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

/// The HTTP answer for a failed submission.
pub(crate) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Overloaded(m) => overloaded(m),
        // The log cannot write (a failed write or sync, a full disk): the sequencer
        // retries recovery every few seconds, so a sender should retry too.
        SubmitError::Unavailable(m) => {
            let mut e = error_with(
                StatusCode::SERVICE_UNAVAILABLE,
                m,
                serde_json::json!({ "retry_after_seconds": crate::sequencer::RECOVERY_RETRY.as_secs() }),
            );
            e.retry_after = true;
            e
        }
        SubmitError::Unknown(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        SubmitError::Rejected(m) => error(StatusCode::BAD_REQUEST, m),
        SubmitError::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
        SubmitError::Conflict(m) => error(StatusCode::CONFLICT, m),
        SubmitError::RateLimited(m, secs) => {
            error_with(StatusCode::TOO_MANY_REQUESTS, m, serde_json::json!({ "retry_after_seconds": secs }))
                .with_retry_after_secs(secs)
        }
    }
}

/// Whether the body is gzip (`Content-Encoding: gzip`); 415 for any other coding.
pub(crate) fn content_encoding_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e == "identity" || e.is_empty() => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {e:?} is not supported; send gzip or an uncompressed body"),
        )),
    }
}

/// 413 before reading when `Content-Length` already says the body is too large.
pub(crate) fn check_content_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        Some(len) if len > limit as u64 => Err(body_too_large(limit)),
        _ => Ok(()),
    }
}

fn committed_json(c: &Committed) -> String {
    let mut s = String::with_capacity(64 + c.indexes.len() * 80);
    s.push_str("{\"entries\":[");
    for (i, (index, hash)) in c.indexes.iter().zip(&c.leaf_hashes).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"index\":{index},\"leaf_hash\":\"{}\"", hash.to_base64());
        if c.duplicate.get(i).copied().unwrap_or(false) {
            s.push_str(",\"duplicate\":true");
        }
        s.push('}');
    }
    let _ = write!(s, "],\"tree_size\":{},\"received_ns\":{}", c.tree_size, c.received_ns);
    if !c.duplicate.is_empty() && c.duplicate.iter().all(|d| *d) {
        s.push_str(",\"replayed\":true");
    }
    s.push('}');
    s
}

pub(crate) fn body_too_large(limit: usize) -> ApiError {
    error_with(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the limit of {limit} bytes; split it into several requests"),
        serde_json::json!({ "limit": limit }),
    )
}

/// The stream from `?stream=` or `X-Stele-Stream`, else the default.
pub(crate) fn stream_name(uri: &Uri, headers: &HeaderMap, default: &str) -> Result<String, ApiError> {
    let params = query_pairs(uri)?;
    let mut from_query = None;
    for (k, v) in params {
        match k.as_str() {
            "stream" if from_query.is_none() => from_query = Some(v),
            "wait" => {}
            "stream" => {
                return Err(error(StatusCode::BAD_REQUEST, "query parameter \"stream\" is given more than once"));
            }
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {other:?}: POST /v1/events takes only \"stream\" and \"wait\""),
                ));
            }
        }
    }
    let from_header = match headers.get("x-stele-stream") {
        Some(v) => Some(
            v.to_str().map_err(|_| error(StatusCode::BAD_REQUEST, "X-Stele-Stream is not ASCII"))?.trim().to_string(),
        ),
        None => None,
    };
    let name = match (from_query, from_header) {
        (Some(q), Some(h)) if q != h => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("the stream is given twice and differs: ?stream={q:?} but X-Stele-Stream: {h:?}"),
            ));
        }
        (Some(q), _) => q,
        (None, Some(h)) => h,
        (None, None) => default.to_string(),
    };
    stele_store::streams::check_stream_name(&name).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    Ok(name)
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    QueryParams::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("query string: {}", e.body_text())))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let full = v.to_str().unwrap_or("").to_ascii_lowercase();
    let media = full.split(';').next().unwrap_or("").trim();
    let ok = matches!(
        media,
        "" | "application/json"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
            | "text/plain"
            // curl -d sends this by default; the body is still validated as JSON.
            | "application/x-www-form-urlencoded"
    ) || (media.starts_with("application/") && media.ends_with("+json"));
    if ok {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {media:?} is not accepted: send application/json (an object or an array of objects) or application/x-ndjson"
            ),
        ))
    }
}

/// Reads the whole body, failing with 413 past `limit` and 408 past `timeout`.
pub(crate) async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    use futures_core::Stream as _;
    let mut stream = body.into_data_stream();
    let read = async {
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
                None => break,
                Some(Err(e)) => {
                    return Err(error(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")));
                }
                Some(Ok(chunk)) => {
                    let have = first.as_ref().map_or(0, Bytes::len) + rest.len();
                    if have + chunk.len() > limit {
                        return Err(body_too_large(limit));
                    }
                    match &first {
                        None => first = Some(chunk),
                        Some(f) => {
                            if rest.is_empty() {
                                rest.extend_from_slice(f);
                            }
                            rest.extend_from_slice(&chunk);
                        }
                    }
                }
            }
        }
        Ok(if rest.is_empty() { first.unwrap_or_default() } else { Bytes::from(rest) })
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

/// Decompresses a gzip body (several members allowed), at most `limit` bytes out.
pub(crate) fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let mut d = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the gzip body does not decompress: {e}")))?;
    if out.len() > limit {
        return Err(error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the decompressed request body exceeds the limit of {limit} bytes; split it into several requests"),
            serde_json::json!({ "limit": limit }),
        ));
    }
    Ok(Bytes::from(out))
}

/// Splits and validates a body: every event is checked and normalized before any is
/// queued, so that a batch is appended whole or not at all.
fn prepare(
    body: &[u8],
    normalizer: &Normalizer,
    max_entry: usize,
    max_batch: usize,
) -> Result<Vec<PreparedEvent>, ApiError> {
    let items = split_body(body, max_entry).map_err(body_error)?;
    if items.len() > max_batch {
        return Err(error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request holds {} events, more than the limit of {max_batch} per request; split it",
                items.len()
            ),
            serde_json::json!({ "events": items.len(), "limit": max_batch }),
        ));
    }
    let base = body.as_ptr() as usize;
    let mut out = Vec::with_capacity(items.len());
    for (i, (bytes, hint)) in items.into_iter().enumerate() {
        let (format, fields) = normalizer.parse(bytes, Some(hint)).map_err(|e| {
            error_with(
                StatusCode::BAD_REQUEST,
                format!("item {i}: {e}; nothing was appended"),
                serde_json::json!({ "item": i }),
            )
        })?;
        // `bytes` is a sub-slice of `body` (split_body never copies).
        let start = bytes.as_ptr() as usize - base;
        assert!(start + bytes.len() <= body.len(), "split_body returned a slice outside the body");
        out.push(PreparedEvent { range: start..start + bytes.len(), format: format.code(), fields });
    }
    Ok(out)
}

fn body_error(e: BodyError) -> ApiError {
    let msg = format!("{e}; nothing was appended");
    match e {
        BodyError::TooLarge { item, size, limit } => error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            msg,
            serde_json::json!({ "item": item, "size": size, "limit": limit }),
        ),
        BodyError::InvalidItem { item, .. } => {
            error_with(StatusCode::BAD_REQUEST, msg, serde_json::json!({ "item": item }))
        }
        BodyError::Malformed { item, byte_offset, .. } => {
            error_with(StatusCode::BAD_REQUEST, msg, serde_json::json!({ "item": item, "byte_offset": byte_offset }))
        }
        _ => error(StatusCode::BAD_REQUEST, msg),
    }
}

// ---------------------------------------------------------------------------------
// GET /v1/entries/{index}

async fn get_entry(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
) -> Result<Response, ApiError> {
    let Ok(index) = raw.parse::<u64>() else {
        return Err(error(StatusCode::BAD_REQUEST, format!("entry index {raw:?} is not a non-negative integer")));
    };
    let reader = app.shared.reader.clone();
    let allowed = caller.clone();
    let allowed = move |stream: &str| allowed.allows(crate::auth::Role::Read, stream);
    match tokio::task::spawn_blocking(move || entry_json(&reader, index, &allowed)).await {
        Ok(Ok((stream, body))) => {
            let mut r = match body {
                Some(body) => json(StatusCode::OK, body),
                None => caller.forbidden(crate::auth::Role::Read, &stream).into_response(),
            };
            r.extensions_mut().insert(crate::auth::AccessedStream(stream));
            Ok(r)
        }
        Ok(Err(e @ StoreError::NoSuchEntry { .. })) => Err(error(StatusCode::NOT_FOUND, e)),
        Ok(Err(e @ StoreError::Deleted { record, .. })) => Err(error_with(
            StatusCode::GONE,
            format!("{e}; its leaf and inclusion proofs remain (GET /v1/proof/inclusion?index={index})"),
            serde_json::json!({ "deletion_record": record }),
        )),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading entry {index}: {e}"))),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// The entry's stream and JSON document; no document when `allowed` refuses its stream.
fn entry_json(
    reader: &LogReader,
    index: u64,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<(String, Option<Vec<u8>>), StoreError> {
    let e = reader.entry(index)?;
    if !allowed(&e.stream) {
        return Ok((e.stream, None));
    }
    let newest = reader.newest_checkpoint();
    let (proof_size, note) = match newest {
        Some(cp) if cp.tree_size > index => (cp.tree_size, Some(cp.note)),
        _ => (reader.tree_size(), None),
    };
    let proof = reader.inclusion_proof(index, proof_size)?;
    let root = reader.root_hash(proof_size)?;
    let code = e.leaf.payload_format;
    let mut s = String::with_capacity(512 + e.payload.len() + proof.len() * 48);
    let _ = write!(
        s,
        "{{\"index\":{index},\"received\":\"{}\",\"received_ns\":{},\"stream\":",
        rfc3339_ns(e.leaf.received_ns),
        e.leaf.received_ns
    );
    push_json_str(&mut s, &e.stream);
    let _ = write!(
        s,
        ",\"format\":\"{}\",\"leaf_hash\":\"{}\",\"leaf\":\"{}\",\"salt\":\"{}\",",
        format_name(code),
        e.leaf_hash.to_base64(),
        BASE64.encode(e.leaf.encode()),
        hex::encode(e.leaf.salt)
    );
    let mut out = s.into_bytes();
    push_event(&mut out, &e.payload, false, false);
    let mut s = String::with_capacity(256 + proof.len() * 48);
    let _ = write!(
        s,
        ",\"inclusion_proof\":{{\"tree_size\":{proof_size},\"root_hash\":\"{}\",\"hashes\":[",
        root.to_base64()
    );
    for (i, h) in proof.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{}\"", h.to_base64());
    }
    s.push_str("],\"checkpoint\":");
    match note {
        Some(n) => push_json_str(&mut s, &n),
        None => {
            s.push_str("null,\"unsigned\":");
            push_json_str(
                &mut s,
                &format!(
                    "entry {index} is newer than the newest signed checkpoint; this proof is to the current tree size {proof_size}, which no checkpoint signs yet: ask again after the next checkpoint"
                ),
            );
        }
    }
    s.push_str("}}");
    out.extend_from_slice(s.as_bytes());
    Ok((e.stream, Some(out)))
}

// ---------------------------------------------------------------------------------
// GET /v1/query

fn parse_time_param(name: &str, v: &str) -> Result<i64, ApiError> {
    let bad = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("{name}: {v:?} is not an RFC 3339 time (for example 2024-05-01T12:00:00Z)"),
        )
    };
    let t: jiff::Timestamp = v.parse().map_err(|_| bad())?;
    i64::try_from(t.as_nanosecond()).map_err(|_| bad())
}

fn parse_query(uri: &Uri) -> Result<(Query, u64), ApiError> {
    let mut q = Query::default();
    let mut limit = DEFAULT_QUERY_LIMIT;
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in query_pairs(uri)? {
        if seen.contains(&k) {
            return Err(error(StatusCode::BAD_REQUEST, format!("query parameter {k:?} is given more than once")));
        }
        seen.push(k.clone());
        // An empty value is the same as leaving the parameter out (HTML forms send them).
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "since" => q.since_ns = Some(parse_time_param("since", &v)?),
            "until" => q.until_ns = Some(parse_time_param("until", &v)?),
            "by" => {
                q.by_received = match v.as_str() {
                    "received" => true,
                    "event" => false,
                    _ => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            format!("by: {v:?} is neither \"received\" nor \"event\""),
                        ));
                    }
                }
            }
            "actor" => q.actor = Some(v),
            "action" => q.action = Some(v),
            "resource" => q.resource = Some(v),
            "outcome" => q.outcome = Some(v),
            "source_ip" => q.source_ip = Some(v),
            "request_id" => q.request_id = Some(v),
            "producer" => q.producer = Some(v),
            "stream" => q.stream = Some(v),
            "limit" => {
                limit = v.parse().map_err(|_| {
                    error(StatusCode::BAD_REQUEST, format!("limit: {v:?} is not a non-negative integer"))
                })?;
                if limit > MAX_QUERY_LIMIT {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("limit: {limit} is above the maximum of {MAX_QUERY_LIMIT}; page with since/until"),
                    ));
                }
            }
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown query parameter {other:?}: use since, until, by, actor, action, resource, outcome, source_ip, request_id, producer, stream, limit"
                    ),
                ));
            }
        }
    }
    if let (Some(s), Some(u)) = (q.since_ns, q.until_ns)
        && s >= u
    {
        return Err(error(StatusCode::BAD_REQUEST, "since must be earlier than until"));
    }
    Ok((q, limit))
}

type QueryMsg = Result<Bytes, (StatusCode, String)>;

async fn get_query(
    State(app): State<AppState>,
    uri: Uri,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
) -> Result<Response, ApiError> {
    let (q, limit) = parse_query(&uri)?;
    let (tx, mut rx) = mpsc::channel::<QueryMsg>(4);
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_query(&app2, &q, limit, &tx, &caller));
    // Wait for the first chunk: a query that fails before any output gets a proper
    // status; one that fails later ends its output with an error line.
    let first = match rx.recv().await {
        None => Bytes::new(),
        Some(Ok(b)) => b,
        Some(Err((status, m))) => return Err(error(status, m)),
    };
    Ok(response(StatusCode::OK, "application/x-ndjson", Body::from_stream(NdjsonBody { first: Some(first), rx })))
}

struct NdjsonBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<QueryMsg>,
}

impl futures_core::Stream for NdjsonBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Err((_, m)))) => {
                let line = format!("{}\n", serde_json::json!({ "error": m }));
                Poll::Ready(Some(Ok(Bytes::from(line))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs a query on the blocking pool, sending NDJSON chunks. Every hit of the index is
/// re-read from the log (which checks the payload against its leaf) and re-matched
/// against the query on freshly normalized fields: the index is never trusted.
/// Hits in streams the caller may not read are left out.
fn run_query(app: &App, q: &Query, limit: u64, tx: &mpsc::Sender<QueryMsg>, caller: &crate::auth::Caller) {
    let snapshot = app.shared.snapshot();
    let reader = &app.shared.reader;
    let deadline = Instant::now() + app.limits.query_timeout;
    let mut index_query = q.clone();
    index_query.limit = None;
    let mut buf: Vec<u8> = Vec::with_capacity(QUERY_CHUNK_BYTES + 4096);
    let mut given = 0u64;
    let mut failure: Option<(StatusCode, String)> = None;
    let mut gone = false;
    let timed_out = std::cell::Cell::new(false);
    let in_time = || {
        timed_out.set(Instant::now() >= deadline);
        !timed_out.get()
    };
    if limit > 0 {
        // The deadline is checked between entries whether they match or not, so a
        // query matching few entries of a long log is bounded too.
        let r = snapshot.query_while(&index_query, 0, in_time, |hit| {
            if !caller.allows(crate::auth::Role::Read, &hit.stream) {
                return true;
            }
            match hit_line(reader, &app.normalizer, q, hit.index, &mut buf) {
                Ok(true) => given += 1,
                // Removed by retention after it was indexed: not an answer any more.
                Err(StoreError::Deleted { .. }) => {}
                Ok(false) => {
                    app.shared.metrics.query_index_mismatches.inc();
                    tracing::warn!(index = hit.index, "the query index disagrees with the log for this entry; the hit is dropped (run `stele reindex`)");
                }
                Err(e) => {
                    failure = Some((StatusCode::INTERNAL_SERVER_ERROR, format!("reading entry {}: {e}", hit.index)));
                    return false;
                }
            }
            if buf.len() >= QUERY_CHUNK_BYTES && tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut buf)))).is_err() {
                gone = true;
                return false;
            }
            if given < limit && Instant::now() >= deadline {
                timed_out.set(true);
                return false;
            }
            given < limit
        });
        if let Err(e) = r
            && failure.is_none()
        {
            failure = Some((StatusCode::INTERNAL_SERVER_ERROR, format!("query: {e}")));
        }
    }
    if timed_out.get() && failure.is_none() && !gone {
        failure = Some((
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the query stopped after {} s (request_timeout) with {given} hits, before its end; narrow it (since, until, filters) or continue from the last index's time",
                app.limits.query_timeout.as_secs_f64()
            ),
        ));
    }
    if gone {
        return;
    }
    if !buf.is_empty() && tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
        return;
    }
    if let Some(f) = failure {
        let _ = tx.blocking_send(Err(f));
    }
}

/// Appends the NDJSON line of entry `index` if it really matches; `Ok(false)` if the
/// log contradicts the index.
fn hit_line(
    reader: &LogReader,
    normalizer: &Normalizer,
    q: &Query,
    index: u64,
    out: &mut Vec<u8>,
) -> Result<bool, StoreError> {
    let e = reader.entry(index)?;
    let code = e.leaf.payload_format;
    let (fields, known_json) = match EventFormat::from_code(code) {
        Some(f) => match normalizer.parse(&e.payload, Some(f)) {
            Ok((f, fields)) => (fields, f.is_json()),
            Err(_) => (Default::default(), false),
        },
        None => (Default::default(), false),
    };
    if !q.matches_entry(e.leaf.received_ns, &e.stream, &fields) {
        return Ok(false);
    }
    let mut s = format!(
        "{{\"index\":{index},\"received\":\"{}\",\"received_ns\":{},\"stream\":",
        rfc3339_ns(e.leaf.received_ns),
        e.leaf.received_ns
    );
    push_json_str(&mut s, &e.stream);
    let _ = write!(s, ",\"format\":\"{}\",\"fields\":", format_name(code));
    let shown = serde_json::json!({
        "time": fields.event_time_ns.and_then(|t| jiff::Timestamp::from_nanosecond(i128::from(t)).ok()).map(|t| format!("{t:.9}")),
        "actor": fields.actor,
        "action": fields.action,
        "resource": fields.resource,
        "outcome": fields.outcome,
        "source_ip": fields.source_ip,
        "request_id": fields.request_id,
        "producer": fields.producer,
    });
    s.push_str(&shown.to_string());
    s.push(',');
    out.extend_from_slice(s.as_bytes());
    push_event(out, &e.payload, known_json, true);
    out.extend_from_slice(b"}\n");
    Ok(true)
}

// ---------------------------------------------------------------------------------
// POST /v1/events?wait=checkpoint: receipts

/// `?wait=checkpoint` (the only value); absent means answer after the commit.
fn wait_param(uri: &Uri) -> Result<bool, ApiError> {
    let mut wait = false;
    for (k, v) in query_pairs(uri)? {
        if k == "wait" {
            if v != "checkpoint" {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("wait: {v:?} is not supported; the only value is \"checkpoint\""),
                ));
            }
            if wait {
                return Err(error(StatusCode::BAD_REQUEST, "query parameter \"wait\" is given more than once"));
            }
            wait = true;
        }
    }
    Ok(wait)
}

/// Answers an appended request once a signed checkpoint covers all its entries: each
/// entry's index, leaf hash and inclusion proof to that checkpoint, and its note.
/// Past the receipt timeout: 503 listing the indexes, which are appended regardless.
async fn receipt(app: &App, c: Committed) -> Result<Response, ApiError> {
    let need = c.indexes.iter().max().map_or(0, |i| i + 1);
    let mut rx = app.shared.checkpoints.subscribe();
    let signed = matches!(
        tokio::time::timeout(app.limits.receipt_timeout, async { rx.wait_for(|s| *s >= need).await.is_ok() }).await,
        Ok(true)
    );
    if !signed {
        let entries: Vec<serde_json::Value> = c
            .indexes
            .iter()
            .zip(&c.leaf_hashes)
            .map(|(i, h)| serde_json::json!({ "index": i, "leaf_hash": h.to_base64() }))
            .collect();
        return Err(error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the entries ARE appended (durable), but no checkpoint covering them was signed within {:.1} s; fetch their proofs later with GET /v1/proof/inclusion",
                app.limits.receipt_timeout.as_secs_f64()
            ),
            serde_json::json!({ "entries": entries, "tree_size": c.tree_size, "received_ns": c.received_ns }),
        ));
    }
    let shared = app.shared.clone();
    match tokio::task::spawn_blocking(move || receipt_json(&shared, &c, need)).await {
        Ok(Ok(body)) => Ok(json(StatusCode::OK, body)),
        Ok(Err(e)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the entries are appended, but building their receipt failed: {e}"),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// `{"entries":[{"index","leaf_hash","hashes"}...],"tree_size","received_ns",
/// "checkpoint":{"tree_size","root_hash","note"}}`.
fn receipt_json(shared: &Shared, c: &Committed, need: u64) -> Result<String, StoreError> {
    let cp = shared
        .reader
        .newest_checkpoint()
        .filter(|cp| cp.tree_size >= need)
        .ok_or_else(|| StoreError::InvalidArgument("no checkpoint covers the entries".into()))?;
    let nodes = crate::nodes::CachedReader { reader: &shared.reader, cache: &shared.node_cache };
    let root = stele_tlog::merkle::root_hash(&nodes, cp.tree_size)?;
    let mut s = String::with_capacity(256 + c.indexes.len() * 800);
    s.push_str("{\"entries\":[");
    for (i, (index, hash)) in c.indexes.iter().zip(&c.leaf_hashes).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{{\"index\":{index},\"leaf_hash\":\"{}\",\"hashes\":[", hash.to_base64());
        let proof = stele_tlog::merkle::inclusion_proof(&nodes, *index, cp.tree_size).map_err(|e| match e {
            stele_tlog::merkle::ProofError::Read(e) => e,
            other => StoreError::InvalidArgument(other.to_string()),
        })?;
        for (j, h) in proof.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{}\"", h.to_base64());
        }
        s.push_str("]}");
    }
    let _ = write!(
        s,
        "],\"tree_size\":{},\"received_ns\":{},\"checkpoint\":{{\"tree_size\":{},\"root_hash\":\"{}\",\"note\":",
        c.tree_size,
        c.received_ns,
        cp.tree_size,
        root.to_base64()
    );
    push_json_str(&mut s, &cp.note);
    s.push_str("}}");
    Ok(s)
}

// ---------------------------------------------------------------------------------
// GET /tile/... (C2SP tlog-tiles)

/// A parsed tile path: `entries` bundle or hash tile of `level`.
struct TilePath {
    entries: bool,
    level: u32,
    index: u64,
    width: u32,
}

/// Parses what follows `/tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, canonical
/// encodings only.
fn parse_tile_path(rest: &str) -> Option<TilePath> {
    let (head, tail) = rest.split_once('/')?;
    let (entries, level) = if head == "entries" {
        (true, 0)
    } else {
        if head.is_empty() || head.len() > 2 || !head.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if head.len() > 1 && head.starts_with('0') {
            return None;
        }
        let level: u32 = head.parse().ok()?;
        if level > 63 {
            return None;
        }
        (false, level)
    };
    let (index, width) = stele_tlog::tile::parse_tile_index(tail)?;
    Some(TilePath { entries, level, index, width })
}

async fn get_tile(State(app): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let rest = uri.path().strip_prefix("/tile/").unwrap_or("");
    let Some(t) = parse_tile_path(rest) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "{} is not a canonical tile path: use /tile/<L>/<N>[.p/<W>] or /tile/entries/<N>[.p/<W>] (C2SP tlog-tiles)",
                uri.path()
            ),
        ));
    };
    let Some(size) = app.shared.reader.newest_checkpoint().map(|c| c.tree_size) else {
        return Err(error(StatusCode::NOT_FOUND, "no checkpoint has been signed yet, so no tile is published"));
    };
    let reader = app.shared.reader.clone();
    let read = tokio::task::spawn_blocking(move || {
        if t.entries {
            reader.entry_bundle(t.index, t.width, size)
        } else {
            reader.tile(t.level, t.index, t.width, size)
        }
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    match read {
        Ok(Some(bytes)) => {
            let mut r = response(StatusCode::OK, "application/octet-stream", bytes);
            let cache = if t.width == 256 { CACHE_IMMUTABLE } else { CACHE_SHORT };
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            Ok(r)
        }
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "{} does not exist in the tree of the newest checkpoint (size {size}): full tiles exist once complete, a partial tile only at its current width",
                uri.path()
            ),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading {}: {e}", uri.path()))),
    }
}

// ---------------------------------------------------------------------------------
// GET /v1/proof/inclusion, GET /v1/proof/consistency

/// The named parameters of a proof request, each at most once, all non-negative
/// 64-bit integers except `leaf_hash`.
fn proof_params(uri: &Uri, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (k, v) in query_pairs(uri)? {
        if !allowed.contains(&k.as_str()) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {k:?}: use {}", allowed.join(", ")),
            ));
        }
        if seen.iter().any(|(s, _)| *s == k) {
            return Err(error(StatusCode::BAD_REQUEST, format!("query parameter {k:?} is given more than once")));
        }
        seen.push((k, v));
    }
    Ok(seen)
}

fn u64_param(params: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v.parse::<u64>().map(Some).map_err(|_| {
            error(StatusCode::BAD_REQUEST, format!("{name}: {v:?} is not an integer from 0 to {}", u64::MAX))
        }),
    }
}

async fn run_proof(
    app: &App,
    f: impl FnOnce(&LogReader) -> Result<serde_json::Value, crate::proofs::ProofRequestError> + Send + 'static,
) -> Result<Response, ApiError> {
    use crate::proofs::ProofRequestError as E;
    let reader = app.shared.reader.clone();
    match tokio::task::spawn_blocking(move || f(&reader)).await {
        Ok(Ok(v)) => Ok(json(StatusCode::OK, v.to_string())),
        Ok(Err(E::BadRequest(m))) => Err(error(StatusCode::BAD_REQUEST, m)),
        Ok(Err(E::NotFound(m))) => Err(error(StatusCode::NOT_FOUND, m)),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn get_inclusion_proof(State(app): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let params = proof_params(&uri, &["index", "tree_size", "leaf_hash"])?;
    let tree_size = u64_param(&params, "tree_size")?;
    if let Some((_, v)) = params.iter().find(|(k, _)| k == "leaf_hash") {
        if params.iter().any(|(k, _)| k == "index") {
            return Err(error(StatusCode::BAD_REQUEST, "give either index or leaf_hash, not both"));
        }
        // An unescaped `+` arrives as a space (form encoding); base64 has no spaces.
        let hash = Hash::from_base64(&v.replace(' ', "+"))
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("leaf_hash: {v:?} is not base64 of 32 bytes")))?;
        return run_proof(&app, move |r| inclusion_by_leaf_hash(r, &hash, tree_size)).await;
    }
    let index = u64_param(&params, "index")?.ok_or_else(|| {
        error(StatusCode::BAD_REQUEST, "index (or leaf_hash) is required (the entry's 0-based index)")
    })?;
    run_proof(&app, move |r| crate::proofs::inclusion(r, index, tree_size)).await
}

/// The inclusion proof of the first entry whose leaf hash is `hash`, below `tree_size`
/// (default: the newest checkpoint's size). The lookup is a linear scan of the stored
/// leaf hashes ([`LogReader::find_leaf_hash`]): O(n), about 32 bytes read per entry.
fn inclusion_by_leaf_hash(
    reader: &LogReader,
    hash: &Hash,
    tree_size: Option<u64>,
) -> Result<serde_json::Value, crate::proofs::ProofRequestError> {
    use crate::proofs::ProofRequestError as E;
    let size = match tree_size {
        Some(s) => s,
        None => reader.newest_checkpoint().map(|c| c.tree_size).ok_or_else(|| {
            E::NotFound(
                "no checkpoint has been signed yet, so tree_size has no default: give it explicitly or ask again after the next checkpoint"
                    .into(),
            )
        })?,
    };
    let log = reader.tree_size();
    if size > log {
        return Err(E::BadRequest(format!("tree_size {size} is beyond the log, which has {log} entries")));
    }
    match reader.find_leaf_hash(hash, size)? {
        Some(index) => crate::proofs::inclusion(reader, index, Some(size)),
        None => Err(E::NotFound(format!("no entry below tree size {size} has leaf hash {}", hash.to_base64()))),
    }
}

async fn get_consistency_proof(State(app): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let params = proof_params(&uri, &["first", "second"])?;
    let first = u64_param(&params, "first")?
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "first is required (the older tree size)"))?;
    let second = u64_param(&params, "second")?;
    run_proof(&app, move |r| crate::proofs::consistency(r, first, second)).await
}
