//! `stele-otlp-load`: OTLP/HTTP load for a running stele server, counting only
//! durable (acknowledged) log records.
//!
//! ```text
//! stele-otlp-load --addr 127.0.0.1:7300 [--connections 8] [--batch 512] [--duration 10]
//! ```
//!
//! Each of `connections` clients holds one keep-alive HTTP/1.1 connection and posts
//! `POST /v1/logs` protobuf `ExportLogsServiceRequest`s of `batch` log records
//! (one resource with `service.name`, one scope, records of about 300 bytes with
//! semantic-convention attributes: `enduser.id`, `event.name`, `url.path`,
//! `http.response.status_code`, `client.address`) back to back for `duration`
//! seconds. A 200 must carry an `ExportLogsServiceResponse` without
//! `partial_success`; its records count as durable. 503 answers are counted and
//! retried after their `Retry-After`. Prints durable records/s and requests/s; exits
//! non-zero on any other answer. Loopback addresses only.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Distinct request bodies each client cycles through (every entry is salted, so
/// repeating a body still makes distinct leaves).
const BODIES_PER_CLIENT: usize = 16;
/// Upper bounds on the arguments, so that a typo cannot exhaust the machine.
const MAX_CONNECTIONS: usize = 1024;
const MAX_BATCH: usize = 10_000;
const MAX_DURATION_S: u64 = 3600;

fn usage() -> &'static str {
    "usage: stele-otlp-load --addr 127.0.0.1:PORT [--connections 8] [--batch 512] [--duration SECONDS]"
}

struct Args {
    addr: SocketAddr,
    connections: usize,
    batch: usize,
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (mut addr, mut connections, mut batch, mut duration) = (None, 8usize, 512usize, 10u64);
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        let value = it.next().ok_or_else(|| format!("{key} needs a value\n{}", usage()))?;
        let bad = |_| format!("{key}: bad value {value:?}");
        match key.as_str() {
            "--addr" => addr = Some(value.parse::<SocketAddr>().map_err(|_| format!("--addr {value:?}"))?),
            "--connections" => connections = value.parse().map_err(bad)?,
            "--batch" => batch = value.parse().map_err(bad)?,
            "--duration" => duration = value.parse().map_err(bad)?,
            _ => return Err(usage().to_string()),
        }
    }
    let addr = addr.ok_or_else(|| usage().to_string())?;
    if !addr.ip().is_loopback() {
        return Err("only loopback addresses are accepted".into());
    }
    if !(1..=MAX_CONNECTIONS).contains(&connections)
        || !(1..=MAX_BATCH).contains(&batch)
        || !(1..=MAX_DURATION_S).contains(&duration)
    {
        return Err(format!(
            "--connections 1..={MAX_CONNECTIONS}, --batch 1..={MAX_BATCH}, --duration 1..={MAX_DURATION_S}"
        ));
    }
    Ok(Args { addr, connections, batch, duration: Duration::from_secs(duration) })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}

fn text(s: String) -> any_value::Value {
    any_value::Value::StringValue(s)
}

/// One protobuf request of `batch` records, different for each (client, n).
fn request_body(client: usize, n: usize, batch: usize) -> Vec<u8> {
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let records = (0..batch)
        .map(|i| {
            let seq = (n * batch + i) as u64;
            LogRecord {
                time_unix_nano: now + seq,
                observed_time_unix_nano: now + seq,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(text(format!("user u{} read object {seq} of client {client}", i % 97))),
                }),
                attributes: vec![
                    kv("enduser.id", text(format!("u{}", i % 97))),
                    kv("event.name", text(["secret.read", "secret.write", "login"][i % 3].into())),
                    kv("url.path", text(format!("/v1/objects/{seq}"))),
                    kv("http.response.status_code", any_value::Value::IntValue(if i % 10 == 0 { 403 } else { 200 })),
                    kv("client.address", text(format!("10.0.{}.{}", client % 256, i % 256))),
                ],
                trace_id: (seq as u128 + 1).to_be_bytes().to_vec(),
                span_id: (seq + 1).to_be_bytes().to_vec(),
                flags: 1,
                ..LogRecord::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("otlp-load".into())), kv("host.name", text("bench".into()))],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "stele-otlp-load".into(), ..InstrumentationScope::default() }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[derive(Default)]
struct Report {
    records: u64,
    requests: u64,
    overloaded: u64,
    error: Option<String>,
}

/// Reads one HTTP/1.1 response with a Content-Length: (status, Retry-After, body).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Option<u64>, Vec<u8>), String> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|v| v.parse().ok()).ok_or("bad status")?;
    let (mut len, mut retry) = (0usize, None);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| "bad Content-Length")?;
            } else if k.eq_ignore_ascii_case("retry-after") {
                retry = v.trim().parse().ok();
            }
        }
    }
    let start = head_end + 4;
    while buf.len() < start + len {
        let n = s.read(&mut chunk).await.map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Ok((status, retry, body))
}

async fn client(id: usize, args: Arc<Args>, bodies: Arc<Vec<Vec<u8>>>, deadline: Instant) -> Report {
    let mut report = Report::default();
    let mut s = match TcpStream::connect(args.addr).await {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!("connecting: {e}"));
            return report;
        }
    };
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut n = id;
    while Instant::now() < deadline {
        let body = &bodies[n % bodies.len()];
        n += 1;
        let head = format!(
            "POST /v1/logs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            args.addr,
            body.len()
        );
        let sent = async {
            s.write_all(head.as_bytes()).await?;
            s.write_all(body).await
        };
        if let Err(e) = sent.await {
            report.error = Some(format!("writing: {e}"));
            return report;
        }
        match read_response(&mut s, &mut buf).await {
            Ok((200, _, resp)) => match ExportLogsServiceResponse::decode(&resp[..]) {
                Ok(r) if r.partial_success.is_none() => {
                    report.records += args.batch as u64;
                    report.requests += 1;
                }
                Ok(r) => {
                    report.error = Some(format!("partial success: {:?}", r.partial_success));
                    return report;
                }
                Err(e) => {
                    report.error = Some(format!("200 without an ExportLogsServiceResponse: {e}"));
                    return report;
                }
            },
            Ok((503, retry, _)) => {
                report.overloaded += 1;
                tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
            }
            Ok((status, _, body)) => {
                report.error = Some(format!("status {status}: {}", String::from_utf8_lossy(&body)));
                return report;
            }
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        }
    }
    report
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..BODIES_PER_CLIENT * args.connections.min(8)).map(|n| request_body(n % 256, n, args.batch)).collect(),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let deadline = started + args.duration;
    let reports: Vec<Report> = rt.block_on(async {
        let tasks: Vec<_> =
            (0..args.connections).map(|id| tokio::spawn(client(id, args.clone(), bodies.clone(), deadline))).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| Report { error: Some(e.to_string()), ..Report::default() }));
        }
        out
    });
    let secs = started.elapsed().as_secs_f64();
    let records: u64 = reports.iter().map(|r| r.records).sum();
    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    let overloaded: u64 = reports.iter().map(|r| r.overloaded).sum();
    let body_bytes = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    println!(
        "{records} durable records in {secs:.2} s: {:.0} records/s, {:.0} requests/s ({} connections, {} records/request, {body_bytes} bytes/request, {overloaded} answers 503)",
        records as f64 / secs,
        requests as f64 / secs,
        args.connections,
        args.batch
    );
    let errors: Vec<&String> = reports.iter().filter_map(|r| r.error.as_ref()).collect();
    if let Some(e) = errors.first() {
        eprintln!("{} clients failed; first: {e}", errors.len());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
