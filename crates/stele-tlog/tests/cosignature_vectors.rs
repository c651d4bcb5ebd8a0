//! `cosignature/v1` checked against an independent implementation: the Sunlight
//! (FiloSottile/sunlight) witness fixture, a checkpoint for `rome2026h1.example.org`
//! cosigned by `witness.example.org`, whose vkey is in `witness.v0.json`.

mod common;

use std::fs;

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::cosignature::{CosignatureError, CosignatureVerifier, verify_quorum};
use stele_tlog::note::Note;

const DIR: &str =
    "vectors/sunlight/cmd/skylight/testdata/witness/000de184301123b9278c086a7d9f68c9577e83872224c197058fd90784ea9706";

fn fixture() -> Option<(Vec<u8>, CosignatureVerifier)> {
    let data = common::shared_data()?;
    let note = fs::read(data.join(DIR).join("checkpoint")).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(
        &fs::read(data.join("vectors/sunlight/cmd/skylight/testdata/witness/witness.v0.json")).unwrap(),
    )
    .unwrap();
    let vkey = meta["verifier_keys"][0].as_str().unwrap();
    Some((note, CosignatureVerifier::parse(vkey).unwrap()))
}

#[test]
fn sunlight_witness_cosignature_verifies() {
    let Some((note, v)) = fixture() else { return };
    assert_eq!(v.name(), "witness.example.org");
    // The vkey round-trips byte for byte (type 0x04 key ID derivation).
    let meta_vkey = v.to_vkey();
    assert_eq!(CosignatureVerifier::parse(&meta_vkey).unwrap(), v);
    let parsed = Note::parse(&note).unwrap();
    // The log's own line is an RFC 6962 (type 0x05) signature: unknown, ignored.
    assert_eq!(parsed.signatures.len(), 2);
    let cp = Checkpoint::parse_body(&parsed.text).unwrap();
    assert_eq!((cp.origin.as_str(), cp.tree_size), ("rome2026h1.example.org", 300));
    let t = v.verify_note(&parsed).unwrap();
    assert!(t > 1_700_000_000 && t < 1 << 40, "timestamp {t}");
    assert_eq!(verify_quorum(&parsed, std::slice::from_ref(&v), 1).unwrap(), vec!["witness.example.org".to_string()]);
}

#[test]
fn sunlight_witness_cosignature_rejects_changes() {
    let Some((note, v)) = fixture() else { return };
    let text = String::from_utf8(note).unwrap();
    // A changed body byte.
    let changed = text.replacen("\n300\n", "\n301\n", 1);
    assert!(matches!(v.verify_note(&Note::parse(changed.as_bytes()).unwrap()), Err(CosignatureError::Invalid(_))));
    // Each changed byte of the decoded cosignature (timestamp or signature) fails.
    let parsed = Note::parse(text.as_bytes()).unwrap();
    let sig = parsed.signatures.iter().find(|s| v.matches(s)).unwrap();
    for i in 0..sig.signature.len() {
        let mut bad = sig.signature.clone();
        bad[i] ^= 0x01;
        assert!(v.verify_signature(&parsed.text, &bad).is_none(), "byte {i} flipped still verifies");
    }
    assert!(v.verify_signature(&parsed.text, &sig.signature).is_some());
}
