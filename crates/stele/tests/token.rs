//! `stele token create|list|revoke` on a data directory no server holds: the token is
//! printed once and stored only as its SHA-256, the lifecycle is recorded in
//! `_stele/auth`, and bad input is refused with exit code 2.

mod common;

use common::{init, stele_at};

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn tokens_are_created_listed_revoked_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir);
    let r = stele_cmd(dir, &["create", "--name", "ci", "--role", "append:prod-*", "--role", "read"]);
    r.expect_code(0, "create");
    let token = r.stdout.trim().to_string();
    assert!(token.starts_with("stele_") && token.len() == 49, "{token:?}");
    assert!(r.stderr.contains("shown once"), "{}", r.stderr);
    let digest = stele_server::tokens::token_digest(&token);

    let list = stele_cmd(dir, &["list"]);
    list.expect_code(0, "list");
    let v: serde_json::Value = serde_json::from_str(list.stdout.trim()).unwrap();
    assert_eq!(v["name"], "ci");
    assert_eq!(v["fingerprint"], &digest[..16]);
    assert_eq!(v["grants"], serde_json::json!(["append:prod-*", "read:*"]));
    assert!(v["revoked"].is_null());
    assert!(!list.stdout.contains(&digest), "list shows the whole digest");

    // Refusals: same active name, unknown role, bad scope, unknown token to revoke.
    stele_cmd(dir, &["create", "--name", "ci", "--role", "read"]).expect_code(2, "duplicate name");
    stele_cmd(dir, &["create", "--name", "x", "--role", "write"]).expect_code(2, "unknown role");
    stele_cmd(dir, &["create", "--name", "x", "--role", "read:a*b"]).expect_code(2, "bad scope");
    stele_cmd(dir, &["create", "--name", "bad name", "--role", "read"]).expect_code(2, "bad name");
    stele_cmd(dir, &["revoke", "nobody"]).expect_code(2, "unknown token");

    stele_cmd(dir, &["revoke", "ci"]).expect_code(0, "revoke");
    let list = stele_cmd(dir, &["list"]);
    let v: serde_json::Value = serde_json::from_str(list.stdout.trim()).unwrap();
    assert!(v["revoked"].is_string(), "{v}");

    // The lifecycle is in the log, and verifies.
    let q = stele_at("query", dir, &["--stream", "_stele/auth"]);
    q.expect_code(0, "query");
    let recs: Vec<serde_json::Value> = q.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = recs.iter().map(|r| r["event"]["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["token_created", "token_revoked"], "{}", q.stdout);
    assert_eq!(recs[0]["event"]["fingerprint"], &digest[..16]);
    stele_at("verify", dir, &[]).expect_code(0, "verify");

    // The token itself is nowhere in the data directory.
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "token in {}", f.display());
    }
}

/// `stele token ARGS... --data DIR` (the data flag belongs to the subcommand).
fn stele_cmd(dir: &std::path::Path, args: &[&str]) -> common::Run {
    let mut all: Vec<&std::ffi::OsStr> = vec!["token".as_ref(), args[0].as_ref(), "--data".as_ref(), dir.as_os_str()];
    all.extend(args[1..].iter().map(|a| -> &std::ffi::OsStr { a.as_ref() }));
    common::stele_os(&all)
}

#[test]
fn token_names_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir);
    // At the bound (64 characters) accepted, one over refused with the bound named.
    let long = "n".repeat(64);
    stele_cmd(dir, &["create", "--name", &long, "--role", "read"]).expect_code(0, "a 64-character name");
    let r = stele_cmd(dir, &["create", "--name", &format!("{long}n"), "--role", "read"]);
    r.expect_code(2, "a 65-character name");
    assert!(r.stderr.contains("1 to 64 characters"), "the refusal does not name the bound: {}", r.stderr);
}
