//! Checkpoint history: thinning keeps the recent window, one per period before it,
//! the first and the newest, and the log still opens and verifies afterwards —
//! also after a power cut in the middle of a thinning pass.

use std::sync::Arc;

use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend, now_ns};
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "thin.example/log";

fn open(b: &MemoryBackend) -> Log {
    let opts = LogOptions {
        checkpoint_keep_all_ns: 1_000_000_000,
        checkpoint_keep_every_ns: 3_600 * 1_000_000_000,
        ..LogOptions::default()
    };
    Log::open_backend(Arc::new(b.clone()), ORIGIN, NoteSigner::from_seed(ORIGIN, &[3; 32]).unwrap(), opts).unwrap()
}

#[test]
fn thinning_keeps_first_newest_and_one_per_period() {
    let b = MemoryBackend::new();
    init_backend(&(Arc::new(b.clone()) as Arc<dyn Backend>), ORIGIN).unwrap();
    let mut log = open(&b);
    for i in 0..10 {
        let p = format!("{{\"i\":{i}}}");
        log.append(&[NewEntry { stream: "default", format: 1, payload: p.as_bytes() }]).unwrap();
        log.sign_checkpoint().unwrap().unwrap();
    }
    assert_eq!(log.reader().checkpoints().unwrap().len(), 10);
    // Ten minutes later nothing is inside the 1 s keep-all window; all ten were signed
    // within one or two hourly periods.
    let removed = log.thin_checkpoints(now_ns() + 600 * 1_000_000_000).unwrap();
    let kept = log.reader().checkpoints().unwrap();
    assert_eq!(removed + kept.len(), 10);
    assert!(kept.len() <= 3, "kept {}", kept.len());
    assert_eq!(kept.first().unwrap().tree_size, 2);
    assert_eq!(kept.last().unwrap().tree_size, 11);
    let crash = b.crash_image(None);
    drop(log);
    for image in [b.clone(), crash] {
        let log = open(&image);
        assert_eq!(log.newest_checkpoint().unwrap().tree_size, 11);
        let report = verify(&log.reader(), &VerifyOptions::default()).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.checkpoints as usize, kept.len());
    }
}

#[test]
fn losing_the_newest_checkpoint_is_detected_on_open() {
    let b = MemoryBackend::new();
    init_backend(&(Arc::new(b.clone()) as Arc<dyn Backend>), ORIGIN).unwrap();
    let mut log = open(&b);
    let mut sizes = Vec::new();
    for i in 0..3 {
        let p = format!("{{\"i\":{i}}}");
        log.append(&[NewEntry { stream: "default", format: 1, payload: p.as_bytes() }]).unwrap();
        let cp = log.sign_checkpoint().unwrap().unwrap();
        sizes.push((cp.tree_size, cp.offset));
    }
    drop(log);
    // Cut the last checkpoint record off checkpoints.dat.
    let mut bytes = b.file_bytes("checkpoints.dat").unwrap();
    bytes.truncate(sizes[2].1 as usize);
    b.set_file_bytes("checkpoints.dat", bytes);
    let signer = NoteSigner::from_seed(ORIGIN, &[3; 32]).unwrap();
    let err = Log::open_backend(Arc::new(b.clone()), ORIGIN, signer, LogOptions::default()).err().expect("must refuse");
    assert!(err.to_string().contains("checkpoint of tree size 4"), "{err}");
}
