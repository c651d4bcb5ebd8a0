//! Legal holds: entries under a hold are never deleted, whatever their policy.
//!
//! A hold names a case and a reason and selects entries by stream (name or `prefix*`),
//! received-time range and, optionally, query filters (actor, action, resource,
//! outcome). Placing and releasing are records in `_stele/retention`:
//! `{"type":"hold","case":ID,"reason":R,"stream":S|null,"since_ns":T|null,
//! "until_ns":T|null,"filters":{...},"placed_ns":T}` and
//! `{"type":"hold_release","case":ID,"reason":R,"released_ns":T}`. A hold is active
//! from its record until a later release of the same case. A segment holding any
//! entry an active hold selects is kept whole.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use stele_index::{Query, Snapshot};
use stele_store::LogReader;
use stele_store::retention::SegmentSummary;

use crate::RetentionError;

/// Query filters of a hold (as `stele query` takes them; `*` suffix for prefixes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldFilters {
    /// Actor filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Action filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Resource filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Outcome filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl HoldFilters {
    fn is_empty(&self) -> bool {
        self == &HoldFilters::default()
    }
}

/// A hold record's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// Always `"hold"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The case the hold is for (its id; a release names it).
    pub case: String,
    /// Why.
    pub reason: String,
    /// Stream name or `prefix*`; `None`: every stream.
    pub stream: Option<String>,
    /// Earliest received time held, ns (inclusive); `None`: from the start.
    pub since_ns: Option<u64>,
    /// Latest received time held, ns (exclusive); `None`: no end (new entries too).
    pub until_ns: Option<u64>,
    /// Query filters; empty: every entry of the stream and time range.
    #[serde(default)]
    pub filters: HoldFilters,
    /// When it was placed, ns.
    pub placed_ns: u64,
}

/// A release record's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Always `"hold_release"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The case released.
    pub case: String,
    /// Why.
    pub reason: String,
    /// When, ns.
    pub released_ns: u64,
}

impl HoldRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a hold record serializes")
    }

    /// Whether a stream's entries can be under this hold.
    pub fn covers_stream(&self, stream: &str) -> bool {
        if stream.starts_with(stele_store::streams::RESERVED_PREFIX) {
            return false;
        }
        match self.stream.as_deref() {
            None => true,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => stream.starts_with(prefix),
                None => p == stream,
            },
        }
    }

    /// Whether a received-time span `[oldest, newest]` overlaps the hold's range.
    pub fn overlaps(&self, oldest_ns: u64, newest_ns: u64) -> bool {
        self.since_ns.is_none_or(|s| newest_ns >= s) && self.until_ns.is_none_or(|u| oldest_ns < u)
    }
}

impl ReleaseRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a release record serializes")
    }
}

/// The holds active now (placed and not released since), by case, with the index of
/// the record that placed each; read from `_stele/retention` through `snapshot`.
///
/// # Errors
/// Index or log read errors.
pub fn active_holds(
    snapshot: &Snapshot,
    reader: &LogReader,
) -> Result<BTreeMap<String, (HoldRecord, u64)>, RetentionError> {
    let mut holds = ActiveHolds::default();
    holds.refresh(snapshot, reader)?;
    Ok(holds.active)
}

/// The active holds, kept current by [`ActiveHolds::refresh`], which reads only the
/// `_stele/retention` records appended since its last call (a long-running writer
/// pays for new records, not for the whole history, each time it asks).
#[derive(Clone, Debug, Default)]
pub struct ActiveHolds {
    active: BTreeMap<String, (HoldRecord, u64)>,
    read_to: u64,
}

impl ActiveHolds {
    /// Reads the records appended since the last call (all of them the first time)
    /// and returns the holds active now, by case, with the index of the record that
    /// placed each.
    ///
    /// # Errors
    /// Index or log read errors (the state is then left as it was).
    pub fn refresh(
        &mut self,
        snapshot: &Snapshot,
        reader: &LogReader,
    ) -> Result<&BTreeMap<String, (HoldRecord, u64)>, RetentionError> {
        let tree_size = reader.tree_size();
        if self.read_to > tree_size {
            *self = ActiveHolds::default();
        }
        for (i, payload) in crate::recorded::retention_records_from(snapshot, reader, self.read_to)? {
            let v: serde_json::Value = match serde_json::from_slice(&payload) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match v["type"].as_str() {
                Some("hold") => {
                    if let Ok(h) = serde_json::from_value::<HoldRecord>(v) {
                        self.active.insert(h.case.clone(), (h, i));
                    }
                }
                Some("hold_release") => {
                    if let Some(case) = v["case"].as_str() {
                        self.active.remove(case);
                    }
                }
                _ => {}
            }
        }
        self.read_to = tree_size;
        Ok(&self.active)
    }
}

/// The segments active holds pin: those of a held stream whose received-time span
/// overlaps a hold's range and, for a hold with query filters, that hold at least one
/// entry the filters select (found through `snapshot`, re-checked against the log).
///
/// # Errors
/// Index or log read errors.
pub fn held_segments(
    holds: &BTreeMap<String, (HoldRecord, u64)>,
    summaries: &[SegmentSummary],
    snapshot: &Snapshot,
    reader: &LogReader,
) -> Result<HashSet<u32>, RetentionError> {
    let mut held = HashSet::new();
    for (hold, _) in holds.values() {
        let candidates: Vec<&SegmentSummary> = summaries
            .iter()
            .filter(|s| s.deleted.is_none() && hold.covers_stream(&s.stream))
            .filter(|s| hold.overlaps(s.oldest_received_ns, s.newest_received_ns))
            .collect();
        if hold.filters.is_empty() {
            held.extend(candidates.iter().map(|s| s.segno));
            continue;
        }
        let query = Query {
            since_ns: hold.since_ns.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            until_ns: hold.until_ns.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            by_received: true,
            actor: hold.filters.actor.clone(),
            action: hold.filters.action.clone(),
            resource: hold.filters.resource.clone(),
            outcome: hold.filters.outcome.clone(),
            stream: Some(hold.stream.clone().unwrap_or_else(|| "*".into())),
            ..Query::default()
        };
        let mut hits = Vec::new();
        snapshot.query(&query, |h| {
            hits.push(h.index);
            true
        })?;
        for i in hits {
            let segno = reader.files().read_locators(i, 1)?[0].segno;
            if candidates.iter().any(|s| s.segno == segno) {
                held.insert(segno);
            }
        }
    }
    Ok(held)
}
