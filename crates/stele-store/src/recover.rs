//! Opening a data directory after any stop, clean or not.
//!
//! The newest valid slot of `state.dat` names a tree size `S` up to which everything
//! is durable (it was written after those entries were synced). Entries after `S` are
//! checked one by one — leaf decodes, leaf hash equals the stored level-0 hash, the
//! locator names a CRC-valid chunk of the right stream that holds the entry, and the
//! payload matches the leaf digest — and the log ends before the first that fails.
//! A chunk is all-or-nothing: if any of its entries is cut, all are. Because a commit
//! is acknowledged only after all of its files are synced, everything cut was never
//! acknowledged. A cut below the newest signed checkpoint is damage or tampering and
//! the directory is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use stele_tlog::hash::leaf_hash;
use stele_tlog::leaf::{LEAF_LEN, Leaf};
use stele_tlog::merkle::{Frontier, root_hash};
use stele_tlog::tile::{TILE_WIDTH, reduce_perfect};

use crate::checkpoints::StoredCheckpoint;
use crate::chunk::Chunk;
use crate::error::{Result, StoreError};
use crate::files::{LOCATOR_LEN, LogFiles};
use crate::hashes::stored_count;
use crate::header::HEADER_LEN;
use crate::layout;
use crate::records;
use crate::state::{self, OpenSegmentState, State};
use crate::streams::{SYSTEM_STREAM_ID, StreamRecord, Streams};

/// Entries checked per read batch during roll-forward.
const BATCH: u64 = 4096;

/// What recovery found.
pub struct Recovered {
    /// Intact tree size.
    pub size: u64,
    /// The state it started from.
    pub state: State,
    /// Streams.
    pub streams: Streams,
    /// Valid length of `streams.dat`.
    pub streams_len: u64,
    /// Newest signed checkpoint.
    pub newest_checkpoint: Option<StoredCheckpoint>,
    /// Valid length of `checkpoints.dat`.
    pub checkpoints_len: u64,
    /// Open segments with their valid lengths.
    pub open_segments: Vec<OpenSegmentState>,
    /// Next segment number.
    pub next_segno: u32,
    /// The tree's right edge.
    pub frontier: Frontier,
}

/// Recovers the log in `files`. When the files are writable, cut tails are truncated
/// and synced; otherwise nothing is changed (readers beside a running writer).
pub fn recover(files: &LogFiles) -> Result<Recovered> {
    let st = state::read(&files.state)?
        .ok_or_else(|| StoreError::Corrupt(format!("{}: no valid state slot", layout::STATE)))?;

    // Streams: every valid record; the state's length must be covered.
    let (recs, streams_len) = records::scan(&files.streams, layout::STREAMS, HEADER_LEN)?;
    if streams_len < st.streams_len {
        return Err(StoreError::Corrupt(format!("{}: damaged record at offset {streams_len}", layout::STREAMS)));
    }
    let mut streams = Streams::new();
    for (offset, p) in recs {
        let r: StreamRecord = serde_json::from_slice(&p)
            .map_err(|_| StoreError::Corrupt(format!("{} offset {offset}: bad stream record", layout::STREAMS)))?;
        if !streams.insert(r.id, r.name.clone()) {
            return Err(StoreError::Corrupt(format!(
                "{} offset {offset}: stream {} {:?} out of order",
                layout::STREAMS,
                r.id,
                r.name
            )));
        }
    }

    // Checkpoints: records after the state's length that frame correctly are kept.
    // If the file no longer matches the state (a crash while old checkpoints were
    // being thinned out replaced it), the whole file is scanned instead.
    let ck_file = files.checkpoints();
    let ck_file_len = LogFiles::len(&ck_file, layout::CHECKPOINTS)?;
    let anchored = st
        .newest_checkpoint_offset
        .map(|o| records::read_at(&ck_file, layout::CHECKPOINTS, o, ck_file_len))
        .transpose()?;
    let state_matches = ck_file_len >= st.checkpoints_len
        && (st.newest_checkpoint_offset.is_none() || anchored.as_ref().is_some_and(Option::is_some));
    let scan_from = if state_matches { st.checkpoints_len.max(HEADER_LEN) } else { HEADER_LEN };
    let (after, checkpoints_len) = records::scan(&ck_file, layout::CHECKPOINTS, scan_from)?;
    let newest_checkpoint = match (after.last(), st.newest_checkpoint_offset, anchored.flatten()) {
        (Some((o, p)), _, _) => Some(StoredCheckpoint::decode(p, *o)?),
        (None, Some(o), Some(p)) if state_matches => Some(StoredCheckpoint::decode(&p, o)?),
        (None, Some(o), _) => {
            return Err(StoreError::Corrupt(format!(
                "{} offset {o}: newest checkpoint record damaged or missing",
                layout::CHECKPOINTS
            )));
        }
        (None, None, _) => None,
    };
    // The state was written right after the checkpoint of its tree size; thinning
    // keeps the newest checkpoint, so losing it is damage or tampering.
    if st.newest_checkpoint_offset.is_some() && newest_checkpoint.as_ref().is_none_or(|c| c.tree_size < st.tree_size) {
        return Err(StoreError::Corrupt(format!(
            "{} offset {}: the checkpoint of tree size {} recorded in {} is missing",
            layout::CHECKPOINTS,
            st.newest_checkpoint_offset.unwrap_or_default(),
            st.tree_size,
            layout::STATE
        )));
    }

    // Roll forward from the state's size.
    let n_max = files.leaf_count()?.min(files.locator_count()?).min(files.hashes.len_of(0)?);
    if n_max < st.tree_size {
        return Err(StoreError::CheckpointBeyondData {
            checkpoint_size: st.tree_size,
            intact_size: n_max,
            reason: "leaf, locator or hash records that were durable are missing".into(),
        });
    }
    let mut size = n_max;
    let mut cut_reason = String::new();
    // (segno, chunk offset) → (first index, highest index, chunk end) of chunks used after S.
    let mut chunks_used: BTreeMap<(u32, u64), (u64, u64, u64)> = BTreeMap::new();
    let mut decoded: HashMap<(u32, u64), Arc<Chunk>> = HashMap::new();
    let mut i = st.tree_size;
    'outer: while i < n_max {
        let count = BATCH.min(n_max - i);
        let leaves = files.read_leaf_bytes(i, count)?;
        let locs = files.read_locators(i, count)?;
        let hashes = files.read_leaf_hashes(i, count)?;
        for j in 0..count as usize {
            let index = i + j as u64;
            let raw = &leaves[j * LEAF_LEN..(j + 1) * LEAF_LEN];
            let check = (|| -> std::result::Result<(), String> {
                let leaf = Leaf::decode(raw).map_err(|e| e.to_string())?;
                if leaf_hash(raw) != hashes[j] {
                    return Err("leaf hash differs from the stored hash".into());
                }
                if streams.name(leaf.stream_id).is_none() {
                    return Err(format!("unknown stream id {}", leaf.stream_id));
                }
                let loc = locs[j];
                // A segment retention removed: its entries were under a signed
                // checkpoint when it was deleted, so the root check below covers them.
                if files.deleted_segment(loc.segno).is_some() {
                    if newest_checkpoint.as_ref().is_some_and(|c| index < c.tree_size) {
                        return Ok(());
                    }
                    return Err("entry in a deleted segment beyond the newest checkpoint".into());
                }
                let (_, info) = files.segment(loc.segno).map_err(|e| e.to_string())?;
                if info.stream != leaf.stream_id {
                    return Err("locator names a segment of another stream".into());
                }
                let chunk = match decoded.get(&(loc.segno, loc.offset)) {
                    Some(c) => c.clone(),
                    None => {
                        let c = files.read_chunk(loc.segno, loc.offset).map_err(|e| e.to_string())?;
                        decoded.insert((loc.segno, loc.offset), c.clone());
                        c
                    }
                };
                let payload = chunk.payload(index).ok_or("chunk does not hold the entry")?;
                if !leaf.matches_payload(payload) {
                    return Err("payload does not match the leaf digest".into());
                }
                // A stream registration whose streams.dat record was lost belongs to
                // a commit that was never acknowledged (both are synced by it).
                if leaf.stream_id == SYSTEM_STREAM_ID
                    && let Ok(r) = serde_json::from_slice::<serde_json::Value>(payload)
                    && r["type"] == "stream"
                    && r["stream_id"].as_u64().and_then(|id| streams.name(u32::try_from(id).ok()?))
                        != r["name"].as_str()
                {
                    return Err(format!("stream registration {} is not in {}", r["stream_id"], layout::STREAMS));
                }
                let h = files.read_chunk_header(loc.segno, loc.offset).map_err(|e| e.to_string())?;
                let last = chunk.entries.last().map(|(ix, _)| *ix).unwrap_or(index);
                chunks_used.insert((loc.segno, loc.offset), (chunk.entries[0].0, last, loc.offset + h.total_len()));
                Ok(())
            })();
            if let Err(reason) = check {
                size = index;
                cut_reason = reason;
                break 'outer;
            }
        }
        i += count;
    }
    // A chunk is all-or-nothing: cut back to the first entry of any chunk that holds an
    // entry at or past the cut.
    loop {
        let lowest = chunks_used.values().filter(|(_, last, _)| *last >= size).map(|(first, _, _)| *first).min();
        match lowest {
            Some(first) if first < size => {
                size = first;
                if cut_reason.is_empty() {
                    cut_reason = "entry belongs to a partly written commit".into();
                }
            }
            _ => break,
        }
    }
    chunks_used.retain(|_, (_, last, _)| *last < size);

    if let Some(cp) = &newest_checkpoint
        && cp.tree_size > size
    {
        return Err(StoreError::CheckpointBeyondData {
            checkpoint_size: cp.tree_size,
            intact_size: size,
            reason: cut_reason,
        });
    }
    if size < st.tree_size {
        return Err(StoreError::CheckpointBeyondData {
            checkpoint_size: st.tree_size,
            intact_size: size,
            reason: cut_reason,
        });
    }

    // Segment lengths: the state's open segments, extended by chunks used after it;
    // segments created after the state that no kept entry uses are removed.
    // A segment the state still lists as open may have been sealed by a later commit
    // and deleted by retention before the next state was written: it is gone, not open.
    let mut open: BTreeMap<u32, OpenSegmentState> = st
        .open_segments
        .iter()
        .filter(|s| files.deleted_segment(s.segno).is_none())
        .map(|s| (s.segno, s.clone()))
        .collect();
    let mut next_segno = st.next_segno;
    for (&(segno, _), &(_, _, end)) in &chunks_used {
        let entry = match open.get_mut(&segno) {
            Some(e) => e,
            None => {
                let (_, info) = files.segment(segno)?;
                open.entry(segno).or_insert(OpenSegmentState {
                    segno,
                    stream: info.stream,
                    window_start_ns: info.window_start_ns,
                    len: HEADER_LEN,
                })
            }
        };
        entry.len = entry.len.max(end);
        next_segno = next_segno.max(segno + 1);
    }
    // Numbers of deleted segments are never reused (reads would take a new segment's
    // entries for deleted ones).
    if let Some(max_deleted) = files.deleted_segments().iter().map(|(segno, _)| *segno).max() {
        next_segno = next_segno.max(max_deleted + 1);
    }
    let mut orphans = Vec::new();
    for name in files.backend.list(layout::SEGMENTS_DIR).map_err(StoreError::io("listing", layout::SEGMENTS_DIR))? {
        if let Some(segno) = layout::parse_segment(&name)
            && segno >= st.next_segno
            && !open.contains_key(&segno)
        {
            orphans.push(segno);
        }
    }
    // An open segment whose stream already has a newer open segment was sealed.
    let mut newest_per_stream: HashMap<u32, u32> = HashMap::new();
    for s in open.values() {
        let e = newest_per_stream.entry(s.stream).or_insert(s.segno);
        *e = (*e).max(s.segno);
    }
    let open_segments: Vec<OpenSegmentState> =
        open.values().filter(|s| newest_per_stream.get(&s.stream) == Some(&s.segno)).cloned().collect();

    if files.writable() {
        truncate(files, size, &open, &orphans, streams_len, checkpoints_len)?;
        repair_upper_levels(files, st.tree_size, size)?;
    }

    let frontier = Frontier::from_reader(&files.hashes, size)?;
    if let Some(cp) = &newest_checkpoint {
        let root = root_hash(&files.hashes, cp.tree_size)?;
        let note = stele_tlog::note::Note::parse(cp.note.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("newest checkpoint: {e}")))?;
        let body = stele_tlog::checkpoint::Checkpoint::parse_body(&note.text)
            .map_err(|e| StoreError::Corrupt(format!("newest checkpoint: {e}")))?;
        if body.root_hash != root || body.tree_size != cp.tree_size {
            return Err(StoreError::Corrupt(format!(
                "the stored tree does not match the newest signed checkpoint (size {}): {}",
                cp.tree_size,
                locate_tree_damage(files, cp.tree_size)?
            )));
        }
    }
    Ok(Recovered {
        size,
        state: st,
        streams,
        streams_len,
        newest_checkpoint,
        checkpoints_len,
        open_segments,
        next_segno,
        frontier,
    })
}

fn truncate(
    files: &LogFiles,
    size: u64,
    open: &BTreeMap<u32, OpenSegmentState>,
    orphans: &[u32],
    streams_len: u64,
    checkpoints_len: u64,
) -> Result<()> {
    let cut = |f: &Arc<dyn crate::backend::StorageFile>, name: &str, len: u64| -> Result<()> {
        if LogFiles::len(f, name)? != len {
            f.set_len(len).map_err(StoreError::io("truncating", name))?;
            f.sync().map_err(StoreError::io("syncing", name))?;
        }
        Ok(())
    };
    cut(&files.leaves, layout::LEAVES, HEADER_LEN + size * LEAF_LEN as u64)?;
    cut(&files.locators, layout::LOCATORS, HEADER_LEN + size * LOCATOR_LEN as u64)?;
    cut(&files.streams, layout::STREAMS, streams_len)?;
    cut(&files.checkpoints(), layout::CHECKPOINTS, checkpoints_len)?;
    files.hashes.truncate_to(size)?;
    files.hashes.sync(0..files.hashes.levels())?;
    for s in open.values() {
        let (f, _) = files.segment(s.segno)?;
        cut(&f, &layout::segment(s.segno), s.len)?;
    }
    for &segno in orphans {
        files.forget_segment(segno);
        let name = layout::segment(segno);
        files.backend.remove(&name).map_err(StoreError::io("removing", &name))?;
    }
    Ok(())
}

/// Says where a stored tree of `size` leaves that does not match its checkpoint is
/// damaged: the first stored hash that differs from what it is computed from.
fn locate_tree_damage(files: &LogFiles, size: u64) -> Result<String> {
    let mut i = 0;
    while i < size {
        let count = BATCH.min(size - i);
        let leaves = files.read_leaf_bytes(i, count)?;
        let hashes = files.read_leaf_hashes(i, count)?;
        if let Some(j) =
            (0..count as usize).find(|&j| leaf_hash(&leaves[j * LEAF_LEN..(j + 1) * LEAF_LEN]) != hashes[j])
        {
            let index = i + j as u64;
            return Ok(format!(
                "entry {index} ({}): stored leaf hash differs from the hash of the leaf record",
                layout::hash_level(0)
            ));
        }
        i += count;
    }
    let mut k = 1;
    while k < files.hashes.levels() && stored_count(size, k) > 0 {
        for node in 0..stored_count(size, k).min(files.hashes.len_of(k)?) {
            let below = files.hashes.read_range(k - 1, node * TILE_WIDTH, TILE_WIDTH)?;
            if reduce_perfect(&below) != files.hashes.read_range(k, node, 1)?[0] {
                let span = TILE_WIDTH.pow(k);
                return Ok(format!(
                    "{} node {node} (entries {}..{}) differs from the hashes below it",
                    layout::hash_level(k),
                    node * span,
                    (node + 1) * span
                ));
            }
        }
        k += 1;
    }
    Ok(format!(
        "{} and {} agree with each other, not with the checkpoint: leaves were replaced",
        layout::LEAVES,
        layout::hash_level(0)
    ))
}

/// Recomputes tile levels ≥ 1 for nodes completed after `from` (they may be missing
/// or torn after a crash; they are derived from level 0, which was checked).
fn repair_upper_levels(files: &LogFiles, from: u64, size: u64) -> Result<()> {
    let mut k = 1;
    while stored_count(size, k) > 0 {
        let want = stored_count(size, k);
        let start = stored_count(from, k);
        if start < want {
            let below = files.hashes.read_range(k - 1, start * TILE_WIDTH, (want - start) * TILE_WIDTH)?;
            let mut bytes = Vec::with_capacity(below.len() / 256 * 32);
            for group in below.chunks_exact(TILE_WIDTH as usize) {
                bytes.extend_from_slice(&reduce_perfect(group).0);
            }
            files.hashes.write_at(k, start, &bytes)?;
            files.hashes.sync([k])?;
        }
        k += 1;
    }
    Ok(())
}
