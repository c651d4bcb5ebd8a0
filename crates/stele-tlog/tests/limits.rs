//! The bounds a verifier puts on signed notes and on the witness protocol's proofs:
//! inputs one byte or one line past them are refused, inputs at them are parsed.

use stele_tlog::note::{MAX_NOTE_BYTES, MAX_SIGNATURES, Note};

/// A note with `sigs` signature lines of the same (syntactically valid) signature
/// and `text_bytes` bytes of text.
fn note(text_bytes: usize, sigs: usize) -> Vec<u8> {
    let mut text = "x".repeat(text_bytes.saturating_sub(1));
    text.push('\n');
    let mut out = text.into_bytes();
    out.push(b'\n');
    for _ in 0..sigs {
        // Key id (4 bytes) and a 64-byte signature: 68 zero bytes in base64.
        out.extend_from_slice("\u{2014} example.com/log ".as_bytes());
        out.extend_from_slice(&[b'A'; 91]);
        out.extend_from_slice(b"=\n");
    }
    out
}

#[test]
fn signature_lines_are_bounded() {
    assert!(Note::parse(&note(10, 1)).is_ok(), "{:?}", Note::parse(&note(10, 1)).err());
    assert!(Note::parse(&note(10, MAX_SIGNATURES)).is_ok());
    let err = Note::parse(&note(10, MAX_SIGNATURES + 1)).unwrap_err();
    assert!(err.to_string().contains("too many signatures"), "{err}");
}

#[test]
fn note_size_is_bounded() {
    let sig_bytes = note(0, 1).len() - 2;
    let at = note(MAX_NOTE_BYTES - 1 - sig_bytes, 1);
    assert_eq!(at.len(), MAX_NOTE_BYTES);
    assert!(Note::parse(&at).is_ok(), "{:?}", Note::parse(&at).err());
    let over = note(MAX_NOTE_BYTES - sig_bytes, 1);
    assert_eq!(over.len(), MAX_NOTE_BYTES + 1);
    let err = Note::parse(&over).unwrap_err();
    assert!(err.to_string().contains("note too large"), "{err}");
}

/// A tlog-proof with `n` proof lines (each the canonical base64 of 32 zero bytes).
fn tlog_proof(n: usize) -> String {
    let mut s = String::from("c2sp.org/tlog-proof@v1\nindex 0\n");
    for _ in 0..n {
        s.push_str(&stele_tlog::hash::Hash([0; 32]).to_base64());
        s.push('\n');
    }
    s.push_str("\nexample.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n");
    s
}

#[test]
fn tlog_proof_lines_are_bounded() {
    use stele_tlog::tlog_proof::{MAX_PROOF_HASHES, TlogProof};
    let at = TlogProof::parse(tlog_proof(MAX_PROOF_HASHES).as_bytes()).unwrap();
    assert_eq!(at.proof.len(), MAX_PROOF_HASHES);
    let err = TlogProof::parse(tlog_proof(MAX_PROOF_HASHES + 1).as_bytes()).unwrap_err();
    assert!(err.to_string().contains("too many proof lines"), "{err}");
}
