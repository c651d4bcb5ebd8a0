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
    check_rewriting(data);
}

/// Everything a reader gives over batches of at most three events: each event's
/// bytes, format, stored code and normalized fields, and each error's text.
type Outcome = Vec<Result<(Vec<u8>, EventFormat, Option<u8>, Option<stele_formats::Normalized>), String>>;

/// Reads `input` to its end in batches, rewriting with `rewrite` when given.
fn read_batches(
    input: &[u8],
    format: InputFormat,
    limit: usize,
    mut rewrite: Option<&mut dyn stele_formats::Rewrite>,
) -> Outcome {
    let normalizer = stele_formats::Normalizer::new(&stele_formats::FieldPointers::default());
    let mut reader = stele_formats::EventReader::new(input, format, limit).with_normalizer(normalizer);
    let mut batch = stele_formats::Batch::new();
    let mut out = Vec::new();
    loop {
        let read = match rewrite.as_deref_mut() {
            Some(r) => reader.read_batch_rewriting(3, usize::MAX, &mut batch, r),
            None => reader.read_batch(3, usize::MAX, &mut batch),
        };
        for (i, e) in batch.iter().enumerate() {
            out.push(Ok((e.bytes.to_vec(), e.format, batch.stored_code(i), batch.normalized(i).cloned())));
        }
        match read {
            Ok(0) => return out,
            Ok(_) => {}
            Err(e) => {
                out.push(Err(e.to_string()));
                if e.is_fatal() {
                    return out;
                }
            }
        }
    }
}

/// A rewriter that keeps every event as it is, checking the capture record it is
/// given against a parse of the event of its own.
struct Keep(stele_formats::Normalizer);

impl stele_formats::Rewrite for Keep {
    fn rewrite(
        &mut self,
        event: stele_formats::RawEvent<'_>,
        record: Option<stele_formats::CaptureRecordRef<'_>>,
        fields: &mut stele_formats::Normalized,
        _out: &mut Vec<u8>,
    ) -> Result<Option<u8>, stele_formats::RewriteStop> {
        if let Some(record) = record {
            let mut want = stele_formats::CaptureRecord::default();
            let (_, plain) =
                self.0.parse_recording(event.bytes, Some(event.format), &mut want).expect("a read event parses");
            assert_eq!(record, want.view(), "the record given with {:?}", String::from_utf8_lossy(event.bytes));
            assert_eq!(*fields, plain);
        }
        Ok(None)
    }
}

/// The differential part of [`check`]: a rewriting read that keeps every
/// event gives what a plain read gives.
pub fn check_rewriting(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else { return };
    let format =
        [InputFormat::Auto, InputFormat::Jsonl, InputFormat::Json, InputFormat::K8sAudit][usize::from(ctl & 3)];
    let limit = 16 + usize::from(ctl >> 2) * 8;
    let plain = read_batches(input, format, limit, None);
    let mut keep = Keep(stele_formats::Normalizer::new(&stele_formats::FieldPointers::default()));
    assert_eq!(read_batches(input, format, limit, Some(&mut keep)), plain);
}
