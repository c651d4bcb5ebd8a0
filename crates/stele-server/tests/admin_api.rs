//! Separation of duties for the actions that weaken protection while the server runs:
//! governance bypass (`POST /v1/admin/retention/shorten`, role `governance-bypass`),
//! key rotation (`POST /v1/admin/keys/rotate`, `key-rotate`) and revocation (`POST
//! /v1/admin/keys/revoke`, `key-revoke`). Each is refused without its role (and to
//! `admin`), works with it, records what `stele retention apply --allow-shorten` and
//! `stele key rotate|revoke` record, and, listed in `require_approval`, waits for a
//! second principal.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Resp, TestServer, make_tokens, request};
use serde_json::Value;
use stele_retention::{Mode, Policy, PolicyRecord};
use stele_server::ServerConfig;
use stele_server::auth::Role;
use stele_store::Log;
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::note::NoteVerifier;

const ORIGIN: &str = "admin-api.test/log";

fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> Resp {
    let bearer = format!("Bearer {token}");
    request(addr, method, path, &[("Content-Type", "application/json"), ("Authorization", &bearer)], body)
}

fn call_json(addr: SocketAddr, path: &str, token: &str, body: Value) -> Resp {
    call(addr, "POST", path, token, body.to_string().as_bytes())
}

fn approve(addr: SocketAddr, token: &str, id: &str) -> Resp {
    call(addr, "POST", &format!("/v1/admin/approvals/{id}/approve"), token, b"")
}

fn assert_403(r: &Resp, role: &str, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.json()["missing_role"], role, "{what}: {}", r.text());
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains(role)), "{what}: {}", r.text());
}

fn post_events(addr: SocketAddr, token: &str, stream: &str, body: &[u8]) -> Vec<u64> {
    let r = call(addr, "POST", &format!("/v1/events?stream={stream}"), token, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect()
}

/// Every entry of `stream` (the server stopped), as JSON.
fn records(dir: &Path, stream: &str) -> Vec<Value> {
    let reader = stele_store::LogReader::open(dir).unwrap();
    (0..reader.tree_size())
        .filter_map(|i| reader.entry(i).ok())
        .filter(|e| e.stream == stream)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// A governance policy for `app` (30 days at most) and a compliance one for `legal`.
fn policies() -> Vec<Policy> {
    vec![
        Policy {
            stream: "app".into(),
            min_retention: Duration::ZERO,
            max_retention: Some(days(30)),
            mode: Mode::Governance,
        },
        Policy {
            stream: "legal".into(),
            min_retention: days(1),
            max_retention: Some(days(365)),
            mode: Mode::Compliance,
        },
    ]
}

/// A new data directory whose log records `policies()` as `stele serve` records them
/// at its start (`stele_retention::reconcile`, then the records appended).
fn dir_with_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), ORIGIN).unwrap();
    let mut log = Log::open(dir.path(), Default::default()).unwrap();
    let (pending, _) =
        stele_retention::reconcile(&policies(), &Default::default(), false, stele_store::log::now_ns()).unwrap();
    let payloads: Vec<Vec<u8>> = pending.iter().map(PolicyRecord::encode).collect();
    let entries: Vec<stele_store::NewEntry<'_>> = payloads
        .iter()
        .map(|p| stele_store::NewEntry {
            stream: stele_store::streams::RETENTION_STREAM,
            format: stele_store::log::FORMAT_STELE_RECORD,
            payload: p,
        })
        .collect();
    log.append(&entries).unwrap();
    log.sign_checkpoint().unwrap();
    dir
}

fn retention_config(c: &mut ServerConfig) {
    c.retention = policies();
    c.retention_interval = Duration::from_millis(200);
    c.log_options.segment_window_ns = 400_000_000;
}

fn metric(addr: SocketAddr, token: &str, name: &str) -> f64 {
    let text = call(addr, "GET", "/metrics", token, b"").text();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn policy_records(dir: &Path, stream: &str) -> Vec<Value> {
    records(dir, "_stele/retention").into_iter().filter(|r| r["type"] == "policy" && r["stream"] == stream).collect()
}

#[test]
fn governance_bypass_needs_its_own_role_and_is_recorded_as_the_cli_records_it() {
    let dir = dir_with_policies();
    let t = make_tokens(
        dir.path(),
        &[
            ("adm", &["admin:*", "hold-release:*", "erase", "key-rotate", "key-revoke"]),
            ("gb", &["governance-bypass:app"]),
            ("gbdev", &["governance-bypass:dev*"]),
            ("gball", &["governance-bypass"]),
            ("w", &["append:*", "read:*"]),
        ],
    );
    let [adm, gb, gbdev, gball, w] = [0, 1, 2, 3, 4].map(|i| t[i].as_str());
    let srv = TestServer::start(dir, retention_config);
    let addr = srv.addr;
    let old = post_events(addr, w, "app", b"{\"a\":1}\n{\"a\":2}\n");
    let shorten = |token: &str, body: Value| call_json(addr, "/v1/admin/retention/shorten", token, body);
    let to_zero = serde_json::json!({ "stream": "app", "min_days": 0, "max_days": 0, "reason": "storage costs" });

    // Every other role, `admin` with all the others included, is refused; so is a
    // grant on other streams.
    for (token, what) in [(adm, "admin and every other role"), (w, "append, read"), (gbdev, "governance-bypass:dev*")] {
        assert_403(&shorten(token, to_zero.clone()), "governance-bypass", what);
    }
    // Compliance mode refuses, whoever asks.
    let r = shorten(gball, serde_json::json!({ "stream": "legal", "min_days": 0, "max_days": 1, "reason": "x" }));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["mode"], "compliance", "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("nobody may shorten it"), "{}", r.text());
    // Not a shortening, no such policy, bad bodies.
    let r = shorten(gb, serde_json::json!({ "stream": "app", "min_days": 0, "max_days": 60, "reason": "x" }));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("does not shorten"), "{}", r.text());
    let r = shorten(gball, serde_json::json!({ "stream": "other", "min_days": 0, "max_days": 1, "reason": "x" }));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = shorten(gb, serde_json::json!({ "stream": "app", "min_days": -1, "reason": "x" }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = shorten(gb, serde_json::json!({ "stream": "app", "min_days": 0, "reason": " " }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = shorten(gb, serde_json::json!({ "stream": "app", "min_days": 0, "mode": "compliance", "reason": "x" }));
    assert_eq!(r.status, 400, "{}", r.text());

    let r = shorten(gb, to_zero.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["policy"]["max_retention_seconds"], 0, "{v}");
    assert_eq!(v["previous"]["max_retention_seconds"], 30 * 86_400, "{v}");
    let index = v["index"].as_u64().unwrap();
    // Shortening it again to the same is nothing to shorten.
    assert_eq!(shorten(gb, to_zero).status, 409);

    // The running server's passes delete by the shortened policy.
    std::thread::sleep(Duration::from_millis(600));
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(addr, w, "stele_retention_deleted_segments_total") < 1.0 {
        post_events(addr, w, "app", b"{\"a\":3}\n");
        assert!(Instant::now() < deadline, "no segment was deleted under the shortened policy");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in &old {
        assert_eq!(call(addr, "GET", &format!("/v1/entries/{i}"), w, b"").status, 410);
    }
    let dir = srv.stop();

    // The record is the CLI's (`"shortened":true`), with who asked and why.
    let recs = policy_records(dir.path(), "app");
    assert_eq!(recs.len(), 2, "{recs:?}");
    let r = &recs[1];
    let parsed = PolicyRecord::parse(r.to_string().as_bytes()).expect("a policy record");
    assert!(parsed.shortened && parsed.max_retention_seconds == Some(0), "{r}");
    assert_eq!((r["shortened_by"].as_str(), r["reason"].as_str()), (Some("gb"), Some("storage costs")), "{r}");
    // As the log now records it, reconciling the configuration asks for the
    // shortening to be lengthened back (no permission needed) and nothing else.
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let index_view = stele_index::Index::open(dir.path(), reader.clone(), &Default::default(), false).unwrap();
    let recorded = stele_retention::recorded_policies(&index_view.snapshot(), &reader).unwrap();
    assert_eq!(recorded["app"].1, index);
    assert_eq!(recorded["app"].0.max_retention_seconds, Some(0));
    let report = verify(&reader, &VerifyOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn governance_bypass_with_approval_waits_for_a_second_principal() {
    let dir = dir_with_policies();
    let t = make_tokens(
        dir.path(),
        &[("g1", &["governance-bypass"]), ("g2", &["governance-bypass:app"]), ("adm", &["admin"])],
    );
    let [g1, g2, adm] = [0, 1, 2].map(|i| t[i].as_str());
    let edit = |c: &mut ServerConfig| {
        retention_config(c);
        c.auth.require_approval = vec![Role::GovernanceBypass];
    };
    let srv = TestServer::start(dir, edit);
    let addr = srv.addr;
    let body = serde_json::json!({ "stream": "app", "min_days": 0, "max_days": 7, "reason": "ticket 12" });
    let r = call_json(addr, "/v1/admin/retention/shorten", g1, body);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval"].as_str().unwrap().to_string();
    assert!(r.json()["needs"].as_str().unwrap().contains("governance-bypass"), "{}", r.text());
    let r = approve(addr, g1, &id);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["requested_by"], "g1");
    assert_403(&approve(addr, adm, &id), "governance-bypass", "admin");
    // Nothing was shortened yet; a restart keeps the request.
    let dir = srv.stop();
    assert_eq!(policy_records(dir.path(), "app").len(), 1);
    let srv = TestServer::start(dir, edit);
    let addr = srv.addr;
    let listed = call(addr, "GET", "/v1/admin/approvals", g2, b"").json();
    assert_eq!(listed["approvals"][0]["params"]["max_retention_seconds"], 7 * 86_400, "{listed}");
    let r = approve(addr, g2, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["approval"]["approved_by"], "g2", "{}", r.text());
    assert_eq!(approve(addr, g2, &id).status, 409);
    let dir = srv.stop();
    let recs = policy_records(dir.path(), "app");
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(
        (recs[1]["shortened"].as_bool(), recs[1]["shortened_by"].as_str(), recs[1]["approved_by"].as_str()),
        (Some(true), Some("g1"), Some("g2")),
        "{}",
        recs[1]
    );
    assert_eq!(recs[1]["approval"], id.as_str());
}

fn checkpoint_note(addr: SocketAddr) -> String {
    let r = request(addr, "GET", "/checkpoint", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// Waits for a checkpoint of at least `size` entries and returns its note.
fn checkpoint_at_least(addr: SocketAddr, size: u64, key: &NoteVerifier) -> stele_tlog::checkpoint::Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let note = checkpoint_note(addr);
        let cp = open_checkpoint(note.as_bytes(), key)
            .unwrap_or_else(|e| panic!("checkpoint not signed by {}: {e}\n{note}", key.to_vkey()))
            .checkpoint;
        if cp.tree_size >= size {
            return cp;
        }
        assert!(Instant::now() < deadline, "no checkpoint of size {size}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn key_rotation_and_revocation_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let first = stele_store::log::init(dir.path(), ORIGIN).unwrap();
    let t = make_tokens(
        dir.path(),
        &[
            ("adm", &["admin:*", "hold-release:*", "erase", "governance-bypass"]),
            ("rot", &["key-rotate"]),
            ("rev", &["key-revoke"]),
            ("rotapp", &["key-rotate:app*"]),
            ("w", &["append:*", "read:*"]),
        ],
    );
    let [adm, rot, rev, rotapp, w] = [0, 1, 2, 3, 4].map(|i| t[i].as_str());
    let srv = TestServer::start(dir, |_| {});
    let addr = srv.addr;
    post_events(addr, w, "app", b"{\"n\":1}\n{\"n\":2}\n");
    let rotate = |token: &str| call(addr, "POST", "/v1/admin/keys/rotate", token, b"");
    let revoke = |token: &str, body: Value| call_json(addr, "/v1/admin/keys/revoke", token, body);
    for (token, what) in [(adm, "admin and the other roles"), (rev, "key-revoke"), (w, "append"), (rotapp, "scoped")] {
        assert_403(&rotate(token), "key-rotate", what);
    }
    let revoke_first = serde_json::json!({ "key": first.to_vkey(), "as_of": 1, "reason": "found on a tape" });
    // Without credentials: 401 before anything else.
    for path in ["/v1/admin/keys/rotate", "/v1/admin/keys/revoke", "/v1/admin/retention/shorten"] {
        let r =
            request(addr, "POST", path, &[("Content-Type", "application/json")], revoke_first.to_string().as_bytes());
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{path}: {}", r.text());
    }
    for (token, what) in [(adm, "admin"), (rot, "key-rotate")] {
        assert_403(&revoke(token, revoke_first.clone()), "key-revoke", what);
    }
    assert_eq!(call(addr, "POST", "/v1/admin/keys/rotate", rot, br#"{"key":"x"}"#).status, 400);
    let r = call(addr, "POST", "/v1/admin/keys/rotate", rot, &vec![b' '; 70_000]);
    assert_eq!((r.status, r.json()["limit"].as_u64()), (413, Some(65_536)), "{}", r.text());

    let r = rotate(rot);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["old_key"], first.to_vkey().as_str(), "{v}");
    let second = NoteVerifier::parse(v["new_key"].as_str().unwrap()).unwrap();
    assert_ne!(second, first);
    let index = v["index"].as_u64().unwrap();
    // The transition checkpoint carries both signatures.
    let note = v["checkpoint"]["note"].as_str().unwrap();
    assert_eq!(open_checkpoint(note.as_bytes(), &first).unwrap().checkpoint.tree_size, index + 1);
    assert_eq!(open_checkpoint(note.as_bytes(), &second).unwrap().checkpoint.tree_size, index + 1);
    // The new private key is where a restart finds it, readable by its owner only.
    let d = srv.dir.path();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.join("keys/signing.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(!d.join("keys/next.key").exists());
    assert_eq!(stele_store::signer_file::load_private_key(&d.join("keys/signing.key")).unwrap().verifier(), second);
    assert_eq!(stele_store::log::read_verifier(d).unwrap(), second);
    // The server goes on accepting events, under checkpoints of the new key only.
    let later = post_events(addr, w, "app", b"{\"n\":3}\n");
    let cp = checkpoint_at_least(addr, later[0] + 1, &second);
    assert!(open_checkpoint(checkpoint_note(addr).as_bytes(), &first).is_err());
    assert!(cp.tree_size > index + 1);
    let statements = request(addr, "GET", "/key-statements", &[], b"").text();
    assert!(statements.starts_with(&format!("{index} ")), "{statements}");

    // Revocation: malformed or impossible requests first.
    let r = revoke(rev, serde_json::json!({ "key": "nonsense", "as_of": 1, "reason": "x" }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = revoke(rev, serde_json::json!({ "key": first.to_vkey(), "as_of": 1_000_000, "reason": "x" }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = revoke(rev, serde_json::json!({ "key": second.to_vkey(), "as_of": 1, "reason": "x" }));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("rotate to a new key first"), "{}", r.text());
    // The old key is trusted up to the transition checkpoint it signed.
    let as_of = index + 1;
    let r = revoke(rev, serde_json::json!({ "key": first.to_vkey(), "as_of": as_of, "reason": "found on a tape" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked_at = r.json()["index"].as_u64().unwrap();
    post_events(addr, w, "app", b"{\"n\":4}\n");
    let dir = srv.stop();

    // Records: the statements (listed) and who asked for them.
    let recs = records(dir.path(), stele_store::keys::KEYS_STREAM);
    let ops: Vec<(&str, &str, u64)> = recs
        .iter()
        .filter(|r| r["type"] == "key-operation")
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["requested_by"].as_str().unwrap(),
                r["statement_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ops, [("rotate", "rot", index), ("revoke", "rev", revoked_at)]);
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let listed = stele_store::keys::listed_statements(&reader).unwrap();
    assert_eq!(listed.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [index, revoked_at]);
    // The log verifies from the first key, through the statements.
    let options = VerifyOptions { trusted_key: Some(first.clone()), ..Default::default() };
    let report = verify(&reader, &options).unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    // After a restart the new key signs.
    let srv = TestServer::start(dir, |_| {});
    let addr = srv.addr;
    let again = post_events(addr, w, "app", b"{\"n\":5}\n");
    checkpoint_at_least(addr, again[0] + 1, &second);
    srv.stop();
}

#[test]
fn key_operations_with_approval_and_an_out_of_process_signer() {
    let dir = tempfile::tempdir().unwrap();
    let first = stele_store::log::init(dir.path(), ORIGIN).unwrap();
    let t = make_tokens(
        dir.path(),
        &[("r1", &["key-rotate", "key-revoke"]), ("r2", &["key-rotate", "key-revoke"]), ("w", &["append:*"])],
    );
    let [r1, r2, w] = [0, 1, 2].map(|i| t[i].as_str());
    let edit = |c: &mut ServerConfig| {
        c.auth.require_approval = vec![Role::KeyRotate, Role::KeyRevoke];
        c.auth.approval_expiry = Duration::from_secs(2);
    };
    let srv = TestServer::start(dir, edit);
    let addr = srv.addr;
    post_events(addr, w, "app", b"{\"n\":1}\n");
    let r = call(addr, "POST", "/v1/admin/keys/rotate", r1, b"{}");
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval"].as_str().unwrap().to_string();
    assert_eq!(approve(addr, r1, &id).status, 403, "the requester approves nothing");
    assert_eq!(stele_store::log::read_verifier(srv.dir.path()).unwrap(), first, "not rotated before approval");
    let r = approve(addr, r2, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["approval"]["requested_by"].as_str(), v["approval"]["approved_by"].as_str()),
        (Some("r1"), Some("r2"))
    );
    let second = NoteVerifier::parse(v["new_key"].as_str().unwrap()).unwrap();
    let index = v["index"].as_u64().unwrap();

    // A revocation request left to expire is gone (410); a new one is approved.
    let body = serde_json::json!({ "key": first.to_vkey(), "as_of": index + 1, "reason": "rotated out" });
    let requested = Instant::now();
    let stale =
        call_json(addr, "/v1/admin/keys/revoke", r2, body.clone()).json()["approval"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(requested.elapsed()));
    assert_eq!(approve(addr, r1, &stale).status, 410);
    let id = call_json(addr, "/v1/admin/keys/revoke", r2, body).json()["approval"].as_str().unwrap().to_string();
    let r = approve(addr, r1, &id);
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = srv.stop();
    let ops: Vec<Value> = records(dir.path(), stele_store::keys::KEYS_STREAM)
        .into_iter()
        .filter(|r| r["type"] == "key-operation")
        .collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!((ops[1]["requested_by"].as_str(), ops[1]["approved_by"].as_str()), (Some("r2"), Some("r1")));
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    let report = verify(&reader, &VerifyOptions { trusted_key: Some(first), ..Default::default() }).unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    // A log whose key a signer holds (here given to the writer as the out-of-process
    // signer is) cannot be rotated over the API: refused before anything is recorded.
    let key = stele_store::signer_file::load_private_key(&dir.path().join("keys/signing.key")).unwrap();
    assert_eq!(key.verifier(), second);
    let srv = TestServer::start_with(dir, |_| {}, |d, o| Log::open_with(d, o, Some(Box::new(key))).unwrap());
    let addr = srv.addr;
    let r = call(addr, "POST", "/v1/admin/keys/rotate", r1, b"");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("the configured `signer` holds it"), "{}", r.text());
    let r = call_json(
        addr,
        "/v1/admin/keys/revoke",
        r1,
        serde_json::json!({ "key": second.to_vkey(), "as_of": 1, "reason": "x" }),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let dir = srv.stop();
    assert_eq!(stele_store::log::read_verifier(dir.path()).unwrap(), second);
    let reader = stele_store::LogReader::open(dir.path()).unwrap();
    assert_eq!(stele_store::keys::listed_statements(&reader).unwrap().len(), 2, "nothing was recorded");
}
