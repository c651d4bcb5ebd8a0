//! Limits per client: connections per source address on every TCP listener, and a
//! request rate per principal on the read routes.
//!
//! **Connections.** Every TCP listener (HTTP, OTLP/gRPC, syslog TCP and TLS) counts its
//! open connections per client, in addition to its total. A client is an IPv4 address
//! or an IPv6 /64 prefix (RFC 4291 §2.5.4: one host, or one site's subnet, commonly
//! owns a whole /64, so counting single IPv6 addresses would let one host open
//! connections from as many addresses as it likes). IPv4-mapped IPv6 addresses count
//! as their IPv4 address. A connection past its client's share is refused at once,
//! before anything is read from it:
//! - HTTP: answered `429 Too Many Requests`, `Retry-After: 1`, `Connection: close`,
//!   body `{"error":"...","retry_after_seconds":1}` (over TLS after the handshake),
//!   then closed.
//! - OTLP/gRPC: every call on it answered `RESOURCE_EXHAUSTED` with a
//!   `google.rpc.RetryInfo` of 1 s (OTLP exporters retry that after the delay), then
//!   closed at the end of its lifetime; the same refusal slots and lifetime apply.
//! - Syslog TCP/TLS: closed (syslog has no way to answer).
//!
//! The OTLP/gRPC listener also refuses, in the same way and with a message naming
//! `max_connections`, a connection past its total; the HTTP listener leaves such a
//! connection in the kernel's accept backlog until one closes.
//!
//! On HTTP and OTLP/gRPC, at most [`REFUSAL_SLOTS`] refused connections per listener
//! are being answered at once, each for at most [`REFUSAL_LIFETIME`] (writes do not
//! extend it); past that they are closed unanswered.
//!
//! Every refusal is counted (`stele_connections_refused_total{listener}`; syslog also
//! in `stele_syslog_connections_closed_total{reason="too_many_from_client"}`) and
//! logged at most once per [`REFUSAL_LOG_INTERVAL`] per listener, with the number of
//! refusals since the last line, so that a client hammering the listener cannot fill
//! the server's log.
//!
//! **Read rate.** With `read_requests_per_second` set, every authenticated principal has
//! a token bucket of that many requests per second (burst: one second's worth) for
//! the read routes (`GET /v1/query`, `/v1/entries/{index}`, `/checkpoint...`,
//! `/tile/...`, `/v1/proof/...`, `/key-statements`, `/metrics`, `GET
//! /v1/admin/holds`); past it the answer is `429` with `Retry-After` and `{"error":
//! "...", "retry_after_seconds": N}`. Anonymous callers of public routes are not
//! limited per principal (they have none); the connection limits bound them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;

use crate::access::Bucket;
use crate::auth::Caller;

/// Default `max_connections_per_client` (HTTP, OTLP/gRPC and syslog TCP/TLS): a
/// quarter of the default total (1024), so that one client, or everything behind one
/// NAT or proxy address, can hold at most a quarter of the connections and at least
/// three others always get in; 256 is still far above what one HTTP client pools
/// (10 to 100 connections) or a syslog relay opens (one per action queue), so a
/// proxy in front of many senders fits. Behind a reverse proxy that is the only
/// client, raise it to `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Default `read_requests_per_second`: 0, no limit. Each read is already bounded (a
/// query by `request_timeout` and 100 000 hits, a tile or proof by its size), and a
/// monitor catching up on a large log legitimately fetches thousands of tiles a
/// second; a rate that suits no deployment in particular would only break those.
/// Set it to bound what one stolen read token can pull.
pub const DEFAULT_READ_REQUESTS_PER_SECOND: u32 = 0;
/// Refused HTTP connections being answered at once, per listener: bounds the tasks
/// and sockets a client over its share can hold by opening more connections.
pub const REFUSAL_SLOTS: usize = 64;
/// How long a refused HTTP connection may take to send its request and read the 429
/// (TLS handshake included) before it is closed.
pub const REFUSAL_LIFETIME: Duration = Duration::from_secs(5);
/// Refusals are logged at most once per this interval per listener.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The client a connection is counted against: its IPv4 address, or its IPv6 /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Why a connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its client already holds `max_connections_per_client` connections.
    ClientShare,
    /// The listener already holds `max_connections` connections (OTLP/gRPC).
    Total,
}

/// Open connections per client of one listener, and its refusal log.
pub(crate) struct PerClient {
    listener: &'static str,
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: Counter,
    /// When the last refusal line was logged, and refusals since then not logged.
    log: Mutex<(Option<Instant>, u64)>,
}

/// One open connection's place in its client's count; given back when dropped.
pub(crate) struct ClientSlot {
    owner: Arc<PerClient>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl PerClient {
    /// `listener` names the listener in metrics and the log; `refused` is its
    /// `stele_connections_refused_total` counter.
    pub(crate) fn new(listener: &'static str, limit: usize, refused: Counter) -> Arc<PerClient> {
        Arc::new(PerClient { listener, limit, open: Mutex::default(), refused, log: Mutex::new((None, 0)) })
    }

    /// A slot for a new connection from `peer`, or `None` (counted and logged) when
    /// its client already holds `limit` connections.
    pub(crate) fn try_open(self: &Arc<Self>, peer: SocketAddr) -> Option<ClientSlot> {
        let key = client_key(peer.ip());
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(key).or_insert(0);
            if *n < self.limit {
                *n += 1;
                return Some(ClientSlot { owner: self.clone(), key });
            }
        }
        self.refuse(peer);
        None
    }

    /// Connections `peer`'s client holds open.
    #[cfg(test)]
    fn open_of(&self, peer: IpAddr) -> usize {
        self.open.lock().unwrap().get(&client_key(peer)).copied().unwrap_or(0)
    }

    /// Counts and logs a connection from `peer` refused because the listener holds
    /// `max_connections` (OTLP/gRPC).
    pub(crate) fn refuse_past_total(&self, peer: SocketAddr, max_connections: usize) {
        let what = "connection refused: the listener already holds max_connections connections";
        self.count_refusal(peer, what, max_connections);
    }

    fn refuse(&self, peer: SocketAddr) {
        let what = "connection refused: the client already holds max_connections_per_client connections";
        self.count_refusal(peer, what, self.limit);
    }

    /// Counts a refusal and logs it at most once per [`REFUSAL_LOG_INTERVAL`].
    fn count_refusal(&self, peer: SocketAddr, what: &'static str, limit: usize) {
        self.refused.inc();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if log.0.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL) {
            log.1 += 1;
            return;
        }
        let earlier = std::mem::take(&mut log.1);
        log.0 = Some(now);
        tracing::warn!(
            listener = self.listener,
            %peer,
            limit,
            refused_since_last_report = earlier,
            "{what}"
        );
    }
}

/// The answer on an HTTP connection over its client's share (see the module docs).
pub(crate) fn refusal_response() -> Response {
    let mut r = crate::http::error_with(
        StatusCode::TOO_MANY_REQUESTS,
        "too many connections from this client (max_connections_per_client); retry on an open connection or later",
        serde_json::json!({ "retry_after_seconds": 1 }),
    )
    .with_retry_after_secs(1)
    .into_response();
    r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    r
}

/// The answer to every OTLP/gRPC call on a refused connection: `RESOURCE_EXHAUSTED`
/// with a `google.rpc.RetryInfo` of 1 s, naming the limit.
pub(crate) fn grpc_refusal(refusal: Refusal) -> tonic::Status {
    use tonic_types::StatusExt as _;
    let message = match refusal {
        Refusal::ClientShare => "too many connections from this client (max_connections_per_client); retry later",
        Refusal::Total => "too many connections to this listener (max_connections); retry later",
    };
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        message,
        tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
    )
}

/// Per-principal token buckets of the read routes.
pub(crate) struct ReadRate {
    per_second: u32,
    buckets: Mutex<HashMap<Arc<str>, Arc<Bucket>>>,
}

impl ReadRate {
    /// `per_second` 0: no limit.
    pub(crate) fn new(per_second: u32) -> Arc<ReadRate> {
        Arc::new(ReadRate { per_second, buckets: Mutex::default() })
    }

    /// Takes one request from `principal`'s bucket; `Err(seconds to wait)` past it.
    fn take(&self, principal: &Arc<str>) -> Result<(), u64> {
        let bucket = {
            let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            b.entry(principal.clone()).or_insert_with(|| Arc::new(Bucket::new(self.per_second))).clone()
        };
        bucket.take(1)
    }
}

/// Whether a request is a read (see the module docs): the routes are matched by their
/// pattern, so unknown paths (404) are not charged.
fn is_read(method: &Method, route: Option<&str>) -> bool {
    let Some(route) = route else { return false };
    method == Method::GET
        && (route.starts_with("/v1/query")
            || route.starts_with("/v1/entries/")
            || route.starts_with("/checkpoint")
            || route.starts_with("/tile/")
            || route.starts_with("/v1/proof/")
            || route == "/key-statements"
            || route == "/metrics"
            || route == "/v1/admin/holds")
}

/// The read-rate middleware; runs after access control, which left the [`Caller`]
/// in the request's extensions.
pub(crate) async fn read_rate(State(rate): State<Arc<ReadRate>>, req: Request, next: Next) -> Response {
    if rate.per_second == 0 {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let caller = req.extensions().get::<Caller>().filter(|c| c.auth != "none");
    if let (true, Some(caller)) = (is_read(req.method(), route), caller)
        && let Err(secs) = rate.take(&caller.name)
    {
        return crate::http::error_with(
            StatusCode::TOO_MANY_REQUESTS,
            format!("read rate limit of this principal reached (read_requests_per_second); retry in {secs} s"),
            serde_json::json!({ "retry_after_seconds": secs }),
        )
        .with_retry_after_secs(secs)
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 4000)
    }

    #[test]
    fn clients_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(client_key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(client_key("2001:db8:1:3::1".parse().unwrap()), client_key("2001:db8:1:2::1".parse().unwrap()));
    }

    #[test]
    fn a_client_gets_its_share_and_slots_come_back() {
        let refused = Counter::default();
        let p = PerClient::new("test", 2, refused.clone());
        let a = p.try_open(addr("2001:db8::1")).expect("first");
        let b = p.try_open(addr("2001:db8::2")).expect("second, same /64");
        assert!(p.try_open(addr("2001:db8::3")).is_none(), "third from the same /64 is refused");
        assert!(p.try_open(addr("192.0.2.1")).is_some(), "another client is not affected");
        assert_eq!(refused.get(), 1);
        drop(a);
        assert_eq!(p.open_of("2001:db8::9".parse().unwrap()), 1);
        let c = p.try_open(addr("2001:db8::3")).expect("a slot came back");
        drop((b, c));
        assert!(p.open.lock().unwrap().get(&client_key("2001:db8::1".parse().unwrap())).is_none(), "no empty entries");
    }

    #[test]
    fn read_routes_are_the_get_routes_that_return_log_data() {
        assert!(is_read(&Method::GET, Some("/v1/query")));
        assert!(is_read(&Method::GET, Some("/tile/{*path}")));
        assert!(is_read(&Method::GET, Some("/v1/entries/{index}")));
        assert!(!is_read(&Method::POST, Some("/v1/events")));
        assert!(!is_read(&Method::GET, Some("/healthz")));
        assert!(!is_read(&Method::POST, Some("/v1/admin/holds")));
        assert!(!is_read(&Method::GET, None));
    }
}
