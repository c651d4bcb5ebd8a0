//! The index against a brute-force scan of the log: every query gives exactly the
//! entries a scan finds, across full blocks, the pending block, the unindexed tail,
//! a damaged block and a reopened index.

use stele_formats::{FieldPointers, Normalizer};
use stele_index::{Index, Query};
use stele_store::log::{Log, LogOptions, NewEntry, init};

fn event(i: u64) -> String {
    let actors = ["alice", "bob", "carol", "dave", "eve"];
    let verbs = ["get", "delete", "create"];
    format!(
        r#"{{"time":"2026-01-01T00:{:02}:{:02}Z","actor":"{}","action":"{}","resource":"res/{}","outcome":"{}"}}"#,
        (i / 60) % 60,
        i % 60,
        actors[(i % 5) as usize],
        verbs[(i % 3) as usize],
        i % 97,
        if i.is_multiple_of(7) { "failure" } else { "success" }
    )
}

fn brute(log: &Log, q: &Query, normalizer: &Normalizer) -> Vec<u64> {
    let r = log.reader();
    (0..r.tree_size())
        .filter(|&i| {
            let e = r.entry(i).unwrap();
            let f = normalizer.parse(&e.payload, None).map(|(_, f)| f).unwrap_or_default();
            q.matches_entry(e.leaf.received_ns, &e.stream, &f)
        })
        .collect()
}

fn run(index: &Index, q: &Query) -> Vec<u64> {
    let mut out = Vec::new();
    index
        .query(q, |h| {
            out.push(h.index);
            true
        })
        .unwrap();
    out
}

#[test]
fn queries_match_a_brute_force_scan() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "index.example/log").unwrap();
    let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let pointers = FieldPointers::default();
    let normalizer = Normalizer::new(&pointers);
    let mut index = Index::open(dir.path(), log.reader(), &pointers, true).unwrap();
    // 10,000 events: two full blocks, a pending block, and (below) an unindexed tail.
    let payloads: Vec<String> = (0..10_000).map(event).collect();
    for chunk in payloads.chunks(1000) {
        let entries: Vec<NewEntry<'_>> =
            chunk.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p.as_bytes() }).collect();
        let done = log.append(&entries).unwrap();
        let sid = log.reader().streams().id("default").unwrap();
        for (p, ix) in chunk.iter().zip(&done.indexes) {
            let f = normalizer.parse(p.as_bytes(), None).unwrap().1;
            index.add(*ix, done.received_ns, sid, f).unwrap();
        }
    }
    let tail: Vec<String> = (10_000..10_300).map(event).collect();
    let entries: Vec<NewEntry<'_>> =
        tail.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p.as_bytes() }).collect();
    log.append(&entries).unwrap();
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64;
    let queries = vec![
        Query { actor: Some("alice".into()), ..Query::default() },
        Query { actor: Some("nobody".into()), ..Query::default() },
        Query { action: Some("delete".into()), outcome: Some("failure".into()), ..Query::default() },
        Query { resource: Some("res/1*".into()), ..Query::default() },
        Query {
            since_ns: Some(t("2026-01-01T00:10:00Z")),
            until_ns: Some(t("2026-01-01T00:11:00Z")),
            ..Query::default()
        },
        Query { stream: Some("_stele/system".into()), ..Query::default() },
        Query { actor: Some("bob".into()), limit: Some(7), ..Query::default() },
    ];
    for q in &queries {
        let mut want = brute(&log, q, &normalizer);
        if let Some(l) = q.limit {
            want.truncate(l as usize);
        }
        assert_eq!(run(&index, q), want, "{q:?}");
    }
    // Reopen (pending rows are lost, the tail is read from the log), damage a block.
    index.flush().unwrap();
    drop(index);
    let blocks = dir.path().join("index/blocks.dat");
    let mut bytes = std::fs::read(&blocks).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0xff;
    std::fs::write(&blocks, bytes).unwrap();
    let index = Index::open(dir.path(), log.reader(), &pointers, false).unwrap();
    for q in &queries {
        let mut want = brute(&log, q, &normalizer);
        if let Some(l) = q.limit {
            want.truncate(l as usize);
        }
        assert_eq!(run(&index, q), want, "after damage: {q:?}");
    }
}

/// Stream queries use each block's stream bitmap to skip blocks, and `query_from`
/// skips whole blocks before its start: both must still give exactly what a scan
/// gives, with more streams than the bitmap has bits (ids 0 and 64 share a bit).
#[test]
fn stream_queries_and_query_from_match_a_brute_force_scan() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "index.example/log").unwrap();
    let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let pointers = FieldPointers::default();
    let normalizer = Normalizer::new(&pointers);
    let mut index = Index::open(dir.path(), log.reader(), &pointers, true).unwrap();
    let names: Vec<String> = (0..70).map(|i| format!("s{i}")).collect();
    // A block of one stream ("bulk"), a block mixing the 70 streams, a block that
    // mixes them and then holds "bulk", and pending rows of "bulk".
    let plan: Vec<&str> = (0..13_000)
        .map(|i| if !(4096..9000).contains(&i) { "bulk" } else { names[(i * 7 % 70) as usize].as_str() })
        .collect();
    let payloads: Vec<String> = (0..plan.len() as u64).map(event).collect();
    for (chunk, streams) in payloads.chunks(500).zip(plan.chunks(500)) {
        let entries: Vec<NewEntry<'_>> =
            chunk.iter().zip(streams).map(|(p, s)| NewEntry { stream: s, format: 1, payload: p.as_bytes() }).collect();
        let done = log.append(&entries).unwrap();
        for ((p, ix), s) in chunk.iter().zip(&done.indexes).zip(streams) {
            let sid = log.reader().streams().id(s).unwrap();
            let f = normalizer.parse(p.as_bytes(), None).unwrap().1;
            index.add(*ix, done.received_ns, sid, f).unwrap();
        }
    }
    let mut queries: Vec<Query> = ["bulk", "s0", "s63", "s64", "s69", "s6*", "absent"]
        .iter()
        .map(|s| Query { stream: Some(s.to_string()), ..Query::default() })
        .collect();
    queries.push(Query { stream: Some("s5".into()), actor: Some("carol".into()), ..Query::default() });
    for q in &queries {
        let want = brute(&log, q, &normalizer);
        assert_eq!(run(&index, q), want, "{q:?}");
        for from in [0u64, 1, 4095, 4096, 4097, 5000, 8191, 8192, 9000, 12_287, 12_288, 12_999, 13_000, 20_000] {
            let mut got = Vec::new();
            index
                .snapshot()
                .query_from(q, from, |h| {
                    got.push(h.index);
                    true
                })
                .unwrap();
            let want_from: Vec<u64> = want.iter().copied().filter(|&i| i >= from).collect();
            assert_eq!(got, want_from, "{q:?} from {from}");
        }
    }
}
