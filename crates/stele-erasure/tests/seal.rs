//! Sealing and restoring: byte-exact round trips over every event of the real JSON
//! audit logs in ../shared/data, a property test with adversarial values (values that
//! look like sealed values, escapes, nesting), envelopes of random bytes, and the key
//! store's crash behaviour.

mod common;
use common::*;

use std::path::PathBuf;

use proptest::prelude::*;
use stele_erasure::{KeyStore, Keys, MasterKey, SealState, restore};
use stele_formats::EventFormat;
use stele_formats::sealed::{Envelope, SEALED_FLAG};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_real_event_round_trips_byte_exact() {
    let Some(data) = shared_data() else { return };
    let cases: [(&str, EventFormat, &str, &[&str]); 4] = [
        (
            "k8s-audit/panther-analysis_k8s-audit-native.jsonl",
            EventFormat::KubernetesAudit,
            "/user/username",
            &["/sourceIPs", "/user/groups", "/impersonatedUser", "/p_any_usernames", "/requestObject"],
        ),
        (
            "cloudtrail/panther-analysis_AWS.CloudTrail.jsonl",
            EventFormat::CloudTrail,
            "/userIdentity/arn",
            &["/userIdentity", "/sourceIPAddress", "/requestParameters", "/p_any_usernames"],
        ),
        (
            "gcp-audit",
            EventFormat::GcpAudit,
            "/protoPayload/authenticationInfo/principalEmail",
            &["/protoPayload/requestMetadata"],
        ),
        ("ocsf", EventFormat::Ocsf, "/actor/user/name", &["/src_endpoint/ip", "/actor/user"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut total = (0usize, 0usize);
    for (path, format, subject, fields) in cases {
        let mut s = sealer(dir.path(), vec![rule("s", subject, fields)]);
        let p = data.join(path);
        let files: Vec<PathBuf> = if p.is_dir() {
            walk(&p).into_iter().filter(|f| f.extension().is_some_and(|x| x == "jsonl" || x == "json")).collect()
        } else {
            vec![p]
        };
        for f in files {
            for line in std::fs::read(&f).unwrap().split(|&b| b == b'\n') {
                if !line.starts_with(b"{") || serde_json::from_slice::<serde_json::Value>(line).is_err() {
                    continue;
                }
                total.0 += 1;
                let Some(sealed) = s.seal("s", format.code(), line, 0).unwrap() else { continue };
                total.1 += 1;
                assert_eq!(sealed.format, format.code() | SEALED_FLAG);
                // The sealer writes its envelope in place: the same bytes as the
                // reference encoder gives for the parsed parts.
                let env = Envelope::parse(&sealed.payload).unwrap();
                assert_eq!(Envelope::encode(&env.key_id, &env.spans, env.body), sealed.payload);
                let v = restore(Some(s.keys()), sealed.format, &sealed.payload).unwrap();
                assert_eq!(v.state, SealState::Restored);
                assert_eq!(v.bytes, line, "{}: not restored byte for byte", f.display());
                assert_eq!(v.format, format.code());
                // Without the key, the stored form and the erased view lack the subject.
                let event: serde_json::Value = serde_json::from_slice(line).unwrap();
                let who = event.pointer(subject).and_then(|x| x.as_str()).unwrap_or_default();
                let erased = restore(None, sealed.format, &sealed.payload).unwrap();
                assert_eq!(erased.state, SealState::Erased);
                let mut rest = event.clone();
                for p in fields.iter().chain([&subject]) {
                    if let Some(x) = rest.pointer_mut(p) {
                        *x = serde_json::Value::Null;
                    }
                }
                if !rest.to_string().contains(who) {
                    assert!(!contains(&sealed.payload, who.as_bytes()), "{}: stored form leaks {who}", f.display());
                    assert!(!contains(&erased.bytes, who.as_bytes()), "{}: erased view leaks {who}", f.display());
                }
                serde_json::from_slice::<serde_json::Value>(&erased.bytes).expect("the erased view is JSON");
            }
        }
        s.sync().unwrap();
    }
    eprintln!("{} events, {} sealed", total.0, total.1);
    assert!(total.1 > 200, "only {} real events were sealed", total.1);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// JSON string literals chosen to confuse a parser of the stored form: ones that look
/// like sealed values (with and without brackets), escapes, quotes, non-ASCII.
fn adversarial_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""stele:sealed:v1:AAAA:BBBB""#.to_string()),
        Just(r#"["stele:sealed:v1:AAAA:BBBB"]"#.to_string()),
        Just(r#""stele:erased""#.to_string()),
        Just(r#""\"stele:sealed:v1:\u0041:x\"""#.to_string()),
        Just(r#""a\\\"b\u00e9\ud83d\ude00""#.to_string()),
        "[a-z:_-]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i32>().prop_map(|n| n.to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just(r#"{"x":["stele:sealed:v1:Q:R"],"y":[1,2]}"#.to_string()),
        Just(r#"["1.2.3.4","5.6.7.8"]"#.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn seal_then_restore_is_exact_for_adversarial_values(
        values in proptest::collection::vec(adversarial_string(), 5),
        spaces in proptest::collection::vec(0usize..3, 5),
        subject in "[a-z]{1,8}",
    ) {
        // {"who":S, "a":V0, "b":{"c":V1, "d":V2}, "e":[V3, V4]} with random whitespace.
        let ws = |i: usize| " ".repeat(spaces[i]);
        let event = format!(
            r#"{{"who":{}{subject:?},"a":{}{},"b":{{"c":{},"d" :{}}},"e":[{}{},{}]}}"#,
            ws(0), ws(1), values[0], values[1], values[2], ws(2), values[3], values[4]
        );
        prop_assume!(serde_json::from_str::<serde_json::Value>(&event).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let s = sealer(dir.path(), vec![rule("s", "/who", &["/a", "/b/d", "/e/1", "/b", "/missing"])]);
        let sealed = s.seal("s", 1, event.as_bytes(), 0).unwrap().expect("the event has a subject");
        let env = Envelope::parse(&sealed.payload).unwrap();
        // /b holds /b/d: only the outer value is sealed; /missing seals nothing.
        prop_assert_eq!(env.spans.len(), 4);
        let v = restore(Some(s.keys()), sealed.format, &sealed.payload).unwrap();
        prop_assert_eq!(v.bytes, event.as_bytes());
        // Values that only look sealed and were not sealed (`/e/0`) stay as they are.
        let erased = restore(None, sealed.format, &sealed.payload).unwrap();
        let ev: serde_json::Value = serde_json::from_slice(&erased.bytes).unwrap();
        let orig: serde_json::Value = serde_json::from_str(&event).unwrap();
        prop_assert_eq!(&ev["e"][0], &orig["e"][0]);
        prop_assert_eq!(&ev["who"], "stele:erased");
    }

    #[test]
    fn random_envelopes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0u16..4) {
        let mut b = b"SEAL\x01\x00".to_vec();
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&bytes);
        let _ = Envelope::parse(&b);
        let dir = tempfile::tempdir().unwrap();
        let s = sealer(dir.path(), vec![]);
        let _ = restore(Some(s.keys()), 0x81, &b);
    }
}

#[test]
fn a_torn_key_record_is_cut_and_a_removed_key_stays_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sealer(dir.path(), vec![rule("s", "/who", &[])]);
    let a = s.seal("s", 1, br#"{"who":"alice"}"#, 0).unwrap().unwrap();
    s.sync().unwrap();
    let _b = s.seal("s", 1, br#"{"who":"bob"}"#, 0).unwrap().unwrap();
    s.sync().unwrap();
    drop(s);
    let path = dir.path().join(stele_erasure::STORE_FILE);
    let full = std::fs::read(&path).unwrap();
    // Cut the file anywhere (a torn append): what a complete record held survives,
    // a torn record is cut when the store is opened for writing.
    for cut in 16..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let store = KeyStore::open(dir.path(), true).unwrap();
        let keys = Keys::with(MasterKey::from_bytes(&[5; 32]), store);
        let restored = restore(Some(&keys), a.format, &a.payload).unwrap();
        let has_alice = keys.subject_key_id("alice").is_some();
        assert_state(has_alice, restored.state);
        let len_after = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(len_after <= cut, "cut at {cut}");
    }
    std::fs::write(&path, &full).unwrap();
    let mut keys = Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir.path(), true).unwrap());
    let id = keys.subject_key_id("alice").unwrap();
    keys.store_mut().remove(&[id]).unwrap();
    let keys = Keys::with(MasterKey::from_bytes(&[5; 32]), KeyStore::open(dir.path(), false).unwrap());
    assert!(keys.subject_key_id("alice").is_none());
    assert!(keys.subject_key_id("bob").is_some());
    assert_eq!(restore(Some(&keys), a.format, &a.payload).unwrap().state, SealState::Erased);
    // Another master key does not open the data keys.
    let other = Keys::with(MasterKey::from_bytes(&[4; 32]), KeyStore::open(dir.path(), false).unwrap());
    assert!(other.subject_key_id("bob").is_none(), "the lookup depends on the master key");
}

fn assert_state(has_key: bool, state: SealState) {
    assert_eq!(state, if has_key { SealState::Restored } else { SealState::Erased });
}

#[test]
fn a_member_named_twice_on_a_sealed_fields_way_seals_the_whole_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sealer(dir.path(), vec![rule("s", "/user/username", &["/sourceIPs"])]);
    let k8s = EventFormat::KubernetesAudit.code();
    let cases: [&[u8]; 3] = [
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","user":{"username":"alice"},"user":{"username":"bob"},"sourceIPs":["10.1.2.3"]}"#,
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","user":{"username":"alice","username":"bob"},"sourceIPs":["10.1.2.3"]}"#,
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","user":{"username":"bob"},"sourceIPs":["10.9.9.9"],"sourceIPs":["10.1.2.3"]}"#,
    ];
    let normalizer = stele_formats::Normalizer::new(&stele_formats::FieldPointers::default());
    for event in cases {
        let sealed = s.seal("s", k8s, event, 0).unwrap().expect("sealed");
        s.sync().unwrap();
        for clear in [&b"alice"[..], b"bob", b"10.1.2.3"] {
            assert!(!contains(&sealed.payload, clear), "{:?} left in clear", String::from_utf8_lossy(clear));
        }
        let env = Envelope::parse(&sealed.payload).unwrap();
        assert_eq!(env.spans, vec![(0, env.body.len())], "one span, the whole event");
        // Sealed under the subject a JSON reader sees: the last `user`.
        assert_eq!(Some(env.key_id), s.keys().subject_key_id("bob"));
        let v = restore(Some(s.keys()), sealed.format, &sealed.payload).unwrap();
        assert_eq!(v.bytes, event);
        let fields = normalizer.stored_fields(sealed.format, &sealed.payload);
        assert_eq!(fields, stele_formats::Normalized::default(), "no field of a wholly sealed event is indexed");
    }
}
