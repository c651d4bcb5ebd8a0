//! The Kubernetes audit webhook body: an EventList split into exact item bytes, each
//! item's dedup key. Items are sub-slices of the body and never panic the key finder.

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    if let Ok(items) = stele_formats::split_event_list(data) {
        let range = data.as_ptr_range();
        for item in items {
            assert!(range.contains(&item.as_ptr()) || item.is_empty());
            if let Some(key) = stele_formats::k8s_dedup_key(item) {
                assert!(key.contains('/'));
            }
        }
    }
}
