//! `state.dat`: the recovery anchor. Two slots of [`SLOT_LEN`] bytes after the
//! header are overwritten alternately, each holding a CRC-framed JSON [`State`] with a
//! sequence number; recovery uses the valid slot with the higher sequence number.
//! A state is written only after everything it describes is durable, so recovery may
//! trust all data up to its `tree_size` and only needs to check what came after.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::StorageFile;
use crate::error::{Result, StoreError};
use crate::header::HEADER_LEN;
use crate::layout::STATE;
use crate::records;

/// Bytes per slot; bounds the number of open segments a state can list (about 800,
/// that is, streams receiving events at the same time).
pub const SLOT_LEN: u64 = 64 * 1024;

/// One open (appendable) payload segment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenSegmentState {
    /// Segment number.
    pub segno: u32,
    /// Stream id.
    pub stream: u32,
    /// Start of its time window, ns since the epoch.
    pub window_start_ns: u64,
    /// Valid length in bytes.
    pub len: u64,
}

/// The recovery anchor.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Incremented on every write.
    pub seq: u64,
    /// Entries durable and valid when this state was written.
    pub tree_size: u64,
    /// Valid length of `checkpoints.dat`.
    pub checkpoints_len: u64,
    /// Offset of the newest checkpoint record, if any.
    pub newest_checkpoint_offset: Option<u64>,
    /// Valid length of `streams.dat`.
    pub streams_len: u64,
    /// Next segment number to allocate.
    pub next_segno: u32,
    /// Open segments.
    pub open_segments: Vec<OpenSegmentState>,
}

/// Reads the newest valid slot; `None` if neither slot is valid.
pub fn read(file: &Arc<dyn StorageFile>) -> Result<Option<State>> {
    let len = file.len().map_err(StoreError::io("reading", STATE))?;
    let mut best: Option<State> = None;
    for slot in 0..2 {
        let offset = HEADER_LEN + slot * SLOT_LEN;
        if let Some(p) = records::read_at(file, STATE, offset, len.min(offset + SLOT_LEN))?
            && let Ok(s) = serde_json::from_slice::<State>(&p)
            && best.as_ref().is_none_or(|b| s.seq > b.seq)
        {
            best = Some(s);
        }
    }
    Ok(best)
}

/// Offset of the slot a state of sequence number `seq` is written to.
pub fn slot_offset(seq: u64) -> u64 {
    HEADER_LEN + (seq % 2) * SLOT_LEN
}

/// Writes `state` into the slot its sequence number selects and syncs.
pub fn write(file: &Arc<dyn StorageFile>, state: &State) -> Result<()> {
    let payload = serde_json::to_vec(state).expect("state serializes");
    let framed = records::frame(&payload);
    if framed.len() as u64 > SLOT_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "too many open segments ({}) for one state slot",
            state.open_segments.len()
        )));
    }
    let offset = slot_offset(state.seq);
    file.write_at(offset, &framed).map_err(StoreError::io("writing", STATE))?;
    file.sync().map_err(StoreError::io("syncing", STATE))
}
