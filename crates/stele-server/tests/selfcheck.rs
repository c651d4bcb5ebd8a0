//! Scheduled self-verification: a server with a short incremental interval verifies
//! what was appended, records each pass in `_stele/system`, updates its metrics, and
//! reports a payload damaged on disk.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{TestServer, request_json};

const ORIGIN: &str = "test.example/selfcheck";

struct Harness(TestServer);

impl std::ops::Deref for Harness {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Harness {
    fn start(incremental: Duration, full: Duration) -> Harness {
        Harness(TestServer::fresh(ORIGIN, |config| {
            config.verify_incremental_interval = incremental;
            config.verify_full_interval = full;
        }))
    }

    fn stop(self) {
        self.0.stop();
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let r = request_json(self.addr, method, path, body);
        (r.status, String::from_utf8(r.body).unwrap())
    }

    fn append(&self, events: &[String]) {
        let (status, body) = self.request("POST", "/v1/events?stream=app", events.join("\n").as_bytes());
        assert_eq!(status, 200, "{body}");
    }

    /// The verification records in `_stele/system`, oldest first.
    fn records(&self) -> Vec<Value> {
        let (status, body) = self.request("GET", "/v1/query?stream=_stele/system&limit=10000", b"");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|line| {
                assert!(line.get("error").is_none(), "{line}");
                match &line["event"] {
                    Value::String(s) => serde_json::from_str(s).unwrap(),
                    other => other.clone(),
                }
            })
            .filter(|r: &Value| r["type"] == "verification")
            .collect()
    }

    /// The verification records, read from the data directory by a read-only reader
    /// (a query would stop at the damaged entries of another stream).
    fn records_on_disk(&self) -> Vec<Value> {
        let reader = stele_store::LogReader::open(self.dir.path()).unwrap();
        (0..reader.tree_size())
            .filter(|&i| reader.leaf(i).unwrap().stream_id == stele_store::streams::SYSTEM_STREAM_ID)
            .map(|i| serde_json::from_slice::<Value>(&reader.entry(i).unwrap().payload).unwrap())
            .filter(|r| r["type"] == "verification")
            .collect()
    }

    /// Waits for a verification record matching `want`, found by `records`.
    fn wait_record_in(&self, records: impl Fn(&Self) -> Vec<Value>, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(r) = records(self).into_iter().find(&want) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no such verification record; have {:?}", records(self));
    }

    fn wait_record(&self, want: impl Fn(&Value) -> bool) -> Value {
        self.wait_record_in(Harness::records, want)
    }

    /// The value of the metric sample named exactly `name` (labels included).
    fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.request("GET", "/metrics", b"");
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

fn events(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"actor":"{tag}-{i}","action":"act-{}","resource":"r{}"}}"#, i * 7919, i * 104_729))
        .collect()
}

#[test]
fn incremental_passes_are_recorded_in_the_log() {
    let h = Harness::start(Duration::from_millis(200), Duration::ZERO);
    h.append(&events("alice", 10));
    // 1 stream record + 10 events.
    let first = h.wait_record(|r| r["to"].as_u64() >= Some(11));
    assert_eq!(first["kind"], "incremental");
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["problems"], 0);
    assert!(first["root"].as_str().is_some_and(|r| r.len() == 44), "{first}");
    assert!(first["started"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(first["finished"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(h.metric("stele_verify_last_size") >= 11.0);
    assert!(h.metric("stele_verify_last_success_timestamp_seconds") > 1.6e9);
    assert!(h.metric("stele_verify_pass_duration_seconds{kind=\"incremental\"}") >= 0.0);
    assert_eq!(h.metric("stele_verify_failures_total"), 0.0);

    // More events: the next pass starts where the last one ended.
    h.append(&events("bob", 5));
    let second = h.wait_record(|r| r["from"].as_u64() >= first["to"].as_u64());
    assert_eq!(second["ok"], true, "{second}");
    assert!(second["to"].as_u64().unwrap() >= second["from"].as_u64().unwrap() + 5);

    // An idle log does not collect one record per pass.
    std::thread::sleep(Duration::from_millis(700));
    let before = h.records().len();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(h.records().len(), before);
    assert_eq!(h.metric("stele_verify_failures_total"), 0.0);
    h.stop();
}

#[test]
fn damaged_payload_fails_the_next_pass() {
    let h = Harness::start(Duration::from_millis(1500), Duration::ZERO);
    h.append(&events("carol", 300));
    // Flip a byte in the middle of the events' segment (the largest one).
    let seg_dir = h.dir.path().join(stele_store::layout::SEGMENTS_DIR);
    let largest = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::OpenOptions::new().write(true).open(&largest).unwrap().write_all(&bytes).unwrap();

    let failed = h.wait_record_in(Harness::records_on_disk, |r| r["ok"] == false);
    assert_eq!(failed["kind"], "incremental");
    assert_eq!(failed["from"], 0);
    assert!(failed["problems"].as_u64().unwrap() >= 1, "{failed}");
    assert!(h.metric("stele_verify_failures_total") >= 1.0);
    assert_eq!(h.metric("stele_verify_last_size"), 0.0);
    h.stop();
}

#[test]
fn full_passes_are_recorded_in_the_log() {
    let h = Harness::start(Duration::ZERO, Duration::from_millis(300));
    h.append(&events("dave", 20));
    let full = h.wait_record(|r| r["kind"] == "full" && r["to"].as_u64() >= Some(21));
    assert_eq!(full["ok"], true, "{full}");
    assert_eq!(full["from"], 0);
    assert!(h.metric("stele_verify_pass_duration_seconds{kind=\"full\"}") >= 0.0);
    assert!(h.metric("stele_verify_last_size") >= 21.0);
    h.stop();
}
