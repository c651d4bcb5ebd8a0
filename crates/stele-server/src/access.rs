//! Access records, failed-authentication limits and append rate limits.
//!
//! **Access records** (PCI DSS 10.2.1.1 and 10.2.1.3, ISO 27001 A.8.15). Every read
//! (`GET /v1/entries/N`, `/v1/query`, and the proof routes `/checkpoint`, `/tile/...`,
//! `/v1/proof/...`, public or not) is counted per principal, route kind and stream,
//! and once per `access_interval` (default 60 s) each count becomes one entry of
//! `_stele/access` (JSON, format 3):
//! `{"type":"access","principal","auth","route","stream","requests","statuses":{"200":N,..},
//! "first_ns","last_ns","sources":[..],"other_sources":N,"interval_ms"}`. A monitor that
//! polls tiles every second therefore adds one record per minute, not 60; the number of
//! records per interval is bounded by principals × route kinds × streams read.
//! `sources` lists up to [`MAX_SOURCES`] distinct addresses; more are counted in
//! `other_sources`.
//!
//! **Failed authentications** are counted per source address and recorded the same
//! way: `{"type":"auth_failures","source","failures","reasons":{..},"first_ns","last_ns"}`.
//! A source with `max_auth_failures_per_minute` failures in the current minute is
//! answered 429 with `Retry-After` (the seconds left in that minute) on every route
//! that needs credentials, before its credentials are even looked at: guessing a
//! 256-bit token is hopeless anyway, and the limit bounds the work and records an
//! attacker can cause.
//!
//! **Append rate.** Each authenticated principal has a token bucket of
//! `append_events_per_second` events (burst: one second's worth, at least one
//! request's batch: a request larger than the bucket is admitted when the bucket is
//! full and leaves it in debt). An append that finds too few events in the bucket is
//! answered 429 with `Retry-After` (gRPC: `RESOURCE_EXHAUSTED` with `RetryInfo`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use stele_formats::Normalized;

use crate::http::App;
use crate::sequencer::PreparedEvent;

/// The stream of access and failed-authentication records.
pub const ACCESS_STREAM: &str = "_stele/access";
/// Default `access_interval`.
pub const DEFAULT_ACCESS_INTERVAL: Duration = Duration::from_secs(60);
/// Default `max_auth_failures_per_minute`: enough for a person mistyping a few times
/// and a client retrying with an old token, far too few to guess anything.
pub const DEFAULT_MAX_AUTH_FAILURES_PER_MINUTE: u32 = 20;
/// Distinct source addresses listed in one record.
pub const MAX_SOURCES: usize = 16;
/// Source addresses tracked by the failure limiter; past it, expired windows are
/// dropped, then the oldest (bounds memory under a spoofing-free address scan).
const MAX_TRACKED_SOURCES: usize = 100_000;
/// Distinct keys held between two flushes; past it, further reads are counted in a
/// catch-all key of their principal and route (bounds memory and the records per
/// interval).
const MAX_KEYS: usize = 10_000;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    principal: Arc<str>,
    auth: &'static str,
    route: &'static str,
    stream: String,
}

struct Count {
    requests: u64,
    statuses: BTreeMap<u16, u64>,
    first_ns: u64,
    last_ns: u64,
    sources: BTreeSet<IpAddr>,
    other_sources: u64,
}

impl Count {
    fn new(now: u64) -> Count {
        Count {
            requests: 0,
            statuses: BTreeMap::new(),
            first_ns: now,
            last_ns: now,
            sources: BTreeSet::new(),
            other_sources: 0,
        }
    }

    fn add_source(&mut self, ip: Option<IpAddr>) {
        if let Some(ip) = ip
            && !self.sources.contains(&ip)
        {
            if self.sources.len() < MAX_SOURCES {
                self.sources.insert(ip);
            } else {
                self.other_sources += 1;
            }
        }
    }
}

struct Failures {
    failures: u64,
    reasons: BTreeMap<&'static str, u64>,
    first_ns: u64,
    last_ns: u64,
}

/// The failure limiter's window of one source.
struct Window {
    start: Instant,
    failures: u32,
}

/// Shared by the request path and the flush task.
pub(crate) struct Access {
    interval: Duration,
    max_failures: u32,
    reads: Mutex<HashMap<Key, Count>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Access {
    pub(crate) fn new(interval: Duration, max_failures: u32) -> Access {
        Access {
            interval,
            max_failures,
            reads: Mutex::default(),
            failures: Mutex::default(),
            windows: Mutex::default(),
        }
    }

    /// Counts one read.
    pub(crate) fn read(
        &self,
        principal: &Arc<str>,
        auth: &'static str,
        route: &'static str,
        stream: &str,
        status: u16,
        source: Option<IpAddr>,
    ) {
        let now = stele_store::log::now_ns();
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Key { principal: principal.clone(), auth, route, stream: stream.to_string() };
        if reads.len() >= MAX_KEYS && !reads.contains_key(&key) {
            key.stream = "(more streams)".into();
        }
        let c = reads.entry(key).or_insert_with(|| Count::new(now));
        c.requests += 1;
        *c.statuses.entry(status).or_default() += 1;
        c.last_ns = now;
        c.add_source(source);
    }

    /// `Some(seconds)` when `source` is over its failure limit for this minute.
    pub(crate) fn blocked(&self, source: Option<IpAddr>) -> Option<u64> {
        let ip = source?;
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.get(&ip)?;
        let elapsed = w.start.elapsed();
        (elapsed < MINUTE && w.failures >= self.max_failures)
            .then(|| (MINUTE - elapsed).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Counts a failed authentication of `source`.
    pub(crate) fn failed(&self, source: Option<IpAddr>, reason: &'static str) {
        let now = stele_store::log::now_ns();
        let Some(ip) = source else { return };
        {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            if windows.len() >= MAX_TRACKED_SOURCES && !windows.contains_key(&ip) {
                windows.retain(|_, w| w.start.elapsed() < MINUTE);
                if windows.len() >= MAX_TRACKED_SOURCES
                    && let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k)
                {
                    windows.remove(&oldest);
                }
            }
            let w = windows.entry(ip).or_insert(Window { start: Instant::now(), failures: 0 });
            if w.start.elapsed() >= MINUTE {
                *w = Window { start: Instant::now(), failures: 0 };
            }
            w.failures = w.failures.saturating_add(1);
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS && !failures.contains_key(&ip) {
            return;
        }
        let f = failures.entry(ip).or_insert(Failures {
            failures: 0,
            reasons: BTreeMap::new(),
            first_ns: now,
            last_ns: now,
        });
        f.failures += 1;
        *f.reasons.entry(reason).or_default() += 1;
        f.last_ns = now;
    }

    /// The records of everything counted since the last call, in a stable order.
    fn take_records(&self) -> Vec<serde_json::Value> {
        let reads = std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()));
        let failures = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        let interval_ms = self.interval.as_millis() as u64;
        let mut reads: Vec<(Key, Count)> = reads.into_iter().collect();
        reads.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<serde_json::Value> = reads
            .into_iter()
            .map(|(k, c)| {
                let statuses: serde_json::Map<String, serde_json::Value> =
                    c.statuses.iter().map(|(s, n)| (s.to_string(), (*n).into())).collect();
                serde_json::json!({
                    "type": "access",
                    "principal": &*k.principal,
                    "auth": k.auth,
                    "route": k.route,
                    "stream": k.stream,
                    "requests": c.requests,
                    "statuses": statuses,
                    "first_ns": c.first_ns,
                    "last_ns": c.last_ns,
                    "sources": c.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "other_sources": c.other_sources,
                    "interval_ms": interval_ms,
                })
            })
            .collect();
        let mut failures: Vec<(IpAddr, Failures)> = failures.into_iter().collect();
        failures.sort_by_key(|(ip, _)| *ip);
        out.extend(failures.into_iter().map(|(ip, f)| {
            serde_json::json!({
                "type": "auth_failures",
                "source": ip.to_string(),
                "failures": f.failures,
                "reasons": f.reasons,
                "first_ns": f.first_ns,
                "last_ns": f.last_ns,
                "interval_ms": interval_ms,
            })
        }));
        out
    }
}

/// Appends the records counted since the last flush to `_stele/access` as one unit.
pub(crate) async fn flush(app: &App) {
    let records = app.auth.access.take_records();
    if records.is_empty() {
        return;
    }
    let mut body = Vec::new();
    let mut events = Vec::with_capacity(records.len());
    for r in &records {
        let start = body.len();
        body.extend_from_slice(r.to_string().as_bytes());
        events.push(PreparedEvent {
            range: start..body.len(),
            format: stele_store::log::FORMAT_STELE_RECORD,
            // Records re-normalize to no fields (format 3), so the index holds none either.
            fields: Normalized::default(),
        });
    }
    let n = events.len();
    // Waits for room rather than dropping the records: they are the access trail.
    match app.submit_patiently(ACCESS_STREAM.to_string(), Bytes::from(body), events, Duration::from_secs(30)).await {
        Ok(_) => {}
        Err(e) => tracing::error!(records = n, "appending access records to {ACCESS_STREAM}: {e}"),
    }
}

/// Starts the task that flushes the access records every interval.
pub(crate) fn spawn_flush(app: Arc<App>) {
    let interval = app.auth.access.interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !app.shared.sequencer_alive.load(Ordering::Acquire) {
                return;
            }
            flush(&app).await;
        }
    });
}

/// A token bucket of events per second.
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(events_per_second: u32) -> Bucket {
        let rate = f64::from(events_per_second);
        Bucket { rate, burst: rate.max(1.0), state: Mutex::new((rate.max(1.0), Instant::now())) }
    }

    /// Takes `n` events; `Err(seconds to wait)` when the bucket cannot give them now.
    pub(crate) fn take(&self, n: usize) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let level = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
        let need = (n as f64).min(self.burst);
        if level + 1e-9 < need {
            *s = (level, now);
            return Err(((need - level) / self.rate).ceil().max(1.0) as u64);
        }
        *s = (level - n as f64, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_its_rate_and_big_batches_into_debt() {
        let b = Bucket::new(10);
        assert!(b.take(10).is_ok());
        assert_eq!(b.take(5), Err(1));
        let big = Bucket::new(10);
        assert!(big.take(100).is_ok(), "a batch over the burst passes when the bucket is full");
        assert!(big.take(1).unwrap_err() >= 9, "and leaves the bucket in debt: {:?}", big.take(1));
    }

    #[test]
    fn failures_block_after_the_limit_and_records_aggregate() {
        let a = Access::new(Duration::from_secs(60), 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            a.failed(Some(ip), "unknown_token");
        }
        assert_eq!(a.blocked(Some(ip)), None);
        a.failed(Some(ip), "missing");
        let secs = a.blocked(Some(ip)).expect("blocked after 3");
        assert!((1..=60).contains(&secs));
        assert_eq!(a.blocked(Some("192.0.2.8".parse().unwrap())), None);
        let p: Arc<str> = "ci".into();
        for _ in 0..5 {
            a.read(&p, "token", "query", "*", 200, Some(ip));
        }
        let recs = a.take_records();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["requests"], 5);
        assert_eq!(recs[1]["failures"], 3);
        assert_eq!(recs[1]["reasons"]["unknown_token"], 2);
        assert!(a.take_records().is_empty());
    }
}
