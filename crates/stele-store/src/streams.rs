//! Streams: named partitions of the log. Every entry belongs to one stream; its id
//! is in the leaf. Names live in `streams.dat` (CRC-framed JSON records) and each
//! registration is also appended to the log itself as a stele record in the reserved
//! stream `_stele/system` (id 0), so the mapping is committed to by the tree.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Id of the reserved stream of stele's own records.
pub const SYSTEM_STREAM_ID: u32 = 0;
/// Name of the reserved stream of stele's own records.
pub const SYSTEM_STREAM: &str = "_stele/system";
/// Prefix reserved for stele's internal streams.
pub const RESERVED_PREFIX: &str = "_stele/";
/// Stream used when none is given.
pub const DEFAULT_STREAM: &str = "default";
/// Longest stream name.
pub const MAX_STREAM_NAME: usize = 128;

/// A stream record in `streams.dat`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamRecord {
    /// Stream id.
    pub id: u32,
    /// Stream name.
    pub name: String,
}

/// Checks a user stream name: 1–128 characters from `[A-Za-z0-9._/-]`, not under the
/// reserved `_stele/` prefix.
pub fn check_stream_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !name.starts_with(RESERVED_PREFIX);
    if ok { Ok(()) } else { Err(StoreError::InvalidStreamName(name.to_string())) }
}

/// Checks a stream name the log itself accepts: 1–128 characters from
/// `[A-Za-z0-9._/-]`, reserved `_stele/` names included. Callers that take names from
/// users check them with [`check_stream_name`] first; stele's own components append
/// to internal streams such as `_stele/dedup` or `_stele/rejected` directly.
pub fn check_log_stream_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    if ok { Ok(()) } else { Err(StoreError::InvalidStreamName(name.to_string())) }
}

/// The in-memory stream table.
#[derive(Clone, Debug, Default)]
pub struct Streams {
    by_name: HashMap<String, u32>,
    names: Vec<String>,
}

impl Streams {
    /// A table holding only the system stream.
    pub fn new() -> Streams {
        let mut s = Streams::default();
        s.insert(SYSTEM_STREAM_ID, SYSTEM_STREAM.to_string());
        s
    }

    /// Adds a record; ids must be dense and in order.
    pub fn insert(&mut self, id: u32, name: String) -> bool {
        if id as usize != self.names.len() || self.by_name.contains_key(&name) {
            return false;
        }
        self.by_name.insert(name.clone(), id);
        self.names.push(name);
        true
    }

    /// Id of a stream name.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// Name of a stream id.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// Next id to allocate.
    pub fn next_id(&self) -> u32 {
        self.names.len() as u32
    }

    /// All `(id, name)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.names.iter().enumerate().map(|(i, n)| (i as u32, n.as_str()))
    }
}
