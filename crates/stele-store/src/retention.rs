//! Retention at the storage level: which segments exist and what they hold, and the
//! deletion record that authorises removing one.
//!
//! Payloads of one stream and one time window share a segment, so expiry removes
//! whole files: the leaves, locators and hash tiles stay, and with them every
//! inclusion and consistency proof. Deleting a segment is three durable steps, in
//! this order (see [`crate::Log::delete_segment`]):
//! 1. a deletion record (this module's [`DeletionRecord`], JSON, format 3) is appended
//!    to `_stele/retention` and committed like any entry;
//! 2. `deletions.dat` gets the segment number and the record's index (fsynced);
//! 3. the segment file is removed.
//!
//! A crash between steps leaves either a record without a removal (the next pass
//! removes the file) or nothing. `verify` accepts a missing segment only when
//! `deletions.dat` names it and the record it points to is in the log, names the same
//! segment and exactly the entries whose locators point there, and was made no
//! earlier than its policy's minimum retention after the newest of them; a segment
//! missing in any other way is reported as tampering.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::reader::LogReader;
use crate::state;

/// What one segment holds, from the locators and its first and last leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentSummary {
    /// Segment number.
    pub segno: u32,
    /// Stream id of its entries.
    pub stream_id: u32,
    /// Stream name.
    pub stream: String,
    /// Entries whose payload it holds.
    pub entries: u64,
    /// Those entries as inclusive `[first, last]` index runs, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// Received time of its first entry, ns since the epoch.
    pub oldest_received_ns: u64,
    /// Received time of its last entry, ns since the epoch.
    pub newest_received_ns: u64,
    /// Whether the writer still appends to it (its window has not ended).
    pub open: bool,
    /// The deletion record's index when retention removed it.
    pub deleted: Option<u64>,
}

/// The record appended to `_stele/retention` before a segment is removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// Always `"deletion"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The removed segment.
    pub segment: u32,
    /// Its stream.
    pub stream: String,
    /// Number of entries whose payloads it held.
    pub entries: u64,
    /// Those entries as inclusive `[first, last]` runs.
    pub ranges: Vec<(u64, u64)>,
    /// Received time of the oldest and newest of them, ns.
    pub oldest_received_ns: u64,
    /// See `oldest_received_ns`.
    pub newest_received_ns: u64,
    /// Name of the policy that expired them (its stream pattern).
    pub policy: String,
    /// The policy's minimum retention, seconds: nothing may go earlier.
    pub min_retention_seconds: u64,
    /// The policy's maximum retention, seconds (what made them expire).
    pub max_retention_seconds: u64,
    /// The policy's mode (`governance` or `compliance`).
    pub mode: String,
    /// When the deletion was decided, ns since the epoch.
    pub deleted_ns: u64,
}

impl DeletionRecord {
    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a deletion record serializes")
    }

    /// Parses a payload; `None` when it is not a deletion record.
    pub fn parse(payload: &[u8]) -> Option<DeletionRecord> {
        serde_json::from_slice::<DeletionRecord>(payload).ok().filter(|r| r.kind == "deletion")
    }

    /// Whether the record respects its own policy: made no earlier than the minimum
    /// retention after the newest entry it removes.
    pub fn respects_minimum(&self) -> bool {
        let min_ns = self.min_retention_seconds.saturating_mul(1_000_000_000);
        self.deleted_ns >= self.newest_received_ns.saturating_add(min_ns)
    }
}

/// Summaries of every segment that holds entries of the log behind `reader`, by
/// segment number. Reads every locator (12 bytes per entry) and two leaves per
/// segment; a pass over a 10-million-entry log reads about 120 MB.
///
/// # Errors
/// I/O errors, and [`StoreError::Corrupt`] for unreadable leaves.
pub fn segment_summaries(reader: &LogReader) -> Result<Vec<SegmentSummary>> {
    const BATCH: u64 = 1 << 16;
    let files = reader.files();
    let n = reader.tree_size();
    let mut by_segno: std::collections::BTreeMap<u32, Vec<(u64, u64)>> = std::collections::BTreeMap::new();
    let mut start = 0;
    while start < n {
        let count = BATCH.min(n - start);
        for (j, loc) in files.read_locators(start, count)?.into_iter().enumerate() {
            let index = start + j as u64;
            let runs = by_segno.entry(loc.segno).or_default();
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == index => *last = index,
                _ => runs.push((index, index)),
            }
        }
        start += count;
    }
    let open: Vec<u32> =
        state::read(&files.state)?.map(|s| s.open_segments.iter().map(|o| o.segno).collect()).unwrap_or_default();
    let streams = reader.streams();
    let mut out = Vec::with_capacity(by_segno.len());
    for (segno, ranges) in by_segno {
        let first = ranges.first().expect("a segment in the map holds an entry").0;
        let last = ranges.last().expect("a segment in the map holds an entry").1;
        let (a, b) = (files.read_leaf(first)?, files.read_leaf(last)?);
        out.push(SegmentSummary {
            segno,
            stream_id: a.stream_id,
            stream: streams.name(a.stream_id).map_or_else(|| format!("#{}", a.stream_id), str::to_string),
            entries: ranges.iter().map(|(f, l)| l - f + 1).sum(),
            ranges,
            oldest_received_ns: a.received_ns,
            newest_received_ns: b.received_ns,
            open: open.contains(&segno),
            deleted: files.deleted_segment(segno),
        });
    }
    Ok(out)
}
