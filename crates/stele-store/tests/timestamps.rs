//! `timestamps.dat`: durable appends, torn tails, damage in the middle, and what
//! `verify` says about each.

use std::sync::Arc;

use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend};
use stele_store::reader::LogReader;
use stele_store::timestamps::{self, TimestampRecord};
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "example.com/log";

fn log_with_entries(backend: &Arc<MemoryBackend>) -> Log {
    init_backend(&(backend.clone() as Arc<dyn Backend>), ORIGIN).unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap();
    let mut log = Log::open_backend(backend.clone(), ORIGIN, signer, LogOptions::default()).unwrap();
    log.append(&[NewEntry { stream: "s", format: 1, payload: b"{}" }]).unwrap();
    log.sign_checkpoint().unwrap();
    log
}

fn record(n: u64, token: &[u8]) -> TimestampRecord {
    TimestampRecord {
        tree_size: n,
        obtained_ns: 1_700_000_000_000_000_000 + n,
        tsa: "http://tsa.example/".into(),
        token: token.to_vec(),
    }
}

fn reader_of(backend: &Arc<MemoryBackend>) -> LogReader {
    let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap();
    LogReader::open_backend(backend.clone(), ORIGIN, signer.verifier()).unwrap()
}

#[test]
fn records_round_trip_and_survive_reopen() {
    let backend = Arc::new(MemoryBackend::new());
    let log = log_with_entries(&backend);
    let files = log.reader();
    let a = timestamps::append(files.files(), &record(2, b"token-a")).unwrap();
    let b = timestamps::append(files.files(), &record(2, b"token-b")).unwrap();
    assert!(b > a);
    let image = backend.crash_image(None);
    let image = Arc::new(image);
    let r = reader_of(&image);
    let stored = timestamps::read(r.files()).unwrap();
    assert_eq!(stored.records, vec![(a, record(2, b"token-a")), (b, record(2, b"token-b"))]);
    assert_eq!(timestamps::read_at(r.files(), b).unwrap(), record(2, b"token-b"));
    let report = verify(&r, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.timestamps.len(), 2);
}

#[test]
fn a_torn_last_record_is_a_note_and_is_overwritten() {
    let backend = Arc::new(MemoryBackend::new());
    let log = log_with_entries(&backend);
    timestamps::append(log.reader().files(), &record(2, b"token-a")).unwrap();
    let second = timestamps::append(log.reader().files(), &record(2, b"token-b")).unwrap();
    let mut bytes = backend.file_bytes("timestamps.dat").unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff; // the last token byte: its CRC fails
    backend.set_file_bytes("timestamps.dat", bytes);
    let r = reader_of(&backend);
    let report = verify(&r, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.notes.iter().any(|n| n.contains(&format!("timestamps.dat offset {second}"))), "{:?}", report.notes);
    // The next append replaces it.
    let again = timestamps::append(log.reader().files(), &record(2, b"token-c")).unwrap();
    assert_eq!(again, second);
    let stored = timestamps::read(r.files()).unwrap();
    assert_eq!(stored.records.len(), 2);
    assert_eq!(stored.torn_tail, None);
}

#[test]
fn a_damaged_record_before_others_fails_verify_and_is_kept() {
    let backend = Arc::new(MemoryBackend::new());
    let log = log_with_entries(&backend);
    let first = timestamps::append(log.reader().files(), &record(2, b"token-a")).unwrap();
    timestamps::append(log.reader().files(), &record(2, b"token-b")).unwrap();
    let mut bytes = backend.file_bytes("timestamps.dat").unwrap();
    bytes[first as usize + 8 + 20] ^= 0x01; // inside the first record's URL
    backend.set_file_bytes("timestamps.dat", bytes);
    let r = reader_of(&backend);
    let report = verify(&r, &VerifyOptions::default()).unwrap();
    assert!(!report.ok());
    let p = report.problems[0].to_string();
    assert!(
        p.contains(&format!("timestamps.dat offset {first}")) && p.contains("CRC") && p.contains("tree size 2"),
        "{p}"
    );
    // An append does not overwrite it or the valid record after it.
    timestamps::append(log.reader().files(), &record(2, b"token-c")).unwrap();
    let stored = timestamps::read(r.files()).unwrap();
    assert_eq!(stored.damaged.len(), 1);
    assert_eq!(stored.records.len(), 2);
}

#[test]
fn a_token_beyond_the_log_fails_verify() {
    let backend = Arc::new(MemoryBackend::new());
    let log = log_with_entries(&backend);
    timestamps::append(log.reader().files(), &record(99, b"token")).unwrap();
    let report = verify(&reader_of(&backend), &VerifyOptions::default()).unwrap();
    assert!(report.problems.iter().any(|p| p.what.contains("tree size 99")), "{:?}", report.problems);
}

/// A clock that jumps back: received times stay monotonic, entries keep their order,
/// and the jump is reported once per episode.
#[test]
fn a_clock_that_steps_back_is_reported_once_and_never_reorders() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use stele_store::clock::{Clock, ClockBackwards};
    let now = Arc::new(AtomicU64::new(1_800_000_000_000_000_000));
    let c = now.clone();
    let options = LogOptions { clock: Clock::from_fn(move || c.load(Ordering::SeqCst)), ..LogOptions::default() };
    let backend = Arc::new(MemoryBackend::new());
    init_backend(&(backend.clone() as Arc<dyn Backend>), ORIGIN).unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap();
    let mut log = Log::open_backend(backend.clone(), ORIGIN, signer, options).unwrap();
    let e = |log: &mut Log| log.append(&[NewEntry { stream: "s", format: 1, payload: b"{}" }]).unwrap();
    let first = e(&mut log);
    assert_eq!(first.received_ns, 1_800_000_000_000_000_000);
    // Half a second back: within the tolerance, not reported.
    now.store(1_800_000_000_000_000_000 - 500_000_000, Ordering::SeqCst);
    e(&mut log);
    assert!(log.take_clock_backwards().is_empty());
    // An hour back: reported once, however many commits follow in the episode.
    let back = 1_800_000_000_000_000_000 - 3_600_000_000_000;
    now.store(back, Ordering::SeqCst);
    let a = e(&mut log);
    let b = e(&mut log);
    assert_eq!(
        log.take_clock_backwards(),
        vec![ClockBackwards { from_ns: 1_800_000_000_000_000_000, to_ns: back, jump_ns: 3_600_000_000_000 }]
    );
    assert!(a.received_ns == 1_800_000_000_000_000_000 && b.received_ns == a.received_ns);
    assert!(b.indexes[0] > a.indexes[0]);
    // The clock catches up, then steps back again: a second episode.
    now.store(1_800_000_000_000_000_000 + 10, Ordering::SeqCst);
    e(&mut log);
    now.store(1_800_000_000_000_000_000 - 5_000_000_000, Ordering::SeqCst);
    e(&mut log);
    assert_eq!(log.take_clock_backwards().len(), 1);
    assert_eq!(log.clock_backwards_total(), 2);
    log.sign_checkpoint().unwrap();
    let report = verify(&reader_of(&backend), &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "received times never decrease: {:?}", report.problems);
}
