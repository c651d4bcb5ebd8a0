//! `POST /v1/k8s/audit` with real Kubernetes audit events (falco's recorded fixtures),
//! posted as the API server's webhook backend posts them: an `EventList` whose items
//! are the events' exact bytes. Retries, restarts, bad events, overload.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{TestServer, request, request_json, shared_data};
use serde_json::Value;

/// Exact event bytes, one per fixture line.
type Lines = Vec<Vec<u8>>;

/// The falco fixtures: every line of every file, split by `kind` parsed independently
/// (audit events, and the malformed ones).
fn fixtures() -> Option<(Lines, Lines)> {
    let data = shared_data()?;
    let dir = data.join("k8s-audit/falcosecurity-falco/k8s_audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut events, mut bad) = (Vec::new(), Vec::new());
    for f in files {
        for line in std::fs::read(&f).unwrap().split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line).unwrap();
            if v["kind"] == "Event" { events.push(line.to_vec()) } else { bad.push(line.to_vec()) }
        }
    }
    assert!(events.len() > 40, "{} events", events.len());
    assert!(!bad.is_empty(), "falco's fal_01_003.json holds a malformed event");
    Some((events, bad))
}

/// An EventList as the API server serializes it, items verbatim.
fn event_list(items: &[&[u8]]) -> Vec<u8> {
    let mut out = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#.to_vec();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(it);
    }
    out.extend_from_slice(b"]}");
    out
}

fn entry_bytes(addr: std::net::SocketAddr, index: u64) -> Vec<u8> {
    let r = request(addr, "GET", &format!("/v1/entries/{index}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    match v.get("event_base64") {
        Some(b) => base64::engine::general_purpose::STANDARD.decode(b.as_str().unwrap()).unwrap(),
        None => serde_json::to_vec(&v["event"]).unwrap(),
    }
}

fn indexes(v: &Value) -> Vec<u64> {
    v["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect()
}

#[test]
fn webhook_batches_are_stored_exactly_deduplicated_and_survive_restarts() {
    let Some((events, bad)) = fixtures() else { return };
    let server = TestServer::fresh("k8s.example/log", |_| {});
    let addr = server.addr;
    // Batches of 20 real events with one malformed event in the middle of each.
    let mut sent: Vec<(Vec<u8>, Vec<u64>, Value)> = Vec::new();
    let mut stored: Vec<(u64, Vec<u8>)> = Vec::new();
    for chunk in events.chunks(20) {
        let mut items: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        items.insert(items.len() / 2, &bad[0]);
        let body = event_list(&items);
        let r = request_json(addr, "POST", "/v1/k8s/audit", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["accepted"], chunk.len(), "{v}");
        assert_eq!(v["rejected"], 1, "{v}");
        assert_eq!(v["duplicates"], 0, "{v}");
        let ix = indexes(&v);
        // Each event is its own entry (checked byte for byte after the server stops).
        for (i, ev) in ix.iter().zip(chunk) {
            let r = request(addr, "GET", &format!("/v1/entries/{i}"), &[], b"");
            assert_eq!(r.status, 200);
            let got = r.json();
            assert_eq!(got["stream"], "k8s-audit");
            assert_eq!(got["format"], "k8s-audit");
            stored.push((*i, ev.clone()));
        }
        // The rejection record keeps the malformed event's bytes.
        let rec_index = v["rejections"][0]["record_index"].as_u64().unwrap();
        assert_eq!(v["rejections"][0]["item"], chunk.len() / 2);
        let rec: Value = serde_json::from_slice(&entry_bytes(addr, rec_index)).unwrap();
        assert_eq!(rec["type"], "rejected");
        let kept = base64::engine::general_purpose::STANDARD.decode(rec["base64"].as_str().unwrap()).unwrap();
        assert_eq!(kept, bad[0]);
        sent.push((body, ix, v));
    }
    let tree_size = sent.last().unwrap().2["tree_size"].as_u64().unwrap();

    // A retried batch appends nothing and answers with the original indexes.
    let (body, ix, _) = &sent[0];
    let v = request_json(addr, "POST", "/v1/k8s/audit", body).json();
    assert_eq!(v["accepted"], 0, "{v}");
    assert_eq!(v["duplicates"], ix.len(), "{v}");
    assert_eq!(&indexes(&v), ix);
    assert_eq!(v["rejections"][0]["record_index"], sent[0].2["rejections"][0]["record_index"]);

    // After a restart the keys are still known (they were committed with the events).
    let dir = server.stop();
    let server = TestServer::start(dir, |_| {});
    let (body, ix, _) = &sent[1];
    let v = request_json(server.addr, "POST", "/v1/k8s/audit", body).json();
    assert_eq!(v["duplicates"], ix.len(), "{v}");
    assert_eq!(&indexes(&v), ix);
    // A batch mixing new and retried events appends only the new ones.
    let mut items: Vec<&[u8]> = events[..3].iter().map(Vec::as_slice).collect();
    let fresh = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"new-one","stage":"ResponseComplete","verb":"get","user":{"username":"zed"}}"#;
    items.push(fresh);
    let v = request_json(server.addr, "POST", "/v1/k8s/audit", &event_list(&items)).json();
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(v["duplicates"], 3, "{v}");
    let new_index = indexes(&v)[3];
    assert!(new_index >= tree_size, "{new_index} < {tree_size}");

    // Queryable by the normalized actor; counted independently from the fixtures.
    std::thread::sleep(Duration::from_millis(300));
    let want = events
        .iter()
        .filter(|e| serde_json::from_slice::<Value>(e).unwrap()["user"]["username"] == "minikube-user")
        .count();
    let r = request(server.addr, "GET", "/v1/query?actor=minikube-user&stream=k8s-audit&limit=10000", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.lines().len(), want);
    let dir = server.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    for (i, bytes) in &stored {
        assert_eq!(&reader.entry(*i).unwrap().payload, bytes, "entry {i}");
    }
    let report = stele_store::verify::verify(&reader, &Default::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.tree_size, reader.tree_size());
}

#[test]
fn large_request_response_events_are_accepted() {
    let server = TestServer::fresh("k8s.example/log", |_| {});
    // A RequestResponse-level event carrying a 3 MiB object.
    let blob = "x".repeat(3 << 20);
    let ev = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big","stage":"ResponseComplete","verb":"update","user":{{"username":"u"}},"requestObject":{{"data":"{blob}"}}}}"#
    );
    let r = request_json(server.addr, "POST", "/v1/k8s/audit", &event_list(&[ev.as_bytes()]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1);
}

#[test]
fn bad_bodies_and_overload_get_the_answers_the_api_server_expects() {
    let server = TestServer::fresh("k8s.example/log", |c| {
        c.max_batch_events = 1;
        c.queue_depth = 1;
    });
    let addr = server.addr;
    let ev =
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get"}"#;
    // Not an EventList: 400 (the batch is unusable as a whole).
    let r = request_json(addr, "POST", "/v1/k8s/audit", br#"{"kind":"PodList","items":[]}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("EventList"));
    let r = request_json(addr, "POST", "/v1/k8s/audit", b"{\"kind\":\"EventList\",\"items\":[");
    assert_eq!(r.status, 400);
    // Wrong content type: 415.
    let r = request(addr, "POST", "/v1/k8s/audit", &[("Content-Type", "text/csv")], &event_list(&[ev]));
    assert_eq!(r.status, 415);
    // More events than the queue holds: 429 with Retry-After, retried by the API server.
    let r = request_json(addr, "POST", "/v1/k8s/audit", &event_list(&[ev, ev]));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    // One event fits; the same event twice in one batch is stored once.
    let r = request_json(addr, "POST", "/v1/k8s/audit", &event_list(&[ev]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1);
    // Every item rejected is still a 200: the rejections are recorded.
    let r = request_json(addr, "POST", "/v1/k8s/audit", &event_list(&[b"[1,2]"]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rejected"], 1);
}
