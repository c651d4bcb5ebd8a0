//! The audit of deletion records against the policy and hold records before them:
//! a deletion the recorded policy allowed passes; one that claims another policy,
//! comes before expiry, or ignores a hold is reported.

use std::time::Duration;

use stele_retention::{HoldFilters, HoldRecord, Mode, Policy, PolicyRecord, audit};
use stele_store::log::{FORMAT_STELE_RECORD, Log, LogOptions, NewEntry, init, now_ns};
use stele_store::retention::{DeletionRecord, SegmentSummary, segment_summaries};
use stele_store::streams::RETENTION_STREAM;

const WINDOW_NS: u64 = 40_000_000;

fn record(log: &mut Log, payload: &[u8]) {
    log.append(&[NewEntry { stream: RETENTION_STREAM, format: FORMAT_STELE_RECORD, payload }]).unwrap();
}

/// A log whose `app` stream has a finished segment, under `policy`.
fn setup(policy: &Policy) -> (tempfile::TempDir, Log, SegmentSummary) {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "audit.example/log").unwrap();
    let mut log = Log::open(dir.path(), LogOptions { segment_window_ns: WINDOW_NS, ..LogOptions::default() }).unwrap();
    record(&mut log, &PolicyRecord::of(policy, now_ns(), false).encode());
    log.append(&[NewEntry { stream: "app", format: 1, payload: b"{\"a\":1}" }]).unwrap();
    std::thread::sleep(Duration::from_nanos(WINDOW_NS * 2));
    log.append(&[NewEntry { stream: "app", format: 1, payload: b"{\"a\":2}" }]).unwrap();
    log.sign_checkpoint().unwrap();
    let seg = segment_summaries(&log.reader()).unwrap().into_iter().find(|s| s.stream == "app" && !s.open).unwrap();
    (dir, log, seg)
}

fn deletion(s: &SegmentSummary, min_s: u64, max_s: u64) -> DeletionRecord {
    DeletionRecord {
        kind: "deletion".into(),
        segment: s.segno,
        stream: s.stream.clone(),
        entries: s.entries,
        ranges: s.ranges.clone(),
        oldest_received_ns: s.oldest_received_ns,
        newest_received_ns: s.newest_received_ns,
        policy: "app".into(),
        min_retention_seconds: min_s,
        max_retention_seconds: max_s,
        mode: "governance".into(),
        deleted_ns: now_ns(),
    }
}

fn policy(max: Duration) -> Policy {
    Policy { stream: "app".into(), min_retention: Duration::ZERO, max_retention: Some(max), mode: Mode::Governance }
}

#[test]
fn a_deletion_the_recorded_policy_allowed_passes() {
    let (_dir, mut log, seg) = setup(&policy(Duration::ZERO));
    log.delete_segment(seg.segno, &deletion(&seg, 0, 0)).unwrap();
    let (checked, problems) = audit(&log.reader()).unwrap();
    assert_eq!((checked, problems), (1, vec![]));
}

#[test]
fn a_deletion_under_a_policy_other_than_the_recorded_one_is_reported() {
    // The log says 400 days; the deletion claims a zero maximum.
    let (_dir, mut log, seg) = setup(&policy(Duration::from_secs(400 * 86_400)));
    log.delete_segment(seg.segno, &deletion(&seg, 0, 0)).unwrap();
    let (checked, problems) = audit(&log.reader()).unwrap();
    assert_eq!(checked, 1);
    assert!(problems.iter().any(|p| p.what.contains("recorded policy then was")), "{problems:?}");
    assert!(problems.iter().any(|p| p.what.contains("before it expired")), "{problems:?}");
}

#[test]
fn a_deletion_while_a_hold_covered_the_segment_is_reported() {
    let (_dir, mut log, seg) = setup(&policy(Duration::ZERO));
    let hold = HoldRecord {
        kind: "hold".into(),
        case: "LIT-1".into(),
        reason: "litigation".into(),
        stream: Some("app".into()),
        since_ns: None,
        until_ns: None,
        filters: HoldFilters::default(),
        placed_ns: now_ns(),
    };
    record(&mut log, &hold.encode());
    log.sign_checkpoint().unwrap();
    // A writer that ignores the hold (the pass would not have chosen this segment).
    log.delete_segment(seg.segno, &deletion(&seg, 0, 0)).unwrap();
    let (_, problems) = audit(&log.reader()).unwrap();
    assert!(problems.iter().any(|p| p.what.contains("LIT-1")), "{problems:?}");
}
