//! End-to-end tests: a server on 127.0.0.1:0 over a fresh data directory, driven by a
//! minimal blocking HTTP/1.1 client.

use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use stele_server::ServerConfig;
use stele_store::{LogOptions, LogReader};
use stele_tlog::Hash;

mod common;

use common::{Resp, TestServer, open, request};

const ORIGIN: &str = "test.example/log";

struct Harness(TestServer);

impl std::ops::Deref for Harness {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with(|_| {})
    }

    fn start_with(edit: impl FnOnce(&mut ServerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        stele_store::log::init(dir.path(), ORIGIN).unwrap();
        Harness::start_in(dir, edit)
    }

    fn start_in(dir: tempfile::TempDir, edit: impl FnOnce(&mut ServerConfig)) -> Harness {
        Harness(TestServer::start(dir, edit))
    }

    /// Shuts the server down cleanly and gives the data directory back.
    fn stop(self) -> tempfile::TempDir {
        self.0.stop()
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    fn post(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, &[("Content-Type", "application/json")], body.as_bytes())
    }

    fn tree_size(&self) -> u64 {
        self.get("/healthz").json()["tree_size"].as_u64().unwrap()
    }

    fn wait_for_checkpoint(&self, size: u64) -> String {
        for _ in 0..200 {
            let r = self.get("/checkpoint");
            if r.status == 200 {
                let note = r.text();
                let cp = open(self.dir.path(), &note);
                if cp.tree_size >= size {
                    return note;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no checkpoint of size {size}");
    }
}

fn indexes(r: &Resp) -> Vec<u64> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect()
}

#[test]
fn appends_single_array_and_ndjson() {
    let h = Harness::start();
    let one = h.post("/v1/events", r#"{"actor":"alice","action":"login"}"#);
    let i1 = indexes(&one);
    assert_eq!(i1.len(), 1);
    let j = one.json();
    assert_eq!(BASE64.decode(j["entries"][0]["leaf_hash"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(j["tree_size"].as_u64().unwrap(), i1[0] + 1);

    let arr = indexes(&h.post("/v1/events", r#"[{"n":1}, {"n":2}, {"n":3}]"#));
    assert_eq!(arr.len(), 3);
    let nd = h.request("POST", "/v1/events", &[("Content-Type", "application/x-ndjson")], b"{\"n\":4}\n{\"n\":5}\n");
    let nd = indexes(&nd);
    assert_eq!(nd.len(), 2);
    let all: Vec<u64> = i1.iter().chain(&arr).chain(&nd).copied().collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(h.tree_size(), all.last().unwrap() + 1);

    // A Kubernetes audit EventList: each item is an event of the k8s-audit format.
    let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"verb":"get","user":{"username":"kube"}},{"verb":"list"}]}"#;
    let k = indexes(&h.post("/v1/events", list));
    let e = h.get(&format!("/v1/entries/{}", k[0])).json();
    assert_eq!(e["format"], "k8s-audit");
    assert_eq!(e["event"]["user"]["username"], "kube");
    h.stop();
}

#[test]
fn bad_item_is_named_and_nothing_is_appended() {
    let h = Harness::start();
    indexes(&h.post("/v1/events", r#"{"a":0}"#));
    let before = h.tree_size();
    let r = h.post("/v1/events", r#"[{"a":1}, 2, {"b":2}]"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["item"], 1);
    assert!(j["error"].as_str().unwrap().contains("item 1"), "{j}");
    let r = h.request("POST", "/v1/events", &[], b"{\"a\":1}\n{\"a\":1}\n{\"a\":tru}\n");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["item"], 2);
    for body in ["", "[]", "{", "[{}] x"] {
        assert_eq!(h.post("/v1/events", body).status, 400, "{body:?}");
    }
    assert_eq!(h.tree_size(), before);

    // Other inputs that are refused before anything is appended.
    let r = h.request("POST", "/v1/events", &[("Content-Type", "application/xml")], b"{}");
    assert_eq!(r.status, 415);
    // What `curl -d` sends by default is taken as JSON (and still validated).
    let r = h.request("POST", "/v1/events", &[("Content-Type", "application/x-www-form-urlencoded")], b"a=b");
    assert_eq!(r.status, 400);
    let r = h.request("POST", "/v1/events", &[("Content-Encoding", "br")], b"{}");
    assert_eq!(r.status, 415);
    let r = h.post("/v1/events?stream=_stele/system", "{}");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = h.post("/v1/events?strem=x", "{}");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("strem"));
    let r = h.request("POST", "/v1/events?stream=a", &[("X-Stele-Stream", "b")], b"{}");
    assert_eq!(r.status, 400);
    assert_eq!(h.tree_size(), before);
    assert_eq!(h.get("/v1/events").status, 405);
    assert_eq!(h.get("/nope").status, 404);
    h.stop();
}

#[test]
fn oversize_is_413_and_names_the_item() {
    let h = Harness::start_with(|c| {
        c.log_options = LogOptions { max_entry_bytes: 1000, ..LogOptions::default() };
        c.max_body_bytes = 20_000;
        c.max_batch_events = 10;
        c.queue_depth = 10;
        c.queue_bytes = 20_000;
    });
    // The server's own start record (and its stream's registration) come first.
    let before = h.tree_size();
    let big = format!(r#"[{{"a":1}},{{"a":"{}"}}]"#, "x".repeat(2000));
    let r = h.post("/v1/events", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["item"], 1);
    let huge = format!(r#"{{"a":"{}"}}"#, "x".repeat(30_000));
    let r = h.post("/v1/events", &huge);
    assert_eq!(r.status, 413);
    let many = "{}\n".repeat(11);
    let r = h.post("/v1/events", &many);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("11 events"));
    // A gzip bomb: a small compressed body that decompresses past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(format!(r#"{{"a":"{}"}}"#, " ".repeat(100_000)).as_bytes()).unwrap();
    let r = h.request("POST", "/v1/events", &[("Content-Encoding", "gzip")], &gz.finish().unwrap());
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(h.tree_size(), before);
    h.stop();
}

#[test]
fn gzip_bodies_are_accepted() {
    let h = Harness::start();
    let body = b"{\"actor\":\"gz\"}\n{\"actor\":\"gz2\"}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let r = h.request(
        "POST",
        "/v1/events",
        &[("Content-Encoding", "gzip"), ("Content-Type", "application/x-ndjson")],
        &gz.finish().unwrap(),
    );
    let idx = indexes(&r);
    let e = h.get(&format!("/v1/entries/{}", idx[1])).json();
    assert_eq!(e["event"]["actor"], "gz2");
    assert_eq!(h.post("/v1/events", "").status, 400);
    let r = h.request("POST", "/v1/events", &[("Content-Encoding", "gzip")], b"not gzip");
    assert_eq!(r.status, 400);
    h.stop();
}

#[test]
fn acknowledged_entries_are_durable_byte_for_byte() {
    let h = Harness::start();
    let events = [r#"{"actor":"bob", "spaced" : [1, 2]}"#, "{\n  \"pretty\": true\n}", r#"{"u":"\u00e9\ud83d\ude00"}"#];
    let mut acked = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let stream = if i == 1 { "other/stream" } else { "default" };
        let r = h.request("POST", &format!("/v1/events?stream={stream}"), &[], e.as_bytes());
        acked.push((indexes(&r)[0], e, stream));
    }
    let dir = h.stop();
    let reader = LogReader::open(dir.path()).unwrap();
    for (i, e, stream) in &acked {
        let entry = reader.entry(*i).unwrap();
        assert_eq!(entry.payload, e.as_bytes());
        assert_eq!(entry.stream, *stream);
    }
    // A clean shutdown signs a final checkpoint over everything.
    assert_eq!(reader.newest_checkpoint().unwrap().tree_size, reader.tree_size());
    // The directory reopens and serves again.
    let h = Harness::start_in(dir, |_| {});
    // Everything is there, followed by the server's start record.
    assert_eq!(h.tree_size(), reader.tree_size() + 1);
    indexes(&h.post("/v1/events", "{}"));
    h.stop();
}

#[test]
fn entry_has_exact_bytes_and_a_proof_to_the_signed_checkpoint() {
    let h = Harness::start();
    let payload = r#"{"actor":"carol",  "action":"delete","resource":"db/1","n":[1,2,{"x":null}]}"#;
    let mut last = 0;
    for _ in 0..5 {
        last = indexes(&h.post("/v1/events", r#"{"filler":true}"#))[0];
    }
    let index = indexes(&h.post("/v1/events", payload))[0];
    assert!(index > last);
    let note = h.wait_for_checkpoint(index + 1);
    let cp = open(h.dir.path(), &note);

    let r = h.get(&format!("/v1/entries/{index}"));
    assert_eq!(r.status, 200, "{}", r.text());
    // The stored bytes appear unchanged in the response text.
    assert!(r.text().contains(&format!("\"event\":{payload}")), "{}", r.text());
    let j = r.json();
    assert_eq!(j["index"], index);
    assert_eq!(j["stream"], "default");
    assert_eq!(j["format"], "json");
    assert!(j["received"].as_str().unwrap().ends_with('Z'));
    let leaf = BASE64.decode(j["leaf"].as_str().unwrap()).unwrap();
    assert_eq!(leaf.len(), 68);
    let lh = stele_tlog::hash::leaf_hash(&leaf);
    assert_eq!(lh.to_base64(), j["leaf_hash"].as_str().unwrap());
    let decoded = stele_tlog::leaf::Leaf::decode(&leaf).unwrap();
    assert!(decoded.matches_payload(payload.as_bytes()));
    assert_eq!(hex::encode(decoded.salt), j["salt"].as_str().unwrap());
    let proof = &j["inclusion_proof"];
    let size = proof["tree_size"].as_u64().unwrap();
    assert_eq!(proof["checkpoint"].as_str().unwrap(), note);
    assert_eq!(size, cp.tree_size);
    let hashes: Vec<Hash> =
        proof["hashes"].as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect();
    stele_tlog::merkle::verify_inclusion(index, size, &lh, &hashes, &cp.root_hash).unwrap();

    assert_eq!(h.get("/v1/entries/99999").status, 404);
    assert_eq!(h.get("/v1/entries/abc").status, 400);
    assert_eq!(h.get("/v1/entries/-1").status, 400);
    h.stop();
}

#[test]
fn entry_newer_than_the_checkpoint_gets_a_proof_to_the_current_tree() {
    let h = Harness::start_with(|c| c.checkpoint_interval = Duration::from_secs(3600));
    let r = h.get("/checkpoint");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().is_some());
    let index = indexes(&h.post("/v1/events", r#"[{"a":1},{"a":2},{"a":3}]"#))[1];
    let j = h.get(&format!("/v1/entries/{index}")).json();
    let proof = &j["inclusion_proof"];
    assert!(proof["checkpoint"].is_null());
    assert!(proof["unsigned"].as_str().unwrap().contains("current tree size"));
    let size = proof["tree_size"].as_u64().unwrap();
    let root = Hash::from_base64(proof["root_hash"].as_str().unwrap()).unwrap();
    let lh = Hash::from_base64(j["leaf_hash"].as_str().unwrap()).unwrap();
    let hashes: Vec<Hash> =
        proof["hashes"].as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect();
    stele_tlog::merkle::verify_inclusion(index, size, &lh, &hashes, &root).unwrap();
    h.stop();
}

#[test]
fn checkpoint_verifies() {
    let h = Harness::start();
    indexes(&h.post("/v1/events", r#"{"a":1}"#));
    let note = h.wait_for_checkpoint(1);
    let r = h.get("/checkpoint");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let cp = open(h.dir.path(), &note);
    assert_eq!(cp.origin, ORIGIN);
    let reader = LogReader::open(h.dir.path()).unwrap();
    assert_eq!(reader.root_hash(cp.tree_size).unwrap(), cp.root_hash);
    h.stop();
}

#[test]
fn query_filters() {
    let h = Harness::start();
    let events = [
        r#"{"actor":"alice","action":"repo.create","resource":"o/a","outcome":"success","time":"2024-01-01T00:00:00Z"}"#,
        r#"{"actor":"bob","action":"repo.delete","resource":"o/b","outcome":"denied","time":"2024-01-02T00:00:00Z"}"#,
        r#"{"actor":"alice","action":"login","outcome":"ok","time":"2024-01-03T00:00:00Z"}"#,
        "{\"actor\":\"alice\",\n\"action\":\"logout\",\"time\":\"2024-01-04T00:00:00Z\"}",
    ];
    for e in &events {
        indexes(&h.post("/v1/events", e));
    }
    indexes(&h.post("/v1/events?stream=ops", r#"{"actor":"alice","action":"deploy","time":"2024-01-05T00:00:00Z"}"#));

    let q = |qs: &str| {
        let r = h.get(&format!("/v1/query?{qs}"));
        assert_eq!(r.status, 200, "{qs}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        r.lines()
    };
    let actions =
        |v: &[Value]| v.iter().map(|l| l["fields"]["action"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    assert_eq!(actions(&q("actor=alice")), ["repo.create", "login", "logout", "deploy"]);
    assert_eq!(actions(&q("action=repo.*")), ["repo.create", "repo.delete"]);
    assert_eq!(actions(&q("outcome=failure")), ["repo.delete"]);
    assert_eq!(actions(&q("outcome=success&actor=alice")), ["repo.create", "login"]);
    assert_eq!(actions(&q("since=2024-01-02T00:00:00Z&until=2024-01-04T00:00:00Z")), ["repo.delete", "login"]);
    assert_eq!(actions(&q("stream=ops")), ["deploy"]);
    assert_eq!(actions(&q("actor=alice&limit=2")), ["repo.create", "login"]);
    assert!(q("limit=0").is_empty());
    assert!(q("by=received&until=2000-01-01T00:00:00Z").is_empty());
    assert_eq!(q("by=received&since=2000-01-01T00:00:00Z").len(), 5);
    // Stele's own records are left out unless their stream is asked for.
    assert!(!q("stream=_stele/system").is_empty());

    let line = &q("action=logout")[0];
    assert_eq!(line["event"]["action"], "logout");
    assert_eq!(line["stream"], "default");
    assert!(line["index"].as_u64().is_some());
    assert_eq!(line["fields"]["actor"], "alice");
    let line = &q("action=repo.create")[0];
    assert!(h.get("/v1/query?action=repo.create").text().contains(&format!("\"event\":{}", events[0])));
    assert_eq!(line["fields"]["time"], "2024-01-01T00:00:00.000000000Z");

    for bad in [
        "since=yesterday",
        "by=time",
        "limit=100001",
        "limit=-1",
        "colour=red",
        "actor=a&actor=b",
        "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
    ] {
        let r = h.get(&format!("/v1/query?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().is_some());
    }
    h.stop();
}

#[test]
fn acknowledged_events_are_queryable_at_once() {
    let h = Harness::start();
    for i in 0..20 {
        let actor = format!("user-{i}");
        indexes(&h.post("/v1/events", &format!(r#"{{"actor":"{actor}","action":"x"}}"#)));
        let hits = h.get(&format!("/v1/query?actor={actor}")).lines();
        assert_eq!(hits.len(), 1, "event {i} not queryable right after its acknowledgement");
    }
    h.stop();
}

#[test]
fn concurrent_clients_get_unique_indexes() {
    let h = Harness::start();
    let addr = h.addr;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for r in 0..25 {
                    let n = 1 + (t + r) % 5;
                    let body: String = (0..n).map(|k| format!("{{\"t\":{t},\"r\":{r},\"k\":{k}}}\n")).collect();
                    let resp = request(addr, "POST", "/v1/events", &[], body.as_bytes());
                    let idx = indexes(&resp);
                    assert_eq!(idx.len(), n);
                    got.extend(idx);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "duplicate indexes");
    // One large batch goes through the blocking-pool parse path.
    let body: String =
        (0..1000).map(|k| format!("{{\"actor\":\"bulk\",\"k\":{k},\"pad\":\"{}\"}}\n", "p".repeat(100))).collect();
    assert_eq!(indexes(&h.post("/v1/events", &body)).len(), 1000);
    assert_eq!(h.get("/v1/query?actor=bulk&limit=5000").lines().len(), 1000);
    h.stop();
}

#[test]
fn metrics_and_health() {
    let h = Harness::start();
    indexes(&h.post("/v1/events", r#"{"a":1}"#));
    h.get("/v1/entries/zzz");
    let health = h.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let text = h.get("/metrics").text();
    for name in [
        "stele_entries_appended_total",
        "stele_bytes_appended_total",
        "stele_tree_size",
        "stele_append_duration_seconds_bucket",
        "stele_fsync_duration_seconds_bucket",
        "stele_commit_batch_entries_bucket",
        "stele_checkpoint_age_seconds",
        "stele_http_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.contains(r#"stele_http_requests_total{route="/v1/entries/{index}",status="400"} 1"#), "{text}");
    assert!(text.contains("stele_entries_appended_total 1\n"), "{text}");
    h.stop();
}
