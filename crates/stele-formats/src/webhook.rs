//! The body a Kubernetes API server's audit webhook backend POSTs.

use crate::error::{BodyError, InvalidReason};
use crate::json::{self, K8sClass, Trie};
use crate::scan::{self, skip_ws};

/// Splits a Kubernetes audit webhook body into the exact bytes of its events.
///
/// The API server sends one `EventList` (`audit.k8s.io/v1` or `v1beta1`) per
/// request; its `items` are returned in order, each as the exact bytes the
/// server sent. A body that is a single audit `Event` object yields that one
/// event. The items themselves are not validated here (see
/// [`crate::Normalizer::parse`]): one bad event must not cost the others, so
/// the caller judges each item on its own.
///
/// # Errors
/// [`BodyError::Empty`] for an empty body; [`BodyError::InvalidItem`] (item 0)
/// when the body is not valid JSON or is neither an `EventList` nor an
/// `Event`, or when `items` is not an array; [`BodyError::Malformed`] for
/// trailing data after the object. An `EventList` with no items gives an
/// empty vector (the API server never sends one, but it is not an error).
pub fn split_event_list(body: &[u8]) -> Result<Vec<&[u8]>, BodyError> {
    let start = if body.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let i = skip_ws(body, start);
    if i >= body.len() {
        return Err(BodyError::Empty);
    }
    let end = scan::value_end(body, i).ok_or_else(|| BodyError::Malformed {
        item: 0,
        byte_offset: i,
        reason: "unterminated JSON value".into(),
    })?;
    let rest = skip_ws(body, end);
    if rest < body.len() {
        return Err(BodyError::Malformed {
            item: 0,
            byte_offset: rest,
            reason: "trailing data after the EventList".into(),
        });
    }
    let obj = &body[i..end];
    let invalid = |reason| BodyError::InvalidItem { item: 0, reason };
    let caps = json::parse(obj, &Trie::classify_only()).map_err(invalid)?;
    match caps.k8s_class() {
        K8sClass::EventList => {
            let Some((s, e)) = scan::find_member(obj, "items").map_err(|_| invalid(InvalidReason::BadEventList))?
            else {
                return Ok(Vec::new());
            };
            if obj[s] != b'[' {
                return Err(invalid(InvalidReason::BadEventList));
            }
            let (elements, _) = scan::array_elements(&obj[s..e]).map_err(|_| invalid(InvalidReason::BadEventList))?;
            Ok(elements.into_iter().map(|(a, b)| &obj[s + a..s + b]).collect())
        }
        K8sClass::Event => Ok(vec![obj]),
        _ => Err(invalid(InvalidReason::NotK8sEvent { detail: caps.describe_kind() })),
    }
}

/// The deduplication key of a Kubernetes audit event: `auditID`, `/`, `stage`
/// (both top-level string members). The API server sends an event once per
/// stage with the same `auditID`, and resends whole batches when a request
/// fails, so the pair identifies one event across retries.
///
/// Returns `None` when either member is missing or not a string, or the
/// bytes are not an object (such an event is never deduplicated).
pub fn k8s_dedup_key(event: &[u8]) -> Option<String> {
    if event.first() != Some(&b'{') {
        return None;
    }
    let member = |name| -> Option<String> {
        let (s, e) = scan::find_member(event, name).ok()??;
        serde_json::from_slice::<String>(&event[s..e]).ok()
    };
    let id = member("auditID")?;
    let stage = member("stage")?;
    Some(format!("{id}/{stage}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_list_items_are_returned_exactly() {
        let body = br#" {"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[ {"kind":"Event","auditID":"a","stage":"ResponseComplete"} , 7, {"kind":"Pod"} ]} "#;
        let items = split_event_list(body).unwrap();
        assert_eq!(
            items,
            vec![&br#"{"kind":"Event","auditID":"a","stage":"ResponseComplete"}"#[..], b"7", br#"{"kind":"Pod"}"#]
        );
        assert_eq!(k8s_dedup_key(items[0]).as_deref(), Some("a/ResponseComplete"));
        assert_eq!(k8s_dedup_key(items[1]), None);
        assert_eq!(k8s_dedup_key(items[2]), None);
    }

    #[test]
    fn a_single_event_and_an_empty_list() {
        let ev =
            br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","auditID":"x\u0041","stage":"RequestReceived"}"#;
        assert_eq!(split_event_list(ev).unwrap(), vec![&ev[..]]);
        assert_eq!(k8s_dedup_key(ev).as_deref(), Some("xA/RequestReceived"));
        assert!(split_event_list(br#"{"kind":"EventList","items":[]}"#).unwrap().is_empty());
        assert!(split_event_list(br#"{"kind":"EventList"}"#).unwrap().is_empty());
    }

    #[test]
    fn bodies_that_are_not_an_event_list_are_refused() {
        assert_eq!(split_event_list(b"  "), Err(BodyError::Empty));
        assert!(matches!(split_event_list(br#"{"kind":"EventList","items":{}}"#), Err(BodyError::InvalidItem { .. })));
        assert!(matches!(split_event_list(br#"{"kind":"PodList","items":[]}"#), Err(BodyError::InvalidItem { .. })));
        assert!(matches!(
            split_event_list(br#"{"kind":"EventList","items":[}"#),
            Err(BodyError::InvalidItem { .. } | BodyError::Malformed { .. })
        ));
        assert!(matches!(split_event_list(br#"{"kind":"EventList"} x"#), Err(BodyError::Malformed { .. })));
        assert!(matches!(split_event_list(b"[1]"), Err(BodyError::InvalidItem { .. })));
    }
}
