//! A wall clock that steps back: received times stay monotonic, entries keep their
//! order, and the step is counted in /metrics and recorded once in `_stele/gaps`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, request, request_json};
use serde_json::Value;
use stele_store::clock::Clock;

fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn clock_records(addr: std::net::SocketAddr) -> Vec<Value> {
    let r = request(addr, "GET", "/v1/query?stream=_stele/gaps", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.lines().into_iter().map(|l| l["event"].clone()).filter(|e| e["type"] == "clock_backwards").collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(addr: std::net::SocketAddr, n: u32) -> (u64, u64) {
    let r = request_json(addr, "POST", "/v1/events", format!("{{\"n\":{n}}}").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (v["entries"][0]["index"].as_u64().unwrap(), v["received_ns"].as_u64().unwrap())
}

#[test]
fn a_clock_that_steps_back_is_detected_once_and_never_reorders() {
    const T0: u64 = 1_900_000_000_000_000_000;
    const HOUR: u64 = 3_600_000_000_000;
    let now = Arc::new(AtomicU64::new(T0));
    let c = now.clone();
    let server = TestServer::fresh("clock.example/log", move |cfg| {
        cfg.log_options.clock = Clock::from_fn(move || c.load(Ordering::SeqCst));
    });
    let addr = server.addr;
    let (i0, r0) = post(addr, 0);
    assert_eq!(r0, T0);
    assert_eq!(metric(addr, "stele_clock_backwards_total"), Some(0.0));

    now.store(T0 - HOUR, Ordering::SeqCst);
    let (i1, r1) = post(addr, 1);
    let (i2, r2) = post(addr, 2);
    assert!(i0 < i1 && i1 < i2, "entries keep their order");
    assert_eq!((r1, r2), (T0, T0), "received times never go backwards");
    wait_for("the clock_backwards record", || clock_records(addr).len() == 1);
    let rec = &clock_records(addr)[0];
    assert_eq!(rec["from_ns"], T0);
    assert_eq!(rec["to_ns"], T0 - HOUR);
    assert_eq!(rec["jump_ns"], HOUR);
    assert_eq!(metric(addr, "stele_clock_backwards_total"), Some(1.0));
    assert_eq!(metric(addr, "stele_clock_backwards_last_jump_seconds"), Some(3600.0));

    // Still in the same episode: nothing more is recorded.
    post(addr, 3);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(clock_records(addr).len(), 1);
    // The clock catches up, then steps back 10 s: a second episode.
    now.store(T0 + 1, Ordering::SeqCst);
    post(addr, 4);
    now.store(T0 - 10_000_000_000, Ordering::SeqCst);
    post(addr, 5);
    wait_for("the second clock_backwards record", || clock_records(addr).len() == 2);
    assert_eq!(metric(addr, "stele_clock_backwards_total"), Some(2.0));
    assert_eq!(metric(addr, "stele_clock_backwards_last_jump_seconds"), Some(10.000000001)); // from T0 + 1
    let dir = server.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = stele_store::verify::verify(&reader, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
