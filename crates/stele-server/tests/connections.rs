//! Connection limits: idle connections and clients trickling a request are closed, so
//! they cannot hold every connection slot; everyone else is served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TestServer, request};

fn server() -> TestServer {
    TestServer::fresh("conn.example/log", |c| {
        c.max_connections = 8;
        c.request_timeout = Duration::from_millis(500);
        c.receipt_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_millis(1500);
    })
}

/// Blocks until the server closes `s` (EOF or reset); how long that took.
fn closed_after(mut s: TcpStream, started: Instant) -> Duration {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn idle_connections_cannot_starve_other_clients() {
    let server = server();
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // Every slot is held; this request waits in the backlog until the idle ones go.
    let r = request(server.addr, "POST", "/v1/events", &[], b"{\"a\":1}");
    assert_eq!(r.status, 200, "{}", r.text());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "served before the idle connections were closed: {waited:?}");
    for s in idle {
        let t = closed_after(s, started);
        assert!(t < Duration::from_secs(10), "an idle connection stayed open {t:?}");
    }
}

#[test]
fn a_client_trickling_its_request_is_cut_off() {
    let server = server();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").unwrap();
    // One header line every 200 ms: bytes keep coming, a request never completes.
    let mut cut = false;
    for i in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).is_err() {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let t = if cut { started.elapsed() } else { closed_after(s, started) };
    assert!(t < Duration::from_secs(8), "the trickling client was kept for {t:?}");
    assert!(t >= Duration::from_millis(1400), "cut before the idle timeout: {t:?}");
    // The server still answers.
    assert_eq!(request(server.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn an_idle_timeout_shorter_than_a_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "conn.example/log").unwrap();
    let mut config = stele_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.idle_timeout = Duration::from_secs(5);
    let log = stele_store::Log::open(dir.path(), config.log_options.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let err = rt.block_on(stele_server::start(config, log, async {})).err().expect("refused");
    assert!(err.to_string().contains("idle_timeout"), "{err}");
}
