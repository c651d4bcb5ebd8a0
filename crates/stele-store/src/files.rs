//! The open files of a data directory and the read paths over them, shared by the
//! writer and by readers (in the same process or another one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use stele_tlog::hash::Hash;
use stele_tlog::leaf::{LEAF_LEN, Leaf};

use crate::backend::{Backend, StorageFile};
use crate::chunk::{self, CHUNK_HEADER_LEN, Chunk, ChunkHeader};
use crate::error::{Result, StoreError};
use crate::hashes::HashLevels;
use crate::header::{HEADER_LEN, Header, Kind};
use crate::layout;
use crate::records;

/// Bytes per locator record: segment number (u32 BE) and chunk offset (u64 BE).
pub const LOCATOR_LEN: usize = 12;
/// Decoded chunks kept in memory for repeated reads (sequential queries, `get`).
const CHUNK_CACHE: usize = 8;

/// Where an entry's payload is: the chunk at `offset` in segment `segno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Locator {
    /// Segment number.
    pub segno: u32,
    /// Offset of the chunk in the segment file.
    pub offset: u64,
}

impl Locator {
    /// Encodes the 12-byte record.
    pub fn encode(&self) -> [u8; LOCATOR_LEN] {
        let mut b = [0u8; LOCATOR_LEN];
        b[..4].copy_from_slice(&self.segno.to_be_bytes());
        b[4..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Decodes a 12-byte record.
    pub fn decode(b: &[u8]) -> Locator {
        Locator {
            segno: u32::from_be_bytes(b[..4].try_into().expect("4")),
            offset: u64::from_be_bytes(b[4..12].try_into().expect("8")),
        }
    }
}

/// A segment's identity from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Stream id.
    pub stream: u32,
    /// Start of the segment's time window, ns.
    pub window_start_ns: u64,
}

/// An opened segment file and its identity.
type OpenedSegment = (Arc<dyn StorageFile>, SegmentInfo);
/// A decoded chunk keyed by (segment number, offset).
type CachedChunk = ((u32, u64), Arc<Chunk>);

/// Open files of one data directory.
pub struct LogFiles {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// `leaves.dat`.
    pub leaves: Arc<dyn StorageFile>,
    /// `locators.dat`.
    pub locators: Arc<dyn StorageFile>,
    /// Hash levels.
    pub hashes: HashLevels,
    /// `checkpoints.dat` (replaced when old checkpoints are thinned out).
    checkpoints: std::sync::RwLock<Arc<dyn StorageFile>>,
    /// `streams.dat`.
    pub streams: Arc<dyn StorageFile>,
    /// `state.dat`.
    pub state: Arc<dyn StorageFile>,
    segments: Mutex<HashMap<u32, OpenedSegment>>,
    chunk_cache: Mutex<Vec<CachedChunk>>,
    /// Segments removed by retention → index of their deletion record.
    deleted: std::sync::RwLock<HashMap<u32, u64>>,
    /// End of the last valid record of `deletions.dat` (0: no file yet): where the next
    /// record goes. Kept rather than re-scanned, so a read error can never make an
    /// append overwrite a record.
    deletions_end: Mutex<u64>,
    writable: bool,
}

fn open_checked(backend: &Arc<dyn Backend>, name: &str, kind: Kind) -> Result<Arc<dyn StorageFile>> {
    let f = backend.open(name, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::Corrupt(format!("{name} is missing"))
        } else {
            StoreError::Io { op: "opening", file: name.to_string(), source: e }
        }
    })?;
    Header::read(&f, name, kind)?;
    Ok(f)
}

impl LogFiles {
    /// Opens the files of an existing data directory, checking each header.
    pub fn open(backend: Arc<dyn Backend>, writable: bool) -> Result<LogFiles> {
        let (deleted, deletions_end) = read_deletions(&backend)?;
        Ok(LogFiles {
            leaves: open_checked(&backend, layout::LEAVES, Kind::Leaves)?,
            locators: open_checked(&backend, layout::LOCATORS, Kind::Locators)?,
            hashes: HashLevels::open(backend.clone(), writable)?,
            checkpoints: std::sync::RwLock::new(open_checked(&backend, layout::CHECKPOINTS, Kind::Checkpoints)?),
            streams: open_checked(&backend, layout::STREAMS, Kind::Streams)?,
            state: open_checked(&backend, layout::STATE, Kind::State)?,
            segments: Mutex::new(HashMap::new()),
            chunk_cache: Mutex::new(Vec::new()),
            deleted: std::sync::RwLock::new(deleted),
            deletions_end: Mutex::new(deletions_end),
            backend,
            writable,
        })
    }

    /// The deletion record of segment `segno`, if retention removed it.
    pub fn deleted_segment(&self, segno: u32) -> Option<u64> {
        self.deleted.read().unwrap_or_else(|p| p.into_inner()).get(&segno).copied()
    }

    /// Every segment removed by retention, with its deletion record, by segment number.
    pub fn deleted_segments(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> =
            self.deleted.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(s, r)| (*s, *r)).collect();
        v.sort_unstable();
        v
    }

    /// Records (durably) that segment `segno` is removed under the deletion record at
    /// entry `record`. The segment file is removed afterwards by the caller.
    pub fn record_deletion(&self, segno: u32, record: u64) -> Result<()> {
        let name = layout::DELETIONS;
        let mut end = self.deletions_end.lock().unwrap_or_else(|p| p.into_inner());
        let f = if *end >= HEADER_LEN && self.backend.exists(name) {
            open_checked(&self.backend, name, Kind::Deletions)?
        } else {
            // Created whole under another name and renamed into place, so a crash never
            // leaves a `deletions.dat` shorter than its header.
            let tmp = format!("{name}.tmp");
            let f = self.backend.open(&tmp, true).map_err(StoreError::io("creating", &tmp))?;
            f.set_len(0).map_err(StoreError::io("truncating", &tmp))?;
            Header::new(Kind::Deletions, 0, 0, 0).write(&f, &tmp)?;
            f.sync().map_err(StoreError::io("syncing", &tmp))?;
            self.backend.rename(&tmp, name).map_err(StoreError::io("renaming", &tmp))?;
            *end = HEADER_LEN;
            open_checked(&self.backend, name, Kind::Deletions)?
        };
        let mut payload = Vec::with_capacity(12);
        payload.extend_from_slice(&segno.to_be_bytes());
        payload.extend_from_slice(&record.to_be_bytes());
        f.write_at(*end, &records::frame(&payload)).map_err(StoreError::io("writing", name))?;
        f.set_len(*end + records::FRAME_LEN + 12).map_err(StoreError::io("truncating", name))?;
        f.sync().map_err(StoreError::io("syncing", name))?;
        *end += records::FRAME_LEN + 12;
        self.deleted.write().unwrap_or_else(|p| p.into_inner()).insert(segno, record);
        Ok(())
    }

    /// Creates the empty files of a new data directory.
    pub fn create(backend: &Arc<dyn Backend>) -> Result<()> {
        for (name, kind) in [
            (layout::LEAVES, Kind::Leaves),
            (layout::LOCATORS, Kind::Locators),
            (layout::CHECKPOINTS, Kind::Checkpoints),
            (layout::STREAMS, Kind::Streams),
            (layout::STATE, Kind::State),
        ] {
            let f = backend.open(name, true).map_err(StoreError::io("creating", name))?;
            Header::new(kind, 0, 0, 0).write(&f, name)?;
            f.sync().map_err(StoreError::io("syncing", name))?;
        }
        HashLevels::create(backend)
    }

    /// The current `checkpoints.dat`.
    pub fn checkpoints(&self) -> Arc<dyn StorageFile> {
        self.checkpoints.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces `checkpoints.dat` with the file `tmp` (already written and synced).
    pub fn replace_checkpoints(&self, tmp: &str) -> Result<()> {
        let mut guard = self.checkpoints.write().unwrap_or_else(|p| p.into_inner());
        self.backend.rename(tmp, layout::CHECKPOINTS).map_err(StoreError::io("renaming", tmp))?;
        *guard =
            self.backend.open(layout::CHECKPOINTS, false).map_err(StoreError::io("opening", layout::CHECKPOINTS))?;
        Ok(())
    }

    /// Whether files were opened for writing.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Length of a file in bytes.
    pub fn len(file: &Arc<dyn StorageFile>, name: &str) -> Result<u64> {
        file.len().map_err(StoreError::io("reading", name))
    }

    /// Number of complete leaf records in `leaves.dat`.
    pub fn leaf_count(&self) -> Result<u64> {
        Ok(Self::len(&self.leaves, layout::LEAVES)?.saturating_sub(HEADER_LEN) / LEAF_LEN as u64)
    }

    /// Number of complete locator records.
    pub fn locator_count(&self) -> Result<u64> {
        Ok(Self::len(&self.locators, layout::LOCATORS)?.saturating_sub(HEADER_LEN) / LOCATOR_LEN as u64)
    }

    /// Raw bytes of leaves `[start, start + count)`.
    pub fn read_leaf_bytes(&self, start: u64, count: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; count as usize * LEAF_LEN];
        self.leaves
            .read_at(HEADER_LEN + start * LEAF_LEN as u64, &mut buf)
            .map_err(StoreError::io("reading", layout::LEAVES))?;
        Ok(buf)
    }

    /// Decodes leaf `index`.
    pub fn read_leaf(&self, index: u64) -> Result<Leaf> {
        let b = self.read_leaf_bytes(index, 1)?;
        Leaf::decode(&b).map_err(|e| StoreError::Corrupt(format!("entry {index}: leaf record: {e}")))
    }

    /// Locators `[start, start + count)`.
    pub fn read_locators(&self, start: u64, count: u64) -> Result<Vec<Locator>> {
        let mut buf = vec![0u8; count as usize * LOCATOR_LEN];
        self.locators
            .read_at(HEADER_LEN + start * LOCATOR_LEN as u64, &mut buf)
            .map_err(StoreError::io("reading", layout::LOCATORS))?;
        Ok(buf.chunks_exact(LOCATOR_LEN).map(Locator::decode).collect())
    }

    /// Stored level-0 hashes (leaf hashes) `[start, start + count)`.
    pub fn read_leaf_hashes(&self, start: u64, count: u64) -> Result<Vec<Hash>> {
        self.hashes.read_range(0, start, count)
    }

    /// Opens (and caches) segment `segno`, checking its header.
    pub fn segment(&self, segno: u32) -> Result<(Arc<dyn StorageFile>, SegmentInfo)> {
        let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = segs.get(&segno) {
            return Ok(s.clone());
        }
        let name = layout::segment(segno);
        let f = self.backend.open(&name, false).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Corrupt(format!("segment {name} is missing"))
            } else {
                StoreError::Io { op: "opening", file: name.clone(), source: e }
            }
        })?;
        let h = Header::read(&f, &name, Kind::Segment)?;
        if h.b != u64::from(segno) {
            return Err(StoreError::Corrupt(format!("{name}: header names segment {}", h.b)));
        }
        let info = SegmentInfo { stream: h.a, window_start_ns: h.c };
        segs.insert(segno, (f.clone(), info));
        Ok((f, info))
    }

    /// Creates segment `segno` for `stream` and the window starting at `window_start_ns`.
    pub fn create_segment(&self, segno: u32, info: SegmentInfo) -> Result<Arc<dyn StorageFile>> {
        let name = layout::segment(segno);
        let f = self.backend.open(&name, true).map_err(StoreError::io("creating", &name))?;
        f.set_len(0).map_err(StoreError::io("truncating", &name))?;
        Header::new(Kind::Segment, info.stream, u64::from(segno), info.window_start_ns).write(&f, &name)?;
        self.segments.lock().unwrap_or_else(|p| p.into_inner()).insert(segno, (f.clone(), info));
        Ok(f)
    }

    /// Removes the file of a segment `deletions.dat` names as deleted (nothing when it
    /// is already gone). The directory is not fsynced: a removal lost in a crash leaves
    /// a file `verify` notes and the next retention pass removes again.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] when the segment is not recorded as deleted; I/O
    /// errors.
    pub fn remove_deleted_segment(&self, segno: u32) -> Result<()> {
        if self.deleted_segment(segno).is_none() {
            return Err(StoreError::InvalidArgument(format!("segment {segno} is not recorded as deleted")));
        }
        self.forget_segment(segno);
        let name = layout::segment(segno);
        match self.backend.remove_unsynced(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io("removing", &name)(e)),
            _ => Ok(()),
        }
    }

    /// Forgets every cached chunk (after a failed write, whose chunks may be cached).
    pub fn clear_chunk_cache(&self) {
        self.chunk_cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Forgets a cached segment handle and its cached chunks (after removal).
    pub fn forget_segment(&self, segno: u32) {
        self.segments.lock().unwrap_or_else(|p| p.into_inner()).remove(&segno);
        self.chunk_cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|(k, _)| k.0 != segno);
    }

    /// Reads the header of the chunk at `offset` of segment `segno`.
    pub fn read_chunk_header(&self, segno: u32, offset: u64) -> Result<ChunkHeader> {
        let (f, _) = self.segment(segno)?;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        let name = layout::segment(segno);
        f.read_at(offset, &mut h)
            .map_err(|e| io_or_corrupt(e, &name, offset, "chunk header past the end of the segment"))?;
        ChunkHeader::parse(&h).map_err(|e| StoreError::Corrupt(format!("{name} offset {offset}: {e}")))
    }

    /// Reads, checks and decodes the chunk at `offset` of segment `segno` (cached).
    pub fn read_chunk(&self, segno: u32, offset: u64) -> Result<Arc<Chunk>> {
        {
            let cache = self.chunk_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, c)) = cache.iter().find(|(k, _)| *k == (segno, offset)) {
                return Ok(c.clone());
            }
        }
        let h = self.read_chunk_header(segno, offset)?;
        let (f, _) = self.segment(segno)?;
        let name = layout::segment(segno);
        let mut bytes = vec![0u8; h.total_len() as usize];
        f.read_at(offset, &mut bytes)
            .map_err(|e| io_or_corrupt(e, &name, offset, "chunk extends past the end of the segment"))?;
        let c =
            Arc::new(chunk::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("{name} offset {offset}: {e}")))?);
        let mut cache = self.chunk_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() == CHUNK_CACHE {
            cache.remove(0);
        }
        cache.push(((segno, offset), c.clone()));
        Ok(c)
    }

    /// Reads, checks and decodes the chunk at `offset` of segment `segno`, bypassing the
    /// cache (for sequential scans).
    pub fn read_chunk_uncached(&self, segno: u32, offset: u64) -> Result<Arc<Chunk>> {
        let h = self.read_chunk_header(segno, offset)?;
        let (f, _) = self.segment(segno)?;
        let name = layout::segment(segno);
        let mut bytes = vec![0u8; h.total_len() as usize];
        f.read_at(offset, &mut bytes)
            .map_err(|e| io_or_corrupt(e, &name, offset, "chunk extends past the end of the segment"))?;
        Ok(Arc::new(chunk::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("{name} offset {offset}: {e}")))?))
    }

    /// Reads payload of entry `index` and checks it against its leaf.
    pub fn read_payload(&self, index: u64, leaf: &Leaf) -> Result<Vec<u8>> {
        let loc = self.read_locators(index, 1)?[0];
        if let Some(record) = self.deleted_segment(loc.segno) {
            return Err(StoreError::Deleted { index, segment: loc.segno, record });
        }
        let c = self.read_chunk(loc.segno, loc.offset)?;
        let p = c.payload(index).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "entry {index}: not in the chunk its locator names ({} offset {})",
                layout::segment(loc.segno),
                loc.offset
            ))
        })?;
        if !leaf.matches_payload(p) {
            return Err(StoreError::Corrupt(format!("entry {index}: payload does not match its leaf digest")));
        }
        Ok(p.to_vec())
    }
}

/// Reads `deletions.dat` (absent: nothing deleted). A torn last record (an interrupted
/// deletion) is ignored: its segment was not removed yet.
fn read_deletions(backend: &Arc<dyn Backend>) -> Result<(HashMap<u32, u64>, u64)> {
    let name = layout::DELETIONS;
    if !backend.exists(name) {
        return Ok((HashMap::new(), 0));
    }
    let f = open_checked(backend, name, Kind::Deletions)?;
    let (recs, end) = records::scan(&f, name, HEADER_LEN)?;
    let mut out = HashMap::new();
    for (offset, p) in recs {
        if p.len() != 12 {
            return Err(StoreError::Corrupt(format!("{name} offset {offset}: record of {} bytes, not 12", p.len())));
        }
        let segno = u32::from_be_bytes(p[..4].try_into().expect("4"));
        let record = u64::from_be_bytes(p[4..].try_into().expect("8"));
        out.insert(segno, record);
    }
    Ok((out, end))
}

fn io_or_corrupt(e: std::io::Error, name: &str, offset: u64, what: &str) -> StoreError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        StoreError::Corrupt(format!("{name} offset {offset}: {what}"))
    } else {
        StoreError::Io { op: "reading", file: name.to_string(), source: e }
    }
}
