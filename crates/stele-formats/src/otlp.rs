//! OpenTelemetry logs (OTLP): requests in, one canonical entry per `LogRecord` out.
//!
//! [`decode_request`] reads an `ExportLogsServiceRequest` from protobuf or from
//! OTLP/JSON (OTLP specification, "OTLP/HTTP" and "JSON Protobuf Encoding": trace and
//! span ids as hex, enums as integers, 64-bit integers as strings or numbers, field
//! names in lowerCamelCase). [`split_request`] turns every `LogRecord` into one entry:
//! its canonical encoding (see [`canonical_record`]) and its [`Normalized`] fields.
//! [`decode_canonical`] and [`parse_canonical`] read a stored entry back.
//!
//! # Canonical encoding
//!
//! A stored OTLP entry is the protobuf encoding (prost) of one
//! `opentelemetry.proto.logs.v1.ResourceLogs` message holding exactly one record:
//!
//! ```text
//! ResourceLogs {
//!   1: resource    (the request's Resource, omitted when absent)
//!   2: scope_logs  [ ScopeLogs {
//!        1: scope       (the InstrumentationScope, omitted when absent)
//!        2: log_records [ the one LogRecord ]
//!        3: schema_url  (the ScopeLogs' schema URL, omitted when empty)
//!      } ]
//!   3: schema_url  (the ResourceLogs' schema URL, omitted when empty)
//! }
//! ```
//!
//! Fields are written in field-number order, with proto3 defaults (0, empty strings
//! and bytes, absent messages) omitted, exactly as prost's `Message::encode` writes
//! them; the encoding is therefore a deterministic function of the decoded message.
//! Fields this version of the OTLP schema does not know are not kept (prost drops
//! unknown fields when decoding). The same record arriving as protobuf or as
//! OTLP/JSON is stored as the same bytes.

use std::ops::Range;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::normalize::{Normalized, normalize_outcome};

/// Re-exported OTLP message types, so that callers name the same types this module
/// decodes into (`opentelemetry-proto` 0.33, generated from the OTLP `.proto` files).
pub mod proto {
    pub use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    pub use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    pub use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    pub use opentelemetry_proto::tonic::resource::v1::Resource;
}

/// The two OTLP/HTTP body encodings (OTLP specification, "OTLP/HTTP Request").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// Binary protobuf, `Content-Type: application/x-protobuf`.
    Protobuf,
    /// OTLP/JSON (protobuf JSON mapping with OTLP's exceptions), `Content-Type: application/json`.
    Json,
}

/// Why an OTLP request or a stored OTLP entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The bytes are not a valid protobuf encoding of the expected message
    /// (truncated, wrong wire types, invalid UTF-8 in a string, nesting deeper than
    /// prost's recursion limit of 100).
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(String),
    /// The bytes are not valid OTLP/JSON (syntax, types, nesting deeper than
    /// serde_json's limit of 128, bad hex ids); the message is serde_json's.
    #[error("invalid OTLP/JSON: {0}")]
    Json(String),
    /// The request holds more log records than allowed.
    #[error("the request holds {records} log records, more than the limit of {limit} per request; split it")]
    TooManyRecords {
        /// Log records in the request.
        records: usize,
        /// The limit.
        limit: usize,
    },
    /// The canonical encodings of the accepted records together exceed the limit
    /// (each record carries a copy of its resource and scope).
    #[error("the stored form of the request's log records exceeds the limit of {limit} bytes; split it")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A stored entry is a valid `ResourceLogs` but does not hold exactly one
    /// `ScopeLogs` with exactly one `LogRecord`.
    #[error("not a canonical OTLP log entry: {0}")]
    NotCanonical(String),
}

/// Limits applied by [`split_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpLimits {
    /// Most log records in one request; more fail the whole request
    /// ([`OtlpError::TooManyRecords`]).
    pub max_records: usize,
    /// Largest canonical encoding of one record, in bytes; a larger record is
    /// rejected alone (counted in [`Split::rejected`]) and the others are kept.
    pub max_record_bytes: usize,
    /// Largest sum of the canonical encodings of the kept records, in bytes; past
    /// it the whole request fails ([`OtlpError::TooLarge`]).
    pub max_total_bytes: usize,
}

/// The entries of one request, ready to append.
#[derive(Debug, Default)]
pub struct Split {
    /// The canonical encodings of the kept records, one after the other.
    pub bytes: Vec<u8>,
    /// Per kept record, in request order: its range in `bytes` and its fields.
    pub records: Vec<(Range<usize>, Normalized)>,
    /// Records rejected individually (OTLP `partial_success.rejected_log_records`).
    pub rejected: u64,
    /// Why the first rejected record was rejected (OTLP `partial_success.error_message`).
    pub rejection: Option<String>,
}

/// Decodes an OTLP/HTTP logs request body (already decompressed).
///
/// # Errors
/// [`OtlpError::Protobuf`] or [`OtlpError::Json`] with the decoder's message.
pub fn decode_request(body: &[u8], encoding: OtlpEncoding) -> Result<ExportLogsServiceRequest, OtlpError> {
    match encoding {
        OtlpEncoding::Protobuf => {
            ExportLogsServiceRequest::decode(body).map_err(|e| OtlpError::Protobuf(e.to_string()))
        }
        // serde_json's recursion limit (128) bounds the nesting of AnyValue arrays
        // and key-value lists, so deep input fails instead of exhausting the stack.
        OtlpEncoding::Json => {
            // serde would also take a JSON array for the request message; OTLP/JSON
            // is an object.
            if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(OtlpError::Json("the body is not a JSON object".into()));
            }
            let req: ExportLogsServiceRequest =
                serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
            // Unknown keys are ignored (OTLP/JSON), so a body written with the proto
            // field names would be taken as an empty request and its records lost.
            if req.resource_logs.is_empty() && memchr::memmem::find(body, b"\"resource_logs\"").is_some() {
                return Err(OtlpError::Json(
                    "the body uses the protobuf field names (\"resource_logs\"); OTLP/JSON keys are lowerCamelCase (\"resourceLogs\")".into(),
                ));
            }
            Ok(req)
        }
    }
}

/// Number of log records in a request.
pub fn record_count(req: &ExportLogsServiceRequest) -> usize {
    req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

/// The canonical encoding of one record with its resource and scope (see the module
/// docs): `ResourceLogs { resource, scope_logs: [ScopeLogs { scope, log_records:
/// [record], schema_url: scope_schema_url }], schema_url: resource_schema_url }`.
pub fn canonical_record(
    resource: Option<&Resource>,
    resource_schema_url: &str,
    scope: Option<&InstrumentationScope>,
    scope_schema_url: &str,
    record: &LogRecord,
) -> Vec<u8> {
    ResourceLogs {
        resource: resource.cloned(),
        scope_logs: vec![ScopeLogs {
            scope: scope.cloned(),
            log_records: vec![record.clone()],
            schema_url: scope_schema_url.to_string(),
        }],
        schema_url: resource_schema_url.to_string(),
    }
    .encode_to_vec()
}

/// Splits a decoded request into one canonical entry per `LogRecord` (see the module
/// docs), in request order, with its normalized fields (see [`fields`]). The
/// encoding is written with prost's field encoders, the resource and scope parts
/// encoded once per `ResourceLogs` / `ScopeLogs`; the bytes equal
/// [`canonical_record`]'s.
///
/// # Errors
/// [`OtlpError::TooManyRecords`] past `limits.max_records`, [`OtlpError::TooLarge`]
/// past `limits.max_total_bytes`. A record over `limits.max_record_bytes` is not an
/// error: it is counted in [`Split::rejected`].
pub fn split_request(req: &ExportLogsServiceRequest, limits: &OtlpLimits) -> Result<Split, OtlpError> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, string};

    let records = record_count(req);
    if records > limits.max_records {
        return Err(OtlpError::TooManyRecords { records, limit: limits.max_records });
    }
    let mut out = Split { records: Vec::with_capacity(records), ..Split::default() };
    let (mut resource_part, mut resource_tail, mut scope_part, mut scope_tail) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rl in &req.resource_logs {
        resource_part.clear();
        resource_tail.clear();
        if let Some(r) = &rl.resource {
            message::encode(1, r, &mut resource_part);
        }
        if !rl.schema_url.is_empty() {
            string::encode(3, &rl.schema_url, &mut resource_tail);
        }
        for sl in &rl.scope_logs {
            scope_part.clear();
            scope_tail.clear();
            if let Some(s) = &sl.scope {
                message::encode(1, s, &mut scope_part);
            }
            if !sl.schema_url.is_empty() {
                string::encode(3, &sl.schema_url, &mut scope_tail);
            }
            for record in &sl.log_records {
                let record_len = record.encoded_len();
                // ScopeLogs = scope, field 2 (the record), schema_url.
                let scope_logs_len =
                    scope_part.len() + 1 + encoded_len_varint(record_len as u64) + record_len + scope_tail.len();
                let total = resource_part.len()
                    + 1
                    + encoded_len_varint(scope_logs_len as u64)
                    + scope_logs_len
                    + resource_tail.len();
                if total > limits.max_record_bytes {
                    out.rejected += 1;
                    out.rejection.get_or_insert_with(|| {
                        format!(
                            "a log record's stored form is {total} bytes, more than the limit of {} bytes per entry",
                            limits.max_record_bytes
                        )
                    });
                    continue;
                }
                if out.bytes.len() + total > limits.max_total_bytes {
                    return Err(OtlpError::TooLarge { limit: limits.max_total_bytes });
                }
                let start = out.bytes.len();
                let buf = &mut out.bytes;
                buf.extend_from_slice(&resource_part);
                encode_key(2, prost::encoding::WireType::LengthDelimited, buf);
                encode_varint(scope_logs_len as u64, buf);
                buf.extend_from_slice(&scope_part);
                encode_key(2, prost::encoding::WireType::LengthDelimited, buf);
                encode_varint(record_len as u64, buf);
                record.encode_raw(buf);
                buf.extend_from_slice(&scope_tail);
                buf.extend_from_slice(&resource_tail);
                assert_eq!(buf.len() - start, total, "canonical OTLP length computed wrongly");
                let fields = fields(rl.resource.as_ref(), record);
                out.records.push((start..out.bytes.len(), fields));
            }
        }
    }
    Ok(out)
}

/// Decodes a stored canonical entry: the `ResourceLogs` and its one record.
///
/// # Errors
/// [`OtlpError::Protobuf`] when the bytes are not a `ResourceLogs`;
/// [`OtlpError::NotCanonical`] when it does not hold exactly one `ScopeLogs` with
/// exactly one `LogRecord`.
pub fn decode_canonical(bytes: &[u8]) -> Result<ResourceLogs, OtlpError> {
    let rl = ResourceLogs::decode(bytes).map_err(|e| OtlpError::Protobuf(e.to_string()))?;
    match rl.scope_logs.as_slice() {
        [sl] if sl.log_records.len() == 1 => Ok(rl),
        [sl] => Err(OtlpError::NotCanonical(format!("{} log records instead of one", sl.log_records.len()))),
        other => Err(OtlpError::NotCanonical(format!("{} ScopeLogs instead of one", other.len()))),
    }
}

/// The normalized fields of a stored canonical entry (the same fields
/// [`split_request`] gave it).
///
/// # Errors
/// As [`decode_canonical`].
pub fn parse_canonical(bytes: &[u8]) -> Result<Normalized, OtlpError> {
    let rl = decode_canonical(bytes)?;
    Ok(fields(rl.resource.as_ref(), &rl.scope_logs[0].log_records[0]))
}

/// Attribute keys tried in order, on the record's attributes first and then on the
/// resource's, for each normalized field (OpenTelemetry semantic conventions).
mod keys {
    /// `enduser.id` (deprecated but widely emitted), then the `user.*` registry.
    pub(super) const ACTOR: &[&str] = &["enduser.id", "user.name", "user.id", "user.email"];
    /// `event.name` (the attribute form of `LogRecord.event_name`), then the
    /// operation of an RPC, an HTTP request or a database call.
    pub(super) const ACTION: &[&str] = &["event.name", "rpc.method", "http.request.method", "db.operation.name"];
    /// What the operation was done to.
    pub(super) const RESOURCE: &[&str] = &["url.path", "http.route", "url.full", "db.collection.name", "file.path"];
    /// The peer that acted.
    pub(super) const SOURCE_IP: &[&str] = &["client.address", "source.address", "network.peer.address"];
    /// The producer's identifier of the record.
    pub(super) const REQUEST_ID: &[&str] = &["log.record.uid"];
    /// An explicit outcome word (`success`, `failure`...).
    pub(super) const OUTCOME: &[&str] = &["event.outcome", "outcome"];
}

/// The normalized fields of one record with its resource:
///
/// | field | from |
/// |---|---|
/// | time | `time_unix_nano`, or `observed_time_unix_nano` when that is 0 (SDKs often leave the event time unset); absent when both are 0 or past `i64` |
/// | producer | resource attribute `service.name` |
/// | actor | attribute `enduser.id`, `user.name`, `user.id`, `user.email` |
/// | action | `LogRecord.event_name`, else attribute `event.name`, `rpc.method`, `http.request.method`, `db.operation.name` |
/// | resource | attribute `url.path`, `http.route`, `url.full`, `db.collection.name`, `file.path` |
/// | outcome | attribute `event.outcome` or `outcome` (through [`normalize_outcome`]); else `http.response.status_code` (< 400 success, ≥ 400 failure); else `rpc.grpc.status_code` (0 success, other failure); else `"failure"` when `error.type` is present |
/// | source_ip | attribute `client.address`, `source.address`, `network.peer.address` |
/// | request_id | attribute `log.record.uid`, else the record's `trace_id` in lowercase hex |
///
/// Attributes are looked up on the record first, then on the resource; the first key
/// present with a string, integer, boolean or double value (an array: its first such
/// element) wins. Integers and booleans become their decimal / `true` text.
// `..Normalized::default()` keeps this compiling when fields are added to `Normalized`.
#[allow(clippy::needless_update)]
pub fn fields(resource: Option<&Resource>, record: &LogRecord) -> Normalized {
    let res_attrs: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
    let find = |list: &[&str]| -> Option<String> {
        list.iter().find_map(|k| attr(&record.attributes, k).or_else(|| attr(res_attrs, k)))
    };
    let time = if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
    let action = if record.event_name.is_empty() { find(keys::ACTION) } else { Some(record.event_name.clone()) };
    let outcome = find(keys::OUTCOME).map(|o| normalize_outcome(&o)).or_else(|| {
        if let Some(code) = find(&["http.response.status_code"]).and_then(|c| c.parse::<i64>().ok()) {
            return Some(if code < 400 { "success" } else { "failure" }.to_string());
        }
        if let Some(code) = find(&["rpc.grpc.status_code"]).and_then(|c| c.parse::<i64>().ok()) {
            return Some(if code == 0 { "success" } else { "failure" }.to_string());
        }
        find(&["error.type"]).map(|_| "failure".to_string())
    });
    let request_id = find(keys::REQUEST_ID).or_else(|| {
        (!record.trace_id.is_empty() && record.trace_id.iter().any(|&b| b != 0)).then(|| hex_lower(&record.trace_id))
    });
    Normalized {
        event_time_ns: (time != 0).then(|| i64::try_from(time).ok()).flatten(),
        actor: find(keys::ACTOR),
        action,
        resource: find(keys::RESOURCE),
        outcome,
        source_ip: find(keys::SOURCE_IP),
        request_id,
        producer: attr(res_attrs, "service.name"),
        ..Normalized::default()
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The scalar text of attribute `key`, if present (see [`fields`]).
fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    scalar(kv.value.as_ref()?)
        .or_else(|| match &kv.value.as_ref()?.value {
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().find_map(scalar),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

fn scalar(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..KeyValue::default() }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn request() -> ExportLogsServiceRequest {
        let record = |i: i64| LogRecord {
            observed_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            severity_number: 9,
            body: Some(AnyValue { value: Some(s("hello")) }),
            attributes: vec![
                kv("enduser.id", s(&format!("user-{i}"))),
                kv("http.request.method", s("DELETE")),
                kv("http.response.status_code", any_value::Value::IntValue(403)),
                kv("client.address", s("192.0.2.7")),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name", s("billing"))], ..Resource::default() }),
                scope_logs: vec![
                    ScopeLogs {
                        scope: Some(InstrumentationScope { name: "a".into(), ..InstrumentationScope::default() }),
                        log_records: vec![record(0), record(1)],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeLogs { scope: None, log_records: vec![record(2)], schema_url: String::new() },
                ],
                schema_url: String::new(),
            }],
        }
    }

    const LIMITS: OtlpLimits = OtlpLimits { max_records: 100, max_record_bytes: 1 << 20, max_total_bytes: 1 << 24 };

    #[test]
    fn split_matches_prost_encoding_and_fields() {
        let req = request();
        let split = split_request(&req, &LIMITS).unwrap();
        assert_eq!(split.records.len(), 3);
        let mut i = 0;
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for rec in &sl.log_records {
                    let (range, f) = &split.records[i];
                    let expect =
                        canonical_record(rl.resource.as_ref(), &rl.schema_url, sl.scope.as_ref(), &sl.schema_url, rec);
                    assert_eq!(&split.bytes[range.clone()], &expect[..], "record {i}");
                    let back = decode_canonical(&expect).unwrap();
                    assert_eq!(&back.scope_logs[0].log_records[0], rec);
                    assert_eq!(back.scope_logs[0].scope, sl.scope);
                    assert_eq!(back.resource, rl.resource);
                    assert_eq!(&parse_canonical(&expect).unwrap(), f);
                    i += 1;
                }
            }
        }
        let f = &split.records[1].1;
        assert_eq!(f.actor.as_deref(), Some("user-1"));
        assert_eq!(f.action.as_deref(), Some("DELETE"));
        assert_eq!(f.outcome.as_deref(), Some("failure"));
        assert_eq!(f.source_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(f.producer.as_deref(), Some("billing"));
        assert_eq!(f.event_time_ns, Some(1_700_000_000_000_000_001));
        assert_eq!(f.request_id.as_deref(), Some("abababababababababababababababab"));
    }

    #[test]
    fn limits() {
        let req = request();
        let e = split_request(&req, &OtlpLimits { max_records: 2, ..LIMITS }).unwrap_err();
        assert_eq!(e, OtlpError::TooManyRecords { records: 3, limit: 2 });
        // Record 0 and 1 are in a scope with a schema URL, so their entries are larger
        // than record 2's: a per-entry limit between the two rejects only those.
        let small = split_request(&req, &LIMITS).unwrap();
        let sizes: Vec<usize> = small.records.iter().map(|(r, _)| r.len()).collect();
        assert!(sizes[0] > sizes[2]);
        let part = split_request(&req, &OtlpLimits { max_record_bytes: sizes[2], ..LIMITS }).unwrap();
        assert_eq!((part.records.len(), part.rejected), (1, 2));
        assert!(part.rejection.unwrap().contains("limit"));
        let e = split_request(&req, &OtlpLimits { max_total_bytes: sizes[0] + 1, ..LIMITS }).unwrap_err();
        assert!(matches!(e, OtlpError::TooLarge { .. }));
    }

    #[test]
    fn event_name_time_and_absent_fields() {
        let rec = LogRecord {
            time_unix_nano: 5,
            observed_time_unix_nano: 9,
            event_name: "login".into(),
            attributes: vec![kv("event.name", s("other")), kv("error.type", s("timeout"))],
            ..LogRecord::default()
        };
        let f = fields(None, &rec);
        assert_eq!(
            (f.event_time_ns, f.action.as_deref(), f.outcome.as_deref()),
            (Some(5), Some("login"), Some("failure"))
        );
        assert_eq!((f.actor, f.producer, f.request_id), (None, None, None));
        let f = fields(None, &LogRecord { time_unix_nano: u64::MAX, ..LogRecord::default() });
        assert_eq!(f.event_time_ns, None);
    }

    #[test]
    fn bad_input_is_an_error() {
        let bytes = request().encode_to_vec();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(decode_request(&bytes[..cut], OtlpEncoding::Protobuf), Err(OtlpError::Protobuf(_))));
        }
        assert!(matches!(decode_request(b"{\"resourceLogs\":[", OtlpEncoding::Json), Err(OtlpError::Json(_))));
        assert!(matches!(decode_request(b"[]", OtlpEncoding::Json), Err(OtlpError::Json(_))));
        // A canonical entry holds exactly one record.
        let two = ResourceLogs { scope_logs: request().resource_logs[0].scope_logs.clone(), ..ResourceLogs::default() };
        assert!(matches!(decode_canonical(&two.encode_to_vec()), Err(OtlpError::NotCanonical(_))));
        assert!(matches!(decode_canonical(&[0xff, 0xff]), Err(OtlpError::Protobuf(_))));
    }

    /// Nesting limits: serde_json's 128 for OTLP/JSON, prost's 100 for protobuf.
    /// Deep input is an error, never a stack overflow.
    #[test]
    fn deep_nesting_is_refused() {
        let json_nested = |depth: usize| {
            let v = format!(
                "{}{{\"stringValue\":\"x\"}}{}",
                "{\"arrayValue\":{\"values\":[".repeat(depth),
                "]}}".repeat(depth)
            );
            format!("{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{v}}}]}}]}}]}}")
        };
        assert!(decode_request(json_nested(10).as_bytes(), OtlpEncoding::Json).is_ok());
        let e = decode_request(json_nested(100).as_bytes(), OtlpEncoding::Json).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        assert!(decode_request(json_nested(100_000).as_bytes(), OtlpEncoding::Json).is_err());

        let proto_nested = |depth: usize| {
            let mut v = AnyValue { value: Some(s("x")) };
            for _ in 0..depth {
                v = AnyValue {
                    value: Some(any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![v],
                    })),
                };
            }
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord { body: Some(v), ..LogRecord::default() }],
                        ..ScopeLogs::default()
                    }],
                    ..ResourceLogs::default()
                }],
            }
            .encode_to_vec()
        };
        assert!(decode_request(&proto_nested(10), OtlpEncoding::Protobuf).is_ok());
        let e = decode_request(&proto_nested(200), OtlpEncoding::Protobuf).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }
}
