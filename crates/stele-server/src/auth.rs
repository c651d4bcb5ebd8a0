//! Access control: who may call which route, for which streams.
//!
//! **Principals.** An API token (`Authorization: Bearer stele_...`, see [`crate::tokens`])
//! or a client certificate verified by mutual TLS whose subject common name or subject
//! alternative name (DNS, e-mail, URI) equals a configured [`CertPrincipal`]'s
//! `subject`. A request with a bearer token is judged by the token alone.
//!
//! **Roles**, each scoped to a stream name, a `prefix*` or `*` ([`Grant`]):
//!
//! | Role | Routes |
//! |---|---|
//! | `append` | `POST /v1/events`, `/v1/k8s/audit`, `/v1/logs`, OTLP/gRPC `LogsService/Export` (scope: the target stream) |
//! | `read` | `GET /v1/entries/N` (the entry's stream), `GET /v1/query` (the `stream` filter; without one, hits of other streams are left out) |
//! | `admin` | `POST /v1/admin/holds`, `GET /v1/admin/holds` (the hold's stream pattern) |
//! | `hold-release` | `POST /v1/admin/holds/{case}/release`: not implied by `admin` (separation of duties) |
//! | `erase` | `POST /v1/admin/erasures`, `GET /v1/admin/erasures`: not implied by `admin` (scope `*`: a subject's key spans streams) |
//! | `governance-bypass` | `POST /v1/admin/retention/shorten` (the policy's stream pattern): not implied by `admin` |
//! | `key-rotate` | `POST /v1/admin/keys/rotate` (scope `*`): not implied by `admin` |
//! | `key-revoke` | `POST /v1/admin/keys/revoke` (scope `*`): not implied by `admin` |
//!
//! Actions listed in [`AuthConfig::require_approval`] need a second principal holding
//! the same role (see [`crate::approvals`]).
//!
//! `GET /checkpoint`, `/tile/...` and `/v1/proof/...` are public by default
//! (`public_proofs`): they reveal hashes, tree sizes and signed checkpoints, which is
//! what monitors, witnesses and auditors without read access need to check that the log
//! is append-only, and nothing of the payloads (a leaf hash commits to a salted
//! payload). When not public they need `read` on any stream. `GET /metrics` needs any
//! principal unless `public_metrics`; `GET /healthz` is always public. No route edits
//! or deletes an entry.
//!
//! **Answers.** 401 with `WWW-Authenticate: Bearer realm="stele"` (RFC 6750 §3) and
//! `{"error"}` for missing, malformed, unknown or revoked credentials; 403 with
//! `{"error","principal","missing_role","stream"}` when the principal lacks the role
//! for the stream; 429 with `Retry-After` for a source over its failed-authentication
//! limit or a principal over its append rate (see [`crate::access`]).
//!
//! **Safe defaults.** With no token file and no certificate principal, the server is
//! unauthenticated: every caller may do everything. It starts so only when every
//! listener (HTTP, OTLP/gRPC) is on a loopback address, or with `allow_anonymous`.
//! A non-loopback listener without TLS needs `allow_plain_http`. Once a token file
//! exists (even with every token revoked) credentials are required.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stele_formats::Normalized;

use crate::access::{Access, Bucket};
use crate::http::{ApiError, App, error, error_with};
use crate::sequencer::PreparedEvent;
use crate::submit::SubmitError;
use crate::tls::PeerInfo;
use crate::tokens::{AUTH_STREAM, TokenFile, TokenRecord};
pub use crate::tokens::{Grant, Role};

/// A principal authenticated by its client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPrincipal {
    /// The principal's name in records and errors.
    pub name: String,
    /// Matched exactly against the certificate's subject common names and subject
    /// alternative names (DNS names, e-mail addresses, URIs).
    pub subject: String,
    /// What it may do.
    pub grants: Vec<Grant>,
}

/// Access-control settings (see the module documentation).
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Serve plain HTTP (and plain OTLP/gRPC) on a non-loopback address. Off by
    /// default: tokens and events would cross the network in clear text.
    pub allow_plain_http: bool,
    /// Serve without any principal on a non-loopback address (everyone may do
    /// everything). Off by default.
    pub allow_anonymous: bool,
    /// `/checkpoint`, `/tile/...` and `/v1/proof/...` need no credentials (default on).
    pub public_proofs: bool,
    /// `/metrics` needs no credentials (default off).
    pub public_metrics: bool,
    /// Principals authenticated by client certificate (needs a TLS client CA).
    pub cert_principals: Vec<CertPrincipal>,
    /// Events per second each authenticated principal may append (0: no limit).
    pub append_events_per_second: u32,
    /// Reads are aggregated into one `_stele/access` record per principal, route kind
    /// and stream per interval.
    pub access_interval: Duration,
    /// Failed authentications per source address per minute before 429.
    pub max_auth_failures_per_minute: u32,
    /// How often the token file and the TLS files are checked for changes.
    pub reload_interval: Duration,
    /// Actions that need a second principal's approval, named by the role that
    /// allows them: `hold-release`, `erase`, `governance-bypass`, `key-rotate`,
    /// `key-revoke` (see `docs/access.md`, "Approvals").
    pub require_approval: Vec<Role>,
    /// How long a request waits for its approval before it expires (default 24 h).
    pub approval_expiry: Duration,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            allow_plain_http: false,
            allow_anonymous: false,
            public_proofs: true,
            public_metrics: false,
            cert_principals: Vec::new(),
            append_events_per_second: 0,
            access_interval: crate::access::DEFAULT_ACCESS_INTERVAL,
            max_auth_failures_per_minute: crate::access::DEFAULT_MAX_AUTH_FAILURES_PER_MINUTE,
            reload_interval: crate::tls::DEFAULT_RELOAD_INTERVAL,
            require_approval: Vec::new(),
            approval_expiry: crate::approvals::DEFAULT_APPROVAL_EXPIRY,
        }
    }
}

/// The caller of one request, as the handlers see it.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) name: Arc<str>,
    /// `token`, `certificate` or `none`.
    pub(crate) auth: &'static str,
    /// `None`: everything (an unauthenticated server).
    grants: Option<Arc<[Grant]>>,
    bucket: Option<Arc<Bucket>>,
}

impl Caller {
    fn open() -> Caller {
        Caller { name: "anonymous".into(), auth: "none", grants: None, bucket: None }
    }

    fn public() -> Caller {
        Caller { name: "anonymous".into(), auth: "none", grants: Some(Arc::from(Vec::new())), bucket: None }
    }

    /// Whether the caller has `role` on `stream`.
    pub(crate) fn allows(&self, role: Role, stream: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.iter().any(|g| g.role == role && g.covers(stream)))
    }

    /// Whether the caller has `role` on every stream `pattern` can select.
    pub(crate) fn allows_pattern(&self, role: Role, pattern: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.iter().any(|g| g.role == role && g.covers_pattern(pattern)))
    }

    /// Whether the caller has `role` on some stream.
    pub(crate) fn has_role(&self, role: Role) -> bool {
        self.grants.as_ref().is_none_or(|g| g.iter().any(|g| g.role == role))
    }

    fn authenticated(&self) -> bool {
        self.grants.is_none() || self.auth != "none"
    }

    /// 403 naming the missing role and stream.
    pub(crate) fn forbidden(&self, role: Role, stream: &str) -> ApiError {
        error_with(
            StatusCode::FORBIDDEN,
            format!("principal {:?} lacks the {role} role for stream {stream:?}", &*self.name),
            serde_json::json!({ "principal": &*self.name, "missing_role": role.name(), "stream": stream }),
        )
    }

    /// `Ok` when the caller has `role` on `stream`, else 403.
    pub(crate) fn require(&self, role: Role, stream: &str) -> Result<(), ApiError> {
        if self.allows(role, stream) { Ok(()) } else { Err(self.forbidden(role, stream)) }
    }

    /// `Ok` when the caller has `role` on every stream of `pattern`, else 403.
    pub(crate) fn require_pattern(&self, role: Role, pattern: &str) -> Result<(), ApiError> {
        if self.allows_pattern(role, pattern) { Ok(()) } else { Err(self.forbidden(role, pattern)) }
    }
}

tokio::task_local! {
    /// The append-rate bucket of the request being served.
    static APPEND_BUCKET: Option<Arc<Bucket>>;
}

/// Takes `n` events from the current request's append-rate bucket (nothing outside a
/// request, or for principals without a limit).
pub(crate) fn charge_append(n: usize) -> Result<(), SubmitError> {
    let bucket = APPEND_BUCKET.try_with(Clone::clone).ok().flatten();
    match bucket {
        None => Ok(()),
        Some(b) => b.take(n).map_err(|secs| {
            SubmitError::RateLimited(format!("append rate limit of this principal reached; retry in {secs} s"), secs)
        }),
    }
}

/// Runs `f` with `caller`'s append bucket in force (for the OTLP/gRPC service).
pub(crate) async fn with_caller<F: Future>(caller: &Caller, f: F) -> F::Output {
    APPEND_BUCKET.scope(caller.bucket.clone(), f).await
}

struct TokenState {
    name: Arc<str>,
    grants: Arc<[Grant]>,
    revoked: bool,
}

/// Why authentication failed.
pub(crate) struct Failure {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    bearer_error: bool,
}

/// The server's access-control state.
pub(crate) struct Auth {
    pub(crate) config: AuthConfig,
    data_dir: PathBuf,
    /// Credentials are required (a token file or certificate principals exist).
    enforced: AtomicBool,
    /// Active and revoked tokens by SHA-256 (hex).
    tokens: RwLock<HashMap<String, TokenState>>,
    buckets: Mutex<HashMap<Arc<str>, Arc<Bucket>>>,
    pub(crate) access: Access,
    /// Bytes of the token file last loaded (to see changes).
    file_seen: Mutex<Option<Vec<u8>>>,
}

impl Auth {
    pub(crate) fn new(config: AuthConfig, data_dir: PathBuf) -> Auth {
        let enforced = !config.cert_principals.is_empty() || TokenFile::path(&data_dir).exists();
        let access = Access::new(config.access_interval, config.max_auth_failures_per_minute);
        Auth {
            config,
            data_dir,
            enforced: AtomicBool::new(enforced),
            tokens: RwLock::default(),
            buckets: Mutex::default(),
            access,
            file_seen: Mutex::default(),
        }
    }

    fn bucket(&self, name: &Arc<str>) -> Option<Arc<Bucket>> {
        let rate = self.config.append_events_per_second;
        if rate == 0 {
            return None;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        Some(b.entry(name.clone()).or_insert_with(|| Arc::new(Bucket::new(rate))).clone())
    }

    /// Authenticates a request from its `Authorization` header and peer.
    /// `Ok(None)`: no credentials given.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Caller>, Failure> {
        if !self.enforced.load(Ordering::Acquire) {
            return Ok(Some(Caller::open()));
        }
        if let Some(v) = authorization {
            let text = v.to_str().unwrap_or("");
            let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return Err(Failure {
                    reason: "malformed",
                    message: "the Authorization header must be `Bearer <token>`".into(),
                    bearer_error: false,
                });
            }
            let digest = crate::tokens::token_digest(token);
            let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
            return match tokens.get(&digest) {
                None => Err(Failure {
                    reason: "unknown_token",
                    message: "the bearer token is not valid".into(),
                    bearer_error: true,
                }),
                Some(t) if t.revoked => Err(Failure {
                    reason: "revoked_token",
                    message: format!("the bearer token {:?} is revoked", &*t.name),
                    bearer_error: true,
                }),
                Some(t) => Ok(Some(Caller {
                    name: t.name.clone(),
                    auth: "token",
                    grants: Some(t.grants.clone()),
                    bucket: self.bucket(&t.name),
                })),
            };
        }
        if let Some(ids) = peer.and_then(|p| p.cert_ids.as_ref()) {
            let found = self.config.cert_principals.iter().find(|p| ids.contains(&p.subject));
            return match found {
                Some(p) => {
                    let name: Arc<str> = p.name.as_str().into();
                    Ok(Some(Caller {
                        bucket: self.bucket(&name),
                        name,
                        auth: "certificate",
                        grants: Some(p.grants.clone().into()),
                    }))
                }
                None => Err(Failure {
                    reason: "unknown_certificate",
                    message: format!(
                        "the client certificate ({}) maps to no principal",
                        ids.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
                    ),
                    bearer_error: false,
                }),
            };
        }
        Ok(None)
    }

    /// Installs a token file (already recorded, except the fingerprints in
    /// `unrecorded`, which are left out).
    fn install(&self, file: &TokenFile, unrecorded: &[String]) {
        let mut table = HashMap::new();
        for t in &file.tokens {
            if t.revoked_ns.is_none() && unrecorded.iter().any(|f| f == t.fingerprint()) {
                continue;
            }
            let grants = t.parsed_grants().unwrap_or_default();
            table.insert(
                t.sha256.clone(),
                TokenState { name: t.name.as_str().into(), grants: grants.into(), revoked: t.revoked_ns.is_some() },
            );
        }
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = table;
        self.enforced.store(true, Ordering::Release);
    }
}

/// 401 with `WWW-Authenticate`.
fn unauthorized(f: &Failure) -> Response {
    let challenge =
        if f.bearer_error { "Bearer realm=\"stele\", error=\"invalid_token\"" } else { "Bearer realm=\"stele\"" };
    let mut r =
        error_with(StatusCode::UNAUTHORIZED, &f.message, serde_json::json!({ "reason": f.reason })).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

fn too_many_failures(secs: u64) -> Response {
    error_with(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed authentications from this address; retry in {secs} s"),
        serde_json::json!({ "retry_after_seconds": secs }),
    )
    .with_retry_after_secs(secs)
    .into_response()
}

/// What a route needs.
#[derive(Clone, Copy)]
enum RouteClass {
    /// Anyone (health, unknown routes that answer 404/405).
    Open,
    /// `append` on the target stream (default stream given).
    Append(DefaultStream),
    /// `read`; the kind names it in access records.
    Read(&'static str),
    /// Public unless configured otherwise; else `read` on any stream.
    Proof(&'static str),
    Metrics,
    Admin,
}

#[derive(Clone, Copy)]
enum DefaultStream {
    Events,
    K8s,
    Otlp,
}

fn classify(path: Option<&str>) -> RouteClass {
    match path {
        Some("/v1/events") => RouteClass::Append(DefaultStream::Events),
        Some("/v1/k8s/audit") => RouteClass::Append(DefaultStream::K8s),
        Some("/v1/logs") => RouteClass::Append(DefaultStream::Otlp),
        Some("/v1/entries/{index}") => RouteClass::Read("entries"),
        Some("/v1/query") => RouteClass::Read("query"),
        Some("/checkpoint") => RouteClass::Proof("checkpoint"),
        Some("/tile/{*path}") => RouteClass::Proof("tile"),
        Some("/v1/proof/inclusion" | "/v1/proof/consistency") => RouteClass::Proof("proof"),
        Some("/metrics") => RouteClass::Metrics,
        Some(p) if p.starts_with("/v1/admin/") => RouteClass::Admin,
        _ => RouteClass::Open,
    }
}

/// The stream a read was about, set by handlers that learn it (an entry's stream).
#[derive(Clone)]
pub(crate) struct AccessedStream(pub(crate) String);

/// The `stream` query parameter of a query, else `*`.
fn query_stream(uri: &axum::http::Uri) -> String {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, v)| k == "stream" && !v.is_empty()).map(|(_, v)| v))
        .unwrap_or_else(|| "*".into())
}

/// The access-control middleware of every HTTP route.
pub(crate) async fn middleware(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let auth = &app.auth;
    let class = classify(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let peer = req.extensions().get::<ConnectInfo<PeerInfo>>().map(|c| c.0.clone());
    let source: Option<IpAddr> = peer.as_ref().map(|p| p.addr.ip().to_canonical());
    let public = match class {
        RouteClass::Open => true,
        RouteClass::Proof(_) => auth.config.public_proofs,
        RouteClass::Metrics => auth.config.public_metrics,
        _ => false,
    };
    let has_credentials =
        req.headers().contains_key(header::AUTHORIZATION) || peer.as_ref().is_some_and(|p| p.cert_ids.is_some());
    let needs_check = auth.enforced.load(Ordering::Acquire) && (!public || has_credentials);
    if needs_check && let Some(secs) = auth.access.blocked(source) {
        return too_many_failures(secs);
    }
    let caller = match auth.authenticate(req.headers().get(header::AUTHORIZATION), peer.as_ref()) {
        Ok(Some(c)) => c,
        Ok(None) if public => Caller::public(),
        Ok(None) => {
            let f = Failure {
                reason: "missing",
                message:
                    "this route needs credentials: an `Authorization: Bearer <token>` header or a client certificate"
                        .into(),
                bearer_error: false,
            };
            auth.access.failed(source, f.reason);
            return unauthorized(&f);
        }
        Err(f) => {
            auth.access.failed(source, f.reason);
            return unauthorized(&f);
        }
    };
    // Coarse checks here; handlers check the exact stream once they know it.
    let denied = match class {
        RouteClass::Append(d) => {
            let default = match d {
                DefaultStream::Events => app.default_stream.as_str(),
                DefaultStream::K8s => crate::k8s_webhook::K8S_DEFAULT_STREAM,
                DefaultStream::Otlp => app.otlp_stream.as_str(),
            };
            // A bad stream name is the handler's 400.
            match crate::http::stream_name(req.uri(), req.headers(), default) {
                Ok(stream) => caller.require(Role::Append, &stream).err(),
                Err(_) if caller.has_role(Role::Append) => None,
                Err(_) => Some(caller.forbidden(Role::Append, default)),
            }
        }
        RouteClass::Read("query") => {
            let stream = query_stream(req.uri());
            if stream == "*" {
                (!caller.has_role(Role::Read)).then(|| caller.forbidden(Role::Read, "*"))
            } else {
                caller.require_pattern(Role::Read, &stream).err()
            }
        }
        RouteClass::Read(_) => (!caller.has_role(Role::Read)).then(|| caller.forbidden(Role::Read, "*")),
        RouteClass::Proof(_) if !public => (!caller.has_role(Role::Read)).then(|| caller.forbidden(Role::Read, "*")),
        RouteClass::Metrics if !public && !caller.authenticated() => {
            Some(error(StatusCode::UNAUTHORIZED, "GET /metrics needs credentials (public_metrics is off)"))
        }
        // The administrative handlers check the role on the hold's stream pattern.
        RouteClass::Admin => None,
        _ => None,
    };
    let read_kind = match class {
        RouteClass::Read(k) | RouteClass::Proof(k) => Some(k),
        _ => None,
    };
    let default_stream = read_kind
        .map(|_| if matches!(class, RouteClass::Read("query")) { query_stream(req.uri()) } else { "*".into() });
    let resp = match denied {
        Some(e) => e.into_response(),
        None => {
            req.extensions_mut().insert(caller.clone());
            APPEND_BUCKET.scope(caller.bucket.clone(), next.run(req)).await
        }
    };
    if let Some(kind) = read_kind {
        let stream = resp
            .extensions()
            .get::<AccessedStream>()
            .map(|s| s.0.clone())
            .or(default_stream)
            .unwrap_or_else(|| "*".into());
        auth.access.read(&caller.name, caller.auth, kind, &stream, resp.status().as_u16(), source);
    }
    resp
}

/// Authenticates and authorizes an OTLP/gRPC call for appending to `stream`.
pub(crate) fn grpc_caller(
    app: &App,
    metadata: &tonic::metadata::MetadataMap,
    peer: Option<&PeerInfo>,
    remote: Option<SocketAddr>,
    stream: &str,
) -> Result<Caller, tonic::Status> {
    let auth = &app.auth;
    let source = peer.map(|p| p.addr).or(remote).map(|a| a.ip().to_canonical());
    if auth.enforced.load(Ordering::Acquire) && auth.access.blocked(source).is_some() {
        return Err(tonic::Status::resource_exhausted("too many failed authentications from this address"));
    }
    let header =
        metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(|s| HeaderValue::from_str(s).ok());
    let caller = match auth.authenticate(header.as_ref(), peer) {
        Ok(Some(c)) => c,
        Ok(None) => {
            auth.access.failed(source, "missing");
            return Err(tonic::Status::unauthenticated(
                "credentials needed: `authorization: Bearer <token>` metadata or a client certificate",
            ));
        }
        Err(f) => {
            auth.access.failed(source, f.reason);
            return Err(tonic::Status::unauthenticated(f.message));
        }
    };
    if !caller.allows(Role::Append, stream) {
        return Err(tonic::Status::permission_denied(format!(
            "principal {:?} lacks the append role for stream {stream:?}",
            &*caller.name
        )));
    }
    Ok(caller)
}

/// Checks the listeners against the principals at start (see the module docs).
pub(crate) fn check_config(config: &crate::ServerConfig) -> Result<(), String> {
    let a = &config.auth;
    let mut listeners = vec![("listen", config.listen)];
    listeners.extend(config.otlp_grpc.map(|g| ("otlp_grpc", g)));
    let principals = !a.cert_principals.is_empty() || TokenFile::path(&config.data_dir).exists();
    for (key, addr) in listeners {
        if addr.ip().is_loopback() {
            continue;
        }
        if config.tls.is_none() && !a.allow_plain_http {
            return Err(format!(
                "{key} address {addr} is not a loopback address and no TLS certificate is configured: credentials and events would cross the network in clear text. Configure TLS ([tls] cert and key), or set allow_plain_http = true (only behind a TLS-terminating proxy on the same host)"
            ));
        }
        if !principals && !a.allow_anonymous {
            return Err(format!(
                "{key} address {addr} is not a loopback address and no principal is configured (no token file {}, no client certificate principal): anyone who reaches it could read and append everything. Create a token with `stele token create`, or set allow_anonymous = true",
                TokenFile::path(&config.data_dir).display()
            ));
        }
    }
    if !a.cert_principals.is_empty() && config.tls.as_ref().is_none_or(|t| t.client_ca_pem.is_none()) {
        return Err("client certificate principals need TLS with a client CA (tls_client_ca)".into());
    }
    for p in &a.cert_principals {
        if p.subject.is_empty() || p.grants.is_empty() {
            return Err(format!(
                "client certificate principal {:?}: subject and at least one grant are needed",
                p.name
            ));
        }
    }
    if a.access_interval < Duration::from_millis(100) {
        return Err("access_interval must be at least 100 ms".into());
    }
    if a.max_auth_failures_per_minute == 0 {
        return Err("max_auth_failures_per_minute must be positive".into());
    }
    crate::approvals::check_config(a)?;
    Ok(())
}

/// Loads the token file, appends the `_stele/auth` records it implies that the log
/// lacks, and installs the tokens (a token whose creation could not be recorded is
/// left out until the next reload). `Ok(false)` when the file did not change.
pub(crate) async fn load_tokens(app: &App, force: bool) -> Result<bool, String> {
    let dir = app.auth.data_dir.clone();
    let path = TokenFile::path(&dir);
    let bytes = match tokio::task::spawn_blocking(move || std::fs::read(&path)).await.map_err(|e| e.to_string())? {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A deleted file revokes every token (recorded below from an empty set).
            if app.auth.file_seen.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                return Ok(false);
            }
            serde_json::to_vec(&TokenFile { version: 1, tokens: Vec::new() }).expect("serializes")
        }
        Err(e) => return Err(format!("token file {}: {e}", TokenFile::path(&dir).display())),
    };
    {
        let seen = app.auth.file_seen.lock().unwrap_or_else(|p| p.into_inner());
        if !force && seen.as_deref() == Some(&bytes[..]) {
            return Ok(false);
        }
    }
    if bytes.len() as u64 > crate::tokens::MAX_FILE_BYTES {
        return Err(format!(
            "token file {}: larger than {} bytes",
            TokenFile::path(&dir).display(),
            crate::tokens::MAX_FILE_BYTES
        ));
    }
    let file = TokenFile::parse(&bytes).map_err(|e| format!("token file {}: {e}", TokenFile::path(&dir).display()))?;
    let (snapshot, reader) = (app.shared.snapshot(), app.shared.reader.clone());
    let recorded = tokio::task::spawn_blocking(move || crate::tokens::recorded(&snapshot, &reader))
        .await
        .map_err(|e| e.to_string())??;
    let missing = crate::tokens::missing_records(&file, &recorded, stele_store::log::now_ns());
    let mut unrecorded = Vec::new();
    if !missing.is_empty()
        && let Err(e) = append_records(app, &missing).await
    {
        tracing::error!("recording token changes in {AUTH_STREAM}: {e}; new tokens wait for the next reload");
        unrecorded = missing
            .iter()
            .filter_map(|r| match r {
                TokenRecord::TokenCreated { fingerprint, .. } => Some(fingerprint.clone()),
                TokenRecord::TokenRevoked { .. } => None,
            })
            .collect();
    }
    app.auth.install(&file, &unrecorded);
    if unrecorded.is_empty() {
        *app.auth.file_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
    }
    tracing::info!(tokens = file.tokens.iter().filter(|t| t.revoked_ns.is_none()).count(), "API tokens loaded");
    Ok(true)
}

async fn append_records(app: &App, records: &[TokenRecord]) -> Result<(), String> {
    let mut body = Vec::new();
    let mut events = Vec::new();
    for r in records {
        let start = body.len();
        body.extend_from_slice(&r.encode());
        events.push(PreparedEvent {
            range: start..body.len(),
            format: stele_store::log::FORMAT_STELE_RECORD,
            // Records re-normalize to no fields (format 3), so the index holds none either.
            fields: Normalized::default(),
        });
    }
    app.submit_patiently(AUTH_STREAM.to_string(), Bytes::from(body), events, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Starts the task that reloads the token file when it changes.
pub(crate) fn spawn_token_reload(app: Arc<App>) {
    let interval = app.auth.config.reload_interval;
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !app.shared.sequencer_alive.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = load_tokens(&app, false).await {
                tracing::error!("{e}; the tokens loaded before stay in force");
            }
        }
    });
}
