//! Transparent decompression (`stele_formats::decompress::maybe_decompress`) on
//! arbitrary bytes, with and without gzip / zstd magic numbers in front: it must never
//! panic, and reading stops after a bounded amount of output (a bomb costs time, not
//! memory: the output is consumed in fixed-size reads and dropped).

use std::io::{Cursor, Read};

use stele_formats::decompress::maybe_decompress;

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else { return };
    let input = match ctl % 3 {
        0 => [&[0x1f, 0x8b][..], body].concat(),
        1 => [&[0x28, 0xb5, 0x2f, 0xfd][..], body].concat(),
        _ => body.to_vec(),
    };
    let Ok((mut r, _)) = maybe_decompress(Cursor::new(input)) else { return };
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    while total < 64 << 20 {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
