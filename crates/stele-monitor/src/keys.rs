//! The key chain a monitor follows: from the one key it was given, through the log's
//! published key statements (`key-statements` beside `checkpoint`: one line per
//! statement, `<entry index> <base64 signed note>`; docs/keys.md).
//!
//! Each statement must be signed by the key current before it, so a log (or anyone
//! between the log and the monitor) cannot introduce a key the trusted key did not
//! announce; a missing or cut list only makes newer checkpoints fail to verify.

use stele_tlog::keychain::{KeyChain, chain_from_list, parse_statement_list};
use stele_tlog::note::NoteVerifier;

use crate::MonitorError;
use crate::source::TileSource;

/// Path of the key-statement list under the log's prefix.
pub const KEY_STATEMENTS: &str = "key-statements";

/// The chain from `first` and the source's key statements (none published: `first` alone).
///
/// # Errors
/// [`MonitorError::KeyChain`] when a statement is malformed or not signed by the key
/// before it (a forged announcement); source errors.
pub fn load_chain(source: &dyn TileSource, first: &NoteVerifier) -> Result<KeyChain, MonitorError> {
    let location = source.describe(KEY_STATEMENTS);
    let Some(bytes) = source.get(KEY_STATEMENTS)? else { return Ok(KeyChain::new(first.clone())) };
    let text = String::from_utf8_lossy(&bytes);
    let list =
        parse_statement_list(&text).map_err(|source| MonitorError::KeyChain { location: location.clone(), source })?;
    chain_from_list(first.clone(), &list).map_err(|(_, source)| MonitorError::KeyChain { location, source })
}
