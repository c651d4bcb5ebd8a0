//! Key statements in the log: a rotation committed by `keys::rotate` verifies from the
//! first key; a forged announcement committed to `_stele/keys` (signed by the key it
//! announces, not by the old key) and a list line naming an entry that does not hold
//! its statement are reported by `verify`, and the checkpoints signed by the forged key
//! are rejected.

use std::path::Path;

use stele_store::keys::{self, KEYS_STREAM, STATEMENTS};
use stele_store::log::{FORMAT_STELE_RECORD, Log, LogOptions, NewEntry, init};
use stele_store::reader::LogReader;
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::keychain::{KeyStatement, statement_list_line};
use stele_tlog::note::{NoteSigner, NoteVerifier};

const ORIGIN: &str = "keys.example/store";

fn append(dir: &Path, n: usize) {
    let mut log = Log::open(dir, LogOptions::default()).unwrap();
    for i in 0..n {
        let p = format!("{{\"actor\":\"u{i}\"}}");
        log.append(&[NewEntry { stream: "default", format: 1, payload: p.as_bytes() }]).unwrap();
    }
    log.sign_checkpoint().unwrap();
}

fn problems(dir: &Path, first: &NoteVerifier) -> Vec<String> {
    let reader = LogReader::open(dir).unwrap();
    let report =
        verify(&reader, &VerifyOptions { trusted_key: Some(first.clone()), ..VerifyOptions::default() }).unwrap();
    report.problems.iter().map(|p| format!("{}: {}", p.location, p.what)).collect()
}

#[test]
fn rotation_verifies_and_a_forged_announcement_in_the_log_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let first = init(&dir, ORIGIN).unwrap();
    append(&dir, 3);
    let rotated = keys::rotate(&dir, LogOptions::default(), None, None).unwrap();
    assert_eq!(rotated.old_key, first);
    assert_eq!(rotated.checkpoint.tree_size, rotated.index + 1);
    append(&dir, 2);
    assert_eq!(problems(&dir, &first), Vec::<String>::new());
    // Trusting a key the log never had: every checkpoint fails, each one named.
    let stranger = NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap().verifier();
    assert!(problems(&dir, &stranger).iter().any(|p| p.contains("not signed by the current key")));

    // Forge: a rotation to a rogue key, signed by the rogue key, committed to the log
    // and listed, then checkpoints signed by the rogue key.
    let mut rogue = NoteSigner::from_seed(ORIGIN, &[66; 32]).unwrap();
    // (An attacker with write access also replaces the current key file: the writer
    // refuses a key that is not the one in keys/verifier.vkey.)
    let refused = Log::open_with(&dir, LogOptions::default(), Some(Box::new(rogue.clone()))).err().unwrap();
    assert!(refused.to_string().contains("is not the log's current key"), "{refused}");
    std::fs::write(dir.join("keys/verifier.vkey"), rogue.verifier().to_vkey()).unwrap();
    let mut log = Log::open_with(&dir, LogOptions::default(), Some(Box::new(rogue.clone()))).unwrap();
    let index = log.tree_size();
    let forged = KeyStatement::Rotation { origin: ORIGIN.into(), new_key: rogue.verifier(), from_tree_size: index + 1 };
    let note = forged.sign(&mut rogue).unwrap();
    log.append(&[NewEntry { stream: KEYS_STREAM, format: FORMAT_STELE_RECORD, payload: &keys::record_payload(&note) }])
        .unwrap();
    log.sign_checkpoint().unwrap();
    drop(log);
    let mut list = std::fs::read_to_string(dir.join(STATEMENTS)).unwrap();
    list.push_str(&statement_list_line(index, note.as_bytes()));
    std::fs::write(dir.join(STATEMENTS), &list).unwrap();
    let found = problems(&dir, &first);
    assert!(found.iter().any(|p| p.contains("is not signed by the current key")), "{found:?}");
    assert!(found.iter().any(|p| p.contains("no key statement announced")), "{found:?}");

    // A list line naming an entry that does not hold it.
    let mut bad = std::fs::read_to_string(dir.join(STATEMENTS)).unwrap();
    bad.push_str(&statement_list_line(1, note.as_bytes()));
    std::fs::write(dir.join(STATEMENTS), &bad).unwrap();
    let found = problems(&dir, &first);
    assert!(found.iter().any(|p| p.contains("entry 1 is not this key statement")), "{found:?}");
}
