//! The "proofs anyone can check" routes: C2SP tlog-tiles, RFC 9162 proofs and
//! checkpoint receipts, each checked with stele-tlog's verifier against signed
//! checkpoints, as an outside client would.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stele_server::ServerConfig;
use stele_store::{Log, LogOptions, NewEntry};
use stele_tlog::Hash;
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{self, HashReader, MemoryTree};
use stele_tlog::tile::{TILE_HEIGHT, TileId, reduce_perfect, tiles_at_level};

mod common;

use common::{Resp, TestServer, b64, hashes, open, request_json};

const ORIGIN: &str = "test.example/tiles";

struct Server(TestServer);

impl std::ops::Deref for Server {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Server {
    fn start(dir: tempfile::TempDir, edit: impl FnOnce(&mut ServerConfig)) -> Server {
        Server(TestServer::start(dir, edit))
    }

    fn fresh(edit: impl FnOnce(&mut ServerConfig)) -> Server {
        Server(TestServer::fresh(ORIGIN, edit))
    }

    fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, b"")
    }

    fn stop(self) {
        self.0.stop();
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    let r = request_json(addr, method, path, body);
    assert!(
        !r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
        "these routes answer with a length"
    );
    r
}

/// Appends `count` small events in batches of at most 20 000.
fn append(log: &mut Log, from: u64, count: u64) {
    let mut done = 0;
    while done < count {
        let n = (count - done).min(20_000);
        let payloads: Vec<String> =
            (from + done..from + done + n).map(|i| format!("{{\"actor\":\"u{}\",\"n\":{i}}}", i % 7)).collect();
        let entries: Vec<NewEntry<'_>> =
            payloads.iter().map(|p| NewEntry { stream: "default", format: 1, payload: p.as_bytes() }).collect();
        log.append(&entries).unwrap();
        done += n;
    }
}

/// The hashes of tree levels 0, 8, 16, … as an outside client rebuilds them from tiles.
struct Tiles(Vec<Vec<Hash>>);

impl HashReader for Tiles {
    type Error = String;
    fn node_hash(&self, level: u32, index: u64) -> Result<Hash, String> {
        let (k, r) = ((level / TILE_HEIGHT) as usize, level % TILE_HEIGHT);
        let start = (index << r) as usize;
        let stored = self.0.get(k).and_then(|l| l.get(start..start + (1 << r))).ok_or(format!("({level},{index})"))?;
        Ok(reduce_perfect(stored))
    }
}

fn split_hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect()
}

#[test]
fn tiles_and_proofs_verify_against_signed_checkpoints() {
    // Two checkpoints: 1 000 entries, then 65 536 + 557 (level 0 full and partial,
    // level 1 full and partial, level 2 partial).
    let dir = tempfile::tempdir().unwrap();
    stele_store::log::init(dir.path(), ORIGIN).unwrap();
    let (first, second) = {
        let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
        append(&mut log, 0, 999);
        let a = log.sign_checkpoint().unwrap().unwrap();
        append(&mut log, 999, 65_536 + 557 - 1000);
        let b = log.sign_checkpoint().unwrap().unwrap();
        (a, b)
    };
    assert_eq!((first.tree_size, second.tree_size), (1000, 66_093));
    // No new checkpoint while the test runs (the server appends its start record).
    let s = Server::start(dir, |c| c.checkpoint_interval = Duration::from_secs(3600));
    let r = s.get("/checkpoint");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let note = r.text();
    let cp = open(s.dir.path(), &note);
    assert_eq!(cp.tree_size, second.tree_size, "tiles follow the newest signed checkpoint");
    let size = cp.tree_size;

    // Every tile of the checkpoint's tree.
    let mut levels: Vec<Vec<Hash>> = Vec::new();
    for level in 0u32.. {
        let (full, partial) = tiles_at_level(size, level);
        if full == 0 && partial == 0 {
            break;
        }
        let mut level_hashes = Vec::new();
        for index in 0..full + u64::from(partial > 0) {
            let width = if index < full { 256 } else { partial };
            let id = TileId { level, index, width };
            let r = s.get(&format!("/{}", id.hash_path()));
            assert_eq!(r.status, 200, "{}: {}", id.hash_path(), r.text());
            assert_eq!(r.header("content-type"), Some("application/octet-stream"));
            let want_cache = if width == 256 { "public, max-age=31536000, immutable" } else { "no-cache" };
            assert_eq!(r.header("cache-control"), Some(want_cache), "{}", id.hash_path());
            assert_eq!(r.body.len(), 32 * width as usize);
            let tile = split_hashes(&r.body);
            if level == 0 {
                // The entry bundle's leaves hash to this level-0 tile.
                let b = s.get(&format!("/{}", id.entries_path()));
                assert_eq!(b.status, 200, "{}", id.entries_path());
                let mut rest = &b.body[..];
                let mut leaf_hashes = Vec::new();
                while !rest.is_empty() {
                    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    assert_eq!(len, 68);
                    leaf_hashes.push(leaf_hash(&rest[2..2 + len]));
                    rest = &rest[2 + len..];
                }
                assert_eq!(leaf_hashes, tile, "entry bundle {index} against hash tile 0/{index}");
            } else {
                // Each full tile hash of level L-1 reduces to one hash of level L.
                for (j, h) in tile.iter().enumerate() {
                    let below = &levels[level as usize - 1][(index as usize * 256 + j) * 256..][..256];
                    assert_eq!(reduce_perfect(below), *h, "tile {level}/{index} hash {j}");
                }
            }
            level_hashes.extend(tile);
        }
        levels.push(level_hashes);
    }
    assert_eq!(levels.len(), 3);
    assert_eq!((levels[0].len(), levels[1].len(), levels[2].len()), (66_093, 258, 1));
    let tiles = Tiles(levels);
    assert_eq!(merkle::root_hash(&tiles, size).unwrap(), cp.root_hash, "the tiles hash up to the checkpoint root");
    let mut mem = MemoryTree::new();
    for h in &tiles.0[0] {
        mem.push(*h);
    }
    assert_eq!(merkle::root_hash(&mem, size).unwrap(), cp.root_hash);

    // Tiles that do not exist at the checkpoint's size, and bad paths.
    for path in [
        "/tile/0/259",      // beyond the tree
        "/tile/0/258",      // the partial tile's index as a full tile
        "/tile/0/258.p/44", // not the current width
        "/tile/0/258.p/46",
        "/tile/0/257.p/10", // a complete tile as a partial one
        "/tile/1/001",      // level 1 has one full tile
        "/tile/1/001.p/3",  // not the current width
        "/tile/3/000.p/1",  // no level 3
        "/tile/entries/258",
        "/tile/entries/258.p/10",
        "/tile/entries/259.p/45",
        "/tile/0/1", // non-canonical index
        "/tile/0/x000/001",
        "/tile/00/000", // non-canonical level
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/000.p/01",
        "/tile/64/000",
        "/tile/0",
        "/tile/",
        "/tile/0/000/",
        "/tile/0/x018446744073709551/615",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(s.get("/tile/0/258.p/45").status, 200, "the current partial width at level 0");
    assert_eq!(s.get("/tile/entries/258.p/45").status, 200);
    assert_eq!(s.get("/tile/1/001.p/2").status, 200);
    assert_eq!(s.get("/tile/2/000.p/1").status, 200);

    // Inclusion proofs to the newest checkpoint (the default tree size).
    for index in [0u64, 1, 255, 256, 999, 65_535, 65_536, 66_092] {
        let r = s.get(&format!("/v1/proof/inclusion?index={index}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["leaf_index"], index);
        assert_eq!(v["tree_size"], size);
        assert_eq!(v["checkpoint"].as_str(), Some(note.as_str()));
        assert_eq!(b64(&v["root_hash"]), cp.root_hash);
        let leaf = b64(&v["leaf_hash"]);
        assert_eq!(leaf, tiles.0[0][index as usize], "leaf hash of entry {index}");
        merkle::verify_inclusion(index, size, &leaf, &hashes(&v["hashes"]), &cp.root_hash).unwrap();
    }
    // ... and to the older checkpoint.
    let old = open(s.dir.path(), &first.note);
    let v = s.get("/v1/proof/inclusion?index=17&tree_size=1000").json();
    assert_eq!(v["checkpoint"], Value::Null, "not the newest checkpoint");
    merkle::verify_inclusion(17, 1000, &b64(&v["leaf_hash"]), &hashes(&v["hashes"]), &old.root_hash).unwrap();

    // Consistency between the two signed checkpoints.
    let v = s.get("/v1/proof/consistency?first=1000").json();
    assert_eq!((v["first"].as_u64(), v["second"].as_u64()), (Some(1000), Some(size)));
    assert_eq!(b64(&v["first_root"]), old.root_hash);
    assert_eq!(b64(&v["second_root"]), cp.root_hash);
    merkle::verify_consistency(1000, size, &old.root_hash, &cp.root_hash, &hashes(&v["hashes"])).unwrap();
    let v = s.get("/v1/proof/consistency?first=1000&second=1000").json();
    assert_eq!(v["hashes"].as_array().unwrap().len(), 0);

    // Bad parameters: 4xx with a message.
    for (path, status) in [
        ("/v1/proof/inclusion", 400),
        ("/v1/proof/inclusion?index=-1", 400),
        ("/v1/proof/inclusion?index=18446744073709551616", 400),
        ("/v1/proof/inclusion?index=1.0", 400),
        ("/v1/proof/inclusion?index=66093", 400),
        ("/v1/proof/inclusion?index=1&tree_size=1000000", 400),
        ("/v1/proof/inclusion?index=1&tree_size=18446744073709551615", 400),
        ("/v1/proof/inclusion?index=5&tree_size=5", 400),
        ("/v1/proof/inclusion?index=1&index=2", 400),
        ("/v1/proof/inclusion?index=1&size=2", 400),
        ("/v1/proof/inclusion?leaf_hash=AAAA", 400),
        ("/v1/proof/consistency", 400),
        ("/v1/proof/consistency?first=0", 400),
        ("/v1/proof/consistency?first=2000&second=1000", 400),
        ("/v1/proof/consistency?first=1&second=1000000", 400),
        ("/v1/proof/consistency?first=-3", 400),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.json()["error"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
    }
    let r = s.get("/v1/proof/inclusion?leaf_hash=AAAA");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not base64 of 32 bytes"), "{}", r.text());
    let r = s.get("/v1/proof/inclusion?index=1&tree_size=1000000");
    assert!(r.text().contains("beyond the log"), "{}", r.text());
    s.stop();
}

#[test]
fn no_tiles_or_default_proofs_before_the_first_checkpoint() {
    let s = Server::fresh(|c| c.checkpoint_interval = Duration::from_secs(3600));
    assert_eq!(s.get("/tile/0/000.p/1").status, 404);
    assert_eq!(s.get("/v1/proof/inclusion?index=0").status, 404);
    assert_eq!(s.get("/v1/proof/consistency?first=1").status, 404);
    s.stop();
}

#[test]
fn receipts_carry_a_verifiable_proof_to_a_signed_checkpoint() {
    let s = Server::fresh(|_| {});
    let body = br#"[{"actor":"alice","action":"login"},{"actor":"bob","action":"delete"},{"actor":"carol"}]"#;
    let started = std::time::Instant::now();
    let r = request(s.addr, "POST", "/v1/events?wait=checkpoint", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let v = r.json();
    let note = v["checkpoint"]["note"].as_str().unwrap();
    let cp = open(s.dir.path(), note);
    assert_eq!(v["checkpoint"]["tree_size"], cp.tree_size);
    assert_eq!(b64(&v["checkpoint"]["root_hash"]), cp.root_hash);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        let index = e["index"].as_u64().unwrap();
        assert!(index < cp.tree_size);
        merkle::verify_inclusion(index, cp.tree_size, &b64(&e["leaf_hash"]), &hashes(&e["hashes"]), &cp.root_hash)
            .unwrap();
    }
    // With a stream too; a bad wait value is refused before anything is appended.
    let r = request(s.addr, "POST", "/v1/events?stream=app&wait=checkpoint", br#"{"actor":"dave"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let size = s.get("/healthz").json()["tree_size"].as_u64().unwrap();
    let r = request(s.addr, "POST", "/v1/events?wait=forever", br#"{"actor":"eve"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(s.get("/healthz").json()["tree_size"].as_u64().unwrap(), size);
    s.stop();
}

#[test]
fn a_receipt_that_times_out_is_503_with_the_appended_indexes() {
    let s = Server::fresh(|c| {
        c.checkpoint_interval = Duration::from_secs(3600);
        c.receipt_timeout = Duration::from_millis(200);
    });
    let r = request(s.addr, "POST", "/v1/events?wait=checkpoint", br#"[{"actor":"a"},{"actor":"b"}]"#);
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert!(v["error"].as_str().unwrap().contains("ARE appended"), "{v}");
    let indexes: Vec<u64> = v["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes.len(), 2);
    for i in indexes {
        assert_eq!(s.get(&format!("/v1/entries/{i}")).status, 200, "entry {i} is in the log");
    }
    s.stop();
}
