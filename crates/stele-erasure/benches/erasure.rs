//! The two erasure figures of BENCHMARKS.md, on the file backend (every commit and key
//! store change is fsynced):
//! - `import/{plain,sealed}`: the import path (normalize, [seal, sync the key store,
//!   derive the sealed form's index fields,] durable append) over the real Kubernetes audit and
//!   CloudTrail samples in ../shared/data, 4,096 events a batch as `stele import` does;
//! - `erase/one_subject`: `stele_erasure::erase` of one subject among 40,000 (record
//!   appended and synced, key store rewritten and synced).
//!
//! `cargo bench -p stele-erasure --bench erasure`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stele_erasure::{KeyStore, Keys, MasterKey, Sealer, SealingRule};
use stele_formats::{CaptureRecord, EventFormat, FieldPointers, Normalizer};
use stele_index::Index;
use stele_store::log::{Log, LogOptions, NewEntry, init};

const BATCH: usize = 4096;

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

/// Real events: (format, bytes), repeated to fill one batch.
fn events() -> Vec<(EventFormat, Vec<u8>)> {
    let mut base = Vec::new();
    for (file, f) in [
        ("k8s-audit/panther-analysis_k8s-audit-native.jsonl", EventFormat::KubernetesAudit),
        ("cloudtrail/panther-analysis_AWS.CloudTrail.jsonl", EventFormat::CloudTrail),
    ] {
        let bytes = std::fs::read(shared().join(file)).expect("../shared/data is needed for this benchmark");
        for l in bytes.split(|&b| b == b'\n').filter(|l| l.starts_with(b"{")) {
            base.push((f, l.to_vec()));
        }
    }
    base.iter().cycle().take(BATCH).cloned().collect()
}

fn rules() -> Vec<SealingRule> {
    let r = |format: &str, subject: &str, fields: &[&str]| SealingRule {
        stream: "s".into(),
        format: Some(format.into()),
        subject: subject.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        erasure_wins: false,
        subject_default: None,
    };
    vec![
        r("k8s-audit", "/user/username", &["/sourceIPs", "/impersonatedUser", "/p_any_usernames"]),
        r("cloudtrail", "/userIdentity/arn", &["/userIdentity/userName", "/sourceIPAddress", "/p_any_usernames"]),
    ]
}

fn open_log(dir: &Path) -> Log {
    init(dir, "bench.example/log").expect("init");
    Log::open(dir, LogOptions::default()).expect("open")
}

fn keys(dir: &Path) -> Keys {
    Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir, true).expect("key store"))
}

fn import(c: &mut Criterion) {
    let events = events();
    let bytes: usize = events.iter().map(|(_, b)| b.len()).sum();
    let normalizer = Normalizer::new(&FieldPointers::default());
    let mut g = c.benchmark_group("import");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(15);
    g.measurement_time(Duration::from_secs(12));
    eprintln!("{} events a batch, average {} bytes", events.len(), bytes / events.len());

    let plain_dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(plain_dir.path());
    g.bench_function("plain", |b| {
        b.iter(|| {
            let mut fields = Vec::with_capacity(events.len());
            for (f, e) in &events {
                fields.push(normalizer.parse(e, Some(*f)).expect("valid").1);
            }
            let entries: Vec<NewEntry<'_>> =
                events.iter().map(|(f, e)| NewEntry { stream: "s", format: f.code(), payload: e }).collect();
            log.append(&entries).expect("append");
            fields
        })
    });

    let sealed_dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(sealed_dir.path());
    let mut sealer = Sealer::new(rules(), keys(sealed_dir.path())).expect("sealer");
    // Where the sealed path's time goes, for one batch (after keys exist): the
    // fastest of 7 runs of each step, so other work on the machine counts less.
    {
        let now = stele_store::log::now_ns();
        let _: Vec<_> = events.iter().map(|(f, e)| sealer.seal("s", f.code(), e, now).expect("seal")).collect();
        sealer.sync().expect("sync");
        let fastest = |step: &mut dyn FnMut()| {
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    step();
                    t.elapsed()
                })
                .min()
                .expect("7 runs")
        };
        let mut sealed = Vec::new();
        let seal_time = fastest(&mut || {
            sealed = events.iter().map(|(f, e)| sealer.seal("s", f.code(), e, now).expect("seal")).collect();
        });
        let plain_parse = fastest(&mut || {
            for (f, e) in &events {
                std::hint::black_box(normalizer.parse(e, Some(*f)).ok());
            }
        });
        let sealed_parse = fastest(&mut || {
            for s in sealed.iter().flatten() {
                std::hint::black_box(normalizer.stored_fields(s.format, &s.payload));
            }
        });
        let mut records = vec![CaptureRecord::default(); events.len()];
        let mut plain = Vec::with_capacity(events.len());
        for ((f, e), r) in events.iter().zip(&mut records) {
            plain.push(normalizer.parse_recording(e, Some(*f), r).expect("valid").1);
        }
        let mut fields = plain.clone();
        let mut derived = 0;
        let derive = fastest(&mut || {
            derived = 0;
            for (((f, s), r), n) in events.iter().map(|(f, _)| f).zip(&sealed).zip(&records).zip(&mut fields) {
                if let Some(s) = s
                    && let Some(x) = sealer.replaced(s)
                {
                    derived += usize::from(normalizer.sealed_fields_update(*f, r.view(), &x, &s.payload, n));
                }
            }
        });
        eprintln!(
            "one batch: sealing {:.1} ms, normalizing the events {:.1} ms, normalizing the sealed bodies {:.1} ms, \
             deriving their fields instead {:.1} ms ({derived} of {} derived)",
            seal_time.as_secs_f64() * 1e3,
            plain_parse.as_secs_f64() * 1e3,
            sealed_parse.as_secs_f64() * 1e3,
            derive.as_secs_f64() * 1e3,
            sealed.iter().flatten().count()
        );
    }
    let mut records = vec![CaptureRecord::default(); events.len()];
    g.bench_function("sealed", |b| {
        b.iter(|| {
            let mut fields = Vec::with_capacity(events.len());
            for ((f, e), r) in events.iter().zip(&mut records) {
                fields.push(normalizer.parse_recording(e, Some(*f), r).expect("valid").1);
            }
            let now = stele_store::log::now_ns();
            // As `stele import`: one batch sealer for the batch.
            let sealed: Vec<_> = {
                let mut batch = sealer.batch();
                events.iter().map(|(f, e)| batch.seal("s", f.code(), e, now).expect("seal")).collect()
            };
            sealer.sync().expect("sync");
            let entries: Vec<NewEntry<'_>> = events
                .iter()
                .zip(&sealed)
                .zip(&records)
                .zip(&mut fields)
                .map(|((((f, e), s), r), n)| match s {
                    Some(s) => {
                        // As `stele import`: derived from the event's parse when exact.
                        let derived = sealer
                            .replaced(s)
                            .is_some_and(|x| normalizer.sealed_fields_update(*f, r.view(), &x, &s.payload, n));
                        if !derived {
                            *n = normalizer.stored_fields(s.format, &s.payload);
                        }
                        NewEntry { stream: "s", format: s.format, payload: &s.payload }
                    }
                    None => NewEntry { stream: "s", format: f.code(), payload: e },
                })
                .collect();
            log.append(&entries).expect("append");
            fields
        })
    });
    g.finish();
}

fn erase(c: &mut Criterion) {
    // Enough subjects that every measured call erases a live one (a call for a subject
    // already erased is refused, which would be cheaper and is not counted).
    const SUBJECTS: usize = 40_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open_log(dir.path());
    let rule = SealingRule {
        stream: "s".into(),
        format: None,
        subject: "/actor".into(),
        fields: vec!["/src".into()],
        erasure_wins: false,
        subject_default: None,
    };
    let mut sealer = Sealer::new(vec![rule.clone()], keys(dir.path())).expect("sealer");
    let now = stele_store::log::now_ns();
    for chunk in (0..SUBJECTS).collect::<Vec<_>>().chunks(BATCH) {
        let payloads: Vec<Vec<u8>> = chunk
            .iter()
            .map(|i| {
                let e = format!(
                    r#"{{"actor":"user-{i}@example.com","action":"get","src":"10.0.{}.{}"}}"#,
                    i / 256,
                    i % 256
                );
                sealer.seal("s", 1, e.as_bytes(), now).expect("seal").expect("sealed").payload
            })
            .collect();
        sealer.sync().expect("sync");
        let entries: Vec<NewEntry<'_>> =
            payloads.iter().map(|p| NewEntry { stream: "s", format: 1 | 0x80, payload: p }).collect();
        log.append(&entries).expect("append");
    }
    log.sign_checkpoint().expect("checkpoint");
    drop(sealer);
    let mut index = Index::open(dir.path(), log.reader(), &FieldPointers::default(), true).expect("index");
    index.catch_up().expect("catch up");
    index.flush().expect("flush");
    let mut keys = keys(dir.path());
    let mut next = 0usize;
    let mut g = c.benchmark_group("erase");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("one_subject_of_40k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let subject = format!("user-{next}@example.com");
                next = (next + 1) % SUBJECTS;
                let t = Instant::now();
                index.catch_up().expect("catch up");
                let snap = index.snapshot();
                match stele_erasure::erase(
                    &mut log,
                    &snap,
                    &mut keys,
                    std::slice::from_ref(&rule),
                    &[],
                    &subject,
                    "bench",
                    now,
                ) {
                    Ok(stele_erasure::EraseOutcome::Erased { .. }) => {}
                    other => panic!("{subject}: expected an erasure, got {other:?}"),
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    eprintln!("{} keys left in the store", keys.store().len());
}

criterion_group!(benches, import, erase);
criterion_main!(benches);
