//! Tamper evidence of a real data directory, through the `stele` binary.
//!
//! One directory is built from about 300 real Kubernetes audit events in four imports
//! (several streams, so several segment files; many files per import, so many chunks;
//! one checkpoint per import). Then, round after round, a copy gets ONE random
//! mutation — a flipped bit, an overwritten byte, a truncation, a deleted file, a
//! duplicated or swapped record or chunk, appended garbage — in one of the files, and
//! `stele verify` must exit 1 and name the damaged entry or storage unit. Where that
//! is must be is computed here from the byte layout of the format (not by asking
//! stele). The few outcomes that differ by design are asserted as such: the query
//! index is derived data, a damaged non-newest state slot is harmless, a raised
//! version field asks to upgrade, and a rollback needs a checkpoint kept outside.
//!
//! `STELE_TAMPER_SEED` replays a run (the seed is printed); `STELE_TAMPER_ROUNDS` asks
//! for more rounds than the default.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use common::*;

/// Rounds of the default run: three per (file kind, mutation kind) pair.
const DEFAULT_ROUNDS: usize = 210;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Leaves,
    Locators,
    Hashes,
    Segment,
    Checkpoints,
    Streams,
    State,
    Meta,
    VerifierKey,
    Index,
}

impl FileKind {
    const ALL: [FileKind; 10] = [
        FileKind::Leaves,
        FileKind::Locators,
        FileKind::Hashes,
        FileKind::Segment,
        FileKind::Checkpoints,
        FileKind::Streams,
        FileKind::State,
        FileKind::Meta,
        FileKind::VerifierKey,
        FileKind::Index,
    ];

    fn label(self) -> &'static str {
        match self {
            FileKind::Leaves => "leaves.dat",
            FileKind::Locators => "locators.dat",
            FileKind::Hashes => "hashes/level-*.dat",
            FileKind::Segment => "segments/*.seg",
            FileKind::Checkpoints => "checkpoints.dat",
            FileKind::Streams => "streams.dat",
            FileKind::State => "state.dat",
            FileKind::Meta => "meta.json",
            FileKind::VerifierKey => "keys/verifier.vkey",
            FileKind::Index => "index/* (derived)",
        }
    }

    /// Files of this kind in the directory.
    fn files(self, model: &Model) -> Vec<String> {
        let fixed = |n: &str| vec![n.to_string()];
        match self {
            FileKind::Leaves => fixed("leaves.dat"),
            FileKind::Locators => fixed("locators.dat"),
            FileKind::Hashes => model.files.keys().filter(|f| f.starts_with("hashes/")).cloned().collect(),
            FileKind::Segment => model.chunks.keys().cloned().collect(),
            FileKind::Checkpoints => fixed("checkpoints.dat"),
            FileKind::Streams => fixed("streams.dat"),
            FileKind::State => fixed("state.dat"),
            FileKind::Meta => fixed("meta.json"),
            FileKind::VerifierKey => fixed("keys/verifier.vkey"),
            FileKind::Index => model.files.keys().filter(|f| f.starts_with("index/")).cloned().collect(),
        }
    }

    /// Files that start with a 32-byte stele header.
    fn has_header(self) -> bool {
        !matches!(self, FileKind::Meta | FileKind::VerifierKey | FileKind::Index)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MutKind {
    FlipBit,
    Overwrite,
    Truncate,
    Delete,
    Duplicate,
    Swap,
    Append,
}

impl MutKind {
    const ALL: [MutKind; 7] = [
        MutKind::FlipBit,
        MutKind::Overwrite,
        MutKind::Truncate,
        MutKind::Delete,
        MutKind::Duplicate,
        MutKind::Swap,
        MutKind::Append,
    ];

    fn label(self) -> &'static str {
        match self {
            MutKind::FlipBit => "flip",
            MutKind::Overwrite => "byte",
            MutKind::Truncate => "trunc",
            MutKind::Delete => "delete",
            MutKind::Duplicate => "dup",
            MutKind::Swap => "swap",
            MutKind::Append => "append",
        }
    }
}

/// One chunk of a segment, as laid out on disk.
#[derive(Clone, Debug)]
struct Chunk {
    off: usize,
    len: usize,
    /// Entries whose locator names this chunk.
    entries: Vec<u64>,
}

/// The built directory decoded with the format's byte layout, independently of stele.
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    /// Tree size.
    n: u64,
    received: Vec<u64>,
    /// Chunks per segment file name.
    chunks: BTreeMap<String, Vec<Chunk>>,
    /// Payload of the newest valid `state.dat` slot.
    newest_state: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32C (Castagnoli), bitwise: the checksum of stele's framed records.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The `[u32 len][u32 crc][payload]` records of `checkpoints.dat` / `streams.dat`.
/// How many records from the start frame correctly (length in bounds, CRC matches).
fn valid_records(b: &[u8]) -> usize {
    let (mut at, mut n) = (HEADER_LEN, 0);
    while at + 8 <= b.len() {
        let len = be32(b, at) as usize;
        let end = at + 8 + len;
        if end > b.len() || crc32c(&b[at + 8..end]) != be32(b, at + 4) {
            break;
        }
        n += 1;
        at = end;
    }
    n
}

fn framed_records(b: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + 8 <= b.len() {
        let end = at + 8 + be32(b, at) as usize;
        assert!(end <= b.len(), "record at {at} runs past the end");
        assert_eq!(crc32c(&b[at + 8..end]), be32(b, at + 4), "record at {at}: CRC");
        out.push(at..end);
        at = end;
    }
    assert_eq!(at, b.len(), "trailing bytes after the records");
    out
}

/// `state.dat` slots as stele reads them: a valid frame within the slot whose payload
/// is JSON with a `seq`. Returns `(seq, payload)` per slot.
fn state_slots(b: &[u8]) -> [Option<(u64, Vec<u8>)>; 2] {
    let slot = |s: usize| -> Option<(u64, Vec<u8>)> {
        let off = HEADER_LEN + s * STATE_SLOT_LEN;
        let limit = b.len().min(off + STATE_SLOT_LEN);
        if off + 8 > limit {
            return None;
        }
        let len = be32(b, off) as usize;
        if len > 1 << 20 || off + 8 + len > limit {
            return None;
        }
        let p = &b[off + 8..off + 8 + len];
        if crc32c(p) != be32(b, off + 4) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        Some((v["seq"].as_u64()?, p.to_vec()))
    };
    [slot(0), slot(1)]
}

/// The slot stele recovers from: the valid one with the higher `seq` (the first on a tie).
fn newest_slot(b: &[u8]) -> Option<Vec<u8>> {
    let [a, c] = state_slots(b);
    match (a, c) {
        (Some(a), Some(c)) => Some(if c.0 > a.0 { c.1 } else { a.1 }),
        (Some(x), None) | (None, Some(x)) => Some(x.1),
        (None, None) => None,
    }
}

fn read_tree(root: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(root.join(rel)).expect("read_dir") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8 name");
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if e.file_type().expect("type").is_dir() {
            read_tree(root, &rel, out);
        } else if rel != "LOCK" && rel != "keys/signing.key" {
            out.insert(rel, std::fs::read(e.path()).expect("read"));
        }
    }
}

impl Model {
    /// Whether the writer may still append to this segment: open in the newest state
    /// slot (the state lists `open_segments` with their `segno`).
    fn appendable_segment(&self, file: &str) -> bool {
        let Ok(state) = serde_json::from_slice::<serde_json::Value>(&self.newest_state) else { return false };
        let segno: u64 = file.trim_start_matches("segments/").trim_end_matches(".seg").parse().unwrap_or(u64::MAX);
        state["next_segno"].as_u64().is_some_and(|n| segno >= n)
            || state["open_segments"].as_array().is_some_and(|a| a.iter().any(|s| s["segno"].as_u64() == Some(segno)))
    }

    fn load(dir: &Path) -> Model {
        let mut files = BTreeMap::new();
        read_tree(dir, "", &mut files);
        let leaves = &files["leaves.dat"];
        let n = ((leaves.len() - HEADER_LEN) / LEAF_LEN) as u64;
        assert_eq!(leaves.len(), HEADER_LEN + n as usize * LEAF_LEN, "leaves.dat length");
        assert_eq!(files["locators.dat"].len(), HEADER_LEN + n as usize * LOCATOR_LEN, "locators.dat length");
        assert_eq!(files["hashes/level-00.dat"].len(), HEADER_LEN + n as usize * HASH_LEN, "level-00 length");
        let received: Vec<u64> = (0..n as usize).map(|i| be64(leaves, HEADER_LEN + i * LEAF_LEN + 8)).collect();
        let locators = &files["locators.dat"];
        let loc: Vec<(u32, u64)> = (0..n as usize)
            .map(|i| {
                let at = HEADER_LEN + i * LOCATOR_LEN;
                (be32(locators, at), be64(locators, at + 4))
            })
            .collect();
        let mut chunks = BTreeMap::new();
        for (name, b) in files.iter().filter(|(f, _)| f.starts_with("segments/")) {
            let segno: u32 = name["segments/".len()..name.len() - ".seg".len()].parse().expect("segment number");
            assert_eq!(be64(b, 16), u64::from(segno), "{name}: header names its number");
            let mut list = Vec::new();
            let mut off = HEADER_LEN;
            while off < b.len() {
                assert_eq!(&b[off..off + 4], b"CHK1", "{name} offset {off}: chunk magic");
                let len = CHUNK_HEADER_LEN + be32(b, off + 28) as usize;
                let entries: Vec<u64> = (0..n).filter(|&i| loc[i as usize] == (segno, off as u64)).collect();
                assert!(!entries.is_empty(), "{name} offset {off}: a chunk no locator names");
                assert_eq!(entries[0], be64(b, off + 16), "{name} offset {off}: first index");
                list.push(Chunk { off, len, entries });
                off += len;
            }
            assert_eq!(off, b.len(), "{name}: chunks end at the end of the file");
            chunks.insert(name.clone(), list);
        }
        let cps = framed_records(&files["checkpoints.dat"]);
        let last = cps.last().expect("a checkpoint");
        assert_eq!(be64(&files["checkpoints.dat"], last.start + 8), n, "newest checkpoint covers the log");
        assert_eq!(framed_records(&files["streams.dat"]).len(), 3, "three user streams");
        let newest_state = newest_slot(&files["state.dat"]).expect("a valid state slot");
        Model { files, n, received, chunks, newest_state }
    }

    /// Where the records (or chunks, slots, lines) of a file are: the units that
    /// "duplicate" and "swap" act on.
    fn records(&self, kind: FileKind, file: &str) -> Vec<Range<usize>> {
        let b = &self.files[file];
        let fixed = |size: usize| {
            (0..(b.len() - HEADER_LEN) / size).map(|i| HEADER_LEN + i * size..HEADER_LEN + (i + 1) * size).collect()
        };
        match kind {
            FileKind::Leaves => fixed(LEAF_LEN),
            FileKind::Locators => fixed(LOCATOR_LEN),
            FileKind::Hashes => fixed(HASH_LEN),
            FileKind::Segment => self.chunks[file].iter().map(|c| c.off..c.off + c.len).collect(),
            FileKind::Checkpoints | FileKind::Streams => framed_records(b),
            FileKind::State => (0..2)
                .map(|s| HEADER_LEN + s * STATE_SLOT_LEN)
                .filter(|&o| o + 8 <= b.len())
                .map(|o| o..(o + 8 + be32(b, o) as usize).min(b.len()))
                .collect(),
            FileKind::Index if file == "index/dir.dat" => fixed(64),
            FileKind::Meta | FileKind::VerifierKey | FileKind::Index => {
                let mut out = Vec::new();
                let mut start = 0;
                for (i, &c) in b.iter().enumerate() {
                    if c == b'\n' {
                        out.push(start..i + 1);
                        start = i + 1;
                    }
                }
                if start < b.len() {
                    out.push(start..b.len());
                }
                out
            }
        }
    }

    fn entries_of_segment(&self, file: &str) -> Vec<u64> {
        self.chunks[file].iter().flat_map(|c| c.entries.iter().copied()).collect()
    }
}

/// One mutation of one file.
struct Mutation {
    kind: FileKind,
    file: String,
    /// The new contents; `None` deletes the file.
    new: Option<Vec<u8>>,
    desc: String,
}

/// A position to damage: mostly in the data, sometimes in the header.
fn pick_pos(rng: &mut Rng, kind: FileKind, model: &Model, file: &str) -> usize {
    let b = &model.files[file];
    if kind.has_header() && (rng.below(100) < 15 || b.len() <= HEADER_LEN) {
        return rng.range(0..HEADER_LEN);
    }
    if kind == FileKind::State && rng.below(100) < 90 {
        // Mostly inside a slot record; the rest of a slot is unused.
        let recs = model.records(kind, file);
        let r = &recs[rng.range(0..recs.len())];
        return rng.range(r.clone());
    }
    let start = if kind.has_header() { HEADER_LEN } else { 0 };
    rng.range(start..b.len())
}

/// Garbage that is not only whitespace.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = rng.range(1..80);
    let mut g = rng.bytes(len);
    if g[0].is_ascii_whitespace() {
        g[0] = b'#';
    }
    g
}

fn swap(b: &[u8], x: &Range<usize>, y: &Range<usize>) -> Vec<u8> {
    let (x, y) = if x.start < y.start { (x, y) } else { (y, x) };
    let mut out = b[..x.start].to_vec();
    out.extend_from_slice(&b[y.clone()]);
    out.extend_from_slice(&b[x.end..y.start]);
    out.extend_from_slice(&b[x.clone()]);
    out.extend_from_slice(&b[y.end..]);
    out
}

fn make_mutation(rng: &mut Rng, model: &Model, kind: FileKind, what: MutKind) -> Mutation {
    let files = kind.files(model);
    // Level 0 carries every entry; upper levels and other files get a fair share too.
    let file = if kind == FileKind::Hashes && rng.below(3) > 0 {
        "hashes/level-00.dat".to_string()
    } else {
        files[rng.range(0..files.len())].clone()
    };
    let old = &model.files[&file];
    for _ in 0..50 {
        let (new, desc) = match what {
            MutKind::FlipBit => {
                let p = pick_pos(rng, kind, model, &file);
                let bit = rng.below(8);
                let mut b = old.clone();
                b[p] ^= 1 << bit;
                (Some(b), format!("flip bit {bit} at {p}"))
            }
            MutKind::Overwrite => {
                let p = pick_pos(rng, kind, model, &file);
                let mut b = old.clone();
                b[p] = b[p].wrapping_add(1 + rng.below(255) as u8);
                let desc = format!("byte {:#04x} -> {:#04x} at {p}", old[p], b[p]);
                (Some(b), desc)
            }
            MutKind::Truncate => {
                let p = pick_pos(rng, kind, model, &file);
                (Some(old[..p].to_vec()), format!("truncate to {p} of {}", old.len()))
            }
            MutKind::Delete => (None, "delete".to_string()),
            MutKind::Duplicate => {
                let recs = model.records(kind, &file);
                let r = if recs.is_empty() || rng.below(10) == 0 {
                    let s = rng.range(0..old.len());
                    s..rng.range(s + 1..old.len() + 1)
                } else {
                    recs[rng.range(0..recs.len())].clone()
                };
                let mut b = old[..r.end].to_vec();
                b.extend_from_slice(&old[r.clone()]);
                b.extend_from_slice(&old[r.end..]);
                (Some(b), format!("duplicate {r:?} after itself"))
            }
            MutKind::Swap => {
                let recs = model.records(kind, &file);
                let (x, y) = if recs.len() >= 2 && rng.below(10) > 0 {
                    let i = rng.range(0..recs.len());
                    // Neighbours half of the time: a local reorder.
                    let j = if rng.below(2) == 0 && i + 1 < recs.len() { i + 1 } else { rng.range(0..recs.len()) };
                    if i == j {
                        continue;
                    }
                    (recs[i].clone(), recs[j].clone())
                } else {
                    let len = rng.range(1..old.len() / 2 + 1);
                    let a = rng.range(0..old.len() - 2 * len + 1);
                    let c = rng.range(a + len..old.len() - len + 1);
                    (a..a + len, c..c + len)
                };
                (Some(swap(old, &x, &y)), format!("swap {x:?} and {y:?}"))
            }
            MutKind::Append => {
                let g = garbage(rng);
                let mut b = old.clone();
                b.extend_from_slice(&g);
                (Some(b), format!("append {} bytes", g.len()))
            }
        };
        if new.as_ref() != Some(old) {
            return Mutation { kind, file, new, desc };
        }
    }
    panic!("no effective {what:?} mutation of {file} found");
}

/// What verification must say about one mutation.
#[derive(Debug)]
enum Expect {
    /// Exit 1, naming one of these entries or units (file, and offset when given).
    Detect { entries: Vec<u64>, units: Vec<(String, Option<u64>)>, known: Option<Known> },
    /// Exit 0: nothing verification relies on changed (the reason says why).
    Harmless(&'static str),
    /// Exit 2 asking to upgrade: a header's version field was raised, which is what a
    /// file of a newer release looks like.
    Upgrade(String),
}

/// A current behaviour that differs from [`Expect::Detect`] for reasons outside the
/// storage engine's verification (reported, tallied apart).
#[derive(Debug)]
struct Known {
    code: i32,
    contains: &'static str,
    note: &'static str,
}

fn unit(file: &str, offset: Option<usize>) -> (String, Option<u64>) {
    (file.to_string(), offset.map(|o| o as u64))
}

fn detect_unit(file: &str, offset: Option<usize>) -> Expect {
    Expect::Detect { entries: vec![], units: vec![unit(file, offset)], known: None }
}

fn detect_entries(entries: Vec<u64>) -> Expect {
    Expect::Detect { entries, units: vec![], known: None }
}

/// First position where `new` differs from `old`, if any within the shorter one.
fn first_diff(old: &[u8], new: &[u8]) -> Option<usize> {
    old.iter().zip(new).position(|(a, b)| a != b)
}

/// Last differing position, counted in `old` (for a change that keeps or moves bytes).
fn last_diff(old: &[u8], new: &[u8]) -> usize {
    let common = old.iter().rev().zip(new.iter().rev()).take_while(|(a, b)| a == b).count();
    old.len().saturating_sub(common + 1)
}

/// Expectation for a damaged 32-byte header, or `None` when it is intact.
fn header_expect(kind: FileKind, file: &str, old: &[u8], new: &[u8], model: &Model) -> Option<Expect> {
    if new.len() < HEADER_LEN {
        return Some(detect_unit(file, None));
    }
    let (h, o) = (&new[..HEADER_LEN], &old[..HEADER_LEN]);
    if h == o {
        return None;
    }
    if h[..8] != o[..8] {
        return Some(detect_unit(file, None));
    }
    if u16::from_be_bytes([h[8], h[9]]) > 1 {
        return Some(Expect::Upgrade(file.to_string()));
    }
    if h[8..12] != o[8..12] {
        return Some(detect_unit(file, None));
    }
    if kind == FileKind::Segment && h[12..24] == o[12..24] && new[HEADER_LEN..] == old[HEADER_LEN..] {
        // Only the time window start changed. It is not committed to by the tree; a
        // start after an entry's received time is impossible, an earlier one is not.
        let min_received =
            model.entries_of_segment(file).iter().map(|&i| model.received[i as usize]).min().expect("entries");
        if be64(h, 24) <= min_received {
            return Some(Expect::Harmless("segment window start lowered (not committed to)"));
        }
    }
    let entries = if kind == FileKind::Segment { model.entries_of_segment(file) } else { vec![] };
    Some(Expect::Detect { entries, units: vec![unit(file, None)], known: None })
}

fn expect(model: &Model, m: &Mutation) -> Expect {
    let old = &model.files[&m.file];
    let n = model.n as usize;
    if m.kind == FileKind::Index {
        return Expect::Harmless("the query index is derived data");
    }
    let Some(new) = &m.new else {
        return match m.kind {
            FileKind::Meta => Expect::Detect { entries: vec![], units: vec![unit("meta.json", None)], known: None },
            FileKind::VerifierKey => Expect::Detect { entries: vec![], units: vec![unit(&m.file, None)], known: None },
            FileKind::Segment => Expect::Detect {
                entries: model.entries_of_segment(&m.file),
                units: vec![unit(&m.file, None)],
                known: None,
            },
            _ => detect_unit(&m.file, None),
        };
    };
    if m.kind.has_header()
        && let Some(e) = header_expect(m.kind, &m.file, old, new, model)
    {
        return e;
    }
    match m.kind {
        FileKind::Leaves | FileKind::Locators | FileKind::Hashes => {
            let level: u32 = if m.kind == FileKind::Hashes {
                m.file["hashes/level-".len()..][..2].parse().expect("level")
            } else {
                0
            };
            let size = match m.kind {
                FileKind::Leaves => LEAF_LEN,
                FileKind::Locators => LOCATOR_LEN,
                _ => HASH_LEN,
            };
            let count = n >> (8 * level);
            for i in 0..count {
                let r = HEADER_LEN + i * size..HEADER_LEN + (i + 1) * size;
                if new.len() < r.end || new[r.clone()] != old[r.clone()] {
                    if level > 0 {
                        // Upper tile levels name their file (their nodes cover entry ranges).
                        return Expect::Detect {
                            entries: vec![(i << (8 * level)) as u64],
                            units: vec![unit(&m.file, None)],
                            known: None,
                        };
                    }
                    // A missing record at `i` (truncation) or a changed one: entry `i`.
                    return detect_entries(vec![i as u64]);
                }
            }
            // Only bytes after the last record changed: not part of the log (what an
            // interrupted commit leaves); reported as a note, removed by the next writer.
            if new.len() > old.len() && new[..old.len()] == old[..] {
                return Expect::Harmless("bytes after the end of the log");
            }
            detect_unit(&m.file, Some(HEADER_LEN + count * size))
        }
        FileKind::Segment => {
            let p = match first_diff(old, new) {
                Some(p) => p,
                None if new.len() < old.len() => new.len(),
                None if model.appendable_segment(&m.file) => {
                    return Expect::Harmless("bytes after the last chunk of a segment the writer appends to");
                }
                None => return detect_unit(&m.file, Some(old.len())),
            };
            let c = model.chunks[&m.file]
                .iter()
                .find(|c| c.off <= p && p < c.off + c.len)
                .expect("a chunk holds the position");
            Expect::Detect { entries: c.entries.clone(), units: vec![unit(&m.file, Some(c.off))], known: None }
        }
        FileKind::Checkpoints | FileKind::Streams => {
            let recs = framed_records(old);
            let p = match first_diff(old, new) {
                Some(p) => p,
                None if new.len() < old.len() && m.kind == FileKind::Checkpoints => {
                    // Durable checkpoints are missing: the file is named with its sizes.
                    return detect_unit(&m.file, None);
                }
                None if new.len() < old.len() => new.len(),
                // Appended bytes that frame as a valid record join the file (and break
                // its order or names); anything else is an unfinished write's tail.
                None if valid_records(new) > recs.len() => return detect_unit(&m.file, Some(old.len())),
                None => return Expect::Harmless("bytes after the end of the log"),
            };
            // The last record touched: an insertion or removal moves every later one.
            let q = if new.len() == old.len() { last_diff(old, new).max(p) } else { old.len() };
            let units: Vec<(String, Option<u64>)> = recs
                .iter()
                .filter(|r| r.end > p && r.start <= q)
                .map(|r| unit(&m.file, Some(r.start)))
                .chain(std::iter::once(unit(&m.file, Some(old.len()))).filter(|_| new.len() > old.len()))
                .collect();
            Expect::Detect { entries: vec![], units, known: None }
        }
        FileKind::State => match newest_slot(new) {
            None => detect_unit(&m.file, None),
            Some(s) if s == model.newest_state => Expect::Harmless("state.dat: the newest slot is intact"),
            Some(_) => Expect::Harmless("state.dat: newest slot damaged, recovery starts from the older one"),
        },
        FileKind::Meta => {
            #[derive(serde::Deserialize, PartialEq, Debug)]
            struct Meta {
                format_version: u16,
                origin: String,
                created_ns: u64,
            }
            let was: Meta = serde_json::from_slice(old).expect("meta.json");
            match serde_json::from_slice::<Meta>(new) {
                Err(_) => detect_unit("meta.json", None),
                Ok(m) if m.format_version > 1 => Expect::Upgrade("meta.json".into()),
                Ok(m) if m.format_version == 0 || m.origin != was.origin => detect_unit("meta.json", None),
                Ok(_) => Expect::Harmless("meta.json: only created_ns (not committed to) changed"),
            }
        }
        FileKind::VerifierKey => {
            let norm = |b: &[u8]| -> Option<(String, u32, String)> {
                let t = std::str::from_utf8(b).ok()?.trim();
                let mut parts = t.splitn(3, '+');
                let (name, id, key) = (parts.next()?, parts.next()?, parts.next()?);
                Some((name.to_string(), u32::from_str_radix(id, 16).ok().filter(|_| id.len() == 8)?, key.to_string()))
            };
            if norm(new).is_some() && norm(new) == norm(old) {
                return Expect::Harmless("verifier key: same key, other spelling");
            }
            Expect::Detect { entries: vec![], units: vec![unit(&m.file, None)], known: None }
        }
        FileKind::Index => unreachable!("handled above"),
    }
}

/// Outcome of one round, for the tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Detected,
    Harmless,
    Upgrade,
    Known,
    Failed,
}

struct Built {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    /// A copy of the directory taken right after the second import.
    snapshot: PathBuf,
    /// The newest checkpoint, saved outside the directory after the last import.
    saved_checkpoint: PathBuf,
}

/// Builds the directory: four imports of real Kubernetes events into three streams.
fn build(data: &Path) -> Built {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    init(&dir);
    let config = tmp.path().join("stele.toml");
    std::fs::write(&config, "segment_window_hours = 1\n").expect("config");
    let config = config.to_str().expect("utf-8 path");
    let k = data.join("k8s-audit");
    let imports: [(&str, Vec<PathBuf>); 4] = [
        ("default", vec![k.join("panther-analysis_k8s-audit-native.jsonl")]),
        ("falco", json_files(&k.join("falcosecurity-falco/k8s_audit"))),
        ("psp", json_files(&k.join("falcosecurity-falco/psp"))),
        ("default", vec![k.join("panther-analysis_k8s-audit-aks-wrapped.jsonl")]),
    ];
    let snapshot = tmp.path().join("snapshot-after-import-2");
    for (i, (stream, files)) in imports.iter().enumerate() {
        import(&dir, &["--config", config, "--stream", stream], files);
        if i == 1 {
            copy_dir(&dir, &snapshot);
        }
    }
    let r = stele_at("checkpoint", &dir, &[]);
    r.expect_code(0, "checkpoint");
    let saved_checkpoint = tmp.path().join("saved-checkpoint.txt");
    std::fs::write(&saved_checkpoint, &r.stdout).expect("save checkpoint");
    stele_at("verify", &dir, &[]).expect_code(0, "verify of the built directory");
    Built { tmp, dir, snapshot, saved_checkpoint }
}

/// Queries whose results must not depend on the state of the query index.
const INDEX_QUERIES: &[&[&str]] = &[
    &["--actor", "admin@example.com"],
    &["--action", "create"],
    &["--stream", "falco", "--actor", "system:*"],
    &["--since", "2018-10-26T00:00:00Z", "--until", "2019-06-22T00:00:00Z"],
    &["--stream", "psp"],
];

fn index_query_results(dir: &Path) -> Vec<Vec<u64>> {
    INDEX_QUERIES
        .iter()
        .map(|q| {
            let r = stele_at("query", dir, q);
            r.expect_code(0, &format!("query {q:?}"));
            r.stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["index"].as_u64().expect("index")
                })
                .collect()
        })
        .collect()
}

fn seed() -> u64 {
    match std::env::var("STELE_TAMPER_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("STELE_TAMPER_SEED={s:?} is not a u64")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64,
    }
}

#[test]
fn random_mutations_are_detected_and_located() {
    let Some(data) = shared_data() else { return };
    let built = build(&data);
    let model = Model::load(&built.dir);
    assert!(model.n >= 300, "only {} entries", model.n);
    assert!(model.chunks.len() >= 4, "only {} segment files", model.chunks.len());
    assert!(model.chunks.values().map(Vec::len).sum::<usize>() >= 20, "too few chunks");
    assert!(framed_records(&model.files["checkpoints.dat"]).len() >= 4, "too few checkpoints");
    assert!(model.files.contains_key("hashes/level-01.dat"), "a tree of {} leaves has a level-1 tile", model.n);
    let baseline_queries = index_query_results(&built.dir);
    assert!(baseline_queries.iter().all(|r| !r.is_empty()), "every index query has hits: {baseline_queries:?}");

    let seed = seed();
    let rounds: usize =
        std::env::var("STELE_TAMPER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(DEFAULT_ROUNDS);
    eprintln!("tamper: seed {seed} (replay with STELE_TAMPER_SEED={seed}), {rounds} rounds");
    let mut rng = Rng::new(seed);
    let mut tally: BTreeMap<(FileKind, MutKind), BTreeMap<Outcome, usize>> = BTreeMap::new();
    let mut notes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let work = built.tmp.path().join("rounds");
    for round in 0..rounds {
        let kind = FileKind::ALL[round % FileKind::ALL.len()];
        let what = MutKind::ALL[(round / FileKind::ALL.len()) % MutKind::ALL.len()];
        let m = make_mutation(&mut rng, &model, kind, what);
        let want = expect(&model, &m);
        let copy = work.join(round.to_string());
        copy_dir(&built.dir, &copy);
        match &m.new {
            Some(b) => std::fs::write(copy.join(&m.file), b).expect("write mutation"),
            None => std::fs::remove_file(copy.join(&m.file)).expect("delete"),
        }
        let r = stele_at("verify", &copy, &[]);
        let text = r.all();
        let (outcome, why) = match &want {
            Expect::Detect { entries, units, known } => {
                let named = entries.iter().any(|&e| mentions_entry(&text, e))
                    || units.iter().any(|(f, o)| mentions_unit(&text, f, *o));
                if r.code == 1 && named {
                    (Outcome::Detected, None)
                } else if let Some(k) = known.as_ref().filter(|k| r.code == k.code && text.contains(k.contains)) {
                    *notes.entry(k.note).or_default() += 1;
                    (Outcome::Known, None)
                } else {
                    (Outcome::Failed, Some(format!("expected exit 1 naming entries {entries:?} or units {units:?}")))
                }
            }
            Expect::Harmless(reason) => {
                *notes.entry(reason).or_default() += 1;
                if r.code != 0 {
                    (Outcome::Failed, Some(format!("expected exit 0 ({reason})")))
                } else if kind == FileKind::Index && index_query_results(&copy) != baseline_queries {
                    (Outcome::Failed, Some("query results changed after damage to the index".into()))
                } else {
                    (Outcome::Harmless, None)
                }
            }
            Expect::Upgrade(file) => {
                if r.code == 2 && text.contains("upgrade") && text.contains(file.as_str()) {
                    (Outcome::Upgrade, None)
                } else {
                    (Outcome::Failed, Some(format!("expected exit 2 asking to upgrade, naming {file}")))
                }
            }
        };
        *tally.entry((kind, what)).or_default().entry(outcome).or_default() += 1;
        if let Some(why) = why {
            failures.push(format!(
                "round {round} (seed {seed}): {} {}: {}\n  {why}\n  {}",
                m.file,
                what.label(),
                m.desc,
                r.to_string().replace('\n', "\n  ")
            ));
        }
        std::fs::remove_dir_all(&copy).expect("remove round copy");
    }

    eprintln!("{}", render_tally(&tally, &notes, seed, rounds));
    assert!(
        failures.is_empty(),
        "{} of {rounds} mutations not handled as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Not a run of harmless rounds: every kind of file but the derived index was
    // damaged in a way that had to be reported.
    for f in FileKind::ALL.into_iter().filter(|&f| f != FileKind::Index) {
        let caught: usize = MutKind::ALL
            .iter()
            .filter_map(|&m| tally.get(&(f, m)))
            .map(|t| t.get(&Outcome::Detected).copied().unwrap_or(0) + t.get(&Outcome::Known).copied().unwrap_or(0))
            .sum();
        assert!(
            caught > 0 || rounds < MutKind::ALL.len() * FileKind::ALL.len(),
            "no detection at all in {}",
            f.label()
        );
    }
}

fn render_tally(
    tally: &BTreeMap<(FileKind, MutKind), BTreeMap<Outcome, usize>>,
    notes: &BTreeMap<&str, usize>,
    seed: u64,
    rounds: usize,
) -> String {
    let mut s = format!(
        "tamper tally (seed {seed}, {rounds} rounds): detected/rounds per file and mutation; h = harmless by design, u = asks to upgrade (exit 2), k = known issue, F = FAILED\n"
    );
    s.push_str(&format!("| {:<20} |", "file"));
    for m in MutKind::ALL {
        s.push_str(&format!(" {:>9} |", m.label()));
    }
    s.push_str(&format!(" {:>9} |\n|{}", "total", "---|".repeat(MutKind::ALL.len() + 2)));
    let mut totals: BTreeMap<Outcome, usize> = BTreeMap::new();
    for f in FileKind::ALL {
        s.push_str(&format!("\n| {:<20} |", f.label()));
        let mut row: BTreeMap<Outcome, usize> = BTreeMap::new();
        for m in MutKind::ALL {
            let t = tally.get(&(f, m)).cloned().unwrap_or_default();
            for (o, c) in &t {
                *row.entry(*o).or_default() += c;
                *totals.entry(*o).or_default() += c;
            }
            s.push_str(&format!(" {:>9} |", cell(&t)));
        }
        s.push_str(&format!(" {:>9} |", cell(&row)));
    }
    s.push_str(&format!("\n| {:<20} |{}", "total", " |".repeat(MutKind::ALL.len())));
    s.push_str(&format!(" {:>9} |\n", cell(&totals)));
    for (note, c) in notes {
        s.push_str(&format!("  {c:>4} × {note}\n"));
    }
    s
}

fn cell(t: &BTreeMap<Outcome, usize>) -> String {
    let get = |o| t.get(&o).copied().unwrap_or(0);
    let total: usize = t.values().sum();
    let mut c = format!("{}/{}", get(Outcome::Detected), total);
    for (o, tag) in [(Outcome::Harmless, "h"), (Outcome::Upgrade, "u"), (Outcome::Known, "k"), (Outcome::Failed, "F")] {
        if get(o) > 0 {
            c.push_str(&format!(" {}{tag}", get(o)));
        }
    }
    c
}

#[test]
fn rollback_to_an_earlier_snapshot_needs_an_outside_checkpoint() {
    let Some(data) = shared_data() else { return };
    let built = build(&data);
    let saved = built.saved_checkpoint.to_str().expect("utf-8 path");
    let newest = parse_note(&std::fs::read_to_string(&built.saved_checkpoint).expect("saved checkpoint"));

    // An attacker restores the backup taken after the second import: leaves, locators,
    // hashes, segments, checkpoints and state all agree with each other, so the
    // directory alone cannot show that entries were removed.
    let r = stele_at("verify", &built.snapshot, &[]);
    r.expect_code(0, "verify of the rolled-back directory alone");
    let Some(size) =
        r.stdout.split("ok: tree size ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse::<u64>().ok())
    else {
        panic!("no tree size in {r}");
    };
    assert!(size < newest.tree_size, "the snapshot is older: {size} vs {}", newest.tree_size);

    // The checkpoint kept outside shows it.
    let r = stele_at("verify", &built.snapshot, &["--against", saved]);
    r.expect_code(1, "verify --against the newer checkpoint");
    assert!(r.stderr.contains("entries were removed"), "{r}");
    assert!(r.stderr.contains(&format!("covers {} entries but the log has only {size}", newest.tree_size)), "{r}");

    // The intact directory is consistent with it, and with the older checkpoint.
    stele_at("verify", &built.dir, &["--against", saved]).expect_code(0, "verify --against on the intact directory");
    let older = built.tmp.path().join("older-checkpoint.txt");
    let r = stele_at("checkpoint", &built.snapshot, &[]);
    r.expect_code(0, "checkpoint of the snapshot");
    std::fs::write(&older, &r.stdout).expect("write");
    stele_at("verify", &built.dir, &["--against", older.to_str().expect("utf-8 path")])
        .expect_code(0, "an older checkpoint is consistent");
}

#[test]
fn state_slots_one_damaged_slot_is_harmless_both_are_detected() {
    let Some(data) = shared_data() else { return };
    let built = build(&data);
    let model = Model::load(&built.dir);
    let state = &model.files["state.dat"];
    let slots = state_slots(state);
    let (Some(s0), Some(s1)) = (&slots[0], &slots[1]) else {
        panic!("both state slots are written after four checkpoints")
    };
    let (newest, older) = if s1.0 > s0.0 { (1, 0) } else { (0, 1) };
    let damage = |slots: &[usize]| {
        let mut b = state.clone();
        for &s in slots {
            // One byte inside the slot's JSON payload: its CRC no longer matches.
            b[HEADER_LEN + s * STATE_SLOT_LEN + 20] ^= 0x40;
        }
        let copy = built.tmp.path().join(format!("state-{slots:?}"));
        copy_dir(&built.dir, &copy);
        std::fs::write(copy.join("state.dat"), b).expect("write");
        let r = stele_at("verify", &copy, &[]);
        let q = stele_at("query", &copy, &["--stream", "falco"]);
        (r, q)
    };
    let (r, q) = damage(&[older]);
    r.expect_code(0, "older slot damaged");
    q.expect_code(0, "query with the older slot damaged");
    // A torn write of the newest slot looks the same as damage to it: recovery starts
    // from the older slot and checks every entry after it, so this is harmless too.
    let (r, _) = damage(&[newest]);
    r.expect_code(0, "newest slot damaged");
    let (r, q) = damage(&[0, 1]);
    r.expect_code(1, "both slots damaged");
    assert!(mentions_unit(&r.stderr, "state.dat", None), "{r}");
    q.expect_code(1, "query with both slots damaged");
}

#[test]
fn query_index_is_rebuilt_or_bypassed_never_trusted() {
    let Some(data) = shared_data() else { return };
    let built = build(&data);
    let want = index_query_results(&built.dir);
    let copy = built.tmp.path().join("no-index");
    copy_dir(&built.dir, &copy);
    // Every index file replaced by garbage of the same length, then removed entirely.
    for f in ["index/dir.dat", "index/blocks.dat", "index/meta.json"] {
        let len = std::fs::metadata(copy.join(f)).expect(f).len() as usize;
        std::fs::write(copy.join(f), Rng::new(7).bytes(len)).expect("write");
    }
    stele_at("verify", &copy, &[]).expect_code(0, "verify with a garbage index");
    assert_eq!(index_query_results(&copy), want, "queries over a garbage index");
    std::fs::remove_dir_all(copy.join("index")).expect("remove index");
    stele_at("verify", &copy, &[]).expect_code(0, "verify without an index");
    assert_eq!(index_query_results(&copy), want, "queries without an index");
    stele_at("reindex", &copy, &[]).expect_code(0, "reindex");
    assert_eq!(index_query_results(&copy), want, "queries after reindex");
    stele_at("verify", &copy, &["--index"]).expect_code(0, "verify --index after reindex");
}

#[test]
fn renamed_stream_in_streams_dat_is_detected() {
    let Some(data) = shared_data() else { return };
    let built = build(&data);
    let model = Model::load(&built.dir);
    // Rewrite the record of stream "falco" as "xxxxx" with a valid CRC: what someone
    // with write access to the directory, but not the signing key, can do.
    let old = &model.files["streams.dat"];
    let rec = framed_records(old)
        .into_iter()
        .find(|r| old[r.start + 8..r.end].windows(7).any(|w| w == b"\"falco\""))
        .expect("the record of stream falco");
    let payload =
        String::from_utf8(old[rec.start + 8..rec.end].to_vec()).expect("JSON").replace("\"falco\"", "\"xxxxx\"");
    let mut new = old.clone();
    new[rec.start + 4..rec.start + 8].copy_from_slice(&crc32c(payload.as_bytes()).to_be_bytes());
    new[rec.start + 8..rec.end].copy_from_slice(payload.as_bytes());
    let copy = built.tmp.path().join("renamed-stream");
    copy_dir(&built.dir, &copy);
    std::fs::write(copy.join("streams.dat"), new).expect("write");
    // The log itself committed to the name: stele's own record registering stream 2.
    let leaves = &model.files["leaves.dat"];
    let registration = (0..model.n)
        .filter(|&i| be32(leaves, HEADER_LEN + i as usize * LEAF_LEN + 4) == 0)
        .nth(1)
        .expect("the registration of the second stream");
    let r = stele_at("verify", &copy, &[]);
    r.expect_code(1, "verify after renaming a stream in streams.dat");
    assert!(mentions_entry(&r.stderr, registration) && mentions_unit(&r.stderr, "streams.dat", None), "{r}");
}
