//! C2SP tlog-proof text: round trip, verification, tampering, and the spec example.

use stele_tlog::Hash;
use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::cosignature::{Cosigner, verify_quorum};
use stele_tlog::hash::leaf_hash;
use stele_tlog::merkle::{MemoryTree, inclusion_proof, inclusion_proof_len, root_hash};
use stele_tlog::note::NoteSigner;
use stele_tlog::tlog_proof::{TlogProof, TlogProofError};

const ORIGIN: &str = "log.example/audit";

fn log(n: u64) -> (MemoryTree, NoteSigner, String) {
    let signer = NoteSigner::from_seed(ORIGIN, &[4; 32]).unwrap();
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push(leaf_hash(format!("entry {i}").as_bytes()));
    }
    let cp =
        Checkpoint { origin: ORIGIN.into(), tree_size: n, root_hash: root_hash(&tree, n).unwrap(), extensions: vec![] };
    let note = cp.sign(&signer).unwrap();
    (tree, signer, note)
}

#[test]
fn round_trip_and_verify_every_index() {
    let (tree, signer, note) = log(13);
    for index in 0..13 {
        let p = TlogProof {
            extra: (index % 2 == 0).then(|| vec![index as u8, 0xff]),
            index,
            proof: inclusion_proof(&tree, index, 13).unwrap(),
            checkpoint: note.clone(),
        };
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\n"));
        let parsed = TlogProof::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(parsed.to_text(), text);
        let leaf = leaf_hash(format!("entry {index}").as_bytes());
        let v = parsed.verify(&leaf, &signer.verifier()).unwrap();
        assert_eq!(v.checkpoint.tree_size, 13);
        // Another entry's leaf hash does not verify at this index.
        let other = leaf_hash(format!("entry {}", (index + 1) % 13).as_bytes());
        assert!(matches!(parsed.verify(&other, &signer.verifier()), Err(TlogProofError::Inclusion(_))));
    }
}

#[test]
fn changed_byte_fails() {
    let (tree, signer, note) = log(6);
    let leaf = leaf_hash(b"entry 4");
    let text =
        TlogProof { extra: None, index: 4, proof: inclusion_proof(&tree, 4, 6).unwrap(), checkpoint: note }.to_text();
    TlogProof::parse(text.as_bytes()).unwrap().verify(&leaf, &signer.verifier()).unwrap();
    // Flip one bit at every byte: the result must never parse-and-verify.
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.to_vec();
        bad[i] ^= 0x01;
        let ok = TlogProof::parse(&bad).is_ok_and(|p| p.verify(&leaf, &signer.verifier()).is_ok());
        assert!(!ok, "byte {i} ({:?}) changed and it still verified", bytes[i] as char);
    }
    // A different log key does not verify the checkpoint.
    let other = NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap().verifier();
    assert!(matches!(
        TlogProof::parse(text.as_bytes()).unwrap().verify(&leaf, &other),
        Err(TlogProofError::Checkpoint(_))
    ));
}

#[test]
fn cosigned_checkpoint_keeps_cosignatures() {
    let (tree, signer, note) = log(3);
    let w = Cosigner::from_seed("witness.example", &[8; 32]).unwrap();
    let body = note.split("\n\n").next().unwrap().to_string() + "\n";
    let cosigned = format!("{note}{}", w.cosign(&body, 99).unwrap());
    let p = TlogProof { extra: None, index: 2, proof: inclusion_proof(&tree, 2, 3).unwrap(), checkpoint: cosigned };
    let v =
        TlogProof::parse(p.to_text().as_bytes()).unwrap().verify(&leaf_hash(b"entry 2"), &signer.verifier()).unwrap();
    assert_eq!(verify_quorum(&v.note, &[w.verifier()], 1).unwrap(), vec!["witness.example".to_string()]);
}

#[test]
fn strict_parsing() {
    let (_, _, note) = log(1);
    let ok = format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{note}");
    assert!(TlogProof::parse(ok.as_bytes()).is_ok());
    for bad in [
        format!("c2sp.org/tlog-proof@v2\nindex 0\n\n{note}"),
        format!("c2sp.org/tlog-proof@v1\nindex 00\n\n{note}"),
        format!("c2sp.org/tlog-proof@v1\nindex -1\n\n{note}"),
        format!("c2sp.org/tlog-proof@v1\n\n{note}"),
        format!("c2sp.org/tlog-proof@v1\nindex 0\nnot-base64\n\n{note}"),
        format!("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n{note}"),
        "c2sp.org/tlog-proof@v1\nindex 0\n\n".to_string(),
        "c2sp.org/tlog-proof@v1\nindex 0\n".to_string(),
    ] {
        assert!(TlogProof::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

/// The example in C2SP tlog-proof.md. Its signature lines are elided (`[...]`) and
/// it has 5 proof hashes where a tree of 109482 leaves needs 17 for index 73894, so
/// it is illustrative only: it parses, but there is no proof math to check.
#[test]
fn spec_example_parses_but_is_illustrative() {
    let example = "c2sp.org/tlog-proof@v1\n\
        extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n\
        index 73894\n\
        gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
        B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\
        EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n\
        RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n\
        AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\
        \n\
        example.com/fancylog\n\
        109482\n\
        sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\
        \n\
        \u{2014} example.com/fancylog hI2DJw[...]1roloI=\n";
    let p = TlogProof::parse(example.as_bytes()).unwrap();
    assert_eq!(p.index, 73894);
    assert_eq!(p.proof.len(), 5);
    assert!(p.extra.as_deref().unwrap().starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert!(p.checkpoint.starts_with("example.com/fancylog\n109482\n"));
    assert_eq!(inclusion_proof_len(73894, 109482), 17);
    let key = NoteSigner::from_seed("example.com/fancylog", &[1; 32]).unwrap().verifier();
    assert!(p.verify(&Hash([0; 32]), &key).is_err());
}
