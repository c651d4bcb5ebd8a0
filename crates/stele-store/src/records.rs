//! CRC-framed variable-length records, used by `checkpoints.dat` and `streams.dat`:
//! `[u32 BE payload length][u32 BE CRC-32C of payload][payload]`.

use std::sync::Arc;

use crate::backend::StorageFile;
use crate::error::{Result, StoreError};

/// Bytes before a record's payload.
pub const FRAME_LEN: u64 = 8;
/// Largest record payload (bounds reads of a corrupt length field).
pub const MAX_RECORD: u32 = 1 << 20;

/// Frames `payload` as a record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads the record at `offset`. `Ok(None)` when the bytes there are not a complete,
/// CRC-valid record (a torn tail or the end of the file).
pub fn read_at(file: &Arc<dyn StorageFile>, name: &str, offset: u64, file_len: u64) -> Result<Option<Vec<u8>>> {
    if offset + FRAME_LEN > file_len {
        return Ok(None);
    }
    let mut h = [0u8; 8];
    file.read_at(offset, &mut h).map_err(StoreError::io("reading", name))?;
    let len = u32::from_be_bytes(h[..4].try_into().expect("4"));
    let crc = u32::from_be_bytes(h[4..].try_into().expect("4"));
    if len > MAX_RECORD || offset + FRAME_LEN + u64::from(len) > file_len {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_at(offset + FRAME_LEN, &mut payload).map_err(StoreError::io("reading", name))?;
    if crc32c::crc32c(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Records with their offsets.
pub type Records = Vec<(u64, Vec<u8>)>;

/// Reads consecutive records from `offset` until the end of the file or the first
/// invalid record. Returns `(offset, payload)` pairs and the end of the last valid one.
pub fn scan(file: &Arc<dyn StorageFile>, name: &str, mut offset: u64) -> Result<(Records, u64)> {
    let len = file.len().map_err(StoreError::io("reading", name))?;
    let mut out = Vec::new();
    while let Some(p) = read_at(file, name, offset, len)? {
        let next = offset + FRAME_LEN + p.len() as u64;
        out.push((offset, p));
        offset = next;
    }
    Ok((out, offset))
}
