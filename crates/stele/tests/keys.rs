//! Signing-key lifecycle end to end with the real binary: the out-of-process signer
//! (signing, refusing rollbacks and other origins, outage and recovery), the private
//! key never served or printed, rotation and revocation followed by `verify`,
//! `monitor` and `verify-bundle` from the first key, and forged or unannounced keys
//! rejected.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stele, stele_at};
use stele_tlog::checkpoint::{Checkpoint, open_checkpoint};
use stele_tlog::note::{NoteSigner, NoteVerifier};

const ORIGIN: &str = "keys.example/log";

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): status, headers and body as text.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn start(args: &[&std::ffi::OsStr], stderr: PathBuf) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_stele"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(stderr.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting stele");
        Proc { child, stderr }
    }

    fn output(&self) -> String {
        let out = std::fs::read_to_string(self.stderr.with_extension("out")).unwrap_or_default();
        format!("{out}{}", std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_signer(key: &Path, socket: &Path, logs: &Path) -> Proc {
    let _ = std::fs::remove_file(socket);
    let p = Proc::start(
        &[
            "signer".as_ref(),
            "serve".as_ref(),
            "--key".as_ref(),
            key.as_os_str(),
            "--socket".as_ref(),
            socket.as_os_str(),
        ],
        logs.to_path_buf(),
    );
    wait_for("the signer socket", || UnixStream::connect(socket).is_ok());
    p
}

fn start_server(dir: &Path, addr: SocketAddr, extra: &[&str], logs: &Path) -> Proc {
    let port = addr.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "serve".as_ref(),
        "--data".as_ref(),
        dir.as_os_str(),
        "--listen".as_ref(),
        port.as_ref(),
        "--checkpoint-interval".as_ref(),
        "0.1".as_ref(),
    ];
    args.extend(extra.iter().map(|a| -> &std::ffi::OsStr { a.as_ref() }));
    let p = Proc::start(&args, logs.to_path_buf());
    wait_for("the server", || TcpStream::connect(addr).is_ok());
    p
}

fn checkpoint(addr: SocketAddr, key: &NoteVerifier) -> Option<Checkpoint> {
    let (status, r) = http(addr, "GET", "/checkpoint", b"");
    (status == 200).then(|| open_checkpoint(body_of(&r).as_bytes(), key).expect("checkpoint verifies").checkpoint)
}

fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, r) = http(addr, "GET", "/metrics", b"");
    body_of(&r).lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn init(dir: &Path) -> NoteVerifier {
    let r = stele_at("init", dir, &["--origin", ORIGIN]);
    r.expect_code(0, "init");
    NoteVerifier::parse(r.stdout.trim()).expect("init prints the verifier key")
}

/// One request of the documented signer protocol (docs/keys.md), built by hand.
fn signer_request(socket: &Path, op: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    let mut s = UnixStream::connect(socket).unwrap();
    let mut frame = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(op);
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    (body[0], body[1..].to_vec())
}

#[test]
fn out_of_process_signer_signs_refuses_and_survives_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let vkey = init(&dir);
    // The key moves out of the data directory into the signer's own.
    let key = tmp.path().join("signer.key");
    std::fs::rename(dir.join("keys/signing.key"), &key).unwrap();
    let socket = tmp.path().join("signer.sock");
    let mut signer = start_signer(&key, &socket, &tmp.path().join("signer.log"));
    let addr = free_port();
    let spec = format!("unix:{}", socket.display());
    let server = start_server(&dir, addr, &["--signer", &spec], &tmp.path().join("server.log"));

    let (status, r) = http(addr, "POST", "/v1/events", br#"{"actor":"alice","action":"login"}"#);
    assert_eq!(status, 200, "{r}");
    wait_for("a checkpoint by the signer", || checkpoint(addr, &vkey).is_some_and(|c| c.tree_size >= 2));
    assert_eq!(metric(addr, "stele_signer_up"), Some(1.0));

    // The signer refuses a smaller tree size and another origin, over the raw protocol.
    let signed = checkpoint(addr, &vkey).unwrap();
    let smaller = Checkpoint { tree_size: signed.tree_size - 1, ..signed.clone() };
    let (status, why) = signer_request(&socket, 0x02, smaller.to_body().as_bytes());
    assert_eq!(status, 0x01, "{}", String::from_utf8_lossy(&why));
    assert!(String::from_utf8_lossy(&why).contains("smaller than"), "{}", String::from_utf8_lossy(&why));
    let other = Checkpoint { origin: "other.example/log".into(), tree_size: signed.tree_size + 5, ..signed.clone() };
    let (status, why) = signer_request(&socket, 0x02, other.to_body().as_bytes());
    assert_eq!(status, 0x01);
    assert!(String::from_utf8_lossy(&why).contains("signs only"));
    let (status, k) = signer_request(&socket, 0x01, b"");
    assert_eq!((status, String::from_utf8_lossy(&k).into_owned()), (0, vkey.to_vkey()));
    // The signer signs only checkpoints: rotating or revoking over the API is refused,
    // naming the offline way, and nothing is recorded.
    for (path, body) in [
        ("/v1/admin/keys/rotate", String::new()),
        ("/v1/admin/keys/revoke", format!(r#"{{"key":"{}","as_of":1,"reason":"x"}}"#, vkey.to_vkey())),
    ] {
        let (status, r) = http(addr, "POST", path, body.as_bytes());
        assert_eq!(status, 409, "{path}: {r}");
        assert!(body_of(&r).contains("stele key rotate --old-key"), "{path}: {r}");
    }
    assert!(!dir.join("keys/statements").exists() && !dir.join("keys/next.key").exists());

    // Kill the signer: ingestion goes on, checkpoints stop, metrics and stderr say so.
    signer.kill();
    for i in 0..5 {
        let (status, r) = http(addr, "POST", "/v1/events", format!(r#"{{"actor":"bob","n":{i}}}"#).as_bytes());
        assert_eq!(status, 200, "ingest during the outage: {r}");
    }
    wait_for("stele_signer_up 0", || metric(addr, "stele_signer_up") == Some(0.0));
    assert!(metric(addr, "stele_checkpoint_sign_failures_total").unwrap_or(0.0) >= 1.0);
    assert!(server.output().contains("checkpoint not signed"), "{}", server.output());
    assert_eq!(checkpoint(addr, &vkey).unwrap().tree_size, signed.tree_size, "no checkpoint without the signer");

    // Restart it: the next checkpoint covers the entries of the outage.
    let _signer = start_signer(&key, &socket, &tmp.path().join("signer2.log"));
    wait_for("a checkpoint after recovery", || {
        checkpoint(addr, &vkey).is_some_and(|c| c.tree_size == signed.tree_size + 5)
    });
    assert_eq!(metric(addr, "stele_signer_up"), Some(1.0));
    drop(server);
    stele_at("verify", &dir, &[]).expect_code(0, "verify after the outage");
}

#[test]
fn private_key_is_never_served_or_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let vkey = init(&dir);
    let private = std::fs::read_to_string(dir.join("keys/signing.key")).unwrap();
    let signer = NoteSigner::parse(&private).unwrap();
    assert_eq!(signer.verifier(), vkey);
    // The secret in every spelling a leak could take: the key string, its base64
    // field, and the 32-byte seed in hex and in base64 (with and without padding).
    let b64 = private.trim().splitn(5, '+').nth(4).unwrap().to_string();
    let raw = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&b64).unwrap()
    };
    let seed = &raw[1..];
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let seed_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(seed)
    };
    let needles = [
        private.trim().to_string(),
        b64.clone(),
        hex.clone(),
        hex.to_uppercase(),
        seed_b64.trim_end_matches('=').to_string(),
    ];
    let leaks = |what: &str, text: &str| {
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{what} contains the private key");
        }
    };

    let addr = free_port();
    let server = start_server(&dir, addr, &[], &tmp.path().join("server.log"));
    let (status, r) =
        http(addr, "POST", "/v1/events", br#"{"actor":"alice","action":"read","resource":"keys/signing.key"}"#);
    assert_eq!(status, 200, "{r}");
    leaks("POST /v1/events", &r);
    wait_for("a checkpoint", || checkpoint(addr, &vkey).is_some());
    let routes = [
        ("GET", "/checkpoint"),
        ("GET", "/key-statements"),
        ("GET", "/tile/0/000.p/2"),
        ("GET", "/tile/entries/000.p/2"),
        ("GET", "/v1/entries/0"),
        ("GET", "/v1/entries/1"),
        ("GET", "/v1/query?actor=alice"),
        ("GET", "/v1/proof/inclusion?index=1&tree_size=2"),
        ("GET", "/v1/proof/consistency?first=1&second=2"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/keys/signing.key"),
        ("GET", "/../keys/signing.key"),
        ("GET", "/tile/../../keys/signing.key"),
        ("POST", "/v1/logs"),
        ("POST", "/v1/k8s/audit"),
    ];
    for (method, path) in routes {
        let (_, r) = http(addr, method, path, b"{}");
        leaks(&format!("{method} {path}"), &r);
    }
    drop(server);
    let mut printed = std::fs::read_to_string(tmp.path().join("server.log")).unwrap();
    printed += &std::fs::read_to_string(tmp.path().join("server.out")).unwrap();
    for cmd in [&["checkpoint"][..], &["get", "1"], &["verify"], &["query", "--stream", "_stele/system"]] {
        let r = stele_at(cmd[0], &dir, &cmd[1..]);
        printed += &r.all();
    }
    // A key file others can read is refused, with the file and the chmod named.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("keys/signing.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = stele_at("import", &dir, &["-"]);
    assert_eq!(r.code, 2, "{r}");
    let path = dir.join("keys/signing.key");
    assert!(r.stderr.contains(&format!("chmod 600 {}", path.display())) && r.stderr.contains("mode 644"), "{r}");
    printed += &r.all();
    leaks("command output", &printed);
}

/// `stele key SUB --data DIR ARGS...`.
fn key_cmd(dir: &Path, args: &[&str]) -> common::Run {
    let mut all = vec!["key", args[0], "--data", dir.to_str().unwrap()];
    all.extend(&args[1..]);
    stele(&all)
}

fn import_one(dir: &Path, tmp: &Path, n: u32) {
    let f = tmp.join(format!("e{n}.json"));
    std::fs::write(&f, format!("{{\"actor\":\"u{n}\",\"action\":\"a\"}}\n")).unwrap();
    common::import(dir, &[], &[f]).expect_code(0, "import");
}

#[test]
fn rotation_and_revocation_are_followed_from_the_first_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("data");
    let first = init(&dir);
    let first_s = first.to_vkey();
    import_one(&dir, t, 1); // entries 0 (stream record), 1; checkpoint 2
    let r = key_cmd(&dir, &["rotate"]);
    assert_eq!(r.code, 0, "{r}");
    let second = NoteVerifier::parse(r.stdout.trim()).unwrap();
    assert_ne!(second, first);
    assert_eq!(std::fs::read_to_string(dir.join("keys/verifier.vkey")).unwrap().trim(), second.to_vkey());
    import_one(&dir, t, 2);
    stele_at("verify", &dir, &["--key", &first_s]).expect_code(0, "verify from the first key");

    // The newest checkpoint is signed by the new key only; the transition one by both.
    let newest = stele_at("checkpoint", &dir, &[]);
    assert!(open_checkpoint(newest.stdout.as_bytes(), &first).is_err());
    open_checkpoint(newest.stdout.as_bytes(), &second).expect("signed by the new key");

    // A monitor given the first key follows the published statements.
    let published = t.join("pub");
    stele(&["publish", "--data", dir.to_str().unwrap(), "--out", published.to_str().unwrap()])
        .expect_code(0, "publish");
    let state = t.join("monitor.state");
    let monitor = |key: &str, url: &Path, state: &Path| {
        stele(&["monitor", "--url", url.to_str().unwrap(), "--key", key, "--state", state.to_str().unwrap()])
    };
    monitor(&first_s, &published, &state).expect_code(0, "monitor follows the rotation");
    // Without the statements the new key is unannounced: exit 1 with the key named.
    let bare = t.join("bare");
    common::copy_dir(&published, &bare);
    std::fs::remove_file(bare.join("key-statements")).unwrap();
    let r = monitor(&first_s, &bare, &t.join("bare.state"));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no key statement announced"), "{r}");
    // A forged announcement (signed by the key it announces, not by the old key).
    let forged_key = NoteSigner::from_seed(ORIGIN, &[42; 32]).unwrap();
    let forged = format!("stele key rotation v1\n{ORIGIN}\n{}\n3\n", forged_key.verifier().to_vkey());
    let note = forged_key.sign(&forged).unwrap();
    let forged_dir = t.join("forged");
    common::copy_dir(&published, &forged_dir);
    std::fs::write(forged_dir.join("key-statements"), stele_tlog::keychain::statement_list_line(2, note.as_bytes()))
        .unwrap();
    let r = monitor(&first_s, &forged_dir, &t.join("forged.state"));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("not signed by the current key"), "{r}");

    // verify-bundle: from the first key through the statements.
    let bundle = t.join("b.jsonl");
    stele_at("export", &dir, &["--actor", "u2", "--out", bundle.to_str().unwrap()]).expect_code(0, "export");
    let statements = published.join("key-statements");
    let vb = |key: &str, statements: Option<&Path>| {
        let mut args = vec!["verify-bundle", bundle.to_str().unwrap(), "--key", key];
        if let Some(s) = statements {
            args.extend(["--key-statements", s.to_str().unwrap()]);
        }
        stele(&args)
    };
    vb(&first_s, Some(&statements)).expect_code(0, "verify-bundle follows the chain");
    // The bundle carries the statements itself (line 2): the first key is enough.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert!(lines[1].starts_with("{\"key_statements\":"), "line 2 is not the key statements: {}", lines[1]);
    let r = vb(&first_s, None);
    assert_eq!(r.code, 0, "verify-bundle from the first key and the bundle's own statements: {r}");
    assert!(r.stderr.contains("followed 1 key statement(s) (line 2)"), "{r}");
    vb(&second.to_vkey(), None).expect_code(0, "the current key checks the bundle directly");
    let r = vb(&first_s, Some(&forged_dir.join("key-statements")));
    assert_eq!(r.code, 1, "{r}");
    // Rewritten bundles (the trailer's digest recomputed, as anyone can): without the
    // statements the first key alone does not sign the checkpoint; with a forged
    // announcement in their place neither.
    let rewrite = |line2: Option<String>, name: &str| -> PathBuf {
        let mut body = String::from(lines[0]);
        if let Some(l) = line2 {
            body.push_str(&l);
        }
        let entries: Vec<&str> = lines[2..lines.len() - 1].to_vec();
        entries.iter().for_each(|l| body.push_str(l));
        let mut digest = stele_tlog::bundle::BundleDigest::new();
        digest.update(body.as_bytes());
        body.push_str(&stele_tlog::bundle::trailer_line(entries.len() as u64, &digest.finish()));
        let path = t.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let bare_bundle = rewrite(None, "bare.jsonl");
    let forged_line = format!(
        "{}\n",
        serde_json::json!({ "key_statements": stele_tlog::keychain::statement_list_line(2, note.as_bytes()) })
    );
    let forged_bundle = rewrite(Some(forged_line), "forged.jsonl");
    stele(&["verify-bundle", bare_bundle.to_str().unwrap(), "--key", &second.to_vkey()])
        .expect_code(0, "the rewritten bundle is sound for the key that signed it");
    for (path, what) in [(&bare_bundle, "without statements"), (&forged_bundle, "with a forged statement")] {
        let r = stele(&["verify-bundle", path.to_str().unwrap(), "--key", &first_s]);
        assert_eq!(r.code, 1, "{what}: {r}");
    }

    // Revocation: the first key's signatures count only up to tree size 1. Its
    // checkpoint of size 2 (before the rotation) is then rejected.
    let r =
        key_cmd(&dir, &["revoke", "--key", &first_s, "--as-of", "1", "--reason", "key file found on a backup tape"]);
    assert_eq!(r.code, 0, "{r}");
    let r = stele_at("verify", &dir, &["--key", &first_s]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.all().contains("revoked as of 1: key file found on a backup tape"), "{r}");
    // The current key cannot revoke itself.
    let r = key_cmd(&dir, &["revoke", "--key", &second.to_vkey(), "--as-of", "1", "--reason", "x"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("rotate to a new key first"), "{r}");
}

#[test]
fn a_key_swapped_without_announcement_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("data");
    let first = init(&dir);
    import_one(&dir, t, 1);
    // An attacker with write access replaces the key files but cannot announce the
    // new key (that needs the old key's signature).
    let rogue = NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap();
    std::fs::remove_file(dir.join("keys/signing.key")).unwrap();
    stele_store::signer_file::write_private_key(&dir.join("keys/signing.key"), &rogue).unwrap();
    std::fs::write(dir.join("keys/verifier.vkey"), rogue.verifier().to_vkey()).unwrap();
    import_one(&dir, t, 2);
    let r = stele_at("verify", &dir, &["--key", &first.to_vkey()]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.all().contains("no key statement announced"), "{r}");
}

/// Stops a server with SIGINT (a clean shutdown: the final checkpoint is signed).
fn interrupt(mut p: Proc) {
    let pid = p.child.id();
    // The shell's built-in `kill`: no procps needed on a minimal system.
    let sent = Command::new("sh").args(["-c", &format!("kill -INT {pid}")]).status().is_ok_and(|s| s.success());
    assert!(sent, "kill -INT {pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not stop: {}", p.output());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_token(addr: SocketAddr, path: &str, token: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body_of(&text)).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

#[test]
fn a_key_rotated_over_the_api_is_followed_by_verify_and_verify_bundle_from_the_first_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("data");
    let first = init(&dir);
    let first_s = first.to_vkey();
    let token = |name: &str, role: &str| {
        let r = stele(&["token", "create", "--data", dir.to_str().unwrap(), "--name", name, "--role", role]);
        r.expect_code(0, "token create");
        r.stdout.trim().to_string()
    };
    let (adm, rot, w) = (token("adm", "admin"), token("rot", "key-rotate"), token("w", "append"));
    let addr = free_port();
    let server = start_server(&dir, addr, &[], &t.join("serve.log"));
    let post = |n: u32| {
        let body = format!("{{\"actor\":\"u{n}\",\"action\":\"a\"}}\n");
        let (status, v) = with_token(addr, "/v1/events?stream=app", &w, body.as_bytes());
        assert_eq!(status, 200, "{v}");
        v["entries"][0]["index"].as_u64().unwrap()
    };
    post(1);
    let (status, v) = with_token(addr, "/v1/admin/keys/rotate", &adm, b"");
    assert_eq!((status, v["missing_role"].as_str()), (403, Some("key-rotate")), "{v}");
    let (status, v) = with_token(addr, "/v1/admin/keys/rotate", &rot, b"");
    assert_eq!(status, 200, "{v}");
    let second = NoteVerifier::parse(v["new_key"].as_str().unwrap()).unwrap();
    let announced = v["index"].as_u64().unwrap();
    // Events go on being accepted, under checkpoints of the new key.
    let last = post(2);
    wait_for("a checkpoint of the new key", || {
        let (status, r) = http(addr, "GET", "/checkpoint", b"");
        status == 200 && open_checkpoint(body_of(&r).as_bytes(), &second).is_ok_and(|c| c.checkpoint.tree_size > last)
    });
    interrupt(server);

    stele_at("verify", &dir, &["--key", &first_s]).expect_code(0, "verify from the first key");
    let bundle = t.join("b.jsonl");
    stele_at("export", &dir, &["--actor", "u2", "--out", bundle.to_str().unwrap()]).expect_code(0, "export");
    let r = stele(&["verify-bundle", bundle.to_str().unwrap(), "--key", &first_s]);
    assert_eq!(r.code, 0, "verify-bundle from the first key: {r}");
    assert!(r.stderr.contains("followed 1 key statement(s)"), "{r}");
    let statements = std::fs::read_to_string(dir.join("keys/statements")).unwrap();
    assert!(statements.starts_with(&format!("{announced} ")), "{statements}");

    // Restarted, the server signs with the new key.
    let server = start_server(&dir, addr, &[], &t.join("serve2.log"));
    let again = post(3);
    wait_for("a checkpoint after the restart", || {
        checkpoint_or_none(addr, &second).is_some_and(|c| c.tree_size > again)
    });
    assert!(checkpoint_or_none(addr, &first).is_none(), "the old key signs no more");
    interrupt(server);
    stele_at("verify", &dir, &["--key", &first_s]).expect_code(0, "verify after the restart");
}

fn checkpoint_or_none(addr: SocketAddr, key: &NoteVerifier) -> Option<Checkpoint> {
    let (status, r) = http(addr, "GET", "/checkpoint", b"");
    (status == 200).then(|| open_checkpoint(body_of(&r).as_bytes(), key).ok().map(|c| c.checkpoint)).flatten()
}
