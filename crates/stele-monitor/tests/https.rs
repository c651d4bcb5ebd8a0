//! The monitor over HTTPS: a local rustls server with a self-signed certificate serves
//! the Tessera test log; the monitor checks it when told to trust that certificate and
//! refuses the connection when it is not.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stele_monitor::{HttpSource, Options, Outcome, State, check_once};
use stele_tlog::note::NoteVerifier;

const VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn tessera() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/vectors/tessera/testdata/log"));
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var("STELE_REQUIRE_PEERS").as_deref() != Ok("1"),
        "STELE_REQUIRE_PEERS=1 but ../shared is missing"
    );
    eprintln!("skipping: ../shared not found");
    None
}

/// Serves files of `root` over HTTPS on a loopback port, one request per connection.
fn serve(root: PathBuf, cert: rcgen::CertifiedKey<rcgen::KeyPair>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut line = String::new();
            if BufReader::new(&mut tls).read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let (status, body) = match std::fs::read(root.join(&path)) {
                Ok(b) if !path.contains("..") => ("200 OK", b),
                _ => ("404 Not Found", Vec::new()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = tls.write_all(head.as_bytes()).and_then(|_| tls.write_all(&body)).and_then(|_| tls.flush());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn monitor_checks_a_log_over_https_with_a_private_ca() {
    let Some(log) = tessera() else { return };
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_pem = cert.cert.pem();
    let port = serve(log, cert);
    let url = format!("https://localhost:{port}");
    let verifier = NoteVerifier::parse(VKEY).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let source = HttpSource::with_ca(&url, Duration::from_secs(10), Some(ca_pem.as_bytes())).unwrap();
    let state = State::new(tmp.path().join("state"));
    let out = check_once(&source, &verifier, &state, &Options { entries: true }).unwrap();
    assert!(matches!(out, Outcome::FirstUse { .. }), "{out:?}");

    // Without the private CA the certificate is not trusted: a network error, not a pass.
    let untrusted = HttpSource::new(&url, Duration::from_secs(10)).unwrap();
    let state = State::new(tmp.path().join("state2"));
    let err = check_once(&untrusted, &verifier, &state, &Options { entries: false }).unwrap_err();
    assert!(!err.is_detection(), "{err}");
}
