//! Checking a log's RFC 3161 timestamp tokens against the tree the monitor trusts.
//!
//! The log serves its tokens at `checkpoint/timestamps` (stele: `GET
//! /checkpoint/timestamps`, see docs/format.md): the newest stamped tree size M, and
//! per token the TSA's URL and the DER token (base64). The monitor does not take the
//! checkpoint body the log sends: it computes the root at M from the tiles and checks
//! it with a consistency proof (RFC 9162 §2.1.4) up to the checkpoint it trusts, then
//! verifies every token over the body `<origin>\n<M>\n<root>\n` it built itself.

use base64::Engine as _;
use stele_timestamp::{TsaCertificate, VerifiedToken};
use stele_tlog::checkpoint::Checkpoint;
use stele_tlog::merkle::{consistency_proof, root_hash, verify_consistency};

use crate::MonitorError;
use crate::source::TileSource;
use crate::tiles::TileTree;

/// Path of the tokens under the log's prefix.
pub const TIMESTAMPS_PATH: &str = "checkpoint/timestamps";

/// One token that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedTimestamp {
    /// Tree size of the checkpoint stamped.
    pub tree_size: u64,
    /// The TSA's URL as the log names it.
    pub tsa: String,
    /// What the token says.
    pub token: VerifiedToken,
}

/// Fetches the newest stamped checkpoint's tokens and checks each against the trusted
/// checkpoint `trusted` and the TSA certificates `certs` (see the module docs).
/// Returns `Ok(None)` when the log serves no tokens (404).
///
/// # Errors
/// [`MonitorError::BadTimestamp`] naming the tree size, the TSA and the check that
/// failed (a detection); source errors when the document cannot be fetched.
pub fn check_timestamps(
    source: &dyn TileSource,
    trusted: &Checkpoint,
    certs: &[TsaCertificate],
) -> Result<Option<Vec<CheckedTimestamp>>, MonitorError> {
    let Some(bytes) = source.get(TIMESTAMPS_PATH)? else { return Ok(None) };
    let location = source.describe(TIMESTAMPS_PATH);
    let bad = |tree_size: u64, tsa: &str, reason: String| MonitorError::BadTimestamp {
        location: location.clone(),
        tree_size,
        tsa: tsa.to_string(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(0, "", format!("not a JSON document: {e}")))?;
    let m = doc["tree_size"].as_u64().ok_or_else(|| bad(0, "", "no tree_size".into()))?;
    if m == 0 || m > trusted.tree_size {
        return Err(bad(m, "", format!("tree size beyond the trusted checkpoint's {}", trusted.tree_size)));
    }
    // The root at M, from the tiles of the trusted tree, proven consistent with it.
    let tree = TileTree::new(source, trusted.tree_size);
    let root = root_hash(&tree, m)?;
    let proof =
        consistency_proof(&tree, m, trusted.tree_size).map_err(|e| bad(m, "", format!("consistency proof: {e}")))?;
    if m < trusted.tree_size {
        verify_consistency(m, trusted.tree_size, &root, &trusted.root_hash, &proof).map_err(|e| {
            bad(m, "", format!("the tiles' root at this size is not consistent with the trusted checkpoint: {e}"))
        })?;
    } else if root != trusted.root_hash {
        return Err(bad(m, "", "the tiles' root differs from the trusted checkpoint's".into()));
    }
    let body = stele_timestamp::body_for(&trusted.origin, m, &root.to_base64());
    let list = doc["timestamps"].as_array().ok_or_else(|| bad(m, "", "no timestamps list".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let tsa = t["tsa"].as_str().unwrap_or("").to_string();
        let token = t["token"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| bad(m, &tsa, "token is not base64".into()))?;
        let verified = stele_timestamp::verify_token(&token, &body, certs).map_err(|e| bad(m, &tsa, e.to_string()))?;
        out.push(CheckedTimestamp { tree_size: m, tsa, token: verified });
    }
    Ok(Some(out))
}
