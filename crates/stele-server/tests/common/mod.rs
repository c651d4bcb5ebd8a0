//! What the server test binaries share: a server on 127.0.0.1:0 over a data directory,
//! a minimal blocking HTTP/1.1 client, and decoding helpers.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stele_server::tokens::{Grant, TokenFile};
use stele_server::{RunningServer, ServerConfig};
use stele_store::Log;
use stele_tlog::Hash;

/// A running server and the runtime it runs on.
pub(crate) struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The OTLP/gRPC listener's address, when configured.
    pub otlp_grpc_addr: Option<SocketAddr>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<RunningServer>,
}

impl TestServer {
    /// Starts a server over `dir` (checkpoints every 50 ms unless `edit` says otherwise).
    pub(crate) fn start(dir: tempfile::TempDir, edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_with(dir, edit, |dir, options| Log::open(dir, options).unwrap())
    }

    /// As [`TestServer::start`], with the log opened by `open` (a test's own backend).
    pub(crate) fn start_with(
        dir: tempfile::TempDir,
        edit: impl FnOnce(&mut ServerConfig),
        open: impl FnOnce(&Path, stele_store::LogOptions) -> Log,
    ) -> TestServer {
        let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.checkpoint_interval = Duration::from_millis(50);
        edit(&mut config);
        let log = open(dir.path(), config.log_options.clone());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = rt
            .block_on(stele_server::start(config, log, async {
                let _ = stopped.await;
            }))
            .unwrap();
        TestServer {
            dir,
            addr: server.local_addr(),
            otlp_grpc_addr: server.otlp_grpc_addr(),
            rt,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Starts a server over a new data directory for `origin`.
    pub(crate) fn fresh(origin: &str, edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        stele_store::log::init(dir.path(), origin).unwrap();
        TestServer::start(dir, edit)
    }

    /// The running server (for the addresses of its syslog listeners).
    pub(crate) fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("the server is running")
    }

    /// Shuts the server down cleanly and gives the data directory back.
    pub(crate) fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        let server = self.server.take().unwrap();
        self.rt.block_on(server.wait()).unwrap();
        self.dir
    }
}

/// An HTTP response.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub(crate) fn lines(&self) -> Vec<Value> {
        self.text().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))).collect()
    }
}

/// One request on its own connection (`Connection: close`); chunked bodies are decoded.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    request_on(&mut s, method, path, headers, body)
}

/// One request on an open stream (plain or TLS), which the server then closes.
pub(crate) fn request_on(
    s: &mut (impl Read + Write),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (e.g. 413) before reading the whole body and close.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify, after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("reading the response: {e}"),
    }
    parse_response(&raw)
}

/// `request` with a JSON content type.
pub(crate) fn request_json(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    request(addr, method, path, &[("Content-Type", "application/json")], body)
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.map(|l| l.split_once(':').unwrap()).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16).unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Resp { status, headers, body }
}

/// A base64 hash from JSON.
pub(crate) fn b64(v: &Value) -> Hash {
    Hash::from_base64(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("base64 of 32 bytes")
}

/// A JSON array of base64 hashes.
pub(crate) fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(b64).collect()
}

/// Opens a signed checkpoint note with the verifier key of the data directory `dir`.
pub(crate) fn open(dir: &Path, note: &str) -> stele_tlog::checkpoint::Checkpoint {
    let verifier = stele_store::log::read_verifier(dir).unwrap();
    stele_tlog::checkpoint::open_checkpoint(note.as_bytes(), &verifier).unwrap().checkpoint
}

/// `../shared/data`, or `None` (after saying so) when the peers folder is absent.
/// With `STELE_REQUIRE_PEERS=1` a missing folder is a failure.
pub(crate) fn shared_data() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if p.join("k8s-audit").is_dir() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("STELE_REQUIRE_PEERS=1 but {} is missing", p.display());
    }
    eprintln!("skipping: ../shared not found");
    None
}

/// Creates tokens (name, grants) in `dir`'s token file and returns their texts.
pub(crate) fn make_tokens(dir: &Path, specs: &[(&str, &[&str])]) -> Vec<String> {
    let mut file = TokenFile::load(dir).unwrap().unwrap_or_default();
    let out = specs
        .iter()
        .map(|(name, grants)| {
            let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
            file.create(name, &grants, stele_store::log::now_ns()).unwrap()
        })
        .collect();
    file.save(dir).unwrap();
    out
}
