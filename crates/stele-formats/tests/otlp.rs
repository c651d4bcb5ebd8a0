//! OTLP logs against real bytes: bodies captured from real exporters
//! (`../shared/data/captured/otlp-logs-*`) and OTLP/JSON files from the
//! opentelemetry-proto and fluent-bit repositories (`../shared/data/otlp-logs`).
//! Skips without `../shared`, except under `STELE_REQUIRE_PEERS=1`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use prost::Message as _;
use stele_formats::otlp::proto::{ExportLogsServiceRequest, any_value};
use stele_formats::otlp::{
    OtlpEncoding, OtlpError, OtlpLimits, decode_canonical, decode_request, record_count, split_request,
};
use stele_formats::{EventFormat, FieldPointers, Normalizer};

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("../shared not found at {} and STELE_REQUIRE_PEERS=1", dir.display());
    }
    eprintln!("skipping: ../shared not found ({})", dir.display());
    None
}

const LIMITS: OtlpLimits = OtlpLimits { max_records: 10_000, max_record_bytes: 1 << 20, max_total_bytes: 64 << 20 };

/// Splits `req`, checks that every stored entry decodes back to the record it came
/// from (with its resource and scope) and re-normalizes to the same fields.
fn check_round_trip(name: &str, req: &ExportLogsServiceRequest) -> Vec<stele_formats::Normalized> {
    let split = split_request(req, &LIMITS).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(split.rejected, 0, "{name}");
    let normalizer = Normalizer::new(&FieldPointers::default());
    let mut i = 0;
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                let (range, fields) = &split.records[i];
                let stored = &split.bytes[range.clone()];
                let back = decode_canonical(stored).unwrap_or_else(|e| panic!("{name} record {i}: {e}"));
                assert_eq!(back.resource, rl.resource, "{name} record {i}");
                assert_eq!(back.schema_url, rl.schema_url, "{name} record {i}");
                assert_eq!(back.scope_logs[0].scope, sl.scope, "{name} record {i}");
                assert_eq!(back.scope_logs[0].schema_url, sl.schema_url, "{name} record {i}");
                assert_eq!(&back.scope_logs[0].log_records[0], rec, "{name} record {i}");
                let (format, again) = normalizer.parse(stored, Some(EventFormat::OtlpLog)).unwrap();
                assert_eq!((format, &again), (EventFormat::OtlpLog, fields), "{name} record {i}");
                i += 1;
            }
        }
    }
    assert_eq!(i, split.records.len(), "{name}");
    split.records.into_iter().map(|(_, f)| f).collect()
}

fn body_of(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if path.to_string_lossy().contains("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    }
}

#[test]
fn captured_exporter_bodies() {
    let Some(data) = data_dir() else { return };
    let dir = data.join("captured");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("otlp-logs-") || name.ends_with(".headers.txt") {
            continue;
        }
        let headers = std::fs::read_to_string(dir.join(name.replace(".bin", "").replace(".json", "") + ".headers.txt"))
            .unwrap()
            .to_ascii_lowercase();
        let encoding = if headers.contains("application/json") { OtlpEncoding::Json } else { OtlpEncoding::Protobuf };
        let body = body_of(&path);
        let req = decode_request(&body, encoding).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(record_count(&req) >= 1, "{name}");
        let fields = check_round_trip(&name, &req);
        for f in &fields {
            // Every captured record has a time (the Python SDK sets only the observed time).
            assert!(f.event_time_ns.is_some_and(|t| t > 1_700_000_000_000_000_000), "{name}: {f:?}");
        }
        if name.contains("python") || name.contains("rotel") || name.contains("node") {
            // These exporters set service.name in the resource.
            assert!(fields.iter().all(|f| f.producer.is_some()), "{name}: {fields:?}");
        }
        if name.contains("python") || name.contains("rotel") {
            let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
            assert_eq!(rec.time_unix_nano, 0, "{name}: the Python SDK leaves time_unix_nano unset");
            assert_eq!((rec.trace_id.len(), rec.span_id.len()), (16, 8), "{name}");
        }
        // The same record in protobuf and in JSON is stored as the same bytes.
        let again = decode_request(&req.encode_to_vec(), OtlpEncoding::Protobuf).unwrap();
        assert_eq!(split_request(&again, &LIMITS).unwrap().bytes, split_request(&req, &LIMITS).unwrap().bytes);
        seen += 1;
    }
    assert_eq!(seen, 6, "six captured OTLP bodies");
}

/// The collector's JSON and protobuf exports of the same file line hold the same record.
#[test]
fn collector_json_and_protobuf_agree() {
    let Some(data) = data_dir() else { return };
    let dir = data.join("captured");
    let j = decode_request(&body_of(&dir.join("otlp-logs-otelcol-json.json")), OtlpEncoding::Json).unwrap();
    let p = decode_request(&body_of(&dir.join("otlp-logs-otelcol-protobuf.bin")), OtlpEncoding::Protobuf).unwrap();
    let body = |r: &ExportLogsServiceRequest| r.resource_logs[0].scope_logs[0].log_records[0].body.clone();
    assert!(matches!(body(&j).and_then(|b| b.value), Some(any_value::Value::StringValue(_))));
    assert_eq!(body(&j), body(&p));
}

/// The OTLP/JSON files: the opentelemetry-proto examples and fluent-bit's
/// `test_logs_expect_batch` decode with every record (counts from the files). Three
/// fluent-bit fixtures use the protobuf field names (`resource_logs`,
/// `string_value`), which OTLP/JSON does not allow (keys are lowerCamelCase, unknown
/// keys are ignored): they are refused with an error that says so rather than taken
/// as empty requests.
#[test]
fn otlp_json_files() {
    let Some(data) = data_dir() else { return };
    let dir = data.join("otlp-logs");
    let decode = |name: &str| decode_request(&std::fs::read(dir.join(name)).unwrap(), OtlpEncoding::Json);
    for (name, records) in [
        ("opentelemetry-proto_examples_logs.json", 1),
        ("opentelemetry-proto_examples_events.json", 1),
        ("fluent-bit_in_opentelemetry_test_logs_expect_batch.in.json", 4),
    ] {
        let req = decode(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(record_count(&req), records, "{name}");
        let fields = check_round_trip(name, &req);
        assert!(fields.iter().all(|f| f.producer.is_some()), "{name}: service.name is set: {fields:?}");
    }
    for name in [
        "fluent-bit_in_opentelemetry_test_logs_001.in.json",
        "fluent-bit_in_opentelemetry_test_logs_2038.in.json",
        "fluent-bit_out_opentelemetry_test_logs_metadata_001.in.json",
    ] {
        let e = decode(name).unwrap_err();
        assert!(e.to_string().contains("lowerCamelCase"), "{name}: {e}");
    }
    // The event example: event_name is the action, service.name the producer.
    let f = &check_round_trip("events", &decode("opentelemetry-proto_examples_events.json").unwrap())[0];
    assert_eq!(f.producer.as_deref(), Some("my.service"));
    assert!(f.action.is_some(), "{f:?}");
}

/// fluent-bit's table of OTLP/JSON cases (`tests/internal/data/opentelemetry/logs.json`):
/// each input with fluent-bit's verdict. stele agrees on every case except the ones
/// in `LENIENT`, which fluent-bit refuses and the OTLP/JSON encoding allows: missing
/// `resourceLogs` / `scopeLogs` (absent repeated fields are empty), and trace or span
/// ids of the wrong length (stored as sent; an invalid id is the producer's record).
#[test]
fn fluent_bit_cases() {
    const LENIENT: &[&str] = &[
        "scopeLogs_missing",
        "resourceLogs_missing",
        "resource_valid_scope_missing",
        "invalid_trace_id_length",
        "invalid_span_id_length",
    ];
    let Some(data) = data_dir() else { return };
    let text = std::fs::read(data.join("otlp-logs/fluent-bit_internal_opentelemetry_logs.json")).unwrap();
    let cases: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text).unwrap();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (name, case) in &cases {
        let body = serde_json::to_vec(&case["input"]).unwrap();
        let ours = decode_request(&body, OtlpEncoding::Json);
        if let Ok(req) = &ours {
            check_round_trip(name, req);
        }
        let theirs_ok = case.get("expected").is_some();
        assert!(theirs_ok || case.get("expected_error").is_some(), "{name}");
        let expect_ok = theirs_ok || LENIENT.contains(&name.as_str());
        assert_eq!(ours.is_ok(), expect_ok, "{name}: {:?}", ours.map(|r| record_count(&r)));
        if let Err(e) = ours {
            assert!(matches!(e, OtlpError::Json(_)), "{name}: {e}");
        }
    }
}
