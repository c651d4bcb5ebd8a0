//! Fuzz check `event_reader`.

use std::io::{BufReader, Read};

use stele_formats::{EventFormat, EventReader, InputFormat};

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

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else { return };
    let format = [
        InputFormat::Auto,
        InputFormat::Jsonl,
        InputFormat::Json,
        InputFormat::K8sAudit,
        InputFormat::CloudTrail,
        InputFormat::GcpAudit,
        InputFormat::Ocsf,
        InputFormat::Auditd,
    ][usize::from(ctl & 7)];
    let limit = 16 + usize::from(ctl >> 3) * 8;
    let chunk = 1 + usize::from(ctl % 7);
    let src = BufReader::with_capacity(1, Trickle { data: input, n: chunk });
    let mut reader = EventReader::new(src, format, limit);
    // Every call consumes input or ends, so this many calls always suffice.
    for _ in 0..=input.len() + 2 {
        match reader.next_event() {
            Ok(None) => return,
            Ok(Some(ev)) => {
                assert!(ev.bytes.len() <= limit);
                if ev.format == EventFormat::Auditd {
                    // Text records: they must re-normalize as the event they were read as.
                    stele_formats::auditd::normalize(ev.bytes).expect("a grouped audit event normalizes");
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(ev.bytes).expect("yielded event is valid JSON");
                assert!(v.is_object());
            }
            Err(_) => {}
        }
    }
    panic!("reader did not reach the end");
}
