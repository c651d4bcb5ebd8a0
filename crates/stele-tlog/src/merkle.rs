//! RFC 9162 §2.1 Merkle tree: roots, inclusion and consistency proofs, their
//! verification, and an append-only [`Frontier`] for building a tree one leaf
//! at a time.
//!
//! A node is named by `(level, index)`: level 0 holds the leaf hashes, and node
//! `(l, i)` is the root of the perfect subtree over leaves `[i·2^l, (i+1)·2^l)`.
//! Proofs are computed over a [`HashReader`], which returns such perfect-subtree
//! hashes, so proof code needs no storage and costs O(log n) node reads.

use crate::hash::{Hash, node_hash};

/// Source of perfect-subtree hashes for a tree.
pub trait HashReader {
    /// The error a read may fail with.
    type Error;
    /// Returns the hash of node `(level, index)`: the root of the perfect subtree
    /// over leaves `[index << level, (index + 1) << level)`. Callers only ask for
    /// nodes whose leaves all lie inside the tree being read.
    fn node_hash(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Errors of proof construction (`E` is the reader's error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError<E> {
    /// The requested index or sizes are out of range.
    #[error("invalid proof request: {0}")]
    InvalidRequest(&'static str),
    /// The hash reader failed.
    #[error("reading tree hashes: {0}")]
    Read(E),
}

/// Why a proof did not verify.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        tree_size: u64,
    },
    /// The first tree size is larger than the second.
    #[error("first tree size {first} is larger than second tree size {second}")]
    SizesOutOfOrder {
        /// Older tree size.
        first: u64,
        /// Newer tree size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has {got} hashes, expected {want}")]
    WrongProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes RFC 9162 requires.
        want: usize,
    },
    /// A consistency proof from the empty tree was asked for; it proves nothing.
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    /// The recomputed root differs from the expected root.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
}

/// Largest power of two strictly smaller than `n` (`n >= 2`), the split point `k` of RFC 9162 §2.1.1.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root hash of the leaves `[start, end)` computed per RFC 9162 §2.1.1 from perfect
/// subtrees. `start` must be a multiple of the largest power of two `<= end - start`
/// (true for every range the proof algorithms visit).
pub fn range_hash<R: HashReader>(reader: &R, start: u64, end: u64) -> Result<Hash, R::Error> {
    debug_assert!(start < end);
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return reader.node_hash(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split_point(n);
    let left = range_hash(reader, start, start + k)?;
    let right = range_hash(reader, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// Root hash of a tree of `tree_size` leaves (RFC 9162 §2.1.1); the empty tree's
/// root is SHA-256 of the empty string.
pub fn root_hash<R: HashReader>(reader: &R, tree_size: u64) -> Result<Hash, R::Error> {
    if tree_size == 0 {
        return Ok(Hash::EMPTY_ROOT);
    }
    range_hash(reader, 0, tree_size)
}

/// Inclusion proof (audit path) of RFC 9162 §2.1.3.1 for leaf `index` in a tree of
/// `tree_size` leaves, ordered from the leaf upward.
pub fn inclusion_proof<R: HashReader>(
    reader: &R,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= tree_size {
        return Err(ProofError::InvalidRequest("leaf index must be below tree size"));
    }
    let mut proof = Vec::with_capacity(64);
    // Walk down from the root, collecting siblings, then reverse (bottom-up order).
    let (mut start, mut end) = (0u64, tree_size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            proof.push(range_hash(reader, start + k, end).map_err(ProofError::Read)?);
            end = start + k;
        } else {
            proof.push(range_hash(reader, start, start + k).map_err(ProofError::Read)?);
            start += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Consistency proof of RFC 9162 §2.1.4.1 between tree sizes `first <= second`.
/// Empty when `first == 0` or `first == second`.
pub fn consistency_proof<R: HashReader>(
    reader: &R,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if first > second {
        return Err(ProofError::InvalidRequest("first size must not exceed second size"));
    }
    let mut proof = Vec::with_capacity(64);
    if first == 0 || first == second {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start:end], b), iteratively; hashes are collected top-down and reversed.
    let (mut m, mut start, mut end, mut b) = (first, 0u64, second, true);
    loop {
        let n = end - start;
        if m == n {
            if !b {
                proof.push(range_hash(reader, start, end).map_err(ProofError::Read)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(range_hash(reader, start + k, end).map_err(ProofError::Read)?);
            end = start + k;
        } else {
            proof.push(range_hash(reader, start, start + k).map_err(ProofError::Read)?);
            m -= k;
            start += k;
            b = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Number of hashes in an RFC 9162 inclusion proof for `index` in `tree_size`.
pub fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let (mut start, mut end, mut len) = (0u64, tree_size, 0usize);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            end = start + k;
        } else {
            start += k;
        }
        len += 1;
    }
    len
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that `leaf_hash` is leaf `index`
/// of the tree of `tree_size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= tree_size {
        return Err(VerifyError::IndexOutOfRange { index, tree_size });
    }
    let want = inclusion_proof_len(index, tree_size);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength { got: proof.len(), want });
    }
    let computed = root_from_inclusion(index, tree_size, leaf_hash, proof);
    if computed == *root { Ok(()) } else { Err(VerifyError::RootMismatch) }
}

/// Recomputes the root implied by an inclusion proof of the right length
/// (RFC 9162 §2.1.3.2 steps 2–5).
pub fn root_from_inclusion(index: u64, tree_size: u64, leaf_hash: &Hash, proof: &[Hash]) -> Hash {
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    r
}

/// Number of hashes in an RFC 9162 consistency proof between `first` and `second`.
pub fn consistency_proof_len(first: u64, second: u64) -> usize {
    if first == 0 || first >= second {
        return 0;
    }
    let (mut m, mut start, mut end, mut b, mut len) = (first, 0u64, second, true, 0usize);
    loop {
        let n = end - start;
        if m == n {
            if !b {
                len += 1;
            }
            return len;
        }
        let k = split_point(n);
        len += 1;
        if m <= k {
            end = start + k;
        } else {
            m -= k;
            start += k;
            b = false;
        }
    }
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of `second` leaves
/// with root `second_root` extends the tree of `first` leaves with root `first_root`.
///
/// Equal sizes need an empty proof and equal roots. A first size of 0 is rejected with
/// [`VerifyError::EmptyFirstTree`] (as transparency-dev/merkle does): every tree extends
/// the empty tree, so callers treat that case as trivially consistent without a proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if first > second {
        return Err(VerifyError::SizesOutOfOrder { first, second });
    }
    if first == 0 {
        // Every tree extends the empty tree; a proof "from size 0" proves nothing, and
        // accepting one would let a caller believe it checked something.
        return Err(VerifyError::EmptyFirstTree);
    }
    let want = consistency_proof_len(first, second);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength { got: proof.len(), want });
    }
    if first == second {
        return if first_root == second_root { Ok(()) } else { Err(VerifyError::RootMismatch) };
    }
    // Step 2: when `first` is a power of two, the first tree is itself a node of the
    // second and its root starts the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(VerifyError::RootMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && fr == *first_root && sr == *second_root { Ok(()) } else { Err(VerifyError::RootMismatch) }
}

/// The right edge of an append-only tree: the roots of the perfect subtrees that
/// make up a tree of `size` leaves (one per set bit of `size`, largest first).
/// Appending a leaf reports every node it completes, so a store can persist them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)` of each perfect subtree, left to right (levels strictly decreasing).
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored node hashes
    /// in O(log n) reads.
    pub fn from_reader<R: HashReader>(reader: &R, size: u64) -> Result<Frontier, R::Error> {
        let mut nodes = Vec::with_capacity(64);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push((level, reader.node_hash(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash and calls `completed(level, index, hash)` for the leaf
    /// node itself (level 0) and every interior node this leaf completes, bottom-up.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        completed(0, index, &leaf);
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some(&(top_level, top_hash)) = self.nodes.last() {
            if top_level != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&top_hash, &hash);
            level += 1;
            completed(level, index >> level, &hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// Root hash of the current tree (RFC 9162 §2.1.1).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut r)) = iter.next() else {
            return Hash::EMPTY_ROOT;
        };
        for (_, left) in iter {
            r = node_hash(left, &r);
        }
        r
    }

    /// The perfect-subtree roots, left to right, as `(level, hash)`.
    pub fn nodes(&self) -> &[(u32, Hash)] {
        &self.nodes
    }
}

/// An in-memory tree of leaf hashes; node hashes are computed on demand. For tests,
/// small trees and proofs over a batch held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// Level 0 upward; `levels[l][i]` is node `(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree { levels: vec![Vec::new()] }
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }
}

/// A read of a node that does not exist in the tree.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("node ({level}, {index}) is not complete in this tree")]
pub struct MissingNode {
    /// Level of the node.
    pub level: u32,
    /// Index of the node within its level.
    pub index: u64,
}

impl HashReader for MemoryTree {
    type Error = MissingNode;
    fn node_hash(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}
