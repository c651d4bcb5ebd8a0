//! One deletion pass on the writer.

use stele_store::Log;
use stele_store::StoreError;
use stele_store::retention::segment_summaries;

use crate::RetentionError;
use crate::plan::{Due, plan};
use crate::policy::Policy;

/// What a pass did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Segments deleted, with their deletion record's index (`None` in a dry run).
    pub deleted: Vec<(Due, Option<u64>)>,
    /// Expired segments left for later, and why (still receiving entries, entries not
    /// yet under a signed checkpoint).
    pub skipped: Vec<(Due, String)>,
    /// Segments pinned by legal holds (kept whatever their policy).
    pub held: usize,
}

impl PassReport {
    /// Entries whose payloads were (or would be) removed.
    pub fn entries(&self) -> u64 {
        self.deleted.iter().map(|(d, _)| d.segment.entries).sum()
    }
}

/// Runs one deletion pass over `log` under `policies` (the policies in force, from
/// [`crate::reconcile`]) at `now_ns`, keeping every segment an active legal hold pins
/// (holds are read through `snapshot`, a query index view of the same log). With
/// `dry_run`, only plans.
///
/// # Errors
/// Storage errors other than a segment that cannot be deleted yet (which is skipped).
pub fn apply(
    log: &mut Log,
    policies: &[Policy],
    snapshot: &stele_index::Snapshot,
    now_ns: u64,
    dry_run: bool,
) -> Result<PassReport, RetentionError> {
    let reader = log.reader();
    let summaries = segment_summaries(&reader)?;
    let holds = crate::hold::active_holds(snapshot, &reader)?;
    let held = crate::hold::held_segments(&holds, &summaries, snapshot, &reader)?;
    let mut report =
        PassReport { held: summaries.iter().filter(|s| held.contains(&s.segno)).count(), ..PassReport::default() };
    for due in plan(&summaries, policies, &held, now_ns) {
        if dry_run {
            report.deleted.push((due, None));
            continue;
        }
        let s = &due.segment;
        let record = due.deletion_record(now_ns);
        match log.delete_segment(s.segno, &record) {
            Ok(index) => report.deleted.push((due, Some(index))),
            Err(StoreError::SegmentNotDeletable { reason, .. }) => report.skipped.push((due, reason)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
