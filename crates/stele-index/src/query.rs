//! Queries: filters over the normalized fields and time.

use serde::Serialize;
use stele_formats::{Normalized, matches};

use crate::block::Row;

/// A query. Field filters match exactly, or by prefix when they end in `*`.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Earliest time, ns since the epoch (inclusive).
    pub since_ns: Option<i64>,
    /// Latest time, ns since the epoch (exclusive).
    pub until_ns: Option<i64>,
    /// Compare `since`/`until` with the received time instead of the event's own time.
    pub by_received: bool,
    /// Actor filter.
    pub actor: Option<String>,
    /// Action filter.
    pub action: Option<String>,
    /// Resource filter.
    pub resource: Option<String>,
    /// Outcome filter.
    pub outcome: Option<String>,
    /// Source IP filter.
    pub source_ip: Option<String>,
    /// Request id filter.
    pub request_id: Option<String>,
    /// Producer filter.
    pub producer: Option<String>,
    /// Stream name filter. Without it, stele's internal `_stele/` streams are left out.
    pub stream: Option<String>,
    /// Most hits to return.
    pub limit: Option<u64>,
}

/// One matching entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// Entry index.
    pub index: u64,
    /// Received time, ns.
    pub received_ns: u64,
    /// Stream name.
    pub stream: String,
    /// Normalized fields.
    pub fields: Normalized,
}

impl Query {
    /// Whether a time window `[min, max]` (of the compared time) may hold matches.
    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since_ns.is_none_or(|s| max >= s) && self.until_ns.is_none_or(|u| min < u)
    }

    /// Whether the time of an entry is inside the window.
    pub(crate) fn time_matches(&self, t: i64) -> bool {
        self.since_ns.is_none_or(|s| t >= s) && self.until_ns.is_none_or(|u| t < u)
    }

    /// Whether the fields (and stream) match; time is checked separately.
    pub fn fields_match(&self, stream: &str, f: &Normalized) -> bool {
        let stream_ok = match &self.stream {
            Some(s) => matches(s, Some(stream)),
            None => !stream.starts_with(stele_store::streams::RESERVED_PREFIX),
        };
        stream_ok
            && self.actor.as_deref().is_none_or(|q| matches(q, f.actor.as_deref()))
            && self.action.as_deref().is_none_or(|q| matches(q, f.action.as_deref()))
            && self.resource.as_deref().is_none_or(|q| matches(q, f.resource.as_deref()))
            && self.outcome.as_deref().is_none_or(|q| matches(q, f.outcome.as_deref()))
            && self.source_ip.as_deref().is_none_or(|q| matches(q, f.source_ip.as_deref()))
            && self.request_id.as_deref().is_none_or(|q| matches(q, f.request_id.as_deref()))
            && self.producer.as_deref().is_none_or(|q| matches(q, f.producer.as_deref()))
    }

    /// The string-field filters in block order (see `block::FIELD_TAGS`).
    pub(crate) fn string_filters(&self) -> [&Option<String>; crate::block::STRING_FIELDS] {
        [&self.actor, &self.action, &self.resource, &self.outcome, &self.source_ip, &self.request_id, &self.producer]
    }

    /// Whether an entry matches the whole query.
    pub fn matches_entry(&self, received_ns: u64, stream: &str, f: &Normalized) -> bool {
        let t = if self.by_received { received_ns as i64 } else { f.event_time_ns.unwrap_or(received_ns as i64) };
        self.time_matches(t) && self.fields_match(stream, f)
    }

    pub(crate) fn row_matches(&self, row: &Row, stream: &str) -> bool {
        self.matches_entry(row.received_ns, stream, &row.fields)
    }
}
