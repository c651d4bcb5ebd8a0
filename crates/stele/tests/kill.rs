//! Crash harness: SIGKILLs the real `stele` process in the middle of writes and checks
//! what the directory holds afterwards.
//!
//! `serve_killed_mid_write`: round after round on ONE data directory (so recovery runs
//! on a directory that has been killed many times), `stele serve` is started on a free
//! 127.0.0.1 port with `--checkpoint-interval 0.05` and a syslog TCP listener; 1–3
//! syslog senders stream octet-counted RFC 5424 messages (bursts split mid-frame) and
//! remember every message; 4–8 writer threads POST single
//! events and small batches (a JSON object, arrays, NDJSON, whitespace-separated
//! objects; default stream, `?stream=` and `X-Stele-Stream`), every event carrying a
//! unique id, and remember every (index, exact bytes) a 200 acknowledged; a poller
//! fetches `/checkpoint`, verifies it with the directory's verifier key and remembers
//! the largest tree size. After a random delay (3–300 ms) the server is SIGKILLed.
//! Offline: `stele verify` exits 0; every acknowledged (index, bytes) is present byte
//! for byte; every entry of the round is an event some writer sent, whole and at most
//! once (acknowledged or not; system records are stream registrations); every stored
//! syslog message is one a sender sent, whole (never a partial frame), at most once; indexes are
//! dense; the newest checkpoint verifies, covers at least every tree size seen signed
//! before the kill and never goes back. The next round's server must start on the
//! directory, and its recovery must find the same tree size as the read-only open.
//!
//! `import_killed_mid_write`: `stele import` of a ~20 MB JSON-lines file is SIGKILLed at
//! a random moment (5 rounds, each on a fresh directory); `stele verify` must exit 0,
//! the log must hold a prefix of the file's events in order, byte for byte; then a
//! second import of the same file must succeed and append the whole file after it.
//!
//! Knobs (environment):
//! - `STELE_KILL_ROUNDS` — serve rounds (default 100: about a minute in a debug build).
//!   `STELE_KILL_ROUNDS=10000 cargo test -p stele --test kill serve -- --nocapture`
//!   runs 10,000 rounds (about two hours on two busy cores; 200 rounds took 100–200 s).
//! - `STELE_KILL_ROUNDS_PER_DIR` (default 100) — rounds on one data directory before
//!   the next round starts a fresh one (the old one is recovered and verified first).
//!   Every round verifies the whole log, so this keeps a round under ~2 s.
//! - `STELE_KILL_SEED` — seed of the first round (each round prints its seed; round
//!   r+1's seed is derived from round r's). Alone it replays exactly that one round on a
//!   fresh directory; with `STELE_KILL_ROUNDS=N` it replays the run from there. The
//!   seed fixes every choice (writers, event shapes, batch sizes, streams, kill delay),
//!   not the thread scheduling, so a replay hits the same moment only approximately.
//! - `STELE_KILL_IMPORT_ROUNDS` (default 5) and `STELE_KILL_IMPORT_SEED` likewise for
//!   the import test.
//! - `STELE_KILL_STRICT_VERIFY=0` — do not fail when `stele verify` exits non-zero on a
//!   killed, not yet recovered directory (see `check_verify`); by default it must pass:
//!   bytes an interrupted commit leaves after the end of the log are reported as notes,
//!   not damage. With 0 such a round is counted and listed in the summary, and verify must pass after the next recovery
//!   (checked by the next round, and by `recover_and_verify` at the end). Known: when
//!   the kill falls between the writes of one commit (segment chunk written, leaves or
//!   locators not yet), `stele verify` reports "unexpected bytes after the last chunk /
//!   after the end of the log" or "segment file that no entry uses" and exits 1 until
//!   a writer (`serve`, `import`) has opened the directory once; about one round in
//!   200 hits that window.
//!
//! On failure the data directory is kept and its path printed.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stele_store::LogReader;
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::note::NoteVerifier;

const STELE: &str = env!("CARGO_BIN_EXE_stele");
const ORIGIN: &str = "kill.example/log";
const SYSTEM_STREAM: &str = "_stele/system";
const SYSLOG_STREAM: &str = "kill-syslog";
/// Format code of syslog messages.
const FORMAT_SYSLOG: u8 = 4;
/// Format code of stele's own records.
const FORMAT_STELE_RECORD: u8 = 3;
const HEADER_LEN: u64 = 32;
const LEAF_LEN: u64 = 68;
const LOCATOR_LEN: u64 = 12;

/// The two tests share two cores: never run them at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = if let Some(hex) = v.strip_prefix("0x") { u64::from_str_radix(hex, 16) } else { v.parse() };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    splitmix(t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small seeded PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0.wrapping_sub(0x9E37_79B9_7F4A_7C15))
    }
    /// Uniform in `lo..hi` (`lo` when empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo) }
    }
    /// True with probability `p` percent.
    fn pct(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

/// 64-bit FNV-1a, to remember old payloads compactly.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

// ---------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (keep-alive, Content-Length or chunked bodies).

struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl Http {
    fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Http> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Http { stream, buf: Vec::new() })
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        self.read_response()
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked, mut close) = (None::<usize>, false, false);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = Some(v.parse().map_err(|_| io_err("bad content-length"))?),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
        self.buf.drain(..head_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io_err(format!("bad chunk size {size_text:?}")))?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            let empty = p == 0;
                            self.buf.drain(..p + 2);
                            if empty {
                                break;
                            }
                        } else {
                            self.fill()?;
                        }
                    }
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
            body
        } else if let Some(n) = length {
            while self.buf.len() < n {
                self.fill()?;
            }
            self.buf.drain(..n).collect()
        } else {
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            close = true;
            std::mem::take(&mut self.buf)
        };
        Ok(Response { status, body, close })
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    Http::connect(addr, Duration::from_millis(500))?.request("GET", path, &[("Connection", "close")], b"")
}

// ---------------------------------------------------------------------------------
// Processes.

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_string()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    /// The syslog TCP listener.
    syslog: SocketAddr,
    stderr: PathBuf,
}

/// Starts `stele serve` and waits for `/healthz`; returns the server, the tree size it
/// reported, and the time from spawn to a healthy answer.
fn start_server(dir: &Path, logs: &Path, round: u64) -> Result<(Server, u64, Duration), String> {
    let mut last_err = String::new();
    for attempt in 0..5 {
        let addr = free_port();
        let syslog = free_port();
        let stderr = logs.join(format!("serve-{round}-{attempt}.stderr"));
        let started = Instant::now();
        let child = Command::new(STELE)
            .arg("serve")
            .arg("--data")
            .arg(dir)
            .args(["--origin", ORIGIN, "--listen", &addr.to_string(), "--checkpoint-interval", "0.05"])
            .args(["--syslog-tcp", &syslog.to_string(), "--syslog-stream", SYSLOG_STREAM])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("spawning stele serve: {e}"))?;
        let mut server = Server { child, addr, syslog, stderr };
        loop {
            if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
                let err = tail(&server.stderr, 4000);
                if err.contains("ddress already in use") {
                    last_err = err;
                    break; // another process took the port: try another one
                }
                return Err(format!("stele serve exited ({status}) before answering /healthz:\n{err}"));
            }
            if let Ok(r) = get(addr, "/healthz")
                && r.status == 200
            {
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .map_err(|e| format!("/healthz body {:?}: {e}", String::from_utf8_lossy(&r.body)))?;
                let size = v["tree_size"].as_u64().ok_or("/healthz without tree_size")?;
                return Ok((server, size, started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(format!("stele serve did not answer /healthz in 120 s:\n{}", tail(&server.stderr, 4000)));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    Err(format!("could not find a free port: {last_err}"))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn stele(args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(STELE).args(args).stdin(Stdio::null()).output().expect("running stele");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Problems `stele verify` reports that are bytes past the end of the intact log: the
/// torn tail of a commit (or checkpoint record) that the kill interrupted, which the
/// next open of the writer truncates.
fn is_tail_problem(line: &str) -> bool {
    line.contains("unexpected bytes after the end of the log")
        || line.contains("unexpected bytes after the last chunk")
        || line.contains("segment file that no entry uses")
}

/// Outcome of `stele verify` on a killed directory.
enum Verified {
    Ok,
    /// Exit 1, every problem a torn tail past the intact log.
    TornTailOnly(Vec<String>),
}

fn check_verify(dir: &Path, strict: bool) -> Result<Verified, String> {
    let run = stele(&["verify".as_ref(), "--data".as_ref(), dir.as_os_str()]);
    if run.code == Some(0) {
        return Ok(Verified::Ok);
    }
    let problems: Vec<String> =
        run.stderr.lines().filter_map(|l| l.strip_prefix("FAIL ")).map(str::to_string).collect();
    if !strict && run.code == Some(1) && !problems.is_empty() && problems.iter().all(|p| is_tail_problem(p)) {
        return Ok(Verified::TornTailOnly(problems));
    }
    Err(format!("stele verify exited {:?}\n--- stdout\n{}\n--- stderr\n{}", run.code, run.stdout, run.stderr))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Entries whose leaf, locator and level-0 hash all reached the files (before recovery
/// cuts anything).
fn raw_entry_count(dir: &Path) -> u64 {
    let leaves = file_len(&dir.join("leaves.dat")).saturating_sub(HEADER_LEN) / LEAF_LEN;
    let locators = file_len(&dir.join("locators.dat")).saturating_sub(HEADER_LEN) / LOCATOR_LEN;
    let hashes = file_len(&dir.join("hashes/level-00.dat")).saturating_sub(HEADER_LEN) / 32;
    leaves.min(locators).min(hashes)
}

/// Whether any file of the log is longer than the intact log needs (torn tail).
fn raw_tail_bytes(dir: &Path, size: u64) -> bool {
    file_len(&dir.join("leaves.dat")) > HEADER_LEN + size * LEAF_LEN
        || file_len(&dir.join("locators.dat")) > HEADER_LEN + size * LOCATOR_LEN
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------
// Events.

const WORDS: &[&str] = &["alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy", "svc-backup", "root"];
const ACTIONS: &[&str] = &["create", "delete", "update", "read", "login", "logout", "grant", "revoke"];
const TEXTS: &[&str] = &[
    "plain text",
    "caf\u{e9} na\u{ef}ve \u{e9}t\u{e9}",
    "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}",
    "emoji \u{1F600}\u{1F510}",
    "escaped \\\"quote\\\" and back\\\\slash",
    "unicode escape \\u00e9\\u65e5\\ud83d\\ude00",
    "tab\\tnew\\nline\\r",
    "braces { } [ ] , : inside a string",
    "",
];

/// One event: a JSON object with a unique id, fields in a random order and random
/// spacing (stored verbatim; line breaks only when `multiline`), sometimes a large pad.
fn make_event(rng: &mut Rng, id: &str, multiline: bool) -> Vec<u8> {
    let mut fields: Vec<(String, String)> = vec![
        ("id".into(), format!("\"{id}\"")),
        ("actor".into(), format!("\"{}\"", rng.pick(WORDS))),
        ("action".into(), format!("\"{}\"", rng.pick(ACTIONS))),
        ("resource".into(), format!("\"db/t{}/row{}\"", rng.range(0, 50), rng.range(0, 100_000))),
        ("outcome".into(), if rng.pct(80) { "\"success\"".into() } else { "\"failure\"".into() }),
    ];
    if rng.pct(60) {
        fields.push((
            "time".into(),
            format!(
                "\"2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"",
                rng.range(1, 13),
                rng.range(1, 29),
                rng.range(0, 24),
                rng.range(0, 60),
                rng.range(0, 60),
                rng.range(0, 1000)
            ),
        ));
    }
    if rng.pct(50) {
        fields.push(("detail".into(), format!("\"{}\"", rng.pick(TEXTS))));
    }
    if rng.pct(30) {
        fields.push((
            "ctx".into(),
            format!(
                "{{\"ip\":\"10.{}.{}.{}\", \"tags\" : [\"a\", 1, 2.5e3, true, null, {{}}], \"n\":-{}}}",
                rng.range(0, 256),
                rng.range(0, 256),
                rng.range(0, 256),
                rng.range(0, 1 << 40)
            ),
        ));
    }
    let pad_len = match rng.range(0, 1000) {
        0..800 => rng.range(0, 64),
        800..950 => rng.range(64, 4096),
        950..998 => rng.range(4096, 32_768),
        // Larger than a chunk's target size (256 KiB) on its own.
        _ => rng.range(65_536, 300_000),
    } as usize;
    if pad_len > 0 {
        let mut pad = String::with_capacity(pad_len + 2);
        pad.push('"');
        if rng.pct(50) {
            let c = *rng.pick(&['x', 'y', '0', ' ']);
            pad.extend(std::iter::repeat_n(c, pad_len));
        } else {
            const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let mut x = rng.next_u64();
            for _ in 0..pad_len {
                x = splitmix(x);
                pad.push(ALNUM[(x % ALNUM.len() as u64) as usize] as char);
            }
        }
        pad.push('"');
        fields.push(("pad".into(), pad));
    }
    // Shuffle (Fisher–Yates).
    for i in (1..fields.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        fields.swap(i, j);
    }
    let spaced = rng.pct(30);
    let mut s = String::from(if spaced { "{ " } else { "{" });
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push_str(match (spaced, multiline) {
                (false, _) => ",",
                (true, true) => ",\n  ",
                (true, false) => " ,  ",
            });
        }
        s.push_str(&format!("\"{k}\"{}{v}", if spaced { " : " } else { ":" }));
    }
    s.push_str(if spaced { " }" } else { "}" });
    s.into_bytes()
}

/// A request body holding `events`, in a random framing; returns the body and its
/// content type (None: no Content-Type header).
fn frame(rng: &mut Rng, events: &[Vec<u8>]) -> (Vec<u8>, Option<&'static str>) {
    const WS: [&str; 6] = ["", " ", "\n", "\r\n", "\t ", "  \n  "];
    let ws = |rng: &mut Rng| -> &'static str { WS[rng.range(0, WS.len() as u64) as usize] };
    let mut body = Vec::new();
    let shape = if events.len() == 1 { rng.range(0, 4) } else { rng.range(1, 4) };
    let ctype = match shape {
        0 => {
            body.extend_from_slice(ws(rng).as_bytes());
            body.extend_from_slice(&events[0]);
            body.extend_from_slice(ws(rng).as_bytes());
            *rng.pick(&[Some("application/json"), None, Some("application/vnd.kill+json")])
        }
        1 => {
            body.extend_from_slice(ws(rng).as_bytes());
            body.push(b'[');
            for (i, e) in events.iter().enumerate() {
                body.extend_from_slice(ws(rng).as_bytes());
                if i > 0 {
                    body.push(b',');
                    body.extend_from_slice(ws(rng).as_bytes());
                }
                body.extend_from_slice(e);
            }
            body.extend_from_slice(ws(rng).as_bytes());
            body.push(b']');
            body.extend_from_slice(ws(rng).as_bytes());
            *rng.pick(&[Some("application/json"), None, Some("application/json; charset=utf-8")])
        }
        2 => {
            let nl: &[u8] = if rng.pct(20) { b"\r\n" } else { b"\n" };
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    body.extend_from_slice(nl);
                }
                body.extend_from_slice(e);
            }
            if rng.pct(70) {
                body.extend_from_slice(nl);
            }
            *rng.pick(&[Some("application/x-ndjson"), Some("application/jsonl"), Some("application/x-jsonlines")])
        }
        _ => {
            for e in events {
                body.extend_from_slice(rng.pick(&[" ", "  ", "\n\n", "\t"]).as_bytes());
                body.extend_from_slice(e);
            }
            *rng.pick(&[Some("application/json"), None])
        }
    };
    (body, ctype)
}

// ---------------------------------------------------------------------------------
// The serve test.

/// What one writer thread did.
#[derive(Default)]
struct WriterLog {
    /// Every event sent (id, bytes), acknowledged or not.
    sent: Vec<(String, Vec<u8>)>,
    /// (index, position in `sent`) per acknowledged event.
    acked: Vec<(u64, usize)>,
    requests: u64,
    ok: u64,
    overloaded: u64,
    /// The first answer that should never happen, if any.
    error: Option<String>,
}

fn writer(
    addr: SocketAddr,
    seed: u64,
    round: u64,
    w: usize,
    new_stream: Option<(String, u64)>,
    stop: &AtomicBool,
) -> WriterLog {
    let mut rng = Rng::new(seed);
    let mut log = WriterLog::default();
    let Ok(mut conn) = Http::connect(addr, Duration::from_millis(500)) else { return log };
    let mut n = 0u64;
    let mut new_stream = new_stream;
    while !stop.load(Ordering::Relaxed) {
        let count = match rng.range(0, 100) {
            0..50 => 1,
            50..85 => rng.range(2, 9),
            85..97 => rng.range(9, 41),
            _ => rng.range(41, 201),
        } as usize;
        let first = log.sent.len();
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let id = format!("k{round}.{w}.{n}");
            n += 1;
            let e = make_event(&mut rng, &id, true);
            log.sent.push((id, e.clone()));
            events.push(e);
        }
        let (body, ctype) = frame(&mut rng, &events);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = ctype {
            headers.push(("Content-Type", c));
        }
        let stream_name;
        let fresh = match &new_stream {
            Some((_, at)) if *at == log.requests => new_stream.take().map(|(s, _)| s),
            _ => None,
        };
        let path = match (fresh, rng.range(0, 10)) {
            (Some(s), _) => {
                stream_name = s;
                format!("/v1/events?stream={stream_name}")
            }
            (None, 0..6) => "/v1/events".to_string(),
            (None, 6..9) => format!("/v1/events?stream=kill-s{}", rng.range(0, 4)),
            (None, _) => {
                stream_name = format!("kill-s{}", rng.range(0, 4));
                headers.push(("X-Stele-Stream", &stream_name));
                "/v1/events".to_string()
            }
        };
        log.requests += 1;
        let r = match conn.request("POST", &path, &headers, &body) {
            Ok(r) => r,
            Err(_) => break, // the server is gone: this request is unacknowledged
        };
        match r.status {
            200 => {
                log.ok += 1;
                let v: serde_json::Value = match serde_json::from_slice(&r.body) {
                    Ok(v) => v,
                    Err(e) => {
                        log.error = Some(format!("200 with a body that is not JSON ({e}): {:?}", r.body));
                        break;
                    }
                };
                let entries = v["entries"].as_array().cloned().unwrap_or_default();
                if entries.len() != count {
                    log.error = Some(format!("sent {count} events, 200 acknowledged {}: {v}", entries.len()));
                    break;
                }
                let mut prev = None;
                for (k, e) in entries.iter().enumerate() {
                    let Some(ix) = e["index"].as_u64() else {
                        log.error = Some(format!("entry without index: {v}"));
                        break;
                    };
                    if prev.is_some_and(|p| ix <= p) {
                        log.error = Some(format!("indexes not increasing in input order: {v}"));
                    }
                    prev = Some(ix);
                    log.acked.push((ix, first + k));
                }
                if v["tree_size"].as_u64().is_none_or(|t| prev.is_some_and(|p| t <= p)) {
                    log.error = Some(format!("tree_size does not cover the acknowledged indexes: {v}"));
                }
                if log.error.is_some() {
                    break;
                }
            }
            503 => log.overloaded += 1,
            s => {
                log.error = Some(format!(
                    "POST {path} ({ctype:?}, {count} events) answered {s}: {}",
                    String::from_utf8_lossy(&r.body)
                ));
                break;
            }
        }
        if r.close {
            match Http::connect(addr, Duration::from_millis(500)) {
                Ok(c) => conn = c,
                Err(_) => break,
            }
        }
    }
    log
}

/// Sends RFC 5424 messages over TCP with RFC 6587 octet counting until stopped or the
/// connection fails. Syslog has no acknowledgement: what it sends is remembered so
/// the check can demand that every stored message is one of them, whole and once.
/// Frames go out in bursts, some split mid-frame across writes, so a kill often
/// lands with a partial frame in the server's buffer (which must never be stored).
fn syslog_writer(addr: SocketAddr, seed: u64, round: u64, w: usize, stop: &AtomicBool) -> WriterLog {
    let mut rng = Rng::new(seed);
    let mut log = WriterLog::default();
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return log };
    let _ = conn.set_nodelay(true);
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut burst = Vec::new();
        for _ in 0..rng.range(1, 30) {
            let id = format!("s{round}.{w}.{n}");
            n += 1;
            let pad = "x".repeat(rng.range(0, 400) as usize);
            let msg = format!(
                "<134>1 2026-11-29T12:00:{:02}.{:06}Z host{w} app {} - - id={id} user=u{} {pad}",
                rng.range(0, 60),
                rng.range(0, 1_000_000),
                rng.range(1, 99999),
                rng.range(0, 9)
            )
            .into_bytes();
            burst.extend_from_slice(format!("{} ", msg.len()).as_bytes());
            burst.extend_from_slice(&msg);
            log.sent.push((id, msg));
        }
        log.requests += 1;
        if rng.pct(50) {
            std::thread::sleep(Duration::from_millis(rng.range(0, 3)));
        }
        let cut = if rng.pct(30) { rng.range(1, burst.len() as u64) as usize } else { burst.len() };
        if conn.write_all(&burst[..cut]).is_err() {
            break;
        }
        if cut < burst.len() {
            std::thread::sleep(Duration::from_millis(rng.range(0, 3)));
            if conn.write_all(&burst[cut..]).is_err() {
                break;
            }
        }
    }
    log
}

/// Fetches `/checkpoint` until stopped; returns the largest verified tree size seen.
fn poller(addr: SocketAddr, verifier: &NoteVerifier, stop: &AtomicBool, seed: u64) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut max = 0u64;
    let Ok(mut conn) = Http::connect(addr, Duration::from_millis(500)) else { return Ok(0) };
    while !stop.load(Ordering::Relaxed) {
        let r = match conn.request("GET", "/checkpoint", &[], b"") {
            Ok(r) => r,
            Err(_) => break,
        };
        match r.status {
            200 => {
                let cp = open_checkpoint(&r.body, verifier).map_err(|e| {
                    format!("GET /checkpoint: does not verify ({e}): {:?}", String::from_utf8_lossy(&r.body))
                })?;
                let size = cp.checkpoint.tree_size;
                if size < max {
                    return Err(format!("GET /checkpoint went back from tree size {max} to {size}"));
                }
                max = size;
            }
            404 => {}
            s => return Err(format!("GET /checkpoint answered {s}: {}", String::from_utf8_lossy(&r.body))),
        }
        if r.close {
            match Http::connect(addr, Duration::from_millis(500)) {
                Ok(c) => conn = c,
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(rng.range(2, 25)));
    }
    Ok(max)
}

/// Rounds on one data directory before the next starts fresh (each round verifies the
/// whole log, so this bounds a round's time).
const DEFAULT_ROUNDS_PER_DIR: u64 = 100;

/// What the checks carry from round to round.
struct History {
    /// Tree size after the previous round (recovered, read-only open).
    size: u64,
    /// FNV-1a of every entry's payload so far, by index.
    payload_hashes: Vec<u64>,
    /// Tree size of the newest checkpoint after the previous round.
    newest_checkpoint: u64,
    /// Largest tree size of a checkpoint ever seen signed (served or stored).
    max_signed: u64,
}

impl History {
    fn new() -> History {
        History { size: 0, payload_hashes: Vec::new(), newest_checkpoint: 0, max_signed: 0 }
    }
}

#[derive(Default)]
struct Totals {
    max_verify: Duration,
    final_size: u64,
    rounds: u64,
    acked_checked: u64,
    unacked_surviving: u64,
    rounds_unacked_surviving: u64,
    rounds_tail_cut: u64,
    rounds_verify_torn_tail: u64,
    torn_tail_examples: Vec<String>,
    max_recovery: Duration,
    max_round: Duration,
    requests: u64,
    overloaded: u64,
    syslog_sent: u64,
    syslog_entries: u64,
}

struct RoundPlan {
    writers: usize,
    /// Syslog TCP senders beside the HTTP writers.
    syslog_writers: usize,
    delay: Duration,
    /// A stream never seen, and the request of writer 0 that first uses it.
    new_stream: Option<(String, u64)>,
}

fn plan(rng: &mut Rng, round: u64) -> RoundPlan {
    let writers = rng.range(4, 9) as usize;
    let delay_ms = if rng.pct(50) { rng.range(3, 60) } else { rng.range(60, 301) };
    // Now and then a stream never seen, so that the commit registers it and creates
    // its segment file.
    let new_stream = rng.pct(10).then(|| (format!("kill-r{round}-{:x}", rng.next_u64() & 0xffff), rng.range(0, 12)));
    let syslog_writers = rng.range(1, 4) as usize;
    RoundPlan { writers, syslog_writers, delay: Duration::from_millis(delay_ms), new_stream }
}

#[allow(clippy::too_many_arguments)]
fn check_round(
    dir: &Path,
    verifier: &NoteVerifier,
    round: u64,
    logs: &[WriterLog],
    max_seen_signed: u64,
    hist: &mut History,
    totals: &mut Totals,
    rng: &mut Rng,
    strict: bool,
) -> Result<(), String> {
    let raw = raw_entry_count(dir);
    let reader = LogReader::open(dir).map_err(|e| format!("opening the killed directory read-only: {e}"))?;
    let size = reader.tree_size();
    let torn = raw > size || raw_tail_bytes(dir, size);
    if torn {
        totals.rounds_tail_cut += 1;
    }

    // 1. stele verify.
    let t = Instant::now();
    let verified = check_verify(dir, strict)?;
    let verify_time = t.elapsed();
    totals.max_verify = totals.max_verify.max(verify_time);
    match verified {
        Verified::Ok => {}
        Verified::TornTailOnly(p) => {
            if !torn {
                totals.rounds_tail_cut += 1;
            }
            totals.rounds_verify_torn_tail += 1;
            if totals.torn_tail_examples.len() < 3 {
                totals.torn_tail_examples.push(format!("round {round}: {}", p.join("; ")));
            }
        }
    }

    // 2. Dense, and nothing earlier changed or vanished.
    if size < hist.size {
        return Err(format!("the log shrank from {} to {size} entries", hist.size));
    }
    for _ in 0..64.min(hist.size) {
        let i = rng.range(0, hist.size);
        let e = reader.entry(i).map_err(|e| format!("re-reading entry {i} of an earlier round: {e}"))?;
        if fnv(&e.payload) != hist.payload_hashes[i as usize] {
            return Err(format!("entry {i} of an earlier round changed"));
        }
    }

    // 3. Every entry of this round is a whole event some writer sent, once.
    let mut sent: HashMap<&str, &[u8]> = HashMap::new();
    for l in logs {
        for (id, bytes) in &l.sent {
            sent.insert(id.as_str(), bytes.as_slice());
        }
    }
    let mut present: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut user_entries = 0u64;
    for i in hist.size..size {
        let e = reader.entry(i).map_err(|e| format!("entry {i} below the tree size {size} is unreadable: {e}"))?;
        hist.payload_hashes.push(fnv(&e.payload));
        if e.stream == SYSTEM_STREAM {
            let v: serde_json::Value = serde_json::from_slice(&e.payload)
                .map_err(|_| format!("system entry {i} is not JSON: {:?}", String::from_utf8_lossy(&e.payload)))?;
            if e.leaf.payload_format != FORMAT_STELE_RECORD || v["type"] != "stream" {
                return Err(format!("system entry {i} is not a stream registration: {v}"));
            }
            continue;
        }
        if e.stream == "_stele/gaps" {
            // The server's own start, stop and shedding records.
            let v: serde_json::Value = serde_json::from_slice(&e.payload)
                .map_err(|_| format!("gap entry {i} is not JSON: {:?}", String::from_utf8_lossy(&e.payload)))?;
            let known = matches!(v["type"].as_str(), Some("server_start" | "server_stop" | "shedding"));
            if e.leaf.payload_format != FORMAT_STELE_RECORD || !known {
                return Err(format!("gap entry {i} is not a server record: {v}"));
            }
            continue;
        }
        if e.leaf.payload_format == FORMAT_SYSLOG {
            let text = String::from_utf8_lossy(&e.payload);
            let id = text
                .split(' ')
                .find_map(|w| w.strip_prefix("id="))
                .ok_or_else(|| format!("syslog entry {i} has no id: {text}"))?;
            if e.stream != SYSLOG_STREAM {
                return Err(format!("syslog entry {i} is in stream {}", e.stream));
            }
            match sent.get(id) {
                Some(bytes) if *bytes == e.payload.as_slice() => {}
                _ => return Err(format!("syslog entry {i} is not a whole message sent in round {round}: {text}")),
            }
            if !seen_ids.insert(id.to_string()) {
                return Err(format!("syslog message {id} is in the log twice (again at entry {i})"));
            }
            totals.syslog_entries += 1;
            continue;
        }
        if e.stream == "_stele/access" {
            // Aggregated access records, e.g. of the reads of /checkpoint (docs/access.md).
            let v: serde_json::Value = serde_json::from_slice(&e.payload)
                .map_err(|_| format!("access entry {i} is not JSON: {:?}", String::from_utf8_lossy(&e.payload)))?;
            let known = matches!(v["type"].as_str(), Some("access" | "auth_failures"));
            if e.leaf.payload_format != FORMAT_STELE_RECORD || !known {
                return Err(format!("access entry {i} is not an access record: {v}"));
            }
            continue;
        }
        user_entries += 1;
        let shown = || String::from_utf8_lossy(&e.payload[..e.payload.len().min(300)]).into_owned();
        let v: serde_json::Value = serde_json::from_slice(&e.payload)
            .map_err(|err| format!("entry {i} is not a whole JSON event ({err}): {}", shown()))?;
        let id = v["id"].as_str().ok_or_else(|| format!("entry {i} has no id: {}", shown()))?;
        match sent.get(id) {
            Some(bytes) if *bytes == e.payload.as_slice() => {}
            Some(bytes) => {
                return Err(format!(
                    "entry {i} (id {id}) differs from the event sent: {} bytes stored, {} sent",
                    e.payload.len(),
                    bytes.len()
                ));
            }
            None => return Err(format!("entry {i} (id {id}) is no event of round {round}: {}", shown())),
        }
        if !seen_ids.insert(id.to_string()) {
            return Err(format!("event {id} is in the log twice (again at entry {i})"));
        }
        present.insert(i, e.payload);
    }

    // 4. Every acknowledged (index, bytes) is there, byte for byte.
    let mut acked_indexes: HashSet<u64> = HashSet::new();
    for l in logs {
        for &(ix, k) in &l.acked {
            let (id, bytes) = &l.sent[k];
            if !acked_indexes.insert(ix) {
                return Err(format!("index {ix} acknowledged twice"));
            }
            if !(hist.size..size).contains(&ix) {
                return Err(format!(
                    "acknowledged entry {ix} (id {id}) is lost: this round's entries are {}..{size} after recovery",
                    hist.size
                ));
            }
            match present.get(&ix) {
                Some(p) if p == bytes => {}
                Some(p) => {
                    return Err(format!(
                        "acknowledged entry {ix} (id {id}) holds other bytes: {:?}",
                        String::from_utf8_lossy(&p[..p.len().min(200)])
                    ));
                }
                None => return Err(format!("acknowledged entry {ix} (id {id}) is a system record or missing")),
            }
        }
    }
    let acked = acked_indexes.len() as u64;
    totals.acked_checked += acked;
    let unacked = user_entries - acked;
    totals.unacked_surviving += unacked;
    if unacked > 0 {
        totals.rounds_unacked_surviving += 1;
    }

    // 5. Checkpoints never go back.
    let cp = reader.newest_checkpoint();
    let cp_size = match &cp {
        Some(cp) => {
            let v = open_checkpoint(cp.note.as_bytes(), verifier)
                .map_err(|e| format!("the newest stored checkpoint does not verify: {e}"))?;
            if v.checkpoint.tree_size != cp.tree_size || cp.tree_size > size {
                return Err(format!(
                    "newest checkpoint size {} (record {}) vs log {size}",
                    v.checkpoint.tree_size, cp.tree_size
                ));
            }
            cp.tree_size
        }
        None => 0,
    };
    let floor = max_seen_signed.max(hist.newest_checkpoint).max(hist.max_signed);
    if cp_size < floor {
        return Err(format!(
            "the newest checkpoint after the kill covers {cp_size} entries, but a checkpoint of {floor} was signed before"
        ));
    }
    hist.newest_checkpoint = cp_size;
    hist.max_signed = floor.max(cp_size);
    let prev = hist.size;
    hist.size = size;
    println!(
        "  round {round}: tree {size} (+{}), acked {acked}, unacked surviving {unacked}, raw entries {raw}, checkpoint {cp_size} (max served {max_seen_signed}), verify {} ms",
        size - prev,
        verify_time.as_millis(),
    );
    Ok(())
}

#[test]
fn serve_killed_mid_write() {
    let _serial = serial();
    let given_seed = env_u64("STELE_KILL_SEED");
    let rounds = env_u64("STELE_KILL_ROUNDS").unwrap_or(if given_seed.is_some() { 1 } else { 100 });
    let strict = std::env::var("STELE_KILL_STRICT_VERIFY").map_or(true, |v| v != "0");
    let mut seed = given_seed.unwrap_or_else(fresh_seed);
    println!("serve kill test: {rounds} rounds, first seed {seed:#018x} (STELE_KILL_SEED={seed:#x} replays)");

    let per_dir = env_u64("STELE_KILL_ROUNDS_PER_DIR").unwrap_or(DEFAULT_ROUNDS_PER_DIR).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs_dir = tmp.path().join("logs");
    std::fs::create_dir_all(&logs_dir).expect("logs dir");
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut dir = tmp.path().join("data-0");
    let mut hist = History::new();
    let mut verifier: Option<NoteVerifier> = None;

    let fail = |tmp: tempfile::TempDir, dir: &Path, msg: String| -> ! {
        let kept = tmp.keep();
        panic!("{msg}\n(data directory kept at {})", kept.join(dir.file_name().expect("name")).display());
    };

    for round in 0..rounds {
        if round > 0 && round % per_dir == 0 {
            // Bound the time a round takes (verify reads the whole log): a fresh
            // directory every `per_dir` rounds.
            if let Err(e) = recover_and_verify(&dir, &hist) {
                fail(tmp, &dir, e);
            }
            totals.final_size += hist.size;
            let _ = std::fs::remove_dir_all(&dir);
            dir = tmp.path().join(format!("data-{}", round / per_dir));
            hist = History::new();
            verifier = None;
            println!("new data directory {}", dir.display());
        }
        let round_started = Instant::now();
        let round_seed = seed;
        seed = splitmix(seed);
        let mut rng = Rng::new(round_seed);
        let plan = plan(&mut rng, round);
        println!(
            "round {round} seed {round_seed:#018x}: {} writers, {} syslog senders, kill after {} ms{}",
            plan.writers,
            plan.syslog_writers,
            plan.delay.as_millis(),
            plan.new_stream.as_ref().map(|(s, at)| format!(", new stream {s} at request {at}")).unwrap_or_default()
        );

        // 1. Start (and, after the first round, recover).
        let (mut server, healthz_size, recovery) = match start_server(&dir, &logs_dir, round) {
            Ok(s) => s,
            Err(e) => fail(tmp, &dir, format!("round {round} (seed {round_seed:#x}): {e}")),
        };
        totals.max_recovery = totals.max_recovery.max(recovery);
        // The server appends its own start record before answering; nothing else.
        if healthz_size < hist.size || healthz_size > hist.size + 2 {
            kill(&mut server.child);
            fail(
                tmp,
                &dir,
                format!(
                    "round {round} (seed {round_seed:#x}): the server recovered {healthz_size} entries, the read-only open found {}",
                    hist.size
                ),
            );
        }
        let v = match &verifier {
            Some(v) => v.clone(),
            None => {
                let v = stele_store::log::read_verifier(&dir).expect("verifier key");
                verifier = Some(v.clone());
                v
            }
        };

        // 2. Writers and a checkpoint poller.
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.addr;
        let handles: Vec<_> = (0..plan.writers)
            .map(|w| {
                let stop = stop.clone();
                let wseed = splitmix(round_seed ^ (w as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                let new_stream = if w == 0 { plan.new_stream.clone() } else { None };
                std::thread::spawn(move || writer(addr, wseed, round, w, new_stream, &stop))
            })
            .collect();
        let syslog_writers: Vec<_> = (0..plan.syslog_writers)
            .map(|w| {
                let stop = stop.clone();
                let wseed = splitmix(round_seed ^ (w as u64 + 1).wrapping_mul(0x9FB2_1C65_1E98_DF25));
                let syslog = server.syslog;
                std::thread::spawn(move || syslog_writer(syslog, wseed, round, w, &stop))
            })
            .collect();
        let poll = {
            let (stop, v) = (stop.clone(), v.clone());
            let pseed = splitmix(round_seed ^ 0x5157);
            std::thread::spawn(move || poller(addr, &v, &stop, pseed))
        };

        // 3. Kill mid-write.
        std::thread::sleep(plan.delay);
        kill(&mut server.child);
        stop.store(true, Ordering::Relaxed);
        let mut logs: Vec<WriterLog> = handles.into_iter().map(|h| h.join().expect("writer thread")).collect();
        for h in syslog_writers {
            let l = h.join().expect("syslog writer thread");
            totals.syslog_sent += l.sent.len() as u64;
            logs.push(l);
        }
        let max_seen_signed = match poll.join().expect("poller thread") {
            Ok(m) => m,
            Err(e) => fail(tmp, &dir, format!("round {round} (seed {round_seed:#x}): {e}")),
        };
        for l in &logs {
            totals.requests += l.requests;
            totals.overloaded += l.overloaded;
            if let Some(e) = &l.error {
                fail(
                    tmp,
                    &dir,
                    format!(
                        "round {round} (seed {round_seed:#x}): {e}\nserver stderr:\n{}",
                        tail(&server.stderr, 4000)
                    ),
                );
            }
        }

        // 4. Offline checks.
        if let Err(e) = check_round(&dir, &v, round, &logs, max_seen_signed, &mut hist, &mut totals, &mut rng, strict) {
            fail(
                tmp,
                &dir,
                format!(
                    "round {round} (seed {round_seed:#x}, killed after {} ms): {e}\nserver stderr:\n{}",
                    plan.delay.as_millis(),
                    tail(&server.stderr, 4000)
                ),
            );
        }
        let _ = std::fs::remove_file(&server.stderr);
        totals.rounds += 1;
        totals.max_round = totals.max_round.max(round_started.elapsed());
    }

    // 5. The last kill, recovered by the writer, verifies too.
    if rounds > 0
        && let Err(e) = recover_and_verify(&dir, &hist)
    {
        fail(tmp, &dir, e);
    }
    totals.final_size += hist.size;

    println!(
        "summary: {} rounds in {:.1} s; {} acknowledged entries checked, all present byte for byte; \
         {} unacknowledged entries survived (allowed); {} kills during a commit (rounds with entries present but not acknowledged), \
         {} rounds with a torn tail for recovery to cut, {} of them where `stele verify` on the killed directory exited 1 (torn tail only); \
         max recovery (spawn to /healthz ok) {} ms; max round {} ms, max verify {} ms; {} requests ({} answered 503); {} entries written; \
         {} syslog messages sent over TCP, {} stored (each whole, once; syslog has no acknowledgement)",
        totals.rounds,
        started.elapsed().as_secs_f64(),
        totals.acked_checked,
        totals.unacked_surviving,
        totals.rounds_unacked_surviving,
        totals.rounds_tail_cut,
        totals.rounds_verify_torn_tail,
        totals.max_recovery.as_millis(),
        totals.max_round.as_millis(),
        totals.max_verify.as_millis(),
        totals.requests,
        totals.overloaded,
        totals.final_size,
        totals.syslog_sent,
        totals.syslog_entries,
    );
    for ex in &totals.torn_tail_examples {
        println!("  verify on a killed directory: {ex}");
    }
}

/// Opens the directory as its writer (the recovery `stele serve` runs), which must
/// find the size the read-only open found, then `stele verify` must pass.
fn recover_and_verify(dir: &Path, hist: &History) -> Result<(), String> {
    match stele_store::Log::open(dir, Default::default()) {
        Ok(log) if log.tree_size() == hist.size => drop(log),
        Ok(log) => {
            return Err(format!("recovery found {} entries, the read-only open {}", log.tree_size(), hist.size));
        }
        Err(e) => return Err(format!("recovery refused a directory that was only killed: {e}")),
    }
    check_verify(dir, true).map(|_| ()).map_err(|e| format!("after recovery: {e}"))
}

// ---------------------------------------------------------------------------------
// The import test.

/// ~20 MB of JSON lines: events of 80 B to 4 KB (a few larger), each with its line
/// number.
fn import_file(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut lines = Vec::new();
    let mut total = 0usize;
    while total < 20 << 20 {
        let id = format!("imp.{}", lines.len());
        let e = make_event(&mut rng, &id, false);
        total += e.len() + 1;
        lines.push(e);
    }
    lines
}

#[test]
fn import_killed_mid_write() {
    let _serial = serial();
    let given_seed = env_u64("STELE_KILL_IMPORT_SEED");
    let rounds = env_u64("STELE_KILL_IMPORT_ROUNDS").unwrap_or(if given_seed.is_some() { 1 } else { 5 });
    let mut seed = given_seed.unwrap_or_else(fresh_seed);
    println!("import kill test: {rounds} rounds, first seed {seed:#018x} (STELE_KILL_IMPORT_SEED={seed:#x} replays)");

    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = import_file(0x1f11e);
    let input = tmp.path().join("events.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        for l in &lines {
            f.write_all(l).and_then(|_| f.write_all(b"\n")).expect("writing input");
        }
        f.flush().expect("flush");
    }
    let n = lines.len();
    println!("input: {n} events, {} bytes", file_len(&input));

    let fail = |tmp: tempfile::TempDir, msg: String| -> ! {
        let kept = tmp.keep();
        panic!("{msg}\n(directories kept under {})", kept.display());
    };

    // How long a whole import takes (measured by each round's second import).
    let mut full = Duration::from_millis(400);
    let (mut mid, mut torn_verify) = (0u64, 0u64);
    for round in 0..rounds {
        let round_seed = seed;
        seed = splitmix(seed);
        let mut rng = Rng::new(round_seed);
        let dir = tmp.path().join(format!("data-{round}"));
        let init = stele(&[
            "init".as_ref(),
            "--data".as_ref(),
            dir.as_os_str(),
            "--origin".as_ref(),
            "kill.example/import".as_ref(),
        ]);
        assert_eq!(init.code, Some(0), "stele init: {}", init.stderr);
        let verifier = stele_store::log::read_verifier(&dir).expect("verifier");
        // Mostly while events are being appended (after start-up), sometimes earlier.
        let full_ms = (full.as_millis() as u64).max(20);
        let delay = Duration::from_millis(if rng.pct(80) {
            rng.range(full_ms / 5, full_ms * 21 / 20)
        } else {
            rng.range(1, full_ms / 5 + 2)
        });
        println!("round {round} seed {round_seed:#018x}: kill import after {} ms", delay.as_millis());

        let stderr = tmp.path().join(format!("import-{round}.stderr"));
        let mut child = Command::new(STELE)
            .arg("import")
            .arg("--data")
            .arg(&dir)
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawning stele import");
        std::thread::sleep(delay);
        let finished_first = child.try_wait().expect("try_wait");
        kill(&mut child);
        if let Some(status) = finished_first
            && !status.success()
        {
            fail(
                tmp,
                format!("round {round}: stele import failed before the kill ({status}):\n{}", tail(&stderr, 4000)),
            );
        }

        // The events expected in the log: the first `first` lines of the file (what
        // survived the kill), then the whole file again (the second import).
        let check = |dir: &Path, first: usize| -> Result<(usize, u64), String> {
            let reader = LogReader::open(dir).map_err(|e| format!("opening after the kill: {e}"))?;
            let size = reader.tree_size();
            // User entries in order: a prefix of the file, then (after a second
            // import) the whole file again.
            let mut k = 0usize;
            for i in 0..size {
                let e = reader.entry(i).map_err(|e| format!("entry {i}: {e}"))?;
                if e.stream == SYSTEM_STREAM {
                    continue;
                }
                let line = if k < first { k } else { k - first };
                let Some(want) = lines.get(line) else {
                    return Err(format!("entry {i} is event {} in the log, past the events imported", k + 1));
                };
                if e.payload != *want {
                    return Err(format!(
                        "entry {i} should be line {} of the file ({} bytes), holds {} bytes: {:?}",
                        line + 1,
                        want.len(),
                        e.payload.len(),
                        String::from_utf8_lossy(&e.payload[..e.payload.len().min(200)])
                    ));
                }
                k += 1;
            }
            if let Some(cp) = reader.newest_checkpoint() {
                open_checkpoint(cp.note.as_bytes(), &verifier).map_err(|e| format!("newest checkpoint: {e}"))?;
                if cp.tree_size > size {
                    return Err(format!("checkpoint {} beyond the log's {size}", cp.tree_size));
                }
            }
            Ok((k, size))
        };

        let (prefix, size) = match check(&dir, n) {
            Ok(r) => r,
            Err(e) => fail(tmp, format!("round {round} (seed {round_seed:#x}) after the kill: {e}")),
        };
        if prefix > n {
            fail(tmp, format!("round {round}: {prefix} events after one import of {n}"));
        }
        if prefix > 0 && prefix < n {
            mid += 1;
        }
        let raw = raw_entry_count(&dir);
        match check_verify(&dir, std::env::var("STELE_KILL_STRICT_VERIFY").map_or(true, |v| v != "0")) {
            Ok(Verified::Ok) => {}
            Ok(Verified::TornTailOnly(p)) => {
                torn_verify += 1;
                println!("  verify on the killed directory reported only its torn tail: {}", p.join("; "));
            }
            Err(e) => fail(tmp, format!("round {round} (seed {round_seed:#x}) after the kill: {e}")),
        }
        println!(
            "  killed{}: {prefix}/{n} events survived in order (tree {size}, {raw} leaves reached the files)",
            if finished_first.is_some() { " after it finished" } else { "" }
        );

        // A second import of the same file after the kill.
        let t = Instant::now();
        let again = stele(&["import".as_ref(), "--data".as_ref(), dir.as_os_str(), input.as_os_str()]);
        if again.code != Some(0) {
            fail(tmp, format!("round {round}: the second import failed (exit {:?}):\n{}", again.code, again.stderr));
        }
        full = t.elapsed();
        match check(&dir, prefix) {
            Ok((k, size2)) if k == prefix + n => {
                let cp = LogReader::open(&dir).ok().and_then(|r| r.newest_checkpoint()).map(|c| c.tree_size);
                if cp != Some(size2) {
                    fail(
                        tmp,
                        format!(
                            "round {round}: after the second import the newest checkpoint is {cp:?}, the tree {size2}"
                        ),
                    );
                }
            }
            Ok((k, _)) => {
                fail(tmp, format!("round {round}: {k} events after the second import, expected {}", prefix + n))
            }
            Err(e) => fail(tmp, format!("round {round} after the second import: {e}")),
        }
        if let Err(e) = check_verify(&dir, true) {
            fail(tmp, format!("round {round} after the second import: {e}"));
        }
        println!("  second import: {n} events in {} ms; verify ok", full.as_millis());
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "import summary: {rounds} rounds, {mid} killed mid-import, {torn_verify} where verify on the killed directory reported only a torn tail"
    );
}
