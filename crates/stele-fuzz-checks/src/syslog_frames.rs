//! The syslog deframer (`stele_formats::syslog::Deframer`, RFC 6587 octet counting and
//! LF framing) and the message normalizer on arbitrary streams. The first two input
//! bytes pick a chunk size and a message limit; the rest is the stream, fed once whole
//! and once in chunks. Must never panic; both feeds must give the same frames and the
//! same error, every frame must be within the limit, and every frame must be normalized
//! without panicking.

use stele_formats::syslog::{Deframer, FrameError, normalize};

fn frames(stream: &[u8], chunk: usize, max: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut d = Deframer::new(max);
    let mut out = Vec::new();
    for c in stream.chunks(chunk) {
        d.push(c);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    match d.finish() {
        Ok(Some(f)) => out.push(f.to_vec()),
        Ok(None) => {}
        Err(e) => return (out, Some(e)),
    }
    (out, None)
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let [chunk, max, stream @ ..] = data else { return };
    let (chunk, max) = (usize::from(*chunk).max(1), usize::from(*max) * 4 + 1);
    let whole = frames(stream, stream.len().max(1), max);
    let split = frames(stream, chunk, max);
    assert_eq!(whole, split);
    for f in &whole.0 {
        assert!(!f.is_empty() && f.len() <= max);
        let _ = normalize(f);
    }
}
