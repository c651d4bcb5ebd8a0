//! k-of-n witnessing: `check_once_with_witnesses` accepts a checkpoint only with valid
//! cosignatures from enough of the given witnesses.

mod common;

use common::{entries, publish, test_signer};
use stele_monitor::{DirSource, MonitorError, Options, Outcome, State, WitnessQuorum, check_once_with_witnesses};
use stele_tlog::cosignature::Cosigner;
use stele_tlog::note::Note;

/// Appends cosignature lines by `witnesses` to the served checkpoint; returns the note.
fn cosign(dir: &std::path::Path, witnesses: &[&Cosigner]) -> String {
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let body = Note::parse(note.as_bytes()).unwrap().text;
    let mut out = note.clone();
    for (i, w) in witnesses.iter().enumerate() {
        out.push_str(&w.cosign(&body, 1_700_000_000 + i as u64).unwrap());
    }
    std::fs::write(dir.join("checkpoint"), &out).unwrap();
    out
}

/// Flips one character of the signature of the cosignature line by `name`.
fn tamper(dir: &std::path::Path, name: &str) {
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let out: String = note
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with(&format!("\u{2014} {name} ")) {
                let mut b = l.as_bytes().to_vec();
                let at = b.len() - 10;
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(dir.join("checkpoint"), out).unwrap();
}

#[test]
fn k_of_n_cosignatures() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let key = signer.verifier();
    let w1 = Cosigner::from_seed("w1.example", &[1; 32]).unwrap();
    let w2 = Cosigner::from_seed("w2.example", &[2; 32]).unwrap();
    let w3 = Cosigner::from_seed("w3.example", &[3; 32]).unwrap();
    let other = Cosigner::from_seed("stranger.example", &[9; 32]).unwrap();
    publish(&log, &signer, &entries(0, 300));
    // Two of the given witnesses cosign; a stranger's line is ignored.
    cosign(&log, &[&w1, &other, &w2]);
    let src = DirSource::new(&log);
    let opts = Options { entries: false };
    let quorum = |k: usize| WitnessQuorum {
        witnesses: [w1.verifier(), w2.verifier(), w3.verifier(), w1.verifier()]
            .into_iter()
            .map(stele_tlog::cosignature::AnyCosignatureVerifier::Ed25519)
            .collect(),
        required: k,
    };
    for k in [0, 1, 2] {
        let state = State::new(tmp.path().join(format!("state{k}")));
        let out = check_once_with_witnesses(&src, &key, &quorum(k), &state, &opts).unwrap();
        assert!(matches!(out, Outcome::FirstUse { .. }), "{out:?}");
    }
    let state = State::new(tmp.path().join("state3"));
    match check_once_with_witnesses(&src, &key, &quorum(3), &state, &opts) {
        Err(e @ MonitorError::NotEnoughCosignatures { found: 2, required: 3, .. }) => {
            assert!(e.is_detection());
            assert!(e.to_string().contains("from 2 of"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("state3").exists(), "an unwitnessed checkpoint is not trusted");

    // A tampered cosignature does not count.
    tamper(&log, "w2.example");
    let state = State::new(tmp.path().join("state-t1"));
    check_once_with_witnesses(&src, &key, &quorum(1), &state, &opts).unwrap();
    let state = State::new(tmp.path().join("state-t2"));
    assert!(matches!(
        check_once_with_witnesses(&src, &key, &quorum(2), &state, &opts),
        Err(MonitorError::NotEnoughCosignatures { found: 1, required: 2, .. })
    ));
}

#[test]
fn ml_dsa_witnesses_count_toward_the_quorum() {
    use stele_tlog::cosignature::{AnyCosignatureVerifier, MlDsaCosigner};
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let signer = test_signer();
    let key = signer.verifier();
    publish(&log, &signer, &entries(0, 40));
    let ed = Cosigner::from_seed("ed.example", &[1; 32]).unwrap();
    let pq = MlDsaCosigner::from_seed("pq.example", &[2; 32]).unwrap();
    let note = std::fs::read_to_string(log.join("checkpoint")).unwrap();
    let body = Note::parse(note.as_bytes()).unwrap().text;
    let cosigned =
        format!("{note}{}{}", ed.cosign(&body, 1_700_000_000).unwrap(), pq.cosign(&body, 1_700_000_001).unwrap());
    std::fs::write(log.join("checkpoint"), &cosigned).unwrap();
    let quorum = |k: usize, with_pq: bool| WitnessQuorum {
        witnesses: std::iter::once(AnyCosignatureVerifier::Ed25519(ed.verifier()))
            .chain(with_pq.then(|| AnyCosignatureVerifier::parse(&pq.verifier().to_vkey()).unwrap()))
            .collect(),
        required: k,
    };
    let src = DirSource::new(&log);
    let opts = Options { entries: false };
    let state = State::new(tmp.path().join("s1"));
    check_once_with_witnesses(&src, &key, &quorum(2, true), &state, &opts).expect("Ed25519 + ML-DSA-44 make two");
    let state = State::new(tmp.path().join("s2"));
    let err = check_once_with_witnesses(&src, &key, &quorum(2, false), &state, &opts).unwrap_err();
    assert!(matches!(err, MonitorError::NotEnoughCosignatures { found: 1, required: 2, .. }), "{err}");
}
