//! Prometheus metrics (`GET /metrics`, OpenMetrics text).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stele_store::LogReader;

/// Labels of `stele_http_requests_total`: the matched route pattern (so the label
/// set stays bounded whatever paths clients send) and the status code.
pub(crate) type HttpLabels = [(&'static str, String); 2];

/// Every metric the server exports. The handles are cheap atomics shared by the HTTP
/// handlers and the sequencer.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) entries_appended: Counter,
    pub(crate) bytes_appended: Counter,
    pub(crate) tree_size: Gauge,
    pub(crate) append_duration: Histogram,
    pub(crate) fsync_duration: Histogram,
    pub(crate) commit_batch_entries: Histogram,
    checkpoint_age: Gauge<f64, AtomicU64>,
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) queued_events: Gauge,
    pub(crate) query_index_mismatches: Counter,
    /// Tree size covered by the last self-verification pass that succeeded.
    pub(crate) verify_last_size: Gauge,
    /// Unix time of the end of the last self-verification pass that succeeded.
    pub(crate) verify_last_success: Gauge<f64, AtomicU64>,
    /// Duration of the last self-verification pass, by kind.
    pub(crate) verify_pass_duration: Family<KindLabels, Gauge<f64, AtomicU64>>,
    /// Self-verification passes that found a problem or could not read the log.
    pub(crate) verify_failures: Counter,
    /// Events per ingest protocol and result.
    pub(crate) ingest_events: Family<IngestLabels, Counter>,
    /// Segments removed by retention.
    pub(crate) retention_deleted_segments: Counter,
    /// Entries whose payloads retention removed.
    pub(crate) retention_deleted_entries: Counter,
    /// Time the sequencer spent on one segment deletion (ingestion waits that long).
    pub(crate) retention_delete_duration: Histogram,
    /// Times the log recovered from a failed write or sync and took writes again.
    pub(crate) log_recoveries: Counter,
    /// 1 while a declared source is silent for longer than it may be.
    pub(crate) source_silent: Family<StreamLabels, Gauge>,
    /// Seconds since a declared source's newest event (or since the start).
    pub(crate) source_last_event_age: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    /// Syslog connections closed by the server, by protocol and reason.
    pub(crate) syslog_closed: Family<IngestLabels, Counter>,
    /// Connections refused for being over their client's share (or, OTLP/gRPC, the
    /// listener's total), by listener.
    pub(crate) connections_refused: Family<KindLabels, Counter>,
    /// Clock steps and RFC 3161 tokens (see `timestamping`).
    pub(crate) trusted_time: crate::timestamping::TimeMetrics,
    /// Checkpoint signing attempts that got no signature (signer unreachable or refusing).
    pub(crate) checkpoint_sign_failures: Counter,
    /// 1 while the last checkpoint signing attempt succeeded, 0 after a failure.
    pub(crate) signer_up: Gauge,
}

/// Labels of the per-stream source gauges: the stream name (declared sources only,
/// so the label set is bounded by the configuration).
pub(crate) type StreamLabels = [(&'static str, String); 1];

/// Labels of `stele_ingest_events_total`: `protocol` (`http-json`, `k8s-webhook`,
/// `otlp-http`, `otlp-grpc`, `syslog-udp`, `syslog-tcp`, `syslog-tls`) and `result`
/// (`accepted`: durable; `rejected`: refused as invalid, the sender was told;
/// `dropped`: lost without the sender being told, e.g. a UDP datagram while overloaded).
pub(crate) type IngestLabels = [(&'static str, &'static str); 2];

/// Labels of `stele_verify_pass_duration_seconds`: `kind` is `incremental` or `full`.
pub(crate) type KindLabels = [(&'static str, &'static str); 1];

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let entries_appended = Counter::default();
        registry.register(
            "stele_entries_appended",
            "Events appended and acknowledged (stele's own stream records not counted)",
            entries_appended.clone(),
        );
        let bytes_appended = Counter::default();
        registry.register("stele_bytes_appended", "Payload bytes of the events appended", bytes_appended.clone());
        let tree_size = Gauge::default();
        registry.register("stele_tree_size", "Entries in the log (durable)", tree_size.clone());
        // 0.5 ms .. ~16 s: an fsync is a few ms on SSDs, tens of ms on disks and VMs.
        let append_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "stele_append_duration_seconds",
            "Time from a POST /v1/events request's arrival to its acknowledgement (after fsync)",
            append_duration.clone(),
        );
        let fsync_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "stele_fsync_duration_seconds",
            "Time of one group commit (writes and fsyncs)",
            fsync_duration.clone(),
        );
        let commit_batch_entries = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register("stele_commit_batch_entries", "Events per group commit", commit_batch_entries.clone());
        let checkpoint_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "stele_checkpoint_age_seconds",
            "Age of the newest signed checkpoint (-1 when there is none yet)",
            checkpoint_age.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("stele_http_requests", "HTTP requests answered, by route and status", http_requests.clone());
        let queued_events = Gauge::default();
        registry.register("stele_queued_events", "Events accepted and waiting for their commit", queued_events.clone());
        let query_index_mismatches = Counter::default();
        registry.register(
            "stele_query_index_mismatches",
            "Query hits of the index that the log contradicted (dropped from answers; a sign of a damaged index)",
            query_index_mismatches.clone(),
        );
        let verify_last_size = Gauge::default();
        registry.register(
            "stele_verify_last_size",
            "Tree size covered by the last self-verification pass that succeeded",
            verify_last_size.clone(),
        );
        let verify_last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "stele_verify_last_success_timestamp_seconds",
            "Unix time at which the last successful self-verification pass ended (0 before the first)",
            verify_last_success.clone(),
        );
        let verify_pass_duration = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "stele_verify_pass_duration_seconds",
            "Wall time of the last self-verification pass, throttling included, by kind (incremental or full)",
            verify_pass_duration.clone(),
        );
        let verify_failures = Counter::default();
        registry.register(
            "stele_verify_failures",
            "Self-verification passes that found damage or could not read the log",
            verify_failures.clone(),
        );
        let ingest_events = Family::<IngestLabels, Counter>::default();
        registry.register(
            "stele_ingest_events",
            "Events received, by ingest protocol and result (accepted = durable, rejected = refused as invalid with an answer to the sender, dropped = lost without one)",
            ingest_events.clone(),
        );
        let source_silent = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "stele_source_silent",
            "1 while a declared source has sent nothing for longer than its max_silence, else 0",
            source_silent.clone(),
        );
        let source_last_event_age = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "stele_source_last_event_age_seconds",
            "Seconds since the newest event of a declared source's stream (since the start when none yet)",
            source_last_event_age.clone(),
        );
        let retention_deleted_segments = Counter::default();
        registry.register(
            "stele_retention_deleted_segments",
            "Payload segments removed by retention passes (each under a deletion record)",
            retention_deleted_segments.clone(),
        );
        let retention_deleted_entries = Counter::default();
        registry.register(
            "stele_retention_deleted_entries",
            "Entries whose payloads retention removed (leaves and proofs remain)",
            retention_deleted_entries.clone(),
        );
        let retention_delete_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "stele_retention_delete_duration_seconds",
            "Time the sequencer spent removing one segment (ingestion waits that long)",
            retention_delete_duration.clone(),
        );
        let log_recoveries = Counter::default();
        registry.register(
            "stele_log_recoveries",
            "Times the log recovered from a failed write or sync (disk full, I/O error) and took writes again",
            log_recoveries.clone(),
        );
        let syslog_closed = Family::<IngestLabels, Counter>::default();
        registry.register(
            "stele_syslog_connections_closed",
            "Syslog TCP/TLS connections the server closed, by protocol and reason (not_allowed, too_many_connections, too_many_from_client, tls_handshake, idle_timeout, message_timeout, bad_frame, read_error, storage_unavailable)",
            syslog_closed.clone(),
        );
        let connections_refused = Family::<KindLabels, Counter>::default();
        registry.register(
            "stele_connections_refused",
            "Connections refused because their client (IPv4 address or IPv6 /64) already held max_connections_per_client, by listener (http, otlp-grpc, syslog-tcp, syslog-tls)",
            connections_refused.clone(),
        );
        let checkpoint_sign_failures = Counter::default();
        registry.register(
            "stele_checkpoint_sign_failures",
            "Checkpoint signing attempts that got no signature (signer unreachable, refusing or answering wrongly); entries are still accepted",
            checkpoint_sign_failures.clone(),
        );
        let signer_up = Gauge::default();
        signer_up.set(1);
        registry.register(
            "stele_signer_up",
            "1 while the checkpoint signer answers, 0 since its last failure",
            signer_up.clone(),
        );
        let trusted_time = crate::timestamping::TimeMetrics::register(&mut registry);
        Metrics {
            trusted_time,
            checkpoint_sign_failures,
            signer_up,
            registry,
            retention_deleted_segments,
            retention_deleted_entries,
            retention_delete_duration,
            log_recoveries,
            ingest_events,
            source_silent,
            source_last_event_age,
            syslog_closed,
            connections_refused,
            verify_last_size,
            verify_last_success,
            verify_pass_duration,
            verify_failures,
            entries_appended,
            bytes_appended,
            tree_size,
            append_duration,
            fsync_duration,
            commit_batch_entries,
            checkpoint_age,
            http_requests,
            queued_events,
            query_index_mismatches,
        }
    }

    /// Counts `n` events of `protocol` with `result` (see [`IngestLabels`]).
    pub(crate) fn count_ingest(&self, protocol: &'static str, result: &'static str, n: usize) {
        self.ingest_events.get_or_create(&[("protocol", protocol), ("result", result)]).inc_by(n as u64);
    }

    pub(crate) fn observe(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }

    /// The exposition text, with the gauges that are computed at scrape time updated.
    pub(crate) fn render(&self, reader: &LogReader) -> String {
        let age = match reader.newest_checkpoint() {
            Some(cp) => stele_store::log::now_ns().saturating_sub(cp.signed_ns) as f64 / 1e9,
            None => -1.0,
        };
        self.checkpoint_age.set(age);
        self.tree_size.set(i64::try_from(reader.tree_size()).unwrap_or(i64::MAX));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
