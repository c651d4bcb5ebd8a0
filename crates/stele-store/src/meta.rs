//! `meta.json`: the data directory's identity and format version.

use serde::{Deserialize, Serialize};

use crate::header::FORMAT_VERSION;

/// Contents of `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Data directory format version (see docs/format.md).
    pub format_version: u16,
    /// The log's origin line, also its key name.
    pub origin: String,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
}

impl Meta {
    /// Metadata for a new directory.
    pub fn new(origin: &str, created_ns: u64) -> Meta {
        Meta { format_version: FORMAT_VERSION, origin: origin.to_string(), created_ns }
    }
}
