//! A minimal blocking client of `POST <prefix>/add-checkpoint` over plain HTTP/1.1
//! on a std [`TcpStream`] (no TLS: put witnesses behind a local proxy or a private
//! network; `https://` URLs are refused). One request per connection
//! (`Connection: close`), with connect, read and write timeouts.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use crate::AddCheckpointRequest;

/// Largest response body read, in bytes.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Errors of talking to a witness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://host[:port][/prefix]`.
    #[error("unsupported witness URL {0:?} (only plain http://host:port/prefix)")]
    BadUrl(String),
    /// Connecting, writing or reading failed.
    #[error("witness I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The response is not HTTP/1.x as expected.
    #[error("malformed witness response: {0}")]
    BadResponse(&'static str),
}

/// What the witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddResponse {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 409 with a `text/x.tlog.size` body: the witness's latest cosigned size.
    Conflict(u64),
    /// Any other status, with the body (lossy UTF-8).
    Refused(u16, String),
}

/// Splits `http://host[:port][/prefix]` into (`host:port`, host, path prefix).
fn split_url(url: &str) -> Result<(String, String, String), ClientError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// Sends `request` to the witness whose submission prefix is `url` and returns its
/// answer. `timeout` bounds connecting and each read and write.
pub fn add_checkpoint(
    url: &str,
    request: &AddCheckpointRequest,
    timeout: Duration,
) -> Result<AddResponse, ClientError> {
    let (addr, host, prefix) = split_url(url)?;
    let sock = addr.to_socket_addrs()?.next().ok_or(ClientError::BadUrl(url.to_string()))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = request.to_body();
    let head = format!(
        "POST {prefix}/add-checkpoint HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE_BYTES + 16 * 1024).read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<AddResponse, ClientError> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(ClientError::BadResponse("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ClientError::BadResponse("header not UTF-8"))?;
    let mut body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(ClientError::BadResponse("not HTTP/1.x"));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or(ClientError::BadResponse("bad status"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = Some(v.parse::<usize>().map_err(|_| ClientError::BadResponse("bad content-length"))?);
        }
    }
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(ClientError::BadResponse("truncated body"));
        }
        body.truncate(n);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(match status {
        200 => AddResponse::Cosigned(text),
        409 => match text.trim_end_matches('\n').parse::<u64>() {
            Ok(size) => AddResponse::Conflict(size),
            Err(_) => AddResponse::Refused(409, text),
        },
        s => AddResponse::Refused(s, text),
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").ok_or(ClientError::BadResponse("bad chunk"))?;
        let size_str = std::str::from_utf8(&b[..i]).map_err(|_| ClientError::BadResponse("bad chunk size"))?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| ClientError::BadResponse("bad chunk size"))?;
        b = &b[i + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(ClientError::BadResponse("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        assert_eq!(
            split_url("http://127.0.0.1:9/w").unwrap(),
            ("127.0.0.1:9".into(), "127.0.0.1:9".into(), "/w".into())
        );
        assert_eq!(split_url("http://w.example/").unwrap().0, "w.example:80");
        assert!(split_url("https://w.example").is_err());
        let r = parse_response(b"HTTP/1.1 409 Conflict\r\ncontent-length: 3\r\n\r\n42\n").unwrap();
        assert_eq!(r, AddResponse::Conflict(42));
        let r = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(r, AddResponse::Cosigned("abc".into()));
    }
}
