//! `stele-syslog-load`: a syslog-over-TCP load generator for a running stele server
//! that counts what became durable.
//!
//! ```text
//! stele-syslog-load --syslog 127.0.0.1:PORT --http 127.0.0.1:PORT
//!                   [--connections 8] [--duration 10] [--size 200]
//! ```
//!
//! Each of `connections` threads holds one TCP connection and writes RFC 5424
//! messages with RFC 6587 octet counting (about `size` bytes each, varied users,
//! actions, resources and outcomes in structured data) in 64 KiB writes for
//! `duration` seconds. Then it polls `GET /healthz` until the tree has grown by every
//! message sent (or stops growing for 10 s), and prints messages sent, messages
//! durable, and durable messages per second measured from the first write to the
//! moment the last one was durable. Exits non-zero if fewer messages became durable
//! than were sent. Only loopback addresses are accepted: this is a benchmark tool.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Upper bounds on the arguments, so that a typo cannot exhaust the machine.
const MAX_CONNECTIONS: usize = 1024;
const MAX_DURATION_S: u64 = 3600;
const MAX_SIZE: usize = 60_000;

struct Args {
    syslog: SocketAddr,
    http: SocketAddr,
    connections: usize,
    duration: Duration,
    size: usize,
}

fn usage() -> &'static str {
    "usage: stele-syslog-load --syslog 127.0.0.1:PORT --http 127.0.0.1:PORT [--connections 8] [--duration 10] [--size 200]"
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut syslog, mut http, mut connections, mut duration, mut size) = (None, None, 8usize, 10u64, 200usize);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--syslog" => syslog = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--syslog: {e}"))?),
            "--http" => http = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--http: {e}"))?),
            "--connections" => connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--duration" => duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--size" => size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            _ => return Err(usage().to_string()),
        }
    }
    let (Some(syslog), Some(http)) = (syslog, http) else { return Err(usage().to_string()) };
    if !syslog.ip().is_loopback() || !http.ip().is_loopback() {
        return Err("only loopback addresses are accepted".into());
    }
    if !(1..=MAX_CONNECTIONS).contains(&connections)
        || !(1..=MAX_DURATION_S).contains(&duration)
        || !(120..=MAX_SIZE).contains(&size)
    {
        return Err(format!(
            "--connections 1..={MAX_CONNECTIONS}, --duration 1..={MAX_DURATION_S} s, --size 120..={MAX_SIZE}"
        ));
    }
    Ok(Args { syslog, http, connections, duration: Duration::from_secs(duration), size })
}

/// The server's tree size from `GET /healthz`.
fn tree_size(http: SocketAddr) -> Result<u64, String> {
    let mut s = TcpStream::connect(http).map_err(|e| format!("connecting to {http}: {e}"))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: stele\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP body")? + 4;
    let v: serde_json::Value = serde_json::from_slice(&resp[body_at..]).map_err(|e| format!("healthz: {e}"))?;
    v["tree_size"].as_u64().ok_or_else(|| format!("healthz without tree_size: {v}"))
}

/// One octet-counted RFC 5424 message of about `size` bytes, varied by `n`.
fn message(out: &mut Vec<u8>, conn: usize, n: u64, size: usize) {
    const ACTIONS: [&str; 4] = ["login", "logout", "sudo", "passwd"];
    const OUTCOMES: [&str; 3] = ["success", "failure", "denied"];
    let head = format!(
        "<38>1 2026-11-29T12:{:02}:{:02}.{:06}Z host{} sshd {} - [audit@32473 user=\"user{}\" action=\"{}\" resource=\"/srv/{}\" outcome=\"{}\" src=\"10.0.{}.{}\"] ",
        (n / 60) % 60,
        n % 60,
        n % 1_000_000,
        conn,
        1000 + conn,
        n % 997,
        ACTIONS[(n % 4) as usize],
        n % 89,
        OUTCOMES[(n % 3) as usize],
        conn % 256,
        n % 256,
    );
    let pad = size.saturating_sub(head.len());
    out.extend_from_slice(format!("{} ", head.len() + pad).as_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend(std::iter::repeat_n(b'x', pad));
}

fn run(args: Args) -> Result<bool, String> {
    let before = tree_size(args.http)?;
    let start = Instant::now();
    let deadline = start + args.duration;
    let threads: Vec<_> = (0..args.connections)
        .map(|conn| {
            let (addr, size) = (args.syslog, args.size);
            std::thread::spawn(move || -> Result<u64, String> {
                let mut s = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
                let (mut buf, mut sent) = (Vec::with_capacity(80 << 10), 0u64);
                while Instant::now() < deadline {
                    buf.clear();
                    while buf.len() < 64 << 10 {
                        message(&mut buf, conn, sent, size);
                        sent += 1;
                    }
                    s.write_all(&buf).map_err(|e| format!("writing: {e}"))?;
                }
                s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
                Ok(sent)
            })
        })
        .collect();
    let mut sent = 0;
    for t in threads {
        sent += t.join().map_err(|_| "a sender thread panicked")??;
    }
    let writing = start.elapsed();
    let (mut last, mut last_change) = (before, Instant::now());
    let durable_at = loop {
        let size = tree_size(args.http)?;
        // The server appends a few records of its own (self-verification) to the tree.
        if size - before >= sent {
            break Instant::now();
        }
        if size != last {
            (last, last_change) = (size, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(10) {
            break last_change;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let durable = (tree_size(args.http)? - before).min(sent);
    let secs = durable_at.duration_since(start).as_secs_f64();
    println!(
        "connections {}  message bytes ~{}  sent {sent} in {:.2} s  durable {durable}  {:.0} durable messages/s (first write to last durable: {secs:.2} s)",
        args.connections,
        args.size,
        writing.as_secs_f64(),
        durable as f64 / secs,
    );
    Ok(durable == sent)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: fewer messages became durable than were sent");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
