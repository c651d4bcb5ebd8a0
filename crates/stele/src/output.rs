//! Rendering entries, times and proofs as JSON.

use serde_json::value::RawValue;
use stele_store::Entry;
use stele_tlog::hash::Hash;

/// RFC 3339 with nanoseconds, UTC.
pub(crate) fn rfc3339_ns(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => format!("{t:.9}"),
        Err(_) => ns.to_string(),
    }
}

/// Parses an RFC 3339 time into ns since the epoch.
pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        crate::Failure::usage(format!("{flag} {s:?}: not an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"))
    })?;
    Ok(t.as_nanosecond() as i64)
}

/// The payload as a JSON value embedded verbatim (it was validated as JSON when it
/// was appended); a payload that is not JSON is embedded as a string.
pub(crate) fn raw_event(payload: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(payload).ok().and_then(|s| RawValue::from_string(s.to_string()).ok()).unwrap_or_else(|| {
        RawValue::from_string(serde_json::to_string(&String::from_utf8_lossy(payload)).expect("string")).expect("json")
    })
}

/// Adds the entry's payload to `m`: `"event"` as for [`raw_event`], or, for formats
/// stored as binary (OpenTelemetry records are protobuf), `"event_base64"`.
pub(crate) fn insert_event(m: &mut serde_json::Map<String, serde_json::Value>, e: &Entry) {
    use base64::Engine as _;
    if e.leaf.payload_format == stele_formats::EventFormat::OtlpLog.code() {
        m.insert("event_base64".into(), base64::engine::general_purpose::STANDARD.encode(&e.payload).into());
    } else {
        m.insert("event".into(), serde_json::to_value(raw_event(&e.payload)).unwrap_or_default());
    }
}

/// Name of a payload format code.
pub(crate) fn format_name(code: u8) -> &'static str {
    match code {
        3 => "stele-record",
        c => stele_formats::EventFormat::from_code(c).map(|f| f.name()).unwrap_or("unknown"),
    }
}

/// Base64 of a list of hashes.
pub(crate) fn hashes_b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

/// The common JSON object of an entry.
pub(crate) fn entry_json(e: &Entry) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("index".into(), e.index.into());
    m.insert("received".into(), rfc3339_ns(e.leaf.received_ns as i64).into());
    m.insert("received_ns".into(), e.leaf.received_ns.into());
    m.insert("stream".into(), e.stream.clone().into());
    m.insert("format".into(), format_name(e.leaf.payload_format).into());
    m
}
