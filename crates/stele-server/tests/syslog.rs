//! Syslog listeners against real senders and bad input.
//!
//! - util-linux `logger` sends RFC 5424 and RFC 3164 over UDP and TCP (LF framing and
//!   octet counting); `logger --stderr` prints the exact bytes it sent, which is the
//!   independent reference for what must be stored.
//! - `rsyslogd`, started here in the foreground with its own config, relays messages
//!   to stele over TCP with octet counting and over TLS (gtls driver, LF framing), and
//!   the same messages over UDP to a socket of the test: the datagrams are the
//!   reference bytes.
//! - Bad input: an oversized length prefix, a truncated frame, a peer outside the
//!   allow-list, idle and trickling connections.
//!
//! Tests that need `logger` or `rsyslogd` skip with a message when they are absent,
//! unless `STELE_REQUIRE_PEERS=1`, which turns the skip into a failure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{TestServer, request};
use stele_server::ServerConfig;

const LOCAL: &str = "127.0.0.1:0";

fn peer(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("STELE_REQUIRE_PEERS=1 but {path} is missing (apt-get install bsdutils rsyslog rsyslog-gnutls)");
    }
    eprintln!("skipping: {path} not found");
    None
}

fn server(edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
    TestServer::fresh("example.com/syslog-test", |c| {
        c.verify_incremental_interval = Duration::ZERO;
        c.verify_full_interval = Duration::ZERO;
        edit(c);
    })
}

fn tree_size(addr: SocketAddr) -> u64 {
    request(addr, "GET", "/healthz", &[], b"").json()["tree_size"].as_u64().unwrap()
}

/// Entries a fresh server appends at its start: the `_stele/gaps` stream's
/// registration and the `server_start` record.
const SERVER_RECORDS: u64 = 2;

/// Waits until the tree holds `n` syslog entries (20 s at most); besides the server's
/// own records, one entry of the tree is the record that created the `syslog` stream.
fn wait_for(addr: SocketAddr, n: u64) {
    let n = n + 1 + SERVER_RECORDS;
    let start = Instant::now();
    while tree_size(addr) < n {
        assert!(start.elapsed() < Duration::from_secs(20), "tree stuck at {} of {n}", tree_size(addr));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stored bytes of every syslog entry, each read back with `GET /v1/entries/N`.
fn stored(addr: SocketAddr) -> Vec<Vec<u8>> {
    (0..tree_size(addr))
        .filter_map(|i| {
            let v = request(addr, "GET", &format!("/v1/entries/{i}"), &[], b"").json();
            if v["stream"].as_str().is_some_and(|s| s.starts_with("_stele/")) {
                return None;
            }
            assert_eq!(v["format"], "syslog", "{v}");
            assert_eq!(v["stream"], "syslog", "{v}");
            Some(base64::engine::general_purpose::STANDARD.decode(v["event_base64"].as_str().unwrap()).unwrap())
        })
        .collect()
}

/// The NDJSON hits of a query.
fn query(addr: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let r = request(addr, "GET", &format!("/v1/query?{q}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.lines()
}

fn metric(addr: SocketAddr, line_start: &str) -> u64 {
    let text = request(addr, "GET", "/metrics", &[], b"").text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
}

/// Stops the server and verifies the whole log.
fn stop_and_verify(srv: TestServer) {
    let dir = srv.stop();
    let log = stele_store::Log::open(dir.path(), Default::default()).unwrap();
    let report = stele_store::verify::verify(&log.reader(), &Default::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.entries > 0);
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// Runs `logger --stderr ARGS` and returns the bytes it sent: its stderr copy without
/// the LF it adds for the terminal, and without an octet-count prefix.
fn logger(bin: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(bin).arg("--stderr").args(args).output().unwrap();
    assert!(out.status.success(), "logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut sent = out.stderr;
    while sent.last() == Some(&b'\n') {
        sent.pop();
    }
    if args.contains(&"--octet-count") {
        let sp = sent.iter().position(|&b| b == b' ').unwrap();
        let n: usize = std::str::from_utf8(&sent[..sp]).unwrap().parse().unwrap();
        sent.drain(..=sp);
        assert_eq!(sent.len(), n);
    }
    sent
}

#[test]
fn logger_over_udp_and_tcp() {
    let Some(bin) = peer("/usr/bin/logger") else { return };
    let srv = server(|c| {
        c.syslog.udp = Some(LOCAL.parse().unwrap());
        c.syslog.tcp = Some(LOCAL.parse().unwrap());
    });
    let (udp, tcp) = (srv.running().syslog_udp_addr().unwrap(), srv.running().syslog_tcp_addr().unwrap());
    let (tcp_port, udp_port) = (tcp.port().to_string(), udp.port().to_string());
    let sd = ["--sd-id", "audit@32473", "--sd-param", "actor=\"alice\"", "--sd-param", "action=\"login\""];
    let mut expected = Vec::new();
    for (i, framing) in [&["-T"][..], &["-T", "--octet-count"], &["-d"]].iter().enumerate() {
        let port = if framing[0] == "-d" { &udp_port } else { &tcp_port };
        let text = format!("user alice logged in, message {i}");
        let mut args = vec!["--rfc5424", "-n", "127.0.0.1", "-P", port, "-t", "auditd-test", "-p", "auth.notice"];
        args.extend_from_slice(framing);
        args.extend_from_slice(&sd);
        args.push(&text);
        expected.push(logger(&bin, &args));
    }
    let bsd = logger(&bin, &["--rfc3164", "-n", "127.0.0.1", "-P", &tcp_port, "-T", "-t", "legacy", "bsd message"]);
    expected.push(bsd.clone());
    // UDP may reorder relative to TCP; a lost datagram on loopback would fail the test.
    wait_for(srv.addr, expected.len() as u64);
    assert_eq!(sorted(stored(srv.addr)), sorted(expected.clone()));

    // Queryable by the normalized fields of its structured data and header.
    let hits = query(srv.addr, "actor=alice&action=login&stream=syslog");
    assert_eq!(hits.len(), 3, "{hits:?}");
    for h in &hits {
        assert_eq!(h["format"], "syslog");
        assert!(h["fields"]["time"].is_string(), "{h}");
    }
    let hits = query(srv.addr, "resource=*&stream=syslog");
    assert_eq!(hits.len(), 4);
    let legacy: Vec<_> = hits.iter().filter(|h| h["fields"]["actor"].is_null()).collect();
    assert_eq!(legacy.len(), 1);
    let b = base64::engine::general_purpose::STANDARD.decode(legacy[0]["event_base64"].as_str().unwrap()).unwrap();
    assert_eq!(b, bsd);
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}"), 3);
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-udp\",result=\"accepted\"}"), 1);
    stop_and_verify(srv);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(LOCAL).unwrap().local_addr().unwrap().port()
}

/// A test CA and a server certificate for `localhost` signed by it, as PEM files.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "stele test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    // A client certificate from the same CA, for mutual TLS.
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(rcgen::DnType::CommonName, "sender");
    let client = client.signed_by(&client_key, &ca).unwrap();
    std::fs::write(dir.join("client.der"), client.der()).unwrap();
    std::fs::write(dir.join("client-key.der"), client_key.serialize_der()).unwrap();
    paths
}

/// A TLS client connection to `addr` trusting `ca`, with the client certificate of
/// `test_pki` when `with_cert`.
fn tls_client(
    addr: SocketAddr,
    dir: &Path,
    with_cert: bool,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let cert = CertificateDer::from(std::fs::read(dir.join("client.der")).unwrap());
        let key = PrivateKeyDer::try_from(std::fs::read(dir.join("client-key.der")).unwrap()).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap())
}

#[test]
fn tls_requires_a_client_certificate_when_a_client_ca_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let srv = server(|c| {
        c.syslog.tls = Some(stele_server::syslog::SyslogTlsConfig {
            listen: LOCAL.parse().unwrap(),
            cert_pem: cert,
            key_pem: key,
            client_ca_pem: Some(ca),
        });
    });
    let tls = srv.running().syslog_tls_addr().unwrap();
    // Without a certificate the handshake fails and nothing is stored.
    let mut s = tls_client(tls, tmp.path(), false);
    let refused = s.write_all(b"<13>1 - - - - - - refused\n").and_then(|()| s.flush()).and_then(|()| {
        let mut b = [0u8; 1];
        s.read(&mut b)
    });
    assert!(matches!(refused, Err(_) | Ok(0)), "{refused:?}");
    // With one, octet-counted messages are stored exactly.
    let mut s = tls_client(tls, tmp.path(), true);
    s.write_all(b"32 <13>1 - host app - - - over mTLS").unwrap();
    s.write_all(b"5 <1>\xff\n").unwrap();
    s.flush().unwrap();
    wait_for(srv.addr, 2);
    assert_eq!(
        sorted(stored(srv.addr)),
        sorted(vec![b"<13>1 - host app - - - over mTLS".to_vec(), b"<1>\xff\n".to_vec()])
    );
    assert_eq!(
        metric(srv.addr, "stele_syslog_connections_closed_total{protocol=\"syslog-tls\",reason=\"tls_handshake\"}"),
        1
    );
    drop(s);
    stop_and_verify(srv);
}

struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rsyslog_relays_over_tcp_octet_counted_and_tls() {
    let Some(rsyslogd) = peer("/usr/sbin/rsyslogd") else { return };
    let Some(logger_bin) = peer("/usr/bin/logger") else { return };
    if !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
        && std::env::var("STELE_REQUIRE_PEERS").as_deref() != Ok("1")
    {
        eprintln!("skipping: rsyslog's gtls driver (rsyslog-gnutls) not found");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let srv = server(|c| {
        c.syslog.tcp = Some(LOCAL.parse().unwrap());
        c.syslog.tls = Some(stele_server::syslog::SyslogTlsConfig {
            listen: LOCAL.parse().unwrap(),
            cert_pem: cert,
            key_pem: key,
            client_ca_pem: None,
        });
    });
    let (tcp, tls) = (srv.running().syslog_tcp_addr().unwrap(), srv.running().syslog_tls_addr().unwrap());
    let reference = UdpSocket::bind(LOCAL).unwrap();
    reference.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let input = free_port();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let template = "template=\"RSYSLOG_SyslogProtocol23Format\"";
    let conf = format!(
        r#"global(workDirectory="{work}" defaultNetstreamDriverCAFile="{ca}")
module(load="imtcp")
input(type="imtcp" port="{input}" address="127.0.0.1")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" {template})
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" {template})
action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp" StreamDriver="gtls" StreamDriverMode="1"
       StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost" {template})
"#,
        work = work.display(),
        ca = ca.display(),
        udp = reference.local_addr().unwrap().port(),
        tcp = tcp.port(),
        tls = tls.port(),
    );
    let conf_path = tmp.path().join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(&rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(tmp.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Rsyslogd(child);
    // Wait for rsyslog's input.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", input)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "rsyslogd did not open its input port");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = input.to_string();
    let n = 3;
    for i in 0..n {
        let text = format!("relayed message {i} with bytes \u{e9}");
        let sd = [
            "--sd-id",
            "audit@32473",
            "--sd-param",
            "user=\"bob\"",
            "--sd-param",
            "result=\"denied\"",
            "--msgid",
            "SUDO",
        ];
        let mut args = vec!["--rfc5424", "-n", "127.0.0.1", "-P", &port, "-T", "--octet-count", "-t", "sudo-test"];
        args.extend_from_slice(&sd);
        args.push(&text);
        logger(&logger_bin, &args);
    }
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        let (len, _) = reference.recv_from(&mut buf).expect("rsyslog's UDP copy");
        datagrams.push(buf[..len].to_vec());
    }
    wait_for(srv.addr, 2 * n);
    // The octet-counted frames are the template output (with rsyslog's LF, which its
    // count includes); the TLS ones are LF-framed, so the same bytes without the LF.
    let mut expected = datagrams.clone();
    for d in &datagrams {
        assert_eq!(d.last(), Some(&b'\n'));
        expected.push(d[..d.len() - 1].to_vec());
    }
    assert_eq!(sorted(stored(srv.addr)), sorted(expected));
    let hits = query(srv.addr, "actor=bob&action=SUDO&outcome=failure");
    assert_eq!(hits.len() as u64, 2 * n, "{hits:?}");
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-tls\",result=\"accepted\"}"), n);
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}"), n);
    stop_and_verify(srv);
}

/// Reads until the server closes the connection; panics after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("connection still open after {:?}: {e}", start.elapsed()),
        }
    }
}

#[test]
fn bad_input_closes_the_connection_and_keeps_what_came_before() {
    let srv = server(|c| {
        c.syslog.tcp = Some(LOCAL.parse().unwrap());
        c.syslog.udp = Some(LOCAL.parse().unwrap());
        c.syslog.max_message_bytes = 100;
        c.syslog.idle_timeout = Duration::from_millis(400);
        c.syslog.message_timeout = Duration::from_millis(600);
    });
    let tcp = srv.running().syslog_tcp_addr().unwrap();
    let udp = srv.running().syslog_udp_addr().unwrap();
    let closed = |reason: &str| {
        metric(
            srv.addr,
            &format!("stele_syslog_connections_closed_total{{protocol=\"syslog-tcp\",reason=\"{reason}\"}}"),
        )
    };

    // A length prefix over the limit: the frames before it are kept.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"5 <1>a\xff4 <2>b101 <3>c").unwrap();
    closed_within(&mut s, Duration::from_secs(5));
    // A truncated frame at the end of the stream.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"4 <4>d20 <5>e").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    closed_within(&mut s, Duration::from_secs(5));
    // LF framing with invalid UTF-8 and a final message without LF.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"<6>f \xc3\x28\r\n\n<7>g").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    closed_within(&mut s, Duration::from_secs(5));
    // An LF-framed message longer than the limit.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(&[b'<'; 150]).unwrap();
    closed_within(&mut s, Duration::from_secs(5));
    // UDP: a datagram is stored whole; one over the limit is rejected.
    let u = UdpSocket::bind(LOCAL).unwrap();
    u.send_to(b"<8>h\n", udp).unwrap();
    u.send_to(&[b'x'; 101], udp).unwrap();

    wait_for(srv.addr, 6);
    let expected: Vec<Vec<u8>> = [&b"<1>a\xff"[..], b"<2>b", b"<4>d", b"<6>f \xc3\x28\r", b"<7>g", b"<8>h\n"]
        .iter()
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(sorted(stored(srv.addr)), sorted(expected));
    assert_eq!(closed("bad_frame"), 3);
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"rejected\"}"), 3);
    assert_eq!(metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-udp\",result=\"rejected\"}"), 1);

    // An idle connection is closed after the idle timeout.
    let mut s = TcpStream::connect(tcp).unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert_eq!(closed("idle_timeout"), 1);
    // A client trickling one byte every 100 ms never completes a message: closed after
    // the message timeout although it is never idle.
    let mut s = TcpStream::connect(tcp).unwrap();
    let start = Instant::now();
    let mut writes = 0;
    while s.write_all(b"x").is_ok() && start.elapsed() < Duration::from_secs(5) {
        writes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(start.elapsed() < Duration::from_secs(5) && writes >= 5, "{:?} {writes}", start.elapsed());
    assert_eq!(closed("message_timeout"), 1);
    // The server still serves others.
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"<9>i\n").unwrap();
    wait_for(srv.addr, 7);
    stop_and_verify(srv);
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    let srv = server(|c| {
        c.syslog.tcp = Some(LOCAL.parse().unwrap());
        c.syslog.udp = Some(LOCAL.parse().unwrap());
        c.syslog.allow = vec!["10.0.0.0/8".parse().unwrap()];
    });
    let mut s = TcpStream::connect(srv.running().syslog_tcp_addr().unwrap()).unwrap();
    let _ = s.write_all(b"<1>refused\n");
    closed_within(&mut s, Duration::from_secs(5));
    let u = UdpSocket::bind(LOCAL).unwrap();
    u.send_to(b"<1>refused", srv.running().syslog_udp_addr().unwrap()).unwrap();
    let start = Instant::now();
    while metric(srv.addr, "stele_ingest_events_total{protocol=\"syslog-udp\",result=\"rejected\"}") == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "datagram not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric(srv.addr, "stele_syslog_connections_closed_total{protocol=\"syslog-tcp\",reason=\"not_allowed\"}"),
        1
    );
    assert_eq!(tree_size(srv.addr), SERVER_RECORDS);
    srv.stop();
}
