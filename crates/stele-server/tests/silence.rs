//! A declared source that goes quiet is reported in /metrics and recorded in
//! `_stele/gaps`; when it speaks again the gap's end is recorded too.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, request};
use serde_json::Value;
use stele_server::ExpectedSource;

fn gap_records(addr: std::net::SocketAddr) -> Vec<Value> {
    let r = request(addr, "GET", "/v1/query?stream=_stele/gaps&by=received", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.lines().into_iter().map(|l| l["event"].clone()).collect()
}

fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn silence_and_resumption_are_on_the_record() {
    let server = TestServer::fresh("gaps.example/log", |c| {
        c.expected_sources = vec![
            ExpectedSource { stream: "app".into(), max_silence: Duration::from_secs(1) },
            ExpectedSource { stream: "busy".into(), max_silence: Duration::from_secs(60) },
        ];
    });
    let addr = server.addr;
    let post = |stream: &str| {
        let r = request(addr, "POST", &format!("/v1/events?stream={stream}"), &[], b"{\"a\":1}");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["entries"][0]["index"].as_u64().unwrap()
    };
    let first = post("app");
    post("busy");
    wait_for("the silent record", || gap_records(addr).iter().any(|r| r["type"] == "source_silent"));
    let silent = gap_records(addr);
    assert_eq!(silent.len(), 1, "{silent:?}");
    assert_eq!(silent[0]["stream"], "app");
    assert!(silent[0]["last_event_ns"].as_u64().is_some());
    assert_eq!(metric(addr, "stele_source_silent{stream=\"app\"}"), Some(1.0));
    assert_eq!(metric(addr, "stele_source_silent{stream=\"busy\"}"), None);
    // Not recorded again while the silence lasts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gap_records(addr).len(), 1);

    let again = post("app");
    assert!(again > first);
    wait_for("the resumed record", || gap_records(addr).iter().any(|r| r["type"] == "source_resumed"));
    let records = gap_records(addr);
    let resumed = records.iter().find(|r| r["type"] == "source_resumed").unwrap();
    assert!(resumed["gap_seconds"].as_f64().unwrap() >= 1.0, "{resumed}");
    assert_eq!(metric(addr, "stele_source_silent{stream=\"app\"}"), Some(0.0));
    server.stop();
}
