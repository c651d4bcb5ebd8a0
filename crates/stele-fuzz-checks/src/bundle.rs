//! The `stele-bundle/1` line verifier (`stele_tlog::bundle::BundleVerifier`) on
//! arbitrary lines. The first input byte picks the header: the fuzzer's own first line
//! (decoded as JSON like `stele verify-bundle` does) or a fixed, validly signed header
//! over an 8-entry log, so that entry and trailer checks are reached. Lines are decoded
//! as JSON entries when they are; other lines become entries whose fields are cut from
//! the raw bytes. Must never panic; whatever `finish` accepts must have a trailer that
//! is exactly `trailer_line` of the count and digest.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use stele_tlog::bundle::{BundleVerifier, EntryLine, FORMAT, Header, Trailer, trailer_line};
use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::hash::{Hash, leaf_hash};
use stele_tlog::leaf::Leaf;
use stele_tlog::merkle::{MemoryTree, inclusion_proof, root_hash};
use stele_tlog::note::{NoteSigner, NoteVerifier};

struct Fixture {
    verifier: NoteVerifier,
    header: Header,
    entries: Vec<EntryLine>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let signer = NoteSigner::from_seed("fuzz.example/log", &[3; 32]).unwrap();
        let payloads: Vec<Vec<u8>> = (0..8).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let leaves: Vec<[u8; 68]> =
            payloads.iter().enumerate().map(|(i, p)| Leaf::new(1, 1, i as u64, [i as u8; 16], p).encode()).collect();
        let mut tree = MemoryTree::new();
        leaves.iter().for_each(|l| tree.push(leaf_hash(l)));
        let cp = Checkpoint {
            origin: "fuzz.example/log".into(),
            tree_size: 8,
            root_hash: root_hash(&tree, 8).unwrap(),
            extensions: vec![],
        };
        let entries = (0..8u64)
            .map(|i| EntryLine {
                index: i,
                leaf: leaves[i as usize].to_vec(),
                payload: payloads[i as usize].clone(),
                proof: inclusion_proof(&tree, i, 8).unwrap(),
            })
            .collect();
        let header = Header {
            format: FORMAT.into(),
            origin: cp.origin.clone(),
            vkey: signer.verifier().to_vkey(),
            tree_size: 8,
            count: 8,
            checkpoint: cp.sign(&signer).unwrap(),
        };
        Fixture { verifier: signer.verifier(), header, entries }
    })
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k)?.as_str().map(str::to_string)
}

fn decode_header(line: &[u8]) -> Option<Header> {
    let v: Value = serde_json::from_slice(line).ok()?;
    Some(Header {
        format: s(&v, "format")?,
        origin: s(&v, "origin")?,
        vkey: s(&v, "vkey")?,
        tree_size: v.get("tree_size")?.as_u64()?,
        count: v.get("count")?.as_u64()?,
        checkpoint: s(&v, "checkpoint")?,
    })
}

fn decode_entry(line: &[u8], f: &Fixture) -> EntryLine {
    if let Ok(v) = serde_json::from_slice::<Value>(line)
        && let (Some(index), Some(leaf), Some(payload), Some(proof)) =
            (v.get("index").and_then(Value::as_u64), s(&v, "leaf"), s(&v, "payload"), v.get("proof"))
    {
        return EntryLine {
            index,
            leaf: B64.decode(leaf).unwrap_or_default(),
            payload: B64.decode(payload).unwrap_or_default(),
            proof: proof
                .as_array()
                .map(|a| a.iter().filter_map(|h| h.as_str().and_then(Hash::from_base64)).collect())
                .unwrap_or_default(),
        };
    }
    // Raw bytes: start from a real entry and let the bytes overwrite parts of it.
    let mut e = f.entries[usize::from(line.first().copied().unwrap_or(0) % 8)].clone();
    if let Some(&b) = line.get(1) {
        match b % 5 {
            0 => e.index = u64::from(b),
            1 => e.leaf = line[2..].to_vec(),
            2 => e.payload = line[2..].to_vec(),
            3 => e.proof = line[2..].chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect(),
            _ => {
                for (i, &x) in line[2..].iter().enumerate() {
                    let j = i % e.leaf.len();
                    e.leaf[j] ^= x;
                }
            }
        }
    }
    e
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = fixture();
    let mut lines: Vec<&[u8]> = rest.split_inclusive(|&b| b == b'\n').collect();
    let header_bytes: Vec<u8>;
    let header = if mode & 1 == 1 && !lines.is_empty() {
        let line = lines.remove(0);
        header_bytes = line.to_vec();
        match decode_header(line.strip_suffix(b"\n").unwrap_or(line)) {
            Some(h) => h,
            None => return,
        }
    } else {
        header_bytes = b"{}\n".to_vec();
        let mut h = f.header.clone();
        h.count = u64::from(mode >> 1) % 10;
        h
    };
    let Ok(mut v) = BundleVerifier::new(&header_bytes, &header, &f.verifier) else { return };
    let Some(trailer_bytes) = lines.pop() else { return };
    for line in lines {
        let e = decode_entry(line.strip_suffix(b"\n").unwrap_or(line), f);
        if let Ok(ok) = v.entry(line, &e) {
            assert_eq!(ok.leaf_hash, leaf_hash(&e.leaf));
            assert!(ok.index < header.tree_size);
        }
    }
    let t: Option<Value> = serde_json::from_slice(trailer_bytes).ok();
    let trailer = Trailer {
        end: t.as_ref().and_then(|t| s(t, "end")).unwrap_or_default(),
        count: t.as_ref().and_then(|t| t.get("count")?.as_u64()).unwrap_or(0),
        sha256: t.as_ref().and_then(|t| s(t, "sha256")).unwrap_or_default(),
    };
    if let Ok(summary) = v.finish(trailer_bytes, &trailer) {
        assert_eq!(trailer_bytes, trailer_line(summary.count, &summary.digest).as_bytes());
    }
}
