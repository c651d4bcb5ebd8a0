//! Trusted time: RFC 3161 tokens over checkpoints, and a clock that steps back.
//!
//! **Tokens.** With timestamp authorities configured ([`TimestampAuthority`]), a task
//! wakes every `timestamp_interval` and, when the newest signed checkpoint is not yet
//! stamped by a TSA, asks that TSA for a token over the checkpoint body (its three
//! lines, see `stele_timestamp`), on a blocking thread so that a slow TSA delays
//! neither ingestion nor signing. A token is verified against the TSA's configured
//! certificate before it is stored in `timestamps.dat` (through `stele-store`); a
//! failure is logged and counted, and the next tick tries again. Tokens are served by
//! `GET /checkpoint/timestamps[?tree_size=N]`:
//! `{"tree_size":N,"body":"<checkpoint body>","timestamps":[{"tsa":"<url>","obtained_ns":T,"token":"<base64 DER>"}]}`
//! (without `tree_size`, the newest stamped checkpoint; 404 when none is stamped; 400
//! for a bad or unknown parameter).
//!
//! **Clock.** The sequencer hands over every backward step of the clock the writer saw
//! (see `stele_store::clock`); a task counts it in `/metrics`
//! (`stele_clock_backwards_total`, `stele_clock_backwards_last_jump_seconds`) and
//! appends a `clock_backwards` record to `_stele/gaps`:
//! `{"type":"clock_backwards","from_ns":F,"to_ns":T,"jump_ns":J}`, once per episode.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stele_store::clock::ClockBackwards;
use stele_store::timestamps::{self, TimestampRecord};
use stele_timestamp::{TimestampRequest, TsaCertificate};

use crate::http::{ApiError, App, error, json};
use crate::sequencer::Shared;

/// Default `timestamp_interval`: one token per TSA per hour bounds what the log asks
/// of a public TSA (most ask for moderation) while every hour of the log is anchored.
pub const DEFAULT_TIMESTAMP_INTERVAL: Duration = Duration::from_secs(3600);
/// Time allowed for one exchange with a TSA.
const TSA_TIMEOUT: Duration = Duration::from_secs(30);
/// How often pending clock events become `clock_backwards` records.
const CLOCK_RECORD_PERIOD: Duration = Duration::from_secs(1);

/// One timestamp authority checkpoints are sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampAuthority {
    /// The TSA's `http://` or `https://` URL (RFC 3161 §3.4 requests are POSTed to it).
    pub url: String,
    /// PEM of the certificate(s) a token's signer must chain to: the TSA's own
    /// certificate, or the CA that issued it.
    pub certificate_pem: Vec<u8>,
}

impl TimestampAuthority {
    /// Checks the URL and parses the certificates.
    pub(crate) fn certificates(&self) -> Result<Vec<TsaCertificate>, String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("timestamp authority {:?}: the URL must be http:// or https://", self.url));
        }
        if self.url.len() > timestamps::MAX_TSA_URL {
            return Err(format!("timestamp authority URL longer than {} bytes", timestamps::MAX_TSA_URL));
        }
        TsaCertificate::from_pem(&self.certificate_pem)
            .map_err(|e| format!("timestamp authority {}: certificate: {e}", self.url))
    }
}

type TsaLabels = [(&'static str, String); 2];

/// The metrics of this module, registered with the server's.
pub(crate) struct TimeMetrics {
    clock_backwards: Counter,
    clock_last_jump: Gauge<f64, AtomicU64>,
    tokens: Family<TsaLabels, Counter>,
    last_gen_time: Gauge<f64, AtomicU64>,
}

impl TimeMetrics {
    pub(crate) fn register(registry: &mut Registry) -> TimeMetrics {
        let m = TimeMetrics {
            clock_backwards: Counter::default(),
            clock_last_jump: Gauge::default(),
            tokens: Family::default(),
            last_gen_time: Gauge::default(),
        };
        registry.register(
            "stele_clock_backwards",
            "Times the wall clock read more than the tolerance behind the log's last received time (once per episode)",
            m.clock_backwards.clone(),
        );
        registry.register(
            "stele_clock_backwards_last_jump_seconds",
            "Size of the last backward clock step, seconds",
            m.clock_last_jump.clone(),
        );
        registry.register(
            "stele_timestamp_tokens",
            "RFC 3161 token requests by TSA and result (stored, failed)",
            m.tokens.clone(),
        );
        registry.register(
            "stele_timestamp_last_gen_time_seconds",
            "genTime of the newest stored RFC 3161 token, Unix seconds",
            m.last_gen_time.clone(),
        );
        m
    }
}

/// What the server shares about trusted time: where each stored token is, and the
/// clock events waiting to be recorded.
#[derive(Default)]
pub(crate) struct TrustedTime {
    /// Tree size → offset in `timestamps.dat` and TSA URL of each of its tokens.
    stamped: RwLock<BTreeMap<u64, Vec<(u64, String)>>>,
    clock_pending: Mutex<Vec<ClockBackwards>>,
}

impl TrustedTime {
    /// Called by the sequencer after each commit with what the writer saw.
    pub(crate) fn note_clock(&self, events: Vec<ClockBackwards>, metrics: &crate::metrics::Metrics) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            metrics.trusted_time.clock_backwards.inc();
            metrics.trusted_time.clock_last_jump.set(e.jump_ns as f64 / 1e9);
            tracing::warn!(
                from_ns = e.from_ns,
                to_ns = e.to_ns,
                "the clock stepped back {:.3} s",
                e.jump_ns as f64 / 1e9
            );
        }
        self.clock_pending.lock().unwrap_or_else(|p| p.into_inner()).extend(events);
    }

    fn newest_stamped(&self) -> Option<u64> {
        self.stamped.read().unwrap_or_else(|p| p.into_inner()).keys().next_back().copied()
    }

    fn offsets(&self, tree_size: u64) -> Vec<u64> {
        let map = self.stamped.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tree_size).map(|v| v.iter().map(|(o, _)| *o).collect()).unwrap_or_default()
    }

    /// Whether `tsa` already stamped `tree_size` (before a restart, say).
    fn has(&self, tree_size: u64, tsa: &str) -> bool {
        let map = self.stamped.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tree_size).is_some_and(|v| v.iter().any(|(_, t)| t == tsa))
    }
}

/// Loads the index of stored tokens (at start).
pub(crate) fn load(shared: &Shared) -> Result<(), stele_store::StoreError> {
    let stored = timestamps::read(shared.reader.files())?;
    let mut map = shared.trusted_time.stamped.write().unwrap_or_else(|p| p.into_inner());
    for (offset, r) in stored.records {
        map.entry(r.tree_size).or_default().push((offset, r.tsa));
    }
    Ok(())
}

/// Starts the task that records clock events in `_stele/gaps`.
pub(crate) fn spawn_clock_records(app: Arc<App>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(CLOCK_RECORD_PERIOD);
        loop {
            interval.tick().await;
            if !app.shared.sequencer_alive.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let pending =
                std::mem::take(&mut *app.shared.trusted_time.clock_pending.lock().unwrap_or_else(|p| p.into_inner()));
            for (i, e) in pending.iter().enumerate() {
                let record = serde_json::json!({
                    "type": "clock_backwards", "from_ns": e.from_ns, "to_ns": e.to_ns, "jump_ns": e.jump_ns,
                });
                if let Err(err) = crate::lifecycle::append(&app, record).await {
                    tracing::warn!("appending a clock_backwards record: {err} (kept for the next period)");
                    app.shared
                        .trusted_time
                        .clock_pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .splice(0..0, pending[i..].iter().copied());
                    break;
                }
            }
        }
    });
}

/// Starts the task that stamps checkpoints (nothing when `authorities` is empty).
pub(crate) fn spawn(authorities: &[TimestampAuthority], interval: Duration, shared: Arc<Shared>) -> Result<(), String> {
    if authorities.is_empty() {
        return Ok(());
    }
    let tsas: Vec<(String, Vec<TsaCertificate>)> =
        authorities.iter().map(|a| a.certificates().map(|c| (a.url.clone(), c))).collect::<Result<_, _>>()?;
    tokio::spawn(async move {
        // Tree size each TSA last stamped.
        let mut done: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !shared.sequencer_alive.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let Some(cp) = shared.reader.newest_checkpoint() else { continue };
            let Some(body) = stele_timestamp::checkpoint_body(cp.note.as_bytes()).map(<[u8]>::to_vec) else {
                tracing::error!(tree_size = cp.tree_size, "the newest checkpoint note has no body");
                continue;
            };
            for (url, certs) in &tsas {
                if done.get(url).is_some_and(|&n| n >= cp.tree_size) || shared.trusted_time.has(cp.tree_size, url) {
                    continue;
                }
                match stamp(&shared, url, certs, &body, cp.tree_size).await {
                    Ok(gen_time) => {
                        done.insert(url.clone(), cp.tree_size);
                        shared
                            .metrics
                            .trusted_time
                            .tokens
                            .get_or_create(&[("tsa", url.clone()), ("result", "stored".into())])
                            .inc();
                        shared.metrics.trusted_time.last_gen_time.set(gen_time.as_nanosecond() as f64 / 1e9);
                        tracing::info!(tsa = %url, tree_size = cp.tree_size, %gen_time, "checkpoint timestamped");
                    }
                    Err(e) => {
                        shared
                            .metrics
                            .trusted_time
                            .tokens
                            .get_or_create(&[("tsa", url.clone()), ("result", "failed".into())])
                            .inc();
                        tracing::warn!(tsa = %url, tree_size = cp.tree_size, "no timestamp token: {e}");
                    }
                }
            }
        }
    });
    Ok(())
}

/// Obtains, verifies and stores one token; returns its genTime.
async fn stamp(
    shared: &Arc<Shared>,
    url: &str,
    certs: &[TsaCertificate],
    body: &[u8],
    tree_size: u64,
) -> Result<jiff::Timestamp, String> {
    let (shared, url, certs, body) = (shared.clone(), url.to_string(), certs.to_vec(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        let request = TimestampRequest::new(&body).map_err(|e| e.to_string())?;
        let token = stele_timestamp::client::fetch(&url, &request, TSA_TIMEOUT).map_err(|e| e.to_string())?;
        // A token that does not verify is not stored: it would fail every later verify.
        let verified =
            stele_timestamp::verify_token(&token, &body, &certs).map_err(|e| format!("the token fails {e}"))?;
        let record = TimestampRecord { tree_size, obtained_ns: stele_store::log::now_ns(), tsa: url, token };
        let offset = timestamps::append(shared.reader.files(), &record).map_err(|e| e.to_string())?;
        let mut map = shared.trusted_time.stamped.write().unwrap_or_else(|p| p.into_inner());
        map.entry(tree_size).or_default().push((offset, record.tsa));
        Ok(verified.gen_time)
    })
    .await
    .map_err(|e| format!("timestamp task: {e}"))?
}

/// `GET /checkpoint/timestamps[?tree_size=N]`.
pub(crate) async fn get_timestamps(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(k) = params.keys().find(|k| k.as_str() != "tree_size") {
        return Err(error(StatusCode::BAD_REQUEST, format!("unknown parameter {k:?} (only tree_size)")));
    }
    let tree_size = match params.get("tree_size") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| error(StatusCode::BAD_REQUEST, format!("tree_size {v:?} is not an unsigned integer")))?,
        None => app.shared.trusted_time.newest_stamped().ok_or_else(|| {
            error(StatusCode::NOT_FOUND, "no checkpoint has a timestamp token yet (see timestamp_authorities)")
        })?,
    };
    if tree_size == 0 || tree_size > app.shared.reader.tree_size() {
        return Err(error(StatusCode::BAD_REQUEST, format!("tree_size {tree_size} is not a size of this log")));
    }
    let offsets = app.shared.trusted_time.offsets(tree_size);
    if offsets.is_empty() {
        return Err(error(StatusCode::NOT_FOUND, format!("no timestamp token for tree size {tree_size}")));
    }
    let reader = app.shared.reader.clone();
    let doc = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let root = reader.root_hash(tree_size).map_err(|e| e.to_string())?;
        let body = stele_timestamp::body_for(reader.origin(), tree_size, &root.to_base64());
        let mut list = Vec::with_capacity(offsets.len());
        for off in offsets {
            let r = timestamps::read_at(reader.files(), off).map_err(|e| e.to_string())?;
            list.push(serde_json::json!({
                "tsa": r.tsa,
                "obtained_ns": r.obtained_ns,
                "token": base64::engine::general_purpose::STANDARD.encode(&r.token),
            }));
        }
        Ok(serde_json::json!({
            "tree_size": tree_size,
            "body": String::from_utf8_lossy(&body),
            "timestamps": list,
        }))
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(json(StatusCode::OK, doc.to_string()))
}
