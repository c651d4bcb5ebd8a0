//! Durable appends of synthetic ~200-byte audit events, in process, on the file
//! backend (every commit is fsynced), and full verification of the result.
//!
//! `cargo bench -p stele-store --bench append`
//!
//! Events vary like real ones (actors, verbs, resources, times, ids), so compression
//! sees realistic input rather than one event repeated.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stele_store::log::{Log, LogOptions, NewEntry, init};
use stele_store::verify::{VerifyOptions, verify};

const ACTORS: [&str; 8] = [
    "alice@example.com",
    "bob@example.com",
    "system:serviceaccount:kube-system:deployment-controller",
    "carol",
    "dave@corp.example",
    "system:anonymous",
    "eve",
    "ci-bot",
];
const VERBS: [&str; 6] = ["get", "list", "create", "update", "delete", "watch"];
const RESOURCES: [&str; 6] = ["pods", "secrets", "configmaps", "deployments", "namespaces", "roles"];

/// A synthetic event of about 200 bytes.
pub fn event(i: u64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    out.clear();
    let _ = write!(
        out,
        r#"{{"time":"2026-11-29T10:{:02}:{:02}.{:06}Z","actor":"{}","action":"{}","resource":"ns-{}/{}/{:x}","outcome":"{}","id":"{:016x}","src":"10.{}.{}.{}"}}"#,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        x % 1_000_000,
        ACTORS[(x >> 8) as usize % ACTORS.len()],
        VERBS[(x >> 16) as usize % VERBS.len()],
        (x >> 24) % 50,
        RESOURCES[(x >> 32) as usize % RESOURCES.len()],
        (x >> 40) & 0xfffff,
        if x.is_multiple_of(13) { "failure" } else { "success" },
        x,
        (x >> 8) & 255,
        (x >> 16) & 255,
        (x >> 24) & 255,
    );
}

fn bench(c: &mut Criterion) {
    let batch = 32_768u64; // the import command's batch size
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut total_bytes = 0;
    for i in 0..batch {
        let mut p = Vec::new();
        event(i, &mut p);
        total_bytes += p.len();
        payloads.push(p);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), "bench.example/log").expect("init");
    let mut log = Log::open(
        dir.path(),
        LogOptions { compression: stele_store::chunk::Compression::Zstd(1), ..LogOptions::default() },
    )
    .expect("open");
    let entries: Vec<NewEntry<'_>> =
        payloads.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p }).collect();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(batch));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    eprintln!("average event size {} bytes", total_bytes as u64 / batch);
    g.bench_function("durable_batch_32k_200B_events", |b| {
        b.iter(|| log.append(&entries).expect("append"));
    });
    g.finish();
    log.sign_checkpoint().expect("checkpoint");
    let reader = log.reader();
    let n = reader.tree_size();
    let t = Instant::now();
    let report = verify(&reader, &VerifyOptions::default()).expect("verify");
    let secs = t.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.problems);
    eprintln!(
        "verify: {n} entries, {:.1} MB payload in {secs:.2} s: {:.0} entries/s, {:.0} MB/s",
        report.payload_bytes as f64 / 1e6,
        n as f64 / secs,
        report.payload_bytes as f64 / 1e6 / secs
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
