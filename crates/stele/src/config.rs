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
    /// `[[witness]]`: C2SP tlog-witnesses `serve` submits each checkpoint to.
    pub(crate) witness: Option<Vec<WitnessEntry>>,
    /// Cosignatures a checkpoint needs before `serve` publishes the cosigned note
    /// (default 0; at most the number of witnesses).
    pub(crate) witnesses_required: Option<usize>,
    /// OTLP/gRPC logs listen address (`serve --otlp-grpc`); none by default.
    pub(crate) otlp_grpc: Option<SocketAddr>,
    /// Stream of OpenTelemetry log records whose request names none (default `otlp`).
    pub(crate) otlp_stream: Option<String>,
}

/// One `[[witness]]` table: where to submit checkpoints and the witness's key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WitnessEntry {
    /// Submission prefix, `http://host:port[/prefix]`.
    pub(crate) url: String,
    /// The witness's cosignature verifier key.
    pub(crate) vkey: String,
}

impl WitnessEntry {
    /// Parses the `serve --witness URL=VKEY` form. The vkey never contains `=` before
    /// its base64 padding, so the split is at the first `=` whose right side parses
    /// as a cosignature vkey, else at the first `=`.
    pub(crate) fn parse_flag(s: &str) -> anyhow::Result<WitnessEntry> {
        let split = |i: usize| WitnessEntry { url: s[..i].trim().to_string(), vkey: s[i + 1..].trim().to_string() };
        let mut candidates = s.match_indices('=').map(|(i, _)| i);
        let first =
            candidates.next().ok_or_else(|| crate::Failure::usage(format!("--witness {s:?}: expected URL=VKEY")))?;
        let entry = std::iter::once(first)
            .chain(candidates)
            .map(split)
            .find(|e| stele_tlog::cosignature::AnyCosignatureVerifier::parse(&e.vkey).is_ok())
            .unwrap_or_else(|| split(first));
        if entry.url.is_empty() || entry.vkey.is_empty() {
            return Err(crate::Failure::usage(format!("--witness {s:?}: expected URL=VKEY")));
        }
        Ok(entry)
    }
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

    /// The witnesses and the number of cosignatures required: `--witness` flags (when
    /// any) replace the `[[witness]]` tables, `--witnesses-required` the file's value.
    pub(crate) fn witnesses(
        &self,
        flags: &[String],
        required: Option<usize>,
    ) -> anyhow::Result<(Vec<stele_server::witness_client::WitnessConfig>, usize)> {
        let entries = if flags.is_empty() {
            self.witness.clone().unwrap_or_default()
        } else {
            flags.iter().map(|f| WitnessEntry::parse_flag(f)).collect::<anyhow::Result<Vec<_>>>()?
        };
        let required = required.or(self.witnesses_required).unwrap_or(0);
        if required > entries.len() {
            return Err(crate::Failure::usage(format!(
                "witnesses_required is {required} but only {} witnesses are configured",
                entries.len()
            )));
        }
        let configs = entries
            .into_iter()
            .map(|e| stele_server::witness_client::WitnessConfig { vkey: e.vkey, url: e.url })
            .collect();
        Ok((configs, required))
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

#[cfg(test)]
mod tests {
    use super::*;

    const VKEY: &str = "w1.example+0123abcd+BAAA";

    fn vkey() -> String {
        stele_tlog::cosignature::Cosigner::from_seed("w1.example", &[1; 32]).unwrap().verifier().to_vkey()
    }

    #[test]
    fn witness_tables_in_toml() {
        let text = format!(
            "witnesses_required = 1\n[[witness]]\nurl = \"http://127.0.0.1:7380\"\nvkey = \"{}\"\n\n[[witness]]\nurl = \"http://w2:7380/p\"\nvkey = \"{VKEY}\"\n",
            vkey()
        );
        let c: Config = toml::from_str(&text).unwrap();
        let (w, k) = c.witnesses(&[], None).unwrap();
        assert_eq!(k, 1);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].url.as_str(), w[0].vkey.clone()), ("http://127.0.0.1:7380", vkey()));
        assert_eq!((w[1].url.as_str(), w[1].vkey.as_str()), ("http://w2:7380/p", VKEY));
        // Flags replace the tables and the count.
        let (w, k) = c.witnesses(&[format!("http://x:1={}", vkey())], Some(0)).unwrap();
        assert_eq!((w.len(), k, w[0].url.as_str()), (1, 0, "http://x:1"));
        assert!(c.witnesses(&[], Some(3)).is_err());
        assert!(toml::from_str::<Config>("[[witness]]\nurl = \"http://x\"\n").is_err(), "vkey is required");
        assert!(toml::from_str::<Config>("[[witness]]\nurl = \"u\"\nvkey = \"v\"\nextra = 1\n").is_err());
    }

    #[test]
    fn otlp_keys() {
        let c: Config = toml::from_str("otlp_grpc = \"127.0.0.1:4317\"\notlp_stream = \"otel/logs\"\n").unwrap();
        assert_eq!(c.otlp_grpc, Some("127.0.0.1:4317".parse().unwrap()));
        assert_eq!(c.otlp_stream.as_deref(), Some("otel/logs"));
        assert!(toml::from_str::<Config>("otlp_grpc = \"not an address\"\n").is_err());
    }

    #[test]
    fn witness_flag_form() {
        let v = vkey();
        let e = WitnessEntry::parse_flag(&format!("http://127.0.0.1:7380={v}")).unwrap();
        assert_eq!((e.url.as_str(), e.vkey.as_str()), ("http://127.0.0.1:7380", v.as_str()));
        // An `=` inside the URL: the split is where a valid vkey follows.
        let e = WitnessEntry::parse_flag(&format!("http://w/add?x=1={v}")).unwrap();
        assert_eq!((e.url.as_str(), e.vkey.as_str()), ("http://w/add?x=1", v.as_str()));
        for bad in ["http://no-vkey", "=vkey", "http://x="] {
            assert!(WitnessEntry::parse_flag(bad).is_err(), "{bad}");
        }
        assert!(Config::default().witnesses(&[format!("http://a={v}")], Some(2)).is_err());
    }
}
