//! Crash simulation on the in-memory backend: random group commits, a sync that fails
//! part-way through a commit, and a power cut that keeps a random part of the unsynced
//! bytes (torn writes included). After each reopen every acknowledged entry must be
//! present and byte-exact, the newest checkpoint must not go back, and a full
//! verification must pass. Each round prints nothing unless it fails; the seed of a
//! failing round is in the panic message so it replays.
//!
//! `STELE_CRASH_ROUNDS` sets the number of rounds (default 200).

use std::sync::Arc;

use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend};
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "crash.example/log";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[42; 32]).unwrap()
}

fn options(rng: &mut Rng) -> LogOptions {
    LogOptions {
        // Small windows and segments so rounds cross segment boundaries.
        segment_window_ns: if rng.below(2) == 0 { 1 } else { u64::MAX / 2 },
        segment_max_bytes: 2_000 + rng.below(20_000),
        ..LogOptions::default()
    }
}

fn payload(rng: &mut Rng, n: u64) -> Vec<u8> {
    let len = rng.below(600) as usize;
    let mut p = format!("{{\"n\":{n},\"pad\":\"").into_bytes();
    while p.len() < len {
        p.push(b'a' + (rng.below(26) as u8));
    }
    p.extend_from_slice(b"\"}");
    p
}

fn round(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let backend = MemoryBackend::new();
    init_backend(&(Arc::new(backend.clone()) as Arc<dyn Backend>), ORIGIN).unwrap();
    // acknowledged[i] = (stream, payload) of user entries by index.
    let mut acked: Vec<(u64, String, Vec<u8>)> = Vec::new();
    let mut newest_checkpoint = 0u64;
    let mut current = backend;
    let mut counter = 0u64;
    for _restart in 0..3 {
        let mut log = Log::open_backend(Arc::new(current.clone()), ORIGIN, signer(), options(&mut rng))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        assert!(log.tree_size() >= newest_checkpoint, "seed {seed}: tree shrank below a checkpoint");
        let reader = log.reader();
        for (index, stream, p) in &acked {
            let e =
                reader.entry(*index).unwrap_or_else(|e| panic!("seed {seed}: acknowledged entry {index} lost: {e}"));
            assert_eq!(&e.payload, p, "seed {seed}: entry {index} changed");
            assert_eq!(&e.stream, stream, "seed {seed}: entry {index} stream changed");
        }
        if let Some(cp) = log.newest_checkpoint() {
            assert!(cp.tree_size >= newest_checkpoint, "seed {seed}: checkpoint went back");
        }
        let report = verify(&reader, &VerifyOptions::default()).unwrap();
        assert!(report.ok(), "seed {seed}: verify after reopen: {:?}", report.problems);

        // Some commits, then one that fails at a random sync, then a power cut.
        let commits = 1 + rng.below(6);
        for c in 0..=commits {
            let failing = c == commits;
            if failing {
                current.fail_syncs_from(1 + rng.below(6));
            }
            let count = 1 + rng.below(40);
            let streams = ["default", "k8s", "app/payments"];
            let batch: Vec<(String, Vec<u8>)> = (0..count)
                .map(|_| {
                    counter += 1;
                    (streams[rng.below(3) as usize].to_string(), payload(&mut rng, counter))
                })
                .collect();
            let entries: Vec<NewEntry<'_>> =
                batch.iter().map(|(s, p)| NewEntry { stream: s, format: 1, payload: p }).collect();
            match log.append(&entries) {
                Ok(done) => {
                    for ((s, p), i) in batch.iter().zip(&done.indexes) {
                        acked.push((*i, s.clone(), p.clone()));
                    }
                    if !failing && rng.below(2) == 0 {
                        let cp = log.sign_checkpoint().unwrap();
                        if let Some(cp) = cp {
                            newest_checkpoint = cp.tree_size;
                        }
                    }
                }
                Err(e) => {
                    assert!(failing, "seed {seed}: append failed without an injected fault: {e}");
                    // After a failed sync nothing more is acknowledged.
                    assert!(log.append(&entries).is_err(), "seed {seed}: append accepted after a failed sync");
                    assert!(log.sign_checkpoint().is_err(), "seed {seed}: checkpoint signed after a failed sync");
                }
            }
        }
        drop(log);
        current = current.crash_image(Some(rng.next()));
    }
}

#[test]
fn every_acknowledged_entry_survives_power_cuts() {
    let rounds: u64 = std::env::var("STELE_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    for seed in 0..rounds {
        round(seed);
    }
    eprintln!("{rounds} crash rounds, 3 power cuts each: every acknowledged entry survived and verified");
}
