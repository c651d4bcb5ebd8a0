//! One index block: the normalized fields of entries `[first, first + count)`.
//!
//! A block is `u32` Bloom filter length, `u32` CRC-32C of the filter, the filter, then
//! the zstd-compressed body. The filter holds every value of the seven string fields
//! (actor, action, resource, outcome, source IP, request id, producer) of the block (about 10 bits per distinct value, 3 probes of FNV-1a-derived
//! positions), so a query for an exact value skips blocks that cannot hold it without
//! decompressing them.
//!
//! Body (before zstd), integers big-endian: `u32` string count, then each string as
//! `u16` length and bytes; then per entry: `i64` event time (`i64::MIN` when absent),
//! `u64` received time, `u32` stream id, and `u32` actor, action, resource, outcome,
//! source IP, request id and producer (0 when absent, else 1 + position in the string
//! table).

use stele_formats::Normalized;

/// Entries per block.
pub(crate) const BLOCK_ENTRIES: usize = 4096;
/// Length of a directory record.
pub(crate) const DIR_RECORD_LEN: usize = 72;

/// Fields of one entry as kept in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) received_ns: u64,
    pub(crate) stream: u32,
    pub(crate) fields: Normalized,
}

impl Row {
    /// The time `--since`/`--until` compare: the event's own time, else received.
    pub(crate) fn effective_time(&self) -> i64 {
        self.fields.event_time_ns.unwrap_or(self.received_ns as i64)
    }
}

/// A directory record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirRecord {
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) block_crc: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) min_received: u64,
    pub(crate) max_received: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    /// Bit `id % 64` set for every stream id of the block's entries: a query for one
    /// stream skips blocks without its bit.
    pub(crate) streams: u64,
}

/// The bit of stream `id` in [`DirRecord::streams`].
pub(crate) fn stream_bit(id: u32) -> u64 {
    1u64 << (id % 64)
}

impl DirRecord {
    pub(crate) fn encode(&self) -> [u8; DIR_RECORD_LEN] {
        let mut b = [0u8; DIR_RECORD_LEN];
        b[0..8].copy_from_slice(&self.first.to_be_bytes());
        b[8..12].copy_from_slice(&self.count.to_be_bytes());
        b[12..16].copy_from_slice(&self.block_crc.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_time.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_time.to_be_bytes());
        b[32..40].copy_from_slice(&self.min_received.to_be_bytes());
        b[40..48].copy_from_slice(&self.max_received.to_be_bytes());
        b[48..56].copy_from_slice(&self.offset.to_be_bytes());
        b[56..60].copy_from_slice(&self.len.to_be_bytes());
        b[60..68].copy_from_slice(&self.streams.to_be_bytes());
        let crc = crc32c::crc32c(&b[..68]);
        b[68..72].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<DirRecord> {
        if b.len() != DIR_RECORD_LEN || crc32c::crc32c(&b[..68]).to_be_bytes() != b[68..72] {
            return None;
        }
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8"));
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4"));
        Some(DirRecord {
            first: u64_at(0),
            count: u32_at(8),
            block_crc: u32_at(12),
            min_time: u64_at(16) as i64,
            max_time: u64_at(24) as i64,
            min_received: u64_at(32),
            max_received: u64_at(40),
            offset: u64_at(48),
            len: u32_at(56),
            streams: u64_at(60),
        })
    }
}

/// Number of string fields of a row.
pub(crate) const STRING_FIELDS: usize = 7;

/// The string fields of `f`, in block order (the order of [`FIELD_TAGS`]).
pub(crate) fn string_fields(f: &Normalized) -> [&Option<String>; STRING_FIELDS] {
    [&f.actor, &f.action, &f.resource, &f.outcome, &f.source_ip, &f.request_id, &f.producer]
}

fn intern<'a>(
    s: Option<&'a str>,
    ids: &mut std::collections::HashMap<&'a str, u32>,
    strings: &mut Vec<&'a str>,
) -> u32 {
    match s {
        None => 0,
        Some(s) => {
            let s = truncate_utf8(s, u16::MAX as usize);
            *ids.entry(s).or_insert_with(|| {
                strings.push(s);
                strings.len() as u32
            })
        }
    }
}

/// Encodes rows into a compressed block; returns the bytes and the directory bounds.
pub(crate) fn encode(first: u64, rows: &[Row]) -> (Vec<u8>, DirRecord) {
    let mut strings: Vec<&str> = Vec::new();
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut cols = Vec::with_capacity(rows.len() * (20 + 4 * STRING_FIELDS));
    for r in rows {
        cols.extend_from_slice(&r.fields.event_time_ns.unwrap_or(i64::MIN).to_be_bytes());
        cols.extend_from_slice(&r.received_ns.to_be_bytes());
        cols.extend_from_slice(&r.stream.to_be_bytes());
        for f in string_fields(&r.fields) {
            cols.extend_from_slice(&intern(f.as_deref(), &mut ids, &mut strings).to_be_bytes());
        }
    }
    let mut body = Vec::with_capacity(cols.len() + strings.len() * 16 + 4);
    body.extend_from_slice(&(strings.len() as u32).to_be_bytes());
    for s in &strings {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    body.extend_from_slice(&cols);
    let mut bloom = Bloom::with_capacity(ids.len());
    for r in rows {
        for (tag, f) in FIELD_TAGS.iter().zip(string_fields(&r.fields)) {
            if let Some(v) = f {
                bloom.insert(*tag, v);
            }
        }
    }
    let compressed = zstd::bulk::compress(&body, 3).expect("zstd compression of an in-memory buffer");
    let mut bytes = Vec::with_capacity(8 + bloom.bits.len() + compressed.len());
    bytes.extend_from_slice(&(bloom.bits.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&bloom.bits).to_be_bytes());
    bytes.extend_from_slice(&bloom.bits);
    bytes.extend_from_slice(&compressed);
    let times = rows.iter().map(Row::effective_time);
    let rec = DirRecord {
        first,
        count: rows.len() as u32,
        block_crc: crc32c::crc32c(&bytes),
        min_time: times.clone().min().unwrap_or(0),
        max_time: times.max().unwrap_or(0),
        min_received: rows.iter().map(|r| r.received_ns).min().unwrap_or(0),
        max_received: rows.iter().map(|r| r.received_ns).max().unwrap_or(0),
        offset: 0,
        len: bytes.len() as u32,
        streams: rows.iter().fold(0, |m, r| m | stream_bit(r.stream)),
    };
    (bytes, rec)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Field tags of the Bloom filter: actor, action (verb), resource, outcome, source IP,
/// request id, producer.
pub(crate) const FIELD_TAGS: [u8; STRING_FIELDS] = [b'a', b'v', b'r', b'o', b's', b'q', b'p'];

/// A Bloom filter over tagged field values.
pub(crate) struct Bloom {
    pub(crate) bits: Vec<u8>,
}

fn fnv1a(tag: u8, value: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in std::iter::once(tag).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Bloom {
    /// A filter sized for `distinct` values (at least 256 bits).
    pub(crate) fn with_capacity(distinct: usize) -> Bloom {
        let bits = (distinct * 10).next_power_of_two().max(256);
        Bloom { bits: vec![0u8; bits / 8] }
    }

    fn positions(&self, tag: u8, value: &str) -> [usize; 3] {
        let m = self.bits.len() * 8;
        let (h1, h2) = (fnv1a(tag, value, 0), fnv1a(tag, value, 0x9e37_79b9_7f4a_7c15) | 1);
        [0u64, 1, 2].map(|i| (h1.wrapping_add(i.wrapping_mul(h2)) % m as u64) as usize)
    }

    pub(crate) fn insert(&mut self, tag: u8, value: &str) {
        for p in self.positions(tag, value) {
            self.bits[p / 8] |= 1 << (p % 8);
        }
    }

    /// False only if the value is certainly absent.
    pub(crate) fn may_contain(&self, tag: u8, value: &str) -> bool {
        self.bits.is_empty() || self.positions(tag, value).iter().all(|p| self.bits[p / 8] & (1 << (p % 8)) != 0)
    }
}

/// Splits a block into its Bloom filter (if its CRC holds) and compressed body.
pub(crate) fn split(bytes: &[u8]) -> Option<(Option<Bloom>, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    let bits = bytes.get(8..8 + len)?;
    let bloom = (crc32c::crc32c(bits) == crc && len.is_power_of_two()).then(|| Bloom { bits: bits.to_vec() });
    Some((bloom, &bytes[8 + len..]))
}

/// Decodes a block into rows; `None` if damaged.
pub(crate) fn decode(bytes: &[u8], count: u32) -> Option<Vec<Row>> {
    let (_, compressed) = split(bytes)?;
    let body = zstd::bulk::decompress(compressed, 64 << 20).ok()?;
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = body.get(*pos..*pos + n)?;
        *pos += n;
        Some(s)
    };
    let nstrings = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?) as usize;
    let mut strings = Vec::with_capacity(nstrings.min(1 << 20));
    for _ in 0..nstrings {
        let len = u16::from_be_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
        strings.push(std::str::from_utf8(take(&mut pos, len)?).ok()?.to_string());
    }
    let mut rows = Vec::with_capacity(count as usize);
    let lookup = |id: u32| -> Option<Option<String>> {
        if id == 0 { Some(None) } else { strings.get(id as usize - 1).cloned().map(Some) }
    };
    for _ in 0..count {
        let t = i64::from_be_bytes(take(&mut pos, 8)?.try_into().ok()?);
        let received_ns = u64::from_be_bytes(take(&mut pos, 8)?.try_into().ok()?);
        let stream = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?);
        let mut f = [0u32; STRING_FIELDS];
        for v in &mut f {
            *v = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?);
        }
        rows.push(Row {
            received_ns,
            stream,
            fields: Normalized {
                event_time_ns: if t == i64::MIN { None } else { Some(t) },
                actor: lookup(f[0])?,
                action: lookup(f[1])?,
                resource: lookup(f[2])?,
                outcome: lookup(f[3])?,
                source_ip: lookup(f[4])?,
                request_id: lookup(f[5])?,
                producer: lookup(f[6])?,
            },
        });
    }
    (pos == body.len()).then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: usize, field: usize) -> Option<String> {
        // Every field absent sometimes, values shared between rows and between fields.
        (!(i + field).is_multiple_of(5)).then(|| format!("v{}", (i * 7 + field * 3) % 11))
    }

    #[test]
    fn every_field_survives_a_block_and_is_in_its_filter() {
        let rows: Vec<Row> = (0..300)
            .map(|i| Row {
                received_ns: 1_000 + i as u64,
                stream: (i % 3) as u32,
                fields: Normalized {
                    event_time_ns: (i % 4 != 0).then_some(i as i64 * 1_000),
                    actor: value(i, 0),
                    action: value(i, 1),
                    resource: value(i, 2),
                    outcome: value(i, 3),
                    source_ip: value(i, 4),
                    request_id: value(i, 5),
                    producer: value(i, 6),
                },
            })
            .collect();
        let (bytes, rec) = encode(10, &rows);
        assert_eq!(rec.count, 300);
        assert_eq!(decode(&bytes, rec.count), Some(rows.clone()));
        let (bloom, _) = split(&bytes).unwrap();
        let bloom = bloom.unwrap();
        for r in &rows {
            for (tag, f) in FIELD_TAGS.iter().zip(string_fields(&r.fields)) {
                if let Some(v) = f {
                    assert!(bloom.may_contain(*tag, v), "{} {v}", *tag as char);
                }
            }
        }
        // A value present under one field is not claimed for every other field.
        let misses = FIELD_TAGS.iter().filter(|t| !bloom.may_contain(**t, "absent-value")).count();
        assert!(misses >= 5, "the filter claims an absent value for {} of 7 fields", 7 - misses);
    }
}
