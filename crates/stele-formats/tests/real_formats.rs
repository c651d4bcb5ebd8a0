//! Every real file of `../shared/data` against the per-file table of
//! `docs/ingest-formats.md`: what `stele import --format auto` extracts from
//! it (entries per format) and how many pieces it rejects. The counts are
//! also derived independently (serde_json over lines and documents, audit
//! stamps counted by hand), and the normalized fields that the format table
//! says a format fills are compared with values read by `serde_json`
//! pointers.
//!
//! Files under `vectors/` and `captured/` are not audit logs; files under
//! `syslog/` and `otlp-logs/` reach stele over syslog and OTLP and are
//! checked by those parsers' tests.
//!
//! Skips with a message when `../shared` is absent, unless
//! `STELE_REQUIRE_PEERS=1`. With `STELE_PRINT_TABLE=1` it prints the table
//! rows it computes, for review.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use stele_formats::decompress::maybe_decompress;
use stele_formats::{EventFormat, EventReader, FieldPointers, InputFormat, Normalized, Normalizer};

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

/// Directories whose files are not checked here (see the module docs).
const SKIPPED_DIRS: &[&str] = &["vectors", "captured", "syslog", "otlp-logs"];

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let r = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if p.is_dir() {
            if !(rel.is_empty() && SKIPPED_DIRS.contains(&name.as_str())) {
                walk(&p, &r, out);
            }
        } else if r != "SOURCES.md" {
            out.push(r);
        }
    }
}

struct Outcome {
    events: Vec<(Vec<u8>, EventFormat, Normalized)>,
    rejected: usize,
}

/// Reads `bytes` as `stele import --format auto` does (decompression, then
/// the reader with the default normalizer), going on after every error.
fn import(bytes: Vec<u8>) -> Outcome {
    let (input, _) = maybe_decompress(Cursor::new(bytes)).unwrap();
    let mut r =
        EventReader::new(input, InputFormat::Auto, 1 << 20).with_normalizer(Normalizer::new(&FieldPointers::default()));
    let mut out = Outcome { events: Vec::new(), rejected: 0 };
    loop {
        match r.next_event() {
            Ok(Some(e)) => {
                let (b, f) = (e.bytes.to_vec(), e.format);
                out.events.push((b, f, r.last_normalized().cloned().unwrap()));
            }
            Ok(None) => return out,
            Err(e) => {
                out.rejected += 1;
                if e.is_fatal() {
                    return out;
                }
            }
        }
    }
}

/// "format:count ..." in format-name order, or "-" for none.
fn summary(events: &[(Vec<u8>, EventFormat, Normalized)]) -> String {
    let mut m = BTreeMap::new();
    for (_, f, _) in events {
        *m.entry(f.name()).or_insert(0usize) += 1;
    }
    if m.is_empty() {
        return "-".to_string();
    }
    m.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
}

/// The per-file table of the docs: path → (extracted, rejected).
fn doc_table() -> BTreeMap<String, (String, usize)> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ingest-formats.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let start = text.find("<!-- files -->").expect("the per-file table marker");
    let mut out = BTreeMap::new();
    for line in text[start..].lines().skip(1) {
        if line.starts_with("<!-- end files -->") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let path = cells[1].trim_matches('`').to_string();
        let rejected = cells[3].parse().unwrap_or_else(|_| panic!("bad rejected count in {line}"));
        out.insert(path, (cells[2].to_string(), rejected));
    }
    out
}

fn s(v: &Value, p: &str) -> Option<String> {
    v.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn first(v: &Value, ps: &[&str]) -> Option<String> {
    ps.iter().find_map(|p| s(v, p))
}

fn is_ip(x: Option<String>) -> Option<String> {
    x.filter(|a| a.parse::<std::net::IpAddr>().is_ok())
}

/// Checks the fields the format table says each format fills, against
/// serde_json reads of the same event. Returns how many fields were compared.
fn check_fields(path: &str, bytes: &[u8], format: EventFormat, n: &Normalized) -> usize {
    let ctx = || format!("{path}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]));
    let mut checked = 0;
    let mut eq = |got: &Option<String>, want: Option<String>| {
        assert_eq!(*got, want, "{}", ctx());
        checked += 1;
    };
    match format {
        EventFormat::CloudTrail => {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            eq(&n.action, s(&v, "/eventName"));
            eq(
                &n.actor,
                first(
                    &v,
                    &[
                        "/userIdentity/arn",
                        "/userIdentity/userName",
                        "/userIdentity/principalId",
                        "/userIdentity/invokedBy",
                    ],
                ),
            );
            eq(&n.request_id, first(&v, &["/requestID", "/eventID"]));
            eq(&n.source_ip, is_ip(s(&v, "/sourceIPAddress")));
            eq(&n.producer, s(&v, "/eventSource").map(|e| format!("cloudtrail:{e}")));
            let failed =
                s(&v, "/errorCode").is_some() || s(&v, "/responseElements/ConsoleLogin").as_deref() == Some("Failure");
            eq(&n.outcome, Some(if failed { "failure" } else { "success" }.into()));
        }
        EventFormat::GcpAudit => {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            eq(&n.action, s(&v, "/protoPayload/methodName"));
            eq(&n.resource, s(&v, "/protoPayload/resourceName"));
            eq(
                &n.actor,
                first(
                    &v,
                    &[
                        "/protoPayload/authenticationInfo/principalEmail",
                        "/protoPayload/authenticationInfo/principalSubject",
                    ],
                ),
            );
            eq(&n.producer, s(&v, "/protoPayload/serviceName"));
            eq(&n.request_id, first(&v, &["/insertId", "/operation/id"]));
        }
        EventFormat::Ocsf => {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            eq(&n.producer, s(&v, "/metadata/product/name"));
            eq(&n.action, first(&v, &["/api/operation", "/activity_name", "/type_name"]));
            eq(&n.source_ip, is_ip(s(&v, "/src_endpoint/ip")));
            // OCSF `time` is milliseconds since the epoch (samples that write
            // other units are read by magnitude and not compared here).
            if let Some(t) =
                v.get("time").and_then(Value::as_i64).filter(|t| (100_000_000_000..100_000_000_000_000).contains(t))
            {
                assert_eq!(n.event_time_ns, Some(t * 1_000_000), "{}", ctx());
            }
        }
        EventFormat::KubernetesAudit => {
            let outer: Value = serde_json::from_slice(bytes).unwrap();
            // AKS wraps the event as a JSON string in properties.log.
            let v = match s(&outer, "/properties/log") {
                Some(inner) => serde_json::from_str(&inner).unwrap(),
                None => outer,
            };
            eq(&n.action, s(&v, "/verb"));
            eq(&n.actor, s(&v, "/user/username"));
            eq(&n.request_id, s(&v, "/auditID"));
            eq(&n.source_ip, s(&v, "/sourceIPs/0"));
            eq(&n.producer, Some("kube-apiserver".into()));
        }
        EventFormat::Auditd => {
            let text = String::from_utf8_lossy(bytes);
            let stamp = text.split("msg=audit(").nth(1).and_then(|r| r.split(')').next()).unwrap().to_string();
            let (secs, rest) = stamp.split_once('.').unwrap();
            let millis: i64 = rest.split(':').next().unwrap().parse().unwrap();
            assert_eq!(n.event_time_ns, Some(secs.parse::<i64>().unwrap() * 1_000_000_000 + millis * 1_000_000));
            eq(&n.request_id, Some(stamp));
            eq(&n.producer, Some("auditd".into()));
            assert!(n.action.is_some(), "{}", ctx());
        }
        EventFormat::Json => {
            // The default pointers' first choice for each source, where present.
            let v: Value = serde_json::from_slice(bytes).unwrap();
            let (ip, id) = match path.split('/').next() {
                Some("okta") => ("/client/ipAddress", "/uuid"),
                Some("google-workspace") => ("/ipAddress", "/id/uniqueQualifier"),
                Some("github-audit") => ("/actor_ip", "/_document_id"),
                _ => ("", ""),
            };
            if let Some(want) = s(&v, ip).filter(|_| !ip.is_empty()) {
                eq(&n.source_ip, Some(want));
            }
            if let Some(want) = s(&v, id).filter(|_| !id.is_empty()) {
                eq(&n.request_id, Some(want));
            }
        }
        _ => {}
    }
    checked
}

/// The counts of a file derived without the reader: JSON lines, JSON
/// documents, or audit stamps. `None` when the file fits none of these.
fn independent_count(path: &str, bytes: &[u8]) -> Option<(usize, usize)> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Some(match v {
            Value::Object(m) => match m.get("Records") {
                Some(Value::Array(a)) => (a.len(), 0),
                _ => (1, 0),
            },
            Value::Array(a) => {
                let objects = a.iter().filter(|x| x.is_object()).count();
                (objects, a.len() - objects)
            }
            _ => (0, 1),
        });
    }
    let text_lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if path.ends_with(".log") {
        let mut stamps = BTreeSet::new();
        let mut bad = 0;
        for l in &text_lines {
            let t = String::from_utf8_lossy(l);
            match t.strip_prefix("type=").and_then(|r| r.split("msg=audit(").nth(1)).and_then(|r| r.split_once(')')) {
                Some((stamp, _)) => {
                    stamps.insert(stamp.to_string());
                }
                None => bad += 1,
            }
        }
        return Some((stamps.len(), bad));
    }
    // JSON lines: every line on its own.
    let first_non_ws = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first_non_ws.is_some_and(|b| *b != b'{' && *b != b'[') || path.ends_with(".jsonl") {
        let ok = text_lines.iter().filter(|l| matches!(serde_json::from_slice(l), Ok(Value::Object(_)))).count();
        return Some((ok, text_lines.len() - ok));
    }
    None
}

#[test]
fn every_file_holds_to_the_table() {
    let Some(dir) = data_dir() else { return };
    let mut files = Vec::new();
    walk(&dir, "", &mut files);
    let table = doc_table();
    let print = std::env::var("STELE_PRINT_TABLE").as_deref() == Ok("1");
    let mut seen = BTreeSet::new();
    let mut per_format_checks: BTreeMap<&str, usize> = BTreeMap::new();
    for rel in &files {
        let bytes = std::fs::read(dir.join(rel)).unwrap();
        let out = import(bytes.clone());
        let got = (summary(&out.events), out.rejected);
        if print {
            println!("| `{rel}` | {} | {} |  |", got.0, got.1);
            continue;
        }
        let want = table.get(rel).unwrap_or_else(|| panic!("{rel} is missing from docs/ingest-formats.md"));
        assert_eq!(&got, want, "{rel}: (extracted, rejected) differ from the docs table");
        seen.insert(rel.clone());
        if let Some((events, rejected)) = independent_count(rel, &bytes) {
            assert_eq!((out.events.len(), out.rejected), (events, rejected), "{rel}: independent count");
        }
        for (b, f, n) in &out.events {
            *per_format_checks.entry(f.name()).or_default() += check_fields(rel, b, *f, n);
            // A stored entry re-normalizes to the same fields.
            let (f2, n2) = Normalizer::new(&FieldPointers::default()).parse(b, Some(*f)).unwrap();
            assert_eq!((f2, &n2), (*f, n), "{rel}: re-normalization");
        }
    }
    if print {
        return;
    }
    let stale: Vec<_> = table.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(stale.is_empty(), "rows for files that do not exist: {stale:?}");
    for f in ["cloudtrail", "gcp-audit", "ocsf", "k8s-audit", "auditd", "json"] {
        assert!(per_format_checks.get(f).copied().unwrap_or(0) > 20, "few {f} fields checked: {per_format_checks:?}");
    }
}

/// The audit-log fixtures written as YAML (go-libaudit's aucoalesce tests):
/// each test's block of record lines, read as an audit log, is one entry.
#[test]
fn auditd_yaml_blocks_are_one_event_each() {
    let Some(dir) = data_dir() else { return };
    let yaml_dir = dir.join("auditd/go-libaudit/aucoalesce");
    let mut total = 0;
    for e in std::fs::read_dir(&yaml_dir).unwrap() {
        let text = std::fs::read(e.unwrap().path()).unwrap();
        // Blocks: indented record lines; a new test starts at a "  name:" line.
        let mut blocks: Vec<Vec<Vec<u8>>> = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let trimmed: &[u8] = line.trim_ascii_start();
            if trimmed.starts_with(b"type=") {
                blocks
                    .last_mut()
                    .get_or_insert_with(|| unreachable!("record before a test name"))
                    .push(trimmed.to_vec());
            } else if line.starts_with(b"  ") && !line.starts_with(b"    ") && line.trim_ascii().ends_with(b":")
                || line.starts_with(b"  ") && !line.starts_with(b"    ") && line.windows(2).any(|w| w == b": ")
            {
                blocks.push(Vec::new());
            }
        }
        let blocks: Vec<_> = blocks.into_iter().filter(|b| !b.is_empty()).collect();
        let log: Vec<u8> = blocks.iter().flatten().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
        let out = import(log);
        assert_eq!(out.rejected, 0);
        assert_eq!(out.events.len(), blocks.len());
        for ((b, f, n), block) in out.events.iter().zip(&blocks) {
            assert_eq!(*f, EventFormat::Auditd);
            assert_eq!(b, &block.join(&b'\n'));
            check_fields("aucoalesce", b, *f, n);
        }
        total += blocks.len();
    }
    assert!(total > 30, "{total}");
}

/// A CloudTrail log file as AWS delivers it ({"Records":[...]}, gzip), and
/// the same compressed with zstd: the records come out one by one, byte for
/// byte, even when the whole file is far over the event size limit.
#[test]
fn cloudtrail_log_file_gzip_and_zstd() {
    let Some(dir) = data_dir() else { return };
    let bytes = std::fs::read(dir.join("cloudtrail/panther-analysis_AWS.CloudTrail.jsonl")).unwrap();
    let records: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut file = b"{\"Records\":[".to_vec();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            file.push(b',');
        }
        file.extend_from_slice(r);
    }
    file.extend_from_slice(b"]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&file).unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::stream::encode_all(&file[..], 3).unwrap();
    for input in [gz, zs] {
        let (mut r, _) = maybe_decompress(Cursor::new(input)).unwrap();
        let mut whole = Vec::new();
        r.read_to_end(&mut whole).unwrap();
        assert_eq!(whole, file);
        let (input, _) = maybe_decompress(Cursor::new(whole)).unwrap();
        let mut reader = EventReader::new(input, InputFormat::CloudTrail, 64 * 1024);
        let mut got = Vec::new();
        while let Some(e) = reader.next_event().unwrap() {
            assert_eq!(e.format, EventFormat::CloudTrail);
            got.push(e.bytes.to_vec());
        }
        assert_eq!(got, records);
        assert!(file.len() > 64 * 1024);
    }
}
