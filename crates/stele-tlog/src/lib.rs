//! # stele-tlog
//!
//! The pure core of stele: everything a verifier needs and nothing that does I/O.
//!
//! - [`hash`]: SHA-256 with RFC 9162 §2.1.1 domain separation.
//! - [`merkle`]: roots, inclusion and consistency proofs (RFC 9162 §2.1.3–2.1.4),
//!   their verification, and the append-only [`merkle::Frontier`].
//! - [`tile`]: C2SP tlog-tiles coordinates and paths.
//! - [`note`] and [`checkpoint`]: C2SP signed-note (Ed25519) and tlog-checkpoint.
//! - [`keychain`]: key rotation and revocation statements, the chain verifiers follow.
//! - [`signer`]: the [`signer::CheckpointSigner`] boundary between a log and its key.
//! - [`cosignature`]: C2SP tlog-cosignature (Ed25519 `cosignature/v1`), for witnesses.
//! - [`leaf`]: stele's 68-byte salted leaf record.
//! - [`bundle`]: the offline checks of an evidence bundle (`stele-bundle/1`).
//!
//! It owns no storage, no clock and no randomness: callers pass hashes in through a
//! [`merkle::HashReader`], salts and times in through [`leaf::Leaf::new`].
//!
//! ```
//! use stele_tlog::{hash::leaf_hash, merkle::{MemoryTree, root_hash, inclusion_proof, verify_inclusion}};
//! let mut tree = MemoryTree::new();
//! for leaf in [&b"a"[..], b"b", b"c"] {
//!     tree.push(leaf_hash(leaf));
//! }
//! let root = root_hash(&tree, 3).unwrap();
//! let proof = inclusion_proof(&tree, 1, 3).unwrap();
//! verify_inclusion(1, 3, &leaf_hash(b"b"), &proof, &root).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod hash;
pub mod keychain;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod signer;
pub mod tile;
pub mod tlog_proof;

pub use hash::Hash;
