//! Erasure while `stele serve` runs, end to end through the binary: `stele erase` is
//! refused while the server holds the data directory, the API erases with a second
//! principal's approval, and after the server stops `stele get`, `query`, `export`,
//! `erase --list` and `verify` see the subject's fields erased, the records naming
//! both principals, and no byte of the data directory naming the subject.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, contains, shared_data, stele_os};
use serde_json::Value;

/// The values sealed besides the subject (`/user/username`): their source addresses
/// and the sample's copies of names and addresses.
const SEALED: &[&str] = &["/sourceIPs", "/impersonatedUser", "/p_any_usernames", "/p_any_ip_addresses"];

struct Setup {
    tmp: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("master.key");
        let config = tmp.path().join("stele.toml");
        let fields = SEALED.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        std::fs::write(
            &config,
            format!(
                "compression_level = 0\n[auth]\nrequire_approval = [\"erase\"]\n[erasure]\nmaster_key = {key:?}\n\
                 [[erasure.rule]]\nstream = \"k8s\"\nsubject = \"/user/username\"\nfields = [{fields}]\n"
            ),
        )
        .unwrap();
        let s = Setup { data: tmp.path().join("data"), tmp, config };
        s.run(&["erase", "--init-master-key"]).expect_code(0, "init master key");
        s.at("init", &["--origin", "erasure-api.example/log"]).expect_code(0, "init");
        s
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), self.config.as_os_str()];
        a.extend(args.iter().map(|s| -> &std::ffi::OsStr { s.as_ref() }));
        stele_os(&a)
    }

    /// `stele CMD --data DATA EXTRA...`.
    fn at(&self, cmd: &str, extra: &[&str]) -> Run {
        let mut a = vec![cmd, "--data", self.data.to_str().unwrap()];
        a.extend_from_slice(extra);
        self.run(&a)
    }

    fn token(&self, name: &str, role: &str) -> String {
        let r = self.run(&["token", "create", "--data", self.data.to_str().unwrap(), "--name", name, "--role", role]);
        r.expect_code(0, "token create");
        r.stdout.trim().to_string()
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Server(Child);

impl Server {
    /// Stops the server as Ctrl-C does (SIGINT, the signal `stele serve` handles) and
    /// waits for a clean exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        // The shell's built-in `kill`: no procps needed on a minimal system.
        let ok = Command::new("sh").args(["-c", &format!("kill -INT {pid}")]).status().is_ok_and(|s| s.success());
        assert!(ok, "sending SIGINT");
        let status = self.0.wait().unwrap();
        assert!(status.success(), "stele serve exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[test]
fn an_approved_erasure_over_the_api_reads_as_erased_from_the_cli() {
    let Some(data) = shared_data() else { return };
    let file = data.join("k8s-audit/panther-analysis_k8s-audit-native.jsonl");
    let raw = std::fs::read(&file).unwrap();
    let lines: Vec<&[u8]> = raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let events: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    // A subject named only in sealed values, so that no stored byte may name them.
    let mut sealed: Vec<&str> = SEALED.to_vec();
    sealed.push("/user/username");
    let confined = |name: &str| {
        events.iter().all(|e| {
            let mut v = e.clone();
            for p in &sealed {
                if let Some(x) = v.pointer_mut(p) {
                    *x = Value::Null;
                }
            }
            !v.to_string().contains(name)
        })
    };
    let by = |name: &str| {
        events.iter().filter(|e| e.pointer("/user/username").and_then(Value::as_str) == Some(name)).count()
    };
    let subject = ["admin@example.com", "developer@example.com", "attacker@example.com", "kubernetes-admin"]
        .into_iter()
        .find(|n| by(n) > 0 && confined(n))
        .expect("a subject of the sample confined to sealed values");
    let n = by(subject);

    let s = Setup::new();
    let ingest = s.token("ingest", "append:k8s");
    let e1 = s.token("legal", "erase");
    let e2 = s.token("dpo", "erase");
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let log = std::fs::File::create(s.tmp.path().join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["--config", s.config.to_str().unwrap(), "serve", "--data", s.data.to_str().unwrap()])
        .args(["--listen", &addr.to_string(), "--checkpoint-interval", "0.1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server(child);
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, v) = http(addr, "POST", "/v1/events?stream=k8s", &ingest, &lines.join(&b"\n"[..]));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["entries"].as_array().unwrap().len(), lines.len());

    // The CLI cannot erase while the server holds the data directory.
    let r = s.at("erase", &["--subject", subject]);
    r.expect_code(2, "stele erase while serving");
    assert!(r.stderr.contains("stop the server"), "{}", r.stderr);

    let body = serde_json::json!({ "subject": subject, "reason": "GDPR request 42" }).to_string();
    let (status, v) = http(addr, "POST", "/v1/admin/erasures", &ingest, body.as_bytes());
    assert_eq!((status, v["missing_role"].as_str()), (403, Some("erase")), "{v}");
    let (status, v) = http(addr, "POST", "/v1/admin/erasures", &e1, body.as_bytes());
    assert_eq!(status, 202, "{v}");
    let id = v["approval"].as_str().unwrap().to_string();
    let approve = format!("/v1/admin/approvals/{id}/approve");
    let (status, v) = http(addr, "POST", &approve, &e1, b"");
    assert_eq!(status, 403, "{v}");
    let (status, v) = http(addr, "POST", &approve, &e2, b"");
    assert_eq!((status, v["state"].as_str()), (200, Some("erased")), "{v}");
    server.stop();

    // Read back as an operator would, with the binary.
    let hits: Vec<Value> = {
        let r = s.at("query", &["--stream", "k8s", "--limit", "100000"]);
        r.expect_code(0, "query");
        r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    assert_eq!(hits.len(), lines.len());
    let mut erased = 0;
    for h in &hits {
        let i = h["index"].as_u64().unwrap().to_string();
        let got = s.at("get", &[&i]);
        got.expect_code(0, "get");
        let v: Value = serde_json::from_str(&got.stdout).unwrap();
        if v["event"]["user"]["username"] == "stele:erased" {
            assert_eq!(v["sealed"], "erased", "entry {i}");
            erased += 1;
        }
        assert!(!got.stdout.contains(subject), "entry {i} shows the subject");
    }
    assert_eq!(erased, n, "every event of the subject reads as erased, and only theirs");
    let r = s.at("query", &["--actor", subject]);
    assert!(r.stdout.trim().is_empty(), "the subject is still found: {}", r.stdout);
    let bundle = s.tmp.path().join("k8s.bundle");
    s.at("export", &["--stream", "k8s", "--out", bundle.to_str().unwrap()]).expect_code(0, "export");
    let vkey = s.data.join("keys/verifier.vkey");
    s.run(&["verify-bundle", bundle.to_str().unwrap(), "--key", vkey.to_str().unwrap()]).expect_code(0, "bundle");
    assert!(!contains(&std::fs::read(&bundle).unwrap(), subject.as_bytes()), "the bundle names the subject");
    let listed = s.at("erase", &["--list"]);
    let done: Value = serde_json::from_str(listed.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (done["state"].as_str(), done["requested_by"].as_str(), done["approved_by"].as_str()),
        (Some("done"), Some("legal"), Some("dpo")),
        "{done}"
    );
    // (`verify --index` is not used: the server's `server_start`/`server_stop` records
    // are indexed with an action their format-3 payload does not re-normalize to.)
    s.at("verify", &[]).expect_code(0, "verify");
    // Payloads are stored uncompressed: a copy of the name anywhere would be found.
    for (path, bytes) in files(&s.data) {
        assert!(!contains(&bytes, subject.as_bytes()), "{} names the subject", path.display());
    }
}
