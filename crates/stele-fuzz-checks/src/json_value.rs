//! The fast JSON validator inside stele-formats against serde_json, on
//! arbitrary bytes placed as a member value, an array element and a whole
//! event, under keys the default pointers capture and under keys they skip.

use stele_formats::{FieldPointers, parse_event};

fn serde_accepts(doc: &[u8]) -> bool {
    matches!(serde_json::from_slice::<serde_json::Value>(doc), Ok(serde_json::Value::Object(_)))
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let pointers = FieldPointers::default();
    let wrappings: [(&[u8], &[u8]); 6] = [
        (b"", b""),
        (b"{\"zz\":", b"}"),
        (b"{\"user\":", b"}"),
        (b"{\"target\":[", b"]}"),
        (b"{\"objectRef\":{\"name\":", b"}}"),
        (b"{\"a\":[", b"],\"verb\":\"get\"}"),
    ];
    for (pre, post) in wrappings {
        let doc = [pre, data, post].concat();
        let ours = parse_event(&doc, None, &pointers).is_ok();
        assert_eq!(ours, serde_accepts(&doc), "{:?}", String::from_utf8_lossy(&doc));
    }
}
