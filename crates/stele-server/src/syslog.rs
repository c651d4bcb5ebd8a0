//! Syslog listeners: RFC 5426 over UDP, RFC 6587 over TCP, RFC 5425 over TLS.
//!
//! Each message is stored as one entry of format `syslog` (code 4) in the configured
//! stream, byte for byte as received; the framing rules, which bytes are kept and the
//! normalized fields are those of [`stele_formats::syslog`]. Syslog has no way to
//! refuse a message, so every frame received within the limits is stored, whether or
//! not it parses as RFC 5424 or RFC 3164.
//!
//! - **TCP and TLS.** Framing (octet counting or LF) is detected per connection from
//!   its first byte. A connection is read, deframed and parsed in batches (up to
//!   [`BATCH_EVENTS`] messages or [`BATCH_BYTES`] bytes) handed to one committer per
//!   connection, which appends them in order and waits for room in the queue rather
//!   than failing: while storage is behind, the reader stops reading and TCP pushes
//!   back on the sender. Nothing read is dropped. A connection is closed, with the
//!   reason logged and counted in `stele_syslog_connections_closed_total{protocol,
//!   reason}`, when a frame breaks the framing or the size limit (`bad_frame`; the
//!   frame is also counted `rejected`), when nothing arrives for `idle_timeout`
//!   (`idle_timeout`), when a started message is not complete within
//!   `message_timeout` (`message_timeout`: a client trickling bytes), on a read error,
//!   or when the log stops accepting writes. Messages complete before the fault are
//!   still appended.
//! - **UDP.** One datagram is one message. Datagrams are batched as they arrive; a
//!   batch that finds the queue full is dropped and counted `dropped` (UDP cannot push
//!   back). A datagram over the size limit is counted `rejected`.
//! - **Who may send.** Plain UDP and TCP carry no credentials: only peers in the
//!   `allow` list of CIDR blocks are served (default loopback only); others are
//!   closed (TCP, reason `not_allowed`) or counted `rejected` (UDP). TLS serves any
//!   peer that completes the handshake; with a client CA, only peers presenting a
//!   certificate it issued (mutual TLS, RFC 5425 §5.2). The certificate, key and
//!   client CA files are re-read every `reload_interval` like the HTTP listener's
//!   (`crate::tls::Reloader`): new connections get a renewed certificate without a
//!   restart; files that do not load keep the previous one in force.
//! - **Limits.** `max_connections` TCP and TLS connections at once (more are closed at
//!   once, reason `too_many_connections`), and `max_connections_per_client` per client
//!   (IPv4 address or IPv6 /64) on each of the two listeners (more are closed at once,
//!   reason `too_many_from_client`, also counted in `stele_connections_refused_total`
//!   and logged at most once a minute, see [`crate::per_client`]); a message is at most `max_message_bytes`
//!   and never more than the log's largest entry.
//!
//! Every listener stops at shutdown: connections stop reading, what they read is
//! appended, and only then does the sequencer stop.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use stele_formats::EventFormat;
use stele_formats::syslog::{DEFAULT_MAX_MESSAGE_BYTES, Deframer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ServerError;
use crate::http::App;
use crate::sequencer::PreparedEvent;
use crate::submit::SubmitError;

/// Most messages in one batch: one atomic append each, so a batch is bounded like an
/// HTTP request (1,000 keeps one commit's share of a connection small while
/// amortizing the commit).
pub const BATCH_EVENTS: usize = 1_000;
/// Most payload bytes in one batch (1 MiB): bounds the memory a connection holds. A
/// message that would take a batch past it starts the next batch; only a message
/// larger than this (with `max_message_bytes` raised past it) makes a batch of its own.
pub const BATCH_BYTES: usize = 1 << 20;
/// Default stream of syslog entries.
pub const DEFAULT_STREAM: &str = "syslog";
/// Default `idle_timeout` (5 minutes): senders such as rsyslog keep one connection
/// open and reconnect when it is closed; a long timeout frees connections of senders
/// that went away without costing the busy ones a reconnect.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `message_timeout` (30 s, as for an HTTP body): a message whose first byte
/// arrived must be complete within it, so that a client trickling bytes cannot hold a
/// connection and its buffer forever. Also bounds a TLS handshake.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_connections` (TCP and TLS together): each costs a task, a 64 KiB read
/// buffer and up to one batch.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Bytes asked for per read of a TCP/TLS connection.
const READ_BYTES: usize = 64 << 10;

/// An IPv4 or IPv6 address block such as `10.0.0.0/8` or `::1/128` (RFC 4632);
/// a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as
    /// seen on dual-stack sockets) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }

    /// `127.0.0.0/8` and `::1/128`: the default allow-list.
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr { addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
            Cidr { addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), prefix: 128 },
        ]
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = (usize::from(prefix / 8), prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

/// Error of `Cidr::from_str`: the text and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR block {text:?}: {reason}")]
pub struct CidrError {
    /// The text given.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `ADDRESS` or `ADDRESS/PREFIX` (prefix ≤ 32 for IPv4, ≤ 128 for IPv6).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = |reason| CidrError { text: s.to_string(), reason };
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or(err("prefix length out of range"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The TLS listener's settings (RFC 5425).
#[derive(Clone, Debug)]
pub struct SyslogTlsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM file with the server certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
    /// PEM file of CA certificates: when set, clients must present a certificate
    /// issued by one of them (mutual TLS).
    pub client_ca_pem: Option<PathBuf>,
}

/// The syslog listeners' settings; none listens by default.
#[derive(Clone, Debug)]
pub struct SyslogConfig {
    /// UDP address to listen on.
    pub udp: Option<SocketAddr>,
    /// TCP address to listen on.
    pub tcp: Option<SocketAddr>,
    /// TLS listener.
    pub tls: Option<SyslogTlsConfig>,
    /// Peers served by the plain UDP and TCP listeners (default: loopback only).
    pub allow: Vec<Cidr>,
    /// Stream the messages are appended to.
    pub stream: String,
    /// Largest message in bytes (the stored frame); capped by the log's largest entry.
    pub max_message_bytes: usize,
    /// A TCP/TLS connection on which nothing arrives for this long is closed.
    pub idle_timeout: Duration,
    /// A message, once started, must be complete within this; bounds TLS handshakes too.
    pub message_timeout: Duration,
    /// TCP and TLS connections open at once.
    pub max_connections: usize,
    /// Connections one client (IPv4 address or IPv6 /64) may hold open at once on each
    /// of the TCP and TLS listeners.
    pub max_connections_per_client: usize,
}

impl Default for SyslogConfig {
    fn default() -> SyslogConfig {
        SyslogConfig {
            udp: None,
            tcp: None,
            tls: None,
            allow: Cidr::loopback(),
            stream: DEFAULT_STREAM.to_string(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: crate::per_client::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

impl SyslogConfig {
    /// Whether any listener is configured.
    pub fn enabled(&self) -> bool {
        self.udp.is_some() || self.tcp.is_some() || self.tls.is_some()
    }

    pub(crate) fn check(&self) -> Result<(), ServerError> {
        let bad = |m: &str| Err(ServerError::Config(format!("syslog: {m}")));
        if self.max_message_bytes == 0 || self.max_connections == 0 || self.max_connections_per_client == 0 {
            return bad("max_message_bytes, max_connections and max_connections_per_client must be positive");
        }
        if self.idle_timeout.is_zero() || self.message_timeout.is_zero() {
            return bad("idle_timeout and message_timeout must be positive");
        }
        stele_store::streams::check_stream_name(&self.stream)
            .map_err(|e| ServerError::Config(format!("syslog stream: {e}")))
    }
}

/// Sockets bound and TLS loaded, before anything is served.
pub(crate) struct Bound {
    config: SyslogConfig,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<crate::tls::Reloader>)>,
}

/// The bound addresses: (UDP, TCP, TLS).
pub(crate) type Addrs = (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>);

impl Bound {
    pub(crate) fn addrs(&self) -> Addrs {
        let udp = self.udp.as_ref().and_then(|s| s.local_addr().ok());
        let tcp = self.tcp.as_ref().and_then(|s| s.local_addr().ok());
        let tls = self.tls.as_ref().and_then(|(s, _)| s.local_addr().ok());
        (udp, tcp, tls)
    }

    /// The TLS listener's certificate reloader, for the reload task.
    pub(crate) fn tls_reloader(&self) -> Option<Arc<crate::tls::Reloader>> {
        self.tls.as_ref().map(|(_, r)| r.clone())
    }
}

/// Binds every configured listener and loads the TLS certificate and key.
pub(crate) async fn bind(config: &SyslogConfig) -> Result<Bound, ServerError> {
    config.check()?;
    let bind_err = |addr: SocketAddr| move |source| ServerError::Bind { addr, source };
    let udp = match config.udp {
        Some(a) => Some(UdpSocket::bind(a).await.map_err(bind_err(a))?),
        None => None,
    };
    let tcp = match config.tcp {
        Some(a) => Some(TcpListener::bind(a).await.map_err(bind_err(a))?),
        None => None,
    };
    let tls = match &config.tls {
        Some(t) => {
            let reloader = tls_reloader(t).map_err(ServerError::Config)?;
            Some((TcpListener::bind(t.listen).await.map_err(bind_err(t.listen))?, reloader))
        }
        None => None,
    };
    Ok(Bound { config: config.clone(), udp, tcp, tls })
}

/// The certificate, key and client CA files, re-read like the HTTP listener's (every
/// `reload_interval`; a renewed certificate is used by new connections, bad files keep
/// the previous one). With a client CA a client certificate is required.
fn tls_reloader(t: &SyslogTlsConfig) -> Result<Arc<crate::tls::Reloader>, String> {
    let files = crate::tls::TlsConfig {
        cert_pem: t.cert_pem.clone(),
        key_pem: t.key_pem.clone(),
        client_ca_pem: t.client_ca_pem.clone(),
        client_cert_required: true,
    };
    crate::tls::Reloader::new(&files, &[], "syslog")
}

/// What every listener task shares.
struct Ctx {
    app: Arc<App>,
    stream: String,
    max_message: usize,
    allow: Vec<Cidr>,
    idle_timeout: Duration,
    message_timeout: Duration,
    connections: Arc<Semaphore>,
    max_connections_per_client: usize,
}

impl Ctx {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    fn closed(&self, protocol: &'static str, reason: &'static str) {
        self.app.shared.metrics.syslog_closed.get_or_create(&[("protocol", protocol), ("reason", reason)]).inc();
    }

    fn count(&self, protocol: &'static str, result: &'static str, n: usize) {
        self.app.shared.metrics.count_ingest(protocol, result, n);
    }
}

/// The running listeners; [`Running::wait`] returns once all have stopped.
pub(crate) struct Running {
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits for every listener (and its connections) to stop after shutdown.
    pub(crate) async fn wait(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "syslog listener task failed");
            }
        }
    }
}

/// Starts serving the bound listeners until `shutdown` becomes true.
pub(crate) fn spawn(bound: Bound, app: Arc<App>, shutdown: watch::Receiver<bool>) -> Running {
    let config = bound.config;
    let max_message = config.max_message_bytes.min(app.limits.max_entry_bytes);
    let ctx = Arc::new(Ctx {
        app,
        stream: config.stream,
        max_message,
        allow: config.allow,
        idle_timeout: config.idle_timeout,
        message_timeout: config.message_timeout,
        connections: Arc::new(Semaphore::new(config.max_connections)),
        max_connections_per_client: config.max_connections_per_client,
    });
    let mut tasks = JoinSet::new();
    if let Some(s) = bound.udp {
        tracing::info!(addr = ?s.local_addr().ok(), "syslog UDP listening");
        tasks.spawn(serve_udp(s, ctx.clone(), shutdown.clone()));
    }
    if let Some(l) = bound.tcp {
        tracing::info!(addr = ?l.local_addr().ok(), "syslog TCP listening");
        tasks.spawn(accept_loop(l, None, ctx.clone(), shutdown.clone()));
    }
    if let Some((l, reloader)) = bound.tls {
        tracing::info!(addr = ?l.local_addr().ok(), "syslog TLS listening");
        tasks.spawn(accept_loop(l, Some(reloader), ctx.clone(), shutdown.clone()));
    }
    Running { tasks }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Reloader>>,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let protocol = if tls.is_some() { "syslog-tls" } else { "syslog-tcp" };
    let refused = ctx.app.shared.metrics.connections_refused.get_or_create(&[("listener", protocol)]).clone();
    let per_client = crate::per_client::PerClient::new(protocol, ctx.max_connections_per_client, refused);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(protocol, error = %e, "syslog accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tls.is_none() && !ctx.allowed(peer.ip()) {
            tracing::warn!(protocol, %peer, "syslog connection closed: peer address not in the allow-list");
            ctx.closed(protocol, "not_allowed");
            continue;
        }
        // Logged at most once a minute by `per_client`.
        let Some(slot) = per_client.try_open(peer) else {
            ctx.closed(protocol, "too_many_from_client");
            continue;
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            tracing::warn!(protocol, %peer, "syslog connection closed: too many connections");
            ctx.closed(protocol, "too_many_connections");
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (ctx, shutdown, tls) = (ctx.clone(), shutdown.clone(), tls.clone());
        conns.spawn(async move {
            let _permit = (permit, slot);
            match tls {
                None => serve_stream(sock, peer, protocol, ctx, shutdown).await,
                Some(reloader) => match tokio::time::timeout(ctx.message_timeout, reloader.acceptor().accept(sock)).await {
                    Ok(Ok(s)) => serve_stream(s, peer, protocol, ctx, shutdown).await,
                    Ok(Err(e)) => {
                        tracing::warn!(protocol, %peer, error = %e, "syslog connection closed: TLS handshake failed");
                        ctx.closed(protocol, "tls_handshake");
                    }
                    Err(_) => {
                        tracing::warn!(protocol, %peer, "syslog connection closed: TLS handshake timed out");
                        ctx.closed(protocol, "tls_handshake");
                    }
                },
            }
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Messages deframed and normalized, waiting to be appended as one unit.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    events: Vec<PreparedEvent>,
}

impl Batch {
    fn push(&mut self, frame: &[u8]) {
        let start = self.body.len();
        self.body.extend_from_slice(frame);
        let fields = stele_formats::syslog::normalize(frame);
        self.events.push(PreparedEvent { range: start..self.body.len(), format: EventFormat::Syslog.code(), fields });
    }

    fn full(&self) -> bool {
        self.events.len() >= BATCH_EVENTS || self.body.len() >= BATCH_BYTES
    }

    /// Whether a message of `len` bytes may join the batch without taking it past
    /// [`BATCH_BYTES`]; a message larger than that alone goes in a batch of its own.
    fn fits(&self, len: usize) -> bool {
        self.is_empty() || self.body.len() + len <= BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Appends a connection's batches in order, waiting for room in the queue. Returns
/// when the reader is done, or at the first failure (the log refuses writes).
async fn commit_loop(ctx: Arc<Ctx>, protocol: &'static str, mut rx: mpsc::Receiver<Batch>) -> Result<(), SubmitError> {
    while let Some(b) = rx.recv().await {
        let n = b.events.len();
        // No deadline: the reader stops reading meanwhile, which is the back-pressure.
        let r = ctx.app.submit_patiently(ctx.stream.clone(), Bytes::from(b.body), b.events, Duration::MAX).await;
        match r {
            Ok(_) => ctx.count(protocol, "accepted", n),
            Err(e) => {
                ctx.count(protocol, "dropped", n);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Why a connection ended.
enum End {
    Eof,
    Shutdown,
    Closed { reason: &'static str, detail: String },
}

async fn serve_stream<S: AsyncRead + Unpin>(
    mut sock: S,
    peer: SocketAddr,
    protocol: &'static str,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel::<Batch>(1);
    let committer = tokio::spawn(commit_loop(ctx.clone(), protocol, rx));
    let mut deframer = Deframer::new(ctx.max_message);
    let mut batch = Batch::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut started: Option<Instant> = None;
    let end = 'conn: loop {
        let wait = match started {
            Some(t) => ctx.message_timeout.saturating_sub(t.elapsed()).min(ctx.idle_timeout),
            None => ctx.idle_timeout,
        };
        let read = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break End::Shutdown,
            r = tokio::time::timeout(wait, sock.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) if started.is_some_and(|t| t.elapsed() >= ctx.message_timeout) => {
                break End::Closed {
                    reason: "message_timeout",
                    detail: format!("a message was not complete {:?} after its first byte", ctx.message_timeout),
                };
            }
            Err(_) => {
                break End::Closed {
                    reason: "idle_timeout",
                    detail: format!("nothing received for {:?}", ctx.idle_timeout),
                };
            }
            Ok(Err(e)) => break End::Closed { reason: "read_error", detail: e.to_string() },
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => n,
        };
        deframer.push(&buf[..n]);
        let mut completed = false;
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => {
                    completed = true;
                    if !batch.fits(frame.len()) && tx.send(std::mem::take(&mut batch)).await.is_err() {
                        break 'conn End::Closed { reason: "storage_unavailable", detail: String::new() };
                    }
                    batch.push(frame);
                    if batch.full() && tx.send(std::mem::take(&mut batch)).await.is_err() {
                        break 'conn End::Closed { reason: "storage_unavailable", detail: String::new() };
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    ctx.count(protocol, "rejected", 1);
                    break 'conn End::Closed { reason: "bad_frame", detail: e.to_string() };
                }
            }
        }
        // The message timeout runs from the first byte of the message still incomplete.
        started = match (deframer.pending_bytes(), started) {
            (0, _) => None,
            (_, Some(t)) if !completed => Some(t),
            _ => Some(Instant::now()),
        };
        // Hand the batch over if the committer is free; else keep adding to it.
        if !batch.is_empty() {
            match tx.try_reserve() {
                Ok(permit) => permit.send(std::mem::take(&mut batch)),
                Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => {
                    break End::Closed { reason: "storage_unavailable", detail: String::new() };
                }
            }
        }
    };
    let end = match end {
        End::Eof => match deframer.finish() {
            Ok(Some(frame)) => {
                if !batch.fits(frame.len()) {
                    let _ = tx.send(std::mem::take(&mut batch)).await;
                }
                batch.push(frame);
                End::Eof
            }
            Ok(None) => End::Eof,
            Err(e) => {
                ctx.count(protocol, "rejected", 1);
                End::Closed { reason: "bad_frame", detail: e.to_string() }
            }
        },
        other => other,
    };
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    drop(tx);
    let committed = committer.await;
    match end {
        End::Eof => tracing::debug!(protocol, %peer, "syslog connection closed by the peer"),
        End::Shutdown => tracing::debug!(protocol, %peer, "syslog connection closed at shutdown"),
        End::Closed { reason, detail } => {
            if reason != "storage_unavailable" {
                tracing::warn!(protocol, %peer, reason, detail, "syslog connection closed");
                ctx.closed(protocol, reason);
            }
        }
    }
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(protocol, %peer, error = %e, "syslog connection closed: the log does not accept writes");
            ctx.closed(protocol, "storage_unavailable");
        }
        Err(e) => tracing::error!(protocol, %peer, error = %e, "syslog committer task failed"),
    }
}

async fn serve_udp(sock: UdpSocket, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    const P: &str = "syslog-udp";
    // One byte more than the limit tells an oversize datagram from one of exactly the limit.
    let mut buf = vec![0u8; ctx.max_message.min(65_535) + 1];
    let mut inflight = JoinSet::new();
    let mut batch = Batch::default();
    loop {
        while inflight.try_join_next().is_some() {}
        let first = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            r = sock.recv_from(&mut buf) => r,
        };
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Ok((n, peer)) => {
                    if !ctx.allowed(peer.ip()) {
                        tracing::debug!(%peer, "syslog datagram refused: peer address not in the allow-list");
                        ctx.count(P, "rejected", 1);
                    } else if n > ctx.max_message {
                        tracing::warn!(%peer, bytes = n, max = ctx.max_message, "syslog datagram refused: too large");
                        ctx.count(P, "rejected", 1);
                    } else if n > 0 {
                        batch.push(&buf[..n]);
                    }
                }
                // ICMP errors surface here on some systems; they are not fatal.
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    tracing::debug!(error = %e, "syslog UDP receive error");
                }
                Err(_) => break,
            }
            // The next datagram may be as large as the buffer allows: take it only if
            // it cannot take the batch past BATCH_BYTES.
            if !batch.full() && batch.fits(buf.len() - 1) {
                next = Some(sock.try_recv_from(&mut buf));
            }
        }
        if !batch.is_empty() {
            let (ctx, b) = (ctx.clone(), std::mem::take(&mut batch));
            inflight.spawn(async move {
                let n = b.events.len();
                match ctx.app.submit(ctx.stream.clone(), Bytes::from(b.body), b.events).await {
                    Ok(_) => ctx.count(P, "accepted", n),
                    Err(e) => {
                        tracing::warn!(datagrams = n, error = %e, "syslog datagrams dropped");
                        ctx.count(P, "dropped", n);
                    }
                }
            });
        }
    }
    while inflight.join_next().await.is_some() {}
}
