//! Which segments have expired.

use std::collections::HashSet;

use stele_store::retention::SegmentSummary;

use crate::policy::{Policy, policy_for};

/// A segment and when its policy lets it go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The segment.
    pub segment: SegmentSummary,
    /// The policy that governs its stream.
    pub policy: Policy,
    /// When it expires: its newest entry's received time plus the maximum retention
    /// (never before the minimum), ns since the epoch.
    pub due_ns: u64,
}

/// Per stream: its policy, what it holds and when the next deletion comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSchedule {
    /// The stream.
    pub stream: String,
    /// Its policy (`None`: no policy, kept).
    pub policy: Option<Policy>,
    /// Segments still holding payloads.
    pub segments: usize,
    /// Entries in them.
    pub entries: u64,
    /// Received time of the oldest entry still held, ns.
    pub oldest_received_ns: Option<u64>,
    /// When the next segment expires, ns (`None`: never under this policy).
    pub next_deletion_ns: Option<u64>,
    /// Segments expired at `now` and not held (deleted by the next pass).
    pub expired: usize,
    /// Segments expired at `now` but kept by a legal hold.
    pub held: usize,
}

impl Due {
    /// The deletion record of this segment, decided at `now_ns`.
    pub fn deletion_record(&self, now_ns: u64) -> stele_store::retention::DeletionRecord {
        let s = &self.segment;
        stele_store::retention::DeletionRecord {
            kind: "deletion".into(),
            segment: s.segno,
            stream: s.stream.clone(),
            entries: s.entries,
            ranges: s.ranges.clone(),
            oldest_received_ns: s.oldest_received_ns,
            newest_received_ns: s.newest_received_ns,
            policy: self.policy.stream.clone(),
            min_retention_seconds: self.policy.min_retention.as_secs(),
            max_retention_seconds: self.policy.max_retention.map_or(0, |d| d.as_secs()),
            mode: self.policy.mode.name().into(),
            deleted_ns: now_ns,
        }
    }
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn due_ns(s: &SegmentSummary, p: &Policy) -> Option<u64> {
    let max = p.max_retention?;
    Some(s.newest_received_ns.saturating_add(ns(max.max(p.min_retention))))
}

/// The segments that have expired at `now_ns` under `policies`, oldest first.
/// Already deleted segments, segments in `held` (legal holds) and `_stele/` streams are
/// left out.
pub fn plan(summaries: &[SegmentSummary], policies: &[Policy], held: &HashSet<u32>, now_ns: u64) -> Vec<Due> {
    let mut out: Vec<Due> = summaries
        .iter()
        .filter(|s| s.deleted.is_none() && !held.contains(&s.segno))
        .filter_map(|s| {
            let p = policy_for(policies, &s.stream)?;
            let due = due_ns(s, p)?;
            (due <= now_ns).then(|| Due { segment: s.clone(), policy: p.clone(), due_ns: due })
        })
        .collect();
    out.sort_by_key(|d| (d.due_ns, d.segment.segno));
    out
}

/// Per stream, what retention will do and when (for `stele retention show`).
pub fn schedule(
    summaries: &[SegmentSummary],
    policies: &[Policy],
    held: &HashSet<u32>,
    now_ns: u64,
) -> Vec<StreamSchedule> {
    let mut by_stream: std::collections::BTreeMap<&str, StreamSchedule> = std::collections::BTreeMap::new();
    for s in summaries.iter().filter(|s| s.deleted.is_none()) {
        let p = policy_for(policies, &s.stream);
        let e = by_stream.entry(&s.stream).or_insert_with(|| StreamSchedule {
            stream: s.stream.clone(),
            policy: p.cloned(),
            segments: 0,
            entries: 0,
            oldest_received_ns: None,
            next_deletion_ns: None,
            expired: 0,
            held: 0,
        });
        e.segments += 1;
        e.entries += s.entries;
        e.oldest_received_ns = Some(e.oldest_received_ns.map_or(s.oldest_received_ns, |o| o.min(s.oldest_received_ns)));
        if let Some(due) = p.and_then(|p| due_ns(s, p)) {
            if due <= now_ns && held.contains(&s.segno) {
                e.held += 1;
            } else if due <= now_ns {
                e.expired += 1;
            }
            e.next_deletion_ns = Some(e.next_deletion_ns.map_or(due, |d| d.min(due)));
        }
    }
    by_stream.into_values().collect()
}
