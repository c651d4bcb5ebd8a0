#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_formats::{EventFormat, FieldPointers, parse_event};

fuzz_target!(|data: &[u8]| {
    let pointers = FieldPointers::default();
    let ours = parse_event(data, None, &pointers);
    let reference = serde_json::from_slice::<serde_json::Value>(data);
    assert_eq!(ours.is_ok(), matches!(reference, Ok(serde_json::Value::Object(_))));
    let _ = parse_event(data, Some(EventFormat::KubernetesAudit), &pointers);
    let _ = parse_event(data, Some(EventFormat::Json), &pointers);
});
