//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): an offline-verifiable proof that an
//! entry is in a log, as text:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 opaque data>            (optional, not authenticated)
//! index <decimal entry index>
//! <base64 inclusion proof hash>          (zero or more, leaf's sibling first)
//!
//! <the signed checkpoint note, verbatim>
//! ```
//!
//! [`TlogProof::verify`] checks the checkpoint's signature with the log's verifier key
//! and the inclusion of a leaf hash under its root; cosignatures on the checkpoint
//! can then be checked with [`crate::cosignature::verify_quorum`] on the returned note.
//!
//! ```
//! use stele_tlog::{checkpoint::Checkpoint, hash::leaf_hash, merkle::*, note::NoteSigner};
//! use stele_tlog::tlog_proof::TlogProof;
//! let signer = NoteSigner::from_seed("log.example", &[1; 32]).unwrap();
//! let mut tree = MemoryTree::new();
//! for l in [&b"a"[..], b"b", b"c"] { tree.push(leaf_hash(l)); }
//! let cp = Checkpoint { origin: "log.example".into(), tree_size: 3,
//!     root_hash: root_hash(&tree, 3).unwrap(), extensions: vec![] };
//! let proof = TlogProof { extra: None, index: 1,
//!     proof: inclusion_proof(&tree, 1, 3).unwrap(), checkpoint: cp.sign(&signer).unwrap() };
//! let parsed = TlogProof::parse(proof.to_text().as_bytes()).unwrap();
//! parsed.verify(&leaf_hash(b"b"), &signer.verifier()).unwrap();
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{CheckpointError, VerifiedCheckpoint, open_checkpoint};
use crate::hash::Hash;
use crate::merkle::{VerifyError, verify_inclusion};
use crate::note::NoteVerifier;

/// The first line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Most inclusion proof lines accepted (a tree of 2^64 leaves needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// Errors of parsing and verifying a tlog-proof.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The text is not a well-formed tlog-proof; the string says how.
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    /// The checkpoint is malformed, not signed by the key, or of another origin.
    #[error("tlog-proof checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not lead from the leaf hash to the checkpoint's root.
    #[error("tlog-proof inclusion: {0}")]
    Inclusion(#[from] VerifyError),
}

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// The optional opaque extra data (unauthenticated).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// RFC 9162 inclusion proof of the entry in the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim (ends in a newline).
    pub checkpoint: String,
}

fn canonical_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

impl TlogProof {
    /// Parses the text form. Strict: header line, optional `extra` line, `index`
    /// line with a canonical decimal, canonical base64 hash lines, one empty line,
    /// then the checkpoint (not checked here; see [`TlogProof::verify`]).
    pub fn parse(text: &[u8]) -> Result<TlogProof, TlogProofError> {
        let s = std::str::from_utf8(text).map_err(|_| TlogProofError::Malformed("not UTF-8"))?;
        let split = s.find("\n\n").ok_or(TlogProofError::Malformed("no empty line before the checkpoint"))?;
        let (head, checkpoint) = (&s[..split], &s[split + 2..]);
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(TlogProofError::Malformed("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut extra = None;
        if let Some(e) = lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            let bytes = BASE64.decode(e).map_err(|_| TlogProofError::Malformed("extra is not base64"))?;
            extra = Some(bytes);
            lines.next();
        }
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .ok_or(TlogProofError::Malformed("missing index line"))?;
        let index = canonical_decimal(index).ok_or(TlogProofError::Malformed("index is not a canonical decimal"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::Malformed("too many proof lines"));
            }
            let h = Hash::from_base64(l).ok_or(TlogProofError::Malformed("proof line is not base64 of 32 bytes"))?;
            if h.to_base64() != l {
                return Err(TlogProofError::Malformed("proof line is not canonical base64"));
            }
            proof.push(h);
        }
        if checkpoint.is_empty() {
            return Err(TlogProofError::Malformed("missing checkpoint"));
        }
        Ok(TlogProof { extra, index, proof, checkpoint: checkpoint.to_string() })
    }

    /// The text form (the inverse of [`TlogProof::parse`]).
    pub fn to_text(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(e)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Verifies the checkpoint's signature with the log's key `log` (whose name must
    /// be the checkpoint origin) and that `leaf_hash` is entry [`TlogProof::index`]
    /// of the checkpointed tree. Returns the verified checkpoint, whose note carries
    /// any witness cosignatures for a quorum check.
    pub fn verify(&self, leaf_hash: &Hash, log: &NoteVerifier) -> Result<VerifiedCheckpoint, TlogProofError> {
        let verified = open_checkpoint(self.checkpoint.as_bytes(), log)?;
        let cp = &verified.checkpoint;
        verify_inclusion(self.index, cp.tree_size, leaf_hash, &self.proof, &cp.root_hash)?;
        Ok(verified)
    }
}
