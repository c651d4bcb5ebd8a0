//! Differential tests against a second, independent implementation: Cloudflare's
//! `tlog_tiles` (a Rust port of Go's `golang.org/x/mod/sumdb/tlog`) and `signed_note`
//! (a port of Go's `sumdb/note`). Roots, inclusion and consistency proofs of random trees
//! must be identical and verify with either verifier; signed notes and checkpoints
//! written by one must open with the other.

use proptest::prelude::*;
use stele_tlog::checkpoint::{Checkpoint, open_checkpoint};
use stele_tlog::hash::{Hash, leaf_hash};
use stele_tlog::merkle::{
    MemoryTree, consistency_proof, inclusion_proof, root_hash, verify_consistency, verify_inclusion,
};
use stele_tlog::note::{Note, NoteSigner, NoteVerifier};

/// tlog_tiles' storage: every stored hash in `stored_hash_index` order.
#[derive(Default)]
struct TheirStore(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for TheirStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes.iter().map(|&i| self.0.get(i as usize).copied().ok_or(tlog_tiles::Error::IndexesNotInTree)).collect()
    }
}

/// The same leaves in both implementations: stele's `MemoryTree` and tlog_tiles' store.
struct Both {
    ours: MemoryTree,
    theirs: TheirStore,
    records: Vec<Vec<u8>>,
}

impl Both {
    fn new(n: u64, seed: u64) -> Both {
        let mut b = Both { ours: MemoryTree::new(), theirs: TheirStore::default(), records: Vec::new() };
        for i in 0..n {
            let record = format!("record {seed}/{i}").into_bytes();
            // Their record hash is RFC 6962's leaf hash; check it is ours.
            let h = tlog_tiles::record_hash(&record);
            assert_eq!(h.0, leaf_hash(&record).0);
            let new = tlog_tiles::stored_hashes_for_record_hash(i, h, &b.theirs).unwrap();
            b.theirs.0.extend(new);
            b.ours.push(leaf_hash(&record));
            b.records.push(record);
        }
        b
    }
}

fn to_theirs(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h.0)
}

fn to_ours(h: &tlog_tiles::Hash) -> Hash {
    Hash(h.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn roots_and_proofs_agree(n in 1u64..1500, seed in any::<u64>()) {
        let t = Both::new(n, seed);
        for size in [1, n / 3 + 1, n / 2 + 1, n - 1, n] {
            let size = size.clamp(1, n);
            let ours = root_hash(&t.ours, size).unwrap();
            let theirs = tlog_tiles::tree_hash(size, &t.theirs).unwrap();
            prop_assert_eq!(ours, to_ours(&theirs));
        }
        let root = root_hash(&t.ours, n).unwrap();
        let troot = to_theirs(&root);
        for k in 0..8u64 {
            let index = seed.wrapping_add(k.wrapping_mul(0x9e37_79b9)) % n;
            let lh = leaf_hash(&t.records[index as usize]);
            let ours = inclusion_proof(&t.ours, index, n).unwrap();
            let theirs = tlog_tiles::prove_record(n, index, &t.theirs).unwrap();
            prop_assert_eq!(&ours, &theirs.iter().map(to_ours).collect::<Vec<_>>());
            // Ours verified by theirs, theirs by ours.
            let ours_t: Vec<_> = ours.iter().map(to_theirs).collect();
            prop_assert!(tlog_tiles::check_record(&ours_t, n, troot, index, to_theirs(&lh)).is_ok());
            prop_assert!(verify_inclusion(index, n, &lh, &theirs.iter().map(to_ours).collect::<Vec<_>>(), &root).is_ok());
            // Both reject the same corrupted proof.
            if !ours.is_empty() {
                let mut bad = ours_t.clone();
                let j = (k as usize) % bad.len();
                bad[j].0[0] ^= 1;
                prop_assert!(tlog_tiles::check_record(&bad, n, troot, index, to_theirs(&lh)).is_err());
            }

            let first = 1 + index % n; // 1..=n
            let r1 = root_hash(&t.ours, first).unwrap();
            let ours = consistency_proof(&t.ours, first, n).unwrap();
            let theirs = tlog_tiles::prove_tree(n, first, &t.theirs).unwrap();
            prop_assert_eq!(&ours, &theirs.iter().map(to_ours).collect::<Vec<_>>());
            let ours_t: Vec<_> = ours.iter().map(to_theirs).collect();
            prop_assert!(tlog_tiles::check_tree(&ours_t, n, troot, first, to_theirs(&r1)).is_ok());
            prop_assert!(verify_consistency(first, n, &r1, &root, &theirs.iter().map(to_ours).collect::<Vec<_>>()).is_ok());
            if !ours.is_empty() {
                let mut bad = ours_t.clone();
                let j = (k as usize) % bad.len();
                bad[j].0[31] ^= 0x80;
                prop_assert!(tlog_tiles::check_tree(&bad, n, troot, first, to_theirs(&r1)).is_err());
            }
        }
    }

    #[test]
    fn notes_and_checkpoints_cross_verify(seed in any::<[u8; 32]>(), size in any::<u64>(), root in any::<[u8; 32]>()) {
        let origin = "example.com/second-impl";
        let signer = NoteSigner::from_seed(origin, &seed).unwrap();
        let vkey = signer.verifier().to_vkey();
        let their_v = signed_note::StandardVerifier::new(&vkey).unwrap();
        let their_s = signed_note::StandardSigner::new(&signer.to_private_key_string()).unwrap();
        let their_list = signed_note::VerifierList::new(vec![Box::new(their_v)]);

        // Checkpoint bodies are byte-identical.
        let ours = Checkpoint { origin: origin.into(), tree_size: size, root_hash: Hash(root), extensions: vec![] };
        let theirs = tlog_tiles::Checkpoint::new(origin, size, tlog_tiles::Hash(root), "").unwrap();
        let body = ours.to_body();
        prop_assert_eq!(body.as_bytes(), &theirs.to_bytes()[..]);
        let parsed = tlog_tiles::Checkpoint::from_bytes(body.as_bytes()).unwrap();
        prop_assert_eq!((parsed.origin(), parsed.size(), parsed.hash().0), (origin, size, root));

        // Stele-signed checkpoint → their note verifier.
        let signed = ours.sign(&signer).unwrap();
        let n = signed_note::Note::from_bytes(signed.as_bytes()).unwrap();
        let (verified, unverified) = n.verify(&their_list).unwrap();
        prop_assert_eq!((verified.len(), unverified.len()), (1, 0));
        prop_assert_eq!(n.text(), body.as_bytes());
        // Their signature of the same text → ours. Ed25519 is deterministic, so the
        // signed notes are byte-identical too.
        let their_body = theirs.to_bytes();
        let mut tn = signed_note::Note::new(&their_body, &[]).unwrap();
        tn.add_sigs(&[&their_s]).unwrap();
        let their_bytes = tn.to_bytes();
        prop_assert_eq!(&their_bytes[..], signed.as_bytes());
        let opened = open_checkpoint(&their_bytes, &signer.verifier()).unwrap();
        prop_assert_eq!(opened.checkpoint, ours);

        // A changed byte in the text fails for both.
        let tampered = signed.replacen(origin, "example.com/second-imql", 1);
        prop_assert!(Note::parse(tampered.as_bytes()).unwrap().verify(&[signer.verifier()]).is_err());
        prop_assert!(signed_note::Note::from_bytes(tampered.as_bytes()).unwrap().verify(&their_list).is_err());
    }
}

#[test]
fn empty_tree_and_key_ids_agree() {
    let store = TheirStore::default();
    assert_eq!(tlog_tiles::tree_hash(0, &store).unwrap().0, root_hash(&MemoryTree::new(), 0).unwrap().0);
    for (name, seed) in [("example.com/k", [1u8; 32]), ("sum.golang.org", [2; 32]), ("a", [3; 32])] {
        let v = NoteSigner::from_seed(name, &seed).unwrap().verifier();
        let mut typed = vec![0x01];
        typed.extend_from_slice(v.key().as_bytes());
        assert_eq!(signed_note::key_id(name, &typed).to_be_bytes(), v.key_id());
        assert!(signed_note::StandardVerifier::new(&v.to_vkey()).is_ok());
    }
    // The C2SP signed-note example key parses in both.
    let c2sp = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    assert!(signed_note::StandardVerifier::new(c2sp).is_ok());
    assert_eq!(NoteVerifier::parse(c2sp).unwrap().to_vkey(), c2sp);
}
