//! The index fields of a sealed event derived from the event's own parse
//! (`Normalizer::sealed_fields_update`) against the reference: parsing the stored sealed
//! payload (`Normalizer::stored_fields`). Over every JSON event of the real audit
//! logs in ../shared/data under several rules, and over random documents (nested
//! objects and arrays, duplicate members, values that look sealed) with random rules.
//! Wherever a derivation is given it must equal the reference; the Kubernetes rule
//! `stele import` is measured with must always be derived.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use stele_erasure::Sealer;
use stele_formats::sealed::{Envelope, find_pointers_checked, fingerprint};
use stele_formats::{CaptureRecord, EventFormat, FieldPointers, Normalizer};

/// Seals `event` and compares the derived fields with the reference. Returns
/// `Some(true)` when derived, `Some(false)` when the derivation declined, `None`
/// when the event is not sealed or not JSON.
fn check(normalizer: &Normalizer, sealer: &Sealer, event: &[u8], hint: Option<EventFormat>) -> Option<bool> {
    // The parse also locates the sealer's pointers, as `stele import`'s does: the
    // same byte ranges and duplicate members as a scan of the event finds.
    let located = Normalizer::with_located(normalizer.pointers(), sealer.located_pointers());
    let mut record = CaptureRecord::default();
    let (format, plain) = located.parse_recording(event, hint, &mut record).ok()?;
    let pointers = sealer.located_pointers();
    let (spans, duplicate) = record.located(fingerprint(pointers), 0..pointers.len()).expect("located");
    let (want, want_duplicate) = find_pointers_checked(event, pointers);
    assert_eq!(duplicate, want_duplicate, "duplicate members differ for {:?}", String::from_utf8_lossy(event));
    // With a member named twice the whole event is sealed, whatever the spans.
    if !duplicate {
        assert_eq!(spans, want, "located spans differ for {:?}", String::from_utf8_lossy(event));
    }
    // Sealing from the record gives the same envelope layout as sealing by a scan.
    let (mut out, mut values) = (Vec::new(), Vec::new());
    let from_record =
        sealer.seal_append("s", format.code(), event, Some(record.view()), 0, &mut out, &mut values).unwrap();
    let scanned = sealer.seal("s", format.code(), event, 0).unwrap();
    assert_eq!(from_record.map(|(f, _)| f), scanned.as_ref().map(|s| s.format));
    if let Some(s) = &scanned {
        assert_eq!(Envelope::parse(&out).unwrap().spans, Envelope::parse(&s.payload).unwrap().spans);
    }
    let sealed = sealer.seal("s", format.code(), event, 0).unwrap()?;
    let reference = normalizer.stored_fields(sealed.format, &sealed.payload);
    let replaced = sealer.replaced(&sealed);
    // The update of the event's own fields (what `stele import` does).
    let mut updated = plain.clone();
    let was_updated = replaced
        .as_ref()
        .is_some_and(|r| normalizer.sealed_fields_update(format, record.view(), r, &sealed.payload, &mut updated));
    if was_updated {
        assert_eq!(
            updated,
            reference,
            "derived fields differ for {:?} sealed as {:?}",
            String::from_utf8_lossy(event),
            String::from_utf8_lossy(&sealed.payload)
        );
    } else {
        assert_eq!(updated, plain, "a declined update changed the fields");
    }
    Some(was_updated)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "jsonl" || x == "json") {
            out.push(p);
        }
    }
}

#[test]
fn derived_fields_equal_a_parse_of_the_stored_form_for_every_real_event() {
    let Some(data) = shared_data() else { return };
    let mut files = Vec::new();
    walk(&data, &mut files);
    files.sort();
    let events: Vec<Vec<u8>> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap().split(|&b| b == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>())
        .filter(|l| l.starts_with(b"{"))
        .collect();
    let normalizer = Normalizer::new(&FieldPointers::default());
    let rules = [
        // The benchmark's rule (bench/import_sealing.sh).
        rule("s", "/user/username", &["/sourceIPs", "/impersonatedUser"]),
        // The k8s fields a query reads, and an object holding one.
        rule("s", "/user/username", &["/objectRef/namespace", "/verb", "/auditID", "/responseStatus"]),
        rule("s", "/user", &["/objectRef", "/kind"]),
        // Generic pointers with fallbacks behind them (actor, source address, time).
        rule("s", "/userIdentity/arn", &["/sourceIPAddress", "/userIdentity/principalId", "/eventTime"]),
        rule("s", "/actor/alternateId", &["/client/ipAddress", "/actor", "/outcome"]),
        rule("s", "/actor", &["/ip", "/ipAddress", "/published", "/uuid"]),
        rule("s", "/protoPayload/authenticationInfo/principalEmail", &["/protoPayload/requestMetadata"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, r) in rules.into_iter().enumerate() {
        let s = sealer(dir.path(), vec![r]);
        let (mut derived, mut declined) = (0usize, 0usize);
        for e in &events {
            match check(&normalizer, &s, e, None) {
                Some(true) => derived += 1,
                Some(false) => declined += 1,
                None => {}
            }
        }
        eprintln!("rule {i}: {derived} derived, {declined} parsed again");
        if i == 0 {
            assert!(derived > 200, "the benchmark's rule derived only {derived} events");
            assert_eq!(declined, 0, "the benchmark's rule must never need a second parse");
        }
    }
}

/// A random JSON value over keys the default pointers use, with duplicate members.
fn value(depth: u32) -> BoxedStrategy<String> {
    let key = prop_oneof![
        Just("user"),
        Just("username"),
        Just("actor"),
        Just("alternateId"),
        Just("sourceIPs"),
        Just("ip"),
        Just("0"),
        Just("1"),
        Just("kind"),
        Just("apiVersion"),
        Just("verb"),
        Just("objectRef"),
        Just("resource"),
        Just("namespace"),
        Just("time"),
        Just("outcome"),
        Just("errorCode"),
        Just("name"),
        Just("status"),
    ];
    let leaf = prop_oneof![
        "[a-z0-9.]{0,6}".prop_map(|s| format!("{s:?}")),
        Just(r#""Event""#.to_string()),
        Just(r#""audit.k8s.io/v1""#.to_string()),
        Just(r#""stele:sealed:v1:AAAA:BBBB""#.to_string()),
        Just(r#""2024-05-01T12:00:00Z""#.to_string()),
        Just(r#""a\"b""#.to_string()),
        any::<i16>().prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        2 => leaf,
        1 => proptest::collection::vec(value(depth - 1), 1..4).prop_map(|v| format!("[{}]", v.join(","))),
        2 => proptest::collection::vec((key, value(depth - 1)), 1..5).prop_map(|m| {
            let members: Vec<String> = m.into_iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", members.join(","))
        }),
    ]
    .boxed()
}

fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/user"),
        Just("/user/username"),
        Just("/actor"),
        Just("/actor/alternateId"),
        Just("/sourceIPs"),
        Just("/sourceIPs/0"),
        Just("/ip"),
        Just("/kind"),
        Just("/verb"),
        Just("/objectRef"),
        Just("/objectRef/namespace"),
        Just("/time"),
        Just("/outcome"),
        Just("/errorCode"),
        Just("/0"),
        Just("/username"),
        Just("/user/name"),
        Just("/principal"),
        Just("/status"),
        Just("/result"),
        Just("/remote_ip"),
    ]
    .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn derived_fields_equal_a_parse_of_the_stored_form_for_random_documents(
        members in proptest::collection::vec((pointer(), value(3)), 1..7),
        subject in pointer(),
        fields in proptest::collection::vec(pointer(), 0..4),
        k8s in any::<bool>(),
    ) {
        // Top-level members named by the pointers' first tokens, possibly twice.
        let body: Vec<String> =
            members.iter().map(|(p, v)| format!("{:?}:{v}", p.trim_start_matches('/').split('/').next().unwrap())).collect();
        let event = format!("{{{}}}", body.join(","));
        let normalizer = Normalizer::new(&FieldPointers::default());
        let dir = tempfile::tempdir().unwrap();
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        let s = sealer(dir.path(), vec![rule("s", &subject, &f)]);
        let hint = if k8s { Some(EventFormat::KubernetesAudit) } else { Some(EventFormat::Json) };
        check(&normalizer, &s, event.as_bytes(), hint);
    }
}

/// Every pointer of the default field lists and every prefix of one.
fn default_pointers() -> Vec<String> {
    let d = FieldPointers::default();
    let mut all: Vec<String> = [
        &d.time,
        &d.actor,
        &d.action,
        &d.resource,
        &d.outcome,
        &d.failure_if_present,
        &d.source_ip,
        &d.request_id,
        &d.producer,
    ]
    .into_iter()
    .flatten()
    .flat_map(|p| {
        let tokens: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        (1..=tokens.len()).map(move |n| format!("/{}", tokens[..n].join("/")))
    })
    .chain(["/user/username", "/sourceIPs/0", "/objectRef/namespace", "/responseStatus/code"].map(String::from))
    .collect();
    all.sort();
    all.dedup();
    all
}

/// Sets `value` at `pointer` in `doc`, making objects on the way (an array index
/// token on the way makes an array).
fn put(doc: &mut serde_json::Value, pointer: &str, value: serde_json::Value) {
    let mut at = doc;
    let tokens: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, t) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        if let Ok(n) = t.parse::<usize>()
            && at.is_array()
        {
            let arr = at.as_array_mut().unwrap();
            while arr.len() <= n {
                arr.push(serde_json::Value::Null);
            }
            at = &mut arr[n];
        } else {
            if !at.is_object() {
                *at = serde_json::json!({});
            }
            let next_is_index = tokens.get(i + 1).is_some_and(|n| n.parse::<usize>().is_ok());
            let fresh = if next_is_index { serde_json::json!([]) } else { serde_json::json!({}) };
            at = at.as_object_mut().unwrap().entry(t.to_string()).or_insert(fresh);
        }
        if last {
            *at = value;
            return;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Documents holding values at the default pointers (so that fallbacks compete),
    /// sealed at those pointers or their prefixes.
    #[test]
    fn derived_fields_equal_a_parse_of_the_stored_form_where_fallbacks_compete(
        at in proptest::collection::vec((0usize..1000, prop_oneof![
            "[a-z0-9.]{1,6}".prop_map(serde_json::Value::from),
            any::<i16>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            Just(serde_json::json!(["10.0.0.1", "10.0.0.2"])),
            Just(serde_json::json!({"x": 1})),
        ]), 1..10),
        sealed in proptest::collection::vec(0usize..1000, 1..4),
        k8s in any::<bool>(),
    ) {
        let pointers = default_pointers();
        let mut doc = serde_json::json!({});
        for (i, v) in at {
            put(&mut doc, &pointers[i % pointers.len()], v);
        }
        let event = serde_json::to_vec(&doc).unwrap();
        let normalizer = Normalizer::new(&FieldPointers::default());
        let dir = tempfile::tempdir().unwrap();
        let chosen: Vec<&str> = sealed.iter().map(|i| pointers[i % pointers.len()].as_str()).collect();
        let s = sealer(dir.path(), vec![rule("s", chosen[0], &chosen[1..])]);
        let hint = if k8s { Some(EventFormat::KubernetesAudit) } else { Some(EventFormat::Json) };
        check(&normalizer, &s, &event, hint);
    }
}
