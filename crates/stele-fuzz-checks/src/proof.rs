//! `verify_inclusion` / `verify_consistency` (and the length functions) on arbitrary
//! sizes, indexes and hashes: must never panic, and must never accept a proof of the
//! wrong length. Proofs made by stele over a small tree verify.

use stele_tlog::hash::{Hash, leaf_hash};
use stele_tlog::merkle::{
    MemoryTree, consistency_proof, consistency_proof_len, inclusion_proof, inclusion_proof_len, root_hash,
    verify_consistency, verify_inclusion,
};

fn u64_at(d: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (j, x) in b.iter_mut().enumerate() {
        *x = d.get(i + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

/// Runs this check on one input: returns normally or panics on a violated property.
pub fn check(data: &[u8]) {
    if data.len() < 24 {
        return;
    }
    let (a, b) = (u64_at(data, 0), u64_at(data, 8));
    let mode = data[16];
    let hashes: Vec<Hash> = data[24..].chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect();
    let (leaf, root2) = (hashes.first().copied().unwrap_or_default(), hashes.get(1).copied().unwrap_or_default());
    let proof = hashes.get(2..).unwrap_or(&[]);
    // Small sizes half the time, so the arithmetic near real trees is explored too.
    let (a, b) = if mode & 1 == 1 { (a % 300, b % 300) } else { (a, b) };

    if verify_inclusion(a, b, &leaf, proof, &root2).is_ok() {
        assert!(a < b && proof.len() == inclusion_proof_len(a, b));
    }
    if verify_consistency(a, b, &leaf, &root2, proof).is_ok() {
        assert!(a <= b && proof.len() == consistency_proof_len(a, b));
    }
    if a < b {
        assert!(inclusion_proof_len(a, b) <= 64);
    }
    assert!(consistency_proof_len(a, b) <= 128);

    // Real proofs over a small tree verify.
    let n = b % 300;
    if mode & 2 == 2 && n > 0 {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_le_bytes()));
        }
        let i = a % n;
        let r = root_hash(&t, n).unwrap();
        let p = inclusion_proof(&t, i, n).unwrap();
        verify_inclusion(i, n, &leaf_hash(&i.to_le_bytes()), &p, &r).unwrap();
        let m = 1 + a % n;
        let p = consistency_proof(&t, m, n).unwrap();
        verify_consistency(m, n, &root_hash(&t, m).unwrap(), &r, &p).unwrap();
    }
}
