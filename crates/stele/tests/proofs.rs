//! `stele proof` and `stele publish`: the proofs verify with stele-tlog against signed
//! checkpoints, and the published files are byte for byte what the server serves.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use stele_tlog::Hash;
use stele_tlog::checkpoint::{Checkpoint, open_checkpoint};
use stele_tlog::merkle::{verify_consistency, verify_inclusion};
use stele_tlog::note::NoteVerifier;

fn write_events(dir: &Path, name: &str, from: u64, count: u64) -> PathBuf {
    let path = dir.join(name);
    let mut s = String::new();
    for i in from..from + count {
        s.push_str(&format!("{{\"actor\":\"user{}\",\"action\":\"read\",\"n\":{i}}}\n", i % 5));
    }
    std::fs::write(&path, s).unwrap();
    path
}

fn open(data: &Path, note: &str) -> Checkpoint {
    let vkey = std::fs::read_to_string(data.join("keys/verifier.vkey")).unwrap();
    let verifier = NoteVerifier::parse(vkey.trim()).unwrap();
    open_checkpoint(note.as_bytes(), &verifier).unwrap().checkpoint
}

fn b64(v: &Value) -> Hash {
    Hash::from_base64(v.as_str().unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(b64).collect()
}

fn checkpoint_note(data: &Path) -> String {
    stele_at("checkpoint", data, &[]).expect_code(0, "checkpoint").stdout.clone()
}

fn proof(args: &[&str]) -> Value {
    let r = stele(args);
    r.expect_code(0, "proof");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"))
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&raw[..end]).unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[end + 4..].to_vec())
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn proof_command_json_verifies_against_signed_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let d = data.to_str().unwrap();
    import(&data, &[], &[write_events(tmp.path(), "a.jsonl", 0, 700)]);
    let first_note = checkpoint_note(&data);
    let first = open(&data, &first_note);
    assert_eq!(first.tree_size, 701, "700 events and the stream's registration");
    import(&data, &[], &[write_events(tmp.path(), "b.jsonl", 700, 300)]);
    let note = checkpoint_note(&data);
    let cp = open(&data, &note);
    assert_eq!(cp.tree_size, 1001);

    for index in [0u64, 1, 255, 256, 700, 1000] {
        let v = proof(&["proof", "inclusion", "--data", d, "--index", &index.to_string()]);
        assert_eq!(v["leaf_index"], index);
        assert_eq!(v["tree_size"], cp.tree_size);
        assert_eq!(v["checkpoint"].as_str(), Some(note.as_str()));
        assert_eq!(b64(&v["root_hash"]), cp.root_hash);
        verify_inclusion(index, cp.tree_size, &b64(&v["leaf_hash"]), &hashes(&v["hashes"]), &cp.root_hash).unwrap();
    }
    let v = proof(&["proof", "inclusion", "--data", d, "--index", "3", "--tree-size", "701"]);
    assert_eq!(v["checkpoint"], Value::Null);
    verify_inclusion(3, 701, &b64(&v["leaf_hash"]), &hashes(&v["hashes"]), &first.root_hash).unwrap();

    let v = proof(&["proof", "consistency", "--data", d, "--first", "701"]);
    assert_eq!((v["first"].as_u64(), v["second"].as_u64()), (Some(701), Some(1001)));
    assert_eq!(v["checkpoint"].as_str(), Some(note.as_str()));
    verify_consistency(701, 1001, &first.root_hash, &cp.root_hash, &hashes(&v["hashes"])).unwrap();
    assert_eq!(b64(&v["first_root"]), first.root_hash);
    assert_eq!(b64(&v["second_root"]), cp.root_hash);

    for (args, what) in [
        (vec!["proof", "inclusion", "--data", d, "--index", "1001"], "not below"),
        (vec!["proof", "inclusion", "--data", d, "--index", "1", "--tree-size", "1002"], "beyond the log"),
        (vec!["proof", "inclusion", "--data", d, "--index", "-1"], ""),
        (vec!["proof", "consistency", "--data", d, "--first", "0"], "at least 1"),
        (vec!["proof", "consistency", "--data", d, "--first", "900", "--second", "800"], "larger than"),
        (vec!["proof", "consistency", "--data", d, "--first", "1", "--second", "5000"], "beyond the log"),
    ] {
        let r = stele(&args);
        r.expect_code(2, &format!("{args:?}"));
        assert!(r.stderr.contains(what), "{args:?}: {r}");
    }
}

#[test]
fn publish_writes_what_the_server_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("www");
    init(&data);
    let d = data.to_str().unwrap();
    let o = out.to_str().unwrap();
    stele(&["publish", "--data", d, "--out", o]).expect_code(2, "publish without a checkpoint");
    import(&data, &[], &[write_events(tmp.path(), "a.jsonl", 0, 700)]);
    stele(&["publish", "--data", d, "--out", o]).expect_code(0, "publish");
    let full = out.join("tile/0/000");
    let inode = std::fs::metadata(&full).unwrap().ino();
    let names: Vec<String> = files_under(&out).iter().map(|p| p.to_str().unwrap().to_string()).collect();
    assert_eq!(
        names,
        [
            "checkpoint",
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/189",
            "tile/1/000.p/2",
            "tile/entries/000",
            "tile/entries/001",
            "tile/entries/002.p/189"
        ]
    );

    // More entries: full tiles are kept as they are, new ones appear.
    import(&data, &[], &[write_events(tmp.path(), "b.jsonl", 700, 300)]);
    stele(&["publish", "--data", d, "--out", o]).expect_code(0, "publish again");
    assert_eq!(std::fs::metadata(&full).unwrap().ino(), inode, "a full tile is never rewritten");
    let files = files_under(&out);
    assert!(files.iter().any(|p| p == Path::new("tile/0/003.p/233")));
    assert!(files.iter().any(|p| p == Path::new("tile/1/000.p/3")));
    assert!(!files.iter().any(|p| p.to_str().unwrap().contains(".tmp")), "{files:?}");

    // The server over the same data serves the same bytes for the same checkpoint.
    let note = std::fs::read_to_string(out.join("checkpoint")).unwrap();
    assert_eq!(open(&data, &note).tree_size, 1001);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut config = stele_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
    config.checkpoint_interval = Duration::from_secs(3600);
    let log = stele_store::Log::open(&data, config.log_options.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt
        .block_on(stele_server::start(config, log, async {
            let _ = stopped.await;
        }))
        .unwrap();
    let addr = server.local_addr();
    let mut current = 0;
    for rel in &files {
        let want = std::fs::read(out.join(rel)).unwrap();
        let (status, got) = http_get(addr, &format!("/{}", rel.to_str().unwrap()));
        // Partial tiles of the older tree are kept on disk but no longer served.
        let old_partial = rel.to_str().unwrap().contains(".p/") && !rel.ends_with("233") && !rel.ends_with("000.p/3");
        if old_partial {
            assert_eq!(status, 404, "{rel:?}");
            continue;
        }
        assert_eq!(status, 200, "{rel:?}");
        assert_eq!(got, want, "{rel:?} differs from the server's");
        current += 1;
    }
    assert_eq!(current, 1 + 4 + 4 + 1, "checkpoint, 3 full + 1 partial hash tiles and bundles, level 1");
    let _ = stop.send(());
    rt.block_on(server.wait()).unwrap();
}
