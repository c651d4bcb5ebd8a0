//! The splitters and normalizers over the real audit logs in `../shared/data`,
//! checked against a second, independent implementation on
//! `serde_json::Value`.
//!
//! Skips with a message when `../shared` is absent, unless
//! `STELE_REQUIRE_PEERS=1`, which turns the skip into a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stele_formats::{
    EventFormat, EventReader, FieldPointers, FormatError, InputFormat, InvalidReason, Normalized, parse_event,
    split_body,
};

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

/// Everything a reader yields: events (bytes, format, line) and errors.
#[derive(Default)]
struct ReadAll {
    events: Vec<(Vec<u8>, EventFormat, u64)>,
    errors: Vec<FormatError>,
}

fn read_all(bytes: &[u8], format: InputFormat) -> ReadAll {
    let mut r = EventReader::new(bytes, format, 1 << 20);
    let mut out = ReadAll::default();
    loop {
        match r.next_event() {
            Ok(Some(e)) => out.events.push((e.bytes.to_vec(), e.format, e.location.line)),
            Ok(None) => return out,
            Err(e) => {
                assert!(!e.is_fatal(), "fatal error: {e}");
                out.errors.push(e);
            }
        }
    }
}

/// The non-blank lines of a JSON-lines file, with 1-based line numbers.
fn lines(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// Second implementation of "is a Kubernetes audit Event".
fn is_k8s_event(v: &Value) -> bool {
    let api = v.get("apiVersion");
    v.get("kind") == Some(&Value::from("Event"))
        && match api {
            Some(Value::String(a)) => a == "audit.k8s.io/v1" || a == "audit.k8s.io/v1beta1",
            None | Some(Value::Null) => v.get("verb").is_some_and(Value::is_string),
            Some(_) => false,
        }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

type Counts = BTreeMap<Option<String>, usize>;

fn count<'a>(it: impl Iterator<Item = Option<&'a str>>) -> Counts {
    let mut m = Counts::new();
    for k in it {
        *m.entry(k.map(str::to_owned)).or_default() += 1;
    }
    m
}

fn normalize_all(events: &[(Vec<u8>, EventFormat, u64)]) -> Vec<Normalized> {
    let p = FieldPointers::default();
    events
        .iter()
        .map(|(b, f, _)| {
            let (format, n) = parse_event(b, Some(*f), &p).unwrap();
            assert_eq!(format, *f);
            // Classifying again without the hint gives the same format.
            assert_eq!(parse_event(b, None, &p).unwrap().0, *f);
            n
        })
        .collect()
}

#[test]
fn panther_k8s_native_jsonl() {
    let Some(dir) = data_dir() else { return };
    let bytes = std::fs::read(dir.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl")).unwrap();
    let expected: Vec<(u64, Value)> =
        lines(&bytes).into_iter().map(|(n, l)| (n, serde_json::from_slice(l).unwrap())).collect();
    assert_eq!(expected.len(), 202);

    // Auto: every line is an event, classified per line.
    let auto = read_all(&bytes, InputFormat::Auto);
    assert!(auto.errors.is_empty(), "{:?}", auto.errors.first().map(ToString::to_string));
    assert_eq!(auto.events.len(), expected.len());
    for ((b, f, line), (want_line, v)) in auto.events.iter().zip(&expected) {
        assert_eq!(line, want_line);
        assert_eq!(serde_json::from_slice::<Value>(b).unwrap(), *v);
        assert_eq!(*f == EventFormat::KubernetesAudit, is_k8s_event(v), "line {line}");
    }
    assert_eq!(read_all(&bytes, InputFormat::Jsonl).events, auto.events);

    // K8sAudit: the same events, and the lines that are not audit Events
    // (Panther enrichment fixtures) are reported by line and skipped.
    let k8s = read_all(&bytes, InputFormat::K8sAudit);
    let want_k8s: Vec<&(u64, Value)> = expected.iter().filter(|(_, v)| is_k8s_event(v)).collect();
    assert_eq!(want_k8s.len(), 188);
    assert_eq!(k8s.events.len(), want_k8s.len());
    assert!(k8s.events.iter().all(|(_, f, _)| *f == EventFormat::KubernetesAudit));
    let bad_lines: Vec<u64> = k8s
        .errors
        .iter()
        .map(|e| match e {
            FormatError::InvalidEvent { location: Some(l), reason: InvalidReason::NotK8sEvent { .. } } => l.line,
            other => panic!("unexpected error {other}"),
        })
        .collect();
    let want_bad: Vec<u64> = expected.iter().filter(|(_, v)| !is_k8s_event(v)).map(|(n, _)| *n).collect();
    assert_eq!(bad_lines, want_bad);

    // Actor and action counts against the Value-based implementation.
    let fields = normalize_all(&k8s.events);
    let got_actor = count(fields.iter().map(|n| n.actor.as_deref()));
    let got_action = count(fields.iter().map(|n| n.action.as_deref()));
    let want_actor = count(want_k8s.iter().map(|(_, v)| str_at(v, "/user/username")));
    let want_action = count(want_k8s.iter().map(|(_, v)| str_at(v, "/verb")));
    assert_eq!(got_actor, want_actor);
    assert_eq!(got_action, want_action);
    assert!(want_actor.len() > 10 && want_action.len() > 5, "the data has variety");

    // Times: present exactly when either timestamp is; outcome follows the code.
    for (n, (_, v)) in fields.iter().zip(&want_k8s) {
        let has_time = v.get("stageTimestamp").is_some() || v.get("requestReceivedTimestamp").is_some();
        assert_eq!(n.event_time_ns.is_some(), has_time, "{v}");
        let want_outcome = v
            .pointer("/responseStatus/code")
            .and_then(Value::as_i64)
            .map(|c| if c < 400 { "success" } else { "failure" });
        assert_eq!(n.outcome.as_deref(), want_outcome);
    }
    // "2022-11-29 00:09:04.38" (space, no zone) is UTC.
    assert_eq!(fields[0].event_time_ns, Some(1_669_680_544_380_000_000));
    assert_eq!(fields[0].resource.as_deref(), Some("namespaces/default/pods/test-pod"));
}

#[test]
fn falco_k8s_files() {
    let Some(dir) = data_dir() else { return };
    let base = dir.join("k8s-audit/falcosecurity-falco");
    let mut seen = 0;
    let mut all_events = Vec::new();
    let mut all_values = Vec::new();
    for sub in ["k8s_audit", "psp"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(base.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            seen += 1;
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let values: Vec<Value> =
                lines(&bytes).into_iter().map(|(_, l)| serde_json::from_slice(l).unwrap()).collect();
            let auto = read_all(&bytes, InputFormat::Auto);
            let k8s = read_all(&bytes, InputFormat::K8sAudit);
            assert!(auto.errors.is_empty(), "{name}: {}", auto.errors[0]);
            assert_eq!(auto.events.len(), values.len(), "{name}");
            if name == "fal_01_003.json" {
                // {"kind": 0}: a JSON object, but not a Kubernetes audit Event.
                assert_eq!(auto.events[0].0, b"{\"kind\": 0}");
                assert_eq!(auto.events[0].1, EventFormat::Json);
                assert!(k8s.events.is_empty());
                assert_eq!(k8s.errors.len(), 1);
                assert!(
                    k8s.errors[0].to_string().contains("not a Kubernetes audit Event (kind is 0"),
                    "{}",
                    k8s.errors[0]
                );
                continue;
            }
            assert!(k8s.errors.is_empty(), "{name}: {}", k8s.errors[0]);
            assert_eq!(k8s.events, auto.events, "{name}");
            assert!(auto.events.iter().all(|(_, f, _)| *f == EventFormat::KubernetesAudit), "{name}");
            for ((b, ..), v) in auto.events.iter().zip(&values) {
                assert_eq!(serde_json::from_slice::<Value>(b).unwrap(), *v);
                assert!(is_k8s_event(v));
            }
            all_events.extend(auto.events);
            all_values.extend(values);
        }
    }
    assert_eq!(seen, 79);
    let fields = normalize_all(&all_events);
    assert_eq!(
        count(fields.iter().map(|n| n.actor.as_deref())),
        count(all_values.iter().map(|v| str_at(v, "/user/username")))
    );
    assert_eq!(count(fields.iter().map(|n| n.action.as_deref())), count(all_values.iter().map(|v| str_at(v, "/verb"))));
    // Same events through an EventList streamed item by item, and through a
    // JSON array, and an HTTP body.
    let items: Vec<&[u8]> = all_events.iter().map(|(b, ..)| b.as_slice()).collect();
    let list = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{{}},\"items\":[\n{}\n]}}\n",
        items.iter().map(|b| std::str::from_utf8(b).unwrap()).collect::<Vec<_>>().join(",\n")
    );
    let mut r = EventReader::new(list.as_bytes(), InputFormat::K8sAudit, 64 * 1024);
    let mut streamed = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        assert_eq!(e.format, EventFormat::KubernetesAudit);
        streamed.push(e.bytes.to_vec());
    }
    assert_eq!(streamed, items);
    assert!(list.len() > 64 * 1024, "the list is larger than the event limit");
    let array = format!("[{}]", &list[list.find("[\n").unwrap() + 1..list.rfind(']').unwrap()]);
    let arr = read_all(array.as_bytes(), InputFormat::Auto);
    assert_eq!(arr.events.iter().map(|(b, ..)| b.as_slice()).collect::<Vec<_>>(), items);
    let body = split_body(list.as_bytes(), 64 * 1024).unwrap();
    assert_eq!(body.iter().map(|(b, _)| *b).collect::<Vec<_>>(), items);
}

/// JSON-lines samples: (path, pointer of the actor and of the action that
/// the default pointers try first for that source).
const JSONL: &[(&str, &str, &str)] = &[
    ("cloudtrail/panther-analysis_AWS.CloudTrail.jsonl", "/userIdentity/arn", "/eventName"),
    (
        "gcp-audit/panther-analysis_GCP.AuditLog.jsonl",
        "/protoPayload/authenticationInfo/principalEmail",
        "/protoPayload/methodName",
    ),
    ("okta/panther-analysis_Okta.SystemLog.jsonl", "/actor/alternateId", "/eventType"),
    ("github-audit/panther-analysis_GitHub.Audit.jsonl", "/actor", "/action"),
    ("gitlab-audit/panther-analysis_GitLab.Audit.jsonl", "/author_name", "/action"),
    ("google-workspace/panther-analysis_GSuite.ActivityEvent.jsonl", "/actor/email", "/name"),
];

#[test]
fn json_lines_samples() {
    let Some(dir) = data_dir() else { return };
    for (file, actor_ptr, action_ptr) in JSONL {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let values: Vec<Value> = lines(&bytes).into_iter().map(|(_, l)| serde_json::from_slice(l).unwrap()).collect();
        assert!(!values.is_empty(), "{file}");
        let out = read_all(&bytes, InputFormat::Jsonl);
        assert!(out.errors.is_empty(), "{file}: {}", out.errors[0]);
        assert_eq!(out.events.len(), values.len(), "{file}");
        assert_eq!(read_all(&bytes, InputFormat::Auto).events, out.events, "{file}");
        let body = split_body(&bytes, 1 << 20).unwrap();
        assert_eq!(body.len(), values.len(), "{file}");
        let fields = normalize_all(&out.events);
        // Where the source's own field is a string, the default pointers pick it.
        let mut hits = 0;
        for (n, v) in fields.iter().zip(&values) {
            // CloudTrail and GCP records have their own mappings, which pass
            // over empty strings (CloudTrail's root sign-ins have "arn": "").
            if let Some(a) = str_at(v, actor_ptr).filter(|a| !a.is_empty()) {
                assert_eq!(n.actor.as_deref(), Some(a), "{file}: {v}");
                hits += 1;
            }
            if let Some(a) = str_at(v, action_ptr) {
                assert_eq!(n.action.as_deref(), Some(a), "{file}: {v}");
                hits += 1;
            }
        }
        if !file.starts_with("gitlab") {
            assert!(hits > values.len(), "{file}: only {hits} fields found");
        }
        if file.starts_with("cloudtrail") {
            // errorCode present (and not "") → failure, and console sign-ins
            // whose responseElements.ConsoleLogin is "Failure".
            let failures = values
                .iter()
                .filter(|v| {
                    v.get("errorCode").is_some_and(|c| c.as_str().is_some_and(|c| !c.is_empty()))
                        || v.pointer("/responseElements/ConsoleLogin").is_some_and(|r| r == "Failure")
                })
                .count();
            assert!(failures > 0);
            assert_eq!(fields.iter().filter(|n| n.outcome.as_deref() == Some("failure")).count(), failures);
            // All real times parse; placeholders ("redacted", "...") do not.
            let with_time = values
                .iter()
                .filter(|v| str_at(v, "/eventTime").is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit())))
                .count();
            assert_eq!(fields.iter().filter(|n| n.event_time_ns.is_some()).count(), with_time);
        }
    }
}
