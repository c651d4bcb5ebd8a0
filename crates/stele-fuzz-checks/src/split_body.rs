//! Fuzz check `split_body`.

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    if let Ok(items) = stele_formats::split_body(data, 256) {
        assert!(!items.is_empty());
        for (bytes, _) in items {
            assert!(bytes.len() <= 256);
            let v: serde_json::Value = serde_json::from_slice(bytes).expect("item is valid JSON");
            assert!(v.is_object());
        }
    }
}
