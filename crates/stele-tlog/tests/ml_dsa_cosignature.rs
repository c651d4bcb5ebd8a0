//! ML-DSA-44 `subtree/v1` cosignatures (C2SP tlog-cosignature, type 0x06).
//!
//! No published ML-DSA-44 cosignature test vector was available here, so these
//! tests check the encoding against the spec's rules (key ID, message layout,
//! signature field lengths) and round trips, not against an external implementation.
#![cfg(feature = "ml-dsa")]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};
use stele_tlog::Hash;
use stele_tlog::cosignature::{
    ALG_ML_DSA_44, AnyCosignatureVerifier, CosignatureError, Cosigner, ML_DSA_44_COSIGNATURE_LEN, MlDsaCosigner,
    MlDsaVerifier, checkpoint_subtree_message, subtree_message, verify_quorum,
};
use stele_tlog::note::Note;

const BODY: &str = "log.example\n7\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";

fn cosigned(body: &str, lines: &[String]) -> Note {
    Note::parse(format!("{body}\n{}", lines.concat()).as_bytes()).unwrap()
}

#[test]
fn round_trip_and_line_layout() {
    let w = MlDsaCosigner::from_seed("witness.example", &[7; 32]).unwrap();
    let v = MlDsaVerifier::parse(&w.verifier().to_vkey()).unwrap();
    assert_eq!(v, w.verifier());
    assert_eq!(v.public_key().len(), 1312);
    let line = w.cosign(BODY, 1_700_000_000).unwrap();
    let b64 = line.trim_end().strip_prefix("\u{2014} witness.example ").unwrap();
    let raw = BASE64.decode(b64).unwrap();
    assert_eq!(raw.len(), ML_DSA_44_COSIGNATURE_LEN);
    assert_eq!(raw.len(), 4 + 8 + 2420);
    assert_eq!(raw[..4], v.key_id());
    assert_eq!(raw[4..12], 1_700_000_000u64.to_be_bytes());
    let note = cosigned(BODY, &[line]);
    assert_eq!(v.verify_note(&note).unwrap(), 1_700_000_000);
    // The private key string round-trips and is not in Debug output.
    let again = MlDsaCosigner::parse(&w.to_private_key_string()).unwrap();
    assert_eq!(again.verifier(), v);
    assert!(!format!("{w:?}").contains(&w.to_private_key_string()[30..]));
}

#[test]
fn wrong_key_or_changed_byte_fails() {
    let w = MlDsaCosigner::from_seed("witness.example", &[7; 32]).unwrap();
    let v = w.verifier();
    let line = w.cosign(BODY, 42).unwrap();
    // Another key under the same name: its key ID differs, so the line is not its.
    let other = MlDsaCosigner::from_seed("witness.example", &[8; 32]).unwrap().verifier();
    assert!(matches!(
        other.verify_note(&cosigned(BODY, std::slice::from_ref(&line))),
        Err(CosignatureError::Missing(_))
    ));
    // Same key, checkpoint changed: invalid.
    let changed = BODY.replace('7', "8");
    assert!(matches!(
        v.verify_note(&cosigned(&changed, std::slice::from_ref(&line))),
        Err(CosignatureError::Invalid(_))
    ));
    // Every position of the signature field: flip one bit (timestamp, signature).
    let b64 = line.trim_end().strip_prefix("\u{2014} witness.example ").unwrap();
    let raw = BASE64.decode(b64).unwrap();
    for i in [4, 11, 12, 100, 2000, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 1;
        assert_eq!(v.verify_signature(BODY, &bad[4..]), None, "byte {i}");
    }
    assert_eq!(v.verify_signature(BODY, &raw[4..]), Some(42));
    assert_eq!(v.verify_signature(BODY, &raw[4..raw.len() - 1]), None);
}

#[test]
fn key_id_follows_spec_rule() {
    let w = MlDsaCosigner::from_seed("witness.example/w1", &[9; 32]).unwrap();
    let v = w.verifier();
    // SHA-256(<name> || "\n" || 0x06 || 1312-byte public key)[:4]
    let mut h = Sha256::new();
    h.update(b"witness.example/w1");
    h.update(b"\n");
    h.update([0x06]);
    h.update(v.public_key());
    assert_eq!(v.key_id(), h.finalize()[..4]);
    // The vkey is <name>+<hex id>+base64(0x06 || key).
    let vkey = v.to_vkey();
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts[0], "witness.example/w1");
    assert_eq!(parts[1], hex::encode(v.key_id()));
    let raw = BASE64.decode(parts[2]).unwrap();
    assert_eq!(raw[0], ALG_ML_DSA_44);
    assert_eq!(&raw[1..], v.public_key());
    // A wrong key ID in the vkey is refused; an Ed25519 vkey is not an ML-DSA one.
    let bad = format!("{}+{}+{}", parts[0], "00000000", parts[2]);
    assert!(MlDsaVerifier::parse(&bad).is_err());
    let ed = Cosigner::from_seed("witness.example/w1", &[9; 32]).unwrap().verifier().to_vkey();
    assert!(MlDsaVerifier::parse(&ed).is_err());
}

#[test]
fn subtree_message_layout() {
    let root = Hash([0xab; 32]);
    let m = subtree_message("w", 5, "log.example", 0, 7, &root).unwrap();
    let mut want = b"subtree/v1\n\0".to_vec();
    want.push(1);
    want.extend_from_slice(b"w");
    want.extend_from_slice(&5u64.to_be_bytes());
    want.push(11);
    want.extend_from_slice(b"log.example");
    want.extend_from_slice(&0u64.to_be_bytes());
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&[0xab; 32]);
    assert_eq!(m, want);
    // Extension lines are not signed: same message with or without them.
    let ext = format!("{BODY}extension line\n");
    assert_eq!(checkpoint_subtree_message("w", 5, BODY).unwrap(), checkpoint_subtree_message("w", 5, &ext).unwrap());
    // Non-zero start needs timestamp 0; names are 1..=255 bytes.
    assert!(subtree_message("w", 5, "o", 1, 7, &root).is_err());
    assert!(subtree_message("w", 0, "o", 1, 7, &root).is_ok());
    assert!(subtree_message("", 0, "o", 0, 7, &root).is_err());
    assert!(subtree_message(&"x".repeat(256), 0, "o", 0, 7, &root).is_err());
}

#[test]
fn quorum_accepts_either_type_and_counts_a_name_once() {
    let ed = Cosigner::from_seed("a.example", &[1; 32]).unwrap();
    let pq_a = MlDsaCosigner::from_seed("a.example", &[2; 32]).unwrap();
    let pq_b = MlDsaCosigner::from_seed("b.example", &[3; 32]).unwrap();
    let lines = [ed.cosign(BODY, 10).unwrap(), pq_a.cosign(BODY, 10).unwrap(), pq_b.cosign(BODY, 0).unwrap()];
    let note = cosigned(BODY, &lines);
    let policy: Vec<AnyCosignatureVerifier> =
        [ed.verifier().to_vkey(), pq_a.verifier().to_vkey(), pq_b.verifier().to_vkey()]
            .iter()
            .map(|k| AnyCosignatureVerifier::parse(k).unwrap())
            .collect();
    assert!(matches!(policy[1], AnyCosignatureVerifier::MlDsa44(_)));
    assert_eq!(verify_quorum(&note, &policy, 2).unwrap(), vec!["a.example".to_string(), "b.example".to_string()]);
    assert!(matches!(verify_quorum(&note, &policy, 3), Err(CosignatureError::NotEnough { got: 2, want: 3 })));
    // Only the ML-DSA key of b configured.
    assert_eq!(verify_quorum(&note, &policy[2..], 1).unwrap(), vec!["b.example".to_string()]);
    // A bad line by a configured ML-DSA key is an error.
    let tampered = cosigned(&BODY.replace('7', "9"), &lines[2..]);
    assert!(matches!(verify_quorum(&tampered, &policy[2..], 1), Err(CosignatureError::Invalid(_))));
}
