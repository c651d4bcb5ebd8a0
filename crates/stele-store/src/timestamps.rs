//! `timestamps.dat`: RFC 3161 time-stamp tokens over checkpoints, append-only.
//!
//! After the 32-byte header (kind `TS`), CRC-framed records (see [`crate::records`]):
//! `[u32 payload length][u32 CRC-32C of payload][payload]`, the payload being
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | tree size of the checkpoint stamped (≥ 1) |
//! | 8 | 8 | when the token was obtained, ns since the Unix epoch (the log's clock) |
//! | 16 | 2 | length U of the TSA's URL |
//! | 18 | U | the TSA's URL, UTF-8 |
//! | 18 + U | … | the token: DER `ContentInfo` of a CMS `SignedData` over a TSTInfo |
//!
//! The token's message imprint is SHA-256 of the checkpoint body at that tree size
//! (`<origin>\n<size>\n<base64 root>\n`), which a verifier recomputes from the tree,
//! so a token stays checkable after its checkpoint record is thinned out.
//!
//! Only the last record can be torn by a crash (each append is synced before the next
//! starts), so [`append`] overwrites a last frame that fails its CRC, and [`read`]
//! reports it as a torn tail rather than as damage. A record that fails its CRC with
//! records after it is damage.

use std::sync::{Arc, Mutex};

use crate::backend::StorageFile;
use crate::error::{Result, StoreError};
use crate::files::LogFiles;
use crate::header::{HEADER_LEN, Header, Kind};
use crate::layout;
use crate::records::{self, FRAME_LEN, MAX_RECORD};

/// Longest TSA URL stored, bytes.
pub const MAX_TSA_URL: usize = 1024;
/// Largest token stored, bytes (tokens hold a few certificates and one signature).
pub const MAX_TOKEN: usize = 64 << 10;

/// Serialises appends within the process (the data directory's `LOCK` excludes other
/// writers).
static APPEND: Mutex<()> = Mutex::new(());

/// One stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampRecord {
    /// Tree size of the checkpoint the token stamps.
    pub tree_size: u64,
    /// When the token was obtained, ns since the Unix epoch.
    pub obtained_ns: u64,
    /// URL of the TSA that issued it.
    pub tsa: String,
    /// The DER token.
    pub token: Vec<u8>,
}

impl TimestampRecord {
    /// Encodes the record payload (layout in the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(18 + self.tsa.len() + self.token.len());
        p.extend_from_slice(&self.tree_size.to_be_bytes());
        p.extend_from_slice(&self.obtained_ns.to_be_bytes());
        p.extend_from_slice(&(self.tsa.len() as u16).to_be_bytes());
        p.extend_from_slice(self.tsa.as_bytes());
        p.extend_from_slice(&self.token);
        p
    }

    /// Decodes a record payload.
    ///
    /// # Errors
    /// A message when the payload is too short, the URL is not UTF-8, or the tree size
    /// is 0.
    pub fn decode(p: &[u8]) -> std::result::Result<TimestampRecord, String> {
        if p.len() < 18 {
            return Err(format!("{} bytes, shorter than the 18-byte record head", p.len()));
        }
        let tree_size = u64::from_be_bytes(p[..8].try_into().expect("8"));
        let obtained_ns = u64::from_be_bytes(p[8..16].try_into().expect("8"));
        let u = usize::from(u16::from_be_bytes(p[16..18].try_into().expect("2")));
        let tsa = p.get(18..18 + u).ok_or("the TSA URL runs past the record")?;
        let tsa = String::from_utf8(tsa.to_vec()).map_err(|_| "the TSA URL is not UTF-8")?;
        if tree_size == 0 {
            return Err("tree size 0 has no checkpoint".into());
        }
        Ok(TimestampRecord { tree_size, obtained_ns, tsa, token: p[18 + u..].to_vec() })
    }
}

/// What [`read`] found in `timestamps.dat`.
#[derive(Clone, Debug, Default)]
pub struct StoredTimestamps {
    /// Every valid record with its offset in the file, in file order.
    pub records: Vec<(u64, TimestampRecord)>,
    /// Damaged records (CRC or layout) with records after them: offset and what is wrong.
    pub damaged: Vec<(u64, String)>,
    /// Offset of a torn last record (an interrupted append), if any.
    pub torn_tail: Option<u64>,
}

/// One frame found by walking length fields.
struct Frame {
    offset: u64,
    len: u32,
    crc_ok: bool,
    payload: Vec<u8>,
}

/// Walks the frames of `file` by their length fields, up to the last complete one.
/// Returns the frames and where the walk stopped.
fn walk(file: &Arc<dyn StorageFile>) -> Result<(Vec<Frame>, u64)> {
    let name = layout::TIMESTAMPS;
    let file_len = file.len().map_err(StoreError::io("reading", name))?;
    let mut offset = HEADER_LEN;
    let mut frames = Vec::new();
    while offset + FRAME_LEN <= file_len {
        let mut h = [0u8; 8];
        file.read_at(offset, &mut h).map_err(StoreError::io("reading", name))?;
        let len = u32::from_be_bytes(h[..4].try_into().expect("4"));
        let crc = u32::from_be_bytes(h[4..].try_into().expect("4"));
        if len > MAX_RECORD || offset + FRAME_LEN + u64::from(len) > file_len {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        file.read_at(offset + FRAME_LEN, &mut payload).map_err(StoreError::io("reading", name))?;
        let crc_ok = crc32c::crc32c(&payload) == crc;
        frames.push(Frame { offset, len, crc_ok, payload });
        offset += FRAME_LEN + u64::from(len);
    }
    Ok((frames, offset))
}

fn open(files: &LogFiles) -> Result<Option<Arc<dyn StorageFile>>> {
    let name = layout::TIMESTAMPS;
    if !files.backend.exists(name) {
        return Ok(None);
    }
    let f = files.backend.open(name, false).map_err(StoreError::io("opening", name))?;
    Header::read(&f, name, Kind::Timestamps)?;
    Ok(Some(f))
}

/// Reads every record of `timestamps.dat` (an absent file holds none).
///
/// # Errors
/// I/O errors, and a bad file header.
pub fn read(files: &LogFiles) -> Result<StoredTimestamps> {
    let Some(f) = open(files)? else { return Ok(StoredTimestamps::default()) };
    let (frames, end) = walk(&f)?;
    let file_len = f.len().map_err(StoreError::io("reading", layout::TIMESTAMPS))?;
    let mut out = StoredTimestamps::default();
    let last = frames.len().checked_sub(1);
    for (i, fr) in frames.iter().enumerate() {
        let decoded = if fr.crc_ok { TimestampRecord::decode(&fr.payload) } else { Err(String::new()) };
        match decoded {
            Ok(r) => out.records.push((fr.offset, r)),
            Err(_) if Some(i) == last && end == file_len && !fr.crc_ok => out.torn_tail = Some(fr.offset),
            Err(e) => {
                let claimed = fr.payload.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8")));
                let what = if fr.crc_ok { e } else { format!("record of {} bytes fails its CRC-32C", fr.len) };
                let what = match claimed {
                    Some(n) => format!("{what} (its bytes name tree size {n})"),
                    None => what,
                };
                out.damaged.push((fr.offset, what));
            }
        }
    }
    if end < file_len && out.torn_tail.is_none() {
        out.torn_tail = Some(end);
    }
    Ok(out)
}

/// Reads the record at `offset` (as listed by [`read`]).
///
/// # Errors
/// [`StoreError::Corrupt`] when no valid record is there.
pub fn read_at(files: &LogFiles, offset: u64) -> Result<TimestampRecord> {
    let name = layout::TIMESTAMPS;
    let f = open(files)?.ok_or_else(|| StoreError::Corrupt(format!("{name} is missing")))?;
    let len = f.len().map_err(StoreError::io("reading", name))?;
    let p = records::read_at(&f, name, offset, len)?
        .ok_or_else(|| StoreError::Corrupt(format!("{name} offset {offset}: no valid record")))?;
    TimestampRecord::decode(&p).map_err(|e| StoreError::Corrupt(format!("{name} offset {offset}: {e}")))
}

/// Appends `record` durably (written, then synced) and returns its offset. Creates the
/// file on first use. A torn last record left by an interrupted append is overwritten.
///
/// # Errors
/// [`StoreError::InvalidArgument`] for a read-only `files`, a tree size of 0, a URL or
/// token over its limit; I/O errors.
pub fn append(files: &LogFiles, record: &TimestampRecord) -> Result<u64> {
    let name = layout::TIMESTAMPS;
    if !files.writable() {
        return Err(StoreError::InvalidArgument("the log was opened read-only".into()));
    }
    if record.tree_size == 0 || record.tsa.len() > MAX_TSA_URL || record.token.len() > MAX_TOKEN {
        return Err(StoreError::InvalidArgument(format!(
            "timestamp record: tree size must be positive, the URL at most {MAX_TSA_URL} bytes and the token at most {MAX_TOKEN}"
        )));
    }
    let _guard = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    let f = match open(files)? {
        Some(f) => f,
        None => {
            let f = files.backend.open(name, true).map_err(StoreError::io("creating", name))?;
            f.set_len(0).map_err(StoreError::io("truncating", name))?;
            Header::new(Kind::Timestamps, 0, 0, 0).write(&f, name)?;
            f.sync().map_err(StoreError::io("syncing", name))?;
            f
        }
    };
    let (frames, mut end) = walk(&f)?;
    if let Some(last) = frames.last()
        && !last.crc_ok
    {
        end = last.offset;
    }
    let framed = records::frame(&record.encode());
    f.write_at(end, &framed).map_err(StoreError::io("writing", name))?;
    f.set_len(end + framed.len() as u64).map_err(StoreError::io("truncating", name))?;
    f.sync().map_err(StoreError::io("syncing", name))?;
    Ok(end)
}
