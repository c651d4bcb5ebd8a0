//! CloudTrail log files: arbitrary bytes wrapped as `{"Records":[ ... ]}` (and as
//! they are), read with `InputFormat::CloudTrail` in small chunks and a small limit.
//! The reader must end; every record it yields is a JSON object within the limit, of
//! format `cloudtrail` when it came from the Records array, and re-normalizes under
//! that format.

use stele_formats::{EventFormat, FieldPointers, InputFormat, Normalizer};

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else { return };
    let wrapped = [b"{\"Records\":[".as_slice(), body, b"]}"].concat();
    let input: &[u8] = if ctl & 1 == 0 { &wrapped } else { body };
    let limit = 16 + usize::from(ctl >> 1) * 8;
    let normalizer = Normalizer::new(&FieldPointers::default());
    crate::trickle::read_all(input, InputFormat::CloudTrail, limit, 1 + usize::from(ctl % 5), |ev| {
        assert!(ev.bytes.len() <= limit);
        let v: serde_json::Value = serde_json::from_slice(ev.bytes).expect("a record is valid JSON");
        assert!(v.is_object());
        assert_eq!(ev.format, EventFormat::CloudTrail);
        let (f, _) = normalizer.parse(ev.bytes, Some(ev.format)).expect("re-normalizes");
        assert_eq!(f, EventFormat::CloudTrail);
    });
}
