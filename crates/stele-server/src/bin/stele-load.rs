//! `stele-load`: a load generator for a running stele server that checks what it
//! gets back.
//!
//! ```text
//! stele-load --url http://127.0.0.1:7000 [--concurrency 64] [--batch 1] [--duration 10s]
//!            [--stream NAME] [--seed N] [--wait-checkpoint] [--rate EVENTS_PER_S] [--k8s]
//! ```
//!
//! `--k8s` posts to `POST /v1/k8s/audit` instead, as a Kubernetes API server's audit
//! webhook does: each request is an `audit.k8s.io/v1` `EventList` of `batch`
//! Metadata-level audit events (about 900 bytes each, unique `auditID`s, varied users,
//! verbs, resources, namespaces and response codes).
//!
//! `--wait-checkpoint` posts with `?wait=checkpoint`, so the latency measured is append
//! to receipt (a signed checkpoint covering the events, with their inclusion proofs);
//! every 200 must then carry the checkpoint. `--rate` paces the clients to that many
//! events per second in total (each client sends one request every
//! `concurrency × batch / rate` seconds, or at once when it is behind).
//!
//! Each of `concurrency` clients holds one keep-alive HTTP/1.1 connection and sends
//! `POST /v1/events` requests of `batch` synthetic audit events (200–600 bytes each,
//! varied actors, actions, resources, outcomes and times) back to back until the
//! duration is over. Every 200 response must list exactly as many entries as were
//! sent, and all indexes must be unique; 503 answers are counted and retried after
//! their `Retry-After`. It prints events/s, requests/s and latency percentiles, and
//! exits non-zero if a check failed. Only loopback servers are accepted: this is a
//! benchmark tool, not a way to load someone else's server.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bounds on the arguments, so that a typo cannot exhaust the machine.
const MAX_CONCURRENCY: usize = 4096;
const MAX_BATCH: usize = 100_000;
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Largest response accepted (a batch response lists every index and leaf hash).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

struct Args {
    host: String,
    addr: SocketAddr,
    concurrency: usize,
    batch: usize,
    duration: Duration,
    stream: Option<String>,
    seed: u64,
    probe: bool,
    wait_checkpoint: bool,
    rate: Option<f64>,
    k8s: bool,
}

fn usage() -> &'static str {
    "usage: stele-load --url http://127.0.0.1:PORT [--concurrency 64] [--batch 1] [--duration 10s] [--stream NAME] [--seed N] [--probe] [--wait-checkpoint] [--rate EVENTS_PER_S] [--k8s]"
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("--duration {s:?}: not a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("--duration {s:?}: use ms, s or m")),
    };
    if secs.is_nan() || secs <= 0.0 || secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("--duration must be positive and at most {} s", MAX_DURATION.as_secs()));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let (mut concurrency, mut batch, mut duration, mut stream, mut seed) =
        (64usize, 1usize, Duration::from_secs(10), None, 1u64);
    let mut probe = false;
    let mut wait_checkpoint = false;
    let mut rate = None;
    let mut k8s = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if key == "--help" || key == "-h" {
            return Err(usage().to_string());
        }
        if key == "--probe" {
            probe = true;
            continue;
        }
        if key == "--wait-checkpoint" {
            wait_checkpoint = true;
            continue;
        }
        if key == "--k8s" {
            k8s = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{key} needs a value\n{}", usage()))?,
        };
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("{key} {v:?}: not a number"));
        match key.as_str() {
            "--url" => url = Some(value),
            "--concurrency" => concurrency = num(&value)?,
            "--batch" => batch = num(&value)?,
            "--duration" => duration = parse_duration(&value)?,
            "--stream" => stream = Some(value),
            "--rate" => {
                let r: f64 = value.parse().map_err(|_| format!("--rate {value:?}: not a number"))?;
                if !(r > 0.0 && r <= 10_000_000.0) {
                    return Err("--rate must be positive and at most 10000000 events/s".into());
                }
                rate = Some(r);
            }
            "--seed" => seed = value.parse().map_err(|_| format!("--seed {value:?}: not a number"))?,
            _ => return Err(format!("unknown argument {key:?}\n{}", usage())),
        }
    }
    let url = url.ok_or_else(|| format!("--url is required\n{}", usage()))?;
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(format!("--concurrency must be 1..={MAX_CONCURRENCY}"));
    }
    if batch == 0 || batch > MAX_BATCH {
        return Err(format!("--batch must be 1..={MAX_BATCH}"));
    }
    let rest = url.strip_prefix("http://").ok_or("--url must start with http:// (TLS is not supported)")?;
    let host = rest.split('/').next().unwrap_or("").to_string();
    if host.is_empty() {
        return Err("--url has no host".into());
    }
    let with_port = if host.starts_with('[') && !host.contains("]:") || !host.starts_with('[') && !host.contains(':') {
        format!("{host}:80")
    } else {
        host.clone()
    };
    let addrs: Vec<SocketAddr> =
        with_port.to_socket_addrs().map_err(|e| format!("--url host {host:?}: {e}"))?.collect();
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    let addr = *addrs.first().ok_or_else(|| format!("--url host {host:?} resolves to nothing"))?;
    if !addrs.iter().all(|a| loopback(a.ip())) {
        return Err(format!("refusing {host}: stele-load only targets loopback addresses (127.0.0.0/8, ::1)"));
    }
    if k8s && wait_checkpoint {
        return Err("--k8s and --wait-checkpoint cannot be combined (the webhook route gives no receipts)".into());
    }
    Ok(Args { host, addr, concurrency, batch, duration, stream, seed, probe, wait_checkpoint, rate, k8s })
}

/// xorshift64*: fast, seeded, good enough to vary synthetic events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const ACTIONS: &[&str] = &[
    "user.login",
    "user.logout",
    "user.mfa.challenge",
    "repo.create",
    "repo.delete",
    "repo.push",
    "secret.read",
    "secret.rotate",
    "policy.update",
    "role.grant",
    "role.revoke",
    "bucket.read",
    "bucket.write",
    "pod.exec",
    "deploy.start",
    "token.issue",
];
const RESOURCE_KINDS: &[&str] =
    &["repo", "bucket", "secret", "policy", "role", "namespace/pod", "service", "database", "token"];
const OUTCOMES: &[&str] = &["success", "success", "success", "success", "failure", "denied", "error"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "curl/8.5.0",
    "aws-cli/2.15.0 Python/3.11.6",
    "kubectl/v1.30.2 (linux/amd64)",
    "terraform/1.8.5",
    "okhttp/4.12.0",
];
const WORDS: &[&str] = &[
    "approved",
    "by",
    "change",
    "ticket",
    "automated",
    "rollout",
    "emergency",
    "access",
    "review",
    "quarterly",
    "scheduled",
    "rotation",
    "incident",
    "follow-up",
    "migration",
    "cleanup",
    "requested",
    "on-call",
    "audit",
    "exception",
];

/// Appends one synthetic event (no trailing newline).
fn event(rng: &mut Rng, client: usize, seq: u64, base_ns: i128, out: &mut String) {
    use std::fmt::Write as _;
    let t =
        jiff::Timestamp::from_nanosecond(base_ns + i128::from(rng.below(3_600_000)) * 1_000_000 - 1_800_000_000_000)
            .unwrap_or_default();
    let actor = rng.below(5000);
    let kind = rng.pick(RESOURCE_KINDS);
    let _ = write!(
        out,
        r#"{{"time":"{t:.3}","actor":"user-{actor}@example.com","action":"{}","resource":"org-{}/{kind}-{}","outcome":"{}","source_ip":"10.{}.{}.{}","user_agent":"{}","request_id":"{:016x}","client":{client},"seq":{seq}"#,
        rng.pick(ACTIONS),
        rng.below(40),
        rng.below(10_000),
        rng.pick(OUTCOMES),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        rng.pick(AGENTS),
        rng.next(),
    );
    // A free-text note of varying length brings events to about 200-600 bytes.
    out.push_str(r#","details":{"note":""#);
    for i in 0..rng.below(45) {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
    let _ = write!(out, r#"","size":{}}}}}"#, rng.below(1 << 20));
}

const K8S_VERBS: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
const K8S_RESOURCES: &[&str] = &["pods", "secrets", "configmaps", "deployments", "services", "leases", "nodes"];
const K8S_NAMESPACES: &[&str] = &["default", "kube-system", "payments", "web", "monitoring", "ci"];

/// Appends one synthetic Kubernetes audit event (Metadata level, no trailing newline).
fn k8s_event(rng: &mut Rng, client: usize, seq: u64, out: &mut String) {
    use std::fmt::Write as _;
    let now = jiff::Timestamp::now();
    let verb = rng.pick(K8S_VERBS);
    let resource = rng.pick(K8S_RESOURCES);
    let ns = rng.pick(K8S_NAMESPACES);
    let name = format!("{}-{:x}", &resource[..resource.len() - 1], rng.below(1 << 20));
    let user = rng.below(300);
    let code = if rng.below(10) == 0 { 403 } else { 200 };
    let _ = write!(
        out,
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{:08x}-{:04x}-4{:03x}-{client:04x}-{seq:012x}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/{resource}/{name}","verb":"{verb}","user":{{"username":"user-{user}@example.com","groups":["system:authenticated","team-{}"]}},"sourceIPs":["10.{}.{}.{}"],"userAgent":"kubectl/v1.30.2 (linux/amd64) kubernetes/39683505","objectRef":{{"resource":"{resource}","namespace":"{ns}","name":"{name}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"{now:.6}","stageTimestamp":"{now:.6}","annotations":{{"authorization.k8s.io/decision":"{}","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"team-{}\" of ClusterRole \"edit\" to Group \"team-{}\""}}}}"#,
        rng.next() as u32,
        rng.below(1 << 16),
        rng.below(1 << 12),
        rng.below(20),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        if code == 403 { "forbid" } else { "allow" },
        rng.below(20),
        rng.below(20),
    );
}

#[derive(Default)]
struct ClientReport {
    requests: u64,
    events: u64,
    bytes: u64,
    overloaded: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
    indexes: Vec<u64>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(16 * 1024) })
    }

    /// Sends one request and reads its response: (status, Retry-After, body).
    async fn round_trip(&mut self, request: &[u8]) -> Result<(u16, Option<u64>, Vec<u8>), String> {
        self.stream.write_all(request).await.map_err(|e| format!("writing: {e}"))?;
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| "response head is not UTF-8")?.to_string();
        let mut lines = head.split("\r\n");
        let status: u16 =
            lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
        let (mut len, mut retry) = (None, None);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("retry-after") {
                    retry = v.trim().parse::<u64>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked responses are not expected from POST /v1/events".into());
                }
            }
        }
        let len = len.ok_or("response without Content-Length")?;
        if len > MAX_RESPONSE_BYTES {
            return Err(format!("response of {len} bytes is too large"));
        }
        let body_start = head_end + 4;
        while self.buf.len() < body_start + len {
            self.fill().await?;
        }
        let body = self.buf[body_start..body_start + len].to_vec();
        self.buf.drain(..body_start + len);
        Ok((status, retry, body))
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

async fn client(id: usize, args: std::sync::Arc<Args>, deadline: Instant) -> ClientReport {
    let mut report = ClientReport::default();
    let mut rng =
        Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let base_ns = jiff::Timestamp::now().as_nanosecond();
    let route = if args.k8s { "/v1/k8s/audit" } else { "/v1/events" };
    let mut path = match &args.stream {
        Some(s) => format!("{route}?stream={s}"),
        None => route.to_string(),
    };
    if args.wait_checkpoint {
        path.push_str(if args.stream.is_some() { "&wait=checkpoint" } else { "?wait=checkpoint" });
    }
    let interval = args.rate.map(|r| Duration::from_secs_f64(args.concurrency as f64 * args.batch as f64 / r));
    // Clients start spread over one interval so that paced requests do not come in waves.
    let mut next_send =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(id as f64 / args.concurrency as f64));
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    let mut body = String::new();
    let mut request: Vec<u8> = Vec::new();
    while Instant::now() < deadline {
        if let Some(i) = interval {
            if next_send >= deadline {
                break;
            }
            tokio::time::sleep_until(next_send.into()).await;
            next_send += i;
        }
        body.clear();
        if args.k8s {
            body.push_str(r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#);
        }
        for k in 0..args.batch {
            if k > 0 {
                body.push(if args.k8s { ',' } else { '\n' });
            }
            if args.k8s {
                k8s_event(&mut rng, id, seq, &mut body);
            } else {
                event(&mut rng, id, seq, base_ns, &mut body);
            }
            seq += 1;
        }
        if args.k8s {
            body.push_str("]}");
        }
        let content_type = if args.k8s { "application/json" } else { "application/x-ndjson" };
        request.clear();
        request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                args.host,
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body.as_bytes());
        if conn.is_none() {
            match Conn::connect(args.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    report.errors += 1;
                    report.first_error.get_or_insert(format!("connecting: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let sent = Instant::now();
        let result = c.round_trip(&request).await;
        let took = sent.elapsed();
        match result {
            Ok((200, _, resp)) => {
                report.latencies_us.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                report.requests += 1;
                report.events += args.batch as u64;
                report.bytes += body.len() as u64;
                match check_response(&resp, args.batch, args.wait_checkpoint) {
                    Ok(idx) => report.indexes.extend(idx),
                    Err(e) => {
                        report.errors += 1;
                        report.first_error.get_or_insert(e);
                    }
                }
            }
            Ok((503 | 429, retry, _)) => {
                report.overloaded += 1;
                tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1).min(5))).await;
            }
            Ok((status, _, resp)) => {
                report.errors += 1;
                report.first_error.get_or_insert(format!("HTTP {status}: {}", String::from_utf8_lossy(&resp)));
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert(e);
                conn = None;
            }
        }
    }
    report
}

/// The indexes of a 200 response, checking there is one per event sent.
/// With `--probe`: every 200 ms, posts one event with a unique actor and then polls
/// `GET /v1/query?actor=…` until the event is returned; records acknowledged → queryable
/// latencies in milliseconds. Polling is every 10 ms, so latencies are rounded up to it.
async fn probe(args: std::sync::Arc<Args>, deadline: Instant) -> (Vec<f64>, u64) {
    let mut out = Vec::new();
    let mut failures = 0u64;
    let mut n = 0u64;
    while Instant::now() + Duration::from_millis(500) < deadline {
        n += 1;
        let actor = format!("probe-{}-{n}", args.seed);
        let body = format!("{{\"actor\":\"{actor}\",\"action\":\"probe\",\"resource\":\"stele-load\"}}");
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            args.host,
            body.len()
        );
        let Ok(mut conn) = Conn::connect(args.addr).await else {
            failures += 1;
            continue;
        };
        match conn.round_trip(request.as_bytes()).await {
            Ok((200, _, _)) => {}
            _ => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let acked = Instant::now();
        let get =
            format!("GET /v1/query?actor={actor}&limit=1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", args.host);
        let found = loop {
            if acked.elapsed() > Duration::from_secs(30) {
                break None;
            }
            if let Ok(mut s) = TcpStream::connect(args.addr).await {
                let mut resp = Vec::new();
                if s.write_all(get.as_bytes()).await.is_ok() && s.read_to_end(&mut resp).await.is_ok() {
                    let needle = format!("\"actor\":\"{actor}\"");
                    if resp.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        break Some(acked.elapsed());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match found {
            Some(d) => out.push(d.as_secs_f64() * 1000.0),
            None => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (out, failures)
}

fn check_response(body: &[u8], sent: usize, receipt: bool) -> Result<Vec<u64>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    if receipt && !v["checkpoint"]["note"].is_string() {
        return Err("a ?wait=checkpoint response has no checkpoint note".into());
    }
    let entries = v["entries"].as_array().ok_or("response has no \"entries\" array")?;
    if entries.len() != sent {
        return Err(format!("sent {sent} events but the response lists {} entries", entries.len()));
    }
    entries.iter().map(|e| e["index"].as_u64().ok_or_else(|| "an entry has no index".to_string())).collect()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stele-load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stele-load: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args = std::sync::Arc::new(args);
    println!(
        "stele-load: {} clients, {} event(s) per request, {:.1} s against http://{}{}{}",
        args.concurrency,
        args.batch,
        args.duration.as_secs_f64(),
        args.host,
        args.rate.map(|r| format!(", paced to {r:.0} events/s")).unwrap_or_default(),
        if args.wait_checkpoint { ", waiting for checkpoint receipts" } else { "" }
    );
    let started = Instant::now();
    let deadline = started + args.duration;
    let (reports, probed): (Vec<ClientReport>, Option<(Vec<f64>, u64)>) = rt.block_on(async {
        let prober = args.probe.then(|| tokio::spawn(probe(args.clone(), deadline)));
        let tasks: Vec<_> = (0..args.concurrency).map(|i| tokio::spawn(client(i, args.clone(), deadline))).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        let probed = match prober {
            Some(p) => p.await.ok(),
            None => None,
        };
        (out, probed)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut requests, mut events, mut bytes, mut overloaded, mut errors) = (0, 0, 0, 0, 0);
    let mut first_error = None;
    let mut lat = Vec::new();
    let mut indexes = Vec::new();
    for r in reports {
        requests += r.requests;
        events += r.events;
        bytes += r.bytes;
        overloaded += r.overloaded;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        lat.extend(r.latencies_us);
        indexes.extend(r.indexes);
    }
    lat.sort_unstable();
    let n = indexes.len();
    indexes.sort_unstable();
    indexes.dedup();
    let duplicates = n - indexes.len();
    println!(
        "events:   {events} ({:.0}/s, {:.1} MB/s of payload)\nrequests: {requests} ok ({:.0}/s), {overloaded} answered 503, {errors} errors",
        events as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        requests as f64 / elapsed
    );
    println!(
        "latency (request to {}, ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        if args.wait_checkpoint { "checkpoint receipt" } else { "acknowledgement" },
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        lat.last().map_or(0.0, |&m| f64::from(m) / 1000.0)
    );
    if let Some((mut ms, failures)) = probed {
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| if ms.is_empty() { 0.0 } else { ms[((ms.len() - 1) as f64 * p).round() as usize] };
        println!(
            "acknowledged -> queryable (ms, {} probes, {failures} failed): p50 {:.1}  p99 {:.1}  max {:.1}",
            ms.len(),
            pct(0.50),
            pct(0.99),
            ms.last().copied().unwrap_or(0.0)
        );
    }
    if let Some(e) = &first_error {
        println!("first error: {e}");
    }
    if duplicates > 0 {
        println!("CHECK FAILED: {duplicates} duplicate indexes among {n} acknowledged events");
        return ExitCode::FAILURE;
    }
    println!("check: every 200 listed one entry per event sent; {n} indexes, all unique");
    if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
