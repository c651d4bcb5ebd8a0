//! Payload chunks: the unit in which payloads are written to a segment.
//!
//! A chunk holds the payloads of one stream from one group commit (split so that no
//! chunk's body exceeds [`CHUNK_TARGET_BYTES`] unless a single payload does), compressed
//! together before their first write.
//!
//! Layout (integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CHK1` |
//! | 4 | 4 | CRC-32C of bytes 8..end of chunk |
//! | 8 | 1 | compression: 0 none, 1 zstd |
//! | 9 | 3 | reserved, zero |
//! | 12 | 4 | entry count (≥ 1) |
//! | 16 | 8 | index of the first entry |
//! | 24 | 4 | body length before compression |
//! | 28 | 4 | stored body length (bytes that follow) |
//! | 32 | … | stored body |
//!
//! The body (after decompression) is, per entry: LEB128 index delta (0 for the first
//! entry, then the difference to the previous index, ≥ 1), LEB128 payload length,
//! payload bytes.

use std::cell::RefCell;
use std::ops::Range;

/// Chunk header length.
pub const CHUNK_HEADER_LEN: usize = 32;
/// Target body size: a chunk is closed once its body reaches this size. Bounds the
/// work of reading one entry (one chunk is decompressed) while keeping chunks large
/// enough to compress well.
pub const CHUNK_TARGET_BYTES: usize = 256 * 1024;
/// Largest body accepted when reading (a single payload may be up to the entry limit).
pub const MAX_CHUNK_BODY: usize = 1 << 30;
const MAGIC: [u8; 4] = *b"CHK1";

/// Compression of a chunk body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// zstd at the given level.
    Zstd(i32),
}

/// A decoded chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// CRC-32C of the chunk after the CRC field.
    pub crc: u32,
    /// 0 none, 1 zstd.
    pub compression: u8,
    /// Number of entries.
    pub count: u32,
    /// Index of the first entry.
    pub first_index: u64,
    /// Body length after decompression.
    pub body_len: u32,
    /// Stored body length.
    pub stored_len: u32,
}

impl ChunkHeader {
    /// Total bytes of the chunk on disk.
    pub fn total_len(&self) -> u64 {
        CHUNK_HEADER_LEN as u64 + u64::from(self.stored_len)
    }

    /// Parses a header; `Err` names what is wrong.
    pub fn parse(b: &[u8]) -> Result<ChunkHeader, &'static str> {
        if b.len() < CHUNK_HEADER_LEN {
            return Err("chunk header truncated");
        }
        if b[..4] != MAGIC {
            return Err("bad chunk magic");
        }
        if b[9..12] != [0, 0, 0] || b[8] > 1 {
            return Err("bad chunk flags");
        }
        let h = ChunkHeader {
            crc: u32::from_be_bytes(b[4..8].try_into().expect("4")),
            compression: b[8],
            count: u32::from_be_bytes(b[12..16].try_into().expect("4")),
            first_index: u64::from_be_bytes(b[16..24].try_into().expect("8")),
            body_len: u32::from_be_bytes(b[24..28].try_into().expect("4")),
            stored_len: u32::from_be_bytes(b[28..32].try_into().expect("4")),
        };
        if h.count == 0 || h.body_len as usize > MAX_CHUNK_BODY || h.stored_len as usize > MAX_CHUNK_BODY {
            return Err("bad chunk lengths");
        }
        Ok(h)
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes one chunk of `(index, payload)` pairs with strictly increasing indexes.
pub fn encode(entries: &[(u64, &[u8])], compression: Compression) -> Vec<u8> {
    assert!(!entries.is_empty(), "a chunk holds at least one entry");
    let mut body = Vec::with_capacity(entries.iter().map(|(_, p)| p.len() + 8).sum());
    let mut prev = entries[0].0;
    for (i, (index, payload)) in entries.iter().enumerate() {
        assert!(i == 0 || *index > prev, "chunk indexes must increase");
        put_varint(&mut body, index - prev);
        put_varint(&mut body, payload.len() as u64);
        body.extend_from_slice(payload);
        prev = *index;
    }
    let (code, stored) = match compression {
        Compression::None => (0u8, body.clone()),
        Compression::Zstd(level) => {
            let c = COMPRESSOR.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell.as_ref().is_none_or(|(l, _)| *l != level) {
                    *cell = Some((level, zstd::bulk::Compressor::new(level).expect("zstd context")));
                }
                let (_, c) = cell.as_mut().expect("set above");
                c.compress(&body).expect("zstd compression of an in-memory buffer")
            });
            (1u8, c)
        }
    };
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + stored.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.push(code);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&entries[0].0.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_be_bytes());
    out.extend_from_slice(&stored);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A decompressed chunk: the body and where each entry's payload lies in it.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    /// Decompressed body.
    pub body: Vec<u8>,
    /// `(index, payload range in body)` per entry, in index order.
    pub entries: Vec<(u64, Range<usize>)>,
}

impl Chunk {
    /// The payload of entry `index`, if this chunk holds it.
    pub fn payload(&self, index: u64) -> Option<&[u8]> {
        let pos = self.entries.binary_search_by_key(&index, |(i, _)| *i).ok()?;
        Some(&self.body[self.entries[pos].1.clone()])
    }
}

/// Checks the CRC of a whole chunk (header + stored body) and decodes it.
/// `Err` names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Chunk, &'static str> {
    let h = ChunkHeader::parse(bytes)?;
    if bytes.len() as u64 != h.total_len() {
        return Err("chunk length does not match its header");
    }
    if crc32c::crc32c(&bytes[8..]) != h.crc {
        return Err("chunk CRC mismatch");
    }
    let stored = &bytes[CHUNK_HEADER_LEN..];
    let body = match h.compression {
        0 => stored.to_vec(),
        _ => DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            let d = cell.get_or_insert_with(|| zstd::bulk::Decompressor::new().expect("zstd context"));
            d.decompress(stored, h.body_len as usize).map_err(|_| "zstd decompression failed")
        })?,
    };
    if body.len() != h.body_len as usize {
        return Err("decompressed length does not match the header");
    }
    let mut entries = Vec::with_capacity(h.count as usize);
    let mut pos = 0usize;
    let mut index = h.first_index;
    for i in 0..h.count {
        let delta = get_varint(&body, &mut pos).ok_or("truncated entry header")?;
        if (i == 0) != (delta == 0) {
            return Err("bad index delta");
        }
        index = index.checked_add(delta).ok_or("index overflow")?;
        let len = get_varint(&body, &mut pos).ok_or("truncated entry header")? as usize;
        let end = pos.checked_add(len).filter(|e| *e <= body.len()).ok_or("entry extends past the chunk")?;
        entries.push((index, pos..end));
        pos = end;
    }
    if pos != body.len() {
        return Err("trailing bytes in chunk body");
    }
    Ok(Chunk { body, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_compressions() {
        let entries: Vec<(u64, &[u8])> = vec![(5, b"{\"a\":1}"), (7, b""), (100, b"{\"b\":\"xyz\"}")];
        for c in [Compression::None, Compression::Zstd(3)] {
            let bytes = encode(&entries, c);
            let chunk = decode(&bytes).unwrap();
            assert_eq!(chunk.entries.len(), 3);
            assert_eq!(chunk.payload(5).unwrap(), b"{\"a\":1}");
            assert_eq!(chunk.payload(7).unwrap(), b"");
            assert_eq!(chunk.payload(100).unwrap(), b"{\"b\":\"xyz\"}");
            assert!(chunk.payload(6).is_none());
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                assert!(decode(&bad).is_err(), "flip at {i} not detected");
            }
            assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
