//! One long-lived set of keys (as a running server holds) erasing subjects while
//! holds are placed and released: the erasure records and holds it reads
//! incrementally must see what was appended after its first read.

use stele_erasure::{EraseOutcome, ErasureError, KeyStore, Keys, MasterKey, Sealer, SealingRule};
use stele_formats::FieldPointers;
use stele_index::Index;
use stele_retention::{HoldFilters, HoldRecord, ReleaseRecord};
use stele_store::log::{FORMAT_STELE_RECORD, Log, LogOptions, NewEntry, init};
use stele_store::streams::RETENTION_STREAM;

fn keys(dir: &std::path::Path) -> Keys {
    Keys::with(MasterKey::from_bytes(&[9; 32]), KeyStore::open(dir, true).unwrap())
}

fn rule() -> SealingRule {
    SealingRule {
        stream: "s".into(),
        format: None,
        subject: "/actor".into(),
        fields: vec![],
        erasure_wins: false,
        subject_default: None,
    }
}

fn record(log: &mut Log, payload: &[u8]) {
    log.append(&[NewEntry { stream: RETENTION_STREAM, format: FORMAT_STELE_RECORD, payload }]).unwrap();
}

#[test]
fn a_long_lived_keys_sees_holds_and_erasures_appended_after_its_first_read() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "erase.example/log").unwrap();
    let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut sealer = Sealer::new(vec![rule()], keys(dir.path())).unwrap();
    let payloads: Vec<Vec<u8>> = ["alice", "bob", "carol"]
        .iter()
        .map(|who| {
            sealer.seal("s", 1, format!(r#"{{"actor":"{who}","action":"get"}}"#).as_bytes(), 0).unwrap().unwrap()
        })
        .map(|s| s.payload)
        .collect();
    sealer.sync().unwrap();
    drop(sealer);
    let entries: Vec<NewEntry<'_>> =
        payloads.iter().map(|p| NewEntry { stream: "s", format: 0x81, payload: p }).collect();
    log.append(&entries).unwrap();
    let mut index = Index::open(dir.path(), log.reader(), &FieldPointers::default(), true).unwrap();
    let mut keys = keys(dir.path());
    let rules = [rule()];
    let erase = |log: &mut Log, index: &mut Index, keys: &mut Keys, who: &str| {
        index.catch_up().unwrap();
        stele_erasure::erase(log, &index.snapshot(), keys, &rules, &[], who, "request", 1)
    };

    assert!(matches!(erase(&mut log, &mut index, &mut keys, "alice"), Ok(EraseOutcome::Erased { .. })));
    // A hold placed after the keys' first read defers the next erasure.
    let hold = HoldRecord {
        kind: "hold".into(),
        case: "C-7".into(),
        reason: "litigation".into(),
        stream: Some("s".into()),
        since_ns: None,
        until_ns: None,
        filters: HoldFilters::default(),
        placed_ns: 2,
    };
    record(&mut log, &hold.encode());
    let pending = erase(&mut log, &mut index, &mut keys, "bob");
    let Ok(EraseOutcome::Pending { index: request, blocked_by }) = pending else { panic!("{pending:?}") };
    assert_eq!(blocked_by, vec!["hold:C-7".to_string()]);
    // The request appended after the last read is found by the next one.
    assert!(
        matches!(erase(&mut log, &mut index, &mut keys, "bob"), Ok(EraseOutcome::AlreadyPending { index }) if index == request)
    );
    index.catch_up().unwrap();
    assert!(
        stele_erasure::carry_out_pending(&mut log, &index.snapshot(), &mut keys, &rules, &[], 3).unwrap().is_empty()
    );
    // Released: the pending erasure is carried out; erased subjects stay erased.
    let release =
        ReleaseRecord { kind: "hold_release".into(), case: "C-7".into(), reason: "closed".into(), released_ns: 4 };
    record(&mut log, &serde_json::to_vec(&release).unwrap());
    index.catch_up().unwrap();
    let done = stele_erasure::carry_out_pending(&mut log, &index.snapshot(), &mut keys, &rules, &[], 5).unwrap();
    assert_eq!(done.len(), 1);
    for who in ["alice", "bob"] {
        assert!(matches!(erase(&mut log, &mut index, &mut keys, who), Err(ErasureError::NoSuchSubject)), "{who}");
    }
    assert!(matches!(erase(&mut log, &mut index, &mut keys, "carol"), Ok(EraseOutcome::Erased { .. })));
}
