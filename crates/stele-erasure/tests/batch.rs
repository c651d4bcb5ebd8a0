//! A batch sealer (`Sealer::batch`), which seals a repeated subject's repeated value
//! once and copies it afterwards, against the one-event sealer (`Sealer::seal`) over
//! every Kubernetes audit and CloudTrail event of ../shared/data: the same envelope
//! layout, key, blind tokens and sealed-value ranges, the event restored byte for
//! byte, and a repeated value's sealed string the same within one batch only.

mod common;
use common::*;

use std::collections::HashMap;

use stele_erasure::{SealState, restore};
use stele_formats::EventFormat;
use stele_formats::sealed::{Envelope, sealed_parts};

/// The text of a sealed string up to its box: `stele:sealed:v1:TOKEN:`.
fn up_to_box(text: &[u8]) -> &[u8] {
    let last = text.iter().rposition(|&b| b == b':').expect("a sealed string has a box");
    &text[..=last]
}

/// The events of `path` under ../shared/data, one per line.
fn lines(data: &std::path::Path, path: &str) -> Vec<Vec<u8>> {
    std::fs::read(data.join(path))
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"{") && serde_json::from_slice::<serde_json::Value>(l).is_ok())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn a_batch_seals_like_one_event_at_a_time_and_copies_repeats() {
    let Some(data) = shared_data() else { return };
    let cases: [(&str, EventFormat, &str, &[&str]); 2] = [
        (
            "k8s-audit/panther-analysis_k8s-audit-native.jsonl",
            EventFormat::KubernetesAudit,
            "/user/username",
            &["/sourceIPs", "/impersonatedUser", "/user/groups"],
        ),
        (
            "cloudtrail/panther-analysis_AWS.CloudTrail.jsonl",
            EventFormat::CloudTrail,
            "/userIdentity/arn",
            &["/sourceIPAddress", "/userIdentity/accountId"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (mut copied, mut sealed_values) = (0usize, 0usize);
    for (path, format, subject, fields) in cases {
        let mut s = sealer(dir.path(), vec![rule("s", subject, fields)]);
        let events = lines(&data, path);
        // Twice the file, so that every value repeats at least once.
        let twice: Vec<&Vec<u8>> = events.iter().chain(&events).collect();
        let mut out = Vec::new();
        let mut ranges = Vec::new();
        {
            let mut batch = s.batch();
            let mut values = Vec::new();
            for e in &twice {
                let start = out.len();
                let got = batch.seal_append("s", format.code(), e, None, 0, &mut out, &mut values).unwrap();
                ranges.push(got.map(|(code, rule)| (code, rule, start, out.len(), values.clone())));
            }
        }
        s.sync().unwrap();
        // By key id, position and value: the sealed string first given in the batch.
        let mut first: HashMap<(Vec<u8>, usize, Vec<u8>), Vec<u8>> = HashMap::new();
        for (e, r) in twice.iter().zip(&ranges) {
            let single = s.seal("s", format.code(), e, 0).unwrap();
            let (Some((code, rule, start, end, values)), Some(single)) = (r, &single) else {
                assert!(
                    r.is_none() && single.is_none(),
                    "only one of the sealers sealed {}",
                    String::from_utf8_lossy(e)
                );
                continue;
            };
            let payload = &out[*start..*end];
            assert_eq!((*code, *rule), (single.format, single.rule));
            assert_eq!(values, &single.values, "sealed-value ranges differ");
            assert_eq!(payload.len(), single.payload.len());
            let (a, b) = (Envelope::parse(payload).unwrap(), Envelope::parse(&single.payload).unwrap());
            assert_eq!((a.key_id, &a.spans), (b.key_id, &b.spans));
            let restored = restore(Some(s.keys()), *code, payload).unwrap();
            assert_eq!(restored.state, SealState::Restored);
            assert_eq!(&restored.bytes, *e, "not restored byte for byte");
            let dk = s.keys().data_key(&a.key_id).unwrap().expect("a live key");
            // Outside the boxes the bytes are the same: body, tokens, brackets.
            let mut at = 0;
            for (i, &(off, len)) in a.spans.iter().enumerate() {
                assert_eq!(a.body[at..off], b.body[at..off]);
                let (sa, sb) = (&a.body[off..off + len], &b.body[off..off + len]);
                assert_eq!(up_to_box(sa), up_to_box(sb), "blind tokens differ");
                // The same position and value under the same key gives the same
                // sealed string within the batch.
                let (_, boxed) = sealed_parts(sa).expect("a sealed value");
                let value = dk.open(&a.key_id, i as u16, boxed).unwrap();
                sealed_values += 1;
                match first.entry((a.key_id.to_vec(), i, value)) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        assert_eq!(o.get().as_slice(), sa, "a repeated value was sealed again");
                        copied += 1;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(sa.to_vec());
                    }
                }
                at = off + len;
            }
            assert_eq!(a.body[at..], b.body[at..]);
            // Sealed one at a time, a value gets a fresh nonce: another box.
            assert!(a.spans.is_empty() || payload != single.payload.as_slice(), "the one-event sealer repeated a box");
        }
    }
    assert!(sealed_values > 0);
    // Every value of the second pass at least was a copy.
    assert!(copied * 2 >= sealed_values, "{copied} of {sealed_values} sealed values were copies");
}

#[test]
fn a_batch_keeps_within_its_bounds_for_values_that_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let s = sealer(dir.path(), vec![rule("s", "/actor", &["/ip"])]);
    let mut batch = s.batch();
    let (mut out, mut values) = (Vec::new(), Vec::new());
    let mut ranges = Vec::new();
    // More distinct values than a batch remembers.
    for i in 0..20_000u32 {
        let e =
            format!(r#"{{"actor":"u{}","ip":"10.{}.{}.{}","action":"get"}}"#, i % 7, i >> 16, (i >> 8) & 255, i & 255);
        let start = out.len();
        batch.seal_append("s", 1, e.as_bytes(), None, 0, &mut out, &mut values).unwrap().expect("sealed");
        ranges.push((e, start, out.len()));
    }
    drop(batch);
    for (e, start, end) in ranges {
        let v = restore(Some(s.keys()), 0x81, &out[start..end]).unwrap();
        assert_eq!(v.bytes, e.as_bytes());
    }
}
