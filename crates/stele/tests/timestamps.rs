//! Trusted time end to end against real timestamp authorities: two `openssl ts` TSAs
//! behind the HTTP wrapper of ../shared/data/captured/rfc3161 (one signing with
//! ESSCertIDv2, one with ESSCertID v1), each under its own test CA made here with the
//! openssl CLI. A server stamps its checkpoints with both; the tokens are stored,
//! served, and checked by `verify`, `verify-bundle` and `monitor`; then a token moved to
//! another checkpoint, a TSA that is not trusted, and corrupted stored tokens are each
//! named precisely.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The captured recipe folder, if openssl and python3 are installed too.
fn peers() -> Option<PathBuf> {
    let recipe = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/captured/rfc3161"));
    let have = |cmd: &str, arg: &str| Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success());
    let missing = if !recipe.join("tsa_http.py").is_file() {
        Some(format!("{} not found", recipe.display()))
    } else if !have("openssl", "version") {
        Some("openssl is not installed".into())
    } else if !have("python3", "--version") {
        Some("python3 is not installed".into())
    } else {
        None
    };
    match missing {
        None => Some(recipe),
        Some(why) if std::env::var("STELE_REQUIRE_PEERS").is_ok_and(|v| v == "1") => {
            panic!("STELE_REQUIRE_PEERS=1 but {why}")
        }
        Some(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stele(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stele")).args(args).output().unwrap()
}

#[track_caller]
fn expect(out: &Output, code: i32, needles: &[&str]) -> String {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{all}");
    for n in needles {
        assert!(all.contains(n), "no {n:?} in:\n{all}");
    }
    all
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = buf[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Some((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 4 + n..];
    }
    out
}

/// A test CA and a TSA certificate under it, and the TSA's HTTP wrapper running.
struct Tsa {
    dir: PathBuf,
    url: String,
    child: Child,
}

impl Drop for Tsa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tsa(recipe: &Path, root: &Path, name: &str, ess_alg: &str) -> Tsa {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cnf = std::fs::read_to_string(recipe.join("tsa.cnf")).unwrap();
    let cnf = cnf.replace("ess_cert_id_alg   = sha256", &format!("ess_cert_id_alg   = {ess_alg}"));
    assert!(cnf.contains(&format!("ess_cert_id_alg   = {ess_alg}")), "the recipe's tsa.cnf changed");
    std::fs::write(dir.join("tsa.cnf"), cnf).unwrap();
    std::fs::copy(recipe.join("tsa-ext.cnf"), dir.join("tsa-ext.cnf")).unwrap();
    std::fs::copy(recipe.join("tsa_http.py"), dir.join("tsa_http.py")).unwrap();
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap();
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(&dir));
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} Root CA"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    ossl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "tsa.key",
        "-out",
        "tsa.csr",
        "-subj",
        &format!("/CN={name} TSA"),
    ]);
    ossl(&[
        "x509",
        "-req",
        "-in",
        "tsa.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tsa.crt",
        "-days",
        "2",
        "-extfile",
        "tsa-ext.cnf",
    ]);
    let port = free_port();
    let child = Command::new("python3")
        .arg("tsa_http.py")
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("the TSA wrapper", || TcpStream::connect(addr).is_ok());
    Tsa { dir, url: format!("http://{addr}/"), child }
}

/// A `stele serve` child process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// The frames of `timestamps.dat`: (offset, payload).
fn frames(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 32;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, bytes[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    out
}

/// Rewrites record `i`'s payload with `edit`, with a valid CRC (what someone who can
/// write the data directory would do).
fn rewrite(file: &Path, i: usize, mut edit: impl FnMut(&mut Vec<u8>)) {
    let bytes = std::fs::read(file).unwrap();
    let mut out = bytes[..32].to_vec();
    for (k, (_, mut p)) in frames(&bytes).into_iter().enumerate() {
        if k == i {
            edit(&mut p);
        }
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&p).to_be_bytes());
        out.extend_from_slice(&p);
    }
    std::fs::write(file, out).unwrap();
}

#[test]
fn checkpoints_are_timestamped_served_and_verified() {
    let Some(recipe) = peers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let v2 = start_tsa(&recipe, tmp.path(), "Alpha", "sha256");
    let v1 = start_tsa(&recipe, tmp.path(), "Beta", "sha1");
    let (ca2, ca1) = (v2.dir.join("ca.crt"), v1.dir.join("ca.crt"));
    let (ca2_s, ca1_s) = (ca2.to_str().unwrap(), ca1.to_str().unwrap());

    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let init = expect(&stele(&["init", "--data", data_s, "--origin", "tsa.example/log"]), 0, &[]);
    let vkey = init.lines().find(|l| l.starts_with("tsa.example/log+")).expect("the verifier key").to_string();
    let port = free_port();
    let config = tmp.path().join("stele.toml");
    std::fs::write(
        &config,
        format!(
            "data = {data_s:?}\nlisten = \"127.0.0.1:{port}\"\ncheckpoint_interval_seconds = 0.2\n\
             timestamp_interval_seconds = 1\nverify_incremental_seconds = 0\n\
             [[timestamp_authority]]\nurl = {:?}\ncertificate = {ca2_s:?}\n\
             [[timestamp_authority]]\nurl = {:?}\ncertificate = {ca1_s:?}\n",
            v2.url, v1.url
        ),
    )
    .unwrap();
    let config_s = config.to_str().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["--config", config_s, "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, addr: format!("127.0.0.1:{port}").parse().unwrap() };
    let addr = server.addr;
    wait_until("the server", || http(addr, "GET", "/healthz", b"").is_some_and(|(s, _)| s == 200));
    for n in 0..5 {
        let (s, b) = http(addr, "POST", "/v1/events", format!("{{\"actor\":\"alice\",\"n\":{n}}}").as_bytes()).unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    }
    // Both TSAs stamp the same (newest) checkpoint once the log is quiet.
    let mut doc = serde_json::Value::Null;
    wait_until("tokens from both TSAs for the newest checkpoint", || {
        let Some((200, cp)) = http(addr, "GET", "/checkpoint", b"") else { return false };
        let size: u64 = String::from_utf8_lossy(&cp).lines().nth(1).unwrap().parse().unwrap();
        match http(addr, "GET", &format!("/checkpoint/timestamps?tree_size={size}"), b"") {
            Some((200, b)) => {
                doc = serde_json::from_slice(&b).unwrap();
                let body_ok = cp.starts_with(doc["body"].as_str().unwrap().as_bytes());
                assert!(body_ok, "the served body is the checkpoint's text");
                doc["timestamps"].as_array().unwrap().len() >= 2
            }
            _ => false,
        }
    });
    let size = doc["tree_size"].as_u64().unwrap();
    let (s, newest) = http(addr, "GET", "/checkpoint/timestamps", b"").unwrap();
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&newest).unwrap()["tree_size"], size);
    assert_eq!(http(addr, "GET", "/checkpoint/timestamps?tree_size=x", b"").unwrap().0, 400);
    assert_eq!(http(addr, "GET", "/checkpoint/timestamps?size=1", b"").unwrap().0, 400);
    assert_eq!(http(addr, "GET", "/checkpoint/timestamps?tree_size=1", b"").unwrap().0, 404);
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", b"").unwrap().1).unwrap();
    assert!(
        metrics.contains("stele_timestamp_tokens_total{tsa=") && metrics.contains("result=\"stored\""),
        "{metrics}"
    );

    // monitor: both tokens chain to the configured CAs; with only one CA the other
    // TSA's token is an alarm naming the checkpoint and the check.
    let url = format!("http://{addr}");
    let state = tmp.path().join("monitor.state");
    let mon = |certs: &[&str], state: &Path| {
        let mut args = vec!["monitor", "--url", &url, "--key", &vkey, "--state", state.to_str().unwrap()];
        for c in certs {
            args.extend(["--tsa-cert", c]);
        }
        stele(&args)
    };
    let out = expect(&mon(&[ca2_s, ca1_s], &state), 0, &["ESSCertIDv2", "(ESSCertID,"]);
    assert_eq!(out.matches(&format!("timestamp: checkpoint {size} ")).count(), 2, "{out}");
    let out = expect(&mon(&[ca2_s], &tmp.path().join("monitor2.state")), 1, &["BAD TIMESTAMP", "chain:"]);
    assert!(out.contains(&format!("checkpoint {size}")) && out.contains(&v1.url), "{out}");

    server.stop();

    // verify: both tokens, each with its ESS version and genTime.
    let out = expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s, "--tsa-cert", ca1_s]), 0, &["ok:"]);
    assert!(out.contains("ESSCertIDv2") && out.contains("(ESSCertID,"), "{out}");
    assert!(out.contains(&format!("timestamp: checkpoint {size} ({})", v2.url)), "{out}");
    // From the config file's [[timestamp_authority]] certificates too.
    expect(&stele(&["--config", config_s, "verify"]), 0, &["chains to CN=Alpha Root CA", "chains to CN=Beta Root CA"]);
    // Without certificates the chain is reported as not checked.
    expect(&stele(&["verify", "--data", data_s]), 0, &["chain NOT checked"]);
    // A token signed by a TSA that is not trusted.
    let out = expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s]), 1, &["chain:", &v1.url]);
    assert!(out.contains(&format!("timestamp token for checkpoint {size} from {}", v1.url)), "{out}");

    // Evidence bundle over the stamped checkpoint carries both tokens.
    let bundle = tmp.path().join("b.bundle");
    let bundle_s = bundle.to_str().unwrap();
    expect(&stele(&["export", "--data", data_s, "--out", bundle_s, "--timestamped", "--actor", "alice"]), 0, &[]);
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("{\"timestamp\":")).count(), 2, "{text}");
    let vb = |certs: &[&str]| {
        let mut args = vec!["verify-bundle", bundle_s, "--key", &vkey];
        for c in certs {
            args.extend(["--tsa-cert", c]);
        }
        stele(&args)
    };
    expect(&vb(&[ca2_s, ca1_s]), 0, &["bundle OK", "ESSCertIDv2", "(ESSCertID,"]);
    expect(&vb(&[ca1_s]), 1, &["line 2", "chain:"]);

    // `stele timestamp` on demand (the server is stopped, so it holds the lock).
    let tsa_flag = format!("{}={ca2_s}", v2.url);
    expect(&stele(&["timestamp", "--data", data_s, "--tsa", &tsa_flag]), 0, &["timestamped by", "ESSCertIDv2"]);
    expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s, "--tsa-cert", ca1_s]), 0, &["ok:"]);

    // A token moved to another checkpoint: the imprint no longer matches.
    let file = data.join("timestamps.dat");
    let pristine = std::fs::read(&file).unwrap();
    rewrite(&file, 0, |p| p[..8].copy_from_slice(&1u64.to_be_bytes()));
    let out = expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s, "--tsa-cert", ca1_s]), 1, &[]);
    assert!(out.contains("timestamp token for checkpoint 1 from") && out.contains("message imprint"), "{out}");

    // A corrupted token (CRC recomputed): its signature fails, named with its record.
    std::fs::write(&file, &pristine).unwrap();
    let first_offset = frames(&pristine)[0].0;
    rewrite(&file, 0, |p| {
        let n = p.len();
        p[n - 3] ^= 0x40; // inside the SignerInfo's signature value
    });
    let out = expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s, "--tsa-cert", ca1_s]), 1, &[]);
    assert!(
        out.contains(&format!("timestamps.dat offset {first_offset}: timestamp token for checkpoint {size}"))
            && out.contains("signature"),
        "{out}"
    );

    // A corrupted record with records after it (CRC not fixed): damage, named.
    let mut bytes = pristine.clone();
    bytes[first_offset + 8 + 40] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let out = expect(&stele(&["verify", "--data", data_s]), 1, &[]);
    assert!(out.contains(&format!("timestamps.dat offset {first_offset}")) && out.contains("CRC"), "{out}");
    std::fs::write(&file, &pristine).unwrap();
    expect(&stele(&["verify", "--data", data_s, "--tsa-cert", ca2_s, "--tsa-cert", ca1_s]), 0, &["ok:"]);
}
