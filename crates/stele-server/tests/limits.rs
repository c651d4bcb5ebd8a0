//! The limits of docs/limits.md that have no test elsewhere: the request head
//! (HTTP and OTLP/gRPC), connections per client (HTTP, OTLP/gRPC, syslog TCP) and the
//! read rate per principal. Each test checks what a client actually receives, with a
//! raw socket where the HTTP client would hide it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Resp, TestServer, request, request_on};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use stele_server::tokens::{Grant, TokenFile};

/// Everything the server sends on `s` until it closes the connection, and whether it
/// ended with a reset rather than a clean close.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(e) => panic!("reading: {e} after {} bytes", out.len()),
        }
    }
}

/// The value of an OpenMetrics sample line starting with `line_start` (0 if absent).
fn metric(addr: SocketAddr, line_start: &str) -> u64 {
    metric_counting_refusals(addr, line_start).0
}

/// As [`metric`], also returning how many times `GET /metrics` was refused with 429
/// first (with a small `max_connections_per_client`, the previous request's
/// connection may not be released yet).
fn metric_counting_refusals(addr: SocketAddr, line_start: &str) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let r = request(addr, "GET", "/metrics", &[], b"");
        if r.status == 429 && Instant::now() < deadline {
            refused += 1;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse::<f64>().unwrap() as u64))
            .unwrap_or(0);
        return (v, refused);
    }
}

/// A request head of about `bytes` bytes: `GET /healthz` with one filler header.
fn head_of(bytes: usize) -> Vec<u8> {
    let start = "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Filler: ";
    let mut head = start.as_bytes().to_vec();
    head.resize(bytes.saturating_sub(4).max(start.len()), b'a');
    head.extend_from_slice(b"\r\n\r\n");
    head
}

#[test]
fn a_request_head_over_max_header_bytes_gets_431_from_hyper() {
    let server = TestServer::fresh("limits.test/log", |c| c.max_header_bytes = 16 << 10);
    // Just under the limit: served.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&head_of(15 << 10)).unwrap();
    let (raw, _) = read_until_closed(&mut s);
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&raw));

    // Over it, the whole head written before the answer is read: the exact answer.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&head_of(17 << 10)).unwrap();
    let (raw, reset) = read_until_closed(&mut s);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{text:?} (reset: {reset})");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-length: 0\r\n"), "{text:?}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");

    // More than 100 header fields, each short, in a head far below the byte limit.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: test\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(many.as_bytes()).unwrap();
    let (raw, _) = read_until_closed(&mut s);
    assert!(raw.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{}", String::from_utf8_lossy(&raw));

    // The server goes on serving.
    assert_eq!(request(server.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn max_header_bytes_below_the_http_servers_buffer_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "limits.test/log").unwrap();
    let mut config = stele_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.max_header_bytes = 4096;
    let log = stele_store::Log::open(dir.path(), config.log_options.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let err = rt.block_on(stele_server::start(config, log, async {})).err().expect("refused");
    assert!(err.to_string().contains("max_header_bytes must be at least 8192"), "{err}");
}

/// A keep-alive connection that has been served once, so the server counts it.
fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    s
}

/// A connection to `addr` from the local address `from` (any 127/8 address works on
/// Linux loopback).
fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(format!("{from}:0").parse().unwrap())?;
        sock.connect(addr).await?.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

#[test]
fn a_client_over_its_connection_share_gets_429_and_others_are_served() {
    let server = TestServer::fresh("limits.test/log", |c| c.max_connections_per_client = 2);
    let held = [served_connection(server.addr), served_connection(server.addr)];
    let started = Instant::now();
    let mut third = TcpStream::connect(server.addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r: Resp = request_on(&mut third, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["error"].as_str().unwrap().contains("max_connections_per_client"), "{v}");
    assert_eq!(v["retry_after_seconds"], 1, "{v}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once, not after a wait");

    // Another client (another loopback address) is served meanwhile.
    match connect_from("127.0.0.2", server.addr) {
        Ok(mut other) => {
            other.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            assert_eq!(request_on(&mut other, "GET", "/healthz", &[], b"").status, 200);
        }
        Err(e) => eprintln!("skipping the second-client check: cannot bind 127.0.0.2 ({e})"),
    }

    // A refused connection that sends nothing is closed after its fixed lifetime.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let t = Instant::now();
    let (raw, _) = read_until_closed(&mut silent);
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    let lived = t.elapsed();
    assert!(lived >= Duration::from_secs(4) && lived < Duration::from_secs(10), "lived {lived:?}");

    // Once one of the two closes, the client is served again, and the refusals show.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused_meanwhile = 0;
    loop {
        let r = request(server.addr, "GET", "/healthz", &[], b"");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429);
        refused_meanwhile += 1;
        assert!(Instant::now() < deadline, "still refused: {}", r.status);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (n, seen) = metric_counting_refusals(server.addr, "stele_connections_refused_total{listener=\"http\"}");
    assert_eq!(n, 2 + refused_meanwhile + seen, "the third and the silent connection, and any refused since");
}

fn one_record() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord { time_unix_nano: 1, ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn grpc_connections_over_the_share_are_refused_and_heads_are_bounded() {
    let server = TestServer::fresh("limits.test/log", |c| {
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
        c.max_connections_per_client = 1;
        c.max_header_bytes = 16 << 10;
    });
    let grpc = server.otlp_grpc_addr.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap();
        let mut first = LogsServiceClient::new(endpoint.connect().await.unwrap());
        first.export(one_record()).await.expect("the first connection is served");

        // A second connection from the same address: every call is refused, retryable.
        let mut second = LogsServiceClient::new(endpoint.connect().await.unwrap());
        let status = second.export(one_record()).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_connections_per_client"), "{status:?}");
        let retry = tonic_types::StatusExt::get_details_retry_info(&status).expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));

        // Metadata over max_header_bytes: h2 answers HTTP 431 without grpc-status, which
        // gRPC clients map to UNKNOWN (gRPC "HTTP to gRPC Status Code Mapping").
        let mut req = tonic::Request::new(one_record());
        req.metadata_mut().insert("x-filler", "a".repeat(20 << 10).parse().unwrap());
        let status = first.export(req).await.expect_err("header list too large");
        assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
        assert!(status.message().contains("431"), "{status:?}");
        // The connection stays usable.
        first.export(one_record()).await.expect("served after the oversized call");
    });
    assert_eq!(metric(server.addr, "stele_connections_refused_total{listener=\"otlp-grpc\"}"), 1);
    assert_eq!(metric(server.addr, "stele_ingest_events_total{protocol=\"otlp-grpc\",result=\"accepted\"}"), 2);
    assert_eq!(metric(server.addr, "stele_ingest_events_total{protocol=\"otlp-grpc\",result=\"rejected\"}"), 1);
}

#[test]
fn syslog_connections_over_the_share_are_closed_and_counted() {
    let server = TestServer::fresh("limits.test/log", |c| {
        c.syslog.tcp = Some("127.0.0.1:0".parse().unwrap());
        c.syslog.max_connections_per_client = 1;
    });
    let tcp = server.running().syslog_tcp_addr().unwrap();
    let mut first = TcpStream::connect(tcp).unwrap();
    first.write_all(b"<13>1 2026-11-29T20:00:00Z host app - - - one\n").unwrap();
    // The first connection is accepted (and counted) once its message is stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}") < 1 {
        assert!(Instant::now() < deadline, "the first message was not stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = TcpStream::connect(tcp).unwrap();
    let _ = second.write_all(b"<13>1 2026-11-29T20:00:01Z host app - - - two\n");
    let (raw, _) = read_until_closed(&mut second);
    assert!(raw.is_empty());
    let closed = "stele_syslog_connections_closed_total{protocol=\"syslog-tcp\",reason=\"too_many_from_client\"}";
    assert_eq!(metric(server.addr, closed), 1);
    assert_eq!(metric(server.addr, "stele_connections_refused_total{listener=\"syslog-tcp\"}"), 1);
    assert_eq!(metric(server.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}"), 1);
    // The first connection is still served.
    first.write_all(b"<13>1 2026-11-29T20:00:02Z host app - - - three\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server.addr, "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}") < 2 {
        assert!(Instant::now() < deadline, "the held connection stopped being served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn make_tokens(dir: &Path, specs: &[(&str, &str)]) -> Vec<String> {
    let mut file = TokenFile::load(dir).unwrap().unwrap_or_default();
    let out = specs
        .iter()
        .map(|(name, grant)| file.create(name, &[grant.parse::<Grant>().unwrap()], stele_store::log::now_ns()).unwrap())
        .collect();
    file.save(dir).unwrap();
    out
}

#[test]
fn reads_past_read_requests_per_second_get_429_per_principal() {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), "limits.test/log").unwrap();
    let tokens = make_tokens(dir.path(), &[("reader-a", "read:*"), ("reader-b", "read:*"), ("writer", "append:*")]);
    let server = TestServer::start(dir, |c| c.read_requests_per_second = 2);
    let bearer: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
    let get = |who: usize, path: &str| request(server.addr, "GET", path, &[("Authorization", &bearer[who])], b"");
    let post = |who: usize| {
        let h = [("Authorization", bearer[who].as_str()), ("Content-Type", "application/json")];
        request(server.addr, "POST", "/v1/events", &h, b"{\"a\":1}")
    };
    // Appends are not reads: a burst of them is not charged.
    for _ in 0..5 {
        assert_eq!(post(2).status, 200);
    }
    // A bucket of 2: two reads pass, the third (well within a second) is refused.
    assert_eq!(get(0, "/v1/query").status, 200);
    assert_eq!(get(0, "/v1/entries/0").status, 200);
    let r = get(0, "/v1/query");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let v = r.json();
    assert!(v["error"].as_str().unwrap().contains("read_requests_per_second"), "{v}");
    assert_eq!(v["retry_after_seconds"], 1, "{v}");
    // Another principal has its own bucket.
    assert_eq!(get(1, "/v1/query").status, 200);
    // The bucket refills at its rate.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get(0, "/v1/query").status, 200);
}

#[test]
fn a_body_slower_than_request_timeout_gets_408() {
    let server = TestServer::fresh("limits.test/log", |c| {
        c.request_timeout = Duration::from_millis(500);
        c.receipt_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_secs(5);
    });
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .unwrap();
    let started = Instant::now();
    let (raw, _) = read_until_closed(&mut s);
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text:?}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("did not arrive within"), "{v}");
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(4), "{waited:?}");
}

/// `depth` arrays nested in an object: `{"a":[[...]]}`.
fn nested(depth: usize) -> String {
    format!("{{\"a\":{}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1))
}

#[test]
fn json_nesting_is_bounded_as_serde_json_bounds_it() {
    let server = TestServer::fresh("limits.test/log", |_| {});
    // serde_json, the reference, accepts 127 nested containers and refuses 128.
    assert!(serde_json::from_str::<serde_json::Value>(&nested(127)).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&nested(128)).is_err());
    for depth in [127, 128] {
        let doc = nested(depth);
        let reference = serde_json::from_str::<serde_json::Value>(&doc).is_ok();
        let batch = format!("[{{\"ok\":1}},{doc}]");
        let r = request(server.addr, "POST", "/v1/events", &[("Content-Type", "application/json")], batch.as_bytes());
        if reference {
            assert_eq!(r.status, 200, "depth {depth}: {}", r.text());
        } else {
            assert_eq!(r.status, 400, "depth {depth}: {}", r.text());
            let v = r.json();
            assert_eq!(v["item"], 1, "{v}");
            assert!(v["error"].is_string(), "{v}");
        }
    }
}

#[test]
fn stream_names_and_admin_bodies_are_bounded() {
    let server = TestServer::fresh("limits.test/log", |_| {});
    let json = [("Content-Type", "application/json")];
    let name = |n: usize| "s".repeat(n);
    let r = request(server.addr, "POST", &format!("/v1/events?stream={}", name(128)), &json, b"{\"a\":1}");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(server.addr, "POST", &format!("/v1/events?stream={}", name(129)), &json, b"{\"a\":1}");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].is_string());

    // A hold is a few short strings: a body over 64 KiB is refused before it is parsed.
    let big = format!(r#"{{"case":"c-1","stream":"default","reason":"{}"}}"#, "r".repeat(64 << 10));
    let r = request(server.addr, "POST", "/v1/admin/holds", &json, big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    let v = r.json();
    assert_eq!(v["limit"], 64 << 10, "{v}");
    assert!(v["error"].as_str().unwrap().contains("exceeds the limit"), "{v}");
}

#[test]
fn refused_connections_past_the_refusal_slots_are_closed_unanswered() {
    let server = TestServer::fresh("limits.test/log", |c| c.max_connections_per_client = 1);
    let _held = served_connection(server.addr);
    // 64 refused connections that send nothing each hold a refusal slot for 5 s.
    let silent: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    // The next one finds no slot: closed at once, before its request is read.
    let mut next = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let (raw, _) = read_until_closed(&mut next);
    let took = started.elapsed();
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    assert!(took < Duration::from_secs(3), "closed after {took:?}, not at once");
    drop(silent);
}

#[test]
fn syslog_connections_over_the_total_are_closed_and_counted() {
    let server = TestServer::fresh("limits.test/log", |c| {
        c.syslog.tcp = Some("127.0.0.1:0".parse().unwrap());
        c.syslog.max_connections = 1;
    });
    let tcp = server.running().syslog_tcp_addr().unwrap();
    let accepted = "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}";
    let mut first = TcpStream::connect(tcp).unwrap();
    first.write_all(b"<13>1 2026-11-29T20:00:00Z host app - - - one\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server.addr, accepted) < 1 {
        assert!(Instant::now() < deadline, "the first message was not stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Over the total (one), whatever the client: closed at once, nothing stored.
    let mut second = TcpStream::connect(tcp).unwrap();
    let _ = second.write_all(b"<13>1 2026-11-29T20:00:01Z host app - - - two\n");
    let (raw, _) = read_until_closed(&mut second);
    assert!(raw.is_empty());
    let closed = "stele_syslog_connections_closed_total{protocol=\"syslog-tcp\",reason=\"too_many_connections\"}";
    assert_eq!(metric(server.addr, closed), 1);
    assert_eq!(metric(server.addr, accepted), 1);
    // Once the first one leaves, a new connection is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut third = TcpStream::connect(tcp).unwrap();
        let _ = third.write_all(b"<13>1 2026-11-29T20:00:02Z host app - - - three\n");
        std::thread::sleep(Duration::from_millis(200));
        if metric(server.addr, accepted) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no connection was served after the first one left");
    }
}

#[test]
fn a_request_target_over_the_hyper_bound_gets_414() {
    // A head limit above the target bound, so the target's own bound answers.
    let server = TestServer::fresh("limits.test/log", |c| c.max_header_bytes = 256 << 10);
    let send = |target_len: usize| {
        let mut target = String::from("/v1/query?actor=");
        target.push_str(&"a".repeat(target_len - target.len()));
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        String::from_utf8_lossy(&read_until_closed(&mut s).0).into_owned()
    };
    // Far below the bound the route answers (whatever it says); past it, hyper's 414.
    let short = send(1000);
    assert!(short.starts_with("HTTP/1.1 "), "{short:?}");
    assert!(!short.starts_with("HTTP/1.1 414"), "{short:?}");
    let long = send(70_000);
    assert!(long.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{long:?}");
    assert_eq!(request(server.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn an_idle_otlp_grpc_connection_is_closed_after_the_idle_timeout() {
    use std::io::Read as _;
    let server = TestServer::fresh("limits.test/log", |c| {
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
        c.request_timeout = Duration::from_secs(1);
        c.receipt_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(2);
    });
    let grpc = server.otlp_grpc_addr.unwrap();
    // A connection that never sends its HTTP/2 preface gets nothing and is closed
    // once the idle timeout has passed.
    let mut s = TcpStream::connect(grpc).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1900), "closed after {waited:?}, before the idle timeout");
    assert!(waited < Duration::from_secs(10), "still open after {waited:?}");
}

#[test]
fn the_token_file_is_bounded_in_tokens_and_bytes() {
    use stele_server::tokens::{MAX_FILE_BYTES, MAX_TOKENS};
    let dir = tempfile::tempdir().unwrap();
    let grant = ["read:*".parse::<Grant>().unwrap()];
    let mut file = TokenFile { version: 1, ..TokenFile::default() };
    for i in 0..MAX_TOKENS {
        file.create(&format!("t{i}"), &grant, 1).unwrap();
    }
    file.save(dir.path()).unwrap();
    assert_eq!(TokenFile::load(dir.path()).unwrap().unwrap().tokens.len(), MAX_TOKENS);
    let err = file.create("one-more", &grant, 1).unwrap_err();
    assert!(err.to_string().contains(&format!("already holds {MAX_TOKENS} tokens")), "{err}");
    // A file edited past the bound is refused as a whole.
    let mut over = file.clone();
    let mut extra = over.tokens[0].clone();
    extra.name = "extra".into();
    over.tokens.push(extra);
    let err = TokenFile::parse(&serde_json::to_vec(&over).unwrap()).unwrap_err();
    assert!(err.contains(&format!("{} tokens, more than the limit of {MAX_TOKENS}", MAX_TOKENS + 1)), "{err}");
    // Bytes: a file over 8 MiB is refused before it is read.
    let path = dir.path().join("tokens.json");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap();
    let err = TokenFile::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&format!("more than the limit of {MAX_FILE_BYTES}")), "{err}");
}

/// Appends `n` small JSON events (actors `user-0`, `user-1`, ...) in requests of 5,000.
fn append_small_events(addr: SocketAddr, n: usize) {
    for start in (0..n).step_by(5000) {
        let events: Vec<String> =
            (start..(start + 5000).min(n)).map(|i| format!(r#"{{"actor":"user-{i}","action":"read"}}"#)).collect();
        let body = format!("[{}]", events.join(","));
        let r = request(addr, "POST", "/v1/events", &[("Content-Type", "application/json")], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn a_query_past_request_timeout_gets_503_or_ends_with_an_error_line() {
    let server = TestServer::fresh("limits.test/log", |_| {});
    let n = 150_000;
    append_small_events(server.addr, n);
    // A wildcard filter, which no Bloom filter excludes: the query looks at every entry
    // and matches none. Timed here under the default timeout, to size the small one.
    let none = "/v1/query?actor=nobody*&limit=100000";
    let all = "/v1/query?stream=default&limit=100000";
    let started = Instant::now();
    let r = request(server.addr, "GET", none, &[], b"");
    let scan = started.elapsed();
    assert_eq!((r.status, r.text()), (200, String::new()));
    let started = Instant::now();
    let r = request(server.addr, "GET", all, &[], b"");
    let full = started.elapsed();
    assert_eq!(r.status, 200);
    let lines = r.lines();
    assert_eq!(lines.len(), 100_000, "the first 100,000 (the most a query gives), no error line");
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    // A timeout a tenth of the shorter of the two: both stop well before their end.
    let timeout = (scan.min(full) / 10).max(Duration::from_millis(1));
    eprintln!("a scan of {n} entries took {scan:?}, reading all of them {full:?}: timeout {timeout:?}");
    assert!(scan.min(full) >= timeout * 5, "the queries take {scan:?} and {full:?}: too fast to bound");
    let server = TestServer::start(server.stop(), |c| c.request_timeout = timeout);

    // Nothing found before the deadline: 503 and a JSON error naming the limit.
    let r = request(server.addr, "GET", none, &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("request_timeout") && e.contains("0 hits"), "{e}");

    // Hits were found: 200, the hits, then one final error line.
    let r = request(server.addr, "GET", all, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.lines();
    let (last, hits) = lines.split_last().unwrap();
    let e = last["error"].as_str().unwrap_or_else(|| panic!("no final error line: {last}"));
    assert!(e.contains("request_timeout") && e.contains(&format!("{} hits", hits.len())), "{e}");
    assert!(!hits.is_empty() && hits.len() < 100_000, "{} hits", hits.len());
    assert!(hits.iter().all(|h| h["stream"] == "default" && h.get("error").is_none()));
}

#[test]
fn grpc_connections_over_the_total_are_refused_and_counted() {
    let server = TestServer::fresh("limits.test/log", |c| {
        c.otlp_grpc = Some("127.0.0.1:0".parse().unwrap());
        c.max_connections = 2;
    });
    let grpc = server.otlp_grpc_addr.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let later = rt.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap();
        let connect = || async {
            let channel = tokio::time::timeout(Duration::from_secs(10), endpoint.connect())
                .await
                .expect("the connection is answered, not left in the backlog")
                .unwrap();
            LogsServiceClient::new(channel)
        };
        let mut first = connect().await;
        let mut second = connect().await;
        first.export(one_record()).await.expect("the first connection is served");
        second.export(one_record()).await.expect("the second connection is served");

        // A third, from the same client (whose share is far from used): refused at
        // once, retryable, naming the total.
        let started = Instant::now();
        let mut third = connect().await;
        let status = tokio::time::timeout(Duration::from_secs(10), third.export(one_record()))
            .await
            .expect("answered, not left waiting")
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("(max_connections)"), "{status:?}");
        let retry = tonic_types::StatusExt::get_details_retry_info(&status).expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
        assert!(started.elapsed() < Duration::from_secs(5));
        // The two served connections still are.
        first.export(one_record()).await.expect("still served");

        // Once one closes, a new connection is served (refusals meanwhile are counted).
        drop(second);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut refused_meanwhile = 0;
        loop {
            let mut next = connect().await;
            match next.export(one_record()).await {
                Ok(_) => break,
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                    refused_meanwhile += 1;
                    assert!(Instant::now() < deadline, "still refused after a connection closed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        refused_meanwhile
    });
    let refused = "stele_connections_refused_total{listener=\"otlp-grpc\"}";
    assert_eq!(metric(server.addr, refused), 1 + later);
    assert_eq!(metric(server.addr, "stele_ingest_events_total{protocol=\"otlp-grpc\",result=\"accepted\"}"), 4);
    assert_eq!(metric(server.addr, "stele_ingest_events_total{protocol=\"otlp-grpc\",result=\"rejected\"}"), 1 + later);
}

/// Sends `messages` on one syslog TCP connection (LF framing, one write), closes it,
/// and returns the stream's entries once all are stored: (received_ns, payload) each.
fn syslog_batches(messages: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    use base64::Engine as _;
    let server = TestServer::fresh("limits.test/log", |c| c.syslog.tcp = Some("127.0.0.1:0".parse().unwrap()));
    let tcp = server.running().syslog_tcp_addr().unwrap();
    let mut s = TcpStream::connect(tcp).unwrap();
    let mut all = Vec::new();
    for m in messages {
        all.extend_from_slice(m);
        all.push(b'\n');
    }
    s.write_all(&all).unwrap();
    drop(s);
    let accepted = "stele_ingest_events_total{protocol=\"syslog-tcp\",result=\"accepted\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(server.addr, accepted) < messages.len() as u64 {
        assert!(Instant::now() < deadline, "not every message was stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = request(server.addr, "GET", "/v1/query?stream=syslog&limit=100000", &[], b"");
    assert_eq!(r.status, 200);
    r.lines()
        .iter()
        .map(|l| {
            let payload =
                base64::engine::general_purpose::STANDARD.decode(l["event_base64"].as_str().unwrap()).unwrap();
            (l["received_ns"].as_u64().unwrap(), payload)
        })
        .collect()
}

/// Entries of one append share their received time (one commit); one connection's
/// batches are appended one after the other, so its entries grouped by received time
/// are its batches. Returns (messages, bytes) per batch.
fn batches_of(entries: &[(u64, Vec<u8>)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(u64, usize, usize)> = Vec::new();
    for (t, p) in entries {
        match out.last_mut() {
            Some((lt, n, b)) if lt == t => {
                *n += 1;
                *b += p.len();
            }
            _ => out.push((*t, 1, p.len())),
        }
    }
    out.into_iter().map(|(_, n, b)| (n, b)).collect()
}

#[test]
fn one_syslog_connection_is_appended_in_batches_of_at_most_1000_messages_and_1_mib() {
    // 2,500 short messages, written at once: a single read holds more than 1,000.
    let small: Vec<Vec<u8>> = (0..2500).map(|i| format!("<13>1 - h a - - - m{i:05}").into_bytes()).collect();
    let entries = syslog_batches(&small);
    assert_eq!(entries.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), small, "all, in order, byte for byte");
    let batches = batches_of(&entries);
    assert!(batches.iter().all(|&(n, _)| n <= stele_server::syslog::BATCH_EVENTS), "{batches:?}");
    assert!(batches.len() >= 3, "{batches:?}");

    // 40 messages of 60,000 bytes (2.4 MB): at most 17 fit in 1 MiB.
    let large: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let mut m = format!("<13>1 - h a - - - L{i:02} ").into_bytes();
            m.resize(60_000, b'x');
            m
        })
        .collect();
    let entries = syslog_batches(&large);
    assert_eq!(entries.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), large, "all, in order, byte for byte");
    let batches = batches_of(&entries);
    assert!(batches.iter().all(|&(_, b)| b <= stele_server::syslog::BATCH_BYTES), "{batches:?}");
    assert!(batches.len() >= 3, "{batches:?}");
}
