//! OTLP/HTTP logs: `POST /v1/logs` (OTLP specification, "OTLP/HTTP").
//!
//! The body is an `ExportLogsServiceRequest` in binary protobuf
//! (`Content-Type: application/x-protobuf`) or OTLP/JSON (`application/json`),
//! optionally `Content-Encoding: gzip`. Every `LogRecord` becomes one entry of format
//! `otlp-log` (see `stele_formats::otlp` for the stored bytes) in the stream named
//! by `?stream=` or `X-Stele-Stream`, else the configured OTLP stream (`otlp`).
//!
//! Answers follow the specification's "Full Success", "Partial Success" and
//! "Failures" rules, always in the request's encoding:
//! - 200 with an `ExportLogsServiceResponse`, only once every accepted record is
//!   durable. Records that cannot be stored (larger than the log's maximum entry)
//!   are counted in `partial_success.rejected_log_records` with an `error_message`;
//!   the others are appended.
//! - 400 (body that does not decode, bad stream name), 413 (body, decompressed body,
//!   records per request or stored size over the limits), 415 (other content type or
//!   encoding), 408 (body too slow), 500: a `google.rpc.Status` with the message.
//!   Exporters do not retry these.
//! - 503 with `Retry-After: 1` when the queue is full or the log does not accept
//!   writes: exporters retry. Nothing of the request was appended.
//!
//! `stele_ingest_events_total{protocol="otlp-http"}` counts records by result:
//! `accepted` (durable) and `rejected` (refused with an answer: too large, in a
//! request refused for its content, or refused for overload). OTLP never drops a
//! record without answering. A request refused before its body is read (queue
//! already full) is not counted: its records are unknown.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use prost::Message as _;
use stele_formats::EventFormat;
use stele_formats::otlp::proto::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use stele_formats::otlp::{OtlpEncoding, OtlpError, OtlpLimits, Split, decode_request, split_request};

use crate::http::{
    ApiError, App, check_content_length, content_encoding_gzip, gunzip, maybe_blocking, read_body, stream_name,
};
use crate::sequencer::PreparedEvent;
use crate::submit::SubmitError;

/// Metrics label of this protocol.
const PROTOCOL: &str = "otlp-http";

/// `POST /v1/logs`.
pub(crate) async fn post_logs(
    State(app): State<std::sync::Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let encoding = match encoding_of(&headers) {
        Ok(e) => e,
        // The body cannot be read in an unknown encoding: the Status is JSON.
        Err(e) => return failure(OtlpEncoding::Json, e),
    };
    match export(&app, &uri, &headers, body, encoding).await {
        Ok(r) => {
            crate::metrics::Metrics::observe(&app.shared.metrics.append_duration, started.elapsed());
            r
        }
        Err(e) => failure(encoding, e),
    }
}

/// The request encoding from `Content-Type`; 415 for anything else.
fn encoding_of(headers: &HeaderMap) -> Result<OtlpEncoding, Failure> {
    let full = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
    let media = full.as_deref().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(OtlpEncoding::Protobuf),
        "application/json" => Ok(OtlpEncoding::Json),
        _ => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {media:?} is not accepted on /v1/logs: send application/x-protobuf or application/json (OTLP/HTTP)"
            ),
        )),
    }
}

async fn export(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    encoding: OtlpEncoding,
) -> Result<Response, Failure> {
    if let Some(e) = app.refuse_early() {
        return Err(Failure::submit(e));
    }
    let stream = stream_name(uri, headers, &app.otlp_stream)?;
    let gzip = content_encoding_gzip(headers)?;
    let limits = &app.limits;
    check_content_length(headers, limits.max_body_bytes)?;
    let raw = read_body(body, limits.max_body_bytes, limits.body_timeout).await?;
    let max_body = limits.max_body_bytes;
    let body = if gzip { maybe_blocking(raw.len(), move || gunzip(&raw, max_body)).await? } else { raw };
    let otlp_limits = OtlpLimits {
        max_records: limits.max_batch_events,
        max_record_bytes: limits.max_entry_bytes,
        // The queue reserves the stored bytes: at most one body's worth per request.
        max_total_bytes: limits.max_body_bytes,
    };
    let metrics = &app.shared.metrics;
    let split = maybe_blocking(body.len(), move || {
        let req = decode_request(&body, encoding).map_err(|e| otlp_error(&e).into_api())?;
        split_request(&req, &otlp_limits).map_err(|e| otlp_error(&e).into_api())
    })
    .await?;
    let (n, rejected) = (split.records.len(), split.rejected);
    metrics.count_ingest(PROTOCOL, "rejected", usize::try_from(rejected).unwrap_or(usize::MAX));
    let partial = partial_success(&split);
    if n > 0 {
        let (body, events) = prepared(split);
        match app.submit(stream, body, events).await {
            Ok(_) => metrics.count_ingest(PROTOCOL, "accepted", n),
            Err(e) => {
                metrics.count_ingest(PROTOCOL, "rejected", n);
                return Err(Failure::submit(e));
            }
        }
    }
    Ok(success(encoding, &ExportLogsServiceResponse { partial_success: partial }))
}

/// The entries of a split request, as the sequencer takes them.
pub(crate) fn prepared(split: Split) -> (Bytes, Vec<PreparedEvent>) {
    let code = EventFormat::OtlpLog.code();
    let events =
        split.records.into_iter().map(|(range, fields)| PreparedEvent { range, format: code, fields }).collect();
    (Bytes::from(split.bytes), events)
}

/// `partial_success` when some records were rejected (OTLP "Partial Success").
pub(crate) fn partial_success(split: &Split) -> Option<ExportLogsPartialSuccess> {
    (split.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(split.rejected).unwrap_or(i64::MAX),
        error_message: split.rejection.clone().unwrap_or_default(),
    })
}

fn success(encoding: OtlpEncoding, resp: &ExportLogsServiceResponse) -> Response {
    let body = match encoding {
        OtlpEncoding::Protobuf => resp.encode_to_vec(),
        OtlpEncoding::Json => serde_json::to_vec(resp).expect("an OTLP response serializes"),
    };
    crate::http::response(StatusCode::OK, content_type(encoding), body)
}

fn content_type(encoding: OtlpEncoding) -> &'static str {
    match encoding {
        OtlpEncoding::Protobuf => "application/x-protobuf",
        OtlpEncoding::Json => "application/json",
    }
}

/// The HTTP status of an OTLP decoding or splitting error.
fn otlp_error(e: &OtlpError) -> Failure {
    let status = match e {
        OtlpError::TooManyRecords { .. } | OtlpError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    Failure::new(status, format!("{e}; nothing was appended"))
}

/// A failed export: its status, message and whether it is worth retrying soon.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
    retry_after: bool,
}

impl Failure {
    fn new(status: StatusCode, message: String) -> Failure {
        Failure { status, message, retry_after: false }
    }

    fn submit(e: SubmitError) -> Failure {
        crate::http::submit_error(e).into()
    }

    /// The same failure as the JSON API error the shared helpers return.
    fn into_api(self) -> ApiError {
        let e = crate::http::error(self.status, self.message);
        if self.retry_after { e.with_retry_after() } else { e }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure { status: e.status(), message: e.message(), retry_after: e.retry_after() }
    }
}

/// gRPC status code (`google.rpc.Code`) matching an HTTP status, for the Status body.
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
        StatusCode::INTERNAL_SERVER_ERROR => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    }
}

/// The failure answer: a `google.rpc.Status` in the request's encoding (OTLP/HTTP
/// "Failures"), with `Retry-After` when retrying soon may succeed.
fn failure(encoding: OtlpEncoding, f: Failure) -> Response {
    let code = grpc_code(f.status) as i32;
    let body = match encoding {
        OtlpEncoding::Protobuf => {
            tonic_types::pb::Status { code, message: f.message, details: Vec::new() }.encode_to_vec()
        }
        OtlpEncoding::Json => serde_json::json!({ "code": code, "message": f.message }).to_string().into_bytes(),
    };
    let mut r = crate::http::response(f.status, content_type(encoding), body);
    if f.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}
