//! `checkpoints.dat`: every signed checkpoint the log keeps, as CRC-framed records
//! `[u64 BE tree size][u64 BE signing time, ns][signed note bytes]`, in signing order
//! (tree sizes never decrease).

use crate::error::{Result, StoreError};
use crate::files::LogFiles;
use crate::header::HEADER_LEN;
use crate::layout::CHECKPOINTS;
use crate::records;

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it covers.
    pub tree_size: u64,
    /// When it was signed, ns since the epoch.
    pub signed_ns: u64,
    /// The signed note (C2SP tlog-checkpoint in a C2SP signed note).
    pub note: String,
    /// Offset of its record in `checkpoints.dat`.
    pub offset: u64,
}

impl StoredCheckpoint {
    /// Encodes the record payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(16 + self.note.len());
        p.extend_from_slice(&self.tree_size.to_be_bytes());
        p.extend_from_slice(&self.signed_ns.to_be_bytes());
        p.extend_from_slice(self.note.as_bytes());
        p
    }

    /// Decodes a record payload found at `offset`.
    pub fn decode(p: &[u8], offset: u64) -> Result<StoredCheckpoint> {
        if p.len() < 16 {
            return Err(StoreError::Corrupt(format!("{CHECKPOINTS} offset {offset}: record too short")));
        }
        let note = std::str::from_utf8(&p[16..])
            .map_err(|_| StoreError::Corrupt(format!("{CHECKPOINTS} offset {offset}: note is not UTF-8")))?;
        Ok(StoredCheckpoint {
            tree_size: u64::from_be_bytes(p[..8].try_into().expect("8")),
            signed_ns: u64::from_be_bytes(p[8..16].try_into().expect("8")),
            note: note.to_string(),
            offset,
        })
    }
}

/// Reads every stored checkpoint up to `valid_len` (the recovered length), oldest first.
/// A record that does not frame correctly is damage and is reported.
pub fn read_all(files: &LogFiles, valid_len: u64) -> Result<Vec<StoredCheckpoint>> {
    let (recs, end) = records::scan(&files.checkpoints(), CHECKPOINTS, HEADER_LEN)?;
    if end < valid_len {
        return Err(StoreError::Corrupt(format!(
            "{CHECKPOINTS}: record at offset {end} is damaged (file valid to {valid_len})"
        )));
    }
    recs.into_iter().filter(|(o, _)| *o < valid_len).map(|(o, p)| StoredCheckpoint::decode(&p, o)).collect()
}
