//! The 32-byte header every stele file starts with.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 6 | magic `STELE\0` |
//! | 6 | 2 | file kind (two ASCII letters) |
//! | 8 | 2 | format version, big-endian |
//! | 10 | 2 | reserved, zero |
//! | 12 | 4 | kind-specific `a` (u32 BE) |
//! | 16 | 8 | kind-specific `b` (u64 BE) |
//! | 24 | 8 | kind-specific `c` (u64 BE) |

use std::sync::Arc;

use crate::backend::StorageFile;
use crate::error::{Result, StoreError};

/// Header length in bytes.
pub const HEADER_LEN: u64 = 32;
/// Format version this release writes (and the newest it reads).
pub const FORMAT_VERSION: u16 = 1;

/// File kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `leaves.dat`: fixed 68-byte leaf records.
    Leaves,
    /// `locators.dat`: where each entry's payload is stored.
    Locators,
    /// `hashes/level-NN.dat`: hashes of one tile level. `a` = tile level.
    Hashes,
    /// `segments/NNNNNNNN.seg`: payload chunks of one stream. `a` = stream id,
    /// `b` = segment number, `c` = time window start (ns).
    Segment,
    /// `checkpoints.dat`: signed checkpoints.
    Checkpoints,
    /// `streams.dat`: stream names.
    Streams,
    /// `state.dat`: recovery anchor slots.
    State,
    /// `index/dir.dat`: query index directory (derived data).
    IndexDirectory,
    /// `index/blocks.dat`: query index blocks (derived data).
    IndexBlocks,
    /// `deletions.dat`: segments removed by retention, each with the index of the
    /// deletion record that authorised it.
    Deletions,
    /// `timestamps.dat`: RFC 3161 time-stamp tokens over checkpoints.
    Timestamps,
}

impl Kind {
    fn code(self) -> [u8; 2] {
        match self {
            Kind::Leaves => *b"LV",
            Kind::Locators => *b"LC",
            Kind::Hashes => *b"HS",
            Kind::Segment => *b"SG",
            Kind::Checkpoints => *b"CP",
            Kind::Streams => *b"SR",
            Kind::State => *b"SS",
            Kind::IndexDirectory => *b"ID",
            Kind::IndexBlocks => *b"IB",
            Kind::Deletions => *b"DL",
            Kind::Timestamps => *b"TS",
        }
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// File kind.
    pub kind: Kind,
    /// Format version.
    pub version: u16,
    /// Kind-specific field `a`.
    pub a: u32,
    /// Kind-specific field `b`.
    pub b: u64,
    /// Kind-specific field `c`.
    pub c: u64,
}

impl Header {
    /// A current-version header.
    pub fn new(kind: Kind, a: u32, b: u64, c: u64) -> Header {
        Header { kind, version: FORMAT_VERSION, a, b, c }
    }

    /// Encodes the 32 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..6].copy_from_slice(b"STELE\0");
        h[6..8].copy_from_slice(&self.kind.code());
        h[8..10].copy_from_slice(&self.version.to_be_bytes());
        h[12..16].copy_from_slice(&self.a.to_be_bytes());
        h[16..24].copy_from_slice(&self.b.to_be_bytes());
        h[24..32].copy_from_slice(&self.c.to_be_bytes());
        h
    }

    /// Reads and checks the header of `file` (named `name` in errors): magic, kind and
    /// version (newer versions are refused with a message to upgrade).
    pub fn read(file: &Arc<dyn StorageFile>, name: &str, kind: Kind) -> Result<Header> {
        let mut h = [0u8; HEADER_LEN as usize];
        file.read_at(0, &mut h).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt(format!("{name}: shorter than its 32-byte header"))
            } else {
                StoreError::Io { op: "reading", file: name.to_string(), source: e }
            }
        })?;
        if &h[..6] != b"STELE\0" || h[6..8] != kind.code() {
            return Err(StoreError::Corrupt(format!("{name}: bad file header (not a stele {kind:?} file)")));
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                file: name.to_string(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 || h[10..12] != [0, 0] {
            return Err(StoreError::Corrupt(format!("{name}: bad file header")));
        }
        Ok(Header {
            kind,
            version,
            a: u32::from_be_bytes(h[12..16].try_into().expect("4")),
            b: u64::from_be_bytes(h[16..24].try_into().expect("8")),
            c: u64::from_be_bytes(h[24..32].try_into().expect("8")),
        })
    }

    /// Writes the header at offset 0.
    pub fn write(&self, file: &Arc<dyn StorageFile>, name: &str) -> Result<()> {
        file.write_at(0, &self.encode()).map_err(StoreError::io("writing", name))
    }
}
