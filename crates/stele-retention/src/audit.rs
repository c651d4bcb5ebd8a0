//! Checking, from the log alone, that retention deleted nothing it was not allowed to.
//!
//! `stele_store::verify` checks each deletion against its own record (the record is in
//! the log, names exactly the missing entries, respects its own minimum). This module
//! checks the records against each other, in log order, as an outside checker would:
//! each deletion record's policy must be the policy recorded for that pattern at that
//! point (same minimum, maximum and mode), the segment must have expired under it (its
//! newest entry older than the maximum at the time of deletion), and no hold active at
//! that point may select the segment's stream and time range. (A hold with query
//! filters selects by payload contents, which are gone after a deletion; such holds
//! are checked when the pass runs, not here.)
//!
//! It reads every leaf (to find the `_stele/retention` entries) and the payloads of
//! those entries only; it trusts no index.

use std::collections::BTreeMap;

use stele_store::LogReader;
use stele_store::retention::DeletionRecord;
use stele_tlog::leaf::{LEAF_LEN, Leaf};

use crate::RetentionError;
use crate::hold::HoldRecord;
use crate::recorded::PolicyRecord;

/// A deletion that the recorded policies and holds did not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditProblem {
    /// Index of the deletion record.
    pub record_index: u64,
    /// What is wrong.
    pub what: String,
}

/// Checks every deletion record of the log against the policy and hold records before
/// it. Returns the deletions checked and the problems found.
///
/// # Errors
/// Log read errors (damage is reported by `stele_store::verify`).
pub fn audit(reader: &LogReader) -> Result<(u64, Vec<AuditProblem>), RetentionError> {
    const BATCH: u64 = 1 << 14;
    let Some(stream_id) = reader.streams().id(stele_store::streams::RETENTION_STREAM) else {
        return Ok((0, Vec::new()));
    };
    let n = reader.tree_size();
    let mut policies: BTreeMap<String, PolicyRecord> = BTreeMap::new();
    let mut holds: BTreeMap<String, HoldRecord> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0u64;
    let mut start = 0;
    while start < n {
        let count = BATCH.min(n - start);
        let raw = reader.files().read_leaf_bytes(start, count)?;
        for (j, leaf) in raw.chunks_exact(LEAF_LEN).enumerate() {
            let Ok(leaf) = Leaf::decode(leaf) else { continue };
            if leaf.stream_id != stream_id {
                continue;
            }
            let index = start + j as u64;
            let payload = reader.entry(index)?.payload;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
            match v["type"].as_str() {
                Some("policy") => {
                    if let Some(p) = PolicyRecord::parse(&payload) {
                        policies.insert(p.stream.clone(), p);
                    }
                }
                Some("hold") => {
                    if let Ok(h) = serde_json::from_value::<HoldRecord>(v) {
                        holds.insert(h.case.clone(), h);
                    }
                }
                Some("hold_release") => {
                    if let Some(case) = v["case"].as_str() {
                        holds.remove(case);
                    }
                }
                Some("deletion") => {
                    if let Some(d) = DeletionRecord::parse(&payload) {
                        checked += 1;
                        problems.extend(
                            check(&d, &policies, &holds)
                                .into_iter()
                                .map(|what| AuditProblem { record_index: index, what }),
                        );
                    }
                }
                _ => {}
            }
        }
        start += count;
    }
    Ok((checked, problems))
}

fn check(
    d: &DeletionRecord,
    policies: &BTreeMap<String, PolicyRecord>,
    holds: &BTreeMap<String, HoldRecord>,
) -> Vec<String> {
    let mut out = Vec::new();
    match policies.get(&d.policy) {
        None => {
            out.push(format!("deletes segment {} under policy {:?}, which the log never recorded", d.segment, d.policy))
        }
        Some(p) => {
            let max = p.max_retention_seconds;
            if p.min_retention_seconds != d.min_retention_seconds
                || max.unwrap_or(0) != d.max_retention_seconds
                || p.mode.name() != d.mode
            {
                out.push(format!(
                    "deletes segment {} under policy {:?} as {} min {} s max {} s, but the recorded policy then was {} min {} s max {:?} s",
                    d.segment,
                    d.policy,
                    d.mode,
                    d.min_retention_seconds,
                    d.max_retention_seconds,
                    p.mode.name(),
                    p.min_retention_seconds,
                    max
                ));
            }
            match max {
                None => {
                    out.push(format!("deletes segment {} although policy {:?} sets no maximum", d.segment, d.policy))
                }
                Some(m) => {
                    let keep = m.max(p.min_retention_seconds).saturating_mul(1_000_000_000);
                    if d.deleted_ns < d.newest_received_ns.saturating_add(keep) {
                        out.push(format!(
                            "deletes segment {} before it expired under policy {:?} ({} s after its newest entry)",
                            d.segment,
                            d.policy,
                            keep / 1_000_000_000
                        ));
                    }
                }
            }
            let stream_ok = match d.policy.strip_suffix('*') {
                Some(prefix) => d.stream.starts_with(prefix),
                None => d.policy == d.stream,
            };
            if !stream_ok {
                out.push(format!(
                    "deletes segment {} of stream {:?} under policy {:?}, which does not name it",
                    d.segment, d.stream, d.policy
                ));
            }
        }
    }
    for h in holds.values() {
        if h.covers_stream(&d.stream) && h.overlaps(d.oldest_received_ns, d.newest_received_ns) {
            let filtered = h.filters != crate::hold::HoldFilters::default();
            if !filtered {
                out.push(format!("deletes segment {} while hold {:?} ({}) covered it", d.segment, h.case, h.reason));
            }
        }
    }
    out
}
