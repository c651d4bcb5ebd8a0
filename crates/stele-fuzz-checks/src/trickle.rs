//! Reading an input the way a slow source delivers it, for the reader checks.

use std::io::{BufReader, Read};

use stele_formats::{EventReader, InputFormat, RawEvent};

/// Hands out at most `n` bytes per read, to exercise buffer refills.
struct Trickle<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let k = self.n.min(out.len()).min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// Reads `input` with an [`EventReader`] of `format` and event size `limit`, at most
/// `chunk` bytes per read, and calls `each` with every event it yields (errors are
/// skipped, as `--skip-invalid` does).
///
/// # Panics
/// When the reader does not reach the end: every call consumes input or ends, so
/// `input.len() + 3` calls always suffice.
pub(crate) fn read_all(
    input: &[u8],
    format: InputFormat,
    limit: usize,
    chunk: usize,
    mut each: impl FnMut(RawEvent<'_>),
) {
    let src = BufReader::with_capacity(1, Trickle { data: input, n: chunk });
    let mut reader = EventReader::new(src, format, limit);
    for _ in 0..=input.len() + 2 {
        match reader.next_event() {
            Ok(None) => return,
            Ok(Some(ev)) => each(ev),
            Err(_) => {}
        }
    }
    panic!("reader did not reach the end");
}
