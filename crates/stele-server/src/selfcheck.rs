//! Scheduled self-verification: `stele serve` re-verifies its own data at rest.
//!
//! A dedicated thread (`stele-selfcheck`, not the sequencer) runs two kinds of pass:
//!
//! - **incremental** (every [`ServerConfig::verify_incremental_interval`], default
//!   5 minutes): the entries appended since the last successful pass, with
//!   [`stele_store::verify::verify_range`]: payload digests against leaves, leaf hashes
//!   against the stored level-0 hashes, the upper-level hashes completed in the range,
//!   and the signature and root of every checkpoint signed in the range, the tree being
//!   consistent with the last tree the checker trusted. The checker trusts nothing when
//!   the server starts: its first incremental pass covers the whole log.
//! - **full** (every [`ServerConfig::verify_full_interval`], default weekly):
//!   [`stele_store::verify::verify`] over everything (file lengths, stray segments and
//!   header fields included).
//!
//! Passes are throttled so that ingestion is unaffected: the work is done in slices
//! and the thread sleeps between them, to stay below
//! [`ServerConfig::verify_max_bytes_per_sec`] of payload and below half of the time
//! (the thread is otherwise an ordinary thread: std offers no portable priority).
//!
//! Each completed pass appends a **verification record** to the log itself, a stele
//! record (format code 3) in stream `_stele/system`, sent through the sequencer like
//! any event, so the history of checks is itself tamper-evident:
//! `{"type":"verification","kind":"incremental|full","from":N,"to":M,"root":"<base64
//! root at M>","ok":true|false,"problems":K,"started":"RFC 3339","finished":"RFC 3339"}`.
//! An incremental pass that finds nothing new but the previous record appends none, so
//! an idle log does not grow by one record per interval.
//!
//! A failed pass is logged at error level with its problems, counted in
//! `stele_verify_failures_total`, and, when [`ServerConfig::verify_webhook`] is set,
//! POSTed as JSON to it. The webhook is plain `http://` over a std `TcpStream` (HTTP/1.1,
//! `Connection: close`, 5 s timeouts): stele adds no HTTP client dependency; put a relay
//! in front for TLS. A failed range stays untrusted: the next pass verifies it again, so
//! damage keeps being reported until it is dealt with.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine as _;
use stele_store::verify::{VerifyOptions, verify, verify_range};
use stele_tlog::Hash;
use tokio::sync::oneshot;

use crate::ServerConfig;
use crate::error::ServerError;
use crate::sequencer::{AppendRequest, CommitError, Msg, PreparedEvent, Shared};

/// Entries verified per slice of an incremental pass (the thread sleeps between slices).
const SLICE_ENTRIES: u64 = 4096;
/// Most of its wall time a pass spends working (the rest it sleeps).
const MAX_BUSY_SHARE: f64 = 0.5;
/// Payload size assumed per entry when pacing a full pass before any pass measured it.
const DEFAULT_ENTRY_BYTES: f64 = 1024.0;
/// Connect, read and write timeout of the webhook.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `url` is a webhook URL the checker can POST to (`http://host[:port][/path]`).
pub(crate) fn check_webhook(url: &str) -> Result<(), String> {
    parse_http_url(url).map(|_| ())
}

/// The stop signal of the checker thread, and its interruptible sleep.
#[derive(Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    pub(crate) fn stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps `d` or until stopped; true when stopped.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        while !*g {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.cv.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

/// Stops the checker thread when dropped (a pass in progress ends at its next slice;
/// the thread is not joined, so shutdown never waits for a long full pass).
pub(crate) struct Guard {
    pub(crate) stop: Arc<Stop>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Starts the checker thread; `None` when both kinds of pass are disabled.
pub(crate) fn spawn(config: &ServerConfig, shared: Arc<Shared>, tx: Sender<Msg>) -> Result<Option<Guard>, ServerError> {
    let incremental = Some(config.verify_incremental_interval).filter(|d| !d.is_zero());
    let full = Some(config.verify_full_interval).filter(|d| !d.is_zero());
    if incremental.is_none() && full.is_none() {
        return Ok(None);
    }
    let stop = Arc::new(Stop::default());
    let mut checker = Checker {
        shared,
        tx,
        stop: stop.clone(),
        max_bytes_per_sec: config.verify_max_bytes_per_sec.max(1) as f64,
        webhook: config.verify_webhook.clone(),
        from: 0,
        trusted: None,
        own_record: None,
        entry_bytes: DEFAULT_ENTRY_BYTES,
    };
    std::thread::Builder::new()
        .name("stele-selfcheck".into())
        .spawn(move || checker.run(incremental, full))
        .map_err(|e| ServerError::Sequencer(format!("spawning the self-check thread: {e}")))?;
    Ok(Some(Guard { stop }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Incremental,
    Full,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Incremental => "incremental",
            Kind::Full => "full",
        }
    }
}

/// What one pass found.
struct Outcome {
    kind: Kind,
    from: u64,
    to: u64,
    root: Hash,
    problems: Vec<String>,
    started: jiff::Timestamp,
    elapsed: Duration,
}

struct Checker {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    stop: Arc<Stop>,
    max_bytes_per_sec: f64,
    webhook: Option<String>,
    /// Entries `[0, from)` were verified by a successful pass.
    from: u64,
    /// The tree the checker trusts: `(from, root)` after a successful pass.
    trusted: Option<(u64, Hash)>,
    /// Index of the last verification record this checker appended.
    own_record: Option<u64>,
    /// Average payload bytes per entry seen so far (paces full passes).
    entry_bytes: f64,
}

impl Checker {
    fn run(&mut self, incremental: Option<Duration>, full: Option<Duration>) {
        let now = Instant::now();
        let mut next_incremental = incremental.map(|d| now + d);
        let mut next_full = full.map(|d| now + d);
        loop {
            let Some(next) = [next_incremental, next_full].into_iter().flatten().min() else { return };
            if self.stop.sleep(next.saturating_duration_since(Instant::now())) {
                return;
            }
            let now = Instant::now();
            let outcome = if next_full.is_some_and(|t| now >= t) {
                let o = self.full_pass();
                next_full = full.map(|d| Instant::now() + d);
                next_incremental = incremental.map(|d| Instant::now() + d);
                o
            } else if next_incremental.is_some_and(|t| now >= t) {
                let o = self.incremental_pass();
                next_incremental = incremental.map(|d| Instant::now() + d);
                o
            } else {
                continue;
            };
            match outcome {
                Some(o) => self.finish(o),
                None if self.stop.stopped() => return,
                None => {}
            }
        }
    }

    /// Sleeps after `bytes` of payload took `busy` of work, to stay below the limits;
    /// true when stopped.
    fn throttle(&self, bytes: f64, busy: Duration) -> bool {
        let want = (bytes / self.max_bytes_per_sec).max(busy.as_secs_f64() / MAX_BUSY_SHARE);
        let pause = want - busy.as_secs_f64();
        if pause > 0.0 { self.stop.sleep(Duration::from_secs_f64(pause)) } else { self.stop.stopped() }
    }

    /// `None` when there was nothing new or the thread was stopped.
    fn incremental_pass(&mut self) -> Option<Outcome> {
        let reader = &self.shared.reader;
        let (from, to) = (self.from, reader.tree_size());
        if to <= from {
            return None;
        }
        let started = jiff::Timestamp::now();
        let t0 = Instant::now();
        let mut problems = Vec::new();
        let mut trusted = self.trusted;
        let (mut bytes, mut root) = (0u64, Hash::default());
        let mut a = from;
        while a < to {
            let b = (a + SLICE_ENTRIES).min(to);
            let t = Instant::now();
            match verify_range(reader, a, b, trusted, &VerifyOptions::default()) {
                Ok(r) => {
                    problems.extend(r.problems.iter().map(ToString::to_string));
                    bytes += r.payload_bytes;
                    trusted = Some((b, r.root_hash));
                    root = r.root_hash;
                    if self.throttle(r.payload_bytes as f64, t.elapsed()) {
                        return None;
                    }
                }
                Err(e) => {
                    problems.push(format!("verifying entries [{a}, {b}): {e}"));
                    root = reader.root_hash(to).unwrap_or_default();
                    break;
                }
            }
            a = b;
        }
        self.entry_bytes = bytes as f64 / (to - from) as f64;
        Some(Outcome { kind: Kind::Incremental, from, to, root, problems, started, elapsed: t0.elapsed() })
    }

    fn full_pass(&mut self) -> Option<Outcome> {
        let reader = &self.shared.reader;
        let started = jiff::Timestamp::now();
        let t0 = Instant::now();
        let paced = Mutex::new((0u64, Instant::now()));
        let (entry_bytes, stop) = (self.entry_bytes.max(1.0), &self.stop);
        let max_rate = self.max_bytes_per_sec;
        let progress = |done: u64| {
            let mut g = paced.lock().unwrap_or_else(|p| p.into_inner());
            let busy = g.1.elapsed().as_secs_f64();
            let want = ((done - g.0) as f64 * entry_bytes / max_rate).max(busy / MAX_BUSY_SHARE);
            if want > busy && !stop.stopped() {
                stop.sleep(Duration::from_secs_f64(want - busy));
            }
            *g = (done, Instant::now());
        };
        let result =
            verify(reader, &VerifyOptions { against: None, progress: Some(&progress), ..VerifyOptions::default() });
        if self.stop.stopped() {
            return None;
        }
        let (to, root, problems) = match result {
            Ok(r) => (r.tree_size, r.root_hash, r.problems.iter().map(ToString::to_string).collect()),
            Err(e) => {
                let to = reader.tree_size();
                (to, reader.root_hash(to).unwrap_or_default(), vec![format!("full verification: {e}")])
            }
        };
        Some(Outcome { kind: Kind::Full, from: 0, to, root, problems, started, elapsed: t0.elapsed() })
    }

    /// Metrics, logging, webhook and the verification record of a finished pass.
    fn finish(&mut self, o: Outcome) {
        let m = &self.shared.metrics;
        let kind = o.kind.name();
        m.verify_pass_duration.get_or_create(&[("kind", kind)]).set(o.elapsed.as_secs_f64());
        let ok = o.problems.is_empty();
        if ok {
            self.from = o.to;
            self.trusted = Some((o.to, o.root));
            m.verify_last_size.set(i64::try_from(o.to).unwrap_or(i64::MAX));
            m.verify_last_success.set(stele_store::log::now_ns() as f64 / 1e9);
            tracing::info!(kind, from = o.from, to = o.to, "self-verification passed");
        } else {
            m.verify_failures.inc();
            tracing::error!(
                kind,
                from = o.from,
                to = o.to,
                problems = o.problems.len(),
                "SELF-VERIFICATION FAILED: the data directory is damaged or was tampered with"
            );
            for p in &o.problems {
                tracing::error!(kind, "self-verification problem: {p}");
            }
            if let Some(url) = &self.webhook {
                let body = serde_json::json!({
                    "type": "verification_failure",
                    "origin": self.shared.reader.origin(),
                    "kind": kind,
                    "from": o.from,
                    "to": o.to,
                    "problems": o.problems,
                });
                if let Err(e) = post_json(url, body.to_string().as_bytes()) {
                    tracing::error!("self-verification webhook {url}: {e}");
                }
            }
        }
        // Nothing new but our own last record: no record about it.
        let only_own = o.kind == Kind::Incremental && self.own_record == Some(o.from) && o.to == o.from + 1;
        if ok && only_own {
            return;
        }
        let record = serde_json::json!({
            "type": "verification",
            "kind": kind,
            "from": o.from,
            "to": o.to,
            "root": base64::engine::general_purpose::STANDARD.encode(o.root.0),
            "ok": ok,
            "problems": o.problems.len(),
            "started": o.started.to_string(),
            "finished": jiff::Timestamp::now().to_string(),
        });
        match self.append_record(record.to_string().into_bytes()) {
            Ok(index) => self.own_record = Some(index),
            Err(e) => tracing::error!("appending the verification record: {e}"),
        }
    }

    /// Appends a stele record to `_stele/system` through the sequencer; its index.
    fn append_record(&self, payload: Vec<u8>) -> Result<u64, String> {
        let len = payload.len();
        let shared = &self.shared;
        shared.queued_events.fetch_add(1, Ordering::AcqRel);
        shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        shared.metrics.queued_events.inc();
        let (reply, wait) = oneshot::channel();
        let request = AppendRequest {
            stream: stele_store::streams::SYSTEM_STREAM.to_string(),
            body: Bytes::from(payload),
            events: vec![PreparedEvent {
                range: 0..len,
                format: stele_store::log::FORMAT_STELE_RECORD,
                fields: Default::default(),
            }],
            dedup: crate::dedup::Dedup::None,
            reply,
        };
        if self.tx.send(Msg::Append(request)).is_err() {
            shared.release(1, len);
            return Err("the sequencer stopped".into());
        }
        match wait.blocking_recv() {
            Ok(Ok(c)) => c.indexes.first().copied().ok_or_else(|| "no index returned".into()),
            Ok(Err(
                CommitError::Unavailable(e)
                | CommitError::Rejected(e)
                | CommitError::Failed(e)
                | CommitError::Conflict(e),
            )) => Err(e),
            Err(_) => Err("the sequencer stopped before committing it".into()),
        }
    }
}

/// `(host, port, path)` of an `http://` URL.
fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("webhook {url:?}: only http:// URLs are supported (put a relay in front for TLS)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => {
            (h, p.parse::<u16>().map_err(|_| format!("webhook {url:?}: bad port {p:?}"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return Err(format!("webhook {url:?}: expected http://host[:port][/path]"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// POSTs `body` as JSON to `url` and checks for a 2xx answer.
fn post_json(url: &str, body: &[u8]) -> Result<(), String> {
    let (host, port, path) = parse_http_url(url)?;
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, WEBHOOK_TIMEOUT).map_err(|e| format!("connecting: {e}"))?;
    s.set_read_timeout(Some(WEBHOOK_TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(WEBHOOK_TIMEOUT)).map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: stele\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| format!("sending: {e}"))?;
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
    let status = std::str::from_utf8(&answer[..n]).unwrap_or("").split(' ').nth(1).unwrap_or("");
    if status.starts_with('2') { Ok(()) } else { Err(format!("answered status {status:?}")) }
}

#[cfg(test)]
mod tests {
    use super::parse_http_url;

    #[test]
    fn webhook_urls() {
        assert_eq!(parse_http_url("http://h:81/x/y").unwrap(), ("h".into(), 81, "/x/y".into()));
        assert_eq!(parse_http_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert_eq!(parse_http_url("http://[::1]:9/").unwrap(), ("[::1]".into(), 9, "/".into()));
        assert!(parse_http_url("https://h/").is_err());
        assert!(parse_http_url("http://u@h/").is_err());
        assert!(parse_http_url("http://h:x/").is_err());
    }
}
