//! Deleting whole segments under retention: proofs survive, `verify` reports each
//! deletion with its record, and a payload missing any other way is tampering.

use std::sync::Arc;
use std::time::Duration;

use stele_store::backend::{Backend, MemoryBackend};
use stele_store::log::{Log, LogOptions, NewEntry, init_backend, now_ns};
use stele_store::retention::{DeletionRecord, SegmentSummary, segment_summaries};
use stele_store::verify::{VerifyOptions, verify};
use stele_store::{LogReader, StoreError};
use stele_tlog::merkle::{verify_consistency, verify_inclusion};
use stele_tlog::note::NoteSigner;

const ORIGIN: &str = "retention.example/log";
/// 40 ms segment windows: a few sleeps give several sealed segments per stream.
const WINDOW_NS: u64 = 40_000_000;

fn open(b: &MemoryBackend) -> Log {
    let opts = LogOptions { segment_window_ns: WINDOW_NS, ..LogOptions::default() };
    Log::open_backend(Arc::new(b.clone()), ORIGIN, NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap(), opts).unwrap()
}

/// A log with entries of streams `a` and `b` over at least four windows.
fn build() -> (MemoryBackend, Log) {
    let b = MemoryBackend::new();
    init_backend(&(Arc::new(b.clone()) as Arc<dyn Backend>), ORIGIN).unwrap();
    let mut log = open(&b);
    for round in 0..4 {
        for i in 0..5 {
            let pa = format!("{{\"stream\":\"a\",\"round\":{round},\"i\":{i}}}");
            let pb = format!("{{\"stream\":\"b\",\"round\":{round},\"i\":{i}}}");
            log.append(&[
                NewEntry { stream: "a", format: 1, payload: pa.as_bytes() },
                NewEntry { stream: "b", format: 1, payload: pb.as_bytes() },
            ])
            .unwrap();
        }
        std::thread::sleep(Duration::from_nanos(WINDOW_NS + 5_000_000));
    }
    log.sign_checkpoint().unwrap();
    (b, log)
}

fn record_for(s: &SegmentSummary, min_s: u64) -> DeletionRecord {
    DeletionRecord {
        kind: "deletion".into(),
        segment: s.segno,
        stream: s.stream.clone(),
        entries: s.entries,
        ranges: s.ranges.clone(),
        oldest_received_ns: s.oldest_received_ns,
        newest_received_ns: s.newest_received_ns,
        policy: s.stream.clone(),
        min_retention_seconds: min_s,
        max_retention_seconds: 0,
        mode: "governance".into(),
        deleted_ns: now_ns(),
    }
}

fn sealed(reader: &LogReader, stream: &str) -> Vec<SegmentSummary> {
    segment_summaries(reader).unwrap().into_iter().filter(|s| s.stream == stream && !s.open).collect()
}

#[test]
fn deleting_a_segment_keeps_every_proof_and_is_reported_by_verify() {
    let (b, mut log) = build();
    let reader = log.reader();
    let target = sealed(&reader, "a").remove(0);
    assert!(target.entries >= 5, "{target:?}");
    let (old_size, old_root) = (reader.tree_size(), reader.root_hash(reader.tree_size()).unwrap());
    let record_index = log.delete_segment(target.segno, &record_for(&target, 0)).unwrap();
    log.sign_checkpoint().unwrap();

    let reader = log.reader();
    let n = reader.tree_size();
    let new_root = reader.root_hash(n).unwrap();
    for &(first, last) in &target.ranges {
        for i in first..=last {
            match reader.entry(i) {
                Err(StoreError::Deleted { index, segment, record }) => {
                    assert_eq!((index, segment, record), (i, target.segno, record_index));
                }
                other => panic!("entry {i}: {other:?}"),
            }
            // The leaf and its inclusion proof are untouched.
            let leaf_hash = reader.leaf_hash(i).unwrap();
            let proof = reader.inclusion_proof(i, n).unwrap();
            verify_inclusion(i, n, &leaf_hash, &proof, &new_root).unwrap();
        }
    }
    // The tree only grew: the tree before the deletion is consistent with the one after.
    let proof = reader.consistency_proof(old_size, n).unwrap();
    verify_consistency(old_size, n, &old_root, &new_root, &proof).unwrap();
    // Entries of other segments read as before.
    let other = sealed(&reader, "b").remove(0);
    assert!(reader.entry(other.ranges[0].0).is_ok());

    let report = verify(&reader, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.deletions.len(), 1);
    assert_eq!(report.deletions[0].record_index, record_index);
    assert_eq!(report.deletions[0].record.ranges, target.ranges);
    let text = report.deletions[0].to_string();
    assert!(text.contains(&format!("recorded at entry {record_index}")), "{text}");

    // Reopening (recovery) and appending more keeps it verifiable.
    drop(log);
    let mut log = open(&b);
    log.append(&[NewEntry { stream: "a", format: 1, payload: b"{\"after\":true}" }]).unwrap();
    log.sign_checkpoint().unwrap();
    let report = verify(&log.reader(), &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.deletions.len(), 1);
}

#[test]
fn a_segment_removed_without_a_record_is_tampering() {
    let (b, log) = build();
    let reader = log.reader();
    let target = sealed(&reader, "b").remove(0);
    drop(log);
    b.remove(&stele_store::layout::segment(target.segno)).unwrap();
    let reader = LogReader::open_backend(
        Arc::new(b.clone()),
        ORIGIN,
        NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap().verifier(),
    )
    .unwrap();
    let report = verify(&reader, &VerifyOptions::default()).unwrap();
    assert!(!report.ok());
    assert!(report.deletions.is_empty());
    let first = target.ranges[0].0;
    assert!(
        report.problems.iter().any(|p| p.index == Some(first) && p.location.contains(&format!("{:010}", target.segno))),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_deletion_pointing_at_a_record_that_is_not_one_is_tampering() {
    let (_b, log) = build();
    let reader = log.reader();
    let target = sealed(&reader, "a").remove(0);
    // Claim the removal is authorised by an ordinary entry, then remove the file.
    reader.files().record_deletion(target.segno, 0).unwrap();
    reader.files().backend.remove(&stele_store::layout::segment(target.segno)).unwrap();
    let report = verify(&reader, &VerifyOptions::default()).unwrap();
    assert!(report.problems.iter().any(|p| p.what.contains("not a deletion record")), "{:?}", report.problems);
}

#[test]
fn deletions_that_break_the_rules_are_refused() {
    let (_b, mut log) = build();
    let reader = log.reader();
    let target = sealed(&reader, "a").remove(0);
    // Before the minimum retention (one day after the newest entry).
    let early = record_for(&target, 86_400);
    assert!(matches!(log.delete_segment(target.segno, &early), Err(StoreError::SegmentNotDeletable { .. })));
    // A record for another segment.
    let other = sealed(&reader, "b").remove(0);
    assert!(matches!(
        log.delete_segment(target.segno, &record_for(&other, 0)),
        Err(StoreError::SegmentNotDeletable { .. })
    ));
    // Entries not covered by a checkpoint yet: a fresh segment in a new window.
    log.append(&[NewEntry { stream: "c", format: 1, payload: b"{}" }]).unwrap();
    let fresh = segment_summaries(&log.reader()).unwrap().into_iter().find(|s| s.stream == "c").unwrap();
    assert!(matches!(
        log.delete_segment(fresh.segno, &record_for(&fresh, 0)),
        Err(StoreError::SegmentNotDeletable { .. })
    ));
    // Still open: its window has not ended.
    log.sign_checkpoint().unwrap();
    let err = log.delete_segment(fresh.segno, &record_for(&fresh, 0));
    if fresh.open && now_ns() < fresh.oldest_received_ns - fresh.oldest_received_ns % WINDOW_NS + WINDOW_NS {
        assert!(matches!(err, Err(StoreError::SegmentNotDeletable { .. })), "{err:?}");
    }
    // Nothing was removed by the refusals.
    assert!(log.reader().entry(target.ranges[0].0).is_ok());
    let report = verify(&log.reader(), &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn an_interrupted_deletion_is_finished_by_the_next_pass() {
    let (b, mut log) = build();
    let reader = log.reader();
    let target = sealed(&reader, "a").remove(0);
    let index = log.delete_segment(target.segno, &record_for(&target, 0)).unwrap();
    // Put the file back, as if the crash came before its removal.
    drop(log);
    let seg = stele_store::layout::segment(target.segno);
    b.set_file_bytes(&seg, vec![0u8; 64]);
    let mut log = open(&b);
    let report = verify(&log.reader(), &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.notes.iter().any(|n| n.contains("interrupted deletion")), "{:?}", report.notes);
    assert_eq!(log.delete_segment(target.segno, &record_for(&target, 0)).unwrap(), index);
    assert!(!b.exists(&seg));
}

/// A reopened writer whose newest checkpoint is older than its last entry writes the
/// recovery anchor for a deletion; the log must open again afterwards (the anchor once
/// recorded the recovered size against the older checkpoint, and the next open refused
/// it as a missing checkpoint).
#[test]
fn a_deletion_after_reopening_past_the_newest_checkpoint_leaves_a_log_that_opens() {
    let (b, log) = build();
    drop(log);
    let mut log = open(&b);
    log.append(&[NewEntry { stream: "b", format: 1, payload: b"{\"after\":\"the checkpoint\"}" }]).unwrap();
    drop(log);
    let mut log = open(&b);
    let covered = log.newest_checkpoint().unwrap().tree_size;
    assert!(log.tree_size() > covered, "the last entry is past the newest checkpoint");
    // Stream `a`'s last segment is still open, its window over: deleting it seals it
    // in a new recovery anchor.
    let summaries = segment_summaries(&log.reader()).unwrap();
    let target = summaries.into_iter().rfind(|s| s.stream == "a").unwrap();
    assert!(target.open, "the target segment is still open");
    log.delete_segment(target.segno, &record_for(&target, 0)).unwrap();
    drop(log);
    let log = Log::open_backend(
        Arc::new(b.clone()),
        ORIGIN,
        NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap(),
        LogOptions { segment_window_ns: WINDOW_NS, ..LogOptions::default() },
    )
    .expect("the log opens after a deletion written by a reopened writer");
    let report = verify(&log.reader(), &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
