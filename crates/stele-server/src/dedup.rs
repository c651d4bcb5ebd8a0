//! Exactly-once appends for senders that retry: idempotency keys and Kubernetes
//! audit IDs.
//!
//! Two kinds of key, each remembered for its own window:
//! - a request's `Idempotency-Key` (HTTP header): the whole request is one unit. A
//!   retry with the same key and the same body gets the original indexes back and
//!   appends nothing; the same key with a different body is refused (409).
//! - a Kubernetes audit event's `auditID` and `stage`: each event is its own unit. A
//!   retried webhook batch appends only the events not seen before; the others are
//!   answered with their original index.
//!
//! The sequencer thread owns the table, so two concurrent retries cannot both append.
//! Keys are made durable in the same group commit as their entries: the commit ends
//! with a stele record in stream `_stele/dedup` listing each key of the commit with the
//! distance back from the record to its first entry (stream registration records may
//! precede the entries, so absolute indexes are not known before the commit). At
//! start, the records received within the longest window are read back through the
//! query index, so a retry after a restart is still recognised. A crash can never
//! leave entries without their key: both are in the same all-or-nothing commit.
//!
//! Memory is bounded: each table keeps at most its capacity of keys (the oldest are
//! forgotten first) for at most its window.
//!
//! Record payload (JSON, format 3): `{"type":"dedup","keys":[[KIND, KEY, BACK, COUNT,
//! BODY],...]}` where KIND is `"request"` or `"event"`, KEY the base64 of the first 16
//! bytes of SHA-256 over the key text, BACK the record's index minus the first entry's,
//! COUNT the number of entries, and BODY the base64 SHA-256 of the request body (empty
//! for events).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

/// Stream of the key records.
pub(crate) const DEDUP_STREAM: &str = "_stele/dedup";
/// Most keys in one record (keeps records far below the entry size limit).
pub(crate) const KEYS_PER_RECORD: usize = 8_192;

/// A key's 16-byte digest.
pub(crate) type KeyDigest = [u8; 16];

/// The digest of a key of `kind`.
pub(crate) fn digest(kind: Kind, key: &str) -> KeyDigest {
    let mut h = Sha256::new();
    h.update([kind as u8]);
    h.update(key.as_bytes());
    let full = h.finalize();
    full[..16].try_into().expect("16 of 32 bytes")
}

/// SHA-256 of a request body.
pub(crate) fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The two kinds of key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Request = 1,
    Event = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Event => "event",
        }
    }
}

/// How a request is deduplicated.
#[derive(Clone, Debug, Default)]
pub(crate) enum Dedup {
    /// Not at all.
    #[default]
    None,
    /// The whole request, by an idempotency key.
    Request { key: KeyDigest, body: [u8; 32] },
    /// Event by event (`None`: that event has no key and is always appended).
    PerEvent(Vec<Option<KeyDigest>>),
}

/// What the table remembers of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) first: u64,
    pub(crate) count: u64,
    pub(crate) body: [u8; 32],
    received_ns: u64,
}

/// The keys of one kind, bounded by a window and a capacity.
pub(crate) struct Table {
    window_ns: u64,
    capacity: usize,
    map: HashMap<KeyDigest, Seen>,
    order: VecDeque<(u64, KeyDigest)>,
}

impl Table {
    pub(crate) fn new(window: Duration, capacity: usize) -> Table {
        Table {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, key: &KeyDigest, now_ns: u64) -> Option<Seen> {
        self.map.get(key).copied().filter(|s| now_ns.saturating_sub(s.received_ns) <= self.window_ns)
    }

    /// Remembers a key; the newest wins when a key is inserted twice.
    pub(crate) fn insert(&mut self, key: KeyDigest, first: u64, count: u64, body: [u8; 32], received_ns: u64) {
        if self.capacity == 0 || self.window_ns == 0 {
            return;
        }
        self.map.insert(key, Seen { first, count, body, received_ns });
        self.order.push_back((received_ns, key));
        self.expire(received_ns);
    }

    /// Forgets keys past the window, then the oldest past the capacity.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        while let Some(&(t, key)) = self.order.front() {
            let too_old = now_ns.saturating_sub(t) > self.window_ns;
            if !too_old && self.order.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            // Only if this queue slot is the key's newest insertion.
            if self.map.get(&key).is_some_and(|s| s.received_ns == t) {
                self.map.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Both tables.
pub(crate) struct DedupTables {
    pub(crate) requests: Table,
    pub(crate) events: Table,
}

impl DedupTables {
    pub(crate) fn new(config: &DedupConfig) -> DedupTables {
        DedupTables {
            requests: Table::new(config.idempotency_window, config.idempotency_capacity),
            events: Table::new(config.event_window, config.event_capacity),
        }
    }

    pub(crate) fn table(&mut self, kind: Kind) -> &mut Table {
        match kind {
            Kind::Request => &mut self.requests,
            Kind::Event => &mut self.events,
        }
    }

    /// Loads one record's keys; `record_index` is the record's own index.
    pub(crate) fn load_record(&mut self, payload: &[u8], record_index: u64, received_ns: u64) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        if v["type"] != "dedup" {
            return Err("not a dedup record".into());
        }
        let keys = v["keys"].as_array().ok_or("no keys array")?;
        for k in keys {
            let k = k.as_array().filter(|a| a.len() == 5).ok_or("a key is not a 5-element array")?;
            let kind = match k[0].as_str() {
                Some("request") => Kind::Request,
                Some("event") => Kind::Event,
                _ => return Err("unknown key kind".into()),
            };
            let key: KeyDigest = k[1]
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or("bad key digest")?;
            let back = k[2].as_u64().ok_or("bad back offset")?;
            let count = k[3].as_u64().ok_or("bad count")?;
            let body: [u8; 32] = match k[4].as_str() {
                Some("") => [0; 32],
                Some(s) => BASE64.decode(s).ok().and_then(|b| b.try_into().ok()).ok_or("bad body digest")?,
                None => return Err("bad body digest".into()),
            };
            let first = record_index.checked_sub(back).ok_or("back offset past the start of the log")?;
            self.table(kind).insert(key, first, count, body, received_ns);
        }
        Ok(())
    }
}

/// Fills tables from the dedup records received within their windows, found through
/// the query index (which is caught up with the log). Damaged records are skipped
/// with a warning: they only make a later retry append a second copy.
pub(crate) fn load(
    config: &DedupConfig,
    index: &stele_index::Index,
    reader: &stele_store::LogReader,
) -> Result<DedupTables, stele_index::IndexError> {
    let mut tables = DedupTables::new(config);
    let window = config.idempotency_window.max(config.event_window);
    let now = stele_store::log::now_ns();
    let since = now.saturating_sub(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX));
    let query = stele_index::Query {
        stream: Some(DEDUP_STREAM.to_string()),
        since_ns: Some(i64::try_from(since).unwrap_or(i64::MAX)),
        by_received: true,
        ..stele_index::Query::default()
    };
    let mut hits = Vec::new();
    index.query(&query, |hit| {
        hits.push((hit.index, hit.received_ns));
        true
    })?;
    for (i, received_ns) in hits {
        let loaded =
            reader.entry(i).map_err(|e| e.to_string()).and_then(|e| tables.load_record(&e.payload, i, received_ns));
        if let Err(e) = loaded {
            tracing::warn!(entry = i, "skipping a damaged dedup record: {e}");
        }
    }
    tables.requests.expire(now);
    tables.events.expire(now);
    Ok(tables)
}

/// One key to write into the commit's record.
pub(crate) struct NewKey {
    pub(crate) kind: Kind,
    pub(crate) key: KeyDigest,
    /// Position of the key's first entry among the commit's entries.
    pub(crate) position: usize,
    pub(crate) count: u64,
    pub(crate) body: [u8; 32],
}

/// The record payloads for `keys`, for a commit of `entries` entries followed by the
/// records themselves (record `j` is at position `entries + j`).
pub(crate) fn records(keys: &[NewKey], entries: usize) -> Vec<Vec<u8>> {
    keys.chunks(KEYS_PER_RECORD)
        .enumerate()
        .map(|(j, chunk)| {
            let me = entries + j;
            let list: Vec<serde_json::Value> = chunk
                .iter()
                .map(|k| {
                    let body = if k.kind == Kind::Request { BASE64.encode(k.body) } else { String::new() };
                    serde_json::json!([k.kind.name(), BASE64.encode(k.key), me - k.position, k.count, body])
                })
                .collect();
            serde_json::json!({"type": "dedup", "keys": list}).to_string().into_bytes()
        })
        .collect()
}

/// Windows and capacities of the two tables.
#[derive(Clone, Debug)]
pub struct DedupConfig {
    /// How long an `Idempotency-Key` is remembered (default 24 h).
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered (default 1,000,000; about 80 bytes each).
    pub idempotency_capacity: usize,
    /// How long a Kubernetes audit event's `auditID`+`stage` is remembered (default
    /// 10 minutes: the API server's webhook backend gives up retrying a batch after
    /// about two).
    pub event_window: Duration,
    /// Most event keys remembered (default 2,000,000; about 80 bytes each).
    pub event_capacity: usize,
}

impl Default for DedupConfig {
    fn default() -> DedupConfig {
        DedupConfig {
            idempotency_window: Duration::from_secs(24 * 3600),
            idempotency_capacity: 1_000_000,
            event_window: Duration::from_secs(600),
            event_capacity: 2_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_capacity_bound_the_table() {
        let mut t = Table::new(Duration::from_nanos(100), 3);
        for i in 0..5u64 {
            t.insert(digest(Kind::Event, &i.to_string()), i, 1, [0; 32], i);
        }
        assert_eq!(t.len(), 3);
        assert!(t.get(&digest(Kind::Event, "0"), 5).is_none());
        assert_eq!(t.get(&digest(Kind::Event, "4"), 5).map(|s| s.first), Some(4));
        // Past the window.
        assert!(t.get(&digest(Kind::Event, "4"), 200).is_none());
        t.expire(1_000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn reinserting_a_key_keeps_it_until_its_newest_insertion_expires() {
        let mut t = Table::new(Duration::from_nanos(100), 10);
        let k = digest(Kind::Request, "k");
        t.insert(k, 1, 1, [0; 32], 0);
        t.insert(k, 2, 1, [0; 32], 90);
        t.expire(150);
        assert_eq!(t.get(&k, 150).map(|s| s.first), Some(2));
    }

    #[test]
    fn records_round_trip_through_load() {
        let keys = vec![
            NewKey { kind: Kind::Request, key: digest(Kind::Request, "a"), position: 0, count: 3, body: [7; 32] },
            NewKey {
                kind: Kind::Event,
                key: digest(Kind::Event, "e1/ResponseComplete"),
                position: 3,
                count: 1,
                body: [0; 32],
            },
        ];
        let recs = records(&keys, 4);
        assert_eq!(recs.len(), 1);
        // Entries at 100..104, the record at 104.
        let mut tables = DedupTables::new(&DedupConfig::default());
        tables.load_record(&recs[0], 104, 1).unwrap();
        let a = tables.requests.get(&digest(Kind::Request, "a"), 1).unwrap();
        assert_eq!((a.first, a.count, a.body), (100, 3, [7; 32]));
        let e = tables.events.get(&digest(Kind::Event, "e1/ResponseComplete"), 1).unwrap();
        assert_eq!((e.first, e.count), (103, 1));
        // Kinds are separate.
        assert!(tables.events.get(&digest(Kind::Event, "a"), 1).is_none());
        assert!(tables.load_record(br#"{"type":"verification"}"#, 5, 1).is_err());
    }

    #[test]
    fn many_keys_split_into_records_with_their_own_offsets() {
        let n = KEYS_PER_RECORD + 10;
        let keys: Vec<NewKey> = (0..n)
            .map(|i| NewKey {
                kind: Kind::Event,
                key: digest(Kind::Event, &i.to_string()),
                position: i,
                count: 1,
                body: [0; 32],
            })
            .collect();
        let recs = records(&keys, n);
        assert_eq!(recs.len(), 2);
        let mut tables = DedupTables::new(&DedupConfig::default());
        // Entries at 1000..1000+n, records right after.
        for (j, r) in recs.iter().enumerate() {
            tables.load_record(r, 1000 + (n + j) as u64, 1).unwrap();
        }
        for i in [0, KEYS_PER_RECORD - 1, KEYS_PER_RECORD, n - 1] {
            let s = tables.events.get(&digest(Kind::Event, &i.to_string()), 1).unwrap();
            assert_eq!(s.first, 1000 + i as u64);
        }
    }
}
