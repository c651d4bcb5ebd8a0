//! Parse throughput on the real Kubernetes audit events of `../shared`.
//!
//! `cargo bench -p stele-formats --bench parse`. Skips (with a message) when
//! `../shared` is absent.
//!
//! The `k8s_jsonl_50mb` group reads the first ~50 MB of a file made by
//! `python3 bench/gen_k8s.py --mb 200 > /tmp/k8s200.jsonl` (another path can be
//! given in `STELE_BENCH_JSONL`) through `EventReader` in JSON-lines mode with
//! the default normalizer, as `stele import` does; it skips with a message
//! when the file is absent.

use std::hint::black_box;
use std::io::{Cursor, Read};
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stele_formats::{EventReader, FieldPointers, InputFormat, Normalizer, parse_event};

fn k8s_events() -> Option<Vec<Vec<u8>>> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/k8s-audit");
    if !data.is_dir() {
        return None;
    }
    let mut out = Vec::new();
    let native = std::fs::read(data.join("panther-analysis_k8s-audit-native.jsonl")).ok()?;
    out.extend(native.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    for dir in ["k8s_audit", "psp"] {
        let mut files: Vec<_> = std::fs::read_dir(data.join("falcosecurity-falco").join(dir))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(f).ok()?;
            out.extend(bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
        }
    }
    Some(out)
}

fn bench(c: &mut Criterion) {
    let Some(events) = k8s_events() else {
        eprintln!("skipping: ../shared not found");
        return;
    };
    let total: usize = events.iter().map(Vec::len).sum();
    let pointers = FieldPointers::default();
    let normalizer = Normalizer::new(&pointers);
    let mut jsonl = Vec::with_capacity(total + events.len());
    for e in &events {
        jsonl.extend_from_slice(e);
        jsonl.push(b'\n');
    }

    let mut g = c.benchmark_group("k8s");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("parse_event", |b| {
        b.iter(|| {
            for e in &events {
                let _ = black_box(parse_event(black_box(e), None, &pointers));
            }
        })
    });
    g.bench_function("normalizer_parse", |b| {
        b.iter(|| {
            for e in &events {
                let _ = black_box(normalizer.parse(black_box(e), None));
            }
        })
    });
    g.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| {
            for e in &events {
                let _ = black_box(serde_json::from_slice::<serde_json::Value>(black_box(e)));
            }
        })
    });
    g.throughput(Throughput::Bytes(jsonl.len() as u64));
    g.bench_function("reader_auto_validate", |b| {
        b.iter(|| {
            let mut r = EventReader::new(&jsonl[..], InputFormat::Auto, 1 << 20);
            let mut n = 0usize;
            loop {
                match r.next_event() {
                    Ok(Some(e)) => n += e.bytes.len(),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            black_box(n)
        })
    });
    g.bench_function("reader_auto_normalize", |b| {
        b.iter(|| {
            let mut r = EventReader::new(&jsonl[..], InputFormat::Auto, 1 << 20).with_normalizer(normalizer.clone());
            let mut batch = stele_formats::Batch::new();
            let mut n = 0usize;
            loop {
                match r.read_batch(1024, 1 << 20, &mut batch) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => {}
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

/// The first ~50 MB (whole lines) of the generated benchmark file.
fn generated_jsonl() -> Option<Vec<u8>> {
    let path = std::env::var("STELE_BENCH_JSONL").unwrap_or_else(|_| "/tmp/k8s200.jsonl".into());
    let Ok(file) = std::fs::File::open(&path) else {
        eprintln!("skipping k8s_jsonl_50mb: {path} not found (python3 bench/gen_k8s.py --mb 200 > {path})");
        return None;
    };
    let mut data = Vec::new();
    file.take(50_000_000).read_to_end(&mut data).ok()?;
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    data.truncate(end);
    (!data.is_empty()).then_some(data)
}

fn bench_generated(c: &mut Criterion) {
    let Some(data) = generated_jsonl() else {
        return;
    };
    let normalizer = Normalizer::new(&FieldPointers::default());
    let mut g = c.benchmark_group("k8s_jsonl_50mb");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("reader_jsonl_normalize", |b| {
        let mut batch = stele_formats::Batch::new();
        b.iter(|| {
            let mut r = EventReader::new(Cursor::new(&data[..]), InputFormat::Jsonl, 1 << 20)
                .with_normalizer(normalizer.clone());
            let mut n = 0usize;
            loop {
                match r.read_batch(1024, 1 << 20, &mut batch) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => panic!("{e}"),
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_generated
}
criterion_main!(benches);
