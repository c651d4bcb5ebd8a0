//! TLS on the HTTP listener: a test CA made here with rcgen, mutual TLS accepted and
//! refused, client-certificate principals, tokens over TLS, certificate reload seen by
//! a new client, and curl as an independent client. The curl test skips when curl is
//! missing, unless `STELE_REQUIRE_PEERS=1`, which turns the skip into a failure.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Resp, TestServer, request_on};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use stele_server::auth::CertPrincipal;
use stele_server::tls::TlsConfig;

struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Pki::ca("stele test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let pki = Pki { dir, ca };
        pki.server_cert("server");
        pki.client("alice", &pki.ca);
        pki.client("mallory", &pki.ca);
        let other = Pki::ca("another CA");
        pki.client("eve", &other);
        pki
    }

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `server.pem` and `server-key.pem` for localhost and 127.0.0.1, signed
    /// by the CA, with `label` as organization (to tell certificates apart).
    fn server_cert(&self, label: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        p.distinguished_name.push(rcgen::DnType::OrganizationName, label);
        let cert = p.signed_by(&key, &self.ca).unwrap();
        // Key first: the reloader may read in between; a mismatched pair is refused and retried.
        std::fs::write(self.path("server-key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(self.path("server.pem"), cert.pem()).unwrap();
        cert.der().to_vec()
    }

    /// Writes `NAME.pem` and `NAME-key.pem`: a client certificate with CN `NAME` and
    /// the e-mail SAN `NAME@example.org`, signed by `issuer`.
    fn client(&self, name: &str, issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.subject_alt_names.push(rcgen::SanType::Rfc822Name(format!("{name}@example.org").try_into().unwrap()));
        let cert = p.signed_by(&key, issuer).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }

    fn tls_config(&self, client_ca: bool) -> TlsConfig {
        TlsConfig {
            cert_pem: self.path("server.pem"),
            key_pem: self.path("server-key.pem"),
            client_ca_pem: client_ca.then(|| self.path("ca.pem")),
            client_cert_required: true,
        }
    }

    /// A TLS connection to `addr` trusting the CA, with client certificate `client`.
    fn connect(
        &self,
        addr: SocketAddr,
        client: Option<&str>,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(name) => {
                let cert = CertificateDer::from_pem_file(self.path(&format!("{name}.pem"))).unwrap();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}-key.pem"))).unwrap();
                builder.with_client_auth_cert(vec![cert], key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        rustls::StreamOwned::new(conn, sock)
    }

    fn call(&self, addr: SocketAddr, client: Option<&str>, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
        let mut s = self.connect(addr, client);
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(extra);
        let body: &[u8] = if method == "POST" { br#"{"actor":"tls"}"# } else { b"" };
        request_on(&mut s, method, path, &headers, body)
    }

    /// Whether the handshake (and a first request) fails for `client`.
    fn refused(&self, addr: SocketAddr, client: Option<&str>) -> bool {
        use std::io::{Read, Write};
        let mut s = self.connect(addr, client);
        let r = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .and_then(|()| s.flush())
            .and_then(|()| {
                let mut b = Vec::new();
                s.read_to_end(&mut b).map(|_| b)
            });
        match r {
            Err(_) => true,
            Ok(b) => b.is_empty(),
        }
    }

    /// The DER of the certificate a new connection to `addr` is served.
    fn served_cert(&self, addr: SocketAddr) -> Vec<u8> {
        use std::io::Write;
        let mut s = self.connect(addr, Some("alice"));
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        s.flush().unwrap();
        s.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    }
}

fn alice(grants: &[&str]) -> CertPrincipal {
    CertPrincipal {
        name: "alice".into(),
        subject: "alice@example.org".into(),
        grants: grants.iter().map(|g| g.parse().unwrap()).collect(),
    }
}

#[test]
fn mutual_tls_maps_certificates_to_principals_and_refuses_the_rest() {
    let pki = Pki::new();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.tls = Some(pki.tls_config(true));
        c.auth.cert_principals = vec![alice(&["append:prod", "read:prod"])];
    });
    let addr = srv.addr;
    let r = pki.call(addr, Some("alice"), "POST", "/v1/events?stream=prod", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(pki.call(addr, Some("alice"), "GET", "/v1/query?stream=prod", &[]).status, 200);
    let r = pki.call(addr, Some("alice"), "POST", "/v1/events?stream=dev", &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["principal"], "alice");
    // Issued by the CA but mapped to no principal: refused by the access control.
    let r = pki.call(addr, Some("mallory"), "GET", "/v1/query?stream=prod", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("mallory"), "{}", r.text());
    // Another CA's certificate, or none: refused by the handshake.
    assert!(pki.refused(addr, Some("eve")), "a certificate of another CA was accepted");
    assert!(pki.refused(addr, None), "a client without a certificate was accepted");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = std::panic::catch_unwind(|| common::request(addr, "GET", "/healthz", &[], b""));
    assert!(plain.is_err() || plain.unwrap().status != 200);
    let dir = srv.stop();
    // The reads are recorded under the certificate principal.
    let log = stele_store::Log::open(dir.path(), Default::default()).unwrap();
    let reader = log.reader();
    let access: Vec<serde_json::Value> = (0..reader.tree_size())
        .filter_map(|i| reader.entry(i).ok())
        .filter(|e| e.stream == stele_server::access::ACCESS_STREAM)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    assert!(
        access.iter().any(|r| r["principal"] == "alice" && r["auth"] == "certificate" && r["route"] == "query"),
        "{access:?}"
    );
}

#[test]
fn tokens_work_over_tls_when_client_certificates_are_optional() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "tls.test/log").unwrap();
    let mut file = stele_server::tokens::TokenFile::default();
    let token = file.create("svc", &["append:*".parse().unwrap()], 1).unwrap();
    file.save(dir.path()).unwrap();
    let srv = TestServer::start(dir, |c| {
        let mut t = pki.tls_config(true);
        t.client_cert_required = false;
        c.tls = Some(t);
        c.auth.cert_principals = vec![alice(&["read:*"])];
    });
    let bearer = format!("Bearer {token}");
    let r = pki.call(srv.addr, None, "POST", "/v1/events", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(pki.call(srv.addr, None, "POST", "/v1/events", &[]).status, 401);
    assert_eq!(pki.call(srv.addr, Some("alice"), "GET", "/v1/query", &[]).status, 200);
    // With a token, the token decides, whatever the certificate.
    let r = pki.call(srv.addr, Some("alice"), "GET", "/v1/query", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 403, "{}", r.text());
    srv.stop();
}

#[test]
fn a_renewed_certificate_is_served_to_new_clients_without_restart() {
    let pki = Pki::new();
    let first = std::fs::read(pki.path("server.pem")).unwrap();
    let first = CertificateDer::from_pem_slice(&first).unwrap().as_ref().to_vec();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.tls = Some(pki.tls_config(true));
        c.auth.cert_principals = vec![alice(&["read:*"])];
        c.auth.reload_interval = Duration::from_millis(100);
    });
    assert_eq!(pki.served_cert(srv.addr), first);
    let renewed = pki.server_cert("renewed");
    assert_ne!(renewed, first);
    let start = Instant::now();
    while pki.served_cert(srv.addr) != renewed {
        assert!(start.elapsed() < Duration::from_secs(10), "the renewed certificate was never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A key that does not load leaves the last good certificate in force.
    std::fs::write(pki.path("server-key.pem"), b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pki.served_cert(srv.addr), renewed);
    assert_eq!(pki.call(srv.addr, Some("alice"), "GET", "/v1/query", &[]).status, 200);
    srv.stop();
}

fn curl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("curl"))
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("STELE_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("STELE_REQUIRE_PEERS=1 but curl is missing (apt-get install curl)");
        }
        eprintln!("skipping: curl not found");
    }
    found
}

fn run_curl(curl: &Path, pki: &Pki, addr: SocketAddr, client: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(curl);
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    cmd.args(["-sS", "--max-time", "20", "--resolve", &resolve, "--cacert"]).arg(pki.path("ca.pem"));
    if let Some(name) = client {
        cmd.arg("--cert").arg(pki.path(&format!("{name}.pem")));
        cmd.arg("--key").arg(pki.path(&format!("{name}-key.pem")));
    }
    cmd.args(["-w", "\n%{http_code}"]).args(args);
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn curl_appends_and_reads_over_mutual_tls() {
    let Some(curl) = curl() else { return };
    let pki = Pki::new();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.tls = Some(pki.tls_config(true));
        c.auth.cert_principals = vec![alice(&["append:prod", "read:prod"])];
    });
    let base = format!("https://localhost:{}", srv.addr.port());
    let (code, out) = run_curl(
        &curl,
        &pki,
        srv.addr,
        Some("alice"),
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"actor":"curl","action":"login"}"#,
            &format!("{base}/v1/events?stream=prod"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{out}");
    let index = serde_json::from_str::<serde_json::Value>(body).unwrap()["entries"][0]["index"].as_u64().unwrap();
    let (code, out) = run_curl(&curl, &pki, srv.addr, Some("alice"), &[&format!("{base}/v1/entries/{index}")]);
    assert_eq!(code, 0, "{out}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "200");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event"]["actor"], "curl");
    // Without a client certificate curl's handshake is refused.
    let (code, _) = run_curl(&curl, &pki, srv.addr, None, &[&format!("{base}/healthz")]);
    assert_ne!(code, 0, "curl without a certificate got through");
    // The certificate of another CA as well.
    let (code, _) = run_curl(&curl, &pki, srv.addr, Some("eve"), &[&format!("{base}/healthz")]);
    assert_ne!(code, 0, "curl with another CA's certificate got through");
    srv.stop();
}

#[test]
fn otlp_grpc_over_mutual_tls() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use stele_formats::otlp::proto::{
        AnyValue, ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs, any_value,
    };
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let pki = Pki::new();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.tls = Some(pki.tls_config(true));
        c.auth.cert_principals = vec![alice(&["append:otlp"])];
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
    });
    let grpc = srv.otlp_grpc_addr.unwrap();
    let request = || {
        let record = LogRecord {
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("over mTLS".into())) }),
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: vec![record], ..ScopeLogs::default() }],
                ..ResourceLogs::default()
            }],
        }
    };
    let read = |name: &str| std::fs::read(pki.path(name)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let connect = |client: Option<&str>| {
            let mut tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem"))).domain_name("localhost");
            if let Some(name) = client {
                tls = tls.identity(Identity::from_pem(read(&format!("{name}.pem")), read(&format!("{name}-key.pem"))));
            }
            Channel::from_shared(format!("https://localhost:{}", grpc.port())).unwrap().tls_config(tls).unwrap()
        };
        let channel = connect(Some("alice")).connect().await.unwrap();
        let mut c = LogsServiceClient::new(channel);
        c.export(request()).await.expect("alice may append to otlp");
        let mut req = tonic::Request::new(request());
        req.metadata_mut().insert("x-stele-stream", "prod".parse().unwrap());
        assert_eq!(c.export(req).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        // Issued by the CA but no principal: the call is refused.
        let mut m = LogsServiceClient::new(connect(Some("mallory")).connect().await.unwrap());
        assert_eq!(m.export(request()).await.unwrap_err().code(), tonic::Code::Unauthenticated);
        // Another CA, or no certificate: no call gets through.
        for client in [Some("eve"), None] {
            let refused = match connect(client).connect().await {
                Err(_) => true,
                Ok(ch) => LogsServiceClient::new(ch).export(request()).await.is_err(),
            };
            assert!(refused, "{client:?} got through");
        }
    });
    let dir = srv.stop();
    let log = stele_store::Log::open(dir.path(), Default::default()).unwrap();
    let reader = log.reader();
    let otlp = (0..reader.tree_size()).filter_map(|i| reader.entry(i).ok()).filter(|e| e.stream == "otlp").count();
    assert_eq!(otlp, 1);
}

#[test]
fn a_renewed_syslog_certificate_is_served_to_new_senders_without_restart() {
    let pki = Pki::new();
    let first = std::fs::read(pki.path("server.pem")).unwrap();
    let first = CertificateDer::from_pem_slice(&first).unwrap().as_ref().to_vec();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.syslog.tls = Some(stele_server::syslog::SyslogTlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_pem: pki.path("server.pem"),
            key_pem: pki.path("server-key.pem"),
            client_ca_pem: Some(pki.path("ca.pem")),
        });
        c.auth.reload_interval = Duration::from_millis(100);
    });
    let addr = srv.running().syslog_tls_addr().unwrap();
    let served = || {
        use std::io::Write;
        let mut s = pki.connect(addr, Some("alice"));
        // RFC 5425 framing: one octet-counted message; the handshake runs first.
        s.write_all(b"26 <13>1 - h app - - - renewal").unwrap();
        s.flush().unwrap();
        s.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    assert_eq!(served(), first);
    let renewed = pki.server_cert("renewed");
    let start = Instant::now();
    while served() != renewed {
        assert!(start.elapsed() < Duration::from_secs(10), "the renewed certificate was never served on syslog TLS");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A key that does not load leaves the last good certificate in force.
    std::fs::write(pki.path("server-key.pem"), b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(served(), renewed);
    srv.stop();
}

#[test]
fn a_stalled_tls_handshake_is_closed_after_the_request_timeout() {
    use std::io::Read;
    let pki = Pki::new();
    let srv = TestServer::fresh("tls.test/log", |c| {
        c.tls = Some(pki.tls_config(true));
        c.auth.cert_principals = vec![alice(&["read:*"])];
        c.request_timeout = Duration::from_secs(1);
        c.receipt_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(5);
    });
    // Connect and never start the handshake: the server closes the connection once
    // the request timeout has passed (its slot is not held for ever).
    let mut sock = TcpStream::connect(srv.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = sock.read(&mut buf).unwrap_or(0);
    let waited = start.elapsed();
    assert_eq!(n, 0, "the server sent bytes to a client that never said hello");
    assert!(waited >= Duration::from_millis(900), "closed after {waited:?}, before the timeout");
    // Before the idle timeout (5 s): the handshake timeout closed it.
    assert!(waited < Duration::from_secs(4), "still open after {waited:?}");
    // The listener still serves.
    assert_eq!(pki.call(srv.addr, Some("alice"), "GET", "/v1/query", &[]).status, 200);
    srv.stop();
}
