//! Settings from `--config FILE` (TOML); flags override them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Data directory.
    pub(crate) data: Option<PathBuf>,
    /// Origin for `init` / first `serve`.
    pub(crate) origin: Option<String>,
    /// HTTP listen address.
    pub(crate) listen: Option<SocketAddr>,
    /// Largest event in bytes (default 1 MiB).
    pub(crate) max_entry_bytes: Option<usize>,
    /// Largest HTTP request body in bytes (default 64 MiB).
    pub(crate) max_body_bytes: Option<usize>,
    /// Seconds between checkpoints while serving (default 1).
    pub(crate) checkpoint_interval_seconds: Option<f64>,
    /// zstd level for payloads (default 3; 0 stores uncompressed).
    pub(crate) compression_level: Option<i32>,
    /// Hours per payload segment time window (default 24).
    pub(crate) segment_window_hours: Option<u64>,
    /// Seconds between incremental self-verification passes while serving (default
    /// 300; 0 disables them).
    pub(crate) verify_incremental_seconds: Option<f64>,
    /// Hours between full self-verification passes while serving (default 168; 0
    /// disables them).
    pub(crate) verify_full_hours: Option<f64>,
    /// Most payload megabytes (10^6 bytes) per second self-verification reads
    /// (default 100).
    pub(crate) verify_max_mb_per_s: Option<f64>,
    /// `http://` URL a failed self-verification pass is POSTed to as JSON.
    pub(crate) verify_webhook: Option<String>,
    /// JSON pointers of the normalized fields of generic JSON events.
    pub(crate) fields: Option<Fields>,
}

/// `[fields]`: lists of RFC 6901 JSON pointers tried in order.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fields {
    pub(crate) time: Option<Vec<String>>,
    pub(crate) actor: Option<Vec<String>>,
    pub(crate) action: Option<Vec<String>>,
    pub(crate) resource: Option<Vec<String>>,
    pub(crate) outcome: Option<Vec<String>>,
}

impl Config {
    /// Reads the file, or the empty config when none is given.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config {}", path.display()))
    }

    /// The data directory from the flag or the file.
    pub(crate) fn data_dir(&self, flag: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
        flag.cloned()
            .or_else(|| self.data.clone())
            .ok_or_else(|| crate::Failure::usage("no data directory: give --data DIR (or `data` in the config file)"))
    }

    /// Log options.
    pub(crate) fn log_options(&self) -> stele_store::LogOptions {
        let mut o = stele_store::LogOptions::default();
        if let Some(m) = self.max_entry_bytes {
            o.max_entry_bytes = m;
        }
        if let Some(l) = self.compression_level {
            o.compression =
                if l == 0 { stele_store::chunk::Compression::None } else { stele_store::chunk::Compression::Zstd(l) };
        }
        if let Some(h) = self.segment_window_hours {
            o.segment_window_ns = h.max(1) * 3_600 * 1_000_000_000;
        }
        o
    }

    /// Field pointers: defaults, with lists from `[fields]` replacing them.
    pub(crate) fn field_pointers(&self) -> stele_formats::FieldPointers {
        let mut p = stele_formats::FieldPointers::default();
        if let Some(f) = &self.fields {
            if let Some(v) = &f.time {
                p.time = v.clone();
            }
            if let Some(v) = &f.actor {
                p.actor = v.clone();
            }
            if let Some(v) = &f.action {
                p.action = v.clone();
            }
            if let Some(v) = &f.resource {
                p.resource = v.clone();
            }
            if let Some(v) = &f.outcome {
                p.outcome = v.clone();
            }
        }
        p
    }
}
