//! Fuzz check `event_reader`.

use stele_formats::{EventFormat, InputFormat};

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
    crate::trickle::read_all(input, format, limit, chunk, |ev| {
        assert!(ev.bytes.len() <= limit);
        if ev.format == EventFormat::Auditd {
            // Text records: they must re-normalize as the event they were read as.
            stele_formats::auditd::normalize(ev.bytes).expect("a grouped audit event normalizes");
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(ev.bytes).expect("yielded event is valid JSON");
        assert!(v.is_object());
    });
}
