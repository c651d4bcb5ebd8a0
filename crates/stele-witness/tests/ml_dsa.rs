//! A witness with an ML-DSA-44 key returns both cosignature lines (Ed25519 0x04 and
//! ML-DSA-44 0x06), and both verify under a mixed quorum policy.

use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::cosignature::{AnyCosignatureVerifier, verify_quorum};
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{MemoryTree, root_hash};
use stele_tlog::note::{Note, NoteSigner};
use stele_witness::{AddCheckpointRequest, Witness, load_or_create_key, load_or_create_ml_dsa_key};

const ORIGIN: &str = "log.example/test";

#[test]
fn witness_returns_ed25519_and_ml_dsa_lines() {
    let dir = tempfile::tempdir().unwrap();
    let name = "witness.example/w1";
    let ed = load_or_create_key(&dir.path().join("witness.key"), Some(name)).unwrap();
    let pq_path = dir.path().join("witness.mldsa.key");
    let pq = load_or_create_ml_dsa_key(&pq_path, Some(name)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&pq_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Loading again gives the same key; a different name is refused.
    assert_eq!(load_or_create_ml_dsa_key(&pq_path, Some(name)).unwrap().verifier(), pq.verifier());
    assert!(load_or_create_ml_dsa_key(&pq_path, Some("other")).is_err());
    // An Ed25519 key file is not an ML-DSA key file.
    assert!(load_or_create_ml_dsa_key(&dir.path().join("witness.key"), None).is_err());

    let policy: Vec<AnyCosignatureVerifier> = [ed.verifier().to_vkey(), pq.verifier().to_vkey()]
        .iter()
        .map(|k| AnyCosignatureVerifier::parse(k).unwrap())
        .collect();
    let signer = NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap();
    let mut tree = MemoryTree::new();
    for i in 0..5u32 {
        tree.push(leaf_hash(&i.to_be_bytes()));
    }
    let cp =
        Checkpoint { origin: ORIGIN.into(), tree_size: 5, root_hash: root_hash(&tree, 5).unwrap(), extensions: vec![] };
    let signed = cp.sign(&signer).unwrap();
    let witness = Witness::open(ed, vec![signer.verifier()], &dir.path().join("state"))
        .unwrap()
        .with_ml_dsa(pq)
        .with_clock(|| 1_700_000_000);
    let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: signed.clone().into_bytes() };
    let lines = witness.add_checkpoint(&req.to_body()).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.lines().all(|l| l.starts_with("\u{2014} witness.example/w1 ")));
    let note = Note::parse(format!("{signed}{lines}").as_bytes()).unwrap();
    for v in &policy {
        assert_eq!(verify_quorum(&note, std::slice::from_ref(v), 1).unwrap(), vec![name.to_string()]);
    }
    // One witness with two keys counts once.
    assert_eq!(verify_quorum(&note, &policy, 1).unwrap().len(), 1);
    // The stored state holds both lines and reopens.
    assert!(witness.latest(ORIGIN).unwrap().note.ends_with(&lines));
}
