//! Property tests: the proof code against a naive, independent RFC 9162 reference
//! written straight from the recursive definitions of §2.1.1, §2.1.3.1 and §2.1.4.1.

use proptest::prelude::*;
use stele_tlog::hash::{Hash, leaf_hash, node_hash};
use stele_tlog::merkle::{
    Frontier, MemoryTree, consistency_proof, inclusion_proof, root_hash, verify_consistency, verify_inclusion,
};

/// MTH(D[n]) by the textbook recursion over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) of RFC 9162 §2.1.3.1.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1.
fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![mth(leaves)] };
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn roots_and_frontier_match_reference(n in 0usize..600) {
        let ls = leaves(n);
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::new();
        let mut completed = Vec::new();
        for l in &ls {
            tree.push(*l);
            frontier.push(*l, |level, index, h| completed.push((level, index, *h)));
        }
        let want = mth(&ls);
        prop_assert_eq!(root_hash(&tree, n as u64).unwrap(), want);
        prop_assert_eq!(frontier.root(), want);
        // Every completed node the frontier reported is the node the tree holds.
        for (level, index, h) in completed {
            use stele_tlog::merkle::HashReader;
            prop_assert_eq!(tree.node_hash(level, index).unwrap(), h);
        }
        // Rebuilding the frontier from stored nodes gives the same state.
        prop_assert_eq!(Frontier::from_reader(&tree, n as u64).unwrap(), frontier);
    }

    #[test]
    fn inclusion_proofs_match_reference_and_verify(n in 1usize..400, seed in any::<u64>()) {
        let ls = leaves(n);
        let mut tree = MemoryTree::new();
        ls.iter().for_each(|l| tree.push(*l));
        let m = (seed % n as u64) as usize;
        let size = n as u64;
        let p = inclusion_proof(&tree, m as u64, size).unwrap();
        prop_assert_eq!(&p, &path(m, &ls));
        let root = mth(&ls);
        prop_assert!(verify_inclusion(m as u64, size, &ls[m], &p, &root).is_ok());
        // Any single-bit change, wrong index, wrong size or wrong leaf fails.
        if !p.is_empty() {
            let mut bad = p.clone();
            let j = (seed as usize / 7) % bad.len();
            bad[j].0[(seed as usize / 11) % 32] ^= 1 << (seed % 8);
            prop_assert!(verify_inclusion(m as u64, size, &ls[m], &bad, &root).is_err());
            prop_assert!(verify_inclusion(m as u64, size, &ls[m], &p[..p.len() - 1], &root).is_err());
        }
        if n > 1 {
            let other = (m + 1) % n;
            prop_assert!(verify_inclusion(other as u64, size, &ls[m], &p, &root).is_err());
        }
        // The proof does not verify against the root of a grown tree. (Against the same
        // root with a different claimed size it may: RFC 9162 binds the size through the
        // signed checkpoint, not through the proof.)
        let mut grown = ls.clone();
        grown.push(leaf_hash(b"extra"));
        prop_assert!(verify_inclusion(m as u64, size + 1, &ls[m], &p, &mth(&grown)).is_err());
        prop_assert!(verify_inclusion(m as u64, size, &leaf_hash(b"x"), &p, &root).is_err());
    }

    #[test]
    fn consistency_proofs_match_reference_and_verify(n in 2usize..400, seed in any::<u64>()) {
        let ls = leaves(n);
        let mut tree = MemoryTree::new();
        ls.iter().for_each(|l| tree.push(*l));
        let m = 1 + (seed % (n as u64 - 1)) as usize; // 1..n-1
        let p = consistency_proof(&tree, m as u64, n as u64).unwrap();
        prop_assert_eq!(&p, &subproof(m, &ls, true));
        let (r1, r2) = (mth(&ls[..m]), mth(&ls));
        prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &p).is_ok());
        let mut bad = p.clone();
        let j = (seed as usize / 13) % bad.len();
        bad[j].0[0] ^= 1;
        prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &bad).is_err());
        prop_assert!(verify_consistency(m as u64, n as u64, &r2, &r1, &p).is_err());
        // A fork: same sizes, different second tree.
        let mut forked = ls.clone();
        forked[m - 1] = leaf_hash(b"fork");
        prop_assert!(verify_consistency(m as u64, n as u64, &r1, &mth(&forked), &p).is_err());
    }
}

#[test]
fn proof_lengths_for_large_trees_stay_logarithmic() {
    use stele_tlog::merkle::{consistency_proof_len, inclusion_proof_len};
    assert_eq!(inclusion_proof_len(0, 1), 0);
    assert_eq!(inclusion_proof_len(10000, 961_984_011), 30);
    assert!(inclusion_proof_len(u64::MAX - 2, u64::MAX) <= 64);
    assert!(consistency_proof_len(1, u64::MAX) <= 64);
    assert_eq!(consistency_proof_len(5, 5), 0);
}
