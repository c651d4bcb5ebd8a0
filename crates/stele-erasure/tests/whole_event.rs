//! Sealing whole events: the root pointer `""` among a rule's fields makes the whole
//! event one sealed value, and `subject_default` seals events without a subject value
//! under a fixed subject's key. Checked over every event of the real JSON audit logs
//! in ../shared/data (byte-exact restore, nothing of the event left in the stored
//! form, no index field), on adversarial events, and through an erasure of the fixed
//! subject.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use stele_erasure::{KeyStore, Keys, MasterKey, SealState, Sealer, SealingRule, restore};
use stele_formats::sealed::{Envelope, SEALED_FLAG, stored_body};
use stele_formats::{EventFormat, FieldPointers, Normalized, Normalizer};

/// The fixed subject of events without a subject value.
const DEFAULT_SUBJECT: &str = "stele:unattributed";

/// A rule sealing whole events of stream `s`, subject at `subject`.
fn whole(subject: &str, default: Option<&str>) -> SealingRule {
    SealingRule {
        stream: "s".into(),
        subject: subject.into(),
        fields: vec![String::new()],
        subject_default: default.map(str::to_string),
        ..SealingRule::default()
    }
}

/// Checks the stored form of a whole sealed event: one span, and outside it only the
/// white space that surrounded the event, so nothing of the event is in clear; the
/// query index would get no field from it.
fn assert_nothing_in_clear(event: &[u8], code: u8, payload: &[u8]) {
    let env = Envelope::parse(payload).unwrap();
    assert_eq!(env.spans.len(), 1);
    let (off, len) = env.spans[0];
    let outside: Vec<u8> = env.body[..off].iter().chain(&env.body[off + len..]).copied().collect();
    assert!(outside.iter().all(u8::is_ascii_whitespace), "clear bytes outside the sealed value: {outside:?}");
    let trimmed = event.trim_ascii();
    assert_eq!(env.body.len() - len, event.len() - trimmed.len(), "the surrounding white space is kept, nothing else");
    let normalizer = Normalizer::new(&FieldPointers::default());
    let body = stored_body(code, payload).unwrap();
    let format = EventFormat::from_code(code & !SEALED_FLAG).unwrap();
    let fields = normalizer.parse(body, Some(format)).map(|(_, f)| f).unwrap_or_default();
    assert_eq!(fields, Normalized::default(), "an index field read from a sealed whole event");
}

#[test]
fn whole_real_events_round_trip_byte_exact_and_leave_nothing_in_clear() {
    let Some(data) = shared_data() else { return };
    let cases: [(&str, EventFormat, &str); 4] = [
        ("k8s-audit", EventFormat::KubernetesAudit, "/user/username"),
        ("cloudtrail", EventFormat::CloudTrail, "/userIdentity/arn"),
        ("gcp-audit", EventFormat::GcpAudit, "/protoPayload/authenticationInfo/principalEmail"),
        ("ocsf", EventFormat::Ocsf, "/actor/user/name"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (mut total, mut by_default) = (0usize, 0usize);
    for (folder, format, subject) in cases {
        let mut s = sealer(dir.path(), vec![whole(subject, Some(DEFAULT_SUBJECT))]);
        let mut files = Vec::new();
        walk(&data.join(folder), &mut files);
        for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "jsonl")) {
            for line in std::fs::read(f).unwrap().split(|&b| b == b'\n') {
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
                if !event.is_object() {
                    continue;
                }
                total += 1;
                let sealed = s.seal("s", format.code(), line, 0).unwrap().expect("every event is sealed");
                assert_eq!(sealed.format, format.code() | SEALED_FLAG);
                assert_nothing_in_clear(line, sealed.format, &sealed.payload);
                let v = restore(Some(s.keys()), sealed.format, &sealed.payload).unwrap();
                assert_eq!((v.state, v.format), (SealState::Restored, format.code()));
                assert_eq!(v.bytes, line, "{}: not restored byte for byte", f.display());
                // The key is the subject's, or the fixed subject's when it has none.
                let who = event.pointer(subject).and_then(|x| x.as_str());
                by_default += usize::from(who.is_none());
                let expected = s.keys().subject_key_id(who.unwrap_or(DEFAULT_SUBJECT));
                let pending = expected.is_none();
                s.sync().unwrap();
                let expected = expected.or_else(|| s.keys().subject_key_id(who.unwrap_or(DEFAULT_SUBJECT)));
                assert_eq!(v.key_id, expected, "{}: sealed under another key (new: {pending})", f.display());
                let erased = restore(None, sealed.format, &sealed.payload).unwrap();
                assert_eq!((erased.state, erased.bytes.trim_ascii()), (SealState::Erased, &b"\"stele:erased\""[..]));
            }
        }
    }
    eprintln!("{total} events sealed whole, {by_default} under {DEFAULT_SUBJECT}");
    assert!(total > 200, "only {total} real events");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
    out.sort();
}

#[test]
fn events_without_a_subject_are_sealed_under_the_fixed_subject_and_erased_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sealer(dir.path(), vec![whole("/who", Some(DEFAULT_SUBJECT))]);
    let alice = br#"{"who":"alice","did":"read"}"#;
    let nobody = b" {\"did\":\"write\",\"from\":\"10.1.2.3\"}\n";
    let a = s.seal("s", 1, alice, 0).unwrap().unwrap();
    let n = s.seal("s", 1, nobody, 0).unwrap().expect("sealed although it has no subject");
    s.sync().unwrap();
    assert_nothing_in_clear(nobody, n.format, &n.payload);
    let default_id = s.keys().subject_key_id(DEFAULT_SUBJECT).expect("the fixed subject has a key");
    assert_ne!(Some(default_id), s.keys().subject_key_id("alice"));
    assert_eq!(restore(Some(s.keys()), n.format, &n.payload).unwrap().bytes, nobody);
    // Erasing the fixed subject erases the events without a subject, and only them.
    s.keys_mut().store_mut().remove(&[default_id]).unwrap();
    let keys = Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir.path(), false).unwrap());
    let gone = restore(Some(&keys), n.format, &n.payload).unwrap();
    assert_eq!((gone.state, gone.bytes.as_slice()), (SealState::Erased, &b" \"stele:erased\"\n"[..]));
    let kept = restore(Some(&keys), a.format, &a.payload).unwrap();
    assert_eq!((kept.state, kept.bytes.as_slice()), (SealState::Restored, &alice[..]));
    // The fixed subject's next event gets a new key, as any erased subject's does.
    let mut s = Sealer::new(vec![whole("/who", Some(DEFAULT_SUBJECT))], keys_rw(dir.path())).unwrap();
    let later = s.seal("s", 1, nobody, 0).unwrap().unwrap();
    s.sync().unwrap();
    let v = restore(Some(s.keys()), later.format, &later.payload).unwrap();
    assert_eq!(v.state, SealState::Restored);
    assert_ne!(v.key_id, Some(default_id));
}

fn keys_rw(dir: &Path) -> Keys {
    Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir, true).unwrap())
}

#[test]
fn without_subject_default_events_without_a_subject_stay_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let s = sealer(dir.path(), vec![whole("/who", None)]);
    assert!(s.seal("s", 1, br#"{"did":"write"}"#, 0).unwrap().is_none());
    // With the fixed subject but none of the fields present, nothing is sealed either.
    let rule = SealingRule { fields: vec!["/ip".into()], ..whole("/who", Some(DEFAULT_SUBJECT)) };
    let s = sealer(dir.path(), vec![rule]);
    assert!(s.seal("s", 1, br#"{"did":"write"}"#, 0).unwrap().is_none());
    let sealed = s.seal("s", 1, br#"{"did":"write","ip":"10.0.0.1"}"#, 0).unwrap().expect("its field is sealed");
    assert_eq!(Envelope::parse(&sealed.payload).unwrap().spans.len(), 1);
}

#[test]
fn rules_accept_the_root_pointer_as_a_field_and_check_subject_default() {
    assert!(whole("/who", Some(DEFAULT_SUBJECT)).validate().is_ok());
    assert!(whole("/who", Some(DEFAULT_SUBJECT)).seals_whole_events());
    for (rule, says) in [
        (SealingRule { subject: String::new(), ..whole("/who", None) }, "subject"),
        (SealingRule { fields: vec!["who".into()], ..whole("/who", None) }, "not a JSON pointer"),
        (whole("/who", Some("")), "subject_default"),
        (whole("/who", Some(" padded")), "white space"),
        (whole("/who", Some("a\nb")), "control"),
        (whole("/who", Some(&"x".repeat(stele_erasure::MAX_SUBJECT_DEFAULT_BYTES + 1))), "subject_default"),
    ] {
        let e = rule.validate().expect_err(says).to_string();
        assert!(e.contains(says), "{e}");
    }
    // Deserialized with the keys `[[erasure.rule]]` is written with.
    let r: SealingRule =
        serde_json::from_str(r#"{"stream":"s","subject":"/who","fields":[""],"subject_default":"stele:unattributed"}"#)
            .unwrap();
    assert_eq!(r, whole("/who", Some(DEFAULT_SUBJECT)));
}

/// JSON values chosen to confuse a reader of the stored form.
fn adversarial_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""stele:sealed:v1:AAAA:BBBB""#.to_string()),
        Just(r#"["stele:sealed:v1:AAAA:BBBB"]"#.to_string()),
        Just(r#""stele:erased""#.to_string()),
        Just(r#""a\\\"b\u00e9\ud83d\ude00""#.to_string()),
        "[a-z:_-]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("null".to_string()),
        Just(r#"{"x":[1,{"y":"z"}]}"#.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn whole_events_round_trip_exactly_with_or_without_a_subject(
        values in proptest::collection::vec(adversarial_value(), 3),
        lead in "[ \t\r\n]{0,3}",
        trail in "[ \t\r\n]{0,3}",
        subject in proptest::option::of("[a-z]{1,8}"),
    ) {
        let who = subject.as_ref().map(|s| format!(r#""who":{s:?},"#)).unwrap_or_default();
        let event = format!(r#"{lead}{{{who}"a":{},"b":{{"c":{}}},"d":[{}]}}{trail}"#, values[0], values[1], values[2]);
        prop_assume!(serde_json::from_str::<serde_json::Value>(&event).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let mut s = sealer(dir.path(), vec![whole("/who", Some(DEFAULT_SUBJECT))]);
        let sealed = s.seal("s", 1, event.as_bytes(), 0).unwrap().expect("always sealed");
        s.sync().unwrap();
        assert_nothing_in_clear(event.as_bytes(), sealed.format, &sealed.payload);
        let v = restore(Some(s.keys()), sealed.format, &sealed.payload).unwrap();
        prop_assert_eq!(v.bytes, event.as_bytes());
        let key = s.keys().subject_key_id(subject.as_deref().unwrap_or(DEFAULT_SUBJECT));
        prop_assert_eq!(v.key_id, key);
    }
}
