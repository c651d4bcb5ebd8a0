//! Scheduled retention passes.
//!
//! Every `retention_interval`, a thread plans the pass from a reader (the locator scan
//! and the policy decisions run here, off the sequencer) and hands the sequencer one
//! expired segment at a time; each deletion is one small commit, so ingestion never
//! waits for more than one segment's removal.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use stele_retention::{Policy, plan};
use stele_store::retention::segment_summaries;

use crate::error::ServerError;
use crate::selfcheck::{Guard, Stop};
use crate::sequencer::{Msg, Shared};

/// Starts the retention thread; `None` when there is no policy or passes are disabled.
pub(crate) fn spawn(
    in_force: Arc<crate::retention_api::InForce>,
    interval: Duration,
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    erasure: bool,
) -> Result<Option<Guard>, ServerError> {
    if (in_force.get().is_empty() && !erasure) || interval.is_zero() {
        return Ok(None);
    }
    let stop = Arc::new(Stop::default());
    let s = stop.clone();
    std::thread::Builder::new()
        .name("stele-retention".into())
        .spawn(move || {
            // The first pass soon after the start, then one per interval.
            let mut wait = Duration::from_secs(1).min(interval);
            while !s.sleep(wait) {
                wait = interval;
                // The policies in force now: a governance bypass may have shortened one.
                if let Err(e) = pass(&in_force.get(), &shared, &tx, &s) {
                    tracing::error!("retention pass: {e}");
                }
            }
        })
        .map_err(|e| ServerError::Sequencer(format!("spawning the retention thread: {e}")))?;
    Ok(Some(Guard { stop }))
}

fn pass(policies: &[Policy], shared: &Shared, tx: &Sender<Msg>, stop: &Stop) -> Result<(), String> {
    let now = stele_store::log::now_ns();
    let summaries = segment_summaries(&shared.reader).map_err(|e| e.to_string())?;
    let snapshot = shared.snapshot();
    let holds = stele_retention::active_holds(&snapshot, &shared.reader).map_err(|e| e.to_string())?;
    let held =
        stele_retention::held_segments(&holds, &summaries, &snapshot, &shared.reader).map_err(|e| e.to_string())?;
    // Files of deletions recorded but not removed (a crash, or a failed removal).
    for s in summaries.iter().filter(|s| s.deleted.is_some()) {
        let _ = shared.reader.files().remove_deleted_segment(s.segno);
    }
    for due in plan(&summaries, policies, &held, now) {
        if stop.stopped() {
            return Ok(());
        }
        let s = &due.segment;
        let record = due.deletion_record(now);
        let (reply, answer) = std::sync::mpsc::channel();
        if tx.send(Msg::DeleteSegment { segno: s.segno, record: Box::new(record), reply }).is_err() {
            return Ok(());
        }
        match answer.recv() {
            Ok(Ok(index)) => {
                if let Err(e) = shared.reader.files().remove_deleted_segment(s.segno) {
                    tracing::warn!(segment = s.segno, "removing a deleted segment's file: {e} (the next pass retries)");
                }
                shared.metrics.retention_deleted_segments.inc();
                shared.metrics.retention_deleted_entries.inc_by(s.entries);
                tracing::info!(segment = s.segno, stream = %s.stream, entries = s.entries, record = index, "retention deleted a segment");
            }
            Ok(Err(stele_store::StoreError::SegmentNotDeletable { reason, .. })) => {
                tracing::debug!(segment = s.segno, "expired segment kept for now: {reason}");
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Ok(()),
        }
    }
    // Erasures a hold or compliance retention deferred (docs/erasure.md).
    let (reply, answer) = std::sync::mpsc::channel();
    if tx.send(Msg::CarryOutErasures { policies: policies.to_vec(), reply }).is_ok()
        && let Ok(r) = answer.recv()
    {
        r?;
    }
    Ok(())
}
