//! # stele-timestamp
//!
//! Trusted time for stele's checkpoints (RFC 3161 Time-Stamp Protocol). It owns:
//! building a time-stamp request whose message imprint is SHA-256 of a checkpoint body
//! ([`TimestampRequest`]), checking a time-stamp response against its request
//! ([`TimestampRequest::token_from_response`]), fetching a token from a timestamp
//! authority over HTTP ([`client::fetch`]), and verifying a stored token against a
//! checkpoint body and the TSA certificates a verifier trusts ([`verify_token`]).
//! It does not store tokens (that is `stele-store`) or schedule requests (that is
//! `stele-server`).
//!
//! The message stamped is the C2SP tlog-checkpoint body: its three lines
//! `<origin>\n<tree size>\n<base64 root>\n` (the note text, without the signature
//! lines), so a token can be checked by anyone who holds the checkpoint, or who can
//! recompute the root at that size.
//!
//! ```
//! use stele_timestamp::TimestampRequest;
//! let body = b"example.com/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
//! let req = TimestampRequest::new(body).unwrap();
//! assert_eq!(req.imprint(), stele_timestamp::sha256(body));
//! assert_eq!(req.der()[0], 0x30); // a DER SEQUENCE, sent as application/timestamp-query
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod ess;
mod request;
mod verify;

pub use request::{RequestError, TimestampRequest};
pub use verify::{EssVersion, TokenError, TsaCertificate, VerifiedToken, verify_token};

/// Content type of a time-stamp request body (RFC 3161 §3.4).
pub const CONTENT_TYPE_QUERY: &str = "application/timestamp-query";
/// Content type of a time-stamp response body (RFC 3161 §3.4).
pub const CONTENT_TYPE_REPLY: &str = "application/timestamp-reply";
/// Largest time-stamp response or token accepted, bytes. A token holds a few
/// certificates and one signature; 64 KiB is far above any seen and bounds memory
/// spent on a hostile answer.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// SHA-256 of `message`: the message imprint stele requests (RFC 3161 §2.4.1).
pub fn sha256(message: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(message).into()
}

/// The checkpoint body of a signed note: its text up to and including the first
/// `\n\n`, without the blank line (C2SP signed-note: the text ends at the first empty
/// line; the signature lines follow it). `None` when `note` has no blank line.
pub fn checkpoint_body(note: &[u8]) -> Option<&[u8]> {
    note.windows(2).position(|w| w == b"\n\n").map(|i| &note[..=i])
}

/// The C2SP tlog-checkpoint body for `origin`, `tree_size` and a root hash (standard
/// base64 of the 32 bytes, as in checkpoints): `<origin>\n<tree size>\n<root>\n`.
pub fn body_for(origin: &str, tree_size: u64, root_base64: &str) -> Vec<u8> {
    format!("{origin}\n{tree_size}\n{root_base64}\n").into_bytes()
}
