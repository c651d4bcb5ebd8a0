//! The Merkle and note code checked against independent, published data:
//! transparency-dev/merkle golden proofs, a complete Tessera tlog-tiles log, and
//! recorded proofs from Google's argon2020 Certificate Transparency log.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::hash::{Hash, leaf_hash};
use stele_tlog::merkle::{
    MemoryTree, consistency_proof, inclusion_proof, root_hash, verify_consistency, verify_inclusion,
};
use stele_tlog::note::NoteVerifier;

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn b64(v: &Value) -> Option<Hash> {
    v.as_str().and_then(Hash::from_base64)
}

/// A root from the vectors: some cases use short placeholder roots ("don't care")
/// that only need to compare equal or unequal; map those injectively to a hash.
fn root(v: &Value) -> Option<Hash> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()?;
    Some(Hash::from_slice(&raw).unwrap_or_else(|| stele_tlog::hash::sha256(&raw)))
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(vec![]),
        Value::Array(a) => a.iter().map(b64).collect(),
        _ => None,
    }
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let Some(data) = common::shared_data() else { return };
    let mut files = Vec::new();
    json_files(&data.join("vectors/merkle/testdata/inclusion"), &mut files);
    assert!(files.len() >= 90, "expected the 98 inclusion cases, found {}", files.len());
    let mut checked = 0;
    for f in files {
        let v: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let index = v["leafIdx"].as_u64().unwrap_or(u64::MAX);
        let size = v["treeSize"].as_u64().unwrap_or(0);
        let ok = match (b64(&v["root"]), b64(&v["leafHash"]), proof(&v["proof"])) {
            (Some(root), Some(leaf), Some(p)) => verify_inclusion(index, size, &leaf, &p, &root).is_ok(),
            _ => false,
        };
        assert_eq!(ok, !want_err, "{}: {}", f.display(), v["desc"]);
        checked += 1;
    }
    eprintln!("checked {checked} inclusion vectors");
}

#[test]
fn transparency_dev_consistency_vectors() {
    let Some(data) = common::shared_data() else { return };
    let mut files = Vec::new();
    json_files(&data.join("vectors/merkle/testdata/consistency"), &mut files);
    assert!(files.len() >= 90, "expected the 98 consistency cases, found {}", files.len());
    for f in files {
        let v: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        let ok = match (root(&v["root1"]), root(&v["root2"]), proof(&v["proof"])) {
            (Some(r1), Some(r2), Some(p)) => verify_consistency(s1, s2, &r1, &r2, &p).is_ok(),
            _ => false,
        };
        assert_eq!(ok, !want_err, "{}: {}", f.display(), v["desc"]);
    }
}

/// The eight RFC 6962 test leaves of transparency-dev/merkle `testonly`, and the
/// roots of their prefixes, as listed in shared/data/vectors/SOURCES.md.
#[test]
fn rfc6962_reference_roots_and_generated_proofs_match_vectors() {
    let leaves: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut tree = MemoryTree::new();
    assert_eq!(root_hash(&tree, 0).unwrap().to_hex(), roots[0]);
    for (i, l) in leaves.iter().enumerate() {
        tree.push(leaf_hash(l));
        assert_eq!(root_hash(&tree, i as u64 + 1).unwrap().to_hex(), roots[i + 1], "root of {} leaves", i + 1);
    }
    // Our generated proofs equal the golden happy-path proofs byte for byte.
    let Some(data) = common::shared_data() else { return };
    let mut files = Vec::new();
    json_files(&data.join("vectors/merkle/testdata/inclusion"), &mut files);
    let mut compared = 0;
    for f in &files {
        if !f.ends_with("happy-path.json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&fs::read(f).unwrap()).unwrap();
        let (i, n) = (v["leafIdx"].as_u64().unwrap(), v["treeSize"].as_u64().unwrap());
        if n > 8 || n == 0 {
            continue;
        }
        let mut t = MemoryTree::new();
        leaves[..n as usize].iter().for_each(|l| t.push(leaf_hash(l)));
        assert_eq!(Some(inclusion_proof(&t, i, n).unwrap()), proof(&v["proof"]), "{}", f.display());
        compared += 1;
    }
    let mut files = Vec::new();
    json_files(&data.join("vectors/merkle/testdata/consistency"), &mut files);
    for f in &files {
        if !f.ends_with("happy-path.json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&fs::read(f).unwrap()).unwrap();
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        if s2 > 8 {
            continue;
        }
        let mut t = MemoryTree::new();
        leaves[..s2 as usize].iter().for_each(|l| t.push(leaf_hash(l)));
        assert_eq!(Some(consistency_proof(&t, s1, s2).unwrap()), proof(&v["proof"]), "{}", f.display());
        compared += 1;
    }
    assert!(compared >= 8, "compared only {compared} golden proofs");
}

/// Reads a tlog-tiles entry bundle: big-endian u16 length, then the entry.
fn entries(bundle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        out.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    out
}

#[test]
fn tessera_log_checkpoints_verify_and_match_recomputed_roots() {
    let Some(data) = common::shared_data() else { return };
    let log = data.join("vectors/tessera/testdata/log");
    let verifier =
        NoteVerifier::parse("example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx").unwrap();
    let bundle = fs::read(log.join("tile/entries/000.p/15")).unwrap();
    let words = entries(&bundle);
    assert_eq!(words.len(), 15);
    assert_eq!(words[0], b"one");
    let mut tree = MemoryTree::new();
    let tile = fs::read(log.join("tile/0/000.p/15")).unwrap();
    for (i, w) in words.iter().enumerate() {
        assert_eq!(&tile[i * 32..i * 32 + 32], &leaf_hash(w).0, "tile hash {i}");
        tree.push(leaf_hash(w));
    }
    for size in 1..=15u64 {
        let note = fs::read(log.join(format!("checkpoint.{size}"))).unwrap();
        let cp = open_checkpoint(&note, &verifier).unwrap_or_else(|e| panic!("checkpoint.{size}: {e}")).checkpoint;
        assert_eq!(cp.tree_size, size);
        assert_eq!(cp.root_hash, root_hash(&tree, size).unwrap(), "root at size {size}");
        // Every leaf is provably included, and every older size is consistent.
        for i in 0..size {
            let p = inclusion_proof(&tree, i, size).unwrap();
            verify_inclusion(i, size, &leaf_hash(&words[i as usize]), &p, &cp.root_hash).unwrap();
        }
        for older in 1..size {
            let p = consistency_proof(&tree, older, size).unwrap();
            verify_consistency(older, size, &root_hash(&tree, older).unwrap(), &cp.root_hash, &p).unwrap();
        }
    }
    // A one-byte change to the signed note is rejected.
    let mut note = fs::read(log.join("checkpoint")).unwrap();
    note[30] ^= 1;
    assert!(open_checkpoint(&note, &verifier).is_err());
}

#[test]
fn argon2020_recorded_inclusion_proof_verifies() {
    let Some(data) = common::shared_data() else { return };
    let dir = data.join("vectors/azul/crates/tlog_tiles/tests/http_get");
    let sth: Value = serde_json::from_slice(&fs::read(dir.join("get-sth")).unwrap()).unwrap();
    let size = sth["tree_size"].as_u64().unwrap();
    let root = b64(&sth["sha256_root_hash"]).unwrap();
    let name = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("get-proof-by-hash"))
        .unwrap();
    let resp: Value = serde_json::from_slice(&fs::read(dir.join(&name)).unwrap()).unwrap();
    // The file name carries the URL-escaped base64 leaf hash.
    let hash_b64 = name.rsplit("-hash-").next().unwrap().replace("-2B", "+").replace("-2F", "/").replace("-3D", "=");
    let leaf = Hash::from_base64(&hash_b64).unwrap();
    let index = resp["leaf_index"].as_u64().unwrap();
    let path = proof(&resp["audit_path"]).unwrap();
    assert_eq!(path.len(), 30);
    verify_inclusion(index, size, &leaf, &path, &root).unwrap();
    let mut bad = path.clone();
    bad[29].0[0] ^= 1;
    assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
    assert!(verify_inclusion(index + 1, size, &leaf, &path, &root).is_err());
}
