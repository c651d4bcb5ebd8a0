//! The server over a storage backend that fails on command: a full disk and a failed
//! fsync make ingest answer 503 with `Retry-After` (nothing half-written, nothing
//! acknowledged after the failure); when the fault is gone the server recovers by
//! itself, cutting back to what was durable, and takes events again; every event
//! acknowledged before, during or after is there byte for byte and the log verifies.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, request, request_json};
use stele_store::backend::FileBackend;
use stele_store::faults::{Fault, Faults, FaultyBackend};
use stele_store::log::{Log, init};
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "faults.example/log";

fn start() -> (TestServer, Arc<Faults>) {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), ORIGIN).unwrap();
    let mut handle = None;
    let server = TestServer::start_with(
        dir,
        |_| {},
        |dir, options| {
            let key = std::fs::read_to_string(dir.join(stele_store::layout::SIGNING_KEY)).unwrap();
            let signer = NoteSigner::parse(&key).unwrap();
            let (backend, faults) = FaultyBackend::new(Arc::new(FileBackend::new(dir)));
            handle = Some(faults);
            Log::open_backend(Arc::new(backend), ORIGIN, signer, options).unwrap()
        },
    );
    (server, handle.unwrap())
}

/// Posts one event; returns (status, index if acknowledged, response).
fn post(server: &TestServer, n: u64) -> (u16, Option<u64>, common::Resp) {
    let body = format!("{{\"actor\":\"alice\",\"action\":\"write\",\"n\":{n}}}");
    let r = request_json(server.addr, "POST", "/v1/events", body.as_bytes());
    let index = (r.status == 200).then(|| r.json()["entries"][0]["index"].as_u64().unwrap());
    (r.status, index, r)
}

#[test]
fn a_full_disk_and_a_failed_fsync_refuse_then_recover_without_a_restart() {
    let (server, faults) = start();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        n += 1;
        let (status, index, _) = post(&server, n);
        assert_eq!(status, 200);
        acked.push((index.unwrap(), n));
    }

    for (what, inject) in [
        ("a full disk", Box::new(|f: &Faults| f.set_disk_full(true)) as Box<dyn Fn(&Faults)>),
        ("a failed fsync", Box::new(|f: &Faults| f.arm(Fault::SyncError, 0))),
    ] {
        inject(&faults);
        n += 1;
        let (status, _, r) = post(&server, n);
        assert_eq!(status, 503, "{what}: {}", r.text());
        assert!(r.header("Retry-After").is_some(), "{what}: 503 without Retry-After");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {}", r.text());
        if what == "a full disk" {
            assert!(r.text().contains("no space"), "{what}: the error does not say why: {}", r.text());
        }
        let health = request(server.addr, "GET", "/healthz", &[], b"");
        assert_eq!(health.status, 503, "{what}: healthz");
        let want = if what == "a full disk" { "disk_full" } else { "poisoned" };
        assert_eq!(health.json()["status"], want, "{what}: healthz {}", health.text());
        // Refused while the fault lasts (the disk stays full; a failed fsync poisons).
        n += 1;
        assert_eq!(post(&server, n).0, 503, "{what}: accepted after the failure");

        faults.set_disk_full(false);
        faults.clear();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            n += 1;
            let (status, index, r) = post(&server, n);
            if status == 200 {
                acked.push((index.unwrap(), n));
                break;
            }
            assert_eq!(status, 503, "{what}: {}", r.text());
            assert!(Instant::now() < deadline, "{what}: the server did not recover in 20 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(request(server.addr, "GET", "/healthz", &[], b"").status, 200, "{what}: healthz after recovery");
    }
    for _ in 0..5 {
        n += 1;
        let (status, index, _) = post(&server, n);
        assert_eq!(status, 200);
        acked.push((index.unwrap(), n));
    }

    // Every acknowledged event, byte for byte; the indexes are dense (nothing a
    // refused request wrote survived as an entry).
    for &(index, n) in &acked {
        let r = request(
            server.addr,
            "GET",
            &format!("/v1/entries/{index}"),
            &[("Accept", "application/octet-stream")],
            b"",
        );
        assert_eq!(r.status, 200, "entry {index}: {}", r.text());
        let want = format!("{{\"actor\":\"alice\",\"action\":\"write\",\"n\":{n}}}");
        assert!(r.text().contains(&want), "entry {index} holds {:?}, not {want:?}", r.text());
    }
    let metrics = request(server.addr, "GET", "/metrics", &[], b"").text();
    // A full disk is found while reserving a commit's space, before anything is
    // written: it needs no recovery. The failed fsync needs one.
    assert!(metrics.contains("stele_log_recoveries_total 1"), "recoveries not counted:\n{metrics}");

    let dir = server.stop();
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = verify(&reader, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let user: Vec<u64> =
        (0..reader.tree_size()).filter(|&i| reader.entry(i).is_ok_and(|e| e.stream == "default")).collect();
    assert_eq!(user.len(), acked.len(), "entries in the default stream: {user:?}, acknowledged {acked:?}");
}
