//! `GET /v1/proof/inclusion?leaf_hash=...`: the inclusion proof of an entry found by
//! its leaf hash (a scan of the stored level-0 hashes), checked as an outside client
//! would against the signed checkpoint.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stele_server::ServerConfig;
use stele_store::{Log, LogOptions, NewEntry};
use stele_tlog::Hash;
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::merkle;

mod common;

use common::{b64, hashes, request};

const ORIGIN: &str = "test.example/leafhash";

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let r = request(addr, "GET", path, &[], b"");
    let body = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.text()));
    (r.status, body)
}

/// Percent-encodes the base64 characters that mean something in a query string.
fn escape(b64: &str) -> String {
    b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

#[test]
fn inclusion_proof_by_leaf_hash() {
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), ORIGIN).unwrap();
    // More entries than one scan batch (64 Ki hashes), so the scan crosses a batch.
    let (size, lookups, small) = {
        let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let n = stele_store::reader::FIND_LEAF_HASH_BATCH + 100;
        let payloads: Vec<String> = (0..n).map(|i| format!("{{\"n\":{i}}}")).collect();
        for chunk in payloads.chunks(8192) {
            let batch: Vec<NewEntry<'_>> =
                chunk.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p.as_bytes() }).collect();
            log.append(&batch).unwrap();
        }
        log.sign_checkpoint().unwrap();
        let reader = log.reader();
        let size = reader.tree_size();
        assert!(size >= n);
        let lookups: Vec<(u64, Hash)> =
            [0, 3, size / 2, size - 1].iter().map(|&i| (i, reader.leaf_hash(i).unwrap())).collect();
        assert_eq!(reader.find_leaf_hash(&lookups[3].1, size).unwrap(), Some(size - 1));
        assert_eq!(reader.find_leaf_hash(&lookups[3].1, size - 1).unwrap(), None);
        assert!(reader.find_leaf_hash(&lookups[0].1, size + 1).is_err());
        (size, lookups, reader.leaf_hash(7).unwrap())
    };

    let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.verify_incremental_interval = Duration::ZERO;
    config.verify_full_interval = Duration::ZERO;
    // No checkpoint beyond the one above while the test runs (the server's start record
    // is appended after it).
    config.checkpoint_interval = Duration::from_secs(3600);
    let log = Log::open(dir.path(), config.log_options.clone()).unwrap();
    let note = log.reader().newest_checkpoint().unwrap().note;
    let verifier = stele_store::log::read_verifier(dir.path()).unwrap();
    let cp = open_checkpoint(note.as_bytes(), &verifier).unwrap().checkpoint;
    assert_eq!(cp.tree_size, size);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt
        .block_on(stele_server::start(config, log, async {
            let _ = stopped.await;
        }))
        .unwrap();
    let addr = server.local_addr();

    for (index, hash) in &lookups {
        let (status, v) = get(addr, &format!("/v1/proof/inclusion?leaf_hash={}", escape(&hash.to_base64())));
        assert_eq!(status, 200, "{v}");
        // The same document as by index.
        let (_, by_index) = get(addr, &format!("/v1/proof/inclusion?index={index}"));
        assert_eq!(v, by_index);
        assert_eq!(v["leaf_index"], *index);
        assert_eq!(v["tree_size"], size);
        assert_eq!(v["checkpoint"].as_str(), Some(note.as_str()));
        assert_eq!(b64(&v["leaf_hash"]), *hash);
        merkle::verify_inclusion(*index, size, hash, &hashes(&v["hashes"]), &cp.root_hash).unwrap();
    }

    // An explicit smaller tree size: found below it, 404 at or above it.
    let (status, v) = get(addr, &format!("/v1/proof/inclusion?leaf_hash={}&tree_size=10", escape(&small.to_base64())));
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["leaf_index"].as_u64(), v["checkpoint"].clone()), (Some(7), Value::Null));
    let root10 = b64(&v["root_hash"]);
    merkle::verify_inclusion(7, 10, &small, &hashes(&v["hashes"]), &root10).unwrap();
    let (status, _) = get(addr, &format!("/v1/proof/inclusion?leaf_hash={}&tree_size=7", escape(&small.to_base64())));
    assert_eq!(status, 404);

    // An unescaped `+` (decoded as a space) is accepted too.
    let plus = lookups.iter().find(|(_, h)| h.to_base64().contains('+')).or(lookups.first()).unwrap();
    let loose = plus.1.to_base64().replace('/', "%2F").replace('=', "%3D");
    let (status, v) = get(addr, &format!("/v1/proof/inclusion?leaf_hash={loose}"));
    assert_eq!((status, v["leaf_index"].as_u64()), (200, Some(plus.0)), "{v}");

    let unknown = escape(&Hash([0x5a; 32]).to_base64());
    for (path, want) in [
        (format!("/v1/proof/inclusion?leaf_hash={unknown}"), 404),
        ("/v1/proof/inclusion?leaf_hash=AAAA".to_string(), 400),
        ("/v1/proof/inclusion?leaf_hash=not-base64!".to_string(), 400),
        (format!("/v1/proof/inclusion?leaf_hash={}&index=7", escape(&small.to_base64())), 400),
        (format!("/v1/proof/inclusion?leaf_hash={unknown}&tree_size={}", size + 1000), 400),
        (format!("/v1/proof/inclusion?leaf_hash={unknown}&tree_size=x"), 400),
    ] {
        let (status, v) = get(addr, &path);
        assert_eq!(status, want, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }

    let _ = stop.send(());
    rt.block_on(server.wait()).unwrap();
}
