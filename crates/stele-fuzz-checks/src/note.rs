//! `Note::parse` on arbitrary bytes, then `verify` with a fixed key: never panics; a
//! note that verifies really carries a valid signature by that key over its text.

use std::sync::OnceLock;

use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::note::{Note, NoteSigner, NoteVerifier};

fn key() -> &'static (NoteSigner, NoteVerifier) {
    static K: OnceLock<(NoteSigner, NoteVerifier)> = OnceLock::new();
    K.get_or_init(|| {
        let s = NoteSigner::from_seed("fuzz.example/log", &[7; 32]).unwrap();
        let v = s.verifier();
        (s, v)
    })
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    let (signer, verifier) = key();
    // Arbitrary bytes, and the same bytes as a text signed by the fixed key.
    if let Ok(note) = Note::parse(data) {
        assert!(note.text.ends_with('\n'));
        if let Ok(names) = note.verify(std::slice::from_ref(verifier)) {
            assert!(!names.is_empty());
            let sig = note.signatures.iter().find(|s| s.name == verifier.name()).unwrap();
            assert!(verifier.verify(note.text.as_bytes(), &sig.signature));
        }
    }
    let _ = open_checkpoint(data, verifier);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(signed) = signer.sign(text)
    {
        let note = Note::parse(signed.as_bytes()).expect("a note stele signed parses");
        assert_eq!(note.text, text);
        note.verify(std::slice::from_ref(verifier)).expect("a note stele signed verifies");
    }
}
