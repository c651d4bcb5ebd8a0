//! HTTP request body splitting.

use crate::EventFormat;
use crate::error::BodyError;
use crate::json::{self, K8sClass, Trie};
use crate::scan::{self, skip_ws};

/// Splits an HTTP request body into events and validates each one.
///
/// A body is one of:
/// - a JSON object;
/// - a JSON array of objects (each element is one event, its exact bytes);
/// - JSON objects separated by whitespace, e.g. NDJSON (one per line).
///
/// A UTF-8 byte-order mark at the start is skipped. A Kubernetes audit
/// `EventList` object (as the API server's audit webhook sends) yields each
/// of its `items` as an event of format [`EventFormat::KubernetesAudit`];
/// the EventList itself is not subject to `max_event_bytes` (the caller
/// limits the body), each item is. Every other object is classified as in
/// [`crate::parse_event`] without a hint.
///
/// Returns the events in order, each with its format; never empty.
///
/// # Errors
/// [`BodyError::Empty`] for an empty body, [`BodyError::EmptyArray`] for
/// `[]` (or only empty EventLists), and otherwise an error naming the 0-based
/// index of the first bad item: [`BodyError::TooLarge`],
/// [`BodyError::InvalidItem`] (not an object, invalid JSON, bad EventList) or
/// [`BodyError::Malformed`] (broken framing between items).
pub fn split_body(body: &[u8], max_event_bytes: usize) -> Result<Vec<(&[u8], EventFormat)>, BodyError> {
    let trie = Trie::classify_only();
    let mut out = Vec::new();
    let start = if body.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut i = skip_ws(body, start);
    let Some(&first) = body.get(i) else {
        return Err(BodyError::Empty);
    };
    let malformed = |item: usize, byte_offset: usize, reason: &str| BodyError::Malformed {
        item,
        byte_offset,
        reason: reason.to_string(),
    };
    if first == b'[' {
        let (elements, close) = scan::array_elements(&body[i..]).map_err(|(at, n, why)| malformed(n, i + at, why))?;
        let base = i;
        i = skip_ws(body, base + close);
        if i < body.len() {
            return Err(malformed(elements.len(), i, "trailing data after the JSON array"));
        }
        for (a, b) in elements {
            push_event(&body[base + a..base + b], max_event_bytes, &trie, &mut out)?;
        }
    } else {
        loop {
            let Some(end) = scan::value_end(body, i) else {
                return Err(malformed(out.len(), i, "unterminated JSON value"));
            };
            push_event(&body[i..end], max_event_bytes, &trie, &mut out)?;
            i = skip_ws(body, end);
            if i >= body.len() {
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(BodyError::EmptyArray);
    }
    Ok(out)
}

/// Validates one top-level item (expanding an EventList) and appends it.
fn push_event<'a>(
    item: &'a [u8],
    limit: usize,
    trie: &Trie,
    out: &mut Vec<(&'a [u8], EventFormat)>,
) -> Result<(), BodyError> {
    let index = out.len();
    let invalid = |item, reason| BodyError::InvalidItem { item, reason };
    let caps = json::parse(item, trie).map_err(|r| invalid(index, r))?;
    match caps.k8s_class() {
        K8sClass::EventList => {
            let bad = || invalid(index, crate::InvalidReason::BadEventList);
            let Some((s, e)) = scan::find_member(item, "items").map_err(|_| bad())? else {
                return Ok(());
            };
            if item[s] != b'[' {
                return Err(bad());
            }
            let (elements, _) = scan::array_elements(&item[s..e]).map_err(|_| bad())?;
            for (a, b) in elements {
                let el = &item[s + a..s + b];
                let index = out.len();
                check_size(el, limit, index)?;
                let caps = json::parse(el, trie).map_err(|r| invalid(index, r))?;
                let format = match caps.k8s_class() {
                    K8sClass::Event | K8sClass::Compatible => EventFormat::KubernetesAudit,
                    _ => EventFormat::Json,
                };
                out.push((el, format));
            }
        }
        class => {
            check_size(item, limit, index)?;
            let format = if class == K8sClass::Event { EventFormat::KubernetesAudit } else { EventFormat::Json };
            out.push((item, format));
        }
    }
    Ok(())
}

fn check_size(item: &[u8], limit: usize, index: usize) -> Result<(), BodyError> {
    if item.len() > limit {
        return Err(BodyError::TooLarge { item: index, size: item.len(), limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidReason;

    fn split(b: &str) -> Result<Vec<(&str, EventFormat)>, BodyError> {
        split_body(b.as_bytes(), 1000)
            .map(|v| v.into_iter().map(|(s, f)| (std::str::from_utf8(s).unwrap(), f)).collect())
    }

    #[test]
    fn shapes() {
        use EventFormat::*;
        assert_eq!(split(r#" {"a":1} "#).unwrap(), vec![(r#"{"a":1}"#, Json)]);
        assert_eq!(
            split("[ {\"a\":\"]\"} ,\n{\"b\":[1]} ]").unwrap(),
            vec![(r#"{"a":"]"}"#, Json), (r#"{"b":[1]}"#, Json)]
        );
        assert_eq!(
            split("{\"a\":1}\r\n{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\"}\n").unwrap(),
            vec![(r#"{"a":1}"#, Json), (r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#, KubernetesAudit)]
        );
        assert_eq!(split("{\n  \"pretty\": true\n}\n").unwrap(), vec![("{\n  \"pretty\": true\n}", Json)]);
        let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"verb":"get"},{"kind":"Pod"}]}"#;
        assert_eq!(split(list).unwrap(), vec![(r#"{"verb":"get"}"#, KubernetesAudit), (r#"{"kind":"Pod"}"#, Json)]);
        assert_eq!(split("\u{feff}{}").unwrap(), vec![("{}", Json)]);
    }

    #[test]
    fn errors_name_the_item() {
        assert_eq!(split("").unwrap_err(), BodyError::Empty);
        assert_eq!(split(" \n ").unwrap_err(), BodyError::Empty);
        assert_eq!(split("[]").unwrap_err(), BodyError::EmptyArray);
        assert_eq!(split(r#"{"kind":"EventList","items":[]}"#).unwrap_err(), BodyError::EmptyArray);
        assert_eq!(
            split(r#"[{"a":1}, 2]"#).unwrap_err(),
            BodyError::InvalidItem { item: 1, reason: InvalidReason::NotObject }
        );
        assert!(matches!(
            split("{\"a\":1}\n{\"a\":tru}\n").unwrap_err(),
            BodyError::InvalidItem { item: 1, reason: InvalidReason::Json { .. } }
        ));
        assert!(matches!(split("[{\"a\":1} {}]").unwrap_err(), BodyError::Malformed { item: 1, .. }));
        assert!(matches!(split("[{\"a\":1}] x").unwrap_err(), BodyError::Malformed { item: 1, .. }));
        assert!(matches!(split("[{\"a\":1},").unwrap_err(), BodyError::Malformed { .. }));
        assert!(matches!(split("{\"a\":1} {\"b\":").unwrap_err(), BodyError::Malformed { item: 1, .. }));
        assert!(matches!(split("{\"a\":1}x").unwrap_err(), BodyError::InvalidItem { item: 1, .. }));
        let big = format!("[{{}},{{\"a\":\"{}\"}}]", "x".repeat(2000));
        assert_eq!(split(&big).unwrap_err(), BodyError::TooLarge { item: 1, size: 2008, limit: 1000 });
        let e = split(r#"{"kind":"EventList","items":{}}"#).unwrap_err();
        assert_eq!(e.to_string(), "item 0: Kubernetes EventList: \"items\" is not an array");
    }
}
