//! The log against a reference model, driven by the input: each byte picks an
//! operation — append a batch, sign a checkpoint, make the next syncs fail then append
//! (and recover without restarting), cut the power (keeping a torn part of what was not
//! synced) and reopen, or prove an entry. After each, every acknowledged entry reads
//! back byte for byte, the newest checkpoint never goes back and verifies, inclusion
//! and consistency proofs verify against it, and nothing is acknowledged after a failed
//! sync until recovery.

use std::sync::Arc;

use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend};
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::merkle::{verify_consistency, verify_inclusion};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "model.example/log";

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[3; 32]).expect("a valid key")
}

fn open(mem: &MemoryBackend) -> Log {
    let options = LogOptions { segment_window_ns: 1, segment_max_bytes: 4_000, ..LogOptions::default() };
    Log::open_backend(Arc::new(mem.clone()), ORIGIN, signer(), options).expect("a log the model wrote reopens")
}

fn append(log: &mut Log, acked: &mut Vec<(u64, Vec<u8>)>, n: u8, len: u8, counter: &mut u64) -> bool {
    let batch: Vec<Vec<u8>> = (0..=n % 8)
        .map(|_| {
            *counter += 1;
            format!("{{\"n\":{counter},\"pad\":\"{}\"}}", "x".repeat(usize::from(len))).into_bytes()
        })
        .collect();
    let entries: Vec<NewEntry<'_>> =
        batch.iter().enumerate().map(|(i, p)| NewEntry { stream: ["s", "t"][i % 2], format: 1, payload: p }).collect();
    match log.append(&entries) {
        Ok(done) => {
            acked.extend(done.indexes.into_iter().zip(batch));
            true
        }
        Err(_) => false,
    }
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let mut mem = MemoryBackend::new();
    init_backend(&(Arc::new(mem.clone()) as Arc<dyn Backend>), ORIGIN).expect("init");
    let mut log = open(&mem);
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut checkpoint = (0u64, stele_tlog::hash::Hash([0; 32]));
    let mut counter = 0u64;
    let verifier = signer().verifier();
    for op in data.chunks(3).take(64) {
        let [kind, a, b] = *op else { break };
        match kind % 5 {
            0 => {
                assert!(append(&mut log, &mut acked, a, b, &mut counter), "an append failed without a fault");
            }
            1 => {
                if let Some(cp) = log.sign_checkpoint().expect("a checkpoint without a fault") {
                    assert!(cp.tree_size >= checkpoint.0);
                }
            }
            2 => {
                mem.fail_syncs_from(u64::from(a % 4));
                let before = log.tree_size();
                if !append(&mut log, &mut acked, a, b, &mut counter) {
                    assert_eq!(log.reader().tree_size(), before, "a failed append left entries visible");
                    let mut retry = Vec::new();
                    assert!(!append(&mut log, &mut retry, 0, 0, &mut counter), "acknowledged after a failed sync");
                    mem.fail_syncs_from(u64::MAX);
                    log.recover_after_failure().expect("recovery once syncs work again");
                }
                mem.fail_syncs_from(u64::MAX);
            }
            3 => {
                drop(log);
                mem = mem.crash_image(Some(u64::from(a) << 8 | u64::from(b)));
                log = open(&mem);
            }
            _ => {}
        }
        // The model's properties.
        let reader = log.reader();
        for (i, p) in &acked {
            let e = reader.entry(*i).expect("an acknowledged entry reads");
            assert_eq!(&e.payload, p, "entry {i} changed");
        }
        if let Some(cp) = reader.newest_checkpoint() {
            let v = open_checkpoint(cp.note.as_bytes(), &verifier).expect("the newest checkpoint verifies");
            let (size, root) = (v.checkpoint.tree_size, v.checkpoint.root_hash);
            assert!(size >= checkpoint.0, "the checkpoint went back from {} to {size}", checkpoint.0);
            if checkpoint.0 > 0 {
                let proof = reader.consistency_proof(checkpoint.0, size).expect("a consistency proof");
                verify_consistency(checkpoint.0, size, &checkpoint.1, &root, &proof).expect("consistent");
            }
            checkpoint = (size, root);
            if let Some((i, _)) = acked.iter().filter(|(i, _)| *i < size).nth(usize::from(b)) {
                let proof = reader.inclusion_proof(*i, size).expect("an inclusion proof");
                let leaf = reader.leaf_hash(*i).expect("a leaf hash");
                verify_inclusion(*i, size, &leaf, &proof, &root).expect("included");
            }
        }
    }
}
