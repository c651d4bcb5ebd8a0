//! OTLP/gRPC logs: `opentelemetry.proto.collector.logs.v1.LogsService/Export` on its
//! own port (`ServerConfig::otlp_grpc`), plain HTTP/2 (OTLP specification, "OTLP/gRPC").
//!
//! Records become entries exactly as with OTLP/HTTP (`otlp_http`): same split, same
//! limits, same submit path, stream from the `x-stele-stream` metadata or the
//! configured OTLP stream. Answers:
//! - `OK` with an `ExportLogsServiceResponse` once every accepted record is durable;
//!   records larger than the log's maximum entry are reported in `partial_success`.
//! - `UNAVAILABLE` with a `google.rpc.RetryInfo` detail (retry after 1 s) when the
//!   queue is full or the log does not accept writes; exporters retry only
//!   `UNAVAILABLE` and `RESOURCE_EXHAUSTED` with RetryInfo, so nothing else is retried.
//! - `RESOURCE_EXHAUSTED` without RetryInfo for a message over `max_body_bytes`
//!   (compressed or decompressed) or over the records-per-request limit: sending it
//!   again cannot succeed.
//! - `INVALID_ARGUMENT` for a bad stream name, `INTERNAL` for a failed append,
//!   `UNKNOWN` when the sequencer stopped before answering.
//!
//! Requests may be gzip-compressed (`grpc-encoding: gzip`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use stele_formats::otlp::proto::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use stele_formats::otlp::{OtlpError, OtlpLimits, record_count, split_request};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::http::App;
use crate::otlp_http::{partial_success, prepared};
use crate::submit::SubmitError;

/// Metrics label of this protocol.
const PROTOCOL: &str = "otlp-grpc";
/// Requests with more records than this are split on the blocking pool.
const INLINE_SPLIT_RECORDS: usize = 256;
/// The delay exporters are told to wait before retrying after overload.
const RETRY_DELAY: Duration = Duration::from_secs(1);

struct Logs {
    app: Arc<App>,
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let app = &self.app;
        if let Some(refusal) = request.extensions().get::<crate::tls::PeerInfo>().and_then(|p| p.refused) {
            app.shared.metrics.count_ingest(PROTOCOL, "rejected", record_count(request.get_ref()));
            return Err(crate::per_client::grpc_refusal(refusal));
        }
        if let Some(e) = app.refuse_early() {
            // tonic has already decoded the message: its records are known.
            app.shared.metrics.count_ingest(PROTOCOL, "rejected", record_count(request.get_ref()));
            return Err(submit_status(e));
        }
        let stream = match request.metadata().get("x-stele-stream") {
            Some(v) => {
                v.to_str().map_err(|_| Status::invalid_argument("x-stele-stream is not ASCII"))?.trim().to_string()
            }
            None => app.otlp_stream.clone(),
        };
        stele_store::streams::check_stream_name(&stream).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let peer = request.extensions().get::<crate::tls::PeerInfo>().cloned();
        let caller = crate::auth::grpc_caller(app, request.metadata(), peer.as_ref(), request.remote_addr(), &stream)?;
        crate::auth::with_caller(&caller, self.append(stream, request.into_inner())).await
    }
}

impl Logs {
    /// Splits and appends an authorized request.
    async fn append(
        &self,
        stream: String,
        req: ExportLogsServiceRequest,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let app = &self.app;
        let limits = OtlpLimits {
            max_records: app.limits.max_batch_events,
            max_record_bytes: app.limits.max_entry_bytes,
            max_total_bytes: app.limits.max_body_bytes,
        };
        let split = if record_count(&req) <= INLINE_SPLIT_RECORDS {
            split_request(&req, &limits)
        } else {
            tokio::task::spawn_blocking(move || split_request(&req, &limits))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
        }
        .map_err(|e| {
            let code = match e {
                OtlpError::TooManyRecords { .. } | OtlpError::TooLarge { .. } => Code::ResourceExhausted,
                _ => Code::InvalidArgument,
            };
            Status::new(code, format!("{e}; nothing was appended"))
        })?;
        let metrics = &app.shared.metrics;
        let n = split.records.len();
        metrics.count_ingest(PROTOCOL, "rejected", usize::try_from(split.rejected).unwrap_or(usize::MAX));
        let partial = partial_success(&split);
        if n > 0 {
            let (body, events) = prepared(split);
            match app.submit(stream, body, events).await {
                Ok(_) => metrics.count_ingest(PROTOCOL, "accepted", n),
                Err(e) => {
                    metrics.count_ingest(PROTOCOL, "rejected", n);
                    return Err(submit_status(e));
                }
            }
        }
        Ok(Response::new(ExportLogsServiceResponse { partial_success: partial }))
    }
}

/// The gRPC status of a failed submission (OTLP/gRPC "Failures").
fn submit_status(e: SubmitError) -> Status {
    match e {
        SubmitError::Overloaded(m) | SubmitError::Unavailable(m) => {
            Status::with_error_details(Code::Unavailable, m, ErrorDetails::with_retry_info(Some(RETRY_DELAY)))
        }
        SubmitError::Rejected(m) => Status::invalid_argument(m),
        SubmitError::Failed(m) => Status::internal(m),
        SubmitError::Unknown(m) => Status::unknown(m),
        // OTLP requests carry no idempotency key.
        SubmitError::Conflict(m) => Status::already_exists(m),
        SubmitError::RateLimited(m, secs) => Status::with_error_details(
            Code::ResourceExhausted,
            m,
            ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
        ),
    }
}

/// tonic answers a message whose length prefix is over the limit with `OUT_OF_RANGE`;
/// gRPC says `RESOURCE_EXHAUSTED` for a message larger than the server accepts
/// (as tonic itself answers when the decompressed message is too large).
fn oversize_is_resource_exhausted(mut resp: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let out_of_range = resp.headers().get("grpc-status").is_some_and(|v| v == "11");
    let too_large = resp
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if out_of_range && too_large {
        resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

/// Serves the OTLP/gRPC logs service on `listener` until `shutdown` completes, then
/// lets open calls finish.
/// With `tls`, connections are TLS (ALPN `h2`), reloaded as the files change. A
/// request whose header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`, RFC 9113 §6.5.2)
/// is over `max_header_bytes` is answered by h2 with HTTP status 431 and its stream
/// reset; gRPC clients report it as `UNKNOWN` ("grpc-status header missing, mapped
/// from HTTP status code 431").
pub(crate) async fn serve(
    listener: crate::listener::LimitedListener,
    tls: Option<Arc<crate::tls::Reloader>>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let max = app.limits.max_body_bytes;
    let service = LogsServiceServer::new(Logs { app })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let router = tonic::transport::Server::builder()
        .http2_max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .layer(tower::util::MapResponseLayer::new(oversize_is_resource_exhausted))
        .add_service(service);
    match tls {
        None => router.serve_with_incoming_shutdown(crate::listener::Incoming::new(listener), shutdown).await,
        Some(r) => {
            let incoming = crate::tls::GrpcTlsIncoming::new(listener, r, handshake_timeout);
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    }
}
