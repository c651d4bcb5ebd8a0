//! The size bound of what a monitor fetches ([`MAX_BODY_BYTES`]): a response of
//! exactly the bound is read, one byte more fails the fetch (it is not buffered
//! whole), so a hostile log server cannot make a monitor allocate without end.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use stele_monitor::source::MAX_BODY_BYTES;
use stele_monitor::{SourceError, open_source};

/// Serves one response of `len` bytes to each of `n` connections.
fn serve(len: usize, n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = listener.accept() else { return };
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            let chunk = vec![b'x'; 1 << 20];
            let mut left = len;
            while left > 0 {
                let k = left.min(chunk.len());
                if s.write_all(&chunk[..k]).is_err() {
                    break;
                }
                left -= k;
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn fetched_bodies_are_bounded() {
    let max = MAX_BODY_BYTES as usize;
    let at = open_source(&serve(max, 1), Duration::from_secs(30)).unwrap();
    assert_eq!(at.get("checkpoint").unwrap().map(|b| b.len()), Some(max));
    let over = open_source(&serve(max + 1, 1), Duration::from_secs(30)).unwrap();
    match over.get("checkpoint") {
        Err(SourceError::Http { message, .. }) => assert!(message.contains("limit"), "{message}"),
        other => panic!("a body of {} bytes gave {:?}", max + 1, other.map(|b| b.map(|b| b.len()))),
    }
}
