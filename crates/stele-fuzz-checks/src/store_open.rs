//! Opening a damaged data directory. A small valid log (three streams, several
//! commits and checkpoints, a segment deleted by retention) is built once in memory;
//! each input damages one of its files — overwrites bytes at an offset, truncates it,
//! inserts bytes, or removes it — then opens it read-only and as the writer (both run
//! recovery) and verifies it. Nothing may panic, and tampering may not go unseen: when
//! `verify` reports nothing wrong, every entry under the newest checkpoint that reads
//! must read back exactly the bytes that were appended.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use stele_store::LogReader;
use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend};
use stele_store::retention::{DeletionRecord, segment_summaries};
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::note::{NoteSigner, NoteVerifier};

const ORIGIN: &str = "fuzz.example/log";

struct Fixture {
    files: BTreeMap<String, Vec<u8>>,
    payloads: BTreeMap<u64, Vec<u8>>,
    verifier: NoteVerifier,
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[9; 32]).expect("a valid key")
}

fn options() -> LogOptions {
    LogOptions { segment_window_ns: 1, ..LogOptions::default() }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mem = MemoryBackend::new();
        init_backend(&(Arc::new(mem.clone()) as Arc<dyn Backend>), ORIGIN).expect("init");
        let mut log = Log::open_backend(Arc::new(mem.clone()), ORIGIN, signer(), options()).expect("open");
        let mut payloads = BTreeMap::new();
        for round in 0..4u32 {
            let batch: Vec<(String, Vec<u8>)> = (0..5u32)
                .map(|i| {
                    (["a", "b", "c"][(i % 3) as usize].to_string(), format!("{{\"r\":{round},\"i\":{i}}}").into_bytes())
                })
                .collect();
            let entries: Vec<NewEntry<'_>> =
                batch.iter().map(|(s, p)| NewEntry { stream: s, format: 1, payload: p }).collect();
            let done = log.append(&entries).expect("append");
            for ((_, p), i) in batch.iter().zip(done.indexes) {
                payloads.insert(i, p.clone());
            }
            log.sign_checkpoint().expect("checkpoint");
        }
        let s = segment_summaries(&log.reader()).expect("summaries").into_iter().find(|s| s.stream == "c" && !s.open);
        if let Some(s) = s {
            let record = DeletionRecord {
                kind: "deletion".into(),
                segment: s.segno,
                stream: s.stream.clone(),
                entries: s.entries,
                ranges: s.ranges.clone(),
                oldest_received_ns: s.oldest_received_ns,
                newest_received_ns: s.newest_received_ns,
                policy: "c".into(),
                min_retention_seconds: 0,
                max_retention_seconds: 0,
                mode: "governance".into(),
                deleted_ns: s.newest_received_ns,
            };
            log.delete_segment(s.segno, &record).expect("deletion");
            for &(first, last) in &s.ranges {
                for i in first..=last {
                    payloads.remove(&i);
                }
            }
            log.sign_checkpoint().expect("checkpoint");
        }
        drop(log);
        let image = mem.crash_image(None);
        let files =
            image.file_names().into_iter().map(|n| (n.clone(), image.file_bytes(&n).unwrap_or_default())).collect();
        Fixture { files, payloads, verifier: signer().verifier() }
    })
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let [file, mode, o0, o1, o2, rest @ ..] = data else { return };
    let f = fixture();
    let names: Vec<&String> = f.files.keys().collect();
    let name = names[usize::from(*file) % names.len()].clone();
    let mem = MemoryBackend::new();
    for (n, bytes) in &f.files {
        if *n != name {
            mem.set_file_bytes(n, bytes.clone());
        }
    }
    let mut bytes = f.files[&name].clone();
    let offset = (usize::from(*o0) | usize::from(*o1) << 8 | usize::from(*o2) << 16) % (bytes.len() + 1);
    match mode % 4 {
        0 => {
            let end = (offset + rest.len()).min(bytes.len());
            bytes[offset..end].copy_from_slice(&rest[..end - offset]);
        }
        1 => bytes.truncate(offset),
        2 => {
            bytes.splice(offset..offset, rest.iter().copied());
        }
        _ => bytes.clear(),
    }
    let removed = mode % 4 == 3 && rest.first().is_some_and(|b| b & 1 == 1);
    if !removed {
        mem.set_file_bytes(&name, bytes);
    }
    let backend: Arc<dyn Backend> = Arc::new(mem.crash_image(None));
    if let Ok(reader) = LogReader::open_backend(backend.clone(), ORIGIN, f.verifier.clone()) {
        check_reader(&reader, f);
    }
    if let Ok(log) = Log::open_backend(backend, ORIGIN, signer(), options()) {
        check_reader(&log.reader(), f);
    }
}

fn check_reader(reader: &LogReader, f: &Fixture) {
    let Ok(report) = verify(reader, &VerifyOptions::default()) else { return };
    if !report.ok() {
        return;
    }
    let covered = reader.newest_checkpoint().map_or(0, |c| c.tree_size);
    for (&i, want) in f.payloads.range(..covered) {
        if let Ok(e) = reader.entry(i) {
            assert_eq!(&e.payload, want, "verify passed but entry {i} reads other bytes");
        }
    }
}
