//! Proof generation latency from a large data directory, warm (page cache hot).
//!
//! `STELE_BENCH_LOG=/tmp/d10m cargo bench -p stele-store --bench proofs`
//!
//! Opens `STELE_BENCH_LOG` read-only with `LogReader::open`; without it, builds a
//! 1,000,000-entry log in a temporary directory first (takes a while). Measures, at the
//! tree size of the newest checkpoint:
//! - inclusion proof of a random index (criterion mean), and
//! - consistency proof from a random older size (criterion mean),
//!
//! then prints p50/p99/max over 10,000 random requests of each, timed one by one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stele_store::reader::LogReader;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// The data directory to read, and the temporary directory keeping it alive if built here.
fn data_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Ok(p) = std::env::var("STELE_BENCH_LOG") {
        return (PathBuf::from(p), None);
    }
    use stele_store::log::{Log, LogOptions, NewEntry, init};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    init(&dir, "bench.example/proofs").expect("init");
    let mut log = Log::open(&dir, LogOptions::default()).expect("open");
    let payloads: Vec<Vec<u8>> =
        (0..10_000u64).map(|i| format!("{{\"actor\":\"a{i}\",\"n\":{i}}}").into_bytes()).collect();
    for _ in 0..100 {
        let batch: Vec<NewEntry<'_>> =
            payloads.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p }).collect();
        log.append(&batch).expect("append");
    }
    log.sign_checkpoint().expect("checkpoint");
    drop(log);
    (dir, Some(tmp))
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99), *v.last().unwrap())
}

fn bench(c: &mut Criterion) {
    let (dir, _keep) = data_dir();
    let reader = LogReader::open(&dir).expect("open data directory read-only");
    let size = reader.newest_checkpoint().expect("a signed checkpoint").tree_size;
    eprintln!("proofs bench: {} at checkpoint tree size {size}", dir.display());

    let mut rng = Rng(1);
    // Warm up: touch the tiles of many random proofs first.
    for _ in 0..20_000 {
        reader.inclusion_proof(rng.below(size), size).unwrap();
    }

    let mut g = c.benchmark_group("proofs");
    g.bench_function("inclusion_random_index", |b| {
        b.iter(|| reader.inclusion_proof(rng.below(size), size).unwrap());
    });
    g.bench_function("consistency_random_first", |b| {
        b.iter(|| reader.consistency_proof(1 + rng.below(size - 1), size).unwrap());
    });
    g.finish();

    let mut incl = Vec::with_capacity(10_000);
    let mut cons = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let i = rng.below(size);
        let t = Instant::now();
        std::hint::black_box(reader.inclusion_proof(i, size).unwrap());
        incl.push(t.elapsed());
        let m = 1 + rng.below(size - 1);
        let t = Instant::now();
        std::hint::black_box(reader.consistency_proof(m, size).unwrap());
        cons.push(t.elapsed());
    }
    let (p50, p99, max) = percentiles(incl);
    eprintln!("inclusion proof, 10000 random indexes at size {size}: p50 {p50:?} p99 {p99:?} max {max:?}");
    let (p50, p99, max) = percentiles(cons);
    eprintln!("consistency proof, 10000 random first sizes to {size}: p50 {p50:?} p99 {p99:?} max {max:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
