//! Sealing at ingest on the server: real Kubernetes audit events posted to the
//! webhook and JSON events posted to `POST /v1/events` are stored sealed (the subject
//! nowhere in the stored bytes), restored byte-exact with the subject's key, still
//! recognised as retries, and the log verifies without any key; whole events sealed
//! (root pointer, `subject_default`) leave nothing of themselves in the data
//! directory or the server's query index.

mod common;

use common::{TestServer, request_json, shared_data};
use serde_json::Value;
use stele_erasure::{ErasureConfig, Keys, MasterKey, SealState, SealingRule, restore};
use stele_store::LogReader;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn webhook_and_events_are_sealed_and_restored_exactly() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "seal.example/log").unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let master = key_dir.path().join("master.key");
    MasterKey::create(&master).unwrap();
    let rule = |stream: &str, subject: &str, fields: &[&str]| SealingRule {
        stream: stream.into(),
        format: None,
        subject: subject.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        erasure_wins: false,
        subject_default: None,
    };
    let erasure = ErasureConfig {
        master_key: master.clone(),
        rule: vec![rule("k8s*", "/user/username", &["/sourceIPs"]), rule("app", "/actor", &["/src"])],
    };
    let server = TestServer::start(dir, |c| c.erasure = Some(erasure.clone()));

    // Real webhook batches (falco's recorded events).
    let fixtures = data.join("k8s-audit/falcosecurity-falco/k8s_audit");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut events: Vec<Vec<u8>> = Vec::new();
    for f in files {
        for line in std::fs::read(&f).unwrap().split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<Value>(line)
                && v["kind"] == "Event"
            {
                events.push(line.to_vec());
            }
        }
    }
    events.truncate(60);
    let mut body = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#.to_vec();
    body.extend_from_slice(&events.join(&b","[..]));
    body.extend_from_slice(b"]}");
    let v = request_json(server.addr, "POST", "/v1/k8s/audit", &body).json();
    assert_eq!(v["accepted"], events.len(), "{v}");
    let k8s_indexes: Vec<u64> = v["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    // A retry is recognised although the stored bytes are sealed.
    let again = request_json(server.addr, "POST", "/v1/k8s/audit", &body).json();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(events.len() as u64)),
        "{again}"
    );

    let app = [
        br#"{"actor":"mallory@example.org","action":"login","src":"192.0.2.44"}"#.to_vec(),
        br#"{"action":"anonymous ping"}"#.to_vec(),
    ];
    let v = request_json(server.addr, "POST", "/v1/events?stream=app", &app.join(&b"\n"[..])).json();
    let app_indexes: Vec<u64> = v["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(app_indexes.len(), 2, "{v}");
    let dir = server.stop();

    let reader = LogReader::open(dir.path()).unwrap();
    let keys = Keys::open(dir.path(), &master, false).unwrap();
    let mut sealed = 0;
    for (i, original) in k8s_indexes.iter().zip(&events).chain(app_indexes.iter().zip(&app)) {
        let e = reader.entry(*i).unwrap();
        let view = restore(Some(&keys), e.leaf.payload_format, &e.payload).unwrap();
        assert_eq!(&view.bytes, original, "entry {i} is not restored byte for byte");
        let ev: Value = serde_json::from_slice(original).unwrap();
        let subject = ev.pointer("/user/username").or_else(|| ev.pointer("/actor")).and_then(Value::as_str);
        match subject {
            Some(s) => {
                sealed += 1;
                assert_eq!(view.state, SealState::Restored, "entry {i}");
                assert!(e.leaf.payload_format & 0x80 != 0, "entry {i}: the leaf says sealed");
                let elsewhere = {
                    let mut rest = ev.clone();
                    for p in ["/user/username", "/actor", "/sourceIPs", "/src"] {
                        if let Some(x) = rest.pointer_mut(p) {
                            *x = Value::Null;
                        }
                    }
                    rest.to_string().contains(s)
                };
                if !elsewhere {
                    assert!(!contains(&e.payload, s.as_bytes()), "entry {i}: {s} is stored in clear");
                }
            }
            None => assert_eq!(view.state, SealState::Clear, "entry {i}: no subject, stored as is"),
        }
    }
    assert!(sealed > 40, "{sealed} sealed");
    let report = stele_store::verify::verify(&reader, &stele_store::verify::VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// Every file under `dir`, with its bytes.
fn all_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[test]
fn whole_events_are_sealed_on_the_server_and_the_index_holds_nothing_of_them() {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "seal.example/log").unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let master = key_dir.path().join("master.key");
    MasterKey::create(&master).unwrap();
    let rule = SealingRule {
        stream: "hr".into(),
        subject: "/actor".into(),
        fields: vec![String::new()],
        subject_default: Some("stele:unattributed".into()),
        ..SealingRule::default()
    };
    let erasure = ErasureConfig { master_key: master.clone(), rule: vec![rule] };
    let server = TestServer::start(dir, |c| {
        c.erasure = Some(erasure.clone());
        c.log_options.compression = stele_store::chunk::Compression::None;
    });
    let events = [
        br#"{"actor":"mallory@example.org","action":"salary.read","resource":"employee-7731","outcome":"success"}"#
            .to_vec(),
        br#"{"action":"payroll.export","resource":"payroll-2026-11","outcome":"failure"}"#.to_vec(),
    ];
    let v = request_json(server.addr, "POST", "/v1/events?stream=hr", &events.join(&b"\n"[..])).json();
    let indexes: Vec<u64> = v["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes.len(), 2, "{v}");
    // The server's index has no field of them: the stream lists them with no fields,
    // and a query by any of their values finds nothing.
    let r = common::request(server.addr, "GET", "/v1/query?stream=hr", &[], b"");
    let hits = r.lines();
    assert_eq!(hits.len(), 2, "{}", r.text());
    for h in &hits {
        assert!(h["fields"].as_object().unwrap().values().all(Value::is_null), "{h}");
    }
    for q in ["actor=mallory@example.org", "action=payroll.export", "resource=employee-7731", "outcome=failure"] {
        let r = common::request(server.addr, "GET", &format!("/v1/query?{q}"), &[], b"");
        assert_eq!((r.status, r.text()), (200, String::new()), "{q}");
    }
    let dir = server.stop();

    let clear: [&[u8]; 5] =
        [b"mallory@example.org", b"salary.read", b"employee-7731", b"payroll.export", b"payroll-2026"];
    for (path, bytes) in all_files(dir.path()) {
        for c in clear {
            assert!(!contains(&bytes, c), "{} holds {:?}", path.display(), String::from_utf8_lossy(c));
        }
    }
    let reader = LogReader::open(dir.path()).unwrap();
    let keys = Keys::open(dir.path(), &master, false).unwrap();
    for (i, (index, original)) in indexes.iter().zip(&events).enumerate() {
        let e = reader.entry(*index).unwrap();
        let view = restore(Some(&keys), e.leaf.payload_format, &e.payload).unwrap();
        assert_eq!((&view.bytes, view.state), (original, SealState::Restored), "entry {index}");
        let subject = if i == 0 { "mallory@example.org" } else { "stele:unattributed" };
        assert_eq!(view.key_id, keys.subject_key_id(subject), "entry {index}");
    }
    let report = stele_store::verify::verify(&reader, &stele_store::verify::VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    drop(reader);

    // Control: the same events in a stream no rule covers are found by the search.
    let server = TestServer::start(dir, |c| c.log_options.compression = stele_store::chunk::Compression::None);
    let r = request_json(server.addr, "POST", "/v1/events?stream=plain", &events.join(&b"\n"[..]));
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = server.stop();
    assert!(all_files(dir.path()).iter().any(|(_, b)| contains(b, clear[0])), "the search finds clear text");
}
