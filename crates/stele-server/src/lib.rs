//! # stele-server
//!
//! stele's HTTP server. It owns HTTP: request parsing and limits, the sequencer thread
//! that turns requests into group commits, checkpoint signing on a timer, queries over
//! the index, and metrics. It does not own storage (`stele-store`), event formats
//! (`stele-formats`), the index (`stele-index`) or the command line (`stele serve`).
//!
//! ## Life of a request
//! A handler reads the body (gzip allowed), splits it into events with
//! [`stele_formats::split_body`] and validates and normalizes every one; a bad item
//! fails the whole request before anything is queued. It then reserves room in the
//! queue (503 + `Retry-After: 1` when full) and sends the events to the **sequencer**,
//! a plain thread that owns the [`stele_store::Log`] writer and the
//! [`stele_index::Index`]. The sequencer takes every request waiting, appends them all
//! with one `Log::append` (one set of fsyncs), answers each request with its own
//! indexes, and then indexes the entries. A 200 therefore means durable. Every
//! `checkpoint_interval` it signs a checkpoint if the tree grew, and at shutdown it
//! flushes the index and signs a final one.
//!
//! ## Routes
//! Errors are JSON, `{"error": "<message>", ...}`, with the 0-based `item` when one
//! event of a batch is at fault. Hashes are standard base64 (as in checkpoints); the
//! salt is hex.
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /v1/events[?stream=NAME]` | Body: one JSON object, an array of objects, or NDJSON (also a Kubernetes audit `EventList`); `Content-Encoding: gzip` accepted; stream also from `X-Stele-Stream`. 200 after fsync: `{"entries":[{"index":N,"leaf_hash":"<base64>"}...],"tree_size":N,"received_ns":N}`. 400 bad item (named), nothing appended; 413 body, event or batch too large; 415 other content type or encoding; 408 body too slow; 503 queue full (`Retry-After: 1`) or log stopped after a failed fsync. |
//! | `POST /v1/events?wait=checkpoint` | As above, but answered only once a signed checkpoint covers every entry: `{"entries":[{"index","leaf_hash","hashes":[...]}...],"tree_size","received_ns","checkpoint":{"tree_size","root_hash","note"}}`, each `hashes` the inclusion proof to that checkpoint. Past `receipt_timeout`: 503 with `entries` (index, leaf hash): they ARE appended. |
//! | `GET /checkpoint` | Newest signed checkpoint note, `text/plain; charset=utf-8`, `Cache-Control: no-cache`; 404 before the first. |
//! | `GET /checkpoint/timestamps[?tree_size=N]` | RFC 3161 tokens over a checkpoint (see [`timestamping`]): `{"tree_size","body","timestamps":[{"tsa","obtained_ns","token"}]}`; without `tree_size` the newest stamped checkpoint; 404 when it has none; 400 for a bad or unknown parameter or a size beyond the log. |
//! | `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]` | C2SP tlog-tiles of the tree of the newest signed checkpoint: hash tiles (tree level 8·L) and entry bundles (per entry a big-endian `u16` length and the 68-byte leaf record), `application/octet-stream`. Full tiles once complete (`Cache-Control: public, max-age=31536000, immutable`); a partial tile only at its current width (`no-cache`). 404 for any other tile, a non-canonical path, or before the first checkpoint. |
//! | `GET /v1/proof/inclusion?index=I[&tree_size=N]` | RFC 9162 inclusion proof (see [`proofs`]): `{"leaf_index","tree_size","leaf_hash","hashes","root_hash","checkpoint"}`; `tree_size` defaults to the newest checkpoint's. 400 for sizes beyond the log, an index not below the size, non-u64 values, unknown parameters; 404 before the first checkpoint without `tree_size`. |
//! | `GET /v1/proof/inclusion?leaf_hash=<base64>[&tree_size=N]` | The same document for the first entry below `tree_size` whose leaf hash is `leaf_hash` (escape `+` as `%2B`; an unescaped one is accepted). The lookup is a linear scan of the stored leaf hashes (`hashes/level-00.dat`) in 2 MiB sequential reads: O(n), 32 bytes per entry, about a second per 30 million entries. 404 when no entry has that hash; 400 with `index` too, or for a value that is not base64 of 32 bytes. |
//! | `GET /v1/proof/consistency?first=M[&second=N]` | RFC 9162 consistency proof: `{"first","second","hashes","first_root","second_root","checkpoint"}`; `second` defaults to the newest checkpoint's size. 400 as above, and for `first` 0 or above `second`. |
//! | `GET /v1/entries/{index}` | `{"index","received","received_ns","stream","format","leaf_hash","leaf","salt","event","inclusion_proof":{"tree_size","root_hash","hashes","checkpoint"}}`. `event` is the stored bytes verbatim. The proof is to the newest checkpoint (its note is in `checkpoint`) when that covers the entry, else to the current tree size with `"checkpoint":null` and an `unsigned` explanation. 404 past the tree, 400 for a non-integer. |
//! | `GET /v1/query?since=&until=&by=received\|event&actor=&action=&resource=&outcome=&stream=&limit=` | NDJSON, oldest first, one `{"index","received","received_ns","stream","format","fields":{"time","actor","action","resource","outcome"},"event"}` per hit. Every hit is re-read from the log and re-matched; the index is not trusted. Line breaks inside an event become spaces (use `/v1/entries` for exact bytes). A query that fails after output began ends with an `{"error":...}` line. |
//! | `POST /v1/logs[?stream=NAME]` | OTLP/HTTP logs (see `src/otlp_http.rs`): protobuf or OTLP/JSON `ExportLogsServiceRequest`, gzip accepted; one `otlp-log` entry per `LogRecord` in stream `otlp` by default. 200 `ExportLogsServiceResponse` after fsync (with `partial_success` for records over the entry limit); 400/413/415 with a `google.rpc.Status`; 503 + `Retry-After: 1` on overload. The same service over gRPC listens on `otlp_grpc` (see `src/otlp_grpc.rs`). |
//! | `GET /healthz` | `{"status":"ok","tree_size":N}`; 503 once the log is poisoned or the sequencer stopped. |
//! | `GET /metrics` | OpenMetrics text: `stele_entries_appended_total`, `stele_bytes_appended_total`, `stele_tree_size`, `stele_append_duration_seconds`, `stele_fsync_duration_seconds`, `stele_commit_batch_entries`, `stele_checkpoint_age_seconds`, `stele_http_requests_total{route,status}`, `stele_queued_events`, `stele_query_index_mismatches_total`, `stele_verify_last_size`, `stele_verify_last_success_timestamp_seconds`, `stele_verify_pass_duration_seconds{kind}`, `stele_verify_failures_total`, `stele_ingest_events_total{protocol,result}`, `stele_syslog_connections_closed_total{protocol,reason}`, `stele_connections_refused_total{listener}`, `stele_clock_backwards_total`, `stele_clock_backwards_last_jump_seconds`, `stele_timestamp_tokens_total{tsa,result}`, `stele_timestamp_last_gen_time_seconds`. |
//!
//! ## Access control and TLS
//! Every route passes [`auth`]'s check: a principal (API token or client certificate)
//! with a role (`append`, `read`, `admin`, `hold-release`, `erase`, `governance-bypass`,
//! `key-rotate`, `key-revoke`) on the stream; 401/403/429
//! otherwise. Without any principal the server is open, and starts so only on loopback
//! (or with `allow_anonymous`). Reads are recorded, aggregated, in `_stele/access`
//! ([`access`]). Legal holds are placed with `POST /v1/admin/holds`, listed with `GET
//! /v1/admin/holds` and released with `POST /v1/admin/holds/{case}/release`; a data
//! subject is erased with `POST /v1/admin/erasures` (see `erasure_api`). Actions in
//! `[auth] require_approval` wait for a second principal ([`approvals`]). With
//! [`ServerConfig::tls`], the HTTP and OTLP/gRPC listeners speak TLS, reloaded when the
//! files change ([`tls`]).
//!
//! ## Syslog
//! With [`ServerConfig::syslog`] set, the server also receives syslog over UDP, TCP and
//! TLS and appends each message as an entry of format `syslog`; see [`syslog`].
//!
//! ## Self-verification
//! A low-priority thread re-verifies the data at rest on a schedule (incremental passes
//! every `verify_incremental_interval`, full ones every `verify_full_interval`), appends
//! a verification record to `_stele/system` after each pass, and reports failures in
//! the log, the metrics and an optional webhook. See `src/selfcheck.rs`.
//!
//! ## Limits
//! Each has its reason at its constant: body size (compressed and decompressed),
//! events per request, event size (the log's `max_entry_bytes`), queued events and
//! bytes (503 past them), open connections (more wait in the kernel backlog on HTTP,
//! and are refused on OTLP/gRPC), 30 s to receive a body, 30 s of work per query
//! (checked between entries, whether they match or not), 100 000
//! hits per query, request heads (`max_header_bytes`, 431), connections per client
//! and reads per principal (see [`per_client`]). The wait for an acknowledgement has
//! no timeout of its own: it is one group commit, bounded by the disk's fsync, and
//! answering before it ends could not say whether the events were appended. Request
//! heads have no read timeout of their own: a client trickling one gets no answer and
//! is closed after `idle_timeout`. docs/limits.md lists every limit.
//!
//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), stele_server::ServerError> {
//! use stele_server::{ServerConfig, start};
//! let dir = std::path::Path::new("/var/lib/stele");
//! let log = stele_store::Log::open(dir, Default::default())?;
//! let config = ServerConfig::new(dir.into(), "127.0.0.1:7000".parse().unwrap());
//! let server = start(config, log, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! println!("listening on {}", server.local_addr());
//! server.wait().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
mod admin;
pub mod approvals;
pub mod auth;
mod dedup;
pub use dedup::DedupConfig;
mod erasure_api;
mod error;
mod http;
mod k8s_webhook;
mod key_api;
mod keys_route;
mod lifecycle;
mod listener;
mod metrics;
mod nodes;
mod otlp_grpc;
mod otlp_http;
pub mod per_client;
pub mod proofs;
mod retention_api;
mod retention_task;
mod sealing;
mod selfcheck;
mod sequencer;
mod serve_http;
pub use serve_http::{DEFAULT_MAX_HEADER_BYTES, MIN_MAX_HEADER_BYTES};
mod silence;
pub use silence::ExpectedSource;
mod submit;
pub mod syslog;
pub mod timestamping;
pub mod tls;
pub mod tokens;
pub mod witness_client;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use stele_formats::{FieldPointers, Normalizer};
use stele_index::Index;
use stele_store::{Log, LogOptions};

pub use error::ServerError;

use crate::http::{App, Limits};
use crate::sequencer::{Msg, Sequencer, Shared};

/// Default `checkpoint_interval`: one second bounds how long an acknowledged entry
/// waits for a signed checkpoint, at the cost of one signature and fsync per second.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Default `max_body_bytes` (64 MiB): a whole body is held in memory while it is
/// validated, so this bounds memory per request; large imports use several requests.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Default `max_batch_events`: one request is one atomic commit and one response
/// listing every index; 10 000 keeps both bounded.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Default `queue_depth` (events accepted but not committed before 503): about a
/// second of ingestion at full speed; more only adds latency, not throughput.
pub const DEFAULT_QUEUE_DEPTH: usize = 100_000;
/// Default `queue_bytes` (512 MiB): bounds the memory held by queued bodies.
pub const DEFAULT_QUEUE_BYTES: usize = 512 << 20;
/// Default `max_connections`: each connection costs a task and buffers; past it new
/// HTTP connections wait in the kernel's backlog, and OTLP/gRPC ones are refused
/// (`RESOURCE_EXHAUSTED` with a retry delay, see [`per_client`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `idle_timeout`: twice the request timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `request_timeout`: a request body must arrive, and a query must finish its
/// work, within 30 s, so that slow clients cannot hold connections and threads forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `receipt_timeout`: how long `POST /v1/events?wait=checkpoint` waits for a
/// checkpoint covering its entries before answering 503 (the entries stay appended).
/// Ten checkpoint intervals at the default interval: long enough for a signature and
/// fsync under load, short enough that a stalled signer is reported.
pub const DEFAULT_RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `verify_incremental_interval`: every 5 minutes the entries appended since
/// the last self-verification pass are verified (see the `selfcheck` module docs).
pub const DEFAULT_VERIFY_INCREMENTAL_INTERVAL: Duration = Duration::from_secs(300);
/// Default `verify_full_interval`: a full self-verification pass every week.
pub const DEFAULT_VERIFY_FULL_INTERVAL: Duration = Duration::from_secs(168 * 3600);
/// Default `verify_max_bytes_per_sec` (100 MB/s of payload): self-verification stays
/// far below what ingestion and the disk can do.
pub const DEFAULT_VERIFY_MAX_BYTES_PER_SEC: u64 = 100_000_000;
/// Default `otlp_default_stream`: OpenTelemetry log records go to their own stream
/// unless the request names one.
pub const DEFAULT_OTLP_STREAM: &str = "otlp";
/// Most query hits per request (the default is 1000).
pub const MAX_QUERY_LIMIT: u64 = http::MAX_QUERY_LIMIT;

/// Configuration of the server. [`ServerConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The data directory (the index lives in `DATA/index/`).
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; see [`RunningServer::local_addr`]).
    pub listen: SocketAddr,
    /// The options the log was opened with; `max_entry_bytes` must equal the log's.
    pub log_options: LogOptions,
    /// Where the normalized query fields are found in generic JSON events. Must match
    /// the CLI's, or the index is rebuilt at the next open.
    pub field_pointers: FieldPointers,
    /// How often a checkpoint is signed when the tree grew.
    pub checkpoint_interval: Duration,
    /// Largest request body, compressed and decompressed.
    pub max_body_bytes: usize,
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Events waiting for their commit before new requests get 503.
    pub queue_depth: usize,
    /// Payload bytes of queued requests before new requests get 503.
    pub queue_bytes: usize,
    /// Connections held open at once (HTTP; the OTLP/gRPC listener has as many again).
    pub max_connections: usize,
    /// Connections one client (an IPv4 address or IPv6 /64) may hold open at once on
    /// the HTTP and OTLP/gRPC listeners; past it HTTP answers 429 and gRPC closes (see
    /// [`per_client`]).
    pub max_connections_per_client: usize,
    /// Largest request head (request line and headers) on the HTTP listener, and
    /// largest header list on the OTLP/gRPC listener; past it: 431.
    pub max_header_bytes: usize,
    /// Read requests per second per authenticated principal (0: no limit); past it:
    /// 429 with `Retry-After` (see [`per_client`]).
    pub read_requests_per_second: u32,
    /// A connection the server has written nothing to for this long is closed: idle
    /// keep-alive connections, and clients that trickle a request too slowly to ever
    /// get an answer (default 60 s; every request is bounded well below it).
    pub idle_timeout: Duration,
    /// Time allowed to receive a request body, and work allowed for one query.
    pub request_timeout: Duration,
    /// Stream of events whose request names none.
    pub default_stream: String,
    /// How long `POST /v1/events?wait=checkpoint` waits for a signed checkpoint that
    /// covers its entries; past it the answer is 503 listing the (appended) indexes.
    pub receipt_timeout: Duration,
    /// How often an incremental self-verification pass checks the entries appended
    /// since the last one (zero disables them). Each pass appends a verification record
    /// to `_stele/system`.
    pub verify_incremental_interval: Duration,
    /// How often a full self-verification pass checks the whole log (zero disables).
    pub verify_full_interval: Duration,
    /// Payload bytes per second self-verification reads at most.
    pub verify_max_bytes_per_sec: u64,
    /// `http://` URL a failed self-verification pass is POSTed to as JSON.
    pub verify_webhook: Option<String>,
    /// C2SP tlog-witnesses each new checkpoint is submitted to (off the sequencer
    /// thread); their cosignatures are appended to the note `GET /checkpoint` serves.
    pub witnesses: Vec<witness_client::WitnessConfig>,
    /// Cosignatures a checkpoint needs before `GET /checkpoint` serves the cosigned
    /// note; with fewer, the log-signed note is served and a warning logged.
    pub witnesses_required: usize,
    /// How long, and how many, idempotency keys and Kubernetes audit event keys are
    /// remembered to recognise retries.
    pub dedup: DedupConfig,
    /// Sources expected to send regularly; a longer silence is reported in
    /// `/metrics` and recorded in `_stele/gaps` (see [`ExpectedSource`]).
    pub expected_sources: Vec<ExpectedSource>,
    /// Per stream, an RFC 6901 JSON pointer to a field that identifies each event
    /// (`/event_id`): on `POST /v1/events` without an `Idempotency-Key`, an event whose
    /// id and bytes were already stored within the event window is not appended again.
    pub event_id_fields: std::collections::HashMap<String, String>,
    /// Retention policies in force (already reconciled with the log's policy records,
    /// see `stele_retention::reconcile`); expired segments are deleted every
    /// `retention_interval`.
    pub retention: Vec<stele_retention::Policy>,
    /// How often a retention pass runs (default 1 h; zero disables).
    pub retention_interval: Duration,
    /// Personal-data fields sealed at ingest under per-subject keys (docs/erasure.md);
    /// `None`: nothing is sealed.
    pub erasure: Option<stele_erasure::ErasureConfig>,
    /// Syslog listeners (UDP, TCP, TLS); none by default. See [`syslog`].
    pub syslog: syslog::SyslogConfig,
    /// Address of the OTLP/gRPC logs listener (`LogsService/Export`), if any.
    /// OTLP/HTTP (`POST /v1/logs`) is always served on `listen`.
    pub otlp_grpc: Option<SocketAddr>,
    /// Stream of OTLP log records whose request names none.
    pub otlp_default_stream: String,
    /// Principals, roles, public routes, access records and rate limits (see [`auth`]).
    pub auth: auth::AuthConfig,
    /// TLS of the HTTP listener and the OTLP/gRPC listener (see [`tls`]); plain when
    /// `None`, which a non-loopback address allows only with `auth.allow_plain_http`.
    pub tls: Option<tls::TlsConfig>,
    /// RFC 3161 timestamp authorities the newest checkpoint is sent to (none by
    /// default; see [`timestamping`]).
    pub timestamp_authorities: Vec<timestamping::TimestampAuthority>,
    /// How often the newest checkpoint is timestamped when it is not yet.
    pub timestamp_interval: Duration,
}

impl ServerConfig {
    /// A configuration with every default.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen,
            log_options: LogOptions::default(),
            field_pointers: FieldPointers::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: per_client::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            read_requests_per_second: per_client::DEFAULT_READ_REQUESTS_PER_SECOND,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            default_stream: stele_store::streams::DEFAULT_STREAM.to_string(),
            receipt_timeout: DEFAULT_RECEIPT_TIMEOUT,
            verify_incremental_interval: DEFAULT_VERIFY_INCREMENTAL_INTERVAL,
            verify_full_interval: DEFAULT_VERIFY_FULL_INTERVAL,
            verify_max_bytes_per_sec: DEFAULT_VERIFY_MAX_BYTES_PER_SEC,
            verify_webhook: None,
            witnesses: Vec::new(),
            witnesses_required: 0,
            dedup: DedupConfig::default(),
            expected_sources: Vec::new(),
            event_id_fields: Default::default(),
            retention: Vec::new(),
            retention_interval: Duration::from_secs(3600),
            erasure: None,
            syslog: syslog::SyslogConfig::default(),
            otlp_grpc: None,
            otlp_default_stream: DEFAULT_OTLP_STREAM.to_string(),
            auth: auth::AuthConfig::default(),
            tls: None,
            timestamp_authorities: Vec::new(),
            timestamp_interval: timestamping::DEFAULT_TIMESTAMP_INTERVAL,
        }
    }

    fn check(&self, log: &Log) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.witnesses_required > self.witnesses.len() {
            return bad(format!(
                "witnesses_required is {} but only {} witnesses are configured",
                self.witnesses_required,
                self.witnesses.len()
            ));
        }
        if self.log_options.max_entry_bytes != log.options().max_entry_bytes {
            return bad(format!(
                "log_options.max_entry_bytes is {} but the log was opened with {}",
                self.log_options.max_entry_bytes,
                log.options().max_entry_bytes
            ));
        }
        if self.checkpoint_interval.is_zero() {
            return bad("checkpoint_interval must be positive".into());
        }
        if self.max_body_bytes == 0 || self.max_batch_events == 0 || self.max_connections == 0 {
            return bad("max_body_bytes, max_batch_events and max_connections must be positive".into());
        }
        if self.max_connections_per_client == 0 {
            return bad("max_connections_per_client must be positive".into());
        }
        if self.max_header_bytes < MIN_MAX_HEADER_BYTES {
            return bad(format!(
                "max_header_bytes must be at least {MIN_MAX_HEADER_BYTES} (the HTTP server's read buffer)"
            ));
        }
        if self.queue_depth < self.max_batch_events {
            return bad(format!(
                "queue_depth ({}) must be at least max_batch_events ({})",
                self.queue_depth, self.max_batch_events
            ));
        }
        if self.queue_bytes < self.max_body_bytes {
            return bad(format!(
                "queue_bytes ({}) must be at least max_body_bytes ({})",
                self.queue_bytes, self.max_body_bytes
            ));
        }
        if self.request_timeout.is_zero() || self.receipt_timeout.is_zero() {
            return bad("request_timeout and receipt_timeout must be positive".into());
        }
        if self.idle_timeout <= self.request_timeout.max(self.receipt_timeout) {
            return bad(format!(
                "idle_timeout ({:?}) must be longer than request_timeout and receipt_timeout, or requests in progress would be cut",
                self.idle_timeout
            ));
        }
        if let Some(url) = &self.verify_webhook {
            selfcheck::check_webhook(url).map_err(ServerError::Config)?;
        }
        for (stream, pointer) in &self.event_id_fields {
            stele_store::streams::check_stream_name(stream)
                .map_err(|e| ServerError::Config(format!("event id field: {e}")))?;
            if !pointer.starts_with('/') {
                return bad(format!(
                    "event id field of {stream:?}: {pointer:?} is not a JSON pointer (it starts with /)"
                ));
            }
        }
        for s in &self.expected_sources {
            stele_store::streams::check_stream_name(&s.stream)
                .map_err(|e| ServerError::Config(format!("expected source: {e}")))?;
            if s.max_silence < Duration::from_secs(1) {
                return bad(format!("expected source {:?}: max_silence must be at least 1 s", s.stream));
            }
        }
        if self.verify_max_bytes_per_sec == 0 {
            return bad("verify_max_bytes_per_sec must be positive".into());
        }
        if self.syslog.enabled() {
            self.syslog.check()?;
            // A syslog batch waits for room in the queue: it must fit in an empty one.
            let batch_bytes = syslog::BATCH_BYTES + self.syslog.max_message_bytes;
            if self.queue_depth < syslog::BATCH_EVENTS || self.queue_bytes < batch_bytes {
                return bad(format!(
                    "with syslog listeners, queue_depth must be at least {} and queue_bytes at least {batch_bytes}",
                    syslog::BATCH_EVENTS
                ));
            }
        }
        for a in &self.timestamp_authorities {
            a.certificates().map_err(ServerError::Config)?;
        }
        if !self.timestamp_authorities.is_empty() && self.timestamp_interval < Duration::from_secs(1) {
            return bad("timestamp_interval must be at least 1 s".into());
        }
        stele_store::streams::check_stream_name(&self.otlp_default_stream)
            .map_err(|e| ServerError::Config(format!("otlp_default_stream: {e}")))?;
        auth::check_config(self).map_err(ServerError::Config)?;
        stele_store::streams::check_stream_name(&self.default_stream)
            .map_err(|e| ServerError::Config(format!("default_stream: {e}")))
    }
}

/// A server that is listening; it runs until its shutdown future completes.
pub struct RunningServer {
    local_addr: SocketAddr,
    syslog_addrs: syslog::Addrs,
    otlp_grpc_addr: Option<SocketAddr>,
    handle: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The syslog UDP listener's address, when one is configured.
    pub fn syslog_udp_addr(&self) -> Option<SocketAddr> {
        self.syslog_addrs.0
    }

    /// The syslog TCP listener's address, when one is configured.
    pub fn syslog_tcp_addr(&self) -> Option<SocketAddr> {
        self.syslog_addrs.1
    }

    /// The syslog TLS listener's address, when one is configured.
    pub fn syslog_tls_addr(&self) -> Option<SocketAddr> {
        self.syslog_addrs.2
    }

    /// The address the OTLP/gRPC listener listens on, when configured.
    pub fn otlp_grpc_addr(&self) -> Option<SocketAddr> {
        self.otlp_grpc_addr
    }

    /// Waits until the server has shut down: open connections finished, queued events
    /// committed, the index flushed and a final checkpoint signed.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.handle.await.map_err(|e| ServerError::Sequencer(format!("server task: {e}")))?
    }
}

/// Starts the server: binds `config.listen`, opens the query index and brings it up to
/// date with the log (this reads every entry not yet indexed), starts the sequencer,
/// and serves until `shutdown` completes. Must be called within a multi-threaded
/// Tokio runtime.
pub async fn start(
    config: ServerConfig,
    log: Log,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ServerError> {
    config.check(&log)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let syslog_bound = if config.syslog.enabled() { Some(syslog::bind(&config.syslog).await?) } else { None };
    let syslog_addrs = syslog_bound.as_ref().map_or((None, None, None), syslog::Bound::addrs);
    let grpc_listener = match config.otlp_grpc {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
            let bound = l.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
            Some((l, bound))
        }
        None => None,
    };
    let otlp_grpc_addr = grpc_listener.as_ref().map(|(_, a)| *a);
    let (http_tls, grpc_tls) = match &config.tls {
        Some(t) => (
            Some(tls::Reloader::new(t, &[b"http/1.1"], "HTTP").map_err(ServerError::Config)?),
            match config.otlp_grpc {
                Some(_) => Some(tls::Reloader::new(t, &[b"h2"], "OTLP/gRPC").map_err(ServerError::Config)?),
                None => None,
            },
        ),
        None => (None, None),
    };

    let reader = log.reader();
    let (dir, pointers) = (config.data_dir.clone(), config.field_pointers.clone());
    let index_reader = reader.clone();
    let dedup_config = config.dedup.clone();
    let erasure = config.erasure.clone();
    let (index, dedup_tables, sealer) = tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
        let mut index = Index::open(&dir, index_reader.clone(), &pointers, true)?;
        let added = index.catch_up()?;
        if added > 0 {
            tracing::info!(entries = added, "indexed entries the query index was missing");
        }
        let tables = dedup::load(&dedup_config, &index, &index_reader)?;
        let sealer = match &erasure {
            Some(e) => Some(
                e.open_sealer(&dir, &index.snapshot(), &index_reader)
                    .map_err(|e| ServerError::Config(e.to_string()))?,
            ),
            None => None,
        };
        Ok((index, tables, sealer))
    })
    .await
    .map_err(|e| ServerError::Sequencer(format!("index task: {e}")))??;

    let metrics = metrics::Metrics::new();
    metrics.tree_size.set(i64::try_from(log.tree_size()).unwrap_or(i64::MAX));
    let (checkpoints, _) = tokio::sync::watch::channel(log.newest_checkpoint().map_or(0, |c| c.tree_size));
    let shared = Arc::new(Shared {
        reader,
        checkpoints,
        node_cache: nodes::NodeCache::default(),
        snapshot: RwLock::new(index.snapshot()),
        poisoned: Mutex::new(log.poisoned().map(str::to_string)),
        disk_full: Mutex::new(None),
        queued_events: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        sequencer_alive: AtomicBool::new(true),
        metrics,
        last_seen: Default::default(),
        shed: Default::default(),
        cosigned: Arc::default(),
        trusted_time: Default::default(),
    });
    timestamping::load(&shared)?;
    timestamping::spawn(&config.timestamp_authorities, config.timestamp_interval, shared.clone())
        .map_err(ServerError::Config)?;
    if !config.witnesses.is_empty() {
        let w = witness_client::Witnesses::new(&config.witnesses, witness_client::DEFAULT_WITNESS_TIMEOUT)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let rx = shared.checkpoints.subscribe();
        witness_client::spawn(w, config.witnesses_required, shared.reader.clone(), rx, shared.cosigned.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    // Stopped when dropped: if the sequencer does not start, or at shutdown.
    let selfcheck = selfcheck::spawn(&config, shared.clone(), tx.clone())?;
    let in_force = Arc::new(retention_api::InForce::new(config.retention.clone()));
    let retention = retention_task::spawn(
        in_force.clone(),
        config.retention_interval,
        shared.clone(),
        tx.clone(),
        config.erasure.is_some(),
    )?;
    let sequencer = Sequencer::new(log, index, shared.clone(), rx, config.checkpoint_interval, dedup_tables)
        .with_sealer(sealer, Normalizer::new(&config.field_pointers));
    let thread = std::thread::Builder::new()
        .name("stele-sequencer".into())
        .spawn(move || sequencer.run())
        .map_err(|e| ServerError::Sequencer(format!("spawning: {e}")))?;

    let app = Arc::new(App {
        shared,
        tx: tx.clone(),
        normalizer: Arc::new(Normalizer::new(&config.field_pointers)),
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_batch_events: config.max_batch_events,
            max_entry_bytes: config.log_options.max_entry_bytes,
            queue_depth: config.queue_depth,
            queue_bytes: config.queue_bytes,
            body_timeout: config.request_timeout,
            query_timeout: config.request_timeout,
            receipt_timeout: config.receipt_timeout,
        },
        default_stream: config.default_stream.clone(),
        event_id_fields: config.event_id_fields.clone(),
        otlp_stream: config.otlp_default_stream.clone(),
        auth: Arc::new(auth::Auth::new(config.auth.clone(), config.data_dir.clone())),
        approvals: Arc::new(approvals::Approvals::new(&config.auth)),
        retention: in_force,
        data_dir: config.data_dir.clone(),
        read_rate: per_client::ReadRate::new(config.read_requests_per_second),
    });
    // Tokens are loaded (and their creation recorded) before the first request.
    if let Err(e) = auth::load_tokens(&app, true).await {
        let _ = tx.send(Msg::Shutdown);
        return Err(ServerError::Config(e));
    }
    // Requests waiting for approval survive a restart.
    if let Err(e) = approvals::load(&app).await {
        let _ = tx.send(Msg::Shutdown);
        return Err(ServerError::Config(format!("reading {}: {e}", approvals::APPROVALS_STREAM)));
    }
    auth::spawn_token_reload(app.clone());
    access::spawn_flush(app.clone());
    let syslog_tls = syslog_bound.as_ref().and_then(syslog::Bound::tls_reloader);
    tls::spawn_reload(
        http_tls.iter().chain(grpc_tls.iter()).chain(syslog_tls.iter()).cloned().collect(),
        config.auth.reload_interval,
    );
    // One shutdown signal for every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc = grpc_listener.map(|(l, addr)| {
        tracing::info!(%addr, "OTLP/gRPC listening");
        let refused = app.shared.metrics.connections_refused.get_or_create(&[("listener", "otlp-grpc")]).clone();
        let per_client = per_client::PerClient::new("otlp-grpc", config.max_connections_per_client, refused);
        let l = listener::LimitedListener::new(l, config.max_connections, config.idle_timeout, per_client)
            .refusing_past_total();
        tokio::spawn(otlp_grpc::serve(
            l,
            grpc_tls.clone(),
            config.request_timeout,
            config.max_header_bytes,
            app.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    silence::spawn(app.clone(), config.expected_sources.clone());
    lifecycle::record_start(&app).await;
    lifecycle::spawn_shedding(app.clone());
    timestamping::spawn_clock_records(app.clone());
    let stopping_app = app.clone();
    let syslog = syslog_bound.map(|b| syslog::spawn(b, app.clone(), stop_rx.clone()));
    let refused = app.shared.metrics.connections_refused.get_or_create(&[("listener", "http")]).clone();
    let per_client = per_client::PerClient::new("http", config.max_connections_per_client, refused);
    let router = http::router(app);
    let listener = listener::LimitedListener::new(listener, config.max_connections, config.idle_timeout, per_client);
    let max_header_bytes = config.max_header_bytes;
    tracing::info!(%local_addr, tls = http_tls.is_some(), "stele server listening");
    let handshake_timeout = config.request_timeout;
    let handle = tokio::spawn(async move {
        match http_tls {
            None => serve_http::serve(listener, router, max_header_bytes, stopped(stop_rx)).await,
            Some(r) => {
                let listener = tls::TlsListener::new(listener, r, handshake_timeout);
                serve_http::serve(listener, router, max_header_bytes, stopped(stop_rx)).await
            }
        }
        // Syslog connections append what they have read before the sequencer stops.
        if let Some(s) = syslog {
            s.wait().await;
        }
        let grpc_served = match grpc {
            Some(task) => task.await.map_err(|e| ServerError::Sequencer(format!("OTLP/gRPC task: {e}")))?,
            None => Ok(()),
        };
        // Every connection is closed: let the sequencer commit what is queued and stop.
        drop(selfcheck);
        drop(retention);
        access::flush(&stopping_app).await;
        lifecycle::record_stop(&stopping_app).await;
        drop(stopping_app);
        let _ = tx.send(Msg::Shutdown);
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| ServerError::Sequencer(format!("joining: {e}")))?;
        let sequenced = joined.map_err(|_| ServerError::Sequencer("panicked".into()))?;
        grpc_served.map_err(|e| ServerError::Io(std::io::Error::other(format!("OTLP/gRPC: {e}"))))?;
        sequenced
    });
    Ok(RunningServer { local_addr, syslog_addrs, otlp_grpc_addr, handle })
}

/// Runs the server until `shutdown` completes (see [`start`]), then returns once
/// everything queued is committed and a final checkpoint is signed.
pub async fn run(
    config: ServerConfig,
    log: Log,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    start(config, log, shutdown).await?.wait().await
}
