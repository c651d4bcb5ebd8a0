//! `check_once` against the Tessera test log and small logs published here: growth,
//! consistency, entries, and each detection (rollback, fork, inconsistency, tampered
//! tile, tampered entry, bad signature).

mod common;

use std::path::Path;

use common::{TESSERA_VKEY, copy_dir, entries, publish, test_signer, vectors};
use stele_monitor::{DirSource, MonitorError, Options, Outcome, State, check_once};
use stele_tlog::Hash;
use stele_tlog::checkpoint::{Checkpoint, open_checkpoint};
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{MemoryTree, root_hash};
use stele_tlog::note::NoteVerifier;

const ENTRIES: Options = Options { entries: true };
const NO_ENTRIES: Options = Options { entries: false };

/// A writable copy of the Tessera test log serving `checkpoint.<size>`, or `None`.
fn tessera(tmp: &Path, size: u64) -> Option<std::path::PathBuf> {
    let src = vectors()?.join("tessera/testdata/log");
    let dst = tmp.join("log");
    copy_dir(&src, &dst);
    serve_tessera(&dst, size);
    Some(dst)
}

fn serve_tessera(log: &Path, size: u64) {
    std::fs::copy(log.join(format!("checkpoint.{size}")), log.join("checkpoint")).unwrap();
}

fn tessera_key() -> NoteVerifier {
    NoteVerifier::parse(TESSERA_VKEY).unwrap()
}

fn flip_byte(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn tessera_first_use_then_consistent_growth() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 5) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("state/trusted"));

    let first = check_once(&src, &key, &state, &ENTRIES).unwrap();
    assert!(matches!(first, Outcome::FirstUse { entries_checked: 5, .. }), "{first:?}");
    assert_eq!(first.checkpoint().tree_size, 5);
    assert!(first.to_string().contains("first use"), "{first}");

    serve_tessera(&log, 15);
    let grew = check_once(&src, &key, &state, &ENTRIES).unwrap();
    match &grew {
        Outcome::Grew { old_size: 5, checkpoint, entries_checked: 15, tiles_fetched: 2 } => {
            assert_eq!(checkpoint.tree_size, 15);
        }
        other => panic!("{other:?}"),
    }
    // The trusted state is now the size-15 note, byte for byte.
    assert_eq!(std::fs::read(&state.file).unwrap(), std::fs::read(log.join("checkpoint.15")).unwrap());
    assert!(!tmp.path().join("state/trusted.tmp").exists());

    let again = check_once(&src, &key, &state, &ENTRIES).unwrap();
    assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");
}

#[test]
fn tessera_every_step_from_0_to_15() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 0) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("trusted"));
    let first = check_once(&src, &key, &state, &ENTRIES).unwrap();
    assert_eq!(first.checkpoint().root_hash, Hash::EMPTY_ROOT);
    for size in 1..=15 {
        serve_tessera(&log, size);
        let o = check_once(&src, &key, &state, &ENTRIES).unwrap();
        assert!(matches!(o, Outcome::Grew { old_size, .. } if old_size == size - 1), "{size}: {o:?}");
    }
    // Skipping sizes works too, from every old size.
    for old in 1..15 {
        let st = State::new(tmp.path().join(format!("trusted-{old}")));
        serve_tessera(&log, old);
        check_once(&src, &key, &st, &NO_ENTRIES).unwrap();
        serve_tessera(&log, 15);
        let o = check_once(&src, &key, &st, &ENTRIES).unwrap();
        assert!(matches!(o, Outcome::Grew { .. }), "{old}: {o:?}");
    }
}

#[test]
fn tessera_rollback_is_detected_and_state_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 15) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("trusted")).with_evidence_dir(tmp.path().join("ev"));
    check_once(&src, &key, &state, &NO_ENTRIES).unwrap();
    serve_tessera(&log, 5);
    let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
    assert!(err.is_detection());
    let MonitorError::Rollback { trusted: 15, served: 5, evidence, .. } = &err else { panic!("{err:?}") };
    assert!(err.to_string().contains("ROLLBACK"), "{err}");
    assert!(evidence.starts_with(tmp.path().join("ev")));
    let served = std::fs::read(evidence.join("served.checkpoint")).unwrap();
    assert_eq!(open_checkpoint(&served, &key).unwrap().checkpoint.tree_size, 5);
    let trusted = std::fs::read(evidence.join("trusted.checkpoint")).unwrap();
    assert_eq!(open_checkpoint(&trusted, &key).unwrap().checkpoint.tree_size, 15);
    // Still trusting 15.
    assert_eq!(state.load(&key).unwrap().unwrap().checkpoint.checkpoint.tree_size, 15);
}

#[test]
fn tessera_tampered_tile_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 5) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("trusted"));
    check_once(&src, &key, &state, &NO_ENTRIES).unwrap();
    serve_tessera(&log, 15);
    flip_byte(&log.join("tile/0/000.p/15"), 7 * 32 + 3);
    let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::TileMismatch { .. }) && err.is_detection(), "{err:?}");
    assert!(err.to_string().contains("tile"), "{err}");
    assert_eq!(state.load(&key).unwrap().unwrap().checkpoint.checkpoint.tree_size, 5);

    // A tile of the wrong length is refused too, on first use as well.
    let fresh = State::new(tmp.path().join("fresh"));
    let mut b = std::fs::read(log.join("tile/0/000.p/15")).unwrap();
    b.push(0);
    std::fs::write(log.join("tile/0/000.p/15"), b).unwrap();
    let err = check_once(&src, &key, &fresh, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::MalformedTile { .. }) && err.is_detection(), "{err:?}");
    assert!(!fresh.file.exists());
}

#[test]
fn tessera_tampered_entry_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 5) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("trusted"));
    check_once(&src, &key, &state, &ENTRIES).unwrap();
    serve_tessera(&log, 15);
    // Entries: one(0) two(1) three(2) four(3) five(4) six(5)...; byte 2 of "six" is 'i'.
    let bundle = log.join("tile/entries/000.p/15");
    let bytes = std::fs::read(&bundle).unwrap();
    let six = bytes.windows(5).position(|w| w == b"\x00\x03six").unwrap();
    flip_byte(&bundle, six + 3);
    // Without --entries the tiles alone are consistent.
    let st2 = State::new(tmp.path().join("no-entries"));
    std::fs::copy(&state.file, &st2.file).unwrap();
    check_once(&src, &key, &st2, &NO_ENTRIES).unwrap();
    let err = check_once(&src, &key, &state, &ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::EntryMismatch { index: 5, .. }) && err.is_detection(), "{err:?}");
    // A bundle cut short is malformed.
    std::fs::write(&bundle, &bytes[..bytes.len() - 2]).unwrap();
    let err = check_once(&src, &key, &state, &ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::MalformedBundle { .. }) && err.is_detection(), "{err:?}");
}

#[test]
fn tessera_bad_signature_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 15) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    let state = State::new(tmp.path().join("trusted"));
    let good = std::fs::read_to_string(log.join("checkpoint")).unwrap();
    let sig_at = good.rfind(' ').unwrap() + 10;
    let mut bad_sig = good.clone().into_bytes();
    bad_sig[sig_at] = if bad_sig[sig_at] == b'A' { b'B' } else { b'A' };
    let bad_body = good.replacen("\n15\n", "\n16\n", 1);
    for bad in [bad_sig, bad_body.into_bytes(), b"garbage\n".to_vec()] {
        std::fs::write(log.join("checkpoint"), &bad).unwrap();
        let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
        assert!(matches!(err, MonitorError::BadCheckpoint { .. }) && err.is_detection(), "{err:?}");
        assert!(!state.file.exists());
    }
    // Signed, but by another key than the one trusted.
    std::fs::write(log.join("checkpoint"), good).unwrap();
    let err = check_once(&src, &test_signer().verifier(), &state, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::BadCheckpoint { .. }), "{err:?}");
}

#[test]
fn missing_files_and_foreign_state_are_not_detections() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(log) = tessera(tmp.path(), 15) else { return };
    let src = DirSource::new(&log);
    let key = tessera_key();
    std::fs::remove_file(log.join("tile/0/000.p/15")).unwrap();
    let state = State::new(tmp.path().join("trusted"));
    let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::Missing { .. }) && !err.is_detection(), "{err:?}");
    let err = check_once(&DirSource::new(tmp.path().join("nope")), &key, &state, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::Missing { .. }) && !err.is_detection(), "{err:?}");

    // A state file holding another log's checkpoint is refused.
    let other = tmp.path().join("other");
    publish(&other, &test_signer(), &entries(0, 3));
    std::fs::copy(other.join("checkpoint"), &state.file).unwrap();
    let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
    assert!(matches!(err, MonitorError::BadState { .. }) && !err.is_detection(), "{err:?}");
}

#[test]
fn fork_is_detected_with_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let key = signer.verifier();
    let src = DirSource::new(&log);
    let state = State::new(tmp.path().join("trusted"));
    let honest = publish(&log, &signer, &entries(0, 3));
    check_once(&src, &key, &state, &ENTRIES).unwrap();
    let mut forked = entries(0, 3);
    forked[2] = b"something else".to_vec();
    let fork = publish(&log, &signer, &forked);
    let err = check_once(&src, &key, &state, &ENTRIES).unwrap_err();
    let MonitorError::Fork { size: 3, evidence, .. } = &err else { panic!("{err:?}") };
    assert!(err.is_detection() && err.to_string().contains("FORK"), "{err}");
    assert_eq!(std::fs::read_to_string(evidence.join("trusted.checkpoint")).unwrap(), honest);
    assert_eq!(std::fs::read_to_string(evidence.join("served.checkpoint")).unwrap(), fork);
    assert!(evidence.starts_with(tmp.path().join("trusted.evidence")));
    // Running again finds the same fork and keeps the same evidence.
    let again = check_once(&src, &key, &state, &ENTRIES).unwrap_err();
    assert!(matches!(again, MonitorError::Fork { .. }));
    assert_eq!(std::fs::read_dir(&state.evidence_dir).unwrap().count(), 1);
}

#[test]
fn rewritten_history_is_inconsistent() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let key = signer.verifier();
    let src = DirSource::new(&log);
    let state = State::new(tmp.path().join("trusted"));
    publish(&log, &signer, &entries(0, 3));
    check_once(&src, &key, &state, &NO_ENTRIES).unwrap();
    let mut rewritten = entries(0, 5);
    rewritten[1] = b"history rewritten".to_vec();
    publish(&log, &signer, &rewritten);
    let err = check_once(&src, &key, &state, &NO_ENTRIES).unwrap_err();
    let MonitorError::Inconsistent { trusted: 3, served: 5, evidence, .. } = &err else { panic!("{err:?}") };
    assert!(err.is_detection());
    assert!(evidence.join("served.checkpoint").is_file());
}

#[test]
fn growth_across_tiles_and_levels_fetches_few_tiles() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let key = signer.verifier();
    let src = DirSource::new(&log);
    let state = State::new(tmp.path().join("trusted"));
    let all = entries(0, 66_000);
    let mut old = 0;
    for size in [1usize, 256, 300, 511, 512, 600, 65_536, 65_537, 66_000] {
        publish(&log, &signer, &all[..size]);
        let o = check_once(&src, &key, &state, &NO_ENTRIES).unwrap();
        match o {
            Outcome::FirstUse { tiles_fetched, .. } => assert_eq!(tiles_fetched, 1),
            Outcome::Grew { old_size, tiles_fetched, .. } => {
                assert_eq!(old_size, old as u64);
                assert!(tiles_fetched <= 8, "{old} -> {size}: {tiles_fetched} tiles");
            }
            other => panic!("{other:?}"),
        }
        old = size;
    }
    // Entries of a range spanning tiles, from a trusted size inside a tile.
    let st = State::new(tmp.path().join("trusted-entries"));
    publish(&log, &signer, &all[..700]);
    check_once(&src, &key, &st, &NO_ENTRIES).unwrap();
    publish(&log, &signer, &all[..1300]);
    let o = check_once(&src, &key, &st, &ENTRIES).unwrap();
    assert!(matches!(o, Outcome::Grew { entries_checked: 788, .. }), "{o:?}");
}

#[test]
fn full_tiles_stand_in_for_missing_partial_ones() {
    // A log at size 600 still serving the size-300 checkpoint: tile 0/001.p/44 is gone
    // (only the full 0/001 exists), as C2SP tlog-tiles allows.
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let all = entries(0, 600);
    publish(&log, &signer, &all);
    let mut tree = MemoryTree::new();
    for e in &all[..300] {
        tree.push(leaf_hash(e));
    }
    let cp = Checkpoint {
        origin: signer.name().into(),
        tree_size: 300,
        root_hash: root_hash(&tree, 300).unwrap(),
        extensions: vec![],
    };
    std::fs::write(log.join("checkpoint"), cp.sign(&signer).unwrap()).unwrap();
    // Level 1 at size 300 has one hash: the first of the size-600 level-1 tile.
    let l1 = std::fs::read(log.join("tile/1/000.p/2")).unwrap();
    std::fs::write(log.join("tile/1/000.p/1"), &l1[..32]).unwrap();
    assert!(!log.join("tile/0/001.p/44").exists() && !log.join("tile/entries/001.p/44").exists());
    let state = State::new(tmp.path().join("trusted"));
    let o = check_once(&DirSource::new(&log), &signer.verifier(), &state, &ENTRIES).unwrap();
    assert!(matches!(o, Outcome::FirstUse { entries_checked: 300, .. }), "{o:?}");
}
