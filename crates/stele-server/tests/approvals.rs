//! Separation of duties over HTTP: erasure while the server runs (`POST
//! /v1/admin/erasures`, role `erase`), approval of hold releases and erasures by a
//! second principal (same principal refused, expiry, a restart keeping pending
//! requests), and an administrator without `read` refused on every read route.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Resp, TestServer, make_tokens, request, shared_data};
use serde_json::Value;
use stele_erasure::{ErasureConfig, MasterKey, SealState, SealingRule, restore};
use stele_server::ServerConfig;
use stele_server::auth::Role;

fn fresh_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "approvals.test/log").unwrap();
    dir
}

fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> Resp {
    let bearer = format!("Bearer {token}");
    request(addr, method, path, &[("Content-Type", "application/json"), ("Authorization", &bearer)], body)
}

fn call_json(addr: SocketAddr, method: &str, path: &str, token: &str, body: Value) -> Resp {
    call(addr, method, path, token, body.to_string().as_bytes())
}

/// Every entry of `stream` in the log at `dir` (the server stopped), as JSON.
fn records(dir: &Path, stream: &str) -> Vec<Value> {
    let reader = stele_store::LogReader::open(dir).unwrap();
    (0..reader.tree_size())
        .filter_map(|i| reader.entry(i).ok())
        .filter(|e| e.stream == stream)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

fn raw_records(dir: &Path, stream: &str) -> Vec<u8> {
    let reader = stele_store::LogReader::open(dir).unwrap();
    (0..reader.tree_size())
        .filter_map(|i| reader.entry(i).ok())
        .filter(|e| e.stream == stream)
        .flat_map(|e| e.payload)
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_403(r: &Resp, role: &str, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.json()["missing_role"], role, "{what}: {}", r.text());
}

/// A master key outside the data directory and a rule sealing `/user/username` and
/// `/sourceIPs` of every JSON event of streams `k8s*`.
fn erasure_config(key_dir: &Path) -> ErasureConfig {
    let master = key_dir.join("master.key");
    MasterKey::create(&master).unwrap();
    ErasureConfig {
        master_key: master,
        rule: vec![SealingRule {
            stream: "k8s*".into(),
            format: None,
            subject: "/user/username".into(),
            fields: vec!["/sourceIPs".into()],
            erasure_wins: false,
            subject_default: None,
        }],
    }
}

fn indexes(r: &Resp) -> Vec<u64> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect()
}

fn username(line: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(line).ok()?;
    v.pointer("/user/username").and_then(Value::as_str).map(str::to_string)
}

#[test]
fn erase_over_the_api_destroys_the_key_the_sealer_uses() {
    let Some(data) = shared_data() else { return };
    let file = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let lines: Vec<Vec<u8>> =
        std::fs::read(&file).unwrap().split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    // The subject with the most events, and another one that must stay readable.
    let mut counts: Vec<(usize, String)> = Vec::new();
    for name in lines.iter().filter_map(|l| username(l)) {
        match counts.iter_mut().find(|(_, n)| *n == name) {
            Some(c) => c.0 += 1,
            None => counts.push((1, name)),
        }
    }
    counts.sort();
    let subject = counts.last().unwrap().1.clone();
    let other = counts[counts.len() - 2].1.clone();
    assert!(counts.last().unwrap().0 > 3, "{counts:?}");

    let dir = fresh_dir();
    let t = make_tokens(
        dir.path(),
        &[
            ("ingest", &["append:*"]),
            ("eraser", &["erase"]),
            ("adm", &["admin:*", "hold-release:*"]),
            ("scoped", &["erase:k8s*"]),
            ("rd", &["read:*"]),
        ],
    );
    let [ingest, eraser, adm, scoped, rd] = [0, 1, 2, 3, 4].map(|i| t[i].as_str());
    let key_dir = tempfile::tempdir().unwrap();
    let erasure = erasure_config(key_dir.path());
    let srv = TestServer::start(dir, |c| c.erasure = Some(erasure.clone()));
    let addr = srv.addr;
    let stored = indexes(&call(addr, "POST", "/v1/events?stream=k8s", ingest, &lines.join(&b"\n"[..])));
    assert_eq!(stored.len(), lines.len());

    // Only `erase` on every stream may erase: admin, hold-release, read, append and a
    // stream-scoped erase grant are refused, and nothing is recorded for them.
    let body = serde_json::json!({ "subject": subject, "reason": "GDPR request 7" });
    for (token, what) in [(adm, "admin"), (rd, "read"), (ingest, "append"), (scoped, "erase:k8s*")] {
        assert_403(&call_json(addr, "POST", "/v1/admin/erasures", token, body.clone()), "erase", what);
    }
    assert_403(&call(addr, "GET", "/v1/admin/erasures", adm, b""), "erase", "list by admin");
    // Bad bodies.
    let r = call(addr, "POST", "/v1/admin/erasures", eraser, br#"{"subject":"x","who":"y"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = call_json(addr, "POST", "/v1/admin/erasures", eraser, serde_json::json!({ "subject": "" }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = call_json(addr, "POST", "/v1/admin/erasures", eraser, serde_json::json!({ "subject": "nobody@nowhere" }));
    assert_eq!(r.status, 404, "{}", r.text());

    let r = call_json(addr, "POST", "/v1/admin/erasures", eraser, body.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "erased", "{}", r.text());
    let record_index = r.json()["index"].as_u64().unwrap();
    // As `stele erase`: a second request finds no key.
    assert_eq!(call_json(addr, "POST", "/v1/admin/erasures", eraser, body.clone()).status, 404);
    // The subject's next event is sealed under a new key, while the server runs.
    let later =
        format!(r#"{{"kind":"Event","verb":"get","user":{{"username":"{subject}"}},"sourceIPs":["192.0.2.9"]}}"#);
    let later_index = indexes(&call(addr, "POST", "/v1/events?stream=k8s", ingest, later.as_bytes()))[0];
    let listed = call(addr, "GET", "/v1/admin/erasures", eraser, b"");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let list = listed.json()["erasures"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["state"].as_str(), list[0]["record_index"].as_u64()), (Some("done"), Some(record_index)));
    assert_eq!(list[0]["requested_by"], "eraser");
    assert!(!listed.text().contains(&subject));
    let dir = srv.stop();

    // Read as `stele get` reads: keys reconciled with the erasure records, then restore.
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let index = stele_index::Index::open(dir.path(), reader.clone(), &Default::default(), false).unwrap();
    let keys = erasure.open_keys(dir.path(), &index.snapshot(), &reader).unwrap();
    let (mut erased, mut restored) = (0, 0);
    for (i, line) in stored.iter().zip(&lines) {
        let e = reader.entry(*i).unwrap();
        let view = restore(Some(&keys), e.leaf.payload_format, &e.payload).unwrap();
        match username(line) {
            Some(n) if n == subject => {
                assert_eq!(view.state, SealState::Erased, "entry {i}");
                let v: Value = serde_json::from_slice(&view.bytes).unwrap();
                assert_eq!(v["user"]["username"], "stele:erased", "entry {i}");
                erased += 1;
            }
            Some(n) if n == other => {
                assert_eq!((view.state, &view.bytes), (SealState::Restored, line), "entry {i}");
                restored += 1;
            }
            _ => {}
        }
    }
    assert_eq!(erased, counts.last().unwrap().0);
    assert!(restored > 0);
    let e = reader.entry(later_index).unwrap();
    let view = restore(Some(&keys), e.leaf.payload_format, &e.payload).unwrap();
    assert_eq!((view.state, view.bytes.as_slice()), (SealState::Restored, later.as_bytes()), "the later event");
    // The record names the principal and never the subject; the log verifies.
    let recs = records(dir.path(), stele_erasure::ERASURE_STREAM);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!((recs[0]["type"].as_str(), recs[0]["requested_by"].as_str()), (Some("erasure"), Some("eraser")));
    assert!(!contains(&raw_records(dir.path(), stele_erasure::ERASURE_STREAM), subject.as_bytes()));
    let report = stele_store::verify::verify(&reader, &stele_store::verify::VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_hold_under_an_erasure_defers_it_as_the_cli_does() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("w", &["append:*"]), ("eraser", &["erase"]), ("adm", &["admin:*"])]);
    let [w, eraser, adm] = [0, 1, 2].map(|i| t[i].as_str());
    let key_dir = tempfile::tempdir().unwrap();
    let erasure = erasure_config(key_dir.path());
    let srv = TestServer::start(dir, |c| c.erasure = Some(erasure.clone()));
    let addr = srv.addr;
    indexes(&call(addr, "POST", "/v1/events?stream=k8s-a", w, br#"{"user":{"username":"carol"},"verb":"list"}"#));
    let hold = serde_json::json!({ "case": "C-9", "reason": "litigation", "stream": "k8s*" });
    assert_eq!(call_json(addr, "POST", "/v1/admin/holds", adm, hold).status, 201);
    let r = call_json(addr, "POST", "/v1/admin/erasures", eraser, serde_json::json!({ "subject": "carol" }));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert_eq!((v["state"].as_str(), v["blocked_by"][0].as_str()), (Some("pending"), Some("hold:C-9")), "{v}");
    let again = call_json(addr, "POST", "/v1/admin/erasures", eraser, serde_json::json!({ "subject": "carol" }));
    assert_eq!(again.json()["state"], "already_pending", "{}", again.text());
    let dir = srv.stop();
    let recs = records(dir.path(), stele_erasure::ERASURE_STREAM);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["type"], "erasure_request");
    assert_eq!(recs[0]["reason"], "data subject request (GDPR Art. 17)");
}

fn approval_config(c: &mut ServerConfig, roles: &[Role]) {
    c.auth.require_approval = roles.to_vec();
}

#[test]
fn a_hold_release_needs_a_second_principal_and_survives_a_restart() {
    let dir = fresh_dir();
    let t = make_tokens(
        dir.path(),
        &[
            ("adm", &["admin:*"]),
            ("rel1", &["hold-release:*"]),
            ("rel2", &["hold-release:k8s*"]),
            ("reldev", &["hold-release:dev"]),
            ("w", &["append:*"]),
        ],
    );
    let [adm, rel1, rel2, reldev, w] = [0, 1, 2, 3, 4].map(|i| t[i].as_str());
    let srv = TestServer::start(dir, |c| approval_config(c, &[Role::HoldRelease]));
    let addr = srv.addr;
    let hold = serde_json::json!({ "case": "C-1", "reason": "litigation", "stream": "k8s*" });
    assert_eq!(call_json(addr, "POST", "/v1/admin/holds", adm, hold).status, 201);

    let before = jiff::Timestamp::now();
    let r =
        call_json(addr, "POST", "/v1/admin/holds/C-1/release", rel1, serde_json::json!({ "reason": "case closed" }));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    let id = v["approval"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{v}");
    let expires: jiff::Timestamp = v["expires"].as_str().unwrap().parse().unwrap();
    let ttl = expires.duration_since(before).as_secs();
    assert!((86_395..=86_405).contains(&ttl), "expires in {ttl} s: {v}");
    assert!(v["needs"].as_str().unwrap().contains("hold-release"), "{v}");
    // Nothing is released yet.
    let holds = call(addr, "GET", "/v1/admin/holds", adm, b"").json();
    assert_eq!(holds["holds"].as_array().unwrap().len(), 1, "{holds}");

    let approve = |token: &str, id: &str| call(addr, "POST", &format!("/v1/admin/approvals/{id}/approve"), token, b"");
    // The requester cannot approve their own request.
    let r = approve(rel1, &id);
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!((v["principal"].as_str(), v["requested_by"].as_str()), (Some("rel1"), Some("rel1")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot approve it too"), "{v}");
    // Neither can a principal without the role on the hold's streams.
    assert_403(&approve(reldev, &id), "hold-release", "hold-release:dev");
    assert_403(&approve(adm, &id), "hold-release", "admin");
    assert_eq!(approve(rel2, "00112233445566778899aabbccddeeff").status, 404);
    // Listed for whoever may approve it, refused to a principal with no admin role.
    let listed = call(addr, "GET", "/v1/admin/approvals", rel2, b"").json();
    assert_eq!(listed["approvals"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["approvals"][0]["requested_by"], "rel1", "{listed}");
    assert_eq!(call(addr, "GET", "/v1/admin/approvals", w, b"").status, 403);
    let shown = call(addr, "GET", "/v1/admin/approvals", reldev, b"").json();
    assert!(shown["approvals"].as_array().unwrap().is_empty(), "{shown}");

    // A restart keeps the request, with its expiry.
    let dir = srv.stop();
    let srv = TestServer::start(dir, |c| approval_config(c, &[Role::HoldRelease]));
    let addr = srv.addr;
    let approve = |token: &str, id: &str| call(addr, "POST", &format!("/v1/admin/approvals/{id}/approve"), token, b"");
    let listed = call(addr, "GET", "/v1/admin/approvals", rel2, b"").json();
    assert_eq!(listed["approvals"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["approvals"][0]["expires"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), expires);
    assert_eq!(approve(rel1, &id).status, 403, "still refused to the requester after the restart");

    let r = approve(rel2, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["case"].as_str(), v["approval"]["approved_by"].as_str()), (Some("C-1"), Some("rel2")), "{v}");
    let holds = call(addr, "GET", "/v1/admin/holds", adm, b"").json();
    assert!(holds["holds"].as_array().unwrap().is_empty(), "{holds}");
    assert_eq!(approve(rel2, &id).status, 409, "approved once");
    assert!(call(addr, "GET", "/v1/admin/approvals", rel2, b"").json()["approvals"].as_array().unwrap().is_empty());
    let dir = srv.stop();

    let recs = records(dir.path(), stele_server::approvals::APPROVALS_STREAM);
    let kinds: Vec<(&str, &str)> =
        recs.iter().map(|r| (r["type"].as_str().unwrap(), r["action"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("approval_request", "hold-release"), ("approval", "hold-release")], "{recs:?}");
    assert_eq!((recs[0]["requested_by"].as_str(), recs[1]["approved_by"].as_str()), (Some("rel1"), Some("rel2")));
    assert_eq!(recs[0]["params"]["case"], "C-1");
    let release = records(dir.path(), "_stele/retention").into_iter().find(|r| r["type"] == "hold_release").unwrap();
    assert_eq!(
        (release["released_by"].as_str(), release["approved_by"].as_str(), release["approval"].as_str()),
        (Some("rel1"), Some("rel2"), Some(id.as_str())),
        "{release}"
    );
}

#[test]
fn approvals_expire_and_a_replaced_hold_is_not_released() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("adm", &["admin:*"]), ("rel1", &["hold-release"]), ("rel2", &["hold-release"])]);
    let [adm, rel1, rel2] = [0, 1, 2].map(|i| t[i].as_str());
    let srv = TestServer::start(dir, |c| {
        approval_config(c, &[Role::HoldRelease]);
        c.auth.approval_expiry = Duration::from_secs(1);
    });
    let addr = srv.addr;
    let hold = serde_json::json!({ "case": "C-2", "reason": "audit" });
    assert_eq!(call_json(addr, "POST", "/v1/admin/holds", adm, hold.clone()).status, 201);
    let release = serde_json::json!({ "reason": "done" });
    let requested = Instant::now();
    let r = call_json(addr, "POST", "/v1/admin/holds/C-2/release", rel1, release.clone());
    assert_eq!(r.status, 202, "{}", r.text());
    let stale = r.json()["approval"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(requested.elapsed()));
    let r = call(addr, "POST", &format!("/v1/admin/approvals/{stale}/approve"), rel2, b"");
    assert_eq!(r.status, 410, "{}", r.text());
    assert!(call(addr, "GET", "/v1/admin/approvals", rel2, b"").json()["approvals"].as_array().unwrap().is_empty());
    assert_eq!(call(addr, "GET", "/v1/admin/holds", adm, b"").json()["holds"].as_array().unwrap().len(), 1);

    // A request for a hold released (here: approved through another request) and
    // placed again under the same case does not release the new hold.
    let a = call_json(addr, "POST", "/v1/admin/holds/C-2/release", rel1, release.clone()).json();
    let b = call_json(addr, "POST", "/v1/admin/holds/C-2/release", rel1, release.clone()).json();
    let (a, b) = (a["approval"].as_str().unwrap().to_string(), b["approval"].as_str().unwrap().to_string());
    let r = call(addr, "POST", &format!("/v1/admin/approvals/{a}/approve"), rel2, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(call_json(addr, "POST", "/v1/admin/holds", adm, hold).status, 201);
    let r = call(addr, "POST", &format!("/v1/admin/approvals/{b}/approve"), rel2, b"");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(call(addr, "GET", "/v1/admin/holds", adm, b"").json()["holds"].as_array().unwrap().len(), 1);
    srv.stop();
}

#[test]
fn an_erasure_needing_approval_records_both_principals_and_never_the_subject() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("w", &["append:*"]), ("e1", &["erase"]), ("e2", &["erase"])]);
    let [w, e1, e2] = [0, 1, 2].map(|i| t[i].as_str());
    let key_dir = tempfile::tempdir().unwrap();
    let erasure = erasure_config(key_dir.path());
    let srv = TestServer::start(dir, |c| {
        c.erasure = Some(erasure.clone());
        approval_config(c, &[Role::Erase]);
    });
    let addr = srv.addr;
    let event = br#"{"user":{"username":"dave.doe@example.org"},"verb":"delete","sourceIPs":["198.51.100.3"]}"#;
    let i = indexes(&call(addr, "POST", "/v1/events?stream=k8s", w, event))[0];
    let body = serde_json::json!({ "subject": "dave.doe@example.org", "reason": "request 11" });
    // No key, no request: answered at once.
    let r = call_json(addr, "POST", "/v1/admin/erasures", e1, serde_json::json!({ "subject": "eve" }));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = call_json(addr, "POST", "/v1/admin/erasures", e1, body);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval"].as_str().unwrap().to_string();
    let listed = call(addr, "GET", "/v1/admin/approvals", e2, b"");
    assert_eq!(listed.json()["approvals"][0]["action"], "erase", "{}", listed.text());
    assert!(!listed.text().contains("dave.doe"), "{}", listed.text());
    let approve = |token: &str| call(addr, "POST", &format!("/v1/admin/approvals/{id}/approve"), token, b"");
    assert_eq!(approve(e1).status, 403);
    assert_403(&approve(w), "erase", "append");
    let r = approve(e2);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["state"].as_str(), v["approval"]["requested_by"].as_str()), (Some("erased"), Some("e1")), "{v}");
    let dir = srv.stop();

    let recs = records(dir.path(), stele_erasure::ERASURE_STREAM);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (recs[0]["reason"].as_str(), recs[0]["requested_by"].as_str(), recs[0]["approved_by"].as_str()),
        (Some("request 11"), Some("e1"), Some("e2")),
    );
    for stream in [stele_erasure::ERASURE_STREAM, stele_server::approvals::APPROVALS_STREAM] {
        let raw = raw_records(dir.path(), stream);
        assert!(!raw.is_empty() && !contains(&raw, b"dave.doe"), "{stream} names the subject");
    }
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let index = stele_index::Index::open(dir.path(), reader.clone(), &Default::default(), false).unwrap();
    let keys = erasure.open_keys(dir.path(), &index.snapshot(), &reader).unwrap();
    let e = reader.entry(i).unwrap();
    assert_eq!(restore(Some(&keys), e.leaf.payload_format, &e.payload).unwrap().state, SealState::Erased);
}

#[test]
fn approval_settings_are_checked_at_start() {
    for (roles, expiry, what) in [
        (vec![Role::Read], Duration::from_secs(60), "read"),
        (vec![Role::Erase], Duration::ZERO, "approval_expiry"),
        (vec![Role::Erase], Duration::from_secs(31 * 86_400), "approval_expiry"),
    ] {
        let dir = fresh_dir();
        let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.auth.require_approval = roles;
        config.auth.approval_expiry = expiry;
        let log = stele_store::Log::open(dir.path(), config.log_options.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = match rt.block_on(stele_server::start(config, log, std::future::pending::<()>())) {
            Ok(_) => panic!("{what}: the server started"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(what), "{what}: {err}");
    }
}

/// An operator with `admin`, `hold-release` and `erase` but not `read` administers
/// without reading a payload: every read route answers 403.
#[test]
fn an_administrator_without_read_gets_403_on_every_read_route() {
    let dir = fresh_dir();
    let t = make_tokens(dir.path(), &[("w", &["append:*"]), ("op", &["admin:*", "hold-release:*", "erase:*"])]);
    let [w, op] = [0, 1].map(|i| t[i].as_str());
    let srv = TestServer::start(dir, |c| c.auth.public_proofs = false);
    let addr = srv.addr;
    let i = indexes(&call(addr, "POST", "/v1/events?stream=app", w, br#"{"actor":"x","action":"login"}"#))[0];
    let routes = [
        format!("/v1/entries/{i}"),
        "/v1/query".to_string(),
        "/v1/query?stream=app".to_string(),
        "/v1/query?stream=_stele/access".to_string(),
        "/v1/query?actor=x".to_string(),
        "/checkpoint".to_string(),
        "/tile/0/000.p/1".to_string(),
        "/tile/entries/000.p/1".to_string(),
        format!("/v1/proof/inclusion?index={i}"),
        "/v1/proof/consistency?first=1".to_string(),
    ];
    for path in &routes {
        assert_403(&call(addr, "GET", path, op, b""), "read", path);
        assert!(!call(addr, "GET", path, op, b"").text().contains("login"), "{path}");
    }
    // The same token administers.
    assert_eq!(call(addr, "GET", "/v1/admin/holds", op, b"").status, 200);
    assert_eq!(call(addr, "GET", "/v1/admin/approvals", op, b"").status, 200);
    srv.stop();
}

#[test]
fn two_approvers_at_once_release_a_hold_once() {
    let dir = fresh_dir();
    let t = make_tokens(
        dir.path(),
        &[("adm", &["admin:*"]), ("rel1", &["hold-release"]), ("rel2", &["hold-release"]), ("rel3", &["hold-release"])],
    );
    let [adm, rel1] = [0, 1].map(|i| t[i].clone());
    let srv = TestServer::start(dir, |c| approval_config(c, &[Role::HoldRelease]));
    let addr = srv.addr;
    let hold = serde_json::json!({ "case": "C-3", "reason": "audit" });
    assert_eq!(call_json(addr, "POST", "/v1/admin/holds", &adm, hold).status, 201);
    let r = call_json(addr, "POST", "/v1/admin/holds/C-3/release", &rel1, serde_json::json!({ "reason": "done" }));
    let id = r.json()["approval"].as_str().unwrap().to_string();
    let path = format!("/v1/admin/approvals/{id}/approve");
    let approvers: Vec<_> = [t[2].clone(), t[3].clone()]
        .into_iter()
        .map(|token| {
            let path = path.clone();
            std::thread::spawn(move || call(addr, "POST", &path, &token, b"").status)
        })
        .collect();
    let mut statuses: Vec<u16> = approvers.into_iter().map(|h| h.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let dir = srv.stop();
    let releases = records(dir.path(), "_stele/retention").into_iter().filter(|r| r["type"] == "hold_release").count();
    assert_eq!(releases, 1);
    let approvals = records(dir.path(), stele_server::approvals::APPROVALS_STREAM);
    assert_eq!(approvals.iter().filter(|r| r["type"] == "approval").count(), 1, "{approvals:?}");
}
