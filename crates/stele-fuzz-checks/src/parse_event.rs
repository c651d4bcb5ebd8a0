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
}
