//! Transparent decompression of inputs, detected by their magic bytes.
//!
//! gzip (RFC 1952 §2.3.1: `1f 8b`) and zstd (RFC 8878 §3.1.1: `28 b5 2f fd`)
//! inputs are decompressed as a stream; anything else passes through
//! unchanged. Decompression never holds more than its fixed window and
//! buffers: the decompressed bytes flow into [`crate::EventReader`], whose
//! maximum event size bounds what is kept, so a small file that expands to
//! terabytes ("zip bomb") costs time, never memory. Concatenated gzip
//! members (as `cat a.gz b.gz` or rotated logs produce) are read as one
//! stream, like `gzip -d` does.

use std::io::{self, BufRead, BufReader};

/// The compression of an input, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed (or not a format stele knows).
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of an input (at least 4
    /// bytes are needed for zstd; fewer are never compressed).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Buffer size of the decompressed stream, in bytes.
const BUF_BYTES: usize = 1 << 20;

/// Wraps `input` in a decompressor when its first bytes are gzip or zstd
/// magic numbers, and returns the compression found.
///
/// # Errors
/// I/O errors reading the first bytes, or setting up the zstd decoder.
/// Corrupt compressed data shows up later, as an I/O error of the returned
/// reader (the reader then reports [`crate::FormatError::Io`]).
pub fn maybe_decompress<R: BufRead + Send + 'static>(
    mut input: R,
) -> io::Result<(Box<dyn BufRead + Send>, Compression)> {
    let head = loop {
        match input.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let c = Compression::detect(head);
    let out: Box<dyn BufRead + Send> = match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(BufReader::with_capacity(BUF_BYTES, flate2::bufread::MultiGzDecoder::new(input))),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
            // Refuse frames whose window exceeds 128 MiB (RFC 8878 §3.1.1.1.2
            // leaves the limit to the decoder): the window is the decoder's
            // only large allocation.
            d.window_log_max(27)?;
            Box::new(BufReader::with_capacity(BUF_BYTES, d))
        }
    };
    Ok((out, c))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn gzip_zstd_and_plain() {
        let text = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let mut gz = gz.finish().unwrap();
        // A second member, as concatenated files have.
        let mut gz2 = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz2.write_all(b"{\"b\":3}\n").unwrap();
        gz.extend(gz2.finish().unwrap());
        let zs = zstd::stream::encode_all(&text[..], 3).unwrap();
        for (input, want, c) in [
            (gz, [&text[..], b"{\"b\":3}\n"].concat(), Compression::Gzip),
            (zs, text.clone(), Compression::Zstd),
            (text.clone(), text.clone(), Compression::None),
        ] {
            let (mut r, got_c) = maybe_decompress(io::Cursor::new(input)).unwrap();
            assert_eq!(got_c, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn a_bomb_is_streamed_not_buffered() {
        // 16 MiB of one line expanding from a few KiB: the reader skips it as too
        // large without holding it, and finds the event after it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..16 {
            gz.write_all(&zeros).unwrap();
        }
        gz.write_all(b"\n{\"after\":1}\n").unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 << 10);
        let (input, _) = maybe_decompress(io::Cursor::new(gz)).unwrap();
        let mut r = crate::EventReader::new(input, crate::InputFormat::Jsonl, 4096);
        match r.next_event() {
            Err(crate::FormatError::TooLarge { size, .. }) => assert_eq!(size, 16 << 20),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.next_event().unwrap().unwrap().bytes, b"{\"after\":1}");
        assert!(r.next_event().unwrap().is_none());
    }

    #[test]
    fn corrupt_gzip_is_an_io_error() {
        let mut bad = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        bad.extend_from_slice(&[0xff; 64]);
        let (mut r, _) = maybe_decompress(io::Cursor::new(bad)).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
