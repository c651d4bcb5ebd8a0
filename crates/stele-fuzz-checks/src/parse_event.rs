//! Fuzz check `parse_event`.

use stele_formats::{EventFormat, FieldPointers, parse_event};

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let pointers = FieldPointers::default();
    let ours = parse_event(data, None, &pointers);
    let reference = serde_json::from_slice::<serde_json::Value>(data);
    assert_eq!(ours.is_ok(), matches!(reference, Ok(serde_json::Value::Object(_))));
    let _ = parse_event(data, Some(EventFormat::KubernetesAudit), &pointers);
    let _ = parse_event(data, Some(EventFormat::Json), &pointers);
    // Odd pointers (empty, escaped and numeric tokens, array indexes), so that
    // captures are cross-checked beyond the default ones (the `cross-check`
    // feature compares them with the serde_json implementation).
    let odd = FieldPointers {
        actor: ["/", "/a", "/a/0", "/a/1/b", "/~1", "/~0", "/0", "/é"].map(String::from).to_vec(),
        action: ["/a/", "/b/c", "/a/b/c/d"].map(String::from).to_vec(),
        ..FieldPointers::default()
    };
    let _ = parse_event(data, None, &odd);
    located(data, &pointers);
}

/// Pointers located by the parse (what sealing uses) agree with a scan of the
/// accepted event: the same duplicate members on their way and, without one, the
/// same byte ranges.
fn located(data: &[u8], pointers: &FieldPointers) {
    use stele_formats::sealed::{Pointer, find_pointers_checked, fingerprint};
    use stele_formats::{CaptureRecord, Normalizer};
    let located: Vec<Pointer> = ["", "/user/username", "/sourceIPs", "/a", "/a/0", "/a/b", "/~1", "/0", "/a/1/b"]
        .iter()
        .map(|p| Pointer::parse(p).expect("a pointer"))
        .collect();
    let normalizer = Normalizer::with_located(pointers, &located);
    let mut record = CaptureRecord::default();
    if normalizer.parse_recording(data, Some(EventFormat::Json), &mut record).is_err() {
        return;
    }
    let (spans, duplicate) =
        record.located(fingerprint(&located), 0..located.len()).expect("the parse located the pointers");
    let (want, want_duplicate) = find_pointers_checked(data, &located);
    assert_eq!(duplicate, want_duplicate, "members named twice");
    if !duplicate {
        assert_eq!(spans, want, "located byte ranges");
    }
}
