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
    /// Largest event in bytes (default 8 MiB).
    pub(crate) max_entry_bytes: Option<usize>,
    /// Largest HTTP request body in bytes (default 64 MiB).
    pub(crate) max_body_bytes: Option<usize>,
    /// Seconds between checkpoints while serving (default 1).
    pub(crate) checkpoint_interval_seconds: Option<f64>,
    /// zstd level for payloads (default 3; 0 stores uncompressed).
    pub(crate) compression_level: Option<i32>,
    /// Hours per payload segment time window (default 24).
    pub(crate) segment_window_hours: Option<f64>,
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
    /// Where `serve` signs checkpoints: `unix:PATH` or `file:PATH` (see `--signer`).
    pub(crate) signer: Option<String>,
    /// `[[witness]]`: C2SP tlog-witnesses `serve` submits each checkpoint to.
    pub(crate) witness: Option<Vec<WitnessEntry>>,
    /// Cosignatures a checkpoint needs before `serve` publishes the cosigned note
    /// (default 0; at most the number of witnesses).
    pub(crate) witnesses_required: Option<usize>,
    /// `[[source]]`: streams expected to receive events regularly.
    pub(crate) source: Option<Vec<SourceEntry>>,
    /// Hours an `Idempotency-Key` is remembered (default 24).
    pub(crate) idempotency_window_hours: Option<f64>,
    /// Most idempotency keys remembered (default 1,000,000).
    pub(crate) idempotency_max_keys: Option<usize>,
    /// Seconds a Kubernetes audit event's auditID and stage are remembered to
    /// recognise webhook retries (default 600).
    pub(crate) k8s_dedup_window_seconds: Option<f64>,
    /// Most Kubernetes audit event keys remembered (default 2,000,000).
    pub(crate) k8s_dedup_max_keys: Option<usize>,
    /// `[[retention]]`: per-stream retention policies.
    pub(crate) retention: Option<Vec<RetentionEntry>>,
    /// Minutes between the server's retention passes (default 60; 0 disables them).
    pub(crate) retention_interval_minutes: Option<f64>,
    /// `[syslog]`: syslog listeners of `serve`.
    pub(crate) syslog: Option<crate::serve_syslog::SyslogSection>,
    /// OTLP/gRPC logs listen address (`serve --otlp-grpc`); none by default.
    pub(crate) otlp_grpc: Option<SocketAddr>,
    /// Stream of OpenTelemetry log records whose request names none (default `otlp`).
    pub(crate) otlp_stream: Option<String>,
    /// `[auth]`: principals, public routes, access records, rate limits.
    pub(crate) auth: Option<crate::serve_auth::AuthSection>,
    /// `[tls]`: TLS of the HTTP and OTLP/gRPC listeners.
    pub(crate) tls: Option<crate::serve_auth::TlsSection>,
    /// `[[timestamp_authority]]`: RFC 3161 TSAs `serve` sends checkpoints to, and whose
    /// certificates `verify` checks stored tokens against.
    pub(crate) timestamp_authority: Option<Vec<crate::cmd_timestamp::TsaEntry>>,
    /// Seconds between timestamp requests while serving (default 3600).
    pub(crate) timestamp_interval_seconds: Option<f64>,
    /// Seconds the clock may read behind the last received time before a
    /// `clock_backwards` record is written (default 1).
    pub(crate) clock_backwards_tolerance_seconds: Option<f64>,
    /// `[erasure]`: personal-data fields sealed under per-subject keys.
    pub(crate) erasure: Option<crate::cmd_erase::ErasureSection>,
    /// `[limits]`: connections, request heads, timeouts, queue, read rate.
    pub(crate) limits: Option<crate::serve_limits::LimitsSection>,
}

/// One `[[retention]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionEntry {
    /// Stream name, or a prefix ending in `*`.
    pub(crate) stream: String,
    /// Nothing is deleted earlier than this many days after it was received.
    pub(crate) min_days: f64,
    /// Deleted this many days after it was received (absent: kept).
    pub(crate) max_days: Option<f64>,
    /// `governance` (default) or `compliance`.
    pub(crate) mode: Option<stele_retention::Mode>,
}

/// One `[[source]]` table: what stele expects of the events of one stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceEntry {
    /// The stream its events go to.
    pub(crate) stream: String,
    /// Longest normal silence, in seconds (at least 1): a longer one is reported.
    pub(crate) max_silence_seconds: Option<f64>,
    /// JSON pointer of the field that identifies each event, for retries.
    pub(crate) event_id: Option<String>,
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
            // At least one second; fractions of an hour are allowed (tests, small logs).
            o.segment_window_ns = ((h * 3_600.0 * 1e9) as u64).max(1_000_000_000);
        }
        if let Some(t) = self.clock_backwards_tolerance_seconds.filter(|t| *t >= 0.0 && t.is_finite()) {
            o.clock_backwards_tolerance_ns = (t * 1e9) as u64;
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

    /// The `[[retention]]` policies, validated.
    pub(crate) fn retention_policies(&self) -> anyhow::Result<Vec<stele_retention::Policy>> {
        let days = |d: f64, key: &str| -> anyhow::Result<std::time::Duration> {
            if d >= 0.0 && d.is_finite() && d < 1e7 {
                Ok(std::time::Duration::from_secs_f64(d * 86_400.0))
            } else {
                Err(crate::Failure::usage(format!("[[retention]] {key} must be a non-negative number of days")))
            }
        };
        let mut out = Vec::new();
        for r in self.retention.iter().flatten() {
            let p = stele_retention::Policy {
                stream: r.stream.clone(),
                min_retention: days(r.min_days, "min_days")?,
                max_retention: r.max_days.map(|d| days(d, "max_days")).transpose()?,
                mode: r.mode.unwrap_or(stele_retention::Mode::Governance),
            };
            p.validate().map_err(|e| crate::Failure::usage(e.to_string()))?;
            if out.iter().any(|q: &stele_retention::Policy| q.stream == p.stream) {
                return Err(crate::Failure::usage(format!("[[retention]] {:?} is given twice", p.stream)));
            }
            out.push(p);
        }
        Ok(out)
    }

    /// Sets the expected sources and the retry-recognition windows of `server`.
    pub(crate) fn apply_ingest(&self, server: &mut stele_server::ServerConfig) -> anyhow::Result<()> {
        let positive = |v: f64, key: &str| -> anyhow::Result<std::time::Duration> {
            if v >= 0.0 && v.is_finite() && v < 1e12 {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                Err(crate::Failure::usage(format!("{key} must be a non-negative number")))
            }
        };
        for s in self.source.iter().flatten() {
            if s.max_silence_seconds.is_none() && s.event_id.is_none() {
                return Err(crate::Failure::usage(format!(
                    "[[source]] {:?}: give max_silence_seconds, event_id or both",
                    s.stream
                )));
            }
            if let Some(secs) = s.max_silence_seconds {
                let max_silence = positive(secs, "[[source]] max_silence_seconds")?;
                server.expected_sources.push(stele_server::ExpectedSource { stream: s.stream.clone(), max_silence });
            }
            if let Some(p) = &s.event_id {
                server.event_id_fields.insert(s.stream.clone(), p.clone());
            }
        }
        if let Some(h) = self.idempotency_window_hours {
            server.dedup.idempotency_window = positive(h * 3600.0, "idempotency_window_hours")?;
        }
        if let Some(n) = self.idempotency_max_keys {
            server.dedup.idempotency_capacity = n;
        }
        if let Some(s) = self.k8s_dedup_window_seconds {
            server.dedup.event_window = positive(s, "k8s_dedup_window_seconds")?;
        }
        if let Some(n) = self.k8s_dedup_max_keys {
            server.dedup.event_capacity = n;
        }
        Ok(())
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
    fn sources_and_dedup_windows_in_toml() {
        let text = "idempotency_window_hours = 2\nk8s_dedup_max_keys = 10\n[[source]]\nstream = \"k8s-audit\"\nmax_silence_seconds = 300\n";
        let c: Config = toml::from_str(text).unwrap();
        let mut server = stele_server::ServerConfig::new("d".into(), "127.0.0.1:0".parse().unwrap());
        c.apply_ingest(&mut server).unwrap();
        assert_eq!(
            server.expected_sources,
            vec![stele_server::ExpectedSource {
                stream: "k8s-audit".into(),
                max_silence: std::time::Duration::from_secs(300)
            }]
        );
        assert_eq!(server.dedup.idempotency_window, std::time::Duration::from_secs(7200));
        assert_eq!(server.dedup.event_capacity, 10);
        let bad: Config = toml::from_str("[[source]]\nstream = \"a\"\nmax_silence_seconds = -1\n").unwrap();
        assert!(bad.apply_ingest(&mut server).is_err());
        let none: Config = toml::from_str("[[source]]\nstream = \"a\"\n").unwrap();
        assert!(none.apply_ingest(&mut server).is_err(), "a source says what is expected of it");
        let ids: Config = toml::from_str("[[source]]\nstream = \"a\"\nevent_id = \"/id\"\n").unwrap();
        ids.apply_ingest(&mut server).unwrap();
        assert_eq!(server.event_id_fields.get("a").map(String::as_str), Some("/id"));
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
