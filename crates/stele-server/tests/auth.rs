//! Access control over HTTP: every route against missing, wrong, revoked and
//! right-but-insufficient credentials; tokens across restarts and at rest; access
//! records; failed-authentication and append rate limits; the start-time refusals.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Resp, TestServer, make_tokens, request};
use serde_json::Value;
use stele_server::ServerConfig;
use stele_server::tokens::TokenFile;

const K8S_EVENT: &[u8] = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","verb":"get","user":{"username":"zed"}}"#;
const OTLP_JSON: &[u8] = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hello"}}]}]}]}"#;

fn revoke(dir: &Path, name: &str) {
    let mut file = TokenFile::load(dir).unwrap().unwrap();
    file.revoke(name, stele_store::log::now_ns()).unwrap();
    file.save(dir).unwrap();
}

fn fresh_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "auth.test/log").unwrap();
    dir
}

fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    request(addr, method, path, &headers, body)
}

fn index_of(r: &Resp) -> u64 {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"][0]["index"].as_u64().unwrap()
}

fn wait_checkpoint(addr: SocketAddr) {
    let start = Instant::now();
    while request(addr, "GET", "/checkpoint", &[], b"").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every entry of `stream` in the log at `dir` (the server stopped), as JSON.
fn records(dir: &Path, stream: &str) -> Vec<Value> {
    let log = stele_store::Log::open(dir, Default::default()).unwrap();
    let reader = log.reader();
    (0..reader.tree_size())
        .filter_map(|i| reader.entry(i).ok())
        .filter(|e| e.stream == stream)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

fn assert_401(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer realm=\"stele\""), "{what}: {challenge}");
    assert!(r.json()["error"].is_string(), "{what}");
}

fn assert_403(r: &Resp, role: &str, stream: &str, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    let v = r.json();
    assert_eq!(v["missing_role"], role, "{what}: {v}");
    assert_eq!(v["stream"], stream, "{what}: {v}");
}

/// Each route × {no credentials, wrong token, revoked token, right token with the
/// wrong role, right role with the wrong stream scope, right}.
#[test]
fn every_route_answers_each_kind_of_credential_as_documented() {
    let dir = fresh_dir();
    let names: &[(&str, &[&str])] = &[
        ("app", &["append:prod"]),
        ("rd", &["read:prod"]),
        ("adm", &["admin:prod*"]),
        ("rel", &["hold-release:prod*"]),
        ("admdev", &["admin:dev"]),
        ("reldev", &["hold-release:dev"]),
        ("setup", &["append:*", "read:*"]),
        ("old", &["append:*", "read:*", "admin:*", "hold-release:*"]),
    ];
    let t = make_tokens(dir.path(), names);
    let [app, rd, adm, rel, admdev, reldev, setup, old] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| t[i].as_str());
    revoke(dir.path(), "old");
    let wrong = "stele_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let srv = TestServer::start(dir, |c| c.auth.max_auth_failures_per_minute = 10_000);
    let addr = srv.addr;
    let dev = index_of(&call(addr, "POST", "/v1/events?stream=dev", Some(setup), br#"{"actor":"d"}"#));
    let prod = index_of(&call(addr, "POST", "/v1/events?stream=prod", Some(setup), br#"{"actor":"p"}"#));
    wait_checkpoint(addr);

    // (method, path, body, right token, expected status, wrong-role token, role, wrong-scope (path, token, stream))
    struct Case<'a> {
        method: &'a str,
        path: String,
        body: &'a [u8],
        right: &'a str,
        ok: u16,
        wrong_role: &'a str,
        role: &'a str,
        /// The stream the 403 of the wrong role names (`*` where the route cannot
        /// know it before the role is checked).
        role_stream: &'a str,
        scope: Option<(String, &'a str, &'a str)>,
    }
    let cases = [
        Case {
            method: "POST",
            path: "/v1/events?stream=prod".into(),
            body: br#"{"actor":"a"}"#,
            right: app,
            ok: 200,
            wrong_role: rd,
            role: "append",
            role_stream: "prod",
            scope: Some(("/v1/events?stream=dev".into(), app, "dev")),
        },
        Case {
            method: "POST",
            path: "/v1/k8s/audit?stream=prod".into(),
            body: K8S_EVENT,
            right: app,
            ok: 200,
            wrong_role: rd,
            role: "append",
            role_stream: "prod",
            scope: Some(("/v1/k8s/audit".into(), app, "k8s-audit")),
        },
        Case {
            method: "POST",
            path: "/v1/logs?stream=prod".into(),
            body: OTLP_JSON,
            right: app,
            ok: 200,
            wrong_role: rd,
            role: "append",
            role_stream: "prod",
            scope: Some(("/v1/logs".into(), app, "otlp")),
        },
        Case {
            method: "GET",
            path: format!("/v1/entries/{prod}"),
            body: b"",
            right: rd,
            ok: 200,
            wrong_role: app,
            role: "read",
            role_stream: "*",
            scope: Some((format!("/v1/entries/{dev}"), rd, "dev")),
        },
        Case {
            method: "GET",
            path: "/v1/query?stream=prod".into(),
            body: b"",
            right: rd,
            ok: 200,
            wrong_role: app,
            role: "read",
            role_stream: "prod",
            scope: Some(("/v1/query?stream=dev".into(), rd, "dev")),
        },
        Case {
            method: "POST",
            path: "/v1/admin/holds".into(),
            body: br#"{"case":"c-1","reason":"litigation","stream":"prod"}"#,
            right: adm,
            ok: 201,
            wrong_role: rd,
            role: "admin",
            role_stream: "prod",
            scope: Some(("/v1/admin/holds".into(), admdev, "prod")),
        },
        Case {
            method: "GET",
            path: "/v1/admin/holds".into(),
            body: b"",
            right: adm,
            ok: 200,
            wrong_role: rd,
            role: "admin",
            role_stream: "*",
            scope: None,
        },
        // Separation of duties: admin does not release.
        Case {
            method: "POST",
            path: "/v1/admin/holds/c-1/release".into(),
            body: br#"{"reason":"settled"}"#,
            right: rel,
            ok: 200,
            wrong_role: adm,
            role: "hold-release",
            role_stream: "prod",
            scope: Some(("/v1/admin/holds/c-1/release".into(), reldev, "prod")),
        },
    ];
    for c in &cases {
        let what = format!("{} {}", c.method, c.path);
        assert_401(&call(addr, c.method, &c.path, None, c.body), &format!("{what} without credentials"));
        let r = call(addr, c.method, &c.path, Some(wrong), c.body);
        assert_401(&r, &format!("{what} with a wrong token"));
        assert!(r.header("www-authenticate").unwrap().contains("invalid_token"));
        let r = call(addr, c.method, &c.path, Some(old), c.body);
        assert_401(&r, &format!("{what} with a revoked token"));
        assert!(r.json()["error"].as_str().unwrap().contains("revoked"), "{}", r.text());
        let r = call(addr, c.method, &c.path, Some(c.wrong_role), c.body);
        assert_403(&r, c.role, c.role_stream, &format!("{what} role"));
        if let Some((path, token, stream)) = &c.scope {
            let r = call(addr, c.method, path, Some(token), c.body);
            assert_403(&r, c.role, stream, &format!("{what} scope"));
        }
        let r = call(addr, c.method, &c.path, Some(c.right), c.body);
        assert_eq!(r.status, c.ok, "{what} right: {}", r.text());
    }
    // The admin of another stream sees no hold of prod in the list.
    let placed =
        call(addr, "POST", "/v1/admin/holds", Some(adm), br#"{"case":"c-2","reason":"audit","stream":"prod-eu"}"#);
    assert_eq!(placed.status, 201, "{}", placed.text());
    let seen = call(addr, "GET", "/v1/admin/holds", Some(adm), b"").json();
    assert_eq!(seen["holds"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["holds"][0]["case"], "c-2");
    let other = call(addr, "GET", "/v1/admin/holds", Some(admdev), b"").json();
    assert!(other["holds"].as_array().unwrap().is_empty(), "{other}");
    // A query without a stream filter gives only the streams the reader may read.
    let hits = call(addr, "GET", "/v1/query", Some(rd), b"").lines();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["stream"] == "prod"), "{hits:?}");
    // Public proof routes: no credentials needed, bad ones still refused.
    for path in ["/checkpoint".to_string(), format!("/v1/proof/inclusion?index={prod}"), "/healthz".into()] {
        assert_eq!(call(addr, "GET", &path, None, b"").status, 200, "{path}");
        assert_401(&call(addr, "GET", &path, Some(wrong), b""), &path);
    }
    assert_401(&call(addr, "GET", "/metrics", None, b""), "/metrics");
    assert_eq!(call(addr, "GET", "/metrics", Some(app), b"").status, 200);
    // No route edits or deletes entries.
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = call(addr, method, &format!("/v1/entries/{prod}"), Some(setup), b"");
        assert_eq!(r.status, 405, "{method}: {}", r.text());
    }
    let dir = srv.stop();
    // The hold, its release and who did them are in the log.
    let recs = records(dir.path(), stele_store::streams::RETENTION_STREAM);
    assert!(recs.iter().any(|r| r["type"] == "hold" && r["case"] == "c-1" && r["placed_by"] == "adm"), "{recs:?}");
    assert!(recs.iter().any(|r| r["type"] == "hold_release" && r["case"] == "c-1" && r["released_by"] == "rel"));
}

#[test]
fn proofs_need_read_when_not_public() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("app", &["append:*"]), ("rd", &["read:x"])]);
    let srv = TestServer::start(dir, |c| c.auth.public_proofs = false);
    let addr = srv.addr;
    index_of(&call(addr, "POST", "/v1/events", Some(&t[0]), b"{}"));
    wait_checkpoint_with(addr, &t[1]);
    for path in ["/checkpoint", "/v1/proof/inclusion?index=0", "/tile/0/000.p/1"] {
        assert_401(&call(addr, "GET", path, None, b""), path);
        assert_403(&call(addr, "GET", path, Some(&t[0]), b""), "read", "*", path);
        let r = call(addr, "GET", path, Some(&t[1]), b"");
        assert!(r.status == 200 || r.status == 404, "{path}: {}", r.text());
    }
    srv.stop();
}

fn wait_checkpoint_with(addr: SocketAddr, token: &str) {
    let start = Instant::now();
    while call(addr, "GET", "/checkpoint", Some(token), b"").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(all_files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn tokens_survive_restarts_are_stored_hashed_and_reload_while_running() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("w", &["append:*", "read:*"])]);
    let srv = TestServer::start(dir, |c| c.auth.reload_interval = Duration::from_millis(100));
    assert_eq!(call(srv.addr, "POST", "/v1/events", Some(&t[0]), b"{}").status, 200);
    // A token created while the server runs works once the server has recorded it.
    let late = make_tokens(srv.dir.path(), &[("late", &["read:*"])]).remove(0);
    let start = Instant::now();
    while call(srv.addr, "GET", "/v1/query", Some(&late), b"").status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "the new token was never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A revocation takes effect within the reload interval.
    revoke(srv.dir.path(), "late");
    let start = Instant::now();
    while call(srv.addr, "GET", "/v1/query", Some(&late), b"").status != 401 {
        assert!(start.elapsed() < Duration::from_secs(10), "the revoked token is still accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = srv.stop();
    let srv = TestServer::start(dir, |_| {});
    assert_eq!(call(srv.addr, "POST", "/v1/events", Some(&t[0]), b"{}").status, 200, "after a restart");
    assert_401(&call(srv.addr, "GET", "/v1/query", Some(&late), b""), "revoked, after a restart");
    let dir = srv.stop();
    // Neither token is anywhere in the data directory; the digest only in tokens.json.
    let digest = stele_server::tokens::token_digest(&t[0]);
    for f in all_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        for tok in [&t[0], &late] {
            assert!(!bytes.windows(tok.len()).any(|w| w == tok.as_bytes()), "token found in {}", f.display());
        }
        let has_digest = bytes.windows(64).any(|w| w == digest.as_bytes());
        assert_eq!(has_digest, f.ends_with("tokens.json"), "{}", f.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tokens.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is readable by others: {mode:o}");
    }
    // Creation and revocation are recorded once each, by fingerprint.
    let recs = records(dir.path(), stele_server::tokens::AUTH_STREAM);
    let kinds: Vec<(String, String)> =
        recs.iter().map(|r| (r["type"].as_str().unwrap().into(), r["name"].as_str().unwrap().into())).collect();
    assert_eq!(
        kinds,
        [("token_created", "w"), ("token_created", "late"), ("token_revoked", "late")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(recs[0]["fingerprint"], &digest[..16]);
}

#[test]
fn reads_are_recorded_aggregated_per_principal_and_interval() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("w", &["append:*"]), ("rd", &["read:*"])]);
    let interval = Duration::from_secs(1);
    let srv = TestServer::start(dir, |c| c.auth.access_interval = interval);
    let addr = srv.addr;
    index_of(&call(addr, "POST", "/v1/events?stream=prod", Some(&t[0]), br#"{"actor":"x"}"#));
    wait_checkpoint(addr);
    let started = Instant::now();
    let reads = 40;
    for _ in 0..reads {
        assert_eq!(call(addr, "GET", "/v1/query?stream=prod", Some(&t[1]), b"").status, 200);
        assert_eq!(call(addr, "GET", "/checkpoint", None, b"").status, 200);
    }
    let elapsed = started.elapsed();
    // Internal streams stay out of a query that does not name them.
    let all = call(addr, "GET", "/v1/query", Some(&t[1]), b"").lines();
    assert!(all.iter().all(|h| !h["stream"].as_str().unwrap().starts_with("_stele/")), "{all:?}");
    let dir = srv.stop();
    let recs = records(dir.path(), stele_server::access::ACCESS_STREAM);
    let of = |principal: &str, route: &str| -> Vec<&Value> {
        recs.iter().filter(|r| r["type"] == "access" && r["principal"] == principal && r["route"] == route).collect()
    };
    let queries: Vec<&Value> = of("rd", "query").into_iter().filter(|r| r["stream"] == "prod").collect();
    let total: u64 = queries.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, reads, "{queries:?}");
    // At most one record per interval (plus the one the shutdown flushes).
    let intervals = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 1;
    assert!(queries.len() <= intervals, "{} records for {intervals} intervals", queries.len());
    assert!(queries.len() < reads as usize / 2);
    for r in &queries {
        assert_eq!(r["stream"], "prod");
        assert_eq!(r["auth"], "token");
        assert_eq!(r["sources"], serde_json::json!(["127.0.0.1"]));
        assert!(r["first_ns"].as_u64() <= r["last_ns"].as_u64());
        assert_eq!(r["statuses"]["200"], r["requests"]);
    }
    // The anonymous reads of the public checkpoint: ours, and the one 200 of the wait
    // for the first checkpoint (its 404s are counted apart).
    let anon: u64 = of("anonymous", "checkpoint").iter().map(|r| r["statuses"]["200"].as_u64().unwrap_or(0)).sum();
    assert_eq!(anon, reads + 1);
}

#[test]
fn failed_authentications_are_limited_per_source_and_recorded() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("rd", &["read:*"])]);
    let srv = TestServer::start(dir, |c| c.auth.max_auth_failures_per_minute = 5);
    let addr = srv.addr;
    for i in 0..5 {
        let r = call(addr, "GET", "/v1/query", Some(&format!("stele_guess{i}")), b"");
        assert_401(&r, "a guess");
    }
    let r = call(addr, "GET", "/v1/query", Some("stele_guess5"), b"");
    assert_eq!(r.status, 429, "{}", r.text());
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // The source is held back, whatever it sends, on routes that need credentials.
    assert_eq!(call(addr, "GET", "/v1/query", Some(&t[0]), b"").status, 429);
    // Public routes stay open to it.
    assert_eq!(call(addr, "GET", "/healthz", None, b"").status, 200);
    let dir = srv.stop();
    let recs = records(dir.path(), stele_server::access::ACCESS_STREAM);
    let failures: Vec<&Value> = recs.iter().filter(|r| r["type"] == "auth_failures").collect();
    assert_eq!(failures.len(), 1, "{recs:?}");
    assert_eq!(failures[0]["source"], "127.0.0.1");
    assert_eq!(failures[0]["failures"], 5);
    assert_eq!(failures[0]["reasons"]["unknown_token"], 5);
}

#[test]
fn appends_are_rate_limited_per_principal() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("a", &["append:*"]), ("b", &["append:*"])]);
    let srv = TestServer::start(dir, |c| c.auth.append_events_per_second = 10);
    let addr = srv.addr;
    // A batch larger than the bucket passes when it is full and leaves it 2 s in debt.
    let thirty = "{}\n".repeat(30);
    assert_eq!(call(addr, "POST", "/v1/events", Some(&t[0]), thirty.as_bytes()).status, 200);
    let r = call(addr, "POST", "/v1/events", Some(&t[0]), b"{}");
    assert_eq!(r.status, 429, "{}", r.text());
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&secs), "{secs}");
    assert_eq!(r.json()["retry_after_seconds"], secs);
    // Another principal has its own bucket.
    assert_eq!(call(addr, "POST", "/v1/events", Some(&t[1]), b"{}").status, 200);
    std::thread::sleep(Duration::from_secs(secs));
    assert_eq!(call(addr, "POST", "/v1/events", Some(&t[0]), b"{}").status, 200, "after Retry-After");
    srv.stop();
}

fn try_start(dir: &Path, edit: impl FnOnce(&mut ServerConfig)) -> Result<(), String> {
    let mut config = ServerConfig::new(dir.to_path_buf(), "0.0.0.0:0".parse().unwrap());
    edit(&mut config);
    let log = stele_store::Log::open(dir, config.log_options.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = stele_server::start(config, log, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())?;
        let _ = stop.send(());
        server.wait().await.map_err(|e| e.to_string())
    })
}

#[test]
fn a_non_loopback_listener_needs_tls_or_consent_and_a_principal_or_consent() {
    let dir = fresh_dir();
    let e = try_start(dir.path(), |_| {}).unwrap_err();
    assert!(e.contains("not a loopback address") && e.contains("allow_plain_http = true"), "{e}");
    let e = try_start(dir.path(), |c| c.auth.allow_plain_http = true).unwrap_err();
    assert!(e.contains("no principal is configured") && e.contains("allow_anonymous = true"), "{e}");
    try_start(dir.path(), |c| {
        c.auth.allow_plain_http = true;
        c.auth.allow_anonymous = true;
    })
    .unwrap();
    make_tokens(dir.path(), &[("x", &["read"])]);
    try_start(dir.path(), |c| c.auth.allow_plain_http = true).unwrap();
    // The OTLP/gRPC listener is held to the same rule.
    let e = try_start(dir.path(), |c| {
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.otlp_grpc = Some("0.0.0.0:0".parse().unwrap());
    })
    .unwrap_err();
    assert!(e.contains("otlp_grpc address"), "{e}");
}

/// An OTLP/gRPC export request of one record.
fn otlp_request(
    stream: Option<&str>,
    token: Option<&str>,
) -> tonic::Request<stele_formats::otlp::proto::ExportLogsServiceRequest> {
    use stele_formats::otlp::proto::{
        AnyValue, ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs, any_value,
    };
    let record = LogRecord {
        body: Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }),
        ..LogRecord::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..ScopeLogs::default() }],
            ..ResourceLogs::default()
        }],
    };
    let mut r = tonic::Request::new(req);
    if let Some(s) = stream {
        r.metadata_mut().insert("x-stele-stream", s.parse().unwrap());
    }
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[test]
fn otlp_grpc_needs_an_append_grant_for_its_stream() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("otel", &["append:otlp"]), ("rd", &["read:*"]), ("gone", &["append:*"])]);
    revoke(dir.path(), "gone");
    let srv = TestServer::start(dir, |c| {
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
        c.auth.append_events_per_second = 1;
    });
    let grpc = srv.otlp_grpc_addr.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = LogsServiceClient::connect(format!("http://{grpc}")).await.unwrap();
        let code = |r: Result<_, tonic::Status>| r.map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code());
        assert_eq!(code(c.export(otlp_request(None, None)).await), tonic::Code::Unauthenticated);
        assert_eq!(code(c.export(otlp_request(None, Some("stele_nope"))).await), tonic::Code::Unauthenticated);
        assert_eq!(code(c.export(otlp_request(None, Some(&t[2]))).await), tonic::Code::Unauthenticated);
        assert_eq!(code(c.export(otlp_request(None, Some(&t[1]))).await), tonic::Code::PermissionDenied);
        assert_eq!(code(c.export(otlp_request(Some("prod"), Some(&t[0]))).await), tonic::Code::PermissionDenied);
        assert_eq!(code(c.export(otlp_request(None, Some(&t[0]))).await), tonic::Code::Ok);
        // One event per second: the next one at once is refused with RetryInfo.
        let s = c.export(otlp_request(None, Some(&t[0]))).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
        let details = tonic_types::StatusExt::get_error_details(&s);
        assert!(details.retry_info().is_some(), "{s:?}");
    });
    srv.stop();
}
