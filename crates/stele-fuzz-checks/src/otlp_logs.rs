//! OTLP logs requests (`stele_formats::otlp`) on arbitrary bytes. The first byte picks
//! the decoder (even: protobuf, odd: OTLP/JSON); the rest is the request body. Must
//! never panic or overflow the stack. Whatever decodes is split with small limits;
//! every kept entry must decode back (`decode_canonical`) to exactly the record it
//! came from, with its resource and scope, and re-normalize (through
//! `Normalizer::parse` with the `otlp-log` format, as reindexing does) to the fields
//! it was split with.

use stele_formats::otlp::{OtlpEncoding, OtlpLimits, decode_canonical, decode_request, split_request};
use stele_formats::{EventFormat, FieldPointers, Normalizer};

const LIMITS: OtlpLimits = OtlpLimits { max_records: 1000, max_record_bytes: 4096, max_total_bytes: 1 << 20 };

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let encoding = if mode & 1 == 0 { OtlpEncoding::Protobuf } else { OtlpEncoding::Json };
    let Ok(req) = decode_request(body, encoding) else { return };
    let Ok(split) = split_request(&req, &LIMITS) else { return };
    let normalizer = Normalizer::new(&FieldPointers::default());
    let mut kept = split.records.iter();
    let mut rejected = 0;
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                let canonical = stele_formats::otlp::canonical_record(
                    rl.resource.as_ref(),
                    &rl.schema_url,
                    sl.scope.as_ref(),
                    &sl.schema_url,
                    rec,
                );
                if canonical.len() > LIMITS.max_record_bytes {
                    rejected += 1;
                    continue;
                }
                let (range, fields) = kept.next().expect("a record that fits is kept");
                let stored = &split.bytes[range.clone()];
                assert_eq!(stored, &canonical[..]);
                let back = decode_canonical(stored).expect("a stored entry decodes");
                assert_eq!(&back.scope_logs[0].log_records[0], rec);
                assert_eq!(back.scope_logs[0].scope, sl.scope);
                assert_eq!(back.resource, rl.resource);
                let (format, again) = normalizer.parse(stored, Some(EventFormat::OtlpLog)).expect("re-normalizes");
                assert_eq!((format, &again), (EventFormat::OtlpLog, fields));
            }
        }
    }
    assert!(kept.next().is_none());
    assert_eq!(split.rejected, rejected);
}
