//! How long the writer is busy deleting one expired segment (ingestion waits that
//! long): appending the deletion record (one fsynced commit) and noting it in
//! `deletions.dat` (fsync), on the file backend, in a log that already holds a year
//! of daily segments' worth of entries. The file removal happens off the writer.
//!
//! `cargo bench -p stele-store --bench retention`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stele_store::log::{Log, LogOptions, NewEntry, init, now_ns};
use stele_store::retention::{DeletionRecord, segment_summaries};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "bench.example/retention").unwrap();
    // Small segments so that one setup yields hundreds of finished segments: each
    // stands for one stream-day of a year of data.
    let options = LogOptions { segment_max_bytes: 64 << 10, ..LogOptions::default() };
    let mut log = Log::open(dir.path(), options).unwrap();
    // Incompressible payloads, so segments fill up as real ones do.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let payloads: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            (0..300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let mut n = 0u64;
    for _ in 0..730 {
        let entries: Vec<NewEntry<'_>> =
            payloads.iter().map(|p| NewEntry { stream: "app", format: 1, payload: p }).collect();
        n += log.append(&entries).unwrap().indexes.len() as u64;
    }
    log.sign_checkpoint().unwrap();
    let mut sealed: Vec<_> =
        segment_summaries(&log.reader()).unwrap().into_iter().filter(|s| !s.open && s.stream == "app").collect();
    sealed.reverse();
    eprintln!("{n} entries in {} finished segments", sealed.len());
    let mut worst = Duration::ZERO;
    c.bench_function("delete one segment (writer busy time)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let Some(s) = sealed.pop() else {
                    return total.max(Duration::from_nanos(1));
                };
                let record = DeletionRecord {
                    kind: "deletion".into(),
                    segment: s.segno,
                    stream: s.stream.clone(),
                    entries: s.entries,
                    ranges: s.ranges.clone(),
                    oldest_received_ns: s.oldest_received_ns,
                    newest_received_ns: s.newest_received_ns,
                    policy: "app".into(),
                    min_retention_seconds: 0,
                    max_retention_seconds: 0,
                    mode: "governance".into(),
                    deleted_ns: now_ns(),
                };
                // What the server's sequencer does; the file is removed off the writer.
                let started = Instant::now();
                log.record_segment_deletion(s.segno, &record).unwrap();
                let took = started.elapsed();
                log.reader().files().remove_deleted_segment(s.segno).unwrap();
                worst = worst.max(took);
                total += took;
            }
            total
        })
    });
    eprintln!("slowest single deletion: {:.2} ms", worst.as_secs_f64() * 1e3);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
