//! RFC 9162 §2.1.3–2.1.4 proofs as JSON, shared by the HTTP routes
//! (`GET /v1/proof/inclusion`, `GET /v1/proof/consistency`) and the `stele proof`
//! command, so that both print exactly the same document.
//!
//! Hashes are standard base64. `tree_size` (inclusion) and `second` (consistency)
//! default to the newest signed checkpoint's size; `"checkpoint"` carries that
//! checkpoint's signed note when the proof's tree size is the newest checkpoint's,
//! else `null` (the proof is then to a tree size the caller must check against a
//! checkpoint of its own).
//!
//! [`inclusion_tlog_proof`] gives the same inclusion proof as C2SP tlog-proof text
//! (`c2sp.org/tlog-proof@v1`), always against the newest signed checkpoint.

use serde_json::{Value, json};
use stele_store::{LogReader, StoreError};
use stele_tlog::Hash;

/// Why a proof request cannot be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofRequestError {
    /// The request is malformed or out of range (HTTP 400, exit 2).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing to prove against yet: no checkpoint has been signed (HTTP 404, exit 2).
    #[error("{0}")]
    NotFound(String),
    /// Reading the log failed (HTTP 500; damage exits 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn hashes_b64(hashes: &[Hash]) -> Value {
    Value::Array(hashes.iter().map(|h| Value::String(h.to_base64())).collect())
}

/// The newest checkpoint's size, or the reason there is none.
fn default_size(reader: &LogReader, name: &str) -> Result<u64, ProofRequestError> {
    reader.newest_checkpoint().map(|c| c.tree_size).ok_or_else(|| {
        ProofRequestError::NotFound(format!(
            "no checkpoint has been signed yet, so {name} has no default: give it explicitly or ask again after the next checkpoint"
        ))
    })
}

fn check_size(reader: &LogReader, name: &str, size: u64) -> Result<(), ProofRequestError> {
    let log = reader.tree_size();
    if size > log {
        return Err(ProofRequestError::BadRequest(format!("{name} {size} is beyond the log, which has {log} entries")));
    }
    Ok(())
}

/// The signed note of the newest checkpoint if it signs exactly `size`.
fn note_for(reader: &LogReader, size: u64) -> Value {
    match reader.newest_checkpoint() {
        Some(c) if c.tree_size == size => Value::String(c.note),
        _ => Value::Null,
    }
}

/// `{"leaf_index","tree_size","leaf_hash","hashes","root_hash","checkpoint"}`: the
/// inclusion proof of entry `index` in the tree of `tree_size` leaves (default: the
/// newest checkpoint's size).
pub fn inclusion(reader: &LogReader, index: u64, tree_size: Option<u64>) -> Result<Value, ProofRequestError> {
    let tree_size = match tree_size {
        Some(s) => s,
        None => default_size(reader, "tree_size")?,
    };
    check_size(reader, "tree_size", tree_size)?;
    if index >= tree_size {
        return Err(ProofRequestError::BadRequest(format!("leaf index {index} is not below tree_size {tree_size}")));
    }
    let leaf_hash = reader.leaf_hash(index)?;
    let proof = reader.inclusion_proof(index, tree_size)?;
    let root = reader.root_hash(tree_size)?;
    Ok(json!({
        "leaf_index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf_hash.to_base64(),
        "hashes": hashes_b64(&proof),
        "root_hash": root.to_base64(),
        "checkpoint": note_for(reader, tree_size),
    }))
}

/// `{"first","second","hashes","first_root","second_root","checkpoint"}`: the
/// consistency proof from the tree of `first` leaves to the tree of `second` leaves
/// (default: the newest checkpoint's size). `checkpoint` is the note signing `second`
/// when it is the newest checkpoint, else `null`.
pub fn consistency(reader: &LogReader, first: u64, second: Option<u64>) -> Result<Value, ProofRequestError> {
    let second = match second {
        Some(s) => s,
        None => default_size(reader, "second")?,
    };
    check_size(reader, "second", second)?;
    if first == 0 {
        return Err(ProofRequestError::BadRequest(
            "first must be at least 1: every tree is consistent with the empty tree, there is nothing to prove".into(),
        ));
    }
    if first > second {
        return Err(ProofRequestError::BadRequest(format!("first {first} is larger than second {second}")));
    }
    let proof = reader.consistency_proof(first, second)?;
    Ok(json!({
        "first": first,
        "second": second,
        "hashes": hashes_b64(&proof),
        "first_root": reader.root_hash(first)?.to_base64(),
        "second_root": reader.root_hash(second)?.to_base64(),
        "checkpoint": note_for(reader, second),
    }))
}

/// The C2SP tlog-proof text (`c2sp.org/tlog-proof@v1`) of entry `index` in the newest
/// signed checkpoint: header, `index` line, inclusion proof hashes, an empty line and
/// the checkpoint's signed note verbatim. Check it with
/// [`stele_tlog::tlog_proof::TlogProof::verify`].
pub fn inclusion_tlog_proof(reader: &LogReader, index: u64) -> Result<String, ProofRequestError> {
    let newest = reader.newest_checkpoint().ok_or_else(|| {
        ProofRequestError::NotFound(
            "no checkpoint has been signed yet, so there is nothing to prove inclusion in: ask again after the next checkpoint"
                .into(),
        )
    })?;
    let tree_size = newest.tree_size;
    if index >= tree_size {
        return Err(ProofRequestError::BadRequest(format!(
            "leaf index {index} is not below the newest checkpoint's tree size {tree_size}"
        )));
    }
    let proof = reader.inclusion_proof(index, tree_size)?;
    Ok(stele_tlog::tlog_proof::TlogProof { extra: None, index, proof, checkpoint: newest.note }.to_text())
}
