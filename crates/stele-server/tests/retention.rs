//! Scheduled retention passes while serving: expired segments go, one small commit
//! each, under deletion records; the rest is served as before and the log verifies.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, request};
use stele_retention::{Mode, Policy};

fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_server_deletes_expired_segments_on_schedule() {
    let server = TestServer::fresh("retention.example/log", |c| {
        c.log_options.segment_window_ns = 400_000_000;
        c.retention = vec![Policy {
            stream: "app".into(),
            min_retention: Duration::ZERO,
            max_retention: Some(Duration::from_millis(300)),
            mode: Mode::Governance,
        }];
        c.retention_interval = Duration::from_millis(200);
    });
    let addr = server.addr;
    let post = |stream: &str, body: &[u8]| {
        let r = request(addr, "POST", &format!("/v1/events?stream={stream}"), &[], body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    let old = post("app", b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    let kept = post("other", b"{\"b\":1}\n");
    std::thread::sleep(Duration::from_millis(900));
    // A new window: the old segment is finished and has expired.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(addr, "stele_retention_deleted_segments_total") < 1.0 {
        post("app", b"{\"a\":4}\n");
        assert!(Instant::now() < deadline, "no segment was deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in &old {
        let r = request(addr, "GET", &format!("/v1/entries/{i}"), &[], b"");
        assert_eq!(r.status, 410, "{}", r.text());
        assert!(r.json()["deletion_record"].as_u64().is_some());
        // Its inclusion proof is still served.
        assert_eq!(request(addr, "GET", &format!("/v1/proof/inclusion?index={i}"), &[], b"").status, 200);
    }
    assert_eq!(request(addr, "GET", &format!("/v1/entries/{}", kept[0]), &[], b"").status, 200);
    let dir = server.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = stele_store::verify::verify(&reader, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(!report.deletions.is_empty());
    assert_eq!(report.deletions[0].record.ranges[0].0, old[0]);
}
